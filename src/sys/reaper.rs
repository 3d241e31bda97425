//! balance as a child subreaper: what a check leaves behind (a daemonizing
//! helper, `setsid sleep`) is re-parented to us instead of init, and is
//! killed and reaped here. Checks spawn through [`spawn`] so the sweep
//! can tell their own processes (tokio reaps those) from leftovers.
//!
//! The only writer of the known-children set is [`spawn`] and its guard;
//! the sweep reads it under the same lock, so a child is never taken for
//! a leftover between its fork and its registration.
//!
//! Commands that start a backend (a group's `on_empty:`, and `on_idle:`)
//! are the opposite of a check: what they leave running is the backend,
//! and must outlive them, every sweep and balance itself. They spawn
//! through [`spawn_on_demand`], which puts [`ON_DEMAND_ENV`]`=<our pid>`
//! in their environment; the sweep spares every child whose environment
//! (`/proc/PID/environ`, inherited by whatever the command forks and
//! execs, whatever session or process group it moves to) carries it, even
//! the one at exit. Why not the alternatives: a double fork does not
//! escape a subreaper (the orphan is re-parented to the nearest living
//! subreaper ancestor: us, not init); sparing the command's session or
//! process group misses a backend started with `setsid` (the usual way to
//! detach a server); the environment survives both. A process that
//! empties its environment (`env -i`) loses the mark; one we may not read
//! (another user's) is spared too, as we could not kill it anyway. A
//! spared child that exits is reaped by the next sweep (a dead child is
//! only reaped, never signalled: its descendants are ours already), and
//! [`watch_adopted`] sweeps on SIGCHLD once such commands run.

use std::collections::HashMap;
use std::io;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Shortest gap between two sweeps (each may scan /proc).
const SWEEP_GAP: Duration = Duration::from_millis(500);
/// Rounds per sweep: killing a leftover re-parents its own children to us.
const SWEEP_ROUNDS: usize = 8;

/// Pids of running checks (a count per pid: a pid can be reused before the
/// old guard is gone).
static KNOWN: Mutex<Option<HashMap<u32, usize>>> = Mutex::new(None);
static ENABLED: AtomicBool = AtomicBool::new(false);
/// Pids no sweep may touch, not even the one at exit: a successor started
/// by `upgrade` (it outlives us).
static SPARED: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static SCHEDULED: AtomicBool = AtomicBool::new(false);
static LAST: Mutex<Option<Instant>> = Mutex::new(None);
/// Children whose environment read empty, and when first: in the middle
/// of an exec the kernel shows a live process's environment empty for a
/// moment (a backend `setsid socat …` that an `on_empty` script just left
/// is seen so about one read in three while it execs), so an empty one is
/// believed only when a sweep at least [`SWEEP_GAP`] later reads it empty
/// again.
static EMPTY_ENV: Mutex<Option<HashMap<u32, Instant>>> = Mutex::new(None);

/// Make this process a child subreaper (Linux 3.4+). Call after any fork
/// that daemonizes: the setting is not inherited.
pub(crate) fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl(PR_SET_CHILD_SUBREAPER, 1) takes plain integers, reads
    // and writes no memory of ours, and only changes who inherits our
    // orphaned descendants.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    ENABLED.store(true, Ordering::SeqCst);
    Ok(())
}

/// A registered check process; deregisters on drop.
pub(crate) struct Tracked(u32);

impl Drop for Tracked {
    fn drop(&mut self) {
        let mut g = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(m) = g.as_mut() {
            if let Some(n) = m.get_mut(&self.0) {
                *n -= 1;
                if *n == 0 {
                    m.remove(&self.0);
                }
            }
        }
    }
}

/// PATH of the commands balance runs (checks, lookups).
pub(crate) const COMMAND_PATH: &str = "/usr/sbin:/usr/bin:/sbin:/bin";

/// `prog args` run directly: empty environment but [`COMMAND_PATH`],
/// stdin and stderr to /dev/null, stdout as given, its own process group,
/// killed if dropped while running.
pub(crate) fn isolated(
    prog: &str,
    args: &[String],
    stdout: std::process::Stdio,
) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .stdin(std::process::Stdio::null())
        .stdout(stdout)
        .stderr(std::process::Stdio::null())
        .process_group(0)
        .kill_on_drop(true);
    cmd
}

/// Kills a command's process group when dropped (a timeout, a
/// cancellation, or done: whatever it left in its group goes with it).
pub(crate) struct GroupKill(pub(crate) Option<u32>);

impl Drop for GroupKill {
    fn drop(&mut self) {
        if let Some(pgid) = self.0 {
            super::kill_process_group(pgid);
        }
    }
}

/// Spawn a check and register its pid in one step.
pub(crate) fn spawn(
    cmd: &mut tokio::process::Command,
) -> io::Result<(tokio::process::Child, Option<Tracked>)> {
    let mut g = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    let tracked = child.id().map(|pid| {
        *g.get_or_insert_with(HashMap::new).entry(pid).or_insert(0) += 1;
        Tracked(pid)
    });
    Ok((child, tracked))
}

