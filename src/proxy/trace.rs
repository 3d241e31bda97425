//! What the connection log needs from one connection, gathered by a
//! [`Recorder`]. `serve` runs with [`NoLog`] (every hook empty, nothing
//! kept: the plain data path compiles as without a log) or with [`Logged`]
//! (the accept time, the connect's notes (`notes`), the first backend
//! byte), the choice made once per connection by the accept loop.

use std::cell::RefCell;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::sync::{Arc, OnceLock};
use std::time::{Duration, Instant, SystemTime};

use tokio::net::TcpStream;
use tokio::sync::OwnedSemaphorePermit;
use tokio::task::futures::TaskLocalFuture;

use crate::connlog::{Record, Server, Termination};
use crate::pool::{Candidate, Channel, EndCause};
use crate::service::Service;

use super::connect::NoBackend;
use super::notes::{Fail, Notes, take_notes};
use super::relay::End;

/// The connection log's hooks in `serve`.
pub(crate) trait Recorder {
    /// The connection's task as spawned (with its notes when logged).
    type Task<F: Future<Output = ()>>: Future<Output = ()>;
    fn task<F: Future<Output = ()>>(f: F) -> Self::Task<F>;
    /// The client's address as the listener knows it (a PROXY header's).
    fn client(&mut self, addr: SocketAddr);
    /// Connected to `addr` of `cand`'s channel.
    fn connected(&mut self, svc: &Service, cand: &Candidate, addr: SocketAddr);
    /// Where the backend's first byte's arrival goes, when watched.
    fn first_byte(&self) -> Option<&OnceLock<Instant>>;
    /// The relay ended (`end`); the sockets are still open.
    fn ended(self, s: &Ended<'_>, end: &End);
    /// No backend could be had.
    fn failed(self, svc: &Service, permit: &OwnedSemaphorePermit, why: &NoBackend);
}

/// `relay`, noting in `first` when the backend first has something to
/// read (its first byte, or its end when none comes: then no byte was
/// read and the log reports none).
pub(crate) async fn watch_first_byte(
    first: &OnceLock<Instant>,
    backend: &TcpStream,
    relay: impl Future<Output = End>,
) -> End {
    let readable = async {
        if backend.readable().await.is_ok() {
            let _ = first.set(Instant::now());
        }
        std::future::pending::<End>().await
    };
    tokio::select! {
        biased;
        e = readable => e,
        e = relay => e,
    }
}

/// What a relayed connection's log line reads at its end.
pub(crate) struct Ended<'a> {
    pub(crate) svc: &'a Service,
    pub(crate) channel: &'a Channel,
    pub(crate) client: &'a TcpStream,
    pub(crate) backend: &'a TcpStream,
    pub(crate) permit: &'a OwnedSemaphorePermit,
}

/// No connection log: every hook is empty.
pub(crate) struct NoLog;

impl NoLog {
    /// The plain path's recorder for a client (`proxy::handle`'s `start`).
    pub(crate) fn accepted(_: SocketAddr) -> NoLog {
        NoLog
    }
}

impl Recorder for NoLog {
    type Task<F: Future<Output = ()>> = F;
    #[inline(always)]
    fn task<F: Future<Output = ()>>(f: F) -> F {
        f
    }
    #[inline(always)]
    fn client(&mut self, _: SocketAddr) {}
    #[inline(always)]
    fn connected(&mut self, _: &Service, _: &Candidate, _: SocketAddr) {}
    #[inline(always)]
    fn first_byte(&self) -> Option<&OnceLock<Instant>> {
        None
    }
    #[inline(always)]
    fn ended(self, _: &Ended<'_>, _: &End) {}
    #[inline(always)]
    fn failed(self, _: &Service, _: &OwnedSemaphorePermit, _: &NoBackend) {}
}

/// A logged connection's notes.
pub(crate) struct Logged {
    accepted: SystemTime,
    start: Instant,
    client: SocketAddr,
    connected: Option<(Instant, Server)>,
    first_byte: OnceLock<Instant>,
}

impl Logged {
    /// Accepted now, from `client`.
    pub(crate) fn accepted(client: SocketAddr) -> Logged {
        Logged {
            accepted: SystemTime::now(),
            start: Instant::now(),
            client,
            connected: None,
            first_byte: OnceLock::new(),
        }
    }

