//! Writes to procfs that nothing in the container can redirect
//! (CVE-2025-52881 class).
//!
//! A container that controls its own mount table (or shares a rootfs with
//! one that does) can put a bind mount or a symlink over a `/proc` file, so
//! that a runtime writing "/proc/sys/net/..." or "/proc/self/oom_score_adj"
//! by path writes somewhere else (`/proc/sysrq-trigger`, a host file). So
//! every procfs access strata makes goes through a `ProcFs` handle:
//!
//! - in the container, a private procfs instance (`fsopen("proc")` +
//!   `fsmount`) that is attached nowhere, so no mount can cover any of it;
//! - where that cannot be had, and for the host's `/proc`, a directory fd
//!   of `/proc` whose filesystem is checked to be procfs and which is its
//!   root.
//!
//! Paths below the handle are opened with `openat2(RESOLVE_BENEATH |
//! RESOLVE_NO_XDEV | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS)`: no
//! mount crossed, no symlink followed. `self` (a symlink) is read with
//! readlinkat and turned into the pid it names in that instance.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, open, openat2, readlinkat};
use nix::sys::stat::Mode;
use nix::sys::statfs::{PROC_SUPER_MAGIC, fstatfs};

use crate::sys::mount_api::FsContext;
use crate::sys::{self, SysError};

/// The root inode of every procfs instance.
const PROC_ROOT_INO: u64 = 1;

/// A checked handle on a procfs instance.
pub struct ProcFs {
    root: OwnedFd,
    /// How it was had, for messages.
    what: &'static str,
}

impl ProcFs {
    /// A private procfs instance for the calling process's pid namespace,
    /// attached nowhere; the checked `/proc` where the kernel refuses one.
    pub fn private() -> Result<ProcFs, SysError> {
        let fresh = || -> Result<OwnedFd, SysError> {
            let ctx = FsContext::open("proc")?;
            ctx.create()?;
            ctx.mount_detached(0x2 | 0x4 | 0x8) // MOUNT_ATTR_NOSUID | NODEV | NOEXEC
        };
        match fresh() {
            Ok(root) => ProcFs::checked(root, "private procfs"),
            Err(_) => ProcFs::mounted(),
        }
    }

    /// The procfs mounted at `/proc`, checked to be procfs and its root.
    pub fn mounted() -> Result<ProcFs, SysError> {
        let root = open("/proc", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
            "open",
            "/proc",
            "O_PATH|O_DIRECTORY",
        ))?;
        ProcFs::checked(root, "/proc")
    }

    fn checked(root: OwnedFd, what: &'static str) -> Result<ProcFs, SysError> {
        let fs = fstatfs(root.as_fd()).map_err(sys::err("fstatfs", what, ""))?;
        if fs.filesystem_type() != PROC_SUPER_MAGIC {
            return Err(sys::err("fstatfs", what, "not procfs")(Errno::EXDEV));
        }
        let st = nix::sys::stat::fstat(root.as_fd()).map_err(sys::err("fstat", what, ""))?;
        if st.st_ino != PROC_ROOT_INO {
            return Err(sys::err("fstat", what, "not the root of a procfs")(Errno::EXDEV));
        }
        Ok(ProcFs { root, what })
    }

    /// `rel` with a leading `self/` turned into `<pid>/`, the pid the
    /// instance gives the caller.
    fn resolve_self(&self, rel: &str) -> Result<PathBuf, SysError> {
        match rel.strip_prefix("self/") {
            None => Ok(PathBuf::from(rel)),
            Some(rest) => {
                let pid = readlinkat(self.root.as_fd(), "self").map_err(sys::err("readlinkat", format!("{}/self", self.what), ""))?;
                Ok(Path::new(&pid).join(rest))
            }
        }
    }

    /// Opens `rel` (below the instance's root) without crossing a mount or
    /// following a symlink.
    pub fn open(&self, rel: &str, flags: OFlag) -> Result<OwnedFd, SysError> {
        let path = self.resolve_self(rel)?;
        let how = OpenHow::new().flags(flags | OFlag::O_CLOEXEC | OFlag::O_NOCTTY).resolve(
            ResolveFlag::RESOLVE_BENEATH
                | ResolveFlag::RESOLVE_NO_XDEV
                | ResolveFlag::RESOLVE_NO_SYMLINKS
                | ResolveFlag::RESOLVE_NO_MAGICLINKS,
        );
        openat2(self.root.as_fd(), &path, how).map_err(sys::err(
            "openat2",
            format!("{}/{}", self.what, path.display()),
            "RESOLVE_BENEATH|RESOLVE_NO_XDEV|RESOLVE_NO_SYMLINKS",
        ))
    }

    /// Writes `data` to `rel` in one write(2), as procfs files want.
    pub fn write(&self, rel: &str, data: &[u8]) -> Result<(), SysError> {
        let fd = self.open(rel, OFlag::O_WRONLY)?;
        match nix::unistd::write(&fd, data) {
            Ok(n) if n == data.len() => Ok(()),
            Ok(_) => Err(sys::err("write", format!("{}/{rel}", self.what), "short write")(Errno::EIO)),
            Err(e) => Err(sys::err("write", format!("{}/{rel}", self.what), String::from_utf8_lossy(data).trim())(e)),
        }
    }

    pub fn read_to_string(&self, rel: &str) -> Result<String, SysError> {
        let fd = self.open(rel, OFlag::O_RDONLY)?;
        let mut f = std::fs::File::from(fd);
        let mut s = String::new();
        std::io::Read::read_to_string(&mut f, &mut s).map_err(|e| sys::io_err("read", Path::new(rel))(e))?;
        Ok(s)
    }
}

/// `kernel.domainname` -> `sys/kernel/domainname`, refusing anything that
/// is not a plain dotted sysctl name.
pub fn sysctl_path(key: &str) -> Option<String> {
    if key.is_empty() || key.contains('/') || key.split('.').any(|p| p.is_empty() || p == "..") {
        return None;
    }
    Some(format!("sys/{}", key.replace('.', "/")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sysctl_names() {
        assert_eq!(sysctl_path("net.ipv4.ip_forward").as_deref(), Some("sys/net/ipv4/ip_forward"));
        for bad in ["", "a..b", "../x", "a/b", ".a", "a."] {
            assert_eq!(sysctl_path(bad), None, "{bad}");
        }
    }

    #[test]
    fn mounted_proc_is_checked_and_self_resolves() {
        let p = ProcFs::mounted().unwrap();
        let status = p.read_to_string("self/status").unwrap();
        let pid = status.lines().find_map(|l| l.strip_prefix("Pid:")).unwrap().trim().parse::<u32>().unwrap();
        assert_eq!(pid, std::process::id());
        // /proc/self/root is a magic link; /proc/mounts a symlink: neither is followed.
        assert!(p.open("self/root/etc", OFlag::O_PATH).is_err());
        assert!(p.open("mounts", OFlag::O_RDONLY).is_err());
        assert!(p.open("../etc/passwd", OFlag::O_RDONLY).is_err());
    }

    #[test]
    fn a_directory_that_is_not_procfs_is_refused() {
        let fd = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        assert!(ProcFs::checked(fd, "/").is_err());
    }
}
