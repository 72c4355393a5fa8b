//! IOS-XE as a transaction platform: NETCONF sessions as participants, the
//! merged [`IosXeConfig`] as device state, NETCONF `<config>` payloads as
//! edits, structural XML comparison for drift.

use std::{collections::BTreeMap, path::PathBuf, time::Duration};

use std::sync::Arc;

use serde_json::Value;

use super::{
    participant::{IosXeParticipant, ParticipantError, Stage},
    render::IosXeConfig,
    state as iosxe,
    tree::{self, Module},
};
use crate::wire::{Format, edit::Edit};
use crate::{
    model::{device::Device, spec::ServiceSpec},
    platforms::{
        CompileError, Settings,
        drift::{self, Difference},
        driver::{
            Adapter, Committed, Conflict, DeviceError, DevicePlatform, Participant, PlatformDriver,
            resolve_credentials,
        },
    },
    transport::netconf::{Auth, HostKeyPolicy, SessionConfig},
    wire::Rendering,
};

/// Session settings shared by every IOS-XE device.
#[derive(Debug, Clone)]
pub struct NetconfSettings {
    /// OpenSSH known_hosts file.
    pub known_hosts: PathBuf,
    /// Record unknown host keys (labs only).
    pub trust_on_first_use: bool,
    /// Connect + SSH + hello timeout.
    pub connect_timeout: Duration,
    /// One RPC's timeout.
    pub rpc_timeout: Duration,
    /// Confirmed-commit timeout.
    pub confirm_timeout: Duration,
}

/// The IOS-XE platform driver.
#[derive(Debug, Clone)]
pub struct IosXePlatform {
    settings: NetconfSettings,
}

impl IosXePlatform {
    /// A driver with these session settings.
    #[must_use]
    pub fn new(settings: NetconfSettings) -> Self {
        Self { settings }
    }

    fn session_config(&self, device: &Device) -> Result<SessionConfig, DeviceError> {
        let (user, password) = resolve_credentials(device)?;
        let (host, port) = host_port(&device.address);
        let mut cfg = SessionConfig::new(
            host,
            port,
            user,
            Auth::Password(password),
            HostKeyPolicy {
                known_hosts: self.settings.known_hosts.clone(),
                trust_on_first_use: self.settings.trust_on_first_use,
            },
        );
        cfg.connect_timeout = self.settings.connect_timeout;
        cfg.rpc_timeout = self.settings.rpc_timeout;
        Ok(cfg)
    }
}

/// Splits `host:port` (default NETCONF port 830).
fn host_port(address: &str) -> (String, u16) {
    if let Some((h, p)) = address.rsplit_once(':')
        && let Ok(port) = p.parse()
    {
        return (h.trim_matches(['[', ']']).to_owned(), port);
    }
    (address.to_owned(), 830)
}

/// The subtree filter selecting everything Rampart may own.
fn owned_filter() -> String {
    format!(
        "<native xmlns=\"{}\"><ip><access-list/><route/><nat xmlns=\"{}\"/></ip><ipv6><access-list/><route/></ipv6><interface/><router/><object-group/></native>",
        Module::Native.namespace(),
        Module::Nat.namespace()
    )
}

impl From<ParticipantError> for DeviceError {
    fn from(e: ParticipantError) -> Self {
        DeviceError {
            paths: e.paths(),
            device: e.device,
            stage: e.stage.to_owned(),
            message: e.source.to_string(),
        }
    }
}

#[tonic::async_trait]
impl DevicePlatform for IosXePlatform {
    type Config = IosXeConfig;

    const NAME: &'static str = "iosxe";

