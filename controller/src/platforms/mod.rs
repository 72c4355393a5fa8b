//! One module per platform: its pure rendering (spec → the platform's
//! configuration, snapshot-tested), the reconciliation of that
//! configuration per device (merge, diff into an edit, drift against what
//! the device reports) and its transaction participant.
//!
//! [`REGISTRY`] lists them; compilation ([`crate::compile`]) and the
//! transaction engine ([`crate::txn`]) both read it, so a new platform is
//! its folder, one line there, and its `model::device::Platform` value.

use std::{collections::BTreeMap, path::PathBuf, sync::Arc, time::Duration};

use crate::model::{
    device::Platform,
    spec::{NatDevice, NatOverload},
};

pub mod agent;
pub mod asa;
pub mod drift;
pub mod driver;
pub mod ftd;
pub mod iosxe;
pub mod meraki;
pub mod rest;
pub mod sdwan;

use driver::PlatformDriver;

/// Why a spec could not be compiled for a target.
#[derive(Debug, thiserror::Error)]
pub enum CompileError {
    /// The spec names a device that is not in the inventory.
    #[error("device {device:?} (at {field}) is not in the inventory")]
    UnknownDevice {
        /// The device name.
        device: String,
        /// Where in the spec it was named.
        field: String,
    },
    /// The platform cannot express part of the spec.
    #[error("{platform} cannot express {what} (at {field})")]
    Unsupported {
        /// Platform word.
        platform: String,
        /// What is missing.
        what: String,
        /// Where in the spec.
        field: String,
    },
    /// The IOS-XE renderer failed.
    #[error(transparent)]
    IosXe(#[from] iosxe::IosXeError),
}

/// Settings of the southbound side: what every platform's sessions are
/// built from, and how the engine paces them (`txn::EngineConfig`).
#[derive(Debug, Clone)]
pub struct Settings {
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
    /// PEM CA bundle trusted for REST devices (Meraki, FDM, SD-WAN
    /// Manager); a device's `rampart.io/ca-file` label overrides it. `None`:
    /// the public web roots. Verification is never turned off.
    pub ca_bundle: Option<PathBuf>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            known_hosts: PathBuf::from("known_hosts"),
            trust_on_first_use: false,
            connect_timeout: Duration::from_secs(10),
            rpc_timeout: Duration::from_secs(60),
            confirm_timeout: Duration::from_secs(120),
            max_parallel: 16,
            device_timeout: Duration::from_secs(120),
            ca_bundle: None,
        }
    }
}

/// Builds a platform's driver from the shared settings.
pub type Constructor = fn(&Settings) -> Arc<dyn PlatformDriver>;

/// Every inventory platform and how to build its driver: one line each.
/// Host agents are not inventory devices; the engine reaches them through
/// [`agent::HostFabric`].
pub const REGISTRY: &[(Platform, Constructor)] = &[
    (Platform::IosXe, iosxe::new_driver),
    (Platform::Asa, asa::new_driver),
    (Platform::Ftd, ftd::new_driver),
    (Platform::MerakiMx, meraki::new_driver),
    (Platform::SdWan, sdwan::new_driver),
];

/// The drivers of [`REGISTRY`], built with `settings`.
#[must_use]
pub fn drivers(settings: &Settings) -> BTreeMap<Platform, Arc<dyn PlatformDriver>> {
    REGISTRY
        .iter()
        .map(|(p, new)| (*p, new(settings)))
        .collect()
}

/// What makes NAT overload `o` of `d` (at `field`) unrenderable on every
/// platform, as `(what, field)`: an interface that is not an outside one,
/// or no sources.
#[must_use]
pub fn overload_problem(d: &NatDevice, o: &NatOverload, field: &str) -> Option<(String, String)> {
    if !d.outside_interfaces.contains(&o.interface) {
        return Some((
            format!(
                "overload to {}, which is not an outsideInterface",
                o.interface
            ),
            format!("{field}.interface"),
        ));
    }
    o.sources.is_empty().then(|| {
        (
            "an overload without sources".to_owned(),
            format!("{field}.sources"),
        )
    })
}
