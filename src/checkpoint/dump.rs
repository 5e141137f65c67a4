//! `strata checkpoint`: CRIU dumps the container's processes into the
//! image directory; strata adds its stdio (`descriptors.json`), its own
//! record (`strata.json`) and, for an image-backed container, its writable
//! layer. Without `--leave-running` (or `--pre-dump`) the container is
//! then gone, as with runc: `state` no longer finds it, and `restore`
//! makes it again.

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use oci_spec::runtime::{LinuxNamespaceType, Spec};
use rust_criu::rust_criu_protobuf::rpc::{Criu_cg_mode, Criu_features, Criu_opts, Criu_page_server_info, Criu_req_type, Ext_mount_map};

use super::{CheckpointError, Criu, CriuFlags, DESCRIPTORS_FILE, META_FILE, Meta, Result, plan, rootfs};
use crate::container;
use crate::state::{self, Root, Status};
use crate::sys;

/// `checkpoint`'s own flags, beside the shared ones.
#[derive(Debug, Clone, Default)]
pub struct CheckpointOpts {
    pub criu: CriuFlags,
    pub parent_path: Option<PathBuf>,
    pub leave_running: bool,
    pub tcp_skip_in_flight: bool,
    pub link_remap: bool,
    pub pre_dump: bool,
    pub status_fd: Option<i32>,
    /// ADDRESS:PORT
    pub page_server: Option<String>,
}

const LOG_FILE: &str = "dump.log";

pub fn checkpoint(root: &Root, id: &str, o: &CheckpointOpts) -> Result<()> {
    let (st, status) = container::load(root, id)?;
    if !matches!(status, Status::Running | Status::Paused) {
        return Err(CheckpointError::Invalid(format!("Container cannot be checkpointed in {} state", status.as_str())));
    }
    let spec: Spec = serde_json::from_str(st.config.get()).map_err(|e| CheckpointError::Invalid(format!("container {id}: config: {e}")))?;
    // The flags first: a bad one is refused before CRIU is started.
    let (cg_mode, empty_ns) = (o.criu.cg_mode()?, o.criu.empty_ns()?);
    let page_server = o.page_server.as_deref().map(parse_page_server).transpose()?;
    let image_dir = o.criu.image_dir();
    mkdir(&image_dir)?;
    let images = open_dir(&image_dir)?;
    let parent = parent_path(&image_dir, o.parent_path.as_deref())?;
    let flags = Flags { cg_mode, empty_ns, page_server, parent };
    let criu = Criu::new(o.criu.criu.as_deref());
    let version = criu.version()?;
    check_features(&criu, o)?;
    let work = o.criu.work_path.as_ref().map(|w| mkdir(w).and_then(|()| open_dir(w))).transpose()?;
    let log = o.criu.work_path.clone().unwrap_or_else(|| image_dir.clone()).join(LOG_FILE);
    let mut opts = dump_opts(o, &st, &spec, &flags)?;
    opts.images_dir_fd = Some(raw(&images));
    opts.work_dir_fd = work.as_ref().map(raw);
    let kind = if o.pre_dump { Criu_req_type::PRE_DUMP } else { Criu_req_type::DUMP };
    if !o.pre_dump {
        write_descriptors(&image_dir, st.pid)?;
    }
    crate::logging::debug(|| {
        format!("checkpoint {id}: CRIU {} {kind:?} of pid {} into {}", super::version_text(version), st.pid, image_dir.display())
    });
    let mut inherit = vec![images.as_fd()];
    inherit.extend(work.iter().map(|w| w.as_fd()));
    let mut saved = None;
    let dumped = criu.request(
        kind,
        Some(opts),
        &inherit,
        |_| Ok(()),
        |n| {
            crate::logging::debug(|| format!("checkpoint {id}: CRIU notifies {}", n.script));
            if n.script == "post-dump"
                && let Some(store) = &st.store
            {
                // The tasks are frozen (and not yet killed): the files hold still.
                let s = rootfs::save(store, id, &image_dir)
                    .map_err(|e| super::CriuError::Notify { script: n.script.into(), msg: e.to_string() })?;
                saved = Some(s);
            }
            Ok(())
        },
    );
    if let Err(e) = dumped {
        return Err(with_log(e.into(), &log));
    }
    if o.pre_dump {
        return Ok(());
    }
    let meta = Meta { id: id.to_string(), criu_version: version, image: saved };
    state::write_atomic(&image_dir.join(META_FILE), &serde_json::to_vec_pretty(&meta).unwrap_or_default())?;
    if !o.leave_running {
        // CRIU ended the processes; what is left of the container goes.
        if let Err(e) = container::destroy(root, &st) {
            crate::logging::emit("warning", &format!("checkpoint {id}: removing the container after the dump: {e}"));
        }
    }
    Ok(())
}

