//! Rootless: a real unprivileged user (made with useradd for the test and
//! removed after) runs strata, not root in a user namespace. Its state goes
//! to $XDG_RUNTIME_DIR/strata; its container maps the user's own uid to 0;
//! with no cgroup it may write (this v1 host), resources are skipped with a
//! warning; more ranges than its own id go through newuidmap/newgidmap
//! within /etc/subuid and /etc/subgid.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::{STRATA, stderr, stdout};
use crate::need_root;

/// A throwaway unprivileged user with a private base dir (its bundle, its
/// XDG_RUNTIME_DIR and a copy of strata it may execute).
struct User {
    name: String,
    uid: u32,
    base: PathBuf,
    bin: PathBuf,
    run: PathBuf,
}

impl User {
    fn new(tag: &str) -> User {
        let name = format!("strl{tag}{}", std::process::id() % 100_000);
        let out = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", &name]).output().unwrap();
        assert!(out.status.success(), "useradd: {}", stderr(&out));
        let uid = stdout(&Command::new("id").args(["-u", &name]).output().unwrap()).trim().parse().unwrap();
        let base = std::env::temp_dir().join(format!("strata-rootless-{name}"));
        let _ = std::fs::remove_dir_all(&base);
        std::fs::create_dir_all(&base).unwrap();
        let run = base.join("run");
        std::fs::create_dir_all(&run).unwrap();
        let bin = base.join("strata");
        std::fs::copy(&*STRATA, &bin).unwrap();
        let u = User { name, uid, base, bin, run };
        chown_r(&u.base, u.uid);
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(&u.run, std::fs::Permissions::from_mode(0o700)).unwrap();
        u
    }

    /// strata as the user, with XDG_RUNTIME_DIR set (unless `xdg` is false).
    fn strata(&self, args: &[&str], xdg: bool) -> Output {
        let mut c = Command::new("runuser");
        c.args(["-u", &self.name, "--", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", &format!("HOME=/home/{}", self.name)]);
        if xdg {
            c.arg(format!("XDG_RUNTIME_DIR={}", self.run.display()));
        }
        c.arg(&self.bin).args(args).current_dir(&self.base);
        crate::common::output_via_files(c, &self.base, ".")
    }

    /// A rootless busybox bundle: `strata spec --rootless` run by the user,
    /// with `script` as its process.
    fn bundle(&self, name: &str, script: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.base.join(name);
        let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/mkbundle-busybox");
        let out = Command::new(mk).arg(&dir).args(["true"]).env("STRATA", &*STRATA).output().unwrap();
        assert!(out.status.success(), "mkbundle-busybox: {}", stderr(&out));
        std::fs::remove_file(dir.join("config.json")).unwrap();
        chown_r(&dir, self.uid);
        let out = Command::new("runuser")
            .args(["-u", &self.name, "--", self.bin.to_str().unwrap(), "spec", "--rootless"])
            .current_dir(&dir)
            .output()
            .unwrap();
        assert!(out.status.success(), "spec --rootless: {}", stderr(&out));
        let path = dir.join("config.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        cfg["process"]["args"] = json!(["sh", "-c", script]);
        cfg["process"]["terminal"] = json!(false);
        cfg["hostname"] = json!(name);
        edit(&mut cfg);
        std::fs::write(&path, serde_json::to_vec_pretty(&cfg).unwrap()).unwrap();
        dir
    }

    fn state_dir(&self) -> PathBuf {
        self.run.join("strata")
    }

    fn assert_nothing_left(&self) {
        let left: Vec<_> = std::fs::read_dir(self.state_dir()).map(|r| r.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "left in XDG_RUNTIME_DIR/strata: {left:?}");
        for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
            assert!(!line.contains(self.base.to_str().unwrap()), "mount left behind: {line}");
        }
    }
}

impl Drop for User {
    fn drop(&mut self) {
        // Whatever a failed check left: the user's containers, then the user.
        if let Ok(ids) = std::fs::read_dir(self.state_dir()) {
            for id in ids.flatten() {
                let _ = self.strata(&["delete", "--force", &id.file_name().to_string_lossy()], true);
            }
        }
        let _ = Command::new("userdel").args(["--remove", &self.name]).stderr(Stdio::null()).status();
        let _ = std::fs::remove_dir_all(&self.base);
    }
}

fn chown_r(p: &Path, uid: u32) {
    let out = Command::new("chown").args(["-R", &format!("{uid}:{uid}")]).arg(p).output().unwrap();
    assert!(out.status.success(), "chown: {}", stderr(&out));
}

/// The user's first subordinate id from /etc/subuid (useradd adds a range).
fn subid_start(file: &str, user: &str) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then(|| f.next()?.parse().ok()).flatten()
    })
}

