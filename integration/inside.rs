//! What a process sees from inside a real container.

use crate::common::Bounded;
use std::process::Command;

use serde_json::json;

use crate::common::Bundle;
use crate::need_root;

fn host_ns(kind: &str) -> String {
    std::fs::read_link(format!("/proc/self/ns/{kind}")).unwrap().to_string_lossy().into_owned()
}

#[test]
fn new_namespaces_differ_from_the_host() {
    need_root!();
    let b = Bundle::sh("ns", "for n in pid net ipc uts mnt cgroup; do echo $n $(readlink /proc/self/ns/$n); done").with_cgroup_ns();
    let out = b.run_ok();
    for line in out.lines() {
        let (kind, inode) = line.split_once(' ').unwrap();
        assert_ne!(inode, host_ns(kind), "{kind} namespace is the host's");
    }
    assert_eq!(out.lines().count(), 6);
}

#[test]
fn namespace_given_by_path_is_joined() {
    need_root!();
    // A process of ours that holds a network namespace.
    let mut holder = std::process::Command::new("unshare").args(["--net", "sleep", "30"]).spawn().unwrap();
    let ns_path = format!("/proc/{}/ns/net", holder.id());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let want = std::fs::read_link(&ns_path).unwrap().to_string_lossy().into_owned();
    let mut b = Bundle::sh("nsjoin", "readlink /proc/self/ns/net");
    let nss = b.config["linux"]["namespaces"].as_array_mut().unwrap();
    for ns in nss.iter_mut() {
        if ns["type"] == "network" {
            ns["path"] = json!(ns_path);
        }
    }
    let out = b.run_ok();
    holder.kill().unwrap();
    holder.wait().unwrap();
    assert_eq!(out.trim(), want);
    assert_ne!(want, host_ns("net"));
}

#[test]
fn pid_one_hostname_domainname() {
    need_root!();
    let mut b = Bundle::sh("uts", "echo $$; hostname; cat /proc/sys/kernel/domainname");
    b.config["hostname"] = json!("box1");
    b.config["domainname"] = json!("example.org");
    assert_eq!(b.run_ok(), "1\nbox1\nexample.org\n");
}

#[test]
fn mounts_have_their_flags() {
    need_root!();
    let mut b = Bundle::sh("mnt", "grep -E ' /(dev|sys|proc|data) ' /proc/self/mounts; echo x > /data/f && echo writable; true");
    let host_dir = b.dir.parent().unwrap().join("data");
    std::fs::create_dir_all(&host_dir).unwrap();
    std::fs::write(host_dir.join("hello"), "hi").unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({
        "destination": "/data", "type": "bind", "source": host_dir, "options": ["rbind", "ro", "nosuid", "nodev"]
    }));
    let out = b.run_ok();
    let line = |mp: &str| out.lines().find(|l| l.split(' ').nth(1) == Some(mp)).unwrap_or_else(|| panic!("no {mp} in {out}")).to_string();
    assert!(line("/dev").starts_with("tmpfs /dev tmpfs rw,nosuid"), "{}", line("/dev"));
    assert!(line("/sys").contains(" ro,"), "{}", line("/sys"));
    assert!(line("/proc").starts_with("proc /proc proc rw"), "{}", line("/proc"));
    let data = line("/data");
    assert!(data.contains(" ro,") && data.contains("nosuid") && data.contains("nodev"), "{data}");
    assert!(!out.contains("writable"), "a read-only bind mount was writable");
    assert!(!host_dir.join("f").exists());
}

#[test]
fn recursive_mount_attributes_reach_submounts() {
    need_root!();
    // An rbind of a host directory with a mount of its own below it: the
    // r* options must show on the submount too, atime modes included.
    let mut b = Bundle::sh("rattrs", "grep ' /data/sub ' /proc/self/mountinfo; echo x > /data/sub/f && echo writable; true");
    let host_dir = b.dir.parent().unwrap().join("rdata");
    let sub = host_dir.join("sub");
    std::fs::create_dir_all(&sub).unwrap();
    nix::mount::mount(Some("tmpfs"), &sub, Some("tmpfs"), nix::mount::MsFlags::empty(), Some("size=1m")).unwrap();
    let opts = ["rbind", "rro", "rnosuid", "rnodev", "rnoexec", "rnoatime", "rnodiratime", "rnosymfollow"];
    b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/data", "type": "bind", "source": host_dir, "options": opts}));
    let out = b.run();
    let _ = nix::mount::umount2(&sub, nix::mount::MntFlags::MNT_DETACH);
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(out.status.success(), "{text}{}", String::from_utf8_lossy(&out.stderr));
    let flags: Vec<&str> =
        text.lines().next().and_then(|l| l.split(' ').nth(5)).unwrap_or_else(|| panic!("no submount: {text}")).split(',').collect();
    for f in ["ro", "nosuid", "nodev", "noexec", "noatime", "nodiratime", "nosymfollow"] {
        assert!(flags.contains(&f), "{f} missing on the submount: {flags:?}");
    }
    assert!(!text.contains("writable"), "{text}");
    b.assert_gone();
}

#[test]
fn masked_and_readonly_paths() {
    need_root!();
    let b = Bundle::sh(
        "mask",
        "wc -c < /proc/timer_list; ls /sys/firmware | wc -l; echo 1 > /proc/sys/kernel/ns_last_pid 2>/dev/null && echo wrote-sys; echo done",
    );
    let out = b.run_ok();
    assert_eq!(out, "0\n0\ndone\n");
}

