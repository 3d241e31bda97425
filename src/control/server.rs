//! The control socket server: one Unix socket per listener.
//!
//! Protocol (line based, UTF-8): the client sends one command per line;
//! the server answers with zero or more text lines, then one marker line
//! `\x04ok G`, `\x04err G` (the command failed) or either followed by
//! ` bye` (the server closes the session), where G is the session's current
//! group. Right after connecting the server sends a greeting the same way.
//! The marker is protocol only; the client never shows it.
//!
//! Bounds: lines ≤ 4 KiB (a longer one gets an error and the session is
//! closed), ≤ 16 words, 10 s to send each whole line (bytes trickling in do
//! not extend it; then the session is closed), ≤ 16 sessions at once. When
//! all 16 are taken, a newcomer evicts a session caught mid-line (part of
//! a line sent; the one waiting longest), else the session idle longest at
//! the start of a line if that is at least [`EVICT_GRACE`]; the evicted one
//! gets an error line and is closed. If none can be evicted, a newcomer
//! from root (to an instance not running as root) takes the place of the session waiting longest however short
//! its wait; anyone else waits in a second table of [`MAX_SESSIONS`]
//! (newest first: the oldest waiting there is closed for a newer one),
//! greeted, until its first whole line: then it takes the place of the
//! session waiting longest, however short its wait. Only if every session
//! is running a command is it refused. So sessions that sit idle, trickle
//! bytes or are opened faster than the grace cannot lock out an operator,
//! whose `-c` sends its command at once; `-i` opens a session per command
//! and is never the one waiting. A NUL byte or invalid UTF-8 gets one error line
//! and changes nothing. Only our own uid and root may talk to the socket
//! (mode 0600 and SO_PEERCRED).

use std::io;
use std::os::fd::AsFd;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::control::commands;
use crate::control::exec::{Control, Reply};
use crate::control::paths;
use crate::control::reload::ReloadHandle;
use crate::control::state::StateFile;
use crate::service::Service;
use crate::slots::{Slot, Slots};

pub(crate) const MAX_LINE: usize = 4096;
pub(crate) const MAX_SESSIONS: usize = 16;
pub(crate) const IDLE_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a session must have waited for its next line before a
/// newcomer may evict it (clients that talk to the socket directly pause
/// briefly between commands).
pub(crate) const EVICT_GRACE: Duration = Duration::from_secs(1);
/// The first byte of the marker line ending every answer.
pub(crate) const MARKER: char = '\u{4}';

/// A running control server. The socket is removed when the server stops:
/// shutdown token cancelled, [`ControlHandle::stop`], or the runtime
/// dropped. Dropping the handle does not stop the server.
#[derive(Debug)]
pub(crate) struct ControlHandle {
    stop: CancellationToken,
    task: tokio::task::JoinHandle<()>,
    fds: Arc<HandoverFds>,
}

impl ControlHandle {
    /// The socket and lock file an `upgrade` hands over.
    pub(crate) fn handover_fds(&self) -> Arc<HandoverFds> {
        Arc::clone(&self.fds)
    }

    /// Stop this server only (e.g. before a reload re-creates the
    /// listener) and wait until its socket is removed, so a new server can
    /// bind the same path at once. Open sessions finish their command.
    pub(crate) async fn stop(self) {
        self.stop.cancel();
        let _ = self.task.await;
    }
}

/// What every control server of the process shares.
#[derive(Debug, Clone)]
pub(crate) struct Context {
    /// The run directory, computed once at start: a socket directly in it
    /// gets the directory created (0700) and checked.
    pub(crate) run_dir: PathBuf,
    /// `--state-file`, restored once at process start by the caller.
    pub(crate) state: Option<Arc<StateFile>>,
    /// `kill` cancels it: the process's graceful shutdown, as SIGTERM.
    pub(crate) shutdown: CancellationToken,
    /// `reload` asks through it.
    pub(crate) reload: ReloadHandle,
    /// Fleet mode: `fleet ...` commands write etcd through it.
    pub(crate) fleet: Option<Arc<crate::fleet::Fleet>>,
    /// The running listeners (`create`/`assign` refuse every bind of the
    /// process).
    pub(crate) listeners: crate::registry::Registry,
    /// `upgrade` asks through it; once handed over, stopping servers keep
    /// their socket files (the successor serves them).
    pub(crate) upgrade: crate::control::upgrade::UpgradeHandle,
}

