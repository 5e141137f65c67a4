//! strata: an OCI container runtime.
//!
//! Data flows one way: CLI -> `spec` (checked config) -> `process::parent`
//! (clone, ids, cgroup, hooks) -> `process::init` (runs `linux::*` steps in
//! the container) -> `state`. `checkpoint` drives CRIU over the same state.
//! Below them all: `userns` (id maps, work as root of a user namespace,
//! used by the layer store and the container's setup alike) and `procfs`
//! (the checked procfs handle), then `sys`, the only module with `unsafe`.

pub mod cgroups;
pub mod checkpoint;
pub mod container;
pub mod defaults;
pub mod hooks;
pub mod image;
pub mod layers;
pub mod linux;
pub mod logging;
pub mod process;
pub mod procfs;
pub mod spec;
pub mod state;
pub mod sys;
pub mod userns;

/// The floors of README's "Source layout", read off the sources: which of
/// the crate's modules each one names.
#[cfg(test)]
mod floors {
    use std::collections::{BTreeMap, BTreeSet};
    use std::path::Path;

    fn files(p: &Path, out: &mut Vec<std::path::PathBuf>) {
        if p.is_dir() {
            for e in std::fs::read_dir(p).unwrap().flatten() {
                files(&e.path(), out);
            }
        } else if p.extension().is_some_and(|e| e == "rs") {
            out.push(p.to_path_buf());
        }
    }

    /// Module -> the other top-level modules its code (tests left out) names.
    fn graph() -> BTreeMap<String, BTreeSet<String>> {
        let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut mods = BTreeMap::new();
        for e in std::fs::read_dir(&src).unwrap().flatten() {
            let name = e.file_name().to_string_lossy().trim_end_matches(".rs").to_string();
            if name != "main" && name != "lib" {
                mods.insert(name, e.path());
            }
        }
        let mut g = BTreeMap::new();
        for (name, path) in &mods {
            let mut fs = Vec::new();
            files(path, &mut fs);
            let mut deps = BTreeSet::new();
            for f in fs {
                let text = std::fs::read_to_string(&f).unwrap();
                let code = text.split("#[cfg(test)]").next().unwrap_or_default();
                for line in code.lines().map(|l| l.split("//").next().unwrap_or_default()) {
                    for (i, _) in line.match_indices("crate::") {
                        let rest = &line[i + 7..];
                        let names: Vec<&str> = match rest.strip_prefix('{') {
                            Some(list) => list.split([',', '}']).map(|n| n.trim().split("::").next().unwrap_or_default()).collect(),
                            None => vec![rest.split(|c: char| !(c.is_alphanumeric() || c == '_')).next().unwrap_or_default()],
                        };
                        deps.extend(names.into_iter().filter(|n| mods.contains_key(*n) && *n != name).map(String::from));
                    }
                }
            }
            g.insert(name.clone(), deps);
        }
        g
    }

    #[test]
    fn no_two_modules_use_each_other() {
        let g = graph();
        let reach = |from: &str| {
            let (mut seen, mut todo) = (BTreeSet::new(), vec![from.to_string()]);
            while let Some(m) = todo.pop() {
                for d in &g[&m] {
                    if seen.insert(d.clone()) {
                        todo.push(d.clone());
                    }
                }
            }
            seen
        };
        for (m, deps) in &g {
            for d in deps {
                assert!(!reach(d).contains(m), "{m} uses {d}, and {d} uses {m} (directly or through others): {g:?}");
            }
        }
        // What each folder's module doc says it may use.
        let may = |m: &str, allowed: &[&str]| {
            let extra: Vec<&String> = g[m].iter().filter(|d| !allowed.contains(&d.as_str())).collect();
            assert!(extra.is_empty(), "{m} uses {extra:?}, which its module doc does not allow");
        };
        may("image", &["sys"]);
        may("cgroups", &["sys"]);
        may("sys", &[]);
        may("linux", &["state", "procfs", "logging", "sys"]);
        may("layers", &["image", "userns", "state", "sys"]);
        assert!(g.len() > 10 && g["process"].contains("linux"), "the graph was read: {g:?}");
    }
}
