//! `fw-bench`: packets per second a receiving namespace filters with N rules
//! (the matching rule last), for Rampart's XDP classifier, iptables-legacy,
//! nftables (one rule per line) and nftables with a set; all in the same run,
//! on the same veth pair, with the same `trafgen` sender. Also the XDP
//! program's own per-packet cost versus N via BPF_PROG_TEST_RUN.
//!
//! ```text
//! cargo run --release -p rampart-agent --bin fw-bench -- \
//!     --rules 1,100,1000,10000 --seconds 3 \
//!     --markdown docs/bench-firewall.md --svg docs/bench-firewall.svg
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
    enforcer::Enforcer,
    loader::{self, AttachOptions, PinLayout, XdpModePref},
    packet,
    testrun::Harness,
};
use rampart_common::reason;
use rampart_proto::v1::{Action, Direction, FirewallRule, HostPolicy, InterfacePolicy, PortRange};

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

/// Source of the i-th non-matching rule. Every rule is an ACL line "deny
/// udp from <source> to any port 9"; only the last one's source matches.
fn nonmatching(i: usize) -> String {
    format!("10.99.{}.{}", (i >> 8) & 255, i & 255)
}

fn rampart_policy(n: usize) -> HostPolicy {
    let mut rules: Vec<FirewallRule> = (0..n.saturating_sub(1))
        .map(|i| FirewallRule {
            sequence: u32::try_from(i).unwrap_or(0),
            action: Action::Deny as i32,
            protocol: 17,
            sources: vec![format!("{}/32", nonmatching(i))],
            destination_ports: vec![PortRange { first: 9, last: 9 }],
            ..Default::default()
        })
        .collect();
    rules.push(FirewallRule {
        sequence: u32::try_from(n).unwrap_or(0),
        action: Action::Deny as i32,
        protocol: 17,
        sources: vec![format!("{SRC}/32")],
        destination_ports: vec![PortRange { first: 9, last: 9 }],
        ..Default::default()
    });
    HostPolicy {
        version: 1,
        interfaces: vec![InterfacePolicy {
            interface: "r0".into(),
            direction: Direction::Ingress as i32,
            default_action: Action::Permit as i32,
            rules,
        }],
        conntrack_max: 0,
    }
}

/// One filter under test.
trait Filter {
    fn name(&self) -> &'static str;
    fn install(&mut self, bed: &Bed, n: usize) -> anyhow::Result<()>;
    /// Packets matched by the last (dropping) rule so far.
    fn hits(&self, bed: &Bed) -> anyhow::Result<u64>;
    fn remove(&mut self, bed: &Bed) -> anyhow::Result<()>;
}

struct Rampart(Option<Enforcer>);

