//! Which namespaces the container gets, as a plan computed from the spec
//! (pure data, unit-tested), and the steps that carry it out.
//!
//! * New namespaces go into the clone flags, except two: the cgroup
//!   namespace is unshared by init only after the parent has put it into its
//!   cgroup (so the namespace root is the container's cgroup), and the time
//!   namespace, which clone(2) cannot create, is unshared by the parent
//!   before the clone (it applies to children only).
//! * Namespaces given by `path` are joined by init with setns(2), the user
//!   namespace last (before it, init is host root and may join anything).
//!   pid and time namespaces apply to children only, so the parent joins
//!   those around the clone.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sched::{CloneFlags, setns, unshare};
use nix::sys::stat::Mode;
use oci_spec::runtime::{Linux, LinuxNamespaceType};

use crate::sys::{self, SysError};

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Kind {
    Mount,
    Uts,
    Ipc,
    Net,
    Pid,
    Cgroup,
    Time,
    User,
}

impl Kind {
    pub fn from_oci(t: LinuxNamespaceType) -> Kind {
        match t {
            LinuxNamespaceType::Mount => Kind::Mount,
            LinuxNamespaceType::Cgroup => Kind::Cgroup,
            LinuxNamespaceType::Uts => Kind::Uts,
            LinuxNamespaceType::Ipc => Kind::Ipc,
            LinuxNamespaceType::User => Kind::User,
            LinuxNamespaceType::Pid => Kind::Pid,
            LinuxNamespaceType::Network => Kind::Net,
            LinuxNamespaceType::Time => Kind::Time,
        }
    }

    pub fn flag(self) -> CloneFlags {
        match self {
            Kind::Mount => CloneFlags::CLONE_NEWNS,
            Kind::Uts => CloneFlags::CLONE_NEWUTS,
            Kind::Ipc => CloneFlags::CLONE_NEWIPC,
            Kind::Net => CloneFlags::CLONE_NEWNET,
            Kind::Pid => CloneFlags::CLONE_NEWPID,
            Kind::Cgroup => CloneFlags::CLONE_NEWCGROUP,
            Kind::Time => CloneFlags::from_bits_retain(libc::CLONE_NEWTIME),
            Kind::User => CloneFlags::CLONE_NEWUSER,
        }
    }

    /// The name under `/proc/<pid>/ns/`.
    pub fn proc_name(self) -> &'static str {
        match self {
            Kind::Mount => "mnt",
            Kind::Uts => "uts",
            Kind::Ipc => "ipc",
            Kind::Net => "net",
            Kind::Pid => "pid",
            Kind::Cgroup => "cgroup",
            Kind::Time => "time",
            Kind::User => "user",
        }
    }

    /// Namespaces that setns(2)/unshare(2) apply to the caller's children only.
    fn for_children(self) -> bool {
        matches!(self, Kind::Pid | Kind::Time)
    }
}

/// The namespace plan of one container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// Flags for clone3: new namespaces created with the process.
    pub clone_flags: CloneFlags,
    /// New namespaces init unshares itself, after the listed joins.
    pub unshare_in_init: CloneFlags,
    /// A new time namespace, unshared by the parent before clone.
    pub new_time: bool,
    /// Namespaces the parent joins around the clone (pid, time).
    pub parent_joins: Vec<(Kind, PathBuf)>,
    /// Namespaces init joins, in order (user last).
    pub init_joins: Vec<(Kind, PathBuf)>,
    pub new: Vec<Kind>,
    /// A new pid namespace with a joined user namespace: init unshares it
    /// after the join (so that the joined user namespace owns it) and a
    /// child of init's becomes the container's pid 1 (`process::init`).
    pub pid_after_join: bool,
}

impl Default for Plan {
    fn default() -> Self {
        Plan {
            clone_flags: CloneFlags::empty(),
            unshare_in_init: CloneFlags::empty(),
            new_time: false,
            parent_joins: Vec::new(),
            init_joins: Vec::new(),
            new: Vec::new(),
            pid_after_join: false,
        }
    }
}

impl Plan {
    pub fn has_new(&self, k: Kind) -> bool {
        self.new.contains(&k)
    }

    pub fn joins(&self, k: Kind) -> bool {
        self.init_joins.iter().chain(&self.parent_joins).any(|(j, _)| *j == k)
    }

    /// Whether the container runs in a user namespace (new or joined).
    pub fn userns(&self) -> bool {
        self.has_new(Kind::User) || self.joins(Kind::User)
    }
}

pub fn plan(linux: Option<&Linux>) -> Plan {
    let mut p = Plan::default();
    let list = linux.and_then(|l| l.namespaces().as_ref());
    let mut joined_user = false;
    for ns in list.into_iter().flatten() {
        let kind = Kind::from_oci(ns.typ());
        match ns.path() {
            Some(path) if kind.for_children() => p.parent_joins.push((kind, path.clone())),
            Some(path) => {
                joined_user |= kind == Kind::User;
                p.init_joins.push((kind, path.clone()));
            }
            None => p.new.push(kind),
        }
    }
    p.init_joins.sort_by_key(|(k, _)| *k == Kind::User);
    for &k in &p.new {
        match k {
            Kind::Time => p.new_time = true,
            Kind::Cgroup => p.unshare_in_init |= k.flag(),
            // Namespaces created after joining a user namespace must be
            // owned by it, so with a joined user namespace init unshares
            // them (the pid one for a child of its own, see Plan).
            Kind::Pid if joined_user => p.pid_after_join = true,
            Kind::Pid => p.clone_flags |= k.flag(),
            _ if joined_user => p.unshare_in_init |= k.flag(),
            _ => p.clone_flags |= k.flag(),
        }
    }
    p
}

