//! Meraki MX: firewall, NAT and VPN settings rendered as Dashboard API calls.

mod driver;
mod render;

pub use driver::*;
pub use render::*;

#[cfg(test)]
mod tests;
