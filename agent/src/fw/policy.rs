//! Policy validation and compilation: `rampart_proto::v1::HostPolicy` in,
//! per-interface classification tables (rule bitmaps per field) out.
//!
//! Pure code, no kernel access, so every rule of the compiler is unit-tested
//! without root. Validation reads the whole policy and refuses it with the
//! first precise error (interface, rule sequence, field, value) before a
//! single map is touched: a bad policy never half-applies.

use std::{
    collections::{BTreeMap, HashMap},
    net::IpAddr,
    path::Path,
    str::FromStr,
    sync::Arc,
};

use ipnet::IpNet;
use rampart_common::{
    ACTION_DENY, ACTION_PERMIT, BITMAP_WORDS, Bitmap, MAX_HASH_LENS, MAX_RULES, PORTS, PROTOS,
    RULE_DROP_ESTABLISHED, RuleInfo, field,
};
use rampart_proto::v1::{Action, Direction, FirewallRule, HostPolicy};
use thiserror::Error;

/// Most distinct prefixes (source or destination, both families) one table
/// may hold; the LPM tries hold four tables (two generations x directions).
pub const MAX_PREFIXES_PER_TABLE: usize = 32_768;
/// Most distinct port classes (source plus destination) per table.
pub const MAX_CLASSES_PER_TABLE: usize = 65_536;

/// Why a policy was refused.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum PolicyError {
    /// The policy file could not be read.
    #[error("cannot read policy file {path}: {reason}")]
    Read {
        /// File.
        path: String,
        /// OS error text.
        reason: String,
    },
    /// The policy file is not valid YAML/JSON for a `HostPolicy`.
    #[error("cannot parse policy file {path}: {reason}")]
    Parse {
        /// File.
        path: String,
        /// Parser message (with line/column where the parser knows it).
        reason: String,
    },
    /// An interface entry has no name.
    #[error("interfaces[{index}]: interface name is empty")]
    EmptyInterface {
        /// Position in `interfaces`.
        index: usize,
    },
    /// The interface does not exist on this host.
    #[error("interface {interface:?}: no such interface on this host")]
    UnknownInterface {
        /// Name.
        interface: String,
    },
    /// `direction` missing.
    #[error("interface {interface:?}: direction is unspecified (ingress, egress or both)")]
    DirectionUnspecified {
        /// Name.
        interface: String,
    },
    /// `default_action` missing.
    #[error("interface {interface:?}: default_action is unspecified (permit or deny)")]
    DefaultActionUnspecified {
        /// Name.
        interface: String,
    },
    /// Two entries cover the same interface and direction.
    #[error("interface {interface:?}: direction {direction} is given twice")]
    DuplicateDirection {
        /// Name.
        interface: String,
        /// `ingress` or `egress`.
        direction: &'static str,
    },
    /// More rules than the dataplane holds.
    #[error("interface {interface:?} {direction}: {count} rules, at most {max} are supported")]
    TooManyRules {
        /// Name.
        interface: String,
        /// `ingress` or `egress`.
        direction: &'static str,
        /// Rules given.
        count: usize,
        /// Limit.
        max: usize,
    },
    /// Two rules share a sequence number.
    #[error("interface {interface:?}: sequence {sequence} is used by more than one rule")]
    DuplicateSequence {
        /// Name.
        interface: String,
        /// Sequence.
        sequence: u32,
    },
    /// A rule without action.
    #[error("interface {interface:?} rule {sequence}: action is unspecified (permit or deny)")]
    ActionUnspecified {
        /// Name.
        interface: String,
        /// Sequence.
        sequence: u32,
    },
    /// A prefix that does not parse or has host bits set.
    #[error(
        "interface {interface:?} rule {sequence}: {field} {value:?} is not a valid prefix: {reason}"
    )]
    InvalidPrefix {
        /// Name.
        interface: String,
        /// Sequence.
        sequence: u32,
        /// `sources` or `destinations`.
        field: &'static str,
        /// The text given.
        value: String,
        /// What is wrong.
        reason: String,
    },
    /// Protocol number above 255.
    #[error(
        "interface {interface:?} rule {sequence}: protocol {protocol} is not an IP protocol number (0-255)"
    )]
    InvalidProtocol {
        /// Name.
        interface: String,
        /// Sequence.
        sequence: u32,
        /// Value.
        protocol: u32,
    },
    /// Ports on a rule whose protocol has none.
    #[error(
        "interface {interface:?} rule {sequence}: {field} need protocol 6 (tcp) or 17 (udp), not {protocol}"
    )]
    PortsNeedTcpUdp {
        /// Name.
        interface: String,
        /// Sequence.
        sequence: u32,
        /// `source_ports` or `destination_ports`.
        field: &'static str,
        /// The rule's protocol.
        protocol: u32,
    },
    /// `first > last` or a port above 65535.
    #[error(
        "interface {interface:?} rule {sequence}: {field} range {first}-{last} is invalid (0 <= first <= last <= 65535)"
    )]
    InvalidPortRange {
        /// Name.
        interface: String,
        /// Sequence.
        sequence: u32,
        /// Field.
        field: &'static str,
        /// First.
        first: u32,
        /// Last.
        last: u32,
    },
    /// ICMP type/code on a non-ICMP rule, or above 255.
    #[error(
        "interface {interface:?} rule {sequence}: {field} {value} needs protocol 1 (icmp) or 58 (icmpv6) and a value 0-255"
    )]
    InvalidIcmp {
        /// Name.
        interface: String,
        /// Sequence.
        sequence: u32,
        /// `icmp_type` or `icmp_code`.
        field: &'static str,
        /// Value.
        value: u32,
    },
    /// The classifier tables would overflow.
    #[error(
        "interface {interface:?} {direction}: {what} ({count}) exceeds the dataplane limit {max}"
    )]
    Capacity {
        /// Name.
        interface: String,
        /// `ingress` or `egress`.
        direction: &'static str,
        /// Which table.
        what: &'static str,
        /// Needed.
        count: usize,
        /// Limit.
        max: usize,
    },
}

