//! The load balancer's maps and programs.
//!
//! `rampart_lb`: first an early check on the destination address alone
//! (`LB_VIP_FILTER`): traffic to no VIP address passes at once, malformed
//! or not (the kernel judges it). Then parse Ethernet + IPv4/IPv6 +
//! TCP/UDP ports; a packet whose (destination, port, protocol) is a VIP
//! is pinned to a backend through the
//! LRU flow table (new flows: Maglev ring slot `flow_hash % ring_size` of
//! the VIP's active generation), encapsulated IP-in-IP towards the backend,
//! given next-hop MACs from `bpf_fib_lookup` (or the configured gateway
//! MAC), and sent with XDP_TX (same interface) or `bpf_redirect`. Anything
//! else passes untouched; inconsistent IP headers to a VIP address are
//! dropped (the kernel would drop them too).
//!
//! In DNAT mode (`VipInfo::mode == MODE_DNAT`) the destination address and
//! port become the backend's instead (incremental checksums, `lb_nat.rs`)
//! and the reply's translation is recorded in `LB_NAT`; `rampart_lb_nat`
//! (TC ingress where the backends' replies arrive) rewrites the reply's
//! source back to the VIP.
//!
//! Next hop: the per-backend cache `LB_NEXTHOP` filled by the agent from the
//! neighbour table; on a miss `bpf_fib_lookup`.
//!
//! `rampart_lb_decap`: strips an outer IPv4/IPv6 header carrying IPv4-in-IP
//! or IPv6-in-IPv6, for backends whose kernel has no `ipip`/`ip6tnl`.

use aya_ebpf::{
    bindings::{TC_ACT_UNSPEC, bpf_fib_lookup as FibParams, xdp_action},
    helpers::{bpf_csum_diff, bpf_fib_lookup, bpf_redirect},
    macros::{classifier, map, xdp},
    maps::{Array, LruHashMap, PerCpuArray},
    programs::{TcContext, XdpContext},
};
use rampart_common::lb::{
    BACKEND_DOWN, FlowKey, FlowValue, LB_FAMILY_V4, LB_FAMILY_V6, LB_FILTER_SLOTS, LB_MAX_BACKENDS,
    LB_MAX_VIPS, LbConfig, LbCounter, MODE_DNAT, MODE_IPIP, NatValue, NextHop, VipInfo, VipKey,
    flow_hash, lb_stat, vip_filter_slot,
};

use crate::{
    lb_encap::{self, ETH_LEN, IPPROTO_IPIP, IPPROTO_IPV6, Outer, V4_LEN, V6_LEN, bytes_at},
    lb_nat,
};

/// `bpf_l4_csum_replace` flag: the field covers a pseudo header.
const BPF_F_PSEUDO_HDR: u64 = 1 << 4;
/// `bpf_l4_csum_replace` flag: a zero (absent) UDP checksum stays zero.
const BPF_F_MARK_MANGLED_0: u64 = 1 << 5;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;

/// Global settings.
#[map]
static LB_CONFIG: Array<LbConfig> = Array::pinned(1, 0);
/// Virtual services.
#[map]
static LB_VIPS: aya_ebpf::maps::HashMap<VipKey, VipInfo> =
    aya_ebpf::maps::HashMap::pinned(LB_MAX_VIPS, 0);
