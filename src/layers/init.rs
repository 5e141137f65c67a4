//! The per-container init layer: the lowest-effort way to give every
//! container its own hostname, hosts and resolv.conf files and the mount
//! points the runtime needs, without touching the shared image layers. It
//! is a plain table of entries (as moby's `initlayer`), built by a pure
//! function and written once; as the top lower layer it is read-only.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use nix::errno::Errno;
use nix::fcntl::{OFlag, openat};
use nix::sys::stat::{Mode, fchmod, mkdirat};
use nix::unistd::symlinkat;

use super::LayerError;

pub const DNS_SERVERS: &str = "dev.strata.dns.servers";
pub const DNS_SEARCH: &str = "dev.strata.dns.search";

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    File(String),
    EmptyFile,
    Dir,
    Symlink(String),
}

/// One path of the init layer (absolute, as seen in the container).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub path: &'static str,
    pub kind: Kind,
    pub mode: u32,
}

/// The init layer's table. `host_resolv` is the host's resolv.conf text.
pub fn init_entries(hostname: Option<&str>, annotations: &HashMap<String, String>, host_resolv: &str) -> Vec<Entry> {
    let e = |path, kind, mode| Entry { path, kind, mode };
    let mut v = vec![e("/etc", Kind::Dir, 0o755)];
    let hosts = "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n";
    match hostname {
        Some(h) if !h.is_empty() => {
            v.push(e("/etc/hostname", Kind::File(format!("{h}\n")), 0o644));
            v.push(e("/etc/hosts", Kind::File(format!("{hosts}127.0.1.1\t{h}\n")), 0o644));
        }
        _ => v.push(e("/etc/hosts", Kind::File(hosts.to_string()), 0o644)),
    }
    v.push(e("/etc/resolv.conf", Kind::File(resolv_conf(annotations, host_resolv)), 0o644));
    v.push(e("/etc/mtab", Kind::Symlink("/proc/mounts".into()), 0o777));
    v.push(e("/dev", Kind::Dir, 0o755));
    v.push(e("/dev/console", Kind::EmptyFile, 0o600));
    v.push(e("/dev/pts", Kind::Dir, 0o755));
    v.push(e("/dev/shm", Kind::Dir, 0o1777));
    v.push(e("/proc", Kind::Dir, 0o555));
    v.push(e("/sys", Kind::Dir, 0o555));
    v
}

fn list(annotations: &HashMap<String, String>, key: &str) -> Option<Vec<String>> {
    let v = annotations.get(key)?;
    Some(v.split(',').map(str::trim).filter(|s| !s.is_empty()).map(String::from).collect())
}

/// The host's resolv.conf, or one built from the DNS annotations. Either
/// annotation alone replaces only its own part of the host's file.
fn resolv_conf(annotations: &HashMap<String, String>, host: &str) -> String {
    let (servers, search) = (list(annotations, DNS_SERVERS), list(annotations, DNS_SEARCH));
    if servers.is_none() && search.is_none() {
        return host.to_string();
    }
    let host_lines = |key: &str| -> Vec<String> {
        host.lines()
            .filter_map(|l| l.trim().strip_prefix(key).filter(|rest| rest.starts_with([' ', '\t'])))
            .flat_map(|rest| rest.split_whitespace().map(String::from).collect::<Vec<_>>())
            .collect()
    };
    let servers = servers.unwrap_or_else(|| host_lines("nameserver"));
    let search = search.unwrap_or_else(|| host_lines("search"));
    let mut out = String::new();
    if !search.is_empty() {
        out.push_str(&format!("search {}\n", search.join(" ")));
    }
    for s in servers {
        out.push_str(&format!("nameserver {s}\n"));
    }
    out
}

