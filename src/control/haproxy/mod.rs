//! HAProxy's runtime API (its "stats socket", management guide 9.3) on a
//! Unix socket of its own, so that tools written for HAProxy (socat lines,
//! Ansible's `community.general.haproxy`, `haproxyadmin`,
//! `prometheus-haproxy-exporter`, hatop) steer and read balance. Opt-in:
//! `--haproxy-socket PATH` or `haproxy_socket:` in the file. One socket for
//! the process: backend = listener, server = channel, a later group's
//! channels = backup servers (ids: see [`stat`]).
//!
//! - [`command`]: one command → [`command::Cmd`] (pure).
//! - [`run`]: running it; every change through [`crate::operator::apply`],
//!   persisted to the state file like every operator change.
//! - [`stat`]: `show stat`/`info`/`servers state`/`backend` texts.
//!
//! Protocol as HAProxy speaks it: a line holds commands separated by `;`,
//! each answer ends with an empty line; the connection is closed after the
//! line unless `prompt` turned interactive mode on (then `> ` follows each
//! answer, and `quit` closes). The socket is bound and bounded as the
//! control socket is (see [`crate::control::server`]: its claim lock,
//! lines ≤ 4 KiB, 10 s to send a line, 16 sessions with eviction of idle
//! ones); who may connect: our uid and root, and with `group` and a mode
//! that lets the group write, that group's members (peer credentials).

pub(crate) mod command;
pub(crate) mod run;
pub(crate) mod stat;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::{AsyncWriteExt, BufReader};
use tokio::net::unix::OwnedWriteHalf;
use tokio::net::{UnixListener, UnixStream};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::HaproxySocket;
use crate::control::server::{
    self, Admit, IDLE_TIMEOUT, LineRead, MAX_LINE, MAX_SESSIONS, SocketGuard,
};
use crate::slots::Slots;
use run::{Effect, Runtime};

pub(crate) use run::Runtime as Context;

/// HAProxy's interactive prompt.
const PROMPT: &str = "> ";

/// The running socket; it is removed when `stop` is cancelled.
pub(crate) struct Handle {
    pub(crate) path: PathBuf,
    task: tokio::task::JoinHandle<()>,
    fds: Arc<server::HandoverFds>,
}

impl Handle {
    /// The socket and lock file an `upgrade` hands over.
    pub(crate) fn handover_fds(&self) -> Arc<server::HandoverFds> {
        Arc::clone(&self.fds)
    }

    /// Wait until the socket is closed and removed.
    pub(crate) async fn join(self) {
        let _ = self.task.await;
    }
}

/// Checks before daemonizing, creating nothing: the path is free (or a
/// stale socket) and the group exists.
pub(crate) fn check(cfg: &HaproxySocket, run_dir: &Path) -> Result<(), String> {
    let named = |e: String| format!("haproxy socket {}: {e}", cfg.path.display());
    if let Some(g) = &cfg.group {
        crate::sys::lookup_group(g).map_err(|e| named(format!("group {g}: {e}")))?;
    }
    server::check(&cfg.path, run_dir).map_err(|e| named(why(&cfg.path, &e)))
}

/// Why the shared socket code refused `path`, without its words for the
/// control socket.
fn why(path: &Path, e: &io::Error) -> String {
    if e.kind() == io::ErrorKind::AddrInUse {
        return "another process answers there (another balance with this haproxy_socket?)".into();
    }
    let text = e.to_string();
    let prefix = format!("control socket {}: ", path.display());
    text.strip_prefix(&prefix).unwrap_or(&text).to_string()
}

/// What [`spawn`] binds or adopts, and how it ends.
pub(crate) struct Start {
    /// The previous process's socket at the path (`upgrade`): served
    /// instead of binding.
    pub(crate) inherited: Option<server::Inherited>,
    /// Once handed over by `upgrade`, the files stay (the successor's).
    pub(crate) keep: crate::control::upgrade::UpgradeHandle,
    pub(crate) stop: CancellationToken,
}

/// Bind the socket (or serve the inherited one) until `stop` is cancelled.
pub(crate) fn spawn(cfg: &HaproxySocket, rt: Runtime, start: Start) -> io::Result<Handle> {
    let gid = match &cfg.group {
        Some(g) => Some(
            crate::sys::lookup_group(g)
                .map_err(|e| io::Error::new(e.kind(), format!("haproxy socket group {g}: {e}")))?,
        ),
        None => None,
    };
    let named = |e: io::Error| {
        let msg = format!(
            "haproxy socket {}: {}",
            cfg.path.display(),
            why(&cfg.path, &e)
        );
        io::Error::new(e.kind(), msg)
    };
    let (listener, guard) = match start.inherited {
        // Its mode and group are the file's, set when it was bound.
        Some(i) => server::adopt(&cfg.path, i, start.keep).map_err(named)?,
        None => server::bind_with(&cfg.path, cfg.mode, gid, start.keep).map_err(named)?,
    };
    let fds = server::HandoverFds::of(&listener, &guard).map_err(named)?;
    info!(path = %cfg.path.display(), mode = format!("{:o}", cfg.mode), "haproxy runtime socket");
    let srv = Arc::new(Server {
        rt,
        gid: gid.filter(|_| cfg.mode & 0o020 != 0),
    });
    let task = tokio::spawn(accept_loop(srv, listener, guard, start.stop));
    Ok(Handle {
        path: cfg.path.clone(),
        task,
        fds: Arc::new(fds),
    })
}

struct Server {
    rt: Runtime,
    /// Members of this group may connect too.
    gid: Option<u32>,
}

