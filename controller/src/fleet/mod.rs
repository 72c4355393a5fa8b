//! Host agents managed by rampartd (issue #6): enrollment with one-time
//! tokens and CSRs, mutual TLS sessions, versioned policy distribution with
//! acks, heartbeats and staleness, per-rule counter aggregation, fleet
//! metrics. See `docs/fleet.md`.
//!
//! The agent port is its own listener (`[agents] listen`), TLS always on:
//! client certificates are optional at the TLS layer so `Enroll` works with a
//! token only; every `AgentService` call requires a certificate whose
//! fingerprint the registry holds for a non-revoked agent.

pub mod ca;
mod enrollment;
pub mod manager;
pub mod metrics;
pub use crate::platforms::agent::policy;
mod registry;
pub mod service;
mod session;
mod txn;

use std::{
    collections::{HashMap, HashSet},
    path::PathBuf,
    sync::{Arc, Mutex, MutexGuard, atomic::AtomicU64},
    time::{Duration, Instant},
};

use rampart_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::{
    config::AgentsConfig,
    store::{Store, StoreError},
    tls::TlsError,
};

pub use ca::AgentCa;
pub use metrics::FleetMetrics;

/// Fleet failures.
#[derive(Debug, thiserror::Error)]
pub enum FleetError {
    /// Store access.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// CA files.
    #[error(transparent)]
    Tls(#[from] TlsError),
    /// A file.
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A CSR or certificate problem.
    #[error("certificate: {message}")]
    Csr {
        /// What is wrong.
        message: String,
    },
    /// Metrics registration.
    #[error("fleet metrics: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The agent port's server.
    #[error("agent port: {0}")]
    Serve(#[from] tonic::transport::Error),
}

impl From<FleetError> for Status {
    fn from(e: FleetError) -> Self {
        match e {
            FleetError::Csr { message } => Status::invalid_argument(message),
            other => Status::internal(other.to_string()),
        }
    }
}

/// A label set's desired policy and its hash, or the conflict preventing it.
type Desired = Result<(Arc<pb::HostPolicy>, String), String>;

/// Outbound half of an agent session.
pub type Outbound = mpsc::Receiver<Result<pb::ControllerMessage, Status>>;

struct Session {
    conn: u64,
    tx: mpsc::Sender<Result<pb::ControllerMessage, Status>>,
    last_seen: Instant,
    last_seen_ms: i64,
    health: Option<pb::Health>,
    /// Pushed and not yet acknowledged: (version, hash, sent at).
    pushed: Option<(u64, String, Instant)>,
    /// A version this session refused: not pushed again on this session
    /// (the agent would refuse it again); a new version or a reconnect is.
    refused: Option<u64>,
    /// Transaction steps awaiting the agent's ack of (version, staged).
    waiters: HashMap<(u64, bool), oneshot::Sender<pb::Ack>>,
}

struct Inner {
    store: Store,
    ca: AgentCa,
    cfg: AgentsConfig,
    sessions: Mutex<HashMap<String, Session>>,
    /// Latest cumulative counters of each agent.
    counters: Mutex<HashMap<String, Vec<pb::RuleCounter>>>,
    /// Serialises read-modify-write of agent records.
    registry: Mutex<()>,
    /// Last seen time of agents no longer connected (for listings).
    last_seen: Mutex<HashMap<String, i64>>,
    metrics: FleetMetrics,
    /// Agents in an unfinished transaction: background convergence
    /// (refresh, reconnect pushes) leaves them to the transaction.
    held: Mutex<HashSet<String>>,
    /// Per agent: the version staged by a transaction and its hash.
    staged: Mutex<HashMap<String, (u64, String)>>,
    next_conn: AtomicU64,
    /// Set at shutdown: sessions end so the agent port can drain.
    closing: tokio::sync::watch::Sender<bool>,
}

/// The fleet: cheap to clone, shared by the agent port, the management API
/// and the background tasks.
#[derive(Clone)]
pub struct Fleet(Arc<Inner>);

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Fleet").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// An agent's state, as listed and exported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AgentState {
    /// Connected and heard from recently.
    Online,
    /// Connected but silent past `stale_after_s`.
    Stale,
    /// Not connected (keeps enforcing its last policy: fail-static).
    Offline,
    /// Refused for good.
    Revoked,
}

impl AgentState {
    /// Every state (metric label values).
    pub const ALL: [AgentState; 4] = [Self::Online, Self::Stale, Self::Offline, Self::Revoked];

