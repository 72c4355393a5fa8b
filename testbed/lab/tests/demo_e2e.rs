//! The demo (`scripts/demo.sh`) as an end-to-end test: the reference lab
//! under a unique name, built by the same runner, with host1 and host2
//! running rampart-agent enrolled with the lab's rampartd. The demo's
//! vFirewall (`examples/demo/firewall.yaml`) is dry-run, applied and rolled
//! back with rampartctl, and every outcome is asserted: which packets were
//! dropped (tcp/8080 at host1 and at the gateway host2), which were served
//! (tcp/80), the per-rule hits through the API with both agents counted,
//! both daemons' Prometheus metrics, csr1's running configuration read over
//! NETCONF, the ASA and Firepower simulators' state, and that rollback
//! restores every device and host. `down` then leaves nothing behind; a
//! Drop guard runs it when a step fails.
//!
//! This is also issue #6's "agent fabric end to end" test: a service
//! targeting hosts by label, applied with rampartctl, enforced by agents in
//! two namespaces, hit counters through the API.

mod support;

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    time::{Duration, Instant},
};

use rampart_lab::runner;
use serde_json::Value;
use support::{
    Ctl, Lab, agent_metrics, http_get_within, http_text, netconf_running, reference_yaml, repo,
    sample, skip_without, text, versions,
};

/// GET / on `addr` from `ns`: the body, or why not within 1 s.
fn http_get(ns: &str, addr: SocketAddr) -> Result<String, String> {
    http_get_within(ns, addr, Duration::from_secs(1))
}

/// csr1's running configuration, read over NETCONF (`<get-config>`) from
/// the controller's namespace with the lab's credentials.
fn csr1_running(ns: &str, user_secret: &str) -> String {
    netconf_running(ns, "10.10.0.21:830".parse().unwrap(), user_secret)
}

/// A simulator's persisted state (what its API/CLI shows), as text.
fn sim_state(lab: &Lab, node: &str) -> String {
    let f = lab
        .state_dir()
        .join("nodes")
        .join(node)
        .join("sim-state.json");
    std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()))
}

