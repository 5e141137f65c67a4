//! Cgroups: one small interface, cgroup v1 and v2 behind it, chosen once by
//! looking at what is mounted on /sys/fs/cgroup.
//!
//! A container's cgroup is described by a `Placement` (pure data: which
//! directories, which of them strata creates, which files it writes); it is
//! recorded in the state so that `delete` removes exactly the directories
//! strata created and nothing else.
//!
//! Why not the cgroups-rs crate: the plan (which file of which hierarchy
//! gets which value, hybrid hosts included) is pure data, tested without
//! root; processes join by themselves (born in their cgroup2 cgroup with
//! `CLONE_INTO_CGROUP`, or a thread writing `0` to v1 `tasks`, see
//! `Joiner`); v2 device filters (`devices_v2`) and the systemd driver
//! (`systemd`) are strata's own. What cgroups-rs would add is the writing of
//! the files.
//!
//! May use: `sys` only.

mod dbus;
pub mod devices_v1;
pub mod devices_v2;
mod placement;
mod plan;
pub mod stats;
pub mod systemd;

use std::fs;
use std::io::{ErrorKind, Write as _};
use std::os::fd::OwnedFd;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxResources;

pub use placement::{Hierarchy, Placement, mounted_hierarchies, placement};
pub use plan::{Write, resource_writes};

#[derive(Debug, thiserror::Error)]
pub enum CgroupError {
    #[error("cgroup {op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("cgroup: {0}")]
    Invalid(String),
    #[error("systemd {op} {unit}: {msg}")]
    Systemd { op: &'static str, unit: String, msg: String },
}

type Result<T> = std::result::Result<T, CgroupError>;

fn io<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> CgroupError + 'a {
    move |source| CgroupError::Io { op, path: path.to_path_buf(), source }
}

/// The cgroup hierarchies mounted here and this process's place in each.
pub fn read_hierarchies() -> Vec<Hierarchy> {
    let mi = crate::sys::read_small("/proc/self/mountinfo").unwrap_or_default();
    let own = crate::sys::read_small("/proc/self/cgroup").unwrap_or_default();
    mounted_hierarchies(&mi, &own)
}

/// Creates the directories of `p` (recording those it made), writes the
/// resource limits and returns the list of created dirs, deepest last.
///
/// `missing` is `missing_dirs(p)`, as the creating record names them: each
/// is made (one that appeared since is taken as it is), and nothing is
/// looked up again.
pub fn create(p: &Placement, res: Option<&LinuxResources>, extra_allow: &[String], missing: &[PathBuf]) -> Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    let r = (|| {
        for d in missing {
            match fs::create_dir(d) {
                Ok(()) => created.push(d.clone()),
                Err(e) if e.kind() == ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io("mkdir", d)(e)),
            }
        }
        for dir in &p.dirs {
            inherit_cpusets(dir, &p.inherit)?;
        }
        // Device rules wait for `apply_devices`: init first makes its nodes.
        let mut writes = resource_writes(p, res, extra_allow)?;
        order_memory(&mut writes);
        write_all(writes.iter().filter(|w| !is_device_rule(w)))
    })();
    match r {
        Ok(()) => Ok(created),
        Err(e) => {
            remove(&created);
            Err(e)
        }
    }
}

/// A cgroup a new container may go into, checked before it is used: one
/// that exists already must hold no process (a second container would
/// share its limits, and `delete` would kill the first one's processes)
/// and must not be frozen (init would stop at its first step and `create`
/// would wait forever). runc's words, which callers match.
/// `missing`: `missing_dirs(p)`; the others exist.
pub fn check_usable(p: &Placement, missing: &[PathBuf]) -> Result<()> {
    for dir in p.dirs.iter().filter(|d| !missing.contains(d)) {
        let procs = dir.join("cgroup.procs");
        let listed = crate::sys::read_small(&procs).map_err(io("read", &procs))?;
        let n = listed.lines().filter(|l| !l.trim().is_empty()).count();
        if n > 0 {
            return Err(CgroupError::Invalid(format!("container's cgroup is not empty: {n} process(es) found in {}", dir.display())));
        }
        if is_frozen(std::slice::from_ref(dir)) || crate::sys::read_small(dir.join("freezer.state")).is_ok_and(|s| s.trim() == "FREEZING") {
            return Err(CgroupError::Invalid(format!("container's cgroup unexpectedly frozen: {}", dir.display())));
        }
    }
    Ok(())
}

