//! `upgrade`: a new binary takes over the running one's sockets and state
//! without refusing a connection or cutting one.
//!
//! The old process (on `balance -c upgrade PORT`):
//! 1. starts the binary installed at the path it was started from (or the
//!    path given) with its own command line, working directory and
//!    environment, plus `BALANCE_UPGRADE_FD=3`: one end of a
//!    `SOCK_SEQPACKET` pair, the only descriptor it inherits;
//! 2. sends over it (SCM_RIGHTS) copies of every listening socket, every
//!    control socket with its lock file, the metrics socket, the locked
//!    pidfile and the HAProxy socket with its lock file, then a document naming them, with the operator state (the
//!    state file's format) and which channels are down and why;
//! 3. keeps accepting all the while. The listen queue belongs to the
//!    socket, which both processes now hold, so nothing queued is lost;
//! 4. on the new process's `ready` (its listeners accept, its control
//!    sockets answer) it tells systemd `MAINPID=new`, answers the
//!    operator with the new pid, stops accepting (closing its copies: the
//!    sockets stay open in the new process, and their files stay in place)
//!    and lets its connections finish for `grace`, like a shutdown.
//!
//! If the new binary cannot be started, exits (a rejected configuration, a
//! crash) or does not report ready within [`TAKEOVER_TIMEOUT`], it is
//! killed if still running and the old process answers why, having never
//! stopped serving.
//!
//! The new process binds nothing: its configuration must listen on exactly
//! the sockets it was given, with the same control socket paths, metrics
//! address, pidfile and HAProxy socket path; otherwise it refuses (and the old one keeps
//! serving). It does not daemonize again (it is the old daemon's child,
//! already detached) and, already running as `--user`, does not drop
//! privileges again.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::net::SocketAddr;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tracing::{info, warn};

use crate::config::Config;
use crate::control::server::Inherited;
use crate::control::state::StateFile;
use crate::service::Service;
use crate::sys::fdpass;

/// Why a new process does not take over: the configuration (exit 64) or
/// the hand-over itself (exit 71). Boot turns it into its `Fatal`.
#[derive(Debug)]
pub(crate) enum Refusal {
    Config(String),
    Os(String),
}

/// The variable naming the inherited descriptor in the new process.
pub(crate) const ENV: &str = "BALANCE_UPGRADE_FD";
/// The descriptor the new process finds the hand-over socket on.
const CHILD_FD: i32 = 3;
/// From starting the new binary to its `ready`.
pub(crate) const TAKEOVER_TIMEOUT: Duration = Duration::from_secs(30);
/// Each frame of the hand-over, either way, before the ready.
const FRAME_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a refused successor gets to exit before it is killed.
const EXIT_WAIT: Duration = Duration::from_secs(2);
const VERSION: u32 = 1;

/// What the process was started as, recorded before anything changes the
/// working directory (daemonizing moves to `/`).
struct Start {
    /// The path to run for `upgrade` without a path: `argv[0]` made
    /// absolute (not resolved through symlinks, so a replaced link or
    /// file is what runs), or as found in `$PATH`.
    exe: Option<PathBuf>,
    args: Vec<std::ffi::OsString>,
    cwd: Option<PathBuf>,
}

static START: OnceLock<Start> = OnceLock::new();

/// Record argv, the binary's path and the working directory (once, at
/// start).
pub(crate) fn remember_start() {
    START.get_or_init(|| {
        let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
        let cwd = std::env::current_dir().ok();
        let exe = args
            .first()
            .and_then(|a0| exe_path(Path::new(a0), cwd.as_deref()))
            .or_else(|| std::env::current_exe().ok());
        Start { exe, args, cwd }
    });
}