    /// The record with what every line has; the caller fills the rest.
    fn record(
        &self,
        svc: &Service,
        permit: &OwnedSemaphorePermit,
        n: &mut Notes,
        t: Termination,
    ) -> Record {
        let spinning = svc.stats.spinning.load(Relaxed);
        let feconn = svc.stats.active.load(Relaxed);
        Record {
            accepted: self.accepted,
            client: self.client,
            server: None,
            wait_ms: ms(n.waited),
            connect_ms: None,
            total_ms: ms(self.start.elapsed()),
            first_byte_ms: None,
            bytes_read: 0,
            bytes_uploaded: 0,
            termination: t,
            actconn: crate::connlog::active_conns(permit.semaphore().available_permits()),
            feconn,
            beconn: feconn + spinning,
            srv_conn: 0,
            retries: n.retries,
            backend_queue: spinning,
            race: n.race,
            route: n.route.take(),
        }
    }
}

fn server(svc: &Service, cand: &Candidate, addr: Option<SocketAddr>) -> Server {
    Server {
        channel: Arc::clone(&cand.channel),
        group: svc.pool.groups().get(cand.group).cloned(),
        group_index: cand.group,
        addr,
    }
}

fn ms(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}

impl Recorder for Logged {
    type Task<F: Future<Output = ()>> = TaskLocalFuture<RefCell<Notes>, F>;
    fn task<F: Future<Output = ()>>(f: F) -> Self::Task<F> {
        super::notes::traced_task(f)
    }

    fn client(&mut self, addr: SocketAddr) {
        self.client = addr;
    }

    fn connected(&mut self, svc: &Service, cand: &Candidate, addr: SocketAddr) {
        let server = server(svc, cand, Some(addr));
        self.connected = Some((Instant::now(), server));
    }

    fn first_byte(&self) -> Option<&OnceLock<Instant>> {
        Some(&self.first_byte)
    }

    fn ended(self, s: &Ended<'_>, end: &End) {
        let Some(log) = &s.svc.connlog else { return };
        let t = match end {
            End::Done => Termination::Normal,
            End::ClientError => Termination::ClientAbort,
            End::BackendError => Termination::ServerAbort,
            End::Idle => Termination::IdleTimeout,
            End::Killed => match s.channel.ends().cause() {
                EndCause::Down => Termination::KilledDown,
                EndCause::BackupShutdown => Termination::KilledBackup,
                EndCause::Fence => Termination::KilledFence,
                EndCause::Operator => Termination::KilledOperator,
            },
        };
        let mut n = take_notes();
        let mut r = self.record(s.svc, s.permit, &mut n, t);
        let (client_reset, backend_reset) = (*end == End::ClientError, *end == End::BackendError);
        let bytes_read = crate::sys::bytes_received(s.backend, backend_reset).unwrap_or(0);
        r.bytes_read = bytes_read;
        r.bytes_uploaded = crate::sys::bytes_received(s.client, client_reset).unwrap_or(0);
        r.srv_conn = u64::from(s.channel.conns());
        if let Some((at, server)) = self.connected {
            r.connect_ms = Some(ms(at.duration_since(self.start).saturating_sub(n.waited)));
            r.first_byte_ms = self
                .first_byte
                .get()
                .filter(|_| bytes_read > 0)
                .map(|f| ms(f.saturating_duration_since(at)));
            r.server = Some(server);
        }
        log.send(r);
    }

    fn failed(self, svc: &Service, permit: &OwnedSemaphorePermit, why: &NoBackend) {
        let Some(log) = &svc.connlog else { return };
        let mut n = take_notes();
        let t = match why {
            NoBackend::ClientGone if n.left_held => Termination::ClientGoneHeld,
            NoBackend::ClientGone => Termination::ClientGoneConnecting,
            NoBackend::Reset => Termination::ServerAbort,
            NoBackend::Rejected => Termination::Rejected,
            NoBackend::Exhausted => match n.last_fail {
                Fail::None if n.spun => Termination::HoldExpired,
                Fail::None | Fail::Refused => Termination::Refused,
                Fail::Timeout => Termination::ConnectTimeout,
                Fail::Local => Termination::LocalResource,
            },
        };
        let mut r = self.record(svc, permit, &mut n, t);
        if let Some(c) = n.tried.take() {
            r.srv_conn = u64::from(c.channel.conns());
            r.server = Some(server(svc, &c, None));
        }
        log.send(r);
    }
}
