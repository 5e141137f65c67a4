//! The runtime log: `--log FILE` and `--log-format text|json`, as runc
//! writes it (containerd reads the JSON lines `{"level","msg","time"}` to
//! surface errors). Without `--log`, lines go to stderr.
//!
//! The sink is set once by `main` before any work starts; a process-wide
//! cell is the one place every module can report a warning without the
//! log being threaded through each call.

use std::io::Write;
use std::path::PathBuf;
use std::sync::OnceLock;

#[derive(Debug, Clone, Default)]
pub struct LogConfig {
    pub file: Option<PathBuf>,
    pub json: bool,
    pub debug: bool,
}

static CONFIG: OnceLock<LogConfig> = OnceLock::new();

/// Set in a container's process (init, exec's child) before it leaves the
/// host's mount namespace: from there on its lines go to its stderr, the
/// caller's, never to a `--log` path (which would resolve inside the
/// container).
static IN_CONTAINER: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

pub fn in_container() {
    IN_CONTAINER.store(true, std::sync::atomic::Ordering::Relaxed);
}

pub fn init(cfg: LogConfig) {
    let _ = CONFIG.set(cfg);
}

pub fn debug_enabled() -> bool {
    CONFIG.get().is_some_and(|c| c.debug)
}

/// Formats one log line; `fields` follow the message, as logrus writes a
/// line's fields (`id=c1`).
pub fn format_line(json: bool, level: &str, msg: &str, time: &str, fields: &[(&str, &str)]) -> String {
    if json {
        let mut v = serde_json::json!({ "level": level, "msg": msg, "time": time });
        for (k, val) in fields {
            v[*k] = serde_json::Value::from(*val);
        }
        v.to_string() + "\n"
    } else {
        let mut line = format!("time=\"{time}\" level={level} msg={msg:?}");
        for (k, val) in fields {
            line += &format!(" {k}={val:?}");
        }
        line + "\n"
    }
}

/// A `level=debug` line, written only under `--debug` (the message is made
/// only then).
pub fn debug(msg: impl FnOnce() -> String) {
    if debug_enabled() {
        emit("debug", &msg());
    }
}

pub fn emit(level: &str, msg: &str) {
    emit_with(level, msg, &[]);
}

/// A line with fields after the message (`strata run`'s error names its
/// container this way, since runc's words for it do not).
pub fn emit_with(level: &str, msg: &str, fields: &[(&str, &str)]) {
    let cfg = CONFIG.get().cloned().unwrap_or_default();
    if level == "debug" && !cfg.debug {
        return;
    }
    let line = format_line(cfg.json, level, msg, &crate::state::now_rfc3339(), fields);
    match &cfg.file {
        Some(p) if !IN_CONTAINER.load(std::sync::atomic::Ordering::Relaxed) => {
            if let Ok(mut f) = std::fs::OpenOptions::new().create(true).append(true).open(p) {
                let _ = f.write_all(line.as_bytes());
            }
        }
        _ => {
            let _ = std::io::stderr().write_all(line.as_bytes());
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn json_lines_are_what_containerd_parses() {
        let l = super::format_line(true, "error", "boom \"x\"", "T", &[("id", "c1")]);
        let v: serde_json::Value = serde_json::from_str(&l).unwrap();
        assert_eq!(v["level"], "error");
        assert_eq!(v["msg"], "boom \"x\"");
        assert_eq!(v["time"], "T");
        assert_eq!(v["id"], "c1");
        let l = super::format_line(false, "error", "boom", "T", &[("id", "c1")]);
        assert_eq!(l, "time=\"T\" level=error msg=\"boom\" id=\"c1\"\n");
    }
}
