//! A small RESTCONF (RFC 8040) server for tests: HTTPS (rustls), HTTP basic
//! authentication, `GET`/`PUT`/`PATCH`/`DELETE` on `/restconf/data/...`
//! in JSON and XML, and every change validated with libyang against the
//! loaded YANG models (the Cisco IOS-XE ones in practice) before it is
//! stored. Errors are RFC 8040 `ietf-restconf:errors` bodies.
//!
//! No free RESTCONF server exists for Debian 12, so the controller's
//! RESTCONF client is tested against this one; it enforces the same schema
//! a device would.

pub mod store;

use std::{net::SocketAddr, path::PathBuf, sync::Arc};

use base64::Engine as _;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Request, Response, StatusCode,
    body::{Bytes, Incoming},
    header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE},
    service::service_fn,
};
use hyper_util::rt::{TokioExecutor, TokioIo};
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};
use store::{Encoding, Op, RestconfError, Store};
use tokio::{net::TcpListener, task::JoinHandle};
use tokio_rustls::TlsAcceptor;

/// Largest request body accepted.
pub const MAX_BODY: usize = 32 << 20;

/// Server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Directory holding the YANG modules.
    pub models: PathBuf,
    /// Modules to load (imports are found in the same directory).
    pub modules: Vec<String>,
    /// Basic-auth user.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
}

/// A running server.
pub struct RunningServer {
    /// Where it listens.
    pub addr: SocketAddr,
    /// Its self-signed certificate (PEM), for clients to trust.
    pub cert_pem: String,
    task: JoinHandle<()>,
}

impl Drop for RunningServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Starts a server on `listen` (use port 0 for a free one) with a fresh
/// self-signed certificate for `localhost` and `127.0.0.1`.
///
/// # Errors
/// When the models do not load, the socket cannot be bound or the
/// certificate cannot be made.
pub async fn start(listen: SocketAddr, config: ServerConfig) -> anyhow::Result<RunningServer> {
    let store = Store::start(config.models.clone(), config.modules.clone())?;
    let cert =
        rcgen::generate_simple_self_signed(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?;
    let cert_pem = cert.cert.pem();
    let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(cert.signing_key.serialize_der()));
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let tls = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(vec![CertificateDer::from(cert.cert.der().to_vec())], key)?;
    let acceptor = TlsAcceptor::from(Arc::new(tls));
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    let auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD
            .encode(format!("{}:{}", config.username, config.password))
    );
    let auth = Arc::new(auth);
    let task = tokio::spawn(async move {
        loop {
            let Ok((tcp, peer)) = listener.accept().await else {
                continue;
            };
            let _ = tcp.set_nodelay(true);
            let acceptor = acceptor.clone();
            let store = store.clone();
            let auth = Arc::clone(&auth);
            tokio::spawn(async move {
                let tls = match acceptor.accept(tcp).await {
                    Ok(t) => t,
                    Err(e) => {
                        tracing::debug!(%peer, error = %e, "TLS handshake failed");
                        return;
                    }
                };
                let service = service_fn(move |req| {
                    let store = store.clone();
                    let auth = Arc::clone(&auth);
                    async move { Ok::<_, std::convert::Infallible>(handle(req, &store, &auth).await) }
                });
                if let Err(e) = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(tls), service)
                    .await
                {
                    tracing::debug!(%peer, error = %e, "connection ended");
                }
            });
        }
    });
    Ok(RunningServer {
        addr,
        cert_pem,
        task,
    })
}

fn encoding_of(value: Option<&HeaderValue>) -> Option<Encoding> {
    let v = value?.to_str().ok()?;
    let v = v.split(';').next()?.trim();
    match v {
        "application/yang-data+json" | "application/json" => Some(Encoding::Json),
        "application/yang-data+xml" | "application/xml" => Some(Encoding::Xml),
        _ => None,
    }
}

fn media(e: Encoding) -> &'static str {
    match e {
        Encoding::Json => "application/yang-data+json",
        Encoding::Xml => "application/yang-data+xml",
    }
}

