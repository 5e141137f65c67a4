//! The layer store and what it makes: layers unpacked once, by chain id,
//! and shared; a container's init layer, its upper and work dirs, and the
//! overlay plan for its rootfs; a container's changes as a layer again
//! (`commit`).
//!
//! `strata create` calls `prepare_rootfs`, which returns an `OverlayPlan`
//! and mounts nothing; the caller decides where and when to mount it
//! (`mount_overlay`). `delete` calls `unmount` and `remove_container`.
//!
//! Files, one job each: `store` (layers on disk, locks, references,
//! prune), `stream` (a blob as its tar stream: decompressed, bounded,
//! hashed), `apply` (tar -> layer dir), `unpacker` (who unpacks, which
//! decides the metadata kept), `difftar` (upper dir -> tar), `init` (the
//! init layer table), `overlay` (the plan and the mount), `bundle`
//! (`strata bundle --image`, user lookup in the layers), `commit`.
//!
//! May use: `image` (images are read only through it; its errors are
//! wrapped in `LayerError::Image`), `userns` (work done as root of a
//! rootless store's user namespace), `state`, and `sys` (xattrs, the new
//! mount API). Never `process`, `linux` or `cgroups`.

pub mod apply;
pub mod bundle;
pub mod commit;
pub mod difftar;
pub mod init;
pub mod overlay;
pub mod store;
pub mod stream;
pub mod unpacker;

use std::collections::HashMap;
use std::path::PathBuf;

pub use crate::image::Digest;
pub use bundle::bundle_from_image;
pub use commit::commit;
pub use overlay::{OverlayPlan, mount_idmapped, unmount};
pub use store::{LayerInfo, Store};

use crate::image::{self, ImageError};
use crate::sys::SysError;
use crate::userns::{self, IdMaps};

