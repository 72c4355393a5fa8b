//! Maps, the two program entry points and the verdict logic.

use aya_ebpf::{
    bindings::{TC_ACT_SHOT, TC_ACT_UNSPEC, xdp_action},
    helpers::{bpf_get_prandom_u32, bpf_jiffies64, bpf_ktime_get_ns},
    macros::{classifier, map, xdp},
    maps::{
        Array, HashMap, LruHashMap, PerCpuArray, ProgramArray, RingBuf,
        lpm_trie::{Key, LpmTrie},
    },
    programs::{TcContext, XdpContext},
};
use rampart_common::{
    ACTION_DENY, ACTION_PERMIT, BITMAP_WORDS, Bitmap, CLASS_NO_L4, CLASS_TABLE_SHIFT, Config,
    Counter, CtKey, CtValue, DIR_EGRESS, DIR_INGRESS, FAMILY_V4, FAMILY_V6, LPM_HEADER_BITS,
    LogEvent, LpmData, MAX_RULES, PORT_WIDE, PORTS, PROTOS, PortSlot, RULE_DROP_ESTABLISHED,
    RuleInfo, TABLES, TableMeta, WIDE_SLOTS, ct_stat, ct_state, field, hash_family, reason,
};

use crate::parse::{self, Parsed, Pkt, TCP_ACK, TCP_FIN, TCP_RST, TCP_SYN};

// ===== maps =====
// All maps are pinned by name under the interface's pin directory so that a
// restarted agent adopts them (and enforcement never stops).

