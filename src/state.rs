//! A container's persistent state: `<root>/<id>/state.json`, written
//! atomically (temp file + rename), and the status state machine that reads
//! the live process to tell `created`, `running`, `paused` and `stopped`.
//!
//! The init process is identified by pid *and* its start time (field 22 of
//! `/proc/<pid>/stat`), so a recycled pid is never taken for the container.
//!
//! `create` records what it will make before it makes it (see
//! docs/crash-consistency.md): the id is reserved by renaming a private
//! directory that already holds a `creating` state into place, so the id
//! never exists without a state, and the record names the creating process
//! (pid and start time). While that process lives the container is
//! `creating`; once it is gone without finishing, the container is
//! `stopped`, and `delete` undoes whatever the record names.

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

use oci_spec::runtime::{Hooks, LinuxMemoryPolicy, LinuxPersonality, LinuxSeccomp, Process, Spec};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

pub const OCI_VERSION: &str = "1.2.0";
pub const STATE_FILE: &str = "state.json";
pub const EXEC_FIFO: &str = "exec.fifo";

#[derive(Debug, thiserror::Error)]
pub enum StateError {
    #[error("invalid container id {0:?}: use letters, digits, '.', '_', '-', '+' (not starting with '.')")]
    BadId(String),
    #[error("container {0}: already exists")]
    Exists(String),
    #[error("container {0}: does not exist")]
    NotFound(String),
    #[error("{op} {path}: {source}")]
    Io { op: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path}: corrupt state: {msg}")]
    Corrupt { path: PathBuf, msg: String },
}

type Result<T> = std::result::Result<T, StateError>;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Status {
    Creating,
    Created,
    Running,
    Paused,
    Stopped,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Creating => "creating",
            Status::Created => "created",
            Status::Running => "running",
            Status::Paused => "paused",
            Status::Stopped => "stopped",
        }
    }
}

/// What strata keeps for a container between commands.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct State {
    pub id: String,
    pub pid: i32,
    /// Start time of the init process in clock ticks since boot.
    pub init_start_time: u64,
    pub bundle: PathBuf,
    pub rootfs: PathBuf,
    /// RFC 3339 creation time.
    pub created: String,
    /// The config as it was at create (later edits of config.json have no
    /// effect), kept as JSON text. Most commands need a part of it (the
    /// annotations, the hooks, the process): parsing only that part keeps
    /// the deserializer of the whole runtime-spec off their path, which is
    /// most of the memory a `state` or `delete` would otherwise touch.
    pub config: Box<RawValue>,
    /// Cgroup directories strata created for this container, deepest last.
    #[serde(default)]
    pub cgroup_dirs: Vec<PathBuf>,
    /// The cgroup the container's processes are in, per hierarchy mountpoint.
    #[serde(default)]
    pub cgroup_paths: Vec<PathBuf>,
    /// The systemd scope holding the container (`--systemd-cgroup`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub systemd_unit: Option<String>,
    /// Mounts strata made on the host for this container (the layered rootfs).
    #[serde(default)]
    pub host_mounts: Vec<PathBuf>,
    /// resctrl groups strata made for `linux.intelRdt` (removed by delete).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub resctrl_dirs: Vec<PathBuf>,
    #[serde(default)]
    pub owner: u32,
    /// The layer store holding this container's upper/init layers, if its
    /// rootfs was assembled from an image.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub store: Option<PathBuf>,
    /// Set while `create` runs: the process making the container.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub creating: Option<Creator>,
}

/// A process, as pid and start time (so that a recycled pid never passes).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Creator {
    pub pid: i32,
    pub start_time: u64,
}

