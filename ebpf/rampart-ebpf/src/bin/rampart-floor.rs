//! The benchmarks' floor: the least an XDP program that looks at a packet
//! can cost. `rampart_floor` parses Ethernet, IPv4 and UDP (reading the
//! destination port as a classifier would) and drops; anything else passes. `fw-bench`
//! and `lb-bench` run it beside the real programs in the same run, so their
//! costs are reported against it rather than against a number from another
//! day.

#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(
    unsafe_code,
    reason = "eBPF programs read packet memory through raw pointers"
)]

#[cfg(target_arch = "bpf")]
mod floor {
    use aya_ebpf::{bindings::xdp_action, macros::xdp, programs::XdpContext};

    /// Ethernet + IPv4 + UDP: drop; anything else: pass.
    #[xdp]
    pub fn rampart_floor(ctx: XdpContext) -> u32 {
        let start = ctx.data();
        let end = ctx.data_end();
        // Ethernet (14) + minimal IPv4 header (20).
        if start + 34 > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: the 34 bytes were bounds-checked above.
        let (ethertype, vihl, proto) = unsafe {
            (
                u16::from_be(core::ptr::read_unaligned((start + 12) as *const u16)),
                *((start + 14) as *const u8),
                *((start + 23) as *const u8),
            )
        };
        if ethertype != 0x0800 || vihl >> 4 != 4 || proto != 17 {
            return xdp_action::XDP_PASS;
        }
        let l4 = start + 14 + usize::from(vihl & 0x0f) * 4;
        if l4 + 8 > end {
            return xdp_action::XDP_PASS;
        }
        // SAFETY: the UDP header was bounds-checked above.
        let dport = unsafe { u16::from_be(core::ptr::read_unaligned((l4 + 2) as *const u16)) };
        // The port is read and tested as a classifier must (port 0 is not
        // a real destination, so it passes).
        if dport == 0 {
            return xdp_action::XDP_PASS;
        }
        xdp_action::XDP_DROP
    }
}

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects programs whose panics are reachable.
    loop {}
}

/// Host builds get an empty binary: the program only exists for bpf.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
