//! `redis[:password_file=PATH][:role=master|replica]`: `AUTH` with the
//! password when one is given, `PING` (`+PONG`), then with `role=` ask
//! `ROLE` (falling back to `INFO replication` where `ROLE` is refused or
//! renamed) and require that role, so a listener in front of a primary
//! and its replicas follows a Sentinel or operator promotion.
//!
//! Replies are RESP, parsed by [`parse`] with bounds on size (the probe's
//! [`MAX_REPLY`](super::MAX_REPLY)), nesting and element counts.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::{Ctx, Finding, escape, io_reason, read_until, tcp};
use crate::config::monitor::RedisRole;

/// Deepest nesting of arrays accepted (`ROLE` on a primary nests two).
const MAX_DEPTH: usize = 4;

/// One RESP value, as far as the check needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Value {
    /// `+text` (simple string) or `$n` bulk string (lossy UTF-8).
    Text(String),
    /// `-text`.
    Error(String),
    /// `:n`.
    Int(i64),
    /// `$-1` or `*-1`.
    Nil,
    Array(Vec<Value>),
}

/// Parse one reply at the start of `buf`: `None` while incomplete, else the
/// value and the bytes it took, or why the bytes are not RESP.
pub fn parse(buf: &[u8]) -> Option<Result<(Value, usize), String>> {
    parse_at(buf, 0)
}

fn parse_at(buf: &[u8], depth: usize) -> Option<Result<(Value, usize), String>> {
    let line_end = buf.windows(2).position(|w| w == b"\r\n")?;
    let (kind, rest) = buf.split_first()?;
    let line = rest.get(..line_end.saturating_sub(1)).unwrap_or_default();
    let text = || String::from_utf8_lossy(line).into_owned();
    let after = line_end + 2;
    let int = || -> Result<i64, String> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|s| s.parse::<i64>().ok())
            .ok_or_else(|| format!("bad length or integer \"{}\"", escape(line)))
    };
    Some(match kind {
        b'+' => Ok((Value::Text(text()), after)),
        b'-' => Ok((Value::Error(text()), after)),
        b':' => int().map(|n| (Value::Int(n), after)),
        b'$' => match int() {
            Err(e) => Err(e),
            Ok(-1) => Ok((Value::Nil, after)),
            Ok(n) if n < 0 => Err(format!("bad bulk length {n}")),
            Ok(n) => {
                let n = usize::try_from(n).unwrap_or(usize::MAX);
                let end = after.checked_add(n)?;
                let data = buf.get(after..end)?;
                match buf.get(end..end.checked_add(2)?)? {
                    b"\r\n" => Ok((
                        Value::Text(String::from_utf8_lossy(data).into_owned()),
                        end + 2,
                    )),
                    _ => Err("bulk string without its line end".into()),
                }
            }
        },
        b'*' => match int() {
            Err(e) => Err(e),
            Ok(-1) => Ok((Value::Nil, after)),
            Ok(n) if n < 0 => Err(format!("bad array length {n}")),
            Ok(_) if depth >= MAX_DEPTH => Err("arrays nested too deep".into()),
            Ok(n) => {
                // Items are pushed only as parsed, so a large count with
                // little data ends at the buffer's end (incomplete).
                let mut items = Vec::new();
                let mut at = after;
                for _ in 0..n {
                    match parse_at(buf.get(at..)?, depth + 1)? {
                        Ok((v, used)) => {
                            items.push(v);
                            at += used;
                        }
                        Err(e) => return Some(Err(e)),
                    }
                }
                Ok((Value::Array(items), at))
            }
        },
        _ => Err(format!("not a RESP reply: \"{}\"", escape(buf))),
    })
}

/// The check.
pub(crate) async fn run(
    ctx: &Ctx,
    password: Option<&str>,
    role: Option<RedisRole>,
) -> Result<(), Finding> {
    let mut s = tcp(ctx.addr, ctx.dial()).await?;
    if let Some(p) = password {
        match command(&mut s, &[b"AUTH", p.as_bytes()]).await? {
            Value::Text(t) if t == "OK" => {}
            Value::Error(e) => return Err(format!("AUTH: {}", escape(e.as_bytes())).into()),
            v => return Err(format!("AUTH: unexpected reply {}", shown(&v)).into()),
        }
    }
    match command(&mut s, &[b"PING"]).await? {
        Value::Text(t) if t == "PONG" => {}
        Value::Error(e) => return Err(format!("PING: {}", escape(e.as_bytes())).into()),
        v => return Err(format!("PING: unexpected reply {}", shown(&v)).into()),
    }
    let Some(want) = role else {
        return Ok(());
    };
    let have = server_role(&mut s).await?;
    let is = match have.as_str() {
        "master" => Some(RedisRole::Master),
        "slave" | "replica" => Some(RedisRole::Replica),
        _ => None,
    };
    if is == Some(want) {
        Ok(())
    } else {
        let want = match want {
            RedisRole::Master => "master",
            RedisRole::Replica => "replica",
        };
        Err(format!("role {}, want {want}", escape(have.as_bytes())).into())
    }
}

/// The server's role word: `ROLE`'s first element, or `role:` of `INFO
/// replication` when `ROLE` answers an error (renamed, or an old server).
async fn server_role(s: &mut TcpStream) -> Result<String, String> {
    match command(s, &[b"ROLE"]).await? {
        Value::Array(items) => match items.first() {
            Some(Value::Text(r)) => return Ok(r.clone()),
            _ => return Err("ROLE: reply without a role".into()),
        },
        Value::Error(_) => {}
        v => return Err(format!("ROLE: unexpected reply {}", shown(&v))),
    }
    match command(s, &[b"INFO", b"replication"]).await? {
        Value::Text(info) => info
            .lines()
            .find_map(|l| l.strip_prefix("role:"))
            .map(|r| r.trim().to_string())
            .ok_or_else(|| "INFO replication: no role".to_string()),
        Value::Error(e) => Err(format!("INFO replication: {}", escape(e.as_bytes()))),
        v => Err(format!("INFO replication: unexpected reply {}", shown(&v))),
    }
}

/// Send one command as a RESP array and read its reply.
async fn command(s: &mut TcpStream, args: &[&[u8]]) -> Result<Value, String> {
    s.write_all(&encode(args))
        .await
        .map_err(|e| io_reason(&e))?;
    let mut buf = Vec::new();
    let eof = read_until(s, &mut buf, |b| parse(b).is_some()).await?;
    match parse(&buf) {
        Some(Ok((v, _))) => Ok(v),
        Some(Err(e)) => Err(e),
        None if eof && buf.is_empty() => Err("connection closed".into()),
        None if eof => Err(format!("reply cut short: \"{}\"", escape(&buf))),
        None => Err(format!("reply longer than {} bytes", super::MAX_REPLY)),
    }
}

/// A command as a RESP array of bulk strings.
pub(crate) fn encode(args: &[&[u8]]) -> Vec<u8> {
    let mut out = format!("*{}\r\n", args.len()).into_bytes();
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// A reply in a reason: short and escaped.
fn shown(v: &Value) -> String {
    escape(format!("{v:?}").as_bytes())
}

#[cfg(test)]
mod tests;
