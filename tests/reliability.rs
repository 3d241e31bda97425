//! Reliability scenarios at scale that the other test files do not cover,
//! each labelled in its output: many sequential server-first clients
//! (T02), thousands of idle sessions (T29), connect/close churn (T36), the
//! clogged-close matrix (T06), the `-6` wildcard and the splice fallback
//! when splice(2) refuses a socket (EINVAL).

use crate::common;

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv6Addr, SocketAddr, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// A server-first greeting of 78 bytes (a MySQL greeting is about that).
const GREETING: &[u8; 78] =
    b"5.5.5-10.11.6-MariaDB-log balance reliability greeting, seventy-eight bytes\r\n\0";

/// Relay modes: the default (splice) and `--no-splice` (buffered).
const MODES: [(&str, &[&str]); 2] = [("splice", &[]), ("buffered", &["--no-splice"])];

/// Sends [`GREETING`], then reads until the client closes.
fn greeter() -> Backend {
    Backend::spawn(LOCALHOST_V4, |mut s| {
        if s.write_all(GREETING).is_ok() {
            let mut b = [0u8; 256];
            while matches!(read_some(&s, &mut b), Ok(n) if n > 0) {}
        }
        let _ = s.flush();
    })
}

/// Connect, read the greeting, close: the time it took.
fn greeted(addr: SocketAddr) -> io::Result<Duration> {
    let t = Instant::now();
    let mut s = try_connect(addr, IO_TIMEOUT)?;
    let mut got = [0u8; 78];
    s.read_exact(&mut got)?;
    if &got != GREETING {
        return Err(io::Error::other("greeting mismatch"));
    }
    Ok(t.elapsed())
}

fn p99(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() * 99 / 100]
}

// ------------------------------------------------------------ T02

/// T02: sequential clients each read a 78-byte greeting the backend sends
/// first; every one arrives intact, and the added latency stays low. The
/// catalogue's 10,000 take about 14 s on a loaded 2-core machine (debug
/// build): 3,000 here, the full count with `-- --ignored`.
#[test]
fn sequential_clients_each_read_the_server_first_greeting() {
    sequential_greetings(3_000);
}

#[test]
#[ignore = "full scale: 10,000 clients (about 15 s)"]
fn ten_thousand_sequential_clients_each_read_the_server_first_greeting() {
    sequential_greetings(10_000);
}

fn sequential_greetings(n: usize) {
    // Latency is measured: no other heavy test meanwhile.
    let _g = common::fleet::serial();
    let be = greeter();
    let b = Balance::start(&[], &[be.channel()]);
    let base = b.baseline_fds();
    let direct: Vec<_> = (0..500)
        .map(|_| greeted(be.addr).expect("direct greeting"))
        .collect();
    let t = Instant::now();
    let mut via = Vec::with_capacity(n);
    for i in 0..n {
        via.push(greeted(b.addr).unwrap_or_else(|e| panic!("client {i}: {e}")));
    }
    let took = t.elapsed();
    let (d, v) = (p99(direct), p99(via));
    eprintln!("T02: {n} clients in {took:?}; p99 direct {d:?}, through balance {v:?}");
    // The catalogue asks < 2 ms added at p99 on a quiet machine (release
    // build); this bound only catches a stall on a busy CI runner.
    assert!(
        v < d + Duration::from_millis(50),
        "p99 {v:?} vs direct {d:?}"
    );
    b.assert_fds_return_to(base);
}

// ------------------------------------------------------------ T29

/// The fds this process may still open: the hard RLIMIT_NOFILE, after
/// raising this process's soft limit to it (the balance children raise
/// theirs the same way), less the fds open now (the test process is
/// shared by every test file: the harness holds a file per port handed
/// out, thousands by now).
fn fds_left() -> u64 {
    let open = std::fs::read_dir("/proc/self/fd").map_or(0, |d| d.count()) as u64;
    common::raise_nofile().saturating_sub(open)
}

