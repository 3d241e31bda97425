//! Fleet-scoped operator state (`P/svc/NAME/ops/...`): what a `fleet ...`
//! control command writes and every instance of the service applies from
//! its watch (the `follow` task), the instance that got the command
//! included.
//!
//! Keys and values (JSON; `by` and `at` are optional, for people):
//! - `ops/admin/HOST:PORT`  `{"admin":"enabled|disabled|drain"}`
//! - `ops/weight/HOST:PORT` `{"weight":N}` (0-10000)
//! - `ops/maxc/HOST:PORT`   `{"maxc":N}`
//! - `ops/floor`            `{"group":G}`: the manual-failback floor
//!   (`fleet failback` writes group 0)
//! - `ops/spin`             `{"until_ms":T}`: the operator hold until T
//!   (unix ms); 0 = off
//!
//! A key applies to every channel of the listener at `HOST:PORT` (any
//! group). A key is applied when its revision is newer than the one this
//! process applied last for it (kept in the process-wide `Fleet`, across
//! reloads), so a watch that
//! starts again does not undo later local commands, while a change made
//! while this instance was cut off from etcd is applied when it rejoins.
//! Deleting a key changes nothing. A key or value that does not decode is
//! logged (once per revision) and ignored.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::operator::{self, ChannelKey, GroupKey, OperatorOp, SpinSet, WeightSet};
pub(crate) use crate::operator::{Endpoint, MAX_WEIGHT};
use crate::pool::Admin;
use crate::service::Service;

/// One operator change for the whole fleet, as etcd keys it: channels by
/// address (each instance has its own names and indexes), groups by
/// index, a registered channel by its unresolved address (each instance
/// resolves it), the hold by a wall-clock end. Applied by
/// [`crate::operator::apply`] like any other (registrations through
/// [`crate::fleet::channels`]).
pub type Op = OperatorOp<Endpoint, usize, Endpoint>;

#[derive(Debug, Default, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Value {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    admin: Option<Admin>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    weight: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    maxc: Option<u32>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    group: Option<usize>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    until_ms: Option<u64>,
    /// Who wrote it (instance id), when (unix ms): for people only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    by: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    at: Option<u64>,
}

impl Op {
    /// The fleet op for a front end's `op` (`chan`: a channel's address;
    /// `group`: a group's index; `until`: when a hold ends, unix ms), or
    /// why it has no fleet scope.
    pub(crate) fn of<C, G>(
        op: OperatorOp<C, G, Endpoint>,
        chan: impl FnOnce(C) -> Result<Endpoint, String>,
        group: impl FnOnce(G) -> Result<usize, String>,
        until: impl FnOnce(SpinSet) -> Option<u64>,
    ) -> Result<Op, String> {
        let op = op.map(chan, group)?;
        match op {
            OperatorOp::Admin(..)
            | OperatorOp::Weight(_, WeightSet::Abs(_))
            | OperatorOp::Maxc(..)
            | OperatorOp::Create { .. }
            | OperatorOp::Remove { .. }
            | OperatorOp::Floor(_) => Ok(op),
            OperatorOp::Spin(s) => Ok(OperatorOp::Spin(match until(s) {
                Some(ms) => SpinSet::Until(UNIX_EPOCH + Duration::from_millis(ms)),
                None => SpinSet::Off,
            })),
            _ => Err("no fleet scope".into()),
        }
    }

    /// The key below `P/svc/NAME/`: `ops/...`, or `channels/G/HOST:PORT`
    /// for a registration.
    pub(crate) fn path(&self) -> String {
        match self {
            OperatorOp::Create {
                group, target: c, ..
            }
            | OperatorOp::Remove { group, chan: c } => format!("channels/{group}/{c}"),
            op => format!("ops/{}", op.key()),
        }
    }

    /// The key below `P/svc/NAME/ops/`.
    pub(crate) fn key(&self) -> String {
        match self {
            OperatorOp::Admin(c, _) => format!("admin/{c}"),
            OperatorOp::Weight(c, _) => format!("weight/{c}"),
            OperatorOp::Maxc(c, _) => format!("maxc/{c}"),
            OperatorOp::Floor(_) => "floor".into(),
            OperatorOp::Spin(_) => "spin".into(),
            // Not made by `of` nor `decode`.
            op => format!("unsupported/{op:?}"),
        }
    }

    /// The JSON value, stamped with the writer's id and the time (a
    /// registration's: its weight only, see [`crate::fleet::channels`]).
    pub(crate) fn value(&self, by: &str, at_ms: u64) -> String {
        if let OperatorOp::Create { weight, .. } = self {
            return match weight {
                Some(w) => format!("{{\"weight\":{w}}}"),
                None => "{}".into(),
            };
        }
        let mut v = Value {
            by: Some(by.to_string()),
            at: Some(at_ms),
            ..Value::default()
        };
        match self {
            OperatorOp::Admin(_, a) => v.admin = Some(*a),
            OperatorOp::Weight(_, WeightSet::Abs(w)) => v.weight = Some(*w),
            OperatorOp::Maxc(_, m) => v.maxc = Some(*m),
            OperatorOp::Floor(g) => v.group = Some(*g),
            OperatorOp::Spin(s) => v.until_ms = Some(until_ms(*s)),
            _ => {}
        }
        serde_json::to_string(&v).unwrap_or_default()
    }

