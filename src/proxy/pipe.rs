//! A bounded process-wide pool of empty pipes for the splice pump, and the
//! `Lease` a direction holds while bytes move. A pipe goes back to the pool
//! only when it is empty; one that still holds bytes (the destination
//! failed) is closed. The gauges are written only here.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::sys::splice::{RawPipe, splice};

/// The kernel's default pipe capacity: no `F_SETPIPE_SZ` needed.
const KERNEL_PIPE_SIZE: usize = 64 * 1024;

/// A bounded stack of empty pipes plus the gauges.
pub(crate) struct PipePool {
    free: Mutex<Vec<RawPipe>>,
    cap: usize,
    in_use: AtomicUsize,
    pooled: AtomicUsize,
}

impl PipePool {
    pub(crate) const fn new(cap: usize) -> PipePool {
        PipePool {
            free: Mutex::new(Vec::new()),
            cap,
            in_use: AtomicUsize::new(0),
            pooled: AtomicUsize::new(0),
        }
    }

    pub(crate) fn in_use(&self) -> usize {
        self.in_use.load(Relaxed)
    }

    pub(crate) fn pooled(&self) -> usize {
        self.pooled.load(Relaxed)
    }

    /// An empty pipe: a pooled one, or a new one of `size` bytes.
    pub(crate) fn get(&self, size: usize) -> io::Result<Lease<'_>> {
        let reused = self.free.lock().ok().and_then(|mut v| v.pop());
        let pipe = match reused {
            Some(p) => {
                self.pooled.fetch_sub(1, Relaxed);
                p
            }
            None => {
                let p = RawPipe::new()?;
                if size != KERNEL_PIPE_SIZE {
                    // Best effort: a smaller pipe still works.
                    let _ = p.set_size(size);
                }
                p
            }
        };
        self.in_use.fetch_add(1, Relaxed);
        Ok(Lease {
            pool: self,
            pipe: Some(pipe),
            pending: 0,
        })
    }

    fn put(&self, pipe: RawPipe) {
        if let Ok(mut v) = self.free.lock()
            && v.len() < self.cap
        {
            v.push(pipe);
            self.pooled.fetch_add(1, Relaxed);
        }
        // Otherwise the pipe is dropped here, closing both ends.
    }
}

/// A pipe borrowed from a pool. `pending` counts the bytes inside; on drop
/// the pipe goes back only if that is zero, else it is closed.
pub(crate) struct Lease<'a> {
    pool: &'a PipePool,
    pipe: Option<RawPipe>,
    pending: usize,
}

impl Lease<'_> {
    fn pipe(&self) -> io::Result<&RawPipe> {
        self.pipe
            .as_ref()
            .ok_or_else(|| io::Error::from(io::ErrorKind::NotConnected))
    }

    /// Bytes spliced in and not yet out.
    pub(crate) fn pending(&self) -> usize {
        self.pending
    }

    /// Socket → pipe.
    pub(crate) fn fill(&mut self, src: &impl AsRawFd, len: usize) -> io::Result<usize> {
        let n = splice(src.as_raw_fd(), self.pipe()?.w.as_raw_fd(), len)?;
        self.pending += n;
        Ok(n)
    }

    /// Pipe → `buf` (plain read), for a destination splice refuses.
    pub(crate) fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.pipe()?.read(buf)?;
        self.pending = self.pending.saturating_sub(n);
        Ok(n)
    }

    /// Pipe → socket, up to everything pending.
    pub(crate) fn drain(&mut self, dst: &impl AsRawFd) -> io::Result<usize> {
        let n = splice(self.pipe()?.r.as_raw_fd(), dst.as_raw_fd(), self.pending)?;
        self.pending = self.pending.saturating_sub(n);
        Ok(n)
    }
}

impl Drop for Lease<'_> {
    fn drop(&mut self) {
        self.pool.in_use.fetch_sub(1, Relaxed);
        if let Some(p) = self.pipe.take()
            && self.pending == 0
        {
            self.pool.put(p);
        }
    }
}

#[cfg(test)]
mod tests;
