//! The [`Supervisor`]: owns the running listeners (keyed by their bind
//! address), starts them, applies reloads (see the [`crate::app`] doc),
//! and drains at shutdown. It is the only writer of the services
//! [`Registry`] that metrics and re-resolution read.

use std::path::PathBuf;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::app::plan::{self, Current, Resolved, Source, Step, Summary, rise_fall};
use crate::app::signals::{Event, Signals};
use crate::app::upgrade::{Carried, Parts};
use crate::config::{Config, Global};
use crate::control::server::HandoverFds;
use crate::control::upgrade::{UpgradeHandle, UpgradeRequest, UpgradeRequests};
use crate::control::{ReloadError, ReloadHandle, ReloadRequests, StateFile};
use crate::registry::Registry;
use crate::service::Service;

/// How serving ended.
pub(crate) enum Ended {
    /// A stop signal or `kill`: drained, done.
    Stopped,
    /// `upgrade`: a successor serves the sockets now; drained.
    HandedOver,
}

/// After a hand-over, how long the process waits for the `upgrade`
/// answer to be written before it exits.
const ANSWER_WAIT: Duration = Duration::from_secs(2);
/// How long start-up waits for the control sockets before READY=1.
const CONTROL_BIND_WAIT: Duration = Duration::from_secs(5);

/// One running listener.
struct Running {
    /// The listening socket; each accept loop gets its own dup.
    sock: std::net::TcpListener,
    svc: Arc<Service>,
    /// Stops this listener's accept loop (and its monitor and control
    /// socket); a child of the process-wide shutdown token.
    stop: CancellationToken,
    /// The control server being started or running for this listener.
    control: ControlTask,
    /// Copies of the control server's socket and lock file once it is
    /// bound, for `upgrade`.
    control_fds: Arc<OnceLock<Arc<HandoverFds>>>,
    /// Fires once that server is bound (or failed to bind, with why): at
    /// start, READY=1 waits for it so an `ExecReload` right after finds the
    /// socket; start and reload fail when a socket could not be bound.
    control_bound: Option<ControlBound>,
}

/// Starts (after the previous one for the same listener has stopped and
/// removed its socket) and then holds a listener's control server.
type ControlTask = tokio::task::JoinHandle<Option<crate::control::ControlHandle>>;

/// Ok once a control server is bound; Err with the listener's name and why
/// it could not be.
type ControlBound = tokio::sync::oneshot::Receiver<Result<(), String>>;

struct State {
    cfg: Config,
    listeners: Vec<Running>,
}

/// The set of running listeners and what reload and shutdown need.
pub(crate) struct Supervisor {
    /// The config file and the command line's globals (they win over the
    /// file's), for reload.
    source: Source,
    /// The process-wide settings in force since start.
    started: Global,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    limit: Arc<Semaphore>,
    state: tokio::sync::Mutex<State>,
    /// The live Services, for readers (metrics, re-resolution).
    registry: Registry,
    grace: Mutex<Duration>,
    /// What every control server shares (run directory, state file,
    /// shutdown, the reload handle).
    control: crate::control::Context,
    /// Fleet mode (`fleet:` / `--fleet`), fixed at start.
    fleet: Option<Arc<crate::fleet::Fleet>>,
    /// `--control PATH` names a directory of sockets (decided at start
    /// from the listeners then, see `paths::control_is_dir`), not one
    /// socket: a reload never changes it.
    control_dir: bool,
    /// What `upgrade` hands over besides the listeners and their control
    /// sockets.
    kept: Mutex<Kept>,
    /// Started by `upgrade`: the predecessor's state and control sockets,
    /// used once at start.
    carried: Mutex<Option<Carried>>,
}

/// The metrics socket and the locked pidfile (copies), for a successor.
#[derive(Default)]
struct Kept {
    metrics: Option<std::net::TcpListener>,
    pidfile: Option<(PathBuf, std::os::fd::OwnedFd)>,
    /// The HAProxy socket's path and descriptors, once it serves.
    haproxy: Option<(PathBuf, Arc<crate::control::server::HandoverFds>)>,
}

