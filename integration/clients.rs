//! strata under the real clients: podman (through conmon) and containerd
//! (through `ctr` and the io.containerd.runc.v2 shim with BinaryName).
//!
//! Each client gets its own private world under a temp dir: podman its own
//! storage, runroot, tmp dir and containers.conf; containerd its own root,
//! state, socket and config, started by the test and stopped by pid at the
//! end. The image is built without a registry by `hack/mkimage-clients`.
//!
//! The runtime under test is strata, or `STRATA_CLIENT_RUNTIME` (e.g.
//! `/usr/sbin/runc`): the same checks pass with runc, so a failure points at
//! strata. Each client is one #[test] that runs its checks in order and
//! reports every check that failed, not only the first.
//!
//! Tests skip (print "skipped: ...") when the clients are not installed;
//! `hack/setup-clients` installs them and `hack/test` runs it.

use std::io::{Read, Write};
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Output, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::common::{STRATA, stderr, stdout};
use crate::need_root;

const IMAGE: &str = "localhost/strata-test:latest";
/// Limit for any one client command: a hang fails the check, not the suite.
const CMD_TIMEOUT: Duration = Duration::from_secs(40);

/// The runtime the clients are pointed at.
fn runtime() -> PathBuf {
    std::env::var_os("STRATA_CLIENT_RUNTIME").map(PathBuf::from).unwrap_or_else(|| PathBuf::from(&*STRATA))
}

/// Where the runtime keeps state when no `--root` is given (podman, as root,
/// passes none).
fn default_state_root(rt: &Path) -> PathBuf {
    let name = rt.file_name().unwrap_or_default().to_string_lossy();
    if name.contains("runc") {
        "/run/runc".into()
    } else if name.contains("crun") {
        "/run/crun".into()
    } else {
        "/run/strata".into()
    }
}

fn have(bin: &str) -> bool {
    Command::new("sh").args(["-c", &format!("command -v {bin}")]).stdout(Stdio::null()).status().is_ok_and(|s| s.success())
}

/// Skips (returns) unless every binary is on PATH.
macro_rules! need_bins {
    ($($bin:expr),+) => {
        for b in [$($bin),+] {
            if !have(b) {
                eprintln!("skipped: needs {b} (hack/setup-clients installs it)");
                return;
            }
        }
    };
}

/// Runs `cmd` with `input` on stdin (none: /dev/null), killing it after
/// `CMD_TIMEOUT`. Children the command leaves behind may keep its pipes open,
/// so the output is what arrived by the time it exited.
fn output_within(cmd: &mut Command, input: Option<&[u8]>) -> Output {
    cmd.stdin(if input.is_some() { Stdio::piped() } else { Stdio::null() }).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = cmd.spawn().unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let collect = |r: Option<Box<dyn Read + Send>>| {
        let buf = Arc::new(Mutex::new(Vec::new()));
        let b = buf.clone();
        if let Some(mut r) = r {
            std::thread::spawn(move || {
                let mut chunk = [0u8; 4096];
                while let Ok(n) = r.read(&mut chunk) {
                    if n == 0 {
                        break;
                    }
                    b.lock().unwrap().extend_from_slice(&chunk[..n]);
                }
            });
        }
        buf
    };
    let out = collect(child.stdout.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    let err = collect(child.stderr.take().map(|r| Box::new(r) as Box<dyn Read + Send>));
    if let (Some(mut w), Some(data)) = (child.stdin.take(), input) {
        let _ = w.write_all(data);
    }
    let status = wait_within(&mut child, CMD_TIMEOUT).unwrap_or_else(|| {
        let _ = child.kill();
        let _ = child.wait();
        panic!(
            "timed out after {CMD_TIMEOUT:?}: {cmd:?}\nstdout: {}\nstderr: {}",
            String::from_utf8_lossy(&out.lock().unwrap()),
            String::from_utf8_lossy(&err.lock().unwrap())
        );
    });
    // Let the readers drain what is already in the pipes.
    std::thread::sleep(Duration::from_millis(30));
    let (o, e) = (out.lock().unwrap().clone(), err.lock().unwrap().clone());
    Output { status, stdout: o, stderr: e }
}

fn wait_within(child: &mut Child, limit: Duration) -> Option<ExitStatus> {
    let t = Instant::now();
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            return Some(s);
        }
        if t.elapsed() > limit {
            return None;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

fn sq(s: &str) -> String {
    format!("'{}'", s.replace('\'', "'\\''"))
}

/// `script` gives the client a terminal (as a person at a shell would).
fn in_pty(argv: &[String]) -> Command {
    let line = argv.iter().map(|a| sq(a)).collect::<Vec<_>>().join(" ");
    let mut c = Command::new("script");
    c.args(["-qec", &line, "/dev/null"]);
    c
}

fn both(o: &Output) -> String {
    format!("{}{}", stdout(o), stderr(o)).replace('\r', "")
}

fn show(o: &Output) -> String {
    format!("status {:?}\n--- stdout\n{}--- stderr\n{}", o.status, stdout(o), stderr(o))
}

#[track_caller]
fn ok(o: &Output) -> String {
    assert!(o.status.success(), "{}", show(o));
    stdout(o)
}

fn poll(what: &str, limit: Duration, mut f: impl FnMut() -> Result<(), String>) {
    let t = Instant::now();
    loop {
        match f() {
            Ok(()) => return,
            Err(e) if t.elapsed() > limit => panic!("{what}: {e}"),
            Err(_) => std::thread::sleep(Duration::from_millis(50)),
        }
    }
}

thread_local! {
    static IN_CHECK: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// A failing check is reported once, by `Checks`, without the panic
/// message and backtrace the default hook would print; panics elsewhere
/// (other tests' threads) go to the default hook as before.
fn quiet_checks() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !IN_CHECK.with(|c| c.get()) {
                default(info);
            }
        }));
    });
}

