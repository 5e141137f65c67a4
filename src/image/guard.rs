//! Bounds on untrusted image input: an image layout is whatever someone
//! handed us, so no blob may make strata hang or hold memory in proportion
//! to a number the blob itself claims.
//!
//! - A blob must be a regular file in the layout: a symlink (to `/dev/zero`,
//!   or out of the layout), a device or a FIFO is refused before it is read.
//! - A blob is read through a reader capped at its manifest size plus one
//!   byte, so an overlong blob is seen (and its digest check fails) without
//!   reading past it.
//! - In the tar stream, a PAX (`x`, `g`) or GNU long-name/long-link (`L`,
//!   `K`) header may carry at most 1 MiB, as Go's archive/tar allows. The tar
//!   crate reads such a header whole into memory, so `TarGuard` watches the
//!   stream on its way to the crate and fails it at the header that claims
//!   more, before a byte of that payload is read.

use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// The most a PAX or GNU long-name header may carry.
pub const MAX_SPECIAL_HEADER: u64 = 1 << 20;

const BLOCK: usize = 512;

/// Opens a blob, refusing anything but a regular file (no symlink is
/// followed; a FIFO is not waited on).
pub fn open_blob(path: &Path) -> io::Result<File> {
    let refuse =
        |what: &str| io::Error::new(io::ErrorKind::InvalidData, format!("{}: a blob must be a regular file, not {what}", path.display()));
    let f = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| if e.raw_os_error() == Some(libc::ELOOP) { refuse("a symlink") } else { e })?;
    let t = f.metadata()?.file_type();
    if !t.is_file() {
        return Err(refuse(if t.is_fifo() {
            "a FIFO"
        } else if t.is_block_device() || t.is_char_device() {
            "a device"
        } else {
            "a directory or socket"
        }));
    }
    Ok(f)
}

/// The blob's bytes, stopped one byte past `size` (when the manifest gives
/// one): enough to tell an overlong blob, never more.
pub fn capped(file: File, size: Option<u64>) -> io::Take<File> {
    file.take(size.map_or(u64::MAX, |s| s.saturating_add(1)))
}

/// Passes a tar stream through, failing it at a special header whose
/// payload is over `MAX_SPECIAL_HEADER`.
pub struct TarGuard<R> {
    inner: R,
    /// The header block being assembled, and how much of it has arrived.
    header: [u8; BLOCK],
    filled: usize,
    /// Bytes of the current entry's data (padded to whole blocks) still to pass.
    data_left: u64,
}

impl<R: Read> TarGuard<R> {
    pub fn new(inner: R) -> TarGuard<R> {
        TarGuard { inner, header: [0; BLOCK], filled: 0, data_left: 0 }
    }

    pub fn into_inner(self) -> R {
        self.inner
    }

    /// Follows the block structure over `bytes`, just read.
    fn watch(&mut self, mut bytes: &[u8]) -> io::Result<()> {
        while !bytes.is_empty() {
            if self.data_left > 0 {
                let n = (self.data_left.min(bytes.len() as u64)) as usize;
                self.data_left -= n as u64;
                bytes = &bytes[n..];
                continue;
            }
            let n = (BLOCK - self.filled).min(bytes.len());
            self.header[self.filled..self.filled + n].copy_from_slice(&bytes[..n]);
            self.filled += n;
            bytes = &bytes[n..];
            if self.filled == BLOCK {
                self.filled = 0;
                let (kind, size) = header_kind_and_size(&self.header);
                if matches!(kind, b'x' | b'g' | b'L' | b'K') && size > MAX_SPECIAL_HEADER {
                    let what = if matches!(kind, b'x' | b'g') { "PAX" } else { "GNU long name" };
                    return Err(io::Error::new(
                        io::ErrorKind::InvalidData,
                        format!("a {what} header claims {size} bytes, over the {MAX_SPECIAL_HEADER}-byte limit"),
                    ));
                }
                // Saturating: a size field may claim up to 2^64 - 1 bytes.
                self.data_left = size.div_ceil(BLOCK as u64).saturating_mul(BLOCK as u64);
            }
        }
        Ok(())
    }
}

impl<R: Read> Read for TarGuard<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.watch(&buf[..n])?;
        Ok(n)
    }
}

