//! Map layouts shared by `rampart-agent` (userspace) and `rampart-ebpf` (the
//! XDP/TC programs).
//!
//! Both sides compile these exact `#[repr(C)]` types, so a key or value can
//! never be laid out differently by the writer and the reader. The `user`
//! feature adds `aya::Pod` so the agent can pass them to aya's typed maps.
//!
//! Classification is a "linear bit vector search" (bpf-iptables, Polycube):
//! every packet field is looked up once (LPM trie for addresses, arrays for
//! protocol and ports) and yields a [`Bitmap`] of the rules that field
//! matches; the program ANDs the bitmaps word by word and takes the lowest
//! set bit, which is the first matching rule because rules are numbered in
//! sequence order. The per-packet cost depends on the number of 64-bit words
//! between the bitmaps' first and last non-zero words, never on a walk over
//! the rules.

#![no_std]

pub mod lb;

/// Maximum number of rules per interface and direction.
pub const MAX_RULES: usize = 10_240;
/// Number of 64-bit words in a rule bitmap.
pub const BITMAP_WORDS: usize = MAX_RULES / 64;
/// Number of classification tables: two generations (A/B) times two
/// directions. Table index = `generation * 2 + direction`.
pub const TABLES: usize = 4;
/// Direction index of XDP (ingress) in table indexes and counters.
pub const DIR_INGRESS: u32 = 0;
/// Direction index of TC egress in table indexes and counters.
pub const DIR_EGRESS: u32 = 1;
/// Address family tag in LPM keys: IPv4 (address in the first 4 bytes).
pub const FAMILY_V4: u32 = 4;
/// Address family tag in LPM keys: IPv6.
pub const FAMILY_V6: u32 = 6;
/// Number of port values; each table owns this many slots per port array.
pub const PORTS: usize = 65_536;
/// Number of protocol slots per table in the protocol array.
pub const PROTOS: usize = 256;
/// Port-class id (low 20 bits) of the bitmap of rules that constrain no L4
/// field, used for non-first fragments whose ports are unknown.
pub const CLASS_NO_L4: u32 = 0x000F_FFFF;
/// Bits of a port-class id that hold the table index (`table << 20`).
pub const CLASS_TABLE_SHIFT: u32 = 20;

/// Wide port classes (see [`PortSlot`]) a table may hold in the `WIDE_BM`
/// array; a table with more keeps them in the `CLASSES` hash.
pub const WIDE_SLOTS: usize = 64;
/// [`PortSlot::word`] of a port whose class bitmap spans several words.
pub const PORT_WIDE: u32 = u32::MAX;

/// What the port arrays (`SPORT_CLASS`, `DPORT_CLASS`) hold per table and
/// port value: the class bitmap itself when its non-zero words fit in one
/// word (or it is empty), else where to find it. A port class of a service
/// ACL usually names one rule or a few neighbours, so most packets AND one
/// word and never look up a class bitmap.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct PortSlot {
    /// Index of the one non-zero word, or [`PORT_WIDE`].
    pub word: u32,
    /// Wide class: its index in `WIDE_BM` (`table * WIDE_SLOTS + n`, the
    /// table's n-th wide class) when `TableMeta::wide_in_array` is set, else
    /// its `CLASSES` key.
    pub class: u32,
    /// The word's bits (zero for an empty class).
    pub bits: u64,
}

/// Slots of the per-table constant bitmaps (`CONST_BM[table * CONST_SLOTS +
/// slot]`) and bits of [`TableMeta::const_fields`] / [`TableMeta::hash_fields`]
/// (`1 << slot`). A field is *constant* when every packet value yields the
/// same bitmap (no rule constrains it, or every rule constrains it the same
/// way): the program then skips its lookup.
pub mod field {
    /// Source address, IPv4.
    pub const SRC_V4: u32 = 0;
    /// Source address, IPv6.
    pub const SRC_V6: u32 = 1;
    /// Destination address, IPv4.
    pub const DST_V4: u32 = 2;
    /// Destination address, IPv6.
    pub const DST_V6: u32 = 3;
    /// Source port / ICMP type (constant slots only).
    pub const SPORT: u32 = 4;
    /// Destination port / ICMP code (constant slots only).
    pub const DPORT: u32 = 5;
    /// Number of slots per table.
    pub const SLOTS: u32 = 6;
}

