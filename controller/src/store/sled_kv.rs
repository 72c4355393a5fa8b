//! The embedded backend: one sled database, one sled tree per store tree.

use std::{
    path::{Path, PathBuf},
    sync::{
        Arc,
        atomic::{AtomicU64, Ordering},
    },
};

use sled::{
    Transactional,
    transaction::{ConflictableTransactionError, TransactionError, TransactionalTree},
};

use super::{
    StoreError, io,
    kv::{ID_FLOOR, Op, Scan, TxError, TxView, Visit, trees},
};

/// The sled database. Cheap to clone.
#[derive(Clone)]
pub(crate) struct SledKv {
    db: sled::Db,
    /// One flush at a time: see [`SledKv::flush`].
    flush_turn: Arc<tokio::sync::Mutex<()>>,
    /// Added to sled's generated ids (set by a restore).
    id_floor: Arc<AtomicU64>,
}

/// The trees of one sled transaction, by name.
pub(crate) struct SledTx<'a> {
    names: &'a [&'static str],
    trees: &'a [TransactionalTree],
}

impl SledTx<'_> {
    fn tree(&self, name: &str) -> &TransactionalTree {
        let i = self
            .names
            .iter()
            .position(|n| *n == name)
            .unwrap_or_else(|| panic!("tree {name} used outside its transaction's tree list"));
        &self.trees[i]
    }

    pub fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        Ok(self.tree(tree).get(key)?.map(|v| v.to_vec()))
    }

    pub fn insert(&self, tree: &'static str, key: &[u8], value: Vec<u8>) -> Result<(), TxError> {
        self.tree(tree).insert(key, value)?;
        Ok(())
    }

    pub fn remove(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, TxError> {
        Ok(self.tree(tree).remove(key)?.map(|v| v.to_vec()))
    }
}

