//! Prometheus metrics of the fleet, in their own registry. Label sets are
//! bounded: agent state (four values), and per-rule hits keyed by
//! tenant/service/sequence only (never by agent or interface), capped at
//! [`MAX_RULE_SERIES`] series; rules past the cap are counted, not exported.

use prometheus::{
    Encoder as _, Histogram, HistogramOpts, IntCounter, IntGauge, IntGaugeVec, Opts, Registry,
    TextEncoder,
};

/// Most per-rule series exported at once.
pub const MAX_RULE_SERIES: usize = 2000;

/// The fleet's metrics.
#[derive(Clone)]
pub struct FleetMetrics {
    registry: Registry,
    /// Agents by state (online, stale, offline, revoked).
    pub agents: IntGaugeVec,
    /// Agents whose applied version is not the desired one.
    pub out_of_date: IntGauge,
    /// Largest desired − applied version difference of any agent.
    pub max_skew: IntGauge,
    /// Policy push → ack latency.
    pub push_ack: Histogram,
    /// Heartbeats received.
    pub heartbeats: IntCounter,
    /// Enrollments accepted.
    pub enrollments: IntCounter,
    /// Refused connections or enrollments.
    pub refused: IntCounter,
    /// Aggregated rule hits.
    pub rule_packets: IntGaugeVec,
    /// Aggregated rule bytes.
    pub rule_bytes: IntGaugeVec,
    /// Rules not exported because of the series cap.
    pub rule_series_dropped: IntGauge,
}

impl std::fmt::Debug for FleetMetrics {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FleetMetrics").finish_non_exhaustive()
    }
}

impl FleetMetrics {
    /// Registers everything.
    ///
    /// # Errors
    /// [`prometheus::Error`] on a duplicate registration (a build defect).
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("rampart_fleet".into()), None)?;
        let agents = IntGaugeVec::new(Opts::new("agents", "Agents by state"), &["state"])?;
        let out_of_date = IntGauge::new(
            "agents_out_of_date",
            "Agents whose enforced policy version is not the desired one",
        )?;
        let max_skew = IntGauge::new(
            "policy_version_skew_max",
            "Largest desired minus applied policy version over all agents",
        )?;
        let push_ack = Histogram::with_opts(
            HistogramOpts::new("push_ack_seconds", "Policy push to acknowledgement").buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 0.75, 1.0, 1.5, 2.0, 2.5, 5.0,
            ]),
        )?;
        let heartbeats = IntCounter::new("heartbeats_total", "Heartbeats received")?;
        let enrollments = IntCounter::new("enrollments_total", "Agents enrolled")?;
        let refused = IntCounter::new(
            "refused_total",
            "Enrollments or agent sessions refused (token, certificate, revocation)",
        )?;
        let rule_packets = IntGaugeVec::new(
            Opts::new(
                "rule_packets",
                "Packets matched per rule, summed over agents",
            ),
            &["tenant", "service", "sequence"],
        )?;
        let rule_bytes = IntGaugeVec::new(
            Opts::new("rule_bytes", "Bytes matched per rule, summed over agents"),
            &["tenant", "service", "sequence"],
        )?;
        let rule_series_dropped = IntGauge::new(
            "rule_series_dropped",
            "Rules whose counters are not exported (series cap reached)",
        )?;
        registry.register(Box::new(agents.clone()))?;
        registry.register(Box::new(out_of_date.clone()))?;
        registry.register(Box::new(max_skew.clone()))?;
        registry.register(Box::new(push_ack.clone()))?;
        registry.register(Box::new(heartbeats.clone()))?;
        registry.register(Box::new(enrollments.clone()))?;
        registry.register(Box::new(refused.clone()))?;
        registry.register(Box::new(rule_packets.clone()))?;
        registry.register(Box::new(rule_bytes.clone()))?;
        registry.register(Box::new(rule_series_dropped.clone()))?;
        Ok(Self {
            registry,
            agents,
            out_of_date,
            max_skew,
            push_ack,
            heartbeats,
            enrollments,
            refused,
            rule_packets,
            rule_bytes,
            rule_series_dropped,
        })
    }

    /// Prometheus text format.
    #[must_use]
    pub fn render(&self) -> String {
        let mut buf = Vec::new();
        let _ = TextEncoder::new().encode(&self.registry.gather(), &mut buf);
        String::from_utf8(buf).unwrap_or_default()
    }
}
