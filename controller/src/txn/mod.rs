//! Transactions: plan (build every affected service once per target
//! through its platform and diff each device's merged configuration),
//! dry-run (return the plan), two-phase commit across devices, rollback,
//! drift.
//!
//! A plan is computed in full before anything is written, so a spec that
//! fails to compile for any one target changes nothing anywhere. See
//! `docs/transactions.md`.

pub mod engine;

pub use engine::{Change, DriftReport, Engine, EngineConfig, EngineError, Planned};
