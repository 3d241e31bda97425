//! HTTP/1.1 to one etcd endpoint (hyper's client connection over a tokio
//! TcpStream, or rustls over it for `https://`): one-shot JSON requests
//! over a small pool of kept-alive connections, and streaming replies for
//! watches. A request carries etcd's auth token when there is one.

use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use super::EtcdError;
use super::stream::Stream;

/// The largest reply body read (also the largest watch message, after
/// huge values are dropped); a larger one is not read on (the connection
/// is closed) and is an [`EtcdError::TooLarge`]; a range over it is read
/// again in parts, see [`super::Client::get_prefix`].
pub(crate) const MAX_REPLY_BYTES: usize = 4 << 20;
/// TCP keepalive on every connection to etcd.
const KEEPALIVE_IDLE: std::time::Duration = std::time::Duration::from_secs(5);
const KEEPALIVE_INTERVAL: std::time::Duration = std::time::Duration::from_secs(2);
/// Idle connections kept per endpoint.
const MAX_IDLE: usize = 4;

type Sender = SendRequest<Full<Bytes>>;

/// A connection's task, aborted (the socket closed) when this is dropped:
/// a request given up on (timed out: the endpoint hangs) takes its
/// connection with it instead of leaving it waiting for the reply.
struct Conn(tokio::task::JoinHandle<()>);

impl Drop for Conn {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// What every request of a client carries: the TLS settings of its
/// `https://` endpoints and etcd's auth token.
#[derive(Clone, Default)]
pub(super) struct Via {
    pub(crate) tls: Option<Arc<rustls::ClientConfig>>,
    pub(crate) token: Option<Arc<str>>,
}

/// One `http://host:port` or `https://host:port` endpoint.
pub(super) struct Endpoint {
    /// As configured, for messages.
    pub(crate) url: String,
    /// `host:port`.
    pub(crate) authority: String,
    /// `https://`: the name its certificate must carry.
    tls_name: Option<rustls::pki_types::ServerName<'static>>,
    idle: Mutex<Vec<(Sender, Conn)>>,
}

impl Endpoint {
    /// Parse `http://host:port` or `https://host:port` (a trailing `/`
    /// allowed).
    pub(super) fn parse(url: &str) -> Result<Endpoint, EtcdError> {
        let bad = |why: &str| EtcdError::Config(format!("bad etcd endpoint {url:?}: {why}"));
        let (rest, tls) = match url.strip_prefix("https://") {
            Some(rest) => (rest, true),
            None => (
                url.strip_prefix("http://")
                    .ok_or_else(|| bad("use http://host:port or https://host:port"))?,
                false,
            ),
        };
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        crate::config::grammar::check_http_authority(authority).map_err(bad)?;
        let host = authority.rsplit_once(':').map_or(authority, |(h, _)| h);
        let tls_name = if tls {
            let name = host.trim_start_matches('[').trim_end_matches(']');
            let name = rustls::pki_types::ServerName::try_from(name.to_string())
                .map_err(|e| bad(&format!("not a name for TLS: {e}")))?;
            Some(name)
        } else {
            None
        };
        Ok(Endpoint {
            url: url.to_string(),
            authority: authority.to_string(),
            tls_name,
            idle: Mutex::new(Vec::new()),
        })
    }

    /// Whether this is an `https://` endpoint.
    pub(super) fn is_tls(&self) -> bool {
        self.tls_name.is_some()
    }

    /// Close the kept idle connections (the TLS settings changed).
    pub(super) fn forget_idle(&self) {
        if let Ok(mut idle) = self.idle.lock() {
            idle.clear();
        }
    }

    async fn connect(&self, via: &Via) -> Result<(Sender, tokio::task::JoinHandle<()>), EtcdError> {
        let tcp = TcpStream::connect(self.authority.as_str())
            .await
            .map_err(|e| EtcdError::Unreachable(format!("{}: {e}", self.url)))?;
        let _ = tcp.set_nodelay(true);
        // A watch waits for events without a bound: a peer that vanished
        // without a reset (host down, partition) is noticed within about
        // KEEPALIVE_IDLE + 3 x KEEPALIVE_INTERVAL.
        let ka = socket2::TcpKeepalive::new()
            .with_time(KEEPALIVE_IDLE)
            .with_interval(KEEPALIVE_INTERVAL)
            .with_retries(3);
        let _ = socket2::SockRef::from(&tcp).set_tcp_keepalive(&ka);
        let unreachable =
            |e: &dyn std::fmt::Display| EtcdError::Unreachable(format!("{}: {e}", self.url));
        let Some(name) = &self.tls_name else {
            let (sender, conn) = http1::handshake(TokioIo::new(tcp))
                .await
                .map_err(|e| unreachable(&e))?;
            let task = tokio::spawn(async move {
                let _ = conn.await;
            });
            return Ok((sender, task));
        };
        let Some(tls) = &via.tls else {
            return Err(EtcdError::Config(format!(
                "{}: an https:// endpoint needs fleet.tls",
                self.url
            )));
        };
        let stream = tokio_rustls::TlsConnector::from(Arc::clone(tls))
            .connect(name.clone(), tcp)
            .await
            .map_err(|e| tls_error(&self.url, &e))?;
        let (sender, conn) = http1::handshake(TokioIo::new(stream))
            .await
            .map_err(|e| unreachable(&e))?;
        let task = tokio::spawn(async move {
            let _ = conn.await;
        });
        Ok((sender, task))
    }

