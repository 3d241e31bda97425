//! Relay semantics through the real binary, on both data paths: the default
//! zero-copy `splice(2)` path and the buffered one forced with `--no-splice`.
//! Every test runs once per path (`*_splice` / `*_buffered`).

use crate::common;

use std::io::{self, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::{Backend, Balance, LOCALHOST_V4, stretched, try_connect, wait_for};
use sha2::{Digest, Sha256};

/// Read/write timeout of clients and backends: 1 GiB each way takes
/// seconds in a debug build.
const IO_TIMEOUT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Splice,
    Buffered,
    /// Buffered through `BALANCE_NO_SPLICE=1` instead of `--no-splice`.
    BufferedByEnv,
}

/// `balance -f [--no-splice] EXTRA -b 127.0.0.1 PORT BACKEND`.
fn start(be: &Backend, path: Path, extra: &[&str]) -> Balance {
    let mut l = Balance::cli(&[be.channel()]).opts(extra);
    l = match path {
        Path::Splice => l.env_remove("BALANCE_NO_SPLICE"),
        Path::Buffered => l.opts(&["--no-splice"]).env_remove("BALANCE_NO_SPLICE"),
        Path::BufferedByEnv => l.env("BALANCE_NO_SPLICE", "1"),
    };
    l.start()
}

/// A client through balance with the long timeouts.
fn client(bal: &Balance) -> TcpStream {
    try_connect(bal.addr, IO_TIMEOUT).expect("connect to balance")
}

/// A backend that runs `f` on each accepted connection in its own thread,
/// with the long timeouts.
fn backend<F>(f: F) -> Backend
where
    F: Fn(TcpStream) + Send + Sync + 'static,
{
    Backend::spawn(LOCALHOST_V4, move |s| {
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
        f(s)
    })
}

/// xorshift64*: cheap deterministic noise for data and write sizes.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

const MAX_WRITE: usize = 256 * 1024;

/// Writes `total` bytes in random sizes (1 B – 256 KiB) taken at random
/// offsets of a random block; returns their sha256.
fn send_random(s: &mut TcpStream, total: u64, seed: u64) -> io::Result<[u8; 32]> {
    let mut rng = Rng(seed | 1);
    let block: Vec<u8> = (0..(1 << 20) + MAX_WRITE)
        .map(|_| rng.next() as u8)
        .collect();
    let mut h = Sha256::new();
    let mut left = total;
    while left > 0 {
        let len = (1 + rng.below(MAX_WRITE as u64)).min(left) as usize;
        let off = rng.below(1 << 20) as usize;
        let chunk = &block[off..off + len];
        s.write_all(chunk)?;
        h.update(chunk);
        left -= len as u64;
    }
    Ok(h.finalize().into())
}

/// Reads to EOF; returns (bytes, sha256).
fn recv_all(s: &mut TcpStream) -> io::Result<(u64, [u8; 32])> {
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 128 * 1024];
    let mut n = 0u64;
    loop {
        match s.read(&mut buf)? {
            0 => return Ok((n, h.finalize().into())),
            k => {
                h.update(&buf[..k]);
                n += k as u64;
            }
        }
    }
}

/// Send `total` random bytes and, at the same time, read to EOF.
/// Returns (sent sha, received bytes, received sha).
fn duplex(mut s: TcpStream, total: u64, seed: u64) -> ([u8; 32], u64, [u8; 32]) {
    let mut w = s.try_clone().unwrap();
    let writer = thread::spawn(move || {
        let h = send_random(&mut w, total, seed).expect("send");
        w.shutdown(Shutdown::Write).expect("shutdown");
        h
    });
    let (n, rh) = recv_all(&mut s).expect("recv");
    (writer.join().unwrap(), n, rh)
}

fn both_ways_at_once(path: Path, total: u64) {
    // A core each way for seconds: not beside another heavy test.
    let _g = common::fleet::serial();
    let (tx, rx) = mpsc::channel();
    let be = backend(move |s| {
        let _ = tx.send(duplex(s, total, 0xbac0_e4d5));
    });
    let bal = start(&be, path, &[]);
    let (c_sent, c_n, c_recv) = duplex(client(&bal), total, 0xc11e_4700);
    let (b_sent, b_n, b_recv) = rx.recv_timeout(IO_TIMEOUT).expect("backend result");
    assert_eq!(c_n, total, "client received every byte");
    assert_eq!(b_n, total, "backend received every byte");
    assert_eq!(c_sent, b_recv, "client → backend sha256");
    assert_eq!(b_sent, c_recv, "backend → client sha256");
}

