//! `rampartctl users bind|unbind|list`.

use clap::Subcommand;
use rampart_proto::v1::{self as pb, access_manager_client::AccessManagerClient};

use crate::{connect::Connection, error::Failure, output::Output};

/// Role bindings of client-certificate users.
#[derive(Debug, Subcommand)]
pub enum Users {
    /// Grant a role to a certificate user (its CN or rampart://user/ SAN).
    Bind {
        /// User name.
        name: String,
        /// admin, operator, tenant or viewer.
        #[arg(long)]
        role: String,
        /// Tenant granted (repeatable; "*" for all).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
    /// Remove a user's binding.
    Unbind {
        /// User name.
        name: String,
    },
    /// List bindings.
    List,
}

impl Users {
    /// Runs the action.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let mut c = AccessManagerClient::new(conn.connect().await?);
        match self {
            Users::Bind {
                name,
                role,
                tenants,
            } => {
                let req = pb::BindUserRequest {
                    user: name,
                    role,
                    tenants,
                };
                out.bindings(&[c.bind_user(req).await?.into_inner()]);
            }
            Users::Unbind { name } => {
                c.unbind_user(pb::UnbindUserRequest { user: name.clone() })
                    .await?;
                out.message(&format!("binding of {name} removed"));
            }
            Users::List => {
                let resp = c.list_bindings(pb::ListBindingsRequest {}).await?;
                out.bindings(&resp.into_inner().bindings);
            }
        }
        Ok(())
    }
}