/// T29: 10,000 clients read the greeting, then idle (fewer where the hard
/// fd limit cannot hold two sockets per client in each process). All stay
/// up, memory per connection is small, idle CPU is nil, and a new client
/// and `show` are still answered at once.
#[test]
fn ten_thousand_idle_server_first_sessions_stay_up_cheaply() {
    let _g = common::fleet::serial();
    // Each process holds two sockets per client (this one: client and
    // backend side; balance: both sides), plus a reserve.
    let n = 10_000.min((fds_left().saturating_sub(400) / 2) as usize);
    let be = Backend::greet_and_hold(GREETING);
    let dir = TempDir::new("t29");
    let b = Balance::cli(&[be.channel()])
        .control(&dir.join("ctl.sock"))
        .start();
    let rss0 = b.rss_kib();
    let mut held = Vec::with_capacity(n);
    let t = Instant::now();
    for i in 0..n {
        let mut s = try_connect(b.addr, IO_TIMEOUT).unwrap_or_else(|e| panic!("client {i}: {e}"));
        let mut got = [0u8; 78];
        s.read_exact(&mut got)
            .unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(&got, GREETING, "client {i}");
        held.push(s);
    }
    let up = t.elapsed();
    let active = b.json()["listener"]["active"].as_u64().unwrap_or(0);
    assert_eq!(active as usize, n, "every session is up");
    let per_conn = b.rss_kib().saturating_sub(rss0) * 1024 / n as u64;
    // Idle: CPU over one second.
    let cpu0 = b.cpu_ticks();
    thread::sleep(Duration::from_secs(1));
    let idle_ticks = b.cpu_ticks() - cpu0;
    let new = greeted(b.addr).expect("a new client is served");
    let t = Instant::now();
    b.ctl("show");
    let show = t.elapsed();
    eprintln!(
        "T29: {n} idle sessions up in {up:?}; {per_conn} B RSS each; {idle_ticks} ticks idle CPU in 1 s; \
         new greeting {new:?}; show {show:?}"
    );
    assert!(per_conn <= 40 * 1024, "{per_conn} bytes per connection");
    // 100 ticks = one core for the second: allow 5 % on a busy machine.
    assert!(idle_ticks <= 5, "{idle_ticks} ticks while idle");
    assert!(
        new < stretched(Duration::from_millis(500)),
        "new client took {new:?}"
    );
    assert!(
        show < stretched(Duration::from_millis(500)),
        "show took {show:?}"
    );
    for s in held.iter().take(10) {
        assert!(
            s.take_error().ok().flatten().is_none(),
            "an idle session failed"
        );
    }
}

// ------------------------------------------------------------ T36

/// T36: connect/close churn. RSS returns to its level after a warm-up,
/// fds exactly, and no session or pipe is left counted. The catalogue asks
/// 200k cycles at 2k/s (100 s); this runs 10k as fast as 4 clients go (about 1.7k/s on a loaded 2-core machine), and
/// the full scale is `contrib/test.sh --test reliability -- --ignored`.
#[test]
fn connect_close_churn_returns_to_baseline() {
    churn(10_000);
}

#[test]
#[ignore = "full scale: 200k cycles (about two minutes)"]
fn connect_close_churn_returns_to_baseline_full_scale() {
    churn(200_000);
}

fn churn(total: usize) {
    // RSS and fds are measured: no other heavy test meanwhile.
    let _g = common::fleet::serial();
    const CLIENTS: usize = 4;
    let be = greeter();
    let dir = TempDir::new("t36");
    let b = Balance::cli(&[be.channel()])
        .control(&dir.join("ctl.sock"))
        .start();
    let cycle = |n: usize| {
        let addr = b.addr;
        let workers: Vec<_> = (0..CLIENTS)
            .map(|_| {
                thread::spawn(move || {
                    let mut failed = 0;
                    for _ in 0..n / CLIENTS {
                        match try_connect(addr, IO_TIMEOUT) {
                            Ok(mut s) => {
                                // One byte of the greeting, then close
                                // with the rest unread.
                                let mut g = [0u8; 1];
                                let _ = s.read_exact(&mut g);
                            }
                            Err(_) => failed += 1,
                        }
                    }
                    failed
                })
            })
            .collect();
        workers
            .into_iter()
            .map(|w| w.join().expect("churn client"))
            .sum::<usize>()
    };
    assert_eq!(cycle(2_000), 0, "warm-up connects failed");
    let fds = b.baseline_fds();
    let rss = b.rss_kib();
    let t = Instant::now();
    let failed = cycle(total);
    let took = t.elapsed();
    assert_eq!(failed, 0, "connects failed");
    b.assert_fds_return_to(fds);
    let settled = wait_until("sessions gone", Duration::from_secs(5), || {
        let j = b.json();
        j["listener"]["active"] == 0 && j["pipes"]["in_use"] == 0
    });
    assert!(settled.is_ok(), "{}", b.ctl("show json"));
    let rss_after = b.rss_kib();
    eprintln!(
        "T36: {total} cycles in {took:?} ({:.0}/s); RSS {rss} -> {rss_after} KiB; fds {fds}",
        total as f64 / took.as_secs_f64()
    );
    // ±10 %, with 1 MiB of slack for allocator noise at this small base.
    assert!(
        rss_after <= rss + rss / 10 + 1024,
        "RSS grew from {rss} to {rss_after} KiB"
    );
}

