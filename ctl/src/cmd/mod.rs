//! One module per command: its arguments and what it does with them.

pub mod agents;
pub mod apply;
pub mod audit;
pub mod completion;
pub mod delete;
pub mod devices;
pub mod get;
pub mod rollback;
pub mod secrets;
pub mod sync;
pub mod tokens;
pub mod users;
pub mod whoami;
