//! The role state machine of one service's fleet task, pure (time is
//! passed in) and table-tested: which role the instance has, whether it
//! probes, which verdicts it takes, and when losing etcd makes it probe
//! alone.
//!
//! - `Alone` at start and after etcd was unreachable for `fallback`:
//!   probes by itself, keeps serving and keeps its operator state.
//! - `Prober` after winning the campaign: probes and publishes.
//! - `Follower` of a leader: it keeps probing by itself until the first
//!   verdict of that leader's term arrives (so a rejoin keeps its local
//!   verdicts until the fleet's are there: no flapping), then follows.
//!   A new leader is followed without pausing: the last verdicts stand
//!   until the new prober's arrive.

use std::time::Duration;

use tokio::time::Instant;

use super::verdict::{Leader, Verdict};
use crate::service::fleet::Role;

#[derive(Debug, Clone)]
pub(crate) struct Standing {
    role: Role,
    leader: Option<Leader>,
    /// A follower has applied a verdict of its leader's term.
    synced: bool,
    /// The last time etcd answered.
    last_ok: Option<Instant>,
    fallback: Duration,
}

impl Standing {
    pub(crate) fn new(fallback: Duration) -> Standing {
        Standing {
            role: Role::Alone,
            leader: None,
            synced: false,
            last_ok: None,
            fallback,
        }
    }

    pub(crate) fn role(&self) -> Role {
        self.role
    }

    pub(crate) fn leader(&self) -> Option<&Leader> {
        self.leader.as_ref()
    }

    /// Whether the monitor probes (everything but a synced follower).
    pub(crate) fn probing(&self) -> bool {
        !(self.role == Role::Follower && self.synced)
    }

    /// etcd answered.
    pub(crate) fn contact(&mut self, now: Instant) {
        self.last_ok = Some(now);
    }

    /// This instance won the campaign.
    pub(crate) fn won(&mut self, me: Leader, now: Instant) {
        self.contact(now);
        self.role = Role::Prober;
        self.leader = Some(me);
        self.synced = false;
    }

    /// Another instance leads: follow it. A follower that was synced stays
    /// synced (the last verdicts stand); anyone else probes until the
    /// first verdict of this leader's term arrives.
    pub(crate) fn follow(&mut self, leader: Leader, now: Instant) {
        self.contact(now);
        self.synced = self.role == Role::Follower && self.synced;
        self.role = Role::Follower;
        self.leader = Some(leader);
    }

    /// Whether to apply `v` (a follower, from its leader's term); the
    /// first such verdict syncs a follower.
    pub(crate) fn take(&mut self, v: &Verdict) -> bool {
        let ok = self.role == Role::Follower && self.leader.as_ref().is_some_and(|l| l.wrote(v));
        if ok {
            self.synced = true;
        }
        ok
    }

    /// When losing etcd makes this instance probe alone (not when it
    /// already does).
    pub(crate) fn fallback_at(&self, now: Instant) -> Option<Instant> {
        if self.role == Role::Alone {
            return None;
        }
        Some(self.last_ok.unwrap_or(now) + self.fallback)
    }

    /// etcd did not answer: alone once it has been gone for `fallback`.
    /// True when that changed the role.
    pub(crate) fn unreachable(&mut self, now: Instant) -> bool {
        match self.fallback_at(now) {
            Some(at) if now >= at => {
                self.role = Role::Alone;
                self.leader = None;
                self.synced = false;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests;
