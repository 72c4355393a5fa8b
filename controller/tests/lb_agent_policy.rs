//! LoadBalancer specs compiled for host agents: the `virtual_services` of
//! the agent policy (snapshot), the per-agent merge of several services
//! (`policy_for`) and the precise refusals (VIP conflicts, targets and
//! fields the agent cannot express).

use std::collections::BTreeMap;

use rampart_controller::{
    compile,
    fleet::policy::policy_for,
    model::{DocFormat, SourceDoc, Validator, spec::ServiceSpec},
    store::StoredService,
    wire::Format,
};
use rampart_proto::v1 as pb;

fn spec(yaml: &str) -> ServiceSpec {
    let doc = SourceDoc {
        text: yaml,
        format: DocFormat::Yaml,
        name: "lb.yaml",
    };
    Validator::new()
        .unwrap()
        .validate(&doc, &BTreeMap::new())
        .unwrap_or_else(|e| panic!("spec refused: {e:?}"))
        .remove(0)
        .spec
}

fn stored(yaml: &str) -> StoredService {
    StoredService {
        spec: spec(yaml),
        api_version: "rampart.io/v1".to_owned(),
        generation: 1,
        created_unix: 0,
        updated_unix: 0,
        last_transaction: 1,
    }
}

fn labels(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect()
}

const WEB: &str = "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: web-lb, tenant: acme}
spec:
  virtualServices:
    - name: web
      address: 10.96.0.10
      protocol: tcp
      port: 80
      backends: [{address: 10.0.1.1, weight: 1}, {address: 10.0.1.2, weight: 3}]
      healthCheck: {type: http, path: /healthz, expectStatus: 200, intervalMs: 1000, timeoutMs: 500, rise: 2, fall: 3}
    - name: dns
      address: 10.96.0.53
      protocol: udp
      port: 53
      backends: [{address: 10.0.2.1, port: 5353, weight: 1}, {address: 10.0.2.2, port: 5353, weight: 0}]
  targets: {hosts: [{selector: {role: lb}, interfaces: [eth0]}]}
";

#[test]
fn load_balancer_renders_agent_virtual_services() {
    let r = compile::compile(&spec(WEB), &BTreeMap::new()).unwrap();
    assert_eq!(r.len(), 1, "one host target, no devices");
    assert_eq!(r[0].target, "hosts:role=lb");
    assert_eq!(r[0].platform, "agent");
    assert_eq!(r[0].format, Format::AgentPolicy);
    // The rendering is the agent's own type: it parses back as a HostPolicy.
    let p: pb::HostPolicy = serde_json::from_str(&r[0].content).unwrap();
    assert_eq!(p.virtual_services.len(), 2);
    // The model keeps virtual services sorted by name.
    let dns = &p.virtual_services[0];
    assert_eq!(dns.name, "acme/web-lb/dns");
    let web = &p.virtual_services[1];
    assert_eq!(web.name, "acme/web-lb/web");
    assert_eq!(web.mode, pb::ForwardingMode::Ipip as i32, "same port: DSR");
    assert_eq!(dns.mode, pb::ForwardingMode::Dnat as i32, "port 5353: DNAT");
    assert_eq!(dns.backends[1].weight, Some(0), "weight 0 drains, kept");
    insta::assert_snapshot!("lb_agent_policy_web", r[0].content);
}

