//! `up`, `status` and `down` of a netns lab.
//!
//! `up` validates the whole topology before touching anything, records each
//! object in the state file before creating it, and on any failure tears
//! down what exists and reports the failing step. `down` removes what the
//! state file lists *and* everything carrying the lab's name (namespaces
//! `rl-<lab>-*`, the host link `rl-<lab>`, processes marked with
//! [`MARKER`]`=<lab>` or living in the lab's namespaces, bpffs pins under
//! `/sys/fs/bpf/rampart-lab-<lab>`), so it also cleans up after a crash.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use thiserror::Error;

use crate::{
    MGMT_IF, inventory,
    state::{Mgmt, NodeState, Proc, State, StateError},
    sys::{self, SysError},
    topology::{self, AgentMode, Kind, Lab, Node, Role, TopologyError},
};

/// Environment variable marking every process of a lab (value: lab name).
/// Never exported by the env file, so a shell that sourced it is safe.
pub const MARKER: &str = "RAMPART_LAB_MEMBER";

/// Where agents of lab `lab` pin their BPF objects.
#[must_use]
pub fn bpf_root(lab: &str) -> PathBuf {
    PathBuf::from(format!("/sys/fs/bpf/rampart-lab-{lab}"))
}

/// Root of the per-lab runtime directories (netconfd's private /etc).
pub const RUN_DIR: &str = "/run/rampart-lab";

/// Runtime directory of lab `lab`.
#[must_use]
pub fn run_dir(lab: &str) -> PathBuf {
    Path::new(RUN_DIR).join(lab)
}

/// Namespace of `node` in lab `lab`.
#[must_use]
pub fn ns_name(lab: &str, node: &str) -> String {
    format!("rl-{lab}-{node}")
}

/// The host-side management interface of lab `lab`.
#[must_use]
pub fn host_if(lab: &str) -> String {
    format!("rl-{lab}")
}

/// Lab operation failures.
#[derive(Debug, Error)]
pub enum LabError {
    /// The topology is invalid.
    #[error(transparent)]
    Topology(#[from] TopologyError),
    /// The state file is unusable.
    #[error(transparent)]
    State(#[from] StateError),
    /// A prerequisite is missing (binary, tool, models).
    #[error("{what} is missing: {hint}")]
    Missing {
        /// What.
        what: String,
        /// How to get it.
        hint: String,
    },
    /// The lab name cannot name namespaces and links.
    #[error("{reason}")]
    InvalidName {
        /// Why.
        reason: String,
    },
    /// The runner itself failed (a bug); what it built was removed.
    #[error("rampart-lab panicked ({message}); what it built was removed — please report it")]
    Bug {
        /// The panic message.
        message: String,
    },
    /// A step of `up` failed (everything was torn down again).
    #[error("node {node}: {step}: {source}")]
    Step {
        /// The node (or `lab`).
        node: String,
        /// What was being done.
        step: String,
        /// Cause.
        #[source]
        source: SysError,
    },
    /// A process did not become ready.
    #[error("node {node}: {process} not ready: {reason}\n--- {log} (tail) ---\n{tail}")]
    NotReady {
        /// The node.
        node: String,
        /// The process.
        process: String,
        /// What was awaited.
        reason: String,
        /// Its log file.
        log: String,
        /// The end of its log.
        tail: String,
    },
    /// `down` could not remove everything.
    #[error("lab {lab}: left behind after down: {left}")]
    Leftovers {
        /// Lab name.
        lab: String,
        /// What is still there.
        left: String,
    },
    /// A file of the lab could not be written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
    move |source| LabError::Io {
        path: path.to_owned(),
        source,
    }
}

/// Where things are: project tree, binaries, vendor models, state.
#[derive(Debug, Clone)]
pub struct Env {
    /// Project root (for `testbed/sims`).
    pub root: PathBuf,
    /// Directory holding rampartd, rampart-agent and rampart-lab.
    pub bin_dir: PathBuf,
    /// The Cisco IOS-XE 16.9.3 YANG models netconfd loads.
    pub cisco_yang: PathBuf,
    /// The lab's state directory.
    pub state_dir: PathBuf,
    /// How long processes get to become ready.
    pub ready_timeout: Duration,
}

impl Env {
    fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    fn node_dir(&self, node: &str) -> PathBuf {
        self.state_dir.join("nodes").join(node)
    }
    fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

/// What `up` did.
#[derive(Debug, PartialEq, Eq)]
pub enum UpOutcome {
    /// The lab was built.
    Created,
    /// The same lab was already up and healthy: nothing done.
    AlreadyUp,
}

// ===== up =====

/// Brings the lab up (idempotent: a healthy lab of the same topology is left
/// alone; anything else of that name is torn down first).
///
/// # Errors
/// [`LabError`]; after a failure nothing of the lab remains.
pub fn up(topology_path: &Path, env: &Env) -> Result<(State, UpOutcome), LabError> {
    let lab = topology::load(topology_path)?;
    if let Some(state) = State::load(&env.state_file())?
        && state.complete
        && state.spec == lab
        && status(&state).healthy()
    {
        return Ok((state, UpOutcome::AlreadyUp));
    }
    if State::load(&env.state_file()).ok().flatten().is_some() || !leftovers(&lab.name).is_empty() {
        tracing::info!(lab = %lab.name, "removing the previous lab of that name first");
        down(&lab.name, env)?;
    }
    preflight(&lab, env)?;
    fs::create_dir_all(env.log_dir()).map_err(io(&env.log_dir()))?;
    let mut state = State::new(&lab, topology_path);
    state.save(&env.state_file())?;
    // A bug must not leave a half-built lab behind either.
    let built = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        build(&lab, env, &mut state)
    }))
    .unwrap_or_else(|panic| {
        let what = panic
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| panic.downcast_ref::<&str>().map(|s| (*s).to_owned()))
            .unwrap_or_default();
        Err(LabError::Bug { message: what })
    });
    match built {
        Ok(()) => {
            state.complete = true;
            state.save(&env.state_file())?;
            Ok((state, UpOutcome::Created))
        }
        Err(e) => {
            tracing::error!(lab = %lab.name, error = %e, "up failed; removing what was created");
            if let Err(d) = down(&lab.name, env) {
                tracing::error!(lab = %lab.name, error = %d, "cleanup after the failure was incomplete");
            }
            Err(e)
        }
    }
}

fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

fn python() -> PathBuf {
    // The simulators need only the standard library: prefer the system
    // interpreter over whatever shim is first on PATH.
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        system
    } else {
        PathBuf::from("python3")
    }
}

