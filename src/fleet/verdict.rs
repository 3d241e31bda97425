//! The values fleet mode keeps in etcd, as typed JSON: the prober key's
//! [`Leader`] and each channel's [`Verdict`]. etcd's values are untrusted
//! input: [`Verdict::decode`] and [`Leader::decode`] check every field and
//! say in one line what is wrong. Also the two ends of a verdict: what a
//! prober reads off a channel ([`Verdict::of`]) and the outcomes a follower
//! feeds to `Service::report` ([`Verdict::outcomes`]).

use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::health::{Outcome, Reason, Recovery};
use crate::pool::Channel;

/// Longest reason text kept (a longer one is cut).
const MAX_REASON: usize = 512;
/// Longest instance id accepted.
const MAX_ID: usize = 200;
/// Largest lag accepted, in seconds.
const MAX_LAG: u64 = 1 << 40;

/// The prober's view of one channel.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum State {
    Up,
    Down,
    CatchingUp,
    Full,
}

/// `P/svc/NAME/verdict/HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Verdict {
    pub(crate) state: State,
    #[serde(default)]
    pub(crate) reason: String,
    #[serde(default)]
    pub(crate) lag: Option<u64>,
    /// The prober's counter (grows with every verdict it writes).
    pub(crate) seq: u64,
    /// When it was written (unix ms, the prober's clock).
    pub(crate) at: u64,
    /// The prober's instance id.
    pub(crate) by: String,
    /// The prober's open failure streak on the channel: "up" with a
    /// streak (below `fall`) is suspect.
    #[serde(default)]
    pub(crate) fails: u32,
    /// The etcd revision of the last reprobe request answered by a check
    /// of this channel that started after it (0: none).
    #[serde(default)]
    pub(crate) answered: i64,
}

/// `P/svc/NAME/prober`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Leader {
    pub(crate) id: String,
    /// When it won (unix ms, its own clock).
    pub(crate) since: u64,
}

/// A value that does not decode or check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(String);

fn check_id(what: &str, id: &str) -> Result<(), BadValue> {
    if id.is_empty() || id.len() > MAX_ID || id.chars().any(char::is_control) {
        return Err(BadValue(format!("{what}: not an instance id")));
    }
    Ok(())
}

fn json_err(e: serde_json::Error) -> BadValue {
    // serde_json's message is one line; keep it short.
    let mut s = e.to_string();
    s.truncate(160);
    BadValue(s)
}

impl Verdict {
    /// A verdict value as read from etcd; anything malformed is an error.
    pub fn decode(bytes: &[u8]) -> Result<Verdict, BadValue> {
        let mut v: Verdict = serde_json::from_slice(bytes).map_err(json_err)?;
        check_id("by", &v.by)?;
        if v.lag.is_some_and(|l| l > MAX_LAG) {
            return Err(BadValue("lag: out of range".into()));
        }
        if v.answered < 0 {
            return Err(BadValue("answered: out of range".into()));
        }
        if v.reason.len() > MAX_REASON {
            let mut end = MAX_REASON;
            while !v.reason.is_char_boundary(end) {
                end -= 1;
            }
            v.reason.truncate(end);
        }
        v.reason = v
            .reason
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .collect();
        Ok(v)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// What a prober publishes for `ch`; `None` while it is down only
    /// because of its own clients' failed connects (passive detection stays
    /// local: the checks decide for the fleet).
    pub(crate) fn of(ch: &Channel, seq: u64, at: u64, by: &str) -> Option<Verdict> {
        let (state, reason) = if !ch.is_up() {
            match ch.down_reason() {
                Some(Reason::Connect(_)) => return None,
                Some(r) => (State::Down, unwrap_fleet(r)),
                None => (State::Down, String::new()),
            }
        } else if ch.is_catching_up() {
            (State::CatchingUp, ch.health().1)
        } else if ch.is_full() {
            (State::Full, String::new())
        } else {
            (State::Up, String::new())
        };
        Some(Verdict {
            state,
            reason,
            lag: ch.lag(),
            seq,
            at,
            by: by.to_string(),
            fails: ch.rise_fall().failures,
            answered: 0,
        })
    }

    /// Whether two verdicts say the same (seq, time, lag and the length of
    /// a failure streak aside: a lag that moves at every check is no news;
    /// a streak starting or ending is).
    pub(crate) fn same(&self, o: &Verdict) -> bool {
        self.state == o.state && self.reason == o.reason && (self.fails > 0) == (o.fails > 0)
    }

    /// Whether this verdict proves the channel healthy since the reprobe
    /// request at revision `asked`: not down, no failure streak, and a
    /// check that started after the request has answered it. Only such a
    /// verdict brings back a channel a follower took down after its own
    /// failed connects.
    pub(crate) fn proves_up_since(&self, asked: i64) -> bool {
        self.state != State::Down && self.fails == 0 && self.answered >= asked
    }

    /// The outcomes that bring a follower's channel `ch` to this verdict,
    /// in order.
    pub(crate) fn outcomes(&self, ch: &Channel) -> Vec<Outcome> {
        let detail = || format!("fleet: {}", self.reason);
        let mut v = Vec::with_capacity(2);
        match self.state {
            State::Up => v.push(Outcome::Up(Recovery::Fleet)),
            State::Down => v.push(Outcome::Down(Reason::Fleet(self.reason.clone()))),
            State::CatchingUp | State::Full => {
                if !ch.is_up() || ch.is_full() {
                    v.push(Outcome::Up(Recovery::Fleet));
                }
                if self.state == State::Full {
                    v.push(Outcome::Full {
                        detail: detail(),
                        took: Duration::ZERO,
                    });
                } else {
                    v.push(Outcome::CatchingUp {
                        detail: detail(),
                        took: Duration::ZERO,
                    });
                }
            }
        }
        v
    }
}

/// A follower that becomes the prober republishes what it was told,
/// without stacking `fleet: ` prefixes.
fn unwrap_fleet(r: Reason) -> String {
    match r {
        Reason::Fleet(s) => s,
        other => other.to_string(),
    }
}

impl Leader {
    /// A leader value as read from etcd; anything malformed is an error.
    pub fn decode(bytes: &[u8]) -> Result<Leader, BadValue> {
        let l: Leader = serde_json::from_slice(bytes).map_err(json_err)?;
        check_id("id", &l.id)?;
        Ok(l)
    }

    pub(crate) fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(self).unwrap_or_default()
    }

    /// Whether `v` was written by this leader during its term (a verdict
    /// left over from an earlier prober, or from this one's earlier term,
    /// is stale).
    pub(crate) fn wrote(&self, v: &Verdict) -> bool {
        v.by == self.id && v.at >= self.since
    }
}

#[cfg(test)]
mod tests;
