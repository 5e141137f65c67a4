//! How the process is scheduled: `process.scheduler` (sched_setattr),
//! `process.ioPriority` (ioprio_set) and `process.execCPUAffinity` (the
//! CPUs an exec'd process may run on). Planned from the spec as plain data,
//! with an error naming the field for what cannot be applied; applied just
//! before execve (affinity `initial`: by exec's parent, before the clone, so
//! the new process holds it from birth, before it joins the cgroup).

use nix::sched::CpuSet;
use oci_spec::runtime::{IOPriorityClass, LinuxIOPriority, LinuxSchedulerFlag, LinuxSchedulerPolicy, Scheduler};

use crate::sys::{self, SysError};

/// A planned `sched_setattr`.
pub type SchedPlan = sys::SchedAttr;

pub fn plan_scheduler(s: Option<&Scheduler>) -> Result<Option<SchedPlan>, String> {
    let Some(s) = s else { return Ok(None) };
    let policy = match s.policy() {
        LinuxSchedulerPolicy::SchedOther => 0,
        LinuxSchedulerPolicy::SchedFifo => 1,
        LinuxSchedulerPolicy::SchedRr => 2,
        LinuxSchedulerPolicy::SchedBatch => 3,
        LinuxSchedulerPolicy::SchedIso => return Err("process.scheduler.policy SCHED_ISO: Linux has no such policy".into()),
        LinuxSchedulerPolicy::SchedIdle => 5,
        LinuxSchedulerPolicy::SchedDeadline => 6,
    };
    let mut flags = 0;
    for f in s.flags().iter().flatten() {
        flags |= match f {
            LinuxSchedulerFlag::SchedResetOnFork => 0x01,
            LinuxSchedulerFlag::SchedFlagReclaim => 0x02,
            LinuxSchedulerFlag::SchedFlagDLOverrun => 0x04,
            LinuxSchedulerFlag::SchedFlagKeepPolicy => 0x08,
            LinuxSchedulerFlag::SchedFlagKeepParams => 0x10,
            LinuxSchedulerFlag::SchedFlagUtilClampMin => 0x20,
            LinuxSchedulerFlag::SchedFlagUtilClampMax => 0x40,
        };
    }
    let nice = s.nice().unwrap_or(0);
    if !(-20..=19).contains(&nice) {
        return Err(format!("process.scheduler.nice {nice}: must be in -20..19"));
    }
    let priority = s.priority().unwrap_or(0);
    if priority < 0 {
        return Err(format!("process.scheduler.priority {priority}: must not be negative"));
    }
    Ok(Some(SchedPlan {
        size: 0,
        policy,
        flags,
        nice,
        priority: priority as u32,
        runtime: s.runtime().unwrap_or(0),
        deadline: s.deadline().unwrap_or(0),
        period: s.period().unwrap_or(0),
    }))
}

/// (class, level) for ioprio_set.
pub fn plan_io_priority(p: Option<&LinuxIOPriority>) -> Result<Option<(u32, u32)>, String> {
    let Some(p) = p else { return Ok(None) };
    let class = match p.class() {
        IOPriorityClass::IoprioClassRt => 1,
        IOPriorityClass::IoprioClassBe => 2,
        IOPriorityClass::IoprioClassIdle => 3,
    };
    if !(0..=7).contains(&p.priority()) {
        return Err(format!("process.ioPriority.priority {}: must be in 0..7", p.priority()));
    }
    Ok(Some((class, p.priority() as u32)))
}

/// A list like `0-3,7` (CPUs, NUMA nodes) as its numbers, below `limit`;
/// the field it came from names errors.
pub fn parse_list(list: &str, field: &str, limit: usize) -> Result<Vec<usize>, String> {
    let bad = || format!("{field} {list:?}: not a list of numbers below {limit}");
    let mut out = Vec::new();
    for part in list.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (a, b) = part.split_once('-').unwrap_or((part, part));
        let (a, b): (usize, usize) = (a.trim().parse().map_err(|_| bad())?, b.trim().parse().map_err(|_| bad())?);
        if a > b || b >= limit {
            return Err(bad());
        }
        out.extend(a..=b);
    }
    Ok(out)
}

