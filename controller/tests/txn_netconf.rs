//! Transactions across several real netconfd instances (Cisco IOS-XE 16.9.3
//! models loaded): all-or-nothing, a device dying mid-commit, shared-object
//! ownership, rollback and its refusal, drift detection and repair.

mod support;

use std::{
    collections::BTreeMap,
    sync::{Arc, Mutex},
};

use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::{API_VERSION, ServiceSpec},
    },
    store::{DeviceStatus, Store, TxnState},
    transport::netconf::{Datastore, EditConfig, Filter, Session},
    txn::{Change, Engine, EngineConfig, EngineError},
    wire::naming::object_name,
};
use support::netconfd::{Netconfd, PASSWORD, USER};

/// A lab of netconfd devices plus a store and an engine wired to them.
struct Lab {
    devices: Vec<Option<Netconfd>>,
    engine: Engine,
    validator: Validator,
    inventory: BTreeMap<String, Device>,
    _dir: tempfile::TempDir,
}

impl Lab {
    /// `cisco[i]` says whether device `csrI` loads the Cisco models (a
    /// device without them refuses every IOS-XE edit).
    fn start(cisco: &[bool]) -> Option<Lab> {
        let mut devices = Vec::new();
        for &c in cisco {
            devices.push(Some(Netconfd::start_with(c)?));
        }
        let dir = tempfile::tempdir().unwrap();
        let known_hosts = dir.path().join("known_hosts");
        let creds = dir.path().join("credentials");
        std::fs::write(&creds, format!("{USER}:{PASSWORD}\n")).unwrap();
        let mut hosts = String::new();
        let store = Store::temporary().unwrap();
        let mut inventory = BTreeMap::new();
        for (i, d) in devices.iter().enumerate() {
            let d = d.as_ref().unwrap();
            hosts.push_str(&std::fs::read_to_string(d.known_hosts()).unwrap());
            let device = Device {
                name: format!("csr{}", i + 1),
                platform: Platform::IosXe,
                address: format!("127.0.0.1:{}", d.port),
                credentials_ref: format!("file:{}", creds.display()),
                labels: BTreeMap::new(),
                created_unix: 0,
            };
            store.put_device(&device, false).unwrap();
            inventory.insert(device.name.clone(), device);
        }
        std::fs::write(&known_hosts, hosts).unwrap();
        let config = EngineConfig {
            known_hosts,
            ..EngineConfig::default()
        };
        let engine = Engine::new(store, config);
        Some(Lab {
            devices,
            engine,
            validator: Validator::new().unwrap(),
            inventory,
            _dir: dir,
        })
    }

    fn spec(&self, yaml: &str) -> (ServiceSpec, String) {
        let doc = SourceDoc {
            text: yaml,
            format: DocFormat::Yaml,
            name: "test.yaml",
        };
        let mut v = self.validator.validate(&doc, &self.inventory).unwrap();
        (v.remove(0).spec, API_VERSION.to_owned())
    }

    fn session(&self, i: usize) -> Session {
        Session::connect(&self.devices[i].as_ref().unwrap().password_config()).unwrap()
    }

    /// The running `/native` of device `i`.
    fn running(&self, i: usize) -> String {
        let filter = "<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"/>";
        self.session(i)
            .get_config(Datastore::Running, Some(Filter::Subtree(filter.to_owned())))
            .unwrap()
    }
}

fn firewall(name: &str, devices: &[&str], port: u16) -> String {
    firewall_dir(name, devices, port, "ingress")
}

fn firewall_dir(name: &str, devices: &[&str], port: u16, direction: &str) -> String {
    let targets: String = devices
        .iter()
        .map(|d| {
            format!(
                "      - {{device: {d}, interface: GigabitEthernet2, direction: {direction}}}\n"
            )
        })
        .collect();
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, destinations: [192.0.2.10/32], destinationPorts: [{port}]}}
  targets:
    devices:
{targets}"
    )
}

