//! The only module with `unsafe`: thin wrappers over the syscalls that `nix`
//! does not cover (clone3, close_range, setdomainname, terminal ioctls,
//! prlimit), plus the error type every syscall in strata reports through.
//!
//! Every error names the operation, the path (or fd) it acted on and the
//! flags it passed, so that a failure deep in container setup reads like
//! `mount /proc/self/fd/7 (dest /proc) flags MS_NOSUID|MS_NODEV: EPERM`.
//!
//! # Children of a raw clone
//!
//! A child made by a raw `clone3` is a copy of the caller that glibc knows
//! nothing of: glibc's `fork()` resets its own locks (malloc's arenas, the
//! thread list's lock that `setresuid` takes to reach every thread, stdio)
//! in the child, a raw clone does not. If another thread held one of those
//! locks at the clone, the child waits on it forever. So each site is one
//! of two kinds, and says which in a comment:
//!
//! - **single-threaded caller** (`clone_process`): it checks, at the clone,
//!   that the kernel counts one thread in the process, and refuses
//!   otherwise (`clone3 ... the caller has N threads`). With no other
//!   thread no lock can be held, and the child may then use glibc freely.
//!   Sites: init (`process::parent`), init's second stage with a joined
//!   user namespace and a new pid namespace (`process::init`), exec's
//!   child (`process::exec`), the idmap throwaway namespace
//!   (`linux::idmap`, whose child only calls `prctl` and `pause`).
//! - **glibc's fork** (`fork_process`): for work that must run in a child
//!   whatever threads the caller has (`userns::run_as_root`, which the
//!   layer store calls and tests call from a threaded harness; the idmap
//!   helper that joins init's mount namespace, `linux::idmap`). The child
//!   then unshares or joins what it needs itself.
//!
//! CRIU (`checkpoint::criu`) and hooks are started with std's `Command`
//! (posix_spawn, or fork and then only std's async-signal-safe fd and
//! signal setup before exec): none of strata's code runs in those children.
//!
//! May use nothing of strata's: every other module uses it.

pub mod arena;
#[cfg(target_arch = "x86_64")]
mod memcpy;
pub mod mount_api;
#[cfg(target_env = "musl")]
mod musl;
pub mod xattr;

use std::fmt;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::path::{Path, PathBuf};

pub use nix::errno::Errno;

/// A failed syscall: which one, on what, with which flags.
#[derive(Debug, thiserror::Error)]
pub struct SysError {
    pub op: &'static str,
    pub path: String,
    pub flags: String,
    #[source]
    pub errno: Errno,
}

impl fmt::Display for SysError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.op)?;
        if !self.path.is_empty() {
            write!(f, " {}", self.path)?;
        }
        if !self.flags.is_empty() {
            write!(f, " ({})", self.flags)?;
        }
        write!(f, ": {}", errno_text(self.errno))
    }
}

/// An errno's text as Go (and so runc) writes it: "operation not
/// permitted". Clients match these words in a runtime's errors (podman:
/// "permission denied", "no such file or directory").
pub fn errno_text(e: Errno) -> String {
    let d = e.desc();
    // "I/O error" keeps its capitals: only a capitalised word is lowered.
    match d.chars().nth(1) {
        Some(second) if second.is_lowercase() => d[..1].to_lowercase() + &d[1..],
        _ => d.to_string(),
    }
}

pub type Result<T> = std::result::Result<T, SysError>;

/// Builds the `map_err` closure for a syscall result.
pub fn err(op: &'static str, path: impl fmt::Display, flags: impl fmt::Display) -> impl FnOnce(Errno) -> SysError {
    let path = path.to_string();
    let flags = flags.to_string();
    move |errno| SysError { op, path, flags, errno }
}

/// Wraps an `io::Error` (from std file calls) the same way.
pub fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> SysError + 'a {
    move |e| SysError {
        op,
        path: path.display().to_string(),
        flags: String::new(),
        errno: Errno::from_raw(e.raw_os_error().unwrap_or(libc::EIO)),
    }
}

/// `/proc/self/fd/N`: the path through which a resolved fd is mounted on,
/// so that the kernel acts on exactly the inode we checked.
/// umask(2), the previous mask returned. It cannot fail, but a failure
/// made up by a tracer (strace's fault injection) is an error here, not
/// a mask of garbage (nix's `umask` panics on one).
pub fn umask(mask: u32) -> Result<u32> {
    // SAFETY: umask takes a plain integer and has no other effect.
    let r = unsafe { libc::syscall(libc::SYS_umask, mask as libc::c_uint) };
    Errno::result(r).map(|old| old as u32).map_err(err("umask", "", format!("{mask:03o}")))
}

