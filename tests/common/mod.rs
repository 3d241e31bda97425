//! Test harness for integration tests: spawns the real `balance` binary on
//! a free loopback port, and provides backends with known behaviour (tagged
//! echo, refusing, blackholed, banner-then-half-close, reset, silent) plus
//! probes of the process (/proc: sockets, CPU).
//!
//! Everything is std threads and blocking sockets with timeouts; every wait
//! is bounded. Other test crates may reuse it with `mod common;`.
#![allow(dead_code)]

use std::fs::File;
use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

pub const BIN: &str = env!("CARGO_BIN_EXE_balance");
/// Exit code for a port already in use (EX_OSERR).
pub const EXIT_OSERR: i32 = 71;
/// Read/write timeout of test clients: a hang fails the test, it does not
/// block the suite.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

pub const LOCALHOST_V4: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
pub const LOCALHOST_V6: IpAddr = IpAddr::V6(Ipv6Addr::LOCALHOST);

/// A directory unique to this test process and call, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: AtomicUsize = AtomicUsize::new(0);
        let p = std::env::temp_dir().join(format!(
            "balance-test-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, SeqCst),
            tag
        ));
        std::fs::create_dir_all(&p).expect("create temp dir");
        TempDir(p)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Poll `f` every 10 ms until it returns `Some`, or give up after `limit`.
pub fn wait_for<T>(limit: Duration, mut f: impl FnMut() -> Option<T>) -> Option<T> {
    let end = Instant::now() + limit;
    loop {
        if let Some(v) = f() {
            return Some(v);
        }
        if Instant::now() >= end {
            return None;
        }
        thread::sleep(Duration::from_millis(10));
    }
}

/// A port that was free a moment ago (the caller retries if it is taken).
pub fn free_port(ip: IpAddr) -> u16 {
    TcpListener::bind((ip, 0))
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind port 0")
}

/// Whether the host has IPv6 loopback.
pub fn have_ipv6() -> bool {
    TcpListener::bind((LOCALHOST_V6, 0)).is_ok()
}

// ---------------------------------------------------------------- balance

/// How to start balance.
pub struct Spawn<'a> {
    pub bind: IpAddr,
    /// Options before the port (e.g. `-t 1`).
    pub opts: &'a [&'a str],
    /// Channels and `!`/`%` after the port.
    pub channels: &'a [String],
    /// A command to run balance under (`prlimit …`, `unshare …`).
    pub wrapper: &'a [&'a str],
}

/// A running `balance -f`, killed on drop (SIGTERM, then SIGKILL).
pub struct Balance {
    child: Child,
    pub addr: SocketAddr,
    stderr_path: PathBuf,
    stdout_path: PathBuf,
    exited: Option<ExitStatus>,
    _dir: TempDir,
}

impl Balance {
    /// `balance -f -b 127.0.0.1 OPTS PORT CHANNELS…`, ready to accept.
    pub fn start(opts: &[&str], channels: &[String]) -> Balance {
        Balance::spawn(Spawn {
            bind: LOCALHOST_V4,
            opts,
            channels,
            wrapper: &[],
        })
    }

