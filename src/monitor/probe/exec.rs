//! `command=...`: run a program via execve (no shell) with `%H %P %G %C %%`
//! substituted per argv element, a cleared environment, in its own process
//! group. Pass when the exit code is in `pass`. On timeout the whole group
//! is killed and the child reaped; after a normal exit the group is killed
//! too, so a check never leaves background processes behind.

use std::os::unix::process::ExitStatusExt;
use std::process::Stdio;
use std::time::Duration;

use tokio::process::Command;

use super::{Ctx, fmt_dur};
use crate::monitor::spec::substitute;

const CHECK_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// Kills the process group when dropped (timeout, cancellation, or done).
struct GroupGuard(Option<u32>);

impl Drop for GroupGuard {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            crate::sys::kill_process_group(pgid);
        }
    }
}

pub async fn run(argv: &[String], pass: &[i32], ctx: &Ctx, t: Duration) -> Result<(), String> {
    let host = ctx.addr.ip().to_string();
    let port = ctx.addr.port();
    let args: Vec<String> = argv
        .iter()
        .map(|a| substitute(a, &host, port, ctx.group, ctx.index))
        .collect();
    let Some((prog, rest)) = args.split_first() else {
        return Err("empty command".into());
    };
    let mut child = Command::new(prog)
        .args(rest)
        .env_clear()
        .env("PATH", CHECK_PATH)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .process_group(0)
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| format!("cannot run {prog}: {e}"))?;
    let guard = GroupGuard(child.id());
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
