//! `down`: removes what the state file lists and everything carrying the
//! lab's name, so it also cleans up after a crash.

use std::{collections::BTreeSet, fs, path::PathBuf, time::Duration};

use super::base::{Env, LabError, MARKER, bpf_root, host_if, run_dir};
use crate::{state::State, sys, topology};

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
