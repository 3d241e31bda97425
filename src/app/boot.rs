//! Everything before the runtime, in order: bind the listeners, check the
//! control sockets, bind metrics, look the user up, daemonize, open the
//! log, write the pidfile, drop privileges, build the runtime. Then serve
//! and clean up. Daemonized, a failure after the fork still reaches the
//! terminal: the parent waits on the readiness pipe ([`daemon`]) and exits
//! with the daemon's message and code, or 0 once it serves.

use crate::config::quote;
use std::path::{Path, PathBuf};
use std::time::Duration;

use std::sync::Arc;

use tokio::net::TcpListener;
use tracing::info;

use crate::app::pidfile::PidFile;
use crate::app::plan::{Source, absolutize};
use crate::app::signals::Signals;
use crate::app::supervisor::{Ended, Supervisor};
use crate::config::{Config, Global};
use crate::control::upgrade::UpgradeHandle;
use crate::control::{ReloadHandle, paths};
use crate::exit::Exit;
use crate::logging::{self, Sink};
use crate::sys::daemon::{self, Forked, Ready};
use crate::sys::notify;

/// Why the process could not start or run: one line, and its exit code.
#[derive(Debug, thiserror::Error)]
pub enum Fatal {
    /// The config file does not load or validate (exit 64).
    #[error("{0}")]
    Config(String),
    /// The OS refused something: a port in use, a bad run directory, an
    /// unknown user... (exit 71).
    #[error("{0}")]
    Os(String),
}

impl Fatal {
    pub fn exit(&self) -> Exit {
        match self {
            Fatal::Config(_) => Exit::Usage,
            Fatal::Os(_) => Exit::OsErr,
        }
    }
}

impl From<crate::app::upgrade::Refusal> for Fatal {
    fn from(r: crate::app::upgrade::Refusal) -> Fatal {
        match r {
            crate::app::upgrade::Refusal::Config(m) => Fatal::Config(m),
            crate::app::upgrade::Refusal::Os(m) => Fatal::Os(m),
        }
    }
}

fn os(msg: String) -> Fatal {
    Fatal::Os(msg)
}

