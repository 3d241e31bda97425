//! The control socket's output formats: `show`'s table (balance's columns
//! and widths), `show json` (one line, every field) and MRTG's four lines.

use std::fmt::Write as _;
use std::time::Duration;

use serde_json::json;

use crate::config::Failback;
use crate::render::{ChannelView, ListenerView, Pipes, policy_word};
use crate::service::fence::fleet::FleetFenceView;
use crate::service::fleet::{FleetView, Role};

/// balance's `show`: same columns and widths; the address column widens
/// when an address needs more than 16 characters.
pub(crate) fn table(channels: &[ChannelView]) -> Vec<String> {
    let addrs: Vec<String> = channels.iter().map(ChannelView::shown_address).collect();
    let w = addrs.iter().map(String::len).max().unwrap_or(0).max(16);
    let mut out = Vec::with_capacity(channels.len() + 1);
    out.push(format!(
        "{:>3} {:>4} {:>2} {:>3} {:>w$} {:>5} {:>4} {:>11} {:>4} {:>11} {:>11}",
        "GRP", "Type", "#", "S", "ip-address", "port", "c", "totalc", "maxc", "sent", "rcvd"
    ));
    for (c, addr) in channels.iter().zip(addrs) {
        let mut s = String::new();
        let _ = write!(
            s,
            "{:>3} {:>4} {:>2} {:>3} {:>w$} {:>5} {:>4} {:>11} {:>4} {:>11} {:>11}",
            c.group,
            c.policy.as_str(),
            c.index,
            c.state.as_str(),
            addr,
            c.target.port,
            c.conns,
            c.total,
            c.maxc,
            c.sent,
            c.rcvd,
        );
        out.push(s);
    }
    out
}

/// `show json`: one line, every field.
pub(crate) fn json(l: &ListenerView, pipes: Pipes) -> String {
    let channels: Vec<_> = l
        .channels
        .iter()
        .map(|c| {
            json!({
                "name": c.name,
                "group": c.group,
                "checked": c.checked,
                "initial_weight": c.initial_weight,
                "index": c.index,
                "type": policy_word(c.policy),
                "state": c.state.as_str(),
                "admin": c.admin,
                "up": c.up,
                "host": c.host(),
                "port": c.target.port,
                "addrs": c.target.addrs.iter().map(|a| a.to_string()).collect::<Vec<_>>(),
                "c": c.conns,
                "totalc": c.total,
                "maxc": c.maxc,
                "weight": c.weight,
                "sent": c.sent,
                "rcvd": c.rcvd,
                "connect_failures": c.connect_failures,
                "checks_passed": c.checks_passed,
                "checks_failed": c.checks_failed,
                "check_micros": c.check_micros,
                "checks_full": c.checks_full,
                "full": c.full,
                "catching_up": c.catching_up,
                "lag_seconds": c.lag,
                "last_reason": c.last_reason,
            })
        })
        .collect();
    let v = json!({
        "listener": {
            "name": l.name,
            "bind": l.bind.to_string(),
            "accepted": l.accepted,
            "refused": l.refused,
            "proxy_headers": {
                "accepted": l.proxy_headers.accepted,
                "malformed": l.proxy_headers.malformed,
                "slow": l.proxy_headers.slow,
                "untrusted": l.proxy_headers.untrusted,
            },
            "spinning": l.spinning,
            "held": l.held,
            "spin": if l.hold_until.is_some() { "on" } else { "off" },
            "spin_remaining_ms": l.hold_until.map(|t| {
                t.duration_since(std::time::SystemTime::now()).unwrap_or_default().as_millis() as u64
            }),
            "monitor": match (l.monitor, l.monitor_paused) {
                (false, _) => "none",
                (true, false) => "enabled",
                (true, true) => "disabled",
            },
            "failovers": l.failovers,
            "failover_events": l.failover_events,
            "failback_events": l.failback_events,
            "active": l.active,
            "failback": match l.failback {
                Failback::Auto => "auto",
                Failback::Manual => "manual",
            },
            "failback_floor": l.floor,
            "serving_group": l.serving,
            "route": l.route.map(|r| json!({
                "by": r.by,
                "hits": r.hits,
                "misses": r.misses,
                "rejects": r.rejects,
                "lookups": r.lookups,
                "lookup_errors": r.lookup_errors,
                "stale": r.stale,
                "lookup_waiting": r.lookup_waiting,
                "file_keys": r.file_keys,
                "file_loads": r.file_loads,
            })),
            "fleet": l.fleet.as_ref().map(|f| json!({
                "role": f.role.as_str(),
                "etcd": if f.etcd_up { "ok" } else { "unreachable" },
                "id": f.id,
                "prober": f.prober,
                "since_ms": f.since_ms,
                "probing": f.probing,
                "members": f.members.iter().map(|m| json!({
                    "id": m.id,
                    "role": m.role.as_str(),
                    "pid": m.pid,
                    "host": m.host,
                    "since_ms": m.since_ms,
                })).collect::<Vec<_>>(),
                "fence": l.fleet_fence.as_ref().map(fleet_fence_json),
            })),
        },
        // Process-wide: splice pipes held by busy connections, and pooled.
        "pipes": {
            "in_use": pipes.in_use,
            "pooled": pipes.pooled,
        },
        // Process-wide: connection log lines dropped (full or failing sink).
        "log_dropped": crate::connlog::dropped(),
        "groups": l.groups.iter().enumerate().map(|(g, (policy, n))| json!({
            "name": l.group_names.get(g),
            "group": g,
            "type": policy_word(*policy),
            "channels": n,
            "on_demand": l.group_demand.get(g).copied().flatten().map(|d| json!({
                "state": d.state,
                "starts": d.starts,
                "start_failures": d.start_failures,
                "stops": d.stops,
                "stop_failures": d.stop_failures,
                "last_start_ms": d.last_start_ms,
            })),
        })).collect::<Vec<_>>(),
        "channels": channels,
    });
    v.to_string()
}

