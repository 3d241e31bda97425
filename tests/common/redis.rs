//! Real Redis servers for the Redis check's tests: each on a free loopback
//! port with its own directory, no persistence (`--save ''`,
//! `--appendonly no`), stopped by pid on drop. Commands go over RESP on a
//! plain socket (no `redis-cli` needed).
//!
//! [`Redis::available`] says whether `redis-server` is installed (Debian's
//! `redis-server`); tests skip with a message when it is not.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use super::{LOCALHOST_V4, TempDir, free_port, wait_until};

const SERVER: &str = "/usr/bin/redis-server";
/// How long a server may take to answer PING.
const START_LIMIT: Duration = Duration::from_secs(15);
/// How long a replica may take to finish its first sync.
const SYNC_LIMIT: Duration = Duration::from_secs(20);

pub struct Redis {
    pub port: u16,
    /// `--requirepass`, sent as AUTH before each command.
    password: Option<String>,
    dir: TempDir,
    child: Child,
}

impl Redis {
    pub fn available() -> bool {
        Path::new(SERVER).exists()
    }

    /// A server with `extra` options (`--requirepass`, `--replicaof`…).
    pub fn start(extra: &[&str]) -> Redis {
        let dir = TempDir::new("redis");
        let port = free_port(LOCALHOST_V4);
        let child = Command::new(SERVER)
            .args(["--bind", "127.0.0.1", "--port"])
            .arg(port.to_string())
            .arg("--dir")
            .arg(dir.path())
            .args(["--save", "", "--appendonly", "no", "--daemonize", "no"])
            .arg("--logfile")
            .arg(dir.join("redis.log"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn redis-server");
        let password = extra
            .iter()
            .position(|a| *a == "--requirepass")
            .and_then(|i| extra.get(i + 1))
            .map(|p| p.to_string());
        let mut r = Redis {
            port,
            password,
            dir,
            child,
        };
        let ready = wait_until("redis-server to answer", START_LIMIT, || {
            if let Ok(Some(_)) = r.child.try_wait() {
                return true;
            }
            r.try_cmd(&["PING"]).is_ok()
        });
        if ready.is_err() || r.child.try_wait().ok().flatten().is_some() {
            panic!("redis-server did not start:\n{}", r.log());
        }
        r
    }

    pub fn channel(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("redis.log")).unwrap_or_default()
    }

    /// Send one command; the raw reply (`+OK`, `-ERR …`, a bulk string's
    /// text, …) once a full reply line (and bulk body) arrived.
    pub fn try_cmd(&self, args: &[&str]) -> std::io::Result<String> {
        cmd_at(self.port, self.password.as_deref(), args)
    }

    /// One command that must not fail at the transport level.
    pub fn cmd(&self, args: &[&str]) -> String {
        self.try_cmd(args)
            .unwrap_or_else(|e| panic!("redis :{} {args:?}: {e}", self.port))
    }

    /// `role:` of `INFO replication`.
    pub fn role(&self) -> String {
        let info = self.cmd(&["INFO", "replication"]);
        info.lines()
            .find_map(|l| l.strip_prefix("role:"))
            .unwrap_or_default()
            .trim()
            .to_string()
    }

    /// Make this server a replica of `primary` and wait for the link.
    pub fn replicate_from(&self, primary: &Redis) {
        let r = self.cmd(&["REPLICAOF", "127.0.0.1", &primary.port.to_string()]);
        assert!(r.starts_with("+OK"), "REPLICAOF: {r}");
        self.wait_linked();
    }

    /// Wait until this replica's link to its primary is up.
    pub fn wait_linked(&self) {
        wait_until("the replica to sync", SYNC_LIMIT, || {
            self.cmd(&["INFO", "replication"])
                .contains("master_link_status:up")
        })
        .unwrap_or_else(|e| panic!("{e}:\n{}", self.log()));
    }

    /// Promote: `REPLICAOF NO ONE`.
    pub fn promote(&self) {
        let r = self.cmd(&["REPLICAOF", "NO", "ONE"]);
        assert!(r.starts_with("+OK"), "REPLICAOF NO ONE: {r}");
    }
}

impl Drop for Redis {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// One command to the Redis server (or balance in front of one) at
/// `port`, after AUTH with `password`: the reply's first line, and a bulk
/// string's body after it.
pub fn cmd_at(port: u16, password: Option<&str>, args: &[&str]) -> std::io::Result<String> {
    let mut s = TcpStream::connect((LOCALHOST_V4, port))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    if let Some(p) = password {
        let r = exchange(&mut s, &["AUTH", p])?;
        if !r.starts_with("+OK") {
            return Err(std::io::Error::other(format!("AUTH: {r}")));
        }
    }
    exchange(&mut s, args)
}

fn exchange(s: &mut TcpStream, args: &[&str]) -> std::io::Result<String> {
    let mut req = format!("*{}\r\n", args.len());
    for a in args {
        req.push_str(&format!("${}\r\n{a}\r\n", a.len()));
    }
    s.write_all(req.as_bytes())?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(text) = complete(&buf) {
            return Ok(text);
        }
        let n = s.read(&mut chunk)?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// A whole simple reply, or a whole bulk string's body (arrays are not
/// needed by the tests).
fn complete(buf: &[u8]) -> Option<String> {
    let end = buf.windows(2).position(|w| w == b"\r\n")?;
    let line = String::from_utf8_lossy(&buf[..end]).into_owned();
    if line == "$-1" {
        return Some("(nil)".into());
    }
    if let Some(n) = line.strip_prefix('$') {
        let n: usize = n.parse().ok()?;
        let body = buf.get(end + 2..end + 2 + n)?;
        return Some(String::from_utf8_lossy(body).into_owned());
    }
    Some(line)
}
