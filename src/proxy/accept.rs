//! `accept_proxy`: the PROXY header an upstream balancer puts before its
//! client's bytes. From a listed source the header is required (v1 or v2,
//! told apart by signature), read within [`HEADER_TIMEOUT`] and at most
//! [`proxy_header::MAX_HEADER`] bytes, and never a byte past it: what
//! follows is the client's, relayed as usual (splice included). From any
//! other source no header is trusted: one that has already arrived when
//! the connection is accepted closes it (counted `untrusted`), anything
//! later is the client's data. Writes only the listener's `proxy_*`
//! counters. Runs only on listeners with `accept_proxy`.

use std::io;
use std::net::SocketAddr;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::net::TcpStream;
use tracing::{debug, warn};

use super::{Peer, canonical};
use crate::proxy_header::{self, Addrs, HeaderError, MAX_HEADER, Parsed};
use crate::service::Service;

/// How long a listed source has to send its whole header.
pub(crate) const HEADER_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a connection was closed before its header was accepted.
#[derive(Debug, thiserror::Error)]
enum Refused {
    #[error("{0}")]
    Malformed(#[from] HeaderError),
    #[error("closed before its PROXY header was complete")]
    Eof,
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no complete PROXY header within {}s", HEADER_TIMEOUT.as_secs())]
    Slow,
    #[error("a PROXY header from a source not listed in accept_proxy")]
    Untrusted,
}

/// The client behind this connection, or `None` when it was refused (and
/// counted; the caller drops the socket). `peer` is the socket's peer.
pub(crate) async fn client(svc: &Service, sock: &TcpStream, peer: SocketAddr) -> Option<Peer> {
    let res = if svc.cfg.accept_proxy.iter().any(|c| c.contains(peer.ip())) {
        match tokio::time::timeout(HEADER_TIMEOUT, read_header(sock)).await {
            Ok(Ok(Addrs::Tcp { src, dst })) => Ok(Peer {
                addr: canonical(src),
                dst: Some(canonical(dst)),
            }),
            Ok(Ok(Addrs::Local)) => Ok(Peer {
                addr: peer,
                dst: None,
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(Refused::Slow),
        }
    } else if untrusted_header(sock) {
        Err(Refused::Untrusted)
    } else {
        return Some(Peer {
            addr: peer,
            dst: None,
        });
    };
    let s = &svc.stats;
    match res {
        Ok(p) => {
            s.proxy_accepted.fetch_add(1, Relaxed);
            if p.addr != peer {
                debug!(via = %peer, "client address from the PROXY header");
                tracing::Span::current().record("client", tracing::field::display(p.addr));
            }
            Some(p)
        }
        Err(e) => {
            let counter = match e {
                Refused::Slow => &s.proxy_slow,
                Refused::Untrusted => &s.proxy_untrusted,
                Refused::Malformed(_) | Refused::Eof | Refused::Io(_) => &s.proxy_malformed,
            };
            counter.fetch_add(1, Relaxed);
            if let Some(more) = s.proxy_log.due() {
                warn!(listener = %svc.cfg.name, client = %peer,
                      "closed: {e} ({more} more refused headers since the last such line)");
            }
            None
        }
    }
}

/// Whether the bytes already received start with a PROXY signature (one
/// non-blocking peek; nothing is consumed).
fn untrusted_header(sock: &TcpStream) -> bool {
    let mut buf = [0u8; proxy_header::SIGNATURE_LEN];
    let n = crate::sys::peek_now(sock, &mut buf);
    proxy_header::has_signature(buf.get(..n).unwrap_or_default())
}

/// Read exactly the header: peek at what has arrived, consume what the
/// parser says belongs to the header, wait for more only when it is
/// incomplete (every byte consumed then is the header's, so the next peek
/// waits for new data instead of spinning on the old).
async fn read_header(sock: &TcpStream) -> Result<Addrs, Refused> {
    let mut buf = vec![0u8; MAX_HEADER];
    let mut have = 0;
    loop {
        let Some(room) = buf.get_mut(have..) else {
            return Err(Refused::Malformed(HeaderError::V2TooLong(have)));
        };
        let n = sock.peek(room).await?;
        if n == 0 {
            return Err(Refused::Eof);
        }
        let seen = buf.get(..have + n).unwrap_or_default();
        match proxy_header::parse(seen)? {
            Parsed::Complete { len, addrs } => {
                read_exact(sock, buf.get_mut(have..len).unwrap_or_default()).await?;
                return Ok(addrs);
            }
            Parsed::Incomplete => {
                read_exact(sock, buf.get_mut(have..have + n).unwrap_or_default()).await?;
                have += n;
            }
        }
    }
}

/// Read bytes a peek has shown are there.
async fn read_exact(sock: &TcpStream, mut buf: &mut [u8]) -> Result<(), Refused> {
    while !buf.is_empty() {
        sock.readable().await?;
        match sock.try_read(buf) {
            Ok(0) => return Err(Refused::Eof),
            Ok(n) => buf = buf.get_mut(n..).unwrap_or_default(),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(e) => return Err(Refused::Io(e)),
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests;
