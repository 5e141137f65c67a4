//! The command line's parts that are more than a flag list: each command's
//! glue, beside `main.rs`'s definitions and dispatch.
//!
//! May use everything below it; nothing uses it but `main.rs`.

pub mod args;
pub mod checkpoint;
pub mod exec;
pub mod listing;
pub mod update;