fn acl(service: &str) -> String {
    object_name("4", "acme", service)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn one_device_refusing_leaves_every_device_unchanged() {
    let Some(lab) = Lab::start(&[true, true, false]) else {
        return;
    };
    let before: Vec<String> = (0..3).map(|i| lab.running(i)).collect();
    let spec = lab.spec(&firewall("web", &["csr1", "csr2", "csr3"], 443));
    let planned = lab
        .engine
        .plan(
            Change {
                apply: vec![spec],
                delete: vec![],
            },
            "test",
        )
        .unwrap();
    assert_eq!(planned.record.devices.len(), 3);
    let err = lab.engine.execute(planned).await.unwrap_err();
    let EngineError::Devices { txn, failures } = &err else {
        panic!("{err}")
    };
    assert_eq!(failures.len(), 1, "{failures:?}");
    assert!(failures[0].starts_with("csr3:"), "{failures:?}");
    assert!(failures[0].contains("edit-config"), "{failures:?}");
    for (i, b) in before.iter().enumerate() {
        let now = lab.running(i);
        assert!(!now.contains(&acl("web")), "csr{} changed: {now}", i + 1);
        assert_eq!(&now, b, "csr{} running config changed", i + 1);
    }
    let record = lab.engine.store().txn(*txn).unwrap().unwrap();
    assert_eq!(record.state, TxnState::Failed);
    let d3 = record.devices.iter().find(|d| d.device == "csr3").unwrap();
    assert_eq!(d3.status, DeviceStatus::Failed);
    assert!(
        record
            .devices
            .iter()
            .filter(|d| d.device != "csr3")
            .all(|d| d.status == DeviceStatus::Aborted)
    );
    assert!(
        lab.engine.store().services().unwrap().is_empty(),
        "service stored despite failure"
    );
    assert!(lab.engine.store().synced_devices().unwrap().is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn device_dying_mid_commit_restores_the_others() {
    let Some(lab) = Lab::start(&[true, true, true]) else {
        return;
    };
    let victim: Arc<Mutex<Option<Netconfd>>> = Arc::new(Mutex::new(None));
    let Lab {
        mut devices,
        engine,
        validator,
        inventory,
        _dir,
    } = lab;
    *victim.lock().unwrap() = devices[1].take();
    let v = victim.clone();
    let engine = engine.with_before_commit(move |_| {
        // Kill csr2's server after every device prepared, before commit.
        drop(v.lock().unwrap().take());
    });
    let lab = Lab {
        devices,
        engine,
        validator,
        inventory,
        _dir,
    };
    let spec = lab.spec(&firewall("web", &["csr1", "csr2", "csr3"], 443));
    let planned = lab
        .engine
        .plan(
            Change {
                apply: vec![spec],
                delete: vec![],
            },
            "test",
        )
        .unwrap();
    let err = lab.engine.execute(planned).await.unwrap_err();
    let EngineError::Devices { txn, failures } = &err else {
        panic!("{err}")
    };
    assert!(
        failures.iter().any(|f| f.starts_with("csr2:")),
        "{failures:?}"
    );
    for i in [0, 2] {
        let now = lab.running(i);
        assert!(
            !now.contains(&acl("web")),
            "csr{} kept the change: {now}",
            i + 1
        );
    }
    let record = lab.engine.store().txn(*txn).unwrap().unwrap();
    assert_eq!(record.state, TxnState::Failed);
    for d in &record.devices {
        if d.device != "csr2" {
            assert_eq!(d.status, DeviceStatus::RolledBack, "{d:?}");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn ownership_rollback_and_drift() {
    let Some(lab) = Lab::start(&[true, true]) else {
        return;
    };
    let e = &lab.engine;

    // Two services share csr1's GigabitEthernet3 description (reference
    // count 2); each also owns its own ACL.
    let router = |name: &str| {
        format!(
            "apiVersion: rampart.io/v1
kind: Router
metadata: {{name: {name}, tenant: acme}}
spec:
  devices:
    - device: csr1
      interfaces:
        - {{name: GigabitEthernet3, description: shared-uplink}}
"
        )
    };
    let a = lab.spec(&router("rt-a"));
    let b = lab.spec(&router("rt-b"));
    let (t1, _) = e
        .execute(
            e.plan(
                Change {
                    apply: vec![a],
                    delete: vec![],
                },
                "t",
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert_eq!(t1.devices.len(), 1);
    let (t2, _) = e
        .execute(
            e.plan(
                Change {
                    apply: vec![b],
                    delete: vec![],
                },
                "t",
            )
            .unwrap(),
        )
        .await
        .unwrap();
    assert!(
        t2.devices.is_empty(),
        "identical shared object must not be re-sent: {:?}",
        t2.devices
    );
    assert!(lab.running(0).contains("shared-uplink"));
    e.execute(
        e.plan(
            Change {
                apply: vec![],
                delete: vec!["acme/rt-a".into()],
            },
            "t",
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(
        lab.running(0).contains("shared-uplink"),
        "shared object removed while still owned"
    );
    e.execute(
        e.plan(
            Change {
                apply: vec![],
                delete: vec!["acme/rt-b".into()],
            },
            "t",
        )
        .unwrap(),
    )
    .await
    .unwrap();
    assert!(
        !lab.running(0).contains("shared-uplink"),
        "object left behind by its last owner"
    );

    // Rollback of an older transaction undoes it alone; rolling back one
    // that a later transaction built on is refused, naming it.
    let apply = |spec| Change {
        apply: vec![spec],
        delete: vec![],
    };
    let x = lab.spec(&firewall("x", &["csr1", "csr2"], 80));
    let (tx, _) = e.execute(e.plan(apply(x), "t").unwrap()).await.unwrap();
    let z = lab.spec(&firewall_dir("z", &["csr1"], 25, "egress"));
    let (tz, _) = e.execute(e.plan(apply(z), "t").unwrap()).await.unwrap();
    assert!(lab.running(0).contains(&acl("z")));
    let x2 = lab.spec(&firewall("x", &["csr1", "csr2"], 8080));
    let (tx2, _) = e.execute(e.plan(apply(x2), "t").unwrap()).await.unwrap();
    let refused = e.plan_rollback(tx.id, "t").unwrap_err();
    let EngineError::RollbackConflict { later, .. } = &refused else {
        panic!("{refused}")
    };
    assert_eq!(later, &vec![tx2.id]);
    let rb = e.rollback(tz.id, "t").await.unwrap();
    assert_eq!(rb.rollback_of, Some(tz.id));
    let now = lab.running(0);
    assert!(
        !now.contains(&acl("z")),
        "rolled-back service left on device: {now}"
    );
    assert!(
        now.contains(&acl("x")) && now.contains("8080"),
        "unrelated service touched: {now}"
    );
    e.rollback(tx2.id, "t").await.unwrap();
    let now = lab.running(1);
    assert!(
        now.contains("<dst-eq>80</dst-eq>") && !now.contains("8080"),
        "{now}"
    );
    assert_eq!(
        e.store().txn(tx2.id).unwrap().unwrap().state,
        TxnState::RolledBack
    );

    // Drift: an out-of-band edit is detected, then repaired.
    assert!(
        e.check_sync(None)
            .await
            .unwrap()
            .iter()
            .all(|r| r.differences.is_empty())
    );
    let oob = format!(
        "<config><native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"><ip><access-list>\
         <extended xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-acl\"><name>{}</name>\
         <access-list-seq-rule><sequence>15</sequence><ace-rule><action>permit</action>\
         <protocol>ip</protocol><any/><dst-any/></ace-rule></access-list-seq-rule>\
         </extended></access-list></ip></native></config>",
        acl("x")
    );
    let mut s = lab.session(1);
    s.lock(Datastore::Candidate).unwrap();
    s.edit_config(EditConfig::new(Datastore::Candidate, oob))
        .unwrap();
    s.commit(Default::default()).unwrap();
    s.unlock(Datastore::Candidate).unwrap();
    let report = e.check_sync(Some("csr2")).await.unwrap();
    assert_eq!(report.len(), 1);
    assert!(
        !report[0].differences.is_empty(),
        "out-of-band edit not detected"
    );
    assert!(
        report[0].differences[0].path.contains(&acl("x")),
        "{:?}",
        report[0].differences
    );
    assert!(
        e.check_sync(Some("csr1")).await.unwrap()[0]
            .differences
            .is_empty()
    );
    e.sync_to_device("csr2").await.unwrap();
    assert!(
        e.check_sync(Some("csr2")).await.unwrap()[0]
            .differences
            .is_empty()
    );
    assert!(!lab.running(1).contains("<sequence>15</sequence>"));
}
