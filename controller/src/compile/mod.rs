//! Pure compilation of service intent into per-target renderings, through
//! the platforms of [`crate::platforms::REGISTRY`] (devices) and the host
//! agent's policy rendering (label selectors).
//!
//! Nothing here does I/O: the same spec and inventory always render the same
//! bytes, which is what makes dry-run trustworthy and every vendor rendering
//! snapshot-testable.

use std::{collections::BTreeMap, sync::Arc};

pub use crate::platforms::CompileError;
use crate::{
    model::{
        device::{Device, Platform},
        spec::{ServiceBody, ServiceSpec},
    },
    platforms::{self, agent, driver::PlatformDriver},
    wire::Rendering,
};

/// Renders `spec` for every device it targets, with the platforms'
/// default settings (rendering reads none of them).
///
/// # Errors
/// [`CompileError`] when a target device is unknown or its platform cannot
/// express the spec.
pub fn compile(
    spec: &ServiceSpec,
    inventory: &BTreeMap<String, Device>,
) -> Result<Vec<Rendering>, CompileError> {
    compile_with(
        &platforms::drivers(&platforms::Settings::default()),
        spec,
        inventory,
    )
}

/// [`compile`] with the given platform drivers.
///
/// # Errors
/// As [`compile`].
pub fn compile_with(
    drivers: &BTreeMap<Platform, Arc<dyn PlatformDriver>>,
    spec: &ServiceSpec,
    inventory: &BTreeMap<String, Device>,
) -> Result<Vec<Rendering>, CompileError> {
    let mut out = Vec::new();
    for name in spec.devices() {
        let device = target(inventory, name)?;
        let driver = drivers
            .get(&device.platform)
            .ok_or_else(|| CompileError::Unsupported {
                platform: device.platform.to_string(),
                what: "any service (no driver is registered)".to_owned(),
                field: "spec.targets".to_owned(),
            })?;
        out.extend(driver.render(spec, device)?);
    }
    out.extend(hosts(spec)?);
    Ok(out)
}

/// The inventory device `name` the spec targets.
///
/// # Errors
/// [`CompileError::UnknownDevice`].
pub fn target<'a>(
    inventory: &'a BTreeMap<String, Device>,
    name: &str,
) -> Result<&'a Device, CompileError> {
    inventory
        .get(name)
        .ok_or_else(|| CompileError::UnknownDevice {
            device: name.to_owned(),
            field: "spec.targets".to_owned(),
        })
}

/// The host policy renderings of `spec`, one per label selector.
///
/// # Errors
/// A load balancer the host agents cannot express.
pub fn hosts(spec: &ServiceSpec) -> Result<Vec<Rendering>, CompileError> {
    Ok(match &spec.body {
        ServiceBody::Firewall(fw) => agent::render_firewall(fw, &spec.metadata),
        ServiceBody::LoadBalancer(lb) => agent::render_load_balancer(lb, &spec.metadata)?,
        _ => Vec::new(),
    })
}
