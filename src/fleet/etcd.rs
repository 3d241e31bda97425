//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/...` on the
//! client port, `http://` or `https://` with a CA and an optional client
//! certificate; etcd's user/password login, its token renewed when etcd
//! says it is no longer valid): ranges, puts, deletes, the few
//! transactions fleet mode needs, leases and prefix watches. Keys and
//! values are bytes (base64 on the wire). Every request touches keys
//! under the prefix it is given only, so a role granting readwrite on
//! the fleet's prefix is enough.
//!
//! Several endpoints: a request goes to the one that last answered and
//! moves on to the next when that one is unreachable, times out or says it
//! is unavailable. Every request has a timeout (per endpoint tried). A
//! watch's `next` waits for the next change, which never comes from a
//! member that hangs (stopped, starved) while the others serve: a
//! [`Liveness`] beside each watch proves it alive (the watch's own member
//! answers a quorum read in time, and the watch delivers the newest change
//! under its prefix) and fails when it is not, so the watch is abandoned
//! for another member. Replies are untrusted: anything malformed is an
//! [`EtcdError::Reply`].
//!
//! What is read is bounded: a value over [`MAX_VALUE`] is dropped as it
//! arrives (one pass over its bytes, never a copy or a parse) and reads
//! as empty, refused; a reply or a watch message holds at most
//! [`MAX_REPLY_BYTES`] and a range [`MAX_KEYS`] keys; a large reply is
//! decoded off the runtime's threads.
//!
//! Written and owned by fleet mode; nothing here holds state beyond the
//! endpoint list (given, or discovered once from DNS: [`srv`]), the sticky
//! index, idle connections, the TLS settings and login (replaced by a
//! reload) with the current token, and (process-wide) the count of
//! refused values and the last keys seen holding one.

mod http;
pub(crate) mod srv;
mod stream;
#[cfg(test)]
mod tests;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};

use http::{Endpoint, Via};
use stream::Stream;
use wire::{b64, prefix_end};

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    /// The key.
    pub key: Vec<u8>,
    /// The value (empty in a delete event).
    pub value: Vec<u8>,
    /// The revision that created the key.
    pub create_revision: i64,
    /// The revision that changed it last.
    pub mod_revision: i64,
    /// 0 = no lease.
    pub lease: i64,
}

/// One change seen by a watch. A delete's `Kv` carries the key and the
/// revision of the delete (`mod_revision`), no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    /// A key was created or changed.
    Put(Kv),
    /// A key was deleted.
    Delete(Kv),
}

/// Why an etcd call failed.
#[derive(Debug, thiserror::Error)]
pub enum EtcdError {
    /// An endpoint list or setting that cannot work (caught by `new`).
    #[error("{0}")]
    Config(String),
    /// No endpoint could be reached (the last one's error).
    #[error("etcd unreachable: {0}")]
    Unreachable(String),
    /// An endpoint answered with something that is not a valid reply.
    #[error("etcd: {0}")]
    Reply(String),
    /// etcd refused the request (gRPC code and message).
    #[error("etcd refused: {message} (code {code})")]
    Refused {
        /// The gRPC status code.
        code: i64,
        /// etcd's message.
        message: String,
    },
    /// No reply within the request timeout.
    #[error("etcd request timed out")]
    Timeout,
    /// A watch's start revision was compacted; the oldest revision kept.
    #[error("etcd: revision compacted (oldest kept {0})")]
    Compacted(i64),
    /// The watch stream ended (the endpoint went away or canceled it), or
    /// it was abandoned (its member stopped answering, it fell behind).
    #[error("etcd watch ended: {0}")]
    WatchEnded(String),
    /// More than this client reads at once (see [`MAX_VALUE`]).
    #[error("etcd: {0}")]
    TooLarge(String),
    /// A TLS handshake failed on a certificate (this client's or etcd's).
    #[error("etcd TLS: {0}")]
    Tls(String),
    /// etcd refused the login (wrong user or password, auth off).
    #[error("etcd login: {0}")]
    Login(String),
    /// The user lacks a permission etcd requires for a request.
    #[error("etcd: {0}")]
    Denied(String),
}

impl EtcdError {
    /// Whether another endpoint may do better.
    fn try_next(&self) -> bool {
        match self {
            EtcdError::Unreachable(_) | EtcdError::Timeout | EtcdError::Tls(_) => true,
            // gRPC Unavailable, DeadlineExceeded: no leader, member stopping.
            EtcdError::Refused { code, .. } => matches!(code, 4 | 14),
            _ => false,
        }
    }
}

/// The largest value read from etcd (decoded). Every value fleet mode
/// writes is far below; a larger one is refused: it reads as empty (which
/// no reader accepts), is counted ([`refused_values`]) and logged at most
/// every [`REFUSED_LOG_GAP`].
pub const MAX_VALUE: usize = 64 << 10;
/// The most keys one range reads (a service's whole prefix); more is an
/// error ([`EtcdError::TooLarge`]) rather than unbounded memory.
pub(crate) const MAX_KEYS: usize = 10_000;
const REFUSED_LOG_GAP: Duration = Duration::from_secs(10);

static REFUSED: AtomicU64 = AtomicU64::new(0);
/// When a refusal was last logged (unix ms).
static REFUSED_LOGGED: AtomicU64 = AtomicU64::new(0);

/// How many values over [`MAX_VALUE`] were refused since the start.
pub fn refused_values() -> u64 {
    REFUSED.load(Ordering::Relaxed)
}

/// The least time a login may take per endpoint: etcd checks the
/// password with bcrypt (`--bcrypt-cost`, 10 by default: tens of
/// milliseconds, far more on a busy member), and a login given up on
/// still costs etcd its bcrypt, so retrying it sooner only piles them up.
const LOGIN_TIMEOUT: Duration = Duration::from_secs(5);

/// How many request timeouts a read of one key whose value etcd is slow
/// to send may take (per endpoint).
const HUGE_WAIT: u32 = 3;

