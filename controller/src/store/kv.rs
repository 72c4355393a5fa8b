//! The ordered key-value layer under [`super::Store`]: named trees of byte
//! keys, point reads and writes, compare-and-swap, atomic batches, ordered
//! scans and optimistic multi-key transactions, on sled or on etcd.
//!
//! The store's records and rules (generations, exclusive device adds, the
//! audit log's append-only ids) are written once, in the modules above, on
//! top of this; a backend only has to keep the same guarantees: what one
//! [`Kv::transact`] reads and writes is one atomic step on both.

use super::{StoreError, etcd_kv::EtcdKv, sled_kv::SledKv};

/// Every tree the store uses (sled tree names; etcd key segments).
pub(crate) mod trees {
    pub const DEVICES: &str = "devices";
    pub const SERVICES: &str = "services";
    pub const TXNS: &str = "transactions";
    pub const SYNCED: &str = "synced";
    pub const AUTH_TOKENS: &str = "auth_tokens";
    pub const AUTH_BINDINGS: &str = "auth_bindings";
    pub const AUDIT: &str = "audit";
    pub const SECRETS: &str = "device_secrets";
    pub const FLEET_TOKENS: &str = "fleet_tokens";
    pub const FLEET_AGENTS: &str = "fleet_agents";
    /// Store bookkeeping (the id floor a restore sets).
    pub const META: &str = "meta";

    /// The trees a backup carries (all of them: `meta` is rebuilt).
    pub const DATA: [&str; 10] = [
        DEVICES,
        SERVICES,
        TXNS,
        SYNCED,
        AUTH_TOKENS,
        AUTH_BINDINGS,
        AUDIT,
        SECRETS,
        FLEET_TOKENS,
        FLEET_AGENTS,
    ];
}

/// Key of the id floor in [`trees::META`]: every generated id is above it,
/// so ids restored from a backup are never handed out again.
pub(crate) const ID_FLOOR: &[u8] = b"id_floor";

/// One write of an atomic batch.
#[derive(Debug, Clone)]
pub(crate) struct Op {
    pub tree: &'static str,
    pub key: Vec<u8>,
    /// `None` removes the key.
    pub value: Option<Vec<u8>>,
}

/// Why a transaction body stopped: its own error (abort, nothing written)
/// or a backend signal the retry loop handles.
pub(crate) enum TxError {
    /// The body failed; the transaction is abandoned.
    Abort(StoreError),
    /// sled's conflict or storage signal, handed back to sled.
    Sled(sled::transaction::UnabortableTransactionError),
}

impl From<StoreError> for TxError {
    fn from(e: StoreError) -> Self {
        Self::Abort(e)
    }
}

impl From<sled::transaction::UnabortableTransactionError> for TxError {
    fn from(e: sled::transaction::UnabortableTransactionError) -> Self {
        Self::Sled(e)
    }
}

/// What a transaction body sees: reads at one consistent point, writes
/// buffered until the whole body succeeded.
pub(crate) enum TxView<'a> {
    Sled(&'a super::sled_kv::SledTx<'a>),
    Etcd(&'a mut super::etcd_tx::EtcdTx),
}

impl TxView<'_> {
    pub fn get(&mut self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        match self {
            Self::Sled(t) => t.get(tree, key),
            Self::Etcd(t) => t.get(tree, key).map_err(TxError::Abort),
        }
    }

    pub fn insert(
        &mut self,
        tree: &'static str,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), TxError> {
        match self {
            Self::Sled(t) => t.insert(tree, key, value),
            Self::Etcd(t) => {
                t.write(tree, key, Some(value));
                Ok(())
            }
        }
    }

    /// Removes `key`, returning what it held.
    pub fn remove(&mut self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        match self {
            Self::Sled(t) => t.remove(tree, key),
            Self::Etcd(t) => {
                let old = t.get(tree, key).map_err(TxError::Abort)?;
                t.write(tree, key, None);
                Ok(old)
            }
        }
    }
}

/// Key-value pairs in key order.
pub(crate) type Records = Vec<(Vec<u8>, Vec<u8>)>;

/// Tree name → its records.
pub(crate) type Dump = std::collections::BTreeMap<String, Records>;

/// Scan visitor: return `Ok(false)` to stop.
pub(crate) type Visit<'a> = &'a mut dyn FnMut(&[u8], &[u8]) -> Result<bool, StoreError>;