#[derive(Debug, thiserror::Error)]
pub enum LayerError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error(transparent)]
    UserNs(#[from] crate::userns::UserMapError),
    #[error("parse {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("blob {digest}: {msg}")]
    Blob { digest: String, msg: String },
    #[error("blob {blob}: {what} mismatch: expected {expected}, got {actual}")]
    Mismatch { blob: String, what: &'static str, expected: String, actual: String },
    #[error("layer {blob}: entry {entry:?}: {msg}")]
    Entry { blob: String, entry: String, msg: String },
    #[error("invalid container id {0:?}")]
    BadId(String),
    #[error("container {0} already has a rootfs in the layer store")]
    Exists(String),
    #[error("container {0} has no rootfs in the layer store")]
    NotFound(String),
    #[error("{0} is still mounted")]
    Busy(PathBuf),
    #[error("overlay: {0}")]
    Plan(String),
    #[error("user: {0}")]
    User(String),
}

pub type Result<T> = std::result::Result<T, LayerError>;

pub(crate) use crate::image::unique_name;

/// What `prepare_rootfs` made: the mount to do, and what it stacks.
#[derive(Debug, Clone)]
pub struct PreparedRootfs {
    /// Not mounted; `plan.target` is `<store>/containers/<id>/merged` and
    /// may be changed before `mount_overlay`.
    pub plan: OverlayPlan,
    /// The image layers' chain ids, bottom first.
    pub chain_ids: Vec<Digest>,
    pub manifest_digest: Digest,
    /// The image config's `config` (entrypoint, env...), if it has one.
    pub image_config: Option<crate::image::types::ContainerConfig>,
}

/// Resolves the image, unpacks its missing layers, writes the container's
/// init layer and upper/work dirs, and records which layers it uses.
///
/// `rootless` holds the container's id maps when the caller is an
/// unprivileged user: the store is then a rootless store with those maps
/// (see `store`), the missing layers are unpacked as root of a user
/// namespace with them, and the overlay is planned with `userxattr`.
pub fn prepare_rootfs(
    store: &Store,
    source: &str,
    reference: Option<&str>,
    container_id: &str,
    hostname: Option<&str>,
    annotations: &HashMap<String, String>,
    rootless: Option<&IdMaps>,
) -> Result<PreparedRootfs> {
    store::check_id(container_id)?;
    // The bundle names its image by source (`Source::name`) and digest.
    let (source, _) = crate::image::source::Source::open(source)?;
    let image = crate::image::resolve(source, reference)?;
    if image.layers.len() + 1 > overlay::MAX_LOWERS {
        return Err(LayerError::Plan(format!(
            "image has {} layers; overlay stacks at most {}",
            image.layers.len(),
            overlay::MAX_LOWERS - 1
        )));
    }
    let diff_ids: Vec<Digest> = image.layers.iter().map(|l| l.diff_id.clone()).collect();
    let chain_ids = image::digest::chain_ids(&diff_ids);
    let held = store.shared_lock()?;
    match rootless {
        Some(maps) => store.claim_user_maps(maps)?,
        None if store.user_maps()?.is_some() => {
            return Err(LayerError::Plan(format!(
                "{} is a rootless store (its layers belong to a user namespace's ids); root uses its own --store",
                store.root().display()
            )));
        }
        None => {}
    }
    let dirs = store.create_container(container_id)?;
    let result = (|| {
        // Recorded first, so that a concurrent prune (which waits for the
        // store lock we hold) sees these layers as used.
        let refs = store::ContainerRefs {
            chain_ids: chain_ids.iter().map(Digest::to_string).collect(),
            layout: PathBuf::from(image.source.name()),
            manifest: image.manifest_digest.to_string(),
            config: image.config_digest.to_string(),
        };
        store.write_refs(container_id, &refs)?;
        let jobs = unpack_jobs();
        let readahead = jobs > 1;
        let ensure = |i: usize| -> Result<()> {
            let layer = &image.layers[i];
            let parent = i.checked_sub(1).map(|p| &chain_ids[p]);
            let blob = apply::BlobCheck {
                source: &layer.blob,
                media_type: &layer.media_type,
                digest: layer.digest.as_ref(),
                diff_id: &layer.diff_id,
                size: (layer.size > 0).then_some(layer.size),
            };
            // With more than one core, each layer inflates on a thread of its own too.
            store.ensure_layer(&held, &chain_ids[i], parent, &layer.diff_id, |dir| {
                apply::apply_layer_with(blob, dir, readahead).map(|a| a.size)
            })?;
            Ok(())
        };
        // Present layers only get their `l/` link checked; the missing ones
        // are unpacked side by side.
        let (present, missing): (Vec<usize>, Vec<usize>) = (0..chain_ids.len()).partition(|i| store.has_layer(&chain_ids[*i]));
        present.iter().try_for_each(|i| ensure(*i))?;
        match rootless {
            Some(maps) if !missing.is_empty() => {
                userns::run_as_root(maps, || unpack_all(&missing, jobs, ensure).map_err(|e| e.to_string()))?;
            }
            _ => unpack_all(&missing, jobs, ensure)?,
        }
        let links: Vec<PathBuf> = chain_ids.iter().map(|c| store.link_path(c)).collect();
        let host_resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        init::write_init_layer(&dirs.init, &init::init_entries(hostname, annotations, &host_resolv))?;
        let mut plan = OverlayPlan::new(dirs.init.clone(), &links, dirs.upper.clone(), dirs.work.clone(), dirs.merged.clone());
        plan.userxattr = rootless.is_some();
        plan.check()?;
        Ok(PreparedRootfs {
            plan,
            chain_ids: chain_ids.clone(),
            manifest_digest: image.manifest_digest.clone(),
            image_config: image.config.config.clone(),
        })
    })();
    if result.is_err() {
        let _ = store.remove_container(container_id);
    }
    result
}

/// Runs `ensure` for each of `layers` (the missing ones, by index), at most
/// `jobs` at a time (one per core): a layer is its own directory, so layers unpack
/// independently, each into its own temp dir, verified and renamed into
/// place on its own (`Store::ensure_layer`, whose per-layer lock still makes
/// concurrent creates unpack a layer once). One layer runs here, with no
/// thread. The workers are joined before this returns, so the process is
/// single-threaded again when `create` clones init. The first error (in
/// layer order) is returned, after every worker has stopped; the others
/// stop taking new layers once one has failed.
fn unpack_all(layers: &[usize], jobs: usize, ensure: impl Fn(usize) -> Result<()> + Sync) -> Result<()> {
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    if layers.is_empty() {
        return Ok(());
    }
    // Unpacking allocates and frees per entry, without bound: on malloc.
    crate::sys::arena::stop();
    let workers = jobs.min(layers.len());
    if workers <= 1 {
        return layers.iter().try_for_each(|i| ensure(*i));
    }
    let next = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    let errors = std::sync::Mutex::new(Vec::new());
    std::thread::scope(|s| {
        for _ in 0..workers {
            s.spawn(|| {
                while !failed.load(Ordering::Relaxed) {
                    let Some(&i) = layers.get(next.fetch_add(1, Ordering::Relaxed)) else { break };
                    if let Err(e) = ensure(i) {
                        failed.store(true, Ordering::Relaxed);
                        errors.lock().unwrap_or_else(|p| p.into_inner()).push((i, e));
                    }
                }
            });
        }
    });
    let mut errors = errors.into_inner().unwrap_or_else(|p| p.into_inner());
    errors.sort_by_key(|(i, _)| *i);
    errors.into_iter().next().map_or(Ok(()), |(_, e)| Err(e))
}

/// How many layers unpack at once: `STRATA_UNPACK_JOBS` if set (1 gives
/// the sequential unpack, for comparison), else the number of cores.
fn unpack_jobs() -> usize {
    match std::env::var("STRATA_UNPACK_JOBS").ok().and_then(|v| v.parse::<usize>().ok()) {
        Some(n) if n > 0 => n,
        _ => std::thread::available_parallelism().map_or(1, |n| n.get()),
    }
}

/// Mounts a prepared rootfs on `plan.target`.
pub fn mount_overlay(plan: &OverlayPlan) -> Result<()> {
    overlay::mount(plan)
}

/// Removes the container's upper, work, init and merged dirs and its layer
/// references. Shared layers stay (see `prune`). `merged` must be unmounted.
pub fn remove_container(store: &Store, id: &str) -> Result<()> {
    store.remove_container(id)
}

pub fn list_layers(store: &Store) -> Result<Vec<LayerInfo>> {
    store.list_layers()
}

/// Removes the layers no container uses; returns their chain ids.
pub fn prune(store: &Store) -> Result<Vec<String>> {
    store.prune()
}

/// (bytes in the container's upper dir, those plus its image layers').
pub fn container_usage(store: &Store, id: &str) -> Result<(u64, u64)> {
    store.container_usage(id)
}

#[cfg(test)]
mod tests;
