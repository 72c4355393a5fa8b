//! What every part of the runner shares: the lab's names on the machine,
//! its errors, where things are ([`Env`]), and a started process waiting to
//! be ready ([`Pending`]).

use std::{
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    path::{Path, PathBuf},
    time::Duration,
};

use thiserror::Error;

use crate::{
    state::{Proc, State, StateError},
    sys::{self, SysError},
    topology::{Lab, Node, TopologyError},
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

pub(crate) fn io(path: &Path) -> impl FnOnce(std::io::Error) -> LabError + '_ {
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
    pub(crate) fn state_file(&self) -> PathBuf {
        self.state_dir.join("state.json")
    }
    pub(crate) fn node_dir(&self, node: &str) -> PathBuf {
        self.state_dir.join("nodes").join(node)
    }
    pub(crate) fn log_dir(&self) -> PathBuf {
        self.state_dir.join("logs")
    }
}

pub(crate) fn which(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

pub(crate) fn python() -> PathBuf {
    // The simulators need only the standard library: prefer the system
    // interpreter over whatever shim is first on PATH.
    let system = PathBuf::from("/usr/bin/python3");
    if system.is_file() {
        system
    } else {
        PathBuf::from("python3")
    }
}

pub(crate) fn step(node: &str, what: impl Into<String>) -> impl FnOnce(SysError) -> LabError {
    let node = node.to_owned();
    let what = what.into();
    move |source| LabError::Step {
        node,
        step: what,
        source,
    }
}

/// A started process waiting to be ready.
pub(crate) struct Pending {
    pub(crate) child: std::process::Child,
    pub(crate) node: String,
    pub(crate) proc: Proc,
    pub(crate) ns: String,
    pub(crate) ready: Ready,
}

pub(crate) enum Ready {
    /// TCP connections accepted on every address (inside the namespace).
    Tcp(Vec<SocketAddr>),
    /// The simulator printed its start-up lines (`LISTENING`, ...).
    SimLines { asa: bool, cred_var: String },
    /// `GET path` answers 200 (inside the namespace).
    Http { addr: SocketAddr, path: String },
    /// rampartd: TCP open and its token/CA written.
    Controller {
        addr: SocketAddr,
        files: Vec<PathBuf>,
    },
}

/// A node's process to start: its name in `status`, its log file
/// (`<state>/logs/<node>-<log>.log`), what to run, and when it is ready.
pub(crate) struct Launch<'a> {
    pub(crate) process: &'a str,
    pub(crate) log: &'a str,
    pub(crate) program: &'a Path,
    pub(crate) args: &'a [String],
    pub(crate) env: &'a [(String, String)],
    pub(crate) ready: Ready,
}

/// Starts `l` in node `n`'s namespace.
pub(crate) fn launch(lab: &Lab, n: &Node, env: &Env, l: Launch<'_>) -> Result<Pending, LabError> {
    let log = env.log_dir().join(format!("{}-{}.log", n.name, l.log));
    let ns = ns_name(&lab.name, &n.name);
    let (pid, started, child) = sys::spawn(Some(&ns), l.program, l.args, l.env, &log)
        .map_err(step(&n.name, format!("start {}", l.process)))?;
    Ok(Pending {
        child,
        node: n.name.clone(),
        proc: Proc {
            name: l.process.to_owned(),
            pid,
            started,
            log,
        },
        ns,
        ready: l.ready,
    })
}

pub(crate) fn record(state: &mut State, node: &str, p: &Pending) {
    if let Some(s) = state.nodes.get_mut(node) {
        s.processes.push(p.proc.clone());
    }
}

pub(crate) fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

pub(crate) fn lab_env(lab: &Lab) -> Vec<(String, String)> {
    vec![
        (MARKER.to_owned(), lab.name.clone()),
        // Logs go to files: no terminal colour codes in them.
        ("NO_COLOR".to_owned(), "1".to_owned()),
    ]
}

pub(crate) fn random_secret() -> String {
    let mut buf = [0u8; 12];
    if let Ok(mut f) = fs::File::open("/dev/urandom") {
        use std::io::Read as _;
        let _ = f.read_exact(&mut buf);
    }
    hex::encode(buf)
}

pub(crate) fn primary(n: &Node) -> IpAddr {
    n.primary_address()
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED))
}
