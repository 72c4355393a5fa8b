//! The netns lab for real (root): `up`, `status`, traffic, idempotence,
//! `down`, crash recovery and failures midway, each asserting that nothing
//! with the lab's name survives `down` — checked with `ip` and `/proc`
//! directly, not only through the runner's own view. Every test uses its own
//! lab name and state directory and tears down in a Drop guard.

mod support;

use std::{
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::Path,
    process::{Command, Output},
    time::{Duration, Instant},
};

use rampart_lab::{runner, sys};
use support::{
    Lab, bin_dir, http_get_within, netconf_running, partly_skipped, read_until, reference_yaml,
    repo, skip, skip_without, ssh_session, text,
};

/// GET / on `addr` from inside `ns`; the body.
fn http_get(ns: &str, addr: SocketAddr) -> Result<String, String> {
    http_get_within(ns, addr, Duration::from_secs(2))
}

/// The reference lab under a unique name, with host1's agent in standalone
/// mode (a policy file) and host2's managed (enrolled with rampartd): both
/// ways the runner starts agents. The demo's test runs both managed.
fn reference(tag: &str) -> Lab {
    let yaml = reference_yaml();
    let host1 = "        rampart.label.role: web\n";
    assert!(yaml.contains(host1), "host1's labels changed");
    Lab::new(
        tag,
        &yaml.replacen(
            host1,
            &format!("{host1}        rampart.agent-mode: standalone\n"),
            1,
        ),
    )
}

