//! The transaction engine: plan → journal → prepare everywhere → commit
//! everywhere → confirm, or undo everything that was touched.
//!
//! - **Plan** is the diff, per device, between the merged Rampart-owned
//!   configuration of every service on the device before and after the
//!   change. The "before" is the synced copy in the store (the documented
//!   policy: Rampart trusts what it last put there; `check-sync` finds
//!   out-of-band changes, `sync` resolves them).
//! - **Journal**: the record is written (and flushed) before each phase, so
//!   [`Engine::recover`] can finish the job after a crash.
//! - **Prepare** stages the edit in each device's candidate under a lock;
//!   **commit** is confirmed where the device supports it, so a controller
//!   that dies mid-way leaves devices to roll themselves back; elsewhere the
//!   inverse edit computed from the plan is replayed.
//! - Devices are worked in parallel (bounded) with a timeout each; a
//!   per-device lock serialises transactions on the same device only.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    path::PathBuf,
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Semaphore;

use super::{
    drift::{self, Difference},
    iosxe,
    participant::{IosXeParticipant, ParticipantError, Stage},
};
use crate::{
    compile::{self, CompileError, Format, Rendering, iosxe::IosXeConfig},
    model::{
        device::{Device, Platform},
        spec::ServiceSpec,
    },
    store::{
        DeviceStatus, DeviceTxn, PriorSpec, Store, StoreError, StoredService, SyncedDevice,
        TxnChange, TxnPhase, TxnRecord, TxnState, now_unix_ms,
    },
    transport::netconf::{Auth, HostKeyPolicy, SessionConfig},
};

/// Why a transaction failed. Every variant says where.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    /// A service did not compile for one of its targets.
    #[error("service {service}: {source}")]
    Compile {
        /// `tenant/name`.
        service: String,
        /// Cause.
        #[source]
        source: CompileError,
    },
    /// Two services want different values for the same device setting.
    #[error("device {device}: {source}")]
    Conflict {
        /// Device.
        device: String,
        /// Cause.
        #[source]
        source: iosxe::Conflict,
    },
    /// Devices refused or failed; nothing changed anywhere.
    #[error("transaction txn-{txn} failed, every device restored: {}", failures.join("; "))]
    Devices {
        /// The journaled transaction.
        txn: u64,
        /// One line per failed device, with the YANG paths it named.
        failures: Vec<String>,
    },
    /// The service or transaction does not exist.
    #[error("{what} not found")]
    NotFound {
        /// What was looked for.
        what: String,
    },
    /// A rollback would undo later work.
    #[error("cannot roll back txn-{txn}: later transactions changed the same services: {}", later.iter().map(|t| format!("txn-{t}")).collect::<Vec<_>>().join(", "))]
    RollbackConflict {
        /// The transaction to roll back.
        txn: u64,
        /// The later transactions in the way.
        later: Vec<u64>,
    },
    /// The transaction cannot be rolled back in its state.
    #[error("txn-{txn} is {state:?}; only committed transactions can be rolled back")]
    NotRollbackable {
        /// Transaction.
        txn: u64,
        /// Its state.
        state: TxnState,
    },
    /// A device's credentials could not be resolved.
    #[error("device {device}: credentials {reference:?}: {reason}")]
    Credentials {
        /// Device.
        device: String,
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// The device could not be read (drift check).
    #[error(transparent)]
    Participant(#[from] ParticipantError),
    /// A device's reply was not readable XML.
    #[error("device {device}: {source}")]
    Xml {
        /// Device.
        device: String,
        /// Cause.
        #[source]
        source: drift::XmlError,
    },
    /// Stored state could not be decoded (a bug or corruption).
    #[error("stored state of {what}: {message}")]
    Decode {
        /// What.
        what: String,
        /// Why.
        message: String,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Settings of the southbound side.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// OpenSSH known_hosts file for device host keys.
    pub known_hosts: PathBuf,
    /// Record unknown host keys instead of refusing them (labs only).
    pub trust_on_first_use: bool,
    /// Connect + SSH + hello timeout.
    pub connect_timeout: Duration,
    /// One RPC's timeout.
    pub rpc_timeout: Duration,
    /// Confirmed-commit timeout (device-side rollback if rampartd dies).
    pub confirm_timeout: Duration,
    /// Devices worked at once.
    pub max_parallel: usize,
    /// Time limit for one device's phase.
    pub device_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            known_hosts: PathBuf::from("known_hosts"),
            trust_on_first_use: false,
            connect_timeout: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(60),
            confirm_timeout: Duration::from_secs(120),
            max_parallel: 16,
            device_timeout: Duration::from_secs(120),
        }
    }
}

