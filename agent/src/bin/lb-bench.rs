//! lb-bench: packets per second through Rampart's XDP load balancer versus
//! an nftables DNAT load balancer built the way kube-proxy's nftables mode
//! does it (`numgen random mod N vmap` to per-endpoint DNAT chains) versus
//! iptables DNAT with the `statistic` match (kube-proxy's iptables mode),
//! same topology, same `trafgen` generator, in one run. Also the Maglev
//! table build time and the full table write for 1,000 backends.
//!
//! Topology: a bridge namespace joins a client (trafgen), the load balancer
//! and three backends; the client routes the VIP via the load balancer.
//! Throughput = packets the backends' interfaces received per second.
//! Needs root, `trafgen` (netsniff-ng), `nft`, `iptables-legacy` (or
//! `iptables`). Writes a Markdown table to stdout (and `--out FILE`).

use std::{
    fmt::Write as _,
    net::{IpAddr, Ipv4Addr},
    os::{fd::AsRawFd, unix::process::CommandExt as _},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, bail};
use clap::Parser;
use rampart_agent::lb::{
    maglev::{self, Member},
    maps::{Balancer, LbOptions, LbProgram},
    service::{BackendSpec, Mode, ServiceSpec},
};

#[derive(Parser)]
#[command(about = "XDP load balancer vs nftables/iptables DNAT (kube-proxy style)")]
struct Args {
    /// Seconds per measurement.
    #[arg(long, default_value_t = 3)]
    seconds: u64,
    /// Repetitions per variant (the median is reported).
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// Also write the Markdown report here.
    #[arg(long)]
    out: Option<PathBuf>,
    /// Generator(s): `ring` (trafgen TX_RING), `sendto` (`-t 0`) or `both`.
    #[arg(long, default_value = "both")]
    generator: String,
    /// Concurrent flows (client source ports), 1..=64000.
    #[arg(long, default_value_t = 63_977)]
    flows: u32,
    /// Profile the first run of every variant with `perf record -a -g`
    /// into this directory (`perf report -i <file>` afterwards).
    #[arg(long)]
    perf_dir: Option<PathBuf>,
    /// Only measure the program's cost per packet (BPF_PROG_TEST_RUN,
    /// beside the floor program), no traffic.
    #[arg(long)]
    cost_only: bool,
}

const NET: u8 = 231;
const PORT: u16 = 8080;
const BACKENDS: usize = 3;

