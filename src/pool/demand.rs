//! A group started on demand (`on_empty:`) and stopped when idle
//! (`on_idle:`): its state and counters. Pure bookkeeping under one short
//! mutex: the data path reaches it only when the group has no eligible
//! channel (see [`Demand::holds`] and the walk in `select`); the commands
//! are run by the service layer (its `demand` module).
//!
//! A start that timed out pauses the group: for a while it is passed over
//! (its clients go on to the next group, or are closed) instead of
//! starting again for the next client. The pause is the start's timeout,
//! doubled for each further failed start in a row, at most
//! [`MAX_PAUSE`]; a start that gets a channel eligible ends the series.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use crate::config::demand::OnDemand;

/// Longest pause after failed starts.
pub(crate) const MAX_PAUSE: Duration = Duration::from_secs(300);

/// Where a group started on demand is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Phase {
    /// Not started by us, stopped, or a start gave up.
    Idle,
    /// `on_empty` runs or ran; clients are held until `deadline`.
    Starting { since: Instant, deadline: Instant },
    /// The last start got a channel eligible.
    Running,
    /// `on_idle` runs.
    Stopping,
}

#[derive(Debug)]
struct Inner {
    phase: Phase,
    last_start_ms: Option<u64>,
    failed_in_row: u32,
    /// After a failed start: passed over until then.
    pause_until: Option<Instant>,
    /// The idle clock: last time the group had a connection (or a start),
    /// the connection total seen then, and whether `on_idle` is due once
    /// the clock runs out (cleared when it ran: once per idle period).
    last_active: Instant,
    seen_total: u64,
    armed: bool,
}

/// One group's on-demand state; kept across a reload that leaves the
/// group's name, `on_empty` and `on_idle` as they were.
#[derive(Debug)]
pub(crate) struct Demand {
    pub(crate) cfg: OnDemand,
    inner: Mutex<Inner>,
    pub(crate) starts: AtomicU64,
    pub(crate) start_failures: AtomicU64,
    pub(crate) stops: AtomicU64,
    pub(crate) stop_failures: AtomicU64,
}

/// What a client that found the group empty does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Demanded {
    /// Wait until `deadline` (a start is under way).
    Wait(Instant),
    /// Wait until `deadline`, and run `on_empty`: this client asked first.
    Start(Instant),
    /// Go on (no `on_empty`, or the group is paused after failed starts).
    Pass,
}

/// What `show json` and the metrics show of a group started on demand.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct DemandView {
    pub(crate) state: &'static str,
    pub(crate) starts: u64,
    pub(crate) start_failures: u64,
    pub(crate) stops: u64,
    pub(crate) stop_failures: u64,
    pub(crate) last_start_ms: Option<u64>,
}

