//! The standalone daemon: enforce a policy file (firewall and load-balancer
//! sections), reload it when it changes, run the load balancer's health
//! checks, serve `/metrics`, log sampled rule matches. Exiting (or crashing)
//! leaves the pinned programs enforcing the last policy.

use std::{
    future::Future,
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::Duration,
};

use axum::{Router, extract::State, routing::get};
use rampart_common::LogEvent;
use thiserror::Error;
use tracing::{error, info, warn};

use crate::{
    config::Config,
    fw::enforcer::Enforcer,
    fw::loader::{AttachOptions, LoaderError},
    fw::metrics::{self, DaemonCounters},
    fw::policy,
    lb::{
        maps::LbOptions,
        runtime::{self, LbRuntime},
    },
    pins::PinLayout,
    sys::from_bytes,
};

/// Daemon failures (startup only; runtime errors are logged and counted).
#[derive(Debug, Error)]
pub enum DaemonError {
    /// bpffs unusable.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Metrics listener.
    #[error("cannot listen on {addr}: {source}")]
    Listen {
        /// Address.
        addr: String,
        /// Error.
        #[source]
        source: std::io::Error,
    },
}

struct Shared {
    enforcer: Enforcer,
    lb: LbRuntime,
    counters: DaemonCounters,
}

type SharedState = Arc<Mutex<Shared>>;

fn lock(s: &SharedState) -> std::sync::MutexGuard<'_, Shared> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// What the daemon remembers of the policy file it applied last: enough to
/// notice a change without keeping (or, while the file's metadata is
/// unchanged, even reading) the file.
#[derive(Clone, Copy, PartialEq, Eq)]
struct FileStamp {
    modified: Option<std::time::SystemTime>,
    len: u64,
    digest: u64,
}

fn digest(bytes: &[u8]) -> u64 {
    use std::hash::{DefaultHasher, Hash, Hasher};
    let mut h = DefaultHasher::new();
    bytes.hash(&mut h);
    h.finish()
}

/// Reads and applies the policy file if its content changed. A refused
/// policy leaves the one in force untouched.
fn reload(state: &SharedState, path: &Path, last: &mut Option<FileStamp>, stop: &Arc<AtomicBool>) {
    let meta = std::fs::metadata(path).ok();
    let modified = meta.as_ref().and_then(|m| m.modified().ok());
    let len = meta.as_ref().map_or(0, std::fs::Metadata::len);
    if let Some(l) = last
        && meta.is_some()
        && l.modified == modified
        && l.len == len
    {
        return;
    }
    let Ok(bytes) = std::fs::read(path) else {
        if last.is_some() {
            warn!(path = %path.display(), "policy file unreadable; keeping the policy in force");
            *last = None;
        }
        return;
    };
    let stamp = FileStamp {
        modified,
        len,
        digest: digest(&bytes),
    };
    // Touched but not changed: remember the new metadata only.
    let unchanged = last.is_some_and(|l| l.digest == stamp.digest);
    *last = Some(stamp);
    drop(bytes);
    if unchanged {
        return;
    }
    let result = policy::load_file(path)
        .map_err(runtime::HostApplyError::File)
        .and_then(|p| {
            let mut s = lock(state);
            let Shared { enforcer, lb, .. } = &mut *s;
            lb.apply_with_firewall(enforcer, &p)
        });
    let mut s = lock(state);
    match result {
        Ok(()) => {
            s.counters.applies += 1;
            for (iface, rb) in s.enforcer.take_log_buffers() {
                spawn_log_reader(iface, rb, stop.clone());
            }
        }
        Err(e) => {
            s.counters.apply_errors += 1;
            error!(path = %path.display(), error = %e, "policy not applied; the policy in force stays");
        }
    }
    drop(s);
    // The parsed and compiled policy is gone; give its pages back.
    crate::sys::release_free_heap();
}

