//! Cisco ASA rendering (CLI): object-groups, extended access-lists and
//! `access-group` bindings a firewall service puts on one ASA.
//!
//! Names carry a content hash: the ACL of a service is
//! `RPA-<tenant>-<service>-<hash>-<content>` and object-groups are
//! `RPG-<content>`. A changed service therefore gets a new ACL, which is
//! written in full, then bound with `access-group` (which replaces the
//! previous binding of that interface and direction in one step), and only
//! then is the old ACL cleared: traffic is never left without a filter.
//! Object-groups with the same content are shared between services and
//! removed when no contribution holds them.
//!
//! LoadBalancer services with one IPv4 backend per virtual service become
//! object NAT (`object network RPO-…` with `nat (inside,<target>) static
//! <VIP> service <proto> <real port> <VIP port>`), published on the one
//! target interface of the device; the real side is the `nameif` in the
//! device label `rampart.io/asa-inside-interface` (default `inside`).
//!
//! A vFirewall's `nat` section becomes object NAT too, one network object
//! `RPN-<tenant>-<service>-<hash>-<n>` per translation: a static mapping is
//! `host <insideLocal>` + `nat (<inside>,<outside>) static <insideGlobal>
//! [service tcp|udp <localPort> <globalPort>]`, each overload source prefix
//! is `subnet …` + `nat (<inside>,<overload interface>) dynamic interface`
//! (interface PAT). With several inside or outside interfaces the side is
//! `any`; the interfaces are `nameif`s.
//!
//! Only firewall services with IPv4 prefixes and no ICMP type matches, and
//! such LoadBalancers, are expressible; the rest is refused naming the field.

use serde::{Deserialize, Serialize};

use crate::model::{
    device::Device,
    spec::{Action, Direction, FirewallSpec, PortRange, Protocol, ServiceBody, ServiceSpec},
};
use crate::{
    platforms::CompileError,
    wire::{Format, Rendering, naming::object_name},
};

/// Platform word.
pub const PLATFORM: &str = "asa";
/// Prefix of Rampart's ACL names.
pub const ACL_PREFIX: &str = "RPA-";
/// Prefix of Rampart's object-group names.
pub const GROUP_PREFIX: &str = "RPG-";

/// An object-group: its header and member lines.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct ObjectGroup {
    /// Name.
    pub name: String,
    /// `network`, or `service tcp`/`service udp`.
    pub kind: String,
    /// Member lines (`network-object host 10.0.0.1`, `port-object eq 443`).
    pub members: Vec<String>,
}

impl ObjectGroup {
    /// The CLI lines defining the group (members indented, as shown by the ASA).
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        // `object-group network NAME`, `object-group service NAME tcp`.
        let mut words = self.kind.split_whitespace();
        let kind = words.next().unwrap_or("network");
        let mut head = format!("object-group {kind} {}", self.name);
        for w in words {
            head.push(' ');
            head.push_str(w);
        }
        let mut out = vec![head];
        out.extend(self.members.iter().map(|m| format!(" {m}")));
        out
    }

    fn kind_word(&self) -> &str {
        self.kind.split_whitespace().next().unwrap_or("network")
    }
}

/// An extended ACL.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// Name.
    pub name: String,
    /// Entries after `access-list NAME ` (`extended permit …`, `remark …`).
    pub entries: Vec<String>,
}

impl Acl {
    /// The CLI lines.
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        self.entries
            .iter()
            .map(|e| format!("access-list {} {e}", self.name))
            .collect()
    }
}

/// An `access-group` binding.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct Binding {
    /// ACL name.
    pub acl: String,
    /// `in` or `out`.
    pub direction: String,
    /// Interface `nameif`.
    pub interface: String,
}

impl Binding {
    /// The CLI line.
    #[must_use]
    pub fn line(&self) -> String {
        format!(
            "access-group {} {} interface {}",
            self.acl, self.direction, self.interface
        )
    }
}

