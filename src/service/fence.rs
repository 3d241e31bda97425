//! Fencing: on a listener whose groups are one writer and its replicas (a
//! MySQL primary and its backups), sessions never live on two groups at
//! once. When traffic moves to another group, every session on the other
//! groups is reset (SO_LINGER 0, so statements still queued in a hung
//! server's socket buffers die with the connection, and none of them is
//! acknowledged to a client) before the first client of the new group
//! sends a byte.
//!
//! The state is one word: the serving group and an epoch that counts the
//! moves. A connection takes a ticket (the epoch) before it selects; once
//! connected it is admitted at once when its group is the serving one (one
//! atomic load: the whole cost for a fencing listener's connections). A
//! connection to another group either moves the fence, when nothing moved
//! since its ticket, or was selected before a move and is turned away, so
//! a connect that completes late on the old group never reaches it.
//!
//! In fleet mode the move is the fleet's (see [`fleet`]): a connect that
//! would move the fence waits for the fleet to grant its group instead.
//!
//! Writers: connections admitted here (under `moving`, an async mutex
//! taken only to move), the fleet fence task in fleet mode. Shared by the
//! Services a reload makes for the same listener.

use std::sync::atomic::{AtomicU64, Ordering::*};
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};
use tracing::{info, warn};

use crate::pool::Group;

pub(crate) mod fleet;

/// No group has served yet.
const NONE: u32 = u32::MAX;
/// A move is under way: nobody is admitted without the mutex.
const MOVING: u32 = u32::MAX - 1;
/// How long a fence waits for the sessions it reset to close. They close
/// as soon as their task runs; this bounds a runtime too busy to run them.
pub(crate) const FENCE_WAIT: Duration = Duration::from_secs(1);
/// Between two looks at the sessions still open.
const POLL: Duration = Duration::from_millis(2);

/// What a connected client may do.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Admit {
    /// Relay: its group serves (now, or since it moved the fence).
    Go,
    /// Its group stopped serving after it selected: close this backend
    /// connection unused and select again.
    Stale,
    /// Fleet mode: the fleet did not grant its group in time (members
    /// still fencing, etcd away): close this backend connection unused;
    /// the client waits like one with nothing eligible (`--spin`) or is
    /// closed.
    Held,
}

/// One listener's fence (see the module doc).
#[derive(Debug)]
pub(crate) struct Fence {
    /// `epoch << 32 | serving group` (or [`NONE`] / [`MOVING`]).
    state: AtomicU64,
    moving: tokio::sync::Mutex<()>,
    /// Fleet mode's part.
    pub(crate) fleet: fleet::FleetGate,
}

impl Default for Fence {
    fn default() -> Self {
        Fence {
            state: AtomicU64::new(pack(0, NONE)),
            moving: tokio::sync::Mutex::new(()),
            fleet: fleet::FleetGate::default(),
        }
    }
}

fn pack(epoch: u32, group: u32) -> u64 {
    (u64::from(epoch) << 32) | u64::from(group)
}

