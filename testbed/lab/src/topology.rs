//! The lab description: a containerlab topology file (`*.clab.yml`) read
//! with containerlab's own schema, plus Rampart settings carried in node
//! `labels` (`rampart.*`), which containerlab ignores.
//!
//! One file describes both labs: containerlab deploys it with real images,
//! and `rampart-lab` builds the same network in Linux network namespaces. So
//! this module parses exactly the subset of containerlab both understand,
//! refuses anything it would silently misread (unknown node fields, unknown
//! `rampart.*` labels, links to missing nodes), and reports every problem of
//! a file at once, each naming the node and field.

use std::{
    collections::BTreeMap,
    fmt,
    net::IpAddr,
    path::{Path, PathBuf},
};

use ipnet::IpNet;
use serde::{Deserialize, Serialize};
use thiserror::Error;

/// Why a topology file was refused.
#[derive(Debug, Error)]
pub enum TopologyError {
    /// The file could not be read.
    #[error("cannot read topology {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not YAML of containerlab's shape.
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message, with line and column.
        message: String,
    },
    /// The file parses but describes a lab that cannot be built.
    #[error("{path}: {} problem(s):\n  {}", problems.len(), problems.join("\n  "))]
    Invalid {
        /// The file.
        path: PathBuf,
        /// Every problem found, each naming the node/link and the field.
        problems: Vec<String>,
    },
}

// ===== containerlab file schema =====

/// A `*.clab.yml` file: the keys containerlab defines at the top level.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClabFile {
    /// Lab name (containerlab prefixes container names with it).
    pub name: String,
    /// containerlab's container-name prefix (unused by the netns lab).
    #[serde(default)]
    pub prefix: Option<String>,
    /// containerlab's management network (unused by the netns lab).
    #[serde(default)]
    pub mgmt: Option<serde_norway::Value>,
    /// containerlab's global settings (unused by the netns lab).
    #[serde(default)]
    pub settings: Option<serde_norway::Value>,
    /// Nodes and links.
    pub topology: ClabTopology,
}

/// `topology:` of a containerlab file.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClabTopology {
    /// Settings inherited by every node.
    #[serde(default)]
    pub defaults: Option<ClabNode>,
    /// Settings inherited by nodes of a kind.
    #[serde(default)]
    pub kinds: BTreeMap<String, ClabNode>,
    /// Settings inherited by nodes of a group.
    #[serde(default)]
    pub groups: BTreeMap<String, ClabNode>,
    /// The nodes, by name.
    #[serde(default)]
    pub nodes: BTreeMap<String, ClabNode>,
    /// Point-to-point links.
    #[serde(default)]
    pub links: Vec<ClabLink>,
}

/// A label value: containerlab labels are strings, but YAML users write
/// `true` or `80` unquoted, so scalars are accepted and kept as text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum Scalar {
    /// Text.
    Text(String),
    /// A boolean written unquoted.
    Bool(bool),
    /// A number written unquoted.
    Int(i64),
    /// A float written unquoted.
    Float(f64),
}

impl fmt::Display for Scalar {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scalar::Text(s) => f.write_str(s),
            Scalar::Bool(b) => write!(f, "{b}"),
            Scalar::Int(i) => write!(f, "{i}"),
            Scalar::Float(x) => write!(f, "{x}"),
        }
    }
}

/// A node (or a `defaults`/`kinds`/`groups` entry): the fields the lab
/// runner reads, plus every other field containerlab knows, kept unread.
#[derive(Debug, Clone, Default, Deserialize)]
pub struct ClabNode {
    /// containerlab kind (`linux`, `bridge`, `cisco_csr1000v`, ...).
    #[serde(default)]
    pub kind: Option<String>,
    /// Container image (containerlab only).
    #[serde(default)]
    pub image: Option<String>,
    /// Group whose settings the node inherits.
    #[serde(default)]
    pub group: Option<String>,
    /// Labels; `rampart.*` ones drive the netns lab.
    #[serde(default)]
    pub labels: BTreeMap<String, Scalar>,
    /// Commands run in the node after it is up (both labs, see docs/lab.md).
    #[serde(default)]
    pub exec: Option<Vec<String>>,
    /// Environment of the node's processes.
    #[serde(default)]
    pub env: BTreeMap<String, Scalar>,
    /// Bind mounts (containerlab only).
    #[serde(default)]
    pub binds: Option<Vec<String>>,
    /// Container command (containerlab only; the netns lab starts by role).
    #[serde(default)]
    pub cmd: Option<String>,
    /// Startup configuration file (containerlab only).
    #[serde(default, rename = "startup-config")]
    pub startup_config: Option<String>,
    /// Any other containerlab node field; checked against [`CLAB_NODE_FIELDS`].
    #[serde(flatten)]
    pub other: BTreeMap<String, serde_norway::Value>,
}

