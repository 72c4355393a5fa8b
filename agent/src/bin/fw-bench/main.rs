//! `fw-bench`: packets per second a receiving namespace filters with N rules
//! (the matching rule last), for Rampart's XDP classifier, iptables-legacy,
//! nftables (one rule per line) and nftables with a set; all in the same run,
//! on the same veth pair, with the same `trafgen` sender. Also the XDP
//! program's own per-packet cost versus N via BPF_PROG_TEST_RUN.
//!
//! Two ACL shapes (`--shape`), rendered identically for every filter:
//! `saddr` (lines differ in a /32 source, iptables' cheapest case) and
//! `ports` (lines share the sender's /24 and differ in destination ports, so
//! every line's port match is evaluated).
//!
//! ```text
//! cargo run --release -p rampart-agent --bin fw-bench -- \
//!     --rules 1,100,1000,10000 --seconds 5 \
//!     --markdown /tmp/bench.md --svg docs/bench-firewall.svg
//! ```
//!
//! Needs root, `trafgen` (netsniff-ng), `iptables-legacy`, `nft`.

use std::{
    fmt::Write as _,
    io::Write as _,
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use rampart_agent::{
    attach::XdpModePref,
    fw::enforcer::Enforcer,
    fw::loader::{self, AttachOptions},
    pins::PinLayout,
};
use rampart_common::reason;
use rampart_proto::v1::{Action, Direction, FirewallRule, HostPolicy, InterfacePolicy, PortRange};

mod cost;

#[derive(Parser)]
#[command(about = "Firewall throughput benchmark: Rampart XDP vs iptables vs nftables")]
struct Args {
    /// Rule counts to measure.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000,10000")]
    rules: Vec<usize>,
    /// Measurement window per point, seconds.
    #[arg(long, default_value_t = 3.0)]
    seconds: f64,
    /// Filters to measure.
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "rampart,iptables,nft,nftset"
    )]
    filters: Vec<String>,
    /// trafgen send modes: `ring` (default zero-copy TX_RING) and/or
    /// `sendto` (`-t 0`, one send per packet).
    #[arg(long, value_delimiter = ',', default_value = "ring,sendto")]
    modes: Vec<String>,
    /// ACL shapes to measure (see `Shape`): `saddr` (lines differ in a /32
    /// source) and/or `ports` (lines share the sender's /24 and differ in
    /// destination ports).
    #[arg(long, value_enum, value_delimiter = ',', default_value = "saddr,ports")]
    shape: Vec<Shape>,
    /// Measurements per point; the median is reported.
    #[arg(long, default_value_t = 1)]
    runs: usize,
    /// Only measure the program cost (BPF_PROG_TEST_RUN), no traffic.
    #[arg(long)]
    cost_only: bool,
    /// BPF_PROG_TEST_RUN repetitions per rule count.
    #[arg(long, default_value_t = 2_000_000)]
    repeat: u32,
    /// Write the results as Markdown here.
    #[arg(long)]
    markdown: Option<PathBuf>,
    /// Write a pps-vs-rules chart (SVG) here.
    #[arg(long)]
    svg: Option<PathBuf>,
}

const SRC: &str = "10.201.0.1";
const DST: &str = "10.201.0.2";
/// The sender's subnet (both ends of the veth pair are in it).
const SUBNET: &str = "10.201.0.0/24";