/// What services put on one ASA.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AsaConfig {
    /// Object-groups, sorted by name.
    #[serde(default)]
    pub groups: Vec<ObjectGroup>,
    /// ACLs, sorted by name.
    #[serde(default)]
    pub acls: Vec<Acl>,
    /// Bindings, sorted.
    #[serde(default)]
    pub bindings: Vec<Binding>,
    /// Network objects carrying a static NAT, sorted by name.
    #[serde(default)]
    pub nat_objects: Vec<NatObject>,
}

/// A network object with object NAT: a published backend (`RPO-…`), or a
/// vFirewall's static mapping or overload source (`RPN-…`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NatObject {
    /// Name (`RPO-…` or `RPN-…`).
    pub name: String,
    /// Real (inside) address; empty when `subnet` holds the real side.
    pub host: String,
    /// The NAT statement after `nat ` (`(inside,outside) static 203.0.113.10 service tcp 8443 443`,
    /// `(inside,outside) dynamic interface`).
    pub nat: String,
    /// `ADDRESS MASK` of a real prefix (an overload's source), shown as
    /// ` subnet ADDRESS MASK` instead of ` host …`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subnet: Option<String>,
}

impl NatObject {
    /// The CLI lines (members indented, as shown by the ASA).
    #[must_use]
    pub fn lines(&self) -> Vec<String> {
        let real = match &self.subnet {
            Some(s) => format!(" subnet {s}"),
            None => format!(" host {}", self.host),
        };
        vec![
            format!("object network {}", self.name),
            real,
            format!(" nat {}", self.nat),
        ]
    }

    /// The translated side of a static NAT (`203.0.113.10 service tcp 8443 443`):
    /// what two objects must not share. `None` for dynamic NAT.
    #[must_use]
    pub fn published(&self) -> Option<&str> {
        self.nat.split_once(" static ").map(|(_, p)| p)
    }

    /// Whether two static NATs publish the same thing: the same mapped
    /// address, unless both translate different ports (or protocols) of it.
    #[must_use]
    pub fn clashes(&self, other: &NatObject) -> bool {
        let (Some(a), Some(b)) = (self.published(), other.published()) else {
            return false;
        };
        let ((ia, sa), (ib, sb)) = (split_published(a), split_published(b));
        ia == ib && (sa.is_none() || sb.is_none() || sa == sb)
    }
}

/// The mapped address of a static NAT and, for a port translation, its
/// protocol and mapped port.
type Published<'a> = (Option<&'a str>, Option<(Option<&'a str>, Option<&'a str>)>);

/// `ADDR [service PROTO REAL MAPPED]` → (ADDR, Some((PROTO, MAPPED))).
fn split_published(p: &str) -> Published<'_> {
    let w: Vec<&str> = p.split(' ').collect();
    let service = (w.get(1) == Some(&"service")).then(|| (w.get(2).copied(), w.get(4).copied()));
    (w.first().copied(), service)
}

impl AsaConfig {
    /// The configuration as `show running-config` lists it (groups, ACLs,
    /// bindings): the form read-back and drift compare.
    #[must_use]
    pub fn running_lines(&self) -> Vec<String> {
        let mut out = Vec::new();
        for g in &self.groups {
            out.extend(g.lines());
        }
        for a in &self.acls {
            out.extend(a.lines());
        }
        out.extend(self.bindings.iter().map(Binding::line));
        for o in &self.nat_objects {
            out.extend(o.lines());
        }
        out
    }
}

