//! The layer store on disk, overlay2-style:
//!
//! ```text
//! <store>/layers/<chainid-hex>/{diff/, link, meta.json}   one unpacked layer
//! <store>/l/<short-id> -> ../layers/<chainid-hex>/diff     short names for lowerdir
//! <store>/locks/<chainid-hex>.lock, store.lock              flock(2) files
//! <store>/tmp/<unique>/                                     layers being unpacked or removed
//! <store>/containers/<id>/{upper,work,init,merged,layers.json}
//! <store>/userns.json                                       a rootless store's id maps
//! ```
//!
//! A rootless store (`userns.json`) belongs to an unprivileged user: its
//! layers were unpacked as root of a user namespace with the maps recorded
//! there (so files keep their owners, as the user's subordinate ids), its
//! opaque dirs are marked `user.overlay.opaque`, and its overlays are
//! mounted with `userxattr` by the container's init. Only root of a user
//! namespace with those maps may remove what it holds, so its removals run
//! there (`userns::run_as_root`).
//!
//! A layer appears under `layers/` only by a rename of a complete temp dir,
//! so a crash or a bad blob never leaves half a layer. `ensure_layer` holds
//! the layer's lock while unpacking, so concurrent creators of one image
//! unpack each layer once. `prune` takes the store lock exclusively;
//! preparing a container holds it shared from the first layer until its
//! references are recorded, so a layer being used is never pruned.

use std::collections::{HashMap, HashSet};
use std::ffi::OsStr;
use std::fs::File;
use std::os::fd::AsFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{AtFlags, Flock, FlockArg, OFlag};
use nix::sys::stat::{Mode, fstatat};
use serde::{Deserialize, Serialize};

use super::LayerError;
use crate::image::digest::{Digest, short_id};
use crate::userns::{self, IdMaps};

const USERNS_FILE: &str = "userns.json";

/// What `meta.json` records about an unpacked layer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LayerMeta {
    pub chain_id: String,
    pub diff_id: String,
    pub parent: Option<String>,
    /// Bytes of regular file data in `diff/`.
    pub size: u64,
}

/// What `containers/<id>/layers.json` records: the layers a container's
/// rootfs stacks (bottom first) and the image they came from.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContainerRefs {
    pub chain_ids: Vec<String>,
    pub layout: PathBuf,
    pub manifest: String,
    pub config: String,
}

/// A layer as `strata images`/`df` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerInfo {
    pub chain_id: Digest,
    pub diff_id: String,
    pub parent: Option<String>,
    pub size: u64,
    /// How many containers stack this layer.
    pub containers: usize,
}

/// The directories of one container.
#[derive(Debug, Clone)]
pub struct ContainerDirs {
    pub dir: PathBuf,
    pub upper: PathBuf,
    pub work: PathBuf,
    pub init: PathBuf,
    pub merged: PathBuf,
}

/// A held flock on `store.lock`: shared while preparing, exclusive to prune.
pub struct StoreLock(#[allow(dead_code)] Flock<File>);

/// A layer store rooted at a directory (by default `/var/lib/strata`).
#[derive(Debug, Clone)]
pub struct Store {
    root: PathBuf,
}

fn io_err<'a>(op: &'static str, path: &'a Path) -> impl FnOnce(std::io::Error) -> LayerError + 'a {
    move |source| LayerError::Io { op, path: path.to_path_buf(), source }
}

fn flock(path: &Path, arg: FlockArg, what: &'static str) -> Result<Flock<File>, LayerError> {
    // std opens with O_CLOEXEC.
    let file = File::options().create(true).truncate(false).write(true).open(path).map_err(io_err("open", path))?;
    Flock::lock(file, arg).map_err(|(_, e)| LayerError::Sys(crate::sys::err("flock", path.display(), what)(e)))
}

/// A container id must be a plain file name (the same rule as the state
/// directory's).
pub fn check_id(id: &str) -> Result<(), LayerError> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+:@".contains(&b));
    if ok { Ok(()) } else { Err(LayerError::BadId(id.to_string())) }
}

