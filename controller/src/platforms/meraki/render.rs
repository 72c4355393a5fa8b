//! Meraki MX rendering (Dashboard API v1): what a service puts on one
//! appliance network, as the API's own JSON.
//!
//! - Firewall → ordered L3 rules: `egress`/`both` bindings go to the
//!   outbound `l3FirewallRules`, `ingress`/`both` to `inboundFirewallRules`.
//!   Meraki rules are network-wide, so the bound interface name is not used.
//!   Every rule's `comment` starts with the service's deterministic name
//!   (`RPM-<tenant>-<service>-<hash> #<seq>`): read-back and drift find
//!   Rampart's rules by it and leave every other rule alone. The API keeps
//!   its own default rule (allow any) last and does not let it be changed:
//!   a `defaultAction: deny` becomes an explicit final `deny Any` rule,
//!   network-wide (see `docs/drivers.md`).
//! - The vFirewall's `nat` section: a static mapping without ports → 1:1
//!   NAT (`oneToOneNatRules`, one uplink, all inbound allowed: the L3
//!   inbound rules filter), with ports → port forwarding (the uplink's own
//!   address is the public side), overloads → nothing to send: an MX always
//!   translates its LAN to the address of the uplink it uses (device label
//!   `rampart.io/meraki-uplink`, default `internet1`); an overload naming
//!   another interface is refused. Inside interfaces have no counterpart
//!   (the LAN is the MX's VLANs).
//! - LoadBalancer → port forwarding (one backend per virtual service: an
//!   MX forwards, it does not balance).
//! - Vpn → the network's AutoVPN settings: `mode` and `hubs` from the
//!   device labels `rampart.io/meraki-vpn-mode` (`hub`, default, or `spoke`)
//!   and `rampart.io/meraki-vpn-hubs` (comma-separated network ids), local
//!   subnets joined to the VPN. The remote side is whatever the hubs
//!   advertise; tunnels to non-Meraki peers are not expressible here.
//! - Router, SdWan: not expressible (an error naming the spec).

use serde::{Deserialize, Serialize};

use crate::{
    model::{
        device::Device,
        spec::{
            Action, Direction, FirewallRule, FirewallSpec, L4Protocol, LoadBalancerSpec, PortRange,
            Protocol, ServiceBody, ServiceSpec, VpnSpec,
        },
    },
    wire::http::{Call, render_calls},
};
use crate::{
    platforms::CompileError,
    wire::{Format, Rendering, naming::object_name},
};

/// Platform word.
pub const PLATFORM: &str = "meraki-mx";
/// Prefix of every rule comment / rule name Rampart owns.
pub const OWNED_PREFIX: &str = "RPM-";
/// Device label: the network id (`L_…`/`N_…`) or `name:<network name>`.
pub const NETWORK_LABEL: &str = "rampart.io/meraki-network";
/// Device label: AutoVPN mode.
pub const VPN_MODE_LABEL: &str = "rampart.io/meraki-vpn-mode";
/// Device label: hub network ids for spoke mode.
pub const VPN_HUBS_LABEL: &str = "rampart.io/meraki-vpn-hubs";

/// An L3 firewall rule, in the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct L3Rule {
    /// Ownership marker plus the operator's note.
    pub comment: String,
    /// `allow` or `deny`.
    pub policy: String,
    /// `tcp`, `udp`, `icmp`, `icmp6`, `any`.
    pub protocol: String,
    /// `Any` or comma-separated CIDRs.
    pub src_cidr: String,
    /// `Any`, a port, a range or a comma list.
    pub src_port: String,
    /// As `src_cidr`.
    pub dest_cidr: String,
    /// As `src_port`.
    pub dest_port: String,
    /// Log matches.
    pub syslog_enabled: bool,
}

/// A port forwarding rule, in the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct PortForward {
    /// Ownership marker.
    pub name: String,
    /// Backend address.
    pub lan_ip: String,
    /// `both`.
    pub uplink: String,
    /// Public port.
    pub public_port: String,
    /// Backend port.
    pub local_port: String,
    /// `["any"]`.
    pub allowed_ips: Vec<String>,
    /// `tcp` or `udp`.
    pub protocol: String,
}

