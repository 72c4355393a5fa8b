//! The dataplane's maps as the agent sees them, and the A/B generation
//! switch.
//!
//! A policy is written into the generation the programs are *not* reading
//! (its tables are cleared first), and only then is `CONFIG.generation`
//! flipped with one map update. Programs read the generation once per
//! packet, so a packet is classified entirely by the old rule set or
//! entirely by the new one.

use std::{
    os::fd::{AsFd, BorrowedFd},
    path::Path,
};

use aya::maps::MapData;
use rampart_common::{
    BITMAP_WORDS, Bitmap, CLASS_NO_L4, CLASS_TABLE_SHIFT, Config, Counter, CtKey, LPM_HEADER_BITS,
    LpmData, MAX_RULES, PORTS, PROTOS, TableMeta, ct_stat, field, hash_family, reason,
};
use thiserror::Error;

use crate::{
    fw::policy::{CompiledTable, Prefix, addr_slot},
    fw::port_slots::{self, PortLayout},
    sys::{self, SysError, bytes_of, bytes_of_slice, from_bytes},
};

/// Names of the maps in the eBPF object (and of their pins).
pub const MAP_NAMES: [&str; 19] = [
    "CONFIG",
    "TABLE_META",
    "SRC_LPM",
    "DST_LPM",
    "SRC_HASH",
    "DST_HASH",
    "CONST_BM",
    "PROTO_BM",
    "SPORT_CLASS",
    "DPORT_CLASS",
    "WIDE_BM",
    "CLASSES",
    "RULES",
    "RULE_COUNTERS",
    "REASONS",
    "CONNTRACK",
    "CT_STATS",
    "LOG_EVENTS",
    "LB_CHAIN",
];

/// Bitmaps copied per batched write: bounds the copy a write makes of the
/// compiled table (1,024 bitmaps are 1.3 MB).
const WRITE_CHUNK: usize = 1024;

/// Map access failures.
#[derive(Debug, Error)]
pub enum MapsError {
    /// A pinned map could not be opened.
    #[error("cannot open pinned map {path}: {source}")]
    OpenPin {
        /// Pin path.
        path: String,
        /// aya's error.
        #[source]
        source: aya::maps::MapError,
    },
    /// The loaded object lacks a map (agent and object out of sync).
    #[error("eBPF object has no map {name}")]
    Missing {
        /// Map name.
        name: &'static str,
    },
    /// A map operation failed.
    #[error("map {map}: {source}")]
    Sys {
        /// Map name.
        map: &'static str,
        /// The syscall error.
        #[source]
        source: SysError,
    },
    /// Number of possible CPUs unknown.
    #[error("cannot read the number of possible CPUs: {0}")]
    Cpus(String),
}

/// Conntrack timeouts, written into `CONFIG`.
#[derive(Clone, Copy, Debug)]
pub struct Timeouts {
    /// SYN seen, no reply yet.
    pub tcp_syn: std::time::Duration,
    /// Established TCP.
    pub tcp_established: std::time::Duration,
    /// FIN/RST seen.
    pub tcp_closed: std::time::Duration,
    /// UDP and others.
    pub udp: std::time::Duration,
    /// ICMP echo.
    pub icmp: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        use std::time::Duration;
        Self {
            tcp_syn: Duration::from_secs(30),
            tcp_established: Duration::from_secs(3600),
            tcp_closed: Duration::from_secs(10),
            udp: Duration::from_secs(60),
            icmp: Duration::from_secs(30),
        }
    }
}

/// Handles to one interface's maps.
pub struct FwMaps {
    maps: Vec<(&'static str, MapData)>,
    ncpus: usize,
}

/// Packet/byte totals for one rule, summed over CPUs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
}

/// Raw LPM key as the kernel stores it: prefix length then data.
#[repr(C, packed)]
#[derive(Clone, Copy, bytemuck::Pod, bytemuck::Zeroable)]
struct LpmKeyRaw {
    prefix_len: u32,
    data: LpmData,
}

fn lpm_key(table: u32, p: &Prefix) -> LpmKeyRaw {
    LpmKeyRaw {
        prefix_len: LPM_HEADER_BITS + u32::from(p.len),
        data: LpmData {
            table: table.to_be_bytes(),
            family: u32::from(p.family).to_be_bytes(),
            addr: p.addr,
        },
    }
}

