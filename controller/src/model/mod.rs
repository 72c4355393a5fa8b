//! The service model: spec documents (YAML/JSON) are converted to YANG
//! instance data of `models/yang/`, validated with libyang, checked
//! semantically, and turned into the typed [`spec::ServiceSpec`].

pub mod device;
pub mod spec;