// ------------------------------------------------------------ T06

/// What one end does with its sending side before the close.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Write_ {
    Nothing,
    /// `shutdown(SHUT_WR)`.
    Shut,
    /// Write until the whole path (both socket buffers, balance's side)
    /// is full.
    Clog,
}

/// Whether an end reads (and discards) everything on a thread.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Read_ {
    Nothing,
    Drain,
}

#[derive(Debug, Clone, Copy)]
struct End {
    write: Write_,
    read: Read_,
}

/// One end of a clogged-close case: its socket and, when draining, the
/// flag its reader sets on EOF or an error.
struct Side {
    s: TcpStream,
    gone: Option<Arc<AtomicBool>>,
    /// Tells the reader to let go of its clone of the socket.
    stop: Arc<AtomicBool>,
    reader: Option<thread::JoinHandle<()>>,
    clogged: bool,
}

impl Side {
    fn new(s: TcpStream, e: End) -> Side {
        s.set_nonblocking(true).expect("nonblocking");
        let stop = Arc::new(AtomicBool::new(false));
        let mut reader = None;
        let gone = (e.read == Read_::Drain).then(|| {
            let flag = Arc::new(AtomicBool::new(false));
            let (f, r, st) = (flag.clone(), s.try_clone().expect("clone"), stop.clone());
            reader = Some(thread::spawn(move || drain(r, &f, &st)));
            flag
        });
        Side {
            s,
            gone,
            stop,
            reader,
            clogged: false,
        }
    }

    /// Close the socket for real: the reader's clone first (a socket
    /// closes with its last fd), then ours.
    fn close(mut self) {
        self.stop.store(true, SeqCst);
        if let Some(r) = self.reader.take() {
            r.join().expect("reader");
        }
    }

    fn act(&mut self, e: End) {
        match e.write {
            Write_::Nothing => {}
            Write_::Shut => self.s.shutdown(std::net::Shutdown::Write).expect("shut"),
            Write_::Clog => {
                clog(&self.s);
                self.clogged = true;
            }
        }
    }

    /// The other end is gone as this end can tell: its reader saw EOF or
    /// an error, the socket holds an error (RST), or, when it was writing,
    /// a write fails.
    fn sees_close(&self) -> bool {
        if self.gone.as_ref().is_some_and(|g| g.load(SeqCst)) {
            return true;
        }
        if matches!(self.s.take_error(), Ok(Some(_)) | Err(_)) {
            return true;
        }
        self.clogged
            && matches!((&self.s).write(&[0]), Err(e) if e.kind() != ErrorKind::WouldBlock
                && e.kind() != ErrorKind::Interrupted)
    }
}