impl FwMaps {
    /// Takes the maps out of a freshly loaded object.
    pub fn from_ebpf(ebpf: &mut aya::Ebpf) -> Result<Self, MapsError> {
        let mut maps = Vec::new();
        for name in MAP_NAMES {
            let map = ebpf
                .take_map(name)
                .and_then(into_data)
                .ok_or(MapsError::Missing { name })?;
            maps.push((name, map));
        }
        Self::with(maps)
    }

    /// Opens the maps pinned in `dir` (adoption after a restart, `status`).
    pub fn from_pins(dir: &Path) -> Result<Self, MapsError> {
        let mut maps = Vec::new();
        for name in MAP_NAMES {
            let path = dir.join(name);
            let data = MapData::from_pin(&path).map_err(|source| MapsError::OpenPin {
                path: path.display().to_string(),
                source,
            })?;
            maps.push((name, data));
        }
        Self::with(maps)
    }

    fn with(maps: Vec<(&'static str, MapData)>) -> Result<Self, MapsError> {
        let ncpus =
            aya::util::nr_cpus().map_err(|(what, e)| MapsError::Cpus(format!("{what}: {e}")))?;
        Ok(Self { maps, ncpus })
    }

    fn fd(&self, name: &'static str) -> BorrowedFd<'_> {
        self.maps
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, m)| m.fd().as_fd())
            .expect("every map in MAP_NAMES is present")
    }

    /// The ring buffer of sampled log events, for `aya::maps::RingBuf`.
    pub fn take_log_events(&mut self) -> Option<MapData> {
        let i = self.maps.iter().position(|(n, _)| *n == "LOG_EVENTS")?;
        Some(self.maps.remove(i).1)
    }

    /// Reads `CONFIG`.
    pub fn config(&self) -> Result<Config, MapsError> {
        let mut buf = vec![0u8; std::mem::size_of::<Config>()];
        sys::lookup_elem(self.fd("CONFIG"), &0u32.to_ne_bytes(), &mut buf).map_err(|source| {
            MapsError::Sys {
                map: "CONFIG",
                source,
            }
        })?;
        Ok(from_bytes(&buf))
    }

    fn set_config(&self, c: &Config) -> Result<(), MapsError> {
        sys::update_elem(self.fd("CONFIG"), &0u32.to_ne_bytes(), bytes_of(c)).map_err(|source| {
            MapsError::Sys {
                map: "CONFIG",
                source,
            }
        })
    }

    /// Writes the conntrack timeouts, keeping the active generation.
    pub fn set_timeouts(&self, t: &Timeouts) -> Result<(), MapsError> {
        let mut c = self.config()?;
        let ns = |d: std::time::Duration| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        c.tcp_syn_timeout_ns = ns(t.tcp_syn);
        c.tcp_established_timeout_ns = ns(t.tcp_established);
        c.tcp_closed_timeout_ns = ns(t.tcp_closed);
        c.udp_timeout_ns = ns(t.udp);
        c.icmp_timeout_ns = ns(t.icmp);
        self.set_config(&c)
    }

    /// Active generation (0 or 1).
    pub fn generation(&self) -> Result<u32, MapsError> {
        Ok(self.config()?.generation & 1)
    }

    /// Metadata of one table.
    pub fn table_meta(&self, table: u32) -> Result<TableMeta, MapsError> {
        let mut buf = vec![0u8; std::mem::size_of::<TableMeta>()];
        sys::lookup_elem(self.fd("TABLE_META"), &table.to_ne_bytes(), &mut buf).map_err(
            |source| MapsError::Sys {
                map: "TABLE_META",
                source,
            },
        )?;
        Ok(from_bytes(&buf))
    }

    /// Writes both directions into the inactive generation and switches to
    /// it. Returns the new generation.
    pub fn apply(&self, ingress: &CompiledTable, egress: &CompiledTable) -> Result<u32, MapsError> {
        let next = 1 - self.generation()?;
        self.clear_generation(next)?;
        self.write_table(next * 2, ingress)?;
        self.write_table(next * 2 + 1, egress)?;
        let mut c = self.config()?;
        c.generation = next;
        self.set_config(&c)?;
        Ok(next)
    }

