//! Which replica leads: on etcd, the holder of one key attached to a lease
//! (`<prefix>meta/leader`); on sled, always this process (sled's lock
//! already admits only one).
//!
//! The leader keeps its lease alive every third of the TTL and steps down
//! by itself once two thirds of the TTL passed without a confirmed
//! keep-alive, before etcd lets the lease expire and another replica takes
//! the key. Followers try to take the key at the same pace, so a new
//! leader is in place within about the TTL of the old one's death. While
//! leading, the store fences its transactions on the key: a transaction
//! from a replica that is no longer the leader fails with
//! [`StoreError::NotLeader`] and writes nothing, however late it arrives.

use std::time::Duration;

use etcd_client::{Client, Compare, CompareOp, PutOptions, Txn, TxnOp, TxnOpResponse};
use tokio::sync::watch;

use super::{Store, etcd_kv::EtcdKv, kv::Kv};

/// This replica's part.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Role {
    /// Runs transactions, recovery and drift checks.
    Leader,
    /// Serves reads; `leader` names the current leader, when known.
    Follower {
        /// The leader's identity.
        leader: Option<String>,
    },
}

/// A running campaign; dropping it stops campaigning (a leader's key then
/// expires with its lease, or is removed at once by [`Leadership::resign`]).
pub struct Leadership {
    role: watch::Receiver<Role>,
    task: Option<tokio::task::JoinHandle<()>>,
    resign: Option<Box<dyn FnOnce() + Send + Sync>>,
}

impl std::fmt::Debug for Leadership {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leadership")
            .field("role", &*self.role.borrow())
            .finish_non_exhaustive()
    }
}

impl Leadership {
    /// The role now.
    #[must_use]
    pub fn role(&self) -> Role {
        self.role.borrow().clone()
    }

    /// Whether this replica leads now.
    #[must_use]
    pub fn is_leader(&self) -> bool {
        *self.role.borrow() == Role::Leader
    }

    /// Follows role changes.
    #[must_use]
    pub fn watch(&self) -> watch::Receiver<Role> {
        self.role.clone()
    }

    /// Waits until this replica leads.
    pub async fn until_leader(&self) {
        let mut rx = self.role.clone();
        let _ = rx.wait_for(|r| *r == Role::Leader).await;
    }

    /// Stops campaigning and gives the key up at once (a clean shutdown:
    /// another replica need not wait for the lease to expire).
    pub fn resign(mut self) {
        if let Some(r) = self.resign.take() {
            r();
        }
    }

