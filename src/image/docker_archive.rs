//! `docker-archive:FILE[:NAME:TAG]`: the layout `docker save` and
//! `podman save` write. `manifest.json` lists each image as its config file,
//! its RepoTags and its layer tars, bottom first; the layer tars may be
//! plain, gzip or zstd (told by their bytes). The archive gives no digest
//! for a layer tar, so each is checked against its diff_id from the config,
//! which must itself hash to the name the archive gives it when that name is
//! a digest (`<hex>.json`, or `blobs/sha256/<hex>` in newer archives).

use serde::Deserialize;

use super::ImageError;
use super::archive::Archive;
use super::digest::Digest;
use super::source::{BlobSource, Source};
use super::types::{Image, ImageConfig, LayerRef, check_platform, parse_verified};

/// manifest.json is small; a bigger one is refused.
const MAX_MANIFEST: u64 = 4 << 20;

#[derive(Debug, Deserialize)]
#[serde(rename_all = "PascalCase")]
struct Entry {
    config: String,
    #[serde(default)]
    repo_tags: Option<Vec<String>>,
    layers: Vec<String>,
}

pub fn resolve(source: Source, archive: &Archive, reference: Option<&str>) -> Result<Image, ImageError> {
    let bad = |msg: String| ImageError::Layout { layout: archive.path.clone(), msg };
    if !archive.has("manifest.json") {
        return Err(bad("no manifest.json: not a docker-archive (docker save / podman save output)".into()));
    }
    let data = archive.read("manifest.json", MAX_MANIFEST)?;
    let entries: Vec<Entry> = serde_json::from_slice(&data).map_err(|e| bad(format!("manifest.json: {e}")))?;
    let tags = |e: &Entry| e.repo_tags.clone().unwrap_or_default();
    // The config digest that a bundle records, or a tag.
    let by_digest = |r: &str, e: &Entry| archive.read(&e.config, MAX_MANIFEST * 8).is_ok_and(|c| Digest::of(&c).as_str() == r);
    let entry = match reference {
        Some(r) if r.starts_with("sha256:") => entries.iter().find(|e| by_digest(r, e)),
        Some(r) => entries.iter().find(|e| tags(e).iter().any(|t| t == r || t.rsplit_once('/').is_some_and(|(_, short)| short == r))),
        None if entries.len() == 1 => entries.first(),
        None => {
            let all: Vec<String> = entries.iter().flat_map(tags).collect();
            return Err(bad(format!("{} images in manifest.json, give NAME:TAG (present: {})", entries.len(), all.join(", "))));
        }
    };
    let Some(entry) = entry else {
        let all: Vec<String> = entries.iter().flat_map(tags).collect();
        return Err(bad(format!("no image tagged {:?} (present: {})", reference.unwrap_or_default(), all.join(", "))));
    };
    if !archive.has(&entry.config) {
        return Err(bad(format!("the image config {:?} is missing from the archive", entry.config)));
    }
    let config_bytes = archive.read(&entry.config, MAX_MANIFEST * 8)?;
    let config_digest = Digest::of(&config_bytes);
    let config: ImageConfig = match named_digest(&entry.config) {
        Some(named) => parse_verified(&config_bytes, &named)?,
        None => serde_json::from_slice(&config_bytes).map_err(|e| bad(format!("{}: {e}", entry.config)))?,
    };
    check_platform(&archive.path, &config_digest, &config)?;
    if entry.layers.len() != config.rootfs.diff_ids.len() {
        return Err(bad(format!("{} layers but {} diff_ids in the config", entry.layers.len(), config.rootfs.diff_ids.len())));
    }
    let mut layers = Vec::with_capacity(entry.layers.len());
    for (name, diff_id) in entry.layers.iter().zip(&config.rootfs.diff_ids) {
        let (offset, len) = archive.member(name)?;
        let blob = BlobSource::Member { archive: archive.path.clone(), name: name.clone(), offset, len };
        // A digest in its name is checked like a manifest's would be.
        let digest = named_digest(name);
        layers.push(LayerRef { digest, diff_id: Digest::parse(diff_id)?, media_type: String::new(), size: len, blob });
    }
    // No manifest to name the image by: its config digest (Docker's image ID).
    Ok(Image { source, manifest_digest: config_digest.clone(), config_digest, config, layers })
}

/// The digest a member's name gives: `<hex>.json`, `<hex>.tar`,
/// `blobs/sha256/<hex>`; `None` for names like `<id>/layer.tar`.
fn named_digest(name: &str) -> Option<Digest> {
    let base = name.rsplit('/').next().unwrap_or(name);
    let hex = base.strip_suffix(".json").or_else(|| base.strip_suffix(".tar")).unwrap_or(base);
    let is_hex = hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase());
    if is_hex { Digest::parse(&format!("sha256:{hex}")).ok() } else { None }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn digests_come_from_names_that_carry_them() {
        let hex = "a".repeat(64);
        assert_eq!(named_digest(&format!("{hex}.json")).unwrap().hex(), hex);
        assert_eq!(named_digest(&format!("blobs/sha256/{hex}")).unwrap().hex(), hex);
        assert_eq!(named_digest(&format!("{hex}.tar")).unwrap().hex(), hex);
        assert!(named_digest(&format!("{hex}/layer.tar")).is_none());
        assert!(named_digest("config.json").is_none());
        assert!(named_digest(&format!("{}.json", "A".repeat(64))).is_none());
    }
}
