//! The container's processes: `parent` (the runtime side of create),
//! `init` (the container side), `sync` (the protocol between them).

pub mod exec;
pub mod finish;
pub mod init;
pub mod parent;
pub mod run;
pub mod seal;
pub mod sync;
