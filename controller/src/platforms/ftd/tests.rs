//! Merging services on one FDM without the device.

use std::collections::BTreeMap;

use super::*;
use crate::{platforms::driver::DevicePlatform, wire::edit::Edit};

fn with_network(value: &str) -> FtdConfig {
    FtdConfig {
        networks: vec![NetObject {
            name: "RPF-web".to_owned(),
            sub_type: "HOST".to_owned(),
            value: value.to_owned(),
        }],
        ..FtdConfig::default()
    }
}

#[test]
fn an_object_two_services_define_alike_is_shared_and_a_different_one_conflicts() {
    let p = FtdPlatform::new(FtdPlatform::default_settings());
    let same = p
        .merge(BTreeMap::from([
            ("t/a".to_owned(), with_network("192.0.2.10")),
            ("t/b".to_owned(), with_network("192.0.2.10")),
        ]))
        .unwrap();
    assert_eq!(same.networks.len(), 1);
    let e = p
        .merge(BTreeMap::from([
            ("t/a".to_owned(), with_network("192.0.2.10")),
            ("t/b".to_owned(), with_network("192.0.2.11")),
        ]))
        .unwrap_err();
    assert_eq!((e.first.as_str(), e.second.as_str()), ("t/a", "t/b"));
    assert!(e.what.contains("RPF-web"), "{e}");
}

#[test]
fn the_edit_creates_the_object_and_nothing_when_equal() {
    let p = FtdPlatform::new(FtdPlatform::default_settings());
    let c = with_network("192.0.2.10");
    assert_eq!(p.diff(&c, &c), None);
    let Some(Edit::Http { calls, .. }) = p.diff(&FtdConfig::default(), &c) else {
        panic!("an HTTP edit")
    };
    assert_eq!(calls.len(), 1, "{calls:?}");
    assert_eq!(
        (calls[0].method.as_str(), calls[0].path.as_str()),
        ("POST", "/object/networks")
    );
    assert_eq!(calls[0].body.as_ref().unwrap()["value"], "192.0.2.10");
}
