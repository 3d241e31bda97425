//! `balance --config FILE`: YAML → the same [`Config`] the command line
//! produces. Parsing uses `serde-saphyr` (pure Rust, no panics, budgets on
//! aliases, depth and events) with `deny_unknown_fields` everywhere; values
//! are checked while they are deserialized so an error carries the line and
//! column of the offending node. Cross-field rules (duplicate names and
//! binds, self-loops) run afterwards with spans kept for that purpose.
//! Every error is one line: `FILE: line L column C: key: why`.

use std::collections::HashSet;
use std::fmt;
use std::io::Read;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use serde::de::{self, Deserializer, MapAccess, Visitor};
use serde_saphyr::{Location, Spanned};

use super::monitor::{Check, MonitorSpec};
use super::services::parse_port;
use super::{
    ChannelConfig, Config, Failback, Global, GroupConfig, Host, Keepalive, ListenerConfig,
    LogFormat, Policy, parse_duration,
};

/// Files larger than this are refused before parsing.
pub const MAX_FILE_BYTES: u64 = 1 << 20;
/// Default period of hostname re-resolution.
pub const DEFAULT_RESOLVE_INTERVAL: Duration = Duration::from_secs(30);

/// Read and parse a config file; `cli` holds the command line's globals,
/// which win over the file's where they were given.
pub fn load(path: &Path, cli: &Global) -> Result<Config, String> {
    let name = path.display();
    let f = std::fs::File::open(path).map_err(|e| format!("cannot read {name}: {e}"))?;
    let mut buf = Vec::new();
    f.take(MAX_FILE_BYTES + 1)
        .read_to_end(&mut buf)
        .map_err(|e| format!("cannot read {name}: {e}"))?;
    if buf.len() as u64 > MAX_FILE_BYTES {
        return Err(format!("{name}: file is larger than 1 MiB"));
    }
    let text = String::from_utf8(buf).map_err(|_| format!("{name}: not UTF-8 text"))?;
    parse(&text, cli).map_err(|e| format!("{name}: {e}"))
}

/// Parse config text (see [`load`]).
pub fn parse(text: &str, cli: &Global) -> Result<Config, String> {
    let raw: RawFile =
        serde_saphyr::from_str_with_options(text, options()).map_err(|e| saphyr_err(text, e))?;
    build(raw, cli)
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES as usize);
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.max_documents = 1;
    budget.max_nodes = 100_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    let mut limits = serde_saphyr::options::AliasLimits::default();
    limits.max_total_replayed_events = 10_000;
    limits.max_replay_stack_depth = 8;
    limits.max_alias_expansions_per_anchor = 100;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.alias_limits = limits;
    o
}

fn at(loc: Location) -> String {
    if loc == Location::UNKNOWN {
        String::new()
    } else {
        format!("line {} column {}: ", loc.line(), loc.column())
    }
}

/// serde-saphyr's error → one line: position, the key found on that line
/// of the source, then the message.
fn saphyr_err(text: &str, e: serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    let mut msg = full
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    let Some(loc) = e.location().filter(|l| *l != Location::UNKNOWN) else {
        return msg;
    };
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    let key = key_at(text, loc)
        .filter(|k| !msg.contains(&format!("`{k}`")))
        .map(|k| format!("{k}: "))
        .unwrap_or_default();
    format!("{}{key}{msg}", at(loc))
}

