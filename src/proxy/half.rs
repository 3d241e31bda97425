//! One direction of a relay and what both pumps share: `Dir`, the
//! per-direction `HalfDuplex` (with its persistent `HalfState`), the chunk
//! read, the waits, the activity clock, passing an EOF on, `write_all` and
//! `PumpError`. It imports no other relay file: the buffered pump, the
//! splice pump and the orchestrator (`relay.rs`) build on it. A direction's
//! `HalfState` is written only by that direction; the opposite direction
//! and the orchestrator only read it.

use std::future::Future;
use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::Poll;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

/// Which way bytes flow, for counters and the packet dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Dir {
    ToBackend,
    ToClient,
}

/// A direction's failure: which side broke. The relay acts on the side
/// only; the `io::Error` is kept for `Debug` (dropping it would change
/// when `take_error` clears SO_ERROR on the data path).
#[derive(Debug)]
#[allow(dead_code)]
pub(crate) enum PumpError {
    /// Reading the source failed (it was reset).
    Src(io::Error),
    /// Writing the destination failed (it is gone).
    Dst(io::Error),
}

/// Tracks the last time bytes moved, for the idle timeout. Without `-T`
/// nothing reads it, so it keeps no clock: `touch` is then free (no
/// `clock_gettime` per chunk moved).
pub(crate) struct Activity {
    start: Option<Instant>,
    last_ms: AtomicU64,
}

impl Activity {
    pub(crate) fn new() -> Self {
        Activity {
            start: Some(Instant::now()),
            last_ms: AtomicU64::new(0),
        }
    }
    /// An activity nobody waits on (no `-T`).
    pub(crate) fn untracked() -> Self {
        Activity {
            start: None,
            last_ms: AtomicU64::new(0),
        }
    }
    pub(crate) fn touch(&self) {
        if let Some(start) = self.start {
            let ms = start.elapsed().as_millis() as u64;
            self.last_ms.store(ms, Relaxed);
        }
    }
    /// Resolves once nothing moved for `idle`; never when untracked.
    pub(crate) async fn expired(&self, idle: Duration) {
        let Some(start) = self.start else {
            return std::future::pending().await;
        };
        loop {
            let last = start + Duration::from_millis(self.last_ms.load(Relaxed));
            let deadline = last + idle;
            if Instant::now() >= deadline {
                return;
            }
            sleep_until(deadline).await;
        }
    }
}

impl Default for Activity {
    fn default() -> Self {
        Self::new()
    }
}

/// What of a direction outlives an active phase of the relay: flags
/// written by the direction itself, read by the opposite direction and the
/// orchestrator (but `unanswered`, see there). (Atomics, not `Cell`s: the
/// relay future must be `Send`.)
#[derive(Default)]
pub(crate) struct HalfState {
    /// The EOF was passed on: this direction has ended cleanly.
    eof: AtomicBool,
    /// Waits on a drained source and holds nothing.
    parked: AtomicBool,
    /// The last burst was bulk: the next one splices at once, without the
    /// small read first (splice pump only).
    bulk: AtomicBool,
    /// Client→backend only: bytes moved that the backend has not answered
    /// yet (a request in flight). Set by this direction, cleared by the
    /// opposite one when it moves the answer: the one flag both write.
    unanswered: AtomicBool,
}

impl HalfState {
    pub(crate) fn ended(&self) -> bool {
        self.eof.load(Relaxed)
    }

    pub(crate) fn parked(&self) -> bool {
        self.parked.load(Relaxed)
    }

    pub(crate) fn bulk(&self) -> bool {
        self.bulk.load(Relaxed)
    }

    pub(crate) fn unanswered(&self) -> bool {
        self.unanswered.load(Relaxed)
    }

    pub(crate) fn set_bulk(&self, on: bool) {
        self.bulk.store(on, Relaxed);
    }
}

/// One direction of a relay (linkerd's half-duplex): it reads `src`,
/// writes `dst`, counts what it moves and owns `state`. Built afresh for
/// each active phase. Its copy buffer or pipe lease is a local of the pump
/// that runs it, so it lives exactly as long as that pump: a parked
/// connection, a direction that ended or one that fell back from splice
/// holds none.
pub(crate) struct HalfDuplex<'a> {
    pub(crate) dir: Dir,
    pub(crate) src: &'a TcpStream,
    pub(crate) dst: &'a TcpStream,
    /// The channel's `sent` (to the backend) or `rcvd` (to the client).
    pub(crate) counter: &'a AtomicU64,
    /// Shared by both directions: when bytes last moved.
    pub(crate) act: &'a Activity,
    pub(crate) state: &'a HalfState,
    /// The opposite direction's state, read only.
    pub(crate) peer: &'a HalfState,
}

/// One read of the source into a buffer.
pub(crate) enum Chunk {
    Eof,
    /// Read this much (maybe 0) and the socket is empty: readiness is
    /// cleared, so the next wait blocks until new bytes arrive.
    Drained(usize),
    /// Filled the buffer: more may be queued.
    Full(usize),
    Interrupted,
    Err(io::Error),
}

