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
    sync::{Arc, Mutex},
};

use tokio::sync::Semaphore;

use crate::{
    compile::{self, CompileError},
    model::{
        device::{Device, Platform},
        spec::ServiceSpec,
    },
    platforms::{
        self,
        agent::{AGENT_PLATFORM, AgentEdit, AgentParticipant, HostFabric, Target},
        drift::Difference,
        driver::{
            Committed, Conflict, DeviceError, Participant, PlatformDriver, with_stored_credentials,
        },
    },
    store::{
        DeviceStatus, DeviceTxn, PriorSpec, Store, StoreError, StoredService, SyncedDevice,
        TxnChange, TxnPhase, TxnRecord, TxnState, now_unix_ms,
    },
    wire::{Format, Rendering, edit::Edit},
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
        source: Conflict,
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
    /// A device could not be reached or read.
    #[error(transparent)]
    Device(#[from] DeviceError),
    /// The device's platform has no transactional driver.
    #[error("device {device}: no transaction driver for platform {platform}")]
    NoDriver {
        /// Device.
        device: String,
        /// Platform word.
        platform: String,
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

/// Settings of the southbound side: the platforms' sessions and the
/// engine's pacing of them (one type, defined with the platforms).
pub use crate::platforms::Settings as EngineConfig;

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
    /// Per-target native changes for dry-run output (see [`targets_view`]).
    #[must_use]
    pub fn dry_run_renderings(&self) -> Vec<Rendering> {
        targets_view(&self.record)
            .into_iter()
            .map(|(r, _)| r)
            .collect()
    }
}

/// A journaled participant's change as a rendering: the native edit in its
/// platform's format.
#[must_use]
pub fn device_rendering(d: &DeviceTxn) -> Rendering {
    Rendering {
        target: d.device.clone(),
        platform: d.platform.clone(),
        format: d
            .edit
            .format()
            .unwrap_or(match Platform::parse(&d.platform) {
                // Text journaled by an earlier release: its platform's format.
                _ if d.platform == AGENT_PLATFORM => Format::AgentPolicy,
                Some(Platform::IosXe) => Format::NetconfXml,
                Some(Platform::Asa) => Format::Cli,
                _ => Format::Http,
            }),
        content: d.edit.to_string(),
    }
}

/// What a transaction does per target, with each target's error: every
/// participant's native change (devices, and agents as `agent/<id>`),
/// then, when no agent takes part, the host policy each host selector
/// would get (so a dry-run shows host intent before any agent enrolled).
#[must_use]
pub fn targets_view(t: &TxnRecord) -> Vec<(Rendering, Option<String>)> {
    let agents = t.devices.iter().any(|d| d.platform == AGENT_PLATFORM);
    t.devices
        .iter()
        .map(|d| (device_rendering(d), d.error.clone()))
        .chain(
            t.changes
                .iter()
                .filter(|c| !agents && c.rendering.format == Format::AgentPolicy)
                .map(|c| (c.rendering.clone(), c.error.clone())),
        )
        .collect()
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
    drivers: Arc<BTreeMap<Platform, Arc<dyn PlatformDriver>>>,
    locks: Arc<Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>>,
    before_commit: Option<Hook>,
    hosts: Option<Arc<dyn HostFabric>>,
}

fn key_of(spec: &ServiceSpec) -> String {
    format!("{}/{}", spec.metadata.tenant, spec.metadata.name)
}

fn not_found(what: String) -> EngineError {
    EngineError::NotFound { what }
}

impl Engine {
    /// An engine over `store` with the built-in platform drivers.
    #[must_use]
    pub fn new(store: Store, config: EngineConfig) -> Self {
        let drivers = platforms::drivers(&config);
        Self {
            store,
            config,
            drivers: Arc::new(drivers),
            locks: Arc::default(),
            before_commit: None,
            hosts: None,
        }
    }

    /// Adds or replaces the driver of a platform.
    #[must_use]
    pub fn with_driver(mut self, platform: Platform, driver: Arc<dyn PlatformDriver>) -> Self {
        Arc::make_mut(&mut self.drivers).insert(platform, driver);
        self
    }

    /// Makes connected host agents transaction participants.
    #[must_use]
    pub fn with_hosts(mut self, hosts: Arc<dyn HostFabric>) -> Self {
        self.hosts = Some(hosts);
        self
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

    fn driver(&self, device: &Device) -> Result<Arc<dyn PlatformDriver>, EngineError> {
        self.drivers
            .get(&device.platform)
            .cloned()
            .ok_or_else(|| EngineError::NoDriver {
                device: device.name.clone(),
                platform: device.platform.to_string(),
            })
    }

    fn device_lock(&self, device: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut map = self
            .locks
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(device.to_owned()).or_default().clone()
    }

    async fn connect(
        &self,
        inventory: &BTreeMap<String, Device>,
        name: &str,
    ) -> Result<Box<dyn Participant>, EngineError> {
        if let Target::Agent(agent) = Target::of(name) {
            let hosts = self
                .hosts
                .clone()
                .ok_or_else(|| not_found(format!("host fabric for {name}")))?;
            return Ok(Box::new(AgentParticipant::new(
                hosts,
                agent.to_owned(),
                self.config.device_timeout,
            )));
        }
        let device = inventory
            .get(name)
            .ok_or_else(|| not_found(format!("device {name}")))?;
        self.connect_device(device).await
    }

    /// Connects with the device's stored credentials when it has any.
    async fn connect_device(&self, device: &Device) -> Result<Box<dyn Participant>, EngineError> {
        let stored = self.store.device_credentials(&device.name).map_err(|e| {
            EngineError::Device(DeviceError {
                device: device.name.clone(),
                stage: "credentials".to_owned(),
                message: e.to_string(),
                paths: Vec::new(),
            })
        })?;
        let stored = stored.map(|s| {
            let secret = if s.password.is_empty() {
                s.api_key.clone()
            } else {
                s.password.clone()
            };
            (s.username.clone(), secret)
        });
        let driver = self.driver(device)?;
        Ok(with_stored_credentials(stored, driver.connect(device)).await?)
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
        // Per device: contribution updates (service key → new state or None).
        let mut updates: BTreeMap<String, BTreeMap<String, Option<serde_json::Value>>> =
            BTreeMap::new();
        let operation = if change.apply.is_empty() {
            "delete"
        } else {
            "apply"
        };
        for (spec, api) in change.apply {
            let key = key_of(&spec);
            let compile_err = |source| EngineError::Compile {
                service: key.clone(),
                source,
            };
            // Each target is built once, by its platform; only host intent
            // is kept as renderings (dry-run shows it before any agent
            // enrolled).
            renderings.extend(compile::hosts(&spec).map_err(compile_err)?);
            let mut targeted = BTreeSet::new();
            for name in spec.devices() {
                let device = compile::target(&inventory, name).map_err(compile_err)?;
                let state = self
                    .driver(device)?
                    .contribution(&spec, device)
                    .map_err(compile_err)?;
                targeted.insert(name.to_owned());
                updates
                    .entry(name.to_owned())
                    .or_default()
                    .insert(key.clone(), Some(state));
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
        for key in change.delete {
            let (tenant, name) = key.split_once('/').unwrap_or(("", &key));
            if self.store.service(tenant, name)?.is_none() {
                return Err(not_found(format!("service {key}")));
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

        let mut devices = Vec::new();
        let mut synced_next = Vec::new();
        for (name, changes) in updates {
            let device = inventory
                .get(&name)
                .ok_or_else(|| not_found(format!("device {name}")))?;
            let driver = self.driver(device)?;
            let current = synced.get(&name).cloned().unwrap_or_default();
            let mut contributions = current.contributions.clone();
            for (k, v) in changes {
                match v {
                    Some(c) => contributions.insert(k, c),
                    None => contributions.remove(&k),
                };
            }
            let next = driver
                .merge(&contributions)
                .map_err(|source| EngineError::Conflict {
                    device: name.clone(),
                    source,
                })?;
            let decode_err = |message| EngineError::Decode {
                what: format!("device {name}"),
                message,
            };
            let edit = driver.edit(&current.merged, &next).map_err(decode_err)?;
            let inverse = driver.edit(&next, &current.merged).map_err(decode_err)?;
            synced_next.push((
                name.clone(),
                SyncedDevice {
                    contributions: contributions.clone(),
                    merged: next.clone(),
                    last_txn: 0,
                    accepted: None,
                },
            ));
            let Some(edit) = edit else { continue };
            let inverse = inverse.unwrap_or_else(|| edit.nothing_like());
            devices.push(DeviceTxn {
                device: name.clone(),
                platform: device.platform.to_string(),
                prev: current.merged.clone(),
                next,
                contributions,
                edit,
                inverse,
                status: DeviceStatus::Planned,
                error: None,
                paths: Vec::new(),
            });
        }

        devices.extend(self.plan_hosts(&services)?);

        let mut prior = Vec::new();
        for (key, _) in &services {
            let (tenant, name) = key.split_once('/').unwrap_or(("", key));
            prior.push(PriorSpec {
                key: key.clone(),
                spec: self.store.service(tenant, name)?.map(|s| s.spec),
            });
        }
        let record = TxnRecord {
            id: 0,
            state: TxnState::Pending,
            operation: operation.to_owned(),
            services: services.iter().map(|(k, _)| k.clone()).collect(),
            author: author.to_owned(),
            started_unix_ms: now_unix_ms(),
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

    /// The connected agents whose host policy the change moves, as
    /// transaction participants.
    fn plan_hosts(
        &self,
        services: &[(String, Option<(ServiceSpec, String)>)],
    ) -> Result<Vec<DeviceTxn>, EngineError> {
        let Some(hosts) = &self.hosts else {
            return Ok(Vec::new());
        };
        let before = self.store.services()?;
        let mut after: BTreeMap<String, StoredService> =
            before.iter().map(|s| (s.key(), s.clone())).collect();
        for (key, next) in services {
            match next {
                Some((spec, api)) => {
                    let now = now_unix_ms() / 1000;
                    let entry = after.entry(key.clone()).or_insert_with(|| StoredService {
                        spec: spec.clone(),
                        api_version: api.clone(),
                        generation: 0,
                        created_unix: now,
                        updated_unix: now,
                        last_transaction: 0,
                    });
                    entry.spec = spec.clone();
                }
                None => {
                    after.remove(key);
                }
            }
        }
        let after: Vec<StoredService> = after.into_values().collect();
        let plans = hosts
            .plan(&before, &after)
            .map_err(|message| EngineError::Decode {
                what: "host policies".to_owned(),
                message,
            })?;
        let json = |p: &rampart_proto::v1::HostPolicy| {
            serde_json::to_value(p).unwrap_or(serde_json::Value::Null)
        };
        Ok(plans
            .into_iter()
            .map(|p| DeviceTxn {
                device: Target::agent_name(&p.agent_id),
                platform: AGENT_PLATFORM.to_owned(),
                prev: json(&p.prev),
                next: json(&p.next),
                contributions: BTreeMap::new(),
                edit: Edit::HostPolicy(AgentEdit::new(&p, &p.prev, &p.next)),
                inverse: Edit::HostPolicy(AgentEdit::new(&p, &p.next, &p.prev)),
                status: DeviceStatus::Planned,
                error: None,
                paths: Vec::new(),
            })
            .collect())
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
        let mut guards = Vec::new();
        for n in &names {
            guards.push(self.device_lock(n).lock_owned().await);
        }
        // Agents in this transaction are left alone by the fleet's
        // background convergence until the outcome is stored.
        let _held = self.hosts.clone().map(|h| {
            let agents: Vec<String> = names
                .iter()
                .filter_map(|n| match Target::of(n) {
                    Target::Agent(a) => Some(a.to_owned()),
                    Target::Device(_) => None,
                })
                .collect();
            h.hold(&agents, true);
            HoldGuard(h, agents)
        });

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
            let committed = self.commit_all(&mut record, &mut parts).await;
            if record
                .devices
                .iter()
                .any(|d| d.status == DeviceStatus::Failed)
            {
                self.undo_commits(&mut record, &mut parts, &committed, &inventory)
                    .await;
                return Err(self.fail(record, "commit").await?);
            }
        }
        drop(guards);

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
    ) -> BTreeMap<String, Box<dyn Participant>> {
        let sem = Arc::new(Semaphore::new(self.config.max_parallel.max(1)));
        let timeout = self.config.device_timeout;
        let mut tasks = tokio::task::JoinSet::new();
        for d in &record.devices {
            let (sem, edit, name, this, inventory) = (
                sem.clone(),
                d.edit.clone(),
                d.device.clone(),
                self.clone(),
                inventory.clone(),
            );
            tasks.spawn(async move {
                // Agents are cheap to stage (one message each on a live
                // session): only devices count against the bound.
                let _permit = if matches!(Target::of(&name), Target::Agent(_)) {
                    None
                } else {
                    sem.acquire_owned().await.ok()
                };
                let res = tokio::time::timeout(timeout, async {
                    let mut p = this
                        .connect(&inventory, &name)
                        .await
                        .map_err(|e| (e.to_string(), Vec::new()))?;
                    match p.prepare(&edit).await {
                        Ok(()) => Ok(p),
                        Err(e) => {
                            p.abort().await;
                            Err((e.to_string(), e.paths))
                        }
                    }
                })
                .await
                .unwrap_or_else(|_| {
                    Err((
                        format!("{name}: prepare timed out after {timeout:?}"),
                        Vec::new(),
                    ))
                });
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
                Err((e, paths)) => {
                    tracing::warn!(device = name, error = %e, "prepare failed");
                    d.status = DeviceStatus::Failed;
                    d.error = Some(if paths.is_empty() {
                        e
                    } else {
                        format!("{e} [paths: {}]", paths.join(", "))
                    });
                    d.paths = paths;
                }
            }
        }
        for d in &mut record.devices {
            if d.status == DeviceStatus::Planned {
                d.status = DeviceStatus::Failed;
                d.error = Some(format!("{}: prepare did not finish", d.device));
            }
        }
        parts
    }

    /// Commits everywhere, then confirms. Returns how each device committed.
    async fn commit_all(
        &self,
        record: &mut TxnRecord,
        parts: &mut BTreeMap<String, Box<dyn Participant>>,
    ) -> BTreeMap<String, Committed> {
        let timeout = self.config.device_timeout;
        let mut tasks = tokio::task::JoinSet::new();
        for (name, mut p) in std::mem::take(parts) {
            tasks.spawn(async move {
                let res = tokio::time::timeout(timeout, p.commit())
                    .await
                    .unwrap_or_else(|_| {
                        Err(DeviceError {
                            device: name.clone(),
                            stage: "commit".to_owned(),
                            message: format!("timed out after {timeout:?}"),
                            paths: Vec::new(),
                        })
                    });
                (name, p, res)
            });
        }
        let mut committed = BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            let Ok((name, p, res)) = joined else { continue };
            if let Some(d) = record.devices.iter_mut().find(|d| d.device == name) {
                match res {
                    Ok(how) => {
                        d.status = DeviceStatus::Committed;
                        committed.insert(name.clone(), how);
                    }
                    Err(e) => {
                        tracing::warn!(device = name, error = %e, "commit failed");
                        d.status = DeviceStatus::Failed;
                        d.paths.clone_from(&e.paths);
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
            return committed;
        }
        // Everyone committed: confirm. A device that fails to confirm rolls
        // itself back, so the others must be undone too.
        for (name, p) in parts.iter_mut() {
            if let Err(e) = p.confirm().await {
                if let Some(d) = record.devices.iter_mut().find(|d| &d.device == name) {
                    d.status = DeviceStatus::Failed;
                    d.error = Some(e.to_string());
                }
                committed.remove(name);
            } else {
                committed.insert(name.clone(), Committed::Final);
            }
        }
        committed
    }

    /// Restores every device a failed commit phase changed: cancel where the
    /// commit is unconfirmed, else replay the inverse edit.
    async fn undo_commits(
        &self,
        record: &mut TxnRecord,
        parts: &mut BTreeMap<String, Box<dyn Participant>>,
        committed: &BTreeMap<String, Committed>,
        inventory: &BTreeMap<String, Device>,
    ) {
        for d in &mut record.devices {
            let how = committed.get(&d.device).copied();
            let Some(p) = parts.get_mut(&d.device) else {
                if how.is_none() {
                    continue;
                }
                // Committed but the session is gone: compensate below.
                self.restore(inventory, d).await;
                continue;
            };
            if how.is_none() {
                p.abort().await;
                if d.status != DeviceStatus::Failed {
                    d.status = DeviceStatus::Aborted;
                }
                continue;
            }
            if how == Some(Committed::Unconfirmed) && p.cancel().await {
                d.status = DeviceStatus::RolledBack;
                continue;
            }
            self.restore(inventory, d).await;
        }
    }

    /// Replays a device's inverse edit, recording the outcome.
    async fn restore(&self, inventory: &BTreeMap<String, Device>, d: &mut DeviceTxn) {
        match self.compensate(inventory, &d.device, &d.inverse).await {
            Ok(()) => d.status = DeviceStatus::RolledBack,
            Err(e) => {
                tracing::error!(device = d.device, error = %e, "compensation failed");
                d.error = Some(format!("NOT RESTORED: {e}"));
            }
        }
    }

    async fn compensate(
        &self,
        inventory: &BTreeMap<String, Device>,
        device: &str,
        inverse: &Edit,
    ) -> Result<(), EngineError> {
        let mut p = self.connect(inventory, device).await?;
        p.apply_now(inverse).await?;
        Ok(())
    }

    async fn fail(&self, mut record: TxnRecord, phase: &str) -> Result<EngineError, EngineError> {
        let failures: Vec<String> = record
            .devices
            .iter()
            .filter_map(|d| {
                d.error.as_ref().map(|e| {
                    if e.starts_with(&d.device) {
                        e.clone()
                    } else {
                        format!("{}: {e}", d.device)
                    }
                })
            })
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
    /// failed; commit phase reached → every device that holds the change is
    /// restored with its inverse edit, then the transaction is recorded as
    /// failed.
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
                    match self.restore_if_committed(&inventory, d).await {
                        Ok(true) => d.status = DeviceStatus::RolledBack,
                        Ok(false) => d.status = DeviceStatus::Aborted,
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

    /// Replays a device's inverse edit if the device holds the transaction's
    /// result (agents: the fleet re-pushes the stored services' policy, which
    /// never includes an unfinished transaction, when they connect); a device whose commit never happened (or rolled itself back)
    /// is left alone. Returns whether it was restored.
    async fn restore_if_committed(
        &self,
        inventory: &BTreeMap<String, Device>,
        d: &DeviceTxn,
    ) -> Result<bool, EngineError> {
        if let Target::Agent(_) = Target::of(&d.device) {
            tracing::info!(agent = d.device, "host converges to the stored policy");
            return Ok(d.status == DeviceStatus::Committed);
        }
        let device = inventory
            .get(&d.device)
            .ok_or_else(|| not_found(format!("device {}", d.device)))?;
        let driver = self.driver(device)?;
        let mut p = self.connect_device(device).await?;
        let actual = p.read().await?;
        let at_next = driver
            .drift(&d.next, None, &actual)
            .map_err(|message| EngineError::Decode {
                what: format!("device {} reply", d.device),
                message,
            })?
            .is_empty();
        if !at_next {
            return Ok(false);
        }
        p.apply_now(&d.inverse).await?;
        Ok(true)
    }

    /// Plans undoing committed transaction `id`: its services go back to
    /// their prior specs. Refused when a later committed transaction
    /// changed any of the same services.
    ///
    /// # Errors
    /// Unknown id, wrong state, conflicting later transactions.
    pub fn plan_rollback(&self, id: u64, author: &str) -> Result<Planned, EngineError> {
        let t = self
            .store
            .txn(id)?
            .ok_or_else(|| not_found(format!("transaction txn-{id}")))?;
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
        let mut change = Change::default();
        for p in &t.prior {
            match &p.spec {
                Some(spec) => change
                    .apply
                    .push((spec.clone(), crate::model::spec::API_VERSION.to_owned())),
                None => change.delete.push(p.key.clone()),
            }
        }
        let mut planned = self.plan(change, author)?;
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
            let device = inventory
                .get(&name)
                .ok_or_else(|| not_found(format!("device {name}")))?;
            let driver = self.driver(device)?;
            let actual = self.connect_device(device).await?.read().await?;
            let differences = driver
                .drift(&synced.merged, synced.accepted.as_deref(), &actual)
                .map_err(|message| EngineError::Decode {
                    what: format!("device {name} reply"),
                    message,
                })?;
            out.push(DriftReport {
                device: name,
                differences,
            });
        }
        if let Some(o) = only
            && out.is_empty()
        {
            return Err(not_found(format!("device {o} with Rampart configuration")));
        }
        Ok(out)
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
            .ok_or_else(|| not_found(format!("device {name} with Rampart configuration")))?;
        let inventory = self.store.devices()?;
        let device = inventory
            .get(name)
            .ok_or_else(|| not_found(format!("device {name}")))?;
        let edit = self
            .driver(device)?
            .edit(&serde_json::Value::Null, &synced.merged)
            .map_err(|message| EngineError::Decode {
                what: format!("device {name}"),
                message,
            })?;
        if let Some(edit) = edit {
            self.compensate(&inventory, name, &edit).await?;
        }
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
            .ok_or_else(|| not_found(format!("device {name} with Rampart configuration")))?;
        let inventory = self.store.devices()?;
        let actual = self.connect(&inventory, name).await?.read().await?;
        self.store
            .put_synced(
                name,
                &SyncedDevice {
                    accepted: Some(actual),
                    ..synced
                },
            )
            .await?;
        Ok(())
    }
}

/// Releases held agents however `execute` ends.
struct HoldGuard(Arc<dyn HostFabric>, Vec<String>);

impl Drop for HoldGuard {
    fn drop(&mut self) {
        self.0.hold(&self.1, false);
    }
}
