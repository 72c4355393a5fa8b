//! The store: devices, services (desired state with a generation number),
//! the transaction log and the rest of rampartd's state, on the embedded
//! sled database (default) or an etcd cluster (`[store] backend`, see
//! `docs/ha.md`); [`kv`] is the layer that differs.
//!
//! Every mutation that the API acknowledges is durable before the
//! acknowledgement (sled: flushed; etcd: committed by a quorum), so an
//! applied spec survives `kill -9` of the daemon. A service and the
//! transaction that changed it are written in one atomic step: the store
//! never holds one without the other.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};

pub mod access;
pub mod audit;
pub mod backup;
mod etcd_kv;
mod etcd_tx;
pub mod fleet;
mod kv;
pub mod leader;
pub mod secrets;
mod sled_kv;

pub use etcd_kv::EtcdOptions;
use kv::{Kv, Scan, TxError, TxView, trees};

use crate::{
    model::{
        device::Device,
        spec::{Kind, ServiceSpec},
    },
    wire::Rendering,
};

/// Store failures, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened.
    #[error("cannot open store at {path}: {source}")]
    Open {
        /// Data directory.
        path: PathBuf,
        /// Cause.
        #[source]
        source: sled::Error,
    },
    /// A read or write failed.
    #[error("store {op} failed: {source}")]
    Io {
        /// The operation.
        op: &'static str,
        /// Cause.
        #[source]
        source: sled::Error,
    },
    /// A stored record could not be decoded (corruption or an incompatible
    /// version).
    #[error("stored {what} {key:?} is unreadable: {source}")]
    Decode {
        /// Record type.
        what: &'static str,
        /// Its key.
        key: String,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// A record to write could not be encoded.
    #[error("cannot encode {what}: {source}")]
    Encode {
        /// Record type.
        what: &'static str,
        /// Cause.
        #[source]
        source: serde_json::Error,
    },
    /// Adding a device whose name is taken.
    #[error("device {name:?} already exists")]
    DeviceExists {
        /// Device name.
        name: String,
    },
    /// An etcd request failed (unreachable endpoints, no quorum, TLS).
    #[error("etcd {op} failed (endpoints {endpoints}): {source}")]
    Etcd {
        /// The operation.
        op: &'static str,
        /// The configured endpoints.
        endpoints: String,
        /// Cause.
        #[source]
        source: etcd_client::Error,
    },
    /// etcd did not answer in time: typically a cluster without quorum.
    #[error(
        "etcd {op} got no answer within {after_ms} ms (endpoints {endpoints}; last error: \
         {last}); is a quorum of etcd members up?"
    )]
    EtcdTimeout {
        /// The operation.
        op: &'static str,
        /// The configured endpoints.
        endpoints: String,
        /// The deadline (`[store] etcd_timeout_ms`).
        after_ms: u64,
        /// The last transient failure seen before it.
        last: String,
    },
    /// The etcd backend could not be set up (TLS files, runtime).
    #[error("etcd store: {message}")]
    EtcdSetup {
        /// What is wrong.
        message: String,
    },
    /// Transactions run on the elected leader only (see `docs/ha.md`);
    /// nothing was written.
    #[error(
        "this rampartd replica is not the leader{}; nothing was written (send changes to the leader)",
        leader.as_ref().map(|l| format!(" (the leader is {l})")).unwrap_or_default()
    )]
    NotLeader {
        /// The leader's identity, when known.
        leader: Option<String>,
    },
    /// A transaction kept conflicting with concurrent writers.
    #[error(
        "store transaction gave up after {attempts} attempts conflicting with concurrent writes"
    )]
    Contended {
        /// Attempts made.
        attempts: usize,
    },
    /// Removing a device that services still use.
    #[error("device {name:?} is used by services {services:?}; delete or change them first")]
    DeviceInUse {
        /// Device name.
        name: String,
        /// `tenant/name` of the services that use it.
        services: Vec<String>,
    },
}