/// The flags as CRIU takes them, checked.
struct Flags {
    cg_mode: Criu_cg_mode,
    empty_ns: u32,
    page_server: Option<(String, i32)>,
    parent: Option<PathBuf>,
}

/// `--pre-dump` and `--lazy-pages` need what this CRIU and kernel may lack.
fn check_features(criu: &Criu, o: &CheckpointOpts) -> Result<()> {
    if o.pre_dump {
        want(
            criu,
            Criu_features { mem_track: Some(true), ..Default::default() },
            "--pre-dump",
            "track memory changes (the kernel lacks soft-dirty page tracking)",
        )?;
    }
    if o.criu.lazy_pages {
        want(
            criu,
            Criu_features { lazy_pages: Some(true), ..Default::default() },
            "--lazy-pages",
            "restore pages lazily (the kernel lacks userfaultfd)",
        )?;
    }
    Ok(())
}

/// CRIU's DUMP (or PRE_DUMP) request for container `st`, but for the fds.
fn dump_opts(o: &CheckpointOpts, st: &crate::state::State, spec: &Spec, f: &Flags) -> Result<Criu_opts> {
    let hier = crate::cgroups::read_hierarchies();
    let mut opts = Criu_opts::new();
    opts.log_level = Some(4);
    opts.log_file = Some(LOG_FILE.into());
    opts.root = Some(st.rootfs.display().to_string());
    opts.manage_cgroups = Some(true);
    opts.manage_cgroups_mode = Some(f.cg_mode.into());
    opts.notify_scripts = Some(true);
    opts.pid = Some(st.pid);
    opts.shell_job = Some(o.criu.shell_job);
    opts.leave_running = Some(o.leave_running);
    opts.tcp_established = Some(o.criu.tcp_established);
    opts.tcp_skip_in_flight = Some(o.tcp_skip_in_flight);
    opts.link_remap = Some(o.link_remap);
    opts.ext_unix_sk = Some(o.criu.ext_unix_sk);
    opts.file_locks = Some(o.criu.file_locks);
    opts.empty_ns = Some(f.empty_ns);
    opts.orphan_pts_master = Some(true);
    opts.auto_dedup = Some(o.criu.auto_dedup);
    opts.lazy_pages = Some(o.criu.lazy_pages);
    opts.config_file = plan::config_file(spec);
    opts.freeze_cgroup = plan::freezer(&hier, &st.cgroup_paths).map(|p| p.display().to_string());
    if let Some(fd) = o.status_fd.filter(|_| o.criu.lazy_pages) {
        opts.status_fd = Some(fd);
    }
    if let Some((address, port)) = &f.page_server {
        let mut ps = Criu_page_server_info::new();
        ps.address = Some(address.clone());
        ps.port = Some(*port);
        opts.ps = protobuf::MessageField::some(ps);
    }
    if let Some(p) = &f.parent {
        opts.parent_img = Some(p.display().to_string());
        opts.track_mem = Some(true);
    }
    // Namespaces joined by path stay outside the image: restore joins them again.
    for (kind, path) in plan::joined_namespaces(spec) {
        if matches!(kind, LinuxNamespaceType::Network | LinuxNamespaceType::Pid) {
            let ino = std::fs::metadata(&path).map_err(sys::io_err("stat", &path))?;
            opts.external.push(format!("{}[{}]:{}", plan::ns_name(kind), std::os::unix::fs::MetadataExt::ino(&ino), plan::ns_key(kind)));
        }
    }
    if !o.pre_dump {
        let live_root = PathBuf::from(format!("/proc/{}/root", st.pid));
        for e in plan::external_mounts(spec, &st.bundle, &hier, &st.cgroup_paths, &|p| super::resolve_in(&live_root, p)) {
            opts.ext_mnt.push(ext_mount(&e.key, &e.key));
        }
    }
    Ok(opts)
}

