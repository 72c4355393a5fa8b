//! The tower layer every management-API request passes before its handler:
//! authentication, per-user rate limit, concurrency bound and the RBAC
//! table. Refusals are answered here with a gRPC status; handlers receive
//! the [`Caller`] in the request extensions.

use std::{
    future::Future,
    net::SocketAddr,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use tokio::sync::Semaphore;
use tonic::{
    Status,
    codegen::http,
    transport::server::{TcpConnectInfo, TlsConnectInfo},
};

use super::{
    AuthMethod, Caller, Role, Tenants, audit, denied,
    jwt::JwtVerifier,
    limits::RateLimiter,
    rbac::{self, MethodRule},
    tokens,
};
use crate::{
    store::{Store, now_unix_ms},
    tls,
};

/// Shared state of the auth layer.
pub struct Authenticator {
    store: Store,
    jwt: Option<Arc<JwtVerifier>>,
    limiter: RateLimiter,
    failures: RateLimiter,
    concurrency: Arc<Semaphore>,
}

impl std::fmt::Debug for Authenticator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Authenticator").finish_non_exhaustive()
    }
}

/// Settings of the limits the layer enforces.
#[derive(Debug, Clone, Copy)]
pub struct LimitSettings {
    /// Sustained requests per second per user.
    pub requests_per_second: f64,
    /// Burst per user.
    pub burst: u32,
    /// Requests handled at once; more wait.
    pub max_concurrent: usize,
    /// Failed authentications per second per client address before the
    /// answer becomes ResourceExhausted (and stops being audited).
    pub auth_failures_per_second: f64,
    /// Burst of failed authentications per client address.
    pub auth_failure_burst: u32,
}

impl Authenticator {
    /// The authenticator over `store`, with an optional JWT verifier.
    #[must_use]
    pub fn new(store: Store, jwt: Option<Arc<JwtVerifier>>, limits: LimitSettings) -> Self {
        Self {
            store,
            jwt,
            limiter: RateLimiter::new(limits.requests_per_second, limits.burst),
            failures: RateLimiter::new(limits.auth_failures_per_second, limits.auth_failure_burst),
            concurrency: Arc::new(Semaphore::new(limits.max_concurrent.max(1))),
        }
    }

