//! Real traffic through the firewall: two network namespaces joined by a
//! veth pair, the agent enforcing on the server side's interface. Each test
//! has its own namespaces and bpffs pin root, cleaned up by Drop guards.

mod common;

use std::{
    collections::HashMap,
    net::UdpSocket,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use common::{Agent, C_IP, C_IP2, S_IP, Topo, port, scrape, skip_unless_root};
use rampart_agent::{fw::enforcer::Enforcer, fw::loader::AttachOptions, pins::PinLayout};
use rampart_proto::v1::HostPolicy;

fn policy_yaml(version: u64, extra: &str) -> String {
    format!(
        r"version: {version}
interfaces:
  - interface: vs
    direction: ingress
    default_action: deny
    rules:
      - {{sequence: 10, action: permit, protocol: 6, destination_ports: [{{first: 8080, last: 8080}}], tenant: acme, service: web}}
      - {{sequence: 20, action: permit, protocol: 17, destination_ports: [{{first: 9000, last: 9000}}], tenant: acme}}
      - {{sequence: 30, action: permit, protocol: 1, icmp_type: 8}}
{extra}"
    )
}

fn metric(text: &str, prefix: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[test]
fn allowed_denied_stateful_metrics_and_hot_reload() {
    if skip_unless_root("allowed_denied_stateful_metrics_and_hot_reload") {
        return;
    }
    let topo = Topo::new("a");
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policy.yaml");
    std::fs::write(&pol, policy_yaml(1, "")).unwrap();
    let mport = port();
    let agent = Agent::start(&topo, &pol, mport);
    agent.wait_for("policy applied", 1);

    assert!(topo.tcp_c_to_s(8080), "tcp 8080 is permitted");
    assert!(!topo.tcp_c_to_s(8081), "tcp 8081 falls to default deny");
    assert!(topo.udp_c_to_s(C_IP, 9000, 20) >= 18, "udp 9000 permitted");
    assert_eq!(topo.udp_c_to_s(C_IP, 9001, 20), 0, "udp 9001 denied");
    assert!(topo.ping(true), "icmp echo request permitted");
    assert!(
        topo.tcp_s_to_c(7000),
        "replies of a flow S opened come back (conntrack)"
    );
    assert!(
        topo.ping(false),
        "echo replies of S's ping come back (conntrack)"
    );

    let m = scrape(&topo.s, mport);
    let hits = metric(
        &m,
        r#"rampart_rule_packets_total{direction="ingress",interface="vs",rule="10",service="web",tenant="acme"}"#,
    );
    // Only the SYN matches the rule; the rest of the flow is "established".
    assert!(
        hits.is_some_and(|h| h >= 1),
        "rule 10 hits in metrics:\n{m}"
    );
    assert!(
        metric(&m, r#"rampart_verdict_packets_total{direction="ingress",interface="vs",reason="drop_default"}"#)
            .is_some_and(|v| v >= 20),
        "default drops counted:\n{m}"
    );
    assert!(
        metric(&m, r#"rampart_conntrack_entries{interface="vs"}"#).is_some_and(|v| v >= 1),
        "{m}"
    );
    assert!(
        m.contains(r#"rampart_program_attached{hook="xdp",interface="vs""#),
        "{m}"
    );
    assert!(
        metric(&m, "rampart_policy_version").is_some_and(|v| v == 1),
        "{m}"
    );

    // Hot reload: 8081 becomes permitted.
    let extra = "      - {sequence: 40, action: permit, protocol: 6, destination_ports: [{first: 8081, last: 8081}]}\n";
    std::fs::write(&pol, policy_yaml(2, extra)).unwrap();
    agent.wait_for("policy applied", 2);
    assert!(topo.tcp_c_to_s(8081), "tcp 8081 permitted after reload");

    // A bad policy is refused precisely and the one in force stays.
    let bad = "      - {sequence: 50, action: deny, sources: [\"10.0.0.300/8\"]}\n";
    std::fs::write(&pol, policy_yaml(3, &format!("{extra}{bad}"))).unwrap();
    agent.wait_for("policy not applied", 1);
    assert!(
        agent.log.lock().unwrap().contains("10.0.0.300/8"),
        "error names the bad prefix"
    );
    let mut unknown = policy_yaml(4, extra);
    unknown = unknown.replace("interface: vs", "interface: nosuch0");
    std::fs::write(&pol, unknown).unwrap();
    agent.wait_for("policy not applied", 2);
    assert!(
        agent.log.lock().unwrap().contains("nosuch0"),
        "error names the interface"
    );
    assert!(topo.tcp_c_to_s(8081), "policy v2 still enforced");
    assert!(!topo.tcp_c_to_s(8082), "and still denies what v2 denies");
}

/// Receives UDP on S:`ports` until stopped; records (port, arrival time).
fn udp_sink(
    topo: &Topo,
    ports: &[u16],
    stop: Arc<AtomicBool>,
) -> std::thread::JoinHandle<Vec<(u16, Instant, std::net::IpAddr)>> {
    let ports = ports.to_vec();
    Topo::in_ns(&topo.s, move || {
        let socks: Vec<(u16, UdpSocket)> = ports
            .iter()
            .map(|p| {
                let s = UdpSocket::bind((S_IP, *p)).unwrap();
                s.set_nonblocking(true).unwrap();
                (*p, s)
            })
            .collect();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        while !stop.load(Ordering::Relaxed) {
            let mut any = false;
            for (p, s) in &socks {
                while let Ok((_, from)) = s.recv_from(&mut buf) {
                    got.push((*p, Instant::now(), from.ip()));
                    any = true;
                }
            }
            if !any {
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        got
    })
}

/// Sends to each (source, port) flow in turn until stopped.
fn udp_source(
    topo: &Topo,
    flows: &[(&'static str, u16)],
    stop: Arc<AtomicBool>,
    sent: Arc<AtomicU64>,
) -> std::thread::JoinHandle<()> {
    let flows = flows.to_vec();
    Topo::in_ns(&topo.c, move || {
        let socks: Vec<(UdpSocket, u16)> = flows
            .iter()
            .map(|(src, p)| (UdpSocket::bind((*src, 0)).unwrap(), *p))
            .collect();
        while !stop.load(Ordering::Relaxed) {
            for (s, p) in &socks {
                let _ = s.send_to(b"x", (S_IP, *p));
                sent.fetch_add(1, Ordering::Relaxed);
            }
            std::thread::sleep(Duration::from_micros(300));
        }
    })
}

#[test]
fn kill9_keeps_enforcing_restart_adopts_detach_cleans() {
    if skip_unless_root("kill9_keeps_enforcing_restart_adopts_detach_cleans") {
        return;
    }
    let topo = Topo::new("k");
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policy.yaml");
    std::fs::write(&pol, policy_yaml(1, "")).unwrap();
    let mut agent = Agent::start(&topo, &pol, port());
    agent.wait_for("policy applied", 1);

    let stop = Arc::new(AtomicBool::new(false));
    let sink = udp_sink(&topo, &[9000, 9001], stop.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let src = udp_source(
        &topo,
        &[(C_IP, 9000), (C_IP, 9001)],
        stop.clone(),
        sent.clone(),
    );
    std::thread::sleep(Duration::from_millis(300));
    let killed_at = Instant::now();
    agent.kill9();
    std::thread::sleep(Duration::from_millis(500));
    let mut agent2 = Agent::start(&topo, &pol, port());
    agent2.wait_for("adopted pinned firewall state", 1);
    agent2.wait_for("policy applied", 1);
    std::thread::sleep(Duration::from_millis(300));
    stop.store(true, Ordering::Relaxed);
    src.join().unwrap();
    let got = sink.join().unwrap();

    let denied = got.iter().filter(|(p, _, _)| *p == 9001).count();
    assert_eq!(
        denied, 0,
        "no denied packet passed while the agent was dead or restarting"
    );
    let allowed: Vec<Instant> = got
        .iter()
        .filter(|(p, _, _)| *p == 9000)
        .map(|(_, t, _)| *t)
        .collect();
    let during_kill = allowed
        .iter()
        .filter(|t| **t > killed_at && **t < killed_at + Duration::from_millis(500))
        .count();
    assert!(
        during_kill > 50,
        "allowed traffic kept flowing while the agent was dead ({during_kill})"
    );
    let max_gap = allowed.windows(2).map(|w| w[1] - w[0]).max().unwrap();
    assert!(
        max_gap < Duration::from_millis(100),
        "no enforcement gap: max gap {max_gap:?}"
    );
    eprintln!(
        "sent {} packets, {} allowed received, max gap {max_gap:?}",
        sent.load(Ordering::Relaxed),
        allowed.len()
    );

    // Exactly one XDP program and one TCX egress program on the interface.
    let link = std::process::Command::new("ip")
        .args(["-n", &topo.s, "-d", "link", "show", "vs"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert_eq!(link.matches("prog/xdp").count(), 1, "{link}");
    let tcx = Topo::in_ns(&topo.s, || {
        aya::programs::SchedClassifier::query_tcx("vs", aya::programs::TcAttachType::Egress)
            .unwrap()
            .1
            .len()
    })
    .join()
    .unwrap();
    assert_eq!(tcx, 1, "restart must not add a second TCX attachment");

    // Detach removes everything.
    agent2.kill9();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
        .args(["--netns", &topo.s, "--pin-root"])
        .arg(&topo.pin_root)
        .arg("detach")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "detach: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!topo.pin_root.exists(), "pin root removed");
    let link = std::process::Command::new("ip")
        .args(["-n", &topo.s, "-d", "link", "show", "vs"])
        .output()
        .unwrap();
    assert!(
        !String::from_utf8_lossy(&link.stdout).contains("prog/xdp"),
        "xdp detached"
    );
    let tcx = Topo::in_ns(&topo.s, || {
        aya::programs::SchedClassifier::query_tcx("vs", aya::programs::TcAttachType::Egress)
            .unwrap()
            .1
            .len()
    })
    .join()
    .unwrap();
    assert_eq!(tcx, 0, "tcx detached");
    assert!(
        topo.udp_c_to_s(C_IP, 9001, 10) >= 9,
        "no filtering after detach"
    );
}

#[test]
fn live_policy_swap_never_mixes_generations() {
    if skip_unless_root("live_policy_swap_never_mixes_generations") {
        return;
    }
    let topo = Topo::new("s");
    // A permits .3 -> 9000, B permits .1 -> 9001. A packet .3 -> 9001 or
    // .1 -> 9000 is permitted by neither, but would be by a mix of A's
    // source bitmap and B's port bitmap (or the reverse): the canaries.
    let a = policy(
        r#"[{sequence: 1, action: permit, protocol: 17, sources: ["10.200.0.3/32"], destination_ports: [{first: 9000, last: 9000}]}]"#,
    );
    let b = policy(
        r#"[{sequence: 1, action: permit, protocol: 17, sources: ["10.200.0.1/32"], destination_ports: [{first: 9001, last: 9001}]}]"#,
    );
    let layout = PinLayout {
        root: topo.pin_root.clone(),
    };
    let enf = Arc::new(Mutex::new(None::<Enforcer>));
    {
        let (enf, layout, a) = (enf.clone(), layout.clone(), a.clone());
        Topo::in_ns(&topo.s, move || {
            let mut e = Enforcer::new(layout, AttachOptions::default());
            e.apply(&a).unwrap();
            *enf.lock().unwrap() = Some(e);
        })
        .join()
        .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    let sink = udp_sink(&topo, &[9000, 9001], stop.clone());
    let sent = Arc::new(AtomicU64::new(0));
    let src = udp_source(
        &topo,
        &[(C_IP2, 9000), (C_IP, 9001), (C_IP2, 9001), (C_IP, 9000)],
        stop.clone(),
        sent.clone(),
    );
    let swaps = 200;
    let t0 = Instant::now();
    {
        let enf = enf.clone();
        Topo::in_ns(&topo.s, move || {
            let mut g = enf.lock().unwrap();
            let e = g.as_mut().unwrap();
            for i in 0..swaps {
                e.apply(if i % 2 == 0 { &b } else { &a }).unwrap();
                std::thread::sleep(Duration::from_millis(2));
            }
        })
        .join()
        .unwrap();
    }
    let took = t0.elapsed();
    stop.store(true, Ordering::Relaxed);
    src.join().unwrap();
    let got = sink.join().unwrap();
    let mut by_flow: HashMap<(String, u16), usize> = HashMap::new();
    for (p, _, ip) in &got {
        *by_flow.entry((ip.to_string(), *p)).or_default() += 1;
    }
    eprintln!(
        "{swaps} swaps in {took:?}, sent {}, received {by_flow:?}",
        sent.load(Ordering::Relaxed)
    );
    assert_eq!(
        by_flow
            .get(&(C_IP2.to_string(), 9001))
            .copied()
            .unwrap_or(0),
        0,
        "canary .3->9001 passed: generations mixed"
    );
    assert_eq!(
        by_flow.get(&(C_IP.to_string(), 9000)).copied().unwrap_or(0),
        0,
        "canary .1->9000 passed: generations mixed"
    );
    assert!(
        by_flow
            .get(&(C_IP2.to_string(), 9000))
            .copied()
            .unwrap_or(0)
            > 0,
        "A's flow passed"
    );
    assert!(
        by_flow.get(&(C_IP.to_string(), 9001)).copied().unwrap_or(0) > 0,
        "B's flow passed"
    );
    drop(enf);
}

fn policy(rules: &str) -> HostPolicy {
    let y = format!(
        "version: 1\ninterfaces:\n  - interface: vs\n    direction: ingress\n    default_action: deny\n    rules: {rules}\n"
    );
    serde_norway::from_str(&y).unwrap()
}

/// `ip netns exec` gives the agent a private mount namespace with a fresh
/// `/sys`: a bpffs mounted there dies with the agent, and enforcement with
/// it after a `kill -9`. The agent refuses to start and names `--netns`;
/// `--allow-private-bpffs` starts it anyway, with a warning.
#[test]
fn private_bpffs_under_ip_netns_exec_is_refused() {
    if skip_unless_root("private_bpffs_under_ip_netns_exec_is_refused") {
        return;
    }
    let topo = Topo::new("p");
    let dir = tempfile::tempdir().unwrap();
    let pol = dir.path().join("policy.yaml");
    std::fs::write(&pol, policy_yaml(1, "")).unwrap();
    let agent = |extra: &[&str]| {
        // `timeout`: an agent that wrongly starts must not hang the test.
        let mut c = std::process::Command::new("timeout");
        c.args([
            "20",
            "ip",
            "netns",
            "exec",
            &topo.s,
            env!("CARGO_BIN_EXE_rampart-agent"),
        ])
        .args(extra)
        .arg("--pin-root")
        .arg(&topo.pin_root)
        .args(["run", "--policy"])
        .arg(&pol)
        .args(["--metrics-listen", &format!("127.0.0.1:{}", port())])
        .env("RUST_LOG", "info");
        c
    };
    let out = agent(&[]).output().unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "the agent must refuse: {err}");
    assert!(
        err.contains("private to this mount namespace") && err.contains("--netns"),
        "{err}"
    );
    let link = std::process::Command::new("ip")
        .args(["-n", &topo.s, "-d", "link", "show", "vs"])
        .output()
        .unwrap();
    let link = String::from_utf8_lossy(&link.stdout).to_string();
    assert!(!link.contains("prog/xdp"), "nothing attached: {link}");

    let mut child = agent(&["--allow-private-bpffs"])
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let lines = std::thread::spawn(move || {
        use std::io::BufRead;
        let mut seen = String::new();
        for line in std::io::BufReader::new(stderr)
            .lines()
            .map_while(Result::ok)
        {
            seen.push_str(&line);
            seen.push('\n');
            if line.contains("policy applied") {
                break;
            }
        }
        seen
    });
    let seen = lines.join().unwrap();
    let _ = child.kill();
    let _ = child.wait();
    assert!(seen.contains("policy applied"), "{seen}");
    assert!(seen.contains("--allow-private-bpffs"), "warned: {seen}");
}
