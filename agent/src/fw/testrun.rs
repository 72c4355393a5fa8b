//! Runs the firewall programs on hand-made packets with `BPF_PROG_TEST_RUN`
//! (aya's `TestRun`): the fixture tests and the per-packet cost benchmark
//! use real programs and real maps, just no interface.

use std::{
    path::PathBuf,
    sync::atomic::{AtomicU32, Ordering},
    time::Duration,
};

use aya::{
    Ebpf,
    programs::{SchedClassifier, TestRun, TestRunOptions, Xdp},
};
use rampart_proto::v1::HostPolicy;
use thiserror::Error;

use crate::{
    fw::loader::{self, LoaderError},
    fw::maps::{FwMaps, MAP_NAMES, MapsError, Timeouts},
    fw::policy::{self, PolicyError},
};

/// XDP verdicts as returned by the program.
pub const XDP_DROP: u32 = 1;
/// Pass.
pub const XDP_PASS: u32 = 2;
/// TC verdict "pass" (TC_ACT_UNSPEC / TCX_NEXT), as u32.
pub const TC_PASS: u32 = u32::MAX;
/// TC verdict "drop" (TC_ACT_SHOT).
pub const TC_DROP: u32 = 2;

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Harness failures.
#[derive(Debug, Error)]
pub enum TestRunError {
    /// Loading failed.
    #[error(transparent)]
    Loader(#[from] LoaderError),
    /// Map access failed.
    #[error(transparent)]
    Maps(#[from] MapsError),
    /// The policy was refused.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The policy has no interface entry to take tables from.
    #[error("policy has no interfaces")]
    NoInterface,
    /// A program run failed.
    #[error("{what}: {source}")]
    Program {
        /// Which step.
        what: &'static str,
        /// aya's error.
        #[source]
        source: Box<aya::programs::ProgramError>,
    },
}

/// The programs loaded (not attached) with private pinned maps.
pub struct Harness {
    ebpf: Ebpf,
    /// The maps, as the agent writes them.
    pub maps: FwMaps,
    dir: PathBuf,
}

impl Harness {
    /// Loads the object with maps pinned under a fresh directory of
    /// `bpffs_root` (e.g. `/sys/fs/bpf`), removed on drop.
    pub fn new(bpffs_root: &std::path::Path) -> Result<Self, TestRunError> {
        let dir = bpffs_root.join(format!(
            "rampart-testrun-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        crate::pins::ensure_bpffs(&dir).map_err(LoaderError::from)?;
        // Removes the directory if loading fails below.
        let guard = DirGuard(dir.clone());
        let mut ebpf = loader::load_object(&dir, "test-run", 4096)?;
        let run_err = |what| {
            move |e| TestRunError::Program {
                what,
                source: Box::new(e),
            }
        };
        let xdp: &mut Xdp = ebpf
            .program_mut("rampart_xdp")
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_xdp");
        xdp.load().map_err(run_err("load xdp"))?;
        let tc: &mut SchedClassifier = ebpf
            .program_mut("rampart_tc")
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_tc");
        tc.load().map_err(run_err("load tc"))?;
        let maps = FwMaps::from_ebpf(&mut ebpf)?;
        maps.set_timeouts(&Timeouts::default())?;
        std::mem::forget(guard);
        Ok(Self { ebpf, maps, dir })
    }

    /// Compiles `policy` (interfaces need not exist) and applies the first
    /// interface's tables.
    pub fn apply(&self, policy: &HostPolicy) -> Result<u32, TestRunError> {
        let compiled = policy::compile(policy, &|_| true)?;
        let i = compiled
            .interfaces
            .first()
            .ok_or(TestRunError::NoInterface)?;
        Ok(self.maps.apply(&i.ingress, &i.egress)?)
    }

    /// Runs the XDP program once; returns its verdict.
    pub fn xdp(&mut self, packet: &[u8]) -> Result<u32, TestRunError> {
        self.run_xdp(packet, 1).map(|(v, _)| v)
    }

    /// Runs the TC program once; returns its verdict as u32.
    pub fn tc(&mut self, packet: &[u8]) -> Result<u32, TestRunError> {
        let prog: &mut SchedClassifier = self
            .ebpf
            .program_mut("rampart_tc")
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_tc");
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        let r = prog.test_run(opts).map_err(|e| TestRunError::Program {
            what: "tc test run",
            source: Box::new(e),
        })?;
        Ok(r.return_value)
    }

    /// Runs the XDP program `repeat` times; returns the verdict and the
    /// kernel-measured mean time per run.
    pub fn run_xdp(&mut self, packet: &[u8], repeat: u32) -> Result<(u32, Duration), TestRunError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut("rampart_xdp")
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_xdp");
        xdp_run(prog, packet, repeat)
    }
}

/// The floor program (`ebpf/rampart-ebpf/src/bin/rampart-floor.rs`): the
/// least an XDP program that parses Ethernet/IPv4/UDP can cost. Benchmarks
/// time it in the same run as the real programs and report their ratio.
pub static FLOOR_OBJECT: &[u8] =
    aya::include_bytes_aligned!(concat!(env!("OUT_DIR"), "/rampart-floor"));

/// The floor program, loaded (it has no maps and is never attached).
pub struct Floor {
    ebpf: Ebpf,
}

impl Floor {
    /// Loads `rampart_floor`.
    pub fn new() -> Result<Self, TestRunError> {
        let mut ebpf =
            aya::EbpfLoader::new()
                .load(FLOOR_OBJECT)
                .map_err(|e| LoaderError::Load {
                    interface: "floor (test run)".into(),
                    source: Box::new(e),
                })?;
        let prog: &mut Xdp = ebpf
            .program_mut("rampart_floor")
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_floor");
        prog.load().map_err(|e| TestRunError::Program {
            what: "load floor",
            source: Box::new(e),
        })?;
        Ok(Self { ebpf })
    }

    /// Runs it `repeat` times; returns the verdict and the mean time per run.
    pub fn run(&mut self, packet: &[u8], repeat: u32) -> Result<(u32, Duration), TestRunError> {
        let prog: &mut Xdp = self
            .ebpf
            .program_mut("rampart_floor")
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_floor");
        xdp_run(prog, packet, repeat)
    }
}

fn xdp_run(prog: &mut Xdp, packet: &[u8], repeat: u32) -> Result<(u32, Duration), TestRunError> {
    let mut opts = TestRunOptions::new();
    opts.data_in = Some(packet);
    opts.repeat = repeat;
    let r = prog.test_run(opts).map_err(|e| TestRunError::Program {
        what: "xdp test run",
        source: Box::new(e),
    })?;
    Ok((r.return_value, r.duration))
}

fn remove_pins(dir: &std::path::Path) {
    for m in MAP_NAMES {
        let _ = std::fs::remove_file(dir.join(m));
    }
    let _ = std::fs::remove_dir(dir);
}

struct DirGuard(PathBuf);

impl Drop for DirGuard {
    fn drop(&mut self) {
        remove_pins(&self.0);
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        remove_pins(&self.dir);
    }
}
