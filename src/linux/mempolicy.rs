//! `linux.memoryPolicy`: the NUMA policy of the container's memory
//! (set_mempolicy), set by init before it execs the process, and by exec's
//! child the same way.

use oci_spec::runtime::{LinuxMemoryPolicy, MemoryPolicyFlagType, MemoryPolicyModeType};

use crate::sys::{self, SysError};

/// The most NUMA nodes a node list may name.
const MAX_NODES: usize = 1024;

/// (mode with its flags, node mask).
pub type Plan = (i32, Vec<u64>);

pub fn plan(p: Option<&LinuxMemoryPolicy>) -> Result<Option<Plan>, String> {
    let Some(p) = p else { return Ok(None) };
    let (mode, needs_nodes) = match p.mode() {
        MemoryPolicyModeType::MpolDefault => (0, false),
        MemoryPolicyModeType::MpolPreferred => (1, true),
        MemoryPolicyModeType::MpolBind => (2, true),
        MemoryPolicyModeType::MpolInterleave => (3, true),
        MemoryPolicyModeType::MpolLocal => (4, false),
        MemoryPolicyModeType::MpolPreferredMany => (5, true),
        MemoryPolicyModeType::MpolWeightedInterleave => (6, true),
    };
    let nodes = p.nodes().as_deref().unwrap_or("").trim();
    // runc's words, which its users match ("invalid memory policy ...").
    let list = crate::linux::sched::parse_list(nodes, "linux.memoryPolicy.nodes", MAX_NODES)
        .map_err(|e| format!("invalid memory policy nodes {nodes:?}: {e}"))?;
    match (needs_nodes, list.is_empty()) {
        (true, true) => return Err(format!("linux.memoryPolicy.nodes: {} mode requires nodes", p.mode())),
        (false, false) => return Err(format!("linux.memoryPolicy: {} mode requires 0 nodes but got {}", p.mode(), list.len())),
        _ => {}
    }
    let mut mask = Vec::new();
    for n in list {
        if mask.len() <= n / 64 {
            mask.resize(n / 64 + 1, 0);
        }
        mask[n / 64] |= 1 << (n % 64);
    }
    let mut flags = 0;
    for f in p.flags().iter().flatten() {
        flags |= match f {
            MemoryPolicyFlagType::MpolFNumaBalancing => 1 << 13,
            MemoryPolicyFlagType::MpolFRelativeNodes => 1 << 14,
            MemoryPolicyFlagType::MpolFStaticNodes => 1 << 15,
        };
    }
    Ok(Some((mode | flags, mask)))
}

pub fn apply(plan: &Option<Plan>) -> Result<(), SysError> {
    match plan {
        Some((mode, mask)) => sys::set_mempolicy(*mode, mask, "linux.memoryPolicy"),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn modes_nodes_and_flags() {
        let p: LinuxMemoryPolicy =
            serde_json::from_str(r#"{"mode":"MPOL_INTERLEAVE","nodes":"0-1,65","flags":["MPOL_F_STATIC_NODES"]}"#).unwrap();
        assert_eq!(plan(Some(&p)).unwrap(), Some((3 | 1 << 15, vec![0b11, 0b10])));
        let p: LinuxMemoryPolicy = serde_json::from_str(r#"{"mode":"MPOL_BIND"}"#).unwrap();
        assert!(plan(Some(&p)).unwrap_err().contains("mode requires nodes"));
        let p: LinuxMemoryPolicy = serde_json::from_str(r#"{"mode":"MPOL_LOCAL","nodes":"0"}"#).unwrap();
        assert!(plan(Some(&p)).unwrap_err().contains("MPOL_LOCAL mode requires 0 nodes but got 1"));
    }
}
