//! `FleetManager`, the management API of the fleet (rampartctl agents ...),
//! behind the same auth and audit layers as the rest of the API (RBAC
//! entries in `auth/rbac.rs`).

use std::{collections::BTreeMap, time::Duration};

use rampart_proto::v1::{self as pb, fleet_manager_server::FleetManager};
use tonic::{Request, Response, Status};

use super::Fleet;
use crate::auth::{Caller, Permission, audit::AuditNote, denied};

/// `FleetManager` over a [`Fleet`].
#[derive(Debug, Clone)]
pub struct FleetApi(pub Fleet);

fn caller<T>(r: &Request<T>) -> Result<Caller, Status> {
    r.extensions()
        .get::<Caller>()
        .cloned()
        .ok_or_else(|| Status::unauthenticated("request did not pass authentication"))
}

/// Puts the request, as the audit log keeps it, on the audit layer's note.
fn audited<T>(r: &Request<T>, request: serde_json::Value) -> Result<(), Status> {
    let note = r
        .extensions()
        .get::<AuditNote>()
        .ok_or_else(|| Status::internal("request did not pass the audit layer"))?;
    note.update(|n| n.request = request);
    Ok(())
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, Status> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(e.to_string()))?
}

#[tonic::async_trait]
impl FleetManager for FleetApi {
    async fn list_agents(
        &self,
        request: Request<pb::ListAgentsRequest>,
    ) -> Result<Response<pb::ListAgentsResponse>, Status> {
        caller(&request)?;
        let f = self.0.clone();
        let agents = blocking(move || f.list()).await?;
        Ok(Response::new(pb::ListAgentsResponse { agents }))
    }

    async fn create_enroll_token(
        &self,
        request: Request<pb::CreateEnrollTokenRequest>,
    ) -> Result<Response<pb::CreateEnrollTokenResponse>, Status> {
        let who = caller(&request)?;
        // The token itself never reaches the audit log.
        let r = request.get_ref();
        let summary = serde_json::json!({ "ttl_secs": r.ttl_secs, "labels": r.labels });
        audited(&request, summary)?;
        let req = request.into_inner();
        let ttl = Duration::from_secs(if req.ttl_secs == 0 {
            3600
        } else {
            req.ttl_secs
        });
        if ttl > Duration::from_secs(30 * 86_400) {
            return Err(Status::invalid_argument(
                "ttl_secs: at most 30 days (2592000)",
            ));
        }
        let labels: BTreeMap<String, String> = req.labels.into_iter().collect();
        let f = self.0.clone();
        let (token, expires_ms) = blocking(move || f.create_token(ttl, labels)).await?;
        tracing::info!(user = who.user, expires_ms, "enrollment token created");
        Ok(Response::new(pb::CreateEnrollTokenResponse {
            token,
            expires_ms,
        }))
    }

    async fn revoke_agent(
        &self,
        request: Request<pb::RevokeAgentRequest>,
    ) -> Result<Response<pb::RevokeAgentResponse>, Status> {
        let who = caller(&request)?;
        audited(
            &request,
            serde_json::json!({ "agent_id": request.get_ref().agent_id }),
        )?;
        let id = request.into_inner().agent_id;
        let f = self.0.clone();
        let idc = id.clone();
        let revoked = blocking(move || f.revoke(&idc)).await.and_then(|found| {
            found
                .then_some(true)
                .ok_or_else(|| Status::not_found(format!("agent {id:?} is not enrolled")))
        })?;
        tracing::warn!(user = who.user, agent = id, "agent revoked by operator");
        Ok(Response::new(pb::RevokeAgentResponse { revoked }))
    }

    async fn get_service_counters(
        &self,
        request: Request<pb::GetServiceCountersRequest>,
    ) -> Result<Response<pb::GetServiceCountersResponse>, Status> {
        let who = caller(&request)?;
        let req = request.into_inner();
        if !who.may(Permission::ServicesRead, &req.tenant) {
            return Err(denied(Permission::ServicesRead, Some(&req.tenant)));
        }
        let rules = self
            .0
            .aggregate(Some((&req.tenant, &req.service)))
            .into_iter()
            .map(
                |((_, _, sequence), (packets, bytes, agents))| pb::RuleHits {
                    sequence,
                    packets,
                    bytes,
                    agents,
                },
            )
            .collect();
        Ok(Response::new(pb::GetServiceCountersResponse { rules }))
    }
}
