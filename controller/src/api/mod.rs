//! The gRPC management API (tonic): services, devices, transactions, access
//! (tokens, role bindings), the audit log and secrets.
//!
//! Handlers stay thin: they translate between protobuf and the model, call
//! `model` → `txn` → `store`, and map every failure to a status code a client
//! can act on (InvalidArgument with the path and line, NotFound,
//! AlreadyExists, FailedPrecondition, Internal only for real faults).
//!
//! Authentication and the role check happened in the auth layer; handlers
//! take the [`Caller`] it left in the request and scope everything to the
//! caller's tenants: lists are filtered, and a foreign tenant's object gets
//! the same PermissionDenied whether it exists or not. Metrics and the audit
//! record of every mutating call are written by the audit layer
//! ([`crate::auth::audit`]); handlers only fill in its note.

use std::sync::Arc;

use rampart_proto::v1::{
    self as pb, device_manager_server::DeviceManager, service_manager_server::ServiceManager,
    transaction_manager_server::TransactionManager,
};
use serde_json::json;
use tonic::{Request, Response, Status};

use crate::{
    auth::{
        Caller, Permission, Tenants,
        audit::{AuditNote, Note},
        denied,
    },
    model::{self, DocFormat, ModelError, SourceDoc, Validator, device::Device, spec::ServiceSpec},
    store::{self, Store, StoreError, StoredService, TxnRecord, TxnState},
    telemetry::Metrics,
    txn::{Change, Engine, EngineError, Planned},
};

mod access;
mod convert;
mod history;

pub use convert::{diagnostic_to_pb, service_to_pb};

/// Shared state of every API handler. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    store: Store,
    validator: Arc<Validator>,
    metrics: Metrics,
    engine: Engine,
}

impl Api {
    /// Builds the API over a store and a validator.
    #[must_use]
    pub fn new(store: Store, validator: Arc<Validator>, metrics: Metrics, engine: Engine) -> Self {
        Self {
            store,
            validator,
            metrics,
            engine,
        }
    }

    /// Starts a call: the authenticated caller and the audit note (fail
    /// closed when either layer did not run), with the request as the
    /// audit record will show it.
    fn call<T>(request: &Request<T>, summary: serde_json::Value) -> Result<Call, Status> {
        let ext = request.extensions();
        let caller = ext
            .get::<Caller>()
            .cloned()
            .ok_or_else(|| Status::unauthenticated("request did not pass authentication"))?;
        let note = ext
            .get::<AuditNote>()
            .cloned()
            .ok_or_else(|| Status::internal("request did not pass the audit layer"))?;
        note.update(|n| n.request = summary);
        Ok(Call { caller, note })
    }

    /// Validates an apply request and checks the caller may write every
    /// tenant it names, before anything is compiled.
    async fn plan(&self, req: &pb::ApplyServiceRequest, call: &Call) -> Result<Planned, Status> {
        let inventory = self.store.devices().map_err(store_status)?;
        let validator = self.validator.clone();
        let format = match pb::SpecFormat::try_from(req.format) {
            Ok(pb::SpecFormat::Yaml) => DocFormat::Yaml,
            Ok(pb::SpecFormat::Json) => DocFormat::Json,
            _ => DocFormat::Auto,
        };
        let source_name = if req.source_name.is_empty() {
            "<request>".to_owned()
        } else {
            req.source_name.clone()
        };
        let document = req.document.clone();
        let inv = inventory.clone();
        // libyang validation is CPU work; keep it off the async workers.
        let validated = tokio::task::spawn_blocking(move || {
            let doc = SourceDoc {
                text: &document,
                format,
                name: &source_name,
            };
            validator.validate(&doc, &inv)
        })
        .await
        .map_err(|e| Status::internal(format!("validation task failed: {e}")))?
        .map_err(model_status)?;
        let services: Vec<(ServiceSpec, String)> = validated
            .into_iter()
            .map(|v| (v.spec, model::spec::API_VERSION.to_owned()))
            .collect();
        call.note_services(services.iter().map(|(s, _)| s));
        for (spec, _) in &services {
            let tenant = &spec.metadata.tenant;
            if !call.caller.may(Permission::ServicesWrite, tenant) {
                return Err(denied(Permission::ServicesWrite, Some(tenant)));
            }
        }
        let change = Change {
            apply: services,
            delete: Vec::new(),
        };
        self.engine
            .plan(change, &call.caller.author())
            .map_err(txn_status)
    }
}

