//! Header parsing shared by XDP and TC. Every read is bounds-checked against
//! the end of the linear packet data; anything truncated or inconsistent is
//! `Malformed` and dropped, never guessed at.
//!
//! Documented behaviour:
//! - Up to two VLAN tags (802.1Q / 802.1ad) are skipped.
//! - IPv4: version 4, IHL >= 5, total length >= header and <= frame. Non-first
//!   fragments (offset > 0) carry no L4 header: they are classified with
//!   `l4 = false` (only rules that constrain no port/ICMP field can match)
//!   and bypass conntrack.
//! - IPv6: hop-by-hop, routing, destination options, AH and fragment headers
//!   are walked (at most 8); more, or a truncated one, is `Malformed`. A
//!   non-first fragment is treated like IPv4's. ESP and "no next header"
//!   end the walk with that protocol.
//! - TCP needs a full 20-byte header with data offset >= 5, UDP 8 bytes,
//!   ICMP/ICMPv6 4 bytes (8 for echo, whose identifier keys conntrack).

use core::mem::size_of;

/// Frame offsets are capped so the verifier can bound every pointer.
const MAX_OFFSET: usize = 1024;
/// Maximum IPv6 extension headers walked.
const MAX_EXT_HEADERS: usize = 8;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86DD;
const ETH_P_8021Q: u16 = 0x8100;
const ETH_P_8021AD: u16 = 0x88A8;

/// IP protocol numbers used by the classifier.
pub const IPPROTO_ICMP: u8 = 1;
/// TCP.
pub const IPPROTO_TCP: u8 = 6;
/// UDP.
pub const IPPROTO_UDP: u8 = 17;
/// ICMPv6.
pub const IPPROTO_ICMPV6: u8 = 58;

/// TCP flags.
pub const TCP_FIN: u8 = 0x01;
/// SYN.
pub const TCP_SYN: u8 = 0x02;
/// RST.
pub const TCP_RST: u8 = 0x04;
/// ACK.
pub const TCP_ACK: u8 = 0x10;

/// A parsed IP packet, as much as the classifier and conntrack need.
pub struct Pkt {
    /// 4 or 6.
    pub family: u8,
    /// Final IP protocol (after IPv6 extension headers).
    pub proto: u8,
    /// Source address, raw network-order bytes (IPv4 in the first 4).
    pub src: [u64; 2],
    /// Destination address.
    pub dst: [u64; 2],
    /// Value looked up in the source-port dimension (port, or ICMP type).
    pub cls_sport: u16,
    /// Value looked up in the destination-port dimension (port, or ICMP code).
    pub cls_dport: u16,
    /// Conntrack ports (TCP/UDP ports, or the ICMP echo id on both).
    pub ct_sport: u16,
    /// See `ct_sport`.
    pub ct_dport: u16,
    /// False for non-first fragments: L4 fields are unknown.
    pub l4: bool,
    /// True if the packet can be tracked (TCP, UDP, ICMP echo).
    pub trackable: bool,
    /// TCP flags (0 for other protocols).
    pub tcp_flags: u8,
}

/// Result of parsing a frame.
pub enum Parsed {
    /// Not IPv4/IPv6: never filtered.
    NonIp,
    /// An IP packet.
    Ip(Pkt),
}

/// The frame is truncated or its headers are inconsistent.
pub struct Malformed;

#[inline(always)]
fn ptr_at<T>(start: usize, end: usize, off: usize) -> Result<*const T, Malformed> {
    if off > MAX_OFFSET {
        return Err(Malformed);
    }
    let p = start + off;
    if p + size_of::<T>() > end {
        return Err(Malformed);
    }
    Ok(p as *const T)
}

/// Reads a header with loads as wide as `T`'s fields. `read_unaligned`
/// would make LLVM's BPF backend load byte by byte (it may not assume the
/// target handles unaligned loads); the kernel's verifier accepts unaligned
/// packet loads on the architectures this runs on (no strict alignment), and
/// the program touches the packet only through these bounds-checked reads.
#[inline(always)]
fn read<T: Copy>(start: usize, end: usize, off: usize) -> Result<T, Malformed> {
    let p = ptr_at::<T>(start, end, off)?;
    // SAFETY: `ptr_at` checked that the bytes lie inside the packet; see
    // above for the alignment.
    Ok(unsafe { core::ptr::read(p) })
}

