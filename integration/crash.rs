//! Crash consistency: strata SIGKILLed at many moments of `create`,
//! `delete` and `exec`, then `delete --force`: nothing may be left (state,
//! cgroups, mounts, processes, store dirs, unpack dirs) and the id must be
//! usable again. Also runc's behaviours around the lifecycle edges.

use crate::common::Bounded;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use serde_json::json;

use crate::common::{Bundle, cgroup_dirs, stderr, stdout};
use crate::layers::Image;
use crate::need_root;

/// Processes whose command line names `id` (strata itself, its init before
/// execve, a hook), other than zombies.
fn processes_naming(id: &str) -> Vec<i32> {
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else { continue };
        let cmdline = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
        if cmdline.split(|b| *b == 0).any(|a| a == id.as_bytes()) && crate::common::alive(pid) {
            found.push(pid);
        }
    }
    found
}

/// Waits (briefly: an init whose parent died exits on its own) until no
/// process names `id`.
fn assert_no_process(id: &str) {
    let deadline = Instant::now() + Duration::from_secs(5);
    while !processes_naming(id).is_empty() {
        assert!(Instant::now() < deadline, "processes left for {id}: {:?}", processes_naming(id));
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn assert_nothing_left(root: &Path, id: &str, bundle: &Path) {
    assert!(!root.join(id).exists(), "state dir of {id} left behind");
    let hidden: Vec<_> = std::fs::read_dir(root)
        .map(|rd| rd.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).filter(|n| n.starts_with('.')).collect())
        .unwrap_or_default();
    assert!(hidden.is_empty(), "reservations left behind: {hidden:?}");
    for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
        assert!(!line.contains(bundle.to_str().unwrap()), "mount left behind: {line}");
    }
    assert!(cgroup_dirs(id).is_empty(), "cgroups left behind: {:?}", cgroup_dirs(id));
    assert_no_process(id);
}

/// `strata <cmd> --bundle` of `b`, alone traced (strace without -f) and
/// SIGKILLed at its `when`-th message to init; its exit status.
fn killed_at_sendmsg(b: &Bundle, cmd: &str, when: u32) -> std::process::ExitStatus {
    Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "-e", "trace=sendmsg", "-e"])
        .arg(format!("inject=sendmsg:signal=KILL:when={when}"))
        .arg(&b.bin)
        .arg("--root")
        .arg(&b.root)
        .args([cmd, "--bundle"])
        .arg(&b.dir)
        .arg(&b.id)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .expect("strace (hack/setup installs it)")
}

/// SIGKILLs `child` after `after`, and reaps it.
fn kill_after(mut child: Child, after: Duration) {
    std::thread::sleep(after);
    let _ = kill(Pid::from_raw(child.id() as i32), Signal::SIGKILL);
    let _ = child.wait();
}

fn spawn(mut cmd: Command) -> Child {
    cmd.stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn().unwrap()
}

/// How long `f` takes, to spread the kills over the whole of it.
fn duration_of(f: impl FnOnce()) -> Duration {
    let t = Instant::now();
    f();
    t.elapsed()
}

const KILLS: u32 = 30;

