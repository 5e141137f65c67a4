//! The parent ↔ init protocol: named messages over one SOCK_SEQPACKET
//! socketpair (one message per datagram, JSON encoded), with fds passed as
//! SCM_RIGHTS.
//!
//! ```text
//!   parent (strata create/run)                    init (the container's pid 1)
//!   ──────────────────────────                    ────────────────────────────
//!   open cgroup fds (cgroups::prepare_join)
//!   clone3(new namespaces, CLONE_INTO_CGROUP ─▶   (born in its cgroup2 cgroup)
//!     on cgroup2)                                 write 0 to each v1 `tasks` fd
//!   write uid_map / gid_map                       (moves itself), blocks on the socket
//!   userns image rootfs: idmapped layers,
//!     overlay made detached
//!          ──── Rootfs [fd] ─────────────────▶    (kept for its mounts step)
//!   idmapped binds: open_tree + mount_setattr;
//!   userns: the other binds, open_tree
//!          ──── MountTree { index } [fd] ─────▶   (one per such mount; kept)
//!          ──── Proceed ─────────────────────▶    join namespaces, unshare cgroupns,
//!   mkfifo exec.fifo                              (joined userns + new pidns: unshare
//!                                                 it, clone(CLONE_PARENT) the real
//!                                                 init, which goes on from here)
//!          ◀─── InitPid { pid } ─────────────     (that case only; the first exits)
//!   reap the first, adopt pid as init
//!                                                 setsid, hostname, mounts, devices
//!          ◀─── MountSource { index } ───────     (an idmapped mount whose source is in
//!   make it in init's mount namespace              the container's tree, when its turn
//!          ──── MountTree { index } [fd] ─────▶    comes; 0..n times)
//!          ◀─── RuntimeHooks ────────────────     (waits)
//!   run prestart + createRuntime hooks
//!          ──── ExecFifo [fd] ───────────────▶    (kept: start's byte comes through it)
//!          ──── HooksDone { state } ─────────▶    createContainer hooks, pivot_root,
//!                                                 masks, sysctl, console, rlimits
//!          ◀─── PtyMaster [fd] ──────────────     (only for `run -t` without --console-socket)
//!          ◀─── Created ─────────────────────     close the socket
//!   save state.json, write --pid-file, exit       block reading exec.fifo (a failure
//!                                                 from here goes to its stderr)
//!   ...
//!   strata start: write a byte to exec.fifo ──▶   startContainer hooks, user, caps,
//!                                                 seccomp, execve(process.args)
//!   poll until init's fifo fd closes; the byte
//!   still unread (FIONREAD): init died first
//!
//!   `run` (start_by_channel): no exec.fifo, the socket kept:
//!          ◀─── Created ─────────────────────     (keeps the socket)
//!   save state.json
//!          ──── Start ───────────────────────▶    startContainer hooks, user, caps,
//!   EOF: init has exec'd (or died)     ◀──────    seccomp, execve (CLOEXEC closes it)
//!   poststart hooks, wait
//!
//!   at any step init may instead send:
//!          ◀─── Error { msg } ───────────────     and exit(1)
//! ```

use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::sys::socket::{AddressFamily, ControlMessage, MsgFlags, SockFlag, SockType, sendmsg, socketpair};
use serde::{Deserialize, Serialize};

use crate::sys::{self, SysError};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Msg {
    /// A bind mount made by the parent for the config's mount number
    /// `index`, as a detached mount fd (sent before Proceed): an idmapped
    /// one, or in a user namespace a clone of a source made on the host.
    MountTree {
        index: usize,
    },
    /// The image rootfs of a user-namespaced container, made by the parent
    /// as a detached overlay of idmapped layers (sent before Proceed).
    Rootfs,
    Proceed,
    /// Init asks for the idmapped mount number `index`, whose source is in
    /// the container's own tree (made by its earlier mounts): answered
    /// with a MountTree.
    MountSource {
        index: usize,
    },
    /// With a joined user namespace and a new pid namespace: the pid of
    /// the child that is the container's init from here on (the sender, its
    /// first stage, exits).
    InitPid {
        pid: i32,
    },
    RuntimeHooks,
    /// exec.fifo, opened O_RDWR, as the fd (sent before HooksDone).
    ExecFifo,
    /// The runtime hooks ran; `state` is the state JSON for init's own hooks.
    HooksDone {
        state: String,
    },
    PtyMaster,
    Created,
    /// `run`'s start: init lets go (instead of a byte through exec.fifo).
    Start,
    Error {
        msg: String,
    },
}

impl Msg {
    /// The message's name, for errors (without its payload).
    pub fn name(&self) -> &'static str {
        match self {
            Msg::MountTree { .. } => "MountTree",
            Msg::Rootfs => "Rootfs",
            Msg::Proceed => "Proceed",
            Msg::MountSource { .. } => "MountSource",
            Msg::InitPid { .. } => "InitPid",
            Msg::RuntimeHooks => "RuntimeHooks",
            Msg::ExecFifo => "ExecFifo",
            Msg::HooksDone { .. } => "HooksDone",
            Msg::PtyMaster => "PtyMaster",
            Msg::Created => "Created",
            Msg::Start => "Start",
            Msg::Error { .. } => "Error",
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("init closed the sync socket without a word (it died)")]
    Closed,
    #[error("sync: expected {want}, got {got:?}")]
    Unexpected { want: &'static str, got: Msg },
    #[error("sync: bad message: {0}")]
    Decode(String),
    /// What init (or exec's child) reported before it died.
    #[error("{0}")]
    Init(String),
}

/// One end of the socketpair.
pub struct Channel {
    fd: OwnedFd,
}

pub fn pair() -> Result<(Channel, Channel), SysError> {
    let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(sys::err(
        "socketpair",
        "",
        "AF_UNIX SOCK_SEQPACKET SOCK_CLOEXEC",
    ))?;
    Ok((Channel { fd: a }, Channel { fd: b }))
}

impl Channel {
    pub fn send(&self, msg: &Msg) -> Result<(), SysError> {
        self.send_with_fd(msg, None)
    }

