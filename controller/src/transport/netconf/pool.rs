//! Async access to a device: a bounded pool of blocking sessions.
//!
//! libssh2 is blocking, so every session call runs on tokio's blocking pool
//! (`spawn_blocking`) and never stalls the async runtime. A per-device
//! semaphore bounds how many sessions may exist at once (devices limit
//! NETCONF sessions, IOS-XE to a handful); idle sessions are reused, and a
//! session that hit a transport error is dropped so the next call
//! reconnects, with exponential backoff between connection attempts.

use std::{
    sync::{Arc, Mutex},
    time::Duration,
};

use tokio::sync::Semaphore;

use super::session::{Capabilities, NetconfError, Session, SessionConfig};

/// Reconnection policy.
#[derive(Debug, Clone, Copy)]
pub struct Backoff {
    /// Connection attempts before giving up.
    pub attempts: u32,
    /// Delay after the first failure; doubled after each further one
    /// (jittered, see [`crate::transport::backoff`]).
    pub initial: Duration,
    /// Ceiling of the delay.
    pub max: Duration,
}

impl Default for Backoff {
    fn default() -> Self {
        Backoff {
            attempts: 4,
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

/// Why the pool could not run a call.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// The session call failed.
    #[error(transparent)]
    Netconf(#[from] NetconfError),
    /// The blocking task panicked or was cancelled.
    #[error("netconf worker for {device} failed: {reason}")]
    Worker {
        /// Device.
        device: String,
        /// Join error.
        reason: String,
    },
    /// The pool was closed.
    #[error("session pool for {device} is closed")]
    Closed {
        /// Device.
        device: String,
    },
}

impl PoolError {
    /// The NETCONF error, if that is what failed.
    #[must_use]
    pub fn netconf(&self) -> Option<&NetconfError> {
        match self {
            PoolError::Netconf(e) => Some(e),
            _ => None,
        }
    }
}

/// Sessions to one device.
#[derive(Debug, Clone)]
pub struct NetconfPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    device: String,
    config: SessionConfig,
    backoff: Backoff,
    permits: Semaphore,
    idle: Mutex<Vec<Session>>,
    capabilities: Mutex<Option<Capabilities>>,
}

impl NetconfPool {
    /// A pool of at most `max_sessions` sessions to `device`.
    #[must_use]
    pub fn new(
        device: impl Into<String>,
        config: SessionConfig,
        max_sessions: usize,
        backoff: Backoff,
    ) -> NetconfPool {
        NetconfPool {
            inner: Arc::new(Inner {
                device: device.into(),
                config,
                backoff,
                permits: Semaphore::new(max_sessions.max(1)),
                idle: Mutex::new(Vec::new()),
                capabilities: Mutex::new(None),
            }),
        }
    }

    /// The device name.
    #[must_use]
    pub fn device(&self) -> &str {
        &self.inner.device
    }

    /// Capabilities from the latest hello, once a session was opened.
    #[must_use]
    pub fn capabilities(&self) -> Option<Capabilities> {
        self.inner.capabilities.lock().ok().and_then(|c| c.clone())
    }

    /// Runs `f` with a session on the blocking pool. The session returns to
    /// the pool unless `f` failed with a transport-level error.
    ///
    /// # Errors
    /// [`PoolError`].
    pub async fn run<T, F>(&self, f: F) -> Result<T, PoolError>
    where
        T: Send + 'static,
        F: FnOnce(&mut Session) -> Result<T, NetconfError> + Send + 'static,
    {
        let _permit = self
            .inner
            .permits
            .acquire()
            .await
            .map_err(|_| PoolError::Closed {
                device: self.inner.device.clone(),
            })?;
        let idle = self.inner.idle.lock().ok().and_then(|mut v| v.pop());
        let session = match idle {
            Some(s) => s,
            None => self.connect().await?,
        };
        let inner = Arc::clone(&self.inner);
        let joined = tokio::task::spawn_blocking(move || {
            let mut session = session;
            let result = f(&mut session);
            let keep = match &result {
                Ok(_) => true,
                Err(e) => !e.is_fatal(),
            };
            if keep && let Ok(mut idle) = inner.idle.lock() {
                idle.push(session);
            }
            result
        })
        .await
        .map_err(|e| PoolError::Worker {
            device: self.inner.device.clone(),
            reason: e.to_string(),
        })?;
        Ok(joined?)
    }

    /// Opens a new session outside the pool (e.g. a second client for lock
    /// tests, or a session the caller closes itself).
    ///
    /// # Errors
    /// [`PoolError`] after the backoff policy is exhausted.
    pub async fn connect(&self) -> Result<Session, PoolError> {
        let mut attempt = 1;
        loop {
            let config = self.inner.config.clone();
            let result = tokio::task::spawn_blocking(move || Session::connect(&config))
                .await
                .map_err(|e| PoolError::Worker {
                    device: self.inner.device.clone(),
                    reason: e.to_string(),
                })?;
            match result {
                Ok(s) => {
                    if let Ok(mut caps) = self.inner.capabilities.lock() {
                        *caps = Some(s.capabilities().clone());
                    }
                    return Ok(s);
                }
                Err(e) if e.is_retryable() && attempt < self.inner.backoff.attempts => {
                    let b = &self.inner.backoff;
                    let delay = crate::transport::backoff::delay(b.initial, b.max, attempt - 1);
                    tracing::warn!(device = %self.inner.device, attempt, error = %e, delay_ms = delay.as_millis(), "netconf connect failed; retrying");
                    tokio::time::sleep(delay).await;
                    attempt += 1;
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Drops idle sessions (closing them politely on the blocking pool).
    pub async fn clear(&self) {
        let sessions: Vec<Session> = self
            .inner
            .idle
            .lock()
            .map(|mut v| std::mem::take(&mut *v))
            .unwrap_or_default();
        if sessions.is_empty() {
            return;
        }
        let _ = tokio::task::spawn_blocking(move || {
            for s in sessions {
                let _ = s.close();
            }
        })
        .await;
    }
}
