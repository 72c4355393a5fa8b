//! The one table mapping every gRPC method of the management API to the
//! permission it needs and whether it changes anything (and so is audited).
//!
//! The auth layer refuses any method not listed here, so a new RPC is
//! unreachable until someone decides its permission; a unit test walks the
//! proto descriptor and fails when a method has no entry.

use super::Permission;

/// What one method needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct MethodRule {
    /// The gRPC path, `/rampart.v1.ServiceManager/ApplyService`.
    pub path: &'static str,
    /// Needed permission (tenant scoping is checked in the handler).
    pub permission: Permission,
    /// Changes state: every call is written to the audit log.
    pub mutating: bool,
}

const fn rule(path: &'static str, permission: Permission, mutating: bool) -> MethodRule {
    MethodRule {
        path,
        permission,
        mutating,
    }
}

/// Every method of the management API.
pub const METHODS: &[MethodRule] = &[
    rule(
        "/rampart.v1.ServiceManager/ApplyService",
        Permission::ServicesWrite,
        true,
    ),
    // Dry-run renders device configuration: as powerful as writing, minus
    // the write, so it needs services:write.
    rule(
        "/rampart.v1.ServiceManager/DryRun",
        Permission::ServicesWrite,
        false,
    ),
    rule(
        "/rampart.v1.ServiceManager/GetService",
        Permission::ServicesRead,
        false,
    ),
    rule(
        "/rampart.v1.ServiceManager/ListServices",
        Permission::ServicesRead,
        false,
    ),
    rule(
        "/rampart.v1.ServiceManager/DeleteService",
        Permission::ServicesWrite,
        true,
    ),
    rule(
        "/rampart.v1.DeviceManager/AddDevice",
        Permission::DevicesWrite,
        true,
    ),
    rule(
        "/rampart.v1.DeviceManager/GetDevice",
        Permission::DevicesRead,
        false,
    ),
    rule(
        "/rampart.v1.DeviceManager/ListDevices",
        Permission::DevicesRead,
        false,
    ),
    rule(
        "/rampart.v1.DeviceManager/RemoveDevice",
        Permission::DevicesWrite,
        true,
    ),
    rule(
        "/rampart.v1.TransactionManager/ListTransactions",
        Permission::TransactionsRead,
        false,
    ),
    rule(
        "/rampart.v1.TransactionManager/GetTransaction",
        Permission::TransactionsRead,
        false,
    ),
    // Tenant scoping in the handler: every service of the transaction must
    // be writable by the caller.
    rule(
        "/rampart.v1.TransactionManager/Rollback",
        Permission::ServicesWrite,
        true,
    ),
    // Drift reports name objects of every tenant on a device: device
    // administrators only.
    rule(
        "/rampart.v1.TransactionManager/CheckSync",
        Permission::DevicesWrite,
        false,
    ),
    rule(
        "/rampart.v1.TransactionManager/Sync",
        Permission::DevicesWrite,
        true,
    ),
    rule(
        "/rampart.v1.AccessManager/WhoAmI",
        Permission::Authenticated,
        false,
    ),
    rule(
        "/rampart.v1.AccessManager/CreateToken",
        Permission::TokensAdmin,
        true,
    ),
    rule(
        "/rampart.v1.AccessManager/ListTokens",
        Permission::TokensAdmin,
        false,
    ),
    rule(
        "/rampart.v1.AccessManager/RevokeToken",
        Permission::TokensAdmin,
        true,
    ),
    rule(
        "/rampart.v1.AccessManager/BindUser",
        Permission::TokensAdmin,
        true,
    ),
    rule(
        "/rampart.v1.AccessManager/UnbindUser",
        Permission::TokensAdmin,
        true,
    ),
    rule(
        "/rampart.v1.AccessManager/ListBindings",
        Permission::TokensAdmin,
        false,
    ),
    rule(
        "/rampart.v1.AuditLog/QueryAudit",
        Permission::AuditRead,
        false,
    ),
    rule(
        "/rampart.v1.SecretManager/RotateSecrets",
        Permission::SecretsAdmin,
        true,
    ),
    // Host agents are inventory, like devices.
    rule(
        "/rampart.v1.FleetManager/ListAgents",
        Permission::DevicesRead,
        false,
    ),
    rule(
        "/rampart.v1.FleetManager/CreateEnrollToken",
        Permission::DevicesWrite,
        true,
    ),
    rule(
        "/rampart.v1.FleetManager/RevokeAgent",
        Permission::DevicesWrite,
        true,
    ),
    rule(
        "/rampart.v1.FleetManager/GetServiceCounters",
        Permission::ServicesRead,
        false,
    ),
];

/// Services reachable without credentials: health checks only (load
/// balancers and systemd probes carry no token).
pub const PUBLIC_PREFIXES: &[&str] = &["/grpc.health.v1.Health/"];

/// Services any authenticated caller may use: schema reflection reveals the
/// API's shape, not data.
pub const AUTHENTICATED_PREFIXES: &[&str] = &[
    "/grpc.reflection.v1.ServerReflection/",
    "/grpc.reflection.v1alpha.ServerReflection/",
];

/// The rule of a gRPC path.
#[must_use]
pub fn lookup(path: &str) -> Option<&'static MethodRule> {
    METHODS.iter().find(|m| m.path == path)
}

/// `ServiceManager/ApplyService` of `/rampart.v1.ServiceManager/ApplyService`,
/// the short form used in metrics, logs and audit records.
#[must_use]
pub fn short_name(path: &str) -> &str {
    path.strip_prefix("/rampart.v1.").unwrap_or(path)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use prost::Message as _;

    use super::*;

    /// Every method of every service in management.proto has exactly one
    /// rule, and the table names no method that does not exist.
    #[test]
    fn every_proto_method_has_exactly_one_rule() {
        let set =
            prost_types::FileDescriptorSet::decode(rampart_proto::v1::FILE_DESCRIPTOR_SET).unwrap();
        let mut in_proto = BTreeSet::new();
        for file in set
            .file
            .iter()
            .filter(|f| f.name() == "rampart/v1/management.proto")
        {
            for svc in &file.service {
                for m in &svc.method {
                    in_proto.insert(format!("/{}.{}/{}", file.package(), svc.name(), m.name()));
                }
            }
        }
        assert!(in_proto.len() >= 20, "descriptor not found: {in_proto:?}");
        let in_table: BTreeSet<String> = METHODS.iter().map(|m| m.path.to_owned()).collect();
        assert_eq!(METHODS.len(), in_table.len(), "duplicate rule");
        let missing: Vec<_> = in_proto.difference(&in_table).collect();
        assert!(
            missing.is_empty(),
            "methods without an RBAC rule: {missing:?}"
        );
        let stale: Vec<_> = in_table.difference(&in_proto).collect();
        assert!(stale.is_empty(), "rules for unknown methods: {stale:?}");
    }

    #[test]
    fn short_names() {
        assert_eq!(
            short_name("/rampart.v1.DeviceManager/AddDevice"),
            "DeviceManager/AddDevice"
        );
        assert!(
            lookup("/rampart.v1.DeviceManager/AddDevice")
                .unwrap()
                .mutating
        );
        assert!(lookup("/rampart.v1.Nope/X").is_none());
    }
}