/// One inbound allowance of a 1:1 NAT rule, in the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AllowedInbound {
    /// `tcp`, `udp`, `icmp-ping` or `any`.
    pub protocol: String,
    /// `["any"]` or ports/ranges.
    pub destination_ports: Vec<String>,
    /// `["any"]` or CIDRs.
    pub allowed_ips: Vec<String>,
}

/// A 1:1 NAT rule, in the API's shape.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct OneToOneNat {
    /// Ownership marker.
    pub name: String,
    /// The public address on the uplink.
    pub public_ip: String,
    /// The LAN host's address.
    pub lan_ip: String,
    /// `internet1`, `internet2` or `internet3`.
    pub uplink: String,
    /// What may come in (an MX 1:1 NAT admits nothing without it).
    pub allowed_inbound: Vec<AllowedInbound>,
}

/// A local subnet joined to AutoVPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpnSubnet {
    /// CIDR.
    pub local_subnet: String,
    /// Always true for Rampart subnets.
    pub use_vpn: bool,
}

/// A hub reference.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct VpnHub {
    /// Hub network id.
    pub hub_id: String,
    /// Default route through the hub.
    pub use_default_route: bool,
}

/// AutoVPN settings of the network.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SiteToSite {
    /// `hub` or `spoke`.
    pub mode: String,
    /// Hubs (spoke mode).
    pub hubs: Vec<VpnHub>,
    /// Subnets in the VPN.
    pub subnets: Vec<VpnSubnet>,
}

/// What services put on one Meraki network (one service's contribution, or
/// the merge of all of them).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct MerakiConfig {
    /// Outbound L3 rules (without the final default-deny).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub l3: Vec<L3Rule>,
    /// Inbound L3 rules.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inbound: Vec<L3Rule>,
    /// Network-wide default for outbound traffic: `Some("deny")` adds a
    /// final deny rule; `Some("allow")` keeps the API's default.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub l3_default: Option<String>,
    /// Same for inbound.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub inbound_default: Option<String>,
    /// Port forwarding.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub port_forwarding: Vec<PortForward>,
    /// 1:1 NAT.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub one_to_one_nat: Vec<OneToOneNat>,
    /// Uplinks whose port address translation a vFirewall's `overloads`
    /// asks for: an MX always translates its LAN to the uplink address, so
    /// this is recorded for the dry-run and sends nothing.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub inherent_pat: Vec<String>,
    /// AutoVPN.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub site_to_site: Option<SiteToSite>,
}

/// API resource paths (relative to `/api/v1`, `{networkId}` resolved by the driver).
pub mod paths {
    /// Outbound L3 rules.
    pub const L3: &str = "/networks/{networkId}/appliance/firewall/l3FirewallRules";
    /// Inbound L3 rules.
    pub const INBOUND: &str = "/networks/{networkId}/appliance/firewall/inboundFirewallRules";
    /// Port forwarding.
    pub const PORT_FORWARDING: &str =
        "/networks/{networkId}/appliance/firewall/portForwardingRules";
    /// 1:1 NAT.
    pub const ONE_TO_ONE_NAT: &str = "/networks/{networkId}/appliance/firewall/oneToOneNatRules";
    /// AutoVPN.
    pub const VPN: &str = "/networks/{networkId}/appliance/vpn/siteToSiteVpn";
}

/// The final deny rule Rampart adds for a deny default.
#[must_use]
pub fn default_deny_rule() -> L3Rule {
    L3Rule {
        comment: format!("{OWNED_PREFIX}default deny (Rampart)"),
        policy: "deny".to_owned(),
        protocol: "any".to_owned(),
        src_cidr: "Any".to_owned(),
        src_port: "Any".to_owned(),
        dest_cidr: "Any".to_owned(),
        dest_port: "Any".to_owned(),
        syslog_enabled: false,
    }
}

impl MerakiConfig {
    /// Outbound rules as sent (with the final deny when asked).
    #[must_use]
    pub fn l3_rules(&self) -> Vec<L3Rule> {
        with_default(&self.l3, self.l3_default.as_deref())
    }

