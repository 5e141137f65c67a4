//! The container's root: propagation, the rootfs bind mount, devices and
//! /dev links, pivot_root (or move+chroot with --no-pivot), then the
//! masked and read-only paths and a read-only root.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::symlink;
use std::path::Path;

use nix::fcntl::{OFlag, open};
use nix::mount::{MntFlags, MsFlags, mount, umount2};
use nix::sys::stat::{Mode, SFlag, makedev, mknodat};
use nix::unistd::{Gid, Uid, chdir, fchownat, pivot_root};
use oci_spec::runtime::{LinuxDevice, LinuxDeviceType};

use super::resolve::{self, Create};
use crate::sys::{self, SysError};

/// The propagation `rootfsPropagation` names, applied to the container's `/`
/// after pivot_root.
pub fn propagation_flags(prop: &str) -> Result<MsFlags, String> {
    Ok(match prop {
        "rslave" => MsFlags::MS_SLAVE | MsFlags::MS_REC,
        "slave" => MsFlags::MS_SLAVE,
        "private" => MsFlags::MS_PRIVATE,
        "rprivate" => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        "shared" => MsFlags::MS_SHARED,
        "rshared" => MsFlags::MS_SHARED | MsFlags::MS_REC,
        "unbindable" => MsFlags::MS_UNBINDABLE,
        "runbindable" => MsFlags::MS_UNBINDABLE | MsFlags::MS_REC,
        other => return Err(format!("rootfsPropagation {other:?} is not a propagation mode")),
    })
}

/// The propagation of the whole tree while setting up, as runc sets it:
/// rslave unless `rootfsPropagation` asks otherwise. A shared request keeps
/// the new namespace's copies of the host's shared mounts in their peer
/// groups, so that a mount made in a bidirectional (`rshared`) volume
/// reaches the host, as Kubernetes' mount propagation needs. The rootfs's
/// parent is made private all the same (pivot_root refuses shared ones).
pub fn setup_propagation(requested: Option<MsFlags>) -> MsFlags {
    match requested {
        Some(f) if f.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_UNBINDABLE) => MsFlags::MS_PRIVATE | MsFlags::MS_REC,
        Some(f) if f.contains(MsFlags::MS_SHARED) => MsFlags::MS_SHARED | MsFlags::MS_REC,
        _ => MsFlags::MS_SLAVE | MsFlags::MS_REC,
    }
}

/// Sets `/`'s propagation and makes the rootfs a mount point of its own.
/// Returns an O_PATH fd of the (bind-mounted) rootfs.
/// Sets the propagation of the new mount namespace's tree (never with the
/// host's own namespace: then there is nothing to do).
pub fn propagate(rootfs: &Path, prop: MsFlags) -> Result<(), SysError> {
    mount(None::<&str>, "/", None::<&str>, prop, None::<&str>).map_err(sys::err("mount", "/", format!("{prop:?}")))?;
    // pivot_root refuses a new root whose parent mount is shared.
    if leaves_a_shared_mount(prop) { make_parent_private(rootfs) } else { Ok(()) }
}

/// Whether a mount may still be shared after `/` got `prop`: not after a
/// recursive private, slave or unbindable (the default, rslave), which
/// takes every mount of the tree out of its peer group. Only then is
/// mountinfo read to find the rootfs's parent mount: its size grows with
/// the host's mounts.
fn leaves_a_shared_mount(prop: MsFlags) -> bool {
    !(prop.contains(MsFlags::MS_REC) && prop.intersects(MsFlags::MS_PRIVATE | MsFlags::MS_SLAVE | MsFlags::MS_UNBINDABLE))
}

/// Makes the rootfs a mount point of its own; returns an O_PATH fd of it.
pub fn bind_rootfs(rootfs: &Path) -> Result<OwnedFd, SysError> {
    let flags = MsFlags::MS_BIND | MsFlags::MS_REC;
    mount(Some(rootfs), rootfs, None::<&str>, flags, None::<&str>).map_err(sys::err(
        "mount",
        rootfs.display(),
        "MS_BIND|MS_REC (rootfs)",
    ))?;
    open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
        "open",
        rootfs.display(),
        "O_PATH|O_DIRECTORY",
    ))
}