/// The mapping key nearest before (line, column): `key:` on that line.
fn key_at(text: &str, loc: Location) -> Option<String> {
    let line = text
        .lines()
        .nth(usize::try_from(loc.line()).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(loc.column()).unwrap_or(usize::MAX);
    let upto: String = line.chars().take(col.saturating_sub(1)).collect();
    let upto = if upto.trim().is_empty() {
        line
    } else {
        upto.as_str()
    };
    let mut best = None;
    let b = upto.as_bytes();
    for (i, _) in upto.match_indices(':') {
        let start = b[..i]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(0, |p| p + 1);
        if start < i && b.get(i + 1).is_none_or(|c| *c == b' ') {
            best = Some(upto[start..i].to_string());
        }
    }
    best
}

// ---------------------------------------------------------------- raw model

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    grace: Option<Dur>,
    #[serde(default)]
    max_conns: Option<Bounded<1, 10_000_000>>,
    #[serde(default)]
    metrics: Option<Bind>,
    #[serde(default)]
    log_format: Option<RawLogFormat>,
    #[serde(default)]
    log_file: Option<PathBuf>,
    #[serde(default)]
    state_file: Option<PathBuf>,
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    pidfile: Option<PathBuf>,
    #[serde(default)]
    threads: Option<Bounded<1, 256>>,
    #[serde(default)]
    resolve_interval: Option<Dur>,
    #[serde(deserialize_with = "nonempty")]
    listeners: Vec<Spanned<RawListener>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawLogFormat {
    Text,
    Json,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListener {
    name: Spanned<Name>,
    bind: Spanned<Bind>,
    #[serde(deserialize_with = "nonempty")]
    groups: Vec<RawGroup>,
    #[serde(default)]
    connect_timeout: Option<Dur>,
    #[serde(default)]
    idle_timeout: Option<Dur>,
    #[serde(default)]
    keepalive: Option<RawKeepalives>,
    #[serde(default)]
    source: Option<IpLit>,
    #[serde(default)]
    autodisable: bool,
    #[serde(default)]
    hash_failover: bool,
    #[serde(default)]
    race: Option<Dur>,
    #[serde(default)]
    spin: Option<Dur>,
    #[serde(default)]
    failback: Option<RawFailback>,
    #[serde(default)]
    on_down: Option<RawOnDown>,
    #[serde(default)]
    on_up: Option<RawOnUp>,
    #[serde(default)]
    monitor: Option<RawMonitor>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawFailback {
    Auto,
    Manual,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawOnDown {
    None,
    Shutdown,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "kebab-case")]
enum RawOnUp {
    None,
    ShutdownBackup,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawPolicy {
    Rr,
    Hash,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGroup {
    #[serde(default)]
    policy: Option<RawPolicy>,
    #[serde(deserialize_with = "nonempty")]
    channels: Vec<Spanned<RawChannel>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeepalives {
    #[serde(default)]
    client: Option<RawKeepalive>,
    #[serde(default)]
    server: Option<RawKeepalive>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeepalive {
    idle: Dur,
    interval: Dur,
    probes: Bounded<1, 127>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMonitor {
    #[serde(default)]
    interval: Option<Dur>,
    #[serde(default)]
    rise: Option<Bounded<1, 1000>>,
    #[serde(default)]
    fall: Option<Bounded<1, 1000>>,
    #[serde(default)]
    jitter: Option<Dur>,
    #[serde(default)]
    noenable: bool,
    #[serde(default)]
    nodisable: bool,
    #[serde(deserialize_with = "nonempty")]
    checks: Vec<RawCheck>,
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum RawCheck {
    Connect(RawConnect),
    Http(RawHttp),
    Mysql(RawMysql),
    Command(RawCommand),
    SendExpect(RawSendExpect),
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnect {
    #[serde(default)]
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawHttp {
    #[serde(default = "default_http_path")]
    path: HttpPath,
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    host: Option<String>,
    /// `"200-399"`, `"200,204"`, `200`.
    #[serde(default)]
    expect: Option<StatusRanges>,
    #[serde(default)]
    body: Option<String>,
    #[serde(default)]
    timeout: Option<Dur>,
}

fn default_http_path() -> HttpPath {
    HttpPath("/".into())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawMysql {
    #[serde(default)]
    user: Option<String>,
    #[serde(default)]
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCommand {
    argv: Argv,
    #[serde(default)]
    pass: Option<Vec<i32>>,
    #[serde(default)]
    timeout: Option<Dur>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSendExpect {
    send: String,
    expect: String,
    #[serde(default)]
    timeout: Option<Dur>,
}

// ------------------------------------------------- checked scalar wrappers

fn nonempty<'de, D, T>(d: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: Deserialize<'de>,
{
    let v = Vec::<T>::deserialize(d)?;
    if v.is_empty() {
        return Err(de::Error::custom("must not be empty"));
    }
    Ok(v)
}

/// A duration: `500ms`, `2s`, `1m`, or a number of seconds.
#[derive(Clone, Copy)]
struct Dur(Duration);

impl<'de> Deserialize<'de> for Dur {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Dur;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a duration such as 500ms, 2s or 1m")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Dur, E> {
                parse_duration(s).map(Dur).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Dur, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// An integer in `LO..=HI`.
#[derive(Clone, Copy)]
struct Bounded<const LO: u64, const HI: u64>(u64);

impl<'de, const LO: u64, const HI: u64> Deserialize<'de> for Bounded<LO, HI> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V<const LO: u64, const HI: u64>;
        impl<const LO: u64, const HI: u64> Visitor<'_> for V<LO, HI> {
            type Value = Bounded<LO, HI>;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                write!(f, "a whole number {LO}-{HI}")
            }
            fn visit_i128<E: de::Error>(self, n: i128) -> Result<Self::Value, E> {
                if n < i128::from(LO) || n > i128::from(HI) {
                    return Err(E::custom(format!("{n} is out of range ({LO}-{HI})")));
                }
                Ok(Bounded(n as u64))
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Self::Value, E> {
                self.visit_i128(i128::from(n))
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Self::Value, E> {
                self.visit_i128(i128::from(n))
            }
            fn visit_f64<E: de::Error>(self, n: f64) -> Result<Self::Value, E> {
                Err(E::custom(format!("{n} is not a whole number ({LO}-{HI})")))
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Self::Value, E> {
                match s.trim().parse::<i128>() {
                    Ok(n) => self.visit_i128(n),
                    Err(_) => Err(E::custom(format!(
                        "\"{}\" is not a whole number ({LO}-{HI})",
                        s.escape_debug()
                    ))),
                }
            }
        }
        d.deserialize_any(V::<LO, HI>)
    }
}

/// A port: 1–65535 or a /etc/services name.
#[derive(Clone, Copy)]
struct Port(u16);

impl<'de> Deserialize<'de> for Port {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Port;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a port number (1-65535) or service name")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Port, E> {
                parse_port(s).map(Port).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<Port, E> {
                self.visit_str(&n.to_string())
            }
            fn visit_i64<E: de::Error>(self, n: i64) -> Result<Port, E> {
                Err(E::custom(format!("port {n} is out of range (1-65535)")))
            }
        }
        d.deserialize_any(V)
    }
}

/// A listener name: 1–64 of `[A-Za-z0-9._-]` (used in metrics labels,
/// logs and control socket paths).
#[derive(Clone)]
struct Name(String);

impl<'de> Deserialize<'de> for Name {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let ok = !s.is_empty()
            && s.len() <= 64
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'));
        if !ok {
            return Err(de::Error::custom(format!(
                "bad name \"{}\": use 1-64 of A-Z a-z 0-9 . _ -",
                s.escape_debug()
            )));
        }
        Ok(Name(s))
    }
}

/// `addr:port` with an IP literal (IPv6 in brackets); `*:port` or `:port`
/// for all IPv4 addresses.
#[derive(Clone, Copy)]
struct Bind(SocketAddr);

pub fn parse_bind(s: &str) -> Result<SocketAddr, String> {
    let bad = |why: &str| format!("bad address \"{}\": {why}", s.escape_debug());
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad("expected addr:port"));
    };
    let port = parse_port(port).map_err(|e| bad(&e))?;
    let ip: IpAddr = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => match h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            Some(v6) => v6
                .parse::<std::net::Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| bad("not an IPv6 address in brackets"))?,
            None if h.contains(':') => return Err(bad("IPv6 addresses go in brackets")),
            None => h
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| bad("not an IP address"))?,
        },
    };
    Ok(SocketAddr::new(ip, port))
}

impl<'de> Deserialize<'de> for Bind {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        parse_bind(&s).map(Bind).map_err(de::Error::custom)
    }
}

/// An IP literal (`source:`).
#[derive(Clone, Copy)]
struct IpLit(IpAddr);

impl<'de> Deserialize<'de> for IpLit {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        let lit = s
            .strip_prefix('[')
            .and_then(|x| x.strip_suffix(']'))
            .unwrap_or(&s);
        lit.parse()
            .map(IpLit)
            .map_err(|_| de::Error::custom(format!("bad address \"{}\"", s.escape_debug())))
    }
}

/// An HTTP request path: starts with `/`, printable ASCII, no spaces.
struct HttpPath(String);

impl<'de> Deserialize<'de> for HttpPath {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        if !s.starts_with('/') || s.len() > 1024 || !s.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(de::Error::custom(format!(
                "bad path \"{}\": must start with / and have no spaces",
                s.escape_debug()
            )));
        }
        Ok(HttpPath(s))
    }
}

/// Inclusive HTTP status ranges: `200`, `"200-399"`, `"200,204,300-302"`.
struct StatusRanges(Vec<(u16, u16)>);

fn parse_status_ranges(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let bad = || {
        format!(
            "bad status list \"{}\": use e.g. 200-399,404",
            s.escape_debug()
        )
    };
    let code = |t: &str| {
        t.trim()
            .parse::<u16>()
            .ok()
            .filter(|c| (100..=599).contains(c))
            .ok_or_else(bad)
    };
    s.split(',')
        .map(|part| match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (code(a)?, code(b)?);
                if a > b { Err(bad()) } else { Ok((a, b)) }
            }
            None => code(part).map(|c| (c, c)),
        })
        .collect()
}

