//! A reload's plan, made before anything running is touched: the new
//! config loaded and its channels resolved off the runtime thread, then
//! one [`Step`] per new listener (keep, change, add) with every fallible
//! part (binding, registering sockets) already done. Applying it
//! (`Supervisor::apply`) cannot fail.

use crate::config::quote;
use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::PathBuf;

use crate::operator::Endpoint;
use tokio::net::TcpListener;
use tracing::info;

use crate::config::{Config, Global, Host, ListenerConfig, Overlay};
use crate::health::RiseFallParams;
use crate::service::Service;

/// The config file and the command line's own globals (which win over the
/// file's on every reload); `None` when started from the command line.
pub(crate) type Source = Option<(PathBuf, Overlay)>;

/// Daemonizing changes to /: make the paths given relative absolute.
pub(crate) fn absolutize(g: &mut Global) {
    for p in [
        &mut g.pidfile,
        &mut g.log_file,
        &mut g.state_file,
        &mut g.control,
    ]
    .into_iter()
    .flatten()
    .chain(g.haproxy_socket.as_mut().map(|h| &mut h.path))
    {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
}

/// What happens to one listener of the new config.
pub(crate) enum Step {
    /// Same bind, same settings: the running listener `i` stays.
    Keep(usize),
    /// Same bind, new settings: running listener `i` gets a new Service
    /// on this registration of its socket.
    Change(usize, TcpListener),
    /// A new bind: this socket and its registration.
    Add(std::net::TcpListener, TcpListener),
}

/// What a reload changed, counted per listener.
#[derive(Debug, Default)]
pub(crate) struct Summary {
    pub(crate) added: usize,
    pub(crate) removed: usize,
    pub(crate) changed: usize,
    pub(crate) same: usize,
}

impl std::fmt::Display for Summary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let Summary {
            added,
            removed,
            changed,
            same,
        } = self;
        write!(
            f,
            "{added} added, {removed} removed, {changed} changed, {same} unchanged"
        )
    }
}

/// Read and validate the config file off the runtime thread.
pub(crate) async fn load(path: PathBuf, cli: Overlay) -> Result<Config, String> {
    let mut new = tokio::task::spawn_blocking(move || {
        crate::config::load_file(&path, &cli).map_err(|e| e.to_string())
    })
    .await
    .map_err(|e| format!("config loader failed: {e}"))??;
    absolutize(&mut new.global);
    Ok(new)
}

/// The addresses of every distinct host:port of a config, looked up once
/// (a map: a reload's work stays linear in the number of channels).
pub(crate) struct Resolved(HashMap<(Host, u16), Vec<SocketAddr>>);

impl Resolved {
    /// Resolve the new config's channels off the runtime thread (kept
    /// channels keep their current addresses; only new ones use these).
    pub(super) async fn of(cfg: &Config) -> Result<Resolved, String> {
        let wanted: HashSet<(Host, u16)> = cfg
            .listeners
            .iter()
            .flat_map(|l| l.groups.iter().flat_map(|g| g.channels.iter()))
            .map(|c| (c.host.clone(), c.port))
            .collect();
        let found = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(h, p)| {
                    let a = crate::service::resolve(&h, p);
                    ((h, p), a)
                })
                .collect::<HashMap<_, _>>()
        })
        .await
        .map_err(|e| format!("resolver failed: {e}"))?;
        Ok(Resolved(found))
    }

    pub(super) fn get(&self, h: &Host, p: u16) -> Vec<SocketAddr> {
        self.0.get(&(h.clone(), p)).cloned().unwrap_or_default()
    }
}

/// The running listeners as the planner sees them: config and socket.
pub(crate) struct Current<'a> {
    pub(crate) cfg: &'a ListenerConfig,
    pub(crate) sock: &'a std::net::TcpListener,
}

