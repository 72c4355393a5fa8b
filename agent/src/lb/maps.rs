//! Loading the load balancer's object and writing services into its maps.
//!
//! Per VIP the ring map holds two rows (generations). An update builds the
//! Maglev table in userspace, writes it into the VIP's inactive row, then
//! replaces the VIP's `VipInfo` (one map update) with the flipped
//! generation and new size: packets see the old table or the new one, never
//! a mix. Backends that leave every service or fail health checks are
//! flagged down, so flows pinned to them move to Maglev's new choice while
//! all other established flows keep their backend (LRU flow table).

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, MapData, PerCpuArray},
    programs::{Xdp, XdpMode},
};
use rampart_common::lb::{
    BACKEND_DOWN, Backend, FlowKey, FlowValue, LB_FAMILY_V4, LB_FAMILY_V6, LB_MAX_BACKENDS,
    LbConfig, LbCounter, MODE_IPIP, VipInfo, VipKey, lb_stat,
};
use thiserror::Error;
use tracing::info;

use super::{
    maglev::{self, Member},
    service::{ServiceError, ServiceSpec},
};
use crate::sys;

/// Names of the object's maps (all pinned by name under the pin directory).
pub const LB_MAP_NAMES: [&str; 8] = [
    "LB_CONFIG",
    "LB_VIPS",
    "LB_BACKENDS",
    "LB_RING",
    "LB_FLOWS",
    "LB_VIP_COUNTERS",
    "LB_BACKEND_COUNTERS",
    "LB_STATS",
];

