//! `rampartctl agents [list|token create|revoke]`.

use clap::Subcommand;
use rampart_proto::v1::{self as pb, fleet_manager_client::FleetManagerClient};

use crate::{
    connect::Connection,
    error::Failure,
    input::{parse_label, ttl_seconds},
    output::Output,
};

/// Host agents: list (default), enrollment tokens, revocation.
#[derive(Debug, Subcommand)]
pub enum Agents {
    /// List agents with state, desired/applied policy versions, last error.
    List,
    /// One-time enrollment tokens.
    Token {
        #[command(subcommand)]
        action: AgentToken,
    },
    /// Revoke an agent: its session is closed and it is refused from now on.
    Revoke {
        /// Agent id (`rampartctl agents`).
        id: String,
    },
}

/// Enrollment token actions.
#[derive(Debug, Subcommand)]
pub enum AgentToken {
    /// Create a single-use enrollment token; printed once.
    Create {
        /// Lifetime (`1h`, `7d`).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Label given to the enrolled agent, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
}

impl Agents {
    /// Runs the action (`None` lists).
    pub async fn run(action: Option<Self>, conn: &Connection, out: &Output) -> Result<(), Failure> {
        let mut c = FleetManagerClient::new(conn.connect().await?);
        match action.unwrap_or(Agents::List) {
            Agents::List => {
                let r = c.list_agents(pb::ListAgentsRequest {}).await?;
                out.agents(&r.into_inner().agents);
            }
            Agents::Token {
                action: AgentToken::Create { ttl, labels },
            } => {
                let ttl_secs = ttl_seconds(&ttl)?;
                if ttl_secs == 0 {
                    return Err(Failure::usage("--ttl: enrollment tokens always expire"));
                }
                let req = pb::CreateEnrollTokenRequest {
                    ttl_secs,
                    labels: labels.into_iter().collect(),
                };
                out.enroll_token(&c.create_enroll_token(req).await?.into_inner());
            }
            Agents::Revoke { id } => {
                c.revoke_agent(pb::RevokeAgentRequest {
                    agent_id: id.clone(),
                })
                .await?;
                out.message(&format!("agent {id} revoked"));
            }
        }
        Ok(())
    }
}