/// Keys seen holding a value over [`MAX_VALUE`], at their revision (the
/// latest [`OVERSIZE_KEPT`]): a read in parts does not read them again.
static OVERSIZE: std::sync::Mutex<Vec<(Vec<u8>, i64)>> = std::sync::Mutex::new(Vec::new());
const OVERSIZE_KEPT: usize = 64;

/// Remember that `key` holds a value over [`MAX_VALUE`] at `rev`.
fn oversize(key: &[u8], rev: i64) {
    if let Ok(mut v) = OVERSIZE.lock() {
        v.retain(|(k, _)| k != key);
        if v.len() >= OVERSIZE_KEPT {
            v.remove(0);
        }
        v.push((key.to_vec(), rev));
    }
}

/// Whether `kv` (a key alone) is known to hold a value over the bound.
fn is_oversize(kv: &Kv) -> bool {
    OVERSIZE
        .lock()
        .is_ok_and(|v| v.iter().any(|(k, r)| *k == kv.key && *r == kv.mod_revision))
}

/// Whether a key of `key..end` is known to hold a value over the bound.
fn oversize_within(key: &[u8], end: Option<&[u8]>) -> bool {
    OVERSIZE.lock().is_ok_and(|v| {
        v.iter().any(|(k, _)| match end {
            None => k == key,
            Some(end) => k.as_slice() >= key && (end == [0] || k.as_slice() < end),
        })
    })
}

/// Count a refused value (`size`: how large, as far as known); log it
/// unless one was logged within [`REFUSED_LOG_GAP`].
fn refused(key: &[u8], size: &str) {
    let n = REFUSED.fetch_add(1, Ordering::Relaxed) + 1;
    let now = super::now_ms();
    let last = REFUSED_LOGGED.load(Ordering::Relaxed);
    let gap = u64::try_from(REFUSED_LOG_GAP.as_millis()).unwrap_or(u64::MAX);
    if now.saturating_sub(last) >= gap
        && REFUSED_LOGGED
            .compare_exchange(last, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
    {
        tracing::warn!(key = %String::from_utf8_lossy(&key[..key.len().min(200)]),
            "fleet: refused an etcd value of {size} bytes (the most read is {MAX_VALUE}); {n} refused so far");
    }
}

/// A handle to an etcd cluster; cheap to clone, shared by tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    /// Set at once from a list, or on the first request from DNS
    /// (`discovery`); fixed from then on.
    endpoints: tokio::sync::OnceCell<Vec<Endpoint>>,
    /// The domain whose SRV records name the endpoints.
    discovery: Option<String>,
    timeout: Duration,
    /// The endpoint that answered last.
    current: AtomicUsize,
    /// TLS settings and login: set at start, replaced by a reload.
    access: std::sync::RwLock<Access>,
    /// etcd's token for the login, once obtained; dropped when etcd says
    /// it is no longer valid (expired, the auth store changed).
    token: tokio::sync::Mutex<Option<Arc<str>>>,
}

/// How a client reaches etcd besides its endpoints.
#[derive(Clone, Default)]
pub struct Access {
    /// For the `https://` endpoints: the CA and the client certificate.
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    /// etcd's authentication: user and password.
    pub(crate) login: Option<(String, String)>,
}

