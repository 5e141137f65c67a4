//! The process's user: supplementary groups, gid and uid (keeping the
//! capabilities across the switch so that `caps` can then set them exactly),
//! and the umask.

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