    /// Inbound rules as sent.
    #[must_use]
    pub fn inbound_rules(&self) -> Vec<L3Rule> {
        with_default(&self.inbound, self.inbound_default.as_deref())
    }

    /// The calls that put this configuration on a network that holds no
    /// Rampart configuration (the dry-run form of a contribution).
    #[must_use]
    pub fn calls(&self) -> Vec<Call> {
        let prev = MerakiConfig::default();
        edit_calls(&prev, self)
    }
}

fn with_default(rules: &[L3Rule], default: Option<&str>) -> Vec<L3Rule> {
    let mut out = rules.to_vec();
    if default == Some("deny") {
        out.push(default_deny_rule());
    }
    out
}

/// The calls moving a network from `prev` to `next` (Rampart-owned parts
/// only): one `PUT` per resource that changes, carrying Rampart's complete
/// set for it. The driver keeps rules Rampart does not own.
#[must_use]
pub fn edit_calls(prev: &MerakiConfig, next: &MerakiConfig) -> Vec<Call> {
    let mut out = Vec::new();
    if prev.l3_rules() != next.l3_rules() {
        out.push(Call::new(
            "PUT",
            paths::L3,
            Some(serde_json::json!({"rules": json(&next.l3_rules())})),
        ));
    }
    if prev.inbound_rules() != next.inbound_rules() {
        out.push(Call::new(
            "PUT",
            paths::INBOUND,
            Some(serde_json::json!({"rules": json(&next.inbound_rules())})),
        ));
    }
    if prev.port_forwarding != next.port_forwarding {
        out.push(Call::new(
            "PUT",
            paths::PORT_FORWARDING,
            Some(serde_json::json!({"rules": json(&next.port_forwarding)})),
        ));
    }
    if prev.one_to_one_nat != next.one_to_one_nat {
        out.push(Call::new(
            "PUT",
            paths::ONE_TO_ONE_NAT,
            Some(serde_json::json!({"rules": json(&next.one_to_one_nat)})),
        ));
    }
    if prev.site_to_site != next.site_to_site {
        let body = next.site_to_site.as_ref().map_or_else(
            || serde_json::json!({"mode": "none", "hubs": [], "subnets": []}),
            json,
        );
        out.push(Call::new("PUT", paths::VPN, Some(body)));
    }
    out
}

fn json<T: Serialize>(v: &T) -> serde_json::Value {
    serde_json::to_value(v).unwrap_or_default()
}

fn unsupported(what: String, field: String) -> CompileError {
    CompileError::Unsupported {
        platform: PLATFORM.to_owned(),
        what,
        field,
    }
}

fn cidrs(list: &[ipnet::IpNet]) -> String {
    if list.is_empty() {
        "Any".to_owned()
    } else {
        list.iter()
            .map(|n| n.trunc().to_string())
            .collect::<Vec<_>>()
            .join(",")
    }
}

fn ports(list: &[PortRange]) -> String {
    if list.is_empty() {
        return "Any".to_owned();
    }
    list.iter()
        .map(|p| {
            if p.first == p.last {
                p.first.to_string()
            } else {
                format!("{}-{}", p.first, p.last)
            }
        })
        .collect::<Vec<_>>()
        .join(",")
}

fn l3_rule(marker: &str, r: &FirewallRule, field: &str) -> Result<L3Rule, CompileError> {
    if r.icmp_type.is_some() {
        return Err(unsupported(
            "ICMP type/code matches (L3 rules match the protocol only)".to_owned(),
            format!("{field}.icmpType"),
        ));
    }
    let protocol = match r.protocol {
        Protocol::Any => "any",
        Protocol::Tcp => "tcp",
        Protocol::Udp => "udp",
        Protocol::Icmp => "icmp",
        Protocol::Icmpv6 => "icmp6",
    };
    let mut comment = format!("{marker} #{}", r.sequence);
    if let Some(d) = &r.description {
        comment.push(' ');
        comment.push_str(d);
    }
    Ok(L3Rule {
        comment,
        policy: match r.action {
            Action::Permit => "allow",
            Action::Deny => "deny",
        }
        .to_owned(),
        protocol: protocol.to_owned(),
        src_cidr: cidrs(&r.sources),
        src_port: ports(&r.source_ports),
        dest_cidr: cidrs(&r.destinations),
        dest_port: ports(&r.destination_ports),
        syslog_enabled: r.log,
    })
}

