//! Resource limits seen from inside and outside a real container, and the
//! operations on a running container's cgroup.

use crate::common::Bounded;
use serde_json::json;

use crate::common::{Bundle, stderr, stdout};
use crate::need_root;

/// awk that holds about `mb` MiB of memory, then prints and sleeps.
fn hog(mb: u32, then: &str) -> String {
    format!(
        "awk 'BEGIN {{ s = sprintf(\"%1048576s\", \"x\"); for (i = 0; i < {mb}; i++) a[i] = s \"\" i; print \"held\"; fflush(); {then} }}'"
    )
}

#[test]
fn memory_hog_is_oom_killed_at_the_limit() {
    need_root!();
    let mut b = Bundle::sh("oom", &format!("{}; echo rc=$?", hog(200, "")));
    b.config["linux"]["resources"]["memory"] = json!({"limit": 32 << 20, "swap": 32 << 20});
    let out = b.run_ok();
    assert!(out.contains("rc=137"), "{out}");
    assert!(!out.contains("held"), "{out}");
    b.assert_gone();
}

#[test]
fn fork_bomb_stops_at_the_pids_limit() {
    need_root!();
    let mut b = Bundle::sh(
        "pids",
        "(for i in $(seq 30); do sleep 2 & done) 2>/dev/null; read c < /sys/fs/cgroup/pids/pids.current 2>/dev/null || read c < /sys/fs/cgroup/pids.current; echo $c",
    );
    b.config["linux"]["resources"]["pids"] = json!({"limit": 8});
    let out = b.run_ok();
    let current: u32 = out.lines().last().unwrap().trim().parse().unwrap();
    assert!(current <= 8, "pids.current {current} above the limit: {out}");
    b.assert_gone();
}

#[test]
fn cpu_quota_is_written() {
    need_root!();
    let mut b = Bundle::sh(
        "cpu",
        "cat /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us 2>/dev/null || cat /sys/fs/cgroup/cpu.max",
    );
    b.config["linux"]["resources"]["cpu"] = json!({"quota": 20000, "period": 100000, "shares": 512});
    let out = b.run_ok();
    assert!(out == "20000\n100000\n" || out == "20000 100000\n", "{out}");
}

#[test]
fn denied_device_cannot_be_opened() {
    need_root!();
    // With CAP_MKNOD, only the device cgroup stands between the process and
    // a device: 1:11 (kmsg) is allowed, 1:1 (mem) is not. As in runc, any
    // node may be made (`c *:* m`), but only allowed ones opened.
    let mut b = Bundle::sh(
        "devdeny",
        "mknod /tmp/kmsg c 1 11 && echo kmsg-made; mknod /tmp/mem c 1 1 && echo mem-made; head -c 1 /tmp/mem > /dev/null 2>&1 && echo mem-read; \
         head -c 1 /dev/zero > /dev/null && echo zero-ok; echo end",
    );
    for set in ["bounding", "effective", "permitted"] {
        b.config["process"]["capabilities"][set].as_array_mut().unwrap().push(json!("CAP_MKNOD"));
    }
    b.config["linux"]["resources"]["devices"] = json!([
        {"allow": false, "access": "rwm"},
        {"allow": true, "type": "c", "major": 1, "minor": 11, "access": "rwm"}
    ]);
    let out = b.run_ok();
    assert!(out.contains("kmsg-made"), "{out}");
    assert!(out.contains("zero-ok"), "{out}");
    assert!(out.contains("mem-made"), "runc's rules let any node be made: {out}");
    assert!(!out.contains("mem-read"), "a denied device was read: {out}");
}

