//! `strata bundle --image LAYOUT[:REF] DIR`: an OCI bundle whose config.json
//! is a base spec filled in from the image config (args, env, cwd, user,
//! labels), with an empty `rootfs/` for the layered rootfs to be mounted on.
//!
//! A user given by name is looked up in the image's own /etc/passwd and
//! /etc/group, read straight from the layer blobs, top layer first,
//! honouring whiteouts and opaque directories.

use std::collections::HashMap;
use std::io::Read;
use std::path::Path;

use serde_json::{Value, json};

use super::{LayerError, Result, stream};
use crate::image::types::Image;

pub const ANN_LAYOUT: &str = "dev.strata.image.layout";
pub const ANN_REF: &str = "dev.strata.image.ref";
const MAX_FILE: u64 = 4 << 20;

/// `image` is a reference in transport syntax (see `crate::image::source::Source::open`):
/// `[oci:]DIR[:REF]`, `oci-archive:FILE[:REF]` or
/// `docker-archive:FILE[:NAME:TAG]`.
pub fn bundle_from_image(image: &str, bundle_dir: &Path, base_spec: Value) -> Result<()> {
    let (source, reference) = crate::image::source::Source::open(image)?;
    let image = crate::image::resolve(source, reference.as_deref())?;
    let spec = image_spec(&image, base_spec)?;
    let io = |op, path: &Path| {
        let path = path.to_path_buf();
        move |source| LayerError::Io { op, path, source }
    };
    let rootfs = bundle_dir.join("rootfs");
    std::fs::create_dir_all(&rootfs).map_err(io("mkdir", &rootfs))?;
    let data = serde_json::to_vec_pretty(&spec).expect("json value serializes");
    Ok(crate::image::write::write_atomic(&bundle_dir.join("config.json"), &data)?)
}

/// The base spec with the image's settings applied.
fn image_spec(image: &Image, mut spec: Value) -> Result<Value> {
    let cfg = image.config.config.clone().unwrap_or_default();
    if !spec.get("process").is_some_and(Value::is_object) {
        spec["process"] = json!({});
    }
    let process = &mut spec["process"];
    let args: Vec<String> = cfg.entrypoint.iter().flatten().chain(cfg.cmd.iter().flatten()).cloned().collect();
    if !args.is_empty() {
        process["args"] = json!(args);
    }
    let base_env: Vec<String> = process.get("env").and_then(|e| serde_json::from_value(e.clone()).ok()).unwrap_or_default();
    process["env"] = json!(merge_env(&base_env, cfg.env.as_deref().unwrap_or_default()));
    process["cwd"] = json!(cfg.working_dir.as_deref().filter(|w| !w.is_empty()).unwrap_or("/"));
    if let Some(user) = cfg.user.as_deref().filter(|u| !u.is_empty()) {
        let files = if is_numeric_pair(user) { HashMap::new() } else { read_image_files(image, &["etc/passwd", "etc/group"])? };
        let text = |k: &str| files.get(k).map(|b| String::from_utf8_lossy(b).into_owned());
        let (uid, gid, extra) = resolve_user(user, text("etc/passwd").as_deref(), text("etc/group").as_deref())?;
        let mut u = json!({"uid": uid, "gid": gid});
        if !extra.is_empty() {
            u["additionalGids"] = json!(extra);
        }
        process["user"] = u;
    }
    if !spec.get("annotations").is_some_and(Value::is_object) {
        spec["annotations"] = json!({});
    }
    let ann = &mut spec["annotations"];
    for (k, v) in cfg.labels.iter().flatten() {
        ann[k] = json!(v);
    }
    ann[ANN_LAYOUT] = json!(image.source.name());
    ann[ANN_REF] = json!(image.manifest_digest.to_string());
    spec["root"] = json!({"path": "rootfs", "readonly": false});
    Ok(spec)
}

