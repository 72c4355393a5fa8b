//! Every gRPC call of the management API, over real sockets on loopback,
//! including the error codes a client acts on; the Prometheus endpoint; and
//! store durability across `kill -9` of the real rampartd binary.
//!
//! Every client speaks TLS (the CA rampartd generated) and authenticates
//! with the bootstrap admin token, as operators do.

use std::{
    net::SocketAddr,
    path::Path,
    process::{Child, Command, Stdio},
};

#[path = "support/secure.rs"]
mod secure;

use rampart_proto::v1::{
    self as pb, device_manager_client::DeviceManagerClient,
    service_manager_client::ServiceManagerClient,
    transaction_manager_client::TransactionManagerClient,
};
use secure::{Daemon, tls_channel, with_token};
use tokio::{io::AsyncReadExt as _, io::AsyncWriteExt as _};
use tonic::Code;

const FIREWALL: &str = include_str!("../../examples/firewall.yaml");

/// A firewall enforced only on host agents: compiles without any device.
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

fn device(name: &str, platform: pb::Platform) -> pb::Device {
    pb::Device {
        name: name.into(),
        platform: platform as i32,
        address: "192.0.2.1:830".into(),
        credentials_ref: "env:SECRET_PASSWORD_VAR".into(),
        labels: [("site".to_owned(), "lab".to_owned())].into(),
        created: None,
        has_credentials: false,
    }
}

fn apply_req(doc: &str, dry_run: bool) -> pb::ApplyServiceRequest {
    pb::ApplyServiceRequest {
        document: doc.into(),
        format: 0,
        source_name: "spec.yaml".into(),
        dry_run,
    }
}