impl Runtime {
    pub(crate) fn new(
        registry: crate::registry::Registry,
        state: Option<Arc<crate::control::StateFile>>,
        maxconn: usize,
        threads: usize,
    ) -> Runtime {
        Runtime {
            registry,
            state,
            maxconn,
            threads,
            started: Instant::now(),
            write: tokio::sync::Mutex::new(()),
        }
    }
}

async fn accept_loop(
    srv: Arc<Server>,
    listener: UnixListener,
    guard: SocketGuard,
    stop: CancellationToken,
) {
    let refusal = format!("Too many sessions (at most {MAX_SESSIONS}); try again.\n\n");
    let session = move |stream, admit, sessions: Arc<Slots>| {
        let srv = Arc::clone(&srv);
        async move { session(&srv, stream, admit, &sessions).await }
    };
    server::serve_sessions(listener, guard, stop, "haproxy", session, refusal.into()).await;
}

/// Whether the process `pid` (a peer) is in group `gid` (supplementary
/// groups, from /proc).
fn in_group(pid: Option<i32>, gid: u32) -> bool {
    let Some(pid) = pid else {
        return false;
    };
    let Ok(status) = std::fs::read_to_string(format!("/proc/{pid}/status")) else {
        return false;
    };
    status
        .lines()
        .find_map(|l| l.strip_prefix("Groups:"))
        .is_some_and(|g| g.split_whitespace().any(|x| x.parse() == Ok(gid)))
}

async fn session(srv: &Server, stream: UnixStream, admit: Admit, sessions: &Arc<Slots>) {
    let (mut slot, mut pending) = match admit {
        Admit::Session(s) => (s, false),
        Admit::Pending(s) => (s, true),
    };
    let Ok(cred) = stream.peer_cred() else {
        return;
    };
    let uid = cred.uid();
    let (mut rd, mut wr) = stream.into_split();
    let allowed = server::own_or_root(uid)
        || srv
            .gid
            .is_some_and(|g| cred.gid() == g || in_group(cred.pid(), g));
    if !allowed {
        warn!(uid, "haproxy socket: refused a session from another user");
        let _ = tokio::time::timeout(IDLE_TIMEOUT, wr.write_all(b"Permission denied\n\n")).await;
        finish(&mut wr, &mut rd).await;
        return;
    }
    let mut rd = BufReader::with_capacity(MAX_LINE + 1, rd);
    let mut buf = Vec::with_capacity(256);
    let mut prompt = false;
    let mut idle = IDLE_TIMEOUT;
    loop {
        slot.waiting();
        let got = tokio::select! {
            got = tokio::time::timeout(idle, server::read_line(&mut rd, &mut buf, Some(&slot))) => Some(got),
            _ = slot.evicted() => None,
        };
        slot.busy();
        let Some(Ok(Ok(got))) = got.filter(|_| !slot.is_evicted()) else {
            // Evicted for a newer session, idle too long, or gone.
            return;
        };
        let (out, close) = match got {
            LineRead::Eof => return,
            LineRead::TooLong => (format!("Line longer than {MAX_LINE} bytes.\n\n"), true),
            LineRead::Line if pending => match sessions.acquire_now() {
                Some(s) => {
                    (slot, pending) = (s, false);
                    slot.busy();
                    run_line(&srv.rt, &buf, uid, &mut prompt, &mut idle).await
                }
                None => (
                    format!("Too many sessions (at most {MAX_SESSIONS}, all busy); try again.\n\n"),
                    true,
                ),
            },
            LineRead::Line => run_line(&srv.rt, &buf, uid, &mut prompt, &mut idle).await,
        };
        let mut out = out;
        let close = close || !prompt;
        if !close {
            out.push_str(PROMPT);
        }
        let w = tokio::time::timeout(IDLE_TIMEOUT, wr.write_all(out.as_bytes())).await;
        if close || !matches!(w, Ok(Ok(()))) {
            finish(&mut wr, &mut rd).await;
            return;
        }
    }
}

/// End a session: shut our side, then read and drop what the client sent
/// past its line (briefly, bounded), so that closing does not reset the
/// connection before the client has read the answer.
async fn finish<R: tokio::io::AsyncRead + Unpin>(wr: &mut OwnedWriteHalf, rd: &mut R) {
    let _ = tokio::time::timeout(Duration::from_secs(1), wr.shutdown()).await;
    let mut rest = tokio::io::AsyncReadExt::take(rd, 64 * 1024);
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        tokio::io::copy(&mut rest, &mut tokio::io::sink()),
    )
    .await;
}

/// Run one line: its commands in order, each answer ended by an empty
/// line. Returns the output and whether to close (`quit`).
async fn run_line(
    rt: &Runtime,
    buf: &[u8],
    uid: u32,
    prompt: &mut bool,
    idle: &mut Duration,
) -> (String, bool) {
    let line = buf.strip_suffix(b"\r").unwrap_or(buf);
    let text = match std::str::from_utf8(line) {
        Ok(t) if !t.contains('\0') => t,
        _ => return ("Command is not valid text; ignored.\n\n".into(), false),
    };
    let mut out = String::new();
    for piece in text.split(';') {
        let (o, effect) = match command::parse(piece) {
            Ok(cmd) => rt.run(cmd, uid).await,
            Err(e) => (e + "\n", Effect::None),
        };
        match effect {
            Effect::Quit => return (out, true),
            Effect::Prompt => *prompt = !*prompt,
            Effect::Timeout(d) => *idle = d.min(IDLE_TIMEOUT),
            Effect::None => {}
        }
        out.push_str(&o);
        out.push('\n');
    }
    (out, false)
}
