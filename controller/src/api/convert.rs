//! Conversions between the model/store types and protobuf messages.

use rampart_proto::v1 as pb;
use tonic::Status;

use crate::{
    model::{
        self, Diagnostic, Severity,
        device::{Device, Platform},
    },
    platforms::agent::refer_to_first_identical,
    store::{self, StoredService, TxnRecord},
    txn::Planned,
    wire::{Format, Rendering},
};

fn timestamp_secs(secs: i64) -> Option<prost_types::Timestamp> {
    (secs > 0).then_some(prost_types::Timestamp {
        seconds: secs,
        nanos: 0,
    })
}

fn timestamp_ms(ms: i64) -> Option<prost_types::Timestamp> {
    (ms > 0).then(|| prost_types::Timestamp {
        seconds: ms.div_euclid(1000),
        nanos: i32::try_from(ms.rem_euclid(1000) * 1_000_000).unwrap_or(0),
    })
}

/// A validation finding as the API reports it.
#[must_use]
pub fn diagnostic_to_pb(d: &Diagnostic) -> pb::Diagnostic {
    pb::Diagnostic {
        severity: match d.severity {
            Severity::Warning => pb::diagnostic::Severity::Warning,
            Severity::Error => pb::diagnostic::Severity::Error,
        } as i32,
        message: d.message.clone(),
        path: d.path.clone().unwrap_or_default(),
        field: d.field.clone().unwrap_or_default(),
        line: d.line,
        column: d.column,
    }
}

/// A stored service as the API returns it.
#[must_use]
pub fn service_to_pb(s: &StoredService) -> pb::Service {
    let md = &s.spec.metadata;
    pb::Service {
        name: md.name.clone(),
        tenant: md.tenant.clone(),
        kind: s.spec.kind().as_str().to_owned(),
        labels: md.labels.clone().into_iter().collect(),
        generation: s.generation,
        spec_json: model::spec_to_json(&s.spec).to_string(),
        created: timestamp_secs(s.created_unix),
        updated: timestamp_secs(s.updated_unix),
        api_version: s.api_version.clone(),
    }
}

/// Which tenants' data a caller may see (`true`: visible).
pub type Visible<'a> = &'a dyn Fn(&str) -> bool;

/// The content of `r` as a caller limited by `may` sees it: an agent's
/// policy on a shared host loses other tenants' rules.
fn visible_content(r: &Rendering, may: Visible<'_>) -> String {
    if r.format == Format::AgentPolicy {
        crate::platforms::agent::redact(&r.content, may)
    } else {
        r.content.clone()
    }
}

/// One target's rendering as the API returns it to a caller limited by `may`.
#[must_use]
pub fn rendering_to_pb(r: &Rendering, may: Visible<'_>) -> pb::RenderedConfig {
    pb::RenderedConfig {
        target: r.target.clone(),
        platform: r.platform.clone(),
        format: r.format.as_str().to_owned(),
        content: visible_content(r, may),
    }
}

/// Every rendering as the API returns it to a caller limited by `may`,
/// agents with the same (visible) change shown once
/// ([`refer_to_first_identical`]).
#[must_use]
pub fn renderings_to_pb(rs: &[Rendering], may: Visible<'_>) -> Vec<pb::RenderedConfig> {
    let mut out: Vec<pb::RenderedConfig> = rs.iter().map(|r| rendering_to_pb(r, may)).collect();
    refer_to_first_identical(
        out.iter_mut()
            .filter(|r| r.format == Format::AgentPolicy.as_str())
            .map(|r| (r.target.as_str(), &mut r.content)),
    );
    out
}

/// The response to a dry-run: the services as they would be stored
/// (generation 0: not stored) and every rendering.
#[must_use]
pub fn dry_run_response(plan: &Planned, may: Visible<'_>) -> pb::ApplyServiceResponse {
    pb::ApplyServiceResponse {
        services: plan
            .services
            .iter()
            .filter_map(|(_, new)| new.as_ref())
            .map(|(spec, api_version)| {
                service_to_pb(&StoredService {
                    spec: spec.clone(),
                    api_version: api_version.clone(),
                    generation: 0,
                    created_unix: 0,
                    updated_unix: 0,
                    last_transaction: 0,
                })
            })
            .collect(),
        diagnostics: Vec::new(),
        rendered: renderings_to_pb(&plan.dry_run_renderings(), may),
        transaction_id: String::new(),
        dry_run: true,
    }
}

/// The protobuf platform of a model platform.
#[must_use]
pub fn platform_to_pb(p: Platform) -> pb::Platform {
    match p {
        Platform::IosXe => pb::Platform::Iosxe,
        Platform::Asa => pb::Platform::Asa,
        Platform::Ftd => pb::Platform::Ftd,
        Platform::MerakiMx => pb::Platform::MerakiMx,
        Platform::SdWan => pb::Platform::Sdwan,
    }
}

/// The model platform of a protobuf enum value.
///
/// # Errors
/// InvalidArgument naming the field when unset or unknown.
pub fn platform_from_pb(v: i32) -> Result<Platform, Status> {
    match pb::Platform::try_from(v) {
        Ok(pb::Platform::Iosxe) => Ok(Platform::IosXe),
        Ok(pb::Platform::Asa) => Ok(Platform::Asa),
        Ok(pb::Platform::Ftd) => Ok(Platform::Ftd),
        Ok(pb::Platform::MerakiMx) => Ok(Platform::MerakiMx),
        Ok(pb::Platform::Sdwan) => Ok(Platform::SdWan),
        _ => Err(Status::invalid_argument(format!(
            "device.platform: required, one of {} (got {v})",
            Platform::ALL.map(Platform::as_str).join(", ")
        ))),
    }
}

/// A device as the API returns it: credentials reference redacted.
#[must_use]
pub fn device_to_pb(d: &Device) -> pb::Device {
    pb::Device {
        name: d.name.clone(),
        platform: platform_to_pb(d.platform) as i32,
        address: d.address.clone(),
        credentials_ref: d.redacted_credentials_ref(),
        labels: d.labels.clone().into_iter().collect(),
        created: timestamp_secs(d.created_unix),
        has_credentials: false,
    }
}

/// A transaction as the API returns it.
#[must_use]
pub fn txn_to_pb(t: &TxnRecord, may: Visible<'_>) -> pb::Transaction {
    pb::Transaction {
        id: store::txn_display_id(t.id),
        state: super::txn_state_to_pb(t.state) as i32,
        operation: t.operation.clone(),
        services: t.services.clone(),
        author: t.author.clone(),
        started: timestamp_ms(t.started_unix_ms),
        finished: t.finished_unix_ms.and_then(timestamp_ms),
        changes: {
            let mut changes: Vec<pb::DeviceChange> = crate::txn::engine::targets_view(t)
                .iter()
                .map(|(r, e)| change_to_pb(r, e.as_deref(), may))
                .collect();
            refer_to_first_identical(
                changes
                    .iter_mut()
                    .filter(|c| c.format == Format::AgentPolicy.as_str())
                    .map(|c| (c.target.as_str(), &mut c.content)),
            );
            changes
        },
        error: t.error.clone().unwrap_or_default(),
    }
}

/// One target's part of a transaction as the API returns it.
#[must_use]
pub fn change_to_pb(r: &Rendering, error: Option<&str>, may: Visible<'_>) -> pb::DeviceChange {
    pb::DeviceChange {
        target: r.target.clone(),
        platform: r.platform.clone(),
        format: r.format.as_str().to_owned(),
        content: visible_content(r, may),
        error: error.unwrap_or_default().to_owned(),
    }
}
