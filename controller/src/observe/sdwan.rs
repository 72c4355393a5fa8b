//! Catalyst SD-WAN edge state from SD-WAN Manager (vManage) `dataservice`:
//!
//! - `GET /dataservice/device` — `data[]` with `system-ip`, `host-name`,
//!   `reachability` (`reachable`/`unreachable`) and `status` (`normal`,
//!   `warning`, `error`).
//! - `GET /dataservice/device/interface?deviceId={system-ip}` — `data[]`
//!   with `ifname`, `af-type` and `if-oper-status`: IOS-XE edges report
//!   `if-oper-state-ready` when up (other `if-oper-state-*` values are
//!   down), vEdge (Viptela OS) reports `Up`/`Down`. One row per address
//!   family, so an interface may appear twice; it is up when any row says
//!   so. The Manager reads this live from the edge: an unreachable edge
//!   answers with an error, which is a failed poll, not a down interface.

use std::collections::BTreeMap;

use super::reply::{self, At};
use super::{InterfaceState, StateError};

const PLATFORM: &str = "sdwan";

/// An edge as the Manager sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EdgeStatus {
    /// System IP (the `deviceId` of the per-device APIs).
    pub system_ip: String,
    /// Host name.
    pub host_name: String,
    /// The Manager reaches it over its control connections.
    pub reachable: bool,
    /// The Manager's health word (`normal`, `warning`, `error`).
    pub status: String,
}

/// The device list.
///
/// # Errors
/// [`StateError`] naming the JSON pointer of a missing field or an unknown
/// `reachability`.
pub fn parse_devices(body: &str) -> Result<Vec<EdgeStatus>, StateError> {
    let value = reply::parse(PLATFORM, body)?;
    let mut out = Vec::new();
    for dev in At::root(PLATFORM, &value).get("data")?.entries()? {
        let reach = dev.get("reachability")?;
        let reachable = match reach.text()? {
            "reachable" => true,
            "unreachable" => false,
            other => return Err(reach.error(format!("unknown reachability {other:?}"))),
        };
        out.push(EdgeStatus {
            system_ip: dev.str("system-ip")?.to_owned(),
            host_name: dev.str("host-name")?.to_owned(),
            reachable,
            status: dev.str("status")?.to_owned(),
        });
    }
    Ok(out)
}

/// One edge's interfaces, in name order.
///
/// # Errors
/// [`StateError`] naming the JSON pointer of a missing field or an oper
/// status of neither known form.
pub fn parse_interfaces(body: &str) -> Result<Vec<InterfaceState>, StateError> {
    let value = reply::parse(PLATFORM, body)?;
    let mut up_by_name: BTreeMap<String, bool> = BTreeMap::new();
    for row in At::root(PLATFORM, &value).get("data")?.entries()? {
        let oper = row.get("if-oper-status")?;
        let up = match oper.text()? {
            "if-oper-state-ready" | "Up" => true,
            "Down" => false,
            s if s.starts_with("if-oper-state-") => false,
            other => return Err(oper.error(format!("unknown oper status {other:?}"))),
        };
        *up_by_name.entry(row.str("ifname")?.to_owned()).or_default() |= up;
    }
    Ok(up_by_name
        .into_iter()
        .map(|(name, up)| InterfaceState { name, up })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from testbed/sims/vmanage_sim.py by the sims tests
    // (`RAMPART_CAPTURE_FIXTURES=1 testbed/sims/run-tests.sh -k vmanage_state`).
    const DEVICES: &str = include_str!("fixtures/sdwan-device.json");
    const INTERFACES: &str = include_str!("fixtures/sdwan-device-interface.json");

    #[test]
    fn devices_reachability_and_status() {
        let got = parse_devices(DEVICES).unwrap();
        let view: Vec<(&str, &str, bool, &str)> = got
            .iter()
            .map(|d| {
                (
                    d.system_ip.as_str(),
                    d.host_name.as_str(),
                    d.reachable,
                    d.status.as_str(),
                )
            })
            .collect();
        assert_eq!(
            view,
            [
                ("10.255.0.11", "edge1", true, "normal"),
                ("10.255.0.12", "edge2", false, "error")
            ]
        );
    }

    #[test]
    fn interfaces_oper_status_one_entry_per_name() {
        let got = parse_interfaces(INTERFACES).unwrap();
        let view: Vec<(&str, bool)> = got.iter().map(|i| (i.name.as_str(), i.up)).collect();
        assert_eq!(
            view,
            [
                ("GigabitEthernet1", true),
                ("GigabitEthernet2", false),
                ("Loopback0", true)
            ]
        );
        // An IPv6 row saying up makes the interface up; vEdge words work too.
        let mut doc: serde_json::Value = serde_json::from_str(INTERFACES).unwrap();
        let mut v6 = doc["data"][1].clone();
        v6["af-type"] = "ipv6".into();
        v6["if-oper-status"] = "Up".into();
        doc["data"].as_array_mut().unwrap().push(v6);
        let got = parse_interfaces(&doc.to_string()).unwrap();
        assert_eq!(got.len(), 3);
        assert!(got[1].up);
    }

    #[test]
    fn missing_unknown_and_garbled_replies_name_their_pointer() {
        let mut doc: serde_json::Value = serde_json::from_str(INTERFACES).unwrap();
        doc["data"][2]
            .as_object_mut()
            .unwrap()
            .remove("if-oper-status");
        let e = parse_interfaces(&doc.to_string()).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/data/2/if-oper-status", "missing")
        );
        doc["data"][2]["if-oper-status"] = 1.into();
        let e = parse_interfaces(&doc.to_string()).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/data/2/if-oper-status", "expected a string")
        );
        let mut devs: serde_json::Value = serde_json::from_str(DEVICES).unwrap();
        devs["data"][0]["reachability"] = "sometimes".into();
        let e = parse_devices(&devs.to_string()).unwrap_err();
        assert_eq!(e.path, "/data/0/reachability");
        // The Manager's error document (e.g. for an unreachable edge)
        let e = parse_interfaces("{\"error\": {\"message\": \"Failed to get data from device\"}}")
            .unwrap_err();
        assert_eq!((e.path.as_str(), e.message.as_str()), ("/data", "missing"));
        assert!(
            parse_devices("<html>login</html>")
                .unwrap_err()
                .message
                .starts_with("not JSON")
        );
    }
}