/// Load-balancer dataplane failures.
#[derive(Debug, Error)]
pub enum LbMapsError {
    /// aya could not load the object.
    #[error("loading the load-balancer object: {0}")]
    Load(#[source] Box<aya::EbpfError>),
    /// A map is missing or has the wrong type.
    #[error("map {name}: {source}")]
    Map {
        /// Map name.
        name: &'static str,
        /// aya's error.
        #[source]
        source: Box<aya::maps::MapError>,
    },
    /// A raw bpf call failed.
    #[error("map {name}: {source}")]
    Sys {
        /// Map name.
        name: &'static str,
        /// Error.
        #[source]
        source: sys::SysError,
    },
    /// A program operation failed.
    #[error("{what} ({interface}): {source}")]
    Program {
        /// What.
        what: &'static str,
        /// Interface.
        interface: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Unknown interface.
    #[error("interface {0:?} does not exist")]
    NoInterface(String),
    /// A service was refused.
    #[error(transparent)]
    Service(#[from] ServiceError),
    /// Out of ids.
    #[error("{what} limit reached ({limit})")]
    Capacity {
        /// VIPs or backends.
        what: &'static str,
        /// The limit.
        limit: u32,
    },
    /// Pin directory trouble.
    #[error(transparent)]
    Loader(#[from] crate::loader::LoaderError),
}

/// Load-time sizes (map sizes cannot change after loading).
#[derive(Clone, Debug)]
pub struct LbOptions {
    /// Number of VIPs the ring map has room for.
    pub max_vips: u32,
    /// Largest Maglev table per VIP.
    pub max_table_size: u32,
    /// Flow-table (LRU) entries.
    pub flow_max: u32,
    /// Outer source address of IPv4 encapsulation.
    pub src_v4: std::net::Ipv4Addr,
    /// Outer source address of IPv6 encapsulation.
    pub src_v6: std::net::Ipv6Addr,
    /// Next-hop MAC when the FIB lookup fails (None: drop).
    pub gw_mac: Option<[u8; 6]>,
}

impl Default for LbOptions {
    fn default() -> Self {
        Self {
            max_vips: 16,
            max_table_size: maglev::DEFAULT_TABLE_SIZE,
            flow_max: 65_536,
            src_v4: std::net::Ipv4Addr::UNSPECIFIED,
            src_v6: std::net::Ipv6Addr::UNSPECIFIED,
            gw_mac: None,
        }
    }
}

/// Which program of the object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LbProgram {
    /// The balancer.
    Balancer,
    /// Backend-side IP-in-IP decapsulation.
    Decap,
}

impl LbProgram {
    fn name(self) -> &'static str {
        match self {
            Self::Balancer => "rampart_lb",
            Self::Decap => "rampart_lb_decap",
        }
    }
}

/// Packet/byte/new-flow totals (summed over CPUs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Totals {
    /// Packets.
    pub packets: u64,
    /// Bytes.
    pub bytes: u64,
    /// New flows.
    pub new_flows: u64,
}

struct VipState {
    id: u32,
    generation: u32,
}

/// The loaded object, its maps and the service state written into them.
pub struct Balancer {
    ebpf: Ebpf,
    pin_dir: PathBuf,
    opts: LbOptions,
    vips: BpfHashMap<MapData, VipKey, VipInfo>,
    backends: Array<MapData, Backend>,
    ring: MapData,
    flows: BpfHashMap<MapData, FlowKey, FlowValue>,
    vip_counters: PerCpuArray<MapData, LbCounter>,
    backend_counters: PerCpuArray<MapData, LbCounter>,
    stats: PerCpuArray<MapData, u64>,
    vip_state: HashMap<VipKey, VipState>,
    backend_ids: HashMap<(IpAddr, u16), u32>,
    next_backend: u32,
    free_vips: Vec<u32>,
    /// Backends currently marked down by health checks.
    down: HashSet<(IpAddr, u16)>,
    services: Vec<ServiceSpec>,
}

fn vip_key(s: &ServiceSpec) -> VipKey {
    let (addr, family) = addr16(s.address);
    VipKey {
        addr,
        port: s.port,
        proto: s.protocol,
        family,
    }
}

/// An address as the maps store it (IPv4 in the first 4 bytes) with its
/// family tag.
pub fn addr16(a: IpAddr) -> ([u8; 16], u8) {
    let mut b = [0u8; 16];
    match a {
        IpAddr::V4(v4) => {
            b[..4].copy_from_slice(&v4.octets());
            (b, LB_FAMILY_V4)
        }
        IpAddr::V6(v6) => (v6.octets(), LB_FAMILY_V6),
    }
}

fn take<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LbMapsError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let m = ebpf.take_map(name).ok_or_else(|| LbMapsError::Map {
        name,
        source: Box::new(aya::maps::MapError::InvalidName {
            name: name.to_string(),
        }),
    })?;
    T::try_from(m).map_err(|e| LbMapsError::Map {
        name,
        source: Box::new(e),
    })
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> LbMapsError {
    move |e| LbMapsError::Map {
        name,
        source: Box::new(e),
    }
}

impl Balancer {
    /// Loads the object with maps pinned under `pin_dir` (a bpffs path,
    /// created if needed) and loads (verifies) both programs.
    pub fn load(pin_dir: &Path, opts: LbOptions) -> Result<Self, LbMapsError> {
        crate::loader::ensure_bpffs(pin_dir)?;
        let ring = 2 * opts.max_vips * opts.max_table_size;
        let mut ebpf = EbpfLoader::new()
            .default_map_pin_directory(pin_dir)
            .map_max_entries("LB_RING", ring)
            .map_max_entries("LB_FLOWS", opts.flow_max.max(1024))
            .load(super::LB_OBJECT)
            .map_err(|e| LbMapsError::Load(Box::new(e)))?;
        for p in [LbProgram::Balancer, LbProgram::Decap] {
            let prog: &mut Xdp = ebpf
                .program_mut(p.name())
                .and_then(|p| p.try_into().ok())
                .expect("object has both programs");
            prog.load().map_err(|e| LbMapsError::Program {
                what: "load",
                interface: String::new(),
                source: Box::new(e),
            })?;
        }
        let mut config: Array<MapData, LbConfig> = take(&mut ebpf, "LB_CONFIG")?;
        let cfg = LbConfig {
            src_v4: opts.src_v4.octets(),
            src_v6: opts.src_v6.octets(),
            gw_mac: opts.gw_mac.unwrap_or_default(),
            _pad: [0; 2],
            ring_stride: opts.max_table_size,
            max_vips: opts.max_vips,
        };
        config.set(0, cfg, 0).map_err(map_err("LB_CONFIG"))?;
        let Some(aya::maps::Map::Array(ring)) = ebpf.take_map("LB_RING") else {
            return Err(LbMapsError::Map {
                name: "LB_RING",
                source: Box::new(aya::maps::MapError::InvalidName {
                    name: "LB_RING".into(),
                }),
            });
        };
        Ok(Self {
            vips: take(&mut ebpf, "LB_VIPS")?,
            backends: take(&mut ebpf, "LB_BACKENDS")?,
            ring,
            flows: take(&mut ebpf, "LB_FLOWS")?,
            vip_counters: take(&mut ebpf, "LB_VIP_COUNTERS")?,
            backend_counters: take(&mut ebpf, "LB_BACKEND_COUNTERS")?,
            stats: take(&mut ebpf, "LB_STATS")?,
            ebpf,
            pin_dir: pin_dir.to_path_buf(),
            free_vips: (0..opts.max_vips).rev().collect(),
            opts,
            vip_state: HashMap::new(),
            backend_ids: HashMap::new(),
            next_backend: 0,
            down: HashSet::new(),
            services: Vec::new(),
        })
    }

