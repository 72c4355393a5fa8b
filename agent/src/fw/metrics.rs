//! Prometheus exposition. Values live in BPF maps (per-CPU counters that
//! survive agent restarts), so each scrape reads the maps and renders a
//! fresh registry instead of mirroring them in process memory.

use prometheus::{Encoder, IntCounterVec, IntGaugeVec, Opts, Registry, TextEncoder};
use rampart_common::ct_stat;

use crate::fw::enforcer::{Enforcer, reason_name};

/// Process-level counters kept by the daemon.
#[derive(Debug, Default, Clone, Copy)]
pub struct DaemonCounters {
    /// Policies applied.
    pub applies: u64,
    /// Policies refused or failed.
    pub apply_errors: u64,
}

fn counter(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let c = IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    reg.register(Box::new(c.clone()))
        .expect("unique metric name");
    c
}

fn gauge(reg: &Registry, name: &str, help: &str, labels: &[&str]) -> IntGaugeVec {
    let g = IntGaugeVec::new(Opts::new(name, help), labels).expect("valid metric definition");
    reg.register(Box::new(g.clone()))
        .expect("unique metric name");
    g
}

fn i64_of(v: u64) -> i64 {
    i64::try_from(v).unwrap_or(i64::MAX)
}

const fn dir(d: u32) -> &'static str {
    if d == 0 { "ingress" } else { "egress" }
}

/// Renders the text exposition format.
pub fn render(e: &Enforcer, d: DaemonCounters) -> String {
    let reg = Registry::new();
    let rule_pk = counter(
        &reg,
        "rampart_rule_packets_total",
        "Packets matched per rule.",
        &["interface", "direction", "rule", "tenant", "service"],
    );
    let rule_by = counter(
        &reg,
        "rampart_rule_bytes_total",
        "Bytes matched per rule.",
        &["interface", "direction", "rule", "tenant", "service"],
    );
    let verdict_pk = counter(
        &reg,
        "rampart_verdict_packets_total",
        "Packets by verdict reason.",
        &["interface", "direction", "reason"],
    );
    let verdict_by = counter(
        &reg,
        "rampart_verdict_bytes_total",
        "Bytes by verdict reason.",
        &["interface", "direction", "reason"],
    );
    let ct_entries = gauge(
        &reg,
        "rampart_conntrack_entries",
        "Conntrack entries in use.",
        &["interface"],
    );
    let ct_max = gauge(
        &reg,
        "rampart_conntrack_max",
        "Conntrack capacity requested.",
        &["interface"],
    );
    let ct_events = counter(
        &reg,
        "rampart_conntrack_events_total",
        "Conntrack events.",
        &["interface", "event"],
    );
    let ct_evict = counter(
        &reg,
        "rampart_conntrack_evictions_total",
        "Entries that left the table other than by expiry (LRU evictions under pressure): inserts - expired - entries.",
        &["interface"],
    );
    let generation = gauge(
        &reg,
        "rampart_policy_generation",
        "Active A/B generation.",
        &["interface"],
    );
    let version = gauge(
        &reg,
        "rampart_policy_version",
        "Version of the policy in force (-1: none).",
        &[],
    );
    let attached = gauge(
        &reg,
        "rampart_program_attached",
        "1 if the hook's program is attached.",
        &["interface", "hook", "mode"],
    );
    let fill = gauge(
        &reg,
        "rampart_map_entries",
        "Entries in use per classifier map.",
        &["interface", "map"],
    );
    let cap = gauge(
        &reg,
        "rampart_map_capacity",
        "Capacity per classifier map.",
        &["interface", "map"],
    );
    let applies = counter(
        &reg,
        "rampart_policy_applies_total",
        "Policies applied.",
        &[],
    );
    let errors = counter(
        &reg,
        "rampart_policy_apply_errors_total",
        "Policies refused or failed.",
        &[],
    );

    for ((iface, d, l), t) in e.rule_totals() {
        let seq = l.sequence.to_string();
        let labels = [
            iface.as_str(),
            dir(d),
            seq.as_str(),
            l.tenant.as_str(),
            l.service.as_str(),
        ];
        rule_pk.with_label_values(&labels).inc_by(t.packets);
        rule_by.with_label_values(&labels).inc_by(t.bytes);
    }
    for (iface, s) in e.stats() {
        for (d, r, t) in &s.reasons {
            let labels = [iface.as_str(), dir(*d), reason_name(*r)];
            verdict_pk.with_label_values(&labels).inc_by(t.packets);
            verdict_by.with_label_values(&labels).inc_by(t.bytes);
        }
        ct_entries
            .with_label_values(&[iface.as_str()])
            .set(i64_of(s.ct_entries));
        ct_max
            .with_label_values(&[iface.as_str()])
            .set(i64_of(s.ct_max));
        for (name, idx) in [
            ("inserts", ct_stat::INSERTS),
            ("expired", ct_stat::EXPIRED),
            ("insert_failed", ct_stat::INSERT_FAILED),
            ("closed", ct_stat::CLOSED),
        ] {
            ct_events
                .with_label_values(&[iface.as_str(), name])
                .inc_by(s.ct_events[idx as usize]);
        }
        let ev = s.ct_events[ct_stat::INSERTS as usize]
            .saturating_sub(s.ct_events[ct_stat::EXPIRED as usize])
            .saturating_sub(s.ct_entries);
        ct_evict.with_label_values(&[iface.as_str()]).inc_by(ev);
        generation
            .with_label_values(&[iface.as_str()])
            .set(i64::from(s.generation));
        attached
            .with_label_values(&[iface.as_str(), "xdp", s.xdp_mode])
            .set(1);
        attached
            .with_label_values(&[iface.as_str(), "tc_egress", "tcx"])
            .set(1);
        for (m, n, c) in &s.fill {
            fill.with_label_values(&[iface.as_str(), m]).set(i64_of(*n));
            cap.with_label_values(&[iface.as_str(), m]).set(i64_of(*c));
        }
    }
    version
        .with_label_values::<&str>(&[])
        .set(e.version.map_or(-1, i64_of));
    applies.with_label_values::<&str>(&[]).inc_by(d.applies);
    errors.with_label_values::<&str>(&[]).inc_by(d.apply_errors);

    let mut buf = Vec::new();
    let _ = TextEncoder::new().encode(&reg.gather(), &mut buf);
    String::from_utf8(buf).unwrap_or_default()
}
