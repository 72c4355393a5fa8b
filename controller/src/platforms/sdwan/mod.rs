//! Cisco SD-WAN Manager: centralized policy rendered as REST calls, activated by the manager.

mod driver;
mod render;

pub use driver::*;
pub use render::*;

#[cfg(test)]
mod tests;
