//! bpffs pins, shared by the firewall and the load balancer: where pins
//! live, making sure they land on the host's bpf filesystem, and opening
//! pinned objects.
//!
//! Pins are what keeps enforcement alive when the agent exits or crashes,
//! so a bpffs that dies with the agent is refused: `ip netns exec` runs the
//! agent in a private mount namespace with a fresh `/sys`, where mounting
//! bpffs makes a new instance that vanishes on exit (and with it every
//! program after a `kill -9`). `--netns` enters only the network namespace
//! and keeps the host's bpffs.

use std::{
    ffi::CString,
    io,
    os::fd::{AsFd, FromRawFd, OwnedFd},
    os::unix::fs::MetadataExt,
    path::{Path, PathBuf},
    sync::atomic::{AtomicBool, Ordering},
};

use thiserror::Error;
use tracing::{info, warn};

use crate::sys;

/// Magic number of bpffs (`statfs.f_type`).
const BPF_FS_MAGIC: i64 = 0xCAFE_4A11;

/// Pin failures.
#[derive(Debug, Error)]
pub enum PinError {
    /// The pin root is not on a bpffs mount.
    #[error("{path} is not on a bpf filesystem (mount -t bpf bpf /sys/fs/bpf)")]
    NotBpffs {
        /// Path checked.
        path: String,
    },
    /// The pin root's bpffs is not the one PID 1 sees.
    #[error(
        "{path} is on a bpf filesystem private to this mount namespace (as under `ip netns exec`): \
         pins would vanish when the agent exits and enforcement would stop after a crash; \
         start the agent with `--netns NAME` instead, or pass --allow-private-bpffs"
    )]
    PrivateBpffs {
        /// Path checked.
        path: String,
    },
    /// Filesystem error under the pin root.
    #[error("{path}: {source}")]
    Io {
        /// Path.
        path: String,
        /// Error.
        #[source]
        source: io::Error,
    },
}

static ALLOW_PRIVATE: AtomicBool = AtomicBool::new(false);

/// Accepts a private bpffs from now on (`--allow-private-bpffs`), with a
/// warning each time one is used.
pub fn allow_private_bpffs(allow: bool) {
    ALLOW_PRIVATE.store(allow, Ordering::Relaxed);
}

/// The device of the filesystem holding `path` as process `pid` sees it
/// (through `/proc/PID/root`) and as this process sees it, for the deepest
/// ancestor of `path` that exists in `pid`'s view.
fn devices(pid: &str, path: &Path) -> Option<(u64, u64)> {
    let other_root = PathBuf::from(format!("/proc/{pid}/root"));
    let rel = path.strip_prefix("/").ok()?;
    let mut p = rel;
    loop {
        if let Ok(h) = std::fs::metadata(other_root.join(p)) {
            let own = std::fs::metadata(Path::new("/").join(p)).ok()?;
            return Some((h.dev(), own.dev()));
        }
        p = p.parent()?;
    }
}

fn mount_namespace(pid: &str) -> Option<PathBuf> {
    std::fs::read_link(format!("/proc/{pid}/ns/mnt")).ok()
}

/// Fails if `path` (on bpffs) is not the bpffs that PID 1 (or, where PID
/// 1 cannot be inspected, the parent process) sees at the same place:
/// `ip netns exec` starts the agent in a new mount namespace while its
/// parent stays in the host's. In the same namespace it passes.
pub fn check_host_bpffs(path: &Path) -> Result<(), PinError> {
    let Some(own) = mount_namespace("self") else {
        return Ok(());
    };
    let parent = std::os::unix::process::parent_id().to_string();
    let Some((pid, _)) = ["1", parent.as_str()]
        .into_iter()
        .find_map(|pid| Some((pid, mount_namespace(pid)?)).filter(|(_, ns)| *ns != own))
    else {
        return Ok(());
    };
    match devices(pid, path) {
        Some((host, mine)) if host != mine => {
            let err = PinError::PrivateBpffs {
                path: path.display().to_string(),
            };
            if ALLOW_PRIVATE.load(Ordering::Relaxed) {
                warn!(error = %err, "using a private bpffs (--allow-private-bpffs): enforcement ends with this process");
                Ok(())
            } else {
                Err(err)
            }
        }
        _ => Ok(()),
    }
}

