//! Image archives read in place: a tar file (`oci-archive:`, `docker-archive:`)
//! is indexed once, header to header (seeking over the file data, never
//! reading it), and each member is then read as a byte range of the archive.
//! Nothing is extracted to a temp dir; a layer is read straight from the
//! archive into the store.
//!
//! The archive is untrusted input like a layout: only regular-file members
//! are indexed, names are cleaned (no `..`), special headers are bounded by
//! `guard::TarGuard`, and the index itself is capped.

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};

use super::ImageError;
use super::guard;
use super::guard::clean_path;

/// More members than any image has; a bigger index is refused.
const MAX_MEMBERS: usize = 1 << 20;

/// A tar archive's regular files: name → (offset of the data, length).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Archive {
    pub path: PathBuf,
    members: HashMap<String, (u64, u64)>,
}

impl Archive {
    /// Indexes the archive at `path` (a regular file; no symlink followed).
    /// Headers are read one by one and the data between them is seeked
    /// over. Long names (PAX `path`, GNU `L`) are read, up to 1 MiB each,
    /// as Go's archive/tar allows; other special entries are skipped.
    pub fn index(path: &Path) -> Result<Archive, ImageError> {
        let io_err = |op: &'static str| {
            let path = path.to_path_buf();
            move |source| ImageError::Io { op, path, source }
        };
        let bad = |msg: String| ImageError::Layout { layout: path.to_path_buf(), msg };
        let mut file = guard::open_blob(path).map_err(io_err("open"))?;
        let total = file.metadata().map_err(io_err("stat"))?.len();
        let mut members = HashMap::new();
        let mut long_name: Option<Vec<u8>> = None;
        let mut at = 0u64;
        let mut header = [0u8; 512];
        loop {
            if at + 512 > total {
                return Err(bad(if members.is_empty() { "not a tar archive".into() } else { "the archive ends inside a header".into() }));
            }
            file.seek(SeekFrom::Start(at)).map_err(io_err("seek"))?;
            file.read_exact(&mut header).map_err(io_err("read"))?;
            if header.iter().all(|b| *b == 0) {
                break; // the end-of-archive blocks
            }
            if !checksum_ok(&header) {
                return Err(bad(format!("bad tar header checksum at byte {at}")));
            }
            let size = octal_size(&header[124..136]).ok_or_else(|| bad(format!("bad member size at byte {at}")))?;
            let data = at + 512;
            if data.checked_add(size).is_none_or(|end| end > total) {
                return Err(bad(format!("a member at byte {at} runs past the end of the archive")));
            }
            let kind = header[156];
            match kind {
                b'x' | b'L' => {
                    if size > MAX_LONG_NAME {
                        return Err(bad(format!("a long-name header of {size} bytes (at most {MAX_LONG_NAME})")));
                    }
                    let mut buf = vec![0u8; size as usize];
                    file.read_exact(&mut buf).map_err(io_err("read"))?;
                    long_name =
                        if kind == b'L' { Some(buf.split(|b| *b == 0).next().unwrap_or_default().to_vec()) } else { pax_path(&buf) };
                }
                b'0' | 0 | b'7' => {
                    let raw = long_name.take().unwrap_or_else(|| ustar_name(&header));
                    let name = clean_path(&raw).map_err(|m| bad(format!("member {:?}: {m}", String::from_utf8_lossy(&raw))))?;
                    let name = String::from_utf8(name).map_err(|_| bad("a member name is not UTF-8".into()))?;
                    members.insert(name, (data, size));
                    if members.len() > MAX_MEMBERS {
                        return Err(bad(format!("more than {MAX_MEMBERS} members")));
                    }
                }
                _ => long_name = None,
            }
            at = data + size.div_ceil(512) * 512;
        }
        if members.is_empty() {
            return Err(bad("an empty archive".into()));
        }
        Ok(Archive { path: path.to_path_buf(), members })
    }

    /// The names of the indexed members.
    pub fn names(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn has(&self, name: &str) -> bool {
        self.members.contains_key(name)
    }

    /// The member's byte range, or an error naming it.
    pub fn member(&self, name: &str) -> Result<(u64, u64), ImageError> {
        self.members
            .get(name)
            .copied()
            .ok_or_else(|| ImageError::Layout { layout: self.path.clone(), msg: format!("no member {name:?} in the archive") })
    }

    /// The member's bytes, refusing more than `limit`.
    pub fn read(&self, name: &str, limit: u64) -> Result<Vec<u8>, ImageError> {
        let (offset, len) = self.member(name)?;
        if len > limit {
            return Err(ImageError::Parse { path: self.path.join(name), msg: format!("larger than {limit} bytes") });
        }
        let mut data = Vec::with_capacity(len as usize);
        open_range(&self.path, offset).and_then(|f| f.take(len).read_to_end(&mut data)).map_err(|source| ImageError::Io {
            op: "read",
            path: self.path.join(name),
            source,
        })?;
        if data.len() as u64 != len {
            return Err(ImageError::Parse { path: self.path.join(name), msg: "the archive ends inside this member".into() });
        }
        Ok(data)
    }
}

