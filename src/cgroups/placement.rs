//! Pure planning: where a container's cgroup lives on each mounted
//! hierarchy (`Placement`), from `/proc/self/mountinfo`, the caller's own
//! cgroups and the config's `cgroupsPath`. Tested without root (in `plan`).

use std::path::{Path, PathBuf};

use super::{CgroupError, Result};

/// A mounted cgroup hierarchy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Hierarchy {
    pub mountpoint: PathBuf,
    /// Controllers (v1), empty for v2 and for named hierarchies.
    pub controllers: Vec<String>,
    pub v2: bool,
    /// The process's own cgroup in this hierarchy (from /proc/self/cgroup).
    pub own: PathBuf,
}

impl Hierarchy {
    pub fn has(&self, c: &str) -> bool {
        self.controllers.iter().any(|x| x == c)
    }
}

/// The container's cgroup directories.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Placement {
    pub v2: bool,
    /// One directory per hierarchy.
    pub dirs: Vec<PathBuf>,
    /// Per hierarchy root: files a new directory copies from its parent.
    pub inherit: Vec<(PathBuf, Vec<&'static str>)>,
    pub hierarchies: Vec<Hierarchy>,
}

impl Placement {
    /// No cgroup at all: a rootless container where the caller may not
    /// make one.
    pub fn none(v2: bool) -> Placement {
        Placement { v2, dirs: Vec::new(), inherit: Vec::new(), hierarchies: Vec::new() }
    }

    /// Whether the caller may make each directory: the nearest existing
    /// ancestor (or the directory itself) is writable by it.
    pub fn writable(&self) -> bool {
        self.dirs.iter().all(|d| {
            let mut at: &Path = d;
            while !at.exists() {
                match at.parent() {
                    Some(p) => at = p,
                    None => return false,
                }
            }
            nix::unistd::access(at, nix::unistd::AccessFlags::W_OK).is_ok()
        })
    }
}

/// Reads the mounted hierarchies: cgroup2 alone (v2) or the v1 ones. On a
/// hybrid host (v1 controllers plus a cgroup2 without controllers, usually
/// at /sys/fs/cgroup/unified) the limits go to v1, and the cgroup2 comes
/// last, as a hierarchy the container joins too (as runc does): tools in
/// the container that look at cgroup2 see their own cgroup.
pub fn mounted_hierarchies(mountinfo: &str, self_cgroup: &str) -> Vec<Hierarchy> {
    let mut v1 = Vec::new();
    let mut v2 = None;
    for line in mountinfo.lines() {
        let f: Vec<&str> = line.split(' ').collect();
        let Some(sep) = f.iter().position(|x| *x == "-") else { continue };
        let (Some(fstype), Some(opts)) = (f.get(sep + 1), f.get(sep + 3)) else { continue };
        let mp = PathBuf::from(super::super::linux::rootfs::unescape_mountinfo(f[4]));
        match *fstype {
            "cgroup2" => v2 = Some(mp),
            "cgroup" => {
                let ctrls: Vec<String> = opts
                    .split(',')
                    .filter(|o| {
                        !matches!(
                            *o,
                            "rw" | "ro" | "relatime" | "noatime" | "nosuid" | "nodev" | "noexec" | "clone_children" | "xattr" | "noprefix"
                        ) && !o.starts_with("release_agent")
                            && !o.starts_with("cpuset_v2_mode")
                    })
                    .map(str::to_string)
                    .collect();
                v1.push((mp, ctrls));
            }
            _ => {}
        }
    }
    let own = |key: &dyn Fn(&str) -> bool| -> PathBuf {
        self_cgroup
            .lines()
            .filter_map(|l| {
                let mut it = l.splitn(3, ':');
                Some((it.next()?, it.next()?, it.next()?))
            })
            .find(|(_, c, _)| key(c))
            .map(|(_, _, p)| PathBuf::from(p))
            .unwrap_or_else(|| PathBuf::from("/"))
    };
    if v1.iter().any(|(_, c)| !c.is_empty() && c.iter().any(|x| !x.starts_with("name="))) {
        let unified = v2.map(|mp| Hierarchy { mountpoint: mp, controllers: Vec::new(), v2: true, own: own(&|c: &str| c.is_empty()) });
        v1.into_iter()
            .map(|(mountpoint, controllers)| {
                let names = controllers.clone();
                let own = own(&|c: &str| {
                    let got: Vec<&str> = c.split(',').collect();
                    !c.is_empty() && names.iter().all(|n| got.contains(&n.as_str()))
                });
                Hierarchy { mountpoint, controllers, v2: false, own }
            })
            .chain(unified)
            .collect()
    } else if let Some(mp) = v2 {
        vec![Hierarchy { mountpoint: mp, controllers: Vec::new(), v2: true, own: own(&|c: &str| c.is_empty()) }]
    } else {
        Vec::new()
    }
}

/// Where the container goes: `cgroupsPath` absolute (from the hierarchy
/// root), relative (to strata's own cgroup), or absent: the container's id,
/// relative to strata's own cgroup. All three as runc places them.
pub fn placement(hier: &[Hierarchy], cgroups_path: Option<&Path>, id: &str) -> Result<Placement> {
    let path = cgroups_path.filter(|p| !p.as_os_str().is_empty()).map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from(id));
    if path.components().any(|c| matches!(c, std::path::Component::ParentDir)) {
        return Err(CgroupError::Invalid(format!("cgroupsPath {}: '..' is not allowed", path.display())));
    }
    let mut p = Placement { v2: hier.first().is_some_and(|h| h.v2), hierarchies: hier.to_vec(), ..Default::default() };
    for h in hier {
        let rel = if path.is_absolute() { path.clone() } else { h.own.join(&path) };
        let dir = h.mountpoint.join(rel.strip_prefix("/").unwrap_or(&rel));
        if h.has("cpuset") {
            p.inherit.push((h.mountpoint.clone(), vec!["cpuset.cpus", "cpuset.mems"]));
        }
        p.dirs.push(dir);
    }
    Ok(p)
}
