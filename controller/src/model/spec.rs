//! The typed service model: what a validated spec document becomes.
//!
//! These types mirror the YANG modules in `models/yang/` one to one; a spec is
//! only turned into them after libyang accepted it, so the compile stage can
//! trust every value (prefixes parse, ports are in range, sequence numbers are
//! unique).

use std::collections::BTreeMap;

use ipnet::IpNet;
use serde::{Deserialize, Serialize};

/// The only `apiVersion` this controller accepts.
pub const API_VERSION: &str = "rampart.io/v1";

/// Which kind of network function a spec describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub enum Kind {
    /// vFirewall: ordered ACLs on devices and hosts.
    Firewall,
    /// vRouter: interfaces, static routes, BGP.
    Router,
    /// vLoadBalancer: L4 VIPs with backend pools.
    LoadBalancer,
    /// vVPN: site-to-site IPsec.
    Vpn,
    /// SD-WAN: sites and traffic policies.
    SdWan,
}

impl Kind {
    /// Every kind, in the order they are documented.
    pub const ALL: [Kind; 5] = [
        Kind::Firewall,
        Kind::Router,
        Kind::LoadBalancer,
        Kind::Vpn,
        Kind::SdWan,
    ];

    /// The `kind:` word users write.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Firewall => "Firewall",
            Kind::Router => "Router",
            Kind::LoadBalancer => "LoadBalancer",
            Kind::Vpn => "Vpn",
            Kind::SdWan => "SdWan",
        }
    }

    /// Parses the `kind:` word (exact match, as Kubernetes does).
    #[must_use]
    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

impl std::fmt::Display for Kind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Identity and grouping of a service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Metadata {
    /// Unique per tenant.
    pub name: String,
    /// The customer this service belongs to.
    pub tenant: String,
    /// Free-form labels.
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
}

/// A validated service spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ServiceSpec {
    /// Name, tenant, labels.
    pub metadata: Metadata,
    /// The kind-specific body.
    pub body: ServiceBody,
}

impl ServiceSpec {
    /// The kind of the body.
    #[must_use]
    pub fn kind(&self) -> Kind {
        match self.body {
            ServiceBody::Firewall(_) => Kind::Firewall,
            ServiceBody::Router(_) => Kind::Router,
            ServiceBody::LoadBalancer(_) => Kind::LoadBalancer,
            ServiceBody::Vpn(_) => Kind::Vpn,
            ServiceBody::SdWan(_) => Kind::SdWan,
        }
    }

    /// Inventory devices this service configures, deduplicated and sorted.
    #[must_use]
    pub fn devices(&self) -> Vec<&str> {
        let mut out: Vec<&str> = match &self.body {
            ServiceBody::Firewall(f) => f
                .targets
                .devices
                .iter()
                .map(|d| d.device.as_str())
                .collect(),
            ServiceBody::Router(r) => r.devices.iter().map(|d| d.device.as_str()).collect(),
            ServiceBody::LoadBalancer(l) => l
                .targets
                .devices
                .iter()
                .map(|d| d.device.as_str())
                .collect(),
            ServiceBody::Vpn(v) => v.tunnels.iter().map(|t| t.device.as_str()).collect(),
            ServiceBody::SdWan(s) => s
                .sites
                .iter()
                .flat_map(|s| s.devices.iter().map(String::as_str))
                .collect(),
        };
        out.sort_unstable();
        out.dedup();
        out
    }
}

/// The kind-specific part of a spec.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "spec")]
pub enum ServiceBody {
    Firewall(FirewallSpec),
    Router(RouterSpec),
    LoadBalancer(LoadBalancerSpec),
    Vpn(VpnSpec),
    SdWan(SdWanSpec),
}

// ===== firewall =====

/// permit or deny.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Action {
    /// Let the packet through.
    Permit,
    /// Drop the packet.
    Deny,
}

/// The IP protocol a rule matches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Protocol {
    /// Any IP protocol.
    Any,
    /// TCP (6).
    Tcp,
    /// UDP (17).
    Udp,
    /// ICMP (1).
    Icmp,
    /// ICMPv6 (58).
    Icmpv6,
}

impl Protocol {
    /// IANA protocol number; `None` for any.
    #[must_use]
    pub fn number(self) -> Option<u8> {
        match self {
            Protocol::Any => None,
            Protocol::Tcp => Some(6),
            Protocol::Udp => Some(17),
            Protocol::Icmp => Some(1),
            Protocol::Icmpv6 => Some(58),
        }
    }

    /// Whether port matches make sense for this protocol.
    #[must_use]
    pub fn has_ports(self) -> bool {
        matches!(self, Protocol::Tcp | Protocol::Udp)
    }
}

