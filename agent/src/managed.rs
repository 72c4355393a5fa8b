//! Managed mode: the agent enrolls with rampartd once (one-time token, key
//! generated here, CSR), then keeps one mutual-TLS bidi session open:
//! policy pushes are applied atomically and acknowledged (or the precise
//! failure reported), heartbeats carry health, per-rule counters follow.
//!
//! Lean on purpose (RSS budget 30 MB): one tonic channel, one stream, a
//! current-thread-friendly loop. When the controller is unreachable the
//! agent keeps enforcing its last policy (fail-static, exported as a metric)
//! and reconnects with jittered exponential backoff.
//!
//! The dataplane is a trait so the same client drives the eBPF enforcer
//! ([`enforcer_dataplane::EnforcerDataplane`]) and the fleet load generator.

pub mod enforcer_dataplane;

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use rampart_proto::v1::{
    self as pb, agent_enrollment_client::AgentEnrollmentClient,
    agent_service_client::AgentServiceClient,
};
use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Identity};
use tracing::{info, warn};

/// Managed-mode failures.
#[derive(Debug, Error)]
pub enum ManagedError {
    /// A state file.
    #[error("{path}: {source}")]
    Io {
        /// File.
        path: PathBuf,
        /// Cause.
        #[source]
        source: std::io::Error,
    },
    /// Not enrolled and no token to enroll with.
    #[error("not enrolled (no certificate in {dir}) and no enrollment token given")]
    NoToken {
        /// State directory.
        dir: PathBuf,
    },
    /// Key or CSR generation.
    #[error("key/CSR: {0}")]
    Csr(#[from] rcgen::Error),
    /// The controller URL or TLS set-up.
    #[error("controller {url}: {source}")]
    Transport {
        /// URL.
        url: String,
        /// Cause.
        #[source]
        source: tonic::transport::Error,
    },
    /// The controller refused (token, certificate, revocation).
    #[error("controller refused: {0}")]
    Refused(#[from] tonic::Status),
    /// A state file is corrupt.
    #[error("{path}: {message}")]
    State {
        /// File.
        path: PathBuf,
        /// What is wrong.
        message: String,
    },
}

/// What managed mode needs from the dataplane.
pub trait Dataplane: Send + 'static {
    /// Applies `policy` atomically, or returns the precise reason it was
    /// refused (the policy in force stays).
    ///
    /// # Errors
    /// The failure, verbatim for the controller.
    fn apply(&mut self, policy: &pb::HostPolicy) -> Result<(), String>;
    /// Checks that `policy` would apply (compiles, fits the maps, names
    /// interfaces that exist) without changing anything: the prepare phase
    /// of a controller transaction, so a host can refuse before any device
    /// or host switches.
    ///
    /// # Errors
    /// The reason `apply` would fail, verbatim for the controller.
    fn validate(&self, policy: &pb::HostPolicy) -> Result<(), String>;
    /// Health for heartbeats.
    fn health(&self) -> pb::Health;
    /// Cumulative per-rule counters.
    fn counters(&self) -> Vec<pb::RuleCounter>;
}

/// Command-line flags of managed mode (`rampart-agent run --controller ...`).
#[derive(Debug, Clone, Default, clap::Args)]
pub struct ManagedArgs {
    /// rampartd's agent port, `https://host:port`: managed mode.
    #[arg(long, env = "RAMPART_CONTROLLER")]
    pub controller: Option<String>,
    /// One-time enrollment token (`rampartctl agents token create`).
    #[arg(long, env = "RAMPART_ENROLL_TOKEN")]
    pub enroll_token: Option<String>,
    /// CA certificate to verify rampartd with at enrollment.
    #[arg(long)]
    pub controller_ca: Option<PathBuf>,
    /// TLS name to verify (default: the URL's host).
    #[arg(long)]
    pub controller_name: Option<String>,
    /// Key, certificate and last policy.
    #[arg(long, default_value = "/var/lib/rampart-agent")]
    pub state_dir: PathBuf,
    /// Labels asked for at enrollment, `key=value` (repeatable).
    #[arg(long = "label", value_parser = parse_label)]
    pub labels: Vec<(String, String)>,
    /// Heartbeat period, milliseconds.
    #[arg(long, default_value_t = 5000)]
    pub heartbeat_ms: u64,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("label {s:?}: expected key=value"))
}

