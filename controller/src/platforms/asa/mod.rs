//! Cisco ASA: configuration rendered as CLI lines, applied over an SSH CLI session.

mod driver;
mod render;

pub use driver::*;
pub use render::*;

#[cfg(test)]
mod tests;
