//! Host agents as transaction participants, end to end on loopback: two
//! real agent clients (`rampart_agent::managed`) against a real in-process
//! rampartd over mutual TLS. Each agent's dataplane validates and compiles
//! with the agent's own policy compiler against its own set of
//! interfaces, so one host can refuse what the other accepts.

#[path = "../../controller/tests/fleet_common/mod.rs"]
mod fleet_common;

use std::{
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use fleet_common::{Rampartd, eventually, start};
use rampart_agent::managed::{self, Dataplane, ManagedConfig, ManagedError, Status};
use rampart_proto::v1 as pb;
use tokio::sync::oneshot;

struct Host {
    interfaces: &'static [&'static str],
    policy: Option<pb::HostPolicy>,
    applies: Arc<AtomicU64>,
    /// The next `apply` (activation) fails, as a map write error would.
    fail_apply: Arc<AtomicBool>,
}

impl Host {
    fn check(&self, policy: &pb::HostPolicy) -> Result<(), String> {
        let ifs = self.interfaces;
        rampart_agent::policy::compile(policy, &|i| i == "*" || ifs.contains(&i))
            .map(drop)
            .map_err(|e| e.to_string())
    }
}

impl Dataplane for Host {
    fn apply(&mut self, policy: &pb::HostPolicy) -> Result<(), String> {
        self.check(policy)?;
        if self.fail_apply.swap(false, Ordering::SeqCst) {
            return Err("map write failed: injected".into());
        }
        self.policy = Some(policy.clone());
        self.applies.fetch_add(1, Ordering::SeqCst);
        Ok(())
    }

    fn validate(&self, policy: &pb::HostPolicy) -> Result<(), String> {
        self.check(policy)
    }

    fn health(&self) -> pb::Health {
        pb::Health::default()
    }

    fn counters(&self) -> Vec<pb::RuleCounter> {
        Vec::new()
    }
}

struct Agent {
    dp: Arc<Mutex<Host>>,
    status: Arc<Status>,
    fail_apply: Arc<AtomicBool>,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<Result<(), ManagedError>>,
}

impl Agent {
    fn spawn(
        d: &Rampartd,
        state: &std::path::Path,
        token: String,
        host: &str,
        interfaces: &'static [&'static str],
    ) -> Self {
        let mut cfg = ManagedConfig::new(format!("https://{}", d.agents), state);
        cfg.ca_file = Some(d.data.join("tls/ca.crt"));
        cfg.server_name = Some("localhost".into());
        cfg.enroll_token = Some(token);
        cfg.hostname = host.into();
        cfg.heartbeat = Duration::from_millis(100);
        cfg.backoff_min = Duration::from_millis(50);
        cfg.backoff_max = Duration::from_millis(300);
        let fail_apply = Arc::new(AtomicBool::new(false));
        let dp = Arc::new(Mutex::new(Host {
            interfaces,
            policy: None,
            applies: Arc::default(),
            fail_apply: fail_apply.clone(),
        }));
        let status = Arc::new(Status::default());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(managed::run(cfg, dp.clone(), status.clone(), async move {
            let _ = rx.await;
        }));
        Self {
            dp,
            status,
            fail_apply,
            stop: Some(tx),
            task,
        }
    }

    fn applies(&self) -> u64 {
        self.dp.lock().unwrap().applies.load(Ordering::SeqCst)
    }

    /// Destination ports of every rule enforced, in order.
    fn ports(&self) -> Vec<u32> {
        let g = self.dp.lock().unwrap();
        g.policy
            .iter()
            .flat_map(|p| &p.interfaces)
            .flat_map(|i| &i.rules)
            .flat_map(|r| r.destination_ports.iter().map(|p| p.first))
            .collect()
    }

    async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

fn web(name: &str, port: u16, interfaces: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, destinationPorts: [{port}]}}
  targets:
    hosts:
      - selector: {{role: web}}
        interfaces: [{interfaces}]
"
    )
}