impl Creator {
    /// The calling process. Read once per process (`create` asks three
    /// times), without a lock, so that a forked or cloned child may ask
    /// too; a child, whose pid differs, reads its own.
    pub fn current() -> std::io::Result<Creator> {
        use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
        static PID: AtomicI32 = AtomicI32::new(0);
        static START: AtomicU64 = AtomicU64::new(0);
        let pid = std::process::id() as i32;
        if PID.load(Ordering::Acquire) == pid {
            return Ok(Creator { pid, start_time: START.load(Ordering::Relaxed) });
        }
        let text = crate::sys::read_small("/proc/self/stat")?;
        let st = parse_stat(&text).ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidData, "unparsable /proc/self/stat"))?;
        // The start time before the pid that vouches for it.
        START.store(st.start_time, Ordering::Relaxed);
        PID.store(pid, Ordering::Release);
        Ok(Creator { pid, start_time: st.start_time })
    }

    pub fn alive(&self) -> bool {
        matches!(proc_stat(self.pid), Some(s) if s.start_time == self.start_time && s.state != 'Z' && s.state != 'X')
    }
}

/// The runtime-spec's state object, as `strata state` prints it.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct OciState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub status: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pid: Option<i32>,
    pub bundle: &'a Path,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub created: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rootfs: Option<&'a Path>,
}

/// What `state` and `list --format json` print: runc's container state,
/// its fields in runc's order (`pid` 0 once stopped, `owner` the name of
/// the user who made the container).
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CliState<'a> {
    pub oci_version: &'a str,
    pub id: &'a str,
    pub pid: i32,
    pub status: &'a str,
    pub bundle: &'a Path,
    pub rootfs: &'a Path,
    pub created: &'a str,
    #[serde(skip_serializing_if = "HashMap::is_empty")]
    pub annotations: HashMap<String, String>,
    pub owner: String,
}

impl State {
    pub fn cli<'a>(&'a self, status: Status) -> CliState<'a> {
        let owner = nix::unistd::User::from_uid(nix::unistd::Uid::from_raw(self.owner))
            .ok()
            .flatten()
            .map_or_else(|| format!("#{}", self.owner), |u| u.name);
        CliState {
            oci_version: OCI_VERSION,
            id: &self.id,
            pid: if status == Status::Stopped { 0 } else { self.pid },
            status: status.as_str(),
            bundle: &self.bundle,
            rootfs: &self.rootfs,
            created: &self.created,
            annotations: self.annotations(),
            owner,
        }
    }

    pub fn oci<'a>(&'a self, status: Status) -> OciState<'a> {
        OciState {
            oci_version: OCI_VERSION,
            id: &self.id,
            status: status.as_str(),
            pid: (status != Status::Stopped && self.pid > 0).then_some(self.pid),
            bundle: &self.bundle,
            annotations: self.annotations(),
            created: Some(&self.created),
            rootfs: Some(&self.rootfs),
        }
    }
}

#[derive(Deserialize)]
struct AnnotationsView {
    annotations: Option<HashMap<String, String>>,
}

#[derive(Deserialize)]
struct HooksView {
    hooks: Option<Hooks>,
}

#[derive(Deserialize)]
struct ExecView {
    process: Option<Process>,
    linux: Option<LinuxView>,
}

#[derive(Deserialize)]
struct LinuxView {
    seccomp: Option<LinuxSeccomp>,
    personality: Option<LinuxPersonality>,
    #[serde(rename = "memoryPolicy")]
    memory_policy: Option<LinuxMemoryPolicy>,
}

/// What `exec` takes from the recorded config.
#[derive(Debug)]
pub struct ExecParts {
    /// The container's process: the defaults of the new one.
    pub process: Option<Process>,
    pub seccomp: Option<LinuxSeccomp>,
    /// Inherited by exec'd processes, as by the container's own.
    pub personality: Option<LinuxPersonality>,
    pub memory_policy: Option<LinuxMemoryPolicy>,
}

impl State {
    /// The config as state.json records it.
    pub fn new_config(spec: &Spec) -> serde_json::Result<Box<RawValue>> {
        serde_json::value::to_raw_value(spec)
    }

    pub fn annotations(&self) -> HashMap<String, String> {
        self.view::<AnnotationsView>().ok().and_then(|v| v.annotations).unwrap_or_default()
    }

    pub fn hooks(&self) -> Result<Option<Hooks>> {
        Ok(self.view::<HooksView>()?.hooks)
    }

