//! Dry-run renderings for Meraki MX, FTD (FDM), ASA and SD-WAN Manager:
//! snapshots of what `compile()` shows for representative specs, parse
//! checks of the native forms, and the precise refusals of what a platform
//! cannot express.

use std::collections::BTreeMap;

use rampart_controller::{
    compile,
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::ServiceSpec,
    },
    wire::{Format, http::Call},
};

/// The calls of an HTTP dry-run text: `METHOD /path` lines, each followed
/// by its JSON body when it has one; `#` lines are notes.
fn parse_calls(text: &str) -> Result<Vec<Call>, String> {
    let mut out: Vec<Call> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if line.starts_with('{') || line.starts_with('[') {
            let body = serde_json::from_str(line).map_err(|e| format!("line {}: {e}", i + 1))?;
            let last = out.last_mut().filter(|c| c.body.is_none());
            last.ok_or(format!("line {}: a body without a call", i + 1))?
                .body = Some(body);
            continue;
        }
        match line.split_once(' ') {
            Some((m @ ("GET" | "PUT" | "POST" | "DELETE"), path)) if path.starts_with('/') => {
                out.push(Call::new(m, path.trim(), None));
            }
            _ => return Err(format!("line {}: not a call: {line:?}", i + 1)),
        }
    }
    Ok(out)
}

fn inventory() -> BTreeMap<String, Device> {
    let dev = |name: &str, platform, labels: &[(&str, &str)]| Device {
        name: name.to_owned(),
        platform,
        address: "https://127.0.0.1:8443".to_owned(),
        credentials_ref: "env:X".to_owned(),
        labels: labels
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect(),
        created_unix: 0,
    };
    [
        dev(
            "mx1",
            Platform::MerakiMx,
            &[("rampart.io/meraki-network", "L_6468999999000001")],
        ),
        dev(
            "mx2",
            Platform::MerakiMx,
            &[
                ("rampart.io/meraki-network", "name:Branch 02"),
                ("rampart.io/meraki-vpn-mode", "spoke"),
                ("rampart.io/meraki-vpn-hubs", "L_6468999999000001"),
            ],
        ),
        dev("ftd1", Platform::Ftd, &[]),
        dev("asa1", Platform::Asa, &[]),
        dev("vmanage1", Platform::SdWan, &[]),
    ]
    .into_iter()
    .map(|d| (d.name.clone(), d))
    .collect()
}

fn spec(yaml: &str) -> ServiceSpec {
    let doc = SourceDoc {
        text: yaml,
        format: DocFormat::Yaml,
        name: "render.yaml",
    };
    Validator::new()
        .unwrap()
        .validate(&doc, &inventory())
        .unwrap()
        .remove(0)
        .spec
}

fn rendered(yaml: &str, device: &str) -> (Format, String) {
    let r = compile::compile(&spec(yaml), &inventory()).unwrap();
    let r = r.into_iter().find(|r| r.target == device).unwrap();
    (r.format, r.content)
}

const FIREWALL: &str = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: web-fw, tenant: acme}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, sources: [10.0.0.0/8, 172.16.0.0/12], destinations: [192.0.2.10/32], destinationPorts: [80, 443, '8000-8080'], log: true, description: web}
    - {sequence: 20, action: permit, protocol: udp, destinations: [192.0.2.53/32], destinationPorts: [53]}
    - {sequence: 30, action: deny, protocol: any, sources: [198.51.100.0/24], log: true}
  targets:
    devices:
      - {device: mx1, interface: wan1, direction: both}
      - {device: ftd1, interface: inside_zone, direction: ingress}
      - {device: asa1, interface: inside, direction: ingress}
";

const LB: &str = "apiVersion: rampart.io/v1
kind: LoadBalancer
metadata: {name: web-lb, tenant: acme}
spec:
  virtualServices:
    - {name: https, address: 203.0.113.10, protocol: tcp, port: 443, backends: [{address: 192.168.10.5, weight: 1}]}
  targets:
    devices:
      - {device: mx1, interface: wan1, direction: ingress}
      - {device: ftd1, interface: outside_zone, direction: ingress}
      - {device: asa1, interface: outside, direction: ingress}
";

