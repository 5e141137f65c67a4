//! Tests of `apply` and `difftar`: a table of hostile tars (each refused,
//! nothing left in the store, nothing written outside), then the happy
//! path with every entry kind, then a round trip through `diff_to_tar`.

use super::*;
use crate::image::guard::clean_path;
use crate::layers::difftar::diff_to_tar;
use crate::layers::store::tests::tmp_store;
use crate::layers::stream::Compression;
use crate::layers::unique_name;
use crate::layers::unpacker::{OPAQUE_XATTR, Unpacker};
use std::os::unix::fs::{FileTypeExt, MetadataExt, PermissionsExt};
use std::path::PathBuf;

/// An in-memory layer tar.
pub(crate) struct Tar {
    b: tar::Builder<Vec<u8>>,
}

impl Tar {
    pub fn new() -> Tar {
        Tar { b: tar::Builder::new(Vec::new()) }
    }

    fn header(kind: tar::EntryType, mode: u32) -> tar::Header {
        let mut h = tar::Header::new_gnu();
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(1_000_000);
        h.set_size(0);
        h
    }

    /// Appends with the name written raw, so hostile names get through.
    fn raw(&mut self, mut h: tar::Header, name: &str, link: Option<&str>, data: &[u8]) -> &mut Tar {
        let gnu = h.as_gnu_mut().unwrap();
        gnu.name = [0; 100];
        gnu.name[..name.len()].copy_from_slice(name.as_bytes());
        if let Some(l) = link {
            gnu.linkname = [0; 100];
            gnu.linkname[..l.len()].copy_from_slice(l.as_bytes());
        }
        h.set_size(data.len() as u64);
        h.set_cksum();
        self.b.append(&h, data).unwrap();
        self
    }

    pub fn file(&mut self, name: &str, data: &[u8]) -> &mut Tar {
        self.raw(Self::header(tar::EntryType::Regular, 0o644), name, None, data)
    }

    pub fn file_with(&mut self, name: &str, mode: u32, uid: u64, mtime: u64, data: &[u8]) -> &mut Tar {
        let mut h = Self::header(tar::EntryType::Regular, mode);
        h.set_uid(uid);
        h.set_gid(uid);
        h.set_mtime(mtime);
        self.raw(h, name, None, data)
    }

    pub fn dir(&mut self, name: &str, mode: u32) -> &mut Tar {
        self.raw(Self::header(tar::EntryType::Directory, mode), name, None, b"")
    }

    pub fn symlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(Self::header(tar::EntryType::Symlink, 0o777), name, Some(target), b"")
    }

    pub fn hardlink(&mut self, name: &str, target: &str) -> &mut Tar {
        self.raw(Self::header(tar::EntryType::Link, 0o644), name, Some(target), b"")
    }

    pub fn node(&mut self, name: &str, kind: tar::EntryType, major: u32, minor: u32) -> &mut Tar {
        let mut h = Self::header(kind, 0o620);
        h.set_device_major(major).unwrap();
        h.set_device_minor(minor).unwrap();
        self.raw(h, name, None, b"")
    }

    pub fn pax(&mut self, records: &[(&str, &[u8])]) -> &mut Tar {
        self.b.append_pax_extensions(records.iter().copied()).unwrap();
        self
    }

    pub fn finish(&mut self) -> Vec<u8> {
        std::mem::replace(&mut self.b, tar::Builder::new(Vec::new())).into_inner().unwrap()
    }
}

pub(crate) fn gzip(data: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(data).unwrap();
    e.finish().unwrap()
}

/// A blob written to a temp file, with its true digest and diff_id.
pub(crate) struct Blob {
    pub path: PathBuf,
    pub source: crate::image::source::BlobSource,
    pub media_type: &'static str,
    pub digest: Digest,
    pub diff_id: Digest,
}

impl Drop for Blob {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

pub(crate) fn blob(tar: &[u8], media_type: &'static str, compressed: Vec<u8>) -> Blob {
    let path = std::env::temp_dir().join(format!("strata-blob-{}", unique_name()));
    std::fs::write(&path, &compressed).unwrap();
    Blob {
        source: crate::image::source::BlobSource::File(path.clone()),
        path,
        media_type,
        digest: Digest::of(&compressed),
        diff_id: Digest::of(tar),
    }
}

fn gz_blob(tar: &[u8]) -> Blob {
    blob(tar, "application/vnd.oci.image.layer.v1.tar+gzip", gzip(tar))
}

fn check(b: &Blob) -> BlobCheck<'_> {
    BlobCheck { source: &b.source, media_type: b.media_type, digest: Some(&b.digest), diff_id: &b.diff_id, size: None }
}