#[test]
fn update_changes_a_live_limit_and_events_report_memory() {
    need_root!();
    // Ended by delete --force, not by time (the emulated VM is slow).
    let mut b = Bundle::sh("update", &hog(0, "system(\"sleep 600\")"));
    b.config["linux"]["resources"]["memory"] = json!({"limit": 256 << 20});
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let stats = |b: &Bundle| -> serde_json::Value {
        let out = b.cmd(&["events", "--stats", &b.id]);
        assert!(out.status.success(), "{}", stderr(&out));
        serde_json::from_str(stdout(&out).trim()).unwrap()
    };
    let before = stats(&b);
    assert_eq!(before["type"], "stats");
    assert_eq!(before["data"]["memory"]["usage"]["limit"], 256u64 << 20);
    let out = b.cmd(&["update", "--memory", "128m", "--pids-limit", "30", &b.id]);
    assert!(out.status.success(), "{}", stderr(&out));
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max 2>/dev/null || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max";
    let inside = stdout(&b.cmd(&["exec", &b.id, "sh", "-c", script]));
    assert_eq!(inside, format!("{}\n30\n", 128u64 << 20));
    assert_eq!(stats(&b)["data"]["memory"]["usage"]["limit"], 128u64 << 20);
    // Allocate 64 MiB in the container: usage grows by about that much.
    let used0 = stats(&b)["data"]["memory"]["usage"]["usage"].as_u64().unwrap();
    let out = b.detached(&[
        "exec".as_ref(),
        "-d".as_ref(),
        b.id.as_ref(),
        "sh".as_ref(),
        "-c".as_ref(),
        hog(64, "system(\"sleep 600\")").as_ref(),
    ]);
    assert!(out.status.success());
    let mut grew = 0;
    for _ in 0..100 {
        grew = stats(&b)["data"]["memory"]["usage"]["usage"].as_u64().unwrap().saturating_sub(used0);
        if grew > 60 << 20 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    assert!(grew > 60 << 20, "memory usage grew by only {grew}");
    let bad = b.cmd(&["update", "--memory", "lots", &b.id]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("invalid value for memory"), "{}", stderr(&bad));
    // -1 is "unlimited", as with runc, and runc 1.5's flag names work.
    let out = b.cmd(&["update", "--memory", "-1", "--cpu-share", "512", "--pids-limit", "-1", &b.id]);
    assert!(out.status.success(), "update -1: {}", stderr(&out));
    let script = "cat /sys/fs/cgroup/memory/memory.limit_in_bytes /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/cpu/cpu.shares 2>/dev/null \
                  || cat /sys/fs/cgroup/memory.max /sys/fs/cgroup/pids.max /sys/fs/cgroup/cpu.weight";
    let inside = stdout(&b.cmd(&["exec", &b.id, "sh", "-c", script]));
    let lines: Vec<&str> = inside.lines().collect();
    assert!(lines.len() == 3 && (lines[0] == "max" || lines[0].parse::<u64>().unwrap() > 1 << 60), "memory: {inside}");
    assert_eq!(lines[1], "max", "pids: {inside}");
    // v1 shows the shares; v2 a weight converted from them.
    assert!(lines[2] == "512" || (lines[0] == "max" && lines[2].parse::<u64>().is_ok()), "cpu: {inside}");
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn kill_all_reaches_every_process() {
    need_root!();
    let b = Bundle::sh("killall", "trap '' TERM; sleep 30 & sleep 30 & wait");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    std::thread::sleep(std::time::Duration::from_millis(200));
    let pids: Vec<i32> = serde_json::from_str(&stdout(&b.cmd(&["ps", "--format", "json", &b.id]))).unwrap();
    assert_eq!(pids.len(), 3, "{pids:?}");
    assert!(b.cmd(&["kill", "--all", &b.id, "KILL"]).status.success());
    b.wait_status("stopped");
    for p in pids {
        assert!(!crate::common::alive(p), "{p} survived kill --all");
    }
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

/// A v1 host with an empty cgroup2 beside its controllers (this machine).
fn hybrid_host() -> bool {
    let mi = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let has = |fs: &str| mi.lines().any(|l| l.split(" - ").nth(1).is_some_and(|t| t.starts_with(&format!("{fs} "))));
    has("cgroup") && has("cgroup2")
}

#[test]
fn hybrid_host_joins_the_empty_cgroup2_too() {
    need_root!();
    if !hybrid_host() {
        eprintln!("skipped: not a cgroup v1 hybrid host");
        return;
    }
    // Inside: its own cgroup on every hierarchy (a cgroup namespace), and
    // the cgroup2 mounted beside the v1 ones.
    let b =
        Bundle::sh("hybrid-in", "cat /proc/self/cgroup; echo --; grep ' /sys/fs/cgroup/unified ' /proc/self/mountinfo").with_cgroup_ns();
    let out = b.run_ok();
    let (cg, mounts) = out.split_once("--\n").unwrap();
    assert!(cg.lines().any(|l| l == "0::/"), "{out}");
    assert!(cg.lines().all(|l| l.ends_with(":/")), "{out}");
    assert!(mounts.contains(" - cgroup2 "), "no cgroup2 at /sys/fs/cgroup/unified: {out}");
    b.assert_gone();

    // Outside: init was cloned into the cgroup2 cgroup and moved itself into
    // the v1 ones; an exec'd process joins the same.
    let b = Bundle::sh("hybrid", "sleep 30").with_cgroup_ns();
    assert!(b.create().status.success());
    let pid = b.state()["pid"].as_i64().unwrap();
    let host_view = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    let want = format!("/{}", b.id);
    assert!(host_view.lines().all(|l| l.ends_with(&want)), "{host_view}");
    assert!(host_view.lines().any(|l| l.starts_with("0::")), "{host_view}");
    let unified = crate::common::cgroup_dirs(&b.id).into_iter().find(|d| d.starts_with("/sys/fs/cgroup/unified")).unwrap();
    let procs = std::fs::read_to_string(unified.join("cgroup.procs")).unwrap();
    assert_eq!(procs.trim(), pid.to_string());
    let ex = b.cmd(&["exec", &b.id, "cat", "/proc/self/cgroup"]);
    assert!(ex.status.success(), "{}", stderr(&ex));
    assert!(stdout(&ex).lines().all(|l| l.ends_with(":/")), "exec'd process outside the container's cgroups: {}", stdout(&ex));
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn cpu_idle_and_burst_are_written() {
    need_root!();
    let mut b = Bundle::sh(
        "cpuidle",
        "cd /sys/fs/cgroup; if [ -f cpu.max ]; then cat cpu.idle cpu.max.burst; else cat cpu/cpu.idle cpu/cpu.cfs_burst_us; fi",
    );
    b.config["linux"]["resources"]["cpu"] = json!({"quota": 50000, "period": 100000, "burst": 20000, "idle": 1});
    assert_eq!(b.run_ok(), "1\n20000\n");
    b.assert_gone();
}

#[test]
fn an_rdma_limit_that_cannot_be_applied_fails_create_cleanly() {
    need_root!();
    // No RDMA device here (and on v1 hosts no rdma controller): the limit
    // cannot be applied, so create fails, names it, and leaves nothing.
    let mut b = Bundle::sh("rdma", "true");
    b.config["linux"]["resources"]["rdma"] = json!({"strata_no_such_hca": {"hcaHandles": 2, "hcaObjects": 100}});
    let out = b.create();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rdma"), "{}", stderr(&out));
    b.assert_gone();
}

/// Whether systemd runs this host (as `sd_booted` tells).
fn systemd_running() -> bool {
    std::path::Path::new("/run/systemd/system").exists()
}

/// Skips a test of the systemd driver where systemd is not PID 1 (this
/// host); hack/test-v2 runs them in a VM booted with systemd.
macro_rules! need_systemd {
    () => {
        need_root!();
        if !systemd_running() {
            // In the systemd VM a skip would hide a broken boot.
            assert!(std::env::var_os("STRATA_EXPECT_SYSTEMD").is_none(), "STRATA_EXPECT_SYSTEMD is set but systemd is not running");
            eprintln!("skipped: systemd is not running here (hack/test-v2 runs this under systemd)");
            return;
        }
    };
}

fn systemctl_show(unit: &str, mem_prop: &str) -> String {
    let out = std::process::Command::new("systemctl")
        .args(["show", unit, "-p", &format!("LoadState,ActiveState,{mem_prop},TasksMax,ControlGroup,DevicePolicy")])
        .output_within();
    stdout(&out)
}

#[test]
fn systemd_cgroup_without_systemd_fails_cleanly() {
    need_root!();
    if systemd_running() {
        eprintln!("skipped: systemd runs here (systemd_scope_holds_the_container covers it)");
        return;
    }
    let b = Bundle::sh("nosystemd", "true");
    b.write_config();
    let out = b.strata().args(["--systemd-cgroup", "run", "--bundle"]).arg(&b.dir).arg(&b.id).output_within();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("systemd is not running") && err.contains(&b.id), "{err}");
    b.assert_gone();
}

/// With `--systemd-cgroup` the container's cgroup is a transient scope
/// that systemd knows: its limits show in the cgroup and in the unit, exec
/// joins it, update changes both, and delete stops the unit. Runs where
/// systemd is pid 1: hack/test-v2 boots such a VM on cgroup v2 and on a
/// hybrid layout.
#[test]
fn systemd_scope_holds_the_container() {
    need_systemd!();
    let mut b = Bundle::sh("sdscope", "sleep 60").with_cgroup_ns();
    let unit = format!("strata-it-{}.scope", b.id);
    b.config["linux"]["cgroupsPath"] = json!(format!("system.slice:strata-it:{}", b.id));
    b.config["linux"]["resources"] = json!({
        "memory": {"limit": 64 << 20}, "pids": {"limit": 40}, "cpu": {"quota": 50000, "period": 100000},
        "devices": [{"allow": false, "access": "rwm"}]
    });
    b.write_config();
    let sd = |args: &[&str]| {
        let mut a: Vec<&std::ffi::OsStr> = vec!["--systemd-cgroup".as_ref()];
        a.extend(args.iter().map(|s| std::ffi::OsStr::new(*s)));
        b.detached(&a)
    };
    let dir = b.dir.to_str().unwrap().to_string();
    let out = sd(&["create", "--bundle", &dir, &b.id]);
    assert!(out.status.success(), "create: {}", stderr(&out));
    let pid = b.state()["pid"].as_i64().unwrap();
    // Init is in the scope in every hierarchy (v2, or each v1 one plus
    // systemd's cgroup2 on a hybrid host).
    let cg = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).unwrap();
    assert!(cg.lines().all(|l| l.ends_with(&format!(":/system.slice/{unit}"))), "{cg}");
    // The limits, in the files of this host's layout, and in the unit.
    let v1 = std::path::Path::new("/sys/fs/cgroup/memory").is_dir();
    let file = |ctrl: &str, f: &str| {
        let hier = if v1 { format!("/sys/fs/cgroup/{ctrl}") } else { "/sys/fs/cgroup".into() };
        std::path::PathBuf::from(format!("{hier}/system.slice/{unit}/{f}"))
    };
    let read = |ctrl: &str, f: &str| std::fs::read_to_string(file(ctrl, f)).unwrap().trim().to_string();
    let (mem, mem_prop) = if v1 { ("memory.limit_in_bytes", "MemoryLimit") } else { ("memory.max", "MemoryMax") };
    assert_eq!(read("memory", mem), (64 << 20).to_string());
    assert_eq!(read("pids", "pids.max"), "40");
    if v1 {
        assert_eq!(read("cpu", "cpu.cfs_quota_us"), "50000");
    } else {
        assert_eq!(read("cpu", "cpu.max"), "50000 100000");
    }
    let show = systemctl_show(&unit, mem_prop);
    // The spec's device rules (deny all, then allow the defaults): on v1
    // systemd gets them as its own allow list, on v2 strata's eBPF program
    // alone applies them.
    let policy = if v1 { "DevicePolicy=strict" } else { "DevicePolicy=auto" };
    for want in
        ["ActiveState=active", &format!("{mem_prop}=67108864"), "TasksMax=40", &format!("ControlGroup=/system.slice/{unit}"), policy]
    {
        assert!(show.lines().any(|l| l == want), "{want} not in: {show}");
    }
    assert!(b.start().status.success());
    // An exec'd process joins the scope: in the container's cgroup
    // namespace its cgroup is the namespace's root, in every hierarchy.
    let out = b.cmd(&["exec", &b.id, "cat", "/proc/self/cgroup"]);
    let inside = stdout(&out);
    assert!(!inside.is_empty() && inside.lines().all(|l| l.ends_with(":/")), "{inside}{}", stderr(&out));
    let out = b.cmd(&["--systemd-cgroup", "update", "--pids-limit", "50", "--memory", "134217728", &b.id]);
    assert!(out.status.success(), "update: {}", stderr(&out));
    assert_eq!(read("pids", "pids.max"), "50");
    assert_eq!(read("memory", mem), (128 << 20).to_string());
    let show = systemctl_show(&unit, mem_prop);
    assert!(show.lines().any(|l| l == "TasksMax=50") && show.lines().any(|l| l == format!("{mem_prop}=134217728")), "{show}");
    let out = b.cmd(&["--systemd-cgroup", "delete", "--force", &b.id]);
    assert!(out.status.success(), "delete: {}", stderr(&out));
    let show = systemctl_show(&unit, mem_prop);
    assert!(show.lines().any(|l| l == "ActiveState=inactive"), "{show}");
    // Gone from every hierarchy: those systemd made and those strata made.
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let d = h.path().join("system.slice").join(&unit);
        assert!(!d.exists(), "{} left behind", d.display());
    }
    assert!(!file("memory", "").exists(), "scope cgroup left behind");
    b.assert_gone();
}

#[test]
fn systemd_scope_that_cannot_start_fails_create_cleanly() {
    need_systemd!();
    // A unit name systemd refuses ('+' is not allowed in unit names).
    let mut b = Bundle::sh("sdbad", "true");
    b.config["linux"]["cgroupsPath"] = json!("system.slice:strata:bad+name");
    b.write_config();
    let out = b.strata().args(["--systemd-cgroup", "run", "--bundle"]).arg(&b.dir).arg(&b.id).output_within();
    assert!(!out.status.success());
    let err = stderr(&out);
    assert!(err.contains("strata-bad+name.scope") && err.contains("StartTransientUnit"), "{err}");
    b.assert_gone();
}

#[test]
fn systemd_create_that_fails_after_the_scope_started_leaves_nothing() {
    need_systemd!();
    // The scope starts, then a limit cannot be applied (no such RDMA
    // device): create fails, names the limit, and the scope is gone.
    let mut b = Bundle::sh("sdundo", "true");
    let unit = format!("strata-it-{}.scope", b.id);
    b.config["linux"]["cgroupsPath"] = json!(format!("system.slice:strata-it:{}", b.id));
    b.config["linux"]["resources"]["rdma"] = json!({"strata_no_such_hca": {"hcaHandles": 2}});
    b.write_config();
    let out = b.strata().args(["--systemd-cgroup", "run", "--bundle"]).arg(&b.dir).arg(&b.id).output_within();
    assert!(!out.status.success());
    assert!(stderr(&out).contains("rdma"), "{}", stderr(&out));
    let show = systemctl_show(&unit, "MemoryMax");
    assert!(show.lines().any(|l| l == "ActiveState=inactive"), "{show}");
    let mut dirs = vec![std::path::PathBuf::from(format!("/sys/fs/cgroup/system.slice/{unit}"))];
    dirs.extend(std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten().map(|h| h.path().join("system.slice").join(&unit)));
    for d in dirs {
        assert!(!d.exists(), "{} left behind", d.display());
    }
    b.assert_gone();
}

fn memsw_host() -> bool {
    std::path::Path::new("/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes").exists()
}

#[test]
fn v1_memory_with_swap_is_raised_and_lowered() {
    need_root!();
    if !memsw_host() {
        eprintln!("skipped: no cgroup v1 memory.memsw (swap accounting) here");
        return;
    }
    // The kernel wants limit <= memsw at every moment: raising writes memsw
    // first, lowering the limit first.
    let mut b = Bundle::sh("memsw", "sleep 60");
    b.config["linux"]["resources"]["memory"] = json!({"limit": 32 << 20, "swap": 64 << 20});
    assert!(b.create().status.success(), "{}", stderr(&b.create()));
    assert!(b.start().status.success());
    let read = || {
        let out = b.cmd(&[
            "exec",
            &b.id,
            "cat",
            "/sys/fs/cgroup/memory/memory.limit_in_bytes",
            "/sys/fs/cgroup/memory/memory.memsw.limit_in_bytes",
        ]);
        stdout(&out).split_whitespace().map(|v| v.parse::<u64>().unwrap() >> 20).collect::<Vec<_>>()
    };
    assert_eq!(read(), [32, 64]);
    let up = b.cmd(&["update", "--memory", "96M", "--memory-swap", "192M", &b.id]);
    assert!(up.status.success(), "raise: {}", stderr(&up));
    assert_eq!(read(), [96, 192]);
    let down = b.cmd(&["update", "--memory", "16M", "--memory-swap", "24M", &b.id]);
    assert!(down.status.success(), "lower: {}", stderr(&down));
    assert_eq!(read(), [16, 24]);
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

/// The spec's usual device rules: deny all, then the defaults.
fn device_rules() -> serde_json::Value {
    json!([{"allow": false, "access": "rwm"}, {"allow": true, "type": "c", "major": 1, "minor": 3, "access": "rwm"}])
}

#[test]
fn device_rules_change_without_a_deny_window() {
    need_root!();
    if !std::path::Path::new("/sys/fs/cgroup/devices/devices.list").exists() {
        eprintln!("skipped: no cgroup v1 devices controller here");
        return;
    }
    // A live container opens /dev/null in a tight loop while its device
    // rules are rewritten again and again: no open may fail.
    let mut b = Bundle::sh(
        "devwindow",
        "n=0; f=0; while [ -e /tmp/go ] || [ $n -eq 0 ]; do n=$((n+1)); : > /dev/null || f=$((f+1)); [ $n -gt 5000000 ] && break; done; echo $f > /tmp/failures",
    );
    std::fs::write(b.dir.join("rootfs/tmp/go"), "").unwrap();
    b.config["linux"]["resources"]["devices"] = device_rules();
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    let res = b.dir.parent().unwrap().join("res.json");
    for i in 0..40 {
        // Alternate between two rule sets that both allow /dev/null.
        let mut rules = device_rules();
        if i % 2 == 0 {
            rules.as_array_mut().unwrap().push(json!({"allow": true, "type": "c", "major": 1, "minor": 5, "access": "rwm"}));
        }
        std::fs::write(&res, serde_json::to_vec(&json!({"devices": rules})).unwrap()).unwrap();
        let out = b.cmd(&["update", "--resources", res.to_str().unwrap(), &b.id]);
        assert!(out.status.success(), "{}", stderr(&out));
    }
    std::fs::remove_file(b.dir.join("rootfs/tmp/go")).unwrap();
    b.wait_status("stopped");
    let failures = std::fs::read_to_string(b.dir.join("rootfs/tmp/failures")).unwrap();
    assert_eq!(failures.trim(), "0", "/dev/null could not be opened while the rules changed");
    assert!(b.cmd(&["delete", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn exec_cgroup_joins_a_sub_cgroup() {
    need_root!();
    let b = Bundle::sh("execcg", "sleep 60");
    assert!(b.create().status.success());
    assert!(b.start().status.success());
    for d in crate::common::cgroup_dirs(&b.id) {
        std::fs::create_dir(d.join("sub")).unwrap();
        // A v1 cpuset starts empty: give it its parent's, or nothing can join.
        for f in ["cpuset.cpus", "cpuset.mems"] {
            if d.join("sub").join(f).exists() {
                std::fs::write(d.join("sub").join(f), std::fs::read_to_string(d.join(f)).unwrap().trim()).unwrap();
            }
        }
    }
    let lines = |args: &[&str]| {
        let mut v = vec!["exec"];
        v.extend_from_slice(args);
        v.extend_from_slice(&[&b.id, "cat", "/proc/self/cgroup"]);
        let out = b.cmd(&v);
        assert!(out.status.success(), "{}", stderr(&out));
        stdout(&out).lines().map(str::to_string).collect::<Vec<_>>()
    };
    let all = lines(&["--cgroup", "sub"]);
    assert!(!all.is_empty() && all.iter().all(|l| l.ends_with("/sub")), "{all:?}");
    if std::path::Path::new("/sys/fs/cgroup/pids/tasks").exists() {
        // cgroup v1: one controller only.
        let pids = lines(&["--cgroup", "pids:sub"]);
        assert!(pids.iter().any(|l| l.contains(":pids:") && l.ends_with("/sub")), "{pids:?}");
        assert!(pids.iter().any(|l| l.contains(":memory:") && !l.ends_with("/sub")), "{pids:?}");
    }
    let bad = b.cmd(&["exec", "--cgroup", "nope", &b.id, "true"]);
    assert!(!bad.status.success());
    assert!(stderr(&bad).contains("nope"), "{}", stderr(&bad));
    let escape = b.cmd(&["exec", "--cgroup", "../..", &b.id, "true"]);
    assert!(!escape.status.success() && stderr(&escape).contains("bad sub cgroup path"), "{}", stderr(&escape));
    let unknown = b.cmd(&["exec", "--cgroup", "whaaat:/", &b.id, "true"]);
    assert!(!unknown.status.success() && stderr(&unknown).contains("unknown controller whaaat"), "{}", stderr(&unknown));
    // `/` is the container's own cgroup, as with runc.
    let own = lines(&["--cgroup", "/"]);
    assert!(!own.is_empty() && own.iter().all(|l| !l.ends_with("/sub")), "{own:?}");
    // delete removes the sub-cgroups with the container's own.
    assert!(b.cmd(&["delete", "--force", &b.id]).status.success());
    b.assert_gone();
}

#[test]
fn kernel_tcp_memory_limit_is_seen_inside_on_v1() {
    need_root!();
    if !std::path::Path::new("/sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes").exists() {
        eprintln!("skipped: no v1 memory.kmem.tcp.limit_in_bytes here");
        return;
    }
    let mut b = Bundle::sh("kmemtcp", "cat /sys/fs/cgroup/memory/memory.kmem.tcp.limit_in_bytes");
    b.config["linux"]["resources"]["memory"] = json!({"kernelTCP": 8388608});
    assert_eq!(b.run_ok(), "8388608\n");
}

/// As runc: a `cgroupsPath` that already holds a process (another
/// container's) or that is frozen is refused at create, in runc's words,
/// and nothing is left; `pids.limit: 0` is one task (the init).
#[test]
fn a_used_or_frozen_cgroup_is_refused() {
    need_root!();
    let path = format!("strata-it-shared-{}", std::process::id());
    let mut first = Bundle::sh("cgfirst", "sleep 30");
    first.config["linux"]["cgroupsPath"] = json!(format!("/{path}"));
    first.config["linux"]["resources"]["pids"] = json!({"limit": 0});
    let out = first.create();
    assert!(out.status.success(), "{}", stderr(&out));
    let pids_max = ["/sys/fs/cgroup/pids", "/sys/fs/cgroup"]
        .iter()
        .map(|m| std::path::Path::new(m).join(&path).join("pids.max"))
        .find(|p| p.exists())
        .expect("pids.max");
    assert_eq!(std::fs::read_to_string(&pids_max).unwrap().trim(), "1", "pids.limit 0");
    let mut second = Bundle::sh("cgsecond", "true");
    second.config["linux"]["cgroupsPath"] = json!(format!("/{path}"));
    let out = second.create();
    assert!(!out.status.success() && stderr(&out).contains("container's cgroup is not empty"), "{}", stderr(&out));
    second.assert_gone();
    assert!(first.cmd(&["delete", "--force", &first.id]).status.success());
    first.assert_gone();
    // A frozen one: the v1 freezer (or cgroup.freeze on v2) set beforehand.
    let (dir, file, value) = if std::path::Path::new("/sys/fs/cgroup/freezer").exists() {
        (std::path::Path::new("/sys/fs/cgroup/freezer").join(&path), "freezer.state", "FROZEN")
    } else {
        (std::path::Path::new("/sys/fs/cgroup").join(&path), "cgroup.freeze", "1")
    };
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join(file), value).unwrap();
    let mut frozen = Bundle::sh("cgfrozen", "true");
    frozen.config["linux"]["cgroupsPath"] = json!(format!("/{path}"));
    let out = frozen.create();
    let _ = std::fs::remove_dir(&dir);
    assert!(!out.status.success() && stderr(&out).contains("container's cgroup unexpectedly frozen"), "{}", stderr(&out));
    frozen.assert_gone();
}

/// As runc: a parent made beforehand with an empty cpuset (a pod's, say)
/// gets its parent's cpus and mems so the container can join; a leaf made
/// beforehand is the container's own and goes at delete, while the parent
/// stays.
#[test]
fn premade_cgroups_are_filled_and_the_leaf_removed() {
    need_root!();
    let cpuset = std::path::Path::new("/sys/fs/cgroup/cpuset");
    if !cpuset.join("cpuset.cpus").exists() {
        eprintln!("skipped: no cgroup v1 cpuset hierarchy here");
        return;
    }
    let pod = format!("strata-it-pod-{}", std::process::id());
    let parent = cpuset.join(&pod);
    std::fs::create_dir(&parent).unwrap();
    let leaf_mem = std::path::Path::new("/sys/fs/cgroup/memory").join(&pod).join("c");
    std::fs::create_dir_all(&leaf_mem).unwrap();
    let mut b = Bundle::sh("premade", "cat /proc/self/status | grep Cpus_allowed_list");
    b.config["linux"]["cgroupsPath"] = json!(format!("/{pod}/c"));
    let out = b.run();
    assert!(out.status.success(), "{}", stderr(&out));
    assert!(!std::fs::read_to_string(parent.join("cpuset.cpus")).unwrap().trim().is_empty(), "the empty parent was not filled");
    assert!(!leaf_mem.exists(), "the container's own (pre-made) cgroup was left at delete");
    for h in ["cpuset", "memory"] {
        let p = std::path::Path::new("/sys/fs/cgroup").join(h).join(&pod);
        assert!(p.exists(), "{} (made before) was removed", p.display());
        let _ = std::fs::remove_dir(p.join("c"));
        let _ = std::fs::remove_dir(&p);
    }
    // The other hierarchies' dirs were the container's making: gone.
    for d in crate::common::cgroup_dirs(&format!("{pod}/c")) {
        let _ = std::fs::remove_dir(&d);
    }
    for h in std::fs::read_dir("/sys/fs/cgroup").unwrap().flatten() {
        let _ = std::fs::remove_dir(h.path().join(&pod));
    }
}