/// Read and discard until EOF or an error, then set `gone`; or until
/// `stop`, then just let go of the socket.
fn drain(s: TcpStream, gone: &AtomicBool, stop: &AtomicBool) {
    let mut b = vec![0u8; 64 * 1024];
    while !stop.load(SeqCst) {
        match (&s).read(&mut b) {
            Ok(0) => break,
            Ok(_) => {}
            Err(e) if e.kind() == ErrorKind::WouldBlock => thread::sleep(Duration::from_millis(2)),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
    if !stop.load(SeqCst) {
        gone.store(true, SeqCst);
    }
}

/// Write until nothing more goes in for a while (the peer does not read):
/// every buffer on the way is full.
fn clog(mut s: &TcpStream) {
    let chunk = vec![0x5au8; 64 * 1024];
    let mut stuck_since: Option<Instant> = None;
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        match s.write(&chunk) {
            Ok(_) => stuck_since = None,
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                let since = *stuck_since.get_or_insert_with(Instant::now);
                // balance may still be moving bytes between its sockets.
                if since.elapsed() > Duration::from_millis(60) {
                    return;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => panic!("clog: {e}"),
        }
    }
    panic!("clog: the path never filled");
}

/// Every meaningful combination: a direction cannot be both clogged and
/// drained, and the end that is checked must be able to tell (it clogs or
/// drains). 13 cases per closing end, 26 in all (vi/tcptunnelchecker runs
/// the same 26 after its 2 trivial cases; the catalogue says 24).
fn clog_cases() -> Vec<(bool, End, End)> {
    let writes = [Write_::Nothing, Write_::Shut, Write_::Clog];
    let reads = [Read_::Nothing, Read_::Drain];
    let mut out = Vec::new();
    for close_client in [true, false] {
        for cw in writes {
            for bw in writes {
                for cr in reads {
                    for br in reads {
                        let (c, be) = (
                            End {
                                write: cw,
                                read: cr,
                            },
                            End {
                                write: bw,
                                read: br,
                            },
                        );
                        let clog_vs_drain = (cw == Write_::Clog && br == Read_::Drain)
                            || (bw == Write_::Clog && cr == Read_::Drain);
                        let checked = if close_client { be } else { c };
                        let observable =
                            checked.write == Write_::Clog || checked.read == Read_::Drain;
                        if !clog_vs_drain && observable {
                            out.push((close_client, c, be));
                        }
                    }
                }
            }
        }
    }
    out
}

/// T06 in one relay mode: fill, shut or drain each direction, close one
/// end; the other end must learn it within 500 ms (a loaded CI machine
/// gets 1.5 s) and balance's fds return to the baseline.
fn clogged_close(opts: &[&str]) {
    let (tx, rx) = mpsc::channel::<TcpStream>();
    let tx = Mutex::new(tx);
    let be = Backend::spawn(LOCALHOST_V4, move |s| {
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(s);
        }
    });
    let b = Balance::start(opts, &[be.channel()]);
    let base = b.stable_fds();
    let mut slowest = Duration::ZERO;
    let cases = clog_cases();
    assert_eq!(cases.len(), 26);
    for (close_client, c, e) in cases {
        let name = format!(
            "close {}, client {c:?}, backend {e:?}",
            if close_client { "client" } else { "backend" }
        );
        let mut client = connect(b.addr);
        let mut backend = rx.recv_timeout(IO_TIMEOUT).expect("backend accepted");
        // One byte through first: the relay is up before anyone shuts or
        // closes (a FIN while the connect is still pending: tests/tunnel.rs).
        backend.write_all(b"!").expect("ready byte");
        let mut one = [0u8; 1];
        client.read_exact(&mut one).expect("ready byte through");
        let (mut cs, mut bs) = (Side::new(client, c), Side::new(backend, e));
        cs.act(c);
        bs.act(e);
        let (closed, checked) = if close_client { (cs, bs) } else { (bs, cs) };
        closed.close();
        let t = Instant::now();
        let seen = wait_until(&name, Duration::from_millis(1500), || checked.sees_close());
        assert!(
            seen.is_ok(),
            "{name}: the other end never learnt of the close"
        );
        slowest = slowest.max(t.elapsed());
        checked.close();
        b.assert_fds_return_to(base);
    }
    eprintln!("T06 {opts:?}: 26 cases; slowest close seen after {slowest:?}");
}

#[test]
fn clogged_close_matrix_every_case_reaches_the_other_end_splice() {
    clogged_close(MODES[0].1);
}

#[test]
fn clogged_close_matrix_every_case_reaches_the_other_end_buffered() {
    clogged_close(MODES[1].1);
}

// ------------------------------------------------------------ -6

/// `-6` without `-b` listens on the IPv6 wildcard, dual stack: IPv4 and
/// IPv6 clients are both served, and an IPv4 peer is logged as plain IPv4.
#[test]
fn six_without_b_serves_ipv4_and_ipv6_clients_on_one_wildcard_socket() {
    if !have_ipv6() {
        skip_because("no IPv6 loopback (::1)");
        return;
    }
    let be = Backend::tagged("B");
    let b = Balance::cli(&[be.channel()])
        .no_bind()
        .opts(&["-6", "-d"])
        .start();
    assert!(b.has("bind=[::]:"), "{}", b.stderr());
    let v4 = b.addr;
    let v6 = SocketAddr::new(IpAddr::V6(Ipv6Addr::LOCALHOST), b.port());
    for addr in [v4, v6] {
        let (tag, mut s) = tag_of_new_client(addr).unwrap_or_else(|e| panic!("{addr}: {e}"));
        assert_eq!(tag, "B", "{addr}");
        echo_roundtrip(&mut s, b"dual stack").expect("echo");
    }
    let logged = b.wait_log("client=127.0.0.1:", 1, Duration::from_secs(5));
    assert!(logged, "IPv4 peer not logged as IPv4: {}", b.stderr());
    assert!(!b.has("::ffff:"), "{}", b.stderr());
}

// ------------------------------------------------------------ splice EINVAL

/// This process's copy of fd `fd` of process `pid` (pidfd_getfd: the same
/// open file, so its status flags are shared), or why not.
fn steal_fd(pid: u32, fd: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: plain syscalls with integer arguments; each fd returned is
    // new and owned here exactly once.
    unsafe {
        let pidfd = libc::syscall(libc::SYS_pidfd_open, pid as libc::pid_t, 0);
        if pidfd < 0 {
            return Err(io::Error::last_os_error());
        }
        let pidfd = OwnedFd::from_raw_fd(pidfd as RawFd);
        let got = libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), fd, 0);
        if got < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(OwnedFd::from_raw_fd(got as RawFd))
    }
}

