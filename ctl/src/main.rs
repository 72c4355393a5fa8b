//! rampartctl: the operator's command line over Rampart's gRPC management API.
//!
//! Exit codes, so scripts can branch on them:
//! 0 success, 1 other error, 2 usage, 3 invalid argument (the spec or a
//! flag is wrong), 4 not found, 5 conflict (already exists / failed
//! precondition), 6 rampartd unreachable.

use std::{collections::BTreeMap, io::Read as _, path::PathBuf, process::ExitCode};

use clap::{Args, Parser, Subcommand, ValueEnum};
use rampart_proto::v1::{
    self as pb, device_manager_client::DeviceManagerClient,
    service_manager_client::ServiceManagerClient,
    transaction_manager_client::TransactionManagerClient,
};
use tonic::transport::Channel;

mod output;

use output::Output;

/// Manage Rampart services, devices and transactions.
#[derive(Debug, Parser)]
#[command(name = "rampartctl", version, about)]
struct Cli {
    /// rampartd's gRPC address.
    #[arg(
        long,
        global = true,
        env = "RAMPART_SERVER",
        default_value = "http://127.0.0.1:50051"
    )]
    server: String,
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

async fn connect(server: &str) -> Result<Channel, Failure> {
    let endpoint = Channel::from_shared(server.to_owned()).map_err(|e| Failure {
        code: 3,
        message: format!("--server {server:?} is not a valid URL: {e}"),
    })?;
    endpoint
        .connect_timeout(std::time::Duration::from_secs(5))
        .connect()
        .await
        .map_err(|e| Failure {
            code: 6,
            message: format!("cannot reach rampartd at {server}: {e}"),
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
    let channel = connect(&cli.server).await?;
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
            let s = ServiceManagerClient::new(channel)
                .get_service(req)
                .await?
                .into_inner();
            out.service(&s);
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
            })
        })
        .collect()
}
