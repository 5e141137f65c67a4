//! `exec`: runc's flags, turned into `process::exec`'s options.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use strata::state::Root;

#[derive(clap::Args)]
pub struct ExecArgs {
    /// A process.json (runtime-spec `process`) instead of ARGS.
    #[arg(short, long)]
    process: Option<PathBuf>,
    #[arg(short, long)]
    pub tty: bool,
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the new process.
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    #[arg(short, long)]
    detach: bool,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    #[arg(long)]
    cwd: Option<PathBuf>,
    /// KEY=VALUE, may repeat.
    #[arg(short, long)]
    pub env: Vec<String>,
    /// UID[:GID]
    #[arg(short, long)]
    user: Option<String>,
    #[arg(short = 'g', long = "additional-gids")]
    additional_gids: Vec<u32>,
    /// Add a capability, may repeat.
    #[arg(short, long)]
    cap: Vec<String>,
    #[arg(long = "no-new-privs")]
    no_new_privs: bool,
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    /// Exec into a paused container (the new process starts frozen too).
    #[arg(long = "ignore-paused")]
    ignore_paused: bool,
    /// Join a sub-cgroup of the container's: [controller[,controller]:]path (may repeat).
    #[arg(long = "cgroup")]
    cgroup: Vec<String>,
    /// Refused when given: strata applies no SELinux labels.
    #[arg(long = "process-label")]
    process_label: Option<String>,
    /// Refused when given: strata applies no AppArmor profiles.
    #[arg(long)]
    apparmor: Option<String>,
    pub id: String,
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub args: Vec<String>,
}

pub fn exec_cmd(root: &Root, a: ExecArgs) -> Result<i32> {
    use strata::process::exec::{self, ExecOpts, ExecProcess, Overrides};
    let given = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if given(&a.apparmor) {
        bail!("--apparmor: strata applies no AppArmor profiles");
    }
    if given(&a.process_label) {
        bail!("--process-label: strata applies no SELinux labels");
    }
    let process = match &a.process {
        Some(path) => {
            let text = std::fs::read(path).with_context(|| format!("read {}", path.display()))?;
            let p = strata::spec::parse_process(&text).map_err(|e| anyhow::anyhow!("parse {}: {e}", path.display()))?;
            if given(p.apparmor_profile()) || given(p.selinux_label()) {
                bail!("{}: apparmorProfile/selinuxLabel: strata applies no AppArmor profiles or SELinux labels", path.display());
            }
            ExecProcess::Given(Box::new(p))
        }
        None => ExecProcess::Overrides(Overrides {
            args: a.args.clone(),
            env: a.env.clone(),
            cwd: a.cwd.clone(),
            user: a.user.clone(),
            additional_gids: a.additional_gids.clone(),
            caps: a.cap.clone(),
            no_new_privs: a.no_new_privs,
            tty: a.tty,
        }),
    };
    let opts = ExecOpts {
        id: a.id,
        process,
        console_socket: a.console_socket,
        detach: a.detach,
        pid_file: a.pid_file,
        pidfd_socket: a.pidfd_socket,
        preserve_fds: a.preserve_fds,
        ignore_paused: a.ignore_paused,
        cgroups: a.cgroup.clone(),
    };
    Ok(exec::exec(root, &opts)?)
}
