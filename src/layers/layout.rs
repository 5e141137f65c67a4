//! The OCI image layout on disk (`oci-layout`, `index.json`,
//! `blobs/sha256/<hex>`), as written by umoci, skopeo or
//! `podman save --format oci-dir`: resolving a reference to one manifest for
//! this platform, parsing it and its image config, and (for `strata commit`)
//! adding blobs and a new reference atomically.
//!
//! The image types are our own small serde structs rather than oci-spec's:
//! Docker-produced layouts use media types and omit fields that the strict
//! types refuse, and `commit` must carry unknown fields over untouched (it
//! edits manifests and configs as `serde_json::Value`).

use std::collections::{BTreeMap, HashMap};
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::{Path, PathBuf};

use nix::fcntl::{Flock, FlockArg};
use serde::{Deserialize, Serialize};

use super::LayerError;
use super::archive::Archive;
use super::digest::{Digest, HashWriter};

pub const REF_NAME: &str = "org.opencontainers.image.ref.name";
pub const MT_INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const MT_MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const MT_CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const MT_LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
const MT_DOCKER_LIST: &str = "application/vnd.docker.distribution.manifest.list.v2+json";
const MT_DOCKER_MANIFEST: &str = "application/vnd.docker.distribution.manifest.v2+json";

/// Manifests, indexes and configs are small; a bigger one is refused
/// rather than read into memory.
const MAX_JSON_BLOB: u64 = 32 << 20;

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
    fn ref_name(&self) -> Option<&str> {
        self.annotations.as_ref()?.get(REF_NAME).map(String::as_str)
    }
}

