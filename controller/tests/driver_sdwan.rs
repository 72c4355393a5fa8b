//! The SD-WAN Manager driver against the vManage simulator: centralized
//! data policy created beside the active one, activated with action
//! polling, old objects removed; a failed activation leaving the previous
//! policy active and nothing staged; session expiry in the middle of a
//! transaction; drift; the rate limit.

mod support;

use rampart_controller::{
    model::device::Platform,
    txn::{EngineConfig, EngineError},
};
use serde_json::{Value, json};
use support::{
    lab::{Harness, credentials, device},
    sims::{Sim, SimKind},
};

struct Lab {
    sim: std::sync::Arc<Sim>,
    h: Harness,
}

deref_harness!(Lab);

impl Lab {
    fn start(hook: bool) -> Lab {
        let sim =
            std::sync::Arc::new(Sim::start(SimKind::Vmanage, &["--action-ms", "60"]).unwrap());
        let dir = tempfile::tempdir().unwrap();
        let creds = credentials(&dir, "vmanage", "admin:Admin123#");
        let d = device("vmanage1", Platform::SdWan, sim.base_url(), &creds, &[]);
        let config = EngineConfig {
            ca_bundle: sim.cert.clone(),
            ..EngineConfig::default()
        };
        let mut h = Harness::new(dir, vec![d], config);
        if hook {
            let s = sim.clone();
            h.engine = h.engine.clone().with_before_commit(move |_| {
                // Every session dies between prepare and activation.
                s.fault(&json!({"expire_sessions": true}));
            });
        }
        Lab { sim, h }
    }

    /// (name, activated) of every vSmart policy.
    fn policies(&self) -> Vec<(String, bool)> {
        let st = self.sim.state();
        let mut out: Vec<(String, bool)> = st["vsmartPolicies"]
            .as_object()
            .unwrap()
            .values()
            .map(|p| {
                (
                    p["policyName"].as_str().unwrap().to_owned(),
                    p["isPolicyActivated"].as_bool().unwrap(),
                )
            })
            .collect();
        out.sort();
        out
    }

    fn definitions(&self) -> Vec<Value> {
        self.sim.state()["policyDefinitions"]
            .as_object()
            .unwrap()
            .values()
            .cloned()
            .collect()
    }
}