/// Where pins live.
#[derive(Clone, Debug)]
pub struct PinLayout {
    /// Root directory on bpffs.
    pub root: PathBuf,
}

impl PinLayout {
    /// Directory of one interface.
    pub fn dir(&self, interface: &str) -> PathBuf {
        self.root.join(interface)
    }

    /// Interfaces that have a pin directory.
    pub fn interfaces(&self) -> Vec<String> {
        let Ok(rd) = std::fs::read_dir(&self.root) else {
            return Vec::new();
        };
        let mut v: Vec<String> = rd
            .filter_map(Result::ok)
            .filter(|e| e.path().is_dir())
            .filter_map(|e| e.file_name().into_string().ok())
            .collect();
        v.sort();
        v
    }
}

fn is_bpffs(path: &Path) -> bool {
    let Ok(c) = CString::new(path.as_os_str().as_encoded_bytes()) else {
        return false;
    };
    // SAFETY: statfs writes into the zeroed struct we own.
    #[allow(unsafe_code, reason = "statfs(2)")]
    let (r, st) = unsafe {
        let mut st: libc::statfs = std::mem::zeroed();
        (libc::statfs(c.as_ptr(), &raw mut st), st)
    };
    r == 0 && st.f_type == BPF_FS_MAGIC
}

/// Mounts bpffs on `/sys/fs/bpf` if nothing is mounted there (hosts without
/// systemd's mount unit; the service unit orders itself after it).
fn mount_default_bpffs() {
    let target = Path::new("/sys/fs/bpf");
    if is_bpffs(target) || !target.exists() {
        return;
    }
    // SAFETY: constant C strings; mount(2) has no memory preconditions.
    #[allow(unsafe_code, reason = "mount(2)")]
    let r = unsafe {
        libc::mount(
            c"bpf".as_ptr(),
            c"/sys/fs/bpf".as_ptr(),
            c"bpf".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if r == 0 {
        info!("mounted bpffs on /sys/fs/bpf");
    } else {
        warn!(error = %io::Error::last_os_error(), "cannot mount bpffs on /sys/fs/bpf");
    }
}

/// Fails unless `path` is on the host's bpffs; creates it (mounting bpffs
/// on `/sys/fs/bpf` first when the path is below it and nothing is
/// mounted).
pub fn ensure_bpffs(path: &Path) -> Result<(), PinError> {
    if path.starts_with("/sys/fs/bpf") {
        mount_default_bpffs();
    }
    std::fs::create_dir_all(path).map_err(|source| PinError::Io {
        path: path.display().to_string(),
        source,
    })?;
    if !is_bpffs(path) {
        return Err(PinError::NotBpffs {
            path: path.display().to_string(),
        });
    }
    check_host_bpffs(path)
}

/// Opens a pinned object (BPF_OBJ_GET).
fn obj_get(path: &Path) -> Option<OwnedFd> {
    #[repr(C)]
    struct Attr {
        pathname: u64,
        bpf_fd: u32,
        file_flags: u32,
    }
    let c = CString::new(path.as_os_str().as_encoded_bytes()).ok()?;
    let mut a = Attr {
        pathname: c.as_ptr() as u64,
        bpf_fd: 0,
        file_flags: 0,
    };
    // SAFETY: attr references a live C string.
    #[allow(unsafe_code, reason = "bpf(BPF_OBJ_GET)")]
    let fd = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            7,
            std::ptr::from_mut(&mut a),
            std::mem::size_of::<Attr>(),
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: the kernel returned a new fd we now own.
    #[allow(unsafe_code, reason = "fd from the kernel")]
    Some(unsafe { OwnedFd::from_raw_fd(i32::try_from(fd).ok()?) })
}

/// True if a pinned link exists and is still attached to `ifindex`.
pub fn live_link(path: &Path, ifindex: u32) -> bool {
    let Some(fd) = obj_get(path) else {
        return false;
    };
    matches!(sys::link_ifindex(fd.as_fd()), Ok(i) if i == ifindex)
}