#[test]
fn reference_lab_up_status_traffic_down_leaves_nothing() {
    if skip_without(
        "reference_lab_up_status_traffic_down_leaves_nothing",
        &["rampartd"],
    ) {
        return;
    }
    let bin_dir = bin_dir();
    let lab = reference("ref");
    lab.assert_clean("before up");
    let t = Instant::now();
    let up = lab.run(&["up"]);
    let took = t.elapsed();
    assert!(up.status.success(), "up: {}", text(&up));
    eprintln!("reference lab up in {took:?}");
    let out = String::from_utf8_lossy(&up.stdout).into_owned();
    assert!(out.contains(&format!("lab {}: up", lab.name)), "{out}");
    if !bin_dir.join("rampart-agent").is_file() {
        assert!(
            out.contains("agent-missing"),
            "a missing agent is said loudly: {out}"
        );
    }

    // status: healthy, exit 0, JSON lists every node with a live process.
    let st = lab.run(&["status", "--json"]);
    assert!(st.status.success(), "status: {}", text(&st));
    let json: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
    let nodes = json["nodes"].as_array().unwrap();
    assert_eq!(nodes.len(), 17, "{json:#}");
    for n in nodes {
        assert_eq!(n["ns_present"], true, "{n}");
        for p in n["processes"].as_array().unwrap() {
            assert_eq!(p[2], true, "process alive: {n}");
        }
    }
    prometheus_scrapes_the_lab(&lab, nodes);

    // The network: the client reaches host1 directly and the backends
    // through host2 (routing + forwarding), each answering with its name.
    let client = lab.ns("client");
    assert_eq!(
        http_get(&client, "10.10.0.31:80".parse().unwrap()).unwrap(),
        "host1 80\n"
    );
    for (i, w) in ["web1", "web2", "web3"].iter().enumerate() {
        let addr: SocketAddr = format!("10.10.1.{}:8080", 11 + i).parse().unwrap();
        assert_eq!(http_get(&client, addr).unwrap(), format!("{w} 8080\n"));
    }
    // The devices listen on the inventory's addresses, inside the lab only.
    let ctl = lab.ns("controller");
    for a in [
        "10.10.0.21:830",
        "10.10.0.22:22",
        "10.10.0.23:443",
        "10.10.0.24:443",
        "10.10.0.25:443",
    ] {
        assert!(
            sys::tcp_open(&ctl, a.parse().unwrap()),
            "{a} reachable from the controller"
        );
    }

    // The env file points at a live, TLS-serving rampartd over the host link.
    let env = std::fs::read_to_string(lab.state_dir().join("lab.env")).unwrap();
    let var = |k: &str| {
        env.lines()
            .find_map(|l| l.strip_prefix(&format!("export {k}='")))
            .map(|v| v.trim_end_matches('\'').to_owned())
            .unwrap_or_else(|| panic!("{k} in lab.env:\n{env}"))
    };
    let server = var("RAMPART_SERVER");
    let api: SocketAddr = server.trim_start_matches("https://").parse().unwrap();
    assert!(
        TcpStream::connect_timeout(&api, Duration::from_secs(2)).is_ok(),
        "{server} from the host"
    );
    assert!(Path::new(&var("RAMPART_TOKEN_FILE")).is_file());
    assert!(Path::new(&var("RAMPART_CA_CERT")).is_file());
    let csr = var("CSR1_PASSWORD");
    assert!(
        csr.starts_with("rplab:") && csr.len() > 10,
        "user:secret for csr1"
    );
    let inv = rampart_lab::inventory::load(Path::new(&var("RAMPART_INVENTORY"))).unwrap();
    assert_eq!(inv.devices.len(), 5);

    // The devices accept the credentials the env file (and rampartd's
    // environment) hold, from the controller's namespace, with their real
    // protocols.
    netconf_device_enforces_cisco_models(&ctl, "10.10.0.21:830".parse().unwrap(), &csr);
    asa_cli_logs_in_and_enables(&ctl, &var("ASA1_PASSWORD"));
    // rampartd gets strict host keys for both SSH devices.
    let kh = std::fs::read_to_string(
        Path::new(&var("RAMPART_TOKEN_FILE")).with_file_name("known_hosts"),
    )
    .unwrap();
    assert!(
        kh.lines()
            .any(|l| l.starts_with("[10.10.0.21]:830 ssh-ed25519 ")),
        "{kh}"
    );
    assert!(kh.lines().any(|l| l.starts_with("10.10.0.22 ")), "{kh}");
    let bundle = std::fs::read_to_string(var("RAMPART_SIMS_CA_BUNDLE")).unwrap();
    assert_eq!(
        bundle.matches("-----BEGIN CERTIFICATE-----").count(),
        3,
        "ftd1, mx1, vmanage1 CAs in the bundle"
    );
    let py = Command::new("nsenter")
        .arg(format!("--net={}/{ctl}", sys::NETNS_DIR))
        .args(["/usr/bin/python3", "-c", HTTP_SIMS_CHECK])
        .envs(
            [
                "FTD1_PASSWORD",
                "FTD1_CA_CERT",
                "MX1_PASSWORD",
                "MX1_CA_CERT",
                "VMANAGE1_PASSWORD",
                "VMANAGE1_CA_CERT",
            ]
            .map(|k| (k, var(k))),
        )
        .output()
        .unwrap();
    assert!(
        py.status.success(),
        "HTTP simulators with the lab credentials: {}",
        text(&py)
    );
    assert_eq!(
        String::from_utf8_lossy(&py.stdout),
        "fdm token\nmeraki orgs 1\nvmanage session\n",
        "{}",
        text(&py)
    );

    // Filtering on a lab host: host1's agent denies tcp/8080 on eth1, the
    // client still gets port 80, the rule counts its hits, and the agent's
    // objects are pinned under the lab's bpffs directory (removed by down).
    if bin_dir.join("rampart-agent").is_file() {
        host1_agent_filters(&lab, &var("RAMPART_POLICY_HOST1"));
        // host2's agent enrolled with rampartd: `up` waited until it was
        // online; its identity lives in the lab's state (removed by down).
        assert!(!env.contains("RAMPART_POLICY_HOST2"), "{env}");
        let host2 = nodes.iter().find(|n| n["node"] == "host2").unwrap();
        assert_eq!(host2["info"]["mode"], "managed", "{host2}");
        assert!(
            host2["info"]["agent-id"]
                .as_str()
                .is_some_and(|id| id.starts_with("host2-")),
            "{host2}"
        );
        let host1 = nodes.iter().find(|n| n["node"] == "host1").unwrap();
        assert_eq!(host1["info"]["mode"], "standalone", "{host1}");
        let agent_dir = runner::agent_state_dir(&lab.state_dir(), "host2");
        assert!(
            agent_dir.join("agent.crt").is_file(),
            "{}",
            agent_dir.display()
        );
    } else {
        partly_skipped(
            "reference_lab_up_status_traffic_down_leaves_nothing",
            "rampart-agent is not built (host filtering)",
        );
    }

    // up again: nothing to do.
    let again = lab.run(&["up"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("already up"),
        "{}",
        text(&again)
    );

    // A dead process makes status fail and name it.
    let web2 = nodes.iter().find(|n| n["node"] == "web2").unwrap();
    let pid = u32::try_from(web2["processes"][0][1].as_u64().unwrap()).unwrap();
    sys::kill_pid(pid, libc_sigkill());
    std::thread::sleep(Duration::from_millis(200));
    let st = lab.run(&["status"]);
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("DOWN"),
        "{}",
        text(&st)
    );

    // down: everything goes; down again: nothing to do, exit 0.
    let down = lab.run(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down));
    lab.assert_clean("after down");
    let again = lab.run(&["down"]);
    assert!(again.status.success(), "{}", text(&again));
    assert!(
        String::from_utf8_lossy(&again.stdout).contains("nothing to remove"),
        "{}",
        text(&again)
    );
    let st = lab.run(&["status"]);
    assert_eq!(
        st.status.code(),
        Some(1),
        "status of a lab that is down: {}",
        text(&st)
    );
}

