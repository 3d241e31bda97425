//! The thread behind one target. It takes what the queue holds, formats
//! it into one buffer and writes it at once (a file or stderr: one
//! `write`; syslog: one datagram per line), then pauses briefly so that
//! under load it wakes once per batch, not once per line.
//!
//! A file is opened by its path, appended to, and opened again when
//! SIGUSR1 asks ([`request_reopen`]) or when the path no longer names the
//! open file (logrotate moved it; looked at most once per
//! [`CHECK_EVERY`]). A sink that blocks blocks only this thread: the queue
//! fills and further lines are dropped and counted.

use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::mpsc::{Receiver, RecvTimeoutError, SyncSender, TryRecvError, sync_channel};
use std::time::{Duration, Instant};

use tracing::warn;

use super::format::{Stamp, json_line, tcplog_line};
use super::{LineFormat, Record, count_dropped};
use crate::config::{ConnLogFormat, ConnLogTarget};
use crate::logging::Every;

/// Lines a writer's queue holds; more are dropped.
pub(super) const QUEUE: usize = 4096;
/// Lines formatted into one write at most.
const BATCH: usize = 1024;
/// After a batch: let the next one gather (one wake-up per pause under
/// load; a line waits at most this long more).
const PAUSE: Duration = Duration::from_millis(20);
/// How often an idle writer, or a busy one, looks whether its file moved.
pub(super) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// syslog facility local0, severity info (what HAProxy's `log ... local0`
/// sends a connection's line as).
const SYSLOG_PRI: u8 = 16 * 8 + 6;

/// Bumped by SIGUSR1: every writer opens its file again.
static REOPEN: AtomicU64 = AtomicU64::new(0);

pub(super) fn request_reopen() {
    REOPEN.fetch_add(1, Relaxed);
}

pub(super) enum Msg {
    Line(Arc<LineFormat>, Box<Record>),
    /// Look at the reopen request now.
    Wake,
    /// Write everything queued before this, then answer.
    Flush(SyncSender<()>),
}

/// The sending side of a writer; the thread ends when the last is dropped.
#[derive(Debug)]
pub(super) struct Handle {
    pub(crate) tx: SyncSender<Msg>,
}