/// Writes each file in turn. The kernel checks each CFS and RT bandwidth
/// value against the others of the cgroup and its parent as they stand, so
/// a period can be refused (EINVAL) until the quota or runtime that goes
/// with it is in, or the other way round: such a write is tried again once
/// the others are done, as runc does.
fn write_all<'a>(writes: impl Iterator<Item = &'a Write>) -> Result<()> {
    const PAIRED: [&str; 4] = ["cpu.cfs_period_us", "cpu.cfs_quota_us", "cpu.rt_period_us", "cpu.rt_runtime_us"];
    let mut again = Vec::new();
    for w in writes {
        match write_file(&w.path, &w.value) {
            Err(CgroupError::Io { source, .. })
                if source.raw_os_error() == Some(libc::EINVAL) && w.path.file_name().is_some_and(|n| PAIRED.iter().any(|p| n == *p)) =>
            {
                again.push(w)
            }
            r => r?,
        }
    }
    again.into_iter().try_for_each(|w| write_file(&w.path, &w.value))
}

fn is_device_rule(w: &Write) -> bool {
    w.path.file_name().is_some_and(|n| n.to_string_lossy().starts_with("devices."))
}

/// Writes the device rules (v1), once init has created the device nodes:
/// a denied device could not be made with mknod either.
pub fn apply_devices(p: &Placement, res: Option<&LinuxResources>, extra_allow: &[String]) -> Result<()> {
    if p.v2 {
        let devs = res.and_then(|r| r.devices().as_deref()).unwrap_or(&[]);
        if devs.is_empty() && extra_allow.is_empty() {
            return Ok(());
        }
        let mut rules: Vec<devices_v2::Rule> = devs.iter().map(devices_v2::rule_from_spec).collect();
        rules.extend(extra_allow.iter().filter_map(|r| devices_v2::rule_from_v1(r, true)));
        for dir in &p.dirs {
            devices_v2::attach(dir, &rules)?;
        }
        return Ok(());
    }
    let writes = resource_writes(p, res, extra_allow)?;
    apply_device_rules_v1(&writes)
}

/// The v1 device writes among `writes`, applied per directory as the
/// transition from the cgroup's current list (see `devices_v1`).
fn apply_device_rules_v1(writes: &[Write]) -> Result<()> {
    let mut dirs: Vec<&Path> = Vec::new();
    for w in writes.iter().filter(|w| is_device_rule(w)) {
        if let Some(d) = w.path.parent().filter(|d| !dirs.contains(d)) {
            dirs.push(d);
        }
    }
    for dir in dirs {
        let spec: Vec<(&str, String)> = writes
            .iter()
            .filter(|w| is_device_rule(w) && w.path.parent() == Some(dir))
            .map(|w| (if w.path.ends_with("devices.allow") { "devices.allow" } else { "devices.deny" }, w.value.clone()))
            .collect();
        let list = dir.join("devices.list");
        let now = devices_v1::Rules::parse_list(&crate::sys::read_small(&list).map_err(io("read", &list))?);
        // Each rule is one write(2) of its own (the kernel takes one rule
        // a write); the two files are opened once, not once a rule.
        let mut open: Vec<(&str, fs::File)> = Vec::new();
        for (file, rule) in now.transition(&devices_v1::target(&spec)) {
            let path = dir.join(file);
            let f = match open.iter().position(|(n, _)| *n == file) {
                Some(k) => &open[k].1,
                None => {
                    let f = fs::OpenOptions::new().write(true).open(&path).map_err(io("open", &path))?;
                    open.push((file, f));
                    &open[open.len() - 1].1
                }
            };
            use std::io::Write as _;
            let n = (&*f).write(rule.as_bytes()).map_err(io("write", &path))?;
            if n != rule.len() {
                return Err(CgroupError::Invalid(format!("{}: short write of {rule:?}", path.display())));
            }
        }
    }
    Ok(())
}

/// The directories `create` would make for `p` (those that do not exist
/// yet), shallowest first: what a container's creating record names before
/// any of them exists.
pub fn missing_dirs(p: &Placement) -> Vec<PathBuf> {
    let mut out: Vec<PathBuf> = Vec::new();
    for d in p.dirs.iter().flat_map(|dir| missing_from(dir)) {
        if !out.contains(&d) {
            out.push(d);
        }
    }
    out
}

