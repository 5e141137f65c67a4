//! Docker drives strata: a private dockerd (Debian's docker.io 20.10) with
//! its own data root, exec root, socket, cgroup parent and no network, the
//! runtime given in its daemon.json as README.md shows it, and the test
//! image loaded with `docker load`.

use super::*;

/// Debian's CLI, which matches its daemon (another `docker` may come first
/// on PATH).
const DOCKER: &str = "/usr/bin/docker";

struct Docker {
    base: PathBuf,
    sock: PathBuf,
    cgparent: String,
    daemon: Option<Child>,
}

impl Docker {
    fn start(base: PathBuf) -> Docker {
        let cgparent = format!("/strata-clients-docker-{}", std::process::id());
        // The configuration README.md shows: strata as a runtime, and the default.
        let config = serde_json::json!({
            "runtimes": {"strata": {"path": runtime()}},
            "default-runtime": "strata"
        });
        std::fs::write(base.join("daemon.json"), serde_json::to_vec_pretty(&config).unwrap()).unwrap();
        let sock = base.join("docker.sock");
        let log = std::fs::File::create(base.join("dockerd.log")).unwrap();
        let daemon = Command::new("dockerd")
            .arg("--config-file")
            .arg(base.join("daemon.json"))
            .arg("--data-root")
            .arg(base.join("data"))
            .arg("--exec-root")
            .arg(base.join("exec"))
            .arg("--pidfile")
            .arg(base.join("dockerd.pid"))
            .arg("--host")
            .arg(format!("unix://{}", sock.display()))
            .args(["--iptables=false", "--ip6tables=false", "--ip-forward=false", "--ip-masq=false", "--bridge=none"])
            .args(["--userland-proxy=false", "--storage-driver", "vfs", "--exec-opt", "native.cgroupdriver=cgroupfs"])
            .args(["--cgroup-parent", &cgparent])
            .stdin(Stdio::null())
            .stdout(log.try_clone().unwrap())
            .stderr(log)
            .spawn()
            .unwrap();
        let d = Docker { base, sock, cgparent, daemon: Some(daemon) };
        poll("dockerd up", Duration::from_secs(30), || {
            let o = d.docker(&["info", "--format", "{{.DefaultRuntime}}"]);
            if o.status.success() { Ok(()) } else { Err(show(&o)) }
        });
        d
    }

    fn argv(&self, args: &[&str]) -> Vec<String> {
        let mut v = vec![DOCKER.to_string(), "-H".into(), format!("unix://{}", self.sock.display())];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn docker(&self, args: &[&str]) -> Output {
        let v = self.argv(args);
        output_within(Command::new(&v[0]).args(&v[1..]), None)
    }

    fn docker_tty(&self, args: &[&str]) -> Output {
        output_within(&mut in_pty(&self.argv(args)), None)
    }

    /// `docker run --network none ARGS` (the daemon has no bridge).
    fn run(&self, args: &[&str]) -> Output {
        let mut v = vec!["run", "--network", "none"];
        v.extend_from_slice(args);
        self.docker(&v)
    }

    fn inspect(&self, name: &str, fmt: &str) -> String {
        ok(&self.docker(&["inspect", "--format", fmt, name])).trim().to_string()
    }

    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let ids = stdout(&self.docker(&["ps", "-aq"]));
        if !ids.trim().is_empty() {
            left.push(format!("containers: {ids}"));
        }
        for p in cgroup_dirs_at(&self.cgparent) {
            for e in std::fs::read_dir(&p).into_iter().flatten().flatten() {
                if e.file_type().is_ok_and(|t| t.is_dir()) {
                    left.push(format!("cgroup {}", e.path().display()));
                }
            }
        }
        let exec = self.base.join("exec");
        for e in std::fs::read_dir(exec.join("runtime-runc/moby")).into_iter().flatten().flatten() {
            left.push(format!("runtime state {}", e.path().display()));
        }
        // The shims and the containers' processes (the daemon and its
        // containerd stay until the end).
        let daemons: Vec<String> = procs_mentioning("dockerd")
            .into_iter()
            .chain(procs_mentioning("containerd.toml"))
            .filter_map(|p| p.split(':').next().map(str::to_string))
            .collect();
        left.extend(
            procs_mentioning(exec.to_str().unwrap())
                .into_iter()
                .filter(|p| !daemons.iter().any(|d| p.split(':').next() == Some(d.as_str())))
                .map(|p| format!("process {p}")),
        );
        left
    }
}

impl Drop for Docker {
    fn drop(&mut self) {
        for id in stdout(&self.docker(&["ps", "-aq"])).split_whitespace() {
            let _ = self.docker(&["rm", "-f", id]);
        }
        if let Some(mut d) = self.daemon.take() {
            let pid = nix::unistd::Pid::from_raw(d.id() as i32);
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGTERM);
            if wait_within(&mut d, Duration::from_secs(20)).is_none() {
                let _ = d.kill();
                let _ = d.wait();
            }
        }
        for m in mounts_under(&self.base).iter().rev() {
            let _ = nix::mount::umount2(m.as_str(), nix::mount::MntFlags::MNT_DETACH);
        }
        remove_cgroup_tree(&self.cgparent);
        if mounts_under(&self.base).is_empty() && cgroup_dirs_at(&self.cgparent).is_empty() {
            let _ = std::fs::remove_dir_all(&self.base);
        } else {
            eprintln!("docker: left for inspection: {}", self.base.display());
        }
    }
}

