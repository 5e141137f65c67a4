//! The last steps every container process takes, for init after `start` and
//! for `strata exec`: no_new_privs, seccomp, capabilities, user, cwd, then
//! execve; and the terminal set-up they share.

use std::ffi::CString;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use oci_spec::runtime::Process;

use super::sync::{Channel, Msg};
use crate::linux::{caps, seccomp, user};
use crate::sys;

/// What can fail in the steps inside the container: init's (`init`) and
/// exec's child's (`exec`), which share the last ones here.
#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
    #[error(transparent)]
    Caps(#[from] crate::linux::caps::CapsError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Seccomp(#[from] crate::linux::seccomp::SeccompError),
    #[error(transparent)]
    Sync(#[from] super::sync::SyncError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error("{0}")]
    Other(String),
    /// A spec mount that failed, in runc's words.
    #[error("error mounting {src:?} to rootfs at {dest:?}: {err}")]
    Mount { src: String, dest: String, err: Box<InitError> },
    /// runc's words for a failed execve (`exec /run.sh: no such file or
    /// directory`), which podman reads to tell 127 from 126.
    #[error("exec {path}: {}", crate::sys::errno_text(*errno))]
    Exec { path: String, errno: nix::errno::Errno },
}

type Result<T> = std::result::Result<T, InitError>;

/// A value that cannot exist: what a function that only returns on error returns.
pub enum Never {}

/// What was prepared before the process may start.
pub struct Final {
    pub exe: PathBuf,
    pub cap_plan: caps::CapPlan,
    pub filter: Option<seccomp::Filter>,
    pub listener: Option<OwnedFd>,
    pub state_json: String,
    pub metadata: Option<String>,
    /// The user namespace has `setgroups` denied (read through a checked procfs).
    pub setgroups_denied: bool,
    /// `linux.personality`, planned.
    pub personality: Option<(u64, &'static str)>,
    /// `process.scheduler`, `ioPriority` and (exec) `execCPUAffinity.final`.
    pub sched: crate::linux::sched::ProcessSched,
    /// `linux.memoryPolicy`, planned.
    pub mempolicy: Option<crate::linux::mempolicy::Plan>,
    /// The config's startContainer hooks (init only): run just before the
    /// execve.
    pub start_hooks: Vec<oci_spec::runtime::Hook>,
}

/// Drops to the process's privileges and execs it; returns only on error.
pub fn finish(process: &Process, f: Final) -> Result<Never> {
    let nnp = process.no_new_privileges() == Some(true);
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(sys::err("prctl", "", "PR_SET_NO_NEW_PRIVS"))?;
    }
    let Final { exe, cap_plan, mut filter, listener, state_json, metadata, setgroups_denied, personality, sched, mempolicy, start_hooks } =
        f;
    crate::linux::mempolicy::apply(&mempolicy)?;
    // While the capabilities a real-time class needs are still held, and
    // before a seccomp filter could forbid the calls.
    crate::linux::personality::apply(personality)?;
    crate::linux::sched::apply(&sched)?;
    let load = |filter: seccomp::Filter| filter.load(listener.as_ref().map(|l| l.as_fd()), &state_json, metadata.as_deref());
    if !nnp {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
        // before the user and capabilities are dropped.
        if let Some(flt) = filter.take() {
            load(flt)?;
        }
    }
    // The cwd as root first (a directory the user cannot reach by its own
    // rights still works, as in runc); only where that fails, as the user.
    let cwd = process.cwd();
    let early_cwd = nix::unistd::chdir(cwd).is_ok();
    fix_stdio_owner(process.user().uid())?;
    // Read as root, before the switch: the container's /etc/passwd.
    let env = user::with_home(process.env().clone().unwrap_or_default(), || user::home_of(process.user().uid()));
    nix::sys::prctl::set_keepcaps(true).map_err(sys::err("prctl", "", "PR_SET_KEEPCAPS"))?;
    caps::drop_bounding(&cap_plan)?;
    user::switch(process.user(), setgroups_denied)?;
    nix::sys::prctl::set_keepcaps(false).map_err(sys::err("prctl", "", "PR_SET_KEEPCAPS 0"))?;
    caps::apply_sets(&cap_plan)?;
    if !early_cwd {
        nix::unistd::chdir(cwd).map_err(sys::err("chdir", cwd.display(), "process.cwd"))?;
    }
    check_cwd_inside()?;
    reset_signals();
    // With no_new_privs the filter goes on last, so it constrains only the user's process.
    if let Some(flt) = filter {
        load(flt)?;
    }
    // As runc: the hooks see what the process will (its environment, with
    // HOME, its filter, user and capabilities).
    crate::hooks::run_all_with_env("startContainer", &start_hooks, state_json.as_bytes(), &env)?;
    let args = process.args().clone().unwrap_or_default();
    exec(&exe, &args, &env)
}

/// The cwd must be reachable from the container's root: a cwd reached
/// through an fd this process still holds (`/proc/self/fd/N`, the
/// CVE-2024-21626 class) lies outside it, and getcwd(2) then shows no path
/// from `/` (ENOENT, or "(unreachable)").
fn check_cwd_inside() -> Result<()> {
    match nix::unistd::getcwd() {
        Ok(p) if p.is_absolute() => Ok(()),
        Ok(p) => Err(InitError::Other(format!(
            "current working directory {} is outside of the container's root: possible container breakout detected",
            p.display()
        ))),
        Err(e) => Err(sys::err("getcwd", "process.cwd", "outside of the container's root: possible container breakout detected")(e).into()),
    }
}

/// Makes a pty from the container's devpts, hands the master to the console
/// socket (or to the parent), and makes the slave our stdio and controlling
/// terminal. `bind_console`: init also shows it as /dev/console.
///
/// No pty path is trusted (CVE-2025-52565 class): the master is opened
/// following no symlink and checked to be a devpts ptmx, the slave comes
/// from the master itself (`TIOCGPTPEER`), and /dev/console is a fresh file
/// that the slave is bind-mounted onto through fds.
pub fn setup_terminal(process: &Process, console_socket: Option<OwnedFd>, to_parent: Option<&Channel>, bind_console: bool) -> Result<()> {
    let root = open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err("open", "/", "O_PATH"))?;
    let master = open_ptmx(root.as_fd())?;
    sys::pty_unlock(master.as_fd())?;
    let name = format!("/dev/pts/{}", sys::pty_number(master.as_fd())?);
    let slave = sys::pty_peer(master.as_fd())?;
    if let Some(b) = process.console_size() {
        sys::set_winsize(slave.as_fd(), b.height() as u16, b.width() as u16)?;
    }
    if bind_console {
        bind_dev_console(root.as_fd(), slave.as_fd(), &name)?;
    }
    if let Some(sock) = console_socket {
        super::sync::send_fd(&sock, &master, &name)?;
    } else if let Some(chan) = to_parent {
        // strata copies the output to its own stdout, which is a terminal
        // already or a file: as runc does, lines keep their plain `\n`
        // (no ONLCR on the pty the output comes through).
        clear_onlcr(master.as_fd())?;
        chan.send_with_fd(&Msg::PtyMaster, Some(&master))?;
    }
    drop(master);
    for target in 0..3 {
        sys::dup_onto(slave.as_fd(), target)?;
    }
    sys::set_controlling_tty(slave.as_fd())?;
    Ok(())
}

