//! Reconciliation without a device: reading `show running-config` back,
//! merging services, the edit between two states, and drift.

use std::collections::BTreeMap;

use super::*;
use crate::{
    platforms::driver::{Adapter, DevicePlatform, PlatformDriver},
    wire::edit::Edit,
};

fn config(service: &str, interface: &str) -> AsaConfig {
    AsaConfig {
        groups: vec![ObjectGroup {
            name: "RPG-web".to_owned(),
            kind: "network".to_owned(),
            members: vec!["network-object host 192.0.2.10".to_owned()],
        }],
        acls: vec![Acl {
            name: format!("RPA-{service}"),
            entries: vec![
                "extended permit tcp object-group RPG-web any eq 443".to_owned(),
                "extended deny ip any any".to_owned(),
            ],
        }],
        bindings: vec![Binding {
            acl: format!("RPA-{service}"),
            direction: "in".to_owned(),
            interface: interface.to_owned(),
        }],
        nat_objects: vec![NatObject {
            name: format!("RPO-{service}"),
            host: "10.0.0.10".to_owned(),
            nat: format!(
                "(inside,outside) static 203.0.113.{} service tcp 443 443",
                service.len() + usize::from(service.as_bytes()[0])
            ),
            subnet: None,
        }],
    }
}

fn platform() -> AsaPlatform {
    AsaPlatform::new(AsaSettings {
        host_key: crate::transport::known_hosts::HostKeyPolicy {
            known_hosts: "/nonexistent".into(),
            trust_on_first_use: false,
        },
        connect_timeout: std::time::Duration::from_secs(1),
        command_timeout: std::time::Duration::from_secs(1),
    })
}

#[test]
fn running_config_reads_back_rampart_objects_only() {
    let c = config("a", "outside");
    let mut text = vec![
        "access-list OTHER extended permit ip any any".to_owned(),
        "object-group network NOT-OURS".to_owned(),
        " network-object host 198.51.100.1".to_owned(),
    ];
    text.extend(c.running_lines());
    text.push("access-group OTHER in interface dmz".to_owned());
    // Port names the ASA prints are read as the numbers Rampart renders.
    let shown = text.join("\n").replace("eq 443", "eq https");
    assert_eq!(parse_running(&shown), c);
}

#[test]
fn services_binding_one_interface_conflict_and_shared_groups_merge_once() {
    let p = platform();
    let two = BTreeMap::from([
        ("t/a".to_owned(), config("a", "outside")),
        ("t/b".to_owned(), config("b", "dmz")),
    ]);
    let merged = p.merge(two).unwrap();
    assert_eq!(merged.groups.len(), 1, "the shared group is kept once");
    assert_eq!(merged.acls.len(), 2);
    let clash = BTreeMap::from([
        ("t/a".to_owned(), config("a", "outside")),
        ("t/b".to_owned(), config("b", "outside")),
    ]);
    let e = p.merge(clash).unwrap_err();
    assert_eq!((e.first.as_str(), e.second.as_str()), ("t/a", "t/b"));
    assert!(e.what.contains("interface outside"), "{e}");
}

#[test]
fn the_edit_is_typed_lines_and_nothing_when_equal() {
    let p = platform();
    let c = config("a", "outside");
    assert_eq!(p.diff(&c, &c), None);
    let Some(Edit::Cli { lines }) = p.diff(&AsaConfig::default(), &c) else {
        panic!("a CLI edit")
    };
    assert!(lines.contains(&"access-group RPA-a in interface outside".to_owned()));
    let Some(Edit::Cli { lines: back }) = p.diff(&c, &AsaConfig::default()) else {
        panic!("a CLI edit")
    };
    // Clearing the ACL drops its binding with it; the objects go after it.
    assert_eq!(
        back,
        [
            "clear configure access-list RPA-a",
            "no object-group network RPG-web",
            "no object network RPO-a"
        ]
    );
}

#[test]
fn drift_names_missing_and_foreign_lines() {
    let p = platform();
    let c = config("a", "outside");
    let mut actual = c.running_lines();
    actual.retain(|l| !l.starts_with("access-group"));
    actual.push("access-list RPA-a extended permit ip any any".to_owned());
    let d = p.drift(&c, None, &actual.join("\n")).unwrap();
    let said: Vec<(&str, &str)> = d
        .iter()
        .map(|x| (x.path.as_str(), x.what.as_str()))
        .collect();
    assert!(
        said.contains(&(
            "access-group RPA-a in interface outside",
            "missing on the device"
        )),
        "{said:?}"
    );
    assert!(
        said.contains(&(
            "access-list RPA-a extended permit ip any any",
            "on the device, not set by Rampart"
        )),
        "{said:?}"
    );
    assert!(
        p.drift(&c, None, &c.running_lines().join("\n"))
            .unwrap()
            .is_empty()
    );
    // Through the engine's adapter, the stored JSON form gives the same answer.
    let stored = serde_json::to_value(&c).unwrap();
    let adapter = Adapter(platform());
    assert_eq!(adapter.drift(&stored, None, &actual.join("\n")).unwrap(), d);
}
