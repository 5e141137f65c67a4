//! seccomp and hardening, tried for real from inside containers.

use crate::common::Bounded;
use std::io::IoSliceMut;
use std::os::fd::AsRawFd;
use std::os::unix::net::UnixListener;

use serde_json::json;

use crate::common::Bundle;
use crate::need_root;

#[test]
fn seccomp_errno_is_seen_inside() {
    need_root!();
    let mut b = Bundle::sh("seccomp", "mkdir /tmp/x; echo rc=$?; ls -d /tmp/x 2>/dev/null || echo absent; grep Seccomp: /proc/self/status");
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "architectures": ["SCMP_ARCH_X86_64"],
        "syscalls": [
            {"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO", "errnoRet": 13},
            {"names": ["this_syscall_does_not_exist"], "action": "SCMP_ACT_KILL"}
        ]
    });
    let out = b.run_ok();
    assert!(out.contains("rc=1"), "{out}");
    assert!(out.contains("absent"), "{out}");
    // Mode 2: filter.
    assert!(out.contains("Seccomp:\t2"), "{out}");
    b.assert_gone();
}

/// A syscall newer than every syscall a profile names gets ENOSYS, so that
/// libc falls back to an older one (glibc: clone3 → clone); an older one the
/// profile leaves out gets the default errno. Seen by a static program in
/// the container that makes the raw syscalls.
#[test]
fn syscalls_newer_than_the_profile_get_enosys() {
    need_root!();
    let probe = r#"
#include <errno.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
static void show(const char *name, long nr) {
    long r = syscall(nr, 0, 0, 0, 0, 0, 0);
    printf("%s=%ld/%d\n", name, r, r < 0 ? errno : 0);
}
int main(void) {
    show("clone3", SYS_clone3);
    show("nr1000", 1000);
    show("getppid", SYS_getppid);
    show("getpid", SYS_getpid);
    return 0;
}
"#;
    let mut b = Bundle::sh("enosys", "true");
    let src = b.dir.join("probe.c");
    std::fs::write(&src, probe).unwrap();
    let cc = std::process::Command::new("cc").args(["-static", "-O1", "-o"]).arg(b.dir.join("rootfs/probe")).arg(&src).output();
    match cc {
        Ok(o) if o.status.success() => {}
        Ok(o) => return eprintln!("skipped: cc -static failed ({})", String::from_utf8_lossy(&o.stderr).trim()),
        Err(e) => return eprintln!("skipped: no C compiler for the probe ({e})"),
    }
    // Every syscall up to rseq (334) but getppid; clone3 (435) is newer.
    let names: Vec<String> =
        (0..=334).filter(|&n| n != libc::SYS_getppid as i32).filter_map(|n| libseccomp::ScmpSyscall::from(n).get_name().ok()).collect();
    b.config["process"]["args"] = json!(["/probe"]);
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ERRNO",
        "architectures": ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"],
        "syscalls": [{"names": names, "action": "SCMP_ACT_ALLOW"}]
    });
    let out = b.run_ok();
    assert!(out.contains("clone3=-1/38\n"), "clone3 is newer than the profile: ENOSYS\n{out}");
    assert!(out.contains("nr1000=-1/38\n"), "{out}");
    assert!(out.contains("getppid=-1/1\n"), "an older syscall left out: the default EPERM\n{out}");
    assert!(out.contains("getpid=") && !out.contains("getpid=-1"), "{out}");
    // Another default errno: older syscalls get it, newer ones still ENOSYS.
    b.config["linux"]["seccomp"]["defaultErrnoRet"] = json!(libc::ENXIO);
    let out = b.run_ok();
    assert!(out.contains("clone3=-1/38\n") && out.contains("getppid=-1/6\n"), "{out}");
    b.assert_gone();
}

/// The flags strata hands seccomp(2), as its debug log reports them: the
/// spec's, SPEC_ALLOW (4) where the spec gives none at all (runc's
/// default), none for an empty list. The filter works either way.
#[test]
fn seccomp_flags_reach_the_kernel_as_runc_sets_them() {
    need_root!();
    let mut b = Bundle::sh("seccompflags", "mkdir /tmp/x 2>&1; grep Seccomp: /proc/self/status");
    let profile = json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_ERRNO"}]});
    for (flags, want) in [(None, 4), (Some(json!([])), 0), (Some(json!(["SECCOMP_FILTER_FLAG_LOG"])), 2)] {
        b.config["linux"]["seccomp"] = profile.clone();
        if let Some(f) = flags.clone() {
            b.config["linux"]["seccomp"]["flags"] = f;
        }
        b.write_config();
        let out = b.strata().arg("--debug").args(["run", "--bundle"]).arg(&b.dir).arg(&b.id).output_within();
        let (stdout, stderr) = (crate::common::stdout(&out), crate::common::stderr(&out));
        assert!(out.status.success(), "{stderr}");
        assert!(stdout.contains("Operation not permitted") && stdout.contains("Seccomp:\t2"), "the filter is on: {stdout}");
        assert!(stderr.contains(&format!("msg=\"seccomp filter flags: {want}\"")), "flags {flags:?}: {stderr}");
    }
    b.assert_gone();
}

