//! Prometheus export of the load balancer's counters: per-VIP and
//! per-backend packets/bytes/new flows, the global `lb_stat` events, backend
//! health, and flow-table pressure (entries / capacity).
//!
//! The dataplane keeps monotonically growing per-CPU totals; `update` adds
//! the growth since the previous call to Prometheus counters, so the
//! exported series are true counters.

use std::collections::HashMap;

use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use rampart_common::lb::lb_stat;
use thiserror::Error;

use super::maps::{Balancer, Totals};

/// Names of the `lb_stat` counters, by index.
pub const STAT_NAMES: [&str; lb_stat::COUNT as usize] = [
    "pass_non_vip",
    "malformed",
    "fragment",
    "flow_hit",
    "flow_miss",
    "no_backend",
    "repick",
    "fib_fail",
    "encap_fail",
    "tx",
    "redirect",
    "decap",
    "flow_insert_fail",
    "dnat",
    "snat",
    "nat_insert_fail",
    "nexthop_cached",
];

/// Registration failed (a name clash in the registry).
#[derive(Debug, Error)]
#[error("registering load-balancer metric {name}: {source}")]
pub struct LbMetricsError {
    /// Metric name.
    pub name: &'static str,
    /// Prometheus' error.
    #[source]
    pub source: prometheus::Error,
}

/// The load balancer's metric families and the last totals seen.
pub struct LbMetrics {
    vip_packets: IntCounterVec,
    vip_bytes: IntCounterVec,
    vip_flows: IntCounterVec,
    backend_packets: IntCounterVec,
    backend_bytes: IntCounterVec,
    backend_flows: IntCounterVec,
    events: IntCounterVec,
    backend_up: IntGaugeVec,
    flow_entries: IntGaugeVec,
    health_transitions: IntCounterVec,
    last: HashMap<String, u64>,
}

fn reg<T: prometheus::core::Collector + Clone + 'static>(
    r: &Registry,
    name: &'static str,
    m: Result<T, prometheus::Error>,
) -> Result<T, LbMetricsError> {
    let m = m.map_err(|source| LbMetricsError { name, source })?;
    r.register(Box::new(m.clone()))
        .map_err(|source| LbMetricsError { name, source })?;
    Ok(m)
}

impl LbMetrics {
    /// Registers the families in `registry`.
    pub fn new(registry: &Registry) -> Result<Self, LbMetricsError> {
        let c = |name: &'static str, help: &str, labels: &[&str]| {
            reg(
                registry,
                name,
                IntCounterVec::new(Opts::new(name, help), labels),
            )
        };
        let g = |name: &'static str, help: &str, labels: &[&str]| {
            reg(
                registry,
                name,
                IntGaugeVec::new(Opts::new(name, help), labels),
            )
        };
        Ok(Self {
            vip_packets: c(
                "rampart_lb_vip_packets_total",
                "Packets received for a VIP",
                &["service"],
            )?,
            vip_bytes: c(
                "rampart_lb_vip_bytes_total",
                "Bytes received for a VIP",
                &["service"],
            )?,
            vip_flows: c(
                "rampart_lb_vip_new_flows_total",
                "New flows of a VIP",
                &["service"],
            )?,
            backend_packets: c(
                "rampart_lb_backend_packets_total",
                "Packets sent to a backend",
                &["backend"],
            )?,
            backend_bytes: c(
                "rampart_lb_backend_bytes_total",
                "Bytes sent to a backend",
                &["backend"],
            )?,
            backend_flows: c(
                "rampart_lb_backend_new_flows_total",
                "New flows sent to a backend",
                &["backend"],
            )?,
            events: c(
                "rampart_lb_events_total",
                "Dataplane events (lb_stat)",
                &["event"],
            )?,
            backend_up: g(
                "rampart_lb_backend_up",
                "1 if the backend passes health checks",
                &["backend"],
            )?,
            flow_entries: g(
                "rampart_lb_flow_table_entries",
                "Flow-table entries and capacity",
                &["kind"],
            )?,
            health_transitions: c(
                "rampart_lb_health_transitions_total",
                "Backend health state changes",
                &["backend", "to"],
            )?,
            last: HashMap::new(),
        })
    }

    fn add(&mut self, key: String, now: u64, c: &IntCounterVec, label: &str) {
        let prev = self.last.insert(key, now).unwrap_or(0);
        // A reloaded object restarts at 0: count from there.
        let delta = if now >= prev { now - prev } else { now };
        c.with_label_values(&[label]).inc_by(delta);
    }

    fn totals(&mut self, kind: &str, label: &str, t: Totals, which: [&IntCounterVec; 3]) {
        let [p, b, f] = which;
        let (p, b, f) = (p.clone(), b.clone(), f.clone());
        self.add(format!("{kind}/p/{label}"), t.packets, &p, label);
        self.add(format!("{kind}/b/{label}"), t.bytes, &b, label);
        self.add(format!("{kind}/f/{label}"), t.new_flows, &f, label);
    }

    /// Reads the balancer's counters and flow table into the families.
    pub fn update(&mut self, lb: &Balancer) {
        let services: Vec<_> = lb.services().to_vec();
        for s in &services {
            if let Some(t) = lb.vip_totals(&s.name) {
                let fams = [
                    &self.vip_packets.clone(),
                    &self.vip_bytes.clone(),
                    &self.vip_flows.clone(),
                ];
                self.totals("vip", &s.name, t, fams);
            }
            for b in &s.backends {
                let port = if b.port == 0 { s.port } else { b.port };
                let label = format!("{}:{port}", b.address);
                if let Some(t) = lb.backend_totals(b.address, port) {
                    let fams = [
                        &self.backend_packets.clone(),
                        &self.backend_bytes.clone(),
                        &self.backend_flows.clone(),
                    ];
                    self.totals("backend", &label, t, fams);
                }
                let up = !lb.is_down(b.address, port);
                self.backend_up
                    .with_label_values(&[&label])
                    .set(i64::from(up));
            }
        }
        for (i, name) in STAT_NAMES.iter().enumerate() {
            let events = self.events.clone();
            self.add(format!("stat/{name}"), lb.stat(i as u32), &events, name);
        }
        let entries = i64::try_from(lb.flow_count()).unwrap_or(i64::MAX);
        self.flow_entries
            .with_label_values(&["entries"])
            .set(entries);
        self.flow_entries
            .with_label_values(&["capacity"])
            .set(i64::from(lb.flow_capacity()));
    }

    /// Counts a health transition (`up` = restored).
    pub fn health_transition(&self, backend: &str, up: bool) {
        self.health_transitions
            .with_label_values(&[backend, if up { "up" } else { "down" }])
            .inc();
    }
}