    pub fn spawn(s: Spawn<'_>) -> Balance {
        let mut last_err = String::new();
        for _ in 0..10 {
            let port = free_port(s.bind);
            let dir = TempDir::new("balance");
            let stderr_path = dir.path().join("stderr");
            let stderr = File::create(&stderr_path).expect("create stderr file");
            let stdout_path = dir.path().join("stdout");
            let stdout = File::create(&stdout_path).expect("create stdout file");
            let mut cmd = match s.wrapper.split_first() {
                Some((w, rest)) => {
                    let mut c = Command::new(w);
                    c.args(rest).arg(BIN);
                    c
                }
                None => Command::new(BIN),
            };
            cmd.arg("-f")
                .arg("-b")
                .arg(s.bind.to_string())
                .args(s.opts)
                .arg(port.to_string())
                .args(s.channels)
                .stdin(Stdio::null())
                .stdout(stdout)
                .stderr(stderr);
            let child = cmd.spawn().expect("spawn balance");
            let mut b = Balance {
                child,
                addr: SocketAddr::new(s.bind, port),
                stderr_path,
                stdout_path,
                exited: None,
                _dir: dir,
            };
            // Ready when it logged "listening" (the accept loop runs).
            let ready = wait_for(Duration::from_secs(15), || {
                if b.stderr().contains("listening") {
                    return Some(true);
                }
                match b.child.try_wait() {
                    Ok(Some(st)) => {
                        b.exited = Some(st);
                        Some(false)
                    }
                    _ => None,
                }
            });
            match (ready, b.exited) {
                (Some(true), _) => return b,
                (Some(false), Some(st)) if st.code() == Some(EXIT_OSERR) => {
                    // Someone took the port meanwhile: try another.
                    last_err = b.stderr();
                    continue;
                }
                (Some(false), st) => panic!("balance exited at start ({st:?}): {}", b.stderr()),
                (None, _) => panic!("balance not ready after 15 s: {}", b.stderr()),
            }
        }
        panic!("could not start balance on a free port: {last_err}");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// Everything balance wrote to stdout so far (`-p`).
    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    /// Everything balance wrote to stderr so far.
    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    pub fn signal(&self, sig: libc::c_int) {
        kill(self.pid(), sig);
    }

    /// Wait up to `limit` for the process to exit.
    pub fn wait_exit(&mut self, limit: Duration) -> Option<ExitStatus> {
        if self.exited.is_some() {
            return self.exited;
        }
        let st = wait_for(limit, || self.child.try_wait().ok().flatten());
        self.exited = st;
        st
    }

    pub fn connect(&self) -> TcpStream {
        connect(self.addr)
    }

    /// Resident memory in KiB (VmRSS).
    pub fn rss_kib(&self) -> u64 {
        std::fs::read_to_string(format!("/proc/{}/status", self.pid()))
            .unwrap_or_default()
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.split_whitespace().next()?.parse().ok())
            .unwrap_or(0)
    }

    /// utime + stime in clock ticks.
    pub fn cpu_ticks(&self) -> u64 {
        cpu_ticks(self.pid())
    }

    /// Open file descriptors of the process.
    /// Open fds other than pipes. Pipes are the splice path's pool: kept
    /// empty for reuse after a connection ends and bounded by the pool's cap
    /// (tests/relay.rs pins that bound), so they are not a leak.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .map(|d| {
                d.flatten()
                    .filter(|e| {
                        std::fs::read_link(e.path())
                            .is_ok_and(|t| !t.to_string_lossy().starts_with("pipe:"))
                    })
                    .count()
            })
            .unwrap_or(0)
    }

    /// The fd count once one client has been served and closed (so every
    /// lazily created fd exists) and the count is stable: the baseline a
    /// test returns to.
    pub fn baseline_fds(&self) -> usize {
        let pre = self.stable_fds();
        if let Ok((_, s)) = tag_of_new_client(self.addr) {
            drop(s);
        }
        // Back to the count before the warm-up, unless the warm-up created
        // a lasting fd (then the new stable count is the baseline).
        wait_for(Duration::from_secs(2), || {
            (self.fd_count() <= pre).then_some(pre)
        })
        .unwrap_or_else(|| self.stable_fds())
    }

    /// The fd count once it no longer changes (no client needed).
    pub fn stable_fds(&self) -> usize {
        let mut last = None;
        wait_for(Duration::from_secs(5), || {
            thread::sleep(Duration::from_millis(50));
            let now = self.fd_count();
            let stable = last == Some(now);
            last = Some(now);
            stable.then_some(now)
        })
        .unwrap_or_else(|| self.fd_count())
    }

    /// Assert the fd count returns to `base` (or below) within 2 s (no
    /// leaked sockets).
    pub fn assert_fds_return_to(&self, base: usize) {
        let back = wait_for(Duration::from_secs(2), || {
            (self.fd_count() <= base).then_some(())
        });
        assert!(
            back.is_some(),
            "fds: {} now, {base} at baseline (leak?)",
            self.fd_count()
        );
    }
}

impl Drop for Balance {
    fn drop(&mut self) {
        if self.exited.is_none() {
            self.signal(libc::SIGTERM);
            if self.wait_exit(Duration::from_secs(1)).is_none() {
                self.signal(libc::SIGKILL);
                let _ = self.child.wait();
            }
        }
        let err = self.stderr();
        if err.contains("panicked") && !thread::panicking() {
            panic!("balance panicked: {err}");
        }
    }
}

pub fn kill(pid: u32, sig: libc::c_int) {
    if let Ok(pid) = libc::pid_t::try_from(pid) {
        // SAFETY: kill(2) takes plain integers; at worst it fails with ESRCH.
        unsafe {
            libc::kill(pid, sig);
        }
    }
}