/// Node fields containerlab defines that the netns lab accepts and ignores.
pub const CLAB_NODE_FIELDS: &[&str] = &[
    "type",
    "license",
    "entrypoint",
    "user",
    "ports",
    "mgmt-ipv4",
    "mgmt-ipv6",
    "network-mode",
    "startup-delay",
    "enforce-startup-config",
    "suppress-startup-config",
    "auto-remove",
    "restart-policy",
    "memory",
    "cpu",
    "cpu-set",
    "sysctls",
    "env-files",
    "publish",
    "dns",
    "extras",
    "wait-for",
    "stages",
    "healthcheck",
    "certificate",
    "runtime",
    "shm-size",
    "devices",
    "cap-add",
    "aliases",
    "config",
    "components",
];

/// One link: containerlab's brief form `endpoints: ["a:eth1", "b:eth1"]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ClabLink {
    /// Exactly two `node:interface` strings.
    pub endpoints: Vec<String>,
    /// MTU (containerlab; the netns lab applies it too).
    #[serde(default)]
    pub mtu: Option<u32>,
    /// Link labels (unused).
    #[serde(default)]
    pub labels: BTreeMap<String, Scalar>,
}

// ===== the resolved lab =====

/// containerlab kinds this lab supports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A Linux container (netns lab: a namespace running role processes).
    Linux,
    /// A Linux bridge joining several links into one segment.
    Bridge,
    /// Cisco CSR1000v (vrnetlab).
    CiscoCsr1000v,
    /// Cisco Catalyst 8000V (vrnetlab).
    CiscoC8000v,
    /// Cisco Firepower Threat Defense virtual (vrnetlab).
    CiscoFtdv,
    /// Cisco ASAv (vrnetlab).
    CiscoAsav,
}

impl Kind {
    /// Every supported kind, for error messages.
    pub const ALL: [Kind; 6] = [
        Kind::Linux,
        Kind::Bridge,
        Kind::CiscoCsr1000v,
        Kind::CiscoC8000v,
        Kind::CiscoFtdv,
        Kind::CiscoAsav,
    ];

    /// containerlab's name of the kind.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Linux => "linux",
            Kind::Bridge => "bridge",
            Kind::CiscoCsr1000v => "cisco_csr1000v",
            Kind::CiscoC8000v => "cisco_c8000v",
            Kind::CiscoFtdv => "cisco_ftdv",
            Kind::CiscoAsav => "cisco_asav",
        }
    }

    fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

/// What a node plays in the lab (`rampart.role`, comma-separated).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Role {
    /// Runs rampartd.
    Controller,
    /// Runs rampart-agent.
    Agent,
    /// An IOS-XE device: netconfd with the Cisco models behind sshd.
    NetconfDevice,
    /// Meraki Dashboard API simulator.
    SimMeraki,
    /// FDM (FTD) REST API simulator.
    SimFdm,
    /// ASA CLI simulator over SSH.
    SimAsa,
    /// SD-WAN Manager (vManage) simulator.
    SimSdwan,
    /// A traffic source; runs nothing.
    Client,
    /// An HTTP server answering with its node name.
    Server,
    /// Prometheus (Debian's package) scraping rampartd, its fleet endpoint
    /// and every agent of the lab.
    Prometheus,
}

impl Role {
    /// Every role, for error messages.
    pub const ALL: [Role; 10] = [
        Role::Controller,
        Role::Agent,
        Role::NetconfDevice,
        Role::SimMeraki,
        Role::SimFdm,
        Role::SimAsa,
        Role::SimSdwan,
        Role::Client,
        Role::Server,
        Role::Prometheus,
    ];