/// Backends by id.
#[map]
static LB_BACKENDS: Array<rampart_common::lb::Backend> = Array::pinned(LB_MAX_BACKENDS, 0);
/// Maglev rings: `(generation * max_vips + vip) * ring_stride + slot` ->
/// backend id. Size set by the agent at load time.
#[map]
static LB_RING: Array<u32> = Array::pinned(1, 0);
/// Established flows -> backend; size set by the agent at load time.
#[map]
static LB_FLOWS: LruHashMap<FlowKey, FlowValue> = LruHashMap::pinned(65_536, 0);
/// Per-VIP counters.
#[map]
static LB_VIP_COUNTERS: PerCpuArray<LbCounter> = PerCpuArray::pinned(LB_MAX_VIPS, 0);
/// Per-backend counters.
#[map]
static LB_BACKEND_COUNTERS: PerCpuArray<LbCounter> = PerCpuArray::pinned(LB_MAX_BACKENDS, 0);
/// DNAT mode: the reply 5-tuple (backend -> client) -> the VIP to put back
/// as its source. Size set by the agent at load time (as `LB_FLOWS`).
#[map]
static LB_NAT: LruHashMap<FlowKey, NatValue> = LruHashMap::pinned(65_536, 0);
/// Next hop per backend id, filled by the agent (valid = 0: FIB lookup).
#[map]
static LB_NEXTHOP: Array<NextHop> = Array::pinned(LB_MAX_BACKENDS, 0);
/// Global event counters (`lb_stat`).
#[map]
static LB_STATS: PerCpuArray<u64> = PerCpuArray::pinned(lb_stat::COUNT, 0);
/// `vip_filter_slot(destination)` -> non-zero if some VIP's address has
/// that slot. Zero: the packet is no VIP's and passes before any parsing
/// the VIP path needs (every packet of a host running the balancer pays
/// this check; an array lookup is a load).
#[map]
static LB_VIP_FILTER: Array<u32> = Array::pinned(LB_FILTER_SLOTS, 0);

/// False if the packet is certainly not addressed to a VIP: not IP, or its
/// destination's filter slot is empty. Frames too short to hold the
/// address go the full way (which drops them as malformed).
#[inline(always)]
fn maybe_vip(ctx: &XdpContext) -> bool {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + ETH_LEN > end {
        return true;
    }
    // Raw loads: the ethertype and address stay in network byte order,
    // which is what the slot function takes. The verifier accepts
    // unaligned packet loads here (no strict alignment).
    // SAFETY: bounds-checked above.
    let ethertype = unsafe { *((start + 12) as *const u16) };
    let words = if ethertype == ETH_P_IPV4.to_be() {
        if start + ETH_LEN + V4_LEN > end {
            return true;
        }
        // SAFETY: the IPv4 header is inside the packet.
        [unsafe { *((start + ETH_LEN + 16) as *const u32) }, 0, 0, 0]
    } else if ethertype == ETH_P_IPV6.to_be() {
        if start + ETH_LEN + V6_LEN > end {
            return true;
        }
        let p = (start + ETH_LEN + 24) as *const u32;
        // SAFETY: the IPv6 header is inside the packet.
        unsafe { [*p, *p.add(1), *p.add(2), *p.add(3)] }
    } else {
        return false;
    };
    LB_VIP_FILTER
        .get(vip_filter_slot(words))
        .is_none_or(|v| *v != 0)
}

#[inline(always)]
fn stat(which: u32) {
    if let Some(c) = LB_STATS.get_ptr_mut(which) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe { *c += 1 };
    }
}

#[inline(always)]
fn bump(map: &PerCpuArray<LbCounter>, idx: u32, len: u64, new_flow: bool) {
    if let Some(c) = map.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
            if new_flow {
                (*c).new_flows += 1;
            }
        }
    }
}

#[inline(always)]
fn read<T: Copy>(ctx: &XdpContext, off: usize) -> Result<T, ()> {
    let p = bytes_at(ctx, off, core::mem::size_of::<T>()).map_err(|_| ())?;
    // SAFETY: `bytes_at` checked the bytes are inside the packet.
    Ok(unsafe { core::ptr::read_unaligned(p as *const T) })
}

/// What the balancer needs from a packet addressed to a possible VIP.
struct L4 {
    key: FlowKey,
    /// Inner length for the outer header (IPv4 total / IPv6 40 + payload).
    inner_len: u16,
    /// IPv4 TOS, or the first 4 bytes of the IPv6 header.
    tos: [u8; 4],
    /// IPv4 header length (20 for IPv6: unused there).
    hlen: usize,
}

enum Class {
    Pass,
    Malformed,
    Fragment,
    Lb(L4),
}

