//! The file's raw model → [`Config`]: globals (the command line's overlay
//! wins where given), then each listener through the shared
//! [`ListenerSpec`] builder. File-only rules live here: unique names and
//! binds, bind port 0, `resolve_interval` and `monitor.interval` floors.

use crate::config::quote;
use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::Duration;

use serde_saphyr::{Location, Spanned};

use super::raw::{
    RawCheck, RawConnLog, RawConnLogFormat, RawFailback, RawFile, RawFleet, RawHaproxySocket,
    RawKeepalive, RawListener, RawLogFormat, RawMonitor, RawOnDown, RawOnUp, RawPolicy,
    RawRedisRole,
};
use super::scalars::{Dur, RawChannel};
use crate::config::build::{ListenerSpec, SpecError, binds_overlap};
use crate::config::fleet::{DEFAULT_PREFIX, FleetConfig, TlsFiles};
use crate::config::monitor::{Check, MonitorSpec, Probe, RedisRole, read_password_file};
use crate::config::{
    Config, ConnLogConfig, ConnLogFormat, ConnLogTarget, Failback, Global, GroupConfig,
    HaproxySocket, Keepalive, ListenerConfig, LogFormat, Overlay, Policy,
};

/// `line L column C: `, or nothing when the position is unknown.
pub(super) fn at(loc: Location) -> String {
    if loc == Location::UNKNOWN {
        String::new()
    } else {
        format!("line {} column {}: ", loc.line(), loc.column())
    }
}

fn haproxy_socket(raw: &RawHaproxySocket) -> Result<HaproxySocket, String> {
    if let Some(g) = &raw.group {
        if g.is_empty() || g.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(format!("bad group {}", quote(g)));
        }
    }
    Ok(HaproxySocket {
        path: raw.path.clone(),
        mode: raw.mode.map_or(HaproxySocket::DEFAULT_MODE, |m| m.0),
        group: raw.group.clone(),
    })
}

/// The file's globals under the command line's overlay.
fn globals(raw: &RawFile, overlay: &Overlay) -> Result<Global, String> {
    let mut file = Global {
        log_format: match raw.log_format {
            Some(RawLogFormat::Json) => LogFormat::Json,
            Some(RawLogFormat::Text) | None => LogFormat::Text,
        },
        log_file: raw.log_file.clone(),
        pidfile: raw.pidfile.clone(),
        max_conns: raw.max_conns.map(|n| n.0 as usize),
        state_file: raw.state_file.clone(),
        user: raw.user.clone(),
        metrics: raw.metrics.map(|b| b.0),
        ..Global::default()
    };
    if let Some(g) = raw.grace {
        file.grace = g.0;
    }
    if let Some(t) = raw.threads {
        file.threads = t.0 as usize;
    }
    if let Some(r) = raw.resolve_interval {
        if r.0 < Duration::from_secs(1) {
            return Err("resolve_interval: must be at least 1s".into());
        }
        file.resolve_interval = r.0;
    }
    if let Some(f) = &raw.fleet {
        file.fleet = Some(fleet(f)?);
    }
    if let Some(h) = &raw.haproxy_socket {
        file.haproxy_socket =
            Some(haproxy_socket(&h.0).map_err(|e| format!("haproxy_socket: {e}"))?);
    }
    let g = overlay.over(file);
    if let Some(f) = &g.fleet {
        f.validate().map_err(|e| format!("fleet.{e}"))?;
    }
    Ok(g)
}

fn fleet(f: &RawFleet) -> Result<FleetConfig, String> {
    let mut c = FleetConfig {
        endpoints: f.endpoints.clone(),
        discovery_srv: f.discovery_srv.clone(),
        tls: f.tls.as_ref().map(|t| {
            Box::new(TlsFiles {
                ca: t.ca.clone(),
                cert: t.cert.clone(),
                key: t.key.clone(),
            })
        }),
        user: f.user.clone(),
        password_file: f.password_file.clone(),
        loaded: Default::default(),
        prefix: f.prefix.clone().unwrap_or_else(|| DEFAULT_PREFIX.into()),
        id: f.id.clone(),
        fallback: f.fallback.map(|d| d.0),
    };
    c.validate().map_err(|e| format!("fleet.{e}"))?;
    c.load_files().map_err(|e| format!("fleet.{e}"))?;
    Ok(c)
}