/// A control socket received from the previous process (`upgrade`): the
/// listening socket and its `PATH.lock`, still locked (the lock belongs
/// to the open file, which both processes share).
#[derive(Debug)]
pub(crate) struct Inherited {
    pub(crate) sock: std::os::unix::net::UnixListener,
    pub(crate) lock: std::fs::File,
}

/// Bind this listener's control socket at `path` and serve it until
/// `stop` is cancelled (or the handle's [`ControlHandle::stop`]). `stop` is
/// usually a child of the shutdown token that a reload cancels when it
/// replaces this listener.
/// Errors (a live instance on the socket, a symlink, a bad run directory)
/// are returned before anything is served.
#[cfg(test)]
pub(crate) async fn spawn(
    svc: Arc<Service>,
    path: PathBuf,
    ctx: Context,
    stop: CancellationToken,
) -> io::Result<ControlHandle> {
    spawn_from(svc, path, ctx, stop, None).await
}

/// [`spawn`], serving `inherited` (the previous process's socket at
/// `path`) instead of binding when given.
pub(crate) async fn spawn_from(
    svc: Arc<Service>,
    path: PathBuf,
    ctx: Context,
    stop: CancellationToken,
    inherited: Option<Inherited>,
) -> io::Result<ControlHandle> {
    let keep = ctx.upgrade.clone();
    let (listener, guard) = match inherited {
        Some(i) => adopt(&path, i, keep)?,
        None => {
            prepare_parent(&path, &ctx.run_dir)?;
            bind(&path, keep)?
        }
    };
    info!(listener = %svc.cfg.name, path = %path.display(), "control socket");
    let fds = HandoverFds::of(&listener, &guard)?;
    let mut ctl = Control::new(svc, ctx.state, ctx.shutdown, ctx.reload);
    ctl.fleet = ctx.fleet;
    ctl.listeners = ctx.listeners;
    ctl.upgrade = ctx.upgrade;
    let ctl = Arc::new(ctl);
    let stop = stop.child_token();
    let task = tokio::spawn(accept_loop(ctl, listener, guard, stop.clone()));
    Ok(ControlHandle {
        stop,
        task,
        fds: Arc::new(fds),
    })
}

/// Copies of a control server's listening socket and lock file, for an
/// `upgrade` to hand over.
#[derive(Debug)]
pub(crate) struct HandoverFds {
    pub(crate) sock: std::os::fd::OwnedFd,
    pub(crate) lock: std::os::fd::OwnedFd,
}

impl HandoverFds {
    /// Copies of a bound (or adopted) socket's descriptor and its lock's.
    pub(crate) fn of(listener: &UnixListener, guard: &SocketGuard) -> io::Result<HandoverFds> {
        Ok(HandoverFds {
            sock: listener.as_fd().try_clone_to_owned()?,
            lock: guard._lock.file.as_fd().try_clone_to_owned()?,
        })
    }
}

/// A socket directly in the run directory: create that directory if
/// missing and refuse a bad one.
fn prepare_parent(path: &Path, run_dir: &Path) -> io::Result<()> {
    match path.parent() {
        Some(dir) if dir == run_dir => paths::prepare_run_dir(dir),
        _ => Ok(()),
    }
}

/// Removes the socket file on drop, if it is still ours, then its lock.
pub(crate) struct SocketGuard {
    path: PathBuf,
    ino: (u64, u64),
    _lock: ClaimLock,
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self._lock.keep.handed_over() {
            return;
        }
        if let Ok(md) = std::fs::symlink_metadata(&self.path) {
            if (md.dev(), md.ino()) == self.ino {
                let _ = std::fs::remove_file(&self.path);
            }
        }
    }
}

/// `PATH.lock` next to a control socket, `flock`ed for as long as the
/// socket is served: the claim of a socket path is atomic. Without it two
/// instances starting at the same moment could each see no live socket
/// (or the other's, bound but not yet listening, as stale), and the
/// loser would unlink the winner's socket or run without one.
struct ClaimLock {
    file: std::fs::File,
    path: PathBuf,
    /// Handed over (`upgrade`): the file stays for the successor.
    keep: crate::control::upgrade::UpgradeHandle,
}

