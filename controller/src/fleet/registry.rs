//! The registry of agents: their records, derived state (online, stale,
//! offline, revoked), listings, staleness sweeps and counter aggregation.

use std::{
    collections::{BTreeMap, HashMap},
    time::Duration,
};

use rampart_proto::v1 as pb;
use tonic::Status;

use super::{AgentState, Fleet, Session, lock, metrics};
use crate::store::fleet::AgentRecord;

impl Fleet {
    pub(super) fn update(
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

    /// The state of one agent.
    pub(super) fn state_of(
        &self,
        rec: &AgentRecord,
        sessions: &HashMap<String, Session>,
    ) -> AgentState {
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
}
