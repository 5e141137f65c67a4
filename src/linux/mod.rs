//! Container setup steps, one file per concern. Each step is a function
//! over plain data computed beforehand; `process::init` runs them in order.
//!
//! May use: `state`, `procfs`, `logging` and `sys`; never `process`,
//! `cgroups`, `layers` or `image`.

pub mod caps;
pub mod enosys;
pub mod idmap;
pub mod mempolicy;
pub mod mounts;
pub mod namespaces;
pub mod netdev;
pub mod personality;
pub mod resctrl;
pub mod resolve;
pub mod rlimits;
pub mod rootfs;
pub mod sched;
pub mod seccomp;
pub mod user;
