//! `server`: the web backend (`rampart-lab http-serve`), answering on each
//! of the node's HTTP ports with its name.

use std::net::SocketAddr;

use crate::{
    runner::base::{Env, LabError, Pending, Ready, lab_env, ns_name, primary, step},
    state::Proc,
    sys,
    topology::{Lab, Node},
};

/// Starts the web backend of `n`.
pub(crate) fn start(lab: &Lab, n: &Node, env: &Env) -> Result<Pending, LabError> {
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