pub(super) fn build(raw: RawFile, overlay: &Overlay) -> Result<Config, String> {
    let global = globals(&raw, overlay)?;
    let mut names = HashSet::new();
    let mut binds = HashSet::new();
    let mut listeners: Vec<ListenerConfig> = Vec::with_capacity(raw.listeners.len());
    let default_log = raw
        .connection_log
        .as_ref()
        .map(connection_log)
        .transpose()?;
    for sl in raw.listeners {
        let bind_at = at(sl.value.bind.referenced);
        let lc = listener(sl, &mut names, &mut binds, default_log.as_ref())?;
        if let Some(other) = listeners.iter().find(|o| overlap(o, &lc)) {
            return Err(format!(
                "{bind_at}bind: {} overlaps {} of listener \"{}\" (both cannot be bound)",
                lc.bind, other.bind, other.name
            ));
        }
        listeners.push(lc);
    }
    crate::config::selfloop::cross_loops(&listeners).map_err(|e| e.to_string())?;
    if let Some(m) = global.metrics {
        if let Some(l) = listeners
            .iter()
            .find(|l| binds_overlap((m, false), (l.bind, l.dual_stack)))
        {
            return Err(format!(
                "metrics: {m} overlaps the bind {} of listener \"{}\"",
                l.bind, l.name
            ));
        }
    }
    Ok(Config { global, listeners })
}

/// One listener of the file: its file-only rules (a unique name and bind,
/// no port 0), then the shared builder.
fn listener(
    sl: Spanned<RawListener>,
    names: &mut HashSet<String>,
    binds: &mut HashSet<SocketAddr>,
    default_log: Option<&ConnLogConfig>,
) -> Result<ListenerConfig, String> {
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
    // Channel positions, for a self-loop error.
    let spans: Vec<Vec<Location>> = l
        .groups
        .iter()
        .map(|g| g.channels.iter().map(|c| c.referenced).collect())
        .collect();
    let raw_route = l.route;
    let mut groups = Vec::with_capacity(l.groups.len());
    for g in l.groups {
        let on_demand = super::demand::on_demand(g.on_empty, g.on_idle, at)
            .map_err(|e| format!("{e} (listener {})", quote(&name)))?;
        groups.push({
            let group_proxy = g.proxy_protocol.and_then(|p| p.0);
            GroupConfig {
                on_demand,
                name: g.name.map(|n| n.0).unwrap_or_default(),
                policy: g.policy.map_or(Policy::RoundRobin, |p| match p {
                    RawPolicy::Rr => Policy::RoundRobin,
                    RawPolicy::Hash => Policy::Hash,
                    RawPolicy::Leastconn => Policy::LeastConn,
                }),
                channels: g
                    .channels
                    .into_iter()
                    .map(|c| {
                        let RawChannel(mut ch, own) = c.value;
                        ch.proxy_protocol = own.map_or(group_proxy, |p| p.0);
                        ch
                    })
                    .collect(),
                proxy_protocol: group_proxy,
            }
        });
    }
    let loc = at(sl.referenced);
    let mut spec = ListenerSpec::new(name.clone(), bind, groups);
    spec.connect_timeout = l.connect_timeout.map(|d| d.0);
    spec.idle_timeout = l.idle_timeout.map(|d| d.0);
    if let Some(k) = l.keepalive {
        spec.client_keepalive = k.client.map(keepalive);
        spec.server_keepalive = k.server.map(keepalive);
    }
    spec.source = l.source.map(|s| s.0);
    spec.autodisable = l.autodisable;
    spec.hash_failover = l.hash_failover;
    spec.race = l.race.map(|d| d.0);
    spec.spin = l.spin.map(|d| d.0);
    spec.failback = l.failback.map(|f| match f {
        RawFailback::Auto => Failback::Auto,
        RawFailback::Manual => Failback::Manual,
    });
    spec.on_down_shutdown = matches!(l.on_down, Some(RawOnDown::Shutdown));
    spec.on_up_shutdown_backup = matches!(l.on_up, Some(RawOnUp::ShutdownBackup));
    spec.fence = l.fence;
    spec.accept_proxy = l
        .accept_proxy
        .map(|v| v.into_iter().map(|c| c.0).collect())
        .unwrap_or_default();
    if let Some(m) = l.monitor {
        spec.monitor = Some(monitor(&loc, &name, m)?);
    }
    spec.connection_log = match &l.connection_log {
        Some(c) => Some(connection_log(c)?),
        None => default_log.cloned(),
    };
    let mut lc = spec
        .build()
        .map_err(|e| spec_error(e, &loc, &name, &spans))?;
    // Targets name groups: resolved once every group has its name.
    let group_names = lc.groups.iter().map(|g| g.name.clone()).collect();
    lc.route = raw_route
        .map(|r| super::route::route(r, group_names))
        .transpose()
        .map_err(|e| format!("{loc}{e} (listener {})", quote(&name)))?;
    Ok(lc)
}

/// The builder's verdict in the file's words, with the line and column.
fn spec_error(e: SpecError, loc: &str, name: &str, spans: &[Vec<Location>]) -> String {
    match e {
        SpecError::ZeroConnectTimeout => format!(
            "{loc}connect_timeout: must be positive (listener {})",
            quote(name)
        ),
        SpecError::KeepaliveRange(_) => format!(
            "{loc}keepalive: idle and interval must be 1s-32767s (listener {})",
            quote(name)
        ),
        SpecError::SelfLoop {
            group,
            index,
            ref channel,
            ..
        } => {
            let pos = spans
                .get(group)
                .and_then(|g| g.get(index))
                .map_or_else(String::new, |l| at(*l));
            format!(
                "{pos}channels: {channel} points at listener {} itself",
                quote(name)
            )
        }
        SpecError::Name(e) => format!("{loc}{e} (listener {})", quote(name)),
    }
}