/// Labels of one rule, for metrics and logs.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct RuleLabel {
    /// Sequence number.
    pub sequence: u32,
    /// Tenant (may be empty).
    pub tenant: String,
    /// Service (may be empty).
    pub service: String,
}

/// One LPM entry: family (4/6), prefix length in address bits, address.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Prefix {
    /// 4 or 6.
    pub family: u8,
    /// Prefix length in bits of the address.
    pub len: u8,
    /// Network address bytes (IPv4 in the first 4).
    pub addr: [u8; 16],
}

/// One direction's compiled classifier.
pub struct CompiledTable {
    /// Action when no rule matches.
    pub default_action: u8,
    /// Per rule index (sequence order).
    pub rules: Vec<RuleInfo>,
    /// Per rule index.
    pub labels: Vec<RuleLabel>,
    /// Source prefix bitmaps.
    pub src: Vec<(Prefix, Box<Bitmap>)>,
    /// Destination prefix bitmaps.
    pub dst: Vec<(Prefix, Box<Bitmap>)>,
    /// Bitmap per protocol number (256).
    pub proto: Vec<Bitmap>,
    /// Class index per source port / ICMP type (65536).
    pub sport: Vec<u32>,
    /// Class index per destination port / ICMP code (65536).
    pub dport: Vec<u32>,
    /// Bitmap per class index.
    pub classes: Vec<Bitmap>,
    /// Rules that constrain no L4 field (for non-first fragments).
    pub no_l4: Box<Bitmap>,
    /// Some deny rule drops established flows.
    pub has_drop_established: bool,
    /// Fields whose bitmap is the same for every packet value, as
    /// `(field::* slot, bitmap)`: the program skips their lookup.
    pub constants: Vec<(u32, Box<Bitmap>)>,
    /// How each address field is looked up (constant fields aside).
    pub addr_lookup: AddrLookup,
}

/// Which address fields are looked up by hash probes, one per prefix length,
/// instead of the LPM trie (see `rampart_common::TableMeta::hash_fields`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AddrLookup {
    /// `1 << field::{SRC,DST}_V{4,6}` of the hashed fields.
    pub hash_fields: u8,
    /// Per address slot: lengths in use in `prefix_lens`.
    pub prefix_len_count: [u8; 4],
    /// Per address slot: distinct non-zero prefix lengths, longest first.
    pub prefix_lens: [[u8; MAX_HASH_LENS]; 4],
}

impl AddrLookup {
    /// True if the address field `slot` is looked up by hash probes.
    pub fn hashed(&self, slot: u32) -> bool {
        self.hash_fields & (1 << slot) != 0
    }
}

/// The address slot (`field::SRC_V4` ...) of a prefix of the source or
/// destination field.
pub fn addr_slot(source: bool, family: u8) -> u32 {
    let base = if source { field::SRC_V4 } else { field::DST_V4 };
    if family == 4 { base } else { base + 1 }
}

