//! The process's user: supplementary groups, gid and uid (keeping the
//! capabilities across the switch so that `caps` can then set them exactly),
//! the umask, and its home (for a HOME the config does not set).

use nix::sys::stat::{Mode, umask};
use nix::unistd::{Gid, Uid, setgroups, setresgid, setresuid};
use oci_spec::runtime::User;

use crate::sys::{self, SysError};

pub fn switch(user: &User, userns_no_setgroups: bool) -> Result<(), SysError> {
    let gid = Gid::from_raw(user.gid());
    let uid = Uid::from_raw(user.uid());
    if !userns_no_setgroups {
        let mut groups: Vec<Gid> = user.additional_gids().iter().flatten().map(|g| Gid::from_raw(*g)).collect();
        groups.dedup();
        setgroups(&groups).map_err(sys::err("setgroups", format!("{groups:?}"), ""))?;
    }
    setresgid(gid, gid, gid).map_err(sys::err("setresgid", gid, ""))?;
    setresuid(uid, uid, uid).map_err(sys::err("setresuid", uid, ""))?;
    if let Some(m) = user.umask() {
        umask(Mode::from_bits_truncate(m as _));
    }
    Ok(())
}

/// The home directory of `uid` in the container's `/etc/passwd` (read
/// after pivot_root, inside the root, from a regular file of at most
/// 1 MiB), or `/` where it has none: what runc sets HOME to when the
/// process's environment has no HOME or an empty one.
pub fn home_of(uid: u32) -> String {
    home_in(&read_passwd().unwrap_or_default(), uid).unwrap_or_else(|| "/".to_string())
}

fn read_passwd() -> Option<String> {
    use nix::fcntl::OFlag;
    use std::io::Read;
    let root = nix::fcntl::open("/", OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC, Mode::empty()).ok()?;
    let fd = super::resolve::open_file_in_root(
        std::os::fd::AsFd::as_fd(&root),
        std::path::Path::new("/etc/passwd"),
        OFlag::O_RDONLY | OFlag::O_NONBLOCK | OFlag::O_NOCTTY,
    )
    .ok()?;
    let st = nix::sys::stat::fstat(&fd).ok()?;
    if st.st_mode & libc::S_IFMT != libc::S_IFREG {
        return None;
    }
    // Room for the whole file: one read and the one that finds its end.
    let mut text = String::with_capacity((st.st_size as usize).min(1 << 20) + 1);
    std::fs::File::from(fd).take(1 << 20).read_to_string(&mut text).ok()?;
    Some(text)
}

/// `name:password:uid:gid:gecos:home:shell` lines: the home of `uid`'s
/// first entry, if it names one.
fn home_in(passwd: &str, uid: u32) -> Option<String> {
    passwd
        .lines()
        .find_map(|l| {
            let f: Vec<&str> = l.split(':').collect();
            (f.len() >= 7 && f[2].parse::<u32>() == Ok(uid)).then(|| f[5].to_string())
        })
        .filter(|h| !h.is_empty())
}

/// The environment the process gets, as runc builds it: a variable given
/// twice is there once, with its last value, where it first stood; HOME,
/// when missing or empty, is `home`.
pub fn with_home(env: Vec<String>, home: impl FnOnce() -> String) -> Vec<String> {
    let mut out: Vec<String> = Vec::with_capacity(env.len() + 1);
    for e in env {
        let key = e.split_once('=').map_or(e.as_str(), |(k, _)| k);
        match out.iter_mut().find(|o| o.split_once('=').map_or(o.as_str(), |(k, _)| k) == key) {
            Some(slot) => *slot = e,
            None => out.push(e),
        }
    }
    if !out.iter().any(|e| e.strip_prefix("HOME=").is_some_and(|h| !h.is_empty())) {
        out.retain(|e| !e.starts_with("HOME="));
        out.push(format!("HOME={}", home()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn home_comes_from_the_first_entry_of_the_uid() {
        let pw = "root:x:0:0:root:/root:/bin/sh\nbroken\nuser:x:1000:1000::/home/user:/bin/sh\nuser2:x:1000:1000::/other:/bin/sh\nnohome:x:7:7:::/bin/sh\n";
        assert_eq!(home_in(pw, 0).as_deref(), Some("/root"));
        assert_eq!(home_in(pw, 1000).as_deref(), Some("/home/user"));
        assert_eq!(home_in(pw, 7), None);
        assert_eq!(home_in(pw, 5), None);
    }

    #[test]
    fn home_is_set_only_when_missing_or_empty() {
        let h = || "/root".to_string();
        assert_eq!(with_home(vec!["A=1".into()], h), ["A=1", "HOME=/root"]);
        assert_eq!(with_home(vec!["HOME=".into(), "A=1".into()], h), ["A=1", "HOME=/root"]);
        assert_eq!(with_home(vec!["HOME=/x".into()], || panic!("not read")), ["HOME=/x"]);
        assert_eq!(with_home(vec!["HOME=/o".into(), "HOME=".into()], h), ["HOME=/root"]);
        let env = vec!["ONE=two".into(), "P=1".into(), "ONE=".into(), "HOME=/h".into()];
        assert_eq!(with_home(env, h), ["ONE=", "P=1", "HOME=/h"]);
    }
}
