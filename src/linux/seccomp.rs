//! `linux.seccomp` through libseccomp: the spec's filter compiled into a
//! libseccomp context (`compile`, before the container starts, so a bad
//! profile fails `create`), then loaded as the last step before execve
//! (`load`). With `SCMP_ACT_NOTIFY` rules, the notify fd and the container
//! state are sent to `listenerPath` (runtime-spec "seccomp notify").

use std::os::fd::{AsRawFd, BorrowedFd};
use std::str::FromStr;

use libseccomp::{ScmpAction, ScmpArch, ScmpArgCompare, ScmpCompareOp, ScmpFilterContext, ScmpSyscall};
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
}

/// Builds the filter. Syscall names this kernel/libseccomp does not know are
/// skipped (as runc does); unknown architectures and bad actions are errors.
pub fn compile(s: &LinuxSeccomp) -> Result<Filter> {
    let default = action(s.default_action(), s.default_errno_ret())?;
    let mut ctx = ScmpFilterContext::new(default).map_err(fail("init"))?;
    for arch in s.architectures().iter().flatten() {
        let name = serde_json::to_value(arch).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        let a = ScmpArch::from_str(&name).map_err(|_| SeccompError::Arch(name.clone()))?;
        if a != ScmpArch::native() {
            ctx.add_arch(a).map_err(fail("add_arch"))?;
        }
    }
    for f in s.flags().iter().flatten() {
        match f {
            F::SeccompFilterFlagLog => ctx.set_ctl_log(true).map(drop).map_err(fail("flag LOG"))?,
            F::SeccompFilterFlagSpecAllow => ctx.set_ctl_ssb(true).map(drop).map_err(fail("flag SPEC_ALLOW"))?,
            F::SeccompFilterFlagTsync => ctx.set_ctl_tsync(true).map(drop).map_err(fail("flag TSYNC"))?,
            F::SeccompFilterFlagWaitKillableRecv => ctx.set_ctl_waitkill(true).map(drop).map_err(fail("flag WAIT_KILLABLE_RECV"))?,
        }
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
    Ok(Filter { ctx, notify })
}

impl Filter {
    /// Loads the filter into the calling thread. With notify rules, sends
    /// the listener fd to `listener` together with `state_json`.
    pub fn load(self, listener: Option<BorrowedFd<'_>>, state_json: &str, metadata: Option<&str>) -> Result<()> {
        self.ctx.load().map_err(fail("load"))?;
        if !self.notify {
            return Ok(());
        }
        let fd = self.ctx.get_notify_fd().map_err(fail("notify fd"))?;
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
        let raw = [fd];
        let cmsg = [nix::sys::socket::ControlMessage::ScmRights(&raw)];
        nix::sys::socket::sendmsg::<()>(
            sock.as_raw_fd(),
            &[std::io::IoSlice::new(data.as_bytes())],
            &cmsg,
            nix::sys::socket::MsgFlags::empty(),
            None,
        )
        .map_err(|e| SeccompError::Notify(format!("sendmsg to listener: {e}")))?;
        // The listener owns the fd now; ours would keep the filter's
        // notifications alive in the container.
        let _ = nix::unistd::close(fd);
        Ok(())
    }
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
    fn masked_eq_uses_value_as_mask() {
        assert_eq!(compare(Op::ScmpCmpMaskedEq, 0xff, Some(3)), (ScmpCompareOp::MaskedEqual(0xff), 3));
        assert_eq!(compare(Op::ScmpCmpEq, 7, None), (ScmpCompareOp::Equal, 7));
    }
}
