//! Cisco FTD managed by FDM: objects and rules rendered as REST calls, committed by a deploy.

mod driver;
mod render;

pub use driver::*;
pub use render::*;

#[cfg(test)]
mod tests;