#[test]
fn default_and_configured_devices() {
    need_root!();
    let mut b = Bundle::sh(
        "dev",
        "stat -c '%n %F %t:%T %a %u:%g' /dev/null /dev/zero /dev/tty /dev/mydev; readlink /dev/fd; readlink /dev/ptmx; echo ok > /dev/null && echo null-ok",
    );
    b.config["linux"]["devices"] =
        json!([{"path": "/dev/mydev", "type": "c", "major": 1, "minor": 5, "fileMode": 0o600, "uid": 7, "gid": 8}]);
    b.config["linux"]["resources"]["devices"] =
        json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}]);
    let out = b.run_ok();
    assert!(out.contains("/dev/null character special file 1:3 666 0:0"), "{out}");
    assert!(out.contains("/dev/zero character special file 1:5 666"), "{out}");
    assert!(out.contains("/dev/tty character special file 5:0"), "{out}");
    assert!(out.contains("/dev/mydev character special file 1:5 600 7:8"), "{out}");
    assert!(out.contains("/proc/self/fd\npts/ptmx\n"), "{out}");
    assert!(out.contains("null-ok"), "{out}");
}

#[test]
fn user_groups_and_umask() {
    need_root!();
    let mut b = Bundle::sh("user", "id -u; id -g; id -G; umask; touch /tmp/f; stat -c %a /tmp/f");
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1001, "additionalGids": [10, 20], "umask": 0o027});
    let out = b.run_ok();
    assert_eq!(out, "1000\n1001\n1001 10 20\n0027\n640\n");
}

fn status_field(out: &str, name: &str) -> u64 {
    let v = out.lines().find_map(|l| l.strip_prefix(&format!("{name}:\t"))).unwrap_or_else(|| panic!("no {name} in {out}"));
    u64::from_str_radix(v.trim(), 16).unwrap()
}

#[test]
fn capability_sets_are_exact() {
    need_root!();
    let mut b = Bundle::sh("caps", "grep -E '^Cap(Inh|Prm|Eff|Bnd|Amb)' /proc/self/status; cat /proc/self/status | grep NoNewPrivs");
    // Not root: root's exec would refill permitted from the bounding set.
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_NET_RAW", "CAP_CHOWN"],
        "permitted": ["CAP_KILL", "CAP_NET_RAW"],
        "effective": ["CAP_KILL"],
        "inheritable": ["CAP_NET_RAW"],
        "ambient": ["CAP_NET_RAW"]
    });
    let out = b.run_ok();
    let kill = 1 << 5;
    let net_raw = 1 << 13;
    let chown = 1 << 0;
    assert_eq!(status_field(&out, "CapBnd"), kill | net_raw | chown, "{out}");
    // After exec, ambient caps join permitted and effective.
    assert_eq!(status_field(&out, "CapAmb"), net_raw, "{out}");
    assert_eq!(status_field(&out, "CapPrm"), net_raw, "{out}");
    assert_eq!(status_field(&out, "CapInh"), net_raw, "{out}");
    assert_eq!(status_field(&out, "CapEff"), net_raw, "{out}");
    assert!(out.contains("NoNewPrivs:\t1"), "{out}");
}

#[test]
fn rlimits_cwd_env() {
    need_root!();
    let mut b = Bundle::sh("limits", "ulimit -n; ulimit -Hn; ulimit -c; pwd; echo $FOO; echo $PATH");
    b.config["process"]["rlimits"] = json!([
        {"type": "RLIMIT_NOFILE", "soft": 123, "hard": 456},
        {"type": "RLIMIT_CORE", "soft": 0, "hard": 0}
    ]);
    b.config["process"]["cwd"] = json!("/var/work");
    b.config["process"]["env"] = json!(["PATH=/bin", "FOO=bar baz"]);
    assert_eq!(b.run_ok(), "123\n456\n0\n/var/work\nbar baz\n/bin\n");
}

#[test]
fn user_namespace_maps_ids() {
    need_root!();
    let mut b = Bundle::sh("userns", "id -u; cat /proc/self/uid_map; cat /proc/self/gid_map; readlink /proc/self/ns/user");
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    // The rootfs must be reachable by the mapped root.
    let out = b.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "0");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    assert_eq!(lines[2].split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    assert_ne!(lines[3], host_ns("user"));
}

#[test]
fn readonly_root_and_sysctl() {
    need_root!();
    let mut b = Bundle::sh("rosys", "touch /x 2>/dev/null && echo wrote-root; cat /proc/sys/net/ipv4/ip_forward; echo ok");
    b.config["root"]["readonly"] = json!(true);
    b.config["linux"]["sysctl"] = json!({"net.ipv4.ip_forward": "1"});
    assert_eq!(b.run_ok(), "1\nok\n");
}

#[test]
fn no_runtime_fd_leaks_into_the_container() {
    need_root!();
    let b = Bundle::sh("fds", "ls /proc/self/fd");
    // ls opens one fd for the directory it reads: 0, 1, 2 and that one.
    let out = b.run_ok();
    let fds: Vec<&str> = out.lines().collect();
    assert_eq!(fds, ["0", "1", "2", "3"], "{out}");
}

#[test]
fn cgroup_limits_are_visible_inside() {
    need_root!();
    let mut b = Bundle::sh(
        "cg",
        "cat /sys/fs/cgroup/memory/memory.limit_in_bytes 2>/dev/null || cat /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/pids.max",
    );
    b.config["linux"]["resources"]["memory"] = json!({"limit": 64 * 1024 * 1024});
    b.config["linux"]["resources"]["pids"] = json!({"limit": 42});
    assert_eq!(b.run_ok(), format!("{}\n42\n", 64 * 1024 * 1024));
    b.assert_gone();
}

