//! Handlers for the session's current group and group- or listener-wide
//! settings.

use std::sync::Arc;

use crate::config::Policy;
use crate::control::commands::{MonitorOp, SpinOp};
use crate::control::reply::Reply;
use crate::pool::Group;
use crate::service::Service;
use crate::service::hold::DEFAULT_HOLD_MAX;

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

/// `hash` / `rr` / `leastconn`: the current group's policy.
pub fn policy(groups: &[Arc<Group>], cur: usize, p: Policy) -> Reply {
    let Some(g) = groups.get(cur) else {
        return Reply::err(format!("no such group {cur}"));
    };
    g.set_policy(p);
    Reply::line(format!("group {cur} set to {}", p.describe()))
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

/// `monitor show|enable|disable` (balance.fm's answers): pause or resume
/// the listener's active probes; channels keep their state and passive
/// detection goes on.
pub fn monitor(svc: &Service, op: MonitorOp) -> Reply {
    if svc.cfg.monitor.is_none() {
        return match op {
            MonitorOp::Show => Reply::line("no monitor configured"),
            _ => Reply::err("no monitor configured for this listener (see -m)"),
        };
    }
    let ops = &svc.ops;
    match op {
        MonitorOp::Show => Reply::line(format!(
            "monitor is {} (health per channel: show json)",
            if ops.monitor_paused() {
                "disabled"
            } else {
                "enabled"
            }
        )),
        MonitorOp::Enable if ops.pause_monitor(false) => Reply::line("monitor is now enabled"),
        MonitorOp::Enable => Reply::line("monitor is already enabled"),
        MonitorOp::Disable if ops.pause_monitor(true) => Reply::line("monitor is already disabled"),
        MonitorOp::Disable => Reply::line("monitor is now disabled"),
    }
}

/// `spin on [MAX]` / `spin off` / `spin`: the operator hold.
pub fn spin(svc: &Service, op: SpinOp) -> Reply {
    let hold = &svc.ops.hold;
    match op {
        SpinOp::On(max) => {
            let max = max.or(svc.cfg.spin).unwrap_or(DEFAULT_HOLD_MAX);
            hold.on(max);
            Reply::line(format!(
                "holding new clients for at most {} (spin off releases them)",
                humantime::format_duration(max)
            ))
        }
        SpinOp::Off => match hold.off() {
            (false, 0) => Reply::line("spin is already off"),
            (_, n) => Reply::line(format!("spin off: {n} held clients released in order")),
        },
        SpinOp::Show => Reply::line(match hold.until() {
            Some(t) => format!(
                "spin is on for {} more; {} clients held",
                humantime::format_duration(remaining(t)),
                hold.held()
            ),
            None => format!("spin is off; {} clients held", hold.held()),
        }),
    }
}

/// Time left until `t`, whole milliseconds.
fn remaining(t: std::time::SystemTime) -> std::time::Duration {
    let d = t
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    std::time::Duration::from_millis(d.as_millis() as u64)
}
