//! Agent sessions: the stream each connected agent holds open, the
//! messages it sends (health, acks, counters), and pushing the policy it
//! should run, by the background refresh and on reconnect.

use std::{
    collections::{BTreeMap, HashMap},
    sync::{Arc, atomic::Ordering},
    time::{Duration, Instant},
};

use rampart_proto::v1 as pb;
use tokio::sync::mpsc;
use tonic::Status;

use super::{Desired, Fleet, Outbound, Session, lock, policy};
use crate::store::{StoreError, fleet::AgentRecord, now_unix_ms};

impl Fleet {
    /// Opens a session for an authenticated agent after its `Hello`,
    /// replacing any older session of the same agent. Pushes the desired
    /// policy unless the agent already enforces it.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn open_session(
        &self,
        rec: &AgentRecord,
        hello: &pb::Hello,
    ) -> Result<(u64, Outbound), Status> {
        let conn = self.0.next_conn.fetch_add(1, Ordering::Relaxed);
        let (tx, rx) = mpsc::channel(16);
        let rec = self
            .update(&rec.id, |r| {
                if !hello.policy_hash.is_empty() && hello.policy_hash == r.desired_hash {
                    // Unchanged since before the cut or restart: no re-push.
                    r.applied_hash.clone_from(&r.desired_hash);
                    r.applied_version = r.desired_version;
                } else {
                    r.applied_hash.clone_from(&hello.policy_hash);
                    r.applied_version = hello.applied_version;
                }
            })?
            .ok_or_else(|| Status::unauthenticated("agent vanished from the registry"))?;
        let old = lock(&self.0.sessions).insert(
            rec.id.clone(),
            Session {
                conn,
                tx,
                last_seen: Instant::now(),
                last_seen_ms: now_unix_ms(),
                health: None,
                pushed: None,
                refused: None,
                waiters: HashMap::new(),
            },
        );
        if let Some(old) = old {
            let _ = old.tx.try_send(Err(Status::aborted(
                "replaced by a newer session of this agent",
            )));
        }
        tracing::info!(
            agent = rec.id,
            conn,
            applied = rec.applied_version,
            desired = rec.desired_version,
            "agent session opened"
        );
        self.push_if_needed(&rec, None);
        Ok((conn, rx))
    }

    /// Resolves once [`close`](Self::close) was called.
    pub async fn closed(&self) {
        let mut rx = self.0.closing.subscribe();
        let _ = rx.wait_for(|c| *c).await;
    }

    /// Ends every session (agents keep enforcing and reconnect later) so
    /// the agent port drains at shutdown.
    pub fn close(&self) {
        self.0.closing.send_replace(true);
        let drained: Vec<_> = lock(&self.0.sessions).drain().collect();
        for (_, s) in drained {
            let _ =
                s.tx.try_send(Err(Status::unavailable("rampartd is shutting down")));
        }
    }

    /// Ends session `conn` of `id` (if still the current one).
    pub fn close_session(&self, id: &str, conn: u64) {
        let mut s = lock(&self.0.sessions);
        if s.get(id).is_some_and(|x| x.conn == conn) {
            if let Some(old) = s.remove(id) {
                lock(&self.0.last_seen).insert(id.to_owned(), old.last_seen_ms);
            }
            tracing::info!(
                agent = id,
                conn,
                "agent session closed; it enforces its last policy"
            );
        }
    }

    /// Whether `conn` is still the live session of `id`.
    #[must_use]
    pub fn is_current(&self, id: &str, conn: u64) -> bool {
        lock(&self.0.sessions)
            .get(id)
            .is_some_and(|s| s.conn == conn)
    }

    /// Handles one message of session `conn`.
    pub fn on_message(&self, id: &str, conn: u64, msg: pb::AgentMessage) {
        let now = Instant::now();
        let ack = {
            let mut sessions = lock(&self.0.sessions);
            let Some(s) = sessions.get_mut(id).filter(|s| s.conn == conn) else {
                return;
            };
            s.last_seen = now;
            s.last_seen_ms = now_unix_ms();
            match msg.msg {
                Some(pb::agent_message::Msg::Heartbeat(hb)) => {
                    self.0.metrics.heartbeats.inc();
                    s.health = hb.health;
                    None
                }
                Some(pb::agent_message::Msg::Ack(a)) => {
                    if let Some(w) = s.waiters.remove(&(a.version, a.staged)) {
                        let _ = w.send(a.clone());
                    }
                    if a.staged {
                        // A transaction's prepare: nothing is enforced yet.
                        return;
                    }
                    let pushed = s.pushed.take_if(|(v, _, _)| *v == a.version);
                    if !a.ok {
                        s.refused = Some(a.version);
                    }
                    Some((a, pushed))
                }
                Some(pb::agent_message::Msg::Counters(c)) => {
                    drop(sessions);
                    lock(&self.0.counters).insert(id.to_owned(), c.rules);
                    None
                }
                Some(pb::agent_message::Msg::Hello(_)) | None => None,
            }
        };
        if let Some((a, pushed)) = ack {
            if let Some((_, _, sent)) = &pushed {
                self.0
                    .metrics
                    .push_ack
                    .observe(now.duration_since(*sent).as_secs_f64());
            }
            let res = self.update(id, |r| {
                if a.ok {
                    r.applied_version = a.version;
                    if let Some((_, hash, _)) = &pushed {
                        r.applied_hash.clone_from(hash);
                    }
                    r.last_error.clear();
                } else {
                    r.last_error = format!("version {}: {}", a.version, a.error);
                }
            });
            if a.ok {
                tracing::debug!(agent = id, version = a.version, "policy acknowledged");
            } else {
                tracing::warn!(
                    agent = id,
                    version = a.version,
                    error = a.error,
                    "agent refused policy"
                );
            }
            if let Err(e) = res {
                tracing::warn!(agent = id, error = %e, "cannot record ack");
            }
        }
    }

    /// Pushes the desired policy to `rec`'s live session when it does not
    /// enforce it and it is not already on its way. `known` is the desired
    /// policy when the caller computed it.
    pub(super) fn push_if_needed(&self, rec: &AgentRecord, known: Option<&pb::HostPolicy>) {
        if rec.desired_version == 0
            || rec.desired_hash == rec.applied_hash
            || lock(&self.0.held).contains(&rec.id)
        {
            return;
        }
        let computed;
        let policy = if let Some(p) = known {
            p
        } else {
            let services = match self.0.store.services() {
                Ok(s) => s,
                Err(e) => {
                    tracing::warn!(error = %e, "cannot read services");
                    return;
                }
            };
            match policy::policy_for(&services, &rec.labels) {
                Ok(p) => {
                    computed = p;
                    &computed
                }
                Err(_) => return,
            }
        };
        let mut sessions = lock(&self.0.sessions);
        let Some(s) = sessions.get_mut(&rec.id) else {
            return;
        };
        if s.pushed
            .as_ref()
            .is_some_and(|(v, _, _)| *v == rec.desired_version)
            || s.refused == Some(rec.desired_version)
        {
            return;
        }
        let mut p = policy.clone();
        p.version = rec.desired_version;
        let msg = pb::ControllerMessage {
            msg: Some(pb::controller_message::Msg::Push(pb::PolicyPush {
                version: rec.desired_version,
                policy: Some(p),
                stage: false,
                policy_hash: rec.desired_hash.clone(),
            })),
        };
        if s.tx.try_send(Ok(msg)).is_ok() {
            s.pushed = Some((
                rec.desired_version,
                rec.desired_hash.clone(),
                Instant::now(),
            ));
            tracing::debug!(
                agent = rec.id,
                version = rec.desired_version,
                "policy pushed"
            );
        }
    }

    /// Recomputes every agent's desired policy from the stored services,
    /// versions the changed ones, and pushes to connected agents that do not
    /// enforce theirs.
    ///
    /// # Errors
    /// `Internal` on a storage failure.
    pub fn refresh(&self) -> Result<(), Status> {
        let internal = |e: StoreError| Status::internal(e.to_string());
        let services = self.0.store.services().map_err(internal)?;
        let mut cache: HashMap<BTreeMap<String, String>, Desired> = HashMap::new();
        let mut to_push = Vec::new();
        {
            // Read, version and write back under the registry lock so a
            // concurrent ack is never overwritten; one batch for all.
            let _g = lock(&self.0.registry);
            let agents = self.0.store.agents().map_err(internal)?;
            let held = lock(&self.0.held).clone();
            let mut changed = Vec::new();
            for mut rec in agents
                .into_values()
                .filter(|r| !r.revoked && !held.contains(&r.id))
            {
                let desired = cache
                    .entry(rec.labels.clone())
                    .or_insert_with(|| {
                        policy::policy_for(&services, &rec.labels).map(|p| {
                            let h = policy::policy_hash(&p);
                            (Arc::new(p), h)
                        })
                    })
                    .clone();
                match desired {
                    Ok((p, hash)) => {
                        let conflict_cleared = rec.last_error.starts_with("policy conflict");
                        if hash != rec.desired_hash || conflict_cleared {
                            if hash != rec.desired_hash {
                                rec.desired_version += 1;
                                rec.desired_hash.clone_from(&hash);
                            }
                            if conflict_cleared {
                                rec.last_error.clear();
                            }
                            tracing::debug!(
                                agent = rec.id,
                                version = rec.desired_version,
                                "new host policy"
                            );
                            changed.push(rec.clone());
                        }
                        to_push.push((rec, p));
                    }
                    Err(conflict) => {
                        let msg = format!("policy conflict: {conflict}");
                        if rec.last_error != msg {
                            tracing::warn!(
                                agent = rec.id,
                                error = conflict,
                                "host policy conflict"
                            );
                            rec.last_error = msg;
                            changed.push(rec);
                        }
                    }
                }
            }
            if !changed.is_empty() {
                tracing::info!(agents = changed.len(), "host policies changed");
                self.0.store.put_agents(&changed).map_err(internal)?;
            }
        }
        for (rec, p) in &to_push {
            self.push_if_needed(rec, Some(p));
        }
        Ok(())
    }

    /// Runs refresh and sweep every `refresh_ms` until the task is dropped.
    pub async fn background(self) {
        let mut tick = tokio::time::interval(Duration::from_millis(self.0.cfg.refresh_ms));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let f = self.clone();
            let res = tokio::task::spawn_blocking(move || {
                f.refresh()?;
                f.sweep()
            })
            .await;
            match res {
                Ok(Ok(())) => {}
                Ok(Err(e)) => tracing::warn!(error = %e, "fleet refresh failed"),
                Err(e) => tracing::warn!(error = %e, "fleet refresh task failed"),
            }
        }
    }
}