/// Runs named checks one after the other; a failing check is recorded and
/// the next one runs. `finish` fails the test with all of them.
struct Checks {
    client: &'static str,
    failed: Vec<String>,
    start: Instant,
}

impl Checks {
    fn new(client: &'static str) -> Checks {
        eprintln!("{client}: runtime {}", runtime().display());
        Checks { client, failed: Vec::new(), start: Instant::now() }
    }

    fn check(&mut self, name: &str, f: impl FnOnce()) {
        quiet_checks();
        let t = Instant::now();
        IN_CHECK.with(|c| c.set(true));
        let r = catch_unwind(AssertUnwindSafe(f));
        IN_CHECK.with(|c| c.set(false));
        match r {
            Ok(()) => eprintln!("{}: ok   {name} ({:.1}s)", self.client, t.elapsed().as_secs_f32()),
            Err(e) => {
                let msg =
                    e.downcast_ref::<String>().cloned().or_else(|| e.downcast_ref::<&str>().map(|s| s.to_string())).unwrap_or_default();
                eprintln!("{}: FAIL {name}: {msg}", self.client);
                self.failed.push(format!("{name}: {msg}"));
            }
        }
    }

    fn finish(self) {
        eprintln!("{}: done in {:.1}s, {} failed", self.client, self.start.elapsed().as_secs_f32(), self.failed.len());
        assert!(
            self.failed.is_empty(),
            "{} with {}: {} check(s) failed:\n\n{}",
            self.client,
            runtime().display(),
            self.failed.len(),
            self.failed.join("\n\n")
        );
    }
}

/// A private temp dir, removed on drop.
fn temp_base(name: &str) -> PathBuf {
    let base = // Short: podman refuses a runroot path longer than 50 characters.
    std::env::temp_dir().join(format!("strata-cl-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&base);
    std::fs::create_dir_all(&base).unwrap();
    base
}

/// Builds the test image archives into `dir` with hack/mkimage-clients.
fn make_image(dir: &Path) -> Result<(), String> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("hack/mkimage-clients");
    let o = output_within(Command::new(&script).arg(dir), None);
    if o.status.success() { Ok(()) } else { Err(show(&o)) }
}

/// Cgroup directories `<hierarchy>/<rel>` in every hierarchy (v1 and the
/// hybrid host's unified one).
fn cgroup_dirs_at(rel: &str) -> Vec<PathBuf> {
    let rel = rel.trim_start_matches('/');
    let mut found = Vec::new();
    for h in std::fs::read_dir("/sys/fs/cgroup").into_iter().flatten().flatten() {
        let p = h.path().join(rel);
        if p.is_dir() {
            found.push(p);
        }
    }
    found
}

/// Removes the cgroup tree `/rel` (ours) in every hierarchy, children first.
fn remove_cgroup_tree(rel: &str) {
    fn rm(p: &Path) {
        for e in std::fs::read_dir(p).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                rm(&e.path());
            }
        }
        let _ = std::fs::remove_dir(p);
    }
    for p in cgroup_dirs_at(rel) {
        rm(&p);
    }
}

fn mounts_under(base: &Path) -> Vec<String> {
    let b = base.to_str().unwrap();
    std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().filter(|l| l.contains(b)).map(String::from).collect()
}

/// Processes whose command line mentions `needle` (e.g. our temp dir).
fn procs_mentioning(needle: &str) -> Vec<String> {
    let me = std::process::id().to_string();
    let mut found = Vec::new();
    for e in std::fs::read_dir("/proc").into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        if !name.bytes().all(|c| c.is_ascii_digit()) || name == me {
            continue;
        }
        if let Ok(cmd) = std::fs::read(e.path().join("cmdline")) {
            let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
            if cmd.contains(needle) && crate::common::alive(name.parse().unwrap()) {
                found.push(format!("{name}: {cmd}"));
            }
        }
    }
    found
}