/// `argv[0]` as a path to run later: with a slash, made absolute against
/// `cwd`; without, the first executable of that name in `$PATH`.
fn exe_path(a0: &Path, cwd: Option<&Path>) -> Option<PathBuf> {
    use std::os::unix::ffi::OsStrExt;
    if a0.as_os_str().as_bytes().contains(&b'/') {
        return Some(match cwd {
            Some(c) if a0.is_relative() => c.join(a0),
            _ => a0.to_path_buf(),
        });
    }
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|d| d.join(a0))
        .find(|p| is_executable(p))
        .map(|p| match cwd {
            Some(c) if p.is_relative() => c.join(p),
            _ => p,
        })
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    std::fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// A channel that is down in the old process, and why.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(crate) struct Down {
    listener: String,
    group: usize,
    channel: usize,
    target: String,
    reason: Option<String>,
}

/// The document after the descriptors: what each one is, and the state.
#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct Doc {
    version: u32,
    /// Listening sockets, in descriptor order.
    listeners: Vec<SocketAddr>,
    /// Control socket paths, each with two descriptors (socket, lock).
    controls: Vec<PathBuf>,
    metrics: Option<SocketAddr>,
    pidfile: Option<PathBuf>,
    /// The HAProxy socket's path, with two descriptors (socket, lock)
    /// after the pidfile's. Absent without one, so that a binary from
    /// before it was handed over still takes over such an instance.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    haproxy: Option<PathBuf>,
    run_dir: PathBuf,
    /// The operator state of every listener, in the state file's format.
    state: String,
    down: Vec<Down>,
}

/// What the old process hands over, gathered by the supervisor.
pub(crate) struct Parts {
    pub(crate) listeners: Vec<(SocketAddr, OwnedFd)>,
    pub(crate) controls: Vec<(PathBuf, OwnedFd, OwnedFd)>,
    pub(crate) metrics: Option<(SocketAddr, OwnedFd)>,
    pub(crate) pidfile: Option<(PathBuf, OwnedFd)>,
    pub(crate) haproxy: Option<(PathBuf, OwnedFd, OwnedFd)>,
    pub(crate) run_dir: PathBuf,
    pub(crate) services: Vec<std::sync::Arc<Service>>,
}

/// The channels that are down now, per listener.
fn down_of(services: &[std::sync::Arc<Service>]) -> Vec<Down> {
    let mut out = Vec::new();
    for svc in services {
        for (gi, g) in svc.pool.groups().iter().enumerate() {
            for (ci, ch) in g.channels.iter().enumerate() {
                if !ch.is_up() {
                    let t = ch.target();
                    out.push(Down {
                        listener: svc.cfg.name.clone(),
                        group: gi,
                        channel: ci,
                        target: format!("{}:{}", t.host, t.port),
                        reason: ch.down_reason().map(|r| r.to_string()),
                    });
                }
            }
        }
    }
    out
}

