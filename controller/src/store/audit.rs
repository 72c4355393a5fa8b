//! The audit log: an append-only tree keyed by a monotonic id.
//!
//! Records are only ever inserted under a fresh id (compare-and-swap from
//! nothing), never changed or removed through any API, and flushed before
//! the audited call answers.

use serde::{Deserialize, Serialize};

use super::{Scan, Store, StoreError, decode, encode, trees};

/// One audited call.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AuditRecord {
    /// Monotonic id (set by [`Store::append_audit`]).
    pub id: u64,
    /// Unix milliseconds.
    pub time_unix_ms: i64,
    /// Who (empty when unauthenticated).
    pub user: String,
    /// Role, when authenticated.
    pub role: String,
    /// `token:tok-…`, `jwt`, `certificate` or `none`.
    pub auth: String,
    /// Client address.
    pub peer: String,
    /// `ServiceManager/ApplyService`.
    pub method: String,
    /// Tenant concerned, if any.
    pub tenant: String,
    /// Service concerned (`tenant/name`), if any.
    pub service: String,
    /// The request as JSON, secrets redacted.
    pub request: String,
    /// gRPC status code name.
    pub code: String,
    /// Status message (empty on success).
    pub message: String,
    /// Transaction created by the call.
    pub transaction: Option<String>,
}

/// Which records a query wants.
#[derive(Debug, Clone, Default)]
pub struct AuditFilter {
    /// Not before, Unix ms.
    pub since_ms: Option<i64>,
    /// Not after, Unix ms.
    pub until_ms: Option<i64>,
    /// Exact user.
    pub user: Option<String>,
    /// Exact tenant.
    pub tenant: Option<String>,
    /// `tenant/name` or bare name.
    pub service: Option<String>,
    /// At most this many (newest first).
    pub limit: usize,
}

impl AuditFilter {
    /// Whether `r` passes every set criterion.
    #[must_use]
    pub fn matches(&self, r: &AuditRecord) -> bool {
        self.since_ms.is_none_or(|s| r.time_unix_ms >= s)
            && self.until_ms.is_none_or(|u| r.time_unix_ms <= u)
            && self.user.as_ref().is_none_or(|u| &r.user == u)
            && self.tenant.as_ref().is_none_or(|t| &r.tenant == t)
            && self.service.as_ref().is_none_or(|s| {
                &r.service == s || r.service.rsplit_once('/').is_some_and(|(_, n)| n == s)
            })
    }
}

impl Store {
    /// Appends a record under a new id, flushes, and returns the id.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn append_audit(&self, mut record: AuditRecord) -> Result<u64, StoreError> {
        loop {
            record.id = self.kv.generate_id()?;
            let bytes = encode("audit record", &record)?;
            if self
                .kv
                .cas(trees::AUDIT, &record.id.to_be_bytes(), None, Some(bytes))?
            {
                break;
            }
        }
        self.flush().await?;
        Ok(record.id)
    }

    /// Records matching `filter`, newest first, and a predicate the caller
    /// adds (tenant scoping).
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn audit_records(
        &self,
        filter: &AuditFilter,
        visible: impl Fn(&AuditRecord) -> bool,
    ) -> Result<Vec<AuditRecord>, StoreError> {
        let mut out = Vec::new();
        if filter.limit == 0 {
            return Ok(out);
        }
        self.kv.scan(trees::AUDIT, Scan::Rev, &mut |k, v| {
            let r: AuditRecord = decode("audit record", k, v)?;
            if filter.since_ms.is_some_and(|s| r.time_unix_ms < s - 60_000) {
                // Ids grow with time (up to the few ms between taking the
                // time and the id): a minute earlier, everything is older.
                return Ok(false);
            }
            if filter.matches(&r) && visible(&r) {
                out.push(r);
            }
            Ok(out.len() < filter.limit)
        })?;
        Ok(out)
    }
}
