//! Cisco SD-WAN Manager (vManage) rendering: an SdWan service becomes a
//! centralized data policy for the sites the service assigns to one
//! SD-WAN Manager (inventory device of platform `sdwan`).
//!
//! - each service is one data policy definition: one sequence per traffic
//!   policy (matching destination prefixes, setting the preferred transport
//!   color, accepting or dropping), plus a site list of its sites;
//! - the device's merged state is one vSmart policy assembling every
//!   service's definition (SD-WAN Manager activates one centralized policy
//!   at a time, so services share it);
//! - all names carry a content hash (`RPS-<tenant>-<service>-<hash>-<content>`,
//!   `RPSP-rampart-<content>`): a change creates new objects beside the active
//!   ones, activation switches over, the old objects are removed after.
//!
//! Other kinds are not expressible on SD-WAN Manager here (feature and
//! device templates have no counterpart in the service model yet).

use serde::{Deserialize, Serialize};

use crate::{
    model::{
        device::Device,
        spec::{Action, SdWanSpec, ServiceBody, ServiceSpec},
    },
    wire::http::{Call, render_calls},
};
use crate::{
    platforms::CompileError,
    wire::{Format, Rendering, naming::object_name},
};

/// Platform word.
pub const PLATFORM: &str = "sdwan";
/// Prefix of everything Rampart creates on SD-WAN Manager.
pub const PREFIX: &str = "RPS";
/// Prefix of Rampart's vSmart policy.
pub const POLICY_PREFIX: &str = "RPSP-";

/// One sequence of a data policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Sequence {
    /// Sequence id (10, 20, …).
    pub id: u32,
    /// The traffic policy's name.
    pub name: String,
    /// `accept` or `drop`.
    pub action: String,
    /// Destination prefixes.
    pub destinations: Vec<String>,
    /// Preferred transport color.
    pub preferred_color: String,
}

/// One service's data policy and sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServicePolicy {
    /// Definition name (content-tagged).
    pub name: String,
    /// `tenant/name` of the service.
    pub service: String,
    /// Sequences.
    pub sequences: Vec<Sequence>,
    /// Site list name (content-tagged).
    pub site_list: String,
    /// Site ids.
    pub sites: Vec<u32>,
}

/// What services put on one SD-WAN Manager.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdWanConfig {
    /// Per-service definitions, in service order.
    #[serde(default)]
    pub policies: Vec<ServicePolicy>,
}

fn tag(parts: &[String]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in parts
        .iter()
        .flat_map(|p| p.bytes().chain(std::iter::once(0)))
    {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:08x}", h & 0xffff_ffff)
}

impl ServicePolicy {
    /// The data policy definition body.
    #[must_use]
    pub fn definition(&self) -> serde_json::Value {
        let seqs: Vec<serde_json::Value> = self
            .sequences
            .iter()
            .map(|s| {
                serde_json::json!({
                    "sequenceId": s.id,
                    "sequenceName": s.name,
                    "baseAction": s.action,
                    "sequenceType": "data",
                    "sequenceIpType": "ipv4",
                    "match": {"entries": [{"field": "destinationIp", "value": s.destinations.join(" ")}]},
                    "actions": [{"type": "set", "parameter": [{"field": "preferredColor", "value": s.preferred_color}]}],
                })
            })
            .collect();
        serde_json::json!({
            "name": self.name,
            "type": "data",
            "description": format!("Rampart service {}", self.service),
            "defaultAction": {"type": "accept"},
            "sequences": seqs,
        })
    }

    /// The site list body.
    #[must_use]
    pub fn site_list_body(&self) -> serde_json::Value {
        serde_json::json!({
            "name": self.site_list,
            "type": "site",
            "entries": self.sites.iter().map(|s| serde_json::json!({"siteId": s.to_string()})).collect::<Vec<_>>(),
        })
    }
}

impl SdWanConfig {
    /// The name of the vSmart policy assembling every definition.
    #[must_use]
    pub fn policy_name(&self) -> String {
        let parts: Vec<String> = self
            .policies
            .iter()
            .flat_map(|p| [p.name.clone(), p.site_list.clone()])
            .collect();
        format!("{POLICY_PREFIX}rampart-{}", tag(&parts))
    }

    /// The vSmart policy body (`{name:X}` stands for the id of X).
    #[must_use]
    pub fn vsmart_body(&self) -> serde_json::Value {
        let assembly: Vec<serde_json::Value> = self
            .policies
            .iter()
            .map(|p| {
                serde_json::json!({
                    "definitionId": format!("{{name:{}}}", p.name),
                    "type": "data",
                    "entries": [{"direction": "service", "siteLists": [format!("{{name:{}}}", p.site_list)]}],
                })
            })
            .collect();
        serde_json::json!({
            "policyName": self.policy_name(),
            "policyDescription": "Rampart centralized policy",
            "policyType": "feature",
            "policyDefinition": {"assembly": assembly},
        })
    }
}

/// Paths (under `/dataservice`).
pub mod paths {
    /// Site lists.
    pub const SITE_LISTS: &str = "/template/policy/list/site";
    /// Data policy definitions.
    pub const DEFINITIONS: &str = "/template/policy/definition/data";
    /// vSmart policies.
    pub const VSMART: &str = "/template/policy/vsmart";
}