    /// Attaches `program` to `interface` (in the calling thread's network
    /// namespace). `generic` selects SKB mode instead of native.
    pub fn attach(
        &mut self,
        program: LbProgram,
        interface: &str,
        generic: bool,
    ) -> Result<(), LbMapsError> {
        if crate::loader::ifindex(interface).is_none() {
            return Err(LbMapsError::NoInterface(interface.to_string()));
        }
        let prog: &mut Xdp = self
            .ebpf
            .program_mut(program.name())
            .and_then(|p| p.try_into().ok())
            .expect("object has both programs");
        let flags = if generic {
            XdpMode::Skb
        } else {
            XdpMode::Driver
        };
        prog.attach(interface, flags)
            .map_err(|e| LbMapsError::Program {
                what: "attach",
                interface: interface.to_string(),
                source: Box::new(e),
            })?;
        info!(
            interface,
            program = program.name(),
            generic,
            "load balancer attached"
        );
        Ok(())
    }

    /// The object (for the test-run harness).
    pub fn ebpf_mut(&mut self) -> &mut Ebpf {
        &mut self.ebpf
    }

    /// The services in force.
    pub fn services(&self) -> &[ServiceSpec] {
        &self.services
    }

    fn backend_id(&mut self, key: (IpAddr, u16)) -> Result<u32, LbMapsError> {
        if let Some(id) = self.backend_ids.get(&key) {
            return Ok(*id);
        }
        // Ids are not reused while the object lives: a flow still pinned to
        // a retired id must never land on an unrelated new backend.
        if self.next_backend >= LB_MAX_BACKENDS {
            return Err(LbMapsError::Capacity {
                what: "backends",
                limit: LB_MAX_BACKENDS,
            });
        }
        let id = self.next_backend;
        self.next_backend += 1;
        self.backend_ids.insert(key, id);
        Ok(id)
    }

    /// Replaces the set of services. Validated first: a refused set changes
    /// nothing.
    pub fn apply(&mut self, services: &[ServiceSpec]) -> Result<(), LbMapsError> {
        super::service::validate(services)?;
        for s in services {
            if s.maglev_table_size > self.opts.max_table_size
                || maglev::table_size(s.maglev_table_size, s.backends.len()).map_err(|source| {
                    ServiceError::Maglev {
                        service: s.name.clone(),
                        source,
                    }
                })? > self.opts.max_table_size
            {
                return Err(ServiceError::Maglev {
                    service: s.name.clone(),
                    source: maglev::MaglevError::TooSmall {
                        size: self.opts.max_table_size,
                        backends: s.backends.len(),
                    },
                }
                .into());
            }
        }
        let new_vips = services
            .iter()
            .filter(|s| !self.vip_state.contains_key(&vip_key(s)))
            .map(vip_key)
            .collect::<HashSet<_>>()
            .len();
        let gone: Vec<VipKey> = self
            .vip_state
            .keys()
            .filter(|k| !services.iter().any(|s| vip_key(s) == **k))
            .copied()
            .collect();
        if new_vips > self.free_vips.len() + gone.len() {
            return Err(LbMapsError::Capacity {
                what: "virtual services",
                limit: self.opts.max_vips,
            });
        }
        self.services = services.to_vec();
        // Withdraw removed VIPs first (frees their ids).
        for k in gone {
            let _ = self.vips.remove(&k);
            if let Some(st) = self.vip_state.remove(&k) {
                self.free_vips.push(st.id);
            }
        }
        self.sync()
    }

