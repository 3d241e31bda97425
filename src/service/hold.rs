//! The operator's hold (`spin on [MAX]` / `spin off`): every new client of
//! the listener waits in a FIFO queue, even while channels are up, until
//! the operator releases them (or MAX passes). Released clients connect in
//! arrival order: one baton goes down the queue, and each client passes it
//! on once its connect is done (or after [`HOLD_STEP`], so one slow backend
//! does not stall the queue). Clients arriving while the queue drains join
//! its tail, so nobody overtakes a held client.
//!
//! Writers: the control socket (on/off), the state file at start; held
//! clients add and remove themselves. The data path reads one atomic per
//! connection ([`Hold::engaged`]); the queue's mutex is taken only while
//! the hold is on or draining. Shared (one `Arc`) by the Services that a
//! reload makes for the same listener, so a reload neither loses the hold
//! nor its queue.

use std::collections::VecDeque;
use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::*};
use std::time::{Duration, SystemTime};

use tokio::sync::{Notify, oneshot};
use tokio::time::{Instant, sleep, sleep_until};

/// A released client passes the baton on after this long even if its
/// connect is still pending.
pub(crate) const HOLD_STEP: Duration = Duration::from_millis(100);
/// `spin on` without MAX and without `--spin`.
pub(crate) const DEFAULT_HOLD_MAX: Duration = Duration::from_secs(30);
/// The longest hold accepted.
pub(crate) const MAX_HOLD: Duration = Duration::from_secs(24 * 3600);

#[derive(Debug, Default)]
struct Queue {
    /// Held until this instant (`None`: the hold is off).
    until: Option<(Instant, SystemTime)>,
    waiters: VecDeque<(u64, oneshot::Sender<()>)>,
    /// A released client is connecting; it passes the baton when done.
    baton_out: bool,
    next_id: u64,
}

/// One listener's operator hold.
#[derive(Debug, Default)]
pub(crate) struct Hold {
    /// The hold is on or its queue is draining: new clients queue.
    engaged: AtomicBool,
    /// Clients waiting in the queue now.
    held: AtomicU64,
    q: Mutex<Queue>,
    /// The end of the hold moved: waiters re-read it.
    moved: Notify,
}

fn lock(m: &Mutex<Queue>) -> std::sync::MutexGuard<'_, Queue> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Why a held client did not get its turn.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Left;

impl Hold {
    /// Whether a new client must queue (one atomic load: the data path's
    /// whole cost while no hold is set).
    pub(crate) fn engaged(&self) -> bool {
        self.engaged.load(Acquire)
    }

    /// Clients held right now.
    pub(crate) fn held(&self) -> u64 {
        self.held.load(Relaxed)
    }

    /// The wall-clock end of the hold, if it is on.
    pub(crate) fn until(&self) -> Option<SystemTime> {
        let mut q = lock(&self.q);
        self.expire_locked(&mut q);
        q.until.map(|(_, wall)| wall)
    }

    /// Turn the hold on (or move its end) for `max` from now.
    pub(crate) fn on(&self, max: Duration) {
        let mut q = lock(&self.q);
        q.until = Some((Instant::now() + max, SystemTime::now() + max));
        self.engaged.store(true, Release);
        self.moved.notify_waiters();
    }

    /// Turn the hold on until a wall-clock time (state file at start); a
    /// time already past changes nothing.
    pub(crate) fn on_until(&self, wall: SystemTime) {
        if let Ok(left) = wall.duration_since(SystemTime::now()) {
            self.on(left.min(MAX_HOLD));
        }
    }

    /// Turn the hold off: the held clients go, in arrival order. Returns
    /// whether it was on and how many clients were held.
    pub(crate) fn off(&self) -> (bool, u64) {
        let mut q = lock(&self.q);
        self.expire_locked(&mut q);
        let was = q.until.take().is_some();
        let n = q.waiters.len() as u64;
        if !q.baton_out {
            self.pass_locked(&mut q);
        }
        (was, n)
    }

    /// MAX passed: the same as `off`.
    fn expire_locked(&self, q: &mut Queue) {
        if q.until.is_some_and(|(t, _)| Instant::now() >= t) {
            q.until = None;
            if !q.baton_out {
                self.pass_locked(q);
            }
        }
    }

