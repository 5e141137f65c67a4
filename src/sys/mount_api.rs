//! Safe wrappers over the new mount API (fsopen, fsconfig, fsmount,
//! move_mount), which `nix` does not cover.
//!
//! When fsconfig fails the kernel explains why in the fs context's log
//! ("overlayfs: failed to resolve 'x': -2"); that text is read back and put
//! in the error, because the errno alone (EINVAL) rarely says which
//! parameter was wrong.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;

use crate::sys::{self, SysError};

const FSOPEN_CLOEXEC: libc::c_uint = 1;
const FSCONFIG_SET_STRING: libc::c_uint = 1;
const FSCONFIG_CMD_CREATE: libc::c_uint = 6;
const FSCONFIG_SET_FLAG: libc::c_uint = 0;
const FSMOUNT_CLOEXEC: libc::c_uint = 1;
const MOVE_MOUNT_F_EMPTY_PATH: libc::c_uint = 4;

fn cstring(s: &[u8], op: &'static str) -> Result<CString, SysError> {
    CString::new(s).map_err(|_| sys::err(op, String::from_utf8_lossy(s), "NUL in string")(Errno::EINVAL))
}

/// An fs context (`fsopen`): configure it, then `create` and `mount`.
pub struct FsContext {
    fd: OwnedFd,
    fstype: String,
}

impl FsContext {
    pub fn open(fstype: &str) -> Result<FsContext, SysError> {
        let name = cstring(fstype.as_bytes(), "fsopen")?;
        // SAFETY: NUL-terminated name; returns a new fd or -1.
        let r = unsafe { libc::syscall(libc::SYS_fsopen, name.as_ptr(), FSOPEN_CLOEXEC) };
        let fd = Errno::result(r).map_err(sys::err("fsopen", fstype, "FSOPEN_CLOEXEC"))?;
        // SAFETY: the kernel just returned this fd and nothing else owns it.
        Ok(FsContext { fd: unsafe { OwnedFd::from_raw_fd(fd as i32) }, fstype: fstype.to_string() })
    }

    /// `fsconfig(FSCONFIG_SET_STRING, key, value)`.
    pub fn set_string(&self, key: &str, value: &[u8]) -> Result<(), SysError> {
        let (k, v) = (cstring(key.as_bytes(), "fsconfig")?, cstring(value, "fsconfig")?);
        // SAFETY: valid fd; both strings NUL-terminated; aux is 0 for SET_STRING.
        let r = unsafe { libc::syscall(libc::SYS_fsconfig, self.fd.as_raw_fd(), FSCONFIG_SET_STRING, k.as_ptr(), v.as_ptr(), 0) };
        Errno::result(r).map(drop).map_err(|e| self.error(e, format!("FSCONFIG_SET_STRING {key}={}", String::from_utf8_lossy(value))))
    }

    /// `fsconfig(FSCONFIG_SET_FLAG, key)`: a flag option without a value.
    pub fn set_flag(&self, key: &str) -> Result<(), SysError> {
        let k = cstring(key.as_bytes(), "fsconfig")?;
        // SAFETY: valid fd; the key is NUL-terminated; value NULL and aux 0 for SET_FLAG.
        let r = unsafe {
            libc::syscall(libc::SYS_fsconfig, self.fd.as_raw_fd(), FSCONFIG_SET_FLAG, k.as_ptr(), std::ptr::null::<libc::c_char>(), 0)
        };
        Errno::result(r).map(drop).map_err(|e| self.error(e, format!("FSCONFIG_SET_FLAG {key}")))
    }

    /// `fsconfig(FSCONFIG_CMD_CREATE)`: makes the superblock.
    pub fn create(&self) -> Result<(), SysError> {
        // SAFETY: valid fd; CMD_CREATE takes no key, value or aux.
        let r = unsafe {
            libc::syscall(
                libc::SYS_fsconfig,
                self.fd.as_raw_fd(),
                FSCONFIG_CMD_CREATE,
                std::ptr::null::<libc::c_char>(),
                std::ptr::null::<libc::c_void>(),
                0,
            )
        };
        Errno::result(r).map(drop).map_err(|e| self.error(e, "FSCONFIG_CMD_CREATE".into()))
    }

    /// `fsmount` then `move_mount` onto `target`.
    pub fn mount_at(&self, attr_flags: u32, target: &Path) -> Result<(), SysError> {
        let mnt = self.mount_detached(attr_flags)?;
        move_mount(mnt.as_fd(), target)
    }

    /// `fsmount` alone: a mount attached nowhere, reachable only through the
    /// returned fd (and what is opened through it). It goes away with the
    /// last of those.
    pub fn mount_detached(&self, attr_flags: u32) -> Result<OwnedFd, SysError> {
        // SAFETY: valid fd; flags are plain integers; returns a new fd or -1.
        let r = unsafe { libc::syscall(libc::SYS_fsmount, self.fd.as_raw_fd(), FSMOUNT_CLOEXEC, attr_flags) };
        let mfd = Errno::result(r).map_err(|e| self.error(e, format!("fsmount FSMOUNT_CLOEXEC attr={attr_flags:#x}")))?;
        // SAFETY: the kernel just returned this fd and nothing else owns it.
        Ok(unsafe { OwnedFd::from_raw_fd(mfd as i32) })
    }

    fn error(&self, errno: Errno, flags: String) -> SysError {
        let log = self.read_log();
        let flags = if log.is_empty() { flags } else { format!("{flags}; kernel: {log}") };
        sys::err("fsconfig", &self.fstype, flags)(errno)
    }

