//! Finding and reaching rampartd: flags, then the environment, then
//! `~/.config/rampart/ctl.toml`, then what a local rampartd left in its data
//! directory (its CA and bootstrap admin token).

use std::path::{Path, PathBuf};

use clap::Args;
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, ClientTlsConfig, Identity},
};

use crate::{error::Failure, input::read_file};

/// How to reach and authenticate to rampartd.
#[derive(Debug, Args)]
pub struct Connection {
    /// rampartd's gRPC address [default: https://127.0.0.1:50051].
    #[arg(long, global = true, env = "RAMPART_SERVER")]
    server: Option<String>,
    /// CA certificate (PEM) that signed rampartd's certificate.
    #[arg(long, global = true, env = "RAMPART_CA_CERT")]
    ca_cert: Option<PathBuf>,
    /// API token (prefer --token-file: flags show up in `ps`).
    #[arg(long, global = true, env = "RAMPART_TOKEN", hide_env_values = true)]
    token: Option<String>,
    /// File holding the API token.
    #[arg(long, global = true, env = "RAMPART_TOKEN_FILE")]
    token_file: Option<PathBuf>,
    /// Client certificate (PEM), to authenticate as a certificate user.
    #[arg(long, global = true, requires = "key")]
    cert: Option<PathBuf>,
    /// Its private key (PEM).
    #[arg(long, global = true, requires = "cert")]
    key: Option<PathBuf>,
    /// Talk plaintext to a rampartd running with TLS off (labs only).
    #[arg(long, global = true)]
    insecure: bool,
    /// Config file [default: ~/.config/rampart/ctl.toml].
    #[arg(long, global = true, env = "RAMPART_CTL_CONFIG")]
    config: Option<PathBuf>,
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
pub struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

/// A connection to rampartd that authenticates every call.
pub type Channel = InterceptedService<tonic::transport::Channel, Bearer>;

/// `~/.config/rampart/ctl.toml`: defaults for the connection flags.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields)]
struct CtlConfig {
    server: Option<String>,
    ca_cert: Option<PathBuf>,
    token: Option<String>,
    token_file: Option<PathBuf>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
}

fn env_path(k: &str) -> Option<PathBuf> {
    std::env::var_os(k)
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
}

fn load_config(explicit: Option<&Path>) -> Result<CtlConfig, Failure> {
    let path = match explicit {
        Some(p) => p.to_owned(),
        None => {
            let Some(base) =
                env_path("XDG_CONFIG_HOME").or_else(|| env_path("HOME").map(|h| h.join(".config")))
            else {
                return Ok(CtlConfig::default());
            };
            let p = base.join("rampart/ctl.toml");
            if !p.exists() {
                return Ok(CtlConfig::default());
            }
            p
        }
    };
    let text = read_file(&path, "config file")?;
    toml::from_str(&text).map_err(|e| Failure::usage(format!("{}: {e}", path.display())))
}

/// Data directories a local rampartd uses by default (same order as its
/// own default), for its CA and bootstrap token.
fn local_data_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    dirs.extend(env_path("RAMPARTD_DATA_DIR"));
    dirs.extend(env_path("XDG_DATA_HOME").map(|d| d.join("rampart")));
    dirs.extend(env_path("HOME").map(|h| h.join(".local/share/rampart")));
    dirs.push(PathBuf::from("/var/lib/rampart"));
    dirs
}

impl Connection {
    /// Connects, with TLS unless the address is `http://` or `--insecure`.
    pub async fn connect(&self) -> Result<Channel, Failure> {
        let cfg = load_config(self.config.as_deref())?;
        let server = self.server_url(cfg.server.clone());
        let bearer = self
            .token(&cfg)?
            .map(|t| {
                format!("Bearer {}", t.trim())
                    .parse::<MetadataValue<Ascii>>()
                    .map_err(|_| {
                        Failure::usage("the token contains characters a header cannot carry")
                    })
            })
            .transpose()?;
        let mut endpoint = tonic::transport::Channel::from_shared(server.clone())
            .map_err(|e| Failure::usage(format!("--server {server:?} is not a valid URL: {e}")))?;
        if server.starts_with("https://") {
            endpoint = endpoint
                .tls_config(self.tls(cfg)?)
                .map_err(|e| Failure::usage(format!("TLS set-up: {e}")))?;
        }
        let channel = endpoint
            .connect_timeout(std::time::Duration::from_secs(5))
            .connect()
            .await
            .map_err(|e| Failure {
                code: 6,
                message: format!("cannot reach rampartd at {server}: {}", error_chain(&e)),
            })?;
        Ok(InterceptedService::new(channel, Bearer(bearer)))
    }

    fn server_url(&self, configured: Option<String>) -> String {
        let mut server = self
            .server
            .clone()
            .or(configured)
            .unwrap_or_else(|| "https://127.0.0.1:50051".to_owned());
        if self.insecure {
            if let Some(rest) = server.strip_prefix("https://") {
                server = format!("http://{rest}");
            }
            eprintln!(
                "warning: --insecure: plaintext to {server}; the token crosses the network in clear"
            );
        } else if server.starts_with("http://") {
            eprintln!("warning: {server} is plaintext; the token crosses the network in clear");
        }
        server
    }

    fn token(&self, cfg: &CtlConfig) -> Result<Option<String>, Failure> {
        Ok(match (&self.token, &self.token_file) {
            (Some(t), _) => Some(t.clone()),
            (None, Some(f)) => Some(read_file(f, "token file")?),
            (None, None) => match (&cfg.token, &cfg.token_file) {
                (Some(t), _) => Some(t.clone()),
                (None, Some(f)) => Some(read_file(f, "token file")?),
                (None, None) if self.cert.is_none() && cfg.cert.is_none() => local_data_dirs()
                    .into_iter()
                    .find_map(|d| std::fs::read_to_string(d.join("admin.token")).ok()),
                (None, None) => None,
            },
        })
    }

    fn tls(&self, cfg: CtlConfig) -> Result<ClientTlsConfig, Failure> {
        let ca_path = self.ca_cert.clone().or(cfg.ca_cert).or_else(|| {
            local_data_dirs()
                .into_iter()
                .map(|d| d.join("tls/ca.crt"))
                .find(|p| p.exists())
        });
        let Some(ca_path) = ca_path else {
            return Err(Failure::usage(
                "no CA certificate: pass --ca-cert (or RAMPART_CA_CERT) with rampartd's \
                 <data_dir>/tls/ca.crt",
            ));
        };
        let mut tls = ClientTlsConfig::new().ca_certificate(Certificate::from_pem(read_file(
            &ca_path,
            "CA certificate",
        )?));
        let (cert, key) = match (&self.cert, &self.key) {
            (Some(c), Some(k)) => (Some(c.clone()), Some(k.clone())),
            _ => (cfg.cert, cfg.key),
        };
        if let (Some(c), Some(k)) = (cert, key) {
            tls = tls.identity(Identity::from_pem(
                read_file(&c, "client certificate")?,
                read_file(&k, "client key")?,
            ));
        }
        Ok(tls)
    }
}

fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}