/// What a change asks for.
#[derive(Debug, Clone, Default)]
pub struct Change {
    /// Create or update services (spec, apiVersion).
    pub apply: Vec<(ServiceSpec, String)>,
    /// Delete services by `tenant/name`.
    pub delete: Vec<String>,
}

/// A planned transaction: everything it would do, nothing done yet.
#[derive(Debug, Clone)]
pub struct Planned {
    /// The journal record to be (state Pending, phase Planned).
    pub record: TxnRecord,
    /// New desired state per service key (`None` deletes).
    pub services: Vec<(String, Option<(ServiceSpec, String)>)>,
    /// The intent renderings of the services (agents, RESTCONF form).
    pub renderings: Vec<Rendering>,
    /// Synced copies after success.
    synced_next: Vec<(String, SyncedDevice)>,
}

impl Planned {
    /// Per-device native changes for dry-run output, then the intent
    /// renderings of targets that are not transactional devices.
    #[must_use]
    pub fn dry_run_renderings(&self) -> Vec<Rendering> {
        let mut out: Vec<Rendering> = self
            .record
            .devices
            .iter()
            .map(|d| Rendering {
                target: d.device.clone(),
                platform: d.platform.clone(),
                format: Format::NetconfXml,
                content: d.edit.clone(),
            })
            .collect();
        let changed: BTreeSet<&str> = self
            .record
            .devices
            .iter()
            .map(|d| d.device.as_str())
            .collect();
        out.extend(
            self.renderings
                .iter()
                .filter(|r| {
                    r.format != Format::NetconfXml
                        && !(r.format == Format::RestconfJson
                            && !changed.contains(r.target.as_str()))
                })
                .cloned(),
        );
        out
    }
}

/// A device's drift report.
#[derive(Debug, Clone)]
pub struct DriftReport {
    /// Device.
    pub device: String,
    /// Out-of-band differences (empty: in sync).
    pub differences: Vec<Difference>,
}

type Hook = Arc<dyn Fn(&TxnRecord) + Send + Sync>;

/// The transaction engine. Cheap to clone.
#[derive(Clone)]
pub struct Engine {
    store: Store,
    config: EngineConfig,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    before_commit: Option<Hook>,
}

