//! One transaction spanning IOS-XE (a real netconfd over SSH), Meraki MX
//! (the Dashboard simulator) and a host agent (the real managed-mode
//! client over mutual TLS), all driven through rampartd's gRPC API: a
//! fault on Meraki's commit leaves the router, the dashboard and the host
//! as they were; without the fault all three carry the service.

#[path = "../../controller/tests/fleet_common/mod.rs"]
mod fleet_common;
mod managed_common;
#[path = "../../controller/tests/support/mod.rs"]
mod support;

use fleet_common::{eventually, start_with};
use managed_common::Agent;
use rampart_controller::transport::netconf::{Datastore, Filter, Session};
use rampart_proto::v1 as pb;
use serde_json::json;
use support::{
    netconfd::{Netconfd, PASSWORD, USER},
    sims::{Sim, SimKind},
};

const NET1: &str = "L_6468999999000001";

fn firewall(port: u16) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: web, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, destinations: [192.0.2.10/32], destinationPorts: [{port}]}}
  targets:
    devices:
      - {{device: csr1, interface: GigabitEthernet2, direction: ingress}}
      - {{device: mx1, interface: wan1, direction: egress}}
    hosts:
      - selector: {{role: web}}
        interfaces: [lo]
"
    )
}

fn csr_running(csr: &Netconfd) -> String {
    let filter = "<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"/>";
    Session::connect(&csr.password_config())
        .unwrap()
        .get_config(Datastore::Running, Some(Filter::Subtree(filter.to_owned())))
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_meraki_fault_rolls_back_iosxe_and_the_host_agent() {
    let Some(csr) = Netconfd::start() else {
        return;
    };
    let Some(meraki) = Sim::start(SimKind::Meraki, &[]) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = csr.known_hosts();
    let ca = meraki.cert.clone().expect("meraki simulator certificate");
    let d = start_with(&dir.path().join("data"), None, |c| {
        c.southbound.known_hosts = Some(known_hosts);
        c.southbound.ca_bundle = Some(ca);
        c.southbound.drift_interval_s = 0;
    })
    .await;
    d.add_device(
        pb::Device {
            name: "csr1".into(),
            platform: pb::Platform::Iosxe as i32,
            address: format!("127.0.0.1:{}", csr.port),
            ..Default::default()
        },
        pb::DeviceCredentials {
            username: USER.into(),
            password: PASSWORD.into(),
            ..Default::default()
        },
    )
    .await;
    d.add_device(
        pb::Device {
            name: "mx1".into(),
            platform: pb::Platform::MerakiMx as i32,
            address: meraki.base_url(),
            labels: [("rampart.io/meraki-network".to_owned(), NET1.to_owned())].into(),
            ..Default::default()
        },
        pb::DeviceCredentials {
            api_key: "rampart-sim-key".into(),
            ..Default::default()
        },
    )
    .await;

    let agent = Agent::spawn(
        &d,
        &dir.path().join("agent"),
        Some(d.enroll_token(&[("role", "web")]).await),
        "host-a",
        &["lo"],
    );
    eventually("agent online and converged", || async {
        let l = d.agents().await;
        l.len() == 1 && l[0].state == "online" && l[0].applied_version == l[0].desired_version
    })
    .await;
    let id = d.agents().await[0].agent_id.clone();
    let csr_before = csr_running(&csr);
    let base = agent.applies();

    // Meraki refuses its commit: IOS-XE cancels, the agent is restored.
    meraki.fault(
        &json!({"fail_next": 1, "status": 400, "message": "injected refusal",
        "method": "PUT", "path": "l3FirewallRules"}),
    );
    let err = d
        .apply_doc(&firewall(443), false)
        .await
        .expect_err("meraki refuses");
    assert!(
        err.message().contains("mx1") && err.message().contains("injected refusal"),
        "{}",
        err.message()
    );
    assert_eq!(csr_running(&csr), csr_before, "csr1 changed");
    assert_eq!(
        meraki.state()["networks"][NET1]["l3"]["rules"],
        json!([]),
        "mx1 changed"
    );
    assert!(
        agent.ports().is_empty(),
        "host kept the failed change: {:?}",
        agent.ports()
    );
    let l = d.agents().await;
    assert_eq!(l[0].applied_version, l[0].desired_version, "{:?}", l[0]);
    // The agent either never switched, or switched and was pushed back.
    let after = agent.applies() - base;
    assert!(after == 0 || after == 2, "{after} applies");

    // No fault: one transaction carries all three.
    let res = d.apply_doc(&firewall(443), false).await.unwrap();
    assert!(!res.transaction_id.is_empty());
    assert!(csr_running(&csr).contains("RP4-acme-web-"));
    assert_eq!(
        meraki.state()["networks"][NET1]["l3"]["rules"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    assert_eq!(agent.ports(), vec![443]);
    let l = d.agents().await;
    assert_eq!(l[0].agent_id, id);
    assert_eq!(l[0].applied_version, l[0].desired_version);

    agent.stop().await.unwrap();
    d.stop().await;
}
