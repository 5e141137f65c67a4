//! The `strata` command line: runc's commands, flags and exit codes.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use clap::{Args, FromArgMatches, Parser, Subcommand};

mod cli;

/// A bump arena for the short commands, malloc for the long phases
/// (`strata::sys::arena`).
#[global_allocator]
static ALLOC: strata::sys::arena::Global = strata::sys::arena::Global;

use strata::container;
use strata::logging::{self, LogConfig};
use strata::process::parent::{self, CreateOpts};
use strata::process::run;
use strata::state::{Root, Status};

#[derive(Parser)]
#[command(
    name = "strata",
    disable_version_flag = true,
    about = "Open Container Initiative runtime\n\nstrata runs OCI bundles as runc does, and assembles a bundle's rootfs from image layers."
)]
struct Cli {
    #[command(flatten)]
    g: Global,
    #[command(subcommand)]
    cmd: Option<Cmd>,
}

/// The global flags (runc's), accepted before or after the command.
#[derive(Args)]
struct Global {
    /// Directory for container state [default: /run/strata; rootless:
    /// $XDG_RUNTIME_DIR/strata].
    #[arg(long, global = true)]
    root: Option<PathBuf>,
    /// The layer store for image-backed bundles [default: /var/lib/strata;
    /// rootless: $XDG_DATA_HOME/strata, ~/.local/share/strata].
    #[arg(long, global = true, env = "STRATA_STORE")]
    store: Option<PathBuf>,
    /// Log file (default: stderr).
    #[arg(long, global = true)]
    log: Option<PathBuf>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    #[arg(long, global = true)]
    debug: bool,
    /// Print the version, the commit, the runtime-spec version and the
    /// libseccomp in use.
    #[arg(short = 'v', long = "version")]
    version: bool,
    /// Make the container's cgroup a transient systemd scope (cgroupsPath is
    /// then slice:prefix:name).
    #[arg(long = "systemd-cgroup", global = true)]
    systemd_cgroup: bool,
    /// auto (default: rootless unless root of the host: not root, or root
    /// of a user namespace as under rootless podman), true or false: where
    /// state and the store live by default, and whether a cgroup that cannot
    /// be written is skipped with a warning, as runc's flag.
    /// The CRIU binary for checkpoint and restore [default: criu on PATH].
    #[arg(long, global = true)]
    criu: Option<PathBuf>,
    #[arg(id = "global_rootless", long = "rootless", global = true, num_args = 0..=1, require_equals = true, default_missing_value = "true")]
    rootless: Option<String>,
}

impl Global {
    fn rootless(&self) -> Result<bool> {
        // Read once per command: auto reads /proc/self/uid_map as root.
        static AUTO: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
        match self.rootless.as_deref() {
            None | Some("auto") => Ok(*AUTO.get_or_init(|| !strata::userns::host_root())),
            Some("true") => Ok(true),
            Some("false") => Ok(false),
            Some(other) => anyhow::bail!("--rootless={other}: expected auto, true or false"),
        }
    }

    fn root(&self) -> Result<PathBuf> {
        match &self.root {
            Some(r) => Ok(r.clone()),
            None => strata::defaults::state_root(self.rootless()?).map_err(anyhow::Error::msg),
        }
    }

    fn store(&self) -> Result<PathBuf> {
        match &self.store {
            Some(s) => Ok(s.clone()),
            None => strata::defaults::store_dir(self.rootless()?).map_err(anyhow::Error::msg),
        }
    }
}

#[derive(Args)]
struct IdArg {
    id: String,
}

#[derive(Args)]
struct RunArgs {
    #[command(flatten)]
    args: CreateArgs,
    #[arg(short, long)]
    detach: bool,
    /// Keep the container (stopped) after its process exits, until delete.
    #[arg(long, conflicts_with = "detach")]
    keep: bool,
}

