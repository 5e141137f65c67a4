//! Shared helpers for the end-to-end tests: a busybox bundle built from
//! Debian's busybox-static, a private `--root` per test, and a cleanup
//! check that nothing (state, cgroup, mount, process) is left behind.

#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

use serde_json::{Value, json};

/// The strata binary under test: cargo's, unless STRATA_BIN names another
/// (the cgroup v2 VM sees the build tree under another path).
pub static STRATA: std::sync::LazyLock<String> =
    std::sync::LazyLock::new(|| std::env::var("STRATA_BIN").unwrap_or_else(|_| env!("CARGO_BIN_EXE_strata").to_string()));
static SEQ: AtomicUsize = AtomicUsize::new(0);

pub fn is_root() -> bool {
    nix::unistd::geteuid().is_root()
}

/// Skips a root-only test when not root (CI runs as root and runs them all).
#[macro_export]
macro_rules! need_root {
    () => {
        if !$crate::common::is_root() {
            eprintln!("skipped: needs root");
            return;
        }
    };
}

/// A bundle plus a private state root, removed on drop.
pub struct Bundle {
    pub dir: PathBuf,
    pub root: PathBuf,
    pub id: String,
    pub config: Value,
    /// The strata binary this bundle is driven with (a test may use a copy).
    pub bin: String,
}

impl Bundle {
    /// A busybox bundle running `sh -c script`.
    pub fn sh(name: &str, script: &str) -> Bundle {
        let n = SEQ.fetch_add(1, Ordering::SeqCst);
        let id = format!("it-{name}-{}-{n}", std::process::id());
        let base = std::env::temp_dir().join(format!("strata-it-{}-{n}", std::process::id()));
        let dir = base.join("bundle");
        let root = base.join("state");
        make_rootfs(&dir.join("rootfs"));
        let out = Command::new(&*STRATA).args(["spec", "--bundle"]).arg(&dir).output_within();
        assert!(out.status.success(), "strata spec: {}", String::from_utf8_lossy(&out.stderr));
        let mut config: Value = serde_json::from_slice(&std::fs::read(dir.join("config.json")).unwrap()).unwrap();
        config["process"]["terminal"] = json!(false);
        config["process"]["args"] = json!(["sh", "-c", script]);
        config["root"]["readonly"] = json!(false);
        Bundle { dir, root, id, config, bin: STRATA.clone() }
    }

    /// Gives the container a cgroup namespace (the default spec has one
    /// only on a cgroup v2 host, as runc's).
    pub fn with_cgroup_ns(mut self) -> Bundle {
        let ns = self.config["linux"]["namespaces"].as_array_mut().unwrap();
        if !ns.iter().any(|n| n["type"] == "cgroup") {
            ns.push(json!({"type": "cgroup"}));
        }
        self
    }

    pub fn write_config(&self) {
        std::fs::write(self.dir.join("config.json"), serde_json::to_vec_pretty(&self.config).unwrap()).unwrap();
    }

    pub fn strata(&self) -> Command {
        let mut c = Command::new(&self.bin);
        c.arg("--root").arg(&self.root);
        c
    }

    /// `strata run` with the config as it is now; returns the output.
    pub fn run(&self) -> Output {
        self.write_config();
        self.strata().args(["run", "--bundle"]).arg(&self.dir).arg(&self.id).stdin(Stdio::null()).output_within()
    }

