//! `strata restore`: make the container again from its bundle and a
//! checkpoint, with CRIU restoring its processes.
//!
//! ```text
//!  strata restore                                     criu swrk
//!    check flags, bundle, checkpoint (CRIU version, image)
//!    private mount namespace (every mount below goes with this process)
//!    reserve the id (status creating: a kill from here leaves what delete undoes)
//!    cgroups made, limits written
//!    rootfs at <state>/criu-root: the bundle's rootfs bound, or the overlay
//!      rebuilt from the layer store with the saved writable layer
//!    spawn ───────────────────────────────────────────▶ (joins the cgroups first)
//!    RESTORE (root, external mounts, joined namespaces, stdio pipes) ──▶
//!    ◀── setup-namespaces: prestart, createRuntime hooks
//!    ◀── orphan-pts-master: the new pty's master to --console-socket
//!    ◀── post-restore: the restored init's pid (strata's child)
//!    ◀── RESTORE ok
//!    state saved (running), pid file; then detach, or wait as `run` does
//! ```

use std::os::fd::{AsFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::mount::{MsFlags, mount};
use nix::sys::signal::{SigSet, SigmaskHow, sigprocmask};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::unistd::Pid;
use oci_spec::runtime::LinuxNamespaceType;
use rust_criu::rust_criu_protobuf::rpc::{Cgroup_root, Criu_cg_mode, Criu_opts, Criu_req_type, Inherit_fd, Join_namespace};

use super::dump::{ext_mount, mkdir, open_dir, raw, with_log};
use super::{CheckpointError, Criu, CriuError, CriuFlags, DESCRIPTORS_FILE, Meta, Result, plan, rootfs};
use crate::cgroups;
use crate::container;
use crate::hooks;
use crate::layers::{self, Store};
use crate::spec;
use crate::state::{self, Root, State, Status};
use crate::sys;

#[derive(Debug, Clone, Default)]
pub struct RestoreOpts {
    pub criu: CriuFlags,
    pub id: String,
    pub bundle: PathBuf,
    pub detach: bool,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_subreaper: bool,
    pub lsm_profile: Option<String>,
    pub lsm_mount_context: Option<String>,
    pub store: PathBuf,
    pub systemd_cgroup: bool,
}

const LOG_FILE: &str = "restore.log";
const CRIU_ROOT: &str = "criu-root";

/// What a restore made, undone on failure (the restored tasks killed, the
/// cgroups, the layers and the state removed).
struct Undo<'a> {
    root: &'a Root,
    id: String,
    pid: Option<i32>,
    cgroup_dirs: Vec<PathBuf>,
    cgroup_paths: Vec<PathBuf>,
    layers: Option<Store>,
    armed: bool,
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        for p in cgroups::pids(&self.cgroup_paths).into_iter().chain(self.pid) {
            let _ = nix::sys::signal::kill(Pid::from_raw(p), nix::sys::signal::Signal::SIGKILL);
        }
        if let Some(p) = self.pid {
            let _ = nix::sys::wait::waitpid(Pid::from_raw(p), None);
        }
        for _ in 0..2000 {
            if cgroups::pids(&self.cgroup_paths).is_empty() {
                break;
            }
            std::thread::sleep(std::time::Duration::from_millis(1));
        }
        cgroups::remove(&self.cgroup_dirs);
        if let Some(store) = &self.layers {
            let _ = layers::remove_container(store, &self.id);
        }
        let _ = self.root.remove(&self.id);
    }
}

