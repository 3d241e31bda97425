//! One backend destination: where it points, its operator state, its
//! health verdict and its counters.
//!
//! Who writes what (one writer per field):
//! - the control socket writes operator state (`admin`, `maxc`, `weight`)
//!   and the target (`assign`; DNS re-resolution too);
//! - health (`up`, rise/fall streaks, last reason) changes only through
//!   `Service::report` (monitor, passive detection, DNS) and the operator's
//!   `enable`, serialized by a small per-channel mutex that is never held
//!   across `.await` and never taken on the success path;
//! - the data path writes counters through [`ConnGuard`] and atomics.

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering::*};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::Notify;
use tokio::sync::futures::Notified;

use super::select::Backend;
use crate::atomic_enum::{AtomicEnum, u8_enum};
use crate::config::{Host, ProxyVersion};
use crate::health::{Evidence, Reason, RiseFall, RiseFallParams};

/// Operator state, written only by the control socket (and the state file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    Enabled,
    /// Hard-disabled (`DIS`): only an operator re-enables it.
    Disabled,
    /// No new connections; live ones continue.
    Drain,
}

u8_enum!(Admin {
    Enabled = 0,
    Disabled = 1,
    Drain = 2,
});

/// The open failure streak, kept so a successful connect can close a
/// Layer-4 one without taking the health mutex.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Streak {
    None,
    /// Only Layer-4 failures (refused, timed out) so far.
    Transport,
    /// Some failure seen at the application level: a connect proves nothing.
    Application,
}

/// The PROXY header a channel's connects send (see [`Channel::proxy_protocol`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum SendProxy {
    Off,
    V1,
    V2,
}

u8_enum!(SendProxy {
    Off = 0,
    V1 = 1,
    V2 = 2,
});

u8_enum!(Streak {
    None = 0,
    Transport = 1,
    Application = 2,
});

/// Where a channel points. Swapped whole by `assign` and re-resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// Resolved addresses, tried in order. Empty when the name did not resolve.
    pub(crate) addrs: Vec<SocketAddr>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// The last health result, as `show json`'s `last_reason` shows it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) enum LastResult {
    /// Nothing seen since start or the operator's `enable` (shown empty).
    #[default]
    None,
    /// The last check passed (shown `ok`).
    Passed,
    /// The last check or connect failed, or why the channel was taken down.
    Failed(Reason),
}

impl fmt::Display for LastResult {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LastResult::None => Ok(()),
            LastResult::Passed => f.write_str("ok"),
            LastResult::Failed(r) => r.fmt(f),
        }
    }
}

/// Health bookkeeping behind the channel's mutex.
#[derive(Debug, Default)]
pub(crate) struct HealthState {
    pub(crate) rf: RiseFall,
    pub(crate) last: LastResult,
    pub(crate) last_change: Option<Instant>,
    /// When the channel was last marked catching up: only a check started
    /// later may clear it.
    pub(crate) catch_up_since: Option<Instant>,
}