fn make_parent_private(rootfs: &Path) -> Result<(), SysError> {
    let mounts = crate::sys::read_small("/proc/self/mountinfo").map_err(sys::io_err("read", Path::new("/proc/self/mountinfo")))?;
    let mountpoint = mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|mp| rootfs.starts_with(mp))
        .max_by_key(|mp| mp.len())
        .unwrap_or_else(|| "/".into());
    let shared = mounts.lines().any(|l| {
        let f: Vec<&str> = l.split(' ').collect();
        f.len() > 6 && unescape_mountinfo(f[4]) == mountpoint && f[6..].iter().take_while(|x| **x != "-").any(|x| x.starts_with("shared:"))
    });
    if shared {
        mount(None::<&str>, mountpoint.as_str(), None::<&str>, MsFlags::MS_PRIVATE, None::<&str>).map_err(sys::err(
            "mount",
            &mountpoint,
            "MS_PRIVATE (rootfs parent)",
        ))?;
    }
    Ok(())
}

fn hide_host_kernel_fs(rootfs: &Path) -> Result<(), SysError> {
    let mounts = crate::sys::read_small("/proc/self/mountinfo").map_err(sys::io_err("read", Path::new("/proc/self/mountinfo")))?;
    let mut targets: Vec<String> = mounts
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split(' ').collect();
            let sep = f.iter().position(|x| *x == "-")?;
            let (root, mp, fstype) = (f.get(3)?, unescape_mountinfo(f.get(4)?), f.get(sep + 1)?);
            (*root == "/" && matches!(*fstype, "proc" | "sysfs") && !Path::new(&mp).starts_with(rootfs)).then_some(mp)
        })
        .collect();
    // Deepest first: a parent's unmount takes its children with it.
    targets.sort_by_key(|t| std::cmp::Reverse(t.len()));
    for t in targets {
        // Never let the unmount reach the host.
        match mount(None::<&str>, t.as_str(), None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>) {
            Err(nix::errno::Errno::ENOENT) => continue, // under one already gone
            r => r.map_err(sys::err("mount", &t, "MS_SLAVE|MS_REC (--no-pivot)"))?,
        }
        match umount2(t.as_str(), MntFlags::MNT_DETACH) {
            Ok(()) => {}
            Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM) => {
                mount(Some("tmpfs"), t.as_str(), Some("tmpfs"), MsFlags::MS_RDONLY, None::<&str>).map_err(sys::err(
                    "mount",
                    &t,
                    "tmpfs over the host's procfs/sysfs (--no-pivot)",
                ))?;
            }
            Err(e) => return Err(sys::err("umount2", &t, "MNT_DETACH (--no-pivot)")(e)),
        }
    }
    Ok(())
}

