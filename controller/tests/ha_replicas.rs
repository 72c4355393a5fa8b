//! Two real rampartd replicas (the daemon, in process, over TLS gRPC on
//! loopback) on one 3-member etcd cluster: one leads; the follower serves
//! reads and refuses changes naming the leader, writing nothing; when the
//! leader stops, the follower takes over and accepts changes.

#[path = "support/etcd.rs"]
mod etcd_cluster;
#[path = "support/secure.rs"]
mod secure;

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
