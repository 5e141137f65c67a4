//! Operations on an existing container: start, state, kill, delete, pause,
//! resume, ps. Each loads the state, checks the status the operation
//! needs, and acts.

use std::os::fd::AsFd;

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::unistd::Pid;

use crate::cgroups::{self, CgroupError};
use crate::hooks;
use crate::state::{self, Root, State, StateError, Status};
use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum OpError {
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error("container {id}: {msg}")]
    Status { id: String, msg: String },
    #[error("unknown signal {0:?}")]
    BadSignal(String),
}

type Result<T> = std::result::Result<T, OpError>;

pub(crate) fn status_err(st: &State, msg: impl Into<String>) -> OpError {
    OpError::Status { id: st.id.clone(), msg: msg.into() }
}

pub fn status(root: &Root, st: &State) -> Status {
    st.status(root, cgroups::is_frozen(&st.cgroup_paths))
}

/// Loads a container and its live status.
pub fn load(root: &Root, id: &str) -> Result<(State, Status)> {
    let st = root.load(id)?;
    let s = status(root, &st);
    Ok((st, s))
}

/// `start`: let init exec the user process, then run poststart hooks.
pub fn start(root: &Root, id: &str) -> Result<()> {
    let (st, s) = load(root, id)?;
    if s != Status::Created {
        return Err(status_err(&st, format!("cannot start a container that is {}", s.as_str())));
    }
    start_created(root, &st)
}

/// The error of a start whose init failed before it was let go, in its
/// words (`run` hears them over the sync socket).
pub(crate) fn init_failed(st: &State, why: &str) -> OpError {
    status_err(st, format!("cannot start a container that is stopped: init failed: {why}"))
}

/// `start` of a container this process has just created (`run`), whose
/// state it holds: not read again. An init that died since is told by
/// its exec fifo, which no one then reads.
pub fn start_created(root: &Root, st: &State) -> Result<()> {
    let id = st.id.as_str();
    // Without `process` there is nothing to start: an error, here, where the
    // caller sees it (runtime-spec; runc refuses such a config at create).
    if !st.has_process().map_err(|e| status_err(st, e.to_string()))? {
        return Err(status_err(st, "cannot start: config.json has no process"));
    }
    let fifo = root.container_dir(id)?.join(state::EXEC_FIFO);
    let fd = match open(&fifo, OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        // Init said why on the container's stderr, as runc's does.
        Err(Errno::ENXIO) => return Err(status_err(st, "init is not waiting (it died)")),
        Err(e) => return Err(sys::err("open", fifo.display(), "O_WRONLY|O_NONBLOCK")(e).into()),
    };
    nix::unistd::write(&fd, b"0").map_err(sys::err("write", fifo.display(), ""))?;
    crate::logging::debug(|| format!("start {id}: init {} let go through {}", st.pid, fifo.display()));
    let _ = std::fs::remove_file(&fifo);
    // When init execs (or dies) its fifo fd closes and we see POLLERR: the
    // user process is running before poststart hooks run.
    let mut fds = [PollFd::new(fd.as_fd(), PollFlags::empty())];
    loop {
        match poll(&mut fds, PollTimeout::NONE) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys::err("poll", fifo.display(), "")(e).into()),
            Ok(_) => break,
        }
    }
    // Init may have held the fifo when we wrote, then died before it read
    // (its fd closes either way): then our byte is still in the pipe.
    if sys::pipe_unread(fd.as_fd(), &fifo.display().to_string())? > 0 {
        return Err(status_err(st, "init died before it was let go"));
    }
    poststart(st)
}

/// The poststart hooks of a container just started.
pub(crate) fn poststart(st: &State) -> Result<()> {
    if let Some(h) = st.hooks()?.and_then(|h| h.poststart().clone()) {
        let json = serde_json::to_vec(&st.oci(Status::Running)).unwrap_or_default();
        // A failing poststart hook stops the container, and the later ones
        // do not run (runtime-spec 1.2, as runc does).
        if let Err(e) = hooks::run_all("poststart", &h, &json) {
            kill_and_wait(st);
            return Err(e.into());
        }
    }
    Ok(())
}

/// Parses a signal given as a number, `KILL` or `SIGKILL`; 0 (`None`) is
/// the null signal, which only checks that the process exists.
pub fn parse_signal(s: &str) -> Result<Option<Signal>> {
    if let Ok(n) = s.parse::<i32>() {
        return if n == 0 { Ok(None) } else { Signal::try_from(n).map(Some).map_err(|_| OpError::BadSignal(s.into())) };
    }
    let up = s.to_ascii_uppercase();
    let name = if up.starts_with("SIG") { up } else { format!("SIG{up}") };
    name.parse::<Signal>().map(Some).map_err(|_| OpError::BadSignal(s.into()))
}

/// runc's text for a container whose init is gone: containerd's shim and
/// go-runc match it (`container not running`) to tell "already stopped"
/// from a failure.
pub const NOT_RUNNING: &str = "container not running";

