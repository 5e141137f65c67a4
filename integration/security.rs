//! seccomp and hardening, tried for real from inside containers.

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
        let (conn, _) = listener.accept().unwrap();
        let mut buf = vec![0u8; 64 * 1024];
        let mut cmsg = nix::cmsg_space!([std::os::fd::RawFd; 1]);
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg =
            nix::sys::socket::recvmsg::<()>(conn.as_raw_fd(), &mut iov, Some(&mut cmsg), nix::sys::socket::MsgFlags::empty()).unwrap();
        let mut fd = None;
        for c in msg.cmsgs().unwrap() {
            if let nix::sys::socket::ControlMessageOwned::ScmRights(fds) = c {
                fd = fds.first().copied();
            }
        }
        let n = msg.bytes;
        let state: serde_json::Value = serde_json::from_slice(&buf[..n]).unwrap();
        let fd = strata::sys::owned_from_received(fd.expect("no notify fd"));
        // Answer the container's mkdir with success, without doing it.
        let req = libseccomp::ScmpNotifReq::receive(fd.as_raw_fd()).unwrap();
        let name = req.data.syscall.get_name().unwrap();
        libseccomp::ScmpNotifResp::new_val(req.id, 0, libseccomp::ScmpNotifRespFlags::empty()).respond(fd.as_raw_fd()).unwrap();
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