/// Old side: start the new binary, hand everything over, wait for its
/// ready. Ok: its pid (it serves now). Err: why not; it is gone and
/// nothing here changed. Blocking (run off the runtime threads).
pub(crate) fn hand_over(parts: Parts, path: Option<PathBuf>) -> Result<u32, String> {
    let start = START
        .get()
        .ok_or_else(|| "the start command line was not recorded".to_string())?;
    let exe = match path.or_else(|| start.exe.clone()) {
        Some(p) => p,
        None => return Err("cannot tell which binary this process was started from".into()),
    };
    match std::fs::metadata(&exe) {
        Ok(m) if is_executable(&exe) && m.is_file() => {}
        Ok(_) => return Err(format!("{}: not an executable file", exe.display())),
        Err(e) => return Err(format!("{}: {e}", exe.display())),
    }
    let state = state_text(&parts.services)?;
    let doc = Doc {
        version: VERSION,
        listeners: parts.listeners.iter().map(|l| l.0).collect(),
        controls: parts.controls.iter().map(|c| c.0.clone()).collect(),
        metrics: parts.metrics.as_ref().map(|m| m.0),
        pidfile: parts.pidfile.as_ref().map(|p| p.0.clone()),
        haproxy: parts.haproxy.as_ref().map(|h| h.0.clone()),
        run_dir: parts.run_dir.clone(),
        state,
        down: down_of(&parts.services),
    };
    let mut fds: Vec<BorrowedFd<'_>> = parts.listeners.iter().map(|l| l.1.as_fd()).collect();
    for c in &parts.controls {
        fds.push(c.1.as_fd());
        fds.push(c.2.as_fd());
    }
    fds.extend(parts.metrics.iter().map(|m| m.1.as_fd()));
    fds.extend(parts.pidfile.iter().map(|p| p.1.as_fd()));
    if let Some(h) = &parts.haproxy {
        fds.push(h.1.as_fd());
        fds.push(h.2.as_fd());
    }
    let text = serde_json::to_vec(&doc).map_err(|e| e.to_string())?;

    let (ours, theirs) = fdpass::seqpacket_pair().map_err(|e| format!("socketpair: {e}"))?;
    fdpass::set_timeouts(ours.as_fd(), FRAME_TIMEOUT).map_err(|e| e.to_string())?;
    let mut cmd = std::process::Command::new(&exe);
    {
        use std::os::unix::process::CommandExt;
        if let Some(a0) = start.args.first() {
            cmd.arg0(a0);
        }
    }
    cmd.args(start.args.iter().skip(1))
        .env(ENV, CHILD_FD.to_string());
    if let Some(c) = &start.cwd {
        cmd.current_dir(c);
    }
    fdpass::inherit_as(&mut cmd, theirs, CHILD_FD);
    let spawned = crate::sys::reaper::spawn_successor(&mut cmd);
    // Our copy of the child's end goes with the Command: its exit is then
    // seen as the end of the stream.
    drop(cmd);
    let mut child = spawned.map_err(|e| format!("cannot start {}: {e}", exe.display()))?;
    info!(pid = child.id(), binary = %exe.display(), "upgrade: new process started; handing over");
    match exchange(ours.as_fd(), &fds, &text) {
        Ok(pid) if pid == child.id() => {
            // Not waited for: it outlives us (re-parented when we exit).
            drop(child);
            Ok(pid)
        }
        Ok(pid) => Err(refused(
            &mut child,
            format!("the new process reported pid {pid}, not its own"),
        )),
        Err(why) => Err(refused(&mut child, why)),
    }
}

/// The state file's text for every listener now.
fn state_text(services: &[std::sync::Arc<Service>]) -> Result<String, String> {
    crate::control::state::snapshot_text(services).map_err(|e| format!("operator state: {e}"))
}

/// Send the descriptors and the document; wait for `R<pid>` (ready) or
/// `X<why>` (refused).
fn exchange(sock: BorrowedFd<'_>, fds: &[BorrowedFd<'_>], text: &[u8]) -> Result<u32, String> {
    let lost = |e: io::Error| match e.kind() {
        io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset => {
            "the new process exited before taking over".to_string()
        }
        _ => format!("hand-over interrupted: {e}"),
    };
    let send_all = || -> io::Result<()> {
        for chunk in fds.chunks(fdpass::MAX_FDS) {
            fdpass::send(sock, b"F", chunk)?;
        }
        for chunk in text.chunks(fdpass::MAX_FRAME - 1) {
            let mut frame = Vec::with_capacity(chunk.len() + 1);
            frame.push(b'D');
            frame.extend_from_slice(chunk);
            fdpass::send(sock, &frame, &[])?;
        }
        fdpass::send(sock, b"E", &[])
    };
    if let Err(e) = send_all() {
        // It may have said why before it went (a configuration it rejects
        // is read before the hand-over).
        return Err(said_why(sock).unwrap_or_else(|| lost(e)));
    }
    let deadline = Instant::now() + TAKEOVER_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(format!(
                "the new process did not take over within {}s",
                TAKEOVER_TIMEOUT.as_secs()
            ));
        }
        fdpass::set_timeouts(sock, left.min(FRAME_TIMEOUT)).map_err(|e| e.to_string())?;
        match recv_past_reset(sock) {
            Ok(Some((data, _))) => {
                let text = String::from_utf8_lossy(data.get(1..).unwrap_or_default()).to_string();
                return match data.first() {
                    Some(b'R') => text
                        .trim()
                        .parse::<u32>()
                        .map_err(|_| format!("the new process sent a bad ready {text:?}")),
                    Some(b'X') => Err(text),
                    _ => Err("the new process sent something unexpected".into()),
                };
            }
            Ok(None) => return Err("the new process exited before taking over".into()),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(lost(e)),
        }
    }
}

