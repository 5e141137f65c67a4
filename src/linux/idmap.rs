//! Idmapped bind mounts: the `idmap` and `ridmap` mount options of
//! runtime-spec 1.2, and bind mounts with `uidMappings`/`gidMappings` but
//! neither option (idmapped as with `idmap`, as runc does). Files on such a mount show their owners through a user
//! namespace's id mappings: the mount's own `uidMappings`/`gidMappings`
//! (`containerID` is the owner on disk, `hostID` the owner the mount shows),
//! or, without them, the container's user namespace, so that files the host
//! owns as root are root's inside a user-namespaced container too.
//!
//! The mounts are made by the parent, on the host: `open_tree(OPEN_TREE_CLONE)`
//! of the source, then `mount_setattr(MOUNT_ATTR_IDMAP)` on that detached
//! copy. Only the host's root may idmap a host filesystem, and init may be
//! in a user namespace by then. Each detached mount goes to init over the
//! sync socket, and init moves it into place (`mounts::apply`). `ridmap`
//! idmaps the submounts of an `rbind` too; `idmap` only the top mount.
//!
//! A mount's own mappings need a user namespace that holds them: a child
//! made with CLONE_NEWUSER that only waits, whose maps are written, whose
//! namespace is opened, and which is then killed. The namespace lives on in
//! the mount.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sched::CloneFlags;
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use oci_spec::runtime::{LinuxIdMapping, Mount};

use super::mounts;
use crate::sys::{self, Forked, SysError, mount_api};

/// One idmapped bind mount, decided.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IdmapMount {
    /// Its place in config.json's `mounts` (init matches the fd by it).
    pub index: usize,
    pub source: PathBuf,
    pub dest: PathBuf,
    /// Copy the submounts too (`rbind`).
    pub rbind: bool,
    /// Idmap the submounts too (`ridmap`).
    pub recursive: bool,
    /// `uid_map` and `gid_map` text of the mount's own mappings; `None`:
    /// the container's user namespace.
    pub maps: Option<(String, String)>,
}

/// The idmapped mounts of `mounts`, checked: bind mounts only, with both
/// mappings or neither, and neither only for a container with a user
/// namespace of its own. Relative sources are relative to the bundle.
pub fn plan(mounts: &[Mount], bundle: &Path, container_userns: bool) -> Result<Vec<IdmapMount>, String> {
    let mut out = Vec::new();
    for (index, m) in mounts.iter().enumerate() {
        // Most configs have none: only those mounts are planned here.
        if !m.options().iter().flatten().any(|o| mounts::IDMAP_OPTIONS.contains(&o.as_str())) && !mounts::has_mappings(m) {
            continue;
        }
        let op = mounts::plan(m);
        let Some(recursive) = op.idmap else { continue };
        let dest = op.dest.clone();
        let opt = if recursive { "ridmap" } else { "idmap" };
        if !op.is_bind() {
            return Err(format!("mount {}: {opt} is only for bind mounts", dest.display()));
        }
        let source = op.source.clone().ok_or_else(|| format!("mount {}: {opt} needs a source", dest.display()))?;
        let source = if source.is_absolute() { source } else { bundle.join(source) };
        let text = |maps: &Option<Vec<LinuxIdMapping>>| {
            maps.as_ref()
                .filter(|v| !v.is_empty())
                .map(|v| v.iter().map(|x| format!("{} {} {}\n", x.container_id(), x.host_id(), x.size())).collect::<String>())
        };
        let maps = match (text(m.uid_mappings()), text(m.gid_mappings())) {
            (Some(u), Some(g)) => Some((u, g)),
            (None, None) if container_userns => None,
            (None, None) => {
                return Err(format!(
                    "mount {}: {opt} without uidMappings and gidMappings needs the container's own user namespace",
                    dest.display()
                ));
            }
            _ => return Err(format!("mount {}: {opt} needs both uidMappings and gidMappings", dest.display())),
        };
        out.push(IdmapMount { index, source, dest, rbind: op.flags.contains(nix::mount::MsFlags::MS_REC), recursive, maps });
    }
    Ok(out)
}

/// Makes each idmapped mount, detached; `container_userns` is the
/// container's user namespace file (it serves mounts without mappings of
/// their own). A mount whose source lies inside `rootfs` is left out: it
/// is of the container's own tree, which earlier mounts make, so init asks
/// for it when its turn comes (`prepare_in_container`).
pub fn prepare(plan: &[IdmapMount], container_userns: &Path, rootfs: &Path) -> Result<Vec<(usize, OwnedFd)>, SysError> {
    let mut out = Vec::new();
    for m in plan.iter().filter(|m| !m.source.starts_with(rootfs)) {
        let what = format!("{} -> {}", m.source.display(), m.dest.display());
        let src = open(&m.source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open", &what, "O_PATH"))?;
        let tree = mount_api::clone_tree_rec(src.as_fd(), m.rbind, &what)?;
        let userns = userns_of(m, container_userns)?;
        sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd(), m.recursive, &what)?;
        out.push((m.index, tree));
    }
    Ok(out)
}

