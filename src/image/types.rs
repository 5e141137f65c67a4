//! The image types: descriptors, manifests, indexes, image configs, and
//! an image resolved to one manifest for this platform (`Image`).
//!
//! They are our own small serde structs rather than oci-spec's:
//! Docker-produced layouts use media types and omit fields that the strict
//! types refuse, and `commit` must carry unknown fields over untouched (it
//! edits manifests and configs as `serde_json::Value`).

use std::collections::{BTreeMap, HashMap};
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::ImageError;
use super::digest::Digest;
use super::source::{BlobSource, Source, bad_layout};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
pub const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Platform {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    #[serde(default)]
    pub media_type: String,
    pub digest: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    pub fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize)]
pub(super) struct Index {
    #[serde(default)]
    pub(super) manifests: Vec<Descriptor>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Manifest {
    #[serde(default)]
    pub media_type: String,
    pub config: Descriptor,
    #[serde(default)]
    pub layers: Vec<Descriptor>,
}

/// The parts of the image config's `config` object that strata uses.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "PascalCase")]
pub struct ContainerConfig {
    #[serde(default)]
    pub user: Option<String>,
    #[serde(default)]
    pub env: Option<Vec<String>>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub cmd: Option<Vec<String>>,
    #[serde(default)]
    pub working_dir: Option<String>,
    #[serde(default)]
    pub labels: Option<HashMap<String, String>>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct RootFs {
    #[serde(default)]
    pub diff_ids: Vec<String>,
}

#[derive(Debug, Clone, Default, Deserialize)]
pub struct ImageConfig {
    #[serde(default)]
    pub architecture: String,
    #[serde(default)]
    pub os: String,
    #[serde(default)]
    pub config: Option<ContainerConfig>,
    #[serde(default)]
    pub rootfs: RootFs,
    #[serde(default)]
    pub history: Vec<serde_json::Value>,
}

/// One layer of a resolved image, bottom first.
#[derive(Debug, Clone)]
pub struct LayerRef {
    /// The blob's digest; `None` where the image does not give one (the
    /// layer tars of a docker-archive: their diff_id is checked).
    pub digest: Option<Digest>,
    pub diff_id: Digest,
    pub media_type: String,
    pub size: u64,
    /// Where its bytes are.
    pub blob: BlobSource,
}

impl LayerRef {
    /// What names the layer in messages: its digest, else its diff_id.
    pub fn label(&self) -> String {
        self.digest.as_ref().unwrap_or(&self.diff_id).to_string()
    }
}

/// A reference resolved to one manifest for this platform.
#[derive(Debug, Clone)]
pub struct Image {
    pub source: Source,
    pub manifest_digest: Digest,
    pub config_digest: Digest,
    pub config: ImageConfig,
    pub layers: Vec<LayerRef>,
}

/// The platform an image must be for to run here, as OCI names it.
pub fn host_platform() -> (&'static str, &'static str) {
    let arch = match std::env::consts::ARCH {
        "x86_64" => "amd64",
        "aarch64" => "arm64",
        "x86" => "386",
        "powerpc64" => "ppc64le",
        "loongarch64" => "loong64",
        other => other,
    };
    ("linux", arch)
}

/// An image for another OS or architecture is refused.
pub fn check_platform(layout: &Path, image: &Digest, config: &ImageConfig) -> Result<(), ImageError> {
    let (os, arch) = host_platform();
    if config.os != os || config.architecture != arch {
        return Err(bad_layout(layout, format!("image {image} is for {}/{}, this host runs {os}/{arch}", config.os, config.architecture)));
    }
    Ok(())
}

/// Checks that `data` hashes to `digest`, then parses it.
pub fn parse_verified<T: serde::de::DeserializeOwned>(data: &[u8], digest: &Digest) -> Result<T, ImageError> {
    let actual = Digest::of(data);
    if &actual != digest {
        return Err(ImageError::Mismatch {
            blob: digest.to_string(),
            what: "digest",
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    serde_json::from_slice(data).map_err(|e| ImageError::Blob { digest: digest.to_string(), msg: e.to_string() })
}
