//! Resource usage of a container's cgroup, in the JSON shape of runc's
//! `events --stats` (so tools written for runc read it unchanged), from the
//! v1 controllers or the v2 unified files.

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde_json::{Value, json};

/// The container's cgroup directories (one per hierarchy on v1).
pub struct Files<'a> {
    pub dirs: &'a [PathBuf],
}

impl Files<'_> {
    /// The first of the dirs that has `name`, read.
    pub fn read(&self, name: &str) -> Option<String> {
        self.dirs.iter().find_map(|d| crate::sys::read_small(d.join(name)).ok())
    }

    pub fn num(&self, name: &str) -> Option<u64> {
        let s = self.read(name)?;
        let s = s.trim();
        if s == "max" { Some(u64::MAX) } else { s.parse().ok() }
    }

    /// A flat keyed file (`key value` per line) such as memory.stat or cpu.stat.
    pub fn keyed(&self, name: &str) -> BTreeMap<String, u64> {
        parse_keyed(&self.read(name).unwrap_or_default())
    }

    pub fn is_v2(&self) -> bool {
        self.dirs.len() == 1 && self.dirs[0].join("cgroup.controllers").exists()
    }
}

pub fn parse_keyed(text: &str) -> BTreeMap<String, u64> {
    text.lines()
        .filter_map(|l| {
            let mut it = l.split_whitespace();
            Some((it.next()?.to_string(), it.next()?.parse().ok()?))
        })
        .collect()
}

/// The `data` object of a stats event.
pub fn stats(f: &Files<'_>) -> Value {
    if f.is_v2() { stats_v2(f) } else { stats_v1(f) }
}

fn stats_v1(f: &Files<'_>) -> Value {
    let percpu: Vec<u64> = f.read("cpuacct.usage_percpu").unwrap_or_default().split_whitespace().filter_map(|x| x.parse().ok()).collect();
    let acct = f.keyed("cpuacct.stat");
    // cpuacct.stat is in USER_HZ ticks (100 per second).
    let ticks_ns = 10_000_000u64;
    let cpu = f.keyed("cpu.stat");
    let mem_stat = f.keyed("memory.stat");
    json!({
        "cpu": {
            "usage": {
                "total": f.num("cpuacct.usage").unwrap_or(0),
                "percpu": percpu,
                "kernel": acct.get("system").copied().unwrap_or(0) * ticks_ns,
                "user": acct.get("user").copied().unwrap_or(0) * ticks_ns,
            },
            "throttling": {
                "periods": cpu.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": cpu.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": cpu.get("throttled_time").copied().unwrap_or(0),
            }
        },
        "memory": {
            "cache": mem_stat.get("cache").copied().unwrap_or(0),
            "usage": {
                "limit": f.num("memory.limit_in_bytes").unwrap_or(0),
                "usage": f.num("memory.usage_in_bytes").unwrap_or(0),
                "max": f.num("memory.max_usage_in_bytes").unwrap_or(0),
                "failcnt": f.num("memory.failcnt").unwrap_or(0),
            },
            "swap": {
                "limit": f.num("memory.memsw.limit_in_bytes").unwrap_or(0),
                "usage": f.num("memory.memsw.usage_in_bytes").unwrap_or(0),
                "max": f.num("memory.memsw.max_usage_in_bytes").unwrap_or(0),
                "failcnt": f.num("memory.memsw.failcnt").unwrap_or(0),
            },
            "raw": mem_stat,
        },
        "pids": {"current": f.num("pids.current").unwrap_or(0), "limit": f.num("pids.max").map(|l| if l == u64::MAX { 0 } else { l }).unwrap_or(0)},
        "blkio": {},
        "hugetlb": {},
    })
}

fn stats_v2(f: &Files<'_>) -> Value {
    let cpu = f.keyed("cpu.stat");
    let mem_stat = f.keyed("memory.stat");
    let us = |k: &str| cpu.get(k).copied().unwrap_or(0) * 1000;
    json!({
        "cpu": {
            "usage": {"total": us("usage_usec"), "kernel": us("system_usec"), "user": us("user_usec"), "percpu": []},
            "throttling": {
                "periods": cpu.get("nr_periods").copied().unwrap_or(0),
                "throttled_periods": cpu.get("nr_throttled").copied().unwrap_or(0),
                "throttled_time": us("throttled_usec"),
            }
        },
        "memory": {
            "cache": mem_stat.get("file").copied().unwrap_or(0),
            "usage": {
                "limit": f.num("memory.max").unwrap_or(u64::MAX),
                "usage": f.num("memory.current").unwrap_or(0),
                "max": f.num("memory.peak").unwrap_or(0),
                "failcnt": f.keyed("memory.events").get("max").copied().unwrap_or(0),
            },
            "swap": {"limit": f.num("memory.swap.max").unwrap_or(0), "usage": f.num("memory.swap.current").unwrap_or(0)},
            "raw": mem_stat,
        },
        "pids": {"current": f.num("pids.current").unwrap_or(0), "limit": f.num("pids.max").map(|l| if l == u64::MAX { 0 } else { l }).unwrap_or(0)},
        "blkio": {},
        "hugetlb": {},
    })
}

/// How many times the OOM killer has acted in the cgroup so far.
pub fn oom_kills(f: &Files<'_>) -> u64 {
    if f.is_v2() {
        f.keyed("memory.events").get("oom_kill").copied().unwrap_or(0)
    } else {
        f.keyed("memory.oom_control").get("oom_kill").copied().unwrap_or(0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_v1_files() {
        let d = std::env::temp_dir().join(format!("stats-test-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        for (f, v) in [
            ("memory.usage_in_bytes", "4096\n"),
            ("memory.limit_in_bytes", "1048576\n"),
            ("memory.stat", "cache 12\nrss 34\n"),
            ("memory.oom_control", "oom_kill_disable 0\nunder_oom 0\noom_kill 2\n"),
            ("pids.current", "3\n"),
            ("pids.max", "max\n"),
            ("cpuacct.usage", "1000\n"),
            ("cpuacct.stat", "user 2\nsystem 1\n"),
        ] {
            std::fs::write(d.join(f), v).unwrap();
        }
        let dirs = [d.clone()];
        let f = Files { dirs: &dirs };
        let s = stats(&f);
        assert_eq!(s["memory"]["usage"]["usage"], 4096);
        assert_eq!(s["memory"]["raw"]["rss"], 34);
        assert_eq!(s["pids"]["current"], 3);
        assert_eq!(s["pids"]["limit"], 0);
        assert_eq!(s["cpu"]["usage"]["user"], 20_000_000u64);
        assert_eq!(oom_kills(&f), 2);
        std::fs::remove_dir_all(&d).unwrap();
    }
}
