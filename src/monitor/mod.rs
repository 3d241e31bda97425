//! Health monitoring: per-channel probes feeding the pool's rise/fall.
//!
//! One scheduler task per listener. Each round (every `interval`, or at
//! once when the data path's passive detection notifies `svc.reprobe`) it
//! re-reads the group snapshot, so channels created at runtime are picked
//! up, and starts a probe for every channel that is not operator-disabled
//! (`DIS`) or draining and has no probe in flight: at most one probe per
//! channel, each chain bounded by its timeouts. Results go to
//! [`Service::report`], which applies rise/fall and reacts to a flip.
//! With a `suspect_interval` shorter than the interval, rounds in between
//! probe only the suspects (down, or with a failure streak).
//!
//! `monitor disable` pauses the scheduler (channels keep their state,
//! passive detection goes on) until `monitor enable`.
//!
//! Without `-m` an implicit *recovery monitor* runs: it probes (TCP connect,
//! every 2 s, rise 2) only channels that are soft-down (`dis`) because of
//! passive detection or `-a`, so plain balance command lines get channels
//! back automatically.

// Probe replies and specs are untrusted input: no panicking shortcuts.
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub(crate) mod probe;
pub(crate) mod spec;

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::*};
use std::time::Duration;

use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::config::monitor::{Check, DEFAULT_INTERVAL, Probe, default_check_timeout};
use crate::health::{Outcome, Reason};
use crate::pool::{Admin, Candidate, Channel};
use crate::service::Service;
use probe::{Finding, Probed};

/// Passive failures ask for a re-probe at most this often.
const REPROBE_GAP: Duration = Duration::from_millis(100);

/// One probe to run: the channel and where it sits.
pub(crate) type Job = Candidate;

type ProbeFuture = Pin<Box<dyn Future<Output = Probed> + Send>>;
/// Runs one probe chain against a channel (swappable for tests).
pub(crate) type Prober = Arc<dyn Fn(Job) -> ProbeFuture + Send + Sync>;

/// What the scheduler does for one listener.
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) interval: Duration,
    /// Rounds for suspects only (down, or a failure streak) this often,
    /// when shorter than `interval`.
    pub(crate) suspect_interval: Option<Duration>,
    pub(crate) jitter: Duration,
    /// Recovery monitor: probe only soft-down channels.
    pub(crate) only_down: bool,
}

/// Start the monitor of one listener (with `-m`, or the implicit recovery
/// monitor). Stops when `shutdown` is cancelled.
pub(crate) fn spawn(svc: Arc<Service>, shutdown: CancellationToken) -> tokio::task::JoinHandle<()> {
    let (checks, plan) = match &svc.cfg.monitor {
        Some(m) => (
            m.checks.clone(),
            Plan {
                interval: m.interval,
                suspect_interval: m.suspect_interval,
                jitter: m.jitter,
                only_down: false,
            },
        ),
        None => (
            vec![Check {
                probe: Probe::Connect,
                timeout: None,
            }],
            Plan {
                interval: DEFAULT_INTERVAL,
                suspect_interval: None,
                jitter: Duration::ZERO,
                only_down: true,
            },
        ),
    };
    let default_timeout = default_check_timeout(plan.interval);
    let source = svc.cfg.source;
    // A MySQL check keeps a connection whose greeting did not come in time
    // for the next check to go on waiting on (see `probe::Pending`).
    let greets = checks
        .iter()
        .any(|c| matches!(c.probe, Probe::Mysql { .. }));
    let checks = Arc::new(checks);
    let weak = Arc::downgrade(&svc);
    let slots = PendingSlots::default();
    let prober: Prober = Arc::new(move |job: Job| {
        let checks = Arc::clone(&checks);
        let pending = greets.then(|| slots.of(&job.channel));
        // A backup is any group but the one that serves: the fence's, or
        // the one traffic starts from.
        let (backup, primary) = weak.upgrade().map_or((job.group > 0, false), |s| {
            let serving = job.group == s.fence.serving().unwrap_or_else(|| s.pool.floor());
            // The writer of a fenced failover chain is judged as a primary.
            let primary = serving && s.cfg.fence && s.pool.groups().len() > 1;
            (!serving, primary)
        });
        let place = probe::Place {
            backup,
            primary,
            pending,
        };
        Box::pin(async move { probe_channel(&checks, &job, default_timeout, source, place).await })
    });
    tokio::spawn(run(svc, shutdown, plan, prober))
}

