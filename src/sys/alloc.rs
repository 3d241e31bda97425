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

// A pool is only reached under its mutex.
unsafe impl Send for Pool {}

pub struct PoolAlloc {
    pools: [Mutex<Pool>; CLASSES],
}

impl PoolAlloc {
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
            return unsafe { System.alloc(l) };
        };
        let mut pool = self.pools[c].lock().unwrap_or_else(|e| e.into_inner());
        if !pool.free.is_null() {
            let block = pool.free;
            pool.free = unsafe { (block as *const *mut u8).read() };
            return block;
        }
        let size = (c + 1) * STEP;
        if (pool.end as usize) - (pool.next as usize) < size {
            // CHUNK and STEP are non-zero powers of two. The rest of the
            // old chunk (less than a block) stays unused.
            let chunk = unsafe { System.alloc(Layout::from_size_align_unchecked(CHUNK, STEP)) };
            if chunk.is_null() {
                return chunk;
            }
            pool.next = chunk;
            pool.end = unsafe { chunk.add(CHUNK) };
        }
        let block = pool.next;
        pool.next = unsafe { block.add(size) };
        block
    }

    unsafe fn dealloc(&self, p: *mut u8, l: Layout) {
        let Some(c) = class(l) else {
            return unsafe { System.dealloc(p, l) };
        };
        let mut pool = self.pools[c].lock().unwrap_or_else(|e| e.into_inner());
        unsafe { (p as *mut *mut u8).write(pool.free) };
        pool.free = p;
    }

    unsafe fn alloc_zeroed(&self, l: Layout) -> *mut u8 {
        if class(l).is_none() {
            // calloc: large zeroed blocks come as fresh pages, unwritten.
            return unsafe { System.alloc_zeroed(l) };
        }
        let p = unsafe { self.alloc(l) };
        if !p.is_null() {
            unsafe { ptr::write_bytes(p, 0, l.size()) };
        }
        p
    }

    unsafe fn realloc(&self, p: *mut u8, l: Layout, new_size: usize) -> *mut u8 {
        // Same alignment, as GlobalAlloc's contract says.
        let new = unsafe { Layout::from_size_align_unchecked(new_size, l.align()) };
        if class(l).is_none() && class(new).is_none() {
            return unsafe { System.realloc(p, l, new_size) };
        }
        let q = unsafe { self.alloc(new) };
        if !q.is_null() {
            unsafe { ptr::copy_nonoverlapping(p, q, l.size().min(new_size)) };
            unsafe { self.dealloc(p, l) };
        }
        q
    }
}

#[cfg(test)]
mod tests;
