//! A private 3-member cluster of Debian's etcd (`scripts/install/etcd.sh`)
//! on free loopback ports, in a temporary directory that goes away with it.
//! Dropping the cluster (a failing test's unwinding included) kills every
//! member.
#![allow(dead_code, reason = "each test binary uses a different subset")]

use std::{
    net::TcpListener,
    path::Path,
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

const ETCD: &str = "/usr/bin/etcd";

/// One running cluster.
pub struct Cluster {
    members: Vec<Option<Child>>,
    /// Client URLs, one per member.
    pub endpoints: Vec<String>,
    peers: Vec<String>,
    token: String,
    /// Client TLS files when the members require client certificates.
    pub tls: Option<TlsFiles>,
    /// Data directories and logs.
    pub dir: tempfile::TempDir,
}

/// PEM files of a TLS cluster, in its directory.
pub struct TlsFiles {
    /// CA that signed every certificate.
    pub ca: std::path::PathBuf,
    /// Members' server certificate (SAN 127.0.0.1) and key.
    pub server: (std::path::PathBuf, std::path::PathBuf),
    /// A client certificate the members accept, and its key.
    pub client: (std::path::PathBuf, std::path::PathBuf),
}

/// `None` (after printing `SKIP`) when etcd is not installed; in CI
/// (`CI=true`) a missing etcd fails the test instead.
///
/// # Panics
/// When etcd is missing in CI, or the cluster does not become healthy.
#[must_use]
pub fn start() -> Option<Cluster> {
    if !Path::new(ETCD).exists() {
        let msg = format!("{ETCD} is missing: run scripts/install/etcd.sh");
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "etcd conformance cannot run in CI: {msg}"
        );
        eprintln!("SKIP: {msg}");
        return None;
    }
    Some(Cluster::start(false))
}

/// Like [`start`], with client URLs on https and client-certificate
/// authentication required.
///
/// # Panics
/// As [`start`].
#[must_use]
pub fn start_tls() -> Option<Cluster> {
    if !Path::new(ETCD).exists() {
        return start();
    }
    Some(Cluster::start(true))
}

fn write_tls(dir: &Path) -> TlsFiles {
    use rampart_controller::tls::{CertificateAuthority, Usage};
    let ca = CertificateAuthority::generate("etcd test CA").expect("CA");
    let ttl = Duration::from_secs(3600);
    let server = ca
        .issue(
            "etcd",
            &["127.0.0.1".to_owned()],
            Usage::ServerAndClient,
            ttl,
        )
        .expect("server cert");
    let client = ca
        .issue("rampartd", &[], Usage::Client, ttl)
        .expect("client cert");
    let write = |name: &str, pem: &str| {
        let p = dir.join(name);
        std::fs::write(&p, pem).expect("write PEM");
        p
    };
    TlsFiles {
        ca: write("ca.pem", ca.cert_pem()),
        server: (
            write("server.pem", &server.cert_pem),
            write("server-key.pem", &server.key_pem),
        ),
        client: (
            write("client.pem", &client.cert_pem),
            write("client-key.pem", &client.key_pem),
        ),
    }
}

/// Free loopback ports, held until all are chosen so none repeats.
fn free_ports(n: usize) -> Vec<u16> {
    let held: Vec<TcpListener> = (0..n)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("bind a loopback port"))
        .collect();
    held.iter()
        .map(|l| l.local_addr().expect("local addr").port())
        .collect()
}

