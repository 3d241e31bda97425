//! Probes: one module per check kind. Each returns `Ok(())` or a short
//! reason ("connection refused", "HTTP 503", "MySQL error 1040: ..."), and
//! may note what it learned ([`Facts`]: replication lag); it never writes
//! pool state (the service applies findings and facts). A new kind is its
//! module, its arm in [`run_chain`], its [`Probe`] variant and its grammar
//! (`-m` and YAML).
//! Replies are untrusted: at most [`MAX_REPLY`] bytes are read, always under
//! a timeout, and backend bytes are escaped before they reach a reason.

pub(crate) mod connect;
pub(crate) mod exec;
pub(crate) mod http;
pub(crate) mod mysql;
pub(crate) mod redis;
pub(crate) mod sendexpect;

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::config::ProxyVersion;
use crate::config::monitor::{Check, Probe};
use crate::health::Facts;

/// Most bytes read from a backend's reply.
pub const MAX_REPLY: usize = 16 * 1024;
/// Extra time given to an exec check beyond its own timeout, so it can be
/// killed and reaped by itself before the outer bound cuts it.
const EXEC_SLACK: Duration = Duration::from_secs(2);

/// What a probe runs against: one resolved address of a channel.
#[derive(Debug, Clone)]
pub(crate) struct Ctx {
    pub(crate) addr: SocketAddr,
    /// The channel's configured host (name or IP), for `Host:`.
    pub(crate) host: String,
    pub(crate) group: usize,
    pub(crate) index: usize,
    /// `-B`: probes leave from the same source address as traffic (it
    /// matters for MySQL grants such as 'chk'@'10.0.0.5').
    pub(crate) source: Option<std::net::IpAddr>,
    /// Not in the group traffic starts from (the failback floor): the
    /// catch-up gate applies even while the primary is reachable.
    pub(crate) backup: bool,
    /// The serving writer of a fenced failover chain: judged as a primary
    /// (login, `read_only=`), its own replication only warned about.
    pub(crate) primary: bool,
    /// The channel's connection still waiting for a greeting, if the check
    /// keeps one (`mysql`).
    pub(crate) pending: Option<std::sync::Arc<Pending>>,
    /// The channel's `proxy_protocol`: its checks send the matching
    /// header with no client behind it (`PROXY UNKNOWN`, v2 LOCAL).
    pub(crate) proxy: Option<ProxyVersion>,
}

impl Ctx {
    /// How this channel's checks connect to its address.
    pub(crate) fn dial(&self) -> Dial {
        Dial {
            source: self.source,
            proxy: self.proxy,
        }
    }
}

/// How a check reaches a backend: from which source address (`-B`), and
/// with which PROXY header first (the channel's `proxy_protocol`, so a
/// backend that requires the header accepts its checks).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Dial {
    pub(crate) source: Option<std::net::IpAddr>,
    pub(crate) proxy: Option<ProxyVersion>,
}

/// Where a probed channel stands in its listener (see [`Ctx`]).
#[derive(Debug, Clone)]
pub(crate) struct Place {
    pub(crate) backup: bool,
    pub(crate) primary: bool,
    pub(crate) pending: Option<std::sync::Arc<Pending>>,
}

/// A connection a check opened whose server has not greeted it yet (it
/// hangs: the kernel completed the handshake, the process does not
/// answer). The next check goes on waiting on it instead of opening
/// another, so a hung server finds one connection when it resumes, greets
/// it and sees a clean login, instead of one aborted handshake per check.
/// Kept at most [`PENDING_MAX`].
pub(crate) type Pending = tokio::sync::Mutex<Option<Parked>>;

/// How long a connection may wait for its greeting across checks.
pub(crate) const PENDING_MAX: Duration = Duration::from_secs(60);

/// See [`Pending`].
#[derive(Debug)]
pub(crate) struct Parked {
    addr: SocketAddr,
    since: std::time::Instant,
    stream: TcpStream,
}

/// Why a probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Finding {
    /// The check failed (the text names the check and why).
    Failed(String),
    /// The server answered that it is full (MySQL 1040 too many
    /// connections, 1129 host blocked): busy, not dead, so neither a pass
    /// nor a failure.
    Full(String),
    /// A replica has received more than it applied while that matters (a
    /// backup, or its primary unreachable): not eligible yet, not down.
    CatchingUp(String),
}

impl Finding {
    fn prefixed(self, name: &str) -> Finding {
        match self {
            Finding::Failed(r) => Finding::Failed(format!("{name}: {r}")),
            Finding::Full(r) => Finding::Full(format!("{name}: {r}")),
            Finding::CatchingUp(r) => Finding::CatchingUp(format!("{name}: {r}")),
        }
    }
}

impl From<String> for Finding {
    fn from(s: String) -> Finding {
        Finding::Failed(s)
    }
}

impl From<&str> for Finding {
    fn from(s: &str) -> Finding {
        Finding::Failed(s.to_string())
    }
}

/// What a probe chain found: its verdict and what it learned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Probed {
    pub(crate) result: Result<(), Finding>,
    pub(crate) facts: Facts,
}

impl From<Result<(), Finding>> for Probed {
    fn from(result: Result<(), Finding>) -> Probed {
        Probed {
            result,
            facts: Facts::default(),
        }
    }
}

