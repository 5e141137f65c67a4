//! Talking to CRIU: one `criu swrk` per request, over its RPC socket.
//!
//! ```text
//!  strata                                         criu swrk 3
//!    │ socketpair(AF_UNIX, SOCK_SEQPACKET)             │
//!    │ spawn, with the server end as fd 3 ───────────▶ │ (stdio: the caller's)
//!    │ before(pid): join the container's cgroups       │
//!    │   (restore: the restored tasks are born there)  │
//!    │ CriuReq { type, opts } ───────────────────────▶ │
//!    │ ◀────────── CriuResp { NOTIFY, script, pid } ── │  0..n times, each answered:
//!    │     (orphan-pts-master carries an SCM_RIGHTS fd)│
//!    │ CriuReq { NOTIFY, notify_success } ───────────▶ │
//!    │ ◀──────────── CriuResp { type, success, errno } │  the answer
//!    │ waitpid(criu)                                   │  exits
//! ```
//!
//! With `rst_sibling`, the restored init is made with CLONE_PARENT: it is
//! strata's child, not CRIU's, and outlives `criu swrk`.
//!
//! The fds CRIU must inherit (the socket, namespace files, pipes) are made
//! inheritable just before the spawn and closed just after it: strata is
//! single-threaded here, so no other spawn can catch them.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
use protobuf::Message;
use rust_criu::rust_criu_protobuf::rpc::{Criu_features, Criu_opts, Criu_req, Criu_req_type, Criu_resp};

use crate::sys::{self, SysError};

#[derive(Debug, thiserror::Error)]
pub enum CriuError {
    #[error("criu: start {path}: {source}")]
    Spawn { path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("criu {path}: {what}")]
    Protocol { path: PathBuf, what: String },
    #[error("criu failed: type {kind} errno {errno}{msg}")]
    Failed { kind: String, errno: i32, msg: String },
    #[error("criu: {script} notification: {msg}")]
    Notify { script: String, msg: String },
}

type Result<T> = std::result::Result<T, CriuError>;

/// A notification CRIU sent during a request.
pub struct Notice<'a> {
    pub script: &'a str,
    pub pid: i32,
    /// The fd it carried (`orphan-pts-master`: the restored pty's master).
    pub fd: Option<OwnedFd>,
}

/// The CRIU binary to use (`--criu`, default `criu` on PATH).
#[derive(Debug, Clone)]
pub struct Criu {
    pub path: PathBuf,
}

