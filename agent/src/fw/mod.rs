//! The firewall: a host policy's rules compiled into per-field rule bitmaps
//! and enforced by the `rampart_xdp` (ingress) and `rampart_tc` (egress)
//! programs (`ebpf/rampart-ebpf/src/fw.rs`).
//!
//! - [`policy`]: validate and compile a policy into rule bitmaps (pure).
//! - [`port_slots`]: the port arrays' layout of the compiled classes (pure).
//! - [`maps`]: write compiled tables into the dataplane, A/B generations.
//! - [`loader`]: load, attach, pin, adopt, detach.
//! - [`enforcer`]: the interfaces under enforcement and their counters.
//! - [`metrics`]: Prometheus export of verdicts, rules and conntrack.
//! - [`testrun`]: the programs on hand-made packets (`BPF_PROG_TEST_RUN`).

pub mod enforcer;
pub mod loader;
pub mod maps;
pub mod metrics;
pub mod policy;
pub mod port_slots;
pub mod testrun;

/// The firewall's eBPF object (`rampart_xdp`, `rampart_tc`) built by
/// `build.rs` (aya-build), 8-byte aligned for aya.
pub static FW_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rampart"));
