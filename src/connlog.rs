//! The connection log (`connection_log:` / `--connection-log`): one line
//! per connection when it ends, in HAProxy's `tcplog` layout or as JSON.
//!
//! The data path only builds a [`Record`] and offers it to a bounded queue
//! ([`Log::send`]); one writer thread per target formats and writes
//! (`writer`). A full queue (a slow or blocked sink) drops the line and
//! counts it ([`dropped`]): the data path never waits on the log. Without a
//! connection log nothing here runs (a listener's `Option<Log>` is `None`,
//! and its connections take the plain path, `proxy::handle`).
//!
//! - `format`: a record → its line (`tcplog`, JSON) and the dates in it.
//! - `writer`: the thread behind a target, file reopening, syslog.

mod format;
mod writer;

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::sync::mpsc::TrySendError;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, SystemTime};

use crate::config::{ConnLogConfig, ConnLogFormat, ConnLogTarget};
use crate::pool::{Channel, Group};
#[cfg(test)]
use format::{json_line, tcplog_line};

/// Lines dropped because a writer's queue was full or its sink failed.
static DROPPED: AtomicU64 = AtomicU64::new(0);
/// The process-wide connection limit (`--max-conns`), for `actconn`.
static MAX_CONNS: AtomicUsize = AtomicUsize::new(0);

/// Lines dropped since start (`balance_log_dropped_total`).
pub(crate) fn dropped() -> u64 {
    DROPPED.load(Relaxed)
}

fn count_dropped(n: u64) {
    DROPPED.fetch_add(n, Relaxed);
}

/// Tell the log the process-wide connection limit (`actconn` is the
/// limit's permits in use).
pub(crate) fn set_max_conns(n: usize) {
    MAX_CONNS.store(n, Relaxed);
}

/// Connections holding a place under `--max-conns`, from the permits
/// still `available`.
pub(crate) fn active_conns(available: usize) -> u64 {
    MAX_CONNS.load(Relaxed).saturating_sub(available) as u64
}

/// How a session ended: the two letters of HAProxy's termination state
/// (configuration manual, 8.5), with balance's causes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Termination {
    /// `--`: both sides closed.
    Normal,
    /// `CD`: the client reset or failed during the relay.
    ClientAbort,
    /// `SD`: the backend reset or failed during the relay (or reset right
    /// after accepting).
    ServerAbort,
    /// `cD`: `-T` (idle timeout) expired.
    IdleTimeout,
    /// `DD`: the channel went down (`on-down=shutdown`, fencing).
    KilledDown,
    /// `UD`: a group-0 channel came back (`on-up=shutdown-backup`).
    KilledBackup,
    /// `PD`: a fence moved traffic to another group.
    KilledFence,
    /// `KD`: an operator's command (`shutdown sessions server`, a
    /// switchover).
    KilledOperator,
    /// `CC`: the client left while its connect was pending.
    ClientGoneConnecting,
    /// `CQ`: the client left while held (`--spin`, `spin on`).
    ClientGoneHeld,
    /// `SC`: the last connect was refused or failed, or no channel could
    /// take the client (then the server is `<NOSRV>`).
    Refused,
    /// `sC`: the last connect timed out (`-t`).
    ConnectTimeout,
    /// `RC`: the last connect failed on a local resource (no ports, fds).
    LocalResource,
    /// `sQ`: held until `--spin` expired with no channel eligible.
    HoldExpired,
    /// `PR`: `route:` turned the client away (`reject`).
    Rejected,
}

impl Termination {
    pub(crate) fn code(self) -> &'static str {
        match self {
            Termination::Normal => "--",
            Termination::ClientAbort => "CD",
            Termination::ServerAbort => "SD",
            Termination::IdleTimeout => "cD",
            Termination::KilledDown => "DD",
            Termination::KilledBackup => "UD",
            Termination::KilledFence => "PD",
            Termination::KilledOperator => "KD",
            Termination::ClientGoneConnecting => "CC",
            Termination::ClientGoneHeld => "CQ",
            Termination::Refused => "SC",
            Termination::ConnectTimeout => "sC",
            Termination::LocalResource => "RC",
            Termination::HoldExpired => "sQ",
            Termination::Rejected => "PR",
        }
    }
}

/// What `--race` did for a connection.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Race {
    /// No second connect was started.
    #[default]
    None,
    /// A racer was started, but the connect it raced won.
    FirstWon,
    /// A racer won over the slow connect.
    RacerWon,
}

impl Race {
    /// The JSON value (`None` is null).
    pub(crate) fn word(self) -> Option<&'static str> {
        match self {
            Race::None => None,
            Race::FirstWon => Some("first_won"),
            Race::RacerWon => Some("racer_won"),
        }
    }
}

/// The channel a connection reached (or last tried).
#[derive(Clone)]
pub(crate) struct Server {
    pub(crate) channel: Arc<Channel>,
    /// Its group (`None` when a reload removed it meanwhile).
    pub(crate) group: Option<Arc<Group>>,
    pub(crate) group_index: usize,
    /// The address connected to; `None` when the connect failed.
    pub(crate) addr: Option<SocketAddr>,
}

/// How `route:` decided for a connection (JSON only; the `tcplog` layout
/// stays HAProxy's).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct RouteNote {
    /// The key as looked up (`None`: the client gave none).
    pub(crate) key: Option<Box<str>>,
    /// Where the decision came from (`route::Source::word`).
    pub(crate) source: &'static str,
    /// The group the client started from, or `reject`.
    pub(crate) target: Box<str>,
}