/// Restores the container; returns its exit code (0 with `--detach`).
pub fn restore(root: &Root, o: &RestoreOpts) -> Result<i32> {
    sys::close_from(3)?;
    let c = check(o)?;
    let signals = caller_signals(o)?;
    let linux = c.bundle.spec.linux().clone().unwrap_or_default();
    let hier = crate::cgroups::read_hierarchies();
    let placement = cgroups::placement(&hier, linux.cgroups_path().as_deref(), &o.id)?;
    let mut st = new_state(o, &c, &placement)?;
    let dir = root.reserve(&st)?;
    let mut undo = Undo {
        root,
        id: o.id.clone(),
        pid: None,
        cgroup_dirs: Vec::new(),
        cgroup_paths: placement.dirs.clone(),
        layers: None,
        armed: true,
    };
    make_cgroups(&placement, &linux, &mut undo)?;
    let criu_root = make_rootfs(&dir, o, &c, &mut undo)?;
    let pid = run_criu(o, &c, &st, &criu_root, &hier, &placement)?;
    finish(root, o, &mut st, &mut undo, pid)?;
    crate::logging::debug(|| format!("restore {}: running, pid {pid}, CRIU {}", o.id, super::version_text(c.version)));
    if o.detach {
        return Ok(0);
    }
    wait(root, &o.id, &signals, pid)
}

/// What restore checked before it made anything.
struct Checked {
    bundle: spec::Bundle,
    checkpoint: Checkpoint,
    image_dir: PathBuf,
    criu: Criu,
    version: u32,
    cg_mode: Criu_cg_mode,
    empty_ns: u32,
    /// An image-backed container's saved writable layer.
    saved: Option<rootfs::SavedRootfs>,
}

/// The flags, the bundle, the checkpoint and the CRIU that will read it,
/// each refused with a reason before anything is made. The mount namespace
/// of this process becomes its own first (see `private_mounts`).
fn check(o: &RestoreOpts) -> Result<Checked> {
    refuse_given("--lsm-profile", &o.lsm_profile)?;
    refuse_given("--lsm-mount-context", &o.lsm_mount_context)?;
    let cg_mode = o.criu.cg_mode()?;
    let empty_ns = o.criu.empty_ns()?;
    if o.systemd_cgroup {
        return Err(CheckpointError::Invalid("restore --systemd-cgroup: not supported yet; restore with cgroupfs paths".into()));
    }
    state::validate_id(&o.id)?;
    // First: a dir opened before the unshare would be of the host's mounts,
    // where CRIU (in this namespace) could mount nothing under it.
    private_mounts()?;
    let bundle = spec::load(&o.bundle)?;
    let image_dir = o.criu.image_dir();
    let checkpoint = Checkpoint::open(&image_dir)?;
    let criu = Criu::new(o.criu.criu.as_deref());
    let version = criu.version()?;
    if let Some(m) = checkpoint.meta.as_ref().filter(|m| m.criu_version > version) {
        return Err(CheckpointError::Invalid(format!(
            "the checkpoint in {} was made by CRIU {}; the installed CRIU ({}) is {}, older: restore needs CRIU {} or newer",
            image_dir.display(),
            super::version_text(m.criu_version),
            criu.path.display(),
            super::version_text(version),
            super::version_text(m.criu_version)
        )));
    }
    let image_backed = bundle.spec.annotations().as_ref().is_some_and(|a| a.contains_key(layers::bundle::ANN_LAYOUT));
    let saved = checkpoint.meta.as_ref().and_then(|m| m.image.clone());
    match (image_backed, &saved) {
        (true, None) => Err(CheckpointError::Invalid(format!(
            "the bundle {} is image-backed, but the checkpoint in {} holds no writable layer: it is of a container with a plain rootfs",
            bundle.dir.display(),
            image_dir.display()
        ))),
        (false, Some(_)) => Err(CheckpointError::Invalid(format!(
            "the checkpoint in {} is of an image-backed container, but the bundle {} has a plain rootfs: restore it with the bundle made by `strata bundle --image`",
            image_dir.display(),
            bundle.dir.display()
        ))),
        _ => Ok(Checked { bundle, checkpoint, image_dir, criu, version, cg_mode, empty_ns, saved }),
    }
}

