//! rampartd replicas on one 3-member etcd cluster, over TLS gRPC on
//! loopback: one leads; the follower serves reads and refuses changes
//! naming the leader, writing nothing; when the leader stops, or is killed
//! in the middle of a transaction on three real netconfd devices, the
//! follower takes over, recovers, and accepts changes.

#[path = "support/etcd.rs"]
mod etcd_cluster;
#[path = "support/secure.rs"]
mod secure;
mod support;

use std::time::{Duration, Instant};

use rampart_controller::config::{Config, StoreBackend};
use rampart_proto::v1::{self as pb, service_manager_client::ServiceManagerClient};
use secure::Daemon;

/// Compiles without any device (enforced by host agents).
const HOST_FIREWALL: &str = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: hosts-fw, tenant: beta}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, destinationPorts: [22]}
  targets:
    hosts:
      - selector: {role: web}
        direction: ingress
";

fn apply(doc: &str) -> pb::ApplyServiceRequest {
    pb::ApplyServiceRequest {
        document: doc.into(),
        format: 0,
        source_name: "spec.yaml".into(),
        dry_run: false,
    }
}

fn get() -> pb::GetServiceRequest {
    pb::GetServiceRequest {
        name: "hosts-fw".into(),
        tenant: "beta".into(),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn follower_serves_reads_refuses_changes_and_takes_over() {
    let Some(cluster) = etcd_cluster::start() else {
        return;
    };
    // Replicas share the store and the secret key; each has its own data
    // directory (its API certificate).
    let key = cluster.dir.path().join("secret.key");
    std::fs::write(&key, [5u8; 32]).unwrap();
    let endpoints = cluster.endpoints.clone();
    let etcd = move |c: &mut Config| {
        c.store.backend = StoreBackend::Etcd;
        c.store.etcd_endpoints.clone_from(&endpoints);
        c.store.etcd_prefix = Some("/replicas/".into());
        c.secrets.key_file = Some(key.clone());
    };
    let first = Daemon::start_with(etcd.clone()).await;
    // The first replica bootstraps the admin token into the shared store.
    let mut leader = ServiceManagerClient::new(first.admin().await);
    let token = first.admin_token();
    let second = Daemon::start_with(etcd).await;
    // It issues none (the store has tokens); the test client looks for the
    // file before it connects.
    std::fs::create_dir_all(&second.data).unwrap();
    std::fs::write(second.data.join("admin.token"), &token).unwrap();
    let mut follower = ServiceManagerClient::new(second.as_token(&token).await);

    let applied = leader.apply_service(apply(HOST_FIREWALL)).await.unwrap();
    assert_eq!(applied.into_inner().services[0].generation, 1);
    let read = follower.get_service(get()).await.unwrap().into_inner();
    assert_eq!(read.generation, 1, "the follower reads the shared store");

    let refused = follower
        .apply_service(apply(HOST_FIREWALL))
        .await
        .expect_err("a follower applied a change");
    assert!(
        refused.message().contains("not the leader"),
        "{}",
        refused.message()
    );
    assert_eq!(
        leader
            .get_service(get())
            .await
            .unwrap()
            .into_inner()
            .generation,
        1
    );

    let stopped = Instant::now();
    first.stop().await;
    let taken_over = loop {
        match follower.apply_service(apply(HOST_FIREWALL)).await {
            Ok(r) => break r.into_inner(),
            Err(e) if e.message().contains("not the leader") => {
                assert!(
                    stopped.elapsed() < Duration::from_secs(10),
                    "no takeover: {}",
                    e.message()
                );
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Err(e) => panic!("unexpected error during takeover: {e}"),
        }
    };
    assert_eq!(taken_over.services[0].generation, 2);
    eprintln!("takeover after a clean stop: {:?}", stopped.elapsed());
    second.stop().await;
}

/// `kill -9` of the leading rampartd (a real process) in the middle of a
/// 3-device NETCONF transaction (real netconfd devices), after every device
/// is prepared and the commit phase is journaled in etcd: the other
/// replica takes over within the goal, finishes the transaction from the
/// journal exactly as crash recovery does (failed, no device changed), and
/// then applies the same change everywhere.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn leader_killed_mid_transaction_follower_recovers_it() {
    use rampart_controller::{
        transport::netconf::{Datastore, Filter, Session},
        wire::naming::object_name,
    };
    use rampart_proto::v1::{
        device_manager_client::DeviceManagerClient,
        transaction_manager_client::TransactionManagerClient,
    };
    use support::netconfd::{Netconfd, PASSWORD, USER};

    let Some(cluster) = etcd_cluster::start() else {
        return;
    };
    let (Some(d1), Some(d2), Some(d3)) = (Netconfd::start(), Netconfd::start(), Netconfd::start())
    else {
        return;
    };
    let devices = [("csr1", &d1), ("csr2", &d2), ("csr3", &d3)];
    let running = |n: &Netconfd| {
        let filter = "<native xmlns=\"http://cisco.com/ns/yang/Cisco-IOS-XE-native\"/>";
        Session::connect(&n.password_config())
            .unwrap()
            .get_config(Datastore::Running, Some(Filter::Subtree(filter.to_owned())))
            .unwrap()
    };
    let dir = tempfile::tempdir().unwrap();
    let known_hosts = dir.path().join("known_hosts");
    let hosts: String = devices
        .iter()
        .map(|(_, d)| std::fs::read_to_string(d.known_hosts()).unwrap())
        .collect();
    std::fs::write(&known_hosts, hosts).unwrap();
    let key = dir.path().join("secret.key");
    std::fs::write(&key, [9u8; 32]).unwrap();
    std::fs::write(
        dir.path().join("rampartd.toml"),
        format!(
            "[southbound]\nknown_hosts = {:?}\ndrift_interval_s = 0\n\
             [store]\nbackend = \"etcd\"\netcd_endpoints = {:?}\netcd_prefix = \"/ha/\"\n\
             [secrets]\nkey_file = {:?}\n",
            known_hosts.display().to_string(),
            cluster.endpoints,
            key.display().to_string()
        ),
    )
    .unwrap();
    let creds = dir.path().join("creds");
    std::fs::write(&creds, format!("{USER}:{PASSWORD}\n")).unwrap();

    let (pa, pb_) = (free_port(), free_port());
    let mut leader = spawn(dir.path(), "a", pa, Some(60_000));
    let ch_a = connect(pa, &dir.path().join("a")).await;
    // The second replica shares the store, so the bootstrap token too.
    std::fs::create_dir_all(dir.path().join("b")).unwrap();
    std::fs::copy(
        dir.path().join("a/admin.token"),
        dir.path().join("b/admin.token"),
    )
    .unwrap();
    let _follower = spawn(dir.path(), "b", pb_, None);
    let ch_b = connect(pb_, &dir.path().join("b")).await;

    let mut devs = DeviceManagerClient::new(ch_a.clone());
    for (name, n) in devices {
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
    let before: Vec<String> = devices.iter().map(|(_, n)| running(n)).collect();

    let mut svc = ServiceManagerClient::new(ch_a);
    let pending = tokio::spawn(async move { svc.apply_service(apply(SPEC3)).await });
    let log = dir.path().join("a.log");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !std::fs::read_to_string(&log)
        .unwrap_or_default()
        .contains("fault injection pause")
    {
        assert!(
            Instant::now() < deadline,
            "the transaction never reached its commit phase:\n{}",
            std::fs::read_to_string(&log).unwrap_or_default()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let killed = Instant::now();
    leader.0.kill().unwrap();
    leader.0.wait().unwrap();
    assert!(
        pending.await.unwrap().is_err(),
        "the apply cannot have been acknowledged"
    );

    // The follower takes over and recovers the transaction from the
    // journal (a read, served by any replica, shows it).
    let mut txs = TransactionManagerClient::new(ch_b.clone());
    let history = |txs: &mut TransactionManagerClient<secure::Authed>| {
        let mut txs = txs.clone();
        async move {
            txs.list_transactions(pb::ListTransactionsRequest {
                limit: 10,
                service: "acme/ha".into(),
                ..Default::default()
            })
            .await
            .unwrap()
            .into_inner()
            .transactions
        }
    };
    let crashed = loop {
        let t = history(&mut txs).await;
        assert_eq!(t.len(), 1, "{t:?}");
        if t[0].state != pb::TransactionState::Pending as i32 {
            break t[0].clone();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(15),
            "never recovered: {t:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let recovered = killed.elapsed();
    assert_eq!(
        crashed.state,
        pb::TransactionState::Failed as i32,
        "{crashed:?}"
    );
    // Not acknowledged, so fully undone: every device as before.
    for ((name, n), b) in devices.iter().zip(&before) {
        assert_eq!(
            &running(n),
            b,
            "{name} changed by an unacknowledged transaction"
        );
    }

    // The new leader accepts the change, on every device.
    let ok = ServiceManagerClient::new(ch_b)
        .apply_service(apply(SPEC3))
        .await
        .unwrap()
        .into_inner();
    eprintln!(
        "leader killed → recovered by the new leader: {recovered:?}, change accepted: {:?}",
        killed.elapsed()
    );
    assert!(recovered < Duration::from_secs(10), "{recovered:?}");
    assert_eq!(history(&mut txs).await[0].id, ok.transaction_id);
    let acl = object_name("4", "acme", "ha");
    for (name, n) in devices {
        assert!(
            running(n).contains(&acl),
            "{name}: the new leader's apply is missing"
        );
    }
}

const SPEC3: &str = "apiVersion: rampart.io/v1
kind: Firewall
metadata: {name: ha, tenant: acme}
spec:
  defaultAction: deny
  rules:
    - {sequence: 10, action: permit, protocol: tcp, destinationPorts: [443]}
  targets:
    devices:
      - {device: csr1, interface: GigabitEthernet2, direction: ingress}
      - {device: csr2, interface: GigabitEthernet2, direction: ingress}
      - {device: csr3, interface: GigabitEthernet2, direction: ingress}
";

struct Proc(std::process::Child);

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

/// A rampartd process with data directory `<dir>/<name>`, log `<name>.log`.
fn spawn(dir: &std::path::Path, name: &str, port: u16, pause_ms: Option<u64>) -> Proc {
    let mut cmd = std::process::Command::new(env!("CARGO_BIN_EXE_rampartd"));
    cmd.args(["--config", dir.join("rampartd.toml").to_str().unwrap()])
        .args(["--data-dir", dir.join(name).to_str().unwrap()])
        .args(["--listen", &format!("127.0.0.1:{port}")])
        .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
        .stdout(std::process::Stdio::null())
        .stderr(std::fs::File::create(dir.join(format!("{name}.log"))).unwrap());
    if let Some(ms) = pause_ms {
        cmd.env("RAMPARTD_FAULT_PAUSE_BEFORE_COMMIT_MS", ms.to_string());
    }
    Proc(cmd.spawn().unwrap())
}

async fn connect(port: u16, data: &std::path::Path) -> secure::Authed {
    let ch = secure::tls_channel(([127, 0, 0, 1], port).into(), data, None, true).await;
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    secure::with_token(ch, Some(token.trim()))
}
