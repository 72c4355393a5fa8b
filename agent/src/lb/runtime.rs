//! The load balancer as the agent daemon runs it: one pinned
//! [`Balancer`] per interface named by the policy's `virtual_services`,
//! applied together with the firewall section, health checks that flip
//! backends, and the Prometheus series and health reports built from it.
//!
//! Applying a policy is all-or-nothing as far as the agent can make it:
//! both sections are validated before either is touched; a load balancer
//! that must move (its interface gains or loses the firewall, which changes
//! how it is hooked in) is taken off first, the firewall is applied, then
//! every balancer; a failure on the way restores the previous firewall
//! policy and the previous balancers (on the first policy of a run there is
//! no previous firewall policy: the new firewall section then stays, since
//! no firewall at all would be the less safe state).

use std::{
    collections::{BTreeMap, BTreeSet},
    net::{Ipv4Addr, Ipv6Addr, SocketAddr},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use prometheus::{Encoder, IntCounterVec, Opts, Registry, TextEncoder};
use rampart_proto::v1 as pb;
use thiserror::Error;
use tracing::{error, info, warn};

use super::{
    health::{self, BackendHealth, Check, HealthSpec, ProbeError},
    maps::{self, Balancer, Hook, LbMapsError, LbOptions},
    metrics::LbMetrics,
    policy::{self as lbpolicy, LbPlan, LbPolicyError, LbService},
    service::ServiceSpec,
};
use crate::{
    attach::XdpModePref,
    fw::enforcer::{ApplyError, Enforcer},
    fw::policy::{self, PolicyError},
    pins::PinLayout,
};

/// A refused or failed host policy (firewall and load-balancer sections).
#[derive(Debug, Error)]
pub enum HostApplyError {
    /// The policy file cannot be read or parsed.
    #[error(transparent)]
    File(PolicyError),
    /// The firewall section does not compile.
    #[error("firewall section: {0}")]
    FirewallPolicy(#[source] PolicyError),
    /// The load-balancer section is invalid.
    #[error("virtual_services: {0}")]
    LbPolicy(#[source] LbPolicyError),
    /// Applying the firewall failed (the previous policy stays).
    #[error("firewall: {0}")]
    Firewall(#[source] ApplyError),
    /// The load balancer of an interface could not be attached or written
    /// (the previous firewall policy and balancers were restored).
    #[error("load balancer on {interface}: {source}")]
    Balancer {
        /// Interface.
        interface: String,
        /// The dataplane's error.
        #[source]
        source: Box<LbMapsError>,
    },
}

/// One probe to run outside the daemon's lock.
#[derive(Clone, Debug)]
pub struct ProbeJob {
    generation: u64,
    monitor: usize,
    backend: usize,
    target: SocketAddr,
    check: Check,
    timeout: Duration,
}

/// A backend state change seen by the health checks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transition {
    /// Virtual service.
    pub service: String,
    /// Backend.
    pub backend: SocketAddr,
    /// New state.
    pub up: bool,
}

struct Probe {
    target: SocketAddr,
    state: BackendHealth,
    last_error: String,
}

struct Monitor {
    service: String,
    interface: String,
    spec: HealthSpec,
    probes: Vec<Probe>,
    next: Instant,
}

struct Attached {
    balancer: Balancer,
    hook: Hook,
    pin_dir: PathBuf,
}

/// Every balancer of the host, their services and health checks.
pub struct LbRuntime {
    fw_layout: PinLayout,
    lb_root: PathBuf,
    opts: LbOptions,
    xdp_mode: XdpModePref,
    balancers: BTreeMap<String, Attached>,
    services: Vec<LbService>,
    monitors: Vec<Monitor>,
    generation: u64,
    /// The policy in force (restored when a later one fails half-way).
    last_policy: Option<pb::HostPolicy>,
    swept: bool,
    registry: Registry,
    metrics: Option<LbMetrics>,
    probe_failures: IntCounterVec,
}

/// The directory holding the pins of balancers hooked in on their own
/// (not after the firewall): a sibling of the firewall's root, so the
/// firewall never mistakes them for one of its interfaces.
#[must_use]
pub fn lb_root(fw_root: &Path) -> PathBuf {
    let mut name = fw_root.file_name().unwrap_or_default().to_os_string();
    name.push("-lb");
    fw_root.with_file_name(name)
}

/// First IPv4 and first global IPv6 address of `interface` (the outer
/// source of IP-in-IP packets the balancer sends from there).
fn interface_addrs(interface: &str) -> (Option<Ipv4Addr>, Option<Ipv6Addr>) {
    let mut v4 = None;
    let mut v6 = None;
    let mut ifap: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills a list we free below; every pointer is
    // checked before use and the list is only read.
    #[allow(unsafe_code, reason = "getifaddrs(3)")]
    unsafe {
        if libc::getifaddrs(&raw mut ifap) != 0 {
            return (None, None);
        }
        let mut p = ifap;
        while !p.is_null() {
            let ifa = &*p;
            p = ifa.ifa_next;
            if ifa.ifa_addr.is_null() || ifa.ifa_name.is_null() {
                continue;
            }
            let name = std::ffi::CStr::from_ptr(ifa.ifa_name).to_string_lossy();
            if name != interface {
                continue;
            }
            match i32::from((*ifa.ifa_addr).sa_family) {
                libc::AF_INET if v4.is_none() => {
                    let sin = &*ifa.ifa_addr.cast::<libc::sockaddr_in>();
                    v4 = Some(Ipv4Addr::from(u32::from_be(sin.sin_addr.s_addr)));
                }
                libc::AF_INET6 => {
                    let sin6 = &*ifa.ifa_addr.cast::<libc::sockaddr_in6>();
                    let a = Ipv6Addr::from(sin6.sin6_addr.s6_addr);
                    if v6.is_none() && !a.is_unicast_link_local() {
                        v6 = Some(a);
                    }
                }
                _ => {}
            }
        }
        libc::freeifaddrs(ifap);
    }
    (v4, v6)
}

impl LbRuntime {
    /// A runtime pinning next to the firewall's `fw_layout`; `opts` are the
    /// map sizes (the outer source addresses are taken from each
    /// interface).
    #[must_use]
    pub fn new(fw_layout: PinLayout, opts: LbOptions, xdp_mode: XdpModePref) -> Self {
        let registry = Registry::new();
        let metrics = LbMetrics::new(&registry)
            .map_err(|e| error!(error = %e, "load-balancer metrics unavailable"))
            .ok();
        let probe_failures = IntCounterVec::new(
            Opts::new(
                "rampart_lb_health_probe_failures_total",
                "Failed backend health probes",
            ),
            &["backend"],
        )
        .expect("valid metric definition");
        let _ = registry.register(Box::new(probe_failures.clone()));
        Self {
            lb_root: lb_root(&fw_layout.root),
            fw_layout,
            opts,
            xdp_mode,
            balancers: BTreeMap::new(),
            services: Vec::new(),
            monitors: Vec::new(),
            generation: 0,
            last_policy: None,
            swept: false,
            registry,
            metrics,
            probe_failures,
        }
    }

    /// The services in force.
    #[must_use]
    pub fn services(&self) -> &[LbService] {
        &self.services
    }

    /// Interfaces with a balancer.
    #[must_use]
    pub fn interfaces(&self) -> Vec<String> {
        self.balancers.keys().cloned().collect()
    }

    /// The balancer of `interface` (tests, status).
    #[must_use]
    pub fn balancer(&self, interface: &str) -> Option<&Balancer> {
        self.balancers.get(interface).map(|a| &a.balancer)
    }

    fn pin_dir(&self, interface: &str, hook: Hook) -> PathBuf {
        match hook {
            Hook::AfterFirewall => maps::lb_pin_dir(&self.fw_layout.dir(interface)),
            Hook::Xdp(_) => self.lb_root.join(interface),
        }
    }

    /// Checks both sections of `policy` without touching anything.
    ///
    /// # Errors
    /// The first problem of either section.
    pub fn validate(&self, policy: &pb::HostPolicy) -> Result<LbPlan, HostApplyError> {
        let exists = |n: &str| crate::attach::ifindex(n).is_some();
        policy::compile(policy, &exists).map_err(HostApplyError::FirewallPolicy)?;
        lbpolicy::plan(
            &policy.virtual_services,
            &exists,
            self.opts.max_vips,
            self.opts.max_table_size,
        )
        .map_err(HostApplyError::LbPolicy)
    }

    fn attach(
        &self,
        interface: &str,
        hook: Hook,
        services: &[ServiceSpec],
    ) -> Result<Attached, HostApplyError> {
        let pin_dir = self.pin_dir(interface, hook);
        let (v4, v6) = interface_addrs(interface);
        let opts = LbOptions {
            src_v4: v4.unwrap_or(self.opts.src_v4),
            src_v6: v6.unwrap_or(self.opts.src_v6),
            ..self.opts.clone()
        };
        let err = |source| HostApplyError::Balancer {
            interface: interface.to_owned(),
            source: Box::new(source),
        };
        let (mut balancer, adopted) =
            Balancer::attach_pinned(&pin_dir, interface, hook, opts).map_err(err)?;
        if let Err(e) = balancer.apply(services) {
            if !adopted {
                drop(balancer);
                let _ = maps::detach_pinned(&pin_dir);
            }
            return Err(err(e));
        }
        Ok(Attached {
            balancer,
            hook,
            pin_dir,
        })
    }

    fn specs_of(services: &[LbService], interface: &str) -> Vec<ServiceSpec> {
        services
            .iter()
            .filter(|s| s.interface == interface)
            .map(|s| s.spec.clone())
            .collect()
    }

    /// Removes balancers pinned by an earlier run on interfaces the first
    /// policy no longer names.
    fn sweep_stale(&mut self, plan: &LbPlan) {
        for (iface, dir, _) in pinned_balancers(&self.fw_layout) {
            if plan.contains_key(&iface) {
                continue;
            }
            match maps::detach_pinned(&dir) {
                Ok(()) => info!(interface = %iface, "stale load balancer removed"),
                Err(e) => warn!(interface = %iface, error = %e, "stale load balancer not removed"),
            }
        }
    }

    /// Applies `policy`: the firewall section through `enforcer`, the
    /// load-balancer section here (see the module docs for the order).
    ///
    /// # Errors
    /// [`HostApplyError`]; nothing changed for a refused policy, the
    /// previous state was restored for a failed one.
    pub fn apply_with_firewall(
        &mut self,
        enforcer: &mut Enforcer,
        policy: &pb::HostPolicy,
    ) -> Result<(), HostApplyError> {
        let exists = |n: &str| crate::attach::ifindex(n).is_some();
        let fw = policy::compile(policy, &exists).map_err(HostApplyError::FirewallPolicy)?;
        let plan = lbpolicy::plan(
            &policy.virtual_services,
            &exists,
            self.opts.max_vips,
            self.opts.max_table_size,
        )
        .map_err(HostApplyError::LbPolicy)?;
        if !self.swept {
            self.sweep_stale(&plan);
            self.swept = true;
        }
        let fw_ifaces: BTreeSet<&str> = fw.interfaces.iter().map(|i| i.name.as_str()).collect();
        let hook_of = |iface: &str| {
            if fw_ifaces.contains(iface) {
                Hook::AfterFirewall
            } else {
                Hook::Xdp(self.xdp_mode)
            }
        };
        // 1. Balancers that leave or must be hooked in differently go first:
        // one XDP program per interface, and the firewall's pin directory
        // must be free of the balancer's before the firewall detaches.
        let moving: Vec<String> = self
            .balancers
            .iter()
            .filter(|(i, a)| !plan.contains_key(*i) || hook_of(i) != a.hook)
            .map(|(i, _)| i.clone())
            .collect();
        let mut removed = Vec::new();
        for iface in moving {
            if let Some(a) = self.balancers.remove(&iface) {
                let (hook, dir) = (a.hook, a.pin_dir.clone());
                drop(a);
                if let Err(e) = maps::detach_pinned(&dir) {
                    warn!(interface = %iface, error = %e, "load balancer detach failed");
                }
                removed.push((iface, hook));
            }
        }
        // 2. The firewall.
        if let Err(e) = enforcer.apply(policy) {
            self.restore(&removed);
            return Err(HostApplyError::Firewall(e));
        }
        // 3. Every balancer of the plan.
        let mut fresh: Vec<String> = Vec::new();
        let mut failure = None;
        for (iface, services) in &plan {
            let specs: Vec<ServiceSpec> = services.iter().map(|s| s.spec.clone()).collect();
            let res = match self.balancers.get_mut(iface) {
                Some(a) => a
                    .balancer
                    .apply(&specs)
                    .map_err(|source| HostApplyError::Balancer {
                        interface: iface.clone(),
                        source: Box::new(source),
                    }),
                None => self.attach(iface, hook_of(iface), &specs).map(|a| {
                    self.balancers.insert(iface.clone(), a);
                    fresh.push(iface.clone());
                }),
            };
            if let Err(e) = res {
                failure = Some(e);
                break;
            }
        }
        if let Some(e) = failure {
            error!(error = %e, "load balancer not applied; restoring the previous policy");
            for iface in fresh {
                if let Some(a) = self.balancers.remove(&iface) {
                    let dir = a.pin_dir.clone();
                    drop(a);
                    let _ = maps::detach_pinned(&dir);
                }
            }
            let old = self.services.clone();
            for (iface, a) in &mut self.balancers {
                if let Err(e) = a.balancer.apply(&Self::specs_of(&old, iface)) {
                    warn!(interface = %iface, error = %e, "previous services not restored");
                }
            }
            // Without a previous policy (first apply of this run, the
            // firewall maybe adopted from pins) there is nothing to go back
            // to: the new firewall section stays rather than none at all.
            match &self.last_policy {
                Some(prev) => {
                    if let Err(e) = enforcer.apply(prev) {
                        warn!(error = %e, "previous firewall policy not restored");
                    }
                }
                None => warn!("no previous policy in this run: the new firewall section stays"),
            }
            self.restore(&removed);
            return Err(e);
        }
        self.services = plan.into_values().flatten().collect();
        self.rebuild_monitors();
        self.last_policy = Some(policy.clone());
        info!(
            virtual_services = self.services.len(),
            interfaces = ?self.interfaces(),
            version = policy.version,
            "load-balancer section applied"
        );
        Ok(())
    }

    /// Puts back balancers taken off for an apply that then failed.
    fn restore(&mut self, removed: &[(String, Hook)]) {
        let old = self.services.clone();
        for (iface, hook) in removed {
            match self.attach(iface, *hook, &Self::specs_of(&old, iface)) {
                Ok(a) => {
                    self.balancers.insert(iface.clone(), a);
                }
                Err(e) => {
                    error!(interface = %iface, error = %e, "previous load balancer not restored");
                }
            }
        }
        // Health flags of restored balancers start up; the monitors say
        // again what is down within `fall` probes.
        self.rebuild_monitors();
    }

    /// New monitors for the services in force. A virtual service whose
    /// backends and check are unchanged keeps its state; others start up
    /// (their backends are flagged up in the dataplane).
    fn rebuild_monitors(&mut self) {
        let mut old: Vec<Monitor> = std::mem::take(&mut self.monitors);
        let now = Instant::now();
        let mut keep_down: BTreeSet<(String, SocketAddr)> = BTreeSet::new();
        for s in &self.services {
            let Some(spec) = &s.health else { continue };
            let targets = s.targets();
            let reuse = old.iter().position(|m| {
                m.service == s.spec.name
                    && m.interface == s.interface
                    && m.spec == *spec
                    && m.probes
                        .iter()
                        .map(|p| p.target)
                        .eq(targets.iter().copied())
            });
            let m = match reuse {
                Some(i) => old.swap_remove(i),
                None => Monitor {
                    service: s.spec.name.clone(),
                    interface: s.interface.clone(),
                    spec: spec.clone(),
                    probes: targets
                        .iter()
                        .map(|t| Probe {
                            target: *t,
                            state: BackendHealth::default(),
                            last_error: String::new(),
                        })
                        .collect(),
                    next: now,
                },
            };
            for p in m.probes.iter().filter(|p| !p.state.up) {
                keep_down.insert((m.interface.clone(), p.target));
            }
            self.monitors.push(m);
        }
        // Everything not kept down by a monitor is up in the dataplane.
        for (iface, a) in &mut self.balancers {
            let targets: Vec<SocketAddr> = self
                .services
                .iter()
                .filter(|s| &s.interface == iface)
                .flat_map(LbService::targets)
                .collect();
            for t in targets {
                let down = keep_down.contains(&(iface.clone(), t));
                if a.balancer.is_down(t.ip(), t.port()) != down
                    && let Err(e) = a.balancer.set_backend_down(t.ip(), t.port(), down)
                {
                    warn!(interface = %iface, backend = %t, error = %e, "backend flag not written");
                }
            }
        }
        self.generation += 1;
    }

    /// The probes due at `now` (each monitor's next round is scheduled).
    pub fn due_probes(&mut self, now: Instant) -> Vec<ProbeJob> {
        let mut jobs = Vec::new();
        for (mi, m) in self.monitors.iter_mut().enumerate() {
            if m.next > now {
                continue;
            }
            m.next = now + m.spec.interval;
            for (bi, p) in m.probes.iter().enumerate() {
                jobs.push(ProbeJob {
                    generation: self.generation,
                    monitor: mi,
                    backend: bi,
                    target: p.target,
                    check: m.spec.check.clone(),
                    timeout: m.spec.timeout,
                });
            }
        }
        jobs
    }

    /// Records probe results: transitions flip the backend in its
    /// balancer, are counted, and are returned. Results of a monitor set
    /// replaced meanwhile (a new policy) are dropped.
    pub fn record(&mut self, results: Vec<(ProbeJob, Result<(), ProbeError>)>) -> Vec<Transition> {
        let mut out = Vec::new();
        for (job, res) in results {
            if job.generation != self.generation {
                continue;
            }
            let Some(m) = self.monitors.get_mut(job.monitor) else {
                continue;
            };
            let Some(p) = m.probes.get_mut(job.backend) else {
                continue;
            };
            if let Err(e) = &res {
                self.probe_failures
                    .with_label_values(&[&p.target.to_string()])
                    .inc();
                p.last_error = e.to_string();
            }
            let Some(up) = p.state.record(p.target, &res, &m.spec) else {
                continue;
            };
            if up {
                p.last_error.clear();
            }
            if let Some(a) = self.balancers.get_mut(&m.interface)
                && let Err(e) = a
                    .balancer
                    .set_backend_down(p.target.ip(), p.target.port(), !up)
            {
                error!(interface = %m.interface, backend = %p.target, error = %e, "backend flag not written");
            }
            if let Some(metrics) = &self.metrics {
                metrics.health_transition(&p.target.to_string(), up);
            }
            out.push(Transition {
                service: m.service.clone(),
                backend: p.target,
                up,
            });
        }
        out
    }

    /// Backends under health checks, for the controller's heartbeat.
    #[must_use]
    pub fn backend_health(&self) -> Vec<pb::BackendHealth> {
        self.monitors
            .iter()
            .flat_map(|m| {
                m.probes.iter().map(|p| pb::BackendHealth {
                    virtual_service: m.service.clone(),
                    backend: p.target.to_string(),
                    up: p.state.up,
                    transitions: p.state.transitions,
                    last_error: if p.state.up {
                        String::new()
                    } else {
                        p.last_error.clone()
                    },
                })
            })
            .collect()
    }

    /// Highest flow-table fill ratio of any balancer (0..1).
    #[must_use]
    pub fn flow_pressure(&self) -> f64 {
        self.balancers
            .values()
            .map(|a| {
                #[allow(clippy::cast_precision_loss, reason = "a ratio")]
                let r =
                    a.balancer.flow_count() as f64 / f64::from(a.balancer.flow_capacity().max(1));
                r
            })
            .fold(0.0, f64::max)
    }

    /// The load balancer's Prometheus series (per VIP, per backend, events,
    /// health, flow table), read from the maps now.
    pub fn render_metrics(&mut self) -> String {
        if let Some(m) = &mut self.metrics {
            for a in self.balancers.values() {
                m.update(&a.balancer);
            }
        }
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}

/// The VIPs (address, port, protocol) in the pinned `LB_VIPS` map of a
/// balancer's pin directory: what `rampart-agent status` shows.
///
/// # Errors
/// The map is missing or not the expected type.
pub fn pinned_vips(dir: &Path) -> Result<Vec<(std::net::IpAddr, u16, u8)>, LbMapsError> {
    use aya::maps::{HashMap as BpfHashMap, Map, MapData};
    use rampart_common::lb::{LB_FAMILY_V4, VipInfo, VipKey};

    let err = |source| LbMapsError::Map {
        name: "LB_VIPS",
        source: Box::new(source),
    };
    let data = MapData::from_pin(dir.join("LB_VIPS")).map_err(err)?;
    let map = Map::from_map_data(data).map_err(err)?;
    let vips = BpfHashMap::<MapData, VipKey, VipInfo>::try_from(map).map_err(err)?;
    let mut out: Vec<_> = vips
        .keys()
        .filter_map(Result::ok)
        .map(|k| {
            let addr = if k.family == LB_FAMILY_V4 {
                std::net::IpAddr::from([k.addr[0], k.addr[1], k.addr[2], k.addr[3]])
            } else {
                std::net::IpAddr::from(k.addr)
            };
            (addr, k.port, k.proto)
        })
        .collect();
    out.sort_unstable();
    Ok(out)
}

/// Pin directories of the load balancers under a firewall root: beside it
/// (own XDP hook) and inside the firewall's interface directories (chained),
/// as `(interface, directory, chained)`.
#[must_use]
pub fn pinned_balancers(fw_layout: &PinLayout) -> Vec<(String, PathBuf, bool)> {
    let mut out = Vec::new();
    if let Ok(rd) = std::fs::read_dir(lb_root(&fw_layout.root)) {
        for e in rd.filter_map(Result::ok) {
            if let Ok(n) = e.file_name().into_string() {
                out.push((n, e.path(), false));
            }
        }
    }
    for i in fw_layout.interfaces() {
        let d = maps::lb_pin_dir(&fw_layout.dir(&i));
        if d.exists() {
            out.push((i, d, true));
        }
    }
    out.sort();
    out
}

/// Runs probe jobs in parallel (bounded), outside any lock.
#[must_use]
pub fn run_probes(jobs: &[ProbeJob]) -> Vec<(ProbeJob, Result<(), ProbeError>)> {
    let mut out = Vec::with_capacity(jobs.len());
    for chunk in jobs.chunks(32) {
        std::thread::scope(|s| {
            let handles: Vec<_> = chunk
                .iter()
                .map(|j| s.spawn(move || health::probe(j.target, &j.check, j.timeout)))
                .collect();
            for (j, h) in chunk.iter().zip(handles) {
                let r = h.join().unwrap_or_else(|_| {
                    Err(ProbeError::Connect {
                        target: j.target,
                        reason: "probe thread panicked".to_owned(),
                    })
                });
                out.push((j.clone(), r));
            }
        });
    }
    out
}

/// The daemon's health-check loop on its own thread: takes the due probes
/// under the lock, probes without it, records the results under it.
/// `runtime` picks the [`LbRuntime`] out of the shared state; `on_change`
/// sees every transition (the managed daemon reports them).
pub fn spawn_health_loop<S: Send + 'static>(
    state: Arc<Mutex<S>>,
    runtime: fn(&mut S) -> &mut LbRuntime,
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<()> {
    std::thread::Builder::new()
        .name("lb-health".to_owned())
        .spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let jobs = {
                    let mut g = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    runtime(&mut g).due_probes(Instant::now())
                };
                if !jobs.is_empty() {
                    let results = run_probes(&jobs);
                    let mut g = state.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                    for t in runtime(&mut g).record(results) {
                        info!(service = %t.service, backend = %t.backend, up = t.up, "backend health changed");
                    }
                }
                std::thread::sleep(Duration::from_millis(20));
            }
        })
        .expect("spawn the health-check thread")
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;

    use super::*;

    fn runtime_with(health: HealthSpec, backends: &[SocketAddr]) -> LbRuntime {
        let mut rt = LbRuntime::new(
            PinLayout {
                root: PathBuf::from("/nonexistent/rampart-test"),
            },
            LbOptions::default(),
            XdpModePref::Generic,
        );
        let port = backends[0].port();
        rt.services = vec![LbService {
            interface: "eth0".into(),
            spec: ServiceSpec {
                name: "web".into(),
                address: "192.0.2.1".parse().unwrap(),
                protocol: 6,
                port,
                backends: backends
                    .iter()
                    .map(|b| super::super::service::BackendSpec {
                        address: b.ip(),
                        port: b.port(),
                        weight: 1,
                    })
                    .collect(),
                mode: super::super::service::Mode::Dnat,
                maglev_table_size: 0,
            },
            health: Some(health),
            owner: "web-lb".into(),
            tenant: "acme".into(),
        }];
        rt.rebuild_monitors();
        rt
    }

    fn spec() -> HealthSpec {
        HealthSpec {
            check: Check::Tcp,
            interval: Duration::from_millis(10),
            timeout: Duration::from_millis(200),
            rise: 1,
            fall: 2,
        }
    }

    /// One probe round at a clock `k` seconds ahead (always due: the
    /// interval is 10 ms).
    fn round(rt: &mut LbRuntime, k: u64) -> Vec<Transition> {
        let jobs = rt.due_probes(Instant::now() + Duration::from_secs(k));
        assert!(!jobs.is_empty(), "round {k} is due");
        rt.record(run_probes(&jobs))
    }

    #[test]
    fn probes_flip_state_after_fall_and_report_it() {
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let good = live.local_addr().unwrap();
        // A port nobody listens on: bind, note, close.
        let bad = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut rt = runtime_with(spec(), &[good, bad]);
        assert!(
            round(&mut rt, 1).is_empty(),
            "fall = 2: one failure is not down"
        );
        let t = round(&mut rt, 2);
        assert_eq!(
            t,
            vec![Transition {
                service: "web".into(),
                backend: bad,
                up: false
            }]
        );
        let h = rt.backend_health();
        assert_eq!(h.len(), 2);
        assert!(h[0].up && h[0].last_error.is_empty());
        assert!(!h[1].up && h[1].transitions == 1, "{h:?}");
        assert!(h[1].last_error.contains("connect"), "{}", h[1].last_error);
        let m = rt.render_metrics();
        assert!(
            m.contains(&format!(
                "rampart_lb_health_transitions_total{{backend=\"{bad}\",to=\"down\"}} 1"
            )),
            "{m}"
        );
        assert!(
            m.contains(&format!(
                "rampart_lb_health_probe_failures_total{{backend=\"{bad}\"}} 2"
            )),
            "{m}"
        );
    }

    #[test]
    fn unchanged_services_keep_health_state_and_stale_results_are_dropped() {
        let live = TcpListener::bind("127.0.0.1:0").unwrap();
        let good = live.local_addr().unwrap();
        let bad = TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap();
        let mut rt = runtime_with(spec(), &[good, bad]);
        round(&mut rt, 1);
        round(&mut rt, 2);
        assert!(!rt.backend_health()[1].up);
        // A new policy with the same service keeps the down state.
        rt.rebuild_monitors();
        assert!(
            !rt.backend_health()[1].up,
            "state kept across an unchanged apply"
        );
        // A changed check starts over (up).
        rt.services[0].health = Some(HealthSpec { fall: 5, ..spec() });
        rt.rebuild_monitors();
        assert!(rt.backend_health().iter().all(|b| b.up));
        // Results of probes started before a rebuild are ignored.
        let jobs = rt.due_probes(Instant::now() + Duration::from_secs(3));
        rt.rebuild_monitors();
        for _ in 0..5 {
            assert!(rt.record(run_probes(&jobs)).is_empty());
        }
        assert!(rt.backend_health().iter().all(|b| b.up));
        // Not due again before the interval.
        let now = Instant::now() + Duration::from_secs(4);
        assert!(!rt.due_probes(now).is_empty());
        assert!(
            rt.due_probes(now).is_empty(),
            "scheduled one interval later"
        );
    }
}