/// Checks every prerequisite before anything is created.
fn preflight(lab: &Lab, env: &Env) -> Result<(), LabError> {
    let missing = |what: &str, hint: &str| LabError::Missing {
        what: what.to_owned(),
        hint: hint.to_owned(),
    };
    for tool in ["ip", "nsenter"] {
        if !which(tool) {
            return Err(missing(tool, "apt-get install iproute2 util-linux"));
        }
    }
    let roles: BTreeSet<Role> = lab.nodes.iter().flat_map(|n| n.roles.clone()).collect();
    if roles.contains(&Role::Controller) && !env.bin_dir.join("rampartd").is_file() {
        return Err(missing(
            &env.bin_dir.join("rampartd").display().to_string(),
            "build it: cargo build -p rampart-controller (or pass --bin-dir)",
        ));
    }
    if roles.contains(&Role::NetconfDevice) {
        for bin in [
            "/usr/sbin/netconfd",
            "/usr/sbin/sshd",
            "/usr/sbin/netconf-subsystem",
        ] {
            if !Path::new(bin).is_file() {
                return Err(missing(bin, "run scripts/install/netconfd.sh"));
            }
        }
        for tool in ["unshare", "setpriv", "ssh-keygen", "openssl"] {
            if !which(tool) {
                return Err(missing(tool, "run scripts/install/netconfd.sh"));
            }
        }
        if !env.cisco_yang.join("Cisco-IOS-XE-native.yang").is_file() {
            return Err(missing(
                &format!("Cisco IOS-XE models in {}", env.cisco_yang.display()),
                "they live in ../shared/yang/cisco-xe-16.9.3 (or pass --vendor-yang)",
            ));
        }
    }
    let sims = [Role::SimMeraki, Role::SimFdm, Role::SimAsa, Role::SimSdwan];
    if sims.iter().any(|r| roles.contains(r)) {
        let dir = env.root.join("testbed/sims");
        if !dir.join("simlib.py").is_file() {
            return Err(missing(
                &format!("the simulators in {}", dir.display()),
                "pass --root (the project checkout)",
            ));
        }
        if !which("openssl") {
            return Err(missing("openssl", "apt-get install openssl"));
        }
    }
    if roles.contains(&Role::SimAsa) && !Path::new("/usr/sbin/sshd").is_file() {
        return Err(missing("/usr/sbin/sshd", "run scripts/install/netconfd.sh"));
    }
    // Managed agents enroll with a token the runner creates through
    // rampartctl, and run in their own UTS namespace so each reports its
    // node's name as host name.
    let managed = lab
        .nodes
        .iter()
        .any(|n| n.agent_mode == Some(AgentMode::Managed));
    if managed && env.bin_dir.join("rampart-agent").is_file() {
        if !env.bin_dir.join("rampartctl").is_file() {
            return Err(missing(
                &env.bin_dir.join("rampartctl").display().to_string(),
                "managed agents enroll through it: cargo build -p rampartctl (or set rampart.agent-mode: standalone)",
            ));
        }
        if !Path::new("/usr/bin/unshare").is_file() {
            return Err(missing("/usr/bin/unshare", "apt-get install util-linux"));
        }
    }
    Ok(())
}

fn step(node: &str, what: impl Into<String>) -> impl FnOnce(SysError) -> LabError {
    let node = node.to_owned();
    let what = what.into();
    move |source| LabError::Step {
        node,
        step: what,
        source,
    }
}

#[allow(
    clippy::too_many_lines,
    reason = "the build order reads best as one sequence"
)]
fn build(lab: &Lab, env: &Env, state: &mut State) -> Result<(), LabError> {
    let file = env.state_file();
    let name = &lab.name;

    // Namespaces.
    for n in &lab.nodes {
        let ns = ns_name(name, &n.name);
        state.namespaces.push(ns.clone());
        state.nodes.insert(
            n.name.clone(),
            NodeState {
                ns: ns.clone(),
                roles: n.roles.iter().map(ToString::to_string).collect(),
                ..NodeState::default()
            },
        );
        state.save(&file)?;
        sys::ip(&["netns", "add", &ns]).map_err(step(&n.name, "create namespace"))?;
        sys::ip_in(&ns, &["link", "set", "lo", "up"]).map_err(step(&n.name, "loopback up"))?;
        if n.kind == Kind::Bridge {
            sys::ip_in(&ns, &["link", "add", &n.name, "type", "bridge"])
                .map_err(step(&n.name, "create bridge"))?;
            sys::ip_in(&ns, &["link", "set", &n.name, "up"]).map_err(step(&n.name, "bridge up"))?;
        }
    }

    // Links.
    for l in &lab.links {
        let (na, nb) = (ns_name(name, &l.a.node), ns_name(name, &l.b.node));
        let what = format!(
            "link {}:{} - {}:{}",
            l.a.node, l.a.interface, l.b.node, l.b.interface
        );
        sys::ip(&[
            "link",
            "add",
            &l.a.interface,
            "netns",
            &na,
            "type",
            "veth",
            "peer",
            "name",
            &l.b.interface,
            "netns",
            &nb,
        ])
        .map_err(step(&l.a.node, what.clone()))?;
        for (ns, e) in [(&na, &l.a), (&nb, &l.b)] {
            if let Some(mtu) = l.mtu {
                sys::ip_in(ns, &["link", "set", &e.interface, "mtu", &mtu.to_string()])
                    .map_err(step(&e.node, format!("{what}: mtu")))?;
            }
            let is_bridge = lab.node(&e.node).is_some_and(|n| n.kind == Kind::Bridge);
            if is_bridge {
                sys::ip_in(ns, &["link", "set", &e.interface, "master", &e.node])
                    .map_err(step(&e.node, format!("{what}: bridge port")))?;
            }
            sys::ip_in(ns, &["link", "set", &e.interface, "up"])
                .map_err(step(&e.node, format!("{what}: up")))?;
        }
    }

    // Addresses, routes, forwarding.
    for n in &lab.nodes {
        let ns = ns_name(name, &n.name);
        let ns_state = state.nodes.entry(n.name.clone()).or_default();
        for i in &n.interfaces {
            for a in &i.addresses {
                sys::ip_in(&ns, &["addr", "add", &a.to_string(), "dev", &i.name])
                    .map_err(step(&n.name, format!("address {a} on {}", i.name)))?;
                ns_state.addresses.push(format!("{} {a}", i.name));
            }
        }
        for r in &n.routes {
            sys::ip_in(
                &ns,
                &[
                    "route",
                    "replace",
                    &r.dest.to_string(),
                    "via",
                    &r.via.to_string(),
                ],
            )
            .map_err(step(&n.name, format!("route {} via {}", r.dest, r.via)))?;
        }
        if n.forwarding {
            sys::run(
                "nsenter",
                &[
                    &format!("--net={}/{ns}", sys::NETNS_DIR),
                    "sh",
                    "-c",
                    "echo 1 > /proc/sys/net/ipv4/ip_forward",
                ],
            )
            .map_err(step(&n.name, "ip forwarding"))?;
        }
    }

    // Management link host <-> controller.
    if let Some(ctl) = lab.controller() {
        let host = host_if(name);
        state.host_links.push(host.clone());
        state.save(&file)?;
        let (host_addr, node_addr) = free_mgmt_subnet(name);
        let ns = ns_name(name, &ctl.name);
        sys::ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", MGMT_IF, "netns", &ns,
        ])
        .map_err(step(&ctl.name, "management link"))?;
        sys::ip(&["addr", "add", &format!("{host_addr}/30"), "dev", &host])
            .map_err(step(&ctl.name, "management address (host)"))?;
        sys::ip(&["link", "set", &host, "up"]).map_err(step(&ctl.name, "management link up"))?;
        sys::ip_in(
            &ns,
            &["addr", "add", &format!("{node_addr}/30"), "dev", MGMT_IF],
        )
        .map_err(step(&ctl.name, "management address (controller)"))?;
        sys::ip_in(&ns, &["link", "set", MGMT_IF, "up"])
            .map_err(step(&ctl.name, "management link up"))?;
        state.mgmt = Some(Mgmt {
            host_if: host,
            host_addr: format!("{host_addr}/30"),
            node_addr: node_addr.to_string(),
        });
        if let Some(s) = state.nodes.get_mut(&ctl.name) {
            s.addresses.push(format!("{MGMT_IF} {node_addr}/30"));
        }
        state.save(&file)?;
    }

    // exec commands of linux nodes, in the node's namespace.
    for n in lab.nodes.iter().filter(|n| n.kind == Kind::Linux) {
        let ns = ns_name(name, &n.name);
        for (i, cmd) in n.exec.iter().enumerate() {
            sys::run_env(
                "nsenter",
                &[&format!("--net={}/{ns}", sys::NETNS_DIR), "sh", "-c", cmd],
                &lab_env(lab),
            )
            .map_err(step(&n.name, format!("exec[{i}] {cmd:?}")))?;
        }
    }

    // Processes: devices and servers first, then the controller (it needs
    // the devices' credentials), then agents.
    let mut creds: BTreeMap<String, String> = BTreeMap::new();
    let mut extra_env: BTreeMap<String, String> = BTreeMap::new();
    let mut pending: Vec<Pending> = Vec::new();
    for n in &lab.nodes {
        for role in &n.roles {
            let p = match role {
                Role::NetconfDevice => Some(start_netconf(lab, n, env, &mut creds)?),
                Role::SimMeraki | Role::SimFdm | Role::SimSdwan | Role::SimAsa => {
                    Some(start_sim(lab, n, *role, env, &mut creds)?)
                }
                Role::Server => Some(start_server(lab, n, env)?),
                Role::Controller | Role::Agent | Role::Client => None,
            };
            if let Some(p) = p {
                record(state, &n.name, &p);
                state.save(&file)?;
                pending.push(p);
            }
        }
    }
    wait_ready(&mut pending, env, state, &mut creds, &mut extra_env)?;
    state.save(&file)?;
    // One PEM bundle of every HTTPS simulator's throw-away CA, for
    // rampartd's REST drivers (`[southbound] ca_bundle` in its config),
    // written before rampartd starts.
    let mut bundle = String::new();
    for s in state.nodes.values() {
        if let Some(cert) = s.info.get("cert") {
            bundle.push_str(&fs::read_to_string(cert).map_err(io(Path::new(cert)))?);
        }
    }
    let bundle_path = env.state_dir.join("sims-ca.pem");
    fs::write(&bundle_path, bundle).map_err(io(&bundle_path))?;

    let mut pending = Vec::new();
    if let Some(ctl) = lab.controller() {
        let p = start_controller(lab, ctl, env, state, &creds)?;
        record(state, &ctl.name, &p);
        state.save(&file)?;
        pending.push(p);
    }
    // Managed agents enroll with tokens the running controller issues.
    wait_ready(&mut pending, env, state, &mut creds, &mut extra_env)?;
    for n in lab.nodes.iter().filter(|n| n.has(Role::Agent)) {
        match start_agent(lab, n, env, state)? {
            Some(p) => {
                record(state, &n.name, &p);
                state.save(&file)?;
                pending.push(p);
            }
            None => {
                let bin = env.bin_dir.join("rampart-agent");
                let note = format!(
                    "agent-missing: {} not found (cargo build -p rampart-agent); the host runs without an agent",
                    bin.display()
                );
                tracing::warn!(node = %n.name, "{note}");
                if let Some(s) = state.nodes.get_mut(&n.name) {
                    s.notes.push(note);
                }
            }
        }
    }
    wait_ready(&mut pending, env, state, &mut creds, &mut extra_env)?;
    wait_enrolled(lab, env, state)?;
    state.save(&file)?;

    // Inventory and env file.
    let inv = inventory::from_lab(lab);
    let inv_path = env.state_dir.join("inventory.yaml");
    inventory::write(
        &inv_path,
        &inv,
        &format!(
            "# Rampart inventory of lab {} (written by rampart-lab up from {}).\n# credentialsRef variables are in lab.env and in rampartd's environment.\n",
            lab.name,
            state.topology.display()
        ),
    )
    .map_err(|e| LabError::Io {
        path: inv_path.clone(),
        source: std::io::Error::other(e.to_string()),
    })?;
    state.inventory = Some(inv_path);
    let env_path = env.state_dir.join("lab.env");
    write_env_file(&env_path, lab, env, state, &creds, &extra_env)?;
    state.env_file = Some(env_path);
    Ok(())
}

