//! The gRPC management API (tonic): services, devices, transactions.
//!
//! Handlers stay thin: they translate between protobuf and the model, call
//! `model` → `txn` → `store`, and map every failure to a status code a client
//! can act on (InvalidArgument with the path and line, NotFound,
//! AlreadyExists, FailedPrecondition, Internal only for real faults).

use std::{sync::Arc, time::Instant};

use rampart_proto::v1::{
    self as pb, device_manager_server::DeviceManager, service_manager_server::ServiceManager,
    transaction_manager_server::TransactionManager,
};
use tonic::{Request, Response, Status};

use crate::{
    model::{self, DocFormat, ModelError, SourceDoc, Validator, device::Device},
    store::{self, Store, StoreError, StoredService, TxnState},
    telemetry::Metrics,
    txn::{self, TxnError},
};

mod convert;

pub use convert::{diagnostic_to_pb, service_to_pb};

/// Shared state of every API handler. Cheap to clone.
#[derive(Clone)]
pub struct Api {
    store: Store,
    validator: Arc<Validator>,
    metrics: Metrics,
}

impl Api {
    /// Builds the API over a store and a validator.
    #[must_use]
    pub fn new(store: Store, validator: Arc<Validator>, metrics: Metrics) -> Self {
        Self {
            store,
            validator,
            metrics,
        }
    }

    /// Runs a handler body and records its metrics.
    async fn observe<T>(
        &self,
        method: &'static str,
        body: impl std::future::Future<Output = Result<T, Status>>,
    ) -> Result<Response<T>, Status> {
        let started = Instant::now();
        let res = body.await;
        let code = res.as_ref().map_or_else(Status::code, |_| tonic::Code::Ok);
        self.metrics.observe(method, code, started);
        if let Err(s) = &res {
            tracing::debug!(method, code = ?s.code(), message = s.message(), "request refused");
        }
        res.map(Response::new)
    }

    /// Validates and plans an apply request.
    async fn plan(&self, req: &pb::ApplyServiceRequest) -> Result<txn::Plan, Status> {
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
        let services = validated
            .into_iter()
            .map(|v| (v.spec, model::spec::API_VERSION.to_owned()))
            .collect();
        txn::plan(services, &inventory).map_err(txn_status)
    }
}

