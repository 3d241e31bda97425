//! The one wait of the harness: poll a condition every few milliseconds
//! until it holds or a deadline passes. Every readiness check and every
//! "eventually" in the tests goes through here, so no wait is unbounded and
//! a timeout names what was awaited.
//!
//! A limit is what the product promises on a machine with a core to spare
//! (derived by the test from its intervals, fall, fallback…). On a machine
//! whose run queue is longer than its cores (other builds beside the
//! suite), every process of the test gets a fraction of a core, so the
//! deadline stretches by the load per core ([`stretch`]): a slow machine
//! waits longer, a broken product still fails. An upper bound on a
//! measured duration is stretched the same way (`took <
//! stretched(promise)`): on an idle machine it is the promise itself.

use std::fmt;
use std::thread;
use std::time::{Duration, Instant};

/// How often a condition is polled.
pub const POLL: Duration = Duration::from_millis(10);

/// A condition that did not hold in time.
#[derive(Debug)]
pub struct TimedOut {
    pub what: String,
    pub after: Duration,
}

impl fmt::Display for TimedOut {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "timed out after {:?} waiting for {}",
            self.after, self.what
        )
    }
}

impl std::error::Error for TimedOut {}

/// The most a deadline stretches (a machine that loaded is not testing the
/// product any more).
const MAX_STRETCH: f64 = 10.0;

/// How much slower than with a core to spare this machine runs now: the
/// 1-minute load average per core, at least 1 (at most [`MAX_STRETCH`]).
pub fn stretch() -> f64 {
    let load = std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    let cores = thread::available_parallelism().map_or(1, |n| n.get()) as f64;
    (load / cores).clamp(1.0, MAX_STRETCH)
}

/// `limit` stretched by the machine's load now (see [`stretch`]).
pub fn stretched(limit: Duration) -> Duration {
    limit.mul_f64(stretch())
}

/// Poll `f` until it returns `Some`, at most `limit` stretched by the
/// machine's load (it is called at least once, and once more at the
/// deadline).
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let start = Instant::now();
    let mut allowed = limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if start.elapsed() >= allowed {
            // The load may have risen while waiting: the longest stretch
            // seen counts.
            allowed = allowed.max(stretched(limit));
            if start.elapsed() >= allowed {
                return Err(TimedOut {
                    what: what.to_string(),
                    after: start.elapsed(),
                });
            }
        }
        thread::sleep(POLL);
    }
}

/// [`wait_for`] for a plain condition.
pub fn wait_until(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> bool,
) -> Result<(), TimedOut> {
    wait_for(what, limit, || f().then_some(()))
}
