//! Connecting a client to a backend: walk the candidates (failover), race a
//! slow connect against the next candidate (`--race`), hold the client while
//! nothing is eligible (`--spin`), and give up at once if the client leaves
//! (resets; a FIN is a half-close passed on after connecting).
//! Feeds passive failure detection (`Service::report`); local errors never
//! count against a channel.

use std::io;
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::stream::{FuturesUnordered, StreamExt};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::Interest;
use tokio::net::TcpStream;
use tokio::sync::futures::Notified;
use tokio::time::{Instant, sleep, sleep_until, timeout};
use tracing::{debug, warn};

use super::Peer;
use crate::config::{ListenerConfig, ProxyVersion};
use crate::health::Outcome;
use crate::pool::demand::Demanded;
use crate::pool::{Candidate, Candidates, ConnGuard, Pick};
use crate::proxy_header;
use crate::service::Service;
use crate::service::fence::Admit;

use super::notes::{self, Fail};
use crate::connlog::Race;

/// A connected backend with its reserved slot.
pub(crate) struct Connected {
    pub(crate) stream: TcpStream,
    pub(crate) guard: ConnGuard,
    pub(crate) cand: Candidate,
    pub(crate) addr: SocketAddr,
    /// The group a routed client's chain started from.
    pub(crate) from: Option<usize>,
}

/// Why a client could not be connected.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum NoBackend {
    /// The client went away while we were connecting or spinning.
    ClientGone,
    /// Every candidate failed or none was eligible (after spinning, if set).
    Exhausted,
    /// The backend accepted and reset before the relay started: the
    /// client must see a reset too, not another backend or a clean end.
    Reset,
    /// `route:` turned the client away (`reject`).
    Rejected,
}

/// How one connect attempt failed.
#[derive(Debug, thiserror::Error)]
enum AttemptError {
    /// The backend's fault: refused, unreachable.
    #[error("{0}")]
    Backend(String),
    /// The backend's fault: no answer within the connect timeout.
    #[error("{0}")]
    Timeout(String),
    /// Ours: no ports, no fds, no memory. Not a channel failure.
    #[error("local error: {0}")]
    Local(io::Error),
    /// The handshake completed and the backend reset at once (its
    /// ECONNRESET read while finishing the connect): passed on to the
    /// client, not a connect failure.
    #[error("reset by the backend right after connecting")]
    Reset,
}

/// Safety net for spinning: re-check eligibility at least this often even
/// without a notification.
const SPIN_RECHECK: Duration = Duration::from_millis(250);