/// One call in progress: who, and the note its audit record is made from.
struct Call {
    caller: Caller,
    note: AuditNote,
}

/// A handler's result as tonic wants it.
async fn respond<T>(
    body: impl std::future::Future<Output = Result<T, Status>>,
) -> Result<Response<T>, Status> {
    body.await.map(Response::new)
}

impl Call {
    fn note(&self, f: impl FnOnce(&mut Note)) {
        self.note.update(f);
    }

    fn note_services<'a>(&self, specs: impl Iterator<Item = &'a ServiceSpec>) {
        let specs: Vec<&ServiceSpec> = specs.collect();
        self.note(|n| {
            n.tenant = specs
                .iter()
                .map(|s| s.metadata.tenant.as_str())
                .collect::<std::collections::BTreeSet<_>>()
                .into_iter()
                .collect::<Vec<_>>()
                .join(",");
            n.service = specs
                .iter()
                .map(|s| format!("{}/{}", s.metadata.tenant, s.metadata.name))
                .collect::<Vec<_>>()
                .join(",");
        });
    }
}

/// Whether the caller may see a transaction: every service it touched is
/// in the caller's tenants.
fn txn_visible(caller: &Caller, t: &TxnRecord) -> bool {
    match &caller.tenants {
        Tenants::All => true,
        Tenants::Only(_) => t.services.iter().all(|s| {
            s.split_once('/')
                .is_some_and(|(tenant, _)| caller.tenants.contains(tenant))
        }),
    }
}

/// The devices a tenant-role caller may read: those its services target.
fn targeted_devices(
    store: &Store,
    caller: &Caller,
) -> Result<std::collections::BTreeSet<String>, Status> {
    Ok(store
        .services()
        .map_err(store_status)?
        .iter()
        .filter(|s| caller.tenants.contains(&s.spec.metadata.tenant))
        .flat_map(|s| {
            s.spec
                .devices()
                .into_iter()
                .map(str::to_owned)
                .collect::<Vec<_>>()
        })
        .collect())
}

fn device_denied(name: &str) -> Status {
    Status::permission_denied(format!(
        "permission denied: devices:read on device {name:?} is not granted to you (the tenant \
         role reads only devices its own services target)"
    ))
}

fn required<'a>(value: &'a str, field: &str) -> Result<&'a str, Status> {
    if value.trim().is_empty() {
        Err(Status::invalid_argument(format!("{field}: required")))
    } else {
        Ok(value)
    }
}

// ===== error mapping =====

/// Maps validation failures to InvalidArgument, with every diagnostic in the
/// message (one per line) and encoded as `ValidationErrors` details.
fn model_status(e: ModelError) -> Status {
    match e {
        ModelError::Invalid {
            source_name,
            diagnostics,
        } => {
            let details = pb::ValidationErrors {
                diagnostics: diagnostics.iter().map(diagnostic_to_pb).collect(),
                source_name: source_name.clone(),
            };
            let lines: Vec<String> = diagnostics.iter().map(ToString::to_string).collect();
            Status::with_details(
                tonic::Code::InvalidArgument,
                format!("{source_name} is invalid:\n{}", lines.join("\n")),
                prost::Message::encode_to_vec(&details).into(),
            )
        }
        other => Status::internal(other.to_string()),
    }
}

