//! A rampartd with its agent port on loopback, restartable on the same data
//! directory, and a test agent speaking the real protocol over mutual TLS.
#![allow(dead_code, reason = "each test file uses a different subset")]

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
    time::Duration,
};

use rampart_controller::{
    config::{Config, Overrides},
    daemon::{self, Listeners},
};
use rampart_proto::v1::{
    self as pb, access_manager_client::AccessManagerClient,
    agent_enrollment_client::AgentEnrollmentClient, agent_service_client::AgentServiceClient,
    device_manager_client::DeviceManagerClient, fleet_manager_client::FleetManagerClient,
    service_manager_client::ServiceManagerClient,
};
use tokio::{
    net::TcpListener,
    sync::{mpsc, oneshot},
};
use tokio_stream::wrappers::ReceiverStream;
use tonic::{
    Request, Status, Streaming,
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

/// A running rampartd.
pub struct Rampartd {
    pub api: SocketAddr,
    pub agents: SocketAddr,
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: Option<tokio::task::JoinHandle<()>>,
}

impl Drop for Rampartd {
    fn drop(&mut self) {
        if let Some(t) = self.task.take() {
            t.abort();
        }
    }
}

/// Starts rampartd on `data` (agent port on 127.0.0.1:0 unless `agents`
/// names a port, as a restart on the same port does).
pub async fn start(data: &Path, agents: Option<SocketAddr>) -> Rampartd {
    start_with(data, agents, |_| {}).await
}

/// [`start`] with the configuration adjusted by `tweak` (southbound
/// settings for tests that also drive devices).
pub async fn start_with(
    data: &Path,
    agents: Option<SocketAddr>,
    tweak: impl FnOnce(&mut Config),
) -> Rampartd {
    let overrides = Overrides {
        data_dir: Some(data.to_owned()),
        ..Overrides::default()
    };
    let mut config: Config = Config::load(None, &overrides).unwrap();
    config.limits.requests_per_second = 100_000.0;
    config.limits.burst = 100_000;
    config.agents.listen = Some(agents.unwrap_or_else(|| "127.0.0.1:0".parse().unwrap()));
    config.agents.refresh_ms = 50;
    config.agents.stale_after_s = 1;
    tweak(&mut config);
    let _ = std::fs::remove_file(data.join("agents.addr"));
    let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let api_addr = api.local_addr().unwrap();
    let (tx, rx) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        daemon::run(&config, Listeners { api, metrics: None }, async move {
            let _ = rx.await;
        })
        .await
        .expect("daemon failed");
    });
    let mut agents_addr = None;
    for _ in 0..500 {
        if let Ok(s) = std::fs::read_to_string(data.join("agents.addr")) {
            agents_addr = Some(s.trim().parse().unwrap());
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    Rampartd {
        api: api_addr,
        agents: agents_addr.expect("agent port never came up"),
        data: data.to_owned(),
        stop: Some(tx),
        task: Some(task),
    }
}

impl Rampartd {
    /// Stops it and waits.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        let t = self.task.take().unwrap();
        tokio::time::timeout(Duration::from_secs(10), t)
            .await
            .expect("daemon did not stop")
            .unwrap();
    }

    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data.join("tls/ca.crt")).unwrap()
    }

    /// The management API as the bootstrap admin.
    pub async fn admin(&self) -> Channel {
        let ca = self.ca_pem();
        let ch = Channel::from_shared(format!("https://{}", self.api))
            .unwrap()
            .tls_config(
                ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(ca))
                    .domain_name("localhost"),
            )
            .unwrap();
        for _ in 0..200 {
            if let Ok(c) = ch.connect().await {
                return c;
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        panic!("management API never came up");
    }

    fn token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    fn authed<T>(&self, msg: T) -> Request<T> {
        let mut r = Request::new(msg);
        r.metadata_mut().insert(
            "authorization",
            format!("Bearer {}", self.token()).parse().unwrap(),
        );
        r
    }

    pub async fn enroll_token(&self, labels: &[(&str, &str)]) -> String {
        FleetManagerClient::new(self.admin().await)
            .create_enroll_token(
                self.authed(pb::CreateEnrollTokenRequest {
                    ttl_secs: 600,
                    labels: labels
                        .iter()
                        .map(|(k, v)| ((*k).into(), (*v).into()))
                        .collect(),
                }),
            )
            .await
            .unwrap()
            .into_inner()
            .token
    }

    pub async fn agents(&self) -> Vec<pb::AgentInfo> {
        FleetManagerClient::new(self.admin().await)
            .list_agents(self.authed(pb::ListAgentsRequest {}))
            .await
            .unwrap()
            .into_inner()
            .agents
    }

    pub async fn revoke(&self, id: &str) -> Result<(), Status> {
        FleetManagerClient::new(self.admin().await)
            .revoke_agent(self.authed(pb::RevokeAgentRequest {
                agent_id: id.into(),
            }))
            .await
            .map(|_| ())
    }

    pub async fn counters(&self, tenant: &str, service: &str) -> Vec<pb::RuleHits> {
        FleetManagerClient::new(self.admin().await)
            .get_service_counters(self.authed(pb::GetServiceCountersRequest {
                tenant: tenant.into(),
                service: service.into(),
            }))
            .await
            .unwrap()
            .into_inner()
            .rules
    }

    /// Applies a host firewall `name` selecting `role=<role>`, permitting
    /// TCP to `port`.
    pub async fn apply_host_fw(&self, name: &str, role: &str, port: u16) {
        self.try_apply_host_fw(name, role, port).await.unwrap();
    }

    /// Applies a host firewall allowing `port` to hosts labelled `role`.
    pub async fn try_apply_host_fw(
        &self,
        name: &str,
        role: &str,
        port: u16,
    ) -> Result<pb::ApplyServiceResponse, Status> {
        let doc = format!(
            "apiVersion: rampart.io/v1
kind: Firewall
metadata: {{name: {name}, tenant: acme}}
spec:
  defaultAction: deny
  rules:
    - {{sequence: 10, action: permit, protocol: tcp, destinationPorts: [{port}]}}
  targets:
    hosts:
      - selector: {{role: {role}}}
"
        );
        ServiceManagerClient::new(self.admin().await)
            .apply_service(self.authed(pb::ApplyServiceRequest {
                document: doc,
                format: 0,
                source_name: "spec.yaml".into(),
                dry_run: false,
            }))
            .await
            .map(tonic::Response::into_inner)
    }

    /// Registers a device with stored credentials.
    pub async fn add_device(&self, device: pb::Device, credentials: pb::DeviceCredentials) {
        DeviceManagerClient::new(self.admin().await)
            .add_device(self.authed(pb::AddDeviceRequest {
                device: Some(device),
                replace: false,
                credentials: Some(credentials),
            }))
            .await
            .unwrap();
    }

    /// A bearer token with `role` over `tenants`.
    pub async fn token_for(&self, role: &str, tenants: &[&str]) -> String {
        AccessManagerClient::new(self.admin().await)
            .create_token(self.authed(pb::CreateTokenRequest {
                name: format!("test-{role}"),
                role: role.into(),
                tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
                ttl_seconds: 600,
            }))
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// Applies (or dry-runs) a YAML document as the holder of `token`.
    pub async fn apply_doc_as(
        &self,
        token: &str,
        doc: &str,
        dry_run: bool,
    ) -> Result<pb::ApplyServiceResponse, Status> {
        let mut r = Request::new(pb::ApplyServiceRequest {
            document: doc.to_owned(),
            format: 0,
            source_name: "spec.yaml".into(),
            dry_run,
        });
        r.metadata_mut()
            .insert("authorization", format!("Bearer {token}").parse().unwrap());
        ServiceManagerClient::new(self.admin().await)
            .apply_service(r)
            .await
            .map(tonic::Response::into_inner)
    }

    /// Applies (or dry-runs) a YAML service document.
    pub async fn apply_doc(
        &self,
        doc: &str,
        dry_run: bool,
    ) -> Result<pb::ApplyServiceResponse, Status> {
        ServiceManagerClient::new(self.admin().await)
            .apply_service(self.authed(pb::ApplyServiceRequest {
                document: doc.to_owned(),
                format: 0,
                source_name: "spec.yaml".into(),
                dry_run,
            }))
            .await
            .map(tonic::Response::into_inner)
    }
}

/// TLS to the agent port, optionally with a client identity.
pub async fn agent_channel(
    addr: SocketAddr,
    ca: &str,
    identity: Option<Identity>,
) -> Result<Channel, tonic::transport::Error> {
    let mut tls = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(ca))
        .domain_name("localhost");
    if let Some(id) = identity {
        tls = tls.identity(id);
    }
    Channel::from_shared(format!("https://{addr}"))
        .unwrap()
        .tls_config(tls)?
        .connect()
        .await
}