/// `dir` and those of its ancestors that do not exist, shallowest first.
fn missing_from(dir: &Path) -> Vec<PathBuf> {
    let mut missing = Vec::new();
    let mut cur = dir.to_path_buf();
    while !cur.exists() {
        missing.push(cur.clone());
        if !cur.pop() {
            break;
        }
    }
    missing.reverse();
    missing
}

fn inherit_cpusets(dir: &Path, inherit: &[(PathBuf, Vec<&'static str>)]) -> Result<()> {
    // cpuset (v1) starts empty in a new cgroup, and a task cannot join one
    // whose cpus or mems are empty: every level below the hierarchy's root
    // that is still empty (new, or made empty by whoever created it, as a
    // pod's parent) gets its parent's values, top down, as runc does.
    for (hier, files) in inherit.iter().filter(|(h, _)| dir.starts_with(h)) {
        let mut levels: Vec<&Path> = dir.ancestors().take_while(|a| *a != hier.as_path()).collect();
        levels.reverse();
        for d in levels {
            for f in files {
                let mine = d.join(f);
                if crate::sys::read_small(&mine).map(|s| s.trim().is_empty()).unwrap_or(true) {
                    let parent = d.parent().unwrap_or(hier).join(f);
                    let v = crate::sys::read_small(&parent).map_err(io("read", &parent))?;
                    write_file(&mine, v.trim())?;
                }
            }
        }
    }
    Ok(())
}

pub fn write_file(path: &Path, value: &str) -> Result<()> {
    // Under the BFQ I/O scheduler blkio has no `weight` files, only the
    // `bfq.` ones (which take the same values), as runc falls back to.
    let bfq = path.file_name().and_then(|n| n.to_str()).filter(|n| matches!(*n, "blkio.weight" | "blkio.weight_device")).and_then(|n| {
        let alt = path.with_file_name(n.replacen("blkio.", "blkio.bfq.", 1));
        (!path.exists() && alt.exists()).then_some(alt)
    });
    let path = bfq.as_deref().unwrap_or(path);
    fs::write(path, value).map_err(|source| {
        if !path.exists() {
            // cgroupfs answers EACCES for a file it does not have.
            return CgroupError::Invalid(format!("{}: this kernel's cgroup has no such file (limit not supported here)", path.display()));
        }
        CgroupError::Io { op: "write", path: path.to_path_buf(), source }
    })
}

/// The placement of an existing container: its recorded directories,
/// matched to the hierarchies they live in.
pub fn placement_of(hier: &[Hierarchy], dirs: &[PathBuf]) -> Placement {
    let mut p = Placement { v2: hier.first().is_some_and(|h| h.v2), ..Default::default() };
    for d in dirs {
        if let Some(h) = hier.iter().filter(|h| d.starts_with(&h.mountpoint)).max_by_key(|h| h.mountpoint.as_os_str().len()) {
            p.hierarchies.push(h.clone());
            p.dirs.push(d.clone());
        }
    }
    p
}

/// The device rules runc appends to every container's own (v1 syntax):
/// mknod of any device, the standard character devices, ptys and
/// /dev/net/tun. A standard device that `linux.devices` lists by path drops
/// out, as in runc (the config's entry takes its place). The devices of
/// `linux.devices` get no rule of their own: what the config's
/// `linux.resources.devices` denies stays denied.
pub fn default_device_rules(linux: &oci_spec::runtime::Linux) -> Vec<String> {
    const RUNC_ALLOWED: [(&str, Option<&str>); 11] = [
        ("c *:* m", None),
        ("b *:* m", None),
        ("c 1:3 rwm", Some("/dev/null")),
        ("c 1:8 rwm", Some("/dev/random")),
        ("c 1:7 rwm", Some("/dev/full")),
        ("c 5:0 rwm", Some("/dev/tty")),
        ("c 1:5 rwm", Some("/dev/zero")),
        ("c 1:9 rwm", Some("/dev/urandom")),
        ("c 136:* rwm", None),
        ("c 5:2 rwm", None),
        ("c 10:200 rwm", None),
    ];
    let listed = |path: &str| linux.devices().iter().flatten().any(|d| d.path() == Path::new(path));
    RUNC_ALLOWED.iter().filter(|(_, path)| !path.is_some_and(listed)).map(|(rule, _)| rule.to_string()).collect()
}

/// Writes new limits into a live container's cgroup (`strata update`);
/// new device rules come with `extra_allow` after them, as at create.
pub fn update(p: &Placement, res: &LinuxResources, extra_allow: &[String]) -> Result<()> {
    let extra_allow = if res.devices().is_some() { extra_allow } else { &[] };
    let mut writes = resource_writes(p, Some(res), extra_allow)?;
    order_memory(&mut writes);
    write_all(writes.iter().filter(|w| p.v2 || !is_device_rule(w)))?;
    if !p.v2 {
        apply_device_rules_v1(&writes)?;
    }
    Ok(())
}

/// cgroup v1 refuses a memory limit above the memory+swap limit, and a
/// memory+swap limit below the memory limit. When both change in one
/// directory, memsw goes first if the new memsw is above the current memory
/// limit (raising), last otherwise (lowering), as runc orders them.
fn order_memory(writes: &mut [Write]) {
    let named = |writes: &[Write], name: &str| writes.iter().position(|w| w.path.file_name().is_some_and(|n| n == name));
    let (Some(l), Some(s)) = (named(writes, "memory.limit_in_bytes"), named(writes, "memory.memsw.limit_in_bytes")) else { return };
    let current = crate::sys::read_small(&writes[l].path).ok().and_then(|v| v.trim().parse::<u64>().ok()).unwrap_or(u64::MAX);
    let new_memsw = writes[s].value.trim().parse::<i64>().unwrap_or(-1);
    if plan::memsw_first(current, new_memsw) != (s < l) {
        writes.swap(l, s);
    }
}

/// How a new process (a container's init, or an exec'd process) gets into
/// the container's cgroups, prepared by the parent before it clones:
///
/// - on cgroup2 (a v2 host, or the empty cgroup2 of a hybrid host) the child
///   is born in its cgroup: `clone3(CLONE_INTO_CGROUP)` with `into`;
/// - on each v1 hierarchy the child moves itself, by writing `0` into the
///   `tasks` fd opened here. Moving one thread, the caller, does not take
///   the kernel's global threadgroup lock for writing; moving a process by
///   pid through `cgroup.procs` does, and that waits for an RCU grace period
///   (6 to 15 ms here, once per create). The child is single-threaded, so
///   its one thread is the whole process.
#[derive(Debug, Default)]
pub struct Joiner {
    pub into: Option<OwnedFd>,
    tasks: Vec<(PathBuf, OwnedFd)>,
}

/// Opens what `Joiner` needs for the directories `dirs` (one per hierarchy;
/// a cgroup2 directory is told apart by its `cgroup.controllers`).
pub fn prepare_join(dirs: &[PathBuf]) -> Result<Joiner> {
    join_with(dirs.iter().map(|d| (d.as_path(), d.join("cgroup.controllers").exists())))
}

/// `prepare_join` for the directories of a placement, whose hierarchies
/// say which is cgroup2: no lookup is made.
pub fn prepare_join_placement(p: &Placement) -> Result<Joiner> {
    if p.hierarchies.len() != p.dirs.len() {
        return prepare_join(&p.dirs);
    }
    join_with(p.dirs.iter().zip(&p.hierarchies).map(|(d, h)| (d.as_path(), h.v2)))
}

/// Opens the joiner's fds for each directory, told whether it is cgroup2.
fn join_with<'a>(dirs: impl Iterator<Item = (&'a Path, bool)>) -> Result<Joiner> {
    let mut j = Joiner::default();
    for (dir, v2) in dirs {
        if v2 {
            let f = fs::OpenOptions::new()
                .read(true)
                .custom_flags(libc::O_PATH | libc::O_DIRECTORY)
                .open(dir)
                .map_err(io("open O_PATH", dir))?;
            j.into = Some(f.into());
        } else {
            let t = dir.join("tasks");
            let f = fs::OpenOptions::new().write(true).open(&t).map_err(io("open O_WRONLY", &t))?;
            j.tasks.push((t, f.into()));
        }
    }
    Ok(j)
}

