//! rampartd: the Rampart controller.
//!
//! Layers, bottom to top; a module imports only from its own layer or the
//! layers below it (checked by `tests/layers.rs`, drawn in
//! `docs/architecture.md`):
//!
//! 1. `wire`, `model`, `tls`, `telemetry`, `config`: renderings, typed edits,
//!    object naming; specs validated against YANG; settings.
//! 2. `transport` (NETCONF, RESTCONF, HTTP, SSH CLI sessions), `store`,
//!    `auth`.
//! 3. `platforms`: one module per vendor: pure rendering, reconciliation,
//!    participant; and the registry of them.
//! 4. `compile` (spec → renderings through the registry), `txn` (plan,
//!    dry-run, two-phase commit, rollback, drift).
//! 5. `fleet` (host agents), `api` (gRPC), `daemon`.

pub mod api;
pub mod auth;
pub mod compile;
pub mod config;
pub mod daemon;
pub mod fleet;
pub mod model;
pub mod observe;
pub mod platforms;
pub mod store;
pub mod telemetry;
pub mod tls;
pub mod transport;
pub mod txn;
pub mod wire;

#[cfg(test)]
mod layers;
