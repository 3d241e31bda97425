//! One client connection from accept to close: connect with failover, then
//! relay. Errors stay here: they are logged and the task ends. This module
//! and the relay write only counters (connections here, bytes there).
//!
//! - `connect`: pick a channel, connect with failover.
//! - `relay`: the orchestrator (active phases, idle parking, `-T`, the
//!   close passed on), one `half::HalfDuplex` per direction.
//! - `accept`: the PROXY header from a trusted upstream (`accept_proxy`),
//!   read before anything else on listeners that have it.
//! - `own`: our own connects coming back in (a loop through a listener
//!   of this process), refused by the accept loop.
//! - `trace`: what the connection log records of a connection (nothing,
//!   on the plain path); `notes`, what its connect noted.
//! - `buffered` and `splice`: the two pumps, siblings sharing only `half`;
//!   `splice` takes pipes from `pipe`, `buffered` prints `-p` via `dump`;
//!   both take their copy buffers from `spare`.

pub(crate) mod accept;
pub(crate) mod buffered;
pub(crate) mod connect;
pub(crate) mod dump;
pub(crate) mod half;
pub(crate) mod notes;
pub(crate) mod own;
pub(crate) mod pipe;
pub(crate) mod relay;
pub(crate) mod routed;
pub(crate) mod spare;
pub(crate) mod splice;
pub(crate) mod trace;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tracing::{Instrument, debug, warn};

use crate::pool::Pick;
use crate::service::Service;
use connect::NoBackend;
use relay::RelayOpts;
use trace::{Ended, Recorder};
pub(crate) use trace::{Logged, NoLog};

/// The client of a connection as logs, hashing and the PROXY header sent
/// onward know it: the socket's peer, or the address a trusted PROXY
/// header carried (`accept_proxy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Peer {
    /// The client's address.
    pub(crate) addr: SocketAddr,
    /// The address the client connected to, when a PROXY header said;
    /// otherwise the socket's own, read only when a header is sent.
    pub(crate) dst: Option<SocketAddr>,
}

impl Peer {
    /// A client connected to us directly.
    pub(crate) fn direct(addr: SocketAddr) -> Peer {
        Peer { addr, dst: None }
    }
}

/// Connect, after waiting for this client's turn while the operator holds
/// the listener (`spin on`; see [`crate::service::hold`]). Without a hold
/// this is one atomic load more than `connect`.
async fn held_connect(
    svc: &Service,
    client: &TcpStream,
    pick: Pick,
) -> Result<connect::Connected, NoBackend> {
    if !svc.ops.hold.engaged() {
        return connect::connect(svc, client, pick).await;
    }
    // Boxed: a second connect state would otherwise size every connect.
    Box::pin(connect_in_turn(svc, client, pick)).await
}

/// Connect once the operator's hold gives this client its turn.
async fn connect_in_turn(
    svc: &Service,
    client: &TcpStream,
    pick: Pick,
) -> Result<connect::Connected, NoBackend> {
    let hold = &svc.ops.hold;
    debug!("held by the operator (spin on)");
    let since = notes::traced().then(std::time::Instant::now);
    let turn = hold.wait(connect::client_gone(client)).await;
    if let Some(since) = since {
        notes::held(since, turn.is_err());
    }
    match turn {
        Ok(turn) => turn.run(connect::connect(svc, client, pick)).await,
        Err(_) => {
            debug!("client left while held");
            Err(NoBackend::ClientGone)
        }
    }
}

/// Connect; on a listener with `route:`, to the chain of the group the
/// client's key picks (boxed: only routed clients pay for the peek and a
/// lookup, and both are freed before the connect).
async fn routed_connect(
    svc: &Service,
    client: &TcpStream,
    peer: Peer,
) -> Result<connect::Connected, NoBackend> {
    let ip = peer.addr.ip();
    let c = match &svc.route {
        None => held_connect(svc, client, Pick::client(ip)).await?,
        Some(r) => {
            let from = match Box::pin(routed::route(r, client, &peer)).await {
                routed::Routed::Group(g) => g,
                routed::Routed::Reject => return Err(NoBackend::Rejected),
                routed::Routed::Gone => return Err(NoBackend::ClientGone),
            };
            let c = held_connect(svc, client, Pick::routed(ip, from)).await?;
            connect::Connected {
                from: Some(from),
                ..c
            }
        }
    };
    // The header goes on the connection that carries the client (a
    // retry's, or the raced connect that won), before any client byte.
    connect::with_header(c, client, &peer)
}

/// Show IPv4 peers of a dual-stack socket as plain IPv4.
pub(crate) fn canonical(peer: SocketAddr) -> SocketAddr {
    SocketAddr::new(peer.ip().to_canonical(), peer.port())
}

