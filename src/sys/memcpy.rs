//! `memcpy` and `memmove` for the musl build (x86_64).
//!
//! musl's x86_64 `memcpy` is `rep movsq` with `movsb` for the odd bytes,
//! and `memmove` jumps to it. On the VMs strata is measured on a `rep movs`
//! costs about 60 ns to start, so every copy, of 8 bytes or of 1,000, costs
//! 60 to 130 ns, against 5 to 15 ns for glibc's. A `run` makes about 4,300
//! copies (moves of `String`s, `PathBuf`s and spec structs, clap's and
//! serde's buffers): about 0.3 ms of its CPU went into musl's `memcpy`
//! (`docs/benchmarks.md`). These two copy with plain and SSE2 moves up to
//! 2 KiB and leave `rep movsb` to longer copies, where its start is lost in
//! the copy.
//!
//! They are written in assembly, not Rust: the compiler turns a copy loop
//! back into a call to `memcpy`. The musl build links them as `memcpy` and
//! `memmove` (musl's then stay out of the link: its `memmove` object needs
//! its `memcpy` object's `__memcpy_fwd`, and neither is pulled in). Every
//! build has them as `strata_memcpy` and `strata_memmove`, which the unit
//! tests check against a byte-by-byte copy for every length to 300, longer
//! ones, every alignment and both directions of overlap.
//!
//! The shapes:
//! - under 16 bytes: two overlapping loads and stores of 8, 4, 2 or 1
//!   bytes, all loads before any store;
//! - 16 to 32 bytes: two overlapping 16-byte loads, then the stores;
//! - 33 bytes to 2 KiB: the last 16 bytes loaded first, then 16-byte
//!   chunks from the front, then the last 16 stored;
//! - 2 KiB and more: `rep movsb`.
//!
//! Each shape of up to 32 bytes loads everything before it stores, so it
//! is also a correct `memmove`. The chunk loop and `rep movsb` copy
//! forward, which is correct for a destination below its source: a chunk
//! store never reaches a source byte not yet loaded. `memmove` takes them
//! when the destination does not start inside the source (`dst - src >= n`,
//! unsigned), and otherwise copies 16-byte chunks from the back, with the
//! first 16 bytes loaded before and stored after. The direction flag is
//! never set.

#[cfg(target_env = "musl")]
macro_rules! libc_name {
    ($name:literal) => {
        concat!(".globl ", $name, "\n.type ", $name, ",@function\n", $name, ":\n")
    };
}
#[cfg(not(target_env = "musl"))]
macro_rules! libc_name {
    ($name:literal) => {
        ""
    };
}

std::arch::global_asm!(concat!(
    ".section .text.strata_memcpy,\"ax\",@progbits\n",
    ".p2align 4\n",
    ".globl strata_memcpy\n",
    ".type strata_memcpy,@function\n",
    "strata_memcpy:\n",
    libc_name!("memcpy"),
    r#"
    mov rax, rdi
    cmp rdx, 16
    jb 20f
    cmp rdx, 32
    ja 30f
    movups xmm0, [rsi]
    movups xmm1, [rsi + rdx - 16]
    movups [rdi], xmm0
    movups [rdi + rdx - 16], xmm1
    ret
30:
    cmp rdx, 2048
    jae 50f
    movups xmm1, [rsi + rdx - 16]
    lea r9, [rdi + rdx - 16]
    sub rdx, 16
    xor r8d, r8d
40:
    movups xmm0, [rsi + r8]
    movups [rdi + r8], xmm0
    add r8, 16
    cmp r8, rdx
    jb 40b
    movups [r9], xmm1
    ret
50:
    mov rcx, rdx
    rep movsb
    ret
20:
    cmp edx, 8
    jb 60f
    mov rcx, [rsi]
    mov r8, [rsi + rdx - 8]
    mov [rdi], rcx
    mov [rdi + rdx - 8], r8
    ret
60:
    cmp edx, 4
    jb 70f
    mov ecx, [rsi]
    mov r8d, [rsi + rdx - 4]
    mov [rdi], ecx
    mov [rdi + rdx - 4], r8d
    ret
70:
    test edx, edx
    je 90f
    movzx ecx, byte ptr [rsi]
    cmp edx, 2
    jb 80f
    movzx r8d, word ptr [rsi + rdx - 2]
    mov [rdi + rdx - 2], r8w
80:
    mov [rdi], cl
90:
    ret
.size strata_memcpy, . - strata_memcpy
"#,
    ".section .text.strata_memmove,\"ax\",@progbits\n",
    ".p2align 4\n",
    ".globl strata_memmove\n",
    ".type strata_memmove,@function\n",
    "strata_memmove:\n",
    libc_name!("memmove"),
    r#"
    cmp rdx, 32
    jbe strata_memcpy
    mov rax, rdi
    sub rax, rsi
    cmp rax, rdx
    jae strata_memcpy
    mov rax, rdi
    movups xmm1, [rsi]
    mov r8, rdx
10:
    sub r8, 16
    movups xmm0, [rsi + r8]
    movups [rdi + r8], xmm0
    cmp r8, 16
    ja 10b
    movups [rdi], xmm1
    ret
.size strata_memmove, . - strata_memmove
.text
"#
));

