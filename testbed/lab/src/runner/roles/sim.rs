//! The vendor simulators (`sim-meraki`, `sim-fdm`, `sim-asa`, `sim-sdwan`):
//! one Python script each in `testbed/sims`, started alike; they differ in
//! the script and in how they are given credentials, both chosen here.

use std::{collections::BTreeMap, fs, path::Path};

use crate::{
    runner::base::{
        Env, LabError, Pending, Ready, io, lab_env, ns_name, primary, python, random_secret, step,
    },
    state::{Proc, State},
    sys,
    topology::{self, Lab, Node, Role},
};

/// Starts the simulator of `role` on `n`; its credentials go into `creds`.
pub(crate) fn start(
    lab: &Lab,
    n: &Node,
    role: Role,
    env: &Env,
    creds: &mut BTreeMap<String, String>,
) -> Result<Pending, LabError> {
    let script = match role {
        Role::SimMeraki => "meraki_sim.py",
        Role::SimFdm => "fdm_sim.py",
        Role::SimAsa => "asa_sim.py",
        _ => "vmanage_sim.py",
    };
    let dir = env.node_dir(&n.name);
    fs::create_dir_all(dir.join("tls")).map_err(io(&dir))?;
    let (_, _, port) = n.device().unwrap_or((role, "", 443));
    let addr = primary(n);
    let var = topology::credentials_var(&n.name);
    let mut args = vec![
        env.root
            .join("testbed/sims")
            .join(script)
            .display()
            .to_string(),
        "--host".to_owned(),
        addr.to_string(),
        "--port".to_owned(),
        port.to_string(),
        "--state-file".to_owned(),
        dir.join("sim-state.json").display().to_string(),
    ];
    match role {
        Role::SimAsa => {
            args.extend(["--hostname".to_owned(), n.name.clone()]);
        }
        Role::SimMeraki => {
            let key = random_secret();
            args.extend(["--api-key".to_owned(), key.clone()]);
            args.extend([
                "--cert-dir".to_owned(),
                dir.join("tls").display().to_string(),
            ]);
            creds.insert(var.clone(), format!("meraki:{key}"));
        }
        _ => {
            let password = random_secret();
            args.extend(["--username".to_owned(), "admin".to_owned()]);
            args.extend(["--password".to_owned(), password.clone()]);
            args.extend([
                "--cert-dir".to_owned(),
                dir.join("tls").display().to_string(),
            ]);
            creds.insert(var.clone(), format!("admin:{password}"));
        }
    }
    let log = env
        .log_dir()
        .join(format!("{}-{}.log", n.name, script.trim_end_matches(".py")));
    let ns = ns_name(&lab.name, &n.name);
    let (pid, started, child) = sys::spawn(Some(&ns), &python(), &args, &lab_env(lab), &log)
        .map_err(step(&n.name, format!("start {script}")))?;
    Ok(Pending {
        child,
        node: n.name.clone(),
        proc: Proc {
            name: script.trim_end_matches(".py").to_owned(),
            pid,
            started,
            log,
        },
        ns,
        ready: Ready::SimLines {
            asa: role == Role::SimAsa,
            cred_var: var,
        },
    })
}

/// One PEM bundle of every HTTPS simulator's throw-away CA, for rampartd's
/// REST drivers (`[southbound] ca_bundle` in its config), written before
/// rampartd starts.
pub(crate) fn write_ca_bundle(env: &Env, state: &State) -> Result<(), LabError> {
    let mut bundle = String::new();
    for s in state.nodes.values() {
        if let Some(cert) = s.info.get("cert") {
            bundle.push_str(&fs::read_to_string(cert).map_err(io(Path::new(cert)))?);
        }
    }
    let path = env.state_dir.join("sims-ca.pem");
    fs::write(&path, bundle).map_err(io(&path))
}
