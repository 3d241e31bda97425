//! The relay orchestrator: both directions of one connection until both
//! have ended, in active phases and idle parking, then the close passed on.
//! The pumps (`buffered`, `splice`) move the bytes of one `HalfDuplex`
//! each; the state that outlives a phase (`Link`) lives here, and each
//! direction writes only its own half of it.
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

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::AtomicU64;
use std::task::Poll;
use std::time::Duration;

use tokio::net::TcpStream;

use crate::pool::channel::{Ends, Kill, SessionKill};

use super::half::{Activity, Dir, HalfDuplex, HalfState, PumpError};
use super::{buffered, splice};

/// How a relay ended.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum End {
    /// Both directions reached EOF.
    Done,
    /// The client side failed (reset/error); the backend was reset.
    ClientError,
    /// The backend side failed; the client was reset.
    BackendError,
    /// `-T` expired.
    Idle,
    /// Ended by the balancer (on-down, on-up, a fence, a switchover): the
    /// caller resets both sides.
    Killed,
}

/// What a relay needs besides the two sockets.
pub(crate) struct RelayOpts<'a> {
    pub(crate) sent: &'a AtomicU64,
    pub(crate) rcvd: &'a AtomicU64,
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) dump: bool,
    /// Zero-copy `splice(2)` relay (off with `--no-splice`; never with `-p`).
    pub(crate) splice: bool,
}

/// What outlives an active phase: when bytes last moved, and each
/// direction's flags. This is all an idle connection keeps besides the
/// sockets.
struct Link {
    act: Activity,
    to_backend: HalfState,
    to_client: HalfState,
}

impl Link {
    /// Nothing in flight: both directions wait on drained sources and the
    /// backend answered the client's last bytes (or nothing moved yet).
    /// Ending the session now cuts no request in half.
    fn quiet(&self) -> bool {
        self.to_backend.parked() && self.to_client.parked() && !self.to_backend.unanswered()
    }
}

/// How an active phase of the relay ended.
enum Phase {
    Finished(Result<(), (Dir, PumpError)>),
    /// Both sources are drained: nothing in flight in either direction.
    Parked,
}

/// Run the relay to the end, or until a request in `ends` made from now on
/// asks it to end
/// ([`End::Killed`]: the caller resets both sides). The caller drops the
/// sockets afterwards.
///
/// The pumps run in an "active" future that lives on the heap only while
/// bytes move. Once both directions wait on drained sources it is dropped
/// and the connection parks on a tiny wait for either socket to become
/// readable: an idle connection holds only this function's few words.
pub(crate) async fn relay(
    client: &TcpStream,
    backend: &TcpStream,
    o: &RelayOpts<'_>,
    ends: &Ends,
) -> End {
    let link = Link {
        act: match o.idle_timeout {
            Some(_) => Activity::new(),
            None => Activity::untracked(),
        },
        to_backend: HalfState::default(),
        to_client: HalfState::default(),
    };
    let run = async {
        loop {
            if let Phase::Finished(r) = Box::pin(active(client, backend, o, &link)).await {
                return r;
            }
            // Parked (both directions alive and drained) until the task
            // is woken. The active phase ended in this same poll with both
            // sources just found not ready, so each socket's read slot
            // holds this task's waker: any readiness, including an error or
            // EOF, wakes us, and the next active phase asks the sockets
            // itself (asking here too cost two readiness checks per
            // message). A wake-up for another reason (`-T`'s timer, the
            // caller's kill) costs one active phase that parks again.
            let mut first = true;
            std::future::poll_fn(|_| {
                if std::mem::take(&mut first) {
                    Poll::Pending
                } else {
                    Poll::Ready(())
                }
            })
            .await;
        }
    };
    let idle = async {
        match o.idle_timeout {
            // Boxed: only connections with `-T` pay for the timer's state.
            Some(d) => Box::pin(idle_expired(client, backend, &link.act, d)).await,
            None => std::future::pending().await,
        }
    };
    let res = tokio::select! {
        biased;
        r = run => r,
        _ = idle => return End::Idle,
        () = Ended { kill: SessionKill::new(ends), link: &link, when_quiet: false } => return End::Killed,
    };
    finish(client, backend, res)
}

pin_project_lite::pin_project! {
    /// Resolves when the session is to end: at once on [`Kill::Now`]; on
    /// [`Kill::WhenQuiet`] once the [link is quiet](Link::quiet), which is
    /// asked on every wake-up of the task (the relay's own traffic, the
    /// next answer of the backend, wakes it), then for [`Kill::Now`] too.
    struct Ended<'a, 'k> {
        #[pin]
        kill: SessionKill<'k>,
        link: &'a Link,
        when_quiet: bool,
    }
}

impl Future for Ended<'_, '_> {
    type Output = ();
    fn poll(self: Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> Poll<()> {
        let mut this = self.project();
        loop {
            match this.kill.as_mut().poll(cx) {
                Poll::Ready(Kill::Now) => return Poll::Ready(()),
                Poll::Ready(Kill::WhenQuiet) => {
                    *this.when_quiet = true;
                    this.kill.as_mut().rearm();
                }
                Poll::Pending if *this.when_quiet && this.link.quiet() => {
                    return Poll::Ready(());
                }
                Poll::Pending => return Poll::Pending,
            }
        }
    }
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
async fn active(client: &TcpStream, backend: &TcpStream, o: &RelayOpts<'_>, link: &Link) -> Phase {
    let to_backend = HalfDuplex {
        dir: Dir::ToBackend,
        src: client,
        dst: backend,
        counter: o.sent,
        act: &link.act,
        state: &link.to_backend,
        peer: &link.to_client,
    };
    let to_client = HalfDuplex {
        dir: Dir::ToClient,
        src: backend,
        dst: client,
        counter: o.rcvd,
        act: &link.act,
        state: &link.to_client,
        peer: &link.to_backend,
    };
    let both = async { tokio::try_join!(direction(&to_backend, o), direction(&to_client, o)) };
    // Polled after `both` on every wake-up: both directions parked means
    // nothing is in flight and neither holds a buffer or a pipe.
    let parked = std::future::poll_fn(|_| {
        if link.to_backend.parked() && link.to_client.parked() {
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
pub(crate) fn finish(
    client: &TcpStream,
    backend: &TcpStream,
    res: Result<(), (Dir, PumpError)>,
) -> End {
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
async fn direction(h: &HalfDuplex<'_>, o: &RelayOpts<'_>) -> Result<(), (Dir, PumpError)> {
    if h.ended() {
        return Ok(());
    }
    let fail = |e| (h.dir, e);
    let spliced =
        o.splice && !o.dump && splice::pump(h).await.map_err(fail)? == splice::Outcome::Done;
    if !spliced {
        buffered::pump(h, o.dump).await.map_err(fail)?;
    }
    // The opposite direction may be waiting on its source alone; make it
    // look again so it now also watches our source for errors.
    h.set_ended();
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

#[cfg(test)]
mod tests;