    /// Runs and returns stdout, asserting success.
    pub fn run_ok(&self) -> String {
        let out = self.run();
        assert!(
            out.status.success(),
            "run failed ({:?}): {}{}",
            out.status,
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8(out.stdout).unwrap()
    }

    pub fn cmd(&self, args: &[&str]) -> Output {
        self.strata().args(args).stdin(Stdio::null()).output_within()
    }

    /// Runs a command that leaves a container behind: the container keeps
    /// the caller's stdio, so it goes to files (as a shim would arrange)
    /// and the output is read back from them once strata returns.
    pub fn detached(&self, args: &[&std::ffi::OsStr]) -> Output {
        let mut c = self.strata();
        c.args(args);
        output_via_files(c, self.dir.parent().unwrap(), "")
    }

    pub fn create(&self) -> Output {
        self.write_config();
        self.detached(&["create".as_ref(), "--bundle".as_ref(), self.dir.as_os_str(), self.id.as_ref()])
    }

    pub fn start(&self) -> Output {
        self.detached(&["start".as_ref(), self.id.as_ref()])
    }

    pub fn state(&self) -> Value {
        let out = self.cmd(&["state", &self.id]);
        assert!(out.status.success(), "state: {}", String::from_utf8_lossy(&out.stderr));
        serde_json::from_slice(&out.stdout).unwrap()
    }

    pub fn status(&self) -> String {
        self.state()["status"].as_str().unwrap().to_string()
    }

    pub fn wait_status(&self, want: &str) {
        for _ in 0..500 {
            if self.status() == want {
                return;
            }
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
        panic!("container {} never became {want} (is {})", self.id, self.status());
    }

    /// Asserts nothing of this container remains: state dir, cgroups, mounts.
    pub fn assert_gone(&self) {
        assert!(!self.root.join(&self.id).exists(), "state dir left behind");
        for line in std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines() {
            assert!(!line.contains(self.dir.to_str().unwrap()), "mount left behind: {line}");
        }
        assert!(cgroup_dirs(&self.id).is_empty(), "cgroups left behind: {:?}", cgroup_dirs(&self.id));
    }
}

impl Drop for Bundle {
    fn drop(&mut self) {
        // Bounded, and never a panic in a drop: a delete that hangs is
        // killed, and the test's own checks say what is left.
        if let Ok(mut child) =
            self.strata().args(["delete", "--force", &self.id]).stdin(Stdio::null()).stdout(Stdio::null()).stderr(Stdio::null()).spawn()
        {
            let t = std::time::Instant::now();
            while child.try_wait().ok().flatten().is_none() {
                if t.elapsed() > command_limit() {
                    eprintln!("cleanup: delete --force {} did not finish in {} s (killed)", self.id, command_limit().as_secs());
                    let _ = child.kill();
                    let _ = child.wait();
                    break;
                }
                std::thread::sleep(std::time::Duration::from_millis(5));
            }
        }
        if let Some(base) = self.dir.parent() {
            let _ = std::fs::remove_dir_all(base);
        }
    }
}

/// Runs `cmd` with its stdout and stderr in files under `dir` (`{tag}out.log`,
/// `{tag}err.log`), not pipes: a container it leaves behind keeps the stdio
/// it was given, and a pipe would not close until the container exits.
pub fn output_via_files(mut cmd: Command, dir: &Path, tag: &str) -> Output {
    let (o, e) = (dir.join(format!("{tag}out.log")), dir.join(format!("{tag}err.log")));
    let status =
        cmd.stdin(Stdio::null()).stdout(std::fs::File::create(&o).unwrap()).stderr(std::fs::File::create(&e).unwrap()).status_within();
    Output { status, stdout: std::fs::read(&o).unwrap(), stderr: std::fs::read(&e).unwrap() }
}

/// A mount a test made on the host, unmounted (with what is below it) and
/// its directory's parent removed however the test ends.
pub struct UnmountOnDrop(pub PathBuf);

impl Drop for UnmountOnDrop {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-R").arg(&self.0).stderr(Stdio::null()).status_within();
        if let Some(parent) = self.0.parent() {
            let _ = std::fs::remove_dir_all(parent);
        }
    }
}

/// How long one command of a test may take before it is killed and the
/// test fails naming it (`STRATA_TEST_CMD_TIMEOUT` seconds; 120 by default).
pub fn command_limit() -> std::time::Duration {
    let secs = std::env::var("STRATA_TEST_CMD_TIMEOUT").ok().and_then(|s| s.parse().ok()).unwrap_or(120);
    std::time::Duration::from_secs(secs)
}

/// `output()` and `status()` with a bounded wait: a command that hangs is
/// killed after `command_limit()` and the test panics with its command line,
/// instead of holding the whole run.
pub trait Bounded {
    fn output_within(&mut self) -> Output;
    fn status_within(&mut self) -> std::process::ExitStatus;
}

impl Bounded for Command {
    fn output_within(&mut self) -> Output {
        let mut child = self.stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap_or_else(|e| panic!("spawn {self:?}: {e}"));
        let drain = |r: Option<Box<dyn std::io::Read + Send>>| {
            std::thread::spawn(move || {
                let mut buf = Vec::new();
                if let Some(mut r) = r {
                    let _ = r.read_to_end(&mut buf);
                }
                buf
            })
        };
        let out = drain(child.stdout.take().map(|r| Box::new(r) as Box<dyn std::io::Read + Send>));
        let err = drain(child.stderr.take().map(|r| Box::new(r) as Box<dyn std::io::Read + Send>));
        let status = wait_within(&mut child, self);
        // A container left running keeps the pipes open: read what came, up
        // to the limit, and go on without the rest.
        let join = |h: std::thread::JoinHandle<Vec<u8>>| {
            let t = std::time::Instant::now();
            while !h.is_finished() && t.elapsed() < std::time::Duration::from_secs(5) {
                std::thread::sleep(std::time::Duration::from_millis(10));
            }
            if h.is_finished() { h.join().unwrap_or_default() } else { Vec::new() }
        };
        Output { status, stdout: join(out), stderr: join(err) }
    }

    fn status_within(&mut self) -> std::process::ExitStatus {
        let mut child = self.spawn().unwrap_or_else(|e| panic!("spawn {self:?}: {e}"));
        wait_within(&mut child, self)
    }
}

fn wait_within(child: &mut std::process::Child, cmd: &Command) -> std::process::ExitStatus {
    let limit = command_limit();
    let t = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            return status;
        }
        if t.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("{cmd:?} did not finish in {} s (killed)", limit.as_secs());
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
}