fn store_status(e: StoreError) -> Status {
    match e {
        StoreError::DeviceExists { .. } => Status::already_exists(e.to_string()),
        StoreError::DeviceInUse { .. } => Status::failed_precondition(e.to_string()),
        other => {
            tracing::error!(error = %other, "store failure");
            Status::internal(other.to_string())
        }
    }
}

/// Maps transaction failures to codes a client can act on: a refused or
/// failed change is Aborted (nothing changed anywhere), a plan that cannot
/// be made is FailedPrecondition, an unreachable device Unavailable.
fn txn_status(e: EngineError) -> Status {
    match e {
        EngineError::Compile { .. }
        | EngineError::Conflict { .. }
        | EngineError::RollbackConflict { .. }
        | EngineError::NotRollbackable { .. }
        | EngineError::NoDriver { .. } => Status::failed_precondition(e.to_string()),
        EngineError::Devices { .. } => Status::aborted(e.to_string()),
        EngineError::NotFound { .. } => Status::not_found(e.to_string()),
        EngineError::Device(_) => Status::unavailable(e.to_string()),
        EngineError::Decode { .. } => Status::internal(e.to_string()),
        EngineError::Store(s) => store_status(s),
    }
}

impl Api {
    /// Executes a planned transaction and counts its outcome.
    async fn execute(
        &self,
        plan: Planned,
        operation: &str,
    ) -> Result<(store::TxnRecord, Vec<store::StoredService>), Status> {
        match self.engine.execute(plan).await {
            Ok(done) => {
                self.metrics.transaction(operation, "committed");
                Ok(done)
            }
            Err(e) => {
                self.metrics.transaction(operation, "failed");
                Err(txn_status(e))
            }
        }
    }
}

/// Finds a service by name, optionally scoped to a tenant, among the
/// tenants the caller may use `permission` on. A foreign tenant gets
/// PermissionDenied whether the service exists or not; a bare name only
/// ever matches the caller's tenants.
fn find_service(
    store: &Store,
    caller: &Caller,
    permission: Permission,
    tenant: &str,
    name: &str,
) -> Result<StoredService, Status> {
    let name = required(name, "name")?;
    if !tenant.is_empty() {
        if !caller.may(permission, tenant) {
            return Err(denied(permission, Some(tenant)));
        }
        return store
            .service(tenant, name)
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("service {tenant}/{name} not found")));
    }
    let mut matches: Vec<StoredService> = store
        .services()
        .map_err(store_status)?
        .into_iter()
        .filter(|s| {
            s.spec.metadata.name == name && caller.tenants.contains(&s.spec.metadata.tenant)
        })
        .collect();
    match matches.len() {
        0 => Err(Status::not_found(format!("service {name} not found"))),
        1 => Ok(matches.remove(0)),
        _ => {
            let tenants: Vec<String> = matches
                .iter()
                .map(|s| s.spec.metadata.tenant.clone())
                .collect();
            Err(Status::failed_precondition(format!(
                "service name {name} exists in tenants {}; specify the tenant",
                tenants.join(", ")
            )))
        }
    }
}

// ===== services =====

#[tonic::async_trait]
impl ServiceManager for Api {
    async fn apply_service(
        &self,
        request: Request<pb::ApplyServiceRequest>,
    ) -> Result<Response<pb::ApplyServiceResponse>, Status> {
        let call = Self::call(&request, apply_summary(request.get_ref()))?;
        let req = request.into_inner();
        respond(async {
            let plan = self.plan(&req, &call).await?;
            let may = call.caller.tenant_filter();
            if req.dry_run {
                return Ok(convert::dry_run_response(&plan, &may));
            }
            let rendered = convert::renderings_to_pb(&plan.dry_run_renderings(), &may);
            let (txn, stored) = self.execute(plan, "apply").await?;
            call.note(|n| n.transaction = Some(store::txn_display_id(txn.id)));
            Ok(pb::ApplyServiceResponse {
                services: stored.iter().map(service_to_pb).collect(),
                diagnostics: Vec::new(),
                rendered,
                transaction_id: store::txn_display_id(txn.id),
                dry_run: false,
            })
        })
        .await
    }