impl ManagedArgs {
    /// The settings, when `--controller` was given.
    #[must_use]
    pub fn config(&self) -> Option<ManagedConfig> {
        let url = self.controller.clone()?;
        let mut c = ManagedConfig::new(url, self.state_dir.clone());
        c.enroll_token.clone_from(&self.enroll_token);
        c.ca_file.clone_from(&self.controller_ca);
        c.server_name.clone_from(&self.controller_name);
        c.labels = self.labels.iter().cloned().collect();
        c.heartbeat = Duration::from_millis(self.heartbeat_ms.max(100));
        Some(c)
    }
}

/// Managed-mode settings.
#[derive(Debug, Clone)]
pub struct ManagedConfig {
    /// `https://host:port` of rampartd's agent port.
    pub controller: String,
    /// The CA that signed the agent port's certificate (PEM file); after
    /// enrollment the CA returned by the controller is stored and used.
    pub ca_file: Option<PathBuf>,
    /// TLS server name to verify (default: the URL's host).
    pub server_name: Option<String>,
    /// Where the key, certificate and last policy live (0700).
    pub state_dir: PathBuf,
    /// One-time enrollment token (only needed once).
    pub enroll_token: Option<String>,
    /// Host name sent at enrollment.
    pub hostname: String,
    /// Labels asked for at enrollment.
    pub labels: BTreeMap<String, String>,
    /// Heartbeat period.
    pub heartbeat: Duration,
    /// Counters are sent every this many heartbeats.
    pub counters_every: u32,
    /// Reconnect backoff bounds.
    pub backoff_min: Duration,
    /// Upper bound of the backoff.
    pub backoff_max: Duration,
}

impl ManagedConfig {
    /// Defaults for `controller`, state in `state_dir`.
    #[must_use]
    pub fn new(controller: impl Into<String>, state_dir: impl Into<PathBuf>) -> Self {
        Self {
            controller: controller.into(),
            ca_file: None,
            server_name: None,
            state_dir: state_dir.into(),
            enroll_token: None,
            hostname: hostname(),
            labels: BTreeMap::new(),
            heartbeat: Duration::from_secs(5),
            counters_every: 2,
            backoff_min: Duration::from_millis(200),
            backoff_max: Duration::from_secs(30),
        }
    }
}

/// The host name from the kernel.
#[must_use]
pub fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|s| s.trim().to_owned())
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "localhost".to_owned())
}

/// Live status, shared with metrics.
#[derive(Debug, Default)]
pub struct Status {
    /// A session is open.
    pub connected: AtomicBool,
    /// Enforcing a policy without a controller session.
    pub fail_static: AtomicBool,
    /// Version enforced.
    pub applied_version: AtomicU64,
    /// Sessions opened (1 + reconnects).
    pub sessions: AtomicU64,
    /// Policies applied from pushes.
    pub applies: AtomicU64,
    /// Pushes refused by the dataplane.
    pub apply_errors: AtomicU64,
}