fn tmp_dir(tag: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("strata-apply-{tag}-{}", unique_name()));
    std::fs::create_dir(&d).unwrap();
    d
}

/// Unpacks through the store (as `prepare_rootfs` does), for the hostile
/// cases: the error must name the entry, and the store stay empty.
/// Refused in place and with the inflating thread (readahead) alike.
fn refused(name: &str, b: &Blob, expect: &str) {
    for ahead in [false, true] {
        let s = tmp_store("hostile");
        let held = s.0.shared_lock().unwrap();
        let chain = b.diff_id.clone();
        let r = s.0.ensure_layer(&held, &chain, None, &chain, |dir| apply_layer_with(check(b), dir, ahead).map(|a| a.size));
        let err = match r {
            Ok(_) => panic!("{name} (readahead {ahead}): accepted"),
            Err(e) => e.to_string(),
        };
        assert!(err.contains(expect), "{name} (readahead {ahead}): error {err:?} does not mention {expect:?}");
        assert!(s.0.layer_meta(&chain).unwrap().is_none(), "{name}: layer left");
        for sub in ["layers", "tmp", "l"] {
            assert_eq!(std::fs::read_dir(s.0.root().join(sub)).unwrap().count(), 0, "{name}: {sub}/ not empty");
        }
    }
}