    /// Drains the context's message log (lines like "e overlay: ...").
    fn read_log(&self) -> String {
        let mut out = Vec::new();
        let mut buf = [0u8; 1024];
        while let Ok(n @ 1..) = nix::unistd::read(self.fd.as_fd(), &mut buf) {
            out.push(String::from_utf8_lossy(&buf[..n]).trim_end().to_string());
        }
        out.join("; ")
    }
}

const OPEN_TREE_CLONE: libc::c_uint = 1;
const OPEN_TREE_CLOEXEC: libc::c_uint = libc::O_CLOEXEC as libc::c_uint;
const MOVE_MOUNT_T_EMPTY_PATH: libc::c_uint = 0x40;

/// `open_tree(fd, "", OPEN_TREE_CLONE|AT_EMPTY_PATH)`: a detached bind
/// mount of exactly the file or directory `fd` refers to, no path resolved.
pub fn clone_tree(fd: BorrowedFd<'_>, what: &str) -> Result<OwnedFd, SysError> {
    clone_tree_rec(fd, false, what)
}

/// The same with its submounts when `recursive` (an `rbind`: AT_RECURSIVE).
pub fn clone_tree_rec(fd: BorrowedFd<'_>, recursive: bool, what: &str) -> Result<OwnedFd, SysError> {
    let empty = c"";
    let rec = if recursive { libc::AT_RECURSIVE as libc::c_uint } else { 0 };
    // SAFETY: valid fd with an empty path and AT_EMPTY_PATH; returns a new fd or -1.
    let r = unsafe {
        libc::syscall(
            libc::SYS_open_tree,
            fd.as_raw_fd(),
            empty.as_ptr(),
            OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC | libc::AT_EMPTY_PATH as libc::c_uint | rec,
        )
    };
    let flags = if recursive { "OPEN_TREE_CLONE|AT_EMPTY_PATH|AT_RECURSIVE" } else { "OPEN_TREE_CLONE|AT_EMPTY_PATH" };
    let t = Errno::result(r).map_err(sys::err("open_tree", what, flags))?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(t as i32) })
}

/// `move_mount` of a detached mount onto the file or directory `target`
/// refers to: both ends are fds, no path is resolved.
pub fn move_mount_onto(from: BorrowedFd<'_>, target: BorrowedFd<'_>, what: &str) -> Result<(), SysError> {
    let empty = c"";
    // SAFETY: two valid fds with empty paths and the matching EMPTY_PATH flags.
    let r = unsafe {
        libc::syscall(
            libc::SYS_move_mount,
            from.as_raw_fd(),
            empty.as_ptr(),
            target.as_raw_fd(),
            empty.as_ptr(),
            MOVE_MOUNT_F_EMPTY_PATH | MOVE_MOUNT_T_EMPTY_PATH,
        )
    };
    Errno::result(r).map(drop).map_err(sys::err("move_mount", what, "MOVE_MOUNT_F_EMPTY_PATH|MOVE_MOUNT_T_EMPTY_PATH"))
}

/// `open_tree(AT_FDCWD, path, OPEN_TREE_CLONE)`: a detached bind mount of
/// `path` as this mount namespace resolves it (for host paths strata chose).
pub fn clone_path(path: &Path, what: &str) -> Result<OwnedFd, SysError> {
    use std::os::unix::ffi::OsStrExt;
    let p = cstring(path.as_os_str().as_bytes(), "open_tree")?;
    // SAFETY: NUL-terminated path; returns a new fd or -1.
    let r = unsafe { libc::syscall(libc::SYS_open_tree, libc::AT_FDCWD, p.as_ptr(), OPEN_TREE_CLONE | OPEN_TREE_CLOEXEC) };
    let t = Errno::result(r).map_err(sys::err("open_tree", format!("{} ({what})", path.display()), "OPEN_TREE_CLONE"))?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(t as i32) })
}

/// `move_mount` of a detached mount onto `name` in the directory `dir`:
/// one component, a symlink there not followed (no MOVE_MOUNT_T_SYMLINKS).
pub fn move_mount_into(from: BorrowedFd<'_>, dir: BorrowedFd<'_>, name: &str, what: &str) -> Result<(), SysError> {
    let to = cstring(name.as_bytes(), "move_mount")?;
    let empty = c"";
    // SAFETY: two valid fds, an empty path with F_EMPTY_PATH, a NUL-terminated name.
    let r = unsafe {
        libc::syscall(libc::SYS_move_mount, from.as_raw_fd(), empty.as_ptr(), dir.as_raw_fd(), to.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    };
    Errno::result(r).map(drop).map_err(sys::err("move_mount", what, "MOVE_MOUNT_F_EMPTY_PATH"))
}

fn move_mount(from: BorrowedFd<'_>, target: &Path) -> Result<(), SysError> {
    use std::os::unix::ffi::OsStrExt;
    let to = cstring(target.as_os_str().as_bytes(), "move_mount")?;
    let empty = c"";
    // SAFETY: valid fd with an empty path and F_EMPTY_PATH; NUL-terminated target.
    let r = unsafe {
        libc::syscall(libc::SYS_move_mount, from.as_raw_fd(), empty.as_ptr(), libc::AT_FDCWD, to.as_ptr(), MOVE_MOUNT_F_EMPTY_PATH)
    };
    Errno::result(r).map(drop).map_err(sys::err("move_mount", target.display(), "MOVE_MOUNT_F_EMPTY_PATH"))
}