/// In the environment of the commands [`spawn_on_demand`] runs, with our
/// pid as the value: the mark the sweep spares.
pub(crate) const ON_DEMAND_ENV: &str = "BALANCE_ON_DEMAND";

/// Spawn a command that starts or stops a backend (`on_empty:`,
/// `on_idle:`): run directly, environment `env` plus PATH
/// ([`COMMAND_PATH`]) and [`ON_DEMAND_ENV`], stdin, stdout and stderr on
/// /dev/null (a backend that inherits them must never block on, or die
/// of, a pipe we stopped reading), in a new session (detached from our
/// terminal and process group), and never killed on drop. Registered as
/// a running child like [`spawn`] (tokio reaps it); it and all it leaves
/// are spared by every sweep.
pub(crate) fn spawn_on_demand(
    prog: &str,
    args: &[String],
    env: &[(&str, String)],
) -> io::Result<(tokio::process::Child, Option<Tracked>)> {
    let mut cmd = tokio::process::Command::new(prog);
    cmd.args(args)
        .env_clear()
        .env("PATH", COMMAND_PATH)
        .envs(env.iter().map(|(k, v)| (*k, v.as_str())))
        .env(ON_DEMAND_ENV, std::process::id().to_string())
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(false);
    // SAFETY: the closure runs in the child between fork and exec and
    // calls only setsid(2), which is async-signal-safe, allocates nothing
    // and takes no lock. It fails only for a process group leader, which
    // a freshly forked child is not.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() == -1 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    spawn(&mut cmd)
}

/// Sweep whenever a child of ours ends (SIGCHLD), from now on: a backend
/// an on-demand command left (our child since the command exited) is
/// reaped soon after it stops. Started once; a no-op unless we reap.
pub(crate) fn watch_adopted() {
    static STARTED: AtomicBool = AtomicBool::new(false);
    if !ENABLED.load(Ordering::SeqCst) || STARTED.swap(true, Ordering::SeqCst) {
        return;
    }
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        STARTED.store(false, Ordering::SeqCst);
        return;
    };
    rt.spawn(async {
        use tokio::signal::unix::{SignalKind, signal};
        let Ok(mut sig) = signal(SignalKind::child()) else {
            return;
        };
        while sig.recv().await.is_some() {
            schedule_sweep();
        }
    });
}

/// After a hand-over (`upgrade`): stop being a subreaper and stop
/// sweeping. The successor (our child) and its own successors must not be
/// adopted, and killed at exit, by this draining process: orphans go past
/// it to init (or systemd) instead.
pub(crate) fn stop_reaping() -> io::Result<()> {
    ENABLED.store(false, Ordering::SeqCst);
    // SAFETY: as in `become_subreaper`, with 0: plain integers only.
    let rc = unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Spawn a successor (`upgrade`): no sweep kills it, now or at exit,
/// until [`unspare`] (it failed and was reaped by the caller).
pub(crate) fn spawn_successor(cmd: &mut std::process::Command) -> io::Result<std::process::Child> {
    // The same lock as the sweep's scan: never seen as a leftover.
    let _g = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
    let child = cmd.spawn()?;
    SPARED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push(child.id());
    Ok(child)
}

/// A successor that failed is an ordinary child again (once reaped).
pub(crate) fn unspare(pid: u32) {
    SPARED
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .retain(|p| *p != pid);
}

/// After a check ended: sweep for leftovers soon (coalesced, at most one
/// sweep per [`SWEEP_GAP`]).
pub(crate) fn schedule_sweep() {
    // Called from drop: outside a runtime (shutdown) there is nothing to
    // schedule on, and `kill_leftovers` runs at exit anyway.
    let Ok(rt) = tokio::runtime::Handle::try_current() else {
        return;
    };
    if !ENABLED.load(Ordering::SeqCst) || SCHEDULED.swap(true, Ordering::SeqCst) {
        return;
    }
    let wait = LAST
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .map_or(Duration::ZERO, |l| {
            (l + SWEEP_GAP).saturating_duration_since(Instant::now())
        });
    rt.spawn(async move {
        tokio::time::sleep(wait).await;
        // A leftover appearing while we scan is caught by the next sweep.
        SCHEDULED.store(false, Ordering::SeqCst);
        *LAST.lock().unwrap_or_else(|e| e.into_inner()) = Some(Instant::now());
        let _ = tokio::task::spawn_blocking(|| sweep(false)).await;
    });
}

/// On exit: kill every child and what it left, known or not, and reap.
pub(crate) fn kill_leftovers() {
    if ENABLED.load(Ordering::SeqCst) {
        sweep(true);
    }
}

/// Kill (SIGKILL, with its process group if it leads one) and reap every
/// child that is not a running check (`all`: every child), but a
/// successor and what an on-demand command left (see the module doc);
/// a dead child is only reaped.
fn sweep(all: bool) {
    let mark = format!("{ON_DEMAND_ENV}={}", std::process::id());
    let mut recheck = false;
    for _ in 0..SWEEP_ROUNDS {
        let victims: Vec<u32> = {
            let g = KNOWN.lock().unwrap_or_else(|e| e.into_inner());
            let spared = SPARED.lock().unwrap_or_else(|e| e.into_inner()).clone();
            let victims: Vec<u32> = children()
                .into_iter()
                .filter(|p| !spared.contains(p))
                .filter(|p| all || !g.as_ref().is_some_and(|m| m.contains_key(p)))
                .filter(|&p| match fate(p, mark.as_bytes()) {
                    Fate::Spare => false,
                    Fate::Reap => true,
                    Fate::Unsure if !seen_empty_before(p) => {
                        recheck = true;
                        false
                    }
                    Fate::Kill | Fate::Unsure => {
                        // Our own child until we reap it: the pid cannot
                        // be reused.
                        super::kill_process_group(p);
                        kill(p);
                        true
                    }
                })
                .collect();
            victims
        };
        if victims.is_empty() {
            break;
        }
        for p in victims {
            reap(p);
        }
    }
    if recheck && !all {
        schedule_sweep();
    }
}

/// Whether `pid`'s environment read empty at a sweep at least
/// [`SWEEP_GAP`] ago (else it is noted now, for the next sweep). Entries
/// of processes gone are dropped on the way.
fn seen_empty_before(pid: u32) -> bool {
    let now = Instant::now();
    let mut g = EMPTY_ENV.lock().unwrap_or_else(|e| e.into_inner());
    let m = g.get_or_insert_with(HashMap::new);
    m.retain(|p, _| std::path::Path::new(&format!("/proc/{p}")).exists());
    let first = *m.entry(pid).or_insert(now);
    now.duration_since(first) >= SWEEP_GAP
}

/// Our children: `/proc/self/task/*/children` where the kernel has it,
/// else a scan of `/proc/*/stat` for our pid as parent.
fn children() -> Vec<u32> {
    let me = std::process::id();
    if let Some(v) = task_children() {
        return v;
    }
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    rd.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read_to_string(format!("/proc/{pid}/stat"))
                .ok()
                .and_then(|s| parent_of(&s))
                == Some(me)
        })
        .collect()
}

