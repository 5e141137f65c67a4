//! What CRIU is told about a container, computed from its config as data:
//! which of its mounts come from outside it (bind mounts, the v1 cgroup
//! binds, device binds), which namespaces it joined, where its cgroups go.
//! Nothing here touches the system; `dump` and `restore` apply it.

use std::path::{Component, Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Mount, Spec};

use crate::cgroups::Hierarchy;

/// A mount CRIU must not dump: it is named by `key` in the image, and is
/// `source` on the host at restore.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtMount {
    pub key: String,
    pub source: PathBuf,
}

/// runc's key for an external namespace: `extRoot<Type>NS`.
pub fn ns_key(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Network => "extRootNetNS",
        LinuxNamespaceType::Pid => "extRootPidNS",
        _ => "",
    }
}

/// CRIU's name for a namespace type (`join_ns`).
pub fn ns_name(kind: LinuxNamespaceType) -> &'static str {
    match kind {
        LinuxNamespaceType::Mount => "mnt",
        LinuxNamespaceType::Uts => "uts",
        LinuxNamespaceType::Ipc => "ipc",
        LinuxNamespaceType::User => "user",
        LinuxNamespaceType::Cgroup => "cgroup",
        LinuxNamespaceType::Time => "time",
        LinuxNamespaceType::Network => "net",
        LinuxNamespaceType::Pid => "pid",
    }
}

/// The namespaces the config joins by path, in config order.
pub fn joined_namespaces(spec: &Spec) -> Vec<(LinuxNamespaceType, PathBuf)> {
    let nss = spec.linux().as_ref().and_then(|l| l.namespaces().clone()).unwrap_or_default();
    nss.iter().filter_map(|n| n.path().as_ref().filter(|p| !p.as_os_str().is_empty()).map(|p| (n.typ(), p.clone()))).collect()
}

pub fn has_namespace(spec: &Spec, kind: LinuxNamespaceType) -> bool {
    spec.linux().as_ref().and_then(|l| l.namespaces().as_ref()).is_some_and(|n| n.iter().any(|n| n.typ() == kind))
}

/// A destination as CRIU sees it in the container: absolute, with no `.`,
/// `..` or repeated slashes (a relative one is taken from `/`, as at create).
pub fn clean_dest(dest: &Path) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in dest.components() {
        match c {
            Component::Normal(p) => parts.push(p.to_string_lossy().into_owned()),
            Component::ParentDir => {
                parts.pop();
            }
            _ => {}
        }
    }
    format!("/{}", parts.join("/"))
}

fn is_bind(m: &Mount) -> bool {
    m.typ().as_deref() == Some("bind") || m.options().as_ref().is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"))
}

/// The source of a bind mount on the host (a relative one is the bundle's).
fn bind_source(m: &Mount, bundle: &Path) -> PathBuf {
    let src = m.source().clone().unwrap_or_default();
    if src.is_absolute() { src } else { bundle.join(src) }
}

/// The mounts that come from outside the container, keyed by their
/// destination: the config's bind mounts, the v1 cgroup binds (one per
/// hierarchy, without a cgroup namespace, as `process::init` makes them)
/// and, in a user namespace, the device binds. `cgroup_dirs` are the
/// container's cgroup directories (of this container: at dump the old
/// ones, at restore the new ones), one per hierarchy in `hier`. A bind's
/// key is its destination as `resolve` finds it in the container's root
/// (through symlinks: the mount is where the path led).
pub fn external_mounts(
    spec: &Spec,
    bundle: &Path,
    hier: &[Hierarchy],
    cgroup_dirs: &[PathBuf],
    resolve: &dyn Fn(&str) -> String,
) -> Vec<ExtMount> {
    let mut out = Vec::new();
    let cgroupns = has_namespace(spec, LinuxNamespaceType::Cgroup);
    let v1 = hier.first().is_some_and(|h| !h.v2);
    for m in spec.mounts().iter().flatten() {
        if is_bind(m) {
            out.push(ExtMount { key: resolve(&clean_dest(m.destination())), source: bind_source(m, bundle) });
        } else if m.typ().as_deref() == Some("cgroup") && v1 && !cgroupns {
            let base = clean_dest(m.destination());
            for h in hier {
                let name = h.mountpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
                let own = cgroup_dirs.iter().find(|d| d.starts_with(&h.mountpoint)).cloned();
                out.push(ExtMount { key: format!("{base}/{name}"), source: own.unwrap_or_else(|| h.mountpoint.clone()) });
            }
        }
    }
    if has_namespace(spec, LinuxNamespaceType::User) {
        for d in device_paths(spec) {
            out.push(ExtMount { key: d.clone(), source: PathBuf::from(d) });
        }
    }
    out
}

