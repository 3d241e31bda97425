//! The vocabulary of health: the rise/fall state machine (pure,
//! table-tested), why a channel is down ([`Reason`]) and what was observed
//! ([`Outcome`]). A channel goes down after `fall` consecutive failures and
//! up after `rise` consecutive passes; an opposite result resets the streak.
//! Nothing here holds state shared between tasks: outcomes are fed to
//! `Service::report` (the monitor, the data path's passive detection, DNS),
//! which alone writes a channel's health and reacts to a flip.

use std::time::Duration;

/// Hysteresis parameters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RiseFallParams {
    pub(crate) rise: u32,
    pub(crate) fall: u32,
    /// `noenable`: passes never bring a channel up.
    pub(crate) noenable: bool,
    /// `nodisable`: failures never take a channel down.
    pub(crate) nodisable: bool,
}

impl Default for RiseFallParams {
    fn default() -> Self {
        RiseFallParams {
            rise: 2,
            fall: 3,
            noenable: false,
            nodisable: false,
        }
    }
}

/// Streak counters and the current verdict.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct RiseFall {
    pub(crate) up: bool,
    pub(crate) passes: u32,
    pub(crate) failures: u32,
}

impl Default for RiseFall {
    /// Channels start up: start-up does not wait for `rise`.
    fn default() -> Self {
        RiseFall {
            up: true,
            passes: 0,
            failures: 0,
        }
    }
}

impl RiseFall {
    /// Feed one result; returns `Some(new_up)` when the verdict flips.
    pub(crate) fn observe(&mut self, ok: bool, p: &RiseFallParams) -> Option<bool> {
        if ok {
            self.failures = 0;
            self.passes = self.passes.saturating_add(1);
            if !self.up && !p.noenable && self.passes >= p.rise.max(1) {
                self.up = true;
                return Some(true);
            }
        } else {
            self.passes = 0;
            self.failures = self.failures.saturating_add(1);
            if self.up && !p.nodisable && self.failures >= p.fall.max(1) {
                self.up = false;
                return Some(false);
            }
        }
        None
    }

    /// Take the channel down at once (autodisable `-a`).
    pub(crate) fn force_down(&mut self) -> bool {
        let flipped = self.up;
        self.up = false;
        self.passes = 0;
        flipped
    }

    /// Bring the channel up at once (operator `enable`).
    pub(crate) fn force_up(&mut self) -> bool {
        let flipped = !self.up;
        *self = RiseFall::default();
        flipped
    }
}

/// Why a channel failed a check or is down. Display gives the text shown by
/// `show json` (`last_reason`) and logged with a flip.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Reason {
    /// A health check failed; the text names the check (`http: HTTP 503`).
    #[error("{0}")]
    Check(String),
    /// A connect from real traffic failed on the backend's side.
    #[error("connect: {0}")]
    Connect(String),
    /// The channel's name does not resolve (it starts down).
    #[error("name does not resolve")]
    Unresolved,
    /// The channel's name resolves only to its own listener.
    #[error("resolves to its own listener")]
    SelfLoop,
    /// Fleet mode: the fleet's prober says so (its own reason, as text).
    #[error("fleet: {0}")]
    Fleet(String),
    /// The group's `on_idle` command stopped the backend (exit 0).
    #[error("stopped by on_idle")]
    Stopped,
}

impl Reason {
    /// Down because of name resolution: re-resolution may bring it back.
    pub(crate) fn is_name_resolution(&self) -> bool {
        matches!(self, Reason::Unresolved | Reason::SelfLoop)
    }
}

/// Free text as a check failure (tests and fake probers).
impl From<&str> for Reason {
    fn from(s: &str) -> Reason {
        Reason::Check(s.to_string())
    }
}

/// What a failure was seen at: a TCP connect (Layer 4) or a check that
/// speaks the backend's protocol. A hung server still completes TCP
/// handshakes (the kernel does them), so a successful connect ends only a
/// [`Evidence::Transport`] streak, never an [`Evidence::Application`] one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Evidence {
    /// A connect failed (from traffic, a `connect` check, or a connect
    /// abandoned by `--race`).
    Transport,
    /// A protocol-level check failed (`mysql`, `http=`, `send=`, `command=`).
    Application,
}

/// Why a channel came up at once; Display ends the flip's log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Recovery {
    /// `rise` checks passed.
    ChecksPass,
    /// Its name resolves (elsewhere than the listener) again.
    NameResolves,
    /// Fleet mode: the fleet's prober says it is up.
    Fleet,
}

impl std::fmt::Display for Recovery {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Recovery::ChecksPass => "checks pass",
            Recovery::NameResolves => "name resolves now",
            Recovery::Fleet => "the fleet's prober says up",
        })
    }
}

/// One thing learnt about a channel's health, fed to `Service::report`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// A health check finished after `took`: counted, then through
    /// rise/fall (ignored while the operator holds the channel).
    Checked {
        result: Result<(), Reason>,
        took: Duration,
    },
    /// A check found the server answering but full (MySQL 1040, 1129):
    /// busy, not dead. Counted; neither a pass nor a failure for rise/fall;
    /// the channel is marked full until a check passes or fails (a full
    /// channel with `maxc` set takes no new clients, like a full `maxc`).
    Full { detail: String, took: Duration },
    /// A check found a replica that has received more than it applied
    /// while that matters (`max_lag=`: a backup, or its primary
    /// unreachable): catching up, not down. Counted as neither a pass nor
    /// a failure; the channel is not eligible until a check started later
    /// passes.
    CatchingUp { detail: String, took: Duration },
    /// A connect from real traffic failed on the backend's side (the
    /// text): counted, then through `fall`, or down at once with `-a`.
    ConnectFailed(String),
    /// Down at once, whatever `fall` says.
    Down(Reason),
    /// Up at once, whatever `rise` says.
    Up(Recovery),
}

/// What a health check learned about the server besides its verdict. A
/// probe only returns these; the service records them on the channel
/// (`Service::report_check`), so no probe writes pool state.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct Facts {
    /// Replication lag in seconds, when the check judged replication
    /// (`Some(None)`: judged, but the server did not know its lag).
    pub(crate) lag: Option<Option<u64>>,
    /// A serving primary's own replication, when the check judged it:
    /// `Some(Some(why))` broken, `Some(None)` fine (it keeps serving
    /// either way; a switchover back is refused while it is broken).
    pub(crate) replication_broken: Option<Option<String>>,
}

#[cfg(test)]
mod tests;