#[test]
fn create_killed_at_any_moment_leaves_nothing_after_delete() {
    need_root!();
    let b = Bundle::sh("killcreate", "sleep 30");
    b.write_config();
    let create = || {
        let mut c = b.strata();
        c.args(["create", "--bundle"]).arg(&b.dir).arg(&b.id);
        c
    };
    let whole = duration_of(|| {
        assert!(spawn(create()).wait().unwrap().success());
    });
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    for k in 0..=KILLS {
        kill_after(spawn(create()), whole * k / KILLS);
        let out = b.cmd(&["delete", "--force", &b.id]);
        assert!(out.status.success(), "kill {k}: delete --force: {}", stderr(&out));
        assert_nothing_left(&b.root, &b.id, &b.dir);
    }
    // The id is as good as new.
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    assert_eq!(b.status(), "running");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn init_of_a_create_killed_after_the_clone_goes_by_itself() {
    need_root!();
    let b = Bundle::sh("killclone", "sleep 30");
    b.write_config();
    // strace without -f: only `create` is traced, and it dies at its first
    // message to init, just after the clone. Init, untraced, must see the
    // socket close and exit, with no delete to kill it. (No pipes: an init
    // that stayed would hold them, and the wait for their end would hang.)
    assert!(!killed_at_sendmsg(&b, "create", 1).success(), "create was not killed");
    assert_no_process(&b.id);
    let out = b.cmd(&["delete", "--force", &b.id]);
    assert!(out.status.success(), "delete --force: {}", stderr(&out));
    assert_nothing_left(&b.root, &b.id, &b.dir);
}

#[test]
fn init_of_a_run_killed_before_its_start_goes_by_itself() {
    need_root!();
    let b = Bundle::sh("killrun", "touch /ran; sleep 30");
    b.write_config();
    // `run` alone is traced, and dies at its third message to init (Proceed,
    // HooksDone, Start): created and recorded, not started. Its init waits
    // on the socket, not on a fifo no one will write: it must see the socket
    // close and exit, the user process never run.
    assert!(!killed_at_sendmsg(&b, "run", 3).success(), "run was not killed");
    assert_no_process(&b.id);
    // Killed after the final state was saved (init's pid in it, no
    // creating record), so at Start.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(b.root.join(&b.id).join("state.json")).unwrap()).unwrap();
    let init = saved["pid"].as_i64().unwrap_or(0) as i32;
    assert!(init > 0 && saved.get("creating").is_none_or(|c| c.is_null()), "{saved}");
    // Init's command line does not name the container, so it is waited for
    // by pid: it goes when it reads the socket's end, which the kernel
    // closes a little after `run` is reaped.
    let deadline = Instant::now() + Duration::from_secs(5);
    while crate::common::alive(init) {
        assert!(Instant::now() < deadline, "init {init} of the killed run stayed");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert_eq!(b.status(), "stopped");
    assert!(!b.dir.join("rootfs/ran").exists(), "the process ran");
    let out = b.cmd(&["delete", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    assert_nothing_left(&b.root, &b.id, &b.dir);
}

#[test]
fn image_create_killed_during_unpack_leaves_nothing_after_delete() {
    need_root!();
    let img = Image::new("killunpack");
    let bundle = img.bundle("b", "latest", "sleep 30");
    let id = format!("killimg-{}", std::process::id());
    let store = |k: u32| img.base.join(format!("store-{k}"));
    let create = |k: u32| {
        let mut c = Command::new(&*crate::common::STRATA);
        c.arg("--root").arg(&img.root).arg("--store").arg(store(k)).args(["create", "--bundle"]).arg(&bundle).arg(&id);
        c
    };
    // A cold create: every layer is unpacked.
    let whole = duration_of(|| {
        assert!(spawn(create(1000)).wait().unwrap().success());
    });
    let del = |k: u32| {
        Command::new(&*crate::common::STRATA)
            .arg("--root")
            .arg(&img.root)
            .arg("--store")
            .arg(store(k))
            .args(["delete", "--force", &id])
            .output_within()
    };
    assert!(del(1000).status.success());
    for k in 0..=KILLS {
        kill_after(spawn(create(k)), whole * k / KILLS);
        let out = del(k);
        assert!(out.status.success(), "kill {k}: delete --force: {}", stderr(&out));
        assert_nothing_left(&img.root, &id, &bundle);
        let s = store(k);
        if s.exists() {
            let containers = std::fs::read_dir(s.join("containers")).map(|r| r.count()).unwrap_or(0);
            assert_eq!(containers, 0, "kill {k}: the container's store dirs were left");
            // The next open of the store reclaims an unpack that was killed.
            let layers = Command::new(&*crate::common::STRATA).arg("--store").arg(&s).arg("layers").output_within();
            assert!(layers.status.success(), "{}", stderr(&layers));
            let tmp = std::fs::read_dir(s.join("tmp")).map(|r| r.count()).unwrap_or(0);
            assert_eq!(tmp, 0, "kill {k}: a half-unpacked layer was left in tmp/");
        }
    }
    // The same id creates again, on a store a kill interrupted.
    // (The container keeps its stdio: not a pipe we would wait on.)
    assert!(spawn(create(KILLS / 2)).wait().unwrap().success());
    assert_eq!(
        Command::new(&*crate::common::STRATA).arg("--root").arg(&img.root).args(["state", &id]).output_within().status.code(),
        Some(0)
    );
    assert!(del(KILLS / 2).status.success());
    assert_nothing_left(&img.root, &id, &bundle);
}

#[test]
fn delete_killed_midway_is_finished_by_a_second_delete() {
    need_root!();
    let mut b = Bundle::sh("killdelete", "sleep 30");
    // A poststop hook makes delete's last step slow enough to land in.
    b.config["hooks"] = json!({"poststop": [{"path": "/bin/sleep", "args": ["sleep", "0.05"]}]});
    b.write_config();
    let whole = duration_of(|| {
        assert!(b.create().status.success());
        assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    });
    for k in 0..=10 {
        assert!(b.create().status.success());
        let mut c = b.strata();
        c.args(["delete", "--force", &b.id]);
        kill_after(spawn(c), whole * k / 10);
        let out = b.cmd(&["delete", "--force", &b.id]);
        assert!(out.status.success(), "kill {k}: {}", stderr(&out));
        assert_nothing_left(&b.root, &b.id, &b.dir);
    }
}

#[test]
fn exec_killed_midway_leaves_no_stray_process() {
    need_root!();
    let b = Bundle::sh("killexec", "sleep 60");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let marker = "strata-exec-marker";
    let exec = || {
        let mut c = b.strata();
        c.args(["exec", &b.id, "sh", "-c", &format!("true {marker}")]);
        c
    };
    let whole = duration_of(|| {
        assert!(spawn(exec()).wait().unwrap().success());
    });
    for k in 0..=KILLS {
        kill_after(spawn(exec()), whole * k / KILLS);
        assert_no_process(marker);
        // The container goes on, and exec works again.
        let out = b.cmd(&["exec", &b.id, "echo", "again"]);
        assert_eq!(stdout(&out), "again\n", "kill {k}: {}", stderr(&out));
    }
    let procs = b.cmd(&["ps", "--format", "json", &b.id]);
    let pids: Vec<i32> = serde_json::from_slice(&procs.stdout).unwrap();
    assert_eq!(pids.len(), 1, "stray processes in the container: {pids:?}");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn delete_kills_and_removes_a_created_container() {
    need_root!();
    // As runc: `delete` without --force takes a container that was created
    // but never started.
    let b = Bundle::sh("delcreated", "true");
    assert!(b.create().status.success());
    let pid = b.state()["pid"].as_i64().unwrap() as i32;
    let out = b.cmd(&["delete", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!crate::common::alive(pid));
    b.assert_gone();
    // A running one still needs --force.
    let b = Bundle::sh("delrunning", "sleep 30");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let out = b.cmd(&["delete", &b.id]);
    assert!(!out.status.success());
    assert!(stderr(&out).contains("running"), "{}", stderr(&out));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn a_failing_poststart_hook_stops_the_container() {
    need_root!();
    let mut b = Bundle::sh("poststartfail", "sleep 30");
    let log = b.dir.parent().unwrap().join("poststart.log");
    b.config["hooks"] = json!({"poststart": [
        {"path": "/bin/false"},
        {"path": "/bin/sh", "args": ["sh", "-c", format!("echo ran > {}", log.display())]}
    ]});
    assert!(b.create().status.success());
    let out = b.start();
    assert!(!out.status.success(), "start succeeded with a failing poststart hook");
    assert!(stderr(&out).contains("poststart"), "{}", stderr(&out));
    assert_eq!(b.status(), "stopped");
    assert!(!log.exists(), "a poststart hook after the failing one ran");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn hooks_without_env_get_the_environment_of_their_runner() {
    need_root!();
    // Host-side hooks get strata's environment; startContainer, which runs
    // in the container, gets the container process's.
    let mut b = Bundle::sh("hookenv", "cat /hookenv");
    let host_log = b.dir.parent().unwrap().join("hookenv.host");
    b.config["process"]["env"] = json!(["PATH=/bin", "FROM_PROCESS=yes"]);
    b.config["hooks"] = json!({
        "prestart": [{"path": "/bin/sh", "args": ["sh", "-c", format!("echo \"$FROM_CALLER\" > {}", host_log.display())]}],
        "startContainer": [{"path": "/bin/sh", "args": ["sh", "-c", "echo \"$FROM_PROCESS $PATH\" > /hookenv"]}],
        "poststop": [{"path": "/bin/sh", "args": ["sh", "-c", "exit 0"], "env": []}]
    });
    b.write_config();
    let out = b.strata().env("FROM_CALLER", "caller").args(["run", "--bundle"]).arg(&b.dir).arg(&b.id).stdin(Stdio::null()).output_within();
    assert!(out.status.success(), "{}", stderr(&out));
    assert_eq!(std::fs::read_to_string(&host_log).unwrap(), "caller\n");
    assert_eq!(stdout(&out), "yes /bin\n");
    b.assert_gone();
}

/// Syscalls of a process's start-up (the dynamic loader, Rust's runtime)
/// and exit, which strata's own code never makes or cannot fail on.
const NOT_OURS: [&str; 14] = [
    "exit_group",
    "execve",
    "mmap",
    "mprotect",
    "brk",
    "munmap",
    "arch_prctl",
    "set_tid_address",
    "set_robust_list",
    "rseq",
    "sigaltstack",
    "rt_sigaction",
    "getrandom",
    "sched_getaffinity",
];

#[test]
fn every_failing_syscall_of_create_gives_one_line_and_leaves_nothing() {
    need_root!();
    if Command::new("strace").arg("-V").output().is_err() {
        panic!("this test needs strace (hack/setup installs it)");
    }
    let b = Bundle::sh("faults", "true");
    b.write_config();
    let strata = |prefix: &[String]| {
        let mut c = Command::new(&prefix[0]);
        c.args(&prefix[1..]).arg(&b.bin).arg("--root").arg(&b.root).args(["run", "--bundle"]).arg(&b.dir).arg(&b.id);
        c.stdin(Stdio::null());
        c
    };
    // Every syscall the whole of `run` makes, in every process, counted.
    let trace = b.dir.parent().unwrap().join("trace.txt");
    let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
    let out = strata(&s(&["strace", "-f", "-qq", "-o", trace.to_str().unwrap()])).output_within();
    assert!(out.status.success(), "traced run: {}", stderr(&out));
    let mut counts: std::collections::BTreeMap<String, u32> = Default::default();
    for line in std::fs::read_to_string(&trace).unwrap().lines() {
        let name = line.split_whitespace().nth(1).and_then(|c| c.split('(').next()).unwrap_or("");
        if !name.is_empty() && name.bytes().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == b'_') {
            *counts.entry(name.to_string()).or_default() += 1;
        }
    }
    assert!(counts.contains_key("clone3") && counts.contains_key("pivot_root"), "{counts:?}");
    let mut failed = 0;
    for (name, n) in &counts {
        if NOT_OURS.contains(&name.as_str()) {
            continue;
        }
        let mut whens = vec![1, n.div_ceil(2), *n];
        whens.dedup();
        for w in whens {
            // Rust's runtime checks fds 0-2 with poll before main, in each of
            // the two process images; a failure there aborts, by design.
            if name == "poll" && w <= 2 {
                continue;
            }
            let inject = format!("inject={name}:error=EIO:when={w}");
            let out =
                strata(&s(&["timeout", "20", "strace", "-f", "-qq", "-o", "/dev/null", "-e", &format!("trace={name}"), "-e", &inject]))
                    .output_within();
            let what = format!("{name} call {w} fails");
            assert_ne!(out.status.code(), Some(124), "{what}: run hung");
            if !out.status.success() {
                failed += 1;
                let err = stderr(&out);
                let lines: Vec<&str> = err.lines().collect();
                assert_eq!(lines.len(), 1, "{what}: not one line: {err}");
                let loader = lines[0].contains("error while loading shared libraries");
                let line = lines[0].to_lowercase();
                assert!(
                    loader || line.contains("i/o error") || line.contains("input/output error") || line.contains("broken pipe"),
                    "{what}: the error does not say what failed: {err}"
                );
            }
            let del = b.cmd(&["delete", "--force", &b.id]);
            assert!(del.status.success(), "{what}: delete --force: {}", stderr(&del));
            assert_nothing_left(&b.root, &b.id, &b.dir);
        }
    }
    assert!(failed > 40, "only {failed} injected failures made run fail: is injection working?");
    // And the id still works.
    assert_eq!(b.run().status.code(), Some(0));
    b.assert_gone();
}

#[test]
fn start_killed_midway_is_finished_by_a_second_start() {
    need_root!();
    let mut b = Bundle::sh("killstart", "sleep 30");
    // A poststart hook makes start's last step long enough to land in.
    b.config["hooks"] = json!({"poststart": [{"path": "/bin/sleep", "args": ["sleep", "0.05"]}]});
    b.write_config();
    assert!(b.create().status.success());
    let whole = duration_of(|| assert!(b.start().status.success()));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    let (mut again, mut already) = (0, 0);
    // Start lets init go within its first millisecond or so (the release
    // binary within half of one), then waits for the exec and the hook:
    // 50 µs steps over the first millisecond, millisecond steps to 10 ms,
    // then tenths of the whole.
    let delays: Vec<Duration> = (0..20)
        .map(|k| Duration::from_micros(50 * k))
        .chain((1..=10).map(Duration::from_millis))
        .chain((1..=10).map(|k| whole * k / 10))
        .collect();
    for (k, delay) in delays.into_iter().enumerate() {
        assert!(b.create().status.success());
        let mut c = b.strata();
        c.args(["start", &b.id]);
        kill_after(spawn(c), delay);
        // Either the kill came before start let init go, and a second start
        // does it; or after, and the container runs (a stale exec.fifo does
        // not make it look `created`).
        if b.status() == "created" {
            // Init may still be on its way from the killed start's byte to
            // its exec (it holds the fifo until then): the second start
            // either lets it go or finds it running.
            let out = b.start();
            assert!(out.status.success() || stderr(&out).contains("running"), "kill {k}: second start: {}", stderr(&out));
            again += 1;
        } else {
            let out = b.start();
            assert!(!out.status.success() && stderr(&out).contains("running"), "kill {k}: second start: {}", stderr(&out));
            already += 1;
        }
        b.wait_status("running");
        // The container's own process runs, not a waiting init.
        let pid = b.state()["pid"].as_i64().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default().trim() != "sleep" {
            assert!(Instant::now() < deadline, "kill {k}: init {pid} never became the container's process");
            std::thread::sleep(Duration::from_millis(5));
        }
        let out = b.cmd(&["delete", "--force", &b.id]);
        assert!(out.status.success(), "kill {k}: {}", stderr(&out));
        assert_nothing_left(&b.root, &b.id, &b.dir);
    }
    // And the exact moment the timed kills rarely hit: start killed as it
    // unlinks exec.fifo, after init was let go. The container runs; its
    // leftover fifo must not make it look `created`.
    assert!(b.create().status.success());
    let out = Command::new("strace")
        .args(["-qq", "-o", "/dev/null", "-e", "trace=unlink,unlinkat", "-e", "inject=unlink,unlinkat:signal=KILL"])
        .arg(&b.bin)
        .arg("--root")
        .arg(&b.root)
        .args(["start", &b.id])
        .output()
        .expect("strace (hack/setup installs it)");
    assert!(!out.status.success());
    assert!(b.root.join(&b.id).join("exec.fifo").exists(), "start was not killed at its unlink");
    b.wait_status("running");
    let out = b.start();
    assert!(!out.status.success() && stderr(&out).contains("running"), "second start: {}", stderr(&out));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    assert_nothing_left(&b.root, &b.id, &b.dir);
    eprintln!("start killed: {again} times before init was let go, {already} after");
    assert!(again > 0 && already > 0, "the kills did not spread over start: {again} before, {already} after");
}

/// Every manifest index.json names is a complete blob, and so is its config
/// and each of its layers (digest and size checked); no temp file is left
/// among the blobs.
fn assert_layout_whole(layout: &Path, when: &str) {
    use sha2::{Digest, Sha256};
    let blob = |digest: &str, size: u64| -> Vec<u8> {
        let hex = digest.strip_prefix("sha256:").unwrap();
        let data = std::fs::read(layout.join("blobs/sha256").join(hex)).unwrap_or_else(|e| panic!("{when}: blob {digest}: {e}"));
        let actual: String = Sha256::digest(&data).iter().map(|b| format!("{b:02x}")).collect();
        assert_eq!(actual, hex, "{when}: blob {digest} is partial or corrupt");
        assert_eq!(data.len() as u64, size, "{when}: blob {digest} has the wrong size");
        data
    };
    let index: serde_json::Value = serde_json::from_slice(&std::fs::read(layout.join("index.json")).unwrap()).unwrap();
    for m in index["manifests"].as_array().unwrap() {
        let manifest: serde_json::Value =
            serde_json::from_slice(&blob(m["digest"].as_str().unwrap(), m["size"].as_u64().unwrap())).unwrap();
        let c = &manifest["config"];
        blob(c["digest"].as_str().unwrap(), c["size"].as_u64().unwrap());
        for l in manifest["layers"].as_array().unwrap() {
            blob(l["digest"].as_str().unwrap(), l["size"].as_u64().unwrap());
        }
    }
    let temps: Vec<_> = std::fs::read_dir(layout.join("blobs/sha256"))
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(temps.is_empty(), "{when}: temp files among the blobs: {temps:?}");
}

#[test]
fn commit_killed_midway_never_leaves_index_naming_a_partial_blob() {
    need_root!();
    let img = Image::new("killcommit");
    // Enough new data in the upper dir that gzipping the layer takes a while.
    let b = img.bundle("src", "latest", "head -c 3000000 /dev/urandom > /big; true");
    let st = img.strata().args(["run", "--detach", "--bundle"]).arg(&b).arg("ksrc").stdin(Stdio::null()).status_within();
    assert!(st.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    while !stdout(&img.cmd(&["state", "ksrc"])).contains("stopped") {
        assert!(Instant::now() < deadline, "the source container did not stop");
        std::thread::sleep(Duration::from_millis(10));
    }
    let target = format!("{}:v2", img.layout.display());
    let commit = || {
        let mut c = img.strata();
        c.args(["commit", "ksrc", &target]);
        c
    };
    let whole = duration_of(|| assert!(spawn(commit()).wait().unwrap().success()));
    const N: u32 = 10;
    for k in 0..=N {
        kill_after(spawn(commit()), whole * k / N);
        assert_layout_whole(&img.layout, &format!("kill {k}"));
    }
    let out = img.cmd(&["commit", "ksrc", &target]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert_layout_whole(&img.layout, "after a full commit");
    let left: Vec<_> = std::fs::read_dir(&img.layout)
        .unwrap()
        .flatten()
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with('.'))
        .collect();
    assert!(left.is_empty(), "temp files left in the layout: {left:?}");
    assert!(img.cmd(&["delete", "ksrc"]).status.success());
    // The committed image holds the container's file.
    let b2 = img.bundle("dst", "v2", "wc -c < /big");
    let out = img.run(&b2, "kdst");
    assert_eq!(stdout(&out).trim(), "3000000", "{}", stderr(&out));
}