#[test]
fn seccomp_bad_profile_fails_create() {
    need_root!();
    let mut b = Bundle::sh("seccompbad", "true");
    b.config["linux"]["seccomp"] =
        json!({"defaultAction": "SCMP_ACT_ALLOW", "syscalls": [{"names": ["mkdir"], "action": "SCMP_ACT_KILL", "errnoRet": 1}]});
    let out = b.create();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("errnoRet"));
    b.assert_gone();
}

/// What a seccomp agent does first: accept the runtime's connection on
/// `listenerPath` and take the state and the notify fd it sends.
fn receive_notify_fd(listener: &UnixListener) -> (serde_json::Value, std::os::fd::OwnedFd) {
    let (conn, _) = listener.accept().unwrap();
    let mut buf = vec![0u8; 64 * 1024];
    let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = nix::sys::socket::recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), nix::sys::socket::MsgFlags::empty()).unwrap();
    let fd = msg.cmsgs().unwrap().find_map(|c| match c {
        nix::sys::socket::ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
        _ => None,
    });
    let n = msg.bytes;
    let state = serde_json::from_slice(&buf[..n]).unwrap();
    (state, strata::sys::owned_from_received(fd.expect("no notify fd")))
}

/// Answers the next notified syscall with success (without doing it);
/// returns its name.
fn answer_one(fd: &std::os::fd::OwnedFd) -> String {
    let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
    let name = req.data.syscall.get_name().unwrap();
    libseccomp::ScmpNotifResp::new_val(req.id, 0, libseccomp::ScmpNotifRespFlags::empty()).respond(fd.as_raw_fd()).unwrap();
    name
}