/// A service as stored: the validated spec plus bookkeeping.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StoredService {
    /// The validated spec.
    pub spec: ServiceSpec,
    /// The `apiVersion` it was written in.
    pub api_version: String,
    /// Increments with every accepted change.
    pub generation: u64,
    /// First apply, Unix seconds.
    pub created_unix: i64,
    /// Last apply, Unix seconds.
    pub updated_unix: i64,
    /// The transaction that last changed it.
    pub last_transaction: u64,
}

impl StoredService {
    /// `tenant/name`, the store key.
    #[must_use]
    pub fn key(&self) -> String {
        service_key(&self.spec.metadata.tenant, &self.spec.metadata.name)
    }
}

/// Outcome of a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnState {
    /// Journaled, not finished.
    Pending,
    /// Done everywhere.
    Committed,
    /// Failed; nothing changed.
    Failed,
    /// Undone by a later rollback.
    RolledBack,
}

/// One target's part of a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnChange {
    /// What was rendered for the target.
    pub rendering: Rendering,
    /// Why this target failed, if it did.
    pub error: Option<String>,
}

/// A journaled transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct TxnRecord {
    /// Monotonic id.
    pub id: u64,
    /// State.
    pub state: TxnState,
    /// `apply` or `delete`.
    pub operation: String,
    /// `tenant/name` of every service touched.
    pub services: Vec<String>,
    /// Who asked for it.
    pub author: String,
    /// Unix milliseconds.
    pub started_unix_ms: i64,
    /// Unix milliseconds.
    pub finished_unix_ms: Option<i64>,
    /// Per-target changes.
    pub changes: Vec<TxnChange>,
    /// Overall error.
    pub error: Option<String>,
    /// How far the two-phase protocol got (recovery reads this).
    #[serde(default)]
    pub phase: TxnPhase,
    /// Per-device plan and outcome.
    #[serde(default)]
    pub devices: Vec<DeviceTxn>,
    /// The services' specs before this transaction (`None`: did not exist),
    /// so it can be rolled back.
    #[serde(default)]
    pub prior: Vec<PriorSpec>,
    /// The transaction this one rolled back.
    #[serde(default)]
    pub rollback_of: Option<u64>,
}

impl TxnRecord {
    /// The fields a store-only transaction leaves at their defaults.
    #[must_use]
    pub fn default_pending() -> Self {
        Self {
            id: 0,
            state: TxnState::Pending,
            operation: String::new(),
            services: Vec::new(),
            author: String::new(),
            started_unix_ms: 0,
            finished_unix_ms: None,
            changes: Vec::new(),
            error: None,
            phase: TxnPhase::Planned,
            devices: Vec::new(),
            prior: Vec::new(),
            rollback_of: None,
        }
    }
}

/// Progress of the two-phase protocol, journaled before each step.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum TxnPhase {
    /// Planned; no device touched.
    #[default]
    Planned,
    /// Staging on devices (candidate edits, locks).
    Preparing,
    /// Committing on devices.
    Committing,
    /// Finished (see the state).
    Done,
}

/// What happened on one device.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum DeviceStatus {
    /// Not touched yet.
    #[default]
    Planned,
    /// Staged in the candidate.
    Prepared,
    /// Committed (confirmed or plain).
    Committed,
    /// Staging undone.
    Aborted,
    /// Restored to its previous configuration after a commit.
    RolledBack,
    /// Failed here.
    Failed,
}

/// One device's part of a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeviceTxn {
    /// Inventory name.
    pub device: String,
    /// Platform word.
    pub platform: String,
    /// Rampart-owned configuration before (platform-specific JSON).
    pub prev: serde_json::Value,
    /// Rampart-owned configuration after.
    pub next: serde_json::Value,
    /// Each service's contribution after the transaction.
    pub contributions: BTreeMap<String, serde_json::Value>,
    /// The native edit (prev → next).
    #[serde(deserialize_with = "crate::wire::edit::journaled")]
    pub edit: crate::wire::edit::Edit,
    /// The native inverse edit (next → prev), for compensation.
    #[serde(deserialize_with = "crate::wire::edit::journaled")]
    pub inverse: crate::wire::edit::Edit,
    /// Outcome.
    pub status: DeviceStatus,
    /// Why it failed.
    pub error: Option<String>,
    /// YANG paths the device named in its errors.
    #[serde(default)]
    pub paths: Vec<String>,
}

