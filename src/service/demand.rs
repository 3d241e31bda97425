//! Groups started on demand: the `on_empty:` command when a client needs a
//! group with no eligible channel, and the `on_idle:` command when the
//! group has had no connection for a while. Each command runs in its own
//! task, bounded, and never blocks the accept loop, the data path or
//! another group; the state is the pool's `demand`, the holding of
//! clients the proxy's `connect`.
//!
//! Both commands run directly (no shell) through the reaper's
//! `spawn_on_demand`: environment `PATH`,
//! [`ENV_LISTENER`], [`ENV_BIND`], [`ENV_GROUP`], [`ENV_CHANNELS`] and
//! the reaper's mark (what they leave running is the backend: no sweep
//! and no exit of balance kills it), stdin/stdout/stderr on /dev/null
//! (output is discarded: a script logs where it likes), a session of
//! their own.
//!
//! `on_empty` is bounded by its `timeout`: clients are held from the start
//! of the command until a channel of the group is eligible (checks and
//! `rise` decide, as always) or the timeout passes; a command still
//! running then is killed with its process group (a backend it moved to a
//! session of its own survives). A command still running when the group
//! became ready is left alone (it may be the server itself). A non-zero
//! exit is logged and changes nothing else: the clients wait for the
//! channel or the timeout. `on_idle` is bounded by [`STOP_BOUND`]; past it,
//! it is killed with its process group. An `on_idle` that exits 0 takes
//! the group's checked channels down at once (see [`mark_stopped`]).

use std::pin::pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::Service;
use crate::health::{Outcome, Reason};
use crate::pool::demand::{Demand, Phase};
use crate::pool::{Admin, Candidate, Channel, Group};
use crate::sys::reaper;

/// The listener's name, in the commands' environment.
pub(crate) const ENV_LISTENER: &str = "BALANCE_LISTENER";
/// The listener's bind address.
pub(crate) const ENV_BIND: &str = "BALANCE_BIND";
/// The group's name.
pub(crate) const ENV_GROUP: &str = "BALANCE_GROUP";
/// The group's channels, `host:port` separated by spaces.
pub(crate) const ENV_CHANNELS: &str = "BALANCE_CHANNELS";

/// Longest an `on_idle` command may run.
pub(crate) const STOP_BOUND: Duration = Duration::from_secs(60);

/// Re-check a starting group at least this often even without a
/// notification.
const RECHECK: Duration = Duration::from_millis(250);

/// How often the idle clock is read: a tenth of `after`, within
/// 100 ms-5 s (so `on_idle` runs at most this late).
pub(crate) fn idle_tick(after: Duration) -> Duration {
    (after / 10).clamp(Duration::from_millis(100), Duration::from_secs(5))
}

/// The commands' environment for group `group` of `svc`.
fn env(svc: &Service, group: &Group) -> Vec<(&'static str, String)> {
    let channels: Vec<String> = group
        .channels
        .iter()
        .map(|c| c.target().to_string())
        .collect();
    vec![
        (ENV_LISTENER, svc.cfg.name.clone()),
        (ENV_BIND, svc.cfg.bind.to_string()),
        (ENV_GROUP, group.name().to_string()),
        (ENV_CHANNELS, channels.join(" ")),
    ]
}

/// A client asked first: run group `g`'s `on_empty` (its state is
/// `Starting` already) and end the start when a channel is eligible or
/// the timeout passed.
pub(crate) fn start(svc: &Service, g: usize, d: Arc<Demand>) {
    let Phase::Starting { since, deadline } = d.phase() else {
        return;
    };
    let Some(group) = svc.pool.groups().get(g).cloned() else {
        d.started(since, false);
        return;
    };
    let Some(argv) = d.cfg.on_empty.as_ref().map(|e| e.argv.clone()) else {
        return;
    };
    let run = Start {
        listener: svc.cfg.name.clone(),
        env: env(svc, &group),
        channels: group.channels.clone(),
        group: group.name().to_string(),
        eligible: Arc::clone(&svc.pool.eligible),
        argv,
        since,
        deadline: Instant::from_std(deadline),
        d,
    };
    tokio::spawn(run.run());
}

