//! `linux.seccomp` through libseccomp: the spec's filter compiled into a
//! libseccomp context (`compile`, before the container starts, so a bad
//! profile fails `create`), then loaded as the last step before execve
//! (`load`). With `SCMP_ACT_NOTIFY` rules, the notify fd and the container
//! state are sent to `listenerPath` (runtime-spec "seccomp notify").
//!
//! strata loads libseccomp's program itself (`seccomp(2)` with the spec's
//! flags), behind the -ENOSYS stub of `linux::enosys`: syscalls newer than
//! the profile get ENOSYS, so that libc falls back to older ones.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::str::FromStr;

use super::enosys::{self, ArchCheck, Insn};
use crate::sys;
use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
use nix::sys::memfd::{MFdFlags, memfd_create};
use oci_spec::runtime::{LinuxSeccomp, LinuxSeccompAction as A, LinuxSeccompFilterFlag as F, LinuxSeccompOperator as Op};

#[derive(Debug, thiserror::Error)]
pub enum SeccompError {
    #[error("seccomp {op}: {msg}")]
    Filter { op: &'static str, msg: String },
    #[error("seccomp: unknown architecture {0}")]
    Arch(String),
    #[error("seccomp: errnoRet {0} needs action SCMP_ACT_ERRNO or SCMP_ACT_TRACE")]
    ErrnoRet(u32),
    #[error("seccomp notify: {0}")]
    Notify(String),
    #[error(transparent)]
    Stub(#[from] super::enosys::StubTooLong),
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
}

type Result<T> = std::result::Result<T, SeccompError>;

fn fail(op: &'static str) -> impl Fn(libseccomp::error::SeccompError) -> SeccompError {
    move |e| SeccompError::Filter { op, msg: e.to_string() }
}

/// The libseccomp action for a spec action and its optional errno.
pub fn action(a: A, errno: Option<u32>) -> Result<ScmpAction> {
    if errno.is_some() && !matches!(a, A::ScmpActErrno | A::ScmpActTrace) {
        return Err(SeccompError::ErrnoRet(errno.unwrap_or(0)));
    }
    Ok(match a {
        A::ScmpActKill | A::ScmpActKillThread => ScmpAction::KillThread,
        A::ScmpActKillProcess => ScmpAction::KillProcess,
        A::ScmpActTrap => ScmpAction::Trap,
        A::ScmpActErrno => ScmpAction::Errno(errno.unwrap_or(libc::EPERM as u32) as i32),
        A::ScmpActNotify => ScmpAction::Notify,
        A::ScmpActTrace => ScmpAction::Trace(errno.unwrap_or(libc::EPERM as u32) as u16),
        A::ScmpActLog => ScmpAction::Log,
        A::ScmpActAllow => ScmpAction::Allow,
    })
}

fn compare(op: Op, value: u64, value_two: Option<u64>) -> (ScmpCompareOp, u64) {
    match op {
        Op::ScmpCmpNe => (ScmpCompareOp::NotEqual, value),
        Op::ScmpCmpLt => (ScmpCompareOp::Less, value),
        Op::ScmpCmpLe => (ScmpCompareOp::LessOrEqual, value),
        Op::ScmpCmpEq => (ScmpCompareOp::Equal, value),
        Op::ScmpCmpGe => (ScmpCompareOp::GreaterEqual, value),
        Op::ScmpCmpGt => (ScmpCompareOp::Greater, value),
        // The spec's MASKED_EQ: `value` is the mask, `valueTwo` the datum.
        Op::ScmpCmpMaskedEq => (ScmpCompareOp::MaskedEqual(value), value_two.unwrap_or(0)),
    }
}

/// A compiled filter, ready to load.
pub struct Filter {
    ctx: ScmpFilterContext,
    pub notify: bool,
    /// The -ENOSYS stub to run first (empty: none).
    stub: Vec<Insn>,
    /// `seccomp(2)`'s flags: the spec's, and NEW_LISTENER for notify rules.
    flags: u32,
    /// SPEC_ALLOW was added because the spec gives no flags (runc's
    /// default): dropped again where the kernel refuses it.
    default_spec_allow: bool,
}

/// The kernel's `AUDIT_ARCH_*` for a libseccomp architecture; `None` for
/// those the stub does not cover (their syscalls go to the filter as is).
fn audit_arch(a: ScmpArch) -> Option<u32> {
    Some(match a {
        ScmpArch::X86 => 0x4000_0003,
        ScmpArch::Arm => 0x4000_0028,
        ScmpArch::Aarch64 => 0xC000_00B7,
        ScmpArch::Mips => 0x0000_0008,
        ScmpArch::Mipsel => 0x4000_0008,
        ScmpArch::Mips64 => 0x8000_0008,
        ScmpArch::Mipsel64 => 0xC000_0008,
        ScmpArch::Mips64N32 => 0xA000_0008,
        ScmpArch::Mipsel64N32 => 0xE000_0008,
        ScmpArch::Ppc => 0x0000_0014,
        ScmpArch::Ppc64 => 0x8000_0015,
        ScmpArch::Ppc64Le => 0xC000_0015,
        ScmpArch::S390 => 0x0000_0016,
        ScmpArch::S390X => 0x8000_0016,
        ScmpArch::Riscv64 => 0xC000_00F3,
        ScmpArch::Loongarch64 => 0xC000_0102,
        _ => return None,
    })
}

/// Per architecture of the profile (and the native one), the newest
/// syscall it names: what the -ENOSYS stub checks. None when the default
/// action lets syscalls run or already returns ENOSYS.
fn enosys_checks(s: &LinuxSeccomp, archs: &[ScmpArch]) -> Vec<ArchCheck> {
    let lets_run = matches!(s.default_action(), A::ScmpActAllow | A::ScmpActLog | A::ScmpActTrace);
    let is_enosys = s.default_action() == A::ScmpActErrno && s.default_errno_ret() == Some(libc::ENOSYS as u32);
    if lets_run || is_enosys {
        return Vec::new();
    }
    let newest = |arch: ScmpArch| -> Option<u32> {
        let names = s.syscalls().iter().flatten().flat_map(|r| r.names());
        names.filter_map(|n| ScmpSyscall::from_name_by_arch(n, arch).ok()).map(i32::from).filter(|&n| n >= 0).max().map(|n| n as u32)
    };
    let mut checks = Vec::new();
    let (mut amd64, mut x32) = (None, None);
    let mut seen = Vec::new();
    for &arch in archs {
        if seen.contains(&arch) {
            continue;
        }
        seen.push(arch);
        match arch {
            ScmpArch::X8664 => amd64 = newest(arch),
            ScmpArch::X32 => x32 = newest(arch),
            _ => {
                let (Some(audit), Some(n)) = (audit_arch(arch), newest(arch)) else { continue };
                checks.push(match arch {
                    ScmpArch::S390 | ScmpArch::S390X => ArchCheck::S390 { audit, newest: n },
                    _ => ArchCheck::Plain { audit, newest: n },
                });
            }
        }
    }
    if amd64.is_some() || x32.is_some() {
        checks.insert(0, ArchCheck::X86_64 { amd64, x32 });
    }
    checks
}

/// Builds the filter. Syscall names this kernel/libseccomp does not know are
/// skipped (as runc does); unknown architectures and bad actions are errors.
pub fn compile(s: &LinuxSeccomp) -> Result<Filter> {
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(fail("init"))?;
    let mut archs = vec![ScmpArch::native()];
    for arch in s.architectures().iter().flatten() {
        let name = serde_json::to_value(arch).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(|_| SeccompError::Arch(name.clone()))?;
        if a != ScmpArch::native() {
            ctx.add_arch(a).map_err(fail("add_arch"))?;
        }
        archs.push(a);
    }
    // strata loads the program itself, so the flags go to seccomp(2); the
    // ones that need a newer kernel than this fail the load, naming them.
    // No `flags` at all (not even an empty list): SPEC_ALLOW, as runc
    // sets it, so that a filtered process is not also slowed by the
    // speculative store bypass mitigation the kernel turns on for it.
    let default_spec_allow = s.flags().is_none();
    let mut flags = if default_spec_allow { libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32 } else { 0 };
    for f in s.flags().iter().flatten() {
        flags |= match f {
            F::SeccompFilterFlagLog => libc::SECCOMP_FILTER_FLAG_LOG,
            F::SeccompFilterFlagSpecAllow => libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW,
            // The filter is loaded by a process of one thread (init, exec's
            // child): every thread has it, so TSYNC has nothing to do and
            // is not passed (as runc), which also keeps it out of the way
            // of NEW_LISTENER.
            F::SeccompFilterFlagTsync => 0,
            F::SeccompFilterFlagWaitKillableRecv => libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV,
        } as u32;
    }
    // libseccomp does this itself; the runtime must not set NNP for the user.
    ctx.set_ctl_nnp(false).map_err(fail("ctl_nnp"))?;
    let mut notify = false;
    for rule in s.syscalls().iter().flatten() {
        let act = action(rule.action(), rule.errno_ret())?;
        if act == default {
            continue; // libseccomp refuses rules equal to the default action
        }
        notify |= act == ScmpAction::Notify;
        if act == ScmpAction::Notify && rule.names().iter().any(|n| n == "write") {
            // The runtime itself writes (its sync messages, the agent's
            // fd) once the filter is on: a notified write would wait on the
            // agent forever. runc's words.
            return Err(SeccompError::Notify("SCMP_ACT_NOTIFY cannot be used for the write syscall".into()));
        }
        let conds: Vec<ScmpArgCompare> = rule
            .args()
            .iter()
            .flatten()
            .map(|a| {
                let (op, datum) = compare(a.op(), a.value(), a.value_two());
                ScmpArgCompare::new(a.index() as u32, op, datum)
            })
            .collect();
        let mut indexes: Vec<usize> = rule.args().iter().flatten().map(|a| a.index()).collect();
        indexes.sort_unstable();
        let repeated = indexes.windows(2).any(|w| w[0] == w[1]);
        for name in rule.names() {
            let Ok(sc) = ScmpSyscall::from_name(name) else { continue };
            if conds.is_empty() {
                ctx.add_rule(act, sc).map_err(|e| SeccompError::Filter { op: "add_rule", msg: format!("{name}: {e}") })?;
            } else if repeated {
                // Several conditions on one argument: OR them, one rule each.
                for c in &conds {
                    ctx.add_rule_conditional(act, sc, std::slice::from_ref(c))
                        .map_err(|e| SeccompError::Filter { op: "add_rule", msg: format!("{name}: {e}") })?;
                }
            } else {
                ctx.add_rule_conditional(act, sc, &conds)
                    .map_err(|e| SeccompError::Filter { op: "add_rule", msg: format!("{name}: {e}") })?;
            }
        }
    }
    if notify {
        flags |= libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32;
    }
    let stub = enosys::stub(&enosys_checks(s, &archs))?;
    Ok(Filter { ctx, notify, stub, flags, default_spec_allow })
}

impl Filter {
    /// Loads the filter into the calling thread. With notify rules, sends
    /// the listener fd to `listener` together with `state_json`.
    pub fn load(self, listener: Option<BorrowedFd<'_>>, state_json: &str, metadata: Option<&str>) -> Result<()> {
        let mut prog = self.stub.clone();
        prog.extend(self.program()?);
        crate::logging::debug(|| format!("seccomp: {} instructions, {} of them the -ENOSYS stub", prog.len(), self.stub.len()));
        crate::logging::debug(|| format!("seccomp filter flags: {}", self.flags));
        let fd = match sys::seccomp_set_filter(&prog, self.flags, &flag_names(self.flags)) {
            Err(e) if e.errno == nix::errno::Errno::EINVAL && self.default_spec_allow => {
                let flags = self.flags & !(libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32);
                sys::seccomp_set_filter(&prog, flags, &flag_names(flags))?
            }
            r => r?,
        };
        let Some(fd) = fd.filter(|_| self.notify) else {
            return Ok(());
        };
        let Some(sock) = listener else {
            return Err(SeccompError::Notify("SCMP_ACT_NOTIFY needs linux.seccomp.listenerPath".into()));
        };
        let state: serde_json::Value = serde_json::from_str(state_json).unwrap_or_default();
        let msg = serde_json::json!({
            "ociVersion": crate::state::OCI_VERSION,
            "fds": ["seccompFd"],
            "pid": state.get("pid").cloned().unwrap_or_default(),
            "metadata": metadata.unwrap_or(""),
            "state": state,
        });
        let data = msg.to_string();
        let raw = [fd.as_raw_fd()];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
        nix::sys::socket::sendmsg::<()>(
            sock.as_raw_fd(),
            &[std::io::IoSlice::new(data.as_bytes())],
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(|e| SeccompError::Notify(format!("sendmsg to listener: {e}")))?;
        // The listener owns the fd now; ours (dropped here) would keep the
        // filter's notifications alive in the container.
        drop(fd);
        Ok(())
    }

    /// libseccomp's program for the profile, as instructions.
    fn program(&self) -> Result<Vec<Insn>> {
        use std::io::{Read, Seek};
        let mem: OwnedFd =
            memfd_create(c"strata-seccomp", MFdFlags::MFD_CLOEXEC).map_err(sys::err("memfd_create", "strata-seccomp", "MFD_CLOEXEC"))?;
        self.ctx.export_bpf(&mem).map_err(fail("export"))?;
        let mut file = std::fs::File::from(mem);
        let mut bytes = Vec::new();
        let read = file.rewind().and_then(|()| file.read_to_end(&mut bytes));
        read.map_err(|e| SeccompError::Filter { op: "export", msg: format!("read the program back: {e}") })?;
        Ok(bytes
            .chunks_exact(8)
            .map(|c| Insn { code: u16::from_ne_bytes([c[0], c[1]]), jt: c[2], jf: c[3], k: u32::from_ne_bytes([c[4], c[5], c[6], c[7]]) })
            .collect())
    }
}

/// The flags by name, for the error of a refused load.
fn flag_names(flags: u32) -> String {
    let names = [
        (libc::SECCOMP_FILTER_FLAG_LOG, "LOG"),
        (libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW, "SPEC_ALLOW"),
        (libc::SECCOMP_FILTER_FLAG_NEW_LISTENER, "NEW_LISTENER"),
        (libc::SECCOMP_FILTER_FLAG_WAIT_KILLABLE_RECV, "WAIT_KILLABLE_RECV"),
    ];
    let set: Vec<&str> = names.iter().filter(|(f, _)| flags & *f as u32 != 0).map(|(_, n)| *n).collect();
    set.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seccomp(json: &str) -> LinuxSeccomp {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn compiles_profiles_and_skips_unknown_syscalls() {
        let s = seccomp(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86"],
                "syscalls":[{"names":["mkdir","no_such_syscall_x"],"action":"SCMP_ACT_ERRNO","errnoRet":38},
                            {"names":["personality"],"action":"SCMP_ACT_ERRNO","args":[{"index":0,"value":8,"op":"SCMP_CMP_EQ"},{"index":0,"value":4294967295,"op":"SCMP_CMP_EQ"}]},
                            {"names":["getpid"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let f = compile(&s).unwrap();
        assert!(!f.notify);
    }

    #[test]
    fn bad_profiles_are_errors() {
        let errno_on_allow =
            seccomp(r#"{"defaultAction":"SCMP_ACT_ALLOW","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_KILL","errnoRet":1}]}"#);
        assert!(matches!(compile(&errno_on_allow), Err(SeccompError::ErrnoRet(1))));
        assert!(serde_json::from_str::<LinuxSeccomp>(r#"{"defaultAction":"SCMP_ACT_BOGUS"}"#).is_err());
        assert!(serde_json::from_str::<LinuxSeccomp>(r#"{"defaultAction":"SCMP_ACT_ALLOW","architectures":["SCMP_ARCH_VAX"]}"#).is_err());
    }

    #[test]
    fn the_enosys_stub_checks_the_newest_syscall_named_per_architecture() {
        let s = seccomp(
            r#"{"defaultAction":"SCMP_ACT_ERRNO","architectures":["SCMP_ARCH_X86_64","SCMP_ARCH_X86","SCMP_ARCH_X32"],
                "syscalls":[{"names":["read","write","openat","no_such_syscall_x"],"action":"SCMP_ACT_ALLOW"}]}"#,
        );
        let f = compile(&s).unwrap();
        let openat = |a| i32::from(ScmpSyscall::from_name_by_arch("openat", a).unwrap()) as u32;
        let checks = enosys_checks(&s, &[ScmpArch::native(), ScmpArch::X8664, ScmpArch::X86, ScmpArch::X32]);
        assert_eq!(
            checks,
            [
                ArchCheck::X86_64 { amd64: Some(openat(ScmpArch::X8664)), x32: Some(openat(ScmpArch::X32)) },
                ArchCheck::Plain { audit: 0x4000_0003, newest: openat(ScmpArch::X86) },
            ]
        );
        // libseccomp numbers x32's syscalls with the x32 bit, as the kernel sees them.
        assert_eq!(openat(ScmpArch::X32), enosys::X32_BIT | 257);
        assert!(!f.stub.is_empty());
        // The program read back from libseccomp ends in a return.
        let prog = f.program().unwrap();
        assert_eq!(prog.last().map(|i| i.code & 0x07), Some(0x06), "{prog:?}");
    }

    #[test]
    fn no_enosys_stub_where_the_default_lets_syscalls_run_or_is_enosys() {
        for default in [r#""SCMP_ACT_ALLOW""#, r#""SCMP_ACT_LOG""#, r#""SCMP_ACT_TRACE""#, r#""SCMP_ACT_ERRNO","defaultErrnoRet":38"#] {
            let s = seccomp(&format!(r#"{{"defaultAction":{default},"syscalls":[{{"names":["mkdir"],"action":"SCMP_ACT_KILL"}}]}}"#));
            assert!(compile(&s).unwrap().stub.is_empty(), "{default}");
        }
        let kill = seccomp(r#"{"defaultAction":"SCMP_ACT_KILL","syscalls":[{"names":["read"],"action":"SCMP_ACT_ALLOW"}]}"#);
        assert!(!compile(&kill).unwrap().stub.is_empty());
    }

    #[test]
    fn no_flags_means_spec_allow_as_with_runc_and_tsync_is_not_passed() {
        let spec_allow = libc::SECCOMP_FILTER_FLAG_SPEC_ALLOW as u32;
        let absent = seccomp(r#"{"defaultAction":"SCMP_ACT_ALLOW"}"#);
        assert_eq!(compile(&absent).unwrap().flags, spec_allow);
        let empty = seccomp(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":[]}"#);
        assert_eq!(compile(&empty).unwrap().flags, 0);
        let tsync_log = seccomp(r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":["SECCOMP_FILTER_FLAG_TSYNC","SECCOMP_FILTER_FLAG_LOG"]}"#);
        assert_eq!(compile(&tsync_log).unwrap().flags, libc::SECCOMP_FILTER_FLAG_LOG as u32);
        let notify = seccomp(
            r#"{"defaultAction":"SCMP_ACT_ALLOW","flags":[],"listenerPath":"/x","syscalls":[{"names":["mkdir"],"action":"SCMP_ACT_NOTIFY"}]}"#,
        );
        assert_eq!(compile(&notify).unwrap().flags, libc::SECCOMP_FILTER_FLAG_NEW_LISTENER as u32);
    }

    #[test]
    fn masked_eq_uses_value_as_mask() {
        assert_eq!(compare(Op::ScmpCmpMaskedEq, 0xff, Some(3)), (ScmpCompareOp::MaskedEqual(0xff), 3));
        assert_eq!(compare(Op::ScmpCmpEq, 7, None), (ScmpCompareOp::Equal, 7));
    }
}
