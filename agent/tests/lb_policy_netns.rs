//! The load balancer driven by a policy FILE through the real
//! `rampart-agent run --policy FILE` binary, with real TCP connections.
//!
//! Topology (unique names per test): a bridge in a switch namespace joins a
//! client, the load balancer and two backends, all in 10.N.0.0/24. The
//! client routes the VIP 172.31.N.100 via the load balancer. Backends are
//! set up for direct server return as docs/loadbalancer.md describes (VIP
//! on `lo`, `arp_ignore`/`arp_announce`, `rp_filter` off, and the
//! `rampart_lb_decap` program on their interface since this kernel has no
//! `ipip` module). The agent runs in the load balancer's namespace
//! (`--netns`), reads the policy file (virtual service with a TCP health
//! check), and hot-reloads it when the test edits it.

mod skip;

use std::{
    io::{Read, Write},
    net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rampart_agent::lb::maps::{Balancer, LbOptions, LbProgram};

static SEQ: AtomicU32 = AtomicU32::new(0);
const PORT: u16 = 8080;

fn skip(test: &str) -> bool {
    skip::unless_root(&format!(
        "{test} needs root (network namespaces, veth, bpf)"
    ))
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn");
    assert!(
        out.status.success(),
        "{args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs `f` on a thread inside namespace `ns`.
fn in_ns<T: Send + 'static>(ns: &str, f: impl FnOnce() -> T + Send + 'static) -> JoinHandle<T> {
    let path = format!("/run/netns/{ns}");
    std::thread::spawn(move || {
        let fd = std::fs::File::open(&path).expect("open netns");
        // SAFETY: valid fd; affects only this thread.
        #[allow(unsafe_code, reason = "setns")]
        let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
        assert_eq!(r, 0, "setns {path}");
        f()
    })
}

/// Namespaces, backend servers, decapsulators, the agent process and the
/// pins: all removed on drop, also when an assertion fails.
struct Bed {
    sw: String,
    client: String,
    lb: String,
    backends: Vec<String>,
    net: u8,
    pin_root: PathBuf,
    dir: tempfile::TempDir,
    agent: Option<Child>,
    metrics_port: u16,
    decaps: Vec<Balancer>,
    servers: Vec<(Arc<AtomicBool>, JoinHandle<()>)>,
}

impl Bed {
    fn new(tag: &str, n: usize) -> Self {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let net = 60 + (std::process::id() % 30) as u8 + 30 * (seq as u8 % 3);
        let id = format!("{tag}{}-{seq}", std::process::id() % 100_000);
        let mut b = Self {
            sw: format!("lpsw-{id}"),
            client: format!("lpc-{id}"),
            lb: format!("lplb-{id}"),
            backends: (0..n).map(|i| format!("lpb{i}-{id}")).collect(),
            net,
            pin_root: PathBuf::from(format!("/sys/fs/bpf/rampart-lbpol-{id}")),
            dir: tempfile::tempdir().expect("tempdir"),
            agent: None,
            metrics_port: 0,
            decaps: Vec::new(),
            servers: Vec::new(),
        };
        sh(&["ip", "netns", "add", &b.sw]);
        sh(&[
            "ip",
            "-n",
            &b.sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        sh(&["ip", "-n", &b.sw, "link", "set", "br0", "up"]);
        let mut nodes = vec![(b.client.clone(), 1u8), (b.lb.clone(), 2)];
        for (i, ns) in b.backends.iter().enumerate() {
            nodes.push((ns.clone(), 11 + i as u8));
        }
        for (k, (ns, host)) in nodes.iter().enumerate() {
            sh(&["ip", "netns", "add", ns]);
            let port = format!("p{k}");
            sh(&[
                "ip", "-n", &b.sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ]);
            sh(&[
                "ip", "-n", &b.sw, "link", "set", &port, "master", "br0", "up",
            ]);
            sh(&[
                "ip",
                "-n",
                ns,
                "addr",
                "add",
                &format!("10.{net}.0.{host}/24"),
                "dev",
                "eth0",
            ]);
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&[
            "ip",
            "-n",
            &b.client,
            "route",
            "add",
            &format!("{}/32", b.vip()),
            "via",
            &format!("10.{net}.0.2"),
        ]);
        sh(&[
            "ip",
            "netns",
            "exec",
            &b.lb,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
        ]);
        for ns in b.backends.clone() {
            sh(&[
                "ip",
                "-n",
                &ns,
                "addr",
                "add",
                &format!("{}/32", b.vip()),
                "dev",
                "lo",
            ]);
            sh(&[
                "ip",
                "netns",
                "exec",
                &ns,
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
                "net.ipv4.conf.lo.rp_filter=0",
            ]);
            let decap = in_ns(&ns, move || {
                let mut d = rampart_agent::lb::testrun::harness(
                    Path::new("/sys/fs/bpf"),
                    LbOptions {
                        max_vips: 1,
                        max_table_size: 307,
                        flow_max: 1024,
                        ..LbOptions::default()
                    },
                )
                .expect("load decap");
                d.attach(LbProgram::Decap, "eth0", true)
                    .expect("attach decap");
                d
            })
            .join()
            .expect("decap thread");
            b.decaps.push(decap);
        }
        for i in 0..n {
            b.serve(i);
            let ip = b.backend_ip(i).to_string();
            sh(&["ip", "netns", "exec", &b.lb, "ping", "-c1", "-W1", &ip]);
        }
        b
    }

    fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 31, self.net, 100)
    }

    fn backend_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, 11 + i as u8)
    }

    /// A TCP server on 0.0.0.0:PORT in backend `i` answering `b<i>`.
    fn serve(&mut self, i: usize) {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = stop.clone();
        let (tx, rx) = std::sync::mpsc::channel();
        let h = in_ns(&self.backends[i], move || {
            let l = TcpListener::bind(("0.0.0.0", PORT)).expect("bind backend");
            l.set_nonblocking(true).expect("nonblocking");
            tx.send(()).expect("ready");
            while !stop.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((mut s, _)) => {
                        let _ = s.write_all(format!("b{i}\n").as_bytes());
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
        });
        rx.recv_timeout(Duration::from_secs(5))
            .expect("backend listening");
        self.servers.push((flag, h));
    }

    /// Stops backend `i`'s server: its port refuses connections.
    fn kill_backend(&mut self, i: usize) {
        let (stop, h) = &mut self.servers[i];
        stop.store(true, Ordering::Relaxed);
        while !h.is_finished() {
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    fn policy(&self, backends: &[usize], extra_backend: Option<&str>) -> String {
        let mut list: Vec<String> = backends
            .iter()
            .map(|&i| format!("      - {{address: {}}}", self.backend_ip(i)))
            .collect();
        if let Some(b) = extra_backend {
            list.push(format!("      - {{address: '{b}'}}"));
        }
        format!(
            "version: 1
virtual_services:
  - name: web
    service: web-lb
    tenant: acme
    interface: eth0
    vip: {}
    protocol: tcp
    port: {PORT}
    mode: ipip
    backends:
{}
    health_check: {{kind: tcp, interval_ms: 100, timeout_ms: 80, rise: 1, fall: 2}}
",
            self.vip(),
            list.join("\n")
        )
    }

    fn policy_path(&self) -> PathBuf {
        self.dir.path().join("policy.yaml")
    }

    /// Writes the policy file atomically (the agent never reads half).
    fn write_policy(&self, text: &str) {
        let tmp = self.dir.path().join("policy.tmp");
        std::fs::write(&tmp, text).expect("write policy");
        std::fs::rename(&tmp, self.policy_path()).expect("rename policy");
    }

    fn start_agent(&mut self) {
        // A free port in the LB namespace for /metrics.
        let port = in_ns(&self.lb, || {
            TcpListener::bind("127.0.0.1:0")
                .and_then(|l| l.local_addr())
                .map(|a| a.port())
                .expect("free port")
        })
        .join()
        .expect("port thread");
        self.metrics_port = port;
        let log = std::fs::File::create(self.dir.path().join("agent.log")).expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
            .args(["--netns", &self.lb, "--pin-root"])
            .arg(&self.pin_root)
            .args(["run", "--policy"])
            .arg(self.policy_path())
            .args([
                "--metrics-listen",
                &format!("127.0.0.1:{port}"),
                "--xdp-mode",
                "generic",
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn rampart-agent");
        self.agent = Some(child);
    }

    /// `rampart-agent status` (JSON) in the LB namespace.
    fn status(&self) -> serde_json::Value {
        let out = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
            .args(["--netns", &self.lb, "--pin-root"])
            .arg(&self.pin_root)
            .arg("status")
            .output()
            .expect("run status");
        assert!(
            out.status.success(),
            "status: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        serde_json::from_slice(&out.stdout).expect("status prints JSON")
    }

    /// The load-balancer part of `status` for eth0.
    fn lb_status(&self) -> serde_json::Value {
        let st = self.status();
        st.as_array()
            .and_then(|a| a.iter().find(|e| e["interface"] == "eth0"))
            .map(|e| e["load_balancer"].clone())
            .unwrap_or_else(|| panic!("no eth0 in status: {st}"))
    }

    fn log(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("agent.log")).unwrap_or_default()
    }

    fn metrics(&self) -> String {
        let port = self.metrics_port;
        in_ns(&self.lb, move || {
            let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
                return String::new();
            };
            let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
            let _ = s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            let mut out = String::new();
            let _ = s.read_to_string(&mut out);
            out
        })
        .join()
        .unwrap_or_default()
    }

    /// Waits until `/metrics` has a line starting with `prefix` whose value
    /// satisfies `ok`.
    fn wait_metric(&self, prefix: &str, ok: impl Fn(f64) -> bool, what: &str) {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let m = self.metrics();
            let v = m
                .lines()
                .find(|l| l.starts_with(prefix))
                .and_then(|l| l.rsplit(' ').next())
                .and_then(|v| v.parse::<f64>().ok());
            if v.is_some_and(&ok) {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: no {prefix} line with the expected value\n--- metrics ---\n{m}\n--- agent log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// `n` TCP connections from the client to the VIP; answers per backend
    /// (index) and failures.
    fn connect(&self, n: usize) -> (Vec<usize>, usize) {
        self.connect_within(n, Duration::from_secs(2))
    }

    /// [`Bed::connect`] with each connection bounded by `limit`.
    fn connect_within(&self, n: usize, limit: Duration) -> (Vec<usize>, usize) {
        let vip = SocketAddr::from((self.vip(), PORT));
        let backends = self.backends.len();
        in_ns(&self.client, move || {
            let mut per = vec![0usize; backends];
            let mut failed = 0;
            for _ in 0..n {
                let got = TcpStream::connect_timeout(&vip, limit).and_then(|mut s| {
                    s.set_read_timeout(Some(limit))?;
                    let mut buf = String::new();
                    s.read_to_string(&mut buf)?;
                    Ok(buf)
                });
                match got.ok().and_then(|a| {
                    a.trim()
                        .strip_prefix('b')
                        .and_then(|i| i.parse::<usize>().ok())
                }) {
                    Some(i) if i < backends => per[i] += 1,
                    _ => failed += 1,
                }
            }
            (per, failed)
        })
        .join()
        .expect("client thread")
    }

    /// Polls until `n` connections are all answered and `ok(per_backend)`.
    fn wait_balanced(&self, n: usize, ok: impl Fn(&[usize]) -> bool, what: &str) -> Vec<usize> {
        let deadline = Instant::now() + Duration::from_secs(15);
        loop {
            let (per, failed) = self.connect(n);
            if failed == 0 && ok(&per) {
                return per;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: last round {per:?}, {failed} failed\n--- agent log ---\n{}",
                self.log()
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

impl Drop for Bed {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        for (stop, h) in self.servers.drain(..) {
            stop.store(true, Ordering::Relaxed);
            let _ = h.join();
        }
        self.decaps.clear();
        for ns in [&self.client, &self.lb, &self.sw]
            .into_iter()
            .chain(self.backends.iter())
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        // The agent leaves its pins (so a restart adopts them): remove them,
        // links first is not needed once the namespace and its veth are gone.
        let mut lb_root = self.pin_root.clone().into_os_string();
        lb_root.push("-lb");
        let _ = std::fs::remove_dir_all(&self.pin_root);
        let _ = std::fs::remove_dir_all(PathBuf::from(lb_root));
    }
}

#[test]
fn policy_file_balances_real_connections_and_hot_reloads() {
    if skip("policy_file_balances_real_connections_and_hot_reloads") {
        return;
    }
    let mut bed = Bed::new("f", 2);
    bed.write_policy(&bed.policy(&[0, 1], None));
    bed.start_agent();

    // Both backends answer through the VIP (weights 1:1 over 60 flows).
    let per = bed.wait_balanced(
        60,
        |p| p.iter().all(|&c| c >= 12),
        "two backends share the VIP",
    );
    eprintln!("connections per backend, two backends: {per:?}");
    bed.wait_metric(
        "rampart_lb_vip_new_flows_total{service=\"web\"}",
        |v| v >= 60.0,
        "per-VIP new flows counted",
    );
    let b0 = format!("{}:{PORT}", bed.backend_ip(0));
    bed.wait_metric(
        &format!("rampart_lb_backend_up{{backend=\"{b0}\"}}"),
        |v| (v - 1.0).abs() < f64::EPSILON,
        "backend up while its health checks pass",
    );
    bed.wait_metric(
        "rampart_lb_flow_table_entries{kind=\"capacity\"}",
        |v| v > 0.0,
        "flow-table capacity exported",
    );

    // A refused edit (backend in another address family) changes nothing.
    bed.write_policy(&bed.policy(&[0], Some("fd00::99")));
    bed.wait_metric(
        "rampart_policy_apply_errors_total",
        |v| v >= 1.0,
        "the refused file is counted",
    );
    assert!(
        bed.log().contains(
            "virtual service web backend fd00::99: address: not in the address family of the VIP"
        ),
        "the refusal names service, backend and field:\n{}",
        bed.log()
    );
    let (per, failed) = bed.connect(40);
    assert_eq!(failed, 0, "still served after the refusal");
    assert!(
        per.iter().all(|&c| c > 0),
        "the refused file did not remove backend 1: {per:?}"
    );

    // Hot reload: backend 1 removed from the file, new connections all go
    // to backend 0.
    bed.write_policy(&bed.policy(&[0], None));
    let per = bed.wait_balanced(40, |p| p[1] == 0, "backend 1 removed by the reload");
    assert_eq!(per[0], 40);
    let lb = bed.lb_status();
    assert_eq!(lb["hook"], "xdp", "{lb}");
    assert_eq!(
        lb["vips"],
        serde_json::json!([format!("{}:{PORT}/tcp", bed.vip())]),
        "status shows the VIP: {lb}"
    );
}

#[test]
fn health_checks_in_the_daemon_take_a_dead_backend_out() {
    if skip("health_checks_in_the_daemon_take_a_dead_backend_out") {
        return;
    }
    let mut bed = Bed::new("h", 2);
    bed.write_policy(&bed.policy(&[0, 1], None));
    bed.start_agent();
    bed.wait_balanced(40, |p| p.iter().all(|&c| c > 0), "both backends serve");
    // Backend 1 stops listening: its TCP probes are refused, the daemon
    // flags it down after `fall` = 2 probes and every new flow goes to 0.
    bed.kill_backend(1);
    let b1 = format!("{}:{PORT}", bed.backend_ip(1));
    bed.wait_metric(
        &format!("rampart_lb_backend_up{{backend=\"{b1}\"}}"),
        |v| v == 0.0,
        "backend 1 down after failed probes",
    );
    bed.wait_metric(
        &format!("rampart_lb_health_transitions_total{{backend=\"{b1}\",to=\"down\"}}"),
        |v| v >= 1.0,
        "the transition is counted",
    );
    let (per, failed) = bed.connect(30);
    assert_eq!(
        (per[1], failed),
        (0, 0),
        "all new flows on backend 0: {per:?}"
    );
    assert!(
        bed.log().contains("backend failed health checks"),
        "the transition is logged:\n{}",
        bed.log()
    );

    // The agent exits: the pinned balancer keeps serving; `rampart-agent
    // detach` removes it (its pins beside the firewall's root).
    if let Some(mut c) = bed.agent.take() {
        c.kill().expect("kill agent");
        c.wait().expect("reap agent");
    }
    let (per, failed) = bed.connect(10);
    assert_eq!((per[0], failed), (10, 0), "served without the agent");
    let out = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
        .args(["--netns", &bed.lb, "--pin-root"])
        .arg(&bed.pin_root)
        .arg("detach")
        .output()
        .expect("run detach");
    assert!(
        out.status.success() && String::from_utf8_lossy(&out.stdout).contains("eth0"),
        "detach: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let mut lb_root = bed.pin_root.clone().into_os_string();
    lb_root.push("-lb");
    assert!(!PathBuf::from(lb_root).exists(), "LB pins removed");
    let (_, failed) = bed.connect_within(3, Duration::from_millis(300));
    assert_eq!(failed, 3, "the VIP is no longer served after detach");
}

/// The firewall section of a policy file: ingress on the LB's eth0,
/// default permit, and a deny of TCP to `deny_port`.
fn firewall(deny_port: u16) -> String {
    format!(
        "interfaces:
  - interface: eth0
    direction: ingress
    default_action: permit
    rules:
      - {{sequence: 10, action: deny, protocol: 6, destination_ports: [{{first: {deny_port}, last: {deny_port}}}]}}
"
    )
}

#[test]
fn firewall_and_load_balancer_share_the_interface_and_apply_together() {
    if skip("firewall_and_load_balancer_share_the_interface_and_apply_together") {
        return;
    }
    let mut bed = Bed::new("c", 2);
    let lb = bed.policy(&[0, 1], None);
    // v0: the load balancer alone, on its own XDP hook.
    bed.write_policy(&lb);
    bed.start_agent();
    bed.wait_balanced(20, |p| p.iter().all(|&c| c > 0), "balanced alone");
    assert_eq!(bed.lb_status()["hook"], "xdp");
    // v1: the firewall arrives on the LB's interface (denies TCP 9 only):
    // the balancer moves behind it (chained) and connections are balanced.
    bed.write_policy(&format!("{lb}{}", firewall(9)));
    bed.wait_balanced(
        40,
        |p| p.iter().all(|&c| c > 0),
        "balanced through the firewall",
    );
    // The move is applied when status shows it; poll briefly.
    let deadline = Instant::now() + Duration::from_secs(10);
    while bed.lb_status()["hook"] != "after-firewall" {
        assert!(Instant::now() < deadline, "never chained:\n{}", bed.log());
        std::thread::sleep(Duration::from_millis(100));
    }
    bed.wait_balanced(
        40,
        |p| p.iter().all(|&c| c > 0),
        "balanced through the firewall after the move",
    );

    // v2: the firewall would deny the VIP's port, but the LB section is
    // invalid: refused as a whole, so the firewall change is not applied.
    let bad = bed.policy(&[0], Some("fd00::99"));
    bed.write_policy(&format!("{bad}{}", firewall(PORT)));
    bed.wait_metric(
        "rampart_policy_apply_errors_total",
        |v| v >= 1.0,
        "the half-valid file is refused",
    );
    let (per, failed) = bed.connect(20);
    assert_eq!(failed, 0, "firewall unchanged by the refused file: {per:?}");

    // v3: both valid: the firewall (first on the interface) now drops new
    // connections to the VIP's port before the load balancer sees them.
    bed.write_policy(&format!("{lb}{}", firewall(PORT)));
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (per, failed) = bed.connect_within(3, Duration::from_millis(300));
        if failed == 3 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the firewall did not take effect: {per:?}\n{}",
            bed.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }

    // v4: the firewall section removed: the balancer moves to its own XDP
    // attachment on the interface and serves again.
    bed.write_policy(&lb);
    bed.wait_balanced(
        40,
        |p| p.iter().all(|&c| c > 0),
        "balanced again without the firewall",
    );
}

#[test]
fn a_failed_balancer_attach_restores_the_previous_firewall() {
    if skip("a_failed_balancer_attach_restores_the_previous_firewall") {
        return;
    }
    let mut bed = Bed::new("r", 2);
    // A second interface on the LB whose XDP hook is already taken by a
    // program the agent does not own: a balancer there passes validation
    // but cannot attach.
    sh(&[
        "ip", "-n", &bed.lb, "link", "add", "eth1", "type", "veth", "peer", "name", "eth1p",
    ]);
    sh(&["ip", "-n", &bed.lb, "link", "set", "eth1", "up"]);
    sh(&["ip", "-n", &bed.lb, "link", "set", "eth1p", "up"]);
    let foreign = in_ns(&bed.lb, || {
        let mut d = rampart_agent::lb::testrun::harness(
            Path::new("/sys/fs/bpf"),
            LbOptions {
                max_vips: 1,
                max_table_size: 307,
                flow_max: 1024,
                ..LbOptions::default()
            },
        )
        .expect("load foreign program");
        d.attach(LbProgram::Decap, "eth1", true)
            .expect("attach foreign XDP");
        d
    })
    .join()
    .expect("foreign thread");
    bed.decaps.push(foreign);

    let lb = bed.policy(&[0, 1], None);
    bed.write_policy(&format!("{lb}{}", firewall(9)));
    bed.start_agent();
    bed.wait_balanced(40, |p| p.iter().all(|&c| c > 0), "v1 serves");

    // v2: the firewall would deny the VIP's port, and a second virtual
    // service on eth1 cannot attach: the firewall change is rolled back.
    let second = "  - {name: other, interface: eth1, vip: 172.31.250.1, protocol: udp, port: 53, backends: [{address: 10.9.9.9}]}\n";
    bed.write_policy(&format!("{lb}{second}{}", firewall(PORT)));
    bed.wait_metric(
        "rampart_policy_apply_errors_total",
        |v| v >= 1.0,
        "the failed apply is counted",
    );
    assert!(
        bed.log().contains("load balancer on eth1"),
        "the failure names the interface:\n{}",
        bed.log()
    );
    // The firewall section of v2 was applied before the attach failed, then
    // rolled back (without the rollback the VIP port would stay denied).
    assert!(
        bed.log()
            .contains("load balancer not applied; restoring the previous policy"),
        "the rollback path ran:\n{}",
        bed.log()
    );
    let (per, failed) = bed.connect(20);
    assert_eq!(
        failed,
        0,
        "the previous firewall (VIP port allowed) was restored and the balancer serves: {per:?}\n{}",
        bed.log()
    );
}