/// Connect `client` to a candidate of `pick`.
pub(crate) async fn connect(
    svc: &Service,
    client: &TcpStream,
    pick: Pick,
) -> Result<Connected, NoBackend> {
    let spin_deadline = svc.cfg.spin.map(|d| Instant::now() + d);
    // A client may wait: for `--spin`, or for a group started on demand.
    let may_wait = spin_deadline.is_some() || svc.on_demand;
    let mut spinning = false;
    let result = loop {
        // Register for wake-ups before looking, so no change is missed.
        // Only a spinning listener ever waits on it: without `--spin` the
        // registration (a lock and a list insert and removal per
        // connection) is skipped.
        let mut notified = pin!(svc.pool.eligible.notified());
        if may_wait {
            notified.as_mut().enable();
        }
        let (ticket, fleet_held) = match svc.cfg.fence {
            false => (None, false),
            true => match svc.fence.ticket_unless_fleet_fencing() {
                Some(t) => (Some(t), false),
                // Fleet mode while no group serves here: connect nowhere
                // (a server would see an aborted handshake) until the
                // fleet grants one; without a grant in time, as if
                // nothing were eligible. Boxed: only then is it paid for.
                None if Box::pin(svc.fence.fleet_settled()).await => continue,
                None => (None, true),
            },
        };
        let attempt = if fleet_held {
            Err(NoBackend::Exhausted)
        } else {
            try_candidates(svc, svc.pool.candidates(pick), client).await
        };
        match attempt {
            Ok(c) => match ticket {
                None => break Ok(c),
                // Its group serves: one atomic load, nothing allocated.
                Some(_) if svc.fence.serves(c.cand.group) => break Ok(c),
                // Boxed: only a connect that may move the fence pays for it.
                Some(t) => match Box::pin(svc.fence.admit(
                    &svc.cfg.name,
                    &svc.pool.groups(),
                    c.cand.group,
                    t,
                ))
                .await
                {
                    Admit::Go => break Ok(c),
                    Admit::Stale => {
                        // Selected before traffic left this group: the
                        // connection never carries a byte; select again.
                        debug!(
                            group = c.cand.group,
                            "group fenced while connecting; selecting again"
                        );
                        crate::sys::set_linger_zero(&c.stream);
                        continue;
                    }
                    // Fleet mode: the fleet has not let its group serve
                    // yet; the client waits as if nothing were eligible.
                    Admit::Held => crate::sys::set_linger_zero(&c.stream),
                },
            },
            Err(e @ (NoBackend::ClientGone | NoBackend::Reset | NoBackend::Rejected)) => {
                break Err(e);
            }
            Err(NoBackend::Exhausted) => {}
        }
        // A group started on demand holds the client until it is ready or
        // its start times out (then the walk passes it over).
        let held = if svc.on_demand {
            on_demand(svc, pick)
        } else {
            None
        };
        let deadline = match (held, spin_deadline) {
            (Some(t), _) => t,
            (None, Some(t)) => t,
            (None, None) => break Err(NoBackend::Exhausted),
        };
        if Instant::now() >= deadline {
            if held.is_some() {
                continue;
            }
            break Err(NoBackend::Exhausted);
        }
        if !spinning {
            spinning = true;
            svc.stats.spinning.fetch_add(1, Relaxed);
            debug!("no eligible channel; spinning");
        }
        // Boxed: only a spinning connection pays for the timers.
        if Box::pin(spin_wait(notified, deadline, client))
            .await
            .is_err()
        {
            break Err(NoBackend::ClientGone);
        }
    };
    if spinning {
        svc.stats.spinning.fetch_sub(1, Relaxed);
    }
    result
}

/// The client found nothing: if a group started on demand holds it,
/// start that group (the first client to ask does) and return when the
/// hold ends. Cold path: only after nothing could be connected.
fn on_demand(svc: &Service, pick: Pick) -> Option<Instant> {
    let (g, d) = svc.pool.holding(pick)?;
    match d.demand() {
        Demanded::Pass => None,
        Demanded::Wait(t) => Some(Instant::from_std(t)),
        Demanded::Start(t) => {
            crate::service::demand::start(svc, g, d);
            Some(Instant::from_std(t))
        }
    }
}

/// The connection made for `peer`, with its channel's PROXY header (if
/// it sends one) written first.
pub(crate) fn with_header(
    c: Connected,
    client: &TcpStream,
    peer: &Peer,
) -> Result<Connected, NoBackend> {
    match c.cand.channel.proxy_protocol() {
        None => Ok(c),
        Some(v) => send_header(&c.stream, v, client, peer).map(|()| c),
    }
}

/// Write the PROXY header for `peer` on the connection chosen for it,
/// before any client byte: the connection that carries the client (a
/// retry's, or the raced connect that won) writes its own; a connect the
/// race dropped never carries a byte. Without waiting: a new connection's
/// send buffer is empty, so one `write` of at most 107 bytes completes at
/// once (and no await keeps the connect state larger). Should it not, the
/// client is refused rather than relayed without its header; a backend
/// that reset right after accepting is a reset while connecting.
fn send_header(
    stream: &TcpStream,
    v: ProxyVersion,
    client: &TcpStream,
    peer: &Peer,
) -> Result<(), NoBackend> {
    let dst = peer.dst.or_else(|| client.local_addr().ok());
    let h = match dst {
        Some(dst) => proxy_header::encode(v, peer.addr, super::canonical(dst)),
        // No local address (the client's socket is gone): nothing to claim.
        None => proxy_header::encode_local(v),
    };
    match stream.try_write(h.as_bytes()) {
        Ok(n) if n == h.as_bytes().len() => Ok(()),
        Ok(n) => {
            warn!(
                "the PROXY header did not fit a new connection's send buffer ({n} bytes written); closed"
            );
            Err(NoBackend::Reset)
        }
        Err(e) => {
            debug!(error = %e, "sending the PROXY header failed");
            Err(NoBackend::Reset)
        }
    }
}