#[inline(always)]
fn classify(ctx: &XdpContext) -> Class {
    let Ok(et) = read::<[u8; 2]>(ctx, 12) else {
        return Class::Malformed;
    };
    let frame = ctx.data_end() - ctx.data();
    match u16::from_be_bytes(et) {
        ETH_P_IPV4 => {
            let Ok(h) = read::<[u8; 20]>(ctx, ETH_LEN) else {
                return Class::Malformed;
            };
            let hlen = usize::from(h[0] & 0x0f) * 4;
            let total = u16::from_be_bytes([h[2], h[3]]);
            if h[0] >> 4 != 4
                || hlen < 20
                || usize::from(total) < hlen
                || ETH_LEN + usize::from(total) > frame
            {
                return Class::Malformed;
            }
            let proto = h[9];
            if proto != 6 && proto != 17 {
                return Class::Pass;
            }
            let mut key = FlowKey {
                proto,
                family: LB_FAMILY_V4,
                ..FlowKey::default()
            };
            key.src[..4].copy_from_slice(&h[12..16]);
            key.dst[..4].copy_from_slice(&h[16..20]);
            let frag = u16::from_be_bytes([h[6], h[7]]);
            if frag & 0x3fff != 0 {
                return Class::Fragment;
            }
            let need = if proto == 6 { 20 } else { 8 };
            if usize::from(total) < hlen + need {
                return Class::Malformed;
            }
            let Ok(p) = read::<[u8; 4]>(ctx, ETH_LEN + (hlen & 0x3c)) else {
                return Class::Malformed;
            };
            key.sport = u16::from_be_bytes([p[0], p[1]]);
            key.dport = u16::from_be_bytes([p[2], p[3]]);
            Class::Lb(L4 {
                key,
                inner_len: total,
                tos: [h[1], 0, 0, 0],
                hlen,
            })
        }
        ETH_P_IPV6 => {
            let Ok(h) = read::<[u8; 40]>(ctx, ETH_LEN) else {
                return Class::Malformed;
            };
            let payload = u16::from_be_bytes([h[4], h[5]]);
            if h[0] >> 4 != 6 || ETH_LEN + V6_LEN + usize::from(payload) > frame {
                return Class::Malformed;
            }
            // Extension headers are not walked: a VIP's traffic carries
            // TCP/UDP directly; anything else passes to the kernel.
            let proto = h[6];
            if proto != 6 && proto != 17 {
                return Class::Pass;
            }
            let need = if proto == 6 { 20 } else { 8 };
            if usize::from(payload) < need {
                return Class::Malformed;
            }
            let Ok(p) = read::<[u8; 4]>(ctx, ETH_LEN + V6_LEN) else {
                return Class::Malformed;
            };
            let mut key = FlowKey {
                proto,
                family: LB_FAMILY_V6,
                sport: u16::from_be_bytes([p[0], p[1]]),
                dport: u16::from_be_bytes([p[2], p[3]]),
                ..FlowKey::default()
            };
            key.src.copy_from_slice(&h[8..24]);
            key.dst.copy_from_slice(&h[24..40]);
            Class::Lb(L4 {
                key,
                inner_len: payload.saturating_add(V6_LEN as u16),
                tos: [h[0], h[1], h[2], h[3]],
                hlen: 20,
            })
        }
        _ => Class::Pass,
    }
}

/// Picks the backend of a new (or moved) flow from the VIP's active ring.
#[inline(always)]
fn maglev(cfg: &LbConfig, vip: &VipInfo, key: &FlowKey) -> Option<u32> {
    if vip.ring_size == 0 || vip.id >= cfg.max_vips {
        return None;
    }
    let slot = flow_hash(key) % vip.ring_size;
    let row = (vip.generation & 1) * cfg.max_vips + vip.id;
    let id = *LB_RING.get(row * cfg.ring_stride + slot)?;
    Some(id)
}