#[test]
fn cgroup_v1_binds_are_the_containers_own_and_read_only() {
    need_root!();
    if !std::path::Path::new("/sys/fs/cgroup/pids/tasks").exists() {
        eprintln!("skipped: cgroup_v1_binds_are_the_containers_own_and_read_only needs a cgroup v1 pids hierarchy");
        return;
    }
    // The default spec's cgroup mount: ro, nosuid, nodev, noexec, no cgroup
    // namespace. Each hierarchy is the container's own cgroup, bound with
    // those flags, so the container can neither leave nor loosen it.
    let b = Bundle::sh(
        "cgbind",
        "grep ' /sys/fs/cgroup/pids ' /proc/self/mountinfo | cut -d' ' -f4,6; mkdir /sys/fs/cgroup/pids/out 2>&1 || true; { echo 1 > /sys/fs/cgroup/pids/tasks; } 2>&1 || true",
    );
    let out = b.run_ok();
    let first = out.lines().next().unwrap_or_default();
    let (root, opts) = first.split_once(' ').unwrap_or_default();
    assert!(root.ends_with(&format!("/{}", b.id)), "{out}");
    assert!(opts.starts_with("ro,nosuid,nodev,noexec"), "{out}");
    assert_eq!(out.matches("Read-only file system").count(), 2, "{out}");
}

#[test]
fn time_namespace_offsets() {
    need_root!();
    let mut b = Bundle::sh("timens", "cut -d. -f1 /proc/uptime; readlink /proc/self/ns/time");
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "time"}));
    b.config["linux"]["timeOffsets"] = json!({"boottime": {"secs": 864000, "nanosecs": 0}, "monotonic": {"secs": 864000, "nanosecs": 0}});
    let host_uptime: u64 = std::fs::read_to_string("/proc/uptime").unwrap().split('.').next().unwrap().parse().unwrap();
    let out = b.run_ok();
    let mut lines = out.lines();
    let inside: u64 = lines.next().unwrap().parse().unwrap();
    assert!(inside >= host_uptime + 864000 && inside < host_uptime + 864000 + 60, "uptime {inside} vs host {host_uptime}");
    assert_ne!(lines.next().unwrap(), host_ns("time"));
}

#[test]
fn tmpcopyup_seeds_the_tmpfs() {
    need_root!();
    let mut b = Bundle::sh("copyup", "cat /seeded/f; grep ' /seeded ' /proc/self/mounts | cut -d' ' -f3; echo new > /seeded/g");
    std::fs::create_dir_all(b.dir.join("rootfs/seeded")).unwrap();
    std::fs::write(b.dir.join("rootfs/seeded/f"), "from-image\n").unwrap();
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/seeded", "type": "tmpfs", "source": "tmpfs", "options": ["rw", "nosuid", "tmpcopyup", "size=1m"]}));
    assert_eq!(b.run_ok(), "from-image\ntmpfs\n");
    assert!(!b.dir.join("rootfs/seeded/g").exists(), "a write reached the image dir under the tmpfs");
}

#[test]
fn personality_linux32_is_seen_by_the_process_and_by_exec() {
    need_root!();
    let mut b = Bundle::sh("pers32", "uname -m; sleep 30");
    b.config["linux"]["personality"] = json!({"domain": "LINUX32"});
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let exec = b.cmd(&["exec", &b.id, "uname", "-m"]);
    assert_eq!(String::from_utf8_lossy(&exec.stdout), "i686\n", "{}", String::from_utf8_lossy(&exec.stderr));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    assert_eq!(std::fs::read_to_string(b.dir.parent().unwrap().join("out.log")).unwrap_or_default(), "i686\n");
    b.assert_gone();
    // Flags strata cannot apply fail create, naming the field.
    let mut b = Bundle::sh("persflags", "true");
    b.config["linux"]["personality"] = json!({"domain": "LINUX", "flags": ["ADDR_NO_RANDOMIZE"]});
    let out = b.create();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux.personality.flags"), "{}", String::from_utf8_lossy(&out.stderr));
    b.assert_gone();
}

