//! strata under the real clients, one file per client: podman (through
//! conmon), containerd (through `ctr` and the io.containerd.runc.v2 shim with
//! BinaryName), containerd's CRI (the kubelet's API, through cri.py), Docker
//! (a private dockerd) and buildah. This file holds what
//! they share.
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
/// The CRI test's pod sandbox image (made by `hack/mkimage-clients`).
const PAUSE_IMAGE: &str = "localhost/strata-pause:latest";
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

/// Builds the test image archives into `dir` with hack/mkimage-clients, or
/// copies them from `STRATA_CLIENT_IMAGES` where a slow machine (the v2 VM)
/// has them made beforehand.
fn make_image(dir: &Path) -> Result<(), String> {
    if let Some(made) = std::env::var_os("STRATA_CLIENT_IMAGES") {
        std::fs::create_dir_all(dir).map_err(|e| e.to_string())?;
        for f in ["image.docker.tar", "image.oci.tar", "pause.docker.tar"] {
            std::fs::copy(Path::new(&made).join(f), dir.join(f)).map_err(|e| format!("{f}: {e}"))?;
        }
        return Ok(());
    }
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
        // podman makes its cgroup parent under every controller it knows,
        // also where this host mounts none (a plain directory of the
        // /sys/fs/cgroup tmpfs, holding the `tasks` files it writes there).
        let plain = nix::sys::statfs::statfs(&p).is_ok_and(|f| f.filesystem_type() == nix::sys::statfs::TMPFS_MAGIC);
        if plain {
            let _ = std::fs::remove_dir_all(&p);
        } else {
            rm(&p);
        }
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

mod buildah;
mod containerd;
mod cri;
mod docker;
mod podman;
