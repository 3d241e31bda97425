//! `http=PATH`: HTTP/1.1 GET, optionally on a side port (`port=`, like a
//! mysqlchk service on 31337); pass when the status is in `expect` and, with
//! `body=`, the text appears in the reply. A reply whose header has not
//! ended within [`MAX_REPLY`] bytes fails (as does one cut by the timeout).

use std::net::SocketAddr;

use tokio::io::AsyncWriteExt;

use super::{Ctx, MAX_REPLY, contains, escape, read_until, tcp};

pub(crate) async fn run(
    ctx: &Ctx,
    path: &str,
    port: Option<u16>,
    host: Option<&str>,
    expect: &[(u16, u16)],
    body: Option<&str>,
) -> Result<(), String> {
    let addr = SocketAddr::new(ctx.addr.ip(), port.unwrap_or(ctx.addr.port()));
    // A side port (`port=`) is another service: no PROXY header there.
    let dial = if addr == ctx.addr {
        ctx.dial()
    } else {
        super::Dial {
            proxy: None,
            ..ctx.dial()
        }
    };
    let mut s = tcp(addr, dial).await?;
    let host = match host {
        Some(h) => h.to_string(),
        None if addr.port() == 80 => ctx.host.clone(),
        None => format!("{}:{}", ctx.host, addr.port()),
    };
    let req = format!(
        "GET {path} HTTP/1.1\r\nHost: {host}\r\nUser-Agent: balance-check\r\nAccept: */*\r\nConnection: close\r\n\r\n"
    );
    s.write_all(req.as_bytes())
        .await
        .map_err(|e| format!("send failed: {}", super::io_reason(&e)))?;
    let mut buf = Vec::new();
    let want = body.map(str::as_bytes);
    read_until(&mut s, &mut buf, |b| reply_complete(b, want)).await?;
    check_reply(&buf, expect, want)
}

/// Enough of the reply to judge it: the headers, and with `body=` either the
/// text itself or the whole `Content-Length` body (servers that ignore
/// `Connection: close` would otherwise keep us waiting for EOF).
#[doc(hidden)]
pub fn reply_complete(b: &[u8], want: Option<&[u8]>) -> bool {
    let Some(end) = header_end(b) else {
        return false;
    };
    let Some(want) = want else {
        return true;
    };
    let body = b.get(end..).unwrap_or_default();
    if contains(body, want) {
        return true;
    }
    content_length(b.get(..end).unwrap_or_default()).is_some_and(|n| body.len() >= n)
}

/// Where the body starts: after the first blank line (CRLF or bare LF).
fn header_end(b: &[u8]) -> Option<usize> {
    find(b, b"\r\n\r\n")
        .map(|i| i + 4)
        .or_else(|| find(b, b"\n\n").map(|i| i + 2))
}

fn header_too_long() -> String {
    format!("reply header not complete within {MAX_REPLY} bytes")
}

fn content_length(head: &[u8]) -> Option<usize> {
    let text = std::str::from_utf8(head).ok()?;
    text.lines().find_map(|line| {
        let (k, v) = line.split_once(':')?;
        if k.trim().eq_ignore_ascii_case("content-length") {
            v.trim().parse().ok()
        } else {
            None
        }
    })
}

/// Judge a (possibly partial) reply.
pub fn check_reply(buf: &[u8], expect: &[(u16, u16)], body: Option<&[u8]>) -> Result<(), String> {
    if buf.is_empty() {
        return Err("empty reply".into());
    }
    let line = match buf.iter().position(|&b| b == b'\n') {
        Some(i) => buf.get(..i).unwrap_or_default(),
        None if buf.len() >= MAX_REPLY => return Err(header_too_long()),
        None => return Err(format!("short reply \"{}\"", escape(buf))),
    };
    // A header still going at the cap is no answer, whatever its status:
    // a reply that streams header bytes forever must not pass.
    if buf.len() >= MAX_REPLY && header_end(buf).is_none() {
        return Err(header_too_long());
    }
    let status =
        parse_status_line(line).ok_or_else(|| format!("bad status line \"{}\"", escape(line)))?;
    if !expect.iter().any(|&(a, b)| (a..=b).contains(&status)) {
        return Err(format!("HTTP {status}"));
    }
    if let Some(want) = body {
        let start = find(buf, b"\r\n\r\n").map(|i| i + 4).unwrap_or(buf.len());
        if !contains(buf.get(start..).unwrap_or_default(), want) {
            return Err(format!("HTTP {status} body mismatch"));
        }
    }
    Ok(())
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

/// `HTTP/1.x NNN ...` → NNN.
pub fn parse_status_line(line: &[u8]) -> Option<u16> {
    let rest = line.strip_prefix(b"HTTP/")?;
    let sp = rest.iter().position(|&b| b == b' ')?;
    let code = rest.get(sp + 1..sp + 4)?;
    if !code.iter().all(u8::is_ascii_digit) {
        return None;
    }
    if let Some(&next) = rest.get(sp + 4) {
        if !matches!(next, b' ' | b'\r' | b'\n') {
            return None;
        }
    }
    std::str::from_utf8(code).ok()?.parse().ok()
}

#[cfg(test)]
mod tests;
