//! The container's init process, from clone to execve: an ordered list of
//! steps (see the ladder in `sync.rs`). Runs in the child of the clone, in
//! the container's new namespaces, and never returns: it execs the user's
//! process or exits with an error sent to the parent.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, setresgid, setresuid};

use super::finish::{self, InitError};
use super::sync::{Channel, Msg, SyncError};
use crate::cgroups::Hierarchy;
use crate::hooks;
use crate::linux::{caps, mounts, namespaces, rlimits, rootfs, seccomp};
use crate::procfs::{self, ProcFs};
use crate::spec::Bundle;
use crate::sys;

type Result<T> = std::result::Result<T, InitError>;

/// Everything init needs, prepared by the parent before the clone.
pub struct InitContext {
    pub bundle: Bundle,
    pub ns: namespaces::Plan,
    /// The sync channel; `None` once init has reported `Created`.
    pub chan: Option<Channel>,
    /// exec.fifo, opened O_RDWR by the parent (sent before HooksDone).
    pub fifo: Option<OwnedFd>,
    /// false: no mount namespace; mounts go to the host's, under the rootfs.
    pub own_mount_ns: bool,
    pub console_socket: Option<OwnedFd>,
    /// `run -t` without a console socket: send the pty master to the parent.
    pub pty_to_parent: bool,
    pub no_pivot: bool,
    /// `--no-new-keyring`: keep the caller's session keyring.
    pub no_new_keyring: bool,
    pub id: String,
    pub preserve_fds: u32,
    pub hierarchies: Vec<Hierarchy>,
    /// The container's cgroup directory in each hierarchy.
    pub cgroup_dirs: Vec<PathBuf>,
    /// Init moves itself into its v1 cgroups with this, first thing.
    pub cgroup_join: crate::cgroups::Joiner,
    /// An image-backed rootfs for init to mount (target: the bundle's rootfs).
    pub overlay: Option<crate::layers::OverlayPlan>,
    /// Rootless (`--rootless`, auto: not root of the host): the parent (or
    /// newuidmap) must open init's /proc files to write the id maps, which
    /// a non-dumpable init's are closed to; and devices and sysfs follow the
    /// user namespace rules even where the config asks for no user
    /// namespace (rootless podman runs strata inside its own).
    pub rootless: bool,
    /// `run`: `Start` comes over the sync socket, which init then holds
    /// until its execve (the parent's sign that it has let go); no
    /// exec.fifo.
    pub start_by_channel: bool,
}

/// Runs init; never returns.
pub fn run(mut ctx: InitContext) -> ! {
    crate::logging::in_container();
    let mut chan = ctx.chan.take();
    match steps(&mut ctx, &mut chan) {
        Ok(never) => match never {},
        Err(e) => {
            // Until Created the parent listens on the channel; after it, the
            // container's stderr is the only witness (as with runc). A parent
            // that went away has said (or will say) why itself.
            let parent_gone = matches!(e, InitError::Sync(super::sync::SyncError::Closed));
            let sent = chan.as_ref().is_some_and(|c| c.send(&Msg::Error { msg: e.to_string() }).is_ok());
            if !sent && !parent_gone {
                // The container's stderr: the error alone, as runc prints it
                // (it names what failed: `exec /run.sh: no such file ...`).
                eprintln!("{e}");
            }
            std::process::exit(1)
        }
    }
}

pub(crate) use finish::Never;

