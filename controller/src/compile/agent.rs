//! Host-agent rendering: the firewall sections of a spec that target hosts by
//! label become a `rampart.v1.HostPolicy` fragment, the exact type the agent
//! enforces. The controller assigns the version when it distributes policy.

use rampart_proto::v1 as pb;

use crate::model::spec::{
    Action, Direction, FirewallRule, FirewallSpec, HostTarget, Metadata, PortRange,
};

use super::{Format, Rendering};

/// The interface name that means "every non-loopback interface".
pub const ALL_INTERFACES: &str = "*";

/// The rendering target name of a host selector: `hosts:k=v,k2=v2`.
#[must_use]
pub fn selector_target(target: &HostTarget) -> String {
    let sel: Vec<String> = target
        .selector
        .iter()
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    format!("hosts:{}", sel.join(","))
}

fn action(a: Action) -> i32 {
    match a {
        Action::Permit => pb::Action::Permit as i32,
        Action::Deny => pb::Action::Deny as i32,
    }
}

fn direction(d: Direction) -> i32 {
    match d {
        Direction::Ingress => pb::Direction::Ingress as i32,
        Direction::Egress => pb::Direction::Egress as i32,
        Direction::Both => pb::Direction::Both as i32,
    }
}

fn ports(r: &[PortRange]) -> Vec<pb::PortRange> {
    r.iter()
        .map(|p| pb::PortRange {
            first: u32::from(p.first),
            last: u32::from(p.last),
        })
        .collect()
}

fn rule(r: &FirewallRule, meta: &Metadata) -> pb::FirewallRule {
    pb::FirewallRule {
        sequence: r.sequence,
        action: action(r.action),
        protocol: r.protocol.number().map_or(0, u32::from),
        sources: r.sources.iter().map(ToString::to_string).collect(),
        destinations: r.destinations.iter().map(ToString::to_string).collect(),
        source_ports: ports(&r.source_ports),
        destination_ports: ports(&r.destination_ports),
        icmp_type: r.icmp_type.map(u32::from),
        icmp_code: r.icmp_code.map(u32::from),
        log_sample: u32::from(r.log),
        service: meta.name.clone(),
        tenant: meta.tenant.clone(),
        drop_established: false,
    }
}

/// The host policy one host selector gets from a firewall spec.
#[must_use]
pub fn firewall_policy(fw: &FirewallSpec, meta: &Metadata, target: &HostTarget) -> pb::HostPolicy {
    let rules: Vec<pb::FirewallRule> = fw.rules.iter().map(|r| rule(r, meta)).collect();
    let names: Vec<&str> = if target.interfaces.is_empty() {
        vec![ALL_INTERFACES]
    } else {
        target.interfaces.iter().map(String::as_str).collect()
    };
    pb::HostPolicy {
        version: 0,
        interfaces: names
            .into_iter()
            .map(|name| pb::InterfacePolicy {
                interface: name.to_owned(),
                direction: direction(target.direction),
                default_action: action(fw.default_action),
                rules: rules.clone(),
            })
            .collect(),
        conntrack_max: 0,
        virtual_services: Vec::new(),
    }
}

/// Renders every host target of a firewall spec.
#[must_use]
pub fn render_firewall(fw: &FirewallSpec, meta: &Metadata) -> Vec<Rendering> {
    fw.targets
        .hosts
        .iter()
        .map(|t| Rendering {
            target: selector_target(t),
            platform: "agent".to_owned(),
            format: Format::AgentPolicy,
            // HostPolicy derives Serialize; to_string_pretty cannot fail on it.
            content: serde_json::to_string_pretty(&firewall_policy(fw, meta, t))
                .unwrap_or_default(),
        })
        .collect()
}
