//! The systemd cgroup driver (`--systemd-cgroup`): the container's cgroup is
//! a transient scope unit that systemd makes and owns, as runc and crun do
//! on systemd hosts, so that systemd's view of the cgroup tree stays true.
//!
//! `cgroupsPath` is `slice:prefix:name` (absent: `system.slice:runc:<id>`, as runc),
//! giving the unit `prefix-name.scope` in `slice`. The parent clones init,
//! then asks systemd over D-Bus (its private socket, as root) to start the
//! scope with init's pid in it, waits for the start job, and writes the
//! limits into the scope's cgroup files itself. The limits systemd knows of
//! (memory, cpu, tasks, io weight, cpusets; v1 device rules) are also
//! passed as unit properties, so a `systemctl daemon-reload` puts back the
//! container's values rather than systemd's defaults. `delete` stops the
//! unit; systemd removes its cgroup.
//!
//! What is planned here (the unit, its cgroup path, the properties) is pure
//! data; `Systemd` is the one part that talks to systemd.

use std::cell::RefCell;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType, LinuxResources};

pub use super::dbus::Arg;
use super::dbus::{self, Conn, Message, body_values};
use super::plan::{blkio_weight_to_io, shares_to_weight};
use super::{CgroupError, Result};

/// The container's unit: `name` (a scope) in `slice`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Unit {
    pub slice: String,
    pub name: String,
}

impl Unit {
    /// The unit for `cgroupsPath` in its systemd form, `slice:prefix:name`.
    pub fn parse(cgroups_path: Option<&str>, id: &str) -> Result<Unit> {
        let Some(p) = cgroups_path.filter(|p| !p.is_empty()) else {
            return Ok(Unit { slice: "system.slice".into(), name: format!("runc-{id}.scope") });
        };
        let bad = |why: &str| CgroupError::Invalid(format!("cgroupsPath {p:?} with --systemd-cgroup: {why}"));
        let parts: Vec<&str> = p.split(':').collect();
        let [slice, prefix, name] = parts[..] else { return Err(bad("expected the form slice:prefix:name")) };
        let slice = if slice.is_empty() { "system.slice" } else { slice };
        slice_path(slice).map_err(|_| bad("the slice must be a unit name ending in .slice"))?;
        if name.is_empty() || name.contains('/') || prefix.contains('/') {
            return Err(bad("prefix and name must be non-empty unit name parts (no '/')"));
        }
        if name.ends_with(".slice") {
            return Err(bad("a slice as the container's own unit is not supported: name a scope"));
        }
        let name = if prefix.is_empty() { format!("{name}.scope") } else { format!("{prefix}-{name}.scope") };
        Ok(Unit { slice: slice.to_string(), name })
    }

    /// The unit's cgroup, from the hierarchy root: `/a.slice/a-b.slice/x.scope`.
    pub fn cgroup_path(&self) -> Result<PathBuf> {
        Ok(slice_path(&self.slice)?.join(&self.name))
    }
}

/// A slice's cgroup path: systemd nests `a-b.slice` in `a.slice`; `-.slice`
/// is the root.
pub fn slice_path(slice: &str) -> Result<PathBuf> {
    let bad = || CgroupError::Invalid(format!("{slice:?} is not a valid slice name"));
    if slice == "-.slice" {
        return Ok(PathBuf::from("/"));
    }
    let base = slice.strip_suffix(".slice").ok_or_else(bad)?;
    if base.is_empty() || base.contains('/') || base.starts_with('-') || base.ends_with('-') || base.contains("--") {
        return Err(bad());
    }
    let mut path = PathBuf::from("/");
    let mut prefix = String::new();
    for part in base.split('-') {
        prefix.push_str(part);
        path.push(format!("{prefix}.slice"));
        prefix.push('-');
    }
    Ok(path)
}

