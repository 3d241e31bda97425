//! Odd-but-legal clients and the cases of the public `vi/tcptunnelchecker`
//! suite, through the real binary on both relay paths (splice by default,
//! buffered with `BALANCE_NO_SPLICE=1`).

use crate::common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::thread;
use std::time::Duration;

use common::{Backend, Balance, LOCALHOST_V4, connect, read_some, wait_for};

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Path {
    Splice,
    Buffered,
}

/// `balance -f OPTS -b 127.0.0.1 PORT CHANNELS` on the given relay path.
fn start(path: Path, opts: &[&str], channels: &[String]) -> Balance {
    let l = Balance::cli(channels).opts(opts);
    match path {
        Path::Splice => l.env_remove("BALANCE_NO_SPLICE"),
        Path::Buffered => l.env("BALANCE_NO_SPLICE", "1"),
    }
    .start()
}

const BANNER: &[u8] = b"220 banner: the server speaks first\r\n";

/// A server-speaks-first backend: writes the banner, then reads until the
/// client's EOF and closes.
fn banner_backend() -> Backend {
    Backend::spawn(LOCALHOST_V4, |mut s| {
        if s.write_all(BANNER).is_err() {
            return;
        }
        let mut sink = [0u8; 4096];
        while matches!(read_some(&s, &mut sink), Ok(n) if n > 0) {}
        let _ = s.flush();
    })
}

/// A client that shuts down its sending side before sending anything
/// (`nc -N`, socat with stdin closed, health checkers).
fn half_closed_client(b: &Balance) -> TcpStream {
    let c = connect(b.addr);
    c.shutdown(Shutdown::Write).expect("shutdown(WR)");
    c
}

/// Everything until EOF (or the read timeout, as an error).
fn read_to_eof(mut c: TcpStream) -> std::io::Result<Vec<u8>> {
    let mut got = Vec::new();
    c.read_to_end(&mut got)?;
    Ok(got)
}

/// 20 clients at once, each half-closed before sending anything, each
/// gets the banner and then EOF.
fn half_closed_clients_get_the_banner(path: Path) {
    const N: usize = 20;
    let be = banner_backend();
    let b = start(path, &[], &[be.channel()]);
    let clients: Vec<TcpStream> = (0..N).map(|_| half_closed_client(&b)).collect();
    let got: Vec<_> = clients
        .into_iter()
        .map(|c| thread::spawn(move || read_to_eof(c)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("reader thread"))
        .collect();
    let ok = got
        .iter()
        .filter(|r| matches!(r, Ok(v) if v == BANNER))
        .count();
    assert_eq!(ok, N, "{ok}/{N} banners delivered ({path:?}): {got:?}");
}

#[test]
fn half_closed_clients_get_the_server_banner_splice() {
    half_closed_clients_get_the_banner(Path::Splice);
}

#[test]
fn half_closed_clients_get_the_server_banner_buffered() {
    half_closed_clients_get_the_banner(Path::Buffered);
}

/// `--spin`: half-closed clients held while nothing is eligible are still
/// there when a channel comes back, and get its banner.
fn spinning_half_closed_clients_get_the_banner(path: Path) {
    const N: usize = 20;
    let be = banner_backend();
    let b = start(path, &["--spin", "20s"], &[be.channel()]);
    b.ctl("disable 0");
    let clients: Vec<TcpStream> = (0..N).map(|_| half_closed_client(&b)).collect();
    let held = wait_for("every client spinning", Duration::from_secs(10), || {
        (b.json()["listener"]["spinning"].as_u64() == Some(N as u64)).then_some(())
    });
    assert!(
        held.is_ok(),
        "spinning: {}",
        b.json()["listener"]["spinning"]
    );
    b.ctl("enable 0");
    let got: Vec<_> = clients
        .into_iter()
        .map(|c| thread::spawn(move || read_to_eof(c)))
        .collect::<Vec<_>>()
        .into_iter()
        .map(|t| t.join().expect("reader thread"))
        .collect();
    let ok = got
        .iter()
        .filter(|r| matches!(r, Ok(v) if v == BANNER))
        .count();
    assert_eq!(
        ok, N,
        "{ok}/{N} banners delivered after spinning ({path:?}): {got:?}"
    );
}

#[test]
fn spinning_half_closed_clients_get_the_banner_when_a_channel_comes_back_splice() {
    spinning_half_closed_clients_get_the_banner(Path::Splice);
}

#[test]
fn spinning_half_closed_clients_get_the_banner_when_a_channel_comes_back_buffered() {
    spinning_half_closed_clients_get_the_banner(Path::Buffered);
}

// ------------------------------------------------- vi/tcptunnelchecker

/// Its "trivial test 1": the client sends and closes; the backend reads
/// it all, then EOF.
fn client_sends_and_closes(path: Path) {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let be = Backend::spawn(LOCALHOST_V4, move |mut s| {
        let mut v = Vec::new();
        let r = s.read_to_end(&mut v).map(|_| v);
        let _ = tx.lock().map(|tx| tx.send(r.map_err(|e| e.kind())));
    });
    let b = start(path, &[], &[be.channel()]);
    let mut c = connect(b.addr);
    c.write_all(b"Hello").expect("write");
    drop(c);
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("backend done");
    assert_eq!(got, Ok(b"Hello".to_vec()), "{path:?}");
}

/// Its "trivial test 2": the backend sends and closes at once; the client
/// reads it all, then EOF.
fn backend_sends_and_closes(path: Path) {
    let be = Backend::spawn(LOCALHOST_V4, |mut s| {
        let _ = s.write_all(b"Hello");
    });
    let b = start(path, &[], &[be.channel()]);
    let got = read_to_eof(connect(b.addr)).expect("read to EOF");
    assert_eq!(got, b"Hello", "{path:?}");
}

#[test]
fn tunnelchecker_trivial_cases_splice() {
    client_sends_and_closes(Path::Splice);
    backend_sends_and_closes(Path::Splice);
}

#[test]
fn tunnelchecker_trivial_cases_buffered() {
    client_sends_and_closes(Path::Buffered);
    backend_sends_and_closes(Path::Buffered);
}

/// What one end of a clogged tunnel does before the close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Act {
    /// Nothing.
    Idle,
    /// Writes without the other end reading until its buffers are full.
    Clog,
    /// shutdown(WR).
    Shut,
}

