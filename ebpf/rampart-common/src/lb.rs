//! Map layouts of the L4 load balancer (`rampart_lb` XDP program and the
//! `rampart_lb_decap` backend-side program), shared with the agent's
//! `lb` module.
//!
//! Lookup chain per packet: [`VipKey`] -> [`VipInfo`] (is this a virtual
//! service?), [`FlowKey`] -> [`FlowValue`] (an established flow keeps its
//! backend), otherwise [`flow_hash`] picks a slot of the VIP's Maglev ring
//! (`LB_RING`, two generations per VIP) which holds a backend id, whose
//! [`Backend`] entry says where to send the packet.

/// Maximum number of backends (ids index `LB_BACKENDS` and its counters).
pub const LB_MAX_BACKENDS: u32 = 4096;
/// Maximum number of virtual services (ids index `LB_VIP_COUNTERS`).
pub const LB_MAX_VIPS: u32 = 256;
/// Backend flag: failed health checks or removed; flows pinned to it move.
pub const BACKEND_DOWN: u32 = 1;
/// VIP forwarding mode: IP-in-IP (IPv4 in IPv4, IPv6 in IPv6) encapsulation.
pub const MODE_IPIP: u32 = 0;
/// VIP forwarding mode: destination rewrite (DNAT).
pub const MODE_DNAT: u32 = 1;
/// Address family tag: IPv4 (address in the first word).
pub const LB_FAMILY_V4: u8 = 4;
/// Address family tag: IPv6.
pub const LB_FAMILY_V6: u8 = 6;

/// Slots of the VIP address filter (`LB_VIP_FILTER`), a power of two.
pub const LB_FILTER_SLOTS: u32 = 4096;

/// The filter slot of a destination address given as four native-endian
/// words of its network-order bytes (IPv4: the first word, the rest zero).
/// The program reads the words straight from the packet; the agent builds
/// them with `u32::from_ne_bytes`, so both sides agree on the slot.
pub const fn vip_filter_slot(words: [u32; 4]) -> u32 {
    let h = words[0] ^ words[1] ^ words[2] ^ words[3];
    h.wrapping_mul(0x9E37_79B1) >> 20
}

/// Indexes of the global `LB_STATS` per-CPU counters.
pub mod lb_stat {
    /// Not IPv4/IPv6, or not TCP/UDP, or not addressed to a VIP: passed.
    pub const PASS_NON_VIP: u32 = 0;
    /// Truncated or inconsistent headers: dropped.
    pub const MALFORMED: u32 = 1;
    /// IP fragment to a VIP address: passed to the kernel (no ports).
    pub const FRAGMENT: u32 = 2;
    /// Flow table hit.
    pub const FLOW_HIT: u32 = 3;
    /// Flow table miss (new flow, Maglev lookup).
    pub const FLOW_MISS: u32 = 4;
    /// VIP without a usable backend: dropped.
    pub const NO_BACKEND: u32 = 5;
    /// The flow's backend was down; the flow was moved by Maglev.
    pub const REPICK: u32 = 6;
    /// No route/neighbour to the backend and no gateway MAC: dropped.
    pub const FIB_FAIL: u32 = 7;
    /// Growing the packet failed: dropped.
    pub const ENCAP_FAIL: u32 = 8;
    /// Sent with XDP_TX.
    pub const TX: u32 = 9;
    /// Sent with bpf_redirect to another interface.
    pub const REDIRECT: u32 = 10;
    /// Decapsulated by `rampart_lb_decap`.
    pub const DECAP: u32 = 11;
    /// Flow table insert failed.
    pub const FLOW_INSERT_FAIL: u32 = 12;
    /// DNAT mode: destination rewritten towards a backend.
    pub const DNAT: u32 = 13;
    /// DNAT mode: a backend's reply rewritten back to the VIP (TC).
    pub const SNAT: u32 = 14;
    /// DNAT mode: the reverse-translation entry could not be stored.
    pub const NAT_INSERT_FAIL: u32 = 15;
    /// Next hop taken from the userspace-filled cache (no FIB lookup).
    pub const NEXTHOP_CACHED: u32 = 16;
    /// Number of counters.
    pub const COUNT: u32 = 17;
}

/// Global settings (`LB_CONFIG[0]`).
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default)]
#[repr(C)]
pub struct LbConfig {
    /// Outer source address for IPv4 encapsulation (network order bytes).
    pub src_v4: [u8; 4],
    /// Outer source address for IPv6 encapsulation.
    pub src_v6: [u8; 16],
    /// Next-hop MAC used when the FIB lookup finds no neighbour (Katran's
    /// default-gateway MAC); all zero = drop instead.
    pub gw_mac: [u8; 6],
    /// Padding.
    pub _pad: [u8; 2],
    /// Ring slots per (generation, VIP): the largest allowed table size.
    pub ring_stride: u32,
    /// Number of VIP ids the ring map has room for.
    pub max_vips: u32,
}

/// Key of `LB_VIPS`: what makes a packet belong to a virtual service.
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct VipKey {
    /// Address (IPv4 in the first 4 bytes, rest zero).
    pub addr: [u8; 16],
    /// Port, host order.
    pub port: u16,
    /// IP protocol (6 or 17).
    pub proto: u8,
    /// [`LB_FAMILY_V4`] or [`LB_FAMILY_V6`].
    pub family: u8,
}

