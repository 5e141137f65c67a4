//! `process.rlimits`: setrlimit for each entry, before the uid switch so
//! that raising a soft limit up to the hard one still works.

use oci_spec::runtime::{PosixRlimit, PosixRlimitType as T};

use crate::sys::{self, SysError};

pub fn resource(t: T) -> (u32, &'static str) {
    let r = match t {
        T::RlimitCpu => (libc::RLIMIT_CPU, "RLIMIT_CPU"),
        T::RlimitFsize => (libc::RLIMIT_FSIZE, "RLIMIT_FSIZE"),
        T::RlimitData => (libc::RLIMIT_DATA, "RLIMIT_DATA"),
        T::RlimitStack => (libc::RLIMIT_STACK, "RLIMIT_STACK"),
        T::RlimitCore => (libc::RLIMIT_CORE, "RLIMIT_CORE"),
        T::RlimitRss => (libc::RLIMIT_RSS, "RLIMIT_RSS"),
        T::RlimitNproc => (libc::RLIMIT_NPROC, "RLIMIT_NPROC"),
        T::RlimitNofile => (libc::RLIMIT_NOFILE, "RLIMIT_NOFILE"),
        T::RlimitMemlock => (libc::RLIMIT_MEMLOCK, "RLIMIT_MEMLOCK"),
        T::RlimitAs => (libc::RLIMIT_AS, "RLIMIT_AS"),
        T::RlimitLocks => (libc::RLIMIT_LOCKS, "RLIMIT_LOCKS"),
        T::RlimitSigpending => (libc::RLIMIT_SIGPENDING, "RLIMIT_SIGPENDING"),
        T::RlimitMsgqueue => (libc::RLIMIT_MSGQUEUE, "RLIMIT_MSGQUEUE"),
        T::RlimitNice => (libc::RLIMIT_NICE, "RLIMIT_NICE"),
        T::RlimitRtprio => (libc::RLIMIT_RTPRIO, "RLIMIT_RTPRIO"),
        T::RlimitRttime => (libc::RLIMIT_RTTIME, "RLIMIT_RTTIME"),
    };
    // glibc's RLIMIT_* are u32 (a no-op cast there), musl's c_int: both
    // small and positive.
    #[allow(clippy::unnecessary_cast)]
    (r.0 as u32, r.1)
}

pub fn apply(limits: &[PosixRlimit]) -> Result<(), SysError> {
    for l in limits {
        let (res, name) = resource(l.typ());
        sys::setrlimit(res, name, l.soft(), l.hard())?;
    }
    Ok(())
}
