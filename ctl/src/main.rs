//! rampartctl: the operator's command line over Rampart's gRPC management API.
//!
//! Exit codes, so scripts can branch on them:
//! 0 success, 1 other error, 2 usage, 3 invalid argument (the spec or a
//! flag is wrong), 4 not found, 5 conflict (already exists / failed
//! precondition), 6 rampartd unreachable, 7 not authenticated or permission
//! denied, 8 rate limited (retry later), 9 `check-sync` found drift.
//!
//! Connection settings come from flags, then the environment, then
//! `~/.config/rampart/ctl.toml`, then what a local rampartd left in its data
//! directory (its CA and bootstrap admin token), so on the controller host
//! `rampartctl get services` just works.

use std::{
    collections::BTreeMap,
    io::Read as _,
    path::{Path, PathBuf},
    process::ExitCode,
};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rampart_proto::v1::{
    self as pb, access_manager_client::AccessManagerClient, audit_log_client::AuditLogClient,
    device_manager_client::DeviceManagerClient, fleet_manager_client::FleetManagerClient,
    secret_manager_client::SecretManagerClient, service_manager_client::ServiceManagerClient,
    transaction_manager_client::TransactionManagerClient,
};
use tonic::{
    metadata::{Ascii, MetadataValue},
    service::{Interceptor, interceptor::InterceptedService},
    transport::{Certificate, ClientTlsConfig, Identity},
};

mod output;

use output::Output;

/// Manage Rampart services, devices, transactions, access and audit.
#[derive(Debug, Parser)]
#[command(name = "rampartctl", version, about)]
struct Cli {
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
    /// Output format.
    #[arg(short, long, global = true, value_enum, default_value_t = Format::Table)]
    output: Format,
    #[command(subcommand)]
    command: Command,
}

/// How results are printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Format {
    /// Human-readable tables.
    Table,
    /// JSON, for scripts.
    Json,
    /// YAML.
    Yaml,
    /// One JSON object per line (audit export for a SIEM).
    Jsonl,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Validate, compile and store a service spec (YAML or JSON; `-` for stdin).
    Apply {
        /// The spec file.
        #[arg(short = 'f', long = "file")]
        file: PathBuf,
        /// Show what would be configured, store nothing.
        #[arg(long)]
        dry_run: bool,
    },
    /// Show services, devices or transactions.
    Get {
        #[command(subcommand)]
        what: GetWhat,
    },
    /// Delete a service.
    Delete {
        #[command(subcommand)]
        what: DeleteWhat,
    },
    /// Manage the device inventory.
    Devices {
        #[command(subcommand)]
        action: DeviceAction,
    },
    /// Issue, list and revoke API tokens.
    Tokens {
        #[command(subcommand)]
        action: TokenAction,
    },
    /// Role bindings of client-certificate users.
    Users {
        #[command(subcommand)]
        action: UserAction,
    },
    /// Query the audit log (`-o jsonl` for a SIEM).
    Audit(AuditArgs),
    /// Encrypted device credentials.
    Secrets {
        #[command(subcommand)]
        action: SecretAction,
    },
    /// Show who rampartd thinks you are.
    Whoami,
    /// Host agents: list (default), enrollment tokens, revocation.
    Agents {
        #[command(subcommand)]
        action: Option<AgentAction>,
    },
    /// Undo a committed transaction (refused when later ones changed the
    /// same services).
    Rollback {
        /// Transaction id (`txn-N`).
        id: String,
        /// Show the changes only.
        #[arg(long)]
        dry_run: bool,
    },
    /// Compare devices' running configuration with what Rampart put there
    /// (exit code 9 when any device drifted).
    CheckSync {
        /// One device (default: every device Rampart configured).
        device: Option<String>,
    },
    /// Resolve drift on a device.
    Sync {
        /// Device name.
        device: String,
        /// Re-deploy Rampart's intended configuration.
        #[arg(
            long,
            conflicts_with = "from_device",
            required_unless_present = "from_device"
        )]
        to_device: bool,
        /// Accept the device's configuration as the new baseline.
        #[arg(long)]
        from_device: bool,
    },
}