/// A service spec as it was before a transaction.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PriorSpec {
    /// `tenant/name`.
    pub key: String,
    /// The spec, or `None` when the service did not exist.
    pub spec: Option<ServiceSpec>,
}

/// What Rampart last put on a device: its "synced copy".
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SyncedDevice {
    /// Each service's contribution (platform-specific JSON).
    pub contributions: BTreeMap<String, serde_json::Value>,
    /// The merged Rampart-owned configuration.
    pub merged: serde_json::Value,
    /// The transaction that last changed it.
    pub last_txn: u64,
    /// Set by `sync --from-device`: the device's own rendering of Rampart's
    /// objects, accepted as the new baseline for drift checks.
    #[serde(default)]
    pub accepted: Option<String>,
}

/// The store key of a service.
#[must_use]
pub fn service_key(tenant: &str, name: &str) -> String {
    format!("{tenant}/{name}")
}

/// The formatted id users see (`txn-42`).
#[must_use]
pub fn txn_display_id(id: u64) -> String {
    format!("txn-{id}")
}

/// Parses `txn-42` or `42`.
#[must_use]
pub fn parse_txn_id(s: &str) -> Option<u64> {
    s.strip_prefix("txn-").unwrap_or(s).parse().ok()
}

/// Handle to the store. Cheap to clone.
#[derive(Clone)]
pub struct Store {
    kv: Kv,
    /// Where it lives (a directory or the etcd endpoints), for logs.
    path: Option<PathBuf>,
    secret_keys: secrets::KeySlot,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

pub(crate) fn io(op: &'static str) -> impl FnOnce(sled::Error) -> StoreError {
    move |source| StoreError::Io { op, source }
}

fn decode<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    key: &[u8],
    bytes: &[u8],
) -> Result<T, StoreError> {
    serde_json::from_slice(bytes).map_err(|source| StoreError::Decode {
        what,
        key: String::from_utf8_lossy(key).into_owned(),
        source,
    })
}

fn encode<T: Serialize>(what: &'static str, value: &T) -> Result<Vec<u8>, StoreError> {
    serde_json::to_vec(value).map_err(|source| StoreError::Encode { what, source })
}

/// Decodes what a transaction body read; a bad record aborts it.
fn decode_tx<T: for<'de> Deserialize<'de>>(
    what: &'static str,
    key: &[u8],
    bytes: Option<Vec<u8>>,
) -> Result<Option<T>, TxError> {
    Ok(bytes.map(|b| decode(what, key, &b)).transpose()?)
}

