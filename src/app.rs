//! Running the balancer: bind everything first (errors reach the terminal
//! with an exit code), then daemonize, drop privileges, start the runtime
//! and serve until SIGINT/SIGTERM, then drain for the grace period.
//!
//! The [`Supervisor`] owns the running listeners, keyed by their bind
//! address, so a reload (SIGHUP, or [`Supervisor::reload`] from the control
//! socket) can add, remove and change them:
//! - a listener whose bind is new is bound and started;
//! - a listener whose bind is gone stops accepting; its connections finish;
//! - a listener on the same bind with changed settings gets a new
//!   [`Service`] that keeps the channels with the same host:port in the
//!   same group position (counters, health, operator state) and the
//!   listener counters; its socket stays open, so no client is refused;
//! - established connections are never cut by a reload.
//!
//! A reload is all or nothing: a file that does not parse or validate, or a
//! new listener that cannot bind, rejects the whole reload (logged, and
//! returned to the control socket) and the running config keeps serving.
//! Process-wide settings other than `grace` need a restart.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{error, info, warn};

use crate::cli::EXIT_USAGE;
use crate::config::{Config, Global, Host, ListenerConfig, Overlay};
use crate::health::RiseFallParams;
use crate::logging::{self, Sink};
use crate::service::Service;

/// Exit code for runtime OS failures such as a port in use (EX_OSERR).
pub const EXIT_OSERR: i32 = 71;

/// fds kept back from `--max-conns`'s default for listeners, control,
/// probes and logs.
const FD_RESERVE: u64 = 64;

/// A fatal error with its exit code and one-line message.
#[derive(Debug)]
pub struct Fatal {
    pub code: i32,
    pub msg: String,
}

fn oserr(msg: String) -> Fatal {
    Fatal {
        code: EXIT_OSERR,
        msg,
    }
}

/// Run from the command line (one listener; SIGHUP has nothing to reload).
pub fn run(cfg: Config) -> Result<(), Fatal> {
    start(cfg, None)
}

/// `balance --config FILE [--check]`.
pub fn run_file(path: &Path, check: bool, global: &Overlay) -> Result<(), Fatal> {
    let cfg = crate::config::load_file(path, global).map_err(|e| Fatal {
        code: EXIT_USAGE,
        msg: e.to_string(),
    })?;
    crate::config::resolved_loops(&cfg, crate::service::resolve).map_err(|msg| Fatal {
        code: EXIT_USAGE,
        msg: format!("{}: {msg}", path.display()),
    })?;
    if check {
        for w in crate::config::unresolved(&cfg, crate::service::resolve) {
            eprintln!("balance: warning: {w}");
        }
        if let Some(user) = &cfg.global.user {
            if let Err(e) = crate::sys::lookup_user(user) {
                eprintln!("balance: warning: user \"{user}\": {e}");
            }
        }
        println!(
            "{}: ok ({} listener{})",
            path.display(),
            cfg.listeners.len(),
            if cfg.listeners.len() == 1 { "" } else { "s" }
        );
        return Ok(());
    }
    // Daemonizing changes to /: reload needs an absolute path.
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut cli = global.clone();
    cli.absolutize();
    start(cfg, Some((abs, cli)))
}

/// Daemonizing changes to /: make the paths given relative absolute.
fn absolutize(g: &mut Global) {
    for p in [
        &mut g.pidfile,
        &mut g.log_file,
        &mut g.state_file,
        &mut g.control,
    ]
    .into_iter()
    .flatten()
    {
        if let Ok(abs) = std::path::absolute(&*p) {
            *p = abs;
        }
    }
}

