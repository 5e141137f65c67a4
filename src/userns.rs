//! A user namespace's id maps, and work done as the root of one: a
//! mechanism below both the layer store (rootless unpack, prune, commit)
//! and the container's setup (`process`), so it lives on a floor of its
//! own, above only `sys`.
//!
//! - `write`: the maps of a namespace another process made (the container's
//!   init). Root writes them to procfs itself. A rootless caller mapping
//!   only its own uid and gid writes them too, after denying `setgroups` as
//!   the kernel then requires. More than that goes through the setuid
//!   helpers of the `uidmap` package, `newuidmap` and `newgidmap`, which
//!   allow only the ranges /etc/subuid and /etc/subgid grant.
//! - `run_as_root`: a closure run in a child that is root of a new user
//!   namespace with given maps. A rootless caller unpacks image layers and
//!   removes container dirs this way: files keep the owners the image gives
//!   them (as the caller's subordinate ids on disk), and files the
//!   container's users made can be removed.
//!
//! ```text
//!   caller                                  child (glibc fork)
//!     |  fork ----------------------------->  |  unshare(CLONE_NEWUSER)
//!     |  <------------------------ `ready`   |  one byte; waits on `go`
//!     |  uid_map, gid_map (write)             |
//!     |  `go` (one byte) ------------------>  |  setresgid/setresuid 0
//!     |                                       |  runs the closure
//!     |  <----------------------- `result`   |  "ok:" + output, or "err:" + message
//!     |  waitpid                              |  _exit
//! ```
//!
//! The child is made by glibc's fork, not a raw clone (see `sys`): callers
//! may have other threads (the test harness has; the closure itself may
//! start some), and after a raw clone the child's `setresgid` could wait
//! forever on a glibc lock one of them held. `unshare(CLONE_NEWUSER)`, which
//! a threaded process may not call, is made by the (single-threaded) child.

use std::io::{Read, Write};
use std::os::fd::OwnedFd;

use nix::sched::CloneFlags;
use nix::unistd::{Gid, Pid, Uid};
use serde::{Deserialize, Serialize};

use crate::procfs::ProcFs;
use crate::sys::{self, Forked, SysError};

/// One id map line: `count` ids from `inside` on map to `outside` on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Range {
    pub inside: u32,
    pub outside: u32,
    pub count: u32,
}

/// A user namespace's uid and gid maps.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct IdMaps {
    pub uid: Vec<Range>,
    pub gid: Vec<Range>,
}

#[derive(Debug, thiserror::Error)]
pub enum UserMapError {
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("rootless: {field} maps more than your own id, which needs {helper} (Debian package uidmap): {source}")]
    NoHelper { field: &'static str, helper: &'static str, source: std::io::Error },
    #[error("rootless: {helper} {args} refused {field} (ranges must be within /etc/{file}): {msg}")]
    Refused { helper: &'static str, args: String, field: &'static str, file: &'static str, msg: String },
    #[error("in a user namespace (uid map {maps}): {msg}")]
    Child { maps: String, msg: String },
}

impl IdMaps {
    pub fn from_spec(linux: &oci_spec::runtime::Linux) -> IdMaps {
        let ranges = |m: &Option<Vec<oci_spec::runtime::LinuxIdMapping>>| {
            m.iter().flatten().map(|m| Range { inside: m.container_id(), outside: m.host_id(), count: m.size() }).collect()
        };
        IdMaps { uid: ranges(linux.uid_mappings()), gid: ranges(linux.gid_mappings()) }
    }

    /// The map file's text: one `inside outside count` line per range.
    pub fn text(ranges: &[Range]) -> String {
        ranges.iter().map(|r| format!("{} {} {}\n", r.inside, r.outside, r.count)).collect()
    }

    /// The host id of the namespace's id 0 (its root), or the overflow id
    /// where 0 is not mapped.
    pub fn root_of(ranges: &[Range]) -> u32 {
        ranges.iter().find(|r| r.inside == 0 && r.count > 0).map_or(65534, |r| r.outside)
    }

    /// Whether the maps hold only the caller's own uid and gid, one id each:
    /// what an unprivileged process may write without a helper.
    fn only_own(&self, euid: u32, egid: u32) -> bool {
        let one = |r: &[Range], id: u32| r.len() == 1 && r[0].outside == id && r[0].count == 1;
        one(&self.uid, euid) && one(&self.gid, egid)
    }
}

