//! config.json as a hostile input: parsing and validation must never panic,
//! and whatever validates must also survive the planning steps.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(spec) = strata::spec::parse(data) else { return };
    if strata::spec::validate(&spec).is_err() {
        return;
    }
    let linux = spec.linux().clone().unwrap_or_default();
    let _ = strata::linux::namespaces::plan(Some(&linux));
    for m in spec.mounts().iter().flatten() {
        let _ = strata::linux::mounts::plan(m);
    }
    if let Some(p) = spec.process() {
        let _ = strata::linux::caps::plan(p.capabilities().as_ref());
    }
    let _ = strata::linux::rootfs::device_list(linux.devices().as_deref().unwrap_or(&[]));
});
