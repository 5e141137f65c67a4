//! The overlay mount of a container's rootfs: an `OverlayPlan` (pure data,
//! tested without root) and the two ways to carry it out.
//!
//! - Classic `mount(2)` with one option string, when it fits in a page and
//!   no path needs escaping. The lowers are the store's short `l/<id>`
//!   links, so about 90 layers fit.
//! - The new mount API otherwise: `fsopen("overlay")`, one
//!   `fsconfig("lowerdir+", path)` per layer (Linux >= 6.8), then
//!   `fsmount` + `move_mount`. No length limit but the kernel's 500 lowers.
//!
//! Options, and why:
//! - `index=off`: with the index on, overlay records file handles of the
//!   lowers in the upper dir and refuses (ESTALE) a later mount whose
//!   lowers are not the very same inodes, e.g. after `prune` and a
//!   re-unpack of a layer; its benefits (hardlinks kept across copy-up, NFS
//!   export) are not used by containers.
//! - `redirect_dir=off`: renaming a lower directory then fails with EXDEV
//!   and `mv` copies instead; with redirects the upper dir would hold only
//!   a redirect xattr and `strata commit` would lose the directory's files.
//! - `metacopy=off`: with metacopy a chmod/chown copies up only metadata,
//!   and the upper file has no data for `commit` to archive.
//! - `userxattr`, for a rootless store only: the overlay is mounted by
//!   init, root of the container's user namespace, which may not use
//!   `trusted.*` xattrs; overlay then reads and writes its opaque markers
//!   as `user.overlay.*`, as the store's unpacker wrote them
//!   (`unpacker::Unpacker::UserNsRoot`).

use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::mount::{MntFlags, MsFlags};

use super::LayerError;
use crate::sys;
use crate::sys::mount_api::FsContext;

/// The kernel's limit on stacked lower layers (OVL_MAX_STACK).
pub const MAX_LOWERS: usize = 500;
/// mount(2) copies at most one page of options, NUL included.
const PAGE: usize = 4096;
const FIXED_OPTIONS: &[(&str, &str)] = &[("index", "off"), ("redirect_dir", "off"), ("metacopy", "off")];
/// With `userxattr` the kernel takes only `redirect_dir=nofollow` (where
/// `off` means "follow", as kernels built with REDIRECT_ALWAYS_FOLLOW have
/// it, it refuses the pair): redirects are neither made nor followed.
const USERXATTR_OPTIONS: &[(&str, &str)] = &[("index", "off"), ("redirect_dir", "nofollow"), ("metacopy", "off")];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OverlayPlan {
    /// Top first: the init layer, then the image layers last to first.
    pub lowers: Vec<PathBuf>,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub target: PathBuf,
    /// Mount with `userxattr` (a rootless store).
    pub userxattr: bool,
}

