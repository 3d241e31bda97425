//! Logging setup: text or JSON to stderr in the foreground; syslog (or a
//! file) when daemonized. `-d` turns on debug; `BALANCE_LOG` overrides the
//! filter (tracing's EnvFilter syntax). When stderr is the journal's stream
//! (`$JOURNAL_STREAM`), each line starts with its syslog priority (`<3>`
//! error ... `<7>` debug), so `journalctl -p err` finds the errors.

use std::io::{self, Write};
use std::path::Path;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Global, LogFormat};

/// Where log lines go.
pub(crate) enum Sink<'a> {
    Stderr,
    Syslog,
    File(&'a Path),
}

pub(crate) fn init(g: &Global, sink: Sink<'_>) -> io::Result<()> {
    let default = if g.debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("BALANCE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = matches!(sink, Sink::Stderr) && std::io::IsTerminal::is_terminal(&io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let json = g.log_format == LogFormat::Json;
    let journal = matches!(sink, Sink::Stderr) && crate::sys::notify::stderr_is_journal();
    // try_init: a second init (tests) is not an error worth dying for.
    let _ = match sink {
        Sink::Stderr if journal && json => builder.json().with_writer(JournalMaker).try_init(),
        Sink::Stderr if journal => builder.with_writer(JournalMaker).try_init(),
        Sink::Stderr if json => builder.json().with_writer(io::stderr).try_init(),
        Sink::Stderr => builder.with_writer(io::stderr).try_init(),
        Sink::File(p) => {
            let f = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(p)?;
            let w = std::sync::Mutex::new(f);
            if json {
                builder.json().with_ansi(false).with_writer(w).try_init()
            } else {
                builder.with_ansi(false).with_writer(w).try_init()
            }
        }
        Sink::Syslog => {
            crate::sys::open_syslog();
            if json {
                builder
                    .json()
                    .with_ansi(false)
                    .without_time()
                    .with_writer(SyslogMaker)
                    .try_init()
            } else {
                builder
                    .with_ansi(false)
                    .without_time()
                    .with_writer(SyslogMaker)
                    .try_init()
            }
        }
    };
    Ok(())
}

/// The syslog priority of a tracing level.
fn priority(level: Level) -> libc::c_int {
    match level {
        Level::ERROR => libc::LOG_ERR,
        Level::WARN => libc::LOG_WARNING,
        Level::INFO => libc::LOG_INFO,
        _ => libc::LOG_DEBUG,
    }
}

/// Makes one [`SyslogLine`] per event, at the event's level.
struct SyslogMaker;

impl<'a> MakeWriter<'a> for SyslogMaker {
    type Writer = SyslogLine;
    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine::new(libc::LOG_INFO)
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        SyslogLine::new(priority(*meta.level()))
    }
}

/// Makes one [`JournalLine`] per event, at the event's level.
struct JournalMaker;

impl<'a> MakeWriter<'a> for JournalMaker {
    type Writer = JournalLine;
    fn make_writer(&'a self) -> JournalLine {
        JournalLine::new(libc::LOG_INFO)
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> JournalLine {
        JournalLine::new(priority(*meta.level()))
    }
}

/// Buffers one formatted event and writes it to stderr when dropped, each
/// line prefixed with `<PRIORITY>` (sd-daemon(3)'s stderr convention).
struct JournalLine {
    prio: libc::c_int,
    buf: Vec<u8>,
}

impl JournalLine {
    fn new(prio: libc::c_int) -> Self {
        JournalLine {
            prio,
            buf: Vec::new(),
        }
    }
}

impl Write for JournalLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for JournalLine {
    fn drop(&mut self) {
        let out = journal_lines(self.prio, &self.buf);
        if !out.is_empty() {
            let _ = io::stderr().lock().write_all(&out);
        }
    }
}

/// `text`'s lines, each prefixed with `<prio>`.
fn journal_lines(prio: libc::c_int, text: &[u8]) -> Vec<u8> {
    let prefix = format!("<{prio}>");
    let mut out = Vec::with_capacity(text.len() + prefix.len());
    for line in text.split_inclusive(|&b| b == b'\n') {
        out.extend_from_slice(prefix.as_bytes());
        out.extend_from_slice(line);
    }
    out
}

/// Buffers one formatted event and sends it to syslog when dropped.
struct SyslogLine {
    prio: libc::c_int,
    buf: Vec<u8>,
}

impl SyslogLine {
    fn new(prio: libc::c_int) -> Self {
        SyslogLine {
            prio,
            buf: Vec::new(),
        }
    }
}

impl Write for SyslogLine {
    fn write(&mut self, b: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(b);
        Ok(b.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine {
    fn drop(&mut self) {
        let text = String::from_utf8_lossy(&self.buf);
        let text = text.trim_end();
        if !text.is_empty() {
            crate::sys::syslog(self.prio, text);
        }
    }
}

/// At most one log line a second from one place, so a burst (clients at
/// the fd limit, clients refused while nothing can serve) does not flood
/// the log: [`Every::due`] says whether to log now, and how many lines
/// were held back since the last one. Two atomics; nothing else is kept.
#[derive(Debug, Default)]
pub(crate) struct Every {
    /// Milliseconds since [`epoch`] of the last line logged, plus one
    /// period (so the very first is logged).
    last_ms: std::sync::atomic::AtomicU64,
    suppressed: std::sync::atomic::AtomicU64,
}

/// The period of [`Every`].
const EVERY_MS: u64 = 1000;

/// The process's clock base for [`Every`].
fn epoch() -> std::time::Instant {
    static BASE: std::sync::OnceLock<std::time::Instant> = std::sync::OnceLock::new();
    *BASE.get_or_init(std::time::Instant::now)
}

impl Every {
    pub(crate) const fn new() -> Every {
        Every {
            last_ms: std::sync::atomic::AtomicU64::new(0),
            suppressed: std::sync::atomic::AtomicU64::new(0),
        }
    }

    /// `Some(held back since the last line)` when a line is due now;
    /// otherwise `None`, and this one is counted as held back.
    pub(crate) fn due(&self) -> Option<u64> {
        use std::sync::atomic::Ordering::Relaxed;
        let now = epoch().elapsed().as_millis() as u64 + EVERY_MS;
        let last = self.last_ms.load(Relaxed);
        if now.saturating_sub(last) >= EVERY_MS
            && self
                .last_ms
                .compare_exchange(last, now, Relaxed, Relaxed)
                .is_ok()
        {
            Some(self.suppressed.swap(0, Relaxed))
        } else {
            self.suppressed.fetch_add(1, Relaxed);
            None
        }
    }
}

#[cfg(test)]
mod tests;