    /// Marks a backend down (health checks failed) or up again and rewrites
    /// the tables of the services using it.
    pub fn set_backend_down(
        &mut self,
        address: IpAddr,
        port: u16,
        down: bool,
    ) -> Result<(), LbMapsError> {
        let changed = if down {
            self.down.insert((address, port))
        } else {
            self.down.remove(&(address, port))
        };
        if changed {
            self.sync()?;
        }
        Ok(())
    }

    /// Writes backends and every VIP's table from `self.services`.
    fn sync(&mut self) -> Result<(), LbMapsError> {
        let services = self.services.clone();
        let mut live = HashSet::new();
        // Backends first, so a table never names an unwritten backend.
        for s in &services {
            for b in &s.backends {
                let key = (b.address, if b.port == 0 { s.port } else { b.port });
                let id = self.backend_id(key)?;
                let (addr, family) = addr16(b.address);
                let down = self.down.contains(&key);
                let flags = if down { BACKEND_DOWN } else { 0 };
                self.backends
                    .set(
                        id,
                        Backend {
                            addr,
                            port: key.1,
                            family,
                            _pad: 0,
                            flags,
                        },
                        0,
                    )
                    .map_err(map_err("LB_BACKENDS"))?;
                if !down {
                    live.insert(key);
                }
            }
        }
        for s in &services {
            let key = vip_key(s);
            let members: Vec<(u32, Member)> = s
                .backends
                .iter()
                .filter_map(|b| {
                    let k = (b.address, if b.port == 0 { s.port } else { b.port });
                    live.contains(&k).then(|| {
                        (
                            self.backend_ids[&k],
                            Member {
                                name: format!("{}:{}", k.0, k.1),
                                weight: b.weight,
                            },
                        )
                    })
                })
                .collect();
            let size =
                maglev::table_size(s.maglev_table_size, s.backends.len()).map_err(|source| {
                    ServiceError::Maglev {
                        service: s.name.clone(),
                        source,
                    }
                })?;
            let list: Vec<Member> = members.iter().map(|(_, m)| m.clone()).collect();
            let table = maglev::build(&list, size).map_err(|source| ServiceError::Maglev {
                service: s.name.clone(),
                source,
            })?;
            let ids: Vec<u32> = table.iter().map(|&i| members[i as usize].0).collect();
            let (id, generation) = match self.vip_state.get(&key) {
                Some(st) => (st.id, st.generation ^ 1),
                None => (
                    self.free_vips.pop().ok_or(LbMapsError::Capacity {
                        what: "virtual services",
                        limit: self.opts.max_vips,
                    })?,
                    0,
                ),
            };
            if !ids.is_empty() {
                let base = (generation * self.opts.max_vips + id) * self.opts.max_table_size;
                let keys: Vec<u32> = (0..ids.len() as u32).map(|i| base + i).collect();
                sys::update_batch(
                    self.ring.fd().as_fd(),
                    sys::bytes_of_slice(&keys),
                    sys::bytes_of_slice(&ids),
                    ids.len(),
                )
                .map_err(|source| LbMapsError::Sys {
                    name: "LB_RING",
                    source,
                })?;
            }
            let ring_size = if ids.is_empty() { 0 } else { size };
            self.vips
                .insert(
                    key,
                    VipInfo {
                        id,
                        ring_size,
                        generation,
                        mode: MODE_IPIP,
                    },
                    0,
                )
                .map_err(map_err("LB_VIPS"))?;
            self.vip_state.insert(key, VipState { id, generation });
            info!(service = %s.name, vip = %s.address, port = s.port, backends = members.len(), table = size, generation, "virtual service written");
        }
        // Backends no longer in any service: down, so their flows move.
        let used: HashSet<(IpAddr, u16)> = services
            .iter()
            .flat_map(|s| {
                s.backends
                    .iter()
                    .map(|b| (b.address, if b.port == 0 { s.port } else { b.port }))
            })
            .collect();
        let retired: Vec<((IpAddr, u16), u32)> = self
            .backend_ids
            .iter()
            .filter(|(k, _)| !used.contains(k))
            .map(|(k, v)| (*k, *v))
            .collect();
        for ((addr, port), id) in retired {
            let (a, family) = addr16(addr);
            self.backends
                .set(
                    id,
                    Backend {
                        addr: a,
                        port,
                        family,
                        _pad: 0,
                        flags: BACKEND_DOWN,
                    },
                    0,
                )
                .map_err(map_err("LB_BACKENDS"))?;
        }
        Ok(())
    }

