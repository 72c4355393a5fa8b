//! `rampartctl audit [--since 1h] ...`: the audit log (`-o jsonl` for a SIEM).

use clap::Args;
use rampart_proto::v1::{self as pb, audit_log_client::AuditLogClient};

use crate::{connect::Connection, error::Failure, input::time_arg, output::Output};

/// Query the audit log (`-o jsonl` for a SIEM).
#[derive(Debug, Args)]
pub struct Audit {
    /// Only records newer than this (`1h`, `7d`) or since a time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only records older than this (same forms).
    #[arg(long)]
    until: Option<String>,
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this service (`name` or `tenant/name`).
    #[arg(long)]
    service: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

impl Audit {
    /// Queries and prints the records.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let since = self.since.as_deref().map(|s| time_arg("since", s));
        let until = self.until.as_deref().map(|s| time_arg("until", s));
        let req = pb::QueryAuditRequest {
            since: since.transpose()?,
            until: until.transpose()?,
            user: self.user.unwrap_or_default(),
            tenant: self.tenant.unwrap_or_default(),
            service: self.service.unwrap_or_default(),
            limit: self.limit,
        };
        let resp = AuditLogClient::new(conn.connect().await?)
            .query_audit(req)
            .await?;
        out.audit(&resp.into_inner().records);
        Ok(())
    }
}
