//! One transaction spanning IOS-XE (a real netconfd), Meraki MX and FTD
//! (the simulators): a fault on any one platform leaves all three as they
//! were — IOS-XE cancels its confirmed commit, Meraki replays the previous
//! rules, FTD reverts its staged edits or deploys the inverse.
//!
//! The host-agent participant is not part of this yet (agent policy
//! distribution is built separately).

mod support;

use std::{collections::BTreeMap, sync::Arc};

use rampart_controller::{
    model::{
        DocFormat, SourceDoc, Validator,
        device::{Device, Platform},
        spec::{API_VERSION, ServiceSpec},
    },
    store::{DeviceStatus, Store},
    transport::netconf::{Datastore, Filter, Session},
    txn::{Change, Engine, EngineConfig, EngineError},
};
use serde_json::{Value, json};
use support::{
    netconfd::{Netconfd, PASSWORD, USER},
    sims::{Sim, SimKind},
};

const NET1: &str = "L_6468999999000001";

struct Lab {
    csr: Netconfd,
    meraki: Sim,
    fdm: Arc<Sim>,
    engine: Engine,
    validator: Validator,
    inventory: BTreeMap<String, Device>,
    _dir: tempfile::TempDir,
}

impl Lab {
    fn start() -> Option<Lab> {
        let csr = Netconfd::start()?;
        let meraki = Sim::start(SimKind::Meraki, &[]).unwrap();
        let fdm = Arc::new(
            Sim::start(
                SimKind::Fdm,
                &["--deploy-queued-ms", "20", "--deploy-ms", "50"],
            )
            .unwrap(),
        );
        let dir = tempfile::tempdir().unwrap();
        let file = |name: &str, text: String| {
            let p = dir.path().join(name);
            std::fs::write(&p, text).unwrap();
            format!("file:{}", p.display())
        };
        let labels = |pairs: &[(&str, String)]| -> BTreeMap<String, String> {
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.clone()))
                .collect()
        };
        let devices = [
            Device {
                name: "csr1".to_owned(),
                platform: Platform::IosXe,
                address: format!("127.0.0.1:{}", csr.port),
                credentials_ref: file("csr", format!("{USER}:{PASSWORD}\n")),
                labels: BTreeMap::new(),
                created_unix: 0,
            },
            Device {
                name: "mx1".to_owned(),
                platform: Platform::MerakiMx,
                address: meraki.base_url(),
                credentials_ref: file("meraki", "apikey:rampart-sim-key\n".to_owned()),
                labels: labels(&[
                    ("rampart.io/meraki-network", NET1.to_owned()),
                    (
                        "rampart.io/ca-file",
                        meraki.cert.as_ref().unwrap().display().to_string(),
                    ),
                ]),
                created_unix: 0,
            },
            Device {
                name: "ftd1".to_owned(),
                platform: Platform::Ftd,
                address: fdm.base_url(),
                credentials_ref: file("fdm", "admin:Admin123\n".to_owned()),
                labels: labels(&[(
                    "rampart.io/ca-file",
                    fdm.cert.as_ref().unwrap().display().to_string(),
                )]),
                created_unix: 0,
            },
        ];
        let store = Store::temporary().unwrap();
        let mut inventory = BTreeMap::new();
        for d in devices {
            store.put_device(&d, false).unwrap();
            inventory.insert(d.name.clone(), d);
        }
        let engine = Engine::new(
            store,
            EngineConfig {
                known_hosts: csr.dir.path().join("known_hosts"),
                ..EngineConfig::default()
            },
        );
        Some(Lab {
            csr,
            meraki,
            fdm,
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

    async fn apply(&self, yaml: &str) -> Result<(), EngineError> {
        let planned = self.engine.plan(
            Change {
                apply: vec![self.spec(yaml)],
                delete: vec![],
            },
            "test",
        )?;
        assert_eq!(planned.record.devices.len(), 3);
        self.engine.execute(planned).await.map(|_| ())
    }

    fn csr_running(&self) -> String {
        let filter = "<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"/>";
        Session::connect(&self.csr.password_config())
            .unwrap()
            .get_config(Datastore::Running, Some(Filter::Subtree(filter.to_owned())))
            .unwrap()
    }

    fn meraki_rules(&self) -> Value {
        self.meraki.state()["networks"][NET1]["l3"]["rules"].clone()
    }

    fn fdm_rules(&self, which: &str) -> usize {
        self.fdm.state()[which]["accessrules"]
            .as_object()
            .unwrap()
            .values()
            .map(|v| v.as_array().unwrap().len())
            .sum()
    }

    fn assert_untouched(&self, csr_before: &str) {
        assert_eq!(self.csr_running(), csr_before, "csr1 changed");
        assert_eq!(self.meraki_rules(), json!([]), "mx1 changed");
        assert_eq!(self.fdm_rules("deployed"), 0, "ftd1 deployed changed");
        assert_eq!(self.fdm_rules("staged"), 0, "ftd1 left staged rules");
    }
}

fn firewall(port: u16) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: web, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, destinations: [192.0.2.10/32], destinationPorts: [{port}]}}
  targets:
    devices:
      - {{device: csr1, interface: GigabitEthernet2, direction: ingress}}
      - {{device: mx1, interface: wan1, direction: egress}}
      - {{device: ftd1, interface: inside_zone, direction: ingress}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_fault_on_one_platform_rolls_back_all_three() {
    let Some(lab) = Lab::start() else {
        return;
    };
    let csr_before = lab.csr_running();

    // 1. FTD's deploy fails in the commit phase.
    lab.fdm.fault(&json!({"deploy_fail": 1}));
    let err = lab.apply(&firewall(443)).await.unwrap_err();
    let EngineError::Devices { txn, failures } = &err else {
        panic!("{err}")
    };
    assert!(
        failures.iter().any(|f| f.starts_with("ftd1: deploy")),
        "{failures:?}"
    );
    lab.assert_untouched(&csr_before);
    let record = lab.engine.store().txn(*txn).unwrap().unwrap();
    for d in &record.devices {
        if d.device != "ftd1" {
            assert_eq!(d.status, DeviceStatus::RolledBack, "{d:?}");
        }
    }

    // 2. Meraki refuses the commit.
    lab.meraki.fault(
        &json!({"fail_next": 1, "status": 400, "message": "injected refusal",
        "method": "PUT", "path": "l3FirewallRules"}),
    );
    let err = lab.apply(&firewall(443)).await.unwrap_err();
    let EngineError::Devices { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        failures
            .iter()
            .any(|f| f.starts_with("mx1: commit") && f.contains("injected refusal")),
        "{failures:?}"
    );
    lab.assert_untouched(&csr_before);
    assert!(lab.engine.store().services().unwrap().is_empty());

    // 3. No fault: all three carry the service, and read back in sync.
    lab.apply(&firewall(443)).await.unwrap();
    assert!(lab.csr_running().contains("RP4-acme-web-"));
    assert_eq!(lab.meraki_rules().as_array().unwrap().len(), 2);
    assert_eq!(lab.fdm_rules("deployed"), 2);
    let report = lab.engine.check_sync(None).await.unwrap();
    assert_eq!(report.len(), 3, "{report:?}");
    assert!(
        report.iter().all(|r| r.differences.is_empty()),
        "{report:?}"
    );

    // 4. An update where FTD fails: the others go back to port 443, not to empty.
    lab.fdm.fault(&json!({"deploy_fail": 1}));
    let before = (lab.csr_running(), lab.meraki_rules());
    let err = lab.apply(&firewall(8443)).await.unwrap_err();
    assert!(err.to_string().contains("ftd1"), "{err}");
    assert_eq!(lab.csr_running(), before.0);
    assert_eq!(lab.meraki_rules(), before.1);
    let report = lab.engine.check_sync(None).await.unwrap();
    assert!(
        report.iter().all(|r| r.differences.is_empty()),
        "{report:?}"
    );
}
