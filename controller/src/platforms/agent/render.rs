//! Host-agent rendering: the firewall and load-balancer sections of a spec
//! that target hosts by label become a `rampart.v1.HostPolicy` fragment, the
//! exact type the agent enforces. The controller assigns the version when
//! it distributes policy.
//!
//! A `LoadBalancer` host target becomes `virtual_services`: one per virtual
//! service, on the target's one interface (the XDP hook where the VIP's
//! traffic arrives), named `tenant/service/virtual-service`. The forwarding
//! mode follows the backends: IP-in-IP with direct server return when every
//! backend listens on the VIP's port (the packet keeps its destination
//! port), destination NAT as soon as one backend uses another port.

use rampart_proto::v1 as pb;

use crate::model::spec::{
    Action, Direction, FirewallRule, FirewallSpec, HostTarget, L4Protocol, LoadBalancerSpec,
    Metadata, PortRange, VirtualService,
};

use crate::{
    platforms::CompileError,
    wire::{Format, Rendering},
};

/// Platform word of host-agent renderings.
pub const PLATFORM: &str = "agent";

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
            platform: PLATFORM.to_owned(),
            format: Format::AgentPolicy,
            // HostPolicy derives Serialize; to_string_pretty cannot fail on it.
            content: serde_json::to_string_pretty(&firewall_policy(fw, meta, t))
                .unwrap_or_default(),
        })
        .collect()
}

fn unsupported(what: impl Into<String>, field: impl Into<String>) -> CompileError {
    CompileError::Unsupported {
        platform: PLATFORM.to_owned(),
        what: what.into(),
        field: field.into(),
    }
}

/// The agent's name of a virtual service: unique across tenants and
/// services, stable across pushes (metrics and health reports use it).
#[must_use]
pub fn virtual_service_name(meta: &Metadata, vs: &VirtualService) -> String {
    format!("{}/{}/{}", meta.tenant, meta.name, vs.name)
}

fn health_check(
    h: &crate::model::spec::HealthCheck,
    field: &str,
) -> Result<pb::HealthCheck, CompileError> {
    let kind = match h.kind.as_str() {
        "tcp" => pb::HealthCheckKind::Tcp,
        "http" => pb::HealthCheckKind::Http,
        other => {
            return Err(unsupported(
                format!("health check kind {other:?} (tcp or http)"),
                format!("{field}.kind"),
            ));
        }
    };
    Ok(pb::HealthCheck {
        kind: kind as i32,
        path: h.path.clone().unwrap_or_default(),
        expected_status: h.expect_status.map_or(0, u32::from),
        interval_ms: h.interval_ms,
        timeout_ms: h.timeout_ms,
        rise: u32::from(h.rise),
        fall: u32::from(h.fall),
    })
}

fn virtual_service(
    vs: &VirtualService,
    meta: &Metadata,
    interface: &str,
    field: &str,
) -> Result<pb::VirtualService, CompileError> {
    let mut backends = Vec::with_capacity(vs.backends.len());
    for (i, b) in vs.backends.iter().enumerate() {
        if b.address.is_ipv4() != vs.address.is_ipv4() {
            return Err(unsupported(
                format!(
                    "backend {} in another address family than the VIP {}",
                    b.address, vs.address
                ),
                format!("{field}.backends[{i}].address"),
            ));
        }
        backends.push(pb::LbBackend {
            address: b.address.to_string(),
            port: b.port.map_or(0, u32::from),
            weight: Some(b.weight),
        });
    }
    // IP-in-IP keeps the client's destination port: a backend on another
    // port needs the destination rewritten.
    let dnat = vs
        .backends
        .iter()
        .any(|b| b.port.is_some_and(|p| p != vs.port));
    let mode = if dnat {
        pb::ForwardingMode::Dnat
    } else {
        pb::ForwardingMode::Ipip
    };
    Ok(pb::VirtualService {
        name: virtual_service_name(meta, vs),
        service: meta.name.clone(),
        tenant: meta.tenant.clone(),
        interface: interface.to_owned(),
        vip: vs.address.to_string(),
        protocol: match vs.protocol {
            L4Protocol::Tcp => 6,
            L4Protocol::Udp => 17,
        },
        port: u32::from(vs.port),
        mode: mode as i32,
        maglev_table_size: 0,
        backends,
        health_check: vs
            .health_check
            .as_ref()
            .map(|h| health_check(h, &format!("{field}.healthCheck")))
            .transpose()?,
    })
}

/// The host policy one host selector (the `index`-th host target) gets from
/// a load-balancer spec: its virtual services, on the target's interface.
///
/// # Errors
/// [`CompileError::Unsupported`] naming the field when the agent cannot
/// express the target (not exactly one interface, egress direction) or a
/// virtual service (health-check kind, backend address family).
pub fn load_balancer_policy(
    lb: &LoadBalancerSpec,
    meta: &Metadata,
    target: &HostTarget,
    index: usize,
) -> Result<pb::HostPolicy, CompileError> {
    let tfield = format!("spec.targets.hosts[{index}]");
    let [interface] = target.interfaces.as_slice() else {
        return Err(unsupported(
            format!(
                "a load balancer on {} interfaces (name exactly one: the interface where the VIP's traffic arrives)",
                target.interfaces.len()
            ),
            format!("{tfield}.interfaces"),
        ));
    };
    if target.direction != Direction::Ingress {
        return Err(unsupported(
            format!(
                "a load balancer in direction {:?} (it runs on ingress only)",
                target.direction
            ),
            format!("{tfield}.direction"),
        ));
    }
    let virtual_services = lb
        .virtual_services
        .iter()
        .enumerate()
        .map(|(i, vs)| virtual_service(vs, meta, interface, &format!("spec.virtualServices[{i}]")))
        .collect::<Result<Vec<_>, _>>()?;
    Ok(pb::HostPolicy {
        virtual_services,
        ..pb::HostPolicy::default()
    })
}

/// Renders every host target of a load-balancer spec.
///
/// # Errors
/// As [`load_balancer_policy`].
pub fn render_load_balancer(
    lb: &LoadBalancerSpec,
    meta: &Metadata,
) -> Result<Vec<Rendering>, CompileError> {
    lb.targets
        .hosts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            Ok(Rendering {
                target: selector_target(t),
                platform: PLATFORM.to_owned(),
                format: Format::AgentPolicy,
                content: serde_json::to_string_pretty(&load_balancer_policy(lb, meta, t, i)?)
                    .unwrap_or_default(),
            })
        })
        .collect()
}
