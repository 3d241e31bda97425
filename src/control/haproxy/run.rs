//! Running one parsed command against the process's listeners: names and
//! `#ID`s resolved, changes applied by [`crate::operator::apply`] (the one
//! operator model) and persisted like every operator change, views
//! rendered by [`super::stat`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{error, info};

use super::command::{Change, Cmd, SrvRef};
use super::stat::{self, Checks, Proxy};
use crate::config::monitor::Probe;
use crate::control::state::StateFile;
use crate::operator::{self, ChannelKey, OpError, OperatorOp, Outcome};
use crate::registry::Registry;
use crate::render::{ListenerView, Pipes};
use crate::service::Service;

/// What every session of the socket shares.
pub(crate) struct Runtime {
    pub(crate) registry: Registry,
    pub(crate) state: Option<Arc<StateFile>>,
    /// The process's connection limit (`show info`'s Maxconn).
    pub(crate) maxconn: usize,
    pub(crate) threads: usize,
    pub(crate) started: Instant,
    /// Serializes changes between sessions.
    pub(crate) write: tokio::sync::Mutex<()>,
}

/// What one command did to the session.
pub(crate) enum Effect {
    None,
    Prompt,
    Quit,
    Timeout(Duration),
}

const NO_BACKEND: &str = "No such backend.";
const NO_SERVER: &str = "No such server.";

impl Runtime {
    /// Run `cmd` for peer `uid`; its output (each line ending in a newline,
    /// without the empty line that ends every answer) and what it does to
    /// the session.
    pub(crate) async fn run(&self, cmd: Cmd, uid: u32) -> (String, Effect) {
        let out = match cmd {
            Cmd::Nop => String::new(),
            Cmd::Prompt => return (String::new(), Effect::Prompt),
            Cmd::Quit => return (String::new(), Effect::Quit),
            Cmd::SetTimeoutCli(d) => return (String::new(), Effect::Timeout(d)),
            Cmd::Help(words) => super::command::help(&words),
            Cmd::ShowVersion => format!("{}\n", stat::version(env!("CARGO_PKG_VERSION"))),
            Cmd::ShowInfo { typed } => stat::info(&self.info(), typed),
            Cmd::ShowBackend => self.with_proxies(None, stat::backends),
            Cmd::ShowStat(f) => self.with_proxies(None, |p| stat::show_stat(p, &f)),
            Cmd::ShowServersState(b) => {
                if let Some(b) = &b {
                    if self.backend(b).is_none() {
                        return (line("Can't find backend."), Effect::None);
                    }
                }
                self.with_proxies(b.as_deref(), stat::servers_state)
            }
            Cmd::GetWeight(r) => match self.server(&r) {
                Ok((_, svc, key)) => match operator::find(&svc.pool.groups(), &key) {
                    Ok((_, chans)) => chans.first().map_or_else(
                        || line(NO_SERVER),
                        |c| line(format!("{} (initial {})", c.weight(), c.initial_weight())),
                    ),
                    Err(_) => line(NO_SERVER),
                },
                Err(e) => line(e),
            },
            Cmd::Set(r, change) => self.change(&r, change, uid).await,
        };
        (out, Effect::None)
    }

    /// The listener `b` names (`#ID` or name): its proxy id and Service.
    fn backend(&self, b: &str) -> Option<(usize, Arc<Service>)> {
        let all = self.registry.services();
        let at = match b.strip_prefix('#') {
            Some(id) => id.parse::<usize>().ok().and_then(|i| i.checked_sub(1)),
            None => all.iter().position(|s| s.cfg.name == b),
        }?;
        all.get(at).map(|s| (at + 1, Arc::clone(s)))
    }

