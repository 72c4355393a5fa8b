//! Transactions: plan (compile every affected service against the inventory),
//! dry-run (return the plan), commit (journal and store atomically).
//!
//! A plan is computed in full before anything is written, so a spec that
//! fails to compile for any one target changes nothing anywhere.

use std::collections::BTreeMap;

pub mod asa_platform;
pub mod drift;
pub mod engine;
pub mod ftd_platform;
pub mod iosxe;
pub mod meraki_platform;
pub mod netconf_platform;
pub mod participant;
pub mod platform;
pub mod sdwan_platform;

pub use engine::{Change, DriftReport, Engine, EngineConfig, EngineError, Planned};

use crate::{
    compile::{self, CompileError, Rendering},
    model::{device::Device, spec::ServiceSpec},
    store::{Store, StoreError, StoredService, TxnChange, TxnRecord, TxnState, now_unix_ms},
};

/// Why a transaction could not be planned or committed.
#[derive(Debug, thiserror::Error)]
pub enum TxnError {
    /// A service did not compile for one of its targets.
    #[error("service {service}: {source}")]
    Compile {
        /// `tenant/name`.
        service: String,
        /// Cause.
        #[source]
        source: CompileError,
    },
    /// The store failed; nothing was committed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Deleting a service that does not exist.
    #[error("service {service} not found")]
    NotFound {
        /// `tenant/name`.
        service: String,
    },
}

/// Everything an apply would do, computed without side effects.
#[derive(Debug, Clone)]
pub struct Plan {
    /// The services and the `apiVersion` each was written in.
    pub services: Vec<(ServiceSpec, String)>,
    /// Per-target renderings, in service order then target order.
    pub renderings: Vec<Rendering>,
}

/// Plans applying `services` against `inventory`.
///
/// # Errors
/// [`TxnError::Compile`] naming the first service that does not compile.
pub fn plan(
    services: Vec<(ServiceSpec, String)>,
    inventory: &BTreeMap<String, Device>,
) -> Result<Plan, TxnError> {
    let mut renderings = Vec::new();
    for (spec, _) in &services {
        let rendered = compile::compile(spec, inventory).map_err(|source| TxnError::Compile {
            service: format!("{}/{}", spec.metadata.tenant, spec.metadata.name),
            source,
        })?;
        renderings.extend(rendered);
    }
    Ok(Plan {
        services,
        renderings,
    })
}

/// Commits a plan: one journaled transaction recording the renderings, with
/// the services' new desired state, written atomically and flushed.
///
/// # Errors
/// [`TxnError::Store`]; then nothing was written.
pub async fn commit_apply(
    store: &Store,
    plan: Plan,
    author: &str,
) -> Result<(TxnRecord, Vec<StoredService>), TxnError> {
    let started = now_unix_ms();
    let txn = TxnRecord {
        id: store.next_txn_id()?,
        state: TxnState::Committed,
        operation: "apply".to_owned(),
        services: plan
            .services
            .iter()
            .map(|(s, _)| format!("{}/{}", s.metadata.tenant, s.metadata.name))
            .collect(),
        author: author.to_owned(),
        started_unix_ms: started,
        finished_unix_ms: Some(now_unix_ms()),
        changes: plan
            .renderings
            .into_iter()
            .map(|rendering| TxnChange {
                rendering,
                error: None,
            })
            .collect(),
        error: None,
        ..TxnRecord::default_pending()
    };
    let stored = store.commit_apply(&plan.services, &txn).await?;
    tracing::info!(txn = txn.id, services = ?txn.services, author, "apply committed");
    Ok((txn, stored))
}

/// Deletes a service, journaling the transaction.
///
/// # Errors
/// [`TxnError::NotFound`] when the service does not exist; store failures.
pub async fn commit_delete(
    store: &Store,
    tenant: &str,
    name: &str,
    author: &str,
) -> Result<TxnRecord, TxnError> {
    let service = format!("{tenant}/{name}");
    let now = now_unix_ms();
    let txn = TxnRecord {
        id: store.next_txn_id()?,
        state: TxnState::Committed,
        operation: "delete".to_owned(),
        services: vec![service.clone()],
        author: author.to_owned(),
        started_unix_ms: now,
        finished_unix_ms: Some(now),
        changes: Vec::new(),
        error: None,
        ..TxnRecord::default_pending()
    };
    match store.commit_delete(tenant, name, &txn).await? {
        Some(_) => {
            tracing::info!(txn = txn.id, service, author, "delete committed");
            Ok(txn)
        }
        None => Err(TxnError::NotFound { service }),
    }
}
