//! `command=...`: run a program (the `-m` form is `/bin/sh -c LINE`, as
//! balance.fm's `system()` ran it) with `%H %P %G %C %%` substituted per
//! argv element, a cleared environment with a fixed PATH, in its own process
//! group. Pass when the exit code is in `pass`. On timeout the whole group
//! is killed and the child reaped; after a normal exit the group is killed
//! too, and what escaped the group (`setsid`, double forks) is re-parented
//! to us (a child subreaper) and killed by the sweep in `sys::reaper`.
//!
//! Substitution into a shell line needs no quoting: `%H` is always the
//! channel's resolved IP literal (never its name), `%P %G %C` are numbers,
//! so no substituted byte is shell syntax (checked, not assumed).

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use super::{Ctx, fmt_dur};
use crate::monitor::spec::substitute;
use crate::sys::reaper;

/// Deregisters the check, then schedules a leftover sweep, when dropped.
struct SweepOnDrop(Option<reaper::Tracked>);

impl Drop for SweepOnDrop {
    fn drop(&mut self) {
        self.0.take();
        reaper::schedule_sweep();
    }
}

pub(crate) async fn run(
    argv: &[String],
    pass: &[i32],
    ctx: &Ctx,
    t: Duration,
) -> Result<(), String> {
    let host = ctx.addr.ip().to_string();
    if !host
        .bytes()
        .all(|b| b.is_ascii_hexdigit() || b == b'.' || b == b':')
    {
        return Err(format!("unsafe address {host:?} for a shell line"));
    }
    let port = ctx.addr.port();
    let args: Vec<String> = argv
        .iter()
        .map(|a| substitute(a, &host, port, ctx.group, ctx.index))
        .collect();
    let Some((prog, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    let mut cmd = reaper::isolated(prog, rest, Stdio::null());
    let (mut child, tracked) =
        reaper::spawn(&mut cmd).map_err(|e| format!("cannot run {prog}: {e}"))?;
    let guard = reaper::GroupKill(child.id());
    // However the check ends (even cancelled), look for what it left.
    let _sweep = SweepOnDrop(tracked);
    let status = tokio::select! {
        st = child.wait() => st,
        _ = tokio::time::sleep(t) => {
            drop(guard);
            // Reap: the group is gone, so this returns at once.
            let _ = child.wait().await;
            return Err(format!("timeout after {}", fmt_dur(t)));
        }
    };
    drop(guard);
    let status = status.map_err(|e| format!("wait failed: {e}"))?;
    match (status.code(), status.signal()) {
        (Some(c), _) if pass.contains(&c) => Ok(()),
        (Some(c), _) => Err(format!("exit code {c}")),
        (None, Some(sig)) => Err(format!("killed by signal {sig}")),
        (None, None) => Err("ended abnormally".into()),
    }
}
