//! Hand-written tests of the model's public API: exact fields, lines and
//! columns for a few errors (so the golden files cannot hide a
//! regression), round trips, limits, and robustness.

use std::{collections::BTreeMap, fmt::Write as _, path::Path, sync::Arc};

use rampart_controller::model::{
    DocFormat, MAX_DEPTH, MAX_DOCUMENT_BYTES, MAX_RULES, ModelError, Severity, SourceDoc,
    Validated, Validator,
    device::{Device, Platform},
    spec::{Action, Kind, PortRange, Protocol, ServiceBody},
    spec_to_json,
};

fn device(name: &str) -> Device {
    Device {
        name: name.to_owned(),
        platform: Platform::IosXe,
        address: "192.0.2.100:830".to_owned(),
        credentials_ref: "env:RAMPART_LAB".to_owned(),
        labels: BTreeMap::from([("site".to_owned(), "lab".to_owned())]),
        created_unix: 0,
    }
}

fn inventory() -> BTreeMap<String, Device> {
    ["csr1", "csr2", "edge1"]
        .into_iter()
        .map(|n| (n.to_owned(), device(n)))
        .collect()
}

fn validate(v: &Validator, text: &str) -> Result<Vec<Validated>, ModelError> {
    v.validate(
        &SourceDoc {
            text,
            format: DocFormat::Auto,
            name: "test.yaml",
        },
        &inventory(),
    )
}

fn errors(v: &Validator, text: &str) -> Vec<rampart_controller::model::Diagnostic> {
    match validate(v, text) {
        Err(ModelError::Invalid {
            diagnostics,
            source_name,
        }) => {
            assert_eq!(source_name, "test.yaml");
            diagnostics
        }
        other => panic!("expected invalid, got {other:?}"),
    }
}

const HEADER: &str =
    "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {name: t, tenant: acme}\n";

