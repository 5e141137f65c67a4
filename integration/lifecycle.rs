//! create / start / state / kill / delete, exit codes, hooks, the console
//! socket, and what is left after delete.

use std::io::Read;
use std::os::unix::net::UnixListener;

use serde_json::json;

use crate::common::{Bounded, Bundle, recv_fd, stderr, stdout};
use crate::need_root;

#[test]
fn create_start_state_delete() {
    need_root!();
    let mut b = Bundle::sh("life", "echo started > /tmp/mark; sleep 600");
    b.config["annotations"] = serde_json::json!({"org.example.k": "v"});
    let pid_file = b.dir.parent().unwrap().join("pid");
    b.write_config();
    let out = b.detached(&[
        "create".as_ref(),
        "--bundle".as_ref(),
        b.dir.as_os_str(),
        "--pid-file".as_ref(),
        pid_file.as_os_str(),
        b.id.as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let st = b.state();
    assert_eq!(st["status"], "created");
    assert_eq!(st["id"], b.id.as_str());
    assert_eq!(st["ociVersion"], "1.2.0");
    assert_eq!(st["annotations"], serde_json::json!({"org.example.k": "v"}));
    // The config as it was at create: a later edit of config.json is not seen.
    b.config["annotations"] = serde_json::json!({"org.example.k": "edited"});
    b.write_config();
    assert_eq!(b.state()["annotations"], serde_json::json!({"org.example.k": "v"}));
    let pid = st["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(&pid_file).unwrap(), pid.to_string());
    // The state is root's alone.
    use std::os::unix::fs::MetadataExt;
    let dir = std::fs::metadata(b.root.join(&b.id)).unwrap();
    assert_eq!((dir.mode() & 0o777, dir.uid()), (0o700, 0));
    let file = std::fs::metadata(b.root.join(&b.id).join("state.json")).unwrap();
    assert_eq!(file.mode() & 0o077, 0, "state.json is readable by others");
    // Before start the user process has not run.
    assert!(!b.dir.join("rootfs/tmp/mark").exists());
    let list = stdout(&b.cmd(&["list", "--format", "json"]));
    let v: serde_json::Value = serde_json::from_str(&list).unwrap();
    assert_eq!(v[0]["status"], "created");
    assert_eq!(v[0]["annotations"], serde_json::json!({"org.example.k": "v"}));

    assert!(b.cmd(&["start", &b.id]).status.success());
    assert_eq!(b.status(), "running");
    // start returns once the process runs; its first command may still be
    // on its way (in the emulated VM, for a while).
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    while !b.dir.join("rootfs/tmp/mark").exists() {
        assert!(std::time::Instant::now() < deadline, "the started process never wrote its mark");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    // start again is an error: not created.
    let again = b.cmd(&["start", &b.id]);
    assert!(!again.status.success());
    assert!(stderr(&again).contains("running"), "{}", stderr(&again));
    // delete of a running container needs --force.
    let del = b.cmd(&["delete", &b.id]);
    assert!(!del.status.success());
    assert!(stderr(&del).contains("--force"), "{}", stderr(&del));
    assert!(b.cmd(&["kill", &b.id, "KILL"]).status.success());
    b.wait_status("stopped");
    // runc's state: pid 0 once stopped, and its fields in runc's order.
    let st = b.state();
    assert_eq!(st["pid"], 0, "{st}");
    let out = b.cmd(&["state", &b.id]);
    let text = stdout(&out);
    let keys: Vec<&str> = text.lines().filter_map(|l| l.trim().strip_prefix('"')?.split('"').next()).collect();
    assert_eq!(
        keys,
        ["ociVersion", "id", "pid", "status", "bundle", "rootfs", "created", "annotations", "org.example.k", "owner"],
        "{text}"
    );
    assert!(text.contains("\"owner\": \"root\""), "{text}");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    assert!(!crate::common::alive(pid as i32), "init still alive");
    b.assert_gone();
}

#[test]
fn exit_codes_and_signals() {
    need_root!();
    assert_eq!(Bundle::sh("exit3", "exit 3").run().status.code(), Some(3));
    // Killed by a signal: run exits 128+N.
    let k = Bundle::sh("sig", "echo up; sleep 30");
    k.write_config();
    let mut child = k.strata().args(["run", "--bundle"]).arg(&k.dir).arg(&k.id).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut line = [0u8; 3];
    child.stdout.as_mut().unwrap().read_exact(&mut line).unwrap();
    assert!(k.cmd(&["kill", &k.id, "9"]).status.success());
    assert_eq!(child.wait().unwrap().code(), Some(137));
    k.assert_gone();
    let b = Bundle::sh("term", "trap 'exit 42' TERM; while true; do sleep 0.05; done");
    b.write_config();
    assert!(b.create().status.success());
    assert!(b.cmd(&["start", &b.id]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert!(b.cmd(&["kill", &b.id, "SIGTERM"]).status.success());
    b.wait_status("stopped");
    let bad = b.cmd(&["kill", &b.id, "NOSUCHSIG"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("NOSUCHSIG"));
    // containerd's shim reads "already stopped" from runc's exact words.
    let late = b.cmd(&["kill", &b.id, "KILL"]);
    assert!(!late.status.success() && stderr(&late).contains("container not running"), "{}", stderr(&late));
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

/// A created container dies of SIGTERM as runc's does (its init, pid 1 of
/// its namespace, would otherwise ignore a signal it has no handler for).
#[test]
fn a_created_container_dies_of_sigterm() {
    need_root!();
    let b = Bundle::sh("termcreated", "true");
    assert!(b.create().status.success());
    assert!(b.cmd(&["kill", &b.id, "TERM"]).status.success());
    b.wait_status("stopped");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

/// Signal 0 only asks whether init is there. SIGKILL of a container that
/// shares the host's pid namespace reaches every process of its cgroup,
/// also after init is gone: nothing of it is left running.
#[test]
fn kill_zero_and_kill_without_a_pid_namespace() {
    need_root!();
    let mut b = Bundle::sh("nopidns", "sleep 300 & echo $! > /tmp/bg; exec sleep 300");
    let ns = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    ns.retain(|n| n["type"] != "pid");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    b.wait_status("running");
    assert!(b.cmd(&["kill", &b.id, "0"]).status.success(), "signal 0");
    let t = std::time::Instant::now();
    let bg = loop {
        let f = b.dir.join("rootfs/tmp/bg");
        if let Some(p) = std::fs::read_to_string(&f).ok().and_then(|s| s.trim().parse::<i32>().ok()) {
            break p;
        }
        assert!(t.elapsed().as_secs() < 10, "the background sleep never started");
        std::thread::sleep(std::time::Duration::from_millis(20));
    };
    // Init goes first; its background child lives on in the cgroup.
    let init = b.state()["pid"].as_i64().unwrap() as i32;
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(init), nix::sys::signal::Signal::SIGKILL).unwrap();
    b.wait_status("stopped");
    assert!(crate::common::alive(bg), "the background process outlived init");
    let out = b.cmd(&["kill", &b.id, "KILL"]);
    assert!(out.status.success(), "kill KILL of a stopped container without a pid namespace: {}", stderr(&out));
    let t = std::time::Instant::now();
    while crate::common::alive(bg) && t.elapsed().as_secs() < 10 {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert!(!crate::common::alive(bg), "kill KILL left {bg} alive");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn run_forwards_signals() {
    need_root!();
    let b = Bundle::sh("fwd", "trap 'echo got-term; exit 7' TERM; echo ready; while true; do sleep 0.05; done");
    b.write_config();
    let mut child = b.strata().args(["run", "--bundle"]).arg(&b.dir).arg(&b.id).stdout(std::process::Stdio::piped()).spawn().unwrap();
    let mut out = child.stdout.take().unwrap();
    let mut buf = [0u8; 6];
    out.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ready\n");
    nix::sys::signal::kill(nix::unistd::Pid::from_raw(child.id() as i32), nix::sys::signal::Signal::SIGTERM).unwrap();
    let status = child.wait().unwrap();
    let mut rest = String::new();
    out.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "got-term\n");
    assert_eq!(status.code(), Some(7));
    b.assert_gone();
}

#[test]
fn hooks_run_in_order_with_state() {
    need_root!();
    let mut b = Bundle::sh("hooks", "echo process >> /hooklog");
    let log = b.dir.join("rootfs/hooklog");
    let hook = |name: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("read s; echo \"{name} $(echo \"$s\" | grep -o '\"status\":\"[a-z]*\"')\" >> {}", log.display())]});
    // createContainer and startContainer run inside the container: log to the in-container path.
    let inner = |name: &str, path: &str| json!({"path": "/bin/sh", "args": ["sh", "-c", format!("echo {name} >> {path}")]});
    b.config["hooks"] = json!({
        "prestart": [hook("prestart")],
        "createRuntime": [hook("createRuntime")],
        "createContainer": [inner("createContainer", log.to_str().unwrap())],
        "startContainer": [inner("startContainer", "/hooklog")],
        "poststart": [hook("poststart")],
        "poststop": [hook("poststop")]
    });
    b.run_ok();
    let got = std::fs::read_to_string(&log).unwrap();
    let names: Vec<&str> = got.lines().map(|l| l.split(' ').next().unwrap()).collect();
    // poststart runs after the process started; the process may finish first.
    assert_eq!(&names[..3], ["prestart", "createRuntime", "createContainer"], "{got}");
    assert_eq!(names[3], "startContainer", "{got}");
    assert!(names[4..6].contains(&"process") && names[4..6].contains(&"poststart"), "{got}");
    assert_eq!(names[6], "poststop", "{got}");
    assert!(got.contains("prestart \"status\":\"created\""), "{got}");
    assert!(got.contains("poststop \"status\":\"stopped\""), "{got}");
    b.assert_gone();
}

#[test]
fn failing_prestart_hook_fails_create_and_leaves_nothing() {
    need_root!();
    let mut b = Bundle::sh("hookfail", "true");
    b.config["hooks"] = json!({"prestart": [{"path": "/bin/true"}, {"path": "/bin/false"}]});
    let out = b.create();
    assert!(!out.status.success());
    // runc's words, counted from 0: the second hook failed.
    assert!(stderr(&out).contains("error running prestart hook #1: /bin/false"), "{}", stderr(&out));
    b.assert_gone();
}

#[test]
fn console_socket_receives_the_pty_master() {
    need_root!();
    let mut b = Bundle::sh("tty", "tty; stty size; echo on-tty");
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["consoleSize"] = json!({"height": 33, "width": 101});
    let sock_path = b.dir.parent().unwrap().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    b.write_config();
    let acceptor = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        recv_fd(&conn)
    });
    let out = b.detached(&[
        "create".as_ref(),
        "--bundle".as_ref(),
        b.dir.as_os_str(),
        "--console-socket".as_ref(),
        sock_path.as_os_str(),
        b.id.as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let master = acceptor.join().unwrap();
    assert!(b.cmd(&["start", &b.id]).status.success());
    let mut f = std::fs::File::from(master);
    let mut text = String::new();
    let mut buf = [0u8; 1024];
    // Read until the process is done (EIO when the slave side closes).
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.contains("on-tty") {
            break;
        }
    }
    assert!(text.contains("/dev/pts/0"), "{text:?}");
    assert!(text.contains("33 101"), "{text:?}");
    b.wait_status("stopped");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn pause_and_resume_freeze_the_container() {
    need_root!();
    // The count is replaced by a rename: a read never sees it truncated (a
    // pause between `>`'s truncation and the write would leave it empty).
    let b = Bundle::sh("pause", "i=0; while true; do i=$((i+1)); echo $i > /tmp/count.new; mv /tmp/count.new /tmp/count; sleep 0.01; done");
    assert!(b.create().status.success());
    assert!(b.cmd(&["start", &b.id]).status.success());
    std::thread::sleep(std::time::Duration::from_millis(100));
    assert!(b.cmd(&["pause", &b.id]).status.success());
    assert_eq!(b.status(), "paused");
    let count = b.dir.join("rootfs/tmp/count");
    let a = std::fs::read_to_string(&count).unwrap();
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_eq!(std::fs::read_to_string(&count).unwrap(), a, "a paused container made progress");
    assert!(b.cmd(&["resume", &b.id]).status.success());
    assert_eq!(b.status(), "running");
    std::thread::sleep(std::time::Duration::from_millis(300));
    assert_ne!(std::fs::read_to_string(&count).unwrap(), a, "a resumed container made no progress");
    let ps = stdout(&b.cmd(&["ps", "--format", "json", &b.id]));
    let pids: Vec<i32> = serde_json::from_str(&ps).unwrap();
    assert!(pids.contains(&(b.state()["pid"].as_i64().unwrap() as i32)));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn exec_joins_the_container() {
    need_root!();
    // Ended by the test (kill), not by time: its many execs take tens of
    // seconds in the emulated cgroup v2 VM.
    let mut b = Bundle::sh("exec", "sleep 600");
    b.config["linux"]["resources"]["pids"] = json!({"limit": 50});
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let init = b.state()["pid"].as_i64().unwrap();
    let ns = |pid: &str| {
        ["pid", "net", "ipc", "uts", "mnt", "cgroup"]
            .iter()
            .map(|k| std::fs::read_link(format!("/proc/{pid}/ns/{k}")).unwrap())
            .collect::<Vec<_>>()
    };
    let out = b.cmd(&[
        "exec",
        "-u",
        "1000:1000",
        "-e",
        "FOO=bar",
        "--cwd",
        "/tmp",
        &b.id,
        "sh",
        "-c",
        "echo $$; id -u; echo $FOO; pwd; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max; exit 9",
    ]);
    assert_eq!(out.status.code(), Some(9), "{}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_ne!(lines[0], "1", "exec'd process is not init");
    assert_eq!(&lines[1..], ["1000", "bar", "/tmp", "50"]);
    // A detached exec: check its namespaces from outside while it runs.
    let pid_file = b.dir.parent().unwrap().join("exec.pid");
    let out = b.detached(&[
        "exec".as_ref(),
        "-d".as_ref(),
        "--pid-file".as_ref(),
        pid_file.as_os_str(),
        b.id.as_ref(),
        "sleep".as_ref(),
        "5".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    assert_eq!(ns(&pid), ns(&init.to_string()));
    let procs: Vec<i32> = serde_json::from_str(&stdout(&b.cmd(&["ps", "--format", "json", &b.id]))).unwrap();
    assert!(procs.contains(&pid.parse().unwrap()), "exec'd process not in the container's cgroup");
    // An exec that fails before its process runs exits 255, as runc's.
    let bad = b.cmd(&["exec", &b.id, "no-such-command"]);
    assert_eq!(bad.status.code(), Some(255), "{}", stderr(&bad));
    // podman reads 127 from runc's words (and 126 from "permission denied").
    assert!(stderr(&bad).contains("no-such-command") && stderr(&bad).contains("executable file not found in $PATH"), "{}", stderr(&bad));
    let missing = b.cmd(&["exec", &b.id, "/no/such/file"]);
    assert!(stderr(&missing).contains("/no/such/file") && stderr(&missing).contains("no such file or directory"), "{}", stderr(&missing));
    // A file that is there but whose interpreter is not: the execve's own words.
    std::fs::write(b.dir.join("rootfs/bad.sh"), "#!/no/such/interpreter\n").unwrap();
    std::fs::set_permissions(b.dir.join("rootfs/bad.sh"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    let bad_interp = b.cmd(&["exec", &b.id, "/bad.sh"]);
    assert!(stderr(&bad_interp).contains("exec /bad.sh: no such file or directory"), "{}", stderr(&bad_interp));
    assert!(b.cmd(&["pause", &b.id]).status.success());
    let paused = b.cmd(&["exec", &b.id, "true"]);
    assert_eq!(paused.status.code(), Some(255), "exec into a paused container: {}", stderr(&paused));
    assert!(stderr(&paused).contains("paused"), "{}", stderr(&paused));
    assert!(b.cmd(&["resume", &b.id]).status.success());
    assert!(b.cmd(&["kill", &b.id, "KILL"]).status.success());
    b.wait_status("stopped");
    let late = b.cmd(&["exec", &b.id, "true"]);
    assert!(!late.status.success());
    assert!(stderr(&late).contains("stopped"), "{}", stderr(&late));
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn exec_tty_through_console_socket() {
    need_root!();
    let b = Bundle::sh("exectty", "sleep 30");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let sock_path = b.dir.parent().unwrap().join("exec-console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let acceptor = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        recv_fd(&conn)
    });
    let out = b.detached(&[
        "exec".as_ref(),
        "-t".as_ref(),
        "-d".as_ref(),
        "--console-socket".as_ref(),
        sock_path.as_os_str(),
        b.id.as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        "tty; echo exec-tty-done".as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let mut f = std::fs::File::from(acceptor.join().unwrap());
    let mut text = String::new();
    let mut buf = [0u8; 512];
    while let Ok(n) = f.read(&mut buf) {
        if n == 0 {
            break;
        }
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.contains("exec-tty-done") {
            break;
        }
    }
    assert!(text.contains("/dev/pts/"), "{text:?}");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn missing_or_unrunnable_command_fails_create() {
    need_root!();
    for (args, want) in [
        (json!(["/no/such/cmd"]), "no such file or directory"),
        (json!(["/etc/passwd"]), "permission denied"),
        (json!(["nosuchcmd"]), "executable file not found"),
    ] {
        let mut b = Bundle::sh("noexec", "true");
        b.config["process"]["args"] = args;
        let out = b.create();
        assert!(!out.status.success());
        assert!(stderr(&out).contains(want), "{}", stderr(&out));
        b.assert_gone();
    }
}

#[test]
fn sigkill_ends_a_paused_container() {
    need_root!();
    let b = Bundle::sh("killpaused", "sleep 30");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    assert!(b.cmd(&["pause", &b.id]).status.success());
    assert!(b.cmd(&["kill", &b.id, "KILL"]).status.success());
    b.wait_status("stopped");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

/// `--debug` says what strata does: `level=debug` lines on stderr, or in
/// `--log` (text or json) and then not on stderr; for `exec` too.
#[test]
fn debug_lines_go_to_stderr_or_the_log() {
    need_root!();
    let b = Bundle::sh("debug", "sleep 30");
    b.write_config();
    let out = b.detached(&["--debug".as_ref(), "run".as_ref(), "-d".as_ref(), "--bundle".as_ref(), b.dir.as_os_str(), b.id.as_ref()]);
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(stderr(&out).contains("level=debug") && stderr(&out).contains("init is pid"), "{}", stderr(&out));
    let log = b.dir.parent().unwrap().join("debug.log");
    for (format, want) in [("text", "level=debug"), ("json", "\"level\":\"debug\"")] {
        let _ = std::fs::remove_file(&log);
        let out = b.cmd(&["--debug", "--log", log.to_str().unwrap(), "--log-format", format, "exec", &b.id, "true"]);
        assert!(out.status.success(), "{}", stderr(&out));
        assert!(!stderr(&out).contains("debug"), "debug lines on stderr with --log: {}", stderr(&out));
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(text.contains(want) && text.contains("exec "), "{format}: {text}");
    }
    let quiet = b.cmd(&["exec", &b.id, "true"]);
    assert!(!stderr(&quiet).contains("debug"), "{}", stderr(&quiet));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

/// runc's command-line surface where scripts and clients read it: `-v`,
/// help in runc's layout under the name strata was run by, `list` of a
/// `--root` that does not exist, `events` records in runc's field order
/// with a Go duration, `run --keep`, and `--pidfd-socket`.
#[test]
fn runcs_command_line_surface() {
    need_root!();
    let dir = std::env::temp_dir().join(format!("strata-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let runc = dir.join("runc");
    let _ = std::fs::remove_file(&runc);
    std::os::unix::fs::symlink(&*crate::common::STRATA, &runc).unwrap();
    let cmd = |args: &[&str]| std::process::Command::new(&runc).args(args).stdin(std::process::Stdio::null()).output_within();
    let v = stdout(&cmd(&["-v"]));
    let lines: Vec<&str> = v.lines().collect();
    assert!(lines[0].starts_with("runc version ") && lines[1].starts_with("commit:") && lines[2].starts_with("spec: 1."), "{v}");
    for c in ["create", "exec", "kill", "update", "events"] {
        let h = cmd(&[c, "-h"]);
        assert!(h.status.success(), "{c} -h");
        let text = stdout(&h);
        assert!(
            text.starts_with("NAME:\n") && text.lines().nth(1).is_some_and(|l| l.trim_start().starts_with(&format!("runc {c} - "))),
            "{text}"
        );
    }
    let bad = cmd(&["foo", "-h"]);
    assert!(!bad.status.success() && stderr(&bad).contains("No help topic for 'foo'"), "{}", stderr(&bad));
    let missing = cmd(&["--root", "/nonexistent-strata-root", "list"]);
    assert!(!missing.status.success(), "list of a missing --root succeeded");
    // run --keep: the container stays, stopped, until delete.
    let b = Bundle::sh("keep", "exit 7");
    b.write_config();
    let out = b.strata().args(["run", "--keep", "--bundle"]).arg(&b.dir).arg(&b.id).stdin(std::process::Stdio::null()).output_within();
    assert_eq!(out.status.code(), Some(7), "{}", stderr(&out));
    assert_eq!(b.status(), "stopped");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
    // --pidfd-socket receives a pidfd of init; events use Go durations and
    // runc's field order.
    let b = Bundle::sh("pidfd", "sleep 30");
    b.write_config();
    let sock = b.dir.parent().unwrap().join("pidfd.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    let got = std::thread::spawn(move || {
        let (conn, _) = listener.accept().unwrap();
        recv_fd(&conn)
    });
    let out = b.detached(&[
        "create".as_ref(),
        "--pidfd-socket".as_ref(),
        sock.as_os_str(),
        "--bundle".as_ref(),
        b.dir.as_os_str(),
        b.id.as_ref(),
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let pidfd = got.join().unwrap();
    let fdinfo = std::fs::read_to_string(format!("/proc/self/fdinfo/{}", std::os::fd::AsRawFd::as_raw_fd(&pidfd))).unwrap();
    let init = b.state()["pid"].as_i64().unwrap();
    assert!(fdinfo.lines().any(|l| l.split_whitespace().collect::<Vec<_>>() == ["Pid:", &init.to_string()]), "{fdinfo}");
    assert!(b.start().status.success());
    let ev = b.cmd(&["events", "--stats", "--interval", "100ms", &b.id]);
    assert!(ev.status.success(), "{}", stderr(&ev));
    assert!(stdout(&ev).starts_with(&format!("{{\"type\":\"stats\",\"id\":\"{}\",\"data\":", b.id)), "{}", stdout(&ev));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
    let _ = std::fs::remove_dir_all(&dir);
}

/// An exec'd process leads a session of its own, terminal or not, as
/// runc's does (so that a container with one can be checkpointed: CRIU
/// refuses a task whose session leader is outside the container).
#[test]
fn an_execd_process_leads_its_own_session() {
    need_root!();
    let b = Bundle::sh("execsid", "sleep 30");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let out = b.cmd(&["exec", &b.id, "sh", "-c", "set -- $(cat /proc/$$/stat); echo $1 $6"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let text = stdout(&out);
    let f: Vec<&str> = text.split_whitespace().collect();
    assert_eq!(f.len(), 2, "{text}");
    assert_eq!(f[0], f[1], "the exec'd process (pid {}) is not its session's leader (session {})", f[0], f[1]);
}