fn clear_onlcr(pty: BorrowedFd<'_>) -> Result<()> {
    use nix::sys::termios::{OutputFlags, SetArg, tcgetattr, tcsetattr};
    let what = format!("fd {}", pty.as_raw_fd());
    let mut t = tcgetattr(pty).map_err(sys::err("tcgetattr", &what, ""))?;
    t.output_flags.remove(OutputFlags::ONLCR);
    tcsetattr(pty, SetArg::TCSANOW, &t).map_err(sys::err("tcsetattr", &what, "-ONLCR"))?;
    Ok(())
}

/// Gives the process's user the stdio it inherited (a pty made here, or
/// the caller's pipes), as runc does: owner uid only, and not /dev/null.
/// Where the kernel will not (an owner or gid not mapped in the user
/// namespace, a read-only /dev), the stdio stays as it is.
pub fn fix_stdio_owner(uid: u32) -> Result<()> {
    let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let stdio = [i.as_fd(), o.as_fd(), e.as_fd()];
    for (fd, f) in stdio.into_iter().enumerate() {
        let Ok(st) = nix::sys::stat::fstat(f) else { continue };
        if st.st_uid == uid || (st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == nix::sys::stat::makedev(1, 3)) {
            continue;
        }
        match nix::unistd::fchown(f, Some(nix::unistd::Uid::from_raw(uid)), None) {
            Ok(()) | Err(nix::errno::Errno::EINVAL | nix::errno::Errno::EPERM | nix::errno::Errno::EROFS) => {}
            Err(e) => return Err(sys::err("fchown", format!("fd {fd}"), format!("uid {uid}"))(e).into()),
        }
    }
    Ok(())
}

