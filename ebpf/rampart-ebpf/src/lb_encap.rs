//! Header writing for the load balancer: IP-in-IP encapsulation (IPv4 in
//! IPv4, IPv6 in IPv6, as Katran does), its decapsulation, and the IPv4
//! header checksum. Every write is preceded by a bounds check against the
//! packet end, re-read after each head adjustment.

use aya_ebpf::{helpers::bpf_xdp_adjust_head, programs::XdpContext};

/// Ethernet header length.
pub const ETH_LEN: usize = 14;
/// IPv4 header without options.
pub const V4_LEN: usize = 20;
/// IPv6 fixed header.
pub const V6_LEN: usize = 40;
/// IP protocol number of IPv4-in-IP.
pub const IPPROTO_IPIP: u8 = 4;
/// IP protocol number of IPv6-in-IP.
pub const IPPROTO_IPV6: u8 = 41;

/// The packet could not be grown, shrunk or written.
pub struct EncapError;

/// Returns a pointer to `len` bytes at `off`, or an error if they are not
/// inside the packet.
#[inline(always)]
pub fn bytes_at(ctx: &XdpContext, off: usize, len: usize) -> Result<*mut u8, EncapError> {
    let start = ctx.data();
    let end = ctx.data_end();
    if start + off + len > end {
        return Err(EncapError);
    }
    Ok((start + off) as *mut u8)
}

/// RFC 1071 checksum of a 20-byte IPv4 header (checksum field zero).
#[inline(always)]
pub fn ipv4_csum(h: &[u8; V4_LEN]) -> u16 {
    let mut sum: u32 = 0;
    let mut i = 0;
    while i < V4_LEN {
        sum += u32::from(u16::from_be_bytes([h[i], h[i + 1]]));
        i += 2;
    }
    sum = (sum & 0xffff) + (sum >> 16);
    sum = (sum & 0xffff) + (sum >> 16);
    !(sum as u16)
}

/// What the outer headers need.
pub struct Outer {
    /// Destination MAC.
    pub dmac: [u8; 6],
    /// Source MAC.
    pub smac: [u8; 6],
    /// Outer source address (first 4 bytes for IPv4).
    pub src: [u8; 16],
    /// Outer destination address (the backend).
    pub dst: [u8; 16],
}

#[inline(always)]
fn write_eth(ctx: &XdpContext, o: &Outer, ethertype: u16) -> Result<(), EncapError> {
    let p = bytes_at(ctx, 0, ETH_LEN)?;
    let mut e = [0u8; ETH_LEN];
    e[..6].copy_from_slice(&o.dmac);
    e[6..12].copy_from_slice(&o.smac);
    e[12..14].copy_from_slice(&ethertype.to_be_bytes());
    // SAFETY: `bytes_at` checked the 14 bytes are inside the packet.
    unsafe { core::ptr::write_unaligned(p as *mut [u8; ETH_LEN], e) };
    Ok(())
}

/// Prepends an outer IPv4 header to the IPv4 packet after the Ethernet
/// header. `inner_total` is the inner datagram's total length, `tos` its
/// TOS byte (copied outward, RFC 2003).
#[inline(always)]
pub fn encap_v4(ctx: &XdpContext, o: &Outer, inner_total: u16, tos: u8) -> Result<(), EncapError> {
    // SAFETY: the helper only moves the packet start; pointers are re-read.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(V4_LEN as i32)) } != 0 {
        return Err(EncapError);
    }
    write_eth(ctx, o, 0x0800)?;
    let total = inner_total.checked_add(V4_LEN as u16).ok_or(EncapError)?;
    let mut h = [0u8; V4_LEN];
    h[0] = 0x45;
    h[1] = tos;
    h[2..4].copy_from_slice(&total.to_be_bytes());
    // id 0, DF clear (the inner header carries its own DF), TTL 64.
    h[8] = 64;
    h[9] = IPPROTO_IPIP;
    h[12..16].copy_from_slice(&o.src[..4]);
    h[16..20].copy_from_slice(&o.dst[..4]);
    let c = ipv4_csum(&h);
    h[10..12].copy_from_slice(&c.to_be_bytes());
    let p = bytes_at(ctx, ETH_LEN, V4_LEN)?;
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(p as *mut [u8; V4_LEN], h) };
    Ok(())
}

/// Prepends an outer IPv6 header (next header 41) to the IPv6 packet after
/// the Ethernet header. `inner_len` is the inner header plus payload.
#[inline(always)]
pub fn encap_v6(
    ctx: &XdpContext,
    o: &Outer,
    inner_len: u16,
    tc_flow: [u8; 4],
) -> Result<(), EncapError> {
    // SAFETY: as in `encap_v4`.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, -(V6_LEN as i32)) } != 0 {
        return Err(EncapError);
    }
    write_eth(ctx, o, 0x86DD)?;
    let mut h = [0u8; V6_LEN];
    // Version 6 and the inner traffic class; flow label kept.
    h[..4].copy_from_slice(&tc_flow);
    h[4..6].copy_from_slice(&inner_len.to_be_bytes());
    h[6] = IPPROTO_IPV6;
    h[7] = 64;
    h[8..24].copy_from_slice(&o.src);
    h[24..40].copy_from_slice(&o.dst);
    let p = bytes_at(ctx, ETH_LEN, V6_LEN)?;
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(p as *mut [u8; V6_LEN], h) };
    Ok(())
}

/// Removes `outer` bytes of outer IP header after the Ethernet header,
/// keeping the Ethernet addresses and setting `ethertype` for the inner
/// packet.
#[inline(always)]
pub fn decap(ctx: &XdpContext, outer: usize, ethertype: u16) -> Result<(), EncapError> {
    let p = bytes_at(ctx, 0, ETH_LEN)?;
    // SAFETY: bounds checked above.
    let mut e: [u8; ETH_LEN] = unsafe { core::ptr::read_unaligned(p as *const [u8; ETH_LEN]) };
    e[12..14].copy_from_slice(&ethertype.to_be_bytes());
    // SAFETY: as in `encap_v4`.
    if unsafe { bpf_xdp_adjust_head(ctx.ctx, outer as i32) } != 0 {
        return Err(EncapError);
    }
    let p = bytes_at(ctx, 0, ETH_LEN)?;
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(p as *mut [u8; ETH_LEN], e) };
    Ok(())
}
