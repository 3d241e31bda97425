//! `mysql[:user=NAME[:password_file=PATH]]`: read the server greeting
//! (protocol v10) and fail on an error packet or garbage (1040 too many
//! connections and 1129 host blocked are [`Finding::Full`]). With `user=`,
//! log in (HandshakeResponse41; mysql_native_password, or
//! caching_sha2_password's fast path; full authentication, which would send
//! the password, is refused without TLS) and send COM_QUIT, so the
//! server counts no aborted connection; without it, close after the greeting
//! (the server counts that as an aborted connect, and after
//! `max_connect_errors` blocks our host: use `user=`).
//!
//! Logged in, `read_only=` and `max_lag=` ask the server (text queries,
//! [`query`]) and judge the answers ([`replica`]) before COM_QUIT.

mod auth;
mod query;
mod replica;

use auth::*;

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Ctx, Finding, MAX_REPLY, escape, io_reason, tcp};
use crate::health::Facts;

const COM_QUIT: u8 = 0x01;

/// Server errors that mean "full", not "down": 1040 too many connections,
/// 1129 host blocked (too many connection errors).
pub(crate) const FULL_ERRORS: [u16; 2] = [1040, 1129];

/// What a logged-in check asks the server besides the login.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Role {
    /// `read_only=0|1`: `@@read_only` must match.
    pub(crate) read_only: Option<bool>,
    /// `max_lag=D`: replication checks and the catch-up gate.
    pub(crate) max_lag: Option<Duration>,
}

/// The check; with `max_lag`, a replica's lag (seconds, when known) is
/// noted in `facts` whatever the outcome.
pub(crate) async fn run(
    ctx: &Ctx,
    user: Option<&str>,
    password: Option<&str>,
    role: Role,
    facts: &mut Facts,
) -> Result<(), Finding> {
    let mut lag = None;
    let r = match login(ctx.addr, ctx.dial(), user, password, ctx.pending.as_deref()).await {
        Ok(Some(mut s)) => {
            let judged = ask(&mut s, ctx, role, &mut lag, facts).await;
            quit(s).await;
            judged
        }
        Ok(None) => Ok(()),
        Err(e) => Err(e),
    };
    if role.max_lag.is_some() {
        facts.lag = Some(lag);
    }
    r
}

/// Log in as `user` and run one query; its first value (NULL as empty).
/// For the control socket's `switchover` (GTID positions).
pub(crate) async fn value(
    addr: std::net::SocketAddr,
    dial: super::Dial,
    user: &str,
    password: Option<&str>,
    sql: &str,
) -> Result<String, Finding> {
    let Some(mut s) = login(addr, dial, Some(user), password, None).await? else {
        return Err("no login".into());
    };
    let rows = query::query(&mut s, sql).await;
    quit(s).await;
    let rows = rows?;
    Ok(rows
        .rows
        .first()
        .and_then(|r| r.first())
        .cloned()
        .flatten()
        .unwrap_or_default())
}

/// MariaDB GTID positions: how many transactions of `wanted` `have` lacks.
pub(crate) use replica::gtid_behind;

/// COM_QUIT, then let the server close first, briefly: it counts no
/// aborted connection.
async fn quit(mut s: TcpStream) {
    let _ = s.write_all(&packet(0, &[COM_QUIT])).await;
    let mut b = [0u8; 64];
    let _ = tokio::time::timeout(Duration::from_millis(200), s.read(&mut b)).await;
}

/// Connect (or take the connection an earlier check left waiting) and
/// read the greeting. The connection lives in `pending` while it waits, so
/// a check cut by its timeout leaves it there for the next one.
async fn greeted(
    pending: &super::Pending,
    addr: std::net::SocketAddr,
    dial: super::Dial,
) -> Result<(TcpStream, (u8, Vec<u8>)), Finding> {
    let mut slot = pending.lock().await;
    if slot
        .as_ref()
        .is_some_and(|p| p.addr != addr || p.since.elapsed() > super::PENDING_MAX)
    {
        *slot = None;
    }
    loop {
        // A connection left by an earlier check that has since failed
        // (the server restarted, say) is replaced at once.
        let fresh = slot.is_none();
        if fresh {
            let stream = tcp(addr, dial).await?;
            *slot = Some(super::Parked {
                addr,
                since: std::time::Instant::now(),
                stream,
            });
        }
        let Some(parked) = slot.as_mut() else {
            return Err("no connection".into());
        };
        // Readable first (cancel-safe): a check cut here keeps the
        // connection whole for the next one.
        let read = match parked.stream.readable().await {
            Ok(()) => read_packet(&mut parked.stream).await,
            Err(e) => Err(super::io_reason(&e)),
        };
        let Some(parked) = slot.take() else {
            return Err("no connection".into());
        };
        match read {
            Ok(g) => return Ok((parked.stream, g)),
            Err(e) if fresh => return Err(e.into()),
            Err(_) => {}
        }
    }
}

