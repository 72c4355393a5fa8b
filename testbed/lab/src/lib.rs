//! `rampart-lab`: the Rampart lab in Linux network namespaces, described by
//! the same containerlab topology file (`testbed/clab/*.clab.yml`) that
//! deploys it with real images.
//!
//! [`topology`] reads and validates the file, [`inventory`] derives and
//! checks the Rampart inventory, [`runner`] builds (`up`), inspects
//! (`status`) and removes (`down`) the netns lab, recording what it created
//! in [`state`]; [`sys`] wraps `ip`, `/proc` and signals; [`http`] is the
//! web backend that answers with its node name.

pub mod http;
pub mod inventory;
pub mod runner;
pub mod state;
pub mod sys;
pub mod topology;

/// The controller's interface towards the host (the netns lab's stand-in
/// for containerlab's management network); reserved in topologies.
pub const MGMT_IF: &str = "mgmt0";
