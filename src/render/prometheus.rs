//! The Prometheus text exposition (format 0.0.4) of the listener and
//! channel views: series names, help texts and labels live here only.
//!
//! Rules the output keeps (`promtool check metrics` passes on it): base
//! units (seconds, bytes), counters end in `_total`, no gauge is named like
//! a counter without its suffix, and every series is unique: a channel is
//! labelled by listener, group and index (its `channel` address label alone
//! may repeat: `create` of an address that exists, or one listed twice).
//! Hand-written rather than through an encoder crate: the maintained one
//! (`prometheus-client`) writes OpenMetrics, whose counter naming the
//! classic text parser (promtool, older scrapers) does not accept, and the
//! values already live in our own atomics, read only at scrape time.

use std::fmt::{Display, Write as _};

use crate::pool::ShownState;
use crate::pool::demand::DemandView;
use crate::render::process::ProcessView;
use crate::render::{ChannelView, ListenerView, Pipes, RouteView};
use crate::service::fence::fleet::FleetFenceView;
use crate::service::fleet::{FleetView, Role};

type ListenerGetter = fn(&ListenerView) -> i64;
type ChannelGetter = fn(&ChannelView) -> f64;

/// Per-listener series: name, type, help, value.
const PER_LISTENER: [(&str, &str, &str, ListenerGetter); 14] = [
    (
        "balance_listener_accepted_total",
        "counter",
        "Connections accepted.",
        |l| l.accepted as i64,
    ),
    (
        "balance_listener_refused_total",
        "counter",
        "Clients closed because no channel could take them.",
        |l| l.refused as i64,
    ),
    (
        "balance_listener_proxy_headers_accepted_total",
        "counter",
        "PROXY headers accepted from sources listed in accept_proxy.",
        |l| l.proxy_headers.accepted as i64,
    ),
    (
        "balance_listener_proxy_headers_malformed_total",
        "counter",
        "Connections closed for a malformed PROXY header (or none) from a listed source.",
        |l| l.proxy_headers.malformed as i64,
    ),
    (
        "balance_listener_proxy_headers_slow_total",
        "counter",
        "Connections closed because their PROXY header was not complete in time.",
        |l| l.proxy_headers.slow as i64,
    ),
    (
        "balance_listener_proxy_headers_untrusted_total",
        "counter",
        "Connections closed for a PROXY header from a source not listed in accept_proxy.",
        |l| l.proxy_headers.untrusted as i64,
    ),
    (
        "balance_listener_failovers_total",
        "counter",
        "Connections served by a group other than the first tried.",
        |l| l.failovers as i64,
    ),
    (
        "balance_listener_failover_events_total",
        "counter",
        "Times traffic moved to a higher (backup) group.",
        |l| l.failover_events as i64,
    ),
    (
        "balance_listener_failback_events_total",
        "counter",
        "Times traffic moved back to a lower group.",
        |l| l.failback_events as i64,
    ),
    (
        "balance_listener_spinning",
        "gauge",
        "Clients held by --spin (no channel eligible) right now.",
        |l| l.spinning as i64,
    ),
    (
        "balance_listener_held",
        "gauge",
        "Clients held by the operator (spin on) right now.",
        |l| l.held as i64,
    ),
    (
        "balance_listener_active",
        "gauge",
        "Connections in the relay right now.",
        |l| l.active as i64,
    ),
    (
        "balance_listener_serving_group",
        "gauge",
        "Group new connections go to right now (-1: no channel can take a client).",
        |l| l.serving.map_or(-1, |g| g as i64),
    ),
    (
        "balance_listener_failback_floor",
        "gauge",
        "Group new connections start their walk from (manual failback, switchover).",
        |l| l.floor as i64,
    ),
];

