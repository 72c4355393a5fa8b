//! Thin wrappers over the kernel objects a lab is made of: network
//! namespaces and links (through `ip`, so what the runner does is what an
//! operator would type), processes and process groups (through `/proc` and
//! signals), and bpffs directories.
//!
//! Everything here reports the exact command or object that failed.

use std::{
    collections::BTreeSet,
    ffi::OsStr,
    fs,
    net::{SocketAddr, TcpStream},
    os::unix::{fs::MetadataExt as _, process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use thiserror::Error;

/// Where `ip netns` keeps namespace handles.
pub const NETNS_DIR: &str = "/run/netns";

/// A failed system operation.
#[derive(Debug, Error)]
pub enum SysError {
    /// A command could not be started.
    #[error("cannot run {command}: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// A command exited non-zero.
    #[error("{command} failed: {stderr}")]
    Failed {
        /// The command line.
        command: String,
        /// What it printed on stderr (trimmed).
        stderr: String,
    },
    /// A file operation failed.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
    /// Entering a network namespace failed.
    #[error("cannot enter network namespace {ns}: {source}")]
    Setns {
        /// The namespace.
        ns: String,
        /// OS error.
        #[source]
        source: std::io::Error,
    },
}

fn show(program: &str, args: &[&str]) -> String {
    let mut s = program.to_owned();
    for a in args {
        s.push(' ');
        s.push_str(a);
    }
    s
}

/// Runs `program args`, failing with its stderr when it exits non-zero.
///
/// # Errors
/// [`SysError::Spawn`] or [`SysError::Failed`].
pub fn run(program: &str, args: &[&str]) -> Result<String, SysError> {
    run_env(program, args, &[])
}

/// [`run`] with `env` added to the command's environment.
///
/// # Errors
/// [`SysError::Spawn`] or [`SysError::Failed`].
pub fn run_env(program: &str, args: &[&str], env: &[(String, String)]) -> Result<String, SysError> {
    let out = Command::new(program)
        .args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .output()
        .map_err(|source| SysError::Spawn {
            command: show(program, args),
            source,
        })?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        Err(SysError::Failed {
            command: show(program, args),
            stderr: if stderr.is_empty() {
                format!("exit status {}", out.status)
            } else {
                stderr
            },
        })
    }
}

/// Runs `ip args`.
///
/// # Errors
/// [`SysError`] naming the command.
pub fn ip(args: &[&str]) -> Result<String, SysError> {
    run("ip", args)
}

/// Runs `ip -n ns args` (a command inside a namespace).
///
/// # Errors
/// [`SysError`] naming the command.
pub fn ip_in(ns: &str, args: &[&str]) -> Result<String, SysError> {
    let mut all = vec!["-n", ns];
    all.extend_from_slice(args);
    run("ip", &all)
}

/// Network namespaces present, by name.
#[must_use]
pub fn list_netns() -> BTreeSet<String> {
    fs::read_dir(NETNS_DIR)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter_map(|e| e.file_name().into_string().ok())
                .collect()
        })
        .unwrap_or_default()
}

/// Whether namespace `ns` exists.
#[must_use]
pub fn netns_exists(ns: &str) -> bool {
    Path::new(NETNS_DIR).join(ns).exists()
}

/// Deletes namespace `ns` if present (its interfaces go with it).
///
/// # Errors
/// [`SysError`] when `ip netns delete` fails on an existing namespace.
pub fn delete_netns(ns: &str) -> Result<(), SysError> {
    if !netns_exists(ns) {
        return Ok(());
    }
    ip(&["netns", "delete", ns]).map(|_| ())
}

/// Whether a link called `name` exists in the runner's own namespace.
#[must_use]
pub fn host_link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

/// The inode of a namespace handle: what `/proc/<pid>/ns/net` links to.
#[must_use]
pub fn netns_inode(ns: &str) -> Option<u64> {
    fs::metadata(Path::new(NETNS_DIR).join(ns))
        .ok()
        .map(|m| m.ino())
}

/// Runs `f` on a thread that has entered namespace `ns` (namespaces are
/// per thread, so the runner's own thread never moves).
///
/// # Errors
/// [`SysError::Setns`] when the namespace cannot be entered.
pub fn in_netns<T, F>(ns: &str, f: F) -> Result<T, SysError>
where
    T: Send + 'static,
    F: FnOnce() -> T + Send + 'static,
{
    let path = Path::new(NETNS_DIR).join(ns);
    let file = fs::File::open(&path).map_err(|source| SysError::Setns {
        ns: ns.to_owned(),
        source,
    })?;
    let name = ns.to_owned();
    std::thread::spawn(move || {
        use std::os::fd::AsRawFd as _;
        // SAFETY: setns(2) on an open namespace fd only changes this thread.
        #[allow(unsafe_code, reason = "setns(2) has no safe wrapper in std")]
        let r = unsafe { libc::setns(file.as_raw_fd(), libc::CLONE_NEWNET) };
        if r != 0 {
            return Err(SysError::Setns {
                ns: name,
                source: std::io::Error::last_os_error(),
            });
        }
        Ok(f())
    })
    .join()
    .unwrap_or_else(|_| {
        Err(SysError::Setns {
            ns: ns.to_owned(),
            source: std::io::Error::other("thread panicked"),
        })
    })
}

