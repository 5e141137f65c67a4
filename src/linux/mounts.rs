//! The mounts of config.json: options parsed into a plan (pure data, with
//! the option set runc accepts), then applied inside the rootfs through
//! fds resolved by `resolve`.

use std::os::fd::{AsFd, BorrowedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use oci_spec::runtime::Mount;

use super::resolve::{self, Create};
use crate::sys::{self, SysError};

/// mount_setattr(2) attribute bits.
pub const MOUNT_ATTR_RDONLY: u64 = 0x1;
pub const MOUNT_ATTR_NOSUID: u64 = 0x2;
pub const MOUNT_ATTR_NODEV: u64 = 0x4;
pub const MOUNT_ATTR_NOEXEC: u64 = 0x8;
/// The atime mode is a field, not a flag: one of RELATIME (0), NOATIME and
/// STRICTATIME within the `_ATIME` mask, which must be in `attr_clr`
/// whenever a mode is set.
pub const MOUNT_ATTR__ATIME: u64 = 0x70;
pub const MOUNT_ATTR_RELATIME: u64 = 0x0;
pub const MOUNT_ATTR_NOATIME: u64 = 0x10;
pub const MOUNT_ATTR_STRICTATIME: u64 = 0x20;
pub const MOUNT_ATTR_NODIRATIME: u64 = 0x80;
pub const MOUNT_ATTR_NOSYMFOLLOW: u64 = 0x0020_0000;

/// The mount_setattr(2) `(attr_set, attr_clr)` that give a bind mount the
/// per-mount flags of `flags` (what a `MS_REMOUNT|MS_BIND` would set).
pub fn bind_attrs(flags: MsFlags) -> (u64, u64) {
    let mut set = 0;
    for (f, a) in [
        (MsFlags::MS_RDONLY, MOUNT_ATTR_RDONLY),
        (MsFlags::MS_NOSUID, MOUNT_ATTR_NOSUID),
        (MsFlags::MS_NODEV, MOUNT_ATTR_NODEV),
        (MsFlags::MS_NOEXEC, MOUNT_ATTR_NOEXEC),
        (MsFlags::MS_NODIRATIME, MOUNT_ATTR_NODIRATIME),
    ] {
        if flags.contains(f) {
            set |= a;
        }
    }
    let atime = [
        (MsFlags::MS_NOATIME, MOUNT_ATTR_NOATIME),
        (MsFlags::MS_STRICTATIME, MOUNT_ATTR_STRICTATIME),
        (MsFlags::MS_RELATIME, MOUNT_ATTR_RELATIME),
    ]
    .into_iter()
    .find(|(f, _)| flags.contains(*f));
    match atime {
        Some((_, mode)) => (set | mode, MOUNT_ATTR__ATIME),
        None => (set, 0),
    }
}

/// One mount, fully decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MountOp {
    pub source: Option<PathBuf>,
    pub dest: PathBuf,
    pub fstype: String,
    pub flags: MsFlags,
    /// The flags the options cleared by name (`rw`, `dev`, `exec`, `suid`,
    /// `atime`, ...): what a bind's remount must not quietly keep.
    pub cleared: MsFlags,
    /// MS_SHARED, MS_PRIVATE, ... each applied after the mount.
    pub propagation: Vec<MsFlags>,
    /// Recursive attributes (`rro`, `rnosuid`, ...): (set, clear).
    pub rec_attrs: (u64, u64),
    pub data: String,
    /// `tmpcopyup`: seed a new tmpfs with what the directory held before.
    pub copy_up: bool,
    /// `idmap` (false) or `ridmap` (true): an idmapped bind mount, made on
    /// the host by the parent (`linux::idmap`) and moved into place here.
    pub idmap: Option<bool>,
}

impl MountOp {
    pub fn is_bind(&self) -> bool {
        self.flags.contains(MsFlags::MS_BIND)
    }
}

