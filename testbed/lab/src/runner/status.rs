//! `status`: what of a lab exists and runs, from its state file, checked
//! against the machine.

use std::{collections::BTreeMap, fmt::Write as _, time::Duration};

use super::{
    base::{Env, ns_name},
    roles::{controller::ctl, prometheus},
};
use crate::{
    state::State,
    sys,
    topology::{AgentMode, Role},
};

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
    /// What the lab's services report now (filled by [`observe`]): the
    /// agent's state in rampartd's fleet (`fleet`), Prometheus's scrape
    /// targets (`targets`).
    pub live: BTreeMap<String, String>,
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
    /// Everything up: `up` finished, every namespace and process there,
    /// and every agent rampartd was asked about online.
    #[must_use]
    pub fn healthy(&self) -> bool {
        self.complete
            && self.mgmt.as_ref().is_none_or(|m| m.1)
            && self.nodes.iter().all(|n| {
                n.ns_present
                    && n.processes.iter().all(|p| p.2)
                    && n.live.get("fleet").is_none_or(|s| s == "online")
            })
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
            for (k, v) in n.info.iter().chain(&n.live) {
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
                live: BTreeMap::new(),
            })
            .collect(),
    }
}

/// Adds what the lab's services say to `st`: each managed agent's state in
/// rampartd's fleet (`rampartctl agents`; `unknown` when it is not listed,
/// `unreachable` when rampartd does not answer), and Prometheus's scrape
/// targets (`N/M up`, naming those down).
pub fn observe(st: &mut LabStatus, state: &State, env: &Env) {
    let lab = &state.spec;
    if lab.controller().is_some() {
        let agents: Option<Vec<serde_json::Value>> = ctl(lab, env, state, &["agents"])
            .ok()
            .and_then(|out| serde_json::from_str(&out).ok());
        for n in st.nodes.iter_mut().filter(|n| {
            n.info
                .get("mode")
                .is_some_and(|m| m == AgentMode::Managed.as_str())
        }) {
            let fleet = match &agents {
                None => "unreachable".to_owned(),
                Some(list) => list
                    .iter()
                    .find(|a| a["hostname"] == n.node.as_str())
                    .and_then(|a| a["state"].as_str())
                    .unwrap_or("unknown")
                    .to_owned(),
            };
            n.live.insert("fleet".to_owned(), fleet);
        }
    }
    for node in lab.nodes.iter().filter(|n| n.has(Role::Prometheus)) {
        let ns = ns_name(&lab.name, &node.name);
        let targets = scrape_health(&ns, prometheus::address(node));
        if let Some(n) = st.nodes.iter_mut().find(|n| n.node == node.name) {
            n.live.insert("targets".to_owned(), targets);
        }
    }
}

/// Prometheus's scrape targets in `ns` at `addr`, summarized.
fn scrape_health(ns: &str, addr: std::net::SocketAddr) -> String {
    match sys::http_get(ns, addr, "/api/v1/targets", Duration::from_secs(2)) {
        Some((200, body)) => targets_summary(&serde_json::from_str(&body).unwrap_or_default()),
        _ => "Prometheus does not answer".to_owned(),
    }
}

/// `N/M up` from an `/api/v1/targets` answer, naming the job and node of
/// each target that is not up.
fn targets_summary(answer: &serde_json::Value) -> String {
    let targets = answer["data"]["activeTargets"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    let down: Vec<String> = targets
        .iter()
        .filter(|t| t["health"] != "up")
        .map(|t| {
            format!(
                "{} {} ({})",
                t["labels"]["job"].as_str().unwrap_or("?"),
                t["labels"]["node"].as_str().unwrap_or("?"),
                t["health"].as_str().unwrap_or("?")
            )
        })
        .collect();
    let mut out = format!("{}/{} up", targets.len() - down.len(), targets.len());
    if !down.is_empty() {
        let _ = write!(out, "; not up: {}", down.join(", "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn targets_summary_counts_and_names_those_not_up() {
        let t = |job: &str, node: &str, health: &str| serde_json::json!({"labels": {"job": job, "node": node}, "health": health});
        let answer = serde_json::json!({"status": "success", "data": {"activeTargets": [
            t("rampartd", "controller", "up"),
            t("rampart-agent", "host1", "down"),
            t("rampart-agent", "host2", "unknown"),
        ]}});
        assert_eq!(
            targets_summary(&answer),
            "1/3 up; not up: rampart-agent host1 (down), rampart-agent host2 (unknown)"
        );
        assert_eq!(targets_summary(&serde_json::json!({})), "0/0 up");
    }
}