fn sh(args: &[&str]) -> anyhow::Result<()> {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .with_context(|| format!("spawn {args:?}"))?;
    if !out.status.success() {
        bail!("{args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(())
}

fn ns_out(ns: &str, args: &[&str]) -> anyhow::Result<String> {
    let out = Command::new("ip")
        .args(["netns", "exec", ns])
        .args(args)
        .output()
        .context("ip netns exec")?;
    if !out.status.success() {
        bail!("{ns}: {args:?}: {}", String::from_utf8_lossy(&out.stderr));
    }
    Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
}

struct Bed {
    sw: String,
    client: String,
    lb: String,
    backends: Vec<String>,
}

impl Bed {
    fn new() -> anyhow::Result<Self> {
        let id = std::process::id() % 100_000;
        let bed = Self {
            sw: format!("lbbsw-{id}"),
            client: format!("lbbc-{id}"),
            lb: format!("lbblb-{id}"),
            backends: (0..BACKENDS).map(|i| format!("lbbb{i}-{id}")).collect(),
        };
        sh(&["ip", "netns", "add", &bed.sw])?;
        sh(&[
            "ip",
            "-n",
            &bed.sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ])?;
        sh(&["ip", "-n", &bed.sw, "link", "set", "br0", "up"])?;
        // The bridge stands in for the wire: when br_netfilter is loaded on
        // the host, bridged IP packets would also walk iptables in the
        // switch namespace, a per-packet cost shared by every variant.
        let _ = sh(&[
            "ip",
            "netns",
            "exec",
            &bed.sw,
            "sysctl",
            "-qw",
            "net.bridge.bridge-nf-call-iptables=0",
            "net.bridge.bridge-nf-call-ip6tables=0",
            "net.bridge.bridge-nf-call-arptables=0",
        ]);
        let mut nodes = vec![(bed.client.clone(), 1u8), (bed.lb.clone(), 2)];
        for (i, b) in bed.backends.iter().enumerate() {
            nodes.push((b.clone(), 11 + i as u8));
        }
        for (k, (ns, host)) in nodes.iter().enumerate() {
            sh(&["ip", "netns", "add", ns])?;
            let port = format!("p{k}");
            sh(&[
                "ip", "-n", &bed.sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ])?;
            sh(&[
                "ip", "-n", &bed.sw, "link", "set", &port, "master", "br0", "up",
            ])?;
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.{NET}.0.{host}/24"),
                "dev",
                "eth0",
            ])?;
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"])?;
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"])?;
        }
        sh(&[
            "ip",
            "-n",
            &bed.client,
            "route",
            "add",
            &vip().to_string(),
            "via",
            &format!("10.{NET}.0.2"),
        ])?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &bed.lb,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv4.conf.all.send_redirects=0",
            "net.ipv4.conf.eth0.send_redirects=0",
        ])?;
        // Backends are sinks: an nftables netdev-ingress drop, so their IP
        // stack (and its ICMP unreachable answers) is not part of any
        // variant's cost. Received packets are still counted: a veth's
        // rx_packets is what its peer transmitted.
        for b in &bed.backends {
            sh(&[
                "ip",
                "netns",
                "exec",
                b,
                "nft",
                "add table netdev sink; add chain netdev sink in { type filter hook ingress device eth0 priority 0; policy accept; }",
            ])?;
        }
        for i in 0..BACKENDS {
            sh(&[
                "ip",
                "netns",
                "exec",
                &bed.lb,
                "ping",
                "-c1",
                "-W1",
                &backend(i).to_string(),
            ])?;
        }
        sh(&[
            "ip",
            "netns",
            "exec",
            &bed.client,
            "ping",
            "-c1",
            "-W1",
            &format!("10.{NET}.0.2"),
        ])?;
        Ok(bed)
    }

    /// Turns the backends' sink on (drop everything arriving) once the
    /// neighbour entries are primed.
    fn sink(&self) -> anyhow::Result<()> {
        for b in &self.backends {
            sh(&[
                "ip", "netns", "exec", b, "nft", "add", "rule", "netdev", "sink", "in", "udp",
                "dport", "8080", "drop",
            ])?;
            sh(&[
                "ip", "netns", "exec", b, "nft", "add", "rule", "netdev", "sink", "in", "ip",
                "protocol", "4", "drop",
            ])?;
        }
        Ok(())
    }

    fn backend_rx(&self) -> anyhow::Result<u64> {
        let mut sum = 0;
        for b in &self.backends {
            sum += ns_out(b, &["cat", "/sys/class/net/eth0/statistics/rx_packets"])?
                .parse::<u64>()
                .context("rx_packets")?;
        }
        Ok(sum)
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        for ns in [&self.client, &self.lb, &self.sw]
            .into_iter()
            .chain(self.backends.iter())
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

fn vip() -> Ipv4Addr {
    Ipv4Addr::new(172, 30, NET, 100)
}

fn backend(i: usize) -> Ipv4Addr {
    Ipv4Addr::new(10, NET, 0, 11 + i as u8)
}

/// How trafgen hands packets to the kernel.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Gen {
    /// TX_RING (zero-copy pages; trafgen's default).
    Ring,
    /// One `sendto` per packet (`-t 0`): linear skbs like a NIC's.
    Sendto,
}

impl Gen {
    fn name(self) -> &'static str {
        match self {
            Self::Ring => "trafgen TX_RING",
            Self::Sendto => "trafgen sendto (-t 0)",
        }
    }
}

/// trafgen in its own process group, stopped by group.
struct Trafgen(Child);

impl Trafgen {
    fn start(bed: &Bed, cfg: &std::path::Path, gen_: Gen) -> anyhow::Result<Self> {
        let mut cmd = Command::new("ip");
        cmd.args([
            "netns",
            "exec",
            &bed.client,
            "trafgen",
            "--dev",
            "eth0",
            "--conf",
        ])
        .arg(cfg)
        .args(["-P", "1", "-C", "--no-sock-mem"]);
        if gen_ == Gen::Sendto {
            cmd.args(["-t", "0"]);
        }
        let child = cmd
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
        // SAFETY: as above.
        #[allow(unsafe_code, reason = "killpg(2)")]
        unsafe {
            libc::killpg(pg, libc::SIGKILL);
        }
        let _ = self.0.wait();
    }
}