/// The lab's Prometheus runs and says where it is; `status` shows the
/// managed agent online in rampartd's fleet and, once Prometheus scraped
/// them, all four targets (rampartd, its fleet endpoint, both agents) up.
fn prometheus_scrapes_the_lab(lab: &Lab, nodes: &[serde_json::Value]) {
    let prom = nodes.iter().find(|n| n["node"] == "prometheus").unwrap();
    assert_eq!(prom["processes"][0][0], "prometheus", "{prom}");
    assert_eq!(
        prom["info"]["prometheus"], "http://10.10.0.50:9090",
        "{prom}"
    );
    let env = std::fs::read_to_string(lab.state_dir().join("lab.env")).unwrap();
    assert!(
        env.contains("export RAMPART_PROMETHEUS_URL='http://10.10.0.50:9090'"),
        "{env}"
    );
    if !bin_dir().join("rampart-agent").is_file() {
        partly_skipped(
            "reference_lab_up_status_traffic_down_leaves_nothing",
            "rampart-agent is not built (agents in status and Prometheus)",
        );
        return;
    }
    let host2 = nodes.iter().find(|n| n["node"] == "host2").unwrap();
    assert_eq!(host2["live"]["fleet"], "online", "{host2}");
    let deadline = Instant::now() + Duration::from_secs(15);
    loop {
        let st = lab.run(&["status", "--json"]);
        let json: serde_json::Value = serde_json::from_slice(&st.stdout).unwrap();
        let prom = json["nodes"]
            .as_array()
            .unwrap()
            .iter()
            .find(|n| n["node"] == "prometheus")
            .unwrap()
            .clone();
        if prom["live"]["targets"] == "4/4 up" {
            let table = lab.run(&["status"]);
            let table = String::from_utf8_lossy(&table.stdout).into_owned();
            assert!(table.contains("targets: 4/4 up"), "{table}");
            assert!(table.contains("fleet: online"), "{table}");
            return;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus never had all targets up: {prom:#}"
        );
        std::thread::sleep(Duration::from_millis(300));
    }
}

fn libc_sigkill() -> i32 {
    9
}

/// A small lab without Rust daemons: a bridge, a simulator, a web server and
/// a client.
const SMALL: &str = r#"name: NAME
topology:
  nodes:
    sw:
      kind: bridge
    mx:
      kind: linux
      labels: {rampart.role: sim-meraki, rampart.address: 10.20.0.5/24}
    web:
      kind: linux
      labels: {rampart.role: server, rampart.address: 10.20.0.6/24, rampart.http-ports: "80"}
    cl:
      kind: linux
      labels: {rampart.role: client, rampart.address: 10.20.0.7/24}
      exec:
        - ip route replace 10.99.0.0/16 via 10.20.0.6
  links:
    - endpoints: ["mx:eth1", "sw:p-mx"]
    - endpoints: ["web:eth1", "sw:p-web"]
    - endpoints: ["cl:eth1", "sw:p-cl"]
"#;

#[test]
fn down_after_a_crash_finds_everything_by_name() {
    if skip("down_after_a_crash_finds_everything_by_name") {
        return;
    }
    let lab = Lab::new("crash", SMALL);
    let up = lab.run(&["up"]);
    assert!(up.status.success(), "up: {}", text(&up));
    assert_eq!(
        http_get(&lab.ns("cl"), "10.20.0.6:80".parse().unwrap()).unwrap(),
        "web 80\n"
    );
    assert!(!lab.remains().is_empty());
    // Lose the state file, as after a crash of the runner mid-way.
    std::fs::remove_file(lab.state_dir().join("state.json")).unwrap();
    let st = lab.run(&["status"]);
    assert_eq!(st.status.code(), Some(1), "{}", text(&st));
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("leftovers"),
        "{}",
        text(&st)
    );
    let down = lab.run(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down));
    assert!(
        String::from_utf8_lossy(&down.stdout).contains("4 namespace(s)"),
        "{}",
        text(&down)
    );
    lab.assert_clean("after down without a state file");
}