#[test]
fn exec_ignore_paused_runs_once_the_container_resumes() {
    need_root!();
    let b = Bundle::sh("ignpaused", "sleep 60");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    assert!(b.cmd(&["pause", &b.id]).status.success());
    // Refused without the flag, as runc does.
    let out = b.cmd(&["exec", &b.id, "true"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("paused"), "{}", String::from_utf8_lossy(&out.stderr));
    // With it, the process joins the frozen container and runs when it thaws.
    let mut exec = b
        .strata()
        .args(["exec", "--ignore-paused", "-d", &b.id, "sh", "-c", "echo ran > /tmp/later"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(std::time::Duration::from_millis(500));
    let later = b.dir.join("rootfs/tmp/later");
    assert!(!later.exists(), "a process ran in a paused container");
    assert!(b.cmd(&["resume", &b.id]).status.success());
    assert!(exec.wait().unwrap().success());
    // The shell creates the file before it writes to it: wait for the line.
    for _ in 0..250 {
        if std::fs::read_to_string(&later).is_ok_and(|t| t == "ran\n") {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&later).unwrap(), "ran\n");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn scheduler_and_io_priority_are_seen_inside() {
    need_root!();
    let mut b =
        Bundle::sh("sched", "grep -E '^policy' /proc/self/sched | tr -s ' '; cut -d' ' -f19 /proc/self/stat; ionice -p $$; sleep 30");
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_BATCH", "nice": 7});
    b.config["process"]["ioPriority"] = json!({"class": "IOPRIO_CLASS_IDLE", "priority": 0});
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    // exec'd processes get them too (they take the container's process).
    let out =
        b.cmd(&["exec", &b.id, "sh", "-c", "grep -E '^policy' /proc/self/sched | tr -s ' '; cut -d' ' -f19 /proc/self/stat; ionice -p $$"]);
    let exec = String::from_utf8_lossy(&out.stdout).into_owned();
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    let init = std::fs::read_to_string(b.dir.parent().unwrap().join("out.log")).unwrap();
    for text in [&init, &exec] {
        assert!(text.contains("policy : 3"), "not SCHED_BATCH: {text}");
        assert!(text.lines().any(|l| l.trim() == "7"), "nice is not 7: {text}");
        assert!(text.contains("idle"), "io class is not idle: {text}");
    }
    b.assert_gone();
    // What Linux cannot do is refused, naming the field.
    let mut b = Bundle::sh("schediso", "true");
    b.config["process"]["scheduler"] = json!({"policy": "SCHED_ISO"});
    let out = b.create();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("process.scheduler.policy"), "{}", String::from_utf8_lossy(&out.stderr));
    b.assert_gone();
}

#[test]
fn exec_cpu_affinity_initial_and_final() {
    need_root!();
    if std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1) < 2 {
        eprintln!("skipped: needs two CPUs");
        return;
    }
    let b = Bundle::sh("affinity", "sleep 30");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let process = |aff: serde_json::Value| {
        let p = json!({"cwd": "/", "user": {"uid": 0, "gid": 0}, "env": ["PATH=/bin"], "args": ["sh", "-c", "grep Cpus_allowed_list /proc/self/status | tr -d '\\t '"], "execCPUAffinity": aff});
        let f = b.dir.parent().unwrap().join("process.json");
        std::fs::write(&f, p.to_string()).unwrap();
        let out = b.cmd(&["exec", "-p", f.to_str().unwrap(), &b.id]);
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    };
    // Only `initial`: the process keeps it. With `final`, that is what it runs on.
    assert_eq!(process(json!({"initial": "1"})), "Cpus_allowed_list:1");
    assert_eq!(process(json!({"initial": "1", "final": "0"})), "Cpus_allowed_list:0");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn memory_policy_is_seen_in_numa_maps() {
    need_root!();
    if !std::path::Path::new("/proc/self/numa_maps").exists() {
        eprintln!("skipped: no NUMA support in this kernel");
        return;
    }
    let mut b = Bundle::sh("mempol", "grep -c ' interleave:0 ' /proc/self/numa_maps; sleep 30");
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_INTERLEAVE", "nodes": "0"});
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let exec = b.cmd(&["exec", &b.id, "sh", "-c", "grep -c ' interleave:0 ' /proc/self/numa_maps"]);
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    let init = std::fs::read_to_string(b.dir.parent().unwrap().join("out.log")).unwrap();
    for text in [init, String::from_utf8_lossy(&exec.stdout).into_owned()] {
        let n: u32 = text.trim().parse().unwrap_or(0);
        assert!(n > 0, "no interleaved mapping: {text:?}");
    }
    b.assert_gone();
    let mut b = Bundle::sh("mempolbad", "true");
    b.config["linux"]["memoryPolicy"] = json!({"mode": "MPOL_BIND"});
    let out = b.create();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("linux.memoryPolicy.nodes"), "{}", String::from_utf8_lossy(&out.stderr));
    b.assert_gone();
}

/// A veth pair made for a test, deleted (by name, both ends go) when dropped.
struct Veth {
    peer: String,
}

impl Drop for Veth {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["link", "del", &self.peer]).stderr(std::process::Stdio::null()).status();
    }
}

fn ip(args: &[&str]) -> bool {
    Command::new("ip").args(args).stdout(std::process::Stdio::null()).stderr(std::process::Stdio::null()).status_within().success()
}

#[test]
fn net_devices_are_moved_renamed_and_keep_their_addresses() {
    need_root!();
    // This kernel has no dummy module: one end of a veth pair goes into the
    // container, the other stays on the host to be reached.
    let n = std::process::id() % 100_000;
    let (host, peer) = (format!("stvc{n}"), format!("stvp{n}"));
    assert!(ip(&["link", "add", &host, "type", "veth", "peer", "name", &peer]));
    let _veth = Veth { peer: peer.clone() };
    for args in [
        vec!["addr", "add", "10.231.7.1/24", "dev", &host],
        vec!["link", "set", &host, "up"],
        vec!["addr", "add", "10.231.7.2/24", "dev", &peer],
        vec!["link", "set", &peer, "up"],
    ] {
        assert!(ip(&args), "ip {args:?}");
    }
    let mut b = Bundle::sh(
        "netdev",
        "ip -o addr show dev ctr0 | grep -o 'inet [0-9./]*'; ip -o link show | grep -c stvc; \
         ping -c1 -W2 10.231.7.2 >/dev/null && echo reached; sleep 30",
    );
    b.config["linux"]["netDevices"] = json!({ host.clone(): {"name": "ctr0"} });
    // busybox ping opens a raw socket.
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_NET_RAW"));
    }
    let out = b.create();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    // Gone from the host once create is done.
    assert!(!ip(&["link", "show", &host]), "{host} is still on the host");
    assert!(b.start().status.success());
    let log = b.dir.parent().unwrap().join("out.log");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let mut text = String::new();
    while !text.contains("reached") && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(50));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    // Its address kept, under its new name, and its old name nowhere inside.
    assert_eq!(text, "inet 10.231.7.1/24\n0\nreached\n", "inside the container");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
    // The namespace is gone, and with it the veth: the kernel destroys both
    // ends. strata kept no record of it.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while ip(&["link", "show", &peer]) {
        assert!(std::time::Instant::now() < deadline, "the veth outlived the container's namespace");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }

    // What cannot be done fails create, naming the field.
    let mut b = Bundle::sh("netdevnone", "true");
    b.config["linux"]["netDevices"] = json!({"stv-nosuchdev": {}});
    let out = b.create();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("linux.netDevices") && err.contains("stv-nosuchdev"), "{err}");
    b.assert_gone();
    let mut b = Bundle::sh("netdevhost", "true");
    let nss = b.config["linux"]["namespaces"].as_array().unwrap().iter().filter(|n| n["type"] != "network").cloned().collect::<Vec<_>>();
    b.config["linux"]["namespaces"] = json!(nss);
    b.config["linux"]["netDevices"] = json!({"lo": {}});
    let out = b.create();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("linux.netDevices") && err.contains("no network namespace"), "{err}");
    b.assert_gone();
}