/// `descriptors.json`: the container's stdio as it is at the dump.
fn write_descriptors(image_dir: &Path, pid: i32) -> Result<()> {
    let descriptors: Vec<String> =
        (0..3).map(|fd| std::fs::read_link(format!("/proc/{pid}/fd/{fd}")).map(|p| p.display().to_string()).unwrap_or_default()).collect();
    let json = serde_json::to_vec(&descriptors).unwrap_or_default();
    Ok(state::write_atomic(&image_dir.join(DESCRIPTORS_FILE), &json)?)
}

fn want(criu: &Criu, f: Criu_features, flag: &str, what: &str) -> Result<()> {
    let have = criu.features(f.clone())?;
    let ok = (f.mem_track.is_none() || have.mem_track == Some(true)) && (f.lazy_pages.is_none() || have.lazy_pages == Some(true));
    if !ok {
        return Err(CheckpointError::Invalid(format!("{flag}: CRIU cannot {what} on this host")));
    }
    Ok(())
}

/// `--parent-path`: relative to the image directory, and a directory.
fn parent_path(image_dir: &Path, parent: Option<&Path>) -> Result<Option<PathBuf>> {
    let Some(p) = parent.filter(|p| !p.as_os_str().is_empty()) else { return Ok(None) };
    if p.is_absolute() {
        return Err(CheckpointError::Invalid("--parent-path must be relative".into()));
    }
    let real = image_dir.join(p);
    match std::fs::metadata(&real) {
        Ok(m) if m.is_dir() => Ok(Some(p.to_path_buf())),
        Ok(_) => Err(CheckpointError::Invalid(format!("invalid --parent-path: {}: not a directory", real.display()))),
        Err(e) => Err(CheckpointError::Invalid(format!("invalid --parent-path: stat {}: {e}", real.display()))),
    }
}

fn parse_page_server(s: &str) -> Result<(String, i32)> {
    let bad = || CheckpointError::Invalid("Use --page-server ADDRESS:PORT to specify page server".into());
    let (addr, port) = s.rsplit_once(':').ok_or_else(bad)?;
    let addr = addr.trim_start_matches('[').trim_end_matches(']');
    if addr.is_empty() || port.is_empty() {
        return Err(bad());
    }
    let port = port.parse::<i32>().map_err(|_| CheckpointError::Invalid("Invalid port number".into()))?;
    Ok((addr.to_string(), port))
}

pub(super) fn ext_mount(key: &str, val: &str) -> Ext_mount_map {
    let mut m = Ext_mount_map::new();
    m.key = Some(key.to_string());
    m.val = Some(val.to_string());
    m
}

pub(super) fn mkdir(dir: &Path) -> Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    match std::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir) {
        Ok(()) => Ok(()),
        Err(e) => Err(sys::io_err("mkdir", dir)(e).into()),
    }
}

pub(super) fn open_dir(dir: &Path) -> Result<OwnedFd> {
    Ok(open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
        "open",
        dir.display(),
        "O_DIRECTORY",
    ))?)
}

/// An fd's number, for CRIU's options: the fd itself is handed over by
/// `criu::Criu::request` (`inherit`), or is one CRIU gets anyway.
pub(super) fn raw(fd: &OwnedFd) -> i32 {
    use std::os::fd::AsRawFd;
    fd.as_fd().as_raw_fd()
}

/// A CRIU failure with the lines of its log that say why.
pub(super) fn with_log(e: CheckpointError, log: &Path) -> CheckpointError {
    match super::log_excerpt(log) {
        Some(lines) => CheckpointError::Invalid(format!("{e} (log {}):\n{lines}", log.display())),
        None => CheckpointError::Invalid(format!("{e} (log {})", log.display())),
    }
}