/// mountinfo escapes space, tab, newline and backslash as octal.
pub fn unescape_mountinfo(s: &str) -> String {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'\\' && i + 3 < b.len() && b[i + 1..i + 4].iter().all(|c| (b'0'..=b'7').contains(c)) {
            out.push((b[i + 1] - b'0') * 64 + (b[i + 2] - b'0') * 8 + (b[i + 3] - b'0'));
            i += 4;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// A device node to provide in the container's /dev.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: String,
    pub kind: SFlag,
    pub major: u64,
    pub minor: u64,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
}

/// The devices every container gets (runtime-spec "Default Devices").
pub fn default_devices() -> Vec<Device> {
    let d = |path: &str, major, minor| Device { path: path.into(), kind: SFlag::S_IFCHR, major, minor, mode: 0o666, uid: 0, gid: 0 };
    vec![
        d("/dev/null", 1, 3),
        d("/dev/zero", 1, 5),
        d("/dev/full", 1, 7),
        d("/dev/random", 1, 8),
        d("/dev/urandom", 1, 9),
        d("/dev/tty", 5, 0),
    ]
}

pub fn device_from_spec(d: &LinuxDevice) -> Device {
    let kind = match d.typ() {
        LinuxDeviceType::B => SFlag::S_IFBLK,
        LinuxDeviceType::P => SFlag::S_IFIFO,
        _ => SFlag::S_IFCHR,
    };
    Device {
        path: d.path().to_string_lossy().into_owned(),
        kind,
        major: d.major() as u64,
        minor: d.minor() as u64,
        mode: d.file_mode().unwrap_or(0o666) & 0o7777,
        uid: d.uid().unwrap_or(0),
        gid: d.gid().unwrap_or(0),
    }
}

/// Default devices first, then the spec's (a spec entry replaces a default).
pub fn device_list(spec_devices: &[LinuxDevice]) -> Vec<Device> {
    let mut list: Vec<Device> = spec_devices.iter().map(device_from_spec).collect();
    for d in default_devices() {
        if !list.iter().any(|x| x.path == d.path) {
            list.insert(0, d);
        }
    }
    list
}

/// Creates the device nodes (or, in a user namespace, bind-mounts the
/// host's). Their directory (nearly always /dev) is opened once for all.
pub fn create_devices(root: BorrowedFd<'_>, devs: &[Device], in_userns: bool) -> Result<(), SysError> {
    if in_userns {
        for dev in devs {
            let path = Path::new(&dev.path);
            let target = resolve::open_in_root(root, path, Create::File)?;
            mount(Some(path), &sys::fd_path(&target), None::<&str>, MsFlags::MS_BIND, None::<&str>).map_err(sys::err(
                "mount",
                format!("{} (device bind)", dev.path),
                "MS_BIND",
            ))?;
        }
        return Ok(());
    }
    // The nodes get their modes exactly: no umask while they are made (as
    // runc does), the caller's put back after.
    let umask = sys::umask(0)?;
    let made = create_nodes(root, devs);
    sys::umask(umask)?;
    made
}

fn create_nodes(root: BorrowedFd<'_>, devs: &[Device]) -> Result<(), SysError> {
    let mut parent: Option<(std::path::PathBuf, OwnedFd)> = None;
    for dev in devs {
        let rel = resolve::relative(Path::new(&dev.path));
        let dir = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        if parent.as_ref().is_none_or(|(d, _)| *d != dir) {
            parent = Some((dir.clone(), resolve::mkdir_all(root, &dir)?));
        }
        let (_, fd) = parent.as_ref().expect("opened above");
        let (parent, name) = (fd.as_fd(), rel.file_name().unwrap_or_default());
        // Replace whatever is there (an image may ship a placeholder file).
        let _ = nix::unistd::unlinkat(parent, name, nix::unistd::UnlinkatFlags::NoRemoveDir);
        mknodat(parent, name, dev.kind, Mode::from_bits_truncate(dev.mode), makedev(dev.major, dev.minor)).map_err(sys::err(
            "mknod",
            &dev.path,
            format!("{:?} {}:{} {:o}", dev.kind, dev.major, dev.minor, dev.mode),
        ))?;
        fchownat(parent, name, Some(Uid::from_raw(dev.uid)), Some(Gid::from_raw(dev.gid)), nix::fcntl::AtFlags::AT_SYMLINK_NOFOLLOW)
            .map_err(sys::err("chown", &dev.path, format!("{}:{}", dev.uid, dev.gid)))?;
    }
    Ok(())
}

/// The /dev symlinks runc provides.
pub fn dev_symlinks(rootfs: &Path) -> Result<(), SysError> {
    let mut links = vec![
        ("/proc/self/fd", "dev/fd"),
        ("/proc/self/fd/0", "dev/stdin"),
        ("/proc/self/fd/1", "dev/stdout"),
        ("/proc/self/fd/2", "dev/stderr"),
    ];
    if Path::new("/proc/kcore").exists() {
        links.push(("/proc/kcore", "dev/core"));
    }
    for (target, link) in links {
        let p = rootfs.join(link);
        match symlink(target, &p) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(sys::io_err("symlink", &p)(e)),
            _ => {}
        }
    }
    Ok(())
}

/// /dev/ptmx -> pts/ptmx, so ptys come from the container's devpts.
pub fn setup_ptmx(rootfs: &Path) -> Result<(), SysError> {
    let p = rootfs.join("dev/ptmx");
    if !rootfs.join("dev/pts").is_dir() {
        return Ok(());
    }
    let _ = std::fs::remove_file(&p);
    symlink("pts/ptmx", &p).map_err(sys::io_err("symlink", &p))
}

