//! Firepower Threat Defense rendering (FDM REST API): objects, access rules
//! and NAT rules a service puts on one FTD.
//!
//! - Network objects are named after their value (`RPN-10.1.0.0_16`), port
//!   objects after protocol and range (`RPP-tcp-443`): two services using the
//!   same prefix share one object, which stays while any service still
//!   produces it (the merge keeps one copy; the edit deletes it only when no
//!   contribution holds it).
//! - Each firewall rule becomes an access rule `RPF-<tenant>-<service>-<hash>-<seq>`
//!   placed at the top of the access policy in service order, followed by
//!   one `…-default` rule carrying the service's default action for its
//!   zones. Bindings name security zones: `ingress`/`both` targets are
//!   source zones, `egress` targets destination zones.
//! - LoadBalancer → static object NAT (`RPFN-…-<vs>`), one backend per
//!   virtual service, same port (FTD translates, it does not balance).
//! - The vFirewall's `nat` section → object NAT rules `RPFN-…-<n>`, each on
//!   its own original network object `RPN-<tenant>-<service>-<hash>-<n>`
//!   (an object carries one object NAT rule): a static mapping is
//!   `natType: STATIC` to the host object of `insideGlobal` (plus
//!   `originalPort`/`translatedPort` objects for a port translation), each
//!   overload source is `natType: DYNAMIC` with
//!   `interfaceInTranslatedNetwork: true` and the overload interface as
//!   `destinationInterface`. Interfaces are FDM interface names; with
//!   several inside or outside interfaces the side is any.
//! - ICMP matches, Router, Vpn and SdWan are not expressible here.
//!
//! References inside rules are by object name; the driver resolves names to
//! the ids the device assigned.

use serde::{Deserialize, Serialize};

use crate::{
    model::{
        device::Device,
        spec::{
            Action, Direction, FirewallSpec, L4Protocol, LoadBalancerSpec, PortRange, Protocol,
            ServiceBody, ServiceSpec,
        },
    },
    wire::http::{Call, render_calls},
};
use crate::{
    platforms::CompileError,
    wire::{Format, Rendering, naming::object_name},
};

/// Platform word.
pub const PLATFORM: &str = "ftd";

/// A network object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetObject {
    /// Name (content-derived).
    pub name: String,
    /// `HOST` or `NETWORK`.
    pub sub_type: String,
    /// Address or CIDR.
    pub value: String,
}

/// A TCP or UDP port object.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortObject {
    /// Name (content-derived).
    pub name: String,
    /// `tcp` or `udp`.
    pub protocol: String,
    /// `443` or `1000-2000`.
    pub port: String,
}

/// An access rule, references by name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessRule {
    /// Rule name.
    pub name: String,
    /// `PERMIT` or `DENY`.
    pub action: String,
    /// Log at flow end.
    pub log: bool,
    /// Security zone names.
    pub source_zones: Vec<String>,
    /// Security zone names.
    pub destination_zones: Vec<String>,
    /// Network object names.
    pub source_networks: Vec<String>,
    /// Network object names.
    pub destination_networks: Vec<String>,
    /// Port object names.
    pub source_ports: Vec<String>,
    /// Port object names.
    pub destination_ports: Vec<String>,
}

/// An object NAT rule: static (a published backend or a vFirewall static
/// mapping, optionally of one port) or dynamic interface PAT (an overload).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatRule {
    /// Rule name.
    pub name: String,
    /// Real (inside) network object.
    pub original: String,
    /// Mapped (public) host object; empty for interface PAT.
    pub translated: String,
    /// `natType: DYNAMIC` translating to the destination interface's
    /// address (`interfaceInTranslatedNetwork`), rather than `STATIC`.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub dynamic: bool,
    /// Real port object (a static port translation).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub original_port: Option<String>,
    /// Mapped port object.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub translated_port: Option<String>,
    /// Interface (FDM `name`, the `nameif`) the real side is on; any when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source_interface: Option<String>,
    /// Interface the mapped side is on; any when absent (required for PAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub destination_interface: Option<String>,
}

/// What services put on one FTD.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FtdConfig {
    /// Network objects, sorted by name.
    #[serde(default)]
    pub networks: Vec<NetObject>,
    /// Port objects, sorted by name.
    #[serde(default)]
    pub ports: Vec<PortObject>,
    /// Access rules in policy order.
    #[serde(default)]
    pub rules: Vec<AccessRule>,
    /// NAT rules.
    #[serde(default)]
    pub nat: Vec<NatRule>,
}