impl Store {
    /// Opens (creating) the store at `root`.
    pub fn open(root: &Path) -> Result<Store, LayerError> {
        let root = std::path::absolute(root).map_err(io_err("absolute", root))?;
        // `~/.local/share` may not exist yet for a rootless caller.
        if let Some(parent) = root.parent() {
            std::fs::create_dir_all(parent).map_err(io_err("mkdir -p", parent))?;
        }
        for sub in ["", "layers", "l", "locks", "tmp", "containers"] {
            let dir = root.join(sub);
            match std::fs::create_dir(&dir) {
                Ok(()) => {
                    use std::os::unix::fs::PermissionsExt;
                    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).map_err(io_err("chmod", &dir))?;
                }
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(io_err("mkdir", &dir)(e)),
            }
        }
        let store = Store { root };
        store.reclaim_tmp();
        Ok(store)
    }

    /// An unpack killed midway leaves its dir in `tmp/`. Every unpack holds
    /// the store lock shared, so when the lock can be had exclusively at
    /// once, nothing in `tmp/` is in use and it all goes (with dangling `l/`
    /// links). Otherwise the next open tries again.
    fn reclaim_tmp(&self) {
        let tmp = self.root.join("tmp");
        if std::fs::read_dir(&tmp).map(|mut rd| rd.next().is_none()).unwrap_or(true) {
            return;
        }
        if let Ok(_all) = flock(&self.root.join("locks/store.lock"), FlockArg::LockExclusiveNonblock, "LOCK_EX|LOCK_NB") {
            let _ = self.sweep();
        }
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    fn layer_dir(&self, chain: &Digest) -> PathBuf {
        self.root.join("layers").join(chain.hex())
    }

    /// The unpacked contents of a layer.
    pub fn diff_dir(&self, chain: &Digest) -> PathBuf {
        self.layer_dir(chain).join("diff")
    }

    /// `<store>/l/<short-id>`: the name a layer goes by in lowerdir.
    pub fn link_path(&self, chain: &Digest) -> PathBuf {
        self.root.join("l").join(short_id(chain))
    }

    pub fn shared_lock(&self) -> Result<StoreLock, LayerError> {
        Ok(StoreLock(flock(&self.root.join("locks/store.lock"), FlockArg::LockShared, "LOCK_SH")?))
    }

    pub fn exclusive_lock(&self) -> Result<StoreLock, LayerError> {
        Ok(StoreLock(flock(&self.root.join("locks/store.lock"), FlockArg::LockExclusive, "LOCK_EX")?))
    }

    /// Whether the layer `chain` is unpacked (its meta.json is written last).
    pub fn has_layer(&self, chain: &Digest) -> bool {
        self.layer_dir(chain).join("meta.json").exists()
    }

    /// The layer's meta.json, `None` if the layer is not in the store.
    pub fn layer_meta(&self, chain: &Digest) -> Result<Option<LayerMeta>, LayerError> {
        let path = self.layer_dir(chain).join("meta.json");
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| LayerError::Parse { path, msg: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Makes sure the layer `chain` is unpacked: if it is not, `unpack`
    /// fills an empty temp `diff/` dir and returns the data size, and the
    /// result is renamed into place. Two callers racing on one layer run
    /// `unpack` once; the other waits and reuses it.
    pub fn ensure_layer(
        &self,
        _held: &StoreLock,
        chain: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
        unpack: impl FnOnce(&Path) -> Result<u64, LayerError>,
    ) -> Result<LayerMeta, LayerError> {
        if let Some(meta) = self.layer_meta(chain)? {
            self.ensure_link(chain)?;
            return Ok(meta);
        }
        let _lock = flock(&self.root.join("locks").join(format!("{}.lock", chain.hex())), FlockArg::LockExclusive, "LOCK_EX")?;
        if let Some(meta) = self.layer_meta(chain)? {
            self.ensure_link(chain)?;
            return Ok(meta);
        }
        let tmp = self.root.join("tmp").join(super::unique_name());
        std::fs::create_dir(&tmp).map_err(io_err("mkdir", &tmp))?;
        let result = self.fill(&tmp, chain, parent, diff_id, unpack);
        match result {
            Ok(meta) => {
                let dest = self.layer_dir(chain);
                std::fs::rename(&tmp, &dest).map_err(io_err("rename", &tmp)).inspect_err(|_| remove_tree(&tmp))?;
                self.ensure_link(chain)?;
                Ok(meta)
            }
            Err(e) => {
                remove_tree(&tmp);
                Err(e)
            }
        }
    }

    fn fill(
        &self,
        tmp: &Path,
        chain: &Digest,
        parent: Option<&Digest>,
        diff_id: &Digest,
        unpack: impl FnOnce(&Path) -> Result<u64, LayerError>,
    ) -> Result<LayerMeta, LayerError> {
        let diff = tmp.join("diff");
        std::fs::create_dir(&diff).map_err(io_err("mkdir", &diff))?;
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&diff, std::fs::Permissions::from_mode(0o755)).map_err(io_err("chmod", &diff))?;
        }
        let size = unpack(&diff)?;
        let meta = LayerMeta { chain_id: chain.to_string(), diff_id: diff_id.to_string(), parent: parent.map(Digest::to_string), size };
        let link = tmp.join("link");
        std::fs::write(&link, short_id(chain)).map_err(io_err("write", &link))?;
        let path = tmp.join("meta.json");
        std::fs::write(&path, serde_json::to_vec_pretty(&meta).expect("meta serializes")).map_err(io_err("write", &path))?;
        Ok(meta)
    }

    /// Creates `l/<short>` if missing (it is made after the rename, so a
    /// crash in between is repaired by the next user of the layer).
    fn ensure_link(&self, chain: &Digest) -> Result<(), LayerError> {
        let link = self.link_path(chain);
        let target = Path::new("../layers").join(chain.hex()).join("diff");
        match std::os::unix::fs::symlink(&target, &link) {
            Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => Err(io_err("symlink", &link)(e)),
            _ => Ok(()),
        }
    }

    /// The paths of a container's directories (not created).
    pub fn container_dirs(&self, id: &str) -> Result<ContainerDirs, LayerError> {
        check_id(id)?;
        let dir = self.root.join("containers").join(id);
        Ok(ContainerDirs { upper: dir.join("upper"), work: dir.join("work"), init: dir.join("init"), merged: dir.join("merged"), dir })
    }

    /// Creates `containers/<id>/` and its upper, work, init and merged dirs.
    /// Fails if the container already has a directory.
    pub fn create_container(&self, id: &str) -> Result<ContainerDirs, LayerError> {
        let dirs = self.container_dirs(id)?;
        match std::fs::create_dir(&dirs.dir) {
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(LayerError::Exists(id.to_string()));
            }
            r => r.map_err(io_err("mkdir", &dirs.dir))?,
        }
        for d in [&dirs.upper, &dirs.work, &dirs.init, &dirs.merged] {
            std::fs::create_dir(d).map_err(io_err("mkdir", d))?;
        }
        Ok(dirs)
    }

    pub fn write_refs(&self, id: &str, refs: &ContainerRefs) -> Result<(), LayerError> {
        let path = self.container_dirs(id)?.dir.join("layers.json");
        Ok(crate::image::write::write_atomic(&path, &serde_json::to_vec_pretty(refs).expect("refs serialize"))?)
    }

    pub fn read_refs(&self, id: &str) -> Result<Option<ContainerRefs>, LayerError> {
        let path = self.container_dirs(id)?.dir.join("layers.json");
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| LayerError::Parse { path, msg: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Removes a container's directories and references; layers stay.
    /// Refuses while `merged` is still a mount point.
    pub fn remove_container(&self, id: &str) -> Result<(), LayerError> {
        let dirs = self.container_dirs(id)?;
        match std::fs::remove_dir(&dirs.merged) {
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) => {
                return Err(LayerError::Busy(dirs.merged));
            }
            // Gone already, or not empty (then not a mount point either,
            // which is checked next): remove_dir_all takes care of it.
            _ => {}
        }
        if is_mount_point(&dirs.merged) {
            return Err(LayerError::Busy(dirs.merged));
        }
        self.remove_trees(&[dirs.dir])
    }

    /// The id maps of a rootless store, `None` for root's.
    pub fn user_maps(&self) -> Result<Option<IdMaps>, LayerError> {
        let path = self.root.join(USERNS_FILE);
        match std::fs::read(&path) {
            Ok(data) => serde_json::from_slice(&data).map(Some).map_err(|e| LayerError::Parse { path, msg: e.to_string() }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("read", &path)(e)),
        }
    }

    /// Makes this a rootless store with `maps`, or checks that it is one
    /// with these very maps: its layers' owners on disk are those maps'
    /// host ids, so a container mapping other ids would see wrong owners.
    pub fn claim_user_maps(&self, maps: &IdMaps) -> Result<(), LayerError> {
        let path = self.root.join(USERNS_FILE);
        if self.user_maps()?.is_none() {
            // Written whole, then linked in: of two racing claims one wins, and
            // the other compares against it.
            let tmp = self.root.join("tmp").join(super::unique_name());
            std::fs::write(&tmp, serde_json::to_vec_pretty(maps).expect("maps serialize")).map_err(io_err("write", &tmp))?;
            let linked = std::fs::hard_link(&tmp, &path);
            let _ = std::fs::remove_file(&tmp);
            match linked {
                Err(e) if e.kind() != std::io::ErrorKind::AlreadyExists => return Err(io_err("link", &path)(e)),
                _ => {}
            }
        }
        let have = self.user_maps()?.unwrap_or_default();
        if have != *maps {
            let show = |m: &IdMaps| {
                format!("uid {} / gid {}", IdMaps::text(&m.uid).trim().replace('\n', ", "), IdMaps::text(&m.gid).trim().replace('\n', ", "))
            };
            return Err(LayerError::Plan(format!(
                "the rootless store {} holds layers unpacked with the id maps {}; this container maps {}: use the same linux.uidMappings and linux.gidMappings, or another --store",
                self.root.display(),
                show(&have),
                show(maps)
            )));
        }
        Ok(())
    }

    /// Removes trees of this store (gone already is fine). In a rootless
    /// store, run by its unprivileged user, they hold files of the user's
    /// subordinate ids, so the removal runs as root of the store's user
    /// namespace.
    fn remove_trees(&self, paths: &[PathBuf]) -> Result<(), LayerError> {
        let remove = || -> Result<(), LayerError> {
            for p in paths {
                match std::fs::remove_dir_all(p) {
                    Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(io_err("remove", p)(e)),
                    _ => {}
                }
            }
            Ok(())
        };
        match self.user_maps()? {
            Some(maps) if !nix::unistd::geteuid().is_root() => Ok(userns::run_as_root(&maps, || remove().map_err(|e| e.to_string()))?),
            _ => remove(),
        }
    }

    fn container_ids(&self) -> Result<Vec<String>, LayerError> {
        let dir = self.root.join("containers");
        let mut ids = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io_err("readdir", &dir))? {
            let e = e.map_err(io_err("readdir", &dir))?;
            ids.push(e.file_name().to_string_lossy().into_owned());
        }
        Ok(ids)
    }

    /// How many containers use each chain id.
    fn usage(&self) -> Result<HashMap<String, usize>, LayerError> {
        let mut count = HashMap::new();
        for id in self.container_ids()? {
            if let Some(refs) = self.read_refs(&id)? {
                for c in refs.chain_ids.into_iter().collect::<HashSet<_>>() {
                    *count.entry(c).or_insert(0) += 1;
                }
            }
        }
        Ok(count)
    }

    pub fn list_layers(&self) -> Result<Vec<LayerInfo>, LayerError> {
        let usage = self.usage()?;
        let dir = self.root.join("layers");
        let mut out = Vec::new();
        for e in std::fs::read_dir(&dir).map_err(io_err("readdir", &dir))? {
            let e = e.map_err(io_err("readdir", &dir))?;
            let Ok(chain) = Digest::parse(&format!("sha256:{}", e.file_name().to_string_lossy())) else {
                continue;
            };
            if let Some(meta) = self.layer_meta(&chain)? {
                let containers = usage.get(chain.as_str()).copied().unwrap_or(0);
                out.push(LayerInfo { chain_id: chain, diff_id: meta.diff_id, parent: meta.parent, size: meta.size, containers });
            }
        }
        out.sort_by(|a, b| a.chain_id.cmp(&b.chain_id));
        Ok(out)
    }

    /// Removes every layer no container uses, with its `l/` link, and what
    /// crashed unpacks left in `tmp/`. Returns the chain ids removed.
    pub fn prune(&self) -> Result<Vec<String>, LayerError> {
        let _all = self.exclusive_lock()?;
        let usage = self.usage()?;
        let mut removed = Vec::new();
        let mut doomed_dirs = Vec::new();
        for layer in self.list_layers()? {
            if usage.contains_key(layer.chain_id.as_str()) {
                continue;
            }
            let chain = &layer.chain_id;
            let _lock = flock(&self.root.join("locks").join(format!("{}.lock", chain.hex())), FlockArg::LockExclusive, "LOCK_EX")?;
            // Renamed away first, so the layer vanishes at once, whole.
            let doomed = self.root.join("tmp").join(super::unique_name());
            let dir = self.layer_dir(chain);
            std::fs::rename(&dir, &doomed).map_err(io_err("rename", &dir))?;
            let link = self.link_path(chain);
            match std::fs::remove_file(&link) {
                Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                    return Err(io_err("remove", &link)(e));
                }
                _ => {}
            }
            doomed_dirs.push(doomed);
            removed.push(chain.to_string());
        }
        // What is left in tmp/ is swept next, should this fail.
        let _ = self.remove_trees(&doomed_dirs);
        self.sweep()?;
        Ok(removed)
    }

    /// Removes leftovers in `tmp/` and dangling `l/` links (only called
    /// under the exclusive store lock, when nothing is being unpacked).
    fn sweep(&self) -> Result<(), LayerError> {
        let tmp = self.root.join("tmp");
        let left: Vec<PathBuf> = std::fs::read_dir(&tmp).map_err(io_err("readdir", &tmp))?.flatten().map(|e| e.path()).collect();
        if !left.is_empty() {
            let _ = self.remove_trees(&left);
        }
        let l = self.root.join("l");
        for e in std::fs::read_dir(&l).map_err(io_err("readdir", &l))?.flatten() {
            if std::fs::metadata(e.path()).is_err() {
                let _ = std::fs::remove_file(e.path());
            }
        }
        Ok(())
    }

    /// (bytes in the container's upper dir, those plus its layers' sizes).
    pub fn container_usage(&self, id: &str) -> Result<(u64, u64), LayerError> {
        let dirs = self.container_dirs(id)?;
        let upper = du(&dirs.upper)?;
        let mut virt = upper;
        for c in self.read_refs(id)?.map(|r| r.chain_ids).unwrap_or_default() {
            if let Some(meta) = self.layer_meta(&Digest::parse(&c)?)? {
                virt += meta.size;
            }
        }
        Ok((upper, virt))
    }
}