fn task_children() -> Option<Vec<u32>> {
    let mut out = Vec::new();
    for t in std::fs::read_dir("/proc/self/task").ok()?.flatten() {
        let s = std::fs::read_to_string(t.path().join("children")).ok()?;
        out.extend(s.split_whitespace().filter_map(|p| p.parse::<u32>().ok()));
    }
    Some(out)
}

/// What the sweep does with one child.
#[derive(Debug, PartialEq, Eq)]
enum Fate {
    /// Dead already: reap only.
    Reap,
    Kill,
    /// Marked by an on-demand command, or not ours to read (nor to kill).
    Spare,
    /// Alive with an empty environment: perhaps in the middle of an exec
    /// (see [`EMPTY_ENV`]).
    Unsure,
}

fn fate(pid: u32, mark: &[u8]) -> Fate {
    let dead = std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| state_of(&s))
        .is_some_and(|c| c == 'Z' || c == 'X');
    if dead {
        return Fate::Reap;
    }
    match std::fs::read(format!("/proc/{pid}/environ")) {
        Ok(env) if env.split(|&b| b == 0).any(|v| v == mark) => Fate::Spare,
        Ok(env) if env.is_empty() => Fate::Unsure,
        Ok(_) => Fate::Kill,
        Err(e) if e.kind() == io::ErrorKind::PermissionDenied => Fate::Spare,
        // Gone meanwhile (reaped as it exits), or no /proc: as before.
        Err(_) => Fate::Kill,
    }
}

/// The state field of a `/proc/PID/stat` line (`R`, `S`, `Z`…).
fn state_of(stat: &str) -> Option<char> {
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().next()?.chars().next()
}

/// The ppid field of a `/proc/PID/stat` line: `pid (comm) state ppid ...`
/// (comm may hold spaces and parentheses: split after the last `)`).
fn parent_of(stat: &str) -> Option<u32> {
    let rest = stat.rsplit_once(')')?.1;
    rest.split_whitespace().nth(1)?.parse().ok()
}

fn kill(pid: u32) {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return;
    };
    if p <= 1 || pid == std::process::id() {
        return;
    }
    // SAFETY: kill(2) takes plain integers; `p` > 1 and not us, so it
    // names exactly one process (our child: it cannot be reused unreaped).
    unsafe {
        libc::kill(p, libc::SIGKILL);
    }
}

/// Wait for one killed child (it is dying: this returns promptly).
fn reap(pid: u32) {
    let Ok(p) = libc::pid_t::try_from(pid) else {
        return;
    };
    loop {
        let mut status = 0;
        // SAFETY: waitpid writes one c_int through a pointer to a live
        // local; `p` > 0 waits for that child only.
        let rc = unsafe { libc::waitpid(p, &mut status, 0) };
        if rc == -1 && io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
            continue;
        }
        return;
    }
}

#[cfg(test)]
mod tests;