/// Picks a free 169.254.x.y/30 for the host-controller link: derived from
/// the lab name (stable across runs), skipping subnets already in use.
fn free_mgmt_subnet(lab: &str) -> (Ipv4Addr, Ipv4Addr) {
    let used = sys::ip(&["-o", "-4", "addr", "show"]).unwrap_or_default();
    mgmt_subnet(lab, &used)
}

/// [`free_mgmt_subnet`] given `ip -o -4 addr show`'s output.
fn mgmt_subnet(lab: &str, used: &str) -> (Ipv4Addr, Ipv4Addr) {
    let mut h: u32 = 2_166_136_261;
    for b in lab.bytes() {
        h = (h ^ u32::from(b)).wrapping_mul(16_777_619);
    }
    for i in 0..4096u32 {
        let v = h.wrapping_add(i.wrapping_mul(7919)) % (250 * 64);
        let third = 1 + v / 64;
        if third == 169 || third == 254 {
            continue;
        }
        let base = (v % 64) * 4;
        let (Ok(third), Ok(base)) = (u8::try_from(third), u8::try_from(base)) else {
            continue;
        };
        let net = format!("169.254.{third}.");
        let taken = (0..4u8).any(|o| used.contains(&format!("inet {net}{}/", base + o)));
        if !taken {
            return (
                Ipv4Addr::new(169, 254, third, base + 1),
                Ipv4Addr::new(169, 254, third, base + 2),
            );
        }
    }
    (
        Ipv4Addr::new(169, 254, 250, 1),
        Ipv4Addr::new(169, 254, 250, 2),
    )
}

/// A started process waiting to be ready.
struct Pending {
    child: std::process::Child,
    node: String,
    proc: Proc,
    ns: String,
    ready: Ready,
}

enum Ready {
    /// TCP connections accepted on every address (inside the namespace).
    Tcp(Vec<SocketAddr>),
    /// The simulator printed its start-up lines (`LISTENING`, ...).
    SimLines { asa: bool, cred_var: String },
    /// rampartd: TCP open and its token/CA written.
    Controller {
        addr: SocketAddr,
        files: Vec<PathBuf>,
    },
}

fn record(state: &mut State, node: &str, p: &Pending) {
    if let Some(s) = state.nodes.get_mut(node) {
        s.processes.push(p.proc.clone());
    }
}

fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn wait_ready(
    pending: &mut Vec<Pending>,
    env: &Env,
    state: &mut State,
    creds: &mut BTreeMap<String, String>,
    extra: &mut BTreeMap<String, String>,
) -> Result<(), LabError> {
    let deadline = Instant::now() + env.ready_timeout;
    while !pending.is_empty() {
        let mut i = 0;
        while i < pending.len() {
            let exited = pending[i].child.try_wait().ok().flatten();
            let p = &pending[i];
            if exited.is_some() || !sys::alive(p.proc.pid, p.proc.started) {
                return Err(LabError::NotReady {
                    node: p.node.clone(),
                    process: p.proc.name.clone(),
                    reason: match exited {
                        Some(status) => format!("it exited ({status})"),
                        None => "it is gone".to_owned(),
                    },
                    log: p.proc.log.display().to_string(),
                    tail: tail(&p.proc.log, 30),
                });
            }
            let done = match &p.ready {
                Ready::Tcp(addrs) => addrs.iter().all(|a| sys::tcp_open(&p.ns, *a)),
                Ready::Controller { addr, files } => {
                    files.iter().all(|f| f.is_file()) && sys::tcp_open(&p.ns, *addr)
                }
                Ready::SimLines { asa, cred_var } => {
                    let text = fs::read_to_string(&p.proc.log).unwrap_or_default();
                    let lines = sim_lines(&text);
                    let complete = lines.contains_key("LISTENING")
                        && (!*asa || lines.contains_key("CREDENTIALS"));
                    if complete {
                        let info = &mut state.nodes.entry(p.node.clone()).or_default().info;
                        for (k, v) in &lines {
                            // The password is in lab.env, not in status output.
                            let v = if k == "CREDENTIALS" {
                                v.split(' ').next().unwrap_or_default().to_owned()
                            } else {
                                v.clone()
                            };
                            info.insert(k.to_lowercase(), v);
                        }
                        if *asa {
                            let parts: Vec<&str> = lines["CREDENTIALS"].split(' ').collect();
                            if let [user, pass, enable] = parts[..] {
                                // rampartd's ASA driver reads user:password:enable.
                                creds.insert(cred_var.clone(), format!("{user}:{pass}:{enable}"));
                            }
                        }
                        if let Some(cert) = lines.get("CERT") {
                            extra.insert(cred_var.replace("_PASSWORD", "_CA_CERT"), cert.clone());
                        }
                    }
                    complete
                }
            };
            if done {
                tracing::info!(node = %p.node, process = %p.proc.name, pid = p.proc.pid, "ready");
                pending.remove(i);
            } else {
                i += 1;
            }
        }
        if pending.is_empty() {
            break;
        }
        if Instant::now() > deadline {
            let p = &pending[0];
            return Err(LabError::NotReady {
                node: p.node.clone(),
                process: p.proc.name.clone(),
                reason: format!("not ready after {:?}", env.ready_timeout),
                log: p.proc.log.display().to_string(),
                tail: tail(&p.proc.log, 30),
            });
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// The start-up lines of a simulator (`LISTENING a:p`, `CERT f`, ...).
fn sim_lines(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| {
            let (k, v) = l.split_once(' ')?;
            matches!(k, "LISTENING" | "CERT" | "ADMIN" | "CREDENTIALS")
                .then(|| (k.to_owned(), v.trim().to_owned()))
        })
        .collect()
}

fn lab_env(lab: &Lab) -> Vec<(String, String)> {
    vec![
        (MARKER.to_owned(), lab.name.clone()),
        // Logs go to files: no terminal colour codes in them.
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ]
}

fn random_secret() -> String {
    let mut buf = [0u8; 12];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut buf);
    }
    hex::encode(buf)
}

