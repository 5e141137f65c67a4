//! End-to-end tests: real containers created by the `strata` binary, checked
//! from inside (namespaces, mounts, ids, limits) and outside (state, what is
//! left after delete). They need root; CI runs them as root.

mod cgroups;
mod checkpoint;
mod clients;
mod common;
mod crash;
mod errors;
mod inside;
mod layers;
mod lifecycle;
mod rootless;
mod security;
