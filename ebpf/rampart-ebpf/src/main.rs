//! rampart-agent's firewall programs: `rampart_xdp` filters what an interface
//! receives, `rampart_tc` (TCX or clsact egress) what it sends. Both share the
//! maps of one loaded object, so conntrack entries made by one direction let
//! the replies through the other.
//!
//! Per packet: parse (VLAN, IPv4/IPv6 with extension headers, TCP/UDP/ICMP),
//! read the active generation once, look up conntrack, classify with rule
//! bitmaps (see `rampart-common`), count, and decide.

#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(
    unsafe_code,
    reason = "eBPF programs read packet memory through raw pointers"
)]

#[cfg(target_arch = "bpf")]
mod fw;
#[cfg(target_arch = "bpf")]
mod parse;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects programs whose panics are reachable, so this is
    // never executed.
    loop {}
}

/// Host builds (cargo check of the workspace) get an empty binary: the real
/// programs only exist for the bpf target.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