/// The load balancer (XDP, ingress of the load balancer's interface).
#[xdp]
pub fn rampart_lb(ctx: XdpContext) -> u32 {
    if !maybe_vip(&ctx) {
        stat(lb_stat::PASS_NON_VIP);
        return xdp_action::XDP_PASS;
    }
    let len = (ctx.data_end() - ctx.data()) as u64;
    let l4 = match classify(&ctx) {
        Class::Pass => {
            stat(lb_stat::PASS_NON_VIP);
            return xdp_action::XDP_PASS;
        }
        Class::Malformed => {
            stat(lb_stat::MALFORMED);
            return xdp_action::XDP_DROP;
        }
        Class::Fragment => {
            stat(lb_stat::FRAGMENT);
            return xdp_action::XDP_PASS;
        }
        Class::Lb(l4) => l4,
    };
    let vk = VipKey {
        addr: l4.key.dst,
        port: l4.key.dport,
        proto: l4.key.proto,
        family: l4.key.family,
    };
    // SAFETY: the value is copied out at once; updates replace whole entries.
    let Some(vip) = (unsafe { LB_VIPS.get(&vk) }).copied() else {
        stat(lb_stat::PASS_NON_VIP);
        return xdp_action::XDP_PASS;
    };
    let Some(cfg) = LB_CONFIG.get(0).copied() else {
        return xdp_action::XDP_PASS;
    };
    bump(&LB_VIP_COUNTERS, vip.id, len, false);
    // Established flow?
    let mut backend_id = None;
    // SAFETY: copied out at once.
    if let Some(f) = unsafe { LB_FLOWS.get(&l4.key) }.copied() {
        match LB_BACKENDS.get(f.backend) {
            Some(b) if b.flags & BACKEND_DOWN == 0 => {
                stat(lb_stat::FLOW_HIT);
                backend_id = Some(f.backend);
            }
            _ => stat(lb_stat::REPICK),
        }
    } else {
        stat(lb_stat::FLOW_MISS);
    }
    let new_flow = backend_id.is_none();
    let id = match backend_id {
        Some(id) => id,
        None => {
            let Some(id) = maglev(&cfg, &vip, &l4.key) else {
                stat(lb_stat::NO_BACKEND);
                return xdp_action::XDP_DROP;
            };
            let v = FlowValue {
                backend: id,
                vip: vip.id,
            };
            if LB_FLOWS.insert(&l4.key, &v, 0).is_err() {
                stat(lb_stat::FLOW_INSERT_FAIL);
            }
            if let Some(c) = LB_VIP_COUNTERS.get_ptr_mut(vip.id) {
                // SAFETY: per-CPU slot.
                unsafe { (*c).new_flows += 1 };
            }
            id
        }
    };
    let Some(be) = LB_BACKENDS.get(id).copied() else {
        stat(lb_stat::NO_BACKEND);
        return xdp_action::XDP_DROP;
    };
    if be.flags & BACKEND_DOWN != 0 || be.family != l4.key.family {
        stat(lb_stat::NO_BACKEND);
        return xdp_action::XDP_DROP;
    }
    bump(&LB_BACKEND_COUNTERS, id, len, new_flow);
    match vip.mode {
        MODE_IPIP => forward(&ctx, &cfg, &l4, &be, id),
        MODE_DNAT => {
            if new_flow {
                nat_record(&l4.key, &be);
            }
            dnat(&ctx, &cfg, &l4, &be, id)
        }
        _ => {
            stat(lb_stat::NO_BACKEND);
            xdp_action::XDP_DROP
        }
    }
}

/// Stores the reverse translation of a new DNAT flow: the reply
/// (backend:port -> client:port) gets the VIP back as its source.
#[inline(always)]
fn nat_record(key: &FlowKey, be: &rampart_common::lb::Backend) {
    let rk = FlowKey {
        src: be.addr,
        dst: key.src,
        sport: be.port,
        dport: key.sport,
        proto: key.proto,
        family: key.family,
        _pad: [0; 2],
    };
    let v = NatValue {
        addr: key.dst,
        port: key.dport,
        _pad: [0; 2],
    };
    if LB_NAT.insert(&rk, &v, 0).is_err() {
        stat(lb_stat::NAT_INSERT_FAIL);
    }
}