/// Whether something accepts TCP connections on `addr` inside `ns`.
#[must_use]
pub fn tcp_open(ns: &str, addr: SocketAddr) -> bool {
    in_netns(ns, move || {
        TcpStream::connect_timeout(&addr, Duration::from_millis(300)).is_ok()
    })
    .unwrap_or(false)
}

// ===== processes =====

/// A process's start time (clock ticks since boot, `/proc/<pid>/stat`
/// field 22): with the pid, it identifies the process across pid reuse.
#[must_use]
pub fn start_time(pid: u32) -> Option<u64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name is in parentheses and may contain spaces.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split(' ').collect();
    // rest starts at field 3 (state); field 22 is index 19.
    if fields.first() == Some(&"Z") {
        return None;
    }
    fields.get(19)?.parse().ok()
}

/// Whether the process `pid` started at `started` is still running (not a
/// zombie, not a recycled pid).
#[must_use]
pub fn alive(pid: u32, started: u64) -> bool {
    start_time(pid) == Some(started)
}

/// Sends `signal` to process group `pgid` (ignoring "no such process").
pub fn kill_group(pgid: u32, signal: i32) {
    let Ok(pgid) = i32::try_from(pgid) else {
        return;
    };
    if pgid <= 1 {
        return;
    }
    // SAFETY: kill(2) with a negative pid signals a process group.
    #[allow(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    unsafe {
        libc::kill(-pgid, signal);
    }
}

/// Sends `signal` to process `pid`.
pub fn kill_pid(pid: u32, signal: i32) {
    let Ok(pid) = i32::try_from(pid) else {
        return;
    };
    if pid <= 1 {
        return;
    }
    // SAFETY: kill(2) on one pid.
    #[allow(unsafe_code, reason = "kill(2) has no safe wrapper in std")]
    unsafe {
        libc::kill(pid, signal);
    }
}

/// The process group of `pid`.
#[must_use]
pub fn pgid_of(pid: u32) -> Option<u32> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let rest = &stat[stat.rfind(')')? + 2..];
    rest.split(' ').nth(2)?.parse().ok()
}

/// The runner itself and its ancestors: never signalled, even when a
/// user's shell happens to sit inside a lab namespace.
fn protected() -> BTreeSet<u32> {
    let mut set = BTreeSet::new();
    let mut pid = std::process::id();
    while pid > 1 && set.insert(pid) {
        let Some(parent) = fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = s[s.rfind(')')? + 2..].to_owned();
                rest.split(' ').nth(1)?.parse().ok()
            })
        else {
            break;
        };
        pid = parent;
    }
    set
}

/// Processes that belong to a lab: those carrying `marker=value` in their
/// environment (everything the runner starts) and those living in one of
/// the namespaces `inodes` (whatever they forked, sshd sessions included).
#[must_use]
pub fn lab_processes(marker: &str, value: &str, inodes: &BTreeSet<u64>) -> BTreeSet<u32> {
    let needle = format!("{marker}={value}");
    let me = protected();
    let mut found = BTreeSet::new();
    let Ok(dir) = fs::read_dir("/proc") else {
        return found;
    };
    for entry in dir.filter_map(Result::ok) {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if me.contains(&pid) {
            continue;
        }
        let in_ns = fs::metadata(entry.path().join("ns/net"))
            .map(|m| inodes.contains(&m.ino()))
            .unwrap_or(false);
        let marked = || {
            fs::read(entry.path().join("environ"))
                .map(|env| env.split(|b| *b == 0).any(|kv| kv == needle.as_bytes()))
                .unwrap_or(false)
        };
        if in_ns || marked() {
            found.insert(pid);
        }
    }
    found
}