#[derive(Debug, Subcommand)]
enum AgentAction {
    /// List agents with state, desired/applied policy versions, last error.
    List,
    /// One-time enrollment tokens.
    Token {
        #[command(subcommand)]
        action: AgentTokenAction,
    },
    /// Revoke an agent: its session is closed and it is refused from now on.
    Revoke {
        /// Agent id (`rampartctl agents`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum AgentTokenAction {
    /// Create a single-use enrollment token; printed once.
    Create {
        /// Lifetime (`1h`, `7d`).
        #[arg(long, default_value = "1h")]
        ttl: String,
        /// Label given to the enrolled agent, `key=value` (repeatable).
        #[arg(long = "label", value_parser = parse_label)]
        labels: Vec<(String, String)>,
    },
}

#[derive(Debug, Subcommand)]
enum TokenAction {
    /// Issue a token; its secret is printed once.
    Create {
        /// A label ("ci", "alice-laptop").
        #[arg(long)]
        name: String,
        /// admin, operator, tenant or viewer.
        #[arg(long)]
        role: String,
        /// Tenant granted (repeatable; "*" for all).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Lifetime (`24h`, `30d`) or `never`.
        #[arg(long, default_value = "30d")]
        ttl: String,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token; it stops working at once.
    Revoke {
        /// Token id (`tok-…`).
        id: String,
    },
}

#[derive(Debug, Subcommand)]
enum UserAction {
    /// Grant a role to a certificate user (its CN or rampart://user/ SAN).
    Bind {
        /// User name.
        name: String,
        /// admin, operator, tenant or viewer.
        #[arg(long)]
        role: String,
        /// Tenant granted (repeatable; "*" for all).
        #[arg(long = "tenant")]
        tenants: Vec<String>,
    },
    /// Remove a user's binding.
    Unbind {
        /// User name.
        name: String,
    },
    /// List bindings.
    List,
}

#[derive(Debug, Args)]
struct AuditArgs {
    /// Only records newer than this (`1h`, `7d`) or since a time (RFC 3339).
    #[arg(long)]
    since: Option<String>,
    /// Only records older than this (same forms).
    #[arg(long)]
    until: Option<String>,
    /// Only this user.
    #[arg(long)]
    user: Option<String>,
    /// Only this tenant.
    #[arg(long)]
    tenant: Option<String>,
    /// Only this service (`name` or `tenant/name`).
    #[arg(long)]
    service: Option<String>,
    /// At most this many, newest first.
    #[arg(long, default_value_t = 1000)]
    limit: u32,
}

#[derive(Debug, Subcommand)]
enum SecretAction {
    /// Re-encrypt every stored credential under rampartd's current key.
    Rotate,
}

#[derive(Debug, Subcommand)]
enum GetWhat {
    /// All services, or one by name.
    #[command(alias = "service")]
    Services {
        /// Service name.
        name: Option<String>,
        /// Only this tenant.
        #[arg(long)]
        tenant: Option<String>,
        /// Only this kind (Firewall, Router, ...).
        #[arg(long)]
        kind: Option<String>,
    },
    /// All devices, or one by name.
    #[command(alias = "device")]
    Devices {
        /// Device name.
        name: Option<String>,
        /// Label selector `key=value` (repeatable).
        #[arg(long = "selector", short = 'l', value_parser = parse_label)]
        selector: Vec<(String, String)>,
    },
    /// Recent transactions, or one by id.
    #[command(alias = "transaction", alias = "txn")]
    Transactions {
        /// Transaction id (`txn-N`).
        id: Option<String>,
        /// Only transactions touching this service.
        #[arg(long)]
        service: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
    },
}

#[derive(Debug, Subcommand)]
enum DeleteWhat {
    /// Delete a service.
    Service {
        /// Service name.
        name: String,
        /// Tenant (needed when the name exists in several).
        #[arg(long)]
        tenant: Option<String>,
    },
}

#[derive(Debug, Subcommand)]
enum DeviceAction {
    /// Add one device, or every device of an inventory file (`-f`).
    Add(DeviceAdd),
    /// Remove a device no service uses.
    #[command(alias = "rm")]
    Remove {
        /// Device name.
        name: String,
    },
}

#[derive(Debug, Args)]
struct DeviceAdd {
    /// Device name (omit with -f).
    #[arg(required_unless_present = "file")]
    name: Option<String>,
    /// iosxe, asa, ftd, meraki-mx or sdwan.
    #[arg(long, required_unless_present = "file")]
    platform: Option<String>,
    /// Management address (`host` or `host:port`).
    #[arg(long, required_unless_present = "file")]
    address: Option<String>,
    /// Credentials reference (`env:VAR`, `file:/path`).
    #[arg(long, default_value = "")]
    credentials: String,
    /// Secret credentials to store encrypted in rampartd: a YAML/JSON file
    /// with `username`, `password`, `privateKey`, `apiKey` (any subset).
    #[arg(long)]
    credentials_file: Option<PathBuf>,
    /// Label `key=value` (repeatable).
    #[arg(long = "label", short = 'l', value_parser = parse_label)]
    labels: Vec<(String, String)>,
    /// Overwrite an existing device of the same name.
    #[arg(long)]
    replace: bool,
    /// Inventory file (YAML/JSON: `devices: [{name, platform, address, credentialsRef, labels}]`).
    #[arg(short = 'f', long = "file", conflicts_with_all = ["name", "platform", "address"])]
    file: Option<PathBuf>,
}

fn parse_label(s: &str) -> Result<(String, String), String> {
    s.split_once('=')
        .map(|(k, v)| (k.to_owned(), v.to_owned()))
        .ok_or_else(|| format!("{s:?} is not key=value"))
}

/// What went wrong, with the exit code it maps to.
#[derive(Debug)]
struct Failure {
    code: u8,
    message: String,
}

impl From<tonic::Status> for Failure {
    fn from(s: tonic::Status) -> Self {
        use tonic::Code as C;
        let code = match s.code() {
            C::InvalidArgument | C::OutOfRange => 3,
            C::NotFound => 4,
            C::AlreadyExists | C::FailedPrecondition | C::Aborted => 5,
            C::Unavailable => 6,
            C::Unauthenticated | C::PermissionDenied => 7,
            C::ResourceExhausted => 8,
            _ => 1,
        };
        Failure {
            code,
            message: format!("{:?}: {}", s.code(), s.message()),
        }
    }
}

impl From<anyhow::Error> for Failure {
    fn from(e: anyhow::Error) -> Self {
        Failure {
            code: 1,
            message: format!("{e:#}"),
        }
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("error: cannot start runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match rt.block_on(run(cli)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("error: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

/// Adds the bearer token to every call.
#[derive(Debug, Clone)]
struct Bearer(Option<MetadataValue<Ascii>>);

impl Interceptor for Bearer {
    fn call(&mut self, mut req: tonic::Request<()>) -> Result<tonic::Request<()>, tonic::Status> {
        if let Some(v) = &self.0 {
            req.metadata_mut().insert("authorization", v.clone());
        }
        Ok(req)
    }
}

type Channel = InterceptedService<tonic::transport::Channel, Bearer>;

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

fn usage(message: String) -> Failure {
    Failure { code: 3, message }
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
    let text = std::fs::read_to_string(&path)
        .map_err(|e| usage(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| usage(format!("{}: {e}", path.display())))
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

fn read_file(path: &Path, what: &str) -> Result<String, Failure> {
    std::fs::read_to_string(path)
        .map_err(|e| usage(format!("cannot read {what} {}: {e}", path.display())))
}

async fn connect(cli: &Cli) -> Result<Channel, Failure> {
    let cfg = load_config(cli.config.as_deref())?;
    let mut server = cli
        .server
        .clone()
        .or(cfg.server)
        .unwrap_or_else(|| "https://127.0.0.1:50051".to_owned());
    if cli.insecure {
        if let Some(rest) = server.strip_prefix("https://") {
            server = format!("http://{rest}");
        }
        eprintln!(
            "warning: --insecure: plaintext to {server}; the token crosses the network in clear"
        );
    } else if server.starts_with("http://") {
        eprintln!("warning: {server} is plaintext; the token crosses the network in clear");
    }
    let token = match (&cli.token, &cli.token_file) {
        (Some(t), _) => Some(t.clone()),
        (None, Some(f)) => Some(read_file(f, "token file")?),
        (None, None) => match (cfg.token, cfg.token_file) {
            (Some(t), _) => Some(t),
            (None, Some(f)) => Some(read_file(&f, "token file")?),
            (None, None) if cli.cert.is_none() && cfg.cert.is_none() => local_data_dirs()
                .into_iter()
                .find_map(|d| std::fs::read_to_string(d.join("admin.token")).ok()),
            (None, None) => None,
        },
    };
    let bearer = token
        .map(|t| {
            format!("Bearer {}", t.trim())
                .parse::<MetadataValue<Ascii>>()
                .map_err(|_| usage("the token contains characters a header cannot carry".into()))
        })
        .transpose()?;
    let mut endpoint = tonic::transport::Channel::from_shared(server.clone())
        .map_err(|e| usage(format!("--server {server:?} is not a valid URL: {e}")))?;
    if server.starts_with("https://") {
        let ca_path = cli.ca_cert.clone().or(cfg.ca_cert).or_else(|| {
            local_data_dirs()
                .into_iter()
                .map(|d| d.join("tls/ca.crt"))
                .find(|p| p.exists())
        });
        let mut tls = ClientTlsConfig::new();
        match ca_path {
            Some(p) => {
                tls = tls.ca_certificate(Certificate::from_pem(read_file(&p, "CA certificate")?));
            }
            None => {
                return Err(usage(
                    "no CA certificate: pass --ca-cert (or RAMPART_CA_CERT) with rampartd's \
                     <data_dir>/tls/ca.crt"
                        .into(),
                ));
            }
        }
        let (cert, key) = match (&cli.cert, &cli.key) {
            (Some(c), Some(k)) => (Some(c.clone()), Some(k.clone())),
            _ => (cfg.cert, cfg.key),
        };
        if let (Some(c), Some(k)) = (cert, key) {
            tls = tls.identity(Identity::from_pem(
                read_file(&c, "client certificate")?,
                read_file(&k, "client key")?,
            ));
        }
        endpoint = endpoint
            .tls_config(tls)
            .map_err(|e| usage(format!("TLS set-up: {e}")))?;
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

/// `24h`, `30d`, `never`/`0` (= no expiry) in seconds.
fn ttl_seconds(s: &str) -> Result<u64, Failure> {
    if s == "never" || s == "0" {
        return Ok(0);
    }
    humantime::parse_duration(s)
        .map(|d| d.as_secs().max(1))
        .map_err(|e| usage(format!("--ttl {s:?}: {e} (use e.g. 24h, 30d or never)")))
}

/// `1h` (ago) or an RFC 3339 time, as a timestamp.
fn time_arg(flag: &str, s: &str) -> Result<prost_types::Timestamp, Failure> {
    let t = match humantime::parse_duration(s) {
        Ok(d) => std::time::SystemTime::now()
            .checked_sub(d)
            .unwrap_or(std::time::UNIX_EPOCH),
        Err(_) => humantime::parse_rfc3339_weak(s).map_err(|e| {
            usage(format!(
                "--{flag} {s:?}: neither a duration (1h) nor a time: {e}"
            ))
        })?,
    };
    let d = t.duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    Ok(prost_types::Timestamp {
        seconds: i64::try_from(d.as_secs()).unwrap_or(i64::MAX),
        nanos: i32::try_from(d.subsec_nanos()).unwrap_or(0),
    })
}

/// A credentials file.
#[derive(Debug, Default, serde::Deserialize)]
#[serde(default, deny_unknown_fields, rename_all = "camelCase")]
struct CredentialsFile {
    username: String,
    password: String,
    private_key: String,
    api_key: String,
}

fn credentials_file(path: &PathBuf) -> Result<pb::DeviceCredentials, Failure> {
    let (text, name) = read_input(path)?;
    let c: CredentialsFile =
        serde_norway::from_str(&text).map_err(|e| usage(format!("{name}: {e}")))?;
    Ok(pb::DeviceCredentials {
        username: c.username,
        password: c.password,
        private_key: c.private_key,
        api_key: c.api_key,
    })
}

fn read_input(path: &PathBuf) -> Result<(String, String), Failure> {
    let read_err = |e: std::io::Error| Failure {
        code: 3,
        message: format!("cannot read {}: {e}", path.display()),
    };
    if path.as_os_str() == "-" {
        let mut s = String::new();
        std::io::stdin().read_to_string(&mut s).map_err(read_err)?;
        Ok((s, "<stdin>".to_owned()))
    } else {
        Ok((
            std::fs::read_to_string(path).map_err(read_err)?,
            path.display().to_string(),
        ))
    }
}

async fn run(cli: Cli) -> Result<(), Failure> {
    let out = Output::new(cli.output);
    let channel = connect(&cli).await?;
    match cli.command {
        Command::Apply { file, dry_run } => {
            let (document, source_name) = read_input(&file)?;
            let format = if file.extension().is_some_and(|e| e == "json") {
                pb::SpecFormat::Json
            } else {
                pb::SpecFormat::Unspecified
            };
            let req = pb::ApplyServiceRequest {
                document,
                format: format as i32,
                source_name,
                dry_run,
            };
            let resp = ServiceManagerClient::new(channel)
                .apply_service(req)
                .await?
                .into_inner();
            out.apply(&resp);
        }
        Command::Get { what } => get(channel, what, &out).await?,
        Command::Rollback { id, dry_run } => {
            let t = TransactionManagerClient::new(channel)
                .rollback(pb::RollbackRequest { id, dry_run })
                .await?
                .into_inner();
            out.transaction(&t);
        }
        Command::CheckSync { device } => {
            let resp = TransactionManagerClient::new(channel)
                .check_sync(pb::CheckSyncRequest {
                    device: device.unwrap_or_default(),
                })
                .await?
                .into_inner();
            out.check_sync(&resp);
            if resp.devices.iter().any(|d| !d.in_sync) {
                return Err(Failure {
                    code: 9,
                    message: "drift detected".to_owned(),
                });
            }
        }
        Command::Sync {
            device,
            to_device,
            from_device: _,
        } => {
            let direction = if to_device {
                pb::sync_request::Direction::ToDevice
            } else {
                pb::sync_request::Direction::FromDevice
            };
            TransactionManagerClient::new(channel)
                .sync(pb::SyncRequest {
                    device: device.clone(),
                    direction: direction as i32,
                })
                .await?;
            out.message(&format!(
                "{device} synced {}",
                if to_device {
                    "to the device"
                } else {
                    "from the device"
                }
            ));
        }
        Command::Delete {
            what: DeleteWhat::Service { name, tenant },
        } => {
            let req = pb::DeleteServiceRequest {
                name,
                tenant: tenant.unwrap_or_default(),
            };
            let resp = ServiceManagerClient::new(channel)
                .delete_service(req)
                .await?
                .into_inner();
            out.message(&format!("deleted ({})", resp.transaction_id));
        }
        Command::Devices {
            action: DeviceAction::Remove { name },
        } => {
            let req = pb::RemoveDeviceRequest { name: name.clone() };
            DeviceManagerClient::new(channel).remove_device(req).await?;
            out.message(&format!("device {name} removed"));
        }
        Command::Devices {
            action: DeviceAction::Add(add),
        } => {
            let replace = add.replace;
            let credentials = add
                .credentials_file
                .as_ref()
                .map(credentials_file)
                .transpose()?;
            let devices = match &add.file {
                Some(file) => inventory_file(file)?,
                None => vec![device_from_flags(add)?],
            };
            let mut client = DeviceManagerClient::new(channel);
            let mut added = Vec::new();
            for device in devices {
                let name = device.name.clone();
                let d = client
                    .add_device(pb::AddDeviceRequest {
                        device: Some(device),
                        replace,
                        credentials: credentials.clone(),
                    })
                    .await
                    .map_err(|s| {
                        let mut f = Failure::from(s);
                        f.message = format!("device {name}: {}", f.message);
                        f
                    })?
                    .into_inner();
                added.push(d);
            }
            out.devices(&added);
        }
        Command::Tokens { action } => tokens(channel, action, &out).await?,
        Command::Users { action } => users(channel, action, &out).await?,
        Command::Audit(a) => {
            let req = pb::QueryAuditRequest {
                since: a
                    .since
                    .as_deref()
                    .map(|s| time_arg("since", s))
                    .transpose()?,
                until: a
                    .until
                    .as_deref()
                    .map(|s| time_arg("until", s))
                    .transpose()?,
                user: a.user.unwrap_or_default(),
                tenant: a.tenant.unwrap_or_default(),
                service: a.service.unwrap_or_default(),
                limit: a.limit,
            };
            let resp = AuditLogClient::new(channel)
                .query_audit(req)
                .await?
                .into_inner();
            out.audit(&resp.records);
        }
        Command::Secrets {
            action: SecretAction::Rotate,
        } => {
            let r = SecretManagerClient::new(channel)
                .rotate_secrets(pb::RotateSecretsRequest {})
                .await?
                .into_inner();
            out.message(&format!(
                "re-encrypted {} of {} credential record(s); all are under key {}",
                r.reencrypted, r.total, r.key_id
            ));
        }
        Command::Whoami => {
            let w = AccessManagerClient::new(channel)
                .who_am_i(pb::WhoAmIRequest {})
                .await?
                .into_inner();
            out.whoami(&w);
        }
        Command::Agents { action } => agents(channel, action, &out).await?,
    }
    Ok(())
}

async fn tokens(channel: Channel, action: TokenAction, out: &Output) -> Result<(), Failure> {
    let mut c = AccessManagerClient::new(channel);
    match action {
        TokenAction::Create {
            name,
            role,
            tenants,
            ttl,
        } => {
            let req = pb::CreateTokenRequest {
                name,
                role,
                tenants,
                ttl_seconds: ttl_seconds(&ttl)?,
            };
            out.new_token(&c.create_token(req).await?.into_inner());
        }
        TokenAction::List => {
            out.tokens(
                &c.list_tokens(pb::ListTokensRequest {})
                    .await?
                    .into_inner()
                    .tokens,
            );
        }
        TokenAction::Revoke { id } => {
            let t = c
                .revoke_token(pb::RevokeTokenRequest { id })
                .await?
                .into_inner();
            out.message(&format!(
                "token {} revoked",
                t.token.map(|t| t.id).unwrap_or_default()
            ));
        }
    }
    Ok(())
}

async fn users(channel: Channel, action: UserAction, out: &Output) -> Result<(), Failure> {
    let mut c = AccessManagerClient::new(channel);
    match action {
        UserAction::Bind {
            name,
            role,
            tenants,
        } => {
            let b = c
                .bind_user(pb::BindUserRequest {
                    user: name,
                    role,
                    tenants,
                })
                .await?
                .into_inner();
            out.bindings(&[b]);
        }
        UserAction::Unbind { name } => {
            c.unbind_user(pb::UnbindUserRequest { user: name.clone() })
                .await?;
            out.message(&format!("binding of {name} removed"));
        }
        UserAction::List => {
            out.bindings(
                &c.list_bindings(pb::ListBindingsRequest {})
                    .await?
                    .into_inner()
                    .bindings,
            );
        }
    }
    Ok(())
}

async fn get(channel: Channel, what: GetWhat, out: &Output) -> Result<(), Failure> {
    match what {
        GetWhat::Services {
            name: Some(name),
            tenant,
            ..
        } => {
            let req = pb::GetServiceRequest {
                name,
                tenant: tenant.unwrap_or_default(),
            };
            let s = ServiceManagerClient::new(channel.clone())
                .get_service(req)
                .await?
                .into_inner();
            out.service(&s);
            // Hits per rule from host agents (empty for device-only services).
            let hits = FleetManagerClient::new(channel)
                .get_service_counters(pb::GetServiceCountersRequest {
                    tenant: s.tenant.clone(),
                    service: s.name.clone(),
                })
                .await?
                .into_inner();
            out.rule_hits(&hits.rules);
        }
        GetWhat::Services {
            name: None,
            tenant,
            kind,
        } => {
            let req = pb::ListServicesRequest {
                tenant: tenant.unwrap_or_default(),
                kind: kind.unwrap_or_default(),
            };
            let resp = ServiceManagerClient::new(channel)
                .list_services(req)
                .await?
                .into_inner();
            out.services(&resp.services);
        }
        GetWhat::Devices {
            name: Some(name), ..
        } => {
            let d = DeviceManagerClient::new(channel)
                .get_device(pb::GetDeviceRequest { name })
                .await?
                .into_inner();
            out.devices(&[d]);
        }
        GetWhat::Devices {
            name: None,
            selector,
        } => {
            let req = pb::ListDevicesRequest {
                selector: selector.into_iter().collect(),
            };
            let resp = DeviceManagerClient::new(channel)
                .list_devices(req)
                .await?
                .into_inner();
            out.devices(&resp.devices);
        }
        GetWhat::Transactions { id: Some(id), .. } => {
            let t = TransactionManagerClient::new(channel)
                .get_transaction(pb::GetTransactionRequest { id })
                .await?
                .into_inner();
            out.transaction(&t);
        }
        GetWhat::Transactions {
            id: None,
            service,
            limit,
        } => {
            let req = pb::ListTransactionsRequest {
                limit,
                service: service.unwrap_or_default(),
            };
            let resp = TransactionManagerClient::new(channel)
                .list_transactions(req)
                .await?
                .into_inner();
            out.transactions(&resp.transactions);
        }
    }
    Ok(())
}

fn platform(word: &str) -> Result<pb::Platform, Failure> {
    let p = match word {
        "iosxe" => pb::Platform::Iosxe,
        "asa" => pb::Platform::Asa,
        "ftd" => pb::Platform::Ftd,
        "meraki-mx" => pb::Platform::MerakiMx,
        "sdwan" => pb::Platform::Sdwan,
        other => {
            return Err(Failure {
                code: 3,
                message: format!(
                    "platform {other:?} is not one of iosxe, asa, ftd, meraki-mx, sdwan"
                ),
            });
        }
    };
    Ok(p)
}

fn device_from_flags(add: DeviceAdd) -> Result<pb::Device, Failure> {
    Ok(pb::Device {
        name: add.name.unwrap_or_default(),
        platform: platform(add.platform.as_deref().unwrap_or_default())? as i32,
        address: add.address.unwrap_or_default(),
        credentials_ref: add.credentials,
        labels: add.labels.into_iter().collect(),
        created: None,
        has_credentials: false,
    })
}

/// An inventory file: `devices: [...]`.
#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct Inventory {
    devices: Vec<InventoryDevice>,
}

#[derive(Debug, serde::Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct InventoryDevice {
    name: String,
    platform: String,
    address: String,
    #[serde(default)]
    credentials_ref: String,
    #[serde(default)]
    labels: BTreeMap<String, String>,
}

fn inventory_file(path: &PathBuf) -> Result<Vec<pb::Device>, Failure> {
    let (text, name) = read_input(path)?;
    let inv: Inventory = serde_norway::from_str(&text).map_err(|e| Failure {
        code: 3,
        message: format!("{name}: {e}"),
    })?;
    inv.devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let p = platform(&d.platform).map_err(|f| Failure {
                code: f.code,
                message: format!("{name}: devices[{i}].platform: {}", f.message),
            })?;
            Ok(pb::Device {
                name: d.name,
                platform: p as i32,
                address: d.address,
                credentials_ref: d.credentials_ref,
                labels: d.labels.into_iter().collect(),
                created: None,
                has_credentials: false,
            })
        })
        .collect()
}

async fn agents(
    channel: Channel,
    action: Option<AgentAction>,
    out: &Output,
) -> Result<(), Failure> {
    let mut c = FleetManagerClient::new(channel);
    match action.unwrap_or(AgentAction::List) {
        AgentAction::List => {
            let r = c.list_agents(pb::ListAgentsRequest {}).await?.into_inner();
            out.agents(&r.agents);
        }
        AgentAction::Token {
            action: AgentTokenAction::Create { ttl, labels },
        } => {
            let ttl_secs = ttl_seconds(&ttl)?;
            if ttl_secs == 0 {
                return Err(usage("--ttl: enrollment tokens always expire".to_owned()));
            }
            let r = c
                .create_enroll_token(pb::CreateEnrollTokenRequest {
                    ttl_secs,
                    labels: labels.into_iter().collect(),
                })
                .await?
                .into_inner();
            out.enroll_token(&r);
        }
        AgentAction::Revoke { id } => {
            c.revoke_agent(pb::RevokeAgentRequest {
                agent_id: id.clone(),
            })
            .await?;
            out.message(&format!("agent {id} revoked"));
        }
    }
    Ok(())
}
