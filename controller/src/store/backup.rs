//! Backups: a consistent, versioned snapshot of every tree, portable
//! between backends (a sled backup restores into etcd: that is the
//! migration path).
//!
//! Records are copied byte for byte, so device credentials stay sealed
//! under the secret key they were written with: a backup never holds a
//! secret in clear, and restoring it needs that key (the `[secrets]` key
//! file, or `secret.key` of the old data directory) to decrypt them.

use std::collections::BTreeMap;

use base64::{Engine as _, engine::general_purpose::STANDARD};
use serde::{Deserialize, Serialize};

use super::{Store, StoreError, kv::Op, kv::trees, now_unix_ms};

/// The `format` field of every backup.
pub const FORMAT: &str = "rampart-store-backup";
/// The version this build writes and reads.
pub const VERSION: u32 = 1;

/// Backup and restore failures.
#[derive(Debug, thiserror::Error)]
pub enum BackupError {
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The file is not a backup this build can read.
    #[error("not a usable backup: {0}")]
    Format(String),
    /// Restores go into an empty store only, never on top of live state.
    #[error(
        "the {backend} store is not empty (tree {tree} holds records); restore into a new data \
         directory or an unused etcd prefix"
    )]
    NotEmpty {
        /// Backend.
        backend: &'static str,
        /// First non-empty tree.
        tree: String,
    },
}

/// One record: key and value, base64 of the stored bytes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    /// The key.
    pub k: String,
    /// The value.
    pub v: String,
}

/// A snapshot of the whole store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Snapshot {
    /// Always [`FORMAT`].
    pub format: String,
    /// The format version ([`VERSION`]).
    pub version: u32,
    /// When it was taken, Unix ms.
    pub created_unix_ms: i64,
    /// The backend it was taken from.
    pub backend: String,
    /// Id of the secret key the credentials are sealed with (when known).
    pub secret_key_id: Option<String>,
    /// Above every transaction and audit id in the snapshot: the restored
    /// store hands out ids above it.
    pub id_floor: u64,
    /// Tree name → records in key order.
    pub trees: BTreeMap<String, Vec<Record>>,
}

impl Snapshot {
    /// Records per tree.
    #[must_use]
    pub fn counts(&self) -> BTreeMap<String, usize> {
        self.trees
            .iter()
            .map(|(t, r)| (t.clone(), r.len()))
            .collect()
    }

    /// The file form (JSON).
    ///
    /// # Errors
    /// [`BackupError::Format`] when it cannot be encoded.
    pub fn to_bytes(&self) -> Result<Vec<u8>, BackupError> {
        serde_json::to_vec(self).map_err(|e| BackupError::Format(e.to_string()))
    }

    /// Reads and checks a backup file's contents.
    ///
    /// # Errors
    /// [`BackupError::Format`] naming what is wrong (format, version, an
    /// unknown tree, a record that is not base64).
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, BackupError> {
        let snap: Self = serde_json::from_slice(bytes)
            .map_err(|e| BackupError::Format(format!("not a backup file: {e}")))?;
        if snap.format != FORMAT {
            return Err(BackupError::Format(format!(
                "format is {:?}, expected {FORMAT:?}",
                snap.format
            )));
        }
        if snap.version != VERSION {
            return Err(BackupError::Format(format!(
                "version {} (this rampartd reads version {VERSION})",
                snap.version
            )));
        }
        for (tree, records) in &snap.trees {
            if !trees::DATA.contains(&tree.as_str()) {
                return Err(BackupError::Format(format!("unknown tree {tree:?}")));
            }
            for (i, r) in records.iter().enumerate() {
                if STANDARD.decode(&r.k).is_err() || STANDARD.decode(&r.v).is_err() {
                    return Err(BackupError::Format(format!(
                        "tree {tree:?} record {i} is not base64"
                    )));
                }
            }
        }
        Ok(snap)
    }
}

/// The largest id a tree keyed by big-endian ids holds.
fn max_id(records: &[(Vec<u8>, Vec<u8>)]) -> u64 {
    records
        .iter()
        .filter_map(|(k, _)| <[u8; 8]>::try_from(k.as_slice()).ok())
        .map(u64::from_be_bytes)
        .max()
        .unwrap_or(0)
}

impl Store {
    /// A consistent snapshot of every tree.
    ///
    /// # Errors
    /// Storage failures.
    pub fn backup(&self) -> Result<Snapshot, BackupError> {
        let dump = self.kv.dump()?;
        // An id generated now is above every id already handed out.
        let fresh = self.kv.generate_id()?;
        let id_floor = [trees::TXNS, trees::AUDIT]
            .iter()
            .filter_map(|t| dump.get(*t))
            .map(|r| max_id(r))
            .fold(fresh, u64::max);
        let trees = dump
            .into_iter()
            .map(|(tree, records)| {
                let records = records
                    .into_iter()
                    .map(|(k, v)| Record {
                        k: STANDARD.encode(k),
                        v: STANDARD.encode(v),
                    })
                    .collect();
                (tree, records)
            })
            .collect();
        Ok(Snapshot {
            format: FORMAT.to_owned(),
            version: VERSION,
            created_unix_ms: now_unix_ms(),
            backend: self.backend().to_owned(),
            secret_key_id: self.secret_key_id(),
            id_floor,
            trees,
        })
    }

    /// Writes `snap` into this store, which must be empty, then flushes.
    /// Ids generated afterwards are above every restored id.
    ///
    /// # Errors
    /// [`BackupError::NotEmpty`] when the store holds data (nothing is
    /// written then); storage failures.
    pub async fn restore(&self, snap: &Snapshot) -> Result<(), BackupError> {
        for tree in trees::DATA {
            if !self.kv.is_empty(tree)? {
                return Err(BackupError::NotEmpty {
                    backend: self.backend(),
                    tree: tree.to_owned(),
                });
            }
        }
        // The floor first: should the restore stop half-way, ids handed out
        // by a store started on it still never collide with the backup's.
        self.kv.set_id_floor(snap.id_floor)?;
        for tree in trees::DATA {
            let Some(records) = snap.trees.get(tree) else {
                continue;
            };
            let ops = records
                .iter()
                .map(|r| {
                    let bad = |_| BackupError::Format(format!("tree {tree:?}: bad base64"));
                    Ok(Op {
                        tree,
                        key: STANDARD.decode(&r.k).map_err(bad)?,
                        value: Some(STANDARD.decode(&r.v).map_err(bad)?),
                    })
                })
                .collect::<Result<Vec<_>, BackupError>>()?;
            self.kv.batch(ops)?;
        }
        self.flush().await?;
        Ok(())
    }
}

/// How many restored credentials open with the configured key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct SecretsCheck {
    /// Devices whose credentials decrypt.
    pub readable: usize,
    /// Devices whose credentials do not (with why, never the secret).
    pub unreadable: Vec<(String, String)>,
}

impl Store {
    /// Tries to open every stored credential with the installed keyring
    /// (after a restore: is the right key configured?).
    ///
    /// # Errors
    /// Storage failures.
    pub fn check_secrets(&self) -> Result<SecretsCheck, BackupError> {
        let mut check = SecretsCheck::default();
        for (k, _) in self.kv.collect(trees::SECRETS)? {
            let device = String::from_utf8_lossy(&k).into_owned();
            match self.device_credentials(&device) {
                Ok(_) => check.readable += 1,
                Err(e) => check.unreadable.push((device, e.to_string())),
            }
        }
        Ok(check)
    }
}
