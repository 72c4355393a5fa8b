//! One module per node role: how the lab starts what the node runs, and
//! when it counts as ready; the simulators one module each under [`sim`].
//! `client` nodes run nothing, so have no module.
//!
//! Dependencies go one way: [`agent`] enrolls through [`controller`]'s
//! rampartctl, and [`prometheus`] scrapes the ports both define.

pub mod agent;
pub mod controller;
pub mod netconf;
pub mod prometheus;
pub mod server;
pub mod sim;
