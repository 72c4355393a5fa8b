//! IOS-XE rendering: snapshots of example specs, and every rendering
//! validated with libyang against Cisco's IOS-XE 16.9.3 and 17.12.1 models.

mod support;

use std::collections::BTreeMap;

use rampart_controller::{
    model::{
        device::{Device, Platform},
        spec::{
            Action, Bgp, BgpNeighbor, DeviceTarget, Direction, FirewallRule, FirewallSpec,
            Metadata, PortRange, Protocol, RouterDevice, RouterInterface, RouterSpec, ServiceBody,
            ServiceSpec, StaticRoute, Targets,
        },
    },
    platforms::iosxe::{self, IosXeError},
    wire::Format,
};
use support::netconfd::{RELEASES, yang};
use yang3::data::DataFormat;

fn device(name: &str) -> Device {
    Device {
        name: name.to_owned(),
        platform: Platform::IosXe,
        address: "127.0.0.1:830".to_owned(),
        credentials_ref: "env:X".to_owned(),
        labels: BTreeMap::new(),
        created_unix: 0,
    }
}

fn meta(tenant: &str, name: &str) -> Metadata {
    Metadata {
        name: name.to_owned(),
        tenant: tenant.to_owned(),
        labels: BTreeMap::new(),
    }
}

fn rule(sequence: u32, action: Action, protocol: Protocol) -> FirewallRule {
    FirewallRule {
        sequence,
        action,
        protocol,
        sources: vec![],
        destinations: vec![],
        source_ports: vec![],
        destination_ports: vec![],
        icmp_type: None,
        icmp_code: None,
        log: false,
        description: None,
    }
}

fn ports(list: &[(u16, u16)]) -> Vec<PortRange> {
    list.iter()
        .map(|&(first, last)| PortRange { first, last })
        .collect()
}

fn nets(list: &[&str]) -> Vec<ipnet::IpNet> {
    list.iter().map(|s| s.parse().unwrap()).collect()
}

/// A dual-stack web-tier firewall, default deny, bound on two interfaces of
/// r1 and one of r2.
fn web_firewall() -> ServiceSpec {
    let mut web = rule(10, Action::Permit, Protocol::Tcp);
    web.sources = nets(&["10.0.0.0/8", "2001:db8:100::/48"]);
    web.destinations = nets(&["192.0.2.10/32", "2001:db8::10/128"]);
    web.destination_ports = ports(&[(80, 80), (443, 443)]);
    web.description = Some("web from the office <& partners>".to_owned());
    let mut dns = rule(20, Action::Permit, Protocol::Udp);
    dns.destinations = nets(&["10.1.1.0/24"]);
    dns.source_ports = ports(&[(1024, 65535)]);
    dns.destination_ports = ports(&[(53, 53)]);
    let mut ping = rule(30, Action::Permit, Protocol::Icmp);
    ping.icmp_type = Some(8);
    ping.icmp_code = Some(0);
    let mut ping6 = rule(31, Action::Permit, Protocol::Icmpv6);
    ping6.icmp_type = Some(128);
    let mut block = rule(40, Action::Deny, Protocol::Any);
    block.sources = nets(&["198.51.100.0/24"]);
    block.log = true;
    block.description = Some("known scanners".to_owned());
    ServiceSpec {
        metadata: meta("acme", "web-tier"),
        body: ServiceBody::Firewall(FirewallSpec {
            default_action: Action::Deny,
            rules: vec![block, web, dns, ping, ping6],
            targets: Targets {
                devices: vec![
                    DeviceTarget {
                        device: "r1".to_owned(),
                        interface: "GigabitEthernet2".to_owned(),
                        direction: Direction::Ingress,
                    },
                    DeviceTarget {
                        device: "r1".to_owned(),
                        interface: "GigabitEthernet0/0/3".to_owned(),
                        direction: Direction::Both,
                    },
                    DeviceTarget {
                        device: "r2".to_owned(),
                        interface: "GigabitEthernet1".to_owned(),
                        direction: Direction::Egress,
                    },
                ],
                hosts: vec![],
            },
            nat: None,
        }),
    }
}

