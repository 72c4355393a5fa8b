//! The root check of the root-only test binaries. A test that cannot run
//! here says so; under CI (`CI` set and not `false`) that is a failure, so
//! a missing install step never looks green.

/// True when the test must be skipped (not root); `what` says why.
///
/// # Panics
/// Under CI, instead of skipping.
pub fn unless_root(what: &str) -> bool {
    // SAFETY: getuid has no preconditions.
    #[allow(unsafe_code, reason = "getuid")]
    let uid = unsafe { libc::getuid() };
    if uid == 0 {
        return false;
    }
    let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
    assert!(!ci, "CI: would skip: {what}");
    eprintln!("SKIP: {what}");
    true
}