/// An inclusive port range.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct PortRange {
    /// First port, inclusive.
    pub first: u16,
    /// Last port, inclusive.
    pub last: u16,
}

impl PortRange {
    /// Whether every port of `other` lies in `self`.
    #[must_use]
    pub fn contains(&self, other: &PortRange) -> bool {
        self.first <= other.first && other.last <= self.last
    }

    /// Whether the ranges share at least one port.
    #[must_use]
    pub fn overlaps(&self, other: &PortRange) -> bool {
        self.first <= other.last && other.first <= self.last
    }
}

/// One ordered ACL entry; first match wins by ascending sequence.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallRule {
    /// Sequence number, unique within the service.
    pub sequence: u32,
    /// What to do on match.
    pub action: Action,
    /// Protocol matched.
    pub protocol: Protocol,
    /// Source prefixes (any when empty).
    pub sources: Vec<IpNet>,
    /// Destination prefixes (any when empty).
    pub destinations: Vec<IpNet>,
    /// Source port ranges (any when empty).
    pub source_ports: Vec<PortRange>,
    /// Destination port ranges (any when empty).
    pub destination_ports: Vec<PortRange>,
    /// ICMP type (any when absent).
    pub icmp_type: Option<u8>,
    /// ICMP code (any when absent; needs a type).
    pub icmp_code: Option<u8>,
    /// Log matches.
    pub log: bool,
    /// Operator's note.
    pub description: Option<String>,
}

/// Which way traffic crosses an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Direction {
    /// Into the device/host.
    Ingress,
    /// Out of the device/host.
    Egress,
    /// Both ways.
    Both,
}

/// An interface of an inventory device the service is bound to.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceTarget {
    /// Inventory device name.
    pub device: String,
    /// Interface name in the device's own naming (`GigabitEthernet2`).
    pub interface: String,
    /// Direction of the binding.
    pub direction: Direction,
}

/// Host agents selected by label.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HostTarget {
    /// Every label must match.
    pub selector: BTreeMap<String, String>,
    /// Host interfaces to enforce on; empty means every non-loopback interface.
    pub interfaces: Vec<String>,
    /// Direction of enforcement.
    pub direction: Direction,
}

/// Where a service is enforced.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Targets {
    /// Inventory devices.
    pub devices: Vec<DeviceTarget>,
    /// Host agents.
    pub hosts: Vec<HostTarget>,
}

/// A vFirewall.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FirewallSpec {
    /// Applied when no rule matches.
    pub default_action: Action,
    /// Ordered rules.
    pub rules: Vec<FirewallRule>,
    /// Where to enforce.
    pub targets: Targets,
    /// Address translation on the devices the firewall is enforced on
    /// (absent: the service configures no NAT).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nat: Option<NatSpec>,
}

impl FirewallSpec {
    /// Index of the `nat.devices` entry configuring `device`, if any: the
    /// renderers without NAT refuse such a spec naming this entry rather
    /// than dropping the translation silently.
    #[must_use]
    pub fn nat_device(&self, device: &str) -> Option<usize> {
        self.nat
            .as_ref()?
            .devices
            .iter()
            .position(|d| d.device == device)
    }
}

/// NAT options of a vFirewall: which interfaces face inside and outside on
/// each device, fixed one-to-one translations and port address translation.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatSpec {
    /// Per-device NAT configuration; every device must also be a firewall
    /// target.
    #[serde(default)]
    pub devices: Vec<NatDevice>,
}

/// NAT on one inventory device.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatDevice {
    /// Inventory device name.
    pub device: String,
    /// Interfaces facing the inside (private) addresses.
    #[serde(default)]
    pub inside_interfaces: Vec<String>,
    /// Interfaces facing the outside (public) addresses.
    #[serde(default)]
    pub outside_interfaces: Vec<String>,
    /// Static one-to-one translations, optionally of one port.
    #[serde(default)]
    pub static_mappings: Vec<StaticNat>,
    /// Port address translation (overload) of inside prefixes to an
    /// outside interface's address.
    #[serde(default)]
    pub overloads: Vec<NatOverload>,
}

/// A static NAT entry: inside local ↔ inside global.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticNat {
    /// The inside host's own (private) address.
    pub inside_local: std::net::Ipv4Addr,
    /// The address it is known by on the outside.
    pub inside_global: std::net::Ipv4Addr,
    /// Protocol of a port translation (absent: the whole address).
    #[serde(default)]
    pub protocol: Option<L4Protocol>,
    /// Inside port of a port translation.
    #[serde(default)]
    pub local_port: Option<u16>,
    /// Outside port of a port translation.
    #[serde(default)]
    pub global_port: Option<u16>,
}

