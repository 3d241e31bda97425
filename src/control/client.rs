//! The client side: `balance [-b addr] -c CMD PORT` and
//! `balance [-b addr] -i PORT`. Plain blocking I/O; no runtime.
//!
//! `-c` may hold several commands separated by `;` (`-c "group 1; hash"`):
//! they run in one session, so `group` carries over, and the first failure
//! stops the rest.
//!
//! Exit codes: 0 when the command (or the whole shell session) went
//! through; 1 when the instance answered with an error; 69 (EX_UNAVAILABLE)
//! when no instance answers; 64 for a `-c` argument with a newline, or
//! when, without `-b`, several instances listen on the port.

use std::io::{self, BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::cli::ControlArgs;
use crate::control::paths;
use crate::control::server::MARKER;
use crate::exit::Exit;
/// How long to wait for an answer: a `show` of a big pool is quick, but a
/// `fleet switchover` with its longest timeout (20 s) may take about 31 s
/// (acknowledgements, catch-up, the floor write).
const ANSWER_TIMEOUT: Duration = Duration::from_secs(60);

/// One answer: its lines, whether it succeeded, the session's current
/// group, and whether the server closes the session.
struct Answer {
    lines: Vec<String>,
    ok: bool,
    group: usize,
    bye: bool,
}

/// The most the client reads for one answer: far above a `show json` of
/// thousands of channels, and a bound on what a foreign socket can make it
/// hold and print.
const MAX_ANSWER: u64 = 16 << 20;

fn read_answer(r: &mut impl BufRead) -> io::Result<Answer> {
    let mut lines = Vec::new();
    let mut buf = Vec::new();
    let mut total = 0u64;
    loop {
        buf.clear();
        let n = r
            .by_ref()
            .take(MAX_ANSWER + 1 - total)
            .read_until(b'\n', &mut buf)?;
        total += n as u64;
        if total > MAX_ANSWER {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "answer larger than 16 MiB: not a balance control socket?",
            ));
        }
        if n == 0 {
            return Err(io::Error::new(
                io::ErrorKind::UnexpectedEof,
                "connection closed by the instance",
            ));
        }
        let text = String::from_utf8_lossy(&buf);
        let text = text.trim_end_matches(['\n', '\r']);
        if let Some(m) = text.strip_prefix(MARKER) {
            let mut it = m.split(' ');
            let ok = it.next() == Some("ok");
            let group = it.next().and_then(|g| g.parse().ok()).unwrap_or(0);
            let bye = it.next() == Some("bye");
            return Ok(Answer {
                lines,
                ok,
                group,
                bye,
            });
        }
        lines.push(text.to_string());
    }
}

/// The socket to talk to: `--control PATH`, else the derived name for
/// `-b` and the port (without `-b`: the IPv4 wildcard's, then `[::]`'s;
/// when neither answers, the one live instance on that port whatever its
/// bind address, and when several are, their list and the `-b` of each).
fn socket_path(a: &ControlArgs) -> Result<PathBuf, ClientError> {
    if let Some(p) = &a.path {
        // A directory: the server put each listener's socket in it under
        // its derived name (several listeners, or `--control DIR`).
        if p.is_dir() {
            let cands: Vec<PathBuf> = paths::socket_names(a.bind, a.port)
                .iter()
                .map(|n| p.join(n))
                .collect();
            let found = cands.iter().find(|c| c.exists()).or(cands.first());
            return Ok(found.cloned().unwrap_or_else(|| p.clone()));
        }
        return Ok(p.clone());
    }
    let cands = paths::client_candidates(a.bind, a.port);
    let present: Vec<&PathBuf> = cands
        .iter()
        .filter(|p| std::fs::symlink_metadata(p).is_ok())
        .collect();
    // Several: a stale socket left by a killed instance (root's, say) must
    // not hide the live one (under `--user`): take the first that answers.
    if let Some(p) = present.iter().find(|p| UnixStream::connect(p).is_ok()) {
        return Ok((*p).clone());
    }
    if a.bind.is_none() {
        let mut live: Vec<(PathBuf, std::net::IpAddr)> = paths::port_sockets(a.port)
            .into_iter()
            .filter(|(p, _)| UnixStream::connect(p).is_ok())
            .collect();
        live.dedup_by(|x, y| x.0 == y.0);
        match live.as_slice() {
            [(one, _)] => return Ok(one.clone()),
            [] => {}
            several => {
                let list: Vec<String> = several
                    .iter()
                    .map(|(p, ip)| format!("-b {ip} for {}", p.display()))
                    .collect();
                return Err(ClientError::Ambiguous(format!(
                    "{} instances listen on port {}; pick one: {}",
                    several.len(),
                    a.port,
                    list.join(", ")
                )));
            }
        }
    }
    if let Some(p) = present.first() {
        return Ok((*p).clone());
    }
    Err(ClientError::Unavailable(format!(
        "no instance answers on port {}: no control socket at {}",
        a.port,
        tried(&cands)
    )))
}

/// The places looked at, for the one-line error: the first few, then how
/// many more (a shared run directory can hold many subdirectories).
fn tried(cands: &[PathBuf]) -> String {
    const SHOWN: usize = 3;
    let mut names: Vec<String> = cands
        .iter()
        .take(SHOWN)
        .map(|p| p.display().to_string())
        .collect();
    if cands.len() > SHOWN {
        names.push(format!("{} other places", cands.len() - SHOWN));
    }
    names.join(" or ")
}

/// One session: a connection whose greeting was read.
struct Session {
    r: BufReader<UnixStream>,
    w: UnixStream,
}