/// 1 GiB each way at once (about 12 s for both paths in a
/// debug build on 2 cores; sha256 is built optimised, see Cargo.toml).
const BULK: u64 = 1 << 30;

#[test]
fn one_gib_both_directions_at_once_arrive_byte_exact_splice() {
    both_ways_at_once(Path::Splice, BULK);
}

#[test]
fn one_gib_both_directions_at_once_arrive_byte_exact_buffered() {
    both_ways_at_once(Path::Buffered, BULK);
}

const MIB: u64 = 1 << 20;

/// Client sends 1 MiB then SHUT_WR; the backend reads to EOF, replies 1 MiB
/// and closes: the client gets the whole reply, then EOF.
fn client_half_close(path: Path) {
    let (tx, rx) = mpsc::channel();
    let be = backend(move |mut s| {
        let got = recv_all(&mut s).expect("backend recv");
        let sent = send_random(&mut s, MIB, 7).expect("backend reply");
        let _ = tx.send((got, sent));
        // Dropping `s` closes the backend connection.
    });
    let bal = start(&be, path, &[]);
    let mut c = client(&bal);
    let sent = send_random(&mut c, MIB, 3).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    let (n, got) = recv_all(&mut c).expect("client reads the reply to EOF");
    let ((bn, bgot), bsent) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!((bn, bgot), (MIB, sent), "backend got the request, then EOF");
    assert_eq!(
        (n, got),
        (MIB, bsent),
        "client got the full reply after its SHUT_WR"
    );
}

#[test]
fn client_half_close_still_gets_the_full_reply_splice() {
    client_half_close(Path::Splice);
}

#[test]
fn client_half_close_still_gets_the_full_reply_buffered() {
    client_half_close(Path::Buffered);
}

/// Backend sends a banner then SHUT_WR; the client sees the banner, then EOF
/// right away, and can still send 1 MiB that the backend receives in full.
fn backend_half_close(path: Path) {
    const BANNER: &[u8] = b"220 banner from the backend, then SHUT_WR\r\n";
    let (tx, rx) = mpsc::channel();
    let be = backend(move |mut s| {
        s.write_all(BANNER).unwrap();
        s.shutdown(Shutdown::Write).unwrap();
        let _ = tx.send(recv_all(&mut s).expect("backend recv"));
    });
    let bal = start(&be, path, &[]);
    let mut c = client(&bal);
    let (n, h) = recv_all(&mut c).expect("banner then EOF");
    assert_eq!(n, BANNER.len() as u64);
    assert_eq!(h, <[u8; 32]>::from(Sha256::digest(BANNER)));
    let sent = send_random(&mut c, MIB, 11).expect("client can still send");
    c.shutdown(Shutdown::Write).unwrap();
    let (bn, bh) = rx.recv_timeout(IO_TIMEOUT).unwrap();
    assert_eq!(
        (bn, bh),
        (MIB, sent),
        "backend got all of the client's data"
    );
}

#[test]
fn backend_banner_and_shut_wr_leave_the_client_direction_open_splice() {
    backend_half_close(Path::Splice);
}

#[test]
fn backend_banner_and_shut_wr_leave_the_client_direction_open_buffered() {
    backend_half_close(Path::Buffered);
}

/// Read until an error or EOF; returns the error (None for a clean EOF).
fn read_until_end(s: &mut TcpStream) -> Option<io::Error> {
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match s.read(&mut buf) {
            Ok(0) => return None,
            Ok(_) => {}
            Err(e) => return Some(e),
        }
    }
}