fn measure(
    bed: &Bed,
    cfg: &std::path::Path,
    secs: u64,
    gen_: Gen,
    perf: Option<PathBuf>,
) -> anyhow::Result<f64> {
    let tg = Trafgen::start(bed, cfg, gen_)?;
    std::thread::sleep(Duration::from_millis(500));
    // Optional system-wide profile of the measured window.
    let prof = match perf {
        Some(out) => Some(
            Command::new("perf")
                .args(["record", "-a", "-g", "-q", "-o"])
                .arg(out)
                .args(["--", "sleep", &secs.to_string()])
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .context("spawn perf record")?,
        ),
        None => None,
    };
    let a = bed.backend_rx()?;
    let t = Instant::now();
    std::thread::sleep(Duration::from_secs(secs));
    let b = bed.backend_rx()?;
    let dt = t.elapsed().as_secs_f64();
    if let Some(mut p) = prof {
        let _ = p.wait();
    }
    drop(tg);
    Ok((b - a) as f64 / dt)
}

/// Median of `args.runs` measurements; with `--perf-dir`, the first run is
/// profiled into `<dir>/<label>-<generator>.data`.
fn measure_runs(
    bed: &Bed,
    cfg: &std::path::Path,
    args: &Args,
    gen_: Gen,
    label: &str,
) -> anyhow::Result<f64> {
    Ok(median(
        (0..args.runs)
            .map(|i| {
                let perf = args.perf_dir.as_ref().filter(|_| i == 0).map(|d| {
                    let g = if gen_ == Gen::Ring { "ring" } else { "sendto" };
                    d.join(format!("{label}-{g}.data"))
                });
                measure(bed, cfg, args.seconds, gen_, perf)
            })
            .collect::<anyhow::Result<_>>()?,
    ))
}

/// (variant name, packets per second) in measurement order.
type Rows = Vec<(String, f64)>;

/// One configuration of Rampart's dataplane in the profile.
#[derive(Clone, Copy)]
struct XdpVariant {
    /// Native (driver) XDP on the LB's veth; the bridge port facing it
    /// gets a pass-through XDP program so XDP_TX frames are accepted.
    native: bool,
    /// Next hops from the agent-filled cache instead of bpf_fib_lookup.
    nexthop_cache: bool,
}

impl XdpVariant {
    fn label(self) -> String {
        format!(
            "xdp-{}-{}",
            if self.native { "native" } else { "generic" },
            if self.nexthop_cache { "cache" } else { "fib" }
        )
    }

    fn name(self) -> String {
        format!(
            "Rampart XDP LB ({} XDP, {}, IPIP, XDP_TX)",
            if self.native { "native" } else { "generic" },
            if self.nexthop_cache {
                "next-hop cache"
            } else {
                "bpf_fib_lookup"
            }
        )
    }
}

static PIN_SEQ: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);

fn pin_dir(what: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/bpf/rampart-lbbench-{what}-{}-{}",
        std::process::id(),
        PIN_SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
    ))
}

/// Loads and attaches the balancer in native or generic mode (detached on
/// drop), with the bench service; next hops from the FIB lookup.
fn rampart(bed: &Bed, native: bool) -> anyhow::Result<Balancer> {
    let src = Ipv4Addr::new(10, NET, 0, 2);
    let pin = pin_dir("lb");
    let mut lb = in_ns(&bed.lb, move || -> anyhow::Result<Balancer> {
        let mut lb = Balancer::load(
            &pin,
            LbOptions {
                max_vips: 2,
                max_table_size: 100_003,
                src_v4: src,
                flow_max: 262_144,
                ..LbOptions::default()
            },
        )?;
        lb.attach(LbProgram::Balancer, "eth0", !native)?;
        Ok(lb)
    })??;
    lb.apply(&[service(BACKENDS, 0)])?;
    Ok(lb)
}

/// Fills the next-hop cache from the LB's neighbour table, or empties it
/// (back to `bpf_fib_lookup`).
fn set_cache(bed: &Bed, lb: Balancer, on: bool) -> anyhow::Result<Balancer> {
    let (lb, n) = in_ns(&bed.lb, move || {
        let mut lb = lb;
        let n = if on {
            lb.resolve_next_hops("eth0")
        } else {
            (0..BACKENDS).try_fold(0, |acc, i| {
                lb.set_next_hop(backend(i).into(), None).map(|k| acc + k)
            })
        };
        (lb, n)
    })?;
    let n = n?;
    if n != BACKENDS {
        bail!("next-hop cache: {n} of {BACKENDS} backends updated");
    }
    Ok(lb)
}

