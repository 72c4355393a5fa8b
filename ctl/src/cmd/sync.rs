//! `rampartctl check-sync [DEVICE]` and `rampartctl sync DEVICE --to-device|--from-device`.

use clap::Args;
use rampart_proto::v1::{self as pb, transaction_manager_client::TransactionManagerClient};

use crate::{connect::Connection, error::Failure, output::Output};

/// Compare devices' running configuration with what Rampart put there
/// (exit code 9 when any device drifted).
#[derive(Debug, Args)]
pub struct CheckSync {
    /// One device (default: every device Rampart configured).
    device: Option<String>,
}

impl CheckSync {
    /// Prints each device's drift; fails with exit code 9 on any.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let req = pb::CheckSyncRequest {
            device: self.device.unwrap_or_default(),
        };
        let resp = TransactionManagerClient::new(conn.connect().await?)
            .check_sync(req)
            .await?
            .into_inner();
        out.check_sync(&resp);
        if resp.devices.iter().any(|d| !d.in_sync) {
            return Err(Failure {
                code: 9,
                message: "drift detected".to_owned(),
            });
        }
        Ok(())
    }
}

/// Resolve drift on a device.
#[derive(Debug, Args)]
pub struct Sync {
    /// Device name.
    device: String,
    /// Re-deploy Rampart's intended configuration.
    #[arg(
        long,
        conflicts_with = "from_device",
        required_unless_present = "from_device"
    )]
    to_device: bool,
    /// Accept the device's configuration as the new baseline.
    #[arg(long)]
    from_device: bool,
}

impl Sync {
    /// Syncs in the chosen direction.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let (direction, words) = if self.to_device {
            (pb::sync_request::Direction::ToDevice, "to the device")
        } else {
            (pb::sync_request::Direction::FromDevice, "from the device")
        };
        let req = pb::SyncRequest {
            device: self.device.clone(),
            direction: direction as i32,
        };
        TransactionManagerClient::new(conn.connect().await?)
            .sync(req)
            .await?;
        out.message(&format!("{} synced {words}", self.device));
        Ok(())
    }
}
