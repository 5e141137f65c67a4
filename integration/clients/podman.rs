//! podman (through conmon) drives strata: run, exec, stop, rm, limits.

use super::*;

struct Podman {
    base: PathBuf,
    runtime: PathBuf,
    /// cgroup parent of every container (and of conmon), ours to remove.
    cgparent: String,
    /// A directory put first on podman's PATH (where a working CRIU is).
    path_first: Option<PathBuf>,
}

impl Podman {
    fn new(base: PathBuf) -> Podman {
        let runtime = runtime();
        let cgparent = format!("/strata-clients-podman-{}", std::process::id());
        for d in ["root", "runroot", "tmp", "net"] {
            std::fs::create_dir_all(base.join(d)).unwrap();
        }
        let b = base.display();
        let conf = format!(
            r#"[containers]
# root lacks CAP_SYS_RESOURCE here: podman's defaults would raise the hard limits.
default_ulimits = ["nofile=20000:20000", "nproc=32768:32768"]
netns = "none"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = "{b}/events.log"
tmp_dir = "{b}/tmp"
lock_type = "file"
runtime_supports_json = ["crun", "runc", "strata"]

[engine.runtimes]
strata = ["{rt}"]

[network]
network_config_dir = "{b}/net"
"#,
            rt = runtime.display()
        );
        std::fs::write(base.join("containers.conf"), conf).unwrap();
        std::fs::write(
            base.join("storage.conf"),
            format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{b}/root\"\nrunroot = \"{b}/runroot\"\n"),
        )
        .unwrap();
        Podman { base, runtime, cgparent, path_first: None }
    }

    /// The podman command line, global flags included.
    fn argv(&self, args: &[&str]) -> Vec<String> {
        let b = &self.base;
        let mut v: Vec<String> = vec![
            "podman".into(),
            "--root".into(),
            b.join("root").display().to_string(),
            "--runroot".into(),
            b.join("runroot").display().to_string(),
        ];
        v.extend(["--storage-driver", "vfs"].map(String::from));
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn env(&self, c: &mut Command) {
        // conmon writes a file named "oom" into its working directory when a
        // container is OOM-killed (conmon 2.1): keep it in ours.
        c.current_dir(&self.base);
        c.env("CONTAINERS_CONF", self.base.join("containers.conf"))
            .env("CONTAINERS_STORAGE_CONF", self.base.join("storage.conf"))
            .env("CONTAINERS_REGISTRIES_CONF", self.base.join("registries.conf"))
            .env("TMPDIR", self.base.join("tmp"));
        if let Some(dir) = &self.path_first {
            c.env("PATH", format!("{}:{}", dir.display(), std::env::var("PATH").unwrap_or_default()));
        }
    }

    fn cmd(&self, args: &[&str]) -> Command {
        let v = self.argv(args);
        let mut c = Command::new(&v[0]);
        c.args(&v[1..]);
        self.env(&mut c);
        c
    }

    fn pm(&self, args: &[&str]) -> Output {
        output_within(&mut self.cmd(args), None)
    }

    fn pm_in(&self, args: &[&str], input: &[u8]) -> Output {
        output_within(&mut self.cmd(args), Some(input))
    }

    /// podman under a terminal.
    fn pm_tty(&self, args: &[&str]) -> Output {
        let mut c = in_pty(&self.argv(args));
        self.env(&mut c);
        output_within(&mut c, None)
    }

    /// `run` with the runtime and cgroup parent, then `args`.
    fn run_args<'a>(&'a self, args: &[&'a str]) -> Vec<&'a str> {
        let mut v = vec!["run", "--runtime", "strata", "--cgroup-parent", &self.cgparent, "--pull", "never"];
        v.extend_from_slice(args);
        v
    }

    fn run(&self, args: &[&str]) -> Output {
        let mut v = self.run_args(&["--rm"]);
        v.extend_from_slice(args);
        self.pm(&v)
    }

    fn inspect(&self, name: &str, fmt: &str) -> String {
        ok(&self.pm(&["inspect", "-f", fmt, name])).trim().to_string()
    }

    /// Every container id podman's event log has seen.
    fn container_ids(&self) -> Vec<String> {
        let log = std::fs::read_to_string(self.base.join("events.log")).unwrap_or_default();
        let mut ids: Vec<String> = log
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["Type"] == "container")
            .filter_map(|v| v["ID"].as_str().map(String::from))
            .collect();
        ids.sort();
        ids.dedup();
        ids
    }

    /// What the containers left behind: runtime state, cgroups, mounts,
    /// processes (conmon, the container's).
    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let state = default_state_root(&self.runtime);
        for id in self.container_ids() {
            if state.join(&id).exists() {
                left.push(format!("runtime state {}", state.join(&id).display()));
            }
            for p in cgroup_dirs_at(&format!("{}/libpod-{id}", self.cgparent)) {
                left.push(format!("cgroup {}", p.display()));
            }
        }
        left.extend(mounts_under(&self.base).into_iter().map(|m| format!("mount {m}")));
        left.extend(procs_mentioning(self.base.to_str().unwrap()).into_iter().map(|p| format!("process {p}")));
        left
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        let _ = output_within(&mut self.cmd(&["rm", "-a", "-f", "-t", "0"]), None);
        let _ = output_within(&mut self.cmd(&["rmi", "-a", "-f"]), None);
        remove_cgroup_tree(&self.cgparent);
        let left = cgroup_dirs_at(&self.cgparent);
        if left.is_empty() && mounts_under(&self.base).is_empty() {
            let _ = std::fs::remove_dir_all(&self.base);
        } else {
            eprintln!("podman: left for inspection: {} (cgroups {left:?})", self.base.display());
        }
    }
}