    /// Removes every LPM and class entry of a generation's two tables.
    fn clear_generation(&self, generation: u32) -> Result<(), MapsError> {
        let tables = [generation * 2, generation * 2 + 1];
        for map in ["SRC_LPM", "DST_LPM"] {
            let fd = self.fd(map);
            let keys = sys::keys(fd, std::mem::size_of::<LpmKeyRaw>())
                .map_err(|source| MapsError::Sys { map, source })?;
            for k in keys {
                let t = u32::from_be_bytes([k[4], k[5], k[6], k[7]]);
                if tables.contains(&t) {
                    sys::delete_elem(fd, &k).map_err(|source| MapsError::Sys { map, source })?;
                }
            }
        }
        for map in ["SRC_HASH", "DST_HASH"] {
            let fd = self.fd(map);
            let keys = sys::keys(fd, std::mem::size_of::<LpmData>())
                .map_err(|source| MapsError::Sys { map, source })?;
            for k in keys {
                let t = u32::from_be_bytes([k[0], k[1], k[2], k[3]]);
                if tables.contains(&t) {
                    sys::delete_elem(fd, &k).map_err(|source| MapsError::Sys { map, source })?;
                }
            }
        }
        let fd = self.fd("CLASSES");
        let keys = sys::keys(fd, 4).map_err(|source| MapsError::Sys {
            map: "CLASSES",
            source,
        })?;
        for k in keys {
            let id = u32::from_ne_bytes([k[0], k[1], k[2], k[3]]);
            if tables.contains(&(id >> CLASS_TABLE_SHIFT)) {
                sys::delete_elem(fd, &k).map_err(|source| MapsError::Sys {
                    map: "CLASSES",
                    source,
                })?;
            }
        }
        Ok(())
    }

    fn write_table(&self, table: u32, t: &CompiledTable) -> Result<(), MapsError> {
        let err = |map: &'static str| move |source| MapsError::Sys { map, source };
        // Invalidate first, so a half-written table is never "valid".
        let meta = TableMeta {
            valid: 0,
            ..Default::default()
        };
        sys::update_elem(self.fd("TABLE_META"), &table.to_ne_bytes(), bytes_of(&meta))
            .map_err(err("TABLE_META"))?;

        self.write_prefixes(table, t)?;
        // Constant fields' bitmaps, and the /0 root of hashed address fields
        // (their fallback when no probe hits). Other slots are never read.
        let mut const_fields = 0u8;
        let roots = [(&t.src, true), (&t.dst, false)]
            .into_iter()
            .flat_map(|(dim, source)| {
                dim.iter()
                    .filter(move |(p, _)| {
                        p.len == 0 && t.addr_lookup.hashed(addr_slot(source, p.family))
                    })
                    .map(move |(p, b)| (addr_slot(source, p.family), b))
            });
        for (slot, b) in t.constants.iter().map(|(s, b)| (*s, b)).chain(roots) {
            sys::update_elem(
                self.fd("CONST_BM"),
                &(table * field::SLOTS + slot).to_ne_bytes(),
                bytes_of(b.as_ref()),
            )
            .map_err(err("CONST_BM"))?;
        }
        for (slot, _) in &t.constants {
            const_fields |= 1 << slot;
        }

        // Protocol bitmaps: 256 slots in one batch.
        let keys: Vec<u32> = (0..PROTOS as u32)
            .map(|p| table * PROTOS as u32 + p)
            .collect();
        let vals = &t.proto;
        sys::update_batch(
            self.fd("PROTO_BM"),
            bytes_of_slice(&keys),
            bytes_of_slice(vals),
            keys.len(),
        )
        .map_err(err("PROTO_BM"))?;

        let ports = port_slots::layout(table, t);
        self.write_ports(table, t, &ports)?;

        // Rule infos, and zeroed counters for the rule slots.
        if !t.rules.is_empty() {
            let keys: Vec<u32> = (0..t.rules.len() as u32)
                .map(|i| table * MAX_RULES as u32 + i)
                .collect();
            sys::update_batch(
                self.fd("RULES"),
                bytes_of_slice(&keys),
                bytes_of_slice(&t.rules),
                keys.len(),
            )
            .map_err(err("RULES"))?;
            let zero = vec![0u8; keys.len() * self.ncpus * std::mem::size_of::<Counter>()];
            sys::update_batch(
                self.fd("RULE_COUNTERS"),
                bytes_of_slice(&keys),
                &zero,
                keys.len(),
            )
            .map_err(err("RULE_COUNTERS"))?;
        }

        let meta = TableMeta {
            rule_count: u32::try_from(t.rules.len()).unwrap_or(u32::MAX),
            default_action: t.default_action,
            has_drop_established: u8::from(t.has_drop_established),
            valid: 1,
            const_fields,
            hash_fields: t.addr_lookup.hash_fields,
            wide_in_array: u8::from(ports.in_array),
            _pad: [0; 2],
            prefix_len_count: t.addr_lookup.prefix_len_count,
            prefix_lens: t.addr_lookup.prefix_lens,
        };
        sys::update_elem(self.fd("TABLE_META"), &table.to_ne_bytes(), bytes_of(&meta))
            .map_err(err("TABLE_META"))
    }

