//! DNAT mode's header rewriting: the destination address (and port) of a
//! client's packet becomes the backend's, with RFC 1624 incremental updates
//! of the IPv4 header checksum and the TCP/UDP checksum (whose pseudo header
//! covers the addresses). The reverse translation runs in TC
//! (`rampart_lb_nat`), where the kernel's checksum helpers also handle
//! offloaded (`CHECKSUM_PARTIAL`) packets.

use aya_ebpf::programs::XdpContext;

use crate::lb_encap::{ETH_LEN, EncapError, V6_LEN, bytes_at};

/// Adds the one's-complement difference of replacing `old` by `new` (both
/// an even number of bytes) to `acc`.
#[inline(always)]
fn diff<const N: usize>(mut acc: u32, old: &[u8; N], new: &[u8; N]) -> u32 {
    let mut i = 0;
    while i + 1 < N {
        acc += u32::from(!u16::from_be_bytes([old[i], old[i + 1]]));
        acc += u32::from(u16::from_be_bytes([new[i], new[i + 1]]));
        i += 2;
    }
    acc
}

/// Folds a 32-bit one's-complement sum to 16 bits.
#[inline(always)]
fn fold(mut s: u32) -> u16 {
    s = (s & 0xffff) + (s >> 16);
    s = (s & 0xffff) + (s >> 16);
    s as u16
}

/// RFC 1624 eqn. 3: `HC' = ~(~HC + ~m + m')`, `acc` holding `~m + m'`.
#[inline(always)]
fn apply(hc: u16, acc: u32) -> u16 {
    !fold(u32::from(!hc) + acc)
}

/// Where the packet's L4 checksum field is and whether it is optional
/// (IPv4 UDP: 0 = none, left alone).
#[inline(always)]
fn csum_field(proto: u8, l4_off: usize) -> usize {
    if proto == 6 { l4_off + 16 } else { l4_off + 6 }
}

/// Rewrites an IPv4 packet's destination to `addr:port`. `hlen` is the IPv4
/// header length (already validated), `proto` 6 or 17.
#[inline(always)]
pub fn dnat_v4(
    ctx: &XdpContext,
    hlen: usize,
    proto: u8,
    addr: [u8; 4],
    port: u16,
) -> Result<(), EncapError> {
    let ip = bytes_at(ctx, ETH_LEN, 20)?;
    // SAFETY: `bytes_at` checked the 20 bytes are inside the packet.
    let mut h: [u8; 20] = unsafe { core::ptr::read_unaligned(ip as *const [u8; 20]) };
    let old_addr = [h[16], h[17], h[18], h[19]];
    let l4 = ETH_LEN + (hlen & 0x3c);
    let pp = bytes_at(ctx, l4, 4)?;
    // SAFETY: bounds checked above.
    let old_ports: [u8; 4] = unsafe { core::ptr::read_unaligned(pp as *const [u8; 4]) };
    let mut new_ports = old_ports;
    new_ports[2..4].copy_from_slice(&port.to_be_bytes());
    // IPv4 header checksum: the address only.
    let ipc = u16::from_be_bytes([h[10], h[11]]);
    let ipc = apply(ipc, diff(0, &old_addr, &addr));
    h[10..12].copy_from_slice(&ipc.to_be_bytes());
    h[16..20].copy_from_slice(&addr);
    // L4 checksum: pseudo-header address and the port.
    let co = csum_field(proto, l4);
    let cp = bytes_at(ctx, co, 2)?;
    // SAFETY: bounds checked above.
    let old_c = u16::from_be_bytes(unsafe { core::ptr::read_unaligned(cp as *const [u8; 2]) });
    if !(proto == 17 && old_c == 0) {
        let acc = diff(diff(0, &old_addr, &addr), &old_ports, &new_ports);
        let mut c = apply(old_c, acc);
        if proto == 17 && c == 0 {
            c = 0xffff;
        }
        // SAFETY: bounds checked above.
        unsafe { core::ptr::write_unaligned(cp as *mut [u8; 2], c.to_be_bytes()) };
    }
    let pp = bytes_at(ctx, l4, 4)?;
    // SAFETY: bounds checked above (re-derived after the checksum write).
    unsafe { core::ptr::write_unaligned(pp as *mut [u8; 4], new_ports) };
    let ip = bytes_at(ctx, ETH_LEN, 20)?;
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(ip as *mut [u8; 20], h) };
    Ok(())
}

/// Rewrites an IPv6 packet's destination to `addr:port` (TCP/UDP directly
/// after the fixed header; the UDP checksum is mandatory in IPv6).
#[inline(always)]
pub fn dnat_v6(ctx: &XdpContext, proto: u8, addr: [u8; 16], port: u16) -> Result<(), EncapError> {
    let dp = bytes_at(ctx, ETH_LEN + 24, 16)?;
    // SAFETY: `bytes_at` checked the 16 bytes are inside the packet.
    let old_addr: [u8; 16] = unsafe { core::ptr::read_unaligned(dp as *const [u8; 16]) };
    let l4 = ETH_LEN + V6_LEN;
    let pp = bytes_at(ctx, l4, 4)?;
    // SAFETY: bounds checked above.
    let old_ports: [u8; 4] = unsafe { core::ptr::read_unaligned(pp as *const [u8; 4]) };
    let mut new_ports = old_ports;
    new_ports[2..4].copy_from_slice(&port.to_be_bytes());
    let co = csum_field(proto, l4);
    let cp = bytes_at(ctx, co, 2)?;
    // SAFETY: bounds checked above.
    let old_c = u16::from_be_bytes(unsafe { core::ptr::read_unaligned(cp as *const [u8; 2]) });
    let acc = diff(diff(0, &old_addr, &addr), &old_ports, &new_ports);
    let mut c = apply(old_c, acc);
    if proto == 17 && c == 0 {
        c = 0xffff;
    }
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(cp as *mut [u8; 2], c.to_be_bytes()) };
    let pp = bytes_at(ctx, l4, 4)?;
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(pp as *mut [u8; 4], new_ports) };
    let dp = bytes_at(ctx, ETH_LEN + 24, 16)?;
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(dp as *mut [u8; 16], addr) };
    Ok(())
}

/// Writes the Ethernet addresses, keeping the EtherType.
#[inline(always)]
pub fn set_macs(ctx: &XdpContext, dmac: [u8; 6], smac: [u8; 6]) -> Result<(), EncapError> {
    let p = bytes_at(ctx, 0, 12)?;
    let mut e = [0u8; 12];
    e[..6].copy_from_slice(&dmac);
    e[6..].copy_from_slice(&smac);
    // SAFETY: bounds checked above.
    unsafe { core::ptr::write_unaligned(p as *mut [u8; 12], e) };
    Ok(())
}