/// Writes the entries under `dir` (an empty directory), parents before
/// children as the table lists them.
pub fn write_init_layer(dir: &Path, entries: &[Entry]) -> Result<(), LayerError> {
    let sys = |op: &'static str, path: &str| {
        let path = dir.join(path.trim_start_matches('/')).display().to_string();
        move |e: Errno| LayerError::Sys(crate::sys::err(op, path, "")(e))
    };
    let root = nix::fcntl::open(dir, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).map_err(sys("open", ""))?;
    for entry in entries {
        let rel = OsStr::new(entry.path.trim_start_matches('/'));
        let mode = Mode::from_bits_truncate(entry.mode);
        let create = OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_EXCL | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC;
        match &entry.kind {
            Kind::Dir => {
                mkdirat(root.as_fd(), rel, mode).map_err(sys("mkdirat", entry.path))?;
                let fd: OwnedFd =
                    openat(root.as_fd(), rel, OFlag::O_RDONLY | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC, Mode::empty())
                        .map_err(sys("openat", entry.path))?;
                fchmod(fd.as_fd(), mode).map_err(sys("fchmod", entry.path))?;
            }
            Kind::File(_) | Kind::EmptyFile => {
                let fd = openat(root.as_fd(), rel, create, mode).map_err(sys("openat", entry.path))?;
                fchmod(fd.as_fd(), mode).map_err(sys("fchmod", entry.path))?;
                if let Kind::File(content) = &entry.kind {
                    use std::io::Write;
                    let path = dir.join(rel);
                    std::fs::File::from(fd).write_all(content.as_bytes()).map_err(|source| LayerError::Io { op: "write", path, source })?;
                }
            }
            Kind::Symlink(target) => symlinkat(target.as_str(), root.as_fd(), rel).map_err(sys("symlinkat", entry.path))?,
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn find<'a>(v: &'a [Entry], p: &str) -> &'a Entry {
        v.iter().find(|e| e.path == p).unwrap_or_else(|| panic!("{p} missing"))
    }

    #[test]
    fn table_has_hostname_hosts_and_placeholders() {
        let v = init_entries(Some("box"), &HashMap::new(), "nameserver 10.0.0.1\n");
        assert_eq!(find(&v, "/etc/hostname").kind, Kind::File("box\n".into()));
        let Kind::File(hosts) = &find(&v, "/etc/hosts").kind else { panic!() };
        assert!(
            hosts.contains("127.0.0.1\tlocalhost\n")
                && hosts.contains("::1\tlocalhost ip6-localhost ip6-loopback")
                && hosts.contains("\tbox\n")
        );
        assert_eq!(find(&v, "/etc/resolv.conf").kind, Kind::File("nameserver 10.0.0.1\n".into()));
        assert_eq!(find(&v, "/etc/mtab").kind, Kind::Symlink("/proc/mounts".into()));
        assert_eq!(find(&v, "/dev/console").kind, Kind::EmptyFile);
        for d in ["/dev/pts", "/dev/shm", "/proc", "/sys"] {
            assert_eq!(find(&v, d).kind, Kind::Dir);
        }
        // Parents come before children.
        for (i, e) in v.iter().enumerate() {
            let parent = Path::new(e.path).parent().unwrap();
            if parent != Path::new("/") {
                assert!(v[..i].iter().any(|p| Path::new(p.path) == parent), "{} before its parent", e.path);
            }
        }
        assert!(init_entries(None, &HashMap::new(), "").iter().all(|e| e.path != "/etc/hostname"));
    }

    #[test]
    fn dns_annotations_build_resolv_conf() {
        let host = "# generated\nsearch host.lan\nnameserver 10.0.0.1\nnameserver 10.0.0.2\noptions edns0\n";
        let ann = |pairs: &[(&str, &str)]| pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect::<HashMap<_, _>>();
        let r = resolv_conf(&ann(&[(DNS_SERVERS, "1.1.1.1, 8.8.8.8"), (DNS_SEARCH, "a.example,b.example")]), host);
        assert_eq!(r, "search a.example b.example\nnameserver 1.1.1.1\nnameserver 8.8.8.8\n");
        let r = resolv_conf(&ann(&[(DNS_SEARCH, "x.example")]), host);
        assert_eq!(r, "search x.example\nnameserver 10.0.0.1\nnameserver 10.0.0.2\n");
        assert_eq!(resolv_conf(&ann(&[]), host), host);
    }

    #[test]
    fn write_init_layer_writes_the_table() {
        let dir = std::env::temp_dir().join(format!("strata-init-{}", super::super::unique_name()));
        std::fs::create_dir(&dir).unwrap();
        let entries = init_entries(Some("h1"), &HashMap::new(), "nameserver 9.9.9.9\n");
        write_init_layer(&dir, &entries).unwrap();
        assert_eq!(std::fs::read_to_string(dir.join("etc/hostname")).unwrap(), "h1\n");
        assert_eq!(std::fs::read_link(dir.join("etc/mtab")).unwrap(), Path::new("/proc/mounts"));
        use std::os::unix::fs::PermissionsExt;
        assert_eq!(std::fs::metadata(dir.join("dev/shm")).unwrap().permissions().mode() & 0o7777, 0o1777);
        assert_eq!(std::fs::metadata(dir.join("dev/console")).unwrap().len(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