#[cfg(test)]
mod tests {
    unsafe extern "C" {
        fn strata_memcpy(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
        fn strata_memmove(dst: *mut u8, src: *const u8, n: usize) -> *mut u8;
    }

    fn lengths() -> impl Iterator<Item = usize> {
        (0..=300).chain([511, 512, 1000, 2031, 2047, 2048, 2049, 4096, 5000, 70_000])
    }

    /// A buffer whose bytes all differ from their neighbours' (a copy off
    /// by one byte shows).
    fn pattern(len: usize, seed: u8) -> Vec<u8> {
        (0..len).map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed)).collect()
    }

    #[test]
    fn memcpy_copies_every_length_at_every_alignment_and_nothing_else() {
        for n in lengths() {
            for (so, doff) in [(0, 0), (1, 0), (0, 1), (3, 7), (8, 5), (15, 15), (16, 0), (9, 16)] {
                let src = pattern(n + 64, 1);
                let mut dst = pattern(n + 64, 200);
                let mut want = dst.clone();
                want[doff + 16..doff + 16 + n].copy_from_slice(&src[so..so + n]);
                // SAFETY: both ranges lie inside their own buffers.
                let r = unsafe { strata_memcpy(dst.as_mut_ptr().add(doff + 16), src.as_ptr().add(so), n) };
                assert_eq!(r, dst.as_mut_ptr().wrapping_add(doff + 16), "n={n}: the return value");
                assert!(dst == want, "n={n} src+{so} dst+{doff}: the destination (or a byte beside it) is wrong");
            }
        }
    }

    #[test]
    fn memmove_copies_overlapping_ranges_in_both_directions() {
        for n in lengths() {
            for shift in [1usize, 2, 7, 8, 15, 16, 17, 31, 32, 33, 100, 2048] {
                for forward in [true, false] {
                    let base = 64;
                    let mut buf = pattern(n + shift + 2 * base, 9);
                    let (from, to) = if forward { (base + shift, base) } else { (base, base + shift) };
                    let mut want = buf.clone();
                    want.copy_within(from..from + n, to);
                    let p = buf.as_mut_ptr();
                    // SAFETY: both ranges lie inside `buf`.
                    let r = unsafe { strata_memmove(p.add(to), p.add(from), n) };
                    assert_eq!(r, p.wrapping_add(to), "n={n}: the return value");
                    assert!(buf == want, "n={n} shift={shift} forward={forward}: wrong bytes");
                }
            }
            let mut buf = pattern(n + 32, 3);
            let want = buf.clone();
            let p = buf.as_mut_ptr();
            // SAFETY: the range lies inside `buf`; a move onto itself.
            unsafe { strata_memmove(p.add(16), p.add(16), n) };
            assert!(buf == want, "n={n}: a move onto itself changed bytes");
        }
    }
}
