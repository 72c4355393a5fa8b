//! `sim-fdm`: Firepower Device Manager's REST API (`fdm_sim.py`) over
//! HTTPS with a throw-away CA, logging in with a user and password.

use super::{Sim, user_password};

pub(crate) const SIM: Sim = Sim {
    script: "fdm_sim.py",
    prints_credentials: false,
    args: |_, tls| user_password(tls),
};
