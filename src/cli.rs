//! balance's command line → [`Invocation`]. Two stages, like ripgrep: clap
//! reads the options close to the syntax ([`Args`]), then [`resolve`] splits
//! the positional `port channel… ! channel…` grammar and hands the values to
//! the config pipeline: an [`Overlay`] of the global options given, and a
//! [`ListenerSpec`] built and validated by `config::build`. Defaults live
//! there, not here. Every error is one line naming the token.

use crate::config::quote;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::build::Side;
use crate::config::grammar::{parse_bind, parse_channel, parse_keepalive, resolve_bind_host};
use crate::config::services::parse_port;
use crate::config::{
    BadValue, Config, ConnLogConfig, ConnLogFormat, ConnLogTarget, Failback, Global, GroupConfig,
    Keepalive, ListenerSpec, LogFormat, Overlay, Policy, SpecError, parse_duration,
};

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// Run the balancer.
    Run(Config),
    /// Talk to a running instance: one command (`-c`) or the shell (`-i`).
    Control(ControlArgs),
    /// `--config FILE [--check]`: run (or validate) listeners from a YAML file.
    ConfigFile {
        /// The YAML file.
        path: PathBuf,
        /// `--check`: validate only.
        check: bool,
        /// The global options given on the command line; they win over the
        /// file's.
        global: Overlay,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlArgs {
    pub(crate) bind: Option<IpAddr>,
    pub(crate) port: u16,
    /// `None` for the interactive shell.
    pub(crate) command: Option<String>,
    pub(crate) path: Option<PathBuf>,
    pub(crate) debug: bool,
}

/// Stage 1: the options as written. Letters and meanings are balance.fm's.
#[derive(Parser, Debug, Default)]
#[command(
    name = "balance",
    version,
    about = "TCP load balancer with failover groups and health checks",
    // getopt: a repeated option's last value wins (`-b a -b b`).
    args_override_self = true,
    override_usage = "balance [-b addr] [-B addr] [-m spec] [-t sec] [-T sec] [-k t,i,p] [-K t,i,p] [-adfpHM6] port [channel... [ ! | % channel... ]...]\n       balance [-b addr] -i [-d] port\n       balance [-b addr] -c cmd [-d] port\n       balance --config FILE [--check]"
)]
pub(crate) struct Args {
    /// Listen on IPv6 (dual stack for the wildcard address)
    #[arg(short = '6')]
    ipv6: bool,
    /// Autodisable: soft-disable a channel whose connect fails
    #[arg(short = 'a')]
    autodisable: bool,
    /// Listen address (default: all addresses)
    #[arg(short = 'b', value_name = "ADDR")]
    bind: Option<String>,
    /// Source address for backend connections
    #[arg(short = 'B', value_name = "ADDR")]
    source: Option<String>,
    /// Send one control command to the instance on PORT, print the answer
    #[arg(short = 'c', value_name = "CMD")]
    command: Option<String>,
    /// Debug logging to stderr
    #[arg(short = 'd')]
    debug: bool,
    /// Stay in the foreground (default: daemonize)
    #[arg(short = 'f')]
    foreground: bool,
    /// Hash failover: a hash group may try its other channels
    #[arg(short = 'H')]
    hash_failover: bool,
    /// Interactive control shell for the instance on PORT
    #[arg(short = 'i')]
    interactive: bool,
    /// Health checks, e.g. connect:timeout=0.5:interval=2:rise=2:fall=3,
    /// http=/health:port=8080, mysql:user=chk, send=PING\r\n:expect=+PONG,
    /// command=/usr/local/bin/check %H %P (see man balance, MONITORING)
    #[arg(short = 'm', value_name = "SPEC")]
    monitor: Option<String>,
    /// Accepted and ignored (balance.fm: mmap IPC; there is no shared memory)
    #[arg(short = 'M')]
    mmap: bool,
    /// Dump all relayed data to stdout in a readable form
    #[arg(short = 'p')]
    packet_dump: bool,
    /// Connect timeout: seconds, fractions or humantime (default 5)
    #[arg(short = 't', value_name = "SEC")]
    connect_timeout: Option<String>,
    /// Idle timeout, 0 = never (default 0)
    #[arg(short = 'T', value_name = "SEC")]
    idle_timeout: Option<String>,
    /// Client-side TCP keepalive: idle,interval,probes (seconds)
    #[arg(short = 'k', value_name = "T,I,P")]
    client_keepalive: Option<String>,
    /// Server-side TCP keepalive: idle,interval,probes (seconds)
    #[arg(short = 'K', value_name = "T,I,P")]
    server_keepalive: Option<String>,
    /// Control socket path (default: derived from bind address and port)
    #[arg(long, value_name = "PATH")]
    control: Option<PathBuf>,
    /// Persist operator changes here and restore them at start
    #[arg(long, value_name = "PATH")]
    state_file: Option<PathBuf>,
    /// Hold clients up to DURATION when no channel is eligible
    #[arg(long, value_name = "DURATION")]
    spin: Option<String>,
    /// Start the next candidate when a connect has not completed after DURATION
    #[arg(long, value_name = "DURATION")]
    race: Option<String>,
    /// auto: return to group 0 when it recovers; manual: only on `failback`
    #[arg(long, value_name = "auto|manual")]
    failback: Option<String>,
    /// shutdown: close a channel's live sessions when it is marked down
    #[arg(long, value_name = "shutdown")]
    on_down: Option<String>,
    /// shutdown-backup: close backup-group sessions when a group-0 channel comes back
    #[arg(long, value_name = "shutdown-backup")]
    on_up: Option<String>,
    /// text or json
    #[arg(long, value_name = "FORMAT")]
    log_format: Option<String>,
    /// Log file when daemonized (default: syslog)
    #[arg(long, value_name = "PATH")]
    log_file: Option<PathBuf>,
    /// Global connection limit (default: from the fd limit)
    #[arg(long, value_name = "N")]
    max_conns: Option<String>,
    /// Grace period for live connections at shutdown (default 10s)
    #[arg(long, value_name = "DURATION")]
    grace: Option<String>,
    /// Write the process id here
    #[arg(long, value_name = "PATH")]
    pidfile: Option<PathBuf>,
    /// Drop privileges to USER after binding
    #[arg(long, value_name = "USER")]
    user: Option<String>,
    /// Serve Prometheus metrics on ADDR:PORT (GET /metrics)
    #[arg(long, value_name = "ADDR")]
    metrics: Option<String>,
    /// Fleet mode: etcd endpoints (http://HOST:PORT,...); one prober per service
    #[arg(long, value_name = "ENDPOINTS")]
    fleet: Option<String>,
    /// HAProxy-compatible runtime socket (show stat, set server...) at PATH
    #[arg(long, value_name = "PATH")]
    haproxy_socket: Option<PathBuf>,
    /// Runtime worker threads (default 1)
    #[arg(long, value_name = "N")]
    threads: Option<String>,
    /// Policy of the groups not closed by `%`: rr (default), leastconn or hash
    #[arg(long, value_name = "rr|leastconn|hash")]
    policy: Option<String>,
    /// Send a PROXY protocol header (v1 or v2) to backends before the client's bytes
    #[arg(long, value_name = "v1|v2")]
    proxy_protocol: Option<String>,
    /// Connections from these sources (CIDR,...) must start with a PROXY header
    #[arg(long, value_name = "CIDR,...")]
    accept_proxy: Option<String>,
    /// Use buffered copying instead of splice(2)
    #[arg(long)]
    no_splice: bool,
    /// One line per connection as it ends, to a file, syslog[:PATH] or stderr
    #[arg(long, value_name = "TARGET")]
    connection_log: Option<String>,
    /// Connection log layout: tcplog (HAProxy's, default) or json
    #[arg(long, value_name = "tcplog|json")]
    connection_log_format: Option<String>,
    /// Run the listeners of a YAML config file
    #[arg(long, value_name = "FILE")]
    config: Option<PathBuf>,
    /// With --config: validate and exit
    #[arg(long)]
    check: bool,
    /// port channel... [ ! | % channel... ]...
    #[arg(value_name = "ARGS", allow_hyphen_values = false)]
    positional: Vec<String>,
}

