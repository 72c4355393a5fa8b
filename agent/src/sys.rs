//! Raw `bpf(2)` calls that aya 0.14 does not expose: batched map updates
//! (a 64k-slot port array is one syscall instead of 65,536) and byte-level
//! element access for maps whose layout the agent knows better than aya's
//! typed wrappers (LPM keys with a packed prefix length).

#![allow(unsafe_code, reason = "this module is the agent's syscall boundary")]

use std::{
    io,
    os::fd::{AsRawFd, BorrowedFd},
};

use thiserror::Error;

const BPF_MAP_LOOKUP_ELEM: libc::c_long = 1;
const BPF_MAP_UPDATE_ELEM: libc::c_long = 2;
const BPF_MAP_DELETE_ELEM: libc::c_long = 3;
const BPF_MAP_GET_NEXT_KEY: libc::c_long = 4;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_long = 15;
const BPF_MAP_UPDATE_BATCH: libc::c_long = 26;

/// A failed `bpf(2)` call.
#[derive(Debug, Error)]
pub enum SysError {
    /// The kernel refused the command.
    #[error("bpf({command}) failed: {source}")]
    Bpf {
        /// Which command.
        command: &'static str,
        /// errno.
        #[source]
        source: io::Error,
    },
}

#[repr(C)]
#[derive(Default)]
struct ElemAttr {
    map_fd: u32,
    _pad: u32,
    key: u64,
    value: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct BatchAttr {
    in_batch: u64,
    out_batch: u64,
    keys: u64,
    values: u64,
    count: u32,
    map_fd: u32,
    elem_flags: u64,
    flags: u64,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

fn bpf<T>(cmd: libc::c_long, attr: &mut T, name: &'static str) -> Result<libc::c_long, SysError> {
    // SAFETY: `attr` is a properly laid out bpf_attr prefix; the kernel reads
    // at most size_of::<T>() bytes and any pointers in it reference live
    // buffers owned by the caller for the duration of the call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            cmd,
            std::ptr::from_mut(attr).cast::<libc::c_void>(),
            std::mem::size_of::<T>(),
        )
    };
    if r < 0 {
        Err(SysError::Bpf {
            command: name,
            source: io::Error::last_os_error(),
        })
    } else {
        Ok(r)
    }
}

fn fd_u32(fd: BorrowedFd<'_>) -> u32 {
    u32::try_from(fd.as_raw_fd()).unwrap_or(u32::MAX)
}

/// Writes one element (`flags` = `BPF_ANY`, 0, in the agent).
pub fn update_elem(fd: BorrowedFd<'_>, key: &[u8], value: &[u8]) -> Result<(), SysError> {
    let mut a = ElemAttr {
        map_fd: fd_u32(fd),
        key: key.as_ptr() as u64,
        value: value.as_ptr() as u64,
        ..Default::default()
    };
    bpf(BPF_MAP_UPDATE_ELEM, &mut a, "MAP_UPDATE_ELEM").map(|_| ())
}

