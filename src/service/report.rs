//! The one health-outcome path: every check result, passive connect failure
//! and DNS verdict enters through [`Service::report`], which writes the
//! channel's health and, when the channel flips, reacts once: the log line
//! with its reason, closing sessions (`on-down=shutdown`,
//! `on-up=shutdown-backup`) and waking clients that wait for a channel.
//! A successful connect never flips a channel: the data path calls
//! [`Channel::connect_ok`] directly (one atomic, no lock), and it ends only
//! a Layer-4 failure streak ([`Evidence`]).

use std::sync::atomic::Ordering::Relaxed;

use tracing::{debug, info, warn};

use super::Service;
use crate::config::Failback;
use crate::config::monitor::Probe;
use crate::health::{Evidence, Facts, Outcome, Reason, Recovery};
use crate::pool::{Admin, Candidate, EndCause};

/// How a channel flipped, with the why for the log line.
enum Flip {
    Up(Recovery),
    Down(Reason),
}

impl Service {
    /// Feed one outcome about the channel at `at`; returns `Some(up)` when
    /// it flipped.
    pub(crate) fn report(&self, at: &Candidate, outcome: Outcome) -> Option<bool> {
        let passive = matches!(outcome, Outcome::ConnectFailed(_));
        let r = self.apply_outcome(at, outcome);
        if self.fleet.enabled() {
            // Fleet mode: a prober publishes what changed; a follower asks
            // the prober to re-probe after a failed connect.
            self.fleet.reported.notify_one();
            if passive {
                self.fleet.passive.notify_one();
            }
        }
        r
    }

    /// A health check's result: what it learned about the server (its
    /// replication lag) is recorded on the channel, then its outcome goes
    /// through [`Service::report`]. Probes only return findings; this is
    /// where they reach the pool.
    pub(crate) fn report_check(
        &self,
        at: &Candidate,
        outcome: Outcome,
        facts: Facts,
    ) -> Option<bool> {
        let Facts {
            lag,
            replication_broken,
        } = facts;
        if let Some(lag) = lag {
            at.channel.set_lag(lag);
        }
        if let Some(broken) = replication_broken {
            let ch = &at.channel;
            if ch.set_replication_broken(broken.is_some()) {
                if let Some(r) = broken {
                    warn!(channel = %ch.target(), name = %ch.name(), group = at.group,
                        "the serving primary's own replication is broken ({r}): it keeps serving; \
                         re-point or rebuild the old primary before any switchover back");
                }
            }
        }
        self.report(at, outcome)
    }

    fn apply_outcome(&self, at: &Candidate, outcome: Outcome) -> Option<bool> {
        let ch = &at.channel;
        let flip = match outcome {
            Outcome::Checked { result, took } => self.checked(at, result, took)?,
            Outcome::Full { detail, took } => {
                ch.record_full(took);
                if ch.set_full(true) {
                    info!(listener = %self.cfg.name, channel = %ch.target(), name = %ch.name(), group = at.group,
                          "channel full (not down): {detail}");
                }
                return None;
            }
            Outcome::CatchingUp { detail, took } => {
                self.catching_up(at, &detail, took);
                return None;
            }
            Outcome::ConnectFailed(detail) => self.connect_failed(at, detail)?,
            Outcome::Down(reason) => {
                if !ch.force_down(reason.clone()) {
                    return None;
                }
                Flip::Down(reason)
            }
            Outcome::Up(why) => {
                if why == Recovery::Fleet {
                    // The prober's checks passed: that also ends full and
                    // catching up (a follower runs no checks of its own).
                    ch.set_full(false);
                    ch.clear_catching_up(std::time::Instant::now());
                }
                if !ch.force_up() {
                    return None;
                }
                Flip::Up(why)
            }
        };
        Some(self.flipped(at, flip))
    }

    /// A check's result through rise/fall; the flip, if any.
    fn checked(
        &self,
        at: &Candidate,
        result: Result<(), Reason>,
        took: std::time::Duration,
    ) -> Option<Flip> {
        let ch = &at.channel;
        ch.record_check(result.is_ok(), took);
        // Only a pass proves a replica caught up; a failure keeps it
        // ineligible until `fall` takes it down.
        let started = std::time::Instant::now().checked_sub(took);
        if result.is_ok() && started.is_some_and(|t| ch.clear_catching_up(t)) {
            // At the level its `catching up` was told at: routine backlog
            // under writes is debug, both ways.
            if ch.catch_up_told.swap(false, Relaxed) {
                info!(listener = %self.cfg.name, channel = %ch.target(), name = %ch.name(), group = at.group, "channel caught up");
            } else {
                debug!(listener = %self.cfg.name, channel = %ch.target(), name = %ch.name(), group = at.group, "channel caught up");
            }
        }
        if ch.set_full(false) {
            info!(listener = %self.cfg.name, channel = %ch.target(), name = %ch.name(), group = at.group, "channel no longer full");
        }
        if ch.admin() != Admin::Enabled {
            return None; // the operator took over meanwhile
        }
        if let Err(r) = &result {
            debug!(listener = %self.cfg.name, channel = %ch.target(), name = %ch.name(), "check failed: {r}");
        }
        let reason = result.as_ref().err().cloned();
        match (
            ch.observe(result, self.check_evidence(), &self.rise_fall),
            reason,
        ) {
            (Some(true), _) => Some(Flip::Up(Recovery::ChecksPass)),
            (Some(false), Some(r)) => Some(Flip::Down(r)),
            _ => None,
        }
    }