impl ClaimLock {
    fn path_for(socket: &Path) -> PathBuf {
        let mut p = socket.as_os_str().to_os_string();
        p.push(".lock");
        PathBuf::from(p)
    }

    fn claim(socket: &Path, keep: crate::control::upgrade::UpgradeHandle) -> io::Result<ClaimLock> {
        use std::os::unix::fs::OpenOptionsExt;
        let path = Self::path_for(socket);
        // A holder removes the file before unlocking: a lock taken on a
        // file that is no longer at the path is retried on the new one.
        for _ in 0..8 {
            let file = std::fs::OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW)
                .open(&path)?;
            if !crate::sys::try_lock_exclusive(&file)? {
                return Err(io::Error::new(
                    io::ErrorKind::AddrInUse,
                    format!(
                        "control socket {}: another balance instance holds it ({} is locked)",
                        socket.display(),
                        path.display()
                    ),
                ));
            }
            let (f, p) = (file.metadata()?, std::fs::symlink_metadata(&path));
            if p.is_ok_and(|p| (p.dev(), p.ino()) == (f.dev(), f.ino())) {
                return Ok(ClaimLock { file, path, keep });
            }
        }
        Err(io::Error::other(format!(
            "control socket {}: {} keeps changing",
            socket.display(),
            path.display()
        )))
    }
}

impl Drop for ClaimLock {
    fn drop(&mut self) {
        if self.keep.handed_over() {
            return;
        }
        let ours = self.file.metadata().ok().map(|f| (f.dev(), f.ino()));
        if std::fs::symlink_metadata(&self.path).is_ok_and(|md| Some((md.dev(), md.ino())) == ours)
        {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// What is at a socket path now.
enum Existing {
    Nothing,
    /// A socket nobody answers on (left by a dead process).
    Stale,
}

/// Refuse a symlink, a non-socket and a socket a live instance answers on.
fn check_existing(path: &Path) -> io::Result<Existing> {
    let named = |kind: io::ErrorKind, why: String| {
        io::Error::new(kind, format!("control socket {}: {why}", path.display()))
    };
    match std::fs::symlink_metadata(path) {
        Ok(md) if md.file_type().is_symlink() => Err(named(
            io::ErrorKind::PermissionDenied,
            "is a symlink; refusing it".into(),
        )),
        Ok(md) if !md.file_type().is_socket() => Err(named(
            io::ErrorKind::AlreadyExists,
            "exists and is not a socket".into(),
        )),
        Ok(_) => match std::os::unix::net::UnixStream::connect(path) {
            Ok(_) => Err(named(
                io::ErrorKind::AddrInUse,
                "another balance instance answers there (same bind address and port?)".into(),
            )),
            Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => Ok(Existing::Stale),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Nothing),
            Err(e) => Err(named(e.kind(), format!("exists and cannot be probed: {e}"))),
        },
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(Existing::Nothing),
        Err(e) => Err(named(e.kind(), e.to_string())),
    }
}

/// The checks [`spawn`] makes before binding, without changing anything
/// but creating the default run directory: run before daemonizing, so the
/// usual failures (a live instance, a symlink, a bad run directory) reach
/// the terminal with a non-zero exit.
pub(crate) fn preflight(path: &Path, run_dir: &Path) -> io::Result<()> {
    prepare_parent(path, run_dir)?;
    match check_existing(path) {
        Err(e) if e.kind() == io::ErrorKind::AddrInUse && !answers_like_balance(path) => {
            Err(io::Error::new(
                e.kind(),
                format!(
                    "control socket {}: another program listens there (it does not answer like balance)",
                    path.display()
                ),
            ))
        }
        r => r.map(|_| ()),
    }
}

/// Whether the socket at `path` greets like a balance control server (an
/// answer ending in [`MARKER`], even a refusal) within a second. Blocking:
/// for [`preflight`], before the runtime starts.
fn answers_like_balance(path: &Path) -> bool {
    use std::io::Read;
    let Ok(mut s) = std::os::unix::net::UnixStream::connect(path) else {
        return false;
    };
    let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(1)));
    let mut buf = [0u8; 512];
    let mut left = 4096usize;
    while left > 0 {
        match s.read(&mut buf) {
            Ok(0) | Err(_) => return false,
            Ok(n) if buf.get(..n).is_some_and(|b| b.contains(&(MARKER as u8))) => return true,
            Ok(n) => left = left.saturating_sub(n),
        }
    }
    false
}

