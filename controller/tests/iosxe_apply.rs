//! The IOS-XE driver end to end against real netconfd instances with the
//! Cisco 16.9.3 models: a service rendering applied, read back and compared
//! with libyang; replace semantics; rejected edits leave nothing behind;
//! device-side and controller-side confirmation; lock contention; several
//! devices at once.

mod support;

use std::{collections::BTreeMap, time::Duration};

use rampart_controller::{
    model::{
        device::{Device, Platform},
        spec::{
            Action, DeviceTarget, Direction, FirewallRule, FirewallSpec, Metadata, PortRange,
            Protocol, ServiceBody, ServiceSpec, Targets,
        },
    },
    platforms::iosxe,
    platforms::iosxe::pooled::{
        ApplyOptions, Confirmation, DriverError, DriverOptions, IosXeDriver,
    },
    transport::netconf::{Datastore, Session},
    wire::Format,
};
use support::netconfd::{Netconfd, yang};
use yang3::data::DataFormat;

fn device(name: &str) -> Device {
    Device {
        name: name.to_owned(),
        platform: Platform::IosXe,
        address: String::new(),
        credentials_ref: String::new(),
        labels: BTreeMap::new(),
        created_unix: 0,
    }
}

fn firewall(service: &str, ports: &[u16], dev: &str) -> ServiceSpec {
    let rules = ports
        .iter()
        .zip(1u32..)
        .map(|(&p, i)| FirewallRule {
            sequence: i * 10,
            action: Action::Permit,
            protocol: Protocol::Tcp,
            sources: vec![
                "10.0.0.0/8".parse().unwrap(),
                "2001:db8::/32".parse().unwrap(),
            ],
            destinations: vec![],
            source_ports: vec![],
            destination_ports: vec![PortRange { first: p, last: p }],
            icmp_type: None,
            icmp_code: None,
            log: i == 1,
            description: Some(format!("port {p}")),
        })
        .collect();
    ServiceSpec {
        metadata: Metadata {
            name: service.to_owned(),
            tenant: "acme".to_owned(),
            labels: BTreeMap::new(),
        },
        body: ServiceBody::Firewall(FirewallSpec {
            default_action: Action::Deny,
            rules,
            targets: Targets {
                devices: vec![DeviceTarget {
                    device: dev.to_owned(),
                    interface: "GigabitEthernet2".to_owned(),
                    direction: Direction::Both,
                }],
                hosts: vec![],
            },
            nat: None,
        }),
    }
}

fn xml_rendering(spec: &ServiceSpec, dev: &str) -> rampart_controller::wire::Rendering {
    iosxe::render(spec, &device(dev))
        .unwrap()
        .into_iter()
        .find(|r| r.format == Format::NetconfXml)
        .unwrap()
}

fn driver(nc: &Netconfd, name: &str, options: DriverOptions) -> IosXeDriver {
    let d = IosXeDriver::new(options);
    d.register(name, nc.session_config());
    d
}

/// Canonical libyang JSON of a NETCONF document, with metadata dropped.
fn canonical(ctx: &yang3::context::Context, native_xml: &str) -> serde_json::Value {
    let json = yang::validate(ctx, native_xml, DataFormat::XML)
        .unwrap_or_else(|e| panic!("{e}\n{native_xml}"));
    strip(serde_json::from_str(&json).unwrap())
}

