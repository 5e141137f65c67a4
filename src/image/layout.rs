//! The OCI image layout (`oci-layout`, `index.json`, `blobs/sha256/<hex>`),
//! as umoci, skopeo or `podman save --format oci-dir` write it, in a
//! directory or a tar file: resolving a reference to one manifest for this
//! platform, and parsing it and its image config.

use std::path::Path;

use super::ImageError;
use super::digest::Digest;
use super::source::{Source, bad_layout, io_err, parse_json};
use super::types::{
    Descriptor, Image, ImageConfig, Index, LayerRef, MT_DOCKER_LIST, MT_DOCKER_MANIFEST, MT_INDEX, MT_MANIFEST, Manifest, check_platform,
    host_platform, parse_verified,
};

/// Resolves `reference` (a ref name annotation or a manifest digest; `None`
/// takes the only manifest) in the layout at `layout`.
pub fn resolve(layout: &Path, reference: Option<&str>) -> Result<Image, ImageError> {
    let layout = std::path::absolute(layout).map_err(io_err("absolute", layout))?;
    resolve_oci(Source::Dir(layout), reference)
}

/// Resolves `reference` in an OCI layout, a directory or an archive.
pub fn resolve_oci(source: Source, reference: Option<&str>) -> Result<Image, ImageError> {
    let layout = source.label();
    check_layout_file(&source)?;
    let index: Index = parse_json(&layout.join("index.json"), &source.read("index.json")?)?;
    let top = pick_ref(&layout, &index.manifests, reference)?;
    let (manifest_digest, manifest) = descend(&source, top, 0)?;
    let config_digest = Digest::parse(&manifest.config.digest)?;
    let config: ImageConfig = parse_blob(&source, &config_digest)?;
    check_platform(&layout, &manifest_digest, &config)?;
    let layers = layer_refs(&source, &manifest, &config, &manifest_digest)?;
    Ok(Image { source, manifest_digest, config_digest, config, layers })
}

fn from_value<T: serde::de::DeserializeOwned>(digest: &Digest, v: serde_json::Value) -> Result<T, ImageError> {
    serde_json::from_value(v).map_err(|e| ImageError::Blob { digest: digest.to_string(), msg: e.to_string() })
}

fn check_layout_file(source: &Source) -> Result<(), ImageError> {
    let path = source.label().join("oci-layout");
    let v: serde_json::Value = parse_json(&path, &source.read("oci-layout")?)?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(ver) if ver.starts_with("1.") => Ok(()),
        other => Err(bad_layout(&source.label(), format!("oci-layout: unsupported imageLayoutVersion {other:?}"))),
    }
}

fn pick_ref<'a>(layout: &Path, manifests: &'a [Descriptor], reference: Option<&str>) -> Result<&'a Descriptor, ImageError> {
    let names: Vec<&str> = manifests.iter().filter_map(Descriptor::ref_name).collect();
    match reference {
        Some(r) => manifests
            .iter()
            .find(|d| d.ref_name() == Some(r) || d.digest == r)
            .ok_or_else(|| bad_layout(layout, format!("no image with ref {r:?} (refs present: {})", names.join(", ")))),
        None if manifests.len() == 1 => Ok(&manifests[0]),
        None => {
            Err(bad_layout(layout, format!("{} manifests in index.json, give a ref (refs present: {})", manifests.len(), names.join(", "))))
        }
    }
}

/// Follows nested indexes (manifest lists) down to the manifest for this
/// platform.
fn descend(layout: &Source, desc: &Descriptor, depth: u32) -> Result<(Digest, Manifest), ImageError> {
    let digest = Digest::parse(&desc.digest)?;
    if depth > 4 {
        return Err(ImageError::Blob { digest: digest.to_string(), msg: "indexes nested too deep".into() });
    }
    let value: serde_json::Value = parse_blob(layout, &digest)?;
    let media = match desc.media_type.as_str() {
        "" => value.get("mediaType").and_then(|m| m.as_str()).unwrap_or_default().to_string(),
        m => m.to_string(),
    };
    let is_index = media == MT_INDEX || media == MT_DOCKER_LIST || (media.is_empty() && value.get("manifests").is_some());
    if is_index {
        let index: Index = from_value(&digest, value)?;
        let (os, arch) = host_platform();
        let found = index.manifests.iter().find(|d| d.platform.as_ref().is_some_and(|p| p.os == os && p.architecture == arch));
        let Some(next) = found else {
            let have: Vec<String> = index
                .manifests
                .iter()
                .map(|d| d.platform.as_ref().map_or("unknown".into(), |p| format!("{}/{}", p.os, p.architecture)))
                .collect();
            return Err(ImageError::Blob {
                digest: digest.to_string(),
                msg: format!("no manifest for {os}/{arch} in index (has: {})", have.join(", ")),
            });
        };
        return descend(layout, next, depth + 1);
    }
    if !(media == MT_MANIFEST || media == MT_DOCKER_MANIFEST || media.is_empty()) {
        return Err(ImageError::Blob { digest: digest.to_string(), msg: format!("unsupported manifest media type {media:?}") });
    }
    Ok((digest.clone(), from_value(&digest, value)?))
}