/// Path of the access rules (`{policy}`: the device's access policy id).
pub const RULES: &str = "/policy/accesspolicies/{policy}/accessrules";
/// Path of the object NAT rules.
pub const NAT_RULES: &str = "/policy/objectnatpolicies/{natpolicy}/objectnatrules";

fn port_collection(protocol: &str) -> &'static str {
    if protocol == "udp" {
        "udpports"
    } else {
        "tcpports"
    }
}

fn net_ref(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "type": "networkobject"})
}

impl AccessRule {
    /// The API body (references by name, resolved by the driver).
    #[must_use]
    pub fn body(&self, ports: &[PortObject]) -> serde_json::Value {
        let zone = |z: &Vec<String>| -> Vec<serde_json::Value> {
            z.iter()
                .map(|n| serde_json::json!({"name": n, "type": "securityzone"}))
                .collect()
        };
        let port = |p: &Vec<String>| -> Vec<serde_json::Value> {
            p.iter()
                .map(|n| {
                    let kind = ports
                        .iter()
                        .find(|o| &o.name == n)
                        .map_or("tcp", |o| o.protocol.as_str());
                    serde_json::json!({"name": n, "type": format!("{kind}portobject")})
                })
                .collect()
        };
        serde_json::json!({
            "name": self.name,
            "type": "accessrule",
            "ruleAction": self.action,
            "eventLogAction": if self.log { "LOG_FLOW_END" } else { "LOG_NONE" },
            "sourceZones": zone(&self.source_zones),
            "destinationZones": zone(&self.destination_zones),
            "sourceNetworks": self.source_networks.iter().map(|n| net_ref(n)).collect::<Vec<_>>(),
            "destinationNetworks": self.destination_networks.iter().map(|n| net_ref(n)).collect::<Vec<_>>(),
            "sourcePorts": port(&self.source_ports),
            "destinationPorts": port(&self.destination_ports),
            "enabled": true,
        })
    }
}

/// The reference to an interface by its FDM `name`.
fn interface_ref(name: &str) -> serde_json::Value {
    serde_json::json!({"name": name, "type": "physicalinterface"})
}

/// The reference to a port object (`RPP-<proto>-…`).
fn port_ref(name: &str) -> serde_json::Value {
    let kind = if name.starts_with("RPP-udp-") {
        "udpportobject"
    } else {
        "tcpportobject"
    };
    serde_json::json!({"name": name, "type": kind})
}

impl NatRule {
    /// The API body.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        let mut b = serde_json::json!({
            "name": self.name,
            "type": "objectnatrule",
            "natType": if self.dynamic { "DYNAMIC" } else { "STATIC" },
            "originalNetwork": net_ref(&self.original),
        });
        if self.dynamic {
            b["interfaceInTranslatedNetwork"] = serde_json::Value::Bool(true);
        } else {
            b["translatedNetwork"] = net_ref(&self.translated);
        }
        if let (Some(o), Some(t)) = (&self.original_port, &self.translated_port) {
            b["originalPort"] = port_ref(o);
            b["translatedPort"] = port_ref(t);
        }
        if let Some(i) = &self.source_interface {
            b["sourceInterface"] = interface_ref(i);
        }
        if let Some(i) = &self.destination_interface {
            b["destinationInterface"] = interface_ref(i);
        }
        b
    }
}

impl NetObject {
    /// The API body.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "type": "networkobject", "subType": self.sub_type, "value": self.value})
    }
}

impl PortObject {
    /// The API body.
    #[must_use]
    pub fn body(&self) -> serde_json::Value {
        serde_json::json!({"name": self.name, "type": format!("{}portobject", self.protocol), "port": self.port})
    }
}