/// A CPU list as a CPU set.
pub fn cpu_set(list: &str, field: &str) -> Result<CpuSet, String> {
    let mut set = CpuSet::new();
    for cpu in parse_list(list, field, CpuSet::count())? {
        set.set(cpu).map_err(|e| format!("{field}: {e}"))?;
    }
    Ok(set)
}

/// Everything of the above that applies to one process, planned.
#[derive(Debug, Clone, Default)]
pub struct ProcessSched {
    pub scheduler: Option<SchedPlan>,
    pub io_priority: Option<(u32, u32)>,
    /// `execCPUAffinity.final` (exec only).
    pub final_cpus: Option<CpuSet>,
    /// Reset the affinity inherited from the caller (a `taskset` of
    /// strata's) to every CPU, which the kernel narrows to the cgroup's
    /// cpuset: as runc, unless `execCPUAffinity` says otherwise.
    pub reset_cpus: bool,
}

pub fn plan(process: &oci_spec::runtime::Process, exec: bool) -> Result<ProcessSched, String> {
    let final_cpus = match process.exec_cpu_affinity().as_ref().and_then(|a| a.cpu_affinity_final().clone()) {
        Some(l) if exec => Some(cpu_set(&l, "process.execCPUAffinity.final")?),
        _ => None,
    };
    let initial = exec && process.exec_cpu_affinity().as_ref().is_some_and(|a| a.initial().is_some());
    Ok(ProcessSched {
        scheduler: plan_scheduler(process.scheduler().as_ref())?,
        io_priority: plan_io_priority(process.io_priority().as_ref())?,
        reset_cpus: final_cpus.is_none() && !initial,
        final_cpus,
    })
}

pub fn set_affinity(cpus: &CpuSet, what: &str) -> Result<(), SysError> {
    nix::sched::sched_setaffinity(nix::unistd::Pid::from_raw(0), cpus).map_err(sys::err("sched_setaffinity", what, ""))
}

/// Applies the plan to the calling process (before it drops privileges).
pub fn apply(p: &ProcessSched) -> Result<(), SysError> {
    if let Some(cpus) = &p.final_cpus {
        set_affinity(cpus, "process.execCPUAffinity.final")?;
    } else if p.reset_cpus {
        let mut all = CpuSet::new();
        for c in 0..CpuSet::count() {
            let _ = all.set(c);
        }
        set_affinity(&all, "every CPU (the affinity strata was started with is not the container's)")?;
    }
    if let Some(s) = &p.scheduler {
        sys::sched_setattr(s, "process.scheduler")?;
    }
    if let Some((class, level)) = p.io_priority {
        sys::ioprio_set(class, level, "process.ioPriority")?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plans_and_refusals() {
        let s: Scheduler = serde_json::from_str(r#"{"policy":"SCHED_BATCH","nice":7,"flags":["SCHED_RESET_ON_FORK"]}"#).unwrap();
        let p = plan_scheduler(Some(&s)).unwrap().unwrap();
        assert_eq!((p.policy, p.nice, p.flags), (3, 7, 1));
        let iso: Scheduler = serde_json::from_str(r#"{"policy":"SCHED_ISO"}"#).unwrap();
        assert!(plan_scheduler(Some(&iso)).unwrap_err().contains("SCHED_ISO"));
        let io: LinuxIOPriority = serde_json::from_str(r#"{"class":"IOPRIO_CLASS_IDLE","priority":0}"#).unwrap();
        assert_eq!(plan_io_priority(Some(&io)).unwrap(), Some((3, 0)));
        let io: LinuxIOPriority = serde_json::from_str(r#"{"class":"IOPRIO_CLASS_BE","priority":9}"#).unwrap();
        assert!(plan_io_priority(Some(&io)).unwrap_err().contains("ioPriority"));
        let set = cpu_set("0-2,5", "f").unwrap();
        assert!(set.is_set(0).unwrap() && set.is_set(2).unwrap() && set.is_set(5).unwrap() && !set.is_set(3).unwrap());
        assert!(cpu_set("3-1", "f").is_err() && cpu_set("x", "f").is_err());
    }
}