#[test]
fn hostile_tars_are_refused() {
    let outside = tmp_dir("outside");
    let out = outside.to_str().unwrap();
    let cases: Vec<(&str, Vec<u8>, &str)> = vec![
        ("dotdot", Tar::new().file("../../etc/passwd", b"x").finish(), "`..`"),
        ("dotdot inside", Tar::new().dir("a/", 0o755).file("a/../../x", b"x").finish(), "`..`"),
        ("write through abs symlink", Tar::new().symlink("evil", "/etc").file("evil/x", b"x").finish(), "symlink"),
        ("write through outside symlink", Tar::new().symlink("evil", out).file("evil/x", b"x").finish(), "symlink"),
        (
            "write through relative symlink",
            Tar::new().dir("a/", 0o755).symlink("a/up", "../../../..").file("a/up/x", b"x").finish(),
            "symlink",
        ),
        ("dir through symlink", Tar::new().symlink("s", out).dir("s/sub/", 0o755).finish(), "symlink"),
        ("hardlink up", Tar::new().hardlink("h", "../outside").finish(), "`..`"),
        ("hardlink to host file", Tar::new().hardlink("h", "/etc/passwd").finish(), "not in the layer"),
        ("hardlink via symlink", Tar::new().symlink("s", "/etc").hardlink("h", "s/passwd").finish(), "symlink"),
        ("whiteout of dotdot", Tar::new().file(".wh..", b"").finish(), "whiteout of nothing"),
        ("root as a file", Tar::new().file("./", b"x").finish(), "must be a directory"),
    ];
    for (name, tar, expect) in &cases {
        refused(name, &gz_blob(tar), expect);
    }
    // Corrupt blobs.
    let tar = Tar::new().file("a", &[7u8; 100_000]).finish();
    let gz = gzip(&tar);
    let truncated = blob(&tar, "application/vnd.oci.image.layer.v1.tar+gzip", gz[..gz.len() / 2].to_vec());
    refused("truncated gzip", &truncated, "layer sha256:");
    let mut bad_digest = gz_blob(&tar);
    bad_digest.digest = Digest::of(b"something else");
    refused("digest mismatch", &bad_digest, "digest mismatch");
    let mut bad_diff = gz_blob(&tar);
    bad_diff.diff_id = Digest::of(b"something else");
    refused("diff_id mismatch", &bad_diff, "diff_id mismatch");
    let good = gz_blob(&tar);
    let dest = tmp_dir("size");
    let wrong_size = BlobCheck { size: Some(1), ..check(&good) };
    let err = apply_layer(wrong_size, &dest).unwrap_err().to_string();
    assert!(err.contains("size mismatch"), "{err}");
    std::fs::remove_dir_all(&dest).unwrap();
    assert_eq!(std::fs::read_dir(&outside).unwrap().count(), 0, "something was written outside");
    assert!(!Path::new("/etc/x").exists());
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn replacing_entries_never_follows_them() {
    let outside = tmp_dir("outside2");
    std::fs::write(outside.join("victim"), b"safe").unwrap();
    let victim = outside.join("victim");
    let tar = Tar::new()
        .symlink("s", outside.to_str().unwrap())
        .dir("s/", 0o755) // replaces the symlink by a directory
        .file("s/victim", b"pwned")
        .symlink("f", victim.to_str().unwrap())
        .file("f", b"pwned") // replaces the symlink, never writes through it
        .file("orig", b"original")
        .hardlink("l", "orig")
        .file("l", b"replaced") // replaces the link; orig is untouched
        .file("/abs", b"leading slash is dropped")
        .finish();
    let dest = tmp_dir("replace");
    let b = gz_blob(&tar);
    apply_layer(check(&b), &dest).unwrap();
    assert_eq!(std::fs::read(&victim).unwrap(), b"safe");
    assert!(std::fs::symlink_metadata(dest.join("s")).unwrap().is_dir());
    assert_eq!(std::fs::read(dest.join("s/victim")).unwrap(), b"pwned");
    assert!(std::fs::symlink_metadata(dest.join("f")).unwrap().is_file());
    assert_eq!(std::fs::read(dest.join("orig")).unwrap(), b"original");
    assert_eq!(std::fs::read(dest.join("l")).unwrap(), b"replaced");
    assert_eq!(std::fs::read(dest.join("abs")).unwrap(), b"leading slash is dropped");
    std::fs::remove_dir_all(&dest).unwrap();
    std::fs::remove_dir_all(&outside).unwrap();
}

#[test]
fn clean_path_table() {
    let ok = |raw: &str, want: &str| assert_eq!(clean_path(raw.as_bytes()).unwrap(), want.as_bytes(), "{raw}");
    ok("./a/b/", "a/b");
    ok("/etc//passwd", "etc/passwd");
    ok("./", "");
    ok(".wh..wh..opq", ".wh..wh..opq");
    for bad in ["..", "a/..", "../x", "a/../b"] {
        assert!(clean_path(bad.as_bytes()).is_err(), "{bad}");
    }
}

#[test]
fn compression_detection() {
    assert_eq!(Compression::detect("application/vnd.oci.image.layer.v1.tar+gzip", b""), Compression::Gzip);
    assert_eq!(Compression::detect("application/vnd.docker.image.rootfs.diff.tar.gzip", b""), Compression::Gzip);
    assert_eq!(Compression::detect("application/vnd.oci.image.layer.v1.tar+zstd", b""), Compression::Zstd);
    assert_eq!(Compression::detect("application/vnd.oci.image.layer.v1.tar", b"\x1f\x8b"), Compression::None);
    assert_eq!(Compression::detect("", b"\x1f\x8b\x08"), Compression::Gzip);
    assert_eq!(Compression::detect("application/octet-stream", b"\x28\xb5\x2f\xfd"), Compression::Zstd);
    assert_eq!(Compression::detect("", b"etc/"), Compression::None);
}

/// A layer with every kind of entry, as root (owners, devices, trusted xattrs).
fn full_layer() -> Vec<u8> {
    Tar::new()
        .dir("./", 0o755)
        .dir("bin/", 0o755)
        .pax(&[
            ("SCHILY.xattr.security.capability", b"\x01\x00\x00\x02\x00\x20\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00"),
            ("SCHILY.xattr.user.note", b"hi"),
            ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
        ])
        .file_with("bin/su", 0o4755, 0, 1_500_000_000, b"#!/bin/sh\n")
        .file_with("bin/ping", 0o755, 0, 1_500_000_000, b"ping")
        .symlink("bin/sh", "su")
        .hardlink("bin/su2", "bin/su")
        .dir("tmp/", 0o1777)
        .file_with("home/u/f", 0o600, 1000, 1_600_000_000, b"user file")
        .node("dev/null", tar::EntryType::Char, 1, 3)
        .node("dev/loop0", tar::EntryType::Block, 7, 0)
        .node("run/fifo", tar::EntryType::Fifo, 0, 0)
        .file("gone/.wh.deleted", b"")
        .dir("opq/", 0o755)
        .file("opq/.wh..wh..opq", b"")
        .file("opq/kept", b"k")
        .dir("home/", 0o755)
        .finish()
}

fn assert_full_layer(dest: &Path) {
    let meta = |p: &str| std::fs::symlink_metadata(dest.join(p)).unwrap_or_else(|e| panic!("{p}: {e}"));
    assert_eq!(meta("bin/su").mode() & 0o7777, 0o4755, "setuid kept after chown");
    assert_eq!(meta("bin/su").mtime(), 1_500_000_000);
    assert_eq!(meta("bin/su").ino(), meta("bin/su2").ino());
    assert_eq!(std::fs::read_link(dest.join("bin/sh")).unwrap(), Path::new("su"));
    assert_eq!(meta("tmp").mode() & 0o7777, 0o1777);
    assert_eq!((meta("home/u/f").uid(), meta("home/u/f").gid()), (1000, 1000));
    assert_eq!(meta("home").mtime(), 1_000_000, "dir mtime set after its contents");
    assert_eq!(meta("dev/null").rdev(), nix::sys::stat::makedev(1, 3));
    assert!(meta("dev/null").file_type().is_char_device());
    assert!(meta("dev/loop0").file_type().is_block_device());
    assert!(meta("run/fifo").file_type().is_fifo());
    assert_eq!(meta("gone/deleted").rdev(), 0, "whiteout is a 0/0 char device");
    assert!(meta("gone/deleted").file_type().is_char_device());
    let xattr = |p: &str, n: &str| sysxattr::lgetxattr(dest.join(p).as_os_str().as_bytes(), n, p).unwrap();
    assert_eq!(xattr("opq", OPAQUE_XATTR).as_deref(), Some(&b"y"[..]));
    assert_eq!(xattr("bin/su", "user.note").as_deref(), Some(&b"hi"[..]));
    assert!(xattr("bin/su", "security.capability").is_some(), "file capability kept after chown");
    assert!(xattr("bin/su", "user.overlay.redirect").is_none(), "overlay's own xattrs are dropped, user.* ones too");
}

#[test]
fn every_entry_kind_and_compression() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let tar = full_layer();
    let zst = zstd::encode_all(&tar[..], 3).unwrap();
    let blobs = [
        gz_blob(&tar),
        blob(&tar, "application/vnd.docker.image.rootfs.diff.tar.gzip", gzip(&tar)),
        blob(&tar, "application/vnd.oci.image.layer.v1.tar+zstd", zst.clone()),
        blob(&tar, "application/vnd.oci.image.layer.v1.tar", tar.clone()),
        blob(&tar, "", zst),
    ];
    for b in &blobs {
        for ahead in [false, true] {
            let dest = tmp_dir("full");
            let applied = apply_layer_with(check(b), &dest, ahead).unwrap_or_else(|e| panic!("{} ({ahead}): {e}", b.media_type));
            assert_eq!(applied.size, 10 + 4 + 9 + 1);
            assert_full_layer(&dest);
            std::fs::remove_dir_all(&dest).unwrap();
        }
    }
}

