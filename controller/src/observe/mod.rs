//! Device state: what rampartd reads from devices besides configuration
//! (ACL entry hit counts, interface and BGP neighbour state), parsed from
//! each platform's own operational data, attributed to the services that
//! own the objects, and exported as metrics.
//!
//! Parsers are pure (a reply in, a [`Snapshot`] out) so each one is tested
//! against replies that are checked against the vendor's schema; the
//! collector does the polling.

pub mod asa;
pub mod ftd;
pub mod iosxe;
pub mod meraki;
mod reply;
pub mod sdwan;

pub use reply::Page;

use serde::Serialize;

/// One poll's worth of a device's operational state. Parts a platform does
/// not expose stay empty.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Snapshot {
    /// Hit counts of access-list entries (device counters, may reset).
    pub acl_entries: Vec<AceCounter>,
    /// Interfaces (or uplinks) and whether they are up.
    pub interfaces: Vec<InterfaceState>,
    /// BGP neighbours and whether their session is established.
    pub bgp_neighbors: Vec<BgpNeighbor>,
}

/// The match counter of one entry of a device access list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AceCounter {
    /// The access list's (or policy's) name on the device.
    pub list: String,
    /// The entry's identifier in that list: IOS-XE/ASA sequence, or the
    /// vendor's rule index.
    pub entry: u64,
    /// Matches since the device last reset its counters.
    pub matches: u64,
}

/// An interface's state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct InterfaceState {
    /// Device name of the interface or uplink.
    pub name: String,
    /// Operationally up.
    pub up: bool,
}

/// A BGP neighbour's session state.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct BgpNeighbor {
    /// VRF (`default` outside any VRF).
    pub vrf: String,
    /// Neighbour address.
    pub neighbor: String,
    /// The session is in the Established state.
    pub established: bool,
}

/// A reply that could not be read as the platform's state.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{platform} state at {path}: {message}")]
pub struct StateError {
    /// Platform word.
    pub platform: &'static str,
    /// Where in the reply (element path, JSON pointer, CLI line).
    pub path: String,
    /// What was wrong.
    pub message: String,
}

impl StateError {
    fn new(platform: &'static str, path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            platform,
            path: path.into(),
            message: message.into(),
        }
    }
}