#[test]
fn validator_is_send_and_sync_and_shareable() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Validator>();
    let v = Arc::new(Validator::new().unwrap());
    let text = format!(
        "{HEADER}spec:\n  rules:\n    - {{sequence: 10, action: permit, protocol: tcp, destinationPorts: [22]}}\n"
    );
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let v = Arc::clone(&v);
            let text = text.clone();
            std::thread::spawn(move || {
                for _ in 0..20 {
                    let out = validate(&v, &text).unwrap();
                    assert_eq!(out.len(), 1, "thread {i}");
                    let bad = text.replace("[22]", "[70000]");
                    let diags = errors(&v, &bad);
                    assert_eq!(diags.len(), 1, "thread {i}: {diags:?}");
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
}

#[test]
fn bad_prefix_names_the_item_line_column_and_yang_path() {
    let v = Validator::new().unwrap();
    let text = format!(
        "{HEADER}spec:\n  rules:\n    - sequence: 10\n      action: permit\n      sources: [10.0.0.0/8, 10.0.0.300/8]\n"
    );
    let d = errors(&v, &text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].severity, Severity::Error);
    assert_eq!(d[0].field.as_deref(), Some("spec.rules[0].sources[1]"));
    assert_eq!((d[0].line, d[0].column), (8, 29));
    assert_eq!(
        d[0].path.as_deref(),
        Some("/rampart-firewall:firewall/rule[sequence='10']/source")
    );
    assert!(d[0].message.contains("10.0.0.300/8"), "{}", d[0].message);
    assert_eq!(
        d[0].to_string(),
        "test.yaml:8:29: spec.rules[0].sources[1]: invalid value \"10.0.0.300/8\": not a valid ip-prefix (/rampart-firewall:firewall/rule[sequence='10']/source)"
    );
}

#[test]
fn every_error_of_a_document_is_reported_at_once() {
    let v = Validator::new().unwrap();
    let text = format!(
        "{HEADER}spec:\n  rules:\n    - {{sequence: 10, action: allow, protocol: tcp}}\n    - {{sequence: 20, action: permit, protocol: tcp, destinationPorts: [\"90-80\"]}}\n    - {{sequence: 30, action: permit, protocol: tcp, icmpType: 3}}\n    - {{sequence: 40, action: permit, sorces: [10.0.0.0/8]}}\n"
    );
    let d = errors(&v, &text);
    let got: Vec<(u32, &str)> = d
        .iter()
        .map(|d| (d.line, d.field.as_deref().unwrap_or("")))
        .collect();
    assert_eq!(
        got,
        vec![
            (6, "spec.rules[0].action"),
            (7, "spec.rules[1].destinationPorts[0]"),
            (8, "spec.rules[2].icmpType"),
            (9, "spec.rules[3].sorces"),
        ],
        "{d:#?}"
    );
    assert!(
        d[3].message.contains("did you mean \"sources\""),
        "{}",
        d[3].message
    );
}

#[test]
fn duplicate_sequence_names_both_entries() {
    let v = Validator::new().unwrap();
    let text = format!(
        "{HEADER}spec:\n  rules:\n    - {{sequence: 10, action: permit}}\n    - {{sequence: 10, action: deny}}\n"
    );
    let d = errors(&v, &text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(d[0].field.as_deref(), Some("spec.rules[1]"));
    assert_eq!(d[0].line, 7);
    assert!(
        d[0].message.contains("sequence 10") && d[0].message.contains("spec.rules[0] at line 6"),
        "{}",
        d[0].message
    );
}

#[test]
fn unknown_device_is_an_error_only_when_missing_from_the_inventory() {
    let v = Validator::new().unwrap();
    let text = format!(
        "{HEADER}spec:\n  targets:\n    devices:\n      - {{device: csr2, interface: Gi1}}\n      - {{device: csr3, interface: Gi1}}\n"
    );
    let d = errors(&v, &text);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        d[0].field.as_deref(),
        Some("spec.targets.devices[1].device")
    );
    assert_eq!(d[0].line, 8);
    assert!(d[0].message.contains("csr3"));
    let mut inv = inventory();
    inv.insert("csr3".to_owned(), device("csr3"));
    let ok = v
        .validate(
            &SourceDoc {
                text: &text,
                format: DocFormat::Yaml,
                name: "x",
            },
            &inv,
        )
        .unwrap();
    assert_eq!(ok[0].spec.devices(), vec!["csr2", "csr3"]);
}

#[test]
fn shadowed_and_overlapping_rules_are_warnings_naming_both_rules() {
    let v = Validator::new().unwrap();
    let text = format!(
        "{HEADER}spec:\n  rules:\n    - {{sequence: 10, action: permit, protocol: tcp, sources: [10.0.0.0/8]}}\n    - {{sequence: 20, action: deny, protocol: tcp, sources: [10.1.0.0/16], destinationPorts: [22]}}\n    - {{sequence: 30, action: deny, protocol: any, sources: [\"2001:db8::/32\"]}}\n    - {{sequence: 40, action: deny, protocol: any}}\n"
    );
    let out = validate(&v, &text).unwrap();
    let w = &out[0].warnings;
    assert_eq!(w.len(), 2, "{w:#?}");
    assert!(w.iter().all(|w| w.severity == Severity::Warning));
    assert_eq!(
        (w[0].line, w[0].field.as_deref()),
        (7, Some("spec.rules[1]"))
    );
    assert!(
        w[0].message.contains("rule 20") && w[0].message.contains("rule 10 (line 6)"),
        "{}",
        w[0].message
    );
    assert_eq!(
        (w[1].line, w[1].field.as_deref()),
        (9, Some("spec.rules[3]"))
    );
    assert!(
        w[1].message.contains("rule 40") && w[1].message.contains("overlaps rule 10"),
        "{}",
        w[1].message
    );
}

#[test]
fn json_with_tabs_and_json_errors_have_lines() {
    let v = Validator::new().unwrap();
    let text = "{\n\t\"apiVersion\": \"rampart.io/v1\",\n\t\"kind\": \"Firewall\",\n\t\"metadata\": {\"name\": \"j\", \"tenant\": \"acme\"},\n\t\"spec\": {\"rules\": [\n\t\t{\"sequence\": 10, \"action\": \"permit\", \"protocol\": \"udp\", \"destinationPorts\": [53]}\n\t]}\n}\n";
    let out = v
        .validate(
            &SourceDoc {
                text,
                format: DocFormat::Json,
                name: "j.json",
            },
            &inventory(),
        )
        .unwrap();
    let ServiceBody::Firewall(fw) = &out[0].spec.body else {
        panic!()
    };
    assert_eq!(fw.rules[0].protocol, Protocol::Udp);
    assert_eq!(
        fw.rules[0].destination_ports,
        vec![PortRange {
            first: 53,
            last: 53
        }]
    );
    let bad = text.replace("53]", "65536]");
    let d = errors(&v, &bad);
    assert_eq!(
        (d[0].line, d[0].field.as_deref()),
        (6, Some("spec.rules[0].destinationPorts[0]")),
        "{d:?}"
    );
    let broken = text.replace("\"udp\",", "\"udp\" ");
    let d = errors(&v, &broken);
    assert_eq!(d[0].line, 6, "{d:?}");
    assert!(d[0].message.starts_with("JSON:"), "{}", d[0].message);
}

#[test]
fn yaml_syntax_error_has_the_parser_line() {
    let v = Validator::new().unwrap();
    let d = errors(
        &v,
        "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {name: a, tenant: b\nspec: {}\n",
    );
    assert_eq!(d.len(), 1);
    assert!(d[0].line >= 3, "{d:?}");
}

#[test]
fn multi_document_files_return_one_result_per_document_with_file_lines() {
    let v = Validator::new().unwrap();
    let one = format!("{HEADER}spec:\n  defaultAction: permit\n");
    let two = "---\napiVersion: rampart.io/v1\nkind: Vpn\nmetadata: {name: v, tenant: acme}\nspec:\n  tunnels: [{device: csr1, peer: 192.0.2.9, localSubnets: [10.0.0.0/8], remoteSubnets: [10.9.0.0/16], pskRef: env:K}]\n";
    let out = validate(&v, &format!("{one}{two}")).unwrap();
    assert_eq!(
        out.iter().map(|o| o.spec.kind()).collect::<Vec<_>>(),
        vec![Kind::Firewall, Kind::Vpn]
    );
    let bad = format!("{one}{}", two.replace("csr1", "nope"));
    let d = errors(&v, &bad);
    assert_eq!(d.len(), 1, "{d:?}");
    assert_eq!(
        (d[0].line, d[0].field.as_deref()),
        (11, Some("spec.tunnels[0].device"))
    );
}

#[test]
fn examples_validate_and_round_trip_through_spec_to_json() {
    let v = Validator::new().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut kinds = Vec::new();
    let mut paths: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    paths.sort();
    for path in paths {
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if !name.ends_with(".yaml") || name == "inventory.yaml" {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let out = v
            .validate(
                &SourceDoc {
                    text: &text,
                    format: DocFormat::Auto,
                    name: &name,
                },
                &inventory(),
            )
            .unwrap_or_else(|e| panic!("{e}"));
        for doc in out {
            assert!(doc.warnings.is_empty(), "{name}: {:?}", doc.warnings);
            let json = spec_to_json(&doc.spec).to_string();
            let again = v
                .validate(
                    &SourceDoc {
                        text: &json,
                        format: DocFormat::Json,
                        name: "again.json",
                    },
                    &inventory(),
                )
                .unwrap_or_else(|e| panic!("{name} round trip: {e}\n{json}"));
            assert_eq!(again.len(), 1);
            assert_eq!(again[0].spec, doc.spec, "{name} round trip");
            kinds.push(doc.spec.kind());
        }
    }
    for k in Kind::ALL {
        assert!(kinds.contains(&k), "no example of {k}");
    }
}

#[test]
fn typed_firewall_has_defaults_and_canonical_values() {
    let v = Validator::new().unwrap();
    let text = format!(
        "{HEADER}spec:\n  rules:\n    - {{sequence: 5, action: deny, sources: [\"2001:DB8::/32\"], protocol: icmpv6, icmpType: 128}}\n"
    );
    let out = validate(&v, &text).unwrap();
    let ServiceBody::Firewall(fw) = &out[0].spec.body else {
        panic!()
    };
    assert_eq!(fw.default_action, Action::Deny);
    let r = &fw.rules[0];
    assert_eq!(
        (r.sequence, r.action, r.log, r.icmp_type, r.icmp_code),
        (5, Action::Deny, false, Some(128), None)
    );
    assert_eq!(r.sources[0].to_string(), "2001:db8::/32");
    assert!(fw.targets.devices.is_empty() && fw.targets.hosts.is_empty());
}

#[test]
fn size_and_depth_limits_are_refused_clearly() {
    let v = Validator::new().unwrap();
    let huge = format!("{HEADER}spec: {{}}\n# {}\n", "x".repeat(MAX_DOCUMENT_BYTES));
    let d = errors(&v, &huge);
    assert!(
        d[0].message.contains("larger than the limit"),
        "{}",
        d[0].message
    );

    let deep = format!(
        "{HEADER}spec: {{x: {}{}}}\n",
        "[".repeat(MAX_DEPTH + 5),
        "]".repeat(MAX_DEPTH + 5)
    );
    let d = errors(&v, &deep);
    assert!(d[0].message.contains("deeper than"), "{}", d[0].message);
    let deep_json = format!("{{\"a\": {}{}}}", "[".repeat(100_000), "]".repeat(100_000));
    let d = errors(&v, &deep_json);
    assert!(d[0].message.contains("deeper than"), "{}", d[0].message);

    let mut many = format!("{HEADER}spec:\n  rules:\n");
    for i in 1..=MAX_RULES + 1 {
        writeln!(many, "    - {{sequence: {i}, action: permit}}").unwrap();
    }
    let d = errors(&v, &many);
    assert!(d[0].message.contains("too many rules"), "{}", d[0].message);
}

#[test]
fn hostile_or_odd_yaml_never_panics() {
    let v = Validator::new().unwrap();
    for text in [
        "",
        "# only a comment\n",
        "---\n---\n",
        "a: &x 1\nb: *x\n",
        "b: *x\n",
        "!!map {a: 1}\n",
        "- 1\n- 2\n",
        "just a scalar\n",
        "{a: 1, a: 2}\n",
        "apiVersion: rampart.io/v1\nkind: Firewall\nmetadata: {name: a, tenant: b}\nspec: [1, 2]\n",
        "apiVersion: rampart.io/v1\nkind: [Firewall]\n",
        "apiVersion: rampart.io/v1\nkind: Router\nmetadata: {name: a, tenant: b}\nspec: {devices: [[]]}\n",
        "\u{feff}{\"apiVersion\": 1}",
        "\u{feff}apiVersion: 1\n",
        "{\"a\": \"\\ud800\"}",
        "{\"a\": 1e999999}",
        "[1, 2]",
    ] {
        let r = v.validate(
            &SourceDoc {
                text,
                format: DocFormat::Auto,
                name: "odd",
            },
            &inventory(),
        );
        match r {
            Err(ModelError::Invalid { diagnostics, .. }) => {
                assert!(!diagnostics.is_empty(), "{text:?}");
            }
            other => panic!("{text:?}: expected invalid, got {other:?}"),
        }
    }
}

#[test]
fn devices_are_checked_against_the_devices_module() {
    let v = Validator::new().unwrap();
    v.validate_device(&device("csr1")).unwrap();
    let mut sim = device("sim-1");
    sim.credentials_ref.clear();
    sim.address = "[2001:db8::5]:830".to_owned();
    v.validate_device(&sim).unwrap();

    let mut bad = device("bad name");
    bad.credentials_ref = "hunter2".to_owned();
    bad.address = "not a host!".to_owned();
    let Err(ModelError::Invalid { diagnostics, .. }) = v.validate_device(&bad) else {
        panic!("accepted a bad device")
    };
    let mut fields: Vec<&str> = diagnostics
        .iter()
        .filter_map(|d| d.field.as_deref())
        .collect();
    fields.sort_unstable();
    assert_eq!(
        fields,
        vec!["address", "credentialsRef", "name"],
        "{diagnostics:#?}"
    );
    // A secret pasted by mistake must not be echoed back.
    assert!(
        diagnostics
            .iter()
            .all(|d| !d.to_string().contains("hunter2")),
        "{diagnostics:#?}"
    );
}

/// Deterministic mutations (truncation, byte swaps, inserted syntax) of
/// every example: each must be answered with a result or diagnostics,
/// never a panic.
#[test]
fn mutated_examples_never_panic() {
    let v = Validator::new().unwrap();
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples");
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move |n: usize| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        usize::try_from(seed >> 33).unwrap() % n.max(1)
    };
    let noise = [
        "{", "}", "[", "]", ":", "- ", "\n", "\t", "\"", "'", "&a ", "*a", "!!str ", "---\n", "#",
        "0x", "-1", "~",
    ];
    let mut checked = 0;
    for entry in std::fs::read_dir(&dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().and_then(|e| e.to_str()) != Some("yaml") {
            continue;
        }
        let text = std::fs::read_to_string(&path).unwrap();
        let json = {
            let out = v.validate(
                &SourceDoc {
                    text: &text,
                    format: DocFormat::Auto,
                    name: "x",
                },
                &inventory(),
            );
            out.ok()
                .and_then(|o| o.first().map(|d| spec_to_json(&d.spec).to_string()))
        };
        for base in std::iter::once(text.clone()).chain(json) {
            for _ in 0..150 {
                let mut s = base.clone();
                match next(3) {
                    0 => s.truncate(next(s.len())),
                    1 => {
                        let at = next(s.len());
                        if s.is_char_boundary(at) {
                            s.insert_str(at, noise[next(noise.len())]);
                        }
                    }
                    _ => {
                        let at = next(s.len());
                        if s.is_char_boundary(at) && s.is_char_boundary(at + 1) {
                            s.replace_range(at..=at, noise[next(noise.len())]);
                        }
                    }
                }
                let _ = v.validate(
                    &SourceDoc {
                        text: &s,
                        format: DocFormat::Auto,
                        name: "m",
                    },
                    &inventory(),
                );
                checked += 1;
            }
        }
    }
    assert!(checked > 1000, "only {checked} mutations");
}

/// The demo inventory the lead ships must pass the devices module.
#[test]
fn demo_inventory_devices_are_valid() {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "camelCase")]
    struct Entry {
        name: String,
        platform: String,
        address: String,
        #[serde(default)]
        credentials_ref: String,
        #[serde(default)]
        labels: BTreeMap<String, String>,
    }
    #[derive(serde::Deserialize)]
    struct Inventory {
        devices: Vec<Entry>,
    }
    let v = Validator::new().unwrap();
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/inventory.yaml");
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let inv: Inventory = marked_yaml::from_yaml(0, &text).unwrap();
    assert!(!inv.devices.is_empty());
    for e in inv.devices {
        let d = Device {
            platform: Platform::parse(&e.platform)
                .unwrap_or_else(|| panic!("platform {}", e.platform)),
            name: e.name,
            address: e.address,
            credentials_ref: e.credentials_ref,
            labels: e.labels,
            created_unix: 0,
        };
        v.validate_device(&d)
            .unwrap_or_else(|err| panic!("{}: {err}", d.name));
    }
    let mut url = device("mx2");
    url.address = "https://api.meraki.com/api/v1".to_owned();
    v.validate_device(&url).unwrap();
}

