//! Transactions: plan (compile every affected service against the
//! inventory and diff each device's merged configuration), dry-run (return
//! the plan), two-phase commit across devices, rollback, drift.
//!
//! A plan is computed in full before anything is written, so a spec that
//! fails to compile for any one target changes nothing anywhere. See
//! `docs/transactions.md`.

pub mod asa_platform;
pub mod drift;
pub mod engine;
pub mod ftd_platform;
pub mod hosts;
pub mod iosxe;
pub mod meraki_platform;
pub mod netconf_platform;
pub mod participant;
pub mod platform;
pub mod sdwan_platform;

pub use engine::{Change, DriftReport, Engine, EngineConfig, EngineError, Planned};
