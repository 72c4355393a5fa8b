//! What a running lab consists of, kept in `<state-dir>/state.json`.
//!
//! The runner records every object *before* creating it and saves the file
//! after each step, so `down` after a crash at any point still knows what to
//! remove (and it also sweeps everything carrying the lab's name prefix).

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
};

use serde::{Deserialize, Serialize};
use thiserror::Error;

use crate::topology::Lab;

/// State file problems.
#[derive(Debug, Error)]
pub enum StateError {
    /// The file could not be read or written.
    #[error("state file {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// The file is not a state file of this version.
    #[error("state file {path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// Parser message.
        message: String,
    },
}

/// A process the runner started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Proc {
    /// What it is (`rampartd`, `netconfd+sshd`, `meraki_sim`, ...).
    pub name: String,
    /// Its pid (also its process-group id: each is a group leader).
    pub pid: u32,
    /// Start time in clock ticks, to tell it from a recycled pid.
    pub started: u64,
    /// Its stdout/stderr log.
    pub log: PathBuf,
}

/// The management link between the host and the controller node.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Mgmt {
    /// Host-side interface (`rl-<lab>`).
    pub host_if: String,
    /// Host-side address with prefix.
    pub host_addr: String,
    /// Controller-side address (what `RAMPART_SERVER` names).
    pub node_addr: String,
}

/// Per-node state.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NodeState {
    /// Network namespace name.
    pub ns: String,
    /// Roles, as written in the topology.
    pub roles: Vec<String>,
    /// Addresses (`iface address/len`).
    pub addresses: Vec<String>,
    /// Processes started for the node.
    pub processes: Vec<Proc>,
    /// Loud remarks (`agent-missing: ...`).
    pub notes: Vec<String>,
    /// Facts for users of the lab (endpoint, certificate, credentials user).
    pub info: BTreeMap<String, String>,
}

/// The state file.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct State {
    /// Lab name.
    pub lab: String,
    /// Topology file the lab was built from.
    pub topology: PathBuf,
    /// The resolved topology (to tell whether `up` has anything to do).
    pub spec: Lab,
    /// Whether `up` finished.
    pub complete: bool,
    /// Network namespaces created.
    pub namespaces: Vec<String>,
    /// Links created in the host namespace.
    pub host_links: Vec<String>,
    /// bpffs directories handed to agents.
    pub bpf_dirs: Vec<PathBuf>,
    /// Host-to-controller link.
    pub mgmt: Option<Mgmt>,
    /// Nodes by name.
    pub nodes: BTreeMap<String, NodeState>,
    /// Environment file for scripts (`source` it).
    pub env_file: Option<PathBuf>,
    /// Generated inventory.
    pub inventory: Option<PathBuf>,
}

impl State {
    /// A fresh state for `lab`.
    #[must_use]
    pub fn new(lab: &Lab, topology: &Path) -> State {
        State {
            lab: lab.name.clone(),
            topology: topology.to_owned(),
            spec: lab.clone(),
            complete: false,
            namespaces: Vec::new(),
            host_links: Vec::new(),
            bpf_dirs: Vec::new(),
            mgmt: None,
            nodes: BTreeMap::new(),
            env_file: None,
            inventory: None,
        }
    }

    /// Reads the state file; `Ok(None)` when there is none.
    ///
    /// # Errors
    /// [`StateError`] when it exists but cannot be read or parsed.
    pub fn load(path: &Path) -> Result<Option<State>, StateError> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(source) => {
                return Err(StateError::Io {
                    path: path.to_owned(),
                    source,
                });
            }
        };
        serde_json::from_str(&text)
            .map(Some)
            .map_err(|e| StateError::Parse {
                path: path.to_owned(),
                message: e.to_string(),
            })
    }

    /// Writes the state file atomically (temp file + rename), so a crash
    /// never leaves half a file.
    ///
    /// # Errors
    /// [`StateError::Io`].
    pub fn save(&self, path: &Path) -> Result<(), StateError> {
        let io = |source| StateError::Io {
            path: path.to_owned(),
            source,
        };
        let text = serde_json::to_string_pretty(self).map_err(|e| StateError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        let tmp = path.with_extension("json.tmp");
        std::fs::write(&tmp, text).map_err(io)?;
        std::fs::rename(&tmp, path).map_err(io)
    }
}