struct Start {
    listener: String,
    group: String,
    env: Vec<(&'static str, String)>,
    channels: Vec<Arc<Channel>>,
    eligible: Arc<Notify>,
    argv: Vec<String>,
    since: std::time::Instant,
    deadline: Instant,
    d: Arc<Demand>,
}

type Spawned = (tokio::process::Child, Option<reaper::Tracked>);

impl Start {
    async fn run(self) {
        reaper::watch_adopted();
        let (listener, group) = (&self.listener, &self.group);
        info!(%listener, %group, "on_empty: starting the group: {}", self.argv.join(" "));
        let mut child = spawn(&self.argv, &self.env, listener, group, "on_empty");
        let ready = loop {
            let mut notified = pin!(self.eligible.notified());
            notified.as_mut().enable();
            if self.channels.iter().any(|c| c.eligible()) {
                break true;
            }
            if Instant::now() >= self.deadline {
                break false;
            }
            tokio::select! {
                _ = notified => {}
                _ = sleep(RECHECK) => {}
                _ = sleep_until(self.deadline) => {}
                st = wait(&mut child) => {
                    child = None;
                    exited(st, listener, group, "on_empty");
                }
            }
        };
        let took = self.since.elapsed();
        if ready {
            self.d.started(self.since, true);
            info!(%listener, %group, "on_empty: the group is ready after {} ms", took.as_millis());
            if let Some(c) = child {
                // Perhaps the server itself: left running, reaped when
                // it ends.
                tokio::spawn(async move {
                    let mut c = Some(c);
                    let st = wait(&mut c).await;
                    debug!(listener = %self.listener, group = %self.group, "on_empty command ended: {st:?}");
                });
            }
            return;
        }
        let pause = self.d.started(self.since, false).unwrap_or_default();
        let killed = kill(child).await;
        warn!(%listener, %group,
            "on_empty: no channel of the group eligible within {} ms{}; its clients go on (next group, or closed); no new start for {} s",
            took.as_millis(),
            if killed { " (the command still ran: killed)" } else { "" },
            pause.as_secs());
    }
}

/// Spawn `argv` for `what`; a failure to spawn is logged here.
fn spawn(
    argv: &[String],
    env: &[(&'static str, String)],
    listener: &str,
    group: &str,
    what: &str,
) -> Option<Spawned> {
    let (prog, args) = argv.split_first()?;
    match reaper::spawn_on_demand(prog, args, env) {
        Ok(c) => Some(c),
        Err(e) => {
            warn!(%listener, %group, "{what}: cannot run {prog}: {e}");
            None
        }
    }
}

/// The exit of a spawned command (pending forever without one).
async fn wait(child: &mut Option<Spawned>) -> std::io::Result<std::process::ExitStatus> {
    match child {
        Some((c, _)) => c.wait().await,
        None => std::future::pending().await,
    }
}

/// Log a command's end unless it succeeded; true if it did.
fn exited(
    st: std::io::Result<std::process::ExitStatus>,
    listener: &str,
    group: &str,
    what: &str,
) -> bool {
    match st {
        Ok(s) if s.success() => true,
        Ok(s) => {
            warn!(%listener, %group, "{what}: the command failed ({s})");
            false
        }
        Err(e) => {
            warn!(%listener, %group, "{what}: waiting for the command failed: {e}");
            false
        }
    }
}

/// Kill a command still running, with its process group (its session,
/// which it leads), and reap it. True if it was running.
async fn kill(child: Option<Spawned>) -> bool {
    let Some((mut c, tracked)) = child else {
        return false;
    };
    if let Ok(Some(_)) = c.try_wait() {
        return false;
    }
    if let Some(pid) = c.id() {
        crate::sys::kill_process_group(pid);
    }
    let _ = c.kill().await;
    drop(tracked);
    true
}

/// The idle watcher of one Service (stops with it: a reload replaces it,
/// the on-demand state carries over): reads each `on_idle` group's clock
/// every [`idle_tick`] and runs the command when due.
pub(crate) fn spawn_idle(svc: Arc<Service>, stop: CancellationToken) {
    let Some(tick) = svc
        .pool
        .groups()
        .iter()
        .filter_map(|g| g.demand()?.cfg.on_idle.as_ref().map(|i| idle_tick(i.after)))
        .min()
    else {
        return;
    };
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = sleep(tick) => {}
            }
            for (g, group) in svc.pool.groups().iter().enumerate() {
                let Some(d) = group.demand() else { continue };
                let busy = group.channels.iter().any(|c| c.conns() > 0);
                let total = group
                    .channels
                    .iter()
                    .map(|c| c.total.load(std::sync::atomic::Ordering::Relaxed))
                    .fold(0u64, u64::wrapping_add);
                if d.idle_due(busy, total) {
                    tokio::spawn(idle(Arc::clone(&svc), g, Arc::clone(group), Arc::clone(d)));
                }
            }
        }
    });
}