/// As Go's archive/tar: a long name or PAX header bigger than this is refused.
const MAX_LONG_NAME: u64 = 1 << 20;

/// The header's checksum: the sum of its bytes with the checksum field
/// taken as spaces.
fn checksum_ok(h: &[u8; 512]) -> bool {
    let sum: u64 = h.iter().enumerate().map(|(i, b)| if (148..156).contains(&i) { 32 } else { *b as u64 }).sum();
    octal(&h[148..156]) == Some(sum)
}

fn octal(field: &[u8]) -> Option<u64> {
    let s = std::str::from_utf8(field).ok()?.trim_matches(|c: char| c == '\0' || c == ' ');
    if s.is_empty() { Some(0) } else { u64::from_str_radix(s, 8).ok() }
}

/// A size field: octal, or GNU's base-256 (high bit set) for big members.
fn octal_size(field: &[u8]) -> Option<u64> {
    if field[0] & 0x80 != 0 {
        if field[..4].iter().enumerate().any(|(i, b)| if i == 0 { b & 0x7f != 0 } else { *b != 0 }) {
            return None; // more than 64 bits
        }
        return Some(field[4..].iter().fold(0u64, |n, b| (n << 8) | *b as u64));
    }
    octal(field)
}

/// ustar's name: `prefix/name` when the prefix field is set.
fn ustar_name(h: &[u8; 512]) -> Vec<u8> {
    let field = |r: std::ops::Range<usize>| h[r].split(|b| *b == 0).next().unwrap_or_default().to_vec();
    let (name, prefix) = (field(0..100), if &h[257..262] == b"ustar" { field(345..500) } else { Vec::new() });
    if prefix.is_empty() { name } else { [prefix, b"/".to_vec(), name].concat() }
}

/// The `path` record of a PAX header (`<len> path=<value>\n`), if any.
fn pax_path(buf: &[u8]) -> Option<Vec<u8>> {
    let mut rest = buf;
    let mut found = None;
    while !rest.is_empty() {
        let sp = rest.iter().position(|b| *b == b' ')?;
        let len: usize = std::str::from_utf8(&rest[..sp]).ok()?.parse().ok()?;
        if len <= sp || len > rest.len() {
            return None;
        }
        let record = &rest[sp + 1..len];
        let record = record.strip_suffix(b"\n").unwrap_or(record);
        if let Some(v) = record.strip_prefix(b"path=") {
            found = Some(v.to_vec());
        }
        rest = &rest[len..];
    }
    found
}

