//! The zero-copy pump: one direction socket → pipe → socket with
//! `splice(2)`, driven by tokio readiness, with exactly the semantics of the
//! buffered pump (half-close, reset propagation, error watching while
//! waiting, byte counters, idle activity): both drive a `HalfDuplex`.
//!
//! Pipes come from the process-wide pool (`pipe.rs`) only when bytes are
//! about to move and go back as soon as the source is drained, so an idle
//! connection holds no pipe. Where splice is refused (EINVAL/ENOSYS) or no
//! pipe can be made (EMFILE), the pump returns `Outcome::Fallback` and the
//! direction continues on the buffered pump. Whether relays splice and the
//! pipe size are decided once at start-up (`configure`).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::Relaxed};

use tokio::io::Interest;

use super::half::{Chunk, HalfDuplex, PumpError};
use super::pipe::{Lease, PipePool};
use super::spare::{self, SpareBuf};
use crate::sys::splice::is_unsupported;

/// Pipe capacity asked for with `F_SETPIPE_SZ` (the kernel default is
/// 64 KiB). On loopback, one iperf3 stream went from 14.9 (64 KiB) to
/// 18.2 (256 KiB) and 19.9 Gbit/s (1 MiB); four streams 16.3, 17.5, 15.0
/// (docs/performance.md). A pipe only references the socket's pages, so the size costs no memory by itself,
/// but it counts against `fs.pipe-user-pages-soft` for unprivileged users
/// (where the kernel refuses, the pipe keeps its default size).
pub(crate) const PIPE_SIZE: usize = 256 * 1024;

/// How many empty pipes the pool keeps (2 fds each) for reuse.
pub(crate) const POOL_CAP: usize = 32;

static ENABLED: AtomicBool = AtomicBool::new(true);
static SIZE: AtomicUsize = AtomicUsize::new(PIPE_SIZE);
static POOL: PipePool = PipePool::new(POOL_CAP);

/// Decide once at start-up whether relays splice: off with `--no-splice` or
/// `BALANCE_NO_SPLICE=1`. `BALANCE_PIPE_SIZE=BYTES` changes the pipe size
/// (for measurements).
pub(crate) fn configure(no_splice: bool) {
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
pub(crate) fn enabled() -> bool {
    ENABLED.load(Relaxed)
}

/// Pipes currently held by connections that are moving bytes.
pub(crate) fn pipes_in_use() -> usize {
    POOL.in_use()
}

/// Empty pipes kept for reuse.
pub(crate) fn pipes_pooled() -> usize {
    POOL.pooled()
}

/// Size of the first read of every burst: most request/response traffic
/// fits, and a short read proves the socket drained (`HalfDuplex::read`), so a
/// small message costs one read and one write instead of two splices and a
/// failed one. Only a full buffer (a burst) goes on to splice. (A short
/// *splice* proves nothing: the pipe can run out of slots while bytes are
/// still queued.) After a burst the direction is `bulk`: its next burst
/// splices from the first byte (a 16 KiB copy and two syscalls less per
/// wake-up) until a burst moves less than this.
const SMALL_READ: usize = spare::SMALL;

/// How a splice direction ended without error.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// EOF passed on.
    Done,
    /// Splice is not possible here; continue on the buffered pump.
    Fallback,
}

/// Splice `src` → `dst` until EOF, then shut down writing on `dst`. Same
/// contract as the buffered pump, plus `Ok(Fallback)` when splice cannot be
/// used here: nothing is lost (the pipe was empty) and the caller continues
/// this direction on the buffered pump. (Returning instead of calling the
/// buffered pump from here keeps each connection's future small.)
pub(crate) async fn pump(h: &HalfDuplex<'_>) -> Result<Outcome, PumpError> {
    let (src, dst) = (h.src, h.dst);
    let size = SIZE.load(Relaxed);
    let mut lease: Option<Lease<'static>> = None;
    // Small reads go through this buffer (see `SMALL_READ`); it lives only
    // in the active phase of the relay, never while the connection is idle.
    let mut small = SpareBuf::<SMALL_READ>::new();
    // Bytes spliced since the source was last drained.
    let mut burst_len = 0;
    loop {
        h.wait_source().await?;
        if lease.is_none() && !h.state.bulk() {
            let b = small.get();
            let (n, burst) = match h.read(b) {
                Chunk::Eof => {
                    h.pass_eof();
                    return Ok(Outcome::Done);
                }
                Chunk::Drained(n) => (n, false),
                Chunk::Full(n) => (n, true),
                Chunk::Interrupted => continue,
                Chunk::Err(e) => return Err(PumpError::Src(e)),
            };
            if let Some(data) = b.get(..n).filter(|d| !d.is_empty()) {
                h.write_all(data).await?;
                h.moved(n);
            }
            if !burst {
                continue;
            }
            // A full buffer: a burst is under way; splice the rest, and
            // splice the next burst from its first byte (`bulk`).
            h.state.set_bulk(true);
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
                h.pass_eof();
                return Ok(Outcome::Done);
            }
            Ok(n) => burst_len += n,
            // Drained: the (empty) pipe goes back to the pool while idle.
            // A burst smaller than a small read: back to reading first.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                if std::mem::take(&mut burst_len) < SMALL_READ {
                    h.state.set_bulk(false);
                }
                continue;
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {
                lease = Some(l);
                continue;
            }
            Err(e) if is_unsupported(&e) => return Ok(Outcome::Fallback),
            Err(e) => return Err(PumpError::Src(e)),
        }
        while l.pending() > 0 {
            match dst.try_io(Interest::WRITABLE, || l.drain(dst)) {
                Ok(0) => return Err(PumpError::Dst(io::ErrorKind::WriteZero.into())),
                Ok(n) => h.moved(n),
                // Boxed: only a full destination pays for this state.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Box::pin(h.writable()).await?,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // The destination refuses splice (EINVAL: e.g. a socket
                // type without splice support): what the pipe holds goes
                // out through the buffer, then the buffered pump goes on.
                Err(e) if is_unsupported(&e) => {
                    let b = small.get();
                    while l.pending() > 0 {
                        let n = l.read(b).map_err(PumpError::Src)?;
                        if n == 0 {
                            break;
                        }
                        h.write_all(b.get(..n).unwrap_or_default()).await?;
                        h.moved(n);
                    }
                    return Ok(Outcome::Fallback);
                }
                // `l` still holds bytes: it is closed, not pooled.
                Err(e) => return Err(PumpError::Dst(e)),
            }
        }
        lease = Some(l);
    }
}

#[cfg(test)]
mod tests;
