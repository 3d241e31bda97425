//! One listener at runtime: its resolved config, its pool, its counters.
//! Shared by the accept loop, connection tasks, the monitor and the control
//! socket. Counters are atomics written by the data path; channel health is
//! written only through [`Service::report`] (`service/report.rs`).

pub(crate) mod demand;
pub(crate) mod ending;
pub(crate) mod fence;
pub(crate) mod fleet;
pub(crate) mod hold;
mod report;

use std::net::{SocketAddr, ToSocketAddrs};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};

use tokio::sync::Notify;

use crate::config::{Host, ListenerConfig};
use crate::health::RiseFallParams;
use crate::pool::{Pool, SelectOpts};
use hold::Hold;

/// Per-listener counters.
#[derive(Debug, Default)]
pub(crate) struct ListenerStats {
    pub(crate) accepted: AtomicU64,
    /// Clients closed because no backend could be reached.
    pub(crate) refused: AtomicU64,
    /// Clients held right now by `--spin`.
    pub(crate) spinning: AtomicU64,
    /// Connections served by a group other than the first one tried.
    pub(crate) failovers: AtomicU64,
    /// Connections in the relay right now.
    pub(crate) active: AtomicU64,
    /// The group that served the last connection.
    pub(crate) served_group: AtomicU64,
    /// Times traffic moved to a higher (backup) group / back to a lower one.
    pub(crate) failover_events: AtomicU64,
    pub(crate) failback_events: AtomicU64,
    /// Rate limit of the warning for refused clients.
    pub(crate) refused_log: crate::logging::Every,
    /// `accept_proxy`: PROXY headers accepted, and connections closed for
    /// a malformed header, a header not complete in time, or a header
    /// from a source outside the list.
    pub(crate) proxy_accepted: AtomicU64,
    pub(crate) proxy_malformed: AtomicU64,
    pub(crate) proxy_slow: AtomicU64,
    pub(crate) proxy_untrusted: AtomicU64,
    /// Rate limit of the warning for refused PROXY headers.
    pub(crate) proxy_log: crate::logging::Every,
}

impl ListenerStats {
    /// Note which group served a connection; count a move between groups.
    /// Returns the previous group when it changed.
    fn group_changed(&self, group: usize) -> Option<u64> {
        let g = group as u64;
        if self.served_group.load(Relaxed) == g {
            return None;
        }
        let prev = self.served_group.swap(g, Relaxed);
        match g.cmp(&prev) {
            std::cmp::Ordering::Greater => self.failover_events.fetch_add(1, Relaxed),
            std::cmp::Ordering::Less => self.failback_events.fetch_add(1, Relaxed),
            std::cmp::Ordering::Equal => return None,
        };
        Some(prev)
    }
}

/// Listener-wide operator state (`spin on|off`, `monitor
/// enable|disable`): written by the control socket and by the state file at
/// start; shared by the Services a reload makes for the same listener.
#[derive(Debug, Default)]
pub(crate) struct Operator {
    pub(crate) hold: Hold,
    monitor_off: AtomicBool,
    /// Wakes the monitor when active probing resumes.
    pub(crate) monitor_resumed: Notify,
}

impl Operator {
    /// Whether active probing is paused (`monitor disable`).
    pub(crate) fn monitor_paused(&self) -> bool {
        self.monitor_off.load(Relaxed)
    }

    /// Pause or resume active probing; returns the previous setting.
    pub(crate) fn pause_monitor(&self, off: bool) -> bool {
        let was = self.monitor_off.swap(off, Relaxed);
        if !off {
            self.monitor_resumed.notify_waiters();
        }
        was
    }
}

pub(crate) struct Service {
    pub(crate) cfg: ListenerConfig,
    pub(crate) pool: Pool,
    /// Shared with the Service that replaces this one on reload.
    pub(crate) stats: Arc<ListenerStats>,
    /// Rise/fall used for passive detection (the monitor's, or defaults).
    pub(crate) rise_fall: RiseFallParams,
    /// Asks the monitor to probe now (after a passive failure).
    pub(crate) reprobe: Notify,
    /// Operator hold and monitor switch; kept across reloads.
    pub(crate) ops: Arc<Operator>,
    /// Fleet mode's role and hooks (`Role::Off` without fleet); kept
    /// across reloads.
    pub(crate) fleet: Arc<fleet::FleetState>,
    /// The serving group of a fencing listener (`cfg.fence`); kept across
    /// reloads.
    pub(crate) fence: Arc<fence::Fence>,
    /// The connection log (`cfg.connection_log`); `None`: connections
    /// take the plain path.
    pub(crate) connlog: Option<crate::connlog::Log>,
    /// `route:`: picks each client's group; kept across a reload that
    /// leaves `route:` and the group names as they were (its cache too).
    pub(crate) route: Option<Arc<crate::route::Router>>,
    /// Some group has `on_empty:`: a client that finds nothing may be held
    /// for it (see [`demand`]).
    pub(crate) on_demand: bool,
}

fn has_on_empty(cfg: &ListenerConfig) -> bool {
    cfg.groups
        .iter()
        .any(|g| g.on_demand.as_ref().is_some_and(|d| d.on_empty.is_some()))
}