/// An IPv4-only, default-permit firewall: no IPv6 ACL is needed.
fn ssh_block() -> ServiceSpec {
    let mut ssh = rule(5, Action::Deny, Protocol::Tcp);
    ssh.destination_ports = ports(&[(22, 22), (2200, 2299)]);
    ssh.sources = nets(&["0.0.0.0/0"]);
    ssh.log = true;
    ServiceSpec {
        metadata: meta("Globex Corp", "no ssh!"),
        body: ServiceBody::Firewall(FirewallSpec {
            default_action: Action::Permit,
            rules: vec![ssh],
            targets: Targets {
                devices: vec![DeviceTarget {
                    device: "r1".to_owned(),
                    interface: "Loopback0".to_owned(),
                    direction: Direction::Egress,
                }],
                hosts: vec![],
            },
            nat: None,
        }),
    }
}

/// A vRouter: interfaces, static routes, BGP.
fn edge_router() -> ServiceSpec {
    ServiceSpec {
        metadata: meta("acme", "edge"),
        body: ServiceBody::Router(RouterSpec {
            devices: vec![RouterDevice {
                device: "r1".to_owned(),
                interfaces: vec![
                    RouterInterface {
                        name: "GigabitEthernet2".to_owned(),
                        description: Some("uplink to ISP".to_owned()),
                        ipv4: nets(&["203.0.113.2/30", "203.0.113.9/29"]),
                        ipv6: nets(&["2001:db8:ffff::2/64"]),
                        shutdown: false,
                    },
                    RouterInterface {
                        name: "Loopback10".to_owned(),
                        description: None,
                        ipv4: nets(&["192.0.2.1/32"]),
                        ipv6: vec![],
                        shutdown: true,
                    },
                ],
                static_routes: vec![
                    StaticRoute {
                        prefix: "0.0.0.0/0".parse().unwrap(),
                        next_hop: Some("203.0.113.1".parse().unwrap()),
                        interface: None,
                        distance: None,
                    },
                    StaticRoute {
                        prefix: "10.20.0.0/16".parse().unwrap(),
                        next_hop: Some("203.0.113.1".parse().unwrap()),
                        interface: Some("GigabitEthernet2".to_owned()),
                        distance: Some(200),
                    },
                    StaticRoute {
                        prefix: "2001:db8:aaaa::/48".parse().unwrap(),
                        next_hop: Some("2001:db8:ffff::1".parse().unwrap()),
                        interface: None,
                        distance: None,
                    },
                ],
                bgp: Some(Bgp {
                    asn: 65001,
                    router_id: Some("192.0.2.1".parse().unwrap()),
                    neighbors: vec![
                        BgpNeighbor {
                            address: "203.0.113.1".parse().unwrap(),
                            remote_as: 64500,
                            description: Some("ISP A".to_owned()),
                        },
                        BgpNeighbor {
                            address: "2001:db8:ffff::1".parse().unwrap(),
                            remote_as: 64500,
                            description: None,
                        },
                    ],
                    networks: nets(&["192.0.2.0/24", "2001:db8:aaaa::/48"]),
                }),
            }],
        }),
    }
}