/// A header block's type flag and entry size (octal, or base-256 when the
/// first byte has its high bit set). An all-zero block reads as size 0.
fn header_kind_and_size(h: &[u8; BLOCK]) -> (u8, u64) {
    let field = &h[124..136];
    let size = if field[0] & 0x80 != 0 {
        // Base-256: the rest is a big-endian number; anything over 64 bits is "huge".
        let (high, low) = field[1..].split_at(field.len() - 1 - 8);
        if field[0] & 0x7f != 0 || high.iter().any(|b| *b != 0) {
            u64::MAX
        } else {
            low.iter().fold(0u64, |acc, b| (acc << 8) | u64::from(*b))
        }
    } else {
        field
            .iter()
            .skip_while(|b| **b == b' ')
            .take_while(|b| (b'0'..=b'7').contains(*b))
            .fold(0u64, |acc, b| acc.saturating_mul(8).saturating_add(u64::from(b - b'0')))
    };
    (h[156], size)
}

/// Cleans a tar path: leading `/` and `.` components dropped, `..` refused.
/// The root itself is the empty path.
pub fn clean_path(raw: &[u8]) -> Result<Vec<u8>, &'static str> {
    let mut out = Vec::with_capacity(raw.len());
    for part in raw.split(|&b| b == b'/') {
        match part {
            b"" | b"." => {}
            b".." => return Err("path has a `..` component"),
            p => {
                if !out.is_empty() {
                    out.push(b'/');
                }
                out.extend_from_slice(p);
            }
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header(kind: u8, size: u64) -> Vec<u8> {
        let mut h = tar::Header::new_ustar();
        h.set_path("x").unwrap();
        h.set_size(size);
        h.set_entry_type(tar::EntryType::new(kind));
        h.set_cksum();
        h.as_bytes().to_vec()
    }

    fn pass(stream: &[u8]) -> io::Result<Vec<u8>> {
        let mut out = Vec::new();
        // Small reads: a header split across reads is still seen.
        let mut g = TarGuard::new(io::Cursor::new(stream));
        let mut buf = [0u8; 7];
        loop {
            let n = g.read(&mut buf)?;
            if n == 0 {
                return Ok(out);
            }
            out.extend_from_slice(&buf[..n]);
        }
    }

    #[test]
    fn special_headers_over_a_mebibyte_are_refused() {
        for kind in [b'x', b'g', b'L', b'K'] {
            let e = pass(&header(kind, 3 << 30)).unwrap_err();
            assert!(e.to_string().contains("over the 1048576-byte limit"), "{e}");
        }
        // Base-256 sizes too.
        let mut h = header(b'x', 0);
        h[124] = 0x80;
        h[130] = 0x01;
        assert!(pass(&h).is_err());
    }

    #[test]
    fn ordinary_entries_pass_whatever_their_size() {
        let mut stream = header(b'0', 5000);
        stream.extend(vec![7u8; 5120]);
        stream.extend(header(b'x', 100));
        stream.extend(vec![b'a'; 512]);
        stream.extend(header(b'0', 0));
        stream.extend(vec![0u8; 1024]);
        assert_eq!(pass(&stream).unwrap(), stream);
        // A big regular file's header is no special header.
        assert!(pass(&header(b'0', 5 << 30)).is_ok());
        // A size field of 2^64 - 1 (base-256) passes without overflowing.
        let mut h = header(b'0', 0);
        h[124] = 0x80;
        h[128..136].copy_from_slice(&[0xff; 8]);
        assert!(pass(&h).is_ok());
    }

    #[test]
    fn blobs_must_be_regular_files() {
        let dir = std::env::temp_dir().join(format!("strata-guard-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        std::os::unix::fs::symlink("/dev/zero", dir.join("link")).unwrap();
        nix::unistd::mkfifo(&dir.join("fifo"), nix::sys::stat::Mode::from_bits_truncate(0o600)).unwrap();
        std::fs::write(dir.join("file"), b"abc").unwrap();
        assert!(open_blob(&dir.join("link")).unwrap_err().to_string().contains("symlink"));
        assert!(open_blob(&dir.join("fifo")).unwrap_err().to_string().contains("FIFO"));
        assert!(open_blob(Path::new("/dev/zero")).unwrap_err().to_string().contains("device"));
        let mut s = String::new();
        capped(open_blob(&dir.join("file")).unwrap(), Some(1)).read_to_string(&mut s).unwrap();
        assert_eq!(s, "ab", "the cap is the size plus one byte");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
