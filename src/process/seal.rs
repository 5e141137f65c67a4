//! A sealed image of the strata binary (CVE-2019-5736 class).
//!
//! strata forks its container processes without re-executing itself, so
//! init (until it execs the user's process) and exec's child run the strata
//! binary, and so does anything in the container that executes
//! `/proc/self/exe` through them. If a container process could open the
//! `/proc/<pid>/exe` of such a process for writing, it would overwrite the
//! host's binary, and the next `strata` that root runs would be its code.
//!
//! So `create`, `run` and `exec`, the commands that make processes a
//! container can see, first make sure that the file they run from cannot
//! be written through any path. If it can, they re-execute themselves once
//! from a sealed image of it:
//!
//! 1. a read-only overlayfs of the binary's directory that is mounted
//!    nowhere (`fsmount` without `move_mount`): no copy is made and the
//!    pages are the host file's own; it needs CAP_SYS_ADMIN;
//! 2. otherwise, a memfd copy carrying the write, grow, shrink and seal
//!    seals.
//!
//! Sealed is checked, never assumed: a memfd with all four seals, or a file
//! on a read-only mount. A binary installed on a read-only filesystem is
//! already sealed and costs nothing. The image is checked before the
//! re-exec, so the re-executed process finds itself sealed and goes on.

use std::ffi::{CString, OsStr};
use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{FcntlArg, OFlag, SealFlag, fcntl, open, openat};
use nix::sys::memfd::{MFdFlags, memfd_create};
use nix::sys::stat::Mode;
use nix::sys::statvfs::{FsFlags, fstatvfs};

use crate::sys::mount_api::FsContext;
use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum SealError {
    #[error("seal the strata binary: {0}")]
    Sys(#[from] SysError),
    #[error("seal the strata binary: {0}")]
    Other(String),
}

/// The seals that make a memfd immutable.
fn all_seals() -> SealFlag {
    SealFlag::F_SEAL_SEAL | SealFlag::F_SEAL_SHRINK | SealFlag::F_SEAL_GROW | SealFlag::F_SEAL_WRITE
}

/// fsmount attributes: read-only, and nothing on it acts as a device or setuid.
const IMAGE_ATTRS: u32 = 0x1 | 0x2 | 0x4; // MOUNT_ATTR_RDONLY | NOSUID | NODEV

/// How the running binary is protected.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Sealed {
    /// A memfd with every seal.
    Memfd,
    /// A file on a read-only mount (ours, or the host's own).
    ReadOnlyMount,
}

/// Whether the file behind `fd` (named `what` in errors) can never be
/// opened for writing.
pub fn sealed(fd: BorrowedFd<'_>, what: &str) -> Result<Option<Sealed>, SysError> {
    // Anything but a memfd answers F_GET_SEALS with EINVAL: not sealed that way.
    if let Ok(bits) = fcntl(fd, FcntlArg::F_GET_SEALS)
        && SealFlag::from_bits_truncate(bits).contains(all_seals())
    {
        return Ok(Some(Sealed::Memfd));
    }
    let st = fstatvfs(fd).map_err(sys::err("fstatvfs", what, ""))?;
    Ok(st.flags().contains(FsFlags::ST_RDONLY).then_some(Sealed::ReadOnlyMount))
}

/// Returns when the running binary is sealed; otherwise re-executes the
/// process from a sealed image (and returns only on error).
pub fn ensure_sealed() -> Result<(), SealError> {
    let exe = open("/proc/self/exe", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
        "open",
        "/proc/self/exe",
        "O_RDONLY",
    ))?;
    if sealed(exe.as_fd(), "/proc/self/exe")?.is_some() {
        return Ok(());
    }
    let image = match overlay_image() {
        Ok(fd) => fd,
        // Without CAP_SYS_ADMIN (or overlayfs), or a binary that was
        // replaced on disk: copy the one we run.
        Err(_) => memfd_image(exe)?,
    };
    if sealed(image.as_fd(), "the sealed image")?.is_none() {
        return Err(SealError::Other("the image made of the binary is still writable".into()));
    }
    reexec(image.as_fd())
}

