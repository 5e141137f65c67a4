//! The container's init process, from clone to execve: an ordered list of
//! steps (see the ladder in `sync.rs`). Runs in the child of the clone, in
//! the container's new namespaces, and never returns: it execs the user's
//! process or exits with an error sent to the parent.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use nix::unistd::{Gid, Uid, setresgid, setresuid};

use super::sync::{Channel, Msg};
use crate::cgroups::Hierarchy;
use crate::hooks;
use crate::linux::{caps, mounts, namespaces, rlimits, rootfs, seccomp, user};
use crate::spec::Bundle;
use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    Caps(#[from] caps::CapsError),
    #[error(transparent)]
    Hook(#[from] hooks::HookError),
    #[error(transparent)]
    Seccomp(#[from] seccomp::SeccompError),
    #[error(transparent)]
    Sync(#[from] super::sync::SyncError),
    #[error("{0}")]
    Other(String),
}

type Result<T> = std::result::Result<T, InitError>;

/// Everything init needs, prepared by the parent before the clone.
pub struct InitContext {
    pub bundle: Bundle,
    pub ns: namespaces::Plan,
    /// The sync channel; `None` once init has reported `Created`.
    pub chan: Option<Channel>,
    /// exec.fifo, opened O_RDWR by the parent.
    pub fifo: OwnedFd,
    /// false: no mount namespace; mounts go to the host's, under the rootfs.
    pub own_mount_ns: bool,
    pub console_socket: Option<OwnedFd>,
    /// `run -t` without a console socket: send the pty master to the parent.
    pub pty_to_parent: bool,
    pub no_pivot: bool,
    pub preserve_fds: u32,
    pub hierarchies: Vec<Hierarchy>,
}

/// Runs init; never returns.
pub fn run(mut ctx: InitContext) -> ! {
    let mut chan = ctx.chan.take();
    match steps(&mut ctx, &mut chan) {
        Ok(never) => match never {},
        Err(e) => {
            // Until Created the parent listens on the channel; after it, the
            // container's stderr is the only witness (as with runc).
            let sent = chan.as_ref().is_some_and(|c| c.send(&Msg::Error { msg: e.to_string() }).is_ok());
            if !sent {
                eprintln!("strata init: {e}");
            }
            std::process::exit(1)
        }
    }
}

enum Never {}

fn steps(ctx: &mut InitContext, chan_slot: &mut Option<Channel>) -> Result<Never> {
    let chan = chan_slot.as_ref().ok_or_else(|| InitError::Other("no sync channel".into()))?;
    let spec = ctx.bundle.spec.clone();
    // `process` may be unset at create; `start` then fails (runtime-spec).
    let process = spec.process().clone().unwrap_or_default();
    let has_process = spec.process().is_some();
    let linux = spec.linux().clone().unwrap_or_default();

    chan.expect(Msg::Proceed, "Proceed")?;
    join_namespaces(&ctx.ns)?;
    if ctx.ns.userns() {
        setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0)).map_err(sys::err("setresgid", 0, "become root in user namespace"))?;
        setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)).map_err(sys::err("setresuid", 0, "become root in user namespace"))?;
    }
    namespaces::unshare_flags(ctx.ns.unshare_in_init)?;
    nix::unistd::setsid().map_err(sys::err("setsid", "", ""))?;

    let rootfs = ctx.bundle.rootfs.clone();
    let prop = linux.rootfs_propagation().as_deref().map(rootfs::propagation_flags).transpose().map_err(InitError::Other)?;
    let root = rootfs::prepare(&rootfs, ctx.own_mount_ns.then(|| rootfs::setup_propagation(prop)))?;
    let mut dev_is_bind = false;
    for m in spec.mounts().iter().flatten() {
        let op = mounts::plan(m);
        if op.dest == Path::new("/dev") && op.is_bind() {
            dev_is_bind = true;
        }
        if op.fstype == "cgroup" || op.fstype == "cgroup2" {
            mount_cgroups(root.as_fd(), &op, &ctx.hierarchies, ctx.ns.has_new(namespaces::Kind::Cgroup))?;
        } else {
            mounts::apply(root.as_fd(), &op)?;
        }
    }
    if !dev_is_bind {
        for d in rootfs::device_list(linux.devices().as_deref().unwrap_or(&[])) {
            rootfs::create_device(root.as_fd(), &d, ctx.ns.userns())?;
        }
    }
    set_names(&spec, &ctx.ns)?;
    if has_process {
        // A missing working directory is created, as runc does.
        crate::linux::resolve::mkdir_all(root.as_fd(), process.cwd())?;
    }

    // prestart and createRuntime hooks run in the parent, now.
    chan.send(&Msg::RuntimeHooks)?;
    let state_json = match chan.recv()? {
        (Msg::HooksDone { state }, _) => state,
        (Msg::Error { msg }, _) => return Err(InitError::Other(msg)),
        (other, _) => return Err(InitError::Other(format!("sync: expected HooksDone, got {other:?}"))),
    };
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.create_container().clone()) {
        hooks::run_all("createContainer", &h, state_json.as_bytes())?;
    }

    // The seccomp profile is compiled now (a bad one fails create) and its
    // notify listener, a host path, connected before the host disappears.
    let filter = linux.seccomp().as_ref().map(seccomp::compile).transpose()?;
    let listener = match (linux.seccomp().as_ref().and_then(|s| s.listener_path().clone()), &filter) {
        (Some(p), Some(f)) if f.notify => {
            Some(OwnedFd::from(std::os::unix::net::UnixStream::connect(&p).map_err(sys::io_err("connect seccomp listener", &p))?))
        }
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
        nix::mount::mount(None::<&str>, "/", None::<&str>, flags, None::<&str>).map_err(sys::err("mount", "/", format!("{flags:?} (rootfsPropagation)")))?;
    }
    drop(root);
    let root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open", "/", "O_PATH"))?;
    if !dev_is_bind {
        rootfs::dev_symlinks(Path::new("/"))?;
        rootfs::setup_ptmx(Path::new("/"))?;
    }
    // sysctls first: /proc/sys is usually among the read-only paths.
    for (k, v) in linux.sysctl().iter().flatten() {
        write_sysctl(k, v)?;
    }
    let guarded = linux.masked_paths().iter().flatten().chain(linux.readonly_paths().iter().flatten()).count() > 0;
    if guarded {
        rootfs::check_proc()?;
    }
    for p in linux.readonly_paths().iter().flatten() {
        rootfs::readonly(root.as_fd(), p)?;
    }
    for p in linux.masked_paths().iter().flatten() {
        rootfs::mask(root.as_fd(), p)?;
    }
    if has_process && process.terminal() == Some(true) {
        setup_terminal(ctx, chan, &process)?;
    }
    if spec.root().as_ref().and_then(|r| r.readonly()) == Some(true) {
        rootfs::readonly_root()?;
    }
    rlimits::apply(process.rlimits().as_deref().unwrap_or(&[]))?;
    if let Some(adj) = process.oom_score_adj() {
        let p = Path::new("/proc/self/oom_score_adj");
        std::fs::write(p, adj.to_string()).map_err(sys::io_err("write", p))?;
    }
    let env: Vec<String> = process.env().clone().unwrap_or_default();
    let args = process.args().clone().unwrap_or_default();
    let exe = if has_process { find_executable(&args[0], &env)? } else { PathBuf::new() };
    let cap_plan = caps::plan(process.capabilities().as_ref())?;
    sys::cloexec_from(3 + ctx.preserve_fds)?;

    chan.send(&Msg::Created)?;
    *chan_slot = None;

    wait_for_start(&ctx.fifo)?;
    if !has_process {
        return Err(InitError::Other("process is not set in config.json".into()));
    }
    if let Some(h) = spec.hooks().as_ref().and_then(|h| h.start_container().clone()) {
        hooks::run_all("startContainer", &h, state_json.as_bytes())?;
    }
    let nnp = process.no_new_privileges() == Some(true);
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(sys::err("prctl", "", "PR_SET_NO_NEW_PRIVS"))?;
    }
    let mut filter = filter;
    if !nnp {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
        // before the user and capabilities are dropped.
        if let Some(f) = filter.take() {
            f.load(listener.as_ref().map(|l| l.as_fd()), &state_json, metadata.as_deref())?;
        }
    }
    nix::sys::prctl::set_keepcaps(true).map_err(sys::err("prctl", "", "PR_SET_KEEPCAPS"))?;
    caps::drop_bounding(&cap_plan)?;
    let setgroups_denied = std::fs::read_to_string("/proc/self/setgroups").map(|s| s.trim() == "deny").unwrap_or(false);
    user::switch(process.user(), setgroups_denied)?;
    nix::sys::prctl::set_keepcaps(false).map_err(sys::err("prctl", "", "PR_SET_KEEPCAPS 0"))?;
    caps::apply_sets(&cap_plan)?;
    let cwd = process.cwd();
    nix::unistd::chdir(cwd).map_err(sys::err("chdir", cwd.display(), "process.cwd"))?;
    reset_signals();
    // With no_new_privs the filter goes on last, so it constrains only the user's process.
    if let Some(f) = filter {
        f.load(listener.as_ref().map(|l| l.as_fd()), &state_json, metadata.as_deref())?;
    }
    drop(listener);
    exec(&exe, &args, &env)
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
fn mount_cgroups(root: std::os::fd::BorrowedFd<'_>, op: &mounts::MountOp, hier: &[Hierarchy], cgroupns: bool) -> Result<()> {
    if hier.first().is_none_or(|h| h.v2) {
        let mut op = op.clone();
        op.fstype = "cgroup2".into();
        op.source = Some("cgroup".into());
        return Ok(mounts::apply(root, &op)?);
    }
    let mut base = op.clone();
    base.fstype = "tmpfs".into();
    base.source = Some("tmpfs".into());
    base.data = "mode=755".into();
    let ro = base.flags.contains(nix::mount::MsFlags::MS_RDONLY);
    base.flags.remove(nix::mount::MsFlags::MS_RDONLY);
    mounts::apply(root, &base)?;
    for h in hier {
        let name = h.mountpoint.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
        let mut sub = op.clone();
        sub.dest = op.dest.join(&name);
        if cgroupns {
            sub.fstype = "cgroup".into();
            sub.source = Some("cgroup".into());
            sub.data = h.controllers.join(",");
        } else {
            // Without a cgroup namespace, show the container's own cgroup.
            sub.fstype = "bind".into();
            sub.flags |= nix::mount::MsFlags::MS_BIND;
            sub.source = Some(h.mountpoint.clone());
        }
        mounts::apply(root, &sub)?;
    }
    if ro {
        let top = crate::linux::resolve::open_in_root(root, &op.dest, crate::linux::resolve::Create::Nothing)?;
        let flags = nix::mount::MsFlags::MS_REMOUNT | nix::mount::MsFlags::MS_RDONLY | nix::mount::MsFlags::MS_BIND;
        nix::mount::mount(None::<&str>, &sys::fd_path(&top), None::<&str>, flags, None::<&str>)
            .map_err(sys::err("remount", op.dest.display(), "MS_RDONLY (cgroup tmpfs)"))?;
    }
    Ok(())
}