#[test]
fn seccomp_notify_listener_answers_a_syscall() {
    need_root!();
    let mut b = Bundle::sh("notify", "mkdir /tmp/y && echo mkdir-ok; ls -d /tmp/y 2>/dev/null || echo not-created");
    let sock = b.dir.parent().unwrap().join("notify.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "listenerMetadata": "test-meta",
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let agent = std::thread::spawn(move || {
        let (state, fd) = receive_notify_fd(&listener);
        // Answer the container's mkdir with success, without doing it.
        let name = answer_one(&fd);
        (state, name)
    });
    let out = b.run_ok();
    let (state, name) = agent.join().unwrap();
    assert!(name.starts_with("mkdir"), "{name}");
    assert_eq!(state["fds"], json!(["seccompFd"]));
    assert_eq!(state["metadata"], "test-meta");
    assert_eq!(state["state"]["id"], b.id.as_str());
    assert_eq!(out, "mkdir-ok\nnot-created\n");
    b.assert_gone();
}

#[test]
fn runtime_binary_is_out_of_reach_from_inside() {
    need_root!();
    // While init waits for `start` it is still the strata binary: a process
    // in the container must not be able to open it through /proc/1/exe
    // (CVE-2019-5736 class).
    let b = Bundle::sh("exe", "true");
    assert!(b.create().status.success());
    let before = std::fs::read(&*crate::common::STRATA).unwrap();
    let out = b.cmd(&[
        "exec",
        &b.id,
        "sh",
        "-c",
        "cat /proc/1/exe > /dev/null 2>&1 && echo read-ok; echo x >> /proc/1/exe 2>/dev/null && echo write-ok; for f in /proc/1/fd/*; do readlink $f 2>/dev/null && echo fd-reached; done; echo checked",
    ]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let text = crate::common::stdout(&out);
    assert!(!text.contains("read-ok") && !text.contains("write-ok"), "{text}");
    // Its fds (exec.fifo, the sync socket) are out of reach too.
    assert_eq!(text.trim(), "checked", "{text}");
    assert_eq!(std::fs::read(&*crate::common::STRATA).unwrap(), before);
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

/// The CVE-2019-5736 attack, for real. A watcher in the container waits for
/// a process whose binary is strata (run through /proc/self/exe), opens its /proc/<pid>/exe, waits until no process runs
/// that binary any more, then reopens it through /proc/self/fd for writing
/// and writes a script over it. The host's strata is a copy here, so that a
/// successful attack is seen and harms nothing.
const WATCHER: &str = r#"
end=$(( $(date +%s) + 60 ))
while [ $(date +%s) -lt $end ]; do
  for p in /proc/[0-9]*; do
    e=$(readlink $p/exe 2>/dev/null) || continue
    case "$e" in *strata*) ;; *) continue ;; esac
    if exec 3< $p/exe; then
      echo "$e" > /tmp/opened
      while [ -e $p/exe ] && [ $(date +%s) -lt $end ]; do sleep 0.05; done
      n=0
      while [ $n -lt 60 ]; do
        if printf '#!/bin/sh\necho pwned\n' 2>/dev/null > /proc/self/fd/3; then echo wrote > /tmp/result; exit 0; fi
        n=$((n + 1)); sleep 0.05
      done
      echo write-failed > /tmp/result
      exit 0
    fi
  done
done
echo no-target > /tmp/result
"#;

/// A pipe whose buffer is already full: a process writing to it blocks
/// until the test drains it. That keeps the strata run inside the container
/// alive until the watcher has its exe open.
fn full_pipe() -> (std::os::fd::OwnedFd, std::os::fd::OwnedFd) {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let (r, w) = nix::unistd::pipe().unwrap();
    fcntl(&w, FcntlArg::F_SETFL(OFlag::O_NONBLOCK)).unwrap();
    let chunk = [b'.'; 4096];
    while nix::unistd::write(&w, &chunk).is_ok() {}
    while nix::unistd::write(&w, &chunk[..1]).is_ok() {}
    fcntl(&w, FcntlArg::F_SETFL(OFlag::empty())).unwrap();
    (r, w)
}

fn drain(r: &std::os::fd::OwnedFd) {
    let mut buf = [0u8; 65536];
    let _ = nix::fcntl::fcntl(r, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
    while nix::unistd::read(r, &mut buf).is_ok_and(|n| n > 0) {}
}

fn wait_file(p: &std::path::Path, what: &str) -> String {
    for _ in 0..1200 {
        if let Ok(s) = std::fs::read_to_string(p)
            && !s.is_empty()
        {
            return s;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    panic!("{what}: {} never appeared", p.display());
}

/// A bundle driven by a copy of strata that the container can run.
fn attack_bundle(name: &str, script: &str) -> (Bundle, std::path::PathBuf, Vec<u8>) {
    let mut b = Bundle::sh(name, script);
    let copy = b.dir.parent().unwrap().join("bin/strata");
    std::fs::create_dir_all(copy.parent().unwrap()).unwrap();
    std::fs::copy(&*crate::common::STRATA, &copy).unwrap();
    b.bin = copy.to_string_lossy().into_owned();
    crate::common::copy_libraries(&b.bin, &b.dir.join("rootfs"));
    std::fs::write(b.dir.join("rootfs/watch.sh"), WATCHER).unwrap();
    let before = std::fs::read(&copy).unwrap();
    (b, copy, before)
}

fn start_watcher(b: &Bundle) {
    let out = b.detached(&["exec".as_ref(), "-d".as_ref(), b.id.as_ref(), "sh".as_ref(), "/watch.sh".as_ref()]);
    assert!(out.status.success(), "watcher: {}", crate::common::stderr(&out));
}

/// After the run: the watcher had the binary open, and could not write it.
fn assert_attack_failed(b: &Bundle, copy: &std::path::Path, before: &[u8]) {
    let rootfs = b.dir.join("rootfs");
    let result = wait_file(&rootfs.join("tmp/result"), "watcher result");
    assert_ne!(result.trim(), "no-target", "the watcher never saw strata run in the container");
    assert_eq!(result.trim(), "write-failed", "the container wrote through /proc/<pid>/exe");
    assert!(std::fs::read(copy).unwrap() == before, "the host's strata binary was changed from inside the container");
}

#[test]
fn host_binary_survives_exec_of_proc_self_exe() {
    need_root!();
    let (b, copy, before) = attack_bundle("exe-exec", "sleep 120");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    start_watcher(&b);
    // The host user runs what looks like an ordinary exec; the container's
    // /proc/self/exe is strata's own binary in the exec'd child.
    let (r, w) = full_pipe();
    let mut child = b
        .strata()
        .args(["exec", &b.id, "/proc/self/exe", "--version"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(w.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(w))
        .spawn()
        .unwrap();
    let opened = wait_file(&b.dir.join("rootfs/tmp/opened"), "watcher");
    assert!(!opened.contains("busybox"), "{opened}");
    drain(&r);
    let status = child.wait().unwrap();
    drain(&r);
    assert!(status.success(), "exec /proc/self/exe --version: {status:?}");
    assert_attack_failed(&b, &copy, &before);
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn host_binary_survives_a_proc_self_exe_script() {
    need_root!();
    let (b, copy, before) = attack_bundle("exe-script", "sleep 120");
    // The image's /bin/evil starts its interpreter through /proc/self/exe.
    std::fs::write(b.dir.join("rootfs/bin/evil"), "#!/proc/self/exe\n").unwrap();
    std::fs::set_permissions(b.dir.join("rootfs/bin/evil"), std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    start_watcher(&b);
    let (r, w) = full_pipe();
    let mut child = b
        .strata()
        .args(["exec", &b.id, "/bin/evil"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(w.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(w))
        .spawn()
        .unwrap();
    wait_file(&b.dir.join("rootfs/tmp/opened"), "watcher");
    drain(&r);
    let _ = child.wait().unwrap();
    drain(&r);
    assert_attack_failed(&b, &copy, &before);
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn host_binary_survives_init_running_proc_self_exe() {
    need_root!();
    let (mut b, copy, before) = attack_bundle("exe-init", "");
    b.config["process"]["args"] = json!(["/proc/self/exe", "--version"]);
    // No pid namespace of its own: the watcher must outlive the container's
    // first process, which is the strata run through /proc/self/exe.
    b.config["linux"]["namespaces"].as_array_mut().unwrap().retain(|n| n["type"] != "pid");
    b.write_config();
    let (r, w) = full_pipe();
    let st = b
        .strata()
        .args(["create", "--bundle"])
        .arg(&b.dir)
        .arg(&b.id)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::from(w.try_clone().unwrap()))
        .stderr(std::process::Stdio::from(w))
        .status_within();
    assert!(st.success());
    start_watcher(&b);
    assert!(b.start().status.success());
    wait_file(&b.dir.join("rootfs/tmp/opened"), "watcher");
    drain(&r);
    b.wait_status("stopped");
    drain(&r);
    assert_attack_failed(&b, &copy, &before);
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn symlinked_mount_destination_stays_in_the_rootfs() {
    need_root!();
    // The image plants /mnt/target -> a host directory; a bind mount onto
    // /mnt/target must land inside the rootfs, never on the host path.
    let mut b = Bundle::sh("symlinkdst", "cat /mnt/target/hello; ls -la / | grep -c host-victim; true");
    let victim = b.dir.parent().unwrap().join("host-victim");
    std::fs::create_dir_all(&victim).unwrap();
    let src = b.dir.parent().unwrap().join("src");
    std::fs::create_dir_all(&src).unwrap();
    std::fs::write(src.join("hello"), "hi\n").unwrap();
    std::fs::create_dir_all(b.dir.join("rootfs/mnt")).unwrap();
    std::os::unix::fs::symlink(&victim, b.dir.join("rootfs/mnt/target")).unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt/target", "type": "bind", "source": src, "options": ["rbind"]}));
    let out = b.run_ok();
    assert!(out.starts_with("hi\n"), "{out}");
    assert_eq!(std::fs::read_dir(&victim).unwrap().count(), 0, "the mount reached the host directory");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(victim.to_str().unwrap()), "a mount is on the host path");
    b.assert_gone();
}

#[test]
fn cwd_cannot_point_outside_the_root() {
    need_root!();
    // cwd through a symlink that climbs out: resolved inside the container.
    let mut b = Bundle::sh("cwdescape", "pwd; ls");
    std::os::unix::fs::symlink("/../../../../../..", b.dir.join("rootfs/escape")).unwrap();
    b.config["process"]["cwd"] = json!("/escape/etc");
    let out = b.run();
    let text = String::from_utf8_lossy(&out.stdout);
    // Either it fails, or it lands in the container's own /etc (passwd, group).
    if out.status.success() {
        assert!(text.contains("passwd") && !text.contains("shadow"), "cwd left the root: {text}");
    }
    b.assert_gone();
}

#[test]
fn volume_over_proc_cannot_defeat_masking() {
    need_root!();
    // CVE-2019-19921 class: a bind mount of a plain directory over /proc
    // would turn masking into writes on that directory. strata refuses.
    let mut b = Bundle::sh("fakeproc", "true");
    let fake = b.dir.parent().unwrap().join("fakeproc");
    std::fs::create_dir_all(fake.join("self/fd")).unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/proc", "type": "bind", "source": fake, "options": ["rbind"]}));
    let out = b.create();
    assert!(!out.status.success(), "a non-procfs /proc was accepted with masked paths");
    assert!(crate::common::stderr(&out).contains("/proc"), "{}", crate::common::stderr(&out));
    assert_eq!(std::fs::read_dir(&fake).unwrap().count(), 1, "something was written into the fake /proc");
    b.assert_gone();
}

#[test]
fn exec_cap_is_never_inheritable() {
    need_root!();
    // CVE-2022-29162 class: `exec --cap` adds to bounding, effective and
    // permitted, never to inheritable or ambient.
    let b = Bundle::sh("execcap", "sleep 60");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let out = b.cmd(&["exec", "--cap", "CAP_SYS_ADMIN", &b.id, "sh", "-c", "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status"]);
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let text = crate::common::stdout(&out);
    let field = |name: &str| {
        let v = text.lines().find_map(|l| l.strip_prefix(name)).unwrap_or_else(|| panic!("{name} missing: {text}"));
        u64::from_str_radix(v.trim(), 16).unwrap()
    };
    const SYS_ADMIN: u64 = 1 << 21;
    assert_eq!(field("CapInh:"), 0, "{text}");
    assert_eq!(field("CapAmb:"), 0, "{text}");
    for set in ["CapPrm:", "CapEff:", "CapBnd:"] {
        assert_ne!(field(set) & SYS_ADMIN, 0, "{set} lacks CAP_SYS_ADMIN: {text}");
    }
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn kernel_filesystems_are_never_mounted_through_a_symlink() {
    need_root!();
    // The image makes /proc (or /sys) a symlink to a directory of its own
    // choosing, inside the rootfs. runc refuses; so does strata, and nothing
    // is mounted where the symlink points.
    for (dest, kind) in [("proc", "procfs"), ("sys", "sysfs")] {
        let b = Bundle::sh(&format!("symlink-{dest}"), "true");
        let rootfs = b.dir.join("rootfs");
        std::fs::remove_dir(rootfs.join(dest)).unwrap();
        std::fs::create_dir_all(rootfs.join("tmp/elsewhere")).unwrap();
        std::os::unix::fs::symlink("tmp/elsewhere", rootfs.join(dest)).unwrap();
        let out = b.create();
        let err = crate::common::stderr(&out);
        assert!(!out.status.success(), "{kind} was mounted through a symlink");
        assert!(err.contains(&format!("/{dest}")) && err.contains("ordinary directory"), "{err}");
        assert_eq!(std::fs::read_dir(rootfs.join("tmp/elsewhere")).unwrap().count(), 0);
        b.assert_gone();
    }
}

/// A createContainer hook: it runs in the container's mount namespace
/// after the devices and mounts are made and before masking and the
/// console, which is the moment a racing container process would pick.
fn swap_hook(script: String) -> serde_json::Value {
    json!({"createContainer": [{"path": "/bin/sh", "args": ["sh", "-c", script]}]})
}

#[test]
fn swapped_dev_null_cannot_unmask() {
    need_root!();
    // CVE-2025-31133 class: /dev/null is swapped for a symlink to a file
    // (or for a plain file) before the masks are made; a mask bound from
    // it would show that file, writable, at /proc/timer_list.
    for (name, swap) in [("symlink", "ln -s /etc/secret"), ("file", "cp /etc/secret")] {
        let mut b = Bundle::sh(&format!("null-{name}"), "cat /proc/timer_list; echo END");
        let rootfs = b.dir.join("rootfs");
        std::fs::write(rootfs.join("etc/secret"), "SECRET\n").unwrap();
        let src = if name == "file" { rootfs.join("etc/secret").display().to_string() } else { "/etc/secret".into() };
        let swap = swap.replace("/etc/secret", &src);
        b.config["hooks"] = swap_hook(format!("rm -f {r}/dev/null && {swap} {r}/dev/null", r = rootfs.display()));
        let out = b.run();
        let text = crate::common::stdout(&out);
        assert!(!text.contains("SECRET"), "the masked /proc/timer_list showed the swapped file: {text}");
        assert!(!out.status.success(), "{name}: create went on with a swapped /dev/null: {text}");
        assert!(crate::common::stderr(&out).contains("/dev/null"), "{}", crate::common::stderr(&out));
        b.assert_gone();
    }
    // With the real /dev/null, a masked file is the null device, read-only.
    let b = Bundle::sh("null-ok", "stat -c '%t:%T' /proc/timer_list; grep ' /proc/timer_list ' /proc/self/mountinfo | cut -d' ' -f6");
    let out = b.run_ok();
    let mut lines = out.lines();
    assert_eq!(lines.next(), Some("1:3"), "{out}");
    assert!(lines.next().is_some_and(|o| o.split(',').any(|f| f == "ro")), "mask not read-only: {out}");
    b.assert_gone();
}

/// Runs `b` with a terminal and a console socket; returns what the pty showed
/// (or the create error).
fn run_on_console(b: &Bundle) -> Result<String, String> {
    use std::io::Read;
    let sock_path = b.dir.parent().unwrap().join("console.sock");
    let listener = UnixListener::bind(&sock_path).unwrap();
    let acceptor = std::thread::spawn(move || {
        let (conn, _) = listener.accept().ok()?;
        Some(crate::common::recv_fd(&conn))
    });
    let out = b.detached(&[
        "create".as_ref(),
        "--bundle".as_ref(),
        b.dir.as_os_str(),
        "--console-socket".as_ref(),
        sock_path.as_os_str(),
        b.id.as_ref(),
    ]);
    if !out.status.success() {
        let _ = std::os::unix::net::UnixStream::connect(&sock_path);
        let _ = acceptor.join();
        return Err(crate::common::stderr(&out));
    }
    let master = acceptor.join().unwrap().expect("no pty master");
    assert!(b.start().status.success());
    let mut f = std::fs::File::from(master);
    let (mut text, mut buf) = (String::new(), [0u8; 1024]);
    while let Ok(n @ 1..) = f.read(&mut buf) {
        text.push_str(&String::from_utf8_lossy(&buf[..n]));
        if text.contains("END") {
            break;
        }
    }
    b.wait_status("stopped");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    Ok(text)
}

#[test]
fn swapped_console_cannot_be_redirected() {
    need_root!();
    // CVE-2025-52565 class. First the bind target: /dev/console is swapped
    // for a symlink to a file of the image before the console is bound.
    let mut b = Bundle::sh("console-dst", "tty; stat -c '%t' /dev/console; grep -c ' /etc/victim ' /proc/self/mountinfo; echo END");
    b.config["process"]["terminal"] = json!(true);
    let rootfs = b.dir.join("rootfs");
    std::fs::write(rootfs.join("etc/victim"), "victim\n").unwrap();
    b.config["hooks"] = swap_hook(format!("rm -f {r}/dev/console; ln -s /etc/victim {r}/dev/console", r = rootfs.display()));
    b.write_config();
    let text = run_on_console(&b).expect("create");
    let lines: Vec<&str> = text.lines().map(str::trim).collect();
    assert!(lines.contains(&"/dev/pts/0"), "{text:?}");
    assert!(lines.contains(&"88"), "/dev/console is not the pty (major 136): {text:?}");
    assert!(lines.contains(&"0"), "the pty was mounted on the symlink's target: {text:?}");
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/victim")).unwrap(), "victim\n");
    b.assert_gone();

    // Then the source: /dev/pts is replaced by a directory whose ptmx leads to
    // another devpts and whose N entries are symlinks to a file.
    let mut b = Bundle::sh("console-src", "tty; echo END");
    b.config["process"]["terminal"] = json!(true);
    let rootfs = b.dir.join("rootfs");
    std::fs::write(rootfs.join("etc/victim"), "victim\n").unwrap();
    b.config["hooks"] = swap_hook(format!(
        "umount -l {r}/dev/pts && mkdir -p {r}/dev/realpts && mount -t devpts -o newinstance,ptmxmode=0666 devpts {r}/dev/realpts && \
         ln -s ../realpts/ptmx {r}/dev/pts/ptmx && for n in 0 1 2 3; do ln -s /etc/victim {r}/dev/pts/$n; done",
        r = rootfs.display()
    ));
    b.write_config();
    let result = run_on_console(&b);
    let err = result.expect_err("a pty was made through a swapped /dev/pts");
    assert!(err.contains("/dev/pts/ptmx"), "{err}");
    assert_eq!(std::fs::read_to_string(rootfs.join("etc/victim")).unwrap(), "victim\n");
    b.assert_gone();
}

#[test]
fn procfs_writes_cannot_be_redirected() {
    need_root!();
    // CVE-2025-52881 class: a file is bind-mounted over the sysctl and the
    // oom_score_adj that strata is about to write. The writes must reach the
    // kernel, not the planted file.
    let mut b = Bundle::sh("procredirect", "sleep 60");
    let rootfs = b.dir.join("rootfs");
    std::fs::write(rootfs.join("tmp/decoy"), "untouched\n").unwrap();
    b.config["linux"]["sysctl"] = json!({"kernel.domainname": "strata-test"});
    b.config["process"]["oomScoreAdj"] = json!(123);
    b.config["hooks"] = swap_hook(format!(
        "mount --bind {r}/tmp/decoy {r}/proc/sys/kernel/domainname && mount --bind {r}/tmp/decoy {r}/proc/1/oom_score_adj",
        r = rootfs.display()
    ));
    let out = b.create();
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    assert!(b.start().status.success());
    let pid = b.state()["pid"].as_i64().unwrap();
    assert_eq!(std::fs::read_to_string(rootfs.join("tmp/decoy")).unwrap(), "untouched\n", "a write went to the planted file");
    assert_eq!(std::fs::read_to_string(format!("/proc/{pid}/oom_score_adj")).unwrap().trim(), "123");
    let dn =
        std::process::Command::new("nsenter").args(["-t", &pid.to_string(), "--uts", "cat", "/proc/sys/kernel/domainname"]).output_within();
    assert_eq!(crate::common::stdout(&dn).trim(), "strata-test");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn seccomp_notify_fd_arrives_during_create() {
    need_root!();
    // An agent that answers nothing until it holds the fd: it must have it
    // before `start`, since it may be what lets the container start.
    let mut b = Bundle::sh("notify-early", "mkdir /tmp/z && echo mkdir-ok");
    let sock = b.dir.parent().unwrap().join("notify.sock");
    let listener = UnixListener::bind(&sock).unwrap();
    b.config["linux"]["seccomp"] = json!({
        "defaultAction": "SCMP_ACT_ALLOW",
        "listenerPath": sock,
        "syscalls": [{"names": ["mkdir", "mkdirat"], "action": "SCMP_ACT_NOTIFY"}]
    });
    let (tx, rx) = std::sync::mpsc::channel();
    let agent = std::thread::spawn(move || {
        let (state, fd) = receive_notify_fd(&listener);
        tx.send(state["state"]["id"].as_str().unwrap_or_default().to_string()).unwrap();
        answer_one(&fd);
    });
    let out = b.create();
    assert!(out.status.success(), "{}", crate::common::stderr(&out));
    let id = rx.recv_timeout(std::time::Duration::from_secs(10)).expect("the listener had no fd when create returned");
    assert_eq!(id, b.id);
    assert!(b.start().status.success());
    agent.join().unwrap();
    b.wait_status("stopped");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

/// A device the config lists in `linux.devices` but whose access
/// `linux.resources.devices` denies stays out of reach: the node exists,
/// opening it fails. Without device rules in the config, runc's defaults
/// apply (the standard devices, nothing else). An explicit allow grants it.
#[test]
fn a_denied_device_stays_unreachable() {
    need_root!();
    if !std::path::Path::new("/sys/fs/cgroup/devices").exists() && !std::path::Path::new("/sys/fs/cgroup/cgroup.controllers").exists() {
        eprintln!("skipped: a_denied_device_stays_unreachable needs the devices cgroup (v1) or cgroup v2");
        return;
    }
    let script = "ls -l /dev/kmsg | cut -c1; echo strata-device-test > /dev/kmsg && echo kmsg=written || echo kmsg=denied; \
                  echo x > /dev/null && echo null=ok";
    let kmsg = json!([{"path": "/dev/kmsg", "type": "c", "major": 1, "minor": 11, "fileMode": 0o644, "uid": 0, "gid": 0}]);
    let cases = [
        ("deny-all", json!([{"allow": false, "access": "rwm"}]), "kmsg=denied"),
        ("no-rules", serde_json::Value::Null, "kmsg=denied"),
        (
            "allowed",
            json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "w"}]),
            "kmsg=written",
        ),
    ];
    for (name, rules, want) in cases {
        let mut b = Bundle::sh(&format!("dev{name}"), script);
        b.config["linux"]["devices"] = kmsg.clone();
        if rules.is_null() {
            b.config["linux"]["resources"].as_object_mut().map(|r| r.remove("devices"));
        } else {
            b.config["linux"]["resources"]["devices"] = rules;
        }
        let out = b.run_ok();
        assert!(out.starts_with("c\n"), "{name}: the node is made: {out}");
        assert!(out.contains(want) && out.contains("null=ok"), "{name}: {out}");
        b.assert_gone();
    }
}

/// CVE-2024-21626 class: the caller leaks a host directory as fd 7 and the
/// config's cwd is /proc/self/fd/7. The container never sees that fd (its
/// init holds only its stdio, exec.fifo and its root), so the process does
/// not start in the host's directory; nor does an exec'd one.
#[test]
fn a_leaked_host_directory_fd_is_not_a_way_out() {
    need_root!();
    let mut b = Bundle::sh("leakcwd", "pwd; ls; sleep 30");
    let host = b.dir.parent().unwrap().join("host-secret");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("HOST_MARKER"), "").unwrap();
    b.config["process"]["cwd"] = json!("/proc/self/fd/7");
    b.write_config();
    let leak = |args: &str| {
        let script = format!("exec 7<{}; exec {} --root {} {args}", host.display(), b.bin, b.root.display());
        crate::common::output_via_files(
            {
                let mut c = std::process::Command::new("sh");
                c.args(["-c", &script]);
                c
            },
            b.dir.parent().unwrap(),
            "leak",
        )
    };
    let out = leak(&format!("create --bundle {} {}", b.dir.display(), b.id));
    if out.status.success() {
        let pid = b.state()["pid"].as_i64().unwrap();
        let fds: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/fd"))
            .unwrap()
            .flatten()
            .map(|e| std::fs::read_link(e.path()).unwrap().display().to_string())
            .collect();
        assert!(!fds.iter().any(|t| t.contains("host-secret") || t.starts_with("/sys/fs/cgroup")), "init holds {fds:?}");
        let started = b.start();
        let text = std::fs::read_to_string(b.dir.parent().unwrap().join("out.log")).unwrap_or_default();
        assert!(!text.contains("HOST_MARKER") || !started.status.success(), "the process started in the host's directory: {text}");
        let _ = b.cmd(&["delete", "--force", &b.id]);
    }
    // An exec with the same leak and cwd.
    b.config["process"]["cwd"] = json!("/");
    b.write_config();
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let out = leak(&format!("exec --cwd /proc/self/fd/7 {} ls", b.id));
    assert!(!stdout_text(&out).contains("HOST_MARKER"), "exec ran in the host's directory: {}", stdout_text(&out));
    // Handed over on purpose (--preserve-fds), the fd is the process's: a
    // cwd through it is outside the root, and refused.
    let out = leak(&format!("exec --preserve-fds 5 --cwd /proc/self/fd/7 {} ls", b.id));
    assert!(!stdout_text(&out).contains("HOST_MARKER"), "exec ran in the host's directory: {}", stdout_text(&out));
    assert!(String::from_utf8_lossy(&out.stderr).contains("outside of the container's root"), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

fn stdout_text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// With `--no-pivot` the old root stays in the container's mount
/// namespace: a process that makes its own user and mount namespaces must
/// still not mount a fresh procfs (the kernel allows one only where a whole
/// procfs is visible, and strata hides the host's).
#[test]
fn no_pivot_exposes_no_whole_procfs() {
    need_root!();
    let mut b = Bundle::sh("nopivot", "unshare -mrpf sh -c 'mount -t proc none /proc && echo MOUNTED' 2>&1; echo done");
    for set in ["bounding", "permitted", "effective"] {
        b.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_SETFCAP"));
    }
    b.write_config();
    let out = b.strata().args(["run", "--no-pivot", "--bundle"]).arg(&b.dir).arg(&b.id).stdin(std::process::Stdio::null()).output_within();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(text.contains("done"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    assert!(!text.contains("MOUNTED"), "a fresh procfs was mounted under --no-pivot: {text}");
    b.assert_gone();
}

/// While created, init holds nothing of the host's beyond its stdio (the
/// caller's) and exec.fifo: no state file, directory or binary that a
/// process in the container could reach through /proc/1/fd once it runs
/// (runc's create.bats "detect fd leak" holds runc to the same list).
#[test]
fn a_created_init_holds_no_host_file_but_its_exec_fifo() {
    need_root!();
    let b = Bundle::sh("fdleak", "true");
    assert!(b.create().status.success());
    let pid = b.state()["pid"].as_i64().unwrap();
    let mut held = Vec::new();
    for e in std::fs::read_dir(format!("/proc/{pid}/fd")).unwrap().flatten() {
        let fd: u32 = e.file_name().to_string_lossy().parse().unwrap();
        let target = std::fs::read_link(e.path()).map(|t| t.display().to_string()).unwrap_or_default();
        held.push(format!("{fd} -> {target}"));
        let anonymous = ["pipe:[", "socket:[", "anon_inode:"].iter().any(|p| target.starts_with(p));
        // The container's own root (its mount, not the host's, so seen as
        // "/" from here), which init keeps for its last steps.
        let own_root = target == "/" && same_file(&e.path(), &format!("/proc/{pid}/root"));
        assert!(fd < 3 || anonymous || own_root || target.ends_with("/exec.fifo"), "init holds fd {fd} -> {target}");
    }
    assert!(held.iter().any(|h| h.ends_with("/exec.fifo")), "no exec.fifo among {held:?}");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

fn same_file(a: &impl AsRef<std::path::Path>, b: &str) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(x), Ok(y)) => (x.dev(), x.ino()) == (y.dev(), y.ino()),
        _ => false,
    }
}