/// `examples/firewall-nat.yaml` through the real validator, retargeted
/// from the demo inventory's `csr1` to `r1`.
fn nat_firewall() -> ServiceSpec {
    let text = include_str!("../../examples/firewall-nat.yaml").replace("csr1", "r1");
    let inventory: BTreeMap<String, Device> = [("r1".to_owned(), device("r1"))].into();
    let v = rampart_controller::model::Validator::new().unwrap();
    let mut docs = v
        .validate(
            &rampart_controller::model::SourceDoc {
                text: &text,
                format: rampart_controller::model::DocFormat::Yaml,
                name: "firewall-nat.yaml",
            },
            &inventory,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    docs.remove(0).spec
}

/// Rules whose sides list several IPv4 addresses: rendered with network
/// object-groups. The IPv6 source of rule 10 stays expanded in the IPv6 ACL.
fn grouped_firewall(name: &str) -> ServiceSpec {
    let mut admin = rule(10, Action::Permit, Protocol::Tcp);
    admin.sources = nets(&[
        "10.1.0.0/16",
        "10.2.0.0/16",
        "192.0.2.7/32",
        "2001:db8:1::/48",
    ]);
    admin.destination_ports = ports(&[(22, 22)]);
    let mut web = rule(20, Action::Permit, Protocol::Tcp);
    web.destinations = nets(&["198.51.100.10/32", "198.51.100.11/32", "198.51.100.64/26"]);
    web.destination_ports = ports(&[(80, 80), (443, 443)]);
    ServiceSpec {
        metadata: meta("acme", name),
        body: ServiceBody::Firewall(FirewallSpec {
            default_action: Action::Deny,
            rules: vec![admin, web],
            targets: Targets {
                devices: vec![DeviceTarget {
                    device: "r1".to_owned(),
                    interface: "GigabitEthernet4".to_owned(),
                    direction: Direction::Ingress,
                }],
                hosts: vec![],
            },
            nat: None,
        }),
    }
}

fn examples() -> Vec<(&'static str, ServiceSpec, &'static str)> {
    vec![
        ("web_firewall_r1", web_firewall(), "r1"),
        ("web_firewall_r2", web_firewall(), "r2"),
        ("ssh_block", ssh_block(), "r1"),
        ("edge_router", edge_router(), "r1"),
        ("nat_firewall", nat_firewall(), "r1"),
        ("grouped_firewall", grouped_firewall("grouped"), "r1"),
    ]
}

#[test]
fn renderings_match_snapshots() {
    for (name, spec, dev) in examples() {
        let renderings = iosxe::render(&spec, &device(dev)).unwrap();
        assert_eq!(
            renderings.len(),
            2,
            "{name}: one NETCONF and one RESTCONF rendering"
        );
        for r in renderings {
            assert_eq!(r.target, dev);
            assert_eq!(r.platform, "iosxe");
            let suffix = match r.format {
                Format::NetconfXml => "xml",
                Format::RestconfJson => "json",
                other => panic!("unexpected format {other:?}"),
            };
            insta::assert_snapshot!(format!("iosxe_{name}_{suffix}"), r.content);
        }
    }
}

/// Every rendering parses and validates with libyang against both releases,
/// strictly (an unknown node fails), and the XML and JSON renderings denote
/// the same data tree.
#[test]
fn renderings_validate_against_both_releases() {
    for release in RELEASES {
        let ctx = yang::context(release);
        for (name, spec, dev) in examples() {
            let mut config = iosxe::build(&spec, &device(dev)).unwrap();
            if config.bgp.is_some() && !yang::loadable(release, "Cisco-IOS-XE-bgp") {
                eprintln!(
                    "NOTE: {release} {name}: BGP part not validated (libyang cannot load this release's Cisco-IOS-XE-bgp)"
                );
                config.bgp = None;
            }
            let xml = config.to_netconf_xml();
            let json = config.to_restconf_json();
            let from_xml = yang::validate(&ctx, yang::config_inner(&xml), DataFormat::XML)
                .unwrap_or_else(|e| panic!("{release} {name} XML invalid: {e}\n{xml}"));
            let from_json = yang::validate(&ctx, &json, DataFormat::JSON)
                .unwrap_or_else(|e| panic!("{release} {name} JSON invalid: {e}\n{json}"));
            // The XML also carries nc:operation metadata ("@" members).
            assert_eq!(
                strip_metadata(serde_json::from_str(&from_xml).unwrap()),
                serde_json::from_str::<serde_json::Value>(&from_json).unwrap(),
                "{release} {name}: XML and JSON differ"
            );
        }
    }
}

/// Drops libyang's metadata members (`@` and `@name`) and the nodes a
/// `remove`/`delete` operation targets (RFC 7951 JSON cannot express those).
fn strip_metadata(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => {
            let removed: Vec<String> = m
                .iter()
                .filter_map(|(k, v)| {
                    let op = v
                        .get("ietf-netconf:operation")
                        .and_then(serde_json::Value::as_str);
                    let target = if k == "@" { None } else { k.strip_prefix('@') };
                    matches!(op, Some("remove" | "delete"))
                        .then(|| target.map(str::to_owned))
                        .flatten()
                })
                .collect();
            m.into_iter()
                .filter(|(k, _)| !k.starts_with('@') && !removed.contains(k))
                .map(|(k, v)| (k, strip_metadata(v)))
                .collect()
        }
        serde_json::Value::Array(a) => a.into_iter().map(strip_metadata).collect(),
        other => other,
    }
}

