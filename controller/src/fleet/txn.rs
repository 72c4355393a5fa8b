//! The fleet's side of transactions ([`HostFabric`]): which connected
//! agents a change moves, and the staged push / activate / discard steps,
//! each awaiting the agent's acknowledgement on its live session.

use std::{collections::HashMap, time::Duration};

use rampart_proto::v1 as pb;
use tokio::sync::oneshot;

use super::{Fleet, lock, policy};
use crate::{
    platforms::{
        agent::{HostFabric, HostPlan, Target},
        driver::DeviceError,
    },
    store::StoredService,
};

fn fail(agent: &str, stage: &str, message: impl Into<String>) -> DeviceError {
    DeviceError {
        device: Target::agent_name(agent),
        stage: stage.to_owned(),
        message: message.into(),
        paths: Vec::new(),
    }
}

impl Fleet {
    /// Sends `msg` on `agent`'s live session and waits `timeout` for its
    /// ack of `(version, staged)`.
    async fn request(
        &self,
        agent: &str,
        stage: &str,
        msg: pb::controller_message::Msg,
        key: (u64, bool),
        timeout: Duration,
    ) -> Result<pb::Ack, DeviceError> {
        let (tx, rx) = oneshot::channel();
        let sender = {
            let mut sessions = lock(&self.0.sessions);
            let s = sessions
                .get_mut(agent)
                .ok_or_else(|| fail(agent, stage, "agent is not connected"))?;
            s.waiters.insert(key, tx);
            s.tx.clone()
        };
        let sent = std::time::Instant::now();
        sender
            .send(Ok(pb::ControllerMessage { msg: Some(msg) }))
            .await
            .map_err(|_| fail(agent, stage, "agent session closed"))?;
        let ack = tokio::time::timeout(timeout, rx)
            .await
            .map_err(|_| fail(agent, stage, format!("no answer within {timeout:?}")))?
            .map_err(|_| fail(agent, stage, "agent disconnected before answering"))?;
        self.0
            .metrics
            .push_ack
            .observe(sent.elapsed().as_secs_f64());
        if ack.ok {
            Ok(ack)
        } else {
            Err(fail(
                agent,
                stage,
                format!("refused version {}: {}", ack.version, ack.error),
            ))
        }
    }

    /// A version above anything the agent has seen.
    fn next_version(&self, agent: &str, stage: &str) -> Result<u64, DeviceError> {
        let rec = self
            .0
            .store
            .agent(agent)
            .map_err(|e| fail(agent, stage, e.to_string()))?
            .ok_or_else(|| fail(agent, stage, "agent is not enrolled"))?;
        Ok(rec.desired_version.max(rec.applied_version) + 1)
    }

    /// Pushes `policy` under a fresh version (`stage`: prepare only) and
    /// waits for the ack. Returns the version and the policy's hash.
    async fn push_policy(
        &self,
        agent: &str,
        policy: &pb::HostPolicy,
        stage: bool,
        timeout: Duration,
    ) -> Result<(u64, String), DeviceError> {
        let step = if stage { "stage" } else { "push" };
        let version = self.next_version(agent, step)?;
        let mut p = policy.clone();
        p.version = version;
        let hash = policy::policy_hash(&p);
        let msg = pb::controller_message::Msg::Push(pb::PolicyPush {
            version,
            policy: Some(p),
            stage,
            policy_hash: hash.clone(),
        });
        self.request(agent, step, msg, (version, stage), timeout)
            .await?;
        Ok((version, hash))
    }

    /// Records that `agent` enforces `version` with `hash`, as desired.
    fn record_enforced(&self, agent: &str, version: u64, hash: &str) {
        let res = self.update(agent, |r| {
            r.desired_version = version;
            r.applied_version = version;
            r.desired_hash = hash.to_owned();
            r.applied_hash = hash.to_owned();
            r.last_error.clear();
        });
        if let Err(e) = res {
            tracing::warn!(agent, error = %e, "cannot record the enforced policy");
        }
    }
}

#[tonic::async_trait]
impl HostFabric for Fleet {
    fn plan(
        &self,
        before: &[StoredService],
        after: &[StoredService],
    ) -> Result<Vec<HostPlan>, String> {
        let agents = self.0.store.agents().map_err(|e| e.to_string())?;
        let live: Vec<_> = {
            let sessions = lock(&self.0.sessions);
            agents
                .into_values()
                .filter(|r| !r.revoked && sessions.contains_key(&r.id))
                .collect()
        };
        type Pair = (pb::HostPolicy, pb::HostPolicy);
        let mut cache: HashMap<_, Pair> = HashMap::new();
        let mut out = Vec::new();
        for rec in live {
            let (prev, next) = if let Some(p) = cache.get(&rec.labels) {
                p.clone()
            } else {
                let next = policy::policy_for(after, &rec.labels)
                    .map_err(|e| format!("host {} ({}): {e}", rec.hostname, rec.id))?;
                // A conflict already stored is replaced, not diffed against.
                let prev = policy::policy_for(before, &rec.labels).unwrap_or_default();
                cache.insert(rec.labels.clone(), (prev.clone(), next.clone()));
                (prev, next)
            };
            if policy::policy_hash(&prev) == policy::policy_hash(&next) {
                continue;
            }
            out.push(HostPlan {
                agent_id: rec.id,
                hostname: rec.hostname,
                prev,
                next,
            });
        }
        Ok(out)
    }

    async fn stage(
        &self,
        agent: &str,
        policy: &pb::HostPolicy,
        timeout: Duration,
    ) -> Result<u64, DeviceError> {
        let (version, hash) = self.push_policy(agent, policy, true, timeout).await?;
        lock(&self.0.staged).insert(agent.to_owned(), (version, hash));
        tracing::info!(agent, version, "host policy staged");
        Ok(version)
    }

    async fn activate(
        &self,
        agent: &str,
        version: u64,
        timeout: Duration,
    ) -> Result<(), DeviceError> {
        let msg = pb::controller_message::Msg::Activate(pb::Activate { version });
        self.request(agent, "activate", msg, (version, false), timeout)
            .await?;
        let staged = lock(&self.0.staged).remove(agent);
        if let Some((v, hash)) = staged.filter(|(v, _)| *v == version) {
            self.record_enforced(agent, v, &hash);
        }
        tracing::info!(agent, version, "host policy activated");
        Ok(())
    }

    async fn discard(&self, agent: &str, version: u64) {
        lock(&self.0.staged).remove(agent);
        let sender = lock(&self.0.sessions).get(agent).map(|s| s.tx.clone());
        if let Some(tx) = sender {
            let msg = pb::controller_message::Msg::Discard(pb::Discard { version });
            let _ = tx.send(Ok(pb::ControllerMessage { msg: Some(msg) })).await;
        }
        tracing::info!(agent, version, "staged host policy discarded");
    }

    async fn push_now(
        &self,
        agent: &str,
        policy: &pb::HostPolicy,
        timeout: Duration,
    ) -> Result<(), DeviceError> {
        let (version, hash) = self.push_policy(agent, policy, false, timeout).await?;
        self.record_enforced(agent, version, &hash);
        tracing::info!(agent, version, "host policy pushed");
        Ok(())
    }

    fn applied_hash(&self, agent: &str) -> Option<String> {
        self.0
            .store
            .agent(agent)
            .ok()
            .flatten()
            .map(|r| r.applied_hash)
    }

    fn hold(&self, agents: &[String], held: bool) {
        let mut set = lock(&self.0.held);
        for a in agents {
            if held {
                set.insert(a.clone());
            } else {
                set.remove(a);
            }
        }
    }
}
