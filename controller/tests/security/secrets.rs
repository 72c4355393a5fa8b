//! Secrets against the real rampartd binary with debug logging: device
//! credentials and token secrets never appear in its log, in any API
//! response or in the store files; generated key material is 0600; the
//! plaintext lab mode says so loudly.

use std::{
    os::unix::fs::PermissionsExt as _,
    path::Path,
    process::{Child, Command, Stdio},
    time::Duration,
};

use crate::secure::{tls_channel, with_token};
use rampart_proto::v1::{
    self as pb, access_manager_client::AccessManagerClient, audit_log_client::AuditLogClient,
    device_manager_client::DeviceManagerClient, service_manager_client::ServiceManagerClient,
    transaction_manager_client::TransactionManagerClient,
};

const PASSWORD: &str = "PW-canary-7f3a9c";
const PRIVATE_KEY: &str = "KEY-canary-51be0d";
const API_KEY: &str = "APIKEY-canary-c0ffee";

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

fn spawn(data: &Path, port: u16, log: &Path, extra: &[&str]) -> Proc {
    Proc(
        Command::new(env!("CARGO_BIN_EXE_rampartd"))
            .args(["--data-dir", data.to_str().unwrap()])
            .args(["--listen", &format!("127.0.0.1:{port}")])
            .args(["--metrics-listen", &format!("127.0.0.1:{}", free_port())])
            .args(["--log-level", "debug"])
            .args(extra)
            .env_remove("RAMPARTD_SECRET_KEY")
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(log).unwrap())
            .spawn()
            .unwrap(),
    )
}

fn grep_dir(dir: &Path, needle: &[u8]) -> Vec<String> {
    let mut hits = Vec::new();
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            hits.extend(grep_dir(&p, needle));
        } else if let Ok(bytes) = std::fs::read(&p)
            && bytes.windows(needle.len()).any(|w| w == needle)
        {
            hits.push(p.display().to_string());
        }
    }
    hits
}

