//! `mysql[:user=NAME]`: read the server greeting (protocol v10) and fail on
//! an error packet (1040 too many connections, 1129 host blocked) or
//! garbage. With `user=`, log in with an empty password
//! (HandshakeResponse41, mysql_native_password) and send COM_QUIT, so the
//! server counts no aborted connection; without it, close after the greeting
//! (the server counts that as an aborted connect, and after
//! `max_connect_errors` blocks our host: use `user=`).

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use super::{Ctx, Finding, MAX_REPLY, escape, io_reason, tcp};

const CLIENT_LONG_PASSWORD: u32 = 0x0000_0001;
const CLIENT_PROTOCOL_41: u32 = 0x0000_0200;
const CLIENT_SECURE_CONNECTION: u32 = 0x0000_8000;
const CLIENT_PLUGIN_AUTH: u32 = 0x0008_0000;
const COM_QUIT: u8 = 0x01;

/// Server errors that mean "full", not "down": 1040 too many connections,
/// 1129 host blocked (too many connection errors).
pub const FULL_ERRORS: [u16; 2] = [1040, 1129];

pub async fn run(ctx: &Ctx, user: Option<&str>) -> Result<(), Finding> {
    let mut s = tcp(ctx.addr, ctx.source).await?;
    let (seq, greeting) = read_packet(&mut s).await?;
    if greeting.first() == Some(&0xff) {
        return Err(error_finding(&greeting));
    }
    let caps = parse_greeting(&greeting)?;
    let Some(user) = user else {
        return Ok(());
    };
    s.write_all(&packet(
        seq.wrapping_add(1),
        &handshake_response(user, caps),
    ))
    .await
    .map_err(|e| format!("login failed: {}", io_reason(&e)))?;
    // OK, error, or an auth switch (answered with an empty password once).
    for _ in 0..2 {
        let (seq, reply) = read_packet(&mut s).await?;
        match reply.first() {
            Some(0x00) => {
                let _ = s.write_all(&packet(0, &[COM_QUIT])).await;
                // Let the server close first, briefly; we are done either way.
                let mut b = [0u8; 64];
                let _ = tokio::time::timeout(std::time::Duration::from_millis(200), s.read(&mut b))
                    .await;
                return Ok(());
            }
            Some(0xff) => return Err(error_finding(&reply)),
            Some(0xfe) => {
                s.write_all(&packet(seq.wrapping_add(1), &[]))
                    .await
                    .map_err(|e| format!("login failed: {}", io_reason(&e)))?;
            }
            _ => {
                return Err(format!("unexpected login reply \"{}\"", escape(&reply)).into());
            }
        }
    }
    Err("login did not complete".into())
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
            Ok(caps)
        }
        Some(_) => Err(format!("not a MySQL greeting: \"{}\"", escape(p))),
        None => Err("empty greeting".into()),
    }
}

/// An error packet as a finding: full (1040, 1129) or failed.
pub fn error_finding(p: &[u8]) -> Finding {
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

fn handshake_response(user: &str, server_caps: u32) -> Vec<u8> {
    let mut caps = CLIENT_LONG_PASSWORD | CLIENT_PROTOCOL_41 | CLIENT_SECURE_CONNECTION;
    caps |= server_caps & CLIENT_PLUGIN_AUTH;
    let mut p = Vec::with_capacity(64 + user.len());
    p.extend_from_slice(&caps.to_le_bytes());
    p.extend_from_slice(&(16u32 << 20).to_le_bytes()); // max packet 16 MiB
    p.push(33); // utf8_general_ci
    p.extend_from_slice(&[0u8; 23]);
    p.extend_from_slice(user.as_bytes());
    p.push(0);
    p.push(0); // empty auth response
    if caps & CLIENT_PLUGIN_AUTH != 0 {
        p.extend_from_slice(b"mysql_native_password\0");
    }
    p
}

#[cfg(test)]
mod tests;
