//! JWT bearer tokens from an SSO issuer, verified against its JWKS.
//!
//! The key set is fetched from the configured URL, cached, refreshed after
//! `refresh` and also when a token names a key id the cache does not know
//! (key rotation at the issuer), at most once per [`MIN_FORCED_REFRESH`].
//! Only asymmetric algorithms are accepted: an `HS256` token "signed" with
//! a public key must never verify.

use std::time::{Duration, Instant};

use jsonwebtoken::{
    Algorithm, DecodingKey, Validation, decode, decode_header,
    jwk::{Jwk, JwkSet},
};
use serde::Deserialize;
use tokio::sync::RwLock;

use super::AuthError;

/// Forced refreshes (unknown `kid`) are at most this frequent, so garbage
/// tokens cannot make rampartd hammer the issuer.
pub const MIN_FORCED_REFRESH: Duration = Duration::from_secs(10);

/// Where and how to verify JWTs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwtSettings {
    /// Expected `iss`.
    pub issuer: String,
    /// Expected `aud`.
    pub audience: String,
    /// The issuer's JWKS document.
    pub jwks_url: String,
    /// How long a fetched key set is trusted.
    pub refresh: Duration,
}

/// The claims rampartd reads.
#[derive(Debug, Clone, Deserialize)]
pub struct Claims {
    /// The user.
    pub sub: String,
    /// Role name.
    #[serde(default)]
    pub rampart_role: String,
    /// Granted tenants.
    #[serde(default)]
    pub rampart_tenants: Vec<String>,
}

#[derive(Debug)]
struct Cached {
    keys: JwkSet,
    fetched: Instant,
}

/// Verifies JWTs; cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct JwtVerifier {
    settings: JwtSettings,
    http: reqwest::Client,
    cache: RwLock<Option<Cached>>,
}

impl JwtVerifier {
    /// A verifier for `settings`; nothing is fetched until the first token.
    ///
    /// # Errors
    /// [`AuthError::Jwt`] when the HTTP client cannot be built.
    pub fn new(settings: JwtSettings) -> Result<Self, AuthError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .map_err(|e| AuthError::Jwt {
                message: format!("HTTP client: {e}"),
            })?;
        Ok(Self {
            settings,
            http,
            cache: RwLock::new(None),
        })
    }

    async fn fetch(&self) -> Result<JwkSet, AuthError> {
        let err = |e: reqwest::Error| AuthError::Jwt {
            message: format!("cannot fetch JWKS from {}: {e}", self.settings.jwks_url),
        };
        let set: JwkSet = self
            .http
            .get(&self.settings.jwks_url)
            .send()
            .await
            .map_err(err)?
            .error_for_status()
            .map_err(err)?
            .json()
            .await
            .map_err(err)?;
        tracing::info!(url = %self.settings.jwks_url, keys = set.keys.len(), "JWKS fetched");
        Ok(set)
    }

    /// The key for `kid`, refreshing the cache when stale or when the kid is
    /// unknown.
    async fn key(&self, kid: Option<&str>) -> Result<Jwk, AuthError> {
        let find = |set: &JwkSet| match kid {
            Some(k) => set.find(k).cloned(),
            None if set.keys.len() == 1 => set.keys.first().cloned(),
            None => None,
        };
        {
            let cache = self.cache.read().await;
            if let Some(c) = cache.as_ref()
                && c.fetched.elapsed() < self.settings.refresh
                && let Some(k) = find(&c.keys)
            {
                return Ok(k);
            }
        }
        let mut cache = self.cache.write().await;
        let stale = cache
            .as_ref()
            .is_none_or(|c| c.fetched.elapsed() >= self.settings.refresh);
        let may_force = cache
            .as_ref()
            .is_none_or(|c| c.fetched.elapsed() >= MIN_FORCED_REFRESH);
        if stale || may_force {
            match self.fetch().await {
                Ok(keys) => {
                    *cache = Some(Cached {
                        keys,
                        fetched: Instant::now(),
                    });
                }
                // A stale key set beats none when the issuer is briefly down.
                Err(e) if cache.is_some() => {
                    tracing::warn!(error = %e, "JWKS refresh failed; using the cached keys");
                }
                Err(e) => return Err(e),
            }
        }
        cache
            .as_ref()
            .and_then(|c| find(&c.keys))
            .ok_or_else(|| AuthError::Jwt {
                message: format!(
                    "no key {} in the issuer's JWKS",
                    kid.map_or_else(|| "(token names no kid)".to_owned(), |k| format!("{k:?}"))
                ),
            })
    }

    /// Verifies signature, expiry, issuer and audience; returns the claims.
    ///
    /// # Errors
    /// [`AuthError::Jwt`] saying what did not verify.
    pub async fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let jwt = |message: String| AuthError::Jwt { message };
        let header = decode_header(token).map_err(|e| jwt(format!("malformed token: {e}")))?;
        if matches!(
            header.alg,
            Algorithm::HS256 | Algorithm::HS384 | Algorithm::HS512
        ) {
            return Err(jwt(format!(
                "algorithm {:?} is not accepted (asymmetric only)",
                header.alg
            )));
        }
        let jwk = self.key(header.kid.as_deref()).await?;
        let key = DecodingKey::from_jwk(&jwk).map_err(|e| jwt(format!("unusable JWK: {e}")))?;
        let mut validation = Validation::new(header.alg);
        validation.set_issuer(&[&self.settings.issuer]);
        validation.set_audience(&[&self.settings.audience]);
        validation.set_required_spec_claims(&["exp", "sub", "iss", "aud"]);
        validation.leeway = 30;
        let data = decode::<Claims>(token, &key, &validation)
            .map_err(|e| jwt(format!("token rejected: {e}")))?;
        Ok(data.claims)
    }
}
