//! The zero-copy relay direction: socket → pipe → socket with `splice(2)`,
//! driven by tokio readiness, with exactly the semantics of the buffered
//! pump in `relay.rs` (half-close, reset propagation, error watching while
//! waiting, byte counters, idle activity).
//!
//! Pipes are taken from a bounded process-wide pool only when bytes are
//! about to move, and given back as soon as the source is drained, so an
//! idle connection holds no pipe. A pipe goes back to the pool only when it
//! is empty; one that still holds bytes (the destination failed) is closed.
//! Where splice is refused (EINVAL/ENOSYS) or no pipe can be made (EMFILE),
//! the direction continues on the buffered pump.

use std::io;
use std::os::fd::AsRawFd;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering::Relaxed};

use tokio::io::Interest;
use tokio::net::TcpStream;

use super::relay::{
    Activity, Chunk, Dir, Flags, PumpError, pass_eof, read_chunk, wait_source, wait_writable,
    write_all,
};
use crate::sys::splice::{RawPipe, is_unsupported, splice};

/// Pipe capacity asked for with `F_SETPIPE_SZ` (the kernel default is
/// 64 KiB). On loopback, l4bench bulk1 went from 14.9 (64 KiB) to 18.2
/// (256 KiB) and 19.9 Gbit/s (1 MiB); bulk4 16.3, 17.5, 15.0. A pipe only
/// references the socket's pages, so the size costs no memory by itself,
/// but it counts against `fs.pipe-user-pages-soft` for unprivileged users
/// (where the kernel refuses, the pipe keeps its default size).
pub const PIPE_SIZE: usize = 256 * 1024;

/// The kernel's default pipe capacity: no `F_SETPIPE_SZ` needed.
const KERNEL_PIPE_SIZE: usize = 64 * 1024;

/// How many empty pipes the pool keeps (2 fds each) for reuse.
pub const POOL_CAP: usize = 32;

static ENABLED: AtomicBool = AtomicBool::new(true);
static SIZE: AtomicUsize = AtomicUsize::new(PIPE_SIZE);
static POOL: PipePool = PipePool::new(POOL_CAP);

/// Decide once at start-up whether relays splice: off with `--no-splice` or
/// `BALANCE_NO_SPLICE=1`. `BALANCE_PIPE_SIZE=BYTES` changes the pipe size
/// (for measurements).
pub fn configure(no_splice: bool) {
    let env_off = std::env::var_os("BALANCE_NO_SPLICE").is_some_and(|v| v != "0" && !v.is_empty());
    ENABLED.store(!(no_splice || env_off), Relaxed);
    if let Some(n) = std::env::var("BALANCE_PIPE_SIZE")
        .ok()
        .and_then(|s| s.parse::<usize>().ok())
        .filter(|n| (4096..=(1 << 20)).contains(n))
    {
        SIZE.store(n, Relaxed);
    }
}

/// Whether new relays use splice.
pub fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Pipes currently held by connections that are moving bytes.
pub fn pipes_in_use() -> usize {
    POOL.in_use()
}

/// Empty pipes kept for reuse.
pub fn pipes_pooled() -> usize {
    POOL.pooled()
}

/// A bounded stack of empty pipes plus the gauges.
pub struct PipePool {
    free: Mutex<Vec<RawPipe>>,
    cap: usize,
    in_use: AtomicUsize,
    pooled: AtomicUsize,
}

impl PipePool {
    pub const fn new(cap: usize) -> PipePool {
        PipePool {
            free: Mutex::new(Vec::new()),
            cap,
            in_use: AtomicUsize::new(0),
            pooled: AtomicUsize::new(0),
        }
    }

    pub fn in_use(&self) -> usize {
        self.in_use.load(Relaxed)
    }

    pub fn pooled(&self) -> usize {
        self.pooled.load(Relaxed)
    }

    /// An empty pipe: a pooled one, or a new one of `size` bytes.
    pub fn get(&self, size: usize) -> io::Result<Lease<'_>> {
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
pub struct Lease<'a> {
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
    pub fn pending(&self) -> usize {
        self.pending
    }

    /// Socket → pipe.
    pub fn fill(&mut self, src: &impl AsRawFd, len: usize) -> io::Result<usize> {
        let n = splice(src.as_raw_fd(), self.pipe()?.w.as_raw_fd(), len)?;
        self.pending += n;
        Ok(n)
    }

