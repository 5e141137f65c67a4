//! The container's processes: `parent` (the runtime side of create),
//! `init` (the container side), `sync` (the protocol between them).
//!
//! May use: `container` (a container by its state), the steps (`linux`,
//! `cgroups`, `hooks`), `layers` (an image-backed rootfs), and the base
//! (`spec`, `state`, `userns`, `procfs`, `logging`, `sys`). Used by the CLI
//! and `checkpoint` only.

pub mod exec;
pub mod finish;
pub mod init;
pub mod parent;
pub mod run;
pub mod seal;
pub mod sync;