/// Best-effort removal of a directory tree we made (std's remove_dir_all
/// never follows symlinks).
fn remove_tree(path: &Path) {
    let _ = std::fs::remove_dir_all(path);
}

fn is_mount_point(path: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    match (std::fs::symlink_metadata(path), path.parent().map(std::fs::symlink_metadata)) {
        (Ok(m), Some(Ok(p))) => m.dev() != p.dev(),
        _ => false,
    }
}

/// Bytes of regular file data under `dir`, each inode counted once, walked
/// fd by fd without following symlinks (the dir is a container's).
fn du(dir: &Path) -> Result<u64, LayerError> {
    let fd = match nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()) {
        Ok(fd) => fd,
        Err(Errno::ENOENT) => return Ok(0),
        Err(e) => {
            return Err(LayerError::Sys(crate::sys::err("open", dir.display(), "O_DIRECTORY")(e)));
        }
    };
    let mut seen = HashSet::new();
    du_at(fd, dir, &mut seen)
}

fn du_at(fd: std::os::fd::OwnedFd, path: &Path, seen: &mut HashSet<(u64, u64)>) -> Result<u64, LayerError> {
    let sys = |op| move |e| LayerError::Sys(crate::sys::err(op, path.display(), "")(e));
    let mut d = nix::dir::Dir::from_fd(fd.try_clone().map_err(io_err("dup", path))?).map_err(sys("fdopendir"))?;
    let names: Vec<Vec<u8>> =
        d.iter().filter_map(Result::ok).map(|e| e.file_name().to_bytes().to_vec()).filter(|n| n != b"." && n != b"..").collect();
    let mut total = 0;
    for n in names {
        let name = OsStr::from_bytes(&n);
        let Ok(st) = fstatat(fd.as_fd(), name, AtFlags::AT_SYMLINK_NOFOLLOW) else {
            continue;
        };
        match st.st_mode & libc::S_IFMT {
            libc::S_IFREG if seen.insert((st.st_dev, st.st_ino)) => total += st.st_size as u64,
            libc::S_IFDIR => {
                let sub = nix::fcntl::openat(
                    fd.as_fd(),
                    name,
                    OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
                    Mode::empty(),
                );
                if let Ok(sub) = sub {
                    total += du_at(sub, &path.join(name), seen)?;
                }
            }
            _ => {}
        }
    }
    Ok(total)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    pub(crate) struct TmpStore(pub Store);

    impl Drop for TmpStore {
        fn drop(&mut self) {
            let _ = std::fs::remove_dir_all(self.0.root());
        }
    }

    pub(crate) fn tmp_store(tag: &str) -> TmpStore {
        TmpStore(Store::open(&std::env::temp_dir().join(format!("strata-store-{tag}-{}", super::super::unique_name()))).unwrap())
    }

    fn d(c: char) -> Digest {
        Digest::parse(&format!("sha256:{}", c.to_string().repeat(64))).unwrap()
    }

    #[test]
    fn a_failed_unpack_leaves_nothing() {
        let s = tmp_store("fail");
        let held = s.0.shared_lock().unwrap();
        let err = s.0.ensure_layer(&held, &d('a'), None, &d('a'), |dir| {
            std::fs::write(dir.join("half"), b"x").unwrap();
            Err(LayerError::Plan("boom".into()))
        });
        assert!(err.is_err());
        assert!(s.0.layer_meta(&d('a')).unwrap().is_none());
        assert_eq!(std::fs::read_dir(s.0.root().join("tmp")).unwrap().count(), 0);
        assert_eq!(std::fs::read_dir(s.0.root().join("layers")).unwrap().count(), 0);
    }

    #[test]
    fn concurrent_creators_unpack_once() {
        let s = tmp_store("race");
        let runs = std::sync::atomic::AtomicUsize::new(0);
        std::thread::scope(|scope| {
            for _ in 0..4 {
                scope.spawn(|| {
                    let held = s.0.shared_lock().unwrap();
                    let meta = s.0.ensure_layer(&held, &d('b'), None, &d('b'), |dir| {
                        runs.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        std::thread::sleep(std::time::Duration::from_millis(50));
                        std::fs::write(dir.join("f"), b"hello").unwrap();
                        Ok(5)
                    });
                    assert_eq!(meta.unwrap().size, 5);
                });
            }
        });
        assert_eq!(runs.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(std::fs::read(s.0.link_path(&d('b')).join("f")).unwrap(), b"hello");
    }

    #[test]
    fn prune_keeps_layers_in_use() {
        let s = tmp_store("prune");
        let held = s.0.shared_lock().unwrap();
        for c in ['a', 'b'] {
            s.0.ensure_layer(&held, &d(c), None, &d(c), |_| Ok(1)).unwrap();
        }
        drop(held);
        s.0.create_container("c1").unwrap();
        s.0.write_refs("c1", &ContainerRefs { chain_ids: vec![d('a').to_string()], ..Default::default() }).unwrap();
        let layers = s.0.list_layers().unwrap();
        assert_eq!(layers.iter().map(|l| l.containers).collect::<Vec<_>>(), vec![1, 0]);
        assert_eq!(s.0.prune().unwrap(), vec![d('b').to_string()]);
        assert!(s.0.layer_meta(&d('a')).unwrap().is_some());
        assert!(s.0.link_path(&d('a')).exists());
        assert!(std::fs::symlink_metadata(s.0.link_path(&d('b'))).is_err());
        s.0.remove_container("c1").unwrap();
        assert!(!s.0.root().join("containers/c1").exists());
        assert_eq!(s.0.prune().unwrap(), vec![d('a').to_string()]);
        assert!(s.0.list_layers().unwrap().is_empty());
    }

    #[test]
    fn container_ids_are_file_names() {
        let s = tmp_store("ids");
        for bad in ["", "..", ".x", "a/b", "a b"] {
            assert!(matches!(s.0.create_container(bad), Err(LayerError::BadId(_))), "{bad:?}");
        }
        s.0.create_container("ok").unwrap();
        assert!(matches!(s.0.create_container("ok"), Err(LayerError::Exists(_))));
    }
}