    /// Wide port classes, then the port arrays that refer to them (the
    /// inactive generation: no packet reads them yet).
    fn write_ports(
        &self,
        table: u32,
        t: &CompiledTable,
        l: &PortLayout<'_>,
    ) -> Result<(), MapsError> {
        let err = |map: &'static str| move |source| MapsError::Sys { map, source };
        let wide_map = if l.in_array { "WIDE_BM" } else { "CLASSES" };
        for chunk in l.wide.chunks(WRITE_CHUNK) {
            let keys: Vec<u32> = chunk.iter().map(|(k, _)| *k).collect();
            let vals: Vec<Bitmap> = chunk.iter().map(|(_, b)| **b).collect();
            sys::update_batch(
                self.fd(wide_map),
                bytes_of_slice(&keys),
                bytes_of_slice(&vals),
                keys.len(),
            )
            .map_err(err(wide_map))?;
        }
        sys::update_elem(
            self.fd("CLASSES"),
            &((table << CLASS_TABLE_SHIFT) | CLASS_NO_L4).to_ne_bytes(),
            bytes_of(t.no_l4.as_ref()),
        )
        .map_err(err("CLASSES"))?;
        let port_keys: Vec<u32> = (0..PORTS as u32)
            .map(|p| table * PORTS as u32 + p)
            .collect();
        for (map, slots) in [("SPORT_CLASS", &l.sport), ("DPORT_CLASS", &l.dport)] {
            sys::update_batch(
                self.fd(map),
                bytes_of_slice(&port_keys),
                bytes_of_slice(slots),
                PORTS,
            )
            .map_err(err(map))?;
        }
        Ok(())
    }

    /// Address prefixes: hashed fields' non-root prefixes into the prefix
    /// hashes (keyed with their length), the fields that need it into the
    /// LPM tries; constant fields and hashed roots go to `CONST_BM` instead.
    fn write_prefixes(&self, table: u32, t: &CompiledTable) -> Result<(), MapsError> {
        let err = |map: &'static str| move |source| MapsError::Sys { map, source };
        let constant = |slot: u32| t.constants.iter().any(|(s, _)| *s == slot);
        for (entries, source, lpm, hash) in [
            (&t.src, true, "SRC_LPM", "SRC_HASH"),
            (&t.dst, false, "DST_LPM", "DST_HASH"),
        ] {
            let mut keys = Vec::new();
            let mut vals = Vec::new();
            for (p, b) in entries {
                let slot = addr_slot(source, p.family);
                if t.addr_lookup.hashed(slot) {
                    if p.len > 0 {
                        keys.push(LpmData {
                            table: table.to_be_bytes(),
                            family: hash_family(p.family, p.len),
                            addr: p.addr,
                        });
                        vals.push(**b);
                        if keys.len() == WRITE_CHUNK {
                            self.flush_prefixes(hash, &mut keys, &mut vals)?;
                        }
                    }
                } else if !constant(slot) {
                    let k = lpm_key(table, p);
                    sys::update_elem(self.fd(lpm), bytemuck::bytes_of(&k), bytes_of(b.as_ref()))
                        .map_err(err(lpm))?;
                }
            }
            self.flush_prefixes(hash, &mut keys, &mut vals)?;
        }
        Ok(())
    }

    /// Writes and empties one chunk of prefix-hash entries.
    fn flush_prefixes(
        &self,
        map: &'static str,
        keys: &mut Vec<LpmData>,
        vals: &mut Vec<Bitmap>,
    ) -> Result<(), MapsError> {
        if !keys.is_empty() {
            sys::update_batch(
                self.fd(map),
                bytes_of_slice(keys),
                bytes_of_slice(vals),
                keys.len(),
            )
            .map_err(|source| MapsError::Sys { map, source })?;
        }
        keys.clear();
        vals.clear();
        Ok(())
    }