/// Wait while spinning: for a channel to become eligible, the recheck, or
/// the deadline. Err when the client left meanwhile.
async fn spin_wait(
    notified: Pin<&mut Notified<'_>>,
    deadline: Instant,
    client: &TcpStream,
) -> Result<(), NoBackend> {
    let since = notes::traced().then(std::time::Instant::now);
    let r = tokio::select! {
        _ = notified => Ok(()),
        _ = sleep(SPIN_RECHECK) => Ok(()),
        _ = sleep_until(deadline) => Ok(()),
        _ = client_gone(client) => Err(NoBackend::ClientGone),
    };
    if let Some(since) = since {
        notes::held(since, r.is_err());
        notes::note(|n| n.spun = true);
    }
    r
}

/// Try candidates in order: one after the other, or with `--race` racing
/// (boxed: without `--race` its state would size every connect).
async fn try_candidates(
    svc: &Service,
    cands: Candidates,
    client: &TcpStream,
) -> Result<Connected, NoBackend> {
    match svc.cfg.race {
        None => try_in_turn(svc, cands, client).await,
        Some(race) => Box::pin(race_candidates(svc, cands, client, race)).await,
    }
}

/// With `--race`: start the next candidate when the
/// current connect is slow. First success wins; the others are dropped
/// (which closes their sockets). A connect still pending when the race
/// started the next candidate and abandoned when another won was slow past
/// `race`: it counts against its channel like a timeout (and asks for a
/// re-probe), so a blackholed primary goes down instead of taxing every
/// client with the race delay.
async fn race_candidates(
    svc: &Service,
    mut cands: Candidates,
    client: &TcpStream,
    race: Duration,
) -> Result<Connected, NoBackend> {
    // A field, not the task-local: a racing listener without a log pays
    // nothing more.
    let traced = svc.connlog.is_some();
    let cfg = &svc.cfg;
    let mut inflight = FuturesUnordered::new();
    // The candidate launched, when there was one left.
    let mut launch = |inflight: &mut FuturesUnordered<_>| -> Option<Candidate> {
        for cand in cands.by_ref() {
            // maxc may have been reached since the eligibility check.
            if let Some(guard) = cand.channel.try_acquire() {
                if traced {
                    notes::note(|n| n.tried = Some(cand.clone()));
                }
                let newest = cand.clone();
                inflight.push(attempt(cfg, cand, guard));
                return Some(newest);
            }
        }
        None
    };
    // The newest connect, until the race overtakes it.
    let Some(first) = launch(&mut inflight) else {
        return Err(NoBackend::Exhausted);
    };
    let mut newest = Some(first);
    // Connects the race overtook; empty (no allocation) until it does.
    let mut overtaken: Vec<Candidate> = Vec::new();
    // None once there is nothing left to race.
    let mut race_at = Some(Instant::now() + race);
    let mut gone = pin!(client_gone(client));
    loop {
        let race_sleep = async {
            match race_at {
                Some(t) => sleep_until(t).await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            biased;
            _ = &mut gone => {
                debug!("client left while connecting; connect abandoned");
                return Err(NoBackend::ClientGone);
            }
            res = inflight.next() => match res {
                Some(Ok(c)) => {
                    if traced && !overtaken.is_empty() {
                        let slow_won = overtaken.iter().any(|o| Arc::ptr_eq(&o.channel, &c.cand.channel));
                        notes::note(|n| n.race = if slow_won { Race::FirstWon } else { Race::RacerWon });
                    }
                    abandoned(svc, &overtaken, &c.cand);
                    return Ok(c);
                }
                Some(Err((cand, AttemptError::Reset))) => {
                    if traced {
                        notes::note(|n| n.tried = Some(cand));
                    }
                    return Err(NoBackend::Reset);
                }
                Some(Err((cand, err))) => {
                    overtaken.retain(|o| !Arc::ptr_eq(&o.channel, &cand.channel));
                    connect_failed(svc, &cand, err);
                    match launch(&mut inflight) {
                        Some(n) => newest = Some(n),
                        None if inflight.is_empty() => return Err(NoBackend::Exhausted),
                        None => {}
                    }
                    race_at = Some(Instant::now() + race);
                }
                None => return Err(NoBackend::Exhausted),
            },
            _ = race_sleep => {
                let slow = newest.take();
                if let Some(n) = launch(&mut inflight) {
                    debug!("connect slow; racing the next candidate");
                    overtaken.extend(slow);
                    newest = Some(n);
                    race_at = Some(Instant::now() + race);
                } else {
                    race_at = None;
                }
            }
        }
    }
}

/// Without `--race`: one candidate after the other, each attempt polled in
/// place (no `FuturesUnordered`: three allocations and its wake-up
/// machinery less per connection).
async fn try_in_turn(
    svc: &Service,
    cands: Candidates,
    client: &TcpStream,
) -> Result<Connected, NoBackend> {
    let mut gone = pin!(client_gone(client));
    for cand in cands {
        // maxc may have been reached since the eligibility check.
        let Some(guard) = cand.channel.try_acquire() else {
            continue;
        };
        let res = {
            // Pinned here: inside `select!` it would be held twice.
            let mut attempt = pin!(reach(&svc.cfg, &cand));
            tokio::select! {
                biased;
                _ = &mut gone => {
                    debug!("client left while connecting; connect abandoned");
                    notes::note(|n| n.tried = Some(cand.clone()));
                    return Err(NoBackend::ClientGone);
                }
                r = &mut attempt => r,
            }
        };
        match res {
            Ok((stream, addr)) => {
                return Ok(Connected {
                    stream,
                    guard,
                    cand,
                    addr,
                    from: None,
                });
            }
            Err(AttemptError::Reset) => {
                notes::note(|n| n.tried = Some(cand));
                return Err(NoBackend::Reset);
            }
            Err(err) => connect_failed(svc, &cand, err),
        }
    }
    Err(NoBackend::Exhausted)
}

/// The connects the race overtook and the winner made moot: each counts
/// against its channel.
fn abandoned(svc: &Service, overtaken: &[Candidate], winner: &Candidate) {
    let Some(race) = svc.cfg.race else { return };
    for o in overtaken
        .iter()
        .filter(|o| !Arc::ptr_eq(&o.channel, &winner.channel))
    {
        let detail = format!(
            "connect abandoned: no answer within --race {}",
            crate::monitor::probe::fmt_dur(race)
        );
        svc.report(o, Outcome::ConnectFailed(detail));
    }
}

/// Connect to one channel (`--race`'s form: the candidate and its slot
/// travel with the attempt).
async fn attempt(
    cfg: &ListenerConfig,
    cand: Candidate,
    guard: ConnGuard,
) -> Result<Connected, (Candidate, AttemptError)> {
    match reach(cfg, &cand).await {
        Ok((stream, addr)) => Ok(Connected {
            stream,
            guard,
            cand,
            addr,
            from: None,
        }),
        Err(e) => Err((cand, e)),
    }
}

/// Connect to one channel: each of its addresses in turn, each bounded by
/// the connect timeout.
async fn reach(
    cfg: &ListenerConfig,
    cand: &Candidate,
) -> Result<(TcpStream, SocketAddr), AttemptError> {
    let target = cand.channel.target();
    if target.addrs.is_empty() {
        return Err(AttemptError::Backend(format!(
            "{} does not resolve",
            target.host
        )));
    }
    let mut last = AttemptError::Backend("no address".into());
    for &addr in &target.addrs {
        match connect_addr(cfg, addr).await {
            Ok(stream) => return Ok((stream, addr)),
            Err(e) => {
                debug!(%addr, error = %e, "connect failed");
                let stop = matches!(e, AttemptError::Local(_) | AttemptError::Reset);
                last = e;
                if stop {
                    break;
                }
            }
        }
    }
    Err(last)
}

async fn connect_addr(cfg: &ListenerConfig, addr: SocketAddr) -> Result<TcpStream, AttemptError> {
    let sock = Socket::new(
        Domain::for_address(addr),
        Type::STREAM.nonblocking(),
        Some(Protocol::TCP),
    )
    .map_err(AttemptError::Local)?;
    // Before connecting: it carries over, and costs no more than after.
    let _ = sock.set_tcp_nodelay(true);
    if let Some(src) = cfg.source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        // Let the kernel pick the port at connect time, not at bind time,
        // so a source address does not exhaust ephemeral ports early.
        crate::sys::set_bind_address_no_port(&sock);
        sock.bind(&SocketAddr::new(src, 0).into())
            .map_err(classify)?;
    }
    match sock.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if crate::sys::is_connect_in_progress(&e) => {}
        Err(e) => return Err(classify(e)),
    }
    // At once: over loopback the connection may already wait in our own
    // accept queue.
    super::own::mark(&sock, addr);
    let stream = TcpStream::from_std(sock.into()).map_err(AttemptError::Local)?;
    match timeout(cfg.connect_timeout, connected(&stream)).await {
        Ok(Ok(())) => {}
        // The error was consumed reading it: the relay would only see EOF.
        Ok(Err(e)) if e.kind() == io::ErrorKind::ConnectionReset => {
            return Err(AttemptError::Reset);
        }
        Ok(Err(e)) => return Err(classify(e)),
        Err(_) => {
            return Err(AttemptError::Timeout(format!(
                "connect timeout after {:?}",
                cfg.connect_timeout
            )));
        }
    }
    crate::sys::set_keepalive((&stream).into(), cfg.server_keepalive.as_ref());
    Ok(stream)
}

