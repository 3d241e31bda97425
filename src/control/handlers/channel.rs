//! Operator changes from the control socket: the session's references
//! ([`ChanRef`], the current group) mapped to keys, the change applied by
//! [`crate::operator::apply`], its outcome rendered in balance.fm's words.
//! `assign` and `create` resolve their target first.

use std::net::SocketAddr;
use std::sync::Arc;

use crate::config::Host;
use crate::control::commands::{ChanRef, ControlOp};
use crate::control::reply::Reply;
use crate::operator::{
    self, ChannelKey, Endpoint, GroupKey, Hit, OpError, OperatorOp, Outcome, SpinSet,
};
use crate::pool::{Admin, Channel, Group};
use crate::service::Service;

/// The key a session's reference stands for (`cur`: its group).
pub(crate) fn key(cur: usize, r: &ChanRef) -> ChannelKey {
    match r {
        ChanRef::Index(c) => ChannelKey::At {
            group: cur,
            index: *c,
        },
        ChanRef::At(g, c) => ChannelKey::At {
            group: *g,
            index: *c,
        },
        ChanRef::Addr(host, port) => ChannelKey::Addr(Endpoint {
            host: host.clone(),
            port: *port,
        }),
        ChanRef::Name(n) => ChannelKey::Name(n.clone()),
    }
}

/// The one channel `r` names, or the error line.
pub(crate) fn find(groups: &[Arc<Group>], cur: usize, r: &ChanRef) -> Result<Arc<Channel>, String> {
    operator::find(groups, &key(cur, r))
        .and_then(|(_, chans)| {
            let first = chans.into_iter().next();
            first.ok_or(OpError::NoChannel(key(cur, r)))
        })
        .map_err(|e| error(cur, Some(r), &e))
}

/// Apply one change for a session whose current group is `cur`.
pub(crate) fn run(svc: &Service, cur: usize, op: &ControlOp) -> Reply {
    let r = op.channel().cloned();
    let op = op.clone().map(
        |c| Ok::<_, OpError>(key(cur, &c)),
        |()| Ok(GroupKey::Index(cur)),
    );
    match op.and_then(|op| operator::apply(svc, &op)) {
        Ok(out) => Reply::line(render(cur, r.as_ref(), &out)),
        Err(e) => Reply::err(error(cur, r.as_ref(), &e)),
    }
}

/// An outcome in balance.fm's words (and the extensions').
fn render(cur: usize, r: Option<&ChanRef>, out: &Outcome) -> String {
    let label = |h: &Hit| label(cur, r, h);
    match out {
        Outcome::Admin {
            hit,
            admin,
            changed,
            conns,
        } => match (admin, changed) {
            (Admin::Enabled, false) => format!("{} already enabled", label(hit)),
            (Admin::Enabled, true) => format!("{} enabled", label(hit)),
            (Admin::Disabled, false) => format!("{} already disabled", label(hit)),
            (Admin::Disabled, true) => format!("{} disabled", label(hit)),
            (Admin::Drain, false) => format!("{} already draining", label(hit)),
            (Admin::Drain, true) => format!(
                "{} draining ({conns} live connections continue)",
                label(hit)
            ),
        },
        Outcome::Weight { hit, weight, .. } => {
            format!("weight of {} changed to {weight}", label(hit))
        }
        Outcome::Maxc { hit, maxc, .. } => format!("maxc of {} changed to {maxc}", label(hit)),
        Outcome::Health { hit, on, .. } => format!(
            "health checks of {} {}",
            label(hit),
            if *on { "on" } else { "off" }
        ),
        Outcome::Reset { hit } => format!("{} counters reset", label(hit)),
        Outcome::Shutdown { hit, sessions } => {
            format!("{} sessions of {} ended", sessions, label(hit))
        }
        Outcome::Assigned { .. } => "channel reassigned".into(),
        Outcome::Created { .. } => "channel created".into(),
        Outcome::Policy { group, policy, .. } => {
            format!("group {group} set to {}", policy.describe())
        }
        Outcome::Floor { prev: 0, group: 0 } => "not failed over".into(),
        Outcome::Floor { prev, group } => {
            format!("failed back from group {prev} to group {group}")
        }
        Outcome::Spin {
            hold: Some(max), ..
        } => format!(
            "holding new clients for at most {} (spin off releases them)",
            humantime::format_duration(*max)
        ),
        Outcome::Spin { changed: false, .. } => "spin is already off".into(),
        Outcome::Spin { released, .. } => {
            format!("spin off: {released} held clients released in order")
        }
        Outcome::Monitor { on, changed } => format!(
            "monitor is {} {}",
            if *changed { "now" } else { "already" },
            if *on { "enabled" } else { "disabled" }
        ),
    }
}

