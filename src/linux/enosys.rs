//! The -ENOSYS stub put in front of a seccomp filter: a syscall newer than
//! every syscall the profile names gets ENOSYS, not the profile's default
//! errno. libc and programs probe a new syscall and fall back to an old one
//! only on ENOSYS (glibc's clone3 → clone, statx → fstatat, ...); with EPERM
//! from a profile written before the syscall existed, they fail instead.
//!
//! A profile's "newest syscall" is, per architecture, the largest number
//! among the syscalls it names (whatever their action). The stub is pure
//! data, classic BPF over `struct seccomp_data` (nr at offset 0, arch at 4):
//!
//! ```text
//!   for each architecture of the profile (and the native one):
//!     A ← arch;  A == AUDIT_ARCH ? go on : next architecture
//!     A ← nr
//!     x86_64 only:  nr has the x32 bit ? x32's check : amd64's check
//!     s390(x) only: nr == 0 (the multiplexer unknown syscalls land on) ? ENOSYS
//!     nr > newest ? ENOSYS : the profile's filter
//!   (an architecture the profile does not list) → the profile's filter
//!   ENOSYS: return ERRNO(ENOSYS)
//!   the profile's filter (libseccomp's program) follows
//! ```
//!
//! No stub is made when the default action lets syscalls run (allow, log,
//! trace: a tracer handles new syscalls itself) or already is ENOSYS.

/// One classic BPF instruction, as the kernel reads it.
pub use crate::sys::SockFilter as Insn;

const LD_W_ABS: u16 = 0x20; // BPF_LD | BPF_W | BPF_ABS
const JA: u16 = 0x05; // BPF_JMP | BPF_JA
const JEQ_K: u16 = 0x15; // BPF_JMP | BPF_JEQ | BPF_K
const JGT_K: u16 = 0x25; // BPF_JMP | BPF_JGT | BPF_K
const JSET_K: u16 = 0x45; // BPF_JMP | BPF_JSET | BPF_K
const RET_K: u16 = 0x06; // BPF_RET | BPF_K

const OFF_NR: u32 = 0;
const OFF_ARCH: u32 = 4;
/// SECCOMP_RET_ERRNO | ENOSYS.
pub const RET_ENOSYS: u32 = 0x0005_0000 | libc::ENOSYS as u32;
/// x32 syscalls are x86_64's with this bit set in their number.
pub const X32_BIT: u32 = 0x4000_0000;

/// What the stub checks for one kernel architecture (`AUDIT_ARCH_*`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArchCheck {
    /// The newest syscall number.
    Plain { audit: u32, newest: u32 },
    /// s390 and s390x: also syscall 0, where unknown syscalls arrive.
    S390 { audit: u32, newest: u32 },
    /// x86_64's kernel arch serves amd64 and x32 (numbers with `X32_BIT`);
    /// a side the profile does not list goes to the filter unchecked.
    X86_64 { amd64: Option<u32>, x32: Option<u32> },
}

pub const AUDIT_ARCH_X86_64: u32 = 0xC000_003E;

#[derive(Debug, thiserror::Error)]
#[error("seccomp -ENOSYS stub: a jump of {0} instructions does not fit classic BPF")]
pub struct StubTooLong(usize);

#[derive(Clone, Copy)]
enum To {
    Next,
    Label(usize),
    Enosys,
    Filter,
}

enum Op {
    Load(u32),
    Jump { code: u16, k: u32, yes: To, no: To },
    Always(To),
    RetEnosys,
    Label(usize),
}

/// The stub's instructions, to run before the profile's own program.
pub fn stub(checks: &[ArchCheck]) -> Result<Vec<Insn>, StubTooLong> {
    if checks.is_empty() {
        return Ok(Vec::new());
    }
    let mut ops = Vec::new();
    let mut label = 0;
    let mut fresh = || {
        label += 1;
        label
    };
    for check in checks {
        let next = fresh();
        let audit = match check {
            ArchCheck::Plain { audit, .. } | ArchCheck::S390 { audit, .. } => *audit,
            ArchCheck::X86_64 { .. } => AUDIT_ARCH_X86_64,
        };
        ops.push(Op::Load(OFF_ARCH));
        ops.push(Op::Jump { code: JEQ_K, k: audit, yes: To::Next, no: To::Label(next) });
        ops.push(Op::Load(OFF_NR));
        let newest = |n: Option<u32>| match n {
            Some(k) => Op::Jump { code: JGT_K, k, yes: To::Enosys, no: To::Filter },
            None => Op::Always(To::Filter),
        };
        match check {
            ArchCheck::Plain { newest: n, .. } => ops.push(newest(Some(*n))),
            ArchCheck::S390 { newest: n, .. } => {
                ops.push(Op::Jump { code: JEQ_K, k: 0, yes: To::Enosys, no: To::Next });
                ops.push(newest(Some(*n)));
            }
            ArchCheck::X86_64 { amd64, x32 } => {
                let x32_label = fresh();
                ops.push(Op::Jump { code: JSET_K, k: X32_BIT, yes: To::Label(x32_label), no: To::Next });
                ops.push(newest(*amd64));
                ops.push(Op::Label(x32_label));
                ops.push(newest(*x32));
            }
        }
        ops.push(Op::Label(next));
    }
    let enosys = fresh();
    ops.push(Op::Always(To::Filter));
    ops.push(Op::Label(enosys));
    ops.push(Op::RetEnosys);
    assemble(&ops, enosys)
}

