//! The directory lookup: one key → a target, a "not found", or a failure;
//! answers cached for `ttl` (`negative_ttl` for "not found"), served
//! stale up to `stale` longer while the directory fails or is slow, and at
//! most one lookup in flight per key however many clients wait for it
//! (single flight: the lookup runs in its own task, bounded by `timeout`,
//! so a client that leaves cancels nothing).
//!
//! The cache is a map under a short mutex, never held across an await.

use std::collections::HashMap;
use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use hyper::{Request, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::io::AsyncReadExt;
use tokio::net::TcpStream;
use tokio::sync::watch;
use tracing::{debug, warn};

use crate::config::route::{
    Directory, KEY_PLACEHOLDER, LookupConfig, MAX_KEY, RouteTarget, parse_target,
};
use crate::sys::reaper;

/// The largest answer read (a group name fits many times over).
pub(crate) const MAX_ANSWER_BYTES: usize = 1024;
/// The most keys cached; past it, expired answers are dropped, then all.
pub(crate) const MAX_ENTRIES: usize = 100_000;
/// A program's exit status meaning "not found".
pub(crate) const EXIT_NOT_FOUND: i32 = 1;

/// What the directory said about a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Answer {
    Target(RouteTarget),
    NotFound,
}

/// How a key was resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Resolved {
    /// From the cache, answered `age` ago.
    Cached(Answer, Duration),
    /// Looked up now (by this client's flight or one it waited for).
    Looked(Answer),
    /// The lookup failed (`why`); a cached answer `age` old served.
    Stale(Answer, Duration, String),
    /// The lookup failed and nothing cached may serve.
    Failed(String),
}

#[derive(Debug, Default)]
pub(crate) struct LookupStats {
    /// Lookups made (flights, not waiting clients).
    pub(crate) lookups: AtomicU64,
    pub(crate) errors: AtomicU64,
    pub(crate) stale: AtomicU64,
    /// Clients waiting for a lookup now (a gauge).
    pub(crate) waiting: AtomicU64,
}

/// One client counted in [`LookupStats::waiting`] while it lives (a
/// client that leaves drops it).
struct Waiting<'a>(&'a AtomicU64);

impl<'a> Waiting<'a> {
    fn new(n: &'a AtomicU64) -> Waiting<'a> {
        n.fetch_add(1, Relaxed);
        Waiting(n)
    }
}

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Relaxed);
    }
}

type Flight = watch::Receiver<Option<Result<Answer, String>>>;

#[derive(Default)]
struct Slot {
    cached: Option<(Answer, Instant)>,
    flight: Option<Flight>,
}

pub(crate) struct Lookup {
    cfg: LookupConfig,
    groups: Arc<[String]>,
    listener: String,
    slots: Mutex<HashMap<Box<str>, Slot>>,
    pub(crate) stats: LookupStats,
}

/// Whether `key` may go into a URL path or an argument as is: letters,
/// digits, `.`, `-`, `_`, `:` (IPv6), not starting with `-`.
pub(crate) fn safe_key(key: &str) -> bool {
    !key.is_empty()
        && key.len() <= MAX_KEY
        && !key.starts_with('-')
        && key
            .bytes()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'.' | b'-' | b'_' | b':'))
}

impl Lookup {
    pub(crate) fn new(cfg: LookupConfig, groups: Arc<[String]>, listener: &str) -> Lookup {
        Lookup {
            cfg,
            groups,
            listener: listener.to_string(),
            slots: Mutex::new(HashMap::new()),
            stats: LookupStats::default(),
        }
    }

    fn fresh(&self, a: Answer, age: Duration) -> bool {
        age < match a {
            Answer::Target(_) => self.cfg.ttl,
            Answer::NotFound => self.cfg.negative_ttl,
        }
    }

    /// Resolve `key`: the cache, or a lookup (joining one in flight).
    pub(crate) async fn resolve(self: &Arc<Self>, key: &str) -> Resolved {
        if !safe_key(key) {
            return Resolved::Failed(format!(
                "key {} is not looked up",
                crate::config::quote(key)
            ));
        }
        let mut rx = {
            let Ok(mut slots) = self.slots.lock() else {
                return Resolved::Failed("cache unavailable".into());
            };
            if let Some((a, at)) = slots.get(key).and_then(|s| s.cached) {
                let age = at.elapsed();
                if self.fresh(a, age) {
                    return Resolved::Cached(a, age);
                }
            }
            if slots.len() >= MAX_ENTRIES && !slots.contains_key(key) {
                self.evict(&mut slots);
            }
            let slot = slots.entry(key.into()).or_default();
            match &slot.flight {
                Some(rx) => rx.clone(),
                None => {
                    let (tx, rx) = watch::channel(None);
                    slot.flight = Some(rx.clone());
                    self.stats.lookups.fetch_add(1, Relaxed);
                    tokio::spawn(Arc::clone(self).fly(key.to_string(), tx));
                    rx
                }
            }
        };
        // The flight is bounded by `timeout` and always sends.
        let waiting = Waiting::new(&self.stats.waiting);
        let got = match rx.wait_for(Option::is_some).await {
            Ok(v) => v.clone(),
            Err(_) => None,
        };
        drop(waiting);
        match got {
            Some(Ok(a)) => Resolved::Looked(a),
            Some(Err(why)) => self.stale_or(key, why),
            None => self.stale_or(key, "the lookup ended without an answer".into()),
        }
    }