/// Parses a spec mount into a `MountOp`.
pub fn plan(m: &Mount) -> MountOp {
    let fstype = m.typ().clone().unwrap_or_default();
    let mut op = MountOp {
        source: m.source().clone(),
        dest: m.destination().clone(),
        fstype: fstype.clone(),
        flags: MsFlags::empty(),
        cleared: MsFlags::empty(),
        propagation: Vec::new(),
        rec_attrs: (0, 0),
        data: String::new(),
        copy_up: false,
        idmap: None,
    };
    if fstype == "bind" {
        op.flags |= MsFlags::MS_BIND;
    }
    let mut data = Vec::new();
    for o in m.options().iter().flatten() {
        apply_option(&mut op, o, &mut data);
    }
    op.data = data.join(",");
    // Mappings without `idmap` or `ridmap` still make an idmapped mount,
    // of the top mount only (runc's reading of runtime-spec 1.2).
    if op.idmap.is_none() && has_mappings(m) {
        op.idmap = Some(false);
    }
    op
}

/// Whether a mount carries `uidMappings` or `gidMappings` of its own.
pub fn has_mappings(m: &Mount) -> bool {
    m.uid_mappings().is_some() || m.gid_mappings().is_some()
}

/// The mount(2) flag options `apply_option` knows.
const FLAG_OPTIONS: [&str; 30] = [
    "defaults",
    "ro",
    "rw",
    "suid",
    "nosuid",
    "dev",
    "nodev",
    "exec",
    "noexec",
    "sync",
    "async",
    "dirsync",
    "remount",
    "mand",
    "nomand",
    "atime",
    "noatime",
    "diratime",
    "nodiratime",
    "relatime",
    "norelatime",
    "strictatime",
    "nostrictatime",
    "bind",
    "rbind",
    "silent",
    "loud",
    "nosymfollow",
    "symfollow",
    "tmpcopyup",
];

/// Idmapped bind mounts (runtime-spec 1.2), with the mount's own
/// `uidMappings`/`gidMappings` or the container's user namespace.
pub const IDMAP_OPTIONS: [&str; 2] = ["idmap", "ridmap"];

const PROPAGATION_OPTIONS: [&str; 8] = ["private", "rprivate", "shared", "rshared", "slave", "rslave", "unbindable", "runbindable"];

/// A sysfs mount turned into a read-only recursive bind of the host's /sys
/// (for a user namespace that does not own its network namespace).
pub fn sysfs_as_bind(op: &MountOp) -> MountOp {
    let mut b = op.clone();
    b.source = Some(PathBuf::from("/sys"));
    b.fstype = "bind".into();
    b.flags |= MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
    b.data.clear();
    b
}

/// Every option strata applies, sorted: what `features` lists.
pub fn known_options() -> Vec<&'static str> {
    let mut all: Vec<&str> =
        FLAG_OPTIONS.iter().chain(&PROPAGATION_OPTIONS).chain(&RECURSIVE_OPTIONS).chain(&IDMAP_OPTIONS).copied().collect();
    all.sort_unstable();
    all
}