#[test]
fn unsupported_targets_are_refused_naming_the_field() {
    let no_iface = WEB.replace(", interfaces: [eth0]", "");
    let e = compile::compile(&spec(&no_iface), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("agent cannot express a load balancer on 0 interfaces")
            && e.contains("spec.targets.hosts[0].interfaces"),
        "{e}"
    );
    let two = WEB.replace("interfaces: [eth0]", "interfaces: [eth0, eth1]");
    let e = compile::compile(&spec(&two), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(e.contains("on 2 interfaces"), "{e}");
    let egress = WEB.replace(
        "interfaces: [eth0]",
        "interfaces: [eth0], direction: egress",
    );
    let e = compile::compile(&spec(&egress), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("direction Egress") && e.contains("spec.targets.hosts[0].direction"),
        "{e}"
    );
    let mixed = WEB.replace(
        "{address: 10.0.1.2, weight: 3}",
        "{address: 'fd00::2', weight: 3}",
    );
    let e = compile::compile(&spec(&mixed), &BTreeMap::new())
        .unwrap_err()
        .to_string();
    assert!(
        e.contains("spec.virtualServices[1].backends[1].address") && e.contains("fd00::2"),
        "{e}"
    );
}

#[test]
fn policy_for_merges_firewall_and_load_balancers() {
    let fw = stored(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: web-fw, tenant: acme}
spec:
  defaultAction: permit
  rules:
    - {sequence: 10, action: deny, protocol: tcp, destinationPorts: [23]}
  targets: {hosts: [{selector: {role: lb}, interfaces: [eth0]}]}
",
    );
    let api = stored(
        "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: api-lb, tenant: beta}
spec:
  virtualServices:
    - {name: api, address: 10.96.0.10, protocol: tcp, port: 443, backends: [{address: 10.0.3.1, weight: 1}]}
  targets: {hosts: [{selector: {role: lb}, interfaces: [eth1]}]}
",
    );
    let other = stored(
        "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: elsewhere, tenant: beta}
spec:
  virtualServices:
    - {name: x, address: 10.96.0.10, protocol: tcp, port: 80, backends: [{address: 10.0.3.1, weight: 1}]}
  targets: {hosts: [{selector: {role: other}, interfaces: [eth1]}]}
",
    );
    let services = [fw, stored(WEB), api, other];
    let p = policy_for(&services, &labels(&[("role", "lb"), ("site", "x")])).unwrap();
    assert_eq!(p.interfaces.len(), 1, "the firewall section is kept");
    let names: Vec<&str> = p.virtual_services.iter().map(|v| v.name.as_str()).collect();
    assert_eq!(
        names,
        ["acme/web-lb/dns", "acme/web-lb/web", "beta/api-lb/api"],
        "both load balancers selecting role=lb, sorted; not the role=other one"
    );
    assert_eq!(p.virtual_services[2].interface, "eth1");
    // Same VIP, other port: no conflict. An agent without the label: none.
    let none = policy_for(&services, &labels(&[("role", "web")])).unwrap();
    assert!(none.virtual_services.is_empty() && none.interfaces.is_empty());
}

#[test]
fn policy_for_refuses_two_services_on_one_vip_naming_both() {
    let clash = stored(
        "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: web-two, tenant: beta}
spec:
  virtualServices:
    - {name: www, address: 10.96.0.10, protocol: tcp, port: 80, backends: [{address: 10.0.9.9, weight: 1}]}
  targets: {hosts: [{selector: {role: lb}, interfaces: [eth1]}]}
",
    );
    let e = policy_for(&[stored(WEB), clash], &labels(&[("role", "lb")])).unwrap_err();
    assert_eq!(
        e,
        "services acme/web-lb (virtual service acme/web-lb/web) and beta/web-two (virtual service beta/web-two/www) both claim VIP 10.96.0.10 port 80 tcp"
    );
    // The same VIP and port over UDP is another service: no conflict.
    let udp = stored(
        "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: web-udp, tenant: beta}
spec:
  virtualServices:
    - {name: www, address: 10.96.0.10, protocol: udp, port: 80, backends: [{address: 10.0.9.9, weight: 1}]}
  targets: {hosts: [{selector: {role: lb}, interfaces: [eth1]}]}
",
    );
    let p = policy_for(&[stored(WEB), udp], &labels(&[("role", "lb")])).unwrap();
    assert_eq!(p.virtual_services.len(), 3);
    // A service the agent cannot express is refused with its name.
    let bad = stored(
        &WEB.replace(", interfaces: [eth0]", "")
            .replace("web-lb", "bad-lb"),
    );
    let e = policy_for(&[bad], &labels(&[("role", "lb")])).unwrap_err();
    assert!(
        e.starts_with("service acme/bad-lb: ") && e.contains("spec.targets.hosts[0].interfaces"),
        "{e}"
    );
}

#[test]
fn the_example_spec_compiles_for_agents() {
    let r = compile::compile(
        &spec(include_str!("../../examples/lb-web.yaml")),
        &BTreeMap::new(),
    )
    .unwrap();
    let p: pb::HostPolicy = serde_json::from_str(&r[0].content).unwrap();
    assert_eq!(r[0].target, "hosts:role=lb");
    assert_eq!(p.virtual_services.len(), 1);
    assert_eq!(p.virtual_services[0].interface, "eth0");
    assert_eq!(p.virtual_services[0].mode, pb::ForwardingMode::Ipip as i32);
}