    async fn dry_run(
        &self,
        request: Request<pb::ApplyServiceRequest>,
    ) -> Result<Response<pb::ApplyServiceResponse>, Status> {
        let call = Self::call(&request, apply_summary(request.get_ref()))?;
        let req = request.into_inner();
        respond(async {
            let plan = self.plan(&req, &call).await?;
            Ok(convert::dry_run_response(
                &plan,
                &call.caller.tenant_filter(),
            ))
        })
        .await
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::Service>, Status> {
        let call = Self::call(&request, json!(null))?;
        let req = request.into_inner();
        respond(async {
            find_service(
                &self.store,
                &call.caller,
                Permission::ServicesRead,
                &req.tenant,
                &req.name,
            )
            .map(|s| service_to_pb(&s))
        })
        .await
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let call = Self::call(&request, json!(null))?;
        let req = request.into_inner();
        respond(async {
            if !req.tenant.is_empty() && !call.caller.may(Permission::ServicesRead, &req.tenant) {
                return Err(denied(Permission::ServicesRead, Some(&req.tenant)));
            }
            if !req.kind.is_empty() && model::spec::Kind::parse(&req.kind).is_none() {
                return Err(Status::invalid_argument(format!(
                    "kind: unknown kind {:?} (expected one of Firewall, Router, LoadBalancer, \
                     Vpn, SdWan)",
                    req.kind
                )));
            }
            let services = self
                .store
                .services()
                .map_err(store_status)?
                .into_iter()
                .filter(|s| call.caller.tenants.contains(&s.spec.metadata.tenant))
                .filter(|s| req.tenant.is_empty() || s.spec.metadata.tenant == req.tenant)
                .filter(|s| req.kind.is_empty() || s.spec.kind().as_str() == req.kind)
                .map(|s| service_to_pb(&s))
                .collect();
            Ok(pb::ListServicesResponse { services })
        })
        .await
    }

    async fn delete_service(
        &self,
        request: Request<pb::DeleteServiceRequest>,
    ) -> Result<Response<pb::DeleteServiceResponse>, Status> {
        let summary = json!({"name": request.get_ref().name, "tenant": request.get_ref().tenant});
        let call = Self::call(&request, summary)?;
        let req = request.into_inner();
        respond(async {
            call.note(|n| {
                n.tenant.clone_from(&req.tenant);
                n.service = if req.tenant.is_empty() {
                    req.name.clone()
                } else {
                    format!("{}/{}", req.tenant, req.name)
                };
            });
            let svc = find_service(
                &self.store,
                &call.caller,
                Permission::ServicesWrite,
                &req.tenant,
                &req.name,
            )?;
            let md = &svc.spec.metadata;
            call.note_services(std::iter::once(&svc.spec));
            let change = Change {
                apply: Vec::new(),
                delete: vec![format!("{}/{}", md.tenant, md.name)],
            };
            let plan = self
                .engine
                .plan(change, &call.caller.author())
                .map_err(txn_status)?;
            let (txn, _) = self.execute(plan, "delete").await?;
            call.note(|n| n.transaction = Some(store::txn_display_id(txn.id)));
            Ok(pb::DeleteServiceResponse {
                transaction_id: store::txn_display_id(txn.id),
            })
        })
        .await
    }
}

// ===== devices =====

#[tonic::async_trait]
impl DeviceManager for Api {
    async fn add_device(
        &self,
        request: Request<pb::AddDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        Self::call(&request, add_device_summary(request.get_ref()))?;
        let req = request.into_inner();
        respond(async {
            let d = req
                .device
                .ok_or_else(|| Status::invalid_argument("device: required"))?;
            let secret = req.credentials.map(|c| store::secrets::Secret {
                username: c.username,
                password: c.password,
                private_key: c.private_key,
                api_key: c.api_key,
            }).filter(|s| !s.is_empty());
            let platform = convert::platform_from_pb(d.platform)?;
            let device = Device {
                name: d.name,
                platform,
                address: d.address,
                credentials_ref: d.credentials_ref,
                labels: d.labels.into_iter().collect(),
                created_unix: 0,
            };
            self.validator
                .validate_device(&device)
                .map_err(model_status)?;
            if req.replace && secret.is_none() {
                // Keeping the stored credentials must not silently keep
                // ones that no longer decrypt.
                self.store.device_credentials(&device.name).map_err(secrets_status)?;
            }
            let stored = self
                .store
                .put_device(&device, req.replace)
                .map_err(store_status)?;
            if let Some(secret) = &secret
                && let Err(e) = self.store.put_device_credentials(&stored.name, secret).await
            {
                // Never half-apply: a device without the credentials it
                // was added with is not left behind.
                if !req.replace {
                    let _ = self.store.remove_device(&stored.name);
                }
                return Err(secrets_status(e));
            }
            self.store.flush().await.map_err(store_status)?;
            tracing::info!(device = stored.name, platform = %stored.platform, credentials = secret.is_some(), "device added");
            self.device_pb(&stored)
        })
        .await
    }