fn reset(s: &TcpStream) {
    socket2::SockRef::from(s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

/// Backend sends 64 KiB then resets: the client sees ECONNRESET, not EOF.
fn backend_reset(path: Path) {
    let be = backend(|mut s| {
        // Wait for the client's byte, so the relay runs: a reset racing the
        // proxy's connect completion is a failed connect instead.
        let mut b = [0u8; 1];
        s.read_exact(&mut b).unwrap();
        s.write_all(&[b'x'; 64 * 1024]).unwrap();
        reset(&s);
    });
    let bal = start(&be, path, &[]);
    let mut c = client(&bal);
    c.write_all(b"?").unwrap();
    let t = Instant::now();
    let e = read_until_end(&mut c).expect("a reset, not a clean EOF");
    assert_eq!(e.kind(), io::ErrorKind::ConnectionReset, "{e}");
    assert!(t.elapsed() < stretched(Duration::from_secs(5)));
}

#[test]
fn backend_reset_reaches_the_client_as_a_reset_splice() {
    backend_reset(Path::Splice);
}

#[test]
fn backend_reset_reaches_the_client_as_a_reset_buffered() {
    backend_reset(Path::Buffered);
}

/// Client resets mid-transfer: the backend, reading, sees ECONNRESET.
fn client_reset(path: Path) {
    let (tx, rx) = mpsc::channel();
    let be = backend(move |mut s| {
        // A greeting, so the client knows the relay runs (a client that
        // leaves while the proxy still connects only cancels the connect).
        s.write_all(b"+").unwrap();
        let _ = tx.send(read_until_end(&mut s).map(|e| e.kind()));
    });
    let bal = start(&be, path, &[]);
    let mut c = client(&bal);
    let mut hello = [0u8; 1];
    c.read_exact(&mut hello).unwrap();
    c.write_all(&[b'y'; 200 * 1024]).unwrap();
    reset(&c);
    drop(c);
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("backend saw the end");
    assert_eq!(got, Some(io::ErrorKind::ConnectionReset));
}

#[test]
fn client_reset_reaches_the_backend_as_a_reset_splice() {
    client_reset(Path::Splice);
}

#[test]
fn client_reset_reaches_the_backend_as_a_reset_buffered() {
    client_reset(Path::Buffered);
}

const IDLE_CONNS: usize = 50;
/// `proxy::splice::POOL_CAP`: the most empty pipes the pool keeps.
const POOL_CAP: usize = 32;

/// 50 connections each echo a 256 KiB burst, then idle. Pipes are taken
/// only while bytes move, so afterwards only the bounded pool remains (if
/// every connection kept its pipes there would be 100).
fn idle_pipes(path: Path) -> usize {
    let be = backend(|mut s| {
        let mut b = vec![0u8; 64 * 1024];
        while let Ok(n @ 1..) = s.read(&mut b) {
            if s.write_all(&b[..n]).is_err() {
                return;
            }
        }
    });
    let bal = start(&be, path, &[]);
    // Pipes inherited from the environment (not ours) are the baseline.
    let base = bal.pipe_fds();
    let mut conns: Vec<TcpStream> = (0..IDLE_CONNS).map(|_| client(&bal)).collect();
    // A burst larger than the first (small) read, so the splice path
    // really moves it through pipes before the connection goes idle.
    const BURST: usize = 256 * 1024;
    for (i, c) in conns.iter_mut().enumerate() {
        let mut sent = vec![i as u8; BURST];
        sent[0] = 0xff;
        let mut got = vec![0u8; BURST];
        // Write and read in chunks so neither side's buffers fill up.
        for (w, r) in sent.chunks(16 * 1024).zip(got.chunks_mut(16 * 1024)) {
            c.write_all(w).unwrap();
            c.read_exact(r).unwrap();
        }
        assert!(got == sent, "connection {i} echoed its burst intact");
    }
    // The echo is back, so each direction has drained its pipe; poll until
    // the count settles, bounded.
    let idle = || bal.pipe_fds().saturating_sub(base);
    let pipes = wait_for("the pipes back to the pool", Duration::from_secs(5), || {
        Some(idle()).filter(|p| p / 2 <= POOL_CAP)
    })
    .unwrap_or_else(|_| idle());
    assert!(
        pipes / 2 <= POOL_CAP,
        "{pipes} pipe fds for {IDLE_CONNS} idle connections"
    );
    drop(conns);
    pipes / 2
}

#[test]
fn idle_connections_hold_no_pipe_only_the_bounded_pool_remains_splice() {
    let pooled = idle_pipes(Path::Splice);
    assert!(pooled >= 1, "the splice path used (and pooled) a pipe");
}

#[test]
fn buffered_path_uses_no_pipes_at_all() {
    assert_eq!(idle_pipes(Path::Buffered), 0);
}

#[test]
fn balance_no_splice_env_selects_the_buffered_path() {
    assert_eq!(idle_pipes(Path::BufferedByEnv), 0);
}

/// `-T`: a connection on which nothing moves is closed on both sides.
fn idle_timeout(path: Path) {
    let (tx, rx) = mpsc::channel();
    let be = backend(move |mut s| {
        let _ = tx.send(read_until_end(&mut s).map(|e| e.kind()));
    });
    let bal = start(&be, path, &["-T", "1"]);
    let mut c = client(&bal);
    c.write_all(b"ping").unwrap();
    let t = Instant::now();
    let end = read_until_end(&mut c);
    let took = t.elapsed();
    assert!(
        end.is_none()
            || end
                .as_ref()
                .is_some_and(|e| e.kind() == io::ErrorKind::ConnectionReset)
    );
    assert!(
        took >= Duration::from_millis(500),
        "closed after {took:?}, before -T 1"
    );
    assert!(
        took < stretched(Duration::from_secs(10)),
        "closed after {took:?}"
    );
    assert!(
        rx.recv_timeout(Duration::from_secs(10)).is_ok(),
        "backend side closed too"
    );
}

#[test]
fn idle_timeout_closes_both_sides_splice() {
    idle_timeout(Path::Splice);
}

#[test]
fn idle_timeout_closes_both_sides_buffered() {
    idle_timeout(Path::Buffered);
}

/// After the client's SHUT_WR (one direction ended), a reset from the client
/// still reaches a backend that is silent: the proxy watches the ended
/// side for errors while the other direction waits.
fn reset_after_half_close(path: Path) {
    let (tx, rx) = mpsc::channel();
    let (eof_tx, eof_rx) = mpsc::channel();
    let be = backend(move |mut s| {
        s.write_all(b"+").unwrap();
        let eof = recv_all(&mut s).map(|(n, _)| n);
        let _ = eof_tx.send(());
        // Silent from here on: only the socket's error tells of the reset.
        let err = wait_for("the reset", Duration::from_secs(5), || {
            s.take_error().ok().flatten()
        });
        let _ = tx.send((eof.ok(), err.is_ok()));
    });
    let bal = start(&be, path, &[]);
    let mut c = client(&bal);
    let mut hello = [0u8; 1];
    c.read_exact(&mut hello).unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    // The half-close has reached the backend before the reset.
    eof_rx
        .recv_timeout(Duration::from_secs(10))
        .expect("the backend saw the client's EOF");
    reset(&c);
    drop(c);
    let (eof, reset_seen) = rx.recv_timeout(Duration::from_secs(10)).unwrap();
    assert_eq!(eof, Some(0), "backend saw the client's EOF first");
    assert!(reset_seen, "backend saw the reset within 5 s");
}

#[test]
fn reset_after_client_half_close_reaches_the_silent_backend_splice() {
    reset_after_half_close(Path::Splice);
}

#[test]
fn reset_after_client_half_close_reaches_the_silent_backend_buffered() {
    reset_after_half_close(Path::Buffered);
}

/// A backend that writes and resets at once after accepting, so the reset
/// may arrive while balance is still finishing its connect or before the
/// relay first reads: each of 100 clients must see a reset, never a clean
/// end.
fn instant_reset_reaches_every_client(path: Path) {
    let backend = Backend::spawn(LOCALHOST_V4, |s| {
        let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
        let _ = (&s).write_all(b"bye");
        drop(s);
    });
    let bal = start(&backend, path, &[]);
    let mut clean = Vec::new();
    for i in 0..100 {
        let mut c = TcpStream::connect(bal.addr).expect("connect");
        c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut got = Vec::new();
        let mut buf = [0u8; 64];
        let end = loop {
            match c.read(&mut buf) {
                Ok(0) => break None,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => break Some(e.kind()),
            }
        };
        match end {
            Some(io::ErrorKind::ConnectionReset) => {}
            Some(k) => panic!("client {i}: {k:?}"),
            None => clean.push((i, got.len())),
        }
    }
    assert!(
        clean.is_empty(),
        "{} of 100 clients got a clean end (client, bytes): {clean:?}",
        clean.len()
    );
}

#[test]
fn instant_reset_reaches_every_client_splice() {
    instant_reset_reaches_every_client(Path::Splice);
}

#[test]
fn instant_reset_reaches_every_client_buffered() {
    instant_reset_reaches_every_client(Path::Buffered);
}