#[test]
fn up_over_a_half_built_lab_starts_clean() {
    if skip("up_over_a_half_built_lab_starts_clean") {
        return;
    }
    let lab = Lab::new("half", SMALL);
    // Debris of an earlier crash: a namespace with the lab's prefix.
    let stale = lab.ns("cl");
    assert!(
        Command::new("ip")
            .args(["netns", "add", &stale])
            .status()
            .unwrap()
            .success()
    );
    let up = lab.run(&["up"]);
    assert!(up.status.success(), "up over debris: {}", text(&up));
    let down = lab.run(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    lab.assert_clean("after down");
}

#[test]
fn broken_exec_midway_fails_up_and_leaves_nothing() {
    if skip("broken_exec_midway_fails_up_and_leaves_nothing") {
        return;
    }
    let yaml = SMALL.replace(
        "        - ip route replace 10.99.0.0/16 via 10.20.0.6\n",
        "        - ip route replace 10.99.0.0/16 via 10.20.0.6\n        - ip addr add 10.30.0.1/24 dev nosuch0\n",
    );
    let lab = Lab::new("exec", &yaml);
    let up = lab.run(&["up"]);
    assert!(!up.status.success(), "up must fail: {}", text(&up));
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("node cl: exec[1]") && err.contains("nosuch0"),
        "names node, step and command: {err}"
    );
    lab.assert_clean("after a failed up");
    assert!(
        !lab.state_dir().join("state.json").exists(),
        "no state of a lab that does not exist"
    );
}

/// A managed agent that never reaches rampartd (its node is not linked to
/// the controller's network): `up` fails once the ready timeout passes,
/// names the node and says it is not online in the fleet, and removes
/// everything, the agent's state directory and the enrolled token's
/// controller included.
#[test]
fn managed_agent_that_never_comes_online_fails_up_and_leaves_nothing() {
    if skip_without(
        "managed_agent_that_never_comes_online_fails_up_and_leaves_nothing",
        &["rampartd", "rampartctl", "rampart-agent"],
    ) {
        return;
    }
    let lab = Lab::new(
        "lost",
        r#"name: NAME
topology:
  nodes:
    sw:
      kind: bridge
    ctl:
      kind: linux
      labels: {rampart.role: controller, rampart.address: 10.40.0.10/24}
    h:
      kind: linux
      labels: {rampart.role: agent, rampart.label.role: web}
  links:
    - endpoints: ["ctl:eth1", "sw:p-ctl"]
"#,
    );
    let t = Instant::now();
    let up = lab.run_timeout(&["up"], 3);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("node h: rampart-agent not ready: not online in rampartd's fleet"),
        "{err}"
    );
    assert!(t.elapsed() < Duration::from_secs(15), "{:?}", t.elapsed());
    lab.assert_clean("after an agent that never came online");
}

