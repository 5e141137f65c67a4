//! The allocator of the strata binary: a bump arena for the short commands,
//! the C library's malloc for what runs long or allocates big.
//!
//! A strata process lives for a few milliseconds. It parses the command
//! line and `config.json`, plans, writes state and exits; nearly all it
//! allocates is small and lives until exit. A bump allocator serves that
//! with a pointer increment and frees nothing. musl's malloc, which the
//! release build links, instead takes a lock per call and hands pages back
//! to the kernel as soon as they empty, so a `run` paid more in `munmap`
//! and page faults than the bump costs in memory (docs/benchmarks.md).
//!
//! - Blocks up to [`SMALL`] bytes come from one reservation of [`RESERVE`]
//!   bytes (`MAP_NORESERVE`: only the pages touched count), made at the
//!   first allocation.
//! - Freeing the most recent block takes it back (a stack's pop), and the
//!   most recent block grows or shrinks in place; any other free is a
//!   no-op.
//! - Larger blocks, and every block once the reservation is used up or
//!   [`stop`] was called, go to the C library's malloc, and are freed there.
//!   [`stop`] is called before the phases that run for a long time or
//!   allocate and free without bound: the foreground wait of `run`, `exec`
//!   and `restore`, `events`, and unpacking layers. What the arena held by
//!   then stays, bounded by `RESERVE`.
//!
//! Lock-free (one compare-and-swap per call), so a child made by a raw
//! clone can allocate whatever the parent's threads were doing.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// The reservation: virtual address space, not memory.
pub const RESERVE: usize = 16 << 20;
/// Blocks above this go to malloc, so big buffers are freed for real.
pub const SMALL: usize = 32 << 10;
/// Every block is aligned at least as malloc's are (`max_align_t`): code
/// that casts a byte buffer to a struct relies on it (nix's control
/// messages do).
const MIN_ALIGN: usize = 16;

/// A bump arena over one reservation, falling back to [`System`].
pub struct Arena {
    reserve: usize,
    base: AtomicUsize,
    top: AtomicUsize,
    stopped: AtomicBool,
}

/// The binary's global allocator (`#[global_allocator]` in `main.rs`): the
/// process-wide [`ARENA`].
pub struct Global;

/// The arena every allocation of the strata binary goes through.
pub static ARENA: Arena = Arena::new(RESERVE);

/// From now on, every allocation of the process goes to malloc.
pub fn stop() {
    ARENA.stop();
}

/// Bytes the process-wide arena has handed out (for `--debug`).
pub fn used() -> usize {
    ARENA.used()
}

impl Arena {
    pub const fn new(reserve: usize) -> Self {
        Self { reserve, base: AtomicUsize::new(0), top: AtomicUsize::new(0), stopped: AtomicBool::new(false) }
    }

    pub fn stop(&self) {
        self.stopped.store(true, Ordering::Relaxed);
    }

    pub fn used(&self) -> usize {
        let base = self.base.load(Ordering::Relaxed);
        if base == 0 { 0 } else { self.top.load(Ordering::Relaxed) - base }
    }

    fn owns(&self, p: *mut u8) -> bool {
        let base = self.base.load(Ordering::Relaxed);
        base != 0 && (p as usize) >= base && (p as usize) < base + self.reserve
    }

