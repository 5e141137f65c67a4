//! Pure planning: which files of a container's cgroup get which values
//! (`resource_writes`), on v1 and v2. Where the cgroup is: `placement`.
//! Tested without root.

use std::path::PathBuf;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

use super::placement::Placement;
use super::{CgroupError, Result};

/// `pids.max` for `pids.limit`, as runc 1.5 writes it: a negative limit is
/// unlimited, and 0 (which the kernel would take as "no task at all",
/// the container's own init included) is 1.
pub fn pids_max(limit: i64) -> String {
    match limit {
        l if l < 0 => "max".into(),
        0 => "1".into(),
        l => l.to_string(),
    }
}

/// One file to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Write {
    pub path: PathBuf,
    pub value: String,
}

/// Fields for which zero (or an empty string) means "not set", as runc reads
/// them: Docker, for one, sends `"blockIO": {"weight": 0}` and
/// `"cpu": {"shares": 0}` for every container. One table for v1, v2 and the
/// systemd properties.
pub const UNSET_WHEN_ZERO: &[(&str, &str)] = &[
    ("memory", "limit"),
    ("memory", "reservation"),
    ("memory", "swap"),
    ("memory", "kernel"),
    ("memory", "kernelTCP"),
    ("cpu", "shares"),
    ("cpu", "quota"),
    ("cpu", "period"),
    ("cpu", "realtimeRuntime"),
    ("cpu", "realtimePeriod"),
    ("cpu", "cpus"),
    ("cpu", "mems"),
    ("blockIO", "weight"),
    ("blockIO", "leafWeight"),
];

/// `res` with every field of `UNSET_WHEN_ZERO` that is zero (or "") taken
/// out, and the per-device weights of zero too.
pub fn without_unset(res: &LinuxResources) -> LinuxResources {
    let Ok(mut v) = serde_json::to_value(res) else { return res.clone() };
    let zero = |x: &serde_json::Value| x.as_i64() == Some(0) || x.as_u64() == Some(0) || x.as_str() == Some("");
    let mut changed = false;
    for (group, field) in UNSET_WHEN_ZERO {
        if let Some(obj) = v.get_mut(*group).and_then(|g| g.as_object_mut())
            && obj.get(*field).is_some_and(zero)
        {
            obj.remove(*field);
            changed = true;
            // A group left empty is no group (`pids` would read as limit 0).
            if obj.is_empty()
                && let Some(all) = v.as_object_mut()
            {
                all.remove(*group);
            }
        }
    }
    if let Some(devs) = v.pointer_mut("/blockIO/weightDevice").and_then(|d| d.as_array_mut()) {
        for d in devs.iter_mut().filter_map(|d| d.as_object_mut()) {
            for f in ["weight", "leafWeight"] {
                if d.get(f).is_some_and(zero) {
                    d.remove(f);
                    changed = true;
                }
            }
        }
    }
    if !changed {
        return res.clone();
    }
    serde_json::from_value(v).unwrap_or_else(|_| res.clone())
}

/// The v1 controllers that `res` asks something of, each with the field
/// that asks (after zero-means-unset values were taken out).
fn requested_v1(res: &LinuxResources) -> Vec<(&'static str, &'static str)> {
    let mut out = Vec::new();
    if let Some(m) = res.memory() {
        let asks =
            m.limit().is_some() || m.reservation().is_some() || m.swap().is_some() || m.swappiness().is_some() || m.kernel_tcp().is_some();
        if asks || m.disable_oom_killer() == Some(true) {
            out.push(("memory", "memory"));
        }
    }
    if let Some(c) = res.cpu() {
        let cfs = [c.period().is_some(), c.quota().is_some(), c.burst().is_some(), c.idle().is_some()];
        let rt = [c.realtime_period().is_some(), c.realtime_runtime().is_some()];
        if c.shares().is_some() || cfs.into_iter().chain(rt).any(|x| x) {
            out.push(("cpu", "cpu"));
        }
        if c.cpus().is_some() || c.mems().is_some() {
            out.push(("cpuset", "cpu.cpus/mems"));
        }
    }
    if res.pids().is_some() {
        out.push(("pids", "pids"));
    }
    if res.hugepage_limits().as_ref().is_some_and(|l| !l.is_empty()) {
        out.push(("hugetlb", "hugepageLimits"));
    }
    if let Some(n) = res.network() {
        if n.class_id().is_some() {
            out.push(("net_cls", "network.classID"));
        }
        if n.priorities().as_ref().is_some_and(|p| !p.is_empty()) {
            out.push(("net_prio", "network.priorities"));
        }
    }
    if res.rdma().as_ref().is_some_and(|r| !r.is_empty()) {
        out.push(("rdma", "rdma"));
    }
    out
}

