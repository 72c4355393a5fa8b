//! Authentication and authorization of the management API.
//!
//! Every request passes one tower layer ([`layer::AuthLayer`]) before any
//! handler runs. It authenticates the caller (API token, JWT or client
//! certificate), applies the per-user rate limit and the concurrency bound,
//! looks the gRPC method up in the RBAC table ([`rbac::METHODS`]) and refuses
//! methods that are missing from it or whose permission the caller's role
//! lacks. Handlers then get the [`Caller`] from the request extensions and
//! scope what they read and write to the caller's tenants. Inside it, the
//! audit layer ([`audit::AuditLayer`]) counts every admitted call and
//! records every mutating one.

use std::{collections::BTreeSet, fmt};

pub mod audit;
pub mod jwt;
pub mod layer;
pub mod limits;
pub mod rbac;
pub mod setup;
pub mod tokens;

/// Why a caller could not be authenticated or authorized.
#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    /// A role name that is not one of the four roles.
    #[error("unknown role {role:?} (expected one of admin, operator, tenant, viewer)")]
    UnknownRole {
        /// What was given.
        role: String,
    },
    /// A tenant-scoped role without any tenant.
    #[error("role {role} needs at least one tenant (--tenant NAME, or \"*\" for all)")]
    NoTenants {
        /// The role.
        role: Role,
    },
    /// A tenant name that cannot be one.
    #[error("tenant {tenant:?} is not a valid tenant name")]
    BadTenant {
        /// What was given.
        tenant: String,
    },
    /// JWT validation set-up or JWKS retrieval failed.
    #[error("JWT: {message}")]
    Jwt {
        /// What went wrong.
        message: String,
    },
}

/// The four roles of the issue, from most to least powerful.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Role {
    /// Everything, in every tenant.
    Admin,
    /// Services and devices of the granted tenants; audit of those tenants.
    Operator,
    /// Its own tenant's services only; reads the devices its services target.
    Tenant,
    /// Read-only over the granted tenants.
    Viewer,
}

impl Role {
    /// Every role.
    pub const ALL: [Role; 4] = [Role::Admin, Role::Operator, Role::Tenant, Role::Viewer];

    /// The word used in tokens, bindings and the CLI.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Admin => "admin",
            Role::Operator => "operator",
            Role::Tenant => "tenant",
            Role::Viewer => "viewer",
        }
    }

    /// Parses the word used in tokens, bindings and the CLI.
    ///
    /// # Errors
    /// [`AuthError::UnknownRole`].
    pub fn parse(s: &str) -> Result<Role, AuthError> {
        Role::ALL
            .into_iter()
            .find(|r| r.as_str() == s)
            .ok_or_else(|| AuthError::UnknownRole { role: s.to_owned() })
    }

    /// The permissions this role grants (tenant scoping comes on top).
    #[must_use]
    pub fn permissions(self) -> &'static [Permission] {
        use Permission as P;
        match self {
            Role::Admin => &P::ALL,
            Role::Operator => &[
                P::ServicesRead,
                P::ServicesWrite,
                P::DevicesRead,
                P::DevicesWrite,
                P::TransactionsRead,
                P::AuditRead,
            ],
            Role::Tenant => &[
                P::ServicesRead,
                P::ServicesWrite,
                P::DevicesRead,
                P::TransactionsRead,
            ],
            Role::Viewer => &[P::ServicesRead, P::DevicesRead, P::TransactionsRead],
        }
    }

    /// Whether the role grants `p`.
    #[must_use]
    pub fn grants(self, p: Permission) -> bool {
        p == Permission::Authenticated || self.permissions().contains(&p)
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an RPC needs. Named as users see it in PermissionDenied messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// Any authenticated caller (WhoAmI, reflection).
    Authenticated,
    /// Read services of the caller's tenants.
    ServicesRead,
    /// Apply, dry-run and delete services of the caller's tenants.
    ServicesWrite,
    /// Read the device inventory (the tenant role: only targeted devices).
    DevicesRead,
    /// Change the (shared) device inventory.
    DevicesWrite,
    /// Read transactions of the caller's tenants.
    TransactionsRead,
    /// Issue and revoke tokens, bind certificate users.
    TokensAdmin,
    /// Query the audit log.
    AuditRead,
    /// Rotate the encryption key of stored secrets.
    SecretsAdmin,
}

impl Permission {
    /// Every permission a role can hold.
    pub const ALL: [Permission; 8] = [
        Permission::ServicesRead,
        Permission::ServicesWrite,
        Permission::DevicesRead,
        Permission::DevicesWrite,
        Permission::TransactionsRead,
        Permission::TokensAdmin,
        Permission::AuditRead,
        Permission::SecretsAdmin,
    ];