/// The mount flags of the filesystem behind `fd` (statvfs's `f_flag`),
/// every bit the kernel reports: nix's `FsFlags` keeps only the bits its
/// libc names, and musl names neither ST_RELATIME nor ST_NOSYMFOLLOW.
pub fn mount_flags(fd: BorrowedFd<'_>, what: &str) -> Result<u64> {
    let mut st = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: fstatvfs fills the buffer it is given, read only on success.
    let r = unsafe { libc::fstatvfs(fd.as_raw_fd(), st.as_mut_ptr()) };
    Errno::result(r).map_err(err("fstatvfs", what, ""))?;
    // SAFETY: initialised by the successful call above.
    let flags = unsafe { st.assume_init() }.f_flag;
    #[allow(clippy::unnecessary_cast)] // c_ulong: 32 bits on 32-bit targets
    Ok(flags as u64)
}

/// The bytes waiting in the pipe or fifo behind `fd` (FIONREAD; either end).
pub fn pipe_unread(fd: BorrowedFd<'_>, what: &str) -> Result<usize> {
    let mut n: libc::c_int = 0;
    // SAFETY: FIONREAD writes one int through the pointer it is given.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::FIONREAD, &mut n) };
    Errno::result(r).map_err(err("ioctl", what, "FIONREAD"))?;
    Ok(n.max(0) as usize)
}

pub fn fd_path(fd: &impl AsRawFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

#[repr(C)]
#[derive(Default)]
struct CloneArgs {
    flags: u64,
    pidfd: u64,
    child_tid: u64,
    parent_tid: u64,
    exit_signal: u64,
    stack: u64,
    stack_size: u64,
    tls: u64,
    set_tid: u64,
    set_tid_size: u64,
    cgroup: u64,
}

/// What `clone_process` returns on each side of the fork.
pub enum Forked {
    Parent(nix::unistd::Pid),
    Child,
}

/// fork(2) with namespace flags, through clone3 so that the child can be
/// placed straight into its cgroup (`CLONE_INTO_CGROUP`, cgroup v2 only).
/// Falls back to clone(2) where clone3 is not available.
///
/// The caller must be single-threaded (see the module doc): this is
/// checked, and a caller with other threads gets an error naming the call.
pub fn clone_process(ns_flags: u64, cgroup: Option<BorrowedFd<'_>>) -> Result<Forked> {
    let threads = wait_single_threaded();
    if threads != 1 {
        return Err(SysError {
            op: "clone3",
            path: format!(
                "the caller has {threads} threads (a raw clone needs one: the child could wait forever on a lock another thread held)"
            ),
            flags: format!("{ns_flags:#x}"),
            errno: Errno::EDEADLK,
        });
    }
    // With CLONE_PARENT clone3 takes no exit signal: the child gets the
    // caller's (SIGCHLD, to the caller's parent).
    let exit_signal = if ns_flags & libc::CLONE_PARENT as u64 != 0 { 0 } else { libc::SIGCHLD as u64 };
    let mut args = CloneArgs { flags: ns_flags, exit_signal, ..Default::default() };
    if let Some(fd) = cgroup {
        args.flags |= CLONE_INTO_CGROUP;
        args.cgroup = fd.as_raw_fd() as u64;
    }
    // SAFETY: clone3 without CLONE_VM and without a stack behaves as fork(2);
    // the struct lives for the duration of the call.
    let mut ret = unsafe { libc::syscall(libc::SYS_clone3, &args as *const CloneArgs, std::mem::size_of::<CloneArgs>()) };
    if ret < 0 && Errno::last() == Errno::ENOSYS && cgroup.is_none() {
        // SAFETY: as above; clone(2) with a NULL stack is fork(2) with flags.
        ret = unsafe { libc::syscall(libc::SYS_clone, ns_flags | libc::SIGCHLD as u64, 0usize, 0usize, 0usize, 0usize) };
    }
    match ret {
        r if r < 0 => Err(err("clone3", "", format!("{:#x}", args.flags))(Errno::last())),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(nix::unistd::Pid::from_raw(pid as i32))),
    }
}

/// Reads a file of procfs, cgroupfs or sysfs (or any small file) whole.
/// `fs::read_to_string` asks such a file its size first (they say 0), then
/// reads 32 bytes and doubles: 7 reads of a host's `/proc/self/mountinfo`.
/// This reads a page at a time, with no fstat and no lseek (which
/// `File::read_to_end` makes for its size hint): usually two reads.
pub fn read_small(path: impl AsRef<Path>) -> std::io::Result<String> {
    use std::io::Read;
    let file = std::fs::File::open(path)?;
    let mut buf = vec![0u8; 4096];
    let mut len = 0;
    loop {
        if len == buf.len() {
            buf.resize(len * 2, 0);
        }
        match (&file).read(&mut buf[len..]) {
            Ok(0) => break,
            Ok(n) => len += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    buf.truncate(len);
    String::from_utf8(buf).map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, e))
}

/// The number of threads the kernel counts in this process (`Threads:` of
/// /proc/self/status); 0 where it cannot be read.
pub fn thread_count() -> usize {
    let text = read_small("/proc/self/status").unwrap_or_default();
    text.lines().find_map(|l| l.strip_prefix("Threads:")).and_then(|n| n.trim().parse().ok()).unwrap_or(0)
}

