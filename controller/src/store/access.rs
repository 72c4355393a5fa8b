//! API tokens (by hash) and role bindings of certificate users.
//!
//! Tokens are keyed by the hex SHA-256 of their secret, so authenticating a
//! request is one point lookup; the secret itself is never stored. Records
//! are kept after revocation so the audit trail can still name them.

use serde::{Deserialize, Serialize};

use super::{Scan, Store, StoreError, decode, encode, trees};

/// A stored API token (without its secret).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Public id (`tok-` + 12 hex digits of the hash).
    pub id: String,
    /// Label.
    pub name: String,
    /// Role name.
    pub role: String,
    /// Granted tenants (`*` = all).
    pub tenants: Vec<String>,
    /// Unix seconds.
    pub created_unix: i64,
    /// Unix seconds; `None` = never.
    pub expires_unix: Option<i64>,
    /// Revoked tokens stop working at once.
    pub revoked: bool,
    /// Who issued it.
    pub created_by: String,
}

/// A role granted to a client-certificate user.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleBinding {
    /// Certificate user name.
    pub user: String,
    /// Role name.
    pub role: String,
    /// Granted tenants (`*` = all).
    pub tenants: Vec<String>,
    /// Unix seconds.
    pub created_unix: i64,
    /// Who granted it.
    pub created_by: String,
}

impl Store {
    /// Stores a new token under its hash and flushes.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn put_token(&self, hash: &str, record: &TokenRecord) -> Result<(), StoreError> {
        self.kv.insert(
            trees::AUTH_TOKENS,
            hash.as_bytes(),
            encode("token", record)?,
        )?;
        self.flush().await
    }

    /// The token whose secret hashes to `hash`.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn token_by_hash(&self, hash: &str) -> Result<Option<TokenRecord>, StoreError> {
        self.kv
            .get(trees::AUTH_TOKENS, hash.as_bytes())?
            .map(|b| decode("token", hash.as_bytes(), &b))
            .transpose()
    }

    /// Every token, oldest first.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn tokens(&self) -> Result<Vec<TokenRecord>, StoreError> {
        let mut out = Vec::new();
        self.kv.scan(trees::AUTH_TOKENS, Scan::All, &mut |k, v| {
            out.push(decode::<TokenRecord>("token", k, v)?);
            Ok(true)
        })?;
        out.sort_by_key(|t| t.created_unix);
        Ok(out)
    }

    /// Marks the token with public id `id` revoked and flushes; `None` when
    /// there is no such token.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn revoke_token(&self, id: &str) -> Result<Option<TokenRecord>, StoreError> {
        let Some(prefix) = id.strip_prefix("tok-").filter(|p| p.len() == 12) else {
            return Ok(None);
        };
        let mut matching = Vec::new();
        self.kv.scan(
            trees::AUTH_TOKENS,
            Scan::From(prefix.as_bytes()),
            &mut |k, v| {
                if !k.starts_with(prefix.as_bytes()) {
                    return Ok(false);
                }
                matching.push((k.to_vec(), decode::<TokenRecord>("token", k, v)?));
                Ok(true)
            },
        )?;
        let mut found = None;
        for (k, mut t) in matching {
            t.revoked = true;
            self.kv
                .insert(trees::AUTH_TOKENS, &k, encode("token", &t)?)?;
            found = Some(t);
        }
        if found.is_some() {
            self.flush().await?;
        }
        Ok(found)
    }

    /// Whether any token exists (a fresh store gets a bootstrap token).
    ///
    /// # Errors
    /// Storage failures.
    pub fn has_tokens(&self) -> Result<bool, StoreError> {
        Ok(!self.kv.is_empty(trees::AUTH_TOKENS)?)
    }

    /// Creates or replaces a binding and flushes.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn put_binding(&self, binding: &RoleBinding) -> Result<(), StoreError> {
        self.kv.insert(
            trees::AUTH_BINDINGS,
            binding.user.as_bytes(),
            encode("role binding", binding)?,
        )?;
        self.flush().await
    }

    /// The binding of a certificate user.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn binding(&self, user: &str) -> Result<Option<RoleBinding>, StoreError> {
        self.kv
            .get(trees::AUTH_BINDINGS, user.as_bytes())?
            .map(|b| decode("role binding", user.as_bytes(), &b))
            .transpose()
    }

    /// Every binding, by user.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn bindings(&self) -> Result<Vec<RoleBinding>, StoreError> {
        let mut out = Vec::new();
        self.kv.scan(trees::AUTH_BINDINGS, Scan::All, &mut |k, v| {
            out.push(decode("role binding", k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Removes a binding; whether it existed.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn remove_binding(&self, user: &str) -> Result<bool, StoreError> {
        let existed = self
            .kv
            .remove(trees::AUTH_BINDINGS, user.as_bytes())?
            .is_some();
        self.flush().await?;
        Ok(existed)
    }
}