/// `devices add bad1 --address 10.10.0.21:99999` is refused naming the
/// field and the offending part, after the YANG pattern accepted it.
#[test]
fn device_addresses_are_checked_beyond_the_pattern() {
    let v = Validator::new().unwrap();
    for (address, says) in [
        ("10.10.0.21:99999", "port \"99999\" is not in 1-65535"),
        ("10.10.0.256", "is not an IPv4 address"),
        ("[2001:db8:::1]:830", "is not an IPv6 address"),
    ] {
        let mut bad = device("bad1");
        bad.address = address.to_owned();
        let Err(ModelError::Invalid { diagnostics, .. }) = v.validate_device(&bad) else {
            panic!("accepted address {address}")
        };
        assert_eq!(diagnostics.len(), 1, "{diagnostics:#?}");
        assert_eq!(diagnostics[0].field.as_deref(), Some("address"));
        let shown = diagnostics[0].to_string();
        assert!(shown.contains(says) && shown.contains(address), "{shown}");
        assert!(shown.starts_with("device bad1:"), "{shown}");
    }
}

/// A rule whose sources are IPv4 and destinations IPv6 matches nothing;
/// it is an error naming the rule, not a rule silently left out.
#[test]
fn a_rule_mixing_address_families_is_an_error_naming_it() {
    let v = Validator::new().unwrap();
    for (src, dst) in [
        ("10.0.0.0/8", "2001:db8::/32"),
        ("2001:db8::/32", "10.0.0.0/8"),
    ] {
        let text = format!(
            "{HEADER}spec:\n  rules:\n    - {{sequence: 10, action: permit, protocol: any}}\n    \
             - {{sequence: 20, action: deny, protocol: tcp, sources: [\"{src}\"], \
             destinations: [\"{dst}\"]}}\n  targets:\n    devices:\n      - {{device: csr1, \
             interface: GigabitEthernet2, direction: ingress}}\n"
        );
        let d = errors(&v, &text);
        let errs: Vec<_> = d.iter().filter(|d| d.severity == Severity::Error).collect();
        assert_eq!(errs.len(), 1, "{d:#?}");
        assert!(
            errs[0].message.starts_with("rule 20: sources are IPv"),
            "{}",
            errs[0]
        );
        assert!(errs[0].message.contains("no packet can match both"));
        assert_eq!(errs[0].line, 7, "{}", errs[0]);
    }
    // Both families on one side keep the rule valid (it matches one).
    let text = format!(
        "{HEADER}spec:\n  rules:\n    - {{sequence: 20, action: deny, protocol: tcp, sources: \
         [10.0.0.0/8, \"2001:db8::/32\"], destinations: [\"2001:db8:1::/48\"]}}\n  targets:\n    \
         devices:\n      - {{device: csr1, interface: GigabitEthernet2, direction: ingress}}\n"
    );
    validate(&v, &text).unwrap();
}