/// Boot, serve until a stop signal, drain, clean up. Daemonized, the
/// terminal's process returns what the daemon reported: Ok once it
/// serves, or the daemon's own error.
pub(crate) fn start(mut cfg: Config, source: Source) -> Result<(), Fatal> {
    crate::app::upgrade::remember_start();
    crate::sys::ignore_sighup();
    crate::sys::raise_nofile_limit();
    absolutize(&mut cfg.global);
    if let Some(sf) = &cfg.global.state_file {
        crate::control::state::preflight(sf).map_err(Fatal::Config)?;
    }
    // Started by `upgrade`: everything arrives from the running process.
    let mut handed = crate::app::upgrade::receive()?;
    // First: a second instance with the same pidfile names the first.
    let pidfile = match (&mut handed, &cfg.global.pidfile) {
        (Some(h), want) => h
            .take_pidfile(want.as_deref())?
            .map(|(p, f)| PidFile::inherit(p, f)),
        (None, Some(p)) => Some(PidFile::claim(p).map_err(os)?),
        (None, None) => None,
    };
    crate::connlog::preflight(
        cfg.listeners
            .iter()
            .filter_map(|l| l.connection_log.clone()),
    )
    .map_err(os)?;
    let bound = match &mut handed {
        Some(h) => h.take_listeners(&cfg)?,
        None => bind_listeners(&cfg)?,
    };
    // The run directory as the starting user sees it.
    let base_run_dir = match &handed {
        Some(h) => {
            h.check_controls(&cfg)?;
            h.run_dir.clone()
        }
        None => {
            let d = paths::run_dir();
            crate::control::preflight(&cfg, &d).map_err(os)?;
            d
        }
    };
    let g = &cfg.global;
    let metrics = match (&mut handed, g.metrics) {
        (Some(h), want) => h.take_metrics(want)?,
        (None, None) => None,
        (None, Some(addr)) => Some(
            crate::listener::bind(addr, false)
                .map_err(|e| os(format!("cannot listen on --metrics {addr}: {e}")))?,
        ),
    };
    let haproxy = match &mut handed {
        Some(h) => h.take_haproxy(g.haproxy_socket.as_ref().map(|s| s.path.as_path()))?,
        None => None,
    };
    // Look the user up while errors still reach the terminal.
    let drop_to = match &g.user {
        None => None,
        Some(user) => Some((
            user.clone(),
            crate::sys::lookup_user(user)
                .map_err(|e| os(format!("cannot use --user {}: {e}", quote(user))))?,
        )),
    };
    // A successor of a process that dropped privileges runs as that user
    // already.
    let drop_to = match drop_to {
        Some((user, (uid, _))) if handed.is_some() && crate::sys::euid() != 0 => {
            if crate::sys::euid() != uid {
                return Err(os(format!(
                    "--user {}: the running process does not run as that user (restart to change it)",
                    quote(&user)
                )));
            }
            None
        }
        d => d,
    };
    let mut ready = None;
    // A successor is the old daemon's child, already detached.
    if !g.foreground && handed.is_none() {
        match daemon::daemonize().map_err(|e| os(format!("cannot daemonize: {e}")))? {
            Forked::Parent(report) => {
                if let Some(p) = pidfile {
                    p.leave_to_child();
                }
                return parent_exit(report);
            }
            Forked::Child(r) => ready = Some(r),
        }
    }
    let pidfile_copy = match &pidfile {
        Some(p) => Some((
            cfg.global.pidfile.clone().unwrap_or_default(),
            p.dup().map_err(|e| os(format!("pidfile: {e}")))?,
        )),
        None => None,
    };
    let boot = Boot {
        bound: Bound {
            cfg,
            source,
            listeners: bound,
            metrics,
            run_dir: base_run_dir,
            carried: handed.map(crate::app::upgrade::Handed::carried),
            pidfile: pidfile_copy,
            haproxy,
        },
        drop_to,
    };
    let res = run_started(boot, pidfile, &mut ready);
    // A failure before serving reaches the terminal through the parent.
    if let (Err(f), Some(r)) = (&res, ready.take()) {
        r.fail(f.exit().code(), &f.to_string());
    }
    res
}

/// The terminal's side of `daemonize`: the daemon's warnings, then its
/// verdict as our exit.
fn parent_exit(report: daemon::Report) -> Result<(), Fatal> {
    for w in &report.warnings {
        eprintln!("balance: warning: {w}");
    }
    match report.outcome {
        Ok(()) => Ok(()),
        Err((code, msg)) if code == Some(Exit::Usage.code()) => Err(Fatal::Config(msg)),
        Err((_, msg)) => Err(Fatal::Os(msg)),
    }
}

/// What is ready before the fork, for the daemon (or the foreground
/// process) to go on with.
struct Boot {
    /// Its `run_dir` is root's (or the invoking user's) until privileges
    /// are dropped.
    bound: Bound,
    drop_to: Option<(String, (u32, u32))>,
}

/// After the fork: log, pidfile, privileges, runtime; serve. `ready` is
/// told OK once every listener serves.
fn run_started(
    b: Boot,
    mut pidfile: Option<PidFile>,
    ready: &mut Option<Ready>,
) -> Result<(), Fatal> {
    let g = &b.bound.cfg.global;
    open_log(g, ready)?;
    // What a check leaves behind comes to us, not init (killed in a sweep).
    if let Err(e) = crate::sys::reaper::become_subreaper() {
        tracing::warn!("cannot become a child subreaper: {e}");
    }
    if let Some(p) = &mut pidfile {
        p.write_pid().map_err(os)?;
    }
    let res = serve_as_user(b, ready);
    match (&res, pidfile) {
        // The successor holds it (same file, same lock) and wrote its pid.
        (Ok(Ended::HandedOver), Some(p)) => p.leave_to_child(),
        // Removed (if still ours) while the lock is held.
        (_, p) => drop(p),
    }
    res.map(|_| ())
}

