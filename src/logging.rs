//! Logging setup: text or JSON to stderr in the foreground; syslog (or a
//! file) when daemonized. `-d` turns on debug; `BALANCE_LOG` overrides the
//! filter (tracing's EnvFilter syntax).

use std::io::{self, Write};
use std::path::Path;

use tracing::{Level, Metadata};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::fmt::MakeWriter;

use crate::config::{Global, LogFormat};

/// Where log lines go.
pub enum Sink<'a> {
    Stderr,
    Syslog,
    File(&'a Path),
}

pub fn init(g: &Global, sink: Sink<'_>) -> io::Result<()> {
    let default = if g.debug { "debug" } else { "info" };
    let filter = EnvFilter::try_from_env("BALANCE_LOG").unwrap_or_else(|_| EnvFilter::new(default));
    let ansi = matches!(sink, Sink::Stderr) && std::io::IsTerminal::is_terminal(&io::stderr());
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_target(false)
        .with_ansi(ansi);
    let json = g.log_format == LogFormat::Json;
    // try_init: a second init (tests) is not an error worth dying for.
    let _ = match sink {
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

/// Makes one [`SyslogLine`] per event, at the event's level.
struct SyslogMaker;

impl<'a> MakeWriter<'a> for SyslogMaker {
    type Writer = SyslogLine;
    fn make_writer(&'a self) -> SyslogLine {
        SyslogLine::new(libc::LOG_INFO)
    }
    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> SyslogLine {
        let prio = match *meta.level() {
            Level::ERROR => libc::LOG_ERR,
            Level::WARN => libc::LOG_WARNING,
            Level::INFO => libc::LOG_INFO,
            _ => libc::LOG_DEBUG,
        };
        SyslogLine::new(prio)
    }
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