impl<'de> Deserialize<'de> for StatusRanges {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = StatusRanges;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a status code or a list such as \"200-399\"")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<StatusRanges, E> {
                parse_status_ranges(s).map(StatusRanges).map_err(E::custom)
            }
            fn visit_u64<E: de::Error>(self, n: u64) -> Result<StatusRanges, E> {
                self.visit_str(&n.to_string())
            }
        }
        d.deserialize_any(V)
    }
}

/// A command's argv: an absolute program path, no shell.
struct Argv(Vec<String>);

impl<'de> Deserialize<'de> for Argv {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let v = Vec::<String>::deserialize(d)?;
        match v.first() {
            None => Err(de::Error::custom("must not be empty")),
            Some(p) if !p.starts_with('/') => Err(de::Error::custom(format!(
                "program \"{}\" must be an absolute path",
                p.escape_debug()
            ))),
            Some(_) if v.len() > 64 || v.iter().any(|a| a.contains('\0')) => {
                Err(de::Error::custom("too many or invalid arguments"))
            }
            Some(_) => Ok(Argv(v)),
        }
    }
}

/// A channel: `"host[:port[:maxc]]"` like the command line, or a map
/// `{host, port, maxc, weight}`. Port 0 here means "the listener's port".
struct RawChannel(ChannelConfig);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ChannelMap {
    host: String,
    #[serde(default)]
    port: Option<Port>,
    #[serde(default)]
    maxc: Option<Bounded<0, 1_000_000>>,
    #[serde(default)]
    weight: Option<Bounded<1, 1000>>,
}

