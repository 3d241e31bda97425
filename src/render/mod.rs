//! Every read-only view of the live state, built in one place and rendered
//! in one place: `show`'s table, `show json` and MRTG's lines ([`show`]),
//! the Prometheus exposition ([`prometheus`]) and the state file's
//! snapshot (`control::state`) all consume the [`ListenerView`] and
//! [`ChannelView`] built here ([`process`] reads this process's own
//! resources for the `process_*` metrics). Nothing here writes live state.

pub(crate) mod process;
pub(crate) mod prometheus;
pub(crate) mod show;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::{Failback, Host, Policy};
use crate::pool::{Admin, Channel, Group, ShownState, Target};
use crate::service::Service;
use crate::service::fence::fleet::FleetFenceView;
use crate::service::fleet::{FleetView, Role};

/// One channel at one instant.
#[derive(Debug, Clone)]
pub(crate) struct ChannelView {
    /// The channel's name (unique in the listener).
    pub(crate) name: String,
    /// Health checks run for it (`enable|disable health`).
    pub(crate) checked: bool,
    /// The configured weight (`weight` is the current one).
    pub(crate) initial_weight: u32,
    pub(crate) group: usize,
    pub(crate) index: usize,
    pub(crate) policy: Policy,
    pub(crate) state: ShownState,
    pub(crate) admin: Admin,
    pub(crate) up: bool,
    pub(crate) target: Arc<Target>,
    pub(crate) conns: u32,
    pub(crate) total: u64,
    pub(crate) maxc: u32,
    pub(crate) weight: u32,
    pub(crate) sent: u64,
    pub(crate) rcvd: u64,
    pub(crate) connect_failures: u64,
    pub(crate) checks_passed: u64,
    pub(crate) checks_failed: u64,
    pub(crate) check_micros: u64,
    /// Checks that found the server full (MySQL 1040/1129), and whether
    /// the last one did.
    pub(crate) checks_full: u64,
    pub(crate) full: bool,
    /// A replica not eligible until it has applied what it received.
    pub(crate) catching_up: bool,
    /// Replication lag in seconds from the last check (`max_lag=`), if
    /// known.
    pub(crate) lag: Option<u64>,
    /// Why the last check or connect failed (or "ok").
    pub(crate) last_reason: String,
}

impl ChannelView {
    /// The channel `index` of `group` (with that group's policy).
    pub(crate) fn of(group: usize, index: usize, policy: Policy, ch: &Channel) -> ChannelView {
        ChannelView {
            name: ch.name().to_string(),
            checked: ch.checked(),
            initial_weight: ch.initial_weight(),
            group,
            index,
            policy,
            state: ch.shown_state(),
            admin: ch.admin(),
            up: ch.is_up(),
            target: ch.target(),
            conns: ch.conns(),
            total: ch.total.load(Relaxed),
            maxc: ch.maxc(),
            weight: ch.weight(),
            sent: ch.sent.load(Relaxed),
            rcvd: ch.rcvd.load(Relaxed),
            connect_failures: ch.connect_failures.load(Relaxed),
            checks_passed: ch.checks_passed.load(Relaxed),
            checks_failed: ch.checks_failed.load(Relaxed),
            check_micros: ch.check_micros.load(Relaxed),
            checks_full: ch.checks_full.load(Relaxed),
            full: ch.is_full(),
            catching_up: ch.is_catching_up(),
            lag: ch.lag(),
            last_reason: ch.health().1,
        }
    }

    /// The host as configured: an IP literal or the name.
    pub(crate) fn host(&self) -> String {
        host_text(&self.target.host)
    }

    /// The address column: an IP literal as is; a name as its first
    /// resolved address like balance.fm (or the name if it did not resolve).
    pub(crate) fn shown_address(&self) -> String {
        match &self.target.host {
            Host::Ip(ip) => ip.to_string(),
            Host::Name(n) => self
                .target
                .addrs
                .first()
                .map(|a| a.ip().to_string())
                .unwrap_or_else(|| n.clone()),
        }
    }
}

/// An IP literal or a name, as text.
pub(crate) fn host_text(h: &Host) -> String {
    match h {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(n) => n.clone(),
    }
}

/// `rr` or `hash`: the lowercase policy word of `show json` and the state
/// file.
pub(crate) fn policy_word(p: Policy) -> &'static str {
    p.word()
}

/// Every channel of `groups`, in group then channel order.
pub(crate) fn channels(groups: &[Arc<Group>]) -> Vec<ChannelView> {
    groups
        .iter()
        .enumerate()
        .flat_map(|(g, grp)| {
            let policy = grp.policy();
            grp.channels
                .iter()
                .enumerate()
                .map(move |(i, ch)| ChannelView::of(g, i, policy, ch))
        })
        .collect()
}

/// A listener's `accept_proxy` counters.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct ProxyHeaders {
    pub(crate) accepted: u64,
    pub(crate) malformed: u64,
    pub(crate) slow: u64,
    pub(crate) untrusted: u64,
}