#[test]
fn podman_drives_the_runtime() {
    need_root!();
    need_bins!("podman", "conmon", "script");
    let base = temp_base("podman");
    if let Err(e) = make_image(&base.join("img")) {
        let _ = std::fs::remove_dir_all(&base);
        panic!("hack/mkimage-clients: {e}");
    }
    let p = Podman::new(base.clone());
    let mut c = Checks::new("podman");
    ok(&p.pm(&["load", "-q", "-i", base.join("img/image.docker.tar").to_str().unwrap()]));

    c.check("run --rm: output, image USER/WORKDIR/ENV, exit code", || {
        assert_eq!(ok(&p.run(&[IMAGE])), "hello from the image\n");
        let o = p.run(&[IMAGE, "sh", "-c", "id -u; id -G; pwd; echo $STRATA_IMAGE_VAR; exit 7"]);
        assert_eq!(o.status.code(), Some(7), "{}", show(&o));
        assert_eq!(stdout(&o), "1000\n1000 1001\n/home/tester\nfrom-image\n", "{}", show(&o));
    });

    c.check("-e -w --user --hostname", || {
        let out = ok(&p.run(&[
            "-e",
            "FOO=bar baz",
            "-w",
            "/var/tmp",
            "--user",
            "0:0",
            "--hostname",
            "clienthost",
            IMAGE,
            "sh",
            "-c",
            "echo \"$FOO\"; pwd; id -u; id -g; hostname",
        ]));
        assert_eq!(out, "bar baz\n/var/tmp\n0\n0\nclienthost\n");
        let out = ok(&p.run(&["--user", "tester:extra", "-w", "/", IMAGE, "sh", "-c", "id -un; id -gn; pwd"]));
        assert_eq!(out, "tester\nextra\n/\n");
    });

    c.check("-i: stdin reaches the container, EOF ends it", || {
        let o = p.pm_in(&p.run_args(&["--rm", "-i", IMAGE, "sh", "-c", "cat; echo end"]), b"line one\nline two\n");
        assert_eq!(ok(&o), "line one\nline two\nend\n");
    });

    c.check("-t: a terminal, exit code through it", || {
        let o = p.pm_tty(&p.run_args(&["--rm", "-t", IMAGE, "sh", "-c", "tty; test -t 0 && test -t 1 && echo both-tty; exit 3"]));
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
        let out = both(&o);
        assert!(out.contains("/dev/pts/0") && out.contains("both-tty"), "{}", show(&o));
    });

    c.check("command not found: 127, not executable: 126 (as with runc)", || {
        let o = p.run(&[IMAGE, "/no/such/cmd"]);
        assert_eq!(o.status.code(), Some(127), "{}", show(&o));
        let o = p.run(&[IMAGE, "/etc/passwd"]);
        assert_eq!(o.status.code(), Some(126), "{}", show(&o));
    });

    c.check("mounts: --read-only, -v ro, --tmpfs", || {
        let vol = p.base.join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("f"), "from-host\n").unwrap();
        let v = format!("{}:/vol:ro", vol.display());
        let o = p.run(&[
            "--read-only",
            "-u",
            "0",
            "-v",
            &v,
            "--tmpfs",
            "/scratch:size=1m",
            IMAGE,
            "sh",
            "-c",
            "cat /vol/f; touch /vol/x 2>/dev/null || echo vol-ro; touch /x 2>/dev/null || echo root-ro; touch /scratch/y && echo tmpfs-rw; grep -c ' /scratch tmpfs' /proc/self/mounts",
        ]);
        assert_eq!(ok(&o), "from-host\nvol-ro\nroot-ro\ntmpfs-rw\n1\n");
    });

    c.check("--memory/--pids-limit seen from inside (memory.limit_in_bytes, pids.max)", || {
        let out = ok(&p.run(&[
            "--memory",
            "64m",
            "--pids-limit",
            "77",
            IMAGE,
            "sh",
            "-c",
            "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max",
        ]));
        assert_eq!(out, "67108864\n77\n");
    });

    c.check("--pids-limit enforced: fork fails past it", || {
        let o = p.run(&["--pids-limit", "5", IMAGE, "sh", "-c", "for i in $(seq 12); do sleep 1 & done; wait; echo done"]);
        let out = both(&o);
        assert!(out.contains("can't fork") || out.contains("Resource temporarily unavailable"), "{}", show(&o));
    });

    c.check("--memory enforced: OOM kill is exit 137", || {
        let o = p.run(&[
            "--memory",
            "16m",
            "--memory-swap",
            "16m",
            IMAGE,
            "sh",
            "-c",
            "x=0123456789; for i in $(seq 24); do x=$x$x; done; echo survived",
        ]);
        assert_eq!(o.status.code(), Some(137), "{}", show(&o));
    });

    // One long-running container for exec, top, stats, pause, stop.
    let name = "svc";
    let mut id = String::new();
    c.check("run -d with --memory/--pids-limit: limits on the host side", || {
        let o = p.pm(&p.run_args(&[
            "-d",
            "--name",
            name,
            "--memory",
            "64m",
            "--pids-limit",
            "50",
            IMAGE,
            "sh",
            "-c",
            "trap 'echo got-term; exit 42' TERM; echo up; while true; do sleep 0.1; done",
        ]));
        id = ok(&o).trim().to_string();
        let cg = |ctrl: &str, file: &str| {
            std::fs::read_to_string(format!("/sys/fs/cgroup/{ctrl}{}/libpod-{id}/{file}", p.cgparent)).map(|s| s.trim().to_string())
        };
        assert_eq!(cg("memory", "memory.limit_in_bytes").unwrap(), "67108864");
        assert_eq!(cg("pids", "pids.max").unwrap(), "50");
    });

    c.check("exec: output, exit code, image user and workdir", || {
        let o = p.pm(&["exec", name, "sh", "-c", "id -u; pwd; echo $STRATA_IMAGE_VAR; exit 5"]);
        assert_eq!(o.status.code(), Some(5), "{}", show(&o));
        assert_eq!(stdout(&o), "1000\n/home/tester\nfrom-image\n");
    });

    c.check("exec -u -w -e", || {
        assert_eq!(ok(&p.pm(&["exec", "-u", "0", "-w", "/tmp", "-e", "X=y", name, "sh", "-c", "id -u; pwd; echo $X"])), "0\n/tmp\ny\n");
    });

    c.check("exec -i: stdin", || {
        assert_eq!(ok(&p.pm_in(&["exec", "-i", name, "sh", "-c", "cat; echo end"], b"to-exec\n")), "to-exec\nend\n");
    });

    c.check("exec -t: a terminal", || {
        let o = p.pm_tty(&["exec", "-t", name, "sh", "-c", "tty; test -t 1 && echo is-tty; exit 6"]);
        assert_eq!(o.status.code(), Some(6), "{}", show(&o));
        assert!(both(&o).contains("/dev/pts/") && both(&o).contains("is-tty"), "{}", show(&o));
    });

    c.check("exec: command not found 127, not executable 126", || {
        let o = p.pm(&["exec", name, "/no/such/cmd"]);
        assert_eq!(o.status.code(), Some(127), "{}", show(&o));
        let o = p.pm(&["exec", name, "/etc/passwd"]);
        assert_eq!(o.status.code(), Some(126), "{}", show(&o));
    });

    c.check("exec -d: detached", || {
        ok(&p.pm(&["exec", "-d", name, "sh", "-c", "echo bg > /tmp/execd"]));
        poll("exec -d output", Duration::from_secs(5), || {
            let o = p.pm(&["exec", name, "cat", "/tmp/execd"]);
            if stdout(&o) == "bg\n" { Ok(()) } else { Err(show(&o)) }
        });
    });

    c.check("top", || {
        let out = ok(&p.pm(&["top", name, "pid", "user", "args"]));
        assert!(out.contains("tester") && out.contains("while true"), "{out}");
    });

    c.check("stats --no-stream", || {
        let out = ok(&p.pm(&["stats", "--no-stream", "--format", "json", name]));
        let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("{e}: {out}"));
        let s = &v[0];
        assert!(s["mem_usage"].as_str().unwrap().ends_with("/ 67.11MB"), "{out}");
        let pids: u32 = s["pids"].as_str().unwrap().parse().unwrap();
        assert!(pids >= 1, "{out}");
    });

    c.check("update --memory --cpus on the running container", || {
        ok(&p.pm(&["update", "--memory", "48m", "--cpus", "0.5", name]));
        let cg = |f: &str| std::fs::read_to_string(format!("/sys/fs/cgroup/{f}")).unwrap_or_default().trim().to_string();
        assert_eq!(cg(&format!("memory{}/libpod-{id}/memory.limit_in_bytes", p.cgparent)), "50331648");
        assert_eq!(cg(&format!("cpu{}/libpod-{id}/cpu.cfs_quota_us", p.cgparent)), "50000");
    });

    c.check("pause / unpause", || {
        ok(&p.pm(&["pause", name]));
        assert_eq!(p.inspect(name, "{{.State.Status}}"), "paused");
        let freezer = format!("/sys/fs/cgroup/freezer{}/libpod-{id}/freezer.state", p.cgparent);
        assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
        ok(&p.pm(&["unpause", name]));
        assert_eq!(p.inspect(name, "{{.State.Status}}"), "running");
        assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "THAWED");
        assert_eq!(ok(&p.pm(&["exec", name, "echo", "thawed"])), "thawed\n");
    });

    c.check("restart: the same id created again", || {
        ok(&p.pm(&["restart", "-t", "0", name]));
        assert_eq!(p.inspect(name, "{{.State.Status}}"), "running");
        assert_eq!(ok(&p.pm(&["exec", name, "echo", "back"])), "back\n");
    });

    c.check("stop: SIGTERM reaches the process, its exit code is kept", || {
        let t = Instant::now();
        ok(&p.pm(&["stop", "-t", "20", name]));
        assert!(t.elapsed() < Duration::from_secs(10), "stop took {:?}: SIGTERM not delivered?", t.elapsed());
        assert_eq!(p.inspect(name, "{{.State.Status}} {{.State.ExitCode}}"), "exited 42");
        assert!(ok(&p.pm(&["logs", name])).contains("got-term"));
        ok(&p.pm(&["rm", name]));
    });

    c.check("kill -s KILL: exit 137", || {
        ok(&p.pm(&p.run_args(&["-d", "--name", "victim", IMAGE, "sleep", "100"])));
        ok(&p.pm(&["kill", "-s", "KILL", "victim"]));
        assert_eq!(ok(&p.pm(&["wait", "victim"])).trim(), "137");
        ok(&p.pm(&["rm", "victim"]));
    });

    c.check("kill -s KILL a paused container: it dies (runc thaws after SIGKILL)", || {
        ok(&p.pm(&p.run_args(&["-d", "--name", "frozen", IMAGE, "sleep", "100"])));
        ok(&p.pm(&["pause", "frozen"]));
        let k = p.pm(&["kill", "-s", "KILL", "frozen"]);
        let code = p.pm(&["wait", "frozen"]);
        // podman says `stopped` until its cleanup process has run after the
        // exit, `exited` after: either is dead, by SIGKILL.
        let st = p.inspect("frozen", "{{.State.Status}} {{.State.ExitCode}}");
        // A failure must not leave a frozen container behind.
        let _ = p.pm(&["rm", "-f", "-t", "0", "frozen"]);
        assert!(k.status.success(), "{}", show(&k));
        assert_eq!(ok(&code).trim(), "137");
        assert!(st == "exited 137" || st == "stopped 137", "{st}");
    });

    c.check("--device-write-iops: blkio throttle written", || {
        let Some((dev, majmin)) = a_block_device() else {
            eprintln!("podman: no whole-disk block device: throttle not checked");
            return;
        };
        let spec = format!("{dev}:100");
        let o = p.pm(&p.run_args(&["-d", "--name", "throttled", "--device-write-iops", &spec, IMAGE, "sleep", "100"]));
        let cid = ok(&o).trim().to_string();
        let got = std::fs::read_to_string(format!("/sys/fs/cgroup/blkio{}/libpod-{cid}/blkio.throttle.write_iops_device", p.cgparent))
            .unwrap_or_default();
        let _ = p.pm(&["rm", "-f", "-t", "0", "throttled"]);
        assert_eq!(got.trim(), format!("{majmin} 100"));
    });

    c.check("nothing left: containers, runtime state, cgroups, mounts, processes", || {
        let o = p.pm(&["ps", "-a", "-q"]);
        assert_eq!(ok(&o), "", "containers left");
        assert!(p.container_ids().len() >= 10, "events log: {:?}", p.container_ids());
        // podman's cleanup runs in the background after a container exits.
        poll("leftovers", Duration::from_secs(10), || {
            let l = p.leftovers();
            if l.is_empty() { Ok(()) } else { Err(l.join("\n")) }
        });
    });
    drop(p);
    c.finish();
}

