//! Running the balancer: bind everything first (errors reach the terminal
//! with an exit code), then daemonize, drop privileges, start the runtime
//! and serve until SIGINT/SIGTERM, then drain for the grace period.
//!
//! - [`boot`]: everything before the runtime (bind, preflight, daemonize,
//!   logging, pidfile, privileges, the runtime itself);
//! - [`supervisor`]: the running listeners, their start, reload and
//!   shutdown; the only writer of the services [`Registry`];
//! - [`plan`]: what a reload changes, decided before anything is touched;
//! - [`signals`]: SIGTERM/SIGINT end the process, SIGHUP (and the control
//!   socket's `reload`) reload it;
//! - [`upgrade`]: `upgrade`: a new binary takes over the sockets and state.
//!
//! A reload (SIGHUP, or `reload` on a control socket) can add, remove and
//! change listeners, keyed by their bind address:
//! - a listener whose bind is new is bound and started;
//! - a listener whose bind is gone stops accepting; its connections finish;
//! - a listener on the same bind with changed settings gets a new
//!   [`Service`](crate::service::Service) that keeps the channels with the
//!   same host:port in the same group position (counters, health, operator
//!   state) and the listener counters; its socket stays open, so no client
//!   is refused;
//! - established connections are never cut by a reload.
//!
//! A reload is all or nothing: a file that does not parse or validate, or a
//! new listener that cannot bind, rejects the whole reload (logged, and
//! returned to the control socket) and the running config keeps serving.
//! Process-wide settings other than `grace` need a restart.
//!
//! [`Registry`]: crate::registry::Registry

mod boot;
mod pidfile;
mod plan;
mod signals;
mod supervisor;
pub(crate) mod upgrade;

use crate::config::quote;
use std::path::Path;

use crate::config::{Config, Overlay};

pub(crate) use boot::Fatal;

/// Run from the command line (one listener; SIGHUP has nothing to reload).
pub fn run(cfg: Config) -> Result<(), Fatal> {
    // Literal self-loops were refused by the builder; names resolve here.
    crate::config::resolved_loops(&cfg, crate::service::resolve)
        .map_err(|e| Fatal::Config(e.to_string()))?;
    boot::start(cfg, None)
}

/// `balance --config FILE [--check]`. `--check` runs every check the
/// start makes that needs neither privileges nor the ports themselves
/// (the file, overlapping binds, the control sockets, the state file's
/// directory) and exits with the code the start would.
pub fn run_file(path: &Path, check: bool, global: &Overlay) -> Result<(), Fatal> {
    let cfg = crate::config::load_file(path, global).map_err(|e| Fatal::Config(e.to_string()))?;
    crate::config::resolved_loops(&cfg, crate::service::resolve)
        .map_err(|msg| Fatal::Config(format!("{}: {msg}", path.display())))?;
    if check {
        // What the start checks before binding, short of binding.
        crate::control::check(&cfg, &crate::control::paths::run_dir()).map_err(Fatal::Os)?;
        print_check(path, &cfg);
        return Ok(());
    }
    // Daemonizing changes to /: reload needs an absolute path.
    let abs = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut cli = global.clone();
    cli.absolutize();
    boot::start(cfg, Some((abs, cli)))
}

/// `--check`: warnings on stderr, the verdict on stdout.
fn print_check(path: &Path, cfg: &Config) {
    for w in crate::config::unresolved(cfg, crate::service::resolve) {
        eprintln!("balance: warning: {w}");
    }
    if let Some(user) = &cfg.global.user {
        if let Err(e) = crate::sys::lookup_user(user) {
            eprintln!("balance: warning: user {}: {e}", quote(user));
        }
    }
    println!(
        "{}: ok ({} listener{})",
        path.display(),
        cfg.listeners.len(),
        if cfg.listeners.len() == 1 { "" } else { "s" }
    );
}

#[cfg(test)]
mod tests;
