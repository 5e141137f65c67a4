//! Adding to an OCI layout directory, for `strata commit`: blobs, written
//! whole before they have a name, and references, added to `index.json`
//! under a lock and renamed into place.

use std::collections::BTreeMap;
use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::path::Path;

use nix::fcntl::{Flock, FlockArg};

use super::ImageError;
use super::digest::{Digest, HashWriter};
use super::source::{bad_layout, io_err, parse_json, read_limited};
use super::types::{Descriptor, REF_NAME};

/// Writes a blob by streaming it through `fill`, and names it by its digest
/// in `blobs/sha256/` only once it is complete and synced. Returns what
/// `fill` returned, the digest and the size.
///
/// The bytes go to an unnamed file (O_TMPFILE) in that directory, linked in
/// at the end: a writer killed at any moment leaves nothing behind, not even
/// a temp file. Filesystems without O_TMPFILE get a named temp file and a
/// rename (a kill there leaves a `.tmp-*` file, never a partial blob).
pub fn write_blob_with<T, E: From<ImageError>>(
    layout: &Path,
    fill: impl FnOnce(&mut HashWriter<std::io::BufWriter<File>>) -> Result<T, E>,
) -> Result<(T, Digest, u64), E> {
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
        Err(e) => return Err(io_err("open O_TMPFILE", &dir)(e).into()),
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
                    Err(e) => return Err(ImageError::Sys(crate::sys::err("linkat", dest.display(), "AT_SYMLINK_FOLLOW")(e)).into()),
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

pub fn write_blob(layout: &Path, data: &[u8]) -> Result<(Digest, u64), ImageError> {
    let path = layout.join("blobs/sha256");
    let ((), d, n) = write_blob_with(layout, |w| w.write_all(data).map_err(io_err("write", &path)))?;
    Ok((d, n))
}

/// Adds `desc` to index.json under `reference`, replacing any manifest that
/// had that ref. Serialised against other writers by a lock on the layout
/// directory; written to a temp file and renamed.
pub fn set_ref(layout: &Path, mut desc: Descriptor, reference: &str) -> Result<(), ImageError> {
    let dir = File::open(layout).map_err(io_err("open", layout))?;
    let _lock = Flock::lock(dir, FlockArg::LockExclusive)
        .map_err(|(_, e)| ImageError::Sys(crate::sys::err("flock", layout.display(), "LOCK_EX")(e)))?;
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
pub fn init_if_missing(layout: &Path) -> Result<(), ImageError> {
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
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<(), ImageError> {
    let tmp = path.with_file_name(format!(".{}.tmp-{}", path.file_name().unwrap_or_default().to_string_lossy(), super::unique_name()));
    let result = (|| {
        let mut f = File::create_new(&tmp).map_err(io_err("create", &tmp))?;
        f.write_all(data).map_err(io_err("write", &tmp))?;
        nix::unistd::fsync(f.as_fd()).map_err(|e| ImageError::Sys(crate::sys::err("fsync", tmp.display(), "")(e)))?;
        std::fs::rename(&tmp, path).map_err(io_err("rename", &tmp))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