/// The cgroup directories a container without `cgroupsPath` gets, that
/// exist: its id under this process's own cgroup in each hierarchy (runc's
/// default placement).
pub fn cgroup_dirs(id: &str) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let own = std::fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
    for line in own.lines() {
        let mut f = line.splitn(3, ':');
        let (_, controllers, path) = (f.next(), f.next().unwrap_or(""), f.next().unwrap_or("/"));
        let mount = if controllers.is_empty() {
            if Path::new("/sys/fs/cgroup/unified").exists() { "unified".to_string() } else { String::new() }
        } else {
            controllers.trim_start_matches("name=").to_string()
        };
        let dir = Path::new("/sys/fs/cgroup").join(mount).join(path.trim_start_matches('/')).join(id);
        if dir.exists() && !found.contains(&dir) {
            found.push(dir);
        }
    }
    found
}

/// rootfs with Debian's static busybox and its applet links.
pub fn make_rootfs(r: &Path) {
    for d in ["bin", "etc", "proc", "sys", "dev", "tmp", "root", "var", "run", "home"] {
        std::fs::create_dir_all(r.join(d)).unwrap();
    }
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(r.join("tmp"), std::fs::Permissions::from_mode(0o1777)).unwrap();
    let bb = Path::new("/bin/busybox");
    assert!(bb.exists(), "integration tests need busybox-static (/bin/busybox)");
    std::fs::copy(bb, r.join("bin/busybox")).unwrap();
    let list = Command::new(bb).arg("--list").output_within();
    for applet in String::from_utf8_lossy(&list.stdout).lines() {
        if applet != "busybox" {
            let _ = std::os::unix::fs::symlink("busybox", r.join("bin").join(applet));
        }
    }
    std::fs::write(r.join("etc/passwd"), "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/false\n").unwrap();
    std::fs::write(r.join("etc/group"), "root:x:0:\ntty:x:5:\nnogroup:x:65534:\n").unwrap();
}

/// Copies the shared libraries `bin` needs (as `ldd` lists them) into the
/// rootfs at the same paths, so that a dynamically linked host binary can
/// run inside the container.
pub fn copy_libraries(bin: &str, rootfs: &Path) {
    let out = Command::new("ldd").arg(bin).output_within();
    for line in String::from_utf8_lossy(&out.stdout).lines() {
        let path = line.split_whitespace().find(|w| w.starts_with('/'));
        if let Some(p) = path {
            let dst = rootfs.join(p.trim_start_matches('/'));
            std::fs::create_dir_all(dst.parent().unwrap()).unwrap();
            std::fs::copy(p, &dst).unwrap();
        }
    }
}

/// Whether `pid` is a live process (a zombie counts as gone).
pub fn alive(pid: i32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| !s.rsplit(')').next().unwrap_or("").trim_start().starts_with('Z'))
}

pub fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// Receives one fd over a unix socket (SCM_RIGHTS), as conmon and
/// containerd receive the pty master from the console socket.
pub fn recv_fd(sock: &std::os::unix::net::UnixStream) -> std::os::fd::OwnedFd {
    use std::os::fd::AsRawFd;
    let mut buf = [0u8; 64];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [std::io::IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), nix::sys::socket::MsgFlags::empty()).unwrap();
    for c in msg.cmsgs().unwrap() {
        if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
            assert_eq!(fds.len(), 1, "exactly one fd");
            return strata::sys::owned_from_received(fds[0]);
        }
    }
    panic!("no fd received");
}

/// The path of a working CRIU (`working_criu`), or the test says it is
/// skipped, and why, and returns.
#[macro_export]
macro_rules! need_criu {
    () => {
        match $crate::common::working_criu() {
            Ok(p) => p,
            Err(why) => {
                eprintln!("skipped: {why}");
                return;
            }
        }
    };
}

/// A CRIU whose `criu check` passes (`STRATA_TEST_CRIU`, or `criu` on
/// PATH), or why there is none: the checkpoint tests skip, saying so.
pub fn working_criu() -> Result<PathBuf, String> {
    let path = std::env::var_os("STRATA_TEST_CRIU").map(PathBuf::from).unwrap_or_else(|| PathBuf::from("criu"));
    match Command::new(&path).arg("check").stdin(Stdio::null()).output() {
        Err(e) => Err(format!("no CRIU ({}: {e}); set STRATA_TEST_CRIU to a CRIU 4.1 or newer", path.display())),
        Ok(o) if !o.status.success() => Err(format!(
            "{} check fails on this kernel ({}); CRIU 4.1 or newer is needed from Linux 6.13 on",
            path.display(),
            String::from_utf8_lossy(&o.stderr).lines().last().unwrap_or("")
        )),
        Ok(_) => Ok(path),
    }
}
