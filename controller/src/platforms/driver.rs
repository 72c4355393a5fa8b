//! What the transaction engine needs from a platform, so every platform
//! (IOS-XE over NETCONF, REST controllers, ASA CLI, host agents) takes part
//! in the same plan / two-phase commit / compensation / drift machinery.
//!
//! A platform keeps its device state as JSON (its own structured form):
//! one contribution per service, merged into the device's Rampart-owned
//! configuration. Edits are native text (NETCONF XML, CLI lines, HTTP
//! requests) so dry-run shows exactly what will be sent.

use std::collections::BTreeMap;

use serde::{Serialize, de::DeserializeOwned};
use serde_json::Value;

use super::{CompileError, drift::Difference};
use crate::{
    model::{device::Device, spec::ServiceSpec},
    wire::{Rendering, edit::Edit},
};

/// A failure on one device, with where it happened.
#[derive(Debug, Clone, thiserror::Error)]
#[error("{device}: {stage}: {message}")]
pub struct DeviceError {
    /// Inventory name.
    pub device: String,
    /// `connect`, `lock`, `edit-config`, `commit`, `deploy`, ...
    pub stage: String,
    /// What went wrong, as the device said it.
    pub message: String,
    /// Model paths (YANG paths, API fields, CLI lines) the device named.
    pub paths: Vec<String>,
}

/// Two services want different values for the same device setting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{what} is set differently by {first} and {second}")]
pub struct Conflict {
    /// The setting.
    pub what: String,
    /// One service (`tenant/name`).
    pub first: String,
    /// The other.
    pub second: String,
}

/// Where a participant stands after `commit`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Committed {
    /// The device will roll back by itself unless confirmed.
    Unconfirmed,
    /// Committed for good; undoing needs the inverse edit.
    Final,
}

/// One device's side of a transaction.
#[tonic::async_trait]
pub trait Participant: Send {
    /// Stages `edit` without making it active (lock + candidate edit,
    /// staged REST changes, policy received but not switched).
    async fn prepare(&mut self, edit: &Edit) -> Result<(), DeviceError>;
    /// Makes the staged change active.
    async fn commit(&mut self) -> Result<Committed, DeviceError>;
    /// Confirms an unconfirmed commit and releases the device.
    async fn confirm(&mut self) -> Result<(), DeviceError>;
    /// Undoes a prepare. Best effort.
    async fn abort(&mut self);
    /// Cancels an unconfirmed commit; false when that is not possible.
    async fn cancel(&mut self) -> bool;
    /// Applies an edit at once (compensation, repair).
    async fn apply_now(&mut self, edit: &Edit) -> Result<(), DeviceError>;
    /// Reads the device's view of Rampart-owned configuration (native text).
    async fn read(&mut self) -> Result<String, DeviceError>;
}

/// A platform's transactional behaviour.
#[tonic::async_trait]
pub trait PlatformDriver: Send + Sync {
    /// What `spec` puts on `device`, rendered for dry-run (pure).
    ///
    /// # Errors
    /// When the platform cannot express the spec.
    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError>;

    /// What `spec` puts on `device`, in the platform's JSON form.
    ///
    /// # Errors
    /// When the platform cannot express the spec.
    fn contribution(&self, spec: &ServiceSpec, device: &Device) -> Result<Value, CompileError>;

    /// Merges every service's contribution on one device.
    ///
    /// # Errors
    /// [`Conflict`] when two services disagree.
    fn merge(&self, contributions: &BTreeMap<String, Value>) -> Result<Value, Conflict>;

    /// The native edit moving the device from `prev` to `next`; `None` when
    /// nothing changes.
    ///
    /// # Errors
    /// A stored state that does not decode (message).
    fn edit(&self, prev: &Value, next: &Value) -> Result<Option<Edit>, String>;

    /// Opens a session to the device.
    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError>;

    /// Differences between the expected Rampart-owned state and what
    /// [`Participant::read`] returned. `accepted` is a baseline accepted
    /// from the device earlier (`sync --from-device`).
    ///
    /// # Errors
    /// Unreadable replies (message).
    fn drift(
        &self,
        expected: &Value,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String>;
}

/// A platform in its own types. [`Adapter`] turns it into the
/// [`PlatformDriver`] the engine holds, which keeps device state as JSON in
/// the store; the encoding and decoding live there, once.
#[tonic::async_trait]
pub trait DevicePlatform: Send + Sync + 'static {
    /// Rampart-owned configuration of one device: one service's
    /// contribution, or all of them merged.
    type Config: Serialize + DeserializeOwned + Default + Send + Sync;

    /// Platform word in messages.
    const NAME: &'static str;

    /// What `spec` puts on `device` (pure).
    ///
    /// # Errors
    /// When the platform cannot express the spec.
    fn build(&self, spec: &ServiceSpec, device: &Device) -> Result<Self::Config, CompileError>;

    /// The dry-run renderings of `spec` on `device` (pure).
    ///
    /// # Errors
    /// As [`DevicePlatform::build`].
    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError>;