/// Run balance with `args` to its exit (killed after `limit`): exit code
/// (None if killed) and stderr.
pub fn run_to_exit(args: &[&str], limit: Duration) -> (Option<i32>, String) {
    let dir = TempDir::new("run");
    let path = dir.path().join("stderr");
    let f = File::create(&path).expect("create stderr file");
    let mut child = Command::new(BIN)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(f)
        .spawn()
        .expect("spawn balance");
    let st = wait_for(limit, || child.try_wait().ok().flatten());
    if st.is_none() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let err = std::fs::read_to_string(&path).unwrap_or_default();
    (st.and_then(|s| s.code()), err)
}

/// `n` pseudo-random bytes, cheap even in a debug build: a 1 MiB xorshift
/// block tiled over `n`, with every 4 KiB page stamped with its own index,
/// so no two pages are equal (a lost, repeated or reordered page changes
/// the hash).
pub fn random_bytes(n: usize, seed: u64) -> Vec<u8> {
    const BLOCK: usize = 1 << 20;
    const PAGE: usize = 4096;
    let mut x = seed | 1;
    let block: Vec<u8> = (0..BLOCK / 8)
        .flat_map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x.to_le_bytes()
        })
        .collect();
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let take = (n - out.len()).min(BLOCK);
        out.extend_from_slice(&block[..take]);
    }
    for (i, page) in out.chunks_mut(PAGE).enumerate() {
        let stamp = (i as u64 ^ seed).to_le_bytes();
        let k = page.len().min(8);
        page[..k].copy_from_slice(&stamp[..k]);
    }
    out
}

// ---------------------------------------------------------------- clients

/// A client socket with read/write timeouts.
pub fn connect(addr: SocketAddr) -> TcpStream {
    let s = TcpStream::connect_timeout(&addr, IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr}: {e}"));
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// `read`, retried on EINTR. Sockets with a read timeout (SO_RCVTIMEO) are
/// not restarted after a signal, and glibc signals every thread of this
/// multi-threaded test process now and then (e.g. its setxid broadcast).
pub fn read_some(mut s: &TcpStream, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match s.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            r => return r,
        }
    }
}

/// A client socket bound to source address `src` (e.g. 127.0.0.7).
pub fn connect_from(src: IpAddr, addr: SocketAddr) -> TcpStream {
    use socket2::{Domain, Socket, Type};
    let sock = Socket::new(Domain::for_address(addr), Type::STREAM, None).expect("socket");
    let from: SocketAddr = (src, 0).into();
    sock.bind(&from.into()).expect("bind source");
    sock.connect_timeout(&addr.into(), IO_TIMEOUT)
        .unwrap_or_else(|e| panic!("connect {addr} from {src}: {e}"));
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s.set_write_timeout(Some(IO_TIMEOUT)).expect("timeout");
    s
}

/// `ss -tno` lines of established sockets matching a filter such as
/// `["sport", "=", ":8080"]` (with timer information).
pub fn ss_established(filter: &[&str]) -> Vec<String> {
    let o = Command::new("ss")
        .args(["-Htno", "state", "established"])
        .args(filter)
        .output();
    match o {
        Ok(o) => String::from_utf8_lossy(&o.stdout)
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect(),
        Err(_) => Vec::new(),
    }
}

/// Read one line (without "\n"). EOF before the newline is an error.
pub fn read_line(s: &mut TcpStream) -> io::Result<String> {
    let mut out = Vec::new();
    let mut b = [0u8; 1];
    loop {
        match read_some(s, &mut b)? {
            0 => {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    format!("EOF after {:?}", String::from_utf8_lossy(&out)),
                ));
            }
            _ if b[0] == b'\n' => return Ok(String::from_utf8_lossy(&out).into_owned()),
            _ => out.push(b[0]),
        }
    }
}

/// Connect through balance and read the backend's tag.
pub fn tag_of_new_client(addr: SocketAddr) -> io::Result<(String, TcpStream)> {
    let mut s = connect(addr);
    let tag = read_line(&mut s)?;
    Ok((tag, s))
}

/// Send `msg` and expect it echoed back.
pub fn echo_roundtrip(s: &mut TcpStream, msg: &[u8]) -> io::Result<()> {
    s.write_all(msg)?;
    let mut back = vec![0u8; msg.len()];
    s.read_exact(&mut back)?;
    if back != msg {
        return Err(io::Error::other("echo mismatch"));
    }
    Ok(())
}

