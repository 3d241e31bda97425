//! A small etcd v3 client over etcd's JSON gateway (`POST /v3/...` on the
//! client port; plain `http://` only, no TLS, no auth): ranges, puts,
//! deletes, the few transactions fleet mode needs, leases and prefix
//! watches. Keys and values are bytes (base64 on the wire).
//!
//! Several endpoints: a request goes to the one that last answered and
//! moves on to the next when that one is unreachable, times out or says it
//! is unavailable. Every request has a timeout (per endpoint tried); a
//! watch's `next` has none (wrap it when a bound matters). Replies are
//! untrusted: anything malformed is an [`EtcdError::Reply`].
//!
//! Written and owned by fleet mode; nothing here holds state beyond the
//! endpoint list, the sticky index and idle connections.

mod http;
#[cfg(test)]
mod tests;
mod wire;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use http_body_util::BodyExt;
use hyper::StatusCode;
use hyper::body::Incoming;
use serde_json::{Value, json};

use http::Endpoint;
use wire::{b64, prefix_end};

pub use wire::prefix_end as range_end;

/// One key as etcd stores it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Kv {
    pub key: Vec<u8>,
    pub value: Vec<u8>,
    pub create_revision: i64,
    pub mod_revision: i64,
    /// 0 = no lease.
    pub lease: i64,
}

/// One change seen by a watch. A delete's `Kv` carries the key and the
/// revision of the delete (`mod_revision`), no value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Put(Kv),
    Delete(Kv),
}

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
    Refused { code: i64, message: String },
    /// No reply within the request timeout.
    #[error("etcd request timed out")]
    Timeout,
    /// A watch's start revision was compacted; the oldest revision kept.
    #[error("etcd: revision compacted (oldest kept {0})")]
    Compacted(i64),
    /// The watch stream ended (the endpoint went away or canceled it).
    #[error("etcd watch ended: {0}")]
    WatchEnded(String),
}

impl EtcdError {
    /// Whether another endpoint may do better.
    fn try_next(&self) -> bool {
        match self {
            EtcdError::Unreachable(_) | EtcdError::Timeout => true,
            // gRPC Unavailable, DeadlineExceeded: no leader, member stopping.
            EtcdError::Refused { code, .. } => matches!(code, 4 | 14),
            _ => false,
        }
    }
}

/// A handle to an etcd cluster; cheap to clone, shared by tasks.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    endpoints: Vec<Endpoint>,
    timeout: Duration,
    /// The endpoint that answered last.
    current: AtomicUsize,
}

impl std::fmt::Debug for Client {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let urls: Vec<&str> = self
            .inner
            .endpoints
            .iter()
            .map(|e| e.url.as_str())
            .collect();
        f.debug_struct("Client")
            .field("endpoints", &urls)
            .field("timeout", &self.inner.timeout)
            .finish()
    }
}