/// The next frame. A peer that exited with our frames unread leaves a
/// pending ECONNRESET, reported before the frames it queued: read past it
/// once.
fn recv_past_reset(sock: BorrowedFd<'_>) -> io::Result<Option<(Vec<u8>, Vec<OwnedFd>)>> {
    match fdpass::recv(sock) {
        Err(e) if e.kind() == io::ErrorKind::ConnectionReset => fdpass::recv(sock),
        r => r,
    }
}

/// A refusal (`X<why>`) already queued by a successor that is gone.
fn said_why(sock: BorrowedFd<'_>) -> Option<String> {
    fdpass::set_timeouts(sock, Duration::from_millis(100)).ok()?;
    match recv_past_reset(sock) {
        Ok(Some((data, _))) if data.first() == Some(&b'X') => {
            Some(String::from_utf8_lossy(data.get(1..).unwrap_or_default()).to_string())
        }
        _ => None,
    }
}

/// The successor failed: make sure it is gone (killed if it still runs),
/// reap it, and say why with its exit status.
fn refused(child: &mut Child, why: String) -> String {
    let pid = child.id();
    let deadline = Instant::now() + EXIT_WAIT;
    let status = loop {
        match child.try_wait() {
            Ok(Some(s)) => break Some(s),
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(10)),
            Ok(None) => {
                let _ = child.kill();
                break child.wait().ok();
            }
            Err(_) => break None,
        }
    };
    crate::sys::reaper::unspare(pid);
    let how = match status {
        Some(s) => describe(s),
        None => "its status is unknown".into(),
    };
    format!("{why} (pid {pid}: {how})")
}

fn describe(s: std::process::ExitStatus) -> String {
    use std::os::unix::process::ExitStatusExt;
    match (s.code(), s.signal()) {
        (Some(c), _) => format!("exited with status {c}"),
        (_, Some(sig)) => format!("killed by signal {sig}"),
        _ => s.to_string(),
    }
}

/// New side: the hand-over socket, kept to report ready or failure.
static LINK: Mutex<Option<OwnedFd>> = Mutex::new(None);
/// [`receive`] ran: the inherited descriptor was taken (or found not to
/// be ours); its number may name another file since.
static RECEIVED: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// What the new process received.
pub(crate) struct Handed {
    listeners: Vec<std::net::TcpListener>,
    controls: HashMap<PathBuf, Inherited>,
    metrics: Option<(SocketAddr, std::net::TcpListener)>,
    pidfile: Option<(PathBuf, File)>,
    haproxy: Option<(PathBuf, Inherited)>,
    pub(crate) run_dir: PathBuf,
    state: String,
    down: Vec<Down>,
}

/// The state and control sockets the supervisor starts from.
pub(crate) struct Carried {
    pub(crate) controls: HashMap<PathBuf, Inherited>,
    state: Option<std::sync::Arc<StateFile>>,
    down: Vec<Down>,
}