/// Semantic bound: `needed` bytes (an offset) must lie within the IP
/// datagram, whose end offset is `limit`.
#[inline(always)]
fn within(needed: usize, limit: usize) -> Result<(), Malformed> {
    if needed > limit {
        Err(Malformed)
    } else {
        Ok(())
    }
}

#[inline(always)]
fn be16(start: usize, end: usize, off: usize) -> Result<u16, Malformed> {
    Ok(u16::from_be(read::<u16>(start, end, off)?))
}

/// Parses the frame between `start` and `end` (the linear data);
/// `frame_len` is the full length (larger than the linear data for skbs).
#[inline(always)]
pub fn parse(start: usize, end: usize, frame_len: usize) -> Result<Parsed, Malformed> {
    let mut ethertype = match be16(start, end, 12) {
        Ok(t) => t,
        // Shorter than an Ethernet header: not something we can classify.
        Err(_) => return Err(Malformed),
    };
    let mut off = 14usize;
    // Up to two VLAN tags (QinQ).
    if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
        ethertype = be16(start, end, off + 2)?;
        off += 4;
        if ethertype == ETH_P_8021Q || ethertype == ETH_P_8021AD {
            ethertype = be16(start, end, off + 2)?;
            off += 4;
        }
    }
    match ethertype {
        ETH_P_IPV4 => parse_v4(start, end, off, frame_len).map(Parsed::Ip),
        ETH_P_IPV6 => parse_v6(start, end, off, frame_len).map(Parsed::Ip),
        _ => Ok(Parsed::NonIp),
    }
}

/// Fixed IPv4 header.
#[derive(Clone, Copy)]
#[repr(C)]
struct V4Hdr {
    vihl: u8,
    tos: u8,
    total: u16,
    id: u16,
    frag: u16,
    ttl: u8,
    proto: u8,
    csum: u16,
    src: u32,
    dst: u32,
}

/// Fixed IPv6 header.
#[derive(Clone, Copy)]
#[repr(C)]
struct V6Hdr {
    vtc: [u8; 4],
    payload: u16,
    next: u8,
    hops: u8,
    src: [u64; 2],
    dst: [u64; 2],
}

/// Fixed TCP header.
#[derive(Clone, Copy)]
#[repr(C)]
struct TcpHdr {
    sport: u16,
    dport: u16,
    seq: u32,
    ack: u32,
    doff: u8,
    flags: u8,
    window: u16,
    csum: u16,
    urg: u16,
}

#[inline(always)]
fn parse_v4(start: usize, end: usize, off: usize, frame_len: usize) -> Result<Pkt, Malformed> {
    let h: V4Hdr = read(start, end, off)?;
    if h.vihl >> 4 != 4 {
        return Err(Malformed);
    }
    let hlen = usize::from(h.vihl & 0x0f) * 4;
    if hlen < 20 {
        return Err(Malformed);
    }
    let total = usize::from(u16::from_be(h.total));
    // The header (with options) lies inside the datagram, and the datagram
    // inside the frame (trailing Ethernet padding is fine).
    if total < hlen || off + total > frame_len {
        return Err(Malformed);
    }
    let frag = u16::from_be(h.frag);
    // Little-endian target: the low 32 bits of the u64 hold the address's
    // first 4 bytes in memory, exactly where the LPM key expects them.
    let mut pkt = Pkt {
        family: 4,
        proto: h.proto,
        src: [u64::from(h.src), 0],
        dst: [u64::from(h.dst), 0],
        cls_sport: 0,
        cls_dport: 0,
        ct_sport: 0,
        ct_dport: 0,
        l4: true,
        trackable: false,
        tcp_flags: 0,
    };
    if frag & 0x1fff != 0 {
        pkt.l4 = false;
        return Ok(pkt);
    }
    parse_l4(&mut pkt, start, end, off + hlen, off + total, false)?;
    Ok(pkt)
}