#[test]
fn intel_rdt_without_resctrl_fails_create_naming_the_field() {
    need_root!();
    let resctrl = std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.contains(" - resctrl "));
    if resctrl {
        eprintln!("skipped: resctrl is mounted here; this test is for hosts without it");
        return;
    }
    let mut b = Bundle::sh("rdt", "true");
    b.config["linux"]["intelRdt"] = json!({"closID": "strata-test", "l3CacheSchema": "L3:0=f"});
    let out = b.create();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(err.contains("linux.intelRdt") && err.contains("resctrl is not mounted"), "{err}");
    b.assert_gone();
}

/// A host directory for the idmap tests: `own1000` owned by 1000:1000 and
/// `rootfile` by 0:0.
fn idmap_share(b: &Bundle) -> std::path::PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let share = b.dir.parent().unwrap().join("share");
    std::fs::create_dir_all(&share).unwrap();
    std::fs::set_permissions(&share, std::fs::Permissions::from_mode(0o777)).unwrap();
    std::fs::write(share.join("own1000"), "x").unwrap();
    std::os::unix::fs::chown(share.join("own1000"), Some(1000), Some(1000)).unwrap();
    std::fs::write(share.join("rootfile"), "x").unwrap();
    share
}

#[test]
fn idmapped_mounts_show_owners_through_their_mappings() {
    need_root!();
    use std::os::unix::fs::MetadataExt;
    // The mount's own mappings, no user namespace: on-disk 1000 shows as
    // 2000 (uids) and 3000 (gids); root, unmapped, as the overflow id.
    // Mappings without `idmap` idmap the mount too (runc's reading); the
    // destination may spell out the rootfs's host path (runc's legacy).
    let mut b =
        Bundle::sh("idmap", "stat -c '%u:%g' /mnt/own1000 /mnt/rootfile; stat -c '%u:%g' /plain/own1000; stat -c '%u:%g' /implied/own1000");
    let share = idmap_share(&b);
    let prefixed = b.dir.join("rootfs/plain");
    b.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/mnt", "type": "bind", "source": share, "options": ["bind", "idmap"],
               "uidMappings": [{"containerID": 1000, "hostID": 2000, "size": 1}],
               "gidMappings": [{"containerID": 1000, "hostID": 3000, "size": 1}]}),
        json!({"destination": prefixed, "type": "bind", "source": share, "options": ["bind"]}),
        json!({"destination": "/implied", "type": "bind", "source": share, "options": ["bind"],
               "uidMappings": [{"containerID": 1000, "hostID": 2000, "size": 1}],
               "gidMappings": [{"containerID": 1000, "hostID": 3000, "size": 1}]}),
    ]);
    assert_eq!(b.run_ok(), "2000:3000\n65534:65534\n1000:1000\n2000:3000\n");
    b.assert_gone();

    // No mappings of its own, in a user-namespaced container (0 -> 100000):
    // the host's root files are root's inside, and what root writes there
    // is root's on the host. Without the idmap they would show as nobody.
    // (Mounted on directories the image has: its root cannot make new ones.)
    let mut b = Bundle::sh("idmapns", "stat -c '%u:%g' /home/rootfile /home/own1000 /var/rootfile; echo y > /home/made && echo wrote");
    let share = idmap_share(&b);
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
    b.config["mounts"].as_array_mut().unwrap().extend([
        json!({"destination": "/home", "type": "bind", "source": share, "options": ["rbind", "ridmap"]}),
        json!({"destination": "/var", "type": "bind", "source": share, "options": ["bind"]}),
    ]);
    assert_eq!(b.run_ok(), "0:0\n1000:1000\n65534:65534\nwrote\n");
    let made = std::fs::metadata(share.join("made")).unwrap();
    assert_eq!((made.uid(), made.gid()), (0, 0), "the container's root wrote as the host's root through the idmap");
    b.assert_gone();

    // What cannot be idmapped fails create, naming the mount.
    let mut b = Bundle::sh("idmapbad", "true");
    b.config["mounts"]
        .as_array_mut()
        .unwrap()
        .push(json!({"destination": "/mnt", "type": "bind", "source": "/tmp", "options": ["bind", "idmap"]}));
    let out = b.create();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("mount /mnt: idmap"), "{}", String::from_utf8_lossy(&out.stderr));
    b.assert_gone();
}

/// A foreground `run` with a terminal copies the container's output with
/// plain `\n` line ends (no ONLCR on the pty, as runc), and the pty belongs
/// to the process's user.
#[test]
fn terminal_output_keeps_plain_newlines_and_belongs_to_the_user() {
    need_root!();
    let mut b = Bundle::sh("onlcr", "echo one; echo two; stat -L -c owner=%u /proc/self/fd/0");
    b.config["process"]["terminal"] = json!(true);
    b.config["process"]["user"] = json!({"uid": 1000, "gid": 1000});
    let out = b.run_ok();
    assert!(out.starts_with("one\ntwo\n"), "{out:?}");
    assert!(!out.contains('\r'), "ONLCR left on: {out:?}");
    assert!(out.contains("owner=1000"), "the pty is not the user's: {out:?}");
    b.assert_gone();
}

/// HOME, when the config gives none (or an empty one), comes from the
/// process user's entry in the container's /etc/passwd, or is `/`; a HOME
/// the config gives stays.
#[test]
fn home_comes_from_the_containers_passwd() {
    need_root!();
    let cases = [
        (0, vec!["PATH=/bin"], "HOME=/root"),
        (0, vec!["HOME=", "PATH=/bin"], "HOME=/root"),
        (4242, vec!["PATH=/bin"], "HOME=/"),
        (0, vec!["HOME=/given"], "HOME=/given"),
    ];
    for (uid, env, want) in cases {
        let mut b = Bundle::sh("home", "env | grep ^HOME=");
        b.config["process"]["user"] = json!({"uid": uid, "gid": 0});
        b.config["process"]["env"] = json!(env);
        let out = b.run_ok();
        assert_eq!(out.trim(), want, "uid {uid}, env {env:?}");
        b.assert_gone();
    }
}