/// [`preflight`] without creating anything (`--check`): a default run
/// directory that does not exist yet is fine (the start creates it).
pub(crate) fn check(path: &Path, run_dir: &Path) -> io::Result<()> {
    if path.parent() == Some(run_dir) && std::fs::symlink_metadata(run_dir).is_ok() {
        paths::check_dir(run_dir)?;
    }
    check_existing(path).map(|_| ())
}

/// Serve a socket received from the previous process at `path` (its
/// lock file comes with it, locked).
pub(crate) fn adopt(
    path: &Path,
    i: Inherited,
    keep: crate::control::upgrade::UpgradeHandle,
) -> io::Result<(UnixListener, SocketGuard)> {
    let md = std::fs::symlink_metadata(path)?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        ino: (md.dev(), md.ino()),
        _lock: ClaimLock {
            file: i.lock,
            path: ClaimLock::path_for(path),
            keep,
        },
    };
    i.sock.set_nonblocking(true)?;
    Ok((UnixListener::from_std(i.sock)?, guard))
}

fn bind(
    path: &Path,
    keep: crate::control::upgrade::UpgradeHandle,
) -> io::Result<(UnixListener, SocketGuard)> {
    bind_with(path, 0o600, None, keep)
}

/// Bind a socket at `path` the way the control socket is bound (the
/// claim lock, a stale socket replaced, a live one or a symlink refused),
/// with permission bits `mode` (within 0660) from birth and, if `gid` is
/// given, that group. `keep`: once handed over (`upgrade`), the files stay.
pub(crate) fn bind_with(
    path: &Path,
    mode: u32,
    gid: Option<u32>,
    keep: crate::control::upgrade::UpgradeHandle,
) -> io::Result<(UnixListener, SocketGuard)> {
    let named = |kind: io::ErrorKind, why: String| {
        io::Error::new(kind, format!("control socket {}: {why}", path.display()))
    };
    // Before anything at the path is judged or removed.
    let lock = ClaimLock::claim(path, keep)?;
    if let Existing::Stale = check_existing(path)? {
        std::fs::remove_file(path)?;
    }
    // The mode from birth: bind(2) creates the file with the umask applied.
    let umask = 0o777 & !(mode & 0o660);
    let std_listener =
        crate::sys::with_umask(umask, || std::os::unix::net::UnixListener::bind(path))
            .map_err(|e| named(e.kind(), format!("cannot bind: {e}")))?;
    let md = std::fs::symlink_metadata(path)?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        ino: (md.dev(), md.ino()),
        _lock: lock,
    };
    if let Some(gid) = gid {
        std::os::unix::fs::lchown(path, None, Some(gid))
            .map_err(|e| named(e.kind(), format!("cannot give it group {gid}: {e}")))?;
    }
    std_listener.set_nonblocking(true)?;
    let listener = UnixListener::from_std(std_listener)?;
    Ok((listener, guard))
}

async fn accept_loop(
    ctl: Arc<Control>,
    listener: UnixListener,
    guard: SocketGuard,
    stop: CancellationToken,
) {
    let name = ctl.svc.cfg.name.clone();
    let mut refusal = Vec::new();
    let reply = Reply::err(format!(
        "error: too many control sessions (at most {MAX_SESSIONS}); try again"
    ));
    let _ = write_reply(&mut refusal, &reply, 0, true).await;
    let session = move |stream, admit, sessions: Arc<Slots>| {
        let ctl = Arc::clone(&ctl);
        async move { session(&ctl, stream, admit, &sessions).await }
    };
    serve_sessions(listener, guard, stop, &name, session, refusal).await;
}

