//! The FTD driver against the FDM simulator: staged edits then deploy,
//! shared objects kept while any service uses them, a failed deploy
//! reported per rule and leaving nothing staged, token expiry in the middle
//! of a transaction, static NAT, drift.

mod support;

use std::collections::BTreeMap;

use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
    },
    txn::{Change, EngineConfig, EngineError},
};
use serde_json::{Value, json};
use support::{
    lab::{Harness, credentials, device},
    sims::{Sim, SimKind},
};

struct Lab {
    sim: std::sync::Arc<Sim>,
    h: Harness,
}

deref_harness!(Lab);

impl Lab {
    fn start(sim_args: &[&str]) -> Lab {
        let sim = std::sync::Arc::new(Sim::start(SimKind::Fdm, sim_args).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials(&dir, "fdm", "admin:Admin123");
        let d = device("ftd1", Platform::Ftd, sim.base_url(), &creds, &[]);
        let config = EngineConfig {
            ca_bundle: sim.cert.clone(),
            ..EngineConfig::default()
        };
        Lab {
            sim,
            h: Harness::new(dir, vec![d], config),
        }
    }

    fn deployed(&self) -> Value {
        self.sim.state()["deployed"].clone()
    }

    fn staged(&self) -> Value {
        self.sim.state()["staged"].clone()
    }
}

fn rules(cfg: &Value) -> Vec<Value> {
    cfg["accessrules"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_array()
        .unwrap()
        .clone()
}

fn names(list: &[Value]) -> Vec<String> {
    list.iter()
        .map(|r| r["name"].as_str().unwrap().to_owned())
        .collect()
}

fn firewall(name: &str, dest: &str, port: u16) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, sources: [10.1.0.0/16], destinations: [{dest}], destinationPorts: [{port}], log: true}}
    - {{sequence: 20, action: deny, protocol: any, destinations: [198.51.100.0/24]}}
  targets:
    devices:
      - {{device: ftd1, interface: inside_zone, direction: ingress}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn staged_then_deployed_shared_objects_and_drift() {
    let lab = Lab::start(&["--deploy-queued-ms", "20", "--deploy-ms", "50"]);
    // Dry-run: FDM calls with names for ids.
    let planned = lab
        .engine
        .plan(
            Change {
                apply: vec![lab.spec(&firewall("web", "192.0.2.10/32", 443))],
                delete: vec![],
            },
            "test",
        )
        .unwrap();
    let edit = &planned.dry_run_renderings()[0].content;
    assert!(edit.contains("POST /object/networks\n{"), "{edit}");
    assert!(
        edit.contains("POST /policy/accesspolicies/{policy}/accessrules?at=0"),
        "{edit}"
    );
    lab.engine.execute(planned).await.unwrap();

    let deployed = lab.deployed();
    let r = rules(&deployed);
    let n = names(&r);
    assert_eq!(n.len(), 3, "{n:?}");
    assert!(
        n[0].starts_with("RPF-acme-web-") && n[0].ends_with("-10"),
        "{n:?}"
    );
    assert!(n[2].ends_with("-default"), "{n:?}");
    assert_eq!(r[0]["ruleAction"], "PERMIT");
    assert_eq!(r[0]["eventLogAction"], "LOG_FLOW_END");
    assert_eq!(r[0]["sourceZones"][0]["name"], "inside_zone");
    assert_eq!(r[0]["destinationPorts"][0]["name"], "RPP-tcp-443");
    assert_eq!(r[2]["ruleAction"], "DENY");
    let nets = names(deployed["networks"].as_array().unwrap());
    assert!(nets.contains(&"RPN-192.0.2.10".to_owned()), "{nets:?}");
    assert!(nets.contains(&"RPN-10.1.0.0_16".to_owned()), "{nets:?}");
    assert_eq!(lab.deployed(), lab.staged(), "changes left pending");
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // A second service shares 10.1.0.0/16 and 192.0.2.10.
    lab.run(&[&firewall("api", "192.0.2.10/32", 8443)], &[])
        .await
        .unwrap();
    assert_eq!(rules(&lab.deployed()).len(), 6);
    // Deleting the first keeps the shared objects, removes its own port object.
    lab.run(&[], &["acme/web"]).await.unwrap();
    let deployed = lab.deployed();
    let nets = names(deployed["networks"].as_array().unwrap());
    assert!(nets.contains(&"RPN-10.1.0.0_16".to_owned()), "{nets:?}");
    let ports = names(deployed["tcpports"].as_array().unwrap());
    assert_eq!(ports, vec!["RPP-tcp-8443"], "{ports:?}");
    assert!(
        names(&rules(&deployed))
            .iter()
            .all(|n| n.starts_with("RPF-acme-api-"))
    );
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Out of band: someone flips a rule to DENY (staged only, then deploys).
    let target = rules(&lab.staged())[0]["name"].as_str().unwrap().to_owned();
    flip_rule_by_hand(&lab, &target).await;
    let report = lab.engine.check_sync(None).await.unwrap();
    let d = &report[0].differences;
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].path.ends_with("/rules[0]/action"), "{d:?}");
    lab.engine.sync_to_device("ftd1").await.unwrap();
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );
    assert_eq!(rules(&lab.deployed())[0]["ruleAction"], "PERMIT");

    // The last service goes: nothing of Rampart's is left.
    lab.run(&[], &["acme/api"]).await.unwrap();
    let deployed = lab.deployed();
    assert!(rules(&deployed).is_empty());
    assert_eq!(
        names(deployed["networks"].as_array().unwrap()),
        vec!["any-ipv4"]
    );
    assert!(deployed["tcpports"].as_array().unwrap().is_empty());
}