fn decode(what: &str, v: &serde_json::Value) -> Result<IosXeConfig, EngineError> {
    iosxe::from_json(v).map_err(|e| EngineError::Decode {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

fn encode(what: &str, v: &IosXeConfig) -> Result<serde_json::Value, EngineError> {
    iosxe::to_json(v).map_err(|e| EngineError::Decode {
        what: what.to_owned(),
        message: e.to_string(),
    })
}

fn key_of(spec: &ServiceSpec) -> String {
    format!("{}/{}", spec.metadata.tenant, spec.metadata.name)
}

/// Splits `host:port` (default NETCONF port 830).
fn host_port(address: &str) -> (String, u16) {
    if let Some((h, p)) = address.rsplit_once(':') {
        if let Ok(port) = p.parse() {
            return (h.trim_matches(['[', ']']).to_owned(), port);
        }
    }
    (address.to_owned(), 830)
}

impl Engine {
    /// An engine over `store`.
    #[must_use]
    pub fn new(store: Store, config: EngineConfig) -> Self {
        Self {
            store,
            config,
            locks: Arc::default(),
            before_commit: None,
        }
    }

    /// Test and fault-injection hook: runs after every device is prepared
    /// and the commit phase is journaled, before any device commits.
    #[must_use]
    pub fn with_before_commit(mut self, hook: impl Fn(&TxnRecord) + Send + Sync + 'static) -> Self {
        self.before_commit = Some(Arc::new(hook));
        self
    }

    /// The store this engine journals into.
    #[must_use]
    pub fn store(&self) -> &Store {
        &self.store
    }

    fn session_config(&self, device: &Device) -> Result<SessionConfig, EngineError> {
        let cred_err = |reason: &str| EngineError::Credentials {
            device: device.name.clone(),
            reference: device.credentials_ref.clone(),
            reason: reason.to_owned(),
        };
        let secret = match device.credentials_ref.split_once(':') {
            Some(("env", var)) => std::env::var(var).map_err(|_| cred_err("variable not set"))?,
            Some(("file", path)) => std::fs::read_to_string(path)
                .map_err(|e| cred_err(&format!("cannot read: {e}")))?
                .lines()
                .next()
                .unwrap_or_default()
                .to_owned(),
            _ => {
                return Err(cred_err(
                    "expected env:VAR or file:PATH holding user:password",
                ));
            }
        };
        let (user, password) = secret
            .split_once(':')
            .ok_or_else(|| cred_err("value must be user:password"))?;
        let (host, port) = host_port(&device.address);
        let mut cfg = SessionConfig::new(
            host,
            port,
            user,
            Auth::Password(password.to_owned()),
            HostKeyPolicy {
                known_hosts: self.config.known_hosts.clone(),
                trust_on_first_use: self.config.trust_on_first_use,
            },
        );
        cfg.connect_timeout = self.config.connect_timeout;
        cfg.rpc_timeout = self.config.rpc_timeout;
        Ok(cfg)
    }

    fn device_lock(&self, device: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(device.to_owned()).or_default().clone()
    }

    // ===== plan =====

    /// Plans a change against the inventory and the synced copies. Pure
    /// apart from reading the store: nothing is written, no device touched.
    ///
    /// # Errors
    /// Compile errors, merge conflicts, unknown services.
    pub fn plan(&self, change: Change, author: &str) -> Result<Planned, EngineError> {
        let inventory = self.store.devices()?;
        let synced = self.store.synced_devices()?;
        let mut services: Vec<(String, Option<(ServiceSpec, String)>)> = Vec::new();
        let mut renderings = Vec::new();
        // Per device: contribution updates (service key → new config or None).
        let mut updates: BTreeMap<String, BTreeMap<String, Option<IosXeConfig>>> = BTreeMap::new();
        let operation = if change.apply.is_empty() {
            "delete"
        } else {
            "apply"
        };
        {
            {
                for (spec, api) in change.apply {
                    let key = key_of(&spec);
                    renderings.extend(compile::compile(&spec, &inventory).map_err(|source| {
                        EngineError::Compile {
                            service: key.clone(),
                            source,
                        }
                    })?);
                    let mut targeted = BTreeSet::new();
                    for name in spec.devices() {
                        let Some(device) = inventory.get(name) else {
                            continue;
                        };
                        if device.platform != Platform::IosXe {
                            continue;
                        }
                        let cfg = compile::iosxe::build(&spec, device).map_err(|e| {
                            EngineError::Compile {
                                service: key.clone(),
                                source: e.into(),
                            }
                        })?;
                        targeted.insert(name.to_owned());
                        updates
                            .entry(name.to_owned())
                            .or_default()
                            .insert(key.clone(), Some(cfg));
                    }
                    // Devices the previous version of the service used and this one does not.
                    for (device, s) in &synced {
                        if s.contributions.contains_key(&key) && !targeted.contains(device) {
                            updates
                                .entry(device.clone())
                                .or_default()
                                .insert(key.clone(), None);
                        }
                    }
                    services.push((key, Some((spec, api))));
                }
            }
            {
                for key in change.delete {
                    let (tenant, name) = key.split_once('/').unwrap_or(("", &key));
                    if self.store.service(tenant, name)?.is_none() {
                        return Err(EngineError::NotFound {
                            what: format!("service {key}"),
                        });
                    }
                    for (device, s) in &synced {
                        if s.contributions.contains_key(&key) {
                            updates
                                .entry(device.clone())
                                .or_default()
                                .insert(key.clone(), None);
                        }
                    }
                    services.push((key, None));
                }
            }
        }

        let mut devices = Vec::new();
        let mut synced_next = Vec::new();
        for (device, changes) in updates {
            let current = synced.get(&device).cloned().unwrap_or_default();
            let mut contributions: BTreeMap<String, IosXeConfig> = current
                .contributions
                .iter()
                .map(|(k, v)| {
                    decode(&format!("{device} contribution {k}"), v).map(|c| (k.clone(), c))
                })
                .collect::<Result<_, _>>()?;
            for (k, v) in changes {
                match v {
                    Some(c) => contributions.insert(k, c),
                    None => contributions.remove(&k),
                };
            }
            let prev = decode(&format!("{device} synced copy"), &current.merged)?;
            let next = iosxe::merge(&contributions).map_err(|source| EngineError::Conflict {
                device: device.clone(),
                source,
            })?;
            let contributions_json: BTreeMap<String, serde_json::Value> = contributions
                .iter()
                .map(|(k, v)| encode(k, v).map(|j| (k.clone(), j)))
                .collect::<Result<_, _>>()?;
            synced_next.push((
                device.clone(),
                SyncedDevice {
                    contributions: contributions_json.clone(),
                    merged: encode(&device, &next)?,
                    last_txn: 0,
                    accepted: None,
                },
            ));
            if iosxe::is_noop(&prev, &next) {
                continue;
            }
            devices.push(DeviceTxn {
                device: device.clone(),
                platform: Platform::IosXe.to_string(),
                prev: encode(&device, &prev)?,
                next: encode(&device, &next)?,
                contributions: contributions_json,
                edit: iosxe::edit_xml(&prev, &next),
                inverse: iosxe::edit_xml(&next, &prev),
                status: DeviceStatus::Planned,
                error: None,
                paths: Vec::new(),
            });
        }

        let mut prior = Vec::new();
        for (key, _) in &services {
            let (tenant, name) = key.split_once('/').unwrap_or(("", key));
            prior.push(PriorSpec {
                key: key.clone(),
                spec: self.store.service(tenant, name)?.map(|s| s.spec),
            });
        }
        let now = now_unix_ms();
        let record = TxnRecord {
            id: 0,
            state: TxnState::Pending,
            operation: operation.to_owned(),
            services: services.iter().map(|(k, _)| k.clone()).collect(),
            author: author.to_owned(),
            started_unix_ms: now,
            finished_unix_ms: None,
            changes: renderings
                .iter()
                .map(|r| TxnChange {
                    rendering: r.clone(),
                    error: None,
                })
                .collect(),
            error: None,
            phase: TxnPhase::Planned,
            devices,
            prior,
            rollback_of: None,
        };
        Ok(Planned {
            record,
            services,
            renderings,
            synced_next,
        })
    }

    // ===== execute =====

    /// Executes a plan: all-or-nothing across its devices.
    ///
    /// # Errors
    /// [`EngineError::Devices`] when any device failed (all restored, the
    /// failure journaled); store errors.
    pub async fn execute(
        &self,
        planned: Planned,
    ) -> Result<(TxnRecord, Vec<StoredService>), EngineError> {
        let Planned {
            mut record,
            services,
            synced_next,
            ..
        } = planned;
        record.id = self.store.next_txn_id()?;
        let synced_next: Vec<(String, SyncedDevice)> = synced_next
            .into_iter()
            .map(|(d, mut s)| {
                s.last_txn = record.id;
                (d, s)
            })
            .collect();

        // Per-device locks, always taken in name order (no deadlock).
        let names: BTreeSet<String> = record.devices.iter().map(|d| d.device.clone()).collect();
        let locks: Vec<_> = names.iter().map(|n| self.device_lock(n)).collect();
        let mut _guards = Vec::new();
        for l in &locks {
            _guards.push(l.clone().lock_owned().await);
        }

        if !record.devices.is_empty() {
            record.phase = TxnPhase::Preparing;
            self.store.put_txn(&record).await?;
            tracing::info!(txn = record.id, devices = ?names, "preparing");
            let inventory = self.store.devices()?;
            let mut parts = self.prepare_all(&mut record, &inventory).await;
            if record
                .devices
                .iter()
                .any(|d| d.status == DeviceStatus::Failed)
            {
                for p in parts.values_mut() {
                    p.abort().await;
                }
                for d in &mut record.devices {
                    if d.status == DeviceStatus::Prepared {
                        d.status = DeviceStatus::Aborted;
                    }
                }
                return Err(self.fail(record, "prepare").await?);
            }

            record.phase = TxnPhase::Committing;
            self.store.put_txn(&record).await?;
            if let Some(hook) = &self.before_commit {
                hook(&record);
            }
            self.commit_all(&mut record, &mut parts).await;
            if record
                .devices
                .iter()
                .any(|d| d.status == DeviceStatus::Failed)
            {
                self.undo_commits(&mut record, &mut parts).await;
                return Err(self.fail(record, "commit").await?);
            }
        }

        record.state = TxnState::Committed;
        record.phase = TxnPhase::Done;
        record.finished_unix_ms = Some(now_unix_ms());
        let stored = self
            .store
            .finish_txn(&record, &services, &synced_next)
            .await?;
        tracing::info!(txn = record.id, services = ?record.services, "committed");
        Ok((record, stored))
    }

    async fn prepare_all(
        &self,
        record: &mut TxnRecord,
        inventory: &BTreeMap<String, Device>,
    ) -> BTreeMap<String, IosXeParticipant> {
        let sem = Arc::new(Semaphore::new(self.config.max_parallel.max(1)));
        let mut tasks = tokio::task::JoinSet::new();
        for d in &record.devices {
            let Some(device) = inventory.get(&d.device).cloned() else {
                continue;
            };
            let (sem, edit, this) = (sem.clone(), d.edit.clone(), self.clone());
            let timeout = self.config.device_timeout;
            tasks.spawn(async move {
                let _permit = sem.acquire_owned().await;
                let name = device.name.clone();
                let res = tokio::time::timeout(timeout, async {
                    let cfg = this.session_config(&device).map_err(|e| e.to_string())?;
                    let mut p = IosXeParticipant::connect(&name, cfg, this.config.confirm_timeout)
                        .await
                        .map_err(|e| (e.to_string(), e.paths()))
                        .map_err(|(m, _)| m)?;
                    match p.prepare(edit).await {
                        Ok(()) => Ok(p),
                        Err(e) => {
                            p.abort().await;
                            Err(format!("{e}{}", paths_suffix(&e.paths())))
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| Err(format!("{name}: prepare timed out after {timeout:?}")));
                (name, res)
            });
        }
        let mut parts = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((name, res)) = joined else { continue };
            let Some(d) = record.devices.iter_mut().find(|d| d.device == name) else {
                continue;
            };
            match res {
                Ok(p) => {
                    d.status = DeviceStatus::Prepared;
                    parts.insert(name, p);
                }
                Err(e) => {
                    tracing::warn!(device = name, error = %e, "prepare failed");
                    d.status = DeviceStatus::Failed;
                    d.paths = extract_paths(&e);
                    d.error = Some(e);
                }
            }
        }
        for d in &mut record.devices {
            if d.status == DeviceStatus::Planned {
                d.status = DeviceStatus::Failed;
                d.error = Some(format!("{}: not in the inventory any more", d.device));
            }
        }
        parts
    }

    async fn commit_all(
        &self,
        record: &mut TxnRecord,
        parts: &mut BTreeMap<String, IosXeParticipant>,
    ) {
        let timeout = self.config.device_timeout;
        let mut tasks = tokio::task::JoinSet::new();
        for (name, mut p) in std::mem::take(parts) {
            tasks.spawn(async move {
                let res = tokio::time::timeout(timeout, p.commit())
                    .await
                    .unwrap_or_else(|_| Err(timeout_error(&name, "commit", timeout)));
                (name, p, res)
            });
        }
        while let Some(joined) = tasks.join_next().await {
            let Ok((name, p, res)) = joined else { continue };
            if let Some(d) = record.devices.iter_mut().find(|d| d.device == name) {
                match res {
                    Ok(()) => d.status = DeviceStatus::Committed,
                    Err(e) => {
                        tracing::warn!(device = name, error = %e, "commit failed");
                        d.status = DeviceStatus::Failed;
                        d.paths = e.paths();
                        d.error = Some(e.to_string());
                    }
                }
            }
            parts.insert(name, p);
        }
        if record
            .devices
            .iter()
            .any(|d| d.status == DeviceStatus::Failed)
        {
            return;
        }
        // Everyone committed: confirm. A device that fails to confirm rolls
        // itself back, so the others must be undone too.
        for (name, p) in parts.iter_mut() {
            if let Err(e) = p.confirm().await {
                if let Some(d) = record.devices.iter_mut().find(|d| &d.device == name) {
                    d.status = DeviceStatus::Failed;
                    d.error = Some(e.to_string());
                }
            }
        }
    }

    /// Restores every committed device of a failed commit phase: cancel the
    /// confirmed commit where one is pending, else replay the inverse edit.
    async fn undo_commits(
        &self,
        record: &mut TxnRecord,
        parts: &mut BTreeMap<String, IosXeParticipant>,
    ) {
        let inventory = self.store.devices().unwrap_or_default();
        for d in &mut record.devices {
            if d.status == DeviceStatus::Failed {
                if let Some(p) = parts.get_mut(&d.device) {
                    p.abort().await;
                }
                continue;
            }
            let restored = match parts.get_mut(&d.device) {
                Some(p) if p.stage() == Stage::CommittedUnconfirmed => p.cancel().await,
                Some(p) if p.stage() == Stage::Prepared => {
                    p.abort().await;
                    d.status = DeviceStatus::Aborted;
                    continue;
                }
                _ => false,
            };
            if restored {
                d.status = DeviceStatus::RolledBack;
                continue;
            }
            match self.compensate(&inventory, &d.device, &d.inverse).await {
                Ok(()) => d.status = DeviceStatus::RolledBack,
                Err(e) => {
                    tracing::error!(device = d.device, error = %e, "compensation failed");
                    d.error = Some(format!("NOT RESTORED: {e}"));
                }
            }
        }
    }

    async fn compensate(
        &self,
        inventory: &BTreeMap<String, Device>,
        device: &str,
        inverse: &str,
    ) -> Result<(), EngineError> {
        let d = inventory.get(device).ok_or_else(|| EngineError::NotFound {
            what: format!("device {device}"),
        })?;
        let cfg = self.session_config(d)?;
        let mut p = IosXeParticipant::connect(device, cfg, self.config.confirm_timeout).await?;
        p.apply_now(inverse.to_owned()).await?;
        Ok(())
    }

    async fn fail(&self, mut record: TxnRecord, phase: &str) -> Result<EngineError, EngineError> {
        let failures: Vec<String> = record
            .devices
            .iter()
            .filter_map(|d| d.error.as_ref().map(|e| format!("{}: {e}", d.device)))
            .collect();
        record.state = TxnState::Failed;
        record.phase = TxnPhase::Done;
        record.finished_unix_ms = Some(now_unix_ms());
        record.error = Some(format!("{phase} failed: {}", failures.join("; ")));
        self.store.put_txn(&record).await?;
        tracing::warn!(txn = record.id, phase, ?failures, "transaction failed");
        Ok(EngineError::Devices {
            txn: record.id,
            failures,
        })
    }

    // ===== recovery, rollback =====

    /// Finishes transactions a crash left pending: nothing committed yet →
    /// failed; commit phase reached → every device restored with its
    /// inverse edit (idempotent), then recorded as failed.
    ///
    /// # Errors
    /// Store failures.
    pub async fn recover(&self) -> Result<usize, EngineError> {
        let pending = self.store.unfinished_txns()?;
        let inventory = self.store.devices()?;
        let n = pending.len();
        for mut t in pending {
            let reason = if t.phase == TxnPhase::Committing {
                for d in &mut t.devices {
                    match self.compensate(&inventory, &d.device, &d.inverse).await {
                        Ok(()) => d.status = DeviceStatus::RolledBack,
                        Err(e) => d.error = Some(format!("NOT RESTORED (run check-sync): {e}")),
                    }
                }
                "rampartd restarted during the commit phase; devices restored"
            } else {
                for d in &mut t.devices {
                    if d.status == DeviceStatus::Prepared {
                        d.status = DeviceStatus::Aborted;
                    }
                }
                "rampartd restarted before the commit phase; no device was changed"
            };
            tracing::warn!(txn = t.id, reason, "recovered unfinished transaction");
            t.state = TxnState::Failed;
            t.phase = TxnPhase::Done;
            t.error = Some(reason.to_owned());
            t.finished_unix_ms = Some(now_unix_ms());
            self.store.put_txn(&t).await?;
        }
        Ok(n)
    }

    /// Plans undoing committed transaction `id`: its services go back to
    /// their prior specs. Refused when a later committed transaction
    /// changed any of the same services.
    ///
    /// # Errors
    /// Unknown id, wrong state, conflicting later transactions.
    pub fn plan_rollback(&self, id: u64, author: &str) -> Result<Planned, EngineError> {
        let t = self.store.txn(id)?.ok_or_else(|| EngineError::NotFound {
            what: format!("transaction txn-{id}"),
        })?;
        if t.state != TxnState::Committed {
            return Err(EngineError::NotRollbackable {
                txn: id,
                state: t.state,
            });
        }
        let mine: BTreeSet<&String> = t.services.iter().collect();
        let later: Vec<u64> = self
            .store
            .txns_after(id)?
            .into_iter()
            .filter(|l| {
                l.state == TxnState::Committed && l.services.iter().any(|s| mine.contains(s))
            })
            .map(|l| l.id)
            .collect();
        if !later.is_empty() {
            return Err(EngineError::RollbackConflict { txn: id, later });
        }
        let mut applies = Vec::new();
        let mut deletes = Vec::new();
        for p in &t.prior {
            match &p.spec {
                Some(spec) => {
                    applies.push((spec.clone(), crate::model::spec::API_VERSION.to_owned()))
                }
                None => deletes.push(p.key.clone()),
            }
        }
        let mut planned = self.plan(
            Change {
                apply: applies,
                delete: deletes,
            },
            author,
        )?;
        planned.record.operation = "rollback".to_owned();
        planned.record.rollback_of = Some(id);
        Ok(planned)
    }

    /// Executes a rollback plan and marks the original rolled back.
    ///
    /// # Errors
    /// As [`Engine::execute`].
    pub async fn rollback(&self, id: u64, author: &str) -> Result<TxnRecord, EngineError> {
        let planned = self.plan_rollback(id, author)?;
        let (record, _) = self.execute(planned).await?;
        if let Some(mut original) = self.store.txn(id)? {
            original.state = TxnState::RolledBack;
            self.store.put_txn(&original).await?;
        }
        Ok(record)
    }

    // ===== drift =====

    /// Compares each device's running configuration with what Rampart
    /// believes it put there.
    ///
    /// # Errors
    /// Unknown device, unreachable device, unreadable replies.
    pub async fn check_sync(&self, only: Option<&str>) -> Result<Vec<DriftReport>, EngineError> {
        let inventory = self.store.devices()?;
        let mut out = Vec::new();
        for (name, synced) in self.store.synced_devices()? {
            if only.is_some_and(|o| o != name) {
                continue;
            }
            let device = inventory.get(&name).ok_or_else(|| EngineError::NotFound {
                what: format!("device {name}"),
            })?;
            let merged = decode(&format!("{name} synced copy"), &synced.merged)?;
            let actual = self.read_owned(device).await?;
            let expected_xml = match &synced.accepted {
                Some(accepted) => accepted.clone(),
                None => crate::compile::iosxe::tree::to_netconf_config(
                    &merged.to_tree(false),
                    crate::compile::iosxe::tree::Module::Native,
                ),
            };
            let expected = drift::parse(&expected_xml).map_err(|source| EngineError::Xml {
                device: name.clone(),
                source,
            })?;
            let root = |e: &drift::El| {
                e.at(&["config", "native"])
                    .or_else(|| e.at(&["data", "native"]))
                    .or_else(|| e.child("native"))
                    .cloned()
            };
            let differences = match (root(&expected), root(&actual)) {
                (Some(e), Some(a)) => drift::compare(&e, &a, &["extended", "named-acl"]),
                (Some(e), None) if !e.children.is_empty() => vec![Difference {
                    path: "/native".to_owned(),
                    what: "missing on the device".to_owned(),
                }],
                _ => Vec::new(),
            };
            out.push(DriftReport {
                device: name,
                differences,
            });
        }
        if let Some(o) = only {
            if out.is_empty() {
                return Err(EngineError::NotFound {
                    what: format!("synced device {o}"),
                });
            }
        }
        Ok(out)
    }

    async fn read_owned(&self, device: &Device) -> Result<drift::El, EngineError> {
        let cfg = self.session_config(device)?;
        let mut p =
            IosXeParticipant::connect(&device.name, cfg, self.config.confirm_timeout).await?;
        let filter = format!(
            "<native xmlns=\"{}\"><ip><access-list/></ip><ipv6><access-list/></ipv6><interface/><router/></native>",
            crate::compile::iosxe::tree::Module::Native.namespace()
        );
        let xml = p.running(filter).await?;
        drift::parse(&xml).map_err(|source| EngineError::Xml {
            device: device.name.clone(),
            source,
        })
    }

    /// Re-deploys Rampart's intended configuration to a drifted device.
    ///
    /// # Errors
    /// Device failures.
    pub async fn sync_to_device(&self, name: &str) -> Result<(), EngineError> {
        let lock = self.device_lock(name);
        let _guard = lock.lock().await;
        let synced = self
            .store
            .synced(name)?
            .ok_or_else(|| EngineError::NotFound {
                what: format!("synced device {name}"),
            })?;
        let merged = decode(&format!("{name} synced copy"), &synced.merged)?;
        let inventory = self.store.devices()?;
        let edit = iosxe::edit_xml(&IosXeConfig::default(), &merged);
        self.compensate(&inventory, name, &edit).await?;
        if synced.accepted.is_some() {
            self.store
                .put_synced(
                    name,
                    &SyncedDevice {
                        accepted: None,
                        ..synced
                    },
                )
                .await?;
        }
        Ok(())
    }

    /// Accepts the device's current rendering of Rampart's objects as the
    /// drift baseline (the next apply re-asserts the intent).
    ///
    /// # Errors
    /// Device failures.
    pub async fn sync_from_device(&self, name: &str) -> Result<(), EngineError> {
        let synced = self
            .store
            .synced(name)?
            .ok_or_else(|| EngineError::NotFound {
                what: format!("synced device {name}"),
            })?;
        let inventory = self.store.devices()?;
        let device = inventory.get(name).ok_or_else(|| EngineError::NotFound {
            what: format!("device {name}"),
        })?;
        let cfg = self.session_config(device)?;
        let mut p = IosXeParticipant::connect(name, cfg, self.config.confirm_timeout).await?;
        let filter = format!(
            "<native xmlns=\"{}\"><ip><access-list/></ip><ipv6><access-list/></ipv6><interface/><router/></native>",
            crate::compile::iosxe::tree::Module::Native.namespace()
        );
        let xml = p.running(filter).await?;
        self.store
            .put_synced(
                name,
                &SyncedDevice {
                    accepted: Some(xml),
                    ..synced
                },
            )
            .await?;
        Ok(())
    }
}

fn paths_suffix(paths: &[String]) -> String {
    if paths.is_empty() {
        String::new()
    } else {
        format!(" [paths: {}]", paths.join(", "))
    }
}

fn extract_paths(msg: &str) -> Vec<String> {
    msg.split_once("[paths: ")
        .and_then(|(_, rest)| rest.strip_suffix(']'))
        .map(|s| s.split(", ").map(str::to_owned).collect())
        .unwrap_or_default()
}

fn timeout_error(device: &str, stage: &'static str, after: Duration) -> ParticipantError {
    ParticipantError {
        device: device.to_owned(),
        stage,
        source: crate::transport::netconf::NetconfError::Timeout {
            what: stage.to_owned(),
            after,
        },
    }
}
