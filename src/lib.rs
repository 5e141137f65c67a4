//! strata: an OCI container runtime.
//!
//! Data flows one way: CLI -> `spec` (checked config) -> `process::parent`
//! (clone, ids, cgroup, hooks) -> `process::init` (runs `linux::*` steps in
//! the container) -> `state`. `sys` is the only module with `unsafe`.

pub mod cgroups;
pub mod checkpoint;
pub mod container;
pub mod defaults;
pub mod hooks;
pub mod layers;
pub mod linux;
pub mod logging;
pub mod process;
pub mod spec;
pub mod state;
pub mod sys;