fn primary(n: &Node) -> IpAddr {
    n.primary_address()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}

// ===== roles =====

/// User netconfd runs as and the controller logs in as (exists only in
/// the device's private /etc).
pub const NETCONF_USER: &str = "rplab";
const NETCONF_UID: u32 = 47_010;

const NETCONF_LAUNCH: &str = r#"#!/bin/bash
# netconfd with the Cisco models behind a private sshd, in its own mount
# namespace with a private /etc (rampart-lab; same approach as the
# controller's test harness).
set -euo pipefail
T=$1; PORT=$2; MODS=$3; UID_=$4; USER_=$5
mount --make-rprivate /
# Drop the copies of namespace handles this mount namespace inherited, so
# it never keeps another lab's namespaces alive.
for f in /run/netns/*; do umount "$f" 2>/dev/null || true; done
cp -a /etc/. "$T/etc/"
echo "$USER_:x:$UID_:$UID_::$T/home:/bin/sh" >> "$T/etc/passwd"
echo "$USER_:x:$UID_:" >> "$T/etc/group"
echo "$USER_:$(cat "$T/pwhash"):19000:0:99999:7:::" >> "$T/etc/shadow"
mount --bind "$T/etc" /etc
mkdir -p /run/sshd
setpriv --reuid="$UID_" --regid="$UID_" --clear-groups env HOME="$T/home" \
  /usr/sbin/netconfd --ncxserver-sockname="$T/home/ncx.sock" --port="$PORT" \
  --modpath="$T/yang:/usr/share/yuma/modules" $MODS --no-startup --superuser="$USER_" \
  --log="$T/home/netconfd.log" --log-level=info &
for _ in $(seq 1 400); do [ -S "$T/home/ncx.sock" ] && break; sleep 0.025; done
[ -S "$T/home/ncx.sock" ] || { echo "netconfd did not start"; cat "$T/home/netconfd.log"; exit 1; }
exec /usr/sbin/sshd -D -e -f "$T/sshd_config"
"#;

/// Modules netconfd loads from the 16.9.3 set.
const NETCONF_MODULES: [&str; 4] = [
    "Cisco-IOS-XE-native",
    "Cisco-IOS-XE-acl",
    "Cisco-IOS-XE-nat",
    "Cisco-IOS-XE-bgp",
];

fn start_netconf(
    lab: &Lab,
    n: &Node,
    env: &Env,
    creds: &mut BTreeMap<String, String>,
) -> Result<Pending, LabError> {
    // Under /run, not the state directory: the unprivileged server user must
    // reach its home, whatever the permissions of the project checkout.
    let dir = run_dir(&lab.name).join(&n.name);
    for sub in ["etc", "home", "yang"] {
        fs::create_dir_all(dir.join(sub)).map_err(io(&dir))?;
    }
    for d in [PathBuf::from(RUN_DIR), run_dir(&lab.name), dir.clone()] {
        fs::set_permissions(&d, fs::Permissions::from_mode(0o755)).map_err(io(&d))?;
    }
    std::os::unix::fs::chown(dir.join("home"), Some(NETCONF_UID), Some(NETCONF_UID))
        .map_err(io(&dir))?;
    // Module farm: symlinks to the models, plus the one file yuma123 needs
    // rewritten (`{,3}` is not a quantifier it accepts; `{0,3}` means the same).
    let yang = dir.join("yang");
    let entries = fs::read_dir(&env.cisco_yang).map_err(io(&env.cisco_yang))?;
    for e in entries.filter_map(Result::ok) {
        let path = e.path();
        let fname = e.file_name();
        if path.extension().is_some_and(|x| x == "yang") && fname != "Cisco-IOS-XE-acl.yang" {
            let link = yang.join(&fname);
            if !link.exists() {
                std::os::unix::fs::symlink(&path, &link).map_err(io(&link))?;
            }
        }
    }
    let acl_src = env.cisco_yang.join("Cisco-IOS-XE-acl.yang");
    let acl = fs::read_to_string(&acl_src).map_err(io(&acl_src))?;
    fs::write(
        yang.join("Cisco-IOS-XE-acl.yang"),
        acl.replace("{,3}", "{0,3}"),
    )
    .map_err(io(&yang))?;

    let password = random_secret();
    let hash = sys::run("openssl", &["passwd", "-6", &password])
        .map_err(step(&n.name, "hash the NETCONF password"))?;
    fs::write(dir.join("pwhash"), hash.trim()).map_err(io(&dir))?;
    fs::write(dir.join("launch.sh"), NETCONF_LAUNCH).map_err(io(&dir))?;
    let hostkey = dir.join("hostkey");
    if !hostkey.exists() {
        sys::run(
            "ssh-keygen",
            &[
                "-q",
                "-t",
                "ed25519",
                "-N",
                "",
                "-C",
                &n.name,
                "-f",
                &hostkey.display().to_string(),
            ],
        )
        .map_err(step(&n.name, "ssh host key"))?;
    }
    let (_, _, port) = n.device().unwrap_or((Role::NetconfDevice, "iosxe", 830));
    let addr = primary(n);
    // netconfd binds no TCP port: `--port` is the SSH port it accepts
    // sessions for, which netconf-subsystem reports from its sockname.
    let ncx_port = port;
    let t = dir.display();
    fs::write(
        dir.join("sshd_config"),
        format!(
            "Port {port}\nListenAddress {addr}\nHostKey {t}/hostkey\nPidFile {t}/sshd.pid\nUsePAM no\n\
             PasswordAuthentication yes\nPubkeyAuthentication yes\nStrictModes no\nAllowUsers {NETCONF_USER}\n\
             MaxSessions 100\nMaxStartups 100:30:200\n\
             Subsystem netconf \"/usr/sbin/netconf-subsystem --ncxserver-sockname={ncx_port}@{t}/home/ncx.sock\"\n"
        ),
    )
    .map_err(io(&dir))?;
    let host_pub = fs::read_to_string(dir.join("hostkey.pub")).map_err(io(&dir))?;
    let mut parts = host_pub.split_whitespace();
    let (kt, kb) = (
        parts.next().unwrap_or_default(),
        parts.next().unwrap_or_default(),
    );
    let known = if port == 22 {
        format!("{addr} {kt} {kb}\n")
    } else {
        format!("[{addr}]:{port} {kt} {kb}\n")
    };
    fs::write(dir.join("known_hosts"), known).map_err(io(&dir))?;
    let mods: Vec<String> = NETCONF_MODULES
        .iter()
        .map(|m| format!("--module={m}"))
        .collect();
    let log = env.log_dir().join(format!("{}-netconfd.log", n.name));
    let ns = ns_name(&lab.name, &n.name);
    let (pid, started, child) = sys::spawn(
        Some(&ns),
        Path::new("/usr/bin/unshare"),
        &[
            "-m".to_owned(),
            "bash".to_owned(),
            dir.join("launch.sh").display().to_string(),
            dir.display().to_string(),
            ncx_port.to_string(),
            mods.join(" "),
            NETCONF_UID.to_string(),
            NETCONF_USER.to_owned(),
        ],
        &lab_env(lab),
        &log,
    )
    .map_err(step(&n.name, "start netconfd"))?;
    creds.insert(
        topology::credentials_var(&n.name),
        format!("{NETCONF_USER}:{password}"),
    );
    Ok(Pending {
        child,
        node: n.name.clone(),
        proc: Proc {
            name: "netconfd+sshd".to_owned(),
            pid,
            started,
            log,
        },
        ns,
        ready: Ready::Tcp(vec![SocketAddr::new(addr, port)]),
    })
}

fn start_sim(
    lab: &Lab,
    n: &Node,
    role: Role,
    env: &Env,
    creds: &mut BTreeMap<String, String>,
) -> Result<Pending, LabError> {
    let (script, _) = match role {
        Role::SimMeraki => ("meraki_sim.py", ()),
        Role::SimFdm => ("fdm_sim.py", ()),
        Role::SimAsa => ("asa_sim.py", ()),
        _ => ("vmanage_sim.py", ()),
    };
    let dir = env.node_dir(&n.name);
    fs::create_dir_all(dir.join("tls")).map_err(io(&dir))?;
    let (_, _, port) = n.device().unwrap_or((role, "", 443));
    let addr = primary(n);
    let var = topology::credentials_var(&n.name);
    let mut args = vec![
        env.root
            .join("testbed/sims")
            .join(script)
            .display()
            .to_string(),
        "--host".to_owned(),
        addr.to_string(),
        "--port".to_owned(),
        port.to_string(),
        "--state-file".to_owned(),
        dir.join("sim-state.json").display().to_string(),
    ];
    match role {
        Role::SimAsa => {
            args.extend(["--hostname".to_owned(), n.name.clone()]);
        }
        Role::SimMeraki => {
            let key = random_secret();
            args.extend(["--api-key".to_owned(), key.clone()]);
            args.extend([
                "--cert-dir".to_owned(),
                dir.join("tls").display().to_string(),
            ]);
            creds.insert(var.clone(), format!("meraki:{key}"));
        }
        _ => {
            let password = random_secret();
            args.extend(["--username".to_owned(), "admin".to_owned()]);
            args.extend(["--password".to_owned(), password.clone()]);
            args.extend([
                "--cert-dir".to_owned(),
                dir.join("tls").display().to_string(),
            ]);
            creds.insert(var.clone(), format!("admin:{password}"));
        }
    }
    let log = env
        .log_dir()
        .join(format!("{}-{}.log", n.name, script.trim_end_matches(".py")));
    let ns = ns_name(&lab.name, &n.name);
    let (pid, started, child) = sys::spawn(Some(&ns), &python(), &args, &lab_env(lab), &log)
        .map_err(step(&n.name, format!("start {script}")))?;
    Ok(Pending {
        child,
        node: n.name.clone(),
        proc: Proc {
            name: script.trim_end_matches(".py").to_owned(),
            pid,
            started,
            log,
        },
        ns,
        ready: Ready::SimLines {
            asa: role == Role::SimAsa,
            cred_var: var,
        },
    })
}

fn start_server(lab: &Lab, n: &Node, env: &Env) -> Result<Pending, LabError> {
    let me = std::env::current_exe().unwrap_or_else(|_| env.bin_dir.join("rampart-lab"));
    let mut args = vec!["http-serve".to_owned(), "--name".to_owned(), n.name.clone()];
    for p in &n.http_ports {
        args.extend(["--listen".to_owned(), format!("0.0.0.0:{p}")]);
    }
    let log = env.log_dir().join(format!("{}-http.log", n.name));
    let ns = ns_name(&lab.name, &n.name);
    let (pid, started, child) = sys::spawn(Some(&ns), &me, &args, &lab_env(lab), &log)
        .map_err(step(&n.name, "start the HTTP server"))?;
    let addr = primary(n);
    Ok(Pending {
        child,
        node: n.name.clone(),
        proc: Proc {
            name: "http-server".to_owned(),
            pid,
            started,
            log,
        },
        ns,
        ready: Ready::Tcp(
            n.http_ports
                .iter()
                .map(|p| SocketAddr::new(addr, *p))
                .collect(),
        ),
    })
}

/// The OpenSSH `known_hosts` lines of the lab's SSH devices: the key
/// `up` generated for each NETCONF device, and each ASA simulator's key read
/// with `ssh-keyscan` from inside the lab. rampartd checks host keys
/// strictly against it (no trust on first use).
fn known_hosts(lab: &Lab) -> Result<String, LabError> {
    let mut out = String::new();
    for n in &lab.nodes {
        if n.has(Role::NetconfDevice) {
            let f = run_dir(&lab.name).join(&n.name).join("known_hosts");
            out.push_str(&fs::read_to_string(&f).map_err(io(&f))?);
        }
        if n.has(Role::SimAsa) {
            let (_, _, port) = n.device().unwrap_or((Role::SimAsa, "asa", 22));
            let ns = ns_name(&lab.name, &n.name);
            let scan = sys::run(
                "nsenter",
                &[
                    &format!("--net={}/{ns}", sys::NETNS_DIR),
                    "ssh-keyscan",
                    "-T",
                    "5",
                    "-p",
                    &port.to_string(),
                    &primary(n).to_string(),
                ],
            )
            .map_err(step(&n.name, "read the SSH host key (ssh-keyscan)"))?;
            if !scan
                .lines()
                .any(|l| !l.starts_with('#') && !l.trim().is_empty())
            {
                return Err(LabError::Step {
                    node: n.name.clone(),
                    step: "read the SSH host key".to_owned(),
                    source: SysError::Failed {
                        command: "ssh-keyscan".to_owned(),
                        stderr: "no key returned".to_owned(),
                    },
                });
            }
            out.push_str(&scan);
        }
    }
    Ok(out)
}

/// rampartd's API port in the lab.
pub const API_PORT: u16 = 50051;
/// rampartd's metrics port in the lab.
pub const METRICS_PORT: u16 = 9464;
/// rampart-agent's metrics port in the lab.
pub const AGENT_METRICS_PORT: u16 = 9469;
/// rampartd's agent port (mutual TLS) in the lab.
pub const AGENT_PORT: u16 = 7443;
/// rampartd's fleet metrics port (`rampart_fleet_*`) in the lab.
pub const FLEET_METRICS_PORT: u16 = 9465;
/// Heartbeat period of the lab's managed agents: short, so counters (sent
/// every second heartbeat) reach the API within a second or so.
pub const AGENT_HEARTBEAT_MS: u64 = 500;

fn start_controller(
    lab: &Lab,
    n: &Node,
    env: &Env,
    state: &State,
    creds: &BTreeMap<String, String>,
) -> Result<Pending, LabError> {
    let dir = env.node_dir(&n.name);
    let data = dir.join("data");
    fs::create_dir_all(&data).map_err(io(&data))?;
    // `[southbound] known_hosts` defaults to <data_dir>/known_hosts.
    let kh = data.join("known_hosts");
    fs::write(&kh, known_hosts(lab)?).map_err(io(&kh))?;
    let mut sans: Vec<String> = n
        .interfaces
        .iter()
        .flat_map(|i| &i.addresses)
        .map(|a| a.addr().to_string())
        .collect();
    if let Some(m) = &state.mgmt {
        sans.push(m.node_addr.clone());
    }
    sans.push(n.name.clone());
    let quoted: Vec<String> = sans.iter().map(|s| format!("{s:?}")).collect();
    let config = dir.join("rampartd.toml");
    fs::write(
        &config,
        format!(
            "# rampartd in lab {} (written by rampart-lab)\n[api]\nlisten = \"0.0.0.0:{API_PORT}\"\n\n[metrics]\nenabled = true\nlisten = \"0.0.0.0:{METRICS_PORT}\"\n\n[store]\ndata_dir = {:?}\n\n[log]\nformat = \"text\"\nlevel = \"info\"\n\n[tls]\nextra_sans = [{}]\n\n[agents]\n# Managed agents of the lab enroll and stream here (mutual TLS).\nlisten = \"0.0.0.0:{AGENT_PORT}\"\nmetrics_listen = \"0.0.0.0:{FLEET_METRICS_PORT}\"\nrefresh_ms = 200\nstale_after_s = 5\nextra_sans = [{}]\n\n[southbound]\n# The simulators' throw-away CAs, written once they are up (read at connect).\nca_bundle = {:?}\n",
            lab.name,
            data.display().to_string(),
            quoted.join(", "),
            quoted.join(", "),
            env.state_dir.join("sims-ca.pem").display().to_string()
        ),
    )
    .map_err(io(&config))?;
    // A rampartd built before `[southbound] ca_bundle` existed refuses the
    // key: fall back to a configuration without it (REST devices then need
    // the public roots) rather than failing the whole lab.
    let check = std::process::Command::new(env.bin_dir.join("rampartd"))
        .arg("--config")
        .arg(&config)
        .arg("--check-config")
        .output();
    if let Ok(out) = check
        && !out.status.success()
        && String::from_utf8_lossy(&out.stderr).contains("ca_bundle")
    {
        tracing::warn!(node = %n.name, "this rampartd has no [southbound] ca_bundle; the simulators' CA is not trusted");
        let text = fs::read_to_string(&config).map_err(io(&config))?;
        let cut = text.find("\n[southbound]").unwrap_or(text.len());
        fs::write(&config, format!("{}\n", &text[..cut])).map_err(io(&config))?;
    }
    let mut penv = lab_env(lab);
    penv.extend(creds.iter().map(|(k, v)| (k.clone(), v.clone())));
    let log = env.log_dir().join(format!("{}-rampartd.log", n.name));
    let ns = ns_name(&lab.name, &n.name);
    let (pid, started, child) = sys::spawn(
        Some(&ns),
        &env.bin_dir.join("rampartd"),
        &["--config".to_owned(), config.display().to_string()],
        &penv,
        &log,
    )
    .map_err(step(&n.name, "start rampartd"))?;
    Ok(Pending {
        child,
        node: n.name.clone(),
        proc: Proc {
            name: "rampartd".to_owned(),
            pid,
            started,
            log,
        },
        ns,
        ready: Ready::Controller {
            addr: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), API_PORT),
            files: vec![data.join("admin.token"), data.join("tls/ca.crt")],
        },
    })
}

/// The agent's policy file in the lab: scripts rewrite it to change what
/// the host enforces (the agent reloads it on change).
#[must_use]
pub fn agent_policy(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("nodes").join(node).join("policy.yaml")
}

fn start_agent(
    lab: &Lab,
    n: &Node,
    env: &Env,
    state: &mut State,
) -> Result<Option<Pending>, LabError> {
    let bin = env.bin_dir.join("rampart-agent");
    if !bin.is_file() {
        return Ok(None);
    }
    let dir = env.node_dir(&n.name);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let pins = bpf_root(&lab.name).join(&n.name);
    state.bpf_dirs.push(pins.clone());
    state.save(&env.state_file())?;
    let log = env.log_dir().join(format!("{}-agent.log", n.name));
    let ns = ns_name(&lab.name, &n.name);
    let mut args = vec!["--pin-root".to_owned(), pins.display().to_string()];
    let mut penv = lab_env(lab);
    let (program, mode) = match (n.agent_mode, lab.controller()) {
        (Some(AgentMode::Managed), Some(ctl)) => {
            let agent_dir = agent_state_dir(&env.state_dir, &n.name);
            fs::create_dir_all(&agent_dir).map_err(io(&agent_dir))?;
            fs::set_permissions(&agent_dir, fs::Permissions::from_mode(0o700))
                .map_err(io(&agent_dir))?;
            let token = enroll_token(lab, n, env, state)?;
            // The token goes through the environment, not argv (`ps`).
            penv.push(("RAMPART_ENROLL_TOKEN".to_owned(), token));
            let data = env.node_dir(&ctl.name).join("data");
            let controller = format!("https://{}:{AGENT_PORT}", primary(ctl));
            // A UTS namespace of its own: the agent enrolls with the node's
            // name as host name (the kernel's, which it reads), so
            // `rampartctl agents` tells the lab's hosts apart.
            args = vec![
                "--uts".to_owned(),
                "--".to_owned(),
                "/bin/sh".to_owned(),
                "-c".to_owned(),
                r#"echo "$1" > /proc/sys/kernel/hostname && shift && exec "$@""#.to_owned(),
                "rampart-lab-agent".to_owned(),
                n.name.clone(),
                bin.display().to_string(),
                "--pin-root".to_owned(),
                pins.display().to_string(),
            ];
            args.extend([
                "run".to_owned(),
                "--controller".to_owned(),
                controller.clone(),
                "--controller-ca".to_owned(),
                data.join("tls/ca.crt").display().to_string(),
                "--state-dir".to_owned(),
                agent_dir.display().to_string(),
                "--heartbeat-ms".to_owned(),
                AGENT_HEARTBEAT_MS.to_string(),
            ]);
            for (k, v) in &n.inventory_labels {
                args.extend(["--label".to_owned(), format!("{k}={v}")]);
            }
            if let Some(s) = state.nodes.get_mut(&n.name) {
                s.info.insert("controller".to_owned(), controller);
                s.info
                    .insert("state-dir".to_owned(), agent_dir.display().to_string());
            }
            (PathBuf::from("/usr/bin/unshare"), AgentMode::Managed)
        }
        _ => {
            let policy = agent_policy(&env.state_dir, &n.name);
            if !policy.exists() {
                fs::write(
                    &policy,
                    "# Host policy of this lab node; rewrite it and the agent reloads it.\nversion: 1\ninterfaces: []\n",
                )
                .map_err(io(&policy))?;
            }
            args.extend([
                "run".to_owned(),
                "--policy".to_owned(),
                policy.display().to_string(),
            ]);
            if let Some(s) = state.nodes.get_mut(&n.name) {
                s.info
                    .insert("policy".to_owned(), policy.display().to_string());
            }
            (bin.clone(), AgentMode::Standalone)
        }
    };
    args.extend([
        "--metrics-listen".to_owned(),
        format!("0.0.0.0:{AGENT_METRICS_PORT}"),
        // Generic XDP: in native mode a veth only transmits what XDP sends
        // back out (the load balancer's XDP_TX/redirect) when its peer runs
        // XDP too, and the lab's bridge ports do not.
        "--xdp-mode".to_owned(),
        "generic".to_owned(),
    ]);
    let (pid, started, child) = sys::spawn(Some(&ns), &program, &args, &penv, &log)
        .map_err(step(&n.name, "start rampart-agent"))?;
    if let Some(s) = state.nodes.get_mut(&n.name) {
        s.info.insert("mode".to_owned(), mode.as_str().to_owned());
        s.info.insert(
            "metrics".to_owned(),
            format!("http://{}:{AGENT_METRICS_PORT}/metrics", primary(n)),
        );
    }
    Ok(Some(Pending {
        child,
        node: n.name.clone(),
        proc: Proc {
            name: "rampart-agent".to_owned(),
            pid,
            started,
            log,
        },
        ns,
        ready: Ready::Tcp(vec![SocketAddr::new(
            IpAddr::V4(Ipv4Addr::LOCALHOST),
            AGENT_METRICS_PORT,
        )]),
    }))
}

/// Where a managed agent of the lab keeps its key, certificate and last
/// policy (removed by `down` with the rest of `<state>/nodes`).
#[must_use]
pub fn agent_state_dir(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("nodes").join(node).join("agent")
}

/// rampartctl against the lab's rampartd, over the management link, as the
/// bootstrap admin; stdout on success.
fn ctl(lab: &Lab, env: &Env, state: &State, args: &[&str]) -> Result<String, SysError> {
    let bin = env.bin_dir.join("rampartctl");
    let (Some(ctl), Some(m)) = (lab.controller(), &state.mgmt) else {
        return Err(SysError::Failed {
            command: "rampartctl".to_owned(),
            stderr: "the lab has no controller".to_owned(),
        });
    };
    let data = env.node_dir(&ctl.name).join("data");
    let out = std::process::Command::new(&bin)
        .args(["-o", "json"])
        .args(args)
        .env(
            "RAMPART_SERVER",
            format!("https://{}:{API_PORT}", m.node_addr),
        )
        .env("RAMPART_CA_CERT", data.join("tls/ca.crt"))
        .env("RAMPART_TOKEN_FILE", data.join("admin.token"))
        .env_remove("RAMPART_TOKEN")
        .env_remove("RAMPART_CTL_CONFIG")
        .stdin(std::process::Stdio::null())
        .output()
        .map_err(|source| SysError::Spawn {
            command: bin.display().to_string(),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(SysError::Failed {
            command: format!("rampartctl {}", args.join(" ")),
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_owned(),
        })
    }
}

/// A single-use enrollment token for node `n`, carrying its
/// `rampart.label.*` labels (the controller binds them to the agent's
/// certificate; services select hosts by them).
fn enroll_token(lab: &Lab, n: &Node, env: &Env, state: &State) -> Result<String, LabError> {
    let mut args: Vec<String> = ["agents", "token", "create", "--ttl", "10m"]
        .map(str::to_owned)
        .to_vec();
    for (k, v) in &n.inventory_labels {
        args.extend(["--label".to_owned(), format!("{k}={v}")]);
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let out = ctl(lab, env, state, &refs).map_err(step(&n.name, "create an enrollment token"))?;
    serde_json::from_str::<serde_json::Value>(&out)
        .ok()
        .and_then(|v| v["token"].as_str().map(str::to_owned))
        .filter(|t| !t.is_empty())
        .ok_or_else(|| LabError::Step {
            node: n.name.clone(),
            step: "create an enrollment token".to_owned(),
            source: SysError::Failed {
                command: "rampartctl agents token create".to_owned(),
                stderr: format!("no token in its answer: {out}"),
            },
        })
}

/// Waits until every managed agent of the lab is `online` in rampartd's
/// fleet (enrolled, session open, heartbeating), and records its agent id.
fn wait_enrolled(lab: &Lab, env: &Env, state: &mut State) -> Result<(), LabError> {
    let mut waiting: BTreeSet<String> = lab
        .nodes
        .iter()
        .filter(|n| n.agent_mode == Some(AgentMode::Managed))
        .filter(|n| {
            state
                .nodes
                .get(&n.name)
                .is_some_and(|s| s.processes.iter().any(|p| p.name == "rampart-agent"))
        })
        .map(|n| n.name.clone())
        .collect();
    let deadline = Instant::now() + env.ready_timeout;
    while !waiting.is_empty() {
        let last = match ctl(lab, env, state, &["agents"]) {
            Ok(out) => {
                let list: Vec<serde_json::Value> = serde_json::from_str(&out).unwrap_or_default();
                for a in &list {
                    let host = a["hostname"].as_str().unwrap_or_default();
                    if a["state"] == "online" && waiting.remove(host) {
                        let id = a["agentId"].as_str().unwrap_or_default().to_owned();
                        tracing::info!(node = %host, agent = %id, "agent enrolled and online");
                        if let Some(s) = state.nodes.get_mut(host) {
                            s.info.insert("agent-id".to_owned(), id);
                        }
                    }
                }
                out
            }
            Err(e) => e.to_string(),
        };
        if waiting.is_empty() {
            break;
        }
        if let Some(node) = waiting.iter().next()
            && Instant::now() > deadline
        {
            let log = env.log_dir().join(format!("{node}-agent.log"));
            return Err(LabError::NotReady {
                node: node.clone(),
                process: "rampart-agent".to_owned(),
                reason: format!(
                    "not online in rampartd's fleet after {:?} (rampartctl agents: {})",
                    env.ready_timeout,
                    last.trim()
                ),
                log: log.display().to_string(),
                tail: tail(&log, 30),
            });
        }
        std::thread::sleep(Duration::from_millis(150));
    }
    Ok(())
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

fn write_env_file(
    path: &Path,
    lab: &Lab,
    env: &Env,
    state: &mut State,
    creds: &BTreeMap<String, String>,
    extra: &BTreeMap<String, String>,
) -> Result<(), LabError> {
    let mut out = format!(
        "# Lab {} environment (rampart-lab up). Use: source {}\n",
        lab.name,
        path.display()
    );
    let mut set = |k: &str, v: &str| {
        let _ = writeln!(out, "export {k}={}", shell_quote(v));
    };
    set("RAMPART_LAB", &lab.name);
    set("RAMPART_LAB_STATE", &env.state_dir.display().to_string());
    if let (Some(ctl), Some(m)) = (lab.controller(), &state.mgmt) {
        let data = env.node_dir(&ctl.name).join("data");
        set(
            "RAMPART_SERVER",
            &format!("https://{}:{API_PORT}", m.node_addr),
        );
        set(
            "RAMPART_CA_CERT",
            &data.join("tls/ca.crt").display().to_string(),
        );
        set(
            "RAMPART_TOKEN_FILE",
            &data.join("admin.token").display().to_string(),
        );
        set(
            "RAMPART_METRICS_URL",
            &format!("http://{}:{METRICS_PORT}/metrics", m.node_addr),
        );
        set(
            "RAMPART_FLEET_METRICS_URL",
            &format!("http://{}:{FLEET_METRICS_PORT}/metrics", m.node_addr),
        );
        if let Some(s) = state.nodes.get_mut(&ctl.name) {
            s.info.insert(
                "api".to_owned(),
                format!("https://{}:{API_PORT}", m.node_addr),
            );
            s.info.insert(
                "metrics".to_owned(),
                format!("http://{}:{METRICS_PORT}/metrics", m.node_addr),
            );
        }
    }
    set(
        "RAMPART_INVENTORY",
        &env.state_dir.join("inventory.yaml").display().to_string(),
    );
    set(
        "RAMPART_SIMS_CA_BUNDLE",
        &env.state_dir.join("sims-ca.pem").display().to_string(),
    );
    for (k, v) in creds.iter().chain(extra) {
        set(k, v);
    }
    for n in &lab.nodes {
        let var: String = n
            .name
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_uppercase()
                } else {
                    '_'
                }
            })
            .collect();
        set(&format!("RAMPART_NS_{var}"), &ns_name(&lab.name, &n.name));
        if let Some(a) = n.primary_address() {
            set(&format!("RAMPART_ADDR_{var}"), &a.to_string());
        }
        if n.agent_mode == Some(AgentMode::Standalone) {
            set(
                &format!("RAMPART_POLICY_{var}"),
                &agent_policy(&env.state_dir, &n.name).display().to_string(),
            );
        }
    }
    fs::write(path, out).map_err(io(path))?;
    fs::set_permissions(path, fs::Permissions::from_mode(0o600)).map_err(io(path))
}

// ===== status =====

/// One line of `status`.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct NodeStatus {
    /// Node name.
    pub node: String,
    /// Namespace.
    pub ns: String,
    /// Whether the namespace exists.
    pub ns_present: bool,
    /// Roles.
    pub roles: Vec<String>,
    /// Addresses.
    pub addresses: Vec<String>,
    /// (process, pid, alive).
    pub processes: Vec<(String, u32, bool)>,
    /// Loud remarks.
    pub notes: Vec<String>,
    /// Facts (endpoints, certificates).
    pub info: BTreeMap<String, String>,
}

/// A lab's status.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct LabStatus {
    /// Lab name.
    pub lab: String,
    /// Whether `up` finished.
    pub complete: bool,
    /// Per node.
    pub nodes: Vec<NodeStatus>,
    /// The host management link, when it should exist: (name, present).
    pub mgmt: Option<(String, bool)>,
}

impl LabStatus {
    /// Everything up: `up` finished, every namespace and process there.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.complete
            && self.mgmt.as_ref().is_none_or(|m| m.1)
            && self
                .nodes
                .iter()
                .all(|n| n.ns_present && n.processes.iter().all(|p| p.2))
    }

    /// Human-readable table.
    #[must_use]
    pub fn render(&self) -> String {
        let mut out = format!(
            "lab {}: {}\n",
            self.lab,
            if self.healthy() {
                "up"
            } else if self.complete {
                "DEGRADED"
            } else {
                "INCOMPLETE (up did not finish)"
            }
        );
        if let Some((name, present)) = &self.mgmt {
            let _ = writeln!(
                out,
                "  host link {name}: {}",
                if *present { "present" } else { "MISSING" }
            );
        }
        for n in &self.nodes {
            let _ = writeln!(
                out,
                "  {:<10} {:<24} {:<28} ns {}",
                n.node,
                n.roles.join(","),
                n.addresses.join(" "),
                if n.ns_present { "ok" } else { "MISSING" }
            );
            for (name, pid, alive) in &n.processes {
                let _ = writeln!(
                    out,
                    "  {:<10}   {name} pid {pid}: {}",
                    "",
                    if *alive { "running" } else { "DOWN" }
                );
            }
            for (k, v) in &n.info {
                let _ = writeln!(out, "  {:<10}   {k}: {v}", "");
            }
            for note in &n.notes {
                let _ = writeln!(out, "  {:<10}   !! {note}", "");
            }
        }
        out
    }
}

/// The status of the lab recorded in `state`.
#[must_use]
pub fn status(state: &State) -> LabStatus {
    sys::reap();
    LabStatus {
        lab: state.lab.clone(),
        complete: state.complete,
        mgmt: state
            .mgmt
            .as_ref()
            .map(|m| (m.host_if.clone(), sys::host_link_exists(&m.host_if))),
        nodes: state
            .nodes
            .iter()
            .map(|(name, s)| NodeStatus {
                node: name.clone(),
                ns: s.ns.clone(),
                ns_present: sys::netns_exists(&s.ns),
                roles: s.roles.clone(),
                addresses: s.addresses.clone(),
                processes: s
                    .processes
                    .iter()
                    .map(|p| (p.name.clone(), p.pid, sys::alive(p.pid, p.started)))
                    .collect(),
                notes: s.notes.clone(),
                info: s.info.clone(),
            })
            .collect(),
    }
}

// ===== down =====

/// What of lab `lab` exists on this machine, found by name alone (no state
/// file needed): namespaces, the host link, processes, bpffs pins.
#[must_use]
pub fn leftovers(lab: &str) -> Vec<String> {
    let prefix = format!("rl-{lab}-");
    let mut left: Vec<String> = sys::list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .map(|n| format!("netns {n}"))
        .collect();
    if sys::host_link_exists(&host_if(lab)) {
        left.push(format!("link {}", host_if(lab)));
    }
    let inodes: BTreeSet<u64> = sys::list_netns()
        .iter()
        .filter(|n| n.starts_with(&prefix))
        .filter_map(|n| sys::netns_inode(n))
        .collect();
    for pid in sys::lab_processes(MARKER, lab, &inodes) {
        left.push(format!("process {pid}"));
    }
    if bpf_root(lab).exists() {
        left.push(format!("bpffs {}", bpf_root(lab).display()));
    }
    if run_dir(lab).exists() {
        left.push(format!("directory {}", run_dir(lab).display()));
    }
    left
}

/// What `down` removed.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct DownReport {
    /// Processes stopped.
    pub processes: usize,
    /// Namespaces deleted.
    pub namespaces: usize,
    /// Host links deleted.
    pub links: usize,
    /// bpffs directories removed.
    pub bpf_dirs: usize,
}

impl DownReport {
    /// Whether there was nothing to remove.
    #[must_use]
    pub fn nothing(&self) -> bool {
        *self == DownReport::default()
    }
}

/// Tears lab `lab` down: everything in the state file and everything
/// carrying its name. Idempotent; succeeds when nothing is there.
///
/// # Errors
/// [`LabError::Leftovers`] when something could not be removed.
pub fn down(lab: &str, env: &Env) -> Result<DownReport, LabError> {
    topology::check_lab_name(lab).map_err(|reason| LabError::InvalidName { reason })?;
    let state = State::load(&env.state_file()).ok().flatten();
    let prefix = format!("rl-{lab}-");
    let mut namespaces: BTreeSet<String> = sys::list_netns()
        .into_iter()
        .filter(|n| n.starts_with(&prefix))
        .collect();
    let mut report = DownReport::default();

    // Processes first: they hold namespaces and pins.
    let inodes: BTreeSet<u64> = namespaces
        .iter()
        .filter_map(|n| sys::netns_inode(n))
        .collect();
    let mut pids = sys::lab_processes(MARKER, lab, &inodes);
    if let Some(s) = &state {
        namespaces.extend(
            s.namespaces
                .iter()
                .filter(|n| sys::netns_exists(n))
                .cloned(),
        );
        for p in s.nodes.values().flat_map(|n| &n.processes) {
            if sys::alive(p.pid, p.started) {
                pids.insert(p.pid);
            }
        }
    }
    report.processes = pids.len();
    let survivors = sys::stop_all(&pids, Duration::from_millis(1500));
    if !survivors.is_empty() {
        tracing::error!(?survivors, "processes survived SIGKILL");
    }

    // Pins.
    let mut bpf: BTreeSet<PathBuf> = BTreeSet::from([bpf_root(lab)]);
    if let Some(s) = &state {
        bpf.extend(s.bpf_dirs.iter().cloned());
    }
    for d in &bpf {
        if d.exists() {
            report.bpf_dirs += 1;
            if let Err(e) = sys::remove_tree(d) {
                tracing::error!(error = %e, "cannot remove pins");
            }
        }
    }

    // Namespaces (their links and bridges go with them) and the host link.
    for ns in &namespaces {
        match sys::delete_netns(ns) {
            Ok(()) => report.namespaces += 1,
            Err(e) => tracing::error!(error = %e, "cannot delete namespace"),
        }
    }
    let mut links: BTreeSet<String> = BTreeSet::from([host_if(lab)]);
    if let Some(s) = &state {
        links.extend(s.host_links.iter().cloned());
    }
    for l in &links {
        if sys::host_link_exists(l) {
            match sys::ip(&["link", "delete", l]) {
                Ok(_) => report.links += 1,
                // The controller's namespace going took its peer with it.
                Err(_) if !sys::host_link_exists(l) => report.links += 1,
                Err(e) => tracing::error!(error = %e, "cannot delete host link"),
            }
        }
    }

    // Files, except logs (kept for post-mortems).
    for f in [
        "state.json",
        "state.json.tmp",
        "lab.env",
        "inventory.yaml",
        "sims-ca.pem",
    ] {
        let _ = fs::remove_file(env.state_dir.join(f));
    }
    let _ = fs::remove_dir_all(env.state_dir.join("nodes"));
    if let Err(e) = sys::remove_tree(&run_dir(lab)) {
        tracing::error!(error = %e, "cannot remove the runtime directory");
    }

    let mut left = leftovers(lab);
    // Managed agents' identities and policies live under `nodes/`.
    let nodes_dir = env.state_dir.join("nodes");
    if nodes_dir.exists() {
        left.push(format!("directory {}", nodes_dir.display()));
    }
    if left.is_empty() {
        Ok(report)
    } else {
        Err(LabError::Leftovers {
            lab: lab.to_owned(),
            left: left.join(", "),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mgmt_subnets_are_aligned_link_local_and_skip_used_ones() {
        for i in 0..20_000u32 {
            let name = format!("l{i:x}");
            let (host, node) = mgmt_subnet(&name, "");
            let (h, n) = (host.octets(), node.octets());
            assert_eq!(h[..2], [169, 254], "{name}: {host}");
            assert_eq!(h[..3], n[..3], "{name}: same /24");
            assert_eq!(h[3] % 4, 1, "{name}: host is .1 of its /30");
            assert_eq!(n[3], h[3] + 1, "{name}");
            assert!(h[2] != 169 && h[2] != 254 && h[2] != 0, "{name}: {host}");
        }
        let (host, _) = mgmt_subnet("lab", "");
        let busy = format!(
            "2: eth0    inet {}/30 scope link eth0",
            Ipv4Addr::from(u32::from(host) - 1)
        );
        let (other, _) = mgmt_subnet("lab", &busy);
        assert_ne!(host, other, "a subnet in use is skipped");
        assert_eq!(
            mgmt_subnet("lab", ""),
            mgmt_subnet("lab", ""),
            "stable per name"
        );
    }
}