/// The files and values that set `res` on the placement's hierarchies.
/// `extra_allow` holds device rules (v1 syntax) always allowed after the
/// spec's own: the default devices and `linux.devices`, as runc does.
pub fn resource_writes(p: &Placement, res: Option<&LinuxResources>, extra_allow: &[String]) -> Result<Vec<Write>> {
    let mut out = Vec::new();
    // Without `linux.resources` the device rules still apply (runc's
    // defaults on deny-all).
    let none = LinuxResources::default();
    let res = &without_unset(res.unwrap_or(&none));
    if res.memory().as_ref().and_then(|m| m.kernel()).is_some() {
        // Linux ignores kernel memory limits since 5.16 (v1 accepts and drops
        // the write; v2 never had one): refused rather than pretended.
        return Err(CgroupError::Invalid(
            "linux.resources.memory.kernel: Linux no longer limits kernel memory (cgroup v1 ignores it since 5.16; v2 has no such limit)"
                .into(),
        ));
    }
    if p.v2 && res.memory().as_ref().and_then(|m| m.kernel_tcp()).is_some() {
        return Err(CgroupError::Invalid("linux.resources.memory.kernelTCP: cgroup v2 has no separate TCP memory limit".into()));
    }
    if !p.v2 {
        if res.unified().as_ref().is_some_and(|u| !u.is_empty()) {
            return Err(CgroupError::Invalid(
                "invalid configuration: linux.resources.unified needs cgroup v2; this host's limits are on cgroup v1".into(),
            ));
        }
        // A limit whose controller this host does not mount would be
        // silently dropped: refuse it, naming the field (as runc does).
        for (controller, field) in requested_v1(res) {
            if !p.hierarchies.iter().any(|h| !h.v2 && h.has(controller)) {
                return Err(CgroupError::Invalid(format!(
                    "linux.resources.{field}: no {controller} cgroup controller is mounted on this host"
                )));
            }
        }
    } else if res.network().as_ref().is_some_and(|n| n.class_id().is_some() || n.priorities().as_ref().is_some_and(|p| !p.is_empty())) {
        return Err(CgroupError::Invalid(
            "linux.resources.network: net_cls and net_prio are cgroup v1 controllers; cgroup v2 has neither".into(),
        ));
    }
    for (h, dir) in p.hierarchies.iter().zip(&p.dirs) {
        let mut w = |file: &str, v: String| out.push(Write { path: dir.join(file), value: v });
        if h.v2 {
            // On a hybrid host the cgroup2 has no controllers: nothing to write.
            if p.v2 {
                v2_writes(res, &mut w);
            }
            continue;
        }
        if h.has("memory")
            && let Some(m) = res.memory()
        {
            if let Some(l) = m.limit() {
                w("memory.limit_in_bytes", l.to_string());
            }
            if let Some(r) = m.reservation() {
                w("memory.soft_limit_in_bytes", r.to_string());
            }
            // An unlimited memory limit without a swap value lifts memsw
            // too, as runc does: the kernel refuses a limit above memsw.
            let swap = m.swap().or(m.limit().filter(|l| *l == -1));
            if let Some(s) = swap {
                w("memory.memsw.limit_in_bytes", s.to_string());
            }
            if let Some(s) = m.swappiness() {
                if s > 100 {
                    return Err(CgroupError::Invalid(format!("memory.swappiness {s} is above 100")));
                }
                w("memory.swappiness", s.to_string());
            }
            if m.disable_oom_killer() == Some(true) {
                w("memory.oom_control", "1".into());
            }
            if let Some(t) = m.kernel_tcp() {
                w("memory.kmem.tcp.limit_in_bytes", t.to_string());
            }
        }
        if h.has("cpu")
            && let Some(c) = res.cpu()
        {
            if let Some(s) = c.shares() {
                w("cpu.shares", s.to_string());
            }
            if let Some(pd) = c.period() {
                w("cpu.cfs_period_us", pd.to_string());
            }
            if let Some(q) = c.quota() {
                w("cpu.cfs_quota_us", q.to_string());
            }
            // After the quota: the kernel refuses a burst above it.
            if let Some(b) = c.burst() {
                w("cpu.cfs_burst_us", b.to_string());
            }
            if let Some(i) = c.idle() {
                w("cpu.idle", i.to_string());
            }
            if let Some(r) = c.realtime_period() {
                w("cpu.rt_period_us", r.to_string());
            }
            if let Some(r) = c.realtime_runtime() {
                w("cpu.rt_runtime_us", r.to_string());
            }
        }
        if h.has("cpuset")
            && let Some(c) = res.cpu()
        {
            if let Some(s) = c.cpus() {
                w("cpuset.cpus", s.clone());
            }
            if let Some(s) = c.mems() {
                w("cpuset.mems", s.clone());
            }
        }
        if h.has("pids")
            && let Some(pl) = res.pids()
        {
            w("pids.max", pids_max(pl.limit()));
        }
        if h.has("blkio") {
            blkio_v1(res, &mut w);
        }
        if h.has("hugetlb") {
            for l in res.hugepage_limits().iter().flatten() {
                w(&format!("hugetlb.{}.limit_in_bytes", l.page_size()), l.limit().to_string());
            }
        }
        if h.has("rdma") {
            rdma(res, &mut w);
        }
        if let Some(n) = res.network() {
            if h.has("net_cls")
                && let Some(id) = n.class_id()
            {
                w("net_cls.classid", id.to_string());
            }
            if h.has("net_prio") {
                for p in n.priorities().iter().flatten() {
                    w("net_prio.ifpriomap", format!("{} {}", p.name(), p.priority()));
                }
            }
        }
        if h.has("devices") && (res.devices().is_some() || !extra_allow.is_empty()) {
            // The spec's rules in order, then the always-allowed devices
            // (as runc: the default devices stay usable), on a cgroup that
            // denies what no rule allows (see `devices_v1::target`).
            for (file, rule) in device_rules_v1(res.devices().as_deref().unwrap_or(&[])) {
                w(file, rule);
            }
            for rule in extra_allow {
                w("devices.allow", rule.clone());
            }
        }
    }
    Ok(out)
}

