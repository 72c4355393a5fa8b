//! The tower layer inside [`super::layer::AuthLayer`] that observes every
//! call the management API handles: request metrics for every method, and
//! an audit record for every mutating one, success or failure. Handlers
//! only say what they learned (the request's redacted summary, the tenant,
//! service and transaction) on the [`AuditNote`] this layer puts in the
//! request; none of them can forget the record or the metrics.
//!
//! The outcome is read from the response head: tonic answers a refused
//! unary call with `grpc-status` in the headers, and a successful one with
//! it in the trailers, so a head without it means OK.

use std::{
    sync::{Arc, Mutex},
    task::{Context, Poll},
    time::Instant,
};

use tonic::{Status, codegen::http};

use super::{Caller, layer::code_name, rbac};
use crate::{
    store::{Store, audit::AuditRecord, now_unix_ms},
    telemetry::Metrics,
};

/// The management services this layer observes (the agent port is another
/// listener; health and reflection need no record).
const OBSERVED: &[&str] = &[
    "/rampart.v1.ServiceManager/",
    "/rampart.v1.DeviceManager/",
    "/rampart.v1.TransactionManager/",
    "/rampart.v1.AccessManager/",
    "/rampart.v1.AuditLog/",
    "/rampart.v1.SecretManager/",
    "/rampart.v1.FleetManager/",
];

/// What a handler learned that the audit record should carry.
#[derive(Debug, Clone, Default)]
pub struct Note {
    pub tenant: String,
    pub service: String,
    pub transaction: Option<String>,
    /// The request as the audit log keeps it: secrets redacted, documents
    /// reduced to their size and digest.
    pub request: serde_json::Value,
}

/// A handler's way to fill the audit record of its call; found in the
/// request extensions.
#[derive(Debug, Clone, Default)]
pub struct AuditNote(Arc<Mutex<Note>>);

impl AuditNote {
    /// Edits the note.
    pub fn update(&self, f: impl FnOnce(&mut Note)) {
        f(&mut self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner));
    }

    fn take(&self) -> Note {
        std::mem::take(
            &mut self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner),
        )
    }
}

/// The layer; add it after the auth layer so it runs inside it.
#[derive(Clone)]
pub struct AuditLayer {
    store: Store,
    metrics: Metrics,
    max_request_bytes: usize,
}

impl std::fmt::Debug for AuditLayer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AuditLayer").finish_non_exhaustive()
    }
}

impl AuditLayer {
    /// Records into `store` and counts into `metrics`; `max_request_bytes`
    /// is the `[api]` limit that refusals of oversized documents name.
    #[must_use]
    pub fn new(store: Store, metrics: Metrics, max_request_bytes: usize) -> Self {
        Self {
            store,
            metrics,
            max_request_bytes,
        }
    }
}

impl<S> tower_layer::Layer<S> for AuditLayer {
    type Service = AuditService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuditService {
            inner,
            layer: self.clone(),
        }
    }
}

/// The service the layer wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct AuditService<S> {
    inner: S,
    layer: AuditLayer,
}

type BoxFuture<T> = std::pin::Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> tonic::codegen::Service<http::Request<B>> for AuditService<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The ready instance serves this request (tower's standard swap).
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let path = req.uri().path().to_owned();
        if !OBSERVED.iter().any(|p| path.starts_with(p)) {
            return Box::pin(inner.call(req));
        }
        let layer = self.layer.clone();
        let caller = req.extensions().get::<Caller>().cloned();
        let note = AuditNote::default();
        req.extensions_mut().insert(note.clone());
        Box::pin(async move {
            let started = Instant::now();
            let mut res = inner.call(req).await?;
            let mut status = Status::from_header_map(res.headers());
            let limit = layer.max_request_bytes;
            if let Some(worded) = status.as_ref().and_then(|s| oversized(&path, s, limit)) {
                res = worded.clone().into_http();
                status = Some(worded);
            }
            let code = status.as_ref().map_or(tonic::Code::Ok, Status::code);
            let method = path.strip_prefix("/rampart.v1.").unwrap_or(&path);
            layer
                .metrics
                .observe(method.rsplit('/').next().unwrap_or(method), code, started);
            if let Some(s) = &status {
                tracing::debug!(method, code = ?s.code(), message = s.message(), "request refused");
            }
            if rbac::lookup(&path).is_none_or(|r| r.mutating) {
                layer
                    .record(method, caller.as_ref(), note.take(), status.as_ref())
                    .await;
            }
            Ok(res)
        })
    }
}

/// tonic refuses a message over `[api] max_request_bytes` before any
/// handler sees it, in its own words; a spec document that large gets the
/// words the documentation promises ("documents over 4 MiB are refused"
/// at the default limit), with tonic's words kept after them.
fn oversized(path: &str, status: &Status, limit: usize) -> Option<Status> {
    let apply = path.ends_with("/ApplyService") || path.ends_with("/DryRun");
    (apply
        && status.code() == tonic::Code::OutOfRange
        && status.message().contains("message length too large"))
    .then(|| {
        #[allow(clippy::cast_precision_loss, reason = "a size shown in MiB")]
        let mib = limit as f64 / f64::from(1u32 << 20);
        Status::out_of_range(format!(
            "document: documents over {mib} MiB are refused ({})",
            status.message()
        ))
    })
}

impl AuditLayer {
    async fn record(
        &self,
        method: &str,
        caller: Option<&Caller>,
        note: Note,
        status: Option<&Status>,
    ) {
        let peer = caller.map(|c| c.peer.clone()).unwrap_or_default();
        append(&self.store, method, caller, peer, note, status).await;
    }
}

/// Appends one audit record (`method` as `Service/Method`). A record that
/// cannot be written is logged; the call's answer stands.
pub(super) async fn append(
    store: &Store,
    method: &str,
    caller: Option<&Caller>,
    peer: String,
    note: Note,
    status: Option<&Status>,
) {
    let record = AuditRecord {
        id: 0,
        time_unix_ms: now_unix_ms(),
        user: caller.map(|c| c.user.clone()).unwrap_or_default(),
        role: caller
            .map(|c| c.role.as_str().to_owned())
            .unwrap_or_default(),
        auth: caller.map_or_else(|| "none".to_owned(), Caller::auth_label),
        peer,
        method: method.to_owned(),
        tenant: note.tenant,
        service: note.service,
        request: note.request.to_string(),
        code: code_name(status.map_or(tonic::Code::Ok, Status::code)),
        message: status.map(|s| s.message().to_owned()).unwrap_or_default(),
        transaction: note.transaction,
    };
    if let Err(e) = store.append_audit(record).await {
        tracing::error!(error = %e, method, "cannot write audit record");
    }
}