impl Status {
    /// Prometheus lines for the agent's `/metrics`.
    #[must_use]
    pub fn render(&self) -> String {
        let b = |v: &AtomicBool| u8::from(v.load(Ordering::Relaxed));
        let u = |v: &AtomicU64| v.load(Ordering::Relaxed);
        format!(
            "# HELP rampart_agent_controller_connected A session with rampartd is open.\n\
             # TYPE rampart_agent_controller_connected gauge\n\
             rampart_agent_controller_connected {}\n\
             # HELP rampart_agent_fail_static Enforcing the last policy while the controller is unreachable.\n\
             # TYPE rampart_agent_fail_static gauge\n\
             rampart_agent_fail_static {}\n\
             # HELP rampart_agent_policy_version Version of the policy enforced.\n\
             # TYPE rampart_agent_policy_version gauge\n\
             rampart_agent_policy_version {}\n\
             # HELP rampart_agent_controller_sessions_total Sessions opened with rampartd.\n\
             # TYPE rampart_agent_controller_sessions_total counter\n\
             rampart_agent_controller_sessions_total {}\n\
             # HELP rampart_agent_managed_apply_errors_total Pushed policies refused.\n\
             # TYPE rampart_agent_managed_apply_errors_total counter\n\
             rampart_agent_managed_apply_errors_total {}\n",
            b(&self.connected),
            b(&self.fail_static),
            u(&self.applied_version),
            u(&self.sessions),
            u(&self.apply_errors),
        )
    }
}

/// The policy in force, persisted so a restarted agent re-enforces it and
/// tells the controller which one it is.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct Applied {
    /// Version.
    pub version: u64,
    /// Controller's hash of it.
    pub hash: String,
    /// The policy.
    pub policy: pb::HostPolicy,
}

/// Files of the state directory.
#[derive(Debug, Clone)]
pub struct StateDir(pub PathBuf);

impl StateDir {
    fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    fn read(&self, name: &str) -> Result<Option<String>, ManagedError> {
        let p = self.path(name);
        match std::fs::read_to_string(&p) {
            Ok(s) => Ok(Some(s)),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(source) => Err(ManagedError::Io { path: p, source }),
        }
    }

    fn write(&self, name: &str, data: &str, mode: u32) -> Result<(), ManagedError> {
        use std::{io::Write as _, os::unix::fs::OpenOptionsExt as _};
        let p = self.path(name);
        let tmp = self.path(&format!(".{name}.tmp"));
        let io = |path: &Path| {
            let path = path.to_owned();
            move |source| ManagedError::Io { path, source }
        };
        let _ = std::fs::remove_file(&tmp);
        let mut f = std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(mode)
            .open(&tmp)
            .map_err(io(&tmp))?;
        f.write_all(data.as_bytes()).map_err(io(&tmp))?;
        f.sync_all().map_err(io(&tmp))?;
        std::fs::rename(&tmp, &p).map_err(io(&p))
    }

    fn ensure(&self) -> Result<(), ManagedError> {
        use std::os::unix::fs::DirBuilderExt as _;
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&self.0)
            .map_err(|source| ManagedError::Io {
                path: self.0.clone(),
                source,
            })
    }

    /// The policy last enforced, if any.
    ///
    /// # Errors
    /// [`ManagedError`] when the file is unreadable or corrupt.
    pub fn applied(&self) -> Result<Option<Applied>, ManagedError> {
        let Some(s) = self.read("applied.json")? else {
            return Ok(None);
        };
        serde_json::from_str(&s)
            .map(Some)
            .map_err(|e| ManagedError::State {
                path: self.path("applied.json"),
                message: e.to_string(),
            })
    }

    fn save_applied(&self, a: &Applied) -> Result<(), ManagedError> {
        let s = serde_json::to_string(a).map_err(|e| ManagedError::State {
            path: self.path("applied.json"),
            message: e.to_string(),
        })?;
        self.write("applied.json", &s, 0o600)
    }

    /// The agent id, once enrolled.
    ///
    /// # Errors
    /// [`ManagedError`] when the file is unreadable.
    pub fn agent_id(&self) -> Result<Option<String>, ManagedError> {
        Ok(self.read("agent.id")?.map(|s| s.trim().to_owned()))
    }
}

/// A CSR for a fresh P-256 key: (key PEM, CSR PEM).
///
/// # Errors
/// [`ManagedError::Csr`].
pub fn new_csr(hostname: &str) -> Result<(String, String), ManagedError> {
    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(Vec::<String>::new())?;
    params
        .distinguished_name
        .push(rcgen::DnType::CommonName, hostname);
    let csr = params.serialize_request(&key)?;
    Ok((key.serialize_pem(), csr.pem()?))
}

