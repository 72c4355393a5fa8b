//! Loading, attaching, pinning, adopting and detaching the programs.
//!
//! Layout under the pin root (default `/sys/fs/bpf/rampart`), one directory
//! per interface:
//!
//! ```text
//! <root>/<iface>/CONFIG, SRC_LPM, ...   maps (pinned by name by aya)
//! <root>/<iface>/prog_xdp, prog_tc      programs
//! <root>/<iface>/link_xdp, link_tc      bpf_links (XDP, TCX egress)
//! ```
//!
//! Links hold the attachment, so enforcement survives the agent exiting or
//! crashing. A (re)starting agent that finds a live pinned link for an
//! interface adopts it and only reopens the maps: no detach/attach gap and
//! no second attachment. Only `detach` (unpinning) removes enforcement.

use std::{io, path::Path};

use aya::{
    Ebpf, EbpfLoader,
    programs::{
        SchedClassifier, TcAttachType, Xdp, XdpMode,
        links::{FdLink, PinnedLink},
    },
};
use thiserror::Error;
use tracing::{info, warn};

use super::maps::{FwMaps, MAP_NAMES, MapsError, Timeouts};
use crate::{
    attach::{XdpModePref, ifindex},
    pins::{PinError, PinLayout, ensure_bpffs, live_link},
};

/// Loader failures.
#[derive(Debug, Error)]
pub enum LoaderError {
    /// The pin root is unusable.
    #[error(transparent)]
    Pins(#[from] PinError),
    /// Filesystem error under the pin root.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        #[source]
        source: io::Error,
    },
    /// No such interface.
    #[error("interface {interface:?} does not exist")]
    NoInterface {
        /// Name.
        interface: String,
    },
    /// aya could not load the object (includes verifier output).
    #[error("loading the eBPF object for {interface}: {source}")]
    Load {
        /// Interface.
        interface: String,
        /// aya's error.
        #[source]
        source: Box<aya::EbpfError>,
    },
    /// A program operation failed.
    #[error("{what} on {interface}: {source}")]
    Program {
        /// What was attempted.
        what: &'static str,
        /// Interface.
        interface: String,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
    /// Pinning failed.
    #[error("pinning {what} for {interface}: {reason}")]
    Pin {
        /// What.
        what: &'static str,
        /// Interface.
        interface: String,
        /// Error text.
        reason: String,
    },
    /// Map access failed.
    #[error(transparent)]
    Maps(#[from] MapsError),
}

/// Settings for attaching to one interface.
#[derive(Clone, Debug)]
pub struct AttachOptions {
    /// Conntrack entries (used when the maps are created).
    pub conntrack_max: u32,
    /// XDP mode.
    pub xdp_mode: XdpModePref,
    /// Conntrack timeouts.
    pub timeouts: Timeouts,
}

impl Default for AttachOptions {
    fn default() -> Self {
        Self {
            conntrack_max: 65_536,
            xdp_mode: XdpModePref::Auto,
            timeouts: Timeouts::default(),
        }
    }
}

/// An interface under enforcement.
pub struct Attached {
    /// Interface name.
    pub interface: String,
    /// Its maps.
    pub maps: FwMaps,
    /// True if the pinned state of a previous agent was adopted.
    pub adopted: bool,
    /// XDP mode in use (`native`, `generic`, or `adopted`).
    pub xdp_mode: &'static str,
}

fn io_err(path: &Path) -> impl FnOnce(io::Error) -> LoaderError + '_ {
    move |source| LoaderError::Io {
        path: path.display().to_string(),
        source,
    }
}

/// Loads the object with its maps pinned in (or reused from) `dir`.
pub fn load_object(dir: &Path, interface: &str, conntrack_max: u32) -> Result<Ebpf, LoaderError> {
    let max = conntrack_max.max(1024);
    EbpfLoader::new()
        .default_map_pin_directory(dir)
        .map_max_entries("CONNTRACK", max)
        .load(super::FW_OBJECT)
        .map_err(|e| LoaderError::Load {
            interface: interface.to_string(),
            source: Box::new(e),
        })
}

fn prog_err<'a>(
    what: &'static str,
    interface: &'a str,
) -> impl FnOnce(aya::programs::ProgramError) -> LoaderError + 'a {
    move |e| LoaderError::Program {
        what,
        interface: interface.to_string(),
        source: Box::new(e),
    }
}

fn pin_err<'a>(what: &'static str, interface: &'a str) -> impl FnOnce(String) -> LoaderError + 'a {
    move |reason| LoaderError::Pin {
        what,
        interface: interface.to_string(),
        reason,
    }
}

