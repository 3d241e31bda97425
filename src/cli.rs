//! balance's command line → [`Invocation`]. Two stages, like ripgrep: clap
//! reads the options close to the syntax ([`Args`]), then [`resolve`] checks
//! and converts them (and the positional `port channel… ! channel…` grammar)
//! into the resolved [`Config`]. Every error is one line naming the token.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

use crate::config::services::parse_port;
use crate::config::{
    ChannelConfig, Config, Failback, Global, GroupConfig, Host, Keepalive, ListenerConfig,
    LogFormat, Policy, parse_duration,
};

/// Exit code for usage and config errors (EX_USAGE).
pub const EXIT_USAGE: i32 = 64;

/// What the user asked for.
#[derive(Debug, Clone, PartialEq)]
pub enum Invocation {
    /// Run the balancer.
    Run(Config),
    /// Talk to a running instance: one command (`-c`) or the shell (`-i`).
    Control(ControlArgs),
    /// `--config FILE [--check]`: run (or validate) listeners from a YAML file.
    ConfigFile {
        path: PathBuf,
        check: bool,
        global: Global,
    },
}

#[derive(Debug, Clone, PartialEq)]
pub struct ControlArgs {
    pub bind: Option<IpAddr>,
    pub port: u16,
    /// `None` for the interactive shell.
    pub command: Option<String>,
    pub path: Option<PathBuf>,
    pub debug: bool,
}

/// Stage 1: the options as written. Letters and meanings are balance.fm's.
#[derive(Parser, Debug, Default)]
#[command(
    name = "balance",
    version,
    about = "TCP load balancer with failover groups and health checks",
    override_usage = "balance [-b addr] [-B addr] [-m spec] [-t sec] [-T sec] [-k t,i,p] [-K t,i,p] [-adfpHM6] port channel... [ ! | % channel... ]...\n       balance [-b addr] -i [-d] port\n       balance [-b addr] -c cmd [-d] port\n       balance --config FILE [--check]"
)]
pub struct Args {
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
    /// Runtime worker threads (default 1)
    #[arg(long, value_name = "N")]
    threads: Option<String>,
    /// Use buffered copying instead of splice(2)
    #[arg(long)]
    no_splice: bool,
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
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UsageError(pub String);

impl std::fmt::Display for UsageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err<T>(msg: impl Into<String>) -> Result<T, UsageError> {
    Err(UsageError(msg.into()))
}

/// Outcome of reading argv: an invocation, or text to print and exit 0
/// (`--help`, `--version`).
pub enum Parsed {
    Invocation(Box<Invocation>),
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
pub fn resolve(a: Args) -> Result<Invocation, UsageError> {
    let global = Global {
        foreground: a.foreground,
        debug: a.debug,
        log_format: match a.log_format.as_deref() {
            None | Some("text") => LogFormat::Text,
            Some("json") => LogFormat::Json,
            Some(other) => return err(format!("bad --log-format \"{other}\": use text or json")),
        },
        log_file: a.log_file,
        pidfile: a.pidfile,
        grace: opt_duration("--grace", a.grace.as_deref())?.unwrap_or(crate::config::DEFAULT_GRACE),
        max_conns: match a.max_conns.as_deref() {
            None => None,
            Some(s) => Some(s.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                UsageError(format!("bad --max-conns \"{s}\": not a positive number"))
            })?),
        },
        threads: match a.threads.as_deref() {
            None => 1,
            Some(s) => s
                .parse::<usize>()
                .ok()
                .filter(|n| (1..=256).contains(n))
                .ok_or_else(|| UsageError(format!("bad --threads \"{s}\": use 1-256")))?,
        },
        no_splice: a.no_splice,
        control: a.control.clone(),
        state_file: a.state_file,
        user: a.user,
        metrics: match a.metrics.as_deref() {
            None => None,
            Some(m) => Some(
                crate::config::yaml::parse_bind(m)
                    .map_err(|e| UsageError(format!("bad --metrics: {e}")))?,
            ),
        },
        resolve_interval: crate::config::yaml::DEFAULT_RESOLVE_INTERVAL,
    };