/// The validator is not a rubber stamp: a wrong node name, a wrong choice
/// combination and an out-of-range port are rejected.
#[test]
fn validator_rejects_broken_payloads() {
    let ctx = yang::context(RELEASES[0]);
    let config = iosxe::build(&ssh_block(), &device("r1")).unwrap();
    let xml = config.to_netconf_xml();
    let inner = yang::config_inner(&xml);
    for (what, broken) in [
        (
            "unknown leaf",
            inner
                .replacen("<dst-eq>", "<dst-equal>", 1)
                .replacen("</dst-eq>", "</dst-equal>", 1),
        ),
        (
            "two cases of one choice",
            inner.replacen("<any/>", "<any/><host>10.0.0.1</host>", 1),
        ),
        (
            "port out of range",
            inner.replacen("<dst-eq>22</dst-eq>", "<dst-eq>70000</dst-eq>", 1),
        ),
    ] {
        assert_ne!(broken, inner, "{what}: mutation did not apply");
        assert!(
            yang::validate(&ctx, &broken, DataFormat::XML).is_err(),
            "{what} was accepted"
        );
    }
}

#[test]
fn acl_names_and_sequences_follow_the_documented_scheme() {
    let config = iosxe::build(&web_firewall(), &device("r1")).unwrap();
    let v4 = &config.ipv4_acls[0];
    let v6 = &config.ipv6_acls[0];
    assert!(v4.name.starts_with("RP4-acme-web_tier-"), "{}", v4.name);
    assert!(v6.name.starts_with("RP6-acme-web_tier-"), "{}", v6.name);
    let v4_seqs: Vec<u64> = v4.lines.keys().copied().collect();
    // Rule 10: remark + 1 source x 1 destination x 2 ports; rule 20: 1; rule
    // 30: 1; rule 40: remark + 1; default last.
    assert_eq!(
        v4_seqs,
        [
            10_000,
            10_001,
            10_002,
            20_001,
            30_001,
            40_000,
            40_001,
            iosxe::DEFAULT_ACE_SEQUENCE
        ]
    );
    // Rule 20 only names IPv4 destinations and rule 30 is ICMPv4: neither
    // reaches the IPv6 ACL; rule 31 (ICMPv6) only reaches it.
    let v6_seqs: Vec<u64> = v6.lines.keys().copied().collect();
    assert_eq!(
        v6_seqs,
        [
            10_000,
            10_001,
            10_002,
            31_001,
            iosxe::DEFAULT_ACE_SEQUENCE - 2,
            iosxe::DEFAULT_ACE_SEQUENCE - 1,
            iosxe::DEFAULT_ACE_SEQUENCE
        ]
    );
    // r2 gets the same ACLs, bound outbound only.
    let r2 = iosxe::build(&web_firewall(), &device("r2")).unwrap();
    assert_eq!(r2.ipv4_acls, config.ipv4_acls);
    let (_, binding) = r2.interfaces.iter().next().unwrap();
    assert_eq!(binding.acls.ipv4_in, None);
    assert_eq!(binding.acls.ipv4_out.as_deref(), Some(v4.name.as_str()));
    // Default-permit and IPv4-only: no IPv6 ACL and no IPv6 binding.
    let ssh = iosxe::build(&ssh_block(), &device("r1")).unwrap();
    assert!(ssh.ipv6_acls.is_empty());
    assert!(ssh.interfaces.values().all(|i| i.acls.ipv6_out.is_none()));
}

