//! The Prometheus text exposition (format 0.0.4) of the listener and
//! channel views: series names, help texts and labels live here only.

use std::fmt::Write as _;

use crate::pool::ShownState;
use crate::render::{ChannelView, ListenerView, Pipes};

type ListenerGetter = fn(&ListenerView) -> u64;
type ChannelGetter = fn(&ChannelView) -> u64;

/// Per-listener series: name, type, help, value.
const PER_LISTENER: [(&str, &str, &str, ListenerGetter); 8] = [
    (
        "balance_listener_accepted_total",
        "counter",
        "Connections accepted.",
        |l| l.accepted,
    ),
    (
        "balance_listener_refused_total",
        "counter",
        "Clients closed because no channel could take them.",
        |l| l.refused,
    ),
    (
        "balance_listener_failovers_total",
        "counter",
        "Connections served by a group other than the first tried.",
        |l| l.failovers,
    ),
    (
        "balance_listener_failover_events_total",
        "counter",
        "Times traffic moved to a higher (backup) group.",
        |l| l.failover_events,
    ),
    (
        "balance_listener_failback_events_total",
        "counter",
        "Times traffic moved back to a lower group.",
        |l| l.failback_events,
    ),
    (
        "balance_listener_spinning",
        "gauge",
        "Clients held by --spin right now.",
        |l| l.spinning,
    ),
    (
        "balance_listener_held",
        "gauge",
        "Clients held by the operator (spin on) right now.",
        |l| l.held,
    ),
    (
        "balance_listener_active",
        "gauge",
        "Connections in the relay right now.",
        |l| l.active,
    ),
];

/// Per-channel series: name, type, help, value.
const PER_CHANNEL: [(&str, &str, &str, ChannelGetter); 8] = [
    (
        "balance_channel_connections",
        "gauge",
        "Live connections (including connects in progress).",
        |c| u64::from(c.conns),
    ),
    (
        "balance_channel_connections_total",
        "counter",
        "Connections established.",
        |c| c.total,
    ),
    (
        "balance_channel_connect_failures_total",
        "counter",
        "Failed connects.",
        |c| c.connect_failures,
    ),
    (
        "balance_channel_checks_passed_total",
        "counter",
        "Health checks that passed.",
        |c| c.checks_passed,
    ),
    (
        "balance_channel_checks_failed_total",
        "counter",
        "Health checks that failed.",
        |c| c.checks_failed,
    ),
    (
        "balance_channel_check_duration_microseconds",
        "gauge",
        "Duration of the last health check.",
        |c| c.check_micros,
    ),
    (
        "balance_channel_sent_bytes_total",
        "counter",
        "Bytes sent to the channel.",
        |c| c.sent,
    ),
    (
        "balance_channel_received_bytes_total",
        "counter",
        "Bytes received from the channel.",
        |c| c.rcvd,
    ),
];

/// The states `balance_channel_state` has one series for.
const STATES: [ShownState; 4] = [
    ShownState::Ena,
    ShownState::SoftDisabled,
    ShownState::HardDisabled,
    ShownState::Drain,
];

/// Escape a label value (backslash, quote, newline).
fn esc(s: &str) -> String {
    s.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The exposition text for these listeners.
pub fn exposition(listeners: &[ListenerView], pipes: Pipes) -> String {
    let mut o = String::with_capacity(4096);
    let _ = writeln!(
        o,
        "# HELP balance_pipes_in_use Splice pipes held by connections moving bytes.\n# TYPE balance_pipes_in_use gauge\nbalance_pipes_in_use {}\n# HELP balance_pipes_pooled Empty splice pipes kept for reuse (bounded).\n# TYPE balance_pipes_pooled gauge\nbalance_pipes_pooled {}",
        pipes.in_use, pipes.pooled
    );
    listener_series(&mut o, listeners);
    // Labels are built once per channel, then reused by every series.
    let channels: Vec<(String, &ChannelView)> = listeners
        .iter()
        .flat_map(|l| {
            let name = esc(&l.name);
            l.channels.iter().map(move |c| {
                let labels = format!(
                    "listener=\"{name}\",group=\"{}\",channel=\"{}\"",
                    c.group,
                    esc(&c.target.to_string())
                );
                (labels, c)
            })
        })
        .collect();
    channel_state_series(&mut o, &channels);
    for (name, kind, help, get) in PER_CHANNEL {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (labels, c) in &channels {
            let _ = writeln!(o, "{name}{{{labels}}} {}", get(c));
        }
    }
    o
}

fn listener_series(o: &mut String, listeners: &[ListenerView]) {
    for (name, kind, help, get) in PER_LISTENER {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for l in listeners {
            let _ = writeln!(o, "{name}{{listener=\"{}\"}} {}", esc(&l.name), get(l));
        }
    }
    let _ = writeln!(
        o,
        "# HELP balance_listener_failover_group Group new connections start from (manual failback).\n# TYPE balance_listener_failover_group gauge"
    );
    for l in listeners {
        let _ = writeln!(
            o,
            "balance_listener_failover_group{{listener=\"{}\"}} {}",
            esc(&l.name),
            l.floor
        );
    }
}

fn channel_state_series(o: &mut String, channels: &[(String, &ChannelView)]) {
    let _ = writeln!(
        o,
        "# HELP balance_channel_state 1 for the channel's current state (ENA, dis, DIS, drn).\n# TYPE balance_channel_state gauge"
    );
    for (labels, c) in channels {
        for st in STATES {
            let _ = writeln!(
                o,
                "balance_channel_state{{{labels},state=\"{}\"}} {}",
                st.as_str(),
                u8::from(c.state == st)
            );
        }
    }
}
