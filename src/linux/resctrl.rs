//! `linux.intelRdt`: the container in a resctrl group (Intel RDT / AMD
//! PQoS cache and memory-bandwidth allocation), through the resctrl
//! filesystem.
//!
//! The group is `closID` when given (a class of service that containers may
//! share, kept when it existed before), or else one named after the
//! container. Its `schemata` gets `l3CacheSchema`, `memBwSchema` and each
//! `schemata` line; init's pid goes into its `tasks`, so everything the
//! container runs is in it. With `enableMonitoring`, the container also gets
//! a monitoring group of its own under the group's `mon_groups`.
//!
//! Where resctrl is not mounted (no RDT in the CPU, or not mounted), a
//! config that sets `linux.intelRdt` fails `create`, naming the field: it is
//! never ignored.

use std::path::{Path, PathBuf};

use oci_spec::runtime::LinuxIntelRdt;

use crate::sys::{self, SysError};

/// What to make and write, computed before anything is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Plan {
    /// The class-of-service group: `<resctrl>/<closID or id>`.
    pub group: PathBuf,
    /// Lines for the group's `schemata` file, in order.
    pub schemata: Vec<String>,
    /// `<group>/mon_groups/<id>`, with `enableMonitoring`.
    pub monitor: Option<PathBuf>,
}

impl Plan {
    /// The directories `apply` will make (those that do not exist yet), in
    /// the order they are made: what `delete` removes, in reverse.
    pub fn missing_dirs(&self) -> Vec<PathBuf> {
        [Some(&self.group), self.monitor.as_ref()].into_iter().flatten().filter(|d| !d.exists()).cloned().collect()
    }
}

/// The plan for `rdt`, given the host's mountinfo.
pub fn plan(rdt: Option<&LinuxIntelRdt>, id: &str, mountinfo: &str) -> Result<Option<Plan>, String> {
    let Some(rdt) = rdt else { return Ok(None) };
    let root = mount_point(mountinfo).ok_or_else(|| {
        "linux.intelRdt: resctrl is not mounted on this host (it needs a CPU with RDT or PQoS, and \
         `mount -t resctrl resctrl /sys/fs/resctrl`)"
            .to_string()
    })?;
    let name = rdt.clos_id().clone().unwrap_or_else(|| id.to_string());
    if name.is_empty() || name == "." || name == ".." || name.contains('/') || ["info", "mon_groups", "mon_data"].contains(&name.as_str()) {
        return Err(format!("linux.intelRdt.closID {name:?}: not a usable resctrl group name"));
    }
    let mut schemata: Vec<String> = Vec::new();
    for text in [rdt.l3_cache_schema(), rdt.mem_bw_schema()].into_iter().flatten() {
        schemata.extend(text.lines().map(str::trim).filter(|l| !l.is_empty()).map(String::from));
    }
    schemata.extend(rdt.schemata().iter().flatten().map(|l| l.trim().to_string()).filter(|l| !l.is_empty()));
    let group = root.join(&name);
    // enableCMT and enableMBM (deprecated by 1.3) ask for monitoring too.
    #[allow(deprecated)]
    let monitoring = [rdt.enable_monitoring(), rdt.enable_cmt(), rdt.enable_mbm()].into_iter().any(|f| *f == Some(true));
    let monitor = monitoring.then(|| group.join("mon_groups").join(id));
    Ok(Some(Plan { group, schemata, monitor }))
}

/// Where the resctrl filesystem is mounted (mountinfo field 5 of the first
/// line whose filesystem type is `resctrl`).
fn mount_point(mountinfo: &str) -> Option<PathBuf> {
    mountinfo.lines().find_map(|l| {
        let (pre, post) = l.split_once(" - ")?;
        if post.split(' ').next()? != "resctrl" {
            return None;
        }
        pre.split(' ').nth(4).map(PathBuf::from)
    })
}

/// Makes the groups, writes the schemata and puts `pid` in them.
pub fn apply(plan: &Plan, pid: i32) -> Result<(), SysError> {
    mkdir(&plan.group)?;
    let schemata = plan.group.join("schemata");
    for line in &plan.schemata {
        // One line per write: the kernel parses a write as one line, and
        // its error then names the line it refused.
        std::fs::write(&schemata, format!("{line}\n")).map_err(sys::io_err("write", &schemata))?;
    }
    let target = plan.monitor.as_ref().unwrap_or(&plan.group);
    if let Some(m) = &plan.monitor {
        mkdir(m)?;
    }
    let tasks = target.join("tasks");
    std::fs::write(&tasks, pid.to_string()).map_err(sys::io_err("write", &tasks))
}

fn mkdir(dir: &Path) -> Result<(), SysError> {
    match std::fs::create_dir(dir) {
        Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(sys::io_err("mkdir", dir)(e)),
        _ => Ok(()),
    }
}

/// Removes the groups strata made (deepest first); a group still in use
/// by another container (EBUSY) stays.
pub fn remove(dirs: &[PathBuf]) {
    for d in dirs.iter().rev() {
        let _ = std::fs::remove_dir(d);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MOUNTINFO: &str = "22 1 0:21 / /proc rw - proc proc rw\n\
                             40 22 0:35 / /sys/fs/resctrl rw,relatime - resctrl resctrl rw\n";

    fn rdt(json: serde_json::Value) -> LinuxIntelRdt {
        serde_json::from_value(json).unwrap()
    }

    #[test]
    fn without_resctrl_the_field_is_an_error_naming_it() {
        let e = plan(Some(&rdt(serde_json::json!({"l3CacheSchema": "L3:0=f"}))), "c1", "22 1 0:21 / /proc rw - proc proc rw\n");
        assert!(e.unwrap_err().starts_with("linux.intelRdt: resctrl is not mounted"));
        assert_eq!(plan(None, "c1", ""), Ok(None));
    }

    #[test]
    fn the_plan_names_the_group_and_every_schemata_line() {
        let p = plan(
            Some(&rdt(serde_json::json!({
                "closID": "gold",
                "l3CacheSchema": "L3:0=ff;1=ff",
                "memBwSchema": "MB:0=50;1=50",
                "schemata": ["L2:0=f"],
                "enableMonitoring": true
            }))),
            "c1",
            MOUNTINFO,
        )
        .unwrap()
        .unwrap();
        assert_eq!(p.group, PathBuf::from("/sys/fs/resctrl/gold"));
        assert_eq!(p.schemata, ["L3:0=ff;1=ff", "MB:0=50;1=50", "L2:0=f"]);
        assert_eq!(p.monitor, Some(PathBuf::from("/sys/fs/resctrl/gold/mon_groups/c1")));
        let p = plan(Some(&rdt(serde_json::json!({}))), "c1", MOUNTINFO).unwrap().unwrap();
        assert_eq!(p.group, PathBuf::from("/sys/fs/resctrl/c1"));
        for bad in ["../x", "info", ""] {
            assert!(plan(Some(&rdt(serde_json::json!({"closID": bad}))), "c1", MOUNTINFO).is_err(), "{bad}");
        }
    }
}