    /// The reservation's start, made on first use; 0 if it cannot be made.
    /// The first caller claims the making (the top goes from 0 to 1), maps,
    /// sets the top and then publishes the base; any other caller waits
    /// for the base (or for the stop of a failed mapping).
    fn reservation(&self) -> usize {
        let base = self.base.load(Ordering::Acquire);
        if base != 0 {
            return base;
        }
        if self.top.compare_exchange(0, 1, Ordering::AcqRel, Ordering::Acquire).is_err() {
            loop {
                let base = self.base.load(Ordering::Acquire);
                if base != 0 {
                    return base;
                }
                if self.stopped.load(Ordering::Acquire) {
                    return 0;
                }
                std::hint::spin_loop();
            }
        }
        // SAFETY: a fresh anonymous mapping; nothing else refers to it.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                self.reserve,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            self.stopped.store(true, Ordering::Release);
            return 0;
        }
        let p = p as usize;
        // The top before the base: whoever sees the base sees the top.
        self.top.store(p, Ordering::Relaxed);
        self.base.store(p, Ordering::Release);
        p
    }

    /// A block from the arena, or None (stopped, too big, or full).
    fn bump(&self, l: Layout) -> Option<*mut u8> {
        if l.size() > SMALL || self.stopped.load(Ordering::Relaxed) {
            return None;
        }
        let base = self.reservation();
        if base == 0 {
            return None;
        }
        let end = base + self.reserve;
        let align = l.align().max(MIN_ALIGN);
        let mut top = self.top.load(Ordering::Relaxed);
        loop {
            let start = top.checked_add(align - 1)? & !(align - 1);
            let next = start.checked_add(l.size())?;
            if next > end {
                return None;
            }
            match self.top.compare_exchange_weak(top, next, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(start as *mut u8),
                Err(t) => top = t,
            }
        }
    }

    /// Moves the top from `from` to `to` if no one has moved it since.
    fn retop(&self, from: usize, to: usize) -> bool {
        self.top.compare_exchange(from, to, Ordering::Relaxed, Ordering::Relaxed).is_ok()
    }
}

// SAFETY: blocks from `bump` are within the reservation, aligned as asked,
// and never handed out twice (the top only moves past them, or back over
// the most recent one when it is freed); every other block is System's and
// goes back to System, told apart by address.
unsafe impl GlobalAlloc for Arena {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        match self.bump(l) {
            Some(p) => p,
            // SAFETY: the caller's layout, passed on.
            None => unsafe { System.alloc(l) },
        }
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        if self.owns(p) {
            self.retop(p as usize + l.size(), p as usize);
        } else {
            // SAFETY: not ours, so System's, with the layout it was made with.
            unsafe { System.dealloc(p, l) }
        }
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        if !self.owns(p) {
            // SAFETY: System's block, with its layout.
            return unsafe { System.realloc(p, l, new_size) };
        }
        let (at, old_end) = (p as usize, p as usize + l.size());
        let base = self.base.load(Ordering::Relaxed);
        if new_size <= SMALL
            && !self.stopped.load(Ordering::Relaxed)
            && at + new_size <= base + self.reserve
            && self.retop(old_end, at + new_size)
        {
            return p;
        }
        // SAFETY: the new layout has the old alignment and a size the
        // caller vouches for; both blocks are valid for min(old, new) bytes.
        unsafe {
            let new = self.alloc(Layout::from_size_align_unchecked(new_size, l.align()));
            if !new.is_null() {
                std::ptr::copy_nonoverlapping(p, new, l.size().min(new_size));
                self.dealloc(p, l);
            }
            new
        }
    }
}

