//! Where an image is (the transports): an OCI layout directory (`oci:DIR`
//! or a plain `DIR`), an OCI layout in a tar file (`oci-archive:FILE`), or
//! `docker save` output (`docker-archive:FILE`), and where each blob's
//! bytes are in it (`BlobSource`). The small JSON files are read bounded.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::ImageError;
use super::archive::Archive;
use super::digest::Digest;

/// Manifests, indexes and configs are small; a bigger one is refused
/// rather than read into memory.
pub(super) const MAX_JSON_BLOB: u64 = 32 << 20;

/// Where an image comes from: an OCI layout directory, or an archive read
/// in place.
#[derive(Debug, Clone)]
pub enum Source {
    /// An OCI image layout directory (`oci:DIR`, or a plain `DIR`).
    Dir(PathBuf),
    /// An OCI image layout in a tar file (`oci-archive:FILE`).
    OciArchive(std::sync::Arc<Archive>),
    /// `docker save` / `podman save` output (`docker-archive:FILE`).
    DockerArchive(std::sync::Arc<Archive>),
}

/// Where a blob's bytes are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum BlobSource {
    /// A file of its own (`blobs/sha256/<hex>` in a layout directory).
    File(PathBuf),
    /// A member of an archive: `len` bytes from `offset`.
    Member { archive: PathBuf, name: String, offset: u64, len: u64 },
}

impl BlobSource {
    /// The blob's bytes, positioned at the first one, and their number.
    /// A blob file must be a regular file inside the layout (no symlink
    /// followed, no device or FIFO), so its length is known before a byte
    /// is read.
    pub fn open(&self) -> std::io::Result<(File, u64)> {
        match self {
            BlobSource::File(path) => {
                let f = super::guard::open_blob(path)?;
                let len = f.metadata()?.len();
                Ok((f, len))
            }
            BlobSource::Member { archive, offset, len, .. } => Ok((super::archive::open_range(archive, *offset)?, *len)),
        }
    }

    /// The most bytes to read: a blob file one past the size the manifest
    /// gives (to tell an overlong blob); an archive member, its own length
    /// (past it are the next member's bytes).
    pub fn read_limit(&self, size: Option<u64>) -> u64 {
        match self {
            BlobSource::File(_) => size.map_or(u64::MAX, |s| s.saturating_add(1)),
            BlobSource::Member { len, .. } => *len,
        }
    }

    /// For messages: the file, or `archive:member`.
    pub fn display(&self) -> PathBuf {
        match self {
            BlobSource::File(p) => p.clone(),
            BlobSource::Member { archive, name, .. } => PathBuf::from(format!("{}:{name}", archive.display())),
        }
    }
}

const OCI_ARCHIVE: &str = "oci-archive:";
const DOCKER_ARCHIVE: &str = "docker-archive:";
const OCI_DIR: &str = "oci:";

impl Source {
    /// Parses an image reference in the transport syntax of containers/image:
    /// `oci:DIR[:REF]`, `oci-archive:FILE[:REF]`,
    /// `docker-archive:FILE[:NAME:TAG]`, or a plain `DIR[:REF]`. Returns the
    /// source (an archive is indexed) and the reference in it.
    pub fn open(image: &str) -> Result<(Source, Option<String>), ImageError> {
        if let Some(rest) = image.strip_prefix(DOCKER_ARCHIVE) {
            // The file comes first; a docker reference may hold colons.
            let (file, reference) = match rest.split_once(':') {
                Some((f, r)) if !r.is_empty() => (f, Some(r.to_string())),
                _ => (rest.trim_end_matches(':'), None),
            };
            let archive = Archive::index(&std::path::absolute(file).map_err(io_err("absolute", Path::new(file)))?)?;
            return Ok((Source::DockerArchive(std::sync::Arc::new(archive)), reference));
        }
        if let Some(rest) = image.strip_prefix(OCI_ARCHIVE) {
            let (file, reference) = split_ref(rest);
            let archive = Archive::index(&std::path::absolute(file).map_err(io_err("absolute", Path::new(file)))?)?;
            return Ok((Source::OciArchive(std::sync::Arc::new(archive)), reference.map(String::from)));
        }
        let (dir, reference) = split_ref(image.strip_prefix(OCI_DIR).unwrap_or(image));
        let dir = std::path::absolute(dir).map_err(io_err("absolute", Path::new(dir)))?;
        Ok((Source::Dir(dir), reference.map(String::from)))
    }

    /// The source as `open` reads it back (what bundles and the store
    /// record): the directory, or the transport and the archive's path.
    pub fn name(&self) -> String {
        match self {
            Source::Dir(d) => d.display().to_string(),
            Source::OciArchive(a) => format!("{OCI_ARCHIVE}{}", a.path.display()),
            Source::DockerArchive(a) => format!("{DOCKER_ARCHIVE}{}", a.path.display()),
        }
    }

    /// The layout directory, for `commit` (which writes into one).
    pub fn dir(&self) -> Option<&Path> {
        match self {
            Source::Dir(d) => Some(d),
            _ => None,
        }
    }

    /// A small file of the layout (`index.json`, a JSON blob), bounded.
    pub(super) fn read(&self, rel: &str) -> Result<Vec<u8>, ImageError> {
        match self {
            Source::Dir(d) => read_limited(&d.join(rel)),
            Source::OciArchive(a) | Source::DockerArchive(a) => a.read(rel, MAX_JSON_BLOB),
        }
    }

    pub(super) fn blob(&self, digest: &Digest) -> Result<BlobSource, ImageError> {
        match self {
            Source::Dir(d) => Ok(BlobSource::File(blob_path(d, digest))),
            Source::OciArchive(a) | Source::DockerArchive(a) => {
                let name = format!("blobs/sha256/{}", digest.hex());
                let (offset, len) = a.member(&name)?;
                Ok(BlobSource::Member { archive: a.path.clone(), name, offset, len })
            }
        }
    }

    pub(super) fn label(&self) -> PathBuf {
        PathBuf::from(self.name())
    }
}

/// `LOCATION:REF` or `LOCATION:sha256:HEX` or `LOCATION`.
pub fn split_ref(s: &str) -> (&str, Option<&str>) {
    if let Some(i) = s.find(":sha256:") {
        return (&s[..i], Some(&s[i + 1..]));
    }
    match s.rsplit_once(':') {
        Some((l, r)) if !(r.contains('/') || l.is_empty() || r.is_empty()) => (l, Some(r)),
        _ => (s, None),
    }
}

pub fn blob_path(layout: &Path, digest: &Digest) -> PathBuf {
    layout.join("blobs/sha256").join(digest.hex())
}

pub(super) fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> ImageError + 'a {
    move |source| ImageError::Io { op, path: path.to_path_buf(), source }
}

pub(super) fn bad_layout(layout: &Path, msg: impl Into<String>) -> ImageError {
    ImageError::Layout { layout: layout.to_path_buf(), msg: msg.into() }
}

pub(super) fn read_limited(path: &Path) -> Result<Vec<u8>, ImageError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut data = Vec::new();
    file.take(MAX_JSON_BLOB + 1).read_to_end(&mut data).map_err(io_err("read", path))?;
    if data.len() as u64 > MAX_JSON_BLOB {
        return Err(ImageError::Parse { path: path.to_path_buf(), msg: format!("larger than {MAX_JSON_BLOB} bytes") });
    }
    Ok(data)
}

pub(super) fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, data: &[u8]) -> Result<T, ImageError> {
    serde_json::from_slice(data).map_err(|e| ImageError::Parse { path: path.to_path_buf(), msg: e.to_string() })
}
