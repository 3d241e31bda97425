//! `--metrics ADDR`: Prometheus text exposition (format 0.0.4) on
//! `GET /metrics`, served by a tiny HTTP/1.0 responder: one request per
//! connection, request head ≤ 8 KiB read within 5 s, at most 16 scrapes at
//! once, `Connection: close`. Everything is read from the live atomics at
//! scrape time, through the services [`Registry`]; the text itself is
//! [`crate::render::prometheus`]'s. Changes no state.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::registry::Registry;
use crate::render::process::ProcessView;
use crate::render::{ListenerView, Pipes};
use crate::service::Service;

const MAX_REQUEST: usize = 8 * 1024;
const IO_TIMEOUT: Duration = Duration::from_secs(5);
const MAX_SCRAPES: usize = 16;

/// Answer scrapes on `listener` until `shutdown`.
pub async fn serve(listener: TcpListener, services: Registry, shutdown: CancellationToken) {
    let slots = Arc::new(Semaphore::new(MAX_SCRAPES));
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
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            continue; // too many scrapes at once: drop this one
        };
        let services = services.clone();
        tokio::spawn(async move {
            if let Err(e) = tokio::time::timeout(IO_TIMEOUT, answer(sock, &services)).await {
                debug!("metrics: {e}");
            }
            drop(permit);
        });
    }
}

async fn answer(mut sock: TcpStream, services: &Registry) {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !buf.windows(4).any(|w| w == b"\r\n\r\n") && !buf.windows(2).any(|w| w == b"\n\n") {
        match sock.read(&mut chunk).await {
            Ok(0) | Err(_) => break,
            Ok(n) => buf.extend_from_slice(&chunk[..n]),
        }
        if buf.len() > MAX_REQUEST {
            let _ = respond(&mut sock, "431 Request Header Fields Too Large", "").await;
            return;
        }
    }
    let line = buf.split(|b| *b == b'\n').next().unwrap_or(b"");
    let line = String::from_utf8_lossy(line);
    let mut parts = line.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let (status, body) = match (method, path.split('?').next().unwrap_or("")) {
        ("GET", "/metrics") => ("200 OK", render(&services.services())),
        ("GET", _) => ("404 Not Found", "try /metrics\n".to_string()),
        _ => ("405 Method Not Allowed", String::new()),
    };
    let _ = respond(&mut sock, status, &body).await;
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
pub fn render(svcs: &[Arc<Service>]) -> String {
    let views: Vec<ListenerView> = svcs.iter().map(|s| ListenerView::of(s)).collect();
    crate::render::prometheus::exposition(&views, Pipes::now(), ProcessView::now())
}

#[cfg(test)]
mod tests;