/// Probe every address of a channel until one passes; the findings of
/// that one, or of the last tried.
async fn probe_channel(
    checks: &[Check],
    job: &Job,
    default_timeout: Duration,
    source: Option<std::net::IpAddr>,
    place: probe::Place,
) -> Probed {
    let target = job.channel.target();
    let mut last = Probed::from(Err(Finding::Failed(format!(
        "{} does not resolve",
        target.host
    ))));
    for &addr in &target.addrs {
        let ctx = probe::Ctx {
            addr,
            host: target.host.to_string(),
            group: job.group,
            index: job.index,
            source,
            backup: place.backup,
            primary: place.primary,
            pending: place.pending.clone(),
            proxy: job.channel.proxy_protocol(),
        };
        last = probe::run_chain(checks, &ctx, default_timeout).await;
        if last.result.is_ok() {
            break;
        }
    }
    last
}

/// Each channel's [`probe::Pending`] connection, keyed by `Arc::as_ptr`
/// and checked against a weak reference (a freed channel's address may be
/// reused); entries of dropped channels go when a new one is added.
#[derive(Default)]
struct PendingSlots(std::sync::Mutex<HashMap<usize, PendingSlot>>);

/// A channel (while it lives) and its pending connection.
type PendingSlot = (std::sync::Weak<Channel>, Arc<probe::Pending>);

impl PendingSlots {
    fn of(&self, ch: &Arc<Channel>) -> Arc<probe::Pending> {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let key = Arc::as_ptr(ch) as usize;
        if let Some((w, p)) = m.get(&key) {
            if w.upgrade().is_some_and(|c| Arc::ptr_eq(&c, ch)) {
                return Arc::clone(p);
            }
        }
        m.retain(|_, (w, _)| w.strong_count() > 0);
        let p = Arc::new(probe::Pending::default());
        m.insert(key, (Arc::downgrade(ch), Arc::clone(&p)));
        p
    }
}

/// Per-channel scheduler state, keyed by `Arc::as_ptr`; the Arc keeps the
/// key valid while the entry exists.
struct Entry {
    _channel: Arc<Channel>,
    busy: Arc<AtomicBool>,
}

/// The scheduler loop (public for tests with a fake prober).
pub(crate) async fn run(
    svc: Arc<Service>,
    shutdown: CancellationToken,
    plan: Plan,
    prober: Prober,
) {
    let mut entries: HashMap<usize, Entry> = HashMap::new();
    let mut rng = Rng::new(Arc::as_ptr(&svc) as u64);
    debug!(listener = %svc.cfg.name, interval = ?plan.interval, only_down = plan.only_down, "monitor started");
    let mut next = Instant::now();
    let mut suspects_only = false;
    loop {
        if paused(&svc, &shutdown).await {
            return;
        }
        round(
            &svc,
            &shutdown,
            &plan,
            &prober,
            &mut entries,
            &mut rng,
            suspects_only,
        );
        if !suspects_only {
            next = Instant::now() + plan.interval;
        }
        let suspects_at = plan
            .suspect_interval
            .map(|s| Instant::now() + s)
            .filter(|&t| t < next);
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = sleep_until(next) => suspects_only = false,
            _ = sleep_until(suspects_at.unwrap_or(next)), if suspects_at.is_some() => {
                suspects_only = true;
            }
            _ = svc.reprobe.notified() => {
                // A passive failure: re-probe the failing channels now (not
                // the healthy ones), at most every REPROBE_GAP.
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = sleep(REPROBE_GAP.min(plan.interval)) => {}
                }
                // Fleet mode: a follower's failed connect asks the prober
                // to probe every channel and republish.
                suspects_only = Instant::now() < next && !svc.fleet.take_probe_all();
            }
        }
    }
}

/// While the operator has disabled active probing (`monitor disable`), or
/// the instance follows its fleet's prober, wait until probing resumes.
/// Returns true on shutdown.
async fn paused(svc: &Service, shutdown: &CancellationToken) -> bool {
    loop {
        // Register before looking, so an enable in between is not missed.
        let mut resumed = std::pin::pin!(svc.ops.monitor_resumed.notified());
        resumed.as_mut().enable();
        let mut unfollowed = std::pin::pin!(svc.fleet.resumed.notified());
        unfollowed.as_mut().enable();
        if !probing_paused(svc) {
            return false;
        }
        tokio::select! {
            _ = shutdown.cancelled() => return true,
            _ = resumed => {}
            _ = unfollowed => {}
        }
    }
}

