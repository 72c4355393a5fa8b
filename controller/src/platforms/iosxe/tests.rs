//! Merging services on one IOS-XE device and the NETCONF edit between two
//! states, without a device.

use std::collections::BTreeMap;

use super::*;
use crate::{
    platforms::{Settings, driver::DevicePlatform},
    wire::edit::Edit,
};

fn with_acl(name: &str, remark: &str) -> IosXeConfig {
    IosXeConfig {
        ipv4_acls: vec![Acl {
            name: name.to_owned(),
            lines: BTreeMap::from([(10, AclLine::Remark(remark.to_owned()))]),
        }],
        ..IosXeConfig::default()
    }
}

fn platform() -> IosXePlatform {
    let s = Settings::default();
    IosXePlatform::new(NetconfSettings {
        known_hosts: s.known_hosts,
        trust_on_first_use: false,
        connect_timeout: s.connect_timeout,
        rpc_timeout: s.rpc_timeout,
        confirm_timeout: s.confirm_timeout,
    })
}

#[test]
fn an_acl_two_services_define_alike_is_kept_once_and_a_different_one_conflicts() {
    let p = platform();
    let same = p
        .merge(BTreeMap::from([
            ("t/a".to_owned(), with_acl("RP4-x", "r")),
            ("t/b".to_owned(), with_acl("RP4-x", "r")),
        ]))
        .unwrap();
    assert_eq!(same.ipv4_acls.len(), 1);
    let e = p
        .merge(BTreeMap::from([
            ("t/a".to_owned(), with_acl("RP4-x", "r")),
            ("t/b".to_owned(), with_acl("RP4-x", "other")),
        ]))
        .unwrap_err();
    assert_eq!(
        (e.what.as_str(), e.first.as_str(), e.second.as_str()),
        ("ACL RP4-x", "t/a", "t/b")
    );
}

#[test]
fn the_edit_is_a_netconf_config_adding_and_deleting_acls() {
    let p = platform();
    let c = with_acl("RP4-x", "r");
    assert_eq!(p.diff(&c, &c), None);
    let Some(Edit::NetconfXml { config }) = p.diff(&IosXeConfig::default(), &c) else {
        panic!("a NETCONF edit")
    };
    assert!(
        config.starts_with("<config") && config.contains("RP4-x"),
        "{config}"
    );
    let Some(Edit::NetconfXml { config: back }) = p.diff(&c, &IosXeConfig::default()) else {
        panic!("a NETCONF edit")
    };
    assert!(
        back.contains("<name>RP4-x</name>") && back.contains("nc:operation=\"remove\""),
        "{back}"
    );
    // The stored form round-trips through the adapter's encoding.
    let stored = IosXePlatform::encode(&c).unwrap();
    assert_eq!(IosXePlatform::decode(&stored).unwrap(), c);
}