/// Attaches (or adopts) the firewall on `interface`.
pub fn attach(
    layout: &PinLayout,
    interface: &str,
    opts: &AttachOptions,
) -> Result<Attached, LoaderError> {
    let idx = ifindex(interface).ok_or_else(|| LoaderError::NoInterface {
        interface: interface.to_string(),
    })?;
    ensure_bpffs(&layout.root)?;
    let dir = layout.dir(interface);
    std::fs::create_dir_all(&dir).map_err(io_err(&dir))?;
    let xdp_link = dir.join("link_xdp");
    let tc_link = dir.join("link_tc");
    let have_xdp = live_link(&xdp_link, idx);
    let have_tc = live_link(&tc_link, idx);
    let maps_pinned = MAP_NAMES.iter().all(|m| dir.join(m).exists());

    if have_xdp && have_tc && maps_pinned {
        let maps = FwMaps::from_pins(&dir)?;
        maps.set_timeouts(&opts.timeouts)?;
        info!(
            interface,
            generation = maps.generation()?,
            "adopted pinned firewall state"
        );
        return Ok(Attached {
            interface: interface.to_string(),
            maps,
            adopted: true,
            xdp_mode: "adopted",
        });
    }

    let mut ebpf = load_object(&dir, interface, opts.conntrack_max)?;
    let mut mode = "adopted";
    if !have_xdp {
        let _ = std::fs::remove_file(&xdp_link);
        let prog: &mut Xdp = ebpf
            .program_mut("rampart_xdp")
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| pin_err("xdp program", interface)("missing from object".into()))?;
        prog.load().map_err(prog_err("load xdp", interface))?;
        let try_modes: &[(XdpMode, &'static str)] = match opts.xdp_mode {
            XdpModePref::Auto => &[(XdpMode::Driver, "native"), (XdpMode::Skb, "generic")],
            XdpModePref::Native => &[(XdpMode::Driver, "native")],
            XdpModePref::Generic => &[(XdpMode::Skb, "generic")],
        };
        let mut last = None;
        let mut link_id = None;
        for (m, name) in try_modes {
            match prog.attach(interface, *m) {
                Ok(id) => {
                    link_id = Some(id);
                    mode = name;
                    break;
                }
                Err(e) => {
                    warn!(interface, mode = name, error = %e, "XDP attach failed");
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
            FdLink::try_from(link).map_err(|e| pin_err("xdp link", interface)(e.to_string()))?;
        fd_link
            .pin(&xdp_link)
            .map_err(|e| pin_err("xdp link", interface)(e.to_string()))?;
        let pp = dir.join("prog_xdp");
        let _ = std::fs::remove_file(&pp);
        prog.pin(&pp)
            .map_err(|e| pin_err("xdp program", interface)(e.to_string()))?;
    }
    if !have_tc {
        let _ = std::fs::remove_file(&tc_link);
        let prog: &mut SchedClassifier = ebpf
            .program_mut("rampart_tc")
            .and_then(|p| p.try_into().ok())
            .ok_or_else(|| pin_err("tc program", interface)("missing from object".into()))?;
        prog.load().map_err(prog_err("load tc", interface))?;
        let link_id = prog
            .attach(interface, TcAttachType::Egress)
            .map_err(prog_err("attach tc egress", interface))?;
        let link = prog
            .take_link(link_id)
            .map_err(prog_err("take tc link", interface))?;
        let fd_link = FdLink::try_from(link)
            .map_err(|e| pin_err("tc link (TCX needed)", interface)(e.to_string()))?;
        fd_link
            .pin(&tc_link)
            .map_err(|e| pin_err("tc link", interface)(e.to_string()))?;
        let pp = dir.join("prog_tc");
        let _ = std::fs::remove_file(&pp);
        prog.pin(&pp)
            .map_err(|e| pin_err("tc program", interface)(e.to_string()))?;
    }
    let maps = FwMaps::from_ebpf(&mut ebpf)?;
    maps.set_timeouts(&opts.timeouts)?;
    info!(
        interface,
        xdp_mode = mode,
        partial_adopt = have_xdp || have_tc,
        "firewall attached and pinned"
    );
    Ok(Attached {
        interface: interface.to_string(),
        maps,
        adopted: false,
        xdp_mode: mode,
    })
}

/// Removes enforcement from `interface`: unpins links, programs and maps.
/// Links detach when their last reference (the pin) goes away.
pub fn detach(layout: &PinLayout, interface: &str) -> Result<(), LoaderError> {
    let dir = layout.dir(interface);
    if !dir.exists() {
        return Ok(());
    }
    // The load balancer's pins (`<dir>/lb`) first: it may be chained in the
    // firewall's LB_CHAIN.
    crate::lb::maps::detach_pinned(&crate::lb::maps::lb_pin_dir(&dir)).map_err(|e| {
        LoaderError::Pin {
            what: "load balancer (detach)",
            interface: interface.to_string(),
            reason: e.to_string(),
        }
    })?;
    for name in ["link_xdp", "link_tc", "prog_xdp", "prog_tc"]
        .iter()
        .chain(MAP_NAMES.iter())
    {
        let p = dir.join(name);
        if p.exists() {
            if name.starts_with("link_") {
                // Unpin through aya so a live link is released explicitly.
                if let Ok(l) = PinnedLink::from_pin(&p) {
                    let _ = l.unpin();
                    continue;
                }
            }
            std::fs::remove_file(&p).map_err(io_err(&p))?;
        }
    }
    std::fs::remove_dir(&dir).map_err(io_err(&dir))?;
    info!(interface, "firewall detached");
    Ok(())
}

/// Detaches every interface under the pin root, then removes the root.
pub fn detach_all(layout: &PinLayout) -> Result<Vec<String>, LoaderError> {
    let ifs = layout.interfaces();
    for i in &ifs {
        detach(layout, i)?;
    }
    if layout.root.exists() {
        let _ = std::fs::remove_dir(&layout.root);
    }
    Ok(ifs)
}
