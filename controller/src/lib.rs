//! rampartd: the Rampart controller.
//!
//! Layering, each module only calling downward:
//! `api` (tonic) → `model` (specs validated against YANG) → `compile` (pure:
//! intent to per-device config) → `transport` (netconf, restconf, http,
//! ssh-cli) → `txn` (plan, dry-run, commit, rollback) → `store` (sled).

pub mod api;
pub mod auth;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod fleet;
pub mod model;
pub mod observe;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod txn;