fn tls(cfg: &ManagedConfig, ca: &str, identity: Option<Identity>) -> ClientTlsConfig {
    let mut t = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(ca));
    if let Some(n) = &cfg.server_name {
        t = t.domain_name(n.clone());
    }
    if let Some(id) = identity {
        t = t.identity(id);
    }
    t
}

async fn channel(cfg: &ManagedConfig, tls: ClientTlsConfig) -> Result<Channel, ManagedError> {
    let err = |source| ManagedError::Transport {
        url: cfg.controller.clone(),
        source,
    };
    Channel::from_shared(cfg.controller.clone())
        .map_err(|e| ManagedError::Refused(tonic::Status::invalid_argument(e.to_string())))?
        .tls_config(tls)
        .map_err(err)?
        .connect_timeout(Duration::from_secs(5))
        .http2_keep_alive_interval(Duration::from_secs(20))
        .keep_alive_timeout(Duration::from_secs(10))
        .connect()
        .await
        .map_err(err)
}

/// Enrolls when the state directory holds no certificate yet.
///
/// # Errors
/// [`ManagedError::NoToken`] when needed and absent; the controller's
/// refusal otherwise.
pub async fn ensure_enrolled(cfg: &ManagedConfig) -> Result<String, ManagedError> {
    let st = StateDir(cfg.state_dir.clone());
    st.ensure()?;
    if let (Some(id), Some(_), Some(_)) =
        (st.agent_id()?, st.read("agent.crt")?, st.read("agent.key")?)
    {
        return Ok(id);
    }
    let token = cfg
        .enroll_token
        .clone()
        .ok_or_else(|| ManagedError::NoToken {
            dir: cfg.state_dir.clone(),
        })?;
    let ca = match &cfg.ca_file {
        Some(p) => std::fs::read_to_string(p).map_err(|source| ManagedError::Io {
            path: p.clone(),
            source,
        })?,
        None => st.read("ca.crt")?.ok_or_else(|| ManagedError::State {
            path: cfg.state_dir.join("ca.crt"),
            message: "no CA to verify the controller with (give --controller-ca)".to_owned(),
        })?,
    };
    let (key, csr) = new_csr(&cfg.hostname)?;
    let ch = channel(cfg, tls(cfg, &ca, None)).await?;
    let resp = AgentEnrollmentClient::new(ch)
        .enroll(pb::EnrollRequest {
            token,
            hostname: cfg.hostname.clone(),
            labels: cfg.labels.clone().into_iter().collect(),
            csr_pem: csr,
        })
        .await?
        .into_inner();
    st.write("agent.key", &key, 0o600)?;
    st.write("agent.crt", &resp.cert_pem, 0o644)?;
    st.write("ca.crt", &resp.ca_pem, 0o644)?;
    st.write("agent.id", &resp.agent_id, 0o644)?;
    info!(agent = resp.agent_id, "enrolled with the controller");
    Ok(resp.agent_id)
}

fn identity(st: &StateDir) -> Result<(Identity, String), ManagedError> {
    let missing = |n: &str| ManagedError::State {
        path: st.path(n),
        message: "missing".to_owned(),
    };
    let cert = st.read("agent.crt")?.ok_or_else(|| missing("agent.crt"))?;
    let key = st.read("agent.key")?.ok_or_else(|| missing("agent.key"))?;
    let ca = st.read("ca.crt")?.ok_or_else(|| missing("ca.crt"))?;
    Ok((Identity::from_pem(cert, key), ca))
}

/// Seconds of validity left on the stored certificate (negative: expired).
fn cert_seconds_left(st: &StateDir) -> Option<(i64, i64)> {
    use x509_parser::prelude::*;
    let pem = st.read("agent.crt").ok()??;
    let (_, p) = parse_x509_pem(pem.as_bytes()).ok()?;
    let cert = p.parse_x509().ok()?;
    let v = cert.validity();
    let (nb, na) = (v.not_before.timestamp(), v.not_after.timestamp());
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .ok()?
        .as_secs();
    Some((na - i64::try_from(now).ok()?, na - nb))
}