#[derive(Args)]
struct KillArgs {
    #[arg(short, long)]
    all: bool,
    id: String,
    signal: Option<String>,
}

#[derive(Args)]
struct DeleteArgs {
    #[arg(short, long)]
    force: bool,
    id: String,
}

#[derive(clap::Args, Clone)]
struct CreateArgs {
    /// Path to the bundle directory.
    #[arg(short, long, default_value = ".")]
    bundle: PathBuf,
    #[arg(long = "pid-file")]
    pid_file: Option<PathBuf>,
    /// Unix socket that receives the pty master (SCM_RIGHTS).
    #[arg(long = "console-socket")]
    console_socket: Option<PathBuf>,
    /// Unix socket that receives a pidfd of the container's init.
    #[arg(long = "pidfd-socket")]
    pidfd_socket: Option<PathBuf>,
    #[arg(long = "no-pivot")]
    no_pivot: bool,
    #[arg(long = "no-new-keyring")]
    no_new_keyring: bool,
    /// Pass N extra fds (3..3+N) to the container process.
    #[arg(long = "preserve-fds", default_value_t = 0)]
    preserve_fds: u32,
    id: String,
}

#[derive(Subcommand)]
enum LayersCmd {
    /// Remove layers no container uses.
    Prune,
}

#[derive(Subcommand)]
enum Cmd {
    /// Create a container (init waits for `start`).
    Create(CreateArgs),
    /// Start a created container.
    Start(IdArg),
    /// Run a new process inside a running container.
    Exec(cli::exec::ExecArgs),
    /// Create, start and wait for a container; exits with its status.
    Run(RunArgs),
    /// Print the container's state as JSON.
    State(IdArg),
    /// Send a signal to the container's init (default SIGTERM).
    Kill(KillArgs),
    /// Delete a container and everything it holds.
    Delete(DeleteArgs),
    /// List containers.
    List {
        #[arg(short, long, default_value = "table")]
        format: String,
        #[arg(short, long)]
        quiet: bool,
    },
    /// Suspend all processes of a container.
    Pause(IdArg),
    /// Resume a paused container.
    Resume(IdArg),
    /// List the container's processes.
    Ps {
        #[arg(short, long, default_value = "table")]
        format: String,
        id: String,
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        ps_args: Vec<String>,
    },
    /// Change the resource limits of a running container.
    Update(cli::update::UpdateArgs),
    /// Print container events: stats, OOM.
    Events {
        /// Print one stats record and exit.
        #[arg(long)]
        stats: bool,
        /// Seconds between stats records (e.g. 5 or 5s).
        #[arg(long, default_value = "5s")]
        interval: String,
        id: String,
    },
    /// Checkpoint a running container (CRIU).
    Checkpoint(cli::checkpoint::CheckpointArgs),
    /// Restore a container from a previous checkpoint (CRIU).
    Restore(cli::checkpoint::RestoreArgs),
    /// Make a bundle from an image: config.json from the image, an empty rootfs/.
    Bundle {
        /// [oci:]DIR[:REF] (an OCI image layout directory), oci-archive:FILE[:REF]
        /// or docker-archive:FILE[:NAME:TAG] (`docker save` / `podman save` output).
        #[arg(long)]
        image: String,
        dir: PathBuf,
    },
    /// List the layers in the store, or prune the unused ones.
    Layers {
        #[command(subcommand)]
        cmd: Option<LayersCmd>,
    },
    /// Per container: the size of its writable layer and its virtual size.
    Df,
    /// Turn a container's changes into a new image layer: LAYOUT:REF.
    Commit { id: String, target: String },
    /// Write a default config.json.
    Spec {
        #[arg(short, long, default_value = ".")]
        bundle: PathBuf,
    },
    /// Print the features strata supports (runtime-spec features JSON).
    Features,
}