/// The calls moving the device from `prev` to `next`: objects created
/// first, rules created/updated (placed with `?at=`), rules removed, then
/// objects no contribution holds any more removed. `{name:X}` in a path
/// stands for the id of the object or rule named X.
#[must_use]
pub fn edit_calls(prev: &FtdConfig, next: &FtdConfig) -> Vec<Call> {
    let mut out = Vec::new();
    for n in &next.networks {
        if !prev.networks.contains(n) {
            out.push(Call::new("POST", "/object/networks", Some(n.body())));
        }
    }
    for p in &next.ports {
        if !prev.ports.contains(p) {
            out.push(Call::new(
                "POST",
                format!("/object/{}", port_collection(&p.protocol)),
                Some(p.body()),
            ));
        }
    }
    for (i, r) in next.rules.iter().enumerate() {
        match prev.rules.iter().find(|p| p.name == r.name) {
            None => out.push(Call::new(
                "POST",
                format!("{RULES}?at={i}"),
                Some(r.body(&next.ports)),
            )),
            Some(p) if p != r => out.push(Call::new(
                "PUT",
                format!("{RULES}/{{name:{}}}", r.name),
                Some(r.body(&next.ports)),
            )),
            Some(_) => {}
        }
    }
    for r in &next.nat {
        match prev.nat.iter().find(|p| p.name == r.name) {
            None => out.push(Call::new("POST", NAT_RULES, Some(r.body()))),
            Some(p) if p != r => out.push(Call::new(
                "PUT",
                format!("{NAT_RULES}/{{name:{}}}", r.name),
                Some(r.body()),
            )),
            Some(_) => {}
        }
    }
    for r in &prev.rules {
        if !next.rules.iter().any(|n| n.name == r.name) {
            out.push(Call::new(
                "DELETE",
                format!("{RULES}/{{name:{}}}", r.name),
                None,
            ));
        }
    }
    for r in &prev.nat {
        if !next.nat.iter().any(|n| n.name == r.name) {
            out.push(Call::new(
                "DELETE",
                format!("{NAT_RULES}/{{name:{}}}", r.name),
                None,
            ));
        }
    }
    for p in &prev.ports {
        if !next.ports.iter().any(|n| n.name == p.name) {
            out.push(Call::new(
                "DELETE",
                format!(
                    "/object/{}/{{name:{}}}",
                    port_collection(&p.protocol),
                    p.name
                ),
                None,
            ));
        }
    }
    for n in &prev.networks {
        if !next.networks.iter().any(|x| x.name == n.name) {
            out.push(Call::new(
                "DELETE",
                format!("/object/networks/{{name:{}}}", n.name),
                None,
            ));
        }
    }
    out
}

fn unsupported(what: String, field: String) -> CompileError {
    CompileError::Unsupported {
        platform: PLATFORM.to_owned(),
        what,
        field,
    }
}

/// The network object of a prefix (or host).
#[must_use]
pub fn net_object(net: &ipnet::IpNet) -> NetObject {
    let net = net.trunc();
    let host = net.prefix_len() == net.max_prefix_len();
    let value = if host {
        net.addr().to_string()
    } else {
        net.to_string()
    };
    NetObject {
        name: format!("RPN-{}", value.replace(['/', ':'], "_")),
        sub_type: if host { "HOST" } else { "NETWORK" }.to_owned(),
        value,
    }
}

fn port_object(protocol: &str, r: &PortRange) -> PortObject {
    let port = if r.first == r.last {
        r.first.to_string()
    } else {
        format!("{}-{}", r.first, r.last)
    };
    PortObject {
        name: format!("RPP-{protocol}-{port}"),
        protocol: protocol.to_owned(),
        port,
    }
}

fn add<T: Ord + Clone>(list: &mut Vec<T>, item: &T) {
    if !list.contains(item) {
        list.push(item.clone());
        list.sort();
    }
}