/// In the foreground, as `run`: the signals to forward blocked (before
/// anything can be restored), and this process the subreaper.
fn caller_signals(o: &RestoreOpts) -> Result<SigSet> {
    let mut set = SigSet::empty();
    if !o.detach {
        crate::process::run::FORWARDED.iter().for_each(|s| set.add(*s));
        sigprocmask(SigmaskHow::SIG_BLOCK, Some(&set), None).map_err(sys::err("sigprocmask", "", "SIG_BLOCK"))?;
        if !o.no_subreaper {
            nix::sys::prctl::set_child_subreaper(true).map_err(sys::err("prctl", "", "PR_SET_CHILD_SUBREAPER"))?;
        }
    }
    Ok(set)
}

/// The container's record, `creating` until CRIU has restored it.
fn new_state(o: &RestoreOpts, c: &Checked, placement: &cgroups::Placement) -> Result<State> {
    Ok(State {
        id: o.id.clone(),
        pid: 0,
        init_start_time: 0,
        bundle: c.bundle.dir.clone(),
        rootfs: c.bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        config: State::new_config(&c.bundle.spec).map_err(|e| CheckpointError::Invalid(format!("config: {e}")))?,
        cgroup_dirs: cgroups::missing_dirs(placement),
        cgroup_paths: placement.dirs.clone(),
        systemd_unit: None,
        host_mounts: Vec::new(),
        resctrl_dirs: Vec::new(),
        owner: nix::unistd::geteuid().as_raw(),
        store: c.saved.is_some().then(|| o.store.clone()),
        creating: Some(state::Creator::current().map_err(|e| sys::io_err("read", Path::new("/proc/self/stat"))(e))?),
    })
}

/// The container's cgroups, made and limited as `create` makes them.
fn make_cgroups(placement: &cgroups::Placement, linux: &oci_spec::runtime::Linux, undo: &mut Undo<'_>) -> Result<()> {
    let extra_allow = if crate::userns::host_root() { cgroups::default_device_rules(linux) } else { Vec::new() };
    let missing = cgroups::missing_dirs(placement);
    cgroups::check_usable(placement, &missing)?;
    undo.cgroup_dirs = cgroups::create(placement, linux.resources().as_ref(), &extra_allow, &missing)?;
    undo.cgroup_dirs.extend(placement.dirs.iter().filter(|d| !undo.cgroup_dirs.contains(d)).cloned().collect::<Vec<_>>());
    cgroups::apply_devices(placement, linux.resources().as_ref(), &extra_allow)?;
    Ok(())
}