    /// Give the baton to the first client still waiting, unless the hold
    /// is on (again); with nobody left and the hold off, disengage.
    fn pass_locked(&self, q: &mut Queue) {
        if let Some((t, _)) = q.until {
            if Instant::now() < t {
                q.baton_out = false;
                return;
            }
            q.until = None;
        }
        while let Some((_, tx)) = q.waiters.pop_front() {
            self.held.fetch_sub(1, Relaxed);
            if tx.send(()).is_ok() {
                q.baton_out = true;
                return;
            }
        }
        q.baton_out = false;
        self.engaged.store(false, Release);
    }

    fn pass(&self) {
        let mut q = lock(&self.q);
        self.pass_locked(&mut q);
    }

    /// Wait for this client's turn (call when [`Hold::engaged`]). Resolves
    /// at once when the hold has ended and nobody is queued; `Err(Left)`
    /// when `gone` resolves first (the client left: it leaves the queue).
    /// The [`Turn`] must be kept until the client's connect is done.
    pub(crate) async fn wait(&self, gone: impl Future<Output = ()>) -> Result<Turn<'_>, Left> {
        let (ticket, until) = {
            let mut q = lock(&self.q);
            self.expire_locked(&mut q);
            if q.until.is_none() && q.waiters.is_empty() && !q.baton_out {
                return Ok(Turn { hold: None });
            }
            let (tx, rx) = oneshot::channel();
            let id = q.next_id;
            q.next_id += 1;
            q.waiters.push_back((id, tx));
            self.held.fetch_add(1, Relaxed);
            (Ticket { hold: self, id, rx }, q.until.map(|(t, _)| t))
        };
        ticket.wait(until, gone).await
    }
}

/// A place in the queue; leaving it (dropped before its turn) removes it,
/// or passes on a baton it was just given.
struct Ticket<'a> {
    hold: &'a Hold,
    id: u64,
    rx: oneshot::Receiver<()>,
}

impl<'a> Ticket<'a> {
    async fn wait(
        mut self,
        mut until: Option<Instant>,
        gone: impl Future<Output = ()>,
    ) -> Result<Turn<'a>, Left> {
        let mut gone = std::pin::pin!(gone);
        loop {
            let moved = self.hold.moved.notified();
            let expiry = async {
                match until {
                    Some(t) => sleep_until(t).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                r = &mut self.rx => {
                    if r.is_ok() {
                        // Consumed: the Ticket's drop has nothing to undo.
                        self.id = u64::MAX;
                        return Ok(Turn { hold: Some(self.hold) });
                    }
                    // The sender is never dropped unsent; treat as released.
                    return Ok(Turn { hold: None });
                }
                _ = &mut gone => return Err(Left),
                _ = moved => {
                    until = lock(&self.hold.q).until.map(|(t, _)| t);
                }
                _ = expiry => {
                    let mut q = lock(&self.hold.q);
                    self.hold.expire_locked(&mut q);
                    until = q.until.map(|(t, _)| t);
                }
            }
        }
    }
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        if self.id == u64::MAX {
            return;
        }
        let mut q = lock(&self.hold.q);
        if let Some(i) = q.waiters.iter().position(|(id, _)| *id == self.id) {
            q.waiters.remove(i);
            self.hold.held.fetch_sub(1, Relaxed);
        } else if matches!(self.rx.try_recv(), Ok(())) {
            // Given the baton but leaving without using it: pass it on.
            self.hold.pass_locked(&mut q);
        }
    }
}

/// A released client's turn: passes the baton to the next held client
/// when dropped.
pub(crate) struct Turn<'a> {
    hold: Option<&'a Hold>,
}

impl Drop for Turn<'_> {
    fn drop(&mut self) {
        if let Some(h) = self.hold.take() {
            h.pass();
        }
    }
}

impl Turn<'_> {
    /// Run `connect` in this turn: the baton passes when it is done or
    /// after [`HOLD_STEP`], whichever comes first.
    pub(crate) async fn run<F: Future>(self, connect: F) -> F::Output {
        if self.hold.is_none() {
            return connect.await;
        }
        let mut connect = std::pin::pin!(connect);
        tokio::select! {
            r = &mut connect => {
                drop(self);
                return r;
            }
            _ = sleep(HOLD_STEP) => {}
        }
        drop(self);
        connect.await
    }
}

#[cfg(test)]
mod tests;