/// Key + CSR PEM.
pub fn csr(host: &str) -> (String, String) {
    let key = rcgen::KeyPair::generate().unwrap();
    let mut p = rcgen::CertificateParams::new(Vec::<String>::new()).unwrap();
    p.distinguished_name.push(rcgen::DnType::CommonName, host);
    let csr = p.serialize_request(&key).unwrap();
    (key.serialize_pem(), csr.pem().unwrap())
}

/// An enrolled test agent.
pub struct TestAgent {
    pub id: String,
    pub identity: Identity,
    pub cert_pem: String,
    pub key_pem: String,
}

pub async fn enroll(
    d: &Rampartd,
    token: &str,
    host: &str,
    labels: &[(&str, &str)],
) -> Result<TestAgent, Status> {
    let ch = agent_channel(d.agents, &d.ca_pem(), None).await.unwrap();
    let (key, csr) = csr(host);
    let r = AgentEnrollmentClient::new(ch)
        .enroll(pb::EnrollRequest {
            token: token.into(),
            hostname: host.into(),
            labels: labels
                .iter()
                .map(|(k, v)| ((*k).into(), (*v).into()))
                .collect(),
            csr_pem: csr,
        })
        .await?
        .into_inner();
    Ok(TestAgent {
        id: r.agent_id,
        identity: Identity::from_pem(&r.cert_pem, &key),
        cert_pem: r.cert_pem,
        key_pem: key,
    })
}

