//! `sim-sdwan`: SD-WAN Manager (vManage) (`vmanage_sim.py`) over HTTPS with
//! a throw-away CA, logging in with a user and password.

use super::{Sim, user_password};

pub(crate) const SIM: Sim = Sim {
    script: "vmanage_sim.py",
    prints_credentials: false,
    args: |_, tls| user_password(tls),
};
