//! Southbound transports: how rampartd reaches devices. Nothing here knows
//! a platform's configuration; the platforms drive these sessions.
//!
//! [`netconf`] and [`restconf`] speak to model-driven devices (IOS-XE);
//! both report server errors as the same typed [`error::RpcError`].
//! [`http`] is the REST client of the controller platforms, [`ssh_cli`]
//! the ASA's CLI session.

pub mod backoff;
pub mod error;
pub mod http;
pub mod known_hosts;
pub mod netconf;
pub mod restconf;
pub mod ssh_channel;
pub mod ssh_cli;