/// Stops `pids`: SIGTERM to each one's process group and itself, up to
/// `grace` to exit, then SIGKILL. Returns the ones that survived.
#[must_use]
pub fn stop_all(pids: &BTreeSet<u32>, grace: Duration) -> BTreeSet<u32> {
    let groups: BTreeSet<u32> = pids.iter().filter_map(|p| pgid_of(*p)).collect();
    let me = protected();
    for g in groups.iter().filter(|g| !me.contains(g)) {
        kill_group(*g, libc::SIGTERM);
    }
    for p in pids {
        kill_pid(*p, libc::SIGTERM);
    }
    let deadline = Instant::now() + grace;
    let running = |set: &BTreeSet<u32>| -> BTreeSet<u32> {
        set.iter()
            .copied()
            .filter(|p| start_time(*p).is_some())
            .collect()
    };
    while Instant::now() < deadline && !running(pids).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    let left = running(pids);
    for p in &left {
        if let Some(g) = pgid_of(*p).filter(|g| !me.contains(g)) {
            kill_group(g, libc::SIGKILL);
        }
        kill_pid(*p, libc::SIGKILL);
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while Instant::now() < deadline && !running(&left).is_empty() {
        std::thread::sleep(Duration::from_millis(20));
    }
    running(&left)
}

/// Starts `program` as the leader of a new process group, inside namespace
/// `ns` when given (through `nsenter --net`, which keeps the mount
/// namespace, so bpffs and the project tree stay visible), with stdin
/// closed, stdout and stderr appended to `log`, and `env` added.
///
/// # Errors
/// [`SysError`] when the log cannot be opened or the process not started.
pub fn spawn<S: AsRef<OsStr>>(
    ns: Option<&str>,
    program: &Path,
    args: &[S],
    env: &[(String, String)],
    log: &Path,
) -> Result<(u32, u64, std::process::Child), SysError> {
    let open = || {
        fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .map_err(|source| SysError::Io {
                path: log.to_owned(),
                source,
            })
    };
    let mut cmd = match ns {
        Some(ns) => {
            let mut c = Command::new("nsenter");
            c.arg(format!("--net={NETNS_DIR}/{ns}"))
                .arg("--")
                .arg(program);
            c
        }
        None => Command::new(program),
    };
    cmd.args(args)
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(open()?)
        .stderr(open()?)
        .process_group(0);
    let child = cmd.spawn().map_err(|source| SysError::Spawn {
        command: format!("{} (in {})", program.display(), ns.unwrap_or("host")),
        source,
    })?;
    let pid = child.id();
    let started = start_time(pid).unwrap_or(0);
    // The child outlives the runner: the handle is only used to learn its
    // exit status while the runner waits for it to become ready.
    Ok((pid, started, child))
}

/// Reaps exited children of the runner (processes it started and that
/// died while it still runs), so their pids read as gone.
pub fn reap() {
    loop {
        let mut status = 0;
        // SAFETY: waitpid(2) with WNOHANG on any child.
        #[allow(unsafe_code, reason = "waitpid(2) has no safe wrapper in std")]
        let r = unsafe { libc::waitpid(-1, &raw mut status, libc::WNOHANG) };
        if r <= 0 {
            break;
        }
    }
}

/// Removes a bpffs directory tree (pins of a lab's agents).
///
/// # Errors
/// [`SysError::Io`] when something under it cannot be removed.
pub fn remove_tree(path: &Path) -> Result<(), SysError> {
    match fs::remove_dir_all(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(source) => Err(SysError::Io {
            path: path.to_owned(),
            source,
        }),
    }
}

/// Takes an exclusive lock on `path` (created if needed), waiting for
/// another holder; held until the returned file is dropped. Serialises
/// `up` and `down` of one lab between concurrent runners.
///
/// # Errors
/// [`SysError::Io`] when the file cannot be opened or locked.
pub fn lock(path: &Path) -> Result<fs::File, SysError> {
    use std::os::fd::AsRawFd as _;
    let io = |source| SysError::Io {
        path: path.to_owned(),
        source,
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io)?;
    }
    let file = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(path)
        .map_err(io)?;
    // SAFETY: flock(2) on an fd we own.
    #[allow(unsafe_code, reason = "flock(2) has no safe wrapper in std")]
    let busy = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } != 0;
    if busy {
        tracing::warn!(lock = %path.display(), "another rampart-lab is working on this lab; waiting");
        // SAFETY: as above, blocking.
        #[allow(unsafe_code, reason = "flock(2) has no safe wrapper in std")]
        let r = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) };
        if r != 0 {
            return Err(io(std::io::Error::last_os_error()));
        }
    }
    Ok(file)
}

/// `GET path` on `addr` from inside `ns` (HTTP/1.0, `timeout` per step):
/// the status code and body, or `None` when nothing answers properly.
#[must_use]
pub fn http_get(
    ns: &str,
    addr: SocketAddr,
    path: &str,
    timeout: Duration,
) -> Option<(u16, String)> {
    use std::io::{Read as _, Write as _};
    let request = format!("GET {path} HTTP/1.0\r\nHost: {addr}\r\n\r\n");
    in_netns(ns, move || {
        let mut s = std::net::TcpStream::connect_timeout(&addr, timeout).ok()?;
        s.set_read_timeout(Some(timeout)).ok()?;
        s.write_all(request.as_bytes()).ok()?;
        let mut out = String::new();
        s.read_to_string(&mut out).ok()?;
        let (head, body) = out.split_once("\r\n\r\n")?;
        let code = head.split_whitespace().nth(1)?.parse().ok()?;
        Some((code, body.to_owned()))
    })
    .ok()
    .flatten()
}
