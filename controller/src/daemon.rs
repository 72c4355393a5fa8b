//! Wiring of the daemon: store, validator, gRPC server, metrics server,
//! readiness, shutdown.
//!
//! [`run`] takes its listeners and its shutdown future from the caller
//! (mini-redis style), so tests bind `127.0.0.1:0` and stop it at will.

use std::{future::Future, sync::Arc, time::Duration};

use rampart_proto::v1::{
    FILE_DESCRIPTOR_SET, access_manager_server::AccessManagerServer,
    audit_log_server::AuditLogServer, device_manager_server::DeviceManagerServer,
    fleet_manager_server::FleetManagerServer, secret_manager_server::SecretManagerServer,
    service_manager_server::ServiceManagerServer,
    transaction_manager_server::TransactionManagerServer,
};
use tokio::{net::TcpListener, sync::watch};
use tokio_stream::wrappers::TcpListenerStream;

use crate::{
    api::Api,
    config::Config,
    model::{ModelError, Validator},
    store::{
        Store, StoreError,
        leader::{self, Role},
    },
    telemetry::{self, Metrics, TelemetryError},
    txn::{Engine, EngineConfig},
};

/// Why the daemon could not start or stopped abnormally.
#[derive(Debug, thiserror::Error)]
pub enum DaemonError {
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Unfinished transactions could not be recovered.
    #[error("transaction recovery: {0}")]
    Recovery(#[from] crate::txn::EngineError),
    /// The embedded YANG modules did not load (a build defect).
    #[error("service model: {0}")]
    Model(#[from] ModelError),
    /// Metrics set-up or server failure.
    #[error(transparent)]
    Telemetry(#[from] TelemetryError),
    /// The gRPC server failed.
    #[error("gRPC server failed: {0}")]
    Grpc(#[from] tonic::transport::Error),
    /// Reflection service set-up failed.
    #[error("gRPC reflection: {0}")]
    Reflection(#[from] tonic_reflection::server::Error),
    /// TLS, tokens, secrets key or JWT set-up failed.
    #[error(transparent)]
    Security(#[from] crate::auth::setup::SetupError),
    /// The host-agent fleet (CA, agent port) could not start.
    #[error("agents: {0}")]
    Fleet(#[from] crate::fleet::FleetError),
}

/// Listeners the daemon serves on; bound by the caller.
pub struct Listeners {
    /// gRPC management API.
    pub api: TcpListener,
    /// Prometheus endpoint, when enabled.
    pub metrics: Option<TcpListener>,
}

/// Runs rampartd until `shutdown` completes, then drains in-flight requests
/// and flushes the store.
///
/// # Errors
/// [`DaemonError`] when start-up fails or a server dies.
pub async fn run(
    config: &Config,
    listeners: Listeners,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> Result<(), DaemonError> {
    let data_dir = config.store.resolved_data_dir();
    if let Err(e) = std::fs::create_dir_all(&data_dir) {
        tracing::warn!(dir = %data_dir.display(), error = %e, "cannot create data dir");
    }
    let store = Store::open_configured(&config.store, &data_dir)?;
    let validator = Arc::new(tokio::task::spawn_blocking(Validator::new).await.map_err(
        |e| ModelError::Schema {
            message: format!("validator start-up task failed: {e}"),
        },
    )??);
    let security = crate::auth::setup::prepare(config, &store, &data_dir).await?;
    let metrics = Metrics::new()?;
    let fleet =
        crate::fleet::Fleet::new(store.clone(), config.agents.clone(), &data_dir.join("tls"))?;
    let engine = build_engine(config, &store, &data_dir).with_hosts(Arc::new(fleet.clone()));
    // One leader runs transactions, recovery and drift checks: on sled this
    // process (recovering before it serves, as always); on etcd whichever
    // replica holds the leader key, recovering each time it takes over.
    let leadership = store.campaign(&replica_identity(config), leader::DEFAULT_TTL);
    let recovery_task = if leadership.is_leader() {
        log_recovered(engine.recover().await?);
        None
    } else {
        Some(tokio::spawn(recover_on_takeover(
            engine.clone(),
            leadership.watch(),
        )))
    };
    let api = Api::new(store.clone(), validator, metrics.clone(), engine.clone());

    // One shutdown signal fanned out to both servers.
    let (stop_tx, stop_rx) = watch::channel(false);
    let wait = |mut rx: watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|stop| *stop).await;
    };
    tokio::spawn(async move {
        shutdown.await;
        let _ = stop_tx.send(true);
    });

    let drift_task = (config.southbound.drift_interval_s > 0).then(|| {
        tokio::spawn(drift_loop(
            engine.clone(),
            metrics.clone(),
            Duration::from_secs(config.southbound.drift_interval_s),
            leadership.watch(),
        ))
    });

    let fleet_tasks =
        crate::fleet::start(&fleet, &config.agents, &data_dir, wait(stop_rx.clone())).await?;

    // Inside the auth layer: it sees the caller and counts only admitted
    // calls (refusals are audited by the auth layer itself).
    let audit_layer = crate::auth::audit::AuditLayer::new(
        store.clone(),
        metrics.clone(),
        config.api.max_request_bytes,
    );
    let metrics_task = listeners.metrics.map(|l| {
        let addr = l.local_addr().ok();
        tracing::info!(addr = ?addr, "metrics listening");
        tokio::spawn(telemetry::serve_metrics(
            l,
            metrics,
            store.clone(),
            wait(stop_rx.clone()),
        ))
    });

    let (health_reporter, health_service) = tonic_health::server::health_reporter();
    health_reporter
        .set_serving::<ServiceManagerServer<Api>>()
        .await;
    health_reporter
        .set_serving::<DeviceManagerServer<Api>>()
        .await;
    health_reporter
        .set_serving::<TransactionManagerServer<Api>>()
        .await;
    health_reporter
        .set_serving::<AccessManagerServer<Api>>()
        .await;
    // v1alpha too: grpcio-reflection, older grpcurl and GUI clients speak
    // only it. Both sit behind the same auth layer (rbac::AUTHENTICATED_PREFIXES).
    let reflection = || {
        tonic_reflection::server::Builder::configure()
            .register_encoded_file_descriptor_set(FILE_DESCRIPTOR_SET)
            .register_encoded_file_descriptor_set(tonic_health::pb::FILE_DESCRIPTOR_SET)
    };
    let reflection_v1 = reflection().build_v1()?;
    let reflection_v1alpha = reflection().build_v1alpha()?;

    let max = config.api.max_request_bytes;
    let addr = listeners.api.local_addr().ok();
    tracing::info!(addr = ?addr, data_dir = %data_dir.display(), "rampartd serving");
    notify_ready();
    let watchdog = spawn_watchdog();

    let mut server = tonic::transport::Server::builder();
    if let Some(tls) = security.tls {
        server = server.tls_config(tls)?;
    }
    server
        .timeout(Duration::from_secs(120))
        .layer(security.layer)
        .layer(audit_layer)
        .add_service(health_service)
        .add_service(reflection_v1)
        .add_service(reflection_v1alpha)
        .add_service(ServiceManagerServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(DeviceManagerServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(TransactionManagerServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(AccessManagerServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(AuditLogServer::new(api.clone()).max_decoding_message_size(max))
        .add_service(SecretManagerServer::new(api).max_decoding_message_size(max))
        .add_service(FleetManagerServer::new(crate::fleet::manager::FleetApi(
            fleet.clone(),
        )))
        .serve_with_incoming_shutdown(TcpListenerStream::new(listeners.api), wait(stop_rx))
        .await?;

    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    if let Some(w) = watchdog {
        w.abort();
    }
    if let Some(d) = drift_task {
        d.abort();
    }
    if let Some(r) = recovery_task {
        r.abort();
    }
    leadership.resign();
    crate::fleet::stop(&fleet, fleet_tasks).await;
    if let Some(t) = metrics_task {
        match t.await {
            Ok(res) => res?,
            Err(e) => tracing::warn!(error = %e, "metrics task panicked"),
        }
    }
    store.flush().await?;
    tracing::info!("rampartd stopped");
    Ok(())
}

fn log_recovered(recovered: usize) {
    if recovered > 0 {
        tracing::warn!(
            recovered,
            "finished transactions left pending by a previous run"
        );
    }
}

/// Each time this replica becomes the leader, finishes what the previous
/// leader left pending, exactly as after a crash.
async fn recover_on_takeover(engine: Engine, mut role: watch::Receiver<Role>) {
    loop {
        if role.wait_for(|r| *r == Role::Leader).await.is_err() {
            return;
        }
        match engine.recover().await {
            Ok(n) => log_recovered(n),
            Err(e) => tracing::error!(error = %e, "recovery after taking over failed"),
        }
        if role.wait_for(|r| *r != Role::Leader).await.is_err() {
            return;
        }
    }
}

/// How this replica names itself to the others: host and API address.
fn replica_identity(config: &Config) -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}@{}", host.trim(), config.api.listen)
}

/// The transaction engine with the `[southbound]` settings.
///
/// `RAMPARTD_FAULT_PAUSE_BEFORE_COMMIT_MS` (fault injection for crash
/// tests) makes every transaction wait that long between its prepare and
/// commit phases, after journaling the commit phase.
fn build_engine(config: &Config, store: &Store, data_dir: &std::path::Path) -> Engine {
    let sb = &config.southbound;
    let engine = Engine::new(
        store.clone(),
        EngineConfig {
            known_hosts: sb
                .known_hosts
                .clone()
                .unwrap_or_else(|| data_dir.join("known_hosts")),
            trust_on_first_use: sb.trust_on_first_use,
            connect_timeout: Duration::from_millis(sb.connect_timeout_ms),
            rpc_timeout: Duration::from_millis(sb.rpc_timeout_ms),
            confirm_timeout: Duration::from_secs(sb.confirm_timeout_s),
            max_parallel: sb.max_parallel_devices,
            device_timeout: Duration::from_millis(sb.device_timeout_ms),
            ca_bundle: sb.ca_bundle.clone(),
        },
    );
    let pause = std::env::var("RAMPARTD_FAULT_PAUSE_BEFORE_COMMIT_MS")
        .ok()
        .and_then(|v| v.parse::<u64>().ok());
    match pause {
        Some(ms) => {
            tracing::warn!(
                ms,
                "fault injection: pausing every transaction before commit"
            );
            engine.with_before_commit(move |t| {
                tracing::warn!(txn = t.id, ms, "fault injection pause");
                std::thread::sleep(Duration::from_millis(ms));
            })
        }
        None => engine,
    }
}

/// Checks every device Rampart configured for drift, forever.
async fn drift_loop(
    engine: Engine,
    metrics: Metrics,
    every: Duration,
    role: watch::Receiver<Role>,
) {
    let mut tick = tokio::time::interval(every);
    tick.tick().await;
    loop {
        tick.tick().await;
        if *role.borrow() != Role::Leader {
            continue;
        }
        let devices = match engine.store().synced_devices() {
            Ok(d) => d.into_keys().collect::<Vec<_>>(),
            Err(e) => {
                tracing::warn!(error = %e, "drift check: cannot read the store");
                continue;
            }
        };
        for device in devices {
            match engine.check_sync(Some(&device)).await {
                Ok(reports) => {
                    let drifted = reports.iter().any(|r| !r.differences.is_empty());
                    if drifted {
                        tracing::warn!(device, "drift detected");
                    }
                    metrics.set_drift(&device, drifted);
                }
                Err(e) => {
                    tracing::warn!(device, error = %e, "drift check failed");
                    metrics.drift_error(&device);
                }
            }
        }
    }
}

/// Tells systemd (Type=notify) we are ready; a no-op elsewhere.
fn notify_ready() {
    if let Err(e) = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]) {
        tracing::debug!(error = %e, "sd_notify READY failed");
    }
}

/// Pings systemd's watchdog at half its interval when one is configured.
fn spawn_watchdog() -> Option<tokio::task::JoinHandle<()>> {
    let mut usec = 0u64;
    if !sd_notify::watchdog_enabled(false, &mut usec) || usec == 0 {
        return None;
    }
    let period = Duration::from_micros(usec / 2);
    Some(tokio::spawn(async move {
        let mut tick = tokio::time::interval(period);
        loop {
            tick.tick().await;
            let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Watchdog]);
        }
    }))
}

/// Resolves when SIGTERM or SIGINT arrives.
pub async fn signals() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        std::future::pending::<()>().await;
        return;
    };
    tokio::select! {
        _ = term.recv() => tracing::info!(signal = "SIGTERM", "shutting down"),
        _ = int.recv() => tracing::info!(signal = "SIGINT", "shutting down"),
    }
}