    /// The channel `r` names, as a key of the operator model.
    fn server(&self, r: &SrvRef) -> Result<(usize, Arc<Service>, ChannelKey), &'static str> {
        let (iid, svc) = self.backend(&r.backend).ok_or(NO_BACKEND)?;
        let groups = svc.pool.groups();
        let mut places = groups
            .iter()
            .enumerate()
            .flat_map(|(g, gr)| gr.channels.iter().enumerate().map(move |(i, c)| (g, i, c)));
        let found = match r.server.strip_prefix('#') {
            Some(id) => {
                let sid = id.parse::<usize>().ok().and_then(|i| i.checked_sub(1));
                sid.and_then(|sid| places.nth(sid))
            }
            None => places.find(|(_, _, c)| c.name() == r.server),
        };
        let (group, index, _) = found.ok_or(NO_SERVER)?;
        Ok((iid, svc, ChannelKey::At { group, index }))
    }

    async fn change(&self, r: &SrvRef, change: Change, uid: u32) -> String {
        let (_, svc, key) = match self.server(r) {
            Ok(x) => x,
            Err(e) => return line(e),
        };
        if change == Change::Health(true) && svc.cfg.monitor.is_none() {
            return line("Health check was not configured on this server, cannot enable.");
        }
        let op = match change {
            Change::Admin(a) => OperatorOp::Admin(key, a),
            Change::Weight(w) => OperatorOp::Weight(key, w),
            Change::Health(on) => OperatorOp::Health(key, on),
            Change::Shutdown => OperatorOp::Shutdown(key),
        };
        let _w = self.write.lock().await;
        let out = match operator::apply(&svc, &op) {
            Ok(out) => out,
            Err(OpError::NoChannel(_)) => return line(NO_SERVER),
            Err(OpError::BadWeight(_)) => {
                return line(format!(
                    "Absolute weight can only be between 0 and {} inclusive.",
                    operator::MAX_WEIGHT
                ));
            }
            Err(e) => return line(e.to_string()),
        };
        info!(
            listener = %svc.cfg.name,
            uid,
            server = %r.server,
            "haproxy socket: {}",
            describe(&out)
        );
        if op.persists() && out.changed() {
            if let Err(e) = crate::control::listener::save(self.state.as_ref(), &svc).await {
                error!(listener = %svc.cfg.name, "state file not written: {e}");
                return line(format!("State file not written: {e}"));
            }
        }
        String::new()
    }

    /// The listeners (only `only`, if given) as the runtime API sees them.
    fn with_proxies(&self, only: Option<&str>, f: impl FnOnce(&[Proxy<'_>]) -> String) -> String {
        let all = self.registry.services();
        let views: Vec<(usize, &Arc<Service>, ListenerView)> = all
            .iter()
            .enumerate()
            .filter(|(i, s)| {
                only.is_none_or(|b| {
                    b == s.cfg.name || b.strip_prefix('#') == Some(&(i + 1).to_string())
                })
            })
            .map(|(i, s)| (i + 1, s, ListenerView::of(s)))
            .collect();
        let uptime = self.started.elapsed();
        let proxies: Vec<Proxy<'_>> = views
            .iter()
            .map(|(iid, svc, view)| Proxy {
                iid: *iid,
                view,
                checks: svc.cfg.monitor.as_ref().map(|m| Checks {
                    layer7: !m.checks.iter().all(|c| c.probe == Probe::Connect),
                    rise: m.rise,
                    fall: m.fall,
                }),
                uptime,
                changed: svc
                    .pool
                    .groups()
                    .iter()
                    .flat_map(|g| {
                        g.channels
                            .iter()
                            .map(|c| c.last_change().map(|t| t.elapsed()))
                    })
                    .collect(),
            })
            .collect();
        f(&proxies)
    }

    fn info(&self) -> stat::Info {
        let all = self.registry.services();
        let sum = |f: &dyn Fn(&Service) -> u64| all.iter().map(|s| f(s)).sum::<u64>();
        use std::sync::atomic::Ordering::Relaxed;
        let pipes = Pipes::now();
        let rt = tokio::runtime::Handle::current().metrics();
        stat::Info {
            version: stat::version(env!("CARGO_PKG_VERSION")),
            pid: std::process::id(),
            uptime: self.started.elapsed(),
            threads: self.threads,
            nofile: crate::sys::nofile_limit(),
            maxconn: self.maxconn,
            curr_conns: sum(&|s| s.stats.active.load(Relaxed)),
            cum_conns: sum(&|s| s.stats.accepted.load(Relaxed)),
            pipes_used: pipes.in_use,
            pipes_free: pipes.pooled,
            tasks: rt.num_alive_tasks(),
            run_queue: rt.global_queue_depth(),
            node: crate::fleet::hostname(),
        }
    }
}

/// One line of output.
fn line(s: impl Into<String>) -> String {
    let mut s = s.into();
    s.push('\n');
    s
}

/// A change for the log.
fn describe(out: &Outcome) -> String {
    match out {
        Outcome::Admin { admin, changed, .. } => {
            format!(
                "admin {admin:?}{}",
                if *changed { "" } else { " (unchanged)" }
            )
        }
        Outcome::Weight {
            weight, initial, ..
        } => format!("weight {weight} (initial {initial})"),
        Outcome::Health { on, .. } => format!("health checks {}", if *on { "on" } else { "off" }),
        Outcome::Shutdown { sessions, .. } => format!("{sessions} sessions shut down"),
        other => format!("{other:?}"),
    }
}
