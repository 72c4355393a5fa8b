//! Backend health checks: TCP connect, or HTTP GET with an expected
//! status, every `interval`, each bounded by `timeout`. A backend goes down
//! after `fall` consecutive failures and comes back after `rise`
//! consecutive successes; only those transitions are reported (logged,
//! counted, and returned so the caller rewrites the Maglev tables and tells
//! the controller).

use std::{
    io::{Read, Write},
    net::{SocketAddr, TcpStream},
    time::Duration,
};

use thiserror::Error;
use tracing::{info, warn};

/// A failed probe, with what was expected.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum ProbeError {
    /// Connect refused or timed out.
    #[error("connect to {target}: {reason}")]
    Connect {
        /// Backend.
        target: SocketAddr,
        /// OS error text.
        reason: String,
    },
    /// HTTP exchange failed or the status differs.
    #[error("http GET {path} on {target}: {reason}")]
    Http {
        /// Backend.
        target: SocketAddr,
        /// Path requested.
        path: String,
        /// What went wrong (status seen, or I/O error).
        reason: String,
    },
}

/// What to check.
#[derive(Clone, Debug, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Check {
    /// TCP connect succeeds.
    Tcp,
    /// HTTP/1.1 GET `path` answers `expect_status`.
    Http {
        /// Request path.
        path: String,
        /// Expected status code.
        expect_status: u16,
    },
}

/// Thresholds and timing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HealthSpec {
    /// Probe kind.
    pub check: Check,
    /// Time between probes.
    pub interval: Duration,
    /// Per-probe timeout.
    pub timeout: Duration,
    /// Consecutive successes to come back up.
    pub rise: u32,
    /// Consecutive failures to go down.
    pub fall: u32,
}

impl Default for HealthSpec {
    fn default() -> Self {
        Self {
            check: Check::Tcp,
            interval: Duration::from_millis(1000),
            timeout: Duration::from_millis(500),
            rise: 2,
            fall: 3,
        }
    }
}

/// Runs one probe (blocking, at most about `timeout` per step).
pub fn probe(target: SocketAddr, check: &Check, timeout: Duration) -> Result<(), ProbeError> {
    let mut s = TcpStream::connect_timeout(&target, timeout).map_err(|e| ProbeError::Connect {
        target,
        reason: e.to_string(),
    })?;
    let Check::Http {
        path,
        expect_status,
    } = check
    else {
        return Ok(());
    };
    let http = |reason: String| ProbeError::Http {
        target,
        path: path.clone(),
        reason,
    };
    s.set_read_timeout(Some(timeout))
        .map_err(|e| http(e.to_string()))?;
    s.set_write_timeout(Some(timeout))
        .map_err(|e| http(e.to_string()))?;
    let host = match target {
        SocketAddr::V4(a) => a.ip().to_string(),
        SocketAddr::V6(a) => format!("[{}]", a.ip()),
    };
    // One write: a request split over segments confuses naive servers.
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: rampart-agent-health\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .map_err(|e| http(e.to_string()))?;
    let mut buf = [0u8; 64];
    let mut got = 0;
    while got < 12 {
        match s.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => return Err(http(e.to_string())),
        }
    }
    let line = String::from_utf8_lossy(&buf[..got]);
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|c| c.parse::<u16>().ok())
        .ok_or_else(|| http(format!("no HTTP status line in {line:?}")))?;
    if status != *expect_status {
        return Err(http(format!("status {status}, expected {expect_status}")));
    }
    Ok(())
}

/// Up/down state of one backend with its streak counters.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackendHealth {
    /// Currently considered healthy (backends start up).
    pub up: bool,
    successes: u32,
    failures: u32,
    /// Transitions so far (for metrics).
    pub transitions: u64,
}

impl Default for BackendHealth {
    fn default() -> Self {
        Self {
            up: true,
            successes: 0,
            failures: 0,
            transitions: 0,
        }
    }
}

impl BackendHealth {
    /// Records a probe result; returns `Some(new_state)` on a transition.
    pub fn record(
        &mut self,
        target: SocketAddr,
        result: &Result<(), ProbeError>,
        spec: &HealthSpec,
    ) -> Option<bool> {
        match result {
            Ok(()) => {
                self.failures = 0;
                self.successes = self.successes.saturating_add(1);
                if !self.up && self.successes >= spec.rise.max(1) {
                    self.up = true;
                    self.transitions += 1;
                    info!(backend = %target, "backend healthy again, restored to the table");
                    return Some(true);
                }
            }
            Err(e) => {
                self.successes = 0;
                self.failures = self.failures.saturating_add(1);
                if self.up && self.failures >= spec.fall.max(1) {
                    self.up = false;
                    self.transitions += 1;
                    warn!(backend = %target, error = %e, "backend failed health checks, removed from the table");
                    return Some(false);
                }
            }
        }
        None
    }
}

