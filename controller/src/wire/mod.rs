//! The bottom layer shared by compilation and transport: what a rendering
//! is ([`Rendering`], [`Format`]), the typed edits a plan carries to a
//! participant ([`http::Call`], ...), XML text helpers and the names of
//! Rampart-owned device objects. Nothing here does I/O or knows a device.

use serde::{Deserialize, Serialize};

pub mod edit;
pub mod http;
pub mod naming;
pub mod xml;

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