/// A unit property: its name and its value, in the D-Bus type systemd
/// expects.
pub type Property = (&'static str, Arg);

/// The scope's own properties: where it lives, the pid it starts with, and
/// accounting on for the controllers strata writes (on v2 this is what makes
/// systemd enable them for the scope).
pub fn scope_properties(unit: &Unit, id: &str, pid: u32, v2: bool) -> Vec<Property> {
    let mut p = vec![
        ("Description", Arg::Str(format!("strata container {id}"))),
        ("Slice", Arg::Str(unit.slice.clone())),
        ("PIDs", Arg::U32s(vec![pid])),
        // The container's cgroup is strata's to write (and, in a cgroup
        // namespace, the container's): systemd leaves what is below alone.
        ("Delegate", Arg::Bool(true)),
        ("DefaultDependencies", Arg::Bool(false)),
        ("MemoryAccounting", Arg::Bool(true)),
        ("CPUAccounting", Arg::Bool(true)),
        ("TasksAccounting", Arg::Bool(true)),
    ];
    p.push(if v2 { ("IOAccounting", Arg::Bool(true)) } else { ("BlockIOAccounting", Arg::Bool(true)) });
    p
}

const INFINITY: u64 = u64::MAX;

/// The limits of `res` that systemd has properties for, converted the way
/// runc converts them. strata writes every limit to cgroupfs as well; these
/// keep systemd from putting its own values back.
pub fn resource_properties(res: Option<&LinuxResources>, v2: bool) -> Vec<Property> {
    let mut p = Vec::new();
    let Some(res) = res else { return p };
    let res = &super::plan::without_unset(res);
    if let Some(m) = res.memory() {
        if let Some(l) = m.limit() {
            let v = if l < 0 { INFINITY } else { l as u64 };
            p.push((if v2 { "MemoryMax" } else { "MemoryLimit" }, Arg::U64(v)));
            if v2 && let Some(s) = m.swap() {
                // v1's swap counts memory+swap; v2's MemorySwapMax only swap.
                p.push(("MemorySwapMax", Arg::U64(if s < 0 { INFINITY } else { (s - l).max(0) as u64 })));
            }
        }
        if v2 && let Some(r) = m.reservation() {
            p.push(("MemoryLow", Arg::U64(if r < 0 { INFINITY } else { r as u64 })));
        }
    }
    if let Some(c) = res.cpu() {
        if let Some(s) = c.shares().filter(|s| *s > 0) {
            p.push(if v2 { ("CPUWeight", Arg::U64(shares_to_weight(s))) } else { ("CPUShares", Arg::U64(s)) });
        }
        if let Some(q) = c.quota() {
            let period = c.period().filter(|p| *p > 0).unwrap_or(100_000);
            p.push(("CPUQuotaPerSecUSec", Arg::U64(quota_per_sec(q, period))));
        }
        if let Some(pd) = c.period().filter(|p| *p > 0) {
            p.push(("CPUQuotaPeriodUSec", Arg::U64(pd)));
        }
        if let Some(mask) = c.cpus().as_deref().filter(|s| !s.is_empty()).and_then(cpuset_mask) {
            p.push(("AllowedCPUs", Arg::Bytes(mask)));
        }
        if let Some(mask) = c.mems().as_deref().filter(|s| !s.is_empty()).and_then(cpuset_mask) {
            p.push(("AllowedMemoryNodes", Arg::Bytes(mask)));
        }
    }
    if let Some(pl) = res.pids() {
        p.push((
            "TasksMax",
            Arg::U64(match pl.limit() {
                l if l < 0 => INFINITY,
                0 => 1,
                l => l as u64,
            }),
        ));
    }
    if let Some(w) = res.block_io().as_ref().and_then(|b| b.weight()).filter(|w| *w > 0) {
        p.push(if v2 { ("IOWeight", Arg::U64(blkio_weight_to_io(w))) } else { ("BlockIOWeight", Arg::U64(u64::from(w))) });
    }
    p
}

/// CPU quota as systemd takes it: microseconds per second of wall time.
/// systemd keeps whole percents of a CPU, so this rounds up to the next
/// 10 ms (as runc does): the kernel then gets at least the quota asked for.
pub fn quota_per_sec(quota: i64, period: u64) -> u64 {
    if quota <= 0 {
        return INFINITY;
    }
    let us = (quota as u64).saturating_mul(1_000_000) / period;
    us.div_ceil(10_000) * 10_000
}

/// A cpuset list (`0-3,8`) as the bitmask systemd takes: bit i%8 of byte
/// i/8 for cpu i. None if the list does not parse.
pub fn cpuset_mask(list: &str) -> Option<Vec<u8>> {
    let mut mask = Vec::new();
    for part in list.trim().split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a.trim().parse::<usize>().ok()?, b.trim().parse::<usize>().ok()?),
            None => {
                let a = part.trim().parse::<usize>().ok()?;
                (a, a)
            }
        };
        if b < a || b >= 8192 {
            return None;
        }
        for i in a..=b {
            if mask.len() <= i / 8 {
                mask.resize(i / 8 + 1, 0);
            }
            mask[i / 8] |= 1 << (i % 8);
        }
    }
    Some(mask)
}