impl Supervisor {
    pub(crate) fn new(
        cfg: &Config,
        run_dir: PathBuf,
        source: Source,
        reload: ReloadHandle,
        upgrade: UpgradeHandle,
    ) -> Supervisor {
        let shutdown = CancellationToken::new();
        let registry = Registry::new();
        let fleet = cfg.global.fleet.as_ref().and_then(|f| {
            crate::fleet::Fleet::new(f)
                .inspect_err(|e| error!("fleet mode off: {e}"))
                .ok()
        });
        let limit = max_conns(&cfg.global);
        crate::connlog::set_max_conns(limit);
        Supervisor {
            source,
            started: cfg.global.clone(),
            shutdown: shutdown.clone(),
            tracker: TaskTracker::new(),
            limit: Arc::new(Semaphore::new(limit)),
            state: tokio::sync::Mutex::new(State {
                cfg: cfg.clone(),
                listeners: Vec::new(),
            }),
            registry: registry.clone(),
            grace: Mutex::new(cfg.global.grace),
            control: crate::control::Context {
                run_dir,
                state: cfg.global.state_file.as_deref().map(StateFile::load),
                shutdown,
                reload,
                fleet: fleet.clone(),
                listeners: registry.clone(),
                upgrade,
            },
            fleet,
            control_dir: cfg
                .global
                .control
                .as_deref()
                .is_some_and(|c| crate::control::paths::control_is_dir(c, cfg.listeners.len())),
            kept: Mutex::new(Kept::default()),
            carried: Mutex::new(None),
        }
    }

    /// Before [`Supervisor::start`]: what a successor will need (metrics
    /// socket, pidfile) and what a predecessor handed us.
    pub(crate) fn keep_for_upgrade(
        &self,
        metrics: Option<std::net::TcpListener>,
        pidfile: Option<(PathBuf, std::os::fd::OwnedFd)>,
        carried: Option<Carried>,
    ) {
        *self.kept.lock().unwrap_or_else(|p| p.into_inner()) = Kept {
            metrics,
            pidfile,
            haproxy: None,
        };
        *self.carried.lock().unwrap_or_else(|p| p.into_inner()) = carried;
    }

    /// The HAProxy socket, for `upgrade` to hand over.
    pub(crate) fn keep_haproxy(&self, h: &crate::control::haproxy::Handle) {
        self.kept.lock().unwrap_or_else(|p| p.into_inner()).haproxy =
            Some((h.path.clone(), h.handover_fds()));
    }

    /// The live Services, for readers.
    pub(crate) fn registry(&self) -> Registry {
        self.registry.clone()
    }

    /// The state file every front end writes after a change.
    pub(crate) fn state_file(&self) -> Option<Arc<StateFile>> {
        self.control.state.clone()
    }