/// Accept on `listener` until `stop`, admitting each connection (see the
/// module doc) to a task running `session`, or refusing it with the bytes
/// of `refusal`; then remove the socket (`guard`). `name` is for the log.
pub(crate) async fn serve_sessions<F, Fut>(
    listener: UnixListener,
    guard: SocketGuard,
    stop: CancellationToken,
    name: &str,
    session: F,
    refusal: Vec<u8>,
) where
    F: Fn(UnixStream, Admit, Arc<Slots>) -> Fut,
    Fut: std::future::Future<Output = ()> + Send + 'static,
{
    let sessions = Slots::new(MAX_SESSIONS, EVICT_GRACE);
    // Newcomers that found every session place taken, until their first
    // whole line; the newest are kept.
    let pending = Slots::new(MAX_SESSIONS, Duration::ZERO);
    let refusal: Arc<[u8]> = refusal.into();
    loop {
        let stream = tokio::select! {
            _ = stop.cancelled() => break,
            r = listener.accept() => match r {
                Ok((s, _)) => s,
                Err(e) => {
                    warn!(listener = %name, "control accept: {e}");
                    tokio::time::sleep(Duration::from_millis(100)).await;
                    continue;
                }
            },
        };
        match admit(&sessions, &pending, &stream) {
            Some(admit) => {
                tokio::spawn(session(stream, admit, Arc::clone(&sessions)));
            }
            None => {
                let refusal = Arc::clone(&refusal);
                tokio::spawn(async move {
                    let mut s = stream;
                    let _ =
                        tokio::time::timeout(Duration::from_secs(1), s.write_all(&refusal)).await;
                });
            }
        }
    }
    drop(listener);
    drop(guard);
    debug!(listener = %name, "control socket closed");
}

/// A place for a new connection (see the module doc), or None: refuse it.
fn admit(sessions: &Arc<Slots>, pending: &Arc<Slots>, stream: &UnixStream) -> Option<Admit> {
    match sessions.acquire() {
        Some(slot) => Some(Admit::Session(slot)),
        None if from_root(stream) => sessions.acquire_now().map(Admit::Session),
        None => None,
    }
    .or_else(|| pending.acquire().map(Admit::Pending))
}

/// How a session got in.
pub(crate) enum Admit {
    /// A place among the sessions.
    Session(Slot),
    /// A place among the newcomers waiting for their first whole line,
    /// which then claims a session's place ([`Slots::acquire_now`]).
    Pending(Slot),
}

/// Whether the peer of a control connection is root and we are not (a
/// root instance cannot tell its operator from its other sessions by uid).
fn from_root(s: &UnixStream) -> bool {
    crate::sys::euid() != 0 && s.peer_cred().is_ok_and(|c| c.uid() == 0)
}

/// Whether `uid` is ours or root's: who may talk to a control socket.
pub(crate) fn own_or_root(uid: u32) -> bool {
    uid == crate::sys::euid() || uid == 0
}

pub(crate) enum LineRead {
    Line,
    Eof,
    TooLong,
}

/// Read one line (without its newline) into `buf`, at most [`MAX_LINE`]
/// bytes; a final line without newline counts as a line. Part of a line
/// arriving marks `slot` partial (first to be evicted).
pub(crate) async fn read_line<R: tokio::io::AsyncBufRead + Unpin>(
    r: &mut R,
    buf: &mut Vec<u8>,
    slot: Option<&Slot>,
) -> io::Result<LineRead> {
    buf.clear();
    loop {
        let avail = r.fill_buf().await?;
        if avail.is_empty() {
            return Ok(if buf.is_empty() {
                LineRead::Eof
            } else {
                LineRead::Line
            });
        }
        if let Some(i) = avail.iter().position(|&b| b == b'\n') {
            if buf.len() + i > MAX_LINE {
                return Ok(LineRead::TooLong);
            }
            buf.extend_from_slice(avail.get(..i).unwrap_or_default());
            r.consume(i + 1);
            return Ok(LineRead::Line);
        }
        if buf.len() + avail.len() > MAX_LINE {
            return Ok(LineRead::TooLong);
        }
        buf.extend_from_slice(avail);
        let n = avail.len();
        r.consume(n);
        if let Some(slot) = slot {
            slot.partial();
        }
    }
}

async fn write_reply<W: tokio::io::AsyncWrite + Unpin>(
    w: &mut W,
    reply: &Reply,
    group: usize,
    bye: bool,
) -> io::Result<()> {
    let mut out = String::new();
    for l in &reply.lines {
        out.push_str(l);
        out.push('\n');
    }
    out.push(MARKER);
    out.push_str(if reply.ok { "ok " } else { "err " });
    out.push_str(&group.to_string());
    if bye {
        out.push_str(" bye");
    }
    out.push('\n');
    w.write_all(out.as_bytes()).await?;
    w.flush().await
}

