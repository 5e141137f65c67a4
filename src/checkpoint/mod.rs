//! `checkpoint` and `restore`, through CRIU (`criu swrk` and its RPC, see
//! `criu`), with runc's flags and behaviour.
//!
//! A checkpoint is a directory (`--image-path`) holding CRIU's images and
//! strata's own two files:
//! - `descriptors.json`: the container's stdio at the dump, as runc writes
//!   it (pipes among them are handed to the restored process);
//! - `strata.json` (`Meta`): the container, the CRIU that dumped it and,
//!   for an image-backed container, its image and writable layer, saved
//!   as `rootfs-diff.tar.gz` (a layer diff, as `commit` makes one) while
//!   CRIU holds the container frozen.
//!
//! `restore` rebuilds what the dump left out: the rootfs (for an
//! image-backed bundle, the overlay again from the layer store, unpacking
//! what that store lacks and the diff into a new upper layer), the
//! cgroups, and the mounts from the host; CRIU restores the processes and
//! the container's own mounts on top. See docs/checkpoint.md.
//!
//! May use: `process`, `container`, the steps (`cgroups`, `hooks`),
//! `layers` and `image` (an image-backed container's rootfs), and the base.
//! Used by the CLI only.

pub mod criu;
pub mod dump;
pub mod plan;
pub mod restore;
pub mod rootfs;

use std::path::{Path, PathBuf};

use rust_criu::rust_criu_protobuf::rpc::Criu_cg_mode;
use serde::{Deserialize, Serialize};

pub use criu::{Criu, CriuError};