/// Native XDP_TX on a veth needs NAPI on the peer: the bridge port facing
/// the LB gets a pass-through XDP program (an empty balancer passes
/// everything), attached once for every variant alike. (Attaching and
/// detaching it per variant left the second native run starved on this
/// kernel.)
fn bridge_port_pass(bed: &Bed) -> anyhow::Result<Balancer> {
    let pin = pin_dir("pass");
    in_ns(&bed.sw, move || -> anyhow::Result<Balancer> {
        let mut p = Balancer::load(&pin, LbOptions::default())?;
        p.attach(LbProgram::Balancer, "p1", false)?;
        Ok(p)
    })?
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> anyhow::Result<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        // SAFETY: valid fd; affects only this thread.
        #[allow(unsafe_code, reason = "setns")]
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}");
        f()
    })
    .join()
    .map_err(|_| anyhow::anyhow!("namespace thread panicked"))
}

fn service(n: usize, table: u32) -> ServiceSpec {
    ServiceSpec {
        name: "bench".into(),
        address: vip().into(),
        protocol: 17,
        port: PORT,
        backends: (0..n)
            .map(|i| BackendSpec {
                address: if n <= BACKENDS {
                    backend(i).into()
                } else {
                    IpAddr::V4(Ipv4Addr::new(10, 250, (i / 250) as u8, (i % 250 + 1) as u8))
                },
                port: 0,
                weight: 1,
            })
            .collect(),
        mode: Mode::Ipip,
        maglev_table_size: table,
    }
}

fn nft_ruleset() -> String {
    // kube-proxy nftables mode: a verdict map from (VIP, proto, port) to a
    // service chain, which picks an endpoint chain with numgen random mod N;
    // each endpoint chain DNATs.
    let mut s = String::from("table ip kp {\n");
    for i in 0..BACKENDS {
        let _ = writeln!(
            s,
            "  chain ep{i} {{\n    meta l4proto udp dnat to {}:{PORT}\n  }}",
            backend(i)
        );
    }
    let map: Vec<String> = (0..BACKENDS).map(|i| format!("{i} : goto ep{i}")).collect();
    let _ = writeln!(
        s,
        "  chain svc {{\n    numgen random mod {BACKENDS} vmap {{ {} }}\n  }}",
        map.join(", ")
    );
    let _ = writeln!(
        s,
        "  map services {{\n    type ipv4_addr . inet_proto . inet_service : verdict\n    elements = {{ {} . udp . {PORT} : goto svc }}\n  }}",
        vip()
    );
    s.push_str("  chain prerouting {\n    type nat hook prerouting priority dstnat; policy accept;\n    ip daddr . meta l4proto . th dport vmap @services\n  }\n}\n");
    s
}

fn iptables_bin() -> &'static str {
    if Command::new("iptables-legacy")
        .arg("-V")
        .output()
        .is_ok_and(|o| o.status.success())
    {
        "iptables-legacy"
    } else {
        "iptables"
    }
}

/// Removes the scratch directory on every exit path.
struct TempDir(PathBuf);

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Installs the kube-proxy iptables-mode rules; returns the binary used.
fn iptables_add(bed: &Bed) -> anyhow::Result<&'static str> {
    let ipt = iptables_bin();
    sh(&[
        "ip", "netns", "exec", &bed.lb, ipt, "-t", "nat", "-N", "KUBE-SVC",
    ])?;
    sh(&[
        "ip",
        "netns",
        "exec",
        &bed.lb,
        ipt,
        "-t",
        "nat",
        "-A",
        "PREROUTING",
        "-d",
        &vip().to_string(),
        "-p",
        "udp",
        "--dport",
        &PORT.to_string(),
        "-j",
        "KUBE-SVC",
    ])?;
    for i in 0..BACKENDS {
        let to = format!("{}:{PORT}", backend(i));
        let left = BACKENDS - i;
        let mut rule = vec![
            "ip", "netns", "exec", &bed.lb, ipt, "-t", "nat", "-A", "KUBE-SVC", "-p", "udp",
        ];
        let prob = format!("{:.5}", 1.0 / left as f64);
        if left > 1 {
            rule.extend([
                "-m",
                "statistic",
                "--mode",
                "random",
                "--probability",
                &prob,
            ]);
        }
        rule.extend(["-j", "DNAT", "--to-destination", &to]);
        sh(&rule)?;
    }
    Ok(ipt)
}