/// An open agent session.
pub struct Session {
    pub tx: mpsc::Sender<pb::AgentMessage>,
    pub rx: Streaming<pb::ControllerMessage>,
}

pub fn hello(version: u64, hash: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Hello(pb::Hello {
            applied_version: version,
            policy_hash: hash.into(),
            agent_version: "test".into(),
        })),
    }
}

pub fn ack(version: u64, ok: bool, error: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Ack(pb::Ack {
            version,
            ok,
            error: error.into(),
            staged: false,
        })),
    }
}

pub async fn open(d: &Rampartd, id: Identity, first: pb::AgentMessage) -> Result<Session, Status> {
    let ch = agent_channel(d.agents, &d.ca_pem(), Some(id))
        .await
        .map_err(|e| Status::unavailable(format!("{e:?}")))?;
    let (tx, rx) = mpsc::channel(16);
    tx.send(first).await.unwrap();
    let rx = AgentServiceClient::new(ch)
        .session(ReceiverStream::new(rx))
        .await?
        .into_inner();
    Ok(Session { tx, rx })
}

/// The acknowledgement of a transaction's prepare phase (staged push).
pub fn ack_staged(version: u64, ok: bool, error: &str) -> pb::AgentMessage {
    pb::AgentMessage {
        msg: Some(pb::agent_message::Msg::Ack(pb::Ack {
            version,
            ok,
            error: error.into(),
            staged: true,
        })),
    }
}

/// The next controller message of any kind, within `t`.
pub async fn next_msg(s: &mut Session, t: Duration) -> Option<pb::controller_message::Msg> {
    match tokio::time::timeout(t, s.rx.message()).await {
        Ok(Ok(Some(m))) => m.msg,
        _ => None,
    }
}

/// The next push, within `t`.
pub async fn next_push(s: &mut Session, t: Duration) -> Option<pb::PolicyPush> {
    loop {
        match tokio::time::timeout(t, s.rx.message()).await {
            Ok(Ok(Some(pb::ControllerMessage {
                msg: Some(pb::controller_message::Msg::Push(p)),
            }))) => return Some(p),
            Ok(Ok(Some(_))) => {}
            _ => return None,
        }
    }
}

/// Polls `f` until it returns true or 5 s pass.
pub async fn eventually<F, Fut>(what: &str, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    for _ in 0..250 {
        if f().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    panic!("timed out waiting for: {what}");
}
