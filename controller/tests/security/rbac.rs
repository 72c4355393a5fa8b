//! Authorization of the management API against a real rampartd over TLS:
//! each role against each RPC (driven by the RBAC table itself), cross-tenant
//! access through every path, expired/revoked/unknown tokens, client
//! certificates, and the audit record of every mutating method.

use std::time::Duration;

use crate::secure::{Authed, Daemon, with_token};
use rampart_controller::{
    auth::{Role, rbac},
    tls::{CertificateAuthority, Usage},
};
use rampart_proto::v1::{
    self as pb, access_manager_client::AccessManagerClient, audit_log_client::AuditLogClient,
    device_manager_client::DeviceManagerClient, fleet_manager_client::FleetManagerClient,
    secret_manager_client::SecretManagerClient, service_manager_client::ServiceManagerClient,
    transaction_manager_client::TransactionManagerClient,
};
use tonic::{Code, Status, transport::Identity};

fn host_fw(name: &str, tenant: &str) -> String {
    format!(
        "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: {tenant}}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, destinationPorts: [22]}}
  targets:
    hosts:
      - selector: {{role: web}}
"
    )
}

fn apply_req(doc: &str, dry_run: bool) -> pb::ApplyServiceRequest {
    pb::ApplyServiceRequest {
        document: doc.into(),
        format: 0,
        source_name: "spec.yaml".into(),
        dry_run,
    }
}

fn device(name: &str) -> pb::Device {
    pb::Device {
        name: name.into(),
        platform: pb::Platform::Iosxe as i32,
        address: "192.0.2.1:830".into(),
        credentials_ref: String::new(),
        labels: Default::default(),
        created: None,
        has_credentials: false,
    }
}

fn unit<T>(r: Result<T, Status>) -> Result<(), Status> {
    r.map(|_| ())
}