    /// The label spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Controller => "controller",
            Role::Agent => "agent",
            Role::NetconfDevice => "netconf-device",
            Role::SimMeraki => "sim-meraki",
            Role::SimFdm => "sim-fdm",
            Role::SimAsa => "sim-asa",
            Role::SimSdwan => "sim-sdwan",
            Role::Client => "client",
            Role::Server => "server",
            Role::Prometheus => "prometheus",
        }
    }

    fn parse(s: &str) -> Option<Role> {
        Role::ALL.into_iter().find(|r| r.as_str() == s)
    }

    /// The Rampart platform and default management port when the role is a
    /// managed device (one inventory entry).
    #[must_use]
    pub fn device(self) -> Option<(&'static str, u16)> {
        match self {
            Role::NetconfDevice => Some(("iosxe", 830)),
            Role::SimAsa => Some(("asa", 22)),
            Role::SimFdm => Some(("ftd", 443)),
            Role::SimMeraki => Some(("meraki-mx", 443)),
            Role::SimSdwan => Some(("sdwan", 443)),
            _ => None,
        }
    }

    /// containerlab kinds that may carry the role: the real image, or a
    /// `linux` node running the simulator.
    fn kinds(self) -> &'static [Kind] {
        match self {
            Role::NetconfDevice => &[Kind::CiscoCsr1000v, Kind::CiscoC8000v, Kind::Linux],
            Role::SimAsa => &[Kind::CiscoAsav, Kind::Linux],
            Role::SimFdm => &[Kind::CiscoFtdv, Kind::Linux],
            _ => &[Kind::Linux],
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A static route of a node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// Destination prefix (`default` is `0.0.0.0/0`).
    pub dest: IpNet,
    /// Next hop, on a connected subnet.
    pub via: IpAddr,
}

/// One interface of a node, created by a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Interface {
    /// Name inside the node (`eth1`).
    pub name: String,
    /// Addresses with prefix length.
    pub addresses: Vec<IpNet>,
}

/// A node after inheritance and validation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// Node name.
    pub name: String,
    /// containerlab kind.
    pub kind: Kind,
    /// Image (containerlab only).
    pub image: Option<String>,
    /// Roles, in label order.
    pub roles: Vec<Role>,
    /// Interfaces, in link order.
    pub interfaces: Vec<Interface>,
    /// Static routes (`rampart.gateway` is a default route here).
    pub routes: Vec<Route>,
    /// IP forwarding on (`rampart.forwarding`).
    pub forwarding: bool,
    /// `exec` commands (linux nodes).
    pub exec: Vec<String>,
    /// Environment for the node's processes.
    pub env: BTreeMap<String, String>,
    /// HTTP ports of a `server` (`rampart.http-ports`, default 80 and 8080).
    pub http_ports: Vec<u16>,
    /// Management port of a device (`rampart.port`, else the role's).
    pub port: Option<u16>,
    /// Inventory credentials reference (`rampart.credentials`).
    pub credentials: Option<String>,
    /// Inventory labels (`rampart.label.<key>`).
    pub inventory_labels: BTreeMap<String, String>,
    /// containerlab startup configuration (checked to exist).
    pub startup_config: Option<String>,
    /// How an `agent` node's rampart-agent runs (`rampart.agent-mode`);
    /// `None` on other nodes.
    pub agent_mode: Option<AgentMode>,
}

/// How the lab runs a host's rampart-agent.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum AgentMode {
    /// Enrolled with the lab's rampartd (one-time token, mutual TLS) and
    /// enforcing what rampartd pushes: the default when the lab has a
    /// controller, because that is how Rampart manages hosts.
    Managed,
    /// Enforcing a policy file the lab writes (`<state>/nodes/<node>/policy.yaml`):
    /// for labs without a controller and for tests of the agent alone.
    Standalone,
}

impl AgentMode {
    /// The label spelling.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AgentMode::Managed => "managed",
            AgentMode::Standalone => "standalone",
        }
    }
}

impl Node {
    /// The address services bind to and the inventory names: the first
    /// address of `eth1`, else of the first interface that has one.
    #[must_use]
    pub fn primary_address(&self) -> Option<IpAddr> {
        let first = |i: &Interface| i.addresses.first().map(IpNet::addr);
        self.interfaces
            .iter()
            .find(|i| i.name == "eth1")
            .and_then(first)
            .or_else(|| self.interfaces.iter().find_map(first))
    }

    /// The device role (at most one per node), with platform and port.
    #[must_use]
    pub fn device(&self) -> Option<(Role, &'static str, u16)> {
        self.roles.iter().find_map(|r| {
            r.device()
                .map(|(platform, port)| (*r, platform, self.port.unwrap_or(port)))
        })
    }

