//! The resolved configuration model shared by the command line and the
//! config file. Everything here is plain data: parsed once, validated, with
//! defaults filled in. Runtime code never re-parses strings.
//!
//! The pipeline, the same for both inputs:
//! - [`grammar`], [`monitor_spec`], [`services`]: tokens → values;
//! - [`build`]: a [`ListenerSpec`] (values as written) → [`ListenerConfig`]
//!   (defaults filled, validated, self-loops refused, see [`selfloop`]);
//! - [`overlay`]: the command line's globals, which win where given;
//! - [`file`]: the YAML file → raw model → specs; `cli` is the argv side.

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use crate::atomic_enum::{U8Enum, u8_enum};

pub(crate) mod build;
pub(crate) mod cidr;
pub(crate) mod demand;
pub(crate) mod error;
pub(crate) mod file;
pub(crate) mod fleet;
pub(crate) mod grammar;
pub(crate) mod monitor;
pub(crate) mod monitor_spec;
pub(crate) mod names;
pub(crate) mod overlay;
pub(crate) mod route;
pub(crate) mod selfloop;
pub(crate) mod services;

pub(crate) use crate::proxy_header::Version as ProxyVersion;
pub(crate) use build::{ListenerSpec, SpecError};
pub(crate) use cidr::Cidr;
pub(crate) use error::{BadValue, quote};
pub(crate) use file::load as load_file;
pub(crate) use fleet::FleetConfig;
pub(crate) use grammar::parse_duration;
pub(crate) use overlay::Overlay;
pub(crate) use selfloop::{is_self_loop_addr, loop_target, resolved_loops, unresolved};

use monitor::MonitorSpec;

/// Default connect timeout (balance's `-t` default).
pub(crate) const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default grace period for live connections on SIGTERM/SIGINT.
pub(crate) const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default period of hostname re-resolution.
pub(crate) const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default runtime worker threads (a single-threaded runtime).
pub(crate) const DEFAULT_THREADS: usize = 1;

/// Whole-process configuration: global options plus one or more listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub(crate) global: Global,
    pub(crate) listeners: Vec<ListenerConfig>,
}

/// Process-wide options.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Global {
    /// Stay in the foreground (`-f`); otherwise daemonize.
    pub(crate) foreground: bool,
    /// Debug logging (`-d`).
    pub(crate) debug: bool,
    pub(crate) log_format: LogFormat,
    /// Log file when daemonized (otherwise syslog).
    pub(crate) log_file: Option<PathBuf>,
    pub(crate) pidfile: Option<PathBuf>,
    /// Grace period for live connections at shutdown.
    pub(crate) grace: Duration,
    /// Global connection limit; `None` means derived from RLIMIT_NOFILE.
    pub(crate) max_conns: Option<usize>,
    /// Runtime worker threads; 1 means a single-threaded runtime.
    pub(crate) threads: usize,
    /// Force the buffered relay (no splice), for tests and odd platforms.
    pub(crate) no_splice: bool,
    /// Explicit control socket path (`--control`).
    pub(crate) control: Option<PathBuf>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) user: Option<String>,
    /// `--metrics ADDR`: serve Prometheus text on `GET /metrics`.
    pub(crate) metrics: Option<SocketAddr>,
    /// How often host names are re-resolved (config `resolve_interval`).
    pub(crate) resolve_interval: Duration,
    /// Fleet mode (`fleet:` / `--fleet`); `None`: standalone.
    pub(crate) fleet: Option<FleetConfig>,
    /// HAProxy's runtime API on a Unix socket (`haproxy_socket:` /
    /// `--haproxy-socket`); `None`: off.
    pub(crate) haproxy_socket: Option<HaproxySocket>,
}

/// Where and for whom the HAProxy-compatible runtime socket is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct HaproxySocket {
    pub(crate) path: PathBuf,
    /// Permission bits of the socket file: 0600 (default) or 0660, 0640...
    /// (never any bit for others).
    pub(crate) mode: u32,
    /// The socket file's group (name or number): its members may connect
    /// when `mode` lets the group write.
    pub(crate) group: Option<String>,
}

impl HaproxySocket {
    pub(crate) const DEFAULT_MODE: u32 = 0o600;

    /// The socket at `path` with the defaults.
    pub(crate) fn at(path: PathBuf) -> HaproxySocket {
        HaproxySocket {
            path,
            mode: Self::DEFAULT_MODE,
            group: None,
        }
    }

    /// A mode as written (`0660`, `660`, octal), or why not.
    pub(crate) fn parse_mode(s: &str) -> Result<u32, String> {
        let m = u32::from_str_radix(s.trim_start_matches("0o"), 8)
            .map_err(|_| format!("bad mode {}: use octal such as 0600 or 0660", quote(s)))?;
        if m & !0o770 != 0 || m & 0o600 != 0o600 {
            return Err(format!(
                "bad mode {}: the owner needs rw (0600) and others get nothing (at most 0660)",
                quote(s)
            ));
        }
        Ok(m)
    }
}

