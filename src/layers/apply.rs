//! Layer blobs <-> directories: unpacking a (compressed) layer tar into an
//! empty directory while checking its digest and diff_id, and the reverse,
//! turning an overlay upper dir into a gzip layer for `strata commit`.
//!
//! Every write is fd-relative: the parent of each entry is opened with
//! `openat2(RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS)` from the layer root, and
//! the entry itself is created with `O_EXCL`/`O_NOFOLLOW`-style calls, so
//! neither `..`, an absolute symlink nor a symlink planted by an earlier
//! entry can make a write land outside the layer. The `tar` crate only
//! parses; its `unpack` is not used.
//!
//! Whiteouts are converted to overlayfs' form: `.wh.NAME` becomes a 0/0
//! character device `NAME`, `.wh..wh..opq` the xattr
//! `trusted.overlay.opaque=y` on its directory (`user.overlay.opaque=y`
//! in a rootless store, whose overlay is mounted with `userxattr`).
//! What else of an entry's metadata is kept depends on who unpacks
//! (`Unpacker`).

use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{AtFlags, OFlag, OpenHow, ResolveFlag, openat, openat2};
use nix::sys::stat::{
    FchmodatFlags, Mode, SFlag, UtimensatFlags, fchmod, fchmodat, fstatat, futimens, makedev, mkdirat, mknodat, utimensat,
};
use nix::sys::time::TimeSpec;
use nix::unistd::{Gid, Uid, UnlinkatFlags, fchown, fchownat, linkat, symlinkat, unlinkat};

use super::LayerError;
use super::stream::{Stream, open_decoder};
use super::unpacker::Unpacker;
use crate::image::digest::{Digest, HashReader};
use crate::image::guard;
use crate::image::guard::clean_path;
use crate::image::source::BlobSource;
use crate::sys::xattr as sysxattr;

const WHITEOUT_PREFIX: &[u8] = b".wh.";
const OPAQUE_MARKER: &[u8] = b".wh..wh..opq";

/// What unpacking a layer produced.
#[derive(Debug, Clone, Copy, Default)]
pub struct Applied {
    /// Bytes of regular file data written.
    pub size: u64,
    pub entries: u64,
}

/// The blob being unpacked and what it must hash to.
#[derive(Debug, Clone, Copy)]
pub struct BlobCheck<'a> {
    pub source: &'a BlobSource,
    pub media_type: &'a str,
    /// `None` where the image gives no digest (a docker-archive's layer
    /// tars): then the diff_id is all there is to check.
    pub digest: Option<&'a Digest>,
    pub diff_id: &'a Digest,
    /// The size the manifest gives, if any.
    pub size: Option<u64>,
}

/// Unpacks the layer blob into `dest` (an existing, empty directory that
/// nobody else writes to). On error `dest` holds a partial layer: the
/// caller unpacks into a temp dir and throws it away.
pub fn apply_layer(blob: BlobCheck<'_>, dest: &Path) -> Result<Applied, LayerError> {
    apply_layer_with(blob, dest, false)
}