/// How a plan is mounted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Method {
    /// `mount("overlay", target, "overlay", 0, options)`.
    Classic(String),
    /// fsopen/fsconfig: each `(key, value)` set as a string, in order,
    /// then the flag `userxattr` if true.
    MountApi(Vec<(&'static str, PathBuf)>, bool),
}

impl OverlayPlan {
    /// Builds the plan for an image: `init` on top, then `layers` (given
    /// bottom first, as in the manifest) from the last to the first.
    pub fn new(init: PathBuf, layers: &[PathBuf], upper: PathBuf, work: PathBuf, target: PathBuf) -> OverlayPlan {
        let mut lowers = vec![init];
        lowers.extend(layers.iter().rev().cloned());
        OverlayPlan { lowers, upper, work, target, userxattr: false }
    }

    pub fn check(&self) -> Result<(), LayerError> {
        if self.lowers.is_empty() || self.lowers.len() > MAX_LOWERS {
            return Err(LayerError::Plan(format!("{} lower layers; overlay takes 1 to {MAX_LOWERS}", self.lowers.len())));
        }
        Ok(())
    }

    /// The classic option string, `None` if it would not fit in a page or a
    /// path holds a character the option syntax cannot carry.
    pub fn options(&self) -> Option<String> {
        let all = self.lowers.iter().chain([&self.upper, &self.work]);
        if all.clone().any(|p| p.to_str().is_none_or(|s| s.contains([',', ':', '\\', '=']))) {
            return None;
        }
        let lowers: Vec<&str> = self.lowers.iter().filter_map(|p| p.to_str()).collect();
        let mut s = format!("lowerdir={},upperdir={},workdir={}", lowers.join(":"), self.upper.display(), self.work.display());
        for (k, v) in self.fixed_options() {
            s.push_str(&format!(",{k}={v}"));
        }
        if self.userxattr {
            s.push_str(",userxattr");
        }
        (s.len() < PAGE).then_some(s)
    }

    fn fixed_options(&self) -> &'static [(&'static str, &'static str)] {
        if self.userxattr { USERXATTR_OPTIONS } else { FIXED_OPTIONS }
    }

    pub fn method(&self) -> Method {
        if let Some(o) = self.options() {
            return Method::Classic(o);
        }
        let mut v: Vec<(&'static str, PathBuf)> = self.lowers.iter().map(|l| ("lowerdir+", l.clone())).collect();
        v.push(("upperdir", self.upper.clone()));
        v.push(("workdir", self.work.clone()));
        v.extend(self.fixed_options().iter().map(|(k, val)| (*k, PathBuf::from(val))));
        Method::MountApi(v, self.userxattr)
    }
}

/// Mounts the plan on `plan.target`.
pub fn mount(plan: &OverlayPlan) -> Result<(), LayerError> {
    plan.check()?;
    match plan.method() {
        Method::Classic(options) => {
            nix::mount::mount(Some("overlay"), &plan.target, Some("overlay"), MsFlags::empty(), Some(options.as_str())).map_err(|e| {
                LayerError::Sys(sys::err(
                    "mount overlay",
                    plan.target.display(),
                    format!("{} lowers, options {} bytes", plan.lowers.len(), options.len()),
                )(e))
            })
        }
        Method::MountApi(params, userxattr) => {
            use std::os::unix::ffi::OsStrExt;
            let fs = FsContext::open("overlay")?;
            for (key, value) in &params {
                fs.set_string(key, value.as_os_str().as_bytes())?;
            }
            if userxattr {
                fs.set_flag("userxattr")?;
            }
            fs.create()?;
            fs.mount_at(0, &plan.target)?;
            Ok(())
        }
    }
}

/// The overlay of a container in a user namespace, detached (init moves it
/// into place). The shared layers are seen through idmapped mounts: each
/// lower dir, the init layer included, is cloned (`open_tree`) and idmapped
/// with the container's user namespace `userns`, so a file the store keeps
/// as the host's root shows as the container's root, and nothing is copied
/// or chowned. The container's own upper and work dirs are chowned to
/// `root` (the host ids of the container's uid and gid 0), so that what the
/// container writes is its root's. The overlay is mounted by the host's
/// root, so trusted.* xattrs (whiteouts, opaque dirs) work as they do
/// without a user namespace.
pub fn mount_idmapped(
    plan: &OverlayPlan,
    userns: std::os::fd::BorrowedFd<'_>,
    root: (u32, u32),
) -> Result<std::os::fd::OwnedFd, LayerError> {
    use std::os::fd::{AsFd, AsRawFd};
    plan.check()?;
    let mut trees = Vec::with_capacity(plan.lowers.len());
    for l in &plan.lowers {
        let what = l.display().to_string();
        let dir = nix::fcntl::open(
            l,
            nix::fcntl::OFlag::O_PATH | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC,
            nix::sys::stat::Mode::empty(),
        )
        .map_err(|e| LayerError::Sys(sys::err("open", &what, "O_PATH|O_DIRECTORY")(e)))?;
        let tree = sys::mount_api::clone_tree(dir.as_fd(), &what)?;
        sys::mount_setattr_idmap(tree.as_fd(), userns, false, &what)?;
        trees.push(tree);
    }
    for d in [&plan.upper, &plan.work] {
        std::os::unix::fs::chown(d, Some(root.0), Some(root.1)).map_err(|e| LayerError::Sys(sys::io_err("chown", d)(e)))?;
    }
    let fs = FsContext::open("overlay")?;
    let lowers: Vec<String> = trees.iter().map(|t| format!("/proc/self/fd/{}", t.as_raw_fd())).collect();
    let joined = lowers.join(":");
    if joined.len() < PAGE {
        fs.set_string("lowerdir", joined.as_bytes())?;
    } else {
        for l in &lowers {
            fs.set_string("lowerdir+", l.as_bytes())?;
        }
    }
    use std::os::unix::ffi::OsStrExt;
    fs.set_string("upperdir", plan.upper.as_os_str().as_bytes())?;
    fs.set_string("workdir", plan.work.as_os_str().as_bytes())?;
    for (k, v) in FIXED_OPTIONS {
        fs.set_string(k, v.as_bytes())?;
    }
    fs.create()?;
    Ok(fs.mount_detached(0)?)
}

/// Unmounts `target` (never following a symlink there). Not mounted is
/// not an error, so that delete can be repeated; a busy mount is detached.
pub fn unmount(target: &Path) -> Result<(), LayerError> {
    let flags = MntFlags::UMOUNT_NOFOLLOW;
    match nix::mount::umount2(target, flags) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => Ok(()),
        Err(Errno::EBUSY) => nix::mount::umount2(target, flags | MntFlags::MNT_DETACH)
            .map_err(|e| LayerError::Sys(sys::err("umount2", target.display(), "UMOUNT_NOFOLLOW|MNT_DETACH")(e))),
        Err(e) => Err(LayerError::Sys(sys::err("umount2", target.display(), "UMOUNT_NOFOLLOW")(e))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(n: usize) -> OverlayPlan {
        let layers: Vec<PathBuf> = (0..n).map(|i| PathBuf::from(format!("/var/lib/strata/l/{:026}", i))).collect();
        OverlayPlan::new(
            "/var/lib/strata/containers/c1/init".into(),
            &layers,
            "/var/lib/strata/containers/c1/upper".into(),
            "/var/lib/strata/containers/c1/work".into(),
            "/run/c1/rootfs".into(),
        )
    }

    #[test]
    fn lowers_are_init_then_top_to_bottom() {
        let p = plan(3);
        let names: Vec<String> = p.lowers.iter().map(|l| l.file_name().unwrap().to_string_lossy().into_owned()).collect();
        assert_eq!(names, ["init", &format!("{:026}", 2), &format!("{:026}", 1), &format!("{:026}", 0)]);
    }

    #[test]
    fn small_stacks_use_one_option_string() {
        let Method::Classic(o) = plan(2).method() else { panic!("expected classic") };
        assert!(o.starts_with("lowerdir=/var/lib/strata/containers/c1/init:/var/lib/strata/l/"), "{o}");
        assert!(o.ends_with(",upperdir=/var/lib/strata/containers/c1/upper,workdir=/var/lib/strata/containers/c1/work,index=off,redirect_dir=off,metacopy=off"), "{o}");
    }

    #[test]
    fn big_stacks_switch_to_the_mount_api() {
        let mut last_classic = 0;
        for n in 1..200 {
            if matches!(plan(n).method(), Method::Classic(_)) {
                last_classic = n;
            }
        }
        assert!((80..100).contains(&last_classic), "classic up to {last_classic} layers");
        let Method::MountApi(params, false) = plan(150).method() else { panic!("expected the mount API") };
        assert_eq!(params.iter().filter(|(k, _)| *k == "lowerdir+").count(), 151);
        assert_eq!(params[0], ("lowerdir+", PathBuf::from("/var/lib/strata/containers/c1/init")));
        assert!(params.contains(&("index", PathBuf::from("off"))));
    }

    #[test]
    fn awkward_paths_use_the_mount_api() {
        let mut p = plan(1);
        p.upper = "/var/lib/strata/containers/a:b/upper".into();
        assert!(p.options().is_none());
        p.upper = "/x,y".into();
        assert!(matches!(p.method(), Method::MountApi(..)));
    }

    #[test]
    fn too_many_lowers_are_refused() {
        assert!(plan(499).check().is_ok());
        assert!(plan(500).check().is_err());
    }

    /// Mounts 130 one-file layers and checks which file wins where.
    #[test]
    fn mounts_130_layers() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let base = std::env::temp_dir().join(format!("strata-ovl-{}", super::super::unique_name()));
        let mk = |p: &Path| std::fs::create_dir_all(p).unwrap();
        let mut layers = Vec::new();
        for i in 0..130 {
            let l = base.join(format!("l{i:03}"));
            mk(&l);
            std::fs::write(l.join(format!("f{i}")), format!("{i}")).unwrap();
            std::fs::write(l.join("same"), format!("{i}")).unwrap();
            layers.push(l);
        }
        for d in ["init", "upper", "work", "merged"] {
            mk(&base.join(d));
        }
        std::fs::write(base.join("init/hostname"), "init").unwrap();
        let p = OverlayPlan::new(base.join("init"), &layers, base.join("upper"), base.join("work"), base.join("merged"));
        assert!(matches!(p.method(), Method::MountApi(..)));
        mount(&p).unwrap();
        let m = base.join("merged");
        let checks = std::panic::catch_unwind(|| {
            assert_eq!(std::fs::read_to_string(m.join("f0")).unwrap(), "0");
            assert_eq!(std::fs::read_to_string(m.join("f129")).unwrap(), "129");
            assert_eq!(std::fs::read_to_string(m.join("same")).unwrap(), "129", "the last layer is on top");
            assert_eq!(std::fs::read_to_string(m.join("hostname")).unwrap(), "init");
            std::fs::write(m.join("new"), "x").unwrap();
            assert!(base.join("upper/new").exists());
        });
        unmount(&m).unwrap();
        std::fs::remove_dir_all(&base).unwrap();
        checks.unwrap();
    }
}