/// Constant fields and hashed address fields of a compiled table (see
/// [`CompiledTable::constants`] and [`AddrLookup`]).
fn shortcuts(
    src: &[(Prefix, Box<Bitmap>)],
    dst: &[(Prefix, Box<Bitmap>)],
    sport: &[u32],
    dport: &[u32],
    classes: &[Bitmap],
) -> (Vec<(u32, Box<Bitmap>)>, AddrLookup) {
    let mut constants = Vec::new();
    let mut lookup = AddrLookup::default();
    for (dim, source) in [(src, true), (dst, false)] {
        for family in [4u8, 6] {
            let slot = addr_slot(source, family);
            let entries: Vec<&(Prefix, Box<Bitmap>)> =
                dim.iter().filter(|(p, _)| p.family == family).collect();
            // Only the family's /0 root: every address gets its bitmap.
            if let [(p, b)] = entries.as_slice()
                && p.len == 0
            {
                constants.push((slot, b.clone()));
                continue;
            }
            let mut lens: Vec<u8> = entries
                .iter()
                .map(|(p, _)| p.len)
                .filter(|l| *l > 0)
                .collect();
            lens.sort_unstable_by(|a, b| b.cmp(a));
            lens.dedup();
            if lens.len() <= MAX_HASH_LENS {
                let i = slot as usize;
                lookup.hash_fields |= 1 << slot;
                lookup.prefix_len_count[i] = u8::try_from(lens.len()).unwrap_or(0);
                lookup.prefix_lens[i][..lens.len()].copy_from_slice(&lens);
            }
        }
    }
    for (ports, slot) in [(sport, field::SPORT), (dport, field::DPORT)] {
        if let Some(&first) = ports.first()
            && ports.iter().all(|&c| c == first)
            && let Some(b) = classes.get(first as usize)
        {
            constants.push((slot, Box::new(*b)));
        }
    }
    (constants, lookup)
}

/// One interface's tables.
pub struct CompiledInterface {
    /// Interface name.
    pub name: String,
    /// XDP table.
    pub ingress: Arc<CompiledTable>,
    /// TC egress table (the same table as `ingress` for `direction: both`).
    pub egress: Arc<CompiledTable>,
}

/// A validated, compiled host policy.
pub struct CompiledPolicy {
    /// Policy version.
    pub version: u64,
    /// Requested conntrack size (0 = agent default).
    pub conntrack_max: u32,
    /// Per interface.
    pub interfaces: Vec<CompiledInterface>,
}

/// Reads a policy file: JSON if it ends in `.json`, YAML otherwise (YAML is
/// a superset of JSON, so either works there).
pub fn load_file(path: &Path) -> Result<HostPolicy, PolicyError> {
    let text = std::fs::read_to_string(path).map_err(|e| PolicyError::Read {
        path: path.display().to_string(),
        reason: e.to_string(),
    })?;
    let parsed = if path.extension().is_some_and(|e| e == "json") {
        serde_json::from_str::<HostPolicy>(&text).map_err(|e| e.to_string())
    } else {
        serde_norway::from_str::<HostPolicy>(&text).map_err(|e| e.to_string())
    };
    parsed.map_err(|reason| PolicyError::Parse {
        path: path.display().to_string(),
        reason,
    })
}

/// An empty bitmap.
pub fn empty_bitmap() -> Box<Bitmap> {
    Box::new(Bitmap {
        lo: 0,
        hi: 0,
        words: [0; BITMAP_WORDS],
    })
}

fn set_bit(b: &mut Bitmap, i: usize) {
    b.words[i / 64] |= 1 << (i % 64);
}

/// Sets `lo`/`hi` to the non-zero word range (empty: `lo == hi == 0`).
pub fn finalize(b: &mut Bitmap) {
    let first = b.words.iter().position(|w| *w != 0);
    let last = b.words.iter().rposition(|w| *w != 0);
    match (first, last) {
        (Some(f), Some(l)) => {
            b.lo = u32::try_from(f).unwrap_or(0);
            b.hi = u32::try_from(l + 1).unwrap_or(0);
        }
        _ => {
            b.lo = 0;
            b.hi = 0;
        }
    }
}

const fn dir_name(d: usize) -> &'static str {
    if d == 0 { "ingress" } else { "egress" }
}

/// Per interface: (default action, rules) for ingress and egress.
type DirSlots<'a> = [Option<(u8, Vec<&'a FirewallRule>)>; 2];

