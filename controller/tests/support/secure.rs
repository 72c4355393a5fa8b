//! A rampartd for tests, the way operators run it: TLS on with the CA it
//! generates, the bootstrap admin token from its data directory, and
//! helpers to mint tokens of other roles and client certificates.
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
use rampart_proto::v1::{self as pb, access_manager_client::AccessManagerClient};
use tokio::{net::TcpListener, sync::oneshot};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, Channel, ClientTlsConfig, Identity},
};

/// Adds `authorization: Bearer <token>` to every call.
#[derive(Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A channel that authenticates with a token (or nothing).
pub type Authed = InterceptedService<Channel, Bearer>;

/// Wraps a channel so every call carries `token`.
pub fn with_token(ch: Channel, token: Option<&str>) -> Authed {
    let v = token.map(|t| format!("Bearer {t}").parse().expect("token is ASCII"));
    InterceptedService::new(ch, Bearer(v))
}

/// An in-process rampartd on loopback ports, stopped on [`Daemon::stop`].
pub struct Daemon {
    pub api: SocketAddr,
    pub metrics: SocketAddr,
    pub data: PathBuf,
    stop: Option<oneshot::Sender<()>>,
    task: tokio::task::JoinHandle<()>,
    _dir: tempfile::TempDir,
}

/// Limits high enough that functional tests never hit them.
pub fn test_config(data: &Path) -> Config {
    let overrides = Overrides {
        data_dir: Some(data.to_owned()),
        ..Overrides::default()
    };
    let mut config = Config::load(None, &overrides).unwrap();
    config.limits.requests_per_second = 100_000.0;
    config.limits.burst = 100_000;
    config.limits.auth_failures_per_second = 100_000.0;
    config.limits.auth_failure_burst = 100_000;
    config
}

impl Daemon {
    /// With the test defaults.
    pub async fn start() -> Self {
        Self::start_with(|_| {}).await
    }

    /// With the test defaults changed by `adjust`.
    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("data");
        let mut config = test_config(&data);
        adjust(&mut config);
        let api = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let metrics = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let (api_addr, metrics_addr) = (api.local_addr().unwrap(), metrics.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let shutdown = async move {
                let _ = rx.await;
            };
            daemon::run(
                &config,
                Listeners {
                    api,
                    metrics: Some(metrics),
                },
                shutdown,
            )
            .await
            .expect("daemon failed");
        });
        Daemon {
            api: api_addr,
            metrics: metrics_addr,
            data,
            stop: Some(tx),
            task,
            _dir: dir,
        }
    }

    /// The generated CA (what clients trust).
    pub fn ca_pem(&self) -> String {
        std::fs::read_to_string(self.data.join("tls/ca.crt")).unwrap()
    }

    /// The bootstrap admin token.
    pub fn admin_token(&self) -> String {
        std::fs::read_to_string(self.data.join("admin.token"))
            .unwrap()
            .trim()
            .to_owned()
    }

    /// A TLS channel without client certificate (waits for the daemon).
    pub async fn channel(&self) -> Channel {
        self.channel_with(None).await
    }

    /// A TLS channel presenting `identity` as client certificate.
    pub async fn channel_with(&self, identity: Option<Identity>) -> Channel {
        tls_channel(self.api, &self.data, identity, true).await
    }

    /// A channel authenticated as the bootstrap admin.
    pub async fn admin(&self) -> Authed {
        let ch = self.channel().await;
        with_token(ch, Some(&self.admin_token()))
    }

    /// A channel authenticated with `token`.
    pub async fn as_token(&self, token: &str) -> Authed {
        with_token(self.channel().await, Some(token))
    }

    /// Issues a token through the API (as admin) and returns its secret.
    pub async fn token(
        &self,
        name: &str,
        role: &str,
        tenants: &[&str],
        ttl_seconds: u64,
    ) -> String {
        let mut access = AccessManagerClient::new(self.admin().await);
        access
            .create_token(pb::CreateTokenRequest {
                name: name.into(),
                role: role.into(),
                tenants: tenants.iter().map(|t| (*t).to_owned()).collect(),
                ttl_seconds,
            })
            .await
            .unwrap()
            .into_inner()
            .secret
    }

    /// Stops the daemon and waits for it to finish.
    pub async fn stop(mut self) {
        let _ = self.stop.take().unwrap().send(());
        tokio::time::timeout(Duration::from_secs(10), &mut self.task)
            .await
            .expect("daemon did not shut down")
            .unwrap();
    }
}

/// Connects over TLS to `addr`, trusting the CA in `<data>/tls/ca.crt`
/// (waiting for the daemon to create it and listen).
pub async fn tls_channel(
    addr: SocketAddr,
    data: &Path,
    identity: Option<Identity>,
    wait: bool,
) -> Channel {
    let ca_path = data.join("tls/ca.crt");
    for _ in 0..400 {
        if let Ok(ca) = std::fs::read_to_string(&ca_path)
            && data.join("admin.token").exists()
        {
            let mut tls = ClientTlsConfig::new()
                .ca_certificate(Certificate::from_pem(ca))
                .domain_name("localhost");
            if let Some(id) = identity.clone() {
                tls = tls.identity(id);
            }
            let ep = Channel::from_shared(format!("https://{addr}"))
                .unwrap()
                .tls_config(tls)
                .unwrap();
            match ep.connect().await {
                Ok(c) => return c,
                Err(e) if !wait => panic!("cannot connect to {addr}: {e:?}"),
                Err(_) => {}
            }
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    panic!("rampartd did not come up on {addr}");
}