/// The operator's `monitor disable`, or following the fleet.
fn probing_paused(svc: &Service) -> bool {
    svc.ops.monitor_paused() || svc.fleet.following()
}

fn round(
    svc: &Arc<Service>,
    shutdown: &CancellationToken,
    plan: &Plan,
    prober: &Prober,
    entries: &mut HashMap<usize, Entry>,
    rng: &mut Rng,
    // A re-probe after passive failures: only channels that are down or
    // have a failure streak.
    suspects_only: bool,
) {
    let groups = svc.pool.groups();
    let mut seen = HashSet::new();
    // Jitter spreads the channels evenly over the window (channel k of n
    // starts in slot k/n, at a random point in the first half of its slot),
    // so probe starts never bunch up, whatever the random draws.
    let n = groups
        .iter()
        .map(|g| g.channels.len())
        .sum::<usize>()
        .max(1);
    let mut k = 0usize;
    for (g, group) in groups.iter().enumerate() {
        for (i, ch) in group.channels.iter().enumerate() {
            let slot = k;
            k += 1;
            let key = Arc::as_ptr(ch) as usize;
            seen.insert(key);
            if ch.admin() != Admin::Enabled || !ch.checked() || (plan.only_down && ch.is_up()) {
                continue;
            }
            if suspects_only && ch.is_up() && ch.rise_fall().failures == 0 && !ch.is_catching_up() {
                continue;
            }
            let e = entries.entry(key).or_insert_with(|| Entry {
                _channel: Arc::clone(ch),
                busy: Arc::new(AtomicBool::new(false)),
            });
            if e.busy.swap(true, AcqRel) {
                continue; // one probe in flight per channel
            }
            let delay = if plan.jitter.is_zero() {
                Duration::ZERO
            } else {
                plan.jitter
                    .mul_f64((slot as f64 + rng.unit() * 0.5) / n as f64)
            };
            let job = Job {
                channel: Arc::clone(ch),
                group: g,
                index: i,
            };
            tokio::spawn(probe_task(
                Arc::clone(svc),
                shutdown.clone(),
                Arc::clone(prober),
                job,
                Arc::clone(&e.busy),
                delay,
            ));
        }
    }
    // Forget channels removed from the snapshot (their probes finish alone).
    entries.retain(|k, _| seen.contains(k));
}

async fn probe_task(
    svc: Arc<Service>,
    shutdown: CancellationToken,
    prober: Prober,
    job: Job,
    busy: Arc<AtomicBool>,
    delay: Duration,
) {
    let res = tokio::select! {
        _ = shutdown.cancelled() => None,
        r = async {
            sleep(delay).await;
            let started = Instant::now();
            let r = prober(job.clone()).await;
            (r, started.elapsed())
        } => Some(r),
    };
    // A probe that ends after `monitor disable` (or once following the
    // fleet, or after its channel's checks were turned off) changes nothing.
    let stale = || probing_paused(&svc) || !job.channel.checked();
    if let Some((Probed { result, facts }, took)) = res.filter(|_| !stale()) {
        let outcome = match result {
            Ok(()) => Outcome::Checked {
                result: Ok(()),
                took,
            },
            Err(Finding::Failed(r)) => Outcome::Checked {
                result: Err(Reason::Check(r)),
                took,
            },
            Err(Finding::Full(detail)) => Outcome::Full { detail, took },
            Err(Finding::CatchingUp(detail)) => Outcome::CatchingUp { detail, took },
        };
        svc.report_check(&job, outcome, facts);
    }
    busy.store(false, Release);
}

/// xorshift64*: jitter only needs spread, not quality.
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0);
        Rng((seed ^ t) | 1)
    }
    /// Uniform in [0, 1).
    fn unit(&mut self) -> f64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        let v = self.0.wrapping_mul(0x2545_f491_4f6c_dd1d);
        (v >> 11) as f64 / (1u64 << 53) as f64
    }
}

#[cfg(test)]
mod tests;
