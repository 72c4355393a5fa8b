//! The Meraki MX driver against the Dashboard API simulator: apply, read
//! back, drift and repair, delete (foreign rules kept), atomic action
//! batches, discovery with `Link` pagination, the shared per-organization
//! rate limit and `Retry-After`.

mod support;

use std::{
    collections::BTreeMap,
    sync::Arc,
    time::{Duration, Instant},
};

use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
    },
    platforms::{driver::Adapter, meraki::MerakiPlatform, rest::RestSettings},
    transport::http::{self, Body, RestClient, RetryPolicy, shared_limiter},
    txn::{Change, EngineConfig, EngineError},
};
use serde_json::{Value, json};
use support::{
    lab::{Harness, credentials, device},
    sims::{Sim, SimKind},
};

const KEY: &str = "rampart-sim-key";
const NET1: &str = "L_6468999999000001";
const NET2: &str = "L_6468999999000002";

struct Lab {
    sim: Sim,
    h: Harness,
}

deref_harness!(Lab);

impl Lab {
    fn start(
        sim_args: &[&str],
        devices: &[(&str, &[(&str, &str)])],
        settings: Option<RestSettings>,
    ) -> Lab {
        let sim = Sim::start(SimKind::Meraki, sim_args).unwrap();
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials(&dir, "meraki.key", &format!("apikey:{KEY}"));
        let devices = devices
            .iter()
            .map(|(name, labels)| device(name, Platform::MerakiMx, sim.base_url(), &creds, labels))
            .collect();
        let config = EngineConfig {
            ca_bundle: sim.cert.clone(),
            ..EngineConfig::default()
        };
        let mut h = Harness::new(dir, devices, config);
        if let Some(mut s) = settings {
            s.ca_bundle.clone_from(&sim.cert);
            h.engine = h.engine.clone().with_driver(
                Platform::MerakiMx,
                Arc::new(Adapter(MerakiPlatform::new(s))),
            );
        }
        Lab { sim, h }
    }

    async fn apply(&self, yamls: &[&str]) -> Result<(), EngineError> {
        self.run(yamls, &[]).await
    }

    fn net(&self, id: &str) -> Value {
        self.sim.state()["networks"][id].clone()
    }

    fn client(&self) -> RestClient {
        let http = http::client(self.sim.cert.as_deref(), Duration::from_secs(10)).unwrap();
        RestClient::new(
            http,
            &format!("{}/api/v1", self.sim.base_url()),
            RetryPolicy::default(),
        )
    }
}

fn firewall(name: &str, device: &str, direction: &str, port: u16) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, sources: [10.1.0.0/16, 10.2.0.0/16], destinations: [192.0.2.10/32], destinationPorts: [{port}]}}
    - {{sequence: 20, action: deny, protocol: udp, destinations: [192.0.2.0/24], destinationPorts: ['1000-2000'], log: true}}
  targets:
    devices:
      - {{device: {device}, interface: wan1, direction: {direction}}}
"
    )
}

fn web_lb(device: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {{name: web-lb, tenant: acme}}
spec:
  virtualServices:
    - name: https
      address: 203.0.113.10
      protocol: tcp
      port: 443
      backends:
        - {{address: 192.168.10.5, port: 8443, weight: 1}}
  targets:
    devices:
      - {{device: {device}, interface: wan1, direction: ingress}}
"
    )
}

fn comments(rules: &Value) -> Vec<String> {
    rules
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["comment"].as_str().unwrap().to_owned())
        .collect()
}

