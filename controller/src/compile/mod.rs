//! Pure compilation of service intent into per-device configuration.
//!
//! Nothing here does I/O: the same spec and inventory always render the same
//! bytes, which is what makes dry-run trustworthy and every vendor rendering
//! snapshot-testable. One module per vendor.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::{
    device::Device,
    spec::{ServiceBody, ServiceSpec},
};

pub mod agent;
pub mod asa;
pub mod ftd;
pub mod iosxe;
pub mod meraki;
pub mod sdwan;

/// The native form a rendering is written in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Format {
    /// NETCONF `<config>` payload for edit-config.
    NetconfXml,
    /// RESTCONF JSON (`application/yang-data+json`).
    RestconfJson,
    /// CLI lines (ASA).
    Cli,
    /// HTTP requests (Meraki, FDM, SD-WAN Manager).
    Http,
    /// Host agent policy (`rampart.v1.HostPolicy` as JSON).
    AgentPolicy,
}

impl Format {
    /// The word shown in dry-run output.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Format::NetconfXml => "netconf-xml",
            Format::RestconfJson => "restconf-json",
            Format::Cli => "cli",
            Format::Http => "http",
            Format::AgentPolicy => "agent-policy",
        }
    }
}

/// One rendering of one target's configuration.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Rendering {
    /// Inventory device name, or `hosts:<selector>` for agent targets.
    pub target: String,
    /// Platform word (`iosxe`, ...) or `agent`.
    pub platform: String,
    /// Native form.
    pub format: Format,
    /// The configuration text.
    pub content: String,
}

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

/// Renders `spec` for every device it targets.
///
/// # Errors
/// [`CompileError`] when a target device is unknown or its platform cannot
/// express the spec.
pub fn compile(
    spec: &ServiceSpec,
    inventory: &BTreeMap<String, Device>,
) -> Result<Vec<Rendering>, CompileError> {
    let mut out = Vec::new();
    for name in spec.devices() {
        let device = inventory
            .get(name)
            .ok_or_else(|| CompileError::UnknownDevice {
                device: name.to_owned(),
                field: "spec.targets".to_owned(),
            })?;
        match device.platform {
            crate::model::device::Platform::IosXe => out.extend(iosxe::render(spec, device)?),
            crate::model::device::Platform::MerakiMx => out.extend(meraki::render(spec, device)?),
            crate::model::device::Platform::Ftd => out.extend(ftd::render(spec, device)?),
            crate::model::device::Platform::Asa => out.extend(asa::render(spec, device)?),
            crate::model::device::Platform::SdWan => out.extend(sdwan::render(spec, device)?),
        }
    }
    match &spec.body {
        ServiceBody::Firewall(fw) => out.extend(agent::render_firewall(fw, &spec.metadata)),
        ServiceBody::LoadBalancer(lb) => {
            out.extend(agent::render_load_balancer(lb, &spec.metadata)?);
        }
        _ => {}
    }
    Ok(out)
}