    /// Authenticates a request from its headers and connection.
    ///
    /// # Errors
    /// Unauthenticated (no, unknown, expired or revoked credentials) or
    /// PermissionDenied (a certificate user without a role).
    pub async fn authenticate(
        &self,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Caller, Status> {
        let peer = peer_addr(extensions).map_or_else(String::new, |a| a.to_string());
        if let Some(value) = headers.get(http::header::AUTHORIZATION) {
            let value = value
                .to_str()
                .map_err(|_| Status::unauthenticated("authorization header is not text"))?;
            let bearer = value
                .strip_prefix("Bearer ")
                .or_else(|| value.strip_prefix("bearer "))
                .ok_or_else(|| {
                    Status::unauthenticated("authorization header must be `Bearer <token>`")
                })?
                .trim();
            if tokens::looks_like_token(bearer) {
                return self.token_caller(bearer, peer);
            }
            if let Some(jwt) = &self.jwt
                && bearer.split('.').count() == 3
            {
                let claims = jwt
                    .verify(bearer)
                    .await
                    .map_err(|e| Status::unauthenticated(e.to_string()))?;
                let role = Role::parse(&claims.rampart_role).map_err(|e| {
                    Status::permission_denied(format!(
                        "JWT of {:?}: claim rampart_role: {e}",
                        claims.sub
                    ))
                })?;
                let tenants = Tenants::for_role(role, &claims.rampart_tenants).map_err(|e| {
                    Status::permission_denied(format!(
                        "JWT of {:?}: claim rampart_tenants: {e}",
                        claims.sub
                    ))
                })?;
                if !super::valid_name(&claims.sub) {
                    return Err(Status::unauthenticated(
                        "JWT: claim sub is not a valid user name",
                    ));
                }
                return Ok(Caller {
                    user: claims.sub,
                    role,
                    tenants,
                    method: AuthMethod::Jwt,
                    peer,
                    credential: "jwt".to_owned(),
                });
            }
            return Err(Status::unauthenticated(
                "bearer value is neither a rampart API token (rpt_...) nor an accepted JWT",
            ));
        }
        if let Some(certs) = extensions
            .get::<TlsConnectInfo<TcpConnectInfo>>()
            .and_then(TlsConnectInfo::peer_certs)
            && let Some(leaf) = certs.first()
        {
            return self.cert_caller(leaf.as_ref(), peer);
        }
        Err(Status::unauthenticated(
            "no credentials: send `authorization: Bearer <token>` (rampartctl --token/--token-file) \
             or a client certificate",
        ))
    }

    fn token_caller(&self, secret: &str, peer: String) -> Result<Caller, Status> {
        let hash = tokens::hash(secret);
        let record = self
            .store
            .token_by_hash(&hash)
            .map_err(|e| Status::internal(format!("token lookup: {e}")))?
            .ok_or_else(|| Status::unauthenticated("unknown API token"))?;
        if record.revoked {
            return Err(Status::unauthenticated(format!(
                "API token {} was revoked",
                record.id
            )));
        }
        if let Some(exp) = record.expires_unix
            && exp <= now_unix_ms() / 1000
        {
            return Err(Status::unauthenticated(format!(
                "API token {} expired at {} (Unix time)",
                record.id, exp
            )));
        }
        let role = Role::parse(&record.role).map_err(|e| Status::internal(e.to_string()))?;
        let tenants = Tenants::for_role(role, &record.tenants)
            .map_err(|e| Status::internal(e.to_string()))?;
        Ok(Caller {
            user: record.name,
            role,
            tenants,
            method: AuthMethod::Token,
            peer,
            credential: record.id,
        })
    }

    fn cert_caller(&self, der: &[u8], peer: String) -> Result<Caller, Status> {
        let id = tls::cert_identity(der).map_err(|e| Status::unauthenticated(e.to_string()))?;
        if !super::valid_name(&id.user) {
            return Err(Status::unauthenticated(format!(
                "client certificate: user name {:?} is not valid",
                id.user
            )));
        }
        let binding = self
            .store
            .binding(&id.user)
            .map_err(|e| Status::internal(format!("binding lookup: {e}")))?;
        let (role, granted) = if let Some(b) = binding {
            let role = Role::parse(&b.role).map_err(|e| Status::internal(e.to_string()))?;
            (role, b.tenants)
        } else if let Some(role) = id.ous.iter().find_map(|ou| Role::parse(ou).ok()) {
            (role, id.tenants.clone())
        } else {
            return Err(Status::permission_denied(format!(
                "certificate user {:?} has no role: bind one (rampartctl users bind {} --role ...) \
                 or issue the certificate with the role as OU",
                id.user, id.user
            )));
        };
        let tenants = Tenants::for_role(role, &granted).map_err(|e| {
            Status::permission_denied(format!("certificate user {:?}: {e}", id.user))
        })?;
        Ok(Caller {
            user: id.user,
            role,
            tenants,
            method: AuthMethod::Certificate,
            peer,
            credential: "certificate".to_owned(),
        })
    }

    /// Everything the layer decides for one request: the caller to hand to
    /// the handler, or the refusal.
    async fn admit(
        &self,
        path: &str,
        headers: &http::HeaderMap,
        extensions: &http::Extensions,
    ) -> Result<Option<Caller>, (Status, Option<Caller>)> {
        if rbac::PUBLIC_PREFIXES.iter().any(|p| path.starts_with(p)) {
            return Ok(None);
        }
        let caller = match self.authenticate(headers, extensions).await {
            Ok(c) => c,
            Err(s) => {
                // Failed authentications are throttled per client address,
                // without affecting callers that do authenticate from there
                // (a NAT neighbour sending garbage cannot lock them out).
                let ip = peer_addr(extensions)
                    .map_or_else(|| "unknown".to_owned(), |a| a.ip().to_string());
                if let Err(wait) = self.failures.check(&format!("failures:{ip}")) {
                    return Err((
                        exhausted(&format!("too many failed authentications from {ip}"), wait),
                        None,
                    ));
                }
                return Err((s, None));
            }
        };
        if let Err(wait) = self.limiter.check(&caller.user) {
            return Err((
                exhausted(
                    &format!("rate limit for user {:?} exceeded", caller.user),
                    wait,
                ),
                Some(caller),
            ));
        }
        if rbac::AUTHENTICATED_PREFIXES
            .iter()
            .any(|p| path.starts_with(p))
        {
            return Ok(Some(caller));
        }
        let Some(rule) = rbac::lookup(path) else {
            return Err((
                Status::permission_denied(format!(
                    "method {path} has no RBAC rule; refused until it gets one"
                )),
                Some(caller),
            ));
        };
        if !caller.role.grants(rule.permission) {
            return Err((denied(rule.permission, None), Some(caller)));
        }
        Ok(Some(caller))
    }

    /// Records a refused mutating call in the audit log.
    async fn audit_refusal(
        &self,
        rule: &MethodRule,
        status: &Status,
        caller: Option<&Caller>,
        peer: String,
    ) {
        let note = audit::Note {
            request: "<not read: refused before the handler>".into(),
            ..audit::Note::default()
        };
        let method = rbac::short_name(rule.path);
        audit::append(&self.store, method, caller, peer, note, Some(status)).await;
    }
}

fn exhausted(what: &str, wait: std::time::Duration) -> Status {
    let ms = wait.as_millis().max(1);
    let mut s = Status::resource_exhausted(format!("{what}; retry in {ms} ms"));
    if let Ok(v) = ms.to_string().parse() {
        s.metadata_mut().insert("retry-after-ms", v);
    }
    s
}

/// The client address of a request.
#[must_use]
pub fn peer_addr(extensions: &http::Extensions) -> Option<SocketAddr> {
    extensions
        .get::<TcpConnectInfo>()
        .and_then(TcpConnectInfo::remote_addr)
        .or_else(|| {
            extensions
                .get::<TlsConnectInfo<TcpConnectInfo>>()
                .and_then(|t| t.get_ref().remote_addr())
        })
}

/// The layer; add with `Server::builder().layer(AuthLayer::new(..))`.
#[derive(Debug, Clone)]
pub struct AuthLayer {
    auth: Arc<Authenticator>,
}

impl AuthLayer {
    /// A layer sharing `auth`.
    #[must_use]
    pub fn new(auth: Arc<Authenticator>) -> Self {
        Self { auth }
    }
}

impl<S> tower_layer::Layer<S> for AuthLayer {
    type Service = AuthService<S>;

