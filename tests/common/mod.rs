//! The integration-test harness, shared by every file under tests/ with
//! `mod common;`: the balancer under test ([`balancer`]), loopback backends
//! ([`backend`]), the one bounded wait ([`wait`]), /proc and `ss` probes
//! ([`proc`]), metrics scrapes ([`metrics`]), one-shot runs and daemons
//! ([`run`]), real MariaDB servers ([`mariadb`], not glob-exported), real
//! Redis servers ([`redis`], not glob-exported), real
//! etcd members and clusters ([`etcd`], not glob-exported), several
//! instances of one config ([`fleet`], not glob-exported), certificates
//! made with openssl ([`pki`], not glob-exported), a DNS server
//! ([`dns`], not glob-exported), and
//! here the small pieces: free ports, temp dirs and test clients.
//!
//! Everything is std threads and blocking sockets with timeouts; every wait
//! is bounded.
#![allow(dead_code)]

pub mod backend;
pub mod balancer;
pub mod dns;
pub mod etcd;
pub mod fleet;
pub mod mariadb;
pub mod metrics;
pub mod pki;
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

/// The ports [`free_port`] hands out: below the kernel's ephemeral range
/// (32768 and up by default), so no outgoing connection of any process
/// takes one of them between the pick and the server's bind.
const PORTS: std::ops::Range<u16> = 20000..32768;

/// A port free now and never handed out before by this harness while the
/// process that took it lives, in this test binary or in any other (test
/// binaries of one `cargo test`, or two suites run at once): each port
/// handed out is held for the life of the process by an exclusive lock on
/// a file named after it in a shared directory (the kernel drops the lock
/// when the process exits, even on SIGKILL). The server may bind it later:
/// nobody else is given it meanwhile.
pub fn free_port(ip: IpAddr) -> u16 {
    use std::collections::HashSet;
    use std::os::fd::AsRawFd;
    use std::sync::Mutex;
    static TAKEN: Mutex<Option<(HashSet<u16>, Vec<std::fs::File>)>> = Mutex::new(None);
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let dir = std::env::temp_dir().join(format!("balance-test-ports-{}", proc::uid()));
    let _ = std::fs::create_dir_all(&dir);
    let mut g = TAKEN.lock().unwrap_or_else(|e| e.into_inner());
    let (taken, held) = g.get_or_insert_with(|| {
        // One open file per port for the life of the test binary, which
        // is the whole suite: a soft limit of 1024 would not hold them.
        raise_nofile();
        Default::default()
    });
    let span = usize::from(PORTS.end - PORTS.start);
    // Processes start at different places, so they rarely contend.
    let start = NEXT.fetch_add(1, SeqCst) + std::process::id() as usize * 7919;
    for i in 0..span {
        let port = PORTS.start + ((start + i) % span) as u16;
        if taken.contains(&port) {
            continue;
        }
        let Ok(f) = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(dir.join(port.to_string()))
        else {
            continue;
        };
        // SAFETY: flock on an fd this function owns; no memory involved.
        let locked = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0;
        if !locked {
            continue;
        }
        // Free on the address asked for and on the wildcard (a listener
        // without -b binds the wildcard).
        let wild = match ip {
            IpAddr::V4(_) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
            IpAddr::V6(_) => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        };
        let free = TcpListener::bind((ip, port)).is_ok() && TcpListener::bind((wild, port)).is_ok();
        taken.insert(port);
        if free {
            held.push(f);
            return port;
        }
    }
    panic!("no free port left in {PORTS:?}");
}

/// The hard RLIMIT_NOFILE, after raising this process's soft limit to it
/// (once is enough; later calls only read it).
pub fn raise_nofile() -> u64 {
    let mut r = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit with a valid, writable rlimit struct.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut r) != 0 {
            return 1024;
        }
        if r.rlim_cur < r.rlim_max {
            r.rlim_cur = r.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &r);
        }
    }
    r.rlim_max
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

/// A test that needs a server this machine lacks: skipped, and said so
/// where the run shows it ([`skip_because`]), except under CI (`CI` set),
/// where a skip would hide a missing install step in contrib/test.sh:
/// there it fails.
pub fn skip_without(what: &str) {
    if std::env::var_os("CI").is_some_and(|v| !v.is_empty() && v != "false") {
        panic!("{what} is not installed; contrib/test.sh installs it");
    }
    skip_because(&format!("{what} is not installed"));
}

/// A test skipped for `why` (a missing server, no root, no IPv6): the
/// line goes to stderr uncaptured (libtest shows it beside the test's
/// `ok`), this binary's last lines count its skips by reason, and the
/// file named by `BALANCE_TEST_SKIPS` (contrib/test.sh sums it up for the
/// whole run) gets `test<TAB>why`.
pub fn skip_because(why: &str) {
    use std::sync::{Mutex, Once};
    static SKIPS: Mutex<Vec<(String, String)>> = Mutex::new(Vec::new());
    static AT_EXIT: Once = Once::new();
    extern "C" fn summary() {
        let skips = SKIPS.lock().unwrap_or_else(|e| e.into_inner());
        let mut by_why: Vec<(&str, usize)> = Vec::new();
        for (_, why) in skips.iter() {
            match by_why.iter_mut().find(|(w, _)| w == why) {
                Some((_, n)) => *n += 1,
                None => by_why.push((why, 1)),
            }
        }
        let mut text = format!("SKIPPED {} test(s) of this binary:\n", skips.len());
        for (why, n) in by_why {
            text += &format!("  {n} skipped: {why}\n");
        }
        let _ = io::stderr().write_all(text.as_bytes());
    }
    let test = std::thread::current()
        .name()
        .unwrap_or("(unnamed)")
        .to_string();
    // Written to the stream itself: libtest captures only the print macros.
    let _ = io::stderr().write_all(format!("\nSKIPPED {test}: {why}\n").as_bytes());
    if let Some(path) = std::env::var_os("BALANCE_TEST_SKIPS") {
        // One short append per line: whole lines even with several
        // binaries writing.
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = f.write_all(format!("{test}\t{why}\n").as_bytes());
        }
    }
    SKIPS
        .lock()
        .unwrap_or_else(|e| e.into_inner())
        .push((test, why.to_string()));
    AT_EXIT.call_once(|| {
        // SAFETY: registers a plain function to run at exit(3); it only
        // locks a static and writes to stderr.
        unsafe { libc::atexit(summary) };
    });
}
