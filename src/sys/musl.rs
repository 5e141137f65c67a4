//! What a static libseccomp built against glibc (Debian's `libseccomp.a`,
//! which the musl build links) needs of the C library and musl lacks.
//!
//! Only `__fprintf_chk`, glibc's fortified `fprintf`, which libseccomp calls
//! to print a filter as text (`seccomp_export_pfc`). strata never exports
//! text, so the stand-in writes nothing and reports failure as fprintf does.
//! It is declared without the variadic tail: the x86_64 and aarch64 C
//! calling conventions let a callee ignore the arguments after its last
//! named one.

use std::ffi::{c_char, c_int, c_void};

#[unsafe(no_mangle)]
pub extern "C" fn __fprintf_chk(_stream: *mut c_void, _flag: c_int, _format: *const c_char) -> c_int {
    -1
}