    fn percpu_sum(
        &self,
        map: &'static str,
        key: u32,
        value_size: usize,
    ) -> Result<Vec<u64>, MapsError> {
        let stride = value_size.div_ceil(8) * 8;
        let mut buf = vec![0u8; stride * self.ncpus];
        sys::lookup_elem(self.fd(map), &key.to_ne_bytes(), &mut buf)
            .map_err(|source| MapsError::Sys { map, source })?;
        let words = value_size / 8;
        let mut out = vec![0u64; words];
        for cpu in 0..self.ncpus {
            for (w, o) in out.iter_mut().enumerate() {
                let off = cpu * stride + w * 8;
                *o += u64::from_ne_bytes(buf[off..off + 8].try_into().unwrap_or([0; 8]));
            }
        }
        Ok(out)
    }

    /// Per-rule totals of a table's first `n` rules.
    pub fn rule_totals(&self, table: u32, n: usize) -> Result<Vec<Totals>, MapsError> {
        (0..n as u32)
            .map(|i| {
                let v = self.percpu_sum(
                    "RULE_COUNTERS",
                    table * MAX_RULES as u32 + i,
                    std::mem::size_of::<Counter>(),
                )?;
                Ok(Totals {
                    packets: v[0],
                    bytes: v[1],
                })
            })
            .collect()
    }

    /// Packet/byte totals by `(direction, reason)`.
    pub fn reason_totals(&self) -> Result<Vec<(u32, u32, Totals)>, MapsError> {
        let mut out = Vec::new();
        for dir in 0..2 {
            for r in 0..reason::COUNT {
                let v = self.percpu_sum(
                    "REASONS",
                    dir * reason::COUNT + r,
                    std::mem::size_of::<Counter>(),
                )?;
                out.push((
                    dir,
                    r,
                    Totals {
                        packets: v[0],
                        bytes: v[1],
                    },
                ));
            }
        }
        Ok(out)
    }

    /// Conntrack event totals, indexed by `ct_stat`.
    pub fn ct_stats(&self) -> Result<[u64; ct_stat::COUNT as usize], MapsError> {
        let mut out = [0u64; ct_stat::COUNT as usize];
        for (i, o) in out.iter_mut().enumerate() {
            *o = self.percpu_sum("CT_STATS", i as u32, 8)?[0];
        }
        Ok(out)
    }

    /// Current number of conntrack entries (walks the table).
    pub fn ct_entries(&self) -> Result<u64, MapsError> {
        sys::count_keys(self.fd("CONNTRACK"), std::mem::size_of::<CtKey>()).map_err(|source| {
            MapsError::Sys {
                map: "CONNTRACK",
                source,
            }
        })
    }

    /// Entries in use per fill-level-relevant map, with capacity.
    pub fn fill_levels(&self) -> Result<Vec<(&'static str, u64, u64)>, MapsError> {
        let mut out = Vec::new();
        for (map, key_size, cap) in [
            ("SRC_LPM", std::mem::size_of::<LpmKeyRaw>(), 131_072u64),
            ("DST_LPM", std::mem::size_of::<LpmKeyRaw>(), 131_072),
            ("SRC_HASH", std::mem::size_of::<LpmData>(), 131_072),
            ("DST_HASH", std::mem::size_of::<LpmData>(), 131_072),
            ("CLASSES", 4, 262_144),
        ] {
            let n = sys::count_keys(self.fd(map), key_size)
                .map_err(|source| MapsError::Sys { map, source })?;
            out.push((map, n, cap));
        }
        Ok(out)
    }

    /// Size of a bitmap word range, exposed for the benchmark's report.
    pub const fn bitmap_words() -> usize {
        BITMAP_WORDS
    }
}

fn into_data(map: aya::maps::Map) -> Option<MapData> {
    use aya::maps::Map;
    match map {
        Map::Array(m)
        | Map::HashMap(m)
        | Map::LpmTrie(m)
        | Map::LruHashMap(m)
        | Map::PerCpuArray(m)
        | Map::ProgramArray(m)
        | Map::RingBuf(m) => Some(m),
        _ => None,
    }
}
