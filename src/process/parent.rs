//! The parent side of `create`: reserve the id, plan namespaces and
//! cgroups, clone init (into its cgroup2 cgroup; init moves itself into the
//! v1 ones), map ids, run the runtime hooks, and record the state. On any
//! failure everything made so far is undone (init killed, cgroups and state
//! dir removed).

use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};

use nix::sys::signal::{Signal, kill};
use nix::sys::stat::Mode;
use nix::sys::wait::waitpid;
use nix::unistd::Pid;

use super::init::{self, InitContext};
use super::sync::{self, Msg, SyncError};
use crate::cgroups::systemd::{self, Systemd, Unit};
use crate::cgroups::{self, CgroupError};
use crate::hooks::{self, HookError};
use crate::linux::idmap;
use crate::linux::namespaces::{self, ChildrenNs};
use crate::linux::netdev::{self, NetDevError};
use crate::linux::resctrl;
use crate::spec::{self, SpecError};
use crate::state::{self, Root, State, StateError, Status};
use crate::sys::{self, Forked, SysError};
use crate::userns::{self, IdMaps, UserMapError};

#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error(transparent)]
    Spec(#[from] SpecError),
    #[error(transparent)]
    State(#[from] StateError),
    #[error(transparent)]
    Sys(#[from] SysError),
    /// runc's words, which its users, clients' logs and its suite read.
    #[error("unable to start container process: {}", match .0 { SyncError::Init(m) => format!("error during container init: {m}"), e => e.to_string() })]
    Sync(#[from] SyncError),
    #[error(transparent)]
    Cgroup(#[from] CgroupError),
    #[error(transparent)]
    Hook(#[from] HookError),
    #[error(transparent)]
    Layers(#[from] crate::layers::LayerError),
    #[error(transparent)]
    NetDev(#[from] NetDevError),
    #[error(transparent)]
    UserMap(#[from] UserMapError),
    #[error("{0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, CreateError>;

#[derive(Debug, Clone, Default)]
pub struct CreateOpts {
    pub id: String,
    pub bundle: PathBuf,
    pub pid_file: Option<PathBuf>,
    pub console_socket: Option<PathBuf>,
    /// `--pidfd-socket`: receives a pidfd of init.
    pub pidfd_socket: Option<PathBuf>,
    pub no_pivot: bool,
    pub no_new_keyring: bool,
    pub preserve_fds: u32,
    /// `run` in the foreground: a terminal without a console socket is
    /// proxied by the caller, so init sends the pty master back.
    pub foreground: bool,
    /// The layer store, for bundles made by `strata bundle --image`.
    pub store: PathBuf,
    /// `--systemd-cgroup`: the cgroup is a transient systemd scope.
    pub systemd_cgroup: bool,
    /// `--rootless` (auto: not root of the host): a cgroup the caller may
    /// not write is skipped with a warning instead of failing create.
    pub rootless: bool,
    /// `run`: init is let go over its sync socket by this same process
    /// (`container::start_over`), not through exec.fifo by a later
    /// `start`; no exec.fifo is made.
    pub start_by_channel: bool,
}

/// A container that reached `created`.
pub struct Created {
    pub state: State,
    pub pid: Pid,
    pub pty_master: Option<OwnedFd>,
    /// With `start_by_channel`: the sync socket, on which init waits.
    pub chan: Option<sync::Channel>,
}

/// What has been made so far, undone on drop unless disarmed.
struct Undo<'a> {
    root: &'a Root,
    id: String,
    child: Option<Pid>,
    cgroup_dirs: Vec<PathBuf>,
    /// The systemd scope started for the container, stopped on undo.
    scope: Option<(Systemd, String)>,
    host_mounts: Vec<PathBuf>,
    layers: Option<crate::layers::Store>,
    resctrl_dirs: Vec<PathBuf>,
    armed: bool,
}

impl<'a> Undo<'a> {
    fn new(root: &'a Root, id: &str, host_mounts: Vec<PathBuf>) -> Undo<'a> {
        Undo {
            root,
            id: id.to_string(),
            child: None,
            cgroup_dirs: Vec::new(),
            scope: None,
            host_mounts,
            layers: None,
            resctrl_dirs: Vec::new(),
            armed: true,
        }
    }
}

impl Drop for Undo<'_> {
    fn drop(&mut self) {
        if !self.armed {
            return;
        }
        if let Some(pid) = self.child {
            let _ = kill(pid, Signal::SIGKILL);
            let _ = waitpid(pid, None);
        }
        for m in &self.host_mounts {
            let _ = nix::mount::umount2(m, nix::mount::MntFlags::MNT_DETACH);
        }
        if let Some((sd, unit)) = &self.scope {
            let _ = sd.stop(unit);
        }
        cgroups::remove(&self.cgroup_dirs);
        resctrl::remove(&self.resctrl_dirs);
        if let Some(store) = &self.layers {
            let _ = crate::layers::remove_container(store, &self.id);
        }
        let _ = self.root.remove(&self.id);
    }
}

/// What `create` decides before it makes anything: read off the bundle,
/// the options and the host.
struct Plan {
    terminal: bool,
    linux: oci_spec::runtime::Linux,
    ns: namespaces::Plan,
    own_mount_ns: bool,
    /// Without a mount namespace (runc allows it) the container's mounts
    /// are made in the host's namespace under the rootfs and detached at
    /// delete.
    host_mounts: Vec<PathBuf>,
    net_devices: Vec<netdev::Move>,
    idmaps: Vec<idmap::IdmapMount>,
    rdt: Option<resctrl::Plan>,
    hier: Vec<cgroups::Hierarchy>,
    unit: Option<Unit>,
    placement: cgroups::Placement,
    /// runc's default device rules, root of the host only.
    extra_allow: Vec<String>,
    maps: IdMaps,
    /// Unprivileged: what the user may not do itself, root of a user
    /// namespace does for it (layers, id maps through the uidmap helpers).
    unprivileged: bool,
}

/// The rootfs of an image-backed bundle: mounted by init (`for_init`), or,
/// in a user namespace, made by the parent from idmapped layers once init's
/// namespace has its id maps (`by_parent`).
struct ImageRootfs {
    for_init: Option<crate::layers::OverlayPlan>,
    by_parent: Option<crate::layers::OverlayPlan>,
}

/// The container's cgroups as init needs them: where it is born, and what
/// it joins itself; with the systemd driver, the bus that starts its scope.
struct CgroupSetup {
    joiner: cgroups::Joiner,
    systemd: Option<Systemd>,
}

/// What init's side of the clone takes (its half of the sync pair, the
/// console socket), handed over whole.
struct ForInit {
    chan: sync::Channel,
    console: Option<OwnedFd>,
    overlay: Option<crate::layers::OverlayPlan>,
}

pub fn create(root: &Root, opts: &CreateOpts) -> Result<Created> {
    // The caller's other fds are not the container's: init would hold them
    // (CLOEXEC) until its exec. Nothing of strata's is open yet.
    sys::close_from(3 + opts.preserve_fds)?;
    state::validate_id(&opts.id)?;
    let bundle = spec::load(&opts.bundle)?;
    crate::logging::debug(|| format!("create {}: bundle {} checked, rootfs {}", opts.id, bundle.dir.display(), bundle.rootfs.display()));
    let plan = plan(&bundle, opts)?;
    // Everything the container will own is planned first, and recorded
    // (status `creating`) before any of it is made: a create killed at any
    // later moment leaves a state that `delete` can undo.
    let mut st = new_state(&bundle, opts, &plan)?;
    let dir = root.reserve(&st)?;
    let mut undo = Undo::new(root, &opts.id, plan.host_mounts.clone());
    let rootfs = image_rootfs(&bundle, opts, &plan, &mut undo)?;
    let cgroup = make_cgroups(&plan, &st.cgroup_dirs, &mut undo)?;
    let console = connect_console(opts, plan.terminal)?;
    let (parent_chan, child_chan) = sync::pair()?;
    let for_init = ForInit { chan: child_chan, console, overlay: rootfs.for_init };
    let (pid, bundle, plan, parent_chan) = spawn_init(bundle, opts, plan, cgroup.joiner, for_init, parent_chan)?;
    undo.child = Some(pid);
    record_init(&mut st, pid)?;
    place_init(&plan, cgroup.systemd, pid, &opts.id, &st, &mut undo)?;
    hand_over(&parent_chan, &bundle, &plan, pid, rootfs.by_parent.as_ref())?;
    // While init mounts: it takes them with the hooks' answer.
    let exec_fifo = if opts.start_by_channel { None } else { Some(open_exec_fifo(&dir)?) };
    crate::logging::debug(|| format!("create {}: id maps and mounts handed over, init proceeds", opts.id));
    let pid = if plan.ns.pid_after_join { adopt_init(&parent_chan, pid, &mut undo, &mut st)? } else { pid };
    serve_mount_sources(&parent_chan, &bundle, &plan, pid)?;
    cgroups::apply_devices(&plan.placement, plan.linux.resources().as_ref(), &plan.extra_allow)?;
    move_net_devices(&plan, pid)?;
    run_runtime_hooks(&parent_chan, &bundle, &st, exec_fifo.as_ref())?;
    st.cgroup_dirs = undo.cgroup_dirs.clone();
    st.creating = None;
    // Written while init finishes; put in place once it is ready.
    let staged = root.stage(&st)?;
    let pty_master = wait_created(&parent_chan)?;
    staged.commit()?;
    crate::logging::debug(|| format!("create {}: created, state saved in {}", opts.id, root.dir.display()));
    if let Some(pf) = &opts.pid_file {
        write_pid_file(pf, pid.as_raw())?;
    }
    if let Some(sock) = &opts.pidfd_socket {
        sync::send_pidfd(sock, pid.as_raw())?;
    }
    undo.armed = false;
    Ok(Created { state: st, pid, pty_master, chan: opts.start_by_channel.then_some(parent_chan) })
}

/// Decides what the container gets: its namespaces, cgroups (rootless
/// without a writable cgroup: none, with a warning, as runc), devices,
/// idmapped mounts, network devices and resctrl group.
fn plan(bundle: &spec::Bundle, opts: &CreateOpts) -> Result<Plan> {
    let process = bundle.spec.process().clone().unwrap_or_default();
    let terminal = process.terminal() == Some(true);
    if terminal && opts.console_socket.is_none() && !opts.foreground {
        return Err(CreateError::Invalid("process.terminal is true: --console-socket is required when detached".into()));
    }
    let linux = bundle.spec.linux().clone().unwrap_or_default();
    let ns = namespaces::plan(Some(&linux));
    let own_mount_ns = ns.has_new(namespaces::Kind::Mount) || ns.joins(namespaces::Kind::Mount);
    let host_mounts = if own_mount_ns { Vec::new() } else { vec![bundle.rootfs.clone()] };
    let own_netns = ns.has_new(namespaces::Kind::Net) || ns.joins(namespaces::Kind::Net);
    let net_devices = netdev::plan(linux.net_devices().as_ref(), own_netns)?;
    let idmaps = idmap::plan(bundle.spec.mounts().as_deref().unwrap_or(&[]), &bundle.dir, ns.userns()).map_err(CreateError::Invalid)?;
    let rdt = match linux.intel_rdt() {
        Some(r) => resctrl::plan(Some(r), &opts.id, &crate::sys::read_small("/proc/self/mountinfo").unwrap_or_default())
            .map_err(CreateError::Invalid)?,
        None => None,
    };
    let hier = cgroups::read_hierarchies();
    let unit = match opts.systemd_cgroup {
        true => Some(Unit::parse(linux.cgroups_path().as_deref().map(|p| p.to_string_lossy()).as_deref(), &opts.id)?),
        false => None,
    };
    let cgroups_path = match &unit {
        Some(u) => Some(u.cgroup_path()?),
        None => linux.cgroups_path().clone(),
    };
    let mut placement = cgroups::placement(&hier, cgroups_path.as_deref(), &opts.id)?;
    if opts.rootless && !placement.writable() {
        // Rootless, with no cgroup the caller may write (cgroup v1, or v2
        // without a delegated subtree): no cgroup and no limits, with one
        // warning when the config asked for limits (device rules are not
        // the caller's to set anyway), as runc does.
        if asks_for_limits(linux.resources().as_ref()) {
            crate::logging::emit(
                "warning",
                &format!(
                    "rootless: no writable cgroup at {}; the container gets no cgroup of its own and linux.resources are not applied",
                    placement.dirs.first().map(|d| d.display().to_string()).unwrap_or_default()
                ),
            );
        }
        placement = cgroups::Placement::none(placement.v2);
    }
    let extra_allow = default_device_rules(&linux);
    let maps = IdMaps::from_spec(&linux);
    let unprivileged = !nix::unistd::geteuid().is_root();
    Ok(Plan {
        terminal,
        linux,
        ns,
        own_mount_ns,
        host_mounts,
        net_devices,
        idmaps,
        rdt,
        hier,
        unit,
        placement,
        extra_allow,
        maps,
        unprivileged,
    })
}

/// The `creating` record of everything the plan will make.
fn new_state(bundle: &spec::Bundle, opts: &CreateOpts, plan: &Plan) -> Result<State> {
    let image_backed = bundle.spec.annotations().as_ref().is_some_and(|a| a.contains_key(crate::layers::bundle::ANN_LAYOUT));
    Ok(State {
        id: opts.id.clone(),
        pid: 0,
        init_start_time: 0,
        bundle: bundle.dir.clone(),
        rootfs: bundle.rootfs.clone(),
        created: state::now_rfc3339(),
        config: State::new_config(&bundle.spec).map_err(|e| CreateError::Invalid(format!("config: {e}")))?,
        cgroup_dirs: cgroups::missing_dirs(&plan.placement),
        cgroup_paths: plan.placement.dirs.clone(),
        systemd_unit: plan.unit.as_ref().map(|u| u.name.clone()),
        host_mounts: plan.host_mounts.clone(),
        resctrl_dirs: plan.rdt.as_ref().map(resctrl::Plan::missing_dirs).unwrap_or_default(),
        owner: nix::unistd::geteuid().as_raw(),
        store: image_backed.then(|| opts.store.clone()),
        creating: Some(state::Creator::current().map_err(|e| sys::io_err("read", Path::new("/proc/self/stat"))(e))?),
    })
}

/// exec.fifo, opened here: in a user namespace init could no longer open
/// it (the state dir is root's, 0700). Made once init runs, while it
/// mounts (not before the clone, on the create's one path: a new inode in
/// the state directory).
fn open_exec_fifo(dir: &Path) -> Result<OwnedFd> {
    let fifo = dir.join(state::EXEC_FIFO);
    nix::unistd::mkfifo(&fifo, Mode::from_bits_truncate(0o600)).map_err(sys::err("mkfifo", fifo.display(), "0600"))?;
    Ok(nix::fcntl::open(&fifo, nix::fcntl::OFlag::O_RDWR | nix::fcntl::OFlag::O_CLOEXEC, Mode::empty()).map_err(sys::err(
        "open",
        fifo.display(),
        "O_RDWR",
    ))?)
}

/// The container's cgroups, made and limited (with systemd: once init
/// exists, `place_init`), and what init needs to be born in them.
/// `missing`: the directories the creating record names, to be made.
fn make_cgroups(plan: &Plan, missing: &[PathBuf], undo: &mut Undo<'_>) -> Result<CgroupSetup> {
    if plan.unit.is_some() {
        // systemd moves init into its scope once init exists.
        return Ok(CgroupSetup { joiner: cgroups::Joiner::default(), systemd: Some(Systemd::connect()?) });
    }
    cgroups::check_usable(&plan.placement, missing)?;
    undo.cgroup_dirs = cgroups::create(&plan.placement, plan.linux.resources().as_ref(), &plan.extra_allow, missing)?;
    // The container's own cgroups are its to remove at delete, also one
    // that was made for it beforehand (empty, as just checked), as with
    // runc; ancestors that existed stay.
    let made_before: Vec<PathBuf> = plan.placement.dirs.iter().filter(|d| !undo.cgroup_dirs.contains(d)).cloned().collect();
    undo.cgroup_dirs.extend(made_before);
    // Born into its cgroup2 cgroup, init moves itself into the v1 ones.
    Ok(CgroupSetup { joiner: cgroups::prepare_join_placement(&plan.placement)?, systemd: None })
}

fn connect_console(opts: &CreateOpts, terminal: bool) -> Result<Option<OwnedFd>> {
    match &opts.console_socket {
        Some(p) if terminal => Ok(Some(OwnedFd::from(UnixStream::connect(p).map_err(sys::io_err("connect", p))?))),
        _ => Ok(None),
    }
}

/// Clones init into its namespaces (and its cgroup2 cgroup). The child
/// never returns: `init::run` execs or exits, with the bundle and the plan
/// moved into its context; the parent gets them back.
fn spawn_init(
    bundle: spec::Bundle,
    opts: &CreateOpts,
    plan: Plan,
    joiner: cgroups::Joiner,
    for_init: ForInit,
    parent_chan: sync::Channel,
) -> Result<(Pid, spec::Bundle, Plan, sync::Channel)> {
    let time_offsets: Vec<(String, i64, u32)> = plan
        .linux
        .time_offsets()
        .iter()
        .flatten()
        .map(|(clock, o)| (clock.clone(), o.secs().unwrap_or(0), o.nanosecs().unwrap_or(0)))
        .collect();
    let children_ns = ChildrenNs::enter(&plan.ns, &time_offsets)?;
    let forked = sys::clone_process(plan.ns.clone_flags.bits() as u64, joiner.into.as_ref().map(|f| f.as_fd()));
    match forked {
        Err(e) => {
            children_ns.restore()?;
            Err(e.into())
        }
        Ok(Forked::Child) => {
            std::mem::forget(children_ns);
            // The parent's half of the pair: held here too, it would keep
            // init from seeing EOF when the parent dies (a create killed
            // after the clone would leave init waiting for good).
            drop(parent_chan);
            let ctx = InitContext {
                bundle,
                ns: plan.ns,
                chan: Some(for_init.chan),
                fifo: None,
                own_mount_ns: plan.own_mount_ns,
                console_socket: for_init.console,
                pty_to_parent: plan.terminal && opts.console_socket.is_none(),
                no_pivot: opts.no_pivot,
                no_new_keyring: opts.no_new_keyring,
                id: opts.id.clone(),
                preserve_fds: opts.preserve_fds,
                hierarchies: plan.hier,
                cgroup_dirs: plan.placement.dirs,
                cgroup_join: joiner,
                overlay: for_init.overlay,
                rootless: opts.rootless,
                start_by_channel: opts.start_by_channel,
            };
            init::run(ctx)
        }
        Ok(Forked::Parent(pid)) => {
            children_ns.restore()?;
            crate::logging::debug(|| {
                format!(
                    "create {}: init is pid {pid} (clone flags {:#x}), cgroups {:?}",
                    opts.id,
                    plan.ns.clone_flags.bits(),
                    plan.placement.dirs
                )
            });
            // Init's half of the pair, the fifo, the console and the
            // joiner's fds are dropped here, in the parent, on return.
            Ok((pid, bundle, plan, parent_chan))
        }
    }
}

/// Init needs no record of its own until `Created`: before that it exits
/// as soon as this process dies (its sync socket closes), and from the
/// first thing it does it is in the container's cgroup, where `delete`
/// finds and kills it.
fn record_init(st: &mut State, pid: Pid) -> Result<()> {
    st.pid = pid.as_raw();
    st.init_start_time = state::proc_stat(pid.as_raw())
        .map(|s| s.start_time)
        .ok_or_else(|| CreateError::Invalid(format!("container {}: init (pid {pid}) is gone", st.id)))?;
    Ok(())
}

/// Puts init where only its pid can: the systemd scope, the resctrl group.
fn place_init(plan: &Plan, systemd: Option<Systemd>, pid: Pid, id: &str, st: &State, undo: &mut Undo<'_>) -> Result<()> {
    if let (Some(sd), Some(unit)) = (systemd, &plan.unit) {
        let sd = &undo.scope.insert((sd, unit.name.clone())).0;
        undo.cgroup_dirs = systemd_scope(sd, unit, id, pid, &plan.placement, &plan.linux, &plan.extra_allow)?;
    }
    if let Some(rdt) = &plan.rdt {
        undo.resctrl_dirs = st.resctrl_dirs.clone();
        resctrl::apply(rdt, pid.as_raw())?;
    }
    Ok(())
}

/// Gives init what only the parent can make: its id maps, the idmapped
/// rootfs and bind mounts (detached trees sent over the channel), then
/// lets it proceed.
fn hand_over(
    chan: &sync::Channel,
    bundle: &spec::Bundle,
    plan: &Plan,
    pid: Pid,
    rootfs: Option<&crate::layers::OverlayPlan>,
) -> Result<()> {
    if plan.ns.has_new(namespaces::Kind::User) {
        userns::write(pid, &plan.maps)?;
    }
    if let Some(overlay) = rootfs {
        let userns = namespaces::open_ns(Path::new(&format!("/proc/{pid}/ns/user")))?;
        let root_ids = (IdMaps::root_of(&plan.maps.uid), IdMaps::root_of(&plan.maps.gid));
        let tree = crate::layers::mount_idmapped(overlay, userns.as_fd(), root_ids)?;
        chan.tell(&Msg::Rootfs, Some(&tree))?;
    }
    // After the id maps: a mount without maps of its own takes init's.
    let userns_file = container_userns(plan, pid);
    for (index, tree) in idmap::prepare(&plan.idmaps, &userns_file, &bundle.rootfs)? {
        chan.tell(&Msg::MountTree { index }, Some(&tree))?;
    }
    if plan.ns.userns() && userns::host_root() {
        for (index, tree) in
            idmap::clone_sources(bundle.spec.mounts().as_deref().unwrap_or(&[]), &bundle.dir, &bundle.rootfs, &plan.idmaps)?
        {
            chan.tell(&Msg::MountTree { index }, Some(&tree))?;
        }
    }
    chan.tell(&Msg::Proceed, None)?;
    Ok(())
}

/// The container's user namespace: the one it joins (init joins it only
/// after Proceed), or the one init was made in.
fn container_userns(plan: &Plan, pid: Pid) -> PathBuf {
    match plan.ns.init_joins.iter().find(|(k, _)| *k == namespaces::Kind::User) {
        Some((_, path)) => path.clone(),
        None => PathBuf::from(format!("/proc/{pid}/ns/user")),
    }
}

/// Idmapped mounts whose source is in the container's own tree come when
/// init reaches them, before it asks for the runtime hooks.
fn serve_mount_sources(chan: &sync::Channel, bundle: &spec::Bundle, plan: &Plan, pid: Pid) -> Result<()> {
    let userns_file = container_userns(plan, pid);
    loop {
        match chan.recv()? {
            (Msg::RuntimeHooks, _) => return Ok(()),
            (Msg::MountSource { index }, _) => {
                let tree = idmap::prepare_in_container(&plan.idmaps, index, pid, &userns_file, &bundle.rootfs)?;
                chan.tell(&Msg::MountTree { index }, Some(&tree))?;
            }
            (Msg::Error { msg }, _) => return Err(SyncError::Init(msg).into()),
            (got, _) => return Err(SyncError::Unexpected { want: "RuntimeHooks", got }.into()),
        }
    }
}

/// Init is in its network namespace now (made at clone, or joined).
fn move_net_devices(plan: &Plan, pid: Pid) -> Result<()> {
    if !plan.net_devices.is_empty() {
        let netns = namespaces::open_ns(Path::new(&format!("/proc/{pid}/ns/net")))?;
        netdev::apply(&plan.net_devices, netns.as_fd())?;
    }
    Ok(())
}

/// The prestart and createRuntime hooks, which see the container as
/// `created` (its namespaces and cgroup exist); init gets exec.fifo
/// (unless `run` starts it over the socket) and the state for its own
/// hooks.
fn run_runtime_hooks(chan: &sync::Channel, bundle: &spec::Bundle, st: &State, fifo: Option<&OwnedFd>) -> Result<()> {
    let creating = serde_json::to_vec(&st.oci(Status::Created)).unwrap_or_default();
    if let Some(h) = bundle.spec.hooks() {
        hooks::run_all_in("prestart", h.prestart().as_deref().unwrap_or(&[]), &creating, &bundle.dir)?;
        hooks::run_all_in("createRuntime", h.create_runtime().as_deref().unwrap_or(&[]), &creating, &bundle.dir)?;
    }
    if let Some(fifo) = fifo {
        chan.tell(&Msg::ExecFifo, Some(fifo))?;
    }
    chan.tell(&Msg::HooksDone { state: String::from_utf8_lossy(&creating).into_owned() }, None)?;
    Ok(())
}

/// Init's `Created` (after the pty master, for `run -t` without a socket).
fn wait_created(chan: &sync::Channel) -> Result<Option<OwnedFd>> {
    match chan.recv()? {
        (Msg::PtyMaster, fd) => {
            chan.expect(Msg::Created, "Created")?;
            Ok(fd)
        }
        (Msg::Created, _) => Ok(None),
        (Msg::Error { msg }, _) => Err(SyncError::Init(msg).into()),
        (got, _) => Err(SyncError::Unexpected { want: "Created", got }.into()),
    }
}

/// With a joined user namespace and a new pid namespace, init's first
/// stage makes the real init in it and exits (`init::enter_pid_namespace`):
/// the first is reaped, and the second is the container's init from here.
fn adopt_init(chan: &sync::Channel, first: Pid, undo: &mut Undo<'_>, st: &mut State) -> Result<Pid> {
    let pid = match chan.recv()? {
        (Msg::InitPid { pid }, _) => Pid::from_raw(pid),
        (Msg::Error { msg }, _) => return Err(SyncError::Init(msg).into()),
        (got, _) => return Err(SyncError::Unexpected { want: "InitPid", got }.into()),
    };
    let _ = waitpid(first, None);
    undo.child = Some(pid);
    st.pid = pid.as_raw();
    st.init_start_time = state::proc_stat(pid.as_raw())
        .map(|s| s.start_time)
        .ok_or_else(|| CreateError::Invalid(format!("container {}: init (pid {pid}) is gone", st.id)))?;
    crate::logging::debug(|| format!("create {}: init is pid {pid} in its pid namespace (first stage {first} reaped)", st.id));
    Ok(pid)
}

/// A bundle made by `strata bundle --image` names its image in annotations:
/// the layers are made ready in the store (unpacked once, shared), and the
/// overlay is planned on the bundle's rootfs dir. Init mounts it in the
/// container's own mount namespace; in a user namespace root's parent makes
/// it (idmapped layers, see `layers::mount_idmapped`) and hands it to init.
/// A rootless caller's layers come from its rootless store (`rootless`: the
/// container's id maps).
fn image_rootfs(bundle: &spec::Bundle, opts: &CreateOpts, plan: &Plan, undo: &mut Undo<'_>) -> Result<ImageRootfs> {
    use crate::layers::{
        self,
        bundle::{ANN_LAYOUT, ANN_REF},
    };
    let none = ImageRootfs { for_init: None, by_parent: None };
    let ann = bundle.spec.annotations().clone().unwrap_or_default();
    let Some(layout) = ann.get(ANN_LAYOUT) else { return Ok(none) };
    let store = layers::Store::open(&opts.store)?;
    let hostname = bundle.spec.hostname().as_deref();
    let rootless = plan.unprivileged.then_some(&plan.maps);
    let prepared = layers::prepare_rootfs(&store, layout, ann.get(ANN_REF).map(String::as_str), &opts.id, hostname, &ann, rootless);
    undo.layers = Some(store);
    let mut overlay = prepared?.plan;
    overlay.target = bundle.rootfs.clone();
    // In a user namespace root's overlay is made by the parent (idmapped
    // layers), once init's namespace has its id maps. A rootless overlay
    // is mounted by init, root of its user namespace.
    Ok(match plan.ns.userns() && !plan.unprivileged {
        true => ImageRootfs { for_init: None, by_parent: Some(overlay) },
        false => ImageRootfs { for_init: Some(overlay), by_parent: None },
    })
}

/// With the systemd driver: systemd starts the scope holding init; strata
/// makes the directories systemd did not (v1 controllers systemd does not
/// manage), moves init into them, and writes the limits. Returns the
/// directories strata made.
fn systemd_scope(
    sd: &Systemd,
    unit: &Unit,
    id: &str,
    pid: Pid,
    placement: &cgroups::Placement,
    linux: &oci_spec::runtime::Linux,
    extra_allow: &[String],
) -> Result<Vec<PathBuf>> {
    let res = linux.resources().as_ref();
    let mut props = systemd::scope_properties(unit, id, pid.as_raw() as u32, placement.v2);
    props.extend(systemd::resource_properties(res, placement.v2));
    if let Some(devs) = res.and_then(|r| r.devices().as_ref()).filter(|d| !d.is_empty() && !placement.v2) {
        let names = systemd::DeviceNames::parse(&std::fs::read_to_string("/proc/devices").unwrap_or_default());
        props.extend(systemd::device_properties(devs, extra_allow, &names).unwrap_or_default());
    }
    sd.start_scope(unit, &props)?;
    // systemd has made the scope's directories: what is missing now.
    let created = cgroups::create(placement, res, extra_allow, &cgroups::missing_dirs(placement))?;
    if let Err(e) = cgroups::attach(&placement.dirs, pid.as_raw()) {
        cgroups::remove(&created);
        return Err(e.into());
    }
    Ok(created)
}

/// Whether `linux.resources` sets anything but device rules.
fn asks_for_limits(res: Option<&oci_spec::runtime::LinuxResources>) -> bool {
    let Some(v) = res.and_then(|r| serde_json::to_value(r).ok()) else { return false };
    v.as_object().is_some_and(|o| {
        o.iter().any(|(k, v)| k != "devices" && !v.is_null() && v != &serde_json::json!({}) && v != &serde_json::json!([]))
    })
}

/// runc's default device rules (`cgroups::default_device_rules`), for root
/// of the host only: in a user namespace the cgroup's devices are not the
/// runtime's to set (runc skips them too).
fn default_device_rules(linux: &oci_spec::runtime::Linux) -> Vec<String> {
    if !userns::host_root() {
        return Vec::new();
    }
    cgroups::default_device_rules(linux)
}

pub fn write_pid_file(path: &Path, pid: i32) -> Result<()> {
    let tmp = path.with_extension(format!("tmp{}", std::process::id()));
    std::fs::write(&tmp, pid.to_string()).map_err(sys::io_err("write", &tmp))?;
    std::fs::rename(&tmp, path).map_err(sys::io_err("rename", path))?;
    Ok(())
}