// Input:  rampartd at debug level; a device added with password, private
//         key and API key; tokens created; every read path exercised.
// Output: none of the secrets (nor the bootstrap token) in the log, the
//         responses or the store files; keys and token file are 0600.
#[tokio::test]
async fn secrets_never_reach_logs_responses_or_disk() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("rampartd.log");
    let port = free_port();
    let mut daemon = spawn(&data, port, &log, &[]);
    let ch = tls_channel(([127, 0, 0, 1], port).into(), &data, None, true).await;
    let admin_token = std::fs::read_to_string(data.join("admin.token"))
        .unwrap()
        .trim()
        .to_owned();
    let admin = with_token(ch, Some(&admin_token));
    let mut responses = String::new();

    let mut dev = DeviceManagerClient::new(admin.clone());
    let added = dev
        .add_device(pb::AddDeviceRequest {
            device: Some(pb::Device {
                name: "csr1".into(),
                platform: pb::Platform::Iosxe as i32,
                address: "192.0.2.1:830".into(),
                credentials_ref: String::new(),
                labels: Default::default(),
                created: None,
                has_credentials: false,
            }),
            replace: false,
            credentials: Some(pb::DeviceCredentials {
                username: "admin".into(),
                password: PASSWORD.into(),
                private_key: PRIVATE_KEY.into(),
                api_key: API_KEY.into(),
            }),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(added.has_credentials);
    responses.push_str(&format!("{added:?}"));
    // A failing add with credentials: its error must not echo them either.
    let failed = dev
        .add_device(pb::AddDeviceRequest {
            device: Some(pb::Device {
                name: "Bad Name!".into(),
                platform: pb::Platform::Iosxe as i32,
                ..added.clone()
            }),
            replace: false,
            credentials: Some(pb::DeviceCredentials {
                password: PASSWORD.into(),
                ..Default::default()
            }),
        })
        .await
        .unwrap_err();
    responses.push_str(&format!("{failed:?}"));
    responses.push_str(&format!(
        "{:?}{:?}",
        dev.get_device(pb::GetDeviceRequest {
            name: "csr1".into()
        })
        .await
        .unwrap(),
        dev.list_devices(pb::ListDevicesRequest::default())
            .await
            .unwrap()
    ));
    let mut svc = ServiceManagerClient::new(admin.clone());
    let fw = include_str!("../../../examples/firewall.yaml");
    if let Ok(r) = svc
        .dry_run(pb::ApplyServiceRequest {
            document: fw.into(),
            format: 0,
            source_name: "fw.yaml".into(),
            dry_run: true,
        })
        .await
    {
        responses.push_str(&format!("{r:?}"));
    }
    if let Ok(r) = svc
        .apply_service(pb::ApplyServiceRequest {
            document: fw.into(),
            format: 0,
            source_name: "fw.yaml".into(),
            dry_run: false,
        })
        .await
    {
        responses.push_str(&format!("{r:?}"));
    }
    let mut acc = AccessManagerClient::new(admin.clone());
    let token = acc
        .create_token(pb::CreateTokenRequest {
            name: "ci".into(),
            role: "operator".into(),
            tenants: vec!["acme".into()],
            ttl_seconds: 3600,
        })
        .await
        .unwrap()
        .into_inner()
        .secret;
    // Use the new token once (it is then looked up and logged about).
    AccessManagerClient::new(with_token(
        tls_channel(([127, 0, 0, 1], port).into(), &data, None, true).await,
        Some(&token),
    ))
    .who_am_i(pb::WhoAmIRequest {})
    .await
    .unwrap();
    responses.push_str(&format!(
        "{:?}{:?}{:?}",
        acc.list_tokens(pb::ListTokensRequest {}).await.unwrap(),
        TransactionManagerClient::new(admin.clone())
            .list_transactions(pb::ListTransactionsRequest::default())
            .await
            .unwrap(),
        AuditLogClient::new(admin.clone())
            .query_audit(pb::QueryAuditRequest::default())
            .await
            .unwrap()
    ));
    daemon.0.kill().unwrap();
    daemon.0.wait().unwrap();

    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(
        logged.contains("admin.token"),
        "the log should name the bootstrap token file:\n{logged}"
    );
    assert!(
        logged.contains("device added"),
        "debug log too quiet:\n{logged}"
    );
    for secret in [PASSWORD, PRIVATE_KEY, API_KEY, &token, &admin_token] {
        assert!(!logged.contains(secret), "{secret:?} in the log:\n{logged}");
        assert!(
            !responses.contains(secret),
            "{secret:?} in an API response: {responses}"
        );
        let hits = grep_dir(&data, secret.as_bytes());
        let hits: Vec<_> = hits
            .iter()
            .filter(|h| !h.ends_with("admin.token"))
            .collect();
        assert!(hits.is_empty(), "{secret:?} stored in clear in {hits:?}");
    }
    for f in ["admin.token", "secret.key", "tls/ca.key", "tls/server.key"] {
        let mode = std::fs::metadata(data.join(f))
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(mode, 0o600, "{f} has mode {mode:o}");
    }

    // The stored credentials survive a restart (same generated key).
    let port = free_port();
    let _daemon = spawn(&data, port, &dir.path().join("second.log"), &[]);
    let ch = tls_channel(([127, 0, 0, 1], port).into(), &data, None, true).await;
    let got = DeviceManagerClient::new(with_token(ch, Some(&admin_token)))
        .get_device(pb::GetDeviceRequest {
            name: "csr1".into(),
        })
        .await
        .unwrap()
        .into_inner();
    assert!(got.has_credentials);
}

// Input:  rampartd --insecure.
// Output: plaintext gRPC with a token works, TLS does not, and the log
//         says loudly that TLS is off.
#[tokio::test]
async fn insecure_lab_mode_is_plaintext_and_loud() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("rampartd.log");
    let port = free_port();
    let _daemon = spawn(&data, port, &log, &["--insecure"]);
    let mut channel = None;
    for _ in 0..400 {
        if data.join("admin.token").exists()
            && let Ok(c) =
                tonic::transport::Channel::from_shared(format!("http://127.0.0.1:{port}"))
                    .unwrap()
                    .connect()
                    .await
        {
            channel = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    let token = std::fs::read_to_string(data.join("admin.token")).unwrap();
    let me = AccessManagerClient::new(with_token(channel.unwrap(), Some(token.trim())))
        .who_am_i(pb::WhoAmIRequest {})
        .await
        .unwrap()
        .into_inner();
    assert_eq!(me.role, "admin");
    assert!(!data.join("tls/server.crt").exists());
    let logged = std::fs::read_to_string(&log).unwrap();
    assert!(logged.contains("TLS IS OFF"), "{logged}");
}
