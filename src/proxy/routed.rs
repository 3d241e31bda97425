//! A routed listener's first step: the client's key (the TLS server name
//! peeked from its ClientHello, or an address) and the group it starts
//! from. Only listeners with `route:` come here; the rest never pay for it.
//!
//! The ClientHello is read with MSG_PEEK: the bytes stay in the socket's
//! receive queue and the relay (splice or buffered) forwards them with the
//! rest, unchanged, so nothing is buffered across the connect, the relay
//! and its byte counters need no prefix, and TLS is never terminated.
//!
//! The first peek waits for the socket to be readable. A hello still
//! incomplete after a peek (fragmented over segments, or a client that
//! stalls) is peeked again after a short pause that doubles up to
//! [`REPEEK_MAX`]: the socket's read readiness is never cleared here, so
//! the relay that follows sees the queued bytes at once, whatever happened
//! (clearing it to wait for the next segment would leave a client that
//! stopped mid-hello unserved after the bound: its bytes are queued but no
//! new edge would ever announce them). Bounded in time (`peek_timeout`)
//! and size (`peek_bytes`); past either the client gets the default.

use std::io;

use tokio::io::Interest;
use tokio::net::TcpStream;
use tracing::debug;

use crate::config::route::{RouteBy, RouteTarget};
use crate::connlog::RouteNote;
use crate::route::sni::{self, Peek};
use crate::route::{OwnedKey, Router};

use super::Peer;

/// The first peek's size: a usual ClientHello fits (post-quantum key
/// shares make some about 1.8 KiB); a larger one grows the buffer.
const FIRST_PEEK: usize = 2048;

/// The pauses between peeks at an incomplete ClientHello.
const REPEEK_MIN: std::time::Duration = std::time::Duration::from_millis(1);
const REPEEK_MAX: std::time::Duration = std::time::Duration::from_millis(50);

/// Where a routed client goes.
pub(crate) enum Routed {
    /// Its group's chain starts here.
    Group(usize),
    /// `reject`: closed.
    Reject,
    /// The client reset while we peeked.
    Gone,
}

pub(crate) async fn route(r: &Router, client: &TcpStream, peer: &Peer) -> Routed {
    let key = match r.by {
        RouteBy::Sni => {
            match tokio::time::timeout(r.peek_timeout, peek_sni(client, r.peek_bytes)).await {
                Ok(Ok(name)) => name.map(OwnedKey::Name),
                Ok(Err(e)) => {
                    debug!("client gone while its ClientHello was read: {e}");
                    return Routed::Gone;
                }
                Err(_) => {
                    debug!("no complete ClientHello within {:?}", r.peek_timeout);
                    None
                }
            }
        }
        // A trusted PROXY header's addresses stand for the socket's.
        RouteBy::Dst | RouteBy::Src => {
            r.addr_key(peer.dst.or_else(|| client.local_addr().ok()), peer.addr)
        }
    };
    let d = r.decide(key.as_ref()).await;
    debug!(key = ?key.as_ref().map(OwnedKey::text), target = %r.target_name(d.target), source = %d.source, "routed");
    // For the connection log: kept only by a logged connection's task.
    super::notes::note(|n| {
        n.route = Some(Box::new(RouteNote {
            key: key.as_ref().map(|k| k.text().into()),
            source: d.source.word(),
            target: r.target_name(d.target).into(),
        }));
    });
    match d.target {
        RouteTarget::Group(g) => Routed::Group(g),
        RouteTarget::Reject => Routed::Reject,
    }
}

/// The server name of the ClientHello at the head of `client`'s receive
/// queue (left there); None when the client sent something else, a hello
/// without a name, or closed before a complete one.
async fn peek_sni(client: &TcpStream, max: usize) -> io::Result<Option<sni::Name>> {
    let mut buf = vec![0u8; FIRST_PEEK.min(max)];
    let mut pause = REPEEK_MIN;
    client.readable().await?;
    loop {
        // Through `try_io`: an empty queue (readiness was stale) clears the
        // readiness, and only then; bytes queued never do.
        let n = match client.try_io(Interest::READABLE, || crate::sys::peek(client, &mut buf)) {
            Ok(n) => n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                client.readable().await?;
                continue;
            }
            Err(e) => return Err(e),
        };
        match sni::parse(buf.get(..n).unwrap_or_default()) {
            Peek::Name(name) => return Ok(Some(name)),
            Peek::NoSni => return Ok(None),
            // EOF before a whole hello, or one larger than allowed.
            Peek::NeedMore(want) if n == 0 || want > max => return Ok(None),
            Peek::NeedMore(want) => {
                if n == buf.len() {
                    // The buffer is full: grow it to what the hello needs.
                    buf.resize(want, 0);
                    continue;
                }
                tokio::time::sleep(pause).await;
                pause = (pause * 2).min(REPEEK_MAX);
            }
        }
    }
}