/// Wait until a non-blocking connect has finished. A failed connect always
/// reports an error (EPOLLERR, with EPOLLHUP), so only then is SO_ERROR
/// read; a plain "writable" is a finished handshake. (tokio's own connect
/// reads SO_ERROR after every connect: one syscall per connection.)
async fn connected(s: &TcpStream) -> io::Result<()> {
    let r = s.ready(Interest::WRITABLE | Interest::ERROR).await?;
    if r.is_error() || r.is_write_closed() {
        if let Some(e) = s.take_error()? {
            return Err(e);
        }
    }
    Ok(())
}

fn classify(e: io::Error) -> AttemptError {
    if crate::sys::is_local_resource_error(&e) {
        AttemptError::Local(e)
    } else if e.kind() == io::ErrorKind::ConnectionRefused {
        AttemptError::Backend("connection refused".into())
    } else {
        AttemptError::Backend(e.to_string())
    }
}

/// Resolves when the client has left: a reset or a socket error. A FIN
/// (with or without data before it) is a half-close, not a departure: a
/// client that shut down its sending side before sending anything
/// (`nc -N`, health checkers) still waits for a server-speaks-first
/// banner, so the EOF is passed on once connected. A client that closed
/// for good and never resets is bounded by the connect timeout (and
/// `--spin`'s deadline), then its RST on the first relayed byte ends it.
pub(crate) async fn client_gone(client: &TcpStream) {
    loop {
        match client.ready(Interest::ERROR).await {
            Ok(r) if r.is_error() => return,
            Ok(_) => {}
            Err(_) => return,
        }
    }
}