/// Run `on_idle` for group `g` (the state is `Stopping`), bounded by
/// [`STOP_BOUND`]; on exit 0 the group counts as stopped.
async fn idle(svc: Arc<Service>, g: usize, grp: Arc<Group>, d: Arc<Demand>) {
    reaper::watch_adopted();
    let Some(i) = d.cfg.on_idle.clone() else {
        return;
    };
    let (listener, group, env) = (
        svc.cfg.name.clone(),
        grp.name().to_string(),
        env(&svc, &grp),
    );
    info!(%listener, %group,
        "on_idle: no connection for {}; stopping the group: {}",
        humantime::format_duration(i.after),
        i.argv.join(" "));
    let mut child = spawn(&i.argv, &env, &listener, &group, "on_idle");
    let ok = match child {
        None => false,
        Some(_) => match timeout(STOP_BOUND, wait(&mut child)).await {
            Ok(st) => {
                child = None;
                exited(st, &listener, &group, "on_idle")
            }
            Err(_) => {
                warn!(%listener, %group, "on_idle: the command ran past {} s: killed", STOP_BOUND.as_secs());
                false
            }
        },
    };
    kill(child).await;
    // Down before the state leaves `Stopping`: a client that looks in
    // between is held (and starts the group), never sent to a channel
    // that refuses.
    if ok {
        mark_stopped(&svc, g, &grp);
    }
    d.stopped(ok);
}

/// `on_idle` exited 0: the group counts as stopped. Its channels go down
/// at once through the one health path ([`Service::report`], which logs
/// each flip), so the next client finds the group empty, is held and
/// starts it again; the checks bring the channels up (`rise`) once the
/// backend is back. Left to the checks as before (nothing here would
/// bring the channels up again): a listener without a monitor or with
/// `noenable`, a fleet follower (the prober decides), a channel whose
/// checks are off or that the operator disabled or drains.
fn mark_stopped(svc: &Service, g: usize, group: &Group) {
    if svc.cfg.monitor.is_none() || svc.rise_fall.noenable || svc.fleet.following() {
        return;
    }
    let mut down = 0;
    for (index, ch) in group.channels.iter().enumerate() {
        if ch.admin() != Admin::Enabled || !ch.checked() {
            continue;
        }
        let at = Candidate {
            group: g,
            index,
            channel: Arc::clone(ch),
        };
        if svc.report(&at, Outcome::Down(Reason::Stopped)) == Some(false) {
            down += 1;
        }
    }
    info!(listener = %svc.cfg.name, group = %group.name(),
        "on_idle: the group is stopped; {down} channels taken down until their checks pass");
}

#[cfg(test)]
mod tests;