fn firewall(
    spec: &ServiceSpec,
    fw: &FirewallSpec,
    device: &Device,
) -> Result<FtdConfig, CompileError> {
    let base = object_name("F", &spec.metadata.tenant, &spec.metadata.name);
    let mut c = FtdConfig::default();
    let (mut src_zones, mut dst_zones) = (Vec::new(), Vec::new());
    for t in fw
        .targets
        .devices
        .iter()
        .filter(|t| t.device == device.name)
    {
        match t.direction {
            Direction::Ingress | Direction::Both => add(&mut src_zones, &t.interface),
            Direction::Egress => add(&mut dst_zones, &t.interface),
        }
    }
    let mut order: Vec<usize> = (0..fw.rules.len()).collect();
    order.sort_by_key(|&i| fw.rules[i].sequence);
    for i in order {
        let r = &fw.rules[i];
        let field = format!("spec.rules[{i}]");
        let proto = match r.protocol {
            Protocol::Any => None,
            Protocol::Tcp => Some("tcp"),
            Protocol::Udp => Some("udp"),
            Protocol::Icmp | Protocol::Icmpv6 => {
                return Err(unsupported(
                    "ICMP rules (no ICMP port objects are managed)".to_owned(),
                    format!("{field}.protocol"),
                ));
            }
        };
        let mut rule = AccessRule {
            name: format!("{base}-{}", r.sequence),
            action: match r.action {
                Action::Permit => "PERMIT",
                Action::Deny => "DENY",
            }
            .to_owned(),
            log: r.log,
            source_zones: src_zones.clone(),
            destination_zones: dst_zones.clone(),
            source_networks: Vec::new(),
            destination_networks: Vec::new(),
            source_ports: Vec::new(),
            destination_ports: Vec::new(),
        };
        for (prefixes, names) in [
            (&r.sources, &mut rule.source_networks),
            (&r.destinations, &mut rule.destination_networks),
        ] {
            for p in prefixes {
                let o = net_object(p);
                names.push(o.name.clone());
                add(&mut c.networks, &o);
            }
        }
        if let Some(proto) = proto {
            let all = [PortRange {
                first: 1,
                last: 65535,
            }];
            let dports: &[PortRange] =
                if r.destination_ports.is_empty() && r.source_ports.is_empty() {
                    &all
                } else {
                    &r.destination_ports
                };
            for (ranges, names) in [
                (&r.source_ports[..], &mut rule.source_ports),
                (dports, &mut rule.destination_ports),
            ] {
                for pr in ranges {
                    let o = port_object(proto, pr);
                    names.push(o.name.clone());
                    add(&mut c.ports, &o);
                }
            }
        }
        c.rules.push(rule);
    }
    c.rules.push(AccessRule {
        name: format!("{base}-default"),
        action: match fw.default_action {
            Action::Permit => "PERMIT",
            Action::Deny => "DENY",
        }
        .to_owned(),
        log: false,
        source_zones: src_zones,
        destination_zones: dst_zones,
        source_networks: Vec::new(),
        destination_networks: Vec::new(),
        source_ports: Vec::new(),
        destination_ports: Vec::new(),
    });
    Ok(c)
}

/// An interface side of a NAT rule: the one interface, or any (absent)
/// when the spec lists several.
fn nat_side(list: &[String]) -> Option<String> {
    match list {
        [one] => Some(one.clone()),
        _ => None,
    }
}

/// The vFirewall's `nat` entries for `device` as object NAT rules
/// `RPFN-…-<n>`, each on its own original network object `RPN-…-<n>`
/// (FDM allows one object NAT rule per object): static mappings are
/// `STATIC` to a host object (with port objects for a port translation),
/// each overload source is `DYNAMIC` to its interface's address.
fn firewall_nat(
    spec: &ServiceSpec,
    fw: &FirewallSpec,
    device: &Device,
    c: &mut FtdConfig,
) -> Result<(), CompileError> {
    let Some(nat) = &fw.nat else {
        return Ok(());
    };
    let rule_base = object_name("FN", &spec.metadata.tenant, &spec.metadata.name);
    let object_base = object_name("N", &spec.metadata.tenant, &spec.metadata.name);
    let mut n = 0u32;
    for (i, d) in nat
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.device == device.name)
    {
        let field = format!("spec.nat.devices[{i}]");
        if d.inside_interfaces.is_empty() {
            return Err(unsupported(
                "NAT without inside interfaces".to_owned(),
                format!("{field}.insideInterfaces"),
            ));
        }
        if d.outside_interfaces.is_empty() {
            return Err(unsupported(
                "NAT without outside interfaces".to_owned(),
                format!("{field}.outsideInterfaces"),
            ));
        }
        let inside = nat_side(&d.inside_interfaces);
        let outside = nat_side(&d.outside_interfaces);
        let original = |n: u32, net: ipnet::IpNet, c: &mut FtdConfig| -> String {
            let mut o = net_object(&net);
            o.name = format!("{object_base}-{n}");
            let name = o.name.clone();
            add(&mut c.networks, &o);
            name
        };
        for (j, m) in d.static_mappings.iter().enumerate() {
            let f = format!("{field}.staticMappings[{j}]");
            let ports = match (m.protocol, m.local_port, m.global_port) {
                (Some(p), Some(l), Some(g)) => {
                    let proto = match p {
                        L4Protocol::Tcp => "tcp",
                        L4Protocol::Udp => "udp",
                    };
                    let lo = port_object(proto, &PortRange { first: l, last: l });
                    let go = port_object(proto, &PortRange { first: g, last: g });
                    add(&mut c.ports, &lo);
                    add(&mut c.ports, &go);
                    Some((lo.name, go.name))
                }
                (None, None, None) => None,
                _ => {
                    return Err(unsupported(
                        "a static NAT port translation without protocol, localPort and globalPort together".to_owned(),
                        f,
                    ));
                }
            };
            let mapped = net_object(&ipnet::IpNet::from(std::net::IpAddr::V4(m.inside_global)));
            add(&mut c.networks, &mapped);
            if let Some(x) = c.nat.iter().find(|x| {
                !x.dynamic
                    && x.translated == mapped.name
                    && (x.translated_port.is_none()
                        || ports.is_none()
                        || x.translated_port.as_ref() == ports.as_ref().map(|p| &p.1))
            }) {
                return Err(unsupported(
                    format!(
                        "two static NAT rules publishing {} (the other is {})",
                        m.inside_global, x.name
                    ),
                    f,
                ));
            }
            n += 1;
            let orig = original(
                n,
                ipnet::IpNet::from(std::net::IpAddr::V4(m.inside_local)),
                c,
            );
            let (original_port, translated_port) = ports.unzip();
            c.nat.push(NatRule {
                name: format!("{rule_base}-{n}"),
                original: orig,
                translated: mapped.name,
                dynamic: false,
                original_port,
                translated_port,
                source_interface: inside.clone(),
                destination_interface: outside.clone(),
            });
        }
        for (j, o) in d.overloads.iter().enumerate() {
            let f = format!("{field}.overloads[{j}]");
            if let Some((what, at)) = crate::platforms::overload_problem(d, o, &f) {
                return Err(unsupported(what, at));
            }
            for src in &o.sources {
                n += 1;
                let orig = original(n, ipnet::IpNet::V4(src.trunc()), c);
                c.nat.push(NatRule {
                    name: format!("{rule_base}-{n}"),
                    original: orig,
                    translated: String::new(),
                    dynamic: true,
                    original_port: None,
                    translated_port: None,
                    source_interface: inside.clone(),
                    destination_interface: Some(o.interface.clone()),
                });
            }
        }
    }
    Ok(())
}