    /// What `exec` takes from the config, in one parse.
    pub fn exec_parts(&self) -> Result<ExecParts> {
        let v: ExecView = self.view()?;
        let (seccomp, personality, memory_policy) = v.linux.map(|l| (l.seccomp, l.personality, l.memory_policy)).unwrap_or_default();
        Ok(ExecParts { process: v.process, seccomp, personality, memory_policy })
    }

    /// Whether the config has a `process` (skipped over, not parsed).
    pub fn has_process(&self) -> Result<bool> {
        #[derive(Deserialize)]
        struct V {
            process: Option<serde::de::IgnoredAny>,
        }
        Ok(self.view::<V>()?.process.is_some())
    }

    /// Whether the config gives the container a pid namespace of its own
    /// (a `pid` entry without a path).
    pub fn own_pid_namespace(&self) -> Result<bool> {
        #[derive(Deserialize)]
        struct Ns {
            #[serde(rename = "type")]
            typ: String,
            path: Option<String>,
        }
        #[derive(Deserialize)]
        struct L {
            namespaces: Option<Vec<Ns>>,
        }
        #[derive(Deserialize)]
        struct V {
            linux: Option<L>,
        }
        let v: V = self.view()?;
        let namespaces = v.linux.and_then(|l| l.namespaces).unwrap_or_default();
        Ok(namespaces.iter().any(|n| n.typ == "pid" && n.path.as_deref().unwrap_or("").is_empty()))
    }

    fn view<T: serde::de::DeserializeOwned>(&self) -> Result<T> {
        serde_json::from_str(self.config.get())
            .map_err(|e| StateError::Corrupt { path: PathBuf::from(format!("{}: state.json config", self.id)), msg: e.to_string() })
    }
}

/// A container id must be a plain file name: no '/', not '.' or '..', not empty.
pub fn validate_id(id: &str) -> Result<()> {
    let ok = !id.is_empty()
        && id.len() <= 1024
        && !id.starts_with('.')
        && id.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-+:@".contains(&b));
    if ok { Ok(()) } else { Err(StateError::BadId(id.to_string())) }
}

/// The `--root` directory that holds one directory per container.
#[derive(Debug, Clone)]
pub struct Root {
    pub dir: PathBuf,
}

impl Root {
    pub fn new(dir: PathBuf) -> Self {
        Root { dir }
    }

    pub fn container_dir(&self, id: &str) -> Result<PathBuf> {
        validate_id(id)?;
        Ok(self.dir.join(id))
    }

    /// Reserves `state.id`: its directory (mode 0700) comes into being
    /// already holding `state` (a private directory renamed into place with
    /// RENAME_NOREPLACE), or the call fails because the id exists. A create
    /// killed at any moment leaves either nothing under the id or a state
    /// that `delete` can act on; a killed reservation leaves only a hidden
    /// `.ID.new-PID-START` directory, which `delete` of that id removes.
    pub fn reserve(&self, state: &State) -> Result<PathBuf> {
        let id = &state.id;
        let dir = self.container_dir(id)?;
        match fs::DirBuilder::new().recursive(true).mode(0o700).create(&self.dir) {
            Ok(()) => {}
            // std says only EEXIST where the stat that tells a directory
            // from a file failed: that failure is the one to name.
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => match fs::metadata(&self.dir) {
                Ok(m) if m.is_dir() => {}
                Ok(_) => return Err(StateError::Io { op: "mkdir", path: self.dir.clone(), source: e }),
                Err(source) => return Err(StateError::Io { op: "stat", path: self.dir.clone(), source }),
            },
            Err(source) => return Err(StateError::Io { op: "mkdir", path: self.dir.clone(), source }),
        }
        if dir.exists() {
            return Err(StateError::Exists(id.to_string()));
        }
        let me = Creator::current().map(|c| format!("{}-{}", c.pid, c.start_time)).unwrap_or_else(|_| std::process::id().to_string());
        let tmp = self.dir.join(format!(".{id}.new-{me}"));
        let _ = fs::remove_dir_all(&tmp);
        fs::DirBuilder::new().mode(0o700).create(&tmp).map_err(|source| StateError::Io { op: "mkdir", path: tmp.clone(), source })?;
        let data = serde_json::to_vec(state).map_err(|e| StateError::Corrupt { path: tmp.clone(), msg: e.to_string() })?;
        // Straight into place: nothing reads the private directory, which
        // becomes the id only whole (a partial file goes with it on error).
        let written = write_new(&tmp.join(STATE_FILE), &data);
        let renamed = written.and_then(|()| {
            crate::sys::rename_noreplace(&tmp, &dir).map_err(|e| match e {
                nix::errno::Errno::EEXIST | nix::errno::Errno::ENOTEMPTY => StateError::Exists(id.to_string()),
                e => StateError::Io { op: "rename", path: dir.clone(), source: e.into() },
            })
        });
        if renamed.is_err() {
            let _ = fs::remove_dir_all(&tmp);
        }
        renamed.map(|()| dir)
    }