impl Joiner {
    /// In the child: moves the calling thread into each v1 cgroup.
    pub fn join_self(&mut self) -> Result<()> {
        // The cgroup2 fd served the clone; the container must not keep it.
        self.into = None;
        for (path, fd) in self.tasks.drain(..) {
            let mut f = fs::File::from(fd);
            f.write_all(b"0").map_err(io("write 0 (this thread)", &path))?;
        }
        Ok(())
    }
}

/// Moves `pid` into each of `dirs` it is not in yet (with the systemd
/// driver: systemd put it into the scope where it manages the controller,
/// strata into the others).
pub fn attach(dirs: &[PathBuf], pid: i32) -> Result<()> {
    for dir in dirs {
        let procs = dir.join("cgroup.procs");
        let listed = crate::sys::read_small(&procs).map_err(io("read", &procs))?;
        if listed.lines().any(|l| l.trim() == pid.to_string()) {
            continue;
        }
        write_file(&procs, &pid.to_string())?;
    }
    Ok(())
}

/// Removes the directories strata created, deepest first. A directory that
/// still has processes is retried briefly (they are being killed).
pub fn remove(created: &[PathBuf]) {
    for d in created.iter().rev() {
        // Most often there is nothing below: one rmdir, no listing.
        match fs::remove_dir(d) {
            Ok(()) => continue,
            Err(e) if e.kind() == ErrorKind::NotFound => continue,
            Err(_) => {}
        }
        // Sub-cgroups made inside the container's (`exec --cgroup`, a
        // delegated subtree) go first, deepest first.
        remove_children(d);
        for _ in 0..200 {
            match fs::remove_dir(d) {
                Ok(()) => break,
                Err(e) if e.kind() == ErrorKind::NotFound => break,
                Err(_) => std::thread::sleep(std::time::Duration::from_millis(5)),
            }
        }
    }
}

