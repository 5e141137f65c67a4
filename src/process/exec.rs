//! `strata exec`: a new process in a running container. The parent joins
//! the container's pid (and time) namespace for its children, clones the
//! process straight into it (and into its cgroup2 cgroup), and the child
//! moves itself into the v1 cgroups, joins the other namespaces, then takes
//! the common last steps of `finish`. No second fork.
//!
//! ```text
//!   parent (strata exec)                          child
//!   ────────────────────                          ─────
//!   open cgroup fds (cgroups::prepare_join)
//!   setns(pid_for_children), clone3 ─────────▶    (born in the container's pid ns
//!     (CLONE_INTO_CGROUP on cgroup2)               and cgroup2 cgroup)
//!                                                 write 0 to each v1 `tasks` fd
//!          ──── Proceed ─────────────────────▶    setns mnt/ipc/uts/net/cgroup, user last,
//!                                                 terminal, caps, user, seccomp
//!          ◀─── PtyMaster [fd] ──────────────     (only with -t and no --console-socket)
//!          ◀─── Error { msg } ───────────────     on failure, then exit(127)
//!          ◀─── (socket closes: CLOEXEC) ────     execve succeeded
//! ```

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::waitpid;
use oci_spec::runtime::Process;

use super::finish::{self, Final, InitError};
use super::sync::{self, Channel, Msg, SyncError};
use crate::cgroups;
use crate::container::{self, OpError};
use crate::linux::namespaces::{self, ChildrenNs, Kind};
use crate::linux::{caps, seccomp};
use crate::state::{Root, Status};
use crate::sys::{self, Forked, SysError};