/// The commands a container's life goes through (what containerd and
/// conmon call for every container) get a command line parsed by clap with
/// only their own subcommand built: building all of strata's command tree
/// (every subcommand's flags, help and defaults) takes about 1 MiB of memory
/// and time at each start. Anything else, any error and any --help goes
/// through the whole tree, so messages and help are always complete.
fn parse_cli() -> Cli {
    let args = cli::args::go_style_flags(std::env::args_os().collect(), <Cli as clap::CommandFactory>::command);
    if let Some(cli) = parse_lean(&args) {
        return cli;
    }
    let m = with_help_layout(<Cli as clap::CommandFactory>::command()).try_get_matches_from(&args).unwrap_or_else(|e| {
        // `strata foo -h`: runc's answer for a command it does not have.
        if e.kind() == clap::error::ErrorKind::InvalidSubcommand && args.iter().any(|a| a == "-h" || a == "--help") {
            let name = e.get(clap::error::ContextKind::InvalidSubcommand).map(|v| v.to_string()).unwrap_or_default();
            eprintln!("No help topic for '{name}'");
            std::process::exit(3);
        }
        e.exit()
    });
    Cli::from_arg_matches(&m).unwrap_or_else(|e| e.exit())
}

/// Help in runc's layout, which scripts and runc's tests read: `NAME:`,
/// then `<binary> <command> - <what it does>` (the binary's own name, so a
/// strata installed as `runc` says `runc`), then usage and options.
fn with_help_layout(cmd: clap::Command) -> clap::Command {
    let bin = binary_name();
    let top =
        format!("NAME:\n   {bin} - {{about}}\n\nUSAGE:\n   {{usage}}\n\nCOMMANDS:\n{{subcommands}}\n\nGLOBAL OPTIONS:\n{{options}}\n");
    cmd.help_template(top).mut_subcommands(|sub| {
        let name = sub.get_name().to_string();
        sub.help_template(format!("NAME:\n   {bin} {name} - {{about}}\n\nUSAGE:\n   {{usage}}\n\nOPTIONS:\n{{all-args}}\n"))
    })
}

/// The name strata was run by (`runc` where it is installed as runc).
fn binary_name() -> String {
    std::env::args_os()
        .next()
        .and_then(|a| Path::new(&a).file_name().map(|n| n.to_string_lossy().into_owned()))
        .unwrap_or_else(|| "strata".into())
}

/// `-v`/`--version`: runc's lines (name and version, `commit:`, `spec:`,
/// `libseccomp:`).
fn version_text() -> String {
    let name = binary_name();
    let seccomp =
        libseccomp::ScmpVersion::current().map(|v| format!("{}.{}.{}", v.major, v.minor, v.micro)).unwrap_or_else(|_| "unknown".into());
    format!(
        "{name} version {}\ncommit: {}\nspec: {}\nlibseccomp: {seccomp}\n",
        env!("CARGO_PKG_VERSION"),
        option_env!("STRATA_COMMIT").unwrap_or("unknown"),
        strata::state::OCI_VERSION,
    )
}

/// Whether the command line names create, run or exec (found as the lean
/// parse finds its command), the commands that run from a sealed binary.
fn seals(args: &[std::ffi::OsString]) -> bool {
    let first = args.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-'));
    first.and_then(|i| command_at(args, i + 1)).is_some_and(|name| matches!(name, "create" | "run" | "exec"))
}

/// The command word at or after `args[i]`, skipping the values of global
/// flags (`--root DIR` and the like).
fn command_at(args: &[std::ffi::OsString], i: usize) -> Option<&str> {
    let prev = args[i - 1].to_string_lossy();
    if matches!(&*prev, "--root" | "--store" | "--log" | "--log-format" | "--criu") {
        let next = args.iter().skip(i + 1).position(|a| !a.to_string_lossy().starts_with('-'))?;
        return command_at(args, i + 1 + next);
    }
    args[i].to_str()
}

