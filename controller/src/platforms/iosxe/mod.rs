//! Cisco IOS-XE: YANG-modelled configuration rendered as NETCONF
//! `<config>` (and RFC 7951 JSON for RESTCONF), merged per device,
//! diffed into edits, and applied through a NETCONF participant.

mod driver;
pub mod participant;
pub mod pooled;
mod render;
pub mod state;
pub mod tree;

pub use driver::*;
pub use render::*;

#[cfg(test)]
mod tests;
