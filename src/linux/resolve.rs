//! Path resolution inside the container's root that can never leave it.
//!
//! Every path taken from config.json (mount destinations, devices, masked
//! and readonly paths) is resolved with openat2(RESOLVE_IN_ROOT) against an
//! fd of the rootfs: `..` stops at the root and absolute symlinks are taken
//! relative to it. The result is an O_PATH fd; strata then mounts onto
//! `/proc/self/fd/N`, so the kernel acts on exactly the inode resolved here,
//! even if a container process swaps a symlink in between.

use std::ffi::OsStr;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{Mode, mkdirat};

use crate::sys::{self, SysError};

/// What to create at the end of a path that does not exist yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Create {
    Nothing,
    Dir,
    File,
}

/// Makes `path` relative to the root, cleaned lexically: `.` dropped, `..`
/// pops a component and never climbs above the root.
pub fn relative(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::ParentDir => {
                out.pop();
            }
            _ => {}
        }
    }
    out
}

fn how(flags: OFlag) -> OpenHow {
    OpenHow::new().flags(flags | OFlag::O_CLOEXEC).resolve(ResolveFlag::RESOLVE_IN_ROOT | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens the file at `path` as if `root` were `/` (symlinks followed, but
/// never out of it, and no magic links), with `flags`.
pub fn open_file_in_root(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> Result<OwnedFd, SysError> {
    openat2(root, &relative(path), how(flags)).map_err(sys::err("openat2", path.display(), "RESOLVE_IN_ROOT|RESOLVE_NO_MAGICLINKS"))
}

/// Opens `path` (taken as inside `root`) as an O_PATH fd, creating missing
/// directories on the way and `last` at the end.
pub fn open_in_root(root: BorrowedFd<'_>, path: &Path, last: Create) -> Result<OwnedFd, SysError> {
    open_in_root_depth(root, path, last, 0)
}

fn open_in_root_depth(root: BorrowedFd<'_>, path: &Path, last: Create, depth: u32) -> Result<OwnedFd, SysError> {
    if depth > 16 {
        return Err(sys::err("open", path.display(), "too many levels of symlinks")(Errno::ELOOP));
    }
    let rel = relative(path);
    let display = path.display();
    if rel.as_os_str().is_empty() {
        return openat2(root, ".", how(OFlag::O_PATH | OFlag::O_DIRECTORY)).map_err(sys::err("openat2", "/", "O_PATH"));
    }
    match openat2(root, &rel, how(OFlag::O_PATH)) {
        Err(Errno::ENOENT) if last != Create::Nothing => {}
        r => return r.map_err(sys::err("openat2", display, "O_PATH|RESOLVE_IN_ROOT")),
    }
    if last == Create::Dir {
        // mkdir_all follows a dangling symlink inside the root, too, and
        // returns the directory as this would open it; the whole path it
        // need not try again (ENOENT, just now).
        return mkdir_all_depth(root, &rel, 0, true);
    }
    let parent_rel = rel.parent().unwrap_or(Path::new(""));
    let parent = mkdir_all(root, parent_rel)?;
    let name = rel.file_name().unwrap_or(OsStr::new("."));
    if let Ok(target) = nix::fcntl::readlinkat(parent.as_fd(), name) {
        // A dangling symlink where the file should be: make the file it
        // names, resolved inside the root (as for directories).
        let next = Path::new("/").join(parent_rel).join(Path::new(&target));
        if relative(&next) != rel {
            return open_in_root_depth(root, &next, last, depth + 1);
        }
    }
    create_at(parent.as_fd(), name, last, &display.to_string())?;
    openat2(root, &rel, how(OFlag::O_PATH)).map_err(sys::err("openat2", display, "O_PATH|RESOLVE_IN_ROOT"))
}

fn create_at(dir: BorrowedFd<'_>, name: &OsStr, what: Create, display: &str) -> Result<(), SysError> {
    let r = match what {
        Create::Dir => mkdirat(dir, name, Mode::from_bits_truncate(0o755)),
        Create::File => {
            openat(dir, name, OFlag::O_CREAT | OFlag::O_WRONLY | OFlag::O_CLOEXEC | OFlag::O_NOFOLLOW, Mode::from_bits_truncate(0o644))
                .map(drop)
        }
        Create::Nothing => Ok(()),
    };
    match r {
        Ok(()) | Err(Errno::EEXIST) => Ok(()),
        Err(e) => Err(sys::err(if what == Create::Dir { "mkdirat" } else { "create" }, display, "")(e)),
    }
}

/// Resolves (creating as needed) every directory of `rel` inside `root`.
/// A dangling symlink on the way is followed (inside the root) and its
/// target created, as a user of `ln -s /run /var/run` would expect.
pub fn mkdir_all(root: BorrowedFd<'_>, rel: &Path) -> Result<OwnedFd, SysError> {
    mkdir_all_depth(root, rel, 0, false)
}

/// `mkdir_all`; `gone`: the caller has just been told the whole path is
/// missing, so the walk back starts at its parent.
fn mkdir_all_depth(root: BorrowedFd<'_>, rel: &Path, depth: u32, gone: bool) -> Result<OwnedFd, SysError> {
    if depth > 16 {
        return Err(sys::err("mkdir", rel.display(), "too many levels of symlinks")(Errno::ELOOP));
    }
    let clean = relative(rel);
    let parts: Vec<&OsStr> = clean.components().map(|c| c.as_os_str()).collect();
    let prefix = |n: usize| -> PathBuf { if n == 0 { PathBuf::from(".") } else { parts[..n].iter().collect() } };
    // Each step is resolved from the root again, so that a symlink
    // component is followed inside the root, never outside; so the walk may
    // as well start at the longest prefix that exists (usually the parent).
    // Any answer but ENOENT starts it at the root, where it is met in turn.
    let dir = |n: usize| openat2(root, prefix(n).as_path(), how(OFlag::O_PATH | OFlag::O_DIRECTORY));
    let mut found = None;
    let mut missing = None; // the shortest prefix seen missing
    let longest = if gone && !parts.is_empty() {
        missing = Some(parts.len());
        parts.len() - 1
    } else {
        parts.len()
    };
    for n in (1..=longest).rev() {
        match dir(n) {
            Ok(fd) => {
                found = Some((fd, n));
                break;
            }
            Err(Errno::ENOENT) => missing = Some(n),
            Err(_) => {
                missing = None;
                break;
            }
        }
    }
    let (mut cur, start) = match found {
        Some(f) => f,
        None => (dir(0).map_err(sys::err("openat2", "/", "O_PATH"))?, 0),
    };
    let mut sofar: PathBuf = Path::new("/").join(parts[..start].iter().collect::<PathBuf>());
    for (i, name) in parts.iter().enumerate().skip(start) {
        sofar.push(name);
        let step = if missing == Some(i + 1) { Err(Errno::ENOENT) } else { dir(i + 1) };
        match step {
            Ok(fd) => cur = fd,
            Err(Errno::ENOENT) => {
                if let Ok(target) = nix::fcntl::readlinkat(cur.as_fd(), *name) {
                    // A dangling symlink: create its target, resolved inside the root.
                    let parent = sofar.parent().unwrap_or(Path::new("/"));
                    mkdir_all_depth(root, &parent.join(Path::new(&target)), depth + 1, false)?;
                } else {
                    create_at(cur.as_fd(), name, Create::Dir, &sofar.display().to_string())?;
                }
                cur = dir(i + 1).map_err(sys::err("openat2", sofar.display(), "O_PATH|O_DIRECTORY"))?;
            }
            Err(e) => return Err(sys::err("openat2", sofar.display(), "O_PATH|O_DIRECTORY")(e)),
        }
    }
    Ok(cur)
}

/// How a path is opened when no symlink may be followed at all.
fn strict(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// Opens `path` inside `root` following no symlink on the way, not even one
/// that stays inside the root: what a file strata must trust (the
/// container's /dev/null, its ptmx, its /dev directory) is opened with.
pub fn open_no_symlinks(root: BorrowedFd<'_>, path: &Path, flags: OFlag) -> Result<OwnedFd, SysError> {
    let rel = relative(path);
    let rel = if rel.as_os_str().is_empty() { PathBuf::from(".") } else { rel };
    openat2(root, &rel, strict(flags)).map_err(sys::err("openat2", path.display(), "RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS"))
}

/// Opens the directory at `path` inside `root`, creating it (and missing
/// parents) as plain directories, and following no symlink on the way.
/// Kernel filesystems (procfs, sysfs, devpts, mqueue) are mounted only on
/// such a directory: a symlink planted by the image, even one that stays
/// inside the root, or a file there is an error naming the path.
pub fn open_plain_dir(root: BorrowedFd<'_>, path: &Path) -> Result<OwnedFd, SysError> {
    let refuse = |errno: Errno| {
        let why = match errno {
            Errno::ELOOP => "a symlink is on the path: must be mounted on ordinary directory",
            Errno::ENOTDIR => "not a directory: must be mounted on ordinary directory",
            _ => "O_PATH|O_DIRECTORY|RESOLVE_NO_SYMLINKS",
        };
        sys::err("mount destination", path.display(), why)(errno)
    };
    let how = || strict(OFlag::O_PATH | OFlag::O_DIRECTORY);
    let rel = relative(path);
    // Usually the directory is there (the image's /proc, /sys): one call,
    // which refuses a symlink or a file anywhere on the path as the walk
    // below would.
    match openat2(root, if rel.as_os_str().is_empty() { Path::new(".") } else { rel.as_path() }, how()) {
        Ok(fd) => return Ok(fd),
        Err(Errno::ENOENT) => {}
        Err(e) => return Err(refuse(e)),
    }
    let mut cur: Option<OwnedFd> = None;
    for part in rel.components() {
        let name = part.as_os_str();
        let at = cur.as_ref().map_or(root, |f| f.as_fd());
        let next = match openat2(at, name, how()) {
            Ok(fd) => fd,
            Err(Errno::ENOENT) => {
                match mkdirat(at, name, Mode::from_bits_truncate(0o755)) {
                    Ok(()) | Err(Errno::EEXIST) => {}
                    Err(e) => return Err(sys::err("mkdirat", path.display(), "0755")(e)),
                }
                openat2(at, name, how()).map_err(refuse)?
            }
            Err(e) => return Err(refuse(e)),
        };
        cur = Some(next);
    }
    match cur {
        Some(fd) => Ok(fd),
        None => openat2(root, ".", how()).map_err(refuse),
    }
}

/// The path of an fd as the kernel sees it now (for messages and checks).
pub fn fd_target(fd: &impl AsRawFd) -> PathBuf {
    std::fs::read_link(sys::fd_path(fd)).unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    #[test]
    fn relative_drops_root_and_dots() {
        assert_eq!(relative(Path::new("/a/./b/../c")), PathBuf::from("a/c"));
        assert_eq!(relative(Path::new("/../../x")), PathBuf::from("x"));
        assert_eq!(relative(Path::new("/")), PathBuf::new());
    }

    #[test]
    fn symlinks_cannot_escape() {
        let base = std::env::temp_dir().join(format!("resolve-test-{}", std::process::id()));
        let root = base.join("root");
        let outside = base.join("outside");
        std::fs::create_dir_all(&root).unwrap();
        std::fs::create_dir_all(&outside).unwrap();
        symlink("/../../../..", root.join("up")).unwrap();
        symlink(&outside, root.join("abs")).unwrap();
        std::fs::create_dir_all(root.join("var")).unwrap();
        symlink("../run", root.join("var/run")).unwrap();
        let rfd = nix::fcntl::open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        let fd = open_in_root(rfd.as_fd(), Path::new("/var/run/lock"), Create::Dir).unwrap();
        assert_eq!(fd_target(&fd), root.join("run/lock"));
        for p in ["/up/x", "/abs/y", "/../../z"] {
            let fd = open_in_root(rfd.as_fd(), Path::new(p), Create::Dir).unwrap();
            let target = fd_target(&fd);
            assert!(target.starts_with(&root), "{p} resolved to {target:?}");
        }
        // A symlink loop ends in an error, not a hang.
        symlink("/loop-b", root.join("loop-a")).unwrap();
        symlink("/loop-a", root.join("loop-b")).unwrap();
        assert!(open_in_root(rfd.as_fd(), Path::new("/loop-a"), Create::File).is_err());
        assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was created outside the root");
        std::fs::remove_dir_all(&base).unwrap();
    }

    #[test]
    fn plain_dirs_refuse_any_symlink() {
        let base = std::env::temp_dir().join(format!("resolve-plain-{}", std::process::id()));
        let root = base.join("root");
        std::fs::create_dir_all(root.join("real")).unwrap();
        symlink("real", root.join("proc")).unwrap();
        symlink("/real", root.join("sys")).unwrap();
        std::fs::write(root.join("file"), "").unwrap();
        let rfd = nix::fcntl::open(&root, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).unwrap();
        for p in ["/proc", "/sys", "/proc/x", "/file", "/file/x"] {
            let e = open_plain_dir(rfd.as_fd(), Path::new(p)).unwrap_err();
            assert!(e.to_string().contains(p), "{e}");
        }
        assert_eq!(std::fs::read_dir(root.join("real")).unwrap().count(), 0);
        let fd = open_plain_dir(rfd.as_fd(), Path::new("/dev/mqueue")).unwrap();
        assert_eq!(fd_target(&fd), root.join("dev/mqueue"));
        std::fs::remove_dir_all(&base).unwrap();
    }
}