/// Who made a request, for the transaction log (authentication comes later;
/// until then the peer address is the best we know).
fn author<T>(req: &Request<T>) -> String {
    req.remote_addr()
        .map_or_else(|| "anonymous".to_owned(), |a| format!("anonymous@{a}"))
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

fn txn_status(e: TxnError) -> Status {
    match e {
        TxnError::Compile { .. } => Status::failed_precondition(e.to_string()),
        TxnError::NotFound { .. } => Status::not_found(e.to_string()),
        TxnError::Store(s) => store_status(s),
    }
}

/// Finds a service by name, optionally scoped to a tenant.
fn find_service(store: &Store, tenant: &str, name: &str) -> Result<StoredService, Status> {
    let name = required(name, "name")?;
    if !tenant.is_empty() {
        return store
            .service(tenant, name)
            .map_err(store_status)?
            .ok_or_else(|| Status::not_found(format!("service {tenant}/{name} not found")));
    }
    let mut matches: Vec<StoredService> = store
        .services()
        .map_err(store_status)?
        .into_iter()
        .filter(|s| s.spec.metadata.name == name)
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
        let who = author(&request);
        let req = request.into_inner();
        self.observe("ApplyService", async {
            let plan = self.plan(&req).await?;
            if req.dry_run {
                return Ok(convert::dry_run_response(&plan));
            }
            let rendered: Vec<pb::RenderedConfig> = plan
                .renderings
                .iter()
                .map(convert::rendering_to_pb)
                .collect();
            let (txn, stored) = txn::commit_apply(&self.store, plan, &who)
                .await
                .map_err(txn_status)?;
            self.metrics.transaction("apply", "committed");
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
        let req = request.into_inner();
        self.observe("DryRun", async {
            let plan = self.plan(&req).await?;
            Ok(convert::dry_run_response(&plan))
        })
        .await
    }

    async fn get_service(
        &self,
        request: Request<pb::GetServiceRequest>,
    ) -> Result<Response<pb::Service>, Status> {
        let req = request.into_inner();
        self.observe("GetService", async {
            find_service(&self.store, &req.tenant, &req.name).map(|s| service_to_pb(&s))
        })
        .await
    }

    async fn list_services(
        &self,
        request: Request<pb::ListServicesRequest>,
    ) -> Result<Response<pb::ListServicesResponse>, Status> {
        let req = request.into_inner();
        self.observe("ListServices", async {
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
        let who = author(&request);
        let req = request.into_inner();
        self.observe("DeleteService", async {
            let svc = find_service(&self.store, &req.tenant, &req.name)?;
            let md = &svc.spec.metadata;
            let txn = txn::commit_delete(&self.store, &md.tenant, &md.name, &who)
                .await
                .map_err(txn_status)?;
            self.metrics.transaction("delete", "committed");
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
        let req = request.into_inner();
        self.observe("AddDevice", async {
            let d = req
                .device
                .ok_or_else(|| Status::invalid_argument("device: required"))?;
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
            let stored = self
                .store
                .put_device(&device, req.replace)
                .map_err(store_status)?;
            self.store.flush().await.map_err(store_status)?;
            tracing::info!(device = stored.name, platform = %stored.platform, "device added");
            Ok(convert::device_to_pb(&stored))
        })
        .await
    }

    async fn get_device(
        &self,
        request: Request<pb::GetDeviceRequest>,
    ) -> Result<Response<pb::Device>, Status> {
        let req = request.into_inner();
        self.observe("GetDevice", async {
            let name = required(&req.name, "name")?;
            self.store
                .device(name)
                .map_err(store_status)?
                .map(|d| convert::device_to_pb(&d))
                .ok_or_else(|| Status::not_found(format!("device {name} not found")))
        })
        .await
    }

    async fn list_devices(
        &self,
        request: Request<pb::ListDevicesRequest>,
    ) -> Result<Response<pb::ListDevicesResponse>, Status> {
        let req = request.into_inner();
        self.observe("ListDevices", async {
            let devices = self
                .store
                .devices()
                .map_err(store_status)?
                .into_values()
                .filter(|d| req.selector.iter().all(|(k, v)| d.labels.get(k) == Some(v)))
                .map(|d| convert::device_to_pb(&d))
                .collect();
            Ok(pb::ListDevicesResponse { devices })
        })
        .await
    }

    async fn remove_device(
        &self,
        request: Request<pb::RemoveDeviceRequest>,
    ) -> Result<Response<pb::RemoveDeviceResponse>, Status> {
        let req = request.into_inner();
        self.observe("RemoveDevice", async {
            let name = required(&req.name, "name")?;
            if !self.store.remove_device(name).map_err(store_status)? {
                return Err(Status::not_found(format!("device {name} not found")));
            }
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
        let req = request.into_inner();
        self.observe("ListTransactions", async {
            let limit = if req.limit == 0 {
                50
            } else {
                req.limit.min(10_000) as usize
            };
            let service = (!req.service.is_empty()).then_some(req.service.as_str());
            let transactions = self
                .store
                .txns(limit, service)
                .map_err(store_status)?
                .iter()
                .map(convert::txn_to_pb)
                .collect();
            Ok(pb::ListTransactionsResponse { transactions })
        })
        .await
    }

    async fn get_transaction(
        &self,
        request: Request<pb::GetTransactionRequest>,
    ) -> Result<Response<pb::Transaction>, Status> {
        let req = request.into_inner();
        self.observe("GetTransaction", async {
            let raw = required(&req.id, "id")?;
            let id = store::parse_txn_id(raw).ok_or_else(|| {
                Status::invalid_argument(format!("id: {raw:?} is not a transaction id (txn-N)"))
            })?;
            self.store
                .txn(id)
                .map_err(store_status)?
                .map(|t| convert::txn_to_pb(&t))
                .ok_or_else(|| Status::not_found(format!("transaction {raw} not found")))
        })
        .await
    }
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