impl std::fmt::Debug for Access {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Access")
            .field("tls", &self.tls.is_some())
            .field("user", &self.login.as_ref().map(|l| &l.0))
            .finish()
    }
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self.eps_now().iter().map(|e| e.url.as_str()).collect();
        f.debug_struct("Client")
            .field("endpoints", &urls)
            .field("discovery_srv", &self.inner.discovery)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl Client {
    /// A client of `endpoints` (`http://host:port` each, at least one);
    /// `timeout` bounds each request to one endpoint. Connects lazily.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Client, EtcdError> {
        Client::with_access(endpoints, timeout, Access::default())
    }

    /// [`Client::new`] with TLS (needed by `https://` endpoints) and a
    /// login.
    pub fn with_access(
        endpoints: &[String],
        timeout: Duration,
        access: Access,
    ) -> Result<Client, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Config("no etcd endpoints".into()));
        }
        if timeout.is_zero() {
            return Err(EtcdError::Config(
                "etcd request timeout must be above 0".into(),
            ));
        }
        let endpoints = parse_endpoints(endpoints, &access)?;
        Client::build(
            tokio::sync::OnceCell::new_with(Some(endpoints)),
            None,
            timeout,
            access,
        )
    }

    /// A client of the endpoints `domain`'s SRV records name (see
    /// [`srv`]; `_etcd-client-ssl` with TLS), looked up at the first
    /// request and again at each later one until the lookup succeeds.
    pub(crate) fn with_discovery(
        domain: &str,
        timeout: Duration,
        access: Access,
    ) -> Result<Client, EtcdError> {
        if timeout.is_zero() {
            return Err(EtcdError::Config(
                "etcd request timeout must be above 0".into(),
            ));
        }
        Client::build(
            tokio::sync::OnceCell::new(),
            Some(domain.to_string()),
            timeout,
            access,
        )
    }

    fn build(
        endpoints: tokio::sync::OnceCell<Vec<Endpoint>>,
        discovery: Option<String>,
        timeout: Duration,
        access: Access,
    ) -> Result<Client, EtcdError> {
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                discovery,
                timeout,
                current: AtomicUsize::new(0),
                access: std::sync::RwLock::new(access),
                token: tokio::sync::Mutex::new(None),
            }),
        })
    }

    /// Replace the TLS settings and the login (a reload re-read their
    /// files): new connections use them; a new login is made at the next
    /// request. Established watches go on.
    pub(crate) fn set_access(&self, access: Access) {
        if let Ok(mut a) = self.inner.access.write() {
            *a = access;
        }
        for e in self.eps_now() {
            e.forget_idle();
        }
        // A login under way keeps its token (etcd refuses it if the
        // password changed meanwhile; it is renewed then).
        if let Ok(mut t) = self.inner.token.try_lock() {
            *t = None;
        }
    }

    fn access(&self) -> Access {
        self.inner
            .access
            .read()
            .map(|a| a.clone())
            .unwrap_or_default()
    }

    /// What a request carries now: the TLS settings and a token (logging
    /// in first when there is a login and no token yet).
    async fn via(&self) -> Result<Via, EtcdError> {
        let access = self.access();
        let token = match &access.login {
            None => None,
            Some(login) => {
                let mut t = self.inner.token.lock().await;
                match &*t {
                    Some(tok) => Some(Arc::clone(tok)),
                    None => {
                        let tok = self.authenticate(&access, login).await?;
                        *t = Some(Arc::clone(&tok));
                        Some(tok)
                    }
                }
            }
        };
        Ok(Via {
            tls: access.tls,
            token,
        })
    }

    /// Drop `stale` (etcd refused it) so the next [`Client::via`] logs in
    /// again.
    async fn drop_token(&self, stale: &Via) {
        let mut t = self.inner.token.lock().await;
        if let (Some(cur), Some(old)) = (&*t, &stale.token) {
            if Arc::ptr_eq(cur, old) {
                *t = None;
            }
        }
    }

    /// `/v3/auth/authenticate` on the endpoints in turn: the token.
    async fn authenticate(
        &self,
        access: &Access,
        (user, password): &(String, String),
    ) -> Result<Arc<str>, EtcdError> {
        let body = json!({"name": user, "password": password});
        let via = Via {
            tls: access.tls.clone(),
            token: None,
        };
        let timeout = self.inner.timeout.max(LOGIN_TIMEOUT);
        let r = self
            .each_endpoint_via(timeout, &via, |_, ep, via| {
                let body = &body;
                async move {
                    let (status, bytes) = ep.post("/v3/auth/authenticate", body, &via).await?;
                    check_status(status, bytes, &ep.url)
                }
            })
            .await;
        let bytes = match r {
            Ok(b) => b,
            Err(EtcdError::Refused { code, message }) if code == 3 || code == 9 => {
                return Err(EtcdError::Login(format!(
                    "user {}: {message} (check fleet.user and fleet.password_file; etcd's auth must be enabled)",
                    quoted(user)
                )));
            }
            Err(e) => return Err(e),
        };
        let r: wire::AuthReply = wire::parse(&bytes)?;
        if r.token.is_empty()
            || r.token.len() > 4096
            || !r.token.bytes().all(|b| b.is_ascii_graphic())
        {
            return Err(EtcdError::Reply(format!(
                "login of user {}: etcd gave no usable token (is auth enabled?)",
                quoted(user)
            )));
        }
        Ok(Arc::from(r.token.as_str()))
    }

    /// The endpoints known now.
    fn eps_now(&self) -> &[Endpoint] {
        self.inner.endpoints.get().map_or(&[], Vec::as_slice)
    }

    /// The endpoints, discovered first if need be.
    async fn eps(&self) -> Result<&[Endpoint], EtcdError> {
        let v = self
            .inner
            .endpoints
            .get_or_try_init(|| async {
                let Some(domain) = &self.inner.discovery else {
                    return Err(EtcdError::Config("no etcd endpoints".into()));
                };
                let tls = self.access().tls.is_some();
                let urls = srv::discover(domain, tls, self.inner.timeout).await?;
                let eps = parse_endpoints(&urls, &self.access())?;
                tracing::info!(
                    "fleet: etcd endpoints from {}: {}",
                    srv::service_name(domain, tls),
                    urls.join(", ")
                );
                Ok(eps)
            })
            .await?;
        Ok(v)
    }

    /// POST `body` to `path` on the current endpoint, moving on to the
    /// others in turn when it cannot serve; the reply body of a 200.
    async fn call(&self, path: &str, body: &Value) -> Result<Bytes, EtcdError> {
        self.call_within(self.inner.timeout, path, body).await
    }

    /// [`Client::call`] with another timeout per endpoint.
    async fn call_within(
        &self,
        timeout: Duration,
        path: &str,
        body: &Value,
    ) -> Result<Bytes, EtcdError> {
        self.each_endpoint_within(timeout, |_, ep, via| async move {
            let (status, bytes) = ep.post(path, body, &via).await?;
            check_status(status, bytes, &ep.url).map_err(|e| denied(e, path, body))
        })
        .await
    }

    /// `op` on the current endpoint within the timeout, moving on to the
    /// others in turn when it cannot serve; the one that served becomes the
    /// current one.
    async fn each_endpoint<'a, T, F>(
        &'a self,
        op: impl Fn(usize, &'a Endpoint, Via) -> F,
    ) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<T, EtcdError>>,
    {
        self.each_endpoint_within(self.inner.timeout, op).await
    }

    /// [`Client::each_endpoint`] with another timeout per endpoint. With a
    /// login, a token etcd no longer takes (expired, the auth store
    /// changed) is renewed and the request made once more.
    async fn each_endpoint_within<'a, T, F>(
        &'a self,
        timeout: Duration,
        op: impl Fn(usize, &'a Endpoint, Via) -> F,
    ) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<T, EtcdError>>,
    {
        let via = self.via().await?;
        match self.each_endpoint_via(timeout, &via, &op).await {
            Err(e) if via.token.is_some() && stale_token(&e) => {
                self.drop_token(&via).await;
                let via = self.via().await?;
                self.each_endpoint_via(timeout, &via, &op).await
            }
            r => r,
        }
    }

    async fn each_endpoint_via<'a, T, F>(
        &'a self,
        timeout: Duration,
        via: &Via,
        op: impl Fn(usize, &'a Endpoint, Via) -> F,
    ) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<T, EtcdError>>,
    {
        let eps = self.eps().await?;
        let n = eps.len();
        let start = self.inner.current.load(Ordering::Relaxed) % n;
        let mut last = EtcdError::Unreachable("no endpoint tried".into());
        for i in 0..n {
            let idx = (start + i) % n;
            let ep = &eps[idx];
            let r = match tokio::time::timeout(timeout, op(idx, ep, via.clone())).await {
                Err(_) => Err(EtcdError::Timeout),
                Ok(r) => r,
            };
            match r {
                Ok(v) => {
                    self.inner.current.store(idx, Ordering::Relaxed);
                    return Ok(v);
                }
                Err(e) if e.try_next() => last = e,
                Err(e) => return Err(e),
            }
        }
        Err(last)
    }

    /// The keys of `key..end` (one key without `end`) and the revision.
    /// A reply that is too large or too slow (etcd takes its time to send
    /// a huge value) is read again in parts (see [`Client::range_parts`]).
    /// More than [`MAX_KEYS`] keys: [`EtcdError::TooLarge`].
    async fn range(&self, key: &[u8], end: Option<&[u8]>) -> Result<(Vec<Kv>, i64), EtcdError> {
        if !oversize_within(key, end) {
            match self.range_once(key, end, 0, false, None).await {
                Err(EtcdError::TooLarge(_) | EtcdError::Timeout) => {}
                r => return r,
            }
        }
        self.range_parts(key, end).await
    }

    async fn range_once(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
        revision: i64,
        keys_only: bool,
        timeout: Option<Duration>,
    ) -> Result<(Vec<Kv>, i64), EtcdError> {
        let mut body = json!({"key": b64(key)});
        if let Some(end) = end {
            body["range_end"] = json!(b64(end));
            body["limit"] = json!((MAX_KEYS + 1).to_string());
        }
        if revision > 0 {
            body["revision"] = json!(revision.to_string());
        }
        if keys_only {
            body["keys_only"] = json!(true);
        }
        let timeout = timeout.unwrap_or(self.inner.timeout);
        let bytes = self.call_within(timeout, "/v3/kv/range", &body).await?;
        let (kvs, rev, more) = off_thread(bytes, String::new(), |b, _| {
            let r: wire::RangeReply = wire::parse(b)?;
            let kvs = r
                .kvs
                .iter()
                .map(|k| k.decode())
                .collect::<Result<Vec<_>, _>>()?;
            Ok((kvs, r.header.revision.0, r.more))
        })
        .await?;
        if more || kvs.len() > MAX_KEYS {
            return Err(EtcdError::TooLarge(format!(
                "more than {MAX_KEYS} keys under {}: not read",
                String::from_utf8_lossy(key)
            )));
        }
        Ok((kvs, rev))
    }

    /// [`Client::range`] in parts: the keys alone (quick), then their
    /// values at that revision, a run of keys at a time, halving a run
    /// whose reply is too large or too slow. A key known to hold a value
    /// over [`MAX_VALUE`] (at that revision) is not read again; one read
    /// alone that is still too slow is given [`HUGE_WAIT`] timeouts once (its member
    /// answered the key list: it is the value that takes time), and is
    /// refused when it is too large.
    async fn range_parts(
        &self,
        key: &[u8],
        end: Option<&[u8]>,
    ) -> Result<(Vec<Kv>, i64), EtcdError> {
        let (mut kvs, rev) = self.range_once(key, end, 0, true, None).await?;
        // Runs of `kvs` (index ranges) still to read, without the known
        // huge values.
        let mut todo = Vec::new();
        let mut run = 0;
        for i in 0..=kvs.len() {
            if i == kvs.len() || is_oversize(&kvs[i]) {
                todo.push((run, i));
                run = i + 1;
                if let Some(kv) = kvs.get(i) {
                    refused(&kv.key, &format!("over {MAX_VALUE} (seen before)"));
                }
            }
        }
        while let Some((i, j)) = todo.pop() {
            if i >= j {
                continue;
            }
            let first = kvs[i].key.clone();
            let part_end = match (kvs.get(j), end) {
                _ if j - i == 1 => None,
                (Some(next), _) => Some(next.key.clone()),
                (None, Some(end)) => Some(end.to_vec()),
                (None, None) => None,
            };
            let alone = j - i == 1;
            let mut r = self
                .range_once(&first, part_end.as_deref(), rev, false, None)
                .await;
            if alone && matches!(r, Err(EtcdError::Timeout)) {
                r = self
                    .range_once(
                        &first,
                        None,
                        rev,
                        false,
                        Some(self.inner.timeout * HUGE_WAIT),
                    )
                    .await;
            }
            match r {
                Ok((got, _)) => {
                    for kv in got {
                        if let Some(k) = kvs[i..j].iter_mut().find(|k| k.key == kv.key) {
                            *k = kv;
                        }
                    }
                }
                Err(EtcdError::TooLarge(_)) if alone => {
                    refused(&first, &format!("over {}", http::MAX_REPLY_BYTES));
                }
                Err(EtcdError::TooLarge(_) | EtcdError::Timeout) if !alone => {
                    let mid = i + (j - i) / 2;
                    todo.push((mid, j));
                    todo.push((i, mid));
                }
                Err(e) => return Err(e),
            }
        }
        Ok((kvs, rev))
    }

    /// One key (None if absent) and the store's revision.
    pub async fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), EtcdError> {
        let (mut kvs, rev) = self.range(key, None).await?;
        Ok((kvs.pop(), rev))
    }

    /// Every key under `prefix` (sorted by key) and the store's revision.
    /// A reply that is too large or that etcd is too slow to send (a huge
    /// value) is read in parts: the keys alone, then runs of their values
    /// at that revision.
    pub async fn get_prefix(&self, prefix: &[u8]) -> Result<(Vec<Kv>, i64), EtcdError> {
        self.range(prefix, Some(&prefix_end(prefix))).await
    }

    /// Put (with a lease if given); the new revision.
    pub async fn put(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<i64, EtcdError> {
        let bytes = self
            .call("/v3/kv/put", &wire::put_body(key, value, lease))
            .await?;
        Ok(wire::parse::<wire::RevReply>(&bytes)?.header.revision.0)
    }

    /// Delete one key; the revision after.
    pub async fn delete(&self, key: &[u8]) -> Result<i64, EtcdError> {
        let bytes = self
            .call("/v3/kv/deleterange", &json!({"key": b64(key)}))
            .await?;
        Ok(wire::parse::<wire::RevReply>(&bytes)?.header.revision.0)
    }

    /// Delete every key under `prefix`; the revision after.
    pub async fn delete_prefix(&self, prefix: &[u8]) -> Result<i64, EtcdError> {
        let body = json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))});
        let bytes = self.call("/v3/kv/deleterange", &body).await?;
        Ok(wire::parse::<wire::RevReply>(&bytes)?.header.revision.0)
    }

    async fn txn(&self, body: Value) -> Result<bool, EtcdError> {
        let bytes = self.call("/v3/kv/txn", &body).await?;
        Ok(wire::parse::<wire::TxnReply>(&bytes)?.succeeded)
    }

    /// Put only if the key does not exist. Ok(true) = created.
    pub async fn create(
        &self,
        key: &[u8],
        value: &[u8],
        lease: Option<i64>,
    ) -> Result<bool, EtcdError> {
        let put = json!({"request_put": wire::put_body(key, value, lease)});
        self.txn(wire::txn_body(key, "CREATE", "create_revision", 0, put))
            .await
    }

    /// Put only if the key's mod_revision still equals `rev` (0 = absent).
    /// Ok(true) = written.
    pub async fn put_if(
        &self,
        key: &[u8],
        value: &[u8],
        rev: i64,
        lease: Option<i64>,
    ) -> Result<bool, EtcdError> {
        let put = json!({"request_put": wire::put_body(key, value, lease)});
        self.txn(wire::txn_body(key, "MOD", "mod_revision", rev, put))
            .await
    }

    /// Put `key` (no lease) only if `guard` is held by `lease` (a step
    /// that must not outlive its record). Ok(true) = written.
    pub async fn put_if_held(
        &self,
        guard: &[u8],
        lease: i64,
        key: &[u8],
        value: &[u8],
    ) -> Result<bool, EtcdError> {
        let put = json!({"request_put": wire::put_body(key, value, None)});
        self.txn(wire::txn_body(guard, "LEASE", "lease", lease, put))
            .await
    }

    /// Delete the key only if it is held by `lease` (give up leadership
    /// without deleting a successor's key). Ok(true) = deleted.
    pub async fn delete_if_lease(&self, key: &[u8], lease: i64) -> Result<bool, EtcdError> {
        let del = json!({"request_delete_range": {"key": b64(key)}});
        self.txn(wire::txn_body(key, "LEASE", "lease", lease, del))
            .await
    }

    /// A new lease of `ttl` (whole seconds, rounded up, at least 1); its id.
    pub async fn lease_grant(&self, ttl: Duration) -> Result<i64, EtcdError> {
        let secs = ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0);
        let bytes = self
            .call("/v3/lease/grant", &json!({"TTL": secs.max(1).to_string()}))
            .await?;
        let r: wire::LeaseReply = wire::parse(&bytes)?;
        if r.id.0 == 0 {
            return Err(EtcdError::Reply("lease grant without an ID".into()));
        }
        Ok(r.id.0)
    }

    /// One keepalive of lease `id`: the seconds it has left; Ok(0) when
    /// the lease is gone (expired or revoked).
    pub async fn lease_keepalive(&self, id: i64) -> Result<i64, EtcdError> {
        let bytes = self
            .call("/v3/lease/keepalive", &json!({"ID": id.to_string()}))
            .await?;
        let r: wire::Streamed<wire::LeaseReply> = wire::parse(first_object(&bytes)?)?;
        if let Some(e) = r.error {
            return Err(EtcdError::Reply(format!("keepalive: {e}")));
        }
        Ok(r.result.map_or(0, |l| l.ttl.0.max(0)))
    }

    /// Revoke lease `id` (its keys go at once). A lease already gone is Ok.
    pub async fn lease_revoke(&self, id: i64) -> Result<(), EtcdError> {
        match self
            .call("/v3/lease/revoke", &json!({"ID": id.to_string()}))
            .await
        {
            Ok(_) => Ok(()),
            // NotFound: expired or revoked already.
            Err(EtcdError::Refused { code: 5, .. }) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Watch every key under `prefix` from `start_revision` (0 = from
    /// now). Returns once etcd confirmed the watch, so nothing written
    /// after this returns is missed.
    pub async fn watch_prefix(
        &self,
        prefix: &[u8],
        start_revision: i64,
    ) -> Result<Watch, EtcdError> {
        let mut req = json!({"key": b64(prefix), "range_end": b64(&prefix_end(prefix))});
        if start_revision > 0 {
            req["start_revision"] = json!(start_revision.to_string());
        }
        let body = json!({"create_request": req});
        self.each_endpoint(|idx, ep, via| {
            let body = &body;
            async move { Watch::open(idx, ep, body, &via).await }
        })
        .await
    }

    /// Move requests off endpoint `idx` (it hangs) if they go there now.
    fn avoid(&self, idx: usize) {
        let n = self.eps_now().len().max(1);
        let _ = self.inner.current.compare_exchange(
            idx,
            (idx + 1) % n,
            Ordering::Relaxed,
            Ordering::Relaxed,
        );
    }

    /// On endpoint `idx` only, within `limit` (and the client's timeout),
    /// a linearizable (quorum) read under `prefix`: with `newest`, the
    /// newest revision of a key there (0: none; etcd reads every key of
    /// the prefix for it), else only a count (its index alone) and None.
    async fn newest_at(
        &self,
        idx: usize,
        prefix: &[u8],
        limit: Duration,
        newest: bool,
    ) -> Result<Option<i64>, EtcdError> {
        let ep = self
            .eps_now()
            .get(idx)
            .ok_or_else(|| EtcdError::Config(format!("no etcd endpoint {idx}")))?;
        let mut body = json!({
            "key": b64(prefix),
            "range_end": b64(&prefix_end(prefix)),
        });
        if newest {
            body["limit"] = json!("1");
            body["sort_order"] = json!("DESCEND");
            body["sort_target"] = json!("MOD");
            body["keys_only"] = json!(true);
        } else {
            body["count_only"] = json!(true);
        }
        let via = self.via().await?;
        let call = async {
            let (status, bytes) = ep.post("/v3/kv/range", &body, &via).await?;
            let bytes = check_status(status, bytes, &ep.url)?;
            let r: wire::RangeReply = wire::parse(&bytes)?;
            Ok(newest.then(|| r.kvs.first().map_or(0, |kv| kv.mod_revision.0)))
        };
        match tokio::time::timeout(limit.min(self.inner.timeout), call).await {
            Err(_) => Err(EtcdError::Timeout),
            Ok(r) => r,
        }
    }

    /// The URL of endpoint `idx`.
    fn url(&self, idx: usize) -> &str {
        self.eps_now().get(idx).map_or("", |e| e.url.as_str())
    }
}

/// Parse `urls`; an `https://` one needs `access`'s TLS settings.
fn parse_endpoints(urls: &[String], access: &Access) -> Result<Vec<Endpoint>, EtcdError> {
    let endpoints = urls
        .iter()
        .map(|u| Endpoint::parse(u))
        .collect::<Result<Vec<_>, _>>()?;
    if access.tls.is_none() {
        if let Some(e) = endpoints.iter().find(|e| e.is_tls()) {
            return Err(EtcdError::Config(format!(
                "etcd endpoint {}: https:// needs fleet.tls (at least its ca)",
                e.url
            )));
        }
    }
    if endpoints.is_empty() {
        return Err(EtcdError::Config("no etcd endpoints".into()));
    }
    Ok(endpoints)
}

/// The start of etcd's refusal (HTTP 400, not JSON) of a gateway request
/// made with a client certificate that has a CommonName while auth is on:
/// the gateway cannot pass the CN on as the user (etcd 3.4.10 and later).
const GATEWAY_CN: &[u8] = b"CommonName of client sending a request against gateway";

/// A 200's body, or the error the gateway's reply stands for.
fn check_status(status: StatusCode, bytes: Bytes, url: &str) -> Result<Bytes, EtcdError> {
    if status == StatusCode::OK {
        return Ok(bytes);
    }
    if bytes.starts_with(GATEWAY_CN) {
        return Err(EtcdError::Tls(format!(
            "{url}: etcd refuses a client certificate with a CommonName on its JSON gateway while auth is on: issue fleet.tls.cert without a CN (e.g. openssl -subj /O=balance)"
        )));
    }
    match wire::grpc_error(&bytes) {
        Some((code, message)) => Err(EtcdError::Refused { code, message }),
        None if status.is_server_error() => {
            Err(EtcdError::Unreachable(format!("{url}: HTTP {status}")))
        }
        None => Err(EtcdError::Reply(format!(
            "{url}: HTTP {status}: {}",
            String::from_utf8_lossy(&bytes[..bytes.len().min(160)])
                .trim()
                .replace(['\n', '\r'], " ")
        ))),
    }
}

/// etcd's "permission denied" made to name the user's missing permission:
/// the request and its key. Other errors as they are.
fn denied(e: EtcdError, path: &str, body: &Value) -> EtcdError {
    match e {
        EtcdError::Refused { code: 7, message } => {
            let key = body
                .get("key")
                .or_else(|| body.pointer("/compare/0/key"))
                .and_then(Value::as_str)
                .and_then(|k| wire::unb64_key(k).ok())
                .map(|k| String::from_utf8_lossy(&k).into_owned())
                .unwrap_or_default();
            EtcdError::Denied(format!(
                "{message}: {path} on key {} (the etcd user's role needs readwrite on the fleet prefix)",
                quoted(&key)
            ))
        }
        e => e,
    }
}

/// Whether etcd refused a request for its token (expired, unknown after a
/// restart, older than a change of the auth store, or missing): log in
/// again.
fn stale_token(e: &EtcdError) -> bool {
    match e {
        EtcdError::Refused { code, message } => {
            *code == 16
                || message.contains("invalid auth token")
                || message.contains("revision of auth store is old")
                || message.contains("user name is empty")
        }
        EtcdError::WatchEnded(m) => m.contains("invalid auth token"),
        _ => false,
    }
}

/// `s` quoted for a message (at most 200 characters).
fn quoted(s: &str) -> String {
    let cut: String = s.chars().take(200).collect();
    format!("{cut:?}")
}

/// The first JSON object of a streamed reply (`{"result":...}` lines).
fn first_object(bytes: &[u8]) -> Result<&[u8], EtcdError> {
    let mut it = serde_json::Deserializer::from_slice(bytes).into_iter::<serde::de::IgnoredAny>();
    match it.next() {
        Some(Ok(_)) => Ok(&bytes[..it.byte_offset()]),
        Some(Err(e)) => Err(EtcdError::Reply(format!("bad reply: {e}"))),
        None => Err(EtcdError::Reply("empty reply".into())),
    }
}

/// A watch message larger than this (its huge values already dropped:
/// that many changes at once) is not read on: the watch is dropped (its
/// connection closed) with [`EtcdError::TooLarge`]; the caller reads the
/// prefix again, in parts if need be.
const MAX_WATCH_MESSAGE: usize = http::MAX_REPLY_BYTES;

/// A live prefix watch: one HTTP stream of `{"result":...}` objects.
pub struct Watch {
    body: Incoming,
    /// Received, not yet looked at.
    pending: Bytes,
    /// The message so far (its long strings dropped).
    msg: Vec<u8>,
    stream: Stream,
    /// Work on a blocking thread (a large piece or message) whose result
    /// the next call takes up: `next` stays cancel safe.
    job: Option<Job>,
    conn: tokio::task::JoinHandle<()>,
    url: String,
    /// The endpoint's index in the client's list.
    endpoint: usize,
}

/// A [`Watch`]'s work on a blocking thread.
enum Job {
    /// Feeding a large piece: the state, the message so far, the piece,
    /// and what `feed` said.
    Feed(tokio::task::JoinHandle<Fed>),
    Decode(tokio::task::JoinHandle<Result<Message, EtcdError>>),
}

type Fed = (Stream, Vec<u8>, Bytes, Result<Option<usize>, String>);

impl Drop for Watch {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

/// One decoded watch message.
struct Message {
    revision: i64,
    created: bool,
    canceled: bool,
    compact_revision: i64,
    cancel_reason: String,
    events: Vec<Event>,
}

impl Message {
    fn decode(bytes: &[u8], url: &str) -> Result<Message, EtcdError> {
        let m: wire::Streamed<wire::WatchReply> = serde_json::from_slice(bytes)
            .map_err(|e| EtcdError::Reply(format!("{url}: bad watch message: {e}")))?;
        if let Some(e) = m.error {
            return Err(EtcdError::WatchEnded(format!("{url}: {e}")));
        }
        let r = m
            .result
            .ok_or_else(|| EtcdError::Reply(format!("{url}: watch message without result")))?;
        Ok(Message {
            revision: r.header.revision.0,
            created: r.created,
            canceled: r.canceled,
            compact_revision: r.compact_revision.0,
            events: r.decode_events()?,
            cancel_reason: r.cancel_reason,
        })
    }
}

impl Watch {
    async fn open(idx: usize, ep: &Endpoint, body: &Value, via: &Via) -> Result<Watch, EtcdError> {
        let (resp, conn) = ep.stream("/v3/watch", body, via).await?;
        let status = resp.status();
        let mut w = Watch {
            body: resp.into_body(),
            pending: Bytes::new(),
            msg: Vec::new(),
            stream: Stream::default(),
            job: None,
            conn,
            url: ep.url.clone(),
            endpoint: idx,
        };
        if status != StatusCode::OK {
            let mut all = Vec::new();
            while let Ok(Some(chunk)) = w.chunk().await {
                all.extend_from_slice(&chunk);
                if all.len() > 64 << 10 {
                    break;
                }
            }
            check_status(status, Bytes::from(all), &ep.url)
                .map_err(|e| denied(e, "/v3/watch", &body["create_request"]))?;
            return Err(EtcdError::Reply(format!("{}: watch refused", ep.url)));
        }
        let first = w.message().await?;
        if !first.created {
            return Err(EtcdError::Reply(format!("{}: watch not created", ep.url)));
        }
        w.check_canceled(&first)?;
        Ok(w)
    }

    async fn chunk(&mut self) -> Result<Option<Bytes>, EtcdError> {
        loop {
            match self.body.frame().await {
                None => return Ok(None),
                Some(Err(e)) => return Err(EtcdError::WatchEnded(format!("{}: {e}", self.url))),
                Some(Ok(f)) => {
                    if let Ok(data) = f.into_data() {
                        return Ok(Some(data));
                    }
                }
            }
        }
    }

    /// The next whole message of the stream, its values over
    /// [`MAX_VALUE`] dropped as they arrive. A large piece of the stream is
    /// looked at, and a large message decoded, on a blocking thread, so a
    /// huge value does not hold up the runtime (and the data path it
    /// serves). Cancel safe.
    async fn message(&mut self) -> Result<Message, EtcdError> {
        let broken = |e: tokio::task::JoinError| EtcdError::Reply(format!("watch decoding: {e}"));
        loop {
            match &mut self.job {
                Some(Job::Decode(h)) => {
                    let r = h.await;
                    self.job = None;
                    return r.map_err(broken)?;
                }
                Some(Job::Feed(h)) => {
                    let r = h.await;
                    self.job = None;
                    let (st, msg, input, fed) = r.map_err(broken)?;
                    (self.stream, self.msg) = (st, msg);
                    if let Some(m) = self.fed(input, fed)? {
                        return Ok(m);
                    }
                    tokio::task::yield_now().await;
                    continue;
                }
                None => {}
            }
            if !self.pending.is_empty() {
                let input = std::mem::take(&mut self.pending);
                if input.len() >= OFF_THREAD {
                    let (mut st, mut msg) = (self.stream, std::mem::take(&mut self.msg));
                    self.job = Some(Job::Feed(tokio::task::spawn_blocking(move || {
                        let r = st.feed(&input, &mut msg);
                        (st, msg, input, r)
                    })));
                    continue;
                }
                let fed = self.stream.feed(&input, &mut self.msg);
                if let Some(m) = self.fed(input, fed)? {
                    return Ok(m);
                }
                continue;
            }
            match self.chunk().await? {
                None => {
                    return Err(EtcdError::WatchEnded(format!(
                        "{}: stream closed",
                        self.url
                    )));
                }
                Some(data) => self.pending = data,
            }
        }
    }

    /// After `input` was fed: a whole small message decoded, or none yet
    /// (a large one is left to a blocking thread as [`Job::Decode`]).
    fn fed(
        &mut self,
        input: Bytes,
        fed: Result<Option<usize>, String>,
    ) -> Result<Option<Message>, EtcdError> {
        let end =
            fed.map_err(|e| EtcdError::Reply(format!("{}: bad watch stream: {e}", self.url)))?;
        if self.msg.len() > MAX_WATCH_MESSAGE {
            self.msg = Vec::new();
            return Err(EtcdError::TooLarge(format!(
                "{}: a watch message over {} bytes: not read",
                self.url, MAX_WATCH_MESSAGE
            )));
        }
        let Some(n) = end else {
            return Ok(None);
        };
        self.pending = input.slice(n..);
        let bytes = std::mem::take(&mut self.msg);
        if bytes.len() <= OFF_THREAD {
            return Message::decode(&bytes, &self.url).map(Some);
        }
        let url = self.url.clone();
        self.job = Some(Job::Decode(tokio::task::spawn_blocking(move || {
            Message::decode(&bytes, &url)
        })));
        Ok(None)
    }

    fn check_canceled(&self, m: &Message) -> Result<(), EtcdError> {
        if m.compact_revision > 0 {
            return Err(EtcdError::Compacted(m.compact_revision));
        }
        if m.canceled {
            return Err(EtcdError::WatchEnded(format!(
                "{}: canceled: {}",
                self.url, m.cancel_reason
            )));
        }
        Ok(())
    }

    /// The next batch of changes (in revision order) and the revision
    /// they bring the store to. Err when the stream ends (endpoint gone,
    /// canceled, compacted, a message too large): read the prefix again
    /// and watch from that revision + 1.
    pub async fn next(&mut self) -> Result<(Vec<Event>, i64), EtcdError> {
        loop {
            let m = self.message().await?;
            self.check_canceled(&m)?;
            if !m.events.is_empty() {
                let newest = m.events.iter().map(|e| e.kv().mod_revision).max();
                return Ok((m.events, m.revision.max(newest.unwrap_or(0))));
            }
        }
    }
}

impl Event {
    fn kv(&self) -> &Kv {
        match self {
            Event::Put(kv) | Event::Delete(kv) => kv,
        }
    }
}

/// Decode `bytes` with `f`: inline when small, on a blocking thread when
/// large, so a big reply does not hold up the runtime (and the data path
/// it serves) while it is parsed.
async fn off_thread<T: Send + 'static>(
    bytes: Bytes,
    url: String,
    f: fn(&[u8], &str) -> Result<T, EtcdError>,
) -> Result<T, EtcdError> {
    if bytes.len() <= OFF_THREAD {
        return f(&bytes, &url);
    }
    tokio::task::spawn_blocking(move || f(&bytes, &url))
        .await
        .map_err(|e| EtcdError::Reply(format!("decoding a reply: {e}")))?
}

/// Replies above this are decoded off the runtime's threads.
const OFF_THREAD: usize = 64 << 10;

/// Proves a watch alive, beside it: every `every`, the watch's own member
/// must answer a quorum read under the prefix within `every` (and the
/// client's timeout); every [`REVISION_EVERY`]th read asks for the newest
/// revision there, which the watch must have delivered by the next such
/// read. [`Liveness::failed`] returns when
/// either does not hold (the member is then avoided by later requests);
/// the caller drops the watch and watches again (another member).
///
/// A member that is stopped or cut off from the others fails the first
/// (a quorum read needs a leader); a stream that stalled while its member
/// serves fails the second. Deletes alone do not show in the revision
/// check; the first covers them (a member that answers serves its
/// watches).
pub struct Liveness {
    client: Client,
    prefix: Vec<u8>,
    endpoint: usize,
    every: Duration,
    /// The newest revision the watch delivered (or read before it).
    seen: i64,
    /// A newer revision under the prefix than `seen` at the last read.
    owed: Option<i64>,
    next_at: tokio::time::Instant,
    /// Checks made.
    n: u64,
    pending: Option<tokio::task::JoinHandle<Result<Option<i64>, EtcdError>>>,
}

/// Every this many liveness checks one reads the newest revision (which
/// costs etcd a read of every key under the prefix); the others only
/// count keys (its index).
const REVISION_EVERY: u64 = 3;

impl Drop for Liveness {
    fn drop(&mut self) {
        if let Some(p) = self.pending.take() {
            p.abort();
        }
    }
}

impl Liveness {
    /// For `w`, a watch of `prefix` from `read + 1` (`read`: the revision
    /// of the snapshot read before it); a check every `every`.
    pub fn new(client: &Client, w: &Watch, prefix: &[u8], read: i64, every: Duration) -> Self {
        Liveness {
            client: client.clone(),
            prefix: prefix.to_vec(),
            endpoint: w.endpoint,
            every,
            seen: read,
            owed: None,
            next_at: tokio::time::Instant::now() + every,
            n: 0,
            pending: None,
        }
    }

    /// The watch delivered up to `rev` (what [`Watch::next`] returned).
    pub fn saw(&mut self, rev: i64) {
        self.seen = self.seen.max(rev);
        if self.owed.is_some_and(|o| self.seen >= o) {
            self.owed = None;
        }
    }

    /// Wait until the watch is found dead or behind; the reason. Cancel
    /// safe: a check under way goes on and is awaited by the next call.
    pub async fn failed(&mut self) -> EtcdError {
        loop {
            let pending = match &mut self.pending {
                Some(p) => p,
                None => {
                    tokio::time::sleep_until(self.next_at).await;
                    self.next_at = tokio::time::Instant::now() + self.every;
                    let (c, prefix, idx, every) = (
                        self.client.clone(),
                        self.prefix.clone(),
                        self.endpoint,
                        self.every,
                    );
                    self.n += 1;
                    let newest = self.n % REVISION_EVERY == 0;
                    self.pending.insert(tokio::spawn(async move {
                        c.newest_at(idx, &prefix, every, newest).await
                    }))
                }
            };
            let r = pending.await;
            self.pending = None;
            let url = self.client.url(self.endpoint).to_string();
            let newest = match r {
                Ok(Ok(None)) => continue,
                Ok(Ok(Some(n))) => n,
                Ok(Err(e)) => {
                    self.client.avoid(self.endpoint);
                    return EtcdError::WatchEnded(format!(
                        "{url} does not serve the watch ({e}): watching through another member"
                    ));
                }
                Err(e) => return EtcdError::WatchEnded(format!("{url}: watch check: {e}")),
            };
            if let Some(owed) = self.owed.filter(|o| self.seen < *o) {
                self.client.avoid(self.endpoint);
                return EtcdError::WatchEnded(format!(
                    "{url}: the watch did not deliver revision {owed} (at {}): watching through another member",
                    self.seen
                ));
            }
            self.owed = (newest > self.seen).then_some(newest);
        }
    }
}