fn firewall(
    spec: &ServiceSpec,
    fw: &FirewallSpec,
    device: &Device,
) -> Result<MerakiConfig, CompileError> {
    let marker = object_name("M", &spec.metadata.tenant, &spec.metadata.name);
    let mut rules = fw.rules.clone();
    rules.sort_by_key(|r| r.sequence);
    let mut built = Vec::new();
    for r in &rules {
        let idx = fw
            .rules
            .iter()
            .position(|x| x.sequence == r.sequence)
            .unwrap_or(0);
        built.push(l3_rule(&marker, r, &format!("spec.rules[{idx}]"))?);
    }
    let (mut outbound, mut inbound) = (false, false);
    for t in fw
        .targets
        .devices
        .iter()
        .filter(|t| t.device == device.name)
    {
        match t.direction {
            Direction::Egress => outbound = true,
            Direction::Ingress => inbound = true,
            Direction::Both => (outbound, inbound) = (true, true),
        }
    }
    let default = match fw.default_action {
        Action::Permit => "allow",
        Action::Deny => "deny",
    }
    .to_owned();
    let mut c = MerakiConfig::default();
    if outbound {
        c.l3.clone_from(&built);
        c.l3_default = Some(default.clone());
    }
    if inbound {
        c.inbound = built;
        c.inbound_default = Some(default);
    }
    Ok(c)
}

/// Device label: the uplink the MX sends its LAN traffic out of
/// (`internet1`, default, `internet2` or `internet3`): the one whose
/// address the MX's inherent PAT uses.
pub const UPLINK_LABEL: &str = "rampart.io/meraki-uplink";
/// Device label: the address of that uplink; when set, a port mapping's
/// `insideGlobal` must be it (port forwarding publishes on the uplink's
/// own address).
pub const UPLINK_IP_LABEL: &str = "rampart.io/meraki-uplink-ip";

const UPLINKS: [&str; 3] = ["internet1", "internet2", "internet3"];