fn overlap(a: &ListenerConfig, b: &ListenerConfig) -> bool {
    binds_overlap((a.bind, a.dual_stack), (b.bind, b.dual_stack))
}

/// `connection_log: {target, format}`.
fn connection_log(c: &Spanned<RawConnLog>) -> Result<ConnLogConfig, String> {
    let target = ConnLogTarget::parse(&c.value.target)
        .map_err(|e| format!("{}connection_log.target: {e}", at(c.referenced)))?;
    let format = match c.value.format {
        Some(RawConnLogFormat::Json) => ConnLogFormat::Json,
        Some(RawConnLogFormat::Tcplog) | None => ConnLogFormat::Tcplog,
    };
    Ok(ConnLogConfig { target, format })
}

fn keepalive(k: RawKeepalive) -> Keepalive {
    Keepalive {
        idle: k.idle.0,
        interval: k.interval.0,
        probes: k.probes.0 as u32,
    }
}

fn monitor(loc: &str, name: &str, m: RawMonitor) -> Result<MonitorSpec, String> {
    let d = MonitorSpec::default();
    let interval = m.interval.map_or(d.interval, |i| i.0);
    if interval < Duration::from_millis(100) {
        return Err(format!(
            "{loc}monitor.interval: must be at least 100ms (listener {})",
            quote(name)
        ));
    }
    let t = |x: Option<Dur>| x.map(|d| d.0).filter(|d| !d.is_zero());
    for c in &m.checks {
        if let RawCheck::Mysql(my) = c {
            if my.user.is_none() && (my.read_only.is_some() || my.max_lag.is_some()) {
                return Err(format!(
                    "{loc}monitor.checks: mysql read_only and max_lag need user (listener {})",
                    quote(name)
                ));
            }
            if my.user.is_none() && my.password_file.is_some() {
                return Err(format!(
                    "{loc}monitor.checks: mysql password_file needs user (listener {})",
                    quote(name)
                ));
            }
        }
    }
    let checks = m
        .checks
        .into_iter()
        .map(|c| {
            Ok(match c {
                RawCheck::Connect(c) => Check {
                    probe: Probe::Connect,
                    timeout: t(c.timeout),
                },
                RawCheck::Http(h) => Check {
                    probe: Probe::Http {
                        path: h.path.0,
                        port: h.port.map(|p| p.0),
                        host: h.host,
                        expect: h.expect.map_or_else(|| vec![(200, 399)], |e| e.0),
                        body: h.body,
                    },
                    timeout: t(h.timeout),
                },
                RawCheck::Mysql(my) => Check {
                    probe: Probe::Mysql {
                        user: my.user,
                        password: match my.password_file {
                            Some(p) => {
                                Some(read_password_file(std::path::Path::new(&p)).map_err(|e| {
                                    format!(
                                        "{loc}monitor.checks: mysql {e} (listener {})",
                                        quote(name)
                                    )
                                })?)
                            }
                            None => None,
                        },
                        read_only: my.read_only,
                        max_lag: my.max_lag.map(|d| d.0),
                    },
                    timeout: t(my.timeout),
                },
                RawCheck::Command(c) => Check {
                    probe: Probe::Command {
                        argv: c.argv.0,
                        pass: c.pass.unwrap_or_else(|| vec![0]),
                    },
                    timeout: t(c.timeout),
                },
                RawCheck::Redis(r) => Check {
                    probe: Probe::Redis {
                        password: match r.password_file {
                            None => None,
                            Some(p) => Some(read_password_file(&p).map_err(|e| {
                                format!("{loc}monitor.checks: redis {e} (listener {})", quote(name))
                            })?),
                        },
                        role: r.role.map(|r| match r {
                            RawRedisRole::Master => RedisRole::Master,
                            RawRedisRole::Replica => RedisRole::Replica,
                        }),
                    },
                    timeout: t(r.timeout),
                },
                RawCheck::SendExpect(s) => Check {
                    probe: Probe::SendExpect {
                        send: s.send.into_bytes(),
                        expect: s.expect.into_bytes(),
                    },
                    timeout: t(s.timeout),
                },
            })
        })
        .collect::<Result<Vec<_>, String>>()?;
    Ok(MonitorSpec {
        checks,
        interval,
        suspect_interval: None,
        rise: m.rise.map_or(d.rise, |r| r.0 as u32),
        fall: m.fall.map_or(d.fall, |f| f.0 as u32),
        jitter: m.jitter.map_or(d.jitter, |j| j.0),
        noenable: m.noenable,
        nodisable: m.nodisable,
        // The listener's `on_down`/`on_up` keys carry these in the file.
        on_down_shutdown: false,
        on_up_shutdown_backup: false,
        fence: None,
    })
}