/// New side: whether this process was started by `upgrade`; if so,
/// receive everything (before anything is bound). Err: the hand-over
/// failed (reported to the old process by [`report_failure`]).
pub(crate) fn receive() -> Result<Option<Handed>, Refusal> {
    let Some(v) = std::env::var_os(ENV) else {
        return Ok(None);
    };
    if RECEIVED.swap(true, std::sync::atomic::Ordering::SeqCst) {
        return Err(Refusal::Os(format!("{ENV}: already taken")));
    }
    let bad = |why: String| Refusal::Os(format!("{ENV}: {why}"));
    let fd = v
        .to_str()
        .and_then(|s| s.parse::<i32>().ok())
        .filter(|fd| *fd > 2)
        .ok_or_else(|| bad("not a descriptor number".into()))?;
    let link = fdpass::take_inherited(fd).ok_or_else(|| bad("not an inherited socket".into()))?;
    let res = read_handed(link.as_fd());
    *LINK.lock().unwrap_or_else(|e| e.into_inner()) = Some(link);
    res.map(Some).map_err(bad)
}

fn read_handed(sock: BorrowedFd<'_>) -> Result<Handed, String> {
    fdpass::set_timeouts(sock, FRAME_TIMEOUT).map_err(|e| e.to_string())?;
    let mut fds: Vec<OwnedFd> = Vec::new();
    let mut text = Vec::new();
    loop {
        let (data, got) = fdpass::recv(sock)
            .map_err(|e| format!("hand-over: {e}"))?
            .ok_or("the previous process closed the hand-over")?;
        match data.first() {
            Some(b'F') => fds.extend(got),
            Some(b'D') if text.len() < 64 << 20 => {
                text.extend_from_slice(data.get(1..).unwrap_or_default())
            }
            Some(b'E') => break,
            _ => return Err("hand-over: unexpected frame".into()),
        }
    }
    let doc: Doc = serde_json::from_slice(&text).map_err(|e| format!("hand-over: {e}"))?;
    if doc.version != VERSION {
        return Err(format!(
            "hand-over version {} (this binary speaks {VERSION})",
            doc.version
        ));
    }
    let want = doc.listeners.len()
        + 2 * doc.controls.len()
        + usize::from(doc.metrics.is_some())
        + usize::from(doc.pidfile.is_some())
        + 2 * usize::from(doc.haproxy.is_some());
    if fds.len() != want {
        return Err(format!(
            "hand-over: {} descriptors, expected {want}",
            fds.len()
        ));
    }
    let mut it = fds.into_iter();
    let mut next = || it.next().ok_or("hand-over: descriptors missing");
    let mut listeners = Vec::new();
    for addr in &doc.listeners {
        let l = std::net::TcpListener::from(next()?);
        match l.local_addr() {
            Ok(a) if a == *addr => listeners.push(l),
            _ => {
                return Err(format!(
                    "hand-over: the socket for {addr} is not bound there"
                ));
            }
        }
    }
    let mut controls = HashMap::new();
    for p in &doc.controls {
        controls.insert(p.clone(), unix_socket(&mut next)?);
    }
    let metrics = match doc.metrics {
        Some(a) => Some((a, std::net::TcpListener::from(next()?))),
        None => None,
    };
    let pidfile = match &doc.pidfile {
        Some(p) => Some((p.clone(), File::from(next()?))),
        None => None,
    };
    let haproxy = match doc.haproxy {
        Some(p) => Some((p, unix_socket(&mut next)?)),
        None => None,
    };
    Ok(Handed {
        listeners,
        controls,
        metrics,
        pidfile,
        haproxy,
        run_dir: doc.run_dir,
        state: doc.state,
        down: doc.down,
    })
}

/// A Unix listening socket and its lock file, the next two descriptors.
fn unix_socket(
    next: &mut impl FnMut() -> Result<OwnedFd, &'static str>,
) -> Result<Inherited, &'static str> {
    let sock = std::os::unix::net::UnixListener::from(next()?);
    let lock = File::from(next()?);
    Ok(Inherited { sock, lock })
}