/// Where a scan starts and which way it goes.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scan<'a> {
    /// Every key, ascending.
    All,
    /// Every key, descending.
    Rev,
    /// Keys `>= from`, ascending.
    From(&'a [u8]),
    /// Keys `< before`, descending (paging backwards).
    RevBefore(&'a [u8]),
}

/// A backend. Cheap to clone.
#[derive(Clone)]
pub(crate) enum Kv {
    Sled(SledKv),
    Etcd(EtcdKv),
}

impl Kv {
    pub fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Sled(s) => s.get(tree, key),
            Self::Etcd(e) => e.get(tree, key),
        }
    }

    pub fn insert(&self, tree: &'static str, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        match self {
            Self::Sled(s) => s.insert(tree, key, value),
            Self::Etcd(e) => e.batch(vec![Op {
                tree,
                key: key.to_vec(),
                value: Some(value),
            }]),
        }
    }

    /// Like [`Kv::insert`], but a transaction: on etcd only the leader
    /// writes it (the leader fence applies).
    pub fn insert_journal(
        &self,
        tree: &'static str,
        key: &[u8],
        value: Vec<u8>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sled(s) => s.insert(tree, key, value),
            Self::Etcd(e) => e.transact(|tx| tx.insert(tree, key, value.clone())),
        }
    }

    /// Removes `key`, returning what it held.
    pub fn remove(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self {
            Self::Sled(s) => s.remove(tree, key),
            Self::Etcd(e) => e.remove(tree, key),
        }
    }

    /// Sets `key` to `new` (`None` removes) only if it holds `old` (`None`:
    /// absent). Whether it did.
    pub fn cas(
        &self,
        tree: &'static str,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        match self {
            Self::Sled(s) => s.cas(tree, key, old, new),
            Self::Etcd(e) => e.cas(tree, key, old, new.as_deref()),
        }
    }

    /// Applies every write at once.
    pub fn batch(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        match self {
            Self::Sled(s) => s.batch(ops),
            Self::Etcd(e) => e.batch(ops),
        }
    }

    /// Visits a tree's records in key order, from one consistent point.
    pub fn scan(
        &self,
        tree: &'static str,
        scan: Scan<'_>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        match self {
            Self::Sled(s) => s.scan(tree, scan, visit),
            Self::Etcd(e) => e.scan(tree, scan, visit),
        }
    }

    /// Every record of a tree, in key order.
    pub fn collect(&self, tree: &'static str) -> Result<Records, StoreError> {
        let mut out = Vec::new();
        self.scan(tree, Scan::All, &mut |k, v| {
            out.push((k.to_vec(), v.to_vec()));
            Ok(true)
        })?;
        Ok(out)
    }

    pub fn is_empty(&self, tree: &'static str) -> Result<bool, StoreError> {
        let mut empty = true;
        self.scan(tree, Scan::All, &mut |_, _| {
            empty = false;
            Ok(false)
        })?;
        Ok(empty)
    }

    /// A fresh id, above every id generated or restored before.
    pub fn generate_id(&self) -> Result<u64, StoreError> {
        match self {
            Self::Sled(s) => s.generate_id(),
            Self::Etcd(e) => e.generate_id(),
        }
    }

    /// Runs `body` as one atomic step over `trees`: re-run from scratch
    /// when a concurrent writer changed what it read (and only then).
    pub fn transact<R>(
        &self,
        trees: &[&'static str],
        body: impl Fn(&mut TxView<'_>) -> Result<R, TxError>,
    ) -> Result<R, StoreError> {
        match self {
            Self::Sled(s) => s.transact(trees, body),
            Self::Etcd(e) => e.transact(body),
        }
    }

    /// Makes every acknowledged write durable (etcd: already is).
    pub async fn flush(&self) -> Result<(), StoreError> {
        match self {
            Self::Sled(s) => s.flush().await,
            Self::Etcd(_) => Ok(()),
        }
    }

    pub fn size_on_disk(&self) -> u64 {
        match self {
            Self::Sled(s) => s.size_on_disk(),
            Self::Etcd(e) => e.size_on_disk(),
        }
    }

    /// Every record of every data tree, read at one consistent point
    /// (etcd: one revision; sled: the caller holds the database alone).
    pub fn dump(&self) -> Result<Dump, StoreError> {
        match self {
            Self::Sled(_) => trees::DATA
                .iter()
                .map(|t| Ok(((*t).to_owned(), self.collect(t)?)))
                .collect(),
            Self::Etcd(e) => e.dump(),
        }
    }

    /// Raises the id floor to `floor` (restore).
    pub fn set_id_floor(&self, floor: u64) -> Result<(), StoreError> {
        match self {
            Self::Sled(s) => s.set_id_floor(floor),
            Self::Etcd(e) => e.set_id_floor(floor),
        }
    }
}
