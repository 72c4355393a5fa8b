//! Shared test support: `mod support;` from any integration test file.
#![allow(dead_code, reason = "each test binary uses a different subset")]

pub mod lab;
pub mod netconfd;
pub mod sims;

/// Reports a test that cannot run here. Under CI (`CI` set and not
/// `false`) that is a failure, so a missing install step never looks green.
///
/// # Panics
/// Under CI, always.
pub fn skip(reason: &str) {
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!ci, "CI: this test would have been skipped: {reason}");
    eprintln!("SKIP: {reason}");
}
