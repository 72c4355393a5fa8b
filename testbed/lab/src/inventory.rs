//! The Rampart inventory of a lab: one device per node with a device role,
//! in the file format `rampartctl devices add -f` reads
//! (`devices: [{name, platform, address, credentialsRef, labels}]`).
//!
//! The netns lab writes it from the topology; the containerlab lab ships it
//! (`testbed/clab/inventory.yaml`); [`check`] proves the two agree, so the
//! same inventory drives either lab.

use std::{collections::BTreeMap, net::SocketAddr, path::Path};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::topology::Lab;

/// Inventory file problems.
#[derive(Debug, Error)]
pub enum InventoryError {
    /// The file could not be read or written.
    #[error("inventory {path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not an inventory.
    #[error("inventory {path}: {message}")]
    Parse {
        /// The file.
        path: String,
        /// Parser message with line and column.
        message: String,
    },
}

/// An inventory file (same schema as rampartctl's).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Inventory {
    /// The devices.
    pub devices: Vec<Device>,
}

/// One device entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub struct Device {
    /// Device name (the topology node name).
    pub name: String,
    /// Rampart platform (`iosxe`, `asa`, `ftd`, `meraki-mx`, `sdwan`).
    pub platform: String,
    /// `address:port` of the management API.
    pub address: String,
    /// Where rampartd finds `user:secret` (`env:VAR`, `file:PATH`).
    #[serde(default)]
    pub credentials_ref: String,
    /// Free labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// The inventory a lab implies: every node with a device role, by name.
#[must_use]
pub fn from_lab(lab: &Lab) -> Inventory {
    let devices = lab
        .nodes
        .iter()
        .filter_map(|n| {
            let (_, platform, port) = n.device()?;
            let addr = n.primary_address()?;
            let mut labels = BTreeMap::from([("lab".to_owned(), lab.name.clone())]);
            labels.extend(n.inventory_labels.clone());
            Some(Device {
                name: n.name.clone(),
                platform: platform.to_owned(),
                address: SocketAddr::new(addr, port).to_string(),
                credentials_ref: n.credentials_ref(),
                labels,
            })
        })
        .collect();
    Inventory { devices }
}

/// Reads an inventory file.
///
/// # Errors
/// [`InventoryError`] with the file and the parser's line/column.
pub fn load(path: &Path) -> Result<Inventory, InventoryError> {
    let text = std::fs::read_to_string(path).map_err(|source| InventoryError::Io {
        path: path.display().to_string(),
        source,
    })?;
    serde_norway::from_str(&text).map_err(|e| InventoryError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })
}

/// Writes `inv` as YAML with a header saying where it came from.
///
/// # Errors
/// [`InventoryError::Io`].
pub fn write(path: &Path, inv: &Inventory, header: &str) -> Result<(), InventoryError> {
    let body = serde_norway::to_string(inv).map_err(|e| InventoryError::Parse {
        path: path.display().to_string(),
        message: e.to_string(),
    })?;
    std::fs::write(path, format!("{header}{body}")).map_err(|source| InventoryError::Io {
        path: path.display().to_string(),
        source,
    })
}

/// Differences between a lab and an inventory: missing or extra devices,
/// and devices whose platform or address disagree. Credentials references
/// and labels are free (each lab may keep its secrets elsewhere).
#[must_use]
pub fn check(lab: &Lab, inv: &Inventory) -> Vec<String> {
    let want = from_lab(lab);
    let mut problems = Vec::new();
    let mut seen = BTreeMap::new();
    for d in &inv.devices {
        if seen.insert(d.name.as_str(), ()).is_some() {
            problems.push(format!("device {} is listed twice", d.name));
        }
    }
    for w in &want.devices {
        match inv.devices.iter().find(|d| d.name == w.name) {
            None => problems.push(format!(
                "device {} ({} at {}) is in the topology but not in the inventory",
                w.name, w.platform, w.address
            )),
            Some(d) => {
                if d.platform != w.platform {
                    problems.push(format!(
                        "device {}: platform {} in the inventory, {} in the topology",
                        w.name, d.platform, w.platform
                    ));
                }
                if d.address != w.address {
                    problems.push(format!(
                        "device {}: address {} in the inventory, {} in the topology",
                        w.name, d.address, w.address
                    ));
                }
            }
        }
    }
    for d in &inv.devices {
        if !want.devices.iter().any(|w| w.name == d.name) {
            let why = match lab.node(&d.name) {
                Some(_) => "has no device role in the topology",
                None => "is not a node of the topology",
            };
            problems.push(format!("device {} {why}", d.name));
        }
    }
    problems
}
