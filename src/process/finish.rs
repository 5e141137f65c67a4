//! The last steps every container process takes, for init after `start` and
//! for `strata exec`: no_new_privs, seccomp, capabilities, user, cwd, then
//! execve; and the terminal set-up they share.

use std::ffi::CString;
use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, sigprocmask};
use nix::sys::stat::Mode;
use oci_spec::runtime::Process;

use super::init::InitError;
use super::sync::{Channel, Msg};
use crate::linux::{caps, seccomp, user};
use crate::sys;

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
}

/// Drops to the process's privileges and execs it; returns only on error.
pub fn finish(process: &Process, f: Final) -> Result<Never> {
    let nnp = process.no_new_privileges() == Some(true);
    if nnp {
        nix::sys::prctl::set_no_new_privs().map_err(sys::err("prctl", "", "PR_SET_NO_NEW_PRIVS"))?;
    }
    let Final { exe, cap_plan, mut filter, listener, state_json, metadata } = f;
    let load = |filter: seccomp::Filter| filter.load(listener.as_ref().map(|l| l.as_fd()), &state_json, metadata.as_deref());
    if !nnp {
        // Without no_new_privs, loading a filter needs CAP_SYS_ADMIN: load it
        // before the user and capabilities are dropped.
        if let Some(flt) = filter.take() {
            load(flt)?;
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
    if let Some(flt) = filter {
        load(flt)?;
    }
    let args = process.args().clone().unwrap_or_default();
    let env = process.env().clone().unwrap_or_default();
    exec(&exe, &args, &env)
}

/// Makes a pty from the container's /dev/ptmx, hands the master to the
/// console socket (or to the parent), and makes the slave our stdio and
/// controlling terminal. `bind_console`: init also shows it as /dev/console.
pub fn setup_terminal(process: &Process, console_socket: Option<OwnedFd>, to_parent: Option<&Channel>, bind_console: bool) -> Result<()> {
    use nix::pty::{grantpt, posix_openpt, ptsname_r, unlockpt};
    let master =
        posix_openpt(OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC).map_err(sys::err("open", "/dev/ptmx", "O_RDWR|O_NOCTTY"))?;
    grantpt(&master).map_err(sys::err("grantpt", "/dev/ptmx", ""))?;
    unlockpt(&master).map_err(sys::err("unlockpt", "/dev/ptmx", ""))?;
    let name = ptsname_r(&master).map_err(sys::err("ptsname", "/dev/ptmx", ""))?;
    let slave = open(Path::new(&name), OFlag::O_RDWR | OFlag::O_NOCTTY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(sys::err("open", &name, "O_RDWR"))?;
    if let Some(b) = process.console_size() {
        sys::set_winsize(slave.as_fd(), b.height() as u16, b.width() as u16)?;
    }
    if bind_console {
        // /dev/console is the pty, as runc does.
        let console = Path::new("/dev/console");
        if !console.exists() {
            let _ = std::fs::File::create(console);
        }
        nix::mount::mount(Some(Path::new(&name)), console, None::<&str>, nix::mount::MsFlags::MS_BIND, None::<&str>).map_err(sys::err(
            "mount",
            format!("{name} -> /dev/console"),
            "MS_BIND",
        ))?;
    }
    let master: OwnedFd = master.into();
    if let Some(sock) = console_socket {
        super::sync::send_fd(&sock, &master, &name)?;
    } else if let Some(chan) = to_parent {
        chan.send_with_fd(&Msg::PtyMaster, Some(&master))?;
    }
    drop(master);
    for target in 0..3 {
        sys::dup_onto(slave.as_fd(), target)?;
    }
    sys::set_controlling_tty(slave.as_fd())?;
    Ok(())
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
    for dir in path.split(':').filter(|d| !d.is_empty()) {
        let p = Path::new(dir).join(arg0);
        if nix::unistd::access(&p, nix::unistd::AccessFlags::X_OK).is_ok() && p.is_file() {
            return Ok(p);
        }
    }
    Err(InitError::Other(format!("exec {arg0:?}: executable file not found in $PATH")))
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
