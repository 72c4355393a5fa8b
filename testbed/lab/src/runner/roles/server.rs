//! `server`: the web backend (`rampart-lab http-serve`), answering on each
//! of the node's HTTP ports with its name.

use std::net::SocketAddr;

use crate::{
    runner::base::{Env, LabError, Launch, Pending, Ready, lab_env, launch, primary},
    topology::{Lab, Node},
};

/// Starts the web backend of `n`.
pub(crate) fn start(lab: &Lab, n: &Node, env: &Env) -> Result<Pending, LabError> {
    let me = std::env::current_exe().unwrap_or_else(|_| env.bin_dir.join("rampart-lab"));
    let mut args = vec!["http-serve".to_owned(), "--name".to_owned(), n.name.clone()];
    for p in &n.http_ports {
        args.extend(["--listen".to_owned(), format!("0.0.0.0:{p}")]);
    }
    let addr = primary(n);
    launch(
        lab,
        n,
        env,
        Launch {
            process: "http-server",
            log: "http",
            program: &me,
            args: &args,
            env: &lab_env(lab),
            ready: Ready::Tcp(
                n.http_ports
                    .iter()
                    .map(|p| SocketAddr::new(addr, *p))
                    .collect(),
            ),
        },
    )
}