/// Validates and compiles `policy`. `interface_exists` answers whether a
/// name is a network interface here (injected so tests need no real ones).
pub fn compile(
    policy: &HostPolicy,
    interface_exists: &dyn Fn(&str) -> bool,
) -> Result<CompiledPolicy, PolicyError> {
    // Interface name -> [ingress, egress] (default action, rules).
    let mut per_if: BTreeMap<String, DirSlots<'_>> = BTreeMap::new();
    for (index, ip) in policy.interfaces.iter().enumerate() {
        if ip.interface.is_empty() {
            return Err(PolicyError::EmptyInterface { index });
        }
        let name = ip.interface.clone();
        if !interface_exists(&name) {
            return Err(PolicyError::UnknownInterface { interface: name });
        }
        let dirs: &[usize] = match Direction::try_from(ip.direction) {
            Ok(Direction::Ingress) => &[0],
            Ok(Direction::Egress) => &[1],
            Ok(Direction::Both) => &[0, 1],
            _ => return Err(PolicyError::DirectionUnspecified { interface: name }),
        };
        let default_action = match Action::try_from(ip.default_action) {
            Ok(Action::Permit) => ACTION_PERMIT,
            Ok(Action::Deny) => ACTION_DENY,
            _ => return Err(PolicyError::DefaultActionUnspecified { interface: name }),
        };
        let slot = per_if.entry(name.clone()).or_default();
        for &d in dirs {
            if slot[d].is_some() {
                return Err(PolicyError::DuplicateDirection {
                    interface: name,
                    direction: dir_name(d),
                });
            }
            if ip.rules.len() > MAX_RULES {
                return Err(PolicyError::TooManyRules {
                    interface: name,
                    direction: dir_name(d),
                    count: ip.rules.len(),
                    max: MAX_RULES,
                });
            }
            slot[d] = Some((default_action, ip.rules.iter().collect()));
        }
    }
    let mut interfaces = Vec::with_capacity(per_if.len());
    for (name, [ingress, egress]) in per_if {
        let ingress = ingress.unwrap_or((ACTION_PERMIT, Vec::new()));
        let egress = egress.unwrap_or((ACTION_PERMIT, Vec::new()));
        // A `direction: both` entry gives both directions the same rules:
        // compile them once and share the table.
        let same = ingress.0 == egress.0
            && ingress.1.len() == egress.1.len()
            && ingress
                .1
                .iter()
                .zip(&egress.1)
                .all(|(a, b)| std::ptr::eq(*a, *b));
        let ingress = Arc::new(compile_table(&name, 0, ingress.0, ingress.1)?);
        let egress = if same {
            Arc::clone(&ingress)
        } else {
            Arc::new(compile_table(&name, 1, egress.0, egress.1)?)
        };
        interfaces.push(CompiledInterface {
            name,
            ingress,
            egress,
        });
    }
    Ok(CompiledPolicy {
        version: policy.version,
        conntrack_max: policy.conntrack_max,
        interfaces,
    })
}

/// A rule after validation, in the compiler's terms.
struct Norm {
    sources: Vec<Prefix>,
    destinations: Vec<Prefix>,
    protocol: u8,
    /// None = any.
    sport: Option<Vec<(u16, u16)>>,
    dport: Option<Vec<(u16, u16)>>,
}

fn parse_prefix(
    interface: &str,
    sequence: u32,
    field: &'static str,
    value: &str,
) -> Result<Prefix, PolicyError> {
    let err = |reason: String| PolicyError::InvalidPrefix {
        interface: interface.to_string(),
        sequence,
        field,
        value: value.to_string(),
        reason,
    };
    let net = if value.contains('/') {
        IpNet::from_str(value).map_err(|e| err(e.to_string()))?
    } else {
        IpAddr::from_str(value)
            .map(IpNet::from)
            .map_err(|e| err(e.to_string()))?
    };
    if net.trunc() != net {
        return Err(err(format!(
            "host bits are set (the network is {})",
            net.trunc()
        )));
    }
    let mut addr = [0u8; 16];
    let family = match net.network() {
        IpAddr::V4(a) => {
            addr[..4].copy_from_slice(&a.octets());
            4
        }
        IpAddr::V6(a) => {
            addr.copy_from_slice(&a.octets());
            6
        }
    };
    Ok(Prefix {
        family,
        len: net.prefix_len(),
        addr,
    })
}

fn port_ranges(
    interface: &str,
    r: &FirewallRule,
    field: &'static str,
    ranges: &[rampart_proto::v1::PortRange],
) -> Result<Option<Vec<(u16, u16)>>, PolicyError> {
    if ranges.is_empty() {
        return Ok(None);
    }
    if r.protocol != 6 && r.protocol != 17 {
        return Err(PolicyError::PortsNeedTcpUdp {
            interface: interface.to_string(),
            sequence: r.sequence,
            field,
            protocol: r.protocol,
        });
    }
    let mut out = Vec::with_capacity(ranges.len());
    for pr in ranges {
        let (Ok(first), Ok(last)) = (u16::try_from(pr.first), u16::try_from(pr.last)) else {
            return Err(PolicyError::InvalidPortRange {
                interface: interface.to_string(),
                sequence: r.sequence,
                field,
                first: pr.first,
                last: pr.last,
            });
        };
        if first > last {
            return Err(PolicyError::InvalidPortRange {
                interface: interface.to_string(),
                sequence: r.sequence,
                field,
                first: pr.first,
                last: pr.last,
            });
        }
        out.push((first, last));
    }
    Ok(Some(out))
}

fn icmp_field(
    interface: &str,
    r: &FirewallRule,
    field: &'static str,
    v: Option<u32>,
) -> Result<Option<Vec<(u16, u16)>>, PolicyError> {
    let Some(v) = v else { return Ok(None) };
    if (r.protocol != 1 && r.protocol != 58) || v > 255 {
        return Err(PolicyError::InvalidIcmp {
            interface: interface.to_string(),
            sequence: r.sequence,
            field,
            value: v,
        });
    }
    let v = u16::try_from(v).unwrap_or(0);
    Ok(Some(vec![(v, v)]))
}

