//! The vendor API simulators of `testbed/sims` as test peers.
//!
//! [`Sim::start`] spawns `python3 testbed/sims/<kind>_sim.py --port 0` in
//! its own process group, reads the startup lines (`LISTENING`, `CERT`,
//! `ADMIN`, `CREDENTIALS`), and kills the whole group on drop. Admin calls
//! (`/_sim/state`, `/_sim/faults`, `/_sim/requests`) go through a small
//! blocking HTTP/1.1 client so tests need no extra crates.

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::TcpStream,
    os::unix::process::CommandExt,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// Which simulator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SimKind {
    /// Meraki Dashboard API v1.
    Meraki,
    /// FDM REST API.
    Fdm,
    /// ASA CLI over OpenSSH (root only).
    Asa,
    /// SD-WAN Manager.
    Vmanage,
}

impl SimKind {
    fn script(self) -> &'static str {
        match self {
            SimKind::Meraki => "meraki_sim.py",
            SimKind::Fdm => "fdm_sim.py",
            SimKind::Asa => "asa_sim.py",
            SimKind::Vmanage => "vmanage_sim.py",
        }
    }
}

/// A running simulator; its process group is killed on drop.
pub struct Sim {
    /// `host:port` of the API (ASA: SSH).
    pub listen: String,
    /// CA certificate to trust (HTTP sims with TLS).
    pub cert: Option<PathBuf>,
    /// `host:port` of the admin endpoint (ASA; the API port otherwise).
    pub admin: String,
    /// ASA: user, password, enable password.
    pub credentials: Option<(String, String, String)>,
    child: Child,
}

fn sims_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../testbed/sims")
}

fn python() -> &'static str {
    if Path::new("/usr/bin/python3").exists() {
        "/usr/bin/python3"
    } else {
        "python3"
    }
}

/// Whether this process runs as root.
#[must_use]
pub fn is_root() -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(1))
        == Some("0")
}

