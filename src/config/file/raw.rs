//! The config file's raw model: what serde reads, one struct per YAML
//! mapping, `deny_unknown_fields` everywhere. Scalars arrive already
//! checked (see `scalars`); `convert` turns these into the resolved model.

use std::fmt;
use std::path::PathBuf;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::Spanned;

use super::scalars::{
    Argv, Bind, Bounded, CidrLit, Dur, HttpPath, IpLit, ItemName, Mode, Name, Port, ProxyWord,
    RawChannel, StatusRanges, nonempty,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFile {
    #[serde(default)]
    pub(super) grace: Option<Dur>,
    #[serde(default)]
    pub(super) max_conns: Option<Bounded<1, 10_000_000>>,
    #[serde(default)]
    pub(super) metrics: Option<Bind>,
    #[serde(default)]
    pub(super) log_format: Option<RawLogFormat>,
    #[serde(default)]
    pub(super) log_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) state_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) pidfile: Option<PathBuf>,
    #[serde(default)]
    pub(super) threads: Option<Bounded<1, 256>>,
    #[serde(default)]
    pub(super) resolve_interval: Option<Dur>,
    #[serde(default)]
    pub(super) fleet: Option<RawFleet>,
    /// The default of every listener without its own.
    #[serde(default)]
    pub(super) connection_log: Option<Spanned<RawConnLog>>,
    #[serde(default)]
    pub(super) haproxy_socket: Option<HaproxySocketOrPath>,
    #[serde(deserialize_with = "nonempty")]
    pub(super) listeners: Vec<Spanned<RawListener>>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnLog {
    pub(super) target: String,
    #[serde(default)]
    pub(super) format: Option<RawConnLogFormat>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawConnLogFormat {
    Tcplog,
    Json,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleet {
    #[serde(default)]
    pub(super) endpoints: Vec<String>,
    #[serde(default)]
    pub(super) discovery_srv: Option<String>,
    #[serde(default)]
    pub(super) tls: Option<RawFleetTls>,
    #[serde(default)]
    pub(super) user: Option<String>,
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) prefix: Option<String>,
    #[serde(default)]
    pub(super) id: Option<String>,
    #[serde(default)]
    pub(super) fallback: Option<Dur>,
}

#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawFleetTls {
    pub(super) ca: PathBuf,
    #[serde(default)]
    pub(super) cert: Option<PathBuf>,
    #[serde(default)]
    pub(super) key: Option<PathBuf>,
}

