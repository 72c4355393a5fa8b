//! Shared HTTPS pieces for the REST-driven platforms (Meraki Dashboard, FDM,
//! SD-WAN Manager): one rustls client per device with an explicit trust
//! anchor, a rate limiter (governor) shared by everything that talks to
//! the same rate-limit domain (a Meraki organization, an SD-WAN Manager),
//! `Retry-After` and jittered exponential backoff with a retry bound,
//! and `Link`-header pagination. The calls themselves are
//! [`crate::wire::http::Call`]s.
//!
//! Why reqwest with `rustls-tls` and no default features: it is already the
//! RESTCONF and JWKS client of the controller (one TLS stack, ring as the
//! provider, no OpenSSL), and its connection pool keeps one TLS session per
//! device alive across the calls of a transaction.

use std::{
    collections::HashMap,
    path::Path,
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use reqwest::{Method, header::HeaderMap};
use serde_json::Value;

/// Why an HTTP exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    /// The client could not be built (bad CA file).
    #[error("HTTP client setup: {reason}")]
    Setup {
        /// What is wrong.
        reason: String,
    },
    /// The request never got an answer (connect, TLS, timeout, reset).
    #[error("{method} {url}: {source}")]
    Transport {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// reqwest's error.
        #[source]
        source: reqwest::Error,
    },
    /// Retries were exhausted on retryable answers.
    #[error("{method} {url}: gave up after {attempts} attempts: {last}")]
    Exhausted {
        /// HTTP method.
        method: String,
        /// Full URL.
        url: String,
        /// Attempts made.
        attempts: u32,
        /// The last answer or error.
        last: String,
    },
}

/// Builds a rustls HTTP client. With `ca_file`, that PEM bundle is the only
/// trust anchor (built-in roots are off); without it the webpki roots apply.
/// Verification is never disabled.
///
/// # Errors
/// [`HttpError::Setup`] for an unreadable or malformed bundle.
pub fn client(ca_file: Option<&Path>, timeout: Duration) -> Result<reqwest::Client, HttpError> {
    let mut builder = reqwest::Client::builder()
        .use_rustls_tls()
        .timeout(timeout)
        .connect_timeout(timeout.min(Duration::from_secs(10)))
        .tcp_nodelay(true)
        .pool_max_idle_per_host(4);
    if let Some(path) = ca_file {
        let pem = std::fs::read(path).map_err(|e| HttpError::Setup {
            reason: format!("CA bundle {}: {e}", path.display()),
        })?;
        let certs = reqwest::Certificate::from_pem_bundle(&pem).map_err(|e| HttpError::Setup {
            reason: format!("CA bundle {}: {e}", path.display()),
        })?;
        if certs.is_empty() {
            return Err(HttpError::Setup {
                reason: format!("CA bundle {} holds no certificate", path.display()),
            });
        }
        builder = builder.tls_built_in_root_certs(false);
        for c in certs {
            builder = builder.add_root_certificate(c);
        }
    }
    builder.build().map_err(|e| HttpError::Setup {
        reason: e.to_string(),
    })
}

// ===== rate limiting =====

/// A rate limiter (governor's GCRA): at most `burst` requests at once,
/// refilled at `rps` per second, plus the pause a server's `Retry-After`
/// asks for.
#[derive(Debug)]
pub struct RateLimiter {
    rps: f64,
    limiter: governor::DefaultDirectRateLimiter,
    paused_until: Mutex<Option<Instant>>,
}

impl RateLimiter {
    /// A full bucket.
    #[must_use]
    pub fn new(rps: f64, burst: f64) -> RateLimiter {
        let rps = rps.max(0.001);
        let period = Duration::from_secs_f64(1.0 / rps).max(Duration::from_nanos(1));
        #[allow(
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss,
            reason = "a burst is a small positive count"
        )]
        let burst = std::num::NonZeroU32::new(burst.max(1.0).round() as u32)
            .unwrap_or(std::num::NonZeroU32::MIN);
        let quota = governor::Quota::with_period(period)
            .unwrap_or_else(|| governor::Quota::per_second(std::num::NonZeroU32::MIN))
            .allow_burst(burst);
        RateLimiter {
            rps,
            limiter: governor::RateLimiter::direct(quota),
            paused_until: Mutex::new(None),
        }
    }

    /// Requests per second.
    #[must_use]
    pub fn rps(&self) -> f64 {
        self.rps
    }

    /// What is left of a pause.
    fn pause_left(&self) -> Duration {
        let mut p = self
            .paused_until
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let left = p.map_or(Duration::ZERO, |u| {
            u.saturating_duration_since(Instant::now())
        });
        if left.is_zero() {
            *p = None;
        }
        left
    }

    /// Waits for a token (after any pause).
    pub async fn acquire(&self) {
        loop {
            let pause = self.pause_left();
            if pause.is_zero() {
                break;
            }
            tracing::debug!(wait_ms = pause.as_millis(), "rate limiter: paused");
            tokio::time::sleep(pause).await;
        }
        self.limiter.until_ready().await;
    }

    /// Holds every caller back for `d` (a server said `Retry-After`), and
    /// empties the bucket so the resumed traffic does not burst.
    pub fn pause(&self, d: Duration) {
        let until = Instant::now() + d;
        {
            let mut p = self
                .paused_until
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            *p = Some(p.map_or(until, |x| x.max(until)));
        }
        while self.limiter.check().is_ok() {}
    }
}