/// A one-line usage error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct UsageError(pub String);

impl From<BadValue> for UsageError {
    fn from(e: BadValue) -> Self {
        UsageError(e.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Outcome of reading argv: an invocation, or text to print and exit 0
/// (`--help`, `--version`).
pub enum Parsed {
    /// What to run.
    Invocation(Box<Invocation>),
    /// Text to print (`--help`, `--version`).
    Print(String),
}

/// Parse argv (including the program name).
pub fn parse<I, T>(argv: I) -> Result<Parsed, UsageError>
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    match Args::try_parse_from(argv) {
        Ok(args) => resolve(args).map(|i| Parsed::Invocation(Box::new(i))),
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp | clap::error::ErrorKind::DisplayVersion => {
                Ok(Parsed::Print(e.to_string()))
            }
            _ => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("bad command line");
                err(first.trim_start_matches("error: ").to_string())
            }
        },
    }
}

/// Stage 2: check and convert.
pub(crate) fn resolve(a: Args) -> Result<Invocation, UsageError> {
    let overlay = overlay(&a)?;

    if a.interactive || a.command.is_some() {
        if a.interactive && a.command.is_some() {
            return err("-i and -c cannot be used together");
        }
        let [port] = a.positional.as_slice() else {
            return err(match a.positional.len() {
                0 => "missing port: balance -c CMD PORT".to_string(),
                _ => format!(
                    "unexpected {}: -i/-c take only a port",
                    quote(&a.positional[1])
                ),
            });
        };
        let port =
            parse_port(port).map_err(|e| UsageError(format!("bad port {}: {e}", quote(port))))?;
        let bind = a.bind.as_deref().map(resolve_bind_host).transpose()?;
        return Ok(Invocation::Control(ControlArgs {
            bind,
            port,
            command: a.command,
            path: a.control,
            debug: a.debug,
        }));
    }

    if let Some(path) = a.config {
        if let Some(tok) = a.positional.first() {
            return err(format!(
                "unexpected {}: --config takes no channels",
                quote(tok)
            ));
        }
        // Per-listener options belong in the file; never ignore them silently.
        let per_listener = [
            ("-6", a.ipv6),
            ("-a", a.autodisable),
            ("-b", a.bind.is_some()),
            ("-B", a.source.is_some()),
            ("-H", a.hash_failover),
            ("-m", a.monitor.is_some()),
            ("-p", a.packet_dump),
            ("-t", a.connect_timeout.is_some()),
            ("-T", a.idle_timeout.is_some()),
            ("-k", a.client_keepalive.is_some()),
            ("-K", a.server_keepalive.is_some()),
            ("--spin", a.spin.is_some()),
            ("--race", a.race.is_some()),
            ("--failback", a.failback.is_some()),
            ("--policy", a.policy.is_some()),
            ("--connection-log", a.connection_log.is_some()),
            ("--connection-log-format", a.connection_log_format.is_some()),
            ("--proxy-protocol", a.proxy_protocol.is_some()),
            ("--accept-proxy", a.accept_proxy.is_some()),
        ];
        if let Some((flag, _)) = per_listener.iter().find(|(_, given)| *given) {
            return err(format!(
                "{flag} cannot be used with --config: set it per listener in the file"
            ));
        }
        return Ok(Invocation::ConfigFile {
            path,
            check: a.check,
            global: overlay,
        });
    }
    if a.check {
        return err("--check needs --config FILE");
    }

    let listener = listener(&a)?;
    if let (Some(f), Some(list)) = (&a.fleet, &overlay.fleet) {
        if list.iter().any(|e| e.starts_with("https://")) {
            return err(format!(
                "bad --fleet {}: https:// needs the config file's fleet.tls",
                quote(f)
            ));
        }
    }
    Ok(Invocation::Run(Config {
        global: overlay.over(Global::default()),
        listeners: vec![listener],
    }))
}