/// `listener.fleet.fence`: a fenced listener's fleet fence.
fn fleet_fence_json(x: &FleetFenceView) -> serde_json::Value {
    json!({
        "group": x.decided,
        "epoch": x.epoch,
        "granted": x.granted,
        "waiting_for": x.waiting_for,
        "fences": x.fences,
        "self_fences": x.self_fences,
        "last": x.last.as_ref().map(|f| json!({
            "from": f.from,
            "to": f.to,
            "members": f.members,
            "reset": f.reset,
            "held_ms": f.held_ms,
            "at_ms": f.at_ms,
        })),
    })
}

/// `show`'s line on where traffic goes, under the table of a listener with
/// more than one group (or with nothing to serve): the group new
/// connections go to now, and the failback floor when it is not group 0.
pub(crate) fn serving_line(l: &ListenerView) -> Option<String> {
    match l.serving {
        None => Some("serving group none: no channel can take a client".to_string()),
        Some(_) if l.groups.len() < 2 => None,
        Some(g) if l.floor == 0 => Some(format!("serving group {g}")),
        Some(g) => Some(format!("serving group {g} (failback floor {})", l.floor)),
    }
}

/// `show`'s last line in fleet mode: the role, etcd, the prober.
pub(crate) fn fleet_line(f: &FleetView) -> String {
    let prober = match (&f.prober, f.role) {
        (_, Role::Prober) => "this instance".to_string(),
        (Some(p), _) => p.clone(),
        (None, _) => "none".to_string(),
    };
    let since = std::time::UNIX_EPOCH + Duration::from_millis(f.since_ms);
    let for_s = std::time::SystemTime::now()
        .duration_since(since)
        .unwrap_or_default()
        .as_secs();
    format!(
        "fleet: {} for {for_s}s, etcd {}, prober {prober}, id {}",
        f.role.as_str(),
        if f.etcd_up { "ok" } else { "unreachable" },
        f.id
    )
}

/// Which pair of counters an MRTG query asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mrtg {
    /// Bytes received, bytes sent.
    Bytes,
    /// Connections total, connections now.
    Conns,
}

/// MRTG's four lines: two counters, the uptime, the channel's name.
pub(crate) fn mrtg(c: &ChannelView, what: Mrtg, up: Duration) -> Vec<String> {
    let (a, b) = match what {
        Mrtg::Bytes => (c.rcvd, c.sent),
        Mrtg::Conns => (c.total, u64::from(c.conns)),
    };
    vec![
        a.to_string(),
        b.to_string(),
        uptime(up),
        format!("group {} channel {}", c.group, c.index),
    ]
}

/// MRTG's third line: the uptime.
pub(crate) fn uptime(d: Duration) -> String {
    let s = d.as_secs();
    format!(
        "{} days, {:02}:{:02}:{:02}",
        s / 86_400,
        s % 86_400 / 3600,
        s % 3600 / 60,
        s % 60
    )
}
