//! Access (tokens, role bindings, who-am-I), the audit log and secret
//! rotation.

use rampart_proto::v1::{
    self as pb, access_manager_server::AccessManager, audit_log_server::AuditLog,
    secret_manager_server::SecretManager,
};
use serde_json::json;
use tonic::{Request, Response, Status};

use super::{Api, secrets_status, store_status};
use crate::{
    auth::{Caller, Role, Tenants, tokens, valid_name},
    store::{
        access::{RoleBinding, TokenRecord},
        audit::{AuditFilter, AuditRecord},
        now_unix_ms,
    },
};

fn ts(secs: i64) -> Option<prost_types::Timestamp> {
    (secs > 0).then_some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn token_pb(t: &TokenRecord) -> pb::TokenInfo {
    pb::TokenInfo {
        id: t.id.clone(),
        name: t.name.clone(),
        role: t.role.clone(),
        tenants: t.tenants.clone(),
        created: ts(t.created_unix),
        expires: t.expires_unix.and_then(ts),
        revoked: t.revoked,
        created_by: t.created_by.clone(),
    }
}

fn binding_pb(b: &RoleBinding) -> pb::RoleBinding {
    pb::RoleBinding {
        user: b.user.clone(),
        role: b.role.clone(),
        tenants: b.tenants.clone(),
        created: ts(b.created_unix),
        created_by: b.created_by.clone(),
    }
}

fn audit_pb(r: &AuditRecord) -> pb::AuditRecord {
    pb::AuditRecord {
        id: r.id,
        time: Some(prost_types::Timestamp {
            seconds: r.time_unix_ms.div_euclid(1000),
            nanos: i32::try_from(r.time_unix_ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
        }),
        user: r.user.clone(),
        role: r.role.clone(),
        peer: r.peer.clone(),
        method: r.method.clone(),
        tenant: r.tenant.clone(),
        service: r.service.clone(),
        request: r.request.clone(),
        code: r.code.clone(),
        message: r.message.clone(),
        transaction_id: r.transaction.clone().unwrap_or_default(),
        auth_method: r.auth.clone(),
    }
}

/// Parses and checks a role with its tenants.
fn grant(role: &str, tenants: &[String]) -> Result<Role, Status> {
    let r = Role::parse(role).map_err(|e| Status::invalid_argument(format!("role: {e}")))?;
    Tenants::for_role(r, tenants).map_err(|e| Status::invalid_argument(format!("tenants: {e}")))?;
    Ok(r)
}

fn name_arg<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if valid_name(value) {
        Ok(value)
    } else {
        Err(Status::invalid_argument(format!(
            "{field}: {value:?} is not a valid name (1-128 of a-z A-Z 0-9 - _ . @)"
        )))
    }
}

/// Whether an audit record is visible to the caller: all for callers of
/// every tenant; otherwise records of their tenants and their own calls.
fn audit_visible(caller: &Caller, r: &AuditRecord) -> bool {
    match &caller.tenants {
        Tenants::All => true,
        Tenants::Only(_) => {
            r.user == caller.user
                || (!r.tenant.is_empty() && r.tenant.split(',').all(|t| caller.tenants.contains(t)))
        }
    }
}

#[tonic::async_trait]
impl AccessManager for Api {
    async fn who_am_i(
        &self,
        request: Request<pb::WhoAmIRequest>,
    ) -> Result<Response<pb::WhoAmIResponse>, Status> {
        let call = Self::call(&request, json!(null))?;
        super::respond(async {
            let c = &call.caller;
            Ok(pb::WhoAmIResponse {
                user: c.user.clone(),
                role: c.role.as_str().to_owned(),
                tenants: c.tenants.to_vec(),
                auth_method: c.method.as_str().to_owned(),
                permissions: c
                    .role
                    .permissions()
                    .iter()
                    .map(|p| p.as_str().to_owned())
                    .collect(),
            })
        })
        .await
    }

    async fn create_token(
        &self,
        request: Request<pb::CreateTokenRequest>,
    ) -> Result<Response<pb::CreateTokenResponse>, Status> {
        let r = request.get_ref();
        let summary = json!({"name": r.name, "role": r.role, "tenants": r.tenants, "ttlSeconds": r.ttl_seconds});
        let call = Self::call(&request, summary)?;
        let req = request.into_inner();
        super::respond(async {
            let name = name_arg(&req.name, "name")?;
            let role = grant(&req.role, &req.tenants)?;
            let ttl =
                (req.ttl_seconds > 0).then(|| std::time::Duration::from_secs(req.ttl_seconds));
            let (record, secret) = tokens::issue(
                &self.store,
                name,
                role,
                &req.tenants,
                ttl,
                &call.caller.user,
            )
            .await
            .map_err(store_status)?;
            call.note(|n| n.tenant = req.tenants.join(","));
            Ok(pb::CreateTokenResponse {
                token: Some(token_pb(&record)),
                secret,
            })
        })
        .await
    }

    async fn list_tokens(
        &self,
        request: Request<pb::ListTokensRequest>,
    ) -> Result<Response<pb::ListTokensResponse>, Status> {
        Self::call(&request, json!(null))?;
        super::respond(async {
            let tokens = self.store.tokens().map_err(store_status)?;
            Ok(pb::ListTokensResponse {
                tokens: tokens.iter().map(token_pb).collect(),
            })
        })
        .await
    }

    async fn revoke_token(
        &self,
        request: Request<pb::RevokeTokenRequest>,
    ) -> Result<Response<pb::RevokeTokenResponse>, Status> {
        let call = Self::call(&request, json!({"id": request.get_ref().id}))?;
        let req = request.into_inner();
        super::respond(async {
            let t = self
                .store
                .revoke_token(&req.id)
                .await
                .map_err(store_status)?
                .ok_or_else(|| Status::not_found(format!("token {:?} not found", req.id)))?;
            tracing::info!(token = %t.id, by = %call.caller.user, "API token revoked");
            Ok(pb::RevokeTokenResponse {
                token: Some(token_pb(&t)),
            })
        })
        .await
    }

    async fn bind_user(
        &self,
        request: Request<pb::BindUserRequest>,
    ) -> Result<Response<pb::RoleBinding>, Status> {
        let r = request.get_ref();
        let summary = json!({"user": r.user, "role": r.role, "tenants": r.tenants});
        let call = Self::call(&request, summary)?;
        let req = request.into_inner();
        super::respond(async {
            let user = name_arg(&req.user, "user")?;
            let role = grant(&req.role, &req.tenants)?;
            let binding = RoleBinding {
                user: user.to_owned(),
                role: role.as_str().to_owned(),
                tenants: req.tenants.clone(),
                created_unix: now_unix_ms() / 1000,
                created_by: call.caller.user.clone(),
            };
            self.store
                .put_binding(&binding)
                .await
                .map_err(store_status)?;
            call.note(|n| n.tenant = req.tenants.join(","));
            Ok(binding_pb(&binding))
        })
        .await
    }

    async fn unbind_user(
        &self,
        request: Request<pb::UnbindUserRequest>,
    ) -> Result<Response<pb::UnbindUserResponse>, Status> {
        Self::call(&request, json!({"user": request.get_ref().user}))?;
        let req = request.into_inner();
        super::respond(async {
            if !self
                .store
                .remove_binding(&req.user)
                .await
                .map_err(store_status)?
            {
                return Err(Status::not_found(format!(
                    "no binding for user {:?}",
                    req.user
                )));
            }
            Ok(pb::UnbindUserResponse {})
        })
        .await
    }

    async fn list_bindings(
        &self,
        request: Request<pb::ListBindingsRequest>,
    ) -> Result<Response<pb::ListBindingsResponse>, Status> {
        Self::call(&request, json!(null))?;
        super::respond(async {
            let bindings = self.store.bindings().map_err(store_status)?;
            Ok(pb::ListBindingsResponse {
                bindings: bindings.iter().map(binding_pb).collect(),
            })
        })
        .await
    }
}

fn ms(t: Option<&prost_types::Timestamp>) -> Option<i64> {
    t.map(|t| t.seconds * 1000 + i64::from(t.nanos / 1_000_000))
}

#[tonic::async_trait]
impl AuditLog for Api {
    async fn query_audit(
        &self,
        request: Request<pb::QueryAuditRequest>,
    ) -> Result<Response<pb::QueryAuditResponse>, Status> {
        let call = Self::call(&request, json!(null))?;
        let req = request.into_inner();
        super::respond(async {
            let some = |s: &str| (!s.is_empty()).then(|| s.to_owned());
            let filter = AuditFilter {
                since_ms: ms(req.since.as_ref()),
                until_ms: ms(req.until.as_ref()),
                user: some(&req.user),
                tenant: some(&req.tenant),
                service: some(&req.service),
                limit: if req.limit == 0 {
                    1000
                } else {
                    req.limit.min(100_000) as usize
                },
            };
            let records = self
                .store
                .audit_records(&filter, |r| audit_visible(&call.caller, r))
                .map_err(store_status)?;
            Ok(pb::QueryAuditResponse {
                records: records.iter().map(audit_pb).collect(),
            })
        })
        .await
    }
}

#[tonic::async_trait]
impl SecretManager for Api {
    async fn rotate_secrets(
        &self,
        request: Request<pb::RotateSecretsRequest>,
    ) -> Result<Response<pb::RotateSecretsResponse>, Status> {
        Self::call(&request, json!({}))?;
        super::respond(async {
            let report = self
                .store
                .reencrypt_secrets()
                .await
                .map_err(secrets_status)?;
            let key_id = self.store.secret_key_id().unwrap_or_default();
            tracing::info!(
                reencrypted = report.reencrypted,
                total = report.total,
                key_id,
                "secrets re-encrypted"
            );
            Ok(pb::RotateSecretsResponse {
                reencrypted: report.reencrypted,
                total: report.total,
                key_id,
            })
        })
        .await
    }
}