    pub fn send_with_fd(&self, msg: &Msg, fd: Option<&OwnedFd>) -> Result<(), SysError> {
        let data = serde_json::to_vec(msg).unwrap_or_default();
        let raw = fd.map(|f| [f.as_raw_fd()]);
        let cmsgs: Vec<ControlMessage> = raw.as_ref().map(|r| ControlMessage::ScmRights(r)).into_iter().collect();
        sendmsg::<()>(self.fd.as_raw_fd(), &[IoSlice::new(&data)], &cmsgs, MsgFlags::MSG_NOSIGNAL, None).map(drop).map_err(sys::err(
            "sendmsg",
            "sync socket",
            msg.name(),
        ))
    }

    /// `send_with_fd` to init, from the parent. An init that failed and
    /// exited meanwhile fails the send (EPIPE, ECONNRESET); its error,
    /// sent before it went, is still queued on this end, and is the error.
    pub fn tell(&self, msg: &Msg, fd: Option<&OwnedFd>) -> Result<(), SyncError> {
        self.send_with_fd(msg, fd).map_err(|e| {
            if matches!(e.errno, nix::errno::Errno::EPIPE | nix::errno::Errno::ECONNRESET)
                && let Ok((Msg::Error { msg }, _)) = self.recv()
            {
                return SyncError::Init(msg);
            }
            SyncError::Sys(e)
        })
    }

    /// Receives one message (and an fd, if one came with it).
    pub fn recv(&self) -> Result<(Msg, Option<OwnedFd>), SyncError> {
        let (buf, fd) = sys::recv_datagram(self.fd.as_fd(), "sync socket")?;
        if buf.is_empty() {
            return Err(SyncError::Closed);
        }
        let msg = serde_json::from_slice(&buf).map_err(|e| SyncError::Decode(e.to_string()))?;
        Ok((msg, fd))
    }

    /// Waits for `want`; an `Error` from init becomes `SyncError::Init`.
    pub fn expect(&self, want: Msg, name: &'static str) -> Result<Option<OwnedFd>, SyncError> {
        match self.recv()? {
            (m, fd) if m == want => Ok(fd),
            (Msg::Error { msg }, _) => Err(SyncError::Init(msg)),
            (got, _) => Err(SyncError::Unexpected { want: name, got }),
        }
    }

    pub fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

/// Sends `fd` as the single SCM_RIGHTS fd of a one-byte message: the form
/// containerd's go-runc and podman's conmon read from `--console-socket`.
/// Connects to the `--pidfd-socket` at `path` and sends it a pidfd of
/// `pid` (SCM_RIGHTS), as runc does: the caller can signal or wait for the
/// process with no pid-reuse race.
pub fn send_pidfd(path: &std::path::Path, pid: i32) -> Result<(), SysError> {
    let pidfd = sys::pidfd_open(pid)?;
    let sock = std::os::unix::net::UnixStream::connect(path).map_err(sys::io_err("connect --pidfd-socket", path))?;
    send_fd(&sock, &pidfd, "pidfd")
}

pub fn send_fd(sock: &impl AsRawFd, fd: &OwnedFd, name: &str) -> Result<(), SysError> {
    // A stream socket carries no SCM_RIGHTS without at least one data byte.
    let name = if name.is_empty() { "pty" } else { name };
    let raw = [fd.as_raw_fd()];
    let cmsg = [ControlMessage::ScmRights(&raw)];
    sendmsg::<()>(sock.as_raw_fd(), &[IoSlice::new(name.as_bytes())], &cmsg, MsgFlags::empty(), None).map(drop).map_err(sys::err(
        "sendmsg",
        "console socket",
        "SCM_RIGHTS",
    ))
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_send_to_an_init_that_failed_and_went_reports_its_error() {
        let (parent, init) = pair().unwrap();
        init.send(&Msg::Error { msg: "mount /proc: boom".into() }).unwrap();
        drop(init);
        match parent.tell(&Msg::HooksDone { state: String::new() }, None) {
            Err(SyncError::Init(m)) => assert_eq!(m, "mount /proc: boom"),
            other => panic!("{other:?}"),
        }
        // Gone without a word: the send's own error.
        let (parent, init) = pair().unwrap();
        drop(init);
        assert!(matches!(parent.tell(&Msg::Proceed, None), Err(SyncError::Sys(_))));
    }

    use super::*;

    #[test]
    fn messages_and_fds_cross() {
        let (a, b) = pair().unwrap();
        a.send(&Msg::RuntimeHooks).unwrap();
        assert!(b.expect(Msg::RuntimeHooks, "RuntimeHooks").unwrap().is_none());
        let f = std::fs::File::open("/dev/null").unwrap();
        a.send_with_fd(&Msg::PtyMaster, Some(&OwnedFd::from(f))).unwrap();
        assert!(b.expect(Msg::PtyMaster, "PtyMaster").unwrap().is_some());
        a.send(&Msg::Error { msg: "mount /x: EPERM".into() }).unwrap();
        match b.expect(Msg::Created, "Created") {
            Err(SyncError::Init(m)) => assert_eq!(m, "mount /x: EPERM"),
            other => panic!("{other:?}"),
        }
        drop(a);
        assert!(matches!(b.recv(), Err(SyncError::Closed)));
    }
}