/// A whole-disk block device (`/dev/vda`, "254:0") for blkio throttling.
fn a_block_device() -> Option<(String, String)> {
    let mut names: Vec<String> =
        std::fs::read_dir("/sys/block").ok()?.flatten().map(|e| e.file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    names.into_iter().filter(|n| !n.starts_with("loop") && !n.starts_with("ram") && !n.starts_with("zram")).find_map(|n| {
        let dev = format!("/dev/{n}");
        let majmin = std::fs::read_to_string(format!("/sys/block/{n}/dev")).ok()?.trim().to_string();
        Path::new(&dev).exists().then_some((dev, majmin))
    })
}

/* ------------------------------------------------------------------ podman */

struct Podman {
    base: PathBuf,
    runtime: PathBuf,
    /// cgroup parent of every container (and of conmon), ours to remove.
    cgparent: String,
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
        Podman { base, runtime, cgparent }
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
        let st = p.inspect("frozen", "{{.State.Status}} {{.State.ExitCode}}");
        // A failure must not leave a frozen container behind.
        let _ = p.pm(&["rm", "-f", "-t", "0", "frozen"]);
        assert!(k.status.success(), "{}", show(&k));
        assert_eq!(st, "exited 137");
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

/* -------------------------------------------------------------- containerd */

struct Containerd {
    base: PathBuf,
    runtime: PathBuf,
    sock: PathBuf,
    cgparent: String,
    daemon: Option<Child>,
    /// /run/containerd did not exist before: remove what the shims left there.
    made_run_dir: bool,
}

impl Containerd {
    fn start(base: PathBuf) -> Containerd {
        let made_run_dir = !Path::new("/run/containerd").exists();
        let b = base.display();
        let config = format!(
            r#"version = 2
root = "{b}/root"
state = "{b}/state"
disabled_plugins = ["io.containerd.grpc.v1.cri", "io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper"]

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
"#
        );
        std::fs::write(base.join("config.toml"), config).unwrap();
        std::fs::create_dir_all(base.join("fifo")).unwrap();
        let log = std::fs::File::create(base.join("containerd.log")).unwrap();
        let daemon = Command::new("containerd")
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
            runtime: runtime(),
            sock,
            cgparent: format!("/strata-clients-containerd-{}", std::process::id()),
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
        let mut v: Vec<String> = vec!["ctr".into(), "--address".into(), self.sock.display().to_string(), "-n".into(), "strata-test".into()];
        v.extend(args.iter().map(|s| s.to_string()));
        v
    }

    fn ctr(&self, args: &[&str]) -> Output {
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

    fn runc_root(&self) -> PathBuf {
        self.base.join("runc-root")
    }

    fn task_status(&self, id: &str) -> String {
        let out = ok(&self.ctr(&["task", "ls"]));
        out.lines().find(|l| l.split_whitespace().next() == Some(id)).and_then(|l| l.split_whitespace().nth(2)).unwrap_or("").to_string()
    }

    fn leftovers(&self) -> Vec<String> {
        let mut left = Vec::new();
        let tasks = stdout(&self.ctr(&["task", "ls", "-q"]));
        let ctrs = stdout(&self.ctr(&["container", "ls", "-q"]));
        if !tasks.trim().is_empty() {
            left.push(format!("tasks: {tasks}"));
        }
        if !ctrs.trim().is_empty() {
            left.push(format!("containers: {ctrs}"));
        }
        for e in std::fs::read_dir(self.runc_root().join("strata-test")).into_iter().flatten().flatten() {
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
    let d = Containerd::start(base.clone());
    let mut c = Checks::new("containerd");
    ok(&d.ctr(&["image", "import", base.join("img/image.docker.tar").to_str().unwrap()]));

    c.check("run --rm: output and exit code", || {
        assert_eq!(ok(&d.run("hello", &["--rm", IMAGE, "hello"])), "hello from the image\n");
        let o = d.run("exit3", &["--rm", IMAGE, "exit3", "sh", "-c", "exit 3"]);
        assert_eq!(o.status.code(), Some(3), "{}", show(&o));
    });

    c.check("image USER, WORKDIR, ENV", || {
        let out = ok(&d.run("img", &["--rm", IMAGE, "img", "sh", "-c", "id -u; id -G; pwd; echo $STRATA_IMAGE_VAR; echo $PATH"]));
        assert_eq!(out, "1000\n1000 1001\n/home/tester\nfrom-image\n/usr/sbin:/usr/bin:/sbin:/bin\n");
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