/// Probes a set of backends and keeps their up/down state.
#[derive(Debug)]
pub struct HealthMonitor {
    spec: HealthSpec,
    states: Vec<(SocketAddr, BackendHealth)>,
    /// Probes that failed so far (for metrics).
    pub failed_probes: u64,
}

impl HealthMonitor {
    /// Monitors `targets` (all start up).
    pub fn new(spec: HealthSpec, targets: impl IntoIterator<Item = SocketAddr>) -> Self {
        Self {
            spec,
            states: targets
                .into_iter()
                .map(|t| (t, BackendHealth::default()))
                .collect(),
            failed_probes: 0,
        }
    }

    /// The thresholds and timing in use.
    pub fn spec(&self) -> &HealthSpec {
        &self.spec
    }

    /// Probes every target once; returns the transitions `(target, up)`.
    /// Call every `spec().interval`.
    pub fn tick(&mut self) -> Vec<(SocketAddr, bool)> {
        let mut out = Vec::new();
        for (t, h) in &mut self.states {
            let r = probe(*t, &self.spec.check, self.spec.timeout);
            if r.is_err() {
                self.failed_probes += 1;
            }
            if let Some(up) = h.record(*t, &r, &self.spec) {
                out.push((*t, up));
            }
        }
        out
    }

    /// Current state of each target.
    pub fn states(&self) -> impl Iterator<Item = (SocketAddr, bool)> + '_ {
        self.states.iter().map(|(t, h)| (*t, h.up))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    fn spec() -> HealthSpec {
        HealthSpec {
            rise: 2,
            fall: 3,
            timeout: Duration::from_millis(300),
            ..HealthSpec::default()
        }
    }

    #[test]
    fn rise_and_fall_thresholds() {
        let t: SocketAddr = "127.0.0.1:1".parse().unwrap();
        let mut h = BackendHealth::default();
        let bad = Err(ProbeError::Connect {
            target: t,
            reason: "refused".into(),
        });
        assert_eq!(h.record(t, &bad, &spec()), None);
        assert_eq!(h.record(t, &bad, &spec()), None);
        assert_eq!(
            h.record(t, &Ok(()), &spec()),
            None,
            "a success resets the failure streak"
        );
        assert_eq!(h.record(t, &bad, &spec()), None);
        assert_eq!(h.record(t, &bad, &spec()), None);
        assert_eq!(h.record(t, &bad, &spec()), Some(false));
        assert_eq!(h.record(t, &bad, &spec()), None);
        assert_eq!(h.record(t, &Ok(()), &spec()), None);
        assert_eq!(h.record(t, &Ok(()), &spec()), Some(true));
        assert_eq!(h.transitions, 2);
    }

    #[test]
    fn tcp_probe_against_a_real_listener() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        assert_eq!(probe(a, &Check::Tcp, Duration::from_millis(300)), Ok(()));
        drop(l);
        assert!(matches!(
            probe(a, &Check::Tcp, Duration::from_millis(300)),
            Err(ProbeError::Connect { .. })
        ));
    }

    #[test]
    fn http_probe_checks_status() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = l.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            for status in ["200 OK", "503 Service Unavailable"] {
                let (mut c, _) = l.accept().unwrap();
                let mut req = [0u8; 512];
                let n = c.read(&mut req).unwrap();
                assert!(
                    String::from_utf8_lossy(&req[..n]).starts_with("GET /healthz HTTP/1.1\r\n")
                );
                write!(c, "HTTP/1.1 {status}\r\nContent-Length: 0\r\n\r\n").unwrap();
            }
        });
        let check = Check::Http {
            path: "/healthz".into(),
            expect_status: 200,
        };
        assert_eq!(probe(a, &check, Duration::from_millis(500)), Ok(()));
        let err = probe(a, &check, Duration::from_millis(500)).unwrap_err();
        assert!(
            err.to_string().contains("status 503, expected 200"),
            "{err}"
        );
        server.join().unwrap();
    }
}
