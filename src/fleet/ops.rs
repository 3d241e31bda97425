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
//! process applied last for it (kept across reloads), so a watch that
//! starts again does not undo later local commands, while a change made
//! while this instance was cut off from etcd is applied when it rejoins.
//! Deleting a key changes nothing. A key or value that does not decode is
//! logged (once per revision) and ignored.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::config::Host;
use crate::config::grammar::host_literal;
use crate::config::services::parse_port;
use crate::pool::{Admin, Channel};
use crate::service::Service;

/// The largest weight (as the control socket's `weight`).
pub const MAX_WEIGHT: u32 = 10_000;

/// A channel as fleet keys name it: `HOST:PORT` (`[v6]:PORT`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChanId {
    pub host: Host,
    pub port: u16,
}

impl std::hash::Hash for ChanId {
    fn hash<H: std::hash::Hasher>(&self, h: &mut H) {
        self.to_string().hash(h);
    }
}

impl std::fmt::Display for ChanId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl ChanId {
    pub fn parse(s: &str) -> Result<ChanId, String> {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
        let host = host_literal(h).ok_or_else(|| format!("bad host in {s:?}"))?;
        let port = parse_port(p).map_err(|e| format!("bad port in {s:?}: {e}"))?;
        Ok(ChanId { host, port })
    }

    /// Whether `ch` is this channel (a literal IP also matches a resolved
    /// address of a named channel, as the control socket's `HOST:PORT`).
    pub fn matches(&self, ch: &Channel) -> bool {
        let t = ch.target();
        t.port == self.port
            && (t.host == self.host
                || matches!(self.host, Host::Ip(ip) if t.addrs.iter().any(|a| a.ip() == ip)))
    }
}

