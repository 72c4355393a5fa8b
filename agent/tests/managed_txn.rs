//! Host agents as transaction participants, end to end on loopback: two
//! real agent clients (`rampart_agent::managed`) against a real in-process
//! rampartd over mutual TLS. Each agent's dataplane validates and compiles
//! with the agent's own policy compiler against its own set of
//! interfaces, so one host can refuse what the other accepts.

#[path = "../../controller/tests/fleet_common/mod.rs"]
mod fleet_common;
mod managed_common;

use std::{sync::atomic::Ordering, time::Duration};

use fleet_common::{Rampartd, eventually, start};
use managed_common::Agent;

fn web(name: &str, port: u16, interfaces: &str) -> String {
    web_of("acme", name, port, interfaces)
}

fn web_of(tenant: &str, name: &str, port: u16, interfaces: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: {tenant}}}
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
        Some(d.enroll_token(&[("role", "web")]).await),
        "host-a",
        &["lo", "eth1"],
    );
    let b = Agent::spawn(
        d,
        &dir.join("b"),
        Some(d.enroll_token(&[("role", "web")]).await),
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
    let entry = |id: &str| {
        dry.rendered
            .iter()
            .find(|r| r.target == format!("agent/{id}"))
            .unwrap_or_else(|| panic!("no dry-run entry for agent/{id}: {:?}", dry.rendered))
    };
    // Same labels, same change: shown in full once, referenced by the other.
    let (ra, rb) = (entry(&id_a), entry(&id_b));
    assert_eq!(
        (ra.format.as_str(), rb.format.as_str()),
        ("agent-policy", "agent-policy")
    );
    let (full, other, full_id) = if ra.content.contains("same_change_as") {
        (rb, ra, &id_b)
    } else {
        (ra, rb, &id_a)
    };
    assert!(
        full.content
            .contains("+ lo ingress: seq 10 allow proto 6 dport 80"),
        "{}",
        full.content
    );
    let reference: serde_json::Value = serde_json::from_str(&other.content).unwrap();
    assert_eq!(
        reference["same_change_as"],
        format!("agent/{full_id}"),
        "{}",
        other.content
    );
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
    a.stop().await.unwrap();
    b.stop().await.unwrap();
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
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    d.stop().await;
}

// Input:  acme's service on two shared hosts; globex (tenant role) dry-runs
//         its own service for the same hosts.
// Output: globex sees its own rule diff and policy on each host, and none
//         of acme's rules, in the dry-run and in the transaction history.
#[tokio::test]
async fn a_tenant_never_sees_another_tenants_rules_on_a_shared_host() {
    let dir = tempfile::tempdir().unwrap();
    let d = start(&dir.path().join("data"), None).await;
    let (a, b, _, _) = two_agents(&d, dir.path()).await;
    d.apply_doc(&web("web", 80, "lo"), false).await.unwrap();
    let globex = d.token_for("tenant", &["globex"]).await;
    let doc = web_of("globex", "db", 5432, "lo").replace("sequence: 10", "sequence: 20");
    let dry = d.apply_doc_as(&globex, &doc, true).await.unwrap();
    let agents: Vec<_> = dry
        .rendered
        .iter()
        .filter(|r| r.target.starts_with("agent/"))
        .collect();
    assert_eq!(agents.len(), 2, "{:?}", dry.rendered);
    // Both hosts get the same change: one is shown, the other refers to it.
    let shown: Vec<_> = agents
        .iter()
        .filter(|r| !r.content.contains("same_change_as"))
        .collect();
    assert_eq!(shown.len(), 1, "{:?}", dry.rendered);
    for r in &agents {
        assert!(
            !r.content.contains("acme") && !r.content.contains("\"first\": 80"),
            "another tenant's rule shown: {}",
            r.content
        );
    }
    assert!(
        shown[0].content.contains("globex/db") && shown[0].content.contains("5432"),
        "{}",
        shown[0].content
    );
    let applied = d.apply_doc_as(&globex, &doc, false).await.unwrap();
    for r in applied
        .rendered
        .iter()
        .filter(|r| r.target.starts_with("agent/"))
    {
        assert!(!r.content.contains("acme"), "{}", r.content);
    }
    assert_eq!((a.ports(), b.ports()), (vec![80, 5432], vec![80, 5432]));
    a.stop().await.unwrap();
    b.stop().await.unwrap();
    d.stop().await;
}