/// Global settings: active generation and conntrack timeouts.
#[map]
static CONFIG: Array<Config> = Array::pinned(1, 0);
/// Per-table rule count, default action and flags.
#[map]
static TABLE_META: Array<TableMeta> = Array::pinned(TABLES as u32, 0);
/// Source prefix -> bitmap of rules whose source set covers it.
#[map]
static SRC_LPM: LpmTrie<LpmData, Bitmap> = LpmTrie::pinned(131_072, 0);
/// Destination prefix -> bitmap.
#[map]
static DST_LPM: LpmTrie<LpmData, Bitmap> = LpmTrie::pinned(131_072, 0);
/// Source prefixes of fields with few prefix lengths (`hash_fields`), keyed
/// with the length in the key (`hash_family`) -> the bitmap the trie would
/// hold: one hash probe per length instead of a trie walk.
#[map]
static SRC_HASH: HashMap<LpmData, Bitmap> =
    HashMap::pinned(131_072, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
/// Destination prefixes of `hash_fields` -> bitmap.
#[map]
static DST_HASH: HashMap<LpmData, Bitmap> =
    HashMap::pinned(131_072, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
/// `table * field::SLOTS + field` -> the bitmap of a constant field (see
/// `TableMeta::const_fields`).
#[map]
static CONST_BM: Array<Bitmap> = Array::pinned(TABLES as u32 * field::SLOTS, 0);
/// `table * 256 + protocol` -> bitmap of rules matching that protocol.
#[map]
static PROTO_BM: Array<Bitmap> = Array::pinned((TABLES * PROTOS) as u32, 0);
/// `table * 65536 + source port (or ICMP type)` -> the port's class as a
/// one-word bitmap or a wide-class reference (`PortSlot`).
#[map]
static SPORT_CLASS: Array<PortSlot> = Array::pinned((TABLES * PORTS) as u32, 0);
/// `table * 65536 + destination port (or ICMP code)` -> `PortSlot`.
#[map]
static DPORT_CLASS: Array<PortSlot> = Array::pinned((TABLES * PORTS) as u32, 0);
/// `table * WIDE_SLOTS + class` -> bitmap of a wide port class, for tables
/// with few of them: an array lookup is a load, a hash lookup a call.
#[map]
static WIDE_BM: Array<Bitmap> = Array::pinned((TABLES * WIDE_SLOTS) as u32, 0);
/// Port-class id -> bitmap, for tables with more wide classes than
/// `WIDE_BM` holds, and the non-first-fragment class (`CLASS_NO_L4`).
#[map]
static CLASSES: HashMap<u32, Bitmap> =
    HashMap::pinned(262_144, aya_ebpf::bindings::BPF_F_NO_PREALLOC);
/// `table * MAX_RULES + rule index` -> action, flags, sequence.
#[map]
static RULES: Array<RuleInfo> = Array::pinned((TABLES * MAX_RULES) as u32, 0);
/// Per-rule packet/byte counters, same index as `RULES`.
#[map]
static RULE_COUNTERS: PerCpuArray<Counter> = PerCpuArray::pinned((TABLES * MAX_RULES) as u32, 0);
/// `direction * reason::COUNT + reason` -> packets/bytes.
#[map]
static REASONS: PerCpuArray<Counter> = PerCpuArray::pinned(2 * reason::COUNT, 0);
/// Connection tracking; size set by the agent at load time.
#[map]
static CONNTRACK: LruHashMap<CtKey, CtValue> = LruHashMap::pinned(65_536, 0);
/// Conntrack event counters (`ct_stat`).
#[map]
static CT_STATS: PerCpuArray<u64> = PerCpuArray::pinned(ct_stat::COUNT, 0);
/// Slot 0: the load balancer's XDP program (`rampart-lb` object) when it
/// is chained after the firewall on this interface; empty otherwise.
#[map]
static LB_CHAIN: ProgramArray = ProgramArray::pinned(1, 0);
/// Sampled rule-match events for the agent's log.
#[map]
static LOG_EVENTS: RingBuf = RingBuf::pinned(1 << 18, 0);

// ===== programs =====

/// Ingress filter.
#[xdp]
pub fn rampart_xdp(ctx: XdpContext) -> u32 {
    let len = (ctx.data_end() - ctx.data()) as u64;
    if decide(ctx.data(), ctx.data_end(), DIR_INGRESS, len) {
        // Passed: hand over to the chained load balancer, if any (an empty
        // slot returns here).
        // SAFETY: a tail call jumps to another XDP program or returns.
        unsafe { LB_CHAIN.tail_call(&ctx, 0) };
        xdp_action::XDP_PASS
    } else {
        xdp_action::XDP_DROP
    }
}

/// Egress filter. Pass returns `TC_ACT_UNSPEC` (TCX "next"), so programs
/// attached after ours still run.
#[classifier]
pub fn rampart_tc(ctx: TcContext) -> i32 {
    let len = u64::from(ctx.len());
    // Headers of locally generated packets can sit in paged data; make the
    // first bytes linear so parsing sees them.
    if ctx.data_end() - ctx.data() < 128 && ctx.len() as usize > ctx.data_end() - ctx.data() {
        let want = if ctx.len() < 128 { ctx.len() } else { 128 };
        let _ = ctx.pull_data(want);
    }
    if decide(ctx.data(), ctx.data_end(), DIR_EGRESS, len) {
        TC_ACT_UNSPEC
    } else {
        TC_ACT_SHOT as i32
    }
}

// ===== verdict =====

#[inline(always)]
fn count_reason(dir: u32, why: u32, len: u64) {
    if let Some(c) = REASONS.get_ptr_mut(dir * reason::COUNT + why) {
        // SAFETY: per-CPU slot, no concurrent writer.
        unsafe {
            (*c).packets += 1;
            (*c).bytes += len;
        }
    }
}

#[inline(always)]
fn ct_count(which: u32) {
    if let Some(c) = CT_STATS.get_ptr_mut(which) {
        // SAFETY: per-CPU slot.
        unsafe { *c += 1 };
    }
}

/// Returns true to pass the packet.
#[inline(always)]
fn decide(start: usize, end: usize, dir: u32, len: u64) -> bool {
    // Opaque to LLVM: for XDP `len == end - start`, and LLVM would use that
    // to drop pointer bounds checks that the verifier needs to see.
    // SAFETY: reads a local.
    let frame_len = unsafe { core::ptr::read_volatile(&raw const len) } as usize;
    let pkt = match parse::parse(start, end, frame_len) {
        Ok(Parsed::Ip(p)) => p,
        Ok(Parsed::NonIp) => {
            count_reason(dir, reason::PASS_NON_IP, len);
            return true;
        }
        Err(_) => {
            count_reason(dir, reason::DROP_MALFORMED, len);
            return false;
        }
    };
    let Some(cfg) = CONFIG.get(0) else {
        count_reason(dir, reason::DROP_NO_POLICY, len);
        return false;
    };
    // The generation is read exactly once: every lookup below uses `table`.
    let generation = cfg.generation & 1;
    let table = generation * 2 + dir;
    let Some(meta) = TABLE_META.get(table) else {
        count_reason(dir, reason::DROP_NO_POLICY, len);
        return false;
    };
    if meta.valid == 0 {
        count_reason(dir, reason::DROP_NO_POLICY, len);
        return false;
    }
    // Conntrack: a tracked flow passes unless a drop_established deny rule
    // matches it, so the classifier only runs for it when such rules exist.
    // The clock is read only when an entry is touched or inserted: a packet
    // that only meets rules never pays for it.
    let track = pkt.l4 && pkt.trackable;
    let (key, from_lo) = ct_key(&pkt);
    let mut ct: Option<*mut CtValue> = None;
    // `now == 0`: same tick as the flow's last clock read, keep its stamp.
    let mut now = 0;
    if track {
        if let Some(v) = CONNTRACK.get_ptr_mut(&key) {
            // bpf_jiffies64 is inlined by the verifier (a load); the clock
            // is a helper call, paid once per tick per flow.
            // SAFETY: LRU entries stay valid for the program's run (RCU).
            let tick = unsafe { bpf_jiffies64() } as u32;
            if tick == unsafe { (*v).tick } {
                ct = Some(v);
            } else {
                now = unsafe { bpf_ktime_get_ns() };
                let state = unsafe { (*v).state };
                let last = unsafe { (*v).last_seen_ns };
                if now.wrapping_sub(last) > timeout(cfg, pkt.proto, state) {
                    let _ = CONNTRACK.remove(&key);
                    ct_count(ct_stat::EXPIRED);
                } else {
                    unsafe { (*v).tick = tick };
                    ct = Some(v);
                }
            }
        }
    }
    if let Some(v) = ct {
        if meta.has_drop_established == 0 {
            ct_update(v, &pkt, from_lo, now);
            count_reason(dir, reason::PASS_ESTABLISHED, len);
            return true;
        }
    }

    let matched = classify(&pkt, table, meta);
    let (action, rule_idx) = match matched {
        Some(idx) => match RULES.get(table * MAX_RULES as u32 + idx) {
            Some(info) => {
                if let Some(c) = RULE_COUNTERS.get_ptr_mut(table * MAX_RULES as u32 + idx) {
                    // SAFETY: per-CPU slot.
                    unsafe {
                        (*c).packets += 1;
                        (*c).bytes += len;
                    }
                }
                if info.log_sample != 0 {
                    let r = unsafe { bpf_get_prandom_u32() };
                    if r % info.log_sample == 0 {
                        log_event(&pkt, info, dir);
                    }
                }
                if let Some(v) = ct {
                    if info.action == ACTION_DENY && info.flags & RULE_DROP_ESTABLISHED != 0 {
                        count_reason(dir, reason::DROP_ESTABLISHED, len);
                        return false;
                    }
                    ct_update(v, &pkt, from_lo, now);
                    count_reason(dir, reason::PASS_ESTABLISHED, len);
                    return true;
                }
                (info.action, Some(idx))
            }
            None => (ACTION_DENY, Some(idx)),
        },
        None => (meta.default_action, None),
    };
    if let Some(v) = ct {
        ct_update(v, &pkt, from_lo, now);
        count_reason(dir, reason::PASS_ESTABLISHED, len);
        return true;
    }
    if action == ACTION_PERMIT {
        count_reason(
            dir,
            if rule_idx.is_some() {
                reason::PASS_RULE
            } else {
                reason::PASS_DEFAULT
            },
            len,
        );
        if track {
            ct_insert(&key, &pkt, from_lo, dir, unsafe { bpf_ktime_get_ns() });
        }
        true
    } else {
        count_reason(
            dir,
            if rule_idx.is_some() {
                reason::DROP_RULE
            } else {
                reason::DROP_DEFAULT
            },
            len,
        );
        false
    }
}

#[inline(always)]
fn timeout(cfg: &Config, proto: u8, state: u8) -> u64 {
    match proto {
        parse::IPPROTO_TCP => match state {
            ct_state::SYN_SENT => cfg.tcp_syn_timeout_ns,
            ct_state::ESTABLISHED => cfg.tcp_established_timeout_ns,
            _ => cfg.tcp_closed_timeout_ns,
        },
        parse::IPPROTO_ICMP | parse::IPPROTO_ICMPV6 => cfg.icmp_timeout_ns,
        _ => cfg.udp_timeout_ns,
    }
}

/// Canonical key: the lower (address, port) endpoint first. Returns whether
/// this packet's source is the `lo` endpoint.
#[inline(always)]
fn ct_key(pkt: &Pkt) -> (CtKey, bool) {
    let src_first =
        (pkt.src[0], pkt.src[1], pkt.ct_sport) <= (pkt.dst[0], pkt.dst[1], pkt.ct_dport);
    let (lo, hi, plo, phi) = if src_first {
        (pkt.src, pkt.dst, pkt.ct_sport, pkt.ct_dport)
    } else {
        (pkt.dst, pkt.src, pkt.ct_dport, pkt.ct_sport)
    };
    let key = CtKey {
        addr_lo: as_bytes(lo),
        addr_hi: as_bytes(hi),
        port_lo: plo,
        port_hi: phi,
        proto: pkt.proto,
        family: pkt.family,
        _pad: [0; 2],
    };
    (key, src_first)
}

#[inline(always)]
fn as_bytes(a: [u64; 2]) -> [u8; 16] {
    // SAFETY: same size, plain data.
    unsafe { core::mem::transmute::<[u64; 2], [u8; 16]>(a) }
}

#[inline(always)]
fn ct_insert(key: &CtKey, pkt: &Pkt, from_lo: bool, dir: u32, now: u64) {
    let state = if pkt.proto == parse::IPPROTO_TCP {
        if pkt.tcp_flags & TCP_RST != 0 {
            // Never track a flow that starts with a reset.
            return;
        }
        if pkt.tcp_flags & TCP_SYN != 0 && pkt.tcp_flags & TCP_ACK == 0 {
            ct_state::SYN_SENT
        } else {
            ct_state::ESTABLISHED
        }
    } else {
        ct_state::ESTABLISHED
    };
    let v = CtValue {
        last_seen_ns: now,
        packets: 1,
        state,
        origin_is_lo: u8::from(from_lo),
        fin_seen: 0,
        origin_dir: dir as u8,
        // SAFETY: inlined load of `jiffies`.
        tick: unsafe { bpf_jiffies64() } as u32,
    };
    if CONNTRACK.insert(key, &v, 0).is_ok() {
        ct_count(ct_stat::INSERTS);
    } else {
        ct_count(ct_stat::INSERT_FAILED);
    }
}

#[inline(always)]
fn ct_update(v: *mut CtValue, pkt: &Pkt, from_lo: bool, now: u64) {
    // SAFETY: `v` points into a live LRU entry; racing updates from other
    // CPUs only lose a timestamp or a counter increment.
    unsafe {
        if now != 0 {
            (*v).last_seen_ns = now;
        }
        (*v).packets += 1;
        if pkt.proto != parse::IPPROTO_TCP {
            return;
        }
        let flags = pkt.tcp_flags;
        let state = (*v).state;
        if flags & TCP_RST != 0 {
            if state != ct_state::CLOSED {
                ct_count(ct_stat::CLOSED);
            }
            (*v).state = ct_state::CLOSED;
            return;
        }
        if flags & TCP_FIN != 0 {
            let bit = if from_lo { 1 } else { 2 };
            let fins = (*v).fin_seen | bit;
            (*v).fin_seen = fins;
            if fins == 3 {
                if state != ct_state::CLOSED {
                    ct_count(ct_stat::CLOSED);
                }
                (*v).state = ct_state::CLOSED;
            } else if state != ct_state::CLOSED {
                (*v).state = ct_state::CLOSING;
            }
            return;
        }
        if state == ct_state::SYN_SENT && (from_lo != ((*v).origin_is_lo != 0)) {
            // A reply from the responder: the handshake went through.
            (*v).state = ct_state::ESTABLISHED;
        } else if state == ct_state::CLOSED && flags & TCP_SYN != 0 && flags & TCP_ACK == 0 {
            // Port reuse: a new SYN on a closed tuple starts over.
            (*v).state = ct_state::SYN_SENT;
            (*v).fin_seen = 0;
            (*v).origin_is_lo = u8::from(from_lo);
        }
    }
}

#[inline(always)]
fn log_event(pkt: &Pkt, info: &RuleInfo, dir: u32) {
    let ev = LogEvent {
        src: as_bytes(pkt.src),
        dst: as_bytes(pkt.dst),
        sequence: info.sequence,
        sport: pkt.cls_sport,
        dport: pkt.cls_dport,
        direction: dir as u8,
        family: pkt.family,
        proto: pkt.proto,
        action: info.action,
    };
    let _ = LOG_EVENTS.output::<LogEvent>(&ev, 0);
}

// ===== classification =====

/// The bitmap of one address field: the constant bitmap if the field is
/// constant; else, for a field with few prefix lengths, the first hit of
/// one hash probe per length (longest first) or the family's /0 bitmap;
/// else the LPM trie's longest match.
#[inline(always)]
fn addr_bitmap(
    hash: &HashMap<LpmData, Bitmap>,
    lpm: &LpmTrie<LpmData, Bitmap>,
    meta: &TableMeta,
    table: u32,
    pkt: &Pkt,
    addr: [u64; 2],
    v4_slot: u32,
) -> Option<*const Bitmap> {
    let v4 = pkt.family == 4;
    let slot = if v4 { v4_slot } else { v4_slot + 1 };
    let bit = 1u8 << slot;
    if meta.const_fields & bit != 0 {
        return CONST_BM.get_ptr(table * field::SLOTS + slot);
    }
    let family = if v4 { FAMILY_V4 } else { FAMILY_V6 };
    if meta.hash_fields & bit != 0 {
        let i = slot as usize & 3;
        let count = usize::from(meta.prefix_len_count[i]);
        let lens = meta.prefix_lens[i];
        for (n, len) in lens.into_iter().enumerate() {
            if n >= count {
                break;
            }
            let data = LpmData {
                table: table.to_be_bytes(),
                family: hash_family(family as u8, len),
                addr: as_bytes(masked(addr, len, v4)),
            };
            // NO_PREALLOC hash values are RCU-protected for this run.
            if let Some(b) = hash.get_ptr(&data) {
                return Some(b);
            }
        }
        // No listed length matched: the /0 root's bitmap.
        return CONST_BM.get_ptr(table * field::SLOTS + slot);
    }
    let data = LpmData {
        table: table.to_be_bytes(),
        family: family.to_be_bytes(),
        addr: as_bytes(addr),
    };
    let bits = if v4 { 32 } else { 128 };
    lpm.get(Key::new(LPM_HEADER_BITS + bits, data))
        .map(|b| b as *const Bitmap)
}

/// `addr` (network-order bytes loaded little-endian) with only its first
/// `len` bits kept; IPv4 addresses use the low 32 bits of the first word.
#[inline(always)]
fn masked(addr: [u64; 2], len: u8, v4: bool) -> [u64; 2] {
    let len = u32::from(len);
    if v4 {
        let keep = if len >= 32 {
            u32::MAX
        } else {
            u32::MAX.checked_shl(32 - len).unwrap_or(0)
        };
        return [addr[0] & u64::from(keep.swap_bytes()), 0];
    }
    let hi = if len >= 64 {
        u64::MAX
    } else {
        u64::MAX.checked_shl(64 - len).unwrap_or(0)
    };
    let lo = if len >= 128 {
        u64::MAX
    } else if len <= 64 {
        0
    } else {
        u64::MAX.checked_shl(128 - len).unwrap_or(0)
    };
    [addr[0] & hi.swap_bytes(), addr[1] & lo.swap_bytes()]
}

/// One port field's rules: a whole bitmap (`map` non-null), or the single
/// word `word` of one (`map` null). Every field is always written: the
/// verifier refuses to read a register an enum variant left undefined.
struct PortBits {
    map: *const Bitmap,
    word: u32,
    bits: u64,
}

impl PortBits {
    #[inline(always)]
    fn map(map: *const Bitmap) -> Self {
        Self {
            map,
            word: 0,
            bits: 0,
        }
    }
}

/// The rules of one port field (port, or ICMP type/code): constant, or the
/// port's slot (one word inline, or a wide class in `WIDE_BM`/`CLASSES`).
#[inline(always)]
fn port_bits(
    ports: &Array<PortSlot>,
    meta: &TableMeta,
    table: u32,
    value: u16,
    slot: u32,
) -> Option<PortBits> {
    if meta.const_fields & (1u8 << slot) != 0 {
        return CONST_BM
            .get_ptr(table * field::SLOTS + slot)
            .map(PortBits::map);
    }
    let e = ports.get(table * PORTS as u32 + u32::from(value))?;
    if e.word != PORT_WIDE {
        return Some(PortBits {
            map: core::ptr::null(),
            word: e.word,
            bits: e.bits,
        });
    }
    if meta.wide_in_array != 0 {
        WIDE_BM.get_ptr(e.class).map(PortBits::map)
    } else {
        // NO_PREALLOC hash values are RCU-protected for this run.
        CLASSES.get_ptr(e.class).map(PortBits::map)
    }
}

/// Returns the index of the first rule matching every field, if any.
#[inline(always)]
fn classify(pkt: &Pkt, table: u32, meta: &TableMeta) -> Option<u32> {
    let src = addr_bitmap(
        &SRC_HASH,
        &SRC_LPM,
        meta,
        table,
        pkt,
        pkt.src,
        field::SRC_V4,
    )?;
    let dst = addr_bitmap(
        &DST_HASH,
        &DST_LPM,
        meta,
        table,
        pkt,
        pkt.dst,
        field::DST_V4,
    )?;
    let proto = PROTO_BM.get_ptr(table * PROTOS as u32 + u32::from(pkt.proto))?;
    if !pkt.l4 {
        // Non-first fragment: only rules that constrain no L4 field match.
        let no_l4 = (table << CLASS_TABLE_SHIFT) | CLASS_NO_L4;
        let b = CLASSES.get_ptr(no_l4)?;
        return first_common(src, dst, proto, b, b);
    }
    let sport = port_bits(&SPORT_CLASS, meta, table, pkt.cls_sport, field::SPORT)?;
    let dport = port_bits(&DPORT_CLASS, meta, table, pkt.cls_dport, field::DPORT)?;
    match (sport.map.is_null(), dport.map.is_null()) {
        (false, false) => {
            // A host or single-rule field spans one word: AND that word
            // inline instead of calling the loop.
            // SAFETY: map-value pointers to whole bitmaps.
            let (lo, hi) = unsafe { ((*src).lo, (*src).hi) };
            if hi == lo + 1 {
                let bits = unsafe { *(*src).words.get(lo as usize)? };
                return one_word(lo, bits, dst, proto, sport.map, dport.map);
            }
            first_common(src, dst, proto, sport.map, dport.map)
        }
        (true, false) => one_word(sport.word, sport.bits, src, dst, proto, dport.map),
        (false, true) => one_word(dport.word, dport.bits, src, dst, proto, sport.map),
        (true, true) => {
            if sport.word != dport.word {
                return None;
            }
            one_word(sport.word, sport.bits & dport.bits, src, dst, proto, proto)
        }
    }
}

/// The first rule in word `k` set in `bits` and in the four bitmaps: when
/// one field's rules lie in a single word, no other word can match.
#[inline(always)]
fn one_word(
    k: u32,
    bits: u64,
    a: *const Bitmap,
    b: *const Bitmap,
    c: *const Bitmap,
    d: *const Bitmap,
) -> Option<u32> {
    let i = k as usize;
    if bits == 0 || i >= BITMAP_WORDS {
        return None;
    }
    // SAFETY: map-value pointers to whole bitmaps; i < BITMAP_WORDS.
    let x = unsafe {
        bits & *(*a).words.get_unchecked(i)
            & *(*b).words.get_unchecked(i)
            & *(*c).words.get_unchecked(i)
            & *(*d).words.get_unchecked(i)
    };
    if x == 0 { None } else { Some(k * 64 + ctz(x)) }
}

/// The AND-and-find-first loop, as a *global* BPF function: the verifier
/// checks it once on its own instead of once per path that reaches it (the
/// many parse paths times 160 loop iterations exceed the 1M instruction
/// budget when it is inlined). Returns `NO_MATCH` when no rule matches.
#[unsafe(no_mangle)]
#[inline(never)]
pub extern "C" fn rampart_first_common(
    a: *const Bitmap,
    b: *const Bitmap,
    c: *const Bitmap,
    d: *const Bitmap,
    e: *const Bitmap,
) -> u32 {
    if a.is_null() || b.is_null() || c.is_null() || d.is_null() || e.is_null() {
        return NO_MATCH;
    }
    // SAFETY: non-null pointers to whole bitmaps (map values).
    let (a, b, c, d, e) = unsafe { (&*a, &*b, &*c, &*d, &*e) };
    // Iterate exactly over [lo, hi): one unknown-valued counter, so the
    // verifier walks at most BITMAP_WORDS iterations with two paths each
    // (comparing a constant counter against unknown bounds instead makes it
    // track every bound range separately).
    let lo = max(max(max(a.lo, b.lo), max(c.lo, d.lo)), e.lo) as usize;
    let hi = min(
        min(min(min(a.hi, b.hi), min(c.hi, d.hi)), e.hi),
        BITMAP_WORDS as u32,
    ) as usize;
    let mut w = lo;
    while w < hi {
        // The index goes through memory so LLVM cannot turn the indexing
        // into a pointer walk whose bound the verifier cannot see; the
        // explicit check is what the verifier relies on.
        // SAFETY: reads a local.
        let i = unsafe { core::ptr::read_volatile(&raw const w) };
        if i >= BITMAP_WORDS {
            break;
        }
        // SAFETY: i < BITMAP_WORDS.
        let x = unsafe {
            *a.words.get_unchecked(i)
                & *b.words.get_unchecked(i)
                & *c.words.get_unchecked(i)
                & *d.words.get_unchecked(i)
                & *e.words.get_unchecked(i)
        };
        if x != 0 {
            return (i as u32) * 64 + ctz(x);
        }
        w = i + 1;
    }
    NO_MATCH
}

#[inline(always)]
fn first_common(
    a: *const Bitmap,
    b: *const Bitmap,
    c: *const Bitmap,
    d: *const Bitmap,
    e: *const Bitmap,
) -> Option<u32> {
    let f = rampart_first_common(a, b, c, d, e);
    if f >= MAX_RULES as u32 { None } else { Some(f) }
}

/// Result of the bitmap loop when no bit is common to all fields.
const NO_MATCH: u32 = u32::MAX;

#[inline(always)]
fn max(a: u32, b: u32) -> u32 {
    if a > b { a } else { b }
}

#[inline(always)]
fn min(a: u32, b: u32) -> u32 {
    if a < b { a } else { b }
}

/// Trailing zeros of a non-zero word, without a lookup table (BPF has no
/// ctz instruction and rodata tables complicate loading).
#[inline(always)]
fn ctz(mut x: u64) -> u32 {
    let mut n = 0;
    if x & 0xffff_ffff == 0 {
        n += 32;
        x >>= 32;
    }
    if x & 0xffff == 0 {
        n += 16;
        x >>= 16;
    }
    if x & 0xff == 0 {
        n += 8;
        x >>= 8;
    }
    if x & 0xf == 0 {
        n += 4;
        x >>= 4;
    }
    if x & 0x3 == 0 {
        n += 2;
        x >>= 2;
    }
    if x & 0x1 == 0 {
        n += 1;
    }
    n
}