/// Rule action stored in [`RuleInfo::action`] and [`TableMeta::default_action`].
pub const ACTION_PERMIT: u8 = 1;
/// Rule action: drop.
pub const ACTION_DENY: u8 = 2;

/// [`RuleInfo::flags`]: drop packets of established flows too.
pub const RULE_DROP_ESTABLISHED: u8 = 1;

/// Verdict reasons, the index (within a direction) into the `REASONS`
/// per-CPU counter array. Every packet is counted under exactly one.
pub mod reason {
    /// Passed by a permit rule (new flow).
    pub const PASS_RULE: u32 = 0;
    /// Passed by the interface's default action (new flow).
    pub const PASS_DEFAULT: u32 = 1;
    /// Passed because it belongs to a tracked (established) flow.
    pub const PASS_ESTABLISHED: u32 = 2;
    /// Not IPv4/IPv6 (ARP, LLDP, ...): never filtered.
    pub const PASS_NON_IP: u32 = 3;
    /// Dropped by a deny rule.
    pub const DROP_RULE: u32 = 4;
    /// Dropped by the interface's default action.
    pub const DROP_DEFAULT: u32 = 5;
    /// Dropped because headers are truncated or inconsistent.
    pub const DROP_MALFORMED: u32 = 6;
    /// Dropped by a deny rule with `drop_established` although the flow was
    /// tracked.
    pub const DROP_ESTABLISHED: u32 = 7;
    /// Dropped because no policy generation is active (should not happen
    /// once the agent has applied a policy).
    pub const DROP_NO_POLICY: u32 = 8;
    /// Number of reasons; the array holds `2 * COUNT` slots (per direction).
    pub const COUNT: u32 = 9;
    /// Names, in index order, for metrics labels.
    pub const NAMES: [&str; COUNT as usize] = [
        "pass_rule",
        "pass_default",
        "pass_established",
        "pass_non_ip",
        "drop_rule",
        "drop_default",
        "drop_malformed",
        "drop_established",
        "drop_no_policy",
    ];
}

/// Conntrack event counters (index into the `CT_STATS` per-CPU array).
pub mod ct_stat {
    /// New entries inserted.
    pub const INSERTS: u32 = 0;
    /// Entries found expired on lookup and deleted by the program.
    pub const EXPIRED: u32 = 1;
    /// Insert failures (map full without LRU room, or other error).
    pub const INSERT_FAILED: u32 = 2;
    /// TCP flows that reached CLOSED (RST, or FIN from both sides).
    pub const CLOSED: u32 = 3;
    /// Number of counters.
    pub const COUNT: u32 = 4;
}

/// Conntrack states kept in [`CtValue::state`].
pub mod ct_state {
    /// TCP SYN seen from the originator only.
    pub const SYN_SENT: u8 = 1;
    /// Traffic seen in both directions (or a non-TCP flow).
    pub const ESTABLISHED: u8 = 2;
    /// FIN seen from one side.
    pub const CLOSING: u8 = 3;
    /// RST seen, or FIN from both sides: expires after the close timeout.
    pub const CLOSED: u8 = 4;
}

/// A set of rule indexes, one bit per rule (bit `i % 64` of word `i / 64`).
///
/// `lo..hi` bounds the non-zero words so that the AND loop only visits words
/// where every field could have a bit set; an empty set has `lo == hi`.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy)]
pub struct Bitmap {
    /// First word that may be non-zero.
    pub lo: u32,
    /// One past the last word that may be non-zero.
    pub hi: u32,
    /// The bits.
    pub words: [u64; BITMAP_WORDS],
}