    /// Cancelled at shutdown (by a signal or the control socket's `kill`).
    pub(crate) fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    fn grace(&self) -> Duration {
        *self.grace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Start the listeners of the config the process started with.
    pub(crate) async fn start(
        self: &Arc<Self>,
        cfg: &Config,
        bound: Vec<std::net::TcpListener>,
    ) -> Result<(), String> {
        let mut st = self.state.lock().await;
        for (l, sock) in cfg.listeners.iter().zip(bound) {
            let svc = Arc::new(Service::new(l.clone(), rise_fall(l)));
            // Operator state from the predecessor (`upgrade`) or the state
            // file, before the first client.
            let carried = self.carried.lock().unwrap_or_else(|p| p.into_inner());
            match (carried.as_ref(), &self.control.state) {
                (Some(c), _) => c.restore(&svc),
                (None, Some(sf)) => sf.restore(&svc),
                (None, None) => {}
            }
            drop(carried);
            let reg = plan::register(&l.name, &sock)?;
            st.listeners.push(self.launch(sock, reg, svc, None));
        }
        self.publish(&st);
        // Every inherited control socket was taken by now.
        *self.carried.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let bound = take_control_bound(&mut st);
        drop(st);
        // A listener nobody can steer is not started: another instance
        // took its socket (exit 71, as when it was found at preflight).
        control_bound(bound).await
    }

    /// Start accepting on `sock` (registered as `listener`) with `svc`.
    fn launch(
        self: &Arc<Self>,
        sock: std::net::TcpListener,
        listener: TcpListener,
        svc: Arc<Service>,
        prev_control: Option<ControlTask>,
    ) -> Running {
        let name = &svc.cfg.name;
        let stop = self.shutdown.child_token();
        tokio::spawn(crate::listener::accept_loop(
            Arc::clone(&svc),
            listener,
            Arc::clone(&self.limit),
            self.tracker.clone(),
            stop.clone(),
        ));
        let control_fds = Arc::new(OnceLock::new());
        let (control, control_bound) =
            self.spawn_control(&svc, &stop, prev_control, Arc::clone(&control_fds));
        // The monitor stops with this Service (`stop`: replaced by a reload,
        // removed, or shutdown).
        crate::monitor::spawn(Arc::clone(&svc), stop.clone());
        crate::service::demand::spawn_idle(Arc::clone(&svc), stop.clone());
        if let Some(f) = &self.fleet {
            f.spawn(Arc::clone(&svc), stop.clone());
            let persist = self
                .control
                .state
                .clone()
                .map(|st| -> crate::fleet::Persist {
                    Arc::new(move |svc: &Arc<Service>| {
                        if let Err(e) = st.save(svc) {
                            error!(listener = %svc.cfg.name, "state file not written: {e}");
                        }
                    })
                });
            crate::fleet::spawn_follow(f, Arc::clone(&svc), persist, stop.clone());
        }
        info!(listener = %name, bind = %svc.cfg.bind, groups = svc.cfg.groups.len(), "listening");
        Running {
            sock,
            svc,
            stop,
            control,
            control_fds,
            control_bound: Some(control_bound),
        }
    }

    /// The listener's control socket: wait until the previous server for
    /// this listener (if a reload replaced it) has removed its socket, then
    /// bind. `kill` stops the whole process; `stop` only this server.
    fn spawn_control(
        &self,
        svc: &Arc<Service>,
        stop: &CancellationToken,
        prev: Option<ControlTask>,
        fds: Arc<OnceLock<Arc<HandoverFds>>>,
    ) -> (ControlTask, ControlBound) {
        let path = crate::control::paths::listener_path(
            self.started.control.as_deref(),
            &self.control.run_dir,
            svc.cfg.bind,
            self.control_dir,
        );
        // A successor serves the socket its predecessor handed over.
        let inherited = self
            .carried
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .as_mut()
            .and_then(|c| c.controls.remove(&path));
        let (svc, ctx, stop) = (Arc::clone(svc), self.control.clone(), stop.clone());
        let (bound, bound_rx) = tokio::sync::oneshot::channel();
        let task = tokio::spawn(async move {
            if let Some(prev) = prev {
                if let Ok(Some(h)) = prev.await {
                    h.stop().await;
                }
            }
            let name = svc.cfg.name.clone();
            let (h, res) =
                match crate::control::server::spawn_from(svc, path, ctx, stop, inherited).await {
                    Ok(h) => {
                        let _ = fds.set(h.handover_fds());
                        (Some(h), Ok(()))
                    }
                    Err(e) => {
                        error!(listener = %name, "control socket not available: {e}");
                        (
                            None,
                            Err(format!("listener {}: {e}", crate::config::quote(&name))),
                        )
                    }
                };
            let _ = bound.send(res);
            h
        });
        (task, bound_rx)
    }

    fn publish(&self, st: &State) {
        let v: Vec<Arc<Service>> = st.listeners.iter().map(|r| Arc::clone(&r.svc)).collect();
        self.registry.publish(v);
        *self.grace.lock().unwrap_or_else(|p| p.into_inner()) = st.cfg.global.grace;
    }

    /// Re-read the config file and apply it (see the module doc). Returns a
    /// one-line summary, or why nothing was changed.
    /// systemd hears RELOADING=1 before and READY=1 after, accepted or not.
    pub(crate) async fn reload(self: &Arc<Self>) -> Result<String, ReloadError> {
        crate::sys::notify::reloading();
        let res = self.try_reload().await.map(|s| s.to_string());
        crate::sys::notify::ready();
        match &res {
            Ok(s) => info!("reload: {s}"),
            Err(ReloadError::Incomplete(e)) => error!("reload incomplete: {e}"),
            Err(e) => error!("reload rejected, the running config stays: {e}"),
        }
        res
    }

    async fn try_reload(self: &Arc<Self>) -> Result<Summary, ReloadError> {
        let (summary, bound) = self.reload_apply().await.map_err(ReloadError::Rejected)?;
        // Not "reloaded" while a listener has no control socket.
        control_bound(bound)
            .await
            .map_err(|e| ReloadError::Incomplete(format!("applied, but {e}")))?;
        Ok(summary)
    }

    /// Check the new config and apply it; Err (nothing changed) if it does
    /// not load, validate or fit. Also returns the new control servers'
    /// outcomes, to wait for without holding the state.
    async fn reload_apply(self: &Arc<Self>) -> Result<(Summary, Vec<ControlBound>), String> {
        let Some((path, cli)) = self.source.clone() else {
            return Err("no config file to reload (started from the command line)".into());
        };
        let mut st = self.state.lock().await;
        let new = plan::load(path, cli).await?;
        let resolved = Resolved::of(&new).await?;
        crate::config::resolved_loops(&new, |h, p| resolved.get(h, p))
            .map_err(|e| e.to_string())?;
        let current: Vec<Current<'_>> = st
            .listeners
            .iter()
            .map(|r| Current {
                cfg: &r.svc.cfg,
                sock: &r.sock,
            })
            .collect();
        if let Some(c) = self.started.control.as_deref() {
            if !self.control_dir && new.listeners.len() > 1 {
                return Err(format!(
                    "--control {} names the socket of a single listener; the new config has {} listeners (restart with --control DIR for several)",
                    c.display(),
                    new.listeners.len()
                ));
            }
        }
        let steps = plan::steps(&current, &new.listeners)?;
        let resolved = Arc::new(resolved);
        let prepared = prepare(&st, &new, &steps, &resolved).await?;
        let summary = self.apply(&mut st, &new, steps, prepared, &resolved);
        let restart_needed = plan::globals_needing_restart(&self.started, &new.global);
        self.refresh_fleet_access(&st.cfg, &new);
        if !restart_needed.is_empty() {
            warn!(
                "reload: changed {} take effect after a restart",
                restart_needed.join(", ")
            );
        }
        st.cfg = new;
        self.publish(&st);
        Ok((summary, take_control_bound(&mut st)))
    }

    /// A reload re-read the fleet's TLS files and password file: what
    /// changed is used from the next connection to etcd and login on.
    fn refresh_fleet_access(&self, old: &Config, new: &Config) {
        let (Some(f), Some(cfg)) = (&self.fleet, &new.global.fleet) else {
            return;
        };
        let was = old.global.fleet.as_ref();
        if was.is_none_or(|w| (&w.loaded, &w.user) != (&cfg.loaded, &cfg.user)) {
            f.client.set_access(crate::fleet::access(cfg));
            info!("reload: fleet TLS files and login re-read");
        }
    }

    /// Phase 2, infallible: run the plan's steps (with the Services
    /// [`prepare`] built) and stop the listeners the new config no longer
    /// has.
    fn apply(
        self: &Arc<Self>,
        st: &mut State,
        new: &Config,
        steps: Vec<Step>,
        prepared: Vec<Option<Prepared>>,
        resolved: &Resolved,
    ) -> Summary {
        let resolve = |h: &crate::config::Host, p: u16| resolved.get(h, p);
        let n = new.listeners.len();
        let mut sum = Summary::default();
        let mut old: Vec<Option<Running>> = std::mem::take(&mut st.listeners)
            .into_iter()
            .map(Some)
            .collect();
        let mut next = Vec::with_capacity(n);
        let mut prepared = prepared.into_iter();
        for (l, step) in new.listeners.iter().zip(steps) {
            let ready = prepared.next().flatten();
            match step {
                Step::Keep(i) => {
                    if let Some(r) = old.get_mut(i).and_then(Option::take) {
                        sum.same += 1;
                        next.push(r);
                    }
                }
                Step::Change(i, reg) => {
                    if let Some(r) = old.get_mut(i).and_then(Option::take) {
                        let svc = match ready {
                            // Built from the channels the listener has now.
                            Some(p)
                                if p.from
                                    .as_ref()
                                    .is_some_and(|g| Arc::ptr_eq(g, &r.svc.pool.groups())) =>
                            {
                                p.svc
                            }
                            // A `create` came in between: build again, here.
                            _ => {
                                let svc = r.svc.rebuild(l.clone(), rise_fall(l), resolve);
                                plan::log_channel_changes(&r.svc, &svc);
                                svc
                            }
                        };
                        let svc = Arc::new(svc);
                        // Spinning clients look again, at the new pool.
                        svc.pool.eligible.notify_waiters();
                        r.stop.cancel();
                        next.push(self.launch(r.sock, reg, svc, Some(r.control)));
                        sum.changed += 1;
                    }
                }
                Step::Add(sock, reg) => {
                    let svc = match ready {
                        Some(p) => p.svc,
                        None => Service::new_with(l.clone(), rise_fall(l), resolve),
                    };
                    let svc = Arc::new(svc);
                    next.push(self.launch(sock, reg, svc, None));
                    sum.added += 1;
                }
            }
        }
        for r in old.into_iter().flatten() {
            info!(listener = %r.svc.cfg.name, bind = %r.svc.cfg.bind, "stopped accepting (removed); live connections continue");
            r.stop.cancel();
            sum.removed += 1;
        }
        st.listeners = next;
        sum
    }

    /// Act on signals and reload requests until one says stop.
    pub(crate) async fn serve_events(
        self: &Arc<Self>,
        signals: &mut Signals,
        requests: &mut ReloadRequests,
        upgrades: &mut UpgradeRequests,
    ) -> Ended {
        loop {
            match signals.next(&self.shutdown, requests, upgrades).await {
                Event::Stop(why) => {
                    info!("{why}");
                    return Ended::Stopped;
                }
                Event::Reopen => {
                    info!("SIGUSR1: reopening the connection log files");
                    crate::connlog::reopen();
                }
                Event::Upgrade(UpgradeRequest { path, reply }) => match self.upgrade(path).await {
                    Ok(pid) => {
                        info!(
                            successor = pid,
                            "upgrade: pid {pid} serves now; finishing this process's connections"
                        );
                        let _ = reply.send(Ok(pid));
                        return Ended::HandedOver;
                    }
                    Err(e) => {
                        warn!("upgrade refused, this process keeps serving: {e}");
                        let _ = reply.send(Err(e));
                    }
                },
                Event::Hangup if self.source.is_none() => {
                    info!("SIGHUP ignored: started without --config, nothing to reload");
                }
                Event::Hangup => {
                    info!("SIGHUP: reloading");
                    let _ = self.reload().await;
                }
                Event::Reload(reply) => {
                    let res = self.reload().await;
                    let _ = reply.send(res);
                }
            }
        }
    }

    /// `upgrade`: hand everything to a new process (see
    /// [`crate::app::upgrade`]). Ok: it serves, this process has stopped
    /// accepting (its control servers are gone, their files left to the
    /// successor) and only has to drain. Err: nothing changed here.
    async fn upgrade(self: &Arc<Self>, path: Option<PathBuf>) -> Result<u32, String> {
        let parts = self.handover_parts().await?;
        let pid = tokio::task::spawn_blocking(move || crate::app::upgrade::hand_over(parts, path))
            .await
            .map_err(|e| format!("upgrade task failed: {e}"))??;
        self.control.upgrade.set_handed_over();
        crate::sys::notify::send(&format!("MAINPID={pid}"));
        if let Err(e) = crate::sys::reaper::stop_reaping() {
            warn!("upgrade: cannot stop being a child subreaper: {e}");
        }
        self.shutdown.cancel();
        // The control servers stop before the operator hears the answer, so
        // the next command reaches the successor.
        let running = std::mem::take(&mut self.state.lock().await.listeners);
        for r in running {
            if let Ok(Some(h)) = r.control.await {
                h.stop().await;
            }
        }
        Ok(pid)
    }

    /// Copies of everything the successor takes over, and the live state.
    async fn handover_parts(&self) -> Result<Parts, String> {
        let st = self.state.lock().await;
        let dup = |what: &str, r: std::io::Result<std::os::fd::OwnedFd>| {
            r.map_err(|e| format!("cannot copy {what}: {e}"))
        };
        let mut parts = Parts {
            listeners: Vec::new(),
            controls: Vec::new(),
            metrics: None,
            pidfile: None,
            haproxy: None,
            run_dir: self.control.run_dir.clone(),
            services: st.listeners.iter().map(|r| Arc::clone(&r.svc)).collect(),
        };
        for r in &st.listeners {
            let addr = r.sock.local_addr().map_err(|e| e.to_string())?;
            parts.listeners.push((
                addr,
                dup("a listening socket", r.sock.try_clone().map(Into::into))?,
            ));
            let Some(fds) = r.control_fds.get() else {
                return Err(format!(
                    "listener {} has no control socket to hand over",
                    crate::config::quote(&r.svc.cfg.name)
                ));
            };
            let path = crate::control::paths::listener_path(
                self.started.control.as_deref(),
                &self.control.run_dir,
                r.svc.cfg.bind,
                self.control_dir,
            );
            parts.controls.push((
                path,
                dup("a control socket", fds.sock.try_clone())?,
                dup("a lock file", fds.lock.try_clone())?,
            ));
        }
        let kept = self.kept.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(m) = &kept.metrics {
            let addr = m.local_addr().map_err(|e| e.to_string())?;
            parts.metrics = Some((
                addr,
                dup("the metrics socket", m.try_clone().map(Into::into))?,
            ));
        }
        if let Some((p, f)) = &kept.pidfile {
            parts.pidfile = Some((p.clone(), dup("the pidfile", f.try_clone())?));
        }
        match (&kept.haproxy, &self.started.haproxy_socket) {
            (Some((p, fds)), _) => {
                parts.haproxy = Some((
                    p.clone(),
                    dup("the haproxy socket", fds.sock.try_clone())?,
                    dup("its lock file", fds.lock.try_clone())?,
                ));
            }
            (None, Some(_)) => return Err("the haproxy socket does not serve yet".into()),
            (None, None) => {}
        }
        Ok(parts)
    }

    /// Stop accepting, then wait up to the grace period for live
    /// connections.
    pub(crate) async fn drain(&self) {
        let tracker = &self.tracker;
        info!("shutting down: no new connections; {} live", tracker.len());
        self.shutdown.cancel();
        // Close the listening sockets now: new clients are refused, not queued.
        self.state.lock().await.listeners.clear();
        tracker.close();
        let grace = self.grace();
        if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
            warn!(
                "grace period {:?} over: cutting {} connections",
                grace,
                tracker.len()
            );
        } else {
            info!("all connections finished");
        }
        if let Some(f) = &self.fleet {
            f.stopped().await;
        }
        // The lines of the last connections (a blocked sink is left behind).
        let _ = tokio::task::spawn_blocking(|| crate::connlog::flush(CONNLOG_FLUSH)).await;
        if self.control.upgrade.handed_over() {
            // The operator's answer is written by its session; do not exit
            // under it (bounded: a client that went away never reads it).
            let _ = tokio::time::timeout(ANSWER_WAIT, self.control.upgrade.answered()).await;
        }
    }
}