#[derive(Debug, Clone, Deserialize)]
struct Index {
    #[serde(default)]
    manifests: Vec<Descriptor>,
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
    pub fn open(image: &str) -> Result<(Source, Option<String>), LayerError> {
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
    fn read(&self, rel: &str) -> Result<Vec<u8>, LayerError> {
        match self {
            Source::Dir(d) => read_limited(&d.join(rel)),
            Source::OciArchive(a) | Source::DockerArchive(a) => a.read(rel, MAX_JSON_BLOB),
        }
    }

    fn blob(&self, digest: &Digest) -> Result<BlobSource, LayerError> {
        match self {
            Source::Dir(d) => Ok(BlobSource::File(blob_path(d, digest))),
            Source::OciArchive(a) | Source::DockerArchive(a) => {
                let name = format!("blobs/sha256/{}", digest.hex());
                let (offset, len) = a.member(&name)?;
                Ok(BlobSource::Member { archive: a.path.clone(), name, offset, len })
            }
        }
    }

    fn label(&self) -> PathBuf {
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

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LayerError + 'a {
    move |source| LayerError::Io { op, path: path.to_path_buf(), source }
}

fn bad_layout(layout: &Path, msg: impl Into<String>) -> LayerError {
    LayerError::Layout { layout: layout.to_path_buf(), msg: msg.into() }
}

/// Resolves `reference` (a ref name annotation or a manifest digest; `None`
/// takes the only manifest) in the layout at `layout`.
pub fn resolve(layout: &Path, reference: Option<&str>) -> Result<Image, LayerError> {
    let layout = std::path::absolute(layout).map_err(io_err("absolute", layout))?;
    resolve_in(Source::Dir(layout), reference)
}

/// Resolves `reference` in `source`: for a docker-archive, a `NAME:TAG` of
/// its RepoTags (`None`: its only image).
pub fn resolve_in(source: Source, reference: Option<&str>) -> Result<Image, LayerError> {
    if let Source::DockerArchive(a) = &source {
        let a = a.clone();
        return super::docker_archive::resolve(source, &a, reference);
    }
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

/// An image for another OS or architecture is refused.
pub fn check_platform(layout: &Path, image: &Digest, config: &ImageConfig) -> Result<(), LayerError> {
    let (os, arch) = host_platform();
    if config.os != os || config.architecture != arch {
        return Err(bad_layout(layout, format!("image {image} is for {}/{}, this host runs {os}/{arch}", config.os, config.architecture)));
    }
    Ok(())
}

fn check_layout_file(source: &Source) -> Result<(), LayerError> {
    let path = source.label().join("oci-layout");
    let v: serde_json::Value = parse_json(&path, &source.read("oci-layout")?)?;
    match v.get("imageLayoutVersion").and_then(|v| v.as_str()) {
        Some(ver) if ver.starts_with("1.") => Ok(()),
        other => Err(bad_layout(&source.label(), format!("oci-layout: unsupported imageLayoutVersion {other:?}"))),
    }
}

fn pick_ref<'a>(layout: &Path, manifests: &'a [Descriptor], reference: Option<&str>) -> Result<&'a Descriptor, LayerError> {
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
fn descend(layout: &Source, desc: &Descriptor, depth: u32) -> Result<(Digest, Manifest), LayerError> {
    let digest = Digest::parse(&desc.digest)?;
    if depth > 4 {
        return Err(LayerError::Blob { digest: digest.to_string(), msg: "indexes nested too deep".into() });
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
            return Err(LayerError::Blob {
                digest: digest.to_string(),
                msg: format!("no manifest for {os}/{arch} in index (has: {})", have.join(", ")),
            });
        };
        return descend(layout, next, depth + 1);
    }
    if !(media == MT_MANIFEST || media == MT_DOCKER_MANIFEST || media.is_empty()) {
        return Err(LayerError::Blob { digest: digest.to_string(), msg: format!("unsupported manifest media type {media:?}") });
    }
    Ok((digest.clone(), from_value(&digest, value)?))
}

fn layer_refs(source: &Source, manifest: &Manifest, config: &ImageConfig, manifest_digest: &Digest) -> Result<Vec<LayerRef>, LayerError> {
    if manifest.layers.len() != config.rootfs.diff_ids.len() {
        return Err(LayerError::Blob {
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
fn check_layer_media_type(digest: &Digest, media_type: &str) -> Result<(), LayerError> {
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
    Err(LayerError::Blob { digest: digest.to_string(), msg })
}

fn read_limited(path: &Path) -> Result<Vec<u8>, LayerError> {
    let file = File::open(path).map_err(io_err("open", path))?;
    let mut data = Vec::new();
    file.take(MAX_JSON_BLOB + 1).read_to_end(&mut data).map_err(io_err("read", path))?;
    if data.len() as u64 > MAX_JSON_BLOB {
        return Err(LayerError::Parse { path: path.to_path_buf(), msg: format!("larger than {MAX_JSON_BLOB} bytes") });
    }
    Ok(data)
}

fn parse_json<T: serde::de::DeserializeOwned>(path: &Path, data: &[u8]) -> Result<T, LayerError> {
    serde_json::from_slice(data).map_err(|e| LayerError::Parse { path: path.to_path_buf(), msg: e.to_string() })
}

fn from_value<T: serde::de::DeserializeOwned>(digest: &Digest, v: serde_json::Value) -> Result<T, LayerError> {
    serde_json::from_value(v).map_err(|e| LayerError::Blob { digest: digest.to_string(), msg: e.to_string() })
}

/// Reads a JSON blob of the layout directory `layout`, checks its digest,
/// parses it.
pub fn parse_json_blob<T: serde::de::DeserializeOwned>(layout: &Path, digest: &Digest) -> Result<T, LayerError> {
    parse_blob(&Source::Dir(layout.to_path_buf()), digest)
}

/// Reads a JSON blob of `source`, checks its digest, parses it.
fn parse_blob<T: serde::de::DeserializeOwned>(source: &Source, digest: &Digest) -> Result<T, LayerError> {
    let data = source.read(&format!("blobs/sha256/{}", digest.hex()))?;
    parse_verified(&data, digest)
}

/// Checks that `data` hashes to `digest`, then parses it.
pub fn parse_verified<T: serde::de::DeserializeOwned>(data: &[u8], digest: &Digest) -> Result<T, LayerError> {
    let actual = Digest::of(data);
    if &actual != digest {
        return Err(LayerError::Mismatch {
            blob: digest.to_string(),
            what: "digest",
            expected: digest.to_string(),
            actual: actual.to_string(),
        });
    }
    serde_json::from_slice(data).map_err(|e| LayerError::Blob { digest: digest.to_string(), msg: e.to_string() })
}

/// Writes a blob by streaming it through `fill`, and names it by its digest
/// in `blobs/sha256/` only once it is complete and synced. Returns what
/// `fill` returned, the digest and the size.
///
/// The bytes go to an unnamed file (O_TMPFILE) in that directory, linked in
/// at the end: a writer killed at any moment leaves nothing behind, not even
/// a temp file. Filesystems without O_TMPFILE get a named temp file and a
/// rename (a kill there leaves a `.tmp-*` file, never a partial blob).
pub fn write_blob_with<T>(
    layout: &Path,
    fill: impl FnOnce(&mut HashWriter<std::io::BufWriter<File>>) -> Result<T, LayerError>,
) -> Result<(T, Digest, u64), LayerError> {
    use std::os::unix::fs::OpenOptionsExt;
    let dir = layout.join("blobs/sha256");
    std::fs::create_dir_all(&dir).map_err(io_err("mkdir", &dir))?;
    let unnamed = std::fs::OpenOptions::new().write(true).mode(0o644).custom_flags(libc::O_TMPFILE).open(&dir);
    let (file, tmp) = match unnamed {
        Ok(f) => (f, None),
        Err(e) if matches!(e.raw_os_error(), Some(libc::EOPNOTSUPP | libc::EISDIR | libc::EINVAL)) => {
            let tmp = dir.join(format!(".tmp-{}", super::unique_name()));
            (File::create_new(&tmp).map_err(io_err("create", &tmp))?, Some(tmp))
        }
        Err(e) => return Err(io_err("open O_TMPFILE", &dir)(e)),
    };
    let result = (|| {
        let mut w = HashWriter::new(std::io::BufWriter::with_capacity(1 << 20, file));
        let out = fill(&mut w)?;
        w.flush().map_err(io_err("write", &dir))?;
        let (buf, digest, size) = w.finish();
        let file = buf.into_inner().map_err(|e| io_err("write", &dir)(e.into_error()))?;
        // Synced before it has a name: index.json, written after, never
        // names a blob whose bytes a crash of the machine could lose.
        file.sync_all().map_err(io_err("fsync", &dir))?;
        let dest = dir.join(digest.hex());
        match &tmp {
            Some(tmp) => std::fs::rename(tmp, &dest).map_err(io_err("rename", tmp))?,
            None => {
                let fd_path = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&file));
                match nix::unistd::linkat(
                    nix::fcntl::AT_FDCWD,
                    fd_path.as_str(),
                    nix::fcntl::AT_FDCWD,
                    &dest,
                    nix::fcntl::AtFlags::AT_SYMLINK_FOLLOW,
                ) {
                    // Same digest, same bytes: a blob someone else wrote.
                    Ok(()) | Err(nix::errno::Errno::EEXIST) => {}
                    Err(e) => return Err(LayerError::Sys(crate::sys::err("linkat", dest.display(), "AT_SYMLINK_FOLLOW")(e))),
                }
            }
        }
        Ok((out, digest, size))
    })();
    if let (Err(_), Some(tmp)) = (&result, &tmp) {
        let _ = std::fs::remove_file(tmp);
    }
    result
}

pub fn write_blob(layout: &Path, data: &[u8]) -> Result<(Digest, u64), LayerError> {
    let path = layout.join("blobs/sha256");
    let ((), d, n) = write_blob_with(layout, |w| w.write_all(data).map_err(io_err("write", &path)))?;
    Ok((d, n))
}

/// Adds `desc` to index.json under `reference`, replacing any manifest that
/// had that ref. Serialised against other writers by a lock on the layout
/// directory; written to a temp file and renamed.
pub fn set_ref(layout: &Path, mut desc: Descriptor, reference: &str) -> Result<(), LayerError> {
    let dir = File::open(layout).map_err(io_err("open", layout))?;
    let _lock = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| LayerError::Sys(crate::sys::err("flock", layout.display(), "LOCK_EX")(e)))?;
    let index_path = layout.join("index.json");
    // Only a holder of this lock writes index.json's temp files: any there
    // now were left by a writer that was killed.
    for e in std::fs::read_dir(layout).into_iter().flatten().flatten() {
        if e.file_name().to_string_lossy().starts_with(".index.json.tmp-") {
            let _ = std::fs::remove_file(e.path());
        }
    }
    let mut index: serde_json::Value = parse_json(&index_path, &read_limited(&index_path)?)?;
    let manifests =
        index.get_mut("manifests").and_then(|m| m.as_array_mut()).ok_or_else(|| bad_layout(layout, "index.json has no manifests array"))?;
    manifests.retain(|m| m.pointer("/annotations/org.opencontainers.image.ref.name").and_then(|v| v.as_str()) != Some(reference));
    desc.annotations.get_or_insert_with(BTreeMap::new).insert(REF_NAME.into(), reference.into());
    manifests.push(serde_json::to_value(&desc).expect("descriptor serializes"));
    let data = serde_json::to_vec(&index).expect("json value serializes");
    write_atomic(&index_path, &data)
}

/// Makes `layout` an empty image layout (`oci-layout`, an `index.json` with
/// no manifests) when it does not exist yet or is an empty directory, as
/// `skopeo copy ... oci:DIR` does for a new DIR. Anything else is left
/// alone: a directory that holds other files is not taken over.
pub fn init_if_missing(layout: &Path) -> Result<(), LayerError> {
    match std::fs::create_dir(layout) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
            if std::fs::read_dir(layout).map_err(io_err("readdir", layout))?.next().is_some() {
                return Ok(());
            }
        }
        Err(e) => return Err(io_err("mkdir", layout)(e)),
    }
    write_atomic(&layout.join("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#)?;
    write_atomic(&layout.join("index.json"), br#"{"schemaVersion":2,"manifests":[]}"#)
}

/// Writes `path` through a temp file in the same directory and a rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), LayerError> {
    let tmp = path.with_file_name(format!(".{}.tmp-{}", path.file_name().unwrap_or_default().to_string_lossy(), super::unique_name()));
    let result = (|| {
        let mut f = File::create_new(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        nix::unistd::fsync(f.as_fd()).map_err(|e| LayerError::Sys(crate::sys::err("fsync", tmp.display(), "")(e)))?;
        std::fs::rename(&tmp, path).map_err(io_err("rename", &tmp))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A throwaway layout under the temp dir, removed on drop.
    pub(crate) struct TestLayout(pub PathBuf);

    impl Drop for TestLayout {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(&self.0);
        }
    }

    impl TestLayout {
        pub fn new(tag: &str) -> TestLayout {
            let dir = std::env::temp_dir().join(format!("strata-layout-{tag}-{}", super::super::unique_name()));
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
                "annotations": {"test.salt": super::super::unique_name()}});
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
        assert!(matches!(resolve(&l.0, None), Err(LayerError::BadDigest(_))));
        // A blob whose content does not match its name.
        let (os, arch) = host_platform();
        let m = l.manifest(os, arch);
        let path = blob_path(&l.0, &Digest::parse(&m.digest).unwrap());
        std::fs::write(&path, b"{\"layers\":[]}").unwrap();
        l.index(vec![entry(&m, None)]);
        assert!(matches!(resolve(&l.0, None), Err(LayerError::Mismatch { .. })));
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
