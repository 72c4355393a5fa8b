//! Load balancer with real traffic between network namespaces.
//!
//! Topology (one per test, unique names and subnets): a bridge in a switch
//! namespace joins a client, the load balancer and N backends. The client
//! routes the VIP via the load balancer; `rampart_lb` (generic XDP on the
//! LB's interface) encapsulates IP-in-IP towards the backend chosen by
//! Maglev and sends it back out with XDP_TX (next-hop MAC from
//! `bpf_fib_lookup`). Backends are set up for direct server return as
//! docs/loadbalancer.md describes: VIP on `lo`, `arp_ignore=1`,
//! `arp_announce=2`, `rp_filter=0`, and — this kernel has no `ipip` module —
//! `rampart_lb_decap` on their interface instead of a `tunl0` device.
//! Replies go straight from the backend (source VIP) to the client.
//!
//! DNAT-mode topology ([`Topo::dnat`]): the client sits in another subnet
//! (10.N.1.0/24, same bridge) so the backends' replies follow their
//! default route through the load balancer, which is all a DNAT backend
//! needs; no VIP, no decapsulation. The LB runs `rampart_lb` (XDP) and
//! `rampart_lb_nat` (TC ingress) on its one interface and forwards the
//! translated replies. Client and backends have transmit checksum offload
//! off (`ethtool -K eth0 tx off`), so their packets carry full checksums
//! and the receiving stacks verify what the load balancer rewrote.

mod skip;

use std::{
    collections::HashMap,
    io::{BufRead, BufReader, Write},
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::PathBuf,
    process::Command,
    sync::{
        Arc,
        atomic::{AtomicBool, AtomicU32, Ordering},
    },
    thread::JoinHandle,
    time::{Duration, Instant},
};

use rampart_agent::lb::{
    health::{Check, HealthMonitor, HealthSpec},
    maps::{Balancer, LbOptions, LbProgram},
    service::{BackendSpec, Mode, ServiceSpec},
};
use rampart_common::lb::lb_stat;

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

struct Topo {
    sw: String,
    client: String,
    lb: String,
    backends: Vec<String>,
    net: u8,
    pin: PathBuf,
    dnat: bool,
}

impl Topo {
    /// `n` backends; subnet 10.<net>.0.0/24 and fd00:<net>::/64; VIP
    /// 172.30.<net>.100 and fd01:<net>::100.
    fn new(tag: &str, n: usize) -> Self {
        Self::with_mode(tag, n, false)
    }

    /// The DNAT-mode topology (see the file header).
    fn dnat(tag: &str, n: usize) -> Self {
        Self::with_mode(tag, n, true)
    }

    fn with_mode(tag: &str, n: usize, dnat: bool) -> Self {
        let seq = SEQ.fetch_add(1, Ordering::Relaxed);
        let net = 100 + (std::process::id() % 50) as u8 + 50 * (seq as u8 % 3);
        let id = format!("{tag}{}-{seq}", std::process::id() % 100_000);
        let t = Self {
            sw: format!("lbsw-{id}"),
            client: format!("lbc-{id}"),
            lb: format!("lblb-{id}"),
            backends: (0..n).map(|i| format!("lbb{i}-{id}")).collect(),
            net,
            pin: PathBuf::from(format!("/sys/fs/bpf/rampart-lbtest-{id}")),
            dnat,
        };
        sh(&["ip", "netns", "add", &t.sw]);
        // No multicast snooping: without an MLD querier it can starve
        // neighbour discovery on a fresh bridge.
        sh(&[
            "ip",
            "-n",
            &t.sw,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
        ]);
        sh(&["ip", "-n", &t.sw, "link", "set", "br0", "up"]);
        let mut nodes = vec![(t.client.clone(), 1u16), (t.lb.clone(), 2)];
        for (i, b) in t.backends.iter().enumerate() {
            nodes.push((b.clone(), 11 + i as u16));
        }
        for (k, (ns, host)) in nodes.iter().enumerate() {
            sh(&["ip", "netns", "add", ns]);
            // No duplicate address detection: a tentative link-local
            // address delays neighbour discovery (and the first SYN-ACK)
            // by about a second on fresh interfaces.
            sh(&[
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-qw",
                "net.ipv6.conf.all.accept_dad=0",
                "net.ipv6.conf.default.accept_dad=0",
            ]);
            let port = format!("p{k}");
            sh(&[
                "ip", "-n", &t.sw, "link", "add", &port, "type", "veth", "peer", "name", "eth0",
                "netns", ns,
            ]);
            sh(&[
                "ip", "-n", &t.sw, "link", "set", &port, "master", "br0", "up",
            ]);
            let v4 = if dnat && *host == 1 {
                format!("10.{net}.1.1/24")
            } else {
                format!("10.{net}.0.{host}/24")
            };
            sh(&["ip", "-n", ns, "addr", "add", &v4, "dev", "eth0"]);
            let v6 = if dnat && *host == 1 {
                format!("fd00:{net}:1::1/64")
            } else {
                format!("fd00:{net}::{host}/64")
            };
            sh(&["ip", "-n", ns, "addr", "add", &v6, "dev", "eth0", "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", "eth0", "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        if dnat {
            sh(&[
                "ip",
                "-n",
                &t.lb,
                "addr",
                "add",
                &format!("10.{net}.1.2/24"),
                "dev",
                "eth0",
            ]);
            for ns in std::iter::once(&t.client).chain(t.backends.iter()) {
                sh(&[
                    "ip", "netns", "exec", ns, "ethtool", "-K", "eth0", "tx", "off",
                ]);
            }
            sh(&[
                "ip",
                "-n",
                &t.lb,
                "addr",
                "add",
                &format!("fd00:{net}:1::2/64"),
                "dev",
                "eth0",
                "nodad",
            ]);
            for b in &t.backends {
                sh(&[
                    "ip",
                    "-n",
                    b,
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("10.{net}.0.2"),
                ]);
                sh(&[
                    "ip",
                    "-n",
                    b,
                    "-6",
                    "route",
                    "add",
                    "default",
                    "via",
                    &format!("fd00:{net}::2"),
                ]);
            }
        }
        let lb_addr = if dnat {
            format!("10.{net}.1.2")
        } else {
            format!("10.{net}.0.2")
        };
        sh(&[
            "ip",
            "-n",
            &t.client,
            "route",
            "add",
            &format!("172.30.{net}.100/32"),
            "via",
            &lb_addr,
        ]);
        sh(&[
            "ip",
            "-n",
            &t.client,
            "-6",
            "route",
            "add",
            &format!("fd01:{net}::100/128"),
            "via",
            &if dnat {
                format!("fd00:{net}:1::2")
            } else {
                format!("fd00:{net}::2")
            },
        ]);
        // The LB forwards (bpf_fib_lookup answers only for forwarding devices).
        sh(&[
            "ip",
            "netns",
            "exec",
            &t.lb,
            "sysctl",
            "-qw",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ]);
        for b in t.backends.iter().filter(|_| !dnat) {
            // Direct server return: the VIP is local but never answered for
            // on the wire; replies leave with the VIP as source.
            sh(&[
                "ip",
                "-n",
                b,
                "addr",
                "add",
                &format!("172.30.{net}.100/32"),
                "dev",
                "lo",
            ]);
            sh(&[
                "ip",
                "-n",
                b,
                "addr",
                "add",
                &format!("fd01:{net}::100/128"),
                "dev",
                "lo",
            ]);
            sh(&[
                "ip",
                "netns",
                "exec",
                b,
                "sysctl",
                "-qw",
                "net.ipv4.conf.all.arp_ignore=1",
                "net.ipv4.conf.all.arp_announce=2",
                "net.ipv4.conf.all.rp_filter=0",
                "net.ipv4.conf.eth0.rp_filter=0",
                "net.ipv4.conf.lo.rp_filter=0",
            ]);
        }
        t
    }

    fn vip(&self) -> Ipv4Addr {
        Ipv4Addr::new(172, 30, self.net, 100)
    }

    fn vip6(&self) -> Ipv6Addr {
        format!("fd01:{}::100", self.net).parse().unwrap()
    }

    fn backend_ip(&self, i: usize) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, 0, 11 + i as u8)
    }