/// The part of an LPM trie key after the prefix length: the table and family
/// are always matched in full (the agent adds 64 bits to every prefix length),
/// then the address.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct LpmData {
    /// Table index, stored big-endian so it forms the key's leading bits.
    pub table: [u8; 4],
    /// [`FAMILY_V4`] or [`FAMILY_V6`], big-endian.
    pub family: [u8; 4],
    /// Address in network byte order; IPv4 uses the first 4 bytes.
    pub addr: [u8; 16],
}

/// Prefix bits taken by [`LpmData::table`] and [`LpmData::family`].
pub const LPM_HEADER_BITS: u32 = 64;

/// Per-table parameters (array indexed by table).
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default)]
pub struct TableMeta {
    /// Number of rules in the table.
    pub rule_count: u32,
    /// [`ACTION_PERMIT`] or [`ACTION_DENY`] when no rule matches.
    pub default_action: u8,
    /// Non-zero if some deny rule has [`RULE_DROP_ESTABLISHED`]: tracked
    /// flows must then be classified too.
    pub has_drop_established: u8,
    /// Non-zero if the table was written by the agent (a table never written
    /// drops with `DROP_NO_POLICY`).
    pub valid: u8,
    /// Bit `1 << field::*` set: that field is constant, its bitmap is in
    /// `CONST_BM` and no lookup is needed.
    pub const_fields: u8,
    /// Bit `1 << field::{SRC,DST}_V{4,6}` set: the field's prefixes have at
    /// most [`MAX_HASH_LENS`] distinct non-zero lengths, listed in
    /// `prefix_lens`. The program then probes the prefix hash
    /// (`SRC_HASH`/`DST_HASH`) once per length, longest first, and falls back
    /// to the family's /0 bitmap in `CONST_BM`: the longest-prefix match
    /// without a trie walk. Other fields use the LPM trie.
    pub hash_fields: u8,
    /// Non-zero if the table's wide port classes are in `WIDE_BM` (at most
    /// [`WIDE_SLOTS`]) rather than in the `CLASSES` hash.
    pub wide_in_array: u8,
    /// Padding.
    pub _pad: [u8; 2],
    /// Per address slot (`field::SRC_V4..=DST_V6`): how many entries of
    /// `prefix_lens` are in use.
    pub prefix_len_count: [u8; 4],
    /// Per address slot: the distinct prefix lengths, longest first.
    pub prefix_lens: [[u8; MAX_HASH_LENS]; 4],
}

/// Most distinct prefix lengths an address field may have and still be
/// looked up by hash probes (see [`TableMeta::hash_fields`]).
pub const MAX_HASH_LENS: usize = 4;

/// [`LpmData::family`] of a prefix-hash key: the prefix length in byte 2,
/// so one hash holds every length (trie keys hold `[0, 0, 0, family]`).
pub const fn hash_family(family: u8, len: u8) -> [u8; 4] {
    [0, 0, len, family]
}

/// Global settings (array of one element).
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default)]
pub struct Config {
    /// Active generation (0 or 1): packets use tables `generation * 2 + dir`.
    /// Read once per packet, so a packet never mixes two rule sets.
    pub generation: u32,
    /// Padding.
    pub _pad: u32,
    /// Timeout of a TCP flow that has seen only the SYN, in nanoseconds.
    pub tcp_syn_timeout_ns: u64,
    /// Timeout of an established TCP flow.
    pub tcp_established_timeout_ns: u64,
    /// Timeout of a closing/closed TCP flow.
    pub tcp_closed_timeout_ns: u64,
    /// Timeout of UDP and other flows.
    pub udp_timeout_ns: u64,
    /// Timeout of ICMP echo flows.
    pub icmp_timeout_ns: u64,
}

