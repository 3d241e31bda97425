//! Handlers for the session's current group and what the listener-wide
//! switches are (their changes are operator ops: see `channel`).

use std::sync::Arc;

use crate::control::reply::Reply;
use crate::operator::{self, GroupKey};
use crate::pool::Group;
use crate::service::Service;

/// `group N` / `group NAME`: make it the session's current group.
pub(crate) fn select(groups: &[Arc<Group>], cur: &mut usize, g: &GroupKey) -> Reply {
    let found = match g {
        // One past the last group is allowed: `create` starts it.
        GroupKey::Index(i) if *i <= groups.len() => Ok(*i),
        GroupKey::Index(i) => Err(format!(
            "no such group {i} (groups 0-{})",
            groups.len().saturating_sub(1)
        )),
        k => operator::find_group(groups, k).map_err(|e| e.to_string()),
    };
    match found {
        Ok(i) => {
            *cur = i;
            Reply::ok(vec![])
        }
        Err(e) => Reply::err(e),
    }
}

/// `monitor show` (balance.fm's answer).
pub(crate) fn monitor_show(svc: &Service) -> Reply {
    if svc.cfg.monitor.is_none() {
        return Reply::line("no monitor configured");
    }
    Reply::line(format!(
        "monitor is {} (health per channel: show json)",
        if svc.ops.monitor_paused() {
            "disabled"
        } else {
            "enabled"
        }
    ))
}

/// `spin`: the operator hold now.
pub(crate) fn spin_show(svc: &Service) -> Reply {
    let hold = &svc.ops.hold;
    Reply::line(match hold.until() {
        Some(t) => format!(
            "spin is on for {} more; {} clients held",
            humantime::format_duration(remaining(t)),
            hold.held()
        ),
        None => format!("spin is off; {} clients held", hold.held()),
    })
}

/// Time left until `t`, whole milliseconds.
fn remaining(t: std::time::SystemTime) -> std::time::Duration {
    let d = t
        .duration_since(std::time::SystemTime::now())
        .unwrap_or_default();
    std::time::Duration::from_millis(d.as_millis() as u64)
}
