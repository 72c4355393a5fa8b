//! `rampartctl delete service NAME [--tenant T]`.

use clap::Subcommand;
use rampart_proto::v1::{self as pb, service_manager_client::ServiceManagerClient};

use crate::{connect::Connection, error::Failure, output::Output};

/// Delete a service.
#[derive(Debug, Subcommand)]
pub enum Delete {
    /// Delete a service: its configuration is removed from every target in
    /// one transaction.
    Service {
        /// Service name.
        name: String,
        /// Tenant (needed when the name exists in several).
        #[arg(long)]
        tenant: Option<String>,
    },
}

impl Delete {
    /// Deletes and prints the transaction id.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let Delete::Service { name, tenant } = self;
        let req = pb::DeleteServiceRequest {
            name,
            tenant: tenant.unwrap_or_default(),
        };
        let resp = ServiceManagerClient::new(conn.connect().await?)
            .delete_service(req)
            .await?
            .into_inner();
        out.message(&format!("deleted ({})", resp.transaction_id));
        Ok(())
    }
}