fn unpack(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

fn index(group: usize) -> u32 {
    u32::try_from(group).unwrap_or(MOVING - 1).min(MOVING - 1)
}

impl Fence {
    /// Taken before a connection selects its candidates.
    #[cfg(test)]
    pub(crate) fn ticket(&self) -> u32 {
        unpack(self.state.load(Acquire)).0
    }

    /// [`Fence::ticket`], or None in fleet mode while no group serves here
    /// (the fleet fences, or this member fenced itself): then the
    /// connection waits for [`Fence::fleet_settled`] before it connects
    /// anywhere. One load while a group serves.
    pub(crate) fn ticket_unless_fleet_fencing(&self) -> Option<u32> {
        let (epoch, serving) = unpack(self.state.load(Acquire));
        if (serving == NONE || serving == MOVING) && self.fleet.on() {
            return None;
        }
        Some(epoch)
    }

    /// Fleet mode: wait, at most [`fleet::FleetGate::wait`], until a group
    /// serves here; false when none did in time.
    pub(crate) async fn fleet_settled(&self) -> bool {
        let deadline = Instant::now() + self.fleet.wait();
        loop {
            let granted = self.fleet.granted.notified();
            tokio::pin!(granted);
            granted.as_mut().enable();
            if self.serving().is_some() || !self.fleet.on() {
                return true;
            }
            tokio::select! {
                _ = granted => {}
                _ = sleep_until(deadline) => return false,
            }
        }
    }

    /// The group that serves now, if one has and no move is under way.
    pub(crate) fn serving(&self) -> Option<usize> {
        match unpack(self.state.load(Acquire)).1 {
            NONE | MOVING => None,
            g => Some(g as usize),
        }
    }

    /// Whether `group` serves now (the fast path of [`Fence::admit`]).
    pub(crate) fn serves(&self, group: usize) -> bool {
        unpack(self.state.load(Acquire)).1 == index(group)
    }

    /// May a client connected to `group`, which selected holding `ticket`,
    /// relay? Moves the fence to `group` when nothing moved since the
    /// ticket: the sessions of every other group are reset and closed
    /// first (bounded by [`FENCE_WAIT`]).
    pub(crate) async fn admit(
        &self,
        listener: &str,
        groups: &[std::sync::Arc<Group>],
        group: usize,
        ticket: u32,
    ) -> Admit {
        if self.serves(group) {
            return Admit::Go;
        }
        if self.fleet.on() {
            return self.admit_fleet(group, ticket).await;
        }
        let g = index(group);
        let _moving = self.moving.lock().await;
        let (epoch, serving) = unpack(self.state.load(Acquire));
        if serving == g {
            return Admit::Go;
        }
        if epoch != ticket {
            return Admit::Stale;
        }
        let next = epoch.wrapping_add(1);
        self.state.store(pack(next, MOVING), Release);
        let (reset, left) = reset_others(groups, Some(group)).await;
        self.state.store(pack(next, g), Release);
        if serving != NONE {
            if left > 0 {
                warn!(%listener, "fence: {left} of {reset} sessions on other groups still open after {} ms; group {group} serves anyway",
                      FENCE_WAIT.as_millis());
            }
            info!(%listener, "fenced: {reset} sessions on group {serving} reset before group {group} took a client");
        }
        Admit::Go
    }

    /// Fleet mode: wait, at most [`fleet::FleetGate::wait`], until the
    /// fleet grants `group` (Go), grants another group after this
    /// connection selected (Stale), or neither (Held).
    async fn admit_fleet(&self, group: usize, ticket: u32) -> Admit {
        let g = index(group);
        let deadline = Instant::now() + self.fleet.wait();
        loop {
            let granted = self.fleet.granted.notified();
            tokio::pin!(granted);
            granted.as_mut().enable();
            let (epoch, serving) = unpack(self.state.load(Acquire));
            if serving == g {
                return Admit::Go;
            }
            if serving != NONE && serving != MOVING && epoch != ticket {
                return Admit::Stale;
            }
            if !self.fleet.on() {
                // The fleet task stopped meanwhile (a reload without
                // fleet mode): select again; the standalone fence decides.
                return Admit::Stale;
            }
            self.fleet.asked.notify_one();
            tokio::select! {
                _ = granted => {}
                _ = sleep_until(deadline) => return Admit::Held,
            }
        }
    }

    /// Fleet mode, the fleet task: stop admitting anyone, reset every
    /// session on the groups other than `keep` (all of them with None) and
    /// wait for them to close (bounded by [`FENCE_WAIT`]). The sessions
    /// reset and those still open after the wait.
    pub(crate) async fn fleet_fence(
        &self,
        groups: &[std::sync::Arc<Group>],
        keep: Option<usize>,
    ) -> (u32, u32) {
        let _moving = self.moving.lock().await;
        let (epoch, serving) = unpack(self.state.load(Acquire));
        if serving != MOVING {
            self.state
                .store(pack(epoch.wrapping_add(1), MOVING), Release);
        }
        reset_others(groups, keep).await
    }

    /// Fleet mode, the fleet task: `group` serves (every live member has
    /// fenced); the connects waiting for it go.
    pub(crate) async fn fleet_grant(&self, group: usize) {
        let _moving = self.moving.lock().await;
        let (epoch, _) = unpack(self.state.load(Acquire));
        self.state
            .store(pack(epoch.wrapping_add(1), index(group)), Release);
        self.fleet.granted.notify_waiters();
    }
}

/// Reset every session on the groups other than `keep` (all with None)
/// and wait, at most [`FENCE_WAIT`], for them to close: how many were
/// reset and how many are still open.
async fn reset_others(groups: &[std::sync::Arc<Group>], keep: Option<usize>) -> (u32, u32) {
    let others = || {
        groups
            .iter()
            .enumerate()
            .filter(move |(i, _)| Some(*i) != keep)
            .flat_map(|(_, grp)| grp.channels.iter())
    };
    let live = || others().map(|c| c.relaying()).sum::<u32>();
    let reset = live();
    if reset > 0 {
        for c in others() {
            c.close_sessions(crate::pool::EndCause::Fence);
        }
        let deadline = Instant::now() + FENCE_WAIT;
        while live() > 0 && Instant::now() < deadline {
            sleep(POLL).await;
        }
    }
    (reset, live())
}

#[cfg(test)]
mod tests;