impl Handed {
    /// The sockets for `cfg`'s listeners, in its order: exactly the ones
    /// received (a listener added or removed in the file is refused: reload
    /// the running process first).
    pub(crate) fn take_listeners(
        &mut self,
        cfg: &Config,
    ) -> Result<Vec<std::net::TcpListener>, Refusal> {
        let mut have: Vec<Option<std::net::TcpListener>> = std::mem::take(&mut self.listeners)
            .into_iter()
            .map(Some)
            .collect();
        let mut out = Vec::with_capacity(cfg.listeners.len());
        for l in &cfg.listeners {
            let found = have.iter_mut().find(|s| {
                s.as_ref()
                    .and_then(|s| s.local_addr().ok())
                    .is_some_and(|a| a == l.bind)
            });
            match found.and_then(Option::take) {
                Some(s) => out.push(s),
                None => {
                    return Err(Refusal::Config(format!(
                        "listener {} on {}: the running process does not listen there (reload it first, or restart)",
                        crate::config::quote(&l.name),
                        l.bind
                    )));
                }
            }
        }
        if let Some(extra) = have.iter().flatten().next() {
            let a = extra
                .local_addr()
                .map_or_else(|_| "?".into(), |a| a.to_string());
            return Err(Refusal::Config(format!(
                "the running process listens on {a}, which the configuration no longer has (reload it first, or restart)"
            )));
        }
        Ok(out)
    }

    /// The metrics socket, if the configuration still wants the same one.
    pub(crate) fn take_metrics(
        &mut self,
        want: Option<SocketAddr>,
    ) -> Result<Option<std::net::TcpListener>, Refusal> {
        match (self.metrics.take(), want) {
            (None, None) => Ok(None),
            (Some((a, s)), Some(w)) if a == w => Ok(Some(s)),
            (have, want) => Err(Refusal::Config(format!(
                "--metrics is {} here but {} in the running process (restart to change it)",
                want.map_or_else(|| "off".into(), |w| w.to_string()),
                have.map_or_else(|| "off".into(), |h| h.0.to_string()),
            ))),
        }
    }

    /// The pidfile, locked by the old process (the lock is shared).
    pub(crate) fn take_pidfile(
        &mut self,
        want: Option<&Path>,
    ) -> Result<Option<(PathBuf, File)>, Refusal> {
        match (self.pidfile.take(), want) {
            (None, None) => Ok(None),
            (Some((p, f)), Some(w)) if p == w => Ok(Some((p, f))),
            (have, want) => Err(Refusal::Config(format!(
                "--pidfile is {} here but {} in the running process (restart to change it)",
                want.map_or_else(|| "none".into(), |w| w.display().to_string()),
                have.map_or_else(|| "none".into(), |h| h.0.display().to_string()),
            ))),
        }
    }

    /// The HAProxy socket, if the configuration still wants it at the same
    /// path (its lock file comes with it, locked).
    pub(crate) fn take_haproxy(
        &mut self,
        want: Option<&Path>,
    ) -> Result<Option<Inherited>, Refusal> {
        match (self.haproxy.take(), want) {
            (None, None) => Ok(None),
            (Some((p, i)), Some(w)) if p == w => Ok(Some(i)),
            (have, want) => Err(Refusal::Config(format!(
                "--haproxy-socket is {} here but {} in the running process (restart to change it)",
                want.map_or_else(|| "off".into(), |w| w.display().to_string()),
                have.map_or_else(|| "off".into(), |h| h.0.display().to_string()),
            ))),
        }
    }

