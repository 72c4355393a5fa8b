//! IOS-XE rendering (Cisco-IOS-XE-native YANG): NETCONF XML and RESTCONF JSON.
//!
//! A spec is first turned into [`IosXeConfig`], a typed picture of the
//! `/native` subtrees the service owns (ACLs, interface settings, routes,
//! BGP). That value is what the transaction engine diffs; it prints itself as
//! a NETCONF `<config>` and as RFC 7951 JSON through one shared data tree
//! ([`tree::Node`]), so the two encodings always carry the same content.
//!
//! Firewall mapping:
//! - every rule becomes one or more ACEs in an extended IPv4 ACL
//!   (`/native/ip/access-list/extended`) and/or an IPv6 ACL
//!   (`/native/ipv6/access-list/named-acl`), split by address family: a rule
//!   whose prefixes are all IPv4 lands only in the IPv4 ACL, `icmp` only in
//!   IPv4, `icmpv6` only in IPv6, a rule without prefixes in both;
//! - a rule with several prefixes or port ranges expands to the cross
//!   product; ACE sequence numbers are `rule.sequence * 1000 + k`
//!   (`k = 0` holds the rule's description as a remark, `k = 1..=999` the
//!   ACEs), so inserting a rule never renumbers the others;
//! - the default action is an explicit last ACE at sequence
//!   [`DEFAULT_ACE_SEQUENCE`]; for IPv6 with a default deny, neighbour
//!   discovery (`nd-na`, `nd-ns`) is permitted just before it, because an
//!   explicit `deny ipv6 any any` overrides IOS-XE's implicit ND permits;
//! - the IPv6 ACL is rendered when any rule lands in it or the default
//!   action is deny (so a default-deny firewall also closes IPv6);
//! - ACL names follow [`naming::object_name`]; each ACL is sent with
//!   `nc:operation="replace"` because the service owns it outright;
//! - bindings: `ingress` = `in`, `egress` = `out`, `both` = both, on
//!   `/native/interface/<type>[name]/ip/access-group` and
//!   `.../ipv6/traffic-filter`.
//! - object-groups: when one side of a rule holds several IPv4 addresses
//!   (hosts or prefixes), they become an `object-group network RPGN-<hash>`
//!   referenced by the ACE (`object-group` / `dst-object-group`), so the
//!   rule needs one ACE per remaining combination instead of one per
//!   address; the name hashes the members, so services naming the same set
//!   share one group (see [`NetworkGroup`]). IPv6 sides and port sets stay
//!   expanded: `object-group v6-network` is not in the 16.9.3 model, and
//!   `object-group service` has different shapes in 16.9.3 and 17.12.1, so
//!   one rendering could not validate against both;
//!
//! NAT mapping (the firewall's optional `nat` section, `Cisco-IOS-XE-nat`):
//! - `insideInterfaces` / `outsideInterfaces` set `ip nat inside|outside` on
//!   `/native/interface/<type>[name]/ip/nat`;
//! - a static mapping becomes `ip nat inside source static [tcp|udp] LOCAL
//!   [PORT] GLOBAL [PORT]` (`/native/ip/nat/inside/source/static/
//!   nat-static-transport-list`, keyed by the address pair, which is why
//!   two port translations of one pair cannot coexist in this model);
//! - an overload becomes an extended ACL `RPN<k>-…` (`permit ip SOURCE any`
//!   per source, `k` counting the device's overloads by interface name) and
//!   `ip nat inside source list RPN<k>-… interface OUTSIDE overload`
//!   (`/native/ip/nat/inside/source/list[id]`), sent with
//!   `nc:operation="replace"` like the service's other ACLs.

use std::{
    collections::BTreeMap,
    net::{IpAddr, Ipv4Addr},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

use super::tree;
use crate::model::{
    device::Device,
    spec::{
        Action, Direction, FirewallRule, FirewallSpec, L4Protocol, NatDevice, PortRange, Protocol,
        RouterDevice, ServiceBody, ServiceSpec,
    },
};
use crate::wire::{Format, Rendering};

use tree::{EditOp, Module, Node};

/// Sequence number of the final ACE that carries the default action: the
/// highest sequence the IPv4 extended-ACL model allows.
pub const DEFAULT_ACE_SEQUENCE: u64 = 2_147_483_647;

/// ACE slots per rule (`rule.sequence * ACE_SLOTS + k`).
pub const ACE_SLOTS: u64 = 1000;

/// Largest rule sequence number that still fits below [`DEFAULT_ACE_SEQUENCE`]
/// (IOS-XE's IPv6 ACL range is larger; the IPv4 one binds).
pub const MAX_RULE_SEQUENCE: u32 = 2_147_482;

/// Why a spec cannot be rendered for IOS-XE.
#[derive(Debug, thiserror::Error)]
pub enum IosXeError {
    /// The service kind has no IOS-XE rendering.
    #[error("IOS-XE cannot express {kind} services (at {field})")]
    UnsupportedKind {
        /// The service kind.
        kind: String,
        /// Where in the spec.
        field: String,
    },
    /// A rule's sequence number leaves no room for its ACEs below the
    /// default ACE.
    #[error("rule sequence {sequence} at {field} exceeds the IOS-XE maximum {max}")]
    SequenceOutOfRange {
        /// The sequence number.
        sequence: u32,
        /// Where in the spec.
        field: String,
        /// Largest usable value.
        max: u32,
    },
    /// A rule expands to more ACEs than its sequence slot holds.
    #[error("rule at {field} expands to {count} ACEs; at most {max} fit one rule")]
    TooManyEntries {
        /// Where in the spec.
        field: String,
        /// How many ACEs the rule would need.
        count: usize,
        /// Capacity of one rule's slot.
        max: u64,
    },
    /// An interface name IOS-XE's native model has no list for.
    #[error("interface {name:?} at {field} is not an IOS-XE interface name ({reason})")]
    BadInterface {
        /// The name as written.
        name: String,
        /// Where in the spec.
        field: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Something valid in the service model that IOS-XE cannot express.
    #[error("IOS-XE cannot express {what} (at {field})")]
    Unsupported {
        /// What.
        what: String,
        /// Where in the spec.
        field: String,
    },
}

// ===== configuration types =====

/// permit/deny on the device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AceAction {
    /// `permit`.
    Permit,
    /// `deny`.
    Deny,
}

impl AceAction {
    fn as_str(self) -> &'static str {
        match self {
            AceAction::Permit => "permit",
            AceAction::Deny => "deny",
        }
    }
}