/// `thread_count`, given up to 100 ms to fall to one: a thread that was
/// just joined can still be counted until the kernel has released it (it
/// wakes its joiner on the way out), but it holds no lock by then.
fn wait_single_threaded() -> usize {
    let mut n = thread_count();
    for _ in 0..100 {
        if n == 1 {
            break;
        }
        std::thread::sleep(std::time::Duration::from_millis(1));
        n = thread_count();
    }
    n
}

/// glibc's fork(2): unlike a raw clone, glibc resets its own locks in the
/// child, so the child may allocate, take locks and call set*id even when
/// the caller has other threads. Namespaces the child needs, it unshares.
pub fn fork_process() -> Result<Forked> {
    // SAFETY: fork has no preconditions; the child gets a consistent copy
    // of glibc's state (its atfork handlers run), and Rust code in it uses
    // only what the caller's threads could not have left locked (each
    // caller's doc says what its child runs).
    match unsafe { libc::fork() } {
        r if r < 0 => Err(err("fork", "", "")(Errno::last())),
        0 => Ok(Forked::Child),
        pid => Ok(Forked::Parent(nix::unistd::Pid::from_raw(pid))),
    }
}

/// Ends a forked child at once: no exit handlers, and no flush of the
/// stdio buffers it inherited from its parent.
pub fn exit_now(code: i32) -> ! {
    // SAFETY: _exit(2) takes an int and never returns.
    unsafe { libc::_exit(code) }
}

/// Closes every fd from `first` up: the fds a caller left open beyond the
/// stdio and `--preserve-fds`, which strata's children (cloned, not exec'd)
/// would otherwise hold until their own exec.
pub fn close_from(first: u32) -> Result<()> {
    // SAFETY: the caller owns no OwnedFd at or above `first` (it runs this
    // before opening any): nothing refers to the fds closed.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, 0) };
    Errno::result(r).map(drop).map_err(err("close_range", first, "0"))
}

