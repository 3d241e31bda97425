//! `--metrics ADDR`: Prometheus text exposition (format 0.0.4) on
//! `GET /metrics`, served by a tiny HTTP/1.0 responder: one request per
//! connection, `Connection: close`. The request head (≤ 8 KiB) must arrive
//! whole within 2 s (bytes trickling in do not extend it); at most 64
//! connections at once, and when all are taken the one that has waited
//! longest for its request is dropped for the newcomer, so slow or idle
//! peers cannot keep a scraper out ([`crate::slots`]). Everything is read
//! from the live atomics at scrape time, through the services
//! [`Registry`]; the text itself is [`crate::render::prometheus`]'s.
//! Changes no state.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::registry::Registry;
use crate::render::process::ProcessView;
use crate::render::{ListenerView, Pipes};
use crate::service::Service;
use crate::slots::{Slot, Slots};

const MAX_REQUEST: usize = 8 * 1024;
/// The whole request head, from accept.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);
/// Writing the answer.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SCRAPES: usize = 64;

/// Answer scrapes on `listener` until `shutdown`.
pub(crate) async fn serve(listener: TcpListener, services: Registry, shutdown: CancellationToken) {
    let slots = Slots::new(MAX_SCRAPES, Duration::ZERO);
    loop {
        let accepted = tokio::select! {
            _ = shutdown.cancelled() => return,
            r = listener.accept() => r,
        };
        let Ok((sock, _)) = accepted else {
            // Resource errors: pause briefly instead of spinning.
            tokio::time::sleep(Duration::from_millis(50)).await;
            continue;
        };
        let Some(slot) = slots.acquire() else {
            continue; // every place is busy answering: drop this one
        };
        let services = services.clone();
        tokio::spawn(async move {
            tokio::select! {
                _ = slot.evicted() => debug!("metrics: pending request dropped for a newer one"),
                _ = answer(sock, &services, &slot) => {}
            }
        });
    }
}

async fn answer(mut sock: TcpStream, services: &Registry, slot: &Slot) {
    let head = match tokio::time::timeout(REQUEST_TIMEOUT, read_head(&mut sock)).await {
        Err(_) => {
            debug!("metrics: no complete request within {REQUEST_TIMEOUT:?}");
            return;
        }
        Ok(None) => return,
        Ok(Some(h)) => h,
    };
    slot.busy();
    let (status, body) = match head {
        Head::TooLarge => ("431 Request Header Fields Too Large", String::new()),
        Head::Request(buf) => route(&buf, services),
    };
    if tokio::time::timeout(IO_TIMEOUT, respond(&mut sock, status, &body))
        .await
        .is_err()
    {
        debug!("metrics: answer not taken within {IO_TIMEOUT:?}");
    }
}

enum Head {
    Request(Vec<u8>),
    TooLarge,
}

/// The request head, up to its blank line (or the peer's EOF); `None` on
/// a read error.
async fn read_head(sock: &mut TcpStream) -> Option<Head> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        match sock.read(&mut chunk).await {
            Ok(0) => break,
            Err(_) => return None,
            Ok(n) => buf.extend_from_slice(chunk.get(..n).unwrap_or_default()),
        }
        if buf.len() > MAX_REQUEST {
            return Some(Head::TooLarge);
        }
    }
    Some(Head::Request(buf))
}

fn route(buf: &[u8], services: &Registry) -> (&'static str, String) {
    let line = buf.split(|b| *b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", render(&services.services())),
        ("GET", _) => ("404 Not Found", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", String::new()),
    }
}

async fn respond(sock: &mut TcpStream, status: &str, body: &str) -> std::io::Result<()> {
    let head = format!(
        "HTTP/1.0 {status}\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    sock.write_all(head.as_bytes()).await?;
    sock.write_all(body.as_bytes()).await?;
    sock.shutdown().await
}

/// The exposition text for these Services, read from their live
/// atomics now.
pub(crate) fn render(svcs: &[Arc<Service>]) -> String {
    let views: Vec<ListenerView> = svcs.iter().map(|s| ListenerView::of(s)).collect();
    crate::render::prometheus::exposition(&views, Pipes::now(), ProcessView::now())
}

#[cfg(test)]
mod tests;