fn blkio_v1(res: &LinuxResources, w: &mut dyn FnMut(&str, String)) {
    let Some(b) = res.block_io() else { return };
    if let Some(v) = b.weight() {
        w("blkio.weight", v.to_string());
    }
    if let Some(v) = b.leaf_weight() {
        w("blkio.leaf_weight", v.to_string());
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(v) = d.weight() {
            w("blkio.weight_device", format!("{}:{} {v}", d.major(), d.minor()));
        }
        if let Some(v) = d.leaf_weight() {
            w("blkio.leaf_weight_device", format!("{}:{} {v}", d.major(), d.minor()));
        }
    }
    let throttles = [
        ("blkio.throttle.read_bps_device", b.throttle_read_bps_device()),
        ("blkio.throttle.write_bps_device", b.throttle_write_bps_device()),
        ("blkio.throttle.read_iops_device", b.throttle_read_iops_device()),
        ("blkio.throttle.write_iops_device", b.throttle_write_iops_device()),
    ];
    for (file, list) in throttles {
        for t in list.iter().flatten() {
            w(file, format!("{}:{} {}", t.major(), t.minor(), t.rate()));
        }
    }
}

/// Whether memory.memsw.limit_in_bytes must be written before
/// memory.limit_in_bytes: when the new memsw is unlimited or above the
/// limit in force now (see `cgroups::update`).
pub fn memsw_first(current_limit: u64, new_memsw: i64) -> bool {
    new_memsw < 0 || new_memsw as u64 > current_limit
}