/// The v1 device rules as systemd device properties (cgroup v1 only: on v2
/// strata's own eBPF program does it and systemd adds none). systemd knows
/// only an allow list, so this works when the spec's rules start by denying
/// everything, as runtimes' specs do; `None` if they cannot be expressed
/// (then no device properties are passed). `names` maps a character or
/// block major to its name in /proc/devices, for wildcard minors.
/// `extra_allow` holds the always-allowed rules in v1 syntax (`c 1:3 rwm`).
pub fn device_properties(devs: &[LinuxDeviceCgroup], extra_allow: &[String], names: &DeviceNames) -> Option<Vec<Property>> {
    let deny_all = |d: &LinuxDeviceCgroup| {
        !d.allow() && matches!(d.typ(), None | Some(LinuxDeviceType::A)) && d.major().is_none() && d.minor().is_none()
    };
    let last_deny_all = devs.iter().rposition(deny_all)?;
    let mut allow = Vec::new();
    for d in &devs[last_deny_all + 1..] {
        if !d.allow() {
            // A deny after the allow list: systemd cannot say "all but".
            return None;
        }
        let t = match d.typ() {
            Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 'c',
            Some(LinuxDeviceType::B) => 'b',
            _ => return None,
        };
        allow.push((t, d.major().unwrap_or(-1), d.minor().unwrap_or(-1), d.access().clone().unwrap_or_else(|| "rwm".into())));
    }
    for rule in extra_allow {
        allow.push(parse_v1_rule(rule)?);
    }
    let mut entries = Vec::new();
    for (t, major, minor, access) in allow {
        let kind = if t == 'c' { "char" } else { "block" };
        let dev = match (major, minor) {
            (-1, _) => format!("{kind}-*"),
            (ma, -1) => format!("{kind}-{}", names.name(t, ma)?),
            (ma, mi) => format!("/dev/{kind}/{ma}:{mi}"),
        };
        entries.push((dev, access));
    }
    Some(vec![("DevicePolicy", Arg::Str("strict".into())), ("DeviceAllow", Arg::StrPairs(entries))])
}

/// `c 1:3 rwm` → ('c', 1, 3, "rwm"); `*` is -1.
fn parse_v1_rule(rule: &str) -> Option<(char, i64, i64, String)> {
    let mut f = rule.split_whitespace();
    let t = f.next()?.chars().next().filter(|t| matches!(t, 'c' | 'b'))?;
    let (ma, mi) = f.next()?.split_once(':')?;
    let num = |n: &str| if n == "*" { Some(-1) } else { n.parse().ok() };
    Some((t, num(ma)?, num(mi)?, f.next().unwrap_or("rwm").to_string()))
}

/// Device majors and their names, from /proc/devices.
#[derive(Debug, Default)]
pub struct DeviceNames {
    chr: Vec<(i64, String)>,
    blk: Vec<(i64, String)>,
}

impl DeviceNames {
    pub fn parse(proc_devices: &str) -> DeviceNames {
        let mut n = DeviceNames::default();
        let mut cur = None;
        for line in proc_devices.lines() {
            match line.trim() {
                "Character devices:" => cur = Some(true),
                "Block devices:" => cur = Some(false),
                l => {
                    let mut f = l.split_whitespace();
                    if let (Some(Ok(major)), Some(name), Some(chr)) = (f.next().map(str::parse), f.next(), cur) {
                        if chr { &mut n.chr } else { &mut n.blk }.push((major, name.to_string()));
                    }
                }
            }
        }
        n
    }

    fn name(&self, t: char, major: i64) -> Option<&str> {
        let list = if t == 'c' { &self.chr } else { &self.blk };
        list.iter().find(|(m, _)| *m == major).map(|(_, n)| n.as_str())
    }
}