/// As runc: an inheritable capability need not be permitted (the process
/// starts, with exactly the sets asked for), and an ambient one that is not
/// inheritable is skipped with runc's warning instead of failing the start.
#[test]
fn capability_sets_as_runc_applies_them() {
    need_root!();
    let mut b = Bundle::sh("capsets", "grep -E '^Cap(Inh|Prm|Eff|Amb)' /proc/self/status");
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_CHOWN", "CAP_SYSLOG"],
        "inheritable": ["CAP_CHOWN", "CAP_SYSLOG"],
        "permitted": ["CAP_KILL", "CAP_CHOWN"],
        "effective": ["CAP_KILL"],
        "ambient": ["CAP_CHOWN", "CAP_KILL"]
    });
    let out = b.run();
    let (text, err) = (crate::common::stdout(&out), crate::common::stderr(&out));
    assert!(out.status.success(), "{err}");
    // CHOWN 1<<0, KILL 1<<5, SYSLOG 1<<34; KILL is not inheritable, so not ambient.
    for want in ["CapInh:\t0000000400000001", "CapPrm:\t0000000000000021", "CapEff:\t0000000000000021", "CapAmb:\t0000000000000001"] {
        assert!(text.contains(want), "{want} missing: {text}");
    }
    assert!(err.contains("can't raise ambient capability CAP_KILL: "), "{err}");
    b.assert_gone();
}

/// An effective capability that is not permitted: the kernel refuses it
/// (one capset cannot take it), and the error names the set that failed;
/// the process never runs.
#[test]
fn an_effective_capability_not_permitted_fails_naming_the_set() {
    need_root!();
    let mut b = Bundle::sh("capeff", "echo ran");
    b.config["process"]["capabilities"] = json!({
        "bounding": ["CAP_KILL", "CAP_CHOWN"],
        "permitted": ["CAP_KILL"],
        "effective": ["CAP_KILL", "CAP_CHOWN"]
    });
    let out = b.run();
    let (text, err) = (crate::common::stdout(&out), crate::common::stderr(&out));
    assert!(!out.status.success(), "ran with an effective cap it was not permitted: {text}");
    assert!(!text.contains("ran"), "{text}");
    assert!(err.contains("Effective"), "the error does not name the set: {err}");
    b.assert_gone();
}

/// The CPU affinity strata was started with is not the container's: init
/// and exec'd processes get every CPU their cgroup allows, as with runc.
#[test]
fn cpu_affinity_of_the_caller_is_reset() {
    need_root!();
    let all = std::fs::read_to_string("/proc/self/status").unwrap();
    let all = all.lines().find_map(|l| l.strip_prefix("Cpus_allowed_list:")).unwrap().trim().to_string();
    if all == "0" {
        eprintln!("skipped: cpu_affinity_of_the_caller_is_reset needs two CPUs");
        return;
    }
    let b = Bundle::sh("affinity", "grep Cpus_allowed_list: /proc/self/status; sleep 30");
    b.write_config();
    let mut c = Command::new("taskset");
    c.args(["-c", "0", &b.bin, "--root"]).arg(&b.root).args(["run", "-d", "--bundle"]).arg(&b.dir).arg(&b.id);
    let out = crate::common::output_via_files(c, b.dir.parent().unwrap(), "ts");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let mut c = Command::new("taskset");
    c.args(["-c", "0", &b.bin, "--root"]).arg(&b.root).args(["exec", &b.id, "grep", "Cpus_allowed_list:", "/proc/self/status"]);
    let exec = c.output_within();
    let text = String::from_utf8_lossy(&exec.stdout).into_owned();
    assert_eq!(text.trim(), format!("Cpus_allowed_list:\t{all}"), "exec'd process");
    let init = std::fs::read_to_string(format!("/proc/{}/status", b.state()["pid"])).unwrap();
    assert!(init.contains(&format!("Cpus_allowed_list:\t{all}\n")), "init: {init}");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

/// Kubernetes' bidirectional mount propagation: with `rootfsPropagation:
/// rshared` and an `rshared` bind of a shared host directory, a mount the
/// container makes inside the volume shows on the host; without the
/// volume's `rshared`, the host never sees it.
#[test]
fn a_mount_in_an_rshared_volume_reaches_the_host() {
    need_root!();
    let base = std::env::temp_dir().join(format!("strata-prop-{}", std::process::id()));
    let vol = base.join("vol");
    std::fs::create_dir_all(&vol).unwrap();
    let sh = |c: &str| assert!(Command::new("sh").args(["-c", c]).status_within().success(), "{c}");
    sh(&format!("mount -t tmpfs strata-prop {} && mount --make-rshared {}", vol.display(), vol.display()));
    let _unmount = crate::common::UnmountOnDrop(vol.clone());
    let seen = |name: &str| std::fs::read_to_string("/proc/self/mountinfo").unwrap().lines().any(|l| l.contains(name));
    for (shared, marker) in [(true, "propin"), (false, "propout")] {
        let sub = vol.join(marker);
        std::fs::create_dir_all(&sub).unwrap();
        let mut b = Bundle::sh("prop", &format!("mount -t tmpfs strata-{marker} /vol/{marker} && echo mounted"));
        let opts = if shared { json!(["rbind", "rshared"]) } else { json!(["rbind", "rslave"]) };
        b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/vol", "type": "bind", "source": vol, "options": opts}));
        b.config["linux"]["rootfsPropagation"] = json!(if shared { "rshared" } else { "rslave" });
        for set in ["bounding", "effective", "permitted"] {
            b.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_SYS_ADMIN"));
        }
        let out = b.run_ok();
        assert!(out.contains("mounted"), "{out}");
        let reached = seen(&format!("strata-{marker}"));
        let _ = Command::new("umount").arg(&sub).status_within();
        assert_eq!(
            reached,
            shared,
            "shared {shared}: the container's mount {} the host",
            if reached { "reached" } else { "did not reach" }
        );
        b.assert_gone();
    }
}

/// A user-namespaced container's bind source may sit where only the
/// host's root can reach (below a 0700 directory of root's): the parent
/// opens it on the host, as runc does, and the container sees its files.
#[test]
fn userns_bind_sources_are_opened_on_the_host() {
    need_root!();
    let mut b = Bundle::sh("usernsbind", "cat /mnt/file; stat -c 'data=%a' /data");
    let secret = b.dir.parent().unwrap().join("secret");
    std::fs::create_dir_all(secret.join("sub")).unwrap();
    std::fs::write(secret.join("sub/file"), "reached\n").unwrap();
    std::fs::write(secret.join("top"), "").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&secret, std::fs::Permissions::from_mode(0o700)).unwrap();
    std::fs::set_permissions(secret.join("sub/file"), std::fs::Permissions::from_mode(0o644)).unwrap();
    b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
    b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 200000, "size": 65536}]);
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.retain(|m| m["type"] != "cgroup");
    mounts.push(json!({"destination": "/mnt", "type": "bind", "source": secret.join("sub"), "options": ["bind", "ro"]}));
    mounts.push(json!({"destination": "/data", "type": "bind", "source": secret, "options": ["rbind"]}));
    std::os::unix::fs::chown(b.dir.join("rootfs"), Some(200000), Some(200000)).unwrap();
    let out = b.run();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}{}", text, String::from_utf8_lossy(&out.stderr));
    // /data is bound (0700 and root's, so closed to the container's root).
    assert!(text.contains("reached") && text.contains("data=700"), "{text}");
    b.assert_gone();
}