#[test]
fn diff_to_tar_round_trips() {
    if !nix::unistd::geteuid().is_root() {
        return;
    }
    let tar = full_layer();
    let first = tmp_dir("rt1");
    apply_layer(check(&gz_blob(&tar)), &first).unwrap();
    let (gz, diff) = diff_to_tar(&first, Vec::new()).unwrap();
    assert_eq!(diff.digest, Digest::of(&gz));
    assert_eq!(diff.size, gz.len() as u64);
    let plain = {
        let mut out = Vec::new();
        flate2::read::GzDecoder::new(&gz[..]).read_to_end(&mut out).unwrap();
        out
    };
    assert_eq!(diff.diff_id, Digest::of(&plain));
    // Whiteouts and opaque dirs went back to their tar form.
    let names: Vec<String> =
        tar::Archive::new(&plain[..]).entries().unwrap().map(|e| e.unwrap().path().unwrap().display().to_string()).collect();
    assert!(names.contains(&"gone/.wh.deleted".to_string()), "{names:?}");
    assert!(names.contains(&"opq/.wh..wh..opq".to_string()), "{names:?}");
    let second = tmp_dir("rt2");
    let b = blob(&plain, "application/vnd.oci.image.layer.v1.tar+gzip", gz);
    apply_layer(check(&b), &second).unwrap();
    assert_full_layer(&second);
    // The same upper dir gives the same blob.
    let (_, again) = diff_to_tar(&first, Vec::new()).unwrap();
    assert_eq!(again, diff);
    std::fs::remove_dir_all(&first).unwrap();
    std::fs::remove_dir_all(&second).unwrap();
}