#[test]
fn an_unprivileged_user_runs_a_container() {
    need_root!();
    let u = User::new("a");
    // run: ids, maps, hostname, exit code, and the one warning about cgroups.
    let b = u.bundle("plain", "id -u; id -g; cat /proc/self/uid_map | tr -s ' '; hostname; exit 3", |_| {});
    let out = u.strata(&["run", "--bundle", b.to_str().unwrap(), "r1"], true);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("0\n0\n 0 {} 1\nplain\n", u.uid));
    let err = stderr(&out);
    assert!(err.contains("rootless: no writable cgroup") || err.is_empty(), "{err}");
    u.assert_nothing_left();

    // The lifecycle: create, start, exec, ps, kill, delete.
    let b = u.bundle("life", "sleep 60", |_| {});
    let out = u.strata(&["create", "--bundle", b.to_str().unwrap(), "r2"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(u.state_dir().join("r2").exists(), "state is not under XDG_RUNTIME_DIR/strata");
    assert!(u.strata(&["start", "r2"], true).status.success());
    let out = u.strata(&["exec", "r2", "sh", "-c", "id -u; cat /proc/1/cmdline | tr '\\0' ' '"], true);
    assert_eq!(stdout(&out), "0\nsleep 60 ", "{}", stderr(&out));
    let out = u.strata(&["ps", "--format", "json", "r2"], true);
    let pids: Vec<i32> = serde_json::from_slice(&out.stdout).unwrap_or_default();
    assert_eq!(pids.len(), 1, "ps: {}{}", stdout(&out), stderr(&out));
    let state: Value = serde_json::from_slice(&u.strata(&["state", "r2"], true).stdout).unwrap();
    assert_eq!(state["status"], "running");
    let owner = std::fs::read_to_string(format!("/proc/{}/status", state["pid"])).unwrap();
    assert!(
        owner.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some(&u.uid.to_string())),
        "init runs as {owner}"
    );
    assert!(u.strata(&["kill", "r2", "KILL"], true).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let s: Value = serde_json::from_slice(&u.strata(&["state", "r2"], true).stdout).unwrap();
        if s["status"] == "stopped" {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "not stopped after KILL: {s}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(u.strata(&["delete", "r2"], true).status.success());
    u.assert_nothing_left();

    // A config that asks for sysfs, with no network namespace of its own:
    // the user may not mount one, so it is the host's /sys, read-only.
    let b = u.bundle("sysfs", "test -d /sys/kernel && echo has-sys; touch /sys/x 2>/dev/null || echo read-only", |c| {
        for m in c["mounts"].as_array_mut().unwrap() {
            if m["destination"] == "/sys" {
                *m = json!({"destination": "/sys", "type": "sysfs", "source": "sysfs", "options": ["nosuid", "noexec", "nodev", "ro"]});
            }
        }
    });
    let out = u.strata(&["run", "--bundle", b.to_str().unwrap(), "r3"], true);
    assert_eq!(stdout(&out), "has-sys\nread-only\n", "{}", stderr(&out));
    u.assert_nothing_left();

    // Without XDG_RUNTIME_DIR: an error saying what to set.
    let out = u.strata(&["list"], false);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("XDG_RUNTIME_DIR is not set"), "{}", stderr(&out));
}

#[test]
fn more_ids_than_the_users_own_go_through_newuidmap() {
    need_root!();
    if Command::new("newuidmap").stdout(Stdio::null()).stderr(Stdio::null()).status().is_err() {
        panic!("this test needs newuidmap (hack/setup installs uidmap)");
    }
    let u = User::new("m");
    let (Some(sub_u), Some(sub_g)) = (subid_start("/etc/subuid", &u.name), subid_start("/etc/subgid", &u.name)) else {
        panic!("useradd gave {} no /etc/subuid and /etc/subgid range", u.name);
    };
    let maps = move |cfg: &mut Value, sub_u: u32, sub_g: u32| {
        cfg["linux"]["uidMappings"] =
            json!([{"containerID": 0, "hostID": u_uid(cfg), "size": 1}, {"containerID": 1, "hostID": sub_u, "size": 1000}]);
        cfg["linux"]["gidMappings"] =
            json!([{"containerID": 0, "hostID": u_gid(cfg), "size": 1}, {"containerID": 1, "hostID": sub_g, "size": 1000}]);
    };
    // Inside: both ranges; the process runs as uid 100, and the file it
    // makes is the sub id's on the host.
    let b = u.bundle("multi", "tr -s ' ' < /proc/self/uid_map; id -u; touch /tmp/f && stat -c %u /tmp/f", |c| {
        maps(c, sub_u, sub_g);
        c["process"]["user"] = json!({"uid": 100, "gid": 100});
        c["root"]["readonly"] = json!(false);
    });
    let out = u.strata(&["run", "--bundle", b.to_str().unwrap(), "m1"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!(" 0 {} 1\n 1 {sub_u} 1000\n100\n100\n", u.uid));
    use std::os::unix::fs::MetadataExt;
    assert_eq!(std::fs::metadata(b.join("rootfs/tmp/f")).unwrap().uid(), sub_u + 99);
    u.assert_nothing_left();
    // A range outside /etc/subuid is refused by newuidmap, and said so.
    let b = u.bundle("outside", "true", |c| maps(c, 3_000_000_000, 3_000_000_000));
    let out = u.strata(&["run", "--bundle", b.to_str().unwrap(), "m2"], true);
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("newuidmap") && err.contains("/etc/subuid") && err.contains("uidMappings"), "{err}");
    u.assert_nothing_left();
}

/// The hostID `strata spec --rootless` put in the config (the user's own).
fn u_uid(cfg: &Value) -> u64 {
    cfg["linux"]["uidMappings"][0]["hostID"].as_u64().unwrap()
}

fn u_gid(cfg: &Value) -> u64 {
    cfg["linux"]["gidMappings"][0]["hostID"].as_u64().unwrap()
}