#[test]
fn meraki_firewall_lb_vpn() {
    let (format, fw) = rendered(FIREWALL, "mx1");
    assert_eq!(format, Format::Http);
    assert_eq!(
        parse_calls(&fw).unwrap().len(),
        2,
        "outbound and inbound rules"
    );
    insta::assert_snapshot!("meraki_firewall", fw);
    insta::assert_snapshot!("meraki_lb", rendered(LB, "mx1").1);
    let vpn = "apiVersion: rampart.io/v1
kind: Vpn
metadata: {name: branch-vpn, tenant: acme}
spec:
  tunnels: [{device: mx2, peer: 203.0.113.2, localSubnets: [10.20.0.0/24, 10.21.0.0/24], remoteSubnets: [10.0.0.0/16], pskRef: 'env:VPN_PSK'}]
";
    insta::assert_snapshot!("meraki_vpn", rendered(vpn, "mx2").1);
}

#[test]
fn ftd_firewall_and_nat() {
    let (format, fw) = rendered(FIREWALL, "ftd1");
    assert_eq!(format, Format::Http);
    let calls = parse_calls(&fw).unwrap();
    assert_eq!(calls.last().unwrap().path, "/operational/deploy");
    insta::assert_snapshot!("ftd_firewall", fw);
    insta::assert_snapshot!("ftd_nat", rendered(LB, "ftd1").1);
}

#[test]
fn asa_firewall() {
    let (format, fw) = rendered(FIREWALL, "asa1");
    assert_eq!(format, Format::Cli);
    assert!(fw.starts_with("configure terminal\n") && fw.ends_with("write memory\n"));
    insta::assert_snapshot!("asa_firewall", fw);
    insta::assert_snapshot!("asa_nat", rendered(LB, "asa1").1);
}

#[test]
fn sdwan_policy() {
    let yaml = "apiVersion: rampart.io/v1
kind: SdWan
metadata: {name: acme-wan, tenant: acme}
spec:
  sites: [{siteId: 100, devices: [vmanage1]}, {siteId: 200, devices: [vmanage1]}]
  policies:
    - {name: voice, destinations: [10.50.0.0/16], preferredColor: mpls, action: permit}
    - {name: guest, destinations: [192.168.99.0/24], preferredColor: biz-internet, action: deny}
";
    let (format, text) = rendered(yaml, "vmanage1");
    assert_eq!(format, Format::Http);
    insta::assert_snapshot!("sdwan_policy", text);
}

#[test]
fn renderings_are_deterministic() {
    for d in ["mx1", "ftd1", "asa1"] {
        assert_eq!(rendered(FIREWALL, d), rendered(FIREWALL, d), "{d}");
    }
}

#[test]
fn what_a_platform_cannot_express_is_refused_by_field() {
    let err = |yaml: &str| {
        compile::compile(&spec(yaml), &inventory())
            .unwrap_err()
            .to_string()
    };
    let icmp = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: ping, tenant: acme}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: icmp, icmpType: 8}
  targets:
    devices:
      - {device: DEV, interface: inside, direction: ingress}
";
    for (dev, field) in [
        ("mx1", "spec.rules[0].icmpType"),
        ("asa1", "spec.rules[0].icmpType"),
        ("ftd1", "spec.rules[0].protocol"),
    ] {
        let e = err(&icmp.replace("DEV", dev));
        assert!(e.contains(field), "{dev}: {e}");
    }
    let v6 = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: v6, tenant: acme}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, sources: ['2001:db8::/32'], destinationPorts: [22]}
  targets:
    devices:
      - {device: asa1, interface: inside, direction: ingress}
";
    let e = err(v6);
    assert!(
        e.contains("asa cannot express IPv6 prefix 2001:db8::/32 (at spec.rules[0].sources[0])"),
        "{e}"
    );
    let two = LB.replace(
        "backends: [{address: 192.168.10.5, weight: 1}]",
        "backends: [{address: 192.168.10.5, weight: 1}, {address: 192.168.10.6, weight: 1}]",
    );
    let e = err(&two);
    assert!(
        e.contains("2 backends") && e.contains("spec.virtualServices[0].backends"),
        "{e}"
    );
    let router = "apiVersion: rampart.io/v1
kind: Router
metadata: {name: r, tenant: acme}
spec:
  devices: [{device: asa1, interfaces: [], staticRoutes: []}]
";
    let e = err(router);
    assert!(e.contains("asa cannot express Router services"), "{e}");
}
