//! Managed mode end to end for the load balancer: a `LoadBalancer` spec
//! applied through rampartd's gRPC API (real in-process rampartd) reaches
//! the real `rampart-agent` binary over mutual TLS, which attaches the
//! balancer to its interface: the pinned `LB_VIPS` map holds the VIP. The
//! agent's health checks (one backend listening, one not) come back to the
//! controller in the heartbeat (`Health.backends`).
//!
//! Runs in the root namespace on a veth pair with a unique name (the agent
//! must reach rampartd on loopback), pins under a unique bpffs root; the
//! guard kills the agent and removes the pair and the pins.

#[path = "../../controller/tests/fleet_common/mod.rs"]
mod fleet_common;

mod skip;

use std::{
    net::{Ipv4Addr, TcpListener},
    path::PathBuf,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use aya::maps::{HashMap as BpfHashMap, Map, MapData};
use fleet_common::start;
use rampart_common::lb::{VipInfo, VipKey};
use rampart_proto::v1 as pb;

fn skip(test: &str) -> bool {
    skip::unless_root(&format!("{test} needs root (veth, bpf)"))
}

/// The veth pair, the agent process and its pins.
struct Guard {
    veth: String,
    pin_root: PathBuf,
    agent: Option<Child>,
    log: PathBuf,
}

impl Guard {
    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Some(mut c) = self.agent.take() {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = Command::new("ip")
            .args(["link", "del", &self.veth])
            .status();
        let mut lb_root = self.pin_root.clone().into_os_string();
        lb_root.push("-lb");
        let _ = std::fs::remove_dir_all(&self.pin_root);
        let _ = std::fs::remove_dir_all(PathBuf::from(lb_root));
    }
}

async fn wait<F, Fut>(what: &str, g: &Guard, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(20);
    while !f().await {
        assert!(
            Instant::now() < deadline,
            "timed out waiting for: {what}\n--- agent log ---\n{}",
            g.log()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Keys of the pinned `LB_VIPS` map under `dir` (empty if not there yet).
fn vips(dir: &std::path::Path) -> Vec<VipKey> {
    let Ok(data) = MapData::from_pin(dir.join("LB_VIPS")) else {
        return Vec::new();
    };
    let Ok(map) = Map::from_map_data(data) else {
        return Vec::new();
    };
    let Ok(h) = BpfHashMap::<MapData, VipKey, VipInfo>::try_from(map) else {
        return Vec::new();
    };
    h.keys().filter_map(Result::ok).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_spec_reaches_the_agent_dataplane() {
    if skip("load_balancer_spec_reaches_the_agent_dataplane") {
        return;
    }
    let id = std::process::id() % 100_000;
    let dir = tempfile::tempdir().unwrap();
    let mut g = Guard {
        veth: format!("lbm{id}a"),
        pin_root: PathBuf::from(format!("/sys/fs/bpf/rampart-lbm-{id}")),
        agent: None,
        log: dir.path().join("agent.log"),
    };
    let peer = format!("lbm{id}b");
    for args in [
        vec![
            "link", "add", &g.veth, "type", "veth", "peer", "name", &peer,
        ],
        vec!["addr", "add", "10.249.7.2/24", "dev", &g.veth],
        vec!["link", "set", &g.veth, "up"],
        vec!["link", "set", &peer, "up"],
    ] {
        let ok = Command::new("ip").args(&args).status().unwrap().success();
        assert!(ok, "ip {args:?}");
    }
    // Backend 127.0.0.1 listens on the VIP port; 127.0.0.2 does not.
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let metrics_port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();

    let d = start(&dir.path().join("data"), None).await;
    let vip = Ipv4Addr::new(10, 249, 8, 100);
    let spec = format!(
        "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {{name: web-lb, tenant: acme}}
spec:
  virtualServices:
    - name: web
      address: {vip}
      protocol: tcp
      port: {port}
      backends: [{{address: 127.0.0.1, weight: 1}}, {{address: 127.0.0.2, weight: 2}}]
      healthCheck: {{type: tcp, intervalMs: 100, timeoutMs: 50, rise: 1, fall: 2}}
  targets:
    hosts:
      - selector: {{role: lb}}
        interfaces: [{}]
",
        g.veth
    );
    // Dry-run first: the agent policy is in the rendering.
    let dry = d.apply_doc(&spec, true).await.unwrap();
    let r = dry
        .rendered
        .iter()
        .find(|r| r.target == "hosts:role=lb")
        .unwrap_or_else(|| panic!("no agent rendering in the dry-run: {:?}", dry.rendered));
    assert_eq!(r.format, "agent-policy");
    let shown: pb::HostPolicy = serde_json::from_str(&r.content).unwrap();
    assert_eq!(shown.virtual_services.len(), 1);
    assert_eq!(shown.virtual_services[0].vip, vip.to_string());
    assert_eq!(shown.virtual_services[0].interface, g.veth);
    d.apply_doc(&spec, false).await.unwrap();
    let token = d.enroll_token(&[("role", "lb")]).await;

    let child = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
        .arg("--pin-root")
        .arg(&g.pin_root)
        .args([
            "run",
            "--controller",
            &format!("https://{}", d.agents),
            "--enroll-token",
            &token,
            "--controller-name",
            "localhost",
            "--heartbeat-ms",
            "200",
            "--metrics-listen",
            &format!("127.0.0.1:{metrics_port}"),
            "--xdp-mode",
            "generic",
        ])
        .arg("--controller-ca")
        .arg(d.data.join("tls/ca.crt"))
        .arg("--state-dir")
        .arg(dir.path().join("agent"))
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(std::fs::File::create(&g.log).unwrap())
        .spawn()
        .expect("spawn rampart-agent");
    g.agent = Some(child);

    wait("controller sees the policy applied", &g, || async {
        let l = d.agents().await;
        l.len() == 1 && l[0].applied_version >= 1 && l[0].desired_version == l[0].applied_version
    })
    .await;
    let lb_dir = {
        let mut r = g.pin_root.clone().into_os_string();
        r.push("-lb");
        PathBuf::from(r).join(&g.veth)
    };
    let keys = vips(&lb_dir);
    assert!(
        keys.iter()
            .any(|k| k.addr[..4] == vip.octets() && k.port == port && k.proto == 6),
        "the pinned LB_VIPS map of {} holds {vip}:{port}/tcp: {keys:?}\n{}",
        lb_dir.display(),
        g.log()
    );
    // The XDP program is on the interface.
    let link = Command::new("ip")
        .args(["-d", "link", "show", &g.veth])
        .output()
        .unwrap();
    assert!(
        String::from_utf8_lossy(&link.stdout).contains("xdp"),
        "XDP attached to {}",
        g.veth
    );

    // Health checks reach the controller: .1 up, .2 down with its error.
    wait("backend health in the heartbeat", &g, || async {
        let l = d.agents().await;
        let Some(h) = l.first().and_then(|a| a.health.clone()) else {
            return false;
        };
        let by = |b: &str| h.backends.iter().find(|x| x.backend == b).cloned();
        matches!(
            (by(&format!("127.0.0.1:{port}")), by(&format!("127.0.0.2:{port}"))),
            (Some(pb::BackendHealth { up: true, .. }), Some(pb::BackendHealth { up: false, ref last_error, transitions: 1, .. }))
                if last_error.contains("connect")
        )
    })
    .await;
    let h = d.agents().await[0].health.clone().unwrap();
    assert!(
        h.backends
            .iter()
            .all(|b| b.virtual_service == "acme/web-lb/web"),
        "{:?}",
        h.backends
    );

    // Deleting the virtual service through a new spec version removes the
    // VIP: the map no longer holds it.
    let other = spec.replace(&format!("port: {port}"), &format!("port: {}", port + 1));
    d.apply_doc(&other, false).await.unwrap();
    wait("VIP moved to the new port", &g, || async {
        let k = vips(&lb_dir);
        k.len() == 1 && k[0].port == port + 1
    })
    .await;

    // A spec the agent must refuse (its interface does not exist on the
    // host). Hosts take part in the transaction: the agent refuses in the
    // prepare phase (staged push), so the API call fails naming the
    // virtual service and the interface, and the agent's dataplane keeps
    // the VIP it had.
    let refused = other.replace(&format!("interfaces: [{}]", g.veth), "interfaces: [nope0]");
    let status = d
        .apply_doc(&refused, false)
        .await
        .expect_err("a spec an agent refuses is refused by the transaction");
    let expect = "virtual service acme/web-lb/web: interface \"nope0\" does not exist on this host";
    assert!(
        status.message().contains(expect),
        "the transaction's refusal carries the agent's reason: {status:?}"
    );
    let k = vips(&lb_dir);
    assert!(
        k.len() == 1 && k[0].port == port + 1,
        "the refused spec left the VIP in place: {k:?}"
    );
    drop(listener);
    d.stop().await;
}