impl<'de> Deserialize<'de> for RawChannel {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = RawChannel;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("\"host[:port[:maxc]]\" or a map with host, port, maxc, weight")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<RawChannel, E> {
                crate::cli::parse_channel(s, 0)
                    .map(RawChannel)
                    .map_err(|e| E::custom(e.0))
            }
            fn visit_map<A: MapAccess<'de>>(self, map: A) -> Result<RawChannel, A::Error> {
                let m = ChannelMap::deserialize(de::value::MapAccessDeserializer::new(map))?;
                let tok = match m.host.parse::<IpAddr>() {
                    Ok(IpAddr::V6(v6)) => format!("[{v6}]"),
                    _ => m.host.clone(),
                };
                let mut c =
                    crate::cli::parse_channel(&tok, 0).map_err(|e| de::Error::custom(e.0))?;
                if tok.contains(':') && !tok.starts_with('[') {
                    return Err(de::Error::custom(format!(
                        "host \"{}\": give the port as port:",
                        m.host.escape_debug()
                    )));
                }
                if let Some(p) = m.port {
                    c.port = p.0;
                }
                if let Some(x) = m.maxc {
                    c.maxc = x.0 as u32;
                }
                if let Some(w) = m.weight {
                    c.weight = w.0 as u32;
                }
                Ok(RawChannel(c))
            }
        }
        d.deserialize_any(V)
    }
}

// ------------------------------------------------------------- raw → model