    if a.interactive || a.command.is_some() {
        if a.interactive && a.command.is_some() {
            return err("-i and -c cannot be used together");
        }
        let [port] = a.positional.as_slice() else {
            return err(match a.positional.len() {
                0 => "missing port: balance -c CMD PORT".to_string(),
                _ => format!("unexpected \"{}\": -i/-c take only a port", a.positional[1]),
            });
        };
        let port = parse_port(port).map_err(|e| UsageError(format!("bad port \"{port}\": {e}")))?;
        let bind = match a.bind.as_deref() {
            None => None,
            Some(b) => Some(resolve_bind_host(b)?),
        };
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
            return err(format!("unexpected \"{tok}\": --config takes no channels"));
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
        ];
        if let Some((flag, _)) = per_listener.iter().find(|(_, given)| *given) {
            return err(format!(
                "{flag} cannot be used with --config: set it per listener in the file"
            ));
        }
        return Ok(Invocation::ConfigFile {
            path,
            check: a.check,
            global,
        });
    }
    if a.check {
        return err("--check needs --config FILE");
    }

    let (port_tok, groups_toks) = split_positional(&a.positional)?;
    let port =
        parse_port(port_tok).map_err(|e| UsageError(format!("bad port \"{port_tok}\": {e}")))?;
    let mut groups = Vec::with_capacity(groups_toks.len());
    for (policy, toks) in groups_toks {
        let channels = toks
            .iter()
            .map(|t| parse_channel(t, port))
            .collect::<Result<Vec<_>, _>>()?;
        groups.push(GroupConfig { policy, channels });
    }

    let ip = match a.bind.as_deref() {
        Some(b) => resolve_bind_host(b)?,
        None if a.ipv6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        None => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    };
    if a.ipv6 && ip.is_ipv4() && a.bind.is_some() {
        return err(format!(
            "-6 with an IPv4 -b address \"{}\"",
            a.bind.unwrap_or_default()
        ));
    }
    let bind = SocketAddr::new(ip, port);
    let mut l = ListenerConfig::new(format!("balance:{port}"), bind, groups);
    l.dual_stack = matches!(ip, IpAddr::V6(v6) if v6.is_unspecified());
    l.connect_timeout = match opt_duration("-t", a.connect_timeout.as_deref())? {
        Some(d) if d.is_zero() => return err("bad -t \"0\": the connect timeout must be positive"),
        Some(d) => d,
        None => crate::config::DEFAULT_CONNECT_TIMEOUT,
    };
    l.idle_timeout = opt_duration("-T", a.idle_timeout.as_deref())?.filter(|d| !d.is_zero());
    l.client_keepalive = opt_keepalive("-k", a.client_keepalive.as_deref())?;
    l.server_keepalive = opt_keepalive("-K", a.server_keepalive.as_deref())?;
    l.source = match a.source.as_deref() {
        None => None,
        Some(s) => {
            Some(resolve_bind_host(s).map_err(|_| UsageError(format!("bad -B address \"{s}\"")))?)
        }
    };
    l.autodisable = a.autodisable;
    l.hash_failover = a.hash_failover;
    l.packet_dump = a.packet_dump;
    l.race = opt_duration("--race", a.race.as_deref())?.filter(|d| !d.is_zero());
    l.spin = opt_duration("--spin", a.spin.as_deref())?.filter(|d| !d.is_zero());
    l.failback = match a.failback.as_deref() {
        None | Some("auto") => Failback::Auto,
        Some("manual") => Failback::Manual,
        Some(o) => return err(format!("bad --failback \"{o}\": use auto or manual")),
    };
    l.on_down_shutdown = match a.on_down.as_deref() {
        None | Some("none") => false,
        Some("shutdown") => true,
        Some(o) => return err(format!("bad --on-down \"{o}\": use shutdown or none")),
    };
    l.on_up_shutdown_backup = match a.on_up.as_deref() {
        None | Some("none") => false,
        Some("shutdown-backup") => true,
        Some(o) => return err(format!("bad --on-up \"{o}\": use shutdown-backup or none")),
    };
    if let Some(spec) = a.monitor {
        let m = crate::monitor::spec::parse(&spec, l.connect_timeout).map_err(UsageError)?;
        // `-m ...:on-down=shutdown` is the same as `--on-down shutdown`.
        l.on_down_shutdown |= m.on_down_shutdown;
        l.on_up_shutdown_backup |= m.on_up_shutdown_backup;
        l.monitor = Some(m);
    }
    Ok(Invocation::Run(Config {
        global,
        listeners: vec![l],
    }))
}

fn opt_duration(flag: &str, v: Option<&str>) -> Result<Option<Duration>, UsageError> {
    v.map(|s| parse_duration(s).map_err(|e| UsageError(format!("bad {flag} \"{s}\": {e}"))))
        .transpose()
}