    /// Removes reservations (and removals) whose process is gone.
    pub fn reap_reservations(&self) {
        let Ok(rd) = fs::read_dir(&self.dir) else { return };
        for e in rd.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let hidden = name.strip_prefix('.');
            let Some((_, who)) = hidden.and_then(|n| n.rsplit_once(".new-").or_else(|| n.rsplit_once(".del-"))) else { continue };
            let creator = who.split_once('-').and_then(|(p, t)| Some(Creator { pid: p.parse().ok()?, start_time: t.parse().ok()? }));
            if !creator.is_some_and(|c| c.alive()) {
                let _ = fs::remove_dir_all(e.path());
            }
        }
    }

    pub fn load(&self, id: &str) -> Result<State> {
        let path = self.container_dir(id)?.join(STATE_FILE);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(StateError::NotFound(id.to_string())),
            Err(source) => return Err(StateError::Io { op: "read", path, source }),
        };
        serde_json::from_slice(&text).map_err(|e| StateError::Corrupt { path, msg: e.to_string() })
    }

    /// Writes state.json atomically: a reader sees the old or the new file, never half of one.
    pub fn save(&self, state: &State) -> Result<()> {
        self.stage(state)?.commit()
    }

    /// The first half of `save`: the new state written beside state.json,
    /// not yet in its place (`Staged::commit`). `create` writes it while
    /// init finishes, so that only the swap is left once init is ready.
    pub fn stage(&self, state: &State) -> Result<Staged> {
        let dir = self.container_dir(&state.id)?;
        let data = serde_json::to_vec(state).map_err(|e| StateError::Corrupt { path: dir.clone(), msg: e.to_string() })?;
        Staged::write(&dir.join(STATE_FILE), &data)
    }

    /// Frees the id at once (its directory is renamed to a hidden name),
    /// then removes what it held. A removal cut short leaves only a hidden
    /// `.ID.del-PID-START` directory, which the next reservation reaps:
    /// never an id directory without its state.
    pub fn remove(&self, id: &str) -> Result<()> {
        let dir = self.container_dir(id)?;
        let me = Creator::current().map(|c| format!("{}-{}", c.pid, c.start_time)).unwrap_or_else(|_| std::process::id().to_string());
        let doomed = self.dir.join(format!(".{id}.del-{me}"));
        match fs::rename(&dir, &doomed) {
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(StateError::Io { op: "rename", path: dir, source: e }),
            Ok(()) => {}
        }
        match fs::remove_dir_all(&doomed) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => Err(StateError::Io { op: "remove", path: doomed, source: e }),
            _ => Ok(()),
        }
    }

    /// With `delete --force` of an id that has no state: a directory left
    /// by an older strata (one that reserved ids without a state) goes.
    pub fn remove_stateless(&self, id: &str) -> Result<()> {
        let dir = self.container_dir(id)?;
        if dir.is_dir() && !dir.join(STATE_FILE).exists() {
            return self.remove(id);
        }
        Ok(())
    }

    /// Ids of every container under the root, sorted.
    pub fn ids(&self) -> Result<Vec<String>> {
        let rd = match fs::read_dir(&self.dir) {
            Ok(rd) => rd,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(source) => return Err(StateError::Io { op: "readdir", path: self.dir.clone(), source }),
        };
        let mut ids: Vec<String> =
            rd.flatten().filter(|e| e.path().join(STATE_FILE).exists()).filter_map(|e| e.file_name().into_string().ok()).collect();
        ids.sort();
        Ok(ids)
    }
}