impl Client {
    /// A client of `endpoints` (`http://host:port` each, at least one);
    /// `timeout` bounds each request to one endpoint. Connects lazily.
    pub fn new(endpoints: &[String], timeout: Duration) -> Result<Client, EtcdError> {
        if endpoints.is_empty() {
            return Err(EtcdError::Config("no etcd endpoints".into()));
        }
        if timeout.is_zero() {
            return Err(EtcdError::Config(
                "etcd request timeout must be above 0".into(),
            ));
        }
        let endpoints = endpoints
            .iter()
            .map(|u| Endpoint::parse(u))
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Client {
            inner: Arc::new(Inner {
                endpoints,
                timeout,
                current: AtomicUsize::new(0),
            }),
        })
    }

    /// The endpoints, as configured.
    pub fn endpoints(&self) -> Vec<String> {
        self.inner.endpoints.iter().map(|e| e.url.clone()).collect()
    }

    /// POST `body` to `path` on the current endpoint, moving on to the
    /// others in turn when it cannot serve; the reply body of a 200.
    async fn call(&self, path: &str, body: &Value) -> Result<Bytes, EtcdError> {
        self.each_endpoint(|ep| async move {
            let (status, bytes) = ep.post(path, body).await?;
            check_status(status, bytes, &ep.url)
        })
        .await
    }

    /// `op` on the current endpoint within the timeout, moving on to the
    /// others in turn when it cannot serve; the one that served becomes the
    /// current one.
    async fn each_endpoint<'a, T, F>(
        &'a self,
        op: impl Fn(&'a Endpoint) -> F,
    ) -> Result<T, EtcdError>
    where
        F: Future<Output = Result<T, EtcdError>>,
    {
        let n = self.inner.endpoints.len();
        let start = self.inner.current.load(Ordering::Relaxed) % n;
        let mut last = EtcdError::Unreachable("no endpoint tried".into());
        for i in 0..n {
            let idx = (start + i) % n;
            let r = match tokio::time::timeout(self.inner.timeout, op(&self.inner.endpoints[idx]))
                .await
            {
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

    async fn range(&self, key: &[u8], end: Option<&[u8]>) -> Result<(Vec<Kv>, i64), EtcdError> {
        let mut body = json!({"key": b64(key)});
        if let Some(end) = end {
            body["range_end"] = json!(b64(end));
        }
        let bytes = self.call("/v3/kv/range", &body).await?;
        let r: wire::RangeReply = wire::parse(&bytes)?;
        let kvs = r.kvs.iter().map(|k| k.decode()).collect::<Result<_, _>>()?;
        Ok((kvs, r.header.revision.0))
    }

    /// One key (None if absent) and the store's revision.
    pub async fn get(&self, key: &[u8]) -> Result<(Option<Kv>, i64), EtcdError> {
        let (mut kvs, rev) = self.range(key, None).await?;
        Ok((kvs.pop(), rev))
    }

    /// Every key under `prefix` (sorted by key) and the store's revision.
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
        self.each_endpoint(|ep| Watch::open(ep, &body)).await
    }
}

/// A 200's body, or the error the gateway's reply stands for.
fn check_status(status: StatusCode, bytes: Bytes, url: &str) -> Result<Bytes, EtcdError> {
    if status == StatusCode::OK {
        return Ok(bytes);
    }
    match wire::grpc_error(&bytes) {
        Some((code, message)) => Err(EtcdError::Refused { code, message }),
        None if status.is_server_error() => {
            Err(EtcdError::Unreachable(format!("{url}: HTTP {status}")))
        }
        None => Err(EtcdError::Reply(format!("{url}: HTTP {status}"))),
    }
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

/// The largest single watch message accepted.
const MAX_WATCH_MESSAGE: usize = 64 << 20;

/// A live prefix watch: one HTTP stream of `{"result":...}` objects.
pub struct Watch {
    body: Incoming,
    buf: BytesMut,
    conn: tokio::task::JoinHandle<()>,
    url: String,
}

impl Drop for Watch {
    fn drop(&mut self) {
        self.conn.abort();
    }
}

impl Watch {
    async fn open(ep: &Endpoint, body: &Value) -> Result<Watch, EtcdError> {
        let (resp, conn) = ep.stream("/v3/watch", body).await?;
        let status = resp.status();
        let mut w = Watch {
            body: resp.into_body(),
            buf: BytesMut::new(),
            conn,
            url: ep.url.clone(),
        };
        if status != StatusCode::OK {
            let mut all = Vec::new();
            while let Ok(Some(chunk)) = w.chunk().await {
                all.extend_from_slice(&chunk);
                if all.len() > 64 << 10 {
                    break;
                }
            }
            check_status(status, Bytes::from(all), &ep.url)?;
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

    /// The next whole message of the stream.
    async fn message(&mut self) -> Result<wire::WatchReply, EtcdError> {
        loop {
            if let Some(m) = self.take_message()? {
                return Ok(m);
            }
            match self.chunk().await? {
                None => {
                    return Err(EtcdError::WatchEnded(format!(
                        "{}: stream closed",
                        self.url
                    )));
                }
                Some(data) => {
                    if self.buf.len() + data.len() > MAX_WATCH_MESSAGE {
                        return Err(EtcdError::Reply(format!(
                            "{}: watch message too large",
                            self.url
                        )));
                    }
                    self.buf.extend_from_slice(&data);
                }
            }
        }
    }

    /// A whole message from the buffer, if one is there.
    fn take_message(&mut self) -> Result<Option<wire::WatchReply>, EtcdError> {
        let mut it = serde_json::Deserializer::from_slice(&self.buf)
            .into_iter::<wire::Streamed<wire::WatchReply>>();
        let parsed = match it.next() {
            None => None,
            Some(Ok(m)) => Some(m),
            Some(Err(e)) if e.is_eof() => None,
            Some(Err(e)) => {
                return Err(EtcdError::Reply(format!(
                    "{}: bad watch message: {e}",
                    self.url
                )));
            }
        };
        let used = it.byte_offset();
        let Some(m) = parsed else {
            return Ok(None);
        };
        self.buf.advance(used);
        if let Some(e) = m.error {
            return Err(EtcdError::WatchEnded(format!("{}: {e}", self.url)));
        }
        m.result
            .map(Some)
            .ok_or_else(|| EtcdError::Reply(format!("{}: watch message without result", self.url)))
    }

    fn check_canceled(&self, m: &wire::WatchReply) -> Result<(), EtcdError> {
        if m.compact_revision.0 > 0 {
            return Err(EtcdError::Compacted(m.compact_revision.0));
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
    /// canceled, compacted): watch again from the last revision + 1.
    pub async fn next(&mut self) -> Result<(Vec<Event>, i64), EtcdError> {
        loop {
            let m = self.message().await?;
            self.check_canceled(&m)?;
            let events = m.decode_events()?;
            if !events.is_empty() {
                return Ok((events, m.header.revision.0));
            }
        }
    }
}