#[test]
fn docker_drives_the_runtime() {
    need_root!();
    need_bins!("dockerd", "docker-init", "podman", "script");
    if !Path::new(DOCKER).exists() {
        eprintln!("skipped: needs Debian's docker.io ({DOCKER})");
        return;
    }
    let base = temp_base("dkr");
    if let Err(e) = make_image(&base.join("img")) {
        let _ = std::fs::remove_dir_all(&base);
        panic!("hack/mkimage-clients: {e}");
    }
    let d = Docker::start(base.clone());
    let mut c = Checks::new("docker");
    ok(&d.docker(&["load", "-i", base.join("img/image.docker.tar").to_str().unwrap()]));

    c.check("strata is the runtime", || {
        let rt = ok(&d.docker(&["info", "--format", "{{.DefaultRuntime}}"]));
        assert_eq!(rt.trim(), "strata");
    });

    c.check("run --rm: output, exit code, image USER/WORKDIR/ENV", || {
        assert_eq!(ok(&d.run(&["--rm", IMAGE])), "hello from the image\n");
        let o = d.run(&["--rm", IMAGE, "sh", "-c", "exit 3"]);
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
        let out = ok(&d.run(&["--rm", IMAGE, "sh", "-c", "id -u; pwd; echo $STRATA_IMAGE_VAR"]));
        assert_eq!(out, "1000\n/home/tester\nfrom-image\n");
    });

    c.check("--init: docker-init is pid 1", || {
        let out = ok(&d.run(&["--rm", "--init", IMAGE, "sh", "-c", "tr '\\0' ' ' < /proc/1/cmdline; echo; echo $$"]));
        let mut lines = out.lines();
        assert!(lines.next().is_some_and(|l| l.contains("docker-init")), "{out}");
        assert_ne!(lines.next(), Some("1"), "{out}");
    });

    c.check("run flags seen inside: --read-only --tmpfs --device --cap-add/--cap-drop --ulimit --user --workdir --shm-size -v", || {
        let vol = d.base.join("vol");
        std::fs::create_dir_all(&vol).unwrap();
        std::fs::write(vol.join("f"), "from-host\n").unwrap();
        let bind = format!("{}:/data", vol.display());
        let script = "touch /x 2>/dev/null || echo ro-root; touch /scratch/y && echo tmpfs-rw; \
                      [ -c /dev/myzero ] && echo device; grep CapEff /proc/self/status; ulimit -n; id -u; pwd; \
                      df -k /dev/shm | tail -1 | awk '{print $2}'; cat /data/f; echo w > /data/g && echo vol-rw";
        let out = ok(&d.run(&[
            "--rm",
            "--read-only",
            "--tmpfs",
            "/scratch",
            "--device",
            "/dev/zero:/dev/myzero",
            "--cap-add",
            "SYS_ADMIN",
            "--cap-drop",
            "NET_RAW",
            "--ulimit",
            "nofile=1000:1000",
            "--user",
            "0:0",
            "--workdir",
            "/tmp",
            "--shm-size",
            "16m",
            "-v",
            &bind,
            IMAGE,
            "sh",
            "-c",
            script,
        ]));
        let lines: Vec<&str> = out.lines().collect();
        for want in ["ro-root", "tmpfs-rw", "device", "1000", "0", "/tmp", "16384", "from-host", "vol-rw"] {
            assert!(lines.contains(&want), "{want} missing: {out}");
        }
        let eff = lines.iter().find_map(|l| l.strip_prefix("CapEff:")).map(|v| u64::from_str_radix(v.trim(), 16).unwrap()).unwrap();
        assert_ne!(eff & (1 << 21), 0, "CAP_SYS_ADMIN not added: {out}");
        assert_eq!(eff & (1 << 13), 0, "CAP_NET_RAW not dropped: {out}");
        assert_eq!(std::fs::read_to_string(vol.join("g")).unwrap(), "w\n");
    });

    c.check("--security-opt seccomp=profile: a denied syscall fails inside", || {
        let profile = d.base.join("seccomp.json");
        let p = serde_json::json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}]});
        std::fs::write(&profile, p.to_string()).unwrap();
        let opt = format!("seccomp={}", profile.display());
        let out = ok(&d.run(&["--rm", "--security-opt", &opt, IMAGE, "sh", "-c", "mkdir /tmp/x 2>/dev/null || echo denied"]));
        assert_eq!(out, "denied\n");
    });

    c.check("--pids-limit and --memory/--cpus seen inside", || {
        let script = "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/cpu/cpu.cfs_quota_us";
        let out = ok(&d.run(&["--rm", "--pids-limit", "20", "--memory", "64m", "--cpus", "0.5", IMAGE, "sh", "-c", script]));
        assert_eq!(out, format!("20\n{}\n50000\n", 64 << 20));
    });

    // A long-running container for exec, update, pause, kill, stats.
    let name = "svc";
    c.check("run -d", || {
        let trap = "trap 'echo got-usr1' USR1; i=0; while :; do i=$((i+1)); echo $i > /tmp/count; sleep 0.05; done";
        ok(&d.run(&["-d", "--name", name, "--memory", "64m", "--memory-swap", "128m", IMAGE, "sh", "-c", trap]));
        poll("running", Duration::from_secs(10), || match d.inspect(name, "{{.State.Status}}").as_str() {
            "running" => Ok(()),
            s => Err(s.to_string()),
        });
    });

    c.check("exec: env, user, exit code", || {
        assert_eq!(ok(&d.docker(&["exec", name, "sh", "-c", "echo $STRATA_IMAGE_VAR; id -u"])), "from-image\n1000\n");
        assert_eq!(ok(&d.docker(&["exec", "-u", "0", name, "id", "-u"])), "0\n");
        let o = d.docker(&["exec", name, "sh", "-c", "exit 5"]);
        assert_eq!(o.status.code(), Some(5), "{}", show(&o));
    });

    c.check("exec -t: a terminal", || {
        let o = d.docker_tty(&["exec", "-t", name, "sh", "-c", "tty; test -t 0 && echo is-tty"]);
        assert!(both(&o).contains("/dev/pts/") && both(&o).contains("is-tty"), "{}", show(&o));
    });

    c.check("update --memory --memory-swap --cpus: raised and lowered inside", || {
        let read = || {
            let out =
                ok(&d.docker(&["exec", name, "cat", "/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/cpu/cpu.cfs_quota_us"]));
            out.split_whitespace().map(|v| v.parse::<i64>().unwrap()).collect::<Vec<_>>()
        };
        ok(&d.docker(&["update", "--memory", "256m", "--memory-swap", "512m", "--cpus", "1.5", name]));
        assert_eq!(read(), [256 << 20, 150000]);
        ok(&d.docker(&["update", "--memory", "32m", "--memory-swap", "48m", "--cpus", "0.25", name]));
        assert_eq!(read(), [32 << 20, 25000]);
    });

    c.check("stats: memory and pids reported", || {
        let out = ok(&d.docker(&["stats", "--no-stream", "--format", "{{.MemUsage}} {{.PIDs}}", name]));
        assert!(!out.starts_with("0B") && !out.trim().ends_with(" 0"), "{out}");
        assert!(out.contains("32MiB"), "the limit set by update is not what stats reports: {out}");
    });

    c.check("pause / unpause", || {
        let id = d.inspect(name, "{{.Id}}");
        let freezer = PathBuf::from(format!("/sys/fs/cgroup/freezer{}/{id}/freezer.state", d.cgparent));
        ok(&d.docker(&["pause", name]));
        assert_eq!(d.inspect(name, "{{.State.Status}}"), "paused");
        if freezer.exists() {
            assert_eq!(std::fs::read_to_string(&freezer).unwrap().trim(), "FROZEN");
        }
        ok(&d.docker(&["unpause", name]));
        assert_eq!(d.inspect(name, "{{.State.Status}}"), "running");
        let count = || ok(&d.docker(&["exec", name, "cat", "/tmp/count"]));
        let a = count();
        std::thread::sleep(Duration::from_millis(300));
        assert_ne!(count(), a, "no progress after unpause");
    });

    c.check("kill -s USR1 reaches the process", || {
        ok(&d.docker(&["kill", "-s", "USR1", name]));
        poll("trap ran", Duration::from_secs(10), || {
            let logs = both(&d.docker(&["logs", name]));
            if logs.contains("got-usr1") { Ok(()) } else { Err(logs) }
        });
    });

    c.check("stop and rm", || {
        ok(&d.docker(&["stop", "-t", "1", name]));
        assert_eq!(d.inspect(name, "{{.State.Status}}"), "exited");
        ok(&d.docker(&["rm", name]));
    });

    c.check("--restart on-failure:2 restarts the same container", || {
        ok(&d.run(&["-d", "--name", "again", "--restart", "on-failure:2", IMAGE, "sh", "-c", "echo run; exit 3"]));
        poll("two restarts, then exited", Duration::from_secs(30), || {
            let s = d.inspect("again", "{{.RestartCount}} {{.State.Status}} {{.State.ExitCode}}");
            if s == "2 exited 3" { Ok(()) } else { Err(s) }
        });
        assert_eq!(both(&d.docker(&["logs", "again"])).matches("run").count(), 3);
        ok(&d.docker(&["rm", "again"]));
    });

    c.check("nothing left behind", || {
        let left = d.leftovers();
        assert!(left.is_empty(), "{left:?}");
    });
    drop(d);
    c.finish();
}
