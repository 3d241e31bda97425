//! Detaching from the terminal with a readiness pipe: the parent waits
//! until the child says it serves (or why it cannot), so the parent's exit
//! status and message tell the truth (`balance ... && echo started`).
//!
//! The child writes lines on the pipe: `W text` (a warning the terminal
//! should see), then `OK` or `E CODE text`. The pipe is close-on-exec, so
//! no probe inherits it; EOF without a verdict means the child died.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

/// How long the parent waits for the child's verdict.
pub(crate) const READY_TIMEOUT: Duration = Duration::from_secs(30);

/// Which side of the fork this is.
pub(crate) enum Forked {
    /// The terminal's side: what the child reported.
    Parent(Report),
    /// The daemon: report through this once serving (or failed).
    Child(Ready),
}

/// What the daemon told the parent.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Report {
    pub(crate) warnings: Vec<String>,
    /// `Err((exit code, message))`: the daemon is not running.
    pub(crate) outcome: Result<(), (Option<u8>, String)>,
}

/// The daemon's end of the readiness pipe.
pub(crate) struct Ready(File);

impl Ready {
    /// A warning for the terminal (e.g. where the log goes).
    pub(crate) fn warn(&mut self, msg: &str) {
        let _ = writeln!(self.0, "W {}", one_line(msg));
    }

    /// Serving: the parent exits 0.
    pub(crate) fn ok(mut self) {
        let _ = writeln!(self.0, "OK");
    }

    /// Not starting: the parent prints `msg` and exits `code`.
    pub(crate) fn fail(mut self, code: u8, msg: &str) {
        let _ = writeln!(self.0, "E {code} {}", one_line(msg));
    }
}

fn one_line(s: &str) -> String {
    s.replace(['\n', '\r'], " ")
}

/// Parse everything the child wrote.
pub(crate) fn parse_report(text: &str) -> Report {
    let mut warnings = Vec::new();
    let mut outcome = Err((None, "the daemon exited during start-up".to_string()));
    for line in text.lines() {
        if let Some(w) = line.strip_prefix("W ") {
            warnings.push(w.to_string());
        } else if line == "OK" {
            outcome = Ok(());
        } else if let Some(e) = line.strip_prefix("E ") {
            let (code, msg) = e.split_once(' ').unwrap_or((e, ""));
            outcome = Err((code.parse().ok(), msg.to_string()));
        }
    }
    Report { warnings, outcome }
}

/// Detach like balance does: fork, start a new session, chdir /, stdio to
/// /dev/null. The parent returns what the child reported through the
/// readiness pipe (bounded by [`READY_TIMEOUT`]; a child that does not
/// answer in time is stopped). Must run before any thread is started.
pub(crate) fn daemonize() -> io::Result<Forked> {
    let mut fds = [0 as libc::c_int; 2];
    // SAFETY: pipe2 writes two fds into the array we own.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } == -1 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: both fds were just created by pipe2 and are owned by nothing
    // else; each File becomes their only owner.
    let (rd, wr) = unsafe { (File::from_raw_fd(fds[0]), File::from_raw_fd(fds[1])) };
    // SAFETY: called from main before the runtime or any other thread
    // exists, so the child is a complete copy of a single-threaded process.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(rd);
            detach()?;
            Ok(Forked::Child(Ready(wr)))
        }
        pid => {
            drop(wr);
            Ok(Forked::Parent(wait_report(rd, pid)))
        }
    }
}

fn detach() -> io::Result<()> {
    // SAFETY: plain syscall without pointers.
    if unsafe { libc::setsid() } == -1 {
        return Err(io::Error::last_os_error());
    }
    std::env::set_current_dir("/")?;
    let devnull = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null")?;
    for fd in 0..=2 {
        // SAFETY: dup2 onto the standard descriptors from a valid open fd.
        if unsafe { libc::dup2(devnull.as_raw_fd(), fd) } == -1 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// Read the child's lines until EOF or the deadline.
fn wait_report(mut rd: File, pid: libc::pid_t) -> Report {
    let deadline = Instant::now() + READY_TIMEOUT;
    let mut text = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() || !readable(&rd, left) {
            // SAFETY: kill(2) with our own child's pid (> 0) and SIGTERM.
            unsafe { libc::kill(pid, libc::SIGTERM) };
            return Report {
                warnings: Vec::new(),
                outcome: Err((
                    None,
                    format!(
                        "the daemon (pid {pid}) did not report ready within {}s; stopped it",
                        READY_TIMEOUT.as_secs()
                    ),
                )),
            };
        }
        match rd.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => text.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    parse_report(&String::from_utf8_lossy(&text))
}

/// Whether `f` becomes readable (data or EOF) within `wait`.
fn readable(f: &File, wait: Duration) -> bool {
    let mut p = libc::pollfd {
        fd: f.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    let ms = wait.as_millis().min(i32::MAX as u128) as libc::c_int;
    loop {
        // SAFETY: one valid pollfd that lives across the call.
        let rc = unsafe { libc::poll(&mut p, 1, ms) };
        if rc == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return rc > 0;
    }
}

#[cfg(test)]
mod tests;