fn normalize(interface: &str, r: &FirewallRule) -> Result<Norm, PolicyError> {
    if !matches!(
        Action::try_from(r.action),
        Ok(Action::Permit | Action::Deny)
    ) {
        return Err(PolicyError::ActionUnspecified {
            interface: interface.to_string(),
            sequence: r.sequence,
        });
    }
    let Ok(protocol) = u8::try_from(r.protocol) else {
        return Err(PolicyError::InvalidProtocol {
            interface: interface.to_string(),
            sequence: r.sequence,
            protocol: r.protocol,
        });
    };
    let sources = r
        .sources
        .iter()
        .map(|s| parse_prefix(interface, r.sequence, "sources", s))
        .collect::<Result<Vec<_>, _>>()?;
    let destinations = r
        .destinations
        .iter()
        .map(|s| parse_prefix(interface, r.sequence, "destinations", s))
        .collect::<Result<Vec<_>, _>>()?;
    let sp = port_ranges(interface, r, "source_ports", &r.source_ports)?;
    let dp = port_ranges(interface, r, "destination_ports", &r.destination_ports)?;
    let it = icmp_field(interface, r, "icmp_type", r.icmp_type)?;
    let ic = icmp_field(interface, r, "icmp_code", r.icmp_code)?;
    Ok(Norm {
        sources,
        destinations,
        protocol,
        sport: sp.or(it),
        dport: dp.or(ic),
    })
}

fn compile_table(
    interface: &str,
    dir: usize,
    default_action: u8,
    mut rules: Vec<&FirewallRule>,
) -> Result<CompiledTable, PolicyError> {
    rules.sort_by_key(|r| r.sequence);
    for w in rules.windows(2) {
        if w[0].sequence == w[1].sequence {
            return Err(PolicyError::DuplicateSequence {
                interface: interface.to_string(),
                sequence: w[0].sequence,
            });
        }
    }
    let norms = rules
        .iter()
        .map(|r| normalize(interface, r))
        .collect::<Result<Vec<_>, _>>()?;
    let infos = rules
        .iter()
        .map(|r| RuleInfo {
            sequence: r.sequence,
            log_sample: r.log_sample,
            action: if r.action == Action::Permit as i32 {
                ACTION_PERMIT
            } else {
                ACTION_DENY
            },
            flags: if r.drop_established && r.action == Action::Deny as i32 {
                RULE_DROP_ESTABLISHED
            } else {
                0
            },
            _pad: [0; 6],
        })
        .collect::<Vec<_>>();
    let labels = rules
        .iter()
        .map(|r| RuleLabel {
            sequence: r.sequence,
            tenant: r.tenant.clone(),
            service: r.service.clone(),
        })
        .collect();
    let src = prefix_dimension(&norms, |n| &n.sources);
    let dst = prefix_dimension(&norms, |n| &n.destinations);
    let prefixes = src.len() + dst.len();
    if prefixes > MAX_PREFIXES_PER_TABLE {
        return Err(PolicyError::Capacity {
            interface: interface.to_string(),
            direction: dir_name(dir),
            what: "distinct prefixes",
            count: prefixes,
            max: MAX_PREFIXES_PER_TABLE,
        });
    }
    let proto = proto_dimension(&norms);
    let mut classes = Vec::new();
    let mut class_ids: HashMap<Vec<u64>, u32> = HashMap::new();
    let sport = port_dimension(&norms, |n| n.sport.as_deref(), &mut classes, &mut class_ids);
    let dport = port_dimension(&norms, |n| n.dport.as_deref(), &mut classes, &mut class_ids);
    if classes.len() > MAX_CLASSES_PER_TABLE {
        return Err(PolicyError::Capacity {
            interface: interface.to_string(),
            direction: dir_name(dir),
            what: "distinct port classes",
            count: classes.len(),
            max: MAX_CLASSES_PER_TABLE,
        });
    }
    let mut no_l4 = empty_bitmap();
    for (i, n) in norms.iter().enumerate() {
        if n.sport.is_none() && n.dport.is_none() {
            set_bit(&mut no_l4, i);
        }
    }
    finalize(&mut no_l4);
    let (constants, addr_lookup) = shortcuts(&src, &dst, &sport, &dport, &classes);
    Ok(CompiledTable {
        default_action,
        has_drop_established: infos.iter().any(|i| i.flags & RULE_DROP_ESTABLISHED != 0),
        rules: infos,
        labels,
        src,
        dst,
        proto,
        sport,
        dport,
        classes,
        no_l4,
        constants,
        addr_lookup,
    })
}