/// DNAT mode: rewrite the destination to the backend, then send it to the
/// backend's next hop.
#[inline(always)]
fn dnat(
    ctx: &XdpContext,
    cfg: &LbConfig,
    l4: &L4,
    be: &rampart_common::lb::Backend,
    id: u32,
) -> u32 {
    let Ok((dmac, smac, out_if)) =
        next_hop(ctx, cfg, be, id, l4.key.src, l4.key.proto, l4.inner_len)
    else {
        stat(lb_stat::FIB_FAIL);
        return xdp_action::XDP_DROP;
    };
    let r = if be.family == LB_FAMILY_V4 {
        lb_nat::dnat_v4(
            ctx,
            l4.hlen,
            l4.key.proto,
            [be.addr[0], be.addr[1], be.addr[2], be.addr[3]],
            be.port,
        )
    } else {
        lb_nat::dnat_v6(ctx, l4.key.proto, be.addr, be.port)
    };
    if r.is_err() || lb_nat::set_macs(ctx, dmac, smac).is_err() {
        stat(lb_stat::ENCAP_FAIL);
        return xdp_action::XDP_DROP;
    }
    stat(lb_stat::DNAT);
    send(ctx, out_if)
}

/// XDP_TX when the next hop is behind the ingress interface, otherwise a
/// redirect to the egress interface.
#[inline(always)]
fn send(ctx: &XdpContext, out_if: u32) -> u32 {
    if out_if == ctx.ingress_ifindex() as u32 {
        stat(lb_stat::TX);
        xdp_action::XDP_TX
    } else {
        stat(lb_stat::REDIRECT);
        // SAFETY: plain helper call.
        unsafe { bpf_redirect(out_if, 0) as u32 }
    }
}

/// Next-hop MACs and egress interface towards backend `id`: the agent's
/// cache, else `bpf_fib_lookup`, else the configured gateway MAC (sent back
/// out of the ingress interface).
#[inline(always)]
fn next_hop(
    ctx: &XdpContext,
    cfg: &LbConfig,
    be: &rampart_common::lb::Backend,
    id: u32,
    src: [u8; 16],
    l4_proto: u8,
    tot_len: u16,
) -> Result<([u8; 6], [u8; 6], u32), ()> {
    if let Some(nh) = LB_NEXTHOP.get(id)
        && nh.valid != 0
    {
        stat(lb_stat::NEXTHOP_CACHED);
        return Ok((nh.dmac, nh.smac, nh.ifindex));
    }
    let v4 = be.family == LB_FAMILY_V4;
    // The MACs the packet arrived with: our address becomes the source if
    // the FIB has no neighbour and the gateway MAC is used.
    let eth = read::<[u8; 12]>(ctx, 0)?;
    let ingress = ctx.ingress_ifindex() as u32;
    // SAFETY: an all-zero bpf_fib_lookup is a valid (empty) request.
    let mut fib: FibParams = unsafe { core::mem::zeroed() };
    fib.family = if v4 { AF_INET } else { AF_INET6 };
    fib.l4_protocol = l4_proto;
    fib.ifindex = ingress;
    fib.__bindgen_anon_1.tot_len = tot_len;
    if v4 {
        fib.__bindgen_anon_3.ipv4_src = u32::from_le_bytes([src[0], src[1], src[2], src[3]]);
        fib.__bindgen_anon_4.ipv4_dst =
            u32::from_le_bytes([be.addr[0], be.addr[1], be.addr[2], be.addr[3]]);
    } else {
        let mut s = [0u32; 4];
        let mut d = [0u32; 4];
        let mut i = 0;
        while i < 4 {
            s[i] = u32::from_le_bytes([src[4 * i], src[4 * i + 1], src[4 * i + 2], src[4 * i + 3]]);
            d[i] = u32::from_le_bytes([
                be.addr[4 * i],
                be.addr[4 * i + 1],
                be.addr[4 * i + 2],
                be.addr[4 * i + 3],
            ]);
            i += 1;
        }
        fib.__bindgen_anon_3.ipv6_src = s;
        fib.__bindgen_anon_4.ipv6_dst = d;
    }
    // SAFETY: `fib` is a properly sized, initialised request.
    let rc = unsafe {
        bpf_fib_lookup(
            ctx.ctx as *mut _,
            &mut fib,
            core::mem::size_of::<FibParams>() as i32,
            0,
        )
    };
    if rc == 0 {
        Ok((fib.dmac, fib.smac, fib.ifindex))
    } else if cfg.gw_mac != [0; 6] {
        let mut ours = [0u8; 6];
        ours.copy_from_slice(&eth[..6]);
        Ok((cfg.gw_mac, ours, ingress))
    } else {
        Err(())
    }
}