/// `apply_layer`, with the blob's decompression and hashing on a thread of
/// their own when `readahead` (the unpack then runs on two cores: one
/// inflates and hashes, the other parses the tar and writes the files).
pub fn apply_layer_with(blob: BlobCheck<'_>, dest: &Path, readahead: bool) -> Result<Applied, LayerError> {
    let label = blob.digest.unwrap_or(blob.diff_id).to_string();
    let io_err = |op: &'static str| {
        let label = label.clone();
        move |e: io::Error| LayerError::Entry { blob: label, entry: String::new(), msg: format!("{op}: {e}") }
    };
    // Its length is known before a byte is read (a regular file, or an
    // archive member).
    let (file, len) = blob.source.open().map_err(|source| LayerError::Io { op: "open", path: blob.source.display(), source })?;
    if let Some(expected) = blob.size.filter(|&s| s != len) {
        return Err(LayerError::Mismatch { blob: label, what: "size", expected: expected.to_string(), actual: len.to_string() });
    }
    let decoder = open_decoder(file, blob.media_type, blob.source.read_limit(blob.size)).map_err(io_err("read"))?;
    let stream = Stream::new(HashReader::new(guard::TarGuard::new(decoder)), readahead);
    let mut archive = tar::Archive::new(stream);
    let root = nix::fcntl::open(dest, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty())
        .map_err(|e| LayerError::Sys(crate::sys::err("open", dest.display(), "O_DIRECTORY")(e)))?;
    let mut w = Writer::new(root, &label);
    for entry in archive.entries().map_err(io_err("read tar"))? {
        let entry = entry.map_err(io_err("read tar"))?;
        w.entry(entry)?;
    }
    w.finish_dirs()?;
    let ((diff_id, _), (digest, size)) = archive.into_inner().finish().map_err(io_err("read to end"))?;
    let mismatch = |what, expected: &Digest, actual: Digest| LayerError::Mismatch {
        blob: label.clone(),
        what,
        expected: expected.to_string(),
        actual: actual.to_string(),
    };
    if let Some(expected) = blob.digest.filter(|d| **d != digest) {
        return Err(mismatch("digest", expected, digest));
    }
    if &diff_id != blob.diff_id {
        return Err(mismatch("diff_id", blob.diff_id, diff_id));
    }
    if let Some(expected) = blob.size.filter(|&s| s != size) {
        return Err(LayerError::Mismatch { blob: label, what: "size", expected: expected.to_string(), actual: size.to_string() });
    }
    Ok(Applied { size: w.size, entries: w.entries })
}

fn split_parent(path: &[u8]) -> (&[u8], &[u8]) {
    match path.iter().rposition(|&b| b == b'/') {
        Some(i) => (&path[..i], &path[i + 1..]),
        None => (b"", path),
    }
}

fn beneath(flags: OFlag) -> OpenHow {
    OpenHow::new()
        .flags(flags | OFlag::O_CLOEXEC)
        .resolve(ResolveFlag::RESOLVE_BENEATH | ResolveFlag::RESOLVE_NO_SYMLINKS | ResolveFlag::RESOLVE_NO_MAGICLINKS)
}

/// The metadata of one entry, from its header and PAX records.
struct Meta {
    mode: u32,
    uid: u32,
    gid: u32,
    mtime: TimeSpec,
    xattrs: Vec<(String, Vec<u8>)>,
}

impl Meta {
    fn read<R: Read>(entry: &mut tar::Entry<'_, R>) -> io::Result<Meta> {
        let h = entry.header();
        let mut meta = Meta {
            mode: h.mode()? & 0o7777,
            uid: h.uid()? as u32,
            gid: h.gid()? as u32,
            mtime: TimeSpec::new(h.mtime()? as i64, 0),
            xattrs: Vec::new(),
        };
        if let Some(exts) = entry.pax_extensions()? {
            for ext in exts {
                let ext = ext?;
                let Ok(key) = ext.key() else { continue };
                let value = ext.value_bytes();
                if let Some(name) = key.strip_prefix("SCHILY.xattr.") {
                    meta.xattrs.push((name.to_string(), value.to_vec()));
                } else if key == "uid" || key == "gid" {
                    let id = std::str::from_utf8(value).ok().and_then(|v| v.parse::<u32>().ok());
                    if let Some(id) = id {
                        if key == "uid" { meta.uid = id } else { meta.gid = id }
                    }
                } else if key == "mtime" {
                    meta.mtime = parse_pax_time(value).unwrap_or(meta.mtime);
                }
            }
        }
        Ok(meta)
    }
}

fn parse_pax_time(v: &[u8]) -> Option<TimeSpec> {
    let s = std::str::from_utf8(v).ok()?;
    let (secs, frac) = s.split_once('.').unwrap_or((s, ""));
    let secs: i64 = secs.parse().ok()?;
    let digits: String = frac.chars().take(9).collect();
    let nanos = if digits.is_empty() { 0 } else { format!("{digits:0<9}").parse::<i64>().ok()? };
    Some(TimeSpec::new(secs, if secs < 0 { -nanos } else { nanos }))
}

/// Writes entries under one layer root.
struct Writer<'a> {
    root: OwnedFd,
    blob: &'a str,
    unpacker: Unpacker,
    /// The last parent directory opened: tar streams list a directory's
    /// entries together, so most entries reuse it.
    cached: Option<(Vec<u8>, OwnedFd)>,
    /// Directory mtimes, set once everything inside them exists.
    dir_times: Vec<(Vec<u8>, TimeSpec)>,
    buf: Vec<u8>,
    size: u64,
    entries: u64,
}