fn userns_of(m: &IdmapMount, container_userns: &Path) -> Result<OwnedFd, SysError> {
    match &m.maps {
        Some((uid, gid)) => userns_with(uid, gid),
        None => open(container_userns, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
            "open",
            container_userns.display(),
            "O_RDONLY",
        )),
    }
}

/// The idmapped mount number `index` whose source lies inside `rootfs`,
/// made from init's mount namespace as it is now (the config's earlier
/// mounts done): a child of the parent joins that namespace, staying root
/// of the host (open_tree clones only mounts of the caller's namespace, and
/// idmapping needs the host's privilege over the namespace of the maps),
/// opens the source inside the rootfs without leaving it (a symlink there
/// cannot lead to the host's files), clones and idmaps it, and hands the
/// detached mount back. glibc's fork (see `sys`): the child may allocate.
pub fn prepare_in_container(
    plan: &[IdmapMount],
    index: usize,
    init: Pid,
    container_userns: &Path,
    rootfs: &Path,
) -> Result<OwnedFd, SysError> {
    use std::os::unix::net::UnixDatagram;
    let m = plan.iter().find(|m| m.index == index && m.source.starts_with(rootfs)).ok_or_else(|| {
        sys::err("idmap", format!("mount {index}"), "not an idmapped mount with a source in the rootfs")(nix::errno::Errno::EINVAL)
    })?;
    let what = format!("{} -> {}", m.source.display(), m.dest.display());
    let userns = userns_of(m, container_userns)?;
    let mntns_path = format!("/proc/{init}/ns/mnt");
    let mntns = open(Path::new(&mntns_path), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
        "open",
        &mntns_path,
        "O_RDONLY",
    ))?;
    let (ours, theirs) = UnixDatagram::pair().map_err(sys::io_err("socketpair", Path::new("idmap helper")))?;
    let rel = m.source.strip_prefix(rootfs).unwrap_or(Path::new("")).to_path_buf();
    match sys::fork_process()? {
        Forked::Child => {
            drop(ours);
            let made = (|| -> Result<OwnedFd, SysError> {
                nix::sched::setns(mntns.as_fd(), CloneFlags::CLONE_NEWNS).map_err(sys::err("setns", &mntns_path, "CLONE_NEWNS"))?;
                let root = open(rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
                    "open",
                    rootfs.display(),
                    "O_PATH|O_DIRECTORY",
                ))?;
                let src = super::resolve::open_file_in_root(root.as_fd(), &rel, OFlag::O_PATH | OFlag::O_CLOEXEC)?;
                let tree = mount_api::clone_tree_rec(src.as_fd(), m.rbind, &what)?;
                sys::mount_setattr_idmap(tree.as_fd(), userns.as_fd(), m.recursive, &what)?;
                Ok(tree)
            })();
            let code = match made {
                Ok(tree) => send_tree(&theirs, &tree).map_or(1, |_| 0),
                Err(e) => {
                    let _ = theirs.send(e.to_string().as_bytes());
                    1
                }
            };
            sys::exit_now(code)
        }
        Forked::Parent(pid) => {
            drop(theirs);
            let got = recv_tree(&ours);
            let _ = nix::sys::wait::waitpid(pid, None);
            match got {
                Ok((Some(fd), _)) => Ok(fd),
                Ok((None, msg)) => {
                    Err(sys::err("idmap", format!("{what} ({msg})"), "in the container's mount namespace")(nix::errno::Errno::EPERM))
                }
                Err(e) => Err(e),
            }
        }
    }
}

