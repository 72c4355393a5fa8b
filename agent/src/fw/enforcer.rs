//! The agent's state: which interfaces are under enforcement, the policy in
//! force, and the per-rule counter bookkeeping across generation switches.

use std::collections::{BTreeMap, HashMap};

use rampart_common::{ct_stat, reason};
use rampart_proto::v1::HostPolicy;
use thiserror::Error;
use tracing::{info, warn};

use crate::{
    fw::loader::{self, AttachOptions, Attached, LoaderError},
    fw::maps::{MapsError, Timeouts, Totals},
    fw::policy::{self, CompiledPolicy, PolicyError, RuleLabel},
    pins::PinLayout,
};

/// Why applying a policy failed.
#[derive(Debug, Error)]
pub enum ApplyError {
    /// The policy was refused; nothing changed.
    #[error("policy refused: {0}")]
    Policy(Box<PolicyError>),
    /// Attaching to an interface failed; nothing changed.
    #[error("attach failed: {0}")]
    Loader(Box<LoaderError>),
    /// Writing maps failed (the interface keeps its previous generation).
    #[error("map update on {interface} failed: {source}")]
    Maps {
        /// Interface.
        interface: String,
        /// Error.
        #[source]
        source: Box<MapsError>,
    },
}

impl From<PolicyError> for ApplyError {
    fn from(e: PolicyError) -> Self {
        Self::Policy(Box::new(e))
    }
}

impl From<LoaderError> for ApplyError {
    fn from(e: LoaderError) -> Self {
        Self::Loader(Box::new(e))
    }
}

/// Counter key of one rule.
pub type RuleKey = (String, u32, RuleLabel);

struct IfState {
    attached: Attached,
    /// Labels of the rules written into each of the four tables by this
    /// process (empty when unknown, e.g. tables of a previous agent).
    labels: [Vec<RuleLabel>; 4],
}

/// Metrics snapshot of one interface.
#[derive(Debug, Default)]
pub struct IfStats {
    /// Active generation.
    pub generation: u32,
    /// XDP mode.
    pub xdp_mode: &'static str,
    /// `(direction, reason index, totals)`.
    pub reasons: Vec<(u32, u32, Totals)>,
    /// Conntrack entries now.
    pub ct_entries: u64,
    /// Conntrack capacity.
    pub ct_max: u64,
    /// Conntrack event counters.
    pub ct_events: [u64; ct_stat::COUNT as usize],
    /// `(map, entries, capacity)`.
    pub fill: Vec<(&'static str, u64, u64)>,
}

/// Everything under enforcement.
pub struct Enforcer {
    layout: PinLayout,
    opts: AttachOptions,
    interfaces: BTreeMap<String, IfState>,
    carry: HashMap<RuleKey, Totals>,
    /// Version of the policy in force.
    pub version: Option<u64>,
}

impl Enforcer {
    /// An enforcer that pins under `layout`.
    pub fn new(layout: PinLayout, opts: AttachOptions) -> Self {
        Self {
            layout,
            opts,
            interfaces: BTreeMap::new(),
            carry: HashMap::new(),
            version: None,
        }
    }

    /// Adopts every interface already pinned under the root (so metrics
    /// and enforcement continue before the first policy is read).
    pub fn adopt_pinned(&mut self) {
        for name in self.layout.interfaces() {
            if crate::attach::ifindex(&name).is_none() {
                continue;
            }
            match loader::attach(&self.layout, &name, &self.opts) {
                Ok(a) => {
                    self.interfaces.insert(
                        name,
                        IfState {
                            attached: a,
                            labels: Default::default(),
                        },
                    );
                }
                Err(e) => warn!(interface = %name, error = %e, "cannot adopt pinned interface"),
            }
        }
    }

    /// Interfaces under enforcement.
    pub fn interface_names(&self) -> Vec<String> {
        self.interfaces.keys().cloned().collect()
    }

    /// Validates, compiles, attaches and applies `policy`. On any
    /// validation or attach error nothing changes.
    pub fn apply(&mut self, policy: &HostPolicy) -> Result<(), ApplyError> {
        let compiled = policy::compile(policy, &|name| crate::attach::ifindex(name).is_some())?;
        let r = self.apply_compiled(&compiled);
        // Only the rule labels are kept (for counters); the bitmaps now
        // live in the maps.
        drop(compiled);
        crate::sys::release_free_heap();
        r
    }