/// Read the greeting; with a user, log in. `Some(stream)` once logged in,
/// `None` after the greeting when there is no user.
async fn login(
    addr: std::net::SocketAddr,
    dial: super::Dial,
    user: Option<&str>,
    password: Option<&str>,
    pending: Option<&super::Pending>,
) -> Result<Option<TcpStream>, Finding> {
    let (mut s, (seq, greeting)) = match pending {
        None => {
            let mut s = tcp(addr, dial).await?;
            let g = read_packet(&mut s).await?;
            (s, g)
        }
        Some(p) => greeted(p, addr, dial).await?,
    };
    if greeting.first() == Some(&0xff) {
        return Err(error_finding(&greeting));
    }
    let g = parse_greeting_full(&greeting)?;
    let Some(user) = user else {
        return Ok(None);
    };
    let password = password.unwrap_or_default();
    let plugin = if g.plugin == CACHING_SHA2 {
        CACHING_SHA2
    } else {
        NATIVE
    };
    let auth = scramble(plugin, password, &g.scramble);
    send(
        &mut s,
        seq.wrapping_add(1),
        &handshake_response(user, g.caps, plugin, &auth),
    )
    .await?;
    // OK, error, an auth switch (answered once) or caching_sha2's
    // "more data" (fast auth done, or a full auth we refuse without TLS).
    let mut switched = false;
    for _ in 0..4 {
        let (seq, reply) = read_packet(&mut s).await?;
        match reply.first() {
            Some(0x00) => return Ok(Some(s)),
            Some(0xff) => return Err(error_finding(&reply)),
            Some(0xfe) if !switched => {
                switched = true;
                let (name, data) = auth_switch(&reply)?;
                let auth = scramble(name, password, data);
                send(&mut s, seq.wrapping_add(1), &auth).await?;
            }
            Some(0x01) if reply.get(1) == Some(&0x03) => {} // fast auth ok; OK follows
            Some(0x01) if reply.get(1) == Some(&0x04) => {
                return Err(
                    "login failed: caching_sha2_password asks for full authentication \
                     (the server has not cached this user's password): refusing to send it \
                     without TLS; log in once with a TLS client, or use mysql_native_password"
                        .into(),
                );
            }
            _ => {
                return Err(format!("unexpected login reply \"{}\"", escape(&reply)).into());
            }
        }
    }
    Err("login did not complete".into())
}

/// The role and replication questions, over the logged-in session.
async fn ask(
    s: &mut TcpStream,
    ctx: &Ctx,
    role: Role,
    lag: &mut Option<u64>,
    facts: &mut Facts,
) -> Result<(), Finding> {
    if let Some(want) = role.read_only {
        replica::read_only(&query::query(s, "SELECT @@read_only").await?, want)?;
    }
    let Some(max_lag) = role.max_lag else {
        return Ok(());
    };
    // MariaDB first (every source, with Gtid_Slave_Pos), then MySQL 8.
    let mut status = Err(Finding::Failed(String::new()));
    for q in [
        "SHOW ALL SLAVES STATUS",
        "SHOW REPLICA STATUS",
        "SHOW SLAVE STATUS",
    ] {
        status = query::query(s, q).await;
        match &status {
            Err(Finding::Failed(r)) if r.starts_with("MySQL error 1064:") => continue,
            _ => break,
        }
    }
    let status = status?;
    *lag = replica::lag(&status);
    let verdict = replica::judge(&status, None, max_lag, ctx.backup);
    // The serving primary is judged as a primary: its own replication
    // (from the primary it replaced, say) breaking must not take the only
    // writer down; the service records (and tells once) that it broke.
    if ctx.primary {
        facts.replication_broken = Some(match verdict {
            replica::Verdict::Failed(r) => Some(r),
            _ => None,
        });
        return Ok(());
    }
    verdict.into_finding().map(|_| ())
}

/// Send one packet (a query, after the login).
async fn send_packet(s: &mut TcpStream, seq: u8, payload: &[u8]) -> Result<(), Finding> {
    s.write_all(&packet(seq, payload))
        .await
        .map_err(|e| Finding::Failed(format!("query failed: {}", io_reason(&e))))
}

async fn send(s: &mut TcpStream, seq: u8, payload: &[u8]) -> Result<(), String> {
    s.write_all(&packet(seq, payload))
        .await
        .map_err(|e| format!("login failed: {}", io_reason(&e)))
}