/// CRIU's root, `<state>/criu-root` (a mount point whose parent is not
/// overmounted, as CRIU needs): the bundle's rootfs bound there, or the
/// image-backed container's overlay rebuilt from the layer store.
fn make_rootfs(dir: &Path, o: &RestoreOpts, c: &Checked, undo: &mut Undo<'_>) -> Result<PathBuf> {
    let criu_root = dir.join(CRIU_ROOT);
    mkdir(&criu_root)?;
    if let Some(saved) = &c.saved {
        let store = Store::open(&o.store)?;
        let ann = c.bundle.spec.annotations().clone().unwrap_or_default();
        let hostname = c.bundle.spec.hostname().as_deref();
        let made = rootfs::rebuild(&store, &ann, hostname, &o.id, saved, &c.image_dir, criu_root.clone());
        undo.layers = Some(store);
        layers::mount_overlay(&made?)?;
    } else {
        let rootfs = &c.bundle.rootfs;
        mount(Some(rootfs), &criu_root, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(sys::err(
            "mount",
            format!("{} on {}", rootfs.display(), criu_root.display()),
            "MS_BIND|MS_REC",
        ))?;
    }
    prepare_mountpoints(&criu_root, &c.bundle.spec, &c.bundle.dir)?;
    Ok(criu_root)
}

/// CRIU's RESTORE request for this container, and the fds it must inherit
/// besides the image directory (the work directory, joined namespaces).
fn criu_opts(
    o: &RestoreOpts,
    c: &Checked,
    criu_root: &Path,
    hier: &[cgroups::Hierarchy],
    placement: &cgroups::Placement,
) -> Result<(Criu_opts, Vec<OwnedFd>)> {
    let spec = &c.bundle.spec;
    let mut fds = Vec::new();
    let mut opts = Criu_opts::new();
    opts.images_dir_fd = Some(raw(&c.checkpoint.dir));
    if let Some(w) = &o.criu.work_path {
        mkdir(w)?;
        let fd = open_dir(w)?;
        opts.work_dir_fd = Some(raw(&fd));
        fds.push(fd);
    }
    opts.evasive_devices = Some(true);
    opts.log_level = Some(4);
    opts.log_file = Some(LOG_FILE.into());
    opts.rst_sibling = Some(true);
    opts.root = Some(criu_root.display().to_string());
    opts.manage_cgroups = Some(true);
    opts.manage_cgroups_mode = Some(c.cg_mode.into());
    opts.notify_scripts = Some(true);
    opts.shell_job = Some(o.criu.shell_job);
    opts.ext_unix_sk = Some(o.criu.ext_unix_sk);
    opts.tcp_established = Some(o.criu.tcp_established);
    opts.file_locks = Some(o.criu.file_locks);
    opts.empty_ns = Some(c.empty_ns);
    opts.orphan_pts_master = Some(true);
    opts.auto_dedup = Some(o.criu.auto_dedup);
    opts.lazy_pages = Some(o.criu.lazy_pages);
    opts.config_file = plan::config_file(spec);
    for e in plan::external_mounts(spec, &c.bundle.dir, hier, &placement.dirs, &|p| super::resolve_in(criu_root, p)) {
        opts.ext_mnt.push(ext_mount(&e.key, &e.source.display().to_string()));
    }
    if spec.linux().as_ref().and_then(|l| l.masked_paths().as_ref()).is_some_and(|m| !m.is_empty()) {
        opts.ext_mnt.push(ext_mount("/dev/null", "/dev/null"));
    }
    fds.extend(joined_namespaces(spec, &mut opts)?);
    for (key, fd) in plan::inherited_pipes(&c.checkpoint.descriptors) {
        let mut i = Inherit_fd::new();
        i.key = Some(key);
        i.fd = Some(fd);
        opts.inherit_fd.push(i);
    }
    for (ctrl, path) in plan::cgroup_roots(hier, &placement.dirs) {
        let mut r = Cgroup_root::new();
        r.ctrl = ctrl;
        r.path = Some(path);
        opts.cg_root.push(r);
    }
    Ok((opts, fds))
}

/// Sends the RESTORE request and answers CRIU's notifications (the
/// runtime hooks, the console, the restored init's pid); returns that pid.
/// `criu_root` is unmounted after CRIU's answer, whatever it is.
fn run_criu(
    o: &RestoreOpts,
    c: &Checked,
    st: &State,
    criu_root: &Path,
    hier: &[cgroups::Hierarchy],
    placement: &cgroups::Placement,
) -> Result<i32> {
    let spec = &c.bundle.spec;
    let log = o.criu.work_path.clone().unwrap_or_else(|| c.image_dir.clone()).join(LOG_FILE);
    let (opts, fds) = criu_opts(o, c, criu_root, hier, placement)?;
    // In a user namespace the restored tasks read some images themselves,
    // as the container's root: lent to it for the restore, then taken back.
    let lent = match plan::has_namespace(spec, LinuxNamespaceType::User) {
        true => Some(LentImages::lend(&c.image_dir, &crate::userns::IdMaps::from_spec(&spec.linux().clone().unwrap_or_default()))?),
        false => None,
    };
    let mut inherit = vec![c.checkpoint.dir.as_fd()];
    inherit.extend(fds.iter().map(|f| f.as_fd()));
    let mut pid = None;
    let hooks_state = |pid: i32| {
        let mut s = st.clone();
        s.pid = pid;
        serde_json::to_vec(&s.oci(Status::Created)).unwrap_or_default()
    };
    let restored = c.criu.request(
        Criu_req_type::RESTORE,
        Some(opts),
        &inherit,
        |criu_pid| cgroups::attach(&placement.dirs, criu_pid as i32).map_err(|e| notify_err("join cgroups", e)),
        |n| {
            crate::logging::debug(|| format!("restore {}: CRIU notifies {} (pid {})", o.id, n.script, n.pid));
            match n.script {
                "setup-namespaces" => {
                    if let Some(h) = spec.hooks() {
                        let json = hooks_state(n.pid);
                        let run =
                            |kind, list: &Option<Vec<_>>| hooks::run_all_in(kind, list.as_deref().unwrap_or(&[]), &json, &c.bundle.dir);
                        run("prestart", h.prestart()).map_err(|e| notify_err(n.script, e))?;
                        run("createRuntime", h.create_runtime()).map_err(|e| notify_err(n.script, e))?;
                    }
                }
                "post-restore" => pid = Some(n.pid),
                "orphan-pts-master" => send_console(o.console_socket.as_deref(), n.fd).map_err(|e| notify_err(n.script, e))?,
                _ => {}
            }
            Ok(())
        },
    );
    drop(lent);
    let _ = nix::mount::umount2(criu_root, nix::mount::MntFlags::MNT_DETACH);
    let _ = std::fs::remove_dir(criu_root);
    if let Err(e) = restored {
        return Err(with_log(e.into(), &log));
    }
    pid.ok_or_else(|| CheckpointError::Invalid("CRIU restored the container but never said its pid (no post-restore)".into()))
}

/// The container is running: its state saved (no longer `creating`), the
/// pid file written, and nothing left to undo.
fn finish(root: &Root, o: &RestoreOpts, st: &mut State, undo: &mut Undo<'_>, pid: i32) -> Result<()> {
    undo.pid = Some(pid);
    st.pid = pid;
    st.init_start_time = state::proc_stat(pid)
        .map(|s| s.start_time)
        .ok_or_else(|| CheckpointError::Invalid(format!("restored init (pid {pid}) is gone")))?;
    st.cgroup_dirs = undo.cgroup_dirs.clone();
    st.creating = None;
    root.save(st)?;
    if let Some(pf) = &o.pid_file {
        crate::process::parent::write_pid_file(pf, pid).map_err(|e| CheckpointError::Invalid(e.to_string()))?;
    }
    undo.armed = false;
    Ok(())
}

/// In the foreground: waits for the restored init as `run` waits for its
/// own, forwarding signals, then removes the container.
fn wait(root: &Root, id: &str, signals: &SigSet, pid: i32) -> Result<i32> {
    let sfd = SignalFd::with_flags(signals, SfdFlags::SFD_CLOEXEC).map_err(sys::err("signalfd", "", "SFD_CLOEXEC"))?;
    let code = match crate::process::run::wait_loop(Pid::from_raw(pid), &sfd, None) {
        Ok(c) => c,
        Err(e) => {
            let _ = container::delete(root, id, true);
            return Err(e.into());
        }
    };
    container::destroy(root, &root.load(id)?)?;
    Ok(code)
}

/// The checkpoint directory, opened and checked.
struct Checkpoint {
    dir: OwnedFd,
    meta: Option<Meta>,
    descriptors: Vec<String>,
}

impl Checkpoint {
    fn open(dir: &Path) -> Result<Checkpoint> {
        let fd = open_dir(dir).map_err(|e| CheckpointError::Invalid(format!("--image-path {}: {e}", dir.display())))?;
        if !dir.join("inventory.img").is_file() {
            return Err(CheckpointError::Invalid(format!("--image-path {}: holds no checkpoint (no inventory.img)", dir.display())));
        }
        let path = dir.join(DESCRIPTORS_FILE);
        let text = std::fs::read(&path).map_err(sys::io_err("read", &path))?;
        let descriptors = serde_json::from_slice(&text).map_err(|e| CheckpointError::Invalid(format!("{}: {e}", path.display())))?;
        Ok(Checkpoint { dir: fd, meta: Meta::read(dir)?, descriptors })
    }
}

/// Namespaces the config joins by path: the network and pid ones were
/// left out of the image (`dump`) and are handed to CRIU as fds under
/// runc's keys; the others CRIU joins itself. Returns the fds to pass.
fn joined_namespaces(spec: &oci_spec::runtime::Spec, opts: &mut Criu_opts) -> Result<Vec<OwnedFd>> {
    let mut files = Vec::new();
    for (kind, path) in plan::joined_namespaces(spec) {
        match kind {
            LinuxNamespaceType::Network | LinuxNamespaceType::Pid => {
                let fd = nix::fcntl::open(&path, nix::fcntl::OFlag::O_RDONLY | nix::fcntl::OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty())
                    .map_err(|e| {
                        CheckpointError::Invalid(format!(
                            "Requested {} namespace {} does not exist: {e}",
                            plan::ns_name(kind),
                            path.display()
                        ))
                    })?;
                let mut i = Inherit_fd::new();
                i.key = Some(plan::ns_key(kind).into());
                i.fd = Some(raw(&fd));
                opts.inherit_fd.push(i);
                files.push(fd);
            }
            LinuxNamespaceType::Cgroup => {
                return Err(CheckpointError::Invalid(format!(
                    "restore: joining a cgroup namespace by path ({}) is not supported by CRIU",
                    path.display()
                )));
            }
            _ => {
                let mut j = Join_namespace::new();
                j.ns = Some(plan::ns_name(kind).into());
                j.ns_file = Some(path.display().to_string());
                opts.join_ns.push(j);
            }
        }
    }
    Ok(files)
}

/// The restored pty's master goes where a created container's would.
fn send_console(socket: Option<&Path>, master: Option<OwnedFd>) -> std::result::Result<(), String> {
    let master = master.ok_or("CRIU sent no pty master")?;
    let socket = socket.ok_or("the checkpointed process has a terminal: --console-socket is required")?;
    let sock = std::os::unix::net::UnixStream::connect(socket).map_err(|e| format!("connect {}: {e}", socket.display()))?;
    crate::process::sync::send_fd(&sock, &master, "").map_err(|e| e.to_string())
}

fn notify_err(what: &str, e: impl std::fmt::Display) -> CriuError {
    CriuError::Notify { script: what.to_string(), msg: e.to_string() }
}

fn refuse_given(flag: &str, v: &Option<String>) -> Result<()> {
    match v.as_deref() {
        Some(s) if !s.is_empty() => {
            Err(CheckpointError::Invalid(format!("{flag} {s}: strata applies no LSM (AppArmor or SELinux) labels")))
        }
        _ => Ok(()),
    }
}

/// Every mount restore makes on the host side (the rootfs at criu-root)
/// is made in a mount namespace of its own, a slave of the host's: it is
/// gone with this process and CRIU, whatever ends them.
fn private_mounts() -> Result<()> {
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNS).map_err(sys::err("unshare", "", "CLONE_NEWNS"))?;
    mount(None::<&str>, "/", None::<&str>, MsFlags::MS_REC | MsFlags::MS_SLAVE, None::<&str>).map_err(sys::err(
        "mount",
        "/",
        "MS_REC|MS_SLAVE",
    ))?;
    Ok(())
}