/// The global options given, each `Some` only when its flag was.
fn overlay(a: &Args) -> Result<Overlay, UsageError> {
    Ok(Overlay {
        foreground: a.foreground,
        debug: a.debug,
        no_splice: a.no_splice,
        log_format: match a.log_format.as_deref() {
            None => None,
            Some("text") => Some(LogFormat::Text),
            Some("json") => Some(LogFormat::Json),
            Some(other) => {
                return err(format!(
                    "bad --log-format {}: use text or json",
                    quote(other)
                ));
            }
        },
        log_file: a.log_file.clone(),
        pidfile: a.pidfile.clone(),
        grace: opt_duration("--grace", a.grace.as_deref())?,
        max_conns: match a.max_conns.as_deref() {
            None => None,
            Some(s) => Some(s.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                UsageError(format!(
                    "bad --max-conns {}: not a positive number",
                    quote(s)
                ))
            })?),
        },
        threads: match a.threads.as_deref() {
            None => None,
            Some(s) => Some(
                s.parse::<usize>()
                    .ok()
                    .filter(|n| (1..=256).contains(n))
                    .ok_or_else(|| UsageError(format!("bad --threads {}: use 1-256", quote(s))))?,
            ),
        },
        control: a.control.clone(),
        state_file: a.state_file.clone(),
        user: a.user.clone(),
        metrics: match a.metrics.as_deref() {
            None => None,
            Some(m) => Some(parse_bind(m).map_err(|e| UsageError(format!("bad --metrics: {e}")))?),
        },
        fleet: match a.fleet.as_deref() {
            None => None,
            Some(f) => Some(
                crate::config::fleet::parse_endpoints(f)
                    .map_err(|e| UsageError(format!("bad --fleet {}: {e}", quote(f))))?,
            ),
        },
        haproxy_socket: a.haproxy_socket.clone(),
    })
}

