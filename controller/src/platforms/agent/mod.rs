//! Rampart's own host agents: firewall and load-balancer intent rendered
//! as `rampart.v1.HostPolicy` per label selector, and connected agents as
//! transaction participants.

mod participant;
pub mod policy;
mod render;

pub use participant::*;
pub use render::*;
