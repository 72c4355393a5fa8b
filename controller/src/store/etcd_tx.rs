//! Optimistic multi-key transactions on etcd: the body reads at one pinned
//! revision (its own writes first), and the commit compares the
//! `mod_revision` of every key it read (plus the leader fence while this
//! replica leads). A failed compare re-runs the body, and only that does.

use std::collections::BTreeMap;

use etcd_client::{Compare, CompareOp, Txn, TxnOp};

use super::{
    StoreError,
    etcd_kv::{EtcdKv, ambiguous},
    kv::{TxError, TxView},
};

/// A transaction body re-run this often without committing is reported,
/// not retried forever.
const MAX_ATTEMPTS: usize = 100;

impl EtcdKv {
    pub fn transact<R>(
        &self,
        body: impl Fn(&mut TxView<'_>) -> Result<R, TxError>,
    ) -> Result<R, StoreError> {
        self.check_leading()?;
        for attempt in 0..MAX_ATTEMPTS {
            let mut tx = EtcdTx {
                kv: self.clone(),
                revision: None,
                reads: BTreeMap::new(),
                writes: BTreeMap::new(),
            };
            let out = match body(&mut TxView::Etcd(&mut tx)) {
                Ok(out) => out,
                Err(TxError::Abort(e)) => return Err(e),
                Err(TxError::Sled(_)) => unreachable!("sled signal from an etcd transaction"),
            };
            if tx.commit()? {
                return Ok(out);
            }
            tracing::debug!(attempt, "etcd transaction conflicted; re-running");
        }
        Err(StoreError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }
}

/// One optimistic transaction: what it read (and at which `mod_revision`)
/// and what it will write.
pub(crate) struct EtcdTx {
    kv: EtcdKv,
    revision: Option<i64>,
    reads: BTreeMap<Vec<u8>, i64>,
    writes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl EtcdTx {
    /// Reads see the transaction's own writes, else the pinned revision.
    pub fn get(&mut self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let full = self.kv.key(tree, key);
        if let Some(w) = self.writes.get(&full) {
            return Ok(w.clone());
        }
        let (value, mod_rev, at) = self.kv.get_at(&full, self.revision, false)?;
        self.revision.get_or_insert(at);
        self.reads.entry(full).or_insert(mod_rev);
        Ok(value)
    }

    pub fn write(&mut self, tree: &'static str, key: &[u8], value: Option<Vec<u8>>) {
        self.writes.insert(self.kv.key(tree, key), value);
    }

    /// Whether it committed (false: something it read changed meanwhile).
    /// When the answer is lost (a member died under it), the written keys
    /// are read back: all as written means it committed; otherwise it did
    /// not (etcd transactions are all or nothing) and the body re-runs.
    fn commit(self) -> Result<bool, StoreError> {
        if self.writes.is_empty() {
            return Ok(true);
        }
        let fence = self.kv.fence();
        let compares: Vec<Compare> = self
            .reads
            .iter()
            .map(|(k, rev)| Compare::mod_revision(k.clone(), CompareOp::Equal, *rev))
            .chain(
                fence
                    .iter()
                    .map(|(k, rev)| Compare::create_revision(k.clone(), CompareOp::Equal, *rev)),
            )
            .collect();
        let ops: Vec<TxnOp> = self
            .writes
            .iter()
            .map(|(k, v)| match v {
                Some(v) => TxnOp::put(k.clone(), v.clone(), None),
                None => TxnOp::delete(k.clone(), None),
            })
            .collect();
        let txn = Txn::new().when(compares).and_then(ops);
        match self.kv.call("transaction", false, move |mut c| {
            let t = txn.clone();
            async move { c.txn(t).await }
        }) {
            Ok(resp) if !resp.succeeded() => match fence {
                // A conflict, unless the fence is what failed.
                Some((key, rev)) => {
                    let held = self.kv.call("get", true, move |mut c| {
                        let key = key.clone();
                        async move { c.get(key, None).await }
                    })?;
                    match held.kvs().first() {
                        Some(kv) if kv.create_revision() == rev => Ok(false),
                        held => Err(StoreError::NotLeader {
                            leader: held.map(|kv| String::from_utf8_lossy(kv.value()).into_owned()),
                        }),
                    }
                }
                None => Ok(false),
            },
            Ok(_) => Ok(true),
            Err(e) if ambiguous(&e) => {
                tracing::debug!(error = %e, "etcd transaction interrupted; reading its outcome");
                for (k, v) in &self.writes {
                    if self.kv.get_at(k, None, false)?.0 != *v {
                        return Ok(false);
                    }
                }
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }
}
