//! `rampartctl whoami`.

use rampart_proto::v1::{self as pb, access_manager_client::AccessManagerClient};

use crate::{connect::Connection, error::Failure, output::Output};

/// Prints who rampartd thinks the caller is.
pub async fn run(conn: &Connection, out: &Output) -> Result<(), Failure> {
    let w = AccessManagerClient::new(conn.connect().await?)
        .who_am_i(pb::WhoAmIRequest {})
        .await?;
    out.whoami(&w.into_inner());
    Ok(())
}