fn steps(ctx: &mut InitContext, chan_slot: &mut Option<Channel>) -> Result<Never> {
    let chan = chan_slot.as_ref().ok_or_else(|| InitError::Other("no sync channel".into()))?;
    let spec = ctx.bundle.spec.clone();
    // `process` may be unset at create; `start` then fails (runtime-spec).
    let process = spec.process().clone().unwrap_or_default();
    let has_process = spec.process().is_some();
    let linux = spec.linux().clone().unwrap_or_default();

    // Not dumpable until execve: a process in the container must not reach
    // the strata binary through /proc/<pid>/exe (CVE-2019-5736 class; the
    // binary is sealed too). Rootless, only once the id maps are written.
    let not_dumpable = || nix::sys::prctl::set_dumpable(false).map_err(sys::err("prctl", "", "PR_SET_DUMPABLE 0"));
    if !ctx.rootless {
        not_dumpable()?;
    }
    // Into the cgroups before anything else (and before the cgroup namespace).
    ctx.cgroup_join.join_self()?;
    // Idmapped bind mounts come ready-made from the parent (see
    // linux::idmap), one per message, before Proceed.
    let mut trees = std::collections::HashMap::new();
    let mut image_rootfs = None;
    loop {
        match chan.recv()? {
            (Msg::Proceed, _) => break,
            (Msg::Rootfs, Some(tree)) => image_rootfs = Some(tree),
            (Msg::MountTree { index }, Some(tree)) => {
                trees.insert(index, tree);
            }
            (got, _) => return Err(SyncError::Unexpected { want: "Proceed", got }.into()),
        }
    }
    if ctx.rootless {
        not_dumpable()?;
    }
    join_namespaces(&ctx.ns)?;
    if ctx.ns.userns() {
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(sys::err(
            "setresgid",
            0,
            "become root in user namespace",
        ))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(sys::err(
            "setresuid",
            0,
            "become root in user namespace",
        ))?;
    }
    namespaces::unshare_flags(ctx.ns.unshare_in_init)?;
    if ctx.ns.pid_after_join {
        enter_pid_namespace(chan)?;
    }
    nix::unistd::setsid().map_err(sys::err("setsid", "", ""))?;
    if !ctx.no_new_keyring {
        // Kernels or user namespaces without keyring support: go on without one, as runc does.
        match sys::join_session_keyring(&format!("_ses.{}", ctx.id)) {
            Err(e)
                if matches!(
                    e.errno,
                    nix::errno::Errno::ENOSYS | nix::errno::Errno::EACCES | nix::errno::Errno::EPERM | nix::errno::Errno::EDQUOT
                ) => {}
            r => r?,
        }
    }

    let rootfs = ctx.bundle.rootfs.clone();
    let prop = linux.rootfs_propagation().as_deref().map(rootfs::propagation_flags).transpose().map_err(InitError::Other)?;
    if ctx.own_mount_ns {
        rootfs::propagate(&rootfs, rootfs::setup_propagation(prop))?;
    }
    if let Some(plan) = &ctx.overlay {
        // The image's layers, stacked on the bundle's empty rootfs dir, in
        // this mount namespace only: the mount dies with the container.
        crate::layers::mount_overlay(plan).map_err(|e| InitError::Other(e.to_string()))?;
    }
    if let Some(tree) = image_rootfs {
        // The same, made by the parent (idmapped layers, user namespace).
        let dir = open(&rootfs, OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
            "open",
            rootfs.display(),
            "O_PATH|O_DIRECTORY",
        ))?;
        sys::mount_api::move_mount_onto(tree.as_fd(), dir.as_fd(), &format!("image rootfs -> {}", rootfs.display()))?;
    }
    let root = rootfs::bind_rootfs(&rootfs)?;
    let mut dev_is_bind = false;
    let mut dev_ro = None;
    for (i, m) in spec.mounts().iter().flatten().enumerate() {
        let mut op = mounts::plan(m);
        // A destination that spells out the rootfs's own host path is taken
        // inside it, as runc has always taken it.
        if let Ok(inner) = op.dest.strip_prefix(&rootfs) {
            op.dest = Path::new("/").join(inner);
        }
        if op.fstype == "sysfs"
            && (ctx.ns.userns() || ctx.rootless)
            && !(ctx.ns.has_new(namespaces::Kind::Net) || ctx.ns.joins(namespaces::Kind::Net))
        {
            // sysfs may be mounted only by the owner of the network
            // namespace: in a user namespace without one of its own (rootless
            // above all) it is the host's /sys, bound read-only (runc's rule).
            op = mounts::sysfs_as_bind(&op);
        }
        if op.dest == Path::new("/dev") && op.is_bind() {
            dev_is_bind = true;
        }
        if op.dest == Path::new("/dev") && !op.is_bind() && op.flags.contains(nix::mount::MsFlags::MS_RDONLY) {
            // A read-only /dev is made read-only once its devices, pts and
            // links are in, as runc does.
            op.flags.remove(nix::mount::MsFlags::MS_RDONLY);
            dev_ro = Some(op.flags);
        }
        let mut make = || -> Result<()> {
            if op.fstype == "cgroup" || op.fstype == "cgroup2" {
                return mount_cgroups(root.as_fd(), &op, &ctx.hierarchies, &ctx.cgroup_dirs, ctx.ns.has_new(namespaces::Kind::Cgroup));
            }
            let mut tree = trees.remove(&i);
            if op.idmap.is_some() && tree.is_none() {
                // Its source is in the container's tree, made by the mounts
                // before it: the parent makes it now, from this namespace.
                chan.send(&Msg::MountSource { index: i })?;
                tree = match chan.recv()? {
                    (Msg::MountTree { index }, Some(t)) if index == i => Some(t),
                    (got, _) => return Err(SyncError::Unexpected { want: "MountTree", got }.into()),
                };
            }
            Ok(mounts::apply(root.as_fd(), &op, tree, ctx.ns.userns())?)
        };
        // runc's words, which its users and its suite read.
        make().map_err(|e| InitError::Mount {
            src: m.source().as_ref().map(|p| p.display().to_string()).unwrap_or_default(),
            dest: m.destination().display().to_string(),
            err: Box::new(e),
        })?;
    }
    if !dev_is_bind {
        let devs = rootfs::device_list(linux.devices().as_deref().unwrap_or(&[]));
        // Root of a user namespace (a new one, or rootless podman's) may not mknod.
        rootfs::create_devices(root.as_fd(), &devs, ctx.ns.userns() || ctx.rootless)?;
    }
    set_names(&spec, &ctx.ns)?;
    if has_process {
        // A missing working directory is created, as runc does.
        crate::linux::resolve::mkdir_all(root.as_fd(), process.cwd())?;
    }

    // prestart and createRuntime hooks run in the parent, now.
    chan.send(&Msg::RuntimeHooks)?;
    let state_file = |want: Msg, name: &'static str| -> Result<OwnedFd> {
        chan.expect(want, name)?.ok_or_else(|| InitError::Other(format!("sync: {name} came without its fd")))
    };
    if !ctx.start_by_channel {
        ctx.fifo = Some(state_file(Msg::ExecFifo, "ExecFifo")?);
    }
    let state_json = match chan.recv()? {
        (Msg::HooksDone { state }, _) => state,
        (Msg::Error { msg }, _) => return Err(InitError::Other(msg)),
        (other, _) => return Err(InitError::Other(format!("sync: expected HooksDone, got {other:?}"))),
    };
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.create_container().clone()) {
        hooks::run_all_in("createContainer", &h, state_json.as_bytes(), &ctx.bundle.rootfs)?;
    }

    // The seccomp profile is compiled now (a bad one fails create) and its
    // notify listener, a host path, connected before the host disappears.
    let filter = linux.seccomp().as_ref().map(seccomp::compile).transpose()?;
    let listener = match (linux.seccomp().as_ref().and_then(|s| s.listener_path().clone()), &filter) {
        (Some(p), Some(f)) if f.notify => Some(OwnedFd::from(std::os::unix::net::UnixStream::connect(&p).map_err(|e| {
            InitError::Other(format!("failed to connect with seccomp agent specified in the seccomp profile ({}): {e}", p.display()))
        })?)),
        _ => None,
    };
    let metadata = linux.seccomp().as_ref().and_then(|s| s.listener_metadata().clone());
    if !ctx.own_mount_ns {
        rootfs::chroot_into(&rootfs)?
    } else if ctx.no_pivot {
        rootfs::move_root(&rootfs)?
    } else {
        rootfs::pivot(&rootfs)?
    }
    if let (Some(flags), true) = (prop, ctx.own_mount_ns) {
        // rootfsPropagation is the propagation of the container's own `/`.
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(sys::err(
            "mount",
            "/",
            format!("{flags:?} (rootfsPropagation)"),
        ))?;
    }
    drop(root);
    let root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open", "/", "O_PATH"))?;
    if !dev_is_bind {
        rootfs::dev_symlinks(Path::new("/"))?;
        rootfs::setup_ptmx(Path::new("/"))?;
    }
    if ctx.own_mount_ns {
        finish::reopen_dev_null(root.as_fd())?;
    }
    // Every procfs write goes through a private, checked procfs instance
    // (a mount planted over /proc/sys or /proc/self cannot redirect it).
    // Made only when there is something to read or write through it.
    let sysctls = linux.sysctl().clone().unwrap_or_default();
    let proc = (!sysctls.is_empty() || process.oom_score_adj().is_some() || ctx.ns.userns()).then(ProcFs::private).transpose()?;
    // sysctls first: /proc/sys is usually among the read-only paths.
    for (k, v) in &sysctls {
        let rel = procfs::sysctl_path(k).ok_or_else(|| InitError::Other(format!("sysctl {k:?}: not a sysctl name")))?;
        proc.as_ref().map(|p| p.write(&rel, v.as_bytes())).transpose()?;
    }
    let guarded = linux.masked_paths().iter().flatten().chain(linux.readonly_paths().iter().flatten()).count() > 0;
    if guarded {
        rootfs::check_proc()?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        rootfs::readonly(root.as_fd(), p)?;
    }
    let mut masker = rootfs::Masker::default();
    for p in linux.masked_paths().iter().flatten() {
        rootfs::mask(root.as_fd(), p, &mut masker)?;
    }
    drop(masker);
    if has_process && process.terminal() == Some(true) {
        let to_parent = ctx.pty_to_parent.then_some(chan);
        finish::setup_terminal(&process, ctx.console_socket.take(), to_parent, true)?;
    }
    // After the console, which is bound onto a file made in /dev.
    if let Some(flags) = dev_ro {
        use nix::mount::MsFlags as F;
        let flags = flags | F::MS_REMOUNT | F::MS_BIND | F::MS_RDONLY;
        nix::mount::mount(None::<&str>, "/dev", None::<&str>, flags, None::<&str>).map_err(sys::err(
            "remount",
            "/dev",
            format!("{flags:?}"),
        ))?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        rootfs::readonly_root()?;
    }
    rlimits::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    if let (Some(adj), Some(p)) = (process.oom_score_adj(), &proc) {
        p.write("self/oom_score_adj", adj.to_string().as_bytes())?;
    }
    // Outside a user namespace setgroups is always allowed.
    let setgroups_denied = proc.as_ref().is_some_and(|p| p.read_to_string("self/setgroups").is_ok_and(|s| s.trim() == "deny"));
    drop(proc);
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let exe = if has_process { finish::find_executable(&args[0], &env, process.cwd())? } else { PathBuf::new() };
    let cap_plan = caps::plan(process.capabilities().as_ref())?;
    // Refused now, at create, rather than by capset after start.
    caps::check_available(&cap_plan)?;
    let personality = crate::linux::personality::plan(linux.personality().as_ref()).map_err(InitError::Other)?;
    // execCPUAffinity is for exec'd processes only (runtime-spec).
    let sched = crate::linux::sched::plan(&process, false).map_err(InitError::Other)?;
    let mempolicy = crate::linux::mempolicy::plan(linux.memory_policy().as_ref()).map_err(InitError::Other)?;
    sys::cloexec_from(3 + ctx.preserve_fds)?;

    // With notify rules the filter goes on now, so that the listener has its
    // fd before `create` returns (an agent may wait for it before it lets
    // the container start, as runc allows). Other filters wait until the
    // last moment before execve.
    let (filter, listener) = match filter {
        Some(f) if f.notify => {
            f.load(listener.as_ref().map(|l| l.as_fd()), &state_json, metadata.as_deref())?;
            (None, None)
        }
        f => (f, listener),
    };
    // Before `Created`, so that a failure here is create's one error, not
    // a line of init's after create has succeeded.
    {
        use nix::sys::signal::Signal as S;
        sys::exit_on_signals(&[S::SIGTERM, S::SIGINT, S::SIGHUP, S::SIGQUIT, S::SIGUSR1, S::SIGUSR2])?;
    }
    chan.send(&Msg::Created)?;
    // Held until execve closes it (CLOEXEC), when started over it.
    let _held = if ctx.start_by_channel {
        match chan.recv()? {
            (Msg::Start, _) => {}
            (got, _) => return Err(SyncError::Unexpected { want: "Start", got }.into()),
        }
        chan_slot.take()
    } else {
        *chan_slot = None;
        wait_for_start(ctx.fifo.as_ref().ok_or_else(|| InitError::Other("no exec.fifo".into()))?)?;
        None
    };
    // Let go: from here a failure is the container's, on its stderr.
    if !has_process {
        return Err(InitError::Other("process is not set in config.json".into()));
    }
    // startContainer hooks run last, under the process's seccomp filter,
    // user and capabilities (as runc runs them), in `finish`.
    let start_hooks = spec.hooks().as_ref().and_then(|h| h.start_container().clone()).unwrap_or_default();
    finish::finish(
        &process,
        finish::Final {
            exe,
            cap_plan,
            filter,
            listener,
            state_json,
            metadata,
            setgroups_denied,
            personality,
            sched,
            mempolicy,
            start_hooks,
        },
    )
}

