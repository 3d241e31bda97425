//! The one listener builder. The command line and the config file both
//! fill a [`ListenerSpec`] with the values their user wrote (already through
//! the grammars, defaults not yet applied); [`ListenerSpec::build`] fills
//! the defaults, validates (timeouts, keepalive ranges, self-loops) and
//! returns the resolved [`ListenerConfig`]. Adding a listener option means
//! a field here, a flag in `cli` and a key in `file::raw`.
//!
//! Errors are typed ([`SpecError`]) so each input can word them in its own
//! terms: the flag for the command line, line and key for the file.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use super::monitor::MonitorSpec;
use super::selfloop::is_self_loop;
use super::{
    ChannelConfig, Cidr, ConnLogConfig, DEFAULT_CONNECT_TIMEOUT, Failback, GroupConfig, Keepalive,
    ListenerConfig,
};

/// Keepalive idle and interval must lie in this range (Linux's limits).
const KEEPALIVE_MIN: Duration = Duration::from_secs(1);
const KEEPALIVE_MAX: Duration = Duration::from_secs(32767);

/// A listener as written, from either input. `None` means "not given".
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListenerSpec {
    pub(crate) name: String,
    pub(crate) bind: SocketAddr,
    /// Channels with port 0 take the listener's port.
    pub(crate) groups: Vec<GroupConfig>,
    pub(crate) connect_timeout: Option<Duration>,
    /// Zero means "never".
    pub(crate) idle_timeout: Option<Duration>,
    pub(crate) client_keepalive: Option<Keepalive>,
    pub(crate) server_keepalive: Option<Keepalive>,
    pub(crate) source: Option<IpAddr>,
    pub(crate) autodisable: bool,
    pub(crate) hash_failover: bool,
    pub(crate) packet_dump: bool,
    /// Zero means "off".
    pub(crate) race: Option<Duration>,
    /// Zero means "off".
    pub(crate) spin: Option<Duration>,
    pub(crate) failback: Option<Failback>,
    pub(crate) on_down_shutdown: bool,
    pub(crate) on_up_shutdown_backup: bool,
    /// `fence:` in the file; the monitor's `fence`/`nofence` otherwise.
    pub(crate) fence: Option<bool>,
    /// Its own `on-down`/`on-up` flags add to the listener's.
    pub(crate) monitor: Option<MonitorSpec>,
    pub(crate) connection_log: Option<ConnLogConfig>,
    pub(crate) accept_proxy: Vec<Cidr>,
}

/// Which keepalive (`-k`/`client:` or `-K`/`server:`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Side {
    Client,
    Server,
}

/// A listener that does not validate.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum SpecError {
    #[error("the connect timeout must be positive")]
    ZeroConnectTimeout,
    #[error("keepalive idle and interval must be 1s-32767s")]
    KeepaliveRange(Side),
    /// Channel `index` of group `group` connects back to the listener.
    #[error("{channel} points at listener \"{listener}\" itself")]
    SelfLoop {
        group: usize,
        index: usize,
        channel: ChannelConfig,
        listener: String,
    },
    /// A group or channel name that is not one, or is used twice.
    #[error("{0}")]
    Name(#[from] super::names::NameError),
}

impl ListenerSpec {
    /// A spec with nothing but the name, bind address and groups given.
    pub(crate) fn new(name: String, bind: SocketAddr, groups: Vec<GroupConfig>) -> Self {
        ListenerSpec {
            name,
            bind,
            groups,
            connect_timeout: None,
            idle_timeout: None,
            client_keepalive: None,
            server_keepalive: None,
            source: None,
            autodisable: false,
            hash_failover: false,
            packet_dump: false,
            race: None,
            spin: None,
            failback: None,
            on_down_shutdown: false,
            on_up_shutdown_backup: false,
            fence: None,
            monitor: None,
            connection_log: None,
            accept_proxy: Vec::new(),
        }
    }

