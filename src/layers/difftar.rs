//! The reverse of `apply`: an overlay upper dir -> a gzip layer tar, for
//! `strata commit`. 0/0 character devices become `.wh.NAME` entries and
//! directories with `trusted.overlay.opaque=y` (`user.overlay.opaque=y`
//! for a rootless caller, whose store's overlays use `userxattr`) get a
//! `.wh..wh..opq` entry.
//!
//! The upper dir belongs to a container, so it is walked fd by fd with
//! `O_NOFOLLOW`: a symlink planted in it is archived as a symlink, never
//! followed out of the upper dir.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, openat, readlinkat};
use nix::sys::stat::{FileStat, Mode, fstatat, major, minor};

use super::LayerError;
use super::unpacker::Unpacker;
use crate::image::digest::{Digest, HashWriter};
use crate::sys::xattr as sysxattr;

/// What `diff_to_tar` wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DiffTar {
    /// Digest of the gzip blob.
    pub digest: Digest,
    /// Digest of the uncompressed tar (the layer's diff_id).
    pub diff_id: Digest,
    /// Size of the gzip blob.
    pub size: u64,
}

/// Writes the overlay upper dir `upper` as a gzip layer tar to `out`.
pub fn diff_to_tar<W: Write>(upper: &Path, out: W) -> Result<(W, DiffTar), LayerError> {
    let label = upper.display().to_string();
    let io_err = |e: io::Error| LayerError::Entry { blob: label.clone(), entry: String::new(), msg: format!("write: {e}") };
    let root = nix::fcntl::open(upper, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::Sys(crate::sys::err("open", upper.display(), "O_DIRECTORY")(e)))?;
    let gz = flate2::write::GzEncoder::new(HashWriter::new(out), flate2::Compression::default());
    let mut builder = tar::Builder::new(HashWriter::new(gz));
    let mut walker = Walker { label: &label, links: HashMap::new() };
    walker.walk(&mut builder, root.as_fd(), &mut Vec::new())?;
    let plain = builder.into_inner().map_err(io_err)?;
    let (gz, diff_id, _) = plain.finish();
    let compressed = gz.finish().map_err(io_err)?;
    let (out, digest, size) = compressed.finish();
    Ok((out, DiffTar { digest, diff_id, size }))
}

struct Walker<'a> {
    label: &'a str,
    /// (dev, ino) -> first path, to archive later names as hardlinks.
    links: HashMap<(u64, u64), Vec<u8>>,
}