    /// Merges every service's contribution on one device.
    ///
    /// # Errors
    /// [`Conflict`] when two services disagree.
    fn merge(
        &self,
        contributions: BTreeMap<String, Self::Config>,
    ) -> Result<Self::Config, Conflict>;

    /// The native edit moving the device from `prev` to `next`; `None` when
    /// nothing changes.
    fn diff(&self, prev: &Self::Config, next: &Self::Config) -> Option<Edit>;

    /// Opens a session to the device.
    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError>;

    /// Differences between `expected` (or a baseline `accepted` earlier)
    /// and what the device reported (`actual`, native text).
    ///
    /// # Errors
    /// Unreadable replies (message).
    fn drift(
        &self,
        expected: &Self::Config,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String>;

    /// The stored (JSON) form of a configuration.
    ///
    /// # Errors
    /// A configuration serde cannot represent.
    fn encode(config: &Self::Config) -> Result<Value, String> {
        serde_json::to_value(config).map_err(|e| e.to_string())
    }

    /// Reads the stored form back; `null` is the empty configuration.
    ///
    /// # Errors
    /// A stored state that does not decode.
    fn decode(stored: &Value) -> Result<Self::Config, String> {
        if stored.is_null() {
            return Ok(Self::Config::default());
        }
        serde_json::from_value(stored.clone())
            .map_err(|e| format!("stored {} state: {e}", Self::NAME))
    }
}

/// The one [`PlatformDriver`] of every [`DevicePlatform`].
#[derive(Debug, Clone)]
pub struct Adapter<P>(pub P);

#[tonic::async_trait]
impl<P: DevicePlatform> PlatformDriver for Adapter<P> {
    fn render(&self, spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
        self.0.render(spec, device)
    }

    fn contribution(&self, spec: &ServiceSpec, device: &Device) -> Result<Value, CompileError> {
        P::encode(&self.0.build(spec, device)?).map_err(|e| CompileError::Unsupported {
            platform: P::NAME.to_owned(),
            what: format!("encoding the configuration ({e})"),
            field: "spec".to_owned(),
        })
    }

    fn merge(&self, contributions: &BTreeMap<String, Value>) -> Result<Value, Conflict> {
        let decoded = contributions
            .iter()
            .map(|(service, v)| {
                P::decode(v)
                    .map(|c| (service.clone(), c))
                    .map_err(|what| Conflict {
                        what,
                        first: service.clone(),
                        second: service.clone(),
                    })
            })
            .collect::<Result<_, _>>()?;
        let merged = self.0.merge(decoded)?;
        P::encode(&merged).map_err(|e| Conflict {
            what: format!("encoding the merged configuration ({e})"),
            first: String::new(),
            second: String::new(),
        })
    }

    fn edit(&self, prev: &Value, next: &Value) -> Result<Option<Edit>, String> {
        Ok(self.0.diff(&P::decode(prev)?, &P::decode(next)?))
    }

    async fn connect(&self, device: &Device) -> Result<Box<dyn Participant>, DeviceError> {
        self.0.connect(device).await
    }

    fn drift(
        &self,
        expected: &Value,
        accepted: Option<&str>,
        actual: &str,
    ) -> Result<Vec<Difference>, String> {
        self.0.drift(&P::decode(expected)?, accepted, actual)
    }
}

tokio::task_local! {
    /// Credentials decrypted from the store for the device being connected
    /// (set by the engine around `PlatformDriver::connect`).
    static STORED: Option<(String, String)>;
}

/// Runs `f` with `stored` as the credentials [`resolve_credentials`] returns
/// (the engine decrypts them from the store; drivers never see the store).
pub async fn with_stored_credentials<F: std::future::Future>(
    stored: Option<(String, String)>,
    f: F,
) -> F::Output {
    STORED.scope(stored, f).await
}

/// Resolves a device's credentials to `(user, secret)`: the credentials
/// stored (encrypted) for it when there are any, else its
/// `credentials_ref`: `env:VAR` or `file:PATH` holding `user:secret`
/// (first line).
///
/// # Errors
/// [`DeviceError`] at stage `credentials` saying what is wrong.
pub fn resolve_credentials(device: &Device) -> Result<(String, String), DeviceError> {
    if let Ok(Some(stored)) = STORED.try_with(Clone::clone) {
        return Ok(stored);
    }
    let fail = |message: String| DeviceError {
        device: device.name.clone(),
        stage: "credentials".to_owned(),
        message: format!("{:?}: {message}", device.credentials_ref),
        paths: Vec::new(),
    };
    let secret = match device.credentials_ref.split_once(':') {
        Some(("env", var)) => {
            std::env::var(var).map_err(|_| fail(format!("variable {var} is not set")))?
        }
        Some(("file", path)) => std::fs::read_to_string(path)
            .map_err(|e| fail(format!("cannot read {path}: {e}")))?
            .lines()
            .next()
            .unwrap_or_default()
            .to_owned(),
        _ => {
            return Err(fail(
                "expected env:VAR or file:PATH holding user:secret".to_owned(),
            ));
        }
    };
    let (user, pass) = secret
        .split_once(':')
        .ok_or_else(|| fail("the value must be user:secret".to_owned()))?;
    Ok((user.to_owned(), pass.to_owned()))
}
