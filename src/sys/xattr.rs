//! Safe wrappers over the extended-attribute calls, which `nix` does not
//! cover.
//!
//! Non-regular files (devices, fifos, symlinks) cannot be opened to use the
//! f* calls, so they are named as `/proc/self/fd/<dirfd>/<name>`: the
//! directory is the inode we resolved, and the l* calls do not follow the
//! last component.

use std::ffi::{CString, OsStr};
use std::os::fd::{AsRawFd, BorrowedFd};
use std::os::unix::ffi::OsStrExt;

use nix::errno::Errno;

use crate::sys::{self, SysError};

fn cstr(what: &str, bytes: &[u8]) -> Result<CString, SysError> {
    CString::new(bytes).map_err(|_| sys::err("xattr", what, "NUL in name")(Errno::EINVAL))
}

/// The path naming `name` inside the directory open as `dir`.
pub fn at_path(dir: BorrowedFd<'_>, name: &OsStr) -> Vec<u8> {
    let mut p = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    p.extend_from_slice(name.as_bytes());
    p
}

pub fn fsetxattr(fd: BorrowedFd<'_>, name: &str, value: &[u8], what: &str) -> Result<(), SysError> {
    let n = cstr(what, name.as_bytes())?;
    // SAFETY: valid fd; name is NUL-terminated; value pointer/length describe a live slice.
    let r = unsafe { libc::fsetxattr(fd.as_raw_fd(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(r).map(drop).map_err(sys::err("fsetxattr", what, name))
}

pub fn lsetxattr(path: &[u8], name: &str, value: &[u8], what: &str) -> Result<(), SysError> {
    let (p, n) = (cstr(what, path)?, cstr(what, name.as_bytes())?);
    // SAFETY: both strings are NUL-terminated; value describes a live slice.
    let r = unsafe { libc::lsetxattr(p.as_ptr(), n.as_ptr(), value.as_ptr().cast(), value.len(), 0) };
    Errno::result(r).map(drop).map_err(sys::err("lsetxattr", what, name))
}

/// The names of the xattrs of `path` (not following a last symlink).
pub fn llistxattr(path: &[u8], what: &str) -> Result<Vec<String>, SysError> {
    let p = cstr(what, path)?;
    let mut buf = vec![0u8; 1024];
    loop {
        // SAFETY: the buffer pointer/length describe `buf`.
        let r = unsafe { libc::llistxattr(p.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(r) {
            Ok(n) => {
                buf.truncate(n as usize);
                break;
            }
            Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 4, 0),
            Err(Errno::ENOTSUP) => return Ok(Vec::new()),
            Err(e) => return Err(sys::err("llistxattr", what, "")(e)),
        }
    }
    Ok(buf.split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| String::from_utf8_lossy(s).into_owned()).collect())
}

/// The value of xattr `name` of `path`, `None` if it has none.
pub fn lgetxattr(path: &[u8], name: &str, what: &str) -> Result<Option<Vec<u8>>, SysError> {
    let (p, n) = (cstr(what, path)?, cstr(what, name.as_bytes())?);
    let mut buf = vec![0u8; 256];
    loop {
        // SAFETY: strings are NUL-terminated; the buffer pointer/length describe `buf`.
        let r = unsafe { libc::lgetxattr(p.as_ptr(), n.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
        match Errno::result(r) {
            Ok(len) => {
                buf.truncate(len as usize);
                return Ok(Some(buf));
            }
            Err(Errno::ERANGE) if buf.len() < (1 << 20) => buf.resize(buf.len() * 8, 0),
            Err(Errno::ENODATA | Errno::ENOTSUP) => return Ok(None),
            Err(e) => return Err(sys::err("lgetxattr", what, name)(e)),
        }
    }
}
