//! A real NETCONF peer for tests, and the Cisco models it enforces.
//!
//! [`Netconfd`] starts Debian's yuma123 `netconfd` behind OpenSSH on a free
//! loopback port, with the Cisco IOS-XE 16.9.3 models loaded, as an
//! unprivileged user, inside its own mount namespace holding a private copy
//! of `/etc` (so the test user exists only there and apt replacing host
//! files cannot break it). Dropping the guard kills the whole process group.
//! Several instances run side by side.
//!
//! [`yang`] validates payloads with libyang against the vendor models in
//! `../shared/yang` (read in place, never copied into the project: the
//! module directory netconfd reads is a farm of symlinks plus the one
//! rewritten file).

use std::{
    fs,
    io::Write as _,
    net::{TcpListener, TcpStream},
    os::unix::{fs::PermissionsExt, process::CommandExt},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use rampart_controller::transport::netconf::{Auth, HostKeyPolicy, SessionConfig};

/// The unprivileged user the servers run as and clients log in as.
pub const USER: &str = "rpnc";
/// Its password.
pub const PASSWORD: &str = "rampart-test";
/// SHA-512 crypt of [`PASSWORD`] (`openssl passwd -6 -salt rampartsalt`).
const PASSWORD_HASH: &str = "$6$rampartsalt$JpThBhTh.W1rD2j/9RLdzykuYVAzaC18JtmQTu/a00h3cjnTwalkWnpF/knZPbsQZHOiRoXOaG7QG211OHRwL.";
/// Its uid/gid (exists only in the servers' private /etc).
const UID: u32 = 47_001;

/// Modules netconfd loads from the 16.9.3 set.
pub const NETCONFD_MODULES: [&str; 5] = [
    "Cisco-IOS-XE-native",
    "Cisco-IOS-XE-acl",
    "Cisco-IOS-XE-nat",
    "Cisco-IOS-XE-bgp",
    "Cisco-IOS-XE-object-group",
];

/// Starts the servers inside the new mount namespace: private /etc with the
/// test user, netconfd as that user, then sshd in the foreground.
const LAUNCH: &str = r#"#!/bin/bash
set -euo pipefail
T=$1; PORT=$2; MODS=$3
mount --make-rprivate /
cp -a /etc/. "$T/etc/"
echo "rpnc:x:47001:47001::$T/home:/bin/sh" >> "$T/etc/passwd"
echo "rpnc:x:47001:" >> "$T/etc/group"
echo "rpnc:$(cat "$T/pwhash"):19000:0:99999:7:::" >> "$T/etc/shadow"
mount --bind "$T/etc" /etc
mkdir -p /run/sshd
setpriv --reuid=47001 --regid=47001 --clear-groups env HOME="$T/home"   /usr/sbin/netconfd --ncxserver-sockname="$T/home/ncx.sock" --port="$PORT"   --modpath="$T/yang:/usr/share/yuma/modules" $MODS --no-startup --superuser=rpnc   --log="$T/home/netconfd.log" --log-level=info &
for _ in $(seq 1 400); do [ -S "$T/home/ncx.sock" ] && break; sleep 0.025; done
[ -S "$T/home/ncx.sock" ] || { echo "netconfd did not start"; cat "$T/home/netconfd.log"; exit 1; }
exec /usr/sbin/sshd -D -e -f "$T/sshd_config"
"#;

/// A running netconfd behind sshd; killed on drop.
pub struct Netconfd {
    /// SSH port on 127.0.0.1.
    pub port: u16,
    /// Scratch directory (keys, known_hosts, logs).
    pub dir: tempfile::TempDir,
    child: Child,
}

/// Why a test could not get a server; printed loudly by [`Netconfd::start`].
fn skip_reason() -> Option<String> {
    // SAFETY-free check: root is uid 0 in /proc/self/status.
    let status = fs::read_to_string("/proc/self/status").unwrap_or_default();
    let uid_line = status.lines().find(|l| l.starts_with("Uid:")).unwrap_or("");
    if uid_line.split_whitespace().nth(1) != Some("0") {
        return Some("needs root (mount namespace, sshd)".to_owned());
    }
    for bin in [
        "/usr/sbin/netconfd",
        "/usr/sbin/sshd",
        "/usr/sbin/netconf-subsystem",
        "/usr/bin/ssh-keygen",
        "/usr/bin/unshare",
        "/usr/bin/setpriv",
    ] {
        if !Path::new(bin).exists() {
            return Some(format!("{bin} is missing: run scripts/install/netconfd.sh"));
        }
    }
    None
}

impl Netconfd {
    /// Starts an instance with the Cisco models, or prints `SKIP: ...` and
    /// returns `None` when the machine cannot run one.
    ///
    /// # Panics
    /// When the servers fail to start on a capable machine.
    #[must_use]
    pub fn start() -> Option<Netconfd> {
        Netconfd::start_with(true)
    }

    /// Like [`Netconfd::start`]; `cisco` selects whether the Cisco models are
    /// loaded (without them netconfd is ~15x faster per commit).
    ///
    /// # Panics
    /// When the servers fail to start on a capable machine.
    #[must_use]
    pub fn start_with(cisco: bool) -> Option<Netconfd> {
        if let Some(reason) = skip_reason() {
            // Self-contained (examples include this file alone): under CI a skip
            // is a failure, as `support::skip` makes it.
            let ci = std::env::var("CI").is_ok_and(|v| !v.is_empty() && v != "false");
            assert!(!ci, "CI: netconfd test would have been skipped: {reason}");
            eprintln!("SKIP: netconfd test {reason}");
            return None;
        }
        let mut last = String::new();
        for _ in 0..3 {
            match Netconfd::try_start(cisco) {
                Ok(n) => return Some(n),
                Err(e) => last = e,
            }
        }
        panic!("netconfd did not start: {last}");
    }

    fn try_start(cisco: bool) -> Result<Netconfd, String> {
        let dir = tempfile::Builder::new()
            .prefix("rampart-netconfd-")
            .tempdir()
            .map_err(|e| e.to_string())?;
        let t = dir.path();
        fs::set_permissions(t, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
        for sub in ["etc", "home", "yang"] {
            fs::create_dir(t.join(sub)).map_err(|e| e.to_string())?;
        }
        std::os::unix::fs::chown(t.join("home"), Some(UID), Some(UID))
            .map_err(|e| e.to_string())?;
        if cisco {
            module_farm(&t.join("yang")).map_err(|e| format!("module dir: {e}"))?;
        }
        fs::write(t.join("pwhash"), PASSWORD_HASH).map_err(|e| e.to_string())?;
        fs::write(t.join("launch.sh"), LAUNCH).map_err(|e| e.to_string())?;
        for (key, file) in [("host", "hostkey"), ("client", "client_key")] {
            let out = Command::new("ssh-keygen")
                .args(["-q", "-t", "ed25519", "-N", "", "-C", key, "-f"])
                .arg(t.join(file))
                .output()
                .map_err(|e| e.to_string())?;
            if !out.status.success() {
                return Err(format!(
                    "ssh-keygen: {}",
                    String::from_utf8_lossy(&out.stderr)
                ));
            }
        }
        fs::copy(t.join("client_key.pub"), t.join("authorized_keys")).map_err(|e| e.to_string())?;
        let port = free_port();
        let host_pub = fs::read_to_string(t.join("hostkey.pub")).map_err(|e| e.to_string())?;
        let mut parts = host_pub.split_whitespace();
        let (kt, kb) = (
            parts.next().unwrap_or_default(),
            parts.next().unwrap_or_default(),
        );
        fs::write(
            t.join("known_hosts"),
            format!("[127.0.0.1]:{port} {kt} {kb}\n"),
        )
        .map_err(|e| e.to_string())?;
        let mut cfg = fs::File::create(t.join("sshd_config")).map_err(|e| e.to_string())?;
        write!(
            cfg,
            "Port {port}\nListenAddress 127.0.0.1\nHostKey {t}/hostkey\nPidFile {t}/sshd.pid\nUsePAM no\n\
             PasswordAuthentication yes\nPubkeyAuthentication yes\nAuthorizedKeysFile {t}/authorized_keys\n\
             StrictModes no\nAllowUsers {USER}\nMaxSessions 100\nMaxStartups 100:30:200\n\
             Subsystem netconf \"/usr/sbin/netconf-subsystem --ncxserver-sockname={port}@{t}/home/ncx.sock\"\n",
            t = t.display()
        )
        .map_err(|e| e.to_string())?;
        drop(cfg);
        let mods: String = if cisco {
            NETCONFD_MODULES
                .iter()
                .map(|m| format!("--module={m} "))
                .collect()
        } else {
            String::new()
        };
        let log = fs::File::create(t.join("launch.log")).map_err(|e| e.to_string())?;
        let child = Command::new("unshare")
            .args(["-m", "bash"])
            .arg(t.join("launch.sh"))
            .arg(t)
            .arg(port.to_string())
            .arg(mods.trim())
            .stdin(Stdio::null())
            .stdout(log.try_clone().map_err(|e| e.to_string())?)
            .stderr(log)
            .process_group(0)
            .spawn()
            .map_err(|e| format!("spawn unshare: {e}"))?;
        let mut nc = Netconfd { port, dir, child };
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            if TcpStream::connect(("127.0.0.1", port)).is_ok() {
                return Ok(nc);
            }
            if let Ok(Some(status)) = nc.child.try_wait() {
                return Err(format!("launcher exited with {status}: {}", nc.log()));
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "no listener on port {port} after 20 s: {}",
                    nc.log()
                ));
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Launcher, sshd and netconfd logs, for failure messages.
    #[must_use]
    pub fn log(&self) -> String {
        let t = self.dir.path();
        let launch = fs::read_to_string(t.join("launch.log")).unwrap_or_default();
        let nc = fs::read_to_string(t.join("home/netconfd.log")).unwrap_or_default();
        let tail: Vec<&str> = nc.lines().rev().take(40).collect();
        format!(
            "--- launcher/sshd ---\n{launch}\n--- netconfd (tail) ---\n{}",
            tail.into_iter().rev().collect::<Vec<_>>().join("\n")
        )
    }

    /// The known_hosts file holding this server's key.
    #[must_use]
    pub fn known_hosts(&self) -> PathBuf {
        self.dir.path().join("known_hosts")
    }

    /// The client's private key (authorized for [`USER`]).
    #[must_use]
    pub fn client_key(&self) -> PathBuf {
        self.dir.path().join("client_key")
    }

    /// A session config with key authentication and strict host-key checks.
    #[must_use]
    pub fn session_config(&self) -> SessionConfig {
        let mut c = SessionConfig::new(
            "127.0.0.1",
            self.port,
            USER,
            Auth::KeyFile {
                path: self.client_key(),
                passphrase: None,
            },
            HostKeyPolicy {
                known_hosts: self.known_hosts(),
                trust_on_first_use: false,
            },
        );
        c.connect_timeout = Duration::from_secs(10);
        c.rpc_timeout = Duration::from_secs(30);
        c
    }

    /// A session config with password authentication.
    #[must_use]
    pub fn password_config(&self) -> SessionConfig {
        let mut c = self.session_config();
        c.auth = Auth::Password(PASSWORD.to_owned());
        c
    }
}

impl Drop for Netconfd {
    fn drop(&mut self) {
        let pgid = self.child.id();
        let _ = Command::new("kill")
            .args(["-TERM", "--", &format!("-{pgid}")])
            .status();
        let deadline = Instant::now() + Duration::from_secs(2);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                // sshd is gone; netconfd may still be shutting down.
                std::thread::sleep(Duration::from_millis(50));
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = Command::new("kill")
            .args(["-KILL", "--", &format!("-{pgid}")])
            .stderr(Stdio::null())
            .status();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

/// Fills `dir` with symlinks to the 16.9.3 models and a rewritten copy of
/// `Cisco-IOS-XE-acl.yang` (yuma123 rejects the regex quantifier `{,3}`;
/// `{0,3}` means the same).
///
/// # Errors
/// I/O errors.
pub fn module_farm(dir: &Path) -> std::io::Result<()> {
    let src = shared_yang_dir().join("cisco-xe-16.9.3");
    for entry in fs::read_dir(&src)? {
        let path = entry?.path();
        let name = path.file_name().unwrap_or_default();
        if path.extension().is_some_and(|e| e == "yang") && name != "Cisco-IOS-XE-acl.yang" {
            std::os::unix::fs::symlink(&path, dir.join(name))?;
        }
    }
    let acl = fs::read_to_string(src.join("Cisco-IOS-XE-acl.yang"))?;
    fs::write(
        dir.join("Cisco-IOS-XE-acl.yang"),
        acl.replace("{,3}", "{0,3}"),
    )
}

/// Root of the shared vendor models (`../shared/yang` from the project).
#[must_use]
pub fn shared_yang_dir() -> PathBuf {
    PathBuf::from(concat!(env!("CARGO_MANIFEST_DIR"), "/../../shared/yang"))
}

/// The two IOS-XE releases payloads are checked against.
pub const RELEASES: [&str; 2] = ["cisco-xe-16.9.3", "cisco-xe-17.12.1"];

/// libyang validation against the Cisco IOS-XE models.
pub mod yang {
    use yang3::{
        context::{Context, ContextFlags},
        data::{
            Data, DataFormat, DataParserFlags, DataPrinterFlags, DataTree, DataValidationFlags,
        },
    };

    /// Modules loaded for validation: the native tree, the augments the
    /// renderer uses, and `ietf-netconf` for the `nc:operation` attribute.
    pub const MODULES: [&str; 6] = [
        "ietf-netconf",
        "Cisco-IOS-XE-native",
        "Cisco-IOS-XE-acl",
        "Cisco-IOS-XE-nat",
        "Cisco-IOS-XE-bgp",
        "Cisco-IOS-XE-object-group",
    ];

    /// Whether libyang can load `module` of `release`: 17.12.1's
    /// `Cisco-IOS-XE-bgp` has a cyclic `when` that libyang (Debian's 2.1 and
    /// the bundled 3.x alike) refuses.
    #[must_use]
    pub fn loadable(release: &str, module: &str) -> bool {
        !(release == "cisco-xe-17.12.1" && module == "Cisco-IOS-XE-bgp")
    }

    /// A libyang context with the models of `release` (a folder of
    /// `../shared/yang`).
    ///
    /// # Panics
    /// When the models are missing or do not load.
    #[must_use]
    pub fn context(release: &str) -> Context {
        let dir = super::shared_yang_dir().join(release);
        assert!(dir.is_dir(), "vendor models missing: {}", dir.display());
        let mut ctx = Context::new(ContextFlags::NO_YANGLIBRARY).expect("libyang context");
        ctx.set_searchdir(&dir).expect("search dir");
        for m in MODULES.into_iter().filter(|m| loadable(release, m)) {
            ctx.load_module(m, None, &[])
                .unwrap_or_else(|e| panic!("{release}: loading {m}: {e}"));
        }
        ctx
    }

    /// The `<native>` element inside a NETCONF `<config>` payload.
    ///
    /// # Panics
    /// When `config` is not a `<config>` element.
    #[must_use]
    pub fn config_inner(config: &str) -> &str {
        let start = config.find('>').expect("<config> start tag") + 1;
        let end = config.rfind("</config>").expect("</config> end tag");
        &config[start..end]
    }

    /// Parses and validates `data` (XML without the `<config>` wrapper, or
    /// RFC 7951 JSON) as configuration; unknown nodes are errors. Returns the
    /// data as canonical JSON so two encodings can be compared.
    ///
    /// # Errors
    /// libyang's message and data path.
    pub fn validate(ctx: &Context, data: &str, format: DataFormat) -> Result<String, String> {
        let tree = DataTree::parse_string(
            ctx,
            data,
            format,
            DataParserFlags::STRICT | DataParserFlags::NO_STATE,
            DataValidationFlags::NO_STATE | DataValidationFlags::PRESENT,
        )
        .map_err(|e| {
            format!(
                "{} (at {})",
                e.msg.unwrap_or_default(),
                e.path.unwrap_or_default()
            )
        })?;
        tree.print_string(DataFormat::JSON, DataPrinterFlags::WITH_SIBLINGS)
            .map_err(|e| e.to_string())
    }
}
