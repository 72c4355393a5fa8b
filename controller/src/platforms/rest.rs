//! What the REST platforms (Meraki Dashboard, FDM, SD-WAN Manager) share:
//! settings, the per-device HTTPS client, base URLs, errors with API paths
//! and JSON drift.

use std::{path::PathBuf, time::Duration};

use serde_json::Value;

use super::{drift::Difference, driver::DeviceError};
use crate::{
    model::device::Device,
    transport::http::{self, RetryPolicy},
};

/// Device label naming a PEM CA bundle to trust for this device (overrides
/// the engine-wide bundle).
pub const CA_FILE_LABEL: &str = "rampart.io/ca-file";

/// Settings shared by the REST platforms.
#[derive(Debug, Clone)]
pub struct RestSettings {
    /// PEM bundle trusted for every device (a device label can override).
    pub ca_bundle: Option<PathBuf>,
    /// One request's timeout.
    pub timeout: Duration,
    /// Retries of 429/5xx/transport errors.
    pub retry: RetryPolicy,
    /// Client-side request rate per rate-limit domain.
    pub rps: f64,
    /// Client-side burst per rate-limit domain.
    pub burst: f64,
    /// Interval between polls of asynchronous jobs (deploys, actions).
    pub poll_interval: Duration,
    /// Longest wait for one asynchronous job.
    pub job_timeout: Duration,
    /// Page size asked for in paginated lists.
    pub page_size: u32,
}

impl RestSettings {
    /// These settings with the shared CA bundle and request timeout.
    #[must_use]
    pub fn with_shared(mut self, s: &super::Settings) -> RestSettings {
        self.ca_bundle.clone_from(&s.ca_bundle);
        self.timeout = s.rpc_timeout;
        self
    }

    /// Defaults for Meraki: 10 requests/s per organization with a burst of 5
    /// (half the service's, so clock skew never trips its bucket).
    #[must_use]
    pub fn meraki() -> RestSettings {
        RestSettings {
            ca_bundle: None,
            timeout: Duration::from_secs(30),
            retry: RetryPolicy::default(),
            rps: 10.0,
            burst: 5.0,
            poll_interval: Duration::from_millis(250),
            job_timeout: Duration::from_secs(300),
            page_size: 1000,
        }
    }

    /// The HTTP client for `device`: its `rampart.io/ca-file` label, else
    /// the shared bundle, else the public roots.
    pub fn http_client(&self, device: &Device) -> Result<reqwest::Client, DeviceError> {
        let ca = device
            .labels
            .get(CA_FILE_LABEL)
            .map(PathBuf::from)
            .or_else(|| self.ca_bundle.clone());
        http::client(ca.as_deref(), self.timeout)
            .map_err(|e| dev_err(&device.name, "connect", e.to_string(), None))
    }
}

/// A [`DeviceError`] with an optional API path.
pub fn dev_err(device: &str, stage: &str, message: String, path: Option<&str>) -> DeviceError {
    DeviceError {
        device: device.to_owned(),
        stage: stage.to_owned(),
        message,
        paths: path.map(|p| vec![p.to_owned()]).unwrap_or_default(),
    }
}

/// The API base URL: the device address when it is a URL, else `https://address`.
pub fn base_url(address: &str, prefix: &str) -> String {
    let root = if address.starts_with("https://") || address.starts_with("http://") {
        address.trim_end_matches('/').to_owned()
    } else {
        format!("https://{address}")
    };
    if prefix.is_empty() || root.ends_with(prefix) {
        root
    } else {
        format!("{root}{prefix}")
    }
}

/// What drift compares the device with: the baseline accepted from it
/// earlier (`sync --from-device`), else Rampart's view of its own state.
///
/// # Errors
/// An accepted baseline that is not JSON.
pub fn baseline(accepted: Option<&str>, owned: impl FnOnce() -> Value) -> Result<Value, String> {
    match accepted {
        Some(a) => serde_json::from_str(a).map_err(|e| format!("accepted baseline: {e}")),
        None => Ok(owned()),
    }
}

/// Structural differences between two JSON values, as drift entries.
#[must_use]
pub fn json_differences(path: &str, expected: &Value, actual: &Value) -> Vec<Difference> {
    let mut out = Vec::new();
    diff_into(path, expected, actual, &mut out);
    out
}

fn diff_into(path: &str, e: &Value, a: &Value, out: &mut Vec<Difference>) {
    match (e, a) {
        (Value::Object(eo), Value::Object(ao)) => {
            for (k, ev) in eo {
                let p = format!("{path}/{k}");
                match ao.get(k) {
                    Some(av) => diff_into(&p, ev, av, out),
                    None => out.push(Difference {
                        path: p,
                        what: "missing on the device".to_owned(),
                    }),
                }
            }
            for k in ao.keys().filter(|k| !eo.contains_key(*k)) {
                out.push(Difference {
                    path: format!("{path}/{k}"),
                    what: "present on the device, not set by Rampart".to_owned(),
                });
            }
        }
        (Value::Array(ea), Value::Array(aa)) => {
            for (i, ev) in ea.iter().enumerate() {
                match aa.get(i) {
                    Some(av) => diff_into(&format!("{path}[{i}]"), ev, av, out),
                    None => out.push(Difference {
                        path: format!("{path}[{i}]"),
                        what: format!("missing on the device (expected {ev})"),
                    }),
                }
            }
            for (i, av) in aa.iter().enumerate().skip(ea.len()) {
                out.push(Difference {
                    path: format!("{path}[{i}]"),
                    what: format!("extra on the device: {av}"),
                });
            }
        }
        _ if e == a => {}
        _ => out.push(Difference {
            path: path.to_owned(),
            what: format!("expected {e}, device has {a}"),
        }),
    }
}