/// v1 blkio weight [10, 1000] to v2 io.weight [1, 10000], as runc converts.
pub fn blkio_weight_to_io(w: u16) -> u64 {
    if w == 0 { 0 } else { 1 + (u64::from(w).saturating_sub(10)) * 9999 / 990 }
}

fn io_v2(res: &LinuxResources, w: &mut dyn FnMut(&str, String)) {
    let Some(b) = res.block_io() else { return };
    if let Some(v) = b.weight() {
        w("io.weight", format!("default {}", blkio_weight_to_io(v)));
    }
    for d in b.weight_device().iter().flatten() {
        if let Some(v) = d.weight() {
            w("io.weight", format!("{}:{} {}", d.major(), d.minor(), blkio_weight_to_io(v)));
        }
    }
    let throttles = [
        ("rbps", b.throttle_read_bps_device()),
        ("wbps", b.throttle_write_bps_device()),
        ("riops", b.throttle_read_iops_device()),
        ("wiops", b.throttle_write_iops_device()),
    ];
    for (key, list) in throttles {
        for t in list.iter().flatten() {
            w("io.max", format!("{}:{} {key}={}", t.major(), t.minor(), t.rate()));
        }
    }
}

fn v2_writes(res: &LinuxResources, w: &mut dyn FnMut(&str, String)) {
    io_v2(res, w);
    for l in res.hugepage_limits().iter().flatten() {
        w(&format!("hugetlb.{}.max", l.page_size()), l.limit().to_string());
    }
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            w("memory.max", if l < 0 { "max".into() } else { l.to_string() });
            if let Some(s) = m.swap() {
                // v1's memsw counts memory+swap; v2's swap.max only swap.
                let v = if s < 0 { "max".into() } else { (s - l).max(0).to_string() };
                w("memory.swap.max", v);
            }
        }
        if let Some(r) = m.reservation() {
            w("memory.low", r.to_string());
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares() {
            w("cpu.weight", shares_to_weight(s).to_string());
        }
        if c.quota().is_some() || c.period().is_some() {
            let q = c.quota().filter(|q| *q > 0).map(|q| q.to_string()).unwrap_or_else(|| "max".into());
            w("cpu.max", format!("{q} {}", c.period().unwrap_or(100000)));
        }
        if let Some(b) = c.burst() {
            w("cpu.max.burst", b.to_string());
        }
        if let Some(i) = c.idle() {
            w("cpu.idle", i.to_string());
        }
        if let Some(s) = c.cpus() {
            w("cpuset.cpus", s.clone());
        }
        if let Some(s) = c.mems() {
            w("cpuset.mems", s.clone());
        }
    }
    if let Some(pl) = res.pids() {
        w("pids.max", pids_max(pl.limit()));
    }
    rdma(res, w);
    for (k, v) in res.unified().iter().flatten() {
        w(k, v.clone());
    }
}

/// `rdma.max` lines (the same on v1 and v2), one per device, in name order
/// so that the plan is stable: `mlx5_0 hca_handle=2 hca_object=2000`.
fn rdma(res: &LinuxResources, w: &mut dyn FnMut(&str, String)) {
    let Some(map) = res.rdma() else { return };
    let mut devs: Vec<_> = map.iter().collect();
    devs.sort_by(|a, b| a.0.cmp(b.0));
    for (dev, l) in devs {
        let mut line = dev.clone();
        if let Some(h) = l.hca_handles() {
            line.push_str(&format!(" hca_handle={h}"));
        }
        if let Some(o) = l.hca_objects() {
            line.push_str(&format!(" hca_object={o}"));
        }
        if line.len() > dev.len() {
            w("rdma.max", line);
        }
    }
}

