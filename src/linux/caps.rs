//! Capabilities: the five sets of `process.capabilities`, applied in the
//! order the kernel requires (bounding first, then after the uid switch the
//! permitted/inheritable/effective sets, and ambient last).

use std::str::FromStr;

use caps::{CapSet, Capability, CapsHashSet};
use oci_spec::runtime::{Capabilities, LinuxCapabilities};

#[derive(Debug, thiserror::Error)]
pub enum CapsError {
    #[error("capability {0}: not known to strata")]
    Unknown(String),
    #[error("{op} {set:?}: {msg}")]
    Apply { op: &'static str, set: CapSet, msg: String },
    #[error("process.capabilities: {caps} not in this runtime's bounding set (the host withholds them), so the container cannot have them")]
    Unavailable { caps: String },
}

/// The sets as the caps crate's types; `None` leaves a set as it is empty.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CapPlan {
    pub bounding: CapsHashSet,
    pub effective: CapsHashSet,
    pub permitted: CapsHashSet,
    pub inheritable: CapsHashSet,
    pub ambient: CapsHashSet,
}

fn convert(set: &Option<Capabilities>) -> Result<CapsHashSet, CapsError> {
    let mut out = CapsHashSet::new();
    for c in set.iter().flatten() {
        let name = serde_json::to_value(c).ok().and_then(|v| v.as_str().map(str::to_string)).unwrap_or_default();
        out.insert(Capability::from_str(&name).map_err(|_| CapsError::Unknown(name.clone()))?);
    }
    Ok(out)
}

pub fn plan(c: Option<&LinuxCapabilities>) -> Result<CapPlan, CapsError> {
    let Some(c) = c else { return Ok(CapPlan::default()) };
    Ok(CapPlan {
        bounding: convert(c.bounding())?,
        effective: convert(c.effective())?,
        permitted: convert(c.permitted())?,
        inheritable: convert(c.inheritable())?,
        ambient: convert(c.ambient())?,
    })
}

fn fail(op: &'static str, set: CapSet) -> impl FnOnce(caps::errors::CapsError) -> CapsError {
    move |e| CapsError::Apply { op, set, msg: e.to_string() }
}

/// Refuses, at `create`, capabilities that the container could never hold
/// because strata's own bounding set lacks them (a host may withhold some
/// from root, CAP_SYS_RESOURCE for instance): setting them would fail in
/// init after `start`, or the execve would silently drop them. The bounding
/// list itself only takes away, so it may name more.
pub fn check_available(plan: &CapPlan) -> Result<(), CapsError> {
    let mut missing = Vec::new();
    // Each capability read once, whichever sets name it.
    let named: CapsHashSet = [&plan.effective, &plan.permitted, &plan.inheritable, &plan.ambient].into_iter().flatten().copied().collect();
    for cap in &named {
        // has_cap passes a failing PR_CAPBSET_READ on (caps::read would
        // take it for a missing capability).
        if !caps::has_cap(None, CapSet::Bounding, *cap).map_err(fail("read", CapSet::Bounding))? {
            missing.push(cap.to_string());
        }
    }
    missing.sort();
    missing.dedup();
    if missing.is_empty() { Ok(()) } else { Err(CapsError::Unavailable { caps: missing.join(", ") }) }
}

/// Drops every capability the kernel knows that is not in the bounding set
/// (one the kernel does not know, it refuses to drop, and it cannot be held).
pub fn drop_bounding(plan: &CapPlan) -> Result<(), CapsError> {
    for cap in caps::all().into_iter().filter(|c| !plan.bounding.contains(c)) {
        crate::sys::capbset_drop(cap.index(), cap).map_err(|e| CapsError::Apply {
            op: "drop",
            set: CapSet::Bounding,
            msg: e.to_string(),
        })?;
    }
    Ok(())
}

/// Sets inheritable, permitted and effective, then raises the ambient caps.
pub fn apply_sets(plan: &CapPlan) -> Result<(), CapsError> {
    let mask = |set: &CapsHashSet| set.iter().fold(0u64, |m, c| m | c.bitmask());
    // One capset where the kernel takes all three at once; where it does
    // not (an effective cap not permitted), the steps below, each of which
    // names the set that failed.
    if plan.effective.is_subset(&plan.permitted)
        && crate::sys::capset(mask(&plan.effective), mask(&plan.permitted), mask(&plan.inheritable)).is_ok()
    {
        return raise_ambient(plan);
    }
    // Effective must stay a subset of permitted while we lower them.
    caps::set(None, CapSet::Effective, &plan.effective.intersection(&plan.permitted).copied().collect())
        .or_else(|_| caps::clear(None, CapSet::Effective))
        .map_err(fail("set", CapSet::Effective))?;
    // Inheritable while the permitted set is still whole: it may hold caps
    // the process is not permitted (the kernel allows what was permitted
    // before), as runc's one capset does.
    caps::set(None, CapSet::Inheritable, &plan.inheritable).map_err(fail("set", CapSet::Inheritable))?;
    caps::set(None, CapSet::Permitted, &plan.permitted).map_err(fail("set", CapSet::Permitted))?;
    caps::set(None, CapSet::Effective, &plan.effective).map_err(fail("set", CapSet::Effective))?;
    raise_ambient(plan)
}

/// Clears the ambient set, then raises the plan's ambient caps.
fn raise_ambient(plan: &CapPlan) -> Result<(), CapsError> {
    caps::clear(None, CapSet::Ambient).map_err(fail("clear", CapSet::Ambient))?;
    let mut ambient: Vec<&Capability> = plan.ambient.iter().collect();
    ambient.sort_by_key(|c| c.index());
    for cap in ambient {
        // An ambient cap must be permitted and inheritable: one that is not
        // is skipped with runc's warning, and the process still runs.
        if let Err(e) = caps::raise(None, CapSet::Ambient, *cap) {
            crate::logging::emit("warning", &format!("can't raise ambient capability {cap}: {e}"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn converts_names() {
        let c: LinuxCapabilities = serde_json::from_str(r#"{"bounding":["CAP_KILL","CAP_NET_RAW"],"effective":["CAP_KILL"]}"#).unwrap();
        let p = plan(Some(&c)).unwrap();
        assert!(p.bounding.contains(&Capability::CAP_NET_RAW));
        assert_eq!(p.effective.len(), 1);
        assert!(p.ambient.is_empty());
    }

    #[test]
    fn unknown_capability_is_a_parse_error() {
        assert!(serde_json::from_str::<LinuxCapabilities>(r#"{"bounding":["CAP_NOPE"]}"#).is_err());
    }
}
