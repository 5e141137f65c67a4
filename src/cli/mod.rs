//! The command line's parts that are more than a flag list: each command's
//! glue, beside `main.rs`'s definitions and dispatch.

pub mod args;
pub mod checkpoint;
pub mod exec;
pub mod listing;
pub mod update;
