//! Shared helpers of the netns tests: two namespaces joined by a veth pair,
//! a private bpffs pin root, traffic helpers, and Drop guards that clean up
//! even when a test fails.

#![allow(dead_code, reason = "each test binary uses a subset")]

#[path = "../skip/mod.rs"]
mod skip;

use std::{
    io::{BufRead, BufReader, Read, Write},
    net::{SocketAddr, TcpListener, TcpStream, UdpSocket},
    os::fd::AsRawFd,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
        mpsc,
    },
    time::{Duration, Instant},
};

static SEQ: AtomicU32 = AtomicU32::new(0);

/// Client (C) side address; the agent enforces on the server (S) side.
pub const C_IP: &str = "10.200.0.1";
/// Second client address (for canary flows).
pub const C_IP2: &str = "10.200.0.3";
/// Server address.
pub const S_IP: &str = "10.200.0.2";

pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    #[allow(unsafe_code, reason = "getuid")]
    let uid = unsafe { libc::getuid() };
    uid == 0
}

pub fn skip_unless_root(test: &str) -> bool {
    skip::unless_root(&format!(
        "{test} needs root (network namespaces, veth, bpf)"
    ))
}

fn sh(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("spawn command");
    assert!(
        out.status.success(),
        "{args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Two namespaces `c` and `s` joined by veth `vc`/`vs`, plus a pin root.
pub struct Topo {
    pub c: String,
    pub s: String,
    pub iface: String,
    pub pin_root: PathBuf,
}

impl Topo {
    pub fn new(tag: &str) -> Self {
        let n = SEQ.fetch_add(1, Ordering::Relaxed);
        let id = format!("{}{}{}", tag, std::process::id() % 100_000, n);
        let c = format!("rpc-{id}");
        let s = format!("rps-{id}");
        let pin_root = PathBuf::from(format!("/sys/fs/bpf/rampart-test-{id}"));
        let t = Self {
            c: c.clone(),
            s: s.clone(),
            iface: "vs".into(),
            pin_root,
        };
        sh(&["ip", "netns", "add", &c]);
        sh(&["ip", "netns", "add", &s]);
        sh(&[
            "ip", "-n", &c, "link", "add", "vc", "type", "veth", "peer", "name", "vs", "netns", &s,
        ]);
        for (ns, dev, ip, ip6) in [
            (&c, "vc", "10.200.0.1/24", "fd00:200::1/64"),
            (&s, "vs", "10.200.0.2/24", "fd00:200::2/64"),
        ] {
            sh(&["ip", "-n", ns, "addr", "add", ip, "dev", dev]);
            sh(&["ip", "-n", ns, "addr", "add", ip6, "dev", dev, "nodad"]);
            sh(&["ip", "-n", ns, "link", "set", dev, "up"]);
            sh(&["ip", "-n", ns, "link", "set", "lo", "up"]);
        }
        sh(&["ip", "-n", &c, "addr", "add", "10.200.0.3/24", "dev", "vc"]);
        t
    }

    /// Runs `f` on a thread inside namespace `ns`.
    pub fn in_ns<T: Send + 'static>(
        ns: &str,
        f: impl FnOnce() -> T + Send + 'static,
    ) -> std::thread::JoinHandle<T> {
        let path = format!("/run/netns/{ns}");
        std::thread::spawn(move || {
            let fd = std::fs::File::open(&path).expect("open netns");
            // SAFETY: valid fd; affects only this thread.
            #[allow(unsafe_code, reason = "setns")]
            let r = unsafe { libc::setns(fd.as_raw_fd(), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns {path}");
            f()
        })
    }

    /// Runs a command inside a namespace; returns success.
    pub fn exec(&self, ns: &str, args: &[&str]) -> bool {
        Command::new("ip")
            .args(["netns", "exec", ns])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    pub fn ping(&self, from_c: bool) -> bool {
        let (ns, dst) = if from_c {
            (&self.c, S_IP)
        } else {
            (&self.s, C_IP)
        };
        self.exec(ns, &["ping", "-c", "1", "-W", "1", dst])
    }

    /// TCP connect from C to S:port with a server in S; true if it connected
    /// and exchanged a byte.
    pub fn tcp_c_to_s(&self, port: u16) -> bool {
        tcp_between(&self.s, S_IP, &self.c, port)
    }

    /// TCP connect from S to C:port (S originates; replies come back in).
    pub fn tcp_s_to_c(&self, port: u16) -> bool {
        tcp_between(&self.c, C_IP, &self.s, port)
    }

    /// Sends `n` UDP datagrams from `src` (in C) to S:port; returns how many
    /// arrived.
    pub fn udp_c_to_s(&self, src: &'static str, port: u16, n: usize) -> usize {
        let (tx, rx) = mpsc::channel();
        let server = Self::in_ns(&self.s, move || {
            let sock = UdpSocket::bind((S_IP, port)).expect("bind udp");
            sock.set_read_timeout(Some(Duration::from_millis(300)))
                .unwrap();
            tx.send(()).unwrap();
            let mut got = 0;
            let mut buf = [0u8; 64];
            while sock.recv(&mut buf).is_ok() {
                got += 1;
            }
            got
        });
        rx.recv().unwrap();
        Self::in_ns(&self.c, move || {
            let sock = UdpSocket::bind((src, 0)).expect("bind client");
            for _ in 0..n {
                let _ = sock.send_to(b"x", (S_IP, port));
                std::thread::sleep(Duration::from_millis(1));
            }
        })
        .join()
        .unwrap();
        server.join().unwrap()
    }
}

fn tcp_between(server_ns: &str, server_ip: &'static str, client_ns: &str, port: u16) -> bool {
    let (tx, rx) = mpsc::channel();
    let server = Topo::in_ns(server_ns, move || {
        let l = TcpListener::bind((server_ip, port)).expect("bind tcp");
        l.set_nonblocking(true).unwrap();
        tx.send(()).unwrap();
        let deadline = Instant::now() + Duration::from_millis(1500);
        while Instant::now() < deadline {
            if let Ok((mut s, _)) = l.accept() {
                s.set_nonblocking(false).unwrap();
                let mut b = [0u8; 1];
                if s.read_exact(&mut b).is_ok() {
                    let _ = s.write_all(&b);
                }
                return;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
    });
    rx.recv().unwrap();
    let ok = Topo::in_ns(client_ns, move || {
        let addr: SocketAddr = format!("{server_ip}:{port}").parse().unwrap();
        let Ok(mut s) = TcpStream::connect_timeout(&addr, Duration::from_millis(700)) else {
            return false;
        };
        s.set_read_timeout(Some(Duration::from_millis(700)))
            .unwrap();
        let mut b = [0u8; 1];
        s.write_all(b"k").is_ok() && s.read_exact(&mut b).is_ok() && b[0] == b'k'
    })
    .join()
    .unwrap();
    server.join().unwrap();
    ok
}

impl Drop for Topo {
    fn drop(&mut self) {
        let layout = rampart_agent::pins::PinLayout {
            root: self.pin_root.clone(),
        };
        let _ = rampart_agent::fw::loader::detach_all(&layout);
        let _ = std::fs::remove_dir_all(&self.pin_root);
        for ns in [&self.c, &self.s] {
            let _ = Command::new("ip").args(["netns", "del", ns]).status();
        }
    }
}

/// A running `rampart-agent` process (killed on drop).
pub struct Agent {
    pub child: Child,
    pub log: Arc<Mutex<String>>,
}

impl Agent {
    pub fn start(topo: &Topo, policy: &Path, metrics_port: u16) -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_rampart-agent"))
            .args(["--netns", &topo.s, "--pin-root"])
            .arg(&topo.pin_root)
            .args(["run", "--policy"])
            .arg(policy)
            .args(["--metrics-listen", &format!("127.0.0.1:{metrics_port}")])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn rampart-agent");
        let log = Arc::new(Mutex::new(String::new()));
        let l = log.clone();
        let err = child.stderr.take().unwrap();
        std::thread::spawn(move || {
            for line in BufReader::new(err).lines().map_while(Result::ok) {
                eprintln!("agent: {line}");
                l.lock().unwrap().push_str(&line);
                l.lock().unwrap().push('\n');
            }
        });
        Self { child, log }
    }

    /// Waits until the agent logged `needle` `count` times.
    pub fn wait_for(&self, needle: &str, count: usize) {
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if self.log.lock().unwrap().matches(needle).count() >= count {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "agent never logged {needle:?} x{count}; log:\n{}",
            self.log.lock().unwrap()
        );
    }

    pub fn kill9(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Agent {
    fn drop(&mut self) {
        self.kill9();
    }
}

/// Fetches `/metrics` from inside namespace `ns`.
pub fn scrape(ns: &str, port: u16) -> String {
    Topo::in_ns(ns, move || {
        let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect metrics");
        s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    })
    .join()
    .unwrap()
}

/// A free-looking TCP port (the agent binds it inside its own namespace,
/// so collisions with the host are impossible; this just varies it).
pub fn port() -> u16 {
    20_000 + u16::try_from(SEQ.fetch_add(1, Ordering::Relaxed) % 1000).unwrap()
}
