//! Loading the load balancer's object and writing services into its maps.
//!
//! Per VIP the ring map holds two rows (generations). An update builds the
//! Maglev table in userspace, writes it into the VIP's inactive row, then
//! replaces the VIP's `VipInfo` (one map update) with the flipped
//! generation and new size: packets see the old table or the new one, never
//! a mix. Backends that leave every service or fail health checks are
//! flagged down, so flows pinned to them move to Maglev's new choice while
//! all other established flows keep their backend (LRU flow table).
//!
//! Two ways to run it:
//! - [`Balancer::load`]: ephemeral (tests, the benchmark): programs attached
//!   through aya's links, pins removed when the balancer is dropped.
//! - [`Balancer::attach_pinned`]: the agent's way. Programs, links and maps
//!   are pinned under the pin directory, so the load balancer keeps
//!   forwarding when the agent exits or crashes; a restarted agent adopts
//!   the live state without a gap, and only [`detach_pinned`] (called by
//!   `rampart-agent detach` through the loader) removes it.

use std::{
    collections::{HashMap, HashSet},
    net::IpAddr,
    os::fd::AsFd,
    path::{Path, PathBuf},
};

use aya::{
    Ebpf, EbpfLoader,
    maps::{Array, HashMap as BpfHashMap, Map, MapData, PerCpuArray, ProgramArray},
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use rampart_common::lb::{
    BACKEND_DOWN, Backend, FlowKey, FlowValue, LB_FAMILY_V4, LB_FAMILY_V6, LB_FILTER_SLOTS,
    LB_MAX_BACKENDS, LbConfig, LbCounter, MODE_DNAT, MODE_IPIP, NextHop, VipInfo, VipKey, lb_stat,
    vip_filter_slot,
};
use thiserror::Error;
use tracing::{info, warn};

use super::{
    maglev::{self, Member},
    service::{Mode, ServiceError, ServiceSpec},
};
use crate::{attach::XdpModePref, sys};

/// Names of the object's maps (all pinned by name under the pin directory).
pub const LB_MAP_NAMES: [&str; 11] = [
    "LB_CONFIG",
    "LB_VIPS",
    "LB_BACKENDS",
    "LB_RING",
    "LB_FLOWS",
    "LB_VIP_COUNTERS",
    "LB_BACKEND_COUNTERS",
    "LB_STATS",
    "LB_NAT",
    "LB_NEXTHOP",
    "LB_VIP_FILTER",
];

/// Pins of [`Balancer::attach_pinned`] besides the maps: programs and links.
pub const LB_PROG_PINS: [&str; 4] = ["link_xdp", "link_tc", "prog_lb", "prog_lb_nat"];

/// The firewall's program array (in the firewall's pin directory) whose
/// slot 0 the balancer occupies when chained after the firewall.
pub const FW_CHAIN_MAP: &str = "LB_CHAIN";

/// Where the agent pins the load balancer of an interface: `lb/` inside the
/// firewall's directory of that interface, so the firewall's chain map is
/// the parent's `LB_CHAIN` and `rampart-agent detach` finds both.
pub fn lb_pin_dir(interface_dir: &Path) -> PathBuf {
    interface_dir.join("lb")
}

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
    Pins(#[from] crate::pins::PinError),
    /// Pinning or unpinning a program or link failed.
    #[error("pin {path}: {reason}")]
    Pin {
        /// Pin path.
        path: String,
        /// Error text.
        reason: String,
    },
    /// Chaining after the firewall needs the firewall on the interface.
    #[error(
        "chaining after the firewall: {path} is missing (attach the firewall to the interface first)"
    )]
    NoFirewall {
        /// The firewall's chain map pin expected.
        path: String,
    },
    /// The operation needs the loaded object, but the state was adopted.
    #[error("{what}: the balancer was adopted from pins (no loaded object)")]
    Adopted {
        /// What was attempted.
        what: &'static str,
    },
    /// Reading the neighbour table failed.
    #[error("neighbour table {path}: {source}")]
    Neighbours {
        /// File read.
        path: String,
        /// Error.
        #[source]
        source: std::io::Error,
    },
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
    /// The balancer (XDP).
    Balancer,
    /// Backend-side IP-in-IP decapsulation (XDP).
    Decap,
    /// DNAT mode's reverse translation (TC ingress where replies arrive).
    Nat,
}