/// The vFirewall's `nat` entries for the MX `device`: static mappings
/// without ports → 1:1 NAT, with ports → port forwarding, overloads →
/// the MX's own uplink PAT (checked, nothing sent).
fn firewall_nat(
    spec: &ServiceSpec,
    fw: &FirewallSpec,
    device: &Device,
    c: &mut MerakiConfig,
) -> Result<(), CompileError> {
    let Some(nat) = &fw.nat else {
        return Ok(());
    };
    let marker = object_name("M", &spec.metadata.tenant, &spec.metadata.name);
    let used = device
        .labels
        .get(UPLINK_LABEL)
        .map_or("internet1", String::as_str);
    if !UPLINKS.contains(&used) {
        return Err(unsupported(
            format!("uplink {used:?} (internet1, internet2 or internet3)"),
            format!("device {} label {UPLINK_LABEL}", device.name),
        ));
    }
    for (i, d) in nat
        .devices
        .iter()
        .enumerate()
        .filter(|(_, d)| d.device == device.name)
    {
        let field = format!("spec.nat.devices[{i}]");
        for (k, o) in d.outside_interfaces.iter().enumerate() {
            if !UPLINKS.contains(&o.as_str()) {
                return Err(unsupported(
                    format!(
                        "outside interface {o:?} (an MX translates on its uplinks: internet1, internet2, internet3)"
                    ),
                    format!("{field}.outsideInterfaces[{k}]"),
                ));
            }
        }
        for (j, m) in d.static_mappings.iter().enumerate() {
            let f = format!("{field}.staticMappings[{j}]");
            match (m.protocol, m.local_port, m.global_port) {
                (None, None, None) => {
                    let [uplink] = d.outside_interfaces.as_slice() else {
                        return Err(unsupported(
                            format!(
                                "1:1 NAT on {} uplinks (a 1:1 NAT rule names one)",
                                d.outside_interfaces.len()
                            ),
                            format!("{field}.outsideInterfaces"),
                        ));
                    };
                    let rule = OneToOneNat {
                        name: format!("{marker} nat#{j}"),
                        public_ip: m.inside_global.to_string(),
                        lan_ip: m.inside_local.to_string(),
                        uplink: uplink.clone(),
                        allowed_inbound: vec![AllowedInbound {
                            protocol: "any".to_owned(),
                            destination_ports: vec!["any".to_owned()],
                            allowed_ips: vec!["any".to_owned()],
                        }],
                    };
                    if c.one_to_one_nat
                        .iter()
                        .any(|r| r.public_ip == rule.public_ip)
                    {
                        return Err(unsupported(
                            format!("two 1:1 NAT rules for public IP {}", rule.public_ip),
                            f,
                        ));
                    }
                    c.one_to_one_nat.push(rule);
                }
                (Some(p), Some(l), Some(g)) => {
                    if let Some(ip) = device.labels.get(UPLINK_IP_LABEL)
                        && *ip != m.inside_global.to_string()
                    {
                        return Err(unsupported(
                            format!(
                                "port forwarding on {} (an MX forwards ports on its uplink address {ip})",
                                m.inside_global
                            ),
                            format!("{f}.insideGlobal"),
                        ));
                    }
                    let uplink = match d.outside_interfaces.as_slice() {
                        [one] if one != "internet3" => one.clone(),
                        [a, b]
                            if a != b
                                && [a, b]
                                    .iter()
                                    .all(|x| *x == "internet1" || *x == "internet2") =>
                        {
                            "both".to_owned()
                        }
                        _ => {
                            return Err(unsupported(
                                "port forwarding on these uplinks (internet1, internet2, or both)"
                                    .to_owned(),
                                format!("{field}.outsideInterfaces"),
                            ));
                        }
                    };
                    let protocol = match p {
                        L4Protocol::Tcp => "tcp",
                        L4Protocol::Udp => "udp",
                    }
                    .to_owned();
                    if c.port_forwarding
                        .iter()
                        .any(|r| r.protocol == protocol && r.public_port == g.to_string())
                    {
                        return Err(unsupported(
                            format!("two port forwards of {protocol} port {g}"),
                            f,
                        ));
                    }
                    c.port_forwarding.push(PortForward {
                        name: format!("{marker} nat#{j}"),
                        lan_ip: m.inside_local.to_string(),
                        uplink,
                        public_port: g.to_string(),
                        local_port: l.to_string(),
                        allowed_ips: vec!["any".to_owned()],
                        protocol,
                    });
                }
                _ => {
                    return Err(unsupported(
                        "a static NAT port translation without protocol, localPort and globalPort together".to_owned(),
                        f,
                    ));
                }
            }
        }
        for (j, o) in d.overloads.iter().enumerate() {
            if o.interface != used || !d.outside_interfaces.contains(&o.interface) {
                return Err(unsupported(
                    format!(
                        "overload to {:?}: an MX translates its LAN to the address of the uplink it uses ({used}, label {UPLINK_LABEL}), which must also be an outsideInterface",
                        o.interface
                    ),
                    format!("{field}.overloads[{j}].interface"),
                ));
            }
            if !c.inherent_pat.contains(&o.interface) {
                c.inherent_pat.push(o.interface.clone());
            }
        }
    }
    Ok(())
}

fn load_balancer(spec: &ServiceSpec, lb: &LoadBalancerSpec) -> Result<MerakiConfig, CompileError> {
    let marker = object_name("M", &spec.metadata.tenant, &spec.metadata.name);
    let mut c = MerakiConfig::default();
    for (i, vs) in lb.virtual_services.iter().enumerate() {
        let [backend] = vs.backends.as_slice() else {
            return Err(unsupported(
                format!(
                    "{} backends behind one virtual service (port forwarding has exactly one)",
                    vs.backends.len()
                ),
                format!("spec.virtualServices[{i}].backends"),
            ));
        };
        if vs.health_check.is_some() {
            return Err(unsupported(
                "health checks".to_owned(),
                format!("spec.virtualServices[{i}].healthCheck"),
            ));
        }
        c.port_forwarding.push(PortForward {
            name: format!("{marker} {}", vs.name),
            lan_ip: backend.address.to_string(),
            uplink: "both".to_owned(),
            public_port: vs.port.to_string(),
            local_port: backend.port.unwrap_or(vs.port).to_string(),
            allowed_ips: vec!["any".to_owned()],
            protocol: match vs.protocol {
                L4Protocol::Tcp => "tcp",
                L4Protocol::Udp => "udp",
            }
            .to_owned(),
        });
    }
    Ok(c)
}