impl From<Action> for AceAction {
    fn from(a: Action) -> Self {
        match a {
            Action::Permit => AceAction::Permit,
            Action::Deny => AceAction::Deny,
        }
    }
}

/// An address match of an ACE.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum AddrMatch {
    /// `any`.
    Any,
    /// One address (`host`).
    Host(IpAddr),
    /// A prefix (IPv4: address + wildcard; IPv6: `addr/len`).
    Prefix(IpNet),
    /// `object-group NAME`: an IPv4 network object-group (see
    /// [`NetworkGroup`]).
    Group(String),
}

/// An `object-group network` holding the IPv4 hosts and prefixes of one
/// side of a rule, so the rule needs one ACE per remaining combination
/// instead of one per address.
///
/// The name is derived from the members alone (`RPGN-` and 16 hex digits of
/// FNV-1a-64 over their text), so two services naming the same set produce
/// the same group: the transaction merge holds it once and keeps it while any
/// service still produces it (reference counting by contribution).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NetworkGroup {
    /// Device-side name.
    pub name: String,
    /// Hosts and prefixes (never `Any` or another group), sorted.
    pub members: Vec<AddrMatch>,
}

/// Fewest addresses on one side of a rule that are worth an object-group.
pub const MIN_GROUP_MEMBERS: usize = 2;

impl NetworkGroup {
    /// The group holding `members`, or `None` when they are too few or
    /// not all IPv4 hosts/prefixes.
    fn of(members: &[AddrMatch]) -> Option<NetworkGroup> {
        if members.len() < MIN_GROUP_MEMBERS
            || !members.iter().all(|m| match m {
                AddrMatch::Host(a) => a.is_ipv4(),
                AddrMatch::Prefix(p) => matches!(p, IpNet::V4(_)),
                _ => false,
            })
        {
            return None;
        }
        let mut members = members.to_vec();
        members.sort();
        members.dedup();
        let mut h: u64 = 0xcbf2_9ce4_8422_2325;
        for m in &members {
            let text = match m {
                AddrMatch::Host(a) => a.to_string(),
                AddrMatch::Prefix(p) => p.to_string(),
                _ => String::new(),
            };
            for b in text.bytes().chain(std::iter::once(b' ')) {
                h ^= u64::from(b);
                h = h.wrapping_mul(0x0000_0100_0000_01b3);
            }
        }
        Some(NetworkGroup {
            name: format!("RPGN-{h:016x}"),
            members,
        })
    }
}

impl AddrMatch {
    fn from_net(net: IpNet) -> AddrMatch {
        let net = net.trunc();
        if net.prefix_len() == 0 {
            AddrMatch::Any
        } else if net.prefix_len() == net.max_prefix_len() {
            AddrMatch::Host(net.addr())
        } else {
            AddrMatch::Prefix(net)
        }
    }
}

/// A port match of an ACE.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PortMatch {
    /// No port condition.
    Any,
    /// `eq N`.
    Eq(u16),
    /// `range A B`.
    Range(u16, u16),
}

impl PortMatch {
    fn from_range(r: PortRange) -> PortMatch {
        if r.first == 0 && r.last == u16::MAX {
            PortMatch::Any
        } else if r.first == r.last {
            PortMatch::Eq(r.first)
        } else {
            PortMatch::Range(r.first, r.last)
        }
    }
}

/// One access control entry.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ace {
    /// permit/deny.
    pub action: AceAction,
    /// Protocol keyword as the model spells it (`ip`, `ipv6`, `tcp`, ...).
    pub protocol: String,
    /// Source address.
    pub source: AddrMatch,
    /// Source port.
    pub source_port: PortMatch,
    /// Destination address.
    pub destination: AddrMatch,
    /// Destination port.
    pub destination_port: PortMatch,
    /// ICMP type and optional code.
    pub icmp: Option<(u8, Option<u8>)>,
    /// Named ICMP message (used for the IPv6 neighbour-discovery permits).
    pub icmp_named: Option<String>,
    /// `log`.
    pub log: bool,
}

/// An ACL line: a remark or an ACE.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AclLine {
    /// `remark TEXT`.
    Remark(String),
    /// An ACE.
    Ace(Ace),
}

/// A named ACL owned by a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Acl {
    /// Device-side name (see [`crate::wire::naming`]).
    pub name: String,
    /// Lines by sequence number.
    pub lines: BTreeMap<u64, AclLine>,
}

/// IOS-XE interface list and key, parsed from a name such as
/// `GigabitEthernet0/0/1` or `Loopback0`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct InterfaceId {
    /// The `/native/interface` list (`GigabitEthernet`).
    pub kind: String,
    /// The list key (`0/0/1`).
    pub number: String,
    /// Whether the key is an integer in the model (Loopback, Vlan, ...).
    pub numeric: bool,
}

/// Interface lists with string keys.
const STRING_KEYED: &[&str] = &[
    "GigabitEthernet",
    "TenGigabitEthernet",
    "FastEthernet",
    "TwoGigabitEthernet",
    "FiveGigabitEthernet",
    "TwentyFiveGigE",
    "FortyGigabitEthernet",
    "HundredGigE",
    "Ethernet",
];

/// Interface lists with integer keys.
const INT_KEYED: &[&str] = &["Loopback", "Port-channel", "Tunnel", "Vlan"];