    /// Whether the node has `role`.
    #[must_use]
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }

    /// The inventory credentials reference: `rampart.credentials`, else
    /// `env:<NODE>_PASSWORD` holding `user:secret`.
    #[must_use]
    pub fn credentials_ref(&self) -> String {
        self.credentials
            .clone()
            .unwrap_or_else(|| format!("env:{}", credentials_var(&self.name)))
    }
}

/// The environment variable the default credentials reference names.
#[must_use]
pub fn credentials_var(node: &str) -> String {
    let up: String = node
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() {
                c.to_ascii_uppercase()
            } else {
                '_'
            }
        })
        .collect();
    format!("{up}_PASSWORD")
}

/// One end of a link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Endpoint {
    /// Node name.
    pub node: String,
    /// Interface name inside the node.
    pub interface: String,
}

/// A veth link between two nodes (or a node and a bridge).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Link {
    /// First end.
    pub a: Endpoint,
    /// Second end.
    pub b: Endpoint,
    /// MTU, when set.
    pub mtu: Option<u32>,
}

/// A validated lab: what both containerlab and the netns runner build.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lab {
    /// Lab name (names every object the runner creates).
    pub name: String,
    /// Nodes, sorted by name.
    pub nodes: Vec<Node>,
    /// Links, in file order.
    pub links: Vec<Link>,
}

impl Lab {
    /// The node called `name`.
    #[must_use]
    pub fn node(&self, name: &str) -> Option<&Node> {
        self.nodes.iter().find(|n| n.name == name)
    }

    /// The controller node, if any.
    #[must_use]
    pub fn controller(&self) -> Option<&Node> {
        self.nodes.iter().find(|n| n.has(Role::Controller))
    }
}

/// Longest lab name: the host-side management veth is `rl-<lab>`, and Linux
/// interface names stop at 15 bytes.
pub const MAX_LAB_NAME: usize = 12;

/// Labels the runner understands; any other `rampart.*` label is refused.
const KNOWN_LABELS: &[&str] = &[
    "rampart.role",
    "rampart.address",
    "rampart.gateway",
    "rampart.routes",
    "rampart.forwarding",
    "rampart.http-ports",
    "rampart.port",
    "rampart.credentials",
    "rampart.agent-mode",
];

/// Checks a lab name: `[a-z0-9][a-z0-9_]*`, at most [`MAX_LAB_NAME`] bytes.
/// No `-` or `.`, so the name prefix `rl-<lab>-` of one lab can never match
/// another lab's objects.
///
/// # Errors
/// A message saying what is wrong.
pub fn check_lab_name(name: &str) -> Result<(), String> {
    let ok_chars = name
        .chars()
        .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    if name.is_empty() || name.len() > MAX_LAB_NAME || !ok_chars || name.starts_with('_') {
        return Err(format!(
            "lab name {name:?} must be 1-{MAX_LAB_NAME} characters of a-z, 0-9 and _ (no '-': it separates the lab from the node in namespace names)"
        ));
    }
    Ok(())
}

fn check_ifname(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
        && name != "lo"
        && name != crate::MGMT_IF;
    if ok {
        Ok(())
    } else {
        Err(format!(
            "interface name {name:?} must be 1-15 characters of a-z, 0-9, _ - . (and not lo or {})",
            crate::MGMT_IF
        ))
    }
}

/// Reads and validates a topology file.
///
/// # Errors
/// [`TopologyError`] naming the file and every problem in it.
pub fn load(path: &Path) -> Result<Lab, TopologyError> {
    let text = std::fs::read_to_string(path).map_err(|source| TopologyError::Read {
        path: path.to_owned(),
        source,
    })?;
    parse(&text, path)
}

/// Parses and validates topology text; `path` names it in errors and
/// anchors relative `startup-config` paths.
///
/// # Errors
/// [`TopologyError`] naming the file and every problem in it.
pub fn parse(text: &str, path: &Path) -> Result<Lab, TopologyError> {
    let file: ClabFile = serde_norway::from_str(text).map_err(|e| TopologyError::Parse {
        path: path.to_owned(),
        message: e.to_string(),
    })?;
    let mut problems = Vec::new();
    let lab = resolve(&file, path, &mut problems);
    if problems.is_empty() {
        Ok(lab)
    } else {
        Err(TopologyError::Invalid {
            path: path.to_owned(),
            problems,
        })
    }
}

