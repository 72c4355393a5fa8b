//! The RESTCONF client against the testbed RESTCONF server (HTTPS, libyang
//! validation with the Cisco IOS-XE 16.9.3 models): every method, both
//! encodings, typed errors, and an IOS-XE rendering applied and read back.

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
    transport::{
        error::{ErrorTag, ErrorType},
        restconf::{Encoding, PutOutcome, RestconfClient, RestconfConfig},
    },
    wire::Format,
};
use rampart_restconf_server::{RunningServer, ServerConfig};
use support::netconfd::{shared_yang_dir, yang};
use yang3::data::DataFormat;

const ACL: &str = "Cisco-IOS-XE-native:native/ip/access-list/Cisco-IOS-XE-acl:extended";

async fn server() -> RunningServer {
    rampart_restconf_server::start(
        "127.0.0.1:0".parse().unwrap(),
        ServerConfig {
            models: shared_yang_dir().join("cisco-xe-16.9.3"),
            modules: [
                "Cisco-IOS-XE-native",
                "Cisco-IOS-XE-acl",
                "Cisco-IOS-XE-nat",
                "Cisco-IOS-XE-bgp",
            ]
            .map(str::to_owned)
            .to_vec(),
            username: "admin".to_owned(),
            password: "s3cret".to_owned(),
        },
    )
    .await
    .expect("restconf server")
}

fn client(s: &RunningServer, password: &str) -> RestconfClient {
    RestconfClient::new(RestconfConfig {
        base_url: format!("https://127.0.0.1:{}", s.addr.port()),
        username: "admin".to_owned(),
        password: password.to_owned(),
        ca_pem: Some(s.cert_pem.clone()),
        timeout: Duration::from_secs(10),
    })
    .unwrap()
}

fn acl_json(name: &str, aces: &[(u32, u32)]) -> String {
    let entries: Vec<serde_json::Value> = aces
        .iter()
        .map(|(seq, port)| {
            serde_json::json!({"sequence": seq.to_string(), "ace-rule": {"action": "permit", "protocol": "tcp", "any": [null], "dst-any": [null], "dst-eq": port}})
        })
        .collect();
    serde_json::json!({"Cisco-IOS-XE-acl:extended": [{"name": name, "access-list-seq-rule": entries}]}).to_string()
}

#[tokio::test]
async fn crud_in_both_encodings_with_typed_errors() {
    let s = server().await;
    let c = client(&s, "s3cret");

    // Wrong password: 401, access-denied.
    let err = client(&s, "wrong")
        .get(ACL, Encoding::Json)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(401));
    assert_eq!(err.errors()[0].tag, ErrorTag::AccessDenied);

    // PUT creates, GET reads back in JSON and XML.
    let path = format!("{ACL}=WEB");
    assert_eq!(
        c.put(&path, &acl_json("WEB", &[(10, 80)]), Encoding::Json)
            .await
            .unwrap(),
        PutOutcome::Created
    );
    let got: serde_json::Value =
        serde_json::from_str(&c.get(&path, Encoding::Json).await.unwrap()).unwrap();
    assert_eq!(
        got["Cisco-IOS-XE-acl:extended"][0]["access-list-seq-rule"][0]["ace-rule"]["dst-eq"],
        80
    );
    let xml = c.get(&path, Encoding::Xml).await.unwrap();
    assert!(
        xml.contains("<dst-eq>80</dst-eq>") && xml.contains("Cisco-IOS-XE-acl"),
        "{xml}"
    );

    // PATCH merges a second entry; PUT replaces (entry 20 goes away).
    c.patch(&path, &acl_json("WEB", &[(20, 443)]), Encoding::Json)
        .await
        .unwrap();
    let got = c.get(&path, Encoding::Json).await.unwrap();
    assert!(got.contains("\"443\"") || got.contains("443"), "{got}");
    assert!(got.contains("\"10\"") && got.contains("\"20\""), "{got}");
    assert_eq!(
        c.put(&path, &acl_json("WEB", &[(30, 22)]), Encoding::Json)
            .await
            .unwrap(),
        PutOutcome::Replaced
    );
    let got = c.get(&path, Encoding::Json).await.unwrap();
    assert!(
        got.contains("\"30\"") && !got.contains("\"10\"") && !got.contains("\"20\""),
        "{got}"
    );

    // XML bodies work too.
    let xml_body = "<extended xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-acl\"><name>XMLACL</name><access-list-seq-rule><sequence>5</sequence><ace-rule><action>deny</action><protocol>ip</protocol><any/><dst-any/></ace-rule></access-list-seq-rule></extended>";
    c.put(&format!("{ACL}=XMLACL"), xml_body, Encoding::Xml)
        .await
        .unwrap();
    assert!(
        c.get(&format!("{ACL}=XMLACL"), Encoding::Json)
            .await
            .unwrap()
            .contains("deny")
    );

    // Invalid data: 400 with the path of the bad leaf, and nothing stored.
    let err = c
        .put(&path, &acl_json("WEB", &[(40, 70000)]), Encoding::Json)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");
    let e = &err.errors()[0];
    assert_eq!(
        (e.error_type.clone(), e.tag.clone()),
        (ErrorType::Application, ErrorTag::InvalidValue),
        "{e}"
    );
    assert!(
        e.path.as_deref().unwrap_or_default().contains("dst-eq"),
        "{e}"
    );
    assert!(
        c.get(&path, Encoding::Json)
            .await
            .unwrap()
            .contains("\"30\""),
        "rejected PUT changed the store"
    );

    // URL and body naming different entries: rejected.
    let err = c
        .put(
            &format!("{ACL}=OTHER"),
            &acl_json("WEB", &[(1, 1)]),
            Encoding::Json,
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err}");

    // Unknown node in the URL, unsupported media type.
    let err = c
        .get("Cisco-IOS-XE-native:native/no-such-thing", Encoding::Json)
        .await
        .unwrap_err();
    assert_eq!(err.errors()[0].tag, ErrorTag::UnknownElement, "{err}");

    // DELETE, then GET and DELETE of the missing resource are 404s.
    c.delete(&path).await.unwrap();
    let err = c.get(&path, Encoding::Xml).await.unwrap_err();
    assert_eq!(err.status(), Some(404));
    let err = c.delete(&path).await.unwrap_err();
    assert_eq!(
        (err.status(), err.errors()[0].tag.clone()),
        (Some(404), ErrorTag::DataMissing)
    );
    // PATCH of a missing resource does not create it.
    let err = c
        .patch(&path, &acl_json("WEB", &[(1, 1)]), Encoding::Json)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404));
}

