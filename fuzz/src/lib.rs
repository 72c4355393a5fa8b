//! The controller's pure NETCONF parsing code, compiled on its own (the same
//! source files, included by path) so fuzzing does not build the whole
//! controller with sanitizers.
#![allow(
    missing_docs,
    reason = "the included controller modules carry their own docs"
)]

#[path = "../../controller/src/transport/netconf/framing.rs"]
pub mod framing;
#[path = "../../controller/src/transport/error.rs"]
pub mod nc_error;
#[path = "../../controller/src/transport/netconf/reply.rs"]
pub mod reply;

/// The module path `reply.rs` imports its error types from.
pub mod transport {
    pub use super::nc_error as error;
}

pub mod checks;

pub use checks::{check_framing, check_reply};
