//! Signals and reload requests as one stream of [`Event`]s: SIGTERM and
//! SIGINT (and the control socket's `kill`) stop the process; SIGHUP and a
//! control socket's `reload` ask for a reload; `upgrade` for a hand-over;
//! SIGUSR1 reopens the connection log files. Acting on them is the
//! supervisor's.

use tokio::signal::unix::{Signal, SignalKind, signal};
use tokio_util::sync::CancellationToken;
use tracing::warn;

use crate::control::reload::{ReloadRequest, ReloadRequests};
use crate::control::upgrade::{UpgradeRequest, UpgradeRequests};

/// What the supervisor is asked to do next.
pub(crate) enum Event {
    /// Stop (drain, then exit); the text says why, for the log.
    Stop(&'static str),
    /// SIGHUP: reload the config file.
    Hangup,
    /// SIGUSR1: reopen the connection log files.
    Reopen,
    /// A control socket's `reload`: reload and answer on the request.
    Reload(ReloadRequest),
    /// A control socket's `upgrade`: hand over and answer on the request.
    Upgrade(UpgradeRequest),
}

/// SIGTERM, SIGINT and SIGHUP streams; installed before any listener
/// accepts, so a signal sent as soon as the port answers is not lost (or,
/// for SIGHUP, fatal). Without them (install failed) only `kill` stops
/// the process.
pub(crate) struct Signals {
    term: Option<Signal>,
    int: Option<Signal>,
    hup: Option<Signal>,
    /// SIGUSR1 (without a handler its default action would kill us).
    usr1: Option<Signal>,
}

impl Signals {
    pub(crate) fn install() -> Signals {
        let all = || -> Option<(Signal, Signal, Signal)> {
            Some((
                signal(SignalKind::terminate()).ok()?,
                signal(SignalKind::interrupt()).ok()?,
                signal(SignalKind::hangup()).ok()?,
            ))
        };
        let usr1 = signal(SignalKind::user_defined1()).ok();
        match all() {
            Some((term, int, hup)) => Signals {
                term: Some(term),
                int: Some(int),
                hup: Some(hup),
                usr1,
            },
            None => {
                warn!("cannot install signal handlers; stop with SIGKILL");
                Signals {
                    term: None,
                    int: None,
                    hup: None,
                    usr1,
                }
            }
        }
    }

    /// The next event: a signal, `shutdown` cancelled, or a reload request.
    pub(crate) async fn next(
        &mut self,
        shutdown: &CancellationToken,
        requests: &mut ReloadRequests,
        upgrades: &mut UpgradeRequests,
    ) -> Event {
        tokio::select! {
            _ = shutdown.cancelled() => Event::Stop("kill from the control socket"),
            _ = recv(self.term.as_mut()) => Event::Stop("SIGTERM"),
            _ = recv(self.int.as_mut()) => Event::Stop("SIGINT"),
            _ = recv(self.hup.as_mut()) => Event::Hangup,
            _ = recv(self.usr1.as_mut()) => Event::Reopen,
            Some(reply) = requests.recv() => Event::Reload(reply),
            Some(req) = upgrades.recv() => Event::Upgrade(req),
        }
    }
}

/// The next delivery of `s`; never, without a handler.
async fn recv(s: Option<&mut Signal>) {
    match s {
        Some(s) => {
            let _ = s.recv().await;
        }
        None => std::future::pending().await,
    }
}