/// An error in balance.fm's words: the channel as the session named it.
fn error(cur: usize, r: Option<&ChanRef>, e: &OpError) -> String {
    match (e, r) {
        (OpError::NoChannel(_), Some(r)) => format!("no such channel {r}"),
        (OpError::NotDisabled(h), _) => {
            format!(
                "{} must be disabled to assign new address",
                label(cur, r, h)
            )
        }
        (OpError::NoGroup { key, .. }, None) => format!("no such group {key}"),
        _ => e.to_string(),
    }
}

/// `channel 2` in the current group, `channel 1:2` elsewhere, `channel
/// NAME` when the session named it.
fn label(cur: usize, r: Option<&ChanRef>, h: &Hit) -> String {
    match r {
        Some(ChanRef::Name(n)) => format!("channel {n}"),
        _ if h.group == cur => format!("channel {}", h.index),
        _ => format!("channel {}:{}", h.group, h.index),
    }
}

/// `assign`: point a disabled channel at a new host and port (`binds`:
/// the process's listeners, this one first, which it must not be).
pub(crate) async fn assign(
    svc: &Service,
    cur: usize,
    r: &ChanRef,
    host: &Host,
    port: u16,
    binds: &[(String, SocketAddr)],
) -> Reply {
    // Refuse an unknown or enabled channel before resolving.
    let groups = svc.pool.groups();
    match operator::find(&groups, &key(cur, r)) {
        Ok((hit, chans)) if chans.iter().any(|c| c.admin() != Admin::Disabled) => {
            return Reply::err(error(cur, Some(r), &OpError::NotDisabled(hit)));
        }
        Ok(_) => {}
        Err(e) => return Reply::err(error(cur, Some(r), &e)),
    }
    match operator::resolve_target(host, port, binds).await {
        Ok(t) => run_key(svc, cur, Some(r), &OperatorOp::Assign(key(cur, r), t)),
        Err(e) => Reply::err(e),
    }
}

/// `create`: a new, disabled channel at the end of group `g` (one past the
/// last group starts a new round-robin group).
pub(crate) async fn create(
    svc: &Service,
    g: usize,
    host: &Host,
    port: u16,
    binds: &[(String, SocketAddr)],
) -> Reply {
    if g > svc.pool.groups().len() {
        return Reply::err(format!("no such group {g}"));
    }
    match operator::resolve_target(host, port, binds).await {
        Ok(target) => {
            let op = OperatorOp::Create {
                group: GroupKey::Index(g),
                target,
                weight: 1,
            };
            run_key(svc, g, None, &op)
        }
        Err(e) => Reply::err(e),
    }
}

fn run_key(svc: &Service, cur: usize, r: Option<&ChanRef>, op: &OperatorOp) -> Reply {
    match operator::apply(svc, op) {
        Ok(out) => Reply::line(render(cur, r, &out)),
        Err(e) => Reply::err(error(cur, r, &e)),
    }
}

/// `fleet spin on [MAX]`: until when (unix ms) every instance holds.
pub(crate) fn spin_until(svc: &Service, s: SpinSet) -> Option<std::time::SystemTime> {
    match s {
        SpinSet::For(max) => {
            let max = max
                .or(svc.cfg.spin)
                .unwrap_or(crate::service::hold::DEFAULT_HOLD_MAX);
            Some(std::time::SystemTime::now() + max)
        }
        SpinSet::Until(t) => Some(t),
        SpinSet::Off => None,
    }
}