    /// A replica behind its primary: up, not eligible; logged at info
    /// only when it matters to clients.
    fn catching_up(&self, at: &Candidate, detail: &str, took: std::time::Duration) {
        let ch = &at.channel;
        ch.record_full_or_catching_up(took);
        let now = std::time::Instant::now();
        let started = now.checked_sub(took).unwrap_or(now);
        let new = ch.set_catching_up(Reason::Check(detail.to_string()), started);
        // A backup a few transactions behind a healthy primary is
        // routine under writes (debug); it is news, once, when no
        // earlier group can take the clients.
        let needed = !self
            .pool
            .groups()
            .iter()
            .take(at.group)
            .any(|g| g.channels.iter().any(|c| c.eligible()));
        let tell = if new {
            ch.catch_up_told.store(needed, Relaxed);
            needed
        } else {
            needed && !ch.catch_up_told.swap(true, Relaxed)
        };
        if tell {
            info!(listener = %self.cfg.name, channel = %ch.target(), name = %ch.name(), group = at.group,
                  "channel catching up (not down, not eligible): {detail}");
        } else if new {
            debug!(listener = %self.cfg.name, channel = %ch.target(), name = %ch.name(), group = at.group,
                   "channel catching up (not down, not eligible): {detail}");
        }
    }

    /// A failed connect from real traffic (passive detection); the flip,
    /// if any.
    fn connect_failed(&self, at: &Candidate, detail: String) -> Option<Flip> {
        let ch = &at.channel;
        ch.connect_failures.fetch_add(1, Relaxed);
        self.reverify_backups(at.group);
        debug!(channel = %ch.target(), name = %ch.name(), group = at.group, "connect failed: {detail}");
        let reason = Reason::Connect(detail);
        let flipped = if self.cfg.autodisable {
            ch.force_down(reason.clone())
        } else {
            ch.observe(Err(reason.clone()), Evidence::Transport, &self.rise_fall) == Some(false)
        };
        self.reprobe.notify_one();
        flipped.then_some(Flip::Down(reason))
    }

    /// A channel of `group` failed: the groups after it in the walk that a
    /// replication check watches may have received more than they applied
    /// since their last check, so none takes a client before a check
    /// started from now on finds it caught up (re-probed at once).
    fn reverify_backups(&self, group: usize) {
        if !self
            .cfg
            .monitor
            .as_ref()
            .is_some_and(|m| m.watches_replication())
        {
            return;
        }
        let groups = self.pool.groups();
        // Later in the walk, which starts at the floor (`switchover`) and
        // wraps around.
        let (n, floor) = (groups.len(), self.pool.floor());
        let rank = |g: usize| (g + n - floor.min(n.saturating_sub(1))) % n.max(1);
        for (g, grp) in groups.iter().enumerate() {
            if rank(g) <= rank(group) {
                continue;
            }
            for c in &grp.channels {
                if c.mark_unverified(Reason::Check(
                    "catching up: not checked since a primary failed".into(),
                )) {
                    debug!(listener = %self.cfg.name, channel = %c.target(), name = %c.name(), group = g, "backup to be re-verified");
                }
            }
        }
        self.reprobe.notify_one();
    }

    /// What a failed check says: a monitor that only connects sees Layer 4;
    /// one that speaks the protocol sees the application.
    fn check_evidence(&self) -> Evidence {
        let app = self
            .cfg
            .monitor
            .as_ref()
            .is_some_and(|m| m.checks.iter().any(|c| !matches!(c.probe, Probe::Connect)));
        if app {
            Evidence::Application
        } else {
            Evidence::Transport
        }
    }

    /// The reactions to a flip, once per flip.
    fn flipped(&self, at: &Candidate, flip: Flip) -> bool {
        let (ch, listener, group, index) = (&at.channel, &self.cfg.name, at.group, at.index);
        match flip {
            Flip::Up(why) => {
                info!(%listener, channel = %ch.target(), name = %ch.name(), group, index, "channel up (ENA): {why}");
                if group == 0
                    && self.cfg.on_up_shutdown_backup
                    && self.cfg.failback == Failback::Auto
                {
                    for g in self.pool.groups().iter().skip(1) {
                        for c in &g.channels {
                            c.close_sessions(EndCause::BackupShutdown);
                        }
                    }
                    info!(%listener, "on-up=shutdown-backup: backup sessions closed");
                }
                true
            }
            Flip::Down(reason) => {
                if reason == Reason::SelfLoop {
                    warn!(%listener, channel = %ch.target(), name = %ch.name(), group, index, "channel down (dis): {reason}");
                } else {
                    info!(%listener, channel = %ch.target(), name = %ch.name(), group, index, "channel down (dis): {reason}");
                }
                if self.cfg.fence {
                    // A hung writer runs what is queued in its socket
                    // buffers when it resumes: reset its sessions now,
                    // before anything else takes its clients.
                    let n = ch.relaying();
                    ch.close_sessions(EndCause::Down);
                    if n > 0 {
                        info!(%listener, channel = %ch.target(), name = %ch.name(), group, index, "fenced: {n} sessions reset on the channel that went down");
                    }
                } else if self.cfg.on_down_shutdown {
                    ch.close_sessions(EndCause::Down);
                }
                // A follower takes its backups' state from the prober too.
                if !matches!(reason, Reason::Fleet(_)) {
                    self.reverify_backups(group);
                }
                false
            }
        }
    }
}
