//! The one wait of the harness: poll a condition every few milliseconds
//! until it holds or a deadline passes. Every readiness check and every
//! "eventually" in the tests goes through here, so no wait is unbounded and
//! a timeout names what was awaited.

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

/// Poll `f` until it returns `Some`, at most `limit` (it is called at least
/// once, and once more at the deadline).
pub fn wait_for<T>(
    what: &str,
    limit: Duration,
    mut f: impl FnMut() -> Option<T>,
) -> Result<T, TimedOut> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Ok(v);
        }
        if Instant::now() >= end {
            return Err(TimedOut {
                what: what.to_string(),
                after: limit,
            });
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