    fn backend_ip6(&self, i: usize) -> Ipv6Addr {
        format!("fd00:{}::{}", self.net, 11 + i).parse().unwrap()
    }

    fn client_ip(&self) -> Ipv4Addr {
        Ipv4Addr::new(10, self.net, u8::from(self.dnat), 1)
    }

    /// Loads the balancer in the LB namespace, attaches it (generic XDP) and
    /// the decapsulator on every backend; primes the LB's neighbour table.
    /// The load balancer's options in this topology.
    fn lb_options(&self) -> LbOptions {
        LbOptions {
            max_vips: 4,
            src_v4: Ipv4Addr::new(10, self.net, 0, 2),
            src_v6: format!("fd00:{}::2", self.net).parse().unwrap(),
            ..LbOptions::default()
        }
    }

    fn balancer(&self) -> Balancer {
        let pin = self.pin.clone();
        let opts = self.lb_options();
        let mut lb = in_ns(&self.lb, move || {
            let mut lb = Balancer::load(&pin, opts).expect("load");
            lb.attach(LbProgram::Balancer, "eth0", true)
                .expect("attach lb");
            lb.attach(LbProgram::Nat, "eth0", false)
                .expect("attach reverse NAT (TC ingress)");
            lb
        })
        .join()
        .unwrap();
        self.backends_ready();
        // Keep the decap programs alive as long as the balancer.
        let _ = &mut lb;
        lb
    }