/// Node settings after containerlab's inheritance: defaults < kind < group < node.
fn inherit(topo: &ClabTopology, node: &ClabNode) -> ClabNode {
    let mut layers: Vec<&ClabNode> = Vec::new();
    if let Some(d) = &topo.defaults {
        layers.push(d);
    }
    let group = node
        .group
        .as_ref()
        .or(topo.defaults.as_ref().and_then(|d| d.group.as_ref()));
    let kind = node
        .kind
        .as_ref()
        .or(group
            .and_then(|g| topo.groups.get(g))
            .and_then(|g| g.kind.as_ref()))
        .or(topo.defaults.as_ref().and_then(|d| d.kind.as_ref()));
    if let Some(k) = kind.and_then(|k| topo.kinds.get(k)) {
        layers.push(k);
    }
    if let Some(g) = group.and_then(|g| topo.groups.get(g)) {
        layers.push(g);
    }
    layers.push(node);
    let mut out = ClabNode::default();
    for l in layers {
        if l.kind.is_some() {
            out.kind.clone_from(&l.kind);
        }
        if l.image.is_some() {
            out.image.clone_from(&l.image);
        }
        if l.exec.is_some() {
            out.exec.clone_from(&l.exec);
        }
        if l.binds.is_some() {
            out.binds.clone_from(&l.binds);
        }
        if l.cmd.is_some() {
            out.cmd.clone_from(&l.cmd);
        }
        if l.startup_config.is_some() {
            out.startup_config.clone_from(&l.startup_config);
        }
        out.labels
            .extend(l.labels.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.env
            .extend(l.env.iter().map(|(k, v)| (k.clone(), v.clone())));
        out.other
            .extend(l.other.iter().map(|(k, v)| (k.clone(), v.clone())));
    }
    out
}

#[allow(
    clippy::too_many_lines,
    reason = "one pass over the file keeps every check next to the field it reads"
)]
fn resolve(file: &ClabFile, path: &Path, problems: &mut Vec<String>) -> Lab {
    let topo = &file.topology;
    if let Err(e) = check_lab_name(&file.name) {
        problems.push(format!("name: {e}"));
    }
    if topo.nodes.is_empty() {
        problems.push("topology.nodes: no nodes".to_owned());
    }
    for (scope, map) in [("kinds", &topo.kinds), ("groups", &topo.groups)] {
        for (name, n) in map {
            check_other_fields(&format!("topology.{scope}.{name}"), n, problems);
        }
    }
    if let Some(d) = &topo.defaults {
        check_other_fields("topology.defaults", d, problems);
    }

    // Links first: they define the interfaces.
    let mut links = Vec::new();
    let mut ifaces: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for (i, l) in topo.links.iter().enumerate() {
        let at = format!("topology.links[{i}]");
        if l.endpoints.len() != 2 {
            problems.push(format!(
                "{at}.endpoints: needs exactly 2 \"node:interface\" entries, has {}",
                l.endpoints.len()
            ));
            continue;
        }
        let mut ends = Vec::new();
        for (j, e) in l.endpoints.iter().enumerate() {
            let Some((node, iface)) = e.split_once(':') else {
                problems.push(format!(
                    "{at}.endpoints[{j}]: {e:?} is not \"node:interface\""
                ));
                continue;
            };
            if !topo.nodes.contains_key(node) {
                problems.push(format!(
                    "{at}.endpoints[{j}]: node {node:?} is not in topology.nodes"
                ));
            }
            if let Err(m) = check_ifname(iface) {
                problems.push(format!("{at}.endpoints[{j}]: {m}"));
            }
            let list = ifaces.entry(node.to_owned()).or_default();
            if list.iter().any(|x| x == iface) {
                problems.push(format!(
                    "{at}.endpoints[{j}]: {node}:{iface} is already used by another link"
                ));
            }
            list.push(iface.to_owned());
            ends.push(Endpoint {
                node: node.to_owned(),
                interface: iface.to_owned(),
            });
        }
        if let [a, b] = &ends[..] {
            if a.node == b.node {
                problems.push(format!("{at}: both ends are on node {}", a.node));
            }
            links.push(Link {
                a: a.clone(),
                b: b.clone(),
                mtu: l.mtu,
            });
        }
    }

    let mut nodes = Vec::new();
    for (name, raw) in &topo.nodes {
        let at = format!("topology.nodes.{name}");
        let n = inherit(topo, raw);
        check_other_fields(&at, raw, problems);
        if let Some(node) = resolve_node(name, &n, &at, &ifaces, path, problems) {
            nodes.push(node);
        }
    }

    // Lab-wide checks.
    let controllers: Vec<&str> = nodes
        .iter()
        .filter(|n| n.has(Role::Controller))
        .map(|n| n.name.as_str())
        .collect();
    if controllers.len() > 1 {
        problems.push(format!(
            "topology.nodes: more than one controller ({})",
            controllers.join(", ")
        ));
    }
    let has_controller = !controllers.is_empty();
    for n in nodes.iter_mut().filter(|n| n.has(Role::Agent)) {
        match n.agent_mode {
            None if has_controller => n.agent_mode = Some(AgentMode::Managed),
            None => n.agent_mode = Some(AgentMode::Standalone),
            Some(AgentMode::Managed) if !has_controller => problems.push(format!(
                "topology.nodes.{}.labels.rampart.agent-mode: managed needs a node with the controller role to enroll with",
                n.name
            )),
            Some(_) => {}
        }
    }
    let mut seen: BTreeMap<IpAddr, &str> = BTreeMap::new();
    for n in &nodes {
        for a in n.interfaces.iter().flat_map(|i| &i.addresses) {
            if let Some(other) = seen.insert(a.addr(), &n.name) {
                problems.push(format!(
                    "topology.nodes.{}.labels: address {} is also used by node {other}",
                    n.name,
                    a.addr()
                ));
            }
        }
    }
    for l in &links {
        for (e, other) in [(&l.a, &l.b), (&l.b, &l.a)] {
            let bridge = |x: &Endpoint| {
                nodes
                    .iter()
                    .any(|n| n.name == x.node && n.kind == Kind::Bridge)
            };
            if bridge(e) && bridge(other) {
                problems.push(format!(
                    "topology.links: {}:{} joins two bridges; link nodes to bridges instead",
                    e.node, e.interface
                ));
                break;
            }
        }
    }
    Lab {
        name: file.name.clone(),
        nodes,
        links,
    }
}