/// The base environment with the image's variables set over it.
fn merge_env(base: &[String], image: &[String]) -> Vec<String> {
    let key = |s: &String| s.split_once('=').map_or(s.clone(), |(k, _)| k.to_string());
    let mut out: Vec<String> = base.iter().filter(|b| !image.iter().any(|i| key(i) == key(b))).cloned().collect();
    out.extend(image.iter().cloned());
    out
}

fn is_numeric_pair(user: &str) -> bool {
    let (u, g) = user.split_once(':').unwrap_or((user, "0"));
    u.parse::<u32>().is_ok() && g.parse::<u32>().is_ok()
}

/// Resolves `user`, `uid`, `user:group`, `uid:gid` (any mix) against the
/// image's passwd and group files: (uid, gid, additional gids).
pub fn resolve_user(user: &str, passwd: Option<&str>, group: Option<&str>) -> Result<(u32, u32, Vec<u32>)> {
    let rows = |text: Option<&str>| -> Vec<Vec<String>> {
        text.unwrap_or_default()
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| l.split(':').map(String::from).collect::<Vec<_>>())
            .filter(|f| f.len() >= 4)
            .collect()
    };
    let (passwd, groups) = (rows(passwd), rows(group));
    let (u, g) = match user.split_once(':') {
        Some((u, g)) => (u, Some(g)),
        None => (user, None),
    };
    let entry = match u.parse::<u32>() {
        Ok(uid) => passwd.iter().find(|p| p[2].parse() == Ok(uid)),
        Err(_) => {
            Some(passwd.iter().find(|p| p[0] == u).ok_or_else(|| LayerError::User(format!("no user {u:?} in the image's /etc/passwd")))?)
        }
    };
    let uid = match u.parse::<u32>() {
        Ok(uid) => uid,
        Err(_) => entry.and_then(|p| p[2].parse().ok()).ok_or_else(|| LayerError::User(format!("bad uid for {u:?} in /etc/passwd")))?,
    };
    let primary = entry.and_then(|p| p[3].parse::<u32>().ok()).unwrap_or(0);
    let gid = match g {
        None => primary,
        Some(g) => match g.parse::<u32>() {
            Ok(gid) => gid,
            Err(_) => groups
                .iter()
                .find(|r| r[0] == g)
                .and_then(|r| r[2].parse().ok())
                .ok_or_else(|| LayerError::User(format!("no group {g:?} in the image's /etc/group")))?,
        },
    };
    let mut extra = Vec::new();
    if let (Some(p), None) = (entry, g) {
        for r in &groups {
            let member = r[3].split(',').any(|m| m == p[0]);
            if let Ok(id) = r[2].parse::<u32>()
                && member
                && id != gid
                && !extra.contains(&id)
            {
                extra.push(id);
            }
        }
    }
    Ok((uid, gid, extra))
}

#[derive(Clone, PartialEq)]
enum Lookup {
    Unknown,
    Found(Vec<u8>),
    Gone,
}

/// Reads regular files (layer-relative paths like `etc/passwd`) from the
/// image's layers, top down: the first layer that has the file, deletes it
/// (`.wh.` on it or a parent) or hides it (an opaque parent) decides.
pub fn read_image_files(image: &Image, wanted: &[&str]) -> Result<HashMap<String, Vec<u8>>> {
    let mut state: Vec<Lookup> = vec![Lookup::Unknown; wanted.len()];
    for layer in image.layers.iter().rev() {
        if state.iter().all(|s| *s != Lookup::Unknown) {
            break;
        }
        let label = layer.label();
        let err = |e: std::io::Error| LayerError::Blob { digest: label.clone(), msg: format!("read: {e}") };
        let size = (layer.size > 0).then_some(layer.size);
        let stream = stream::open_layer_stream(&layer.blob, &layer.media_type, size).map_err(err)?;
        let mut archive = tar::Archive::new(stream);
        let mut hidden = vec![false; wanted.len()];
        for entry in archive.entries().map_err(err)? {
            let mut entry = entry.map_err(err)?;
            let Ok(path) = crate::image::guard::clean_path(&entry.path_bytes()) else {
                continue;
            };
            let path = String::from_utf8_lossy(&path).into_owned();
            for (i, w) in wanted.iter().enumerate() {
                if state[i] != Lookup::Unknown {
                    continue;
                }
                if path == *w && entry.header().entry_type().is_file() {
                    let mut data = Vec::new();
                    (&mut entry).take(MAX_FILE).read_to_end(&mut data).map_err(err)?;
                    state[i] = Lookup::Found(data);
                } else if deletes(&path, w) {
                    state[i] = Lookup::Gone;
                } else if opaque_over(&path, w) {
                    hidden[i] = true;
                }
            }
        }
        for (s, h) in state.iter_mut().zip(hidden) {
            if h && *s == Lookup::Unknown {
                *s = Lookup::Gone;
            }
        }
    }
    Ok(wanted.iter().zip(state).filter_map(|(w, s)| if let Lookup::Found(d) = s { Some((w.to_string(), d)) } else { None }).collect())
}