/// Now, in Unix milliseconds.
#[must_use]
pub fn now_unix_ms() -> i64 {
    let d = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or_default();
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Store {
    /// Opens (or creates) the sled store in `dir`.
    ///
    /// # Errors
    /// [`StoreError::Open`] when the directory cannot be used (permissions,
    /// another rampartd holding the lock).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        Ok(Self::with_kv(
            Kv::Sled(sled_kv::SledKv::open(dir)?),
            Some(dir.to_owned()),
        ))
    }

    /// Connects to the etcd store described by `options`.
    ///
    /// # Errors
    /// [`StoreError::Etcd`] or [`StoreError::EtcdTimeout`] naming the
    /// endpoints when the cluster cannot be read.
    pub fn open_etcd(options: &EtcdOptions) -> Result<Self, StoreError> {
        Ok(Self::with_kv(
            Kv::Etcd(etcd_kv::EtcdKv::connect(options)?),
            Some(PathBuf::from(options.endpoints.join(","))),
        ))
    }

    /// Opens the store `[store]` selects; sled lives in `data_dir`.
    ///
    /// # Errors
    /// As [`Store::open`] and [`Store::open_etcd`]; unreadable TLS files
    /// are [`StoreError::EtcdSetup`] naming the field.
    pub fn open_configured(
        config: &crate::config::StoreConfig,
        data_dir: &Path,
    ) -> Result<Self, StoreError> {
        match config.backend {
            crate::config::StoreBackend::Sled => Self::open(data_dir),
            crate::config::StoreBackend::Etcd => {
                Self::open_etcd(&EtcdOptions::from_config(config)?)
            }
        }
    }

    /// A store that lives in memory and vanishes on drop (tests, dry-run tools).
    ///
    /// # Errors
    /// [`StoreError::Open`] if sled cannot create its temporary files.
    pub fn temporary() -> Result<Self, StoreError> {
        Ok(Self::with_kv(Kv::Sled(sled_kv::SledKv::temporary()?), None))
    }

    fn with_kv(kv: Kv, path: Option<PathBuf>) -> Self {
        Self {
            kv,
            path,
            secret_keys: secrets::KeySlot::default(),
        }
    }

    /// Which backend this is (`sled` or `etcd`), for logs and metrics.
    #[must_use]
    pub fn backend(&self) -> &'static str {
        match self.kv {
            Kv::Sled(_) => "sled",
            Kv::Etcd(_) => "etcd",
        }
    }

    /// Whether the last read was served without etcd quorum, from one
    /// member's local copy (possibly behind); always false on sled. Writes
    /// are refused meanwhile.
    #[must_use]
    pub fn reads_stale(&self) -> bool {
        match &self.kv {
            Kv::Sled(_) => false,
            Kv::Etcd(e) => e.reads_stale(),
        }
    }

    /// Makes every acknowledged write durable. On sled, flushes take turns
    /// (sled 0.34's concurrent `flush_async` deadlocks, spacejam/sled#1308;
    /// see `sled_kv`); etcd has made a write durable on a quorum before it
    /// answers, so this is free there.
    ///
    /// # Errors
    /// [`StoreError::Io`] when the flush fails.
    pub async fn flush(&self) -> Result<(), StoreError> {
        self.kv.flush().await
    }

    /// Bytes used on disk (etcd: the database size one member reports).
    #[must_use]
    pub fn size_on_disk(&self) -> u64 {
        self.kv.size_on_disk()
    }

    // ===== devices =====

    /// Adds a device; with `replace` an existing one of the same name is
    /// overwritten (keeping its creation time).
    ///
    /// # Errors
    /// [`StoreError::DeviceExists`] when the name is taken and `replace` is off.
    pub fn put_device(&self, device: &Device, replace: bool) -> Result<Device, StoreError> {
        let key = device.name.as_bytes();
        let mut stored = device.clone();
        let prev = self.kv.get(trees::DEVICES, key)?;
        match &prev {
            Some(_) if !replace => {
                return Err(StoreError::DeviceExists {
                    name: device.name.clone(),
                });
            }
            Some(bytes) => {
                let old: Device = decode("device", key, bytes)?;
                stored.created_unix = old.created_unix;
            }
            None => stored.created_unix = now_unix_ms() / 1000,
        }
        let bytes = encode("device", &stored)?;
        // compare_and_swap so two concurrent adds cannot both succeed.
        if !self
            .kv
            .cas(trees::DEVICES, key, prev.as_deref(), Some(bytes))?
        {
            return Err(StoreError::DeviceExists {
                name: device.name.clone(),
            });
        }
        Ok(stored)
    }

    /// One device by name.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn device(&self, name: &str) -> Result<Option<Device>, StoreError> {
        self.kv
            .get(trees::DEVICES, name.as_bytes())?
            .map(|b| decode("device", name.as_bytes(), &b))
            .transpose()
    }

    /// Every device, by name.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn devices(&self) -> Result<BTreeMap<String, Device>, StoreError> {
        let mut out = BTreeMap::new();
        self.kv.scan(trees::DEVICES, Scan::All, &mut |k, v| {
            let d: Device = decode("device", k, v)?;
            out.insert(d.name.clone(), d);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Removes a device no service uses. Returns whether it existed.
    ///
    /// # Errors
    /// [`StoreError::DeviceInUse`] naming the services that target it.
    pub fn remove_device(&self, name: &str) -> Result<bool, StoreError> {
        let users: Vec<String> = self
            .services()?
            .into_iter()
            .filter(|s| s.spec.devices().contains(&name))
            .map(|s| s.key())
            .collect();
        if !users.is_empty() {
            return Err(StoreError::DeviceInUse {
                name: name.to_owned(),
                services: users,
            });
        }
        Ok(self.kv.remove(trees::DEVICES, name.as_bytes())?.is_some())
    }

    // ===== services =====

    /// One service.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn service(&self, tenant: &str, name: &str) -> Result<Option<StoredService>, StoreError> {
        let key = service_key(tenant, name);
        self.kv
            .get(trees::SERVICES, key.as_bytes())?
            .map(|b| decode("service", key.as_bytes(), &b))
            .transpose()
    }

    /// Every service, ordered by tenant then name.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn services(&self) -> Result<Vec<StoredService>, StoreError> {
        let mut out = Vec::new();
        self.kv.scan(trees::SERVICES, Scan::All, &mut |k, v| {
            out.push(decode("service", k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }

    /// Number of services per kind (for metrics).
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn services_per_kind(&self) -> Result<BTreeMap<Kind, usize>, StoreError> {
        let mut out: BTreeMap<Kind, usize> = Kind::ALL.into_iter().map(|k| (k, 0)).collect();
        for s in self.services()? {
            *out.entry(s.spec.kind()).or_default() += 1;
        }
        Ok(out)
    }

    /// Allocates the next transaction id.
    ///
    /// # Errors
    /// Storage failure.
    pub fn next_txn_id(&self) -> Result<u64, StoreError> {
        self.kv.generate_id()
    }

    /// Stores the new desired state of `specs` and the transaction that
    /// changed them in one atomic step, then flushes. Each service's
    /// generation increments.
    ///
    /// # Errors
    /// Storage failures; nothing is written then.
    pub async fn commit_apply(
        &self,
        specs: &[(ServiceSpec, String)],
        txn: &TxnRecord,
    ) -> Result<Vec<StoredService>, StoreError> {
        let now = now_unix_ms() / 1000;
        let txn_bytes = encode("transaction", txn)?;
        let stored = self.kv.transact(&[trees::SERVICES, trees::TXNS], |tx| {
            let mut out = Vec::with_capacity(specs.len());
            for (spec, api_version) in specs {
                let key = service_key(&spec.metadata.tenant, &spec.metadata.name);
                out.push(put_service(tx, &key, spec, api_version, txn.id, now)?);
            }
            tx.insert(trees::TXNS, &txn.id.to_be_bytes(), txn_bytes.clone())?;
            Ok(out)
        })?;
        self.flush().await?;
        Ok(stored)
    }

    /// Deletes a service and records the transaction atomically, then
    /// flushes. Returns the deleted service, `None` if it did not exist (and
    /// then nothing is written).
    ///
    /// # Errors
    /// Storage failures.
    pub async fn commit_delete(
        &self,
        tenant: &str,
        name: &str,
        txn: &TxnRecord,
    ) -> Result<Option<StoredService>, StoreError> {
        let key = service_key(tenant, name);
        let txn_bytes = encode("transaction", txn)?;
        let removed = self.kv.transact(&[trees::SERVICES, trees::TXNS], |tx| {
            let Some(prev) = tx.remove(trees::SERVICES, key.as_bytes())? else {
                return Ok(None);
            };
            tx.insert(trees::TXNS, &txn.id.to_be_bytes(), txn_bytes.clone())?;
            decode_tx("service", key.as_bytes(), Some(prev))
        })?;
        self.flush().await?;
        Ok(removed)
    }

    // ===== transactions =====

    /// Writes (or overwrites) a transaction record and flushes.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn put_txn(&self, txn: &TxnRecord) -> Result<(), StoreError> {
        // Journaled as a transaction: on etcd it carries the leader fence,
        // so only the leader starts or advances one.
        self.kv.insert_journal(
            trees::TXNS,
            &txn.id.to_be_bytes(),
            encode("transaction", txn)?,
        )?;
        self.flush().await
    }

    /// One transaction.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn txn(&self, id: u64) -> Result<Option<TxnRecord>, StoreError> {
        self.kv
            .get(trees::TXNS, &id.to_be_bytes())?
            .map(|b| decode("transaction", &id.to_be_bytes(), &b))
            .transpose()
    }

    /// Newest first, at most `limit`, optionally only those touching a
    /// service (`tenant/name` or bare name).
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn txns(&self, limit: usize, service: Option<&str>) -> Result<Vec<TxnRecord>, StoreError> {
        let mut out = Vec::new();
        if limit == 0 {
            return Ok(out);
        }
        self.kv.scan(trees::TXNS, Scan::Rev, &mut |k, v| {
            let t: TxnRecord = decode("transaction", k, v)?;
            let wanted = service.is_none_or(|s| {
                t.services
                    .iter()
                    .any(|x| x == s || x.rsplit_once('/').is_some_and(|(_, n)| n == s))
            });
            if wanted {
                out.push(t);
            }
            Ok(out.len() < limit)
        })?;
        Ok(out)
    }
}

impl Store {
    /// Visits transactions newest first, starting below `before` (from the
    /// newest when `None`), until `visit` breaks. History pages are built
    /// on this so a page never decodes more than it looks at.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn scan_txns_back(
        &self,
        before: Option<u64>,
        mut visit: impl FnMut(TxnRecord) -> std::ops::ControlFlow<()>,
    ) -> Result<(), StoreError> {
        let end = before.unwrap_or(u64::MAX).to_be_bytes();
        self.kv
            .scan(trees::TXNS, Scan::RevBefore(&end), &mut |k, v| {
                Ok(visit(decode("transaction", k, v)?).is_continue())
            })
    }
}