/// The process-wide limiter of a rate-limit domain (`meraki|<base>|<org>`,
/// `sdwan|<base>`): every participant, transaction and drift check talking
/// to the same domain shares it. The first caller's settings win.
#[must_use]
pub fn shared_limiter(key: &str, rps: f64, burst: f64) -> Arc<RateLimiter> {
    static LIMITERS: OnceLock<Mutex<HashMap<String, Arc<RateLimiter>>>> = OnceLock::new();
    let mut map = LIMITERS
        .get_or_init(Mutex::default)
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    map.entry(key.to_owned())
        .or_insert_with(|| Arc::new(RateLimiter::new(rps, burst)))
        .clone()
}

// ===== retries =====

/// How often and how long to retry retryable answers (429, 502-504,
/// transport errors on idempotent requests).
#[derive(Debug, Clone, Copy)]
pub struct RetryPolicy {
    /// Attempts in total (first try included).
    pub max_attempts: u32,
    /// First backoff.
    pub base_delay: Duration,
    /// Backoff ceiling (and ceiling of an honoured `Retry-After`).
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// Exponential backoff for retry `n` (0-based), with "equal jitter":
    /// between half and all of `base * 2^n`, capped.
    #[must_use]
    pub fn backoff(&self, n: u32) -> Duration {
        super::backoff::delay(self.base_delay, self.max_delay, n)
    }
}

/// `Retry-After` in seconds (the HTTP-date form is treated as absent).
#[must_use]
pub fn retry_after(headers: &HeaderMap) -> Option<Duration> {
    headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse::<u64>()
        .ok()
        .map(Duration::from_secs)
}

/// The `rel="next"` target of an RFC 8288 `Link` header.
#[must_use]
pub fn next_link(headers: &HeaderMap) -> Option<String> {
    for value in headers.get_all(reqwest::header::LINK) {
        let Ok(s) = value.to_str() else { continue };
        for part in s.split(',') {
            let mut pieces = part.split(';');
            let target = pieces.next()?.trim();
            let is_next = pieces.any(|p| {
                let p = p.trim().replace(' ', "");
                p == "rel=next" || p == "rel=\"next\""
            });
            if is_next && target.starts_with('<') && target.ends_with('>') {
                return Some(target[1..target.len() - 1].to_owned());
            }
        }
    }
    None
}

/// An answer, read in full.
#[derive(Debug, Clone)]
pub struct Reply {
    /// HTTP status.
    pub status: u16,
    /// Response headers.
    pub headers: HeaderMap,
    /// Body text.
    pub body: String,
}

impl Reply {
    /// 2xx.
    #[must_use]
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// The body as JSON (`null` when empty or not JSON).
    #[must_use]
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or(Value::Null)
    }
}

/// What to send.
#[derive(Debug, Clone, Default)]
pub enum Body {
    /// No body.
    #[default]
    None,
    /// JSON.
    Json(Value),
    /// `application/x-www-form-urlencoded`.
    Form(Vec<(String, String)>),
}

/// A REST client for one device: base URL, optional shared limiter, retries.
#[derive(Debug, Clone)]
pub struct RestClient {
    http: reqwest::Client,
    base: String,
    limiter: Option<Arc<RateLimiter>>,
    retry: RetryPolicy,
}

fn idempotent(m: &Method) -> bool {
    matches!(
        *m,
        Method::GET | Method::HEAD | Method::PUT | Method::DELETE
    )
}

impl RestClient {
    /// A client for `base` (scheme, host, port and API prefix).
    #[must_use]
    pub fn new(http: reqwest::Client, base: &str, retry: RetryPolicy) -> RestClient {
        RestClient {
            http,
            base: base.trim_end_matches('/').to_owned(),
            limiter: None,
            retry,
        }
    }

    /// Sends every request through `limiter`.
    pub fn set_limiter(&mut self, limiter: Arc<RateLimiter>) {
        self.limiter = Some(limiter);
    }

    /// The base URL.
    #[must_use]
    pub fn base(&self) -> &str {
        &self.base
    }

    /// `path` relative to the base, or an absolute URL as given (pagination).
    #[must_use]
    pub fn url(&self, path: &str) -> String {
        if path.starts_with("https://") || path.starts_with("http://") {
            path.to_owned()
        } else {
            format!("{}{path}", self.base)
        }
    }