/// `haproxy_socket:`'s map form (a bare path is read by
/// [`HaproxySocketOrPath`]).
#[derive(Deserialize, Clone)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHaproxySocket {
    pub(super) path: std::path::PathBuf,
    #[serde(default)]
    pub(super) mode: Option<Mode>,
    #[serde(default)]
    pub(super) group: Option<String>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawLogFormat {
    Text,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawListener {
    pub(super) name: Spanned<Name>,
    pub(super) bind: Spanned<Bind>,
    #[serde(deserialize_with = "nonempty")]
    pub(super) groups: Vec<RawGroup>,
    #[serde(default)]
    pub(super) connect_timeout: Option<Dur>,
    #[serde(default)]
    pub(super) idle_timeout: Option<Dur>,
    #[serde(default)]
    pub(super) keepalive: Option<RawKeepalives>,
    #[serde(default)]
    pub(super) source: Option<IpLit>,
    #[serde(default)]
    pub(super) autodisable: bool,
    #[serde(default)]
    pub(super) hash_failover: bool,
    #[serde(default)]
    pub(super) race: Option<Dur>,
    #[serde(default)]
    pub(super) spin: Option<Dur>,
    #[serde(default)]
    pub(super) failback: Option<RawFailback>,
    #[serde(default)]
    pub(super) on_down: Option<RawOnDown>,
    #[serde(default)]
    pub(super) on_up: Option<RawOnUp>,
    #[serde(default)]
    pub(super) fence: Option<bool>,
    #[serde(default)]
    pub(super) monitor: Option<RawMonitor>,
    #[serde(default)]
    pub(super) connection_log: Option<Spanned<RawConnLog>>,
    pub(super) accept_proxy: Option<Vec<CidrLit>>,
    pub(super) route: Option<super::route::RawRoute>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawFailback {
    Auto,
    Manual,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawOnDown {
    None,
    Shutdown,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
pub(super) enum RawOnUp {
    None,
    ShutdownBackup,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawPolicy {
    Rr,
    Hash,
    Leastconn,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawGroup {
    /// The group's name (default `groupN`).
    #[serde(default)]
    pub(super) name: Option<ItemName>,
    #[serde(default)]
    pub(super) policy: Option<RawPolicy>,
    #[serde(deserialize_with = "nonempty")]
    pub(super) channels: Vec<Spanned<RawChannel>>,
    #[serde(default)]
    pub(super) proxy_protocol: Option<ProxyWord>,
    /// Start the group when a client needs it (`crate::config::demand`).
    #[serde(default)]
    pub(super) on_empty: Option<Spanned<super::demand::RawOnEmpty>>,
    /// Stop the group when idle.
    #[serde(default)]
    pub(super) on_idle: Option<Spanned<super::demand::RawOnIdle>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeepalives {
    #[serde(default)]
    pub(super) client: Option<RawKeepalive>,
    #[serde(default)]
    pub(super) server: Option<RawKeepalive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawKeepalive {
    pub(super) idle: Dur,
    pub(super) interval: Dur,
    pub(super) probes: Bounded<1, 127>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMonitor {
    #[serde(default)]
    pub(super) interval: Option<Dur>,
    #[serde(default)]
    pub(super) rise: Option<Bounded<1, 1000>>,
    #[serde(default)]
    pub(super) fall: Option<Bounded<1, 1000>>,
    #[serde(default)]
    pub(super) jitter: Option<Dur>,
    #[serde(default)]
    pub(super) noenable: bool,
    #[serde(default)]
    pub(super) nodisable: bool,
    #[serde(deserialize_with = "nonempty")]
    pub(super) checks: Vec<RawCheck>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
pub(super) enum RawCheck {
    Connect(RawConnect),
    Http(RawHttp),
    Mysql(RawMysql),
    Redis(RawRedis),
    Command(RawCommand),
    SendExpect(RawSendExpect),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawConnect {
    #[serde(default)]
    pub(super) timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawHttp {
    #[serde(default = "default_http_path")]
    pub(super) path: HttpPath,
    #[serde(default)]
    pub(super) port: Option<Port>,
    #[serde(default)]
    pub(super) host: Option<String>,
    /// `"200-399"`, `"200,204"`, `200`.
    #[serde(default)]
    pub(super) expect: Option<StatusRanges>,
    #[serde(default)]
    pub(super) body: Option<String>,
    #[serde(default)]
    pub(super) timeout: Option<Dur>,
}

fn default_http_path() -> HttpPath {
    HttpPath("/".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawMysql {
    #[serde(default)]
    pub(super) user: Option<String>,
    /// A file whose first line is the monitor user's password.
    #[serde(default)]
    pub(super) password_file: Option<String>,
    #[serde(default)]
    pub(super) read_only: Option<bool>,
    #[serde(default)]
    pub(super) max_lag: Option<Dur>,
    #[serde(default)]
    pub(super) timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRedis {
    /// Read when the file is loaded (start and reload); mode 0600 or
    /// stricter.
    #[serde(default)]
    pub(super) password_file: Option<PathBuf>,
    #[serde(default)]
    pub(super) role: Option<RawRedisRole>,
    #[serde(default)]
    pub(super) timeout: Option<Dur>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
pub(super) enum RawRedisRole {
    Master,
    Replica,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawCommand {
    pub(super) argv: Argv,
    #[serde(default)]
    pub(super) pass: Option<Vec<i32>>,
    #[serde(default)]
    pub(super) timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawSendExpect {
    pub(super) send: String,
    /// Empty or absent: any answer (or none) passes once `send` is sent,
    /// as `-m send=` without `expect=`.
    #[serde(default)]
    pub(super) expect: String,
    #[serde(default)]
    pub(super) timeout: Option<Dur>,
}

/// `haproxy_socket: PATH`, or its map ([`RawHaproxySocket`]).
#[derive(Clone)]
pub(super) struct HaproxySocketOrPath(pub(super) RawHaproxySocket);

impl<'de> Deserialize<'de> for HaproxySocketOrPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = HaproxySocketOrPath;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a path, or a map with path, mode and group")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                if s.is_empty() {
                    return Err(E::custom("path must not be empty"));
                }
                Ok(HaproxySocketOrPath(RawHaproxySocket {
                    path: s.into(),
                    mode: None,
                    group: None,
                }))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<Self::Value, A::Error> {
                RawHaproxySocket::deserialize(de::value::MapAccessDeserializer::new(map))
                    .map(HaproxySocketOrPath)
            }
        }
        d.deserialize_any(V)
    }
}
