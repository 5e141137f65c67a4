//! What strata says about itself: the default config.json of `strata spec`
//! and the runtime-spec features document of `strata features`.

use serde_json::{Value, json};

/// The default bundle config (close to runc's): a busybox-style shell with
/// the usual mounts, namespaces, masked and read-only paths.
pub fn spec(rootless: bool) -> Value {
    let mut s = json!({
        "ociVersion": crate::state::OCI_VERSION,
        "process": {
            "terminal": true,
            "user": {"uid": 0, "gid": 0},
            "args": ["sh"],
            "env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin", "TERM=xterm"],
            "cwd": "/",
            "capabilities": {
                "bounding": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "effective": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"],
                "permitted": ["CAP_AUDIT_WRITE", "CAP_KILL", "CAP_NET_BIND_SERVICE"]
            },
            "rlimits": [{"type": "RLIMIT_NOFILE", "hard": 1024, "soft": 1024}],
            "noNewPrivileges": true
        },
        "root": {"path": "rootfs", "readonly": true},
        "hostname": "strata",
        "mounts": [
            {"destination": "/proc", "type": "proc", "source": "proc"},
            {"destination": "/dev", "type": "tmpfs", "source": "tmpfs", "options": ["nosuid", "strictatime", "mode=755", "size=65536k"]},
            {"destination": "/dev/pts", "type": "devpts", "source": "devpts", "options": ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"]},
            {"destination": "/dev/shm", "type": "tmpfs", "source": "shm", "options": ["nosuid", "noexec", "nodev", "mode=1777", "size=65536k"]},
            {"destination": "/dev/mqueue", "type": "mqueue", "source": "mqueue", "options": ["nosuid", "noexec", "nodev"]},
            {"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]},
            {"destination": "/sys/fs/cgroup", "type": "cgroup", "source": "cgroup", "options": ["nosuid", "noexec", "nodev", "relatime", "ro"]}
        ],
        "linux": {
            "resources": {"devices": [{"allow": false, "access": "rwm"}]},
            "namespaces": [{"type": "pid"}, {"type": "network"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "cgroup"}],
            "maskedPaths": ["/proc/acpi", "/proc/asound", "/proc/kcore", "/proc/keys", "/proc/latency_stats", "/proc/timer_list",
                            "/proc/timer_stats", "/proc/sched_debug", "/sys/firmware", "/proc/scsi"],
            "readonlyPaths": ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"]
        }
    });
    // As runc's: a cgroup namespace only on a cgroup v2 host, where the
    // container's cgroupfs mount can show it its own subtree.
    let v2 = std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists();
    if !v2 && let Some(n) = s["linux"]["namespaces"].as_array_mut() {
        n.retain(|n| n["type"] != "cgroup");
    }
    if rootless {
        let uid = nix::unistd::geteuid().as_raw();
        let gid = nix::unistd::getegid().as_raw();
        s["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": uid, "size": 1}]);
        s["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": gid, "size": 1}]);
        s["linux"]["namespaces"] = json!([{"type": "pid"}, {"type": "ipc"}, {"type": "uts"}, {"type": "mount"}, {"type": "user"}]);
        if v2 && let Some(n) = s["linux"]["namespaces"].as_array_mut() {
            n.insert(4, json!({"type": "cgroup"}));
        }
        s["linux"]["resources"] = json!({});
        s["mounts"][5] =
            json!({"destination": "/sys", "type": "none", "source": "/sys", "options": ["rbind", "nosuid", "noexec", "nodev", "ro"]});
        if let Some(m) = s["mounts"].as_array_mut() {
            m.truncate(6);
            // Group 5 (tty) is not mapped: devpts would refuse `gid=5`.
            for mount in m.iter_mut().filter(|m| m["type"] == "devpts") {
                if let Some(o) = mount["options"].as_array_mut() {
                    o.retain(|x| x != "gid=5");
                }
            }
        }
    }
    s
}

/// The base of `strata bundle --image` for a rootless caller: the rootless
/// spec, with the caller's first subordinate uid and gid ranges mapped from
/// 1 on (as podman does), so that image files owned by other users than
/// root keep their owners. Without subordinate ids, only the caller's own.
pub fn rootless_image_spec() -> Value {
    use crate::userns;
    let mut s = spec(true);
    let (uid, gid) = (nix::unistd::geteuid(), nix::unistd::getegid());
    let name = nix::unistd::User::from_uid(uid).ok().flatten().map(|u| u.name).unwrap_or_default();
    let group = nix::unistd::Group::from_gid(gid).ok().flatten().map(|g| g.name).unwrap_or_default();
    let sub = |file: &str, name: &str, id: u32| userns::subordinate_ranges(&std::fs::read_to_string(file).unwrap_or_default(), name, id);
    let maps = userns::rootless_default(
        uid.as_raw(),
        gid.as_raw(),
        &sub("/etc/subuid", &name, uid.as_raw()),
        // Debian's /etc/subgid names the user, not its group.
        &[sub("/etc/subgid", &name, uid.as_raw()), sub("/etc/subgid", &group, gid.as_raw())].concat(),
    );
    let json_maps = |r: &[userns::Range]| -> Value {
        r.iter().map(|r| json!({"containerID": r.inside, "hostID": r.outside, "size": r.count})).collect()
    };
    s["linux"]["uidMappings"] = json_maps(&maps.uid);
    s["linux"]["gidMappings"] = json_maps(&maps.gid);
    s
}

