//! `lab.env`: what a shell needs to use the lab (rampartctl's server, CA
//! and token, metrics and Prometheus URLs, credentials, namespaces).

use std::{
    collections::BTreeMap, fmt::Write as _, fs, os::unix::fs::PermissionsExt as _, path::Path,
};

use super::{
    base::{Env, LabError, io, ns_name},
    roles::{
        agent::agent_policy,
        controller::{API_PORT, FLEET_METRICS_PORT, METRICS_PORT},
        prometheus,
    },
};
use crate::{
    state::State,
    topology::{AgentMode, Lab, Role},
};

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

pub(super) fn write_env_file(
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
    if let Some(p) = lab.nodes.iter().find(|n| n.has(Role::Prometheus)) {
        set(
            "RAMPART_PROMETHEUS_URL",
            &format!("http://{}", prometheus::address(p)),
        );
    }
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
