//! Places for connections that may be slow (control sessions, metrics
//! scrapes), preferring the newest: when every place is taken, a newcomer
//! evicts the holder that has been waiting for its input longest, instead
//! of being refused. So peers that trickle bytes, or sit idle, cannot keep
//! an operator or a scraper out. A holder marks itself waiting (for a
//! request or a command line) or busy (being answered); busy holders are
//! never evicted, and a waiting one only after `grace`. Each holder task
//! owns its [`Slot`]; the table is only touched at acquire, mark and drop.

use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

/// A fixed number of places.
#[derive(Debug)]
pub struct Slots {
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
    /// Since when this holder waits for its input; `None` while busy.
    waiting_since: Option<Instant>,
    evict: CancellationToken,
}

impl Slots {
    /// `cap` places; a waiting holder may be evicted once it has waited
    /// `grace`.
    pub fn new(cap: usize, grace: Duration) -> Arc<Slots> {
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
    pub fn acquire(self: &Arc<Self>) -> Option<Slot> {
        let now = Instant::now();
        let mut t = self.table();
        if t.held.len() >= self.cap {
            let (_, victim) = t
                .held
                .iter()
                .enumerate()
                .filter_map(|(i, h)| {
                    h.waiting_since
                        .filter(|since| now.duration_since(*since) >= self.grace)
                        .map(|since| (since, i))
                })
                .min()?;
            t.held.swap_remove(victim).evict.cancel();
        }
        let id = t.next;
        t.next += 1;
        let evicted = CancellationToken::new();
        t.held.push(Held {
            id,
            waiting_since: Some(now),
            evict: evicted.clone(),
        });
        Some(Slot {
            slots: Arc::clone(self),
            id,
            evicted,
        })
    }

    /// Places taken now.
    pub fn held(&self) -> usize {
        self.table().held.len()
    }

    fn mark(&self, id: u64, waiting_since: Option<Instant>) {
        if let Some(h) = self.table().held.iter_mut().find(|h| h.id == id) {
            h.waiting_since = waiting_since;
        }
    }
}

/// One taken place; given back on drop.
#[derive(Debug)]
pub struct Slot {
    slots: Arc<Slots>,
    id: u64,
    evicted: CancellationToken,
}

impl Slot {
    /// Waiting for input from now on (evictable after the grace).
    pub fn waiting(&self) {
        self.slots.mark(self.id, Some(Instant::now()));
    }

    /// Being answered: not evictable until [`Slot::waiting`] again.
    pub fn busy(&self) {
        self.slots.mark(self.id, None);
    }

    /// Completes once a newer connection took this place.
    pub async fn evicted(&self) {
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
