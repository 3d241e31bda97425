//! The route file: `key target` lines (`#` comments, blank lines), read at
//! start and read again when it changes. A bad line is logged (one line)
//! and skipped; a file that cannot be read keeps the table it had.
//!
//! Changes are noticed on use: at most once per [`CHECK_EVERY`] a
//! connection that consults the table looks at the file's size, mtime and
//! inode; a change is read on a blocking thread while the old table
//! serves. No task runs for an idle listener.

use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::Relaxed};
use std::time::{Duration, Instant};

use arc_swap::ArcSwap;
use tracing::{info, warn};

use super::table::Table;
use crate::config::route::{RouteBy, parse_key, parse_target};

/// How often the file is looked at for a change (at most; only when used).
pub(crate) const CHECK_EVERY: Duration = Duration::from_secs(1);
/// A larger file is not read (the old table stays).
pub(crate) const MAX_FILE_BYTES: u64 = 64 << 20;
/// At most this many bad lines are logged per read.
const MAX_BAD_LINES_LOGGED: usize = 20;

/// Size, mtime and inode: a change to any is a new file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stamp {
    len: u64,
    mtime_ns: i128,
    ino: u64,
}

fn stamp(path: &Path) -> std::io::Result<Stamp> {
    let m = std::fs::metadata(path)?;
    Ok(Stamp {
        len: m.len(),
        mtime_ns: i128::from(m.mtime()) * 1_000_000_000 + i128::from(m.mtime_nsec()),
        ino: m.ino(),
    })
}

pub(crate) struct RouteFile {
    pub(crate) path: PathBuf,
    by: RouteBy,
    groups: Arc<[String]>,
    table: ArcSwap<Table>,
    stamp: Mutex<Option<Stamp>>,
    /// Milliseconds since `born` of the next look at the file.
    next_check: AtomicU64,
    born: Instant,
    reading: Arc<AtomicBool>,
    /// Reads that gave a new table.
    pub(crate) loads: AtomicU64,
}

impl RouteFile {
    /// Read the file now (at start or reload): bad lines are logged and
    /// skipped; an unreadable file (checked when the config was loaded) is
    /// logged and gives an empty table until it can be read.
    pub(crate) fn open(
        path: PathBuf,
        by: RouteBy,
        groups: Arc<[String]>,
        listener: &str,
    ) -> RouteFile {
        let st = stamp(&path).ok();
        let table = read(&path, by, &groups, listener).unwrap_or_else(|e| {
            warn!(listener = %listener, "{e}; no keys from it until it can be read");
            Table::default()
        });
        RouteFile {
            path,
            by,
            groups,
            table: ArcSwap::from_pointee(table),
            stamp: Mutex::new(st),
            next_check: AtomicU64::new(CHECK_EVERY.as_millis() as u64),
            born: Instant::now(),
            reading: Arc::new(AtomicBool::new(false)),
            loads: AtomicU64::new(1),
        }
    }

    /// Keys in the current table (no look at the file).
    pub(crate) fn keys(&self) -> usize {
        self.table.load().len()
    }

    /// The current table; looks for a change when one is due.
    pub(crate) fn table(self: &Arc<Self>, listener: &str) -> arc_swap::Guard<Arc<Table>> {
        let now = self.born.elapsed().as_millis() as u64;
        if now >= self.next_check.load(Relaxed) {
            self.next_check
                .store(now + CHECK_EVERY.as_millis() as u64, Relaxed);
            self.check(listener);
        }
        self.table.load()
    }

    /// Start a read when the file changed (and none is running).
    fn check(self: &Arc<Self>, listener: &str) {
        let st = stamp(&self.path).ok();
        let changed = {
            let Ok(mut cur) = self.stamp.lock() else {
                return;
            };
            if *cur == st {
                false
            } else {
                *cur = st;
                true
            }
        };
        if !changed {
            return;
        }
        if st.is_none() {
            warn!(listener = %listener, "route file {} is gone; keeping its last table", self.path.display());
            return;
        }
        if self.reading.swap(true, Relaxed) {
            // The running read sees the newest content or the next check
            // will: forget the stamp so it looks again.
            if let Ok(mut cur) = self.stamp.lock() {
                *cur = None;
            }
            return;
        }
        let me = Arc::clone(self);
        let listener = listener.to_string();
        let read_now = move || {
            match read(&me.path, me.by, &me.groups, &listener) {
                Ok(t) => {
                    info!(listener = %listener, "route file {} read again: {} keys", me.path.display(), t.len());
                    me.table.store(Arc::new(t));
                    me.loads.fetch_add(1, Relaxed);
                }
                Err(e) => warn!(listener = %listener, "{e}; keeping the last table"),
            }
            me.reading.store(false, Relaxed);
        };
        match tokio::runtime::Handle::try_current() {
            Ok(h) => {
                h.spawn_blocking(read_now);
            }
            Err(_) => read_now(),
        }
    }
}

/// Read and parse the file: bad lines are logged and skipped.
fn read(path: &Path, by: RouteBy, groups: &[String], listener: &str) -> Result<Table, String> {
    let err = |why: String| format!("route file {}: {why}", path.display());
    let bytes = crate::sys::file::read_capped(path, MAX_FILE_BYTES)
        .map_err(|e| err(e.to_string()))?
        .ok_or_else(|| err(format!("larger than {MAX_FILE_BYTES} bytes")))?;
    let text = String::from_utf8(bytes).map_err(|_| err("not UTF-8".into()))?;
    let (table, bad) = parse(&text, by, groups);
    for (line, why) in bad.iter().take(MAX_BAD_LINES_LOGGED) {
        warn!(listener = %listener, "route file {} line {line}: {why}; line skipped", path.display());
    }
    if bad.len() > MAX_BAD_LINES_LOGGED {
        warn!(listener = %listener, "route file {}: {} more bad lines skipped", path.display(), bad.len() - MAX_BAD_LINES_LOGGED);
    }
    Ok(table)
}

/// The table of `text` and its bad lines (number, why).
pub(crate) fn parse(text: &str, by: RouteBy, groups: &[String]) -> (Table, Vec<(usize, String)>) {
    let mut bad = Vec::new();
    let mut rows = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or_default().trim();
        if line.is_empty() {
            continue;
        }
        let mut words = line.split_whitespace();
        let row = match (words.next(), words.next(), words.next()) {
            (Some(k), Some(t), None) => {
                parse_key(by, k).and_then(|k| Ok((k, parse_target(t, groups)?)))
            }
            _ => Err("not \"key target\"".to_string()),
        };
        match row {
            Ok(r) => rows.push(r),
            Err(e) => bad.push((i + 1, e)),
        }
    }
    (Table::new(rows), bad)
}

#[cfg(test)]
mod tests;