impl InterfaceId {
    /// Parses an interface name; `field` names its place in the spec.
    ///
    /// # Errors
    /// [`IosXeError::BadInterface`] for unknown types or malformed numbers.
    pub fn parse(name: &str, field: &str) -> Result<InterfaceId, IosXeError> {
        let bad = |reason: &str| IosXeError::BadInterface {
            name: name.to_owned(),
            field: field.to_owned(),
            reason: reason.to_owned(),
        };
        let split = name
            .find(|c: char| c.is_ascii_digit())
            .ok_or_else(|| bad("no interface number"))?;
        let (kind, number) = name.split_at(split);
        if STRING_KEYED.contains(&kind) {
            if !number
                .split(['/', '.', ':'])
                .all(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
            {
                return Err(bad("number must look like 1, 0/0/1 or 0/1.100"));
            }
            Ok(InterfaceId {
                kind: kind.to_owned(),
                number: number.to_owned(),
                numeric: false,
            })
        } else if INT_KEYED.contains(&kind) {
            let max = if kind == "Vlan" {
                u64::from(u16::MAX)
            } else {
                u64::from(u32::MAX)
            };
            match number.parse::<u64>() {
                Ok(n) if n <= max => Ok(InterfaceId {
                    kind: kind.to_owned(),
                    number: n.to_string(),
                    numeric: true,
                }),
                _ => Err(bad(&format!("{kind} numbers are integers up to {max}"))),
            }
        } else {
            Err(bad(&format!(
                "unknown interface type {kind:?}; known: {}",
                STRING_KEYED
                    .iter()
                    .chain(INT_KEYED)
                    .copied()
                    .collect::<Vec<_>>()
                    .join(", ")
            )))
        }
    }

    /// The list key leaf (`<name>`) of the interface entry, typed as the
    /// model types it (integer for Loopback/Vlan/..., string otherwise).
    #[must_use]
    pub fn key_node(&self) -> Node {
        match self.number.parse::<u32>() {
            Ok(n) if self.numeric => Node::int("name", n),
            _ => Node::leaf("name", self.number.clone()),
        }
    }
}

/// ACLs bound to one interface, per family and direction.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct AclBindings {
    /// IPv4 ACL applied inbound.
    pub ipv4_in: Option<String>,
    /// IPv4 ACL applied outbound.
    pub ipv4_out: Option<String>,
    /// IPv6 ACL applied inbound.
    pub ipv6_in: Option<String>,
    /// IPv6 ACL applied outbound.
    pub ipv6_out: Option<String>,
}

/// Interface settings the service owns.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct InterfaceConfig {
    /// `description`.
    pub description: Option<String>,
    /// IPv4 addresses; the first is primary, the rest secondary.
    pub ipv4: Vec<IpNet>,
    /// IPv6 addresses.
    pub ipv6: Vec<IpNet>,
    /// `Some(true)` = `shutdown`, `Some(false)` = `no shutdown`, `None` =
    /// leave alone.
    pub shutdown: Option<bool>,
    /// ACL bindings.
    pub acls: AclBindings,
    /// `ip nat inside` / `ip nat outside`.
    #[serde(default)]
    pub nat: Option<NatSide>,
}

/// Which side of address translation an interface faces.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NatSide {
    /// `ip nat inside`.
    Inside,
    /// `ip nat outside`.
    Outside,
}

impl NatSide {
    /// The leaf name in `Cisco-IOS-XE-nat` (and the CLI keyword).
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            NatSide::Inside => "inside",
            NatSide::Outside => "outside",
        }
    }
}

/// `ip nat inside source static [tcp|udp] LOCAL [PORT] GLOBAL [PORT]`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StaticNatConfig {
    /// Inside local address (first list key).
    pub local: Ipv4Addr,
    /// Inside global address (second list key).
    pub global: Ipv4Addr,
    /// `(protocol, local port, global port)` of a port translation.
    pub port: Option<(String, u16, u16)>,
}

/// `ip nat inside source list ACL interface ITF overload`.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct NatOverloadConfig {
    /// Name of the extended ACL selecting the inside sources (held in
    /// [`IosXeConfig::ipv4_acls`]).
    pub acl: String,
    /// Outside interface whose address is shared.
    pub interface: String,
}

/// One static route (`ip route` / `ipv6 route`).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct StaticRouteConfig {
    /// Destination (network address).
    pub prefix: IpNet,
    /// Next hop.
    pub next_hop: Option<IpAddr>,
    /// Outgoing interface.
    pub interface: Option<String>,
    /// Administrative distance.
    pub distance: Option<u8>,
}

/// A BGP neighbor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpNeighborConfig {
    /// Peer address.
    pub address: IpAddr,
    /// Peer AS.
    pub remote_as: u32,
    /// Description.
    pub description: Option<String>,
}

/// `router bgp`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpConfig {
    /// Local AS.
    pub asn: u32,
    /// Router id.
    pub router_id: Option<Ipv4Addr>,
    /// Neighbors.
    pub neighbors: Vec<BgpNeighborConfig>,
    /// Networks announced (IPv4 unicast and IPv6 unicast).
    pub networks: Vec<IpNet>,
}

/// What a service configures on one IOS-XE device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IosXeConfig {
    /// Extended IPv4 ACLs.
    pub ipv4_acls: Vec<Acl>,
    /// IPv6 ACLs.
    pub ipv6_acls: Vec<Acl>,
    /// Interface settings by interface.
    pub interfaces: BTreeMap<InterfaceId, InterfaceConfig>,
    /// Static routes.
    pub static_routes: Vec<StaticRouteConfig>,
    /// BGP.
    pub bgp: Option<BgpConfig>,
    /// Static NAT entries, sorted.
    #[serde(default)]
    pub nat_static: Vec<StaticNatConfig>,
    /// NAT overloads (PAT), sorted.
    #[serde(default)]
    pub nat_overloads: Vec<NatOverloadConfig>,
    /// IPv4 network object-groups the ACLs reference, sorted by name.
    #[serde(default)]
    pub network_groups: Vec<NetworkGroup>,
}

// ===== global functions =====

/// Renders the parts of `spec` that target `device`: one NETCONF XML and one
/// RESTCONF JSON rendering of the same [`IosXeConfig`].
///
/// # Errors
/// [`IosXeError`] when the spec cannot be expressed on IOS-XE.
pub fn render(spec: &ServiceSpec, device: &Device) -> Result<Vec<Rendering>, IosXeError> {
    let config = build(spec, device)?;
    Ok(vec![
        Rendering {
            target: device.name.clone(),
            platform: device.platform.to_string(),
            format: Format::NetconfXml,
            content: config.to_netconf_xml(),
        },
        Rendering {
            target: device.name.clone(),
            platform: device.platform.to_string(),
            format: Format::RestconfJson,
            content: config.to_restconf_json(),
        },
    ])
}

/// Builds the structured configuration `spec` puts on `device`.
///
/// # Errors
/// [`IosXeError`] when the spec cannot be expressed on IOS-XE.
pub fn build(spec: &ServiceSpec, device: &Device) -> Result<IosXeConfig, IosXeError> {
    match &spec.body {
        ServiceBody::Firewall(fw) => build_firewall(spec, fw, &device.name),
        ServiceBody::Router(r) => {
            let mut config = IosXeConfig::default();
            for (i, d) in r
                .devices
                .iter()
                .enumerate()
                .filter(|(_, d)| d.device == device.name)
            {
                build_router_device(&mut config, d, &format!("spec.devices[{i}]"))?;
            }
            Ok(config)
        }
        other => Err(IosXeError::UnsupportedKind {
            kind: match other {
                ServiceBody::LoadBalancer(_) => "LoadBalancer",
                ServiceBody::Vpn(_) => "Vpn",
                _ => "SdWan",
            }
            .to_owned(),
            field: "kind".to_owned(),
        }),
    }
}

