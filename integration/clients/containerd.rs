//! containerd (ctr and the io.containerd.runc.v2 shim) drives strata.

use super::*;

pub(super) struct Containerd {
    pub(super) base: PathBuf,
    runtime: PathBuf,
    pub(super) sock: PathBuf,
    pub(super) cgparent: String,
    /// The containerd namespace the checks use: `k8s.io` for the CRI.
    ns: &'static str,
    daemon: Option<Child>,
    /// /run/containerd did not exist before: remove what the shims left there.
    made_run_dir: bool,
}

impl Containerd {
    /// A private containerd. With `cri`, its CRI plugin is on, with strata
    /// (through the runc shim) as the default runtime and the test's pause
    /// image as the sandbox image; without, the CRI plugin is off.
    pub(super) fn start(base: PathBuf, cri: bool) -> Containerd {
        Containerd::start_with_path(base, cri, None)
    }

    /// `start`, with `path_first` put first on the daemon's PATH (and so
    /// the shims' and the runtime's: where a working CRIU is).
    pub(super) fn start_with_path(base: PathBuf, cri: bool, path_first: Option<PathBuf>) -> Containerd {
        let made_run_dir = !Path::new("/run/containerd").exists();
        let b = base.display();
        let runtime = runtime();
        let rt = runtime.display();
        let cri_off = if cri { "" } else { r#""io.containerd.grpc.v1.cri", "# };
        // restrict_oom_score_adj: the sandbox asks for -998, which only
        // CAP_SYS_RESOURCE may set, and root lacks it on some hosts (runc
        // fails there the same way). Clamped to containerd's own score.
        let cri_config = if cri {
            std::fs::create_dir_all(base.join("cni-conf")).unwrap();
            format!(
                r#"
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_IMAGE}"
  disable_apparmor = true
  restrict_oom_score_adj = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    default_runtime_name = "strata"
    snapshotter = "overlayfs"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.strata]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.strata.options]
        BinaryName = "{rt}"
        Root = "{b}/runc-root"
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{b}/cni-bin"
    conf_dir = "{b}/cni-conf"
"#
            )
        } else {
            String::new()
        };
        let config = format!(
            r#"version = 2
root = "{b}/root"
state = "{b}/state"
disabled_plugins = [{cri_off}"io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

[grpc]
  address = "{b}/containerd.sock"

[ttrpc]
  address = "{b}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{b}/opt"
{cri_config}"#
        );
        std::fs::write(base.join("config.toml"), config).unwrap();
        std::fs::create_dir_all(base.join("fifo")).unwrap();
        let log = std::fs::File::create(base.join("containerd.log")).unwrap();
        let mut daemon = Command::new("containerd");
        if let Some(dir) = &path_first {
            daemon.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
        let daemon = daemon
            .current_dir(&base)
            .arg("--config")
            .arg(base.join("config.toml"))
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let sock = base.join("containerd.sock");
        let c = Containerd {
            base,
            runtime,
            sock,
            cgparent: format!("/strata-clients-containerd{}-{}", if cri { "-cri" } else { "" }, std::process::id()),
            ns: if cri { "k8s.io" } else { "strata-test" },
            daemon: Some(daemon),
            made_run_dir,
        };
        poll("containerd up", Duration::from_secs(15), || {
            let o = output_within(Command::new("ctr").arg("--address").arg(&c.sock).arg("version"), None);
            if o.status.success() { Ok(()) } else { Err(show(&o)) }
        });
        c
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["ctr".into(), "--address".into(), self.sock.display().to_string(), "-n".into(), self.ns.into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    pub(super) fn ctr(&self, args: &[&str]) -> Output {
        let v = self.argv(args);
        output_within(Command::new(&v[0]).args(&v[1..]).current_dir(&self.base), None)
    }

    fn ctr_tty(&self, args: &[&str]) -> Output {
        output_within(in_pty(&self.argv(args)).current_dir(&self.base), None)
    }

    /// `run` through the runc shim with our runtime, state root, fifo dir
    /// and cgroup, then `args` (options, IMAGE, id, command).
    fn run_args(&self, id: &str, args: &[&str]) -> Vec<String> {
        let mut v: Vec<String> = vec!["run".into(), "--runc-binary".into(), self.runtime.display().to_string()];
        v.extend(["--runc-root".into(), self.runc_root().display().to_string()]);
        v.extend(["--fifo-dir".into(), self.base.join("fifo").display().to_string()]);
        v.extend(["--cgroup".into(), format!("{}/{id}", self.cgparent)]);
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn run(&self, id: &str, args: &[&str]) -> Output {
        let v = self.run_args(id, args);
        self.ctr(&v.iter().map(String::as_str).collect::<Vec<_>>())
    }

    /// The last lines of the daemon's log (the shims log there too).
    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(self.base.join("containerd.log")).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        format!("containerd.log ends:\n{}", lines[lines.len().saturating_sub(30)..].join("\n"))
    }

    fn runc_root(&self) -> PathBuf {
        self.base.join("runc-root")
    }

    fn task_status(&self, id: &str) -> String {
        let out = ok(&self.ctr(&["task", "ls"]));
        out.lines().find(|l| l.split_whitespace().next() == Some(id)).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("").to_string()
    }

    pub(super) fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let tasks = stdout(&self.ctr(&["task", "ls", "-q"]));
        let ctrs = stdout(&self.ctr(&["container", "ls", "-q"]));
        if !tasks.trim().is_empty() {
            left.push(format!("tasks: {tasks}"));
        }
        if !ctrs.trim().is_empty() {
            left.push(format!("containers: {ctrs}"));
        }
        for e in std::fs::read_dir(self.runc_root().join(self.ns)).into_iter().flatten().flatten() {
            left.push(format!("runtime state {}", e.path().display()));
        }
        for p in cgroup_dirs_at(&self.cgparent) {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    left.push(format!("cgroup {}", e.path().display()));
                }
            }
        }
        left.extend(mounts_under(&self.base).into_iter().map(|m| format!("mount {m}")));
        // The shims and the containers' processes; the daemon itself stays.
        let daemon = self.daemon.as_ref().map(|d| d.id().to_string()).unwrap_or_default();
        left.extend(
            procs_mentioning(self.sock.to_str().unwrap())
                .into_iter()
                .chain(procs_mentioning(&format!("{}/state", self.base.display())))
                .filter(|p| p.split(':').next() != Some(daemon.as_str()))
                .map(|p| format!("process {p}")),
        );
        left
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        // Whatever a failed check left: tasks killed, then removed.
        for id in stdout(&self.ctr(&["container", "ls", "-q"])).split_whitespace() {
            let _ = self.ctr(&["task", "kill", "-a", "-s", "KILL", id]);
            std::thread::sleep(Duration::from_millis(200));
            let _ = self.ctr(&["task", "delete", "-f", id]);
            let _ = self.ctr(&["container", "delete", id]);
        }
        if let Some(mut d) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(d.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if wait_within(&mut d, Duration::from_secs(10)).is_none() {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        remove_cgroup_tree(&self.cgparent);
        if self.made_run_dir {
            for d in ["/run/containerd/s", "/run/containerd/fifo", "/run/containerd/runc", "/run/containerd"] {
                let _ = std::fs::remove_dir(d);
            }
        }
        if mounts_under(&self.base).is_empty() && cgroup_dirs_at(&self.cgparent).is_empty() {
            let _ = std::fs::remove_dir_all(&self.base);
        } else {
            eprintln!("containerd: left for inspection: {}", self.base.display());
        }
    }
}

/// A `ctr run` in the background and its stdout (ours: killed by pid if
/// still there).
struct Bg(Child, std::process::ChildStdout);

impl Drop for Bg {
    fn drop(&mut self) {
        if self.0.try_wait().ok().flatten().is_none() {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
}

#[test]
fn containerd_drives_the_runtime() {
    need_root!();
    need_bins!("containerd", "ctr", "containerd-shim-runc-v2", "podman", "script");
    let base = temp_base("ctd");
    if let Err(e) = make_image(&base.join("img")) {
        let _ = std::fs::remove_dir_all(&base);
        panic!("hack/mkimage-clients: {e}");
    }
    let d = Containerd::start(base.clone(), false);
    let mut c = Checks::new("containerd");
    ok(&d.ctr(&["image", "import", base.join("img/image.docker.tar").to_str().unwrap()]));

    c.check("run --rm: output and exit code", || {
        assert_eq!(ok(&d.run("hello", &["--rm", IMAGE, "hello"])), "hello from the image\n");
        let o = d.run("exit3", &["--rm", IMAGE, "exit3", "sh", "-c", "exit 3"]);
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    });

    c.check("image USER, WORKDIR, ENV", || {
        let o = d.run("img", &["--rm", IMAGE, "img", "sh", "-c", "id -u; id -G; pwd; echo $STRATA_IMAGE_VAR; echo $PATH"]);
        // Seen once in CI, not since in 150 runs under load: exit 0 and no
        // output at all. The whole exchange and containerd's log say more
        // if it comes back.
        assert_eq!(ok(&o), "1000\n1000 1001\n/home/tester\nfrom-image\n/usr/sbin:/usr/bin:/sbin:/bin\n", "{}\n{}", show(&o), d.log_tail());
    });

    c.check("--env --cwd", || {
        let out =
            ok(&d.run("envcwd", &["--rm", "--env", "FOO=bar baz", "--cwd", "/tmp", IMAGE, "envcwd", "sh", "-c", "echo \"$FOO\"; pwd"]));
        assert_eq!(out, "bar baz\n/tmp\n");
    });

    c.check("-t: a terminal, exit code through it", || {
        let v = d.run_args("tty", &["--rm", "-t", IMAGE, "tty", "sh", "-c", "tty; test -t 0 && echo is-tty; exit 4"]);
        let o = d.ctr_tty(&v.iter().map(String::as_str).collect::<Vec<_>>());
        assert_eq!(o.status.code(), Some(4), "{}", show(&o));
        assert!(both(&o).contains("/dev/pts/0") && both(&o).contains("is-tty"), "{}", show(&o));
    });

    c.check("command not found: run fails with the reason", || {
        let o = d.run("nocmd", &["--rm", IMAGE, "nocmd", "/no/such/cmd"]);
        assert!(!o.status.success(), "{}", show(&o));
        assert!(both(&o).to_lowercase().contains("no such file or directory"), "{}", show(&o));
        let _ = d.ctr(&["container", "delete", "nocmd"]);
    });

    c.check("--memory-limit enforced: OOM kill is exit 137", || {
        let o = d.run(
            "oom",
            &[
                "--rm",
                "--memory-limit",
                "16777216",
                IMAGE,
                "oom",
                "sh",
                "-c",
                "x=0123456789; for i in $(seq 24); do x=$x$x; done; echo survived",
            ],
        );
        assert_eq!(o.status.code(), Some(137), "{}", show(&o));
    });

    // A long-running task: `ctr run` in the background, until `task kill`.
    let id = "svc";
    let mut bg: Option<Bg> = None;
    c.check("run (foreground, in the background) with --memory-limit", || {
        let v = d.argv(
            &d.run_args(
                id,
                &[
                    "--rm",
                    "--memory-limit",
                    "67108864",
                    IMAGE,
                    id,
                    "sh",
                    "-c",
                    "trap 'echo got-term; exit 9' TERM; echo ready; while true; do sleep 0.1; done",
                ],
            )
            .iter()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        );
        let mut child = Command::new(&v[0])
            .args(&v[1..])
            .current_dir(&d.base)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let out = child.stdout.take().unwrap();
        let b = bg.insert(Bg(child, out));
        let mut buf = [0u8; 6];
        b.1.read_exact(&mut buf).unwrap();
        assert_eq!(&buf, b"ready\n");
        assert_eq!(d.task_status(id), "RUNNING");
    });

    c.check("task exec: output, exit code, image user and workdir", || {
        let o = d.ctr(&[
            "task",
            "exec",
            "--fifo-dir",
            d.base.join("fifo").to_str().unwrap(),
            "--exec-id",
            "e1",
            id,
            "sh",
            "-c",
            "id -u; pwd; exit 5",
        ]);
        assert_eq!(o.status.code(), Some(5), "{}", show(&o));
        assert_eq!(stdout(&o), "1000\n/home/tester\n");
    });

    c.check("task exec --user --cwd", || {
        let out = ok(&d.ctr(&[
            "task",
            "exec",
            "--fifo-dir",
            d.base.join("fifo").to_str().unwrap(),
            "--user",
            "0",
            "--cwd",
            "/tmp",
            "--exec-id",
            "e2",
            id,
            "sh",
            "-c",
            "id -u; pwd",
        ]));
        assert_eq!(out, "0\n/tmp\n");
    });

    c.check("task exec -t: a terminal", || {
        let o = d.ctr_tty(&[
            "task",
            "exec",
            "-t",
            "--fifo-dir",
            d.base.join("fifo").to_str().unwrap(),
            "--exec-id",
            "e3",
            id,
            "sh",
            "-c",
            "tty; exit 6",
        ]);
        assert_eq!(o.status.code(), Some(6), "{}", show(&o));
        assert!(both(&o).contains("/dev/pts/"), "{}", show(&o));
    });

    c.check("task ps", || {
        let out = ok(&d.ctr(&["task", "ps", id]));
        assert!(out.lines().count() >= 2, "{out}");
    });

    c.check("task metrics: the memory limit and pids", || {
        let out = ok(&d.ctr(&["task", "metrics", "--format", "json", id]));
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        assert_eq!(v["memory"]["usage"]["limit"], 67108864, "{out}");
        assert!(v["pids"]["current"].as_u64().unwrap() >= 1, "{out}");
        assert!(v["cpu"]["usage"]["total"].as_u64().unwrap() > 0, "{out}");
    });

    c.check("task pause / resume", || {
        ok(&d.ctr(&["task", "pause", id]));
        assert_eq!(d.task_status(id), "PAUSED");
        let freezer = format!("/sys/fs/cgroup/freezer{}/{id}/freezer.state", d.cgparent);
        assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
        ok(&d.ctr(&["task", "resume", id]));
        assert_eq!(d.task_status(id), "RUNNING");
        assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
    });

    c.check("task kill: SIGTERM reaches the process, run exits with its code", || {
        let mut child = bg.take().expect("the task did not start");
        ok(&d.ctr(&["task", "kill", id]));
        let status = wait_within(&mut child.0, Duration::from_secs(15)).expect("ctr run did not return after task kill");
        let mut rest = String::new();
        child.1.read_to_string(&mut rest).unwrap();
        assert_eq!(rest, "got-term\n");
        assert_eq!(status.code(), Some(9));
    });

    c.check("task kill -s KILL a paused task: it dies (runc thaws after SIGKILL)", || {
        let k = "frozen";
        ok(&d.run(k, &["-d", IMAGE, k, "sleep", "100"]));
        ok(&d.ctr(&["task", "pause", k]));
        ok(&d.ctr(&["task", "kill", "-s", "KILL", k]));
        let t = Instant::now();
        while d.task_status(k) != "STOPPED" && t.elapsed() < Duration::from_secs(5) {
            std::thread::sleep(Duration::from_millis(50));
        }
        let st = d.task_status(k);
        if st != "STOPPED" {
            // Thaw it so that it dies and cleanup does not hang on it.
            let _ = d.ctr(&["task", "resume", k]);
            poll("stopped after resume", Duration::from_secs(5), || {
                if d.task_status(k) == "STOPPED" { Ok(()) } else { Err(d.task_status(k)) }
            });
        }
        let _ = d.ctr(&["task", "delete", k]);
        let _ = d.ctr(&["container", "delete", k]);
        assert_eq!(st, "STOPPED", "SIGKILL to a paused task: still {st} after 5s");
    });

    c.check("task kill --all -s KILL: every process, exit 137", || {
        let k = "killall";
        ok(&d.run(k, &["-d", IMAGE, k, "sh", "-c", "sleep 100 & sleep 100 & wait"]));
        poll("three processes", Duration::from_secs(5), || {
            let out = stdout(&d.ctr(&["task", "ps", k]));
            if out.lines().count() >= 4 { Ok(()) } else { Err(out) }
        });
        let pids: Vec<i32> =
            stdout(&d.ctr(&["task", "ps", k])).lines().skip(1).filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
        ok(&d.ctr(&["task", "kill", "--all", "-s", "KILL", k]));
        poll("stopped", Duration::from_secs(10), || if d.task_status(k) == "STOPPED" { Ok(()) } else { Err(d.task_status(k)) });
        let o = d.ctr(&["task", "delete", k]);
        assert!(both(&o).contains("137"), "{}", show(&o));
        ok(&d.ctr(&["container", "delete", k]));
        for pid in pids {
            assert!(!crate::common::alive(pid), "pid {pid} survived kill --all");
        }
    });

    c.check("nothing left: tasks, containers, runtime state, cgroups, mounts, shims", || {
        poll("leftovers", Duration::from_secs(10), || {
            let l = d.leftovers();
            if l.is_empty() { Ok(()) } else { Err(l.join("\n")) }
        });
    });
    drop(bg);
    drop(d);
    c.finish();
}

/// containerd's checkpoint and restore through the runc shim and the
/// runtime: `ctr containers checkpoint --task --rw` of a running task, the
/// task and container removed, then `ctr containers restore --live --rw`
/// from the checkpoint image: the process goes on, with its files.
#[test]
fn containerd_checkpoints_and_restores_through_the_runtime() {
    need_root!();
    need_bins!("containerd", "ctr", "containerd-shim-runc-v2", "podman");
    let criu = crate::need_criu!();
    let base = temp_base("ctd-cr");
    if let Err(e) = make_image(&base.join("img")) {
        let _ = std::fs::remove_dir_all(&base);
        panic!("hack/mkimage-clients: {e}");
    }
    let dir = criu.canonicalize().ok().and_then(|c| c.parent().map(Path::to_path_buf));
    let d = Containerd::start_with_path(base.clone(), false, dir);
    let mut c = Checks::new("containerd checkpoint");
    // The pause image: the same busybox files, as root (CRIU reads the
    // rlimits of each task, which root without CAP_SYS_RESOURCE, as on this
    // host, may not do for another uid; ctr has no --user).
    ok(&d.ctr(&["image", "import", base.join("img/pause.docker.tar").to_str().unwrap()]));
    let id = "crsvc";
    let count = |d: &Containerd, n: &str| -> u64 {
        stdout(&d.ctr(&["task", "exec", "--exec-id", n, id, "cat", "/tmp/count"])).trim().parse().unwrap_or(0)
    };
    let past = |d: &Containerd, n: u64| {
        for i in 0..200 {
            let now = count(d, &format!("c{i}"));
            if now > n {
                return now;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the counter stays at {n}");
    };
    let script = "echo kept > /tmp/written; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";
    let v = d.run_args(id, &["-d", "--null-io", PAUSE_IMAGE, id, "sh", "-c", script]);
    ok(&d.ctr(&v.iter().map(String::as_str).collect::<Vec<_>>()));
    let mut at = past(&d, 0);

    c.check("containers checkpoint --task --rw; delete; containers restore --live --rw", || {
        let o = d.ctr(&["containers", "checkpoint", "--task", "--rw", id, "localhost/crsvc-checkpoint:1"]);
        if !o.status.success() {
            let log = Command::new("sh")
                .arg("-c")
                .arg(format!("cat $(find {} -name criu-dump.log) | grep -B3 Error", d.base.display()))
                .output()
                .unwrap();
            panic!("checkpoint: {}\nCRIU's log: {}", show(&o), stdout(&log));
        }
        assert_eq!(d.task_status(id), "RUNNING", "the task stops running after a checkpoint");
        ok(&d.ctr(&["task", "kill", "-s", "KILL", id]));
        poll("task stopped", Duration::from_secs(10), || if d.task_status(id) == "STOPPED" { Ok(()) } else { Err(d.task_status(id)) });
        ok(&d.ctr(&["task", "delete", id]));
        ok(&d.ctr(&["containers", "delete", id]));
        ok(&d.ctr(&["containers", "restore", "--live", "--rw", id, "localhost/crsvc-checkpoint:1"]));
        assert_eq!(d.task_status(id), "RUNNING");
        let now = past(&d, at);
        assert!(now < at + 1000, "the counter started again: {at} -> {now}");
        at = now;
        assert_eq!(ok(&d.ctr(&["task", "exec", "--exec-id", "w", id, "cat", "/tmp/written"])), "kept\n");
    });

    c.check("nothing left: tasks, containers, runtime state, cgroups, mounts, processes", || {
        let _ = d.ctr(&["task", "kill", "-s", "KILL", id]);
        poll("task stopped", Duration::from_secs(10), || if d.task_status(id) != "RUNNING" { Ok(()) } else { Err(d.task_status(id)) });
        let _ = d.ctr(&["task", "delete", id]);
        let _ = d.ctr(&["containers", "delete", id]);
        // The shim exits in the background after its task is deleted.
        poll("leftovers", Duration::from_secs(10), || {
            let l = d.leftovers();
            if l.is_empty() { Ok(()) } else { Err(l.join("\n")) }
        });
    });
    c.finish();
}