/// One operator change for the whole fleet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    Admin(ChanId, Admin),
    Weight(ChanId, u32),
    Maxc(ChanId, u32),
    /// The manual-failback floor: new connections start from this group.
    Floor(usize),
    /// The operator hold until this wall-clock time (unix ms); None: off.
    Spin(Option<u64>),
}

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
    /// The key below `P/svc/NAME/ops/`.
    pub fn key(&self) -> String {
        match self {
            Op::Admin(c, _) => format!("admin/{c}"),
            Op::Weight(c, _) => format!("weight/{c}"),
            Op::Maxc(c, _) => format!("maxc/{c}"),
            Op::Floor(_) => "floor".into(),
            Op::Spin(_) => "spin".into(),
        }
    }

    /// The JSON value, stamped with the writer's id and the time.
    pub fn value(&self, by: &str, at_ms: u64) -> String {
        let mut v = Value {
            by: Some(by.to_string()),
            at: Some(at_ms),
            ..Value::default()
        };
        match self {
            Op::Admin(_, a) => v.admin = Some(*a),
            Op::Weight(_, w) => v.weight = Some(*w),
            Op::Maxc(_, m) => v.maxc = Some(*m),
            Op::Floor(g) => v.group = Some(*g),
            Op::Spin(t) => v.until_ms = Some(t.unwrap_or(0)),
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
            ("admin", Some(c)) => {
                Op::Admin(ChanId::parse(c)?, v.admin.ok_or("value has no \"admin\"")?)
            }
            ("weight", Some(c)) => {
                let w = need(v.weight, "weight")?;
                if w > MAX_WEIGHT {
                    return Err(format!("weight {w} is above {MAX_WEIGHT}"));
                }
                Op::Weight(ChanId::parse(c)?, w)
            }
            ("maxc", Some(c)) => Op::Maxc(ChanId::parse(c)?, need(v.maxc, "maxc")?),
            ("floor", None) => Op::Floor(v.group.ok_or("value has no \"group\"")?),
            ("spin", None) => {
                let t = v.until_ms.ok_or("value has no \"until_ms\"")?;
                Op::Spin((t > 0).then_some(t))
            }
            _ => return Err("unknown key (use admin/, weight/, maxc/, floor or spin)".into()),
        };
        Ok(op)
    }

    /// The channel the op is about, if any.
    pub fn channel(&self) -> Option<&ChanId> {
        match self {
            Op::Admin(c, _) | Op::Weight(c, _) | Op::Maxc(c, _) => Some(c),
            _ => None,
        }
    }

    /// Apply to this instance's listener: what changed (None: nothing
    /// needed), or why it cannot apply here.
    pub fn apply(&self, svc: &Service) -> Result<Option<String>, String> {
        let on_channels = |f: &dyn Fn(&Channel) -> bool| -> Result<Option<String>, String> {
            let mut hit = 0;
            let mut changed = false;
            for g in svc.pool.groups().iter() {
                for ch in g
                    .channels
                    .iter()
                    .filter(|ch| self.channel().is_some_and(|c| c.matches(ch)))
                {
                    hit += 1;
                    changed |= f(ch);
                }
            }
            match (hit, changed) {
                (0, _) => Err("no such channel here".into()),
                (_, false) => Ok(None),
                (_, true) => Ok(Some(self.describe())),
            }
        };
        match self {
            Op::Admin(_, a) => on_channels(&|ch| {
                let same = ch.admin() == *a && (*a != Admin::Enabled || ch.is_up());
                if !same {
                    ch.set_admin(*a);
                    if *a == Admin::Enabled {
                        ch.force_up();
                    }
                }
                !same
            }),
            Op::Weight(_, w) => on_channels(&|ch| {
                let same = ch.weight() == *w;
                ch.set_weight(*w);
                !same
            }),
            Op::Maxc(_, m) => on_channels(&|ch| {
                let same = ch.maxc() == *m;
                ch.set_maxc(*m);
                !same
            }),
            Op::Floor(g) => {
                let n = svc.pool.groups().len();
                if *g >= n {
                    return Err(format!(
                        "no group {g} here (groups 0-{})",
                        n.saturating_sub(1)
                    ));
                }
                if svc.pool.floor() == *g {
                    return Ok(None);
                }
                if *g == 0 {
                    svc.pool.failback();
                } else {
                    svc.pool.set_floor(*g);
                }
                Ok(Some(self.describe()))
            }
            Op::Spin(Some(t)) => {
                let until = UNIX_EPOCH + Duration::from_millis(*t);
                if until <= SystemTime::now() {
                    return Ok(None);
                }
                svc.ops.hold.on_until(until);
                Ok(Some(self.describe()))
            }
            Op::Spin(None) => Ok(svc.ops.hold.off().0.then(|| self.describe())),
        }
    }

    /// What the op does, for replies and logs.
    pub fn describe(&self) -> String {
        match self {
            Op::Admin(c, a) => format!("{c} {}", admin_word(*a)),
            Op::Weight(c, w) => format!("weight of {c} {w}"),
            Op::Maxc(c, m) => format!("maxc of {c} {m}"),
            Op::Floor(0) => "failback to group 0".into(),
            Op::Floor(g) => format!("active group {g}"),
            Op::Spin(Some(_)) => "spin on".into(),
            Op::Spin(None) => "spin off".into(),
        }
    }
}

fn admin_word(a: Admin) -> &'static str {
    match a {
        Admin::Enabled => "enabled",
        Admin::Disabled => "disabled",
        Admin::Drain => "draining",
    }
}

/// The revision this process applied last per ops key (full key): kept
/// across reloads, which replace the listener's watch.
static APPLIED: LazyLock<Mutex<HashMap<Vec<u8>, i64>>> = LazyLock::new(Mutex::default);

/// Whether `key` at `rev` is newer than what this process applied.
pub(super) fn is_new(key: &[u8], rev: i64) -> bool {
    let m = APPLIED.lock().unwrap_or_else(|p| p.into_inner());
    m.get(key).is_none_or(|r| *r < rev)
}

/// Record `key` as applied at `rev`.
pub(super) fn mark_applied(key: &[u8], rev: i64) {
    let mut m = APPLIED.lock().unwrap_or_else(|p| p.into_inner());
    m.insert(key.to_vec(), rev);
}

#[cfg(test)]
mod tests;