/// A user-namespaced container gets a host mount's flags locked, as the
/// kernel locks the mounts it copies into a less privileged namespace:
/// `bind,nodev` of a read-only, nosuid source stays read-only and nosuid,
/// and an explicit `rw` fails create, naming the mount. Without a user
/// namespace the options are taken as given (`bind,nodev` is read-write).
#[test]
fn bind_remounts_keep_a_locked_sources_flags() {
    need_root!();
    let base = std::env::temp_dir().join(format!("strata-lock-{}", std::process::id()));
    let src = base.join("src");
    std::fs::create_dir_all(&src).unwrap();
    assert!(Command::new("mount").args(["-t", "tmpfs", "-o", "rw,nosuid", "strata-lock"]).arg(&src).status_within().success());
    let _unmount = crate::common::UnmountOnDrop(src.clone());
    assert!(Command::new("mount").args(["--bind", "-o", "remount,ro,nosuid"]).arg(&src).status_within().success());
    let run = |opts: serde_json::Value, userns: bool| {
        let mut b = Bundle::sh("lockbind", "grep ' /mnt ' /proc/self/mounts");
        b.config["mounts"].as_array_mut().unwrap().retain(|m| m["type"] != "cgroup");
        b.config["mounts"].as_array_mut().unwrap().push(json!({"destination": "/mnt", "type": "bind", "source": src, "options": opts}));
        if userns {
            b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
            b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
            b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 300000, "size": 65536}]);
            std::os::unix::fs::chown(b.dir.join("rootfs"), Some(300000), Some(300000)).unwrap();
        }
        let out = b.run();
        b.assert_gone();
        let opts = String::from_utf8_lossy(&out.stdout).split_whitespace().nth(3).unwrap_or("").to_string();
        (out, opts)
    };
    let has = |opts: &str, o: &str| opts.split(',').any(|x| x == o);
    let (out, opts) = run(json!(["bind", "nodev"]), true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(has(&opts, "ro") && has(&opts, "nosuid") && has(&opts, "nodev"), "userns: {opts}");
    let (out, _) = run(json!(["bind", "rw", "nodev"]), true);
    assert!(!out.status.success(), "userns: an explicit rw of a locked read-only source was accepted");
    assert!(String::from_utf8_lossy(&out.stderr).contains("/mnt"), "{}", String::from_utf8_lossy(&out.stderr));
    let (out, opts) = run(json!(["bind", "nodev"]), false);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(has(&opts, "rw") && has(&opts, "nodev"), "no userns: {opts}");
    // A locked atime mode: an option that only clears an atime flag
    // (`diratime`) names no mode, so the source's stays, as the kernel
    // keeps it for runc; one that names another mode is refused.
    assert!(Command::new("mount").args(["--bind", "-o", "remount,rw,nosuid,nodiratime"]).arg(&src).status_within().success());
    let (out, opts) = run(json!(["bind", "nosuid", "diratime"]), true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(has(&opts, "nodiratime") && has(&opts, "relatime") && has(&opts, "nosuid"), "userns, bind,nosuid,diratime: {opts}");
    let (out, _) = run(json!(["bind", "nosuid", "strictatime"]), true);
    assert!(!out.status.success(), "userns: another atime mode than the locked source's was accepted");
    // A plain relatime source (runc's mounts_sshfs.bats): its mode is read
    // from the kernel's ST_RELATIME bit, which musl's statvfs table lacks.
    assert!(Command::new("mount").args(["--bind", "-o", "remount,rw,nosuid,diratime,relatime"]).arg(&src).status_within().success());
    let (out, _) = run(json!(["bind", "nosuid", "strictatime"]), true);
    assert!(!out.status.success(), "userns: strictatime over a locked relatime source was accepted");
    let (out, opts) = run(json!(["bind", "nosuid"]), true);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert!(has(&opts, "relatime"), "userns, bind,nosuid of a relatime source: {opts}");
}

/// A detached container's stdin is the host's /dev/null (conmon and
/// containerd's shim give it so): init swaps it for the container's own
/// /dev/null, as runc does, so that no fd of the host's /dev stays open
/// inside (and CRIU can dump the process).
#[test]
fn a_host_dev_null_on_stdio_becomes_the_containers_own() {
    need_root!();
    let b = Bundle::sh("devnull", "stat -L -c '%d %i' /proc/self/fd/0 /dev/null");
    let out = b.run_ok();
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 2, "{out}");
    assert_eq!(lines[0], lines[1], "stdin is not the container's /dev/null");
    let host = std::fs::metadata("/dev/null").unwrap();
    use std::os::unix::fs::MetadataExt;
    assert_ne!(lines[0], format!("{} {}", host.dev(), host.ino()), "stdin is still the host's /dev/null");
}

