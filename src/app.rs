//! Running the balancer: bind everything first (errors reach the terminal
//! with an exit code), then daemonize, then start the runtime and serve
//! until SIGINT/SIGTERM, then drain for the grace period.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{info, warn};

use crate::config::{Config, Global};
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

pub fn run(cfg: Config) -> Result<(), Fatal> {
    crate::sys::raise_nofile_limit();
    let mut bound = Vec::with_capacity(cfg.listeners.len());
    for l in &cfg.listeners {
        let sock = crate::listener::bind(l.bind, l.dual_stack).map_err(|e| Fatal {
            code: EXIT_OSERR,
            msg: format!("cannot listen on {}: {e}", l.bind),
        })?;
        bound.push(sock);
    }
    let g = &cfg.global;
    if !g.foreground {
        crate::sys::daemonize().map_err(|e| Fatal {
            code: EXIT_OSERR,
            msg: format!("cannot daemonize: {e}"),
        })?;
    }
    let sink = match (&g.foreground, &g.log_file) {
        (true, _) => Sink::Stderr,
        (false, Some(p)) => Sink::File(p),
        (false, None) => Sink::Syslog,
    };
    logging::init(g, sink).map_err(|e| Fatal {
        code: EXIT_OSERR,
        msg: format!("cannot open log file: {e}"),
    })?;
    if let Some(p) = &g.pidfile {
        std::fs::write(p, format!("{}\n", std::process::id())).map_err(|e| Fatal {
            code: EXIT_OSERR,
            msg: format!("cannot write pidfile {}: {e}", p.display()),
        })?;
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
    .map_err(|e| Fatal {
        code: EXIT_OSERR,
        msg: format!("cannot start runtime: {e}"),
    })?;
    let res = rt.block_on(serve(cfg.clone(), bound));
    // Anything still running after the grace period is cut here.
    rt.shutdown_timeout(Duration::from_millis(100));
    if let Some(p) = &cfg.global.pidfile {
        let _ = std::fs::remove_file(p);
    }
    res
}

async fn serve(cfg: Config, bound: Vec<std::net::TcpListener>) -> Result<(), Fatal> {
    let shutdown = CancellationToken::new();
    let tracker = TaskTracker::new();
    let limit = Arc::new(Semaphore::new(max_conns(&cfg.global)));
    let mut services = Vec::new();
    for (l, sock) in cfg.listeners.iter().zip(bound) {
        let listener = TcpListener::from_std(sock).map_err(|e| Fatal {
            code: EXIT_OSERR,
            msg: format!("cannot register {}: {e}", l.bind),
        })?;
        let svc = Arc::new(Service::new(l.clone(), RiseFallParams::default()));
        info!(listener = %l.name, bind = %l.bind, groups = l.groups.len(), "listening");
        tokio::spawn(crate::listener::accept_loop(
            Arc::clone(&svc),
            listener,
            Arc::clone(&limit),
            tracker.clone(),
            shutdown.clone(),
        ));
        services.push(svc);
    }
    wait_for_signal().await;
    info!("shutting down: no new connections; {} live", tracker.len());
    shutdown.cancel();
    tracker.close();
    if tokio::time::timeout(cfg.global.grace, tracker.wait())
        .await
        .is_err()
    {
        warn!(
            "grace period {:?} over: cutting {} connections",
            cfg.global.grace,
            tracker.len()
        );
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

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let (Ok(mut term), Ok(mut int)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
    ) else {
        warn!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => info!("SIGTERM"),
        _ = int.recv() => info!("SIGINT"),
    }
}
