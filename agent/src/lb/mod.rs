//! The L4 load balancer (issue #7): virtual services (VIP, protocol, port)
//! spread over weighted backends with Maglev consistent hashing, an LRU flow
//! table keeping established flows on their backend, and IP-in-IP
//! encapsulation with direct server return, in the `rampart_lb` XDP program
//! (`ebpf/rampart-ebpf/src/lb.rs`).
//!
//! - [`maglev`]: the lookup table (pure, unit-tested).
//! - [`maps`]: load/attach the object, write services into its maps with
//!   A/B rings per VIP, read counters.
//! - [`service`]: validated service definitions (from policy files).
//! - [`policy`]: the policy's `virtual_services` converted and checked.
//! - [`runtime`]: the daemon's balancers, applied with the firewall, and
//!   their health checks.
//! - [`health`]: TCP/HTTP health checks with rise/fall thresholds.
//! - [`metrics`]: Prometheus export (per VIP, per backend, flow table).
//! - [`testrun`]: the programs on hand-made packets (`BPF_PROG_TEST_RUN`).

pub mod health;
pub mod maglev;
pub mod maps;
pub mod metrics;
pub mod policy;
pub mod runtime;
pub mod service;
pub mod testrun;

/// The load balancer's eBPF object (`rampart_lb`, `rampart_lb_decap`), built
/// by `build.rs` next to the firewall's, 8-byte aligned for aya.
pub static LB_OBJECT: &[u8] = aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rampart-lb"));