fn build(raw: RawFile, cli: &Global) -> Result<Config, String> {
    let mut global = cli.clone();
    // The command line wins where it was given.
    if global.grace == super::DEFAULT_GRACE {
        if let Some(g) = raw.grace {
            global.grace = g.0;
        }
    }
    if global.max_conns.is_none() {
        global.max_conns = raw.max_conns.map(|n| n.0 as usize);
    }
    if global.metrics.is_none() {
        global.metrics = raw.metrics.map(|b| b.0);
    }
    if global.log_format == LogFormat::Text {
        if let Some(RawLogFormat::Json) = raw.log_format {
            global.log_format = LogFormat::Json;
        }
    }
    global.log_file = global.log_file.or(raw.log_file);
    global.state_file = global.state_file.or(raw.state_file);
    global.user = global.user.or(raw.user);
    global.pidfile = global.pidfile.or(raw.pidfile);
    if global.threads == 1 {
        if let Some(t) = raw.threads {
            global.threads = t.0 as usize;
        }
    }
    if let Some(r) = raw.resolve_interval {
        if r.0 < Duration::from_secs(1) {
            return Err("resolve_interval: must be at least 1s".into());
        }
        global.resolve_interval = r.0;
    }

    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    let mut listeners = Vec::with_capacity(raw.listeners.len());
    for sl in raw.listeners {
        let l = sl.value;
        let name = l.name.value.0.clone();
        if !names.insert(name.clone()) {
            return Err(format!(
                "{}name: duplicate listener name \"{name}\"",
                at(l.name.referenced)
            ));
        }
        let bind = l.bind.value.0;
        if bind.port() == 0 {
            return Err(format!("{}bind: port 0", at(l.bind.referenced)));
        }
        if !binds.insert(bind) {
            return Err(format!(
                "{}bind: {bind} is already used by another listener",
                at(l.bind.referenced)
            ));
        }
        let mut groups = Vec::with_capacity(l.groups.len());
        for g in l.groups {
            let mut channels = Vec::with_capacity(g.channels.len());
            for sc in g.channels {
                let mut c = sc.value.0;
                if c.port == 0 {
                    c.port = bind.port();
                }
                if is_self_loop(bind, &c) {
                    return Err(format!(
                        "{}channels: {c} points at listener \"{name}\" itself",
                        at(sc.referenced)
                    ));
                }
                channels.push(c);
            }
            groups.push(GroupConfig {
                policy: match g.policy {
                    Some(RawPolicy::Hash) => Policy::Hash,
                    _ => Policy::RoundRobin,
                },
                channels,
            });
        }
        let mut lc = ListenerConfig::new(name.clone(), bind, groups);
        lc.dual_stack = matches!(bind.ip(), IpAddr::V6(v6) if v6.is_unspecified());
        let loc = at(sl.referenced);
        let positive = |key: &str, d: Option<Dur>| -> Result<Option<Duration>, String> {
            match d {
                Some(d) if d.0.is_zero() => Err(format!(
                    "{loc}{key}: must be positive (listener \"{name}\")"
                )),
                d => Ok(d.map(|d| d.0)),
            }
        };
        if let Some(t) = positive("connect_timeout", l.connect_timeout)? {
            lc.connect_timeout = t;
        }
        lc.idle_timeout = l.idle_timeout.map(|d| d.0).filter(|d| !d.is_zero());
        if let Some(k) = l.keepalive {
            lc.client_keepalive = k.client.map(|k| keepalive(&loc, &name, k)).transpose()?;
            lc.server_keepalive = k.server.map(|k| keepalive(&loc, &name, k)).transpose()?;
        }
        lc.source = l.source.map(|s| s.0);
        lc.autodisable = l.autodisable;
        lc.hash_failover = l.hash_failover;
        lc.race = l.race.map(|d| d.0).filter(|d| !d.is_zero());
        lc.spin = l.spin.map(|d| d.0).filter(|d| !d.is_zero());
        lc.failback = match l.failback {
            Some(RawFailback::Manual) => Failback::Manual,
            _ => Failback::Auto,
        };
        lc.on_down_shutdown = matches!(l.on_down, Some(RawOnDown::Shutdown));
        lc.on_up_shutdown_backup = matches!(l.on_up, Some(RawOnUp::ShutdownBackup));
        if let Some(m) = l.monitor {
            lc.monitor = Some(monitor(&loc, &name, m)?);
        }
        listeners.push(lc);
    }
    Ok(Config { global, listeners })
}

fn keepalive(loc: &str, name: &str, k: RawKeepalive) -> Result<Keepalive, String> {
    let secs = |d: Dur| d.0 >= Duration::from_secs(1) && d.0 <= Duration::from_secs(32767);
    if !secs(k.idle) || !secs(k.interval) {
        return Err(format!(
            "{loc}keepalive: idle and interval must be 1s-32767s (listener \"{name}\")"
        ));
    }
    Ok(Keepalive {
        idle: k.idle.0,
        interval: k.interval.0,
        probes: k.probes.0 as u32,
    })
}

