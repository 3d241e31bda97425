//! `connect`: a TCP connect, then close.

use super::{Ctx, tcp};

pub(crate) async fn run(ctx: &Ctx) -> Result<(), String> {
    tcp(ctx.addr, ctx.dial()).await.map(drop)
}