async fn two_agents(d: &Rampartd, dir: &std::path::Path) -> (Agent, Agent, String, String) {
    let a = Agent::spawn(
        d,
        &dir.join("a"),
        d.enroll_token(&[("role", "web")]).await,
        "host-a",
        &["lo", "eth1"],
    );
    let b = Agent::spawn(
        d,
        &dir.join("b"),
        d.enroll_token(&[("role", "web")]).await,
        "host-b",
        &["lo"],
    );
    // Online, and enforcing what the fleet wants (an empty policy).
    eventually("both agents online and converged", || async {
        let l = d.agents().await;
        l.len() == 2
            && l.iter()
                .all(|x| x.state == "online" && x.applied_version == x.desired_version)
    })
    .await;
    let l = d.agents().await;
    let id = |h: &str| {
        l.iter()
            .find(|x| x.hostname == h)
            .map(|x| x.agent_id.clone())
            .unwrap()
    };
    (a, b, id("host-a"), id("host-b"))
}

// Input:  two connected agents selected by role=web; a dry-run, an apply,
//         then a change on an interface only host-a has.
// Output: the dry-run lists each agent with its rule diff and changes
//         nothing; the apply reaches both in one transaction; the change is
//         refused by host-b at prepare, so host-a never switches either and
//         the error names agent/<host-b> and the interface.
#[tokio::test]
async fn hosts_prepare_together_and_a_refusal_changes_no_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir.path().join("data"), None).await;
    let (a, b, id_a, id_b) = two_agents(&d, dir.path()).await;
    let base = (a.applies(), b.applies());

    let dry = d.apply_doc(&web("web", 80, "lo"), true).await.unwrap();
    for id in [&id_a, &id_b] {
        let r = dry
            .rendered
            .iter()
            .find(|r| r.target == format!("agent/{id}"))
            .unwrap_or_else(|| panic!("no dry-run entry for agent/{id}: {:?}", dry.rendered));
        assert_eq!(r.format, "agent-policy");
        assert!(
            r.content
                .contains("+ lo ingress: seq 10 allow proto 6 dport 80"),
            "{}",
            r.content
        );
    }
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((a.applies(), b.applies()), base, "dry-run changed a host");

    let res = d.apply_doc(&web("web", 80, "lo"), false).await.unwrap();
    assert!(!res.transaction_id.is_empty());
    // Activation is acknowledged before the apply returns.
    assert_eq!((a.ports(), b.ports()), (vec![80], vec![80]));

    let err = d
        .apply_doc(&web("web", 8080, "eth1"), false)
        .await
        .expect_err("host-b has no eth1");
    let msg = err.message();
    assert!(
        msg.contains(&format!("agent/{id_b}")) && msg.contains("eth1"),
        "{msg}"
    );
    assert!(!msg.contains(&format!("agent/{id_a}")), "{msg}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!((a.ports(), b.ports()), (vec![80], vec![80]));
    assert_eq!(
        (a.applies(), b.applies()),
        (base.0 + 1, base.1 + 1),
        "a host switched"
    );
    for x in d.agents().await {
        assert_eq!(x.applied_version, x.desired_version, "{x:?}");
    }
    a.stop().await;
    b.stop().await;
    d.stop().await;
}

// Input:  a change both agents stage; host-a then fails to activate it.
// Output: the transaction fails; host-b, if it had switched, is pushed its
//         previous policy back: both hosts end enforcing port 80 only.
#[tokio::test]
async fn activation_failure_restores_the_hosts_that_switched() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir.path().join("data"), None).await;
    let (a, b, id_a, _) = two_agents(&d, dir.path()).await;
    d.apply_doc(&web("web", 80, "lo"), false).await.unwrap();
    assert_eq!((a.ports(), b.ports()), (vec![80], vec![80]));

    a.fail_apply.store(true, Ordering::SeqCst);
    let err = d
        .apply_doc(&web("web", 443, "lo"), false)
        .await
        .expect_err("host-a fails to activate");
    assert!(
        err.message().contains(&format!("agent/{id_a}")) && err.message().contains("injected"),
        "{}",
        err.message()
    );
    assert_eq!((a.ports(), b.ports()), (vec![80], vec![80]));
    assert!(!a.status.render().is_empty());
    a.stop().await;
    b.stop().await;
    d.stop().await;
}
