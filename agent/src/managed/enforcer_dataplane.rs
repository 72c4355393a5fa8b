//! [`Dataplane`](super::Dataplane) over the eBPF [`Enforcer`] (firewall)
//! and the [`LbRuntime`] (load balancer), applied together.

use rampart_proto::v1 as pb;

use crate::{
    fw::enforcer::{Enforcer, reason_name},
    lb::runtime::LbRuntime,
};

/// The real dataplane: XDP/TC programs and their maps, the firewall's and
/// the load balancer's.
pub struct EnforcerDataplane(pub Enforcer, pub LbRuntime);

impl super::Dataplane for EnforcerDataplane {
    fn apply(&mut self, policy: &pb::HostPolicy) -> Result<(), String> {
        self.1
            .apply_with_firewall(&mut self.0, policy)
            .map_err(|e| e.to_string())
    }

    fn validate(&self, policy: &pb::HostPolicy) -> Result<(), String> {
        // Both sections: the firewall compiles, the virtual services convert
        // and fit the load balancer.
        self.1.validate(policy).map(drop).map_err(|e| e.to_string())
    }

    fn health(&self) -> pb::Health {
        let mut h = pb::Health {
            backends: self.1.backend_health(),
            map_pressure: self.1.flow_pressure(),
            ..pb::Health::default()
        };
        for (name, s) in self.0.stats() {
            h.interfaces.push(pb::InterfaceHealth {
                up: std::fs::read_to_string(format!("/sys/class/net/{name}/operstate"))
                    .is_ok_and(|s| s.trim() != "down"),
                attached: true,
                xdp_mode: s.xdp_mode.to_owned(),
                name,
            });
            h.conntrack_entries += s.ct_entries;
            h.conntrack_max += s.ct_max;
            for (_, entries, cap) in &s.fill {
                if *cap > 0 {
                    #[allow(clippy::cast_precision_loss, reason = "a ratio")]
                    let r = *entries as f64 / *cap as f64;
                    h.map_pressure = h.map_pressure.max(r);
                }
            }
            for (_, reason, t) in &s.reasons {
                let n = reason_name(*reason);
                if n.contains("deny") || n.contains("drop") {
                    h.drops += t.packets;
                }
            }
        }
        h
    }

    fn counters(&self) -> Vec<pb::RuleCounter> {
        self.0
            .rule_totals()
            .into_iter()
            .map(|((iface, _dir, label), t)| pb::RuleCounter {
                service: label.service,
                tenant: label.tenant,
                sequence: label.sequence,
                interface: iface,
                packets: t.packets,
                bytes: t.bytes,
            })
            .collect()
    }
}

/// The managed daemon: the eBPF enforcer (adopting pinned state), the
/// controller session and `/metrics` (dataplane and managed-mode series).
///
/// # Errors
/// bpffs or listener failures at start; a permanent refusal by rampartd.
pub async fn run_daemon(
    cfg: crate::config::Config,
    managed: super::ManagedConfig,
    shutdown: impl std::future::Future<Output = ()>,
) -> anyhow::Result<()> {
    use std::sync::{Arc, Mutex};

    use anyhow::Context as _;

    let layout = crate::pins::PinLayout {
        root: cfg.pin_root.clone(),
    };
    crate::pins::ensure_bpffs(&layout.root)?;
    let opts = crate::fw::loader::AttachOptions {
        conntrack_max: cfg.conntrack_max,
        xdp_mode: cfg.xdp_mode,
        timeouts: cfg.timeouts.timeouts(),
    };
    let lb = LbRuntime::new(
        layout.clone(),
        crate::lb::maps::LbOptions::default(),
        cfg.xdp_mode,
    );
    let mut enforcer = Enforcer::new(layout, opts);
    enforcer.adopt_pinned();
    let dp = Arc::new(Mutex::new(EnforcerDataplane(enforcer, lb)));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let health = crate::lb::runtime::spawn_health_loop(dp.clone(), |d| &mut d.1, stop.clone());
    let status = Arc::new(super::Status::default());
    let listener = tokio::net::TcpListener::bind(cfg.metrics_listen)
        .await
        .with_context(|| format!("cannot listen on {}", cfg.metrics_listen))?;
    let (d, s) = (dp.clone(), status.clone());
    let app = axum::Router::new().route(
        "/metrics",
        axum::routing::get(move || {
            let (d, s) = (d.clone(), s.clone());
            async move {
                tokio::task::spawn_blocking(move || {
                    let mut g = d.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    let counters = crate::fw::metrics::DaemonCounters {
                        applies: s.applies.load(std::sync::atomic::Ordering::Relaxed),
                        apply_errors: s.apply_errors.load(std::sync::atomic::Ordering::Relaxed),
                    };
                    crate::fw::metrics::render(&g.0, counters) + &g.1.render_metrics() + &s.render()
                })
                .await
                .unwrap_or_default()
            }
        }),
    );
    let server = tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    let _ = sd_notify::notify(false, &[sd_notify::NotifyState::Ready]);
    tracing::info!(controller = managed.controller, metrics = %cfg.metrics_listen, "rampart-agent running (managed)");
    let res = super::run(managed, dp, status, shutdown).await;
    server.abort();
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _ = tokio::task::spawn_blocking(move || health.join()).await;
    res.map_err(Into::into)
}