// ===== firewall =====

#[derive(Clone, Copy, PartialEq, Eq)]
enum Family {
    V4,
    V6,
}

impl Family {
    fn matches(self, net: &IpNet) -> bool {
        matches!(
            (self, net),
            (Family::V4, IpNet::V4(_)) | (Family::V6, IpNet::V6(_))
        )
    }
}

fn build_firewall(
    spec: &ServiceSpec,
    fw: &FirewallSpec,
    device: &str,
) -> Result<IosXeConfig, IosXeError> {
    let tenant = &spec.metadata.tenant;
    let service = &spec.metadata.name;
    let mut v4 = Acl {
        name: crate::wire::naming::object_name("4", tenant, service),
        lines: BTreeMap::new(),
    };
    let mut v6 = Acl {
        name: crate::wire::naming::object_name("6", tenant, service),
        lines: BTreeMap::new(),
    };
    let mut v6_used = false;
    let mut groups: BTreeMap<String, NetworkGroup> = BTreeMap::new();

    let mut rules: Vec<(usize, &FirewallRule)> = fw.rules.iter().enumerate().collect();
    rules.sort_by_key(|(_, r)| r.sequence);
    for (i, rule) in rules {
        let field = format!("spec.rules[{i}]");
        if rule.sequence > MAX_RULE_SEQUENCE {
            return Err(IosXeError::SequenceOutOfRange {
                sequence: rule.sequence,
                field: format!("{field}.sequence"),
                max: MAX_RULE_SEQUENCE,
            });
        }
        let base = u64::from(rule.sequence) * ACE_SLOTS;
        for (family, acl) in [(Family::V4, &mut v4), (Family::V6, &mut v6)] {
            let aces = expand_rule(rule, family, &mut groups);
            if aces.is_empty() {
                continue;
            }
            if aces.len() as u64 >= ACE_SLOTS {
                return Err(IosXeError::TooManyEntries {
                    field,
                    count: aces.len(),
                    max: ACE_SLOTS - 1,
                });
            }
            if family == Family::V6 {
                v6_used = true;
            }
            if let Some(remark) = rule.description.as_deref().and_then(remark_text) {
                acl.lines.insert(base, AclLine::Remark(remark));
            }
            for (k, ace) in (1..).zip(aces) {
                acl.lines.insert(base + k, AclLine::Ace(ace));
            }
        }
    }

    let default = AceAction::from(fw.default_action);
    v4.lines
        .insert(DEFAULT_ACE_SEQUENCE, AclLine::Ace(any_ace(default, "ip")));
    let render_v6 = v6_used || default == AceAction::Deny;
    if render_v6 {
        if default == AceAction::Deny {
            for (seq, msg) in [
                (DEFAULT_ACE_SEQUENCE - 2, "nd-na"),
                (DEFAULT_ACE_SEQUENCE - 1, "nd-ns"),
            ] {
                let mut ace = any_ace(AceAction::Permit, "icmp");
                ace.icmp_named = Some(msg.to_owned());
                v6.lines.insert(seq, AclLine::Ace(ace));
            }
        }
        v6.lines
            .insert(DEFAULT_ACE_SEQUENCE, AclLine::Ace(any_ace(default, "ipv6")));
    }

    let mut config = IosXeConfig {
        network_groups: groups.into_values().collect(),
        ..IosXeConfig::default()
    };
    if let Some(nat) = &fw.nat {
        for (i, d) in nat
            .devices
            .iter()
            .enumerate()
            .filter(|(_, d)| d.device == device)
        {
            build_nat_device(&mut config, spec, d, &format!("spec.nat.devices[{i}]"))?;
        }
    }
    for (i, target) in fw
        .targets
        .devices
        .iter()
        .enumerate()
        .filter(|(_, t)| t.device == device)
    {
        let id = InterfaceId::parse(
            &target.interface,
            &format!("spec.targets.devices[{i}].interface"),
        )?;
        let acls = &mut config.interfaces.entry(id).or_default().acls;
        let (inbound, outbound) = match target.direction {
            Direction::Ingress => (true, false),
            Direction::Egress => (false, true),
            Direction::Both => (true, true),
        };
        if inbound {
            acls.ipv4_in = Some(v4.name.clone());
            acls.ipv6_in = render_v6.then(|| v6.name.clone());
        }
        if outbound {
            acls.ipv4_out = Some(v4.name.clone());
            acls.ipv6_out = render_v6.then(|| v6.name.clone());
        }
    }
    config.ipv4_acls.push(v4);
    if render_v6 {
        config.ipv6_acls.push(v6);
    }
    Ok(config)
}

/// Interface lists `Cisco-IOS-XE-nat` augments with `ip nat inside|outside`
/// (16.9.3 and 17.12.1 alike).
const NAT_CAPABLE: &[&str] = &[
    "FastEthernet",
    "GigabitEthernet",
    "TenGigabitEthernet",
    "FiveGigabitEthernet",
    "TwentyFiveGigE",
    "TwoGigabitEthernet",
    "FortyGigabitEthernet",
    "HundredGigE",
    "Port-channel",
    "Loopback",
    "Vlan",
];

