//! Merging services on one SD-WAN Manager and the edit between two states,
//! without the manager.

use std::collections::BTreeMap;

use super::*;
use crate::{platforms::driver::DevicePlatform, wire::edit::Edit};

fn policy(service: &str) -> SdWanConfig {
    SdWanConfig {
        policies: vec![ServicePolicy {
            name: format!("RPS-{service}"),
            service: format!("t/{service}"),
            sequences: vec![Sequence {
                id: 10,
                name: "voice".to_owned(),
                action: "accept".to_owned(),
                destinations: vec!["10.0.0.0/8".to_owned()],
                preferred_color: "mpls".to_owned(),
            }],
            site_list: format!("RPS-{service}-sites"),
            sites: vec![100],
        }],
    }
}

#[test]
fn policies_of_every_service_are_kept_in_service_order() {
    let p = SdWanPlatform::new(SdWanPlatform::default_settings());
    let merged = p
        .merge(BTreeMap::from([
            ("t/b".to_owned(), policy("b")),
            ("t/a".to_owned(), policy("a")),
        ]))
        .unwrap();
    let names: Vec<&str> = merged.policies.iter().map(|x| x.name.as_str()).collect();
    assert_eq!(names, ["RPS-a", "RPS-b"]);
}

#[test]
fn the_edit_is_typed_calls_creating_then_activating() {
    let p = SdWanPlatform::new(SdWanPlatform::default_settings());
    let c = policy("a");
    assert_eq!(p.diff(&c, &c), None);
    let Some(Edit::Http { calls, notes }) = p.diff(&SdWanConfig::default(), &c) else {
        panic!("an HTTP edit")
    };
    assert_eq!(notes.len(), 1);
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", paths::SITE_LISTS)
    );
    assert!(
        calls
            .iter()
            .any(|c| c.method == "POST" && c.path.contains("/activate/")),
        "{calls:?}"
    );
}