/// Keeps the first `len` bits (IPv4 addresses sit in the first 4 bytes, so
/// the same masking serves both families).
fn mask(addr: &[u8; 16], len: u8) -> [u8; 16] {
    let v = u128::from_be_bytes(*addr);
    let keep = u32::from(len);
    let m = if keep == 0 {
        0
    } else {
        u128::MAX << (128 - keep)
    };
    (v & m).to_be_bytes()
}

/// For one address field: every distinct prefix (plus a /0 root per family)
/// with the bitmap of rules whose set for that field covers it: wildcard
/// rules, and rules with an equal or shorter covering prefix.
fn prefix_dimension(
    norms: &[Norm],
    field: impl Fn(&Norm) -> &Vec<Prefix>,
) -> Vec<(Prefix, Box<Bitmap>)> {
    let mut out = Vec::new();
    for family in [4u8, 6] {
        let mut own: HashMap<(u8, [u8; 16]), Vec<usize>> = HashMap::new();
        let mut wildcard = empty_bitmap();
        for (i, n) in norms.iter().enumerate() {
            let f = field(n);
            if f.is_empty() {
                set_bit(&mut wildcard, i);
            }
            for p in f.iter().filter(|p| p.family == family) {
                own.entry((p.len, p.addr)).or_default().push(i);
            }
        }
        let root_key = (0u8, [0u8; 16]);
        let mut done: HashMap<(u8, [u8; 16]), Box<Bitmap>> = HashMap::new();
        let mut root = wildcard;
        if let Some(rs) = own.get(&root_key) {
            for &i in rs {
                set_bit(&mut root, i);
            }
        }
        done.insert(root_key, root);
        let mut keys: Vec<(u8, [u8; 16])> = own.keys().copied().filter(|k| k.0 != 0).collect();
        keys.sort_unstable();
        for key in keys {
            let (len, addr) = key;
            // Nearest covering prefix already built (the root always is).
            let mut parent = None;
            for l in (0..len).rev() {
                let pk = (l, mask(&addr, l));
                if done.contains_key(&pk) {
                    parent = Some(pk);
                    break;
                }
            }
            let mut b = done
                .get(&parent.unwrap_or(root_key))
                .cloned()
                .unwrap_or_else(empty_bitmap);
            for &i in &own[&key] {
                set_bit(&mut b, i);
            }
            done.insert(key, b);
        }
        for ((len, addr), mut b) in done {
            finalize(&mut b);
            out.push((Prefix { family, len, addr }, b));
        }
    }
    out
}

fn proto_dimension(norms: &[Norm]) -> Vec<Bitmap> {
    let mut any = empty_bitmap();
    let mut per: HashMap<u8, Vec<usize>> = HashMap::new();
    for (i, n) in norms.iter().enumerate() {
        if n.protocol == 0 {
            set_bit(&mut any, i);
        } else {
            per.entry(n.protocol).or_default().push(i);
        }
    }
    (0..PROTOS)
        .map(|p| {
            let mut b = any.clone();
            if let Some(rs) = u8::try_from(p).ok().and_then(|p| per.get(&p)) {
                for &i in rs {
                    set_bit(&mut b, i);
                }
            }
            finalize(&mut b);
            *b
        })
        .collect()
}