    fn request(&self, path: &str, body: &serde_json::Value, via: &Via) -> Request<Full<Bytes>> {
        let body = Bytes::from(body.to_string());
        let mut r = Request::post(path)
            .header(hyper::header::HOST, &self.authority)
            .header(hyper::header::CONTENT_TYPE, "application/json");
        if let Some(t) = &via.token {
            r = r.header(hyper::header::AUTHORIZATION, &**t);
        }
        r.body(Full::new(body))
            .expect("request parts are valid (the token was checked)")
    }

    /// POST `body` to `path`; the status and the whole reply body. A kept
    /// idle connection is reused; a fresh one is opened otherwise.
    pub(super) async fn post(
        &self,
        path: &str,
        body: &serde_json::Value,
        via: &Via,
    ) -> Result<(StatusCode, Bytes), EtcdError> {
        let pooled = self.idle.lock().map(|mut v| v.pop()).unwrap_or(None);
        let (mut sender, mut conn) = match pooled {
            Some((s, c)) if !s.is_closed() => (s, c),
            _ => {
                let (s, c) = self.connect(via).await?;
                (s, Conn(c))
            }
        };
        if sender.ready().await.is_err() {
            let (s, c) = self.connect(via).await?;
            (sender, conn) = (s, Conn(c));
        }
        let resp = sender
            .send_request(self.request(path, body, via))
            .await
            .map_err(|e| self.transport(e))?;
        let status = resp.status();
        let bytes = read_all(resp.into_body(), &self.url).await?;
        if let Ok(mut idle) = self.idle.lock() {
            if idle.len() < MAX_IDLE && !sender.is_closed() {
                idle.push((sender, conn));
            }
        }
        Ok((status, bytes))
    }

    /// POST on a connection of its own and hand back the streaming reply
    /// (a watch).
    pub(super) async fn stream(
        &self,
        path: &str,
        body: &serde_json::Value,
        via: &Via,
    ) -> Result<(Response<Incoming>, tokio::task::JoinHandle<()>), EtcdError> {
        let (mut sender, task) = self.connect(via).await?;
        let resp = sender
            .send_request(self.request(path, body, via))
            .await
            .map_err(|e| self.transport(e));
        match resp {
            Ok(r) => Ok((r, task)),
            Err(e) => {
                task.abort();
                Err(e)
            }
        }
    }

    fn transport(&self, e: hyper::Error) -> EtcdError {
        // A reply that is not HTTP is the endpoint's fault, not the path's.
        if e.is_parse() || e.is_parse_status() || e.is_user() {
            EtcdError::Reply(format!("{}: bad HTTP reply: {e}", self.url))
        } else {
            EtcdError::Unreachable(format!("{}: {e}", self.url))
        }
    }
}

/// A failed TLS handshake: a certificate etcd or this client refused is
/// [`EtcdError::Tls`] (another member will not do better: the same CA and
/// certificate); anything else (reset, closed) is unreachable.
fn tls_error(url: &str, e: &std::io::Error) -> EtcdError {
    let inner = e.get_ref().and_then(|i| i.downcast_ref::<rustls::Error>());
    match inner {
        Some(c @ rustls::Error::InvalidCertificate(_)) => EtcdError::Tls(format!(
            "{url}: {c} (is fleet.tls.ca the CA that signed etcd's certificate, for this host name?)"
        )),
        Some(a @ rustls::Error::AlertReceived(_)) => EtcdError::Tls(format!(
            "{url}: etcd refused the TLS handshake: {a} (is fleet.tls.cert signed by etcd's --trusted-ca-file?)"
        )),
        Some(other) => EtcdError::Tls(format!("{url}: TLS: {other}")),
        None => EtcdError::Unreachable(format!("{url}: TLS: {e}")),
    }
}

/// The whole reply body, its strings over [`super::stream::MAX_STRING`]
/// dropped as they arrive (a huge value costs a pass, not memory); more than
/// [`MAX_REPLY_BYTES`] kept is [`EtcdError::TooLarge`] (the caller drops
/// the connection, the rest is not read).
async fn read_all(mut body: Incoming, url: &str) -> Result<Bytes, EtcdError> {
    let mut out = Vec::new();
    let mut json = Some(Stream::default());
    while let Some(frame) = body.frame().await {
        let frame = frame.map_err(|e| EtcdError::Reply(format!("{url}: bad reply body: {e}")))?;
        let Ok(data) = frame.into_data() else {
            continue;
        };
        if data.len() >= BIG_PIECE {
            // Looked at on a blocking thread (a huge value): the runtime
            // serves its clients meanwhile.
            let taken = std::mem::take(&mut out);
            (json, out) = tokio::task::spawn_blocking(move || take_in(json, &data, taken))
                .await
                .map_err(|e| EtcdError::Reply(format!("{url}: reading a reply: {e}")))?;
        } else {
            (json, out) = take_in(json, &data, out);
        }
        if out.len() > MAX_REPLY_BYTES {
            return Err(EtcdError::TooLarge(format!(
                "{url}: a reply over {MAX_REPLY_BYTES} bytes: not read"
            )));
        }
    }
    Ok(Bytes::from(out))
}

/// A piece of a reply this large is looked at on a blocking thread.
const BIG_PIECE: usize = 64 << 10;

/// Add `data` to `out`: through `json` (long strings dropped) while the
/// reply is JSON, as it is after (an error page).
fn take_in(mut json: Option<Stream>, data: &[u8], mut out: Vec<u8>) -> (Option<Stream>, Vec<u8>) {
    let mut rest = data;
    while let Some(s) = &mut json {
        match s.feed(rest, &mut out) {
            Ok(Some(n)) => rest = &rest[n..],
            Ok(None) => {
                rest = &[];
                break;
            }
            Err(_) => json = None,
        }
    }
    out.extend_from_slice(rest);
    (json, out)
}
