//! Places for connections that may be slow (control sessions, metrics
//! scrapes), preferring the newest: when every place is taken, a newcomer
//! evicts the holder that has been waiting for its input longest, instead
//! of being refused. So peers that trickle bytes, or sit idle, cannot keep
//! an operator or a scraper out. A holder marks itself waiting (for a
//! request or a command line), partial (part of its input arrived: a
//! real client sends a line at once, a trickler sits here) or busy (being
//! answered). Partial holders go first, at once; waiting ones only after
//! `grace`; busy ones never. Each holder task owns its [`Slot`]; the table
//! is only touched at acquire, mark and drop.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A fixed number of places.
#[derive(Debug)]
pub(crate) struct Slots {
    cap: usize,
    grace: Duration,
    table: Mutex<Table>,
}

#[derive(Debug, Default)]
struct Table {
    next: u64,
    held: Vec<Held>,
}

#[derive(Debug)]
struct Held {
    id: u64,
    state: State,
    /// It has been answered at least once (it sent a whole request).
    proven: bool,
    evict: CancellationToken,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Waiting for input since then.
    Waiting(Instant),
    /// Waiting since then, and part of the input arrived.
    Partial(Instant),
    Busy,
}

impl Slots {
    /// `cap` places; a waiting holder may be evicted once it has waited
    /// `grace`.
    pub(crate) fn new(cap: usize, grace: Duration) -> Arc<Slots> {
        Arc::new(Slots {
            cap,
            grace,
            table: Mutex::new(Table::default()),
        })
    }

    fn table(&self) -> MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A place for a new connection, waiting from now. When all are taken,
    /// the holder waiting longest (at least `grace`) is evicted (its
    /// [`Slot::evicted`] completes) and its place given to the newcomer;
    /// `None` if no holder can be evicted.
    pub(crate) fn acquire(self: &Arc<Self>) -> Option<Slot> {
        self.acquire_with(false)
    }

    /// [`Slots::acquire`] for a newcomer that has proved itself (it sent a
    /// whole request at once, or it is root): a holder that has never been
    /// answered may be evicted for it however short its wait (a holder
    /// that has, only past the grace). So places taken faster than the
    /// grace, by peers that never send a request, cannot keep it out.
    pub(crate) fn acquire_now(self: &Arc<Self>) -> Option<Slot> {
        self.acquire_with(true)
    }

    fn acquire_with(self: &Arc<Self>, proven: bool) -> Option<Slot> {
        let now = Instant::now();
        let mut t = self.table();
        if t.held.len() >= self.cap {
            let victim = victim(&t.held, now, self.grace, proven)?;
            t.held.swap_remove(victim).evict.cancel();
        }
        let id = t.next;
        t.next += 1;
        let evicted = CancellationToken::new();
        t.held.push(Held {
            id,
            state: State::Waiting(now),
            proven: false,
            evict: evicted.clone(),
        });
        Some(Slot {
            slots: Arc::clone(self),
            id,
            evicted,
        })
    }

    /// Places taken now.
    #[cfg(test)]
    pub(crate) fn held(&self) -> usize {
        self.table().held.len()
    }

    fn mark(&self, id: u64, f: impl FnOnce(State) -> State) {
        if let Some(h) = self.table().held.iter_mut().find(|h| h.id == id) {
            h.state = f(h.state);
            h.proven |= h.state == State::Busy;
        }
    }
}

/// The index of the holder to evict: the partial one waiting longest, else
/// the waiting one waiting longest if past `grace` (for a proven newcomer,
/// also one never answered, however short its wait).
fn victim(held: &[Held], now: Instant, grace: Duration, for_proven: bool) -> Option<usize> {
    let oldest = |partial: bool| {
        held.iter()
            .enumerate()
            .filter_map(|(i, h)| match h.state {
                State::Partial(since) if partial => Some((since, i)),
                State::Waiting(since)
                    if !partial
                        && (now.duration_since(since) >= grace || for_proven && !h.proven) =>
                {
                    Some((since, i))
                }
                _ => None,
            })
            .min()
            .map(|(_, i)| i)
    };
    oldest(true).or_else(|| oldest(false))
}

/// One taken place; given back on drop.
#[derive(Debug)]
pub(crate) struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evicted: CancellationToken,
}

impl Slot {
    /// Waiting for input from now on (evictable after the grace).
    pub(crate) fn waiting(&self) {
        let now = Instant::now();
        self.slots.mark(self.id, |_| State::Waiting(now));
    }

    /// Part of the input arrived (and the rest has not): evictable at once,
    /// before any holder that is merely waiting.
    pub(crate) fn partial(&self) {
        self.slots.mark(self.id, |s| match s {
            State::Waiting(since) => State::Partial(since),
            other => other,
        });
    }

    /// Being answered: not evictable until [`Slot::waiting`] again, and
    /// from now on protected from [`Slots::acquire_now`] within the grace.
    pub(crate) fn busy(&self) {
        self.slots.mark(self.id, |_| State::Busy);
    }

    /// Whether a newer connection took this place.
    pub(crate) fn is_evicted(&self) -> bool {
        self.evicted.is_cancelled()
    }

    /// Completes once a newer connection took this place.
    pub(crate) async fn evicted(&self) {
        self.evicted.cancelled().await
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut t = self.slots.table();
        if let Some(i) = t.held.iter().position(|h| h.id == self.id) {
            t.held.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests;