fn opt_keepalive(flag: &str, v: Option<&str>) -> Result<Option<Keepalive>, UsageError> {
    let Some(s) = v else { return Ok(None) };
    let bad = |why: &str| UsageError(format!("bad {flag} \"{s}\": {why}"));
    let parts: Vec<&str> = s.split(',').collect();
    let [t, i, p] = parts.as_slice() else {
        return Err(bad("expected idle,interval,probes"));
    };
    let secs = |x: &str| -> Result<Duration, UsageError> {
        let d = parse_duration(x).map_err(|e| bad(&e))?;
        if d < Duration::from_secs(1) || d > Duration::from_secs(32767) {
            return Err(bad("times must be 1-32767 seconds"));
        }
        Ok(d)
    };
    let probes = p
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=127).contains(n))
        .ok_or_else(|| bad("probes must be 1-127"))?;
    Ok(Some(Keepalive {
        idle: secs(t)?,
        interval: secs(i)?,
        probes,
    }))
}

type GroupTokens<'a> = Vec<(Policy, Vec<&'a str>)>;

/// `port ch ch ! ch % ch` → port and the channel tokens of each group.
fn split_positional(pos: &[String]) -> Result<(&str, GroupTokens<'_>), UsageError> {
    let Some((port, rest)) = pos.split_first() else {
        return err("missing port and channels: balance [options] port channel... [! channel...]");
    };
    if port == "!" || port == "%" {
        return err(format!("\"{port}\" where the listen port was expected"));
    }
    if rest.is_empty() {
        return err(format!("no channel given after port \"{port}\""));
    }
    let mut groups: GroupTokens<'_> = vec![(Policy::RoundRobin, Vec::new())];
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
                let last = i + 1 == n;
                if last && sep == "!" {
                    return err("\"!\" at the end starts an empty group");
                }
                if !last {
                    groups.push((Policy::RoundRobin, Vec::new()));
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

/// `host[:port[:maxc]]`, `host::maxc`, `[v6]:port:maxc`.
pub fn parse_channel(tok: &str, default_port: u16) -> Result<ChannelConfig, UsageError> {
    let bad = |why: &str| UsageError(format!("bad channel \"{tok}\": {why}"));
    if tok.is_empty() {
        return Err(bad("empty"));
    }
    let (host, rest): (Host, &str) = if let Some(after) = tok.strip_prefix('[') {
        let Some(end) = after.find(']') else {
            return Err(bad("missing \"]\""));
        };
        let lit = &after[..end];
        let ip: Ipv6Addr = lit
            .parse()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        let rest = &after[end + 1..];
        if !rest.is_empty() && !rest.starts_with(':') {
            return Err(bad("expected \":\" after \"]\""));
        }
        (
            Host::Ip(IpAddr::V6(ip)),
            rest.strip_prefix(':').unwrap_or(""),
        )
    } else {
        let (h, rest) = match tok.split_once(':') {
            Some((h, r)) => (h, r),
            None => (tok, ""),
        };
        if h.is_empty() {
            return Err(bad("empty host"));
        }
        if rest.matches(':').count() > 1 {
            return Err(bad(
                "too many \":\" (IPv6 addresses go in brackets: [::1]:port)",
            ));
        }
        (parse_host(h).map_err(|e| bad(&e))?, rest)
    };
    let (port_s, maxc_s) = match rest.split_once(':') {
        Some((p, m)) => (p, Some(m)),
        None => (rest, None),
    };
    let port = if port_s.is_empty() {
        default_port
    } else {
        parse_port(port_s).map_err(|e| bad(&e))?
    };
    let maxc = match maxc_s {
        None => 0,
        Some("") => return Err(bad("empty maxc")),
        Some(m) => m.parse::<u32>().map_err(|_| bad("maxc is not a number"))?,
    };
    Ok(ChannelConfig {
        host,
        port,
        maxc,
        weight: 1,
    })
}

/// A host name or IP literal (IPv4, or a bare IPv6 only from `-b`/`-B`).
fn parse_host(h: &str) -> Result<Host, String> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    let valid = h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        });
    if valid {
        Ok(Host::Name(h.to_string()))
    } else {
        Err(format!("\"{h}\" is not a valid host name"))
    }
}

/// `-b`/`-B` address: an IP literal (IPv6 bare or bracketed; IPv4-mapped
/// IPv6 means IPv4) or a name resolved now.
fn resolve_bind_host(s: &str) -> Result<IpAddr, UsageError> {
    let lit = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = lit.parse::<IpAddr>() {
        return Ok(ip.to_canonical());
    }
    if parse_host(lit).is_err() {
        return err(format!("bad address \"{s}\""));
    }
    (lit, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .map(|sa| sa.ip())
        .ok_or_else(|| UsageError(format!("bad address \"{s}\": does not resolve")))
}

#[cfg(test)]
#[allow(unused_imports)]
mod tests;