/// The features document: only what strata really implements.
pub fn features() -> Value {
    // From the tables that apply them (linux::mounts), so that the list
    // and the code cannot drift apart.
    let opts = crate::linux::mounts::known_options();
    json!({
        "ociVersionMin": "1.0.0",
        "ociVersionMax": crate::state::OCI_VERSION,
        "hooks": ["prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"],
        "mountOptions": opts,
        "linux": {
            "namespaces": ["cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"],
            "capabilities": caps::all().iter().map(|c| c.to_string()).collect::<std::collections::BTreeSet<_>>(),
            "cgroup": {"v1": true, "v2": true, "systemd": true, "systemdUser": false},
            "seccomp": {
                "enabled": true,
                "actions": ["SCMP_ACT_ALLOW", "SCMP_ACT_ERRNO", "SCMP_ACT_KILL", "SCMP_ACT_KILL_PROCESS", "SCMP_ACT_KILL_THREAD",
                            "SCMP_ACT_LOG", "SCMP_ACT_NOTIFY", "SCMP_ACT_TRACE", "SCMP_ACT_TRAP"],
                "operators": ["SCMP_CMP_EQ", "SCMP_CMP_GE", "SCMP_CMP_GT", "SCMP_CMP_LE", "SCMP_CMP_LT", "SCMP_CMP_MASKED_EQ", "SCMP_CMP_NE"],
                "archs": ["SCMP_ARCH_AARCH64", "SCMP_ARCH_ARM", "SCMP_ARCH_X32", "SCMP_ARCH_X86", "SCMP_ARCH_X86_64"],
                "knownFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"],
                "supportedFlags": ["SECCOMP_FILTER_FLAG_LOG", "SECCOMP_FILTER_FLAG_SPEC_ALLOW", "SECCOMP_FILTER_FLAG_TSYNC", "SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV"]
            },
            "apparmor": {"enabled": false},
            "selinux": {"enabled": false},
            "intelRdt": {"enabled": true, "schemata": true, "monitoring": true},
            "netDevices": {"enabled": true},
            "mountExtensions": {"idmap": {"enabled": true}}
        },
        "annotations": {
            "org.opencontainers.runc.checkpoint.enabled": "true",
            "dev.strata.version": env!("CARGO_PKG_VERSION")
        }
    })
}

/// Where root keeps container state and image layers.
pub const STATE_ROOT: &str = "/run/strata";
pub const STORE: &str = "/var/lib/strata";

/// The default state directory: `/run/strata`, or for a rootless caller
/// `$XDG_RUNTIME_DIR/strata` (as runc uses `$XDG_RUNTIME_DIR/runc`). Root of
/// a user namespace (rootless podman runs the runtime so) takes
/// XDG_RUNTIME_DIR unless `USER` says root, and else `/run/strata`: runc's
/// rules.
pub fn state_root(rootless: bool) -> Result<std::path::PathBuf, String> {
    if !rootless {
        return Ok(STATE_ROOT.into());
    }
    let euid0 = nix::unistd::geteuid().is_root();
    let user_is_root = std::env::var_os("USER").is_some_and(|u| u == "root");
    match std::env::var_os("XDG_RUNTIME_DIR").filter(|d| !d.is_empty()) {
        Some(d) if !euid0 || !user_is_root => Ok(std::path::PathBuf::from(d).join("strata")),
        _ if euid0 => Ok(STATE_ROOT.into()),
        _ => Err(format!(
            "rootless: XDG_RUNTIME_DIR is not set, so there is no default state directory; \
             set it (usually /run/user/{}) or pass --root DIR",
            nix::unistd::geteuid()
        )),
    }
}

/// The default layer store: `/var/lib/strata`, or for a rootless caller
/// `$XDG_DATA_HOME/strata` (`~/.local/share/strata`).
pub fn store_dir(rootless: bool) -> Result<std::path::PathBuf, String> {
    if !rootless {
        return Ok(STORE.into());
    }
    if let Some(d) = std::env::var_os("XDG_DATA_HOME").filter(|d| !d.is_empty()) {
        return Ok(std::path::PathBuf::from(d).join("strata"));
    }
    match std::env::var_os("HOME").filter(|d| !d.is_empty()) {
        Some(h) => Ok(std::path::PathBuf::from(h).join(".local/share/strata")),
        None => Err("rootless: neither XDG_DATA_HOME nor HOME is set, so there is no default layer store; pass --store DIR".into()),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn default_spec_is_a_valid_config() {
        for rootless in [false, true] {
            let text = serde_json::to_vec(&super::spec(rootless)).unwrap();
            let spec = crate::spec::parse(&text).unwrap();
            crate::spec::validate(&spec).unwrap();
        }
    }
}