/// Makes the mountpoints the checkpointed mounts need in the rootfs, as
/// `create` made them (CRIU mounts on them, it does not make them): for
/// each mount in config order, outside a tmpfs (whose contents CRIU
/// restores) and other than the cgroup ones (made by their parent mount).
/// Bind mounts are bound while this runs, so that a mountpoint nested in
/// one is made in its source, as at create; they are unbound before CRIU
/// starts.
fn prepare_mountpoints(criu_root: &Path, spec: &oci_spec::runtime::Spec, bundle: &Path) -> Result<()> {
    let mounts = spec.mounts().clone().unwrap_or_default();
    let tmpfs: Vec<String> =
        mounts.iter().filter(|m| m.typ().as_deref() == Some("tmpfs")).map(|m| plan::clean_dest(m.destination())).collect();
    let mut bound: Vec<PathBuf> = Vec::new();
    let result = (|| {
        for m in &mounts {
            let dest = plan::clean_dest(m.destination());
            if m.typ().as_deref() == Some("cgroup") || tmpfs.iter().any(|t| dest.starts_with(&format!("{t}/"))) {
                continue;
            }
            let at = criu_root.join(super::resolve_in(criu_root, &dest).trim_start_matches('/'));
            let bind =
                m.typ().as_deref() == Some("bind") || m.options().as_ref().is_some_and(|o| o.iter().any(|o| o == "bind" || o == "rbind"));
            let source = m.source().clone().map(|s| if s.is_absolute() { s } else { bundle.join(s) });
            let file = bind && source.as_ref().is_some_and(|s| s.metadata().is_ok_and(|md| !md.is_dir()));
            if std::fs::symlink_metadata(&at).is_err() {
                let dir = if file { at.parent().map(Path::to_path_buf).unwrap_or_default() } else { at.clone() };
                std::fs::create_dir_all(&dir).map_err(sys::io_err("mkdir", &dir))?;
                if file {
                    std::fs::File::create(&at).map_err(sys::io_err("create", &at))?;
                }
            }
            if let (true, Some(src)) = (bind, source) {
                mount(Some(&src), &at, None::<&str>, MsFlags::MS_BIND | MsFlags::MS_REC, None::<&str>).map_err(sys::err(
                    "mount",
                    format!("{} on {}", src.display(), at.display()),
                    "MS_BIND|MS_REC (restore mountpoints)",
                ))?;
                bound.push(at);
            }
        }
        Ok(())
    })();
    for at in bound.iter().rev() {
        let _ = nix::mount::umount2(at, nix::mount::MntFlags::MNT_DETACH);
    }
    result
}

