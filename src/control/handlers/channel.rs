//! Operator changes from the control socket: the session's references
//! ([`ChanRef`], [`GroupRef`]) mapped to keys, the change applied by
//! [`crate::operator::apply`], its outcome rendered in balance.fm's words.
//! `assign` and `create` resolve their target first; a `switchover` is
//! planned by the model and run here (see [`switchover`]).

use std::net::SocketAddr;
use std::sync::Arc;

use crate::control::commands::{ChanRef, ControlOp, GroupRef};
use crate::control::handlers::switchover;
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

/// The group key a session's reference stands for (`cur`: its group).
pub(crate) fn group_key(cur: usize, g: GroupRef) -> GroupKey {
    match g {
        GroupRef::Current => GroupKey::Index(cur),
        GroupRef::Key(k) => k,
    }
}

/// Apply one change for a session whose current group is `cur` (`binds`:
/// what `assign`/`create` must not point at, see [`resolve`]).
pub(crate) async fn run(
    svc: &Service,
    cur: usize,
    op: &ControlOp,
    binds: &[(String, SocketAddr)],
) -> Reply {
    let r = op.channel().cloned();
    let switching = matches!(op, OperatorOp::Switchover { .. });
    let fail = |e: &OpError| {
        Reply::err(match switching {
            true => e.to_string(),
            false => error(cur, r.as_ref(), e),
        })
    };
    let op = match op.clone().map(
        |c| Ok::<_, OpError>(key(cur, &c)),
        |g| Ok(group_key(cur, g)),
    ) {
        Ok(op) => op,
        Err(e) => return fail(&e),
    };
    if let Err(e) = before_resolving(svc, &op) {
        return fail(&e);
    }
    let op = match resolve(op, binds).await {
        Ok(op) => op,
        Err(e) => return Reply::err(e),
    };
    match operator::apply(svc, &op) {
        Ok(Outcome::Switching(sw)) => {
            let (from, to, grace) = (sw.plan.from, sw.plan.to, sw.grace);
            switchover::render(from, to, grace, sw.run(svc).await)
        }
        Ok(out) => Reply::line(render(cur, r.as_ref(), &out)),
        Err(e) => fail(&e),
    }
}

/// Refuse an unknown or enabled channel (`assign`) or an unknown group
/// (`create`) before resolving the new address.
fn before_resolving(
    svc: &Service,
    op: &OperatorOp<ChannelKey, GroupKey, Endpoint>,
) -> Result<(), OpError> {
    let groups = svc.pool.groups();
    match op {
        OperatorOp::Assign(k, _) => {
            let (hit, chans) = operator::find(&groups, k)?;
            if chans.iter().any(|c| c.admin() != Admin::Disabled) {
                return Err(OpError::NotDisabled(hit));
            }
            Ok(())
        }
        // One past the last group starts a new one.
        OperatorOp::Create {
            group: GroupKey::Index(g),
            ..
        } if *g == groups.len() => Ok(()),
        OperatorOp::Create { group, .. } => operator::find_group(&groups, group).map(|_| ()),
        _ => Ok(()),
    }
}

/// The op with its new address resolved, not a listener of this process
/// (`binds`: name and address of each, this listener first); or the error
/// line.
pub(crate) async fn resolve(
    op: OperatorOp<ChannelKey, GroupKey, Endpoint>,
    binds: &[(String, SocketAddr)],
) -> Result<OperatorOp, String> {
    match op.target() {
        Some(e) => {
            let t = operator::resolve_target(&e.host, e.port, binds).await?;
            op.map_target(|_| Ok(t))
        }
        None => op.map_target(|e| Err(format!("{e} is not resolved"))),
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
        Outcome::Removed { hit, conns } => {
            format!("{} removed ({conns} live connections go on)", label(hit))
        }
        Outcome::Switching(sw) => format!("switchover to group {} planned", sw.plan.to),
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