fn run(cmd: &mut Command) -> anyhow::Result<String> {
    let out = cmd.output().with_context(|| format!("spawn {cmd:?}"))?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

fn ip(args: &[&str]) -> anyhow::Result<String> {
    run(Command::new("ip").args(args))
}

/// Namespaces and veth, removed on drop.
struct Bed {
    g: String,
    r: String,
    pins: PathBuf,
}

impl Bed {
    fn new() -> anyhow::Result<Self> {
        let id = std::process::id();
        let b = Self {
            g: format!("fwb-g-{id}"),
            r: format!("fwb-r-{id}"),
            pins: PathBuf::from(format!("/sys/fs/bpf/rampart-bench-{id}")),
        };
        ip(&["netns", "add", &b.g])?;
        ip(&["netns", "add", &b.r])?;
        ip(&[
            "-n", &b.g, "link", "add", "g0", "type", "veth", "peer", "name", "r0", "netns", &b.r,
        ])?;
        ip(&["-n", &b.g, "addr", "add", "10.201.0.1/24", "dev", "g0"])?;
        ip(&["-n", &b.r, "addr", "add", "10.201.0.2/24", "dev", "r0"])?;
        for (ns, dev) in [(&b.g, "g0"), (&b.r, "r0")] {
            ip(&["-n", ns, "link", "set", dev, "up"])?;
            ip(&["-n", ns, "link", "set", "lo", "up"])?;
        }
        Ok(b)
    }

    fn in_r(&self, args: &[&str]) -> anyhow::Result<String> {
        run(Command::new("ip")
            .args(["netns", "exec", &self.r])
            .args(args))
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        let _ = loader::detach_all(&PinLayout {
            root: self.pins.clone(),
        });
        let _ = Command::new("ip").args(["netns", "del", &self.g]).status();
        let _ = Command::new("ip").args(["netns", "del", &self.r]).status();
    }
}

/// trafgen in its own process group, stopped by group (SIGINT to the parent
/// alone leaves `-P` children spinning).
struct Trafgen(Child);

impl Trafgen {
    fn start(bed: &Bed, cfg: &Path, mode: &str) -> anyhow::Result<Self> {
        use std::os::unix::process::CommandExt as _;
        let gap: &[&str] = if mode == "sendto" { &["-t", "0"] } else { &[] };
        let child = Command::new("ip")
            .args(["netns", "exec", &bed.g, "trafgen", "--dev", "g0", "--conf"])
            .arg(cfg)
            .args(gap)
            .args(["-P", "1", "-C", "--no-sock-mem"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .process_group(0)
            .spawn()
            .context("spawn trafgen")?;
        Ok(Self(child))
    }
}

impl Drop for Trafgen {
    fn drop(&mut self) {
        let pg = i32::try_from(self.0.id()).unwrap_or(0);
        // SAFETY: signalling our own child's process group.
        #[allow(unsafe_code, reason = "killpg(2)")]
        unsafe {
            libc::killpg(pg, libc::SIGINT);
        }
        std::thread::sleep(Duration::from_millis(200));
        #[allow(unsafe_code, reason = "killpg(2)")]
        // SAFETY: as above.
        unsafe {
            libc::killpg(pg, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

/// Which ACL the benchmark installs. Both are "N lines, the matching one
/// last", rendered identically for every filter from one [`AclLine`] list.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Shape {
    /// Every line is "deny udp from 10.99.x.y/32 to any port 9": lines differ
    /// only in a /32 source. iptables rejects each non-matching line in its
    /// fixed `ipt_entry` address check, before any match extension runs, so
    /// this is iptables' cheapest case.
    Saddr,
    /// Every line is "deny udp from 10.201.0.0/24 (the sender's subnet) to
    /// any port P_i" with distinct ports and small port ranges; the last line
    /// has port 9. Every line's address check passes, so iptables and
    /// nftables evaluate each line's port match: a realistic service ACL.
    Ports,
}

impl Shape {
    fn name(self) -> &'static str {
        match self {
            Self::Saddr => "saddr",
            Self::Ports => "ports",
        }
    }
}

/// One ACL line: "deny udp from `src` to any port `dport.0`..=`dport.1`".
struct AclLine {
    /// Source prefix, `a.b.c.d/len`.
    src: String,
    /// Destination port range (inclusive).
    dport: (u16, u16),
}

impl AclLine {
    /// The port range in iptables (`a:b`) or nftables (`a-b`) syntax.
    fn ports(&self, sep: char) -> String {
        if self.dport.0 == self.dport.1 {
            self.dport.0.to_string()
        } else {
            format!("{}{sep}{}", self.dport.0, self.dport.1)
        }
    }
}

/// Destination ports of the i-th non-matching line of the `ports` shape:
/// blocks of 5 ports from 1024 up, every fourth line a 3-port range; never
/// port 9, never overlapping (the highest, for line 10,238, is 52,218).
fn port_block(i: usize) -> (u16, u16) {
    let first = u16::try_from(1024 + 5 * i).unwrap_or(u16::MAX);
    if i % 4 == 3 {
        (first, first.saturating_add(2))
    } else {
        (first, first)
    }
}

/// The N lines of `shape`, the only matching one last.
fn acl(shape: Shape, n: usize) -> Vec<AclLine> {
    let mut lines: Vec<AclLine> = (0..n.saturating_sub(1))
        .map(|i| match shape {
            Shape::Saddr => AclLine {
                src: format!("10.99.{}.{}/32", (i >> 8) & 255, i & 255),
                dport: (9, 9),
            },
            Shape::Ports => AclLine {
                src: SUBNET.into(),
                dport: port_block(i),
            },
        })
        .collect();
    lines.push(AclLine {
        src: match shape {
            Shape::Saddr => format!("{SRC}/32"),
            Shape::Ports => SUBNET.into(),
        },
        dport: (9, 9),
    });
    lines
}

fn rampart_policy(lines: &[AclLine]) -> HostPolicy {
    rampart_policy_last(lines, Action::Deny)
}

/// The ACL with every line denying except the last, whose action is `last`.
fn rampart_policy_last(lines: &[AclLine], last: Action) -> HostPolicy {
    let rules = lines
        .iter()
        .enumerate()
        .map(|(i, l)| FirewallRule {
            sequence: u32::try_from(i).unwrap_or(0),
            action: if i + 1 == lines.len() {
                last as i32
            } else {
                Action::Deny as i32
            },
            protocol: 17,
            sources: vec![l.src.clone()],
            destination_ports: vec![PortRange {
                first: u32::from(l.dport.0),
                last: u32::from(l.dport.1),
            }],
            ..Default::default()
        })
        .collect();
    HostPolicy {
        version: 1,
        interfaces: vec![InterfacePolicy {
            interface: "r0".into(),
            direction: Direction::Ingress as i32,
            default_action: Action::Permit as i32,
            rules,
        }],
        conntrack_max: 0,
        ..Default::default()
    }
}

/// One filter under test.
trait Filter {
    fn name(&self) -> &'static str;
    fn install(&mut self, bed: &Bed, lines: &[AclLine]) -> anyhow::Result<()>;
    /// Packets matched by the last (dropping) rule so far.
    fn hits(&self, bed: &Bed) -> anyhow::Result<u64>;
    fn remove(&mut self, bed: &Bed) -> anyhow::Result<()>;
}

struct Rampart(Option<Enforcer>);

impl Filter for Rampart {
    fn name(&self) -> &'static str {
        "rampart-xdp"
    }
    fn install(&mut self, bed: &Bed, lines: &[AclLine]) -> anyhow::Result<()> {
        let opts = AttachOptions {
            xdp_mode: XdpModePref::Native,
            ..Default::default()
        };
        let mut e = Enforcer::new(
            PinLayout {
                root: bed.pins.clone(),
            },
            opts,
        );
        e.apply(&rampart_policy(lines))?;
        self.0 = Some(e);
        Ok(())
    }
    fn hits(&self, _: &Bed) -> anyhow::Result<u64> {
        let e = self.0.as_ref().context("installed")?;
        let v = e.verdicts("r0").context("r0 attached")?;
        Ok(v.iter()
            .filter(|(d, r, _)| *d == 0 && *r == reason::DROP_RULE)
            .map(|(_, _, t)| t.packets)
            .sum())
    }
    fn remove(&mut self, bed: &Bed) -> anyhow::Result<()> {
        self.0 = None;
        loader::detach_all(&PinLayout {
            root: bed.pins.clone(),
        })?;
        Ok(())
    }
}

struct Iptables;

impl Filter for Iptables {
    fn name(&self) -> &'static str {
        "iptables"
    }
    fn install(&mut self, bed: &Bed, lines: &[AclLine]) -> anyhow::Result<()> {
        let mut s = String::from(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        );
        for l in lines {
            let _ = writeln!(
                s,
                "-A INPUT -s {} -p udp --dport {} -j DROP",
                l.src,
                l.ports(':')
            );
        }
        s.push_str("COMMIT\n");
        restore(bed, &["iptables-legacy-restore"], &s)
    }
    fn hits(&self, bed: &Bed) -> anyhow::Result<u64> {
        let out = bed.in_r(&[
            "iptables-legacy",
            "-t",
            "filter",
            "-L",
            "INPUT",
            "-v",
            "-x",
            "-n",
        ])?;
        let last = out.lines().last().context("rules listed")?;
        Ok(last
            .split_whitespace()
            .next()
            .context("pkts column")?
            .parse()?)
    }
    fn remove(&mut self, bed: &Bed) -> anyhow::Result<()> {
        bed.in_r(&["iptables-legacy", "-F", "INPUT"]).map(|_| ())
    }
}

struct Nft {
    set: bool,
}

impl Filter for Nft {
    fn name(&self) -> &'static str {
        if self.set { "nftables-set" } else { "nftables" }
    }
    fn install(&mut self, bed: &Bed, lines: &[AclLine]) -> anyhow::Result<()> {
        let (last, rest) = lines.split_last().context("at least one line")?;
        let mut s = String::from("table ip fwb {\n counter hits { }\n");
        if self.set {
            // One rule and a set of the field the lines differ in; refused
            // (not approximated) if they differ in both.
            let same_ports = lines.iter().all(|l| l.dport == last.dport);
            let same_src = lines.iter().all(|l| l.src == last.src);
            let rule = if same_ports {
                let interval = lines.iter().any(|l| !l.src.ends_with("/32"));
                s.push_str(" set blk { type ipv4_addr; ");
                if interval {
                    s.push_str("flags interval; ");
                }
                s.push_str("elements = { ");
                for l in lines {
                    let _ = write!(s, "{}, ", l.src.trim_end_matches("/32"));
                }
                format!("ip saddr @blk udp dport {}", last.ports('-'))
            } else if same_src {
                s.push_str(" set blk { type inet_service; flags interval; elements = { ");
                for l in lines {
                    let _ = write!(s, "{}, ", l.ports('-'));
                }
                format!("ip saddr {} udp dport @blk", last.src)
            } else {
                bail!("nftables-set needs lines that differ in one field only");
            };
            s.push_str("} }\n");
            s.push_str(" chain input { type filter hook input priority 0; policy accept;\n");
            let _ = writeln!(s, "  {rule} counter name hits drop\n }}\n}}");
        } else {
            s.push_str(" chain input { type filter hook input priority 0; policy accept;\n");
            for l in rest {
                let _ = writeln!(s, "  ip saddr {} udp dport {} drop", l.src, l.ports('-'));
            }
            let _ = writeln!(
                s,
                "  ip saddr {} udp dport {} counter name hits drop\n }}\n}}",
                last.src,
                last.ports('-')
            );
        }
        restore(bed, &["nft", "-f", "-"], &s)
    }
    fn hits(&self, bed: &Bed) -> anyhow::Result<u64> {
        let out = bed.in_r(&["nft", "list", "counter", "ip", "fwb", "hits"])?;
        let p = out.split("packets ").nth(1).context("packets field")?;
        Ok(p.split_whitespace().next().context("number")?.parse()?)
    }
    fn remove(&mut self, bed: &Bed) -> anyhow::Result<()> {
        bed.in_r(&["nft", "delete", "table", "ip", "fwb"])
            .map(|_| ())
    }
}

fn restore(bed: &Bed, cmd: &[&str], input: &str) -> anyhow::Result<()> {
    let mut child = Command::new("ip")
        .args(["netns", "exec", &bed.r])
        .args(cmd)
        .stdin(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()?;
    child
        .stdin
        .take()
        .context("stdin")?
        .write_all(input.as_bytes())?;
    let out = child.wait_with_output()?;
    if !out.status.success() {
        bail!("{cmd:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn measure(bed: &Bed, f: &dyn Filter, cfg: &Path, secs: f64, mode: &str) -> anyhow::Result<f64> {
    let _tg = Trafgen::start(bed, cfg, mode)?;
    std::thread::sleep(Duration::from_millis(700));
    let c1 = f.hits(bed)?;
    let t1 = Instant::now();
    std::thread::sleep(Duration::from_secs_f64(secs));
    let c2 = f.hits(bed)?;
    let dt = t1.elapsed().as_secs_f64();
    if c2 <= c1 {
        bail!(
            "{}: no packets matched the last rule (trafgen not sending?)",
            f.name()
        );
    }
    #[allow(
        clippy::cast_precision_loss,
        reason = "packet counts are far below 2^52"
    )]
    Ok((c2 - c1) as f64 / dt)
}

fn enter(ns: &str) -> anyhow::Result<()> {
    let f = std::fs::File::open(format!("/run/netns/{ns}"))?;
    // SAFETY: valid fd; the process is single-threaded here.
    #[allow(unsafe_code, reason = "setns(2)")]
    let r = unsafe { libc::setns(f.as_raw_fd(), libc::CLONE_NEWNET) };
    if r != 0 {
        bail!("setns {ns}: {}", std::io::Error::last_os_error());
    }
    Ok(())
}

#[allow(clippy::print_stdout, reason = "a benchmark command reports on stdout")]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: getuid has no preconditions.
    #[allow(unsafe_code, reason = "getuid")]
    if unsafe { libc::getuid() } != 0 {
        bail!("fw-bench needs root (namespaces, iptables, bpf)");
    }
    let load_start = loadavg();
    let costs = cost::measure(&args.shape, &args.rules, args.repeat)?;
    if args.cost_only {
        let load_end = loadavg();
        println!(
            "\nLoad average at the start: {load_start}, at the end: {load_end}\n\n{}",
            cost::markdown(args.repeat, &costs)
        );
        return Ok(());
    }

    let bed = Bed::new()?;
    let mac = {
        let out = ip(&["-n", &bed.r, "link", "show", "r0"])?;
        out.split("link/ether ")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .context("r0 mac")?
            .to_string()
    };
    let cfg = std::env::temp_dir().join(format!("fwb-{}-udp64.cfg", std::process::id()));
    // 64-byte frames (60 + FCS): 14 eth + 20 ip + 8 udp + 18 payload.
    std::fs::write(
        &cfg,
        format!(
            "{{ eth(da={mac}), ipv4(saddr={SRC}, daddr={DST}), udp(sp=4000, dp=9), fill(0x00, 18) }}\n"
        ),
    )?;
    // Rampart's loader runs in this thread: it must see r0.
    enter(&bed.r)?;

    let mut filters: Vec<Box<dyn Filter>> = Vec::new();
    for f in &args.filters {
        filters.push(match f.as_str() {
            "rampart" => Box::new(Rampart(None)),
            "iptables" => Box::new(Iptables),
            "nft" => Box::new(Nft { set: false }),
            "nftset" => Box::new(Nft { set: true }),
            other => bail!("unknown filter {other}"),
        });
    }
    let mut md = String::new();
    let _ = writeln!(md, "Load average at the start: {}\n", loadavg());
    for mode in &args.modes {
        for &shape in &args.shape {
            let (results, own) = measure_shape(&args, &bed, &mut filters, &cfg, mode, shape)?;
            let _ = writeln!(md, "### {} shape, trafgen {mode} mode\n", shape.name());
            md.push_str(&markdown(&args, shape, &results, own));
            md.push('\n');
            if let Some(p) = &args.svg {
                let p = p.with_file_name(format!(
                    "{}-{}-{mode}.svg",
                    p.file_stem().and_then(|s| s.to_str()).unwrap_or("bench"),
                    shape.name()
                ));
                std::fs::write(&p, svg(&results, shape, mode))
                    .with_context(|| format!("write {}", p.display()))?;
            }
        }
    }
    let _ = writeln!(md, "Load average at the end: {}\n", loadavg());
    md.push_str(&cost::markdown(args.repeat, &costs));
    println!("\n{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md).with_context(|| format!("write {}", p.display()))?;
    }
    let _ = std::fs::remove_file(&cfg);
    Ok(())
}

/// The 1/5/15-minute load averages (`uptime`'s numbers): the machine is
/// shared, so the report says how busy it was.
fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|e| format!("unknown ({e})"))
}