/// Why the client did not go through.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ClientError {
    /// A `-c` argument with a newline: exit 64.
    #[error("-c takes one command (no newlines)")]
    Usage,
    /// Without `-b`, several instances listen on the port: exit 64.
    #[error("{0}")]
    Ambiguous(String),
    /// No instance answers (or the connection broke): exit 69.
    #[error("{0}")]
    Unavailable(String),
    /// The instance answered with an error (too many sessions, denied):
    /// exit 1, each line on stderr.
    #[error("{}", .0.join("; "))]
    Refused(Vec<String>),
    /// A command failed: its answer went to stdout as balance.fm's client
    /// printed it; exit 1.
    #[error("command failed")]
    Failed,
}

impl ClientError {
    pub(crate) fn exit(&self) -> Exit {
        match self {
            ClientError::Usage | ClientError::Ambiguous(_) => Exit::Usage,
            ClientError::Unavailable(_) => Exit::Unavailable,
            ClientError::Refused(_) | ClientError::Failed => Exit::Failure,
        }
    }

    /// Print the error on stderr, one `balance: ` line each, and give the
    /// exit code.
    fn report(&self) -> Exit {
        match self {
            ClientError::Refused(lines) => {
                for l in lines {
                    eprintln!("balance: {l}");
                }
            }
            // Already on stdout.
            ClientError::Failed => {}
            e => eprintln!("balance: {e}"),
        }
        self.exit()
    }
}

impl Session {
    fn open(path: &Path) -> Result<(Session, Answer), ClientError> {
        let stream = UnixStream::connect(path).map_err(|e| {
            ClientError::Unavailable(format!("no instance answers on {}: {e}", path.display()))
        })?;
        let _ = stream.set_read_timeout(Some(ANSWER_TIMEOUT));
        let _ = stream.set_write_timeout(Some(ANSWER_TIMEOUT));
        let lost = |e: io::Error| {
            ClientError::Unavailable(format!("control socket {}: {e}", path.display()))
        };
        let w = stream.try_clone().map_err(lost)?;
        let mut r = BufReader::new(stream);
        let greeting = read_answer(&mut r).map_err(lost)?;
        if !greeting.ok {
            return Err(ClientError::Refused(greeting.lines));
        }
        Ok((Session { r, w }, greeting))
    }

    /// Send one line (a newline is added if missing) and read the answer.
    fn send(&mut self, line: &[u8]) -> io::Result<Answer> {
        let mut buf = line.to_vec();
        if buf.last() != Some(&b'\n') {
            buf.push(b'\n');
        }
        self.w.write_all(&buf)?;
        read_answer(&mut self.r)
    }
}

/// Run the client; returns the exit code.
pub fn run(a: &ControlArgs) -> Exit {
    match client(a) {
        Ok(()) => Exit::Ok,
        Err(e) => e.report(),
    }
}

fn client(a: &ControlArgs) -> Result<(), ClientError> {
    if a.command.as_deref().is_some_and(|c| c.contains('\n')) {
        return Err(ClientError::Usage);
    }
    let path = socket_path(a)?;
    if a.debug {
        eprintln!("balance: control socket {}", path.display());
    }
    let (mut session, greeting) = Session::open(&path)?;
    let lost =
        |e: io::Error| ClientError::Unavailable(format!("control socket {}: {e}", path.display()));
    let Some(cmds) = &a.command else {
        drop(session);
        return shell(&path, greeting);
    };
    // `-c "group 1; hash"`: several commands in one session, in order,
    // stopping at the first that fails.
    for cmd in cmds.split(';').map(str::trim) {
        if cmd.is_empty() && cmds.contains(';') {
            continue;
        }
        let ans = session.send(cmd.as_bytes()).map_err(lost)?;
        // Errors too go to stdout, as the server says them (balance.fm's
        // client printed every answer there); the exit status tells.
        let mut out = io::stdout().lock();
        for l in &ans.lines {
            let _ = writeln!(out, "{l}");
        }
        if !ans.ok {
            return Err(ClientError::Failed);
        }
        if ans.bye {
            break;
        }
    }
    Ok(())
}

/// The interactive shell: balance.fm's banner and `balance[G] ` prompt,
/// until `quit`, `kill` or end of input. Answers (errors too) go to stdout
/// like balance.fm's; works the same with piped input.
///
/// Each command runs in a fresh session that first selects the current
/// group, so a shell may sit at its prompt longer than the server's 10 s
/// idle limit.
fn shell(path: &Path, greeting: Answer) -> Result<(), ClientError> {
    let io_err =
        |e: io::Error| ClientError::Unavailable(format!("control socket {}: {e}", path.display()));
    let mut out = io::stdout().lock();
    for l in &greeting.lines {
        writeln!(out, "{l}").map_err(io_err)?;
    }
    let mut group = greeting.group;
    let stdin = io::stdin();
    let mut input = stdin.lock();
    let mut line = Vec::new();
    loop {
        write!(out, "balance[{group}] ").map_err(io_err)?;
        out.flush().map_err(io_err)?;
        line.clear();
        if input.read_until(b'\n', &mut line).map_err(io_err)? == 0 {
            writeln!(out).map_err(io_err)?;
            return Ok(());
        }
        let (mut s, _) = Session::open(path)?;
        if group != 0 {
            let g = s
                .send(format!("group {group}").as_bytes())
                .map_err(io_err)?;
            if !g.ok {
                for l in &g.lines {
                    writeln!(out, "{l}").map_err(io_err)?;
                }
            }
        }
        let ans = s.send(&line).map_err(io_err)?;
        for l in &ans.lines {
            writeln!(out, "{l}").map_err(io_err)?;
        }
        group = ans.group;
        // `quit` and `kill` end the shell; a session the server closed
        // for a bad line does not (the next command opens a new one).
        if ans.bye && ans.ok {
            out.flush().map_err(io_err)?;
            return Ok(());
        }
    }
}

#[cfg(test)]
mod tests;
