//! NETCONF client (RFC 6241) over SSH (RFC 6242).
//!
//! Layers, bottom up: [`framing`] (pure byte-stream codec), [`reply`] (pure
//! message parsing), [`ops`] (typed operations), [`session`] (one blocking
//! libssh2 session), [`pool`] (async, bounded, reconnecting access per
//! device).

pub mod framing;
pub mod ops;
pub mod pool;
pub mod reply;
pub mod session;

pub use ops::{
    Commit, Datastore, DefaultOperation, EditConfig, ErrorOption, Filter, Operation, TestOption,
};
pub use pool::{Backoff, NetconfPool, PoolError};
pub use session::{Auth, Capabilities, HostKeyPolicy, NetconfError, Session, SessionConfig};
