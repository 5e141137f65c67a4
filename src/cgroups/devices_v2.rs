//! cgroup v2 has no devices controller: device rules become a small eBPF
//! program (BPF_PROG_TYPE_CGROUP_DEVICE) attached to the container's cgroup.
//! `compile` is pure and unit-tested; `attach` loads and attaches it.
//!
//! The program checks the rules from the last to the first and returns the
//! first match (so later rules win, as with v1's devices.allow/deny), and
//! denies what no rule matches, as runc does (a spec that wants everything
//! allowed starts with an "allow all" rule).

use std::os::fd::AsFd;
use std::path::Path;

use oci_spec::runtime::{LinuxDeviceCgroup, LinuxDeviceType};

use super::{CgroupError, Result};
use crate::sys;

/// One rule, decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rule {
    pub allow: bool,
    /// 0 = any, 1 = block, 2 = char (BPF_DEVCG_DEV_*).
    pub kind: u32,
    pub major: Option<u32>,
    pub minor: Option<u32>,
    /// BPF_DEVCG_ACC_* bits: mknod 1, read 2, write 4.
    pub access: u32,
}

pub fn access_bits(s: &str) -> u32 {
    s.chars()
        .map(|c| match c {
            'm' => 1,
            'r' => 2,
            'w' => 4,
            _ => 0,
        })
        .fold(0, |a, b| a | b)
}

pub fn rule_from_spec(d: &LinuxDeviceCgroup) -> Rule {
    let kind = match d.typ() {
        Some(LinuxDeviceType::B) => 1,
        Some(LinuxDeviceType::C) | Some(LinuxDeviceType::U) => 2,
        _ => 0,
    };
    Rule {
        allow: d.allow(),
        kind,
        major: d.major().filter(|m| *m >= 0).map(|m| m as u32),
        minor: d.minor().filter(|m| *m >= 0).map(|m| m as u32),
        access: d.access().as_deref().map(access_bits).unwrap_or(7),
    }
}

/// Parses a v1-style "c 1:3 rwm" rule (the always-allowed list).
pub fn rule_from_v1(s: &str, allow: bool) -> Option<Rule> {
    let mut it = s.split_whitespace();
    let kind = match it.next()? {
        "b" => 1,
        "c" => 2,
        _ => 0,
    };
    let (ma, mi) = it.next()?.split_once(':')?;
    let num = |x: &str| if x == "*" { None } else { x.parse().ok() };
    Some(Rule { allow, kind, major: num(ma), minor: num(mi), access: access_bits(it.next().unwrap_or("rwm")) })
}