fn apply_option(op: &mut MountOp, o: &str, data: &mut Vec<String>) {
    use MsFlags as F;
    let (set, clear): (F, F) = match o {
        "defaults" => (F::empty(), F::empty()),
        "ro" => (F::MS_RDONLY, F::empty()),
        "rw" => (F::empty(), F::MS_RDONLY),
        "suid" => (F::empty(), F::MS_NOSUID),
        "nosuid" => (F::MS_NOSUID, F::empty()),
        "dev" => (F::empty(), F::MS_NODEV),
        "nodev" => (F::MS_NODEV, F::empty()),
        "exec" => (F::empty(), F::MS_NOEXEC),
        "noexec" => (F::MS_NOEXEC, F::empty()),
        "sync" => (F::MS_SYNCHRONOUS, F::empty()),
        "async" => (F::empty(), F::MS_SYNCHRONOUS),
        "dirsync" => (F::MS_DIRSYNC, F::empty()),
        "remount" => (F::MS_REMOUNT, F::empty()),
        "mand" => (F::MS_MANDLOCK, F::empty()),
        "nomand" => (F::empty(), F::MS_MANDLOCK),
        "atime" => (F::empty(), F::MS_NOATIME),
        "noatime" => (F::MS_NOATIME, F::empty()),
        "diratime" => (F::empty(), F::MS_NODIRATIME),
        "nodiratime" => (F::MS_NODIRATIME, F::empty()),
        "relatime" => (F::MS_RELATIME, F::empty()),
        "norelatime" => (F::empty(), F::MS_RELATIME),
        "strictatime" => (F::MS_STRICTATIME, F::empty()),
        "nostrictatime" => (F::empty(), F::MS_STRICTATIME),
        "bind" => (F::MS_BIND, F::empty()),
        "rbind" => (F::MS_BIND | F::MS_REC, F::empty()),
        "nosymfollow" => (MS_NOSYMFOLLOW, F::empty()),
        "symfollow" => (F::empty(), MS_NOSYMFOLLOW),
        "silent" => (F::MS_SILENT, F::empty()),
        "loud" => (F::empty(), F::MS_SILENT),
        "private" | "rprivate" | "shared" | "rshared" | "slave" | "rslave" | "unbindable" | "runbindable" => {
            let base = match o.trim_start_matches('r') {
                "private" => F::MS_PRIVATE,
                "shared" => F::MS_SHARED,
                "slave" => F::MS_SLAVE,
                _ => F::MS_UNBINDABLE,
            };
            let rec = if o.starts_with('r') { F::MS_REC } else { F::empty() };
            op.propagation.push(base | rec);
            return;
        }
        "tmpcopyup" => {
            op.copy_up = true;
            return;
        }
        "idmap" | "ridmap" => {
            op.idmap = Some(o == "ridmap");
            return;
        }
        _ => {
            if let Some(mode) = recursive_atime(o) {
                // The last atime option wins; the whole field is cleared first.
                op.rec_attrs.0 = (op.rec_attrs.0 & !MOUNT_ATTR__ATIME) | mode;
                op.rec_attrs.1 |= MOUNT_ATTR__ATIME;
            } else if let Some(attr) = recursive_attr(o) {
                let (s, c) = attr;
                op.rec_attrs.0 = (op.rec_attrs.0 | s) & !c;
                op.rec_attrs.1 = (op.rec_attrs.1 | c) & !s;
            } else {
                data.push(o.to_string());
            }
            return;
        }
    };
    op.flags = (op.flags | set) & !clear;
    op.cleared = (op.cleared | clear) & !set;
}

/// `rro`, `rrw`, `rnosuid`, ...: recursive mount attributes (mount_setattr).
fn recursive_attr(o: &str) -> Option<(u64, u64)> {
    Some(match o {
        "rro" => (MOUNT_ATTR_RDONLY, 0),
        "rrw" => (0, MOUNT_ATTR_RDONLY),
        "rnosuid" => (MOUNT_ATTR_NOSUID, 0),
        "rsuid" => (0, MOUNT_ATTR_NOSUID),
        "rnodev" => (MOUNT_ATTR_NODEV, 0),
        "rdev" => (0, MOUNT_ATTR_NODEV),
        "rnoexec" => (MOUNT_ATTR_NOEXEC, 0),
        "rexec" => (0, MOUNT_ATTR_NOEXEC),
        "rnodiratime" => (MOUNT_ATTR_NODIRATIME, 0),
        "rdiratime" => (0, MOUNT_ATTR_NODIRATIME),
        "rnosymfollow" => (MOUNT_ATTR_NOSYMFOLLOW, 0),
        "rsymfollow" => (0, MOUNT_ATTR_NOSYMFOLLOW),
        _ => return None,
    })
}

/// The recursive atime options: the mode each one sets.
fn recursive_atime(o: &str) -> Option<u64> {
    Some(match o {
        "rnoatime" => MOUNT_ATTR_NOATIME,
        "rstrictatime" | "rnorelatime" => MOUNT_ATTR_STRICTATIME,
        "rrelatime" | "ratime" | "rnostrictatime" => MOUNT_ATTR_RELATIME,
        _ => return None,
    })
}

/// Every recursive option strata applies (what `features` lists).
pub const RECURSIVE_OPTIONS: [&str; 18] = [
    "rro",
    "rrw",
    "rnosuid",
    "rsuid",
    "rnodev",
    "rdev",
    "rnoexec",
    "rexec",
    "rnodiratime",
    "rdiratime",
    "rnosymfollow",
    "rsymfollow",
    "rnoatime",
    "rstrictatime",
    "rnorelatime",
    "rrelatime",
    "ratime",
    "rnostrictatime",
];

fn opt_str(s: &str) -> Option<&str> {
    (!s.is_empty()).then_some(s)
}

/// Filesystems that are mounted only on an ordinary directory: a symlink
/// there could make the kernel's own files appear where the image chose
/// (runc refuses the same).
pub fn is_kernel_fs(fstype: &str) -> bool {
    matches!(fstype, "proc" | "sysfs" | "devpts" | "mqueue")
}