/// Whether the entry `path` is a whiteout of `wanted` or of a parent of it.
fn deletes(path: &str, wanted: &str) -> bool {
    let (dir, name) = path.rsplit_once('/').unwrap_or(("", path));
    let Some(target) = name.strip_prefix(".wh.") else {
        return false;
    };
    if target.starts_with(".wh.") {
        return false;
    }
    let victim = if dir.is_empty() { target.to_string() } else { format!("{dir}/{target}") };
    wanted == victim || wanted.starts_with(&format!("{victim}/"))
}

/// Whether `path` is an opaque marker in a directory above `wanted`.
fn opaque_over(path: &str, wanted: &str) -> bool {
    match path.strip_suffix(".wh..wh..opq") {
        Some("") => true,
        Some(dir) => wanted.starts_with(dir),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PASSWD: &str = "root:x:0:0:root:/root:/bin/sh\nwww:x:33:34:www:/var/www:/bin/false\n";
    const GROUP: &str = "root:x:0:\nwww-data:x:34:\nstaff:x:50:www,other\naudio:x:29:www\n";

    #[test]
    fn users_resolve_by_name_and_number() {
        let r = |u| resolve_user(u, Some(PASSWD), Some(GROUP));
        assert_eq!(r("www").unwrap(), (33, 34, vec![50, 29]));
        assert_eq!(r("33").unwrap(), (33, 34, vec![50, 29]));
        assert_eq!(r("www:staff").unwrap(), (33, 50, vec![]));
        assert_eq!(r("1000:1000").unwrap(), (1000, 1000, vec![]));
        assert_eq!(r("1000").unwrap(), (1000, 0, vec![]));
        assert_eq!(r("root:34").unwrap(), (0, 34, vec![]));
        assert!(r("nobody").unwrap_err().to_string().contains("\"nobody\""));
        assert!(r("www:nogroup").unwrap_err().to_string().contains("\"nogroup\""));
        assert!(resolve_user("1:2", None, None).is_ok());
    }

    #[test]
    fn whiteouts_and_opaque_dirs_hide_files() {
        assert!(deletes("etc/.wh.passwd", "etc/passwd"));
        assert!(deletes(".wh.etc", "etc/passwd"));
        assert!(!deletes("etc/.wh.passwd-", "etc/passwd"));
        assert!(!deletes(".wh.et", "etc/passwd"));
        assert!(!deletes("etc/.wh..wh..opq", "etc/passwd"));
        assert!(opaque_over("etc/.wh..wh..opq", "etc/passwd"));
        assert!(!opaque_over("usr/.wh..wh..opq", "etc/passwd"));
    }

    #[test]
    fn env_is_merged_over_the_base() {
        let base = vec!["PATH=/usr/bin".to_string(), "TERM=xterm".to_string()];
        let img = vec!["PATH=/opt/bin:/usr/bin".to_string(), "LANG=C".to_string()];
        assert_eq!(merge_env(&base, &img), ["TERM=xterm", "PATH=/opt/bin:/usr/bin", "LANG=C"]);
        assert_eq!(merge_env(&base, &[]), base);
    }
}