fn spawn_log_reader(interface: String, map: aya::maps::MapData, stop: Arc<AtomicBool>) {
    let Ok(mut rb) = aya::maps::RingBuf::try_from(aya::maps::Map::RingBuf(map)) else {
        warn!(interface, "LOG_EVENTS is not a ring buffer");
        return;
    };
    std::thread::spawn(move || {
        while !stop.load(Ordering::Relaxed) {
            while let Some(item) = rb.next() {
                if item.len() < std::mem::size_of::<LogEvent>() {
                    continue;
                }
                let ev: LogEvent = from_bytes(&item);
                let (src, dst) = addrs(&ev);
                info!(
                    interface,
                    rule = ev.sequence,
                    action = if ev.action == rampart_common::ACTION_PERMIT { "permit" } else { "deny" },
                    direction = if ev.direction == 0 { "ingress" } else { "egress" },
                    proto = ev.proto,
                    %src,
                    %dst,
                    sport = ev.sport,
                    dport = ev.dport,
                    "rule match (sampled)"
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    });
}

fn addrs(ev: &LogEvent) -> (std::net::IpAddr, std::net::IpAddr) {
    let conv = |a: &[u8; 16]| -> std::net::IpAddr {
        if ev.family == 4 {
            std::net::Ipv4Addr::new(a[0], a[1], a[2], a[3]).into()
        } else {
            std::net::Ipv6Addr::from(*a).into()
        }
    };
    (conv(&ev.src), conv(&ev.dst))
}

async fn metrics_handler(State(state): State<SharedState>) -> String {
    tokio::task::spawn_blocking(move || {
        let mut s = lock(&state);
        metrics::render(&s.enforcer, s.counters) + &s.lb.render_metrics()
    })
    .await
    .unwrap_or_default()
}

/// Runs until `shutdown` resolves. Pinned state is left in place.
pub async fn run(
    cfg: Config,
    policy_path: PathBuf,
    shutdown: impl Future<Output = ()>,
) -> Result<(), DaemonError> {
    let layout = PinLayout {
        root: cfg.pin_root.clone(),
    };
    crate::pins::ensure_bpffs(&layout.root).map_err(LoaderError::from)?;
    let opts = AttachOptions {
        conntrack_max: cfg.conntrack_max,
        xdp_mode: cfg.xdp_mode,
        timeouts: cfg.timeouts.timeouts(),
    };
    let lb = LbRuntime::new(layout.clone(), LbOptions::default(), cfg.xdp_mode);
    let mut enforcer = Enforcer::new(layout, opts);
    enforcer.adopt_pinned();
    let adopted = enforcer.interface_names();
    if !adopted.is_empty() {
        info!(interfaces = ?adopted, "adopted pinned enforcement");
    }
    let stop = Arc::new(AtomicBool::new(false));
    let state: SharedState = Arc::new(Mutex::new(Shared {
        enforcer,
        lb,
        counters: DaemonCounters::default(),
    }));
    let health = runtime::spawn_health_loop(state.clone(), |s| &mut s.lb, stop.clone());
    {
        let mut s = lock(&state);
        for (iface, rb) in s.enforcer.take_log_buffers() {
            spawn_log_reader(iface, rb, stop.clone());
        }
    }
    let mut last = None;
    {
        let (st, p, stp) = (state.clone(), policy_path.clone(), stop.clone());
        let mut l = None;
        tokio::task::spawn_blocking(move || {
            reload(&st, &p, &mut l, &stp);
            l
        })
        .await
        .map(|l| last = l)
        .unwrap_or_default();
    }

    let listener = tokio::net::TcpListener::bind(cfg.metrics_listen)
        .await
        .map_err(|source| DaemonError::Listen {
            addr: cfg.metrics_listen.to_string(),
            source,
        })?;
    let addr = listener
        .local_addr()
        .map_or_else(|_| cfg.metrics_listen.to_string(), |a| a.to_string());
    info!(metrics = %addr, policy = %policy_path.display(), "rampart-agent running");
    let app = Router::new()
        .route("/metrics", get(metrics_handler))
        .with_state(state.clone());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = rx.await;
            })
            .await;
    });
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);

    let mut tick = tokio::time::interval(Duration::from_millis(cfg.reload_interval_ms.max(50)));
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            () = &mut shutdown => break,
            _ = tick.tick() => {
                let (st, p, stp) = (state.clone(), policy_path.clone(), stop.clone());
                let mut l = last.take();
                last = tokio::task::spawn_blocking(move || {
                    reload(&st, &p, &mut l, &stp);
                    l
                })
                .await
                .unwrap_or_default();
            }
        }
    }
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Stopping]);
    stop.store(true, Ordering::Relaxed);
    let _ = tx.send(());
    let _ = server.await;
    let _ = tokio::task::spawn_blocking(move || health.join()).await;
    info!("rampart-agent stopped; pinned programs keep enforcing");
    Ok(())
}