/// IP-in-IP mode: encapsulate towards the backend.
#[inline(always)]
fn forward(
    ctx: &XdpContext,
    cfg: &LbConfig,
    l4: &L4,
    be: &rampart_common::lb::Backend,
    id: u32,
) -> u32 {
    let v4 = be.family == LB_FAMILY_V4;
    let mut src = [0u8; 16];
    if v4 {
        src[..4].copy_from_slice(&cfg.src_v4);
    } else {
        src = cfg.src_v6;
    }
    let outer_len = if v4 {
        l4.inner_len.saturating_add(V4_LEN as u16)
    } else {
        l4.inner_len
    };
    let l4_proto = if v4 { IPPROTO_IPIP } else { IPPROTO_IPV6 };
    let Ok((dmac, smac, out_if)) = next_hop(ctx, cfg, be, id, src, l4_proto, outer_len) else {
        stat(lb_stat::FIB_FAIL);
        return xdp_action::XDP_DROP;
    };
    let outer = Outer {
        dmac,
        smac,
        src,
        dst: be.addr,
    };
    let done = if v4 {
        lb_encap::encap_v4(ctx, &outer, l4.inner_len, l4.tos[0])
    } else {
        lb_encap::encap_v6(ctx, &outer, l4.inner_len, l4.tos)
    };
    if done.is_err() {
        stat(lb_stat::ENCAP_FAIL);
        return xdp_action::XDP_DROP;
    }
    send(ctx, out_if)
}

/// DNAT mode's reverse translation (TC ingress of the interface where the
/// backends' replies arrive): a reply matching `LB_NAT` gets the VIP and
/// VIP port back as its source, checksums fixed by the kernel's helpers.
/// Always continues (`TC_ACT_UNSPEC`): the kernel then forwards the reply
/// to the client.
#[classifier]
pub fn rampart_lb_nat(ctx: TcContext) -> i32 {
    if snat(&ctx).is_ok() {
        stat(lb_stat::SNAT);
    }
    TC_ACT_UNSPEC
}

#[inline(always)]
fn snat(ctx: &TcContext) -> Result<(), i64> {
    let et: [u8; 2] = ctx.load(12)?;
    match u16::from_be_bytes(et) {
        ETH_P_IPV4 => {
            let h: [u8; 20] = ctx.load(ETH_LEN)?;
            let hlen = usize::from(h[0] & 0x0f) * 4;
            let proto = h[9];
            if h[0] >> 4 != 4
                || hlen < 20
                || (proto != 6 && proto != 17)
                || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0
            {
                return Err(0);
            }
            let l4 = ETH_LEN + (hlen & 0x3c);
            let p: [u8; 4] = ctx.load(l4)?;
            let mut key = FlowKey {
                sport: u16::from_be_bytes([p[0], p[1]]),
                dport: u16::from_be_bytes([p[2], p[3]]),
                proto,
                family: LB_FAMILY_V4,
                ..FlowKey::default()
            };
            key.src[..4].copy_from_slice(&h[12..16]);
            key.dst[..4].copy_from_slice(&h[16..20]);
            // SAFETY: copied out at once.
            let nat = unsafe { LB_NAT.get(&key) }.copied().ok_or(0)?;
            let co = if proto == 6 { l4 + 16 } else { l4 + 6 };
            let mangled = if proto == 17 { BPF_F_MARK_MANGLED_0 } else { 0 };
            let old = u64::from(u32::from_ne_bytes([h[12], h[13], h[14], h[15]]));
            let vip = [nat.addr[0], nat.addr[1], nat.addr[2], nat.addr[3]];
            let new = u64::from(u32::from_ne_bytes(vip));
            ctx.l4_csum_replace(co, old, new, BPF_F_PSEUDO_HDR | mangled | 4)?;
            ctx.l3_csum_replace(ETH_LEN + 10, old, new, 4)?;
            ctx.store(ETH_LEN + 12, &vip, 0)?;
            set_sport(ctx, l4, co, [p[0], p[1]], nat.port, mangled)
        }
        ETH_P_IPV6 => {
            let h: [u8; 40] = ctx.load(ETH_LEN)?;
            let proto = h[6];
            if h[0] >> 4 != 6 || (proto != 6 && proto != 17) {
                return Err(0);
            }
            let l4 = ETH_LEN + V6_LEN;
            let p: [u8; 4] = ctx.load(l4)?;
            let mut key = FlowKey {
                sport: u16::from_be_bytes([p[0], p[1]]),
                dport: u16::from_be_bytes([p[2], p[3]]),
                proto,
                family: LB_FAMILY_V6,
                ..FlowKey::default()
            };
            key.src.copy_from_slice(&h[8..24]);
            key.dst.copy_from_slice(&h[24..40]);
            // SAFETY: copied out at once.
            let nat = unsafe { LB_NAT.get(&key) }.copied().ok_or(0)?;
            let co = if proto == 6 { l4 + 16 } else { l4 + 6 };
            let mut old = [0u32; 4];
            let mut new = [0u32; 4];
            let mut i = 0;
            while i < 4 {
                old[i] = u32::from_ne_bytes([
                    key.src[4 * i],
                    key.src[4 * i + 1],
                    key.src[4 * i + 2],
                    key.src[4 * i + 3],
                ]);
                new[i] = u32::from_ne_bytes([
                    nat.addr[4 * i],
                    nat.addr[4 * i + 1],
                    nat.addr[4 * i + 2],
                    nat.addr[4 * i + 3],
                ]);
                i += 1;
            }
            // SAFETY: both buffers are 16 bytes on the stack.
            let d = unsafe { bpf_csum_diff(old.as_mut_ptr(), 16, new.as_mut_ptr(), 16, 0) };
            if d < 0 {
                return Err(d);
            }
            // Size 0: `to` is a precomputed difference.
            ctx.l4_csum_replace(co, 0, d as u64 & 0xffff_ffff, BPF_F_PSEUDO_HDR)?;
            ctx.store(ETH_LEN + 8, &nat.addr, 0)?;
            set_sport(ctx, l4, co, [p[0], p[1]], nat.port, 0)
        }
        _ => Err(0),
    }
}

