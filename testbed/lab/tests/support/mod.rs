//! The harness every lab test binary shares: a lab under a unique name with
//! its state in a temp dir, torn down on drop (also after a failed step);
//! what of it remains on the machine, found with `ip` and `/proc` rather
//! than through the runner; rampartctl with the lab's environment; HTTP and
//! metrics helpers; and skipping that fails in CI.

#![allow(dead_code, reason = "each test binary uses a part of the harness")]

use std::{
    collections::BTreeMap,
    io::{Read as _, Write as _},
    net::{SocketAddr, TcpStream},
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    time::{Duration, Instant},
};

use rampart_lab::{runner, sys};
use serde_json::Value;

pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../..")
        .canonicalize()
        .unwrap()
}

/// Where cargo put rampart-lab, and so rampartd, rampartctl and the agent.
pub fn bin_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_rampart-lab"))
        .parent()
        .unwrap()
        .to_owned()
}

pub fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .unwrap_or_default()
        .lines()
        .find(|l| l.starts_with("Uid:"))
        .and_then(|l| l.split_whitespace().nth(2))
        == Some("0")
}

/// Whether `test` must be skipped because `missing` (a reason) holds: says
/// so on stderr, and fails the test instead under `CI=true`, where nothing
/// may silently not run.
pub fn skip_because(test: &str, missing: Option<String>) -> bool {
    let Some(why) = missing else {
        return false;
    };
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test} cannot run in CI: {why}"
    );
    eprintln!("SKIP: {test} {why}");
    true
}

/// Says that part of a test did not run because `why`; fails the test
/// under `CI=true` instead, like [`skip_because`].
pub fn partly_skipped(test: &str, why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{test}: part of it cannot run in CI: {why}"
    );
    eprintln!("NOTE: {test}: {why}; that part did not run");
}

/// Skips unless root (network namespaces, veth, bpffs, eBPF).
pub fn skip(test: &str) -> bool {
    skip_because(
        test,
        (!is_root()).then(|| "needs root (network namespaces, veth, bpffs)".to_owned()),
    )
}

/// Skips unless root and every binary of `bins` is built next to rampart-lab.
pub fn skip_without(test: &str, bins: &[&str]) -> bool {
    if skip(test) {
        return true;
    }
    let missing = bins.iter().find(|b| !bin_dir().join(b).is_file()).map(|b| {
        format!(
            "needs {b} in {} (cargo build -p rampart-controller -p rampartctl -p rampart-agent)",
            bin_dir().display()
        )
    });
    skip_because(test, missing)
}

/// A lab name unique to this process and test (at most 12 characters).
pub fn unique(tag: &str) -> String {
    format!("t{}{tag}", std::process::id() % 100_000)
}

/// The reference lab's topology (testbed/clab/rampart.clab.yml) with its
/// name replaced by `NAME`, for [`Lab::new`].
pub fn reference_yaml() -> String {
    let yaml = std::fs::read_to_string(repo().join("testbed/clab/rampart.clab.yml")).unwrap();
    assert!(yaml.contains("\nname: rampart\n"), "reference lab renamed?");
    yaml.replacen("\nname: rampart\n", "\nname: NAME\n", 1)
}

/// A lab under test: topology and state in a temp dir, `down` on drop.
pub struct Lab {
    pub name: String,
    dir: tempfile::TempDir,
    pub topology: PathBuf,
    ready_timeout: u32,
}

impl Lab {
    /// Writes `yaml` (with `NAME` replaced by a name unique to `tag`) as
    /// the topology; the reference lab's `configs/` are copied next to it
    /// for relative paths. Processes get 20 s to become ready.
    pub fn new(tag: &str, yaml: &str) -> Lab {
        Self::named(unique(tag), yaml)
    }

    /// [`Lab::new`] with an exact name.
    pub fn named(name: String, yaml: &str) -> Lab {
        let dir = tempfile::Builder::new()
            .prefix("rampart-lab-test-")
            .tempdir()
            .unwrap();
        let configs = dir.path().join("configs");
        std::fs::create_dir(&configs).unwrap();
        for e in std::fs::read_dir(repo().join("testbed/clab/configs")).unwrap() {
            let e = e.unwrap();
            std::fs::copy(e.path(), configs.join(e.file_name())).unwrap();
        }
        let topology = dir.path().join("lab.clab.yml");
        std::fs::write(&topology, yaml.replace("NAME", &name)).unwrap();
        Lab {
            name,
            dir,
            topology,
            ready_timeout: 20,
        }
    }

    /// The ready timeout `run` passes (`--ready-timeout`).
    #[must_use]
    pub fn ready_timeout(mut self, secs: u32) -> Lab {
        self.ready_timeout = secs;
        self
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn run(&self, args: &[&str]) -> Output {
        self.run_timeout(args, self.ready_timeout)
    }

    /// `run` with `--ready-timeout SECS`.
    pub fn run_timeout(&self, args: &[&str], secs: u32) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rampart-lab"))
            .args(args)
            .arg("--topology")
            .arg(&self.topology)
            .arg("--state-dir")
            .arg(self.state_dir())
            .arg("--root")
            .arg(repo())
            .arg("--ready-timeout")
            .arg(secs.to_string())
            .output()
            .unwrap()
    }