fn build_nat_device(
    config: &mut IosXeConfig,
    spec: &ServiceSpec,
    d: &NatDevice,
    field: &str,
) -> Result<(), IosXeError> {
    for (list, side, user) in [
        (&d.inside_interfaces, NatSide::Inside, "insideInterfaces"),
        (&d.outside_interfaces, NatSide::Outside, "outsideInterfaces"),
    ] {
        for (i, name) in list.iter().enumerate() {
            let f = format!("{field}.{user}[{i}]");
            let id = InterfaceId::parse(name, &f)?;
            if !NAT_CAPABLE.contains(&id.kind.as_str()) {
                return Err(IosXeError::Unsupported {
                    what: format!("ip nat {} on a {} interface", side.as_str(), id.kind),
                    field: f,
                });
            }
            let entry = config.interfaces.entry(id).or_default();
            if entry.nat.is_some_and(|s| s != side) {
                return Err(IosXeError::Unsupported {
                    what: format!("{name} as both NAT inside and outside"),
                    field: f,
                });
            }
            entry.nat = Some(side);
        }
    }
    for (i, m) in d.static_mappings.iter().enumerate() {
        let f = format!("{field}.staticMappings[{i}]");
        let port = match (m.protocol, m.local_port, m.global_port) {
            (Some(p), Some(l), Some(g)) => Some((
                match p {
                    L4Protocol::Tcp => "tcp",
                    L4Protocol::Udp => "udp",
                }
                .to_owned(),
                l,
                g,
            )),
            (None, None, None) => None,
            _ => {
                return Err(IosXeError::Unsupported {
                    what: "a static NAT port translation without protocol, localPort and globalPort together".to_owned(),
                    field: f,
                });
            }
        };
        let entry = StaticNatConfig {
            local: m.inside_local,
            global: m.inside_global,
            port,
        };
        if let Some(other) = config
            .nat_static
            .iter()
            .find(|e| e.local == entry.local && e.global == entry.global)
        {
            if *other == entry {
                continue;
            }
            return Err(IosXeError::Unsupported {
                what: format!(
                    "two static NAT entries for {} <-> {} (the Cisco-IOS-XE-nat model keys static entries by the address pair)",
                    entry.local, entry.global
                ),
                field: f,
            });
        }
        config.nat_static.push(entry);
    }
    config.nat_static.sort();
    let mut overloads: Vec<(usize, &crate::model::spec::NatOverload)> =
        d.overloads.iter().enumerate().collect();
    overloads.sort_by(|a, b| a.1.interface.cmp(&b.1.interface));
    for (k, (i, o)) in (1u32..).zip(overloads) {
        let f = format!("{field}.overloads[{i}]");
        let id = InterfaceId::parse(&o.interface, &format!("{f}.interface"))?;
        if config.interfaces.get(&id).and_then(|c| c.nat) != Some(NatSide::Outside) {
            return Err(IosXeError::Unsupported {
                what: format!(
                    "overload to {}, which is not an outsideInterface",
                    o.interface
                ),
                field: format!("{f}.interface"),
            });
        }
        if o.sources.is_empty() {
            return Err(IosXeError::Unsupported {
                what: "an overload without sources".to_owned(),
                field: format!("{f}.sources"),
            });
        }
        let mut acl = Acl {
            name: crate::wire::naming::object_name(
                &format!("N{k}"),
                &spec.metadata.tenant,
                &spec.metadata.name,
            ),
            lines: BTreeMap::new(),
        };
        for (seq, src) in (1u64..).zip(&o.sources) {
            let mut ace = any_ace(AceAction::Permit, "ip");
            ace.source = AddrMatch::from_net(IpNet::V4(*src));
            acl.lines.insert(seq * 10, AclLine::Ace(ace));
        }
        config.nat_overloads.push(NatOverloadConfig {
            acl: acl.name.clone(),
            interface: format!("{}{}", id.kind, id.number),
        });
        config.ipv4_acls.push(acl);
    }
    config.nat_overloads.sort();
    Ok(())
}

fn any_ace(action: AceAction, protocol: &str) -> Ace {
    Ace {
        action,
        protocol: protocol.to_owned(),
        source: AddrMatch::Any,
        source_port: PortMatch::Any,
        destination: AddrMatch::Any,
        destination_port: PortMatch::Any,
        icmp: None,
        icmp_named: None,
        log: false,
    }
}

/// IOS-XE remarks are 1..100 characters.
fn remark_text(s: &str) -> Option<String> {
    let t: String = s
        .trim()
        .chars()
        .filter(|c| !c.is_control())
        .take(100)
        .collect();
    (!t.is_empty()).then_some(t)
}

/// The ACEs `rule` needs in the ACL of `family` (empty: the rule does not
/// apply to that family).
fn expand_rule(
    rule: &FirewallRule,
    family: Family,
    groups: &mut BTreeMap<String, NetworkGroup>,
) -> Vec<Ace> {
    let protocol = match (rule.protocol, family) {
        (Protocol::Icmp, Family::V6) | (Protocol::Icmpv6, Family::V4) => return Vec::new(),
        (Protocol::Any, Family::V4) => "ip",
        (Protocol::Any, Family::V6) => "ipv6",
        (Protocol::Tcp, _) => "tcp",
        (Protocol::Udp, _) => "udp",
        (Protocol::Icmp | Protocol::Icmpv6, _) => "icmp",
    };
    let Some(sources) = family_matches(&rule.sources, family) else {
        return Vec::new();
    };
    let Some(destinations) = family_matches(&rule.destinations, family) else {
        return Vec::new();
    };
    let mut grouped = |side: Vec<AddrMatch>| -> Vec<AddrMatch> {
        match NetworkGroup::of(&side) {
            Some(g) => {
                let name = g.name.clone();
                groups.insert(name.clone(), g);
                vec![AddrMatch::Group(name)]
            }
            None => side,
        }
    };
    let sources = grouped(sources);
    let destinations = grouped(destinations);
    let ports = |ranges: &[PortRange]| -> Vec<PortMatch> {
        if rule.protocol.has_ports() && !ranges.is_empty() {
            ranges.iter().copied().map(PortMatch::from_range).collect()
        } else {
            vec![PortMatch::Any]
        }
    };
    let source_ports = ports(&rule.source_ports);
    let destination_ports = ports(&rule.destination_ports);
    let icmp = match rule.protocol {
        Protocol::Icmp | Protocol::Icmpv6 => rule.icmp_type.map(|t| (t, rule.icmp_code)),
        _ => None,
    };
    let mut out = Vec::new();
    for source in &sources {
        for source_port in &source_ports {
            for destination in &destinations {
                for destination_port in &destination_ports {
                    out.push(Ace {
                        action: rule.action.into(),
                        protocol: protocol.to_owned(),
                        source: source.clone(),
                        source_port: *source_port,
                        destination: destination.clone(),
                        destination_port: *destination_port,
                        icmp,
                        icmp_named: None,
                        log: rule.log,
                    });
                }
            }
        }
    }
    out.dedup();
    out
}

/// The address matches of `nets` in `family`: `[Any]` when the list is
/// empty, `None` when it only holds the other family's prefixes.
fn family_matches(nets: &[IpNet], family: Family) -> Option<Vec<AddrMatch>> {
    if nets.is_empty() {
        return Some(vec![AddrMatch::Any]);
    }
    let out: Vec<AddrMatch> = nets
        .iter()
        .filter(|n| family.matches(n))
        .map(|n| AddrMatch::from_net(*n))
        .collect();
    (!out.is_empty()).then_some(out)
}