/// Deletes one element; a missing key is not an error.
pub fn delete_elem(fd: BorrowedFd<'_>, key: &[u8]) -> Result<(), SysError> {
    let mut a = ElemAttr {
        map_fd: fd_u32(fd),
        key: key.as_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_DELETE_ELEM, &mut a, "MAP_DELETE_ELEM") {
        Err(SysError::Bpf { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => Ok(()),
        r => r.map(|_| ()),
    }
}

/// Reads one element into `value`; returns false if the key is absent.
pub fn lookup_elem(fd: BorrowedFd<'_>, key: &[u8], value: &mut [u8]) -> Result<bool, SysError> {
    let mut a = ElemAttr {
        map_fd: fd_u32(fd),
        key: key.as_ptr() as u64,
        value: value.as_mut_ptr() as u64,
        ..Default::default()
    };
    match bpf(BPF_MAP_LOOKUP_ELEM, &mut a, "MAP_LOOKUP_ELEM") {
        Ok(_) => Ok(true),
        Err(SysError::Bpf { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
            Ok(false)
        }
        Err(e) => Err(e),
    }
}

/// Every key of a map (`key_size` bytes each). Keys deleted concurrently may
/// be skipped; the agent only walks maps it alone writes, or for statistics.
pub fn keys(fd: BorrowedFd<'_>, key_size: usize) -> Result<Vec<Vec<u8>>, SysError> {
    let mut out = Vec::new();
    let mut cur: Option<Vec<u8>> = None;
    loop {
        let mut next = vec![0u8; key_size];
        let mut a = ElemAttr {
            map_fd: fd_u32(fd),
            key: cur.as_ref().map_or(0, |k| k.as_ptr() as u64),
            value: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut a, "MAP_GET_NEXT_KEY") {
            Ok(_) => {}
            Err(SysError::Bpf { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(out);
            }
            Err(e) => return Err(e),
        }
        out.push(next.clone());
        cur = Some(next);
    }
}

/// Counts the keys of a map without keeping them.
pub fn count_keys(fd: BorrowedFd<'_>, key_size: usize) -> Result<u64, SysError> {
    let mut n = 0u64;
    let mut cur = vec![0u8; key_size];
    let mut first = true;
    loop {
        let mut next = vec![0u8; key_size];
        let mut a = ElemAttr {
            map_fd: fd_u32(fd),
            key: if first { 0 } else { cur.as_ptr() as u64 },
            value: next.as_mut_ptr() as u64,
            ..Default::default()
        };
        match bpf(BPF_MAP_GET_NEXT_KEY, &mut a, "MAP_GET_NEXT_KEY") {
            Ok(_) => {}
            Err(SysError::Bpf { source, .. }) if source.raw_os_error() == Some(libc::ENOENT) => {
                return Ok(n);
            }
            Err(e) => return Err(e),
        }
        n += 1;
        first = false;
        cur = next;
    }
}

/// Writes `count` elements in one call: `keys` and `values` are the
/// concatenated raw keys and values. Falls back to one call per element on
/// kernels without batch support for the map type.
pub fn update_batch(
    fd: BorrowedFd<'_>,
    keys: &[u8],
    values: &[u8],
    count: usize,
) -> Result<(), SysError> {
    if count == 0 {
        return Ok(());
    }
    let mut done = 0usize;
    let ks = keys.len() / count;
    let vs = values.len() / count;
    while done < count {
        let mut n = u32::try_from(count - done).unwrap_or(u32::MAX);
        let mut a = BatchAttr {
            keys: keys[done * ks..].as_ptr() as u64,
            values: values[done * vs..].as_ptr() as u64,
            count: n,
            map_fd: fd_u32(fd),
            ..Default::default()
        };
        let r = bpf(BPF_MAP_UPDATE_BATCH, &mut a, "MAP_UPDATE_BATCH");
        n = a.count;
        match r {
            Ok(_) => done += n as usize,
            Err(SysError::Bpf { source, .. })
                if matches!(
                    source.raw_os_error(),
                    Some(libc::EINVAL | libc::EOPNOTSUPP | 524)
                ) =>
            {
                for i in done..count {
                    update_elem(
                        fd,
                        &keys[i * ks..(i + 1) * ks],
                        &values[i * vs..(i + 1) * vs],
                    )?;
                }
                return Ok(());
            }
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// `bpf_link_info` prefix that tells which interface a link is attached to.
#[repr(C)]
#[derive(Default)]
struct LinkInfoRaw {
    link_type: u32,
    id: u32,
    prog_id: u32,
    _pad: u32,
    // union: for xdp and tcx the ifindex comes first.
    ifindex: u32,
    attach_type: u32,
    _rest: [u64; 6],
}

/// Interface index a (XDP or TCX) link is attached to; 0 means the link is
/// defunct (its interface went away).
pub fn link_ifindex(fd: BorrowedFd<'_>) -> Result<u32, SysError> {
    let mut info = LinkInfoRaw::default();
    let mut a = InfoAttr {
        bpf_fd: fd_u32(fd),
        info_len: u32::try_from(std::mem::size_of::<LinkInfoRaw>()).unwrap_or(0),
        info: std::ptr::from_mut(&mut info) as u64,
    };
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a, "OBJ_GET_INFO_BY_FD")?;
    Ok(info.ifindex)
}

/// Views a plain `#[repr(C)]` value as bytes.
pub fn bytes_of<T: bytemuck::Pod>(v: &T) -> &[u8] {
    bytemuck::bytes_of(v)
}

/// Views a slice of plain values as bytes.
pub fn bytes_of_slice<T: bytemuck::Pod>(v: &[T]) -> &[u8] {
    bytemuck::cast_slice(v)
}

/// Reads a plain value from the start of `b` (which must be long enough;
/// ring-buffer records carry trailing padding).
pub fn from_bytes<T: bytemuck::Pod>(b: &[u8]) -> T {
    bytemuck::pod_read_unaligned(&b[..std::mem::size_of::<T>()])
}

/// Returns freed heap memory to the kernel. A policy apply allocates tens of
/// megabytes (rule bitmaps) that are freed once the maps are written, but
/// glibc keeps freed pages in the process; trimming makes the agent's RSS
/// what it holds, not what its largest apply needed.
pub fn release_free_heap() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only releases free memory; no pointers involved.
    #[allow(unsafe_code, reason = "malloc_trim(3)")]
    unsafe {
        libc::malloc_trim(0);
    }
}