    pub fn ns(&self, node: &str) -> String {
        runner::ns_name(&self.name, node)
    }

    /// `lab.env` as (variable, value) pairs.
    pub fn env(&self) -> Vec<(String, String)> {
        let text = std::fs::read_to_string(self.state_dir().join("lab.env")).unwrap();
        text.lines()
            .filter_map(|l| l.strip_prefix("export "))
            .filter_map(|l| l.split_once('='))
            .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
            .collect()
    }

    /// Everything with the lab's name, found independently of the runner.
    pub fn remains(&self) -> Vec<String> {
        let mut left = Vec::new();
        let netns = Command::new("ip").args(["netns", "list"]).output().unwrap();
        for line in String::from_utf8_lossy(&netns.stdout).lines() {
            let ns = line.split_whitespace().next().unwrap_or_default();
            if ns.starts_with(&format!("rl-{}-", self.name)) {
                left.push(format!("netns {ns}"));
            }
        }
        let link = Command::new("ip")
            .args(["link", "show", &format!("rl-{}", self.name)])
            .output()
            .unwrap();
        if link.status.success() {
            left.push(format!("link rl-{}", self.name));
        }
        left.extend(marked_processes(&self.name));
        for p in [
            runner::bpf_root(&self.name),
            runner::run_dir(&self.name),
            self.state_dir().join("nodes"),
        ] {
            if p.exists() {
                left.push(p.display().to_string());
            }
        }
        left
    }

    pub fn assert_clean(&self, when: &str) {
        let left = self.remains();
        assert!(left.is_empty(), "{when}: left behind: {left:#?}");
    }
}

/// Live (non-zombie) processes carrying lab `name`'s marker.
fn marked_processes(name: &str) -> Vec<String> {
    let marker = format!("{}={name}", runner::MARKER);
    let mut out = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(env) = std::fs::read(e.path().join("environ")) else {
            continue;
        };
        if env.split(|b| *b == 0).any(|kv| kv == marker.as_bytes()) {
            let stat = std::fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            let zombie = stat
                .rsplit_once(") ")
                .is_some_and(|(_, r)| r.starts_with('Z'));
            if !zombie {
                let comm = std::fs::read_to_string(e.path().join("comm")).unwrap_or_default();
                out.push(format!(
                    "process {} {}",
                    e.file_name().to_string_lossy(),
                    comm.trim()
                ));
            }
        }
    }
    out
}

impl Drop for Lab {
    fn drop(&mut self) {
        // Also after a failed step: nothing of the lab may outlive the
        // test. A panic here would abort the test binary, so say it loudly.
        let down = self.run(&["down", "--lab", &self.name]);
        let left = self.remains();
        if !down.status.success() || !left.is_empty() {
            eprintln!(
                "LEFT BEHIND by lab {}: {left:#?}\n{}",
                self.name,
                text(&down)
            );
        }
    }
}

pub fn text(o: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout ---\n{}\n--- stderr ---\n{}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    )
}

/// GET / on `addr` from inside `ns`, connecting within `connect`; the body.
pub fn http_get_within(ns: &str, addr: SocketAddr, connect: Duration) -> Result<String, String> {
    sys::in_netns(ns, move || {
        let mut s = TcpStream::connect_timeout(&addr, connect).map_err(|e| e.to_string())?;
        s.set_read_timeout(Some(Duration::from_secs(2)))
            .map_err(|e| e.to_string())?;
        s.write_all(b"GET / HTTP/1.0\r\n\r\n")
            .map_err(|e| e.to_string())?;
        let mut out = String::new();
        s.read_to_string(&mut out).map_err(|e| e.to_string())?;
        Ok(out.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned())
    })
    .map_err(|e| e.to_string())?
}

/// `GET /metrics` on `addr` from `ns` (empty: the host), the whole response.
pub fn http_text(ns: &str, addr: SocketAddr) -> String {
    let fetch = move || {
        let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))
            .unwrap_or_else(|e| panic!("{addr}: {e}"));
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        s.write_all(b"GET /metrics HTTP/1.0\r\n\r\n").unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    };
    if ns.is_empty() {
        fetch()
    } else {
        sys::in_netns(ns, fetch).unwrap()
    }
}

/// `/metrics` of the agent in `ns` (it listens on the lab port).
pub fn agent_metrics(ns: &str) -> String {
    http_text(
        ns,
        SocketAddr::from(([127, 0, 0, 1], runner::AGENT_METRICS_PORT)),
    )
}