// ===== router =====

fn build_router_device(
    config: &mut IosXeConfig,
    d: &RouterDevice,
    field: &str,
) -> Result<(), IosXeError> {
    for (i, itf) in d.interfaces.iter().enumerate() {
        let id = InterfaceId::parse(&itf.name, &format!("{field}.interfaces[{i}].name"))?;
        let entry = config.interfaces.entry(id).or_default();
        entry.description = itf.description.clone();
        entry.ipv4 = itf.ipv4.clone();
        entry.ipv6 = itf.ipv6.clone();
        entry.shutdown = Some(itf.shutdown);
    }
    for (i, r) in d.static_routes.iter().enumerate() {
        if r.next_hop.is_none() && r.interface.is_none() {
            return Err(IosXeError::Unsupported {
                what: "a static route with neither next hop nor interface".to_owned(),
                field: format!("{field}.static_routes[{i}]"),
            });
        }
        if let Some(itf) = &r.interface {
            InterfaceId::parse(itf, &format!("{field}.static_routes[{i}].interface"))?;
        }
        if let Some(nh) = r.next_hop
            && nh.is_ipv4() != matches!(r.prefix, IpNet::V4(_))
        {
            return Err(IosXeError::Unsupported {
                what: "a static route whose next hop is of another address family than its prefix"
                    .to_owned(),
                field: format!("{field}.static_routes[{i}].next_hop"),
            });
        }
        config.static_routes.push(StaticRouteConfig {
            prefix: r.prefix.trunc(),
            next_hop: r.next_hop,
            interface: r.interface.clone(),
            distance: r.distance,
        });
    }
    config.static_routes.sort();
    config.static_routes.dedup();
    if let Some(bgp) = &d.bgp {
        config.bgp = Some(BgpConfig {
            asn: bgp.asn,
            router_id: bgp.router_id,
            neighbors: bgp
                .neighbors
                .iter()
                .map(|n| BgpNeighborConfig {
                    address: n.address,
                    remote_as: n.remote_as,
                    description: n.description.clone(),
                })
                .collect(),
            networks: bgp.networks.iter().map(IpNet::trunc).collect(),
        });
    }
    Ok(())
}

// ===== printing =====

impl IosXeConfig {
    /// The NETCONF edit-config payload: a `<config>` element holding
    /// `<native>`. Service-owned ACLs carry `nc:operation="replace"`.
    #[must_use]
    pub fn to_netconf_xml(&self) -> String {
        tree::to_netconf_config(&self.to_tree(true), Module::Native)
    }

    /// The RESTCONF body (`application/yang-data+json`) for a PATCH of
    /// `/restconf/data/Cisco-IOS-XE-native:native`.
    #[must_use]
    pub fn to_restconf_json(&self) -> String {
        tree::to_json(&self.to_tree(false), Module::Native)
    }

    /// The `/native` data tree; `with_ops` adds NETCONF replace operations
    /// on service-owned subtrees.
    #[must_use]
    pub fn to_tree(&self, with_ops: bool) -> Node {
        let mut native = Vec::new();
        if !self.interfaces.is_empty() {
            native.push(Node::container(
                "interface",
                self.interfaces
                    .iter()
                    .map(|(id, c)| interface_node(id, c))
                    .collect(),
            ));
        }
        let mut ip = Vec::new();
        if !self.ipv4_acls.is_empty() {
            ip.push(Node::container(
                "access-list",
                self.ipv4_acls
                    .iter()
                    .map(|a| acl_node(a, "extended", Family::V4, with_ops))
                    .collect(),
            ));
        }
        if let Some(route) = static_routes_node(&self.static_routes, Family::V4) {
            ip.push(route);
        }
        if let Some(nat) = nat_node(&self.nat_static, &self.nat_overloads, with_ops) {
            ip.push(nat);
        }
        if !ip.is_empty() {
            native.push(Node::container("ip", ip));
        }
        let mut ipv6 = Vec::new();
        if !self.ipv6_acls.is_empty() {
            ipv6.push(Node::container(
                "access-list",
                self.ipv6_acls
                    .iter()
                    .map(|a| acl_node(a, "named-acl", Family::V6, with_ops))
                    .collect(),
            ));
        }
        if let Some(route) = static_routes_node(&self.static_routes, Family::V6) {
            ipv6.push(route);
        }
        if !ipv6.is_empty() {
            native.push(Node::container("ipv6", ipv6));
        }
        if let Some(bgp) = &self.bgp {
            native.push(Node::container("router", vec![bgp_node(bgp)]));
        }
        if !self.network_groups.is_empty() {
            native.push(Node::container(
                "object-group",
                self.network_groups
                    .iter()
                    .map(|g| {
                        let n = network_group_node(g).in_module(Module::ObjectGroup);
                        if with_ops {
                            n.with_op(EditOp::Replace)
                        } else {
                            n
                        }
                    })
                    .collect(),
            ));
        }
        Node::container("native", native)
    }
}

fn acl_node(acl: &Acl, list: &str, family: Family, with_ops: bool) -> Node {
    let mut children = vec![Node::leaf("name", acl.name.clone())];
    for (seq, line) in &acl.lines {
        let body = match line {
            AclLine::Remark(text) => Node::leaf("remark", text.clone()),
            AclLine::Ace(ace) => Node::container("ace-rule", ace_nodes(ace, family)),
        };
        children.push(Node::entry(
            "access-list-seq-rule",
            vec![Node::int64("sequence", *seq), body],
        ));
    }
    let node = Node::entry(list, children).in_module(Module::Acl);
    if with_ops {
        node.with_op(EditOp::Replace)
    } else {
        node
    }
}

/// `/native/object-group/network[name]` (module `Cisco-IOS-XE-object-group`,
/// same shape in 16.9.3 and 17.12.1): prefixes as address + netmask, then
/// hosts, in schema order.
fn network_group_node(g: &NetworkGroup) -> Node {
    let mut body = Vec::new();
    for m in &g.members {
        if let AddrMatch::Prefix(p) = m {
            body.push(Node::entry(
                "network_address",
                vec![
                    Node::leaf("ipv4_addr", p.network().to_string()),
                    Node::leaf("ipv4_mask", p.netmask().to_string()),
                ],
            ));
        }
    }
    for m in &g.members {
        if let AddrMatch::Host(a) = m {
            body.push(Node::entry(
                "host",
                vec![Node::leaf("ipv4-host", a.to_string())],
            ));
        }
    }
    Node::entry(
        "network",
        vec![
            Node::leaf("name", g.name.clone()),
            Node::container("obj-Mode-config-network-group", body),
        ],
    )
}