impl Handle {
    /// Ask the writer to write what it holds; wait for it until `deadline`.
    pub(super) fn flush_until(&self, deadline: Instant) {
        let (ack, done) = sync_channel(1);
        let mut msg = Msg::Flush(ack);
        loop {
            match self.tx.try_send(msg) {
                Ok(()) => break,
                Err(std::sync::mpsc::TrySendError::Full(m)) if Instant::now() < deadline => {
                    msg = m;
                    std::thread::sleep(Duration::from_millis(5));
                }
                Err(_) => return,
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        let _ = done.recv_timeout(left);
    }
}

pub(super) fn spawn(target: ConnLogTarget) -> io::Result<Handle> {
    let (tx, rx) = sync_channel(QUEUE);
    std::thread::Builder::new()
        .name("connection-log".into())
        .spawn(move || run(Sink::new(target), &rx))?;
    Ok(Handle { tx })
}

/// An existing `p` opens as the writer would open it (without waiting
/// for a FIFO's reader); a missing one needs its directory. Nothing is
/// created here: the writer creates the file, as the user it runs as
/// (after `--user`).
pub(super) fn check_file(p: &Path) -> io::Result<()> {
    if std::fs::symlink_metadata(p).is_err() {
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        return match std::fs::metadata(dir) {
            Ok(m) if m.is_dir() => Ok(()),
            Ok(_) => Err(io::Error::other(format!(
                "{} is not a directory",
                dir.display()
            ))),
            Err(e) => Err(e),
        };
    }
    match open_append(p, true) {
        Ok(_) => Ok(()),
        Err(e) if e.raw_os_error() == Some(libc::ENXIO) => Ok(()),
        Err(e) => Err(e),
    }
}

fn open_append(p: &Path, nonblock: bool) -> io::Result<File> {
    let mut o = OpenOptions::new();
    o.append(true).create(true).mode(0o640);
    if nonblock {
        o.custom_flags(libc::O_NONBLOCK);
    }
    o.open(p)
}

fn run(mut sink: Sink, rx: &Receiver<Msg>) {
    let mut buf = String::with_capacity(64 * 1024);
    let mut seen = REOPEN.load(Relaxed);
    let mut checked = Instant::now();
    let mut acks = Vec::new();
    loop {
        let first = match rx.recv_timeout(CHECK_EVERY) {
            Ok(m) => Some(m),
            Err(RecvTimeoutError::Timeout) => None,
            Err(RecvTimeoutError::Disconnected) => break,
        };
        buf.clear();
        let mut lines = 0u64;
        let mut take = |m: Msg, buf: &mut String, lines: &mut u64| match m {
            Msg::Line(f, r) => {
                match f.format {
                    ConnLogFormat::Tcplog => tcplog_line(buf, &f.listener, &r),
                    ConnLogFormat::Json => json_line(buf, &f.listener, &r),
                }
                buf.push('\n');
                *lines += 1;
            }
            Msg::Wake => {}
            Msg::Flush(a) => acks.push(a),
        };
        let mut closed = false;
        if let Some(m) = first {
            take(m, &mut buf, &mut lines);
            while lines < BATCH as u64 {
                match rx.try_recv() {
                    Ok(m) => take(m, &mut buf, &mut lines),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
        }
        let now = REOPEN.load(Relaxed);
        if now != seen {
            seen = now;
            sink.close();
        } else if checked.elapsed() >= CHECK_EVERY {
            checked = Instant::now();
            sink.close_if_moved();
        }
        if lines > 0 {
            if let Err((e, lost)) = sink.write(&buf, lines) {
                count_dropped(lost);
                sink.warn(&e);
            }
        }
        for a in acks.drain(..) {
            let _ = a.try_send(());
        }
        if closed {
            break;
        }
        if lines > 0 {
            std::thread::sleep(PAUSE);
        }
    }
}

/// Where the lines go.
struct Sink {
    target: ConnLogTarget,
    file: Option<File>,
    syslog: Option<UnixDatagram>,
    /// `balance[PID]: `, after the syslog priority and date.
    tag: String,
    warned: Every,
}

impl Sink {
    fn new(target: ConnLogTarget) -> Sink {
        Sink {
            target,
            file: None,
            syslog: None,
            tag: format!("balance[{}]: ", std::process::id()),
            warned: Every::new(),
        }
    }

    fn close(&mut self) {
        self.file = None;
        self.syslog = None;
    }

    /// Close the file when its path names another file or none (moved by
    /// logrotate); the next write opens the path again.
    fn close_if_moved(&mut self) {
        let (ConnLogTarget::File(p), Some(f)) = (&self.target, &self.file) else {
            return;
        };
        let same = match (std::fs::metadata(p), f.metadata()) {
            (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
            _ => false,
        };
        if !same {
            self.file = None;
        }
    }

    /// Write `lines` lines; on failure, the error and how many were lost.
    fn write(&mut self, buf: &str, lines: u64) -> Result<(), (io::Error, u64)> {
        let all = |e| (e, lines);
        match &self.target {
            ConnLogTarget::Stderr => io::stderr().lock().write_all(buf.as_bytes()).map_err(all),
            ConnLogTarget::File(p) => {
                if self.file.is_none() {
                    self.file = Some(open_append(p, false).map_err(all)?);
                }
                let Some(f) = self.file.as_mut() else {
                    return Err(all(io::Error::other("file not open")));
                };
                let r = f.write_all(buf.as_bytes());
                if r.is_err() {
                    self.file = None;
                }
                r.map_err(all)
            }
            ConnLogTarget::Syslog(p) => {
                let p: PathBuf = p.clone();
                self.send_syslog(&p, buf)
                    .map_err(|(e, n)| (e, n.min(lines)))
            }
        }
    }

    /// One datagram per line, RFC 3164 as HAProxy sends it locally:
    /// `<134>Dec  7 02:00:31 balance[PID]: line`.
    fn send_syslog(&mut self, path: &Path, buf: &str) -> Result<(), (io::Error, u64)> {
        let all = |e| (e, u64::MAX);
        if self.syslog.is_none() {
            let s = UnixDatagram::unbound().map_err(all)?;
            s.connect(path).map_err(all)?;
            self.syslog = Some(s);
        }
        let Some(s) = &self.syslog else {
            return Err(all(io::Error::other("syslog not open")));
        };
        let st = Stamp::of(std::time::SystemTime::now());
        let head = format!(
            "<{SYSLOG_PRI}>{} {:2} {:02}:{:02}:{:02} {}",
            st.month_name(),
            st.t.day,
            st.t.hour,
            st.t.minute,
            st.t.second,
            self.tag
        );
        let mut dgram = String::with_capacity(512);
        let mut failed = 0u64;
        let mut last = None;
        for line in buf.lines() {
            dgram.clear();
            dgram.push_str(&head);
            dgram.push_str(line);
            if let Err(e) = s.send(dgram.as_bytes()) {
                failed += 1;
                last = Some(e);
            }
        }
        match last {
            None => Ok(()),
            Some(e) => {
                // Connected again for the next batch (syslogd restarted).
                self.syslog = None;
                Err((e, failed))
            }
        }
    }

    fn warn(&self, e: &io::Error) {
        if let Some(more) = self.warned.due() {
            let t = match &self.target {
                ConnLogTarget::File(p) | ConnLogTarget::Syslog(p) => p.display().to_string(),
                ConnLogTarget::Stderr => "stderr".into(),
            };
            warn!("connection log {t}: {e}; lines dropped ({more} similar errors suppressed)");
        }
    }
}