/// Passive detection: a failed connect from real traffic. A backend
/// failure is the channel's outcome; a local one only a (rate-limited)
/// warning.
fn connect_failed(svc: &Service, cand: &Candidate, err: AttemptError) {
    let fail = match &err {
        AttemptError::Backend(_) => Fail::Refused,
        AttemptError::Timeout(_) => Fail::Timeout,
        AttemptError::Local(_) => Fail::Local,
        AttemptError::Reset => Fail::None,
    };
    notes::failed(cand, fail);
    match err {
        AttemptError::Backend(detail) | AttemptError::Timeout(detail) => {
            svc.report(cand, Outcome::ConnectFailed(detail));
        }
        AttemptError::Reset => {}
        AttemptError::Local(e) => {
            if let Some(suppressed) = local_error_log_due() {
                warn!(channel = %cand.channel.target(), name = %cand.channel.name(), group = cand.group,
                      "connect failed on a local error: {e} ({suppressed} similar errors suppressed)");
            }
        }
    }
}

/// Rate limit for local-error warnings (EMFILE, EADDRNOTAVAIL…): at most one
/// a second per process, so a burst of clients at the fd limit does not
/// flood the log. Returns the number suppressed since the last one logged.
fn local_error_log_due() -> Option<u64> {
    static EVERY: crate::logging::Every = crate::logging::Every::new();
    EVERY.due()
}

#[cfg(test)]
mod tests;