/// pidfd_open(2): an fd that refers to process `pid` for good (it cannot
/// name another process once `pid` is reused).
pub fn pidfd_open(pid: i32) -> Result<OwnedFd> {
    // SAFETY: plain integers; returns a new fd (CLOEXEC by default) or -1.
    let r = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    if r < 0 {
        return Err(err("pidfd_open", pid, "0")(Errno::last()));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// The C library's description of signal `sig` ("Bad system call"), as
/// shells and Go print a signal's death.
pub fn signal_description(sig: i32) -> String {
    // SAFETY: strsignal returns a pointer to a NUL-terminated string that
    // stays valid until the next call; it is copied at once.
    let p = unsafe { libc::strsignal(sig) };
    if p.is_null() {
        return format!("signal {sig}");
    }
    // SAFETY: non-null, NUL-terminated, read before any other strsignal call.
    unsafe { std::ffi::CStr::from_ptr(p) }.to_string_lossy().into_owned()
}

/// renameat2(from, to, RENAME_NOREPLACE): fails with EEXIST (or ENOTEMPTY)
/// rather than replace `to`. A raw syscall: musl has no wrapper for it.
pub fn rename_noreplace(from: &Path, to: &Path) -> std::result::Result<(), Errno> {
    renameat2(from, to, libc::RENAME_NOREPLACE)
}

/// Swaps two existing names in one step (`renameat2` with
/// `RENAME_EXCHANGE`).
pub fn rename_exchange(a: &Path, b: &Path) -> std::result::Result<(), Errno> {
    renameat2(a, b, libc::RENAME_EXCHANGE)
}

fn renameat2(from: &Path, to: &Path, flags: libc::c_uint) -> std::result::Result<(), Errno> {
    use std::os::unix::ffi::OsStrExt;
    let c = |p: &Path| std::ffi::CString::new(p.as_os_str().as_bytes()).map_err(|_| Errno::EINVAL);
    let (from, to) = (c(from)?, c(to)?);
    // SAFETY: two NUL-terminated paths that outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_renameat2, libc::AT_FDCWD, from.as_ptr(), libc::AT_FDCWD, to.as_ptr(), flags) };
    Errno::result(r).map(drop)
}

/// Marks every fd from `first` up CLOEXEC, so exactly 0..first survive exec.
pub fn cloexec_from(first: u32) -> Result<()> {
    // SAFETY: close_range only changes fd flags.
    let r = unsafe { libc::syscall(libc::SYS_close_range, first, u32::MAX, libc::CLOSE_RANGE_CLOEXEC) };
    Errno::result(r).map(drop).map_err(err("close_range", first, "CLOSE_RANGE_CLOEXEC"))
}

pub fn setdomainname(name: &str) -> Result<()> {
    // SAFETY: the pointer and length describe `name`.
    let r = unsafe { libc::setdomainname(name.as_ptr().cast(), name.len()) };
    Errno::result(r).map(drop).map_err(err("setdomainname", name, ""))
}

/// Makes `fd` (a tty) the controlling terminal of the calling session.
pub fn set_controlling_tty(fd: BorrowedFd<'_>) -> Result<()> {
    // SAFETY: TIOCSCTTY takes an int argument.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSCTTY, 0) };
    Errno::result(r).map(drop).map_err(err("ioctl", format!("fd {}", fd.as_raw_fd()), "TIOCSCTTY"))
}

pub fn set_winsize(fd: BorrowedFd<'_>, rows: u16, cols: u16) -> Result<()> {
    let ws = libc::winsize { ws_row: rows, ws_col: cols, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCSWINSZ reads a winsize struct that outlives the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCSWINSZ, &ws) };
    Errno::result(r).map(drop).map_err(err("ioctl", format!("fd {}", fd.as_raw_fd()), "TIOCSWINSZ"))
}

pub fn get_winsize(fd: BorrowedFd<'_>) -> Option<(u16, u16)> {
    let mut ws = libc::winsize { ws_row: 0, ws_col: 0, ws_xpixel: 0, ws_ypixel: 0 };
    // SAFETY: TIOCGWINSZ writes into a winsize struct we own.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TIOCGWINSZ, &mut ws) };
    (r == 0).then_some((ws.ws_row, ws.ws_col))
}

/// A pty master's number (`TIOCGPTN`): the N of /dev/pts/N.
pub fn pty_number(master: BorrowedFd<'_>) -> Result<u32> {
    let mut n: libc::c_uint = 0;
    // SAFETY: TIOCGPTN writes an unsigned int we own.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCGPTN, &mut n) };
    Errno::result(r).map(|_| n).map_err(err("ioctl", format!("fd {}", master.as_raw_fd()), "TIOCGPTN"))
}

/// Unlocks a pty master's slave (`TIOCSPTLCK 0`).
pub fn pty_unlock(master: BorrowedFd<'_>) -> Result<()> {
    let unlock: libc::c_int = 0;
    // SAFETY: TIOCSPTLCK reads an int that outlives the call.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), libc::TIOCSPTLCK, &unlock) };
    Errno::result(r).map(drop).map_err(err("ioctl", format!("fd {}", master.as_raw_fd()), "TIOCSPTLCK 0"))
}

/// Opens a pty master's slave through the master itself (`TIOCGPTPEER`),
/// so that no /dev/pts/N path is ever resolved.
pub fn pty_peer(master: BorrowedFd<'_>) -> Result<OwnedFd> {
    const TIOCGPTPEER: libc::c_ulong = 0x5441;
    let flags = libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC;
    // SAFETY: TIOCGPTPEER takes open flags by value and returns a new fd or -1.
    // `as _`: the request is a c_ulong in glibc, a c_int in musl.
    let r = unsafe { libc::ioctl(master.as_raw_fd(), TIOCGPTPEER as _, flags) };
    let fd = Errno::result(r).map_err(err("ioctl", format!("fd {}", master.as_raw_fd()), "TIOCGPTPEER O_RDWR|O_NOCTTY"))?;
    // SAFETY: the kernel just returned this fd and nothing else owns it.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// personality(2): the execution domain of the calling process, which its
/// exec'd program inherits.
pub fn set_personality(persona: u64, name: &str) -> Result<()> {
    // SAFETY: personality takes a plain integer.
    let r = unsafe { libc::personality(persona as libc::c_ulong) };
    Errno::result(r).map(drop).map_err(err("personality", name, format!("{persona:#x}")))
}

/// `struct sched_attr` for sched_setattr(2); `size` is filled in by it.
#[repr(C)]
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SchedAttr {
    pub size: u32,
    pub policy: u32,
    pub flags: u64,
    pub nice: i32,
    pub priority: u32,
    pub runtime: u64,
    pub deadline: u64,
    pub period: u64,
}

/// sched_setattr(2) on the calling thread.
pub fn sched_setattr(attr: &SchedAttr, what: &str) -> Result<()> {
    let attr = SchedAttr { size: std::mem::size_of::<SchedAttr>() as u32, ..*attr };
    // SAFETY: a valid sched_attr of the size it states; pid 0 is the caller.
    let r = unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
    Errno::result(r).map(drop).map_err(err("sched_setattr", what, format!("{attr:?}")))
}

/// ioprio_set(IOPRIO_WHO_PROCESS, 0, class << 13 | level) on the caller.
pub fn ioprio_set(class: u32, level: u32, what: &str) -> Result<()> {
    const IOPRIO_WHO_PROCESS: libc::c_int = 1;
    let prio = ((class << 13) | level) as libc::c_int;
    // SAFETY: plain integers; who 0 is the caller.
    let r = unsafe { libc::syscall(libc::SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, prio) };
    Errno::result(r).map(drop).map_err(err("ioprio_set", what, format!("class={class} level={level}")))
}

/// set_mempolicy(2) for the calling thread: `mode` with its flags, over the
/// nodes in `nodemask` (one bit per node).
pub fn set_mempolicy(mode: i32, nodemask: &[u64], what: &str) -> Result<()> {
    let (ptr, maxnode) = if nodemask.is_empty() { (std::ptr::null(), 0) } else { (nodemask.as_ptr(), nodemask.len() * 64 + 1) };
    // SAFETY: `ptr` is null or points at `nodemask`, which covers `maxnode - 1` bits and outlives the call.
    let r = unsafe { libc::syscall(libc::SYS_set_mempolicy, mode, ptr, maxnode) };
    Errno::result(r).map(drop).map_err(err("set_mempolicy", what, format!("mode={mode:#x}")))
}

/// prlimit(2) on the calling process.
pub fn setrlimit(resource: u32, name: &str, soft: u64, hard: u64) -> Result<()> {
    let lim = libc::rlimit { rlim_cur: soft, rlim_max: hard };
    // SAFETY: a valid rlimit struct; NULL old-limit pointer.
    let r = unsafe { libc::prlimit(0, resource as _, &lim, std::ptr::null_mut()) };
    Errno::result(r).map(drop).map_err(err("setrlimit", name, format!("soft={soft} hard={hard}")))
}

/// dup2(2) onto a standard fd number (0, 1, 2) that we do not own as an OwnedFd.
pub fn dup_onto(fd: BorrowedFd<'_>, target: RawFd) -> Result<()> {
    // SAFETY: dup2 on valid fds; the target is a standard stream slot.
    let r = unsafe { libc::dup2(fd.as_raw_fd(), target) };
    Errno::result(r).map(drop).map_err(err("dup2", format!("fd {}", fd.as_raw_fd()), format!("-> {target}")))
}

/// Receives one datagram from the socket `sock` into `buf`, with the fd it
/// carries (SCM_RIGHTS, made CLOEXEC), retrying on EINTR. Returns the
/// bytes received (0: the peer closed) and the fd. `what` names the
/// socket in an error.
pub fn recv_with_fd(sock: BorrowedFd<'_>, buf: &mut [u8], what: &str) -> Result<(usize, Option<OwnedFd>)> {
    use nix::sys::socket::{ControlMessageOwned, MsgFlags, recvmsg};
    let mut cmsg = nix::cmsg_space!([RawFd; 1]);
    let mut reset = false;
    loop {
        let mut iov = [std::io::IoSliceMut::new(buf)];
        match recvmsg::<()>(sock.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::MSG_CMSG_CLOEXEC) {
            // A peer that closed with messages of ours unread leaves
            // ECONNRESET, which the kernel reports before the messages the
            // peer sent first (its last words: the error it died of). The
            // error is cleared as it is reported, so those come next.
            Ok(r) if r.bytes == 0 && reset => break,
            Ok(r) => {
                let fd = r.cmsgs().ok().into_iter().flatten().find_map(|c| match c {
                    ControlMessageOwned::ScmRights(fds) => fds.first().copied(),
                    _ => None,
                });
                return Ok((r.bytes, fd.map(owned_from_received)));
            }
            Err(Errno::EINTR) => continue,
            Err(Errno::ECONNRESET) if !reset => reset = true,
            Err(e) => return Err(err("recvmsg", what, "MSG_CMSG_CLOEXEC")(e)),
        }
    }
    Err(err("recvmsg", what, "MSG_CMSG_CLOEXEC")(Errno::ECONNRESET))
}

/// Receives one datagram from the SOCK_SEQPACKET socket `sock`, whatever
/// its size, with the fd it carries (as `recv_with_fd`). The datagram's
/// length is asked first (`MSG_PEEK | MSG_TRUNC`, which takes nothing and
/// installs no fd), so that the buffer is that long: a fixed buffer would
/// be zeroed and faulted in whole at every message, and would cut a longer
/// one. An empty result: the peer closed.
pub fn recv_datagram(sock: BorrowedFd<'_>, what: &str) -> Result<(Vec<u8>, Option<OwnedFd>)> {
    use nix::sys::socket::{MsgFlags, recv};
    let mut reset = false;
    loop {
        // ECONNRESET: as in `recv_with_fd`, the peer's last messages follow.
        let len = match recv(sock.as_raw_fd(), &mut [], MsgFlags::MSG_PEEK | MsgFlags::MSG_TRUNC) {
            Ok(0) if reset => break,
            Ok(0) => return Ok((Vec::new(), None)),
            Ok(n) => n,
            Err(Errno::EINTR) => continue,
            Err(Errno::ECONNRESET) if !reset => {
                reset = true;
                continue;
            }
            Err(e) => return Err(err("recv", what, "MSG_PEEK|MSG_TRUNC")(e)),
        };
        let mut buf = vec![0u8; len];
        match recv_with_fd(sock, &mut buf, what) {
            Ok((0, _)) if reset => break,
            Ok((n, fd)) => {
                buf.truncate(n);
                return Ok((buf, fd));
            }
            Err(e) if e.errno == Errno::ECONNRESET && !reset => reset = true,
            Err(e) => return Err(e),
        }
    }
    Err(err("recvmsg", what, "MSG_CMSG_CLOEXEC")(Errno::ECONNRESET))
}

/// Drops `cap` (its number) from the calling thread's bounding set.
/// Returns false where the kernel does not know the capability (EINVAL):
/// it cannot be held, so there is nothing to drop. Asking first whether
/// each one is known (`PR_CAPBSET_READ`) would double the calls.
pub fn capbset_drop(cap: u8, name: impl fmt::Display) -> Result<bool> {
    // SAFETY: prctl with integer arguments only.
    match unsafe { libc::prctl(libc::PR_CAPBSET_DROP, libc::c_ulong::from(cap), 0, 0, 0) } {
        0 => Ok(true),
        _ if Errno::last() == Errno::EINVAL => Ok(false),
        _ => Err(err("prctl PR_CAPBSET_DROP", name, "")(Errno::last())),
    }
}

/// One `capset(2)` of the calling thread's effective, permitted and
/// inheritable sets (bit masks of capability numbers), as runc makes it:
/// the kernel checks all three against the sets as they were before.
pub fn capset(effective: u64, permitted: u64, inheritable: u64) -> Result<()> {
    #[repr(C)]
    struct Header {
        version: u32,
        pid: i32,
    }
    #[repr(C)]
    #[derive(Clone, Copy)]
    struct Data {
        effective: u32,
        permitted: u32,
        inheritable: u32,
    }
    const VERSION_3: u32 = 0x2008_0522;
    let half = |m: u64, hi: bool| if hi { (m >> 32) as u32 } else { m as u32 };
    let data: [Data; 2] =
        [false, true].map(|hi| Data { effective: half(effective, hi), permitted: half(permitted, hi), inheritable: half(inheritable, hi) });
    let mut header = Header { version: VERSION_3, pid: 0 };
    // SAFETY: a v3 header and the two data structs v3 takes, both alive
    // for the call; the kernel only reads the data.
    let r = unsafe { libc::syscall(libc::SYS_capset, &mut header as *mut Header, data.as_ptr()) };
    Errno::result(r).map(drop).map_err(err(
        "capset",
        "",
        format!("effective {effective:#x} permitted {permitted:#x} inheritable {inheritable:#x}"),
    ))
}

/// Takes ownership of a raw fd received from the kernel (SCM_RIGHTS).
pub fn owned_from_received(fd: RawFd) -> OwnedFd {
    // SAFETY: the fd was just installed in our table by recvmsg and nothing
    // else refers to it.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Raw `mount_setattr(2)` for recursive read-only (`rro`) and friends.
pub fn mount_setattr_recursive(fd: BorrowedFd<'_>, set: u64, clr: u64, what: &str) -> Result<()> {
    mount_setattr(fd, set, clr, true, what)
}

/// `mount_setattr(2)` on the mount `fd` refers to (AT_EMPTY_PATH).
pub fn mount_setattr(fd: BorrowedFd<'_>, set: u64, clr: u64, recursive: bool, what: &str) -> Result<()> {
    mount_setattr_with(fd, set, clr, None, recursive, what)
}

/// `MOUNT_ATTR_IDMAP` with the user namespace `userns`: the detached mount
/// `fd` (and its submounts when `recursive`) shows its files' owners
/// through that namespace's id mappings.
pub fn mount_setattr_idmap(fd: BorrowedFd<'_>, userns: BorrowedFd<'_>, recursive: bool, what: &str) -> Result<()> {
    const MOUNT_ATTR_IDMAP: u64 = 0x0010_0000;
    mount_setattr_with(fd, MOUNT_ATTR_IDMAP, 0, Some(userns), recursive, what)
}

fn mount_setattr_with(fd: BorrowedFd<'_>, set: u64, clr: u64, userns: Option<BorrowedFd<'_>>, recursive: bool, what: &str) -> Result<()> {
    #[repr(C)]
    struct MountAttr {
        attr_set: u64,
        attr_clr: u64,
        propagation: u64,
        userns_fd: u64,
    }
    let userns_fd = userns.map(|u| u.as_raw_fd() as u64).unwrap_or(0);
    let attr = MountAttr { attr_set: set, attr_clr: clr, propagation: 0, userns_fd };
    const AT_RECURSIVE: u32 = 0x8000;
    let rec = if recursive { AT_RECURSIVE } else { 0 };
    let empty = c"";
    // SAFETY: valid fd, empty path with AT_EMPTY_PATH, attr struct outlives call.
    let r = unsafe {
        libc::syscall(
            libc::SYS_mount_setattr,
            fd.as_raw_fd(),
            empty.as_ptr(),
            (libc::AT_EMPTY_PATH as u32 | rec) as libc::c_uint,
            &attr as *const MountAttr,
            std::mem::size_of::<MountAttr>(),
        )
    };
    let how = if recursive { " AT_RECURSIVE" } else { "" };
    Errno::result(r).map(drop).map_err(err("mount_setattr", what, format!("set={set:#x} clr={clr:#x}{how}")))
}

extern "C" fn exit_by_signal(sig: libc::c_int) {
    // SAFETY: _exit is async-signal-safe and never returns.
    unsafe { libc::_exit(128 + sig) }
}

/// Makes each of `sigs` end the calling process (exit status 128+N) and
/// unblocks them: what a container's init does while it waits for `start`.
/// As pid 1 of its namespace, it would otherwise ignore every signal it
/// has no handler for (SIGTERM from `kill` included), while runc's init
/// dies of them. execve resets the handlers.
pub fn exit_on_signals(sigs: &[nix::sys::signal::Signal]) -> Result<()> {
    use nix::sys::signal::{SaFlags, SigAction, SigHandler, SigSet, SigmaskHow, sigaction, sigprocmask};
    let act = SigAction::new(SigHandler::Handler(exit_by_signal), SaFlags::empty(), SigSet::empty());
    let mut set = SigSet::empty();
    for s in sigs {
        // SAFETY: the handler only calls _exit, which is async-signal-safe.
        unsafe { sigaction(*s, &act) }.map_err(err("sigaction", s.as_str(), "exit on signal"))?;
        set.add(*s);
    }
    sigprocmask(SigmaskHow::SIG_UNBLOCK, Some(&set), None).map_err(err("sigprocmask", "", "SIG_UNBLOCK"))
}

/// Restores the default disposition of `sig`.
pub fn default_signal(sig: nix::sys::signal::Signal) {
    // SAFETY: installing SIG_DFL runs no code of ours in signal context.
    let _ = unsafe { nix::sys::signal::signal(sig, nix::sys::signal::SigHandler::SigDfl) };
}

/// Loads a BPF_PROG_TYPE_CGROUP_DEVICE program (instructions as raw u64s).
pub fn bpf_load_cgroup_device(insns: &[u64]) -> Result<OwnedFd> {
    const BPF_PROG_LOAD: libc::c_int = 5;
    const BPF_PROG_TYPE_CGROUP_DEVICE: u32 = 15;
    let license = c"Apache-2.0";
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&BPF_PROG_TYPE_CGROUP_DEVICE.to_ne_bytes());
    attr[4..8].copy_from_slice(&(insns.len() as u32).to_ne_bytes());
    attr[8..16].copy_from_slice(&(insns.as_ptr() as u64).to_ne_bytes());
    attr[16..24].copy_from_slice(&(license.as_ptr() as u64).to_ne_bytes());
    attr[48..58].copy_from_slice(b"strata_dev"); // prog_name
    // SAFETY: attr is a zeroed bpf_attr of the size we pass; the pointers in
    // it (insns, license) outlive the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_LOAD, attr.as_ptr(), attr.len()) };
    if r < 0 {
        return Err(err("bpf", "BPF_PROG_LOAD", format!("CGROUP_DEVICE, {} insns", insns.len()))(Errno::last()));
    }
    // SAFETY: the kernel returned a new fd that nothing else owns.
    Ok(unsafe { OwnedFd::from_raw_fd(r as RawFd) })
}

/// Attaches a device program to a cgroup v2 directory (BPF_F_ALLOW_MULTI).
pub fn bpf_attach_cgroup_device(cgroup: BorrowedFd<'_>, prog: BorrowedFd<'_>, what: &Path) -> Result<()> {
    const BPF_PROG_ATTACH: libc::c_int = 8;
    const BPF_CGROUP_DEVICE: u32 = 6;
    const BPF_F_ALLOW_MULTI: u32 = 2;
    let mut attr = [0u8; 128];
    attr[0..4].copy_from_slice(&(cgroup.as_raw_fd() as u32).to_ne_bytes());
    attr[4..8].copy_from_slice(&(prog.as_raw_fd() as u32).to_ne_bytes());
    attr[8..12].copy_from_slice(&BPF_CGROUP_DEVICE.to_ne_bytes());
    attr[12..16].copy_from_slice(&BPF_F_ALLOW_MULTI.to_ne_bytes());
    // SAFETY: attr is a zeroed bpf_attr holding two valid fds.
    let r = unsafe { libc::syscall(libc::SYS_bpf, BPF_PROG_ATTACH, attr.as_ptr(), attr.len()) };
    Errno::result(r).map(drop).map_err(err("bpf", what.display(), "BPF_PROG_ATTACH CGROUP_DEVICE ALLOW_MULTI"))
}

/// keyctl(KEYCTL_JOIN_SESSION_KEYRING, name): a new session keyring, so the
/// container does not share the caller's keys.
pub fn join_session_keyring(name: &str) -> Result<()> {
    const KEYCTL_JOIN_SESSION_KEYRING: libc::c_long = 1;
    let c = std::ffi::CString::new(name).map_err(|_| err("keyctl", name, "name has NUL")(Errno::EINVAL))?;
    // SAFETY: a valid NUL-terminated name pointer for the duration of the call.
    let r = unsafe { libc::syscall(libc::SYS_keyctl, KEYCTL_JOIN_SESSION_KEYRING, c.as_ptr()) };
    Errno::result(r).map(drop).map_err(err("keyctl", name, "KEYCTL_JOIN_SESSION_KEYRING"))
}

/// One classic BPF instruction, laid out as the kernel's `struct sock_filter`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SockFilter {
    pub code: u16,
    pub jt: u8,
    pub jf: u8,
    pub k: u32,
}

/// seccomp(SECCOMP_SET_MODE_FILTER, flags, prog): installs a classic BPF
/// program. With SECCOMP_FILTER_FLAG_NEW_LISTENER, the kernel returns the
/// notify fd.
pub fn seccomp_set_filter(prog: &[SockFilter], flags: u32, flag_names: &str) -> Result<Option<OwnedFd>> {
    let what = format!("{} insns", prog.len());
    let len = u16::try_from(prog.len()).map_err(|_| err("seccomp", &what, "too long for SECCOMP_SET_MODE_FILTER")(Errno::E2BIG))?;
    let fprog = libc::sock_fprog { len, filter: prog.as_ptr() as *mut libc::sock_filter };
    // SAFETY: SockFilter is repr(C) with sock_filter's fields in order, and
    // fprog points at `prog`, alive for the call; the kernel copies it.
    let r = unsafe { libc::syscall(libc::SYS_seccomp, libc::SECCOMP_SET_MODE_FILTER, flags as libc::c_ulong, &fprog) };
    if r < 0 {
        let flags =
            if flag_names.is_empty() { "SECCOMP_SET_MODE_FILTER".to_string() } else { format!("SECCOMP_SET_MODE_FILTER, {flag_names}") };
        return Err(err("seccomp", what, flags)(Errno::last()));
    }
    if flags & libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32 == 0 {
        return Ok(None);
    }
    // SAFETY: with NEW_LISTENER the kernel returned a new fd nothing else owns.
    Ok(Some(unsafe { OwnedFd::from_raw_fd(r as RawFd) }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use nix::sys::socket::{AddressFamily, SockFlag, SockType, socketpair};
    use std::os::fd::AsFd;

    #[test]
    fn read_small_reads_files_of_any_length_whole() {
        let dir = std::env::temp_dir().join(format!("strata-read-small-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for n in [0usize, 1, 4095, 4096, 4097, 20_000] {
            let text: String = (0..n).map(|i| char::from(b'a' + (i % 26) as u8)).collect();
            let f = dir.join(format!("f{n}"));
            std::fs::write(&f, &text).unwrap();
            assert_eq!(read_small(&f).unwrap(), text, "{n} bytes");
        }
        // procfs says 0 for its size: the whole text all the same.
        let maps = read_small("/proc/self/maps").unwrap();
        assert!(maps.ends_with('\n') && maps.lines().count() > 3, "{maps}");
        std::fs::write(dir.join("bad"), [0xffu8, 0xfe]).unwrap();
        assert_eq!(read_small(dir.join("bad")).unwrap_err().kind(), std::io::ErrorKind::InvalidData);
        assert_eq!(read_small(dir.join("none")).unwrap_err().kind(), std::io::ErrorKind::NotFound);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_peers_last_message_survives_its_reset() {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        // a's message is never read by b, which then says its last words and closes.
        nix::unistd::write(&a, b"handed over").unwrap();
        nix::unistd::write(&b, b"error: it failed").unwrap();
        drop(b);
        let mut buf = [0u8; 64];
        let (n, fd) = recv_with_fd(a.as_fd(), &mut buf, "test socket").unwrap();
        assert_eq!(&buf[..n], b"error: it failed");
        assert!(fd.is_none());
        // Then the end: the reset, reported once more as an error.
        let e = recv_with_fd(a.as_fd(), &mut buf, "test socket").map(|(n, _)| n);
        assert!(matches!(e, Ok(0) | Err(SysError { errno: Errno::ECONNRESET, .. })), "{e:?}");
    }

    #[test]
    fn recv_datagram_takes_any_size_with_its_fd_and_the_last_words_after_a_reset() {
        let (a, b) = socketpair(AddressFamily::Unix, SockType::SeqPacket, None, SockFlag::SOCK_CLOEXEC).unwrap();
        // Longer than the 64 KiB the sync socket's buffer had.
        let big: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        nix::unistd::write(&b, &big).unwrap();
        let sent = std::fs::File::open("/dev/null").unwrap();
        let raw = [sent.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
        nix::sys::socket::sendmsg::<()>(b.as_raw_fd(), &[std::io::IoSlice::new(b"x")], &cmsg, nix::sys::socket::MsgFlags::empty(), None)
            .unwrap();
        let (got, fd) = recv_datagram(a.as_fd(), "test socket").unwrap();
        assert!(got == big && fd.is_none(), "{} bytes, fd {fd:?}", got.len());
        let (got, fd) = recv_datagram(a.as_fd(), "test socket").unwrap();
        assert_eq!(got, b"x");
        let fd = fd.expect("the fd came with its message");
        assert_eq!(std::fs::read_link(fd_path(&fd)).unwrap(), Path::new("/dev/null"));
        // As recv_with_fd: a's unread message resets the socket, and b's
        // last words still come, then the end.
        nix::unistd::write(&a, b"handed over").unwrap();
        nix::unistd::write(&b, b"error: it failed").unwrap();
        drop(b);
        assert_eq!(recv_datagram(a.as_fd(), "test socket").unwrap().0, b"error: it failed");
        let e = recv_datagram(a.as_fd(), "test socket").map(|(m, _)| m);
        assert!(matches!(&e, Ok(m) if m.is_empty()) || matches!(e, Err(SysError { errno: Errno::ECONNRESET, .. })), "{e:?}");
    }
}