    /// Stops campaigning without giving anything up, as a crash would: the
    /// key stays until its lease expires (tests of failover use this).
    pub fn abandon(mut self) {
        self.resign = None;
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Drop for Leadership {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

impl Store {
    /// Campaigns for leadership as `identity` (shown to followers) with a
    /// lease of `ttl` (at least 2 s): the returned handle tells the role.
    #[must_use]
    pub fn campaign(&self, identity: &str, ttl: Duration) -> Leadership {
        match &self.kv {
            Kv::Sled(_) => Leadership {
                role: watch::channel(Role::Leader).1,
                task: None,
                resign: None,
            },
            Kv::Etcd(e) => e.campaign(identity.to_owned(), ttl.max(Duration::from_secs(2))),
        }
    }
}

/// The lease TTL rampartd campaigns with: a crashed leader is replaced
/// within about this plus a keep-alive period.
pub const DEFAULT_TTL: Duration = Duration::from_secs(3);

/// One lease's life: take or wait for the key, then keep it.
struct Campaign {
    client: Client,
    key: Vec<u8>,
    identity: String,
    ttl: Duration,
    kv: EtcdKv,
    tx: watch::Sender<Role>,
}

impl EtcdKv {
    fn campaign(&self, identity: String, ttl: Duration) -> Leadership {
        let (tx, rx) = watch::channel(Role::Follower { leader: None });
        self.set_known_leader(None);
        let c = Campaign {
            client: self.client(),
            key: self.key(super::kv::trees::META, b"leader"),
            identity,
            ttl,
            kv: self.clone(),
            tx,
        };
        let task = self.spawn(c.run());
        let (kv, key) = (self.clone(), self.key(super::kv::trees::META, b"leader"));
        Leadership {
            role: rx,
            resign: Some(Box::new(move || kv.resign(key))),
            task,
        }
    }

    /// Removes the key if this replica holds it (its fence names it).
    fn resign(&self, key: Vec<u8>) {
        let Some(rev) = self.take_fence() else {
            return;
        };
        let txn = Txn::new()
            .when([Compare::create_revision(key.clone(), CompareOp::Equal, rev)])
            .and_then([TxnOp::delete(key, None)]);
        if let Err(e) = self.call_txn("resign", txn) {
            tracing::warn!(error = %e, "could not give up leadership; it expires with its lease");
        }
    }
}

impl Campaign {
    fn pace(&self) -> Duration {
        self.ttl / 3
    }

    async fn run(mut self) {
        loop {
            let lease = match self.client.lease_grant(ttl_secs(self.ttl), None).await {
                Ok(l) => l.id(),
                Err(e) => {
                    tracing::warn!(error = %e, "leader election: cannot get an etcd lease");
                    tokio::time::sleep(self.pace()).await;
                    continue;
                }
            };
            if let Some(rev) = self.acquire(lease).await {
                self.kv.set_fence(self.key.clone(), rev);
                let _ = self.tx.send(Role::Leader);
                tracing::info!(identity = %self.identity, "leading");
                self.hold(lease, rev).await;
                self.kv.take_fence();
                let _ = self.tx.send(Role::Follower { leader: None });
                tracing::warn!(identity = %self.identity, "stepped down: the lease could not be kept");
            }
        }
    }

    /// Tries to take the key until it succeeds (its create revision) or the
    /// lease is gone (`None`).
    async fn acquire(&mut self, lease: i64) -> Option<i64> {
        loop {
            let txn = Txn::new()
                .when([Compare::create_revision(
                    self.key.clone(),
                    CompareOp::Equal,
                    0,
                )])
                .and_then([TxnOp::put(
                    self.key.clone(),
                    self.identity.clone(),
                    Some(PutOptions::new().with_lease(lease)),
                )])
                .or_else([TxnOp::get(self.key.clone(), None)]);
            match self.client.txn(txn).await {
                Ok(r) if r.succeeded() => {
                    return r.header().map(etcd_client::ResponseHeader::revision);
                }
                Ok(r) => {
                    let leader = r.op_responses().into_iter().find_map(|op| match op {
                        TxnOpResponse::Get(g) => g
                            .kvs()
                            .first()
                            .map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                        _ => None,
                    });
                    self.kv.set_known_leader(leader.clone());
                    self.tx.send_if_modified(|role| {
                        let new = Role::Follower { leader };
                        let changed = *role != new;
                        *role = new;
                        changed
                    });
                }
                Err(e) => tracing::debug!(error = %e, "leader election: etcd unavailable"),
            }
            if !self.keep_alive(lease).await {
                return None;
            }
            tokio::time::sleep(self.pace()).await;
        }
    }

    /// Keeps the lease while it can; returns once leadership is lost: the
    /// lease could not be renewed for two thirds of its TTL, or the key is
    /// gone or someone else's (deleted by hand, a restore).
    async fn hold(&mut self, lease: i64, rev: i64) {
        let mut confirmed = tokio::time::Instant::now();
        loop {
            tokio::time::sleep(self.pace()).await;
            if self.keep_alive(lease).await {
                match self.client.get(self.key.clone(), None).await {
                    Ok(r)
                        if r.kvs().first().map(etcd_client::KeyValue::create_revision)
                            != Some(rev) =>
                    {
                        return;
                    }
                    Ok(_) => confirmed = tokio::time::Instant::now(),
                    Err(e) => tracing::debug!(error = %e, "leader check: etcd unavailable"),
                }
            }
            if confirmed.elapsed() >= self.ttl * 2 / 3 {
                return;
            }
        }
    }

    /// One keep-alive round trip within a third of the TTL; false when it
    /// failed or the lease has expired.
    async fn keep_alive(&mut self, lease: i64) -> bool {
        let pace = self.pace();
        let round = async {
            let (mut keeper, mut stream) = self.client.lease_keep_alive(lease).await?;
            keeper.keep_alive().await?;
            stream.message().await
        };
        matches!(
            tokio::time::timeout(pace, round).await,
            Ok(Ok(Some(r))) if r.ttl() > 0
        )
    }
}

fn ttl_secs(ttl: Duration) -> i64 {
    i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX)
}