impl Cluster {
    fn start(tls: bool) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let ports = free_ports(6);
        let scheme = if tls { "https" } else { "http" };
        let mut cluster = Self {
            members: Vec::new(),
            endpoints: (0..3)
                .map(|i| format!("{scheme}://127.0.0.1:{}", ports[i]))
                .collect(),
            tls: tls.then(|| write_tls(dir.path())),
            peers: (0..3)
                .map(|i| format!("http://127.0.0.1:{}", ports[3 + i]))
                .collect(),
            token: format!("rampart-test-{}-{}", std::process::id(), ports[0]),
            dir,
        };
        for i in 0..3 {
            let child = cluster.spawn(i);
            cluster.members.push(Some(child));
        }
        cluster.wait_healthy(Duration::from_secs(30));
        cluster
    }

    fn spawn(&self, i: usize) -> Child {
        let initial: Vec<String> = (0..3).map(|j| format!("m{j}={}", self.peers[j])).collect();
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir.path().join(format!("m{i}.log")))
            .expect("log file");
        let mut cmd = Command::new(ETCD);
        if let Some(t) = &self.tls {
            cmd.arg("--client-cert-auth")
                .arg("--trusted-ca-file")
                .arg(&t.ca)
                .arg("--cert-file")
                .arg(&t.server.0)
                .arg("--key-file")
                .arg(&t.server.1);
        }
        cmd.args(["--name", &format!("m{i}")])
            .arg("--data-dir")
            .arg(self.dir.path().join(format!("m{i}")))
            .args(["--listen-client-urls", &self.endpoints[i]])
            .args(["--advertise-client-urls", &self.endpoints[i]])
            .args(["--listen-peer-urls", &self.peers[i]])
            .args(["--initial-advertise-peer-urls", &self.peers[i]])
            .args(["--initial-cluster", &initial.join(",")])
            .args(["--initial-cluster-token", &self.token])
            .args(["--initial-cluster-state", "new"])
            // Fast elections: the member-loss cases wait for them.
            .args(["--heartbeat-interval", "50", "--election-timeout", "500"])
            .args(["--logger", "zap", "--log-level", "warn"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn etcd")
    }

    /// Starts a killed member again on its data (it rejoins).
    pub fn restart(&mut self, i: usize) {
        if self.members[i].is_none() {
            self.members[i] = Some(self.spawn(i));
        }
        self.wait_healthy(Duration::from_secs(30));
    }

    /// Waits until every live member answers a linearizable read.
    fn wait_healthy(&self, within: Duration) {
        let deadline = Instant::now() + within;
        for (i, ep) in self.endpoints.iter().enumerate() {
            if self.members[i].is_none() {
                continue;
            }
            loop {
                let out = self
                    .etcdctl()
                    .args([
                        "--endpoints",
                        ep,
                        "--command-timeout=1s",
                        "endpoint",
                        "health",
                    ])
                    .output()
                    .expect("run etcdctl");
                if out.status.success() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "etcd member {i} not healthy: {}\nlog: {}",
                    String::from_utf8_lossy(&out.stderr),
                    self.log(i)
                );
                std::thread::sleep(Duration::from_millis(100));
            }
        }
    }

    fn etcdctl(&self) -> Command {
        let mut cmd = Command::new("/usr/bin/etcdctl");
        cmd.env("ETCDCTL_API", "3");
        if let Some(t) = &self.tls {
            cmd.arg("--cacert")
                .arg(&t.ca)
                .arg("--cert")
                .arg(&t.client.0)
                .arg("--key")
                .arg(&t.client.1);
        }
        cmd
    }

    /// The stderr log of member `i`.
    #[must_use]
    pub fn log(&self, i: usize) -> String {
        std::fs::read_to_string(self.dir.path().join(format!("m{i}.log"))).unwrap_or_default()
    }

    /// Index of the member that leads the Raft group now.
    ///
    /// # Panics
    /// When no live member reports a leader.
    #[must_use]
    pub fn leader(&self) -> usize {
        let live: Vec<&str> = (0..3)
            .filter(|i| self.members[*i].is_some())
            .map(|i| self.endpoints[i].as_str())
            .collect();
        let out = self
            .etcdctl()
            .args([
                "--endpoints",
                &live.join(","),
                "endpoint",
                "status",
                "-w",
                "json",
            ])
            .output()
            .expect("run etcdctl");
        let status: serde_json::Value =
            serde_json::from_slice(&out.stdout).expect("etcdctl status JSON");
        let entries = status.as_array().cloned().unwrap_or_default();
        for e in &entries {
            let member = &e["Status"]["header"]["member_id"];
            if !member.is_null() && *member == e["Status"]["leader"] {
                let ep = e["Endpoint"].as_str().unwrap_or_default();
                return self
                    .endpoints
                    .iter()
                    .position(|x| x == ep)
                    .expect("leader endpoint is a member");
            }
        }
        panic!("no leader among {live:?}: {status}");
    }

    /// `kill -9` of member `i`.
    pub fn kill(&mut self, i: usize) {
        if let Some(mut c) = self.members[i].take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        for i in 0..self.members.len() {
            self.kill(i);
        }
    }
}