#[inline(always)]
fn parse_v6(start: usize, end: usize, off: usize, frame_len: usize) -> Result<Pkt, Malformed> {
    let h: V6Hdr = read(start, end, off)?;
    if h.vtc[0] >> 4 != 6 {
        return Err(Malformed);
    }
    let payload = usize::from(u16::from_be(h.payload));
    let limit = off + 40 + payload;
    if limit > frame_len {
        return Err(Malformed);
    }
    let mut next = h.next;
    let mut pkt = Pkt {
        family: 6,
        proto: next,
        src: h.src,
        dst: h.dst,
        cls_sport: 0,
        cls_dport: 0,
        ct_sport: 0,
        ct_dport: 0,
        l4: true,
        trackable: false,
        tcp_flags: 0,
    };
    let mut pos = off + 40;
    let mut i = 0;
    while i < MAX_EXT_HEADERS {
        match next {
            0 | 43 | 60 | 51 | 44 => {
                within(pos + 8, limit)?;
                let e: [u8; 8] = read(start, end, pos)?;
                let cur = next;
                next = e[0];
                if cur == 44 {
                    pos += 8;
                    if u16::from_be_bytes([e[2], e[3]]) >> 3 != 0 {
                        pkt.proto = next;
                        pkt.l4 = false;
                        return Ok(pkt);
                    }
                } else if cur == 51 {
                    pos += (usize::from(e[1]) + 2) * 4;
                } else {
                    pos += (usize::from(e[1]) + 1) * 8;
                }
            }
            _ => {
                pkt.proto = next;
                within(pos, limit)?;
                parse_l4(&mut pkt, start, end, pos, limit, true)?;
                return Ok(pkt);
            }
        }
        if pos > MAX_OFFSET {
            return Err(Malformed);
        }
        i += 1;
    }
    // Longer extension-header chains than we walk are refused, not guessed.
    Err(Malformed)
}

#[inline(always)]
fn parse_l4(
    pkt: &mut Pkt,
    start: usize,
    end: usize,
    off: usize,
    limit: usize,
    v6: bool,
) -> Result<(), Malformed> {
    match pkt.proto {
        IPPROTO_TCP => {
            // Full fixed header required, and a sane data offset.
            within(off + 20, limit)?;
            let t: TcpHdr = read(start, end, off)?;
            if t.doff >> 4 < 5 {
                return Err(Malformed);
            }
            pkt.cls_sport = u16::from_be(t.sport);
            pkt.cls_dport = u16::from_be(t.dport);
            pkt.tcp_flags = t.flags;
            pkt.ct_sport = pkt.cls_sport;
            pkt.ct_dport = pkt.cls_dport;
            pkt.trackable = true;
        }
        IPPROTO_UDP => {
            within(off + 8, limit)?;
            let u: [u16; 4] = read(start, end, off)?;
            pkt.cls_sport = u16::from_be(u[0]);
            pkt.cls_dport = u16::from_be(u[1]);
            pkt.ct_sport = pkt.cls_sport;
            pkt.ct_dport = pkt.cls_dport;
            pkt.trackable = true;
        }
        IPPROTO_ICMP | IPPROTO_ICMPV6 => {
            if (pkt.proto == IPPROTO_ICMPV6) != v6 {
                // ICMP in IPv6 or ICMPv6 in IPv4: classify by protocol only.
                return Ok(());
            }
            within(off + 4, limit)?;
            let c: [u8; 4] = read(start, end, off)?;
            let ty = c[0];
            pkt.cls_sport = u16::from(ty);
            pkt.cls_dport = u16::from(c[1]);
            let echo = if v6 {
                ty == 128 || ty == 129
            } else {
                ty == 8 || ty == 0
            };
            if echo {
                within(off + 8, limit)?;
                let e: [u8; 8] = read(start, end, off)?;
                let id = u16::from_be_bytes([e[4], e[5]]);
                pkt.ct_sport = id;
                pkt.ct_dport = id;
                pkt.trackable = true;
            }
        }
        _ => {}
    }
    Ok(())
}