/// runc's conversion of cgroup v1 cpu.shares [2, 262144] to v2 cpu.weight [1, 10000].
pub fn shares_to_weight(shares: u64) -> u64 {
    if shares == 0 {
        return 0;
    }
    1 + ((shares.clamp(2, 262144) - 2) * 9999) / 262142
}

/// v1 device rules: `devices.deny`/`devices.allow` lines in spec order.
pub fn device_rules_v1(devs: &[LinuxDeviceCgroup]) -> Vec<(&'static str, String)> {
    devs.iter()
        .map(|d| {
            let t = match d.typ() {
                Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
                Some(LinuxDeviceType::B) => 'b',
                Some(LinuxDeviceType::P) => 'p',
                _ => 'a',
            };
            let num = |n: Option<i64>| n.filter(|n| *n >= 0).map(|n| n.to_string()).unwrap_or_else(|| "*".into());
            let access = d.access().clone().unwrap_or_else(|| "rwm".into());
            let rule = if t == 'a' { "a".to_string() } else { format!("{t} {}:{} {access}", num(d.major()), num(d.minor())) };
            (if d.allow() { "devices.allow" } else { "devices.deny" }, rule)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cgroups::placement::{Hierarchy, mounted_hierarchies, placement};
    use std::path::Path;

    /// A v1 hierarchy with these controllers, mounted under /cg.
    fn v1_hier(c: &[&str]) -> Hierarchy {
        Hierarchy {
            mountpoint: format!("/cg/{}", c.join(",")).into(),
            controllers: c.iter().map(|s| s.to_string()).collect(),
            v2: false,
            own: "/".into(),
        }
    }

    /// The writes for `res` at /x on `hier`, as (file name, value) in order.
    fn named_writes(hier: &[Hierarchy], res: &LinuxResources) -> Vec<(String, String)> {
        let p = placement(hier, Some(Path::new("/x")), "c").unwrap();
        resource_writes(&p, Some(res), &[])
            .unwrap()
            .iter()
            .map(|w| (w.path.file_name().unwrap().to_string_lossy().into_owned(), w.value.clone()))
            .collect()
    }

    fn named_writes_err(hier: &[Hierarchy], res: &LinuxResources) -> String {
        let p = placement(hier, Some(Path::new("/x")), "c").unwrap();
        resource_writes(&p, Some(res), &[]).unwrap_err().to_string()
    }

    /// The value written to file `f`, and its position among the writes.
    fn written<'a>(w: &'a [(String, String)], f: &str) -> (usize, &'a str) {
        let i = w.iter().position(|(n, _)| n == f).unwrap_or_else(|| panic!("{f} not in {w:?}"));
        (i, w[i].1.as_str())
    }

    const HYBRID: &str = "\
25 24 0:22 / /sys/fs/cgroup ro,nosuid,nodev,noexec shared:9 - tmpfs tmpfs ro,mode=755
26 25 0:23 / /sys/fs/cgroup/unified rw,nosuid,nodev,noexec,relatime shared:10 - cgroup2 cgroup2 rw
27 25 0:24 / /sys/fs/cgroup/memory rw,relatime shared:11 - cgroup cgroup rw,memory
28 25 0:25 / /sys/fs/cgroup/cpu,cpuacct rw,relatime shared:12 - cgroup cgroup rw,cpu,cpuacct
29 25 0:26 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,xattr,name=systemd
";
    const SELF: &str = "12:memory:/user\n11:cpu,cpuacct:/user\n1:name=systemd:/init.scope\n0::/init.scope\n";

    #[test]
    fn hybrid_uses_v1_and_joins_the_empty_cgroup2_last() {
        let h = mounted_hierarchies(HYBRID, SELF);
        assert_eq!(h.len(), 4);
        assert!(h[..3].iter().all(|h| !h.v2));
        assert_eq!(h[1].controllers, vec!["cpu", "cpuacct"]);
        assert_eq!(h[1].own, PathBuf::from("/user"));
        assert_eq!(h[2].own, PathBuf::from("/init.scope"));
        assert_eq!(
            h[3],
            Hierarchy { mountpoint: "/sys/fs/cgroup/unified".into(), controllers: vec![], v2: true, own: "/init.scope".into() }
        );
        let p = placement(&h, None, "c1").unwrap();
        assert!(!p.v2);
        assert_eq!(p.dirs[3], PathBuf::from("/sys/fs/cgroup/unified/init.scope/c1"));
        // Limits go to v1 only; the cgroup2 has no controllers.
        let res: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":1048576}}"#).unwrap();
        let w = resource_writes(&p, Some(&res), &[]).unwrap();
        assert!(!w.is_empty());
        assert!(w.iter().all(|w| !w.path.starts_with("/sys/fs/cgroup/unified")), "{w:?}");
        // A limit for a controller this host does not mount is refused,
        // naming the field, not dropped.
        let res: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":1048576},"pids":{"limit":5}}"#).unwrap();
        let e = resource_writes(&p, Some(&res), &[]).unwrap_err().to_string();
        assert!(e.contains("linux.resources.pids: no pids cgroup controller"), "{e}");
        // v1 without a cgroup2 mount: no extra hierarchy.
        let no_unified: String = HYBRID.lines().filter(|l| !l.contains("cgroup2")).map(|l| format!("{l}\n")).collect();
        assert_eq!(mounted_hierarchies(&no_unified, SELF).len(), 3);
    }

    #[test]
    fn unified_and_missing_rdma_are_refused_on_v1() {
        let h = mounted_hierarchies(HYBRID, SELF);
        let p = placement(&h, None, "c1").unwrap();
        let res: LinuxResources = serde_json::from_str(r#"{"unified":{"memory.high":"1000000"}}"#).unwrap();
        let e = resource_writes(&p, Some(&res), &[]).unwrap_err().to_string();
        assert!(e.contains("unified") && e.contains("v2"), "{e}");
        let res: LinuxResources = serde_json::from_str(r#"{"rdma":{"mlx5_0":{"hcaHandles":2}}}"#).unwrap();
        let e = resource_writes(&p, Some(&res), &[]).unwrap_err().to_string();
        assert!(e.contains("rdma"), "{e}");
    }

    #[test]
    fn cpu_idle_burst_and_rdma() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"cpu":{"quota":50000,"period":100000,"burst":20000,"idle":1},
                "rdma":{"mlx5_1":{"hcaObjects":100},"mlx5_0":{"hcaHandles":2,"hcaObjects":2000},"empty":{}}}"#,
        )
        .unwrap();
        let w = named_writes(&[v1_hier(&["cpu", "cpuacct"]), v1_hier(&["rdma"])], &res);
        assert!(written(&w, "cpu.cfs_quota_us").0 < written(&w, "cpu.cfs_burst_us").0);
        assert_eq!(written(&w, "cpu.cfs_burst_us").1, "20000");
        assert_eq!(written(&w, "cpu.idle").1, "1");
        let rdma: Vec<&str> = w.iter().filter(|(n, _)| n == "rdma.max").map(|(_, v)| v.as_str()).collect();
        assert_eq!(rdma, vec!["mlx5_0 hca_handle=2 hca_object=2000", "mlx5_1 hca_object=100"]);

        let v2h = vec![Hierarchy { mountpoint: "/sys/fs/cgroup".into(), controllers: vec![], v2: true, own: "/".into() }];
        let w2 = named_writes(&v2h, &res);
        assert!(written(&w2, "cpu.max").0 < written(&w2, "cpu.max.burst").0);
        assert_eq!(written(&w2, "cpu.max.burst").1, "20000");
        assert_eq!(written(&w2, "cpu.idle").1, "1");
        assert_eq!(written(&w2, "rdma.max").1, "mlx5_0 hca_handle=2 hca_object=2000");
    }

    #[test]
    fn pure_v2() {
        let mi = "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n";
        let h = mounted_hierarchies(mi, "0::/sess\n");
        assert_eq!(h, vec![Hierarchy { mountpoint: "/sys/fs/cgroup".into(), controllers: vec![], v2: true, own: "/sess".into() }]);
    }

    #[test]
    fn relative_absolute_and_default_paths() {
        let h = mounted_hierarchies(HYBRID, SELF);
        let p = placement(&h, Some(Path::new("/a/b")), "c").unwrap();
        assert_eq!(p.dirs[0], PathBuf::from("/sys/fs/cgroup/memory/a/b"));
        let p = placement(&h, Some(Path::new("a/b")), "c").unwrap();
        assert_eq!(p.dirs[0], PathBuf::from("/sys/fs/cgroup/memory/user/a/b"));
        let p = placement(&h, None, "c1").unwrap();
        assert_eq!(p.dirs[1], PathBuf::from("/sys/fs/cgroup/cpu,cpuacct/user/c1"));
        assert!(placement(&h, Some(Path::new("/a/../../etc")), "c").is_err());
    }

    #[test]
    fn v1_and_v2_writes() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":1048576},"cpu":{"shares":1024,"quota":50000,"period":100000},"pids":{"limit":10},
                "devices":[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"}]}"#,
        )
        .unwrap();
        let mut h = mounted_hierarchies(HYBRID, SELF);
        h.push(v1_hier(&["pids"]));
        let p = placement(&h, Some(Path::new("/x")), "c").unwrap();
        let w = resource_writes(&p, Some(&res), &[]).unwrap();
        let get = |f: &str| w.iter().find(|w| w.path.ends_with(f)).map(|w| w.value.clone());
        assert_eq!(get("memory.limit_in_bytes").as_deref(), Some("1048576"));
        assert_eq!(get("cpu.cfs_quota_us").as_deref(), Some("50000"));
        let v2h = vec![Hierarchy { mountpoint: "/sys/fs/cgroup".into(), controllers: vec![], v2: true, own: "/".into() }];
        let p2 = placement(&v2h, Some(Path::new("/x")), "c").unwrap();
        let w2 = resource_writes(&p2, Some(&res), &[]).unwrap();
        let get2 = |f: &str| w2.iter().find(|w| w.path.ends_with(f)).map(|w| w.value.clone());
        assert_eq!(get2("memory.max").as_deref(), Some("1048576"));
        assert_eq!(get2("cpu.max").as_deref(), Some("50000 100000"));
        assert_eq!(get2("cpu.weight").as_deref(), Some("39"));
        assert_eq!(get2("pids.max").as_deref(), Some("10"));
        let rules = device_rules_v1(res.devices().as_ref().unwrap());
        assert_eq!(rules, vec![("devices.deny", "a".to_string()), ("devices.allow", "c 1:3 rw".to_string())]);
    }

    #[test]
    fn kernel_memory_is_refused_and_kernel_tcp_applied_on_v1() {
        let tcp: LinuxResources = serde_json::from_str(r#"{"memory":{"kernelTCP":8388608}}"#).unwrap();
        assert_eq!(named_writes(&[v1_hier(&["memory"])], &tcp), [("memory.kmem.tcp.limit_in_bytes".to_string(), "8388608".to_string())]);
        let v2 = [Hierarchy { mountpoint: "/cg".into(), controllers: vec![], v2: true, own: "/".into() }];
        assert!(named_writes_err(&v2, &tcp).contains("kernelTCP"));
        let kmem: LinuxResources = serde_json::from_str(r#"{"memory":{"kernel":8388608}}"#).unwrap();
        assert!(named_writes_err(&[v1_hier(&["memory"])], &kmem).contains("linux.resources.memory.kernel:"));
        // Zero is unset (what Docker sends): nothing written, nothing refused.
        let zero: LinuxResources = serde_json::from_str(r#"{"memory":{"kernel":0,"kernelTCP":0}}"#).unwrap();
        assert_eq!(named_writes(&[v1_hier(&["memory"])], &zero), vec![]);
    }

    #[test]
    fn blkio_hugetlb_and_network() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"blockIO":{"weight":500,"throttleReadBpsDevice":[{"major":8,"minor":0,"rate":1048576}]},
                "hugepageLimits":[{"pageSize":"2MB","limit":4194304}],
                "network":{"classID":1048577,"priorities":[{"name":"eth0","priority":5}]}}"#,
        )
        .unwrap();
        let got = named_writes(&[v1_hier(&["blkio"]), v1_hier(&["hugetlb"]), v1_hier(&["net_cls", "net_prio"])], &res);
        for want in [
            ("blkio.weight", "500"),
            ("blkio.throttle.read_bps_device", "8:0 1048576"),
            ("hugetlb.2MB.limit_in_bytes", "4194304"),
            ("net_cls.classid", "1048577"),
            ("net_prio.ifpriomap", "eth0 5"),
        ] {
            assert!(got.contains(&(want.0.to_string(), want.1.to_string())), "{want:?} not in {got:?}");
        }
        let missing = named_writes_err(&[v1_hier(&["blkio"]), v1_hier(&["net_cls", "net_prio"])], &res);
        assert!(missing.contains("linux.resources.hugepageLimits: no hugetlb cgroup controller"), "{missing}");
        let v2h = vec![Hierarchy { mountpoint: "/sys/fs/cgroup".into(), controllers: vec![], v2: true, own: "/".into() }];
        let p2 = placement(&v2h, Some(Path::new("/x")), "c").unwrap();
        let e = resource_writes(&p2, Some(&res), &[]).unwrap_err().to_string();
        assert!(e.contains("linux.resources.network"), "{e}");
        let mut res = res;
        res.set_network(None);
        let w2 = resource_writes(&p2, Some(&res), &[]).unwrap();
        let got2: Vec<String> = w2.iter().map(|w| w.value.clone()).collect();
        assert!(got2.contains(&"8:0 rbps=1048576".to_string()), "{got2:?}");
        assert!(got2.contains(&"default 4950".to_string()), "{got2:?}");
        assert!(got2.contains(&"4194304".to_string()));
    }

    #[test]
    fn zero_means_unset_as_runc_reads_it() {
        // What Docker sends for a container without limits.
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":0,"reservation":0,"swap":0},"cpu":{"shares":0,"quota":0,"period":0,"cpus":"","mems":""},
                "blockIO":{"weight":0,"leafWeight":0,"weightDevice":[{"major":8,"minor":0,"weight":0}]}}"#,
        )
        .unwrap();
        let v1 = [v1_hier(&["memory"]), v1_hier(&["cpu", "cpuacct"]), v1_hier(&["cpuset"]), v1_hier(&["pids"]), v1_hier(&["blkio"])];
        assert_eq!(named_writes(&v1, &res), Vec::<(String, String)>::new());
        let v2 = [Hierarchy { mountpoint: "/cg".into(), controllers: vec![], v2: true, own: "/".into() }];
        assert_eq!(named_writes(&v2, &res), Vec::<(String, String)>::new());
        // Values that are set still are.
        let set: LinuxResources = serde_json::from_str(r#"{"cpu":{"shares":512,"quota":0},"blockIO":{"weight":300}}"#).unwrap();
        let w = named_writes(&v1, &set);
        assert_eq!(written(&w, "cpu.shares").1, "512");
        assert_eq!(written(&w, "blkio.weight").1, "300");
        assert!(!w.iter().any(|(f, _)| f == "cpu.cfs_quota_us"), "{w:?}");
    }

    #[test]
    fn memsw_goes_first_only_when_raising() {
        const M: u64 = 1 << 20;
        // 32M/64M -> 64M/128M: memsw first, or the limit would pass 64M.
        assert!(memsw_first(32 * M, 128 * M as i64));
        // 64M/128M -> 32M/64M: the limit first, or memsw would go below 64M.
        assert!(!memsw_first(64 * M, 64 * M as i64));
        assert!(memsw_first(64 * M, -1));
        // A fresh cgroup's limit is unlimited: the limit first.
        assert!(!memsw_first(u64::MAX / 2, 128 * M as i64));
    }

    #[test]
    fn weight_conversion_matches_runc() {
        assert_eq!(shares_to_weight(2), 1);
        assert_eq!(shares_to_weight(262144), 10000);
        assert_eq!(shares_to_weight(1024), 39);
    }
}