/// Changes a rule's action through the API as an operator would.
async fn flip_rule_by_hand(lab: &Lab, name: &str) {
    let http = rampart_controller::transport::http::client(
        lab.sim.cert.as_deref(),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let base = format!("{}/api/fdm/v6", lab.sim.base_url());
    let tok: Value = http
        .post(format!("{base}/fdm/token"))
        .json(&json!({"grant_type": "password", "username": "admin", "password": "Admin123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", tok["access_token"].as_str().unwrap());
    let policies: Value = http
        .get(format!("{base}/policy/accesspolicies"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let pid = policies["items"][0]["id"].as_str().unwrap().to_owned();
    let list: Value = http
        .get(format!(
            "{base}/policy/accesspolicies/{pid}/accessrules?filter=name:{name}"
        ))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let mut rule = list["items"][0].clone();
    rule["ruleAction"] = json!("DENY");
    let id = rule["id"].as_str().unwrap().to_owned();
    let r = http
        .put(format!(
            "{base}/policy/accesspolicies/{pid}/accessrules/{id}"
        ))
        .header("Authorization", &bearer)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    let job: Value = http
        .post(format!("{base}/operational/deploy"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jid = job["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        let j: Value = http
            .get(format!("{base}/operational/deploy/{jid}"))
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        if j["state"] == "DEPLOYED" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    panic!("manual deploy did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_deploy_is_reported_per_rule_and_unstaged() {
    let lab = Lab::start(&["--deploy-queued-ms", "20", "--deploy-ms", "50"]);
    let before = lab.deployed();
    lab.sim.fault(&json!({"deploy_fail": 1}));
    let err = lab
        .run(&[&firewall("web", "192.0.2.10/32", 443)], &[])
        .await
        .unwrap_err();
    let EngineError::Devices { failures, .. } = &err else {
        panic!("{err}")
    };
    let f = &failures[0];
    assert!(f.starts_with("ftd1: deploy: deployment"), "{f}");
    assert!(
        f.contains("Access rule 'RPF-acme-web-") && f.contains("failed to deploy"),
        "{f}"
    );
    // Deployed unchanged; the staged edits were reverted (nothing pending of ours).
    assert_eq!(lab.deployed(), before);
    let staged = lab.staged();
    assert!(rules(&staged).is_empty(), "{staged}");
    assert!(
        !names(staged["networks"].as_array().unwrap())
            .iter()
            .any(|n| n.starts_with("RPN-")),
        "{staged}"
    );
    assert!(lab.engine.store().services().unwrap().is_empty());

    // A validation error at prepare names the field; nothing staged either.
    let bad = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: zone, tenant: acme}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, destinationPorts: [22]}
  targets:
    devices:
      - {device: ftd1, interface: no_such_zone, direction: ingress}
";
    let err = lab.run(&[bad], &[]).await.unwrap_err().to_string();
    assert!(
        err.contains("securityzone \"no_such_zone\" does not exist"),
        "{err}"
    );
    assert!(rules(&lab.staged()).is_empty());
    let ports = names(lab.staged()["tcpports"].as_array().unwrap());
    assert!(ports.is_empty(), "{ports:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_expiring_mid_transaction_is_renewed() {
    let lab = Lab::start(&["--deploy-queued-ms", "20", "--deploy-ms", "50"]);
    let mut lab = lab;
    let sim = lab.sim.clone();
    lab.engine = lab.engine.clone().with_before_commit(move |_| {
        // Every access token dies between prepare and deploy.
        sim.fault(&json!({"expire_tokens": true}));
    });
    lab.run(&[&firewall("web", "192.0.2.10/32", 443)], &[])
        .await
        .unwrap();
    assert_eq!(rules(&lab.deployed()).len(), 3);
    let log = lab.sim.requests();
    let token_calls = log
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/fdm/token")
        })
        .count();
    assert_eq!(token_calls, 2, "login, then one refresh");
    let denied = log.iter().filter(|r| r["status"] == 401).count();
    assert_eq!(denied, 1, "exactly one call saw the expired token");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn load_balancer_becomes_static_nat() {
    let lab = Lab::start(&["--deploy-queued-ms", "20", "--deploy-ms", "50"]);
    let lb = "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: web-lb, tenant: acme}
spec:
  virtualServices:
    - {name: https, address: 203.0.113.10, protocol: tcp, port: 443, backends: [{address: 192.168.10.5, weight: 1}]}
  targets:
    devices:
      - {device: ftd1, interface: outside_zone, direction: ingress}
";
    lab.run(&[lb], &[]).await.unwrap();
    let nat = lab.deployed()["objectnatrules"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()[0]
        .clone();
    assert_eq!(nat["natType"], "STATIC");
    assert_eq!(nat["originalNetwork"]["name"], "RPN-192.168.10.5");
    assert_eq!(nat["translatedNetwork"]["name"], "RPN-203.0.113.10");
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );
    // Two backends cannot be one static NAT: refused at plan time, by field.
    let two = lb.replace(
        "backends: [{address: 192.168.10.5, weight: 1}]",
        "backends: [{address: 192.168.10.5, weight: 1}, {address: 192.168.10.6, weight: 1}]",
    );
    let err = lab.run(&[&two], &[]).await.unwrap_err().to_string();
    assert!(err.contains("spec.virtualServices[0].backends"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_respected_and_retry_after_honoured() {
    use rampart_controller::platforms::{driver::Adapter, ftd::FtdPlatform};
    let mut lab = Lab::start(&["--deploy-queued-ms", "20", "--deploy-ms", "50"]);
    // The device allows 8 requests/s; the driver is configured for it.
    lab.sim
        .fault(&json!({"rate_limit": {"rps": 8, "retry_after": 1}}));
    let settings = rampart_controller::platforms::rest::RestSettings {
        ca_bundle: lab.sim.cert.clone(),
        rps: 8.0,
        burst: 4.0,
        ..FtdPlatform::default_settings()
    };
    lab.engine = lab.engine.clone().with_driver(
        Platform::Ftd,
        std::sync::Arc::new(Adapter(FtdPlatform::new(settings))),
    );
    lab.run(&[&firewall("web", "192.0.2.10/32", 443)], &[])
        .await
        .unwrap();
    let log = lab.sim.requests();
    assert!(log.len() > 20, "{} requests", log.len());
    let limited = log.iter().filter(|r| r["status"] == 429).count();
    assert_eq!(limited, 0, "requests over the device's limit");

    // An injected 429 with Retry-After: 1 is waited out, then retried.
    lab.sim
        .fault(&json!({"clear": true, "fail_next": 1, "status": 429, "retry_after": 1}));
    lab.run(&[], &["acme/web"]).await.unwrap();
    let log = lab.sim.requests();
    let i = log.iter().position(|r| r["status"] == 429).unwrap();
    let gap = log[i + 1]["t"].as_f64().unwrap() - log[i]["t"].as_f64().unwrap();
    assert!(gap >= 0.95, "retried after {gap} s");
    assert_eq!(log[i + 1]["path"], log[i]["path"]);
    assert!(rules(&lab.deployed()).is_empty());
}

/// A vFirewall with a `nat` section on `ftd1`.
fn nat_firewall(global: &str) -> String {
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
      - {{device: ftd1, interface: inside_zone, direction: ingress}}
  nat:
    devices:
      - device: ftd1
        insideInterfaces: [inside]
        outsideInterfaces: [outside]
        staticMappings:
          - {{insideLocal: 10.0.1.20, insideGlobal: {global}}}
          - {{insideLocal: 10.0.1.21, insideGlobal: 198.51.100.2, protocol: tcp, localPort: 22, globalPort: 2222}}
        overloads:
          - {{interface: outside, sources: [10.0.1.0/24, 10.0.2.0/24]}}
"
    )
}

fn compile_nat(yaml: &str) -> Result<String, String> {
    let doc = SourceDoc {
        text: yaml,
        format: DocFormat::Yaml,
        name: "nat.yaml",
    };
    let d = Device {
        name: "ftd1".to_owned(),
        platform: Platform::Ftd,
        address: "https://127.0.0.1:1".to_owned(),
        credentials_ref: "env:X".to_owned(),
        labels: BTreeMap::new(),
        created_unix: 0,
    };
    let inv = BTreeMap::from([(d.name.clone(), d)]);
    let spec = Validator::new()
        .unwrap()
        .validate(&doc, &inv)
        .unwrap()
        .remove(0)
        .spec;
    rampart_controller::compile::compile(&spec, &inv)
        .map(|r| r[0].content.clone())
        .map_err(|e| e.to_string())
}

#[test]
fn firewall_nat_renders_as_object_nat_rules() {
    let text = compile_nat(&nat_firewall("198.51.100.20")).unwrap();
    assert!(text.contains("\"natType\":\"DYNAMIC\""), "{text}");
    assert!(
        text.contains("\"interfaceInTranslatedNetwork\":true"),
        "{text}"
    );
    assert!(
        text.contains("\"originalPort\":{\"name\":\"RPP-tcp-22\",\"type\":\"tcpportobject\"}"),
        "{text}"
    );
    insta::assert_snapshot!("ftd_firewall_nat", text);
    let e = compile_nat(&nat_firewall("198.51.100.2")).unwrap_err();
    assert!(
        e.contains("spec.nat.devices[0].staticMappings[1]") && e.contains("two static NAT"),
        "{e}"
    );
}

/// Changes the NAT rule `name` by hand through the FDM API and deploys.
async fn edit_nat_by_hand(lab: &Lab, name: &str, change: impl Fn(&mut Value)) {
    let http = rampart_controller::transport::http::client(
        lab.sim.cert.as_deref(),
        std::time::Duration::from_secs(10),
    )
    .unwrap();
    let base = format!("{}/api/fdm/v6", lab.sim.base_url());
    let tok: Value = http
        .post(format!("{base}/fdm/token"))
        .json(&json!({"grant_type": "password", "username": "admin", "password": "Admin123"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("Bearer {}", tok["access_token"].as_str().unwrap());
    let get = |url: String| {
        let (http, bearer) = (http.clone(), bearer.clone());
        async move {
            http.get(url)
                .header("Authorization", bearer)
                .send()
                .await
                .unwrap()
                .json::<Value>()
                .await
                .unwrap()
        }
    };
    let pid = get(format!("{base}/policy/objectnatpolicies")).await["items"][0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let coll = format!("{base}/policy/objectnatpolicies/{pid}/objectnatrules");
    let mut rule = get(format!("{coll}?filter=name:{name}")).await["items"][0].clone();
    change(&mut rule);
    let id = rule["id"].as_str().unwrap().to_owned();
    let r = http
        .put(format!("{coll}/{id}"))
        .header("Authorization", &bearer)
        .json(&rule)
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success(), "{:?}", r.text().await);
    let job: Value = http
        .post(format!("{base}/operational/deploy"))
        .header("Authorization", &bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let jid = job["id"].as_str().unwrap().to_owned();
    for _ in 0..100 {
        if get(format!("{base}/operational/deploy/{jid}")).await["state"] == "DEPLOYED" {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(30)).await;
    }
    panic!("manual deploy did not finish");
}

fn nat_rules(cfg: &Value) -> Vec<Value> {
    cfg["objectnatrules"]
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["name"].as_str().unwrap().starts_with("RPFN-acme-edge-"))
        .cloned()
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_nat_staged_deployed_drift_repair_and_delete() {
    let lab = Lab::start(&["--deploy-queued-ms", "20", "--deploy-ms", "50"]);
    lab.run(&[&nat_firewall("198.51.100.20")], &[])
        .await
        .unwrap();
    let nat = nat_rules(&lab.deployed());
    assert_eq!(nat.len(), 4, "{nat:?}");
    let by_type: Vec<(&str, &str, &str)> = nat
        .iter()
        .map(|r| {
            (
                r["natType"].as_str().unwrap(),
                r["translatedNetwork"]["name"].as_str().unwrap_or("-"),
                r["destinationInterface"]["name"].as_str().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        by_type,
        vec![
            ("STATIC", "RPN-198.51.100.20", "outside"),
            ("STATIC", "RPN-198.51.100.2", "outside"),
            ("DYNAMIC", "-", "outside"),
            ("DYNAMIC", "-", "outside"),
        ]
    );
    assert_eq!(nat[1]["originalPort"]["name"], "RPP-tcp-22");
    assert_eq!(nat[1]["translatedPort"]["name"], "RPP-tcp-2222");
    assert_eq!(nat[2]["interfaceInTranslatedNetwork"], true);
    assert_eq!(nat[0]["sourceInterface"]["name"], "inside");
    let orig: Vec<&str> = nat
        .iter()
        .map(|r| r["originalNetwork"]["name"].as_str().unwrap())
        .collect();
    assert!(
        orig.iter().all(|o| o.starts_with("RPN-acme-edge-")),
        "one original object per rule: {orig:?}"
    );
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Out of band: the PAT rule loses its interface; drift sees it, repair restores it.
    let pat = nat[2]["name"].as_str().unwrap().to_owned();
    edit_nat_by_hand(&lab, &pat, |r| {
        r["interfaceInTranslatedNetwork"] = json!(false);
        r["translatedNetwork"] = r["originalNetwork"].clone();
    })
    .await;
    let report = lab.engine.check_sync(None).await.unwrap();
    let d = &report[0].differences;
    assert!(d.iter().any(|x| x.path.starts_with("/nat[2]")), "{d:?}");
    lab.engine.sync_to_device("ftd1").await.unwrap();
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );
    assert_eq!(nat_rules(&lab.deployed())[2]["natType"], "DYNAMIC");

    // Update: the changed mapping's rule points at a new object; the old
    // public object is removed.
    lab.run(&[&nat_firewall("198.51.100.21")], &[])
        .await
        .unwrap();
    let deployed = lab.deployed();
    assert_eq!(
        nat_rules(&deployed)[0]["translatedNetwork"]["name"],
        "RPN-198.51.100.21"
    );
    let nets = names(deployed["networks"].as_array().unwrap());
    assert!(!nets.contains(&"RPN-198.51.100.20".to_owned()), "{nets:?}");

    // Delete: nothing of the service remains, deployed or staged.
    lab.run(&[], &["acme/edge"]).await.unwrap();
    for cfg in [lab.deployed(), lab.staged()] {
        assert!(nat_rules(&cfg).is_empty(), "{cfg}");
        let nets = names(cfg["networks"].as_array().unwrap());
        assert!(
            !nets.iter().any(|n| n.starts_with("RPN-acme-edge-")),
            "{nets:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_publishing_one_address_conflict_by_name() {
    let lab = Lab::start(&["--deploy-queued-ms", "20", "--deploy-ms", "50"]);
    let first = nat_firewall("198.51.100.20");
    lab.run(&[&first], &[]).await.unwrap();
    let second = first
        .replace("name: edge", "name: edge2")
        .replace("globalPort: 2222", "globalPort: 2223");
    let err = lab.run(&[&second], &[]).await.unwrap_err().to_string();
    assert!(
        err.contains("static NAT publishing RPN-198.51.100.20") && err.contains("acme/edge2"),
        "{err}"
    );
    assert_eq!(nat_rules(&lab.staged()).len(), 4, "nothing staged");
}
