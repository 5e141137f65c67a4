//! strata: an OCI container runtime.
//!
//! Data flows one way: CLI -> `spec` (checked config) -> `process::parent`
//! (clone, ids, cgroup, hooks) -> `process::init` (runs `linux::*` steps in
//! the container) -> `state`. `checkpoint` drives CRIU over the same state.
//! Below them all: `userns` (id maps, work as root of a user namespace,
//! used by the layer store and the container's setup alike) and `procfs`
//! (the checked procfs handle), then `sys`, the only module with `unsafe`.

pub mod cgroups;
pub mod checkpoint;
pub mod container;
pub mod defaults;
pub mod hooks;
pub mod layers;
pub mod linux;
pub mod logging;
pub mod process;
pub mod procfs;
pub mod spec;
pub mod state;
pub mod sys;
pub mod userns;