/// Elementary-interval sweep over 0..=65535: each interval between range
/// boundaries gets the bitmap of rules covering it, deduplicated into
/// classes shared by both port dimensions.
fn port_dimension<'n>(
    norms: &'n [Norm],
    field: impl Fn(&'n Norm) -> Option<&'n [(u16, u16)]>,
    classes: &mut Vec<Bitmap>,
    ids: &mut HashMap<Vec<u64>, u32>,
) -> Vec<u32> {
    let mut wildcard = empty_bitmap();
    // boundary -> (rules starting, rules ending just before it)
    let mut events: BTreeMap<u32, (Vec<usize>, Vec<usize>)> = BTreeMap::new();
    events.entry(0).or_default();
    for (i, n) in norms.iter().enumerate() {
        match field(n) {
            None => set_bit(&mut wildcard, i),
            Some(ranges) => {
                for &(a, b) in ranges {
                    events.entry(u32::from(a)).or_default().0.push(i);
                    events.entry(u32::from(b) + 1).or_default().1.push(i);
                }
            }
        }
    }
    let mut counts: HashMap<usize, u32> = HashMap::new();
    let mut out = vec![0u32; PORTS];
    let bounds: Vec<u32> = events.keys().copied().collect();
    let port_count = u32::try_from(PORTS).unwrap_or(u32::MAX);
    for (k, &start) in bounds.iter().enumerate() {
        if start >= port_count {
            break;
        }
        let (starts, ends) = &events[&start];
        for &i in ends {
            if let Some(c) = counts.get_mut(&i) {
                *c -= 1;
                if *c == 0 {
                    counts.remove(&i);
                }
            }
        }
        for &i in starts {
            *counts.entry(i).or_default() += 1;
        }
        let end = bounds
            .get(k + 1)
            .copied()
            .unwrap_or(port_count)
            .min(port_count);
        let mut b = wildcard.clone();
        for &i in counts.keys() {
            set_bit(&mut b, i);
        }
        finalize(&mut b);
        let id = match ids.get(b.words.as_slice()) {
            Some(&id) => id,
            None => {
                let id = u32::try_from(classes.len()).unwrap_or(u32::MAX);
                ids.insert(b.words.to_vec(), id);
                classes.push(*b);
                id
            }
        };
        for slot in &mut out[start as usize..end as usize] {
            *slot = id;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use rampart_proto::v1::{InterfacePolicy, PortRange};

    use super::*;

    fn rule(seq: u32, action: Action) -> FirewallRule {
        FirewallRule {
            sequence: seq,
            action: action as i32,
            ..Default::default()
        }
    }

    fn policy(rules: Vec<FirewallRule>) -> HostPolicy {
        HostPolicy {
            version: 1,
            interfaces: vec![InterfacePolicy {
                interface: "eth0".into(),
                direction: Direction::Ingress as i32,
                default_action: Action::Deny as i32,
                rules,
            }],
            conntrack_max: 0,
            ..Default::default()
        }
    }

    fn yes(_: &str) -> bool {
        true
    }

    fn has(b: &Bitmap, i: usize) -> bool {
        b.words[i / 64] & (1 << (i % 64)) != 0
    }

    #[test]
    fn covering_prefixes_inherit_bits() {
        let mut a = rule(10, Action::Deny);
        a.sources = vec!["10.0.0.0/8".into()];
        let mut b = rule(20, Action::Permit);
        b.sources = vec!["10.1.0.0/16".into()];
        let c = rule(30, Action::Permit);
        let p = compile(&policy(vec![c, b, a]), &yes).unwrap();
        let t = &p.interfaces[0].ingress;
        assert_eq!(
            t.rules.iter().map(|r| r.sequence).collect::<Vec<_>>(),
            vec![10, 20, 30]
        );
        let find = |len: u8| {
            t.src
                .iter()
                .find(|(p, _)| p.family == 4 && p.len == len)
                .unwrap()
        };
        let (_, b16) = find(16);
        assert!(
            has(b16, 0) && has(b16, 1) && has(b16, 2),
            "/16 is covered by /8 and wildcard"
        );
        let (_, b8) = find(8);
        assert!(has(b8, 0) && !has(b8, 1) && has(b8, 2));
        let (_, root) = find(0);
        assert!(!has(root, 0) && !has(root, 1) && has(root, 2));
        assert_eq!((root.lo, root.hi), (0, 1));
    }

    #[test]
    fn port_ranges_split_into_classes() {
        let mut a = rule(1, Action::Permit);
        a.protocol = 6;
        a.destination_ports = vec![PortRange {
            first: 80,
            last: 90,
        }];
        let mut b = rule(2, Action::Permit);
        b.protocol = 6;
        b.destination_ports = vec![PortRange {
            first: 85,
            last: 85,
        }];
        let p = compile(&policy(vec![a, b]), &yes).unwrap();
        let t = &p.interfaces[0].ingress;
        let cls = |port: usize| &t.classes[t.dport[port] as usize];
        assert!(!has(cls(79), 0) && !has(cls(79), 1));
        assert!(has(cls(80), 0) && !has(cls(80), 1));
        assert!(has(cls(85), 0) && has(cls(85), 1));
        assert!(has(cls(86), 0) && !has(cls(86), 1));
        assert!(!has(cls(91), 0));
        assert!(!has(cls(65535), 0));
        // Source ports unconstrained: every port matches both.
        let s = &t.classes[t.sport[1234] as usize];
        assert!(has(s, 0) && has(s, 1));
        assert!(!has(&t.no_l4, 0) && !has(&t.no_l4, 1));
    }

    #[test]
    fn bad_policies_are_refused_precisely() {
        let mut r = rule(5, Action::Deny);
        r.sources = vec!["10.0.0.300/8".into()];
        let e = compile(&policy(vec![r]), &yes).err().unwrap();
        assert!(
            matches!(
                &e,
                PolicyError::InvalidPrefix {
                    sequence: 5,
                    field: "sources",
                    ..
                }
            ),
            "{e}"
        );

        let mut r = rule(5, Action::Deny);
        r.destinations = vec!["10.0.0.1/8".into()];
        let e = compile(&policy(vec![r]), &yes).err().unwrap();
        assert!(e.to_string().contains("host bits"), "{e}");

        let e = compile(&policy(vec![rule(1, Action::Deny)]), &|_| false)
            .err()
            .unwrap();
        assert_eq!(
            e,
            PolicyError::UnknownInterface {
                interface: "eth0".into()
            }
        );

        let rules = (0..=MAX_RULES as u32)
            .map(|i| rule(i, Action::Deny))
            .collect();
        let e = compile(&policy(rules), &yes).err().unwrap();
        assert!(matches!(e, PolicyError::TooManyRules { count, .. } if count == MAX_RULES + 1));

        let e = compile(
            &policy(vec![rule(1, Action::Deny), rule(1, Action::Permit)]),
            &yes,
        )
        .err()
        .unwrap();
        assert!(matches!(
            e,
            PolicyError::DuplicateSequence { sequence: 1, .. }
        ));

        let mut r = rule(7, Action::Deny);
        r.destination_ports = vec![PortRange { first: 1, last: 2 }];
        let e = compile(&policy(vec![r]), &yes).err().unwrap();
        assert!(matches!(
            e,
            PolicyError::PortsNeedTcpUdp { sequence: 7, .. }
        ));

        let mut r = rule(8, Action::Deny);
        r.protocol = 17;
        r.destination_ports = vec![PortRange { first: 9, last: 2 }];
        let e = compile(&policy(vec![r]), &yes).err().unwrap();
        assert!(matches!(
            e,
            PolicyError::InvalidPortRange {
                sequence: 8,
                first: 9,
                last: 2,
                ..
            }
        ));

        let e = compile(&policy(vec![rule(9, Action::Unspecified)]), &yes)
            .err()
            .unwrap();
        assert!(matches!(
            e,
            PolicyError::ActionUnspecified { sequence: 9, .. }
        ));
    }

    #[test]
    fn constant_and_exact_fields_are_found() {
        let mut a = rule(1, Action::Deny);
        a.protocol = 6;
        a.sources = vec!["10.0.0.1/32".into(), "2001:db8::/32".into()];
        a.destination_ports = vec![PortRange {
            first: 80,
            last: 80,
        }];
        let b = rule(2, Action::Permit);
        let p = compile(&policy(vec![a, b]), &yes).unwrap();
        let t = &p.interfaces[0].ingress;
        let slots: Vec<u32> = t.constants.iter().map(|(s, _)| *s).collect();
        // Sources vary in both families; destinations and source ports are
        // unconstrained; destination ports vary.
        assert_eq!(slots, vec![field::DST_V4, field::DST_V6, field::SPORT]);
        for (_, b) in &t.constants {
            assert!(
                has(b, 0) && has(b, 1),
                "an unconstrained field matches every rule"
            );
        }
        // Both source families have one prefix length (/32): hashed.
        let l = t.addr_lookup;
        assert_eq!(l.hash_fields, 1 << field::SRC_V4 | 1 << field::SRC_V6);
        assert_eq!(l.prefix_len_count[field::SRC_V4 as usize], 1);
        assert_eq!(l.prefix_lens[field::SRC_V4 as usize][0], 32);
        assert_eq!(l.prefix_lens[field::SRC_V6 as usize][0], 32);

        // A field every rule constrains the same way is constant too, with
        // the bitmap of the rules that match every value.
        let mut c = rule(1, Action::Deny);
        c.destinations = vec!["0.0.0.0/0".into()];
        let p = compile(&policy(vec![c, rule(2, Action::Permit)]), &yes).unwrap();
        let t = &p.interfaces[0].ingress;
        let (_, v6) = t
            .constants
            .iter()
            .find(|(s, _)| *s == field::DST_V6)
            .unwrap();
        assert!(!has(v6, 0) && has(v6, 1), "rule 1 has no IPv6 destination");
        let (_, v4) = t
            .constants
            .iter()
            .find(|(s, _)| *s == field::DST_V4)
            .unwrap();
        assert!(has(v4, 0) && has(v4, 1));
        assert_eq!(
            t.addr_lookup.hash_fields, 0,
            "constant fields need no lookup"
        );
    }

    #[test]
    fn ten_thousand_rules_compile_fast() {
        let rules: Vec<_> = (0..10_000u32)
            .map(|i| {
                let mut r = rule(i, Action::Deny);
                r.protocol = 17;
                r.sources = vec![format!("10.{}.{}.{}/32", i >> 16, (i >> 8) & 255, i & 255)];
                r.destination_ports = vec![PortRange {
                    first: i % 60_000,
                    last: i % 60_000 + 1,
                }];
                r
            })
            .collect();
        let t0 = std::time::Instant::now();
        let p = compile(&policy(rules), &yes).unwrap();
        let took = t0.elapsed();
        let t = &p.interfaces[0].ingress;
        assert_eq!(t.rules.len(), 10_000);
        assert_eq!(t.src.iter().filter(|(p, _)| p.family == 4).count(), 10_001);
        assert!(took.as_millis() < 2_000, "compile took {took:?}");
    }
}
