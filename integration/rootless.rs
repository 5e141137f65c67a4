//! Rootless: a real unprivileged user (made with useradd for the test and
//! removed after) runs strata, not root in a user namespace. Its state goes
//! to $XDG_RUNTIME_DIR/strata; its container maps the user's own uid to 0;
//! with no cgroup it may write (this v1 host), resources are skipped with a
//! warning; more ranges than its own id go through newuidmap/newgidmap
//! within /etc/subuid and /etc/subgid.

use crate::common::Bounded;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

use serde_json::{Value, json};

use crate::common::{STRATA, stderr, stdout};
use crate::need_root;

/// A throwaway unprivileged user with a private base dir (its bundle, its
/// XDG_RUNTIME_DIR and a copy of strata it may execute).
pub(crate) struct User {
    pub name: String,
    pub uid: u32,
    pub base: PathBuf,
    pub bin: PathBuf,
    pub run: PathBuf,
}

impl User {
    pub fn new(tag: &str) -> User {
        let name = format!("strl{tag}{}", std::process::id() % 100_000);
        let out = Command::new("useradd").args(["--create-home", "--shell", "/bin/sh", &name]).output_within();
        assert!(out.status.success(), "useradd: {}", stderr(&out));
        let uid = stdout(&Command::new("id").args(["-u", &name]).output_within()).trim().parse().unwrap();
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
        self.command(self.bin.as_os_str(), args, xdg)
    }

    /// `program` as the user, in its base dir, with a clean environment:
    /// PATH, HOME and (if `xdg`) XDG_RUNTIME_DIR.
    pub fn command(&self, program: &std::ffi::OsStr, args: &[&str], xdg: bool) -> Output {
        self.command_in(None, program, args, xdg)
    }

    /// `command`, started in the cgroup v2 `cgroup` (moved there by root
    /// first: a user may move a process only within a subtree it owns).
    pub fn command_in(&self, cgroup: Option<&Path>, program: &std::ffi::OsStr, args: &[&str], xdg: bool) -> Output {
        let mut c = match cgroup {
            Some(cg) => {
                let mut c = Command::new("sh");
                c.args(["-c", "echo $$ > \"$1/cgroup.procs\" && shift && exec \"$@\"", "sh"]).arg(cg).arg("runuser");
                c
            }
            None => Command::new("runuser"),
        };
        c.args(["-u", &self.name, "--", "env", "-i", "PATH=/usr/sbin:/usr/bin:/sbin:/bin", &format!("HOME=/home/{}", self.name)]);
        if xdg {
            c.arg(format!("XDG_RUNTIME_DIR={}", self.run.display()));
        }
        c.arg(program).args(args).current_dir(&self.base);
        crate::common::output_via_files(c, &self.base, ".")
    }