const DEST: &str = "org.freedesktop.systemd1";
const OBJECT: &str = "/org/freedesktop/systemd1";
const MANAGER: &str = "org.freedesktop.systemd1.Manager";
/// systemd's own socket, for root: no bus daemon needed in between.
const PRIVATE: &str = "/run/systemd/private";
const JOB_TIMEOUT: Duration = Duration::from_secs(30);

/// Whether this host runs systemd (as `sd_booted` tells).
pub fn running() -> bool {
    Path::new("/run/systemd/system").exists()
}

/// A connection to the host's systemd.
pub struct Systemd {
    conn: RefCell<Conn>,
}

impl Systemd {
    /// Connects to systemd's private socket (root only). A host that does
    /// not run systemd gets a clear error.
    pub fn connect() -> Result<Systemd> {
        if !running() {
            return Err(CgroupError::Invalid(
                "--systemd-cgroup: systemd is not running on this host (no /run/systemd/system); use cgroupfs (drop the flag)".into(),
            ));
        }
        let conn =
            Conn::connect(Path::new(PRIVATE)).map_err(|e| CgroupError::Io { op: "connect to systemd", path: PRIVATE.into(), source: e })?;
        Ok(Systemd { conn: RefCell::new(conn) })
    }

    /// Starts the scope `unit` with `props` (its pid among them), and waits
    /// until systemd has moved the pid into it (the start job is done).
    pub fn start_scope(&self, unit: &Unit, props: &[Property]) -> Result<()> {
        let args = [Arg::Str(unit.name.clone()), Arg::Str("fail".into()), to_dbus(props), Arg::AuxUnits(Vec::new())];
        let job = self.job("StartTransientUnit", &unit.name, &args)?;
        self.wait_job("start", &unit.name, &job)
    }

    /// Stops the unit and waits for it; a unit systemd no longer has (an
    /// empty scope is collected by itself) is already stopped.
    pub fn stop(&self, unit: &str) -> Result<()> {
        match self.job("StopUnit", unit, &[Arg::Str(unit.into()), Arg::Str("replace".into())]) {
            Ok(job) => self.wait_job("stop", unit, &job),
            Err(CgroupError::Systemd { msg, .. }) if msg.contains("NoSuchUnit") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Changes properties of a running unit (`strata update`).
    pub fn set_properties(&self, unit: &str, props: &[Property]) -> Result<()> {
        if props.is_empty() {
            return Ok(());
        }
        self.call("SetUnitProperties", unit, &[Arg::Str(unit.into()), Arg::Bool(true), to_dbus(props)])?;
        Ok(())
    }

    /// Calls a Manager method and returns its reply (an error reply is an
    /// error naming the method and the unit).
    fn call(&self, op: &'static str, unit: &str, args: &[Arg]) -> Result<Message> {
        let fail = |msg: String| CgroupError::Systemd { op, unit: unit.into(), msg };
        let mut conn = self.conn.borrow_mut();
        let serial = conn.send(DEST, OBJECT, MANAGER, op, args).map_err(|e| fail(e.to_string()))?;
        loop {
            let m = conn.recv(JOB_TIMEOUT).map_err(|e| fail(e.to_string()))?.ok_or_else(|| fail(format!("no reply in {JOB_TIMEOUT:?}")))?;
            if m.reply_serial != Some(serial) {
                continue;
            }
            return match m.kind {
                dbus::METHOD_RETURN => Ok(m),
                dbus::ERROR => {
                    let text = match body_values(&m).as_deref() {
                        Some([Arg::Str(s), ..]) => s.clone(),
                        _ => String::new(),
                    };
                    Err(fail(format!("{text} ({})", m.error_name.as_deref().unwrap_or("error"))))
                }
                k => Err(fail(format!("unexpected message type {k} in reply"))),
            };
        }
    }

    /// Calls a method that answers with a job, and returns the job's path.
    fn job(&self, op: &'static str, unit: &str, args: &[Arg]) -> Result<String> {
        let reply = self.call(op, unit, args)?;
        match body_values(&reply).as_deref() {
            Some([Arg::Path(job)]) => Ok(job.clone()),
            _ => Err(CgroupError::Systemd { op, unit: unit.into(), msg: format!("unexpected reply signature {:?}", reply.signature) }),
        }
    }

    /// Waits for systemd's JobRemoved signal for `job` (systemd sends its
    /// signals to every client of its private socket), and checks the result.
    fn wait_job(&self, op: &'static str, unit: &str, job: &str) -> Result<()> {
        let fail = |msg: String| CgroupError::Systemd { op, unit: unit.into(), msg };
        let deadline = Instant::now() + JOB_TIMEOUT;
        let mut conn = self.conn.borrow_mut();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(fail(format!("job {job} did not finish in {JOB_TIMEOUT:?}")));
            }
            let Some(m) = conn.recv(left).map_err(|e| fail(e.to_string()))? else { continue };
            if m.kind != dbus::SIGNAL || m.member.as_deref() != Some("JobRemoved") {
                continue;
            }
            if let Some([_, Arg::Path(path), _, Arg::Str(result)]) = body_values(&m).as_deref()
                && path == job
            {
                return match result.as_str() {
                    "done" => Ok(()),
                    r => Err(fail(format!("job {job} ended {r:?}"))),
                };
            }
        }
    }
}

