//! RESTCONF client (RFC 8040) over HTTPS with rustls.
//!
//! `GET`/`PUT`/`PATCH`/`DELETE` on `/restconf/data/...` in JSON
//! (`application/yang-data+json`) or XML (`application/yang-data+xml`).
//! Error bodies (`ietf-restconf:errors`) are parsed into the same typed
//! [`RpcError`]s the NETCONF client produces, so callers handle both
//! transports alike.

use std::time::Duration;

use reqwest::{Method, StatusCode, header};
use serde_json::Value;

use crate::{
    transport::{
        error::{self as rpc_error, ErrorInfo, ErrorSeverity, ErrorTag, ErrorType, RpcError},
        netconf::reply,
    },
    wire::{Format, Rendering},
};

/// Body encoding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// `application/yang-data+json` (RFC 7951).
    Json,
    /// `application/yang-data+xml`.
    Xml,
}

impl Encoding {
    /// The media type.
    #[must_use]
    pub fn media_type(self) -> &'static str {
        match self {
            Encoding::Json => "application/yang-data+json",
            Encoding::Xml => "application/yang-data+xml",
        }
    }
}

/// How to reach a RESTCONF server.
#[derive(Clone)]
pub struct RestconfConfig {
    /// `https://host:port` (no trailing slash).
    pub base_url: String,
    /// Basic-auth user.
    pub username: String,
    /// Basic-auth password.
    pub password: String,
    /// Extra trusted CA or self-signed certificate (PEM); devices usually
    /// carry self-signed certificates.
    pub ca_pem: Option<String>,
    /// Per-request timeout.
    pub timeout: Duration,
}