fn vpn(vpn: &VpnSpec, device: &Device) -> Result<MerakiConfig, CompileError> {
    let mode = device
        .labels
        .get(VPN_MODE_LABEL)
        .map_or("hub", String::as_str);
    if !matches!(mode, "hub" | "spoke") {
        return Err(unsupported(
            format!("AutoVPN mode {mode:?} (hub or spoke)"),
            format!("device {} label {VPN_MODE_LABEL}", device.name),
        ));
    }
    let hubs: Vec<VpnHub> = device
        .labels
        .get(VPN_HUBS_LABEL)
        .map(|h| {
            h.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(|id| VpnHub {
                    hub_id: id.to_owned(),
                    use_default_route: false,
                })
                .collect()
        })
        .unwrap_or_default();
    if mode == "spoke" && hubs.is_empty() {
        return Err(unsupported(
            "spoke mode without hubs".to_owned(),
            format!("device {} label {VPN_HUBS_LABEL}", device.name),
        ));
    }
    let mut subnets: Vec<VpnSubnet> = Vec::new();
    for (i, t) in vpn.tunnels.iter().enumerate() {
        if t.device != device.name {
            continue;
        }
        for (j, s) in t.local_subnets.iter().enumerate() {
            if s.trunc() != *s {
                return Err(unsupported(
                    format!("subnet {s} with host bits set"),
                    format!("spec.tunnels[{i}].localSubnets[{j}]"),
                ));
            }
            let sub = VpnSubnet {
                local_subnet: s.to_string(),
                use_vpn: true,
            };
            if !subnets.contains(&sub) {
                subnets.push(sub);
            }
        }
    }
    Ok(MerakiConfig {
        site_to_site: Some(SiteToSite {
            mode: mode.to_owned(),
            hubs: if mode == "spoke" { hubs } else { Vec::new() },
            subnets,
        }),
        ..MerakiConfig::default()
    })
}

/// What `spec` puts on the Meraki network behind `device`.
///
/// # Errors
/// [`CompileError::Unsupported`] naming the field Meraki cannot express.
pub fn build(spec: &ServiceSpec, device: &Device) -> Result<MerakiConfig, CompileError> {
    match &spec.body {
        ServiceBody::Firewall(fw) => {
            let mut c = firewall(spec, fw, device)?;
            firewall_nat(spec, fw, device, &mut c)?;
            Ok(c)
        }
        ServiceBody::LoadBalancer(lb) => load_balancer(spec, lb),
        ServiceBody::Vpn(v) => vpn(v, device),
        ServiceBody::Router(_) | ServiceBody::SdWan(_) => Err(unsupported(
            format!("{} services", spec.kind()),
            "kind".to_owned(),
        )),
    }
}

/// The dry-run rendering: the Dashboard API calls for this service alone.
///
/// # Errors
/// As [`build`].
pub fn render(spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, CompileError> {
    let c = build(spec, device)?;
    let network = device
        .labels
        .get(NETWORK_LABEL)
        .map_or("<discovered>", String::as_str);
    let mut notes = vec![
        format!("Meraki Dashboard API v1, network {network}"),
        "rules whose comment/name does not start with RPM- are kept (after Rampart's rules, before its default deny)"
            .to_owned(),
    ];
    for uplink in &c.inherent_pat {
        notes.push(format!(
            "overload (PAT) to {uplink}: inherent, the MX translates its LAN to the {uplink} address; no call"
        ));
    }
    Ok(vec![Rendering {
        target: device.name.clone(),
        platform: PLATFORM.to_owned(),
        format: Format::Http,
        content: render_calls(&notes, &c.calls()),
    }])
}