async fn put_rules(client: &RestClient, net: &str, rules: Value) {
    let r = client
        .send(
            reqwest::Method::PUT,
            &format!("/networks/{net}/appliance/firewall/l3FirewallRules"),
            &[("X-Cisco-Meraki-API-Key", KEY.to_owned())],
            &Body::Json(json!({ "rules": rules })),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn apply_read_back_drift_repair_and_delete_keep_foreign_rules() {
    let lab = Lab::start(
        &[],
        &[("mx1", &[("rampart.io/meraki-network", NET1)])],
        None,
    );
    // A rule someone else owns.
    let foreign = json!({"comment": "ops: allow dns", "policy": "allow", "protocol": "udp",
        "srcCidr": "Any", "srcPort": "Any", "destCidr": "8.8.8.8/32", "destPort": "53", "syslogEnabled": false});
    put_rules(&lab.client(), NET1, json!([foreign])).await;

    // Dry-run shows the native calls.
    let planned = lab
        .engine
        .plan(
            Change {
                apply: vec![lab.spec(&firewall("web", "mx1", "egress", 443))],
                delete: vec![],
            },
            "test",
        )
        .unwrap();
    let dry = planned.dry_run_renderings();
    let edit = &dry.iter().find(|r| r.target == "mx1").unwrap().content;
    assert!(
        edit.contains("PUT /networks/{networkId}/appliance/firewall/l3FirewallRules"),
        "{edit}"
    );
    assert!(edit.contains("\"destPort\":\"1000-2000\""), "{edit}");
    lab.engine.execute(planned).await.unwrap();

    let l3 = lab.net(NET1)["l3"]["rules"].clone();
    let c = comments(&l3);
    assert_eq!(c.len(), 4, "{l3}");
    assert!(
        c[0].starts_with("RPM-acme-web-") && c[0].ends_with("#10"),
        "{c:?}"
    );
    assert!(c[1].ends_with("#20"), "{c:?}");
    assert_eq!(
        c[2], "ops: allow dns",
        "foreign rule kept before the default deny"
    );
    assert!(c[3].starts_with("RPM-default deny"), "{c:?}");
    assert_eq!(l3[0]["srcCidr"], "10.1.0.0/16,10.2.0.0/16");
    assert_eq!(l3[1]["syslogEnabled"], true);

    let report = lab.engine.check_sync(Some("mx1")).await.unwrap();
    assert!(
        report[0].differences.is_empty(),
        "{:?}",
        report[0].differences
    );

    // Out-of-band: someone opens our rule to any port.
    let mut changed = l3.clone();
    changed[0]["destPort"] = json!("Any");
    put_rules(&lab.client(), NET1, changed).await;
    let report = lab.engine.check_sync(Some("mx1")).await.unwrap();
    let d = &report[0].differences;
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].path.contains("/l3[0]/destPort"), "{d:?}");
    lab.engine.sync_to_device("mx1").await.unwrap();
    assert!(
        lab.engine.check_sync(Some("mx1")).await.unwrap()[0]
            .differences
            .is_empty()
    );
    assert_eq!(lab.net(NET1)["l3"]["rules"][0]["destPort"], "443");

    // Delete: Rampart's rules go, the foreign rule stays.
    let planned = lab
        .engine
        .plan(
            Change {
                apply: vec![],
                delete: vec!["acme/web".to_owned()],
            },
            "test",
        )
        .unwrap();
    lab.engine.execute(planned).await.unwrap();
    assert_eq!(
        comments(&lab.net(NET1)["l3"]["rules"]),
        vec!["ops: allow dns"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_resources_go_in_one_atomic_action_batch() {
    let lab = Lab::start(
        &[],
        &[
            ("mx1", &[("rampart.io/meraki-network", NET1)]),
            (
                "mx2",
                &[
                    ("rampart.io/meraki-network", NET2),
                    ("rampart.io/meraki-vpn-mode", "spoke"),
                    ("rampart.io/meraki-vpn-hubs", NET1),
                ],
            ),
        ],
        None,
    );
    // Firewall (both directions) and port forwarding on mx1: three resources, one batch.
    lab.apply(&[&firewall("web", "mx1", "both", 443), &web_lb("mx1")])
        .await
        .unwrap();
    let net = lab.net(NET1);
    assert_eq!(net["l3"]["rules"].as_array().unwrap().len(), 3, "{net}");
    assert_eq!(
        net["inbound"]["rules"].as_array().unwrap().len(),
        3,
        "{net}"
    );
    let pf = &net["portForwarding"]["rules"][0];
    assert_eq!(pf["lanIp"], "192.168.10.5");
    assert_eq!(pf["localPort"], "8443");
    let batches = lab.sim.state()["actionBatches"].clone();
    let batch = batches
        .as_object()
        .unwrap()
        .values()
        .next()
        .unwrap()
        .clone();
    assert_eq!(batch["actions"].as_array().unwrap().len(), 3, "{batch}");
    assert_eq!(batch["confirmed"], true);
    assert_eq!(batch["synchronous"], true);

    // mx2 as a spoke of mx1, which is not a hub: the VPN update fails
    // inside the batch, so the firewall update in the same batch is not
    // applied either.
    let vpn = "apiVersion: rampart.io/v1
kind: Vpn
metadata: {name: branch-vpn, tenant: acme}
spec:
  tunnels:
    - {device: mx2, peer: 198.51.100.1, localSubnets: [10.20.0.0/24], remoteSubnets: [10.0.0.0/16], pskRef: 'env:PSK'}
";
    let before = lab.net(NET2);
    let err = lab
        .apply(&[vpn, &firewall("branch", "mx2", "egress", 22)])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("mx2") && msg.contains("not configured as a hub"),
        "{msg}"
    );
    assert_eq!(lab.net(NET2), before, "a failed batch changed the network");
    assert!(lab.engine.store().services().unwrap().len() == 2);

    // mx1 becomes a hub; then the spoke works.
    let hub_vpn = "apiVersion: rampart.io/v1
kind: Vpn
metadata: {name: hub-vpn, tenant: acme}
spec:
  tunnels:
    - {device: mx1, peer: 198.51.100.2, localSubnets: [10.0.0.0/16], remoteSubnets: [10.20.0.0/24], pskRef: 'env:PSK'}
";
    lab.apply(&[hub_vpn]).await.unwrap();
    lab.apply(&[vpn]).await.unwrap();
    let s2s = lab.net(NET2)["siteToSiteVpn"].clone();
    assert_eq!(s2s["mode"], "spoke");
    assert_eq!(s2s["hubs"][0]["hubId"], NET1);
    assert_eq!(s2s["subnets"][0]["localSubnet"], "10.20.0.0/24");
    let report = lab.engine.check_sync(None).await.unwrap();
    assert!(
        report.iter().all(|r| r.differences.is_empty()),
        "{report:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovery_by_name_follows_link_pagination() {
    let settings = RestSettings {
        page_size: 3,
        ..RestSettings::meraki()
    };
    let lab = Lab::start(
        &["--networks", "8"],
        &[("mx8", &[("rampart.io/meraki-network", "name:Branch 08")])],
        Some(settings),
    );
    lab.apply(&[&firewall("web", "mx8", "egress", 443)])
        .await
        .unwrap();
    let rules = lab.net("L_6468999999000008")["l3"]["rules"].clone();
    assert!(comments(&rules)[0].starts_with("RPM-acme-web-"), "{rules}");
    let pages = lab
        .sim
        .requests()
        .iter()
        .filter(|r| {
            r["path"]
                .as_str()
                .unwrap_or_default()
                .ends_with("/organizations/549236/networks")
        })
        .count();
    assert_eq!(pages, 3, "8 networks at 3 per page");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unknown_network_and_bad_key_fail_precisely() {
    let lab = Lab::start(
        &[],
        &[("mx1", &[("rampart.io/meraki-network", "name:Nowhere")])],
        None,
    );
    let err = lab
        .apply(&[&firewall("web", "mx1", "egress", 443)])
        .await
        .unwrap_err();
    let msg = err.to_string();
    assert!(
        msg.contains("mx1") && msg.contains("\"name:Nowhere\" is in no organization"),
        "{msg}"
    );
    assert!(lab.engine.store().services().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn shared_org_bucket_never_trips_the_limit_and_retry_after_is_honoured() {
    let sim = Sim::start(SimKind::Meraki, &[]).unwrap();
    let http = http::client(sim.cert.as_deref(), Duration::from_secs(10)).unwrap();
    let base = format!("{}/api/v1", sim.base_url());
    let s = RestSettings::meraki();
    // 30 requests from 30 tasks (as if from many transactions) on one org.
    let start = Instant::now();
    let mut tasks = Vec::new();
    for i in 0..30 {
        let mut c = RestClient::new(http.clone(), &base, s.retry);
        c.set_limiter(shared_limiter(
            &format!("meraki|{base}|549236"),
            s.rps,
            s.burst,
        ));
        let net = format!("L_64689999990000{:02}", i % 5 + 1);
        tasks.push(tokio::spawn(async move {
            c.send(
                reqwest::Method::GET,
                &format!("/networks/{net}/appliance/firewall/l3FirewallRules"),
                &[("X-Cisco-Meraki-API-Key", KEY.to_owned())],
                &Body::None,
            )
            .await
            .unwrap()
            .status
        }));
    }
    for t in tasks {
        assert_eq!(t.await.unwrap(), 200);
    }
    let elapsed = start.elapsed();
    let log = sim.requests();
    let limited = log.iter().filter(|r| r["status"] == 429).count();
    assert_eq!(limited, 0, "the simulator answered 429 {limited} times");
    // Burst 5, then 10/s: 25 more requests need at least 2.5 s.
    assert!(elapsed >= Duration::from_millis(2400), "{elapsed:?}");

    // A 429 with Retry-After: 1 — the retry waits at least that long.
    sim.fault(&json!({"fail_next": 1, "status": 429, "retry_after": 1}));
    let mut c = RestClient::new(http.clone(), &base, s.retry);
    c.set_limiter(shared_limiter(
        &format!("meraki|{base}|549236"),
        s.rps,
        s.burst,
    ));
    let r = c
        .send(
            reqwest::Method::GET,
            "/organizations/549236/networks",
            &[("X-Cisco-Meraki-API-Key", KEY.to_owned())],
            &Body::None,
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200);
    let log = sim.requests();
    let tail: Vec<&Value> = log.iter().rev().take(2).collect();
    assert_eq!(tail[1]["status"], 429, "{tail:?}");
    assert_eq!(tail[0]["status"], 200, "{tail:?}");
    let gap = tail[0]["t"].as_f64().unwrap() - tail[1]["t"].as_f64().unwrap();
    assert!(gap >= 0.95, "retried after {gap} s, Retry-After was 1 s");

    // Retries are bounded: a server that keeps answering 503 is given up on.
    sim.fault(&json!({"fail_next": 10, "status": 503}));
    let c = RestClient::new(
        http,
        &base,
        RetryPolicy {
            max_attempts: 3,
            base_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(100),
        },
    );
    let err = c
        .send(
            reqwest::Method::GET,
            "/organizations",
            &[("X-Cisco-Meraki-API-Key", KEY.to_owned())],
            &Body::None,
        )
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("gave up after 3 attempts"), "{err}");
}

/// A vFirewall with a `nat` section on `mx1`.
fn nat_firewall(global: &str, outside: &str, overload: &str, statics: bool) -> String {
    let statics = if statics {
        format!(
            "        staticMappings:
          - {{insideLocal: 10.0.1.20, insideGlobal: {global}}}
          - {{insideLocal: 10.0.1.21, insideGlobal: 198.51.100.2, protocol: tcp, localPort: 22, globalPort: 2222}}
"
        )
    } else {
        String::new()
    };
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
      - {{device: mx1, interface: internet1, direction: ingress}}
  nat:
    devices:
      - device: mx1
        insideInterfaces: [lan]
        outsideInterfaces: [{outside}]
{statics}        overloads:
          - {{interface: {overload}, sources: [10.0.1.0/24]}}
"
    )
}

fn render_inventory(labels: &[(&str, &str)]) -> BTreeMap<String, Device> {
    let mut all = BTreeMap::from([("rampart.io/meraki-network".to_owned(), NET1.to_owned())]);
    all.extend(
        labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned())),
    );
    let d = Device {
        name: "mx1".to_owned(),
        platform: Platform::MerakiMx,
        address: "https://127.0.0.1:1".to_owned(),
        credentials_ref: "env:X".to_owned(),
        labels: all,
        created_unix: 0,
    };
    BTreeMap::from([(d.name.clone(), d)])
}

fn compile_nat(yaml: &str) -> Result<String, String> {
    compile_nat_with(yaml, &[])
}

fn compile_nat_with(yaml: &str, labels: &[(&str, &str)]) -> Result<String, String> {
    let doc = SourceDoc {
        text: yaml,
        format: DocFormat::Yaml,
        name: "nat.yaml",
    };
    let inv = render_inventory(labels);
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
fn firewall_nat_renders_as_one_to_one_nat_port_forwarding_and_inherent_pat() {
    let text = compile_nat(&nat_firewall(
        "198.51.100.20",
        "internet1",
        "internet1",
        true,
    ))
    .unwrap();
    assert!(
        text.contains("PUT /networks/{networkId}/appliance/firewall/oneToOneNatRules"),
        "{text}"
    );
    assert!(
        text.contains("PUT /networks/{networkId}/appliance/firewall/portForwardingRules"),
        "{text}"
    );
    assert!(
        text.contains("overload (PAT) to internet1: inherent") && text.contains("no call"),
        "{text}"
    );
    insta::assert_snapshot!("meraki_firewall_nat", text);
}

#[test]
fn firewall_nat_refusals_name_the_field() {
    // The MX uses internet1 (default label): an overload to internet2 is not what it does.
    let e = compile_nat(&nat_firewall(
        "",
        "internet1, internet2",
        "internet2",
        false,
    ))
    .unwrap_err();
    assert!(
        e.contains("spec.nat.devices[0].overloads[0].interface") && e.contains("internet1"),
        "{e}"
    );
    // 1:1 NAT arrives on one uplink.
    let e = compile_nat(&nat_firewall(
        "198.51.100.20",
        "internet1, internet2",
        "internet1",
        true,
    ))
    .unwrap_err();
    assert!(e.contains("spec.nat.devices[0].outsideInterfaces"), "{e}");
    // Not an uplink at all.
    let e = compile_nat(&nat_firewall("198.51.100.20", "wan9", "wan9", true)).unwrap_err();
    assert!(
        e.contains("spec.nat.devices[0].outsideInterfaces[0]"),
        "{e}"
    );
}

async fn put_resource(client: &RestClient, net: &str, resource: &str, rules: Value) {
    let r = client
        .send(
            reqwest::Method::PUT,
            &format!("/networks/{net}/appliance/firewall/{resource}"),
            &[("X-Cisco-Meraki-API-Key", KEY.to_owned())],
            &Body::Json(json!({ "rules": rules })),
        )
        .await
        .unwrap();
    assert_eq!(r.status, 200, "{}", r.body);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn firewall_nat_apply_drift_repair_and_delete_keep_foreign_rules() {
    let lab = Lab::start(
        &[],
        &[("mx1", &[("rampart.io/meraki-network", NET1)])],
        None,
    );
    let foreign = json!({"name": "ops: mail", "publicIp": "198.51.100.99", "lanIp": "10.0.1.99",
        "uplink": "internet1", "allowedInbound": [{"protocol": "tcp", "destinationPorts": ["25"], "allowedIps": ["any"]}]});
    put_resource(&lab.client(), NET1, "oneToOneNatRules", json!([foreign])).await;
    lab.apply(&[&nat_firewall(
        "198.51.100.20",
        "internet1",
        "internet1",
        true,
    )])
    .await
    .unwrap();
    let net = lab.net(NET1);
    let nat = net["oneToOneNat"]["rules"].as_array().unwrap().clone();
    assert_eq!(nat.len(), 2, "{nat:?}");
    assert!(
        nat[0]["name"]
            .as_str()
            .unwrap()
            .starts_with("RPM-acme-edge-")
    );
    assert_eq!(
        (&nat[0]["publicIp"], &nat[0]["lanIp"], &nat[0]["uplink"]),
        (
            &json!("198.51.100.20"),
            &json!("10.0.1.20"),
            &json!("internet1")
        )
    );
    assert_eq!(nat[1], foreign, "foreign 1:1 NAT kept after Rampart's");
    let pf = &net["portForwarding"]["rules"][0];
    assert_eq!(
        (
            &pf["lanIp"],
            &pf["publicPort"],
            &pf["localPort"],
            &pf["protocol"]
        ),
        (
            &json!("10.0.1.21"),
            &json!("2222"),
            &json!("22"),
            &json!("tcp")
        )
    );
    assert!(
        lab.engine.check_sync(Some("mx1")).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Update: a new public address is one PUT of the 1:1 NAT rules.
    lab.apply(&[&nat_firewall(
        "198.51.100.21",
        "internet1",
        "internet1",
        true,
    )])
    .await
    .unwrap();
    assert_eq!(
        lab.net(NET1)["oneToOneNat"]["rules"][0]["publicIp"],
        "198.51.100.21"
    );

    // Out of band: someone points the mapping at another host.
    let mut changed = lab.net(NET1)["oneToOneNat"]["rules"].clone();
    changed[0]["lanIp"] = json!("10.0.1.66");
    put_resource(&lab.client(), NET1, "oneToOneNatRules", changed).await;
    let report = lab.engine.check_sync(Some("mx1")).await.unwrap();
    let d = &report[0].differences;
    assert_eq!(d.len(), 1, "{d:?}");
    assert!(d[0].path.contains("/oneToOneNat[0]/lanIp"), "{d:?}");
    lab.engine.sync_to_device("mx1").await.unwrap();
    assert!(
        lab.engine.check_sync(Some("mx1")).await.unwrap()[0]
            .differences
            .is_empty()
    );
    assert_eq!(
        lab.net(NET1)["oneToOneNat"]["rules"][0]["lanIp"],
        "10.0.1.20"
    );

    // Delete: Rampart's NAT goes, the foreign rule stays.
    let planned = lab
        .engine
        .plan(
            Change {
                apply: vec![],
                delete: vec!["acme/edge".to_owned()],
            },
            "test",
        )
        .unwrap();
    lab.engine.execute(planned).await.unwrap();
    let net = lab.net(NET1);
    assert_eq!(net["oneToOneNat"]["rules"], json!([foreign]));
    assert_eq!(net["portForwarding"]["rules"], json!([]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_services_mapping_one_public_ip_conflict_by_name() {
    let lab = Lab::start(
        &[],
        &[("mx1", &[("rampart.io/meraki-network", NET1)])],
        None,
    );
    let first = nat_firewall("198.51.100.20", "internet1", "internet1", true);
    lab.apply(&[&first]).await.unwrap();
    // Same public IP, another service (and another port-forward port).
    let second = first
        .replace("name: edge", "name: edge2")
        .replace("globalPort: 2222", "globalPort: 2223");
    let err = lab.apply(&[&second]).await.unwrap_err().to_string();
    assert!(
        err.contains("1:1 NAT of public IP 198.51.100.20")
            && err.contains("acme/edge")
            && err.contains("acme/edge2"),
        "{err}"
    );
    // Nothing of the refused service reached the network.
    let nat = lab.net(NET1)["oneToOneNat"]["rules"].clone();
    assert_eq!(nat.as_array().unwrap().len(), 1, "{nat}");
}

#[test]
fn overload_follows_the_uplink_label_and_port_mappings_its_address() {
    // The MX uses internet2: an overload to internet2 is its inherent PAT.
    let yaml = nat_firewall("", "internet1, internet2", "internet2", false);
    let text = compile_nat_with(&yaml, &[("rampart.io/meraki-uplink", "internet2")]).unwrap();
    assert!(
        text.contains("overload (PAT) to internet2: inherent"),
        "{text}"
    );
    assert!(!text.contains("oneToOneNatRules"), "{text}");
    // With the uplink address known, a port mapping must publish on it.
    let yaml = nat_firewall("198.51.100.20", "internet1", "internet1", true);
    let e =
        compile_nat_with(&yaml, &[("rampart.io/meraki-uplink-ip", "198.51.100.1")]).unwrap_err();
    assert!(
        e.contains("spec.nat.devices[0].staticMappings[1].insideGlobal")
            && e.contains("198.51.100.1"),
        "{e}"
    );
    let yaml = yaml.replace("insideGlobal: 198.51.100.2,", "insideGlobal: 198.51.100.1,");
    assert!(compile_nat_with(&yaml, &[("rampart.io/meraki-uplink-ip", "198.51.100.1")]).is_ok());
}
