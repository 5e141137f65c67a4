//! `run` in the foreground: create, start, then wait for init while
//! forwarding signals to it (and, for a terminal without a console socket,
//! copying between the caller's stdio and the pty), then delete. One poll
//! loop over a signalfd and the pty; no threads.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::signal::{SigSet, SigmaskHow, Signal, kill, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::termios;
use nix::sys::wait::{WaitPidFlag, WaitStatus, waitpid};
use nix::unistd::Pid;

use super::parent::{self, CreateError, CreateOpts};
use crate::container::{self, OpError};
use crate::state::{Root, State};
use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum RunError {
    #[error(transparent)]
    Create(#[from] CreateError),
    #[error(transparent)]
    Op(#[from] OpError),
    #[error(transparent)]
    Sys(#[from] SysError),
}

pub(crate) const FORWARDED: [Signal; 8] =
    [Signal::SIGINT, Signal::SIGTERM, Signal::SIGHUP, Signal::SIGQUIT, Signal::SIGUSR1, Signal::SIGUSR2, Signal::SIGWINCH, Signal::SIGCHLD];

/// Runs the container; returns its exit code (128+N if killed by signal N).
/// With `keep` a container that has exited stays, `stopped`, until
/// `delete` (runc's `run --keep`).
pub fn run(root: &Root, opts: &CreateOpts, detach: bool, keep: bool) -> Result<i32, RunError> {
    let mut set = SigSet::empty();
    if !detach {
        // Blocked before the clone so no signal is lost; init unblocks its own.
        FORWARDED.iter().for_each(|s| set.add(*s));
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(sys::err("sigprocmask", "", "SIG_BLOCK"))?;
    }
    let mut created = parent::create(root, &CreateOpts { foreground: !detach, start_by_channel: true, ..opts.clone() })?;
    let chan = created.chan.take().expect("start_by_channel gives the socket");
    if let Err(e) = start_over(&created.state, chan) {
        let _ = container::delete(root, &opts.id, true);
        return Err(e.into());
    }
    if detach {
        return Ok(0);
    }
    let waited = SignalFd::with_flags(&set, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| RunError::from(sys::err("signalfd", "", "SFD_CLOEXEC")(e)))
        .and_then(|sfd| wait_loop(created.pid, &sfd, created.pty_master));
    let code = match waited {
        Ok(code) => code,
        Err(e) => {
            // The caller cannot wait for the container any more: it goes,
            // rather than run on with no one to reap it.
            let _ = container::delete(root, &opts.id, true);
            return Err(e);
        }
    };
    if !keep {
        container::destroy(root, &created.state)?;
    }
    Ok(code)
}

/// `run`'s start of the container it has just created, whose init waits
/// on the sync socket (`CreateOpts::start_by_channel`): `Start`, then
/// init's end closes when it execs (or dies), and the poststart hooks run.
fn start_over(st: &State, chan: super::sync::Channel) -> Result<(), OpError> {
    use super::sync::{Msg, SyncError};
    if !st.has_process().map_err(|e| container::status_err(st, e.to_string()))? {
        return Err(container::status_err(st, "cannot start: config.json has no process"));
    }
    let said = |e: SyncError| match e {
        SyncError::Init(why) => container::init_failed(st, &why),
        SyncError::Closed => container::status_err(st, "init is not waiting (it died)"),
        e => container::status_err(st, e.to_string()),
    };
    chan.tell(&Msg::Start, None).map_err(said)?;
    match chan.recv() {
        Err(SyncError::Closed) => {}
        Ok((Msg::Error { msg }, _)) => return Err(container::init_failed(st, &msg)),
        Ok((got, _)) => return Err(said(SyncError::Unexpected { want: "nothing after Start", got })),
        Err(e) => return Err(said(e)),
    }
    crate::logging::debug(|| format!("start {}: init {} let go over its socket", st.id, st.pid));
    container::poststart(st)
}

fn exit_code(ws: WaitStatus) -> Option<i32> {
    match ws {
        WaitStatus::Exited(_, c) => Some(c),
        WaitStatus::Signaled(_, s, _) => Some(128 + s as i32),
        _ => None,
    }
}

/// Waits for `pid`, forwarding signals and proxying the pty; returns its exit code.
pub(crate) fn wait_loop(pid: Pid, sfd: &SignalFd, pty: Option<OwnedFd>) -> Result<i32, RunError> {
    // This waits as long as the container runs: on malloc from here.
    sys::arena::stop();
    let stdin = std::io::stdin();
    let stdin_fd = stdin.as_fd();
    let saved = pty.as_ref().and_then(|_| termios::tcgetattr(stdin_fd).ok());
    if let Some(t) = &saved {
        let mut raw = t.clone();
        termios::cfmakeraw(&mut raw);
        let _ = termios::tcsetattr(stdin_fd, termios::SetArg::TCSANOW, &raw);
        resize(stdin_fd, pty.as_ref());
    }
    let mut stdin_open = pty.is_some();
    let mut buf = vec![0u8; 32 * 1024];
    let code = 'outer: loop {
        if let Ok(ws) = waitpid(pid, Some(WaitPidFlag::WNOHANG))
            && let Some(c) = exit_code(ws)
        {
            break 'outer c;
        }
        let mut fds = vec![PollFd::new(sfd.as_fd(), PollFlags::POLLIN)];
        if let Some(m) = &pty {
            fds.push(PollFd::new(m.as_fd(), PollFlags::POLLIN));
            if stdin_open {
                fds.push(PollFd::new(stdin_fd, PollFlags::POLLIN));
            }
        }
        // Woken by SIGCHLD; the timeout only guards against a wait that
        // failed once and a SIGCHLD that will not come again.
        match poll(&mut fds, PollTimeout::from(1000u16)) {
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(sys::err("poll", "run loop", "")(e).into()),
            Ok(_) => {}
        }
        let ready: Vec<bool> = fds.iter().map(|f| f.revents().is_some_and(|r| !r.is_empty())).collect();
        drop(fds);
        if ready[0] {
            // One signal per wake-up: the fd is blocking, and poll says more are pending.
            if let Ok(Some(info)) = sfd.read_signal() {
                match Signal::try_from(info.ssi_signo as i32).ok() {
                    Some(Signal::SIGCHLD) | None => {}
                    Some(Signal::SIGWINCH) => resize(stdin_fd, pty.as_ref()),
                    Some(s) => {
                        let _ = kill(pid, s);
                    }
                }
            }
        }
        if let Some(m) = &pty {
            if ready.get(1) == Some(&true) {
                match nix::unistd::read(m, &mut buf) {
                    Ok(n) if n > 0 => write_all(std::io::stdout().as_fd(), &buf[..n]),
                    _ => {}
                }
            }
            if ready.get(2) == Some(&true) {
                match nix::unistd::read(stdin_fd, &mut buf) {
                    Ok(n) if n > 0 => write_all(m.as_fd(), &buf[..n]),
                    _ => stdin_open = false,
                }
            }
        }
    };
    if let Some(m) = &pty {
        // Drain what the process wrote before it exited.
        let _ = nix::fcntl::fcntl(m, nix::fcntl::FcntlArg::F_SETFL(nix::fcntl::OFlag::O_NONBLOCK));
        while let Ok(n) = nix::unistd::read(m, &mut buf) {
            if n == 0 {
                break;
            }
            write_all(std::io::stdout().as_fd(), &buf[..n]);
        }
    }
    if let Some(t) = &saved {
        let _ = termios::tcsetattr(stdin_fd, termios::SetArg::TCSANOW, t);
    }
    Ok(code)
}

fn write_all(fd: BorrowedFd<'_>, mut data: &[u8]) {
    while !data.is_empty() {
        match nix::unistd::write(fd, data) {
            Ok(n) => data = &data[n..],
            Err(Errno::EINTR) | Err(Errno::EAGAIN) => continue,
            Err(_) => return,
        }
    }
}

fn resize(from: BorrowedFd<'_>, pty: Option<&OwnedFd>) {
    if let (Some(m), Some((rows, cols))) = (pty, sys::get_winsize(from)) {
        let _ = sys::set_winsize(m.as_fd(), rows, cols);
    }
}