/// Calls the method at `path` with a harmless request; `Ok` or the status.
async fn call(ch: &Authed, path: &str) -> Result<(), Status> {
    let ch = ch.clone();
    match path {
        "/rampart.v1.ServiceManager/ApplyService" => unit(
            ServiceManagerClient::new(ch)
                .apply_service(apply_req("", false))
                .await,
        ),
        "/rampart.v1.ServiceManager/DryRun" => unit(
            ServiceManagerClient::new(ch)
                .dry_run(apply_req("", true))
                .await,
        ),
        "/rampart.v1.ServiceManager/GetService" => unit(
            ServiceManagerClient::new(ch)
                .get_service(pb::GetServiceRequest::default())
                .await,
        ),
        "/rampart.v1.ServiceManager/ListServices" => unit(
            ServiceManagerClient::new(ch)
                .list_services(pb::ListServicesRequest::default())
                .await,
        ),
        "/rampart.v1.ServiceManager/DeleteService" => unit(
            ServiceManagerClient::new(ch)
                .delete_service(pb::DeleteServiceRequest::default())
                .await,
        ),
        "/rampart.v1.DeviceManager/AddDevice" => unit(
            DeviceManagerClient::new(ch)
                .add_device(pb::AddDeviceRequest::default())
                .await,
        ),
        "/rampart.v1.DeviceManager/GetDevice" => unit(
            DeviceManagerClient::new(ch)
                .get_device(pb::GetDeviceRequest::default())
                .await,
        ),
        "/rampart.v1.DeviceManager/ListDevices" => unit(
            DeviceManagerClient::new(ch)
                .list_devices(pb::ListDevicesRequest::default())
                .await,
        ),
        "/rampart.v1.DeviceManager/RemoveDevice" => unit(
            DeviceManagerClient::new(ch)
                .remove_device(pb::RemoveDeviceRequest::default())
                .await,
        ),
        "/rampart.v1.TransactionManager/ListTransactions" => unit(
            TransactionManagerClient::new(ch)
                .list_transactions(pb::ListTransactionsRequest::default())
                .await,
        ),
        "/rampart.v1.TransactionManager/GetTransaction" => unit(
            TransactionManagerClient::new(ch)
                .get_transaction(pb::GetTransactionRequest::default())
                .await,
        ),
        "/rampart.v1.TransactionManager/Rollback" => unit(
            TransactionManagerClient::new(ch)
                .rollback(pb::RollbackRequest::default())
                .await,
        ),
        "/rampart.v1.TransactionManager/CheckSync" => unit(
            TransactionManagerClient::new(ch)
                .check_sync(pb::CheckSyncRequest::default())
                .await,
        ),
        "/rampart.v1.TransactionManager/Sync" => unit(
            TransactionManagerClient::new(ch)
                .sync(pb::SyncRequest::default())
                .await,
        ),
        "/rampart.v1.AccessManager/WhoAmI" => unit(
            AccessManagerClient::new(ch)
                .who_am_i(pb::WhoAmIRequest {})
                .await,
        ),
        "/rampart.v1.AccessManager/CreateToken" => unit(
            AccessManagerClient::new(ch)
                .create_token(pb::CreateTokenRequest::default())
                .await,
        ),
        "/rampart.v1.AccessManager/ListTokens" => unit(
            AccessManagerClient::new(ch)
                .list_tokens(pb::ListTokensRequest {})
                .await,
        ),
        "/rampart.v1.AccessManager/RevokeToken" => unit(
            AccessManagerClient::new(ch)
                .revoke_token(pb::RevokeTokenRequest::default())
                .await,
        ),
        "/rampart.v1.AccessManager/BindUser" => unit(
            AccessManagerClient::new(ch)
                .bind_user(pb::BindUserRequest::default())
                .await,
        ),
        "/rampart.v1.AccessManager/UnbindUser" => unit(
            AccessManagerClient::new(ch)
                .unbind_user(pb::UnbindUserRequest::default())
                .await,
        ),
        "/rampart.v1.AccessManager/ListBindings" => unit(
            AccessManagerClient::new(ch)
                .list_bindings(pb::ListBindingsRequest {})
                .await,
        ),
        "/rampart.v1.AuditLog/QueryAudit" => unit(
            AuditLogClient::new(ch)
                .query_audit(pb::QueryAuditRequest::default())
                .await,
        ),
        "/rampart.v1.SecretManager/RotateSecrets" => unit(
            SecretManagerClient::new(ch)
                .rotate_secrets(pb::RotateSecretsRequest {})
                .await,
        ),
        "/rampart.v1.FleetManager/ListAgents" => unit(
            FleetManagerClient::new(ch)
                .list_agents(pb::ListAgentsRequest {})
                .await,
        ),
        "/rampart.v1.FleetManager/CreateEnrollToken" => unit(
            FleetManagerClient::new(ch)
                .create_enroll_token(pb::CreateEnrollTokenRequest::default())
                .await,
        ),
        "/rampart.v1.FleetManager/RevokeAgent" => unit(
            FleetManagerClient::new(ch)
                .revoke_agent(pb::RevokeAgentRequest {
                    agent_id: "no-such-agent".into(),
                })
                .await,
        ),
        "/rampart.v1.FleetManager/GetServiceCounters" => unit(
            FleetManagerClient::new(ch)
                .get_service_counters(pb::GetServiceCountersRequest {
                    tenant: "acme".into(),
                    service: "web".into(),
                })
                .await,
        ),
        other => panic!("no test call for {other}: add one (the RBAC table grew)"),
    }
}