impl SledKv {
    /// Opens (or creates) the database in `dir`.
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .path(dir)
            .mode(sled::Mode::HighThroughput)
            .open()
            .map_err(|source| StoreError::Open {
                path: dir.to_owned(),
                source,
            })?;
        Self::from_db(db)
    }

    /// A database in memory that vanishes on drop.
    pub fn temporary() -> Result<Self, StoreError> {
        let db = sled::Config::new()
            .temporary(true)
            .open()
            .map_err(|source| StoreError::Open {
                path: PathBuf::from("<temporary>"),
                source,
            })?;
        Self::from_db(db)
    }

    fn from_db(db: sled::Db) -> Result<Self, StoreError> {
        let kv = Self {
            db,
            flush_turn: Arc::default(),
            id_floor: Arc::default(),
        };
        if let Some(v) = kv.get(trees::META, ID_FLOOR)? {
            kv.id_floor.store(decode_u64(&v), Ordering::SeqCst);
        }
        Ok(kv)
    }

    fn tree(&self, name: &str) -> Result<sled::Tree, StoreError> {
        self.db.open_tree(name).map_err(io("open tree"))
    }

    pub fn get(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)?
            .get(key)
            .map_err(io("get"))?
            .map(|v| v.to_vec()))
    }

    pub fn insert(&self, tree: &'static str, key: &[u8], value: Vec<u8>) -> Result<(), StoreError> {
        self.tree(tree)?.insert(key, value).map_err(io("insert"))?;
        Ok(())
    }

    pub fn remove(&self, tree: &'static str, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self
            .tree(tree)?
            .remove(key)
            .map_err(io("remove"))?
            .map(|v| v.to_vec()))
    }

    pub fn cas(
        &self,
        tree: &'static str,
        key: &[u8],
        old: Option<&[u8]>,
        new: Option<Vec<u8>>,
    ) -> Result<bool, StoreError> {
        Ok(self
            .tree(tree)?
            .compare_and_swap(key, old, new)
            .map_err(io("compare and swap"))?
            .is_ok())
    }

    /// One sled batch per tree touched; several trees go through one
    /// transaction so the batch stays atomic.
    pub fn batch(&self, ops: Vec<Op>) -> Result<(), StoreError> {
        if ops.is_empty() {
            return Ok(());
        }
        let mut names: Vec<&'static str> = ops.iter().map(|o| o.tree).collect();
        names.sort_unstable();
        names.dedup();
        if let [only] = names[..] {
            let mut batch = sled::Batch::default();
            for op in ops {
                match op.value {
                    Some(v) => batch.insert(op.key, v),
                    None => batch.remove(op.key),
                }
            }
            return self.tree(only)?.apply_batch(batch).map_err(io("batch"));
        }
        self.transact(&names, |tx| {
            for op in &ops {
                match &op.value {
                    Some(v) => tx.insert(op.tree, &op.key, v.clone())?,
                    None => {
                        tx.remove(op.tree, &op.key)?;
                    }
                }
            }
            Ok(())
        })
    }

    pub fn scan(
        &self,
        tree: &'static str,
        scan: Scan<'_>,
        visit: Visit<'_>,
    ) -> Result<(), StoreError> {
        let tree = self.tree(tree)?;
        let iter: Box<dyn Iterator<Item = sled::Result<(sled::IVec, sled::IVec)>>> = match scan {
            Scan::All => Box::new(tree.iter()),
            Scan::Rev => Box::new(tree.iter().rev()),
            Scan::From(from) => Box::new(tree.range(from..)),
            Scan::RevBefore(before) => Box::new(tree.range(..before).rev()),
        };
        for item in iter {
            let (k, v) = item.map_err(io("scan"))?;
            if !visit(&k, &v)? {
                break;
            }
        }
        Ok(())
    }

    pub fn generate_id(&self) -> Result<u64, StoreError> {
        // sled ids are monotonic across restarts; +1 keeps "txn-0" out of sight.
        Ok(self.id_floor.load(Ordering::SeqCst)
            + self.db.generate_id().map_err(io("generate id"))?
            + 1)
    }

    pub fn set_id_floor(&self, floor: u64) -> Result<(), StoreError> {
        self.insert(trees::META, ID_FLOOR, floor.to_be_bytes().to_vec())?;
        self.id_floor.store(floor, Ordering::SeqCst);
        Ok(())
    }

    pub fn transact<R>(
        &self,
        names: &[&'static str],
        body: impl Fn(&mut TxView<'_>) -> Result<R, TxError>,
    ) -> Result<R, StoreError> {
        let trees: Vec<sled::Tree> = names
            .iter()
            .map(|n| self.tree(n))
            .collect::<Result<_, _>>()?;
        trees
            .as_slice()
            .transaction(|view: &Vec<TransactionalTree>| {
                let tx = SledTx { names, trees: view };
                body(&mut TxView::Sled(&tx)).map_err(|e| match e {
                    TxError::Abort(inner) => ConflictableTransactionError::Abort(inner),
                    TxError::Sled(s) => s.into(),
                })
            })
            .map_err(|e| match e {
                TransactionError::Abort(inner) => inner,
                TransactionError::Storage(source) => StoreError::Io {
                    op: "transaction",
                    source,
                },
            })
    }

    /// Makes every acknowledged write durable.
    ///
    /// sled 0.34's `flush_async` deadlocks when several run at once
    /// (spacejam/sled#1308: its I/O threads wait for a flush the log
    /// flusher can no longer take its lock for). rampartd hit it with 32
    /// concurrent agent enrollments: every store access then hung. So
    /// flushes take turns and run as the blocking `flush` off the runtime;
    /// a caller that waited for its turn usually finds nothing left to
    /// write.
    pub async fn flush(&self) -> Result<(), StoreError> {
        let _turn = self.flush_turn.lock().await;
        let db = self.db.clone();
        tokio::task::spawn_blocking(move || db.flush())
            .await
            .map_err(|e| StoreError::Io {
                op: "flush",
                source: sled::Error::ReportableBug(format!("flush task: {e}")),
            })?
            .map_err(io("flush"))?;
        Ok(())
    }

    pub fn size_on_disk(&self) -> u64 {
        self.db.size_on_disk().unwrap_or(0)
    }
}

/// A big-endian u64 (shorter input: zero-padded on the left).
pub(crate) fn decode_u64(bytes: &[u8]) -> u64 {
    let mut buf = [0u8; 8];
    let n = bytes.len().min(8);
    buf[8 - n..].copy_from_slice(&bytes[bytes.len() - n..]);
    u64::from_be_bytes(buf)
}