impl HalfDuplex<'_> {
    /// Whether this direction has ended cleanly (in an earlier phase).
    pub(crate) fn ended(&self) -> bool {
        self.state.ended()
    }

    /// Mark this direction ended; the opposite one then also watches our
    /// source for errors (see `wait_source`).
    pub(crate) fn set_ended(&self) {
        self.state.eof.store(true, Relaxed);
    }

    /// Count `n` bytes delivered to `dst` and reset the idle clock.
    pub(crate) fn moved(&self, n: usize) {
        self.counter.fetch_add(n as u64, Relaxed);
        self.act.touch();
        // Client bytes are unanswered until the backend's next bytes.
        match self.dir {
            Dir::ToBackend => self.state.unanswered.store(true, Relaxed),
            Dir::ToClient => self.peer.unanswered.store(false, Relaxed),
        }
    }

    /// Half-close: pass the EOF on; the other direction keeps flowing.
    pub(crate) fn pass_eof(&self) {
        // The other direction ended already: the relay closes both sockets
        // now, and close sends the same FIN (nothing is left unread), so
        // the shutdown would be one syscall for nothing.
        if self.peer.ended() {
            return;
        }
        let _ = socket2::SockRef::from(self.dst).shutdown(Shutdown::Write);
    }

    /// Read the source once. A read that returns less than the buffer
    /// proves the socket drained (TCP hands out everything queued up to the
    /// length asked), so readiness is cleared without the extra read that
    /// would only say EAGAIN: a small message costs one read and one write.
    pub(crate) fn read(&self, buf: &mut [u8]) -> Chunk {
        use std::io::Read;
        let src = self.src;
        let mut got = 0;
        let r = src.try_io(Interest::READABLE, || {
            let n = (&*socket2::SockRef::from(src)).read(buf)?;
            got = n;
            if n > 0 && n < buf.len() {
                // Tell tokio the socket is drained: it clears the readiness
                // (an edge from data arriving meanwhile is not lost).
                Err(io::ErrorKind::WouldBlock.into())
            } else {
                Ok(n)
            }
        });
        match r {
            Ok(0) => Chunk::Eof,
            Ok(n) => Chunk::Full(n),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => Chunk::Drained(got),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => Chunk::Interrupted,
            Err(e) => Chunk::Err(e),
        }
    }

    /// Wait until `src` is readable, watching `dst` for errors only when
    /// needed.
    ///
    /// While the opposite direction is still running it reads `dst`, and a
    /// reset `dst` is readable, so that direction sees the error; it also
    /// watches `dst` itself while blocked writing. So until it has ended we
    /// wait on `src` alone: the smallest future, which is what an idle
    /// connection holds. Once it has ended, `dst` is watched too. While
    /// this wait is pending the direction is marked parked (it holds
    /// nothing).
    pub(crate) async fn wait_source(&self) -> Result<(), PumpError> {
        let peer_done = &self.peer.eof;
        let parked = &self.state.parked;
        let src = self.src;
        if !peer_done.load(Relaxed) {
            // `poll_read_ready` keeps the waker in the socket's own read
            // slot: no waiter node in our future. Only this direction polls
            // `src` for reading, and both directions share one task.
            let r = std::future::poll_fn(|cx| {
                if peer_done.load(Relaxed) {
                    parked.store(false, Relaxed);
                    return Poll::Ready(None);
                }
                let r = src.poll_read_ready(cx);
                parked.store(r.is_pending(), Relaxed);
                r.map(Some)
            })
            .await;
            if let Some(r) = r {
                return r.map_err(PumpError::Src);
            }
        }
        Box::pin(wait_readable(src, self.dst)).await
    }

    /// Wait until `dst` is writable, or fail if `src` reports an error
    /// first (a clogged destination must not hide a reset source). Callers
    /// box it: only a connection whose destination is full pays for it.
    pub(crate) fn writable(&self) -> impl Future<Output = Result<(), PumpError>> + '_ {
        wait_writable(self.dst, self.src)
    }

    /// Write all of `data` to `dst`, waiting (and watching `src`) while
    /// `dst` is full.
    pub(crate) async fn write_all(&self, mut data: &[u8]) -> Result<(), PumpError> {
        let dst = self.dst;
        while !data.is_empty() {
            match dst.try_write(data) {
                Ok(0) => return Err(PumpError::Dst(io::ErrorKind::WriteZero.into())),
                Ok(n) => data = &data[n..],
                // Boxed: only a connection whose destination is full pays for it.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    Box::pin(self.writable()).await?
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(PumpError::Dst(e)),
            }
        }
        Ok(())
    }
}

/// Wait until `src` is readable, or fail if `dst` reports an error first
/// (its peer reset while we wait on a quiet source).
async fn wait_readable(src: &TcpStream, dst: &TcpStream) -> Result<(), PumpError> {
    tokio::select! {
        r = src.readable() => r.map_err(PumpError::Src),
        r = dst.ready(Interest::ERROR) => Err(PumpError::Dst(r.err().unwrap_or_else(|| take_error(dst)))),
    }
}

async fn wait_writable(dst: &TcpStream, src: &TcpStream) -> Result<(), PumpError> {
    tokio::select! {
        r = dst.writable() => r.map_err(PumpError::Dst),
        r = src.ready(Interest::ERROR) => Err(PumpError::Src(r.err().unwrap_or_else(|| take_error(src)))),
    }
}

fn take_error(s: &TcpStream) -> io::Error {
    match s.take_error() {
        Ok(Some(e)) => e,
        _ => io::Error::from(io::ErrorKind::ConnectionReset),
    }
}

#[cfg(test)]
mod tests;