/// `source`: the config file and the command line's own globals (which
/// win over the file's on every reload).
fn start(mut cfg: Config, source: Option<(PathBuf, Overlay)>) -> Result<(), Fatal> {
    crate::sys::ignore_sighup();
    crate::sys::raise_nofile_limit();
    absolutize(&mut cfg.global);
    let mut bound = Vec::with_capacity(cfg.listeners.len());
    for l in &cfg.listeners {
        let sock = crate::listener::bind(l.bind, l.dual_stack)
            .map_err(|e| oserr(format!("cannot listen on {}: {e}", l.bind)))?;
        bound.push(sock);
    }
    crate::control::preflight(&cfg).map_err(oserr)?;
    let g = &cfg.global;
    let metrics = match g.metrics {
        None => None,
        Some(addr) => Some(
            crate::listener::bind(addr, false)
                .map_err(|e| oserr(format!("cannot listen on --metrics {addr}: {e}")))?,
        ),
    };
    // Look the user up while errors still reach the terminal.
    let drop_to = match &g.user {
        None => None,
        Some(user) => Some((
            user,
            crate::sys::lookup_user(user)
                .map_err(|e| oserr(format!("cannot use --user \"{user}\": {e}")))?,
        )),
    };
    if !g.foreground {
        crate::sys::daemonize().map_err(|e| oserr(format!("cannot daemonize: {e}")))?;
    }
    let sink = match (&g.foreground, &g.log_file) {
        (true, _) => Sink::Stderr,
        (false, Some(p)) => Sink::File(p),
        (false, None) => Sink::Syslog,
    };
    logging::init(g, sink).map_err(|e| oserr(format!("cannot open log file: {e}")))?;
    if let Some(p) = &g.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id()))
            .map_err(|e| oserr(format!("cannot write pidfile {}: {e}", p.display())))?;
    }
    // Everything privileged is open; no thread exists yet.
    if let Some((user, (uid, gid))) = drop_to {
        // Root's `balance -c` looks in /run/balance and one level below: give
        // the dropped process a run directory there that it owns.
        if crate::sys::euid() == 0
            && g.control.is_none()
            && std::env::var_os("BALANCE_RUNDIR").is_none()
        {
            let dir = crate::control::paths::user_run_dir(user);
            prepare_user_run_dir(&dir, uid, gid)
                .map_err(|e| oserr(format!("cannot prepare {} for --user: {e}", dir.display())))?;
            crate::sys::set_env_before_threads("BALANCE_RUNDIR", &dir);
        }
        crate::sys::drop_privileges(uid, gid)
            .map_err(|e| oserr(format!("cannot drop privileges to \"{user}\": {e}")))?;
        info!(user = %user, uid, gid, "dropped privileges");
    }
    crate::proxy::splice::configure(g.no_splice);
    let rt = if g.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(g.threads)
            .enable_all()
            .build()
    }
    .map_err(|e| oserr(format!("cannot start runtime: {e}")))?;
    let pidfile = g.pidfile.clone();
    let res = rt.block_on(serve(cfg, source, bound, metrics));
    // Anything still running after the grace period is cut here.
    rt.shutdown_timeout(Duration::from_millis(100));
    if let Some(p) = pidfile {
        let _ = std::fs::remove_file(p);
    }
    res
}

/// `/run/balance/USER`, mode 0700, owned by the user we drop to; created by
/// root before the drop (its parent stays root's). A symlink is refused.
fn prepare_user_run_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        crate::control::paths::prepare_run_dir(parent)?;
        // Let the dropped user reach its own subdirectory: search only, no
        // listing (0711); the sockets in it stay 0600.
        let mode = std::fs::metadata(parent)?.permissions().mode();
        std::fs::set_permissions(parent, std::fs::Permissions::from_mode(mode | 0o011))?;
    }
    match std::fs::symlink_metadata(dir) {
        Ok(md) if md.file_type().is_symlink() || !md.is_dir() => {
            return Err(std::io::Error::other("exists and is not a plain directory"));
        }
        Ok(_) => {}
        Err(_) => std::fs::DirBuilder::new().mode(0o700).create(dir)?,
    }
    std::os::unix::fs::chown(dir, Some(uid), Some(gid))?;
    std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
}

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
}

/// Starts (after the previous one for the same listener has stopped and
/// removed its socket) and then holds a listener's control server.
type ControlTask = tokio::task::JoinHandle<Option<crate::control::ControlHandle>>;

struct State {
    cfg: Config,
    listeners: Vec<Running>,
}

/// The set of running listeners and what reload and shutdown need.
pub struct Supervisor {
    /// The config file and the command line's globals (they win over the
    /// file's), for reload.
    source: Option<(PathBuf, Overlay)>,
    /// The process-wide settings in force since start.
    started: Global,
    shutdown: CancellationToken,
    tracker: TaskTracker,
    limit: Arc<Semaphore>,
    state: tokio::sync::Mutex<State>,
    /// Snapshot for readers (metrics, re-resolution): the live Services.
    current: ArcSwap<Vec<Arc<Service>>>,
    grace: Mutex<Duration>,
    /// `--state-file`, loaded once at start; restored per listener.
    state_file: Option<Arc<crate::control::StateFile>>,
}

impl Supervisor {
    /// The Services of the running listeners, in config order.
    pub fn services(&self) -> Arc<Vec<Arc<Service>>> {
        self.current.load_full()
    }

