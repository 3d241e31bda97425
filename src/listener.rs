//! Binding listen sockets and the accept loop. The accept loop never dies
//! and never spins: resource errors (EMFILE…) back off and log at most once
//! a second; everything else is logged and accept continues. The loop
//! writes only its service's `accepted` counter.

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};
use tokio::net::TcpListener;
use tokio::sync::Semaphore;
use tokio::time::sleep;
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tracing::{debug, warn};

use crate::logging::Every;
use crate::service::Service;

/// Kernel accept queue length (capped by net.core.somaxconn).
const BACKLOG: i32 = 4096;
const BACKOFF_MIN: Duration = Duration::from_millis(10);
const BACKOFF_MAX: Duration = Duration::from_millis(500);
/// Consecutive non-resource accept errors tolerated before backing off.
const OTHER_ERRORS_BEFORE_BACKOFF: u32 = 64;

/// Bind a listening socket (blocking, before the runtime starts). No
/// SO_REUSEPORT: a second instance on the same address must fail.
/// TCP_NODELAY is set here once: every accepted socket inherits it (Linux
/// copies the listener's options), so no connection pays a setsockopt.
pub(crate) fn bind(addr: SocketAddr, dual_stack: bool) -> io::Result<std::net::TcpListener> {
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    sock.set_reuse_address(true)?;
    // Not fatal: relaying works without it (only latency suffers).
    let _ = sock.set_tcp_nodelay(true);
    if addr.is_ipv6() {
        sock.set_only_v6(!dual_stack)?;
    }
    sock.bind(&addr.into())?;
    sock.listen(BACKLOG)?;
    sock.set_nonblocking(true)?;
    Ok(sock.into())
}

/// Accept until `shutdown`; each connection runs in its own task on
/// `tracker`. `limit` bounds connections process-wide (`--max-conns`):
/// while it is exhausted we stop accepting and clients wait in the backlog.
pub(crate) async fn accept_loop(
    svc: Arc<Service>,
    listener: TcpListener,
    limit: Arc<Semaphore>,
    tracker: TaskTracker,
    shutdown: CancellationToken,
) {
    let mut backoff = BACKOFF_MIN;
    // Rate limits of the two warnings a burst could repeat.
    let resource_log = Every::new();
    let own_log = Every::new();
    // Other accept errors (a client that reset while queued) are normal
    // one-offs; a long unbroken run of them gets the back-off too, so a
    // persistent one can never spin the loop.
    let mut other_errors = 0u32;
    let port = svc.cfg.bind.port();
    crate::proxy::own::listening(port);
    // One registration for the whole loop, not a new one per accept.
    let mut stop = std::pin::pin!(shutdown.cancelled());
    loop {
        let permit = tokio::select! {
            _ = &mut stop => break,
            p = Arc::clone(&limit).acquire_owned() => match p {
                Ok(p) => p,
                Err(_) => break,
            },
        };
        let accepted = tokio::select! {
            _ = &mut stop => break,
            r = listener.accept() => r,
        };
        match accepted {
            Ok((sock, peer)) => {
                backoff = BACKOFF_MIN;
                other_errors = 0;
                if crate::proxy::own::is_own(peer, port) {
                    refuse_own(&svc, sock, peer, &own_log);
                    continue;
                }
                svc.stats
                    .accepted
                    .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                let svc = Arc::clone(&svc);
                use crate::proxy::{Logged, NoLog, handle};
                if svc.connlog.is_none() {
                    tracker.spawn(handle(svc, sock, peer, permit, NoLog::accepted));
                } else {
                    tracker.spawn(handle(svc, sock, peer, permit, Logged::accepted));
                }
            }
            Err(e) if crate::sys::is_accept_resource_error(&e) => {
                if let Some(suppressed) = resource_log.due() {
                    warn!(listener = %svc.cfg.name, "accept: {e}; backing off ({suppressed} similar errors suppressed)");
                }
                tokio::select! {
                    _ = &mut stop => break,
                    _ = sleep(backoff) => {}
                }
                backoff = (backoff * 2).min(BACKOFF_MAX);
            }
            Err(e) => {
                debug!(listener = %svc.cfg.name, "accept: {e}");
                other_errors = other_errors.saturating_add(1);
                if other_errors > OTHER_ERRORS_BEFORE_BACKOFF {
                    tokio::select! {
                        _ = &mut stop => break,
                        _ = sleep(BACKOFF_MIN) => {}
                    }
                }
            }
        }
    }
    debug!(listener = %svc.cfg.name, "stopped accepting");
}

/// A connection from one of our own connects: a channel leads back to a
/// listener of this process. Reset at once (the connect it came from sees
/// the reset and its client with it), so one client is one hop, not
/// connections without end; warned about at most once a second.
fn refuse_own(svc: &Service, sock: tokio::net::TcpStream, peer: SocketAddr, log: &Every) {
    crate::sys::set_linger_zero(&sock);
    drop(sock);
    if log.due().is_some() {
        warn!(listener = %svc.cfg.name, client = %peer,
              "refused a connection from this process's own backend connection: a channel loops back to a listener of this process");
    }
}

#[cfg(test)]
mod tests;