#[derive(Debug, thiserror::Error)]
pub enum ExecError {
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("unable to start container process: {0}")]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Cgroup(#[from] cgroups::CgroupError),
    #[error(transparent)]
    Run(#[from] super::run::RunError),
    #[error("{0}")]
    Invalid(String),
}

#[derive(Debug, Clone)]
pub struct ExecOpts {
    pub id: String,
    pub process: ExecProcess,
    pub console_socket: Option<PathBuf>,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    /// `--pidfd-socket`: receives a pidfd of the new process.
    pub pidfd_socket: Option<PathBuf>,
    pub preserve_fds: u32,
    /// `--ignore-paused`: exec into a paused container (the process starts
    /// frozen, with the rest of the container).
    pub ignore_paused: bool,
    /// `--cgroup [controller:]path`: sub-cgroups of the container's to join.
    pub cgroups: Vec<String>,
}

/// Namespaces of the container's init, in the order the child joins them.
const JOIN_ORDER: [Kind; 6] = [Kind::Ipc, Kind::Uts, Kind::Net, Kind::Cgroup, Kind::Mount, Kind::User];

/// The new process: a whole one (`exec -p process.json`), or the
/// container's own process with the command line's overrides.
#[derive(Debug, Clone)]
pub enum ExecProcess {
    Given(Box<Process>),
    Overrides(Overrides),
}

/// Runs the process; returns its exit code (0 when detached).
pub fn exec(root: &Root, opts: &ExecOpts) -> Result<i32, ExecError> {
    // As at create: the caller's other fds are not the process's.
    sys::close_from(3 + opts.preserve_fds)?;
    let (st, status) = container::load(root, &opts.id)?;
    crate::logging::debug(|| format!("exec {}: container is {} (init pid {})", opts.id, status.as_str(), st.pid));
    if status == Status::Paused && !opts.ignore_paused {
        // runc's words.
        return Err(ExecError::Invalid(format!(
            "container {}: cannot exec in a paused container (use --ignore-paused to override)",
            st.id
        )));
    }
    if !matches!(status, Status::Running | Status::Created | Status::Paused) {
        return Err(ExecError::Invalid(format!("container {}: cannot exec in a container that is {}", st.id, status.as_str())));
    }
    // One parse of the recorded config: the base process and the seccomp profile.
    let parts = st.exec_parts().map_err(|e| ExecError::Invalid(e.to_string()))?;
    let (base, seccomp_profile) = (parts.process, parts.seccomp);
    let personality = crate::linux::personality::plan(parts.personality.as_ref()).map_err(ExecError::Invalid)?;
    let mempolicy = crate::linux::mempolicy::plan(parts.memory_policy.as_ref()).map_err(ExecError::Invalid)?;
    let process = match &opts.process {
        ExecProcess::Given(p) => (**p).clone(),
        ExecProcess::Overrides(o) => process_from(&base.unwrap_or_default(), o).map_err(ExecError::Invalid)?,
    };
    let terminal = process.terminal() == Some(true);
    if terminal && opts.detach && opts.console_socket.is_none() {
        return Err(ExecError::Invalid("--tty with --detach needs --console-socket".into()));
    }
    if process.args().as_ref().is_none_or(|a| a.is_empty()) {
        return Err(ExecError::Invalid("exec: no command given".into()));
    }
    let init_ns = |k: Kind| PathBuf::from(format!("/proc/{}/ns/{}", st.pid, k.proc_name()));
    let own = |k: Kind| std::fs::read_link(format!("/proc/self/ns/{}", k.proc_name())).ok();
    let differs = |k: Kind| std::fs::read_link(init_ns(k)).ok().is_some_and(|n| Some(n) != own(k));
    // Open the init's namespaces now; the pid is checked (start time) above.
    let mut joins: Vec<(Kind, OwnedFd, PathBuf)> = JOIN_ORDER
        .iter()
        .filter(|k| differs(**k))
        .map(|k| Ok((*k, namespaces::open_ns(&init_ns(*k))?, init_ns(*k))))
        .collect::<Result<_, SysError>>()?;
    // Rootless: the caller has no capability over the container's other
    // namespaces until it is in its user namespace, so this process joins
    // that one first (for good: it cannot come back), then the pid one for
    // its child; the child is born in the user namespace.
    let user_first = !nix::unistd::geteuid().is_root() && joins.iter().any(|(k, _, _)| *k == Kind::User);
    let in_userns = joins.iter().any(|(k, _, _)| *k == Kind::User);
    let mut plan = namespaces::Plan::default();
    for k in [Kind::Pid, Kind::Time] {
        if differs(k) {
            plan.parent_joins.push((k, init_ns(k)));
        }
    }
    let filter = seccomp_profile.as_ref().map(seccomp::compile).transpose().map_err(|e| ExecError::Invalid(e.to_string()))?;
    // With notify rules the exec'd process's listener fd goes to the
    // container's seccomp agent too, connected here, on the host.
    let listener = match (seccomp_profile.as_ref().and_then(|s| s.listener_path().clone()), &filter) {
        (Some(p), Some(f)) if f.notify => Some(OwnedFd::from(UnixStream::connect(&p).map_err(|e| {
            ExecError::Invalid(format!("failed to connect with seccomp agent specified in the seccomp profile ({}): {e}", p.display()))
        })?)),
        _ => None,
    };
    let metadata = seccomp_profile.as_ref().and_then(|s| s.listener_metadata().clone());
    let cap_plan = caps::plan(process.capabilities().as_ref()).map_err(|e| ExecError::Invalid(e.to_string()))?;
    caps::check_available(&cap_plan).map_err(|e| ExecError::Invalid(e.to_string()))?;
    let sched = crate::linux::sched::plan(&process, true).map_err(ExecError::Invalid)?;
    if let Some(list) = process.exec_cpu_affinity().as_ref().and_then(|a| a.initial().clone()) {
        // Set here, before the clone: the child holds it from birth, before
        // it joins the container's cgroup.
        let cpus = crate::linux::sched::cpu_set(&list, "process.execCPUAffinity.initial").map_err(ExecError::Invalid)?;
        crate::linux::sched::set_affinity(&cpus, "process.execCPUAffinity.initial")?;
    }
    let console = match &opts.console_socket {
        Some(p) if terminal => Some(OwnedFd::from(UnixStream::connect(p).map_err(sys::io_err("connect", p))?)),
        _ => None,
    };
    // Only a joined user namespace can deny setgroups. Read from the host's
    // checked procfs, before the child is anywhere the container could plant
    // a file over /proc/self/setgroups.
    let setgroups_denied =
        in_userns && crate::procfs::ProcFs::mounted()?.read_to_string(&format!("{}/setgroups", st.pid)).is_ok_and(|s| s.trim() == "deny");
    let join_dirs = if opts.cgroups.is_empty() {
        st.cgroup_paths.clone()
    } else {
        cgroups::sub_cgroups(&cgroups::read_hierarchies(), &st.cgroup_paths, &opts.cgroups)?
    };
    let joiner = cgroups::prepare_join(&join_dirs)?;
    let (parent_chan, child_chan) = sync::pair()?;
    let mut set = SigSet::empty();
    if !opts.detach {
        [
            Signal::SIGINT,
            Signal::SIGTERM,
            Signal::SIGHUP,
            Signal::SIGQUIT,
            Signal::SIGUSR1,
            Signal::SIGUSR2,
            Signal::SIGWINCH,
            Signal::SIGCHLD,
        ]
        .iter()
        .for_each(|s| set.add(*s));
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(sys::err("sigprocmask", "", "SIG_BLOCK"))?;
    }

    if user_first {
        let i = joins.iter().position(|(k, _, _)| *k == Kind::User).expect("checked above");
        let (k, fd, path) = joins.remove(i);
        namespaces::join(k, &fd, &path)?;
    }
    // This process makes no other child, so its namespaces for children
    // are left as they are (never restored). Coming back may not even be
    // allowed: after joining the container's user namespace, or as root of
    // a user namespace (rootless podman), the host's pid namespace is out
    // of reach.
    ChildrenNs::enter_for_good(&plan, &[])?;
    let pid = match sys::clone_process(0, joiner.into.as_ref().map(|f| f.as_fd())) {
        Err(e) => return Err(e.into()),
        Ok(Forked::Child) => {
            drop(parent_chan);
            let state_json = serde_json::to_string(&st.oci(Status::Running)).unwrap_or_default();
            let ctx = Child {
                process: &process,
                joins,
                in_userns,
                cgroup_join: joiner,
                chan: child_chan,
                console,
                pty_to_parent: terminal && opts.console_socket.is_none(),
                preserve_fds: opts.preserve_fds,
            };
            let fin = Final {
                exe: PathBuf::new(),
                cap_plan,
                filter,
                listener,
                state_json,
                metadata,
                start_hooks: Vec::new(),
                setgroups_denied,
                personality,
                sched,
                mempolicy,
            };
            child(ctx, fin)
        }
        Ok(Forked::Parent(pid)) => pid,
    };
    drop(joiner);
    drop(child_chan);
    drop(console);
    let fail = |e: ExecError| {
        let _ = kill(pid, Signal::SIGKILL);
        let _ = waitpid(pid, None);
        e
    };
    parent_chan.send(&Msg::Proceed).map_err(|e| fail(e.into()))?;
    let mut pty = None;
    loop {
        match parent_chan.recv() {
            Ok((Msg::PtyMaster, fd)) => pty = fd,
            Ok((Msg::Error { msg }, _)) => {
                let _ = waitpid(pid, None);
                return Err(SyncError::Init(msg).into());
            }
            Ok((other, _)) => return Err(fail(SyncError::Unexpected { want: "exec", got: other }.into())),
            // The socket is CLOEXEC: EOF means execve succeeded.
            Err(SyncError::Closed) => break,
            Err(e) => return Err(fail(e.into())),
        }
    }
    crate::logging::debug(|| format!("exec {}: process {pid} started in the container's namespaces and cgroups", opts.id));
    if let Some(pf) = &opts.pid_file {
        super::parent::write_pid_file(pf, pid.as_raw()).map_err(|e| ExecError::Invalid(e.to_string()))?;
    }
    if let Some(sock) = &opts.pidfd_socket {
        super::sync::send_pidfd(sock, pid.as_raw())?;
    }
    if opts.detach {
        return Ok(0);
    }
    let sfd = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC).map_err(sys::err("signalfd", "", "SFD_CLOEXEC"))?;
    Ok(super::run::wait_loop(pid, &sfd, pty)?)
}

