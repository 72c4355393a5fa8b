//! The IOS-XE driver end to end against real netconfd instances with the
//! Cisco 16.9.3 models: a service rendering applied, read back and compared
//! with libyang; replace semantics; rejected edits leave nothing behind;
//! device-side and controller-side confirmation; lock contention; several
//! devices at once.

mod support;

use std::{collections::BTreeMap, time::Duration};

use rampart_controller::{
    compile::{Format, iosxe},
    model::{
        device::{Device, Platform},
        spec::{
            Action, DeviceTarget, Direction, FirewallRule, FirewallSpec, Metadata, PortRange,
            Protocol, ServiceBody, ServiceSpec, Targets,
        },
    },
    transport::{
        iosxe_driver::{ApplyOptions, Confirmation, DriverError, DriverOptions, IosXeDriver},
        netconf::{Datastore, Session},
    },
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

fn xml_rendering(spec: &ServiceSpec, dev: &str) -> rampart_controller::compile::Rendering {
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