/// The calls moving SD-WAN Manager from `prev` to `next`: create the new
/// site lists, definitions and vSmart policy; activate it (or deactivate
/// Rampart's policy when nothing is left); delete what only `prev` used.
#[must_use]
pub fn edit_calls(prev: &SdWanConfig, next: &SdWanConfig) -> Vec<Call> {
    let mut out = Vec::new();
    for p in &next.policies {
        if !prev.policies.iter().any(|q| q.site_list == p.site_list) {
            out.push(Call::new(
                "POST",
                paths::SITE_LISTS,
                Some(p.site_list_body()),
            ));
        }
        if !prev.policies.iter().any(|q| q.name == p.name) {
            out.push(Call::new("POST", paths::DEFINITIONS, Some(p.definition())));
        }
    }
    let (pn, nn) = (prev.policy_name(), next.policy_name());
    if !next.policies.is_empty() {
        if prev.policies.is_empty() || pn != nn {
            out.push(Call::new("POST", paths::VSMART, Some(next.vsmart_body())));
        }
        out.push(Call::new(
            "POST",
            format!("{}/activate/{{name:{nn}}}", paths::VSMART),
            None,
        ));
    } else if !prev.policies.is_empty() {
        out.push(Call::new(
            "POST",
            format!("{}/deactivate/{{name:{pn}}}", paths::VSMART),
            None,
        ));
    }
    if !prev.policies.is_empty() && pn != nn {
        out.push(Call::new(
            "DELETE",
            format!("{}/{{name:{pn}}}", paths::VSMART),
            None,
        ));
    }
    for p in &prev.policies {
        if !next.policies.iter().any(|q| q.name == p.name) {
            out.push(Call::new(
                "DELETE",
                format!("{}/{{name:{}}}", paths::DEFINITIONS, p.name),
                None,
            ));
        }
        if !next.policies.iter().any(|q| q.site_list == p.site_list) {
            out.push(Call::new(
                "DELETE",
                format!("{}/{{name:{}}}", paths::SITE_LISTS, p.site_list),
                None,
            ));
        }
    }
    out
}

fn policy(spec: &ServiceSpec, s: &SdWanSpec, device: &Device) -> Result<SdWanConfig, CompileError> {
    let mut sites: Vec<u32> = s
        .sites
        .iter()
        .filter(|site| site.devices.contains(&device.name))
        .map(|site| site.site_id)
        .collect();
    sites.sort_unstable();
    sites.dedup();
    let mut sequences = Vec::new();
    for (i, p) in s.policies.iter().enumerate() {
        let mut dests = Vec::new();
        for (j, d) in p.destinations.iter().enumerate() {
            if let ipnet::IpNet::V6(_) = d {
                return Err(CompileError::Unsupported {
                    platform: PLATFORM.to_owned(),
                    what: format!("IPv6 destination {d} in an IPv4 data policy"),
                    field: format!("spec.policies[{i}].destinations[{j}]"),
                });
            }
            dests.push(d.trunc().to_string());
        }
        sequences.push(Sequence {
            id: u32::try_from(i + 1).unwrap_or(u32::MAX).saturating_mul(10),
            name: p.name.clone(),
            action: match p.action {
                Action::Permit => "accept",
                Action::Deny => "drop",
            }
            .to_owned(),
            destinations: dests,
            preferred_color: p.preferred_color.clone(),
        });
    }
    let base = object_name("S", &spec.metadata.tenant, &spec.metadata.name);
    let mut parts: Vec<String> = sequences
        .iter()
        .map(|s| {
            format!(
                "{} {} {} {} {}",
                s.id,
                s.name,
                s.action,
                s.destinations.join(","),
                s.preferred_color
            )
        })
        .collect();
    let site_words: Vec<String> = sites.iter().map(ToString::to_string).collect();
    let site_tag = tag(&site_words);
    parts.push(site_tag.clone());
    Ok(SdWanConfig {
        policies: vec![ServicePolicy {
            name: format!("{base}-{}", tag(&parts)),
            service: format!("{}/{}", spec.metadata.tenant, spec.metadata.name),
            sequences,
            site_list: format!("{base}-sites-{site_tag}"),
            sites,
        }],
    })
}

/// What `spec` puts on the SD-WAN Manager `device`.
///
/// # Errors
/// [`CompileError::Unsupported`] for kinds other than SdWan.
pub fn build(spec: &ServiceSpec, device: &Device) -> Result<SdWanConfig, CompileError> {
    match &spec.body {
        ServiceBody::SdWan(s) => policy(spec, s, device),
        _ => Err(CompileError::Unsupported {
            platform: PLATFORM.to_owned(),
            what: format!("{} services", spec.kind()),
            field: "kind".to_owned(),
        }),
    }
}

/// The dry-run rendering: the SD-WAN Manager calls for this service alone.
///
/// # Errors
/// As [`build`].
pub fn render(spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
    let c = build(spec, device)?;
    Ok(vec![Rendering {
        target: device.name.clone(),
        platform: PLATFORM.to_owned(),
        format: Format::Http,
        content: render_calls(
            &["SD-WAN Manager /dataservice: create, then activate (polled); {name:X} is the id of X".to_owned()],
            &edit_calls(&SdWanConfig::default(), &c),
        ),
    }])
}