fn monitor(loc: &str, name: &str, m: RawMonitor) -> Result<MonitorSpec, String> {
    let d = MonitorSpec::default();
    let interval = m.interval.map_or(d.interval, |i| i.0);
    if interval < Duration::from_millis(100) {
        return Err(format!(
            "{loc}monitor.interval: must be at least 100ms (listener \"{name}\")"
        ));
    }
    let t = |x: Option<Dur>| x.map(|d| d.0).filter(|d| !d.is_zero());
    let checks = m
        .checks
        .into_iter()
        .map(|c| match c {
            RawCheck::Connect(c) => Check::Connect {
                timeout: t(c.timeout),
            },
            RawCheck::Http(h) => Check::Http {
                path: h.path.0,
                port: h.port.map(|p| p.0),
                host: h.host,
                expect: h.expect.map_or_else(|| vec![(200, 399)], |e| e.0),
                body: h.body,
                timeout: t(h.timeout),
            },
            RawCheck::Mysql(my) => Check::Mysql {
                user: my.user,
                timeout: t(my.timeout),
            },
            RawCheck::Command(c) => Check::Command {
                argv: c.argv.0,
                pass: c.pass.unwrap_or_else(|| vec![0]),
                timeout: t(c.timeout),
            },
            RawCheck::SendExpect(s) => Check::SendExpect {
                send: s.send.into_bytes(),
                expect: s.expect.into_bytes(),
                timeout: t(s.timeout),
            },
        })
        .collect();
    Ok(MonitorSpec {
        checks,
        interval,
        rise: m.rise.map_or(d.rise, |r| r.0 as u32),
        fall: m.fall.map_or(d.fall, |f| f.0 as u32),
        jitter: m.jitter.map_or(d.jitter, |j| j.0),
        noenable: m.noenable,
        nodisable: m.nodisable,
        // The listener's `on_down`/`on_up` keys carry these in the file.
        on_down_shutdown: false,
        on_up_shutdown_backup: false,
    })
}

/// A channel that would connect back to its own listener: the same IP
/// literal and port, or, for a wildcard bind, a loopback or wildcard
/// channel (127.x, ::1, 0.0.0.0, `localhost`) on the same port.
pub fn is_self_loop(bind: SocketAddr, c: &ChannelConfig) -> bool {
    match &c.host {
        Host::Ip(ip) => is_self_loop_addr(bind, SocketAddr::new(*ip, c.port)),
        Host::Name(n) => {
            c.port == bind.port()
                && (bind.ip().is_unspecified() || bind.ip().is_loopback())
                && n.eq_ignore_ascii_case("localhost")
        }
    }
}

/// Whether connecting to `addr` reaches the listener bound to `bind`.
pub fn is_self_loop_addr(bind: SocketAddr, addr: SocketAddr) -> bool {
    if addr.port() != bind.port() {
        return false;
    }
    let (b, a) = (bind.ip().to_canonical(), addr.ip().to_canonical());
    if a == b {
        return true;
    }
    if b.is_unspecified() {
        return a.is_loopback() || a.is_unspecified();
    }
    // Connecting to 0.0.0.0 / :: reaches the loopback address.
    b.is_loopback() && a.is_unspecified()
}

/// Channels whose name resolves to their own listener (rejected at load
/// and on reload; at runtime re-resolution drops such addresses).
pub fn resolved_loops(
    cfg: &Config,
    resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
) -> Result<(), String> {
    for l in &cfg.listeners {
        for g in &l.groups {
            for c in &g.channels {
                if !matches!(c.host, Host::Name(_)) {
                    continue;
                }
                if let Some(a) = resolve(&c.host, c.port)
                    .into_iter()
                    .find(|a| is_self_loop_addr(l.bind, *a))
                {
                    return Err(format!(
                        "listener \"{}\": channel {c} resolves to {a}, the listener itself",
                        l.name
                    ));
                }
            }
        }
    }
    Ok(())
}

/// `--check`: names that do not resolve now (warnings, not errors).
pub fn unresolved(cfg: &Config, resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>) -> Vec<String> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        for g in &l.groups {
            for c in &g.channels {
                if matches!(c.host, Host::Name(_)) && resolve(&c.host, c.port).is_empty() {
                    out.push(format!(
                        "listener \"{}\": {c} does not resolve (the channel starts disabled)",
                        l.name
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