#[test]
fn process_failing_after_others_started_fails_up_and_leaves_nothing() {
    if skip("process_failing_after_others_started_fails_up_and_leaves_nothing") {
        return;
    }
    // The web server and the Meraki simulator both want port 443 on the
    // same node: one of them dies after the other processes started.
    let yaml = SMALL.replace(
        "labels: {rampart.role: sim-meraki, rampart.address: 10.20.0.5/24}",
        "labels: {rampart.role: \"sim-meraki,server\", rampart.address: 10.20.0.5/24, rampart.http-ports: \"443\"}",
    );
    let lab = Lab::new("port", &yaml);
    let up = lab.run(&["up"]);
    assert!(!up.status.success(), "up must fail: {}", text(&up));
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("node mx:") && err.contains("not ready"),
        "names the node and the process: {err}"
    );
    lab.assert_clean("after a failed up");
}

#[test]
fn invalid_topology_is_refused_before_anything_is_created() {
    if skip("invalid_topology_is_refused_before_anything_is_created") {
        return;
    }
    let lab = Lab::new(
        "inval",
        &SMALL.replace("rampart.role: client", "rampart.role: router"),
    );
    let up = lab.run(&["up"]);
    assert_eq!(up.status.code(), Some(1), "{}", text(&up));
    let err = String::from_utf8_lossy(&up.stderr);
    assert!(
        err.contains("topology.nodes.cl.labels.rampart.role: unknown role \"router\""),
        "{err}"
    );
    lab.assert_clean("after a refused topology");
    // down works on a topology that does not validate.
    let down = lab.run(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
}

/// FDM token, Meraki organizations and an SD-WAN Manager session, with the
/// lab's credentials and each simulator's CA as the only trusted root
/// (Python's standard library only: a client independent of Rampart).
const HTTP_SIMS_CHECK: &str = r#"
import json, os, ssl, urllib.parse, urllib.request
def ctx(var):
    return ssl.create_default_context(cafile=os.environ[var])
u, p = os.environ["FTD1_PASSWORD"].split(":", 1)
req = urllib.request.Request("https://10.10.0.23/api/fdm/v6/fdm/token",
    data=json.dumps({"grant_type": "password", "username": u, "password": p}).encode(),
    headers={"Content-Type": "application/json"})
assert json.load(urllib.request.urlopen(req, context=ctx("FTD1_CA_CERT"), timeout=5))["access_token"]
print("fdm token")
key = os.environ["MX1_PASSWORD"].split(":", 1)[1]
req = urllib.request.Request("https://10.10.0.24/api/v1/organizations",
    headers={"X-Cisco-Meraki-API-Key": key})
orgs = json.load(urllib.request.urlopen(req, context=ctx("MX1_CA_CERT"), timeout=5))
print("meraki orgs", len(orgs))
u, p = os.environ["VMANAGE1_PASSWORD"].split(":", 1)
req = urllib.request.Request("https://10.10.0.25/j_security_check",
    data=urllib.parse.urlencode({"j_username": u, "j_password": p}).encode())
r = urllib.request.urlopen(req, context=ctx("VMANAGE1_CA_CERT"), timeout=5)
assert r.read() == b"" and "JSESSIONID=" in r.headers.get("Set-Cookie", ""), "login refused"
print("vmanage session")
"#;

/// csr1 speaks NETCONF over SSH with the Cisco models: an ACL edit on the
/// candidate commits and shows in running; an out-of-range port is refused
/// by the device's schema.
fn netconf_device_enforces_cisco_models(ns: &str, addr: SocketAddr, user_secret: &str) {
    const END: &str = "]]>]]>";
    let sess = ssh_session(ns, addr, user_secret);
    let mut ch = sess.channel_session().unwrap();
    ch.subsystem("netconf").unwrap();
    let hello = read_until(&mut ch, END);
    assert!(
        hello.contains("Cisco-IOS-XE-native"),
        "Cisco models loaded: {hello}"
    );
    assert!(
        hello.contains("urn:ietf:params:netconf:capability:candidate:1.0"),
        "{hello}"
    );
    // Base 1.0 only, so both sides frame with the end-of-message marker.
    ch.write_all(
        format!(
            "<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>{END}"
        )
        .as_bytes(),
    )
    .unwrap();
    std::thread::sleep(Duration::from_millis(50));
    let mut rpc = |id: u32, body: &str| -> String {
        let msg = format!(
            "<rpc message-id=\"{id}\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\">{body}</rpc>{END}"
        );
        ch.write_all(msg.as_bytes()).unwrap();
        read_until(&mut ch, END)
    };
    let acl = |port: u32| {
        format!(
            "<edit-config><target><candidate/></target><config><native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"><ip><access-list><extended xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-acl\"><name>LAB-CHECK</name><access-list-seq-rule><sequence>10</sequence><ace-rule><action>permit</action><protocol>tcp</protocol><any/><dst-any/><dst-eq>{port}</dst-eq></ace-rule></access-list-seq-rule></extended></access-list></ip></native></config></edit-config>"
        )
    };
    let bad = rpc(2, &acl(70_000));
    assert!(
        bad.contains("rpc-error"),
        "port 70000 refused by the schema: {bad}"
    );
    let _ = rpc(3, "<discard-changes/>");
    let ok = rpc(4, &acl(80));
    assert!(ok.contains("<ok/>"), "{ok}");
    let commit = rpc(5, "<commit/>");
    assert!(commit.contains("<ok/>"), "{commit}");
    let running = rpc(6, "<get-config><source><running/></source></get-config>");
    assert!(
        running.contains("LAB-CHECK") && running.contains("<dst-eq>80</dst-eq>"),
        "{running}"
    );
}

/// asa1's CLI over SSH: log in, enable with the enable password, see the
/// privileged prompt and the version.
fn asa_cli_logs_in_and_enables(ns: &str, creds: &str) {
    // user:password:enable, as rampartd's ASA driver reads it.
    let (user_password, enable) = creds.rsplit_once(':').unwrap();
    let sess = ssh_session(ns, "10.10.0.22:22".parse().unwrap(), user_password);
    let mut ch = sess.channel_session().unwrap();
    ch.request_pty("vt100", None, None).unwrap();
    ch.shell().unwrap();
    read_until(&mut ch, "asa1>");
    ch.write_all(b"enable\n").unwrap();
    read_until(&mut ch, "Password:");
    ch.write_all(format!("{enable}\n").as_bytes()).unwrap();
    read_until(&mut ch, "asa1#");
    ch.write_all(b"show version\n").unwrap();
    let out = read_until(&mut ch, "asa1#");
    assert!(out.contains("Adaptive Security Appliance"), "{out}");
}

const HOST1_POLICY: &str = "version: 2
interfaces:
  - interface: eth1
    direction: ingress
    default_action: permit
    rules:
      - {sequence: 10, action: deny, protocol: 6, destination_ports: [{first: 8080, last: 8080}], tenant: lab, service: web}
";

fn host1_agent_filters(lab: &Lab, policy: &str) {
    std::fs::write(policy, HOST1_POLICY).unwrap();
    let client = lab.ns("client");
    let host1 = lab.ns("host1");
    let scrape = || {
        sys::in_netns(&host1, || {
            let mut s = TcpStream::connect("127.0.0.1:9469").unwrap();
            s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
            let mut out = String::new();
            s.read_to_string(&mut out).unwrap();
            out
        })
        .unwrap()
    };
    // The agent polls its policy file: wait until version 2 is enforced.
    let deadline = Instant::now() + Duration::from_secs(15);
    while !scrape().lines().any(|l| l == "rampart_policy_version 2") {
        assert!(
            Instant::now() < deadline,
            "host1's agent never applied the policy:\n{}",
            scrape()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        !tcp_connects(&client, "10.10.0.31:8080".parse().unwrap()),
        "tcp/8080 to host1 is dropped"
    );
    assert_eq!(
        http_get(&client, "10.10.0.31:80".parse().unwrap()).unwrap(),
        "host1 80\n"
    );
    let metrics = scrape();
    let hits = metrics
        .lines()
        .find(|l| l.starts_with("rampart_rule_packets_total{") && l.contains("rule=\"10\""))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse::<u64>().ok());
    assert!(
        hits.is_some_and(|h| h >= 1),
        "rule 10 hits on host1:\n{metrics}"
    );
    let pins = runner::bpf_root(&lab.name).join("host1");
    let pinned = std::fs::read_dir(&pins).map(Iterator::count).unwrap_or(0);
    assert!(pinned > 0, "agent objects pinned under {}", pins.display());
}

const MINI_FW: &str = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: lab-fw, tenant: lab}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, destinations: [10.30.0.31/32], destinationPorts: [PORTS]}
  targets:
    devices:
      - {device: csr1, interface: GigabitEthernet2, direction: ingress}
