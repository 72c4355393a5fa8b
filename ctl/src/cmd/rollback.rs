//! `rampartctl rollback ID [--dry-run]`.

use clap::Args;
use rampart_proto::v1::{self as pb, transaction_manager_client::TransactionManagerClient};

use crate::{connect::Connection, error::Failure, output::Output};

/// Undo a committed transaction (refused when later ones changed the same
/// services).
#[derive(Debug, Args)]
pub struct Rollback {
    /// Transaction id (`txn-N`).
    id: String,
    /// Show the changes only.
    #[arg(long)]
    dry_run: bool,
}

impl Rollback {
    /// Rolls back (or shows the plan) and prints the new transaction.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let req = pb::RollbackRequest {
            id: self.id,
            dry_run: self.dry_run,
        };
        let t = TransactionManagerClient::new(conn.connect().await?)
            .rollback(req)
            .await?;
        out.transaction(&t.into_inner());
        Ok(())
    }
}