#[inline(always)]
fn set_sport(
    ctx: &TcContext,
    l4: usize,
    co: usize,
    old: [u8; 2],
    port: u16,
    mangled: u64,
) -> Result<(), i64> {
    let new = port.to_be_bytes();
    if new != old {
        let o = u64::from(u16::from_ne_bytes(old));
        let n = u64::from(u16::from_ne_bytes(new));
        ctx.l4_csum_replace(co, o, n, mangled | 2)?;
        ctx.store(l4, &new, 0)?;
    }
    Ok(())
}

/// Backend-side decapsulation (XDP on the backend's interface).
#[xdp]
pub fn rampart_lb_decap(ctx: XdpContext) -> u32 {
    let Ok(et) = read::<[u8; 2]>(&ctx, 12) else {
        return xdp_action::XDP_PASS;
    };
    let r = match u16::from_be_bytes(et) {
        ETH_P_IPV4 => {
            let Ok(h) = read::<[u8; 20]>(&ctx, ETH_LEN) else {
                return xdp_action::XDP_PASS;
            };
            // Only option-less outer headers of unfragmented IPv4-in-IPv4.
            if h[0] != 0x45
                || h[9] != IPPROTO_IPIP
                || u16::from_be_bytes([h[6], h[7]]) & 0x3fff != 0
            {
                return xdp_action::XDP_PASS;
            }
            lb_encap::decap(&ctx, V4_LEN, ETH_P_IPV4)
        }
        ETH_P_IPV6 => {
            let Ok(h) = read::<[u8; 8]>(&ctx, ETH_LEN) else {
                return xdp_action::XDP_PASS;
            };
            if h[0] >> 4 != 6 || h[6] != IPPROTO_IPV6 {
                return xdp_action::XDP_PASS;
            }
            lb_encap::decap(&ctx, V6_LEN, ETH_P_IPV6)
        }
        _ => return xdp_action::XDP_PASS,
    };
    match r {
        Ok(()) => {
            stat(lb_stat::DECAP);
            xdp_action::XDP_PASS
        }
        Err(_) => xdp_action::XDP_DROP,
    }
}