#[test]
fn bad_input_is_rejected_with_its_place() {
    let mut spec = ssh_block();
    let ServiceBody::Firewall(fw) = &mut spec.body else {
        unreachable!()
    };
    fw.targets.devices[0].interface = "Gi2".to_owned();
    let err = iosxe::build(&spec, &device("r1")).unwrap_err();
    assert!(
        matches!(&err, IosXeError::BadInterface { field, .. } if field == "spec.targets.devices[0].interface"),
        "{err}"
    );

    let mut spec = ssh_block();
    let ServiceBody::Firewall(fw) = &mut spec.body else {
        unreachable!()
    };
    fw.rules[0].sequence = iosxe::MAX_RULE_SEQUENCE + 1;
    let err = iosxe::build(&spec, &device("r1")).unwrap_err();
    assert!(
        matches!(&err, IosXeError::SequenceOutOfRange { field, .. } if field == "spec.rules[0].sequence"),
        "{err}"
    );

    let mut spec = ssh_block();
    let ServiceBody::Firewall(fw) = &mut spec.body else {
        unreachable!()
    };
    // IPv6 sides are not object-grouped, so they still expand.
    fw.rules[0].sources = (0..40)
        .map(|i| format!("2001:db8:{i}::/48").parse().unwrap())
        .collect();
    fw.rules[0].destinations = (0..40)
        .map(|i| format!("2001:db8:ff{i:02}::1/128").parse().unwrap())
        .collect();
    let err = iosxe::build(&spec, &device("r1")).unwrap_err();
    assert!(
        matches!(&err, IosXeError::TooManyEntries { count: 3200, .. }),
        "{err}"
    );
}

/// The NAT example renders inside/outside on the interfaces, the static
/// entries keyed by their address pair, and the overload ACL referenced by
/// `ip nat inside source list ... interface ... overload`.
#[test]
fn nat_renders_interfaces_statics_and_overload() {
    let config = iosxe::build(&nat_firewall(), &device("r1")).unwrap();
    let sides: Vec<(String, Option<iosxe::NatSide>)> = config
        .interfaces
        .iter()
        .map(|(id, c)| (format!("{}{}", id.kind, id.number), c.nat))
        .collect();
    assert_eq!(
        sides,
        [
            ("GigabitEthernet1".to_owned(), Some(iosxe::NatSide::Outside)),
            ("GigabitEthernet2".to_owned(), Some(iosxe::NatSide::Inside)),
        ]
    );
    assert_eq!(config.nat_static.len(), 2);
    assert_eq!(
        config.nat_static[1].port,
        Some(("tcp".to_owned(), 22, 2222))
    );
    assert_eq!(config.nat_overloads.len(), 1);
    let pat = &config.nat_overloads[0];
    assert!(pat.acl.starts_with("RPN1-acme-edge_nat-"), "{}", pat.acl);
    assert_eq!(pat.interface, "GigabitEthernet1");
    let acl = config.ipv4_acls.iter().find(|a| a.name == pat.acl).unwrap();
    assert_eq!(acl.lines.len(), 2, "one permit per overload source");
    let xml = config.to_netconf_xml();
    for needle in [
        "<nat xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-nat\">",
        "<inside/>",
        "<outside/>",
        "<overload/>",
        "<global-port>2222</global-port>",
    ] {
        assert!(xml.contains(needle), "{needle} missing:\n{xml}");
    }
}