    async fn get_device(
        &self,
        request: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let call = Self::call(&request, json!(null))?;
        let req = request.into_inner();
        respond(async {
            let name = required(&req.name, "name")?;
            if !call.caller.sees_all_devices()
                && !targeted_devices(&self.store, &call.caller)?.contains(name)
            {
                return Err(device_denied(name));
            }
            let d = self
                .store
                .device(name)
                .map_err(store_status)?
                .ok_or_else(|| Status::not_found(format!("device {name} not found")))?;
            self.device_pb(&d)
        })
        .await
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let call = Self::call(&request, json!(null))?;
        let req = request.into_inner();
        respond(async {
            let visible = if call.caller.sees_all_devices() {
                None
            } else {
                Some(targeted_devices(&self.store, &call.caller)?)
            };
            let devices = self
                .store
                .devices()
                .map_err(store_status)?
                .into_values()
                .filter(|d| visible.as_ref().is_none_or(|v| v.contains(&d.name)))
                .filter(|d| req.selector.iter().all(|(k, v)| d.labels.get(k) == Some(v)))
                .map(|d| self.device_pb(&d))
                .collect::<Result<_, _>>()?;
            Ok(pb::ListDevicesResponse { devices })
        })
        .await
    }

    async fn remove_device(
        &self,
        request: Request<pb::RemoveDeviceRequest>,
    ) -> Result<Response<pb::RemoveDeviceResponse>, Status> {
        let call = Self::call(&request, json!({"name": request.get_ref().name}))?;
        let req = request.into_inner();
        respond(async {
            let name = required(&req.name, "name")?;
            let removed = match self.store.remove_device(name) {
                Ok(r) => r,
                Err(StoreError::DeviceInUse { name, services }) => {
                    return Err(device_in_use(&call.caller, &name, &services));
                }
                Err(e) => return Err(store_status(e)),
            };
            if !removed {
                return Err(Status::not_found(format!("device {name} not found")));
            }
            self.store
                .remove_device_credentials(name)
                .await
                .map_err(store_status)?;
            self.store.flush().await.map_err(store_status)?;
            tracing::info!(device = name, "device removed");
            Ok(pb::RemoveDeviceResponse {})
        })
        .await
    }
}

// ===== transactions =====

#[tonic::async_trait]
impl TransactionManager for Api {
    async fn list_transactions(
        &self,
        request: Request<pb::ListTransactionsRequest>,
    ) -> Result<Response<pb::ListTransactionsResponse>, Status> {
        let call = Self::call(&request, json!(null))?;
        let req = request.into_inner();
        respond(async { history::list(&self.store, &call.caller, &req) }).await
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::Transaction>, Status> {
        let call = Self::call(&request, json!(null))?;
        let req = request.into_inner();
        respond(async {
            let raw = required(&req.id, "id")?;
            let id = store::parse_txn_id(raw).ok_or_else(|| {
                Status::invalid_argument(format!("id: {raw:?} is not a transaction id (txn-N)"))
            })?;
            let foreign = || {
                Status::permission_denied(format!(
                    "permission denied: transactions:read on transaction {raw} is not granted to you"
                ))
            };
            match self.store.txn(id).map_err(store_status)? {
                Some(t) if txn_visible(&call.caller, &t) => Ok(bounded_txn(&t, &call.caller)),
                Some(_) => Err(foreign()),
                // A tenant-scoped caller gets the same answer for a missing
                // transaction as for another tenant's.
                None if call.caller.tenants != Tenants::All => Err(foreign()),
                None => Err(Status::not_found(format!("transaction {raw} not found"))),
            }
        })
        .await
    }

    async fn rollback(
        &self,
        request: Request<pb::RollbackRequest>,
    ) -> Result<Response<pb::Transaction>, Status> {
        let summary = json!({"id": request.get_ref().id, "dry_run": request.get_ref().dry_run});
        let call = Self::call(&request, summary)?;
        let req = request.into_inner();
        respond(async {
            let raw = required(&req.id, "id")?;
            let id = store::parse_txn_id(raw).ok_or_else(|| {
                Status::invalid_argument(format!("id: {raw:?} is not a transaction id (txn-N)"))
            })?;
            let foreign = || {
                Status::permission_denied(format!(
                    "permission denied: services:write on the services of transaction {raw} \
                     is not granted to you"
                ))
            };
            let writable = |t: &TxnRecord| {
                t.services.iter().all(|s| {
                    s.split_once('/').is_some_and(|(tenant, _)| {
                        call.caller.may(Permission::ServicesWrite, tenant)
                    })
                })
            };
            match self.store.txn(id).map_err(store_status)? {
                Some(t) if writable(&t) => {}
                Some(_) => return Err(foreign()),
                None if call.caller.tenants != Tenants::All => return Err(foreign()),
                None => return Err(Status::not_found(format!("transaction {raw} not found"))),
            }
            let author = call.caller.author();
            if req.dry_run {
                let plan = self.engine.plan_rollback(id, &author).map_err(txn_status)?;
                return Ok(bounded_txn(&plan.record, &call.caller));
            }
            match self.engine.rollback(id, &author).await {
                Ok(record) => {
                    self.metrics.transaction("rollback", "committed");
                    call.note(|n| n.transaction = Some(store::txn_display_id(record.id)));
                    Ok(bounded_txn(&record, &call.caller))
                }
                Err(e) => {
                    self.metrics.transaction("rollback", "failed");
                    Err(txn_status(e))
                }
            }
        })
        .await
    }

    async fn check_sync(
        &self,
        request: Request<pb::CheckSyncRequest>,
    ) -> Result<Response<pb::CheckSyncResponse>, Status> {
        Self::call(&request, json!(null))?;
        let req = request.into_inner();
        respond(async {
            let only = (!req.device.is_empty()).then_some(req.device.as_str());
            let reports = self.engine.check_sync(only).await.map_err(txn_status)?;
            for r in &reports {
                self.metrics.set_drift(&r.device, !r.differences.is_empty());
            }
            Ok(pb::CheckSyncResponse {
                devices: reports
                    .into_iter()
                    .map(|r| pb::DeviceSync {
                        in_sync: r.differences.is_empty(),
                        differences: r
                            .differences
                            .into_iter()
                            .map(|d| pb::DriftItem {
                                path: d.path,
                                what: d.what,
                            })
                            .collect(),
                        device: r.device,
                    })
                    .collect(),
            })
        })
        .await
    }

    async fn sync(
        &self,
        request: Request<pb::SyncRequest>,
    ) -> Result<Response<pb::SyncResponse>, Status> {
        let summary =
            json!({"device": request.get_ref().device, "direction": request.get_ref().direction});
        Self::call(&request, summary)?;
        let req = request.into_inner();
        respond(async {
            let device = required(&req.device, "device")?;
            match pb::sync_request::Direction::try_from(req.direction) {
                Ok(pb::sync_request::Direction::ToDevice) => {
                    self.engine.sync_to_device(device).await
                }
                Ok(pb::sync_request::Direction::FromDevice) => {
                    self.engine.sync_from_device(device).await
                }
                _ => {
                    return Err(Status::invalid_argument(
                        "direction: required, to-device or from-device",
                    ));
                }
            }
            .map_err(txn_status)?;
            tracing::info!(device, direction = req.direction, "device synced");
            Ok(pb::SyncResponse {})
        })
        .await
    }
}

impl Api {
    /// A device as the API returns it (credentials reference redacted,
    /// whether secret credentials are stored, never the credentials).
    fn device_pb(&self, d: &Device) -> Result<pb::Device, Status> {
        let mut out = convert::device_to_pb(d);
        out.has_credentials = self
            .store
            .has_device_credentials(&d.name)
            .map_err(store_status)?;
        Ok(out)
    }
}

/// A transaction as one answer shows it: scoped to the caller's tenants
/// and within the response budget.
fn bounded_txn(t: &TxnRecord, caller: &Caller) -> pb::Transaction {
    let mut shown = convert::txn_to_pb(t, &caller.tenant_filter());
    history::bound(&mut shown, history::RESPONSE_BUDGET);
    shown
}

/// DeviceInUse, naming only the services the caller may see.
fn device_in_use(caller: &Caller, name: &str, services: &[String]) -> Status {
    let (mine, foreign): (Vec<&String>, Vec<&String>) = services.iter().partition(|s| {
        s.split_once('/')
            .is_some_and(|(t, _)| caller.tenants.contains(t))
    });
    let mut what: Vec<String> = mine.iter().map(|s| (*s).clone()).collect();
    if !foreign.is_empty() {
        what.push(format!("{} service(s) of other tenants", foreign.len()));
    }
    Status::failed_precondition(format!(
        "device {name:?} is used by {}; delete or change them first",
        what.join(", ")
    ))
}

fn secrets_status(e: store::secrets::SecretsError) -> Status {
    use store::secrets::SecretsError as E;
    match e {
        E::Store(s) => store_status(s),
        other => {
            tracing::error!(error = %other, "secret store failure");
            Status::failed_precondition(other.to_string())
        }
    }
}

/// An apply request as the audit log keeps it: the document's size and
/// SHA-256, not its text (specs may one day carry pre-shared keys).
fn apply_summary(req: &pb::ApplyServiceRequest) -> serde_json::Value {
    let digest = ring::digest::digest(&ring::digest::SHA256, req.document.as_bytes());
    json!({
        "sourceName": req.source_name,
        "dryRun": req.dry_run,
        "documentBytes": req.document.len(),
        "documentSha256": hex::encode(digest),
    })
}

fn add_device_summary(req: &pb::AddDeviceRequest) -> serde_json::Value {
    let device = req.device.as_ref().map(|d| {
        json!({
            "name": d.name,
            "platform": d.platform,
            "address": d.address,
            "credentialsRef": if d.credentials_ref.is_empty() { "" } else { "<redacted>" },
            "labels": d.labels,
        })
    });
    json!({
        "device": device,
        "replace": req.replace,
        "credentials": req.credentials.as_ref().map(|_| "<redacted>"),
    })
}

/// Keeps the state words used in the API and the store in one place.
#[must_use]
pub fn txn_state_to_pb(s: TxnState) -> pb::TransactionState {
    match s {
        TxnState::Pending => pb::TransactionState::Pending,
        TxnState::Committed => pb::TransactionState::Committed,
        TxnState::Failed => pb::TransactionState::Failed,
        TxnState::RolledBack => pb::TransactionState::RolledBack,
    }
}