fn layer_refs(source: &Source, manifest: &Manifest, config: &ImageConfig, manifest_digest: &Digest) -> Result<Vec<LayerRef>, ImageError> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(ImageError::Blob {
            digest: manifest_digest.to_string(),
            msg: format!("{} layers but {} diff_ids in the config", manifest.layers.len(), config.rootfs.diff_ids.len()),
        });
    }
    manifest
        .layers
        .iter()
        .zip(&config.rootfs.diff_ids)
        .map(|(l, d)| {
            let digest = Digest::parse(&l.digest)?;
            check_layer_media_type(&digest, &l.media_type)?;
            let blob = source.blob(&digest)?;
            Ok(LayerRef { digest: Some(digest), diff_id: Digest::parse(d)?, media_type: l.media_type.clone(), size: l.size, blob })
        })
        .collect()
}

/// Layer media types strata unpacks: OCI and Docker tar layers, plain,
/// gzip or zstd (an empty type: told by the bytes). Non-distributable and
/// foreign layers live outside the image (strata fetches nothing), and
/// other types are not layers it knows: both are refused by name.
fn check_layer_media_type(digest: &Digest, media_type: &str) -> Result<(), ImageError> {
    const KNOWN: [&str; 6] = [
        "",
        "application/vnd.oci.image.layer.v1.tar",
        "application/vnd.oci.image.layer.v1.tar+gzip",
        "application/vnd.oci.image.layer.v1.tar+zstd",
        "application/vnd.docker.image.rootfs.diff.tar.gzip",
        "application/vnd.docker.image.rootfs.diff.tar",
    ];
    if KNOWN.contains(&media_type) {
        return Ok(());
    }
    let msg = if media_type.contains("nondistributable") || media_type.contains("foreign") {
        format!("a non-distributable (foreign) layer ({media_type}): its blob is not part of the image, and strata fetches nothing")
    } else {
        format!("unsupported layer media type {media_type:?}")
    };
    Err(ImageError::Blob { digest: digest.to_string(), msg })
}

/// Reads a JSON blob of the layout directory `layout`, checks its digest,
/// parses it.
pub fn parse_json_blob<T: serde::de::DeserializeOwned>(layout: &Path, digest: &Digest) -> Result<T, ImageError> {
    parse_blob(&Source::Dir(layout.to_path_buf()), digest)
}