/// `port channel… [! channel…]` and the listener options → the one
/// listener, through the shared builder.
fn listener(a: &Args) -> Result<crate::config::ListenerConfig, UsageError> {
    let policy = match a.policy.as_deref() {
        None => Policy::RoundRobin,
        Some(w) => word("--policy", w, Policy::from_word, "rr, leastconn or hash")?,
    };
    let proxy_protocol = match a.proxy_protocol.as_deref() {
        None => None,
        Some(w) => Some(crate::config::ProxyVersion::from_word(w).ok_or_else(|| {
            UsageError(format!("bad --proxy-protocol {}: use v1 or v2", quote(w)))
        })?),
    };
    let (port_tok, groups_toks) = split_positional(&a.positional, policy)?;
    let port = parse_port(port_tok)
        .map_err(|e| UsageError(format!("bad port {}: {e}", quote(port_tok))))?;
    let mut groups = Vec::with_capacity(groups_toks.len());
    for (policy, toks) in groups_toks {
        let channels = toks
            .iter()
            .map(|t| {
                parse_channel(t, 0).map(|mut c| {
                    c.proxy_protocol = proxy_protocol;
                    c
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(GroupConfig {
            on_demand: None,
            name: String::new(),
            policy,
            channels,
            proxy_protocol,
        });
    }

    let ip = match a.bind.as_deref() {
        Some(b) => resolve_bind_host(b)?,
        None if a.ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    if a.ipv6 && ip.is_ipv4() && a.bind.is_some() {
        return err(format!(
            "-6 with an IPv4 -b address {}",
            quote(a.bind.as_deref().unwrap_or_default())
        ));
    }
    let mut l = ListenerSpec::new(format!("balance:{port}"), SocketAddr::new(ip, port), groups);
    l.connect_timeout = opt_duration("-t", a.connect_timeout.as_deref())?;
    l.idle_timeout = opt_duration("-T", a.idle_timeout.as_deref())?;
    l.client_keepalive = opt_keepalive("-k", a.client_keepalive.as_deref())?;
    l.server_keepalive = opt_keepalive("-K", a.server_keepalive.as_deref())?;
    l.source = match a.source.as_deref() {
        None => None,
        Some(s) => Some(
            resolve_bind_host(s).map_err(|_| UsageError(format!("bad -B address {}", quote(s))))?,
        ),
    };
    l.autodisable = a.autodisable;
    l.hash_failover = a.hash_failover;
    l.packet_dump = a.packet_dump;
    l.race = opt_duration("--race", a.race.as_deref())?;
    l.spin = opt_duration("--spin", a.spin.as_deref())?;
    l.accept_proxy = match a.accept_proxy.as_deref() {
        None => Vec::new(),
        Some(s) => crate::config::cidr::parse_list(s)
            .map_err(|e| UsageError(format!("bad --accept-proxy: {e}")))?,
    };
    l.failback = match a.failback.as_deref() {
        None => None,
        Some("auto") => Some(Failback::Auto),
        Some("manual") => Some(Failback::Manual),
        Some(o) => return err(format!("bad --failback {}: use auto or manual", quote(o))),
    };
    l.on_down_shutdown = match a.on_down.as_deref() {
        None | Some("none") => false,
        Some("shutdown") => true,
        Some(o) => return err(format!("bad --on-down {}: use shutdown or none", quote(o))),
    };
    l.on_up_shutdown_backup = match a.on_up.as_deref() {
        None | Some("none") => false,
        Some("shutdown-backup") => true,
        Some(o) => {
            return err(format!(
                "bad --on-up {}: use shutdown-backup or none",
                quote(o)
            ));
        }
    };
    l.connection_log = connection_log(a)?;
    // `-m ...:on-down=shutdown` adds to `--on-down shutdown` (in the builder).
    l.monitor = a
        .monitor
        .as_deref()
        .map(crate::config::monitor_spec::parse)
        .transpose()?;
    // A channel on the listener itself would make one client connect to
    // itself until the fd limit: refused, as the config file does.
    l.build().map_err(|e| match e {
        SpecError::ZeroConnectTimeout => {
            UsageError("bad -t \"0\": the connect timeout must be positive".into())
        }
        SpecError::KeepaliveRange(side) => {
            let (flag, v) = match side {
                Side::Client => ("-k", a.client_keepalive.as_deref()),
                Side::Server => ("-K", a.server_keepalive.as_deref()),
            };
            let v = v.unwrap_or_default();
            UsageError(format!(
                "bad {flag} {}: times must be 1-32767 seconds",
                quote(v)
            ))
        }
        SpecError::SelfLoop { .. } => UsageError(format!("bad channel {e}")),
        SpecError::Name(e) => UsageError(e.to_string()),
    })
}

/// `--connection-log TARGET [--connection-log-format tcplog|json]`.
fn connection_log(a: &Args) -> Result<Option<ConnLogConfig>, UsageError> {
    let format = match a.connection_log_format.as_deref() {
        None => ConnLogFormat::Tcplog,
        Some(w) => word(
            "--connection-log-format",
            w,
            ConnLogFormat::from_word,
            "tcplog or json",
        )?,
    };
    let Some(t) = a.connection_log.as_deref() else {
        if a.connection_log_format.is_some() {
            return err("--connection-log-format needs --connection-log TARGET");
        }
        return Ok(None);
    };
    let target = ConnLogTarget::parse(t)
        .map_err(|e| UsageError(format!("bad --connection-log {}: {e}", quote(t))))?;
    Ok(Some(ConnLogConfig { target, format }))
}

/// `flag`'s value `w` through `parse`, or the one-line error that lists
/// the `choices`.
fn word<T>(
    flag: &str,
    w: &str,
    parse: impl Fn(&str) -> Option<T>,
    choices: &str,
) -> Result<T, UsageError> {
    parse(w).ok_or_else(|| UsageError(format!("bad {flag} {}: use {choices}", quote(w))))
}

fn opt_duration(flag: &str, v: Option<&str>) -> Result<Option<Duration>, UsageError> {
    v.map(|s| parse_duration(s).map_err(|e| UsageError(format!("bad {flag} {}: {e}", quote(s)))))
        .transpose()
}

fn opt_keepalive(flag: &str, v: Option<&str>) -> Result<Option<Keepalive>, UsageError> {
    v.map(|s| {
        parse_keepalive(s).map_err(|why| UsageError(format!("bad {flag} {}: {why}", quote(s))))
    })
    .transpose()
}

type GroupTokens<'a> = Vec<(Policy, Vec<&'a str>)>;

/// `port ch ch ! ch % ch` → port and the channel tokens of each group;
/// a group closed by `%` is a hash group, the others have `policy`.
fn split_positional(pos: &[String], policy: Policy) -> Result<(&str, GroupTokens<'_>), UsageError> {
    let Some((port, rest)) = pos.split_first() else {
        return err("missing port and channels: balance [options] port channel... [! channel...]");
    };
    if port == "!" || port == "%" {
        return err(format!(
            "{} where the listen port was expected",
            quote(port)
        ));
    }
    // A port alone is balance.fm's own usage example: channels come later
    // with `create`.
    let mut groups: GroupTokens<'_> = vec![(policy, Vec::new())];
    let n = rest.len();
    for (i, tok) in rest.iter().enumerate() {
        match tok.as_str() {
            sep @ ("!" | "%") => {
                let Some(cur) = groups.last_mut() else {
                    return err("internal: no group");
                };
                if cur.1.is_empty() {
                    return err(format!(
                        "\"{sep}\" closes an empty group (argument {})",
                        i + 2
                    ));
                }
                if sep == "%" {
                    cur.0 = Policy::Hash;
                }
                // A trailing separator is accepted, as balance.fm does; the
                // empty group it opens exists once `create` adds to it.
                if i + 1 != n {
                    groups.push((policy, Vec::new()));
                }
            }
            t => {
                if let Some(cur) = groups.last_mut() {
                    cur.1.push(t);
                }
            }
        }
    }
    Ok((port, groups))
}

#[cfg(test)]
#[allow(unused_imports)]
mod tests;
