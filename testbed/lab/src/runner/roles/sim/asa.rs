//! `sim-asa`: the ASA CLI over SSH (`asa_sim.py`). It makes up its own
//! login and prints it (`CREDENTIALS user password enable`), which the
//! runner hands rampartd as `user:password:enable`.

use std::path::Path;

use super::{Sim, SimArgs};
use crate::topology::Node;

pub(crate) const SIM: Sim = Sim {
    script: "asa_sim.py",
    prints_credentials: true,
    args,
};

/// The prompt carries the node's name.
fn args(n: &Node, _tls: &Path) -> SimArgs {
    SimArgs {
        args: vec!["--hostname".to_owned(), n.name.clone()],
        login: None,
    }
}
