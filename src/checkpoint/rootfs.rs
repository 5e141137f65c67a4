//! The rootfs of an image-backed container across a checkpoint: its
//! writable layer saved as a layer diff beside CRIU's images, and at
//! restore the overlay rebuilt from the layer store (the image's layers,
//! unpacked where the store lacks them) with that diff as a new upper
//! layer. This is what makes a checkpoint directory plus a bundle enough
//! to restore on another store, or another host with the image.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use super::{CheckpointError, Result};
use crate::image::source::BlobSource;
use crate::layers::apply::{self, BlobCheck};
use crate::layers::bundle::{ANN_LAYOUT, ANN_REF};
use crate::layers::{self, Digest, OverlayPlan, Store};

pub const DIFF_FILE: &str = "rootfs-diff.tar.gz";
const DIFF_MEDIA_TYPE: &str = "application/vnd.oci.image.layer.v1.tar+gzip";

/// An image-backed container's rootfs, as saved in a checkpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SavedRootfs {
    /// The image's layers, bottom first (chain ids).
    pub chain_ids: Vec<String>,
    pub manifest: String,
    /// `rootfs-diff.tar.gz`: digest (gzip), diff_id (tar) and size.
    pub diff_digest: String,
    pub diff_id: String,
    pub diff_size: u64,
}

/// Writes container `id`'s writable layer into `image_dir` as a layer
/// diff (whiteouts as OCI whiteouts). The container must hold still: CRIU
/// calls this with its tasks frozen (`post-dump`).
pub fn save(store_dir: &Path, id: &str, image_dir: &Path) -> Result<SavedRootfs> {
    let store = Store::open(store_dir)?;
    let refs = store
        .read_refs(id)?
        .ok_or_else(|| CheckpointError::Invalid(format!("container {id}: no layers recorded in {}", store_dir.display())))?;
    let upper = store.container_dirs(id)?.upper;
    let path = image_dir.join(DIFF_FILE);
    let tmp = image_dir.join(format!(".{DIFF_FILE}.tmp"));
    let file = std::fs::File::create(&tmp).map_err(crate::sys::io_err("create", &tmp))?;
    let (file, diff) = layers::difftar::diff_to_tar(&upper, std::io::BufWriter::new(file))?;
    let file = file.into_inner().map_err(|e| crate::sys::io_err("write", &tmp)(e.into_error()))?;
    file.sync_all().map_err(crate::sys::io_err("fsync", &tmp))?;
    std::fs::rename(&tmp, &path).map_err(crate::sys::io_err("rename", &path))?;
    Ok(SavedRootfs {
        chain_ids: refs.chain_ids,
        manifest: refs.manifest,
        diff_digest: diff.digest.to_string(),
        diff_id: diff.diff_id.to_string(),
        diff_size: diff.size,
    })
}

/// Makes container `id`'s rootfs again for a restore of the bundle whose
/// annotations are `ann`: the layers ready in `store` (missing ones
/// unpacked), a new init layer, and the saved diff unpacked into a new
/// upper layer. Returns the overlay to mount, on `target`. The image must
/// be the one checkpointed.
pub fn rebuild(
    store: &Store,
    ann: &std::collections::HashMap<String, String>,
    hostname: Option<&str>,
    id: &str,
    saved: &SavedRootfs,
    image_dir: &Path,
    target: PathBuf,
) -> Result<OverlayPlan> {
    let layout = ann.get(ANN_LAYOUT).ok_or_else(|| CheckpointError::Invalid("the bundle names no image".into()))?;
    let prepared = layers::prepare_rootfs(store, layout, ann.get(ANN_REF).map(String::as_str), id, hostname, ann, None)?;
    let chain: Vec<String> = prepared.chain_ids.iter().map(Digest::to_string).collect();
    let result = (|| {
        if chain != saved.chain_ids {
            return Err(CheckpointError::Invalid(format!(
                "the checkpoint in {} is of a container made from image {}, the bundle's image is {} ({layout}): restore it with the bundle it was made from",
                image_dir.display(),
                saved.manifest,
                prepared.manifest_digest
            )));
        }
        let source = BlobSource::File(image_dir.join(DIFF_FILE));
        let digest = Digest::parse(&saved.diff_digest)?;
        let diff_id = Digest::parse(&saved.diff_id)?;
        let check = BlobCheck {
            source: &source,
            media_type: DIFF_MEDIA_TYPE,
            digest: Some(&digest),
            diff_id: &diff_id,
            size: Some(saved.diff_size),
        };
        apply::apply_layer(check, &prepared.plan.upper)?;
        let mut plan = prepared.plan.clone();
        plan.target = target;
        Ok(plan)
    })();
    if result.is_err() {
        let _ = layers::remove_container(store, id);
    }
    result
}