fn remove_children(dir: &Path) {
    let Ok(rd) = fs::read_dir(dir) else { return };
    for e in rd.flatten() {
        if e.file_type().is_ok_and(|t| t.is_dir()) {
            remove_children(&e.path());
            let _ = fs::remove_dir(e.path());
        }
    }
}

/// `exec --cgroup` values (`path`, or `controller[,controller]:path`)
/// applied to the container's cgroups: for each of its directories, the
/// sub-cgroup the new process joins instead (`/`: the container's own).
/// The sub-cgroups must exist and stay below the container's (no `..`).
pub fn sub_cgroups(hier: &[Hierarchy], dirs: &[PathBuf], specs: &[String]) -> Result<Vec<PathBuf>> {
    let p = placement_of(hier, dirs);
    let mut out = dirs.to_vec();
    for spec in specs {
        let (controllers, rel) = match spec.split_once(':') {
            Some((c, r)) => (c.split(',').filter(|c| !c.is_empty()).collect::<Vec<_>>(), r),
            None => (Vec::new(), spec.as_str()),
        };
        let rel = Path::new(rel.trim_start_matches('/'));
        if rel.components().any(|c| !matches!(c, std::path::Component::Normal(_))) {
            return Err(CgroupError::Invalid(format!(
                "exec --cgroup {spec:?}: bad sub cgroup path: it must name a sub-cgroup, without `..`"
            )));
        }
        let mut matched = false;
        for (h, dir) in p.hierarchies.iter().zip(&p.dirs) {
            if !controllers.is_empty() && !controllers.iter().any(|c| h.has(c)) {
                continue;
            }
            matched = true;
            let sub = dir.join(rel);
            if !sub.is_dir() {
                return Err(CgroupError::Invalid(format!(
                    "exec --cgroup {spec:?}: adding pid to cgroup {}: no such file or directory",
                    sub.display()
                )));
            }
            if let Some(slot) = out.iter_mut().find(|d| *d == dir) {
                *slot = sub;
            }
        }
        if !matched {
            // runc's words.
            return Err(CgroupError::Invalid(format!(
                "exec --cgroup {spec:?}: unknown controller {}: the container has no cgroup with it",
                controllers.join(",")
            )));
        }
    }
    Ok(out)
}

/// Pids in the container's cgroup (from the first hierarchy that has it).
pub fn pids(paths: &[PathBuf]) -> Vec<i32> {
    for p in paths {
        if let Ok(s) = crate::sys::read_small(p.join("cgroup.procs")) {
            return s.lines().filter_map(|l| l.trim().parse().ok()).collect();
        }
    }
    Vec::new()
}