/// Mounts `op` inside the rootfs whose fd is `root`. Cgroup mounts are
/// handled by the caller (they depend on the host's hierarchies). `tree`
/// is the detached mount an idmapped bind is made of (see `linux::idmap`).
/// The flags of a source's mount the kernel can lock (MNT_LOCK_*), which a
/// bind remount may have to keep. nosymfollow is not among them.
const LOCKABLE: MsFlags =
    MsFlags::MS_RDONLY.union(MsFlags::MS_NOSUID).union(MsFlags::MS_NODEV).union(MsFlags::MS_NOEXEC).union(ATIME_FLAGS);
/// MS_NOSYMFOLLOW (Linux 5.10), which nix does not name.
const MS_NOSYMFOLLOW: MsFlags = MsFlags::from_bits_retain(256);
const ATIME_FLAGS: MsFlags = MsFlags::MS_NOATIME.union(MsFlags::MS_NODIRATIME).union(MsFlags::MS_RELATIME).union(MsFlags::MS_STRICTATIME);

/// Remounts a bind with its flags. A remount may not clear a flag the
/// source's mount has locked: a mount a user-namespaced container gets from
/// the host (`locked`, as the kernel locks the mounts it copies into a less
/// privileged namespace, and as runc's containers see them), or one the
/// kernel refuses to change (EPERM: a FUSE mount of another user's). Then,
/// as mount(8) does, the source's flags the options did not clear by name
/// are kept (`bind,nosuid` of a read-only source stays read-only); an option
/// that clears a locked one, or an atime mode other than the source's,
/// fails with EPERM.
fn remount_bind(op: &MountOp, top: &std::os::fd::OwnedFd, rest: MsFlags, dest: &str, locked: bool) -> Result<(), SysError> {
    let tpath = sys::fd_path(top);
    let flags = rest | MsFlags::MS_BIND | MsFlags::MS_REMOUNT;
    let fail = |flags: MsFlags| sys::err("remount", dest, format!("{flags:?} dest {dest}"));
    if !locked {
        match mount(None::<&str>, &tpath, None::<&str>, flags, None::<&str>) {
            Ok(()) => return Ok(()),
            Err(nix::errno::Errno::EPERM) => {}
            Err(e) => return Err(fail(flags)(e)),
        }
    }
    let src_flags = statvfs_to_ms(sys::mount_flags(top.as_fd(), dest)?);
    if locked && !changes_locked(rest, src_flags) {
        // What the kernel lets a remount of a locked mount do: keep every
        // locked flag (an option that only clears one, `bind,diratime`,
        // leaves it as it was, as with runc).
        return mount(None::<&str>, &tpath, None::<&str>, flags, None::<&str>).map_err(fail(flags));
    }
    let atime_asked = rest & ATIME_FLAGS;
    if (src_flags & LOCKABLE).intersects(op.cleared) || (!atime_asked.is_empty() && atime_asked != src_flags & ATIME_FLAGS) {
        return Err(fail(flags)(nix::errno::Errno::EPERM));
    }
    let kept = flags | (src_flags & LOCKABLE);
    mount(None::<&str>, &tpath, None::<&str>, kept, None::<&str>).map_err(fail(kept))
}

/// Whether a bind remount with `flags` would change a flag of a locked
/// mount with `src` (the kernel's can_change_locked_flags): drop ro,
/// nodev, nosuid or noexec, or give another atime mode. A remount that
/// names no atime flag keeps the mount's.
fn changes_locked(flags: MsFlags, src: MsFlags) -> bool {
    let bits = MsFlags::MS_RDONLY | MsFlags::MS_NODEV | MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
    if !flags.contains(src & bits) {
        return true;
    }
    if (flags & ATIME_FLAGS).is_empty() {
        return false;
    }
    // The mode mount(2) makes of the flags: relatime unless noatime or
    // strictatime; strictatime drops noatime too.
    let strict = flags.contains(MsFlags::MS_STRICTATIME);
    let asked = (
        flags.contains(MsFlags::MS_NOATIME) && !strict,
        !flags.contains(MsFlags::MS_NOATIME) && !strict,
        flags.contains(MsFlags::MS_NODIRATIME),
    );
    let have = (src.contains(MsFlags::MS_NOATIME), src.contains(MsFlags::MS_RELATIME), src.contains(MsFlags::MS_NODIRATIME));
    asked != have
}

