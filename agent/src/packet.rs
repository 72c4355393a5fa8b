//! Hand-written packet builders for the fixture tests and the benchmark:
//! explicit bytes, so malformed variants are one byte edit away.

use std::net::{Ipv4Addr, Ipv6Addr};

/// IP protocol numbers.
pub const TCP: u8 = 6;
/// UDP.
pub const UDP: u8 = 17;
/// ICMP.
pub const ICMP: u8 = 1;
/// ICMPv6.
pub const ICMPV6: u8 = 58;

/// TCP SYN flag.
pub const SYN: u8 = 0x02;
/// TCP ACK flag.
pub const ACK: u8 = 0x10;
/// TCP FIN flag.
pub const FIN: u8 = 0x01;
/// TCP RST flag.
pub const RST: u8 = 0x04;

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// A UDP header plus `payload` zero bytes.
pub fn udp(sport: u16, dport: u16, payload: usize) -> Vec<u8> {
    let len = u16::try_from(8 + payload).unwrap_or(u16::MAX);
    let mut v = Vec::with_capacity(8 + payload);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&len.to_be_bytes());
    v.extend_from_slice(&[0, 0]);
    v.resize(8 + payload, 0);
    v
}

/// A 20-byte TCP header with `flags`.
pub fn tcp(sport: u16, dport: u16, flags: u8) -> Vec<u8> {
    let mut v = Vec::with_capacity(20);
    v.extend_from_slice(&sport.to_be_bytes());
    v.extend_from_slice(&dport.to_be_bytes());
    v.extend_from_slice(&1u32.to_be_bytes());
    v.extend_from_slice(&0u32.to_be_bytes());
    v.push(5 << 4);
    v.push(flags);
    v.extend_from_slice(&65535u16.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 0]);
    v
}

/// An ICMP/ICMPv6 header (type, code, checksum, id, seq) plus 8 bytes.
pub fn icmp(ty: u8, code: u8, id: u16) -> Vec<u8> {
    let mut v = vec![ty, code, 0, 0];
    v.extend_from_slice(&id.to_be_bytes());
    v.extend_from_slice(&1u16.to_be_bytes());
    v.extend_from_slice(&[0; 8]);
    v
}

fn eth(ethertype: u16) -> Vec<u8> {
    let mut v = Vec::with_capacity(128);
    v.extend_from_slice(&DST_MAC);
    v.extend_from_slice(&SRC_MAC);
    v.extend_from_slice(&ethertype.to_be_bytes());
    v
}

fn csum(data: &[u8]) -> u16 {
    let mut sum = 0u32;
    for c in data.chunks(2) {
        let w = u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]);
        sum += u32::from(w);
    }
    while sum >> 16 != 0 {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    !u16::try_from(sum).unwrap_or(0)
}

/// Ethernet + IPv4 (no options) + `l4`. `frag` is the raw flags/offset field.
pub fn ipv4_frag(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, frag: u16, l4: &[u8]) -> Vec<u8> {
    let mut v = eth(0x0800);
    let total = u16::try_from(20 + l4.len()).unwrap_or(u16::MAX);
    let mut ip = vec![0x45, 0];
    ip.extend_from_slice(&total.to_be_bytes());
    ip.extend_from_slice(&[0x12, 0x34]);
    ip.extend_from_slice(&frag.to_be_bytes());
    ip.push(64);
    ip.push(proto);
    ip.extend_from_slice(&[0, 0]);
    ip.extend_from_slice(&src.octets());
    ip.extend_from_slice(&dst.octets());
    let c = csum(&ip);
    ip[10..12].copy_from_slice(&c.to_be_bytes());
    v.extend_from_slice(&ip);
    v.extend_from_slice(l4);
    v
}

/// Ethernet + IPv4 + `l4`, not fragmented.
pub fn ipv4(src: Ipv4Addr, dst: Ipv4Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ipv4_frag(src, dst, proto, 0, l4)
}

/// Ethernet + IPv6 + raw extension headers `ext` (already chained: `first`
/// is the IPv6 header's next-header) + `l4`.
pub fn ipv6_ext(src: Ipv6Addr, dst: Ipv6Addr, first: u8, ext: &[u8], l4: &[u8]) -> Vec<u8> {
    let mut v = eth(0x86DD);
    let plen = u16::try_from(ext.len() + l4.len()).unwrap_or(u16::MAX);
    v.extend_from_slice(&[0x60, 0, 0, 0]);
    v.extend_from_slice(&plen.to_be_bytes());
    v.push(first);
    v.push(64);
    v.extend_from_slice(&src.octets());
    v.extend_from_slice(&dst.octets());
    v.extend_from_slice(ext);
    v.extend_from_slice(l4);
    v
}

/// Ethernet + IPv6 + `l4`.
pub fn ipv6(src: Ipv6Addr, dst: Ipv6Addr, proto: u8, l4: &[u8]) -> Vec<u8> {
    ipv6_ext(src, dst, proto, &[], l4)
}

/// An 8-byte hop-by-hop / destination-options header (PadN) with `next`.
pub fn ext_opts(next: u8) -> Vec<u8> {
    vec![next, 0, 1, 4, 0, 0, 0, 0]
}

/// An IPv6 fragment header; `offset` in 8-byte units.
pub fn ext_frag(next: u8, offset: u16, more: bool) -> Vec<u8> {
    let fo = (offset << 3) | u16::from(more);
    let mut v = vec![next, 0];
    v.extend_from_slice(&fo.to_be_bytes());
    v.extend_from_slice(&[0, 0, 0, 1]);
    v
}

/// Inserts an 802.1Q (or 802.1ad with `outer`) tag after the MACs.
pub fn vlan(frame: &[u8], vid: u16, outer: bool) -> Vec<u8> {
    let mut v = frame[..12].to_vec();
    v.extend_from_slice(&(if outer { 0x88A8u16 } else { 0x8100 }).to_be_bytes());
    v.extend_from_slice(&vid.to_be_bytes());
    v.extend_from_slice(&frame[12..]);
    v
}

/// An ARP request frame (not IP).
pub fn arp() -> Vec<u8> {
    let mut v = eth(0x0806);
    v.extend_from_slice(&[0, 1, 8, 0, 6, 4, 0, 1]);
    v.extend_from_slice(&SRC_MAC);
    v.extend_from_slice(&[10, 0, 0, 1]);
    v.extend_from_slice(&[0; 6]);
    v.extend_from_slice(&[10, 0, 0, 2]);
    v
}