";

/// The demo's device half, unattended: the mini lab, the inventory
/// registered with rampartctl, a vFirewall dry-run then applied to csr1 (the
/// device's running config holds the ACL), a second version applied and
/// rolled back (running is the first version again), the service deleted
/// (the ACL is gone).
#[test]
fn controller_applies_and_rolls_back_on_the_lab_device() {
    if skip_without(
        "controller_applies_and_rolls_back_on_the_lab_device",
        &["rampartd", "rampartctl"],
    ) {
        return;
    }
    let bin_dir = bin_dir();
    let yaml =
        std::fs::read_to_string(repo().join("testbed/topologies/mini/mini.clab.yml")).unwrap();
    let lab = Lab::new("e2e", &yaml.replacen("name: mini\n", "name: NAME\n", 1));
    let up = lab.run(&["up"]);
    assert!(up.status.success(), "up: {}", text(&up));
    let env_text = std::fs::read_to_string(lab.state_dir().join("lab.env")).unwrap();
    let env: Vec<(String, String)> = env_text
        .lines()
        .filter_map(|l| l.strip_prefix("export "))
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
        .collect();
    let var = |k: &str| {
        env.iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap()
    };
    let ctl = |args: &[&str], stdin: Option<&str>| -> Output {
        let mut cmd = Command::new(bin_dir.join("rampartctl"));
        cmd.args(args)
            .envs(env.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        cmd.stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    };
    let add = ctl(&["devices", "add", "-f", &var("RAMPART_INVENTORY")], None);
    assert!(add.status.success(), "devices add: {}", text(&add));

    let ns = lab.ns("controller");
    let csr: SocketAddr = "10.30.0.21:830".parse().unwrap();
    let creds = var("CSR1_PASSWORD");
    let running = || netconf_running(&ns, csr, &creds);
    assert!(!running().contains("RP4-lab-lab_fw"), "clean device first");

    let v1 = MINI_FW.replace("PORTS", "80");
    let dry = ctl(&["apply", "-f", "-", "--dry-run"], Some(&v1));
    assert!(dry.status.success(), "dry-run: {}", text(&dry));
    assert!(
        String::from_utf8_lossy(&dry.stdout).contains("<dst-eq>80</dst-eq>"),
        "dry-run shows the device XML: {}",
        text(&dry)
    );
    assert!(
        !running().contains("RP4-lab-lab_fw"),
        "a dry-run changes nothing"
    );

    let apply = ctl(&["apply", "-f", "-"], Some(&v1));
    assert!(apply.status.success(), "apply: {}", text(&apply));
    let r1 = running();
    assert!(
        r1.contains("RP4-lab-lab_fw") && r1.contains("<dst-eq>80</dst-eq>"),
        "csr1 holds the ACL:\n{r1}"
    );

    let v2 = MINI_FW.replace("PORTS", "80, 443");
    let apply2 = ctl(&["apply", "-f", "-"], Some(&v2));
    assert!(apply2.status.success(), "apply v2: {}", text(&apply2));
    let out = String::from_utf8_lossy(&apply2.stdout).into_owned();
    let txn = out
        .split_whitespace()
        .find(|w| w.starts_with("txn-"))
        .unwrap_or_else(|| panic!("a transaction id in {out}"))
        .to_owned();
    assert!(
        running().contains("<dst-eq>443</dst-eq>"),
        "v2 on the device"
    );
    let rb = ctl(&["rollback", &txn], None);
    assert!(rb.status.success(), "rollback {txn}: {}", text(&rb));
    let back = running();
    assert!(
        back.contains("<dst-eq>80</dst-eq>") && !back.contains("<dst-eq>443</dst-eq>"),
        "rollback restored v1:\n{back}"
    );

    let del = ctl(&["delete", "service", "lab-fw", "--tenant", "lab"], None);
    assert!(del.status.success(), "delete: {}", text(&del));
    assert!(!running().contains("RP4-lab-lab_fw"), "the ACL is gone");

    let down = lab.run(&["down"]);
    assert!(down.status.success(), "{}", text(&down));
    lab.assert_clean("after down");
}

/// The runner is SIGKILLed in the middle of `up` (during a slow `exec`
/// line): namespaces, links and the exec's process remain, the state file is
/// partial; `down` removes all of it.
#[test]
fn runner_killed_midway_then_down_cleans_up() {
    if skip("runner_killed_midway_then_down_cleans_up") {
        return;
    }
    let yaml = SMALL.replace(
        "        - ip route replace 10.99.0.0/16 via 10.20.0.6\n",
        "        - ip route replace 10.99.0.0/16 via 10.20.0.6\n        - sleep 30\n",
    );
    let lab = Lab::new("kill", &yaml);
    let mut child = Command::new(env!("CARGO_BIN_EXE_rampart-lab"))
        .arg("up")
        .arg("--topology")
        .arg(&lab.topology)
        .arg("--state-dir")
        .arg(lab.state_dir())
        .arg("--root")
        .arg(repo())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    // Wait until the exec line's sleep runs in the client's namespace.
    let deadline = Instant::now() + Duration::from_secs(10);
    let cl = lab.ns("cl");
    loop {
        let pids = Command::new("ip")
            .args(["netns", "pids", &cl])
            .output()
            .unwrap();
        let sleeping = String::from_utf8_lossy(&pids.stdout)
            .split_whitespace()
            .any(|p| {
                std::fs::read_to_string(format!("/proc/{p}/comm"))
                    .is_ok_and(|c| c.trim() == "sleep")
            });
        if sleeping {
            break;
        }
        assert!(Instant::now() < deadline, "the exec line never started");
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill().unwrap();
    child.wait().unwrap();
    let left = lab.remains();
    assert!(
        left.iter().any(|l| l.starts_with("netns ")),
        "the crash left namespaces: {left:?}"
    );
    assert!(
        left.iter().any(|l| l.contains("sleep")),
        "and the exec's process, marked: {left:?}"
    );
    let pids = Command::new("ip")
        .args(["netns", "pids", &cl])
        .output()
        .unwrap();
    let orphans: Vec<String> = String::from_utf8_lossy(&pids.stdout)
        .split_whitespace()
        .map(str::to_owned)
        .collect();
    assert!(
        !orphans.is_empty(),
        "processes in the crashed lab's namespace"
    );
    let st = lab.run(&["status"]);
    assert_eq!(
        st.status.code(),
        Some(1),
        "an unfinished lab is not healthy: {}",
        text(&st)
    );
    assert!(
        String::from_utf8_lossy(&st.stdout).contains("INCOMPLETE"),
        "{}",
        text(&st)
    );
    let down = lab.run(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down));
    lab.assert_clean("after down following a killed up");
    for p in &orphans {
        let stat = std::fs::read_to_string(format!("/proc/{p}/stat")).unwrap_or_default();
        let running = stat
            .rsplit_once(") ")
            .is_some_and(|(_, r)| !r.starts_with('Z'));
        assert!(!running, "process {p} of the crashed lab is gone: {stat}");
    }
}

/// Whether a TCP connection to `addr` from `ns` is accepted within 1 s.
fn tcp_connects(ns: &str, addr: SocketAddr) -> bool {
    sys::in_netns(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(1)).is_ok()
    })
    .unwrap()
}
