//! The vendor simulators: one Python script each in `testbed/sims`, started
//! alike here; what differs (the script, how it gets or makes its login)
//! is in each simulator's module.

pub mod asa;
pub mod fdm;
pub mod meraki;
pub mod sdwan;

use std::{collections::BTreeMap, fs, path::Path};

use crate::{
    runner::base::{
        Env, LabError, Launch, Pending, Ready, io, lab_env, launch, primary, python, random_secret,
    },
    state::State,
    topology::{self, Lab, Node, Role},
};

/// What sets one simulator apart.
pub(crate) struct Sim {
    /// Its script in `testbed/sims`.
    pub script: &'static str,
    /// Whether it makes up its own login and prints it (`CREDENTIALS`).
    pub prints_credentials: bool,
    /// Its own arguments, given its node and TLS directory.
    pub args: fn(n: &Node, tls: &Path) -> SimArgs,
}

/// A simulator's own arguments, and the value of its credentials variable
/// for rampartd when the lab chooses the login.
pub(crate) struct SimArgs {
    pub args: Vec<String>,
    pub login: Option<String>,
}

/// The simulator a device role runs.
fn sim(role: Role) -> Sim {
    match role {
        Role::SimAsa => asa::SIM,
        Role::SimFdm => fdm::SIM,
        Role::SimMeraki => meraki::SIM,
        _ => sdwan::SIM,
    }
}

/// `--username admin --password <fresh> --cert-dir <tls>`: the HTTPS
/// simulators that log in with a user and password.
fn user_password(tls: &Path) -> SimArgs {
    let password = random_secret();
    let args = vec![
        "--username".to_owned(),
        "admin".to_owned(),
        "--password".to_owned(),
        password.clone(),
        "--cert-dir".to_owned(),
        tls.display().to_string(),
    ];
    SimArgs {
        args,
        login: Some(format!("admin:{password}")),
    }
}

/// Starts the simulator of `role` on `n`; its credentials go into `creds`.
pub(crate) fn start(
    lab: &Lab,
    n: &Node,
    role: Role,
    env: &Env,
    creds: &mut BTreeMap<String, String>,
) -> Result<Pending, LabError> {
    let sim = sim(role);
    let script = sim.script;
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
    let own = (sim.args)(n, &dir.join("tls"));
    args.extend(own.args);
    if let Some(login) = own.login {
        creds.insert(var.clone(), login);
    }
    let name = script.trim_end_matches(".py");
    launch(
        lab,
        n,
        env,
        Launch {
            process: name,
            log: name,
            program: &python(),
            args: &args,
            env: &lab_env(lab),
            ready: Ready::SimLines {
                asa: sim.prints_credentials,
                cred_var: var,
            },
        },
    )
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
