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

pub mod build;
pub mod error;
pub mod file;
pub mod fleet;
pub mod grammar;
pub mod monitor;
pub mod monitor_spec;
pub mod names;
pub mod overlay;
pub mod selfloop;
pub mod services;

pub use build::{ListenerSpec, SpecError};
pub use error::{BadValue, ConfigError, quote};
pub use file::load as load_file;
pub use fleet::FleetConfig;
pub use grammar::parse_duration;
pub use overlay::Overlay;
pub use selfloop::{is_self_loop_addr, loop_target, resolved_loops, unresolved};

use monitor::MonitorSpec;

/// Default connect timeout (balance's `-t` default).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default grace period for live connections on SIGTERM/SIGINT.
pub const DEFAULT_GRACE: Duration = Duration::from_secs(10);
/// Default period of hostname re-resolution.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);
/// Default runtime worker threads (a single-threaded runtime).
pub const DEFAULT_THREADS: usize = 1;

/// Whole-process configuration: global options plus one or more listeners.
#[derive(Debug, Clone, PartialEq)]
pub struct Config {
    pub global: Global,
    pub listeners: Vec<ListenerConfig>,
}

/// Process-wide options.
#[derive(Debug, Clone, PartialEq)]
pub struct Global {
    /// Stay in the foreground (`-f`); otherwise daemonize.
    pub foreground: bool,
    /// Debug logging (`-d`).
    pub debug: bool,
    pub log_format: LogFormat,
    /// Log file when daemonized (otherwise syslog).
    pub log_file: Option<PathBuf>,
    pub pidfile: Option<PathBuf>,
    /// Grace period for live connections at shutdown.
    pub grace: Duration,
    /// Global connection limit; `None` means derived from RLIMIT_NOFILE.
    pub max_conns: Option<usize>,
    /// Runtime worker threads; 1 means a single-threaded runtime.
    pub threads: usize,
    /// Force the buffered relay (no splice), for tests and odd platforms.
    pub no_splice: bool,
    /// Explicit control socket path (`--control`).
    pub control: Option<PathBuf>,
    pub state_file: Option<PathBuf>,
    pub user: Option<String>,
    /// `--metrics ADDR`: serve Prometheus text on `GET /metrics`.
    pub metrics: Option<SocketAddr>,
    /// How often host names are re-resolved (config `resolve_interval`).
    pub resolve_interval: Duration,
    /// Fleet mode (`fleet:` / `--fleet`); `None`: standalone.
    pub fleet: Option<FleetConfig>,
    /// HAProxy's runtime API on a Unix socket (`haproxy_socket:` /
    /// `--haproxy-socket`); `None`: off.
    pub haproxy_socket: Option<HaproxySocket>,
}

/// Where and for whom the HAProxy-compatible runtime socket is made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HaproxySocket {
    pub path: PathBuf,
    /// Permission bits of the socket file: 0600 (default) or 0660, 0640...
    /// (never any bit for others).
    pub mode: u32,
    /// The socket file's group (name or number): its members may connect
    /// when `mode` lets the group write.
    pub group: Option<String>,
}

impl HaproxySocket {
    pub const DEFAULT_MODE: u32 = 0o600;

    /// The socket at `path` with the defaults.
    pub fn at(path: PathBuf) -> HaproxySocket {
        HaproxySocket {
            path,
            mode: Self::DEFAULT_MODE,
            group: None,
        }
    }

    /// A mode as written (`0660`, `660`, octal), or why not.
    pub fn parse_mode(s: &str) -> Result<u32, String> {
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
pub enum LogFormat {
    Text,
    Json,
}

/// One listening address with its groups and policies.
#[derive(Debug, Clone, PartialEq)]
pub struct ListenerConfig {
    pub name: String,
    pub bind: SocketAddr,
    /// For an IPv6 wildcard: accept IPv4 too (dual stack).
    pub dual_stack: bool,
    pub groups: Vec<GroupConfig>,
    pub connect_timeout: Duration,
    /// `-T`: close a connection with no traffic either way for this long.
    pub idle_timeout: Option<Duration>,
    /// `-k`: keepalive on client sockets.
    pub client_keepalive: Option<Keepalive>,
    /// `-K`: keepalive on backend sockets.
    pub server_keepalive: Option<Keepalive>,
    /// `-B`: source address for backend connections.
    pub source: Option<IpAddr>,
    /// `-a`: soft-disable a channel whose connect fails.
    pub autodisable: bool,
    /// `-H`: a hash group may try its other channels.
    pub hash_failover: bool,
    /// `-p`: dump all data to stdout.
    pub packet_dump: bool,
    /// `--race`: start the next candidate when a connect takes this long.
    pub race: Option<Duration>,
    /// `--spin`: hold clients up to this long when nothing is eligible.
    pub spin: Option<Duration>,
    pub failback: Failback,
    /// `on-down=shutdown`: close a channel's sessions when it is marked down.
    pub on_down_shutdown: bool,
    /// `on-up=shutdown-backup`: close backup-group sessions when a channel
    /// of a lower group comes back.
    pub on_up_shutdown_backup: bool,
    /// Fencing: before a group takes its first client after traffic moved
    /// to it, every session on the other groups is reset.
    pub fence: bool,
    /// `-m` / `monitor:`.
    pub monitor: Option<MonitorSpec>,
}

impl ListenerConfig {
    /// A listener with balance's defaults, for `bind` and `groups`.
    pub fn new(name: String, bind: SocketAddr, groups: Vec<GroupConfig>) -> Self {
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
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failback {
    Auto,
    Manual,
}

/// TCP keepalive parameters: idle time, probe interval, probe count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Keepalive {
    pub idle: Duration,
    pub interval: Duration,
    pub probes: u32,
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

impl Policy {
    /// Every policy, for parsers and their error messages.
    pub const ALL: [Policy; 3] = [Policy::RoundRobin, Policy::Hash, Policy::LeastConn];

    /// `show`'s `Type` column (balance's `RR` and `Hash`).
    pub fn as_str(self) -> &'static str {
        match self {
            Policy::RoundRobin => "RR",
            Policy::Hash => "Hash",
            Policy::LeastConn => "LC",
        }
    }

    /// The lowercase word of the control socket, `show json`, the state
    /// file, YAML and `--policy`.
    pub fn word(self) -> &'static str {
        match self {
            Policy::RoundRobin => "rr",
            Policy::Hash => "hash",
            Policy::LeastConn => "leastconn",
        }
    }

    /// In words, for replies (`group 0 set to least connections`).
    pub fn describe(self) -> &'static str {
        match self {
            Policy::RoundRobin => "round robin",
            Policy::Hash => "hash",
            Policy::LeastConn => "least connections",
        }
    }

    /// The policy named `w` (a [word](Policy::word)).
    pub fn from_word(w: &str) -> Option<Policy> {
        Policy::ALL.into_iter().find(|p| p.word() == w)
    }
}

#[derive(Debug, Clone, PartialEq)]
pub struct GroupConfig {
    /// The group's name (`name:`); empty until [`ListenerSpec::build`]
    /// gives the default (see [`names`]).
    pub name: String,
    pub policy: Policy,
    pub channels: Vec<ChannelConfig>,
}

/// A backend destination as the operator wrote it. `host` is a name or an IP
/// literal; resolution to addresses happens when the pool is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelConfig {
    /// The channel's name (`name:`); empty until [`ListenerSpec::build`]
    /// gives the default (see [`names`]).
    pub name: String,
    pub host: Host,
    pub port: u16,
    /// 0 = unlimited.
    pub maxc: u32,
    pub weight: u32,
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
