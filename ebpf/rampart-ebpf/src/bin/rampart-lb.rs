//! rampart-agent's L4 load balancer, a separate eBPF object from the
//! firewall so each loads only its own maps: `rampart_lb` (XDP on the load
//! balancer's ingress), `rampart_lb_nat` (TC ingress: DNAT mode's reverse
//! translation) and `rampart_lb_decap` (XDP on backends that cannot
//! decapsulate IP-in-IP themselves).

#![cfg_attr(target_arch = "bpf", no_std)]
#![cfg_attr(target_arch = "bpf", no_main)]
#![allow(
    unsafe_code,
    reason = "eBPF programs read packet memory through raw pointers"
)]

#[cfg(target_arch = "bpf")]
#[path = "../lb.rs"]
mod lb;
#[cfg(target_arch = "bpf")]
#[path = "../lb_encap.rs"]
mod lb_encap;
#[cfg(target_arch = "bpf")]
#[path = "../lb_nat.rs"]
mod lb_nat;

#[cfg(target_arch = "bpf")]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo<'_>) -> ! {
    // The verifier rejects programs whose panics are reachable.
    loop {}
}

/// Host builds get an empty binary: the programs only exist for bpf.
#[cfg(not(target_arch = "bpf"))]
fn main() {}