/// Stdio that is the host's /dev/null (a detached container's stdin, as
/// conmon and containerd's shim give it) becomes the container's own
/// /dev/null, as runc's `reOpenDevNull` does: the host's node is of a
/// mount the container does not have, which CRIU cannot dump, and an open
/// file of the host's /dev it need not keep. Where the container has no
/// null device of its own, the stdio stays as it is.
pub fn reopen_dev_null(root: BorrowedFd<'_>) -> Result<()> {
    let Ok(null) = crate::linux::resolve::open_no_symlinks(root, Path::new("/dev/null"), OFlag::O_RDWR | OFlag::O_CLOEXEC) else {
        return Ok(());
    };
    let null_dev = nix::sys::stat::makedev(1, 3);
    let is_null = |st: &nix::sys::stat::FileStat| st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == null_dev;
    let own = nix::sys::stat::fstat(null.as_fd()).map_err(sys::err("fstat", "/dev/null", ""))?;
    if !is_null(&own) {
        return Ok(());
    }
    let (i, o, e) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let host_nulls: Vec<i32> = [i.as_fd(), o.as_fd(), e.as_fd()]
        .into_iter()
        .enumerate()
        .filter(|(_, f)| nix::sys::stat::fstat(*f).is_ok_and(|st| is_null(&st) && (st.st_dev, st.st_ino) != (own.st_dev, own.st_ino)))
        .map(|(n, _)| n as i32)
        .collect();
    for fd in host_nulls {
        sys::dup_onto(null.as_fd(), fd)?;
    }
    Ok(())
}

/// The container's pty multiplexer: /dev/pts/ptmx on a devpts, or else a
/// /dev/ptmx device node (5:2); never through a symlink.
fn open_ptmx(root: BorrowedFd<'_>) -> Result<OwnedFd> {
    use crate::linux::resolve::open_no_symlinks;
    let flags = OFlag::O_RDWR | OFlag::O_NOCTTY;
    let (fd, path) = match open_no_symlinks(root, Path::new("/dev/pts/ptmx"), flags) {
        Err(e) if e.errno == nix::errno::Errno::ENOENT => (open_no_symlinks(root, Path::new("/dev/ptmx"), flags)?, "/dev/ptmx"),
        r => (r?, "/dev/pts/ptmx"),
    };
    let st = nix::sys::stat::fstat(fd.as_fd()).map_err(sys::err("fstat", path, ""))?;
    let on_devpts = nix::sys::statfs::fstatfs(fd.as_fd()).is_ok_and(|f| f.filesystem_type().0 == 0x1cd1); // DEVPTS_SUPER_MAGIC
    let is_ptmx = st.st_mode & libc::S_IFMT == libc::S_IFCHR && st.st_rdev == nix::sys::stat::makedev(5, 2);
    if !is_ptmx || (path == "/dev/pts/ptmx" && !on_devpts) {
        return Err(sys::err("open", path, "not a pty multiplexer (char 5:2)")(nix::errno::Errno::EINVAL).into());
    }
    Ok(fd)
}