/// Per filter: (rules, pps).
type Results = Vec<(String, Vec<(usize, f64)>)>;

/// Every rule count of one shape and mode. Each of `args.runs` rounds
/// measures every rule count and, within it, every filter in turn, so the
/// points compared in a ratio are taken minutes apart at most and share the
/// machine's conditions. Reports the median of the rounds per point, and
/// the median over rounds of Rampart's (most rules / fewest rules) rate.
#[allow(clippy::print_stdout, reason = "a benchmark command reports on stdout")]
fn measure_shape(
    args: &Args,
    bed: &Bed,
    filters: &mut [Box<dyn Filter>],
    cfg: &Path,
    mode: &str,
    shape: Shape,
) -> anyhow::Result<(Results, Option<f64>)> {
    let acls: Vec<Vec<AclLine>> = args.rules.iter().map(|&n| acl(shape, n)).collect();
    // samples[filter][rule count index][round]
    let mut samples = vec![vec![Vec::new(); args.rules.len()]; filters.len()];
    let mut own = Vec::new();
    for _ in 0..args.runs.max(1) {
        let mut round = vec![vec![None; args.rules.len()]; filters.len()];
        for (k, (&n, lines)) in args.rules.iter().zip(&acls).enumerate() {
            for (i, f) in filters.iter_mut().enumerate() {
                let t0 = Instant::now();
                f.install(bed, lines)?;
                let setup = t0.elapsed();
                let r = measure(bed, f.as_ref(), cfg, args.seconds, mode);
                f.remove(bed)?;
                match r {
                    Ok(pps) => {
                        println!(
                            "[{mode} {:<5}] {:<13} rules={n:>6}  {pps:>10.0} pps   (setup {setup:.2?})",
                            shape.name(),
                            f.name()
                        );
                        samples[i][k].push(pps);
                        round[i][k] = Some(pps);
                    }
                    Err(e) => println!("{:<13} rules={n:>6}  failed: {e}", f.name()),
                }
            }
        }
        let lo = args.rules.iter().enumerate().min_by_key(|(_, n)| **n);
        let hi = args.rules.iter().enumerate().max_by_key(|(_, n)| **n);
        if let (Some(i), Some((lo, _)), Some((hi, _))) = (
            filters.iter().position(|f| f.name() == "rampart-xdp"),
            lo,
            hi,
        ) && let (Some(a), Some(b)) = (round[i][lo], round[i][hi])
        {
            own.push(b / a);
        }
    }
    let results = filters
        .iter()
        .zip(samples)
        .map(|(f, per_n)| {
            let points = args
                .rules
                .iter()
                .zip(per_n)
                .filter_map(|(&n, v)| median(v).map(|m| (n, m)))
                .collect();
            (f.name().to_string(), points)
        })
        .collect();
    Ok((results, median(own)))
}

fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    Some(v[v.len() / 2])
}

fn get(results: &[(String, Vec<(usize, f64)>)], name: &str, n: usize) -> Option<f64> {
    results
        .iter()
        .find(|(f, _)| f == name)?
        .1
        .iter()
        .find(|(k, _)| *k == n)
        .map(|(_, v)| *v)
}

fn markdown(
    args: &Args,
    shape: Shape,
    results: &[(String, Vec<(usize, f64)>)],
    own_per_round: Option<f64>,
) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "| rules | {} |",
        results
            .iter()
            .map(|(n, _)| n.as_str())
            .collect::<Vec<_>>()
            .join(" | ")
    );
    let _ = writeln!(s, "|---:|{}", "---:|".repeat(results.len()));
    for &n in &args.rules {
        let cells: Vec<String> = results
            .iter()
            .map(|(name, _)| {
                get(results, name, n).map_or("-".into(), |v| format!("{:.0}k", v / 1000.0))
            })
            .collect();
        let _ = writeln!(s, "| {n} | {} |", cells.join(" | "));
    }
    let max = args.rules.iter().copied().max().unwrap_or(0);
    let min = args.rules.iter().copied().min().unwrap_or(0);
    if let Some(r) = get(results, "rampart-xdp", max) {
        let _ = writeln!(s, "\nAt {max} rules, {} shape:", shape.name());
        for (other, target) in [
            ("iptables", 100.0),
            ("nftables", 75.0),
            ("nftables-set", 0.9),
        ] {
            if let Some(o) = get(results, other, max) {
                let ratio = r / o;
                let ok = if ratio >= target { "met" } else { "NOT met" };
                let _ = writeln!(
                    s,
                    "- rampart / {other} = {ratio:.1}x (target >= {target}x: {ok})"
                );
            }
        }
        if let Some(r1) = get(results, "rampart-xdp", min) {
            let ratio = r / r1;
            let ok = if ratio >= 0.8 { "met" } else { "NOT met" };
            let _ = writeln!(
                s,
                "- rampart {max} rules / {min} rule = {:.0}% of the medians (target >= 80%: {ok})",
                ratio * 100.0
            );
        }
        if let Some(ratio) = own_per_round {
            let ok = if ratio >= 0.8 { "met" } else { "NOT met" };
            let _ = writeln!(
                s,
                "- rampart {max} rules / {min} rule = {:.0}% as the median of each round's ratio (target >= 80%: {ok})",
                ratio * 100.0
            );
        }
    }
    s
}

