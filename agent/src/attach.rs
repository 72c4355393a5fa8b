//! What the firewall's and the load balancer's attach code share: the XDP
//! mode preference and interface lookup.

use std::ffi::CString;

/// XDP attach mode preference.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum XdpModePref {
    /// Native (driver) mode, falling back to generic when unsupported.
    #[default]
    Auto,
    /// Native only.
    Native,
    /// Generic (skb) only.
    Generic,
}

/// Interface index, if the interface exists.
pub fn ifindex(interface: &str) -> Option<u32> {
    let c = CString::new(interface).ok()?;
    // SAFETY: valid C string.
    #[allow(unsafe_code, reason = "if_nametoindex(3)")]
    let i = unsafe { libc::if_nametoindex(c.as_ptr()) };
    (i != 0).then_some(i)
}
