//! Shared test support: `mod support;` from any integration test file.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod lab;
pub mod netconfd;
pub mod sims;
