//! Runs OCI hooks: the hook's path with its args and env, the container
//! state as JSON on stdin, killed when its `timeout` runs out.

use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use oci_spec::runtime::Hook;

/// A hook that failed: runc's words (`error running prestart hook #0:`,
/// counted from 0 in its list), which callers and runc's tests match.
#[derive(Debug, thiserror::Error)]
pub enum HookError {
    #[error("error running {kind} hook #{index}: {path}: {msg}")]
    Failed { kind: &'static str, index: usize, path: String, msg: String },
}

pub fn run_all(kind: &'static str, hooks: &[Hook], state_json: &[u8]) -> Result<(), HookError> {
    hooks.iter().enumerate().try_for_each(|(i, h)| run_in(kind, i, h, state_json, None, None))
}

/// `run_all` with `dir` as the hooks' working directory: the bundle for the
/// runtime's hooks at create, the rootfs for createContainer, as runc runs
/// them (hooks that load files by relative path rely on it).
pub fn run_all_in(kind: &'static str, hooks: &[Hook], state_json: &[u8], dir: &std::path::Path) -> Result<(), HookError> {
    hooks.iter().enumerate().try_for_each(|(i, h)| run_in(kind, i, h, state_json, None, Some(dir)))
}

/// For startContainer: a hook without `env` gets `env` (the container
/// process's environment) instead of the runtime's.
pub fn run_all_with_env(kind: &'static str, hooks: &[Hook], state_json: &[u8], env: &[String]) -> Result<(), HookError> {
    hooks.iter().enumerate().try_for_each(|(i, h)| run_in(kind, i, h, state_json, Some(env), None))
}

/// For poststart and poststop: a failing hook is reported through `warn`
/// and the remaining hooks still run (runtime-spec lifecycle).
pub fn run_all_warn(kind: &'static str, hooks: &[Hook], state_json: &[u8], warn: impl Fn(&HookError)) {
    for (i, h) in hooks.iter().enumerate() {
        if let Err(e) = run_in(kind, i, h, state_json, None, None) {
            warn(&e);
        }
    }
}

/// Runs one hook. A hook with `env` gets exactly that environment; one
/// without gets the environment of the process running it (as runc does).
pub fn run(kind: &'static str, hook: &Hook, state_json: &[u8]) -> Result<(), HookError> {
    run_in(kind, 0, hook, state_json, None, None)
}

fn run_in(
    kind: &'static str,
    index: usize,
    hook: &Hook,
    state_json: &[u8],
    default_env: Option<&[String]>,
    dir: Option<&std::path::Path>,
) -> Result<(), HookError> {
    let path = hook.path().display().to_string();
    let fail = |msg: String| HookError::Failed { kind, index, path: path.clone(), msg };
    let mut cmd = Command::new(hook.path());
    let args = hook.args().clone().unwrap_or_default();
    if let Some((argv0, rest)) = args.split_first() {
        cmd.arg0(argv0).args(rest);
    }
    if let Some(env) = hook.env().as_deref().or(default_env) {
        cmd.env_clear();
        for kv in env {
            if let Some((k, v)) = kv.split_once('=') {
                cmd.env(k, v);
            }
        }
    }
    if let Some(d) = dir {
        cmd.current_dir(d);
    }
    cmd.stdin(Stdio::piped());
    let mut child = cmd.spawn().map_err(|e| fail(format!("spawn: {e}")))?;
    if let Some(mut stdin) = child.stdin.take() {
        // A hook need not read its stdin; EPIPE is not an error.
        let _ = stdin.write_all(state_json);
    }
    let deadline = hook.timeout().filter(|t| *t > 0).map(|t| Instant::now() + Duration::from_secs(t as u64));
    let mut nap = Duration::from_micros(200);
    let status = loop {
        match child.try_wait().map_err(|e| fail(format!("wait: {e}")))? {
            Some(s) => break s,
            None if deadline.is_some_and(|d| Instant::now() >= d) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(fail(format!("timed out after {}s", hook.timeout().unwrap_or(0))));
            }
            None => {
                std::thread::sleep(nap);
                nap = (nap * 2).min(Duration::from_millis(20));
            }
        }
    };
    use std::os::unix::process::ExitStatusExt;
    match (status.success(), status.signal()) {
        (true, _) => Ok(()),
        // As Go's os/exec words it for runc: `signal: bad system call`.
        (false, Some(sig)) => Err(fail(format!("signal: {} ({status})", crate::sys::signal_description(sig).to_lowercase()))),
        (false, None) => Err(fail(format!("exited with {status}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hook(json: &str) -> Hook {
        serde_json::from_str(json).unwrap()
    }

    #[test]
    fn hook_gets_state_on_stdin_and_args() {
        let out = std::env::temp_dir().join(format!("hook-out-{}", std::process::id()));
        let h = hook(&format!(
            r#"{{"path":"/bin/sh","args":["sh","-c","cat > {} && echo $X >> {}"],"env":["X=42"]}}"#,
            out.display(),
            out.display()
        ));
        run("prestart", &h, br#"{"id":"c"}"#).unwrap();
        assert_eq!(std::fs::read_to_string(&out).unwrap(), "{\"id\":\"c\"}42\n");
        std::fs::remove_file(out).unwrap();
    }

    #[test]
    fn failing_and_slow_hooks_are_errors() {
        assert!(run("prestart", &hook(r#"{"path":"/bin/false"}"#), b"").is_err());
        let e = run("prestart", &hook(r#"{"path":"/bin/sleep","args":["sleep","5"],"timeout":1}"#), b"").unwrap_err();
        assert!(e.to_string().contains("timed out"), "{e}");
        assert!(run("prestart", &hook(r#"{"path":"/nonexistent"}"#), b"").is_err());
    }

    /// A hook killed by a signal says which, in the words Go gives runc.
    #[test]
    fn a_hook_killed_by_a_signal_says_which() {
        let h = hook(r#"{"path":"/bin/sh","args":["sh","-c","kill -SYS $$"]}"#);
        let e = run_all("startContainer", &[h], b"{}").unwrap_err().to_string();
        assert!(e.starts_with("error running startContainer hook #0: /bin/sh: signal: bad system call"), "{e}");
    }
}