async fn handle(req: Request<Incoming>, store: &Store, auth: &str) -> Response<Full<Bytes>> {
    // Errors are answered in the encoding the client asked for.
    let accept = req
        .headers()
        .get(ACCEPT)
        .and_then(|v| v.to_str().ok())
        .map_or(Encoding::Json, |a| {
            if a.contains("yang-data+xml") || a.contains("application/xml") {
                Encoding::Xml
            } else {
                Encoding::Json
            }
        });
    if req
        .headers()
        .get(AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        != Some(auth)
    {
        let mut r = error_response(
            &RestconfError {
                status: 401,
                error_type: "protocol",
                tag: "access-denied",
                path: None,
                message: "authentication required".to_owned(),
            },
            accept,
        );
        r.headers_mut().insert(
            WWW_AUTHENTICATE,
            HeaderValue::from_static("Basic realm=\"restconf\""),
        );
        return r;
    }
    let path = req.uri().path().to_owned();
    if path == "/.well-known/host-meta" {
        return respond(200, "application/xrd+xml", "<XRD xmlns=\"http://docs.oasis-open.org/ns/xri/xrd-1.0\"><Link rel=\"restconf\" href=\"/restconf\"/></XRD>".to_owned());
    }
    let Some(rest) = path
        .strip_prefix("/restconf/data")
        .map(|r| r.trim_start_matches('/').to_owned())
    else {
        return error_response(
            &RestconfError {
                status: 404,
                error_type: "protocol",
                tag: "invalid-value",
                path: None,
                message: format!("no resource {path}"),
            },
            accept,
        );
    };
    let segments: Vec<String> = if rest.is_empty() {
        Vec::new()
    } else {
        rest.split('/').map(str::to_owned).collect()
    };
    let method = req.method().clone();
    let content_type = encoding_of(req.headers().get(CONTENT_TYPE));
    let body = match Limited::new(req.into_body(), MAX_BODY).collect().await {
        Ok(b) => b.to_bytes(),
        Err(e) => {
            return error_response(
                &RestconfError {
                    status: 413,
                    error_type: "transport",
                    tag: "too-big",
                    path: None,
                    message: e.to_string(),
                },
                accept,
            );
        }
    };
    let body_text = || -> Result<(String, Encoding), RestconfError> {
        let enc = content_type.ok_or(RestconfError {
            status: 415,
            error_type: "protocol",
            tag: "invalid-value",
            path: None,
            message: "Content-Type must be application/yang-data+json or application/yang-data+xml"
                .to_owned(),
        })?;
        let text = String::from_utf8(body.to_vec()).map_err(|_| RestconfError {
            status: 400,
            error_type: "protocol",
            tag: "malformed-message",
            path: None,
            message: "body is not UTF-8".to_owned(),
        })?;
        Ok((text, enc))
    };
    let op = match method.as_str() {
        "GET" | "HEAD" => Ok(Op::Get {
            path: segments,
            encoding: accept,
        }),
        "PUT" => body_text().map(|(body, encoding)| Op::Put {
            path: segments,
            body,
            encoding,
        }),
        "PATCH" => body_text().map(|(body, encoding)| Op::Patch {
            path: segments,
            body,
            encoding,
        }),
        "DELETE" => Ok(Op::Delete { path: segments }),
        other => Err(RestconfError {
            status: 405,
            error_type: "protocol",
            tag: "operation-not-supported",
            path: None,
            message: format!("method {other} is not supported"),
        }),
    };
    let result = match op {
        Ok(op) => store.run(op).await,
        Err(e) => Err(e),
    };
    match result {
        Ok((_, Some(body))) => respond(200, media(accept), body),
        Ok((true, None)) => respond(201, media(accept), String::new()),
        Ok((false, None)) => respond(204, media(accept), String::new()),
        Err(e) => {
            tracing::info!(status = e.status, tag = e.tag, path = ?e.path, message = %e.message, "request rejected");
            error_response(&e, accept)
        }
    }
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = HeaderValue::from_str(content_type) {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn error_response(e: &RestconfError, encoding: Encoding) -> Response<Full<Bytes>> {
    let body = match encoding {
        Encoding::Json => {
            let mut err = serde_json::json!({"error-type": e.error_type, "error-tag": e.tag, "error-message": e.message});
            if let Some(p) = &e.path {
                err["error-path"] = serde_json::Value::from(p.clone());
            }
            serde_json::json!({"ietf-restconf:errors": {"error": [err]}}).to_string()
        }
        Encoding::Xml => {
            let esc = |s: &str| {
                s.replace('&', "&amp;")
                    .replace('<', "&lt;")
                    .replace('>', "&gt;")
            };
            let path = e
                .path
                .as_deref()
                .map(|p| format!("<error-path>{}</error-path>", esc(p)))
                .unwrap_or_default();
            format!(
                "<errors xmlns=\"urn:ietf:params:xml:ns:yang:ietf-restconf\"><error><error-type>{}</error-type><error-tag>{}</error-tag>{path}<error-message>{}</error-message></error></errors>",
                e.error_type,
                e.tag,
                esc(&e.message)
            )
        }
    };
    respond(e.status, media(encoding), body)
}