    /// `services:read` and so on.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::Authenticated => "authenticated",
            Permission::ServicesRead => "services:read",
            Permission::ServicesWrite => "services:write",
            Permission::DevicesRead => "devices:read",
            Permission::DevicesWrite => "devices:write",
            Permission::TransactionsRead => "transactions:read",
            Permission::TokensAdmin => "tokens:admin",
            Permission::AuditRead => "audit:read",
            Permission::SecretsAdmin => "secrets:admin",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The tenants a caller may act on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Tenants {
    /// Every tenant (admin, or a grant of `*`).
    All,
    /// Only these.
    Only(BTreeSet<String>),
}

impl Tenants {
    /// Builds the scope of a role from its granted tenant list (`*` = all).
    ///
    /// # Errors
    /// [`AuthError::NoTenants`] when a non-admin role has none;
    /// [`AuthError::BadTenant`] for names that cannot be tenants.
    pub fn for_role(role: Role, granted: &[String]) -> Result<Tenants, AuthError> {
        if role == Role::Admin || granted.iter().any(|t| t == "*") {
            return Ok(Tenants::All);
        }
        if granted.is_empty() {
            return Err(AuthError::NoTenants { role });
        }
        for t in granted {
            if !valid_name(t) {
                return Err(AuthError::BadTenant { tenant: t.clone() });
            }
        }
        Ok(Tenants::Only(granted.iter().cloned().collect()))
    }

    /// Whether `tenant` is in scope.
    #[must_use]
    pub fn contains(&self, tenant: &str) -> bool {
        match self {
            Tenants::All => true,
            Tenants::Only(set) => set.contains(tenant),
        }
    }

    /// As a list, `["*"]` for all.
    #[must_use]
    pub fn to_vec(&self) -> Vec<String> {
        match self {
            Tenants::All => vec!["*".to_owned()],
            Tenants::Only(set) => set.iter().cloned().collect(),
        }
    }
}

/// Names of users and tenants: what a DNS label or a login allows, so they
/// are safe in logs, file names and audit queries.
#[must_use]
pub fn valid_name(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 128
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'@'))
}

/// How the caller proved its identity.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// An API token issued by rampartd.
    Token,
    /// A JWT from the configured SSO issuer.
    Jwt,
    /// A client certificate signed by a trusted CA.
    Certificate,
}

impl AuthMethod {
    /// `token`, `jwt` or `certificate`.
    #[must_use]
    pub fn as_str(self) -> &'static str {
        match self {
            AuthMethod::Token => "token",
            AuthMethod::Jwt => "jwt",
            AuthMethod::Certificate => "certificate",
        }
    }
}

/// An authenticated caller, put into the request extensions by the auth
/// layer for the handlers.
#[derive(Debug, Clone)]
pub struct Caller {
    /// User name (token name@id, JWT `sub`, certificate CN).
    pub user: String,
    pub role: Role,
    /// Tenant scope.
    pub tenants: Tenants,
    /// How it authenticated.
    pub method: AuthMethod,
    /// Client address, `ip:port`, or empty when unknown.
    pub peer: String,
    /// Which credential: the token id, `jwt` or `certificate`.
    pub credential: String,
}

impl Caller {
    /// Whether the caller may use `permission` on `tenant`.
    #[must_use]
    pub fn may(&self, permission: Permission, tenant: &str) -> bool {
        self.role.grants(permission) && self.tenants.contains(tenant)
    }

    /// Whether data of `tenant` may be shown to the caller (renderings of
    /// shared hosts and devices are filtered with it).
    pub fn tenant_filter(&self) -> impl Fn(&str) -> bool + '_ {
        |tenant| self.tenants.contains(tenant)
    }

    /// Whether the caller sees the whole device inventory; the tenant role
    /// only sees devices its own services target.
    #[must_use]
    pub fn sees_all_devices(&self) -> bool {
        self.role != Role::Tenant
    }

    /// How the caller authenticated, as audit records show it
    /// (`token:tok-…`, `jwt`, `certificate`).
    #[must_use]
    pub fn auth_label(&self) -> String {
        match self.method {
            AuthMethod::Token => format!("token:{}", self.credential),
            other => other.as_str().to_owned(),
        }
    }

    /// The user as the transaction log records it.
    #[must_use]
    pub fn author(&self) -> String {
        if self.peer.is_empty() {
            self.user.clone()
        } else {
            format!("{}@{}", self.user, self.peer)
        }
    }
}

/// The PermissionDenied status naming the missing permission (and the
/// tenant the caller itself named, never anything it could not see).
#[must_use]
pub fn denied(permission: Permission, tenant: Option<&str>) -> tonic::Status {
    match tenant {
        Some(t) => tonic::Status::permission_denied(format!(
            "permission denied: {permission} on tenant {t:?} is not granted to you"
        )),
        None => tonic::Status::permission_denied(format!(
            "permission denied: your role lacks {permission}"
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn roles_parse_and_grant() {
        for r in Role::ALL {
            assert_eq!(Role::parse(r.as_str()).unwrap(), r);
        }
        assert!(Role::parse("root").is_err());
        assert!(Role::Admin.grants(Permission::SecretsAdmin));
        assert!(!Role::Viewer.grants(Permission::ServicesWrite));
        assert!(!Role::Tenant.grants(Permission::DevicesWrite));
        assert!(Role::Operator.grants(Permission::DevicesWrite));
    }

    #[test]
    fn tenant_scopes() {
        assert_eq!(Tenants::for_role(Role::Admin, &[]).unwrap(), Tenants::All);
        assert!(Tenants::for_role(Role::Tenant, &[]).is_err());
        assert!(Tenants::for_role(Role::Tenant, &["a/b".into()]).is_err());
        let t = Tenants::for_role(Role::Operator, &["acme".into()]).unwrap();
        assert!(t.contains("acme") && !t.contains("other"));
        assert_eq!(
            Tenants::for_role(Role::Viewer, &["*".into()]).unwrap(),
            Tenants::All
        );
    }
}