fn load_balancer(spec: &ServiceSpec, lb: &LoadBalancerSpec) -> Result<FtdConfig, CompileError> {
    let base = object_name("FN", &spec.metadata.tenant, &spec.metadata.name);
    let mut c = FtdConfig::default();
    for (i, vs) in lb.virtual_services.iter().enumerate() {
        let [b] = vs.backends.as_slice() else {
            return Err(unsupported(
                format!(
                    "{} backends behind one virtual service (static NAT has one)",
                    vs.backends.len()
                ),
                format!("spec.virtualServices[{i}].backends"),
            ));
        };
        if b.port.is_some_and(|p| p != vs.port) || vs.health_check.is_some() {
            return Err(unsupported(
                "port translation or health checks in static NAT".to_owned(),
                format!("spec.virtualServices[{i}]"),
            ));
        }
        let real = net_object(&ipnet::IpNet::from(b.address));
        let mapped = net_object(&ipnet::IpNet::from(vs.address));
        add(&mut c.networks, &real);
        add(&mut c.networks, &mapped);
        c.nat.push(NatRule {
            name: format!("{base}-{}", vs.name),
            original: real.name,
            translated: mapped.name,
            dynamic: false,
            original_port: None,
            translated_port: None,
            source_interface: None,
            destination_interface: None,
        });
    }
    Ok(c)
}

/// What `spec` puts on the FTD `device`.
///
/// # Errors
/// [`CompileError::Unsupported`] naming what FDM cannot express.
pub fn build(spec: &ServiceSpec, device: &Device) -> Result<FtdConfig, CompileError> {
    match &spec.body {
        ServiceBody::Firewall(fw) => {
            let mut c = firewall(spec, fw, device)?;
            firewall_nat(spec, fw, device, &mut c)?;
            Ok(c)
        }
        ServiceBody::LoadBalancer(lb) => load_balancer(spec, lb),
        ServiceBody::Router(_) | ServiceBody::Vpn(_) | ServiceBody::SdWan(_) => Err(unsupported(
            format!("{} services", spec.kind()),
            "kind".to_owned(),
        )),
    }
}

/// The dry-run rendering: the FDM calls staging this service, then the deploy.
///
/// # Errors
/// As [`build`].
pub fn render(spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
    let c = build(spec, device)?;
    let mut calls = edit_calls(&FtdConfig::default(), &c);
    calls.push(Call::new("POST", "/operational/deploy", None));
    Ok(vec![Rendering {
        target: device.name.clone(),
        platform: PLATFORM.to_owned(),
        format: Format::Http,
        content: render_calls(
            &["FDM REST API: staged changes, then one deploy; {name:X} is the id of X".to_owned()],
            &calls,
        ),
    }])
}