/// NAT the renderer cannot express is refused with the field, never
/// dropped: an interface type without `ip nat`, two port translations of
/// one address pair; the other platforms render it or refuse it.
#[test]
fn nat_refusals_name_the_field() {
    let mut spec = nat_firewall();
    let ServiceBody::Firewall(fw) = &mut spec.body else {
        unreachable!()
    };
    let nat = fw.nat.as_mut().unwrap();
    nat.devices[0].inside_interfaces.push("Tunnel5".to_owned());
    let err = iosxe::build(&spec, &device("r1")).unwrap_err();
    assert!(
        matches!(&err, IosXeError::Unsupported { field, .. } if field == "spec.nat.devices[0].insideInterfaces[1]"),
        "{err}"
    );

    let mut spec = nat_firewall();
    let ServiceBody::Firewall(fw) = &mut spec.body else {
        unreachable!()
    };
    let nat = fw.nat.as_mut().unwrap();
    let mut twin = nat.devices[0].static_mappings[1].clone();
    twin.local_port = Some(23);
    twin.global_port = Some(2323);
    nat.devices[0].static_mappings.push(twin);
    let err = iosxe::build(&spec, &device("r1")).unwrap_err();
    assert!(
        matches!(&err, IosXeError::Unsupported { field, .. } if field == "spec.nat.devices[0].staticMappings[2]"),
        "{err}"
    );

    for platform in [
        Platform::Asa,
        Platform::Ftd,
        Platform::MerakiMx,
        Platform::SdWan,
    ] {
        let mut d = device("r1");
        d.platform = platform;
        let inventory: BTreeMap<String, Device> = [("r1".to_owned(), d)].into();
        // Rendered (the translation is in it) or refused naming the NAT
        // entry (SD-WAN Manager refuses firewalls as a whole): never the
        // firewall without its NAT.
        match rampart_controller::compile::compile(&nat_firewall(), &inventory) {
            Ok(renderings) => {
                let text: String = renderings.iter().map(|r| r.content.as_str()).collect();
                assert!(
                    text.contains("203.0.113.10") && text.contains("203.0.113.11"),
                    "{platform:?} rendered the firewall without its static NAT:\n{text}"
                );
            }
            Err(err) => {
                let msg = err.to_string();
                assert!(
                    msg.contains("spec.nat.devices[0]")
                        || (platform == Platform::SdWan && msg.contains("Firewall")),
                    "{platform:?}: {msg}"
                );
            }
        }
    }
}

/// Several addresses on one side of a rule become one network object-group
/// referenced by one ACE (per remaining port), named by content so another
/// service with the same set refers to the same group.
#[test]
fn object_groups_shorten_acls_and_are_named_by_content() {
    let config = iosxe::build(&grouped_firewall("grouped"), &device("r1")).unwrap();
    assert_eq!(
        config.network_groups.len(),
        2,
        "{:?}",
        config.network_groups
    );
    let v4 = &config.ipv4_acls[0];
    // Rule 10: one ACE (3 sources grouped) instead of 3; rule 20: one ACE
    // per port (3 destinations grouped) instead of 6; plus the default.
    assert_eq!(v4.lines.len(), 1 + 2 + 1, "{v4:?}");
    let xml = config.to_netconf_xml();
    assert!(xml.contains("<object-group>RPGN-"), "{xml}");
    assert!(xml.contains("<dst-object-group>RPGN-"), "{xml}");
    // The IPv6 source is not grouped.
    assert!(
        xml.contains("<source-prefix>2001:db8:1::/48</source-prefix>"),
        "{xml}"
    );
    let other = iosxe::build(&grouped_firewall("other"), &device("r1")).unwrap();
    assert_eq!(other.network_groups, config.network_groups);
    assert_ne!(other.ipv4_acls[0].name, v4.name);
}