/// The fd number in `pid` of the TCP socket whose ports are `local` and
/// `remote`.
fn fd_of_socket(pid: u32, local: u16, remote: u16) -> Option<RawFd> {
    let mut inode = None;
    for f in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        for line in text.lines().skip(1) {
            let w: Vec<&str> = line.split_whitespace().collect();
            let port = |a: &str| {
                a.rsplit(':')
                    .next()
                    .and_then(|p| u16::from_str_radix(p, 16).ok())
            };
            if w.len() > 9 && port(w[1]) == Some(local) && port(w[2]) == Some(remote) {
                inode = Some(format!("socket:[{}]", w[9]));
            }
        }
    }
    let inode = inode?;
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .ok()?
        .flatten()
        .find_map(|e| {
            let target = std::fs::read_link(e.path()).ok()?;
            (target.to_str()? == inode).then(|| e.file_name().to_str()?.parse().ok())?
        })
}

/// Set O_APPEND on an open file: splice(2) into it then fails with EINVAL.
fn set_append(fd: &OwnedFd) -> io::Result<()> {
    // SAFETY: fcntl with integer arguments on an fd we own.
    unsafe {
        let fl = libc::fcntl(fd.as_raw_fd(), libc::F_GETFL);
        if fl < 0 || libc::fcntl(fd.as_raw_fd(), libc::F_SETFL, fl | libc::O_APPEND) < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

/// splice(2) refuses a destination opened for append (EINVAL), as it does
/// sockets that cannot splice. With O_APPEND set on both of balance's
/// sockets of a live connection (through pidfd_getfd, the same open
/// files), 8 MiB each way still arrive intact: the pump falls back to the
/// buffered path, bytes already in its pipe included.
#[test]
fn splice_einval_falls_back_to_the_buffered_path_without_losing_a_byte() {
    let be = Backend::spawn(LOCALHOST_V4, |mut s| echo(&mut s));
    let b = Balance::start(&[], &[be.channel()]);
    let mut c = connect(b.addr);
    echo_roundtrip(&mut c, b"warm").expect("echo");
    let cport = c.local_addr().expect("addr").port();
    let fds = [
        fd_of_socket(b.pid(), b.port(), cport),
        wait_for("balance's backend socket", Duration::from_secs(2), || {
            let rows = tcp_sockets();
            let local = rows
                .iter()
                .find(|r| r.remote_port == be.port() && r.state == TCP_ESTABLISHED)?;
            fd_of_socket(b.pid(), local.local_port, be.port())
        })
        .ok(),
    ];
    let mut stolen = Vec::new();
    for fd in fds {
        let fd = fd.expect("balance's socket fd");
        match steal_fd(b.pid(), fd) {
            Ok(f) => stolen.push(f),
            Err(e) => {
                skip_because(&format!("pidfd_getfd: {e}"));
                return;
            }
        }
    }
    for f in &stolen {
        set_append(f).expect("O_APPEND");
    }
    const LEN: usize = 8 << 20;
    let data = random_bytes(LEN, 7);
    let mut r = c.try_clone().expect("clone");
    let reader = thread::spawn(move || {
        let mut got = vec![0u8; LEN];
        r.read_exact(&mut got).map(|_| got)
    });
    c.write_all(&data).expect("send 8 MiB");
    let got = reader.join().expect("reader").expect("8 MiB back");
    assert!(got == data, "the echo differs");
    echo_roundtrip(&mut c, b"still alive").expect("echo after");
}