// eBPF encoding helpers: code, dst, src, off, imm.
fn insn(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> u64 {
    (code as u64) | (((src << 4 | dst) as u64) << 8) | ((off as u16 as u64) << 16) | ((imm as u32 as u64) << 32)
}
const LDXW: u8 = 0x61;
const MOV_IMM: u8 = 0xb7;
const MOV_REG: u8 = 0xbf;
const AND_IMM: u8 = 0x57;
const RSH_IMM: u8 = 0x77;
const JNE_IMM: u8 = 0x55;
const JEQ_IMM: u8 = 0x15;
const JNE_REG: u8 = 0x5d;
const EXIT: u8 = 0x95;

/// Compiles the rules into the program's instructions.
pub fn compile(rules: &[Rule]) -> Vec<u64> {
    // r2 = device type, r3 = requested access, r4 = major, r5 = minor
    let mut p = vec![
        insn(LDXW, 2, 1, 0, 0),
        insn(MOV_REG, 3, 2, 0, 0),
        insn(AND_IMM, 2, 0, 0, 0xffff),
        insn(RSH_IMM, 3, 0, 0, 16),
        insn(LDXW, 4, 1, 4, 0),
        insn(LDXW, 5, 1, 8, 0),
    ];
    for r in rules.iter().rev() {
        // Each jump skips to the end of this rule's block: filled in below.
        let mut block: Vec<(u8, u8, u8, i32, bool)> = Vec::new(); // (code, dst, src, imm, is_skip_jump)
        if r.kind != 0 {
            block.push((JNE_IMM, 2, 0, r.kind as i32, true));
        }
        if r.access != 7 {
            block.push((MOV_REG, 6, 3, 0, false));
            block.push((AND_IMM, 6, 0, r.access as i32, false));
            if r.allow {
                // allow matches only if every requested bit is allowed
                block.push((JNE_REG, 6, 3, 0, true));
            } else {
                // deny matches if any requested bit is denied
                block.push((JEQ_IMM, 6, 0, 0, true));
            }
        }
        if let Some(m) = r.major {
            block.push((JNE_IMM, 4, 0, m as i32, true));
        }
        if let Some(m) = r.minor {
            block.push((JNE_IMM, 5, 0, m as i32, true));
        }
        let catch_all = block.is_empty();
        block.push((MOV_IMM, 0, 0, i32::from(r.allow), false));
        block.push((EXIT, 0, 0, 0, false));
        let n = block.len();
        for (i, (code, dst, src, imm, skip)) in block.into_iter().enumerate() {
            let off = if skip { (n - i - 1) as i16 } else { 0 };
            p.push(insn(code, dst, src, off, imm));
        }
        if catch_all {
            // Nothing after a rule that matches everything is reachable, and
            // the verifier refuses unreachable instructions.
            return p;
        }
    }
    p.push(insn(MOV_IMM, 0, 0, 0, 0));
    p.push(insn(EXIT, 0, 0, 0, 0));
    p
}

/// Loads the program for `rules` and attaches it to the cgroup at `dir`.
pub fn attach(dir: &Path, rules: &[Rule]) -> Result<()> {
    let prog = sys::bpf_load_cgroup_device(&compile(rules)).map_err(|e| CgroupError::Invalid(e.to_string()))?;
    let flags = nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_DIRECTORY | nix::fcntl::OFlag::O_CLOEXEC;
    let cg = nix::fcntl::open(dir, flags, nix::sys::stat::Mode::empty())
        .map_err(|e| CgroupError::Invalid(format!("open {}: {e}", dir.display())))?;
    sys::bpf_attach_cgroup_device(cg.as_fd(), prog.as_fd(), dir).map_err(|e| CgroupError::Invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tiny interpreter for the subset of eBPF `compile` emits, so the
    /// program's decisions can be checked without loading it.
    fn run(prog: &[u64], kind: u32, access: u32, major: u32, minor: u32) -> u64 {
        let ctx = [kind | (access << 16), major, minor];
        let mut r = [0u64; 11];
        let mut pc = 0usize;
        loop {
            let i = prog[pc];
            let (code, dst, src) = ((i & 0xff) as u8, ((i >> 8) & 0xf) as usize, ((i >> 12) & 0xf) as usize);
            let off = ((i >> 16) & 0xffff) as u16 as i16;
            let imm = (i >> 32) as u32 as i32 as i64 as u64;
            pc += 1;
            match code {
                LDXW => r[dst] = ctx[off as usize / 4] as u64,
                MOV_IMM => r[dst] = imm,
                MOV_REG => r[dst] = r[src],
                AND_IMM => r[dst] &= imm,
                RSH_IMM => r[dst] >>= imm,
                JNE_IMM => {
                    if r[dst] != imm {
                        pc += off as usize
                    }
                }
                JEQ_IMM => {
                    if r[dst] == imm {
                        pc += off as usize
                    }
                }
                JNE_REG => {
                    if r[dst] != r[src] {
                        pc += off as usize
                    }
                }
                EXIT => return r[0],
                _ => panic!("unknown opcode {code:#x}"),
            }
        }
    }

    #[test]
    fn later_rules_win_and_access_is_checked() {
        let rules = vec![
            Rule { allow: false, kind: 0, major: None, minor: None, access: 7 },
            rule_from_v1("c 1:3 rwm", true).unwrap(),
            rule_from_v1("c 136:* rw", true).unwrap(),
            Rule { allow: false, kind: 2, major: Some(1), minor: Some(3), access: 4 },
        ];
        let p = compile(&rules);
        assert_eq!(run(&p, 2, 2, 1, 3), 1, "read /dev/null");
        assert_eq!(run(&p, 2, 4, 1, 3), 0, "write /dev/null denied by the last rule");
        assert_eq!(run(&p, 2, 6, 1, 3), 0, "read+write: the write part is denied");
        assert_eq!(run(&p, 2, 6, 136, 7), 1, "pty rw");
        assert_eq!(run(&p, 2, 1, 136, 7), 0, "pty mknod not allowed");
        assert_eq!(run(&p, 1, 2, 8, 0), 0, "block device denied by default rule");
        assert_eq!(run(&compile(&[]), 1, 7, 8, 0), 0, "no rules: deny");
        let allow_only = compile(&rules[1..2]);
        assert_eq!((run(&allow_only, 2, 6, 1, 3), run(&allow_only, 2, 2, 1, 11)), (1, 0), "what no rule allows is denied");
        // Nothing follows a catch-all rule's exit.
        assert_eq!(*p.last().unwrap() & 0xff, EXIT as u64);
        let deny_all = compile(&rules[..1]);
        assert_eq!(deny_all.len(), 8);
    }

    #[test]
    fn parses_access_and_v1_rules() {
        assert_eq!(access_bits("rwm"), 7);
        assert_eq!(rule_from_v1("b 8:* m", false), Some(Rule { allow: false, kind: 1, major: Some(8), minor: None, access: 1 }));
    }
}

#[cfg(test)]
mod kernel_tests {
    /// The kernel's verifier accepts what `compile` emits (needs root).
    #[test]
    fn verifier_accepts_the_program() {
        if !nix::unistd::geteuid().is_root() {
            return;
        }
        let rules = [
            super::Rule { allow: false, kind: 0, major: None, minor: None, access: 7 },
            super::rule_from_v1("c 1:3 rwm", true).unwrap(),
            super::rule_from_v1("c 136:* rw", true).unwrap(),
            super::Rule { allow: false, kind: 2, major: Some(1), minor: Some(3), access: 4 },
        ];
        for n in 0..=rules.len() {
            crate::sys::bpf_load_cgroup_device(&super::compile(&rules[..n])).unwrap();
        }
    }
}