impl Demand {
    pub(crate) fn new(cfg: OnDemand) -> Demand {
        Demand {
            cfg,
            inner: Mutex::new(Inner {
                phase: Phase::Idle,
                last_start_ms: None,
                failed_in_row: 0,
                pause_until: None,
                last_active: Instant::now(),
                seen_total: 0,
                // From load on: an idle group is stopped once, even if
                // balance never started it.
                armed: true,
            }),
            starts: AtomicU64::new(0),
            start_failures: AtomicU64::new(0),
            stops: AtomicU64::new(0),
            stop_failures: AtomicU64::new(0),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a client that finds no channel of the group eligible waits
    /// here (instead of going on to the next group).
    pub(crate) fn holds(&self) -> bool {
        if self.cfg.on_empty.is_none() {
            return false;
        }
        let now = Instant::now();
        let g = self.lock();
        match g.phase {
            Phase::Starting { deadline, .. } => now < deadline,
            _ => g.pause_until.is_none_or(|p| now >= p),
        }
    }

    /// A client found the group empty: join the start under way, start
    /// it, or pass.
    pub(crate) fn demand(&self) -> Demanded {
        let Some(e) = &self.cfg.on_empty else {
            return Demanded::Pass;
        };
        let now = Instant::now();
        let mut g = self.lock();
        match g.phase {
            Phase::Starting { deadline, .. } if now < deadline => return Demanded::Wait(deadline),
            // Timed out; its task is about to say so.
            Phase::Starting { .. } => return Demanded::Pass,
            // `on_idle` runs: start once it is done (the client looks
            // again within the hold's recheck).
            Phase::Stopping => return Demanded::Wait(now + e.timeout),
            _ if g.pause_until.is_some_and(|p| now < p) => return Demanded::Pass,
            _ => {}
        }
        let deadline = now + e.timeout;
        g.phase = Phase::Starting {
            since: now,
            deadline,
        };
        g.pause_until = None;
        g.last_active = now;
        g.armed = true;
        self.starts.fetch_add(1, Relaxed);
        Demanded::Start(deadline)
    }

    /// The start begun at `since` ended: a channel became eligible
    /// (`ready`), or the timeout passed. Returns the pause a failure set.
    pub(crate) fn started(&self, since: Instant, ready: bool) -> Option<Duration> {
        let now = Instant::now();
        let mut g = self.lock();
        if !matches!(g.phase, Phase::Starting { since: s, .. } if s == since) {
            return None;
        }
        g.last_active = now;
        if ready {
            g.phase = Phase::Running;
            g.failed_in_row = 0;
            g.last_start_ms = Some(now.duration_since(since).as_millis() as u64);
            return None;
        }
        g.phase = Phase::Idle;
        g.failed_in_row = g.failed_in_row.saturating_add(1);
        self.start_failures.fetch_add(1, Relaxed);
        let timeout = self.cfg.on_empty.as_ref().map_or(MAX_PAUSE, |e| e.timeout);
        let pause = pause(timeout, g.failed_in_row);
        g.pause_until = Some(now + pause);
        Some(pause)
    }

    /// The idle clock, read every tick by the idle watcher: `busy` (live
    /// connections) and `total` (connections ever, summed over the group's
    /// channels). True when `on_idle` is due now: the caller runs it and
    /// then calls [`Demand::stopped`].
    pub(crate) fn idle_due(&self, busy: bool, total: u64) -> bool {
        let Some(i) = &self.cfg.on_idle else {
            return false;
        };
        let now = Instant::now();
        let mut g = self.lock();
        let starting = matches!(g.phase, Phase::Starting { .. } | Phase::Stopping);
        if busy || total != g.seen_total || starting {
            g.seen_total = total;
            g.last_active = now;
            if !starting {
                g.armed = true;
            }
            return false;
        }
        if g.armed && now.duration_since(g.last_active) >= i.after {
            g.armed = false;
            g.phase = Phase::Stopping;
            return true;
        }
        false
    }

    /// `on_idle` ended (`ok`: exit status 0).
    pub(crate) fn stopped(&self, ok: bool) {
        let mut g = self.lock();
        if g.phase == Phase::Stopping {
            g.phase = Phase::Idle;
        }
        g.last_active = Instant::now();
        drop(g);
        self.stops.fetch_add(1, Relaxed);
        if !ok {
            self.stop_failures.fetch_add(1, Relaxed);
        }
    }

    pub(crate) fn phase(&self) -> Phase {
        self.lock().phase
    }

    pub(crate) fn view(&self) -> DemandView {
        let now = Instant::now();
        let g = self.lock();
        let state = match g.phase {
            Phase::Starting { .. } => "starting",
            Phase::Running => "running",
            Phase::Stopping => "stopping",
            Phase::Idle if g.pause_until.is_some_and(|p| now < p) => "paused",
            Phase::Idle => "idle",
        };
        DemandView {
            state,
            starts: self.starts.load(Relaxed),
            start_failures: self.start_failures.load(Relaxed),
            stops: self.stops.load(Relaxed),
            stop_failures: self.stop_failures.load(Relaxed),
            last_start_ms: g.last_start_ms,
        }
    }
}

/// The pause after the `n`-th failed start in a row: `timeout` doubled
/// `n - 1` times, at most [`MAX_PAUSE`].
pub(crate) fn pause(timeout: Duration, n: u32) -> Duration {
    let factor = 1u32 << n.saturating_sub(1).min(16);
    timeout.saturating_mul(factor).min(MAX_PAUSE)
}

#[cfg(test)]
mod tests;
