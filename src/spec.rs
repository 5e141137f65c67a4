//! Loads a bundle's `config.json` once and checks it once. Everything after
//! this module works on a `Bundle` whose spec has already been validated:
//! absolute paths, a process with arguments, no duplicated namespaces.

use std::collections::HashSet;
use std::path::{Path, PathBuf};

use oci_spec::runtime::{LinuxNamespaceType, Spec};

#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("bundle {0}: not a directory")]
    NoBundle(PathBuf),
    #[error("read {path}: {source}")]
    Read { path: PathBuf, source: std::io::Error },
    #[error("parse {path}: {msg}")]
    Parse { path: PathBuf, msg: String },
    #[error("config.json: {0}")]
    Invalid(String),
}

type Result<T> = std::result::Result<T, SpecError>;

/// A bundle whose config has been read and checked.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub dir: PathBuf,
    pub spec: Spec,
    /// `root.path` made absolute (relative paths are relative to the bundle).
    pub rootfs: PathBuf,
}

pub fn load(dir: &Path) -> Result<Bundle> {
    let dir = std::fs::canonicalize(dir).map_err(|source| SpecError::Read { path: dir.to_path_buf(), source })?;
    match std::fs::metadata(&dir) {
        Ok(m) if m.is_dir() => {}
        Ok(_) => return Err(SpecError::NoBundle(dir)),
        Err(source) => return Err(SpecError::Read { path: dir, source }),
    }
    let path = dir.join("config.json");
    let text = std::fs::read(&path).map_err(|source| SpecError::Read { path: path.clone(), source })?;
    let spec = parse(&text).map_err(|msg| SpecError::Parse { path: path.clone(), msg })?;
    let rootfs = rootfs_path(&dir, &spec)?;
    validate(&spec)?;
    Ok(Bundle { dir, spec, rootfs })
}

/// Parses config.json bytes; the error is a one-line message.
///
/// Where runc is lenient, so is this, with runc's meaning: an unknown
/// capability is dropped with a warning, a namespace with `"path": ""` is
/// a new one, and a relative mount destination is taken from `/` (with a
/// warning). Validation comes after, on what runc would have run.
pub fn parse(text: &[u8]) -> std::result::Result<Spec, String> {
    let mut spec = match serde_json::from_slice::<Spec>(text) {
        Ok(spec) => spec,
        // The strict parse is the common, fast path; only a config it
        // refuses is read again, leniently.
        Err(e) => lenient::<Spec>(text, "/process")?.ok_or_else(|| e.to_string())?,
    };
    normalize(&mut spec);
    Ok(spec)
}

/// Parses an `exec --process` file as runc does: a missing `user` is uid
/// and gid 0, and unknown capabilities are dropped with a warning.
pub fn parse_process(text: &[u8]) -> std::result::Result<oci_spec::runtime::Process, String> {
    match serde_json::from_slice(text) {
        Ok(p) => Ok(p),
        Err(e) => lenient(text, "")?.ok_or_else(|| e.to_string()),
    }
}

/// runtime-spec's scheduler flag names that oci-spec spells otherwise.
const SCHED_FLAG_NAMES: [(&str, &str); 2] =
    [("SCHED_FLAG_RESET_ON_FORK", "SCHED_RESET_ON_FORK"), ("SCHED_FLAG_DL_OVERRUN", "SCHED_FLAG_D_L_OVERRUN")];

/// The second, lenient reading of a config or of a process (`process`
/// points at the process in it): `Ok(None)` when it changes nothing or
/// still fails, an error in runc's words for a memory policy runc refuses.
fn lenient<T: serde::de::DeserializeOwned>(text: &[u8], process: &str) -> std::result::Result<Option<T>, String> {
    let Ok(mut v) = serde_json::from_slice::<serde_json::Value>(text) else { return Ok(None) };
    if let Some(mp) = v.pointer("/linux/memoryPolicy") {
        check_memory_policy(mp)?;
    }
    if let Some(p) = v.pointer_mut(process).and_then(|p| p.as_object_mut()) {
        if !p.contains_key("user") {
            p.insert("user".into(), serde_json::json!({"uid": 0, "gid": 0}));
        }
        for f in p.get_mut("scheduler").and_then(|s| s.get_mut("flags")).and_then(|f| f.as_array_mut()).into_iter().flatten() {
            if let Some((_, theirs)) = SCHED_FLAG_NAMES.iter().find(|(spec, _)| f.as_str() == Some(spec)) {
                *f = serde_json::Value::String(theirs.to_string());
            }
        }
    }
    let caps = format!("{process}/capabilities");
    let mut unknown: Vec<String> = Vec::new();
    if let Some(sets) = v.pointer_mut(&caps).and_then(|c| c.as_object_mut()) {
        for set in sets.values_mut().filter_map(|s| s.as_array_mut()) {
            set.retain(|c| {
                let known = serde_json::from_value::<oci_spec::runtime::Capability>(c.clone()).is_ok();
                if !known && let Some(name) = c.as_str() {
                    unknown.push(name.to_string());
                }
                known
            });
        }
    }
    let Ok(parsed) = serde_json::from_value(v) else { return Ok(None) };
    if !unknown.is_empty() {
        unknown.sort();
        unknown.dedup();
        crate::logging::emit("warning", &format!("ignoring unknown or unavailable capabilities: [{}]", unknown.join(" ")));
    }
    Ok(Some(parsed))
}