/// One backend destination.
pub(crate) struct Channel {
    /// Its name, unique in the listener (see `crate::config::names`):
    /// what operators, the state file and every front end call it.
    name: Box<str>,
    target: ArcSwap<Target>,
    admin: AtomicEnum<Admin>,
    up: AtomicBool,
    maxc: AtomicU32,
    weight: AtomicU32,
    /// The weight the configuration gives (HAProxy's "initial" weight).
    initial_weight: AtomicU32,
    /// Health checks run for this channel (`enable|disable health`); off,
    /// the monitor skips it and it counts as up.
    checked: AtomicBool,
    /// Live connections (including connects in progress).
    conns: AtomicU32,
    /// Sessions past their connect, relaying (counted on fencing
    /// listeners only: see [`Channel::relaying`]).
    relaying: AtomicU32,
    pub(crate) total: AtomicU64,
    /// Bytes sent to the backend.
    pub(crate) sent: AtomicU64,
    /// Bytes received from the backend.
    pub(crate) rcvd: AtomicU64,
    pub(crate) connect_failures: AtomicU64,
    /// Health checks that passed / failed (written by the monitor).
    pub(crate) checks_passed: AtomicU64,
    pub(crate) checks_failed: AtomicU64,
    /// Duration of the last health check, in microseconds.
    pub(crate) check_micros: AtomicU64,
    /// Checks that found the server full (MySQL 1040/1129).
    pub(crate) checks_full: AtomicU64,
    /// The last check found the server full: with `maxc` set the channel
    /// takes no new clients (they spill like at a full `maxc`); with
    /// `full_holds` neither (clients spin until it has room).
    full: AtomicBool,
    /// A full server holds new clients even without `maxc` (the
    /// listener spins: waiting beats the server's "too many connections").
    full_holds: AtomicBool,
    /// The PROXY header its connects (and checks) send first; written at
    /// build, reload and `create`.
    proxy: AtomicEnum<SendProxy>,
    /// A replica that has not applied everything it received (or not been
    /// checked since its primary failed): up, but not eligible yet.
    catching_up: AtomicBool,
    /// The catching-up state was logged at info (it mattered to clients).
    pub(crate) catch_up_told: AtomicBool,
    /// A serving primary whose own replication (from the primary it
    /// replaced) is broken: it serves on, but no switchover goes back.
    replication_broken: AtomicBool,
    /// Replication lag in seconds from the last check, -1 when unknown.
    lag_secs: AtomicI64,
    /// The open failure streak (see [`Streak`]).
    failing: AtomicEnum<Streak>,
    health: Mutex<HealthState>,
    /// Wakes clients spinning for an eligible channel.
    eligible: Arc<Notify>,
    /// Asks this channel's live sessions to end (`on-down=shutdown`,
    /// `on-up=shutdown-backup`, a fence, a switchover); each relay waits
    /// on it.
    sessions: Ends,
}

/// Why the balancer ended a channel's sessions (the connection log's
/// termination state).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum EndCause {
    /// The channel went down (`on-down=shutdown`, or a fencing listener's
    /// channel that went down).
    Down,
    /// A group-0 channel came back (`on-up=shutdown-backup`).
    BackupShutdown,
    /// A fence moved traffic to another group.
    Fence,
    /// An operator's command (`shutdown sessions server`, a switchover).
    Operator,
}

u8_enum!(EndCause {
    Down = 0,
    BackupShutdown = 1,
    Fence = 2,
    Operator = 3,
});

/// Requests to end a channel's sessions: counted, and notified to the
/// relays waiting on them ([`SessionKill`]).
#[derive(Debug)]
pub(crate) struct Ends {
    /// How many times the sessions were closed (low 32 bits) and asked
    /// to end once quiet, nothing in flight (high 32 bits, a switchover's
    /// ending): a waiting relay woken for its own traffic asks this (one
    /// load), not the notification (a lock).
    count: AtomicU64,
    notify: Notify,
    /// The cause of the latest request (read by a relay it ended).
    cause: AtomicEnum<EndCause>,
}

impl Default for Ends {
    fn default() -> Self {
        Ends {
            count: AtomicU64::new(0),
            notify: Notify::new(),
            cause: AtomicEnum::new(EndCause::Operator),
        }
    }
}

impl Ends {
    /// Why the latest request to end these sessions was made.
    pub(crate) fn cause(&self) -> EndCause {
        self.cause.load(Acquire)
    }
}

/// One `close_sessions` in [`Ends::count`]; [`QUIET`] one
/// `end_sessions_when_quiet`.
const CLOSE: u64 = 1;
const QUIET: u64 = 1 << 32;
const CLOSES: u64 = QUIET - 1;

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.target())
    }
}

/// The state shown by `show`: balance's three letters, plus drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ShownState {
    Ena,
    SoftDisabled,
    HardDisabled,
    Drain,
}