/// With a joined user namespace the new pid namespace must be owned by
/// it, so it is unshared here, after the join, as runc's nsexec does; a pid
/// namespace takes its first process at the next fork. That child, made a
/// child of the parent (CLONE_PARENT) so that the parent still reaps the
/// container's init, goes on as init; this first stage says its pid and
/// exits. Single-threaded caller (see `sys`): init has no other thread.
fn enter_pid_namespace(chan: &Channel) -> Result<()> {
    namespaces::unshare_flags(nix::sched::CloneFlags::CLONE_NEWPID)?;
    match sys::clone_process(libc::CLONE_PARENT as u64, None)? {
        sys::Forked::Child => Ok(()),
        sys::Forked::Parent(pid) => {
            chan.send(&Msg::InitPid { pid: pid.as_raw() })?;
            sys::exit_now(0)
        }
    }
}

fn join_namespaces(plan: &namespaces::Plan) -> Result<()> {
    // Open every path first: joining the mount namespace changes what paths mean.
    let fds = plan.init_joins.iter().map(|(k, p)| Ok((*k, namespaces::open_ns(p)?, p))).collect::<Result<Vec<_>>>()?;
    for (k, fd, p) in &fds {
        namespaces::join(*k, fd, p)?;
    }
    Ok(())
}