/// Run the checks in order; the first failure stops the chain. Each check
/// is bounded by its own timeout (`None` = `default_timeout`).
pub(crate) async fn run_chain(checks: &[Check], ctx: &Ctx, default_timeout: Duration) -> Probed {
    let mut facts = Facts::default();
    let result = chain(checks, ctx, default_timeout, &mut facts).await;
    Probed { result, facts }
}

async fn chain(
    checks: &[Check],
    ctx: &Ctx,
    default_timeout: Duration,
    facts: &mut Facts,
) -> Result<(), Finding> {
    for c in checks {
        let name = c.name();
        let t = c.timeout.unwrap_or(default_timeout);
        let fut = async {
            let failed = match &c.probe {
                Probe::Mysql {
                    user,
                    password,
                    read_only,
                    max_lag,
                } => {
                    let password = password.as_ref().map(|p| p.0.as_str());
                    let role = mysql::Role {
                        read_only: *read_only,
                        max_lag: *max_lag,
                    };
                    return mysql::run(ctx, user.as_deref(), password, role, facts).await;
                }
                Probe::Redis { password, role } => {
                    let password = password.as_ref().map(|p| p.0.as_str());
                    return redis::run(ctx, password, *role).await;
                }
                Probe::Connect => connect::run(ctx).await,
                Probe::Command { argv, pass } => exec::run(argv, pass, ctx, t).await,
                Probe::Http {
                    path,
                    port,
                    host,
                    expect,
                    body,
                } => http::run(ctx, path, *port, host.as_deref(), expect, body.as_deref()).await,
                Probe::SendExpect { send, expect } => sendexpect::run(ctx, send, expect).await,
            };
            failed.map_err(Finding::Failed)
        };
        let bound = if matches!(c.probe, Probe::Command { .. }) {
            t + EXEC_SLACK
        } else {
            t
        };
        match tokio::time::timeout(bound, fut).await {
            Ok(Ok(())) => {}
            Ok(Err(finding)) => return Err(finding.prefixed(name)),
            Err(_) => {
                return Err(Finding::Failed(format!(
                    "{name}: timeout after {}",
                    fmt_dur(t)
                )));
            }
        }
    }
    Ok(())
}

pub(crate) fn fmt_dur(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else {
        format!("{}ms", d.as_millis())
    }
}

/// Connect to `addr` (from `dial.source` if set), then send the PROXY
/// header `dial.proxy` asks for; errors as short reasons.
pub(crate) async fn tcp(addr: SocketAddr, dial: Dial) -> Result<TcpStream, String> {
    let Dial { source, proxy } = dial;
    let sock = if addr.is_ipv4() {
        tokio::net::TcpSocket::new_v4()
    } else {
        tokio::net::TcpSocket::new_v6()
    }
    .map_err(|e| format!("local error: {e}"))?;
    if let Some(src) = source.filter(|s| s.is_ipv4() == addr.is_ipv4()) {
        crate::sys::set_bind_address_no_port(&sock);
        sock.bind(SocketAddr::new(src, 0))
            .map_err(|e| format!("local error: bind {src}: {e}"))?;
    }
    let mut s = sock.connect(addr).await.map_err(|e| io_reason(&e))?;
    let _ = s.set_nodelay(true);
    if let Some(v) = proxy {
        s.write_all(crate::proxy_header::encode_local(v).as_bytes())
            .await
            .map_err(|e| format!("sending the PROXY header: {}", io_reason(&e)))?;
    }
    Ok(s)
}

pub(crate) fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".into(),
        io::ErrorKind::ConnectionReset => "connection reset".into(),
        io::ErrorKind::TimedOut => "timed out".into(),
        _ => e.to_string(),
    }
}

/// Read into `buf` until `done(buf)` holds, EOF, or [`MAX_REPLY`] bytes.
/// Returns whether EOF was reached.
pub(crate) async fn read_until(
    s: &mut TcpStream,
    buf: &mut Vec<u8>,
    done: impl Fn(&[u8]) -> bool,
) -> Result<bool, String> {
    let mut chunk = [0u8; 4096];
    while !done(buf) && buf.len() < MAX_REPLY {
        let room = (MAX_REPLY - buf.len()).min(chunk.len());
        let n = s
            .read(chunk.get_mut(..room).unwrap_or_default())
            .await
            .map_err(|e| io_reason(&e))?;
        if n == 0 {
            return Ok(true);
        }
        buf.extend_from_slice(chunk.get(..n).unwrap_or_default());
    }
    Ok(false)
}

/// Backend bytes made safe for logs: printable ASCII kept, the rest as
/// `\xNN`, capped.
pub(crate) fn escape(b: &[u8]) -> String {
    const CAP: usize = 64;
    let mut out = String::new();
    for &c in b.iter().take(CAP) {
        match c {
            b'\\' => out.push_str("\\\\"),
            0x20..=0x7e => out.push(char::from(c)),
            b'\r' => out.push_str("\\r"),
            b'\n' => out.push_str("\\n"),
            _ => out.push_str(&format!("\\x{c:02x}")),
        }
    }
    if b.len() > CAP {
        out.push_str("...");
    }
    out
}

/// Substring search (linear enough for ≤ 16 KiB replies and short needles).
pub(crate) fn contains(hay: &[u8], needle: &[u8]) -> bool {
    needle.is_empty() || hay.windows(needle.len()).any(|w| w == needle)
}

#[cfg(test)]
mod tests;