/// The lean parse of `parse_cli`, or None to take the whole tree.
fn parse_lean(args: &[std::ffi::OsString]) -> Option<Cli> {
    if let Some(sub) = args.iter().skip(1).position(|a| !a.to_string_lossy().starts_with('-')).and_then(|i| lean_subcommand(args, i + 1)) {
        let cmd = Global::augment_args(clap::Command::new("strata")).subcommand(sub).subcommand_required(true);
        return cmd.try_get_matches_from(args).and_then(|m| Cli::from_arg_matches(&m)).ok();
    }
    None
}

/// The clap command for `args[i]`, if it names a hot command and is not
/// the value of a global flag (`--root DIR` and the like).
fn lean_subcommand(args: &[std::ffi::OsString], i: usize) -> Option<clap::Command> {
    type Augment = fn(clap::Command) -> clap::Command;
    let (name, augment): (&'static str, Augment) = match command_at(args, i)? {
        "create" => ("create", CreateArgs::augment_args),
        "run" => ("run", RunArgs::augment_args),
        "start" => ("start", IdArg::augment_args),
        "state" => ("state", IdArg::augment_args),
        "pause" => ("pause", IdArg::augment_args),
        "resume" => ("resume", IdArg::augment_args),
        "kill" => ("kill", KillArgs::augment_args),
        "delete" => ("delete", DeleteArgs::augment_args),
        "exec" => ("exec", cli::exec::ExecArgs::augment_args),
        _ => return None,
    };
    Some(augment(clap::Command::new(name)))
}

fn main() -> ExitCode {
    // create, run and exec make processes the container can see: they must
    // run from a binary no one can write (see process::seal). The re-exec
    // happens first, before any parsing, since everything done before it is
    // done twice; a failure is reported once logging is set up.
    let sealed = if seals(&std::env::args_os().collect::<Vec<_>>()) { strata::process::seal::ensure_sealed() } else { Ok(()) };
    let cli = parse_cli();
    logging::init(LogConfig { file: cli.g.log.clone(), json: cli.g.log_format == "json", debug: cli.g.debug });
    // runc: an exec that fails before its process runs exits 255, so that
    // a caller tells it from the process's own exit codes.
    let failure = if matches!(cli.cmd, Some(Cmd::Exec(_))) { 255 } else { 1 };
    // create's and run's errors are in runc's words, which do not name
    // the container: the line names it as a field.
    let id = match &cli.cmd {
        Some(Cmd::Create(a)) | Some(Cmd::Run(RunArgs { args: a, .. })) => Some(a.id.clone()),
        _ => None,
    };
    let result = sealed.map_err(anyhow::Error::from).and_then(|()| dispatch(cli));
    logging::debug(|| format!("allocator: {} KiB of the arena used", strata::sys::arena::used() / 1024));
    match result {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            let msg = error_chain(&e);
            let fields: Vec<(&str, &str)> = id.iter().map(|id| ("id", id.as_str())).collect();
            logging::emit_with("error", &msg, &fields);
            // With --log, the caller may not read the file: say it on stderr too, as runc does.
            if std::env::args().any(|a| a == "--log" || a.starts_with("--log=")) {
                let _ = writeln!(std::io::stderr(), "strata: {msg}");
            }
            ExitCode::from(failure)
        }
    }
}

/// The name strata was started by (`runc` where it is installed as runc):
/// create's and run's errors begin `<name> create failed: ` as runc's do,
/// and, as there, go on with the steps that failed (`unable to start
/// container process: error during container init: error mounting ...`).
fn prog_name() -> String {
    let arg0 = std::env::args_os().next().unwrap_or_default();
    Path::new(&arg0).file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "strata".into())
}

/// `context: error: cause`, without repeating a cause an error already
/// printed (a syscall error ends with its errno's text; the errno, as the
/// source, would say it again as `EIO: I/O error`).
fn error_chain(e: &anyhow::Error) -> String {
    let mut out = String::new();
    for cause in e.chain() {
        let text = cause.to_string();
        let errno_echo = cause.downcast_ref::<nix::errno::Errno>().is_some_and(|e| out.ends_with(&strata::sys::errno_text(*e)));
        if out.ends_with(&text) || errno_echo {
            continue;
        }
        if !out.is_empty() {
            out.push_str(": ");
        }
        out.push_str(&text);
    }
    out
}