impl ShownState {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            ShownState::Ena => "ENA",
            ShownState::SoftDisabled => "dis",
            ShownState::HardDisabled => "DIS",
            ShownState::Drain => "drn",
        }
    }
}

impl Channel {
    pub(crate) fn new(
        name: impl Into<Box<str>>,
        target: Target,
        maxc: u32,
        weight: u32,
        eligible: Arc<Notify>,
    ) -> Arc<Channel> {
        let resolved = !target.addrs.is_empty();
        Arc::new(Channel {
            name: name.into(),
            target: ArcSwap::from_pointee(target),
            admin: AtomicEnum::new(Admin::Enabled),
            up: AtomicBool::new(resolved),
            maxc: AtomicU32::new(maxc),
            weight: AtomicU32::new(weight),
            initial_weight: AtomicU32::new(weight),
            checked: AtomicBool::new(true),
            conns: AtomicU32::new(0),
            relaying: AtomicU32::new(0),
            total: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            rcvd: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            checks_passed: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            check_micros: AtomicU64::new(0),
            checks_full: AtomicU64::new(0),
            full: AtomicBool::new(false),
            full_holds: AtomicBool::new(false),
            proxy: AtomicEnum::new(SendProxy::Off),
            catching_up: AtomicBool::new(false),
            catch_up_told: AtomicBool::new(false),
            replication_broken: AtomicBool::new(false),
            lag_secs: AtomicI64::new(-1),
            failing: AtomicEnum::new(Streak::None),
            health: Mutex::new(HealthState {
                rf: RiseFall {
                    up: resolved,
                    ..Default::default()
                },
                last: if resolved {
                    LastResult::None
                } else {
                    LastResult::Failed(Reason::Unresolved)
                },
                last_change: None,
                catch_up_since: None,
            }),
            eligible,
            sessions: Ends::default(),
        })
    }

