//! The ASA driver against the ASA simulator (real OpenSSH, emulated CLI):
//! apply with object-groups, hitless update, read-back and drift, a refused
//! line reverted, a failed `write memory` reverted, the CLI session's banner,
//! pager and enable handling. Needs root (the simulator runs sshd).

mod support;

use std::{collections::BTreeMap, time::Duration};

use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::ServiceSpec,
    },
    transport::{
        netconf::HostKeyPolicy,
        ssh_cli::{CliConfig, CliSession},
    },
    txn::{Change, EngineConfig, EngineError},
};
use serde_json::{Value, json};
use support::{
    lab::{Harness, credentials, device},
    sims::{Sim, SimKind},
};

struct Lab {
    sim: Sim,
    h: Harness,
}

deref_harness!(Lab);

impl Lab {
    fn start(args: &[&str], enable_override: Option<&str>) -> Option<Lab> {
        let sim = Sim::start(SimKind::Asa, args)?;
        let (user, pass, enable) = sim.credentials.clone().unwrap();
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials(
            &dir,
            "asa",
            &format!("{user}:{pass}:{}", enable_override.unwrap_or(&enable)),
        );
        let d = device("asa1", Platform::Asa, sim.listen.clone(), &creds, &[]);
        let config = EngineConfig {
            known_hosts: dir.path().join("known_hosts"),
            trust_on_first_use: true,
            ..EngineConfig::default()
        };
        Some(Lab {
            sim,
            h: Harness::new(dir, vec![d], config),
        })
    }

    fn running(&self) -> Value {
        self.sim.state()["running"].clone()
    }

    fn cli(&self) -> CliConfig {
        let (user, pass, enable) = self.sim.credentials.clone().unwrap();
        CliConfig {
            host: "127.0.0.1".to_owned(),
            port: self.sim.port(),
            username: user,
            password: pass,
            enable_password: Some(enable),
            host_key: HostKeyPolicy {
                known_hosts: self.dir.path().join("known_hosts_cli"),
                trust_on_first_use: true,
            },
            connect_timeout: Duration::from_secs(10),
            command_timeout: Duration::from_secs(10),
        }
    }
}

fn firewall(port: u16, interface: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: web, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, sources: [10.1.0.0/16, 10.2.0.5/32], destinations: [192.0.2.10/32], destinationPorts: [{port}, 8080], description: web servers}}
    - {{sequence: 20, action: permit, protocol: udp, destinations: [192.0.2.53/32], destinationPorts: [53], log: true}}
  targets:
    devices:
      - {{device: asa1, interface: {interface}, direction: ingress}}
"
    )
}