/// Writes the maps of `pid`'s user namespace (see the module doc for who
/// writes them how).
pub fn write(pid: Pid, maps: &IdMaps) -> Result<(), UserMapError> {
    let proc = ProcFs::mounted()?;
    let (euid, egid) = (nix::unistd::geteuid().as_raw(), nix::unistd::getegid().as_raw());
    if euid != 0 {
        if !maps.only_own(euid, egid) {
            return helpers(pid, maps);
        }
        proc.write(&format!("{pid}/setgroups"), b"deny")?;
    }
    proc.write(&format!("{pid}/uid_map"), IdMaps::text(&maps.uid).as_bytes())?;
    proc.write(&format!("{pid}/gid_map"), IdMaps::text(&maps.gid).as_bytes())?;
    Ok(())
}

/// `newuidmap PID INSIDE OUTSIDE COUNT...`, then `newgidmap`: they check the
/// ranges against /etc/subuid and /etc/subgid (and the caller's own ids);
/// their refusal is passed on with the mapping that was asked for.
fn helpers(pid: Pid, maps: &IdMaps) -> Result<(), UserMapError> {
    let table = [("newuidmap", "linux.uidMappings", "subuid", &maps.uid), ("newgidmap", "linux.gidMappings", "subgid", &maps.gid)];
    for (helper, field, file, ranges) in table {
        let args: Vec<String> = ranges.iter().flat_map(|r| [r.inside, r.outside, r.count]).map(|n| n.to_string()).collect();
        let out = std::process::Command::new(helper)
            .arg(pid.to_string())
            .args(&args)
            .output()
            .map_err(|source| UserMapError::NoHelper { field, helper, source })?;
        if !out.status.success() {
            let msg = String::from_utf8_lossy(&out.stderr).trim().to_string();
            return Err(UserMapError::Refused { helper, args: args.join(" "), field, file, msg });
        }
    }
    Ok(())
}

/// Runs `work` in a child that is root (uid and gid 0, every capability)
/// of a new user namespace with `maps`, and returns its outcome: the
/// child's error text comes back as `UserMapError::Child`. The caller may
/// have other threads (the child is a glibc fork); `work` may start threads.
pub fn run_as_root(maps: &IdMaps, work: impl FnOnce() -> Result<(), String>) -> Result<(), UserMapError> {
    run_as_root_with_output(maps, || work().map(|()| String::new())).map(drop)
}

/// `run_as_root` for work that returns a text (which comes back to the
/// caller whole).
pub fn run_as_root_with_output(maps: &IdMaps, work: impl FnOnce() -> Result<String, String>) -> Result<String, UserMapError> {
    let pipe = || nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(sys::err("pipe2", "", "O_CLOEXEC"));
    let (ready_r, ready_w) = pipe()?;
    let (go_r, go_w) = pipe()?;
    let (res_r, res_w) = pipe()?;
    match sys::fork_process()? {
        Forked::Child => {
            drop((ready_r, go_w, res_r));
            let code = child(ready_w, go_r, res_w, work);
            sys::exit_now(code)
        }
        Forked::Parent(pid) => {
            drop((ready_w, go_r, res_w));
            let reaped = parent(pid, maps, ready_r, go_w, res_r);
            let status = nix::sys::wait::waitpid(pid, None);
            let verdict = reaped?;
            let describe = || IdMaps::text(&maps.uid).trim().replace('\n', ", ");
            match (verdict, status) {
                (Some(Err(msg)), _) => Err(UserMapError::Child { maps: describe(), msg }),
                (Some(Ok(out)), Ok(nix::sys::wait::WaitStatus::Exited(_, 0))) => Ok(out),
                (_, status) => Err(UserMapError::Child { maps: describe(), msg: format!("the child ended without a result ({status:?})") }),
            }
        }
    }
}

/// The caller's side: `ready`, maps, `go`, then the verdict (`None` when
/// the child closed the pipe without writing one).
fn parent(pid: Pid, maps: &IdMaps, ready: OwnedFd, go: OwnedFd, result: OwnedFd) -> Result<Option<Result<String, String>>, UserMapError> {
    let child_io = |op| move |e| sys::io_err(op, std::path::Path::new("user namespace child"))(e);
    let mut byte = [0u8; 1];
    // EOF instead of `ready`: the child's unshare failed, and its message
    // follows on the result pipe.
    let unshared = std::fs::File::from(ready).read(&mut byte).map_err(child_io("read"))? == 1;
    if unshared {
        let written = write(pid, maps);
        if let Err(e) = written {
            let _ = nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGKILL);
            return Err(e);
        }
        std::fs::File::from(go).write_all(b"g").map_err(child_io("write"))?;
    } else {
        drop(go);
    }
    let mut text = Vec::new();
    std::fs::File::from(result).read_to_end(&mut text).map_err(child_io("read"))?;
    // The child writes "ok:" and the output, or "err:" and the message.
    let text = String::from_utf8_lossy(&text).into_owned();
    Ok(match (text.strip_prefix("ok:"), text.strip_prefix("err:")) {
        (Some(out), _) => Some(Ok(out.to_string())),
        (_, Some(msg)) => Some(Err(msg.to_string())),
        _ => None,
    })
}