    fn build(&self, spec: &ServiceSpec, device: &Device) -> Result<IosXeConfig, CompileError> {
        Ok(super::build(spec, device)?)
    }

    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
        Ok(super::render(spec, device)?)
    }

    fn merge(&self, contributions: BTreeMap<String, IosXeConfig>) -> Result<IosXeConfig, Conflict> {
        iosxe::merge(&contributions)
    }

    fn diff(&self, prev: &IosXeConfig, next: &IosXeConfig) -> Option<Edit> {
        (!iosxe::is_noop(prev, next)).then(|| Edit::NetconfXml {
            config: iosxe::edit_xml(prev, next),
        })
    }

    fn encode(config: &IosXeConfig) -> Result<Value, String> {
        iosxe::to_json(config).map_err(|e| e.to_string())
    }

    fn decode(stored: &Value) -> Result<IosXeConfig, String> {
        iosxe::from_json(stored).map_err(|e| format!("stored IOS-XE state: {e}"))
    }

    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError> {
        let cfg = self.session_config(device)?;
        let p = IosXeParticipant::connect(&device.name, cfg, self.settings.confirm_timeout).await?;
        Ok(Box::new(p))
    }

    fn drift(
        &self,
        expected: &IosXeConfig,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String> {
        let expected_xml = match accepted {
            Some(a) => a.to_owned(),
            None => tree::to_netconf_config(&expected.clone().to_tree(false), Module::Native),
        };
        let parse = |x: &str| drift::parse(x).map_err(|e| e.to_string());
        let (e, a) = (parse(&expected_xml)?, parse(actual)?);
        let root = |e: &drift::El| {
            e.at(&["config", "native"])
                .or_else(|| e.at(&["data", "native"]))
                .or_else(|| e.child("native"))
                .cloned()
        };
        Ok(match (root(&e), root(&a)) {
            (Some(e), Some(a)) => drift::compare(&e, &a, &["extended", "named-acl"]),
            (Some(e), None) if !e.children.is_empty() => vec![Difference {
                path: "/native".to_owned(),
                what: "missing on the device".to_owned(),
            }],
            _ => Vec::new(),
        })
    }
}

/// The `<config>` element of a NETCONF edit.
fn netconf_config(p: &IosXeParticipant, edit: &Edit) -> Result<String, DeviceError> {
    match edit {
        Edit::NetconfXml { config } => Ok(config.clone()),
        other => Err(DeviceError {
            device: p.device().to_owned(),
            stage: "prepare".to_owned(),
            message: other.unexpected(Format::NetconfXml),
            paths: Vec::new(),
        }),
    }
}

#[tonic::async_trait]
impl Participant for IosXeParticipant {
    async fn prepare(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        Ok(IosXeParticipant::prepare(self, netconf_config(self, edit)?).await?)
    }

    async fn commit(&mut self) -> Result<Committed, DeviceError> {
        IosXeParticipant::commit(self).await?;
        Ok(if self.stage() == Stage::CommittedUnconfirmed {
            Committed::Unconfirmed
        } else {
            Committed::Final
        })
    }

    async fn confirm(&mut self) -> Result<(), DeviceError> {
        Ok(IosXeParticipant::confirm(self).await?)
    }

    async fn abort(&mut self) {
        IosXeParticipant::abort(self).await;
    }

    async fn cancel(&mut self) -> bool {
        IosXeParticipant::cancel(self).await
    }

    async fn apply_now(&mut self, edit: &Edit) -> Result<(), DeviceError> {
        Ok(IosXeParticipant::apply_now(self, netconf_config(self, edit)?).await?)
    }

    async fn read(&mut self) -> Result<String, DeviceError> {
        Ok(self.running(owned_filter()).await?)
    }
}

/// The registry's constructor.
#[must_use]
pub fn new_driver(s: &Settings) -> Arc<dyn PlatformDriver> {
    Arc::new(Adapter(IosXePlatform::new(NetconfSettings {
        known_hosts: s.known_hosts.clone(),
        trust_on_first_use: s.trust_on_first_use,
        connect_timeout: s.connect_timeout,
        rpc_timeout: s.rpc_timeout,
        confirm_timeout: s.confirm_timeout,
    })))
}
