//! `status`: what of a lab exists and runs, from its state file, checked
//! against the machine.

use std::{collections::BTreeMap, fmt::Write as _};

use crate::{state::State, sys};

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