    fn layer(&self, inner: S) -> Self::Service {
        AuthService {
            inner,
            auth: self.auth.clone(),
        }
    }
}

/// The service the layer wraps around the gRPC router.
#[derive(Debug, Clone)]
pub struct AuthService<S> {
    inner: S,
    auth: Arc<Authenticator>,
}

type BoxFuture<T> = Pin<Box<dyn Future<Output = T> + Send + 'static>>;

impl<S, B, ResBody> tonic::codegen::Service<http::Request<B>> for AuthService<S>
where
    S: tonic::codegen::Service<http::Request<B>, Response = http::Response<ResBody>>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    S::Error: Send + 'static,
    B: Send + 'static,
    ResBody: Default + Send + 'static,
{
    type Response = http::Response<ResBody>;
    type Error = S::Error;
    type Future = BoxFuture<Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, mut req: http::Request<B>) -> Self::Future {
        // The clone is ready-polled in place of the original (tower's
        // standard swap), so the ready instance serves this request.
        let clone = self.inner.clone();
        let mut inner = std::mem::replace(&mut self.inner, clone);
        let auth = self.auth.clone();
        Box::pin(async move {
            let path = req.uri().path().to_owned();
            match auth.admit(&path, req.headers(), req.extensions()).await {
                Ok(caller) => {
                    let permit = auth.concurrency.clone().acquire_owned().await;
                    if let Some(c) = caller {
                        req.extensions_mut().insert(c);
                    }
                    let res = inner.call(req).await;
                    drop(permit);
                    res
                }
                Err((status, caller)) => {
                    let peer =
                        peer_addr(req.extensions()).map_or_else(String::new, |a| a.to_string());
                    tracing::info!(
                        method = %path,
                        user = caller.as_ref().map_or("", |c| c.user.as_str()),
                        code = ?status.code(),
                        message = status.message(),
                        "request refused by the auth layer"
                    );
                    // Throttled floods are not audited: they would only fill
                    // the disk.
                    if let Some(rule) = rbac::lookup(&path)
                        .filter(|r| r.mutating && status.code() != tonic::Code::ResourceExhausted)
                    {
                        auth.audit_refusal(rule, &status, caller.as_ref(), peer)
                            .await;
                    }
                    Ok(status.into_http())
                }
            }
        })
    }
}

/// The gRPC code as audit records and metrics name it (`PermissionDenied`).
#[must_use]
pub fn code_name(code: tonic::Code) -> String {
    match code {
        tonic::Code::Ok => "OK".to_owned(),
        other => format!("{other:?}"),
    }
}