/// Replaces whatever is at /dev/console with a new empty file and binds the
/// pty slave onto it, fd to fd.
fn bind_dev_console(root: BorrowedFd<'_>, slave: BorrowedFd<'_>, name: &str) -> Result<()> {
    use crate::linux::resolve::open_no_symlinks;
    use crate::sys::mount_api::{clone_tree, move_mount_onto};
    let dev = open_no_symlinks(root, Path::new("/dev"), OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    match nix::unistd::unlinkat(dev.as_fd(), "console", nix::unistd::UnlinkatFlags::NoRemoveDir) {
        Ok(()) | Err(nix::errno::Errno::ENOENT) => {}
        Err(e) => return Err(sys::err("unlink", "/dev/console", "")(e).into()),
    }
    let flags = OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_WRONLY | OFlag::O_CLOEXEC;
    drop(nix::fcntl::openat(dev.as_fd(), "console", flags, Mode::from_bits_truncate(0o600)).map_err(sys::err(
        "create",
        "/dev/console",
        "O_CREAT|O_EXCL|O_NOFOLLOW",
    ))?);
    let target = open_no_symlinks(dev.as_fd(), Path::new("console"), OFlag::O_PATH)?;
    let tree = clone_tree(slave, name)?;
    Ok(move_mount_onto(tree.as_fd(), target.as_fd(), &format!("{name} -> /dev/console"))?)
}

/// Finds `arg0` like execvp, in the container's PATH.
/// Checked before `start`, so that `create` fails the way runc's does (and
/// podman can tell 127 from 126 by the message).
pub fn find_executable(arg0: &str, env: &[String], cwd: &Path) -> Result<PathBuf> {
    if arg0.contains('/') {
        let p = cwd.join(arg0);
        return match std::fs::metadata(&p) {
            Err(e) => Err(InitError::Other(format!("exec: {arg0:?}: stat {arg0}: {}", io_text(&e)))),
            Ok(m) if !m.is_file() || nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_err() => {
                Err(InitError::Other(format!("exec: {arg0:?}: permission denied")))
            }
            Ok(_) => Ok(PathBuf::from(arg0)),
        };
    }
    let path = env.iter().find_map(|e| e.strip_prefix("PATH=")).unwrap_or("/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin");
    // As execvp and runc: a candidate that fails is skipped. The first
    // failure that is not plain absence is named after runc's words.
    let mut cause = None;
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(arg0);
        match nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK) {
            Ok(()) if p.is_file() => return Ok(p),
            Ok(()) | Err(nix::errno::Errno::ENOENT | nix::errno::Errno::ENOTDIR) => {}
            Err(e) => {
                cause.get_or_insert_with(|| format!(" (access {}: {})", p.display(), crate::sys::errno_text(e)));
            }
        }
    }
    Err(InitError::Other(format!("exec {arg0:?}: executable file not found in $PATH{}", cause.unwrap_or_default())))
}

fn io_text(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file or directory".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// The user's process starts with default signal dispositions and an empty mask.
fn reset_signals() {
    let _ = sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None);
    for s in [
        Signal::SIGPIPE,
        Signal::SIGINT,
        Signal::SIGTERM,
        Signal::SIGHUP,
        Signal::SIGQUIT,
        Signal::SIGUSR1,
        Signal::SIGUSR2,
        Signal::SIGCHLD,
    ] {
        sys::default_signal(s);
    }
}

fn exec(exe: &Path, args: &[String], env: &[String]) -> Result<Never> {
    let c = |s: &str| CString::new(s).map_err(|_| InitError::Other(format!("{s:?}: contains a NUL byte")));
    let path = c(&exe.to_string_lossy())?;
    let argv = args.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
    let envp = env.iter().map(|a| c(a)).collect::<Result<Vec<_>>>()?;
    let e = nix::unistd::execve(&path, &argv, &envp).unwrap_err();
    Err(InitError::Exec { path: exe.display().to_string(), errno: e })
}