#[tokio::test]
async fn iosxe_rendering_applied_over_restconf_reads_back_identically() {
    let s = server().await;
    let c = client(&s, "s3cret");
    let spec = |ports: &[u16]| ServiceSpec {
        metadata: Metadata {
            name: "web".to_owned(),
            tenant: "acme".to_owned(),
            labels: BTreeMap::new(),
        },
        body: ServiceBody::Firewall(FirewallSpec {
            default_action: Action::Deny,
            rules: ports
                .iter()
                .zip(1u32..)
                .map(|(&p, i)| FirewallRule {
                    sequence: i * 10,
                    action: Action::Permit,
                    protocol: Protocol::Tcp,
                    sources: vec!["10.0.0.0/8".parse().unwrap()],
                    destinations: vec![
                        "2001:db8::1/128".parse().unwrap(),
                        "192.0.2.1/32".parse().unwrap(),
                    ],
                    source_ports: vec![],
                    destination_ports: vec![PortRange { first: p, last: p }],
                    icmp_type: None,
                    icmp_code: None,
                    log: false,
                    description: None,
                })
                .collect(),
            targets: Targets {
                devices: vec![DeviceTarget {
                    device: "r1".to_owned(),
                    interface: "GigabitEthernet2".to_owned(),
                    direction: Direction::Ingress,
                }],
                hosts: vec![],
            },
            nat: None,
        }),
    };
    let device = Device {
        name: "r1".to_owned(),
        platform: Platform::IosXe,
        address: String::new(),
        credentials_ref: String::new(),
        labels: BTreeMap::new(),
        created_unix: 0,
    };
    let json_of = |spec: &ServiceSpec| {
        iosxe::render(spec, &device)
            .unwrap()
            .into_iter()
            .find(|r| r.format == Format::RestconfJson)
            .unwrap()
    };
    let ctx = yang::context("cisco-xe-16.9.3");
    for ports in [&[80u16, 443][..], &[8080][..]] {
        let rendering = json_of(&spec(ports));
        c.apply(&rendering).await.unwrap();
        let got = c
            .get("Cisco-IOS-XE-native:native", Encoding::Json)
            .await
            .unwrap();
        let canonical = |s: &str| {
            serde_json::from_str::<serde_json::Value>(
                &yang::validate(&ctx, s, DataFormat::JSON).unwrap(),
            )
            .unwrap()
        };
        assert_eq!(
            canonical(&got),
            canonical(&rendering.content),
            "ports {ports:?}"
        );
    }
}