// ---------------------------------------------------------------- backends

/// A loopback backend running `handler` on a thread per connection.
/// Counts accepted and finished connections. Stops on drop.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// Connections whose handler returned (socket closed).
    pub finished: Arc<AtomicUsize>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    pub fn spawn<F>(ip: IpAddr, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let l = TcpListener::bind((ip, 0)).expect("bind backend");
        let addr = l.local_addr().expect("local addr");
        let accepted = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let handler = Arc::new(handler);
        {
            let (accepted, finished, stop) = (accepted.clone(), finished.clone(), stop.clone());
            thread::spawn(move || {
                for conn in l.incoming() {
                    if stop.load(SeqCst) {
                        break;
                    }
                    let Ok(s) = conn else { continue };
                    accepted.fetch_add(1, SeqCst);
                    let (h, finished) = (handler.clone(), finished.clone());
                    thread::spawn(move || {
                        let _ = s.set_read_timeout(Some(Duration::from_secs(60)));
                        h(s);
                        finished.fetch_add(1, SeqCst);
                    });
                }
            });
        }
        Backend {
            addr,
            accepted,
            finished,
            stop,
        }
    }

    /// Writes `name\n`, then echoes until EOF.
    pub fn tagged(name: &str) -> Backend {
        Backend::tagged_on(LOCALHOST_V4, name)
    }

    pub fn tagged_on(ip: IpAddr, name: &str) -> Backend {
        let line = format!("{name}\n");
        Backend::spawn(ip, move |mut s| {
            if s.write_all(line.as_bytes()).is_err() {
                return;
            }
            echo(&mut s);
        })
    }

    /// The channel token for this backend (`127.0.0.1:P`, `[::1]:P`).
    pub fn channel(&self) -> String {
        self.addr.to_string()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }

    pub fn finished(&self) -> usize {
        self.finished.load(SeqCst)
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        // Wake the accept loop.
        let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
    }
}

/// Echo until EOF, then close.
pub fn echo(s: &mut TcpStream) {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match read_some(s, &mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => {
                if s.write_all(&buf[..n]).is_err() {
                    return;
                }
            }
        }
    }
}

/// A port on 127.0.0.1 where nothing listens: connects are refused. The
/// port stays reserved while this lives (a bound socket that never
/// listens, without SO_REUSEADDR), so a parallel test cannot take it.
pub struct Refused {
    pub addr: SocketAddr,
    _sock: socket2::Socket,
}

impl Refused {
    pub fn new() -> Refused {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = (LOCALHOST_V4, 0).into();
        sock.bind(&any.into()).expect("bind");
        let addr = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("addr");
        Refused { addr, _sock: sock }
    }

    pub fn channel(&self) -> String {
        self.addr.to_string()
    }
}

impl Default for Refused {
    fn default() -> Self {
        Refused::new()
    }
}

/// A port whose SYNs are dropped: a backlog-1 listener that never accepts,
/// pre-filled with two connections. Verified at creation.
pub struct Blackhole {
    pub addr: SocketAddr,
    _listener: socket2::Socket,
    _fill: Vec<TcpStream>,
}

impl Blackhole {
    pub fn new() -> Blackhole {
        use socket2::{Domain, Socket, Type};
        let sock = Socket::new(Domain::IPV4, Type::STREAM, None).expect("socket");
        let any: SocketAddr = (LOCALHOST_V4, 0).into();
        sock.bind(&any.into()).expect("bind");
        sock.listen(1).expect("listen");
        let addr = sock
            .local_addr()
            .ok()
            .and_then(|a| a.as_socket())
            .expect("addr");
        let mut fill = Vec::new();
        for _ in 0..2 {
            fill.push(TcpStream::connect_timeout(&addr, Duration::from_secs(2)).expect("pre-fill"));
        }
        // A further connect must hang (its SYN is dropped).
        match TcpStream::connect_timeout(&addr, Duration::from_millis(300)) {
            Err(e) if e.kind() == io::ErrorKind::TimedOut => {}
            other => panic!("blackhole {addr} does not blackhole: {other:?}"),
        }
        Blackhole {
            addr,
            _listener: sock,
            _fill: fill,
        }
    }

    pub fn channel(&self) -> String {
        self.addr.to_string()
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Blackhole::new()
    }
}