#[test]
fn unprivileged_apply_skips_owners() {
    // Runs as whoever runs the tests; as root it checks the same path.
    let tar = Tar::new().dir("d/", 0o750).file_with("d/f", 0o640, 0, 1_234_567_890, b"data").symlink("d/l", "f").finish();
    let dest = tmp_dir("plain");
    apply_layer(check(&gz_blob(&tar)), &dest).unwrap();
    assert_eq!(std::fs::read(dest.join("d/f")).unwrap(), b"data");
    assert_eq!(std::fs::metadata(dest.join("d")).unwrap().permissions().mode() & 0o7777, 0o750);
    assert_eq!(std::fs::metadata(dest.join("d/f")).unwrap().mtime(), 1_234_567_890);
    std::fs::remove_dir_all(&dest).unwrap();
}

/// The full layer unpacked as root of a user namespace (a rootless store):
/// owners through the maps, no device nodes, opaque dirs and the image's
/// own xattrs as a `userxattr` overlay needs them, and overlay xattrs from
/// the image (which would steer the mount) dropped in both namespaces.
#[test]
fn a_user_namespace_unpack_keeps_what_a_rootless_overlay_can_use() {
    use crate::userns::{self, IdMaps, Range};
    if !userns::host_root() {
        return;
    }
    let mut tar = Tar::new();
    let layer = tar.dir("./", 0o755).dir("opq/", 0o755).file("opq/.wh..wh..opq", b"").file("gone/.wh.x", b"");
    let layer = layer
        .pax(&[
            ("SCHILY.xattr.user.overlay.redirect", b"/etc"),
            ("SCHILY.xattr.trusted.overlay.opaque", b"y"),
            ("SCHILY.xattr.user.note", b"hi"),
        ])
        .dir("steer/", 0o755);
    let tar = layer.file_with("home/u/f", 0o600, 1000, 1_600_000_000, b"user file").node("dev/null", tar::EntryType::Char, 1, 3).finish();
    let dest = tmp_dir("userns");
    let maps = IdMaps {
        uid: vec![Range { inside: 0, outside: 200_000, count: 65536 }],
        gid: vec![Range { inside: 0, outside: 300_000, count: 65536 }],
    };
    std::os::unix::fs::chown(&dest, Some(200_000), Some(300_000)).unwrap();
    let b = gz_blob(&tar);
    userns::run_as_root(&maps, || {
        // No assert here: a panic would unwind in the forked child.
        if Unpacker::current() != Unpacker::UserNsRoot {
            return Err(format!("unpacking as {:?}", Unpacker::current()));
        }
        apply_layer(check(&b), &dest).map(drop).map_err(|e| e.to_string())
    })
    .unwrap();
    let meta = |p: &str| std::fs::symlink_metadata(dest.join(p));
    let f = meta("home/u/f").unwrap();
    assert_eq!((f.uid(), f.gid()), (201_000, 301_000), "owners through the maps");
    assert!(meta("dev/null").is_err(), "no device node in a rootless store");
    assert!(meta("gone/x").unwrap().file_type().is_char_device(), "whiteouts are made all the same");
    let xattrs = |p: &str| sysxattr::llistxattr(dest.join(p).as_os_str().as_bytes(), p).unwrap();
    assert_eq!(xattrs("opq"), ["user.overlay.opaque"]);
    assert_eq!(xattrs("steer"), ["user.note"], "overlay xattrs from the image are dropped");
    std::fs::remove_dir_all(&dest).unwrap();
}