    /// Pipe → socket, up to everything pending.
    pub fn drain(&mut self, dst: &impl AsRawFd) -> io::Result<usize> {
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

/// Size of the first read of every burst: most request/response traffic
/// fits, and a short read proves the socket drained (`read_chunk`), so a
/// small message costs one read and one write instead of two splices and a
/// failed one. Only a full buffer (a burst) goes on to splice. (A short
/// *splice* proves nothing: the pipe can run out of slots while bytes are
/// still queued.)
const SMALL_READ: usize = 16 * 1024;

/// How a splice direction ended without error.
#[derive(Debug, PartialEq, Eq)]
pub enum Outcome {
    /// EOF passed on.
    Done,
    /// Splice is not possible here; continue on the buffered pump.
    Fallback,
}

/// Splice `src` → `dst` until EOF, then shut down writing on `dst`. Same
/// contract as `relay::pump`, plus `Ok(Fallback)` when splice cannot be
/// used here: nothing is lost (the pipe was empty) and the caller continues
/// this direction on the buffered pump. (Returning instead of calling the
/// buffered pump from here keeps each connection's future small.)
pub async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Dir,
    counter: &AtomicU64,
    act: &Activity,
    flags: &Flags,
) -> Result<Outcome, (Dir, PumpError)> {
    let size = SIZE.load(Relaxed);
    let mut lease: Option<Lease<'static>> = None;
    // Small reads go through this buffer (see `SMALL_READ`); it lives only
    // in the active phase of the relay, never while the connection is idle.
    let mut small: Option<Box<[u8]>> = None;
    loop {
        wait_source(src, dst, dir, flags)
            .await
            .map_err(|e| (dir, e))?;
        if lease.is_none() {
            let b = small.get_or_insert_with(|| vec![0u8; SMALL_READ].into_boxed_slice());
            let (n, burst) = match read_chunk(src, b) {
                Chunk::Eof => {
                    pass_eof(dst);
                    return Ok(Outcome::Done);
                }
                Chunk::Drained(n) => (n, false),
                Chunk::Full(n) => (n, true),
                Chunk::Interrupted => continue,
                Chunk::Err(e) => return Err((dir, PumpError::Src(e))),
            };
            if let Some(data) = b.get(..n).filter(|d| !d.is_empty()) {
                write_all(dst, src, data).await.map_err(|e| (dir, e))?;
                counter.fetch_add(n as u64, Relaxed);
                act.touch();
            }
            if !burst {
                continue;
            }
            // A full buffer: a burst is under way; splice the rest.
        }
        let mut l = match lease.take() {
            Some(l) => l,
            None => match POOL.get(size) {
                Ok(l) => l,
                // No fds for a pipe: copy through a buffer instead.
                Err(_) => return Ok(Outcome::Fallback),
            },
        };
        match src.try_io(Interest::READABLE, || l.fill(src, size)) {
            Ok(0) => {
                pass_eof(dst);
                return Ok(Outcome::Done);
            }
            Ok(_) => {}
            // Drained: the (empty) pipe goes back to the pool while idle.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                lease = Some(l);
                continue;
            }
            Err(e) if is_unsupported(&e) => return Ok(Outcome::Fallback),
            Err(e) => return Err((dir, PumpError::Src(e))),
        }
        while l.pending() > 0 {
            match dst.try_io(Interest::WRITABLE, || l.drain(dst)) {
                Ok(0) => return Err((dir, PumpError::Dst(io::ErrorKind::WriteZero.into()))),
                Ok(n) => {
                    counter.fetch_add(n as u64, Relaxed);
                    act.touch();
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Boxed: only a full destination pays for this state.
                    Box::pin(wait_writable(dst, src))
                        .await
                        .map_err(|e| (dir, e))?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // `l` still holds bytes: it is closed, not pooled.
                Err(e) => return Err((dir, PumpError::Dst(e))),
            }
        }
        lease = Some(l);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};

    fn sockets() -> (std::net::TcpStream, std::net::TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let a = std::net::TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn pool_reuses_an_empty_pipe_instead_of_making_a_new_one() {
        let pool = PipePool::new(4);
        let fd = {
            let l = pool.get(PIPE_SIZE).unwrap();
            assert_eq!((pool.in_use(), pool.pooled()), (1, 0));
            l.pipe().unwrap().r.as_raw_fd()
        };
        assert_eq!((pool.in_use(), pool.pooled()), (0, 1));
        let l = pool.get(PIPE_SIZE).unwrap();
        assert_eq!(l.pipe().unwrap().r.as_raw_fd(), fd);
        assert_eq!((pool.in_use(), pool.pooled()), (1, 0));
    }

    #[test]
    fn pool_keeps_at_most_cap_pipes() {
        let pool = PipePool::new(2);
        let leases: Vec<_> = (0..5).map(|_| pool.get(PIPE_SIZE).unwrap()).collect();
        assert_eq!(pool.in_use(), 5);
        drop(leases);
        assert_eq!((pool.in_use(), pool.pooled()), (0, 2));
    }

    #[test]
    fn pool_closes_a_pipe_that_still_holds_bytes() {
        let pool = PipePool::new(4);
        let (mut a, b) = sockets();
        a.write_all(b"leftover").unwrap();
        let mut l = pool.get(PIPE_SIZE).unwrap();
        // Blocking socket: waits for the 8 bytes.
        assert_eq!(l.fill(&b, 1024).unwrap(), 8);
        assert_eq!(l.pending(), 8);
        drop(l);
        assert_eq!((pool.in_use(), pool.pooled()), (0, 0));
    }

    #[test]
    fn lease_moves_bytes_and_goes_back_empty() {
        let pool = PipePool::new(4);
        let (mut a, b) = sockets();
        let (mut c, d) = sockets();
        a.write_all(b"0123456789").unwrap();
        let mut l = pool.get(PIPE_SIZE).unwrap();
        assert_eq!(l.fill(&b, 1024).unwrap(), 10);
        assert_eq!(l.drain(&d).unwrap(), 10);
        assert_eq!(l.pending(), 0);
        drop(l);
        assert_eq!(pool.pooled(), 1);
        let mut got = [0u8; 10];
        c.read_exact(&mut got).unwrap();
        assert_eq!(&got, b"0123456789");
    }

    #[test]
    fn pool_gives_a_pipe_of_the_requested_size() {
        let pool = PipePool::new(1);
        let l = pool.get(256 * 1024).unwrap();
        assert!(l.pipe().unwrap().size().unwrap() >= 256 * 1024);
    }
}
