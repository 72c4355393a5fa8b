//! Merging services on one network and the edit between two states,
//! without the Dashboard.

use std::collections::BTreeMap;

use super::*;
use crate::{
    platforms::{driver::DevicePlatform, rest::RestSettings},
    wire::edit::Edit,
};

fn rule(comment: &str, port: &str) -> L3Rule {
    L3Rule {
        comment: format!("RPM-{comment}"),
        policy: "allow".to_owned(),
        protocol: "tcp".to_owned(),
        src_cidr: "Any".to_owned(),
        src_port: "Any".to_owned(),
        dest_cidr: "192.0.2.10/32".to_owned(),
        dest_port: port.to_owned(),
        syslog_enabled: false,
    }
}

fn service(comment: &str, default: &str) -> MerakiConfig {
    MerakiConfig {
        l3: vec![rule(comment, "443")],
        l3_default: Some(default.to_owned()),
        ..MerakiConfig::default()
    }
}

#[test]
fn rules_concatenate_in_service_order_and_defaults_must_agree() {
    let p = MerakiPlatform::new(RestSettings::meraki());
    let merged = p
        .merge(BTreeMap::from([
            ("t/b".to_owned(), service("b", "deny")),
            ("t/a".to_owned(), service("a", "deny")),
        ]))
        .unwrap();
    let comments: Vec<&str> = merged.l3.iter().map(|r| r.comment.as_str()).collect();
    assert_eq!(comments, ["RPM-a", "RPM-b"]);
    assert_eq!(merged.l3_default.as_deref(), Some("deny"));
    let e = p
        .merge(BTreeMap::from([
            ("t/a".to_owned(), service("a", "deny")),
            ("t/b".to_owned(), service("b", "allow")),
        ]))
        .unwrap_err();
    assert_eq!((e.first.as_str(), e.second.as_str()), ("t/a", "t/b"));
    assert!(e.what.contains("outbound"), "{e}");
}

#[test]
fn the_edit_is_typed_calls_and_nothing_when_equal() {
    let p = MerakiPlatform::new(RestSettings::meraki());
    let c = service("a", "deny");
    assert_eq!(p.diff(&c, &c), None);
    let Some(Edit::Http { calls, notes }) = p.diff(&MerakiConfig::default(), &c) else {
        panic!("an HTTP edit")
    };
    assert!(!notes.is_empty());
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("PUT", paths::L3)
    );
    let rules = calls[0].body.as_ref().unwrap()["rules"]
        .as_array()
        .unwrap()
        .clone();
    assert_eq!(rules.first().unwrap()["comment"], "RPM-a");
}