impl LbProgram {
    /// The program's name in the object.
    pub fn name(self) -> &'static str {
        match self {
            Self::Balancer => "rampart_lb",
            Self::Decap => "rampart_lb_decap",
            Self::Nat => "rampart_lb_nat",
        }
    }
}

/// How the balancer's XDP program meets the interface's packets.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Hook {
    /// Its own XDP attachment on the interface.
    Xdp(XdpModePref),
    /// Tail call from the firewall's `rampart_xdp` on the same interface
    /// (one XDP program per interface): the firewall runs first and hands
    /// passed packets over through its `LB_CHAIN` program array, found in
    /// the parent of the balancer's pin directory (see [`lb_pin_dir`]).
    AfterFirewall,
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
    /// None when adopted from pins (the programs run from their pins).
    ebpf: Option<Ebpf>,
    pin_dir: PathBuf,
    /// Pins outlive the balancer ([`Balancer::attach_pinned`]).
    persistent: bool,
    nat: BpfHashMap<MapData, FlowKey, rampart_common::lb::NatValue>,
    nexthops: Array<MapData, NextHop>,
    vip_filter: MapData,
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

/// An address as the filter slot function takes it: its network-order
/// bytes as native-endian words, as the program loads them.
pub fn addr_words(a: IpAddr) -> [u32; 4] {
    let (b, _) = addr16(a);
    let w = |i: usize| u32::from_ne_bytes([b[i], b[i + 1], b[i + 2], b[i + 3]]);
    [w(0), w(4), w(8), w(12)]
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

/// An array map's raw handle (for batched writes).
fn take_data(ebpf: &mut Ebpf, name: &'static str) -> Result<MapData, LbMapsError> {
    match ebpf.take_map(name) {
        Some(aya::maps::Map::Array(m)) => Ok(m),
        _ => Err(LbMapsError::Map {
            name,
            source: Box::new(aya::maps::MapError::InvalidName {
                name: name.to_string(),
            }),
        }),
    }
}

fn map_err(name: &'static str) -> impl FnOnce(aya::maps::MapError) -> LbMapsError {
    move |e| LbMapsError::Map {
        name,
        source: Box::new(e),
    }
}

fn prog_err<'a>(
    what: &'static str,
    interface: &'a str,
) -> impl FnOnce(aya::programs::ProgramError) -> LbMapsError + 'a {
    move |e| LbMapsError::Program {
        what,
        interface: interface.to_string(),
        source: Box::new(e),
    }
}

fn pin_err(path: &Path) -> impl FnOnce(String) -> LbMapsError + '_ {
    move |reason| LbMapsError::Pin {
        path: path.display().to_string(),
        reason,
    }
}

fn open_pin(dir: &Path, name: &'static str) -> Result<MapData, LbMapsError> {
    MapData::from_pin(dir.join(name)).map_err(map_err(name))
}