    /// Resolves once [`Channel::close_sessions`] (or
    /// [`Channel::end_sessions_when_quiet`]) is called after this call,
    /// whether or not it was polled by then.
    #[cfg(test)]
    pub(crate) fn session_kill(&self) -> SessionKill<'_> {
        SessionKill::new(&self.sessions)
    }

    /// The requests to end this channel's sessions, for a relay to watch
    /// ([`SessionKill::new`]).
    pub(crate) fn ends(&self) -> &Ends {
        &self.sessions
    }

    /// Close every live session relayed to this channel.
    pub(crate) fn close_sessions(&self, cause: EndCause) {
        self.sessions.cause.store(cause, Release);
        self.sessions.count.fetch_add(CLOSE, Release);
        self.sessions.notify.notify_waiters();
    }

    /// Ask every live session to end as soon as nothing is in flight (at
    /// once for an idle one).
    pub(crate) fn end_sessions_when_quiet(&self, cause: EndCause) {
        self.sessions.cause.store(cause, Release);
        self.sessions.count.fetch_add(QUIET, Release);
        self.sessions.notify.notify_waiters();
    }

    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    /// The configured weight (a runtime `weight` does not change it).
    pub(crate) fn initial_weight(&self) -> u32 {
        self.initial_weight.load(Relaxed)
    }
    pub(crate) fn set_initial_weight(&self, w: u32) {
        self.initial_weight.store(w, Relaxed);
    }
    /// Whether health checks run for this channel.
    pub(crate) fn checked(&self) -> bool {
        self.checked.load(Relaxed)
    }
    pub(crate) fn set_checked(&self, on: bool) {
        self.checked.store(on, Relaxed);
    }
    /// Zero the counters (`reset`).
    pub(crate) fn reset_counters(&self) {
        self.sent.store(0, Relaxed);
        self.rcvd.store(0, Relaxed);
        self.total.store(0, Relaxed);
    }
    pub(crate) fn target(&self) -> Arc<Target> {
        self.target.load_full()
    }
    pub(crate) fn set_target(&self, t: Target) {
        self.target.store(Arc::new(t));
        self.eligible.notify_waiters();
    }
    pub(crate) fn admin(&self) -> Admin {
        self.admin.load(Relaxed)
    }
    pub(crate) fn set_admin(&self, a: Admin) {
        self.admin.store(a, Release);
        if a == Admin::Enabled {
            self.eligible.notify_waiters();
        }
    }
    pub(crate) fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }
    pub(crate) fn maxc(&self) -> u32 {
        self.maxc.load(Relaxed)
    }
    pub(crate) fn set_maxc(&self, m: u32) {
        self.maxc.store(m, Relaxed);
        self.eligible.notify_waiters();
    }
    pub(crate) fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }
    pub(crate) fn set_weight(&self, w: u32) {
        self.weight.store(w, Relaxed);
        self.eligible.notify_waiters();
    }
    pub(crate) fn conns(&self) -> u32 {
        self.conns.load(Relaxed)
    }

    /// Sessions relaying now, on a fencing listener (a fence waits for
    /// them to close; connects still in progress are not sessions: they
    /// are turned away when they complete).
    pub(crate) fn relaying(&self) -> u32 {
        self.relaying.load(Acquire)
    }

    /// Count a session as relaying until the returned guard drops.
    pub(crate) fn relaying_guard(self: &Arc<Self>) -> RelayingGuard {
        self.relaying.fetch_add(1, AcqRel);
        RelayingGuard {
            ch: Arc::clone(self),
        }
    }

    pub(crate) fn shown_state(&self) -> ShownState {
        match self.admin() {
            Admin::Disabled => ShownState::HardDisabled,
            Admin::Drain => ShownState::Drain,
            Admin::Enabled if !self.is_up() => ShownState::SoftDisabled,
            Admin::Enabled => ShownState::Ena,
        }
    }

    /// Usable for a new connection right now (state and maxc).
    pub(crate) fn eligible(&self) -> bool {
        Backend::eligible(self)
    }

    /// Reserve a connection slot, respecting `maxc` even under races.
    pub(crate) fn try_acquire(self: &Arc<Self>) -> Option<ConnGuard> {
        let mut cur = self.conns.load(Relaxed);
        loop {
            let m = self.maxc();
            if (m != 0 && cur >= m) || (self.is_full() && (m != 0 || self.full_holds.load(Relaxed)))
            {
                return None;
            }
            match self
                .conns
                .compare_exchange_weak(cur, cur + 1, AcqRel, Relaxed)
            {
                Ok(_) => {
                    return Some(ConnGuard {
                        ch: Arc::clone(self),
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Feed one health result (probe or passive) through rise/fall; a
    /// failure is `seen` at Layer 4 or at the application level.
    /// Returns `Some(up)` when the channel flipped. State only: the
    /// reactions to a flip belong to `Service::report`.
    pub(crate) fn observe(
        &self,
        result: Result<(), Reason>,
        seen: Evidence,
        p: &RiseFallParams,
    ) -> Option<bool> {
        let ok = result.is_ok();
        let mut h = lock(&self.health);
        match result {
            Ok(()) => h.last = LastResult::Passed,
            Err(r) => {
                if !matches!(&h.last, LastResult::Failed(old) if *old == r) {
                    h.last = LastResult::Failed(r);
                }
            }
        }
        let streak = match (ok, seen) {
            (true, _) => Streak::None,
            // An application failure taints the whole streak.
            (false, Evidence::Application) => Streak::Application,
            (false, Evidence::Transport) => {
                if self.failing.load(Relaxed) == Streak::Application && h.rf.failures > 0 {
                    Streak::Application
                } else {
                    Streak::Transport
                }
            }
        };
        self.failing.store(streak, Relaxed);
        let flip = h.rf.observe(ok, p);
        if let Some(up) = flip {
            self.set_up_locked(&mut h, up);
        }
        flip
    }

    /// Count one finished health check and its duration (monitor only).
    pub(crate) fn record_check(&self, ok: bool, took: std::time::Duration) {
        let c = if ok {
            &self.checks_passed
        } else {
            &self.checks_failed
        };
        c.fetch_add(1, Relaxed);
        self.check_micros
            .store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Count one check that found the server full, and its duration.
    pub(crate) fn record_full(&self, took: std::time::Duration) {
        self.checks_full.fetch_add(1, Relaxed);
        self.record_full_or_catching_up(took);
    }

    /// The duration of a check that neither passed nor failed.
    pub(crate) fn record_full_or_catching_up(&self, took: std::time::Duration) {
        self.check_micros
            .store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// Whether the last check found the server full.
    pub(crate) fn is_full(&self) -> bool {
        self.full.load(Relaxed)
    }

    /// Whether a full server takes no new client even without `maxc`
    /// (set from the listener's settings by the pool).
    /// The PROXY header to send before the client's bytes, if any.
    pub(crate) fn proxy_protocol(&self) -> Option<ProxyVersion> {
        match self.proxy.load(Relaxed) {
            SendProxy::Off => None,
            SendProxy::V1 => Some(ProxyVersion::V1),
            SendProxy::V2 => Some(ProxyVersion::V2),
        }
    }

    pub(crate) fn set_proxy_protocol(&self, v: Option<ProxyVersion>) {
        let p = match v {
            None => SendProxy::Off,
            Some(ProxyVersion::V1) => SendProxy::V1,
            Some(ProxyVersion::V2) => SendProxy::V2,
        };
        self.proxy.store(p, Relaxed);
    }

    pub(crate) fn set_full_holds(&self, on: bool) {
        self.full_holds.store(on, Relaxed);
    }

    /// At capacity: `maxc` reached, or the server reported itself full
    /// and that holds clients here.
    fn at_capacity(&self) -> bool {
        let m = self.maxc();
        (m != 0 && self.conns() >= m)
            || (self.is_full() && (m != 0 || self.full_holds.load(Relaxed)))
    }

    /// Mark the server full or not (`Service::report` only); true when
    /// that changed.
    pub(crate) fn set_full(&self, full: bool) -> bool {
        if self.full.load(Relaxed) == full {
            return false;
        }
        let changed = self.full.swap(full, Relaxed) != full;
        if changed && !full {
            self.eligible.notify_waiters();
        }
        changed
    }

    /// Whether the channel is catching up (not eligible, not down).
    pub(crate) fn is_catching_up(&self) -> bool {
        self.catching_up.load(Relaxed)
    }

    /// Mark the channel catching up, with why, as found by a check that
    /// started at `started` (`Service::report` only); true when it was not
    /// already, or for another reason.
    pub(crate) fn set_catching_up(&self, reason: Reason, started: Instant) -> bool {
        let mut h = lock(&self.health);
        h.last = LastResult::Failed(reason);
        h.catch_up_since = Some(h.catch_up_since.map_or(started, |t| t.max(started)));
        // Only the change is news: the backlog count in the reason moves at
        // every check.
        !self.catching_up.swap(true, AcqRel)
    }

    /// Not eligible until a check started from now on passes (a primary
    /// failed: what this backup has applied is unknown). The shown reason
    /// changes only while the channel is up (a down one keeps its own).
    pub(crate) fn mark_unverified(&self, reason: Reason) -> bool {
        let mut h = lock(&self.health);
        if self.is_up() {
            h.last = LastResult::Failed(reason);
        }
        h.catch_up_since = Some(Instant::now());
        !self.catching_up.swap(true, AcqRel)
    }

    /// A check that started at `started` passed: it clears a catching-up
    /// mark made before it started. True when that changed.
    pub(crate) fn clear_catching_up(&self, started: Instant) -> bool {
        if !self.catching_up.load(Relaxed) {
            return false;
        }
        let h = lock(&self.health);
        if h.catch_up_since.is_some_and(|t| t > started) {
            return false; // marked while this check ran: not proof
        }
        let changed = self.catching_up.swap(false, AcqRel);
        drop(h);
        if changed {
            self.eligible.notify_waiters();
        }
        changed
    }

    /// Note whether a serving primary's own replication is broken (the
    /// monitor only); true when that changed.
    pub(crate) fn set_replication_broken(&self, broken: bool) -> bool {
        self.replication_broken.swap(broken, Relaxed) != broken
    }

    /// Whether a serving primary's own replication is broken.
    pub(crate) fn replication_broken(&self) -> bool {
        self.replication_broken.load(Relaxed)
    }

    /// The replication lag from the last check (the monitor only).
    pub(crate) fn set_lag(&self, secs: Option<u64>) {
        let v = secs.map_or(-1, |s| i64::try_from(s).unwrap_or(i64::MAX));
        self.lag_secs.store(v, Relaxed);
    }

    /// The replication lag in seconds, if the last check knew it.
    pub(crate) fn lag(&self) -> Option<u64> {
        u64::try_from(self.lag_secs.load(Relaxed)).ok()
    }

    /// A connect from real traffic succeeded: it ends a Layer-4 failure
    /// streak (it does not count as a pass; only checks bring a channel
    /// back up). It proves nothing about the application: a streak with an
    /// application-level failure in it stays open (a hung server still
    /// completes TCP handshakes).
    pub(crate) fn connect_ok(&self) {
        if self.failing.load(Relaxed) == Streak::Transport {
            let mut h = lock(&self.health);
            // Re-check under the lock: a check may have failed meanwhile.
            if self
                .failing
                .compare_exchange(Streak::Transport, Streak::None, Relaxed, Relaxed)
                .is_ok()
            {
                h.rf.failures = 0;
            }
        }
    }

    /// Soft-disable at once (`-a`, DNS). True if it was up. State only,
    /// like [`Channel::observe`].
    pub(crate) fn force_down(&self, reason: impl Into<Reason>) -> bool {
        let mut h = lock(&self.health);
        h.last = LastResult::Failed(reason.into());
        let flipped = h.rf.force_down();
        if flipped {
            self.set_up_locked(&mut h, false);
        }
        flipped
    }

    /// Clear health (operator `enable`): up, streaks reset.
    pub(crate) fn force_up(&self) -> bool {
        let mut h = lock(&self.health);
        let flipped = h.rf.force_up();
        h.last = LastResult::None;
        self.set_up_locked(&mut h, true);
        flipped
    }

    fn set_up_locked(&self, h: &mut HealthState, up: bool) {
        h.last_change = Some(Instant::now());
        self.up.store(up, Release);
        if up {
            self.eligible.notify_waiters();
        }
    }

    /// A copy of the health bookkeeping, for `show`: the streaks and the
    /// last result as text.
    pub(crate) fn health(&self) -> (RiseFall, String) {
        let h = lock(&self.health);
        (h.rf, h.last.to_string())
    }

    /// When the health verdict last changed (None: not since start).
    pub(crate) fn last_change(&self) -> Option<Instant> {
        lock(&self.health).last_change
    }

    /// The streaks and verdict (the monitor's re-probe filter).
    pub(crate) fn rise_fall(&self) -> RiseFall {
        lock(&self.health).rf
    }

    /// Why the channel is down, if it is down for a known failure.
    pub(crate) fn down_reason(&self) -> Option<Reason> {
        let h = lock(&self.health);
        match &h.last {
            LastResult::Failed(r) if !self.is_up() => Some(r.clone()),
            _ => None,
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// How a session is asked to end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kill {
    /// Now, with a reset.
    Now,
    /// Once nothing is in flight.
    WhenQuiet,
}

pin_project_lite::pin_project! {
    /// See [`Channel::session_kill`]. Polled on every wake-up of its
    /// session: once the notification holds the task's waker, a poll only
    /// compares counters (the notification itself takes a lock). Polled
    /// from one task only, whose waker does not change. After
    /// [`Kill::WhenQuiet`] it may be [re-armed](SessionKill::rearm) to
    /// wait for [`Kill::Now`].
    pub(crate) struct SessionKill<'a> {
        ends: &'a Ends,
        seen: u64,
        registered: bool,
        #[pin]
        notified: Notified<'a>,
    }
}

impl<'a> SessionKill<'a> {
    /// Watch `ends` for requests made from now on.
    pub(crate) fn new(ends: &'a Ends) -> SessionKill<'a> {
        SessionKill {
            ends,
            seen: ends.count.load(Acquire),
            registered: false,
            notified: ends.notify.notified(),
        }
    }

    /// Wait again, for the next request to end (the one that resolved
    /// this is consumed; a `close_sessions` since is not missed).
    pub(crate) fn rearm(self: Pin<&mut Self>) {
        let mut this = self.project();
        // Keep the closes seen: one since still counts.
        *this.seen = (*this.seen & CLOSES) | (this.ends.count.load(Acquire) & !CLOSES);
        *this.registered = false;
        this.notified.set(this.ends.notify.notified());
    }
}

impl Future for SessionKill<'_> {
    type Output = Kill;
    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Kill> {
        let this = self.project();
        if let Some(k) = asked(this.ends.count.load(Acquire), *this.seen) {
            return Poll::Ready(k);
        }
        if *this.registered {
            return Poll::Pending;
        }
        *this.registered = true;
        // Woken: which request it was, by the counters.
        this.notified
            .poll(cx)
            .map(|()| asked(this.ends.count.load(Acquire), *this.seen).unwrap_or(Kill::Now))
    }
}

/// What was asked since `seen`, by the [`Ends::count`] counters.
fn asked(now: u64, seen: u64) -> Option<Kill> {
    if now & CLOSES != seen & CLOSES {
        Some(Kill::Now)
    } else if now != seen {
        Some(Kill::WhenQuiet)
    } else {
        None
    }
}

/// A session counted by [`Channel::relaying`]; uncounted on drop.
pub(crate) struct RelayingGuard {
    ch: Arc<Channel>,
}

impl Drop for RelayingGuard {
    fn drop(&mut self) {
        self.ch.relaying.fetch_sub(1, AcqRel);
    }
}

/// A reserved connection slot on a channel; released on drop, so `maxc`
/// counts can never leak.
pub(crate) struct ConnGuard {
    ch: Arc<Channel>,
}

impl ConnGuard {
    pub(crate) fn channel(&self) -> &Arc<Channel> {
        &self.ch
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let before = self.ch.conns.fetch_sub(1, AcqRel);
        let m = self.ch.maxc();
        if m != 0 && before >= m {
            self.ch.eligible.notify_waiters();
        }
    }
}

impl Backend for Channel {
    fn usable(&self) -> bool {
        self.admin() == Admin::Enabled && self.is_up()
    }
    fn weight(&self) -> u32 {
        Channel::weight(self)
    }
    fn maxc(&self) -> u32 {
        Channel::maxc(self)
    }
    fn conns(&self) -> u32 {
        Channel::conns(self)
    }
    /// As the default, and a server that reports itself full counts as a
    /// full `maxc` when the operator set one (asked for spilling).
    /// A replica catching up is not eligible either.
    fn eligible(&self) -> bool {
        if !self.usable() || self.weight() == 0 || self.is_catching_up() {
            return false;
        }
        !self.at_capacity()
    }
    /// Up and caught up, only out of room (maxc, or a full server).
    fn busy(&self) -> bool {
        self.usable() && self.weight() > 0 && !self.is_catching_up() && self.at_capacity()
    }
}