impl std::fmt::Debug for RestconfConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RestconfConfig")
            .field("base_url", &self.base_url)
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// Why a RESTCONF request failed.
#[derive(Debug, thiserror::Error)]
pub enum RestconfError {
    /// The client could not be built (bad CA certificate, TLS setup).
    #[error("RESTCONF client setup: {reason}")]
    Setup {
        /// What failed.
        reason: String,
    },
    /// The request did not complete (connect, TLS, timeout).
    #[error("{method} {url}: {source}")]
    Http {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// The server answered with an error status and RESTCONF errors.
    #[error("{method} {url} -> {status}: {}", rpc_error::join(errors))]
    Server {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// HTTP status.
        status: u16,
        /// Parsed `ietf-restconf:errors` (one synthesised from the status
        /// when the body had none).
        errors: Vec<RpcError>,
    },
    /// A rendering that is not RESTCONF JSON was passed to `apply`.
    #[error("rendering for {target} is {format}, RESTCONF needs restconf-json")]
    WrongFormat {
        /// Target.
        target: String,
        /// Format.
        format: String,
    },
    /// A response body could not be read.
    #[error("{method} {url}: unreadable body: {reason}")]
    Body {
        /// Method.
        method: String,
        /// URL.
        url: String,
        /// Why.
        reason: String,
    },
}

impl RestconfError {
    /// HTTP status of a server error.
    #[must_use]
    pub fn status(&self) -> Option<u16> {
        match self {
            RestconfError::Server { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// The server's errors, if any.
    #[must_use]
    pub fn errors(&self) -> &[RpcError] {
        match self {
            RestconfError::Server { errors, .. } => errors,
            _ => &[],
        }
    }
}

/// What a PUT did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PutOutcome {
    /// 201: the resource was created.
    Created,
    /// 204/200: an existing resource was replaced.
    Replaced,
}

/// A RESTCONF client for one server.
#[derive(Debug, Clone)]
pub struct RestconfClient {
    http: reqwest::Client,
    config: RestconfConfig,
}

impl RestconfClient {
    /// Builds a client.
    ///
    /// # Errors
    /// [`RestconfError::Setup`] for a bad CA certificate.
    pub fn new(config: RestconfConfig) -> Result<RestconfClient, RestconfError> {
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .timeout(config.timeout)
            .tcp_nodelay(true)
            .pool_max_idle_per_host(4);
        if let Some(pem) = &config.ca_pem {
            let cert = reqwest::Certificate::from_pem(pem.as_bytes()).map_err(|e| {
                RestconfError::Setup {
                    reason: format!("CA certificate: {e}"),
                }
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder.build().map_err(|e| RestconfError::Setup {
            reason: e.to_string(),
        })?;
        Ok(RestconfClient { http, config })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/restconf/data/{}",
            self.config.base_url,
            path.trim_start_matches('/')
        )
    }

    async fn send(
        &self,
        method: Method,
        path: &str,
        body: Option<(&str, Encoding)>,
        accept: Encoding,
    ) -> Result<(StatusCode, String), RestconfError> {
        let url = self.url(path);
        let mut req = self
            .http
            .request(method.clone(), &url)
            .basic_auth(&self.config.username, Some(&self.config.password))
            .header(header::ACCEPT, accept.media_type());
        if let Some((b, enc)) = body {
            req = req
                .header(header::CONTENT_TYPE, enc.media_type())
                .body(b.to_owned());
        }
        let started = std::time::Instant::now();
        let resp = req.send().await.map_err(|source| RestconfError::Http {
            method: method.to_string(),
            url: url.clone(),
            source,
        })?;
        let status = resp.status();
        let is_xml = resp
            .headers()
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.contains("xml"));
        let text = resp.text().await.map_err(|e| RestconfError::Body {
            method: method.to_string(),
            url: url.clone(),
            reason: e.to_string(),
        })?;
        tracing::debug!(%method, %url, status = status.as_u16(), elapsed_us = started.elapsed().as_micros(), "restconf");
        if status.is_success() {
            return Ok((status, text));
        }
        Err(RestconfError::Server {
            method: method.to_string(),
            url,
            status: status.as_u16(),
            errors: parse_errors(status, &text, is_xml),
        })
    }

    /// Reads a resource.
    ///
    /// # Errors
    /// [`RestconfError`]; a missing resource is a 404 server error.
    pub async fn get(&self, path: &str, encoding: Encoding) -> Result<String, RestconfError> {
        self.send(Method::GET, path, None, encoding)
            .await
            .map(|(_, b)| b)
    }

    /// Creates or replaces a resource.
    ///
    /// # Errors
    /// [`RestconfError`].
    pub async fn put(
        &self,
        path: &str,
        body: &str,
        encoding: Encoding,
    ) -> Result<PutOutcome, RestconfError> {
        let (status, _) = self
            .send(Method::PUT, path, Some((body, encoding)), encoding)
            .await?;
        Ok(if status == StatusCode::CREATED {
            PutOutcome::Created
        } else {
            PutOutcome::Replaced
        })
    }

    /// Merges into an existing resource (plain patch).
    ///
    /// # Errors
    /// [`RestconfError`].
    pub async fn patch(
        &self,
        path: &str,
        body: &str,
        encoding: Encoding,
    ) -> Result<(), RestconfError> {
        self.send(Method::PATCH, path, Some((body, encoding)), encoding)
            .await
            .map(drop)
    }

    /// Deletes a resource.
    ///
    /// # Errors
    /// [`RestconfError`]; a missing resource is a 404 `data-missing`.
    pub async fn delete(&self, path: &str) -> Result<(), RestconfError> {
        self.send(Method::DELETE, path, None, Encoding::Json)
            .await
            .map(drop)
    }

    /// Applies an IOS-XE RESTCONF rendering: every service-owned ACL is
    /// replaced with a PUT of its own resource (so removed entries vanish),
    /// then the rest is merged into `/native` with a PATCH (a PUT when the
    /// device has no `/native` yet).
    ///
    /// # Errors
    /// [`RestconfError`].
    pub async fn apply(&self, rendering: &Rendering) -> Result<(), RestconfError> {
        if rendering.format != Format::RestconfJson {
            return Err(RestconfError::WrongFormat {
                target: rendering.target.clone(),
                format: rendering.format.as_str().to_owned(),
            });
        }
        let doc: Value =
            serde_json::from_str(&rendering.content).map_err(|e| RestconfError::Body {
                method: "APPLY".to_owned(),
                url: rendering.target.clone(),
                reason: e.to_string(),
            })?;
        let native = &doc["Cisco-IOS-XE-native:native"];
        for (family, list) in [
            ("ip", "Cisco-IOS-XE-acl:extended"),
            ("ipv6", "Cisco-IOS-XE-acl:named-acl"),
        ] {
            for acl in native[family]["access-list"][list]
                .as_array()
                .into_iter()
                .flatten()
            {
                let Some(name) = acl["name"].as_str() else {
                    continue;
                };
                let path = format!(
                    "Cisco-IOS-XE-native:native/{family}/access-list/{list}={}",
                    encode_key(name)
                );
                let body = serde_json::json!({ list: [acl] }).to_string();
                match self.put(&path, &body, Encoding::Json).await {
                    Err(e)
                        if e.status() == Some(404)
                            || e.errors().iter().any(|r| r.tag == ErrorTag::DataMissing) =>
                    {
                        // Parent containers missing: the native merge below creates it.
                    }
                    other => {
                        other?;
                    }
                }
            }
        }
        let native_path = "Cisco-IOS-XE-native:native";
        match self
            .patch(native_path, &rendering.content, Encoding::Json)
            .await
        {
            Err(e) if e.status() == Some(404) => self
                .put(native_path, &rendering.content, Encoding::Json)
                .await
                .map(drop),
            other => other,
        }
    }
}

/// Percent-encodes a list key value for a URL segment (RFC 8040 3.5.3).
#[must_use]
pub fn encode_key(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Parses an error body; falls back to one error describing the status.
#[must_use]
pub fn parse_errors(status: StatusCode, body: &str, xml: bool) -> Vec<RpcError> {
    let parsed = if xml || body.trim_start().starts_with('<') {
        reply::parse_restconf_errors(body.as_bytes()).ok()
    } else {
        serde_json::from_str::<Value>(body)
            .ok()
            .and_then(|v| parse_json_errors(&v))
    };
    match parsed {
        Some(errors) if !errors.is_empty() => errors,
        _ => vec![RpcError {
            error_type: ErrorType::Transport,
            tag: match status.as_u16() {
                401 | 403 => ErrorTag::AccessDenied,
                404 => ErrorTag::InvalidValue,
                409 => ErrorTag::DataExists,
                413 => ErrorTag::TooBig,
                405 | 501 => ErrorTag::OperationNotSupported,
                _ => ErrorTag::OperationFailed,
            },
            severity: ErrorSeverity::Error,
            app_tag: None,
            path: None,
            message: Some(format!(
                "HTTP {status}: {}",
                body.chars().take(200).collect::<String>()
            )),
            info: Vec::new(),
        }],
    }
}

fn parse_json_errors(v: &Value) -> Option<Vec<RpcError>> {
    let list = v.get("ietf-restconf:errors")?.get("error")?.as_array()?;
    Some(
        list.iter()
            .map(|e| {
                let s = |k: &str| e.get(k).and_then(Value::as_str).map(str::to_owned);
                let info = match e.get("error-info") {
                    Some(Value::Object(m)) => m
                        .iter()
                        .map(|(k, v)| ErrorInfo {
                            name: k.rsplit(':').next().unwrap_or(k).to_owned(),
                            value: v.as_str().map_or_else(|| v.to_string(), str::to_owned),
                        })
                        .collect(),
                    _ => Vec::new(),
                };
                RpcError {
                    error_type: ErrorType::parse(&s("error-type").unwrap_or_default()),
                    tag: ErrorTag::parse(&s("error-tag").unwrap_or_default()),
                    severity: match s("error-severity").as_deref() {
                        Some("warning") => ErrorSeverity::Warning,
                        _ => ErrorSeverity::Error,
                    },
                    app_tag: s("error-app-tag"),
                    path: s("error-path"),
                    message: s("error-message"),
                    info,
                }
            })
            .collect(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_bodies_parse_in_both_encodings() {
        let json = r#"{"ietf-restconf:errors":{"error":[{"error-type":"application","error-tag":"invalid-value","error-path":"/a:b","error-message":"bad","error-info":{"x:bad-element":"c"}}]}}"#;
        let e = &parse_errors(StatusCode::BAD_REQUEST, json, false)[0];
        assert_eq!(
            (e.tag.clone(), e.path.as_deref(), e.info("bad-element")),
            (ErrorTag::InvalidValue, Some("/a:b"), Some("c"))
        );
        let xml = "<errors xmlns=\"urn:ietf:params:xml:ns:yang:ietf-restconf\"><error><error-type>protocol</error-type><error-tag>data-missing</error-tag><error-message>gone</error-message></error></errors>";
        let e = &parse_errors(StatusCode::NOT_FOUND, xml, true)[0];
        assert_eq!(
            (e.tag.clone(), e.error_type.clone()),
            (ErrorTag::DataMissing, ErrorType::Protocol)
        );
        let e = &parse_errors(StatusCode::UNAUTHORIZED, "nope", false)[0];
        assert_eq!(e.tag, ErrorTag::AccessDenied);
        assert_eq!(encode_key("a b/c,d"), "a%20b%2Fc%2Cd");
    }
}