    /// Lower-case name.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Online => "online",
            Self::Stale => "stale",
            Self::Offline => "offline",
            Self::Revoked => "revoked",
        }
    }
}

impl Fleet {
    /// The fleet over `store`, signing with the CA in `tls_dir`.
    ///
    /// # Errors
    /// [`FleetError`] when the CA or the metrics cannot be set up.
    pub fn new(
        store: Store,
        cfg: AgentsConfig,
        tls_dir: &std::path::Path,
    ) -> Result<Self, FleetError> {
        Ok(Self(Arc::new(Inner {
            store,
            ca: AgentCa::load_or_create(tls_dir)?,
            cfg,
            sessions: Mutex::default(),
            counters: Mutex::default(),
            registry: Mutex::default(),
            last_seen: Mutex::default(),
            metrics: FleetMetrics::new()?,
            held: Mutex::default(),
            staged: Mutex::default(),
            next_conn: AtomicU64::new(1),
            closing: tokio::sync::watch::Sender::new(false),
        })))
    }

    /// The CA agents trust.
    #[must_use]
    pub fn ca(&self) -> &AgentCa {
        &self.0.ca
    }

    /// The store (audit records of the fleet API).
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.0.store
    }

    /// The fleet's metrics.
    #[must_use]
    pub fn metrics(&self) -> &FleetMetrics {
        &self.0.metrics
    }

    /// The `[agents]` settings.
    #[must_use]
    pub fn config(&self) -> &AgentsConfig {
        &self.0.cfg
    }
}

/// Starts the fleet's background work: the refresh/sweep loop always; the
/// agent port when `[agents] listen` is set (its bound address is written
/// to `<data_dir>/agents.addr`, so port 0 works in tests); the fleet metrics
/// endpoint when `[agents] metrics_listen` is set. Returns the tasks to
/// abort at shutdown.
///
/// # Errors
/// [`FleetError`] when a listener cannot be bound.
pub async fn start(
    fleet: &Fleet,
    cfg: &AgentsConfig,
    data_dir: &std::path::Path,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<Vec<tokio::task::JoinHandle<()>>, FleetError> {
    let mut tasks = vec![tokio::spawn(fleet.clone().background())];
    if let Some(addr) = cfg.listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| FleetError::Io {
                path: PathBuf::from(addr.to_string()),
                source,
            })?;
        if let Ok(bound) = listener.local_addr() {
            let file = data_dir.join("agents.addr");
            std::fs::write(&file, format!("{bound}\n"))
                .map_err(|source| FleetError::Io { path: file, source })?;
        }
        let f = fleet.clone();
        tasks.push(tokio::spawn(async move {
            if let Err(e) = service::serve(f, listener, shutdown).await {
                tracing::error!(error = %e, "agent port failed");
            }
        }));
    }
    if let Some(addr) = cfg.metrics_listen {
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| FleetError::Io {
                path: PathBuf::from(addr.to_string()),
                source,
            })?;
        let m = fleet.metrics().clone();
        let app = axum::Router::new().route(
            "/metrics",
            axum::routing::get(move || {
                let m = m.clone();
                async move { m.render() }
            }),
        );
        tasks.push(tokio::spawn(async move {
            if let Err(e) = axum::serve(listener, app).await {
                tracing::error!(error = %e, "fleet metrics server failed");
            }
        }));
    }
    Ok(tasks)
}

/// Stops what [`start`] started: sessions closed, the agent port drained
/// (5 s at most), every task finished, so the store can close.
pub async fn stop(fleet: &Fleet, tasks: Vec<tokio::task::JoinHandle<()>>) {
    fleet.close();
    for (i, t) in tasks.into_iter().enumerate() {
        // The first task is the refresh loop: it never ends by itself.
        if i == 0 {
            t.abort();
        }
        let abort = t.abort_handle();
        if tokio::time::timeout(Duration::from_secs(5), t)
            .await
            .is_err()
        {
            abort.abort();
        }
    }
}