/// Removes what `iptables_add` installed.
fn iptables_del(bed: &Bed, ipt: &str) -> anyhow::Result<()> {
    sh(&["ip", "netns", "exec", &bed.lb, ipt, "-t", "nat", "-F"])?;
    sh(&[
        "ip", "netns", "exec", &bed.lb, ipt, "-t", "nat", "-X", "KUBE-SVC",
    ])
}

/// The program's own cost per packet through BPF_PROG_TEST_RUN, in one run
/// beside the floor program (Ethernet/IPv4/UDP parse and drop). Non-VIP
/// traffic and the floor: 1M repeats of one call. A VIP packet is rewritten
/// by its first run (encapsulated or DNATed), so repeats would time the
/// rewritten packet: VIP packets (flow-table hit; XDP_TX is not executed by
/// test runs), with the FIB lookup (falling back to the gateway MAC in an
/// empty namespace) and with the next-hop cache, are timed as single runs,
/// next to the floor timed the same way (each single run includes the
/// kernel's timer reads).
struct Costs {
    floor: f64,
    non_vip: f64,
    floor_single: f64,
    fib_single: f64,
    cached_single: f64,
}

const SINGLE_RUNS: u32 = 20_000;

#[allow(clippy::cast_precision_loss, reason = "nanoseconds fit")]
fn single_runs(
    mut run: impl FnMut() -> anyhow::Result<(u32, std::time::Duration)>,
    verdicts: &[u32],
) -> anyhow::Result<f64> {
    let mut total = 0u128;
    for _ in 0..SINGLE_RUNS {
        let (v, d) = run()?;
        if !verdicts.contains(&v) {
            bail!("test-run verdict {v}, expected one of {verdicts:?}");
        }
        total += d.as_nanos();
    }
    Ok(total as f64 / f64::from(SINGLE_RUNS))
}

#[allow(clippy::cast_precision_loss, reason = "nanoseconds fit")]
fn program_costs(bed: &Bed) -> anyhow::Result<Costs> {
    in_ns(&bed.lb, || -> anyhow::Result<Costs> {
        const XDP_DROP: u32 = 1;
        const XDP_PASS: u32 = 2;
        // XDP_TX, or XDP_REDIRECT when the FIB picks another interface.
        const FORWARDED: &[u32] = &[3, 4];
        let mut h = rampart_agent::lb::testrun::harness(
            std::path::Path::new("/sys/fs/bpf"),
            LbOptions {
                max_vips: 2,
                src_v4: Ipv4Addr::new(10, NET, 0, 2),
                gw_mac: Some([2, 0, 0, 0, 0, 9]),
                ..LbOptions::default()
            },
        )?;
        h.apply(&[service(BACKENDS, 0)])?;
        let l4 = rampart_agent::packet::udp(4000, PORT, 18);
        let pkt = rampart_agent::packet::ipv4(Ipv4Addr::new(10, NET, 0, 1), vip(), 17, &l4);
        let other = rampart_agent::packet::ipv4(
            Ipv4Addr::new(10, NET, 0, 1),
            Ipv4Addr::new(10, NET, 0, 9),
            17,
            &l4,
        );
        let mut floor = rampart_agent::fw::testrun::Floor::new()?;
        let (v, floor_cost) = floor.run(&other, 1_000_000)?;
        let (w, pass_cost) = h.test_run_repeat(LbProgram::Balancer, &other, 1_000_000)?;
        if (v, w) != (XDP_DROP, XDP_PASS) {
            bail!("test-run verdicts: floor {v}, non-VIP {w}; expected drop and pass");
        }
        let floor_single = single_runs(|| Ok(floor.run(&other, 1)?), &[XDP_DROP])?;
        let fib_single = single_runs(
            || Ok(h.test_run_repeat(LbProgram::Balancer, &pkt, 1)?),
            FORWARDED,
        )?;
        for i in 0..BACKENDS {
            h.set_next_hop(
                backend(i).into(),
                Some(([2, 0, 0, 0, 0, 9], [2, 0, 0, 0, 0, 2], 2)),
            )?;
        }
        let cached_single = single_runs(
            || Ok(h.test_run_repeat(LbProgram::Balancer, &pkt, 1)?),
            FORWARDED,
        )?;
        Ok(Costs {
            floor: floor_cost.as_nanos() as f64,
            non_vip: pass_cost.as_nanos() as f64,
            floor_single,
            fib_single,
            cached_single,
        })
    })?
}