/// Which end closes (while holding unread data, so the close is a reset);
/// the other end is checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Closer {
    Client,
    Backend,
}

/// Write until the socket (non-blocking) stays full for a while.
fn clog(mut s: &TcpStream) {
    s.set_nonblocking(true).expect("nonblocking");
    let buf = [0u8; 16 * 1024];
    let mut full_for = 0;
    while full_for < 6 {
        match s.write(&buf) {
            Ok(_) => full_for = 0,
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                full_for += 1;
                thread::sleep(Duration::from_millis(25));
            }
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => panic!("clog: {e}"),
        }
    }
}

/// The clogged-close cases of the suite that test something (the ones
/// where the checked end does not drain: its drain cases pass whatever the
/// proxy does). Both directions as set up, the closer drops its socket
/// holding unread data (a reset); the checked end, which does not read,
/// must see the reset (SO_ERROR) within the time limit.
fn clogged_close(path: Path, client: Act, backend: Act, closer: Closer) -> Result<(), String> {
    let (tx, rx) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let be = Backend::spawn(LOCALHOST_V4, move |s| {
        let _ = tx.lock().map(|tx| tx.send(s));
        // The test owns the socket from here.
    });
    let b = start(path, &[], &[be.channel()]);
    let c = connect(b.addr);
    let s = rx
        .recv_timeout(Duration::from_secs(10))
        .map_err(|_| "no backend connection".to_string())?;
    for (sock, act) in [(&c, client), (&s, backend)] {
        match act {
            Act::Idle => {}
            Act::Clog => clog(sock),
            Act::Shut => sock.shutdown(Shutdown::Write).expect("shutdown"),
        }
    }
    let checked = match closer {
        Closer::Client => {
            drop(c);
            s
        }
        Closer::Backend => {
            drop(s);
            c
        }
    };
    let reset = wait_for(
        "the reset passed on",
        Duration::from_secs(5),
        || match checked.take_error() {
            Ok(Some(e)) => Some(Ok(e.kind())),
            Ok(None) => None,
            Err(e) => Some(Err(e.kind())),
        },
    );
    match reset {
        Ok(Ok(
            std::io::ErrorKind::ConnectionReset
            | std::io::ErrorKind::ConnectionAborted
            | std::io::ErrorKind::BrokenPipe,
        )) => Ok(()),
        other => Err(format!(
            "client {client:?}, backend {backend:?}, {closer:?} closes: {other:?}"
        )),
    }
}

/// outClogCheck_inClose, outClogCheck_inClogClose, outClogCheck_inShutClose,
/// outClose_inClogCheck, outClogClose_inClogCheck, outShutClose_inClogCheck.
const CLOGGED_CASES: [(Act, Act, Closer); 6] = [
    (Act::Clog, Act::Idle, Closer::Backend),
    (Act::Clog, Act::Clog, Closer::Backend),
    (Act::Clog, Act::Shut, Closer::Backend),
    (Act::Idle, Act::Clog, Closer::Client),
    (Act::Clog, Act::Clog, Closer::Client),
    (Act::Shut, Act::Clog, Closer::Client),
];

fn clogged_closes(path: Path) {
    let failed: Vec<String> = CLOGGED_CASES
        .iter()
        .filter_map(|&(c, b, closer)| clogged_close(path, c, b, closer).err())
        .collect();
    assert!(failed.is_empty(), "{path:?}: {failed:#?}");
}

#[test]
fn tunnelchecker_clogged_close_reaches_the_other_end_as_a_reset_splice() {
    clogged_closes(Path::Splice);
}

#[test]
fn tunnelchecker_clogged_close_reaches_the_other_end_as_a_reset_buffered() {
    clogged_closes(Path::Buffered);
}