/// Per-channel series: name, type, help, value.
const PER_CHANNEL: [(&str, &str, &str, ChannelGetter); 11] = [
    (
        "balance_channel_active_connections",
        "gauge",
        "Live connections (including connects in progress).",
        |c| f64::from(c.conns),
    ),
    (
        "balance_channel_connections_total",
        "counter",
        "Connections established.",
        |c| c.total as f64,
    ),
    (
        "balance_channel_connect_failures_total",
        "counter",
        "Failed connects.",
        |c| c.connect_failures as f64,
    ),
    (
        "balance_channel_checks_passed_total",
        "counter",
        "Health checks that passed.",
        |c| c.checks_passed as f64,
    ),
    (
        "balance_channel_checks_failed_total",
        "counter",
        "Health checks that failed.",
        |c| c.checks_failed as f64,
    ),
    (
        "balance_channel_checks_full_total",
        "counter",
        "Health checks that found the server full (MySQL 1040/1129): busy, not down.",
        |c| c.checks_full as f64,
    ),
    (
        "balance_channel_full",
        "gauge",
        "1 while the last health check found the server full.",
        |c| f64::from(u8::from(c.full)),
    ),
    (
        "balance_channel_catching_up",
        "gauge",
        "1 while a replica has not applied what it received (max_lag=): not eligible, not down.",
        |c| f64::from(u8::from(c.catching_up)),
    ),
    (
        "balance_channel_check_duration_seconds",
        "gauge",
        "Duration of the last health check.",
        |c| c.check_micros as f64 / 1e6,
    ),
    (
        "balance_channel_sent_bytes_total",
        "counter",
        "Bytes sent to the channel.",
        |c| c.sent as f64,
    ),
    (
        "balance_channel_received_bytes_total",
        "counter",
        "Bytes received from the channel.",
        |c| c.rcvd as f64,
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

/// The text being written.
struct Out(String);

impl Out {
    fn family(&mut self, name: &str, kind: &str, help: &str) {
        let _ = writeln!(self.0, "# HELP {name} {help}\n# TYPE {name} {kind}");
    }

    fn sample(&mut self, name: &str, labels: &str, v: impl Display) {
        if labels.is_empty() {
            let _ = writeln!(self.0, "{name} {v}");
        } else {
            let _ = writeln!(self.0, "{name}{{{labels}}} {v}");
        }
    }

    /// A family with one unlabelled sample.
    fn single(&mut self, name: &str, kind: &str, help: &str, v: impl Display) {
        self.family(name, kind, help);
        self.sample(name, "", v);
    }
}

/// The exposition text for these listeners, the process-wide gauges and
/// (where `/proc` has them) the process metrics.
pub(crate) fn exposition(
    listeners: &[ListenerView],
    pipes: Pipes,
    process: Option<ProcessView>,
) -> String {
    let mut o = Out(String::with_capacity(4096));
    o.family(
        "balance_build_info",
        "gauge",
        "Always 1; the version of the running binary.",
    );
    o.sample(
        "balance_build_info",
        &format!("version=\"{}\"", env!("CARGO_PKG_VERSION")),
        1,
    );
    if let Some(p) = process {
        process_series(&mut o, &p);
    }
    o.single(
        "balance_pipes_in_use",
        "gauge",
        "Splice pipes held by connections moving bytes.",
        pipes.in_use,
    );
    o.single(
        "balance_pipes_pooled",
        "gauge",
        "Empty splice pipes kept for reuse (bounded).",
        pipes.pooled,
    );
    o.single(
        "balance_log_dropped_total",
        "counter",
        "Connection log lines dropped: the writer's queue was full or its sink failed.",
        crate::connlog::dropped(),
    );
    for (name, kind, help, get) in PER_LISTENER {
        o.family(name, kind, help);
        for l in listeners {
            o.sample(name, &format!("listener=\"{}\"", esc(&l.name)), get(l));
        }
    }
    fleet_series(&mut o, listeners);
    route_series(&mut o, listeners);
    demand_series(&mut o, listeners);
    // Labels are built once per channel, then reused by every series.
    let channels: Vec<(String, &ChannelView)> = listeners
        .iter()
        .flat_map(|l| {
            let name = esc(&l.name);
            l.channels.iter().map(move |c| {
                let labels = format!(
                    "listener=\"{name}\",group=\"{}\",index=\"{}\",channel=\"{}\",name=\"{}\"",
                    c.group,
                    c.index,
                    esc(&c.target.to_string()),
                    esc(&c.name)
                );
                (labels, c)
            })
        })
        .collect();
    o.family(
        "balance_channel_state",
        "gauge",
        "1 for the channel's current state (ENA, dis, DIS, drn).",
    );
    for (labels, c) in &channels {
        for st in STATES {
            let l = format!("{labels},state=\"{}\"", st.as_str());
            o.sample("balance_channel_state", &l, u8::from(c.state == st));
        }
    }
    for (name, kind, help, get) in PER_CHANNEL {
        o.family(name, kind, help);
        for (labels, c) in &channels {
            o.sample(name, labels, get(c));
        }
    }
    // Only channels whose last check knew a lag (`max_lag=` on a replica
    // with its IO thread connected) have a sample.
    let lag = "balance_channel_replication_lag_seconds";
    o.family(
        lag,
        "gauge",
        "Replication lag from the last check (max_lag=).",
    );
    for (labels, c) in &channels {
        if let Some(l) = c.lag {
            o.sample(lag, labels, l);
        }
    }
    o.0
}

/// One family per row: name, type, help, the value of a view.
type Family<V> = (&'static str, &'static str, &'static str, fn(&V) -> u64);

/// Every family of `table`, a sample per row (labels, view); nothing
/// without rows.
fn table_series<V>(o: &mut Out, table: &[Family<V>], rows: &[(String, V)]) {
    if rows.is_empty() {
        return;
    }
    for (name, kind, help, get) in table {
        o.family(name, kind, help);
        for (labels, v) in rows {
            o.sample(name, labels, get(v));
        }
    }
}

/// Per routed listener.
const PER_ROUTE: [Family<RouteView>; 7] = [
    (
        "balance_route_hits_total",
        "counter",
        "Clients routed by the map, the route file or a fresh cached lookup.",
        |r| r.hits,
    ),
    (
        "balance_route_misses_total",
        "counter",
        "Clients given the default: no key, or nothing maps it.",
        |r| r.misses,
    ),
    (
        "balance_route_rejects_total",
        "counter",
        "Clients turned away by a reject target.",
        |r| r.rejects,
    ),
    (
        "balance_route_lookups_total",
        "counter",
        "Directory lookups made (one per key in flight, however many clients wait).",
        |r| r.lookups,
    ),
    (
        "balance_route_lookup_errors_total",
        "counter",
        "Directory lookups that failed or timed out.",
        |r| r.lookup_errors,
    ),
    (
        "balance_route_stale_total",
        "counter",
        "Answers served stale because the directory failed or was slow.",
        |r| r.stale,
    ),
    (
        "balance_route_lookup_waiting",
        "gauge",
        "Clients waiting for a directory lookup now.",
        |r| r.lookup_waiting,
    ),
];

/// Routing counters and the lookup gauge, for the listeners with `route:`.
fn route_series(o: &mut Out, listeners: &[ListenerView]) {
    let routed: Vec<(String, RouteView)> = listeners
        .iter()
        .filter_map(|l| {
            l.route
                .map(|r| (format!("listener=\"{}\"", esc(&l.name)), r))
        })
        .collect();
    table_series(o, &PER_ROUTE, &routed);
}

/// Per group started on demand.
const PER_DEMAND: [Family<DemandView>; 4] = [
    (
        "balance_group_starts_total",
        "counter",
        "Runs of the group's on_empty command.",
        |d| d.starts,
    ),
    (
        "balance_group_start_failures_total",
        "counter",
        "Starts after which no channel of the group was eligible within on_empty's timeout.",
        |d| d.start_failures,
    ),
    (
        "balance_group_stops_total",
        "counter",
        "Runs of the group's on_idle command.",
        |d| d.stops,
    ),
    (
        "balance_group_stop_failures_total",
        "counter",
        "Runs of on_idle that failed (non-zero exit, not run, or killed past its bound).",
        |d| d.stop_failures,
    ),
];

/// On-demand counters, for the groups with `on_empty:` or `on_idle:`.
fn demand_series(o: &mut Out, listeners: &[ListenerView]) {
    let groups: Vec<(String, DemandView)> = listeners
        .iter()
        .flat_map(|l| {
            let name = esc(&l.name);
            l.group_demand.iter().enumerate().filter_map(move |(g, d)| {
                let gname = l.group_names.get(g).map_or("", String::as_str);
                d.map(|d| (format!("listener=\"{name}\",group=\"{}\"", esc(gname)), d))
            })
        })
        .collect();
    table_series(o, &PER_DEMAND, &groups);
}

/// Fleet mode's gauges, for the listeners that run it.
fn fleet_series(o: &mut Out, listeners: &[ListenerView]) {
    let fleet: Vec<(String, &FleetView)> = listeners
        .iter()
        .filter_map(|l| l.fleet.as_ref().map(|f| (esc(&l.name), f)))
        .collect();
    if fleet.is_empty() {
        return;
    }
    o.family(
        "balance_fleet_role",
        "gauge",
        "1 for the instance's fleet role for this listener (prober, follower, alone).",
    );
    for (name, f) in &fleet {
        for r in Role::SHOWN {
            let l = format!("listener=\"{name}\",role=\"{}\"", r.as_str());
            o.sample("balance_fleet_role", &l, u8::from(f.role == r));
        }
    }
    o.family(
        "balance_fleet_etcd_up",
        "gauge",
        "1 while etcd answers this listener's fleet task.",
    );
    for (name, f) in &fleet {
        let l = format!("listener=\"{name}\"");
        o.sample("balance_fleet_etcd_up", &l, u8::from(f.etcd_up));
    }
    fleet_fence_series(o, listeners);
}

/// A fenced listener's fleet fence (fleet mode and `fence` only).
fn fleet_fence_series(o: &mut Out, listeners: &[ListenerView]) {
    let fenced: Vec<(String, &FleetFenceView)> = listeners
        .iter()
        .filter_map(|l| l.fleet_fence.as_ref().map(|f| (esc(&l.name), f)))
        .collect();
    if fenced.is_empty() {
        return;
    }
    type Get = fn(&FleetFenceView) -> u64;
    let series: [(&str, &str, &str, Get); 4] = [
        (
            "balance_fleet_fence_granted",
            "gauge",
            "1 while this member may send clients to the group the fleet decided (every live member fenced).",
            |f| u64::from(f.granted),
        ),
        (
            "balance_fleet_fence_waiting_members",
            "gauge",
            "Live members that have not yet fenced for the group the fleet decided.",
            |f| f.waiting_for.len() as u64,
        ),
        (
            "balance_fleet_fences_total",
            "counter",
            "Moves of the serving group granted here after every live member fenced.",
            |f| f.fences,
        ),
        (
            "balance_fleet_self_fences_total",
            "counter",
            "Times this member fenced itself after etcd stopped renewing its lease.",
            |f| f.self_fences,
        ),
    ];
    for (metric, kind, help, get) in series {
        o.family(metric, kind, help);
        for (name, f) in &fenced {
            let l = format!("listener=\"{name}\"");
            o.sample(metric, &l, get(f));
        }
    }
}

/// The standard process metrics (the names every client library uses).
fn process_series(o: &mut Out, p: &ProcessView) {
    o.single(
        "process_cpu_seconds_total",
        "counter",
        "Total user and system CPU time spent in seconds.",
        p.cpu_seconds,
    );
    o.single(
        "process_resident_memory_bytes",
        "gauge",
        "Resident memory size in bytes.",
        p.resident_bytes,
    );
    o.single(
        "process_virtual_memory_bytes",
        "gauge",
        "Virtual memory size in bytes.",
        p.virtual_bytes,
    );
    o.single(
        "process_open_fds",
        "gauge",
        "Number of open file descriptors.",
        p.open_fds,
    );
    o.single(
        "process_max_fds",
        "gauge",
        "Maximum number of open file descriptors.",
        p.max_fds,
    );
    o.single(
        "process_start_time_seconds",
        "gauge",
        "Start time of the process since unix epoch in seconds.",
        p.start_time,
    );
}