impl<'a> Writer<'a> {
    fn new(root: OwnedFd, blob: &'a str) -> Writer<'a> {
        Writer {
            root,
            blob,
            unpacker: Unpacker::current(),
            cached: None,
            dir_times: Vec::new(),
            buf: vec![0; super::stream::READ_BUF],
            size: 0,
            entries: 0,
        }
    }

    fn refuse(&self, entry: &[u8], msg: impl Into<String>) -> LayerError {
        LayerError::Entry { blob: self.blob.to_string(), entry: String::from_utf8_lossy(entry).into_owned(), msg: msg.into() }
    }

    fn sys<'e>(&'e self, op: &'static str, entry: &'e [u8], flags: &'static str) -> impl FnOnce(Errno) -> LayerError + 'e {
        move |e| {
            let flags = if flags.is_empty() { String::new() } else { format!(" ({flags})") };
            self.refuse(entry, format!("{op}{flags}: {}", crate::sys::errno_text(e)))
        }
    }

    fn entry<R: Read>(&mut self, mut entry: tar::Entry<'_, R>) -> Result<(), LayerError> {
        let raw = entry.path_bytes().into_owned();
        let path = clean_path(&raw).map_err(|m| self.refuse(&raw, m))?;
        let meta = Meta::read(&mut entry).map_err(|e| self.refuse(&raw, format!("header: {e}")))?;
        let kind = entry.header().entry_type();
        self.entries += 1;
        if path.is_empty() {
            return match kind {
                tar::EntryType::Directory => self.root_dir(&raw, &meta),
                _ => Err(self.refuse(&raw, "the layer root must be a directory")),
            };
        }
        let (parent_path, name) = split_parent(&path);
        let (parent_path, name) = (parent_path.to_vec(), name.to_vec());
        if name.starts_with(WHITEOUT_PREFIX) {
            return self.whiteout(&path, &parent_path, &name, &meta);
        }
        let parent = self.parent(&parent_path, &path)?;
        let name = OsStr::from_bytes(&name);
        match kind {
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                self.file(parent, name, &path, &meta, &mut entry)
            }
            tar::EntryType::Directory => self.dir(parent, name, &path, &meta),
            tar::EntryType::Symlink => {
                let target = entry.link_name_bytes().ok_or_else(|| self.refuse(&path, "symlink without a target"))?.into_owned();
                self.replace(parent.as_fd(), name, &path, |d| symlinkat(OsStr::from_bytes(&target), d, name), "symlinkat")?;
                self.special_meta(parent.as_fd(), name, &path, &meta, false)
            }
            tar::EntryType::Link => {
                let target = entry.link_name_bytes().ok_or_else(|| self.refuse(&path, "hardlink without a target"))?.into_owned();
                self.hardlink(parent.as_fd(), name, &path, &target)
            }
            tar::EntryType::Char | tar::EntryType::Block if self.unpacker == Unpacker::UserNsRoot => Ok(()),
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                let h = entry.header();
                let dev = makedev(h.device_major().ok().flatten().unwrap_or(0) as u64, h.device_minor().ok().flatten().unwrap_or(0) as u64);
                let sflag = match kind {
                    tar::EntryType::Char => SFlag::S_IFCHR,
                    tar::EntryType::Block => SFlag::S_IFBLK,
                    _ => SFlag::S_IFIFO,
                };
                self.replace(parent.as_fd(), name, &path, |d| mknodat(d, name, sflag, Mode::from_bits_truncate(0o600), dev), "mknodat")?;
                self.special_meta(parent.as_fd(), name, &path, &meta, true)
            }
            tar::EntryType::XGlobalHeader => Ok(()),
            other => Err(self.refuse(&path, format!("unsupported entry type {other:?}"))),
        }
    }

    /// Opens (creating missing directories) the parent `dir` of `entry`,
    /// refusing any symlink on the way.
    fn parent(&mut self, dir: &[u8], entry: &[u8]) -> Result<OwnedFd, LayerError> {
        if let Some((p, fd)) = &self.cached
            && p == dir
        {
            return fd.try_clone().map_err(|e| self.refuse(entry, format!("dup: {e}")));
        }
        let fd = self.open_dir(dir, entry, true)?;
        let dup = fd.try_clone().map_err(|e| self.refuse(entry, format!("dup: {e}")))?;
        self.cached = Some((dir.to_vec(), fd));
        Ok(dup)
    }

    fn open_dir(&self, dir: &[u8], entry: &[u8], create: bool) -> Result<OwnedFd, LayerError> {
        let rel = if dir.is_empty() { OsStr::new(".") } else { OsStr::from_bytes(dir) };
        match openat2(self.root.as_fd(), rel, beneath(OFlag::O_RDONLY | OFlag::O_DIRECTORY)) {
            Ok(fd) => Ok(fd),
            Err(Errno::ENOENT) if create => self.make_dirs(dir, entry),
            Err(Errno::ENOENT) => Err(self.refuse(entry, format!("directory {} is not in the layer", String::from_utf8_lossy(dir)))),
            Err(Errno::ELOOP) => Err(self.refuse(entry, format!("parent {} is or goes through a symlink", String::from_utf8_lossy(dir)))),
            Err(Errno::EXDEV) => Err(self.refuse(entry, "parent escapes the layer")),
            Err(e) => Err(self.sys("openat2", entry, "RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS")(e)),
        }
    }

    /// Creates the missing directories of `dir` (0755, as tar does).
    fn make_dirs(&self, dir: &[u8], entry: &[u8]) -> Result<OwnedFd, LayerError> {
        let mut cur = self.root.try_clone().map_err(|e| self.refuse(entry, format!("dup: {e}")))?;
        for part in dir.split(|&b| b == b'/') {
            let name = OsStr::from_bytes(part);
            match mkdirat(cur.as_fd(), name, Mode::from_bits_truncate(0o755)) {
                Ok(()) | Err(Errno::EEXIST) => {}
                Err(e) => return Err(self.sys("mkdirat", entry, "")(e)),
            }
            cur = openat(cur.as_fd(), name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                .map_err(|e| match e {
                    Errno::ELOOP | Errno::ENOTDIR => {
                        self.refuse(entry, format!("parent component {} is not a directory", name.to_string_lossy()))
                    }
                    e => self.sys("openat", entry, "O_DIRECTORY|O_NOFOLLOW")(e),
                })?;
        }
        Ok(cur)
    }

    /// Runs `create`; if the name exists, removes what is there (a later
    /// entry replaces an earlier one, as with tar) and tries once more.
    fn replace(
        &mut self,
        dir: BorrowedFd<'_>,
        name: &OsStr,
        entry: &[u8],
        create: impl Fn(BorrowedFd<'_>) -> nix::Result<()>,
        op: &'static str,
    ) -> Result<(), LayerError> {
        match create(dir) {
            Err(Errno::EEXIST) => {
                self.remove(dir, name, entry)?;
                create(dir).map_err(self.sys(op, entry, ""))
            }
            r => r.map_err(self.sys(op, entry, "")),
        }
    }

    fn remove(&mut self, dir: BorrowedFd<'_>, name: &OsStr, entry: &[u8]) -> Result<(), LayerError> {
        // Whatever was cached may be the directory being removed.
        self.cached = None;
        remove_at(dir, name).map_err(self.sys("remove", entry, ""))
    }

    fn file<R: Read>(&mut self, parent: OwnedFd, name: &OsStr, path: &[u8], meta: &Meta, data: &mut R) -> Result<(), LayerError> {
        let flags = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        let open = |d: BorrowedFd<'_>| openat(d, name, flags, Mode::from_bits_truncate(0o600));
        let fd = match open(parent.as_fd()) {
            Err(Errno::EEXIST) => {
                self.remove(parent.as_fd(), name, path)?;
                open(parent.as_fd())
            }
            r => r,
        }
        .map_err(self.sys("openat", path, "O_CREAT|O_EXCL|O_NOFOLLOW"))?;
        let mut file = File::from(fd);
        loop {
            let n = match data.read(&mut self.buf) {
                Ok(0) => break,
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(self.refuse(path, format!("read: {e}"))),
            };
            file.write_all(&self.buf[..n]).map_err(|e| self.refuse(path, format!("write: {e}")))?;
            self.size += n as u64;
        }
        // chown clears setuid/setgid and file capabilities: mode and xattrs after it.
        self.owner_mode_xattrs(file.as_fd(), path, meta)?;
        futimens(file.as_fd(), &meta.mtime, &meta.mtime).map_err(self.sys("futimens", path, ""))
    }

    fn dir(&mut self, parent: OwnedFd, name: &OsStr, path: &[u8], meta: &Meta) -> Result<(), LayerError> {
        match mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700)) {
            Ok(()) => {}
            Err(Errno::EEXIST) => {
                let st = fstatat(parent.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW).map_err(self.sys(
                    "fstatat",
                    path,
                    "AT_SYMLINK_NOFOLLOW",
                ))?;
                if st.st_mode & libc::S_IFMT != libc::S_IFDIR {
                    self.remove(parent.as_fd(), name, path)?;
                    mkdirat(parent.as_fd(), name, Mode::from_bits_truncate(0o700)).map_err(self.sys("mkdirat", path, ""))?;
                }
            }
            Err(e) => return Err(self.sys("mkdirat", path, "")(e)),
        }
        let fd = openat(parent.as_fd(), name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
            .map_err(self.sys("openat", path, "O_DIRECTORY|O_NOFOLLOW"))?;
        self.owner_mode_xattrs(fd.as_fd(), path, meta)?;
        self.dir_times.push((path.to_vec(), meta.mtime));
        self.cached = Some((path.to_vec(), fd));
        Ok(())
    }

    fn root_dir(&mut self, raw: &[u8], meta: &Meta) -> Result<(), LayerError> {
        let root = self.root.try_clone().map_err(|e| self.refuse(raw, format!("dup: {e}")))?;
        self.owner_mode_xattrs(root.as_fd(), raw, meta)?;
        self.dir_times.push((Vec::new(), meta.mtime));
        Ok(())
    }

    fn owner_mode_xattrs(&self, fd: BorrowedFd<'_>, path: &[u8], meta: &Meta) -> Result<(), LayerError> {
        if self.unpacker != Unpacker::Unprivileged {
            fchown(fd, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid))).map_err(self.sys("fchown", path, ""))?;
        }
        fchmod(fd, Mode::from_bits_truncate(meta.mode)).map_err(self.sys("fchmod", path, ""))?;
        for (name, value) in meta.xattrs.iter().filter(|(n, _)| self.keep_xattr(n)) {
            sysxattr::fsetxattr(fd, name, value, &String::from_utf8_lossy(path)).map_err(|e| self.refuse(path, e.to_string()))?;
        }
        Ok(())
    }

    /// Owner, mode, xattrs and mtime of a symlink, device or fifo, which
    /// cannot be opened: set through the parent fd, never following.
    fn special_meta(&self, parent: BorrowedFd<'_>, name: &OsStr, path: &[u8], meta: &Meta, chmod: bool) -> Result<(), LayerError> {
        if self.unpacker != Unpacker::Unprivileged {
            fchownat(parent, name, Some(Uid::from_raw(meta.uid)), Some(Gid::from_raw(meta.gid)), AtFlags::AT_SYMLINK_NOFOLLOW)
                .map_err(self.sys("fchownat", path, "AT_SYMLINK_NOFOLLOW"))?;
        }
        if chmod {
            // Not a symlink (we just made the node in a dir only we write), so
            // following is safe; Linux has no lchmod.
            fchmodat(parent, name, Mode::from_bits_truncate(meta.mode), FchmodatFlags::FollowSymlink)
                .map_err(self.sys("fchmodat", path, ""))?;
        }
        let at = sysxattr::at_path(parent, name);
        for (xname, value) in meta.xattrs.iter().filter(|(n, _)| self.keep_xattr(n)) {
            sysxattr::lsetxattr(&at, xname, value, &String::from_utf8_lossy(path)).map_err(|e| self.refuse(path, e.to_string()))?;
        }
        utimensat(parent, name, &meta.mtime, &meta.mtime, UtimensatFlags::NoFollowSymlink).map_err(self.sys(
            "utimensat",
            path,
            "AT_SYMLINK_NOFOLLOW",
        ))
    }

    fn keep_xattr(&self, name: &str) -> bool {
        self.unpacker.keeps_xattr(name)
    }

    fn hardlink(&mut self, parent: BorrowedFd<'_>, name: &OsStr, path: &[u8], target: &[u8]) -> Result<(), LayerError> {
        let target = clean_path(target).map_err(|m| self.refuse(path, format!("hardlink target: {m}")))?;
        if target.is_empty() {
            return Err(self.refuse(path, "hardlink to the layer root"));
        }
        let (tdir, tname) = split_parent(&target);
        let tparent = self.open_dir(tdir, path, false)?;
        let tname = OsStr::from_bytes(tname);
        let link = |d: BorrowedFd<'_>| linkat(tparent.as_fd(), tname, d, name, AtFlags::empty());
        match link(parent) {
            Err(Errno::ENOENT) => {
                Err(self.refuse(path, format!("hardlink target {} is not in the layer", String::from_utf8_lossy(&target))))
            }
            Err(Errno::EEXIST) => {
                self.remove(parent.as_fd(), name, path)?;
                link(parent).map_err(self.sys("linkat", path, ""))
            }
            r => r.map_err(self.sys("linkat", path, "")),
        }
    }

    fn whiteout(&mut self, path: &[u8], parent_path: &[u8], name: &[u8], meta: &Meta) -> Result<(), LayerError> {
        let parent = self.parent(parent_path, path)?;
        if name == OPAQUE_MARKER {
            return sysxattr::fsetxattr(parent.as_fd(), self.unpacker.opaque_xattr(), b"y", &String::from_utf8_lossy(parent_path))
                .map_err(|e| self.refuse(path, e.to_string()));
        }
        if name.starts_with(b".wh..wh.") {
            return Ok(()); // aufs bookkeeping (.wh..wh.plnk, .wh..wh.aufs): nothing to do
        }
        let hidden = OsStr::from_bytes(&name[WHITEOUT_PREFIX.len()..]);
        if hidden.is_empty() || hidden == ".." || hidden == "." {
            return Err(self.refuse(path, "whiteout of nothing"));
        }
        self.replace(parent.as_fd(), hidden, path, |d| mknodat(d, hidden, SFlag::S_IFCHR, Mode::empty(), 0), "mknodat (whiteout)")?;
        let meta = Meta { mode: 0, xattrs: Vec::new(), ..*meta };
        self.special_meta(parent.as_fd(), hidden, path, &meta, false)
    }

    /// Sets the directory mtimes that creating their contents disturbed.
    fn finish_dirs(&mut self) -> Result<(), LayerError> {
        self.cached = None;
        for (path, time) in std::mem::take(&mut self.dir_times) {
            if path.is_empty() {
                futimens(self.root.as_fd(), &time, &time).map_err(self.sys("futimens", b"/", ""))?;
                continue;
            }
            let (dir, name) = split_parent(&path);
            let parent = self.open_dir(dir, &path, false)?;
            match utimensat(parent.as_fd(), OsStr::from_bytes(name), &time, &time, UtimensatFlags::NoFollowSymlink) {
                Ok(()) | Err(Errno::ENOENT) => {}
                Err(e) => return Err(self.sys("utimensat", &path, "AT_SYMLINK_NOFOLLOW")(e)),
            }
        }
        Ok(())
    }
}

/// Removes `name` in `dir`, recursively if it is a directory, never
/// following symlinks.
pub fn remove_at(dir: BorrowedFd<'_>, name: &OsStr) -> nix::Result<()> {
    match unlinkat(dir, name, UnlinkatFlags::NoRemoveDir) {
        Err(Errno::EISDIR) => {}
        r => return r,
    }
    let fd = openat(dir, name, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())?;
    let mut d = nix::dir::Dir::from_fd(fd.try_clone().map_err(|_| Errno::EMFILE)?)?;
    let names: Vec<Vec<u8>> =
        d.iter().filter_map(Result::ok).map(|e| e.file_name().to_bytes().to_vec()).filter(|n| n != b"." && n != b"..").collect();
    for n in names {
        remove_at(fd.as_fd(), OsStr::from_bytes(&n))?;
    }
    unlinkat(dir, name, UnlinkatFlags::RemoveDir)
}

#[cfg(test)]
#[path = "apply_tests.rs"]
pub(crate) mod tests;