// SAFETY: delegates to ARENA, whose contract is above.
unsafe impl GlobalAlloc for Global {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        unsafe { ARENA.alloc(l) }
    }
    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        unsafe { ARENA.dealloc(p, l) }
    }
    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        unsafe { ARENA.realloc(p, l, new_size) }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lay(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).unwrap()
    }

    #[test]
    fn small_blocks_are_bumped_aligned_and_the_last_is_taken_back() {
        let a = Arena::new(1 << 20);
        unsafe {
            let p = a.alloc(lay(3, 1));
            let q = a.alloc(lay(8, 8));
            assert!(a.owns(p) && a.owns(q));
            assert_eq!((p as usize % 16, q as usize % 16), (0, 0), "aligned as malloc's blocks are");
            assert!(q as usize >= p as usize + 3);
            q.write_bytes(0xab, 8);
            p.write_bytes(0xcd, 3);
            let used = a.used();
            a.dealloc(q, lay(8, 8));
            assert_eq!(a.used(), q as usize - a.base.load(Ordering::Relaxed), "the last block is popped");
            assert!(a.used() < used);
            // Not the last any more: freeing p is a no-op, and p keeps its bytes.
            let r = a.alloc(lay(16, 16));
            a.dealloc(p, lay(3, 1));
            assert_eq!(*p, 0xcd);
            assert_eq!(r as usize % 16, 0);
        }
    }

    #[test]
    fn the_last_block_grows_and_shrinks_in_place_and_others_move() {
        let a = Arena::new(1 << 20);
        unsafe {
            let p = a.alloc(lay(16, 8));
            p.write_bytes(7, 16);
            let grown = a.realloc(p, lay(16, 8), 4096);
            assert_eq!(grown, p, "the top block grows where it is");
            let q = a.alloc(lay(8, 8));
            let moved = a.realloc(p, lay(4096, 8), 8192);
            assert_ne!(moved, p, "a block under another is copied");
            assert!(std::slice::from_raw_parts(moved, 16).iter().all(|b| *b == 7));
            assert!(a.owns(q) && a.owns(moved));
        }
    }

    #[test]
    fn big_blocks_a_full_arena_and_a_stopped_one_use_malloc() {
        let a = Arena::new(64 << 10);
        unsafe {
            let big = a.alloc(lay(SMALL + 1, 8));
            assert!(!big.is_null() && !a.owns(big));
            a.dealloc(big, lay(SMALL + 1, 8));
            let mut held = Vec::new();
            let mut spilled = None;
            for _ in 0..8 {
                let p = a.alloc(lay(SMALL, 8));
                if a.owns(p) {
                    held.push(p);
                } else {
                    spilled = Some(p);
                    break;
                }
            }
            let spilled = spilled.expect("a 64 KiB arena holds at most two 32 KiB blocks");
            assert!(held.len() <= 2);
            a.dealloc(spilled, lay(SMALL, 8));
            a.stop();
            let p = a.alloc(lay(8, 8));
            assert!(!a.owns(p), "after stop, malloc");
            // A block of the arena reallocated after stop leaves it.
            let q = a.realloc(held[0], lay(SMALL, 8), 64);
            assert!(!a.owns(q));
            a.dealloc(q, lay(64, 8));
            a.dealloc(p, lay(8, 8));
        }
    }

    #[test]
    fn threads_get_disjoint_blocks() {
        // Fresh arenas, the threads let go at once: their first blocks
        // race for the reservation too.
        for _ in 0..20 {
            threads_on_a_fresh_arena();
        }
    }

    fn threads_on_a_fresh_arena() {
        let a = Arena::new(8 << 20);
        let blocks = std::sync::Mutex::new(Vec::new());
        let go = std::sync::Barrier::new(4);
        std::thread::scope(|s| {
            for t in 0..4u8 {
                let (a, blocks, go) = (&a, &blocks, &go);
                s.spawn(move || {
                    go.wait();
                    for _ in 0..1000 {
                        let p = unsafe { a.alloc(lay(24, 8)) };
                        unsafe { p.write_bytes(t, 24) };
                        blocks.lock().unwrap().push((p as usize, t));
                    }
                });
            }
        });
        let mut b = blocks.into_inner().unwrap();
        b.sort();
        assert!(b.windows(2).all(|w| w[0].0 + 24 <= w[1].0), "no two blocks overlap");
        assert!(b.iter().all(|(p, t)| unsafe { std::slice::from_raw_parts(*p as *const u8, 24) }.iter().all(|x| x == t)));
        assert!(b.iter().all(|(p, _)| a.owns(*p as *mut u8)), "every block in the one reservation");
        // SAFETY: the test's own mapping, no block of it used any more.
        unsafe { libc::munmap(a.base.load(Ordering::Relaxed) as *mut libc::c_void, a.reserve) };
    }
}
