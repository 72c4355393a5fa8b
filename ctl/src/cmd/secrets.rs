//! `rampartctl secrets rotate`.

use clap::Subcommand;
use rampart_proto::v1::{self as pb, secret_manager_client::SecretManagerClient};

use crate::{connect::Connection, error::Failure, output::Output};

/// Encrypted device credentials.
#[derive(Debug, Subcommand)]
pub enum Secrets {
    /// Re-encrypt every stored credential under rampartd's current key.
    Rotate,
}

impl Secrets {
    /// Rotates and reports how many records were re-encrypted.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let Secrets::Rotate = self;
        let r = SecretManagerClient::new(conn.connect().await?)
            .rotate_secrets(pb::RotateSecretsRequest {})
            .await?
            .into_inner();
        out.message(&format!(
            "re-encrypted {} of {} credential record(s); all are under key {}",
            r.reencrypted, r.total, r.key_id
        ));
        Ok(())
    }
}