/// The bind mounts of a user-namespaced container that are not idmapped,
/// cloned on the host (`open_tree(OPEN_TREE_CLONE)`, with submounts for an
/// `rbind`): init, root only of its own user namespace, may not reach a
/// source that only the host's root can (a 0700 directory of root's), as
/// runc opens them before the namespace too. Init moves each into place.
pub fn clone_sources(mounts: &[Mount], bundle: &Path, rootfs: &Path, idmapped: &[IdmapMount]) -> Result<Vec<(usize, OwnedFd)>, SysError> {
    let mut out = Vec::new();
    for (index, m) in mounts.iter().enumerate() {
        let op = mounts::plan(m);
        if !op.is_bind() || op.idmap.is_some() || idmapped.iter().any(|i| i.index == index) {
            continue;
        }
        let Some(source) = op.source.as_deref() else { continue };
        let source = if source.is_absolute() { source.to_path_buf() } else { bundle.join(source) };
        // A source inside the rootfs is part of the container's own tree
        // (earlier mounts may have made it): init binds it, in its namespace.
        if source.starts_with(rootfs) {
            continue;
        }
        let what = format!("{} -> {}", source.display(), op.dest.display());
        let src = open(&source, OFlag::O_PATH | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open bind source", &what, "O_PATH"))?;
        out.push((index, mount_api::clone_tree_rec(src.as_fd(), op.flags.contains(nix::mount::MsFlags::MS_REC), &what)?));
    }
    Ok(out)
}

/// A user namespace with these maps, held by the returned fd.
/// A detached mount, as the single SCM_RIGHTS fd of a one-word datagram.
fn send_tree(sock: &std::os::unix::net::UnixDatagram, tree: &OwnedFd) -> Result<(), SysError> {
    use nix::sys::socket::{ControlMessage, MsgFlags, sendmsg};
    use std::os::fd::AsRawFd;
    let fds = [tree.as_raw_fd()];
    sendmsg::<()>(sock.as_raw_fd(), &[std::io::IoSlice::new(b"tree")], &[ControlMessage::ScmRights(&fds)], MsgFlags::empty(), None)
        .map(drop)
        .map_err(sys::err("sendmsg", "idmap helper", "SCM_RIGHTS"))
}

/// The helper's answer: the mount, or the text of its error.
fn recv_tree(sock: &std::os::unix::net::UnixDatagram) -> Result<(Option<OwnedFd>, String), SysError> {
    let mut buf = vec![0u8; 4096];
    let (n, fd) = sys::recv_with_fd(sock.as_fd(), &mut buf, "idmap helper")?;
    Ok((fd, String::from_utf8_lossy(&buf[..n]).into_owned()))
}

fn userns_with(uid_map: &str, gid_map: &str) -> Result<OwnedFd, SysError> {
    let pid = match sys::clone_process(CloneFlags::CLONE_NEWUSER.bits() as u64, None)? {
        Forked::Child => {
            // Only holds the namespace until the parent has opened it.
            let _ = nix::sys::prctl::set_pdeathsig(Signal::SIGKILL);
            loop {
                nix::unistd::pause();
            }
        }
        Forked::Parent(pid) => pid,
    };
    struct Reap(Pid);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = kill(self.0, Signal::SIGKILL);
            let _ = nix::sys::wait::waitpid(self.0, None);
        }
    }
    let _reap = Reap(pid);
    // Through the checked procfs handle, as every map strata writes.
    let proc = crate::procfs::ProcFs::mounted()?;
    proc.write(&format!("{pid}/uid_map"), uid_map.as_bytes())?;
    proc.write(&format!("{pid}/gid_map"), gid_map.as_bytes())?;
    let p = format!("/proc/{pid}/ns/user");
    open(Path::new(&p), OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open", &p, "O_RDONLY"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mount(v: serde_json::Value) -> Mount {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn plan_takes_the_mounts_own_maps_or_the_containers() {
        let ms = [
            mount(serde_json::json!({"destination": "/a", "type": "bind", "source": "/src", "options": ["rbind", "ridmap"],
                "uidMappings": [{"containerID": 1000, "hostID": 2000, "size": 1}],
                "gidMappings": [{"containerID": 1000, "hostID": 3000, "size": 2}]})),
            mount(serde_json::json!({"destination": "/b", "type": "none", "source": "rel", "options": ["bind", "idmap"]})),
            mount(serde_json::json!({"destination": "/proc", "type": "proc", "source": "proc"})),
        ];
        let p = plan(&ms, Path::new("/bundle"), true).unwrap();
        assert_eq!(p.len(), 2);
        assert_eq!((p[0].index, p[0].rbind, p[0].recursive), (0, true, true));
        assert_eq!(p[0].maps, Some(("1000 2000 1\n".into(), "1000 3000 2\n".into())));
        assert_eq!((p[1].index, p[1].rbind, p[1].recursive, &p[1].maps), (1, false, false, &None));
        assert_eq!(p[1].source, PathBuf::from("/bundle/rel"));
        // Without the container's user namespace, a mount needs maps of its own.
        assert!(plan(&ms, Path::new("/bundle"), false).unwrap_err().contains("mount /b: idmap"));
    }

    #[test]
    fn plan_refuses_what_cannot_be_idmapped() {
        let tmpfs = mount(serde_json::json!({"destination": "/t", "type": "tmpfs", "source": "tmpfs", "options": ["idmap"]}));
        assert!(plan(&[tmpfs], Path::new("/b"), true).unwrap_err().contains("only for bind mounts"));
        let half = mount(serde_json::json!({"destination": "/h", "type": "bind", "source": "/s", "options": ["idmap"],
            "uidMappings": [{"containerID": 0, "hostID": 1, "size": 1}]}));
        assert!(plan(&[half], Path::new("/b"), true).unwrap_err().contains("both uidMappings and gidMappings"));
    }
}