fn rampart_acls(running: &Value) -> Vec<String> {
    running["access_lists"]
        .as_object()
        .unwrap()
        .keys()
        .filter(|k| k.starts_with("RPA-"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_update_drift_and_delete() {
    let Some(lab) = Lab::start(&[], None) else {
        return;
    };
    let planned = lab
        .engine
        .plan(
            Change {
                apply: vec![lab.spec(&firewall(443, "inside"))],
                delete: vec![],
            },
            "test",
        )
        .unwrap();
    let dry = &planned.dry_run_renderings()[0].content;
    assert!(
        dry.contains(" network-object 10.1.0.0 255.255.0.0\n"),
        "{dry}"
    );
    assert!(dry.contains(" port-object eq 443\n"), "{dry}");
    assert!(dry.contains("access-group RPA-acme-web-"), "{dry}");
    lab.engine.execute(planned).await.unwrap();

    let state = lab.sim.state();
    let running = &state["running"];
    let acls = rampart_acls(running);
    assert_eq!(acls.len(), 1, "{running}");
    let aces = running["access_lists"][&acls[0]].as_array().unwrap();
    assert_eq!(aces.len(), 4, "{aces:?}");
    assert_eq!(aces[0], "remark web servers");
    assert!(
        aces[1]
            .as_str()
            .unwrap()
            .starts_with("extended permit tcp object-group RPG-"),
        "{aces:?}"
    );
    assert_eq!(aces[3], "extended deny ip any4 any4");
    assert!(
        running["access_groups"]
            .as_array()
            .unwrap()
            .contains(&json!({"acl": acls[0], "dir": "in", "interface": "inside"}))
    );
    assert!(
        state["write_count"].as_u64().unwrap() >= 1,
        "no write memory"
    );
    assert_eq!(state["startup"]["access_lists"], running["access_lists"]);
    let report = lab.engine.check_sync(None).await.unwrap();
    assert!(report[0].differences.is_empty(), "{report:?}");

    // Update: a new ACL is bound, the old one and its unused group removed.
    lab.run(&[&firewall(8443, "inside")], &[]).await.unwrap();
    let running = lab.running();
    let now = rampart_acls(&running);
    assert_eq!(now.len(), 1);
    assert_ne!(now, acls, "content change must rename the ACL");
    let groups: Vec<&String> = running["object_groups"]
        .as_object()
        .unwrap()
        .keys()
        .collect();
    assert_eq!(
        groups.len(),
        2,
        "one network, one service group: {groups:?}"
    );
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Out of band: an operator adds a line to Rampart's ACL.
    let acl = now[0].clone();
    let cfg = lab.cli();
    let line = format!("access-list {acl} line 1 extended permit ip any4 any4");
    tokio::task::spawn_blocking(move || {
        let mut s = CliSession::connect(&cfg).unwrap();
        s.run("configure terminal").unwrap();
        s.run(&line).unwrap();
        s.run("end").unwrap();
    })
    .await
    .unwrap();
    let report = lab.engine.check_sync(None).await.unwrap();
    let d = &report[0].differences;
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].path.contains("extended permit ip any4 any4"), "{d:?}");
    // Repair: the ACL is rewritten exactly, binding included.
    lab.engine.sync_to_device("asa1").await.unwrap();
    let report = lab.engine.check_sync(None).await.unwrap();
    assert!(report[0].differences.is_empty(), "{report:?}");
    assert!(
        lab.running()["access_groups"]
            .as_array()
            .unwrap()
            .contains(&json!({"acl": acl, "dir": "in", "interface": "inside"}))
    );

    // Delete: nothing of Rampart's remains, the default config is intact.
    lab.run(&[], &["acme/web"]).await.unwrap();
    let running = lab.running();
    assert!(rampart_acls(&running).is_empty(), "{running}");
    assert!(
        running["object_groups"].as_object().unwrap().is_empty(),
        "{running}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refused_line_and_failed_write_are_reverted() {
    let Some(lab) = Lab::start(&[], None) else {
        return;
    };
    let before = lab.running();
    // The binding names an interface the ASA lacks: the ACL and groups typed
    // before it are removed again.
    let err = lab
        .run(&[&firewall(443, "nosuchif")], &[])
        .await
        .unwrap_err();
    let EngineError::Devices { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(failures[0].starts_with("asa1: configure"), "{failures:?}");
    assert!(
        failures[0].contains("access-group RPA-acme-web-") && failures[0].contains("ERROR"),
        "{failures:?}"
    );
    assert_eq!(lab.running(), before, "partial configuration left behind");

    // write memory fails: the change is taken out of the running configuration.
    lab.sim.fault(&json!({"write_fail": 1}));
    let err = lab.run(&[&firewall(443, "inside")], &[]).await.unwrap_err();
    assert!(err.to_string().contains("asa1: write memory"), "{err}");
    let running = lab.running();
    assert!(rampart_acls(&running).is_empty(), "{running}");
    assert!(lab.engine.store().services().unwrap().is_empty());

    // Without faults it goes through.
    lab.run(&[&firewall(443, "inside")], &[]).await.unwrap();
    assert_eq!(rampart_acls(&lab.running()).len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn banner_pager_and_enable_are_handled() {
    let banner = "*** Authorized access only> violators prosecuted #\nasa-fake> is not a prompt";
    let Some(lab) = Lab::start(&["--banner", banner], Some("wrong-enable")) else {
        return;
    };
    let cfg = lab.cli();
    let out = tokio::task::spawn_blocking(move || {
        let mut s = CliSession::connect(&cfg).unwrap();
        assert!(s.privileged(), "{}", s.prompt());
        let full = s.run("show running-config").unwrap();
        s.run("terminal pager 5").unwrap();
        let paged = s.run("show running-config").unwrap();
        let refused = s.run("show running-config access-list nosuch extra words");
        (full, paged, refused.is_err())
    })
    .await
    .unwrap();
    assert!(out.0.lines().count() > 10, "{}", out.0);
    assert_eq!(out.0, out.1, "pager pages were not followed");
    assert!(!out.1.contains("More"), "{}", out.1);
    assert!(out.2, "an invalid command must be refused");

    // The inventory's enable password is wrong: connect fails precisely.
    let err = lab
        .run(&[&firewall(443, "inside")], &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("asa1") && err.contains("enable password was refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_dropped_mid_commit_is_reported_and_state_kept() {
    let Some(mut lab) = Lab::start(&[], None) else {
        return;
    };
    lab.run(&[&firewall(443, "inside")], &[]).await.unwrap();
    let before = lab.running();
    let admin = std::sync::Arc::new(std::sync::Mutex::new(Some(lab.sim.admin.clone())));
    let a = admin.clone();
    lab.engine = lab.engine.clone().with_before_commit(move |_| {
        // The SSH channel closes on the next command (`configure terminal`).
        if let Some(addr) = a.lock().unwrap().take() {
            let body = r#"{"drop_next": 1}"#;
            let req = format!(
                "POST /_sim/faults HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            let mut s = std::net::TcpStream::connect(&addr).unwrap();
            std::io::Write::write_all(&mut s, req.as_bytes()).unwrap();
            let mut out = String::new();
            std::io::Read::read_to_string(&mut s, &mut out).unwrap();
            assert!(out.starts_with("HTTP/1.1 200") || out.starts_with("HTTP/1.0 200"), "{out}");
        }
    });
    let err = lab
        .run(&[&firewall(8443, "inside")], &[])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("asa1: configure") && msg.contains("closed the session"),
        "{msg}"
    );
    // The participant logged in again to check and restore: the device
    // still holds the previous version, and it reads back in sync.
    assert_eq!(lab.running(), before);
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_becomes_object_nat() {
    let Some(lab) = Lab::start(&[], None) else {
        return;
    };
    let lb = "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: web-lb, tenant: acme}
spec:
  virtualServices:
    - {name: https, address: 203.0.113.10, protocol: tcp, port: 443, backends: [{address: 192.168.10.5, port: 8443, weight: 1}]}
  targets:
    devices:
      - {device: asa1, interface: outside, direction: ingress}
";
    lab.run(&[lb], &[]).await.unwrap();
    let running = lab.running();
    let (name, obj) = running["objects"]
        .as_object()
        .unwrap()
        .iter()
        .find(|(k, _)| k.starts_with("RPO-acme-web_lb-"))
        .unwrap();
    assert!(name.ends_with("-https"), "{name}");
    assert_eq!(
        obj["nat"],
        "(inside,outside) static 203.0.113.10 service tcp 8443 443"
    );
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );
    lab.run(&[], &["acme/web-lb"]).await.unwrap();
    let running = lab.running();
    assert!(
        !running["objects"]
            .as_object()
            .unwrap()
            .keys()
            .any(|k| k.starts_with("RPO-")),
        "{running}"
    );
}

/// A vFirewall with a `nat` section on `asa1`: two static mappings (one a
/// port translation) and an overload of two prefixes.
fn nat_firewall(global: &str, overload_to: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: edge, tenant: acme}}
spec:
  defaultAction: permit
  rules:
    - {{sequence: 10, action: deny, protocol: tcp, destinations: [192.0.2.99/32], destinationPorts: [23]}}
  targets:
    devices:
      - {{device: asa1, interface: outside, direction: ingress}}
  nat:
    devices:
      - device: asa1
        insideInterfaces: [inside]
        outsideInterfaces: [outside, dmz]
        staticMappings:
          - {{insideLocal: 10.0.0.10, insideGlobal: {global}}}
          - {{insideLocal: 10.0.0.11, insideGlobal: 192.0.2.11, protocol: tcp, localPort: 8443, globalPort: 443}}
        overloads:
          - {{interface: {overload_to}, sources: [10.0.0.0/24, 10.0.5.7/32]}}
"
    )
}

fn render_inventory() -> BTreeMap<String, Device> {
    let d = Device {
        name: "asa1".to_owned(),
        platform: Platform::Asa,
        address: "127.0.0.1:22".to_owned(),
        credentials_ref: "env:X".to_owned(),
        labels: BTreeMap::new(),
        created_unix: 0,
    };
    BTreeMap::from([(d.name.clone(), d)])
}

fn render_spec(yaml: &str) -> ServiceSpec {
    let doc = SourceDoc {
        text: yaml,
        format: DocFormat::Yaml,
        name: "nat.yaml",
    };
    Validator::new()
        .unwrap()
        .validate(&doc, &render_inventory())
        .unwrap()
        .remove(0)
        .spec
}

#[test]
fn firewall_nat_renders_as_object_nat() {
    let spec = render_spec(&nat_firewall("192.0.2.10", "outside"));
    let r = rampart_controller::compile::compile(&spec, &render_inventory()).unwrap();
    let text = &r[0].content;
    // Static → host + static (port translation with `service`); overload →
    // subnet/host + interface PAT on the overload's interface; two outside
    // interfaces make the static mappings' mapped side `any`.
    assert!(
        text.contains(" host 10.0.0.10\n nat (inside,any) static 192.0.2.10\n"),
        "{text}"
    );
    assert!(
        text.contains(" nat (inside,any) static 192.0.2.11 service tcp 8443 443\n"),
        "{text}"
    );
    assert!(
        text.contains(" subnet 10.0.0.0 255.255.255.0\n nat (inside,outside) dynamic interface\n"),
        "{text}"
    );
    assert!(
        text.contains(" host 10.0.5.7\n nat (inside,outside) dynamic interface\n"),
        "{text}"
    );
    insta::assert_snapshot!("asa_firewall_nat", text);
}

#[test]
fn firewall_nat_refusals_name_the_field() {
    let inv = render_inventory();
    let err = |yaml: &str| {
        rampart_controller::compile::compile(&render_spec(yaml), &inv)
            .unwrap_err()
            .to_string()
    };
    let e = err(&nat_firewall("192.0.2.10", "outside").replace("[inside]", "[Gi0/1]"));
    assert!(
        e.contains("spec.nat.devices[0].insideInterfaces[0]") && e.contains("nameif"),
        "{e}"
    );
    let e = err(&nat_firewall("192.0.2.11", "outside"));
    assert!(
        e.contains("spec.nat.devices[0].staticMappings[1]") && e.contains("two static NAT"),
        "{e}"
    );
}

fn rampart_nat_objects(running: &Value) -> BTreeMap<String, Value> {
    running["objects"]
        .as_object()
        .unwrap()
        .iter()
        .filter(|(k, _)| k.starts_with("RPN-acme-edge-"))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_nat_apply_drift_repair_and_delete() {
    let Some(lab) = Lab::start(&[], None) else {
        return;
    };
    lab.run(&[&nat_firewall("192.0.2.10", "outside")], &[])
        .await
        .unwrap();
    let objs = rampart_nat_objects(&lab.running());
    let summary: Vec<(Value, Value)> = objs
        .values()
        .map(|o| (o["lines"][0].clone(), o["nat"].clone()))
        .collect();
    assert_eq!(
        summary,
        vec![
            (
                json!("host 10.0.0.10"),
                json!("(inside,any) static 192.0.2.10")
            ),
            (
                json!("host 10.0.0.11"),
                json!("(inside,any) static 192.0.2.11 service tcp 8443 443")
            ),
            (
                json!("subnet 10.0.0.0 255.255.255.0"),
                json!("(inside,outside) dynamic interface")
            ),
            (
                json!("host 10.0.5.7"),
                json!("(inside,outside) dynamic interface")
            ),
        ],
        "{objs:?}"
    );
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Update: only the changed mapping's object is rewritten.
    lab.run(&[&nat_firewall("192.0.2.20", "outside")], &[])
        .await
        .unwrap();
    let now = rampart_nat_objects(&lab.running());
    assert_eq!(now.len(), 4);
    let first = now.values().next().unwrap();
    assert_eq!(first["nat"], "(inside,any) static 192.0.2.20");
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Out of band: an operator removes the interface PAT of one object.
    let (name, _) = now
        .iter()
        .find(|(_, o)| o["lines"][0] == "subnet 10.0.0.0 255.255.255.0")
        .unwrap();
    let cfg = lab.cli();
    let obj = format!("object network {name}");
    tokio::task::spawn_blocking(move || {
        let mut s = CliSession::connect(&cfg).unwrap();
        s.run("configure terminal").unwrap();
        s.run(&obj).unwrap();
        s.run("no nat (inside,outside) dynamic interface").unwrap();
        s.run("end").unwrap();
    })
    .await
    .unwrap();
    let report = lab.engine.check_sync(None).await.unwrap();
    let d = &report[0].differences;
    assert!(
        d.iter().any(|x| x.path
            == format!("object network {name}: nat (inside,outside) dynamic interface")
            && x.what == "missing on the device"),
        "{d:?}"
    );
    lab.engine.sync_to_device("asa1").await.unwrap();
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );
    assert_eq!(
        lab.running()["objects"][name]["nat"],
        "(inside,outside) dynamic interface"
    );

    // Delete: no NAT object of the service remains, saved too.
    lab.run(&[], &["acme/edge"]).await.unwrap();
    let state = lab.sim.state();
    assert!(rampart_nat_objects(&state["running"]).is_empty(), "{state}");
    assert!(rampart_nat_objects(&state["startup"]).is_empty(), "{state}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_nat_refused_by_the_device_is_reverted() {
    let Some(lab) = Lab::start(&[], None) else {
        return;
    };
    let before = lab.running();
    // `wan9` is a valid name but no nameif of this ASA: the device refuses
    // the NAT line; the ACL, binding and objects typed before it go again.
    let yaml = nat_firewall("192.0.2.10", "outside").replace("[outside, dmz]", "[outside, wan9]");
    let yaml = yaml.replace("interface: outside, sources", "interface: wan9, sources");
    let err = lab.run(&[&yaml], &[]).await.unwrap_err().to_string();
    assert!(
        err.contains("asa1: configure") && err.contains("'wan9' is not a valid interface name"),
        "{err}"
    );
    assert_eq!(lab.running(), before, "partial configuration left behind");
    assert!(lab.engine.store().services().unwrap().is_empty());
}