/// Opens a namespace file for setns, checking early that it is one.
pub fn open_ns(path: &Path) -> Result<OwnedFd, SysError> {
    open(path, OFlag::O_RDONLY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open namespace", path.display(), "O_RDONLY"))
}

pub fn join(kind: Kind, fd: &OwnedFd, path: &Path) -> Result<(), SysError> {
    setns(fd.as_fd(), kind.flag()).map_err(sys::err("setns", path.display(), kind.proc_name()))
}

pub fn unshare_flags(flags: CloneFlags) -> Result<(), SysError> {
    if flags.is_empty() {
        return Ok(());
    }
    unshare(flags).map_err(sys::err("unshare", "", format!("{flags:?}")))
}

/// The parent's namespaces that apply to children (pid, time), opened so
/// they can be restored after the clone.
pub struct ChildrenNs {
    saved: Vec<(Kind, OwnedFd)>,
}

impl ChildrenNs {
    /// Joins or creates the for-children namespaces; `restore` undoes it.
    pub fn enter(plan: &Plan, time_offsets: &[(String, i64, u32)]) -> Result<ChildrenNs, SysError> {
        let mut saved = Vec::new();
        let save = |k: Kind, saved: &mut Vec<(Kind, OwnedFd)>| -> Result<(), SysError> {
            let own = PathBuf::from(format!("/proc/self/ns/{}_for_children", k.proc_name()));
            saved.push((k, open_ns(&own)?));
            Ok(())
        };
        for (k, path) in &plan.parent_joins {
            save(*k, &mut saved)?;
            let fd = open_ns(path)?;
            join(*k, &fd, path)?;
        }
        if plan.new_time {
            save(Kind::Time, &mut saved)?;
            unshare_flags(Kind::Time.flag())?;
            write_time_offsets(time_offsets)?;
        }
        Ok(ChildrenNs { saved })
    }

    /// Joins or creates the for-children namespaces for good, saving nothing
    /// to come back to: for a process that makes one child and no other
    /// (exec), and that may not be allowed back (see `process::exec`).
    pub fn enter_for_good(plan: &Plan, time_offsets: &[(String, i64, u32)]) -> Result<(), SysError> {
        for (k, path) in &plan.parent_joins {
            join(*k, &open_ns(path)?, path)?;
        }
        if plan.new_time {
            unshare_flags(Kind::Time.flag())?;
            write_time_offsets(time_offsets)?;
        }
        Ok(())
    }

    pub fn restore(self) -> Result<(), SysError> {
        for (k, fd) in self.saved.into_iter().rev() {
            setns(fd.as_fd(), k.flag()).map_err(sys::err("setns (restore)", k.proc_name(), ""))?;
        }
        Ok(())
    }
}

fn write_time_offsets(offsets: &[(String, i64, u32)]) -> Result<(), SysError> {
    if offsets.is_empty() {
        return Ok(());
    }
    let text: String = offsets.iter().map(|(clock, s, ns)| format!("{clock} {s} {ns}\n")).collect();
    let path = Path::new("/proc/self/timens_offsets");
    std::fs::write(path, text).map_err(sys::io_err("write", path))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn linux(json: &str) -> Linux {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn new_namespaces_go_to_clone_except_cgroup_and_time() {
        let l = linux(
            r#"{"namespaces":[{"type":"pid"},{"type":"mount"},{"type":"network"},{"type":"cgroup"},{"type":"time"},{"type":"user"}]}"#,
        );
        let p = plan(Some(&l));
        let want = CloneFlags::CLONE_NEWPID | CloneFlags::CLONE_NEWNS | CloneFlags::CLONE_NEWNET | CloneFlags::CLONE_NEWUSER;
        assert_eq!(p.clone_flags, want);
        assert_eq!(p.unshare_in_init, CloneFlags::CLONE_NEWCGROUP);
        assert!(p.new_time);
        assert!(p.userns());
    }

    #[test]
    fn joined_user_is_last_and_owns_new_namespaces() {
        let l = linux(
            r#"{"namespaces":[{"type":"user","path":"/proc/1/ns/user"},{"type":"network","path":"/proc/1/ns/net"},{"type":"uts"},{"type":"pid","path":"/proc/1/ns/pid"}]}"#,
        );
        let p = plan(Some(&l));
        assert_eq!(p.init_joins.iter().map(|j| j.0).collect::<Vec<_>>(), vec![Kind::Net, Kind::User]);
        assert_eq!(p.parent_joins, vec![(Kind::Pid, PathBuf::from("/proc/1/ns/pid"))]);
        assert_eq!(p.unshare_in_init, CloneFlags::CLONE_NEWUTS);
        assert!(p.clone_flags.is_empty());
        assert!(!p.pid_after_join);
    }

    #[test]
    fn a_new_pid_namespace_with_a_joined_user_one_is_made_after_the_join() {
        let l = linux(r#"{"namespaces":[{"type":"user","path":"/proc/1/ns/user"},{"type":"pid"},{"type":"mount"}]}"#);
        let p = plan(Some(&l));
        assert!(p.pid_after_join && p.has_new(Kind::Pid));
        assert!(p.clone_flags.is_empty(), "{:?}", p.clone_flags);
        assert_eq!(p.unshare_in_init, CloneFlags::CLONE_NEWNS);
    }

    #[test]
    fn no_linux_section_means_no_namespaces() {
        assert_eq!(plan(None), Plan::default());
    }
}