/// Resolves the labels: a label is the index of the instruction after it,
/// `Filter` the first instruction past the stub.
fn assemble(ops: &[Op], enosys: usize) -> Result<Vec<Insn>, StubTooLong> {
    let mut at = std::collections::HashMap::new();
    let mut n = 0usize;
    for op in ops {
        match op {
            Op::Label(l) => {
                at.insert(*l, n);
            }
            _ => n += 1,
        }
    }
    let len = n;
    let target = |to: To, pc: usize| -> usize {
        match to {
            To::Next => pc + 1,
            To::Label(l) => at[&l],
            To::Enosys => at[&enosys],
            To::Filter => len,
        }
    };
    let mut out = Vec::with_capacity(len);
    for op in ops {
        let pc = out.len();
        let short = |to: To| -> Result<u8, StubTooLong> {
            let d = target(to, pc) - (pc + 1);
            u8::try_from(d).map_err(|_| StubTooLong(d))
        };
        out.push(match op {
            Op::Label(_) => continue,
            Op::Load(off) => Insn { code: LD_W_ABS, jt: 0, jf: 0, k: *off },
            Op::Jump { code, k, yes, no } => Insn { code: *code, jt: short(*yes)?, jf: short(*no)?, k: *k },
            Op::Always(to) => Insn { code: JA, jt: 0, jf: 0, k: (target(*to, pc) - (pc + 1)) as u32 },
            Op::RetEnosys => Insn { code: RET_K, jt: 0, jf: 0, k: RET_ENOSYS },
        });
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the stub decides for a syscall: ENOSYS, or hand it to the
    /// filter (the instruction index just past the stub).
    #[derive(Debug, PartialEq)]
    enum Verdict {
        Enosys,
        Filter,
    }

    /// A classic BPF interpreter for the stub's few instructions.
    fn run(prog: &[Insn], arch: u32, nr: u32) -> Verdict {
        let (mut pc, mut a) = (0usize, 0u32);
        loop {
            if pc == prog.len() {
                return Verdict::Filter;
            }
            let i = prog[pc];
            pc += 1;
            match i.code {
                LD_W_ABS => a = if i.k == OFF_NR { nr } else { arch },
                JA => pc += i.k as usize,
                JEQ_K => pc += if a == i.k { i.jt } else { i.jf } as usize,
                JGT_K => pc += if a > i.k { i.jt } else { i.jf } as usize,
                JSET_K => pc += if a & i.k != 0 { i.jt } else { i.jf } as usize,
                RET_K => {
                    assert_eq!(i.k, RET_ENOSYS);
                    return Verdict::Enosys;
                }
                c => panic!("unexpected opcode {c:#x}"),
            }
            assert!(pc <= prog.len(), "jump past the stub");
        }
    }

    const I386: u32 = 0x4000_0003;
    const S390X: u32 = 0x8000_0016;
    const AARCH64: u32 = 0xC000_00B7;

    #[test]
    fn newer_syscalls_get_enosys_per_architecture() {
        let prog = stub(&[
            ArchCheck::X86_64 { amd64: Some(334), x32: Some(X32_BIT | 547) },
            ArchCheck::Plain { audit: I386, newest: 400 },
            ArchCheck::S390 { audit: S390X, newest: 300 },
        ])
        .unwrap();
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 0), Verdict::Filter);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 334), Verdict::Filter);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 335), Verdict::Enosys);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 1000), Verdict::Enosys);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, X32_BIT | 500), Verdict::Filter);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, X32_BIT | 548), Verdict::Enosys);
        assert_eq!(run(&prog, I386, 400), Verdict::Filter);
        assert_eq!(run(&prog, I386, 401), Verdict::Enosys);
        assert_eq!(run(&prog, S390X, 0), Verdict::Enosys);
        assert_eq!(run(&prog, S390X, 1), Verdict::Filter);
        assert_eq!(run(&prog, S390X, 301), Verdict::Enosys);
        // An architecture the profile does not list: the filter decides
        // (libseccomp's program kills it).
        assert_eq!(run(&prog, AARCH64, 5000), Verdict::Filter);
    }

    #[test]
    fn an_unlisted_x86_64_side_goes_to_the_filter() {
        let prog = stub(&[ArchCheck::X86_64 { amd64: Some(334), x32: None }]).unwrap();
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 335), Verdict::Enosys);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, X32_BIT | 5000), Verdict::Filter);
        let prog = stub(&[ArchCheck::X86_64 { amd64: None, x32: Some(X32_BIT | 547) }]).unwrap();
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, 5000), Verdict::Filter);
        assert_eq!(run(&prog, AUDIT_ARCH_X86_64, X32_BIT | 548), Verdict::Enosys);
    }

    #[test]
    fn no_architectures_no_stub() {
        assert!(stub(&[]).unwrap().is_empty());
    }
}