struct Child<'a> {
    process: &'a Process,
    joins: Vec<(Kind, OwnedFd, PathBuf)>,
    /// The container has a user namespace (joined here, or by the parent).
    in_userns: bool,
    cgroup_join: cgroups::Joiner,
    chan: Channel,
    console: Option<OwnedFd>,
    pty_to_parent: bool,
    preserve_fds: u32,
}

/// The exec'd process before execve; never returns.
fn child(mut ctx: Child<'_>, fin: Final) -> ! {
    crate::logging::in_container();
    let err = match child_steps(&mut ctx, fin) {
        Ok(never) => match never {},
        Err(e) => e,
    };
    if ctx.chan.send(&Msg::Error { msg: err.to_string() }).is_err() {
        eprintln!("strata exec: {err}");
    }
    std::process::exit(127)
}

fn child_steps(ctx: &mut Child<'_>, mut fin: Final) -> Result<finish::Never, InitError> {
    // Not dumpable until execve: container processes must not reach the
    // strata binary through /proc/<pid>/exe (CVE-2019-5736 class).
    nix::sys::prctl::set_dumpable(false).map_err(sys::err("prctl", "", "PR_SET_DUMPABLE 0"))?;
    ctx.cgroup_join.join_self()?;
    ctx.chan.expect(Msg::Proceed, "Proceed")?;
    for (k, fd, path) in &ctx.joins {
        namespaces::join(*k, fd, path)?;
    }
    if ctx.in_userns {
        let root = nix::unistd::Gid::from_raw(0);
        nix::unistd::setresgid(root, root, root).map_err(sys::err("setresgid", 0, "user namespace"))?;
        let uroot = nix::unistd::Uid::from_raw(0);
        nix::unistd::setresuid(uroot, uroot, uroot).map_err(sys::err("setresuid", 0, "user namespace"))?;
    }
    // A session of its own, terminal or not, as runc's: a process whose
    // session leader is outside the container could not be checkpointed.
    nix::unistd::setsid().map_err(sys::err("setsid", "", ""))?;
    if ctx.process.terminal() == Some(true) {
        let to_parent = ctx.pty_to_parent.then_some(&ctx.chan);
        let console = ctx
            .console
            .as_ref()
            .map(|c| c.try_clone())
            .transpose()
            .map_err(|e| sys::io_err("dup", std::path::Path::new("console socket"))(e))?;
        finish::setup_terminal(ctx.process, console, to_parent, false)?;
    }
    let env = ctx.process.env().clone().unwrap_or_default();
    let args = ctx.process.args().clone().unwrap_or_default();
    fin.exe = finish::find_executable(&args[0], &env, ctx.process.cwd())?;
    sys::cloexec_from(3 + ctx.preserve_fds)?;
    finish::finish(ctx.process, fin)
}