fn strip(v: serde_json::Value) -> serde_json::Value {
    match v {
        serde_json::Value::Object(m) => m
            .into_iter()
            .filter(|(k, _)| k != "@")
            .map(|(k, v)| (k, strip(v)))
            .collect(),
        serde_json::Value::Array(a) => a.into_iter().map(strip).collect(),
        other => other,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rendering_applied_reads_back_identically_and_replaces() {
    let Some(nc) = Netconfd::start() else { return };
    let d = driver(&nc, "r1", DriverOptions::default());
    let spec = firewall("web", &[80, 443, 8443], "r1");
    let rendering = xml_rendering(&spec, "r1");
    let report = d
        .apply("r1", &rendering)
        .await
        .unwrap_or_else(|e| panic!("{e}\n{}", nc.log()));
    assert!(report.verified);
    assert_eq!(report.confirmation, Confirmation::None);

    // The running configuration is exactly the rendering (netconfd starts
    // empty), compared as libyang data trees.
    let ctx = yang::context("cisco-xe-16.9.3");
    let running = d.running("r1").await.unwrap();
    assert_eq!(
        canonical(&ctx, &running),
        canonical(&ctx, yang::config_inner(&rendering.content))
    );

    // Dropping a rule: the ACL is replaced, so its ACEs disappear.
    let smaller = xml_rendering(&firewall("web", &[80], "r1"), "r1");
    d.apply("r1", &smaller).await.unwrap();
    let running = d.running("r1").await.unwrap();
    assert_eq!(
        canonical(&ctx, &running),
        canonical(&ctx, yang::config_inner(&smaller.content))
    );
    assert!(!running.contains("<dst-eq>443</dst-eq>"), "{running}");

    // The RESTCONF rendering is refused by the NETCONF driver.
    let json = iosxe::render(&spec, &device("r1"))
        .unwrap()
        .into_iter()
        .find(|r| r.format == Format::RestconfJson)
        .unwrap();
    assert!(matches!(
        d.apply("r1", &json).await,
        Err(DriverError::WrongFormat { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rejected_edit_leaves_nothing_and_names_the_path() {
    let Some(nc) = Netconfd::start() else { return };
    let d = driver(&nc, "r1", DriverOptions::default());
    let good = xml_rendering(&firewall("web", &[80], "r1"), "r1");
    d.apply("r1", &good).await.unwrap();
    let before = d.running("r1").await.unwrap();
    // A second ACL whose port is out of range, in the same edit as a change
    // to the first.
    let bad = good
        .content
        .replace("<dst-eq>80</dst-eq>", "<dst-eq>81</dst-eq>");
    let bad = bad.replacen(
        "<access-list>\n",
        "<access-list><extended xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-acl\"><name>BROKEN</name><access-list-seq-rule><sequence>1</sequence><ace-rule><action>permit</action><protocol>tcp</protocol><any/><dst-any/><dst-eq>99999</dst-eq></ace-rule></access-list-seq-rule></extended>",
        1,
    );
    let err = d
        .apply_xml("r1", &bad, ApplyOptions::default())
        .await
        .unwrap_err();
    let DriverError::Netconf { source, .. } = &err else {
        panic!("{err}")
    };
    let errors = source.netconf().unwrap().rpc_errors();
    assert!(
        errors[0]
            .path
            .as_deref()
            .unwrap_or_default()
            .contains("BROKEN"),
        "{err}"
    );
    assert_eq!(
        d.running("r1").await.unwrap(),
        before,
        "running changed after a rejected edit"
    );
    // The candidate was discarded and unlocked: a fresh session can lock it
    // and finds no leftover edits.
    let mut s = Session::connect(&nc.session_config()).unwrap();
    s.lock(Datastore::Candidate).unwrap();
    let cand = s.get_config(Datastore::Candidate, None).unwrap();
    assert!(
        !cand.contains("BROKEN") && !cand.contains("<dst-eq>81<"),
        "{cand}"
    );
    s.unlock(Datastore::Candidate).unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn device_side_confirmed_commit() {
    let Some(nc) = Netconfd::start() else { return };
    let d = driver(&nc, "r1", DriverOptions::default());
    let confirm = ApplyOptions {
        confirm: Some(Duration::from_secs(60)),
    };
    let r = xml_rendering(&firewall("keep", &[22], "r1"), "r1");
    let report = d.apply_xml("r1", &r.content, confirm).await.unwrap();
    let Confirmation::Device { persist_id, .. } = &report.confirmation else {
        panic!("{:?}", report.confirmation)
    };
    d.confirm("r1", persist_id).await.unwrap();
    assert!(d.running("r1").await.unwrap().contains("RP4-acme-keep-"));

    // Not confirmed: the device rolls back on its own (yuma123 runs its
    // timers after ~1 s without traffic, so wait quietly).
    let r2 = xml_rendering(&firewall("drop", &[23], "r1"), "r1");
    let report = d
        .apply_xml(
            "r1",
            &r2.content,
            ApplyOptions {
                confirm: Some(Duration::from_secs(1)),
            },
        )
        .await
        .unwrap();
    assert!(matches!(report.confirmation, Confirmation::Device { .. }));
    let mut gone = false;
    for _ in 0..10 {
        tokio::time::sleep(Duration::from_millis(1500)).await;
        if !d.running("r1").await.unwrap().contains("RP4-acme-drop-") {
            gone = true;
            break;
        }
    }
    assert!(gone, "unconfirmed change survived");
    assert!(
        d.running("r1").await.unwrap().contains("RP4-acme-keep-"),
        "confirmed change lost"
    );
    assert!(matches!(
        d.confirm("r1", "no-such-token").await,
        Err(DriverError::UnknownConfirmation { .. } | DriverError::Netconf { .. })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn controller_side_confirm_timer_restores_previous_config() {
    let Some(nc) = Netconfd::start() else { return };
    // The IOS-XE path: no device-side confirmed commit.
    let d = driver(
        &nc,
        "r1",
        DriverOptions {
            force_controller_confirm: true,
            ..DriverOptions::default()
        },
    );
    let base = xml_rendering(&firewall("base", &[80], "r1"), "r1");
    d.apply("r1", &base).await.unwrap();
    let before = d.running("r1").await.unwrap();

    let change = xml_rendering(&firewall("trial", &[8080], "r1"), "r1");
    let report = d
        .apply_xml(
            "r1",
            &change.content,
            ApplyOptions {
                confirm: Some(Duration::from_millis(800)),
            },
        )
        .await
        .unwrap();
    let Confirmation::Controller { token, .. } = report.confirmation.clone() else {
        panic!("{:?}", report.confirmation)
    };
    assert!(d.is_pending(&token));
    assert!(d.running("r1").await.unwrap().contains("RP4-acme-trial-"));
    let mut restored = false;
    for _ in 0..50 {
        tokio::time::sleep(Duration::from_millis(200)).await;
        if !d.is_pending(&token) && d.running("r1").await.unwrap() == before {
            restored = true;
            break;
        }
    }
    assert!(
        restored,
        "controller-side timer did not restore the previous configuration"
    );

    // Confirmed in time: the change stays.
    let report = d
        .apply_xml(
            "r1",
            &change.content,
            ApplyOptions {
                confirm: Some(Duration::from_millis(800)),
            },
        )
        .await
        .unwrap();
    let token = report.confirmation.token().unwrap().to_owned();
    d.confirm("r1", &token).await.unwrap();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(d.running("r1").await.unwrap().contains("RP4-acme-trial-"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn lock_held_elsewhere_is_reported_with_its_holder() {
    let Some(nc) = Netconfd::start() else { return };
    let d = driver(
        &nc,
        "r1",
        DriverOptions {
            lock_wait: Duration::from_millis(300),
            ..DriverOptions::default()
        },
    );
    let mut holder = Session::connect(&nc.session_config()).unwrap();
    holder.lock(Datastore::Candidate).unwrap();
    let r = xml_rendering(&firewall("web", &[80], "r1"), "r1");
    let err = d.apply("r1", &r).await.unwrap_err();
    match &err {
        DriverError::Locked { holder: h, .. } => assert_eq!(h, &holder.session_id().to_string()),
        other => panic!("expected Locked, got {other}"),
    }
    holder.unlock(Datastore::Candidate).unwrap();
    d.apply("r1", &r).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_devices_side_by_side() {
    let servers: Vec<Netconfd> = (0..3).filter_map(|_| Netconfd::start()).collect();
    if servers.len() < 3 {
        return;
    }
    let d = IosXeDriver::new(DriverOptions::default());
    for (i, nc) in servers.iter().enumerate() {
        d.register(&format!("r{i}"), nc.session_config());
    }
    let tasks: Vec<_> = (0..3)
        .map(|i| {
            let d = d.clone();
            let name = format!("r{i}");
            let r = xml_rendering(
                &firewall(
                    &format!("svc{i}"),
                    &[1000 + u16::try_from(i).unwrap()],
                    &name,
                ),
                &name,
            );
            tokio::spawn(async move { d.apply(&name, &r).await })
        })
        .collect();
    for t in tasks {
        assert!(t.await.unwrap().unwrap().verified);
    }
    for i in 0..3 {
        let running = d.running(&format!("r{i}")).await.unwrap();
        assert!(
            running.contains(&format!("RP4-acme-svc{i}-")),
            "r{i}: {running}"
        );
        for j in (0..3).filter(|j| *j != i) {
            assert!(
                !running.contains(&format!("RP4-acme-svc{j}-")),
                "r{i} holds r{j}'s ACL"
            );
        }
    }
}

// ===== ownership through the transaction merge: NAT and static routes =====

use rampart_controller::{
    model::{DocFormat, SourceDoc, Validator},
    platforms::iosxe::state as txn_iosxe,
    platforms::iosxe::{IosXeConfig, tree},
};

/// Validates one YAML service against a one-device inventory (`r1`).
fn validated(yaml: &str) -> ServiceSpec {
    let inventory: BTreeMap<String, Device> = [("r1".to_owned(), device("r1"))].into();
    let mut docs = Validator::new()
        .unwrap()
        .validate(
            &SourceDoc {
                text: yaml,
                format: DocFormat::Yaml,
                name: "test.yaml",
            },
            &inventory,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    docs.remove(0).spec
}

/// The merged device state of `specs` (what the transaction engine keeps).
fn merged(specs: &[&ServiceSpec]) -> IosXeConfig {
    let contributions: BTreeMap<String, IosXeConfig> = specs
        .iter()
        .map(|s| {
            (
                format!("{}/{}", s.metadata.tenant, s.metadata.name),
                iosxe::build(s, &device("r1")).unwrap(),
            )
        })
        .collect();
    txn_iosxe::merge(&contributions).unwrap()
}

/// Canonical libyang JSON of the running configuration with interface
/// entries that hold nothing but their name dropped (interfaces are
/// physical: Rampart removes its settings, never the interface).
fn running_state(ctx: &yang3::context::Context, running: &str) -> serde_json::Value {
    let mut v = canonical(ctx, running);
    if let Some(native) = v
        .pointer_mut("/Cisco-IOS-XE-native:native")
        .and_then(serde_json::Value::as_object_mut)
    {
        if let Some(ifaces) = native
            .get_mut("interface")
            .and_then(serde_json::Value::as_object_mut)
        {
            for list in ifaces.values_mut() {
                if let Some(entries) = list.as_array_mut() {
                    entries.retain(|e| e.as_object().is_some_and(|o| o.len() > 1));
                }
            }
            ifaces.retain(|_, l| l.as_array().is_none_or(|a| !a.is_empty()));
            if ifaces.is_empty() {
                native.remove("interface");
            }
        }
        if native.is_empty() {
            v = serde_json::json!({});
        }
    }
    v
}

/// The state `config` denotes, in the same canonical form.
fn intended(ctx: &yang3::context::Context, config: &IosXeConfig) -> serde_json::Value {
    let xml = tree::to_netconf_config(&config.to_tree(false), tree::Module::Native);
    running_state(ctx, yang::config_inner(&xml))
}

/// Moves the device from `prev` to `next` with the transaction engine's
/// edit and checks the running configuration is exactly `next`.
async fn step(
    d: &IosXeDriver,
    nc: &Netconfd,
    ctx: &yang3::context::Context,
    prev: &IosXeConfig,
    next: &IosXeConfig,
) -> String {
    let edit = txn_iosxe::edit_xml(prev, next);
    d.apply_xml("r1", &edit, ApplyOptions::default())
        .await
        .unwrap_or_else(|e| panic!("{e}\n{edit}\n{}", nc.log()));
    let running = d.running("r1").await.unwrap();
    assert_eq!(
        running_state(ctx, &running),
        intended(ctx, next),
        "running differs from the intended state after\n{edit}"
    );
    running
}

const NAT_SHARED: &str = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: branch-nat, tenant: acme}
spec:
  defaultAction: permit
  targets:
    devices:
      - {device: r1, interface: GigabitEthernet3, direction: egress}
  nat:
    devices:
      - device: r1
        insideInterfaces: [GigabitEthernet2]
        outsideInterfaces: [GigabitEthernet3]
        staticMappings:
          - {insideLocal: 10.10.0.10, insideGlobal: 203.0.113.10}
          - {insideLocal: 10.20.0.7, insideGlobal: 198.51.100.7, protocol: udp, localPort: 53, globalPort: 5353}
";

/// The NAT example applied through the transaction merge, read back
/// identically; a second service sharing a static entry and the inside
/// interface; deleting the first removes exactly what it alone owned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nat_service_applied_read_back_and_deleted_by_ownership() {
    let Some(nc) = Netconfd::start() else { return };
    let d = driver(&nc, "r1", DriverOptions::default());
    let ctx = yang::context("cisco-xe-16.9.3");
    let edge = validated(&include_str!("../../examples/firewall-nat.yaml").replace("csr1", "r1"));
    let branch = validated(NAT_SHARED);
    let empty = IosXeConfig::default();
    let one = merged(&[&edge]);
    let running = step(&d, &nc, &ctx, &empty, &one).await;
    assert!(running.contains("<overload/>"), "{running}");
    assert!(
        running.contains("<global-port>2222</global-port>"),
        "{running}"
    );

    let both = merged(&[&edge, &branch]);
    assert_eq!(both.nat_static.len(), 3, "the shared entry is held once");
    step(&d, &nc, &ctx, &one, &both).await;

    // Delete the example service: its overload (list + ACL), its own
    // static entry and GigabitEthernet1's outside role go; the shared
    // static entry and the inside interface stay for branch-nat.
    let only_branch = merged(&[&branch]);
    let running = step(&d, &nc, &ctx, &both, &only_branch).await;
    assert!(!running.contains("RPN1-acme-edge_nat-"), "{running}");
    assert!(!running.contains("203.0.113.11"), "{running}");
    assert!(running.contains("203.0.113.10"), "{running}");
    assert!(!running.contains("<overload/>"), "{running}");

    // Deleting the last one leaves no NAT at all.
    let running = step(&d, &nc, &ctx, &only_branch, &empty).await;
    assert!(
        !running.contains("<inside/>") && !running.contains("nat-static"),
        "{running}"
    );
}

const ROUTES_A: &str = "apiVersion: rampart.io/v1
kind: Router
metadata: {name: core, tenant: acme}
spec:
  devices:
    - device: r1
      staticRoutes:
        - {prefix: 0.0.0.0/0, nextHop: 203.0.113.1}
        - {prefix: 10.20.0.0/16, nextHop: 203.0.113.1, interface: GigabitEthernet2, distance: 200}
        - {prefix: 10.30.0.0/16, nextHop: 203.0.113.1}
        - {prefix: 10.40.0.0/16, interface: GigabitEthernet2, distance: 50}
        - {prefix: '2001:db8:aaaa::/48', nextHop: '2001:db8:ffff::1'}
";

const ROUTES_B: &str = "apiVersion: rampart.io/v1
kind: Router
metadata: {name: branch, tenant: acme}
spec:
  devices:
    - device: r1
      staticRoutes:
        - {prefix: 0.0.0.0/0, nextHop: 203.0.113.1}
        - {prefix: 10.30.0.0/16, nextHop: 203.0.113.5}
";

/// Issue #5: changing a vRouter removes the routes it dropped (a whole
/// prefix, one next hop of a shared prefix, a distance), and deleting it
/// removes exactly the routes it alone owned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn static_routes_removed_exactly_on_change_and_delete() {
    let Some(nc) = Netconfd::start() else { return };
    let d = driver(&nc, "r1", DriverOptions::default());
    let ctx = yang::context("cisco-xe-16.9.3");
    let a = validated(ROUTES_A);
    let b = validated(ROUTES_B);
    let empty = IosXeConfig::default();
    let both = merged(&[&a, &b]);
    step(&d, &nc, &ctx, &empty, &both).await;

    // Change A: drop the IPv6 route and 10.20/16, drop the distance of
    // 10.40/16, move 10.30/16 to another next hop.
    let changed = validated(
        &ROUTES_A
            .replace(
                "        - {prefix: 10.20.0.0/16, nextHop: 203.0.113.1, interface: GigabitEthernet2, distance: 200}\n",
                "",
            )
            .replace(
                "        - {prefix: '2001:db8:aaaa::/48', nextHop: '2001:db8:ffff::1'}\n",
                "",
            )
            .replace(", distance: 50", "")
            .replace("10.30.0.0/16, nextHop: 203.0.113.1", "10.30.0.0/16, nextHop: 203.0.113.9"),
    );
    let after_change = merged(&[&changed, &b]);
    let running = step(&d, &nc, &ctx, &both, &after_change).await;
    assert!(!running.contains("10.20.0.0"), "{running}");
    assert!(!running.contains("2001:db8:aaaa::/48"), "{running}");
    assert!(
        running.contains("203.0.113.5"),
        "B's next hop lost: {running}"
    );

    // Delete A: only B's routes remain (the shared default route stays).
    let only_b = merged(&[&b]);
    let running = step(&d, &nc, &ctx, &after_change, &only_b).await;
    assert!(!running.contains("10.40.0.0"), "{running}");
    assert!(!running.contains("203.0.113.9"), "{running}");
    assert!(running.contains("0.0.0.0"), "{running}");
}

fn grouped(name: &str, interface: &str) -> ServiceSpec {
    validated(&format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: acme}}
spec:
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, sources: [10.1.0.0/16, 10.2.0.0/16, 192.0.2.7/32], destinationPorts: [22]}}
  targets:
    devices:
      - {{device: r1, interface: {interface}}}
"
    ))
}

/// Two services whose rules name the same address set share one network
/// object-group on the device; deleting one leaves the group for the other,
/// deleting both removes it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shared_object_group_is_reference_counted() {
    let Some(nc) = Netconfd::start() else { return };
    let d = driver(&nc, "r1", DriverOptions::default());
    let ctx = yang::context("cisco-xe-16.9.3");
    let a = grouped("ops-a", "GigabitEthernet4");
    let b = grouped("ops-b", "GigabitEthernet5");
    let empty = IosXeConfig::default();
    let both = merged(&[&a, &b]);
    assert_eq!(both.network_groups.len(), 1);
    let group = both.network_groups[0].name.clone();
    let contributions: BTreeMap<String, IosXeConfig> = [&a, &b]
        .iter()
        .map(|s| {
            (
                s.metadata.name.clone(),
                iosxe::build(s, &device("r1")).unwrap(),
            )
        })
        .collect();
    assert_eq!(txn_iosxe::object_group_refcounts(&contributions)[&group], 2);

    let running = step(&d, &nc, &ctx, &empty, &both).await;
    assert!(running.contains(&group), "{running}");
    assert!(
        running.contains("<ipv4-host>192.0.2.7</ipv4-host>"),
        "{running}"
    );

    let only_b = merged(&[&b]);
    let running = step(&d, &nc, &ctx, &both, &only_b).await;
    assert!(
        running.contains(&group),
        "group removed while ops-b uses it: {running}"
    );
    assert!(!running.contains("RP4-acme-ops-a-"), "{running}");

    let running = step(&d, &nc, &ctx, &only_b, &empty).await;
    assert!(!running.contains(&group), "{running}");
}