/// Phase 1, fallible, nothing running is touched: bind every new listener
/// and register a socket for every listener that changes.
pub(crate) fn steps(cur: &[Current<'_>], new: &[ListenerConfig]) -> Result<Vec<Step>, String> {
    let same_bind =
        |a: &ListenerConfig, b: &ListenerConfig| a.bind == b.bind && a.dual_stack == b.dual_stack;
    let mut plan = Vec::with_capacity(new.len());
    for l in new {
        let at = cur.iter().position(|r| same_bind(r.cfg, l));
        plan.push(match at.and_then(|i| cur.get(i).map(|r| (i, r))) {
            Some((i, r)) if r.cfg == l => Step::Keep(i),
            Some((i, r)) => Step::Change(i, register(&l.name, r.sock)?),
            None => {
                let sock = crate::listener::bind(l.bind, l.dual_stack).map_err(|e| {
                    format!("listener \"{}\": cannot listen on {}: {e}", l.name, l.bind)
                })?;
                let reg = register(&l.name, &sock)?;
                Step::Add(sock, reg)
            }
        });
    }
    Ok(plan)
}

/// A tokio listener on a dup of `sock` (the fallible part of starting).
pub(crate) fn register(name: &str, sock: &std::net::TcpListener) -> Result<TcpListener, String> {
    let dup = sock
        .try_clone()
        .map_err(|e| format!("listener {}: cannot dup socket: {e}", quote(name)))?;
    TcpListener::from_std(dup)
        .map_err(|e| format!("listener {}: cannot register socket: {e}", quote(name)))
}

/// Log channels that a reload added or dropped.
pub(crate) fn log_channel_changes(old: &Service, new: &Service) {
    // A channel is its group, name and address.
    let list = |s: &Service| -> Vec<(usize, String, Endpoint)> {
        s.pool
            .groups()
            .iter()
            .enumerate()
            .flat_map(|(g, gr)| {
                gr.channels
                    .iter()
                    .map(move |c| (g, c.name().to_string(), Endpoint::of(c)))
            })
            .collect()
    };
    let (a, b) = (list(old), list(new));
    let (in_a, in_b): (HashSet<_>, HashSet<_>) = (a.iter().collect(), b.iter().collect());
    for (g, name, c) in b.iter().filter(|x| !in_a.contains(x)) {
        info!(listener = %new.cfg.name, group = g, channel = %c, %name, "channel added");
    }
    for (g, name, c) in a.iter().filter(|x| !in_b.contains(x)) {
        info!(listener = %new.cfg.name, group = g, channel = %c, %name, "channel removed; its connections continue");
    }
}

/// The process-wide settings that changed but apply only after a restart.
pub(crate) fn globals_needing_restart(a: &Global, b: &Global) -> Vec<&'static str> {
    let mut v = Vec::new();
    if a.max_conns != b.max_conns {
        v.push("max_conns");
    }
    if a.metrics != b.metrics {
        v.push("metrics");
    }
    if a.user != b.user {
        v.push("user");
    }
    if a.threads != b.threads {
        v.push("threads");
    }
    if a.pidfile != b.pidfile || a.log_file != b.log_file || a.log_format != b.log_format {
        v.push("pidfile/log settings");
    }
    if a.resolve_interval != b.resolve_interval {
        v.push("resolve_interval");
    }
    let fixed = |g: &Global| g.fleet.as_ref().map(crate::config::FleetConfig::fixed);
    if fixed(a) != fixed(b) {
        v.push("fleet");
    }
    if a.haproxy_socket != b.haproxy_socket {
        v.push("haproxy_socket");
    }
    v
}

/// Passive detection's rise/fall: the monitor's settings, or defaults.
pub(crate) fn rise_fall(l: &ListenerConfig) -> RiseFallParams {
    match &l.monitor {
        Some(m) => RiseFallParams {
            rise: m.rise,
            fall: m.fall,
            noenable: m.noenable,
            nodisable: m.nodisable,
        },
        None => RiseFallParams::default(),
    }
}