fn child(ready: OwnedFd, go: OwnedFd, result: OwnedFd, work: impl FnOnce() -> Result<String, String>) -> i32 {
    let _ = nix::sys::prctl::set_pdeathsig(nix::sys::signal::Signal::SIGKILL);
    let report = |text: String| {
        let _ = std::fs::File::from(result).write_all(text.as_bytes());
    };
    if let Err(e) = nix::sched::unshare(CloneFlags::CLONE_NEWUSER) {
        drop(ready);
        report(format!("err:unshare CLONE_NEWUSER: {}", crate::sys::errno_text(e)));
        return 1;
    }
    if std::fs::File::from(ready).write_all(b"r").is_err() {
        return 1;
    }
    let mut byte = [0u8; 1];
    if !matches!(std::fs::File::from(go).read(&mut byte), Ok(1)) {
        return 1; // the caller failed to write the maps
    }
    let outcome = nix::unistd::setresgid(Gid::from_raw(0), Gid::from_raw(0), Gid::from_raw(0))
        .and_then(|()| nix::unistd::setresuid(Uid::from_raw(0), Uid::from_raw(0), Uid::from_raw(0)))
        .map_err(|e| format!("become root of the user namespace (setresgid/setresuid 0): {}", crate::sys::errno_text(e)))
        .and_then(|()| work());
    let code = i32::from(outcome.is_err());
    report(match outcome {
        Ok(out) => format!("ok:{out}"),
        Err(msg) => format!("err:{msg}"),
    });
    code
}

/// Whether this process runs in a user namespace other than the initial
/// one (its uid map is not the identity over all ids).
pub fn in_user_namespace() -> bool {
    match crate::sys::read_small("/proc/self/uid_map") {
        Ok(text) => text.split_whitespace().collect::<Vec<_>>() != ["0", "0", "4294967295"],
        Err(_) => false,
    }
}

/// Whether this process is root of the initial user namespace: the only
/// caller that owns the host's filesystems, cgroups and devices.
pub fn host_root() -> bool {
    nix::unistd::geteuid().is_root() && !in_user_namespace()
}

/// The caller's subordinate ranges from /etc/subuid or /etc/subgid
/// (`file`, lines `NAME-or-ID:START:COUNT`), for the user `name`/`id`.
pub fn subordinate_ranges(text: &str, name: &str, id: u32) -> Vec<(u32, u32)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.trim().split(':');
            let (who, start, count) = (f.next()?, f.next()?.parse().ok()?, f.next()?.parse().ok()?);
            (who == name || who.parse::<u32>() == Ok(id)).then_some((start, count))
        })
        .filter(|(_, count)| *count > 0)
        .collect()
}