/// The archive file, positioned at `offset`.
pub fn open_range(path: &Path, offset: u64) -> io::Result<File> {
    let mut f = guard::open_blob(path)?;
    f.seek(SeekFrom::Start(offset))?;
    Ok(f)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::image::layout::tests::TestLayout;

    fn archive(members: &[(&str, &[u8])]) -> (TestLayout, PathBuf) {
        let dir = TestLayout::new("archive");
        let path = dir.0.join("a.tar");
        let mut b = tar::Builder::new(File::create(&path).unwrap());
        for (name, data) in members {
            let mut h = tar::Header::new_gnu();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append_data(&mut h, name, *data).unwrap();
        }
        b.finish().unwrap();
        (dir, path)
    }

    #[test]
    fn members_are_read_in_place() {
        let big = vec![7u8; 5000];
        let (_d, path) = archive(&[("./index.json", b"{}"), ("blobs/sha256/ab", &big), ("z", b"last")]);
        let a = Archive::index(&path).unwrap();
        assert_eq!(a.read("index.json", 10).unwrap(), b"{}");
        assert_eq!(a.read("blobs/sha256/ab", 1 << 20).unwrap(), big);
        assert_eq!(a.read("z", 10).unwrap(), b"last");
        assert!(a.read("blobs/sha256/ab", 100).unwrap_err().to_string().contains("larger than 100"));
        assert!(a.read("nope", 10).unwrap_err().to_string().contains("no member \"nope\""));
    }

    #[test]
    fn long_names_are_read_and_bounded() {
        let long = format!("blobs/sha256/{}", "a".repeat(150));
        let (_d, path) = archive(&[(&long, b"data")]);
        assert_eq!(Archive::index(&path).unwrap().read(&long, 10).unwrap(), b"data");
        // A GNU long-name header that claims 2 MiB is refused, not read.
        let d = TestLayout::new("archive");
        let p = d.0.join("bomb.tar");
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(tar::EntryType::GNULongName);
        h.set_size(2 << 20);
        h.set_cksum();
        let mut data = h.as_bytes().to_vec();
        data.resize(512 + (2 << 20) + 1024, 0);
        std::fs::write(&p, &data).unwrap();
        let e = Archive::index(&p).unwrap_err().to_string();
        assert!(e.contains("long-name header of 2097152 bytes"), "{e}");
        // A member that claims to run past the end.
        let mut h = tar::Header::new_gnu();
        h.set_path("x").unwrap();
        h.set_size(1 << 30);
        h.set_cksum();
        std::fs::write(&p, [h.as_bytes().to_vec(), vec![0u8; 2048]].concat()).unwrap();
        assert!(Archive::index(&p).unwrap_err().to_string().contains("runs past the end"));
    }

    #[test]
    fn ustar_gnu_and_pax_names() {
        // The fuzz seeds, written by Python's tarfile in each format.
        let seeds = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/seeds/image_archive");
        let a = Archive::index(&seeds.join("oci-ustar.tar")).unwrap();
        assert_eq!(a.read("index.json", 100).unwrap(), br#"{"manifests":[]}"#);
        let a = Archive::index(&seeds.join("gnu-longname.tar")).unwrap();
        assert_eq!(a.read(&format!("blobs/sha256/{}", "b".repeat(150)), 10).unwrap(), b"long");
        let a = Archive::index(&seeds.join("pax-path.tar")).unwrap();
        assert_eq!(a.read(&format!("d/{}.tar", "c".repeat(120)), 10).unwrap(), b"pax");
        assert_eq!(a.read("e.json", 10).unwrap(), b"{}");
    }

    #[test]
    fn not_an_archive_is_refused() {
        let d = TestLayout::new("archive");
        let p = d.0.join("x");
        std::fs::write(&p, b"this is not a tar archive at all, just some bytes").unwrap();
        assert!(Archive::index(&p).is_err());
        // A truncated one: the index may stand, the data does not.
        let (_d2, path) = archive(&[("a", &[1u8; 3000])]);
        let data = std::fs::read(&path).unwrap();
        std::fs::write(&path, &data[..1500]).unwrap();
        match Archive::index(&path) {
            Err(_) => {}
            Ok(a) => assert!(a.read("a", 1 << 20).is_err()),
        }
    }
}
