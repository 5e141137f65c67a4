//! `strata commit`: a container's upper dir becomes a new gzip layer on top
//! of the image it was created from, with a new image config (diff_ids and
//! history appended) and manifest, tagged in the layout's index.json.
//!
//! Blobs are written to temp files and renamed to their digest; index.json
//! is replaced by a rename under a lock, so a reader of the layout never
//! sees a half-written image.
//!
//! A rootless caller's container (a rootless store) is committed as root of
//! a user namespace with the store's maps: there the upper dir's files show
//! the owners the container gave them (0 for its root, not the user's own
//! uid), every one of them can be read, and the opaque markers are the
//! `user.overlay.*` ones its overlay wrote.

use std::path::Path;

use serde_json::{Value, json};

use super::difftar::diff_to_tar;
use super::{LayerError, Result, Store};
use crate::image::digest::Digest;
use crate::image::layout;
use crate::image::types::{Descriptor, MT_LAYER_GZIP, MT_MANIFEST};

const MT_DOCKER_LAYER_GZIP: &str = "application/vnd.docker.image.rootfs.diff.tar.gzip";

/// Commits `upper_dir` (the container should be stopped or paused) into
/// `layout` as `new_ref` (a layout made anew where `layout` does not exist
/// or is empty). Returns the new manifest's digest.
pub fn commit(store: &Store, container_id: &str, upper_dir: &Path, layout: &Path, new_ref: &str) -> Result<String> {
    match store.user_maps()? {
        Some(maps) if !nix::unistd::geteuid().is_root() => Ok(crate::userns::run_as_root_with_output(&maps, || {
            commit_here(store, container_id, upper_dir, layout, new_ref).map_err(|e| e.to_string())
        })?),
        _ => commit_here(store, container_id, upper_dir, layout, new_ref),
    }
}

fn commit_here(store: &Store, container_id: &str, upper_dir: &Path, layout: &Path, new_ref: &str) -> Result<String> {
    let refs = store.read_refs(container_id)?.ok_or_else(|| LayerError::NotFound(container_id.to_string()))?;
    if !refs.layout.is_dir() {
        // An archive source (`oci-archive:`, `docker-archive:`): its base
        // layers would have to be copied out of it first.
        return Err(LayerError::Plan(format!(
            "commit: container {container_id} was made from {}, not from an OCI layout directory; \
             copy the image into one (skopeo copy ... oci:DIR:REF) and create from that to commit",
            refs.layout.display()
        )));
    }
    crate::image::write::init_if_missing(layout)?;
    let mut manifest: Value = layout::parse_json_blob(&refs.layout, &Digest::parse(&refs.manifest)?)?;
    let mut config: Value = layout::parse_json_blob(&refs.layout, &Digest::parse(&refs.config)?)?;
    if !same_dir(&refs.layout, layout) {
        copy_layer_blobs(&manifest, &refs.layout, layout)?;
    }

    let (diff, _, _) = crate::image::write::write_blob_with(layout, |w| diff_to_tar(upper_dir, w).map(|(_, d)| d))?;
    let now = rfc3339(std::time::SystemTime::now());
    push(&mut config, "/rootfs/diff_ids", json!(diff.diff_id.to_string()));
    push(&mut config, "/history", json!({"created": now, "created_by": "strata commit", "comment": format!("container {container_id}")}));
    config["created"] = json!(now);
    let config_bytes = serde_json::to_vec(&config).expect("json value serializes");
    let (config_digest, config_size) = crate::image::write::write_blob(layout, &config_bytes)?;

    let docker = manifest.get("mediaType").and_then(Value::as_str).is_some_and(|m| m.contains("docker"));
    let layer_type = if docker { MT_DOCKER_LAYER_GZIP } else { MT_LAYER_GZIP };
    push(&mut manifest, "/layers", json!({"mediaType": layer_type, "digest": diff.digest.to_string(), "size": diff.size}));
    manifest["config"]["digest"] = json!(config_digest.to_string());
    manifest["config"]["size"] = json!(config_size);
    let media_type = manifest.get("mediaType").and_then(Value::as_str).unwrap_or(MT_MANIFEST).to_string();
    let (manifest_digest, manifest_size) =
        crate::image::write::write_blob(layout, &serde_json::to_vec(&manifest).expect("json value serializes"))?;

    let desc = Descriptor { media_type, digest: manifest_digest.to_string(), size: manifest_size, annotations: None, platform: None };
    crate::image::write::set_ref(layout, desc, new_ref)?;
    Ok(manifest_digest.to_string())
}

fn push(v: &mut Value, pointer: &str, item: Value) {
    if !v.pointer(pointer).is_some_and(Value::is_array) {
        let (parent, key) = pointer.rsplit_once('/').expect("pointer has a slash");
        let parent = if parent.is_empty() { Some(&mut *v) } else { v.pointer_mut(parent) };
        if let Some(Value::Object(map)) = parent {
            map.insert(key.to_string(), json!([]));
        }
    }
    if let Some(Value::Array(a)) = v.pointer_mut(pointer) {
        a.push(item);
    }
}

fn same_dir(a: &Path, b: &Path) -> bool {
    matches!((std::fs::canonicalize(a), std::fs::canonicalize(b)), (Ok(x), Ok(y)) if x == y)
}

/// Copies the base image's layer blobs that the target layout lacks.
fn copy_layer_blobs(manifest: &Value, from: &Path, to: &Path) -> Result<()> {
    let layers = manifest.get("layers").and_then(Value::as_array).cloned().unwrap_or_default();
    for l in layers {
        let digest = Digest::parse(l.get("digest").and_then(Value::as_str).unwrap_or_default())?;
        if crate::image::source::blob_path(to, &digest).exists() {
            continue;
        }
        let src = crate::image::source::blob_path(from, &digest);
        let mut file = std::fs::File::open(&src).map_err(|source| LayerError::Io { op: "open", path: src.clone(), source })?;
        let ((), copied, _) = crate::image::write::write_blob_with(to, |w| {
            std::io::copy(&mut file, w).map(drop).map_err(|source| LayerError::Io { op: "copy", path: src.clone(), source })
        })?;
        if copied != digest {
            return Err(LayerError::Mismatch {
                blob: digest.to_string(),
                what: "digest",
                expected: digest.to_string(),
                actual: copied.to_string(),
            });
        }
    }
    Ok(())
}

/// `2006-01-02T15:04:05Z` for a system time (UTC, whole seconds).
pub fn rfc3339(t: std::time::SystemTime) -> String {
    let secs = t.duration_since(std::time::UNIX_EPOCH).map(|d| d.as_secs() as i64).unwrap_or(0);
    crate::state::rfc3339(secs, 0).replace(".000000000Z", "Z")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(UNIX_EPOCH), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(951_782_400)), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(UNIX_EPOCH + Duration::from_secs(1_700_000_000)), "2023-11-14T22:13:20Z");
    }

    #[test]
    fn push_creates_missing_arrays() {
        let mut v = json!({"rootfs": {}});
        push(&mut v, "/rootfs/diff_ids", json!("a"));
        push(&mut v, "/history", json!(1));
        push(&mut v, "/history", json!(2));
        assert_eq!(v, json!({"rootfs": {"diff_ids": ["a"]}, "history": [1, 2]}));
    }
}