pub fn kill_container(root: &Root, id: &str, sig: Option<Signal>, all: bool) -> Result<()> {
    let (st, s) = load(root, id)?;
    let signame = sig.map_or("0", |s| s.as_str());
    // Without a pid namespace of its own, killing init leaves the others
    // alive: SIGKILL goes to every process of the container's cgroup, init
    // gone or not (as runc does).
    let everyone = all || (sig == Some(Signal::SIGKILL) && !st.cgroup_paths.is_empty() && !st.own_pid_namespace()?);
    if everyone {
        for p in processes(&st) {
            let _ = kill(Pid::from_raw(p), sig);
        }
    } else if s == Status::Stopped {
        return Err(status_err(&st, NOT_RUNNING));
    } else {
        kill(Pid::from_raw(st.pid), sig).map_err(sys::err("kill", st.pid, signame))?;
    }
    // A frozen process cannot die: thaw a paused container after SIGKILL
    // (as runc does), or it stays paused with the signal pending.
    if sig == Some(Signal::SIGKILL) && s == Status::Paused {
        cgroups::set_frozen(&st.cgroup_paths, false)?;
    }
    Ok(())
}

/// `delete`: a stopped or created (or, with force, any) container goes away
/// with its cgroups and state; poststop hooks run last. A created
/// container's init is killed first, as runc does; so is an init left
/// alive by a create that died before it finished.
pub fn delete(root: &Root, id: &str, force: bool) -> Result<()> {
    let (st, s) = match load(root, id) {
        Err(e @ OpError::State(StateError::NotFound(_))) => {
            // A create killed while reserving the id, or a delete killed
            // while removing it, leaves only a hidden directory: that goes.
            root.reap_reservations();
            if force {
                root.remove_stateless(id)?;
            }
            return Err(e);
        }
        r => r?,
    };
    match s {
        Status::Stopped | Status::Created => kill_and_wait(&st),
        _ if force => kill_and_wait(&st),
        _ => return Err(status_err(&st, format!("cannot delete a container that is {} (use --force)", s.as_str()))),
    }
    destroy(root, &st)
}

