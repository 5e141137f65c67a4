//! Images as users have them, read (and, for `strata commit`, written) in
//! place: an OCI layout directory (`oci:DIR`, or a plain `DIR`), an OCI
//! layout in a tar file (`oci-archive:FILE`), and `docker save` output
//! (`docker-archive:FILE`).
//!
//! The interface is containers/image's `ImageSource`, cut down to what a
//! runtime needs: `Source::open` takes a reference in the transport syntax,
//! `resolve` gives the manifest for this platform and its config (`Image`),
//! and each layer's bytes are a `BlobSource`: a bounded stream whose digest
//! the reader checks (`digest::HashReader`).
//!
//! Files, one job each: `source` (the transports: where an image and its
//! blobs are), `types` (descriptors, manifests, configs, `Image`), `layout`
//! (resolving in an OCI layout, directory or archive), `docker_archive`
//! (resolving in `docker save` output), `archive` (a tar file indexed in
//! place, for both archive transports), `write` (blobs and references
//! added to a layout directory, for `commit`), `digest` (content
//! addresses, chain ids), `guard` (the bounds on untrusted input: blob
//! files, tar headers, tar paths).
//!
//! May use: `sys` (syscall errors). Never the layer store (`layers`), which
//! reads images through this module only, nor `process`, `linux`, `cgroups`
//! or the CLI.

pub mod archive;
pub mod digest;
pub mod docker_archive;
pub mod guard;
pub mod layout;
pub mod source;
pub mod types;
pub mod write;

use std::path::PathBuf;

pub use digest::Digest;
pub use source::{BlobSource, Source};
pub use types::Image;

use crate::sys::SysError;

#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error(transparent)]
    Sys(#[from] SysError),
    #[error("parse {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("image layout {layout}: {msg}")]
    Layout { layout: PathBuf, msg: String },
    #[error("blob {digest}: {msg}")]
    Blob { digest: String, msg: String },
    #[error("invalid digest {0:?}: only sha256:<64 hex> is accepted")]
    BadDigest(String),
    #[error("blob {blob}: {what} mismatch: expected {expected}, got {actual}")]
    Mismatch { blob: String, what: &'static str, expected: String, actual: String },
}

pub type Result<T> = std::result::Result<T, ImageError>;

/// Resolves `reference` in `source` to the image for this platform: in an
/// OCI layout, a ref name or a manifest digest; in a docker-archive, a
/// `NAME:TAG` of its RepoTags or the config's digest (`None`: its only
/// image).
pub fn resolve(source: Source, reference: Option<&str>) -> Result<Image> {
    match &source {
        Source::DockerArchive(a) => {
            let a = a.clone();
            docker_archive::resolve(source, &a, reference)
        }
        Source::Dir(_) | Source::OciArchive(_) => layout::resolve_oci(source, reference),
    }
}

/// A name for temp files and dirs that no other process or thread picks.
pub(crate) fn unique_name() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{nanos:x}-{}", std::process::id(), COUNTER.fetch_add(1, Ordering::Relaxed))
}
