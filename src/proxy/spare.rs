//! Copy buffers kept per thread between active phases: a phase that moves a
//! small message takes a spare instead of allocating and zeroing a new
//! buffer (for 64 KiB that memset was about a sixth of `--no-splice`'s CPU
//! per request). Two sizes: the splice pump's first read and the buffered
//! pump's chunk. After a peak a thread keeps at most 4 small and 2 large
//! ones (192 KiB); an idle connection holds none.

use std::cell::RefCell;
use std::thread::LocalKey;

/// The splice pump's first read of a burst (see `splice::SMALL_READ`).
pub(crate) const SMALL: usize = 16 * 1024;
/// The buffered pump's chunk.
pub(crate) const LARGE: usize = 64 * 1024;

type Spares = RefCell<Vec<Box<[u8]>>>;

thread_local! {
    static SMALLS: Spares = const { RefCell::new(Vec::new()) };
    static LARGES: Spares = const { RefCell::new(Vec::new()) };
}

/// A direction's copy buffer of `N` bytes (`SMALL` or `LARGE`), taken from
/// the thread's spares on first use and given back when dropped (phase
/// over, EOF or error). Empty until `get`, so a phase that moves nothing
/// takes none. The size is a type parameter, so this is one pointer in the
/// pump's future.
pub(crate) struct SpareBuf<const N: usize>(Option<Box<[u8]>>);

impl<const N: usize> SpareBuf<N> {
    pub(crate) const fn new() -> Self {
        const { assert!(N == SMALL || N == LARGE, "a SpareBuf is SMALL or LARGE") };
        SpareBuf(None)
    }

    fn spares() -> &'static LocalKey<Spares> {
        if N == SMALL { &SMALLS } else { &LARGES }
    }

    fn keep() -> usize {
        if N == SMALL { 4 } else { 2 }
    }

    /// The buffer, `N` bytes: a spare of this thread's, or a new one.
    pub(crate) fn get(&mut self) -> &mut [u8] {
        self.0.get_or_insert_with(|| {
            Self::spares()
                .try_with(|s| s.borrow_mut().pop())
                .ok()
                .flatten()
                .unwrap_or_else(|| vec![0u8; N].into_boxed_slice())
        })
    }
}

impl<const N: usize> Default for SpareBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> Drop for SpareBuf<N> {
    fn drop(&mut self) {
        if let Some(b) = self.0.take() {
            let _ = Self::spares().try_with(|s| {
                let mut s = s.borrow_mut();
                if s.len() < Self::keep() {
                    s.push(b);
                }
            });
        }
    }
}

#[cfg(test)]
mod tests;