/// The maps a rootless container gets by default: the caller's own id as
/// 0, and its first subordinate range (if it has one) from 1 on, as
/// podman does. Without subordinate ids, only the caller's own.
pub fn rootless_default(uid: u32, gid: u32, subuids: &[(u32, u32)], subgids: &[(u32, u32)]) -> IdMaps {
    let build = |own: u32, sub: &[(u32, u32)]| {
        let mut v = vec![Range { inside: 0, outside: own, count: 1 }];
        if let Some(&(start, count)) = sub.first() {
            v.push(Range { inside: 1, outside: start, count });
        }
        v
    };
    IdMaps { uid: build(uid, subuids), gid: build(gid, subgids) }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subordinate_ranges_match_name_or_id() {
        let text = "alice:100000:65536\n1001:200000:1000\nbob:300000:0\n# x\nalice:500000:10\n";
        assert_eq!(subordinate_ranges(text, "alice", 1000), [(100000, 65536), (500000, 10)]);
        assert_eq!(subordinate_ranges(text, "carol", 1001), [(200000, 1000)]);
        assert!(subordinate_ranges(text, "bob", 7).is_empty(), "an empty range is none");
    }

    #[test]
    fn rootless_default_maps_own_then_subordinates() {
        let m = rootless_default(1000, 1001, &[(100000, 65536)], &[]);
        assert_eq!(IdMaps::text(&m.uid), "0 1000 1\n1 100000 65536\n");
        assert_eq!(IdMaps::text(&m.gid), "0 1001 1\n");
        assert!(!m.only_own(7, 1001) && IdMaps { uid: m.gid.clone(), gid: m.gid.clone() }.only_own(1001, 1001));
        assert_eq!(IdMaps::root_of(&m.uid), 1000);
        assert_eq!(IdMaps::root_of(&[]), 65534);
    }

    /// As root: the child is root of its namespace, and its files land as
    /// the mapped host ids.
    #[test]
    fn work_runs_as_root_of_the_namespace() {
        if !host_root() {
            return;
        }
        let dir = std::env::temp_dir().join(format!("strata-userns-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let maps = IdMaps {
            uid: vec![Range { inside: 0, outside: 70000, count: 100 }],
            gid: vec![Range { inside: 0, outside: 80000, count: 100 }],
        };
        std::os::unix::fs::chown(&dir, Some(70000), Some(80000)).unwrap();
        let file = dir.join("f");
        run_as_root(&maps, || {
            std::fs::write(&file, "x").map_err(|e| e.to_string())?;
            std::os::unix::fs::chown(&file, Some(5), Some(6)).map_err(|e| e.to_string())
        })
        .unwrap();
        use std::os::unix::fs::MetadataExt;
        let m = std::fs::metadata(&file).unwrap();
        assert_eq!((m.uid(), m.gid()), (70005, 80006));
        let e = run_as_root(&maps, || Err("no luck".into())).unwrap_err().to_string();
        assert!(e.contains("no luck") && e.contains("0 70000 100"), "{e}");
        let e = run_as_root(&maps, || std::os::unix::fs::chown(&file, Some(500), None).map_err(|e| e.to_string())).unwrap_err();
        assert!(e.to_string().contains("Invalid argument"), "an unmapped id: {e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// The hang of a raw-clone child: `run_as_root` over and over while
    /// other threads allocate, start threads and exit (taking the locks a
    /// raw clone would copy held). Every call must finish; a hang fails the
    /// test after a bounded wait instead of holding the run.
    #[test]
    fn run_as_root_finishes_while_other_threads_churn() {
        if !host_root() {
            eprintln!("skipped: run_as_root_finishes_while_other_threads_churn needs root of the host");
            return;
        }
        use std::sync::atomic::{AtomicBool, Ordering};
        use std::sync::{Arc, mpsc};
        let stop = Arc::new(AtomicBool::new(false));
        let churners: Vec<_> = (0..3)
            .map(|_| {
                let stop = stop.clone();
                std::thread::spawn(move || {
                    while !stop.load(Ordering::Relaxed) {
                        let v: Vec<Vec<u8>> = (0..64).map(|i| vec![i as u8; 4096 + i]).collect();
                        std::thread::spawn(move || drop(v)).join().unwrap();
                    }
                })
            })
            .collect();
        let maps =
            IdMaps { uid: vec![Range { inside: 0, outside: 70000, count: 1 }], gid: vec![Range { inside: 0, outside: 70000, count: 1 }] };
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            for i in 0..300 {
                let r = run_as_root(&maps, || {
                    let v = vec![0u8; 1 << 16];
                    (nix::unistd::geteuid().is_root() && v.len() == 1 << 16).then_some(()).ok_or_else(|| "not root".to_string())
                });
                let _ = tx.send((i, r.map_err(|e| e.to_string())));
            }
        });
        let mut done = 0;
        while done < 300 {
            match rx.recv_timeout(std::time::Duration::from_secs(20)) {
                Ok((_, Ok(()))) => done += 1,
                Ok((i, Err(e))) => panic!("call {i}: {e}"),
                Err(_) => panic!("run_as_root hung: call {done} of 300 did not finish in 20 s"),
            }
        }
        stop.store(true, Ordering::Relaxed);
        churners.into_iter().for_each(|t| t.join().unwrap());
    }

    /// A raw clone from a threaded process is refused, naming the call,
    /// rather than risking a child that never wakes.
    #[test]
    fn a_raw_clone_from_a_threaded_process_is_refused() {
        let (tx, rx) = std::sync::mpsc::channel::<()>();
        let t = std::thread::spawn(move || {
            let _ = rx.recv();
        });
        let e = match sys::clone_process(0, None) {
            Err(e) => e.to_string(),
            Ok(Forked::Child) => sys::exit_now(0),
            Ok(Forked::Parent(pid)) => {
                let _ = nix::sys::wait::waitpid(pid, None);
                panic!("a raw clone was made with {} threads", sys::thread_count());
            }
        };
        assert!(e.starts_with("clone3 the caller has ") && e.contains("threads"), "{e}");
        drop(tx);
        t.join().unwrap();
    }
}