/// One client connection from accept to close; the task holds `permit`
/// (`--max-conns`) until the sockets are closed. Not an `async fn`: the span
/// wraps the connection's future directly, so the task keeps one copy of
/// the arguments, not one per layer (an idle connection's memory is mostly
/// this future). `start` makes the connection's recorder: [`NoLog::accepted`]
/// (the plain path) or [`Logged::accepted`] (a listener with a connection
/// log: the accept time now, logged when it ends).
pub(crate) fn handle<R: Recorder>(
    svc: Arc<Service>,
    client: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    start: fn(SocketAddr) -> R,
) -> R::Task<tracing::instrument::Instrumented<impl Future<Output = ()>>> {
    let peer = canonical(peer);
    let span = conn_span(&svc, peer);
    R::task(serve(svc, client, peer, permit, start(peer)).instrument(span))
}

fn conn_span(svc: &Service, peer: SocketAddr) -> tracing::Span {
    tracing::debug_span!("conn", listener = %svc.cfg.name, client = %peer, channel = tracing::field::Empty)
}

async fn serve<R: Recorder>(
    svc: Arc<Service>,
    client: TcpStream,
    peer: SocketAddr,
    permit: OwnedSemaphorePermit,
    mut rec: R,
) {
    // TCP_NODELAY comes from the listener (`listener::bind`).
    crate::sys::set_keepalive((&client).into(), svc.cfg.client_keepalive.as_ref());
    // Without `accept_proxy` one branch on the config; with it, boxed:
    // its buffer is freed before the connect.
    let peer = if svc.cfg.accept_proxy.is_empty() {
        Peer::direct(peer)
    } else {
        match Box::pin(accept::client(&svc, &client, peer)).await {
            Some(p) => p,
            None => return,
        }
    };
    // The client as the listener knows it (a PROXY header's, when read).
    rec.client(peer.addr);
    // Boxed: the connect state is freed once connected, so it does not
    // size the future every idle connection keeps; the result is taken
    // apart at once, so only the stream and the slot live on.
    let connect::Connected {
        stream,
        guard,
        cand,
        addr,
        from,
    } = match Box::pin(routed_connect(&svc, &client, peer)).await {
        Ok(b) => b,
        Err(e) => {
            rec.failed(&svc, &permit, &e);
            return no_backend(&svc, &client, e);
        }
    };
    let ch = guard.channel();
    ch.connect_ok();
    ch.total.fetch_add(1, Relaxed);
    svc.served_by(cand.group, from);
    tracing::Span::current().record("channel", tracing::field::display(addr));
    debug!(group = cand.group, index = cand.index, "connected");
    rec.connected(&svc, &cand, addr);
    drop(cand);
    svc.stats.active.fetch_add(1, Relaxed);
    // A fence waits for this count before another group takes a client.
    let relaying = svc.cfg.fence.then(|| ch.relaying_guard());
    let opts = RelayOpts {
        sent: &ch.sent,
        rcvd: &ch.rcvd,
        idle_timeout: svc.cfg.idle_timeout,
        dump: svc.cfg.packet_dump,
        splice: splice::enabled(),
    };
    let end = match rec.first_byte() {
        None => relay::relay(&client, &stream, &opts, ch.ends()).await,
        // Boxed, and built in its own arm: the plain path's future stays
        // as it was.
        Some(first) => {
            let run = relay::relay(&client, &stream, &opts, ch.ends());
            Box::pin(trace::watch_first_byte(first, &stream, run)).await
        }
    };
    debug!(?end, "closed");
    rec.ended(
        &Ended {
            svc: &svc,
            // Not `ch`: kept across the relay, it would size every
            // connection's future.
            channel: guard.channel(),
            client: &client,
            backend: &stream,
            permit: &permit,
        },
        &end,
    );
    if end == relay::End::Killed {
        // on-down=shutdown, on-up=shutdown-backup, a fence or a
        // switchover: reset both sides.
        crate::sys::set_linger_zero(&client);
        crate::sys::set_linger_zero(&stream);
        debug!("session ended by the balancer");
    }
    svc.stats.active.fetch_sub(1, Relaxed);
    // Sockets close here, then the guard releases the channel's slot and
    // the permit its place under `--max-conns`.
    drop(client);
    drop(stream);
    drop(relaying);
    drop(guard);
    drop(permit);
}

/// The client for whom no backend could be had.
fn no_backend(svc: &Service, client: &TcpStream, why: NoBackend) {
    match why {
        NoBackend::ClientGone | NoBackend::Rejected => {}
        NoBackend::Reset => {
            crate::sys::set_linger_zero(client);
            debug!("the backend reset while connecting; resetting the client");
        }
        NoBackend::Exhausted => {
            let total = svc.stats.refused.fetch_add(1, Relaxed) + 1;
            if let Some(more) = svc.stats.refused_log.due() {
                // No client address: keeping `peer` across the connect
                // would make every connection's future larger.
                warn!(listener = %svc.cfg.name,
                      "no channel could take a client; closed it ({more} more since the last such line, {total} in all)");
            }
        }
    }
}

#[cfg(test)]
mod tests;