/// Freezes or thaws: `cgroup.freeze` on v2, the freezer controller on v1.
pub fn set_frozen(paths: &[PathBuf], frozen: bool) -> Result<()> {
    for p in paths {
        let v2 = p.join("cgroup.freeze");
        if v2.exists() {
            write_file(&v2, if frozen { "1" } else { "0" })?;
            // Freezing completes asynchronously: cgroup.events says when.
            let want = if frozen { "frozen 1" } else { "frozen 0" };
            for _ in 0..1000 {
                if crate::sys::read_small(p.join("cgroup.events")).is_ok_and(|e| e.lines().any(|l| l == want)) {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            return Err(CgroupError::Invalid(format!("{}: did not settle", v2.display())));
        }
        let v1 = p.join("freezer.state");
        if v1.exists() {
            write_file(&v1, if frozen { "FROZEN" } else { "THAWED" })?;
            // v1 freezing is asynchronous: wait until it settles.
            for _ in 0..1000 {
                let s = crate::sys::read_small(&v1).unwrap_or_default();
                if s.trim() == if frozen { "FROZEN" } else { "THAWED" } {
                    return Ok(());
                }
                std::thread::sleep(std::time::Duration::from_millis(1));
            }
            return Err(CgroupError::Invalid(format!("{}: did not settle", v1.display())));
        }
    }
    Err(CgroupError::Invalid("no freezer for this container".into()))
}

/// Whether the container's cgroup is frozen.
///
/// Only the directories that can hold the freezer are read: v1's freezer
/// hierarchy, the one under a mount named for it (`freezer`, or a comount
/// such as `freezer,devices`), where there is one. Without such a name
/// every directory is tried. Each file that is not there is a failing
/// lookup in cgroupfs, and `container::load` asks at every command.
pub fn is_frozen(paths: &[PathBuf]) -> bool {
    let freezer: Vec<&PathBuf> = paths.iter().filter(|p| under_freezer_mount(p)).collect();
    let read = |p: &Path, file: &str, frozen: &str| crate::sys::read_small(p.join(file)).is_ok_and(|s| s.trim() == frozen);
    if freezer.is_empty() {
        paths.iter().any(|p| read(p, "cgroup.freeze", "1") || read(p, "freezer.state", "FROZEN"))
    } else {
        freezer.iter().any(|p| read(p, "freezer.state", "FROZEN"))
    }
}

/// Whether a path component names the v1 freezer (`freezer`, or a comount
/// of it such as `freezer,devices`).
fn under_freezer_mount(p: &Path) -> bool {
    p.iter().any(|c| c.to_str().is_some_and(|s| s.split(',').any(|x| x == "freezer")))
}

#[cfg(test)]
mod frozen_tests {
    use super::*;

    fn dir(tag: &str) -> PathBuf {
        let d = std::env::temp_dir().join(format!("strata-frozen-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&d);
        d
    }

    #[test]
    fn v1_reads_the_freezer_hierarchy_and_v2_cgroup_freeze() {
        let d = dir("v1");
        let (freezer, memory) = (d.join("freezer,devices/c1"), d.join("memory/c1"));
        fs::create_dir_all(&freezer).unwrap();
        fs::create_dir_all(&memory).unwrap();
        fs::write(freezer.join("freezer.state"), "FROZEN\n").unwrap();
        // A freezer.state outside the freezer's mount is not read.
        fs::write(memory.join("freezer.state"), "THAWED\n").unwrap();
        assert!(is_frozen(&[memory.clone(), freezer.clone()]));
        fs::write(freezer.join("freezer.state"), "THAWED\n").unwrap();
        fs::write(memory.join("freezer.state"), "FROZEN\n").unwrap();
        assert!(!is_frozen(&[memory, freezer]));
        fs::remove_dir_all(&d).unwrap();

        let d = dir("v2");
        let unified = d.join("c1");
        fs::create_dir_all(&unified).unwrap();
        fs::write(unified.join("cgroup.freeze"), "1\n").unwrap();
        assert!(is_frozen(std::slice::from_ref(&unified)));
        fs::write(unified.join("cgroup.freeze"), "0\n").unwrap();
        assert!(!is_frozen(std::slice::from_ref(&unified)));
        fs::remove_dir_all(&d).unwrap();
    }
}