/// `linux.memoryPolicy` as runc checks it, before the typed parse would
/// refuse it in serde's words.
fn check_memory_policy(mp: &serde_json::Value) -> std::result::Result<(), String> {
    let mode = mp.get("mode").and_then(|m| m.as_str()).unwrap_or("");
    if serde_json::from_value::<oci_spec::runtime::MemoryPolicyModeType>(mode.into()).is_err() {
        return Err(format!("invalid memory policy mode {mode:?}"));
    }
    for f in mp.get("flags").and_then(|f| f.as_array()).into_iter().flatten() {
        if serde_json::from_value::<oci_spec::runtime::MemoryPolicyFlagType>(f.clone()).is_err() {
            return Err(format!("invalid memory policy flag {}", f));
        }
    }
    Ok(())
}

/// runc's readings of what it accepts but the spec leaves loose.
fn normalize(spec: &mut Spec) {
    if let Some(mounts) = spec.mounts().clone() {
        let fixed: Vec<_> = mounts
            .into_iter()
            .map(|mut m| {
                if !m.destination().is_absolute() {
                    crate::logging::emit(
                        "warning",
                        &format!(
                            "mount destination {} is not absolute. Support for non-absolute mount destinations will be removed in a future release.",
                            m.destination().display()
                        ),
                    );
                    let abs = Path::new("/").join(m.destination());
                    m.set_destination(abs);
                }
                m
            })
            .collect();
        spec.set_mounts(Some(fixed));
    }
    if let Some(linux) = spec.linux_mut()
        && let Some(nss) = linux.namespaces().clone()
        && nss.iter().any(|n| n.path().as_ref().is_some_and(|p| p.as_os_str().is_empty()))
    {
        let fixed = nss
            .into_iter()
            .map(|mut n| {
                if n.path().as_ref().is_some_and(|p| p.as_os_str().is_empty()) {
                    n.set_path(None);
                }
                n
            })
            .collect();
        linux.set_namespaces(Some(fixed));
    }
}

fn rootfs_path(dir: &Path, spec: &Spec) -> Result<PathBuf> {
    let root = spec.root().as_ref().ok_or_else(|| SpecError::Invalid("root is missing".into()))?;
    let p = root.path();
    if p.as_os_str().is_empty() {
        return Err(SpecError::Invalid("root.path is empty".into()));
    }
    let abs = if p.is_absolute() { p.clone() } else { dir.join(p) };
    match std::fs::metadata(&abs) {
        Ok(m) if m.is_dir() => Ok(abs),
        Ok(_) => Err(SpecError::Invalid(format!("root.path {}: not a directory", abs.display()))),
        Err(e) => Err(SpecError::Invalid(format!("root.path {}: {e}", abs.display()))),
    }
}