/// Reads a JSON blob of `source`, checks its digest, parses it.
fn parse_blob<T: serde::de::DeserializeOwned>(source: &Source, digest: &Digest) -> Result<T, ImageError> {
    let data = source.read(&format!("blobs/sha256/{}", digest.hex()))?;
    parse_verified(&data, digest)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::image::source::{blob_path, split_ref};
    use crate::image::types::{MT_CONFIG, MT_MANIFEST, REF_NAME};
    use crate::image::write::{set_ref, write_blob};
    use std::path::PathBuf;

    /// A throwaway layout under the temp dir, removed on drop.
    pub(crate) struct TestLayout(pub PathBuf);

    impl Drop for TestLayout {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl TestLayout {
        pub fn new(tag: &str) -> TestLayout {
            let dir = std::env::temp_dir().join(format!("strata-layout-{tag}-{}", crate::image::unique_name()));
            std::fs::create_dir_all(dir.join("blobs/sha256")).unwrap();
            std::fs::write(dir.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#).unwrap();
            TestLayout(dir)
        }

        pub fn blob(&self, v: &serde_json::Value) -> Descriptor {
            let data = serde_json::to_vec(v).unwrap();
            let (d, n) = write_blob(&self.0, &data).unwrap();
            Descriptor { media_type: String::new(), digest: d.to_string(), size: n, annotations: None, platform: None }
        }

        pub fn index(&self, manifests: Vec<serde_json::Value>) {
            let v = serde_json::json!({"schemaVersion": 2, "manifests": manifests});
            std::fs::write(self.0.join("index.json"), serde_json::to_vec(&v).unwrap()).unwrap();
        }

        /// A manifest with no layers whose config is for `os`/`arch`.
        pub fn manifest(&self, os: &str, arch: &str) -> Descriptor {
            let config = self.blob(&serde_json::json!({"os": os, "architecture": arch, "rootfs": {"type": "layers", "diff_ids": []}}));
            // A unique annotation so that two calls give two manifests.
            let m = serde_json::json!({"schemaVersion": 2, "mediaType": MT_MANIFEST,
                "config": {"mediaType": MT_CONFIG, "digest": config.digest, "size": config.size}, "layers": [],
                "annotations": {"test.salt": crate::image::unique_name()}});
            let mut d = self.blob(&m);
            d.media_type = MT_MANIFEST.into();
            d
        }
    }

    fn entry(d: &Descriptor, name: Option<&str>) -> serde_json::Value {
        let mut v = serde_json::to_value(d).unwrap();
        if let Some(n) = name {
            v["annotations"] = serde_json::json!({ REF_NAME: n });
        }
        v
    }

    #[test]
    fn single_manifest_needs_no_ref() {
        let l = TestLayout::new("single");
        let (os, arch) = host_platform();
        let m = l.manifest(os, arch);
        l.index(vec![entry(&m, Some("latest"))]);
        assert_eq!(resolve(&l.0, None).unwrap().manifest_digest.as_str(), m.digest);
        assert_eq!(resolve(&l.0, Some("latest")).unwrap().manifest_digest.as_str(), m.digest);
        assert_eq!(resolve(&l.0, Some(&m.digest)).unwrap().manifest_digest.as_str(), m.digest);
        let err = resolve(&l.0, Some("nope")).unwrap_err().to_string();
        assert!(err.contains("\"nope\"") && err.contains("latest"), "{err}");
    }

    #[test]
    fn several_manifests_need_a_ref() {
        let l = TestLayout::new("several");
        let (os, arch) = host_platform();
        let (a, b) = (l.manifest(os, arch), l.manifest(os, "riscv-like"));
        l.index(vec![entry(&a, Some("a")), entry(&b, Some("b"))]);
        assert!(resolve(&l.0, None).unwrap_err().to_string().contains("give a ref"));
        let err = resolve(&l.0, Some("b")).unwrap_err().to_string();
        assert!(err.contains("is for linux/riscv-like"), "{err}");
    }

    #[test]
    fn nested_index_picks_this_platform() {
        let l = TestLayout::new("nested");
        let (os, arch) = host_platform();
        let (mine, other) = (l.manifest(os, arch), l.manifest(os, "s390x"));
        let plat = |a: &str| serde_json::json!({"os": os, "architecture": a});
        let mut e_other = entry(&other, None);
        e_other["platform"] = plat("s390x");
        let mut e_mine = entry(&mine, None);
        e_mine["platform"] = plat(arch);
        let mut list = l.blob(&serde_json::json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [e_other.clone(), e_mine]}));
        list.media_type = MT_INDEX.into();
        l.index(vec![entry(&list, Some("multi"))]);
        assert_eq!(resolve(&l.0, Some("multi")).unwrap().manifest_digest.as_str(), mine.digest);

        let mut only_other = l.blob(&serde_json::json!({"schemaVersion": 2, "mediaType": MT_INDEX, "manifests": [e_other]}));
        only_other.media_type = MT_INDEX.into();
        l.index(vec![entry(&only_other, Some("x"))]);
        let err = resolve(&l.0, Some("x")).unwrap_err().to_string();
        assert!(err.contains("no manifest for linux/") && err.contains("s390x"), "{err}");
    }

    #[test]
    fn hostile_descriptors_are_refused() {
        let l = TestLayout::new("hostile");
        l.index(vec![serde_json::json!({"mediaType": MT_MANIFEST, "digest": "sha256:../../../etc/passwd", "size": 1})]);
        assert!(matches!(resolve(&l.0, None), Err(ImageError::BadDigest(_))));
        // A blob whose content does not match its name.
        let (os, arch) = host_platform();
        let m = l.manifest(os, arch);
        let path = blob_path(&l.0, &Digest::parse(&m.digest).unwrap());
        std::fs::write(&path, b"{\"layers\":[]}").unwrap();
        l.index(vec![entry(&m, None)]);
        assert!(matches!(resolve(&l.0, None), Err(ImageError::Mismatch { .. })));
        std::fs::remove_file(l.0.join("oci-layout")).unwrap();
        assert!(resolve(&l.0, None).unwrap_err().to_string().contains("oci-layout"));
    }

    #[test]
    fn references_in_transport_syntax() {
        assert_eq!(split_ref("/img:latest"), ("/img", Some("latest")));
        assert_eq!(split_ref("/img"), ("/img", None));
        assert_eq!(split_ref("/img:sha256:abc"), ("/img", Some("sha256:abc")));
        assert_eq!(split_ref("./a:b/c"), ("./a:b/c", None));
        let l = TestLayout::new("transport");
        for form in [format!("{}:v1", l.0.display()), format!("oci:{}:v1", l.0.display())] {
            let (src, r) = Source::open(&form).unwrap();
            assert_eq!((src.dir(), r.as_deref()), (Some(l.0.as_path()), Some("v1")));
        }
        // An archive that is not there is an error naming it.
        let e = Source::open("oci-archive:/nonexistent/x.tar:v1").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/x.tar"), "{e}");
        let e = Source::open("docker-archive:/nonexistent/y.tar:localhost/a:b").unwrap_err().to_string();
        assert!(e.contains("/nonexistent/y.tar"), "{e}");
    }

    #[test]
    fn set_ref_replaces_the_same_name() {
        let l = TestLayout::new("setref");
        let (os, arch) = host_platform();
        let (a, b) = (l.manifest(os, arch), l.manifest(os, arch));
        l.index(vec![entry(&a, Some("v1")), entry(&a, Some("keep"))]);
        set_ref(&l.0, b.clone(), "v1").unwrap();
        let img = resolve(&l.0, Some("v1")).unwrap();
        assert_eq!(img.manifest_digest.as_str(), b.digest);
        assert_eq!(resolve(&l.0, Some("keep")).unwrap().manifest_digest.as_str(), a.digest);
    }
}
