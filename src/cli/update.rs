//! `update`: runc 1.5's flags, turned into a runtime-spec resources patch.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use strata::logging;

/// runc 1.5's `update` flags. Values are taken as text and parsed as runc
/// parses them (`-1` is "unlimited" for the memory values).
#[derive(clap::Args)]
pub struct UpdateArgs {
    /// Resources as JSON (runtime-spec linux.resources), from FILE or - for stdin.
    #[arg(short, long)]
    resources: Option<PathBuf>,
    #[arg(long = "blkio-weight")]
    blkio_weight: Option<u16>,
    #[arg(long = "cpu-period")]
    cpu_period: Option<String>,
    #[arg(long = "cpu-quota", allow_hyphen_values = true)]
    cpu_quota: Option<String>,
    #[arg(long = "cpu-burst")]
    cpu_burst: Option<String>,
    #[arg(long = "cpu-share", alias = "cpu-shares")]
    cpu_share: Option<String>,
    #[arg(long = "cpu-rt-period")]
    cpu_rt_period: Option<String>,
    #[arg(long = "cpu-rt-runtime", allow_hyphen_values = true)]
    cpu_rt_runtime: Option<String>,
    #[arg(long = "cpuset-cpus")]
    cpuset_cpus: Option<String>,
    #[arg(long = "cpuset-mems")]
    cpuset_mems: Option<String>,
    #[arg(long = "cpu-idle")]
    cpu_idle: Option<String>,
    /// Obsolete (ignored, with a warning, as by runc).
    #[arg(long = "kernel-memory", hide = true, allow_hyphen_values = true)]
    kernel_memory: Option<String>,
    #[arg(long = "kernel-memory-tcp", hide = true, allow_hyphen_values = true)]
    kernel_memory_tcp: Option<String>,
    #[arg(long, allow_hyphen_values = true)]
    memory: Option<String>,
    #[arg(long = "memory-reservation", allow_hyphen_values = true)]
    memory_reservation: Option<String>,
    /// Memory plus swap; -1 for unlimited swap.
    #[arg(long = "memory-swap", allow_hyphen_values = true)]
    memory_swap: Option<String>,
    #[arg(long = "pids-limit", allow_negative_numbers = true)]
    pids_limit: Option<i64>,
    #[arg(long = "l3-cache-schema")]
    l3_cache_schema: Option<String>,
    #[arg(long = "mem-bw-schema")]
    mem_bw_schema: Option<String>,
    pub id: String,
}

/// Parses sizes like runc does: bytes, or with a k/m/g/t suffix (base 1024); -1 is unlimited.
fn parse_size(s: &str) -> Result<i64> {
    let t = s.trim().to_ascii_lowercase();
    if t == "-1" {
        return Ok(-1);
    }
    let t = t.trim_end_matches('b');
    let (num, mul) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1i64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some('t') => (&t[..t.len() - 1], 1 << 40),
        _ => (t, 1),
    };
    let n: f64 = num.parse().with_context(|| format!("bad size {s:?}"))?;
    Ok((n * mul as f64) as i64)
}

pub fn update_patch(a: &UpdateArgs) -> Result<serde_json::Value> {
    let mut v = match &a.resources {
        Some(p) => {
            let text = if p.as_os_str() == "-" {
                let mut s = String::new();
                std::io::Read::read_to_string(&mut std::io::stdin(), &mut s)?;
                s
            } else {
                std::fs::read_to_string(p).with_context(|| format!("read {}", p.display()))?
            };
            serde_json::from_str(&text).context("--resources: not runtime-spec linux.resources JSON")?
        }
        None => serde_json::json!({}),
    };
    let mut set = |path: &[&str], val: serde_json::Value| {
        let mut cur = &mut v;
        for k in &path[..path.len() - 1] {
            cur = &mut cur[*k];
        }
        cur[path[path.len() - 1]] = val;
    };
    let uint = |flag: &str, v: &str| v.parse::<u64>().map_err(|e| anyhow::anyhow!("invalid value for {flag}: {e}"));
    let int = |flag: &str, v: &str| v.parse::<i64>().map_err(|e| anyhow::anyhow!("invalid value for {flag}: {e}"));
    let size = |flag: &str, v: &str| parse_size(v).with_context(|| format!("invalid value for {flag}"));
    if let Some(x) = a.blkio_weight.filter(|w| *w != 0) {
        set(&["blockIO", "weight"], x.into());
    }
    for (val, key) in [(&a.cpuset_cpus, "cpus"), (&a.cpuset_mems, "mems")] {
        if let Some(x) = val.as_deref().filter(|x| !x.is_empty()) {
            set(&["cpu", key], x.into());
        }
    }
    if let Some(x) = &a.cpu_idle {
        set(&["cpu", "idle"], int("cpu-idle", x)?.into());
    }
    for (flag, val, key) in [
        ("cpu-burst", &a.cpu_burst, "burst"),
        ("cpu-period", &a.cpu_period, "period"),
        ("cpu-rt-period", &a.cpu_rt_period, "realtimePeriod"),
        ("cpu-share", &a.cpu_share, "shares"),
    ] {
        if let Some(x) = val {
            set(&["cpu", key], uint(flag, x)?.into());
        }
    }
    for (flag, val, key) in [("cpu-quota", &a.cpu_quota, "quota"), ("cpu-rt-runtime", &a.cpu_rt_runtime, "realtimeRuntime")] {
        if let Some(x) = val {
            set(&["cpu", key], int(flag, x)?.into());
        }
    }
    for (flag, val, key) in [
        ("memory", &a.memory, "limit"),
        ("memory-swap", &a.memory_swap, "swap"),
        ("memory-reservation", &a.memory_reservation, "reservation"),
    ] {
        if let Some(x) = val {
            set(&["memory", key], size(flag, x)?.into());
        }
    }
    if a.kernel_memory.is_some() || a.kernel_memory_tcp.is_some() {
        logging::emit("warning", "Kernel memory settings are ignored and will be removed");
    }
    if let Some(x) = a.pids_limit {
        set(&["pids", "limit"], x.into());
    }
    if a.l3_cache_schema.is_some() || a.mem_bw_schema.is_some() {
        bail!("--l3-cache-schema, --mem-bw-schema: updating Intel RDT schemata is not supported by strata");
    }
    // runc: an unlimited memory limit without a swap value lifts swap too
    // ("unable to set swap limit without memory limit" otherwise).
    if v.pointer("/memory/limit").and_then(|l| l.as_i64()) == Some(-1) && v.pointer("/memory/swap").is_none() {
        v["memory"]["swap"] = 0.into();
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("512m").unwrap(), 512 << 20);
        assert_eq!(parse_size("-1").unwrap(), -1);
        assert!(parse_size("lots").is_err());
    }
}
