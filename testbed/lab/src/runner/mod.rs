//! `up`, `status` and `down` of a netns lab.
//!
//! `up` validates the whole topology before touching anything, records each
//! object in the state file before creating it, and on any failure tears
//! down what exists and reports the failing step. `down` removes what the
//! state file lists *and* everything carrying the lab's name (namespaces
//! `rl-<lab>-*`, the host link `rl-<lab>`, processes marked with
//! [`MARKER`]`=<lab>` or living in the lab's namespaces, bpffs pins under
//! `/sys/fs/bpf/rampart-lab-<lab>`), so it also cleans up after a crash.
//!
//! [`build`](self) runs the build order; each node role starts its process
//! in its own module under [`roles`]; `ready` waits for them; [`status`],
//! [`down`] and the env file each have their module.

mod base;
mod build;
mod down;
mod envfile;
mod ready;
pub mod roles;
mod status;

use std::{collections::BTreeSet, fs, path::Path};

use self::base::{io, which};
pub use self::{
    base::{Env, LabError, MARKER, RUN_DIR, bpf_root, host_if, ns_name, run_dir},
    down::{DownReport, down, leftovers},
    roles::{
        agent::{AGENT_HEARTBEAT_MS, AGENT_METRICS_PORT, agent_policy, agent_state_dir},
        controller::{AGENT_PORT, API_PORT, FLEET_METRICS_PORT, METRICS_PORT},
        netconf::NETCONF_USER,
    },
    status::{LabStatus, NodeStatus, observe, status},
};
use crate::{
    state::State,
    topology::{self, AgentMode, Lab, Role},
};

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
        build::build(&lab, env, &mut state)
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
    if roles.contains(&Role::Prometheus) && !Path::new(roles::prometheus::PROMETHEUS_BIN).is_file()
    {
        return Err(missing(
            roles::prometheus::PROMETHEUS_BIN,
            "run scripts/install/prometheus.sh",
        ));
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
