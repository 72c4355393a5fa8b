//! Security tests over real TLS sockets, one binary: RBAC per role and
//! method, API limits, secret storage, JWT validation.

#[path = "../support/secure.rs"]
mod secure;

mod jwt;
mod limits;
mod rbac;
mod secrets;