    /// Fill defaults, validate, resolve.
    pub(crate) fn build(self) -> Result<ListenerConfig, SpecError> {
        let ListenerSpec {
            name,
            bind,
            mut groups,
            connect_timeout,
            idle_timeout,
            client_keepalive,
            server_keepalive,
            source,
            autodisable,
            hash_failover,
            packet_dump,
            race,
            spin,
            failback,
            on_down_shutdown,
            on_up_shutdown_backup,
            fence,
            monitor,
            connection_log,
            accept_proxy,
        } = self;
        let connect_timeout = match connect_timeout {
            Some(d) if d.is_zero() => return Err(SpecError::ZeroConnectTimeout),
            Some(d) => d,
            None => DEFAULT_CONNECT_TIMEOUT,
        };
        for (side, k) in [
            (Side::Client, &client_keepalive),
            (Side::Server, &server_keepalive),
        ] {
            let in_range = |d: Duration| (KEEPALIVE_MIN..=KEEPALIVE_MAX).contains(&d);
            if let Some(k) = k {
                if !in_range(k.idle) || !in_range(k.interval) {
                    return Err(SpecError::KeepaliveRange(side));
                }
            }
        }
        for (gi, g) in groups.iter_mut().enumerate() {
            for (ci, c) in g.channels.iter_mut().enumerate() {
                if c.port == 0 {
                    c.port = bind.port();
                }
                if is_self_loop(bind, c) {
                    return Err(SpecError::SelfLoop {
                        group: gi,
                        index: ci,
                        channel: c.clone(),
                        listener: name,
                    });
                }
            }
        }
        super::names::fill(&mut groups)?;
        let nonzero = |d: Option<Duration>| d.filter(|d| !d.is_zero());
        let (mon_down, mon_up) = monitor.as_ref().map_or((false, false), |m| {
            (m.on_down_shutdown, m.on_up_shutdown_backup)
        });
        Ok(ListenerConfig {
            name,
            bind,
            dual_stack: matches!(bind.ip(), IpAddr::V6(v6) if v6.is_unspecified()),
            groups,
            connect_timeout,
            idle_timeout: nonzero(idle_timeout),
            client_keepalive,
            server_keepalive,
            source,
            autodisable,
            hash_failover,
            packet_dump,
            race: nonzero(race),
            spin: nonzero(spin),
            // A replication-aware monitor (`mysql:max_lag=`): returning by
            // itself to a recovered primary would let two groups take
            // writes at once; `switchover 0` is the failback.
            failback: failback.unwrap_or(
                if monitor.as_ref().is_some_and(|m| m.watches_replication()) {
                    Failback::Manual
                } else {
                    Failback::Auto
                },
            ),
            on_down_shutdown: on_down_shutdown || mon_down,
            on_up_shutdown_backup: on_up_shutdown_backup || mon_up,
            // One writer behind the groups (a MySQL role or replication
            // check): two groups must never both hold sessions.
            fence: fence
                .or(monitor.as_ref().and_then(|m| m.fence))
                .unwrap_or(monitor.as_ref().is_some_and(|m| m.guards_writer())),
            monitor,
            connection_log,
            accept_proxy,
            route: None,
        })
    }
}

/// Whether two listening sockets, each a bind address and whether it is
/// dual-stack, would collide on bind (EADDRINUSE): same port, and the same
/// address, or one is the wildcard of the other's family (`0.0.0.0:P`
/// covers `127.0.0.1:P`; a dual-stack `[::]:P` covers every address).
pub(crate) fn binds_overlap(a: (SocketAddr, bool), b: (SocketAddr, bool)) -> bool {
    if a.0.port() != b.0.port() {
        return false;
    }
    let (x, y) = (a.0.ip().to_canonical(), b.0.ip().to_canonical());
    let covers = |w: IpAddr, dual: bool, other: IpAddr| match w {
        IpAddr::V4(v4) => v4.is_unspecified() && other.is_ipv4(),
        IpAddr::V6(v6) => v6.is_unspecified() && (dual || other.is_ipv6()),
    };
    x == y || covers(x, a.1, y) || covers(y, b.1, x)
}

#[cfg(test)]
mod tests;
