//! What the musl build links in place of, or in addition to, musl's own.
//!
//! - `__fprintf_chk`: a static libseccomp built against glibc (Debian's
//!   `libseccomp.a`, which the musl build links) needs glibc's fortified
//!   `fprintf`, which libseccomp calls to print a filter as text
//!   (`seccomp_export_pfc`). strata never exports text, so the stand-in
//!   writes nothing and reports failure as fprintf does.
//! - `open` and `open64`: musl's follow every open with `O_CLOEXEC` by an
//!   `fcntl(F_SETFD, FD_CLOEXEC)`, for kernels before 2.6.23 that ignored
//!   the flag. std opens every file with it, so a `run` made about 60 such
//!   calls for nothing (docs/benchmarks.md). These are one `openat`.
//!
//! Each is declared without its variadic tail: the x86_64 and aarch64 C
//! calling conventions pass the first arguments of a variadic call in the
//! same registers as any other, and let a callee ignore the ones after its
//! last named one. `open`'s `mode` is read from its register whether or
//! not the caller passed one; the kernel reads it only with `O_CREAT` or
//! `O_TMPFILE`, where the caller must pass it.

use std::ffi::{c_char, c_int, c_uint, c_void};

#[unsafe(no_mangle)]
pub extern "C" fn __fprintf_chk(_stream: *mut c_void, _flag: c_int, _format: *const c_char) -> c_int {
    -1
}

/// open(2) as one `openat(AT_FDCWD, ...)`: -1 and errno on failure.
///
/// # Safety
/// `path` is a NUL-terminated string, as open(2) requires.
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: the caller's arguments, passed to the kernel as open(2)'s;
    // musl's syscall() sets errno and returns -1 on failure.
    unsafe { libc::syscall(libc::SYS_openat, libc::AT_FDCWD, path, flags, mode) as c_int }
}

/// The large-file name of [`open`] (the same call on 64-bit targets).
///
/// # Safety
/// As [`open`].
#[unsafe(no_mangle)]
pub unsafe extern "C" fn open64(path: *const c_char, flags: c_int, mode: c_uint) -> c_int {
    // SAFETY: as open's.
    unsafe { open(path, flags, mode) }
}