/// asa1's running configuration (the simulator's state): the service's
/// access-list lines, and the interfaces its access-group binds.
fn asa_acl(lab: &Lab) -> (Vec<String>, Vec<String>) {
    let st: Value = serde_json::from_str(&sim_state(lab, "asa1")).unwrap();
    let running = &st["running"];
    let lines = running["access_lists"]
        .as_object()
        .unwrap_or_else(|| panic!("asa1 running config: {st:#}"))
        .iter()
        .filter(|(name, _)| name.starts_with("RPA-acme-web_fw"))
        .flat_map(|(_, v)| v.as_array().cloned().unwrap_or_default())
        .map(|l| l.to_string())
        .collect();
    let groups = running["access_groups"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(ToString::to_string)
        .filter(|g| g.contains("RPA-acme-web_fw"))
        .collect();
    (lines, groups)
}

/// ftd1's deployed access rules and TCP port objects (the simulator's
/// state after FDM's deploy job).
fn ftd_deployed(lab: &Lab) -> (Vec<Value>, String) {
    let st: Value = serde_json::from_str(&sim_state(lab, "ftd1")).unwrap();
    let rules = st["deployed"]["accessrules"]
        .as_object()
        .unwrap_or_else(|| panic!("ftd1 deployed state: {st:#}"))
        .values()
        .flat_map(|v| v.as_array().cloned().unwrap_or_default())
        .collect();
    (rules, st["deployed"]["tcpports"].to_string())
}

/// What a managed agent persisted as its applied policy
/// (`applied.json` in its state directory: version, hash, policy).
fn applied_policy(lab: &Lab, host: &str) -> Value {
    let f = runner::agent_state_dir(&lab.state_dir(), host).join("applied.json");
    let text = std::fs::read_to_string(&f).unwrap_or_else(|e| panic!("{}: {e}", f.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}: {text}", f.display()))
}

/// The hits of rule `seq` in `get service -o json`.
fn hits(svc: &Value, seq: u64) -> (u64, u64) {
    svc["hits"]
        .as_array()
        .unwrap_or_else(|| panic!("no hits array: {svc:#}"))
        .iter()
        .find(|h| h["sequence"] == seq)
        .map_or((0, 0), |h| {
            (
                h["packets"].as_u64().unwrap_or(0),
                h["agents"].as_u64().unwrap_or(0),
            )
        })
}

const ACL: &str = "RP4-acme-web_fw";

#[test]
#[allow(
    clippy::too_many_lines,
    reason = "the demo's steps read best as one sequence"
)]
fn demo_applies_enforces_counts_and_rolls_back_on_the_lab() {
    if skip_without(
        "demo_applies_enforces_counts_and_rolls_back_on_the_lab",
        &["rampartd", "rampartctl", "rampart-agent"],
    ) {
        return;
    }
    let t0 = Instant::now();
    let lab = Lab::new("demo", &reference_yaml()).ready_timeout(30);
    let up = lab.run(&["up"]);
    assert!(up.status.success(), "up: {}", text(&up));
    let t_up = t0.elapsed();
    let env_text = std::fs::read_to_string(lab.state_dir().join("lab.env")).unwrap();
    let ctl = Ctl::of(&lab);
    assert!(
        !env_text.contains("RAMPART_POLICY_HOST"),
        "managed agents have no policy file: {env_text}"
    );

    // Both agents enrolled by `up`, online, with the topology's labels and
    // the node's name as host name.
    let agents = ctl.json(&["agents"]);
    let list = agents.as_array().unwrap();
    assert_eq!(list.len(), 2, "{agents:#}");
    for (host, role) in [("host1", "web"), ("host2", "gateway")] {
        let a = list
            .iter()
            .find(|a| a["hostname"] == host)
            .unwrap_or_else(|| panic!("{host} enrolled: {agents:#}"));
        assert_eq!(a["state"], "online", "{a}");
        assert_eq!(a["labels"]["role"], role, "{a}");
    }
    let version0 = versions(&agents);

    ctl.ok(&["devices", "add", "-f", &ctl.var("RAMPART_INVENTORY")]);
    let controller = lab.ns("controller");
    let csr_creds = ctl.var("CSR1_PASSWORD");
    let running = || csr1_running(&controller, &csr_creds);
    let client = lab.ns("client");
    let host1: SocketAddr = "10.10.0.31:80".parse().unwrap();
    let host1_admin: SocketAddr = "10.10.0.31:8080".parse().unwrap();
    let web1: SocketAddr = "10.10.1.11:80".parse().unwrap();
    let web1_admin: SocketAddr = "10.10.1.11:8080".parse().unwrap();

    // Before: nothing configured, every port answers.
    assert!(!running().contains(ACL), "csr1 starts clean");
    assert_eq!(asa_acl(&lab), (vec![], vec![]), "asa1 starts clean");
    assert!(ftd_deployed(&lab).0.is_empty(), "ftd1 starts clean");
    assert_eq!(http_get(&client, host1_admin).unwrap(), "host1 8080\n");
    assert_eq!(http_get(&client, web1_admin).unwrap(), "web1 8080\n");

    // Dry-run: each device's change in its native form and both hosts'
    // policies; nothing changes anywhere.
    let spec = repo().join("examples/demo/firewall.yaml");
    let spec = spec.to_str().unwrap();
    let dry = ctl.ok(&["apply", "-f", spec, "--dry-run"]);
    for header in [
        "--- csr1 (iosxe, netconf-xml)",
        "--- asa1 (asa, cli)",
        "--- ftd1 (ftd, http)",
        "--- agent/host1-",
        "--- agent/host2-",
    ] {
        assert!(dry.contains(header), "dry-run shows {header:?}:\n{dry}");
    }
    assert!(dry.contains("<dst-eq>8080</dst-eq>"), "{dry}");
    assert!(!running().contains(ACL), "a dry-run changes nothing");
    assert_eq!(http_get(&client, host1_admin).unwrap(), "host1 8080\n");

    // Apply: one transaction for the devices; rampartd pushes the host
    // policy to the agents its selectors match.
    let applied = ctl.json(&["apply", "-f", spec]);
    let txn = applied["transactionId"].as_str().unwrap().to_owned();
    assert!(txn.starts_with("txn-"), "{applied:#}");
    let version1 = ctl.agents_converged(&version0, &["host1", "host2"]);

    for host in ["host1", "host2"] {
        let applied = applied_policy(&lab, host);
        assert_eq!(
            applied["policy"]["interfaces"][0]["interface"], "eth1",
            "{host} enforces the service on eth1: {applied:#}"
        );
    }

    // Traffic: tcp/80 served, tcp/8080 dropped, at host1 itself and at the
    // gateway host2 in front of the web backends.
    assert_eq!(http_get(&client, host1).unwrap(), "host1 80\n");
    assert_eq!(http_get(&client, web1).unwrap(), "web1 80\n");
    let refused = http_get(&client, host1_admin);
    assert!(refused.is_err(), "host1:8080 dropped, got {refused:?}");
    let refused = http_get(&client, web1_admin);
    assert!(
        refused.is_err(),
        "web1:8080 dropped at host2, got {refused:?}"
    );

    // Each agent counted its own hits on rules 10 and 30.
    for host in ["host1", "host2"] {
        let m = agent_metrics(&lab.ns(host));
        for rule in ["10", "30"] {
            let v = sample(
                &m,
                &format!(
                    "rampart_rule_packets_total{{direction=\"ingress\",interface=\"eth1\",rule=\"{rule}\",service=\"web-fw\",tenant=\"acme\"}}"
                ),
            );
            assert!(v.is_some_and(|v| v > 0.0), "{host} rule {rule} hits:\n{m}");
        }
        assert_eq!(
            sample(&m, "rampart_agent_controller_connected"),
            Some(1.0),
            "{host}:\n{m}"
        );
    }

    // The API aggregates them per rule, with both agents counted, in the
    // table and in the JSON document.
    let deadline = Instant::now() + Duration::from_secs(10);
    let svc = loop {
        let svc = ctl.json(&["get", "service", "web-fw", "--tenant", "acme"]);
        let (p10, a10) = hits(&svc, 10);
        let (p30, a30) = hits(&svc, 30);
        // host1 saw one SYN per port, host2 one per port: at least two each.
        if p10 >= 2 && p30 >= 2 && a10 == 2 && a30 == 2 {
            break svc;
        }
        assert!(
            Instant::now() < deadline,
            "hits per rule through the API: {svc:#}"
        );
        std::thread::sleep(Duration::from_millis(200));
    };
    assert_eq!(svc["spec"]["metadata"]["name"], "web-fw", "{svc:#}");
    assert_eq!(hits(&svc, 20).0, 0, "no DNS sent: {svc:#}");
    let table = ctl.ok(&["get", "service", "web-fw", "--tenant", "acme"]);
    assert!(table.contains("hits per rule (host agents):"), "{table}");

    // Prometheus: rampartd's metrics and its fleet metrics.
    let metrics: SocketAddr = ctl
        .var("RAMPART_METRICS_URL")
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let m = http_text("", metrics);
    assert_eq!(
        sample(
            &m,
            "rampart_transactions_total{operation=\"apply\",state=\"committed\"}"
        ),
        Some(1.0),
        "{m}"
    );
    let fleet: SocketAddr = ctl
        .var("RAMPART_FLEET_METRICS_URL")
        .trim_start_matches("http://")
        .trim_end_matches("/metrics")
        .parse()
        .unwrap();
    let f = http_text("", fleet);
    assert_eq!(
        sample(&f, "rampart_fleet_agents{state=\"online\"}"),
        Some(2.0),
        "{f}"
    );
    assert!(
        sample(
            &f,
            "rampart_fleet_rule_packets{sequence=\"30\",service=\"web-fw\",tenant=\"acme\"}"
        )
        .is_some_and(|v| v >= 2.0),
        "{f}"
    );

    // The devices hold the rendered ACL: csr1's running configuration (over
    // NETCONF), the ASA's and the Firepower's simulator state.
    let r1 = running();
    assert!(
        r1.contains(ACL)
            && r1.contains("<dst-eq>8080</dst-eq>")
            && r1.contains("<dst-eq>80</dst-eq>"),
        "csr1 running holds the ACL:\n{r1}"
    );
    let (asa_lines, asa_groups) = asa_acl(&lab);
    assert!(
        asa_lines
            .iter()
            .any(|l| l.contains("deny tcp any4 any4 eq 8080")),
        "asa1 running holds the ACL: {asa_lines:#?}"
    );
    assert!(
        asa_groups.iter().any(|g| g.contains("inside")),
        "asa1 binds it to inside: {asa_groups:?}"
    );
    let (ftd_rules, ftd_ports) = ftd_deployed(&lab);
    assert!(
        ftd_rules.len() >= 3 && ftd_ports.contains("8080"),
        "ftd1 deployed the rules: {ftd_rules:#?} ports {ftd_ports}"
    );
    let check = ctl.ok(&["check-sync"]);
    assert!(check.contains("csr1: in sync"), "{check}");

    // Rollback: every device and every host restored.
    ctl.ok(&["rollback", &txn]);
    let version2 = ctl.agents_converged(&version1, &["host1", "host2"]);
    let back = running();
    assert!(
        !back.contains(ACL),
        "rollback removed the ACL from csr1:\n{back}"
    );
    assert_eq!(asa_acl(&lab), (vec![], vec![]), "rollback restored asa1");
    let (ftd_back, _) = ftd_deployed(&lab);
    assert!(ftd_back.is_empty(), "rollback restored ftd1: {ftd_back:#?}");
    assert_eq!(http_get(&client, host1_admin).unwrap(), "host1 8080\n");
    assert_eq!(http_get(&client, web1_admin).unwrap(), "web1 8080\n");
    for host in ["host1", "host2"] {
        let applied = applied_policy(&lab, host);
        assert_eq!(
            applied["policy"]["interfaces"].as_array().map(Vec::len),
            Some(0),
            "{host} enforces nothing after the rollback: {applied:#}"
        );
    }

    // The load balancer: host2's agent (role=gateway) serves the VIP on eth1
    // and spreads the client's connections over app1 and app2 (DNAT to
    // their port 8080; replies come back through host2 with the VIP).
    let vip: SocketAddr = "10.10.2.100:80".parse().unwrap();
    assert!(http_get(&client, vip).is_err(), "no VIP before the service");
    let lb_spec = repo().join("examples/demo/loadbalancer.yaml");
    let lb_spec = lb_spec.to_str().unwrap();
    let lb_dry = ctl.ok(&["apply", "-f", lb_spec, "--dry-run"]);
    assert!(
        lb_dry.contains("--- agent/host2-") && lb_dry.contains("10.10.2.100"),
        "dry-run shows host2's virtual service:\n{lb_dry}"
    );
    let lb = ctl.json(&["apply", "-f", lb_spec]);
    let lb_txn = lb["transactionId"].as_str().unwrap().to_owned();
    let version3 = ctl.agents_converged(&version2, &["host2"]);
    let host2 = lab.ns("host2");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !agent_metrics(&host2)
        .lines()
        .filter(|l| l.starts_with("rampart_lb_backend_up{"))
        .filter(|l| l.ends_with(" 1"))
        .count()
        .eq(&2)
    {
        assert!(
            Instant::now() < deadline,
            "host2's health checks never marked both backends up:\n{}",
            agent_metrics(&host2)
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // Each connection has a fresh source port, so Maglev hashes it anew:
    // 12 connections all landing on one of two equal backends has a
    // probability of 2 x 2^-12 (0.05 %).
    let mut served: BTreeMap<String, u32> = BTreeMap::new();
    for _ in 0..12 {
        let body = http_get(&client, vip).unwrap_or_else(|e| panic!("VIP: {e}"));
        *served.entry(body.trim().to_owned()).or_default() += 1;
    }
    assert_eq!(
        served.keys().cloned().collect::<Vec<_>>(),
        ["app1 8080", "app2 8080"],
        "12 connections to the VIP spread over both backends: {served:?}"
    );
    let m = agent_metrics(&host2);
    for b in ["10.10.0.41:8080", "10.10.0.42:8080"] {
        let flows = sample(
            &m,
            &format!("rampart_lb_backend_new_flows_total{{backend=\"{b}\"}}"),
        );
        assert!(flows.is_some_and(|f| f >= 1.0), "{b} new flows:\n{m}");
    }
    ctl.ok(&["rollback", &lb_txn]);
    ctl.agents_converged(&version3, &["host2"]);
    assert!(
        http_get(&client, vip).is_err(),
        "the VIP is gone after rollback"
    );
    let t_demo = t0.elapsed();

    // down leaves nothing: namespaces, links, processes, pins, agent state.
    let down = lab.run(&["down"]);
    assert!(down.status.success(), "down: {}", text(&down));
    let left = lab.remains();
    assert!(left.is_empty(), "left behind after down: {left:#?}");
    eprintln!(
        "demo e2e: up {t_up:?}, demo steps done at {t_demo:?}, down done at {:?}",
        t0.elapsed()
    );
}