fn svg(results: &[(String, Vec<(usize, f64)>)], shape: Shape, mode: &str) -> String {
    let (w, h, l, r, t, b) = (720.0, 420.0, 80.0, 170.0, 30.0, 50.0);
    let xs: Vec<f64> = results
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(n, _)| (*n as f64).max(1.0).log10()))
        .collect();
    let xmax = xs.iter().copied().fold(1.0, f64::max);
    let ymax = results
        .iter()
        .flat_map(|(_, v)| v.iter().map(|(_, p)| *p))
        .fold(1.0, f64::max)
        * 1.1;
    let px = |n: usize| l + ((n as f64).max(1.0).log10() / xmax) * (w - l - r);
    let py = |v: f64| t + (1.0 - v / ymax) * (h - t - b);
    let colors = ["#d62728", "#1f77b4", "#2ca02c", "#9467bd", "#ff7f0e"];
    let mut s = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{w}\" height=\"{h}\" font-family=\"sans-serif\" font-size=\"12\">\n<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n"
    );
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\">Packets/s filtered vs rule count ({} ACL, matching rule last, trafgen {mode})</text>",
        (w - r + l) / 2.0,
        shape.name()
    );
    let _ = writeln!(
        s,
        "<line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"black\"/>",
        h - b,
        w - r,
        h - b
    );
    let _ = writeln!(
        s,
        "<line x1=\"{l}\" y1=\"{t}\" x2=\"{l}\" y2=\"{}\" stroke=\"black\"/>",
        h - b
    );
    for k in 0..=5 {
        let v = ymax * f64::from(k) / 5.0;
        let _ = writeln!(
            s,
            "<text x=\"{}\" y=\"{}\" text-anchor=\"end\">{:.0}k</text><line x1=\"{l}\" y1=\"{}\" x2=\"{}\" y2=\"{}\" stroke=\"#eee\"/>",
            l - 6.0,
            py(v) + 4.0,
            v / 1000.0,
            py(v),
            w - r,
            py(v)
        );
    }
    for n in [1usize, 10, 100, 1000, 10_000] {
        if (n as f64).log10() <= xmax + 1e-9 {
            let _ = writeln!(
                s,
                "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">{n}</text>",
                px(n),
                h - b + 18.0
            );
        }
    }
    let _ = writeln!(
        s,
        "<text x=\"{}\" y=\"{}\" text-anchor=\"middle\">rules (log scale)</text>",
        (w - r + l) / 2.0,
        h - 10.0
    );
    for (i, (name, pts)) in results.iter().enumerate() {
        let c = colors[i % colors.len()];
        let path: Vec<String> = pts
            .iter()
            .map(|(n, v)| format!("{:.1},{:.1}", px(*n), py(*v)))
            .collect();
        let _ = writeln!(
            s,
            "<polyline fill=\"none\" stroke=\"{c}\" stroke-width=\"2\" points=\"{}\"/>",
            path.join(" ")
        );
        for (n, v) in pts {
            let _ = writeln!(
                s,
                "<circle cx=\"{:.1}\" cy=\"{:.1}\" r=\"3\" fill=\"{c}\"/>",
                px(*n),
                py(*v)
            );
        }
        let ly = t + 20.0 + 20.0 * i as f64;
        let _ = writeln!(
            s,
            "<line x1=\"{}\" y1=\"{ly}\" x2=\"{}\" y2=\"{ly}\" stroke=\"{c}\" stroke-width=\"2\"/><text x=\"{}\" y=\"{}\">{name}</text>",
            w - r + 15.0,
            w - r + 40.0,
            w - r + 45.0,
            ly + 4.0
        );
    }
    s.push_str("</svg>\n");
    s
}