/// The configuration-mode lines moving the device from `prev` to `next`:
/// new groups, new ACLs, new bindings, bindings no longer wanted, old ACLs,
/// old groups — in that order, so nothing is ever referenced before it
/// exists or removed while still referenced.
#[must_use]
pub fn edit_lines(prev: &AsaConfig, next: &AsaConfig) -> Vec<String> {
    let mut out = Vec::new();
    for g in &next.groups {
        if !prev.groups.contains(g) {
            if prev.groups.iter().any(|p| p.name == g.name) {
                out.push(format!("no object-group {} {}", g.kind_word(), g.name));
            }
            out.extend(g.lines());
        }
    }
    for a in &next.acls {
        if !prev.acls.contains(a) {
            if prev.acls.iter().any(|p| p.name == a.name) {
                out.push(format!("clear configure access-list {}", a.name));
            }
            out.extend(a.lines());
        }
    }
    for b in &next.bindings {
        if !prev.bindings.contains(b) || !prev.acls.iter().any(|a| a.name == b.acl) {
            out.push(b.line());
        }
    }
    for b in &prev.bindings {
        let replaced = next
            .bindings
            .iter()
            .any(|n| n.direction == b.direction && n.interface == b.interface);
        let acl_goes = !next.acls.iter().any(|a| a.name == b.acl);
        if !replaced && !acl_goes {
            out.push(format!("no {}", b.line()));
        }
    }
    for a in &prev.acls {
        if !next.acls.iter().any(|n| n.name == a.name) {
            out.push(format!("clear configure access-list {}", a.name));
        }
    }
    for g in &prev.groups {
        if !next.groups.iter().any(|n| n.name == g.name) {
            out.push(format!("no object-group {} {}", g.kind_word(), g.name));
        }
    }
    for o in &next.nat_objects {
        if !prev.nat_objects.contains(o) {
            if prev.nat_objects.iter().any(|p| p.name == o.name) {
                out.push(format!("no object network {}", o.name));
            }
            out.extend(o.lines());
        }
    }
    for o in &prev.nat_objects {
        if !next.nat_objects.iter().any(|n| n.name == o.name) {
            out.push(format!("no object network {}", o.name));
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

/// FNV-1a-64, low 32 bits, as 8 hex digits: the content tag of names.
fn content_tag(parts: &[String]) -> String {
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

fn mask(len: u8) -> std::net::Ipv4Addr {
    let bits = if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len))
    };
    std::net::Ipv4Addr::from(bits)
}

/// `host A` or `A MASK` of an IPv4 prefix.
fn address(net: &ipnet::IpNet, field: &str) -> Result<String, CompileError> {
    match net.trunc() {
        ipnet::IpNet::V4(n) if n.prefix_len() == 32 => Ok(format!("host {}", n.addr())),
        ipnet::IpNet::V4(n) => Ok(format!("{} {}", n.addr(), mask(n.prefix_len()))),
        ipnet::IpNet::V6(_) => Err(unsupported(format!("IPv6 prefix {net}"), field.to_owned())),
    }
}

fn port_op(r: &PortRange) -> String {
    if r.first == r.last {
        format!("eq {}", r.first)
    } else {
        format!("range {} {}", r.first, r.last)
    }
}

struct Builder {
    groups: Vec<ObjectGroup>,
}

impl Builder {
    fn group(&mut self, kind: &str, members: Vec<String>) -> String {
        let mut key = vec![kind.to_owned()];
        key.extend(members.iter().cloned());
        let name = format!("{GROUP_PREFIX}{}", content_tag(&key));
        let g = ObjectGroup {
            name: name.clone(),
            kind: kind.to_owned(),
            members,
        };
        if !self.groups.contains(&g) {
            self.groups.push(g);
        }
        name
    }

    fn addresses(&mut self, nets: &[ipnet::IpNet], field: &str) -> Result<String, CompileError> {
        match nets {
            [] => Ok("any4".to_owned()),
            [one] => address(one, &format!("{field}[0]")),
            many => {
                let mut members = Vec::new();
                for (i, n) in many.iter().enumerate() {
                    members.push(format!(
                        "network-object {}",
                        address(n, &format!("{field}[{i}]"))?
                    ));
                }
                Ok(format!("object-group {}", self.group("network", members)))
            }
        }
    }

    fn ports(&mut self, proto: &str, ranges: &[PortRange]) -> Option<String> {
        match ranges {
            [] => None,
            [one] => Some(port_op(one)),
            many => {
                let members = many
                    .iter()
                    .map(|r| format!("port-object {}", port_op(r)))
                    .collect();
                Some(format!(
                    "object-group {}",
                    self.group(&format!("service {proto}"), members)
                ))
            }
        }
    }
}

fn firewall(
    spec: &ServiceSpec,
    fw: &FirewallSpec,
    device: &Device,
) -> Result<AsaConfig, CompileError> {
    let mut b = Builder { groups: Vec::new() };
    let mut entries = Vec::new();
    let mut order: Vec<usize> = (0..fw.rules.len()).collect();
    order.sort_by_key(|&i| fw.rules[i].sequence);
    for i in order {
        let r = &fw.rules[i];
        let field = format!("spec.rules[{i}]");
        if r.icmp_type.is_some() {
            return Err(unsupported(
                "ICMP type/code matches".to_owned(),
                format!("{field}.icmpType"),
            ));
        }
        let proto = match r.protocol {
            Protocol::Any => "ip",
            Protocol::Tcp => "tcp",
            Protocol::Udp => "udp",
            Protocol::Icmp => "icmp",
            Protocol::Icmpv6 => {
                return Err(unsupported(
                    "ICMPv6 in an IPv4 ACL".to_owned(),
                    format!("{field}.protocol"),
                ));
            }
        };
        let src = b.addresses(&r.sources, &format!("{field}.sources"))?;
        let dst = b.addresses(&r.destinations, &format!("{field}.destinations"))?;
        let (sport, dport) = if r.protocol.has_ports() {
            (
                b.ports(proto, &r.source_ports),
                b.ports(proto, &r.destination_ports),
            )
        } else {
            (None, None)
        };
        if let Some(d) = &r.description {
            let text: String = d.chars().filter(|c| !c.is_control()).take(100).collect();
            entries.push(format!("remark {text}"));
        }
        let mut line = format!(
            "extended {} {proto} {src}",
            match r.action {
                Action::Permit => "permit",
                Action::Deny => "deny",
            }
        );
        if let Some(p) = sport {
            line.push(' ');
            line.push_str(&p);
        }
        line.push(' ');
        line.push_str(&dst);
        if let Some(p) = dport {
            line.push(' ');
            line.push_str(&p);
        }
        if r.log {
            line.push_str(" log");
        }
        if !entries.contains(&line) {
            entries.push(line);
        }
    }
    entries.push(format!(
        "extended {} ip any4 any4",
        match fw.default_action {
            Action::Permit => "permit",
            Action::Deny => "deny",
        }
    ));
    let mut tagged: Vec<String> = entries.clone();
    tagged.extend(b.groups.iter().flat_map(ObjectGroup::lines));
    let name = format!(
        "{}-{}",
        object_name("A", &spec.metadata.tenant, &spec.metadata.name),
        content_tag(&tagged)
    );
    let mut bindings = Vec::new();
    for t in fw
        .targets
        .devices
        .iter()
        .filter(|t| t.device == device.name)
    {
        let dirs: &[&str] = match t.direction {
            Direction::Ingress => &["in"],
            Direction::Egress => &["out"],
            Direction::Both => &["in", "out"],
        };
        for d in dirs {
            let bind = Binding {
                acl: name.clone(),
                direction: (*d).to_owned(),
                interface: t.interface.clone(),
            };
            if !bindings.contains(&bind) {
                bindings.push(bind);
            }
        }
    }
    b.groups.sort();
    bindings.sort();
    Ok(AsaConfig {
        groups: b.groups,
        acls: vec![Acl { name, entries }],
        bindings,
        nat_objects: Vec::new(),
    })
}

/// Prefix of the network objects a vFirewall's `nat` section creates.
pub const FW_NAT_PREFIX: &str = "RPN-";

/// Whether `name` can stand in `nat (<real>,<mapped>)`: a `nameif` (letters,
/// digits, `_`, `.`, `-`, at most 48).
fn valid_nameif(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 48
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// One side of `nat (<real>,<mapped>)`: the one interface, or `any` when
/// the spec lists several (object NAT then applies on each of them).
fn nat_side(list: &[String], field: &str, user: &str) -> Result<String, CompileError> {
    for (k, name) in list.iter().enumerate() {
        if !valid_nameif(name) {
            return Err(unsupported(
                format!("{name:?} as an ASA nameif"),
                format!("{field}.{user}[{k}]"),
            ));
        }
    }
    match list {
        [] => Err(unsupported(
            "NAT without interfaces (object NAT names the real and mapped nameif)".to_owned(),
            format!("{field}.{user}"),
        )),
        [one] => Ok(one.clone()),
        _ => Ok("any".to_owned()),
    }
}

/// The vFirewall's `nat` entries for `device` as object NAT: one
/// `RPN-…-<n>` network object per static mapping (`host` + `nat … static`)
/// and per overload source prefix (`subnet` + `nat … dynamic interface`).
fn firewall_nat(
    spec: &ServiceSpec,
    fw: &FirewallSpec,
    device: &Device,
) -> Result<Vec<NatObject>, CompileError> {
    let Some(nat) = &fw.nat else {
        return Ok(Vec::new());
    };
    let base = object_name("N", &spec.metadata.tenant, &spec.metadata.name);
    let mut out: Vec<NatObject> = Vec::new();
    let mut n = 0u32;
    for (i, d) in nat
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.device == device.name)
    {
        let field = format!("spec.nat.devices[{i}]");
        let inside = nat_side(&d.inside_interfaces, &field, "insideInterfaces")?;
        let outside = nat_side(&d.outside_interfaces, &field, "outsideInterfaces")?;
        if let Some(k) = d
            .outside_interfaces
            .iter()
            .position(|o| d.inside_interfaces.contains(o))
        {
            return Err(unsupported(
                format!("{} as both NAT inside and outside", d.outside_interfaces[k]),
                format!("{field}.outsideInterfaces[{k}]"),
            ));
        }
        for (j, m) in d.static_mappings.iter().enumerate() {
            let f = format!("{field}.staticMappings[{j}]");
            let service = match (m.protocol, m.local_port, m.global_port) {
                (Some(p), Some(l), Some(g)) => format!(
                    " service {} {l} {g}",
                    match p {
                        crate::model::spec::L4Protocol::Tcp => "tcp",
                        crate::model::spec::L4Protocol::Udp => "udp",
                    }
                ),
                (None, None, None) => String::new(),
                _ => {
                    return Err(unsupported(
                        "a static NAT port translation without protocol, localPort and globalPort together".to_owned(),
                        f,
                    ));
                }
            };
            n += 1;
            let o = NatObject {
                name: format!("{base}-{n}"),
                host: m.inside_local.to_string(),
                nat: format!("({inside},{outside}) static {}{service}", m.inside_global),
                subnet: None,
            };
            if out.iter().any(|x| x.clashes(&o)) {
                return Err(unsupported(
                    format!(
                        "two static NAT entries publishing {}",
                        o.published().unwrap_or_default()
                    ),
                    f,
                ));
            }
            out.push(o);
        }
        for (j, o) in d.overloads.iter().enumerate() {
            let f = format!("{field}.overloads[{j}]");
            if let Some((what, at)) = crate::platforms::overload_problem(d, o, &f) {
                return Err(unsupported(what, at));
            }
            for src in &o.sources {
                let src = src.trunc();
                n += 1;
                let (host, subnet) = if src.prefix_len() == 32 {
                    (src.addr().to_string(), None)
                } else {
                    (
                        String::new(),
                        Some(format!("{} {}", src.addr(), mask(src.prefix_len()))),
                    )
                };
                out.push(NatObject {
                    name: format!("{base}-{n}"),
                    host,
                    nat: format!("({inside},{}) dynamic interface", o.interface),
                    subnet,
                });
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Device label: the `nameif` backends sit behind (default `inside`).
pub const INSIDE_LABEL: &str = "rampart.io/asa-inside-interface";

fn load_balancer(
    spec: &ServiceSpec,
    lb: &crate::model::spec::LoadBalancerSpec,
    device: &Device,
) -> Result<AsaConfig, CompileError> {
    let targets: Vec<&str> = lb
        .targets
        .devices
        .iter()
        .filter(|t| t.device == device.name)
        .map(|t| t.interface.as_str())
        .collect();
    let [outside] = targets.as_slice() else {
        return Err(unsupported(
            format!(
                "{} bindings of one service on one ASA (object NAT publishes on one interface)",
                targets.len()
            ),
            "spec.targets.devices".to_owned(),
        ));
    };
    let inside = device
        .labels
        .get(INSIDE_LABEL)
        .map_or("inside", String::as_str);
    let base = object_name("O", &spec.metadata.tenant, &spec.metadata.name);
    let mut out = AsaConfig::default();
    for (i, vs) in lb.virtual_services.iter().enumerate() {
        let field = format!("spec.virtualServices[{i}]");
        let [b] = vs.backends.as_slice() else {
            return Err(unsupported(
                format!(
                    "{} backends behind one virtual service (static NAT has one)",
                    vs.backends.len()
                ),
                format!("{field}.backends"),
            ));
        };
        if vs.health_check.is_some() {
            return Err(unsupported(
                "health checks".to_owned(),
                format!("{field}.healthCheck"),
            ));
        }
        if !(vs.address.is_ipv4() && b.address.is_ipv4()) {
            return Err(unsupported(
                "IPv6 addresses".to_owned(),
                format!("{field}.address"),
            ));
        }
        let proto = match vs.protocol {
            crate::model::spec::L4Protocol::Tcp => "tcp",
            crate::model::spec::L4Protocol::Udp => "udp",
        };
        let vs_name: String = vs
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() || c == '_' || c == '.' {
                    c
                } else {
                    '_'
                }
            })
            .take(30)
            .collect();
        out.nat_objects.push(NatObject {
            name: format!("{base}-{vs_name}"),
            subnet: None,
            host: b.address.to_string(),
            nat: format!(
                "({inside},{outside}) static {} service {proto} {} {}",
                vs.address,
                b.port.unwrap_or(vs.port),
                vs.port
            ),
        });
    }
    out.nat_objects.sort();
    Ok(out)
}

/// What `spec` puts on the ASA `device`.
///
/// # Errors
/// [`CompileError::Unsupported`] naming what the ASA renderer cannot express.
pub fn build(spec: &ServiceSpec, device: &Device) -> Result<AsaConfig, CompileError> {
    match &spec.body {
        ServiceBody::Firewall(fw) => {
            let mut c = firewall(spec, fw, device)?;
            c.nat_objects = firewall_nat(spec, fw, device)?;
            Ok(c)
        }
        ServiceBody::LoadBalancer(lb) => load_balancer(spec, lb, device),
        _ => Err(unsupported(
            format!("{} services", spec.kind()),
            "kind".to_owned(),
        )),
    }
}

/// The dry-run rendering: the configuration-mode lines for this service.
///
/// # Errors
/// As [`build`].
pub fn render(spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
    let c = build(spec, device)?;
    let mut lines = vec!["configure terminal".to_owned()];
    lines.extend(edit_lines(&AsaConfig::default(), &c));
    lines.push("end".to_owned());
    lines.push("write memory".to_owned());
    Ok(vec![Rendering {
        target: device.name.clone(),
        platform: PLATFORM.to_owned(),
        format: Format::Cli,
        content: lines.join("\n") + "\n",
    }])
}
