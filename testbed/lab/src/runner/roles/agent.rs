//! `agent`: rampart-agent on a host, managed (enrolled with the lab's
//! rampartd through a token, in its own UTS namespace so it reports the
//! node's name) or standalone (enforcing a policy file).

use std::{
    collections::BTreeSet,
    fs,
    net::{IpAddr, Ipv4Addr, SocketAddr},
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use super::controller::{AGENT_PORT, ctl};
use crate::{
    runner::base::{
        Env, LabError, Launch, Pending, Ready, bpf_root, io, lab_env, launch, primary, step, tail,
    },
    state::State,
    sys::SysError,
    topology::{AgentMode, Lab, Node},
};

/// rampart-agent's metrics port in the lab.
pub const AGENT_METRICS_PORT: u16 = 9469;
/// Heartbeat period of the lab's managed agents: short, so counters (sent
/// every second heartbeat) reach the API within a second or so.
pub const AGENT_HEARTBEAT_MS: u64 = 500;

/// The agent's policy file in the lab: scripts rewrite it to change what
/// the host enforces (the agent reloads it on change).
#[must_use]
pub fn agent_policy(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("nodes").join(node).join("policy.yaml")
}

/// Starts the agent of `n`; without a built rampart-agent the host runs
/// without one, and its status says so loudly.
pub(crate) fn start(
    lab: &Lab,
    n: &Node,
    env: &Env,
    state: &mut State,
) -> Result<Option<Pending>, LabError> {
    let bin = env.bin_dir.join("rampart-agent");
    if !bin.is_file() {
        let note = format!(
            "agent-missing: {} not found (cargo build -p rampart-agent); the host runs without an agent",
            bin.display()
        );
        tracing::warn!(node = %n.name, "{note}");
        if let Some(s) = state.nodes.get_mut(&n.name) {
            s.notes.push(note);
        }
        return Ok(None);
    }
    let dir = env.node_dir(&n.name);
    fs::create_dir_all(&dir).map_err(io(&dir))?;
    let pins = bpf_root(&lab.name).join(&n.name);
    state.bpf_dirs.push(pins.clone());
    state.save(&env.state_file())?;
    let mut penv = lab_env(lab);
    let (program, mut args, mode) = match (n.agent_mode, lab.controller()) {
        (Some(AgentMode::Managed), Some(ctl)) => {
            let (token, args) = managed_args(lab, n, ctl, env, state, &bin, &pins)?;
            // The token goes through the environment, not argv (`ps`).
            penv.push(("RAMPART_ENROLL_TOKEN".to_owned(), token));
            (PathBuf::from("/usr/bin/unshare"), args, AgentMode::Managed)
        }
        _ => (
            bin.clone(),
            standalone_args(n, env, state, &pins)?,
            AgentMode::Standalone,
        ),
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
    let p = launch(
        lab,
        n,
        env,
        Launch {
            process: "rampart-agent",
            log: "agent",
            program: &program,
            args: &args,
            env: &penv,
            ready: Ready::Tcp(vec![SocketAddr::new(
                IpAddr::V4(Ipv4Addr::LOCALHOST),
                AGENT_METRICS_PORT,
            )]),
        },
    )?;
    if let Some(s) = state.nodes.get_mut(&n.name) {
        s.info.insert("mode".to_owned(), mode.as_str().to_owned());
        s.info.insert(
            "metrics".to_owned(),
            format!("http://{}:{AGENT_METRICS_PORT}/metrics", primary(n)),
        );
    }
    Ok(Some(p))
}

/// A managed agent's enrollment token and command line: in a UTS namespace
/// of its own, so the agent enrolls with the node's name as host name (the
/// kernel's, which it reads) and `rampartctl agents` tells the lab's hosts
/// apart.
fn managed_args(
    lab: &Lab,
    n: &Node,
    ctl: &Node,
    env: &Env,
    state: &mut State,
    bin: &Path,
    pins: &Path,
) -> Result<(String, Vec<String>), LabError> {
    let agent_dir = agent_state_dir(&env.state_dir, &n.name);
    fs::create_dir_all(&agent_dir).map_err(io(&agent_dir))?;
    fs::set_permissions(&agent_dir, fs::Permissions::from_mode(0o700)).map_err(io(&agent_dir))?;
    let token = enroll_token(lab, n, env, state)?;
    let data = env.node_dir(&ctl.name).join("data");
    let controller = format!("https://{}:{AGENT_PORT}", primary(ctl));
    let mut args = vec![
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
        "run".to_owned(),
        "--controller".to_owned(),
        controller.clone(),
        "--controller-ca".to_owned(),
        data.join("tls/ca.crt").display().to_string(),
        "--state-dir".to_owned(),
        agent_dir.display().to_string(),
        "--heartbeat-ms".to_owned(),
        AGENT_HEARTBEAT_MS.to_string(),
    ];
    for (k, v) in &n.inventory_labels {
        args.extend(["--label".to_owned(), format!("{k}={v}")]);
    }
    if let Some(s) = state.nodes.get_mut(&n.name) {
        s.info.insert("controller".to_owned(), controller);
        s.info
            .insert("state-dir".to_owned(), agent_dir.display().to_string());
    }
    Ok((token, args))
}

/// A standalone agent's command line: it enforces the node's policy file,
/// written empty when it does not exist yet.
fn standalone_args(
    n: &Node,
    env: &Env,
    state: &mut State,
    pins: &Path,
) -> Result<Vec<String>, LabError> {
    let policy = agent_policy(&env.state_dir, &n.name);
    if !policy.exists() {
        fs::write(
            &policy,
            "# Host policy of this lab node; rewrite it and the agent reloads it.\nversion: 1\ninterfaces: []\n",
        )
        .map_err(io(&policy))?;
    }
    if let Some(s) = state.nodes.get_mut(&n.name) {
        s.info
            .insert("policy".to_owned(), policy.display().to_string());
    }
    Ok(vec![
        "--pin-root".to_owned(),
        pins.display().to_string(),
        "run".to_owned(),
        "--policy".to_owned(),
        policy.display().to_string(),
    ])
}

/// Where a managed agent of the lab keeps its key, certificate and last
/// policy (removed by `down` with the rest of `<state>/nodes`).
#[must_use]
pub fn agent_state_dir(state_dir: &Path, node: &str) -> PathBuf {
    state_dir.join("nodes").join(node).join("agent")
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
pub(crate) fn wait_enrolled(lab: &Lab, env: &Env, state: &mut State) -> Result<(), LabError> {
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