/// A container that joins another's user namespace by path and has a pid
/// namespace of its own: the pid namespace is made after the join (owned by
/// that user namespace, as runc's nsexec makes it), so the container's init
/// is its pid 1 and may mount its procfs; its exit status reaches `run`.
#[test]
fn a_joined_user_namespace_owns_a_new_pid_namespace() {
    need_root!();
    let userns = |mut b: Bundle| {
        b.config["linux"]["namespaces"].as_array_mut().unwrap().push(json!({"type": "user"}));
        b.config["linux"]["uidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        b.config["linux"]["gidMappings"] = json!([{"containerID": 0, "hostID": 100000, "size": 65536}]);
        let st = Command::new("chown").args(["-R", "100000:100000"]).arg(b.dir.join("rootfs")).status_within();
        assert!(st.success());
        b
    };
    let target = userns(Bundle::sh("usertarget", "sleep 1000"));
    target.write_config();
    let out = target.detached(&["run".as_ref(), "-d".as_ref(), "--bundle".as_ref(), target.dir.as_os_str(), target.id.as_ref()]);
    assert!(out.status.success(), "run -d: {}", crate::common::stderr(&out));
    let pid = target.state()["pid"].as_i64().unwrap();
    let mut b = userns(Bundle::sh("userjoin", "echo $$; cat /proc/self/uid_map; readlink /proc/self/ns/user; stat -c %u /idm/f; exit 3"));
    // An idmapped mount without maps of its own takes the joined namespace's:
    // a file of the host's root is root's inside.
    let host = b.dir.parent().unwrap().join("idm");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "x").unwrap();
    b.config["mounts"].as_array_mut().unwrap().push(json!({"source": host, "destination": "/idm", "options": ["bind", "idmap"]}));
    for n in b.config["linux"]["namespaces"].as_array_mut().unwrap() {
        if n["type"] == "user" {
            n["path"] = json!(format!("/proc/{pid}/ns/user"));
        }
    }
    b.config["linux"].as_object_mut().unwrap().remove("uidMappings");
    b.config["linux"].as_object_mut().unwrap().remove("gidMappings");
    let out = b.run();
    assert_eq!(out.status.code(), Some(3), "{}", crate::common::stderr(&out));
    let text = crate::common::stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines[0], "1", "init is not pid 1 of its namespace: {text}");
    assert_eq!(lines[1].split_whitespace().collect::<Vec<_>>(), ["0", "100000", "65536"]);
    let theirs = std::fs::read_link(format!("/proc/{pid}/ns/user")).unwrap();
    assert_eq!(lines[2], theirs.to_string_lossy(), "not the joined user namespace");
    assert_eq!(lines[3], "0", "the idmapped mount does not map through the joined user namespace");
    b.assert_gone();
}

/// An idmapped mount whose source is in the container's own tree, made by
/// the config's earlier mounts (runc's "mount order, container idmap
/// source"): it is made from the container's mount namespace when its turn
/// comes, so it shows what the earlier bind put there, idmapped. A source
/// that is a symlink out of the rootfs is resolved inside it, never to the
/// host's file.
#[test]
fn an_idmapped_mount_of_the_containers_own_tree() {
    need_root!();
    let mut b = Bundle::sh("idmapown", "stat -c %u /mnt/f /final/f");
    let host = b.dir.parent().unwrap().join("src");
    std::fs::create_dir_all(&host).unwrap();
    std::fs::write(host.join("f"), "x").unwrap();
    std::fs::create_dir_all(b.dir.join("rootfs/final")).unwrap();
    let rootfs = b.dir.join("rootfs");
    let idmapped = |source: &std::path::Path| {
        json!({"source": source, "destination": "/final", "options": ["rbind", "idmap"],
               "uidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}],
               "gidMappings": [{"containerID": 0, "hostID": 1000, "size": 1}]})
    };
    let mounts = b.config["mounts"].as_array_mut().unwrap();
    mounts.push(json!({"source": host, "destination": "/mnt", "options": ["rbind"]}));
    mounts.push(idmapped(&rootfs.join("mnt")));
    let out = b.run_ok();
    // Root's file, through the mount's maps (0 -> 1000), is 1000's.
    assert_eq!(out.lines().collect::<Vec<_>>(), ["0", "1000"], "the idmapped clone of /mnt is not the earlier bind, idmapped");

    // A symlink in the rootfs pointing at a host directory (one with a
    // marker, that the rootfs has no copy of): resolved in the rootfs, so
    // the host's directory is never what gets mounted.
    let secret = b.dir.parent().unwrap().join("host-secret");
    std::fs::create_dir_all(&secret).unwrap();
    std::fs::write(secret.join("marker"), "host").unwrap();
    std::os::unix::fs::symlink(&secret, rootfs.join("escape")).unwrap();
    let last = b.config["mounts"].as_array().unwrap().len() - 1;
    b.config["mounts"][last] = idmapped(&rootfs.join("escape"));
    b.config["process"]["args"] = json!(["sh", "-c", "ls /final"]);
    let out = b.run();
    assert!(!crate::common::stdout(&out).contains("marker"), "an idmapped mount through a symlink reached the host's directory");
    assert!(!out.status.success(), "a source resolved in the rootfs does not exist there: {}", crate::common::stdout(&out));
    assert!(crate::common::stderr(&out).to_lowercase().contains("no such file"), "{}", crate::common::stderr(&out));
    b.assert_gone();
}
