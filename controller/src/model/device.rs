//! The device inventory: which boxes rampartd manages and how to reach them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// The platforms rampartd has drivers for.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Platform {
    /// Cisco IOS-XE (CSR1000v, Catalyst 8000V): NETCONF/RESTCONF.
    #[serde(rename = "iosxe")]
    IosXe,
    /// Cisco ASA: CLI over SSH.
    #[serde(rename = "asa")]
    Asa,
    /// Firepower Threat Defense via the FDM REST API.
    #[serde(rename = "ftd")]
    Ftd,
    /// Meraki MX via the Dashboard API.
    #[serde(rename = "meraki-mx")]
    MerakiMx,
    /// Cisco SD-WAN via SD-WAN Manager (vManage).
    #[serde(rename = "sdwan")]
    SdWan,
}

impl Platform {
    /// Every platform.
    pub const ALL: [Platform; 5] = [
        Platform::IosXe,
        Platform::Asa,
        Platform::Ftd,
        Platform::MerakiMx,
        Platform::SdWan,
    ];

    /// The word used in specs, inventory files and the CLI.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Platform::IosXe => "iosxe",
            Platform::Asa => "asa",
            Platform::Ftd => "ftd",
            Platform::MerakiMx => "meraki-mx",
            Platform::SdWan => "sdwan",
        }
    }

    /// Parses the word used in specs and the CLI.
    #[must_use]
    pub fn parse(s: &str) -> Option<Platform> {
        Platform::ALL.into_iter().find(|p| p.as_str() == s)
    }
}

impl std::fmt::Display for Platform {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A managed device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Device {
    /// Unique inventory name, referenced by service targets.
    pub name: String,
    /// Which driver talks to it.
    pub platform: Platform,
    /// Management address, `host` or `host:port`.
    pub address: String,
    /// Where the credentials live (`env:VAR`, `file:/path`); never the secret
    /// itself, and never returned by the API in clear.
    pub credentials_ref: String,
    /// Labels for selection.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// Creation time, seconds since the Unix epoch.
    #[serde(default)]
    pub created_unix: i64,
}

impl Device {
    /// The credentials reference as the API shows it: the scheme only.
    #[must_use]
    pub fn redacted_credentials_ref(&self) -> String {
        if self.credentials_ref.is_empty() {
            String::new()
        } else {
            match self.credentials_ref.split_once(':') {
                Some((scheme, _)) => format!("{scheme}:<redacted>"),
                None => "<redacted>".to_owned(),
            }
        }
    }
}