fn set_names(spec: &oci_spec::runtime::Spec, ns: &namespaces::Plan) -> Result<()> {
    let uts = ns.has_new(namespaces::Kind::Uts) || ns.joins(namespaces::Kind::Uts);
    if let Some(h) = spec.hostname().as_deref().filter(|h| !h.is_empty()) {
        if !uts {
            return Err(InitError::Other("hostname is set but the container has no UTS namespace".into()));
        }
        nix::unistd::sethostname(h).map_err(sys::err("sethostname", h, ""))?;
    }
    if let Some(d) = spec.domainname().as_deref().filter(|d| !d.is_empty()) {
        if !uts {
            return Err(InitError::Other("domainname is set but the container has no UTS namespace".into()));
        }
        sys::setdomainname(d)?;
    }
    Ok(())
}

/// A cgroup mount: cgroup2 as it is; on v1 a tmpfs holding one mount per
/// hierarchy (in a new cgroup namespace each shows the container's cgroup).
fn mount_cgroups(
    root: std::os::fd::BorrowedFd<'_>,
    op: &mounts::MountOp,
    hier: &[Hierarchy],
    dirs: &[PathBuf],
    cgroupns: bool,
) -> Result<()> {
    if hier.first().is_none_or(|h| h.v2) {
        let mut op = op.clone();
        op.fstype = "cgroup2".into();
        op.source = Some("cgroup".into());
        return Ok(mounts::apply(root, &op, None, false)?);
    }
    let mut base = op.clone();
    base.fstype = "tmpfs".into();
    base.source = Some("tmpfs".into());
    base.data = "mode=755".into();
    let ro = base.flags.contains(nix::mount::MsFlags::MS_RDONLY);
    base.flags.remove(nix::mount::MsFlags::MS_RDONLY);
    mounts::apply(root, &base, None, false)?;
    // The tmpfs is new and empty: each hierarchy's directory is made in it
    // by name, not resolved from the root as a missing path would be.
    let top = crate::linux::resolve::open_in_root(root, &op.dest, crate::linux::resolve::Create::Nothing)?;
    for h in hier {
        let name = h.mountpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut sub = op.clone();
        sub.dest = op.dest.join(&name);
        nix::sys::stat::mkdirat(top.as_fd(), name.as_str(), nix::sys::stat::Mode::from_bits_truncate(0o755)).map_err(sys::err(
            "mkdirat",
            sub.dest.display(),
            "0755 (cgroup tmpfs)",
        ))?;
        if cgroupns && h.v2 {
            // A hybrid host's cgroup2 (no controllers), beside the v1 ones.
            sub.fstype = "cgroup2".into();
            sub.source = Some("cgroup".into());
            sub.data = String::new();
        } else if cgroupns {
            sub.fstype = "cgroup".into();
            sub.source = Some("cgroup".into());
            sub.data = h.controllers.join(",");
        } else {
            // Without a cgroup namespace, show the container's own cgroup
            // (as runc does), not the host's tree: a clone of it, given its
            // flags while detached and moved onto the directory just made.
            let own = dirs.iter().find(|d| d.starts_with(&h.mountpoint)).unwrap_or(&h.mountpoint);
            let what = format!("{} -> {}", own.display(), sub.dest.display());
            let tree = sys::mount_api::clone_path(own, &what)?;
            let (set, clr) = mounts::bind_attrs(op.flags);
            sys::mount_setattr(tree.as_fd(), set, clr, false, &what)?;
            sys::mount_api::move_mount_into(tree.as_fd(), top.as_fd(), &name, &what)?;
            continue;
        }
        mounts::apply(root, &sub, None, false)?;
    }
    if ro {
        let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(None::<&str>, &sys::fd_path(&top), None::<&str>, flags, None::<&str>).map_err(sys::err(
            "remount",
            op.dest.display(),
            "MS_RDONLY (cgroup tmpfs)",
        ))?;
    }
    Ok(())
}

/// Blocks until `strata start` writes a byte into exec.fifo.
fn wait_for_start(fifo: &OwnedFd) -> Result<()> {
    let mut b = [0u8; 1];
    loop {
        match nix::unistd::read(fifo, &mut b) {
            Ok(1) => return Ok(()),
            Ok(_) => return Err(InitError::Other("exec.fifo closed before start".into())),
            Err(nix::errno::Errno::EINTR) => continue,
            Err(e) => return Err(sys::err("read", "exec.fifo", "")(e).into()),
        }
    }
}