/// A Service built ahead for a changed or added listener, and for a
/// changed one the group list of the running Service it was built from.
struct Prepared {
    svc: Service,
    from: Option<Arc<Vec<Arc<crate::pool::Group>>>>,
}

/// Build the Services of the changed and added listeners off the runtime
/// thread (thousands of channels take a while), so clients keep being
/// served while a reload is prepared. One entry per new listener (None
/// for a kept one).
async fn prepare(
    st: &State,
    new: &Config,
    steps: &[Step],
    resolved: &Arc<Resolved>,
) -> Result<Vec<Option<Prepared>>, String> {
    let work: Vec<(crate::config::ListenerConfig, Option<Option<Arc<Service>>>)> = new
        .listeners
        .iter()
        .zip(steps)
        .map(|(l, step)| {
            let old = match step {
                Step::Keep(_) => None,
                Step::Change(i, _) => Some(st.listeners.get(*i).map(|r| Arc::clone(&r.svc))),
                Step::Add(..) => Some(None),
            };
            (l.clone(), old)
        })
        .collect();
    let resolved = Arc::clone(resolved);
    tokio::task::spawn_blocking(move || {
        let resolve = |h: &crate::config::Host, p: u16| resolved.get(h, p);
        work.into_iter()
            .map(|(l, old)| match old? {
                Some(old) => {
                    let from = old.pool.groups();
                    let svc = old.rebuild(l.clone(), rise_fall(&l), resolve);
                    plan::log_channel_changes(&old, &svc);
                    Some(Prepared {
                        svc,
                        from: Some(from),
                    })
                }
                None => Some(Prepared {
                    svc: Service::new_with(l.clone(), rise_fall(&l), resolve),
                    from: None,
                }),
            })
            .collect()
    })
    .await
    .map_err(|e| format!("reload preparation failed: {e}"))
}

