//! A group started on demand: `on_empty:` (run a command when a client
//! needs the group and none of its channels is eligible, and hold the
//! client until one is) and `on_idle:` (run a command once the group has
//! had no connection for a while). Plain data; the state is the pool's
//! `demand`, the commands the service's `demand`.

use std::time::Duration;

/// Longest `on_empty.timeout`.
pub(crate) const MAX_START_TIMEOUT: Duration = Duration::from_secs(3600);
/// Longest `on_idle.after`.
pub(crate) const MAX_IDLE_AFTER: Duration = Duration::from_secs(7 * 24 * 3600);

/// A group's `on_empty:` and `on_idle:` (at least one of them).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnDemand {
    pub(crate) on_empty: Option<OnEmpty>,
    pub(crate) on_idle: Option<OnIdle>,
}

/// `on_empty: {argv, timeout}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnEmpty {
    /// Run directly (no shell); `argv[0]` is an absolute path.
    pub(crate) argv: Vec<String>,
    /// How long clients are held from the start of the command until a
    /// channel of the group is eligible.
    pub(crate) timeout: Duration,
}

/// `on_idle: {after, argv}`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OnIdle {
    /// No live connection and no new client for this long.
    pub(crate) after: Duration,
    pub(crate) argv: Vec<String>,
}

/// `key`'s duration checked against `(0, max]`: the error names the key.
pub(crate) fn check_duration(key: &str, d: Duration, max: Duration) -> Result<Duration, String> {
    if d.is_zero() {
        return Err(format!("{key}: must be positive"));
    }
    if d > max {
        return Err(format!(
            "{key}: at most {}",
            humantime::format_duration(max)
        ));
    }
    Ok(d)
}
