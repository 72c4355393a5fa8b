//! Logs (tracing) and metrics (Prometheus) of rampartd.

use std::{net::SocketAddr, time::Instant};

use prometheus::{
    Encoder, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};
use tokio::net::TcpListener;

use crate::{config::LogFormat, store::Store};

/// Telemetry set-up failures.
#[derive(Debug, thiserror::Error)]
pub enum TelemetryError {
    /// The log filter did not parse.
    #[error("invalid log filter {filter:?}: {message}")]
    Filter {
        /// The directive.
        filter: String,
        /// Parser message.
        message: String,
    },
    /// A metric could not be registered (duplicate name: a programming error).
    #[error("cannot register metric: {0}")]
    Register(#[from] prometheus::Error),
    /// The metrics listener failed.
    #[error("metrics server on {addr} failed: {source}")]
    Serve {
        /// Listen address.
        addr: String,
        #[source]
        source: std::io::Error,
    },
}

/// Installs the global tracing subscriber. Safe to call more than once (later
/// calls are no-ops), which keeps tests that start several daemons simple.
///
/// # Errors
/// [`TelemetryError::Filter`] when `level` is not a valid directive.
pub fn init_logging(format: LogFormat, level: &str) -> Result<(), TelemetryError> {
    let filter =
        tracing_subscriber::EnvFilter::try_new(level).map_err(|e| TelemetryError::Filter {
            filter: level.to_owned(),
            message: e.to_string(),
        })?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    let _ = match format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// The daemon's metrics, registered in their own registry.
#[derive(Clone)]
pub struct Metrics {
    registry: Registry,
    requests: IntCounterVec,
    latency: HistogramVec,
    store_bytes: IntGauge,
    services: IntGaugeVec,
    devices: IntGaugeVec,
    transactions: IntCounterVec,
    drift: IntGaugeVec,
    drift_errors: IntCounterVec,
}

impl Metrics {
    /// Creates and registers every metric.
    ///
    /// # Errors
    /// [`TelemetryError::Register`] on a duplicate registration.
    pub fn new() -> Result<Self, TelemetryError> {
        let registry = Registry::new_custom(Some("rampart".into()), None)?;
        let requests = IntCounterVec::new(
            Opts::new(
                "api_requests_total",
                "gRPC requests by method and status code",
            ),
            &["method", "code"],
        )?;
        let latency = HistogramVec::new(
            HistogramOpts::new("api_request_duration_seconds", "gRPC request latency").buckets(
                vec![
                    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1.0,
                ],
            ),
            &["method"],
        )?;
        let store_bytes = IntGauge::new("store_size_bytes", "Bytes the store uses on disk")?;
        let services = IntGaugeVec::new(Opts::new("services", "Services by kind"), &["kind"])?;
        let devices = IntGaugeVec::new(
            Opts::new("devices", "Inventory devices by platform"),
            &["platform"],
        )?;
        let transactions = IntCounterVec::new(
            Opts::new(
                "transactions_total",
                "Transactions by operation and outcome",
            ),
            &["operation", "state"],
        )?;
        registry.register(Box::new(requests.clone()))?;
        registry.register(Box::new(latency.clone()))?;
        registry.register(Box::new(store_bytes.clone()))?;
        registry.register(Box::new(services.clone()))?;
        registry.register(Box::new(devices.clone()))?;
        registry.register(Box::new(transactions.clone()))?;
        let drift = IntGaugeVec::new(
            Opts::new(
                "device_drift",
                "1 when a device's running configuration differs from what Rampart put there",
            ),
            &["device"],
        )?;
        let drift_errors = IntCounterVec::new(
            Opts::new(
                "drift_check_errors_total",
                "Drift checks that could not read the device",
            ),
            &["device"],
        )?;
        registry.register(Box::new(drift.clone()))?;
        registry.register(Box::new(drift_errors.clone()))?;
        #[cfg(target_os = "linux")]
        registry.register(Box::new(
            prometheus::process_collector::ProcessCollector::for_self(),
        ))?;
        Ok(Self {
            registry,
            requests,
            latency,
            store_bytes,
            services,
            devices,
            transactions,
            drift,
            drift_errors,
        })
    }

    /// Records a drift check result for a device.
    pub fn set_drift(&self, device: &str, drifted: bool) {
        self.drift
            .with_label_values(&[device])
            .set(i64::from(drifted));
    }

    /// Counts a drift check that could not read the device.
    pub fn drift_error(&self, device: &str) {
        self.drift_errors.with_label_values(&[device]).inc();
    }

    /// Records one finished RPC.
    pub fn observe(&self, method: &str, code: tonic::Code, started: Instant) {
        self.requests
            .with_label_values(&[method, code_name(code)])
            .inc();
        self.latency
            .with_label_values(&[method])
            .observe(started.elapsed().as_secs_f64());
    }

    /// Counts a finished transaction.
    pub fn transaction(&self, operation: &str, state: &str) {
        self.transactions
            .with_label_values(&[operation, state])
            .inc();
    }

    /// Refreshes the gauges derived from the store, then encodes everything
    /// in the Prometheus text format.
    #[must_use]
    pub fn render(&self, store: &Store) -> String {
        self.store_bytes
            .set(i64::try_from(store.size_on_disk()).unwrap_or(i64::MAX));
        if let Ok(per_kind) = store.services_per_kind() {
            for (kind, n) in per_kind {
                self.services
                    .with_label_values(&[kind.as_str()])
                    .set(i64::try_from(n).unwrap_or(i64::MAX));
            }
        }
        if let Ok(devices) = store.devices() {
            for p in crate::model::device::Platform::ALL {
                let n = devices.values().filter(|d| d.platform == p).count();
                self.devices
                    .with_label_values(&[p.as_str()])
                    .set(i64::try_from(n).unwrap_or(0));
            }
        }
        let mut buf = Vec::new();
        // Encoding into a Vec cannot fail for well-formed metric families.
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The gRPC status code as Prometheus label value.
fn code_name(code: tonic::Code) -> &'static str {
    use tonic::Code as C;
    match code {
        C::Ok => "OK",
        C::Cancelled => "Cancelled",
        C::Unknown => "Unknown",
        C::InvalidArgument => "InvalidArgument",
        C::DeadlineExceeded => "DeadlineExceeded",
        C::NotFound => "NotFound",
        C::AlreadyExists => "AlreadyExists",
        C::PermissionDenied => "PermissionDenied",
        C::ResourceExhausted => "ResourceExhausted",
        C::FailedPrecondition => "FailedPrecondition",
        C::Aborted => "Aborted",
        C::OutOfRange => "OutOfRange",
        C::Unimplemented => "Unimplemented",
        C::Internal => "Internal",
        C::Unavailable => "Unavailable",
        C::DataLoss => "DataLoss",
        C::Unauthenticated => "Unauthenticated",
    }
}

/// Serves `/metrics` (and `/healthz`) on `listener` until `shutdown`.
///
/// # Errors
/// [`TelemetryError::Serve`] when the listener fails.
pub async fn serve_metrics(
    listener: TcpListener,
    metrics: Metrics,
    store: Store,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<(), TelemetryError> {
    use axum::{Router, http::header, routing::get};
    let addr = listener
        .local_addr()
        .map_or_else(|_| "?".to_owned(), |a: SocketAddr| a.to_string());
    let app = Router::new()
        .route(
            "/metrics",
            get(move || {
                let (m, s) = (metrics.clone(), store.clone());
                async move {
                    (
                        [(
                            header::CONTENT_TYPE,
                            "text/plain; version=0.0.4; charset=utf-8",
                        )],
                        m.render(&s),
                    )
                }
            }),
        )
        .route("/healthz", get(|| async { "ok\n" }));
    axum::serve(listener, app)
        .with_graceful_shutdown(shutdown)
        .await
        .map_err(|source| TelemetryError::Serve { addr, source })
}