/// The device nodes the container gets: the default ones and linux.devices.
fn device_paths(spec: &Spec) -> Vec<String> {
    let mut out: Vec<String> = ["/dev/null", "/dev/zero", "/dev/full", "/dev/random", "/dev/urandom", "/dev/tty"].map(String::from).into();
    for d in spec.linux().as_ref().and_then(|l| l.devices().clone()).unwrap_or_default() {
        let p = clean_dest(d.path());
        if !out.contains(&p) {
            out.push(p);
        }
    }
    out
}

/// Where the restored tasks go, per hierarchy: `(controllers, path)` with
/// the path from the hierarchy's root (CRIU's cg_root). An empty
/// controller list (cgroup2) is CRIU's default root.
pub fn cgroup_roots(hier: &[Hierarchy], cgroup_dirs: &[PathBuf]) -> Vec<(Option<String>, String)> {
    let mut out = Vec::new();
    for h in hier {
        let Some(dir) = cgroup_dirs.iter().find(|d| d.starts_with(&h.mountpoint)) else { continue };
        let rel = dir.strip_prefix(&h.mountpoint).unwrap_or(Path::new(""));
        let path = format!("/{}", rel.display());
        let ctrl = if h.v2 {
            None
        } else if h.controllers.is_empty() {
            // A named hierarchy (name=systemd): its mountpoint's name.
            h.mountpoint.file_name().map(|n| format!("name={}", n.to_string_lossy()))
        } else {
            Some(h.controllers.join(","))
        };
        out.push((ctrl, path));
    }
    out
}

/// The v1 freezer directory, or on a cgroup2-only host the container's
/// cgroup2 directory: CRIU freezes the tasks there instead of stopping
/// each with ptrace.
pub fn freezer(hier: &[Hierarchy], cgroup_dirs: &[PathBuf]) -> Option<PathBuf> {
    let h = hier.iter().find(|h| h.has("freezer")).or_else(|| hier.iter().find(|h| h.v2).filter(|_| hier.len() == 1))?;
    cgroup_dirs.iter().find(|d| d.starts_with(&h.mountpoint)).cloned()
}

/// The CRIU configuration file: the `org.criu.config` annotation (empty:
/// none at all), else runc's `/etc/criu/runc.conf`, so that a host set up
/// for runc works unchanged.
pub fn config_file(spec: &Spec) -> Option<String> {
    match spec.annotations().as_ref().and_then(|a| a.get("org.criu.config")) {
        Some(f) if f.is_empty() => None,
        Some(f) => Some(f.clone()),
        None => Some("/etc/criu/runc.conf".into()),
    }
}

