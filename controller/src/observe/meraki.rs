//! Meraki MX state from the Dashboard API v1 (organization-wide, paged
//! with `perPage`/`startingAfter` and `Link` headers):
//!
//! - `GET /organizations/{organizationId}/appliance/uplink/statuses` — per
//!   appliance `networkId`, `serial` and `uplinks[]` with `interface`
//!   (`wan1`, `wan2`, `cellular`) and `status`: `active` (carrying
//!   traffic) and `ready` (standby, working) are up; `connecting`,
//!   `not connected` and `failed` are down.
//! - `GET /organizations/{organizationId}/devices/statuses` — per device
//!   `serial`, `networkId`, `status`: `online` and `alerting` (online with
//!   an alert) are up; `offline` and `dormant` are down.
//!
//! Meraki exposes no hit counts for L3 firewall rules, so a Meraki
//! snapshot never has ACL counters.

use super::reply::{self, At};
use super::{InterfaceState, StateError};

const PLATFORM: &str = "meraki";

/// The uplinks of one appliance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApplianceUplinks {
    /// The network the appliance serves (Rampart's Meraki target).
    pub network_id: String,
    /// The appliance's serial number.
    pub serial: String,
    /// Its uplinks, named by the Dashboard's `interface`.
    pub uplinks: Vec<InterfaceState>,
}

/// Whether a device is reachable by the Dashboard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeviceStatus {
    /// The network the device belongs to.
    pub network_id: String,
    /// Its serial number.
    pub serial: String,
    /// `online` or `alerting`.
    pub up: bool,
}

/// One page of the uplink-statuses reply.
///
/// # Errors
/// [`StateError`] naming the JSON pointer of a missing field or an uplink
/// status the published API does not list.
pub fn parse_uplink_statuses(body: &str) -> Result<Vec<ApplianceUplinks>, StateError> {
    let value = reply::parse(PLATFORM, body)?;
    let mut out = Vec::new();
    for appliance in At::root(PLATFORM, &value).entries()? {
        let mut uplinks = Vec::new();
        for uplink in appliance.get("uplinks")?.entries()? {
            let status = uplink.get("status")?;
            let up = match status.text()? {
                "active" | "ready" => true,
                "connecting" | "not connected" | "failed" => false,
                other => return Err(status.error(format!("unknown uplink status {other:?}"))),
            };
            uplinks.push(InterfaceState {
                name: uplink.str("interface")?.to_owned(),
                up,
            });
        }
        out.push(ApplianceUplinks {
            network_id: appliance.str("networkId")?.to_owned(),
            serial: appliance.str("serial")?.to_owned(),
            uplinks,
        });
    }
    Ok(out)
}

/// One page of the device-statuses reply.
///
/// # Errors
/// [`StateError`] naming the JSON pointer of a missing field or a status
/// the published API does not list.
pub fn parse_device_statuses(body: &str) -> Result<Vec<DeviceStatus>, StateError> {
    let value = reply::parse(PLATFORM, body)?;
    let mut out = Vec::new();
    for device in At::root(PLATFORM, &value).entries()? {
        let status = device.get("status")?;
        let up = match status.text()? {
            "online" | "alerting" => true,
            "offline" | "dormant" => false,
            other => return Err(status.error(format!("unknown device status {other:?}"))),
        };
        out.push(DeviceStatus {
            network_id: device.str("networkId")?.to_owned(),
            serial: device.str("serial")?.to_owned(),
            up,
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    // Captured from testbed/sims/meraki_sim.py by the sims tests
    // (`RAMPART_CAPTURE_FIXTURES=1 testbed/sims/run-tests.sh -k meraki_state`).
    const UPLINKS: &str = include_str!("fixtures/meraki-uplink-statuses.json");
    const DEVICES: &str = include_str!("fixtures/meraki-devices-statuses.json");

    #[test]
    fn uplinks_per_network_active_and_ready_are_up() {
        let got = parse_uplink_statuses(UPLINKS).unwrap();
        assert_eq!(got.len(), 4);
        let second = &got[1];
        assert_eq!(
            (second.network_id.as_str(), second.serial.as_str()),
            ("L_6468999999000002", "Q2MX-0002-RMPT")
        );
        // wan1 failed, wan2 took over (active)
        let states: Vec<(&str, bool)> = second
            .uplinks
            .iter()
            .map(|u| (u.name.as_str(), u.up))
            .collect();
        assert_eq!(states, [("wan1", false), ("wan2", true)]);
        // wan2 on standby (ready) is a working link
        assert!(got[0].uplinks.iter().all(|u| u.up));
    }

    #[test]
    fn device_statuses_alerting_is_up_offline_is_down() {
        let got = parse_device_statuses(DEVICES).unwrap();
        let up: Vec<(&str, bool)> = got.iter().map(|d| (d.serial.as_str(), d.up)).collect();
        assert_eq!(
            up,
            [
                ("Q2MX-0001-RMPT", true),
                ("Q2MX-0002-RMPT", false),
                ("Q2MX-0003-RMPT", true),
                ("Q2MX-0004-RMPT", true)
            ]
        );
    }

    #[test]
    fn missing_unknown_and_garbled_replies_name_their_pointer() {
        let mut doc: serde_json::Value = serde_json::from_str(UPLINKS).unwrap();
        doc[2]["uplinks"][0]
            .as_object_mut()
            .unwrap()
            .remove("interface");
        let e = parse_uplink_statuses(&doc.to_string()).unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/2/uplinks/0/interface", "missing")
        );
        doc[3]["uplinks"][1]["status"] = "sleeping".into();
        doc[2]["uplinks"][0]["interface"] = "wan1".into();
        let e = parse_uplink_statuses(&doc.to_string()).unwrap_err();
        assert_eq!(e.path, "/3/uplinks/1/status");
        assert!(e.message.contains("sleeping"), "{e}");
        let e = parse_device_statuses("{\"errors\": [\"Invalid API key\"]}").unwrap_err();
        assert_eq!(
            (e.path.as_str(), e.message.as_str()),
            ("/", "expected an array")
        );
        let e = parse_device_statuses("[{\"serial\": 7, \"status\": \"online\"}]").unwrap_err();
        assert_eq!(e.path, "/0/networkId");
        assert!(parse_device_statuses("[{").is_err());
    }
}