    /// Totals of a service's VIP counters, by service name.
    pub fn vip_totals(&self, service: &str) -> Option<Totals> {
        let s = self.services.iter().find(|s| s.name == service)?;
        let id = self.vip_state.get(&vip_key(s))?.id;
        sum(&self.vip_counters, id)
    }

    /// Totals of a backend's counters.
    pub fn backend_totals(&self, address: IpAddr, port: u16) -> Option<Totals> {
        let id = *self.backend_ids.get(&(address, port))?;
        sum(&self.backend_counters, id)
    }

    /// A global event counter (`lb_stat::*`), summed over CPUs.
    pub fn stat(&self, which: u32) -> u64 {
        self.stats
            .get(&which, 0)
            .map(|v| v.iter().sum())
            .unwrap_or(0)
    }

    /// Entries in the flow table (walks the keys; for metrics and tests).
    pub fn flow_count(&self) -> usize {
        self.flows.keys().filter(Result::is_ok).count()
    }

    /// Forgets every established flow (operator flush; tests measuring
    /// Maglev alone). Returns how many entries were removed.
    pub fn clear_flows(&mut self) -> usize {
        let keys: Vec<FlowKey> = self.flows.keys().filter_map(Result::ok).collect();
        keys.iter().filter(|k| self.flows.remove(k).is_ok()).count()
    }

    /// Flow-table capacity.
    pub fn flow_capacity(&self) -> u32 {
        self.opts.flow_max.max(1024)
    }

    /// Looks up the backend a flow is pinned to.
    pub fn flow_backend(&self, key: &FlowKey) -> Option<u32> {
        self.flows.get(key, 0).ok().map(|v| v.backend)
    }

    /// True if health checks flagged the backend down.
    pub fn is_down(&self, address: IpAddr, port: u16) -> bool {
        self.down.contains(&(address, port))
    }

    /// Id of a backend, if known.
    pub fn backend_id_of(&self, address: IpAddr, port: u16) -> Option<u32> {
        self.backend_ids.get(&(address, port)).copied()
    }

    /// Number of `lb_stat` counters.
    pub const STATS: u32 = lb_stat::COUNT;
}

fn sum(map: &PerCpuArray<MapData, LbCounter>, id: u32) -> Option<Totals> {
    let v = map.get(&id, 0).ok()?;
    let mut t = Totals::default();
    for c in v.iter() {
        t.packets += c.packets;
        t.bytes += c.bytes;
        t.new_flows += c.new_flows;
    }
    Some(t)
}

impl Drop for Balancer {
    fn drop(&mut self) {
        for m in LB_MAP_NAMES {
            let _ = std::fs::remove_file(self.pin_dir.join(m));
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}
