//! `checkpoint` and `restore`: runc's flags, turned into
//! `strata::checkpoint`'s options.

use std::path::PathBuf;

use strata::checkpoint::CriuFlags;
use strata::checkpoint::dump::CheckpointOpts;
use strata::checkpoint::restore::RestoreOpts;

/// The CRIU flags both commands take.
#[derive(clap::Args, Clone)]
pub struct CriuArgs {
    /// Path for saving criu image files [default: ./checkpoint].
    #[arg(long = "image-path")]
    image_path: Option<PathBuf>,
    /// Path for saving work files and logs.
    #[arg(long = "work-path")]
    work_path: Option<PathBuf>,
    /// Allow open tcp connections.
    #[arg(long = "tcp-established")]
    tcp_established: bool,
    /// Allow external unix sockets.
    #[arg(long = "ext-unix-sk")]
    ext_unix_sk: bool,
    /// Allow shell jobs.
    #[arg(long = "shell-job")]
    shell_job: bool,
    /// Handle file locks, for safety.
    #[arg(long = "file-locks")]
    file_locks: bool,
    /// Cgroups mode: soft|full|strict|ignore (default: soft).
    #[arg(long = "manage-cgroups-mode")]
    manage_cgroups_mode: Option<String>,
    /// Create a namespace, but don't restore its properties (network).
    #[arg(long = "empty-ns")]
    empty_ns: Vec<String>,
    /// Enable auto deduplication of memory images.
    #[arg(long = "auto-dedup")]
    auto_dedup: bool,
    /// Use userfaultfd to lazily restore memory pages.
    #[arg(long = "lazy-pages")]
    lazy_pages: bool,
}

impl CriuArgs {
    fn flags(&self, criu: Option<PathBuf>) -> CriuFlags {
        CriuFlags {
            criu,
            image_path: self.image_path.clone(),
            work_path: self.work_path.clone(),
            tcp_established: self.tcp_established,
            ext_unix_sk: self.ext_unix_sk,
            shell_job: self.shell_job,
            file_locks: self.file_locks,
            manage_cgroups_mode: self.manage_cgroups_mode.clone(),
            empty_ns: self.empty_ns.clone(),
            auto_dedup: self.auto_dedup,
            lazy_pages: self.lazy_pages,
        }
    }
}

#[derive(clap::Args)]
pub struct CheckpointArgs {
    #[command(flatten)]
    criu: CriuArgs,
    /// Path for previous criu image files in pre-dump (relative to --image-path).
    #[arg(long = "parent-path")]
    parent_path: Option<PathBuf>,
    /// Leave the process running after checkpointing.
    #[arg(long = "leave-running")]
    leave_running: bool,
    /// Skip in-flight tcp connections.
    #[arg(long = "tcp-skip-in-flight")]
    tcp_skip_in_flight: bool,
    /// Allow one to link unlinked files back when possible.
    #[arg(long = "link-remap")]
    link_remap: bool,
    /// Criu writes \0 to this FD once lazy-pages is ready.
    #[arg(long = "status-fd", default_value_t = -1, allow_negative_numbers = true)]
    status_fd: i32,
    /// ADDRESS:PORT of the page server.
    #[arg(long = "page-server")]
    page_server: Option<String>,
    /// Dump the container's memory only, leaving it running.
    #[arg(long = "pre-dump")]
    pre_dump: bool,
    pub id: String,
}

impl CheckpointArgs {
    pub fn opts(&self, criu: Option<PathBuf>) -> CheckpointOpts {
        CheckpointOpts {
            criu: self.criu.flags(criu),
            parent_path: self.parent_path.clone(),
            leave_running: self.leave_running || self.pre_dump,
            tcp_skip_in_flight: self.tcp_skip_in_flight,
            link_remap: self.link_remap,
            pre_dump: self.pre_dump,
            status_fd: (self.status_fd >= 0).then_some(self.status_fd),
            page_server: self.page_server.clone().filter(|s| !s.is_empty()),
        }
    }
}

#[derive(clap::Args)]
pub struct RestoreArgs {
    #[command(flatten)]
    criu: CriuArgs,
    /// Path to the root of the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    /// Detach from the container's process.
    #[arg(short, long)]
    detach: bool,
    /// Specify the file to write the process id to.
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the master end of the restored pty.
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Disable the use of the subreaper used to reap reparented processes.
    #[arg(long = "no-subreaper")]
    no_subreaper: bool,
    /// Accepted as runc's; CRIU makes the mount namespace.
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    /// Refused when given: strata applies no LSM profiles.
    #[arg(long = "lsm-profile")]
    lsm_profile: Option<String>,
    /// Refused when given: strata applies no LSM labels.
    #[arg(long = "lsm-mount-context")]
    lsm_mount_context: Option<String>,
    pub id: String,
}

impl RestoreArgs {
    pub fn opts(&self, criu: Option<PathBuf>, store: PathBuf, systemd_cgroup: bool) -> RestoreOpts {
        RestoreOpts {
            criu: self.criu.flags(criu),
            id: self.id.clone(),
            bundle: self.bundle.clone(),
            detach: self.detach,
            pid_file: self.pid_file.clone(),
            console_socket: self.console_socket.clone(),
            no_pivot: self.no_pivot,
            no_subreaper: self.no_subreaper,
            lsm_profile: self.lsm_profile.clone(),
            lsm_mount_context: self.lsm_mount_context.clone(),
            store,
            systemd_cgroup,
        }
    }
}