impl Criu {
    pub fn new(path: Option<&Path>) -> Criu {
        Criu { path: path.map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("criu")) }
    }

    /// CRIU's version as runc numbers it: major*10000 + minor*100 + sublevel
    /// (a git build counts as the next minor release).
    pub fn version(&self) -> Result<u32> {
        let resp = self.request(Criu_req_type::VERSION, None, &[], |_| Ok(()), |_| Ok(()))?;
        let v = resp.version.as_ref().ok_or_else(|| self.protocol("VERSION answer without a version"))?;
        let mut n = (v.major_number() * 10000 + v.minor_number() * 100 + v.sublevel()) as u32;
        if v.has_gitid() {
            n = n - n % 100 + 100;
        }
        Ok(n)
    }

    /// Asks which of `want`'s features this CRIU and kernel have.
    pub fn features(&self, want: Criu_features) -> Result<Criu_features> {
        let mut req = Criu_req::new();
        req.set_type(Criu_req_type::FEATURE_CHECK);
        req.features = protobuf::MessageField::some(want);
        let resp = self.send(req, &[], |_| Ok(()), |_| Ok(()))?;
        Ok(resp.features.into_option().unwrap_or_default())
    }

    /// Runs one DUMP, PRE_DUMP or RESTORE request. `inherit` are the fds
    /// CRIU must get under their own numbers (`opts` names them);
    /// `before` runs with CRIU's pid before the request is sent;
    /// `notify` answers each notification (an error aborts the request).
    pub fn request(
        &self,
        kind: Criu_req_type,
        opts: Option<Criu_opts>,
        inherit: &[BorrowedFd<'_>],
        before: impl FnOnce(u32) -> Result<()>,
        notify: impl FnMut(Notice<'_>) -> Result<()>,
    ) -> Result<Criu_resp> {
        let mut req = Criu_req::new();
        req.set_type(kind);
        req.opts = opts.into();
        self.send(req, inherit, before, notify)
    }

    fn send(
        &self,
        req: Criu_req,
        inherit: &[BorrowedFd<'_>],
        before: impl FnOnce(u32) -> Result<()>,
        mut notify: impl FnMut(Notice<'_>) -> Result<()>,
    ) -> Result<Criu_resp> {
        let kind = req.type_();
        let (client, server) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).map_err(sys::err(
            "socketpair",
            "criu swrk",
            "SOCK_SEQPACKET|SOCK_CLOEXEC",
        ))?;
        let mut child = self.spawn(&server, inherit)?;
        drop(server);
        // From here on CRIU is ended and reaped on every way out.
        let reaped = Reap(&mut child);
        before(reaped.0.id())?;
        let bytes = req.write_to_bytes().map_err(|e| self.protocol(format!("encode request: {e}")))?;
        nix::unistd::write(&client, &bytes).map_err(sys::err("write", "criu swrk socket", ""))?;
        loop {
            let (resp, fd) = self.recv(client.as_fd())?;
            if !resp.success() {
                // CRIU's own message is its first error, which is often only
                // its complaint about RLIMIT_NOFILE: the caller adds the log's.
                let msg = resp
                    .cr_errmsg
                    .clone()
                    .filter(|m| !m.contains("RLIMIT_NOFILE"))
                    .map(|m| format!(": {}", m.trim_end()))
                    .unwrap_or_default();
                return Err(CriuError::Failed { kind: format!("{:?}", resp.type_()), errno: resp.cr_errno(), msg });
            }
            if resp.type_() != Criu_req_type::NOTIFY {
                if resp.type_() != kind {
                    return Err(self.protocol(format!("asked {kind:?}, answered {:?}", resp.type_())));
                }
                drop(client);
                reaped.wait(kind)?;
                return Ok(resp);
            }
            let script = resp.notify.script().to_string();
            let result = notify(Notice { script: &script, pid: resp.notify.pid(), fd });
            let mut ack = Criu_req::new();
            ack.set_type(Criu_req_type::NOTIFY);
            ack.set_notify_success(result.is_ok());
            let bytes = ack.write_to_bytes().map_err(|e| self.protocol(format!("encode notify answer: {e}")))?;
            let sent = nix::unistd::write(&client, &bytes).map_err(sys::err("write", "criu swrk socket", ""));
            result?;
            sent?;
        }
    }

    fn spawn(&self, server: &OwnedFd, inherit: &[BorrowedFd<'_>]) -> Result<Child> {
        let fds: Vec<BorrowedFd<'_>> = std::iter::once(server.as_fd()).chain(inherit.iter().copied()).collect();
        for fd in &fds {
            set_inheritable(*fd, true)?;
        }
        let spawned = Command::new(&self.path).arg("swrk").arg(server.as_raw_fd().to_string()).spawn();
        for fd in &fds {
            set_inheritable(*fd, false)?;
        }
        spawned.map_err(|source| CriuError::Spawn { path: self.path.clone(), source })
    }

    fn recv(&self, sock: BorrowedFd<'_>) -> Result<(Criu_resp, Option<OwnedFd>)> {
        let mut buf = vec![0u8; 64 * 1024];
        let (n, fd) = sys::recv_with_fd(sock, &mut buf, "criu swrk socket")?;
        if n == 0 {
            return Err(self.protocol("it closed the socket without an answer (it crashed or was killed; see its log)"));
        }
        if n == buf.len() {
            return Err(self.protocol("answer larger than 64 KiB"));
        }
        let resp = Criu_resp::parse_from_bytes(&buf[..n]).map_err(|e| self.protocol(format!("decode answer: {e}")))?;
        Ok((resp, fd))
    }

    fn protocol(&self, what: impl Into<String>) -> CriuError {
        CriuError::Protocol { path: self.path.clone(), what: what.into() }
    }
}

/// Ends CRIU (if still there) and reaps it when dropped; `wait` instead
/// waits for it to exit by itself after its answer.
struct Reap<'a>(&'a mut Child);

impl Reap<'_> {
    fn wait(self, kind: Criu_req_type) -> Result<()> {
        let status = self.0.wait().map_err(|e| CriuError::Protocol { path: PathBuf::from("criu"), what: format!("wait: {e}") })?;
        std::mem::forget(self);
        // After a PRE_DUMP answer CRIU waits for more requests: its exit
        // status says nothing then.
        if !status.success() && kind != Criu_req_type::PRE_DUMP {
            return Err(CriuError::Failed { kind: format!("{kind:?}"), errno: 0, msg: format!(": criu exited with {status}") });
        }
        Ok(())
    }
}

impl Drop for Reap<'_> {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn set_inheritable(fd: BorrowedFd<'_>, on: bool) -> Result<()> {
    use nix::fcntl::{FcntlArg, FdFlag, fcntl};
    let flags = if on { FdFlag::empty() } else { FdFlag::FD_CLOEXEC };
    fcntl(fd, FcntlArg::F_SETFD(flags)).map(drop).map_err(|e| sys::err("fcntl", fd.as_raw_fd(), format!("F_SETFD {flags:?}"))(e).into())
}
