//! Host-agent fleet records: one-time enrollment tokens (stored as SHA-256
//! hashes only) and the agent registry. Two trees of their own so the
//! fleet never contends with service or transaction writes.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use super::{Scan, Store, StoreError, decode, encode, kv::Op, trees};

const TOKENS: &str = trees::FLEET_TOKENS;
const AGENTS: &str = trees::FLEET_AGENTS;

/// An enrollment token as stored: its hash is the key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TokenRecord {
    /// Unix ms after which the token is refused.
    pub expires_ms: i64,
    /// Labels given to agents enrolled with it.
    pub labels: BTreeMap<String, String>,
    /// Set (atomically) by the one enrollment that used it.
    pub used_by: Option<String>,
}

/// Why a token was refused: each reason is reported as such.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenUse {
    /// Consumed now; the caller may enroll.
    Consumed(TokenRecord),
    /// No such token.
    Unknown,
    /// Already used by the named agent.
    Reused(String),
    /// Past its expiry.
    Expired,
}

/// One enrolled agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct AgentRecord {
    /// Identity (certificate CN and `rampart://agent/<id>` SAN).
    pub id: String,
    /// Host name given at enrollment.
    pub hostname: String,
    /// Labels the certificate is bound to (host services select on them).
    pub labels: BTreeMap<String, String>,
    /// SHA-256 (hex) of the DER of every certificate currently accepted:
    /// the newest and, during rotation, the previous one.
    pub cert_fingerprints: Vec<String>,
    /// Expiry of the newest certificate, Unix seconds.
    pub cert_not_after: i64,
    /// Revoked agents are refused at every connection.
    pub revoked: bool,
    /// Enrollment time, Unix ms.
    pub enrolled_ms: i64,
    /// Version of the latest policy computed for the agent (monotonic).
    pub desired_version: u64,
    /// Hash of that policy (version zeroed).
    pub desired_hash: String,
    /// Version the agent last acknowledged as enforced.
    pub applied_version: u64,
    /// Hash of the policy the agent enforces.
    pub applied_hash: String,
    /// The agent's last failure report (or a policy conflict), if any.
    pub last_error: String,
}

impl Store {
    /// Stores a new enrollment token under `hash`.
    ///
    /// # Errors
    /// [`StoreError`] on a storage failure.
    pub fn put_enroll_token(&self, hash: &str, rec: &TokenRecord) -> Result<(), StoreError> {
        self.kv
            .insert(TOKENS, hash.as_bytes(), encode("enroll token", rec)?)
    }

    /// Marks the token `hash` used by `agent` if it is unused and unexpired:
    /// compare-and-swap, so two enrollments racing with one token cannot
    /// both win.
    ///
    /// # Errors
    /// [`StoreError`] on a storage failure or an unreadable record.
    pub fn consume_enroll_token(
        &self,
        hash: &str,
        agent: &str,
        now_ms: i64,
    ) -> Result<TokenUse, StoreError> {
        loop {
            let Some(old) = self.kv.get(TOKENS, hash.as_bytes())? else {
                return Ok(TokenUse::Unknown);
            };
            let rec: TokenRecord = decode("enroll token", hash.as_bytes(), &old)?;
            if let Some(by) = rec.used_by {
                return Ok(TokenUse::Reused(by));
            }
            if rec.expires_ms <= now_ms {
                return Ok(TokenUse::Expired);
            }
            let mut used = rec.clone();
            used.used_by = Some(agent.to_owned());
            let new = encode("enroll token", &used)?;
            if self
                .kv
                .cas(TOKENS, hash.as_bytes(), Some(&old), Some(new))?
            {
                return Ok(TokenUse::Consumed(rec));
            }
        }
    }

    /// Writes an agent record.
    ///
    /// # Errors
    /// [`StoreError`] on a storage failure.
    pub fn put_agent(&self, rec: &AgentRecord) -> Result<(), StoreError> {
        self.kv
            .insert(AGENTS, rec.id.as_bytes(), encode("agent", rec)?)
    }

    /// Writes many agent records in one atomic batch (a policy change that
    /// versions the whole fleet at once). On etcd, atomic per 128 records
    /// (etcd's `--max-txn-ops`): each agent's record is whole either way.
    ///
    /// # Errors
    /// [`StoreError`] on a storage failure.
    pub fn put_agents(&self, recs: &[AgentRecord]) -> Result<(), StoreError> {
        let ops = recs
            .iter()
            .map(|rec| {
                Ok(Op {
                    tree: AGENTS,
                    key: rec.id.as_bytes().to_vec(),
                    value: Some(encode("agent", rec)?),
                })
            })
            .collect::<Result<Vec<_>, StoreError>>()?;
        self.kv.batch(ops)
    }

    /// One agent.
    ///
    /// # Errors
    /// [`StoreError`] on a storage failure or an unreadable record.
    pub fn agent(&self, id: &str) -> Result<Option<AgentRecord>, StoreError> {
        self.kv
            .get(AGENTS, id.as_bytes())?
            .map(|v| decode("agent", id.as_bytes(), &v))
            .transpose()
    }

    /// Every agent, by id.
    ///
    /// # Errors
    /// [`StoreError`] on a storage failure or an unreadable record.
    pub fn agents(&self) -> Result<BTreeMap<String, AgentRecord>, StoreError> {
        let mut out = BTreeMap::new();
        self.kv.scan(AGENTS, Scan::All, &mut |k, v| {
            let rec: AgentRecord = decode("agent", k, v)?;
            out.insert(rec.id.clone(), rec);
            Ok(true)
        })?;
        Ok(out)
    }
}