    /// Cancelled at shutdown.
    pub fn shutdown_token(&self) -> CancellationToken {
        self.shutdown.clone()
    }

    pub fn resolve_interval(&self) -> Duration {
        self.started.resolve_interval
    }

    fn grace(&self) -> Duration {
        *self.grace.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A tokio listener on a dup of `sock` (the fallible part of starting).
    fn register(name: &str, sock: &std::net::TcpListener) -> Result<TcpListener, String> {
        let dup = sock
            .try_clone()
            .map_err(|e| format!("listener \"{name}\": cannot dup socket: {e}"))?;
        TcpListener::from_std(dup)
            .map_err(|e| format!("listener \"{name}\": cannot register socket: {e}"))
    }

    /// Start accepting on `sock` (registered as `listener`) with `svc`.
    fn launch(
        self: &Arc<Self>,
        sock: std::net::TcpListener,
        listener: TcpListener,
        svc: Arc<Service>,
        prev_control: Option<ControlTask>,
        listeners: usize,
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
        let control = self.spawn_control(&svc, &stop, prev_control, listeners);
        // The monitor stops with this Service (`stop`: replaced by a reload,
        // removed, or shutdown).
        crate::monitor::spawn(Arc::clone(&svc), stop.clone());
        info!(listener = %name, bind = %svc.cfg.bind, groups = svc.cfg.groups.len(), "listening");
        Running {
            sock,
            svc,
            stop,
            control,
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
        listeners: usize,
    ) -> ControlTask {
        let path = crate::control::paths::listener_path(
            self.started.control.as_deref(),
            svc.cfg.bind,
            listeners,
        );
        let (svc, kill, stop) = (Arc::clone(svc), self.shutdown.clone(), stop.clone());
        let state = self.state_file.clone();
        tokio::spawn(async move {
            if let Some(prev) = prev {
                if let Ok(Some(h)) = prev.await {
                    h.stop().await;
                }
            }
            let name = svc.cfg.name.clone();
            match crate::control::spawn(svc, path, kill, stop, state).await {
                Ok(h) => Some(h),
                Err(e) => {
                    error!(listener = %name, "control socket not available: {e}");
                    None
                }
            }
        })
    }

    fn publish(&self, st: &State) {
        let v: Vec<Arc<Service>> = st.listeners.iter().map(|r| Arc::clone(&r.svc)).collect();
        self.current.store(Arc::new(v));
        *self.grace.lock().unwrap_or_else(|p| p.into_inner()) = st.cfg.global.grace;
    }

    /// Re-read the config file and apply it (see the module doc). Returns a
    /// one-line summary, or why nothing was changed.
    pub async fn reload(self: &Arc<Self>) -> Result<String, String> {
        let res = self.reload_inner().await;
        match &res {
            Ok(s) => info!("reload: {s}"),
            Err(e) => error!("reload rejected, the running config stays: {e}"),
        }
        res
    }

    async fn reload_inner(self: &Arc<Self>) -> Result<String, String> {
        let Some((path, cli)) = self.source.clone() else {
            return Err("no config file to reload (started from the command line)".into());
        };
        let mut st = self.state.lock().await;
        let new = tokio::task::spawn_blocking(move || {
            crate::config::load_file(&path, &cli).map_err(|e| e.to_string())
        })
        .await
        .map_err(|e| format!("config loader failed: {e}"))??;
        let mut new = new;
        absolutize(&mut new.global);
        // Resolve the new config's channels off the runtime thread (kept
        // channels keep their current addresses; only new ones use these).
        let mut wanted: Vec<(Host, u16)> = Vec::new();
        for c in new
            .listeners
            .iter()
            .flat_map(|l| l.groups.iter().flat_map(|g| g.channels.iter()))
        {
            let k = (c.host.clone(), c.port);
            if !wanted.contains(&k) {
                wanted.push(k);
            }
        }
        let resolved = tokio::task::spawn_blocking(move || {
            wanted
                .into_iter()
                .map(|(h, p)| {
                    let a = crate::service::resolve(&h, p);
                    ((h, p), a)
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| format!("resolver failed: {e}"))?;
        let resolve = |h: &Host, p: u16| -> Vec<SocketAddr> {
            resolved
                .iter()
                .find(|((rh, rp), _)| rh == h && *rp == p)
                .map(|(_, a)| a.clone())
                .unwrap_or_default()
        };

        crate::config::resolved_loops(&new, resolve).map_err(|e| e.to_string())?;

        // Phase 1, fallible, nothing running is touched: bind every new
        // listener and register a socket for every listener that changes.
        let same_bind = |a: &ListenerConfig, b: &ListenerConfig| {
            a.bind == b.bind && a.dual_stack == b.dual_stack
        };
        enum Plan {
            Keep(usize),
            Change(usize, TcpListener),
            Add(std::net::TcpListener, TcpListener),
        }
        let mut plan = Vec::with_capacity(new.listeners.len());
        for l in &new.listeners {
            let cur = st.listeners.iter().position(|r| same_bind(&r.svc.cfg, l));
            plan.push(match cur {
                Some(i) if st.listeners[i].svc.cfg == *l => Plan::Keep(i),
                Some(i) => Plan::Change(i, Self::register(&l.name, &st.listeners[i].sock)?),
                None => {
                    let sock = crate::listener::bind(l.bind, l.dual_stack).map_err(|e| {
                        format!("listener \"{}\": cannot listen on {}: {e}", l.name, l.bind)
                    })?;
                    let reg = Self::register(&l.name, &sock)?;
                    Plan::Add(sock, reg)
                }
            });
        }

        // Phase 2, infallible: apply.
        let (mut added, mut changed, mut same) = (0, 0, 0);
        let mut old: Vec<Option<Running>> = std::mem::take(&mut st.listeners)
            .into_iter()
            .map(Some)
            .collect();
        let mut next = Vec::with_capacity(new.listeners.len());
        for (l, p) in new.listeners.iter().zip(plan) {
            match p {
                Plan::Keep(i) => {
                    if let Some(r) = old[i].take() {
                        same += 1;
                        next.push(r);
                    }
                }
                Plan::Change(i, reg) => {
                    if let Some(r) = old[i].take() {
                        let svc = Arc::new(r.svc.rebuild(l.clone(), rise_fall(l), resolve));
                        log_channel_changes(&r.svc, &svc);
                        r.stop.cancel();
                        let n = new.listeners.len();
                        next.push(self.launch(r.sock, reg, svc, Some(r.control), n));
                        changed += 1;
                    }
                }
                Plan::Add(sock, reg) => {
                    let svc = Arc::new(Service::new_with(l.clone(), rise_fall(l), resolve));
                    next.push(self.launch(sock, reg, svc, None, new.listeners.len()));
                    added += 1;
                }
            }
        }
        let mut removed = 0;
        for r in old.into_iter().flatten() {
            info!(listener = %r.svc.cfg.name, bind = %r.svc.cfg.bind, "stopped accepting (removed); live connections continue");
            r.stop.cancel();
            removed += 1;
        }
        let restart_needed = globals_needing_restart(&self.started, &new.global);
        if !restart_needed.is_empty() {
            warn!(
                "reload: changed {} take effect after a restart",
                restart_needed.join(", ")
            );
        }
        st.listeners = next;
        st.cfg = new;
        self.publish(&st);
        Ok(format!(
            "{added} added, {removed} removed, {changed} changed, {same} unchanged"
        ))
    }
}

/// The running process's supervisor, for the control socket's `reload`.
static SUPERVISOR: std::sync::OnceLock<std::sync::Weak<Supervisor>> = std::sync::OnceLock::new();

/// Reload the config file of the running process (control `reload`).
pub async fn reload() -> Result<String, String> {
    match SUPERVISOR.get().and_then(std::sync::Weak::upgrade) {
        Some(sup) => sup.reload().await,
        None => Err("no supervisor running".into()),
    }
}

/// Log channels that a reload added or dropped.
fn log_channel_changes(old: &Service, new: &Service) {
    let list = |s: &Service| -> Vec<(usize, String)> {
        s.pool
            .groups()
            .iter()
            .enumerate()
            .flat_map(|(g, gr)| gr.channels.iter().map(move |c| (g, c.target().to_string())))
            .collect()
    };
    let (a, b) = (list(old), list(new));
    for (g, c) in b.iter().filter(|x| !a.contains(x)) {
        info!(listener = %new.cfg.name, group = g, channel = %c, "channel added");
    }
    for (g, c) in a.iter().filter(|x| !b.contains(x)) {
        info!(listener = %new.cfg.name, group = g, channel = %c, "channel removed; its connections continue");
    }
}

fn globals_needing_restart(a: &Global, b: &Global) -> Vec<&'static str> {
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
    v
}

/// Passive detection's rise/fall: the monitor's settings, or defaults.
fn rise_fall(l: &ListenerConfig) -> RiseFallParams {
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

async fn serve(
    cfg: Config,
    source: Option<(PathBuf, Overlay)>,
    bound: Vec<std::net::TcpListener>,
    metrics: Option<std::net::TcpListener>,
) -> Result<(), Fatal> {
    let signals = install_signals();
    let shutdown = CancellationToken::new();
    let sup = Arc::new(Supervisor {
        source,
        started: cfg.global.clone(),
        shutdown: shutdown.clone(),
        tracker: TaskTracker::new(),
        limit: Arc::new(Semaphore::new(max_conns(&cfg.global))),
        state: tokio::sync::Mutex::new(State {
            cfg: cfg.clone(),
            listeners: Vec::new(),
        }),
        current: ArcSwap::from_pointee(Vec::new()),
        grace: Mutex::new(cfg.global.grace),
        state_file: cfg
            .global
            .state_file
            .as_deref()
            .map(crate::control::StateFile::load),
    });
    let _ = SUPERVISOR.set(Arc::downgrade(&sup));
    {
        let mut st = sup.state.lock().await;
        for (l, sock) in cfg.listeners.iter().zip(bound) {
            let svc = Arc::new(Service::new(l.clone(), rise_fall(l)));
            // Operator state from the state file, before the first client.
            if let Some(st) = &sup.state_file {
                st.restore(&svc);
            }
            let reg = Supervisor::register(&l.name, &sock).map_err(oserr)?;
            st.listeners
                .push(sup.launch(sock, reg, svc, None, cfg.listeners.len()));
        }
        sup.publish(&st);
    }
    if let Some(m) = metrics {
        if let Ok(addr) = m.local_addr() {
            info!(bind = %addr, "metrics: serving GET /metrics");
        }
        let m = TcpListener::from_std(m)
            .map_err(|e| oserr(format!("cannot register metrics socket: {e}")))?;
        tokio::spawn(crate::metrics::serve(m, Arc::clone(&sup), shutdown.clone()));
    }
    tokio::spawn(crate::dns::reresolve_loop(Arc::clone(&sup)));

    wait_for_signals(&sup, signals).await;
    let tracker = &sup.tracker;
    info!("shutting down: no new connections; {} live", tracker.len());
    shutdown.cancel();
    // Close the listening sockets now: new clients are refused, not queued.
    sup.state.lock().await.listeners.clear();
    tracker.close();
    let grace = sup.grace();
    if tokio::time::timeout(grace, tracker.wait()).await.is_err() {
        warn!(
            "grace period {:?} over: cutting {} connections",
            grace,
            tracker.len()
        );
    } else {
        info!("all connections finished");
    }
    Ok(())
}

/// Default `--max-conns`: two fds per proxied connection, minus a reserve.
fn max_conns(g: &Global) -> usize {
    g.max_conns.unwrap_or_else(|| {
        let n = crate::sys::nofile_limit().saturating_sub(FD_RESERVE) / 2;
        n.clamp(16, Semaphore::MAX_PERMITS as u64 / 2) as usize
    })
}

/// Serve SIGHUP (reload) until SIGTERM or SIGINT.
/// SIGTERM, SIGINT and SIGHUP streams; installed before any listener
/// accepts, so a signal sent as soon as the port answers is not lost (or,
/// for SIGHUP, fatal).
struct Signals {
    term: tokio::signal::unix::Signal,
    int: tokio::signal::unix::Signal,
    hup: tokio::signal::unix::Signal,
}

fn install_signals() -> Option<Signals> {
    use tokio::signal::unix::{SignalKind, signal};
    Some(Signals {
        term: signal(SignalKind::terminate()).ok()?,
        int: signal(SignalKind::interrupt()).ok()?,
        hup: signal(SignalKind::hangup()).ok()?,
    })
}

/// Serve SIGHUP (reload) until SIGTERM or SIGINT.
async fn wait_for_signals(sup: &Arc<Supervisor>, signals: Option<Signals>) {
    let Some(Signals {
        mut term,
        mut int,
        mut hup,
    }) = signals
    else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = sup.shutdown.cancelled() => { info!("kill from the control socket"); return; }
            _ = term.recv() => { info!("SIGTERM"); return; }
            _ = int.recv() => { info!("SIGINT"); return; }
            _ = hup.recv() => {
                if sup.source.is_none() {
                    info!("SIGHUP ignored: started without --config, nothing to reload");
                    continue;
                }
                info!("SIGHUP: reloading");
                let _ = sup.reload().await;
            }
        }
    }
}