fn select_opts(cfg: &ListenerConfig) -> SelectOpts {
    SelectOpts {
        hash_failover: cfg.hash_failover,
        failback: cfg.failback,
        full_holds: cfg.spin.is_some(),
        no_spill: cfg.fence,
    }
}

impl Service {
    /// Bookkeeping for a connection served by `group`: manual failback's
    /// floor, the backup-connection counter, and failover/failback events
    /// (logged once per move, not per connection). A routed client
    /// (`from`) counts a failover only past its own group, and moves no
    /// listener-wide state (its group is its key's, not the listener's).
    pub(crate) fn served_by(&self, group: usize, from: Option<usize>) {
        if let Some(from) = from {
            if group > from {
                self.stats.failovers.fetch_add(1, Relaxed);
            }
            return;
        }
        self.pool.served_by(group);
        if group > 0 {
            self.stats.failovers.fetch_add(1, Relaxed);
        }
        if let Some(prev) = self.stats.group_changed(group) {
            let from =
                usize::try_from(prev).map_or_else(|_| String::new(), |g| self.pool.group_name(g));
            let to = self.pool.group_name(group);
            tracing::info!(listener = %self.cfg.name, %from, %to, "traffic moved from group {prev} to group {group}");
        }
    }

    pub(crate) fn new(cfg: ListenerConfig, rise_fall: RiseFallParams) -> Service {
        Service::new_with(cfg, rise_fall, resolve)
    }

    /// Like [`Service::new`] with a given resolver (reload resolves ahead,
    /// off the runtime thread).
    pub(crate) fn new_with(
        cfg: ListenerConfig,
        rise_fall: RiseFallParams,
        resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
    ) -> Service {
        let opts = select_opts(&cfg);
        let pool = Pool::new(&cfg.groups, opts, warn_unresolved(&cfg.name, resolve));
        let route = router(&cfg);
        let on_demand = has_on_empty(&cfg);
        Service {
            connlog: connlog(&cfg),
            cfg,
            pool,
            stats: Arc::default(),
            rise_fall,
            reprobe: Notify::new(),
            ops: Arc::default(),
            fleet: Arc::default(),
            fence: Arc::default(),
            route,
            on_demand,
        }
    }
}

fn router(cfg: &ListenerConfig) -> Option<Arc<crate::route::Router>> {
    cfg.route
        .as_ref()
        .map(|r| Arc::new(crate::route::Router::new(r, &cfg.name)))
}

impl Service {
    /// The Service for a changed `cfg` on the same bind (reload): channels
    /// with the same host:port in the same group position are kept (see
    /// [`Pool::rebuild`]), and so are the listener counters and the
    /// operator state (hold, monitor switch).
    pub(crate) fn rebuild(
        &self,
        cfg: ListenerConfig,
        rise_fall: RiseFallParams,
        resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
    ) -> Service {
        let opts = select_opts(&cfg);
        let route = if cfg.route == self.cfg.route {
            self.route.clone()
        } else {
            router(&cfg)
        };
        let pool = self.pool.rebuild(
            &self.cfg.groups,
            &cfg.groups,
            opts,
            warn_unresolved(&cfg.name, resolve),
        );
        let on_demand = has_on_empty(&cfg);
        Service {
            connlog: connlog(&cfg),
            cfg,
            pool,
            stats: Arc::clone(&self.stats),
            rise_fall,
            reprobe: Notify::new(),
            ops: Arc::clone(&self.ops),
            fleet: Arc::clone(&self.fleet),
            fence: Arc::clone(&self.fence),
            route,
            on_demand,
        }
    }
}

fn connlog(cfg: &ListenerConfig) -> Option<crate::connlog::Log> {
    let c = cfg.connection_log.as_ref()?;
    crate::connlog::Log::open(&cfg.name, c)
}

/// `resolve`, with a warning for a name that gives no address (at start
/// and reload: the channel starts down until a later lookup finds it).
fn warn_unresolved<'a>(
    listener: &'a str,
    resolve: impl Fn(&Host, u16) -> Vec<SocketAddr> + 'a,
) -> impl Fn(&Host, u16) -> Vec<SocketAddr> + 'a {
    move |host, port| {
        let addrs = resolve(host, port);
        if addrs.is_empty() && matches!(host, Host::Name(_)) {
            tracing::warn!(
                listener = %listener,
                "channel {host}:{port}: the name does not resolve; the channel is down until it does (looked up again periodically)"
            );
        }
        addrs
    }
}

/// Resolve a host to all its addresses (blocking; at start and on
/// re-resolution only). A name that does not resolve gives no addresses.
pub(crate) fn resolve(host: &Host, port: u16) -> Vec<SocketAddr> {
    match host {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, port)],
        Host::Name(n) => {
            let mut v: Vec<SocketAddr> = (n.as_str(), port)
                .to_socket_addrs()
                .map(|it| it.collect())
                .unwrap_or_default();
            v.dedup();
            v
        }
    }
}

#[cfg(test)]
mod tests;