/// Sends `banner`, shuts down writing, then reads to EOF and reports what
/// it received (or the read error) on `tx`.
pub fn banner_then_shut_wr(
    banner: &'static [u8],
    tx: std::sync::mpsc::Sender<io::Result<Vec<u8>>>,
) -> Backend {
    let tx = std::sync::Mutex::new(tx);
    Backend::spawn(LOCALHOST_V4, move |mut s| {
        let res = s
            .write_all(banner)
            .and_then(|_| s.shutdown(Shutdown::Write))
            .and_then(|_| {
                let mut got = Vec::new();
                s.read_to_end(&mut got).map(|_| got)
            });
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(res);
        }
    })
}

/// Sends `data`, then resets the connection (SO_LINGER 0, close).
pub fn rst_after(data: &'static [u8]) -> Backend {
    Backend::spawn(LOCALHOST_V4, move |s| {
        let _ = (&s).write_all(data);
        // Let the data leave before the reset.
        thread::sleep(Duration::from_millis(50));
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        drop(s);
    })
}

/// Accepts and never reads or writes; holds its sockets until the returned
/// flag is set (or 30 s pass), then closes them.
pub fn silent() -> (Backend, Arc<AtomicBool>) {
    let release = Arc::new(AtomicBool::new(false));
    let r = release.clone();
    let b = Backend::spawn(LOCALHOST_V4, move |s| {
        let end = Instant::now() + Duration::from_secs(30);
        while !r.load(SeqCst) && Instant::now() < end {
            thread::sleep(Duration::from_millis(20));
        }
        drop(s);
    });
    (b, release)
}

// ---------------------------------------------------------------- /proc

/// TCP socket states as in /proc/net/tcp.
pub const TCP_ESTABLISHED: u8 = 0x01;
pub const TCP_SYN_SENT: u8 = 0x02;
pub const TCP_CLOSE_WAIT: u8 = 0x08;
pub const TCP_LISTEN: u8 = 0x0A;

/// One row of /proc/net/tcp{,6}: local port, remote port, state.
#[derive(Debug, Clone, Copy)]
pub struct SockRow {
    pub local_port: u16,
    pub remote_port: u16,
    pub state: u8,
}

/// All TCP sockets of this network namespace (IPv4 and IPv6).
pub fn tcp_sockets() -> Vec<SockRow> {
    let mut out = Vec::new();
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = std::fs::read_to_string(f) else {
            continue;
        };
        for line in text.lines().skip(1) {
            let mut it = line.split_whitespace();
            let (Some(_), Some(local), Some(remote), Some(st)) =
                (it.next(), it.next(), it.next(), it.next())
            else {
                continue;
            };
            let port = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if let (Some(l), Some(r), Ok(s)) =
                (port(local), port(remote), u8::from_str_radix(st, 16))
            {
                out.push(SockRow {
                    local_port: l,
                    remote_port: r,
                    state: s,
                });
            }
        }
    }
    out
}

/// Sockets in `state` connecting or connected to remote `port`. Uses
/// `ss` (the kernel filters; /proc/net/tcp is slow on a busy host) and
/// falls back to /proc/net/tcp.
pub fn count_to_port(port: u16, state: u8) -> usize {
    let name = match state {
        TCP_ESTABLISHED => Some("established"),
        TCP_SYN_SENT => Some("syn-sent"),
        TCP_CLOSE_WAIT => Some("close-wait"),
        TCP_LISTEN => Some("listening"),
        _ => None,
    };
    if let Some(name) = name {
        let out = Command::new("ss")
            .args(["-Htn", "state", name, "dport", "=", &format!(":{port}")])
            .output();
        if let Ok(o) = out {
            if o.status.success() {
                return String::from_utf8_lossy(&o.stdout)
                    .lines()
                    .filter(|l| !l.trim().is_empty())
                    .count();
            }
        }
    }
    tcp_sockets()
        .iter()
        .filter(|r| r.remote_port == port && r.state == state)
        .count()
}

/// Connections waiting in the accept queue of the listener on local `port`
/// (Recv-Q of a listening socket), via `ss`.
pub fn accept_queue(port: u16) -> Option<usize> {
    let o = Command::new("ss")
        .args(["-Htln", "sport", "=", &format!(":{port}")])
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&o.stdout);
    let line = text.lines().find(|l| l.starts_with("LISTEN"))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// utime + stime of `pid` in clock ticks.
pub fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // Fields after the command name (which may contain spaces): state is
    // field 3, utime 14, stime 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = rest.split_whitespace().collect();
    let get = |i: usize| f.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    get(11) + get(12)
}
