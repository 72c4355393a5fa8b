//! rampartd killed with `kill -9` in the middle of a transaction across two
//! real netconfd devices, then restarted: the devices end consistent with
//! the journal (nothing committed, transaction recorded failed), and the
//! next apply goes through.

#[path = "support/secure.rs"]
mod secure;
mod support;

use std::{
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rampart_controller::{
    transport::netconf::{Datastore, Filter, Session},
    wire::naming::object_name,
};
use rampart_proto::v1::{
    self as pb, device_manager_client::DeviceManagerClient,
    service_manager_client::ServiceManagerClient,
    transaction_manager_client::TransactionManagerClient,
};
use secure::{tls_channel, with_token};
use support::netconfd::{Netconfd, PASSWORD, USER};

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn spawn(dir: &Path, port: u16, pause_ms: Option<u64>) -> Proc {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_rampartd"));
    cmd.args(["--config", dir.join("rampartd.toml").to_str().unwrap()])
        .args(["--data-dir", dir.join("data").to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(Stdio::null())
        .stderr(Stdio::from(
            std::fs::File::create(dir.join(format!("rampartd-{port}.log"))).unwrap(),
        ));
    if let Some(ms) = pause_ms {
        cmd.env("RAMPARTD_FAULT_PAUSE_BEFORE_COMMIT_MS", ms.to_string());
    }
    Proc(cmd.spawn().unwrap())
}

async fn connect(port: u16, dir: &Path) -> secure::Authed {
    let data = dir.join("data");
    let ch = tls_channel(([127, 0, 0, 1], port).into(), &data, None, true).await;
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    with_token(ch, Some(token.trim()))
}

fn running(n: &Netconfd) -> String {
    let filter = "<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"/>";
    Session::connect(&n.password_config())
        .unwrap()
        .get_config(Datastore::Running, Some(Filter::Subtree(filter.to_owned())))
        .unwrap()
}

const SPEC: &str = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: crash, tenant: acme}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, destinationPorts: [443]}
  targets:
    devices:
      - {device: csr1, interface: GigabitEthernet2, direction: ingress}
      - {device: csr2, interface: GigabitEthernet2, direction: ingress}
";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_between_prepare_and_commit_leaves_devices_as_journaled() {
    let (Some(d1), Some(d2)) = (Netconfd::start(), Netconfd::start()) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    std::fs::write(
        &known_hosts,
        [&d1, &d2]
            .iter()
            .map(|d| std::fs::read_to_string(d.known_hosts()).unwrap())
            .collect::<String>(),
    )
    .unwrap();
    std::fs::write(
        dir.path().join("rampartd.toml"),
        format!(
            "[southbound]\nknown_hosts = {:?}\ndrift_interval_s = 0\n",
            known_hosts.display().to_string()
        ),
    )
    .unwrap();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, format!("{USER}:{PASSWORD}\n")).unwrap();

    let port = free_port();
    let mut daemon = spawn(dir.path(), port, Some(60_000));
    let ch = connect(port, dir.path()).await;
    let mut devs = DeviceManagerClient::new(ch.clone());
    for (name, n) in [("csr1", &d1), ("csr2", &d2)] {
        devs.add_device(pb::AddDeviceRequest {
            device: Some(pb::Device {
                name: name.into(),
                platform: pb::Platform::Iosxe as i32,
                address: format!("127.0.0.1:{}", n.port),
                credentials_ref: format!("file:{}", creds.display()),
                ..Default::default()
            }),
            replace: false,
            credentials: None,
        })
        .await
        .unwrap();
    }
    let before = (running(&d1), running(&d2));

    // Apply in the background; it blocks in the fault-injection pause after
    // both devices are prepared and the commit phase is journaled.
    let mut svc = ServiceManagerClient::new(ch.clone());
    let apply = tokio::spawn(async move {
        svc.apply_service(pb::ApplyServiceRequest {
            document: SPEC.into(),
            source_name: "crash.yaml".into(),
            ..Default::default()
        })
        .await
    });
    let log = dir.path().join(format!("rampartd-{port}.log"));
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("fault injection pause")
    {
        assert!(
            Instant::now() < deadline,
            "transaction never reached the commit phase:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();
    assert!(apply.await.unwrap().is_err(), "apply cannot have succeeded");
    drop(daemon);

    // Restart without the fault: recovery runs before the API serves.
    let port = free_port();
    let _daemon = spawn(dir.path(), port, None);
    let ch = connect(port, dir.path()).await;
    let txns = TransactionManagerClient::new(ch.clone())
        .list_transactions(pb::ListTransactionsRequest {
            limit: 10,
            service: "acme/crash".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(txns.len(), 1, "{txns:?}");
    assert_eq!(
        txns[0].state,
        pb::TransactionState::Failed as i32,
        "{:?}",
        txns[0]
    );
    assert!(txns[0].error.contains("restarted"), "{:?}", txns[0].error);
    let acl = object_name("4", "acme", "crash");
    for (n, b) in [(&d1, &before.0), (&d2, &before.1)] {
        let now = running(n);
        assert!(
            !now.contains(&acl),
            "device changed although the journal says failed: {now}\n{:#?}\nlog: {}",
            txns[0],
            std::fs::read_to_string(dir.path().join(format!("rampartd-{port}.log")))
                .unwrap_or_default()
        );
        assert_eq!(&now, b);
    }
    let nf = ServiceManagerClient::new(ch.clone())
        .get_service(pb::GetServiceRequest {
            name: "crash".into(),
            tenant: "acme".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(nf.code(), tonic::Code::NotFound);

    // The devices are not left locked: the same change now goes through.
    let ok = ServiceManagerClient::new(ch)
        .apply_service(pb::ApplyServiceRequest {
            document: SPEC.into(),
            source_name: "crash.yaml".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner();
    assert!(ok.transaction_id.starts_with("txn-"));
    assert!(running(&d1).contains(&acl) && running(&d2).contains(&acl));
}