impl Default for Global {
    fn default() -> Self {
        Global {
            foreground: false,
            debug: false,
            log_format: LogFormat::Text,
            log_file: None,
            pidfile: None,
            grace: DEFAULT_GRACE,
            max_conns: None,
            threads: DEFAULT_THREADS,
            no_splice: false,
            control: None,
            state_file: None,
            user: None,
            metrics: None,
            resolve_interval: DEFAULT_RESOLVE_INTERVAL,
            fleet: None,
            haproxy_socket: None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LogFormat {
    Text,
    Json,
}

/// `connection_log:` / `--connection-log`: one line per connection.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) struct ConnLogConfig {
    pub(crate) target: ConnLogTarget,
    pub(crate) format: ConnLogFormat,
}

/// Where connection log lines go.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum ConnLogTarget {
    /// Appended to a file; reopened on SIGUSR1 and when the path moves.
    File(PathBuf),
    /// Datagrams to a syslog socket (`syslog` is `/dev/log`).
    Syslog(PathBuf),
    Stderr,
}

/// The layout of a connection log line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum ConnLogFormat {
    /// HAProxy's `option tcplog` layout.
    Tcplog,
    /// One JSON object: the same fields and a few more.
    Json,
}

impl ConnLogTarget {
    /// `syslog`, `syslog:PATH`, `stderr`, or a file path.
    pub(crate) fn parse(s: &str) -> Result<ConnLogTarget, String> {
        match s {
            "" => Err("empty target".into()),
            "stderr" => Ok(ConnLogTarget::Stderr),
            "syslog" => Ok(ConnLogTarget::Syslog(PathBuf::from("/dev/log"))),
            _ => match s.strip_prefix("syslog:") {
                Some("") => Err("syslog: needs a socket path".into()),
                Some(p) => Ok(ConnLogTarget::Syslog(PathBuf::from(p))),
                None if s.contains('\0') => Err("a path cannot hold a NUL byte".into()),
                None => Ok(ConnLogTarget::File(PathBuf::from(s))),
            },
        }
    }
}

impl ConnLogFormat {
    pub(crate) fn from_word(w: &str) -> Option<ConnLogFormat> {
        match w {
            "tcplog" => Some(ConnLogFormat::Tcplog),
            "json" => Some(ConnLogFormat::Json),
            _ => None,
        }
    }
}

/// One listening address with its groups and policies.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ListenerConfig {
    pub(crate) name: String,
    pub(crate) bind: SocketAddr,
    /// For an IPv6 wildcard: accept IPv4 too (dual stack).
    pub(crate) dual_stack: bool,
    pub(crate) groups: Vec<GroupConfig>,
    pub(crate) connect_timeout: Duration,
    /// `-T`: close a connection with no traffic either way for this long.
    pub(crate) idle_timeout: Option<Duration>,
    /// `-k`: keepalive on client sockets.
    pub(crate) client_keepalive: Option<Keepalive>,
    /// `-K`: keepalive on backend sockets.
    pub(crate) server_keepalive: Option<Keepalive>,
    /// `-B`: source address for backend connections.
    pub(crate) source: Option<IpAddr>,
    /// `-a`: soft-disable a channel whose connect fails.
    pub(crate) autodisable: bool,
    /// `-H`: a hash group may try its other channels.
    pub(crate) hash_failover: bool,
    /// `-p`: dump all data to stdout.
    pub(crate) packet_dump: bool,
    /// `--race`: start the next candidate when a connect takes this long.
    pub(crate) race: Option<Duration>,
    /// `--spin`: hold clients up to this long when nothing is eligible.
    pub(crate) spin: Option<Duration>,
    pub(crate) failback: Failback,
    /// `on-down=shutdown`: close a channel's sessions when it is marked down.
    pub(crate) on_down_shutdown: bool,
    /// `on-up=shutdown-backup`: close backup-group sessions when a channel
    /// of a lower group comes back.
    pub(crate) on_up_shutdown_backup: bool,
    /// Fencing: before a group takes its first client after traffic moved
    /// to it, every session on the other groups is reset.
    pub(crate) fence: bool,
    /// `-m` / `monitor:`.
    pub(crate) monitor: Option<MonitorSpec>,
    /// `--connection-log` / `connection_log:`; `None`: no connection log.
    pub(crate) connection_log: Option<ConnLogConfig>,
    /// `accept_proxy:` / `--accept-proxy`: connections from these sources
    /// must start with a PROXY header (v1 or v2), whose client address
    /// then stands for the connection's. Empty: no header is read.
    pub(crate) accept_proxy: Vec<Cidr>,
    /// `route:` (config file only): pick the group by a key.
    pub(crate) route: Option<route::RouteConfig>,
}