fn serve_as_user(b: Boot, ready: &mut Option<Ready>) -> Result<Ended, Fatal> {
    let mut bound = b.bound;
    let g = &bound.cfg.global;
    // Everything privileged is open; no thread exists yet.
    let moved_to = match &b.drop_to {
        Some((user, (uid, gid))) => drop_privileges(g, &bound.run_dir, user, *uid, *gid)?,
        None => None,
    };
    crate::proxy::splice::configure(g.no_splice);
    let rt = runtime(g.threads).map_err(|e| os(format!("cannot start runtime: {e}")))?;
    // The identity is final now: it decides the default run directory
    // (unless `--user` moved the instance below root's; a successor keeps
    // its predecessor's).
    if bound.carried.is_none() {
        bound.run_dir = moved_to.unwrap_or_else(paths::run_dir);
    }
    let res = rt.block_on(serve(bound, ready));
    // Anything still running after the grace period is cut here.
    rt.shutdown_timeout(Duration::from_millis(100));
    crate::sys::reaper::kill_leftovers();
    res
}

fn bind_listeners(cfg: &Config) -> Result<Vec<std::net::TcpListener>, Fatal> {
    cfg.listeners
        .iter()
        .map(|l| {
            crate::listener::bind(l.bind, l.dual_stack)
                .map_err(|e| os(format!("cannot listen on {}: {e}", l.bind)))
        })
        .collect()
}

/// Foreground: stderr. Daemonized: `--log-file`, else syslog; without a
/// syslog daemon the terminal is told that the log is discarded.
fn open_log(g: &Global, ready: &mut Option<Ready>) -> Result<(), Fatal> {
    let sink = match (&g.foreground, &g.log_file) {
        (true, _) => Sink::Stderr,
        (false, Some(p)) => Sink::File(p),
        (false, None) => Sink::Syslog,
    };
    if let (Sink::Syslog, Some(r)) = (&sink, ready.as_mut()) {
        if !crate::sys::syslog_available() {
            r.warn("no syslog daemon listens on /dev/log: the daemon's log is discarded (use --log-file FILE, or -f)");
        }
    }
    logging::init(g, sink).map_err(|e| match &g.log_file {
        Some(p) => os(format!("cannot open log file {}: {e}", p.display())),
        None => os(format!("cannot open the log: {e}")),
    })
}

/// Drop to `user`. Root's `balance -c` looks in its run directory and one
/// level below: unless the run directory or the socket path was chosen,
/// give the dropped process a run directory there that it owns, and
/// return it.
fn drop_privileges(
    g: &Global,
    base_run_dir: &Path,
    user: &str,
    uid: u32,
    gid: u32,
) -> Result<Option<PathBuf>, Fatal> {
    let mut moved_to = None;
    if crate::sys::euid() == 0 && g.control.is_none() && !paths::run_dir_from_env() {
        let dir = paths::user_run_dir(base_run_dir, user);
        prepare_user_run_dir(&dir, uid, gid)
            .map_err(|e| os(format!("cannot prepare {} for --user: {e}", dir.display())))?;
        moved_to = Some(dir);
    }
    crate::sys::drop_privileges(uid, gid)
        .map_err(|e| os(format!("cannot drop privileges to {}: {e}", quote(user))))?;
    info!(user = %user, uid, gid, "dropped privileges");
    Ok(moved_to)
}

