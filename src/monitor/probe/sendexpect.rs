//! `send=TEXT[:expect=TEXT]`: send bytes, then wait for a substring in the
//! reply (e.g. Redis `PING\r\n` / `+PONG`).

use tokio::io::AsyncWriteExt;

use super::{Ctx, MAX_REPLY, contains, escape, read_until, tcp};

pub(crate) async fn run(ctx: &Ctx, send: &[u8], expect: &[u8]) -> Result<(), String> {
    let mut s = tcp(ctx.addr, ctx.dial()).await?;
    s.write_all(send)
        .await
        .map_err(|e| format!("send failed: {}", super::io_reason(&e)))?;
    if expect.is_empty() {
        return Ok(());
    }
    let mut buf = Vec::new();
    let eof = read_until(&mut s, &mut buf, |b| contains(b, expect)).await?;
    judge(&buf, expect, eof)
}

/// Judge the reply read so far (`eof`: the backend closed): pass when
/// `expect` appears in it. Pure, for the fuzz target.
#[doc(hidden)]
pub fn judge(buf: &[u8], expect: &[u8], eof: bool) -> Result<(), String> {
    if contains(buf, expect) {
        return Ok(());
    }
    if buf.is_empty() {
        return Err("no reply".into());
    }
    let why = if eof || buf.len() >= MAX_REPLY {
        "expect mismatch"
    } else {
        "short reply"
    };
    Err(format!("{why}: got \"{}\"", escape(buf)))
}
