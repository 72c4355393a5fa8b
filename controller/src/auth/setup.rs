//! Start-up of everything security-related, so the daemon wiring stays a
//! few lines: the secrets keyring (and re-encryption of records under older
//! keys), the bootstrap admin token, TLS material, JWT verification and the
//! auth layer.

use std::{path::Path, sync::Arc, time::Duration};

use tonic::transport::{Certificate, Identity, ServerTlsConfig};

use super::{
    AuthError, Role,
    jwt::{JwtSettings, JwtVerifier},
    layer::{AuthLayer, Authenticator, LimitSettings},
    tokens,
};
use crate::{
    config::Config,
    store::{
        Store, StoreError,
        secrets::{KEY_ENV, KeySource, Keyring, SecretsError},
    },
    tls::{self, TlsError},
};

/// Why the security set-up failed.
#[derive(Debug, thiserror::Error)]
pub enum SetupError {
    /// TLS material.
    #[error("TLS: {0}")]
    Tls(#[from] TlsError),
    /// The secrets key.
    #[error(transparent)]
    Secrets(#[from] SecretsError),
    /// The store.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// JWT set-up.
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// A configured file could not be read.
    #[error("{path}: {source}")]
    Read {
        /// The file.
        path: std::path::PathBuf,
        #[source]
        source: std::io::Error,
    },
}

/// What the gRPC server needs from the set-up.
#[derive(Debug)]
pub struct Security {
    /// The auth layer to wrap every service in.
    pub layer: AuthLayer,
    /// TLS configuration, `None` when TLS is off.
    pub tls: Option<ServerTlsConfig>,
}

/// Name of the bootstrap admin token file in the data directory.
pub const ADMIN_TOKEN_FILE: &str = "admin.token";

fn read(path: &Path) -> Result<String, SetupError> {
    std::fs::read_to_string(path).map_err(|source| SetupError::Read {
        path: path.to_owned(),
        source,
    })
}

/// Prepares keyring, bootstrap token, TLS and the auth layer.
///
/// # Errors
/// [`SetupError`] naming the file or setting at fault.
pub async fn prepare(
    config: &Config,
    store: &Store,
    data_dir: &Path,
) -> Result<Security, SetupError> {
    // Secrets at rest.
    let env_key = std::env::var(KEY_ENV).ok();
    let (keyring, source) = Keyring::load(
        config.secrets.key_file.as_deref(),
        env_key.as_deref(),
        &config.secrets.previous_key_files,
        data_dir,
    )?;
    match &source {
        KeySource::Generated(p) => tracing::warn!(
            key_file = %p.display(),
            "no secrets key configured: generated one; back it up, device credentials are unreadable without it"
        ),
        KeySource::DataDir(p) => {
            tracing::info!(key_file = %p.display(), "secrets key from the data directory");
        }
        KeySource::File(p) => {
            tracing::info!(key_file = %p.display(), "secrets key from [secrets] key_file");
        }
        KeySource::Env => tracing::info!(variable = KEY_ENV, "secrets key from the environment"),
    }
    let key_id = keyring.current_id().to_owned();
    store.install_keyring(keyring);
    let report = store.reencrypt_secrets().await?;
    if report.reencrypted > 0 {
        tracing::info!(
            reencrypted = report.reencrypted,
            total = report.total,
            key_id,
            "re-encrypted device credentials under the current key"
        );
    }

    // Bootstrap admin token.
    if config.auth.bootstrap_admin_token && !store.has_tokens()? {
        let (record, secret) =
            tokens::issue(store, "bootstrap-admin", Role::Admin, &[], None, "rampartd").await?;
        let path = data_dir.join(ADMIN_TOKEN_FILE);
        tls::write_private(&path, format!("{secret}\n").as_bytes())?;
        tracing::info!(token = %record.id, file = %path.display(), "bootstrap admin token written (0600); rampartctl reads it with --token-file");
    }

    // TLS.
    let tls = if config.tls.enabled {
        let tls_dir = data_dir.join("tls");
        let (ca, files) = match (&config.tls.cert_file, &config.tls.key_file) {
            (Some(cert), Some(key)) => {
                let (ca, _) = tls::CertificateAuthority::load_or_create(&tls_dir)?;
                tracing::info!(cert = %cert.display(), "serving the configured certificate");
                (
                    ca,
                    tls::ServerFiles {
                        ca_cert: tls_dir.join("ca.crt"),
                        cert: cert.clone(),
                        key: key.clone(),
                    },
                )
            }
            _ => tls::bootstrap_server(&tls_dir, &config.tls.extra_sans)?,
        };
        let client_ca = match &config.tls.client_ca_file {
            Some(p) => read(p)?,
            None => ca.cert_pem().to_owned(),
        };
        tracing::info!(ca = %files.ca_cert.display(), "TLS on; clients trust this CA (rampartctl --ca-cert)");
        Some(
            ServerTlsConfig::new()
                .identity(Identity::from_pem(read(&files.cert)?, read(&files.key)?))
                .client_ca_root(Certificate::from_pem(client_ca))
                .client_auth_optional(true),
        )
    } else {
        tracing::warn!(
            "TLS IS OFF ([tls] enabled = false / --insecure): tokens and data cross the network in clear; use only in a lab"
        );
        None
    };

    // JWT.
    let jwt = match (
        &config.auth.jwt_issuer,
        &config.auth.jwt_audience,
        &config.auth.jwks_url,
    ) {
        (Some(issuer), Some(audience), Some(url)) => {
            tracing::info!(issuer, jwks = url, "JWT validation on");
            Some(Arc::new(JwtVerifier::new(JwtSettings {
                issuer: issuer.clone(),
                audience: audience.clone(),
                jwks_url: url.clone(),
                refresh: Duration::from_secs(config.auth.jwks_refresh_secs),
            })?))
        }
        _ => None,
    };

    let auth = Authenticator::new(
        store.clone(),
        jwt,
        LimitSettings {
            requests_per_second: config.limits.requests_per_second,
            burst: config.limits.burst,
            max_concurrent: config.limits.max_concurrent_requests,
            auth_failures_per_second: config.limits.auth_failures_per_second,
            auth_failure_burst: config.limits.auth_failure_burst,
        },
    );
    Ok(Security {
        layer: AuthLayer::new(Arc::new(auth)),
        tls,
    })
}