/// Renews the certificate over the current session's channel once two
/// thirds of its life are gone; the new key never leaves the host.
async fn maybe_renew(cfg: &ManagedConfig, ch: Channel) -> Result<bool, ManagedError> {
    let st = StateDir(cfg.state_dir.clone());
    let Some((left, total)) = cert_seconds_left(&st) else {
        return Ok(false);
    };
    if left > total / 3 {
        return Ok(false);
    }
    let (key, csr) = new_csr(&cfg.hostname)?;
    let resp = AgentServiceClient::new(ch)
        .renew(pb::RenewRequest { csr_pem: csr })
        .await?
        .into_inner();
    st.write("agent.key", &key, 0o600)?;
    st.write("agent.crt", &resp.cert_pem, 0o644)?;
    info!(not_after = resp.not_after, "certificate renewed");
    Ok(true)
}

/// Full jitter: uniform in `[0, d]` from the clock's low bits (no RNG
/// dependency; agents of one fleet never share their clocks' nanoseconds).
fn jitter(d: Duration) -> Duration {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |t| t.subsec_nanos());
    let frac = f64::from(nanos % 1_000_000) / 1_000_000.0;
    d.mul_f64(frac).max(Duration::from_millis(10))
}

/// Re-enforces the persisted policy at start (pins may be gone after a
/// reboot; re-applying an identical policy is harmless).
fn restore(st: &StateDir, dp: &mut dyn Dataplane, status: &Status) {
    match st.applied() {
        Ok(Some(a)) => match dp.apply(&a.policy) {
            Ok(()) => {
                status.applied_version.store(a.version, Ordering::Relaxed);
                status.fail_static.store(true, Ordering::Relaxed);
                info!(
                    version = a.version,
                    "re-enforcing the last policy (fail-static until connected)"
                );
            }
            Err(e) => warn!(
                version = a.version,
                error = e,
                "stored policy no longer applies"
            ),
        },
        Ok(None) => {}
        Err(e) => warn!(error = %e, "stored policy unreadable; waiting for the controller"),
    }
}

/// Why a session ended.
enum End {
    Shutdown,
    Lost(String),
    Fatal(ManagedError),
}

/// Runs managed mode until `shutdown`: enroll if needed, then sessions
/// with reconnects. Returns only on shutdown or a permanent refusal
/// (revoked, unknown certificate, no token).
///
/// # Errors
/// [`ManagedError`] on a permanent failure.
pub async fn run<D: Dataplane>(
    cfg: ManagedConfig,
    dp: Arc<std::sync::Mutex<D>>,
    status: Arc<Status>,
    shutdown: impl std::future::Future<Output = ()>,
) -> Result<(), ManagedError> {
    let st = StateDir(cfg.state_dir.clone());
    {
        let mut g = dp.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        restore(&st, &mut *g, &status);
    }
    tokio::pin!(shutdown);
    let mut backoff = cfg.backoff_min;
    loop {
        let attempt = async {
            ensure_enrolled(&cfg).await.map_err(|e| match e {
                ManagedError::Refused(s) if s.code() != tonic::Code::Unavailable => {
                    End::Fatal(ManagedError::Refused(s))
                }
                e @ ManagedError::NoToken { .. } => End::Fatal(e),
                other => End::Lost(other.to_string()),
            })?;
            session(&cfg, &st, dp.clone(), &status).await
        };
        let end = tokio::select! {
            () = &mut shutdown => End::Shutdown,
            e = attempt => match e { Ok(()) => End::Lost("session ended".to_owned()), Err(e) => e },
        };
        let had_session = status.connected.swap(false, Ordering::Relaxed);
        status.fail_static.store(
            status.applied_version.load(Ordering::Relaxed) > 0,
            Ordering::Relaxed,
        );
        match end {
            End::Shutdown => return Ok(()),
            End::Fatal(e) => {
                warn!(error = %e, "controller refused this agent for good; enforcing the last policy");
                return Err(e);
            }
            End::Lost(why) => {
                if had_session {
                    backoff = cfg.backoff_min;
                }
                let wait = jitter(backoff);
                warn!(
                    reason = why,
                    retry_in_ms = wait.as_millis() as u64,
                    "controller unreachable; fail-static"
                );
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    () = tokio::time::sleep(wait) => {}
                }
                backoff = (backoff * 2).min(cfg.backoff_max);
            }
        }
    }
}