    /// Backends ready for the balancer: the decapsulator attached (IP-in-IP
    /// mode) and the LB's neighbour entries primed.
    fn backends_ready(&self) {
        for (i, b) in self.backends.iter().enumerate() {
            if self.dnat {
                let ip = self.backend_ip(i).to_string();
                let ok = Command::new("ip")
                    .args(["netns", "exec", &self.lb, "ping", "-c1", "-W1", &ip])
                    .output()
                    .unwrap()
                    .status
                    .success();
                assert!(ok, "LB reaches backend {ip}");
                continue;
            }
            // Each backend namespace gets its own program instance attached
            // from that namespace; the maps are unused there.
            let decap = in_ns(b, move || {
                let mut d = rampart_agent::lb::testrun::harness(
                    std::path::Path::new("/sys/fs/bpf"),
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
            .unwrap();
            DECAPS.with(|v| v.borrow_mut().push(decap));
            let ip = self.backend_ip(i).to_string();
            let ip6 = self.backend_ip6(i).to_string();
            assert!(
                Command::new("ip")
                    .args(["netns", "exec", &self.lb, "ping", "-c1", "-W1", &ip])
                    .output()
                    .unwrap()
                    .status
                    .success(),
                "LB reaches backend {ip}"
            );
            let _ = Command::new("ip")
                .args(["netns", "exec", &self.lb, "ping", "-6", "-c1", "-W1", &ip6])
                .output();
        }
    }

    fn service(&self, weights: &[u32], which: &[usize]) -> ServiceSpec {
        ServiceSpec {
            name: "web".into(),
            address: self.vip().into(),
            protocol: 6,
            port: PORT,
            backends: which
                .iter()
                .map(|&i| BackendSpec {
                    address: self.backend_ip(i).into(),
                    port: 0,
                    weight: weights.get(i).copied().unwrap_or(1),
                })
                .collect(),
            mode: Mode::Ipip,
            maglev_table_size: 0,
        }
    }

    fn udp_service(&self, which: &[usize]) -> ServiceSpec {
        ServiceSpec {
            name: "dns".into(),
            protocol: 17,
            ..self.service(&[], which)
        }
    }
}

thread_local! {
    static DECAPS: std::cell::RefCell<Vec<Balancer>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Drop for Topo {
    fn drop(&mut self) {
        DECAPS.with(|v| v.borrow_mut().clear());
        for ns in [&self.client, &self.lb, &self.sw]
            .into_iter()
            .chain(self.backends.iter())
        {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
        let _ = std::fs::remove_dir_all(&self.pin);
    }
}

/// A TCP and UDP server in a backend namespace answering with its name
/// (then echoing lines, so a connection can be checked later).
struct Server {
    stop: Arc<AtomicBool>,
    threads: Vec<JoinHandle<()>>,
}

impl Server {
    fn start(ns: &str, name: String, vip: IpAddr) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let (s1, s2) = (stop.clone(), stop.clone());
        let n1 = name.clone();
        let tcp = in_ns(ns, move || {
            // The service listens on every address: health checks reach it
            // on the backend's own address, clients through the VIP.
            let any: IpAddr = if vip.is_ipv4() {
                Ipv4Addr::UNSPECIFIED.into()
            } else {
                Ipv6Addr::UNSPECIFIED.into()
            };
            let l = TcpListener::bind(SocketAddr::new(any, PORT)).expect("bind tcp");
            l.set_nonblocking(true).unwrap();
            let mut conns = Vec::new();
            while !s1.load(Ordering::Relaxed) {
                match l.accept() {
                    Ok((c, _)) => {
                        c.set_nonblocking(false).unwrap();
                        let n = n1.clone();
                        let st = s1.clone();
                        conns.push(std::thread::spawn(move || serve(c, &n, &st)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(2)),
                }
            }
            drop(l);
            for c in conns {
                let _ = c.join();
            }
        });
        let udp = in_ns(ns, move || {
            let s = UdpSocket::bind(SocketAddr::new(vip, PORT)).expect("bind udp");
            s.set_read_timeout(Some(Duration::from_millis(20))).unwrap();
            let mut buf = [0u8; 64];
            while !s2.load(Ordering::Relaxed) {
                if let Ok((_, from)) = s.recv_from(&mut buf) {
                    let _ = s.send_to(name.as_bytes(), from);
                }
            }
        });
        Self {
            stop,
            threads: vec![tcp, udp],
        }
    }

    fn kill(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.kill();
    }
}

fn serve(c: TcpStream, name: &str, stop: &AtomicBool) {
    c.set_read_timeout(Some(Duration::from_millis(50))).unwrap();
    let mut w = c.try_clone().unwrap();
    if writeln!(w, "{name}").is_err() {
        return;
    }
    let mut r = BufReader::new(c);
    let mut line = String::new();
    while !stop.load(Ordering::Relaxed) {
        line.clear();
        match r.read_line(&mut line) {
            Ok(0) => return,
            Ok(_) => {
                if w.write_all(line.as_bytes()).is_err() {
                    return;
                }
            }
            Err(_) => continue,
        }
    }
}

fn servers(t: &Topo, v6: bool) -> Vec<Server> {
    t.backends
        .iter()
        .enumerate()
        .map(|(i, ns)| {
            let vip: IpAddr = if v6 { t.vip6().into() } else { t.vip().into() };
            Server::start(ns, format!("b{i}"), vip)
        })
        .collect()
}

/// Opens `n` TCP connections to the VIP from the client; returns the
/// backend names that answered (closing each connection).
fn tcp_spread(t: &Topo, vip: IpAddr, n: usize) -> HashMap<String, usize> {
    in_ns(&t.client, move || {
        let mut seen = HashMap::new();
        for _ in 0..n {
            let c = TcpStream::connect_timeout(&SocketAddr::new(vip, PORT), Duration::from_secs(2))
                .expect("connect to VIP");
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut line = String::new();
            BufReader::new(c)
                .read_line(&mut line)
                .expect("backend greets");
            *seen.entry(line.trim().to_string()).or_insert(0) += 1;
        }
        seen
    })
    .join()
    .unwrap()
}

/// Sends one datagram from each client source port; returns the backend
/// that answered per port ("" if none did).
fn udp_map(t: &Topo, ports: std::ops::Range<u16>) -> Vec<String> {
    let client = t.client_ip();
    let vip = t.vip();
    in_ns(&t.client, move || {
        ports
            .map(|p| {
                let s = UdpSocket::bind((client, p)).expect("bind client port");
                s.connect((vip, PORT)).unwrap();
                s.set_read_timeout(Some(Duration::from_millis(500)))
                    .unwrap();
                for _ in 0..3 {
                    s.send(b"?").unwrap();
                    let mut buf = [0u8; 32];
                    if let Ok(n) = s.recv(&mut buf) {
                        return String::from_utf8_lossy(&buf[..n]).into_owned();
                    }
                }
                String::new()
            })
            .collect()
    })
    .join()
    .unwrap()
}

#[test]
fn connections_spread_by_weight() {
    if skip("connections_spread_by_weight") {
        return;
    }
    let t = Topo::new("w", 3);
    let mut lb = t.balancer();
    let _srv = servers(&t, false);
    lb.apply(&[t.service(&[1, 2, 3], &[0, 1, 2])]).unwrap();
    // Next hops from the LB namespace's neighbour table (primed by
    // `balancer()`): the dataplane skips the FIB lookup.
    let lb = in_ns(&t.lb, move || {
        let mut lb = lb;
        assert_eq!(
            lb.resolve_next_hops("eth0").unwrap(),
            3,
            "3 backends cached"
        );
        lb
    })
    .join()
    .unwrap();
    let mac = |ns: &str| {
        let out = Command::new("ip")
            .args(["-n", ns, "-br", "link", "show", "eth0"])
            .output()
            .unwrap();
        String::from_utf8_lossy(&out.stdout)
            .split_whitespace()
            .nth(2)
            .unwrap()
            .to_string()
    };
    let hex = |m: [u8; 6]| {
        m.iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":")
    };
    for i in 0..3 {
        let hop = lb.next_hop(t.backend_ip(i).into(), PORT).expect("cached");
        assert_eq!(hex(hop.smac), mac(&t.lb), "source MAC: the LB's eth0");
        assert_eq!(hex(hop.dmac), mac(&t.backends[i]), "backend b{i}'s MAC");
    }
    let n = 600;
    let seen = tcp_spread(&t, t.vip().into(), n);
    let total: usize = seen.values().sum();
    assert_eq!(total, n);
    // Tolerance: 0.07 absolute per backend (> 3 standard deviations of a
    // binomial share over 600 flows).
    for (i, w) in [1.0, 2.0, 3.0].iter().enumerate() {
        let got = *seen.get(&format!("b{i}")).unwrap_or(&0) as f64 / n as f64;
        let want = w / 6.0;
        assert!(
            (got - want).abs() < 0.07,
            "backend b{i}: share {got:.3}, weight share {want:.3}; {seen:?}"
        );
    }
    let v = lb.vip_totals("web").unwrap();
    assert!(v.new_flows >= n as u64, "{v:?}");
    assert!(lb.stat(lb_stat::TX) > 0);
    assert_eq!(lb.stat(lb_stat::FIB_FAIL), 0);
    assert!(
        lb.stat(lb_stat::NEXTHOP_CACHED) >= n as u64,
        "cached next hops used"
    );
}

#[test]
fn established_connections_survive_pool_changes() {
    if skip("established_connections_survive_pool_changes") {
        return;
    }
    let t = Topo::new("s", 5);
    let mut lb = t.balancer();
    let _srv = servers(&t, false);
    lb.apply(&[t.service(&[], &[0, 1, 2])]).unwrap();
    let vip = t.vip();
    // 30 long-lived connections, each remembering its backend.
    let (tx, rx) = std::sync::mpsc::channel::<()>();
    let (done_tx, done_rx) = std::sync::mpsc::channel::<(usize, usize)>();
    let client = in_ns(&t.client, move || {
        let mut conns = Vec::new();
        for _ in 0..30 {
            let c = TcpStream::connect_timeout(
                &SocketAddr::new(vip.into(), PORT),
                Duration::from_secs(2),
            )
            .unwrap();
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut r = BufReader::new(c.try_clone().unwrap());
            let mut name = String::new();
            r.read_line(&mut name).unwrap();
            conns.push((c, r, name));
        }
        tx.send(()).unwrap();
        // Wait for the pool changes, then talk on every connection.
        std::thread::sleep(Duration::from_millis(800));
        let mut ok = 0;
        for (i, (mut c, mut r, _)) in conns.into_iter().enumerate() {
            let msg = format!("ping {i}\n");
            let mut back = String::new();
            if c.write_all(msg.as_bytes()).is_ok() && r.read_line(&mut back).is_ok() && back == msg
            {
                ok += 1;
            }
        }
        done_tx.send((ok, 30)).unwrap();
    });
    rx.recv().unwrap();
    // Add two backends, then remove one of the original ones' neighbours.
    lb.apply(&[t.service(&[], &[0, 1, 2, 3, 4])]).unwrap();
    lb.apply(&[t.service(&[], &[0, 1, 2, 4])]).unwrap();
    client.join().unwrap();
    let (ok, n) = done_rx.recv().unwrap();
    assert_eq!(ok, n, "every established connection kept its backend");
    // New connections now also reach the added backend.
    let seen = tcp_spread(&t, vip.into(), 100);
    assert!(seen.contains_key("b4"), "{seen:?}");
    assert!(
        !seen.contains_key("b3"),
        "removed backend gets no new flows: {seen:?}"
    );
}

#[test]
fn removing_one_of_ten_backends_remaps_about_a_tenth() {
    if skip("removing_one_of_ten_backends_remaps_about_a_tenth") {
        return;
    }
    let t = Topo::new("r", 10);
    let mut lb = t.balancer();
    let _srv = servers(&t, false);
    let all: Vec<usize> = (0..10).collect();
    lb.apply(&[t.udp_service(&all)]).unwrap();
    let ports = 20_000..20_400;
    let before = udp_map(&t, ports.clone());
    assert!(before.iter().all(|b| !b.is_empty()), "every flow answered");
    let removed = "b6";
    let rest: Vec<usize> = (0..10).filter(|&i| i != 6).collect();
    lb.apply(&[t.udp_service(&rest)]).unwrap();
    // Measure Maglev itself: forget pinned flows so every flow is looked up
    // in the new table.
    lb.clear_flows();
    let after = udp_map(&t, ports);
    let n = before.len() as f64;
    let moved = before.iter().zip(&after).filter(|(a, b)| a != b).count() as f64;
    let moved_other = before
        .iter()
        .zip(&after)
        .filter(|(a, b)| a != b && a.as_str() != removed)
        .count() as f64;
    eprintln!("remapped {moved}/{n}, of which {moved_other} were not on the removed backend");
    assert!(after.iter().all(|b| !b.is_empty() && b != removed));
    assert!(moved / n <= 0.1 + 0.06, "remapped fraction {}", moved / n);
    assert!(
        moved_other / n <= 0.03,
        "flows of surviving backends remapped: {}",
        moved_other / n
    );
}

#[test]
fn killed_backend_is_removed_by_health_checks_and_flows_fail_over() {
    if skip("killed_backend_is_removed_by_health_checks_and_flows_fail_over") {
        return;
    }
    let t = Topo::new("h", 3);
    let mut lb = t.balancer();
    let mut srv = servers(&t, false);
    lb.apply(&[t.udp_service(&[0, 1, 2])]).unwrap();
    let ports = 30_000..30_060;
    let before = udp_map(&t, ports.clone());
    let victim = 1usize;
    let victim_name = format!("b{victim}");
    let on_victim = before.iter().filter(|b| **b == victim_name).count();
    assert!(on_victim > 0, "some flows on the victim: {before:?}");
    srv[victim].kill();
    // Health checks (TCP connect to each backend's service port) from the
    // LB namespace; transitions rewrite the table.
    let targets: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::new(t.backend_ip(i).into(), PORT))
        .collect();
    let spec = HealthSpec {
        check: Check::Tcp,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        rise: 2,
        fall: 2,
    };
    let lb_ns = t.lb.clone();
    let (lb, transitions) = in_ns(&lb_ns, move || {
        let mut mon = HealthMonitor::new(spec, targets);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.is_empty() && Instant::now() < deadline {
            for (target, up) in mon.tick() {
                lb.set_backend_down(target.ip(), target.port(), !up)
                    .unwrap();
                seen.push((target, up));
            }
            std::thread::sleep(mon.spec().interval);
        }
        (lb, seen)
    })
    .join()
    .unwrap();
    assert_eq!(
        transitions,
        vec![(SocketAddr::new(t.backend_ip(victim).into(), PORT), false)],
        "exactly the killed backend went down"
    );
    let after = udp_map(&t, ports);
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(
            !a.is_empty() && *a != victim_name,
            "flow {i} answered by {a:?}"
        );
        if *b != victim_name {
            assert_eq!(a, b, "flow {i} on a healthy backend kept it");
        }
    }
    assert!(lb.stat(lb_stat::REPICK) >= on_victim as u64);
    // The same state as Prometheus exports it.
    let registry = prometheus::Registry::new();
    let mut metrics = rampart_agent::lb::metrics::LbMetrics::new(&registry).unwrap();
    metrics.update(&lb);
    let mut text = Vec::new();
    prometheus::Encoder::encode(
        &prometheus::TextEncoder::new(),
        &registry.gather(),
        &mut text,
    )
    .unwrap();
    let text = String::from_utf8(text).unwrap();
    let victim_label = format!("{}:{PORT}", t.backend_ip(victim));
    assert!(
        text.contains(&format!(
            "rampart_lb_backend_up{{backend=\"{victim_label}\"}} 0"
        )),
        "{text}"
    );
    assert!(
        text.contains(&format!(
            "rampart_lb_events_total{{event=\"repick\"}} {}",
            lb.stat(lb_stat::REPICK)
        )),
        "{text}"
    );
    assert!(
        text.contains("rampart_lb_flow_table_entries{kind=\"capacity\"} 65536"),
        "{text}"
    );
    assert!(
        text.contains("rampart_lb_vip_new_flows_total{service=\"dns\"}"),
        "{text}"
    );
    drop(srv);
}

#[test]
fn ipv6_vip() {
    if skip("ipv6_vip") {
        return;
    }
    let t = Topo::new("6", 2);
    let mut lb = t.balancer();
    let _srv = servers(&t, true);
    let svc = ServiceSpec {
        name: "web6".into(),
        address: t.vip6().into(),
        protocol: 6,
        port: PORT,
        backends: (0..2)
            .map(|i| BackendSpec {
                address: t.backend_ip6(i).into(),
                port: 0,
                weight: 1,
            })
            .collect(),
        mode: Mode::Ipip,
        maglev_table_size: 0,
    };
    lb.apply(&[svc]).unwrap();
    let seen = tcp_spread(&t, t.vip6().into(), 60);
    assert_eq!(seen.values().sum::<usize>(), 60);
    assert_eq!(seen.len(), 2, "both IPv6 backends served: {seen:?}");
    assert_eq!(lb.vip_totals("web6").unwrap().new_flows, 60);
}

/// DNAT mode's VIP port; the backends listen on `PORT`.
const DNAT_VIP_PORT: u16 = 80;

fn dnat_service(t: &Topo, weights: &[u32]) -> ServiceSpec {
    ServiceSpec {
        name: "web-dnat".into(),
        address: t.vip().into(),
        protocol: 6,
        port: DNAT_VIP_PORT,
        backends: weights
            .iter()
            .enumerate()
            .map(|(i, w)| BackendSpec {
                address: t.backend_ip(i).into(),
                port: PORT,
                weight: *w,
            })
            .collect(),
        mode: Mode::Dnat,
        maglev_table_size: 0,
    }
}

/// `n` connections to VIP:80 from the client: each reads the backend's
/// greeting and gets a line echoed (data both ways through both
/// translations); returns the backend names seen.
fn dnat_connections(t: &Topo, vip: IpAddr, n: usize) -> HashMap<String, usize> {
    let vip = SocketAddr::new(vip, DNAT_VIP_PORT);
    in_ns(&t.client, move || {
        let mut seen = HashMap::new();
        for i in 0..n {
            let c = TcpStream::connect_timeout(&vip, Duration::from_secs(2))
                .unwrap_or_else(|e| panic!("connection {i} to the VIP: {e}"));
            assert_eq!(c.peer_addr().unwrap(), vip, "the client talks to the VIP");
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut w = c.try_clone().unwrap();
            let mut r = BufReader::new(c);
            let mut name = String::new();
            r.read_line(&mut name).expect("backend greets");
            let msg = format!("echo {i} {}\n", "x".repeat(i % 200));
            w.write_all(msg.as_bytes()).unwrap();
            let mut back = String::new();
            r.read_line(&mut back).expect("echo");
            assert_eq!(back, msg, "connection {i}: echo intact");
            *seen.entry(name.trim().to_string()).or_insert(0) += 1;
        }
        seen
    })
    .join()
    .unwrap()
}

#[test]
fn dnat_mode_spreads_by_weight_and_fails_over() {
    if skip("dnat_mode_spreads_by_weight_and_fails_over") {
        return;
    }
    let t = Topo::dnat("d", 3);
    let mut lb = t.balancer();
    let mut srv: Vec<Server> = (0..3)
        .map(|i| {
            Server::start(
                &t.backends[i],
                format!("b{i}"),
                Ipv4Addr::UNSPECIFIED.into(),
            )
        })
        .collect();
    lb.apply(&[dnat_service(&t, &[1, 2, 3])]).unwrap();
    let n = 300;
    let seen = dnat_connections(&t, t.vip().into(), n);
    assert_eq!(seen.values().sum::<usize>(), n);
    // 0.09 absolute: > 3 standard deviations of a binomial share over 300.
    for (i, w) in [1.0, 2.0, 3.0].iter().enumerate() {
        let got = *seen.get(&format!("b{i}")).unwrap_or(&0) as f64 / n as f64;
        let want = w / 6.0;
        assert!(
            (got - want).abs() < 0.09,
            "backend b{i}: share {got:.3}, weight share {want:.3}; {seen:?}"
        );
    }
    assert!(lb.stat(lb_stat::DNAT) > 0);
    assert!(lb.stat(lb_stat::SNAT) > 0, "replies went through TC");
    assert_eq!(lb.stat(lb_stat::FIB_FAIL), 0);
    // Kill one backend: TCP health checks from the LB take it down.
    let victim = 1usize;
    srv[victim].kill();
    let targets: Vec<SocketAddr> = (0..3)
        .map(|i| SocketAddr::new(t.backend_ip(i).into(), PORT))
        .collect();
    let spec = HealthSpec {
        check: Check::Tcp,
        interval: Duration::from_millis(100),
        timeout: Duration::from_millis(200),
        rise: 2,
        fall: 2,
    };
    let (mut lb, transitions) = in_ns(&t.lb.clone(), move || {
        let mut mon = HealthMonitor::new(spec, targets);
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.is_empty() && Instant::now() < deadline {
            for (target, up) in mon.tick() {
                lb.set_backend_down(target.ip(), target.port(), !up)
                    .unwrap();
                seen.push((target, up));
            }
            std::thread::sleep(mon.spec().interval);
        }
        (lb, seen)
    })
    .join()
    .unwrap();
    assert_eq!(
        transitions,
        vec![(SocketAddr::new(t.backend_ip(victim).into(), PORT), false)],
        "exactly the killed backend went down"
    );
    let after = dnat_connections(&t, t.vip().into(), 60);
    assert_eq!(after.values().sum::<usize>(), 60, "every connection served");
    assert!(!after.contains_key("b1"), "{after:?}");
    assert_eq!(after.len(), 2, "both survivors serve: {after:?}");
    lb.clear_flows();
    drop(srv);
}

/// `n` TCP connections to VIP:PORT from `source` (an address of the
/// client, chosen through the route's preferred source); returns the
/// backends seen and how many connections failed.
fn tcp_from(t: &Topo, source: Ipv4Addr, n: usize) -> (HashMap<String, usize>, usize) {
    sh(&[
        "ip",
        "-n",
        &t.client,
        "route",
        "replace",
        &format!("{}/32", t.vip()),
        "via",
        &format!("10.{}.0.2", t.net),
        "src",
        &source.to_string(),
    ]);
    let vip = SocketAddr::new(t.vip().into(), PORT);
    in_ns(&t.client, move || {
        let mut seen = HashMap::new();
        let mut failed = 0;
        for _ in 0..n {
            let Ok(c) = TcpStream::connect_timeout(&vip, Duration::from_millis(400)) else {
                failed += 1;
                continue;
            };
            assert_eq!(c.local_addr().unwrap().ip(), IpAddr::from(source));
            c.set_read_timeout(Some(Duration::from_secs(2))).unwrap();
            let mut line = String::new();
            if BufReader::new(c).read_line(&mut line).is_ok() {
                *seen.entry(line.trim().to_string()).or_insert(0) += 1;
            } else {
                failed += 1;
            }
        }
        (seen, failed)
    })
    .join()
    .unwrap()
}

#[test]
fn firewall_and_balancer_on_one_interface() {
    if skip("firewall_and_balancer_on_one_interface") {
        return;
    }
    use rampart_agent::{
        attach::XdpModePref,
        fw::loader::{self, AttachOptions},
        lb::maps::{Hook, lb_pin_dir},
        pins::PinLayout,
    };
    use rampart_proto::v1::{Action, Direction, FirewallRule, HostPolicy, InterfacePolicy};
    let t = Topo::new("f", 2);
    let denied = Ipv4Addr::new(10, t.net, 0, 5);
    sh(&[
        "ip",
        "-n",
        &t.client,
        "addr",
        "add",
        &format!("{denied}/24"),
        "dev",
        "eth0",
    ]);
    let layout = PinLayout {
        root: t.pin.clone(),
    };
    let opts = t.lb_options();
    let (layout2, net) = (layout.clone(), t.net);
    let (fw, mut lb) = in_ns(&t.lb, move || {
        // The firewall first (it owns the interface's XDP hook): deny one
        // client address, permit the rest.
        let fw = loader::attach(
            &layout2,
            "eth0",
            &AttachOptions {
                xdp_mode: XdpModePref::Generic,
                ..AttachOptions::default()
            },
        )
        .expect("firewall attached");
        let policy = HostPolicy {
            version: 1,
            interfaces: vec![
                InterfacePolicy {
                    interface: "eth0".into(),
                    direction: Direction::Ingress as i32,
                    default_action: Action::Permit as i32,
                    rules: vec![FirewallRule {
                        sequence: 10,
                        action: Action::Deny as i32,
                        sources: vec![format!("10.{net}.0.5/32")],
                        ..Default::default()
                    }],
                },
                InterfacePolicy {
                    interface: "eth0".into(),
                    direction: Direction::Egress as i32,
                    default_action: Action::Permit as i32,
                    rules: vec![],
                },
            ],
            ..Default::default()
        };
        let c = rampart_agent::fw::policy::compile(&policy, &|_| true).expect("policy compiles");
        fw.maps
            .apply(&c.interfaces[0].ingress, &c.interfaces[0].egress)
            .expect("policy applied");
        // The balancer behind it, through the firewall's tail-call slot.
        let (lb, adopted) = Balancer::attach_pinned(
            &lb_pin_dir(&layout2.dir("eth0")),
            "eth0",
            Hook::AfterFirewall,
            opts,
        )
        .expect("balancer chained after the firewall");
        assert!(!adopted);
        (fw, lb)
    })
    .join()
    .unwrap();
    t.backends_ready();
    let _srv = servers(&t, false);
    lb.apply(&[t.service(&[], &[0, 1])]).unwrap();
    let (seen, failed) = tcp_from(&t, t.client_ip(), 40);
    assert_eq!(failed, 0, "allowed source: every connection balanced");
    assert_eq!(seen.len(), 2, "both backends served: {seen:?}");
    let (seen, failed) = tcp_from(&t, denied, 3);
    assert_eq!(failed, 3, "denied source dropped by the firewall: {seen:?}");
    let v = lb.vip_totals("web").unwrap();
    assert_eq!(v.new_flows, 40, "the denied SYNs never reached the LB");
    // An agent restart: the chained balancer is adopted, not reloaded.
    drop(lb);
    let (layout3, opts) = (layout.clone(), t.lb_options());
    let mut lb = in_ns(&t.lb, move || {
        let (lb, adopted) = Balancer::attach_pinned(
            &lb_pin_dir(&layout3.dir("eth0")),
            "eth0",
            Hook::AfterFirewall,
            opts,
        )
        .expect("adopt the chained balancer");
        assert!(adopted, "chain slot and pins were live");
        lb
    })
    .join()
    .unwrap();
    let (seen, failed) = tcp_from(&t, t.client_ip(), 10);
    assert_eq!(failed, 0, "still balanced after the restart: {seen:?}");
    lb.apply(&[t.service(&[], &[0])]).unwrap();
    lb.clear_flows();
    let (seen, failed) = tcp_from(&t, t.client_ip(), 10);
    assert_eq!(
        (failed, seen.len()),
        (0, 1),
        "new pool through adopted maps: {seen:?}"
    );
    // Only the balancer removed: the firewall keeps working, VIP traffic
    // is no longer balanced (the chain slot is empty again).
    drop(lb);
    let lb_dir = lb_pin_dir(&layout.dir("eth0"));
    rampart_agent::lb::maps::detach_pinned(&lb_dir).unwrap();
    assert!(!lb_dir.exists());
    let (seen, failed) = tcp_from(&t, t.client_ip(), 2);
    assert_eq!(failed, 2, "no balancer after detach: {seen:?}");
    drop(fw);
    let removed = loader::detach_all(&layout).unwrap();
    assert_eq!(removed, vec!["eth0".to_string()]);
}

/// Helper process of `restarted_agent_adopts_pinned_balancer`: attaches a
/// pinned balancer, reports READY and waits to be killed (SIGKILL: no
/// cleanup runs, as when an agent crashes).
#[test]
#[ignore = "helper process, started by restarted_agent_adopts_pinned_balancer"]
fn adoption_helper() {
    let Ok(arg) = std::env::var("RAMPART_LB_ADOPT_HELPER") else {
        return;
    };
    let svc: ServiceSpec = serde_json::from_str(&arg).unwrap();
    let ns = std::env::var("RAMPART_LB_NS").unwrap();
    let pin = PathBuf::from(std::env::var("RAMPART_LB_PIN").unwrap());
    let opts: LbOptions = LbOptions {
        max_vips: 4,
        src_v4: std::env::var("RAMPART_LB_SRC").unwrap().parse().unwrap(),
        ..LbOptions::default()
    };
    let lb = in_ns(&ns, move || {
        let (mut lb, adopted) = Balancer::attach_pinned(
            &pin,
            "eth0",
            rampart_agent::lb::maps::Hook::Xdp(rampart_agent::attach::XdpModePref::Generic),
            opts,
        )
        .expect("attach pinned");
        assert!(!adopted);
        lb.apply(&[svc]).unwrap();
        lb
    })
    .join()
    .unwrap();
    println!("READY");
    std::io::stdout().flush().unwrap();
    std::thread::sleep(Duration::from_secs(60));
    drop(lb);
}

#[test]
fn restarted_agent_adopts_pinned_balancer() {
    if skip("restarted_agent_adopts_pinned_balancer") {
        return;
    }
    use rampart_agent::{
        attach::XdpModePref,
        lb::maps::{Hook, lb_pin_dir},
        pins::PinLayout,
    };
    let t = Topo::new("k", 2);
    t.backends_ready();
    let _srv = servers(&t, false);
    let layout = PinLayout {
        root: t.pin.clone(),
    };
    let lb_dir = lb_pin_dir(&layout.dir("eth0"));
    // The "agent" is a child process that is SIGKILLed (also if this test
    // fails before, by the guard).
    struct KillOnDrop(std::process::Child);
    impl Drop for KillOnDrop {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let mut child = KillOnDrop(
        Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "adoption_helper", "--ignored", "--nocapture"])
            .env(
                "RAMPART_LB_ADOPT_HELPER",
                serde_json::to_string(&t.udp_service(&[0, 1])).unwrap(),
            )
            .env("RAMPART_LB_NS", &t.lb)
            .env("RAMPART_LB_PIN", &lb_dir)
            .env("RAMPART_LB_SRC", format!("10.{}.0.2", t.net))
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let mut out = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    while !line.contains("READY") {
        line.clear();
        assert!(
            out.read_line(&mut line).unwrap() > 0,
            "helper exited before READY"
        );
    }
    let before = udp_map(&t, 31_000..31_040);
    assert!(before.iter().all(|b| !b.is_empty()), "{before:?}");
    child.0.kill().unwrap(); // SIGKILL
    child.0.wait().unwrap();
    // Nobody holds the programs now but their pins: traffic still flows.
    let orphaned = udp_map(&t, 31_000..31_040);
    assert_eq!(orphaned, before, "balancer kept running after the kill");
    // Meanwhile a client keeps a flow busy across the adoption.
    let stop = Arc::new(AtomicBool::new(false));
    let (client, vip, stop2) = (t.client_ip(), t.vip(), stop.clone());
    let probe = in_ns(&t.client, move || {
        let s = UdpSocket::bind((client, 31_500)).unwrap();
        s.connect((vip, PORT)).unwrap();
        s.set_read_timeout(Some(Duration::from_millis(300)))
            .unwrap();
        let (mut ok, mut lost) = (0, 0);
        while !stop2.load(Ordering::Relaxed) {
            s.send(b"?").unwrap();
            let mut buf = [0u8; 32];
            if s.recv(&mut buf).is_ok() {
                ok += 1;
            } else {
                lost += 1;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        (ok, lost)
    });
    std::thread::sleep(Duration::from_millis(100));
    // The restarted agent adopts: no reload, no reattach.
    let (opts, dir, svc) = (t.lb_options(), lb_dir.clone(), t.udp_service(&[0]));
    let mut lb = in_ns(&t.lb, move || {
        let (mut lb, adopted) =
            Balancer::attach_pinned(&dir, "eth0", Hook::Xdp(XdpModePref::Generic), opts)
                .expect("adopt");
        assert!(adopted, "the live pinned balancer was adopted");
        // Its maps are live: a new pool (only b0) takes effect.
        lb.apply(&[svc]).unwrap();
        lb
    })
    .join()
    .unwrap();
    std::thread::sleep(Duration::from_millis(100));
    stop.store(true, Ordering::Relaxed);
    let (ok, lost) = probe.join().unwrap();
    assert!(ok > 10, "probe ran ({ok} answers)");
    assert_eq!(lost, 0, "no packet lost across kill and adoption");
    lb.clear_flows();
    let after = udp_map(&t, 31_000..31_040);
    assert!(
        after.iter().all(|b| b == "b0"),
        "new pool in force: {after:?}"
    );
    drop(lb);
    // `rampart-agent detach` (loader::detach_all) removes the LB too.
    let removed = rampart_agent::fw::loader::detach_all(&layout).unwrap();
    assert_eq!(removed, vec!["eth0".to_string()]);
    assert!(!lb_dir.exists() && !layout.root.exists());
    let gone = udp_map(&t, 31_000..31_003);
    assert!(gone.iter().all(String::is_empty), "detached: {gone:?}");
}

#[test]
fn dnat_mode_ipv6() {
    if skip("dnat_mode_ipv6") {
        return;
    }
    let t = Topo::dnat("n", 2);
    let mut lb = t.balancer();
    let _srv: Vec<Server> = (0..2)
        .map(|i| {
            Server::start(
                &t.backends[i],
                format!("b{i}"),
                Ipv6Addr::UNSPECIFIED.into(),
            )
        })
        .collect();
    // The LB resolves the IPv6 backends before the first flow.
    for i in 0..2 {
        let _ = Command::new("ip")
            .args([
                "netns",
                "exec",
                &t.lb,
                "ping",
                "-6",
                "-c1",
                "-W1",
                &t.backend_ip6(i).to_string(),
            ])
            .output();
    }
    lb.apply(&[ServiceSpec {
        name: "web6-dnat".into(),
        address: t.vip6().into(),
        protocol: 6,
        port: DNAT_VIP_PORT,
        backends: (0..2)
            .map(|i| BackendSpec {
                address: t.backend_ip6(i).into(),
                port: PORT,
                weight: 1,
            })
            .collect(),
        mode: Mode::Dnat,
        maglev_table_size: 0,
    }])
    .unwrap();
    let seen = dnat_connections(&t, t.vip6().into(), 60);
    assert_eq!(seen.values().sum::<usize>(), 60);
    assert_eq!(seen.len(), 2, "both IPv6 backends served: {seen:?}");
    assert!(lb.stat(lb_stat::SNAT) > 0);
    assert_eq!(lb.vip_totals("web6-dnat").unwrap().new_flows, 60);
}