async fn session(ctl: &Control, stream: UnixStream, admit: Admit, sessions: &Arc<Slots>) {
    let (mut slot, mut pending) = match admit {
        Admit::Session(s) => (s, false),
        Admit::Pending(s) => (s, true),
    };
    let name = &ctl.svc.cfg.name;
    let uid = match stream.peer_cred() {
        Ok(c) => c.uid(),
        Err(e) => {
            warn!(listener = %name, "control: no peer credentials: {e}");
            return;
        }
    };
    let (rd, mut wr) = stream.into_split();
    if !own_or_root(uid) {
        warn!(listener = %name, uid, "control: refused a session from another user");
        let r = Reply::err(format!("error: permission denied for uid {uid}"));
        let _ = tokio::time::timeout(IDLE_TIMEOUT, write_reply(&mut wr, &r, 0, true)).await;
        return;
    }
    debug!(listener = %name, uid, "control session");
    let mut rd = BufReader::with_capacity(MAX_LINE + 1, rd);
    let mut group = 0usize;
    let greeting = Reply {
        lines: vec![
            String::new(),
            format!(
                "balance {} interactive command shell",
                env!("CARGO_PKG_VERSION")
            ),
            format!("PID of master process is {}", std::process::id()),
            String::new(),
        ],
        ok: true,
        close: false,
    };
    if !matches!(
        tokio::time::timeout(IDLE_TIMEOUT, write_reply(&mut wr, &greeting, group, false)).await,
        Ok(Ok(()))
    ) {
        return;
    }
    let mut buf = Vec::with_capacity(256);
    loop {
        slot.waiting();
        let got = tokio::select! {
            got = tokio::time::timeout(IDLE_TIMEOUT, read_line(&mut rd, &mut buf, Some(&slot))) => Some(got),
            _ = slot.evicted() => None,
        };
        slot.busy();
        // Evicted while its line arrived: the place is gone, so the command
        // is not run (the answer says why).
        let got = got.filter(|_| !slot.is_evicted());
        let Some(got) = got else {
            debug!(listener = %name, uid, "control: session evicted for a newer one");
            let r = Reply::err(format!(
                "error: closed for a newer session (all {MAX_SESSIONS} in use; this one waited longest)"
            ));
            let _ = tokio::time::timeout(
                Duration::from_secs(1),
                write_reply(&mut wr, &r, group, true),
            )
            .await;
            return;
        };
        let (reply, bye) = match got {
            Err(_) => (
                Reply::err(format!(
                    "error: no complete command for {} s; closing",
                    IDLE_TIMEOUT.as_secs()
                )),
                true,
            ),
            Ok(Err(_)) | Ok(Ok(LineRead::Eof)) => return,
            Ok(Ok(LineRead::TooLong)) => (
                Reply::err(format!("error: line longer than {MAX_LINE} bytes; closing")),
                true,
            ),
            Ok(Ok(LineRead::Line)) if pending => match sessions.acquire_now() {
                // A whole line: a real client, worth a session's place.
                Some(s) => {
                    (slot, pending) = (s, false);
                    slot.busy();
                    let r = run_line(ctl, &mut group, &buf, uid).await;
                    let bye = r.close;
                    (r, bye)
                }
                None => (
                    Reply::err(format!(
                        "error: too many control sessions (at most {MAX_SESSIONS}, all running commands); try again"
                    )),
                    true,
                ),
            },
            Ok(Ok(LineRead::Line)) => {
                let r = run_line(ctl, &mut group, &buf, uid).await;
                let bye = r.close;
                (r, bye)
            }
        };
        let w = tokio::time::timeout(IDLE_TIMEOUT, write_reply(&mut wr, &reply, group, bye)).await;
        if bye || !matches!(w, Ok(Ok(()))) {
            ctl.upgrade.session_closed();
            return;
        }
    }
}

/// Parse and run one command line (without its newline).
async fn run_line(ctl: &Control, group: &mut usize, buf: &[u8], uid: u32) -> Reply {
    let line = buf.strip_suffix(b"\r").unwrap_or(buf);
    if line.contains(&0) {
        return Reply::err("error: NUL byte in command; ignored");
    }
    match std::str::from_utf8(line) {
        Err(_) => Reply::err("error: command is not valid UTF-8; ignored"),
        Ok(text) => match commands::parse(text) {
            Err(e) => Reply::err(e.to_string()),
            Ok(cmd) => ctl.execute(group, cmd, text, uid).await,
        },
    }
}

#[cfg(test)]
mod tests;