/// The checkpoint's files, owned by the container's root (its host ids)
/// while a user-namespaced container is restored, and given back to their
/// owners (and modes) when dropped.
///
/// CRIU 4.2's restored init reads its time namespace's image before its
/// user namespace has maps, with unmapped (overflow) ids: for that one
/// read the directory is searchable and `timens-*.img` (clock offsets,
/// nothing secret) readable by others too.
struct LentImages {
    owners: Vec<(PathBuf, u32, u32, u32)>,
}

impl LentImages {
    fn lend(dir: &Path, maps: &crate::userns::IdMaps) -> Result<LentImages> {
        use std::os::unix::fs::MetadataExt;
        let (uid, gid) = (crate::userns::IdMaps::root_of(&maps.uid), crate::userns::IdMaps::root_of(&maps.gid));
        let mut lent = LentImages { owners: Vec::new() };
        let entries = std::fs::read_dir(dir).map_err(sys::io_err("readdir", dir))?;
        let paths = std::iter::once(dir.to_path_buf()).chain(entries.flatten().map(|e| e.path()));
        for p in paths {
            let md = std::fs::symlink_metadata(&p).map_err(sys::io_err("stat", &p))?;
            if !(md.is_dir() || md.is_file()) {
                continue;
            }
            std::os::unix::fs::lchown(&p, Some(uid), Some(gid)).map_err(sys::io_err("chown", &p))?;
            lent.owners.push((p.clone(), md.uid(), md.gid(), md.mode() & 0o7777));
            let name = p.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
            let extra = if md.is_dir() {
                0o001
            } else if name.starts_with("timens-") {
                0o004
            } else {
                0
            };
            if extra != 0 {
                use std::os::unix::fs::PermissionsExt;
                std::fs::set_permissions(&p, std::fs::Permissions::from_mode(md.mode() & 0o7777 | extra))
                    .map_err(sys::io_err("chmod", &p))?;
            }
        }
        Ok(lent)
    }
}

impl Drop for LentImages {
    fn drop(&mut self) {
        use std::os::unix::fs::PermissionsExt;
        for (p, uid, gid, mode) in &self.owners {
            let _ = std::os::unix::fs::lchown(p, Some(*uid), Some(*gid));
            let _ = std::fs::set_permissions(p, std::fs::Permissions::from_mode(*mode));
        }
    }
}