impl Sim {
    /// Starts a simulator with extra arguments. ASA without root prints
    /// `SKIP:` and returns `None`.
    ///
    /// # Panics
    /// When the simulator does not start.
    #[must_use]
    pub fn start(kind: SimKind, args: &[&str]) -> Option<Sim> {
        if kind == SimKind::Asa && !is_root() {
            super::skip("ASA simulator tests need root (they start a private sshd)");
            return None;
        }
        let mut child = Command::new(python())
            .arg(sims_dir().join(kind.script()))
            .args(["--port", "0"])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .process_group(0)
            .spawn()
            .expect("spawn simulator");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let mut lines = BufReader::new(stdout).lines();
            while let Some(Ok(l)) = lines.next() {
                if tx.send(l).is_err() {
                    break;
                }
            }
        });
        let mut sim = Sim {
            listen: String::new(),
            cert: None,
            admin: String::new(),
            credentials: None,
            child,
        };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = rx
                .recv_timeout(left)
                .unwrap_or_else(|_| panic!("{} did not print its startup lines", kind.script()));
            let (word, rest) = line.split_once(' ').unwrap_or((line.as_str(), ""));
            match word {
                "LISTENING" => sim.listen = rest.to_owned(),
                "CERT" => sim.cert = Some(PathBuf::from(rest)),
                "ADMIN" => sim.admin = rest.to_owned(),
                "CREDENTIALS" => {
                    let p: Vec<&str> = rest.split_whitespace().collect();
                    sim.credentials = Some((p[0].to_owned(), p[1].to_owned(), p[2].to_owned()));
                }
                _ => {}
            }
            let done = match kind {
                SimKind::Asa => !sim.admin.is_empty() && sim.credentials.is_some(),
                _ => {
                    !sim.listen.is_empty() && (sim.cert.is_some() || args.contains(&"--plain-http"))
                }
            };
            if done {
                break;
            }
        }
        if sim.admin.is_empty() {
            sim.admin.clone_from(&sim.listen);
        }
        Some(sim)
    }

    /// The API base URL (`https://127.0.0.1:PORT`).
    #[must_use]
    pub fn base_url(&self) -> String {
        let scheme = if self.cert.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.listen)
    }

    /// The API port.
    #[must_use]
    pub fn port(&self) -> u16 {
        self.listen.rsplit(':').next().unwrap().parse().unwrap()
    }

    /// An admin request; returns (status, JSON body).
    ///
    /// # Panics
    /// On connection failures.
    #[must_use]
    pub fn admin_call(
        &self,
        method: &str,
        path: &str,
        body: Option<&serde_json::Value>,
    ) -> (u16, serde_json::Value) {
        let tls = self.cert.is_some() && self.admin == self.listen;
        let body = body.map(ToString::to_string).unwrap_or_default();
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
            self.admin,
            body.len()
        );
        let raw = if tls {
            tls_exchange(&self.admin, self.cert.as_deref().unwrap(), req.as_bytes())
        } else {
            let mut s = TcpStream::connect(&self.admin).expect("admin connect");
            s.write_all(req.as_bytes()).unwrap();
            let mut out = Vec::new();
            s.read_to_end(&mut out).unwrap();
            out
        };
        let text = String::from_utf8_lossy(&raw).to_string();
        let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
        let status = head
            .split_whitespace()
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let body = if head
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked")
        {
            dechunk(body)
        } else {
            body.to_owned()
        };
        (
            status,
            serde_json::from_str(&body).unwrap_or(serde_json::Value::Null),
        )
    }

    /// `GET /_sim/state`.
    #[must_use]
    pub fn state(&self) -> serde_json::Value {
        self.admin_call("GET", "/_sim/state", None).1
    }

    /// `POST /_sim/faults`.
    ///
    /// # Panics
    /// When the simulator refuses the fault document.
    pub fn fault(&self, doc: &serde_json::Value) {
        let (status, body) = self.admin_call("POST", "/_sim/faults", Some(doc));
        assert_eq!(status, 200, "fault {doc} refused: {body}");
    }

    /// `POST /_sim/reset`.
    pub fn reset(&self) {
        let _ = self.admin_call("POST", "/_sim/reset", None);
    }

    /// `GET /_sim/requests`: the recent API requests.
    #[must_use]
    pub fn requests(&self) -> Vec<serde_json::Value> {
        let v = self.admin_call("GET", "/_sim/requests", None).1;
        match v {
            serde_json::Value::Array(a) => a,
            serde_json::Value::Object(mut o) => match o.remove("requests") {
                Some(serde_json::Value::Array(a)) => a,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        }
    }
}

fn dechunk(s: &str) -> String {
    let mut out = String::new();
    let mut rest = s;
    while let Some((len, after)) = rest.split_once("\r\n") {
        let Ok(n) = usize::from_str_radix(len.trim(), 16) else {
            break;
        };
        if n == 0 || after.len() < n {
            break;
        }
        out.push_str(&after[..n]);
        rest = after[n..].trim_start_matches("\r\n");
    }
    out
}

/// One TLS request with rustls, trusting only `ca`.
fn tls_exchange(addr: &str, ca: &Path, req: &[u8]) -> Vec<u8> {
    use std::sync::Arc;
    let mut roots = rustls::RootCertStore::empty();
    let pem = std::fs::read(ca).unwrap();
    for c in rustls_pemfile_certs(&pem) {
        roots.add(c).unwrap();
    }
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let mut conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    let mut sock = TcpStream::connect(addr).unwrap();
    let mut tls = rustls::Stream::new(&mut conn, &mut sock);
    tls.write_all(req).unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out);
    out
}

fn rustls_pemfile_certs(pem: &[u8]) -> Vec<rustls::pki_types::CertificateDer<'static>> {
    use rustls::pki_types::{CertificateDer, pem::PemObject};
    CertificateDer::pem_slice_iter(pem)
        .filter_map(Result::ok)
        .collect()
}

impl Drop for Sim {
    fn drop(&mut self) {
        let pid = self.child.id();
        if pid <= 1 {
            return;
        }
        // The simulator runs in its own process group (id = its pid). `--`
        // matters: procps' kill would read `-PID` as an option otherwise.
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let deadline = Instant::now() + Duration::from_secs(3);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}
