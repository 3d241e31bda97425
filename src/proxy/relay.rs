//! The buffered byte relay: both directions until both have ended.
//!
//! - EOF on one side → `shutdown(Write)` on the other; the other direction
//!   keeps flowing (half-close).
//! - A read error (reset) on one side → the other side is reset too
//!   (SO_LINGER 0), so a client never mistakes a reset for a clean end.
//! - A write error (peer gone) → the source side is reset.
//! - While a direction waits, it also watches the opposite socket for
//!   errors, so a reset is seen even while our writes are blocked.
//! - Buffers (and splice pipes) live in the relay's active phase only: once
//!   both directions wait on drained sources the connection parks and holds
//!   none.

use std::io;
use std::net::Shutdown;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::task::Poll;
use std::time::Duration;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::time::{Instant, sleep_until};

/// Size of the copy buffer used while data is in flight.
pub const BUF_SIZE: usize = 64 * 1024;

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub enum End {
    /// Both directions reached EOF.
    Done,
    /// The client side failed (reset/error); the backend was reset.
    ClientError,
    /// The backend side failed; the client was reset.
    BackendError,
    /// `-T` expired.
    Idle,
}

/// Which way bytes flow, for counters and the packet dump.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dir {
    ToBackend,
    ToClient,
}

/// What a relay needs besides the two sockets.
pub struct RelayOpts<'a> {
    pub sent: &'a AtomicU64,
    pub rcvd: &'a AtomicU64,
    pub idle_timeout: Option<Duration>,
    pub dump: bool,
    /// Zero-copy `splice(2)` relay (off with `--no-splice`; never with `-p`).
    pub splice: bool,
}

/// A direction's failure: which side broke.
#[derive(Debug)]
pub enum PumpError {
    /// Reading the source failed (it was reset).
    Src(io::Error),
    /// Writing the destination failed (it is gone).
    Dst(io::Error),
}

/// Tracks the last time bytes moved, for the idle timeout.
pub struct Activity {
    start: Instant,
    last_ms: AtomicU64,
}