/// The value of the first sample whose line starts with `prefix`.
pub fn sample(metrics: &str, prefix: &str) -> Option<f64> {
    metrics
        .lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

/// Reads an SSH channel until `marker` (15 s at most).
pub fn read_until(ch: &mut ssh2::Channel, marker: &str) -> String {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    let deadline = Instant::now() + Duration::from_secs(15);
    while !String::from_utf8_lossy(&buf).contains(marker) {
        assert!(
            Instant::now() < deadline,
            "no {marker:?} in {:?}",
            String::from_utf8_lossy(&buf)
        );
        match ch.read(&mut chunk) {
            Ok(0) => panic!(
                "channel closed before {marker:?}: {:?}",
                String::from_utf8_lossy(&buf)
            ),
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// An SSH session to `addr` from inside `ns`, logged in with `user:secret`.
pub fn ssh_session(ns: &str, addr: SocketAddr, user_secret: &str) -> ssh2::Session {
    let tcp = sys::in_netns(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_secs(5))
    })
    .unwrap()
    .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    let (user, secret) = user_secret.split_once(':').unwrap();
    let mut sess = ssh2::Session::new().unwrap();
    sess.set_tcp_stream(tcp);
    sess.set_timeout(15_000);
    sess.handshake().unwrap();
    sess.userauth_password(user, secret)
        .unwrap_or_else(|e| panic!("{addr} login as {user}: {e}"));
    sess
}

/// `<get-config>` of running on a NETCONF device, as text.
pub fn netconf_running(ns: &str, addr: SocketAddr, user_secret: &str) -> String {
    const END: &str = "]]>]]>";
    let sess = ssh_session(ns, addr, user_secret);
    let mut ch = sess.channel_session().unwrap();
    ch.subsystem("netconf").unwrap();
    read_until(&mut ch, END);
    ch.write_all(
        format!(
            "<hello xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><capabilities><capability>urn:ietf:params:netconf:base:1.0</capability></capabilities></hello>{END}"
        )
        .as_bytes(),
    )
    .unwrap();
    // A separate message, a moment later: netconfd drops an <rpc> that
    // arrives in the same read as the client's <hello>.
    std::thread::sleep(Duration::from_millis(50));
    ch.write_all(
        format!(
            "<rpc message-id=\"1\" xmlns=\"urn:ietf:params:xml:ns:netconf:base:1.0\"><get-config><source><running/></source></get-config></rpc>{END}"
        )
        .as_bytes(),
    )
    .unwrap();
    read_until(&mut ch, END)
}

/// rampartctl with the lab's environment (server, CA, admin token).
pub struct Ctl {
    pub env: Vec<(String, String)>,
}

impl Ctl {
    pub fn of(lab: &Lab) -> Ctl {
        Ctl { env: lab.env() }
    }

    pub fn var(&self, k: &str) -> String {
        self.env
            .iter()
            .find(|(n, _)| n == k)
            .map(|(_, v)| v.clone())
            .unwrap_or_else(|| panic!("{k} missing from lab.env"))
    }

    pub fn run(&self, args: &[&str], stdin: Option<&str>) -> Output {
        let mut child = Command::new(bin_dir().join("rampartctl"))
            .args(args)
            .envs(self.env.iter().map(|(k, v)| (k.as_str(), v.as_str())))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut input = child.stdin.take().unwrap();
        input
            .write_all(stdin.unwrap_or_default().as_bytes())
            .unwrap();
        drop(input);
        child.wait_with_output().unwrap()
    }

    /// Runs and requires success; stdout.
    pub fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args, None);
        assert!(o.status.success(), "rampartctl {args:?}: {}", text(&o));
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    pub fn json(&self, args: &[&str]) -> Value {
        let mut all = vec!["-o", "json"];
        all.extend_from_slice(args);
        let out = self.ok(&all);
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: {e}: {out}"))
    }

    /// Waits until both agents are online and enforce the version rampartd
    /// wants them to, the agents on `hosts` above their version in `after`
    /// (agent id -> version: versions are per agent); the new versions.
    pub fn agents_converged(
        &self,
        after: &BTreeMap<String, u64>,
        hosts: &[&str],
    ) -> BTreeMap<String, u64> {
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let agents = self.json(&["agents"]);
            let list = agents.as_array().unwrap().clone();
            let done = list.len() == 2
                && list.iter().all(|a| {
                    let before = after
                        .get(a["agentId"].as_str().unwrap_or_default())
                        .copied()
                        .unwrap_or(0);
                    let changed = hosts.iter().any(|h| a["hostname"] == *h);
                    a["state"] == "online"
                        && a["appliedVersion"] == a["desiredVersion"]
                        && (!changed || a["desiredVersion"].as_u64().unwrap_or(0) > before)
                });
            if done {
                return versions(&agents);
            }
            assert!(
                Instant::now() < deadline,
                "agents did not converge past versions {after:?}: {agents:#}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Desired version per agent id in `rampartctl -o json agents`.
pub fn versions(agents: &Value) -> BTreeMap<String, u64> {
    agents
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            (
                a["agentId"].as_str().unwrap_or_default().to_owned(),
                a["desiredVersion"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}