/// Writes `data` to `path` through a temp file in the same directory, then
/// puts it in place in one step: a reader sees the old or the new file.
///
/// An existing file is replaced by swapping the two names and unlinking
/// the old file, not by a rename over it: ext4 (its default
/// `auto_da_alloc`) starts writing a file renamed over another to disk at
/// once, which cost every `create` about 0.2 ms and made `delete` wait for
/// that write when it unlinked the file (`docs/benchmarks.md`). A state file
/// lives as long as its container and need not reach the disk any sooner
/// than the kernel's writeback takes it. A file system without exchange
/// gets the rename.
pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    Staged::write(path, data)?.commit()
}

/// A new file (mode 0600) holding `data`.
fn write_new(path: &Path, data: &[u8]) -> Result<()> {
    let io = |op, source| StateError::Io { op, path: path.to_path_buf(), source };
    let mut f = fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path).map_err(|e| io("create", e))?;
    f.write_all(data).map_err(|e| io("write", e))
}

/// A file's next contents, written under a temp name in its directory and
/// not yet put in place; dropped uncommitted, the temp file goes.
pub struct Staged {
    tmp: PathBuf,
    path: PathBuf,
    done: bool,
}

impl Staged {
    pub fn write(path: &Path, data: &[u8]) -> Result<Staged> {
        let tmp = path.with_extension(format!("tmp{}", std::process::id()));
        let io = |op, source| StateError::Io { op, path: path.to_path_buf(), source };
        let mut f = fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(&tmp).map_err(|e| io("create", e))?;
        let staged = Staged { tmp, path: path.to_path_buf(), done: false };
        f.write_all(data).map_err(|e| io("write", e))?;
        Ok(staged)
    }

    /// Puts the new contents in place in one step.
    pub fn commit(mut self) -> Result<()> {
        self.done = true;
        if crate::sys::rename_exchange(&self.tmp, &self.path).is_ok() {
            // The old file, now under the temp name. One left by a kill here
            // goes with its directory (`remove` removes the whole of it).
            let _ = fs::remove_file(&self.tmp);
            return Ok(());
        }
        fs::rename(&self.tmp, &self.path).map_err(|source| {
            let _ = fs::remove_file(&self.tmp);
            StateError::Io { op: "rename", path: self.path.clone(), source }
        })
    }
}

impl Drop for Staged {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_file(&self.tmp);
        }
    }
}

/// Facts about a live process read from `/proc/<pid>/stat`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProcStat {
    pub state: char,
    pub start_time: u64,
}

pub fn proc_stat(pid: i32) -> Option<ProcStat> {
    let text = crate::sys::read_small(format!("/proc/{pid}/stat")).ok()?;
    parse_stat(&text)
}

/// Parses `/proc/<pid>/stat`: the comm field may hold spaces and ')', so
/// fields are counted from the last ')'.
pub fn parse_stat(text: &str) -> Option<ProcStat> {
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    // rest starts at field 3 (state); start time is field 22.
    let start_time = fields.nth(18)?.parse().ok()?;
    Some(ProcStat { state, start_time })
}

impl State {
    /// Whether the recorded init process still exists (and is not a zombie).
    pub fn init_alive(&self) -> bool {
        self.pid > 0 && matches!(proc_stat(self.pid), Some(s) if s.start_time == self.init_start_time && s.state != 'Z' && s.state != 'X')
    }

    /// The status, read from the live system.
    pub fn status(&self, root: &Root, frozen: bool) -> Status {
        if let Some(c) = &self.creating {
            // A create that died before it finished made a dead container.
            return if c.alive() { Status::Creating } else { Status::Stopped };
        }
        if !self.init_alive() {
            return Status::Stopped;
        }
        let fifo = root.dir.join(&self.id).join(EXEC_FIFO);
        if init_waits_on(&fifo) {
            Status::Created
        } else if frozen {
            Status::Paused
        } else {
            Status::Running
        }
    }
}