/// Checks the parts of the spec that serde cannot: semantics and paths.
pub fn validate(spec: &Spec) -> Result<()> {
    let bad = |m: String| Err(SpecError::Invalid(m));
    if !spec.version().starts_with("1.") {
        return bad(format!("ociVersion {:?} is not a 1.x runtime-spec version", spec.version()));
    }
    // No LSM support in strata: a label or profile would be silently left
    // unapplied, so it is refused, naming the field (empty means unset).
    let set = |v: &Option<String>| v.as_deref().is_some_and(|s| !s.is_empty());
    if let Some(p) = spec.process() {
        if set(p.apparmor_profile()) {
            return bad("process.apparmorProfile: strata applies no AppArmor profiles (remove the field)".into());
        }
        if set(p.selinux_label()) {
            return bad("process.selinuxLabel: strata applies no SELinux labels (remove the field)".into());
        }
    }
    if spec.linux().as_ref().is_some_and(|l| set(l.mount_label())) {
        return bad("linux.mountLabel: strata applies no SELinux labels (remove the field)".into());
    }
    // `process` may be absent at create (runtime-spec: then `start` fails).
    if let Some(process) = spec.process() {
        if process.args().as_ref().is_none_or(|a| a.is_empty()) {
            return bad("process.args must not be empty".into());
        }
        if !process.cwd().is_absolute() {
            return bad(format!("process.cwd {:?} must be an absolute path", process.cwd()));
        }
    }
    // SCHED_DEADLINE needs the root domain's every CPU: the kernel refuses it
    // in a narrower cpuset, after start. runc's words.
    let deadline = spec
        .process()
        .as_ref()
        .and_then(|p| p.scheduler().as_ref())
        .is_some_and(|s| *s.policy() == oci_spec::runtime::LinuxSchedulerPolicy::SchedDeadline);
    let cpus = spec.linux().as_ref().and_then(|l| l.resources().as_ref()).and_then(|r| r.cpu().as_ref()).and_then(|c| c.cpus().clone());
    if deadline && cpus.is_some_and(|c| !c.is_empty()) {
        return bad("process scheduler can't be used together with AllowedCPUs (SCHED_DEADLINE with linux.resources.cpu.cpus)".into());
    }
    for m in spec.mounts().iter().flatten() {
        if !m.destination().is_absolute() {
            return bad(format!("mount destination {:?} must be an absolute path", m.destination()));
        }
    }
    if let Some(linux) = spec.linux() {
        let mut seen = HashSet::new();
        for ns in linux.namespaces().iter().flatten() {
            if !seen.insert(ns.typ()) {
                return bad(format!("namespace {:?} listed twice", ns.typ()));
            }
            if let Some(p) = ns.path()
                && !p.is_absolute()
            {
                return bad(format!("namespace {:?} path {:?} must be absolute", ns.typ(), p));
            }
        }
        let new_userns = linux.namespaces().iter().flatten().any(|n| n.typ() == LinuxNamespaceType::User && n.path().is_none());
        let has_maps = linux.uid_mappings().as_ref().is_some_and(|m| !m.is_empty());
        if has_maps && !seen.contains(&LinuxNamespaceType::User) {
            return bad("uidMappings given without a user namespace".into());
        }
        if new_userns && !has_maps {
            return bad("a new user namespace needs uidMappings and gidMappings".into());
        }
        for p in linux.masked_paths().iter().flatten().chain(linux.readonly_paths().iter().flatten()) {
            if !p.starts_with('/') {
                return bad(format!("masked/readonly path {p:?} must be absolute"));
            }
        }
        for d in linux.devices().iter().flatten() {
            if !d.path().is_absolute() {
                return bad(format!("device path {:?} must be absolute", d.path()));
            }
        }
    }
    if let Some(hooks) = spec.hooks() {
        let all = [
            hooks.prestart(),
            hooks.create_runtime(),
            hooks.create_container(),
            hooks.start_container(),
            hooks.poststart(),
            hooks.poststop(),
        ];
        for h in all.into_iter().flatten().flatten() {
            if !h.path().is_absolute() {
                return bad(format!("hook path {:?} must be absolute", h.path()));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(json: &str) -> std::result::Result<(), String> {
        let s = parse(json.as_bytes())?;
        validate(&s).map_err(|e| e.to_string())
    }

    const OK: &str = r#"{"ociVersion":"1.0.2","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":0,"gid":0}}}"#;

    #[test]
    fn accepts_minimal() {
        spec(OK).unwrap();
    }

    #[test]
    fn hostile_configs_are_refused() {
        let cases = [
            ("not json", "{"),
            ("wrong type", r#"{"ociVersion":1}"#),
            ("bad version", &OK.replace("1.0.2", "0.9")),
            ("empty args", &OK.replace(r#"["sh"]"#, "[]")),
            ("relative cwd", &OK.replace(r#""cwd":"/""#, r#""cwd":"tmp""#)),
            ("dup namespace", &OK.replace(r#""root""#, r#""linux":{"namespaces":[{"type":"pid"},{"type":"pid"}]},"root""#)),
            ("userns without maps", &OK.replace(r#""root""#, r#""linux":{"namespaces":[{"type":"user"}]},"root""#)),
            ("unknown rlimit", &OK.replace(r#""cwd""#, r#""rlimits":[{"type":"RLIMIT_FOO","soft":1,"hard":1}],"cwd""#)),
            ("relative hook", &OK.replace(r#""root""#, r#""hooks":{"prestart":[{"path":"bin/true"}]},"root""#)),
        ];
        for (name, json) in cases {
            assert!(spec(json).is_err(), "{name} was accepted");
        }
    }

    /// What runc runs, read as runc reads it.
    #[test]
    fn lenient_where_runc_is() {
        let caps = OK.replace(r#""cwd""#, r#""capabilities":{"bounding":["CAP_CHOWN","CAP_NO_SUCH"],"effective":["CAP_NO_SUCH"]},"cwd""#);
        let s = parse(caps.as_bytes()).unwrap();
        let c = s.process().as_ref().unwrap().capabilities().as_ref().unwrap();
        assert_eq!(c.bounding().as_ref().unwrap().len(), 1);
        assert!(c.effective().as_ref().unwrap().is_empty());
        let rel = OK.replace(r#""root""#, r#""mounts":[{"destination":"x/y","type":"tmpfs"}],"root""#);
        let s = parse(rel.as_bytes()).unwrap();
        assert_eq!(s.mounts().as_ref().unwrap()[0].destination(), Path::new("/x/y"));
        validate(&s).unwrap();
        let ns = OK.replace(r#""root""#, r#""linux":{"namespaces":[{"type":"pid","path":""}]},"root""#);
        let s = parse(ns.as_bytes()).unwrap();
        assert!(s.linux().as_ref().unwrap().namespaces().as_ref().unwrap()[0].path().is_none());
        let p = parse_process(br#"{"args":["sh"],"cwd":"/"}"#).unwrap();
        assert_eq!((p.user().uid(), p.user().gid()), (0, 0));
        assert!(parse_process(br#"{"args":["sh"],"cwd":"/","user":{"uid":"x"}}"#).is_err());
    }
}
