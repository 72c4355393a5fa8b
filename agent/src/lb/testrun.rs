//! Runs the load balancer's programs on hand-made packets with
//! `BPF_PROG_TEST_RUN`: the fixture tests check the encapsulated output
//! byte by byte, with real maps written by [`Balancer::apply`].

use std::{
    path::Path,
    sync::atomic::{AtomicU32, Ordering},
};

use aya::programs::{SchedClassifier, TestRun, TestRunOptions, Xdp};

use super::maps::{Balancer, LbMapsError, LbOptions, LbProgram};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// One program run: verdict and the packet as the program left it.
#[derive(Debug)]
pub struct Run {
    /// XDP verdict.
    pub verdict: u32,
    /// Output packet.
    pub data: Vec<u8>,
}

/// Loads the object (unattached) under a fresh pin directory of
/// `bpffs_root`; the directory goes away with the balancer.
pub fn harness(bpffs_root: &Path, opts: LbOptions) -> Result<Balancer, LbMapsError> {
    let dir = bpffs_root.join(format!(
        "rampart-lb-testrun-{}-{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    ));
    Balancer::load(&dir, opts)
}

/// The loaded XDP program `program` (the TC program has its own runner).
fn xdp_program(lb: &mut Balancer, program: LbProgram) -> Result<&mut Xdp, LbMapsError> {
    lb.ebpf_mut()?
        .program_mut(program.name())
        .and_then(|p| p.try_into().ok())
        .ok_or(LbMapsError::Program {
            what: "test run (not an XDP program)",
            interface: String::new(),
            source: Box::new(aya::programs::ProgramError::NotLoaded),
        })
}

impl Balancer {
    /// Runs `program` on `packet` `repeat` times in the kernel; returns the
    /// verdict and the kernel-measured mean time per run (the benchmark's
    /// per-packet cost of the program alone).
    pub fn test_run_repeat(
        &mut self,
        program: LbProgram,
        packet: &[u8],
        repeat: u32,
    ) -> Result<(u32, std::time::Duration), LbMapsError> {
        let prog = xdp_program(self, program)?;
        let mut out = vec![0u8; packet.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        opts.data_out = Some(&mut out);
        opts.repeat = repeat;
        let r = prog.test_run(opts).map_err(|e| LbMapsError::Program {
            what: "test run",
            interface: String::new(),
            source: Box::new(e),
        })?;
        Ok((r.return_value, r.duration))
    }

    /// Runs the TC program `rampart_lb_nat` once on `packet` (a frame
    /// starting with its Ethernet header); returns the TC verdict and the
    /// packet as the program left it.
    pub fn test_run_nat(&mut self, packet: &[u8]) -> Result<Run, LbMapsError> {
        let prog: &mut SchedClassifier = self
            .ebpf_mut()?
            .program_mut(LbProgram::Nat.name())
            .and_then(|p| p.try_into().ok())
            .expect("object has rampart_lb_nat");
        let mut out = vec![0u8; packet.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        opts.data_out = Some(&mut out);
        let r = prog.test_run(opts).map_err(|e| LbMapsError::Program {
            what: "tc test run",
            interface: String::new(),
            source: Box::new(e),
        })?;
        out.truncate(r.data_size_out as usize);
        Ok(Run {
            verdict: r.return_value,
            data: out,
        })
    }

    /// Runs `program` once on `packet`.
    pub fn test_run(&mut self, program: LbProgram, packet: &[u8]) -> Result<Run, LbMapsError> {
        let prog = xdp_program(self, program)?;
        // Room for the largest encapsulation (40 bytes) on top.
        let mut out = vec![0u8; packet.len() + 256];
        let mut opts = TestRunOptions::new();
        opts.data_in = Some(packet);
        opts.data_out = Some(&mut out);
        let r = prog.test_run(opts).map_err(|e| LbMapsError::Program {
            what: "test run",
            interface: String::new(),
            source: Box::new(e),
        })?;
        out.truncate(r.data_size_out as usize);
        Ok(Run {
            verdict: r.return_value,
            data: out,
        })
    }
}
