//! asa rendering (being built).

use super::{CompileError, Rendering};
use crate::model::{device::Device, spec::ServiceSpec};

/// Renders `spec` for `device`.
///
/// # Errors
/// Always, until the renderer lands.
pub fn render(spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
    Err(CompileError::Unsupported {
        platform: device.platform.to_string(),
        what: format!("{} services (driver not built yet)", spec.kind()),
        field: format!("device {}", device.name),
    })
}