fn write_sysctl(key: &str, value: &str) -> Result<()> {
    if key.contains('/') || key.split('.').any(|p| p == ".." || p.is_empty()) {
        return Err(InitError::Other(format!("sysctl {key:?}: not a sysctl name")));
    }
    let path = PathBuf::from("/proc/sys").join(key.replace('.', "/"));
    std::fs::write(&path, value).map_err(|e| sys::io_err("write sysctl", &path)(e).into())
}

fn setup_terminal(ctx: &mut InitContext, chan: &Channel, process: &oci_spec::runtime::Process) -> Result<()> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master = posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(sys::err("open", "/dev/ptmx", "O_RDWR|O_NOCTTY"))?;
    grantpt(&master).map_err(sys::err("grantpt", "/dev/ptmx", ""))?;
    unlockpt(&master).map_err(sys::err("unlockpt", "/dev/ptmx", ""))?;
    let name = ptsname_r(&master).map_err(sys::err("ptsname", "/dev/ptmx", ""))?;
    let slave = open(Path::new(&name), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open", &name, "O_RDWR"))?;
    if let Some(b) = process.console_size() {
        sys::set_winsize(slave.as_fd(), b.height() as u16, b.width() as u16)?;
    }
    // /dev/console is the pty, as runc does.
    let console = Path::new("/dev/console");
    if !console.exists() {
        let _ = std::fs::File::create(console);
    }
    nix::mount::mount(Some(Path::new(&name)), console, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>)
        .map_err(sys::err("mount", format!("{name} -> /dev/console"), "MS_BIND"))?;
    let master: OwnedFd = master.into();
    if let Some(sock) = ctx.console_socket.take() {
        super::sync::send_fd(&sock, &master, &name)?;
    } else if ctx.pty_to_parent {
        chan.send_with_fd(&Msg::PtyMaster, Some(&master))?;
    }
    drop(master);
    for target in 0..3 {
        sys::dup_onto(slave.as_fd(), target)?;
    }
    sys::set_controlling_tty(slave.as_fd())?;
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

/// Finds `arg0` like execvp, in the container's PATH.
fn find_executable(arg0: &str, env: &[String]) -> Result<PathBuf> {
    if arg0.contains('/') {
        return Ok(PathBuf::from(arg0));
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(arg0);
        if nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file() {
            return Ok(p);
        }
    }
    Err(InitError::Other(format!("exec {arg0:?}: executable file not found in $PATH")))
}

/// The user's process starts with default signal dispositions and an empty mask.
fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for s in [Signal::SIGPIPE, Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGCHLD] {
        sys::default_signal(s);
    }
}

fn exec(exe: &Path, args: &[String], env: &[String]) -> Result<Never> {
    let c = |s: &str| CString::new(s).map_err(|_| InitError::Other(format!("{s:?}: contains a NUL byte")));
    let path = c(&exe.to_string_lossy())?;
    let argv = args.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
    let envp = env.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
    let e = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(sys::err("execve", exe.display(), "")(e).into())
}