impl Costs {
    fn line(&self) -> String {
        format!(
            "rampart_lb per packet (BPF_PROG_TEST_RUN, same run): non-VIP traffic {:.1} ns vs the floor program {:.1} ns ({:.2}x; 1M repeats each). Single runs (mean of {SINGLE_RUNS}, timer reads included): floor {:.0} ns, VIP packet with the FIB lookup {:.0} ns, with the next-hop cache {:.0} ns (flow hit + IPIP).",
            self.non_vip,
            self.floor,
            self.non_vip / self.floor,
            self.floor_single,
            self.fib_single,
            self.cached_single,
        )
    }
}

#[allow(clippy::print_stdout, reason = "a benchmark command reports on stdout")]
fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let bed = Bed::new()?;
    if args.cost_only {
        let start = std::fs::read_to_string("/proc/loadavg")?;
        let cost = program_costs(&bed)?;
        let end = std::fs::read_to_string("/proc/loadavg")?;
        println!(
            "Load average at the start: {}, at the end: {}",
            start.trim(),
            end.trim()
        );
        println!("{}", cost.line());
        return Ok(());
    }
    bed.sink()?;
    let _pass = bridge_port_pass(&bed)?;
    let lb_mac = ns_out(&bed.lb, &["cat", "/sys/class/net/eth0/address"])?;
    let dir = TempDir(std::env::temp_dir().join(format!("lb-bench-{}", std::process::id())));
    std::fs::create_dir_all(&dir.0)?;
    let cfg = dir.0.join("lb.trafgen");
    // Many flows by default: the source port walks 1024..(1024 + flows - 1),
    // so every variant does new-flow work (flow table insert / conntrack
    // entry) as well as hits, over a working set larger than the caches.
    if args.flows == 0 || args.flows > 64_000 {
        bail!("--flows {} is not in 1..=64000", args.flows);
    }
    let last_port = 1024 + args.flows - 1;
    std::fs::write(
        &cfg,
        format!(
            "{{ eth(da={lb_mac}), ipv4(ttl=64, saddr=10.{NET}.0.1, daddr={}), udp(sp=dinc(1024, {last_port}), dp={PORT}), fill(0x00, 18) }}\n",
            vip()
        ),
    )?;
    let variants = [
        XdpVariant {
            native: false,
            nexthop_cache: false,
        },
        XdpVariant {
            native: false,
            nexthop_cache: true,
        },
        XdpVariant {
            native: true,
            nexthop_cache: false,
        },
        XdpVariant {
            native: true,
            nexthop_cache: true,
        },
    ];
    let gens: Vec<Gen> = match args.generator.as_str() {
        "ring" => vec![Gen::Ring],
        "sendto" => vec![Gen::Sendto],
        _ => vec![Gen::Ring, Gen::Sendto],
    };
    let load_before = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    // Per generator: the rows and the nftables figure (the reference).
    // Each attachment mode is attached once for all its measurements (a
    // second native attach on the same veth was starved on this kernel);
    // the next-hop cache is switched through its map.
    let mut xdp_pps: std::collections::HashMap<(usize, usize), f64> = Default::default();
    for native in [false, true] {
        let mut lb = rampart(&bed, native)?;
        for (gi, &g) in gens.iter().enumerate() {
            for (vi, v) in variants
                .iter()
                .enumerate()
                .filter(|(_, v)| v.native == native)
            {
                lb = set_cache(&bed, lb, v.nexthop_cache)?;
                let pps = measure_runs(&bed, &cfg, &args, g, &v.label())?;
                if std::env::var_os("LB_BENCH_DEBUG").is_some() {
                    eprintln!(
                        "{}: tx {} redirect {} nexthop_cached {} fib_fail {}",
                        v.name(),
                        lb.stat(rampart_common::lb::lb_stat::TX),
                        lb.stat(rampart_common::lb::lb_stat::REDIRECT),
                        lb.stat(rampart_common::lb::lb_stat::NEXTHOP_CACHED),
                        lb.stat(rampart_common::lb::lb_stat::FIB_FAIL)
                    );
                }
                xdp_pps.insert((gi, vi), pps);
            }
        }
        drop(lb);
    }
    let mut tables: Vec<(Gen, Rows, f64)> = Vec::new();
    for (gi, &g) in gens.iter().enumerate() {
        let mut rows: Rows = variants
            .iter()
            .enumerate()
            .map(|(vi, v)| (v.name(), xdp_pps[&(gi, vi)]))
            .collect();
        // nftables DNAT, kube-proxy nftables style.
        let rules = dir.0.join("kp.nft");
        std::fs::write(&rules, nft_ruleset())?;
        sh(&[
            "ip",
            "netns",
            "exec",
            &bed.lb,
            "nft",
            "-f",
            rules.to_str().unwrap_or_default(),
        ])?;
        let nft = measure_runs(&bed, &cfg, &args, g, "nft")?;
        rows.push((
            "nftables DNAT (numgen random vmap, kube-proxy nftables mode)".into(),
            nft,
        ));
        sh(&[
            "ip", "netns", "exec", &bed.lb, "nft", "delete", "table", "ip", "kp",
        ])?;
        sh(&["ip", "netns", "exec", &bed.lb, "conntrack", "-F"]).ok();
        // iptables DNAT with statistic, kube-proxy iptables style.
        let ipt = iptables_add(&bed)?;
        let iptables = measure_runs(&bed, &cfg, &args, g, "iptables")?;
        iptables_del(&bed, ipt)?;
        sh(&["ip", "netns", "exec", &bed.lb, "conntrack", "-F"]).ok();
        rows.push((
            format!("{ipt} DNAT (statistic --mode random, kube-proxy iptables mode)"),
            iptables,
        ));
        tables.push((g, rows, nft));
    }
    let load_after = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();

    // Maglev rebuild for 1,000 backends: pure build, and build + batched
    // write of the inactive ring + generation flip.
    let mut lb = rampart(&bed, false)?;
    let members: Vec<Member> = service(1000, 0)
        .backends
        .iter()
        .map(|b| Member {
            name: format!("{}:{PORT}", b.address),
            weight: 1,
        })
        .collect();
    let size = maglev::table_size(0, 1000)?;
    let builds: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            let table = maglev::build(&members, size).expect("build");
            std::hint::black_box(table);
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect();
    let build_ms = median(builds);
    let applies: Vec<f64> = (0..5)
        .map(|_| {
            let t = Instant::now();
            lb.apply(&[service(1000, 0)]).expect("apply 1000");
            t.elapsed().as_secs_f64() * 1e3
        })
        .collect::<Vec<_>>();
    let apply_ms = median(applies);
    drop(lb);
    let cost = program_costs(&bed)?;

    let mut md = String::new();
    let _ = writeln!(md, "Flows (client source ports): {}", args.flows);
    let _ = writeln!(
        md,
        "Load average before / after the throughput runs: {} / {}",
        load_before
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" "),
        load_after
            .split_whitespace()
            .take(3)
            .collect::<Vec<_>>()
            .join(" ")
    );
    for (g, rows, nft) in &tables {
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "Generator: {} (median of {} runs of {} s)",
            g.name(),
            args.runs,
            args.seconds
        );
        let _ = writeln!(md);
        let _ = writeln!(
            md,
            "| Load balancer | packets/s delivered to backends | vs nftables |"
        );
        let _ = writeln!(md, "|---|---:|---:|");
        for (name, pps) in rows {
            let _ = writeln!(md, "| {name} | {:.0} | {:.2}x |", pps, pps / nft);
        }
    }
    let _ = writeln!(md);
    let _ = writeln!(
        md,
        "Maglev, 1,000 backends, table {size}: build {build_ms:.1} ms (median of 5); build + batched ring write + generation flip {apply_ms:.1} ms."
    );
    let _ = writeln!(md, "{}", cost.line());
    let best = tables
        .iter()
        .map(|(_, rows, nft)| {
            rows[..variants.len()]
                .iter()
                .map(|r| r.1 / nft)
                .fold(0.0, f64::max)
        })
        .fold(0.0, f64::max);
    let _ = writeln!(
        md,
        "Target (XDP >= 3x nftables, best configuration): {} ({best:.2}x)",
        if best >= 3.0 { "met" } else { "NOT met" }
    );
    std::io::Write::write_all(&mut std::io::stdout(), md.as_bytes())?;
    if let Some(out) = args.out {
        std::fs::write(&out, &md).with_context(|| format!("write {}", out.display()))?;
    }
    Ok(())
}