/// Rootless podman: a real unprivileged user runs podman with strata as its
/// runtime. podman runs the runtime as root of its own user namespace, so
/// strata sees euid 0 there and must still act rootless: state under
/// XDG_RUNTIME_DIR, no cgroup on this v1 host, devices bound, exec without
/// a way back to the host's pid namespace.
#[test]
fn rootless_podman_drives_the_runtime() {
    need_root!();
    need_bins!("podman", "conmon", "newuidmap");
    if std::env::var_os("STRATA_CLIENT_RUNTIME").is_some() {
        eprintln!("skipped: the rootless podman test runs strata itself");
        return;
    }
    let u = crate::rootless::User::new("p");
    let img = u.base.join("img");
    make_image(&img).unwrap_or_else(|e| panic!("hack/mkimage-clients: {e}"));
    crate::rootless::chown_r(&img, u.uid);
    let conf = u.base.join("containers.conf");
    std::fs::write(
        &conf,
        format!(
            "[containers]\nnetns = \"none\"\n[engine]\ncgroup_manager = \"cgroupfs\"\nevents_logger = \"file\"\n\
             runtime_supports_json = [\"strata\"]\n[engine.runtimes]\nstrata = [\"{}\"]\n",
            u.bin.display()
        ),
    )
    .unwrap();
    let storage = u.base.join("storage.conf");
    let b = u.base.display();
    std::fs::write(&storage, format!("[storage]\ndriver = \"vfs\"\ngraphroot = \"{b}/graph\"\nrunroot = \"{b}/run/containers\"\n"))
        .unwrap();
    crate::rootless::chown_r(&u.base, u.uid);
    let podman = |args: &[&str]| -> Output {
        let mut v = vec![
            "CONTAINERS_CONF=".to_string() + conf.to_str().unwrap(),
            "CONTAINERS_STORAGE_CONF=".to_string() + storage.to_str().unwrap(),
            "timeout".into(),
            "60".into(),
            "podman".into(),
        ];
        v.extend(args.iter().map(|s| s.to_string()));
        let v: Vec<&str> = v.iter().map(String::as_str).collect();
        u.command("env".as_ref(), &v, true)
    };
    let pause_pid = || std::fs::read_to_string(u.run.join("libpod/tmp/pause.pid")).ok().and_then(|s| s.trim().parse::<i32>().ok());
    let checks = std::panic::catch_unwind(AssertUnwindSafe(|| {
        ok(&podman(&["load", "-q", "-i", img.join("image.docker.tar").to_str().unwrap()]));
        let sub = crate::rootless::subid_start("/etc/subuid", &u.name).expect("a /etc/subuid range for the user");
        let run = ["run", "--runtime", "strata", "--pull", "never"];
        // The image's user, inside podman's user namespace; an exit code.
        let o = podman(
            &[&run[..], &["--rm", IMAGE, "sh", "-c", "id -u; tr -s ' ' < /proc/self/uid_map; test -c /dev/null && exit 7"]].concat(),
        );
        assert_eq!(o.status.code(), Some(7), "{}", show(&o));
        assert_eq!(stdout(&o), format!("1000\n 0 {} 1\n 1 {sub} 65536\n", u.uid), "{}", show(&o));
        // A detached container: strata's state is under the user's
        // XDG_RUNTIME_DIR while it runs; exec, stop, rm.
        let id = ok(&podman(&[&run[..], &["-d", "--name", "c1", IMAGE, "sleep", "1234567"]].concat())).trim().to_string();
        assert!(u.state_dir().join(&id).exists(), "no strata state for {id} under {}", u.state_dir().display());
        assert_eq!(ok(&podman(&["inspect", "-f", "{{.OCIRuntime}}", "c1"])).trim(), "strata");
        let o = podman(&["exec", "c1", "sh", "-c", "id -u; tr '\\0' ' ' < /proc/1/cmdline"]);
        assert_eq!(ok(&o), "1000\nsleep 1234567 ");
        ok(&podman(&["stop", "-t", "1", "c1"]));
        assert_eq!(ok(&podman(&["inspect", "-f", "{{.State.Status}} {{.State.ExitCode}}", "c1"])).trim(), "exited 137");
        ok(&podman(&["rm", "c1"]));
        let left: Vec<_> = std::fs::read_dir(u.state_dir()).map(|r| r.flatten().map(|e| e.file_name()).collect()).unwrap_or_default();
        assert!(left.is_empty(), "strata state left: {left:?}");
        let procs = procs_mentioning("sleep 1234567");
        assert!(procs.is_empty(), "container processes left: {procs:?}");
    }));
    // podman's pause process holds its user namespace between commands.
    let _ = podman(&["rm", "-a", "-f", "-t", "0"]);
    if let Some(pid) = pause_pid() {
        let _ = nix::sys::signal::kill(nix::unistd::Pid::from_raw(pid), nix::sys::signal::Signal::SIGKILL);
    }
    if let Err(e) = checks {
        std::panic::resume_unwind(e);
    }
}