    /// Every control socket the configuration needs was received.
    pub(crate) fn check_controls(&self, cfg: &Config) -> Result<(), Refusal> {
        let control = cfg.global.control.as_deref();
        let as_dir =
            control.is_some_and(|c| crate::control::paths::control_is_dir(c, cfg.listeners.len()));
        for l in &cfg.listeners {
            let p = crate::control::paths::listener_path(control, &self.run_dir, l.bind, as_dir);
            if !self.controls.contains_key(&p) {
                return Err(Refusal::Config(format!(
                    "listener {}: control socket {} is not one the running process serves (restart to change it)",
                    crate::config::quote(&l.name),
                    p.display()
                )));
            }
        }
        Ok(())
    }

    /// What the supervisor starts from.
    pub(crate) fn carried(self) -> Carried {
        let state = match StateFile::from_text(Path::new("the previous process"), &self.state) {
            Ok(s) => Some(s),
            Err(e) => {
                warn!("upgrade: operator state not carried over: {e}");
                None
            }
        };
        Carried {
            controls: self.controls,
            state,
            down: self.down,
        }
    }
}

impl Carried {
    /// Apply the old process's operator state and down marks to a new
    /// Service (before it serves): what a restart from the state file
    /// would restore, plus health, so no client is sent to a channel the
    /// old process knew was down (the monitor takes over from there).
    pub(crate) fn restore(&self, svc: &Service) {
        if let Some(st) = &self.state {
            st.restore(svc);
        }
        let groups = svc.pool.groups();
        for d in self.down.iter().filter(|d| d.listener == svc.cfg.name) {
            let ch = groups.get(d.group).and_then(|g| g.channels.get(d.channel));
            if let Some(ch) = ch {
                let t = ch.target();
                if format!("{}:{}", t.host, t.port) == d.target {
                    let why = d.reason.as_deref().unwrap_or("down before the upgrade");
                    ch.force_down(why);
                }
            }
        }
    }
}

/// New side: every listener serves; tell the old process (it stops
/// accepting and drains). Without the old process (it died) we serve
/// alone: logged.
pub(crate) fn report_ready() {
    let link = LINK.lock().unwrap_or_else(|e| e.into_inner()).take();
    let Some(link) = link else { return };
    let msg = format!("R{}", std::process::id());
    match fdpass::send(link.as_fd(), msg.as_bytes(), &[]) {
        Ok(()) => info!("upgrade: took over from the previous process"),
        Err(e) => warn!("upgrade: the previous process did not hear our ready: {e}"),
    }
}

/// New side: why this process will not take over, for the old one to
/// answer with. A no-op outside an upgrade (or once ready).
pub fn report_failure(msg: &str) {
    let link = LINK.lock().unwrap_or_else(|e| e.into_inner()).take();
    let link = link.or_else(|| {
        // Failed before `receive` (the command line or the file); after
        // it, the number may name another file.
        if RECEIVED.swap(true, std::sync::atomic::Ordering::SeqCst) {
            return None;
        }
        let fd = std::env::var(ENV).ok()?.parse::<i32>().ok()?;
        (fd > 2).then(|| fdpass::take_inherited(fd)).flatten()
    });
    if let Some(link) = link {
        let text: String = format!("X{msg}").chars().take(4096).collect();
        let _ = fdpass::send(link.as_fd(), text.as_bytes(), &[]);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn argv0_with_a_slash_is_made_absolute_not_resolved() {
        let cwd = Path::new("/srv/run");
        assert_eq!(
            exe_path(Path::new("./bin/balance"), Some(cwd)),
            Some(PathBuf::from("/srv/run/./bin/balance"))
        );
        assert_eq!(
            exe_path(Path::new("/usr/bin/balance"), Some(cwd)),
            Some(PathBuf::from("/usr/bin/balance"))
        );
    }

    #[test]
    fn argv0_without_a_slash_is_looked_up_in_path() {
        let found = exe_path(Path::new("sh"), Some(Path::new("/"))).unwrap();
        assert!(found.is_absolute() && found.ends_with("sh"), "{found:?}");
        assert_eq!(
            exe_path(Path::new("no-such-balance-binary"), Some(Path::new("/"))),
            None
        );
    }
}
