//! `linux.personality`: the execution domain the container's process (and
//! every process `exec` starts in it) runs under. `LINUX32` makes `uname -m`
//! say `i686` on x86_64.

use oci_spec::runtime::{LinuxPersonality, LinuxPersonalityDomain};

use crate::sys::{self, SysError};

const PER_LINUX: u64 = 0x0000;
const PER_LINUX32: u64 = 0x0008;

/// The persona to set, or an error naming the field for what strata cannot
/// apply (the spec defines no flags).
pub fn plan(p: Option<&LinuxPersonality>) -> Result<Option<(u64, &'static str)>, String> {
    let Some(p) = p else { return Ok(None) };
    if let Some(flags) = p.flags().as_ref().filter(|f| !f.is_empty()) {
        return Err(format!("linux.personality.flags {flags:?}: no personality flags are supported"));
    }
    Ok(Some(match p.domain() {
        LinuxPersonalityDomain::PerLinux => (PER_LINUX, "LINUX"),
        LinuxPersonalityDomain::PerLinux32 => (PER_LINUX32, "LINUX32"),
    }))
}

pub fn apply(planned: Option<(u64, &'static str)>) -> Result<(), SysError> {
    match planned {
        Some((persona, name)) => sys::set_personality(persona, name),
        None => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn domains_and_flags() {
        let p: LinuxPersonality = serde_json::from_str(r#"{"domain":"LINUX32"}"#).unwrap();
        assert_eq!(plan(Some(&p)).unwrap(), Some((PER_LINUX32, "LINUX32")));
        let p: LinuxPersonality = serde_json::from_str(r#"{"domain":"LINUX","flags":["ADDR_NO_RANDOMIZE"]}"#).unwrap();
        assert!(plan(Some(&p)).unwrap_err().contains("linux.personality.flags"));
        assert_eq!(plan(None).unwrap(), None);
    }
}