/// podman's `container checkpoint` and `restore` through the runtime:
/// in place, and with `--export`/`--import` after the container is gone
/// (podman's own migration, the rootfs changes carried in its archive).
#[test]
fn podman_checkpoints_and_restores_through_the_runtime() {
    need_root!();
    need_bins!("podman", "conmon");
    let criu = crate::need_criu!();
    let base = temp_base("podman-cr");
    if let Err(e) = make_image(&base.join("img")) {
        let _ = std::fs::remove_dir_all(&base);
        panic!("hack/mkimage-clients: {e}");
    }
    let mut p = Podman::new(base.clone());
    p.path_first = criu.canonicalize().ok().and_then(|c| c.parent().map(Path::to_path_buf));
    let mut c = Checks::new("podman checkpoint");
    ok(&p.pm(&["load", "-q", "-i", base.join("img/image.docker.tar").to_str().unwrap()]));
    let count = |p: &Podman| -> u64 { stdout(&p.pm(&["exec", "cr", "cat", "/tmp/count"])).trim().parse().unwrap_or(0) };
    let past = |p: &Podman, n: u64| {
        for _ in 0..200 {
            if count(p) > n {
                return count(p);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!("the counter stays at {} (was {n})", count(p));
    };
    let script = "echo kept > /tmp/written; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.1; done";
    let mut run = p.run_args(&["-d", "--name", "cr", "--user", "0:0"]);
    run.extend_from_slice(&[IMAGE, "sh", "-c", script]);
    ok(&p.pm(&run));
    let mut at = past(&p, 0);

    c.check("container checkpoint, then restore in place: the counter goes on", || {
        ok(&p.pm(&["container", "checkpoint", "cr"]));
        assert_eq!(p.inspect("cr", "{{.State.Checkpointed}}"), "true");
        ok(&p.pm(&["container", "restore", "cr"]));
        assert_eq!(p.inspect("cr", "{{.State.Status}}"), "running");
        let now = past(&p, at);
        assert!(now < at + 1000, "the counter started again: {at} -> {now}");
        at = now;
    });

    c.check("checkpoint --export, rm, restore --import: the process and its files come back", || {
        let archive = base.join("cr.tar.gz");
        ok(&p.pm(&["container", "checkpoint", "--export", archive.to_str().unwrap(), "cr"]));
        ok(&p.pm(&["rm", "-f", "cr"]));
        ok(&p.pm(&["container", "restore", "--import", archive.to_str().unwrap()]));
        let now = past(&p, at);
        assert!(now < at + 1000, "the counter started again: {at} -> {now}");
        assert_eq!(ok(&p.pm(&["exec", "cr", "cat", "/tmp/written"])), "kept\n");
    });

    c.check("nothing left: containers, runtime state, cgroups, mounts, processes", || {
        ok(&p.pm(&["rm", "-f", "-t", "0", "cr"]));
        // podman's cleanup runs in the background after a container exits.
        poll("leftovers", Duration::from_secs(10), || {
            let l = p.leftovers();
            if l.is_empty() { Ok(()) } else { Err(l.join("\n")) }
        });
    });
    c.finish();
}