/// One connection, as logged. Built by the connection's task, formatted by
/// the writer thread.
#[derive(Clone)]
pub(crate) struct Record {
    /// When the connection was accepted.
    pub(crate) accepted: SystemTime,
    /// The client's address as the listener knows it.
    pub(crate) client: SocketAddr,
    /// `None`: `<NOSRV>`.
    pub(crate) server: Option<Server>,
    /// `Tw`: ms held by `--spin` or the operator's `spin on`.
    pub(crate) wait_ms: u64,
    /// `Tc`: ms from the end of the hold to the backend connection, every
    /// failover included; `None` (`-1`) when no connection was made.
    pub(crate) connect_ms: Option<u64>,
    /// `Tt`: ms from accept to close.
    pub(crate) total_ms: u64,
    /// ms from the backend connection to its first byte (JSON only).
    pub(crate) first_byte_ms: Option<u64>,
    /// `%B`: bytes from the backend to the client.
    pub(crate) bytes_read: u64,
    /// `%U`: bytes from the client to the backend (JSON only).
    pub(crate) bytes_uploaded: u64,
    pub(crate) termination: Termination,
    /// `actconn`: connections under `--max-conns` in the process.
    pub(crate) actconn: u64,
    /// `feconn`: the listener's connections in the relay.
    pub(crate) feconn: u64,
    /// `beconn`: those plus the clients held.
    pub(crate) beconn: u64,
    /// `srv_conn`: the channel's connections.
    pub(crate) srv_conn: u64,
    /// Connect attempts that failed before the last one.
    pub(crate) retries: u32,
    /// `bq`: clients held on the listener.
    pub(crate) backend_queue: u64,
    pub(crate) race: Race,
    /// How `route:` decided (`None` on a listener without it).
    pub(crate) route: Option<Box<RouteNote>>,
}

/// One listener's connection log: its name, its format and the writer of
/// its target (shared by every listener with the same target).
#[derive(Debug, Clone)]
pub(crate) struct Log {
    line: Arc<LineFormat>,
    writer: Arc<writer::Handle>,
}

/// What a writer needs besides the record to make the line.
#[derive(Debug)]
pub(crate) struct LineFormat {
    pub(crate) listener: String,
    pub(crate) format: ConnLogFormat,
}

impl Log {
    /// The connection log of listener `name`, or `None` (with a warning)
    /// when its writer thread cannot start.
    pub(crate) fn open(name: &str, cfg: &ConnLogConfig) -> Option<Log> {
        let writer = match writer_for(&cfg.target) {
            Ok(w) => w,
            Err(e) => {
                tracing::warn!(listener = %name, "connection log disabled: cannot start its writer: {e}");
                return None;
            }
        };
        Some(Log {
            line: Arc::new(LineFormat {
                listener: name.to_string(),
                format: cfg.format,
            }),
            writer,
        })
    }

    /// Queue a record; a full queue drops it (counted), never waits.
    pub(crate) fn send(&self, rec: Record) {
        match self
            .writer
            .tx
            .try_send(writer::Msg::Line(Arc::clone(&self.line), Box::new(rec)))
        {
            Ok(()) => {}
            Err(TrySendError::Full(_) | TrySendError::Disconnected(_)) => count_dropped(1),
        }
    }
}

/// The running writers, one per target (dead entries pruned on lookup).
static WRITERS: Mutex<Vec<(ConnLogTarget, Weak<writer::Handle>)>> = Mutex::new(Vec::new());

fn writers() -> std::sync::MutexGuard<'static, Vec<(ConnLogTarget, Weak<writer::Handle>)>> {
    WRITERS.lock().unwrap_or_else(|p| p.into_inner())
}

fn writer_for(target: &ConnLogTarget) -> std::io::Result<Arc<writer::Handle>> {
    let mut all = writers();
    all.retain(|(_, w)| w.strong_count() > 0);
    if let Some(w) = all
        .iter()
        .find(|(t, _)| t == target)
        .and_then(|(_, w)| w.upgrade())
    {
        return Ok(w);
    }
    let w = Arc::new(writer::spawn(target.clone())?);
    all.push((target.clone(), Arc::downgrade(&w)));
    Ok(w)
}

fn live_writers() -> Vec<Arc<writer::Handle>> {
    writers().iter().filter_map(|(_, w)| w.upgrade()).collect()
}

/// SIGUSR1: every file target is closed and opened again by its path
/// before its next line (after logrotate moved it).
pub(crate) fn reopen() {
    writer::request_reopen();
    for w in live_writers() {
        // A full queue needs no wake-up: the writer is busy and looks at
        // the request before its next write.
        let _ = w.tx.try_send(writer::Msg::Wake);
    }
}

/// At exit: wait up to `limit` for every writer to write what it holds.
pub(crate) fn flush(limit: Duration) {
    let deadline = std::time::Instant::now() + limit;
    for w in live_writers() {
        w.flush_until(deadline);
    }
}

/// Check at start (before daemonizing) that each file target can be
/// opened for appending, so a typo is one error line, not a silent log.
/// A FIFO without a reader is accepted (its writer waits for one).
pub(crate) fn preflight(cfgs: impl IntoIterator<Item = ConnLogConfig>) -> Result<(), String> {
    for c in cfgs {
        if let ConnLogTarget::File(p) = &c.target {
            writer::check_file(p)
                .map_err(|e| format!("cannot open connection log {}: {e}", p.display()))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