#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error(transparent)]
    Criu(#[from] CriuError),
    #[error(transparent)]
    Op(#[from] crate::container::OpError),
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    #[error(transparent)]
    Sys(#[from] crate::sys::SysError),
    #[error(transparent)]
    Layers(#[from] crate::layers::LayerError),
    #[error(transparent)]
    Image(#[from] crate::image::ImageError),
    #[error(transparent)]
    Cgroup(#[from] crate::cgroups::CgroupError),
    #[error(transparent)]
    Hook(#[from] crate::hooks::HookError),
    #[error(transparent)]
    Spec(#[from] crate::spec::SpecError),
    #[error(transparent)]
    Run(#[from] crate::process::run::RunError),
    #[error("{0}")]
    Invalid(String),
}

pub type Result<T> = std::result::Result<T, CheckpointError>;

/// The CRIU flags `checkpoint` and `restore` share (runc's).
#[derive(Debug, Clone, Default)]
pub struct CriuFlags {
    /// `--criu`: the CRIU binary.
    pub criu: Option<PathBuf>,
    pub image_path: Option<PathBuf>,
    pub work_path: Option<PathBuf>,
    pub tcp_established: bool,
    pub ext_unix_sk: bool,
    pub shell_job: bool,
    pub file_locks: bool,
    pub manage_cgroups_mode: Option<String>,
    pub empty_ns: Vec<String>,
    pub auto_dedup: bool,
    pub lazy_pages: bool,
}

impl CriuFlags {
    /// `--image-path`, by default `./checkpoint` (runc's).
    pub fn image_dir(&self) -> PathBuf {
        match &self.image_path {
            Some(p) if !p.as_os_str().is_empty() => p.clone(),
            _ => std::env::current_dir().unwrap_or_default().join("checkpoint"),
        }
    }

    /// CRIU's cgroup mode for `--manage-cgroups-mode`.
    pub fn cg_mode(&self) -> Result<Criu_cg_mode> {
        Ok(match self.manage_cgroups_mode.as_deref().unwrap_or("") {
            "" => Criu_cg_mode::DEFAULT,
            "soft" => Criu_cg_mode::SOFT,
            "full" => Criu_cg_mode::FULL,
            "strict" => Criu_cg_mode::STRICT,
            "ignore" => Criu_cg_mode::IGNORE,
            other => {
                return Err(CheckpointError::Invalid(format!(
                    "invalid manage-cgroups-mode value {other:?} (soft, full, strict or ignore)"
                )));
            }
        })
    }

    /// The namespaces restored empty: the network always (as runc, which
    /// does not manage network devices), plus `--empty-ns network`.
    pub fn empty_ns(&self) -> Result<u32> {
        for ns in &self.empty_ns {
            if ns != "network" {
                return Err(CheckpointError::Invalid(format!("--empty-ns: namespace {ns:?} is not supported (only network)")));
            }
        }
        Ok(libc::CLONE_NEWNET as u32)
    }
}

/// `strata.json` in a checkpoint directory.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Meta {
    /// The container checkpointed.
    pub id: String,
    /// CRIU's version at the dump (runc's numbering).
    pub criu_version: u32,
    /// The image-backed container's image and writable layer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image: Option<rootfs::SavedRootfs>,
}

pub const META_FILE: &str = "strata.json";
pub const DESCRIPTORS_FILE: &str = "descriptors.json";

impl Meta {
    pub fn read(dir: &Path) -> Result<Option<Meta>> {
        let path = dir.join(META_FILE);
        match std::fs::read(&path) {
            Ok(b) => serde_json::from_slice(&b)
                .map(Some)
                .map_err(|e| CheckpointError::Invalid(format!("{}: not a strata checkpoint record: {e}", path.display()))),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(crate::sys::io_err("read", &path)(e).into()),
        }
    }
}

/// runc's version number as `major.minor.sublevel`.
pub fn version_text(v: u32) -> String {
    format!("{}.{}.{}", v / 10000, v / 100 % 100, v % 100)
}

/// What CRIU's log says went wrong, for the message of a failed dump or
/// restore: its `Error` lines (at most eight), each with the line before.
pub fn log_excerpt(log: &Path) -> Option<String> {
    let text = std::fs::read_to_string(log).ok()?;
    let lines: Vec<&str> = text.lines().collect();
    let mut out: Vec<&str> = Vec::new();
    // CRIU reports its failure to raise RLIMIT_NOFILE (without
    // CAP_SYS_RESOURCE) as an error, and goes on: it is not why it failed.
    let is_error = |l: &&str| l.contains("Error (") && !l.contains("Can't setup RLIMIT_NOFILE");
    for (i, l) in lines.iter().enumerate().filter(|(_, l)| is_error(l)).take(8) {
        if let Some(prev) = i.checked_sub(1).map(|p| lines[p]).filter(|p| !is_error(p) && !out.contains(p)) {
            out.push(prev);
        }
        out.push(l);
    }
    (!out.is_empty()).then(|| out.join("\n"))
}

/// `path` (a container path) resolved inside `root` as the container would
/// see it: each symlink on the way is followed within `root` (an absolute
/// target starts again at `root`, `..` stops at it), as runc's
/// SecureJoin does. Returns the resolved path from `root` (`/real/conf`
/// for a `/conf` that links there). A component that does not exist ends
/// the walk; the rest is taken as it is.
pub fn resolve_in(root: &Path, path: &str) -> String {
    let mut todo: Vec<String> = path.split('/').filter(|c| !c.is_empty()).rev().map(String::from).collect();
    let mut done: Vec<String> = Vec::new();
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        match c.as_str() {
            "." => continue,
            ".." => {
                done.pop();
                continue;
            }
            _ => {}
        }
        let here = root.join(done.iter().chain(std::iter::once(&c)).collect::<PathBuf>());
        match std::fs::read_link(&here) {
            Ok(target) if hops < 255 => {
                hops += 1;
                let t = target.to_string_lossy().into_owned();
                if t.starts_with('/') {
                    done.clear();
                }
                todo.extend(t.split('/').filter(|c| !c.is_empty()).rev().map(String::from));
            }
            _ => done.push(c),
        }
    }
    format!("/{}", done.join("/"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn container_paths_resolve_inside_the_root() {
        let dir = std::env::temp_dir().join(format!("strata-resolve-{}", std::process::id()));
        std::fs::create_dir_all(dir.join("real/conf")).unwrap();
        std::os::unix::fs::symlink("/real/conf", dir.join("conf")).unwrap();
        std::os::unix::fs::symlink("../../..", dir.join("real/up")).unwrap();
        assert_eq!(super::resolve_in(&dir, "/conf"), "/real/conf");
        assert_eq!(super::resolve_in(&dir, "/conf/x/y"), "/real/conf/x/y");
        assert_eq!(super::resolve_in(&dir, "/real/up/etc"), "/etc");
        assert_eq!(super::resolve_in(&dir, "a/./b/../c"), "/a/c");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