/// A read-only overlay of the binary's directory (with an empty second
/// layer, since overlayfs wants two lower layers without an upper one),
/// attached nowhere; returns an O_PATH fd of the binary in it.
pub fn overlay_image() -> Result<OwnedFd, SealError> {
    let path = std::fs::read_link("/proc/self/exe").map_err(sys::io_err("readlink", Path::new("/proc/self/exe")))?;
    if path.as_os_str().as_bytes().ends_with(b" (deleted)") {
        return Err(SealError::Other(format!("{}: replaced on disk since it started", path.display())));
    }
    let (Some(dir), Some(name)) = (path.parent(), path.file_name()) else {
        return Err(SealError::Other(format!("{}: no directory", path.display())));
    };
    let dir_fd = open(dir, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
        "open",
        dir.display(),
        "O_PATH|O_DIRECTORY",
    ))?;
    let empty = FsContext::open("tmpfs")?;
    empty.set_string("size", b"4k")?;
    empty.create()?;
    let empty_mnt = empty.mount_detached(IMAGE_ATTRS)?;
    let overlay = FsContext::open("overlay")?;
    // Through fd paths: no escaping of ':' or ',' in the directory's name,
    // and the directory is the one opened above.
    let lower = format!("{}:{}", sys::fd_path(&dir_fd).display(), sys::fd_path(&empty_mnt).display());
    overlay.set_string("lowerdir", lower.as_bytes())?;
    overlay.create()?;
    let mnt = overlay.mount_detached(IMAGE_ATTRS)?;
    let file = openat(mnt.as_fd(), name, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
        "openat",
        Path::new(name).display(),
        "O_PATH (sealed overlay)",
    ))?;
    Ok(file)
}

/// A memfd holding a copy of `exe`, with every seal.
pub fn memfd_image(exe: OwnedFd) -> Result<OwnedFd, SealError> {
    // MFD_EXEC (6.3+) keeps kernels with vm.memfd_noexec from refusing the exec.
    let mfd_exec = MFdFlags::from_bits_retain(0x10);
    let base = MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING;
    let name = c"strata-sealed";
    let mfd = match memfd_create(name, base | mfd_exec) {
        Err(Errno::EINVAL) => memfd_create(name, base),
        r => r,
    }
    .map_err(sys::err("memfd_create", "strata-sealed", "MFD_CLOEXEC|MFD_ALLOW_SEALING"))?;
    let mut from = File::from(exe);
    let mut to = File::from(mfd);
    std::io::copy(&mut from, &mut to).map_err(sys::io_err("copy", Path::new("/proc/self/exe -> memfd")))?;
    let mfd = OwnedFd::from(to);
    fcntl(mfd.as_fd(), FcntlArg::F_ADD_SEALS(all_seals())).map_err(sys::err("fcntl", "strata-sealed memfd", "F_ADD_SEALS"))?;
    Ok(mfd)
}

/// execveat(image, "", AT_EMPTY_PATH) with our own argv and environment.
fn reexec(image: BorrowedFd<'_>) -> Result<(), SealError> {
    let c = |s: &OsStr| CString::new(s.as_bytes()).map_err(|_| SealError::Other(format!("{s:?}: contains a NUL byte")));
    let args = std::env::args_os().map(|a| c(&a)).collect::<Result<Vec<_>, _>>()?;
    let env = std::env::vars_os()
        .map(|(k, v)| {
            let mut kv = k;
            kv.push("=");
            kv.push(v);
            c(&kv)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let e = nix::unistd::fexecve(image, &args, &env).unwrap_err();
    Err(sys::err("execveat", "sealed strata image", "AT_EMPTY_PATH")(e).into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sealed_memfd_is_sealed_and_cannot_be_written() {
        let exe = open("/proc/self/exe", OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let size = nix::sys::stat::fstat(exe.as_fd()).unwrap().st_size;
        let img = memfd_image(exe).unwrap();
        assert_eq!(sealed(img.as_fd(), "memfd").unwrap(), Some(Sealed::Memfd));
        assert_eq!(nix::sys::stat::fstat(img.as_fd()).unwrap().st_size, size);
        // Reopened through /proc for writing, as an attacker would.
        let path = sys::fd_path(&img);
        let w = std::fs::OpenOptions::new().write(true).open(&path);
        if let Ok(mut f) = w {
            assert!(std::io::Write::write_all(&mut f, b"#!/bin/sh\n").is_err());
        }
        assert!(std::fs::OpenOptions::new().write(true).truncate(true).open(&path).is_err());
    }

    #[test]
    fn a_plain_writable_file_is_not_sealed() {
        let dir = std::env::temp_dir().join(format!("strata-seal-{}", std::process::id()));
        std::fs::write(&dir, b"x").unwrap();
        let fd = open(&dir, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let is_ro = fstatvfs(fd.as_fd()).unwrap().flags().contains(FsFlags::ST_RDONLY);
        assert_eq!(sealed(fd.as_fd(), "file").unwrap().is_some(), is_ro);
        std::fs::remove_file(&dir).unwrap();
    }
}