/// One packet: 3-byte little-endian length, sequence id, payload.
async fn read_packet(s: &mut TcpStream) -> Result<(u8, Vec<u8>), String> {
    let mut hdr = [0u8; 4];
    let mut got = 0;
    while got < 4 {
        let n = s
            .read(hdr.get_mut(got..).unwrap_or_default())
            .await
            .map_err(|e| io_reason(&e))?;
        if n == 0 {
            return Err(if got == 0 {
                "closed without a greeting".into()
            } else {
                "short banner".into()
            });
        }
        got += n;
    }
    let len = usize::from(hdr[0]) | usize::from(hdr[1]) << 8 | usize::from(hdr[2]) << 16;
    if len > MAX_REPLY {
        return Err(format!("oversized packet ({len} bytes): not MySQL?"));
    }
    let mut payload = vec![0u8; len];
    s.read_exact(&mut payload)
        .await
        .map_err(|_| "short banner".to_string())?;
    Ok((hdr[3], payload))
}

fn packet(seq: u8, payload: &[u8]) -> Vec<u8> {
    let len = payload.len().min(0xff_ffff);
    let mut p = Vec::with_capacity(4 + len);
    p.extend_from_slice(&[
        (len & 0xff) as u8,
        (len >> 8 & 0xff) as u8,
        (len >> 16) as u8,
        seq,
    ]);
    p.extend_from_slice(payload.get(..len).unwrap_or_default());
    p
}

/// A greeting's capability flags, or why it is not a usable greeting.
pub fn parse_greeting(p: &[u8]) -> Result<u32, String> {
    parse_greeting_full(p).map(|g| g.caps)
}

/// What the login needs from a greeting.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Greeting {
    pub(crate) caps: u32,
    /// The 20-byte nonce (auth data parts 1 and 2, without the NUL).
    pub(crate) scramble: Vec<u8>,
    /// The server's default auth plugin (empty if not announced).
    pub(crate) plugin: String,
}

pub(crate) fn parse_greeting_full(p: &[u8]) -> Result<Greeting, String> {
    match p.first() {
        Some(0xff) => Err(error_reason(p)),
        Some(0x0a) => {
            // server version, NUL-terminated
            let rest = p.get(1..).unwrap_or_default();
            let nul = rest
                .iter()
                .position(|&b| b == 0)
                .ok_or_else(|| format!("bad greeting \"{}\"", escape(p)))?;
            // conn id (4), auth data 1 (8), filler (1), caps low (2)
            let after = rest.get(nul + 1..).unwrap_or_default();
            let low = le16(after, 13).ok_or_else(|| "short banner".to_string())?;
            let mut caps = u32::from(low);
            // charset (1), status (2), caps high (2)
            if let Some(high) = le16(after, 18) {
                caps |= u32::from(high) << 16;
            }
            if caps & CLIENT_PROTOCOL_41 == 0 {
                return Err("server too old (no protocol 4.1)".into());
            }
            let mut scramble = after.get(4..12).unwrap_or_default().to_vec();
            // auth data length (1), reserved (10), part 2 (12 + NUL), plugin
            let tail = after.get(31..).unwrap_or_default();
            let part2 = tail.get(..12).unwrap_or(tail);
            scramble.extend_from_slice(part2);
            let plugin = tail
                .get(13..)
                .map(|n| n.split(|&b| b == 0).next().unwrap_or_default())
                .filter(|n| caps & CLIENT_PLUGIN_AUTH != 0 && n.len() <= 64)
                .map(|n| String::from_utf8_lossy(n).into_owned())
                .unwrap_or_default();
            Ok(Greeting {
                caps,
                scramble,
                plugin,
            })
        }
        Some(_) => Err(format!("not a MySQL greeting: \"{}\"", escape(p))),
        None => Err("empty greeting".into()),
    }
}

/// An error packet as a finding: full (1040, 1129) or failed.
pub(crate) fn error_finding(p: &[u8]) -> Finding {
    let reason = error_reason(p);
    match le16(p, 1) {
        Some(code) if FULL_ERRORS.contains(&code) => Finding::Full(reason),
        _ => Finding::Failed(reason),
    }
}

/// `0xff`, code (2, LE), optional `#` + SQLSTATE (5), message.
pub fn error_reason(p: &[u8]) -> String {
    let Some(code) = le16(p, 1) else {
        return "MySQL error packet (truncated)".into();
    };
    let mut msg = p.get(3..).unwrap_or_default();
    if msg.first() == Some(&b'#') {
        msg = msg.get(6..).unwrap_or_default();
    }
    format!("MySQL error {code}: {}", escape(msg))
}

/// A little-endian u16 at `at`, if the bytes are there.
fn le16(p: &[u8], at: usize) -> Option<u16> {
    let b: [u8; 2] = p.get(at..at.checked_add(2)?)?.try_into().ok()?;
    Some(u16::from_le_bytes(b))
}

#[cfg(test)]
mod tests;
