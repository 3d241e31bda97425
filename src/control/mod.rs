//! Runtime control: a Unix socket per listener speaking balance.fm's
//! interactive commands, the `-i`/`-c` client, and the state file.
//!
//! - [`paths`]: where sockets live.
//! - [`commands`]: one line → one [`commands::Command`] (pure).
//! - [`exec`]: running a command against a listener (locking, logging,
//!   persisting) and the dispatch to [`handlers`], one per command.
//! - [`listener`]: [`listener::Control`], what one listener's commands act on.
//! - [`reply`]: the answer to one command.
//! - [`reload`]: the handle `reload` asks the supervisor through.
//! - [`server`]: the socket, its bounds and its framing.
//! - [`client`]: `balance -c CMD PORT` and `balance -i PORT`.
//! - [`state`]: `--state-file`, written atomically after every change.
//! - [`haproxy`]: HAProxy's runtime API on a socket of its own
//!   (`--haproxy-socket`), through the same operator model and bounds.
//! - [`upgrade`]: the handle `upgrade` asks the supervisor through.
//!
//! The current group (`group N`) is per session, kept by the server; every
//! answer carries it so the shell can show `balance[N] `. The shell runs
//! each command in a new session that first selects its group, so it
//! outlives the server's 10 s idle limit.

#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

pub(crate) mod client;
pub(crate) mod commands;
pub(crate) mod exec;
pub(crate) mod handlers;
pub(crate) mod haproxy;
pub(crate) mod listener;
pub(crate) mod paths;
pub(crate) mod reload;
pub(crate) mod reply;
pub(crate) mod server;
pub(crate) mod state;
pub(crate) mod upgrade;

pub(crate) use reload::{ReloadError, ReloadHandle, ReloadRequests};
pub(crate) use server::{Context, ControlHandle};
pub(crate) use state::StateFile;

/// Checks before daemonizing, so the usual failures exit non-zero on the
/// terminal: every listener's control socket path (see
/// [`server::preflight`], default paths in `run_dir`) and the state
/// file's directory.
pub(crate) fn preflight(
    cfg: &crate::config::Config,
    run_dir: &std::path::Path,
) -> Result<(), String> {
    sockets(cfg, run_dir, server::preflight)?;
    state_dir(cfg)
}

/// [`preflight`] for `--check`: the same checks, creating nothing.
pub(crate) fn check(cfg: &crate::config::Config, run_dir: &std::path::Path) -> Result<(), String> {
    sockets(cfg, run_dir, server::check)?;
    state_dir(cfg)
}

fn sockets(
    cfg: &crate::config::Config,
    run_dir: &std::path::Path,
    check: fn(&std::path::Path, &std::path::Path) -> std::io::Result<()>,
) -> Result<(), String> {
    if let Some(h) = &cfg.global.haproxy_socket {
        haproxy::check(h, run_dir)?;
    }
    let control = cfg.global.control.as_deref();
    let as_dir = control.is_some_and(|c| paths::control_is_dir(c, cfg.listeners.len()));
    for l in &cfg.listeners {
        let p = paths::listener_path(control, run_dir, l.bind, as_dir);
        check(&p, run_dir).map_err(|e| format!("{}: {e}", l.name))?;
    }
    Ok(())
}

/// `--state-file`'s directory exists and we may create files in it (the
/// file is written as a temporary file renamed over it).
fn state_dir(cfg: &crate::config::Config) -> Result<(), String> {
    let Some(sf) = &cfg.global.state_file else {
        return Ok(());
    };
    let dir = match sf.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => std::path::Path::new("."),
    };
    if !dir.is_dir() {
        return Err(format!(
            "--state-file {}: directory {} does not exist",
            sf.display(),
            dir.display()
        ));
    }
    if !crate::sys::writable(dir) {
        return Err(format!(
            "--state-file {}: directory {} is not writable",
            sf.display(),
            dir.display()
        ));
    }
    Ok(())
}