/// One listener at one instant: its counters, groups and channels.
#[derive(Debug, Clone)]
pub(crate) struct ListenerView {
    pub(crate) name: String,
    pub(crate) bind: SocketAddr,
    pub(crate) accepted: u64,
    pub(crate) refused: u64,
    /// `accept_proxy`: headers accepted, and connections closed for a
    /// malformed, slow or untrusted header.
    pub(crate) proxy_headers: ProxyHeaders,
    pub(crate) spinning: u64,
    /// Clients held by the operator (`spin on`) right now.
    pub(crate) held: u64,
    /// The end of the operator hold, if it is on.
    pub(crate) hold_until: Option<std::time::SystemTime>,
    /// `monitor disable`: active probes paused.
    pub(crate) monitor_paused: bool,
    /// Whether a monitor (`-m`) is configured.
    pub(crate) monitor: bool,
    pub(crate) failovers: u64,
    pub(crate) failover_events: u64,
    pub(crate) failback_events: u64,
    pub(crate) active: u64,
    pub(crate) failback: Failback,
    /// The group new connections start from (manual failback, switchover):
    /// the failback floor.
    pub(crate) floor: usize,
    /// The group new connections go to right now (None: no channel can
    /// take a client).
    pub(crate) serving: Option<usize>,
    /// Each group's policy and channel count.
    pub(crate) groups: Vec<(Policy, usize)>,
    /// Each group's name.
    pub(crate) group_names: Vec<String>,
    /// Each group's on-demand state (`on_empty:`/`on_idle:`; mostly None).
    pub(crate) group_demand: Vec<Option<crate::pool::demand::DemandView>>,
    pub(crate) channels: Vec<ChannelView>,
    /// Fleet mode's role and etcd state; `None` without fleet mode.
    pub(crate) fleet: Option<FleetView>,
    /// A fenced listener's fleet fence; `None` without both.
    pub(crate) fleet_fence: Option<FleetFenceView>,
    /// `route:` counters; `None` without routing.
    pub(crate) route: Option<RouteView>,
}

/// A routed listener's counters.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct RouteView {
    pub(crate) by: &'static str,
    pub(crate) hits: u64,
    pub(crate) misses: u64,
    pub(crate) rejects: u64,
    pub(crate) lookups: u64,
    pub(crate) lookup_errors: u64,
    pub(crate) stale: u64,
    /// Clients waiting for a lookup now.
    pub(crate) lookup_waiting: u64,
    /// Keys in the route file's table, and times it was read.
    pub(crate) file_keys: Option<u64>,
    pub(crate) file_loads: u64,
}

impl RouteView {
    pub(crate) fn of(r: &crate::route::Router) -> RouteView {
        let (lookups, lookup_errors, stale, lookup_waiting) =
            r.lookup.as_ref().map_or((0, 0, 0, 0), |l| {
                (
                    l.stats.lookups.load(Relaxed),
                    l.stats.errors.load(Relaxed),
                    l.stats.stale.load(Relaxed),
                    l.stats.waiting.load(Relaxed),
                )
            });
        RouteView {
            by: r.by.word(),
            hits: r.stats.hits.load(Relaxed),
            misses: r.stats.misses.load(Relaxed),
            rejects: r.stats.rejects.load(Relaxed),
            lookups,
            lookup_errors,
            stale,
            lookup_waiting,
            file_keys: r.file.as_ref().map(|f| f.keys() as u64),
            file_loads: r.file.as_ref().map_or(0, |f| f.loads.load(Relaxed)),
        }
    }
}

impl ListenerView {
    pub(crate) fn of(svc: &Service) -> ListenerView {
        let groups = svc.pool.groups();
        let s = &svc.stats;
        ListenerView {
            name: svc.cfg.name.clone(),
            bind: svc.cfg.bind,
            accepted: s.accepted.load(Relaxed),
            refused: s.refused.load(Relaxed),
            proxy_headers: ProxyHeaders {
                accepted: s.proxy_accepted.load(Relaxed),
                malformed: s.proxy_malformed.load(Relaxed),
                slow: s.proxy_slow.load(Relaxed),
                untrusted: s.proxy_untrusted.load(Relaxed),
            },
            spinning: s.spinning.load(Relaxed),
            held: svc.ops.hold.held(),
            hold_until: svc.ops.hold.until(),
            monitor_paused: svc.ops.monitor_paused(),
            monitor: svc.cfg.monitor.is_some(),
            failovers: s.failovers.load(Relaxed),
            failover_events: s.failover_events.load(Relaxed),
            failback_events: s.failback_events.load(Relaxed),
            active: s.active.load(Relaxed),
            failback: svc.cfg.failback,
            floor: svc.pool.floor(),
            serving: svc.pool.serving_group(),
            groups: groups
                .iter()
                .map(|g| (g.policy(), g.channels.len()))
                .collect(),
            group_names: groups.iter().map(|g| g.name().to_string()).collect(),
            group_demand: groups
                .iter()
                .map(|g| g.demand().map(|d| d.view()))
                .collect(),
            channels: channels(&groups),
            fleet: Some(svc.fleet.view()).filter(|f| f.role != Role::Off),
            fleet_fence: (svc.cfg.fence && svc.fleet.enabled()).then(|| svc.fence.fleet.view()),
            route: svc.route.as_deref().map(RouteView::of),
        }
    }
}

/// Process-wide splice pipe gauges.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Pipes {
    /// Held by busy connections.
    pub(crate) in_use: u64,
    /// Empty, kept for reuse.
    pub(crate) pooled: u64,
}

impl Pipes {
    pub(crate) fn now() -> Pipes {
        Pipes {
            in_use: crate::proxy::splice::pipes_in_use() as u64,
            pooled: crate::proxy::splice::pipes_pooled() as u64,
        }
    }
}

#[cfg(test)]
mod tests;