impl Walker<'_> {
    fn fail(&self, path: &[u8], msg: impl Into<String>) -> LayerError {
        LayerError::Entry { blob: self.label.to_string(), entry: String::from_utf8_lossy(path).into_owned(), msg: msg.into() }
    }

    fn sys<'e>(&'e self, op: &'static str, path: &'e [u8]) -> impl FnOnce(Errno) -> LayerError + 'e {
        move |e| self.fail(path, format!("{op}: {}", crate::sys::errno_text(e)))
    }

    /// Archives the contents of `dir` (whose path in the layer is `prefix`,
    /// empty or ending in `/`), sorted by name so that a commit of the same
    /// upper dir gives the same blob.
    fn walk<W: Write>(&mut self, b: &mut tar::Builder<W>, dir: BorrowedFd<'_>, prefix: &mut Vec<u8>) -> Result<(), LayerError> {
        let fd = dir.try_clone_to_owned().map_err(|e| self.fail(prefix, format!("dup: {e}")))?;
        let mut d = nix::dir::Dir::from_fd(fd).map_err(self.sys("fdopendir", prefix))?;
        let mut names: Vec<Vec<u8>> =
            d.iter().filter_map(Result::ok).map(|e| e.file_name().to_bytes().to_vec()).filter(|n| n != b"." && n != b"..").collect();
        names.sort();
        for name in names {
            let len = prefix.len();
            prefix.extend_from_slice(&name);
            self.one(b, dir, OsStr::from_bytes(&name), prefix)?;
            prefix.truncate(len);
        }
        Ok(())
    }

    fn one<W: Write>(&mut self, b: &mut tar::Builder<W>, dir: BorrowedFd<'_>, name: &OsStr, path: &mut Vec<u8>) -> Result<(), LayerError> {
        let st = fstatat(dir, name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(self.sys("fstatat", path))?;
        let fmt = st.st_mode & libc::S_IFMT;
        let at = sysxattr::at_path(dir, name);
        if fmt == libc::S_IFCHR && st.st_rdev == 0 {
            return self.whiteout(b, path, &st);
        }
        let xattrs = self.xattrs(&at, path)?;
        let mut h = header(&st);
        let p = Path::new(OsStr::from_bytes(path));
        match fmt {
            libc::S_IFDIR => {
                // The marker overlay writes: trusted.overlay.opaque, or in a rootless store (userxattr) user.overlay.opaque.
                let opaque = sysxattr::lgetxattr(&at, Unpacker::current().opaque_xattr(), &String::from_utf8_lossy(path))
                    .map_err(|e| self.fail(path, e.to_string()))?;
                h.set_entry_type(tar::EntryType::Directory);
                self.append(b, &mut h, path, &xattrs, io::empty())?;
                path.push(b'/');
                if opaque.as_deref() == Some(b"y") {
                    let mut marker = path.clone();
                    marker.extend_from_slice(b".wh..wh..opq");
                    self.append(b, &mut header(&st).with_empty_file(), &marker, &[], io::empty())?;
                }
                let sub = openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(self.sys("openat", path))?;
                self.walk(b, sub.as_fd(), path)
            }
            libc::S_IFREG => {
                if st.st_nlink > 1 {
                    let key = (st.st_dev, st.st_ino);
                    if let Some(first) = self.links.get(&key) {
                        h.set_entry_type(tar::EntryType::Link);
                        h.set_size(0);
                        let first = Path::new(OsStr::from_bytes(first)).to_path_buf();
                        return b.append_link(&mut h, p, first).map_err(|e| self.fail(path, format!("append: {e}")));
                    }
                    self.links.insert(key, path.clone());
                }
                let fd: OwnedFd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                    .map_err(self.sys("openat", path))?;
                h.set_entry_type(tar::EntryType::Regular);
                h.set_size(st.st_size as u64);
                // The container must be stopped or paused: a file that changes size
                // while it is read would not match its header.
                self.append(b, &mut h, path, &xattrs, io::Read::take(File::from(fd), st.st_size as u64))
            }
            libc::S_IFLNK => {
                let target = readlinkat(dir, name).map_err(self.sys("readlinkat", path))?;
                h.set_entry_type(tar::EntryType::Symlink);
                self.pax(b, &xattrs, path)?;
                b.append_link(&mut h, p, target).map_err(|e| self.fail(path, format!("append: {e}")))
            }
            libc::S_IFCHR | libc::S_IFBLK | libc::S_IFIFO => {
                h.set_entry_type(match fmt {
                    libc::S_IFCHR => tar::EntryType::Char,
                    libc::S_IFBLK => tar::EntryType::Block,
                    _ => tar::EntryType::Fifo,
                });
                if fmt != libc::S_IFIFO {
                    let set = h.set_device_major(major(st.st_rdev) as u32).and_then(|()| h.set_device_minor(minor(st.st_rdev) as u32));
                    set.map_err(|e| self.fail(path, format!("device number: {e}")))?;
                }
                self.append(b, &mut h, path, &xattrs, io::empty())
            }
            _ => Ok(()), // sockets are not archived
        }
    }

    fn whiteout<W: Write>(&mut self, b: &mut tar::Builder<W>, path: &[u8], st: &FileStat) -> Result<(), LayerError> {
        let (dir, name) = match path.iter().rposition(|&c| c == b'/') {
            Some(i) => (&path[..=i], &path[i + 1..]),
            None => (&b""[..], path),
        };
        let mut wh = dir.to_vec();
        wh.extend_from_slice(b".wh.");
        wh.extend_from_slice(name);
        self.append(b, &mut header(st).with_empty_file(), &wh, &[], io::empty())
    }

    /// The xattrs to carry into the layer: all but overlay's own (either namespace).
    fn xattrs(&self, at: &[u8], path: &[u8]) -> Result<Vec<(String, Vec<u8>)>, LayerError> {
        let what = String::from_utf8_lossy(path);
        let mut out = Vec::new();
        for name in sysxattr::llistxattr(at, &what).map_err(|e| self.fail(path, e.to_string()))? {
            if name.starts_with("trusted.overlay.") || name.starts_with("user.overlay.") {
                continue;
            }
            if let Some(v) = sysxattr::lgetxattr(at, &name, &what).map_err(|e| self.fail(path, e.to_string()))? {
                out.push((name, v));
            }
        }
        Ok(out)
    }

    fn pax<W: Write>(&self, b: &mut tar::Builder<W>, xattrs: &[(String, Vec<u8>)], path: &[u8]) -> Result<(), LayerError> {
        if xattrs.is_empty() {
            return Ok(());
        }
        let records: Vec<(String, &[u8])> = xattrs.iter().map(|(n, v)| (format!("SCHILY.xattr.{n}"), v.as_slice())).collect();
        b.append_pax_extensions(records.iter().map(|(k, v)| (k.as_str(), *v))).map_err(|e| self.fail(path, format!("append pax: {e}")))
    }

    fn append<W: Write>(
        &self,
        b: &mut tar::Builder<W>,
        h: &mut tar::Header,
        path: &[u8],
        xattrs: &[(String, Vec<u8>)],
        data: impl io::Read,
    ) -> Result<(), LayerError> {
        self.pax(b, xattrs, path)?;
        b.append_data(h, Path::new(OsStr::from_bytes(path)), data).map_err(|e| self.fail(path, format!("append: {e}")))
    }
}

fn header(st: &FileStat) -> tar::Header {
    let mut h = tar::Header::new_gnu();
    h.set_mode(st.st_mode & 0o7777);
    h.set_uid(st.st_uid as u64);
    h.set_gid(st.st_gid as u64);
    h.set_mtime(st.st_mtime.max(0) as u64);
    h.set_size(0);
    h
}

trait EmptyFile {
    fn with_empty_file(self) -> Self;
}

impl EmptyFile for tar::Header {
    /// A whiteout or opaque marker: an empty regular file.
    fn with_empty_file(mut self) -> Self {
        self.set_entry_type(tar::EntryType::Regular);
        self.set_mode(0o644);
        self.set_size(0);
        self
    }
}