/// The pipes among the container's stdio at dump (`/proc/PID/fd/0..2` link
/// texts, as runc's `descriptors.json`): CRIU restores each onto the fd of
/// the same number of the restoring process.
pub fn inherited_pipes(descriptors: &[String]) -> Vec<(String, i32)> {
    descriptors.iter().enumerate().filter(|(_, d)| d.starts_with("pipe:")).map(|(i, d)| (d.clone(), i as i32)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> Spec {
        serde_json::from_str(json).unwrap()
    }

    fn hier() -> Vec<Hierarchy> {
        let h = |m: &str, c: &[&str], v2| Hierarchy {
            mountpoint: PathBuf::from(m),
            controllers: c.iter().map(|s| s.to_string()).collect(),
            v2,
            own: PathBuf::from("/"),
        };
        vec![
            h("/sys/fs/cgroup/cpu,cpuacct", &["cpu", "cpuacct"], false),
            h("/sys/fs/cgroup/freezer", &["freezer"], false),
            h("/sys/fs/cgroup/systemd", &[], false),
            h("/sys/fs/cgroup/unified", &[], true),
        ]
    }

    fn dirs() -> Vec<PathBuf> {
        hier().iter().map(|h| h.mountpoint.join("c1")).collect()
    }

    #[test]
    fn binds_and_v1_cgroup_binds_are_external() {
        let s = spec(
            r#"{"ociVersion":"1.0.0","root":{"path":"rootfs"},"mounts":[
            {"destination":"/proc","type":"proc","source":"proc"},
            {"destination":"data/../vol","type":"none","source":"host","options":["rbind"]},
            {"destination":"/etc/x","type":"bind","source":"/etc/hostname"},
            {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup"}],
            "linux":{"namespaces":[{"type":"mount"}]}}"#,
        );
        let ext = external_mounts(&s, Path::new("/b"), &hier(), &dirs(), &|p| p.to_string());
        let keys: Vec<&str> = ext.iter().map(|e| e.key.as_str()).collect();
        assert_eq!(
            keys,
            ["/vol", "/etc/x", "/sys/fs/cgroup/cpu,cpuacct", "/sys/fs/cgroup/freezer", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup/unified"]
        );
        assert_eq!(ext[0].source, PathBuf::from("/b/host"));
        assert_eq!(ext[3].source, PathBuf::from("/sys/fs/cgroup/freezer/c1"));
    }

    #[test]
    fn a_cgroup_namespace_mounts_cgroups_itself_and_a_user_namespace_binds_devices() {
        let s = spec(
            r#"{"ociVersion":"1.0.0","root":{"path":"rootfs"},"mounts":[
            {"destination":"/sys/fs/cgroup","type":"cgroup","source":"cgroup"}],
            "linux":{"namespaces":[{"type":"cgroup"},{"type":"user"}],"devices":[{"path":"/dev/fuse","type":"c","major":10,"minor":229}]}}"#,
        );
        let ext = external_mounts(&s, Path::new("/b"), &hier(), &dirs(), &|p| p.to_string());
        assert!(ext.iter().all(|e| e.key.starts_with("/dev/")), "{ext:?}");
        assert!(ext.iter().any(|e| e.key == "/dev/fuse"));
    }

    #[test]
    fn cgroup_roots_name_each_hierarchy_as_criu_does() {
        let roots = cgroup_roots(&hier(), &dirs());
        assert_eq!(
            roots,
            [
                (Some("cpu,cpuacct".to_string()), "/c1".to_string()),
                (Some("freezer".into()), "/c1".into()),
                (Some("name=systemd".into()), "/c1".into()),
                (None, "/c1".into()),
            ]
        );
        assert_eq!(freezer(&hier(), &dirs()), Some(PathBuf::from("/sys/fs/cgroup/freezer/c1")));
    }

    #[test]
    fn only_pipes_are_inherited_and_the_config_file_follows_the_annotation() {
        let d = ["pipe:[5]".to_string(), "/dev/null".into(), "pipe:[7]".into()];
        assert_eq!(inherited_pipes(&d), [("pipe:[5]".to_string(), 0), ("pipe:[7]".to_string(), 2)]);
        let base = r#"{"ociVersion":"1.0.0","root":{"path":"rootfs"}"#;
        assert_eq!(config_file(&spec(&format!("{base}}}"))).as_deref(), Some("/etc/criu/runc.conf"));
        assert_eq!(config_file(&spec(&format!(r#"{base},"annotations":{{"org.criu.config":""}}}}"#))), None);
        assert_eq!(config_file(&spec(&format!(r#"{base},"annotations":{{"org.criu.config":"/x.conf"}}}}"#))).as_deref(), Some("/x.conf"));
    }
}
