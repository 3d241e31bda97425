//! balance run to its end rather than served from: one-shot command lines
//! ([`run_to_exit`]) and daemons, which are not our children ([`Daemon`]).

use std::fs::File;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use super::proc::{exited, kill};
use super::{BIN, TempDir, wait_for, wait_until};

/// Run balance with `args` to its exit (killed after `limit`): exit code
/// (None if killed) and stderr.
pub fn run_to_exit(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let mut cmd = Command::new(BIN);
    cmd.args(args);
    run_cmd_to_exit(cmd, limit)
}

/// Run `cmd` (stdin and stdout closed) to its exit, killed after `limit`:
/// exit code (None if killed) and stderr.
pub fn run_cmd_to_exit(mut cmd: Command, limit: Duration) -> (Option<i32>, String) {
    let dir = TempDir::new("run");
    let path = dir.path().join("stderr");
    let f = File::create(&path).expect("create stderr file");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn balance");
    let st = wait_for("balance to exit", limit, || child.try_wait().ok().flatten()).ok();
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let err = std::fs::read_to_string(&path).unwrap_or_default();
    (st.and_then(|s| s.code()), err)
}

/// A daemonized balance (not our child), found through its pidfile and
/// SIGKILLed on drop if it is still there.
pub struct Daemon {
    pub pid: u32,
}

impl Daemon {
    /// Wait up to `limit` for `pidfile` to name the daemon.
    pub fn from_pidfile(pidfile: &Path, limit: Duration) -> Daemon {
        let pid = wait_for("the pidfile", limit, || {
            std::fs::read_to_string(pidfile)
                .ok()
                .and_then(|t| t.trim().parse().ok())
        })
        .unwrap_or_else(|e| panic!("{e}: {}", pidfile.display()));
        Daemon { pid }
    }

    pub fn alive(&self) -> bool {
        !exited(self.pid)
    }

    pub fn signal(&self, sig: libc::c_int) {
        kill(self.pid, sig);
    }

    /// Wait up to `limit` for the daemon to exit.
    pub fn wait_exit(&self, limit: Duration) -> bool {
        wait_until("the daemon to exit", limit, || !self.alive()).is_ok()
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        if self.alive() {
            kill(self.pid, libc::SIGKILL);
        }
    }
}