fn sdwan(name: &str, color: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: SdWan
metadata: {{name: {name}, tenant: acme}}
spec:
  sites:
    - {{siteId: 101, devices: [vmanage1]}}
    - {{siteId: 102, devices: [vmanage1]}}
  policies:
    - {{name: video, destinations: [10.50.0.0/16], preferredColor: {color}, action: permit}}
    - {{name: block-guest, destinations: [192.168.99.0/24], preferredColor: biz-internet, action: deny}}
"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policy_created_activated_replaced_and_removed() {
    let lab = Lab::start(false);
    lab.run(&[&sdwan("wan", "mpls")], &[]).await.unwrap();
    let pols = lab.policies();
    assert_eq!(pols.len(), 1, "{pols:?}");
    assert!(
        pols[0].0.starts_with("RPSP-rampart-") && pols[0].1,
        "{pols:?}"
    );
    let defs = lab.definitions();
    assert_eq!(defs.len(), 1);
    let seqs = defs[0]["sequences"].as_array().unwrap();
    let seq = |n: &str| {
        seqs.iter()
            .find(|s| s["sequenceName"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(seq("video")["baseAction"], "accept");
    assert_eq!(seq("video")["actions"][0]["parameter"][0]["value"], "mpls");
    assert_eq!(seq("video")["match"]["entries"][0]["value"], "10.50.0.0/16");
    assert_eq!(seq("block-guest")["baseAction"], "drop");
    let lists = lab.sim.state()["policyLists"].clone();
    let list = lists.as_object().unwrap().values().next().unwrap().clone();
    assert_eq!(
        list["entries"],
        json!([{"siteId": "101"}, {"siteId": "102"}])
    );
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // A second service: one new policy assembling both definitions replaces the first.
    lab.run(&[&sdwan("branch", "biz-internet")], &[])
        .await
        .unwrap();
    let pols = lab.policies();
    assert_eq!(pols.len(), 1, "old policy not removed: {pols:?}");
    assert!(pols[0].1);
    assert_eq!(lab.definitions().len(), 2);
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Out of band: someone deactivates it.
    let st = lab.sim.state();
    let pid = st["vsmartPolicies"]
        .as_object()
        .unwrap()
        .keys()
        .next()
        .unwrap()
        .clone();
    drop(st);
    deactivate_by_hand(&lab, &pid).await;
    let report = lab.engine.check_sync(None).await.unwrap();
    assert!(!report[0].differences.is_empty(), "{report:?}");
    lab.engine.sync_to_device("vmanage1").await.unwrap();
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );

    // Deleting both services deactivates and removes everything of Rampart's.
    lab.run(&[], &["acme/wan", "acme/branch"]).await.unwrap();
    assert!(lab.policies().is_empty(), "{:?}", lab.policies());
    assert!(lab.definitions().is_empty());
}

async fn deactivate_by_hand(lab: &Lab, pid: &str) {
    let http = reqwest::Client::builder()
        .use_rustls_tls()
        .tls_built_in_root_certs(false)
        .add_root_certificate(
            reqwest::Certificate::from_pem(&std::fs::read(lab.sim.cert.as_ref().unwrap()).unwrap())
                .unwrap(),
        )
        .build()
        .unwrap();
    let base = lab.sim.base_url();
    let r = http
        .post(format!("{base}/j_security_check"))
        .form(&[("j_username", "admin"), ("j_password", "Admin123#")])
        .send()
        .await
        .unwrap();
    let cookie = r
        .headers()
        .get("set-cookie")
        .unwrap()
        .to_str()
        .unwrap()
        .split(';')
        .next()
        .unwrap()
        .to_owned();
    let xsrf = http
        .get(format!("{base}/dataservice/client/token"))
        .header("Cookie", &cookie)
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let r = http
        .post(format!(
            "{base}/dataservice/template/policy/vsmart/deactivate/{pid}"
        ))
        .header("Cookie", &cookie)
        .header("X-XSRF-TOKEN", xsrf)
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    for _ in 0..100 {
        if !lab.policies().iter().any(|p| p.1) {
            return;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    panic!("manual deactivation did not finish");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_activation_keeps_the_previous_policy() {
    let lab = Lab::start(false);
    lab.run(&[&sdwan("wan", "mpls")], &[]).await.unwrap();
    let before = lab.policies();
    let defs_before = lab.definitions().len();
    lab.sim.fault(&json!({"action_fail": 1}));
    let err = lab
        .run(&[&sdwan("wan", "biz-internet")], &[])
        .await
        .unwrap_err();
    let EngineError::Devices { failures, .. } = &err else {
        panic!("{err}")
    };
    assert!(
        failures[0].starts_with("vmanage1: activate: action"),
        "{failures:?}"
    );
    assert!(failures[0].contains("vsmart1"), "{failures:?}");
    assert_eq!(
        lab.policies(),
        before,
        "the previous policy must stay active, the new one removed"
    );
    assert_eq!(
        lab.definitions().len(),
        defs_before,
        "staged definitions left behind"
    );
    assert!(
        lab.engine.check_sync(None).await.unwrap()[0]
            .differences
            .is_empty()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn session_expiring_mid_transaction_logs_in_again() {
    let lab = Lab::start(true);
    lab.run(&[&sdwan("wan", "mpls")], &[]).await.unwrap();
    assert!(lab.policies()[0].1);
    let logins = lab
        .sim
        .requests()
        .iter()
        .filter(|r| r["path"] == "/j_security_check")
        .count();
    assert_eq!(logins, 2, "login at connect, once more after expiry");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_credentials_and_wrong_kind_fail_precisely() {
    let lab = Lab::start(false);
    let fw = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: fw, tenant: acme}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, destinationPorts: [22]}
  targets:
    devices:
      - {device: vmanage1, interface: x, direction: ingress}
";
    let err = lab.run(&[fw], &[]).await.unwrap_err().to_string();
    assert!(
        err.contains("sdwan cannot express Firewall services"),
        "{err}"
    );
    std::fs::write(lab.dir.path().join("vmanage"), "admin:wrong\n").unwrap();
    let err = lab
        .run(&[&sdwan("wan", "mpls")], &[])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("vmanage1: login: credentials refused"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_is_respected_and_retry_after_honoured() {
    use rampart_controller::platforms::{
        driver::Adapter, rest::RestSettings, sdwan::SdWanPlatform,
    };
    let mut lab = Lab::start(false);
    lab.sim
        .fault(&json!({"rate_limit": {"rps": 10, "retry_after": 1}}));
    let settings = RestSettings {
        ca_bundle: lab.sim.cert.clone(),
        rps: 10.0,
        burst: 5.0,
        ..SdWanPlatform::default_settings()
    };
    lab.engine = lab.engine.clone().with_driver(
        Platform::SdWan,
        std::sync::Arc::new(Adapter(SdWanPlatform::new(settings))),
    );
    lab.run(&[&sdwan("wan", "mpls")], &[]).await.unwrap();
    let log = lab.sim.requests();
    assert!(log.len() > 10, "{} requests", log.len());
    assert_eq!(log.iter().filter(|r| r["status"] == 429).count(), 0);

    lab.sim
        .fault(&json!({"clear": true, "fail_next": 1, "status": 429, "retry_after": 1}));
    lab.run(&[&sdwan("wan", "biz-internet")], &[])
        .await
        .unwrap();
    let log = lab.sim.requests();
    let i = log.iter().position(|r| r["status"] == 429).unwrap();
    let gap = log[i + 1]["t"].as_f64().unwrap() - log[i]["t"].as_f64().unwrap();
    assert!(gap >= 0.95, "retried after {gap} s");
    assert!(lab.policies()[0].1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn templates_attached_with_action_polling() {
    use rampart_controller::platforms::{
        rest::RestSettings,
        sdwan::{SdWanParticipant, SdWanPlatform},
    };
    let lab = Lab::start(false);
    let settings = RestSettings {
        ca_bundle: lab.sim.cert.clone(),
        poll_interval: std::time::Duration::from_millis(50),
        ..SdWanPlatform::default_settings()
    };
    let p = SdWanParticipant::connect(&lab.inventory["vmanage1"], &settings)
        .await
        .unwrap();
    let feature = json!({
        "templateName": "RPS-banner", "templateDescription": "Rampart banner",
        "templateType": "cisco_banner", "deviceType": ["vedge-C8000V"],
        "templateMinVersion": "15.0.0", "factoryDefault": false,
        "templateDefinition": {"login": {"vipObjectType": "object", "vipType": "constant", "vipValue": "Rampart lab"}},
    });
    let fid = p.ensure_feature_template(&feature).await.unwrap();
    assert_eq!(
        p.ensure_feature_template(&feature).await.unwrap(),
        fid,
        "idempotent"
    );
    let device = json!({
        "templateName": "RPS-edge", "templateDescription": "Rampart edge",
        "deviceType": "vedge-C8000V", "configType": "template", "factoryDefault": false,
        "policyId": "", "featureTemplateUidRange": [],
        "generalTemplates": [{"templateId": fid, "templateType": "cisco_banner"}],
    });
    let did = p.ensure_device_template(&device).await.unwrap();
    p.attach_device_template(&did, &["edge1"]).await.unwrap();
    let st = lab.sim.state();
    let edge1 = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["host-name"] == "edge1")
        .unwrap();
    assert_eq!(edge1["templateId"], did);

    // A failed push names the device; the attachment is not recorded.
    lab.sim.fault(&json!({"action_fail": 1}));
    let err = p
        .attach_device_template(&did, &["edge2"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("attach: action") && err.contains("edge2"),
        "{err}"
    );
    let st = lab.sim.state();
    let edge2 = st["devices"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["host-name"] == "edge2")
        .unwrap();
    assert_eq!(edge2["templateId"], Value::Null);
    let err = p
        .attach_device_template(&did, &["edge9"])
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("\"edge9\" is not in the manager's inventory"),
        "{err}"
    );
}
