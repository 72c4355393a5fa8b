//! `rampartctl devices add|remove`.

use std::{collections::BTreeMap, path::PathBuf};

use clap::{Args, Subcommand};
use rampart_proto::v1::{self as pb, device_manager_client::DeviceManagerClient};

use crate::{
    connect::Connection,
    error::Failure,
    input::{credentials_file, parse_label, read_input},
    output::Output,
};

/// Manage the device inventory.
#[derive(Debug, Subcommand)]
pub enum Devices {
    /// Add one device, or every device of an inventory file (`-f`).
    Add(DeviceAdd),
    /// Remove a device no service uses.
    #[command(alias = "rm")]
    Remove {
        /// Device name.
        name: String,
    },
}

/// A device from flags, or an inventory file.
#[derive(Debug, Args)]
pub struct DeviceAdd {
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

impl Devices {
    /// Adds or removes; a failing device of an inventory is named and
    /// stops the run (the devices before it stay added).
    pub async fn run(self, conn: &Connection, out: &Output) -> Result<(), Failure> {
        match self {
            Devices::Remove { name } => {
                let req = pb::RemoveDeviceRequest { name: name.clone() };
                DeviceManagerClient::new(conn.connect().await?)
                    .remove_device(req)
                    .await?;
                out.message(&format!("device {name} removed"));
            }
            Devices::Add(add) => {
                let replace = add.replace;
                let credentials = add
                    .credentials_file
                    .as_deref()
                    .map(credentials_file)
                    .transpose()?;
                let devices = match &add.file {
                    Some(file) => inventory_file(file)?,
                    None => vec![add.into_device()?],
                };
                let mut client = DeviceManagerClient::new(conn.connect().await?);
                let mut added = Vec::new();
                for device in devices {
                    let name = device.name.clone();
                    let req = pb::AddDeviceRequest {
                        device: Some(device),
                        replace,
                        credentials: credentials.clone(),
                    };
                    let d = client
                        .add_device(req)
                        .await
                        .map_err(|s| Failure::from(s).about(&format!("device {name}")))?;
                    added.push(d.into_inner());
                }
                out.devices(&added);
            }
        }
        Ok(())
    }
}

impl DeviceAdd {
    fn into_device(self) -> Result<pb::Device, Failure> {
        Ok(pb::Device {
            name: self.name.unwrap_or_default(),
            platform: platform(self.platform.as_deref().unwrap_or_default())? as i32,
            address: self.address.unwrap_or_default(),
            credentials_ref: self.credentials,
            labels: self.labels.into_iter().collect(),
            created: None,
            has_credentials: false,
        })
    }
}

fn platform(word: &str) -> Result<pb::Platform, Failure> {
    Ok(match word {
        "iosxe" => pb::Platform::Iosxe,
        "asa" => pb::Platform::Asa,
        "ftd" => pb::Platform::Ftd,
        "meraki-mx" => pb::Platform::MerakiMx,
        "sdwan" => pb::Platform::Sdwan,
        other => {
            return Err(Failure::usage(format!(
                "platform {other:?} is not one of iosxe, asa, ftd, meraki-mx, sdwan"
            )));
        }
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

fn inventory_file(path: &std::path::Path) -> Result<Vec<pb::Device>, Failure> {
    let (text, name) = read_input(path)?;
    let inv: Inventory =
        serde_norway::from_str(&text).map_err(|e| Failure::usage(format!("{name}: {e}")))?;
    inv.devices
        .into_iter()
        .enumerate()
        .map(|(i, d)| {
            let p = platform(&d.platform)
                .map_err(|f| f.about(&format!("{name}: devices[{i}].platform")))?;
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