    fn apply_compiled(&mut self, compiled: &CompiledPolicy) -> Result<(), ApplyError> {
        let mut opts = self.opts.clone();
        if compiled.conntrack_max != 0 {
            opts.conntrack_max = compiled.conntrack_max;
        }
        // Attach everything new first: a failure leaves all tables as they were.
        let mut fresh = Vec::new();
        for i in &compiled.interfaces {
            if !self.interfaces.contains_key(&i.name) {
                fresh.push((
                    i.name.clone(),
                    loader::attach(&self.layout, &i.name, &opts)?,
                ));
            }
        }
        for (name, attached) in fresh {
            self.interfaces.insert(
                name,
                IfState {
                    attached,
                    labels: Default::default(),
                },
            );
        }
        for i in &compiled.interfaces {
            let st = self.interfaces.get_mut(&i.name).expect("attached above");
            let maps = &st.attached.maps;
            let err = |source: MapsError| ApplyError::Maps {
                interface: i.name.clone(),
                source: Box::new(source),
            };
            let next = 1 - maps.generation().map_err(err)?;
            // Fold the counters of the tables about to be overwritten.
            for dir in 0..2u32 {
                let t = (next * 2 + dir) as usize;
                let labels = std::mem::take(&mut st.labels[t]);
                if labels.is_empty() {
                    continue;
                }
                let totals = maps
                    .rule_totals(next * 2 + dir, labels.len())
                    .map_err(err)?;
                for (l, tot) in labels.into_iter().zip(totals) {
                    let c = self.carry.entry((i.name.clone(), dir, l)).or_default();
                    c.packets += tot.packets;
                    c.bytes += tot.bytes;
                }
            }
            let t0 = std::time::Instant::now();
            let g = maps.apply(&i.ingress, &i.egress).map_err(err)?;
            st.labels[(g * 2) as usize] = i.ingress.labels.clone();
            st.labels[(g * 2 + 1) as usize] = i.egress.labels.clone();
            info!(
                interface = %i.name,
                generation = g,
                version = compiled.version,
                ingress_rules = i.ingress.rules.len(),
                egress_rules = i.egress.rules.len(),
                took_ms = t0.elapsed().as_millis(),
                "policy applied"
            );
        }
        // Interfaces no longer in the policy lose enforcement.
        let keep: Vec<&str> = compiled
            .interfaces
            .iter()
            .map(|i| i.name.as_str())
            .collect();
        let gone: Vec<String> = self
            .interfaces
            .keys()
            .filter(|n| !keep.contains(&n.as_str()))
            .cloned()
            .collect();
        for name in gone {
            self.interfaces.remove(&name);
            if let Err(e) = loader::detach(&self.layout, &name) {
                warn!(interface = %name, error = %e, "detach of removed interface failed");
            }
        }
        self.version = Some(compiled.version);
        Ok(())
    }

    /// Updates the conntrack timeouts on every interface.
    pub fn set_timeouts(&self, t: &Timeouts) {
        for (name, st) in &self.interfaces {
            if let Err(e) = st.attached.maps.set_timeouts(t) {
                warn!(interface = %name, error = %e, "cannot set timeouts");
            }
        }
    }

    /// Cumulative per-rule totals (both generations plus carried counts).
    pub fn rule_totals(&self) -> HashMap<RuleKey, Totals> {
        let mut out = self.carry.clone();
        for (name, st) in &self.interfaces {
            for (t, labels) in st.labels.iter().enumerate() {
                if labels.is_empty() {
                    continue;
                }
                let dir = (t % 2) as u32;
                match st.attached.maps.rule_totals(t as u32, labels.len()) {
                    Ok(tots) => {
                        for (l, tot) in labels.iter().zip(tots) {
                            let c = out.entry((name.clone(), dir, l.clone())).or_default();
                            c.packets += tot.packets;
                            c.bytes += tot.bytes;
                        }
                    }
                    Err(e) => warn!(interface = %name, error = %e, "cannot read rule counters"),
                }
            }
        }
        out
    }

    /// Verdict counters of one interface: `(direction, reason, totals)`.
    pub fn verdicts(&self, interface: &str) -> Option<Vec<(u32, u32, Totals)>> {
        self.interfaces
            .get(interface)
            .and_then(|st| st.attached.maps.reason_totals().ok())
    }

    /// Per-interface statistics.
    pub fn stats(&self) -> Vec<(String, IfStats)> {
        let mut out = Vec::new();
        for (name, st) in &self.interfaces {
            let m = &st.attached.maps;
            let mut s = IfStats {
                xdp_mode: st.attached.xdp_mode,
                ct_max: u64::from(self.opts.conntrack_max),
                ..Default::default()
            };
            let r = (|| -> Result<(), MapsError> {
                s.generation = m.generation()?;
                s.reasons = m.reason_totals()?;
                s.ct_entries = m.ct_entries()?;
                s.ct_events = m.ct_stats()?;
                s.fill = m.fill_levels()?;
                Ok(())
            })();
            if let Err(e) = r {
                warn!(interface = %name, error = %e, "cannot read statistics");
            }
            out.push((name.clone(), s));
        }
        out
    }

    /// Takes the sampled-log ring buffers, one per interface.
    pub fn take_log_buffers(&mut self) -> Vec<(String, aya::maps::MapData)> {
        self.interfaces
            .iter_mut()
            .filter_map(|(n, st)| st.attached.maps.take_log_events().map(|m| (n.clone(), m)))
            .collect()
    }
}

/// Reason names, for metrics.
pub fn reason_name(r: u32) -> &'static str {
    reason::NAMES.get(r as usize).copied().unwrap_or("unknown")
}