impl Filter for Rampart {
    fn name(&self) -> &'static str {
        "rampart-xdp"
    }
    fn install(&mut self, bed: &Bed, n: usize) -> anyhow::Result<()> {
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
        e.apply(&rampart_policy(n))?;
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
    fn install(&mut self, bed: &Bed, n: usize) -> anyhow::Result<()> {
        let mut s = String::from(
            "*filter\n:INPUT ACCEPT [0:0]\n:FORWARD ACCEPT [0:0]\n:OUTPUT ACCEPT [0:0]\n",
        );
        for i in 0..n.saturating_sub(1) {
            let _ = writeln!(
                s,
                "-A INPUT -s {}/32 -p udp --dport 9 -j DROP",
                nonmatching(i)
            );
        }
        let _ = writeln!(s, "-A INPUT -s {SRC}/32 -p udp --dport 9 -j DROP\nCOMMIT");
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
    fn install(&mut self, bed: &Bed, n: usize) -> anyhow::Result<()> {
        let mut s = String::from("table ip fwb {\n counter hits { }\n");
        if self.set {
            s.push_str(" set blk { type ipv4_addr; elements = { ");
            for i in 0..n.saturating_sub(1) {
                let _ = write!(s, "{}, ", nonmatching(i));
            }
            let _ = writeln!(s, "{SRC} }} }}");
            s.push_str(" chain input { type filter hook input priority 0; policy accept;\n");
            s.push_str("  ip saddr @blk udp dport 9 counter name hits drop\n }\n}\n");
        } else {
            s.push_str(" chain input { type filter hook input priority 0; policy accept;\n");
            for i in 0..n.saturating_sub(1) {
                let _ = writeln!(s, "  ip saddr {} udp dport 9 drop", nonmatching(i));
            }
            let _ = writeln!(
                s,
                "  ip saddr {SRC} udp dport 9 counter name hits drop\n }}\n}}"
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

fn testrun_costs(rules: &[usize], repeat: u32) -> anyhow::Result<Vec<(usize, f64)>> {
    let mut h = Harness::new(Path::new("/sys/fs/bpf"))?;
    let pkt = packet::ipv4(
        SRC.parse()?,
        DST.parse()?,
        packet::UDP,
        &packet::udp(4000, 9, 18),
    );
    let mut out = Vec::new();
    for &n in rules {
        h.apply(&rampart_policy(n))?;
        let (verdict, d) = h.run_xdp(&pkt, repeat)?;
        if verdict != rampart_agent::testrun::XDP_DROP {
            bail!("test run with {n} rules: verdict {verdict}, expected drop");
        }
        #[allow(clippy::cast_precision_loss, reason = "nanoseconds fit")]
        out.push((n, d.as_nanos() as f64));
    }
    Ok(out)
}

#[allow(clippy::print_stdout, reason = "a benchmark command reports on stdout")]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    // SAFETY: getuid has no preconditions.
    #[allow(unsafe_code, reason = "getuid")]
    if unsafe { libc::getuid() } != 0 {
        bail!("fw-bench needs root (namespaces, iptables, bpf)");
    }
    let costs = testrun_costs(&args.rules, args.repeat)?;
    for (n, ns) in &costs {
        println!("test-run  rules={n:>6}  {ns:>7.1} ns/packet");
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
    for mode in &args.modes {
        let mut results: Vec<(String, Vec<(usize, f64)>)> = filters
            .iter()
            .map(|f| (f.name().to_string(), Vec::new()))
            .collect();
        for &n in &args.rules {
            for (i, f) in filters.iter_mut().enumerate() {
                let t0 = Instant::now();
                f.install(&bed, n)?;
                let setup = t0.elapsed();
                let r = measure(&bed, f.as_ref(), &cfg, args.seconds, mode);
                f.remove(&bed)?;
                let pps = match r {
                    Ok(p) => p,
                    Err(e) => {
                        println!("{:<13} rules={n:>6}  failed: {e}", f.name());
                        continue;
                    }
                };
                println!(
                    "[{mode}] {:<13} rules={n:>6}  {pps:>10.0} pps   (setup {setup:.2?})",
                    f.name()
                );
                results[i].1.push((n, pps));
            }
        }
        let _ = writeln!(md, "### trafgen {mode} mode\n");
        md.push_str(&markdown(&args, &results));
        md.push('\n');
        if let Some(p) = &args.svg {
            let p = p.with_file_name(format!(
                "{}-{mode}.svg",
                p.file_stem().and_then(|s| s.to_str()).unwrap_or("bench")
            ));
            std::fs::write(&p, svg(&results, mode))
                .with_context(|| format!("write {}", p.display()))?;
        }
    }
    md.push_str(&costs_md(&args, &costs));
    println!("\n{md}");
    if let Some(p) = &args.markdown {
        std::fs::write(p, &md).with_context(|| format!("write {}", p.display()))?;
    }
    let _ = std::fs::remove_file(&cfg);
    Ok(())
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

fn markdown(args: &Args, results: &[(String, Vec<(usize, f64)>)]) -> String {
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
        let _ = writeln!(s, "\nAt {max} rules:");
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
                "- rampart {max} rules / {min} rule = {:.0}% (target >= 80%: {ok})",
                ratio * 100.0
            );
        }
    }
    s
}

fn costs_md(args: &Args, costs: &[(usize, f64)]) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "### XDP program cost (BPF_PROG_TEST_RUN, {} repeats, matching rule last)\n",
        args.repeat
    );
    let _ = writeln!(s, "| rules | ns/packet |\n|---:|---:|");
    for (n, ns) in costs {
        let _ = writeln!(s, "| {n} | {ns:.1} |");
    }
    s
}

fn svg(results: &[(String, Vec<(usize, f64)>)], mode: &str) -> String {
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
        "<text x=\"{}\" y=\"18\" text-anchor=\"middle\">Packets/s filtered vs rule count (matching rule last, trafgen {mode})</text>",
        (w - r + l) / 2.0
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
