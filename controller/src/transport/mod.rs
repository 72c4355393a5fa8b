//! Southbound transports: how rampartd reaches devices.
//!
//! [`netconf`] and [`restconf`] speak to model-driven devices (IOS-XE);
//! both report server errors as the same typed [`error::RpcError`].
//! [`iosxe_driver`] applies IOS-XE renderings transactionally on top of
//! NETCONF.

pub mod error;
pub mod http;
pub mod iosxe_driver;
pub mod netconf;
pub mod restconf;
pub mod ssh_channel;
pub mod ssh_cli;
