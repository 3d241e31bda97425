//! Loopback backends with known behaviour. One type, [`Backend`]: a
//! listener thread that runs a handler on a thread per connection, counts
//! accepted and finished connections, and closes its port when stopped or
//! dropped. The special behaviours are handlers (tagged echo, banner then
//! half-close, reset, silent) or ports that are no backend at all
//! ([`Refused`], [`Blackhole`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex, mpsc};
use std::thread;
use std::time::{Duration, Instant};

use super::{LOCALHOST_V4, read_some, wait_until};

/// How long a handler's socket waits for a read before it gives up.
const HANDLER_READ_TIMEOUT: Duration = Duration::from_secs(60);

/// A loopback backend running a handler on a thread per connection.
/// Stops accepting (its port then refuses) on [`Backend::stop`] or drop;
/// connections already accepted go on.
pub struct Backend {
    pub addr: SocketAddr,
    pub accepted: Arc<AtomicUsize>,
    /// Connections whose handler returned (socket closed).
    pub finished: Arc<AtomicUsize>,
    /// The peer address of every connection, in accept order.
    pub peers: Arc<Mutex<Vec<SocketAddr>>>,
    stop: Arc<AtomicBool>,
}

impl Backend {
    /// On `ip`, port 0.
    pub fn spawn<F>(ip: IpAddr, handler: F) -> Backend
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        Backend::try_spawn_at((ip, 0), handler).expect("bind backend")
    }

    /// On a given address (a port taken over from a stopped backend, or
    /// the same port on a second loopback address): the bind may fail.
    pub fn try_spawn_at<F>(addr: impl ToSocketAddrs, handler: F) -> io::Result<Backend>
    where
        F: Fn(TcpStream) + Send + Sync + 'static,
    {
        let l = TcpListener::bind(addr)?;
        let addr = l.local_addr()?;
        let accepted = Arc::new(AtomicUsize::new(0));
        let finished = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let peers = Arc::new(Mutex::new(Vec::new()));
        let handler = Arc::new(handler);
        {
            let (accepted, finished, stop) = (accepted.clone(), finished.clone(), stop.clone());
            let peers = peers.clone();
            thread::spawn(move || {
                for conn in l.incoming() {
                    if stop.load(SeqCst) {
                        break;
                    }
                    let Ok(s) = conn else { continue };
                    if let Ok(p) = s.peer_addr() {
                        peers.lock().unwrap_or_else(|e| e.into_inner()).push(p);
                    }
                    accepted.fetch_add(1, SeqCst);
                    let (h, finished) = (handler.clone(), finished.clone());
                    thread::spawn(move || {
                        let _ = s.set_read_timeout(Some(HANDLER_READ_TIMEOUT));
                        h(s);
                        finished.fetch_add(1, SeqCst);
                    });
                }
            });
        }
        Ok(Backend {
            addr,
            accepted,
            finished,
            peers,
            stop,
        })
    }

    /// Writes `greeting` to each connection as it is accepted and holds the
    /// socket, without a thread per connection (thousands of idle
    /// sessions), until the backend is stopped or dropped.
    pub fn greet_and_hold(greeting: &'static [u8]) -> Backend {
        let l = TcpListener::bind((LOCALHOST_V4, 0)).expect("bind backend");
        let addr = l.local_addr().expect("backend address");
        let b = Backend {
            addr,
            accepted: Arc::default(),
            finished: Arc::default(),
            peers: Arc::default(),
            stop: Arc::default(),
        };
        let (accepted, stop) = (b.accepted.clone(), b.stop.clone());
        thread::spawn(move || {
            let mut held = Vec::new();
            for conn in l.incoming() {
                if stop.load(SeqCst) {
                    break;
                }
                let Ok(mut s) = conn else { continue };
                accepted.fetch_add(1, SeqCst);
                if s.write_all(greeting).is_ok() {
                    held.push(s);
                }
            }
        });
        b
    }

    /// Writes `name\n`, then echoes until EOF.
    pub fn tagged(name: &str) -> Backend {
        Backend::tagged_on(LOCALHOST_V4, name)
    }

    pub fn tagged_on(ip: IpAddr, name: &str) -> Backend {
        Backend::tagged_at((ip, 0), name).expect("bind backend")
    }

    /// A tagged echo backend on a given address (see [`Backend::try_spawn_at`]).
    pub fn tagged_at(addr: impl ToSocketAddrs, name: &str) -> io::Result<Backend> {
        let line = format!("{name}\n");
        Backend::try_spawn_at(addr, move |mut s| {
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

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    pub fn accepted(&self) -> usize {
        self.accepted.load(SeqCst)
    }

    pub fn finished(&self) -> usize {
        self.finished.load(SeqCst)
    }

    /// Close the listening socket and return once the port refuses; live
    /// sessions continue.
    pub fn stop(&self) {
        self.close_listener();
        let refused = wait_until(
            "the stopped backend to refuse",
            Duration::from_secs(5),
            || TcpStream::connect(self.addr).is_err(),
        );
        assert!(refused.is_ok(), "{}: {refused:?}", self.addr);
    }

    fn close_listener(&self) {
        if !self.stop.swap(true, SeqCst) {
            // Wake the accept loop, which then sees the flag and ends.
            let _ = TcpStream::connect_timeout(&self.addr, Duration::from_millis(200));
        }
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.close_listener();
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

/// Sends `banner`, shuts down writing, then reads to EOF and reports what
/// it received (or the read error) on `tx`.
pub fn banner_then_shut_wr(
    banner: &'static [u8],
    tx: mpsc::Sender<io::Result<Vec<u8>>>,
) -> Backend {
    let tx = Mutex::new(tx);
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

    pub fn port(&self) -> u16 {
        self.addr.port()
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

    pub fn port(&self) -> u16 {
        self.addr.port()
    }
}

impl Default for Blackhole {
    fn default() -> Self {
        Blackhole::new()
    }
}