/// Port address translation of inside prefixes to an outside interface.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NatOverload {
    /// Outside interface whose address the sources share.
    pub interface: String,
    /// Inside source prefixes translated.
    #[serde(default)]
    pub sources: Vec<ipnet::Ipv4Net>,
}

// ===== router =====

/// A routed interface on a device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterInterface {
    /// Interface name in the device's naming.
    pub name: String,
    /// Interface description.
    pub description: Option<String>,
    /// IPv4 addresses with prefix length; the first is primary.
    pub ipv4: Vec<IpNet>,
    /// IPv6 addresses with prefix length.
    pub ipv6: Vec<IpNet>,
    /// Administratively down.
    pub shutdown: bool,
}

/// A static route.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct StaticRoute {
    /// Destination prefix.
    pub prefix: IpNet,
    /// Next-hop address (absent for interface routes).
    pub next_hop: Option<std::net::IpAddr>,
    /// Outgoing interface.
    pub interface: Option<String>,
    /// Administrative distance.
    pub distance: Option<u8>,
}

/// A BGP neighbor.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BgpNeighbor {
    /// Peer address.
    pub address: std::net::IpAddr,
    /// Peer AS.
    pub remote_as: u32,
    pub description: Option<String>,
}

/// BGP on one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Bgp {
    /// Local AS.
    pub asn: u32,
    /// Router id.
    pub router_id: Option<std::net::Ipv4Addr>,
    pub neighbors: Vec<BgpNeighbor>,
    /// Networks announced.
    pub networks: Vec<IpNet>,
}

/// Routing configuration of one device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterDevice {
    /// Inventory device name.
    pub device: String,
    pub interfaces: Vec<RouterInterface>,
    /// Static routes.
    pub static_routes: Vec<StaticRoute>,
    /// BGP, when used.
    pub bgp: Option<Bgp>,
}

/// A vRouter.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RouterSpec {
    /// Per-device routing configuration.
    pub devices: Vec<RouterDevice>,
}

// ===== load balancer =====

/// A backend of a virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Backend {
    /// Backend address.
    pub address: std::net::IpAddr,
    /// Backend port (the VIP port when absent).
    pub port: Option<u16>,
    /// Relative weight.
    pub weight: u32,
}

/// L4 protocol of a VIP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum L4Protocol {
    Tcp,
    Udp,
}

/// Health check of a pool.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct HealthCheck {
    /// `tcp` or `http`.
    pub kind: String,
    /// HTTP path for `http`.
    pub path: Option<String>,
    /// Expected HTTP status.
    pub expect_status: Option<u16>,
    /// Interval in milliseconds.
    pub interval_ms: u32,
    /// Timeout in milliseconds.
    pub timeout_ms: u32,
    /// Consecutive successes to mark up.
    pub rise: u8,
    /// Consecutive failures to mark down.
    pub fall: u8,
}

/// One virtual service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VirtualService {
    /// Name within the service.
    pub name: String,
    /// VIP address.
    pub address: std::net::IpAddr,
    pub protocol: L4Protocol,
    pub port: u16,
    /// Backend pool.
    pub backends: Vec<Backend>,
    /// Health check, when configured.
    pub health_check: Option<HealthCheck>,
}

/// A vLoadBalancer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LoadBalancerSpec {
    /// Virtual services.
    pub virtual_services: Vec<VirtualService>,
    /// Where to enforce.
    pub targets: Targets,
}

// ===== vpn =====

/// One site-to-site IPsec tunnel terminated on an inventory device.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnTunnel {
    /// Inventory device terminating the tunnel.
    pub device: String,
    /// Remote peer address.
    pub peer: std::net::IpAddr,
    /// Local protected subnets.
    pub local_subnets: Vec<IpNet>,
    /// Remote protected subnets.
    pub remote_subnets: Vec<IpNet>,
    /// Reference to the pre-shared key (never the key itself).
    pub psk_ref: String,
}

/// A vVPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct VpnSpec {
    pub tunnels: Vec<VpnTunnel>,
}

// ===== sd-wan =====

/// An SD-WAN site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdWanSite {
    /// Site id.
    pub site_id: u32,
    /// Inventory devices at the site.
    pub devices: Vec<String>,
}

/// An SD-WAN traffic policy.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdWanPolicy {
    pub name: String,
    /// Matched destination prefixes.
    pub destinations: Vec<IpNet>,
    /// Preferred transport color (e.g. `mpls`, `biz-internet`).
    pub preferred_color: String,
    pub action: Action,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SdWanSpec {
    pub sites: Vec<SdWanSite>,
    pub policies: Vec<SdWanPolicy>,
}