/// Writes a service's new desired state inside a transaction: the
/// generation follows the stored one, the creation time is kept.
fn put_service(
    tx: &mut TxView<'_>,
    key: &str,
    spec: &ServiceSpec,
    api_version: &str,
    txn_id: u64,
    now: i64,
) -> Result<StoredService, TxError> {
    let prev: Option<StoredService> = decode_tx(
        "service",
        key.as_bytes(),
        tx.get(trees::SERVICES, key.as_bytes())?,
    )?;
    let svc = StoredService {
        spec: spec.clone(),
        api_version: api_version.to_owned(),
        generation: prev.as_ref().map_or(1, |p| p.generation + 1),
        created_unix: prev.as_ref().map_or(now, |p| p.created_unix),
        updated_unix: now,
        last_transaction: txn_id,
    };
    tx.insert(trees::SERVICES, key.as_bytes(), encode("service", &svc)?)?;
    Ok(svc)
}

// ===== synced copies and journaled commits =====

impl Store {
    /// What Rampart last put on `device`.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn synced(&self, device: &str) -> Result<Option<SyncedDevice>, StoreError> {
        self.kv
            .get(trees::SYNCED, device.as_bytes())?
            .map(|b| decode("synced device", device.as_bytes(), &b))
            .transpose()
    }

    /// Every device with a synced copy.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn synced_devices(&self) -> Result<BTreeMap<String, SyncedDevice>, StoreError> {
        let mut out = BTreeMap::new();
        self.kv.scan(trees::SYNCED, Scan::All, &mut |k, v| {
            out.insert(
                String::from_utf8_lossy(k).into_owned(),
                decode("synced device", k, v)?,
            );
            Ok(true)
        })?;
        Ok(out)
    }

    /// Overwrites one synced copy (drift acceptance) and flushes.
    ///
    /// # Errors
    /// Storage failures.
    pub async fn put_synced(&self, device: &str, s: &SyncedDevice) -> Result<(), StoreError> {
        self.kv.insert(
            trees::SYNCED,
            device.as_bytes(),
            encode("synced device", s)?,
        )?;
        self.flush().await
    }

    /// Finishes a transaction atomically: the record, the services' new
    /// desired state (`None` deletes) and the devices' synced copies, then
    /// flushes. Returns the stored services.
    ///
    /// # Errors
    /// Storage failures; nothing is written then.
    pub async fn finish_txn(
        &self,
        txn: &TxnRecord,
        services: &[(String, Option<(ServiceSpec, String)>)],
        synced: &[(String, SyncedDevice)],
    ) -> Result<Vec<StoredService>, StoreError> {
        let now = now_unix_ms() / 1000;
        let txn_bytes = encode("transaction", txn)?;
        let synced_bytes: Vec<(String, Vec<u8>)> = synced
            .iter()
            .map(|(d, s)| encode("synced device", s).map(|b| (d.clone(), b)))
            .collect::<Result<_, _>>()?;
        let stored = self
            .kv
            .transact(&[trees::SERVICES, trees::TXNS, trees::SYNCED], |tx| {
                let mut out = Vec::new();
                for (key, new) in services {
                    let Some((spec, api_version)) = new else {
                        tx.remove(trees::SERVICES, key.as_bytes())?;
                        continue;
                    };
                    out.push(put_service(tx, key, spec, api_version, txn.id, now)?);
                }
                for (device, bytes) in &synced_bytes {
                    tx.insert(trees::SYNCED, device.as_bytes(), bytes.clone())?;
                }
                tx.insert(trees::TXNS, &txn.id.to_be_bytes(), txn_bytes.clone())?;
                Ok(out)
            })?;
        self.flush().await?;
        Ok(stored)
    }

    /// Transactions a crash left unfinished.
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn unfinished_txns(&self) -> Result<Vec<TxnRecord>, StoreError> {
        let mut out = Vec::new();
        self.kv.scan(trees::TXNS, Scan::All, &mut |k, v| {
            let t: TxnRecord = decode("transaction", k, v)?;
            if t.state == TxnState::Pending {
                out.push(t);
            }
            Ok(true)
        })?;
        Ok(out)
    }

    /// Committed transactions after `id` (oldest first).
    ///
    /// # Errors
    /// Read or decode failures.
    pub fn txns_after(&self, id: u64) -> Result<Vec<TxnRecord>, StoreError> {
        let mut out = Vec::new();
        let from = (id + 1).to_be_bytes();
        self.kv.scan(trees::TXNS, Scan::From(&from), &mut |k, v| {
            out.push(decode("transaction", k, v)?);
            Ok(true)
        })?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::device::Platform;

    fn device(name: &str) -> Device {
        Device {
            name: name.into(),
            platform: Platform::IosXe,
            address: "192.0.2.1:830".into(),
            credentials_ref: "env:PW".into(),
            labels: BTreeMap::new(),
            created_unix: 0,
        }
    }

    /// Many writers flushing at once (as concurrent enrollments do) must
    /// all finish: sled's own `flush_async` deadlocked here.
    #[test]
    fn concurrent_writes_and_flushes_all_finish() {
        let rt = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(4)
            .enable_all()
            .build()
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        rt.block_on(async {
            let mut tasks = tokio::task::JoinSet::new();
            for i in 0..400 {
                let s = s.clone();
                tasks.spawn(async move {
                    s.put_device(&device(&format!("d{i}")), false).unwrap();
                    s.flush().await.unwrap();
                });
            }
            let all = async {
                while let Some(r) = tasks.join_next().await {
                    r.unwrap();
                }
            };
            tokio::time::timeout(std::time::Duration::from_secs(30), all)
                .await
                .expect("concurrent flushes deadlocked");
        });
        assert_eq!(s.devices().unwrap().len(), 400);
    }

    #[test]
    fn device_add_is_exclusive_unless_replace() {
        let s = Store::temporary().unwrap();
        let first = s.put_device(&device("csr1"), false).unwrap();
        assert!(first.created_unix > 0);
        assert!(matches!(
            s.put_device(&device("csr1"), false),
            Err(StoreError::DeviceExists { name }) if name == "csr1"
        ));
        let mut changed = device("csr1");
        changed.address = "192.0.2.2".into();
        let replaced = s.put_device(&changed, true).unwrap();
        assert_eq!(replaced.created_unix, first.created_unix);
        assert_eq!(s.device("csr1").unwrap().unwrap().address, "192.0.2.2");
        assert!(s.remove_device("csr1").unwrap());
        assert!(!s.remove_device("csr1").unwrap());
    }

    #[test]
    fn txn_ids_are_monotonic_and_parse() {
        let s = Store::temporary().unwrap();
        let a = s.next_txn_id().unwrap();
        let b = s.next_txn_id().unwrap();
        assert!(b > a);
        assert_eq!(parse_txn_id(&txn_display_id(b)), Some(b));
        assert_eq!(parse_txn_id("17"), Some(17));
        assert_eq!(parse_txn_id("txn-x"), None);
    }
}