fn kill_and_wait(st: &State) {
    let mut pids = processes(st);
    if st.init_alive() {
        pids.push(st.pid);
    }
    if pids.is_empty() {
        return;
    }
    for p in &pids {
        let _ = kill(Pid::from_raw(*p), Signal::SIGKILL);
    }
    // A frozen cgroup must thaw for SIGKILL to be delivered.
    let _ = cgroups::set_frozen(&st.cgroup_paths, false);
    for _ in 0..2000 {
        if !st.init_alive() {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// The container's processes: its cgroup's; or, for a container with no
/// cgroup of its own (rootless without a writable cgroup), those in its pid
/// namespace, or without one of its own, init and its descendants.
pub fn processes(st: &State) -> Vec<i32> {
    if !st.cgroup_paths.is_empty() {
        return cgroups::pids(&st.cgroup_paths);
    }
    if !st.init_alive() {
        return Vec::new();
    }
    let ns = |pid: &str| std::fs::read_link(format!("/proc/{pid}/ns/pid")).ok();
    let theirs = ns(&st.pid.to_string());
    if theirs.is_some() && theirs != ns("self") {
        let mut out: Vec<i32> = std::fs::read_dir("/proc")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
            .filter(|p| ns(&p.to_string()) == theirs)
            .collect();
        out.sort_unstable();
        return out;
    }
    let mut out = vec![st.pid];
    let mut i = 0;
    while i < out.len() {
        let p = out[i];
        for task in std::fs::read_dir(format!("/proc/{p}/task")).into_iter().flatten().flatten() {
            let children = std::fs::read_to_string(task.path().join("children")).unwrap_or_default();
            out.extend(children.split_whitespace().filter_map(|c| c.parse::<i32>().ok()).filter(|c| !out.contains(c)).collect::<Vec<_>>());
        }
        i += 1;
    }
    out
}

/// Removes what the container left: cgroups, host mounts, state; then poststop.
pub fn destroy(root: &Root, st: &State) -> Result<()> {
    if let Some(unit) = st.systemd_unit.as_ref().filter(|_| cgroups::systemd::running()) {
        // systemd removes the scope's cgroup; an empty scope it may have
        // collected already (and with systemd gone, so is the scope).
        cgroups::systemd::Systemd::connect().and_then(|sd| sd.stop(unit)).map_err(|e| status_err(st, e.to_string()))?;
    }
    cgroups::remove(&st.cgroup_dirs);
    crate::linux::resctrl::remove(&st.resctrl_dirs);
    for m in st.host_mounts.iter().rev() {
        let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
    }
    if let Some(dir) = &st.store {
        // The container's upper, work and init layers; shared layers stay.
        let store = crate::layers::Store::open(dir).map_err(|e| status_err(st, e.to_string()))?;
        crate::layers::remove_container(&store, &st.id).map_err(|e| status_err(st, e.to_string()))?;
    }
    root.remove(&st.id)?;
    if let Some(h) = st.hooks()?.and_then(|h| h.poststop().clone()) {
        let json = serde_json::to_vec(&st.oci(Status::Stopped)).unwrap_or_default();
        hooks::run_all_warn("poststop", &h, &json, |e| log::warn(&e.to_string()));
    }
    Ok(())
}

pub fn pause(root: &Root, id: &str, frozen: bool) -> Result<()> {
    let (st, s) = load(root, id)?;
    let ok = if frozen { s == Status::Running || s == Status::Created } else { s == Status::Paused };
    if !ok {
        return Err(status_err(&st, format!("cannot {} a container that is {}", if frozen { "pause" } else { "resume" }, s.as_str())));
    }
    cgroups::set_frozen(&st.cgroup_paths, frozen)?;
    Ok(())
}

/// `update`: new limits for a running (or created, or paused) container;
/// the state's config records them.
pub fn update(root: &Root, id: &str, patch: &serde_json::Value) -> Result<()> {
    let (mut st, s) = load(root, id)?;
    if s == Status::Stopped {
        return Err(status_err(&st, "cannot update a stopped container"));
    }
    let res: oci_spec::runtime::LinuxResources =
        serde_json::from_value(patch.clone()).map_err(|e| status_err(&st, format!("resources: {e}")))?;
    let placement = cgroups::placement_of(&cgroups::read_hierarchies(), &st.cgroup_paths);
    if let Some(unit) = &st.systemd_unit {
        // systemd learns the new limits too, or a reload would undo them.
        let props = cgroups::systemd::resource_properties(Some(&res), placement.v2);
        cgroups::systemd::Systemd::connect().and_then(|sd| sd.set_properties(unit, &props))?;
    }
    let mut config: serde_json::Value = serde_json::from_str(st.config.get()).unwrap_or_default();
    // New device rules keep runc's defaults after them, as at create.
    let extra_allow = match serde_json::from_value::<oci_spec::runtime::Linux>(config["linux"].clone()) {
        Ok(linux) if res.devices().is_some() && crate::userns::host_root() => cgroups::default_device_rules(&linux),
        _ => Vec::new(),
    };
    cgroups::update(&placement, &res, &extra_allow)?;
    merge(&mut config["linux"]["resources"], patch);
    // Recorded only if the result is still a valid config.
    if let Ok(config) = serde_json::from_value::<oci_spec::runtime::Spec>(config).and_then(|spec| State::new_config(&spec)) {
        st.config = config;
        root.save(&st)?;
    }
    Ok(())
}

fn merge(dst: &mut serde_json::Value, src: &serde_json::Value) {
    match (dst, src) {
        (serde_json::Value::Object(d), serde_json::Value::Object(s)) => {
            for (k, v) in s {
                merge(d.entry(k.clone()).or_insert(serde_json::Value::Null), v);
            }
        }
        (d, s) => *d = s.clone(),
    }
}

/// One `events` record, as runc prints them: `type`, `id`, then `data`
/// (in this order; scripts match the line's start).
pub fn event(kind: &str, id: &str, data: serde_json::Value) -> String {
    #[derive(serde::Serialize)]
    struct Event<'a> {
        #[serde(rename = "type")]
        kind: &'a str,
        id: &'a str,
        #[serde(skip_serializing_if = "serde_json::Value::is_null")]
        data: serde_json::Value,
    }
    serde_json::to_string(&Event { kind, id, data }).unwrap_or_default()
}

/// `events`: with `stats_once`, one stats record; otherwise stats every
/// `interval` and an `oom` record whenever the OOM killer acts, until the
/// container stops.
pub fn events(root: &Root, id: &str, stats_once: bool, interval: std::time::Duration, out: &mut dyn std::io::Write) -> Result<()> {
    let (st, _) = load(root, id)?;
    let files = cgroups::stats::Files { dirs: &st.cgroup_paths };
    if stats_once {
        let _ = writeln!(out, "{}", event("stats", id, cgroups::stats::stats(&files)));
        return Ok(());
    }
    // This runs as long as the container does: on malloc from here.
    crate::sys::arena::stop();
    let mut ooms = cgroups::stats::oom_kills(&files);
    let tick = std::time::Duration::from_millis(100);
    let mut since = std::time::Duration::ZERO;
    while st.init_alive() {
        let now = cgroups::stats::oom_kills(&files);
        if now > ooms {
            let _ = writeln!(out, "{}", event("oom", id, serde_json::Value::Null));
            ooms = now;
        }
        if since >= interval {
            let _ = writeln!(out, "{}", event("stats", id, cgroups::stats::stats(&files)));
            since = std::time::Duration::ZERO;
        }
        let _ = out.flush();
        std::thread::sleep(tick);
        since += tick;
    }
    Ok(())
}

/// Warnings that do not fail an operation go to the runtime log (stderr by default).
pub mod log {
    pub fn warn(msg: &str) {
        crate::logging::emit("warning", msg);
    }
}