    /// Decode a key below `ops/` and its value; why not, in one line.
    pub fn decode(key: &str, value: &[u8]) -> Result<Op, String> {
        let v: Value = serde_json::from_slice(value).map_err(|e| format!("bad value: {e}"))?;
        let need = |x: Option<u32>, what: &str| x.ok_or_else(|| format!("value has no {what:?}"));
        let (kind, chan) = match key.split_once('/') {
            Some((k, c)) => (k, Some(c)),
            None => (key, None),
        };
        let op = match (kind, chan) {
            ("admin", Some(c)) => OperatorOp::Admin(
                Endpoint::parse(c)?,
                v.admin.ok_or("value has no \"admin\"")?,
            ),
            ("weight", Some(c)) => {
                let w = need(v.weight, "weight")?;
                if w > MAX_WEIGHT {
                    return Err(format!("weight {w} is above {MAX_WEIGHT}"));
                }
                OperatorOp::Weight(Endpoint::parse(c)?, WeightSet::Abs(w))
            }
            ("maxc", Some(c)) => OperatorOp::Maxc(Endpoint::parse(c)?, need(v.maxc, "maxc")?),
            ("floor", None) => OperatorOp::Floor(v.group.ok_or("value has no \"group\"")?),
            ("spin", None) => {
                let t = v.until_ms.ok_or("value has no \"until_ms\"")?;
                OperatorOp::Spin(if t > 0 {
                    SpinSet::Until(UNIX_EPOCH + Duration::from_millis(t))
                } else {
                    SpinSet::Off
                })
            }
            _ => return Err("unknown key (use admin/, weight/, maxc/, floor or spin)".into()),
        };
        Ok(op)
    }

    /// Apply to this instance's listener (every channel at the address,
    /// in any group): what changed (None: nothing needed), or why it
    /// cannot apply here.
    pub(crate) fn apply(&self, svc: &Service) -> Result<Option<String>, String> {
        let op = self
            .clone()
            .map(|e| Ok(ChannelKey::Every(e)), |g| Ok(GroupKey::Index(g)))
            .and_then(|op| op.map_target(|e| Err(format!("{e} is not resolved here"))))
            .map_err(|e: String| e)?;
        match operator::apply(svc, &op) {
            Ok(out) if out.changed() => Ok(Some(self.describe())),
            Ok(_) => Ok(None),
            Err(operator::OpError::NoChannel(_)) => Err("no such channel here".into()),
            Err(operator::OpError::NoGroup { groups, .. }) => Err(format!(
                "no group {} here (groups 0-{})",
                self.floor_group(),
                groups.saturating_sub(1)
            )),
            Err(e) => Err(e.to_string()),
        }
    }

    fn floor_group(&self) -> usize {
        match self {
            OperatorOp::Floor(g) => *g,
            _ => 0,
        }
    }

    /// What the op does, for replies and logs.
    pub(crate) fn describe(&self) -> String {
        match self {
            OperatorOp::Admin(c, a) => format!("{c} {}", admin_word(*a)),
            OperatorOp::Weight(c, WeightSet::Abs(w)) => format!("weight of {c} {w}"),
            OperatorOp::Maxc(c, m) => format!("maxc of {c} {m}"),
            OperatorOp::Floor(0) => "failback to group 0".into(),
            OperatorOp::Floor(g) => format!("active group {g}"),
            OperatorOp::Spin(SpinSet::Off) => "spin off".into(),
            OperatorOp::Spin(_) => "spin on".into(),
            OperatorOp::Create { group, target, .. } => {
                format!("channel {target} registered in group {group}")
            }
            OperatorOp::Remove { group, chan } => {
                format!("channel {chan} unregistered from group {group}")
            }
            op => format!("{op:?}"),
        }
    }
}

/// A hold's end in unix ms (0: off).
fn until_ms(s: SpinSet) -> u64 {
    match s {
        SpinSet::Until(t) => t
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX)),
        SpinSet::For(_) | SpinSet::Off => 0,
    }
}

fn admin_word(a: Admin) -> &'static str {
    match a {
        Admin::Enabled => "enabled",
        Admin::Disabled => "disabled",
        Admin::Drain => "draining",
    }
}

/// The revision this process applied last per ops key (full key): kept in
/// the process-wide [`crate::fleet::Fleet`], across reloads, which
/// replace the listener's watch.
#[derive(Debug, Default)]
pub(crate) struct Applied(Mutex<HashMap<Vec<u8>, i64>>);

impl Applied {
    /// Whether `key` at `rev` is newer than what this process applied.
    pub(crate) fn is_new(&self, key: &[u8], rev: i64) -> bool {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(key).is_none_or(|r| *r < rev)
    }

    /// Record `key` as applied at `rev`.
    pub(crate) fn mark(&self, key: &[u8], rev: i64) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(key.to_vec(), rev);
    }
}

#[cfg(test)]
mod tests;