// Input:  a token per role (non-admins granted tenant acme); every method
//         of the RBAC table called with a harmless request.
// Output: a role lacking the permission gets PermissionDenied naming it;
//         a role holding it never gets PermissionDenied/Unauthenticated;
//         no credentials gets Unauthenticated everywhere.
#[tokio::test]
async fn each_role_against_each_rpc() {
    let d = Daemon::start().await;
    let anon = with_token(d.channel().await, None);
    for role in Role::ALL {
        let tenants: &[&str] = if role == Role::Admin { &[] } else { &["acme"] };
        let token = d.token(role.as_str(), role.as_str(), tenants, 3600).await;
        let ch = d.as_token(&token).await;
        for rule in rbac::METHODS {
            let res = call(&ch, rule.path).await;
            if role.grants(rule.permission) {
                if let Err(s) = &res {
                    assert!(
                        !matches!(s.code(), Code::PermissionDenied | Code::Unauthenticated),
                        "{role} must pass the check of {}: {s:?}",
                        rule.path
                    );
                }
            } else {
                let s = res.expect_err(&format!("{role} must not reach {}", rule.path));
                assert_eq!(
                    s.code(),
                    Code::PermissionDenied,
                    "{role} {}: {s:?}",
                    rule.path
                );
                assert!(
                    s.message().contains(rule.permission.as_str()),
                    "{role} {}: message names no permission: {}",
                    rule.path,
                    s.message()
                );
            }
        }
    }
    for rule in rbac::METHODS {
        let s = call(&anon, rule.path).await.expect_err(rule.path);
        assert_eq!(s.code(), Code::Unauthenticated, "{}: {s:?}", rule.path);
    }
    d.stop().await;
}

