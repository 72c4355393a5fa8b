//! Program cost through BPF_PROG_TEST_RUN, beside the floor program in the
//! same run: per shape and rule count, the XDP program on a first packet
//! (the matching rule, last, denies: nothing is tracked, every repeat is
//! classified) and on a packet of an established flow (the last rule
//! permits; one run inserts the conntrack entry, the timed runs find it).
//! The floor (`rampart_floor`: Ethernet/IPv4/UDP parse, drop) is timed right
//! before each point, so each ratio pairs measurements seconds apart.

use std::{fmt::Write as _, path::Path};

use anyhow::bail;
use rampart_agent::{
    fw::testrun::{Floor, Harness, XDP_DROP, XDP_PASS},
    packet,
};
use rampart_common::{DIR_INGRESS, reason};
use rampart_proto::v1::Action;

use super::{DST, SRC, Shape, acl, rampart_policy_last};

/// One rule count of one shape, nanoseconds per packet.
pub struct Point {
    pub rules: usize,
    pub floor: f64,
    pub first: f64,
    pub established: f64,
}

/// Per shape, its points.
pub type Costs = Vec<(Shape, Vec<Point>)>;

#[allow(clippy::cast_precision_loss, reason = "nanoseconds fit")]
fn ns(d: std::time::Duration) -> f64 {
    d.as_nanos() as f64
}

fn udp(sport: u16) -> anyhow::Result<Vec<u8>> {
    Ok(packet::ipv4(
        SRC.parse()?,
        DST.parse()?,
        packet::UDP,
        &packet::udp(sport, 9, 18),
    ))
}

fn established_passes(h: &Harness) -> anyhow::Result<u64> {
    Ok(h.maps
        .reason_totals()?
        .iter()
        .find(|(d, r, _)| *d == DIR_INGRESS && *r == reason::PASS_ESTABLISHED)
        .map_or(0, |(_, _, t)| t.packets))
}

/// Measures every shape and rule count.
#[allow(clippy::print_stdout, reason = "a benchmark command reports on stdout")]
pub fn measure(shapes: &[Shape], rules: &[usize], repeat: u32) -> anyhow::Result<Costs> {
    let mut h = Harness::new(Path::new("/sys/fs/bpf"))?;
    let mut floor = Floor::new()?;
    // Different source ports: the established flow's conntrack entry must
    // not turn the first-packet probe into an established one.
    let first_pkt = udp(4000)?;
    let est_pkt = udp(4001)?;
    let mut out = Vec::new();
    for &shape in shapes {
        let mut points = Vec::new();
        for &n in rules {
            let (v, f) = floor.run(&first_pkt, repeat)?;
            if v != XDP_DROP {
                bail!("floor program: verdict {v}, expected drop");
            }
            h.apply(&rampart_policy_last(&acl(shape, n), Action::Deny))?;
            let (v, first) = h.run_xdp(&first_pkt, repeat)?;
            if v != XDP_DROP {
                bail!(
                    "{} {n} rules, first packet: verdict {v}, expected drop",
                    shape.name()
                );
            }
            h.apply(&rampart_policy_last(&acl(shape, n), Action::Permit))?;
            h.run_xdp(&est_pkt, 1)?;
            let before = established_passes(&h)?;
            let (v, est) = h.run_xdp(&est_pkt, repeat)?;
            let tracked = established_passes(&h)? - before;
            if v != XDP_PASS || tracked < u64::from(repeat) {
                bail!(
                    "{} {n} rules, established: verdict {v}, {tracked} of {repeat} runs passed as established",
                    shape.name()
                );
            }
            let p = Point {
                rules: n,
                floor: ns(f),
                first: ns(first),
                established: ns(est),
            };
            println!(
                "test-run  shape={:<5} rules={n:>6}  floor {:>5.1}  first {:>5.1} ({:.1}x)  established {:>5.1} ({:.1}x) ns/packet",
                shape.name(),
                p.floor,
                p.first,
                p.first / p.floor,
                p.established,
                p.established / p.floor
            );
            points.push(p);
        }
        out.push((shape, points));
    }
    Ok(out)
}

/// The same-run table: floor, first packet, established, ratios.
pub fn markdown(repeat: u32, costs: &Costs) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### XDP program cost (BPF_PROG_TEST_RUN, {repeat} repeats, matching rule last)\n"
    );
    let _ = writeln!(
        s,
        "| shape | rules | floor ns | first packet ns | / floor | established ns | / floor |\n|---|---:|---:|---:|---:|---:|---:|"
    );
    for (shape, points) in costs {
        for p in points {
            let _ = writeln!(
                s,
                "| {} | {} | {:.1} | {:.1} | {:.1}x | {:.1} | {:.1}x |",
                shape.name(),
                p.rules,
                p.floor,
                p.first,
                p.first / p.floor,
                p.established,
                p.established / p.floor
            );
        }
    }
    s
}