/// `/native/ip/nat` (module `Cisco-IOS-XE-nat`); `None` when empty.
fn nat_node(
    statics: &[StaticNatConfig],
    overloads: &[NatOverloadConfig],
    with_ops: bool,
) -> Option<Node> {
    if statics.is_empty() && overloads.is_empty() {
        return None;
    }
    let owned = |n: Node| {
        if with_ops {
            n.with_op(EditOp::Replace)
        } else {
            n
        }
    };
    let mut source: Vec<Node> = overloads
        .iter()
        .map(|o| {
            owned(Node::entry(
                "list",
                vec![
                    Node::leaf("id", o.acl.clone()),
                    Node::entry(
                        "interface",
                        vec![
                            Node::leaf("name", o.interface.clone()),
                            Node::empty("overload"),
                        ],
                    ),
                ],
            ))
        })
        .collect();
    if !statics.is_empty() {
        source.push(Node::container(
            "static",
            statics.iter().map(|e| owned(static_nat_entry(e))).collect(),
        ));
    }
    Some(
        Node::container(
            "nat",
            vec![Node::container(
                "inside",
                vec![Node::container("source", source)],
            )],
        )
        .in_module(Module::Nat),
    )
}

/// One `nat-static-transport-list` entry (keys first, then the 16.9.3
/// port leaves in schema order).
fn static_nat_entry(e: &StaticNatConfig) -> Node {
    let mut n = vec![
        Node::leaf("local-ip", e.local.to_string()),
        Node::leaf("global-ip", e.global.to_string()),
    ];
    if let Some((proto, local, global)) = &e.port {
        n.push(Node::leaf("proto", proto.clone()));
        n.push(Node::int("local-port", *local));
        n.push(Node::int("global-port", *global));
    }
    Node::entry("nat-static-transport-list", n)
}

fn ace_nodes(ace: &Ace, family: Family) -> Vec<Node> {
    let mut n = vec![
        Node::leaf("action", ace.action.as_str()),
        Node::leaf("protocol", ace.protocol.clone()),
    ];
    match family {
        Family::V4 => {
            match &ace.source {
                AddrMatch::Any => n.push(Node::empty("any")),
                AddrMatch::Host(a) => n.push(Node::leaf("host", a.to_string())),
                AddrMatch::Prefix(p) => {
                    n.push(Node::leaf("ipv4-address", p.network().to_string()));
                    n.push(Node::leaf("mask", p.hostmask().to_string()));
                }
                AddrMatch::Group(g) => n.push(Node::leaf("object-group", g.clone())),
            }
            push_ports(&mut n, ace.source_port, "src");
            match &ace.destination {
                AddrMatch::Any => n.push(Node::empty("dst-any")),
                AddrMatch::Host(a) => n.push(Node::leaf("dst-host", a.to_string())),
                AddrMatch::Prefix(p) => {
                    n.push(Node::leaf("dest-ipv4-address", p.network().to_string()));
                    n.push(Node::leaf("dest-mask", p.hostmask().to_string()));
                }
                AddrMatch::Group(g) => n.push(Node::leaf("dst-object-group", g.clone())),
            }
            push_ports(&mut n, ace.destination_port, "dst");
        }
        Family::V6 => {
            // IPv6 sides are never grouped (NetworkGroup::of is IPv4 only).
            match &ace.source {
                AddrMatch::Any | AddrMatch::Group(_) => n.push(Node::empty("any")),
                AddrMatch::Host(a) => n.push(Node::leaf("source-host", a.to_string())),
                AddrMatch::Prefix(p) => n.push(Node::leaf("source-prefix", p.to_string())),
            }
            push_ports(&mut n, ace.source_port, "src");
            match &ace.destination {
                AddrMatch::Any | AddrMatch::Group(_) => n.push(Node::empty("destination-any")),
                AddrMatch::Host(a) => n.push(Node::leaf("destination-host", a.to_string())),
                AddrMatch::Prefix(p) => n.push(Node::leaf("destination-prefix", p.to_string())),
            }
            push_ports(&mut n, ace.destination_port, "dst");
        }
    }
    if ace.log {
        n.push(Node::empty("log"));
    }
    if let Some((t, code)) = ace.icmp {
        n.push(Node::int(
            if family == Family::V4 {
                "msg-type"
            } else {
                "msg-type-case"
            },
            t,
        ));
        if let Some(c) = code {
            n.push(Node::int("msg-code", c));
        }
    }
    if let Some(named) = &ace.icmp_named {
        n.push(Node::leaf("named-msg-type", named.clone()));
    }
    n
}

fn push_ports(n: &mut Vec<Node>, port: PortMatch, side: &str) {
    match port {
        PortMatch::Any => {}
        PortMatch::Eq(p) => n.push(Node::int(&format!("{side}-eq"), p)),
        PortMatch::Range(a, b) => {
            n.push(Node::int(&format!("{side}-range1"), a));
            n.push(Node::int(&format!("{side}-range2"), b));
        }
    }
}