fn dispatch(cli: Cli) -> Result<u8> {
    let g = &cli.g;
    let rootless = g.rootless()?;
    // Commands that keep no container state need no state directory (and a
    // rootless caller without XDG_RUNTIME_DIR can still run them).
    if g.version {
        print!("{}", version_text());
        return Ok(0);
    }
    let Some(cmd) = cli.cmd else {
        with_help_layout(<Cli as clap::CommandFactory>::command()).print_help()?;
        return Ok(0);
    };
    let stateless = matches!(cmd, Cmd::Spec { .. } | Cmd::Features | Cmd::Bundle { .. });
    let root = Root::new(if stateless { PathBuf::new() } else { g.root()? });
    match cmd {
        Cmd::Create(a) => {
            let opts = create_opts(&a, false, g);
            parent::create(&root, &opts).with_context(|| format!("{} create failed", prog_name()))?;
        }
        Cmd::Start(IdArg { id }) => container::start(&root, &id).with_context(|| format!("start {id}"))?,
        Cmd::Exec(a) => {
            let id = a.id.clone();
            let code = cli::exec::exec_cmd(&root, a).with_context(|| format!("exec {id} failed"))?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::Run(RunArgs { args, detach, keep }) => {
            let opts = create_opts(&args, !detach, g);
            let code = run::run(&root, &opts, detach, keep).with_context(|| format!("{} run failed", prog_name()))?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::State(IdArg { id }) => {
            let (st, s) = container::load(&root, &id).with_context(|| format!("state {id}"))?;
            println!("{}", serde_json::to_string_pretty(&st.cli(s))?);
        }
        Cmd::Kill(KillArgs { all, id, signal }) => {
            let sig = container::parse_signal(signal.as_deref().unwrap_or("SIGTERM"))?;
            container::kill_container(&root, &id, sig, all).with_context(|| format!("kill {id}"))?;
        }
        Cmd::Delete(DeleteArgs { force, id }) => match container::delete(&root, &id, force) {
            // runc: deleting a container that does not exist is an error, except with --force.
            Err(container::OpError::State(strata::state::StateError::NotFound(_))) if force => {}
            r => r.with_context(|| format!("delete {id}"))?,
        },
        Cmd::Update(a) => {
            let id = a.id.clone();
            let patch = cli::update::update_patch(&a)?;
            container::update(&root, &id, &patch).with_context(|| format!("update {id}"))?;
        }
        Cmd::Events { stats, interval, id } => {
            let every = cli::args::parse_go_duration(&interval).with_context(|| format!("events: bad --interval {interval:?}"))?;
            let mut out = std::io::stdout();
            container::events(&root, &id, stats, every.max(std::time::Duration::from_millis(10)), &mut out)
                .with_context(|| format!("events {id}"))?;
        }
        Cmd::List { format, quiet } => {
            // As runc: a --root that does not exist is an error; the
            // default one just has no containers yet.
            if g.root.is_some() && !root.dir.exists() {
                bail!("list: stat {}: no such file or directory", root.dir.display());
            }
            cli::listing::list(&root, &format, quiet)?
        }
        Cmd::Pause(IdArg { id }) => container::pause(&root, &id, true).with_context(|| format!("pause {id}"))?,
        Cmd::Resume(IdArg { id }) => container::pause(&root, &id, false).with_context(|| format!("resume {id}"))?,
        Cmd::Ps { format, id, ps_args } => cli::listing::ps(&root, &id, &format, &ps_args)?,
        Cmd::Spec { bundle } => {
            let path = bundle.join("config.json");
            if path.exists() {
                bail!("spec: {} already exists", path.display());
            }
            let text = serde_json::to_string_pretty(&strata::defaults::spec(rootless))?;
            std::fs::write(&path, text + "\n").with_context(|| format!("spec: write {}", path.display()))?;
        }
        Cmd::Bundle { image, dir } => {
            let mut base = if rootless { strata::defaults::rootless_image_spec() } else { strata::defaults::spec(false) };
            base["process"]["terminal"] = serde_json::json!(false);
            std::fs::create_dir_all(&dir).with_context(|| format!("bundle: mkdir {}", dir.display()))?;
            strata::layers::bundle_from_image(&image, &dir, base).with_context(|| format!("bundle --image {image}"))?;
        }
        Cmd::Layers { cmd } => {
            let store_dir = g.store()?;
            let store = strata::layers::Store::open(&store_dir).with_context(|| format!("layer store {}", store_dir.display()))?;
            match cmd {
                None => {
                    println!("{:<73} {:>12} CONTAINERS", "CHAIN ID", "SIZE");
                    for l in strata::layers::list_layers(&store)? {
                        println!("{:<73} {:>12} {}", l.chain_id.to_string(), l.size, l.containers);
                    }
                }
                Some(LayersCmd::Prune) => {
                    for removed in strata::layers::prune(&store)? {
                        println!("{removed}");
                    }
                }
            }
        }
        Cmd::Df => {
            let store_dir = g.store()?;
            let store = strata::layers::Store::open(&store_dir).with_context(|| format!("layer store {}", store_dir.display()))?;
            println!("{:<24} {:>14} {:>14}", "CONTAINER", "SIZE", "VIRTUAL SIZE");
            for id in root.ids()? {
                if let Ok((upper, virt)) = strata::layers::container_usage(&store, &id) {
                    println!("{id:<24} {upper:>14} {virt:>14}");
                }
            }
        }
        Cmd::Commit { id, target } => {
            let (layout, reference) = strata::image::source::split_ref(&target);
            let reference = reference.context("commit: give the new image as LAYOUT:REF")?;
            let (st, s) = container::load(&root, &id).with_context(|| format!("commit {id}"))?;
            if s == Status::Running {
                bail!("commit {id}: the container is running; pause or stop it first, so its files hold still");
            }
            let dir = st.store.as_ref().with_context(|| format!("commit {id}: its rootfs was not made from an image"))?;
            let store = strata::layers::Store::open(dir)?;
            let upper = store.container_dirs(&id)?.upper;
            let digest =
                strata::layers::commit(&store, &id, &upper, Path::new(layout), reference).with_context(|| format!("commit {id}"))?;
            println!("{digest}");
        }
        Cmd::Checkpoint(a) => {
            strata::checkpoint::dump::checkpoint(&root, &a.id, &a.opts(g.criu.clone())).with_context(|| format!("checkpoint {}", a.id))?
        }
        Cmd::Restore(a) => {
            let opts = a.opts(g.criu.clone(), g.store().unwrap_or_else(|_| PathBuf::from(strata::defaults::STORE)), g.systemd_cgroup);
            let code = strata::checkpoint::restore::restore(&root, &opts).with_context(|| format!("restore {}", a.id))?;
            return Ok(code.clamp(0, 255) as u8);
        }
        Cmd::Features => println!("{}", serde_json::to_string_pretty(&strata::defaults::features())?),
    }
    Ok(0)
}

fn create_opts(a: &CreateArgs, foreground: bool, g: &Global) -> CreateOpts {
    CreateOpts {
        no_new_keyring: a.no_new_keyring,
        id: a.id.clone(),
        bundle: a.bundle.clone(),
        pid_file: a.pid_file.clone(),
        console_socket: a.console_socket.clone(),
        pidfd_socket: a.pidfd_socket.clone(),
        no_pivot: a.no_pivot,
        preserve_fds: a.preserve_fds,
        foreground,
        store: g.store().unwrap_or_else(|_| PathBuf::from(strata::defaults::STORE)),
        systemd_cgroup: g.systemd_cgroup,
        rootless: g.rootless().unwrap_or(false),
        // `run` sets it; `create` leaves init to a later `start`.
        start_by_channel: false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn argv(s: &str) -> Vec<std::ffi::OsString> {
        s.split_whitespace().map(Into::into).collect()
    }

    #[test]
    fn lean_parse_builds_only_the_command_and_agrees_with_the_full_tree() {
        let a = argv("strata --root state --log-format json delete --force --log /l c1");
        // `state` is --root's value: the command is `delete`.
        let lean = parse_lean(&a).expect("delete is a lean command");
        let full = Cli::try_parse_from(&a).unwrap();
        for cli in [&lean, &full] {
            assert_eq!(cli.g.root, Some(PathBuf::from("state")));
            assert_eq!(cli.g.log.as_deref(), Some(Path::new("/l")));
            assert_eq!(cli.g.log_format, "json");
            assert!(matches!(&cli.cmd, Some(Cmd::Delete(DeleteArgs { force: true, id })) if id == "c1"));
        }
        let lean = parse_lean(&argv("strata exec -e A=1 -t c1 sh -c x")).unwrap();
        assert!(matches!(&lean.cmd, Some(Cmd::Exec(e)) if e.tty && e.env == ["A=1"] && e.args == ["sh", "-c", "x"]));
        assert_eq!(lean.g.root, None);
        let lean = parse_lean(&argv("strata run -d --bundle /b c2")).unwrap();
        assert!(matches!(&lean.cmd, Some(Cmd::Run(r)) if r.detach && r.args.bundle == Path::new("/b") && r.args.id == "c2"));
        // Other commands, errors and help take the whole tree.
        assert!(parse_lean(&argv("strata spec")).is_none());
        assert!(parse_lean(&argv("strata state")).is_none());
        assert!(parse_lean(&argv("strata kill --help")).is_none());
        assert!(parse_lean(&argv("strata --root /r")).is_none());
    }

    #[test]
    fn sealing_commands_are_found_like_the_lean_parse_finds_them() {
        assert!(seals(&argv("strata --root run create --bundle b c1")));
        assert!(seals(&argv("strata --debug exec c1 sh")));
        assert!(seals(&argv("strata run c1")));
        assert!(!seals(&argv("strata --root exec state c1")));
        assert!(!seals(&argv("strata delete run")));
        assert!(!seals(&argv("strata")));
    }

    #[test]
    fn go_style_long_flags_are_taken_as_go_takes_them() {
        let go = |s: &str| cli::args::go_style_flags(argv(s), <Cli as clap::CommandFactory>::command);
        let got = go("strata -root /r restore -no-subreaper -pid-file=/p -d -work-path /w -x --bundle b id -detach");
        assert_eq!(got, argv("strata --root /r restore --no-subreaper --pid-file=/p -d --work-path /w -x --bundle b id -detach"));
        assert_eq!(go("strata update --cpu-quota -100 id"), argv("strata update --cpu-quota -100 id"));
        // A container process's own arguments are never touched.
        assert_eq!(go("strata exec -u 0 id ps -format x"), argv("strata exec -u 0 id ps -format x"));
    }

    #[test]
    fn error_chains_drop_only_repeats() {
        let sys = strata::sys::err("mount", "/x", "MS_BIND")(nix::errno::Errno::EIO);
        let e = anyhow::Error::from(sys).context("create c1");
        assert_eq!(error_chain(&e), "create c1: mount /x (MS_BIND): I/O error");
        // A cause whose last word happens to end the context is kept.
        let e = anyhow::anyhow!("prestart hook /bin/false: exit status: 1").context("create c-81");
        assert_eq!(error_chain(&e), "create c-81: prestart hook /bin/false: exit status: 1");
    }
}
