//! The binary's allocator: the system's, except for small blocks aligned to
//! more than 16 bytes, which come from per-size pools.
//!
//! Every connection allocates three such blocks: tokio's task (768 bytes)
//! and its two socket registrations (256 bytes each), all 128-byte aligned.
//! glibc serves an aligned request by cutting an aligned block out of a
//! larger one and leaves the pieces beside it as fragments that little else
//! fits in: about 500 bytes per idle connection on top of 1,280 in use.
//! Here those sizes are carved from 64 KiB chunks, 128-aligned, one size
//! per chunk, and a freed block goes to its size's free list for the next
//! connection. Chunks are never given back: after a peak of connections the
//! pools keep what the peak used (a pool's memory serves only its size),
//! as HAProxy's pools do.

use std::alloc::{GlobalAlloc, Layout, System};
use std::ptr;
use std::sync::Mutex;

/// Pooled sizes are multiples of this, up to [`MAX`]; it is also the
/// largest alignment pooled (and each chunk's).
const STEP: usize = 128;
const MAX: usize = 1024;
const CLASSES: usize = MAX / STEP;
const CHUNK: usize = 64 * 1024;

/// One size's pool: the freed blocks (each holds the next), then what is
/// left of the newest chunk, carved one block at a time so that only pages
/// in use are touched.
struct Pool {
    free: *mut u8,
    next: *mut u8,
    end: *mut u8,
}

// SAFETY: the pointers are into chunks this allocator owns and never frees;
// a pool is only reached under its mutex, so moving it between threads
// shares nothing.
unsafe impl Send for Pool {}

/// The global allocator: the system's, with small over-aligned blocks
/// from per-size pools (see the module's text).
pub struct PoolAlloc {
    pools: [Mutex<Pool>; CLASSES],
}

impl PoolAlloc {
    /// Empty pools (a `static` initializer).
    pub const fn new() -> Self {
        const EMPTY: Pool = Pool {
            free: ptr::null_mut(),
            next: ptr::null_mut(),
            end: ptr::null_mut(),
        };
        PoolAlloc {
            pools: [const { Mutex::new(EMPTY) }; CLASSES],
        }
    }
}

impl Default for PoolAlloc {
    fn default() -> Self {
        Self::new()
    }
}

/// The pool for `l`, if it is pooled: more than 16-byte alignment (what
/// malloc gives anyway), at most [`STEP`], and a size up to [`MAX`].
fn class(l: Layout) -> Option<usize> {
    (l.align() > 16 && l.align() <= STEP && l.size() <= MAX && l.size() > 0)
        .then(|| l.size().div_ceil(STEP) - 1)
}

unsafe impl GlobalAlloc for PoolAlloc {
    unsafe fn alloc(&self, l: Layout) -> *mut u8 {
        let Some(c) = class(l) else {
            // SAFETY: the caller's layout, passed on unchanged.
            return unsafe { System.alloc(l) };
        };
        let mut pool = self.pools[c].lock().unwrap_or_else(|e| e.into_inner());
        if !pool.free.is_null() {
            let block = pool.free;
            // SAFETY: a free block is at least STEP bytes, STEP-aligned, and
            // `dealloc` wrote the next free block's address at its start.
            pool.free = unsafe { (block as *const *mut u8).read() };
            return block;
        }
        let size = (c + 1) * STEP;
        if (pool.end as usize) - (pool.next as usize) < size {
            // CHUNK and STEP are non-zero powers of two. The rest of the
            // old chunk (less than a block) stays unused.
            // SAFETY: a valid, non-zero-sized layout (see above).
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, STEP)) };
            if chunk.is_null() {
                return chunk;
            }
            pool.next = chunk;
            // SAFETY: one past the end of the CHUNK bytes just allocated.
            pool.end = unsafe { chunk.add(CHUNK) };
        }
        let block = pool.next;
        // SAFETY: at least `size` bytes are left before `end` (checked or
        // just allocated), so this stays within the chunk or one past it.
        pool.next = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some(c) = class(l) else {
            // SAFETY: `p` came from `System.alloc` with this layout (the
            // same `class` decision sent it there).
            return unsafe { System.dealloc(p, l) };
        };
        let mut pool = self.pools[c].lock().unwrap_or_else(|e| e.into_inner());
        // SAFETY: `p` is a block of this pool (at least STEP bytes,
        // STEP-aligned) that the caller no longer uses: its first word
        // holds the free list's link.
        unsafe { (p as *mut *mut u8).write(pool.free) };
        pool.free = p;
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if class(l).is_none() {
            // calloc: large zeroed blocks come as fresh pages, unwritten.
            // SAFETY: the caller's layout, passed on unchanged.
            return unsafe { System.alloc_zeroed(l) };
        }
        // SAFETY: the caller's layout.
        let p = unsafe { self.alloc(l) };
        if !p.is_null() {
            // SAFETY: `p` is a live block of at least `l.size()` bytes.
            unsafe { ptr::write_bytes(p, 0, l.size()) };
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: the same alignment with a size the caller promises is
        // valid for it (GlobalAlloc's contract for `realloc`).
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if class(l).is_none() && class(new).is_none() {
            // SAFETY: `p` came from `System` with `l`; the caller's request.
            return unsafe { System.realloc(p, l, new_size) };
        }
        // SAFETY: `new` is a valid layout (above).
        let q = unsafe { self.alloc(new) };
        if !q.is_null() {
            // SAFETY: `p` holds `l.size()` bytes and `q` `new_size`, two
            // distinct live blocks; `p` is freed once, with the layout it
            // was allocated with.
            unsafe {
                ptr::copy_nonoverlapping(p, q, l.size().min(new_size));
                self.dealloc(p, l);
            }
        }
        q
    }
}

#[cfg(test)]
mod tests;