/// `/run/balance/USER`, mode 0700, owned by the user we drop to; created by
/// root before the drop (its parent stays root's). A symlink is refused.
fn prepare_user_run_dir(dir: &Path, uid: u32, gid: u32) -> std::io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, PermissionsExt};
    if let Some(parent) = dir.parent() {
        paths::prepare_run_dir(parent)?;
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

fn runtime(threads: usize) -> std::io::Result<tokio::runtime::Runtime> {
    if threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads)
            .enable_all()
            .build()
    }
}

/// What boot hands the runtime: the config, the sockets bound for it, and
/// where control sockets go.
struct Bound {
    cfg: Config,
    source: Source,
    listeners: Vec<std::net::TcpListener>,
    metrics: Option<std::net::TcpListener>,
    run_dir: PathBuf,
    /// Started by `upgrade`: the predecessor's state and control sockets.
    carried: Option<crate::app::upgrade::Carried>,
    /// A copy of the locked pidfile, for a successor.
    pidfile: Option<(PathBuf, std::os::fd::OwnedFd)>,
    /// Started by `upgrade`: the predecessor's HAProxy socket.
    haproxy: Option<crate::control::server::Inherited>,
}

/// Start the listeners, metrics and re-resolution; serve until a stop
/// signal (or `kill`), then drain. Once everything serves, the terminal
/// (`ready`) and systemd (`READY=1`) are told.
async fn serve(b: Bound, ready: &mut Option<Ready>) -> Result<Ended, Fatal> {
    let mut signals = Signals::install();
    let (reload, mut requests) = ReloadHandle::channel();
    let (upgrade, mut upgrades) = UpgradeHandle::channel();
    let successor = b.carried.is_some();
    let sup = Arc::new(Supervisor::new(
        &b.cfg,
        b.run_dir,
        b.source,
        reload,
        upgrade.clone(),
    ));
    let metrics_copy = match &b.metrics {
        Some(m) => Some(
            m.try_clone()
                .map_err(|e| os(format!("metrics socket: {e}")))?,
        ),
        None => None,
    };
    sup.keep_for_upgrade(metrics_copy, b.pidfile, b.carried);
    sup.start(&b.cfg, b.listeners).await.map_err(os)?;
    let shutdown = sup.shutdown_token();
    if let Some(m) = b.metrics {
        if let Ok(addr) = m.local_addr() {
            info!(bind = %addr, "metrics: serving GET /metrics");
        }
        let m = TcpListener::from_std(m)
            .map_err(|e| os(format!("cannot register metrics socket: {e}")))?;
        tokio::spawn(crate::metrics::serve(m, sup.registry(), shutdown.clone()));
    }
    let haproxy = match &b.cfg.global.haproxy_socket {
        None => None,
        Some(h) => {
            let g = &b.cfg.global;
            let rt = crate::control::haproxy::Context::new(
                sup.registry(),
                sup.state_file(),
                crate::app::supervisor::max_conns(g),
                g.threads,
            );
            let start = crate::control::haproxy::Start {
                inherited: b.haproxy,
                keep: upgrade,
                stop: shutdown.clone(),
            };
            let h = crate::control::haproxy::spawn(h, rt, start).map_err(|e| os(e.to_string()))?;
            sup.keep_haproxy(&h);
            Some(h)
        }
    };
    tokio::spawn(crate::dns::reresolve_loop(
        sup.registry(),
        b.cfg.global.resolve_interval,
        shutdown.clone(),
    ));
    if let Some(r) = ready.take() {
        r.ok();
    }
    if successor {
        // The predecessor tells systemd MAINPID= once it hears this.
        crate::app::upgrade::report_ready();
    } else {
        notify::ready();
    }
    // The line a script (or the test harness) waits for: every listener
    // accepts and answers on its control socket, metrics and the HAProxy
    // socket serve.
    info!("ready");
    let ended = sup
        .serve_events(&mut signals, &mut requests, &mut upgrades)
        .await;
    if let Ended::Stopped = ended {
        notify::stopping();
    }
    sup.drain().await;
    if let Some(h) = haproxy {
        h.join().await;
    }
    Ok(ended)
}