/// Mount flags as statvfs's `f_flag` bits say them (`ST_*`, Linux's values).
fn statvfs_to_ms(f: u64) -> MsFlags {
    let table = [
        (1, MsFlags::MS_RDONLY),        // ST_RDONLY
        (2, MsFlags::MS_NOSUID),        // ST_NOSUID
        (4, MsFlags::MS_NODEV),         // ST_NODEV
        (8, MsFlags::MS_NOEXEC),        // ST_NOEXEC
        (1024, MsFlags::MS_NOATIME),    // ST_NOATIME
        (2048, MsFlags::MS_NODIRATIME), // ST_NODIRATIME
        (4096, MsFlags::MS_RELATIME),   // ST_RELATIME
        (8192, MS_NOSYMFOLLOW),         // ST_NOSYMFOLLOW (Linux 5.10)
    ];
    table.iter().filter(|(bit, _)| f & bit != 0).fold(MsFlags::empty(), |a, (_, m)| a | *m)
}

/// A tmpfs without `mode=` takes the mode of the directory it covers (one
/// the rootfs had), as with runc: tmpfs's own default, 1777, would open a
/// directory the image keeps closed.
fn tmpfs_data(op: &MountOp, target: BorrowedFd<'_>) -> String {
    if op.fstype != "tmpfs" || op.data.split(',').any(|o| o.starts_with("mode=")) {
        return op.data.clone();
    }
    match nix::sys::stat::fstat(target) {
        Ok(st) => {
            let mode = format!("mode={:o}", st.st_mode & 0o7777);
            if op.data.is_empty() { mode } else { format!("{},{mode}", op.data) }
        }
        Err(_) => op.data.clone(),
    }
}