/// Value of `LB_VIPS`. Replaced as a whole (one map update) when the VIP's
/// ring flips generation, so a packet never sees a half-written table.
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct VipInfo {
    /// VIP id: counters index and ring row.
    pub id: u32,
    /// Maglev table size in use (a prime <= `ring_stride`); 0 = no backend.
    pub ring_size: u32,
    /// Active ring generation (0 or 1).
    pub generation: u32,
    /// [`MODE_IPIP`] or [`MODE_DNAT`].
    pub mode: u32,
}

/// Value of `LB_BACKENDS[id]`.
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct Backend {
    /// Address (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// Port for DNAT mode (host order); unused for IPIP.
    pub port: u16,
    /// [`LB_FAMILY_V4`] or [`LB_FAMILY_V6`].
    pub family: u8,
    /// Padding.
    pub _pad: u8,
    /// [`BACKEND_DOWN`] or 0.
    pub flags: u32,
}

/// Key of the `LB_FLOWS` LRU table: the client's 5-tuple towards the VIP.
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
#[repr(C)]
pub struct FlowKey {
    /// Client address.
    pub src: [u8; 16],
    /// VIP address.
    pub dst: [u8; 16],
    /// Client port, host order.
    pub sport: u16,
    /// VIP port, host order.
    pub dport: u16,
    /// IP protocol.
    pub proto: u8,
    /// Family tag.
    pub family: u8,
    /// Padding.
    pub _pad: [u8; 2],
}

/// Value of `LB_FLOWS`.
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct FlowValue {
    /// Backend id the flow is pinned to.
    pub backend: u32,
    /// VIP id (for flow-table accounting by userspace).
    pub vip: u32,
}

/// Value of the `LB_NAT` LRU table (DNAT mode), keyed by the reply's
/// 5-tuple as a [`FlowKey`] (`src` = backend, `dst` = client, `sport` =
/// backend port, `dport` = client port): what the reply's source must be
/// rewritten to so the client sees the VIP.
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NatValue {
    /// VIP address (IPv4 in the first 4 bytes).
    pub addr: [u8; 16],
    /// VIP port, host order.
    pub port: u16,
    /// Padding.
    pub _pad: [u8; 2],
}

/// Value of `LB_NEXTHOP[backend id]`: the next hop towards a backend,
/// resolved by the agent (neighbour table) so the dataplane skips the
/// per-packet `bpf_fib_lookup` (Katran keeps the same per-backend cache).
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct NextHop {
    /// Destination MAC (the backend's, or its gateway's).
    pub dmac: [u8; 6],
    /// Source MAC (the egress interface's).
    pub smac: [u8; 6],
    /// Egress interface index.
    pub ifindex: u32,
    /// Non-zero when the entry is filled.
    pub valid: u32,
}

/// Per-CPU packet/byte/new-flow counters (per VIP, per backend).
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq)]
#[repr(C)]
pub struct LbCounter {
    /// Packets.
    pub packets: u64,
    /// Bytes (of the packet as received).
    pub bytes: u64,
    /// Flows created (flow-table misses that picked this VIP/backend).
    pub new_flows: u64,
}

#[inline(always)]
fn fmix(mut h: u32) -> u32 {
    h ^= h >> 16;
    h = h.wrapping_mul(0x85eb_ca6b);
    h ^= h >> 13;
    h = h.wrapping_mul(0xc2b2_ae35);
    h ^= h >> 16;
    h
}

#[inline(always)]
fn word(b: &[u8; 16], i: usize) -> u32 {
    u32::from_le_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]])
}

/// The flow hash that picks a Maglev slot: murmur3-style mixing of the
/// 5-tuple. Shared so userspace (tests, tools) can predict a flow's slot.
#[inline(always)]
pub fn flow_hash(k: &FlowKey) -> u32 {
    let mut h: u32 = 0x5261_6d70;
    let mut i = 0;
    while i < 16 {
        h = fmix(h ^ word(&k.src, i));
        h = fmix(h ^ word(&k.dst, i));
        i += 4;
    }
    let ports = (u32::from(k.sport) << 16) | u32::from(k.dport);
    h = fmix(h ^ ports);
    fmix(h ^ ((u32::from(k.proto) << 8) | u32::from(k.family)))
}

#[cfg(feature = "user")]
#[allow(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]
mod pod {
    use super::*;
    // SAFETY: plain #[repr(C)] structs of integers, no padding bytes left
    // implicit (explicit `_pad` fields), valid for any bit pattern.
    unsafe impl aya::Pod for LbConfig {}
    unsafe impl aya::Pod for VipKey {}
    unsafe impl aya::Pod for VipInfo {}
    unsafe impl aya::Pod for Backend {}
    unsafe impl aya::Pod for FlowKey {}
    unsafe impl aya::Pod for FlowValue {}
    unsafe impl aya::Pod for LbCounter {}
    unsafe impl aya::Pod for NatValue {}
    unsafe impl aya::Pod for NextHop {}
}