/// pivot_root(2) into `rootfs` and detach the old root, as runc does:
/// pivot_root(".", ".") stacks the old root under the new one, then unmount it.
pub fn pivot(rootfs: &Path) -> Result<(), SysError> {
    let old =
        open("/", OFlag::O_DIRECTORY | OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open", "/", "O_DIRECTORY"))?;
    chdir(rootfs).map_err(sys::err("chdir", rootfs.display(), ""))?;
    pivot_root(".", ".").map_err(sys::err("pivot_root", rootfs.display(), ""))?;
    nix::unistd::fchdir(old.as_fd()).map_err(sys::err("fchdir", "old root", ""))?;
    // Do not let the unmount propagate to the host.
    mount(None::<&str>, ".", None::<&str>, MsFlags::MS_SLAVE | MsFlags::MS_REC, None::<&str>).map_err(sys::err(
        "mount",
        "old root",
        "MS_SLAVE|MS_REC",
    ))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(sys::err("umount2", "old root", "MNT_DETACH"))?;
    chdir("/").map_err(sys::err("chdir", "/", ""))
}

/// No mount namespace: chroot into the (bind-mounted) rootfs.
pub fn chroot_into(rootfs: &Path) -> Result<(), SysError> {
    chdir(rootfs).map_err(sys::err("chdir", rootfs.display(), ""))?;
    nix::unistd::chroot(".").map_err(sys::err("chroot", rootfs.display(), ""))?;
    chdir("/").map_err(sys::err("chdir", "/", ""))
}

/// --no-pivot: move the rootfs over / and chroot into it.
///
/// The old root stays below, reachable in the mount namespace: its whole
/// procfs and sysfs mounts would let a process that makes its own user
/// namespace mount a fresh, unmasked procfs (the kernel allows that where a
/// full one is visible). So each of them outside the rootfs goes first:
/// unmounted, or where that is not allowed, covered by an empty tmpfs.
pub fn move_root(rootfs: &Path) -> Result<(), SysError> {
    hide_host_kernel_fs(rootfs)?;
    chdir(rootfs).map_err(sys::err("chdir", rootfs.display(), ""))?;
    mount(Some("."), "/", None::<&str>, MsFlags::MS_MOVE, None::<&str>).map_err(sys::err("mount", rootfs.display(), "MS_MOVE"))?;
    nix::unistd::chroot(".").map_err(sys::err("chroot", rootfs.display(), ""))?;
    chdir("/").map_err(sys::err("chdir", "/", ""))
}

/// After pivot: the fd-relative helpers use /proc/self/fd, so make sure the
/// container's /proc really is procfs (a volume over /proc must not defeat
/// masking, CVE-2019-19921).
pub fn check_proc() -> Result<(), SysError> {
    let st = nix::sys::statfs::statfs("/proc").map_err(sys::err("statfs", "/proc", ""))?;
    if st.filesystem_type() != nix::sys::statfs::PROC_SUPER_MAGIC {
        return Err(sys::err("statfs", "/proc", "not procfs")(nix::errno::Errno::EINVAL));
    }
    Ok(())
}

/// The container's /dev/null, opened following no symlink and checked to
/// be the null device (char 1:3). Masking binds exactly this inode, so a
/// /dev/null swapped for a symlink or a file before masking cannot unmask
/// anything (CVE-2025-31133 class).
pub fn open_null(root: BorrowedFd<'_>) -> Result<OwnedFd, SysError> {
    let fd = resolve::open_no_symlinks(root, Path::new("/dev/null"), OFlag::O_PATH)?;
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(sys::err("fstat", "/dev/null", ""))?;
    let is_chr = st.st_mode & libc::S_IFMT == libc::S_IFCHR;
    if !is_chr || st.st_rdev != makedev(1, 3) {
        return Err(sys::err("mask", "/dev/null", "not the null device (char 1:3): refusing to mask with it")(nix::errno::Errno::EINVAL));
    }
    Ok(fd)
}

/// What masking has made so far: the container's /dev/null (opened once),
/// the read-only tmpfs every masked directory shows (one, as in runc), and
/// the paths already masked (a path listed twice is masked once).
#[derive(Default)]
pub struct Masker {
    null: Option<OwnedFd>,
    tmpfs: Option<OwnedFd>,
    done: Vec<String>,
}

/// Masks `path`: a directory gets the shared empty read-only tmpfs, a file
/// the container's /dev/null, bound read-only. A path that does not exist
/// is left alone.
pub fn mask(root: BorrowedFd<'_>, path: &str, m: &mut Masker) -> Result<(), SysError> {
    use crate::sys::mount_api::{FsContext, clone_tree, move_mount_onto};
    if m.done.iter().any(|d| d == path) {
        return Ok(());
    }
    let fd = match resolve::open_in_root(root, Path::new(path), Create::Nothing) {
        Ok(fd) => fd,
        Err(e) if e.errno == nix::errno::Errno::ENOENT => return Ok(()),
        Err(e) => return Err(e),
    };
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(sys::err("fstat", path, "mask"))?;
    let what = format!("{path} (mask)");
    let is_dir = st.st_mode & libc::S_IFMT == libc::S_IFDIR;
    let mnt = if is_dir {
        match &m.tmpfs {
            // A bind of the first one: the same (empty) filesystem.
            Some(first) => {
                let tree = clone_tree(first.as_fd(), "the masking tmpfs")?;
                sys::mount_setattr(tree.as_fd(), 0x1, 0, false, &what)?; // MOUNT_ATTR_RDONLY
                tree
            }
            None => {
                let ctx = FsContext::open("tmpfs")?;
                ctx.set_string("size", b"0k")?;
                ctx.set_string("mode", b"755")?;
                ctx.create()?;
                ctx.mount_detached(0x1)? // MOUNT_ATTR_RDONLY
            }
        }
    } else {
        if m.null.is_none() {
            m.null = Some(open_null(root)?);
        }
        let tree = clone_tree(m.null.as_ref().map(|n| n.as_fd()).unwrap_or(fd.as_fd()), "/dev/null")?;
        sys::mount_setattr(tree.as_fd(), 0x1, 0, false, &what)?; // MOUNT_ATTR_RDONLY
        tree
    };
    move_mount_onto(mnt.as_fd(), fd.as_fd(), &what)?;
    if is_dir && m.tmpfs.is_none() {
        // The tmpfs now mounted there, for the next directories to bind.
        m.tmpfs = Some(resolve::open_in_root(root, Path::new(path), Create::Nothing)?);
    }
    m.done.push(path.to_string());
    Ok(())
}

/// Makes `path` read-only: bind it onto itself, then remount read-only.
pub fn readonly(root: BorrowedFd<'_>, path: &str) -> Result<(), SysError> {
    let fd = match resolve::open_in_root(root, Path::new(path), Create::Nothing) {
        Ok(fd) => fd,
        Err(e) if e.errno == nix::errno::Errno::ENOENT => return Ok(()),
        Err(e) => return Err(e),
    };
    let target = sys::fd_path(&fd);
    mount(Some(&target), &target, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(sys::err(
        "mount",
        format!("{path} (readonly bind)"),
        "MS_BIND|MS_REC",
    ))?;
    let top = resolve::open_in_root(root, Path::new(path), Create::Nothing)?;
    let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    mount(None::<&str>, &sys::fd_path(&top), None::<&str>, flags, None::<&str>)
        .or_else(|_| {
            let flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
            mount(None::<&str>, &sys::fd_path(&top), None::<&str>, flags, None::<&str>)
        })
        .map_err(sys::err("remount", format!("{path} (readonly)"), "MS_BIND|MS_REMOUNT|MS_RDONLY"))
}

/// `root.readonly`: remount / read-only, keeping its other flags.
pub fn readonly_root() -> Result<(), SysError> {
    let st = nix::sys::statvfs::statvfs("/").map_err(sys::err("statvfs", "/", ""))?;
    let mut flags = MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY;
    use nix::sys::statvfs::FsFlags as V;
    for (v, m) in [(V::ST_NOSUID, MsFlags::MS_NOSUID), (V::ST_NODEV, MsFlags::MS_NODEV), (V::ST_NOEXEC, MsFlags::MS_NOEXEC)] {
        if st.flags().contains(v) {
            flags |= m;
        }
    }
    mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(sys::err("remount", "/", format!("{flags:?}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn propagation_modes() {
        assert_eq!(propagation_flags("rslave").unwrap(), MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(propagation_flags("shared").unwrap(), MsFlags::MS_SHARED);
        assert!(propagation_flags("bogus").is_err());
        assert_eq!(setup_propagation(None), MsFlags::MS_SLAVE | MsFlags::MS_REC);
        assert_eq!(setup_propagation(Some(MsFlags::MS_SHARED)), MsFlags::MS_SHARED | MsFlags::MS_REC);
        assert_eq!(setup_propagation(Some(MsFlags::MS_UNBINDABLE)), MsFlags::MS_PRIVATE | MsFlags::MS_REC);
    }

    #[test]
    fn only_a_shared_or_non_recursive_propagation_may_leave_the_rootfs_parent_shared() {
        for mode in ["rslave", "rprivate", "runbindable"] {
            assert!(!leaves_a_shared_mount(propagation_flags(mode).unwrap()), "{mode}");
        }
        for mode in ["slave", "private", "unbindable", "shared", "rshared"] {
            assert!(leaves_a_shared_mount(propagation_flags(mode).unwrap()), "{mode}");
        }
    }

    #[test]
    fn mountinfo_escapes() {
        assert_eq!(unescape_mountinfo(r"/a\040b\134c"), "/a b\\c");
        assert_eq!(unescape_mountinfo(r"/plain"), "/plain");
    }

    #[test]
    fn spec_device_replaces_default() {
        let d: LinuxDevice = serde_json::from_str(r#"{"path":"/dev/null","type":"c","major":1,"minor":3,"fileMode":384}"#).unwrap();
        let list = device_list(&[d]);
        assert_eq!(list.iter().filter(|x| x.path == "/dev/null").count(), 1);
        assert_eq!(list.iter().find(|x| x.path == "/dev/null").unwrap().mode, 0o600);
        assert_eq!(list.len(), 6);
    }
}
