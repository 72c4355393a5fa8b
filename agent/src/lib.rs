//! rampart-agent: enforces a host's firewall policy (`rampart_proto::v1::
//! HostPolicy`) with the XDP/TC programs of `ebpf/rampart-ebpf`.
//!
//! - [`policy`]: validate and compile a policy into rule bitmaps (pure).
//! - [`maps`]: write compiled tables into the dataplane, A/B generations.
//! - [`loader`]: load, attach, pin, adopt, detach.
//! - [`testrun`]: run the programs on packets with `BPF_PROG_TEST_RUN`.
//! - [`metrics`], [`daemon`], [`config`]: the long-running agent.

pub mod config;
pub mod daemon;
pub mod enforcer;
pub mod lb;
pub mod loader;
pub mod managed;
pub mod maps;
pub mod metrics;
pub mod packet;
pub mod policy;
pub mod port_slots;
pub mod sys;
pub mod testrun;

/// The eBPF object built by `build.rs` (aya-build), 8-byte aligned for aya.
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rampart"));
