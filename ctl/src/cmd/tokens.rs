//! `rampartctl tokens create|list|revoke`.

use clap::Subcommand;
use rampart_proto::v1::{self as pb, access_manager_client::AccessManagerClient};

use crate::{connect::Connection, error::Failure, input::ttl_seconds, output::Output};

/// Issue, list and revoke API tokens.
#[derive(Debug, Subcommand)]
pub enum Tokens {
    /// Issue a token; its secret is printed once.
    Create {
        /// A label ("ci", "alice-laptop").
        #[arg(long)]
        name: String,
        /// admin, operator, tenant or viewer.
        #[arg(long)]
        role: String,
        /// Tenant granted (repeatable; "*" for all).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Lifetime (`24h`, `30d`) or `never`.
        #[arg(long, default_value = "30d")]
        ttl: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token; it stops working at once.
    Revoke {
        /// Token id (`tok-…`).
        id: String,
    },
}

impl Tokens {
    /// Runs the action.
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let mut c = AccessManagerClient::new(conn.connect().await?);
        match self {
            Tokens::Create {
                name,
                role,
                tenants,
                ttl,
            } => {
                let req = pb::CreateTokenRequest {
                    name,
                    role,
                    tenants,
                    ttl_seconds: ttl_seconds(&ttl)?,
                };
                out.new_token(&c.create_token(req).await?.into_inner());
            }
            Tokens::List => {
                let resp = c.list_tokens(pb::ListTokensRequest {}).await?;
                out.tokens(&resp.into_inner().tokens);
            }
            Tokens::Revoke { id } => {
                let t = c.revoke_token(pb::RevokeTokenRequest { id }).await?;
                let id = t.into_inner().token.map(|t| t.id).unwrap_or_default();
                out.message(&format!("token {id} revoked"));
            }
        }
        Ok(())
    }
}