/// Makes one mount. `tree` is a detached mount made by the parent (see
/// `linux::idmap`); `userns`: the container has a user namespace, so a
/// bind's flags from the host are locked (see `remount_bind`).
pub fn apply(root: BorrowedFd<'_>, op: &MountOp, tree: Option<std::os::fd::OwnedFd>, userns: bool) -> Result<(), SysError> {
    let locked = userns && tree.is_some();
    let create = if let (true, Some(t)) = (op.is_bind(), &tree) {
        // Made by the parent: its kind from the tree itself.
        let st = nix::sys::stat::fstat(t.as_fd()).map_err(sys::err("fstat", op.dest.display(), "bind tree"))?;
        if st.st_mode & libc::S_IFMT == libc::S_IFDIR { Create::Dir } else { Create::File }
    } else if op.is_bind() {
        match op.source.as_deref().map(std::fs::metadata) {
            Some(Ok(m)) if !m.is_dir() => Create::File,
            Some(Err(e)) => {
                let src = op.source.as_deref().unwrap_or(Path::new("")).display();
                return Err(sys::io_err("stat bind source", Path::new(&src.to_string()))(e));
            }
            _ => Create::Dir,
        }
    } else {
        Create::Dir
    };
    // A tmpfs takes the mode of a directory that was there (runc's rule);
    // on one made now, its own default (1777).
    let found = if op.fstype == "tmpfs" { resolve::open_in_root(root, &op.dest, Create::Nothing).ok() } else { None };
    let existed = found.is_some();
    let target = if is_kernel_fs(&op.fstype) && !op.is_bind() {
        resolve::open_plain_dir(root, &op.dest)?
    } else if let Some(fd) = found {
        // What open_in_root would open again: the same path, found.
        fd
    } else {
        resolve::open_in_root(root, &op.dest, create)?
    };
    let tpath = sys::fd_path(&target);
    let dest = op.dest.display();
    let what = |flags: MsFlags| format!("{flags:?} dest {dest}");
    if op.is_bind() {
        let bind = op.flags & (MsFlags::MS_BIND | MsFlags::MS_REC);
        let from = format!("{} -> {dest}", op.source.as_deref().unwrap_or(Path::new("")).display());
        match tree {
            Some(tree) => sys::mount_api::move_mount_onto(tree.as_fd(), target.as_fd(), &from)?,
            None => mount(op.source.as_deref(), &tpath, None::<&str>, bind, None::<&str>).map_err(sys::err("mount", from, what(bind)))?,
        }
        let rest = op.flags & !(MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_REMOUNT);
        // A remount also when an option only clears (`bind,dev`): the bind
        // copied the source's flags, which the option takes off.
        if !rest.is_empty() || !op.cleared.is_empty() {
            // Re-open: the bind mount sits on top of the fd we resolved.
            let top = resolve::open_in_root(root, &op.dest, Create::Nothing)?;
            remount_bind(op, &top, rest, &dest.to_string(), locked)?;
        }
    } else {
        // For tmpcopyup: the directory as it is before the tmpfs hides it.
        let below = if op.copy_up {
            Some(
                nix::fcntl::open(
                    &tpath,
                    nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
                    nix::sys::stat::Mode::empty(),
                )
                .map_err(sys::err("open", dest.to_string(), "O_DIRECTORY (tmpcopyup)"))?,
            )
        } else {
            None
        };
        let src = op.source.as_deref().map(|p| p.to_string_lossy().into_owned()).unwrap_or_else(|| op.fstype.clone());
        let data = if existed { tmpfs_data(op, target.as_fd()) } else { op.data.clone() };
        mount(Some(src.as_str()), &tpath, Some(op.fstype.as_str()), op.flags, opt_str(&data)).map_err(sys::err(
            "mount",
            format!("{} ({}) -> {dest}", src, op.fstype),
            format!("{:?} data {:?}", op.flags, data),
        ))?;
        if let Some(below) = below {
            let top = resolve::open_in_root(root, &op.dest, Create::Nothing)?;
            copy_tree(&sys::fd_path(&below), &sys::fd_path(&top)).map_err(|e| sys::io_err("tmpcopyup", &op.dest)(e))?;
        }
    }
    if !op.propagation.is_empty() || op.rec_attrs != (0, 0) {
        let top = resolve::open_in_root(root, &op.dest, Create::Nothing)?;
        for p in &op.propagation {
            mount(None::<&str>, &sys::fd_path(&top), None::<&str>, *p, None::<&str>).map_err(sys::err(
                "mount propagation",
                dest.to_string(),
                format!("{p:?}"),
            ))?;
        }
        if op.rec_attrs != (0, 0) {
            let fd = nix::fcntl::open(
                &sys::fd_path(&top),
                nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_CLOEXEC,
                nix::sys::stat::Mode::empty(),
            )
            .map_err(sys::err("open", dest.to_string(), "O_PATH"))?;
            sys::mount_setattr_recursive(fd.as_fd(), op.rec_attrs.0, op.rec_attrs.1, &dest.to_string())?;
        }
    }
    Ok(())
}