fn interface_node(id: &InterfaceId, c: &InterfaceConfig) -> Node {
    let mut n = vec![id.key_node()];
    if let Some(d) = &c.description {
        n.push(Node::leaf("description", d.clone()));
    }
    match c.shutdown {
        Some(true) => n.push(Node::empty("shutdown")),
        Some(false) => n.push(Node::empty("shutdown").with_op(EditOp::Remove)),
        None => {}
    }
    let mut ip = Vec::new();
    if let Some((primary, secondary)) = c.ipv4.split_first() {
        let mut address = vec![Node::container(
            "primary",
            vec![
                Node::leaf("address", primary.addr().to_string()),
                Node::leaf("mask", primary.netmask().to_string()),
            ],
        )];
        for s in secondary {
            address.push(Node::entry(
                "secondary",
                vec![
                    Node::leaf("address", s.addr().to_string()),
                    Node::leaf("mask", s.netmask().to_string()),
                    Node::empty("secondary"),
                ],
            ));
        }
        ip.push(Node::container("address", address));
    }
    let mut access_group = Vec::new();
    for (dir, acl) in [("in", &c.acls.ipv4_in), ("out", &c.acls.ipv4_out)] {
        if let Some(name) = acl {
            access_group.push(Node::container(
                dir,
                vec![Node::container(
                    "acl",
                    vec![Node::leaf("acl-name", name.clone()), Node::empty(dir)],
                )],
            ));
        }
    }
    if !access_group.is_empty() {
        ip.push(Node::container("access-group", access_group));
    }
    if let Some(side) = c.nat {
        ip.push(Node::container("nat", vec![Node::empty(side.as_str())]).in_module(Module::Nat));
    }
    if !ip.is_empty() {
        n.push(Node::container("ip", ip));
    }
    let mut ipv6 = Vec::new();
    if !c.ipv6.is_empty() {
        ipv6.push(Node::container(
            "address",
            c.ipv6
                .iter()
                .map(|p| Node::entry("prefix-list", vec![Node::leaf("prefix", p.to_string())]))
                .collect(),
        ));
    }
    for (dir, acl) in [("in", &c.acls.ipv6_in), ("out", &c.acls.ipv6_out)] {
        if let Some(name) = acl {
            ipv6.push(Node::entry(
                "traffic-filter",
                vec![
                    Node::leaf("direction", dir),
                    Node::leaf("access-list", name.clone()),
                ],
            ));
        }
    }
    if !ipv6.is_empty() {
        n.push(Node::container("ipv6", ipv6));
    }
    Node::entry(&id.kind, n)
}

fn static_routes_node(routes: &[StaticRouteConfig], family: Family) -> Option<Node> {
    let routes: Vec<&StaticRouteConfig> = routes
        .iter()
        .filter(|r| family.matches(&r.prefix))
        .collect();
    if routes.is_empty() {
        return None;
    }
    // One list entry per prefix, one forwarding entry per next hop or
    // interface; routes to the same prefix share the prefix entry.
    let (distance_leaf, hop_key, fwd_list, route_list) = match family {
        Family::V4 => (
            "metric",
            "ip-address",
            "fwd-list",
            "ip-route-interface-forwarding-list",
        ),
        Family::V6 => (
            "distance",
            "ipv6-address",
            "ipv6-fwd-list",
            "ipv6-route-list",
        ),
    };
    let mut by_prefix: BTreeMap<IpNet, Vec<Node>> = BTreeMap::new();
    for r in routes {
        let (fwd, via) = match (&r.interface, r.next_hop) {
            (Some(itf), nh) => (itf.clone(), nh),
            (None, Some(nh)) => (nh.to_string(), None),
            (None, None) => continue,
        };
        let distance = r.distance.map(|d| Node::int(distance_leaf, d));
        let mut entry = vec![Node::leaf("fwd", fwd)];
        match via {
            Some(nh) => {
                let mut hop = vec![Node::leaf(hop_key, nh.to_string())];
                hop.extend(distance);
                entry.push(Node::entry("interface-next-hop", hop));
            }
            None => entry.extend(distance),
        }
        by_prefix
            .entry(r.prefix)
            .or_default()
            .push(Node::entry(fwd_list, entry));
    }
    let entries = by_prefix
        .into_iter()
        .map(|(prefix, fwds)| {
            let mut n = match prefix {
                IpNet::V4(p) => vec![
                    Node::leaf("prefix", p.network().to_string()),
                    Node::leaf("mask", p.netmask().to_string()),
                ],
                IpNet::V6(p) => vec![Node::leaf("prefix", p.to_string())],
            };
            n.extend(fwds);
            Node::entry(route_list, n)
        })
        .collect();
    Some(Node::container("route", entries))
}

/// Whether `net` uses its classful default mask (IOS-XE then wants
/// `network N` without a mask under BGP).
fn classful(net: &ipnet::Ipv4Net) -> bool {
    let default = match net.network().octets()[0] {
        0..=127 => 8,
        128..=191 => 16,
        192..=223 => 24,
        _ => return false,
    };
    net.prefix_len() == default
}

fn bgp_node(bgp: &BgpConfig) -> Node {
    let mut n = vec![Node::int("id", bgp.asn)];
    if let Some(rid) = bgp.router_id {
        n.push(Node::container(
            "bgp",
            vec![Node::container(
                "router-id",
                vec![Node::leaf("ip-id", rid.to_string())],
            )],
        ));
    }
    for nb in &bgp.neighbors {
        let mut e = vec![
            Node::leaf("id", nb.address.to_string()),
            Node::int("remote-as", nb.remote_as),
        ];
        if let Some(d) = &nb.description {
            e.push(Node::leaf("description", d.clone()));
        }
        n.push(Node::entry("neighbor", e));
    }
    let mut families = Vec::new();
    for family in [Family::V4, Family::V6] {
        let (list, container) = match family {
            Family::V4 => ("ipv4", "ipv4-unicast"),
            Family::V6 => ("ipv6", "ipv6-unicast"),
        };
        let mut body: Vec<Node> = bgp
            .neighbors
            .iter()
            .filter(|nb| nb.address.is_ipv4() == (family == Family::V4))
            .map(|nb| {
                Node::entry(
                    "neighbor",
                    vec![
                        Node::leaf("id", nb.address.to_string()),
                        Node::empty("activate"),
                    ],
                )
            })
            .collect();
        let mut v4_networks = Vec::new();
        for net in bgp.networks.iter().filter(|p| family.matches(p)) {
            match net {
                IpNet::V4(p) if classful(p) => v4_networks.push(Node::entry(
                    "no-mask",
                    vec![Node::leaf("number", p.network().to_string())],
                )),
                IpNet::V4(p) => v4_networks.push(Node::entry(
                    "with-mask",
                    vec![
                        Node::leaf("number", p.network().to_string()),
                        Node::leaf("mask", p.netmask().to_string()),
                    ],
                )),
                IpNet::V6(p) => {
                    body.push(Node::entry(
                        "network",
                        vec![Node::leaf("number", p.to_string())],
                    ));
                }
            }
        }
        if !v4_networks.is_empty() {
            body.push(Node::container("network", v4_networks));
        }
        if !body.is_empty() {
            families.push(Node::entry(
                list,
                vec![
                    Node::leaf("af-name", "unicast"),
                    Node::container(container, body),
                ],
            ));
        }
    }
    if !families.is_empty() {
        n.push(Node::container(
            "address-family",
            vec![Node::container("no-vrf", families)],
        ));
    }
    Node::entry("bgp", n).in_module(Module::Bgp)
}