async fn session<D: Dataplane>(
    cfg: &ManagedConfig,
    st: &StateDir,
    dp: Arc<std::sync::Mutex<D>>,
    status: &Status,
) -> Result<(), End> {
    let fatal_or_lost = |s: tonic::Status| match s.code() {
        tonic::Code::PermissionDenied | tonic::Code::Unauthenticated => {
            End::Fatal(ManagedError::Refused(s))
        }
        _ => End::Lost(s.to_string()),
    };
    let (id, ca) = identity(st).map_err(End::Fatal)?;
    let ch = channel(cfg, tls(cfg, &ca, Some(id)))
        .await
        .map_err(|e| End::Lost(e.to_string()))?;
    let applied = st.applied().ok().flatten().unwrap_or_default();
    let (tx, rx) = mpsc::channel::<pb::AgentMessage>(16);
    let hello = pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            applied_version: applied.version,
            policy_hash: applied.hash.clone(),
            agent_version: env!("CARGO_PKG_VERSION").to_owned(),
        })),
    };
    let _ = tx.send(hello).await;
    let mut inbound = AgentServiceClient::new(ch.clone())
        .session(ReceiverStream::new(rx))
        .await
        .map_err(fatal_or_lost)?
        .into_inner();
    status.connected.store(true, Ordering::Relaxed);
    status.fail_static.store(false, Ordering::Relaxed);
    status.sessions.fetch_add(1, Ordering::Relaxed);
    info!(
        controller = cfg.controller,
        applied = applied.version,
        "session open"
    );
    if let Err(e) = maybe_renew(cfg, ch.clone()).await {
        warn!(error = %e, "certificate renewal failed; will retry");
    }
    let mut hb = tokio::time::interval(cfg.heartbeat);
    hb.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut seq = 0u64;
    // A policy received in a transaction's prepare phase, switched in only
    // by its Activate (and forgotten by Discard or a new session).
    let mut staged: Option<pb::PolicyPush> = None;
    loop {
        tokio::select! {
            msg = inbound.message() => {
                let msg = match msg {
                    Ok(Some(m)) => m,
                    Ok(None) => return Err(End::Lost("controller closed the session".to_owned())),
                    Err(s) => return Err(fatal_or_lost(s)),
                };
                let ack = match msg.msg {
                    Some(pb::controller_message::Msg::Push(push)) if push.stage => {
                        Some(stage_push(&dp, &mut staged, push).await)
                    }
                    Some(pb::controller_message::Msg::Push(push)) => {
                        staged = None;
                        Some(apply_push(st, &dp, status, push).await)
                    }
                    Some(pb::controller_message::Msg::Activate(a)) => {
                        Some(match staged.take() {
                            Some(push) if push.version == a.version => {
                                apply_push(st, &dp, status, push).await
                            }
                            other => {
                                staged = other;
                                ack(a.version, false, format!(
                                    "version {} was not staged on this agent", a.version
                                ), false)
                            }
                        })
                    }
                    Some(pb::controller_message::Msg::Discard(d)) => {
                        if staged.as_ref().is_some_and(|p| p.version == d.version) {
                            info!(version = d.version, "staged policy discarded");
                            staged = None;
                        }
                        None
                    }
                    None => None,
                };
                if let Some(ack) = ack
                    && tx.send(ack).await.is_err()
                {
                    return Err(End::Lost("session closed".to_owned()));
                }
            }
            _ = hb.tick() => {
                seq += 1;
                let d = dp.clone();
                let every = u64::from(cfg.counters_every.max(1));
                let (health, counters) = tokio::task::spawn_blocking(move || {
                    let g = d.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    (g.health(), seq.is_multiple_of(every).then(|| g.counters()))
                })
                .await
                .map_err(|e| End::Lost(e.to_string()))?;
                let beat = pb::AgentMessage {
                    msg: Some(pb::agent_message::Msg::Heartbeat(pb::Heartbeat {
                        seq,
                        health: Some(health),
                        applied_version: status.applied_version.load(Ordering::Relaxed),
                    })),
                };
                if tx.send(beat).await.is_err() {
                    return Err(End::Lost("session closed".to_owned()));
                }
                if let Some(rules) = counters {
                    let _ = tx.send(pb::AgentMessage {
                        msg: Some(pb::agent_message::Msg::Counters(pb::Counters { rules })),
                    }).await;
                }
                if seq.is_multiple_of(720)
                    && let Err(e) = maybe_renew(cfg, ch.clone()).await
                {
                    warn!(error = %e, "certificate renewal failed; will retry");
                }
            }
        }
    }
}