impl Activity {
    pub fn new() -> Self {
        Activity {
            start: Instant::now(),
            last_ms: AtomicU64::new(0),
        }
    }
    pub fn touch(&self) {
        let ms = self.start.elapsed().as_millis() as u64;
        self.last_ms.store(ms, Relaxed);
    }
    /// Resolves once nothing moved for `idle`.
    pub async fn expired(&self, idle: Duration) {
        loop {
            let last = self.start + Duration::from_millis(self.last_ms.load(Relaxed));
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

/// What the two directions of one relay share.
#[derive(Default)]
pub struct Flags {
    /// A direction has ended cleanly (EOF passed on); by `Dir::index`.
    done: [AtomicBool; 2],
    /// A direction waits on a drained source and holds nothing.
    parked: [AtomicBool; 2],
}

impl Dir {
    fn index(self) -> usize {
        match self {
            Dir::ToBackend => 0,
            Dir::ToClient => 1,
        }
    }
}

/// How an active phase of the relay ended.
enum Phase {
    Finished(Result<(), (Dir, PumpError)>),
    /// Both sources are drained: nothing in flight in either direction.
    Parked,
}

/// Run the relay to the end. The caller drops the sockets afterwards.
///
/// The pumps run in an "active" future that lives on the heap only while
/// bytes move. Once both directions wait on drained sources it is dropped
/// and the connection parks on a tiny wait for either socket to become
/// readable: an idle connection holds only this function's few words.
pub async fn relay(client: &TcpStream, backend: &TcpStream, o: &RelayOpts<'_>) -> End {
    let act = Activity::new();
    let flags = Flags::default();
    let run = async {
        loop {
            if let Phase::Finished(r) = Box::pin(active(client, backend, o, &act, &flags)).await {
                return r;
            }
            // Parked (both directions alive and drained). Any readiness,
            // including an error or EOF, starts a new active phase.
            std::future::poll_fn(|cx| {
                let c = client.poll_read_ready(cx).is_ready();
                let b = backend.poll_read_ready(cx).is_ready();
                if c || b {
                    Poll::Ready(())
                } else {
                    Poll::Pending
                }
            })
            .await;
        }
    };
    let idle = async {
        match o.idle_timeout {
            // Boxed: only connections with `-T` pay for the timer's state.
            Some(d) => Box::pin(idle_expired(client, backend, &act, d)).await,
            None => std::future::pending().await,
        }
    };
    let res = tokio::select! {
        r = run => r,
        _ = idle => return End::Idle,
    };
    finish(client, backend, res)
}

/// Resolves once nothing moved for `idle`. While a write waits on a slow
/// reader, bytes still drain from our send queue without any call of ours:
/// queued data whose acks still advance is not idle.
async fn idle_expired(client: &TcpStream, backend: &TcpStream, act: &Activity, idle: Duration) {
    let sample = || {
        [
            crate::sys::send_progress(client),
            crate::sys::send_progress(backend),
        ]
    };
    let mut last = sample();
    loop {
        act.expired(idle).await;
        let now = sample();
        let draining = now.iter().zip(&last).any(|(n, l)| match (n, l) {
            (Some((acked, true)), Some((before, _))) => acked != before,
            _ => false,
        });
        if !draining {
            return;
        }
        last = now;
        act.touch();
    }
}

/// Both directions until the relay ends, or until both park.
async fn active(
    client: &TcpStream,
    backend: &TcpStream,
    o: &RelayOpts<'_>,
    act: &Activity,
    flags: &Flags,
) -> Phase {
    let both = async {
        tokio::try_join!(
            direction(client, backend, Dir::ToBackend, o.sent, act, o, flags),
            direction(backend, client, Dir::ToClient, o.rcvd, act, o, flags),
        )
    };
    // Polled after `both` on every wake-up: both directions parked means
    // nothing is in flight and neither holds a buffer or a pipe.
    let parked = std::future::poll_fn(|_| {
        if flags.parked[0].load(Relaxed) && flags.parked[1].load(Relaxed) {
            Poll::Ready(())
        } else {
            Poll::Pending
        }
    });
    tokio::select! {
        biased;
        r = both => Phase::Finished(r.map(|_| ())),
        _ = parked => Phase::Parked,
    }
}

/// Map a pump result to the close we pass on; sets SO_LINGER 0 on the side
/// that must see a reset.
pub fn finish(client: &TcpStream, backend: &TcpStream, res: Result<(), (Dir, PumpError)>) -> End {
    match res {
        Ok(()) => End::Done,
        // The client broke: reading it failed (client→backend) or writing it
        // failed (backend→client).
        Err((Dir::ToBackend, PumpError::Src(_))) | Err((Dir::ToClient, PumpError::Dst(_))) => {
            crate::sys::set_linger_zero(backend);
            End::ClientError
        }
        Err((Dir::ToClient, PumpError::Src(_))) | Err((Dir::ToBackend, PumpError::Dst(_))) => {
            crate::sys::set_linger_zero(client);
            End::BackendError
        }
    }
}

/// One direction on the splice path or the buffered one.
async fn direction(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Dir,
    counter: &AtomicU64,
    act: &Activity,
    o: &RelayOpts<'_>,
    flags: &Flags,
) -> Result<(), (Dir, PumpError)> {
    let mine = &flags.done[dir.index()];
    if mine.load(Relaxed) {
        return Ok(());
    }
    let spliced = o.splice
        && !o.dump
        && super::splice::pump(src, dst, dir, counter, act, flags).await?
            == super::splice::Outcome::Done;
    if !spliced {
        pump(src, dst, dir, counter, act, o.dump, flags).await?;
    }
    // The opposite direction may be waiting on its source alone; make it
    // look again so it now also watches our source for errors.
    mine.store(true, Relaxed);
    repoll().await;
    Ok(())
}

/// Pending once, with the task woken at once, so every branch of the relay
/// is polled again. (`tokio::task::yield_now` defers its wake-up until the
/// scheduler parks, which costs an eventfd write per connection.)
async fn repoll() {
    let mut yielded = false;
    std::future::poll_fn(|cx| {
        if yielded {
            Poll::Ready(())
        } else {
            yielded = true;
            cx.waker().wake_by_ref();
            Poll::Pending
        }
    })
    .await
}

/// Copy `src` → `dst` until EOF, then shut down writing on `dst`.
pub(crate) async fn pump(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Dir,
    counter: &AtomicU64,
    act: &Activity,
    dump: bool,
    flags: &Flags,
) -> Result<(), (Dir, PumpError)> {
    // Lives in the relay's active phase only: an idle connection parks and
    // drops it (see `relay`), so it is not released between messages.
    let mut buf: Option<Box<[u8]>> = None;
    loop {
        wait_source(src, dst, dir, flags)
            .await
            .map_err(|e| (dir, e))?;
        let b = buf.get_or_insert_with(|| vec![0u8; BUF_SIZE].into_boxed_slice());
        let n = match read_chunk(src, b) {
            Chunk::Eof => {
                pass_eof(dst);
                return Ok(());
            }
            Chunk::Drained(n) | Chunk::Full(n) => n,
            Chunk::Interrupted => continue,
            Chunk::Err(e) => return Err((dir, PumpError::Src(e))),
        };
        let Some(data) = b.get(..n).filter(|d| !d.is_empty()) else {
            continue;
        };
        if dump {
            crate::proxy::dump::print(dir, data);
        }
        write_all(dst, src, data).await.map_err(|e| (dir, e))?;
        counter.fetch_add(n as u64, Relaxed);
        act.touch();
    }
}

/// Half-close: pass the EOF on; the other direction keeps flowing.
pub(crate) fn pass_eof(dst: &TcpStream) {
    let _ = socket2::SockRef::from(dst).shutdown(Shutdown::Write);
}

/// One read of `src` into `buf`.
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

/// Read once. A read that returns less than the buffer proves the socket
/// drained (TCP hands out everything queued up to the length asked), so
/// readiness is cleared without the extra read that would only say EAGAIN:
/// a small message costs one read and one write.
pub(crate) fn read_chunk(src: &TcpStream, buf: &mut [u8]) -> Chunk {
    use std::io::Read;
    let mut got = 0;
    let r = src.try_io(Interest::READABLE, || {
        let n = (&*socket2::SockRef::from(src)).read(buf)?;
        got = n;
        if n > 0 && n < buf.len() {
            // Tell tokio the socket is drained: it clears the readiness (an
            // edge from data arriving meanwhile is not lost).
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

/// Wait until `src` is readable, watching `dst` for errors only when needed.
///
/// While the opposite direction is still running it reads `dst`, and a
/// reset `dst` is readable, so that direction sees the error; it also
/// watches `dst` itself while blocked writing. So until it has ended we
/// wait on `src` alone: the smallest future, which is what an idle
/// connection holds. Once it has ended, `dst` is watched too. While this
/// wait is pending the direction is marked parked (it holds nothing).
pub async fn wait_source(
    src: &TcpStream,
    dst: &TcpStream,
    dir: Dir,
    flags: &Flags,
) -> Result<(), PumpError> {
    let peer_done = &flags.done[1 - dir.index()];
    let parked = &flags.parked[dir.index()];
    if !peer_done.load(Relaxed) {
        // `poll_read_ready` keeps the waker in the socket's own read slot:
        // no waiter node in our future. Only this direction polls `src`
        // for reading, and both directions share one task.
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
    Box::pin(wait_readable(src, dst)).await
}

/// Wait until `src` is readable, or fail if `dst` reports an error first
/// (its peer reset while we wait on a quiet source).
pub async fn wait_readable(src: &TcpStream, dst: &TcpStream) -> Result<(), PumpError> {
    tokio::select! {
        r = src.readable() => r.map_err(PumpError::Src),
        r = dst.ready(Interest::ERROR) => Err(PumpError::Dst(r.err().unwrap_or_else(|| take_error(dst)))),
    }
}

/// Wait until `dst` is writable, or fail if `src` reports an error first (a
/// clogged destination must not hide a reset source).
pub async fn wait_writable(dst: &TcpStream, src: &TcpStream) -> Result<(), PumpError> {
    tokio::select! {
        r = dst.writable() => r.map_err(PumpError::Dst),
        r = src.ready(Interest::ERROR) => Err(PumpError::Src(r.err().unwrap_or_else(|| take_error(src)))),
    }
}

pub(crate) async fn write_all(
    dst: &TcpStream,
    src: &TcpStream,
    mut data: &[u8],
) -> Result<(), PumpError> {
    while !data.is_empty() {
        match dst.try_write(data) {
            Ok(0) => return Err(PumpError::Dst(io::ErrorKind::WriteZero.into())),
            Ok(n) => data = &data[n..],
            // Boxed: only a connection whose destination is full pays for it.
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                Box::pin(wait_writable(dst, src)).await?
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(PumpError::Dst(e)),
        }
    }
    Ok(())
}

fn take_error(s: &TcpStream) -> io::Error {
    match s.take_error() {
        Ok(Some(e)) => e,
        _ => io::Error::from(io::ErrorKind::ConnectionReset),
    }
}
