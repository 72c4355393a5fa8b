//! API tokens: 256 random bits, shown once, stored as their SHA-256.
//!
//! SHA-256 rather than argon2: a password hash slows down guessing of
//! low-entropy secrets, but a 256-bit random token cannot be guessed at any
//! speed, and a slow hash would add tens of milliseconds of CPU to every
//! request. A leaked store yields hashes from which no token can be derived.

use base64::{Engine as _, engine::general_purpose::URL_SAFE_NO_PAD};
use ring::{
    digest,
    rand::{SecureRandom as _, SystemRandom},
};

/// Prefix of every API token, so scanners (and people) recognise one, and
/// so the auth layer tells tokens from JWTs without parsing.
pub const PREFIX: &str = "rpt_";

/// A freshly generated token.
pub struct NewToken {
    /// The bearer secret (shown once).
    pub secret: String,
    /// Hex SHA-256 of the secret: the store key.
    pub hash: String,
    /// Public id, derived from the hash (`tok-` + 12 hex digits).
    pub id: String,
}

impl std::fmt::Debug for NewToken {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewToken")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// Generates a new token from the system CSPRNG.
///
/// # Panics
/// Only if the operating system's random source fails, which leaves nothing
/// safe to do.
#[must_use]
pub fn generate() -> NewToken {
    let mut bytes = [0u8; 32];
    SystemRandom::new()
        .fill(&mut bytes)
        .expect("the system random source failed");
    let secret = format!("{PREFIX}{}", URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&secret);
    let id = id_of_hash(&hash);
    NewToken { secret, hash, id }
}

/// Hex SHA-256 of a presented token.
#[must_use]
pub fn hash(secret: &str) -> String {
    hex::encode(digest::digest(&digest::SHA256, secret.as_bytes()))
}

/// The public id of a token hash.
#[must_use]
pub fn id_of_hash(hash: &str) -> String {
    format!("tok-{}", &hash[..12.min(hash.len())])
}

/// Issues a token: generates it, stores its hash with the grant, and
/// returns the record and the secret (to show once).
///
/// # Errors
/// Storage failures; nothing is stored then.
pub async fn issue(
    store: &crate::store::Store,
    name: &str,
    role: super::Role,
    tenants: &[String],
    ttl: Option<std::time::Duration>,
    created_by: &str,
) -> Result<(crate::store::access::TokenRecord, String), crate::store::StoreError> {
    let t = generate();
    let now = crate::store::now_unix_ms() / 1000;
    let record = crate::store::access::TokenRecord {
        id: t.id.clone(),
        name: name.to_owned(),
        role: role.as_str().to_owned(),
        // An admin's scope is every tenant; say so in listings.
        tenants: if role == super::Role::Admin && tenants.is_empty() {
            vec!["*".to_owned()]
        } else {
            tenants.to_vec()
        },
        created_unix: now,
        expires_unix: ttl
            .map(|d| now.saturating_add(i64::try_from(d.as_secs()).unwrap_or(i64::MAX))),
        revoked: false,
        created_by: created_by.to_owned(),
    };
    store.put_token(&t.hash, &record).await?;
    tracing::info!(token = %record.id, name, role = %role, created_by, "API token issued");
    Ok((record, t.secret))
}

/// Whether a presented bearer value is shaped like one of our tokens.
#[must_use]
pub fn looks_like_token(s: &str) -> bool {
    s.strip_prefix(PREFIX)
        .is_some_and(|rest| rest.len() == 43 && URL_SAFE_NO_PAD.decode(rest).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_are_random_and_hash_to_their_id() {
        let a = generate();
        let b = generate();
        assert_ne!(a.secret, b.secret);
        assert!(looks_like_token(&a.secret), "{}", a.secret);
        assert_eq!(hash(&a.secret), a.hash);
        assert_eq!(a.hash.len(), 64);
        assert!(a.id.starts_with("tok-") && a.hash.starts_with(&a.id[4..]));
        assert!(!format!("{a:?}").contains(&a.secret));
        assert!(!looks_like_token("rpt_short"));
        assert!(!looks_like_token("eyJ.a.b"));
    }
}
