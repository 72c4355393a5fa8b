//! The committed fuzz corpora replayed on stable, one binary: NETCONF
//! framing and replies, and service specs.

mod netconf;
mod spec;