/// Builds the process of `strata exec ARGS...` from the container's own
/// process and the command-line overrides, as runc does.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    pub args: Vec<String>,
    pub env: Vec<String>,
    pub cwd: Option<PathBuf>,
    pub user: Option<String>,
    pub additional_gids: Vec<u32>,
    pub caps: Vec<String>,
    pub no_new_privs: bool,
    pub tty: bool,
}

pub fn process_from(base: &Process, o: &Overrides) -> Result<Process, String> {
    let mut v = serde_json::to_value(base).map_err(|e| e.to_string())?;
    v["args"] = serde_json::json!(o.args);
    v["terminal"] = serde_json::json!(o.tty);
    let mut env: Vec<String> = base.env().clone().unwrap_or_default();
    for kv in &o.env {
        let key = kv.split('=').next().unwrap_or("");
        env.retain(|e| e.split('=').next() != Some(key));
        env.push(kv.clone());
    }
    v["env"] = serde_json::json!(env);
    if let Some(cwd) = &o.cwd {
        v["cwd"] = serde_json::json!(cwd);
    }
    if let Some(u) = &o.user {
        let (uid, gid) = u.split_once(':').unwrap_or((u, "0"));
        let uid: u32 = uid.parse().map_err(|_| format!("--user {u:?}: want UID[:GID]"))?;
        let gid: u32 = gid.parse().map_err(|_| format!("--user {u:?}: want UID[:GID]"))?;
        v["user"]["uid"] = uid.into();
        v["user"]["gid"] = gid.into();
    }
    if !o.additional_gids.is_empty() {
        v["user"]["additionalGids"] = serde_json::json!(o.additional_gids);
    }
    if o.no_new_privs {
        v["noNewPrivileges"] = true.into();
    }
    // Bounding, effective and permitted: an added cap never becomes
    // inheritable (CVE-2022-29162 class), as with runc. Where the config
    // has an inheritable set, it is raised ambient too, as runc 1.5 does
    // (the kernel grants that only for caps the inheritable set holds).
    let ambient_too = v["capabilities"]["inheritable"].is_array();
    for c in &o.caps {
        let sets: &[&str] =
            if ambient_too { &["bounding", "effective", "permitted", "ambient"] } else { &["bounding", "effective", "permitted"] };
        for &set in sets {
            if !v["capabilities"][set].is_array() {
                v["capabilities"][set] = serde_json::json!([]);
            }
            if let Some(a) = v["capabilities"][set].as_array_mut() {
                a.push(c.clone().into());
            }
        }
    }
    serde_json::from_value(v).map_err(|e| e.to_string())
}