/// What the program needs to know about a matched rule.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default)]
pub struct RuleInfo {
    /// The rule's sequence number (for log events).
    pub sequence: u32,
    /// Log one in `log_sample` matches; 0 = never.
    pub log_sample: u32,
    /// [`ACTION_PERMIT`] or [`ACTION_DENY`].
    pub action: u8,
    /// `RULE_*` flags.
    pub flags: u8,
    /// Padding.
    pub _pad: [u8; 6],
}

/// Per-rule (and per-reason) packet and byte counters, per CPU.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default)]
pub struct Counter {
    /// Packets counted.
    pub packets: u64,
    /// Bytes counted (frame length as seen by the hook).
    pub bytes: u64,
}

/// Conntrack key: the flow's endpoints in a canonical order (the lower
/// `(addr, port)` first), so both directions of a flow find one entry.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub struct CtKey {
    /// Lower endpoint address (IPv4 in the first 4 bytes).
    pub addr_lo: [u8; 16],
    /// Higher endpoint address.
    pub addr_hi: [u8; 16],
    /// Port (or ICMP echo id) of the lower endpoint, host order.
    pub port_lo: u16,
    /// Port of the higher endpoint.
    pub port_hi: u16,
    /// IP protocol.
    pub proto: u8,
    /// 4 or 6.
    pub family: u8,
    /// Padding.
    pub _pad: [u8; 2],
}

/// Conntrack value.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default)]
pub struct CtValue {
    /// `bpf_ktime_get_ns` of the last packet.
    pub last_seen_ns: u64,
    /// Packets seen.
    pub packets: u64,
    /// One of [`ct_state`].
    pub state: u8,
    /// 1 if the originator is the `lo` endpoint of the key.
    pub origin_is_lo: u8,
    /// Bit 0: FIN seen from `lo`; bit 1: FIN seen from `hi`.
    pub fin_seen: u8,
    /// Direction (`DIR_*`) the first packet was seen in.
    pub origin_dir: u8,
    /// Low 32 bits of `jiffies` when `last_seen_ns` was last written. A
    /// packet in the same kernel tick skips the clock read and the timeout
    /// check (nothing can expire within one tick), so the timestamp may be up
    /// to one tick old and a timeout shorter than a tick lasts one tick.
    pub tick: u32,
}

/// A sampled log event sent through the `LOG_EVENTS` ring buffer.
#[repr(C)]
#[derive(bytemuck::Pod, bytemuck::Zeroable, Clone, Copy, Debug, Default)]
pub struct LogEvent {
    /// Source address (IPv4 in the first 4 bytes).
    pub src: [u8; 16],
    /// Destination address.
    pub dst: [u8; 16],
    /// Rule sequence number.
    pub sequence: u32,
    /// Source port (or ICMP type).
    pub sport: u16,
    /// Destination port (or ICMP code).
    pub dport: u16,
    /// Direction (`DIR_*`).
    pub direction: u8,
    /// 4 or 6.
    pub family: u8,
    /// IP protocol.
    pub proto: u8,
    /// [`ACTION_PERMIT`] or [`ACTION_DENY`].
    pub action: u8,
}

#[cfg(feature = "user")]
mod pod {
    //! aya reads and writes map entries as raw bytes; these types are plain
    //! `#[repr(C)]` data with explicit padding, so any bit pattern is valid.
    #![allow(unsafe_code, reason = "aya::Pod is an unsafe marker trait")]

    use super::{
        Bitmap, Config, Counter, CtKey, CtValue, LogEvent, LpmData, PortSlot, RuleInfo, TableMeta,
    };

    unsafe impl aya::Pod for Bitmap {}
    unsafe impl aya::Pod for LpmData {}
    unsafe impl aya::Pod for TableMeta {}
    unsafe impl aya::Pod for Config {}
    unsafe impl aya::Pod for RuleInfo {}
    unsafe impl aya::Pod for Counter {}
    unsafe impl aya::Pod for CtKey {}
    unsafe impl aya::Pod for CtValue {}
    unsafe impl aya::Pod for LogEvent {}
    unsafe impl aya::Pod for PortSlot {}
}
