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
pub mod manager;
pub mod metrics;
pub use crate::platforms::agent::policy;
pub mod service;
mod txn;

use std::{
    collections::{BTreeMap, HashMap, HashSet},
    path::PathBuf,
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use rampart_proto::v1 as pb;
use tokio::sync::{mpsc, oneshot};
use tonic::Status;

use crate::{
    config::AgentsConfig,
    store::{
        Store, StoreError,
        fleet::{AgentRecord, TokenRecord, TokenUse},
        now_unix_ms,
    },
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
        /// File.
        path: PathBuf,
        /// Cause.
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

fn token_hash(token: &str) -> String {
    ca::sha256_hex(token.as_bytes())
}

fn random_hex(bytes: usize) -> String {
    use ring::rand::SecureRandom as _;
    let mut b = vec![0u8; bytes];
    // The system RNG does not fail on Linux; zeros would only weaken a token
    // that is also single-use and short-lived.
    let _ = ring::rand::SystemRandom::new().fill(&mut b);
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn valid_label(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 63
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'/'))
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

    /// A new one-time enrollment token, valid `ttl`; only its hash is kept.
    ///
    /// # Errors
    /// [`FleetError`] on bad labels or a storage failure.
    pub fn create_token(
        &self,
        ttl: Duration,
        labels: BTreeMap<String, String>,
    ) -> Result<(String, i64), Status> {
        for (k, v) in &labels {
            if !valid_label(k) || !valid_label(v) {
                return Err(Status::invalid_argument(format!(
                    "label {k:?}={v:?}: keys and values are 1-63 characters of [A-Za-z0-9-_./]"
                )));
            }
        }
        let token = format!("rmpe_{}", random_hex(24));
        let expires_ms =
            now_unix_ms().saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX / 2));
        self.0
            .store
            .put_enroll_token(
                &token_hash(&token),
                &TokenRecord {
                    expires_ms,
                    labels,
                    used_by: None,
                },
            )
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok((token, expires_ms))
    }

    /// Enrolls an agent: consumes the token, signs the CSR.
    ///
    /// # Errors
    /// `Unauthenticated` for an unknown, used or expired token (each named),
    /// `InvalidArgument` for a bad host name, label or CSR.
    pub fn enroll(&self, req: pb::EnrollRequest) -> Result<pb::EnrollResponse, Status> {
        let m = &self.0.metrics;
        if req.hostname.is_empty()
            || req.hostname.len() > 253
            || !req
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_'))
        {
            m.refused.inc();
            return Err(Status::invalid_argument(format!(
                "hostname {:?}: 1-253 characters of [A-Za-z0-9-._]",
                req.hostname
            )));
        }
        for (k, v) in &req.labels {
            if !valid_label(k) || !valid_label(v) {
                m.refused.inc();
                return Err(Status::invalid_argument(format!(
                    "label {k:?}={v:?}: keys and values are 1-63 characters of [A-Za-z0-9-_./]"
                )));
            }
        }
        let id = format!("{}-{}", req.hostname, random_hex(4));
        let used = self
            .0
            .store
            .consume_enroll_token(&token_hash(&req.token), &id, now_unix_ms())
            .map_err(|e| Status::internal(e.to_string()))?;
        let token = match used {
            TokenUse::Consumed(t) => t,
            TokenUse::Unknown => {
                m.refused.inc();
                return Err(Status::unauthenticated("enrollment token is unknown"));
            }
            TokenUse::Reused(by) => {
                m.refused.inc();
                tracing::warn!(
                    hostname = req.hostname,
                    used_by = by,
                    "enrollment token reused"
                );
                return Err(Status::unauthenticated(
                    "enrollment token was already used (tokens are single-use)",
                ));
            }
            TokenUse::Expired => {
                m.refused.inc();
                return Err(Status::unauthenticated("enrollment token has expired"));
            }
        };
        let cert = self
            .0
            .ca
            .sign_csr(
                &req.csr_pem,
                &id,
                &req.hostname,
                Duration::from_secs(self.0.cfg.cert_ttl_s),
            )
            .inspect_err(|_| m.refused.inc())?;
        // Token labels are the operator's; the agent's own cannot override them.
        let mut labels: BTreeMap<String, String> = req.labels.into_iter().collect();
        labels.extend(token.labels);
        let rec = AgentRecord {
            id: id.clone(),
            hostname: req.hostname,
            labels,
            cert_fingerprints: vec![cert.fingerprint],
            cert_not_after: cert.not_after,
            enrolled_ms: now_unix_ms(),
            ..AgentRecord::default()
        };
        {
            let _g = lock(&self.0.registry);
            self.0
                .store
                .put_agent(&rec)
                .map_err(|e| Status::internal(e.to_string()))?;
        }
        m.enrollments.inc();
        tracing::info!(agent = id, hostname = rec.hostname, labels = ?rec.labels, "agent enrolled");
        Ok(pb::EnrollResponse {
            agent_id: id,
            cert_pem: cert.cert_pem,
            ca_pem: self.0.ca.cert_pem().to_owned(),
            not_after: cert.not_after,
        })
    }

    /// The agent a verified client certificate belongs to, if the registry
    /// accepts that very certificate.
    ///
    /// # Errors
    /// `Unauthenticated` without a certificate or for an unknown one,
    /// `PermissionDenied` for a revoked agent.
    pub fn authenticate(&self, der: Option<&[u8]>) -> Result<AgentRecord, Status> {
        let refuse = |s: Status| {
            self.0.metrics.refused.inc();
            Err(s)
        };
        let Some(der) = der else {
            return refuse(Status::unauthenticated(
                "agent sessions need the client certificate issued at enrollment",
            ));
        };
        let Some(id) = ca::agent_id_of(der) else {
            return refuse(Status::unauthenticated(
                "client certificate is not an agent certificate (no rampart://agent/ SAN)",
            ));
        };
        let rec = match self.0.store.agent(&id) {
            Ok(Some(r)) => r,
            Ok(None) => {
                return refuse(Status::unauthenticated(format!(
                    "agent {id} is not enrolled"
                )));
            }
            Err(e) => return Err(Status::internal(e.to_string())),
        };
        if rec.revoked {
            return refuse(Status::permission_denied(format!("agent {id} is revoked")));
        }
        let fp = ca::sha256_hex(der);
        if !rec.cert_fingerprints.contains(&fp) {
            return refuse(Status::unauthenticated(format!(
                "certificate of agent {id} has been replaced or was never issued"
            )));
        }
        Ok(rec)
    }

    /// Re-issues the certificate of `rec` for a new CSR; the current one
    /// stays valid until the agent connects with the new one.
    ///
    /// # Errors
    /// `InvalidArgument` on a bad CSR.
    pub fn renew(&self, rec: &AgentRecord, csr_pem: &str) -> Result<pb::EnrollResponse, Status> {
        let cert = self.0.ca.sign_csr(
            csr_pem,
            &rec.id,
            &rec.hostname,
            Duration::from_secs(self.0.cfg.cert_ttl_s),
        )?;
        self.update(&rec.id, |r| {
            let newest = r.cert_fingerprints.last().cloned();
            r.cert_fingerprints = newest.into_iter().collect();
            r.cert_fingerprints.push(cert.fingerprint.clone());
            r.cert_not_after = cert.not_after;
        })?;
        tracing::info!(agent = rec.id, "agent certificate renewed");
        Ok(pb::EnrollResponse {
            agent_id: rec.id.clone(),
            cert_pem: cert.cert_pem,
            ca_pem: self.0.ca.cert_pem().to_owned(),
            not_after: cert.not_after,
        })
    }

    fn update(
        &self,
        id: &str,
        f: impl FnOnce(&mut AgentRecord),
    ) -> Result<Option<AgentRecord>, Status> {
        let _g = lock(&self.0.registry);
        let Some(mut rec) = self
            .0
            .store
            .agent(id)
            .map_err(|e| Status::internal(e.to_string()))?
        else {
            return Ok(None);
        };
        f(&mut rec);
        self.0
            .store
            .put_agent(&rec)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Some(rec))
    }

    /// Opens a session for an authenticated agent after its `Hello`,
    /// replacing any older session of the same agent. Pushes the desired
    /// policy unless the agent already enforces it.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn open_session(
        &self,
        rec: &AgentRecord,
        hello: &pb::Hello,
    ) -> Result<(u64, Outbound), Status> {
        let conn = self.0.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        let rec = self
            .update(&rec.id, |r| {
                if !hello.policy_hash.is_empty() && hello.policy_hash == r.desired_hash {
                    // Unchanged since before the cut or restart: no re-push.
                    r.applied_hash.clone_from(&r.desired_hash);
                    r.applied_version = r.desired_version;
                } else {
                    r.applied_hash.clone_from(&hello.policy_hash);
                    r.applied_version = hello.applied_version;
                }
            })?
            .ok_or_else(|| Status::unauthenticated("agent vanished from the registry"))?;
        let old = lock(&self.0.sessions).insert(
            rec.id.clone(),
            Session {
                conn,
                tx,
                last_seen: Instant::now(),
                last_seen_ms: now_unix_ms(),
                health: None,
                pushed: None,
                refused: None,
                waiters: HashMap::new(),
            },
        );
        if let Some(old) = old {
            let _ = old.tx.try_send(Err(Status::aborted(
                "replaced by a newer session of this agent",
            )));
        }
        tracing::info!(
            agent = rec.id,
            conn,
            applied = rec.applied_version,
            desired = rec.desired_version,
            "agent session opened"
        );
        self.push_if_needed(&rec, None);
        Ok((conn, rx))
    }

    /// Resolves once [`close`](Self::close) was called.
    pub async fn closed(&self) {
        let mut rx = self.0.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Ends every session (agents keep enforcing and reconnect later) so
    /// the agent port drains at shutdown.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
        let drained: Vec<_> = lock(&self.0.sessions).drain().collect();
        for (_, s) in drained {
            let _ =
                s.tx.try_send(Err(Status::unavailable("rampartd is shutting down")));
        }
    }

    /// Ends session `conn` of `id` (if still the current one).
    pub fn close_session(&self, id: &str, conn: u64) {
        let mut s = lock(&self.0.sessions);
        if s.get(id).is_some_and(|x| x.conn == conn) {
            if let Some(old) = s.remove(id) {
                lock(&self.0.last_seen).insert(id.to_owned(), old.last_seen_ms);
            }
            tracing::info!(
                agent = id,
                conn,
                "agent session closed; it enforces its last policy"
            );
        }
    }

    /// Whether `conn` is still the live session of `id`.
    #[must_use]
    pub fn is_current(&self, id: &str, conn: u64) -> bool {
        lock(&self.0.sessions)
            .get(id)
            .is_some_and(|s| s.conn == conn)
    }

    /// Handles one message of session `conn`.
    pub fn on_message(&self, id: &str, conn: u64, msg: pb::AgentMessage) {
        let now = Instant::now();
        let ack = {
            let mut sessions = lock(&self.0.sessions);
            let Some(s) = sessions.get_mut(id).filter(|s| s.conn == conn) else {
                return;
            };
            s.last_seen = now;
            s.last_seen_ms = now_unix_ms();
            match msg.msg {
                Some(pb::agent_message::Msg::Heartbeat(hb)) => {
                    self.0.metrics.heartbeats.inc();
                    s.health = hb.health;
                    None
                }
                Some(pb::agent_message::Msg::Ack(a)) => {
                    if let Some(w) = s.waiters.remove(&(a.version, a.staged)) {
                        let _ = w.send(a.clone());
                    }
                    if a.staged {
                        // A transaction's prepare: nothing is enforced yet.
                        return;
                    }
                    let pushed = s.pushed.take_if(|(v, _, _)| *v == a.version);
                    if !a.ok {
                        s.refused = Some(a.version);
                    }
                    Some((a, pushed))
                }
                Some(pb::agent_message::Msg::Counters(c)) => {
                    drop(sessions);
                    lock(&self.0.counters).insert(id.to_owned(), c.rules);
                    None
                }
                Some(pb::agent_message::Msg::Hello(_)) | None => None,
            }
        };
        if let Some((a, pushed)) = ack {
            if let Some((_, _, sent)) = &pushed {
                self.0
                    .metrics
                    .push_ack
                    .observe(now.duration_since(*sent).as_secs_f64());
            }
            let res = self.update(id, |r| {
                if a.ok {
                    r.applied_version = a.version;
                    if let Some((_, hash, _)) = &pushed {
                        r.applied_hash.clone_from(hash);
                    }
                    r.last_error.clear();
                } else {
                    r.last_error = format!("version {}: {}", a.version, a.error);
                }
            });
            if a.ok {
                tracing::debug!(agent = id, version = a.version, "policy acknowledged");
            } else {
                tracing::warn!(
                    agent = id,
                    version = a.version,
                    error = a.error,
                    "agent refused policy"
                );
            }
            if let Err(e) = res {
                tracing::warn!(agent = id, error = %e, "cannot record ack");
            }
        }
    }

    /// Pushes the desired policy to `rec`'s live session when it does not
    /// enforce it and it is not already on its way. `known` is the desired
    /// policy when the caller computed it.
    fn push_if_needed(&self, rec: &AgentRecord, known: Option<&pb::HostPolicy>) {
        if rec.desired_version == 0
            || rec.desired_hash == rec.applied_hash
            || lock(&self.0.held).contains(&rec.id)
        {
            return;
        }
        let computed;
        let policy = if let Some(p) = known {
            p
        } else {
            let services = match self.0.store.services() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read services");
                    return;
                }
            };
            match policy::policy_for(&services, &rec.labels) {
                Ok(p) => {
                    computed = p;
                    &computed
                }
                Err(_) => return,
            }
        };
        let mut sessions = lock(&self.0.sessions);
        let Some(s) = sessions.get_mut(&rec.id) else {
            return;
        };
        if s.pushed
            .as_ref()
            .is_some_and(|(v, _, _)| *v == rec.desired_version)
            || s.refused == Some(rec.desired_version)
        {
            return;
        }
        let mut p = policy.clone();
        p.version = rec.desired_version;
        let msg = pb::ControllerMessage {
            msg: Some(pb::controller_message::Msg::Push(pb::PolicyPush {
                version: rec.desired_version,
                policy: Some(p),
                stage: false,
                policy_hash: rec.desired_hash.clone(),
            })),
        };
        if s.tx.try_send(Ok(msg)).is_ok() {
            s.pushed = Some((
                rec.desired_version,
                rec.desired_hash.clone(),
                Instant::now(),
            ));
            tracing::debug!(
                agent = rec.id,
                version = rec.desired_version,
                "policy pushed"
            );
        }
    }

    /// Recomputes every agent's desired policy from the stored services,
    /// versions the changed ones, and pushes to connected agents that do not
    /// enforce theirs.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn refresh(&self) -> Result<(), Status> {
        let internal = |e: StoreError| Status::internal(e.to_string());
        let services = self.0.store.services().map_err(internal)?;
        let mut cache: HashMap<BTreeMap<String, String>, Desired> = HashMap::new();
        let mut to_push = Vec::new();
        {
            // Read, version and write back under the registry lock so a
            // concurrent ack is never overwritten; one batch for all.
            let _g = lock(&self.0.registry);
            let agents = self.0.store.agents().map_err(internal)?;
            let held = lock(&self.0.held).clone();
            let mut changed = Vec::new();
            for mut rec in agents
                .into_values()
                .filter(|r| !r.revoked && !held.contains(&r.id))
            {
                let desired = cache
                    .entry(rec.labels.clone())
                    .or_insert_with(|| {
                        policy::policy_for(&services, &rec.labels).map(|p| {
                            let h = policy::policy_hash(&p);
                            (Arc::new(p), h)
                        })
                    })
                    .clone();
                match desired {
                    Ok((p, hash)) => {
                        let conflict_cleared = rec.last_error.starts_with("policy conflict");
                        if hash != rec.desired_hash || conflict_cleared {
                            if hash != rec.desired_hash {
                                rec.desired_version += 1;
                                rec.desired_hash.clone_from(&hash);
                            }
                            if conflict_cleared {
                                rec.last_error.clear();
                            }
                            tracing::debug!(
                                agent = rec.id,
                                version = rec.desired_version,
                                "new host policy"
                            );
                            changed.push(rec.clone());
                        }
                        to_push.push((rec, p));
                    }
                    Err(conflict) => {
                        let msg = format!("policy conflict: {conflict}");
                        if rec.last_error != msg {
                            tracing::warn!(
                                agent = rec.id,
                                error = conflict,
                                "host policy conflict"
                            );
                            rec.last_error = msg;
                            changed.push(rec);
                        }
                    }
                }
            }
            if !changed.is_empty() {
                tracing::info!(agents = changed.len(), "host policies changed");
                self.0.store.put_agents(&changed).map_err(internal)?;
            }
        }
        for (rec, p) in &to_push {
            self.push_if_needed(rec, Some(p));
        }
        Ok(())
    }

    /// Revokes `id`: refused from now on, its live session closed.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn revoke(&self, id: &str) -> Result<bool, Status> {
        let found = self.update(id, |r| r.revoked = true)?.is_some();
        if let Some(s) = lock(&self.0.sessions).remove(id) {
            let _ = s.tx.try_send(Err(Status::permission_denied(format!(
                "agent {id} is revoked"
            ))));
        }
        lock(&self.0.counters).remove(id);
        if found {
            tracing::warn!(agent = id, "agent revoked");
        }
        Ok(found)
    }

    /// The state of one agent.
    fn state_of(&self, rec: &AgentRecord, sessions: &HashMap<String, Session>) -> AgentState {
        if rec.revoked {
            return AgentState::Revoked;
        }
        match sessions.get(&rec.id) {
            None => AgentState::Offline,
            Some(s) if s.last_seen.elapsed() > Duration::from_secs(self.0.cfg.stale_after_s) => {
                AgentState::Stale
            }
            Some(_) => AgentState::Online,
        }
    }

    /// Every agent with its state, versions and last health.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn list(&self) -> Result<Vec<pb::AgentInfo>, Status> {
        let agents = self
            .0
            .store
            .agents()
            .map_err(|e| Status::internal(e.to_string()))?;
        let sessions = lock(&self.0.sessions);
        let last_seen = lock(&self.0.last_seen);
        Ok(agents
            .into_values()
            .map(|r| {
                let state = self.state_of(&r, &sessions);
                let s = sessions.get(&r.id);
                pb::AgentInfo {
                    agent_id: r.id.clone(),
                    hostname: r.hostname.clone(),
                    labels: r.labels.clone().into_iter().collect(),
                    state: state.as_str().to_owned(),
                    desired_version: r.desired_version,
                    applied_version: r.applied_version,
                    last_seen_ms: s
                        .map(|s| s.last_seen_ms)
                        .or_else(|| last_seen.get(&r.id).copied())
                        .unwrap_or(0),
                    last_error: r.last_error.clone(),
                    cert_not_after: r.cert_not_after,
                    health: s.and_then(|s| s.health.clone()),
                }
            })
            .collect())
    }

    /// Refreshes the state gauges and the per-rule counter series.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn sweep(&self) -> Result<(), Status> {
        let agents = self
            .0
            .store
            .agents()
            .map_err(|e| Status::internal(e.to_string()))?;
        let mut by_state = [0i64; 4];
        let (mut out_of_date, mut max_skew) = (0i64, 0u64);
        {
            let sessions = lock(&self.0.sessions);
            for r in agents.values() {
                let st = self.state_of(r, &sessions);
                by_state[AgentState::ALL.iter().position(|s| *s == st).unwrap_or(0)] += 1;
                if !r.revoked && r.desired_version > 0 && r.applied_hash != r.desired_hash {
                    out_of_date += 1;
                    max_skew = max_skew.max(r.desired_version.saturating_sub(r.applied_version));
                }
            }
        }
        let m = &self.0.metrics;
        for (st, n) in AgentState::ALL.iter().zip(by_state) {
            m.agents.with_label_values(&[st.as_str()]).set(n);
        }
        m.out_of_date.set(out_of_date);
        m.max_skew.set(i64::try_from(max_skew).unwrap_or(i64::MAX));
        let totals = self.aggregate(None);
        m.rule_packets.reset();
        m.rule_bytes.reset();
        let mut dropped = 0i64;
        for (i, ((tenant, service, seq), (packets, bytes, _))) in totals.iter().enumerate() {
            if i >= metrics::MAX_RULE_SERIES {
                dropped += 1;
                continue;
            }
            let seq = seq.to_string();
            let labels = [tenant.as_str(), service.as_str(), seq.as_str()];
            m.rule_packets
                .with_label_values(&labels)
                .set(i64::try_from(*packets).unwrap_or(i64::MAX));
            m.rule_bytes
                .with_label_values(&labels)
                .set(i64::try_from(*bytes).unwrap_or(i64::MAX));
        }
        m.rule_series_dropped.set(dropped);
        Ok(())
    }

    /// Rule counters summed over agents: (tenant, service, sequence) →
    /// (packets, bytes, reporting agents), for one `(tenant, service)` or all.
    #[must_use]
    pub fn aggregate(
        &self,
        only: Option<(&str, &str)>,
    ) -> BTreeMap<(String, String, u32), (u64, u64, u32)> {
        let mut out: BTreeMap<(String, String, u32), (u64, u64, u32)> = BTreeMap::new();
        for rules in lock(&self.0.counters).values() {
            let mut seen = std::collections::HashSet::new();
            for c in rules {
                if only.is_some_and(|(t, s)| c.tenant != t || c.service != s) {
                    continue;
                }
                let key = (c.tenant.clone(), c.service.clone(), c.sequence);
                let e = out.entry(key.clone()).or_default();
                e.0 = e.0.saturating_add(c.packets);
                e.1 = e.1.saturating_add(c.bytes);
                if seen.insert(key) {
                    e.2 += 1;
                }
            }
        }
        out
    }

    /// Runs refresh and sweep every `refresh_ms` until the task is dropped.
    pub async fn background(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.0.cfg.refresh_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let f = self.clone();
            let res = tokio::task::spawn_blocking(move || {
                f.refresh()?;
                f.sweep()
            })
            .await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "fleet refresh failed"),
                Err(e) => tracing::warn!(error = %e, "fleet refresh task failed"),
            }
        }
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