/// The control servers started since the last look.
fn take_control_bound(st: &mut State) -> Vec<ControlBound> {
    st.listeners
        .iter_mut()
        .filter_map(|r| r.control_bound.take())
        .collect()
}

/// Wait (bounded) for control servers to bind: the first failure, if any.
async fn control_bound(bound: Vec<ControlBound>) -> Result<(), String> {
    for b in bound {
        match tokio::time::timeout(CONTROL_BIND_WAIT, b).await {
            Ok(Ok(Err(e))) => return Err(format!("control socket not available: {e}")),
            Err(_) => warn!("a control socket is not bound after {CONTROL_BIND_WAIT:?}"),
            Ok(_) => {}
        }
    }
    Ok(())
}

/// fds kept back from `--max-conns`'s default for listeners, control,
/// probes and logs.
const FD_RESERVE: u64 = 64;

/// How long the exit waits for the connection log's writers.
const CONNLOG_FLUSH: Duration = Duration::from_secs(1);

/// Default `--max-conns`: two fds per proxied connection, minus a reserve.
pub(crate) fn max_conns(g: &Global) -> usize {
    g.max_conns.unwrap_or_else(|| {
        let n = crate::sys::nofile_limit().saturating_sub(FD_RESERVE) / 2;
        n.clamp(16, Semaphore::MAX_PERMITS as u64 / 2) as usize
    })
}
