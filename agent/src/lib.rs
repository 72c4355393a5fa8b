//! rampart-agent: enforces a host's firewall policy (`rampart_proto::v1::
//! HostPolicy`) and virtual services with the XDP/TC programs of
//! `ebpf/rampart-ebpf`.
//!
//! - [`fw`]: the firewall (compile, maps, load/attach, enforcer, metrics).
//! - [`lb`]: the L4 load balancer, laid out the same way.
//! - [`pins`], [`attach`], [`sys`]: bpffs pins, attach options, syscalls;
//!   shared by both, importing neither.
//! - [`daemon`], [`managed`], [`config`]: the long-running agent.
//! - [`packet`]: hand-made packets for fixtures and benchmarks.

pub mod attach;
pub mod config;
pub mod daemon;
pub mod fw;
pub mod lb;
pub mod managed;
pub mod packet;
pub mod pins;
pub mod sys;