    /// Sends one request, waiting for the limiter, retrying 429 (after
    /// `Retry-After`, which also pauses the shared limiter) and, for
    /// idempotent methods, 502/503/504 and transport errors with jittered
    /// backoff. Any other status is returned as is.
    ///
    /// # Errors
    /// [`HttpError::Transport`] for a non-retryable transport failure,
    /// [`HttpError::Exhausted`] when retries ran out.
    pub async fn send(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, String)],
        body: &Body,
    ) -> Result<Reply, HttpError> {
        let url = self.url(path);
        let mut attempt = 0u32;
        loop {
            attempt += 1;
            if let Some(l) = &self.limiter {
                l.acquire().await;
            }
            let mut req = self.http.request(method.clone(), &url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            req = match body {
                Body::None => req,
                Body::Json(v) => req.json(v),
                Body::Form(f) => req.form(f),
            };
            let outcome = match req.send().await {
                Ok(resp) => {
                    let status = resp.status().as_u16();
                    let headers = resp.headers().clone();
                    match resp.text().await {
                        Ok(body) => Ok(Reply {
                            status,
                            headers,
                            body,
                        }),
                        Err(source) => Err(source),
                    }
                }
                Err(source) => Err(source),
            };
            let (wait, last) = match outcome {
                Ok(reply) if reply.status == 429 => {
                    let ra = retry_after(&reply.headers);
                    let wait = ra.map_or_else(
                        || self.retry.backoff(attempt - 1),
                        |d| d.min(self.retry.max_delay),
                    );
                    if let (Some(l), Some(d)) = (&self.limiter, ra) {
                        l.pause(d.min(self.retry.max_delay));
                    }
                    tracing::warn!(%url, attempt, retry_after_ms = wait.as_millis(), "rate limited (429)");
                    (wait, format!("429 {}", reply.body.trim()))
                }
                Ok(reply) if matches!(reply.status, 502..=504) && idempotent(&method) => {
                    let wait = retry_after(&reply.headers).map_or_else(
                        || self.retry.backoff(attempt - 1),
                        |d| d.min(self.retry.max_delay),
                    );
                    tracing::warn!(%url, attempt, status = reply.status, "server unavailable, retrying");
                    (wait, format!("{} {}", reply.status, reply.body.trim()))
                }
                Ok(reply) => return Ok(reply),
                Err(source)
                    if idempotent(&method)
                        && (source.is_timeout() || source.is_connect() || source.is_request()) =>
                {
                    tracing::warn!(%url, attempt, error = %source, "transport error, retrying");
                    (self.retry.backoff(attempt - 1), source.to_string())
                }
                Err(source) => {
                    return Err(HttpError::Transport {
                        method: method.to_string(),
                        url,
                        source,
                    });
                }
            };
            if attempt >= self.retry.max_attempts.max(1) {
                return Err(HttpError::Exhausted {
                    method: method.to_string(),
                    url,
                    attempts: attempt,
                    last,
                });
            }
            tokio::time::sleep(wait).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn link_header_next_is_found() {
        let mut h = HeaderMap::new();
        h.insert(
            reqwest::header::LINK,
            "<https://a/x?startingAfter=0>; rel=first, <https://a/x?startingAfter=L_2>; rel=next, <https://a/x?endingBefore=z>; rel=last"
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_link(&h).as_deref(),
            Some("https://a/x?startingAfter=L_2")
        );
        h.insert(
            reqwest::header::LINK,
            "<https://a/x>; rel=\"first\"".parse().unwrap(),
        );
        assert_eq!(next_link(&h), None);
    }

    #[test]
    fn backoff_grows_with_jitter_and_is_capped() {
        let p = RetryPolicy {
            max_attempts: 5,
            base_delay: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        for n in 0..8 {
            let d = p.backoff(n);
            let full = Duration::from_millis(100 * (1 << n)).min(Duration::from_secs(1));
            assert!(d >= full / 2 && d <= full, "{n}: {d:?}");
        }
    }

    #[tokio::test]
    async fn limiter_never_exceeds_its_rate() {
        let l = Arc::new(RateLimiter::new(20.0, 5.0));
        let start = Instant::now();
        let mut tasks = Vec::new();
        for _ in 0..15 {
            let l = l.clone();
            tasks.push(tokio::spawn(async move {
                l.acquire().await;
                Instant::now()
            }));
        }
        let mut times = Vec::new();
        for t in tasks {
            times.push(t.await.unwrap().duration_since(start));
        }
        times.sort();
        // 5 at once, then 10 more at 20/s: the last one no sooner than 0.5 s.
        assert!(times[14] >= Duration::from_millis(480), "{times:?}");
        assert!(times[4] < Duration::from_millis(100), "{times:?}");
    }
}