fn check_other_fields(at: &str, n: &ClabNode, problems: &mut Vec<String>) {
    for k in n.other.keys() {
        if !CLAB_NODE_FIELDS.contains(&k.as_str()) {
            problems.push(format!("{at}.{k}: not a containerlab node field"));
        }
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "one pass over the labels keeps every check next to the label it reads"
)]
fn resolve_node(
    name: &str,
    n: &ClabNode,
    at: &str,
    ifaces: &BTreeMap<String, Vec<String>>,
    path: &Path,
    problems: &mut Vec<String>,
) -> Option<Node> {
    let start = problems.len();
    let valid_name = !name.is_empty()
        && name.len() <= 15
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '-')
        && !name.starts_with('-');
    if !valid_name {
        problems.push(format!(
            "{at}: node name must be 1-15 characters of a-z, 0-9, _ and - (it names a namespace and, for bridges, an interface)"
        ));
    }
    let kind = match n.kind.as_deref() {
        None => {
            problems.push(format!("{at}.kind: missing"));
            None
        }
        Some(k) => Kind::parse(k).or_else(|| {
            problems.push(format!(
                "{at}.kind: {k:?} is not supported (supported: {})",
                Kind::ALL.map(Kind::as_str).join(", ")
            ));
            None
        }),
    };
    let label = |k: &str| n.labels.get(k).map(ToString::to_string);
    for k in n.labels.keys() {
        if k.starts_with("rampart.")
            && !KNOWN_LABELS.contains(&k.as_str())
            && !k.starts_with("rampart.address.")
            && !k.starts_with("rampart.label.")
        {
            problems.push(format!(
                "{at}.labels.{k}: unknown Rampart label (known: {}, rampart.address.<interface>, rampart.label.<key>)",
                KNOWN_LABELS.join(", ")
            ));
        }
    }

    // Roles.
    let mut roles = Vec::new();
    if let Some(text) = label("rampart.role") {
        for word in text.split(',').map(str::trim).filter(|w| !w.is_empty()) {
            match Role::parse(word) {
                Some(r) if roles.contains(&r) => {
                    problems.push(format!("{at}.labels.rampart.role: {word} is listed twice"));
                }
                Some(r) => roles.push(r),
                None => problems.push(format!(
                    "{at}.labels.rampart.role: unknown role {word:?} (roles: {})",
                    Role::ALL.map(Role::as_str).join(", ")
                )),
            }
        }
    }
    let role_problem = problems[start..]
        .iter()
        .any(|p| p.contains(".labels.rampart.role:"));
    if let Some(kind) = kind {
        if kind == Kind::Bridge {
            if !roles.is_empty() {
                problems.push(format!("{at}.labels.rampart.role: a bridge has no role"));
            }
        } else if roles.is_empty() && !role_problem {
            problems.push(format!(
                "{at}.labels.rampart.role: missing (what the node runs in the netns lab: {})",
                Role::ALL.map(Role::as_str).join(", ")
            ));
        }
        for r in &roles {
            if !r.kinds().contains(&kind) {
                problems.push(format!(
                    "{at}.labels.rampart.role: role {r} cannot run on kind {} (allowed: {})",
                    kind.as_str(),
                    r.kinds()
                        .iter()
                        .map(|k| k.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ));
            }
        }
        if kind != Kind::Linux && kind != Kind::Bridge && roles.len() > 1 {
            problems.push(format!(
                "{at}.labels.rampart.role: a {} node plays exactly one device role",
                kind.as_str()
            ));
        }
    }
    let devices: Vec<&Role> = roles.iter().filter(|r| r.device().is_some()).collect();
    if devices.len() > 1 {
        problems.push(format!(
            "{at}.labels.rampart.role: more than one device role ({}); a node is one inventory device",
            devices
                .iter()
                .map(|r| r.as_str())
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }

    // Interfaces and addresses.
    let names = ifaces.get(name).cloned().unwrap_or_default();
    let mut interfaces: Vec<Interface> = names
        .iter()
        .map(|i| Interface {
            name: i.clone(),
            addresses: Vec::new(),
        })
        .collect();
    for (key, value) in &n.labels {
        let iface = if key == "rampart.address" {
            "eth1"
        } else if let Some(i) = key.strip_prefix("rampart.address.") {
            i
        } else {
            continue;
        };
        let Some(slot) = interfaces.iter_mut().find(|i| i.name == iface) else {
            problems.push(format!(
                "{at}.labels.{key}: node has no interface {iface} in topology.links"
            ));
            continue;
        };
        for a in value
            .to_string()
            .split(',')
            .map(str::trim)
            .filter(|a| !a.is_empty())
        {
            match a.parse::<IpNet>() {
                Ok(net) => slot.addresses.push(net),
                Err(_) => problems.push(format!(
                    "{at}.labels.{key}: {a:?} is not an address with prefix length (10.0.0.11/24)"
                )),
            }
        }
    }
    if kind == Some(Kind::Bridge) && interfaces.iter().any(|i| !i.addresses.is_empty()) {
        problems.push(format!("{at}.labels: a bridge carries no addresses"));
    }

    // Routes.
    let mut routes = Vec::new();
    let connected = |via: IpAddr| {
        interfaces
            .iter()
            .flat_map(|i| &i.addresses)
            .any(|a| a.contains(&via))
    };
    if let Some(gw) = label("rampart.gateway") {
        match gw.trim().parse::<IpAddr>() {
            Ok(via) => {
                let dest = if via.is_ipv4() { "0.0.0.0/0" } else { "::/0" };
                routes.push(Route {
                    dest: dest.parse().unwrap_or_else(|_| IpNet::default()),
                    via,
                });
            }
            Err(_) => problems.push(format!(
                "{at}.labels.rampart.gateway: {gw:?} is not an IP address"
            )),
        }
    }
    if let Some(text) = label("rampart.routes") {
        for r in text.split(';').map(str::trim).filter(|r| !r.is_empty()) {
            let parsed = r.split_once(" via ").and_then(|(d, v)| {
                let dest = if d.trim() == "default" {
                    "0.0.0.0/0".parse().ok()
                } else {
                    d.trim().parse::<IpNet>().ok()
                };
                Some(Route {
                    dest: dest?,
                    via: v.trim().parse().ok()?,
                })
            });
            match parsed {
                Some(route) => routes.push(route),
                None => problems.push(format!(
                    "{at}.labels.rampart.routes: {r:?} is not \"PREFIX via ADDRESS\" (routes are separated by ';')"
                )),
            }
        }
    }
    for r in &routes {
        if !connected(r.via) {
            problems.push(format!(
                "{at}.labels: route to {} via {} is not on a subnet of the node's addresses",
                r.dest, r.via
            ));
        }
    }

    let mut flag = |k: &str| -> bool {
        match label(k).as_deref().map(str::trim) {
            None | Some("false" | "no" | "0") => false,
            Some("true" | "yes" | "1") => true,
            Some(other) => {
                problems.push(format!("{at}.labels.{k}: {other:?} is not true or false"));
                false
            }
        }
    };
    let forwarding = flag("rampart.forwarding");

    let mut http_ports = Vec::new();
    if roles.contains(&Role::Server) {
        let text = label("rampart.http-ports").unwrap_or_else(|| "80,8080".to_owned());
        for p in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match p.parse::<u16>() {
                Ok(port) if port > 0 => http_ports.push(port),
                _ => problems.push(format!(
                    "{at}.labels.rampart.http-ports: {p:?} is not a port"
                )),
            }
        }
    } else if label("rampart.http-ports").is_some() {
        problems.push(format!(
            "{at}.labels.rampart.http-ports: only a server role serves HTTP"
        ));
    }
    let port = match label("rampart.port") {
        None => None,
        Some(p) => match p.trim().parse::<u16>() {
            Ok(port) if port > 0 => Some(port),
            _ => {
                problems.push(format!("{at}.labels.rampart.port: {p:?} is not a port"));
                None
            }
        },
    };
    let agent_mode = match (roles.contains(&Role::Agent), label("rampart.agent-mode")) {
        // No label: nothing to run, or resolved lab-wide (managed when the
        // lab has a controller).
        (_, None) => None,
        (false, Some(_)) => {
            problems.push(format!(
                "{at}.labels.rampart.agent-mode: only an agent node runs rampart-agent"
            ));
            None
        }
        (true, Some(m)) => match m.trim() {
            "managed" => Some(AgentMode::Managed),
            "standalone" => Some(AgentMode::Standalone),
            other => {
                problems.push(format!(
                    "{at}.labels.rampart.agent-mode: {other:?} is not managed or standalone"
                ));
                None
            }
        },
    };
    let device = roles.iter().any(|r| r.device().is_some());
    if port.is_some() && !device {
        problems.push(format!(
            "{at}.labels.rampart.port: only a device role has a management port"
        ));
    }
    let node = Node {
        name: name.to_owned(),
        kind: kind.unwrap_or(Kind::Linux),
        image: n.image.clone(),
        roles,
        interfaces,
        routes,
        forwarding,
        exec: n.exec.clone().unwrap_or_default(),
        env: n
            .env
            .iter()
            .map(|(k, v)| (k.clone(), v.to_string()))
            .collect(),
        http_ports,
        port,
        credentials: label("rampart.credentials"),
        inventory_labels: n
            .labels
            .iter()
            .filter_map(|(k, v)| {
                k.strip_prefix("rampart.label.")
                    .map(|k| (k.to_owned(), v.to_string()))
            })
            .collect(),
        startup_config: n.startup_config.clone(),
        agent_mode,
    };
    if device && node.primary_address().is_none() {
        problems.push(format!(
            "{at}.labels.rampart.address: a device needs an address (the inventory and the simulator use it)"
        ));
    }
    let needs_address =
        node.has(Role::Controller) || node.has(Role::Server) || node.has(Role::Prometheus);
    if needs_address && node.primary_address().is_none() {
        problems.push(format!(
            "{at}.labels.rampart.address: a {} needs an address",
            node.roles
                .iter()
                .find(|r| matches!(r, Role::Controller | Role::Server | Role::Prometheus))
                .map_or("", |r| r.as_str())
        ));
    }
    if let Some(sc) = &node.startup_config {
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if !base.join(sc).is_file() {
            problems.push(format!(
                "{at}.startup-config: {sc} does not exist (relative to {})",
                base.display()
            ));
        }
    }
    for (i, b) in n.binds.iter().flatten().enumerate() {
        let src = b.split(':').next().unwrap_or_default();
        let base = path.parent().unwrap_or_else(|| Path::new("."));
        if src.is_empty() || !base.join(src).exists() {
            problems.push(format!(
                "{at}.binds[{i}]: source {src:?} does not exist (relative to {})",
                base.display()
            ));
        }
    }
    if node.kind != Kind::Linux && !node.exec.is_empty() && node.kind != Kind::Bridge {
        // containerlab runs exec inside vrnetlab's launcher container, not on
        // the router: almost always a mistake.
        problems.push(format!(
            "{at}.exec: exec on a {} node runs in vrnetlab's launcher, not on the device; use startup-config",
            node.kind.as_str()
        ));
    }
    (problems.len() == start).then_some(node)
}
