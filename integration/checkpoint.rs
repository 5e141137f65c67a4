//! Checkpoint and restore through a real CRIU: containers dumped and
//! restored, and checked from inside afterwards (their memory, pids, open
//! files, stdio pipes and files on disk), plus the bad inputs.
//!
//! They need a CRIU that works on this kernel (4.1 or newer from 6.13 on):
//! `STRATA_TEST_CRIU`, or `criu` on PATH, where `criu check` passes. Without
//! one each test says it is skipped, and why.
//!
//! `STRATA_CLIENT_RUNTIME=/path/to/runc` runs the same tests against that
//! runtime, where it has the feature; the tests of strata's own additions
//! (image-backed containers, strata's messages, the kill points) say they
//! are skipped for it.

use std::io::{Read, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use crate::common::{Bounded, Bundle, STRATA, alive, cgroup_dirs, stderr, stdout};
use crate::layers::Image;
use crate::{need_criu, need_root};

/// The runtime under test: strata, or `STRATA_CLIENT_RUNTIME`.
fn runtime() -> String {
    std::env::var("STRATA_CLIENT_RUNTIME").unwrap_or_else(|_| STRATA.clone())
}

/// Skips a test of what only strata does, when another runtime is tested.
macro_rules! strata_only {
    ($what:expr) => {
        if runtime() != *STRATA {
            eprintln!("skipped: {} is strata's own (testing {})", $what, runtime());
            return;
        }
    };
}

/// The container's stdio: three pipes whose both ends the test keeps, so
/// that a restore can be handed the same pipes (as containerd's shim and
/// conmon do).
struct Pipes {
    in_r: OwnedFd,
    in_w: std::fs::File,
    out_r: std::fs::File,
    out_w: OwnedFd,
    err_r: std::fs::File,
    err_w: OwnedFd,
}

impl Pipes {
    fn new() -> Pipes {
        let (in_r, in_w) = nix::unistd::pipe().unwrap();
        let (out_r, out_w) = nix::unistd::pipe().unwrap();
        let (err_r, err_w) = nix::unistd::pipe().unwrap();
        for r in [&out_r, &err_r] {
            nix::fcntl::fcntl(r.as_fd(), nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK)).unwrap();
        }
        Pipes { in_r, in_w: in_w.into(), out_r: out_r.into(), out_w, err_r: err_r.into(), err_w }
    }

    /// Runs `cmd` with the container-side ends as its stdio.
    fn run(&mut self, mut cmd: Command) -> (bool, String) {
        let st = cmd
            .stdin(Stdio::from(self.in_r.try_clone().unwrap()))
            .stdout(Stdio::from(self.out_w.try_clone().unwrap()))
            .stderr(Stdio::from(self.err_w.try_clone().unwrap()))
            .status_within();
        (st.success(), self.drain_err())
    }

    fn drain_err(&mut self) -> String {
        let mut s = String::new();
        let mut buf = [0u8; 4096];
        while let Ok(n) = self.err_r.read(&mut buf) {
            if n == 0 {
                break;
            }
            s.push_str(&String::from_utf8_lossy(&buf[..n]));
        }
        s
    }

    /// Writes a line to the container's stdin and waits for `want` on its stdout.
    fn ping(&mut self, line: &str, want: &str) {
        writeln!(self.in_w, "{line}").unwrap();
        let mut got = String::new();
        let mut buf = [0u8; 4096];
        for _ in 0..500 {
            if let Ok(n) = self.out_r.read(&mut buf) {
                got.push_str(&String::from_utf8_lossy(&buf[..n]));
            }
            if got.contains(want) {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("no {want:?} on the container's stdout (got {got:?})");
    }
}

/// The workload: a counter in the background (its pid in /tmp/counter.pid)
/// and, in front, a reader answering each stdin line on stdout, with
/// /etc/passwd open on fd 3 after one line read from it.
const WORKLOAD: &str = "exec 3</etc/passwd; read -r first <&3; \
    (i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done) & echo $! > /tmp/counter.pid; \
    while read x; do echo \"ponG $x\"; done";

struct Ctl<'a> {
    criu: &'a Path,
    root: PathBuf,
    store: Option<PathBuf>,
    id: String,
}

impl Ctl<'_> {
    fn strata(&self) -> Command {
        let mut c = Command::new(runtime());
        // In the test's own directory: runc leaves a CRIU log in its cwd.
        if let Some(dir) = self.root.parent() {
            c.current_dir(dir);
        }
        c.arg("--root").arg(&self.root);
        if runtime() == *STRATA {
            c.arg("--criu").arg(self.criu);
        } else if let Some(dir) = self.criu.canonicalize().ok().and_then(|p| p.parent().map(Path::to_path_buf)) {
            // runc 1.2 and later take CRIU from PATH only.
            c.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
        if let Some(s) = &self.store {
            c.arg("--store").arg(s);
        }
        c
    }

    fn exec(&self, script: &str) -> String {
        let out = self.strata().args(["exec", &self.id, "sh", "-c", script]).stdin(Stdio::null()).output_within();
        assert!(out.status.success(), "exec {script}: {}", stderr(&out));
        stdout(&out).trim().to_string()
    }

    fn count(&self) -> u64 {
        for _ in 0..100 {
            if let Ok(n) = self.exec("cat /tmp/count 2>/dev/null || echo 0").parse::<u64>()
                && n > 0
            {
                return n;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the counter never counted");
    }

    /// The counter, once it has moved past `n`.
    fn count_past(&self, n: u64) -> u64 {
        for _ in 0..200 {
            let c = self.count();
            if c > n {
                return c;
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        panic!("the counter stopped at {n}");
    }

    fn checkpoint(&self, pipes: &mut Pipes, image: &Path, extra: &[&str]) {
        let mut c = self.strata();
        c.arg("checkpoint").arg("--image-path").arg(image).args(extra).arg(&self.id);
        let (ok, err) = pipes.run(c);
        assert!(ok, "checkpoint: {err}");
    }

    fn restore(&self, pipes: &mut Pipes, bundle: &Path, image: &Path) -> (bool, String) {
        let mut c = self.strata();
        c.args(["restore", "-d", "--bundle"]).arg(bundle).arg("--image-path").arg(image).arg(&self.id);
        pipes.run(c)
    }

    fn exists(&self) -> bool {
        self.strata().args(["state", &self.id]).stdin(Stdio::null()).output_within().status.success()
    }

    fn status(&self) -> String {
        let out = self.strata().args(["state", &self.id]).stdin(Stdio::null()).output_within();
        serde_json::from_slice::<serde_json::Value>(&out.stdout).unwrap_or_default()["status"].as_str().unwrap_or("absent").to_string()
    }

    fn state_pid(&self) -> i32 {
        let out = self.strata().args(["state", &self.id]).stdin(Stdio::null()).output_within();
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_default();
        assert_eq!(v["status"], "running", "state: {}", stdout(&out));
        v["pid"].as_i64().unwrap() as i32
    }

    /// What the inside sees of itself: its processes and fd 3.
    fn inside(&self) -> String {
        self.exec(
            "c=$(cat /tmp/counter.pid); echo counter $c; grep PPid /proc/$c/status; tr '\\0' ' ' </proc/1/cmdline | cut -c1-24; \
             readlink /proc/1/fd/3; grep pos /proc/1/fdinfo/3",
        )
    }
}

/// A bundle whose cleanup (`delete --force` on drop) uses the runtime
/// under test, which alone can read its own state.
fn bundle_for(name: &str, script: &str) -> Bundle {
    let mut b = Bundle::sh(name, script);
    b.bin = runtime();
    b
}

fn bundle_with(name: &str) -> Bundle {
    let b = bundle_for(name, WORKLOAD);
    b.write_config();
    b
}

fn run_detached(ctl: &Ctl<'_>, pipes: &mut Pipes, bundle: &Path) {
    let mut c = ctl.strata();
    c.args(["run", "-d", "--bundle"]).arg(bundle).arg(&ctl.id);
    let (ok, err) = pipes.run(c);
    assert!(ok, "run -d: {err}");
}

#[test]
fn a_restored_container_goes_on_with_its_memory_pids_files_and_pipes() {
    need_root!();
    let criu = need_criu!();
    let b = bundle_with("cr");
    let ctl = Ctl { criu: &criu, root: b.root.clone(), store: None, id: b.id.clone() };
    let mut pipes = Pipes::new();
    run_detached(&ctl, &mut pipes, &b.dir);
    pipes.ping("Ping", "ponG Ping");
    let before = ctl.count();
    // An exec'd process is dumped with the rest (its session is its own).
    let execed = ctl.exec("sleep 1000 </dev/null >/dev/null 2>&1 & echo $!");
    let inside = ctl.inside();
    assert!(inside.contains("/etc/passwd") && inside.contains("pos:"), "{inside}");
    let image = b.dir.parent().unwrap().join("image");
    ctl.checkpoint(&mut pipes, &image, &["--work-path", b.dir.parent().unwrap().join("work").to_str().unwrap()]);
    // As with runc, a checkpoint ends the container: no state, no cgroup.
    assert!(!ctl.exists(), "the container is still there after checkpoint");
    assert!(cgroup_dirs(&b.id).is_empty(), "cgroups left: {:?}", cgroup_dirs(&b.id));
    let frozen = ctl_count_on_disk(&b);
    assert!(frozen >= before);

    let (ok, err) = ctl.restore(&mut pipes, &b.dir, &image);
    assert!(ok, "restore: {err}");
    ctl.state_pid();
    // The memory: the counter goes on from where it was, not from 1.
    let after = ctl.count_past(frozen);
    assert!(after > frozen && after < frozen + 1000, "counter {frozen} -> {after}");
    // The same processes (pids inside), and fd 3 at the same offset.
    assert_eq!(ctl.inside(), inside, "the inside changed across the restore");
    assert_eq!(ctl.exec(&format!("tr '\\0' ' ' </proc/{execed}/cmdline")), "sleep 1000", "the exec'd process was not restored");
    // The pipes to the caller still carry both ways.
    pipes.ping("Again", "ponG Again");
    let out = ctl.strata().args(["delete", "-f", &b.id]).stdin(Stdio::null()).output_within();
    assert!(out.status.success(), "delete: {}", stderr(&out));
    b.assert_gone();
}

/// The counter as the rootfs holds it (a plain bundle's /tmp is on the host).
fn ctl_count_on_disk(b: &Bundle) -> u64 {
    std::fs::read_to_string(b.dir.join("rootfs/tmp/count")).unwrap_or_default().trim().parse().unwrap_or(0)
}

#[test]
fn leave_running_twice_then_restore_after_delete() {
    need_root!();
    let criu = need_criu!();
    let b = bundle_with("crlr");
    let ctl = Ctl { criu: &criu, root: b.root.clone(), store: None, id: b.id.clone() };
    let mut pipes = Pipes::new();
    run_detached(&ctl, &mut pipes, &b.dir);
    let pid = ctl.state_pid();
    let base = b.dir.parent().unwrap().to_path_buf();
    let mut last = 0;
    for round in 0..2 {
        ctl.checkpoint(&mut pipes, &base.join(format!("image{round}")), &["--leave-running"]);
        assert_eq!(ctl.state_pid(), pid, "--leave-running: the container must stay as it was");
        last = ctl.count_past(last);
    }
    let at_dump = last;
    let out = ctl.strata().args(["delete", "-f", &b.id]).stdin(Stdio::null()).output_within();
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert!(!alive(pid));
    let (ok, err) = ctl.restore(&mut pipes, &b.dir, &base.join("image1"));
    assert!(ok, "restore after delete: {err}");
    let after = ctl.count_past(0);
    assert!(after + 50 >= at_dump, "restored counter {after}, dumped near {at_dump}");
    pipes.ping("x", "ponG x");
}

#[test]
fn an_image_backed_container_moves_to_another_store_with_its_files() {
    need_root!();
    let criu = need_criu!();
    strata_only!("an image-backed rootfs");
    let img = Image::new("cr");
    let bundle = img.bundle("crimg", "latest", &format!("echo hello > /etc/written; rm /etc/os-release; {WORKLOAD}"));
    let id = "cr-img";
    let ctl = Ctl { criu: &criu, root: img.root.clone(), store: Some(img.store.clone()), id: id.into() };
    let mut pipes = Pipes::new();
    run_detached(&ctl, &mut pipes, &bundle);
    let before = ctl.count();
    let image = img.base.join("checkpoint");
    ctl.checkpoint(&mut pipes, &image, &[]);
    assert!(image.join("rootfs-diff.tar.gz").is_file(), "no writable layer saved");
    assert_eq!(img.containers_in_store(), 0, "the checkpointed container's layers stay in the store");

    // Another state root and another, empty store: the layers are unpacked
    // there again and the writable layer comes from the checkpoint.
    let there = Ctl { criu: &criu, root: img.base.join("state2"), store: Some(img.base.join("store2")), id: id.into() };
    let (ok, err) = there.restore(&mut pipes, &bundle, &image);
    assert!(ok, "restore into a second store: {err}");
    assert!(there.count_past(before) > before);
    assert_eq!(there.exec("cat /etc/written; test -e /etc/os-release || echo whited-out"), "hello\nwhited-out");
    // The checkpoint of a container of another image: refused, naming both.
    let other = img.base.join("other");
    std::fs::create_dir_all(&other).unwrap();
    for e in std::fs::read_dir(&image).unwrap().flatten() {
        std::fs::copy(e.path(), other.join(e.file_name())).unwrap();
    }
    let meta = other.join("strata.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["image"]["chain_ids"][0] = json!(format!("sha256:{}", "0".repeat(64)));
    m["image"]["manifest"] = json!(format!("sha256:{}", "1".repeat(64)));
    std::fs::write(&meta, serde_json::to_vec(&m).unwrap()).unwrap();
    let third = Ctl { criu: &criu, root: img.base.join("state3"), store: Some(img.base.join("store3")), id: "cr-other".into() };
    let (ok, err) = third.restore(&mut pipes, &bundle, &other);
    assert!(!ok && err.contains(&"1".repeat(64)) && err.contains("the bundle's image is"), "restore of another image's checkpoint: {err}");
    assert!(!third.exists());
    assert_eq!(std::fs::read_dir(img.base.join("store3/containers")).map(|d| d.count()).unwrap_or(0), 0, "a refused restore left layers");
    pipes.ping("moved", "ponG moved");
    let out = there.strata().args(["delete", "-f", id]).stdin(Stdio::null()).output_within();
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert_eq!(std::fs::read_dir(img.base.join("store2/containers")).map(|d| d.count()).unwrap_or(0), 0);
}

#[test]
fn bad_checkpoints_fail_with_a_reason_and_leave_nothing() {
    need_root!();
    let criu = need_criu!();
    strata_only!("the checks of strata's messages");
    let b = bundle_with("crbad");
    let ctl = Ctl { criu: &criu, root: b.root.clone(), store: None, id: b.id.clone() };
    let mut pipes = Pipes::new();
    let base = b.dir.parent().unwrap().to_path_buf();
    let expect_fail = |pipes: &mut Pipes, image: &Path, want: &str| {
        let (ok, err) = ctl.restore(pipes, &b.dir, image);
        assert!(!ok, "restore from {} passed", image.display());
        assert!(err.contains(want), "restore from {}: {err:?} does not say {want:?}", image.display());
        assert!(!ctl.exists(), "a failed restore left a container");
        assert!(cgroup_dirs(&b.id).is_empty(), "a failed restore left cgroups");
    };
    expect_fail(&mut pipes, &base.join("missing"), "missing");
    std::fs::create_dir_all(base.join("empty")).unwrap();
    expect_fail(&mut pipes, &base.join("empty"), "no inventory.img");

    run_detached(&ctl, &mut pipes, &b.dir);
    // A dump CRIU fails (a process of the container's tree, reparented to
    // its init, holds a host file the container cannot reach): the
    // container goes on, with --leave-running and without.
    let hostfile = base.join("host-file");
    std::fs::write(&hostfile, "x").unwrap();
    let line = format!(
        "exec 3<'{}'; exec '{}' --root '{}' exec -d --preserve-fds 1 '{}' sh -c 'sleep 1000 <&3 & exit 0'",
        hostfile.display(),
        runtime(),
        b.root.display(),
        b.id
    );
    assert!(Command::new("sh").arg("-c").arg(&line).stdin(Stdio::null()).status_within().success(), "{line}");
    let pid = ctl.state_pid();
    for flags in [&["--leave-running"][..], &[][..]] {
        let mut c = ctl.strata();
        c.arg("checkpoint").arg("--image-path").arg(base.join("failing")).args(flags).arg(&b.id);
        let (ok, err) = pipes.run(c);
        assert!(!ok && err.contains("criu failed"), "checkpoint {flags:?} of a process holding a host file: {err}");
        assert_eq!(ctl.state_pid(), pid, "a failed checkpoint {flags:?} did not leave the container running");
        let n = ctl.count();
        ctl.count_past(n);
    }
    // Once that process is gone, the dump works.
    // (every sleep: the counter's own only ends early)
    ctl.exec("killall sleep; true");
    let image = base.join("image");
    ctl.checkpoint(&mut pipes, &image, &["--leave-running"]);
    // The same id, running: refused, and the running one is untouched.
    let pid = ctl.state_pid();
    let (ok, err) = ctl.restore(&mut pipes, &b.dir, &image);
    assert!(!ok && err.contains("exists"), "restore over a running container: {err}");
    assert_eq!(ctl.state_pid(), pid);
    let out = ctl.strata().args(["delete", "-f", &b.id]).stdin(Stdio::null()).output_within();
    assert!(out.status.success());

    // A checkpoint from a newer CRIU than the one installed.
    let newer = base.join("newer");
    copy_dir(&image, &newer);
    let meta = newer.join("strata.json");
    let mut m: serde_json::Value = serde_json::from_slice(&std::fs::read(&meta).unwrap()).unwrap();
    m["criu_version"] = json!(990000);
    std::fs::write(&meta, serde_json::to_vec(&m).unwrap()).unwrap();
    expect_fail(&mut pipes, &newer, "was made by CRIU 99.0.0");

    // A plain container's checkpoint given with an image-backed bundle.
    let img = Image::new("crbad");
    let ib = img.bundle("crbad", "latest", "sleep 100");
    let (ok, err) = ctl.restore_with(&mut pipes, &ib, &image, &img.store);
    assert!(!ok && err.contains("holds no writable layer"), "{err}");

    // CRIU failing midway, its tasks made (their memory pages are gone):
    // nothing is left, and the id is free for the good checkpoint afterwards.
    let broken = base.join("broken");
    copy_dir(&image, &broken);
    for e in std::fs::read_dir(&broken).unwrap().flatten() {
        if e.file_name().to_string_lossy().starts_with("pages-") {
            std::fs::remove_file(e.path()).unwrap();
        }
    }
    expect_fail(&mut pipes, &broken, "criu failed");
    let (ok, err) = ctl.restore(&mut pipes, &b.dir, &image);
    assert!(ok, "restore after a failed one: {err}");
    pipes.ping("ok", "ponG ok");
}

impl Ctl<'_> {
    fn restore_with(&self, pipes: &mut Pipes, bundle: &Path, image: &Path, store: &Path) -> (bool, String) {
        let mut c = self.strata();
        c.arg("--store").arg(store).args(["restore", "-d", "--bundle"]).arg(bundle).arg("--image-path").arg(image).arg(&self.id);
        pipes.run(c)
    }
}

fn copy_dir(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for e in std::fs::read_dir(from).unwrap().flatten() {
        std::fs::copy(e.path(), to.join(e.file_name())).unwrap();
    }
}

/// strata killed at many moments of a checkpoint and of a restore: a
/// killed checkpoint leaves the container running (CRIU lets its tasks go
/// on) or, once the dump is done, gone; a killed restore leaves at most a
/// stopped container that `delete` removes; nothing is left after that,
/// and the id restores afterwards.
#[test]
fn strata_killed_during_checkpoint_or_restore_leaves_nothing() {
    need_root!();
    let criu = need_criu!();
    // runc 1.5.1 killed mid-restore leaves the container's cgroups.
    strata_only!("leaving nothing when killed mid-restore");
    let b = bundle_with("crkill");
    let ctl = Ctl { criu: &criu, root: b.root.clone(), store: None, id: b.id.clone() };
    let mut pipes = Pipes::new();
    let base = b.dir.parent().unwrap().to_path_buf();
    run_detached(&ctl, &mut pipes, &b.dir);
    let good = base.join("good");
    ctl.checkpoint(&mut pipes, &good, &["--leave-running"]);
    let kill_after = |mut c: Command, ms: u64, pipes: &mut Pipes| {
        let mut child = c
            .stdin(Stdio::from(pipes.in_r.try_clone().unwrap()))
            .stdout(Stdio::from(pipes.out_w.try_clone().unwrap()))
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(std::time::Duration::from_millis(ms));
        let _ = child.kill();
        let _ = child.wait();
    };
    for ms in [2, 10, 30, 60, 100] {
        let mut c = ctl.strata();
        c.arg("checkpoint").arg("--leave-running").arg("--image-path").arg(base.join(format!("k{ms}"))).arg(&b.id);
        kill_after(c, ms, &mut pipes);
        wait_criu_gone();
        // --leave-running: whatever moment, the container goes on.
        eprintln!("checkpoint killed after {ms} ms: the container is {}", ctl.status());
        ctl.state_pid();
        let n = ctl.count();
        ctl.count_past(n);
    }
    let out = ctl.strata().args(["delete", "-f", &b.id]).stdin(Stdio::null()).output_within();
    assert!(out.status.success());
    for ms in [2, 10, 30, 60, 100, 200] {
        let mut c = ctl.strata();
        c.args(["restore", "-d", "--bundle"]).arg(&b.dir).arg("--image-path").arg(&good).arg(&b.id);
        kill_after(c, ms, &mut pipes);
        wait_criu_gone();
        // A restore that got through before the kill is a running container;
        // one that did not is stopped, or absent. delete removes either.
        let _ = ctl.strata().args(["delete", "-f", &b.id]).stdin(Stdio::null()).output_within();
        assert!(!ctl.exists(), "restore killed after {ms} ms: the container is still there after delete");
        assert!(cgroup_dirs(&b.id).is_empty(), "restore killed after {ms} ms: cgroups left: {:?}", cgroup_dirs(&b.id));
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let mine = b.root.display().to_string();
        let left: Vec<&str> = mounts.lines().filter(|l| l.contains("criu-root") && l.contains(&mine)).collect();
        assert!(left.is_empty(), "restore killed after {ms} ms: a criu-root mount is left: {left:?}");
    }
    let (ok, err) = ctl.restore(&mut pipes, &b.dir, &good);
    assert!(ok, "restore after the killed ones: {err}");
    pipes.ping("alive", "ponG alive");
}

/// Waits until no `criu swrk` runs, nor the CRIU it became (a CRIU whose strata was killed
/// finishes or fails on its own); another test's CRIU only makes this wait
/// a little longer.
fn wait_criu_gone() {
    for _ in 0..1000 {
        let busy = std::fs::read_dir("/proc").unwrap().flatten().any(|e| {
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            // At work CRIU renames itself ("criu: dump --rpc -t PID").
            let mut args = cmd.split(|b| *b == 0);
            cmd.starts_with(b"criu: ") || args.next().is_some_and(|a| a.ends_with(b"criu")) && args.next() == Some(b"swrk")
        });
        if !busy {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    panic!("a CRIU is still at work after 10 s");
}

/// A network namespace made for the test (`ip netns add`, loopback up),
/// deleted on drop.
struct NetNs(String);

impl NetNs {
    fn new(name: &str) -> NetNs {
        let name = format!("{name}-{}", std::process::id());
        let ok = |args: &[&str]| {
            let o = Command::new("ip").args(args).stdin(Stdio::null()).output_within();
            assert!(o.status.success(), "ip {args:?}: {}", stderr(&o));
        };
        ok(&["netns", "add", &name]);
        let ns = NetNs(name);
        ok(&["-n", &ns.0, "link", "set", "lo", "up"]);
        ns
    }

    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for NetNs {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

/// A server in a network namespace joined by path (as podman's and CRI's
/// are), with a client connected from outside the container: after
/// `checkpoint --tcp-established` and `restore --tcp-established` the same
/// connection carries on, and the server still listens for new ones.
#[test]
fn an_established_tcp_connection_survives_checkpoint_and_restore() {
    need_root!();
    let criu = need_criu!();
    if Command::new("ip").arg("-V").output().is_err() {
        eprintln!("skipped: needs ip (iproute2)");
        return;
    }
    let ns = NetNs::new("strata-cr");
    let mut b = bundle_for("crtcp", "");
    b.config["process"]["args"] = json!(["nc", "-ll", "-p", "7777", "-e", "cat"]);
    for n in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "network" {
            n["path"] = json!(ns.path());
        }
    }
    b.write_config();
    let ctl = Ctl { criu: &criu, root: b.root.clone(), store: None, id: b.id.clone() };
    let mut pipes = Pipes::new();
    run_detached(&ctl, &mut pipes, &b.dir);
    let client = || {
        Command::new("ip")
            .args(["netns", "exec", &ns.0, "/bin/busybox", "nc", "127.0.0.1", "7777"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap()
    };
    let talk = |c: &mut std::process::Child, line: &str| {
        writeln!(c.stdin.as_mut().unwrap(), "{line}").unwrap();
        let mut buf = vec![0u8; line.len() + 1];
        c.stdout.as_mut().unwrap().read_exact(&mut buf).unwrap();
        assert_eq!(String::from_utf8_lossy(&buf), format!("{line}\n"));
    };
    let mut conn = None;
    for _ in 0..100 {
        let mut c = client();
        std::thread::sleep(std::time::Duration::from_millis(50));
        if c.try_wait().unwrap().is_none() {
            conn = Some(c);
            break;
        }
    }
    let mut conn = conn.expect("the server never listened");
    talk(&mut conn, "before");
    let image = b.dir.parent().unwrap().join("image");
    ctl.checkpoint(&mut pipes, &image, &["--tcp-established"]);
    let mut c = ctl.strata();
    c.args(["restore", "-d", "--tcp-established", "--bundle"]).arg(&b.dir).arg("--image-path").arg(&image).arg(&b.id);
    let (ok, err) = pipes.run(c);
    assert!(ok, "restore --tcp-established: {err}");
    talk(&mut conn, "after the restore");
    let mut second = client();
    talk(&mut second, "a new connection");
    for mut c in [conn, second] {
        let _ = c.kill();
        let _ = c.wait();
    }
}

/// A user-namespaced container restores into a user namespace with the
/// same maps, its counter going on; the checkpoint's files, lent to the
/// container's root for the restore (its tasks read some images
/// themselves), are root's again afterwards.
#[test]
fn a_user_namespaced_container_restores_with_the_same_maps() {
    need_root!();
    let criu = need_criu!();
    // runc 1.5.1 fails here: its restored tasks may not read the images.
    strata_only!("restoring a user-namespaced container");
    let mut b = bundle_for("cruserns", WORKLOAD);
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.write_config();
    let status = Command::new("chown").args(["-R", "100000:100000"]).arg(b.dir.join("rootfs")).status_within();
    assert!(status.success());
    let ctl = Ctl { criu: &criu, root: b.root.clone(), store: None, id: b.id.clone() };
    let mut pipes = Pipes::new();
    run_detached(&ctl, &mut pipes, &b.dir);
    let maps = ctl.exec("cat /proc/self/uid_map /proc/self/gid_map");
    let before = ctl.count();
    let image = b.dir.parent().unwrap().join("image");
    ctl.checkpoint(&mut pipes, &image, &[]);
    use std::os::unix::fs::MetadataExt;
    let owners = || -> Vec<(PathBuf, u32, u32, u32)> {
        let mut v: Vec<_> = std::fs::read_dir(&image)
            .unwrap()
            .flatten()
            .map(|e| e.path())
            .chain([image.clone()])
            .filter(|p| !p.ends_with("restore.log"))
            .map(|p| {
                let md = std::fs::metadata(&p).unwrap();
                (p, md.uid(), md.gid(), md.mode())
            })
            .collect();
        v.sort();
        v
    };
    let dumped = owners();
    let (ok, err) = ctl.restore(&mut pipes, &b.dir, &image);
    assert!(ok, "restore: {err}");
    assert_eq!(ctl.exec("cat /proc/self/uid_map /proc/self/gid_map"), maps);
    let pid = ctl.state_pid();
    let host_map = std::fs::read_to_string(format!("/proc/{pid}/uid_map")).unwrap();
    assert_eq!(host_map.split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    assert!(ctl.count_past(before) > before);
    // The checkpoint's owners and modes are as the dump left them (and what
    // the restore added, its log and stats, is root's).
    let now = owners();
    for d in &dumped {
        assert!(now.contains(d), "{} changed across the restore: {d:?} -> {:?}", d.0.display(), now.iter().find(|n| n.0 == d.0));
    }
    assert!(now.iter().all(|n| n.1 == 0), "{now:?}");
    pipes.ping("mapped", "ponG mapped");
}

/// The flags of `checkpoint` and `restore` are checked before CRIU is
/// started (these run without one): each bad one fails, naming itself, and
/// the container is left as it was.
#[test]
fn bad_checkpoint_and_restore_flags_are_refused_by_name() {
    need_root!();
    strata_only!("strata's messages");
    let b = bundle_for("crflags", "sleep 1000");
    b.write_config();
    let nocriu = PathBuf::from("/nonexistent/criu");
    let ctl = Ctl { criu: &nocriu, root: b.root.clone(), store: None, id: b.id.clone() };
    let out = b.create();
    assert!(out.status.success(), "create: {}", stderr(&out));
    let refused = |args: &[&str], want: &str| {
        let out = ctl.strata().args(args).stdin(Stdio::null()).output_within();
        assert!(!out.status.success(), "{args:?} passed");
        assert!(stderr(&out).contains(want), "{args:?}: {:?} does not say {want:?}", stderr(&out));
    };
    let image = b.dir.parent().unwrap().join("image");
    let img = image.to_str().unwrap();
    refused(&["checkpoint", "--image-path", img, &b.id], "Container cannot be checkpointed in created state");
    let out = b.start();
    assert!(out.status.success(), "start: {}", stderr(&out));
    refused(&["checkpoint", "--image-path", img, "--manage-cgroups-mode", "bogus", &b.id], "manage-cgroups-mode");
    refused(&["checkpoint", "--image-path", img, "--empty-ns", "pid", &b.id], "--empty-ns");
    refused(&["checkpoint", "--image-path", img, "--parent-path", "/abs", &b.id], "--parent-path must be relative");
    refused(&["checkpoint", "--image-path", img, "--parent-path", "nope", &b.id], "invalid --parent-path");
    refused(&["checkpoint", "--image-path", img, "--page-server", "nocolon", &b.id], "--page-server ADDRESS:PORT");
    // With good flags the missing CRIU is what fails, by its path.
    refused(&["checkpoint", "--image-path", img, &b.id], "/nonexistent/criu");
    assert_eq!(b.status(), "running");
    let bundle = b.dir.to_str().unwrap();
    refused(&["restore", "-d", "--bundle", bundle, "--image-path", img, "--lsm-profile", "apparmor:x", "other"], "--lsm-profile");
    refused(&["restore", "-d", "--bundle", bundle, "--image-path", img, "--lsm-mount-context", "ctx", "other"], "--lsm-mount-context");
    refused(&["restore", "-d", "--bundle", bundle, "--image-path", img, "--manage-cgroups-mode", "bogus", "other"], "manage-cgroups-mode");
    refused(&["restore", "-d", "--bundle", bundle, "--image-path", img, "--empty-ns", "ipc", "other"], "--empty-ns");
    assert!(!ctl.root.join("other").exists(), "a refused restore left state");
}
