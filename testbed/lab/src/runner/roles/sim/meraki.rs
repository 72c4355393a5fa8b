//! `sim-meraki`: the Meraki Dashboard API (`meraki_sim.py`) over HTTPS with
//! a throw-away CA, authenticated by an API key (rampartd reads it as
//! `meraki:<key>`).

use std::path::Path;

use super::{Sim, SimArgs};
use crate::{runner::base::random_secret, topology::Node};

pub(crate) const SIM: Sim = Sim {
    script: "meraki_sim.py",
    prints_credentials: false,
    args,
};

fn args(_: &Node, tls: &Path) -> SimArgs {
    let key = random_secret();
    let args = vec![
        "--api-key".to_owned(),
        key.clone(),
        "--cert-dir".to_owned(),
        tls.display().to_string(),
    ];
    SimArgs {
        args,
        login: Some(format!("meraki:{key}")),
    }
}