fn pinned<T>(dir: &Path, name: &'static str) -> Result<T, LbMapsError>
where
    T: TryFrom<Map, Error = aya::maps::MapError>,
{
    let data = open_pin(dir, name)?;
    let map = Map::from_map_data(data).map_err(map_err(name))?;
    T::try_from(map).map_err(map_err(name))
}

/// Opens the firewall's chain map (slot 0 = the balancer) as raw map data.
fn fw_chain_data(pin_dir: &Path) -> Result<MapData, LbMapsError> {
    let path = pin_dir
        .parent()
        .map(|p| p.join(FW_CHAIN_MAP))
        .unwrap_or_default();
    if !path.exists() {
        return Err(LbMapsError::NoFirewall {
            path: path.display().to_string(),
        });
    }
    MapData::from_pin(&path).map_err(map_err(FW_CHAIN_MAP))
}

/// Opens the firewall's chain map (slot 0 = the balancer).
fn fw_chain(pin_dir: &Path) -> Result<ProgramArray<MapData>, LbMapsError> {
    let map = Map::from_map_data(fw_chain_data(pin_dir)?).map_err(map_err(FW_CHAIN_MAP))?;
    ProgramArray::try_from(map).map_err(map_err(FW_CHAIN_MAP))
}

/// True if `prog_pin` is the program in the firewall's chain slot 0.
fn chained(pin_dir: &Path, prog_pin: &Path) -> bool {
    let Ok(chain) = fw_chain_data(pin_dir) else {
        return false;
    };
    let Ok(prog) = aya::programs::ProgramInfo::from_pin(prog_pin) else {
        return false;
    };
    let mut id = [0u8; 4];
    matches!(
        sys::lookup_elem(chain.fd().as_fd(), &0u32.to_ne_bytes(), &mut id),
        Ok(true)
    ) && u32::from_ne_bytes(id) == prog.id()
}

/// Removes the balancer's pins under `pin_dir` (links first: the XDP and TC
/// attachments go away with their last reference), empties the firewall's
/// chain slot if this balancer occupied it, and removes the directory.
/// Nothing to do if the directory does not exist.
pub fn detach_pinned(pin_dir: &Path) -> Result<(), LbMapsError> {
    if !pin_dir.exists() {
        return Ok(());
    }
    let prog = pin_dir.join("prog_lb");
    if chained(pin_dir, &prog)
        && let Ok(mut chain) = fw_chain(pin_dir)
    {
        let _ = chain.clear_index(&0);
    }
    for name in LB_PROG_PINS.iter().chain(LB_MAP_NAMES.iter()) {
        let p = pin_dir.join(name);
        if !p.exists() {
            continue;
        }
        if name.starts_with("link_")
            && let Ok(l) = PinnedLink::from_pin(&p)
        {
            let _ = l.unpin();
            continue;
        }
        std::fs::remove_file(&p).map_err(|e| pin_err(&p)(e.to_string()))?;
    }
    std::fs::remove_dir(pin_dir).map_err(|e| pin_err(pin_dir)(e.to_string()))?;
    info!(pin_dir = %pin_dir.display(), "load balancer detached");
    Ok(())
}

/// Loads the object with its maps pinned in (or reused from) `pin_dir`.
fn load_object(pin_dir: &Path, opts: &LbOptions) -> Result<Ebpf, LbMapsError> {
    crate::pins::ensure_bpffs(pin_dir)?;
    let ring = 2 * opts.max_vips * opts.max_table_size;
    EbpfLoader::new()
        .default_map_pin_directory(pin_dir)
        .map_max_entries("LB_RING", ring)
        .map_max_entries("LB_FLOWS", opts.flow_max.max(1024))
        .map_max_entries("LB_NAT", opts.flow_max.max(1024))
        .load(super::LB_OBJECT)
        .map_err(|e| LbMapsError::Load(Box::new(e)))
}

fn config_of(opts: &LbOptions) -> LbConfig {
    LbConfig {
        src_v4: opts.src_v4.octets(),
        src_v6: opts.src_v6.octets(),
        gw_mac: opts.gw_mac.unwrap_or_default(),
        _pad: [0; 2],
        ring_stride: opts.max_table_size,
        max_vips: opts.max_vips,
    }
}

impl Balancer {
    /// Loads the object with maps pinned under `pin_dir` (a bpffs path,
    /// created if needed) and loads (verifies) its programs. Ephemeral: the
    /// pins are removed when the balancer is dropped.
    pub fn load(pin_dir: &Path, opts: LbOptions) -> Result<Self, LbMapsError> {
        let mut ebpf = load_object(pin_dir, &opts)?;
        for p in [LbProgram::Balancer, LbProgram::Decap] {
            let prog: &mut Xdp = ebpf
                .program_mut(p.name())
                .and_then(|p| p.try_into().ok())
                .expect("object has its XDP programs");
            prog.load().map_err(prog_err("load", ""))?;
        }
        let tc: &mut SchedClassifier = ebpf
            .program_mut(LbProgram::Nat.name())
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_lb_nat");
        tc.load().map_err(prog_err("load", ""))?;
        Self::from_object(ebpf, pin_dir, opts, false)
    }

    fn from_object(
        mut ebpf: Ebpf,
        pin_dir: &Path,
        opts: LbOptions,
        persistent: bool,
    ) -> Result<Self, LbMapsError> {
        let mut config: Array<MapData, LbConfig> = take(&mut ebpf, "LB_CONFIG")?;
        config
            .set(0, config_of(&opts), 0)
            .map_err(map_err("LB_CONFIG"))?;
        let Some(aya::maps::Map::Array(ring)) = ebpf.take_map("LB_RING") else {
            return Err(LbMapsError::Map {
                name: "LB_RING",
                source: Box::new(aya::maps::MapError::InvalidName {
                    name: "LB_RING".into(),
                }),
            });
        };
        let mut lb = Self {
            vips: take(&mut ebpf, "LB_VIPS")?,
            backends: take(&mut ebpf, "LB_BACKENDS")?,
            ring,
            flows: take(&mut ebpf, "LB_FLOWS")?,
            vip_counters: take(&mut ebpf, "LB_VIP_COUNTERS")?,
            backend_counters: take(&mut ebpf, "LB_BACKEND_COUNTERS")?,
            stats: take(&mut ebpf, "LB_STATS")?,
            nat: take(&mut ebpf, "LB_NAT")?,
            nexthops: take(&mut ebpf, "LB_NEXTHOP")?,
            vip_filter: take_data(&mut ebpf, "LB_VIP_FILTER")?,
            ebpf: Some(ebpf),
            pin_dir: pin_dir.to_path_buf(),
            persistent,
            free_vips: (0..opts.max_vips).rev().collect(),
            opts,
            vip_state: HashMap::new(),
            backend_ids: HashMap::new(),
            next_backend: 0,
            down: HashSet::new(),
            services: Vec::new(),
        };
        if persistent {
            // Maps reused from pins may already hold services.
            lb.restore_state()?;
        }
        Ok(lb)
    }

    /// Opens the maps pinned in `pin_dir` (adoption: the programs keep
    /// running from their pins, nothing is reloaded or reattached).
    fn from_pins(pin_dir: &Path, opts: LbOptions) -> Result<Self, LbMapsError> {
        let mut config: Array<MapData, LbConfig> = pinned(pin_dir, "LB_CONFIG")?;
        config
            .set(0, config_of(&opts), 0)
            .map_err(map_err("LB_CONFIG"))?;
        let mut lb = Self {
            vips: pinned(pin_dir, "LB_VIPS")?,
            backends: pinned(pin_dir, "LB_BACKENDS")?,
            ring: open_pin(pin_dir, "LB_RING")?,
            flows: pinned(pin_dir, "LB_FLOWS")?,
            vip_counters: pinned(pin_dir, "LB_VIP_COUNTERS")?,
            backend_counters: pinned(pin_dir, "LB_BACKEND_COUNTERS")?,
            stats: pinned(pin_dir, "LB_STATS")?,
            nat: pinned(pin_dir, "LB_NAT")?,
            nexthops: pinned(pin_dir, "LB_NEXTHOP")?,
            vip_filter: open_pin(pin_dir, "LB_VIP_FILTER")?,
            ebpf: None,
            pin_dir: pin_dir.to_path_buf(),
            persistent: true,
            free_vips: (0..opts.max_vips).rev().collect(),
            opts,
            vip_state: HashMap::new(),
            backend_ids: HashMap::new(),
            next_backend: 0,
            down: HashSet::new(),
            services: Vec::new(),
        };
        lb.restore_state()?;
        Ok(lb)
    }

    /// Rebuilds the id bookkeeping from the maps: VIP ids and generations
    /// (so the next update writes the inactive ring row), backend ids (never
    /// reused: pinned flows keep pointing at the right backend). Service
    /// names and weights are not in the maps: the agent re-applies its
    /// services, which rewrites every table through the A/B swap. Health
    /// state restarts as up (a still-failing backend goes down again after
    /// `fall` probes).
    fn restore_state(&mut self) -> Result<(), LbMapsError> {
        let mut used = HashSet::new();
        for item in &self.vips {
            let (k, v) = item.map_err(map_err("LB_VIPS"))?;
            if v.id < self.opts.max_vips {
                used.insert(v.id);
                self.vip_state.insert(
                    k,
                    VipState {
                        id: v.id,
                        generation: v.generation,
                    },
                );
            }
        }
        self.free_vips.retain(|id| !used.contains(id));
        for id in 0..LB_MAX_BACKENDS {
            let Ok(b) = self.backends.get(&id, 0) else {
                continue;
            };
            let addr = match b.family {
                LB_FAMILY_V4 => IpAddr::from([b.addr[0], b.addr[1], b.addr[2], b.addr[3]]),
                LB_FAMILY_V6 => IpAddr::from(b.addr),
                _ => continue,
            };
            self.backend_ids.insert((addr, b.port), id);
            self.next_backend = id + 1;
        }
        Ok(())
    }

    /// The agent's way to run the balancer on `interface`: loads the object
    /// with everything pinned under `pin_dir` (see [`lb_pin_dir`]), hooks
    /// `rampart_lb` in as `hook` says and `rampart_lb_nat` on TC ingress
    /// (TCX), pins programs and links. If a previous agent left a live
    /// balancer there (pinned links still attached to this interface, or
    /// the chain slot still holding the pinned program), it is adopted:
    /// the maps are reopened, nothing is detached or reloaded, so packets
    /// never miss the balancer. Returns the balancer and whether it was
    /// adopted. Dropping it leaves everything in place.
    pub fn attach_pinned(
        pin_dir: &Path,
        interface: &str,
        hook: Hook,
        opts: LbOptions,
    ) -> Result<(Self, bool), LbMapsError> {
        let idx = crate::attach::ifindex(interface)
            .ok_or_else(|| LbMapsError::NoInterface(interface.to_string()))?;
        crate::pins::ensure_bpffs(pin_dir)?;
        let xdp_link = pin_dir.join("link_xdp");
        let tc_link = pin_dir.join("link_tc");
        let prog_pin = pin_dir.join("prog_lb");
        let have_hook = match hook {
            Hook::Xdp(_) => crate::pins::live_link(&xdp_link, idx),
            Hook::AfterFirewall => chained(pin_dir, &prog_pin),
        };
        let have_tc = crate::pins::live_link(&tc_link, idx);
        let maps_pinned = LB_MAP_NAMES.iter().all(|m| pin_dir.join(m).exists());
        if have_hook && have_tc && maps_pinned {
            let lb = Self::from_pins(pin_dir, opts)?;
            info!(
                interface,
                vips = lb.vip_state.len(),
                backends = lb.backend_ids.len(),
                "adopted pinned load balancer"
            );
            return Ok((lb, true));
        }
        let mut ebpf = load_object(pin_dir, &opts)?;
        if !have_hook {
            let prog: &mut Xdp = ebpf
                .program_mut(LbProgram::Balancer.name())
                .and_then(|p| p.try_into().ok())
                .expect("object has rampart_lb");
            prog.load().map_err(prog_err("load xdp", interface))?;
            let _ = std::fs::remove_file(&prog_pin);
            prog.pin(&prog_pin)
                .map_err(|e| pin_err(&prog_pin)(e.to_string()))?;
            match hook {
                Hook::Xdp(pref) => {
                    let _ = std::fs::remove_file(&xdp_link);
                    let modes: &[XdpMode] = match pref {
                        XdpModePref::Auto => &[XdpMode::Driver, XdpMode::Skb],
                        XdpModePref::Native => &[XdpMode::Driver],
                        XdpModePref::Generic => &[XdpMode::Skb],
                    };
                    let mut last = None;
                    let mut link_id = None;
                    for m in modes {
                        match prog.attach(interface, *m) {
                            Ok(id) => {
                                link_id = Some(id);
                                break;
                            }
                            Err(e) => {
                                warn!(interface, mode = ?m, error = %e, "XDP attach failed");
                                last = Some(e);
                            }
                        }
                    }
                    let Some(link_id) = link_id else {
                        return Err(prog_err("attach xdp", interface)(
                            last.expect("at least one mode tried"),
                        ));
                    };
                    let link = prog
                        .take_link(link_id)
                        .map_err(prog_err("take xdp link", interface))?;
                    let fd_link =
                        FdLink::try_from(link).map_err(|e| pin_err(&xdp_link)(e.to_string()))?;
                    fd_link
                        .pin(&xdp_link)
                        .map_err(|e| pin_err(&xdp_link)(e.to_string()))?;
                }
                Hook::AfterFirewall => {
                    let mut chain = fw_chain(pin_dir)?;
                    let fd = prog.fd().map_err(prog_err("program fd", interface))?;
                    chain.set(0, fd, 0).map_err(map_err(FW_CHAIN_MAP))?;
                }
            }
        }
        if !have_tc {
            let tc: &mut SchedClassifier = ebpf
                .program_mut(LbProgram::Nat.name())
                .and_then(|p| p.try_into().ok())
                .expect("object has rampart_lb_nat");
            tc.load().map_err(prog_err("load tc", interface))?;
            let pp = pin_dir.join("prog_lb_nat");
            let _ = std::fs::remove_file(&pp);
            tc.pin(&pp).map_err(|e| pin_err(&pp)(e.to_string()))?;
            let _ = std::fs::remove_file(&tc_link);
            let id = tc
                .attach(interface, TcAttachType::Ingress)
                .map_err(prog_err("attach tc ingress", interface))?;
            let link = tc
                .take_link(id)
                .map_err(prog_err("take tc link", interface))?;
            let fd_link = FdLink::try_from(link)
                .map_err(|e| pin_err(&tc_link)(format!("TCX link needed: {e}")))?;
            fd_link
                .pin(&tc_link)
                .map_err(|e| pin_err(&tc_link)(e.to_string()))?;
        }
        let lb = Self::from_object(ebpf, pin_dir, opts, true)?;
        info!(
            interface,
            ?hook,
            partial_adopt = have_hook || have_tc,
            "load balancer attached and pinned"
        );
        Ok((lb, false))
    }

    /// The next-hop cache entry of backend `address:port`, if filled.
    pub fn next_hop(&self, address: IpAddr, port: u16) -> Option<NextHop> {
        let id = *self.backend_ids.get(&(address, port))?;
        self.nexthops.get(&id, 0).ok().filter(|h| h.valid != 0)
    }

    /// Fills the next-hop cache of every backend with address `address`:
    /// the dataplane then skips `bpf_fib_lookup` for them. `None` clears it
    /// (back to the FIB lookup).
    pub fn set_next_hop(
        &mut self,
        address: IpAddr,
        hop: Option<([u8; 6], [u8; 6], u32)>,
    ) -> Result<usize, LbMapsError> {
        let ids: Vec<u32> = self
            .backend_ids
            .iter()
            .filter(|((a, _), _)| *a == address)
            .map(|(_, id)| *id)
            .collect();
        let v = match hop {
            Some((dmac, smac, ifindex)) => NextHop {
                dmac,
                smac,
                ifindex,
                valid: 1,
            },
            None => NextHop::default(),
        };
        for id in &ids {
            self.nexthops
                .set(*id, v, 0)
                .map_err(map_err("LB_NEXTHOP"))?;
        }
        Ok(ids.len())
    }

    /// Fills the next-hop cache from the calling thread's network
    /// namespace: for every IPv4 backend with a complete entry in the
    /// neighbour table (`/proc/thread-self/net/arp`) on `interface`. Backends
    /// without one keep the FIB lookup. Returns how many addresses were
    /// cached. Call again after neighbour changes (the health checks keep
    /// the entries fresh).
    pub fn resolve_next_hops(&mut self, interface: &str) -> Result<usize, LbMapsError> {
        let ifindex = crate::attach::ifindex(interface)
            .ok_or_else(|| LbMapsError::NoInterface(interface.to_string()))?;
        let smac = interface_mac(interface).map_err(|source| LbMapsError::Neighbours {
            path: format!("SIOCGIFHWADDR {interface}"),
            source,
        })?;
        let path = "/proc/thread-self/net/arp";
        let text = std::fs::read_to_string(path).map_err(|source| LbMapsError::Neighbours {
            path: path.into(),
            source,
        })?;
        let mut n = 0;
        let addrs: HashSet<IpAddr> = self.backend_ids.keys().map(|(a, _)| *a).collect();
        for line in text.lines().skip(1) {
            let f: Vec<&str> = line.split_whitespace().collect();
            // IP address, HW type, Flags, HW address, Mask, Device
            if f.len() < 6 || f[5] != interface || f[2] == "0x0" {
                continue;
            }
            let (Ok(ip), Some(mac)) = (f[0].parse::<IpAddr>(), parse_mac(f[3])) else {
                continue;
            };
            if addrs.contains(&ip) && self.set_next_hop(ip, Some((mac, smac, ifindex)))? > 0 {
                n += 1;
            }
        }
        Ok(n)
    }

    /// Attaches `program` to `interface` (in the calling thread's network
    /// namespace). `generic` selects SKB mode instead of native.
    pub fn attach(
        &mut self,
        program: LbProgram,
        interface: &str,
        generic: bool,
    ) -> Result<(), LbMapsError> {
        if crate::attach::ifindex(interface).is_none() {
            return Err(LbMapsError::NoInterface(interface.to_string()));
        }
        let ebpf = self
            .ebpf
            .as_mut()
            .ok_or(LbMapsError::Adopted { what: "attach" })?;
        if program == LbProgram::Nat {
            let tc: &mut SchedClassifier = ebpf
                .program_mut(program.name())
                .and_then(|p| p.try_into().ok())
                .expect("object has rampart_lb_nat");
            tc.attach(interface, TcAttachType::Ingress)
                .map_err(prog_err("attach tc ingress", interface))?;
            info!(
                interface,
                program = program.name(),
                "load balancer attached"
            );
            return Ok(());
        }
        let prog: &mut Xdp = ebpf
            .program_mut(program.name())
            .and_then(|p| p.try_into().ok())
            .expect("object has its XDP programs");
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

    /// The object (for the test-run harness); an error if adopted.
    pub fn ebpf_mut(&mut self) -> Result<&mut Ebpf, LbMapsError> {
        self.ebpf
            .as_mut()
            .ok_or(LbMapsError::Adopted { what: "test run" })
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
        // The filter names every new address before its VIP is written.
        self.write_vip_filter()?;
        self.sync()
    }

    /// Rewrites `LB_VIP_FILTER`: a slot is set iff some service's address
    /// falls in it.
    fn write_vip_filter(&mut self) -> Result<(), LbMapsError> {
        let mut slots = vec![0u32; LB_FILTER_SLOTS as usize];
        for s in &self.services {
            slots[vip_filter_slot(addr_words(s.address)) as usize] = 1;
        }
        let keys: Vec<u32> = (0..LB_FILTER_SLOTS).collect();
        sys::update_batch(
            self.vip_filter.fd().as_fd(),
            sys::bytes_of_slice(&keys),
            sys::bytes_of_slice(&slots),
            keys.len(),
        )
        .map_err(|source| LbMapsError::Sys {
            name: "LB_VIP_FILTER",
            source,
        })
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
                        mode: match s.mode {
                            Mode::Ipip => MODE_IPIP,
                            Mode::Dnat => MODE_DNAT,
                        },
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

    /// The reverse translation recorded for a DNAT reply 5-tuple.
    pub fn nat_entry(&self, reply: &FlowKey) -> Option<rampart_common::lb::NatValue> {
        self.nat.get(reply, 0).ok()
    }

    /// Entries in the DNAT reverse-translation table.
    pub fn nat_count(&self) -> usize {
        self.nat.keys().filter(Result::is_ok).count()
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

/// The hardware address of `interface` in the calling thread's network
/// namespace (an ioctl on a socket made here: `/sys/class/net` would show
/// the namespace sysfs was mounted in, not the thread's).
fn interface_mac(interface: &str) -> std::io::Result<[u8; 6]> {
    let name = interface.as_bytes();
    // SAFETY: an all-zero ifreq is valid.
    #[allow(unsafe_code, reason = "ifreq for ioctl(2)")]
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    if name.len() >= req.ifr_name.len() {
        return Err(std::io::Error::other("interface name too long"));
    }
    for (d, s) in req.ifr_name.iter_mut().zip(name) {
        *d = *s as libc::c_char;
    }
    // SAFETY: plain socket(2); the fd is owned below.
    #[allow(unsafe_code, reason = "socket(2)")]
    let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if fd < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: fd is a new descriptor we own.
    #[allow(unsafe_code, reason = "fd from socket(2)")]
    let sock = unsafe { <std::os::fd::OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) };
    // SAFETY: req is a valid ifreq with a NUL-terminated name.
    #[allow(unsafe_code, reason = "ioctl(SIOCGIFHWADDR)")]
    let r = unsafe {
        libc::ioctl(
            std::os::fd::AsRawFd::as_raw_fd(&sock),
            libc::SIOCGIFHWADDR,
            &raw mut req,
        )
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: SIOCGIFHWADDR filled the hwaddr member of the union.
    #[allow(unsafe_code, reason = "reading the ioctl's union member")]
    let data = unsafe { req.ifr_ifru.ifru_hwaddr.sa_data };
    let mut mac = [0u8; 6];
    for (d, s) in mac.iter_mut().zip(data.iter()) {
        *d = *s as u8;
    }
    Ok(mac)
}

/// Parses `aa:bb:cc:dd:ee:ff`.
fn parse_mac(s: &str) -> Option<[u8; 6]> {
    let mut mac = [0u8; 6];
    let mut parts = s.split(':');
    for b in &mut mac {
        *b = u8::from_str_radix(parts.next()?, 16).ok()?;
    }
    parts.next().is_none().then_some(mac)
}

impl Drop for Balancer {
    fn drop(&mut self) {
        if self.persistent {
            return;
        }
        for m in LB_MAP_NAMES {
            let _ = std::fs::remove_file(self.pin_dir.join(m));
        }
        let _ = std::fs::remove_dir(&self.pin_dir);
    }
}

#[cfg(test)]
mod tests {
    use super::parse_mac;

    #[test]
    fn mac_addresses_parse_strictly() {
        assert_eq!(
            parse_mac("02:1a:ff:00:09:10"),
            Some([0x02, 0x1a, 0xff, 0x00, 0x09, 0x10])
        );
        for bad in [
            "",
            "02:1a:ff:00:09",
            "02:1a:ff:00:09:10:11",
            "02:1a:ff:00:09:zz",
        ] {
            assert_eq!(parse_mac(bad), None, "{bad:?}");
        }
    }
}