/// Copies a directory's contents (files, dirs, symlinks; modes and owners)
/// without following symlinks: what `tmpcopyup` asks for.
fn copy_tree(src: &Path, dst: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    for entry in std::fs::read_dir(src)? {
        let entry = entry?;
        let (from, to) = (entry.path(), dst.join(entry.file_name()));
        let meta = std::fs::symlink_metadata(&from)?;
        let ft = meta.file_type();
        if ft.is_symlink() {
            std::os::unix::fs::symlink(std::fs::read_link(&from)?, &to)?;
        } else if ft.is_dir() {
            std::fs::create_dir(&to)?;
            copy_tree(&from, &to)?;
        } else if ft.is_file() {
            std::fs::copy(&from, &to)?;
        } else {
            continue; // devices, fifos and sockets are not copied up
        }
        std::os::unix::fs::lchown(&to, Some(meta.uid()), Some(meta.gid()))?;
        if !ft.is_symlink() {
            std::fs::set_permissions(&to, std::fs::Permissions::from_mode(meta.mode() & 0o7777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn m(json: &str) -> MountOp {
        plan(&serde_json::from_str::<Mount>(json).unwrap())
    }

    #[test]
    fn a_remount_of_a_locked_mount_keeps_its_flags_as_the_kernel_rules() {
        use MsFlags as F;
        let src = F::MS_NODIRATIME | F::MS_RELATIME;
        // `bind,diratime`: no flag named, the atime mode kept.
        assert!(!changes_locked(F::empty(), src));
        assert!(changes_locked(F::MS_STRICTATIME, src));
        assert!(!changes_locked(F::MS_NODIRATIME | F::MS_RELATIME, src));
        assert!(!changes_locked(F::MS_NODIRATIME, src), "relatime is mount(2)'s default");
        assert!(changes_locked(F::MS_NOATIME, src));
        // Locked bits must stay set.
        assert!(changes_locked(F::empty(), F::MS_NODEV | F::MS_RELATIME));
        assert!(!changes_locked(F::MS_NODEV | F::MS_RDONLY, F::MS_NODEV | F::MS_RELATIME));
    }

    #[test]
    fn proc_and_tmpfs_options() {
        let op = m(r#"{"destination":"/dev","type":"tmpfs","source":"tmpfs","options":["nosuid","strictatime","mode=755","size=65536k"]}"#);
        assert_eq!(op.flags, MsFlags::MS_NOSUID | MsFlags::MS_STRICTATIME);
        assert_eq!(op.data, "mode=755,size=65536k");
        assert!(!op.is_bind());
    }

    #[test]
    fn bind_with_flags_and_propagation() {
        let op = m(r#"{"destination":"/x","type":"none","source":"/tmp","options":["rbind","ro","nosuid","rprivate","rro"]}"#);
        assert!(op.is_bind());
        assert_eq!(op.flags, MsFlags::MS_BIND | MsFlags::MS_REC | MsFlags::MS_RDONLY | MsFlags::MS_NOSUID);
        assert_eq!(op.propagation, vec![MsFlags::MS_PRIVATE | MsFlags::MS_REC]);
        assert_eq!(op.rec_attrs, (MOUNT_ATTR_RDONLY, 0));
        assert_eq!(op.data, "");
    }

    #[test]
    fn tmpcopyup_is_ours_not_the_kernels() {
        let op = m(r#"{"destination":"/tmp","type":"tmpfs","source":"tmpfs","options":["rw","tmpcopyup","size=1m"]}"#);
        assert!(op.copy_up);
        assert_eq!(op.data, "size=1m");
    }

    #[test]
    fn recursive_atime_is_a_field_and_every_option_is_known() {
        let op = m(r#"{"destination":"/x","type":"bind","source":"/tmp","options":["rbind","rnoatime","rnodiratime","rnosymfollow"]}"#);
        assert_eq!(op.rec_attrs, (MOUNT_ATTR_NOATIME | MOUNT_ATTR_NODIRATIME | MOUNT_ATTR_NOSYMFOLLOW, MOUNT_ATTR__ATIME));
        let op = m(r#"{"destination":"/x","type":"bind","source":"/tmp","options":["rbind","rnoatime","rstrictatime"]}"#);
        assert_eq!(op.rec_attrs, (MOUNT_ATTR_STRICTATIME, MOUNT_ATTR__ATIME));
        for o in RECURSIVE_OPTIONS {
            let op = m(&format!(r#"{{"destination":"/x","type":"bind","source":"/tmp","options":["rbind","{o}"]}}"#));
            assert_eq!(op.data, "", "{o} fell through to the mount data");
            assert_ne!(op.rec_attrs, (0, 0), "{o} has no effect");
        }
        // Every listed option is taken by a table, none lands in the data.
        for o in known_options() {
            let op = m(&format!(r#"{{"destination":"/x","type":"tmpfs","source":"tmpfs","options":["{o}"]}}"#));
            assert_eq!(op.data, "", "{o} is listed but not applied");
        }
    }

    #[test]
    fn bind_attrs_are_the_remount_flags() {
        let f = MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC | MsFlags::MS_RELATIME;
        assert_eq!(bind_attrs(f), (MOUNT_ATTR_RDONLY | MOUNT_ATTR_NOSUID | MOUNT_ATTR_NODEV | MOUNT_ATTR_NOEXEC, MOUNT_ATTR__ATIME));
        assert_eq!(
            bind_attrs(MsFlags::MS_NOATIME | MsFlags::MS_NODIRATIME),
            (MOUNT_ATTR_NOATIME | MOUNT_ATTR_NODIRATIME, MOUNT_ATTR__ATIME)
        );
        assert_eq!(bind_attrs(MsFlags::MS_BIND), (0, 0));
    }

    #[test]
    fn later_options_win() {
        let op = m(r#"{"destination":"/x","type":"bind","source":"/tmp","options":["ro","rw","shared"]}"#);
        assert_eq!(op.flags, MsFlags::MS_BIND);
        assert_eq!(op.propagation, vec![MsFlags::MS_SHARED]);
    }
}