async fn apply_push<D: Dataplane>(
    st: &StateDir,
    dp: &Arc<std::sync::Mutex<D>>,
    status: &Status,
    push: pb::PolicyPush,
) -> pb::AgentMessage {
    let version = push.version;
    let mut policy = push.policy.unwrap_or_default();
    policy.version = version;
    let p = policy.clone();
    let res = on_dataplane(dp, "apply", move |d| d.apply(&p)).await;
    let res = res.and_then(|()| {
        st.save_applied(&Applied {
            version,
            hash: push.policy_hash.clone(),
            policy,
        })
        .map_err(|e| e.to_string())
    });
    let (ok, error) = match res {
        Ok(()) => {
            status.applied_version.store(version, Ordering::Relaxed);
            status.applies.fetch_add(1, Ordering::Relaxed);
            info!(version, "policy applied");
            (true, String::new())
        }
        Err(e) => {
            status.apply_errors.fetch_add(1, Ordering::Relaxed);
            warn!(
                version,
                error = e,
                "pushed policy refused; the policy in force stays"
            );
            (false, e)
        }
    };
    ack(version, ok, error, false)
}

/// Runs `f` on the dataplane off the async runtime (map writes and policy
/// compilation block); a panicking task is reported as `what` failing.
async fn on_dataplane<D: Dataplane>(
    dp: &Arc<std::sync::Mutex<D>>,
    what: &str,
    f: impl FnOnce(&mut D) -> Result<(), String> + Send + 'static,
) -> Result<(), String> {
    let d = dp.clone();
    tokio::task::spawn_blocking(move || {
        f(&mut d.lock().unwrap_or_else(std::sync::PoisonError::into_inner))
    })
    .await
    .unwrap_or_else(|e| Err(format!("{what} task failed: {e}")))
}

/// The acknowledgement of `version` (`staged`: of the prepare phase).
fn ack(version: u64, ok: bool, error: String, staged: bool) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Ack(pb::Ack {
            version,
            ok,
            error,
            staged,
        })),
    }
}

/// Prepare phase: validates the pushed policy without switching and keeps
/// it for the transaction's Activate.
async fn stage_push<D: Dataplane>(
    dp: &Arc<std::sync::Mutex<D>>,
    staged: &mut Option<pb::PolicyPush>,
    mut push: pb::PolicyPush,
) -> pb::AgentMessage {
    let version = push.version;
    let mut policy = push.policy.take().unwrap_or_default();
    policy.version = version;
    let p = policy.clone();
    let res = on_dataplane(dp, "validate", move |d| d.validate(&p)).await;
    match res {
        Ok(()) => {
            info!(version, "policy staged");
            push.policy = Some(policy);
            push.stage = false;
            *staged = Some(push);
            ack(version, true, String::new(), true)
        }
        Err(e) => {
            warn!(version, error = e, "staged policy refused");
            ack(version, false, e, true)
        }
    }
}