impl ListenerConfig {
    /// A listener with balance's defaults, for `bind` and `groups`.
    #[cfg(test)]
    pub(crate) fn new(name: String, bind: SocketAddr, groups: Vec<GroupConfig>) -> Self {
        ListenerConfig {
            name,
            bind,
            dual_stack: false,
            groups,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
            idle_timeout: None,
            client_keepalive: None,
            server_keepalive: None,
            source: None,
            autodisable: false,
            hash_failover: false,
            packet_dump: false,
            race: None,
            spin: None,
            failback: Failback::Auto,
            on_down_shutdown: false,
            on_up_shutdown_backup: false,
            fence: false,
            monitor: None,
            connection_log: None,
            accept_proxy: Vec::new(),
            route: None,
        }
    }
}

impl ListenerConfig {
    /// The PROXY header a channel made at runtime at `host:port` in group
    /// `g` sends: the configured channel's where the config lists it
    /// there, else its group's (none for a group made at runtime).
    pub(crate) fn proxy_protocol_for(
        &self,
        g: usize,
        host: &Host,
        port: u16,
    ) -> Option<ProxyVersion> {
        let group = self.groups.get(g)?;
        group
            .channels
            .iter()
            .find(|c| &c.host == host && c.port == port)
            .map_or(group.proxy_protocol, |c| c.proxy_protocol)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Failback {
    Auto,
    Manual,
}

/// TCP keepalive parameters: idle time, probe interval, probe count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Keepalive {
    pub(crate) idle: Duration,
    pub(crate) interval: Duration,
    pub(crate) probes: u32,
}

/// How a group picks the channel a new connection tries first. Stored in
/// the state file by its [word](Policy::word).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, serde::Serialize, serde::Deserialize)]
pub enum Policy {
    /// Round robin (smooth weighted when weights differ).
    #[default]
    #[serde(rename = "rr")]
    RoundRobin,
    /// By a stable hash of the client address.
    #[serde(rename = "hash")]
    Hash,
    /// The fewest live connections (connects in progress included) per
    /// unit of weight; ties round robin.
    #[serde(rename = "leastconn")]
    LeastConn,
}

// The byte kept in an atomic (a group's policy can change at runtime),
// and `Policy::ALL`: every policy, for parsers and their error messages
// (a new variant is a compile error until it is listed here).
u8_enum!(Policy {
    RoundRobin = 0,
    Hash = 1,
    LeastConn = 2,
});

impl Policy {
    /// `show`'s `Type` column (balance's `RR` and `Hash`).
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "RR",
            Policy::Hash => "Hash",
            Policy::LeastConn => "LC",
        }
    }

    /// The lowercase word of the control socket, `show json`, the state
    /// file, YAML and `--policy`.
    pub(crate) fn word(self) -> &'static str {
        match self {
            Policy::RoundRobin => "rr",
            Policy::Hash => "hash",
            Policy::LeastConn => "leastconn",
        }
    }

    /// In words, for replies (`group 0 set to least connections`).
    pub(crate) fn describe(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round robin",
            Policy::Hash => "hash",
            Policy::LeastConn => "least connections",
        }
    }

    /// The policy named `w` (a [word](Policy::word)).
    pub(crate) fn from_word(w: &str) -> Option<Policy> {
        Policy::ALL.iter().copied().find(|p| p.word() == w)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub(crate) struct GroupConfig {
    /// The group's name (`name:`); empty until [`ListenerSpec::build`]
    /// gives the default (see [`names`]).
    pub(crate) name: String,
    pub(crate) policy: Policy,
    pub(crate) channels: Vec<ChannelConfig>,
    /// `proxy_protocol:` of the group: what its channels send unless they
    /// say otherwise, and what a channel added at runtime sends.
    pub(crate) proxy_protocol: Option<ProxyVersion>,
    /// `on_empty:` / `on_idle:`: the group is started on demand and
    /// stopped when idle (see [`demand`]); `None` for most groups.
    pub(crate) on_demand: Option<Box<demand::OnDemand>>,
}

/// A backend destination as the operator wrote it. `host` is a name or an IP
/// literal; resolution to addresses happens when the pool is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct ChannelConfig {
    /// The channel's name (`name:`); empty until [`ListenerSpec::build`]
    /// gives the default (see [`names`]).
    pub(crate) name: String,
    pub(crate) host: Host,
    pub(crate) port: u16,
    /// 0 = unlimited.
    pub(crate) maxc: u32,
    pub(crate) weight: u32,
    /// The PROXY header sent before the client's bytes (the channel's own
    /// `proxy_protocol:`, else its group's); `None`: no header.
    pub(crate) proxy_protocol: Option<ProxyVersion>,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Host {
    Ip(IpAddr),
    Name(String),
}

impl fmt::Display for Host {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Host::Ip(IpAddr::V6(ip)) => write!(f, "[{ip}]"),
            Host::Ip(ip) => write!(f, "{ip}"),
            Host::Name(n) => f.write_str(n),
        }
    }
}

impl fmt::Display for ChannelConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}
