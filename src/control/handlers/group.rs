//! Handlers for the session's current group and group- or listener-wide
//! settings.

use std::sync::Arc;

use crate::config::Policy;
use crate::control::commands::MonitorOp;
use crate::control::reply::Reply;
use crate::pool::Group;
use crate::service::Service;

/// `group N`: make `g` the session's current group.
pub fn select(groups: &[Arc<Group>], cur: &mut usize, g: usize) -> Reply {
    // One past the last group is allowed: `create` starts it.
    if g > groups.len() {
        return Reply::err(format!(
            "no such group {g} (groups 0-{})",
            groups.len().saturating_sub(1)
        ));
    }
    *cur = g;
    Reply::ok(vec![])
}

/// `hash` / `rr`: the current group's policy.
pub fn policy(groups: &[Arc<Group>], cur: usize, p: Policy) -> Reply {
    let Some(g) = groups.get(cur) else {
        return Reply::err(format!("no such group {cur}"));
    };
    g.set_policy(p);
    match p {
        Policy::Hash => Reply::line(format!("group {cur} set to hash")),
        Policy::RoundRobin => Reply::line(format!("group {cur} set to round robin")),
    }
}

/// `failback`: new connections start from group 0 again.
pub fn failback(svc: &Service) -> Reply {
    let prev = svc.pool.failback();
    if prev == 0 {
        Reply::line("not failed over")
    } else {
        Reply::line(format!("failed back from group {prev} to group 0"))
    }
}

/// `monitor show|enable|disable`.
pub fn monitor(svc: &Service, op: MonitorOp) -> Reply {
    match (svc.cfg.monitor.is_some(), op) {
        (false, MonitorOp::Show) => Reply::line("no monitor configured"),
        (false, _) => Reply::err("no monitor configured for this listener (see -m)"),
        (true, MonitorOp::Show) => {
            Reply::line("monitor configured (health per channel: show json)")
        }
        (true, _) => Reply::err("monitor enable/disable is not supported in this build"),
    }
}

/// `spin DURATION`.
pub fn spin() -> Reply {
    Reply::err("spin cannot be changed at runtime in this build (use --spin)")
}