// Input:  services of tenants acme and beta (same name in both, one only in
//         beta), a device used by both; tokens of tenant acme.
// Output: every read, write, dry-run, transaction, audit, error and metrics
//         path shows acme's data only, and a foreign object is refused the
//         same way whether it exists or not.
#[tokio::test]
async fn cross_tenant_access_through_every_path() {
    let d = Daemon::start().await;
    let admin = d.admin().await;
    let mut svc = ServiceManagerClient::new(admin.clone());
    let mut dev = DeviceManagerClient::new(admin.clone());
    dev.add_device(pb::AddDeviceRequest {
        device: Some(device("csr1")),
        replace: false,
        credentials: None,
    })
    .await
    .unwrap();
    svc.apply_service(apply_req(&host_fw("shared", "acme"), false))
        .await
        .unwrap();
    let beta_txn = svc
        .apply_service(apply_req(&host_fw("shared", "beta"), false))
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    svc.apply_service(apply_req(&host_fw("only-beta", "beta"), false))
        .await
        .unwrap();
    let device_fw =
        include_str!("../../../examples/firewall.yaml").replace("tenant: acme", "tenant: beta");
    let device_applied = svc
        .apply_service(apply_req(&device_fw, false))
        .await
        .is_ok();

    let tenant = d
        .as_token(&d.token("acme-ci", "tenant", &["acme"], 3600).await)
        .await;
    let operator = d
        .as_token(&d.token("acme-op", "operator", &["acme"], 3600).await)
        .await;
    let mut t_svc = ServiceManagerClient::new(tenant.clone());

    // Lists are filtered; asking for beta explicitly is refused.
    let listed = t_svc
        .list_services(pb::ListServicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .services;
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].tenant, "acme");
    let e = t_svc
        .list_services(pb::ListServicesRequest {
            tenant: "beta".into(),
            kind: String::new(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("services:read"), "{e:?}");

    // Get: a foreign tenant is refused identically for existing and
    // missing services; a bare name only matches acme.
    let get = |tenant: &str, name: &str| pb::GetServiceRequest {
        name: name.into(),
        tenant: tenant.into(),
    };
    let exists = t_svc
        .get_service(get("beta", "only-beta"))
        .await
        .unwrap_err();
    let missing = t_svc.get_service(get("beta", "no-such")).await.unwrap_err();
    assert_eq!(exists.code(), Code::PermissionDenied);
    assert_eq!(
        (exists.code(), exists.message()),
        (missing.code(), missing.message())
    );
    assert!(!exists.message().contains("only-beta"));
    let bare = t_svc
        .get_service(get("", "shared"))
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        bare.tenant, "acme",
        "a bare name must not be ambiguous across tenants"
    );
    let hidden = t_svc.get_service(get("", "only-beta")).await.unwrap_err();
    let nothing = t_svc.get_service(get("", "no-such")).await.unwrap_err();
    assert_eq!(hidden.code(), Code::NotFound);
    assert_eq!(
        hidden.message().replace("only-beta", "X"),
        nothing.message().replace("no-such", "X")
    );

    // Writes: delete and apply into beta are refused and change nothing.
    let e = t_svc
        .delete_service(pb::DeleteServiceRequest {
            name: "only-beta".into(),
            tenant: "beta".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("services:write"));
    for dry in [false, true] {
        let e = t_svc
            .apply_service(apply_req(&host_fw("only-beta", "beta"), dry))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied, "dry_run={dry}");
        let e = t_svc
            .dry_run(apply_req(&host_fw("x", "beta"), false))
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::PermissionDenied);
    }
    svc.get_service(get("beta", "only-beta")).await.unwrap();
    // A multi-document apply mixing tenants is refused as a whole.
    let mixed = format!("{}---\n{}", host_fw("a2", "acme"), host_fw("b2", "beta"));
    assert_eq!(
        t_svc
            .apply_service(apply_req(&mixed, false))
            .await
            .unwrap_err()
            .code(),
        Code::PermissionDenied
    );
    assert_eq!(
        svc.get_service(get("acme", "a2")).await.unwrap_err().code(),
        Code::NotFound,
        "half-applied"
    );
    // Dry-run output holds the caller's own data only.
    let dry = t_svc
        .dry_run(apply_req(&host_fw("mine", "acme"), true))
        .await
        .unwrap()
        .into_inner();
    let text = format!("{dry:?}");
    assert!(!text.contains("beta"), "{text}");

    // Transactions: beta's are neither listed nor readable, and reading one
    // looks the same as reading one that does not exist.
    let mut t_txn = TransactionManagerClient::new(tenant.clone());
    let txns = t_txn
        .list_transactions(pb::ListTransactionsRequest::default())
        .await
        .unwrap()
        .into_inner()
        .transactions;
    assert!(!txns.is_empty());
    assert!(
        txns.iter()
            .all(|t| t.services.iter().all(|s| s.starts_with("acme/")))
    );
    let foreign = t_txn
        .get_transaction(pb::GetTransactionRequest {
            id: beta_txn.clone(),
        })
        .await
        .unwrap_err();
    let absent = t_txn
        .get_transaction(pb::GetTransactionRequest {
            id: "txn-999999".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(foreign.code(), Code::PermissionDenied);
    assert_eq!(
        foreign.message().replace(&beta_txn, "X"),
        absent.message().replace("txn-999999", "X")
    );

    // Devices: the tenant role sees only devices its services target.
    let mut t_dev = DeviceManagerClient::new(tenant.clone());
    let devs = t_dev
        .list_devices(pb::ListDevicesRequest::default())
        .await
        .unwrap()
        .into_inner()
        .devices;
    assert!(devs.is_empty(), "acme targets no device: {devs:?}");
    let e = t_dev
        .get_device(pb::GetDeviceRequest {
            name: "csr1".into(),
        })
        .await
        .unwrap_err();
    let e2 = t_dev
        .get_device(pb::GetDeviceRequest {
            name: "nope".into(),
        })
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert_eq!(
        e.message().replace("csr1", "X"),
        e2.message().replace("nope", "X")
    );

    // Errors: an acme operator removing a device beta uses does not learn
    // beta's service names.
    if device_applied {
        let e = DeviceManagerClient::new(operator.clone())
            .remove_device(pb::RemoveDeviceRequest {
                name: "csr1".into(),
            })
            .await
            .unwrap_err();
        assert_eq!(e.code(), Code::FailedPrecondition);
        assert!(!e.message().contains("beta"), "{e:?}");
        assert!(e.message().contains("other tenants"), "{e:?}");
    }

    // Audit: the acme operator sees acme's records only.
    let records = AuditLogClient::new(operator.clone())
        .query_audit(pb::QueryAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    assert!(!records.is_empty());
    for r in &records {
        assert!(!format!("{r:?}").contains("beta"), "{r:?}");
    }

    // Metrics carry no tenant names.
    let metrics = reqwest::get(format!("http://{}/metrics", d.metrics))
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(metrics.contains("rampart_api_requests_total"));
    assert!(!metrics.contains("acme") && !metrics.contains("beta"));
    d.stop().await;
}

// Input:  a token with a one-second lifetime, a revoked token, an unknown
//         one and garbage.
// Output: Unauthenticated saying why, for every method.
#[tokio::test]
async fn expired_revoked_and_unknown_tokens() {
    let d = Daemon::start().await;
    // Expiry has one-second resolution: 3 s leaves room for a loaded machine
    // between issuing the token and its first use.
    let short = d.token("short", "viewer", &["*"], 3).await;
    let revoked = d.token("gone", "viewer", &["*"], 3600).await;
    let who = |t: String| {
        let d = &d;
        async move {
            AccessManagerClient::new(d.as_token(&t).await)
                .who_am_i(pb::WhoAmIRequest {})
                .await
        }
    };
    assert_eq!(who(short.clone()).await.unwrap().into_inner().user, "short");
    let id = AccessManagerClient::new(d.admin().await)
        .list_tokens(pb::ListTokensRequest {})
        .await
        .unwrap()
        .into_inner()
        .tokens
        .into_iter()
        .find(|t| t.name == "gone")
        .unwrap()
        .id;
    who(revoked.clone()).await.unwrap();
    AccessManagerClient::new(d.admin().await)
        .revoke_token(pb::RevokeTokenRequest { id: id.clone() })
        .await
        .unwrap();
    let e = who(revoked).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(
        e.message().contains("revoked") && e.message().contains(&id),
        "{e:?}"
    );

    tokio::time::sleep(Duration::from_millis(4100)).await;
    let e = who(short).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("expired"), "{e:?}");

    let unknown = format!("rpt_{}", "A".repeat(43));
    let e = who(unknown).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    assert!(e.message().contains("unknown"), "{e:?}");
    let e = who("not-a-token".into()).await.unwrap_err();
    assert_eq!(e.code(), Code::Unauthenticated);
    d.stop().await;
}

// Input:  client certificates from rampartd's CA (no role, bound later, role
//         in the OU) and one from a foreign CA.
// Output: the CN is the user; roles come from the binding, else the OU;
//         without either PermissionDenied; the foreign CA is refused.
#[tokio::test]
async fn client_certificate_users() {
    let d = Daemon::start().await;
    d.admin().await; // waits for the CA
    let (ca, _) = CertificateAuthority::load_or_create(&d.data.join("tls")).unwrap();
    let day = Duration::from_secs(86_400);
    let identity =
        |c: rampart_controller::tls::IssuedCert| Identity::from_pem(c.cert_pem, c.key_pem.as_str());
    let alice = identity(ca.issue("alice", &[], Usage::Client, day).unwrap());
    let ch = with_token(d.channel_with(Some(alice)).await, None);
    let e = AccessManagerClient::new(ch.clone())
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap_err();
    assert_eq!(e.code(), Code::PermissionDenied);
    assert!(e.message().contains("users bind alice"), "{e:?}");

    AccessManagerClient::new(d.admin().await)
        .bind_user(pb::BindUserRequest {
            user: "alice".into(),
            role: "operator".into(),
            tenants: vec!["acme".into()],
        })
        .await
        .unwrap();
    let me = AccessManagerClient::new(ch)
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(
        (me.user.as_str(), me.role.as_str(), me.auth_method.as_str()),
        ("alice", "operator", "certificate")
    );
    assert_eq!(me.tenants, ["acme"]);

    let viewer = ca
        .issue_with(
            "cn-ignored",
            &["viewer"],
            &[
                "rampart://user/carol".into(),
                "rampart://tenant/beta".into(),
            ],
            Usage::Client,
            day,
        )
        .unwrap();
    let me = AccessManagerClient::new(with_token(
        d.channel_with(Some(identity(viewer))).await,
        None,
    ))
    .who_am_i(pb::WhoAmIRequest {})
    .await
    .unwrap()
    .into_inner();
    assert_eq!((me.user.as_str(), me.role.as_str()), ("carol", "viewer"));
    assert_eq!(me.tenants, ["beta"]);

    let foreign = CertificateAuthority::generate("evil").unwrap();
    let mallory = identity(
        foreign
            .issue_with("mallory", &["admin"], &[], Usage::Client, day)
            .unwrap(),
    );
    let ep = tonic::transport::Channel::from_shared(format!("https://{}", d.api))
        .unwrap()
        .tls_config(
            tonic::transport::ClientTlsConfig::new()
                .ca_certificate(tonic::transport::Certificate::from_pem(d.ca_pem()))
                .domain_name("localhost")
                .identity(mallory),
        )
        .unwrap();
    let refused = match ep.connect().await {
        Err(_) => true,
        Ok(ch) => AccessManagerClient::new(ch)
            .who_am_i(pb::WhoAmIRequest {})
            .await
            .is_err(),
    };
    assert!(refused, "a certificate from a foreign CA was accepted");
    d.stop().await;
}

// Input:  every mutating method of the RBAC table called by the admin (and
//         one refused call by a viewer).
// Output: one audit record per call with user, method, result and peer;
//         transactions are referenced; secrets are redacted.
#[tokio::test]
async fn every_mutation_has_its_audit_record() {
    let d = Daemon::start_with(|c| c.agents.listen = Some("127.0.0.1:0".parse().unwrap())).await;
    let admin = d.admin().await;
    let mut svc = ServiceManagerClient::new(admin.clone());
    let mut dev = DeviceManagerClient::new(admin.clone());
    let mut acc = AccessManagerClient::new(admin.clone());
    let applied = svc
        .apply_service(apply_req(&host_fw("audited", "acme"), false))
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    let deleted = svc
        .delete_service(pb::DeleteServiceRequest {
            name: "audited".into(),
            tenant: "acme".into(),
        })
        .await
        .unwrap()
        .into_inner()
        .transaction_id;
    dev.add_device(pb::AddDeviceRequest {
        device: Some(device("r1")),
        replace: false,
        credentials: Some(pb::DeviceCredentials {
            username: "u".into(),
            password: "AUDIT-SECRET-PW".into(),
            ..Default::default()
        }),
    })
    .await
    .unwrap();
    dev.remove_device(pb::RemoveDeviceRequest { name: "r1".into() })
        .await
        .unwrap();
    let tok = acc
        .create_token(pb::CreateTokenRequest {
            name: "t1".into(),
            role: "viewer".into(),
            tenants: vec!["acme".into()],
            ttl_seconds: 60,
        })
        .await
        .unwrap()
        .into_inner();
    acc.revoke_token(pb::RevokeTokenRequest {
        id: tok.token.unwrap().id,
    })
    .await
    .unwrap();
    acc.bind_user(pb::BindUserRequest {
        user: "u1".into(),
        role: "viewer".into(),
        tenants: vec!["*".into()],
    })
    .await
    .unwrap();
    acc.unbind_user(pb::UnbindUserRequest { user: "u1".into() })
        .await
        .unwrap();
    SecretManagerClient::new(admin.clone())
        .rotate_secrets(pb::RotateSecretsRequest {})
        .await
        .unwrap();
    // Rolling back the delete recreates the service (host targets only).
    TransactionManagerClient::new(admin.clone())
        .rollback(pb::RollbackRequest {
            id: deleted.clone(),
            dry_run: false,
        })
        .await
        .unwrap();
    // Sync needs a device Rampart configured; without one it is refused,
    // and the refusal is audited like any mutation.
    let nf = TransactionManagerClient::new(admin.clone())
        .sync(pb::SyncRequest {
            device: "nowhere".into(),
            direction: pb::sync_request::Direction::ToDevice as i32,
        })
        .await
        .unwrap_err();
    assert_eq!(nf.code(), Code::NotFound);
    let agent_id = enroll_one_agent(&d, &admin).await;
    FleetManagerClient::new(admin.clone())
        .revoke_agent(pb::RevokeAgentRequest { agent_id })
        .await
        .unwrap();
    // A failed mutation is audited too.
    let bad = svc
        .apply_service(apply_req("kind: [", false))
        .await
        .unwrap_err();
    assert_eq!(bad.code(), Code::InvalidArgument);
    // And one refused by the auth layer.
    let viewer = d.as_token(&d.token("v", "viewer", &["*"], 60).await).await;
    DeviceManagerClient::new(viewer)
        .remove_device(pb::RemoveDeviceRequest { name: "x".into() })
        .await
        .unwrap_err();

    let records = AuditLogClient::new(admin)
        .query_audit(pb::QueryAuditRequest::default())
        .await
        .unwrap()
        .into_inner()
        .records;
    let all = format!("{records:?}");
    assert!(!all.contains("AUDIT-SECRET-PW"), "secret in audit log");
    assert!(!all.contains(&tok.secret), "token secret in audit log");
    for rule in rbac::METHODS.iter().filter(|r| r.mutating) {
        let short = rbac::short_name(rule.path);
        // Sync is called above against a device without Rampart config.
        let want_ok = short != "TransactionManager/Sync";
        let r = records
            .iter()
            .find(|r| r.method == short && (r.code == "OK" || !want_ok))
            .unwrap_or_else(|| panic!("no audit record of a successful {short}: {all}"));
        assert_eq!(r.user, "bootstrap-admin");
        assert_eq!(r.role, "admin");
        assert!(r.peer.starts_with("127.0.0.1:"), "{r:?}");
        assert!(r.auth_method.starts_with("token:tok-"), "{r:?}");
        assert!(r.time.is_some());
    }
    let apply = records
        .iter()
        .find(|r| r.transaction_id == applied)
        .expect("apply's transaction referenced");
    assert_eq!(
        (apply.tenant.as_str(), apply.service.as_str()),
        ("acme", "acme/audited")
    );
    assert!(records.iter().any(|r| r.transaction_id == deleted));
    assert!(
        records
            .iter()
            .any(|r| r.method == "ServiceManager/ApplyService" && r.code == "InvalidArgument")
    );
    assert!(
        records
            .iter()
            .any(|r| r.method == "DeviceManager/RemoveDevice"
                && r.code == "PermissionDenied"
                && r.user == "v")
    );
    // Reads are not audited.
    assert!(!records.iter().any(|r| r.method == "AuditLog/QueryAudit"));
    // Ids are strictly increasing with time order (append-only, newest first).
    assert!(records.windows(2).all(|w| w[0].id > w[1].id));
    // Filters.
    let only_v = AuditLogClient::new(d.admin().await)
        .query_audit(pb::QueryAuditRequest {
            user: "v".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(only_v.len(), 1);
    let by_service = AuditLogClient::new(d.admin().await)
        .query_audit(pb::QueryAuditRequest {
            service: "audited".into(),
            ..Default::default()
        })
        .await
        .unwrap()
        .into_inner()
        .records;
    assert_eq!(by_service.len(), 2, "{by_service:?}");
    d.stop().await;
}

/// Creates an enrollment token (audited) and enrolls one agent through the
/// agent port with it; returns the agent id.
async fn enroll_one_agent(d: &Daemon, admin: &Authed) -> String {
    use rampart_proto::v1::agent_enrollment_client::AgentEnrollmentClient;
    use tonic::transport::{Certificate, Channel, ClientTlsConfig};
    let token = FleetManagerClient::new(admin.clone())
        .create_enroll_token(pb::CreateEnrollTokenRequest::default())
        .await
        .unwrap()
        .into_inner()
        .token;
    let addr = std::fs::read_to_string(d.data.join("agents.addr")).unwrap();
    let ch = Channel::from_shared(format!("https://{}", addr.trim()))
        .unwrap()
        .tls_config(
            ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(d.ca_pem()))
                .domain_name("localhost"),
        )
        .unwrap()
        .connect()
        .await
        .unwrap();
    let key = rcgen::KeyPair::generate().unwrap();
    let csr = rcgen::CertificateParams::new(Vec::<String>::new())
        .unwrap()
        .serialize_request(&key)
        .unwrap()
        .pem()
        .unwrap();
    AgentEnrollmentClient::new(ch)
        .enroll(pb::EnrollRequest {
            token,
            hostname: "audited-host".into(),
            labels: Default::default(),
            csr_pem: csr,
        })
        .await
        .unwrap()
        .into_inner()
        .agent_id
}
