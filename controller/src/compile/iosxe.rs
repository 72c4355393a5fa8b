//! IOS-XE rendering (Cisco-IOS-XE-native YANG): NETCONF XML and RESTCONF JSON.

use crate::model::{device::Device, spec::ServiceSpec};

use super::Rendering;

/// Why a spec cannot be rendered for IOS-XE.
#[derive(Debug, thiserror::Error)]
pub enum IosXeError {
    /// Placeholder until the renderer lands.
    #[error("IOS-XE rendering of {kind} is not implemented")]
    NotImplemented {
        /// The service kind.
        kind: String,
    },
}

/// Renders the parts of `spec` that target `device`.
///
/// # Errors
/// [`IosXeError`] when the spec cannot be expressed on IOS-XE.
pub fn render(spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, IosXeError> {
    let _ = device;
    Err(IosXeError::NotImplemented { kind: spec.kind().to_string() })
}