    /// A rootless busybox bundle: `strata spec --rootless` run by the user,
    /// with `script` as its process.
    fn bundle(&self, name: &str, script: &str, edit: impl FnOnce(&mut Value)) -> PathBuf {
        let dir = self.base.join(name);
        let mk = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/mkbundle-busybox");
        let out = Command::new(mk).arg(&dir).args(["true"]).env("STRATA", &*STRATA).output_within();
        assert!(out.status.success(), "mkbundle-busybox: {}", stderr(&out));
        std::fs::remove_file(dir.join("config.json")).unwrap();
        chown_r(&dir, self.uid);
        let out = Command::new("runuser")
            .args(["-u", &self.name, "--", self.bin.to_str().unwrap(), "spec", "--rootless"])
            .current_dir(&dir)
            .output_within();
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

    pub fn state_dir(&self) -> PathBuf {
        self.run.join("strata")
    }

    pub fn assert_nothing_left(&self) {
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

pub(crate) fn chown_r(p: &Path, uid: u32) {
    let out = Command::new("chown").args(["-R", &format!("{uid}:{uid}")]).arg(p).output_within();
    assert!(out.status.success(), "chown: {}", stderr(&out));
}

/// The user's first subordinate id from /etc/subuid (useradd adds a range).
pub(crate) fn subid_start(file: &str, user: &str) -> Option<u32> {
    std::fs::read_to_string(file).ok()?.lines().find_map(|l| {
        let mut f = l.split(':');
        (f.next()? == user).then(|| f.next()?.parse().ok()).flatten()
    })
}

#[test]
fn an_unprivileged_user_runs_a_container() {
    need_root!();
    let u = User::new("a");
    // run: ids, maps, hostname, exit code; no warning about cgroups for a
    // config that asks for no limits.
    let b = u.bundle("plain", "id -u; id -g; cat /proc/self/uid_map | tr -s ' '; hostname; exit 3", |_| {});
    let out = u.strata(&["run", "--bundle", b.to_str().unwrap(), "r1"], true);
    assert_eq!(out.status.code(), Some(3), "{}", stderr(&out));
    assert_eq!(stdout(&out), format!("0\n0\n 0 {} 1\nplain\n", u.uid));
    let err = stderr(&out);
    assert!(!err.contains("no writable cgroup"), "a warning for limits no one asked for: {err}");
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

/// An image with owners other than root, a device node, whiteouts and an
/// opaque dir, made by root: the busybox image plus a layer that a root
/// container makes and `strata commit` archives.
fn owned_image(tag: &str) -> crate::layers::Image {
    let img = crate::layers::Image::new(tag);
    // Its own id: the two tests that make such an image run at once, and a
    // container's cgroup is named by its id.
    let id = format!("maker-{tag}");
    let script = "chown 1:1 /data/b && mkdir /priv && echo s > /priv/s && chown -R 65534:65534 /priv && chmod 700 /priv \
                  && mknod /data/null c 1 3";
    let b = img.bundle(&id, "latest", script);
    let path = b.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let caps = json!(["CAP_CHOWN", "CAP_MKNOD", "CAP_DAC_OVERRIDE", "CAP_FOWNER"]);
    for set in ["bounding", "effective", "permitted"] {
        cfg["process"]["capabilities"][set] = caps.clone();
    }
    cfg["linux"]["resources"]["devices"] = json!([{"allow": true, "access": "rwm"}]);
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    // Detached, so that the stopped container stays for commit.
    let out = img.strata().args(["run", "--detach", "--bundle"]).arg(&b).arg(&id).stdin(Stdio::null()).output_within();
    assert!(out.status.success(), "{}", stderr(&out));
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stdout(&img.cmd(&["state", &id])).contains("stopped") {
        assert!(std::time::Instant::now() < deadline, "maker did not stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let out = img.cmd(&["commit", &id, &format!("{}:owned", img.layout.display())]);
    assert!(out.status.success(), "commit: {}", stderr(&out));
    assert!(img.cmd(&["delete", &id]).status.success());
    // Root's view of the new image: the device node is in it.
    let check_id = format!("check-{tag}");
    let check = img.bundle(&check_id, "owned", "ls /data; stat -c '%u:%g' /data/b");
    let out = img.run(&check, &check_id);
    assert_eq!(stdout(&out), "b\nnull\n1:1\n", "{}", stderr(&out));
    img
}

#[test]
fn an_unprivileged_user_runs_image_backed_containers() {
    need_root!();
    let img = owned_image("rootless-share");
    let u = User::new("i");
    let store = PathBuf::from(format!("/home/{}/.local/share/strata", u.name));
    let (Some(sub_u), Some(_)) = (subid_start("/etc/subuid", &u.name), subid_start("/etc/subgid", &u.name)) else {
        panic!("useradd gave {} no /etc/subuid and /etc/subgid range", u.name);
    };
    let bundle = |name: &str, script: &str| -> PathBuf {
        let dir = u.base.join(name);
        let image = format!("{}:owned", img.layout.display());
        let out = u.strata(&["bundle", "--image", &image, dir.to_str().unwrap()], true);
        assert!(out.status.success(), "bundle: {}", stderr(&out));
        let path = dir.join("config.json");
        let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        cfg["process"]["args"] = json!(["sh", "-c", script]);
        // Root of the container may chown within its maps.
        let caps = json!(["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_KILL"]);
        for set in ["bounding", "effective", "permitted"] {
            cfg["process"]["capabilities"][set] = caps.clone();
        }
        std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
        chown_r(&dir, u.uid);
        dir
    };
    // One container runs on; the other looks at the image and writes.
    let keeper = bundle("keeper", "sleep 60");
    let out = u.strata(&["create", "--bundle", keeper.to_str().unwrap(), "k1"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    let look = bundle(
        "look",
        "tr -s ' ' < /proc/self/uid_map; stat -c '%n %u:%g %a' /data/b /priv; ls /data; ls /opq; cat /etc/motd; \
         echo w > /data/w; mkdir -p /tmp/p/q && echo x > /tmp/p/q/f && chown -R 1000:1000 /tmp/p && chmod 700 /tmp/p /tmp/p/q; \
         rm /data/b; rm -rf /opq && mkdir /opq && echo n > /opq/n",
    );
    let out = u.strata(&["create", "--bundle", look.to_str().unwrap(), "l1"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    // Both containers stack the same four layers, unpacked once.
    let layers = stdout(&u.strata(&["layers"], true));
    let rows: Vec<&str> = layers.lines().skip(1).collect();
    assert_eq!(rows.len(), 4, "{layers}");
    assert!(rows.iter().all(|r| r.trim_end().ends_with(" 2")), "each layer is used by both: {layers}");
    assert!(u.strata(&["start", "l1"], true).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while !stdout(&u.strata(&["state", "l1"], true)).contains("stopped") {
        assert!(std::time::Instant::now() < deadline, "l1 did not stop");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // What it printed went to the caller's stdout, so read it from the
    // upper dir instead: the file it wrote, as the host sees it.
    use std::os::unix::fs::MetadataExt;
    let upper = store.join("containers/l1/upper");
    assert_eq!(std::fs::read_to_string(upper.join("data/w")).unwrap(), "w\n", "the write lands in the container's upper dir");
    assert_eq!(std::fs::metadata(upper.join("data/w")).unwrap().uid(), u.uid, "the container's root is the user");
    let p = std::fs::metadata(upper.join("tmp/p")).unwrap();
    assert_eq!(p.uid(), sub_u + 999, "uid 1000 inside is a subordinate id outside");
    // The keeper never wrote: its upper dir is empty.
    assert_eq!(std::fs::read_dir(store.join("containers/k1/upper")).unwrap().count(), 0);
    // commit, into the user's own layout: run as root of the store's user
    // namespace, it archives the owners the container gave its files (0,
    // not the user's uid), reads its uid 1000's 0700 dirs, and turns the
    // user.overlay opaque marker and the whiteout into their tar forms.
    let mine = format!("{}:v2", u.base.join("mine").display());
    let out = u.strata(&["commit", "l1", &mine], true);
    assert!(out.status.success(), "commit: {}", stderr(&out));
    let check = img.base.join("check-mine");
    let out = img.cmd(&["bundle", "--image", &mine, check.to_str().unwrap()]);
    assert!(out.status.success(), "bundle: {}", stderr(&out));
    let path = check.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    cfg["process"]["args"] = json!(["sh", "-c", "ls /data; ls /opq; stat -c '%n %u:%g %a' /data/w /tmp/p"]);
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let out = img.run(&check, "check-mine");
    assert_eq!(stdout(&out), "null\nw\nn\n/data/w 0:0 644\n/tmp/p 1000:1000 700\n", "{}", stderr(&out));
    // delete removes what the container's uid 1000 left in 0700 dirs, which
    // the user itself may not even list.
    let out = u.strata(&["delete", "l1"], true);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(!store.join("containers/l1").exists());
    assert!(u.strata(&["delete", "--force", "k1"], true).status.success());
    assert_eq!(std::fs::read_dir(store.join("containers")).unwrap().count(), 0);
    u.assert_nothing_left();
    // The layers stay until pruned; prune removes them, the 0700 /priv of
    // uid 65534 included.
    let out = u.strata(&["layers", "prune"], true);
    assert!(out.status.success(), "prune: {}", stderr(&out));
    assert_eq!(std::fs::read_dir(store.join("layers")).unwrap().count(), 0, "prune left layers");
    assert_eq!(std::fs::read_dir(store.join("tmp")).unwrap().count(), 0, "prune left temp dirs");
}

/// What an image-backed rootless container prints, run in the foreground.
#[test]
fn a_rootless_image_keeps_its_owners_whiteouts_and_opaque_dirs() {
    need_root!();
    let img = owned_image("rootless-view");
    let u = User::new("o");
    let dir = u.base.join("view");
    let image = format!("{}:owned", img.layout.display());
    let out = u.strata(&["bundle", "--image", &image, dir.to_str().unwrap()], true);
    assert!(out.status.success(), "bundle: {}", stderr(&out));
    let path = dir.join("config.json");
    let mut cfg: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
    let script = "tr -s ' ' < /proc/self/uid_map; stat -c '%n %u:%g %a' /data/b /priv; ls /data; ls /opq; cat /etc/motd";
    cfg["process"]["args"] = json!(["sh", "-c", script]);
    std::fs::write(&path, serde_json::to_vec(&cfg).unwrap()).unwrap();
    let sub_u = subid_start("/etc/subuid", &u.name).unwrap();
    let out = u.strata(&["run", "--bundle", dir.to_str().unwrap(), "v1"], true);
    assert!(out.status.success(), "{}", stderr(&out));
    // Owners as the image has them; no device node (a rootless unpack
    // skips them); /data/a whited out; only /opq/z past the opaque marker.
    assert_eq!(stdout(&out), format!(" 0 {} 1\n 1 {sub_u} 65536\n/data/b 1:1 644\n/priv 65534:65534 700\nb\nz\nlayer 3 motd\n", u.uid));
    // The opaque marker is the user.* one, which overlay reads under userxattr.
    let store = PathBuf::from(format!("/home/{}/.local/share/strata", u.name));
    let mut marks = Vec::new();
    for layer in std::fs::read_dir(store.join("layers")).unwrap().flatten() {
        let opq = layer.path().join("diff/opq");
        if opq.exists() {
            let path = opq.as_os_str().as_encoded_bytes();
            let names = strata::sys::xattr::llistxattr(path, "opq").unwrap();
            let value = strata::sys::xattr::lgetxattr(path, "user.overlay.opaque", "opq").unwrap();
            marks.push((names.into_iter().filter(|n| n.contains("overlay")).collect::<Vec<_>>(), value));
        }
    }
    // Layer 2 has /opq unmarked, layer 3 marks it opaque.
    marks.sort();
    assert_eq!(marks, [(vec![], None), (vec!["user.overlay.opaque".to_string()], Some(b"y".to_vec()))]);
    u.assert_nothing_left();
}

/// cgroup v2 with a subtree delegated to the user (a directory root made and
/// chowned to it, as systemd's `Delegate=yes` does): the container's cgroup
/// is made there and its limits apply. A memory limit is shown from inside:
/// the process that outgrows it is OOM-killed, and the same process without
/// the limit survives. Skips where the root cgroup is not v2 with the memory
/// controller enabled (the hybrid host); `hack/test-v2` runs it in the VM.
#[test]
fn a_delegated_cgroup2_subtree_gets_the_limits() {
    need_root!();
    let root_cg = Path::new("/sys/fs/cgroup");
    let enabled = std::fs::read_to_string(root_cg.join("cgroup.subtree_control")).unwrap_or_default();
    if !enabled.split_whitespace().any(|c| c == "memory") {
        eprintln!("skipped: needs cgroup v2 with the memory controller (hack/test-v2 runs this in its VM)");
        return;
    }
    let u = User::new("d");
    let deleg = root_cg.join(format!("strata-deleg-{}", std::process::id()));
    let shell = deleg.join("shell");
    struct Cleanup(PathBuf);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            // Leaves first; each may still be emptying.
            for _ in 0..50 {
                let leaves: Vec<PathBuf> = std::fs::read_dir(&self.0)
                    .map(|r| r.flatten().filter(|e| e.path().is_dir()).map(|e| e.path()).collect())
                    .unwrap_or_default();
                let ok = leaves.iter().all(|l| std::fs::remove_dir(l).is_ok()) && std::fs::remove_dir(&self.0).is_ok();
                if ok || !self.0.exists() {
                    return;
                }
                std::thread::sleep(std::time::Duration::from_millis(50));
            }
        }
    }
    std::fs::create_dir(&deleg).unwrap();
    let _cleanup = Cleanup(deleg.clone());
    std::fs::write(deleg.join("cgroup.subtree_control"), "+memory +pids").unwrap();
    std::fs::create_dir(&shell).unwrap();
    chown_r(&deleg, u.uid);
    let rel = format!("/{}/c1", deleg.file_name().unwrap().to_string_lossy());
    let grow = "x=0123456789; for i in $(seq 24); do x=$x$x; done; echo survived";
    let limited = u.bundle("limited", &format!("cat /proc/self/cgroup; {grow}"), |c| {
        c["linux"]["cgroupsPath"] = json!(rel);
        c["linux"]["resources"] = json!({"memory": {"limit": 33554432, "swap": 33554432}, "pids": {"limit": 64}});
    });
    let strata = |args: &[&str]| u.command_in(Some(&shell), u.bin.as_os_str(), args, true);
    let out = strata(&["create", "--bundle", limited.to_str().unwrap(), "c1"]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!stderr(&out).contains("no writable cgroup"), "the delegated subtree was not used: {}", stderr(&out));
    // The limits, as written in the container's cgroup inside the subtree.
    let cg = deleg.join("c1");
    assert_eq!(std::fs::read_to_string(cg.join("memory.max")).unwrap().trim(), "33554432");
    assert_eq!(std::fs::read_to_string(cg.join("memory.swap.max")).unwrap().trim(), "0");
    assert_eq!(std::fs::read_to_string(cg.join("pids.max")).unwrap().trim(), "64");
    let state: Value = serde_json::from_slice(&strata(&["state", "c1"]).stdout).unwrap();
    let procs = std::fs::read_to_string(cg.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), state["pid"].to_string(), "init is in the container's cgroup");
    assert!(strata(&["start", "c1"]).status.success());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !stdout(&strata(&["state", "c1"])).contains("stopped") {
        assert!(std::time::Instant::now() < deadline, "c1 did not stop");
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let events = std::fs::read_to_string(cg.join("memory.events")).unwrap();
    assert!(events.lines().any(|l| l.starts_with("oom_kill ") && l != "oom_kill 0"), "no OOM kill in c1: {events}");
    assert!(strata(&["delete", "c1"]).status.success());
    assert!(!cg.exists(), "delete left {}", cg.display());
    // The same process, without the limit, survives: the limit was the cause.
    let free = u.bundle("free", grow, |c| {
        c["linux"]["cgroupsPath"] = json!(format!("{rel}-free"));
    });
    let out = strata(&["run", "--bundle", free.to_str().unwrap(), "c2"]);
    assert_eq!(stdout(&out), "survived\n", "{}", stderr(&out));
    // And in the foreground the limited one is killed: no "survived".
    let out = strata(&["run", "--bundle", limited.to_str().unwrap(), "c3"]);
    assert_eq!(out.status.code(), Some(137), "{}{}", stdout(&out), stderr(&out));
    assert!(stdout(&out).starts_with("0::/\n") && !stdout(&out).contains("survived"), "{}", stdout(&out));
    u.assert_nothing_left();
}

/// The hostID `strata spec --rootless` put in the config (the user's own).
fn u_uid(cfg: &Value) -> u64 {
    cfg["linux"]["uidMappings"][0]["hostID"].as_u64().unwrap()
}

fn u_gid(cfg: &Value) -> u64 {
    cfg["linux"]["gidMappings"][0]["hostID"].as_u64().unwrap()
}
