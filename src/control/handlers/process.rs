//! Handlers that act on the whole process: `kill`, `reload`, `state save`,
//! `upgrade`.

use crate::control::listener::Control;
use crate::control::reload::ReloadError;
use crate::control::reply::Reply;

/// `kill`: the same graceful shutdown as SIGTERM.
pub(crate) fn kill(ctl: &Control) -> Reply {
    ctl.shutdown.cancel();
    Reply::bye(vec!["shutting down".into()])
}

/// `reload`: ask the supervisor to re-read the config file.
pub(crate) async fn reload(ctl: &Control) -> Reply {
    match ctl.reload.reload().await {
        Ok(summary) => Reply::line(format!("reloaded: {summary}")),
        Err(e @ ReloadError::Incomplete(_)) => Reply::err(format!("reload incomplete: {e}")),
        Err(e) => Reply::err(format!("reload rejected: {e}")),
    }
}

/// `state save`: write the state file now.
pub(crate) async fn state_save(ctl: &Control) -> Reply {
    match &ctl.state {
        None => Reply::err("no state file (start with --state-file PATH)"),
        Some(st) => match ctl.save().await {
            Ok(()) => Reply::line(format!("state saved to {}", st.path().display())),
            Err(e) => Reply::err(format!("state file not written: {e}")),
        },
    }
}

/// `upgrade [PATH]`: the supervisor starts the new binary and hands it
/// the sockets; the answer is its pid, or why this process keeps serving.
pub(crate) async fn upgrade(ctl: &Control, path: Option<std::path::PathBuf>) -> Reply {
    match ctl.upgrade.upgrade(path).await {
        Ok(pid) => Reply::bye(vec![format!(
            "upgraded: pid {pid} serves now; this process (pid {}) finishes its connections",
            std::process::id()
        )]),
        Err(e) => Reply::err(format!("upgrade refused: {e}")),
    }
}