/// Unit properties on the wire: `a(sv)`.
fn to_dbus(props: &[Property]) -> Arg {
    Arg::Props(props.iter().map(|(k, v)| (k.to_string(), v.clone())).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn units_from_cgroups_path() {
        let u = Unit::parse(Some("machine.slice:libpod:abc"), "x").unwrap();
        assert_eq!(u, Unit { slice: "machine.slice".into(), name: "libpod-abc.scope".into() });
        assert_eq!(u.cgroup_path().unwrap(), PathBuf::from("/machine.slice/libpod-abc.scope"));
        let u = Unit::parse(None, "c1").unwrap();
        assert_eq!(u.cgroup_path().unwrap(), PathBuf::from("/system.slice/runc-c1.scope"));
        let u = Unit::parse(Some(":cri:c2"), "x").unwrap();
        assert_eq!(u.slice, "system.slice");
        assert_eq!(Unit::parse(Some("kubepods-besteffort.slice::c3"), "x").unwrap().name, "c3.scope");
        assert_eq!(
            Unit::parse(Some("kubepods-besteffort-pod1.slice:cri-containerd:c4"), "x").unwrap().cgroup_path().unwrap(),
            PathBuf::from("/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1.slice/cri-containerd-c4.scope")
        );
        for bad in ["/a/b", "a:b", "x.slice:p:", "notaslice:p:n", "a--b.slice:p:n", "-a.slice:p:n", "x.slice:p:n.slice", "x.slice:p/q:n"] {
            let e = Unit::parse(Some(bad), "x").unwrap_err().to_string();
            assert!(e.contains(bad) && e.contains("--systemd-cgroup"), "{bad}: {e}");
        }
        assert_eq!(slice_path("-.slice").unwrap(), PathBuf::from("/"));
    }

    #[test]
    fn properties_convert_like_runc() {
        let res: LinuxResources = serde_json::from_str(
            r#"{"memory":{"limit":67108864,"swap":134217728,"reservation":1048576},
                "cpu":{"shares":1024,"quota":15000,"period":100000,"cpus":"0-2,9","mems":"0"},
                "pids":{"limit":32},"blockIO":{"weight":500}}"#,
        )
        .unwrap();
        let v2 = resource_properties(Some(&res), true);
        let get = |p: &[Property], k: &str| p.iter().find(|(n, _)| *n == k).map(|(_, v)| v.clone());
        assert_eq!(get(&v2, "MemoryMax"), Some(Arg::U64(64 << 20)));
        assert_eq!(get(&v2, "MemorySwapMax"), Some(Arg::U64(64 << 20)));
        assert_eq!(get(&v2, "MemoryLow"), Some(Arg::U64(1 << 20)));
        assert_eq!(get(&v2, "CPUWeight"), Some(Arg::U64(39)));
        // 15% of a CPU is 150 ms per second.
        assert_eq!(get(&v2, "CPUQuotaPerSecUSec"), Some(Arg::U64(150_000)));
        assert_eq!(get(&v2, "CPUQuotaPeriodUSec"), Some(Arg::U64(100_000)));
        assert_eq!(get(&v2, "AllowedCPUs"), Some(Arg::Bytes(vec![0b0000_0111, 0b0000_0010])));
        assert_eq!(get(&v2, "AllowedMemoryNodes"), Some(Arg::Bytes(vec![1])));
        assert_eq!(get(&v2, "TasksMax"), Some(Arg::U64(32)));
        assert_eq!(get(&v2, "IOWeight"), Some(Arg::U64(blkio_weight_to_io(500))));
        let v1 = resource_properties(Some(&res), false);
        assert_eq!(get(&v1, "MemoryLimit"), Some(Arg::U64(64 << 20)));
        assert_eq!(get(&v1, "CPUShares"), Some(Arg::U64(1024)));
        assert_eq!(get(&v1, "BlockIOWeight"), Some(Arg::U64(500)));
        assert_eq!(get(&v1, "MemoryMax"), None);
        assert_eq!(get(&v1, "MemorySwapMax"), None);
        // No limit, unlimited, rounding up to whole percents; zero is "not set".
        let res: LinuxResources = serde_json::from_str(r#"{"memory":{"limit":-1},"pids":{"limit":-1},"cpu":{"quota":-1}}"#).unwrap();
        let p = resource_properties(Some(&res), true);
        assert_eq!(get(&p, "MemoryMax"), Some(Arg::U64(u64::MAX)));
        assert_eq!(get(&p, "TasksMax"), Some(Arg::U64(u64::MAX)));
        let unset: LinuxResources = serde_json::from_str(r#"{"cpu":{"shares":0},"blockIO":{"weight":0}}"#).unwrap();
        assert!(resource_properties(Some(&unset), true).is_empty());
        assert_eq!(get(&p, "CPUQuotaPerSecUSec"), Some(Arg::U64(u64::MAX)));
        assert_eq!(quota_per_sec(12345, 100_000), 130_000);
        assert!(resource_properties(None, true).is_empty());
        assert_eq!(cpuset_mask("x"), None);
        assert_eq!(cpuset_mask("3-1"), None);
    }

    #[test]
    fn scope_properties_hold_the_pid_and_delegate() {
        let u = Unit::parse(None, "c").unwrap();
        let p = scope_properties(&u, "c", 42, true);
        assert!(p.contains(&("PIDs", Arg::U32s(vec![42]))));
        assert!(p.contains(&("Slice", Arg::Str("system.slice".into()))));
        assert!(p.contains(&("Delegate", Arg::Bool(true))));
        assert!(p.contains(&("IOAccounting", Arg::Bool(true))));
        assert!(scope_properties(&u, "c", 42, false).contains(&("BlockIOAccounting", Arg::Bool(true))));
    }

    #[test]
    fn v1_device_rules_become_an_allow_list() {
        let names = DeviceNames::parse("Character devices:\n  1 mem\n136 pts\n  5 /dev/tty\n\nBlock devices:\n  8 sd\n");
        let devs: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false,"access":"rwm"},{"allow":true,"type":"c","major":1,"minor":3,"access":"rw"},
                {"allow":true,"type":"c","major":136,"access":"rwm"},{"allow":true,"type":"b","access":"r"}]"#,
        )
        .unwrap();
        let extra = vec!["c 5:2 rwm".to_string()];
        let p = device_properties(&devs, &extra, &names).unwrap();
        assert_eq!(p[0], ("DevicePolicy", Arg::Str("strict".into())));
        let want: Vec<(String, String)> = [("/dev/char/1:3", "rw"), ("char-pts", "rwm"), ("block-*", "r"), ("/dev/char/5:2", "rwm")]
            .iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert_eq!(p[1], ("DeviceAllow", Arg::StrPairs(want)));
        // A deny after allows, no deny-all first, or an unknown major: not expressible.
        let devs: Vec<LinuxDeviceCgroup> = serde_json::from_str(
            r#"[{"allow":false},{"allow":true,"type":"c","major":1,"minor":3},{"allow":false,"type":"c","major":1,"minor":5}]"#,
        )
        .unwrap();
        assert_eq!(device_properties(&devs, &[], &names), None);
        let devs: Vec<LinuxDeviceCgroup> = serde_json::from_str(r#"[{"allow":true,"type":"c","major":1,"minor":3}]"#).unwrap();
        assert_eq!(device_properties(&devs, &[], &names), None);
        let devs: Vec<LinuxDeviceCgroup> = serde_json::from_str(r#"[{"allow":false},{"allow":true,"type":"c","major":99}]"#).unwrap();
        assert_eq!(device_properties(&devs, &[], &names), None);
    }
}