async fn http_get(addr: SocketAddr, path: &str) -> String {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(format!("GET {path} HTTP/1.0\r\nHost: x\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).await.unwrap();
    out
}

/// The services a `grpc.reflection.v1` client lists.
async fn reflected_services_v1(ch: secure::Authed) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let msg = stream.message().await?.expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer {msg:?}");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

/// The services a `grpc.reflection.v1alpha` client (grpcio-reflection,
/// older grpcurl) lists.
async fn reflected_services_v1alpha(ch: secure::Authed) -> Result<Vec<String>, tonic::Status> {
    use tonic_reflection::pb::v1alpha::{
        ServerReflectionRequest, server_reflection_client::ServerReflectionClient,
        server_reflection_request::MessageRequest, server_reflection_response::MessageResponse,
    };
    let req = ServerReflectionRequest {
        host: String::new(),
        message_request: Some(MessageRequest::ListServices(String::new())),
    };
    let mut stream = ServerReflectionClient::new(ch)
        .server_reflection_info(tokio_stream::iter(vec![req]))
        .await?
        .into_inner();
    let msg = stream.message().await?.expect("one answer");
    let Some(MessageResponse::ListServicesResponse(list)) = msg.message_response else {
        panic!("unexpected reflection answer {msg:?}");
    };
    Ok(list.service.into_iter().map(|s| s.name).collect())
}

#[tokio::test]
async fn health_and_reflection_are_served() {
    let d = Daemon::start().await;
    // Health needs no credentials (load balancers and probes carry none).
    let mut health = tonic_health::pb::health_client::HealthClient::new(d.channel().await);
    let resp = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "rampart.v1.ServiceManager".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        resp.status,
        tonic_health::pb::health_check_response::ServingStatus::Serving as i32
    );

    let v1 = reflected_services_v1(d.admin().await).await.unwrap();
    let v1alpha = reflected_services_v1alpha(d.admin().await).await.unwrap();
    for want in [
        "rampart.v1.ServiceManager",
        "rampart.v1.DeviceManager",
        "rampart.v1.TransactionManager",
    ] {
        assert!(v1.iter().any(|n| n == want), "{want} missing from {v1:?}");
    }
    let api = |names: &[String]| -> Vec<String> {
        names
            .iter()
            .filter(|n| !n.starts_with("grpc.reflection."))
            .cloned()
            .collect()
    };
    assert_eq!(
        api(&v1),
        api(&v1alpha),
        "both versions describe the same API"
    );
    // Same authentication for both: no credentials, no schema.
    let anon = with_token(d.channel().await, None);
    for refused in [
        reflected_services_v1(anon.clone()).await.unwrap_err(),
        reflected_services_v1alpha(anon).await.unwrap_err(),
    ] {
        assert_eq!(refused.code(), Code::Unauthenticated, "{refused:?}");
    }
    d.stop().await;
}

#[tokio::test]
async fn device_calls_and_their_error_codes() {
    let d = Daemon::start().await;
    let mut c = DeviceManagerClient::new(d.admin().await);
    let added = c
        .add_device(pb::AddDeviceRequest {
            device: Some(device("csr1", pb::Platform::Iosxe)),
            replace: false,
            credentials: None,
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(added.name, "csr1");
    assert!(added.created.is_some());
    assert!(
        !format!("{added:?}").contains("SECRET_PASSWORD_VAR"),
        "credentials reference returned in clear: {added:?}"
    );
    assert_eq!(added.credentials_ref, "env:<redacted>");

    let dup = c
        .add_device(pb::AddDeviceRequest {
            device: Some(device("csr1", pb::Platform::Iosxe)),
            replace: false,
            credentials: None,
        })
        .await
        .unwrap_err();
    assert_eq!(dup.code(), Code::AlreadyExists, "{dup:?}");

    let mut moved = device("csr1", pb::Platform::Iosxe);
    moved.address = "192.0.2.99".into();
    c.add_device(pb::AddDeviceRequest {
        device: Some(moved),
        replace: true,
        credentials: None,
    })
    .await
    .unwrap();
    let got = c
        .get_device(pb::GetDeviceRequest {
            name: "csr1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(got.address, "192.0.2.99");

    let bad_name = c
        .add_device(pb::AddDeviceRequest {
            device: Some(device("Bad Name!", pb::Platform::Asa)),
            replace: false,
            credentials: None,
        })
        .await
        .unwrap_err();
    assert_eq!(bad_name.code(), Code::InvalidArgument);
    assert!(
        bad_name.message().contains("name"),
        "{}",
        bad_name.message()
    );

    let no_platform = c
        .add_device(pb::AddDeviceRequest {
            device: Some(device("x1", pb::Platform::Unspecified)),
            replace: false,
            credentials: None,
        })
        .await
        .unwrap_err();
    assert_eq!(no_platform.code(), Code::InvalidArgument);
    assert!(
        no_platform.message().contains("device.platform"),
        "{}",
        no_platform.message()
    );

    let missing = c
        .add_device(pb::AddDeviceRequest {
            device: None,
            replace: false,
            credentials: None,
        })
        .await;
    assert_eq!(missing.unwrap_err().code(), Code::InvalidArgument);

    c.add_device(pb::AddDeviceRequest {
        device: Some(device("asa1", pb::Platform::Asa)),
        replace: false,
        credentials: None,
    })
    .await
    .unwrap();
    let mut sel = pb::ListDevicesRequest::default();
    let all = c
        .list_devices(sel.clone())
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert_eq!(
        all.iter().map(|d| d.name.as_str()).collect::<Vec<_>>(),
        ["asa1", "csr1"]
    );
    sel.selector.insert("site".into(), "elsewhere".into());
    assert!(
        c.list_devices(sel)
            .await
            .unwrap()
            .into_inner()
            .devices
            .is_empty()
    );

    let nf = c
        .get_device(pb::GetDeviceRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(nf.code(), Code::NotFound);
    let empty = c
        .get_device(pb::GetDeviceRequest {
            name: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(empty.code(), Code::InvalidArgument);
    let nf = c
        .remove_device(pb::RemoveDeviceRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(nf.code(), Code::NotFound);
    c.remove_device(pb::RemoveDeviceRequest {
        name: "asa1".into(),
    })
    .await
    .unwrap();
    assert_eq!(
        c.list_devices(pb::ListDevicesRequest::default())
            .await
            .unwrap()
            .into_inner()
            .devices
            .len(),
        1
    );
    d.stop().await;
}

#[tokio::test]
async fn service_calls_transactions_and_metrics() {
    let d = Daemon::start().await;
    let ch = d.admin().await;
    let mut svc = ServiceManagerClient::new(ch.clone());
    let mut txns = TransactionManagerClient::new(ch.clone());

    // Dry-run stores nothing and returns the agent rendering.
    let dry = svc
        .dry_run(apply_req(HOST_FIREWALL, false))
        .await
        .unwrap()
        .into_inner();
    assert!(dry.dry_run);
    assert!(dry.transaction_id.is_empty());
    assert_eq!(dry.rendered.len(), 1);
    assert_eq!(dry.rendered[0].target, "hosts:role=web");
    assert_eq!(dry.rendered[0].format, "agent-policy");
    let policy: serde_json::Value = serde_json::from_str(&dry.rendered[0].content).unwrap();
    assert_eq!(
        policy["interfaces"][0]["rules"][0]["destination_ports"][0]["first"],
        22
    );
    let flagged = svc
        .apply_service(apply_req(HOST_FIREWALL, true))
        .await
        .unwrap()
        .into_inner();
    assert!(flagged.dry_run);
    let listed = svc
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap();
    assert!(
        listed.into_inner().services.is_empty(),
        "dry-run stored something"
    );
    let t = txns
        .list_transactions(pb::ListTransactionsRequest::default())
        .await
        .unwrap();
    assert!(t.into_inner().transactions.is_empty());

    // Apply twice: generation increments, one transaction each.
    let first = svc
        .apply_service(apply_req(HOST_FIREWALL, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(first.services[0].generation, 1);
    assert!(first.transaction_id.starts_with("txn-"));
    let second = svc
        .apply_service(apply_req(HOST_FIREWALL, false))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(second.services[0].generation, 2);
    assert_ne!(first.transaction_id, second.transaction_id);

    let got = svc
        .get_service(pb::GetServiceRequest {
            name: "hosts-fw".into(),
            tenant: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (got.tenant.as_str(), got.kind.as_str(), got.generation),
        ("beta", "Firewall", 2)
    );
    let spec: serde_json::Value = serde_json::from_str(&got.spec_json).unwrap();
    assert_eq!(spec["spec"]["defaultAction"], "deny", "{spec}");

    // The same name in a second tenant makes the bare name ambiguous.
    let other = HOST_FIREWALL.replace("tenant: beta", "tenant: gamma");
    svc.apply_service(apply_req(&other, false)).await.unwrap();
    let amb = svc
        .get_service(pb::GetServiceRequest {
            name: "hosts-fw".into(),
            tenant: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(amb.code(), Code::FailedPrecondition);
    assert!(amb.message().contains("beta") && amb.message().contains("gamma"));
    let by_tenant = svc
        .list_services(pb::ListServicesRequest {
            tenant: "gamma".into(),
            kind: String::new(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(by_tenant.services.len(), 1);
    let by_kind = svc
        .list_services(pb::ListServicesRequest {
            tenant: String::new(),
            kind: "Router".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(by_kind.services.is_empty());
    let bad_kind = svc
        .list_services(pb::ListServicesRequest {
            tenant: String::new(),
            kind: "Toaster".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_kind.code(), Code::InvalidArgument);

    // An invalid spec: InvalidArgument, every diagnostic with its line, as
    // text and as structured details; nothing stored.
    let bad = HOST_FIREWALL.replace("destinationPorts: [22]", "destinationPorts: [70000]");
    let err = svc.apply_service(apply_req(&bad, false)).await.unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("spec.yaml"), "{}", err.message());
    let details: pb::ValidationErrors = prost::Message::decode(err.details()).unwrap();
    assert!(!details.diagnostics.is_empty());
    let diag = &details.diagnostics[0];
    assert_eq!(diag.line, 7, "{diag:?}");
    assert!(diag.field.contains("destinationPorts"), "{diag:?}");

    // A device target that is not in the inventory.
    let err = svc
        .apply_service(apply_req(FIREWALL, true))
        .await
        .unwrap_err();
    assert_eq!(err.code(), Code::InvalidArgument);
    assert!(err.message().contains("csr1"), "{}", err.message());

    // Transactions: newest first, filter by service, get by id.
    let list = txns
        .list_transactions(pb::ListTransactionsRequest {
            limit: 0,
            service: "beta/hosts-fw".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(list.len(), 2);
    assert_eq!(list[0].id, second.transaction_id);
    assert_eq!(list[0].state, pb::TransactionState::Committed as i32);
    assert!(
        list[0].author.starts_with("bootstrap-admin@127.0.0.1:"),
        "{}",
        list[0].author
    );
    let one = txns
        .get_transaction(pb::GetTransactionRequest {
            id: first.transaction_id.clone(),
        })
        .await
        .unwrap()
        .into_inner();
    assert_eq!(one.changes.len(), 1);
    assert_eq!(one.changes[0].target, "hosts:role=web");
    let nf = txns
        .get_transaction(pb::GetTransactionRequest {
            id: "txn-999999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(nf.code(), Code::NotFound);
    let bad_id = txns
        .get_transaction(pb::GetTransactionRequest {
            id: "banana".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(bad_id.code(), Code::InvalidArgument);

    // Delete: then NotFound.
    let del = svc
        .delete_service(pb::DeleteServiceRequest {
            name: "hosts-fw".into(),
            tenant: "gamma".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(del.transaction_id.starts_with("txn-"));
    let gone = svc
        .delete_service(pb::DeleteServiceRequest {
            name: "hosts-fw".into(),
            tenant: "gamma".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(gone.code(), Code::NotFound);

    // A device used by a service cannot be removed.
    let mut devs = DeviceManagerClient::new(ch);
    devs.add_device(pb::AddDeviceRequest {
        device: Some(device("csr1", pb::Platform::Iosxe)),
        replace: false,
        credentials: None,
    })
    .await
    .unwrap();
    let router = include_str!("../../examples/router.yaml");
    let applied_ok = 4;
    // csr1 is not reachable (no credentials, nothing listening): the
    // transaction aborts at prepare, names the device, and stores nothing.
    let aborted = svc
        .apply_service(apply_req(router, false))
        .await
        .unwrap_err();
    assert_eq!(aborted.code(), Code::Aborted, "{aborted:?}");
    assert!(aborted.message().contains("csr1"), "{}", aborted.message());
    let nf = svc
        .get_service(pb::GetServiceRequest {
            name: "edge-rt".into(),
            tenant: "acme".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(nf.code(), Code::NotFound, "failed apply stored the service");
    let failed = txns
        .list_transactions(pb::ListTransactionsRequest {
            limit: 1,
            service: "acme/edge-rt".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert_eq!(failed[0].state, pb::TransactionState::Failed as i32);
    assert!(failed[0].error.contains("csr1"), "{:?}", failed[0]);
    devs.remove_device(pb::RemoveDeviceRequest {
        name: "csr1".into(),
    })
    .await
    .expect("a device no stored service uses can be removed");

    // Metrics reflect what happened.
    let metrics = http_get(d.metrics, "/metrics").await;
    assert!(metrics.starts_with("HTTP/1.1 200") || metrics.starts_with("HTTP/1.0 200"));
    assert!(
        metrics.contains(&format!(
            r#"rampart_api_requests_total{{code="OK",method="ApplyService"}} {applied_ok}"#
        )),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            r#"rampart_api_requests_total{code="InvalidArgument",method="ApplyService"} 2"#
        ),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rampart_services{kind="Firewall"} 1"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rampart_devices{platform="iosxe"} 0"#),
        "{metrics}"
    );
    assert!(
        metrics.contains(r#"rampart_transactions_total{operation="apply",state="failed"} 1"#),
        "{metrics}"
    );
    assert!(metrics.contains("rampart_store_size_bytes"), "{metrics}");
    assert!(
        metrics.contains("rampart_api_request_duration_seconds_bucket"),
        "{metrics}"
    );
    d.stop().await;
}

// ===== the real binary =====

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn spawn_rampartd(data: &Path, port: u16) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_rampartd"))
            .args(["--data-dir", data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    )
}

async fn connect(port: u16, data: &Path) -> secure::Authed {
    let ch = tls_channel(([127, 0, 0, 1], port).into(), data, None, true).await;
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    with_token(ch, Some(token.trim()))
}

#[tokio::test]
async fn acknowledged_apply_survives_kill_9() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let port = free_port();
    let mut daemon = spawn_rampartd(&data, port);
    let mut svc = ServiceManagerClient::new(connect(port, &data).await);
    let resp = svc
        .apply_service(apply_req(HOST_FIREWALL, false))
        .await
        .unwrap()
        .into_inner();
    let txn = resp.transaction_id.clone();
    // SIGKILL right after the acknowledgement: no chance to flush on exit.
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();

    let port = free_port();
    let _daemon = spawn_rampartd(&data, port);
    let ch = connect(port, &data).await;
    let got = ServiceManagerClient::new(ch.clone())
        .get_service(pb::GetServiceRequest {
            name: "hosts-fw".into(),
            tenant: "beta".into(),
        })
        .await
        .expect("applied service lost after kill -9")
        .into_inner();
    assert_eq!(got.generation, 1);
    let t = TransactionManagerClient::new(ch)
        .get_transaction(pb::GetTransactionRequest { id: txn })
        .await
        .expect("transaction lost after kill -9")
        .into_inner();
    assert_eq!(t.services, ["beta/hosts-fw"]);
}

#[test]
fn bad_config_file_lists_every_error_and_exits_2() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("rampartd.toml");
    std::fs::write(
        &cfg,
        "[api]\nlisten = \"not-an-address\"\n[log]\nformat = \"xml\"\nshout = 1\n",
    )
    .unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_rampartd"))
        .args(["--config", cfg.to_str().unwrap(), "--check-config"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("line 2: api.listen"), "{err}");
    assert!(err.contains("line 4: log.format"), "{err}");
    assert!(err.contains("line 5: log.shout"), "{err}");
}

/// A client that does not check the size first (grpcurl, a script) gets
/// the documented refusal, not tonic's decoder message, and the refusal is
/// audited like any failed apply.
#[tokio::test]
async fn an_oversized_document_gets_the_documented_refusal() {
    let d = Daemon::start().await;
    let mut svc = ServiceManagerClient::new(d.admin().await);
    let big = "# padding\n".repeat(600_000);
    let err = svc.apply_service(apply_req(&big, false)).await.unwrap_err();
    assert_eq!(err.code(), Code::OutOfRange, "{err:?}");
    assert!(
        err.message().contains("documents over 4 MiB are refused"),
        "{}",
        err.message()
    );
    let mut audit = rampart_proto::v1::audit_log_client::AuditLogClient::new(d.admin().await);
    let records = audit
        .query_audit(pb::QueryAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(
        records
            .iter()
            .any(|r| r.method == "ServiceManager/ApplyService" && r.code == "OutOfRange"),
        "{records:?}"
    );
    d.stop().await;
}

/// The issue's history of a 20,000-rule change: transactions of 5 MB each
/// must not break `get transactions` for everyone. Every answer stays under
/// the 4 MiB a default tonic client decodes (this test's client is one):
/// summaries by default, and in full the contents that do not fit are
/// summarised, saying why.
#[tokio::test]
async fn history_answers_stay_under_the_transport_limit() {
    use rampart_controller::{
        store::{Store, TxnChange, TxnRecord, TxnState},
        wire::{Format, Rendering},
    };
    let data = tempfile::tempdir().unwrap();
    let store_dir = data.path().join("data");
    {
        let store = Store::open(&store_dir).unwrap();
        for _ in 0..2 {
            let rendering = Rendering {
                target: "hosts:role=web".into(),
                platform: "agent".into(),
                format: Format::AgentPolicy,
                content: "permit tcp any any eq 443\n".repeat(200_000),
            };
            let t = TxnRecord {
                id: store.next_txn_id().unwrap(),
                state: TxnState::Committed,
                operation: "apply".into(),
                services: vec!["beta/big".into()],
                changes: vec![TxnChange {
                    rendering,
                    error: None,
                }],
                ..TxnRecord::default_pending()
            };
            store.put_txn(&t).await.unwrap();
        }
        store.flush().await.unwrap();
    }
    let dir = store_dir.clone();
    let mut d = Daemon::start_with(move |c| c.store.data_dir = Some(dir)).await;
    d.data = store_dir;
    let mut txns = TransactionManagerClient::new(d.admin().await);
    for full in [false, true] {
        let page = txns
            .list_transactions(pb::ListTransactionsRequest {
                full,
                ..Default::default()
            })
            .await
            .unwrap_or_else(|e| panic!("full={full}: {e}"))
            .into_inner();
        assert_eq!(page.transactions.len(), 2, "full={full}");
        let content = &page.transactions[0].changes[0].content;
        assert!(
            content.starts_with("<summarised: 5200000 bytes, 200000 lines"),
            "{content}"
        );
    }
    let id = txns
        .list_transactions(pb::ListTransactionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .transactions[0]
        .id
        .clone();
    let one = txns
        .get_transaction(pb::GetTransactionRequest { id })
        .await
        .unwrap()
        .into_inner();
    assert!(
        one.changes[0].content.contains("too large for one answer"),
        "{}",
        one.changes[0].content
    );
    d.stop().await;
}
