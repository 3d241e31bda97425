//! The integration-test harness, shared by every file under tests/ with
//! `mod common;`: the balancer under test ([`balancer`]), loopback backends
//! ([`backend`]), the one bounded wait ([`wait`]), /proc and `ss` probes
//! ([`proc`]), metrics scrapes ([`metrics`]), one-shot runs and daemons
//! ([`run`]), real MariaDB servers ([`mariadb`], not glob-exported), real
//! Redis servers ([`redis`], not glob-exported), real
//! etcd members and clusters ([`etcd`], not glob-exported), several
//! instances of one config ([`fleet`], not glob-exported), and
//! here the small pieces: free ports, temp dirs and test clients.
//!
//! Everything is std threads and blocking sockets with timeouts; every wait
//! is bounded.
#![allow(dead_code)]

pub mod backend;
pub mod balancer;
pub mod etcd;
pub mod fleet;
pub mod mariadb;
pub mod metrics;
pub mod proc;
pub mod redis;
pub mod run;
pub mod wait;

// Each test crate uses its own part of the harness.
#[allow(unused_imports)]
pub use {backend::*, balancer::*, metrics::*, proc::*, run::*, wait::*};

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering::SeqCst};
use std::time::Duration;

pub const BIN: &str = env!("CARGO_BIN_EXE_balance");
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

    /// A path inside the directory.
    pub fn join(&self, name: impl AsRef<Path>) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Where balance puts its sockets for run directory `base`: a shared
/// (sticky, world-writable) directory gets a private `balance-EUID` inside.
pub fn private_run_dir(base: &Path) -> PathBuf {
    use std::os::unix::fs::PermissionsExt;
    let shared = std::fs::symlink_metadata(base)
        .is_ok_and(|m| m.is_dir() && m.permissions().mode() & 0o1002 == 0o1002);
    if shared {
        base.join(format!("balance-{}", proc::uid()))
    } else {
        base.to_path_buf()
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

/// `127.0.0.1:port`.
pub fn local(port: u16) -> SocketAddr {
    SocketAddr::from((LOCALHOST_V4, port))
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

/// A client socket with read/write timeouts of `timeout`.
pub fn try_connect(addr: SocketAddr, timeout: Duration) -> io::Result<TcpStream> {
    let s = TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    Ok(s)
}

/// A client socket with read/write timeouts; panics if the connect fails.
pub fn connect(addr: SocketAddr) -> TcpStream {
    try_connect(addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("connect {addr}: {e}"))
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

/// The tag a new client gets, or why it got none (a failed connect too).
pub fn ask(addr: SocketAddr) -> io::Result<String> {
    let mut s = try_connect(addr, IO_TIMEOUT)?;
    read_line(&mut s)
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

/// A command's stdout, then its stderr, as text.
pub fn output_text(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stdout).to_string() + &String::from_utf8_lossy(&o.stderr)
}

/// A test that needs a server this machine lacks: skipped with a message,
/// except under CI (`CI` set), where a skip would hide a missing install
/// step in `.ci/run`: there it fails.
pub fn skip_without(what: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed; .ci/run installs it");
    }
    eprintln!("skipped: {what} is not installed");
}