/// Whether init still waits on its exec.fifo, so `start` has not let it go.
/// The fifo's existence alone does not say: a `start` killed between its
/// write and its unlink leaves the fifo of a running container behind. Init
/// holds the fifo open (O_RDWR) until it execs, and a non-blocking open for
/// writing fails with ENXIO exactly when no one holds it for reading. Any
/// other error keeps the old answer: the fifo is there, so `created`.
fn init_waits_on(fifo: &Path) -> bool {
    use nix::fcntl::{OFlag, open};
    match open(fifo, OFlag::O_WRONLY | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC, nix::sys::stat::Mode::empty()) {
        Ok(_) => true,
        Err(nix::errno::Errno::ENXIO | nix::errno::Errno::ENOENT) => false,
        Err(_) => fifo.exists(),
    }
}

pub fn now_rfc3339() -> String {
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap_or_default();
    rfc3339(now.as_secs() as i64, now.subsec_nanos())
}

/// Formats seconds since the epoch (UTC) as RFC 3339 with nanoseconds.
pub fn rfc3339(secs: i64, nanos: u32) -> String {
    let days = secs.div_euclid(86400);
    let sod = secs.rem_euclid(86400);
    // civil-from-days (Howard Hinnant's algorithm)
    let z = days + 719468;
    let era = z.div_euclid(146097);
    let doe = z - era * 146097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z", sod / 3600, sod % 3600 / 60, sod % 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids() {
        for ok in ["a", "abc-1", "x_y.z", "A+b"] {
            validate_id(ok).unwrap();
        }
        for bad in ["", ".", "..", "../x", "a/b", "/abs", ".hidden", "a b", "a\0b"] {
            assert!(validate_id(bad).is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn stat_with_hostile_comm() {
        let line = "42 (a) b) c) S 1 42 42 0 -1 4194560 100 0 0 0 0 0 0 0 20 0 1 0 123456 1000 10";
        assert_eq!(parse_stat(line), Some(ProcStat { state: 'S', start_time: 123456 }));
        assert_eq!(parse_stat("garbage"), None);
    }

    #[test]
    fn time_format() {
        assert_eq!(rfc3339(0, 0), "1970-01-01T00:00:00.000000000Z");
        assert_eq!(rfc3339(951782400, 5), "2000-02-29T00:00:00.000000005Z");
        assert_eq!(rfc3339(1795392000, 0), "2026-11-23T00:00:00.000000000Z");
    }

    #[test]
    fn atomic_write_replaces() {
        let d = std::env::temp_dir().join(format!("strata-test-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("s.json");
        write_atomic(&p, b"one").unwrap();
        write_atomic(&p, b"two").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"two");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1);
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_staged_file_is_seen_only_once_committed_and_dropped_leaves_nothing() {
        let d = std::env::temp_dir().join(format!("strata-test-staged-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("s.json");
        write_atomic(&p, b"old").unwrap();
        let staged = Staged::write(&p, b"new").unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"old");
        staged.commit().unwrap();
        assert_eq!(fs::read(&p).unwrap(), b"new");
        drop(Staged::write(&p, b"never").unwrap());
        assert_eq!(fs::read(&p).unwrap(), b"new");
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "a temp file was left");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn a_reader_sees_the_old_or_the_new_file_while_it_is_replaced() {
        let d = std::env::temp_dir().join(format!("strata-test-swap-{}", std::process::id()));
        fs::create_dir_all(&d).unwrap();
        let p = d.join("s.json");
        let (a, b) = (vec![b'a'; 3000], vec![b'b'; 5000]);
        write_atomic(&p, &a).unwrap();
        let done = std::sync::atomic::AtomicBool::new(false);
        std::thread::scope(|s| {
            s.spawn(|| {
                for i in 0..2000 {
                    write_atomic(&p, if i % 2 == 0 { &b } else { &a }).unwrap();
                }
                done.store(true, std::sync::atomic::Ordering::Release);
            });
            let mut reads = 0;
            while !done.load(std::sync::atomic::Ordering::Acquire) || reads == 0 {
                let got = fs::read(&p).expect("the file is always there");
                assert!(got == a || got == b, "read {} bytes of neither file", got.len());
                reads += 1;
            }
        });
        assert_eq!(fs::read_dir(&d).unwrap().count(), 1, "a temp file was left");
        fs::remove_dir_all(&d).unwrap();
    }

    #[test]
    fn config_views_read_only_their_part() {
        let text = r#"{"id":"c","pid":7,"init_start_time":1,"bundle":"/b","rootfs":"/b/rootfs","created":"t",
            "config":{"ociVersion":"1.2.0","annotations":{"k":"v"},
                      "process":{"cwd":"/","args":["sh"],"user":{"uid":5,"gid":6}},
                      "hooks":{"poststop":[{"path":"/bin/true"}]},
                      "linux":{"seccomp":{"defaultAction":"SCMP_ACT_ALLOW"},"unknownToStrata":{"x":1}},
                      "root":{"path":"rootfs"}}}"#;
        let st: State = serde_json::from_str(text).unwrap();
        assert_eq!(st.annotations(), HashMap::from([("k".to_string(), "v".to_string())]));
        let hooks = st.hooks().unwrap().unwrap();
        assert_eq!(hooks.poststop().as_ref().unwrap()[0].path(), Path::new("/bin/true"));
        let parts = st.exec_parts().unwrap();
        assert_eq!(parts.process.unwrap().user().uid(), 5);
        assert!(parts.seccomp.is_some());
        assert!(parts.personality.is_none());
        // Saved as it was read: the raw text goes back out unchanged.
        let again: State = serde_json::from_str(&serde_json::to_string(&st).unwrap()).unwrap();
        assert_eq!(again.config.get(), st.config.get());
        // A config that does not parse is reported, naming the container.
        let bad: State = serde_json::from_str(&text.replace(r#""uid":5"#, r#""uid":"five""#)).unwrap();
        let e = bad.exec_parts().unwrap_err().to_string();
        assert!(e.contains("c: state.json"), "{e}");
    }

    fn creating(id: &str) -> State {
        let text = r#"{"id":"ID","pid":0,"init_start_time":0,"bundle":"/b","rootfs":"/b/rootfs","created":"t","config":{}}"#;
        let mut st: State = serde_json::from_str(&text.replace("ID", id)).unwrap();
        st.creating = Creator::current().ok();
        st
    }

    #[test]
    fn reserve_is_exclusive_and_never_leaves_an_id_without_a_state() {
        let d = std::env::temp_dir().join(format!("strata-root-{}", std::process::id()));
        let root = Root::new(d.clone());
        root.reserve(&creating("c1")).unwrap();
        assert!(matches!(root.reserve(&creating("c1")), Err(StateError::Exists(_))));
        assert!(matches!(root.reserve(&creating("../c1")), Err(StateError::BadId(_))));
        let st = root.load("c1").unwrap();
        assert_eq!(st.status(&root, false), Status::Creating);
        assert_eq!(root.ids().unwrap(), ["c1"]);
        // A reservation left by a dead process is reaped; a live one is not.
        let stale = d.join(".c2.new-999999999-1");
        fs::create_dir_all(&stale).unwrap();
        let me = Creator::current().unwrap();
        let live = d.join(format!(".c3.new-{}-{}", me.pid, me.start_time));
        fs::create_dir_all(&live).unwrap();
        root.reap_reservations();
        assert!(!stale.exists());
        assert!(live.exists());
        // The creator gone without finishing: the container is dead.
        let mut dead = creating("c4");
        dead.creating = Some(Creator { pid: std::process::id() as i32, start_time: 1 });
        assert_eq!(dead.status(&root, false), Status::Stopped);
        assert_eq!(dead.oci(Status::Stopped).pid, None);
        fs::remove_dir_all(&d).unwrap();
    }
}