    /// After a failed lookup: a cached answer young enough, or the failure.
    fn stale_or(&self, key: &str, why: String) -> Resolved {
        let cached = self
            .slots
            .lock()
            .ok()
            .and_then(|s| s.get(key).and_then(|s| s.cached));
        match cached {
            Some((a, at)) if at.elapsed() < self.cfg.ttl + self.cfg.stale => {
                self.stats.stale.fetch_add(1, Relaxed);
                Resolved::Stale(a, at.elapsed(), why)
            }
            _ => Resolved::Failed(why),
        }
    }

    /// Make room: drop what can no longer serve, or everything not in
    /// flight when that is not enough.
    fn evict(&self, slots: &mut HashMap<Box<str>, Slot>) {
        let keep = self.cfg.ttl.max(self.cfg.negative_ttl) + self.cfg.stale;
        slots.retain(|_, s| {
            s.flight.is_some() || s.cached.is_some_and(|(_, at)| at.elapsed() < keep)
        });
        if slots.len() >= MAX_ENTRIES {
            slots.retain(|_, s| s.flight.is_some());
        }
    }

    /// One lookup: ask, store the answer (a failure keeps the old one),
    /// tell the waiting clients.
    async fn fly(self: Arc<Self>, key: String, tx: watch::Sender<Option<Result<Answer, String>>>) {
        let t = self.cfg.timeout;
        let r = match tokio::time::timeout(t, self.ask(&key)).await {
            Ok(r) => r,
            Err(_) => Err(format!("no answer within {t:?}")),
        };
        match &r {
            Ok(a) => debug!(listener = %self.listener, key = %key, answer = ?a, "looked up"),
            Err(e) => {
                self.stats.errors.fetch_add(1, Relaxed);
                warn!(listener = %self.listener, key = %key, "route lookup failed: {e}");
            }
        }
        if let Ok(mut slots) = self.slots.lock() {
            if let Some(slot) = slots.get_mut(key.as_str()) {
                slot.flight = None;
                if let Ok(a) = &r {
                    slot.cached = Some((*a, Instant::now()));
                } else if slot.cached.is_none() {
                    slots.remove(key.as_str());
                }
            }
        }
        let _ = tx.send(Some(r));
    }

    async fn ask(&self, key: &str) -> Result<Answer, String> {
        let text = match &self.cfg.directory {
            Directory::Http { authority, path } => {
                http_get(authority, &path.replace(KEY_PLACEHOLDER, key)).await?
            }
            Directory::Argv(argv) => run(argv, key).await?,
        };
        match text {
            None => Ok(Answer::NotFound),
            Some(t) => parse_target(t.trim(), &self.groups)
                .map(Answer::Target)
                .map_err(|e| format!("the directory answered {e}")),
        }
    }
}

/// `GET path` from `authority`: Some(body) for 200, None for 404.
async fn http_get(authority: &str, path: &str) -> Result<Option<String>, String> {
    let tcp = TcpStream::connect(authority)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let _ = tcp.set_nodelay(true);
    let (mut send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tcp))
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    // Ends with the request (the socket closes when this task is dropped).
    let conn = tokio::spawn(conn);
    let _abort = AbortOnDrop(conn);
    let req = Request::get(path)
        .header(hyper::header::HOST, authority)
        .header(hyper::header::CONNECTION, "close")
        .body(Empty::<Bytes>::new())
        .map_err(|e| format!("bad request: {e}"))?;
    let resp = send
        .send_request(req)
        .await
        .map_err(|e| format!("{authority}: {e}"))?;
    let status = resp.status();
    if status == StatusCode::NOT_FOUND {
        return Ok(None);
    }
    if status != StatusCode::OK {
        return Err(format!("{authority}{path}: status {}", status.as_u16()));
    }
    let body = Limited::new(resp.into_body(), MAX_ANSWER_BYTES)
        .collect()
        .await
        .map_err(|e| format!("{authority}{path}: body: {e}"))?
        .to_bytes();
    String::from_utf8(body.to_vec())
        .map(Some)
        .map_err(|_| format!("{authority}{path}: the answer is not UTF-8"))
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Run the program with `{key}` replaced: exit 0 with the target on
/// stdout, exit 1 for "not found"; cleared environment, own process group
/// (killed with the lookup's timeout).
async fn run(argv: &[String], key: &str) -> Result<Option<String>, String> {
    let args: Vec<String> = argv
        .iter()
        .map(|a| a.replace(KEY_PLACEHOLDER, key))
        .collect();
    let Some((prog, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = reaper::isolated(prog, rest, Stdio::piped());
    let (mut child, tracked) =
        reaper::spawn(&mut cmd).map_err(|e| format!("cannot run {prog}: {e}"))?;
    let _kill = reaper::GroupKill(child.id());
    let _tracked = tracked;
    let mut out = Vec::new();
    if let Some(stdout) = child.stdout.take() {
        stdout
            .take(MAX_ANSWER_BYTES as u64)
            .read_to_end(&mut out)
            .await
            .map_err(|e| format!("{prog}: {e}"))?;
    }
    let status = child.wait().await.map_err(|e| format!("{prog}: {e}"))?;
    reaper::schedule_sweep();
    match (status.code(), status.signal()) {
        (Some(0), _) => String::from_utf8(out)
            .map(Some)
            .map_err(|_| format!("{prog}: the answer is not UTF-8")),
        (Some(EXIT_NOT_FOUND), _) => Ok(None),
        (Some(c), _) => Err(format!("{prog}: exit code {c}")),
        (_, Some(s)) => Err(format!("{prog}: killed by signal {s}")),
        _ => Err(format!("{prog}: ended abnormally")),
    }
}

#[cfg(test)]
mod tests;
