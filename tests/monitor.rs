//! Health monitoring, passive detection, racing and spinning, end to end:
//! the real binary over loopback with short intervals. The fake check
//! targets (HTTP, Redis-like, MariaDB-like, hung) are harness backends with
//! their own handlers.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, AtomicU16, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const LOCAL2: std::net::Ipv4Addr = std::net::Ipv4Addr::new(127, 0, 0, 2);

// ---------------------------------------------------------------- helpers

/// `balance -f <opts> PORT <channels>` (no `-b`: the wildcard) on a free
/// port, listening.
fn start(opts: &[&str], channels: &[String]) -> Balance {
    Balance::cli(channels).opts(opts).no_bind().start()
}

fn chan(port: u16) -> String {
    format!("127.0.0.1:{port}")
}

/// A session through balance that can prove it is still alive.
fn session(b: &Balance) -> (TcpStream, String) {
    let (tag, s) = tag_of_new_client(b.addr).unwrap();
    (s, tag)
}

fn alive(s: &mut TcpStream) -> bool {
    s.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
    if s.write_all(b"x").is_err() {
        return false;
    }
    let mut b = [0u8; 1];
    matches!(s.read(&mut b), Ok(1))
}

// ------------------------------------------------------------------ tests

#[test]
fn monitor_moves_traffic_to_backup_within_fall_intervals_and_back_after_rise() {
    let a = Backend::tagged("A");
    let bk = Backend::tagged("B");
    let b = start(
        &["-t", "1", "-m", "connect:interval=200ms:rise=2:fall=3"],
        &[chan(a.port()), "!".into(), chan(bk.port())],
    );
    assert_eq!(ask(b.addr).unwrap(), "A");
    let t0 = Instant::now();
    a.stop();
    assert!(
        b.wait_log("channel down (dis)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let down = t0.elapsed();
    // fall × interval = 600 ms, plus scheduling slack on a loaded machine.
    assert!(
        down < stretched(Duration::from_millis(2000)),
        "down after {down:?}"
    );
    assert!(b.has("connection refused"), "{}", b.stderr());
    for _ in 0..5 {
        assert_eq!(ask(b.addr).unwrap(), "B");
    }
    let a2 = Backend::tagged_at(local(a.port()), "A").unwrap();
    let t0 = Instant::now();
    assert!(
        b.wait_log("channel up (ENA)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let up = t0.elapsed();
    assert!(
        up < stretched(Duration::from_millis(2000)),
        "up after {up:?}"
    );
    assert_eq!(ask(b.addr).unwrap(), "A");
    drop(a2);
}

/// A tiny HTTP server whose status code can be changed at runtime.
fn http_server(status: Arc<AtomicU16>, body: &'static str) -> Backend {
    http_server_on(LOCALHOST_V4, 0, status, body)
}

fn http_server_on(
    ip: std::net::IpAddr,
    port: u16,
    status: Arc<AtomicU16>,
    body: &'static str,
) -> Backend {
    Backend::try_spawn_at((ip, port), move |mut s| {
        let st = status.load(SeqCst);
        let mut buf = [0u8; 2048];
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read(&mut buf);
        let _ = write!(
            s,
            "HTTP/1.1 {st} X\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
    })
    .expect("bind http server")
}

#[test]
fn http_probe_on_side_port_follows_status_and_keeps_live_sessions() {
    // Two hosts, each with its own check service on the same side port:
    // A on 127.0.0.1, B on 127.0.0.2.
    let a = Backend::tagged("A");
    let bk = Backend::tagged_on(LOCAL2.into(), "B");
    let status = Arc::new(AtomicU16::new(200));
    let side_a = http_server(Arc::clone(&status), "MySQL is running");
    let side = side_a.port();
    let _side_b = http_server_on(
        LOCAL2.into(),
        side,
        Arc::new(AtomicU16::new(200)),
        "MySQL is running",
    );
    let spec = format!(
        "http=/mysqlchk/?port=3306:port={side}:body=is running:interval=200ms:rise=2:fall=2"
    );
    let b = start(
        &["-t", "1", "-m", &spec],
        &[
            chan(a.port()),
            "!".into(),
            format!("127.0.0.2:{}", bk.port()),
        ],
    );
    let (mut live, tag) = session(&b);
    assert_eq!(tag, "A");
    status.store(503, SeqCst);
    assert!(
        b.wait_log(
            "channel down (dis): http: HTTP 503",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        b.stderr()
    );
    assert_eq!(ask(b.addr).unwrap(), "B");
    // Without on-down=shutdown, live sessions stay.
    assert!(alive(&mut live), "session on A was closed");
    status.store(200, SeqCst);
    assert!(
        b.wait_log("channel up (ENA)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    assert_eq!(ask(b.addr).unwrap(), "A");
}

#[test]
fn on_down_shutdown_closes_live_sessions_of_the_channel() {
    let a = Backend::tagged("A");
    let bk = Backend::tagged_on(LOCAL2.into(), "B");
    let status = Arc::new(AtomicU16::new(200));
    let side_a = http_server(Arc::clone(&status), "");
    let side = side_a.port();
    let _side_b = http_server_on(LOCAL2.into(), side, Arc::new(AtomicU16::new(200)), "");
    let spec = format!("http=/:port={side}:interval=200ms:fall=1:on-down=shutdown");
    let b = start(
        &["-m", &spec],
        &[
            chan(a.port()),
            "!".into(),
            format!("127.0.0.2:{}", bk.port()),
        ],
    );
    let (mut on_a, tag) = session(&b);
    assert_eq!(tag, "A");
    assert!(alive(&mut on_a));
    status.store(500, SeqCst);
    assert!(
        b.wait_log("channel down (dis)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let t0 = Instant::now();
    assert!(!alive(&mut on_a), "session survived on-down=shutdown");
    assert!(t0.elapsed() < stretched(Duration::from_secs(2)));
}

#[test]
fn command_probe_gets_each_channels_port_as_an_argument() {
    let dir = std::env::temp_dir().join(format!("balance-mon-{}-cmd", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let script = dir.join("check.sh");
    // %H and %P arrive as separate argv elements; PATH is the fixed one.
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n[ \"$1\" = 127.0.0.1 ] || exit 9\ntest -e {}/up-$2\n",
            dir.display()
        ),
    )
    .unwrap();
    let a = Backend::tagged("A");
    let bk = Backend::tagged("B");
    let mut perm = std::fs::metadata(&script).unwrap().permissions();
    std::os::unix::fs::PermissionsExt::set_mode(&mut perm, 0o755);
    std::fs::set_permissions(&script, perm).unwrap();
    std::fs::write(dir.join(format!("up-{}", a.port())), "").unwrap();
    std::fs::write(dir.join(format!("up-{}", bk.port())), "").unwrap();
    let spec = format!(
        "command={} %H %P >/dev/null 2>&1:interval=200ms:rise=1:fall=1",
        script.display()
    );
    let b = start(
        &["-m", &spec],
        &[chan(a.port()), "!".into(), chan(bk.port())],
    );
    assert_eq!(ask(b.addr).unwrap(), "A");
    std::fs::remove_file(dir.join(format!("up-{}", a.port()))).unwrap();
    assert!(
        b.wait_log(
            "channel down (dis): command: exit code 1",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        b.stderr()
    );
    assert_eq!(
        b.count("channel down"),
        1,
        "only A's file is gone: {}",
        b.stderr()
    );
    assert_eq!(ask(b.addr).unwrap(), "B");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn send_expect_probe_marks_down_on_a_wrong_reply() {
    // A Redis-like server: "PING\r\n" → "+PONG\r\n" or "-ERR\r\n", then close.
    let healthy = Arc::new(AtomicBool::new(true));
    let h2 = Arc::clone(&healthy);
    let pongs = Arc::new(AtomicUsize::new(0));
    let p2 = Arc::clone(&pongs);
    let redis = Backend::spawn(LOCALHOST_V4, move |mut s| {
        let ok = h2.load(SeqCst);
        let mut buf = [0u8; 64];
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        if let Ok(n) = s.read(&mut buf) {
            if &buf[..n] == b"PING\r\n" {
                let _ = s.write_all(if ok { b"+PONG\r\n" } else { b"-ERR\x1b[2J\r\n" });
                p2.fetch_add(usize::from(ok), SeqCst);
            }
        }
    });
    let port = redis.port();
    let bk = Backend::tagged("B");
    let b = start(
        &[
            "-m",
            "send=PING\\r\\n:expect=+PONG:timeout=1:interval=200ms:fall=2",
        ],
        &[chan(port), "!".into(), chan(bk.port())],
    );
    // Four PONGs answered: balance has judged at least three (a probe ends
    // before the next starts), more than fall=2 would need to take it down.
    wait_until("four PONGs", Duration::from_secs(5), || {
        pongs.load(SeqCst) >= 4
    })
    .unwrap_or_else(|e| panic!("{e}: {}", b.stderr()));
    assert!(!b.has("channel down"), "{}", b.stderr());
    healthy.store(false, SeqCst);
    assert!(
        b.wait_log(
            "channel down (dis): send: expect mismatch",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        b.stderr()
    );
    // Backend bytes are escaped in the reason.
    assert!(
        b.has("-ERR\\\\x1b[2J") || b.has("-ERR\\x1b[2J"),
        "{}",
        b.stderr()
    );
    assert!(!b.stderr().contains('\x1b'));
}

/// A fake mysqld: greeting (or error 1040), counts handshakes aborted
/// before the client replied, logins and COM_QUITs.
#[derive(Default)]
struct FakeMysql {
    too_many: AtomicBool,
    conns: AtomicUsize,
    aborted: AtomicUsize,
    logins: AtomicUsize,
    quits: AtomicUsize,
}

fn fake_mysql(f: Arc<FakeMysql>) -> Backend {
    Backend::spawn(LOCALHOST_V4, move |mut s| {
        f.conns.fetch_add(1, SeqCst);
        let _ = s.set_read_timeout(Some(Duration::from_secs(3)));
        if f.too_many.load(SeqCst) {
            let msg = b"\xff\x10\x04#08004Too many connections";
            let mut p = vec![msg.len() as u8, 0, 0, 0];
            p.extend_from_slice(msg);
            let _ = s.write_all(&p);
            return;
        }
        let mut g = vec![0x0a];
        g.extend_from_slice(b"10.11.6-MariaDB-fake\0");
        g.extend_from_slice(&[7, 0, 0, 0]);
        g.extend_from_slice(b"abcdefgh\0");
        g.extend_from_slice(&[0xff, 0xf7, 33, 2, 0, 0xff, 0x81, 21]);
        g.extend_from_slice(&[0; 10]);
        g.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
        let mut p = vec![g.len() as u8, 0, 0, 0];
        p.extend_from_slice(&g);
        if s.write_all(&p).is_err() {
            f.aborted.fetch_add(1, SeqCst);
            return;
        }
        let mut hdr = [0u8; 4];
        if s.read_exact(&mut hdr).is_err() {
            f.aborted.fetch_add(1, SeqCst);
            return;
        }
        let len = usize::from(hdr[0]) | usize::from(hdr[1]) << 8;
        let mut body = vec![0u8; len];
        if s.read_exact(&mut body).is_err() || body.get(32..36) != Some(b"chk\0") {
            f.aborted.fetch_add(1, SeqCst);
            return;
        }
        f.logins.fetch_add(1, SeqCst);
        let _ = s.write_all(&[7, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0]);
        let mut q = [0u8; 5];
        if s.read_exact(&mut q).is_ok() && q == [1, 0, 0, 0, 1] {
            f.quits.fetch_add(1, SeqCst);
        } else {
            f.aborted.fetch_add(1, SeqCst);
        }
    })
}

#[test]
fn mysql_user_probes_abort_no_handshakes_while_connect_probes_abort_all() {
    let f = Arc::new(FakeMysql::default());
    let mysql = fake_mysql(Arc::clone(&f));
    let port = mysql.port();
    {
        let _b = start(&["-m", "mysql:user=chk:interval=50ms"], &[chan(port)]);
        assert!(
            wait_until("30 logins", Duration::from_secs(20), || f
                .quits
                .load(SeqCst)
                >= 30)
            .is_ok()
        );
    }
    // Balance is gone: every probe connection it opened has ended one way
    // or the other at the server.
    wait_until(
        "every probe connection ended",
        Duration::from_secs(5),
        || f.conns.load(SeqCst) == f.aborted.load(SeqCst) + f.quits.load(SeqCst),
    )
    .unwrap();
    let (conns, aborted, logins, quits) = (
        f.conns.load(SeqCst),
        f.aborted.load(SeqCst),
        f.logins.load(SeqCst),
        f.quits.load(SeqCst),
    );
    assert_eq!(aborted, 0, "conns {conns} logins {logins} quits {quits}");
    assert!(quits >= 30 && logins >= quits);
    // The same with plain connect probes: every probe is an aborted handshake.
    let g = Arc::new(FakeMysql::default());
    let mysql = fake_mysql(Arc::clone(&g));
    let port = mysql.port();
    {
        let _b = start(&["-m", "connect:interval=50ms"], &[chan(port)]);
        assert!(
            wait_until("10 aborted handshakes", Duration::from_secs(20), || {
                g.aborted.load(SeqCst) >= 10
            })
            .is_ok()
        );
    }
    assert_eq!(g.logins.load(SeqCst), 0);
}

#[test]
fn mysql_error_1040_is_full_not_down() {
    // Busy is not dead: a server that answers "too many connections" keeps
    // its clients (no maxc set, so nothing spills) and is shown full.
    let f = Arc::new(FakeMysql::default());
    f.too_many.store(true, SeqCst);
    let primary = fake_mysql(Arc::clone(&f));
    let backup = fake_mysql(Arc::new(FakeMysql::default()));
    let dir = TempDir::new("mon-my");
    let b = Balance::cli(&[primary.channel(), "!".into(), backup.channel()])
        .opts(&["-m", "mysql:interval=100ms:fall=2"])
        .control(&dir.join("my.sock"))
        .no_bind()
        .start();
    assert!(
        b.wait_log(
            "channel full (not down): mysql: MySQL error 1040: Too many connections",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        b.stderr()
    );
    wait_until("more full checks", Duration::from_secs(5), || {
        b.json()["channels"][0]["checks_full"].as_u64() >= Some(3)
    })
    .unwrap();
    assert!(!b.has("channel down"), "{}", b.stderr());
    let json = b.json();
    assert_eq!(json["channels"][0]["state"], "ENA", "{json}");
    assert_eq!(json["channels"][0]["full"], true, "{json}");
    assert_eq!(
        b.count("channel full (not down)"),
        1,
        "logged once per change"
    );
}

/// A server that accepts and never answers. At each accept it counts the
/// connections still open from the prober's side (a closed one shows EOF
/// on a non-blocking read: on loopback the FIN of a probe that gave up is
/// queued before the next probe's SYN), so `max` is the most probe
/// connections ever open at once, free of thread-scheduling noise (the
/// handlers take turns on one lock).
fn hung_server(open: Arc<AtomicUsize>, max: Arc<AtomicUsize>) -> Backend {
    let conns: Mutex<Vec<TcpStream>> = Mutex::new(Vec::new());
    Backend::spawn(LOCALHOST_V4, move |s| {
        let mut conns = conns.lock().unwrap();
        conns.retain_mut(|c| {
            let _ = c.set_nonblocking(true);
            let mut buf = [0u8; 1024];
            loop {
                match c.read(&mut buf) {
                    Ok(0) => return false,
                    Ok(_) => continue, // the request; keep reading
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return true,
                    Err(_) => return false,
                }
            }
        });
        conns.push(s);
        open.store(conns.len(), SeqCst);
        max.fetch_max(conns.len(), SeqCst);
    })
}

/// An HTTP "server" whose reply header never ends: a status line, then
/// header lines for as long as the client reads (up to 10 s).
fn endless_header_server() -> Backend {
    Backend::spawn(LOCALHOST_V4, |mut s| {
        let mut req = [0u8; 2048];
        let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
        let _ = s.read(&mut req);
        let _ = s.set_write_timeout(Some(Duration::from_secs(2)));
        if s.write_all(b"HTTP/1.1 200 OK\r\n").is_err() {
            return;
        }
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(10) {
            if s.write_all(b"X-Pad: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n")
                .is_err()
            {
                return;
            }
            thread::sleep(Duration::from_millis(1));
        }
    })
}

#[test]
fn http_reply_whose_header_never_ends_takes_the_channel_down() {
    let endless = endless_header_server();
    let b = start(
        &["-m", "http=/:timeout=5:interval=200ms:fall=2"],
        &[chan(endless.port())],
    );
    assert!(
        b.wait_log(
            "channel down (dis): http: reply header not complete within 16384 bytes",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        b.stderr()
    );
}

#[test]
fn hung_http_target_has_one_probe_in_flight_and_goes_down_after_three_timeouts() {
    let open = Arc::new(AtomicUsize::new(0));
    let max = Arc::new(AtomicUsize::new(0));
    let hung = hung_server(Arc::clone(&open), Arc::clone(&max));
    let port = hung.port();
    let t0 = Instant::now();
    let b = start(
        &["-m", "http=/:timeout=1:interval=200ms:fall=3"],
        &[chan(port)],
    );
    assert!(
        b.wait_log(
            "channel down (dis): http: timeout after 1s",
            1,
            Duration::from_secs(10)
        ),
        "{}",
        b.stderr()
    );
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(2900) && took < stretched(Duration::from_secs(6)),
        "{took:?}"
    );
    // Probes go on after the fall: a second more of them (an observation
    // window) still never opens two connections at once.
    thread::sleep(Duration::from_secs(1));
    assert_eq!(
        max.load(SeqCst),
        1,
        "more than one probe connection at once"
    );
}

fn procs_with(marker: &str) -> Vec<u32> {
    let mut v = Vec::new();
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return v;
    };
    for e in rd.flatten() {
        let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        if let Ok(c) = std::fs::read(format!("/proc/{pid}/cmdline")) {
            if String::from_utf8_lossy(&c).contains(marker) {
                v.push(pid);
            }
        }
    }
    v
}

fn zombie_children(parent: u32) -> usize {
    let Ok(rd) = std::fs::read_dir("/proc") else {
        return 0;
    };
    rd.flatten()
        .filter_map(|e| std::fs::read_to_string(e.path().join("stat")).ok())
        .filter(|stat| {
            // pid (comm) state ppid ...
            let after = stat.rsplit_once(')').map(|x| x.1).unwrap_or("");
            let mut f = after.split_whitespace();
            let state = f.next();
            let ppid = f.next().and_then(|p| p.parse::<u32>().ok());
            state == Some("Z") && ppid == Some(parent)
        })
        .count()
}

#[test]
fn hung_exec_probe_is_killed_with_its_group_and_reaped() {
    // A unique sleep length marks our processes.
    let marker = format!("3600.{}", std::process::id() % 100_000 + 7);
    let spec = format!(
        "command=/bin/sh -c 'sleep {marker} & sleep {marker}':timeout=1:interval=200ms:fall=2"
    );
    let port = Backend::tagged("A");
    let b = start(&["-m", &spec], &[chan(port.port())]);
    let pid = b.pid();
    let t0 = Instant::now();
    let mut most = 0;
    let mut zombie_streak = 0;
    let mut worst_zombie_streak = 0;
    while t0.elapsed() < Duration::from_millis(4500) {
        // balance's own argv carries the marker too.
        most = most.max(procs_with(&marker).iter().filter(|&&p| p != pid).count());
        if zombie_children(pid) > 0 {
            zombie_streak += 1;
        } else {
            zombie_streak = 0;
        }
        worst_zombie_streak = worst_zombie_streak.max(zombie_streak);
        thread::sleep(Duration::from_millis(50));
    }
    assert!(
        b.has("channel down (dis): command: timeout after 1s"),
        "{}",
        b.stderr()
    );
    // One check at a time: the shells (`sh -c` and the one it runs) and
    // the two sleeps at most.
    assert!((2..=4).contains(&most), "{most} check processes at once");
    assert!(worst_zombie_streak < 3, "zombie children persisted");
    // A graceful stop kills the in-flight check's group too.
    b.terminate();
    assert!(
        wait_until("the sleeps gone", Duration::from_secs(3), || procs_with(
            &marker
        )
        .is_empty())
        .is_ok(),
        "sleeps survived: {:?}",
        procs_with(&marker)
    );
}

#[test]
fn command_probe_runs_through_the_shell_like_balance_fm() {
    let dir = TempDir::new("mon-sh");
    let a = Backend::tagged("A");
    let bk = Backend::tagged("B");
    std::fs::write(dir.join(format!("up-{}", a.port())), "").unwrap();
    std::fs::write(dir.join(format!("up-{}", bk.port())), "").unwrap();
    // PATH lookup (`test`, `grep`), `&&`, a pipe and redirections, as
    // balance.fm's system() ran them.
    let spec = format!(
        "command=test -e {}/up-%P && echo \"%H\" | grep -q 127.0.0.1 >/dev/null 2>&1:interval=200ms:rise=1:fall=1",
        dir.path().display()
    );
    let b = start(
        &["-m", &spec],
        &[chan(a.port()), "!".into(), chan(bk.port())],
    );
    assert_eq!(ask(b.addr).unwrap(), "A");
    std::fs::remove_file(dir.join(format!("up-{}", a.port()))).unwrap();
    assert!(
        b.wait_log(
            "channel down (dis): command: exit code 1",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        b.stderr()
    );
    assert_eq!(b.count("channel down"), 1, "{}", b.stderr());
    assert_eq!(ask(b.addr).unwrap(), "B");
}

#[test]
fn balance_fm_man_page_monitor_example_runs_unchanged() {
    // Verbatim from balance.fm(1), %S and all (balance.fm passes an unknown
    // placeholder on as written).
    let spec =
        "connect:timeout=0.4:command=/bin/checksvc -s %S -p %P >/dev/null:pass=0,2:interval=10";
    let a = Backend::tagged("A");
    let b = start(&["-m", spec], &[chan(a.port())]);
    assert_eq!(ask(b.addr).unwrap(), "A");
}

#[test]
fn balance_fm_form_without_interval_keeps_its_probe_rate_and_failures_are_still_fast() {
    let a = Backend::tagged("A");
    let bk = Backend::tagged("B");
    // balance.fm's grammar, no interval=: balance.fm probed once a minute.
    // `-d` for the monitor's debug line with the interval it runs with.
    let b = start(
        &["-d", "-m", "connect"],
        &[chan(a.port()), "!".into(), chan(bk.port())],
    );
    wait_until("the first round", Duration::from_secs(5), || {
        a.accepted() >= 1
    })
    .unwrap();
    // The rate, without watching for it: the monitor says which interval
    // it runs with (that it keeps it, healthy channels once a round and
    // suspects every 2 s, is pinned in virtual time in src/monitor/tests.rs).
    assert!(
        b.wait_log("monitor started", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let started = b
        .stderr()
        .lines()
        .find(|l| l.contains("monitor started"))
        .map(str::to_string);
    assert!(
        started.as_ref().is_some_and(|l| l.contains("interval=60s")),
        "{started:?}"
    );
    // A dead primary: the failed client connect counts, a re-probe follows
    // at once and failing channels are probed every 2 s, so it is down in
    // seconds, not minutes.
    a.stop();
    assert_eq!(ask(b.addr).unwrap(), "B");
    assert!(
        b.wait_log("channel down (dis)", 1, Duration::from_secs(6)),
        "{}",
        b.stderr()
    );
}

fn parent_of(pid: u32) -> Option<u32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = stat.rsplit_once(')')?.1;
    after.split_whitespace().nth(1)?.parse().ok()
}

/// The first ancestor of `p` that is init, when `p` does not descend from
/// `pid`; None when it does (or `p` is gone meanwhile).
fn ancestor_outside(p: u32, pid: u32) -> Option<u32> {
    let mut at = p;
    for _ in 0..16 {
        match parent_of(at)? {
            pp if pp == pid => return None,
            0 | 1 => return Some(1),
            pp => at = pp,
        }
    }
    None
}

#[test]
fn what_a_command_check_leaves_behind_is_killed_now_and_at_exit() {
    // `setsid` leaves its own process group: the group kill misses it. The
    // first forks (`-f`) and returns, the second holds the check until its
    // timeout.
    let marker = format!("3600.{}", std::process::id() % 100_000 + 11);
    let spec = format!(
        "command=/usr/bin/setsid -f /bin/sleep {marker} && /usr/bin/setsid /bin/sleep {marker}:timeout=300ms:interval=200ms:rise=1:fall=1"
    );
    let a = Backend::tagged("A");
    let b = start(&["-m", &spec], &[chan(a.port())]);
    let pid = b.pid();
    let leftovers = || -> Vec<u32> {
        procs_with(&marker)
            .into_iter()
            .filter(|&p| p != pid)
            .collect()
    };
    // Checks run every 200 ms: without the sweep 15 sleeps pile up in 3 s.
    let t0 = Instant::now();
    let mut most = 0;
    let mut seen = 0;
    while t0.elapsed() < Duration::from_secs(3) {
        let now = leftovers();
        seen += now.len();
        most = most.max(now.len());
        for &p in &now {
            // Re-parented to balance (a subreaper), not to init (or still
            // below the check's own shell or setsid): walk up the parents
            // now (the snapshot above may be older than a fork or exit).
            if let Some(root) = ancestor_outside(p, pid) {
                panic!("leftover {p} is outside balance's tree (up to {root})");
            }
        }
        thread::sleep(Duration::from_millis(50));
    }
    assert!(seen > 0, "the check never ran: {}", b.stderr());
    assert!(most <= 6, "{most} leftover sleeps at once");
    assert!(zombie_children(pid) <= 2, "zombies pile up");
    b.terminate();
    assert!(
        wait_until("leftovers gone", Duration::from_secs(3), || leftovers()
            .is_empty())
        .is_ok(),
        "survived balance's exit: {:?}",
        leftovers()
    );
}

#[test]
fn passive_detection_spares_the_second_client_a_blackholed_primary() {
    let bh = Blackhole::new();
    let bk = Backend::tagged("B");
    // Scheduled probes are rare here: the client's failed connect counts as
    // the second failure and takes the primary down at once.
    let b = start(
        &["-t", "1", "-m", "connect:timeout=0.3:interval=30s:fall=2"],
        &[chan(bh.port()), "!".into(), chan(bk.port())],
    );
    let t0 = Instant::now();
    assert_eq!(ask(b.addr).unwrap(), "B");
    let first = t0.elapsed();
    let t1 = Instant::now();
    assert_eq!(ask(b.addr).unwrap(), "B");
    let second = t1.elapsed();
    assert!(first >= Duration::from_millis(800), "first {first:?}");
    assert!(
        second < stretched(Duration::from_millis(500)),
        "second {second:?} (first {first:?})"
    );
}

#[test]
fn race_serves_the_first_client_fast_despite_a_blackholed_primary() {
    let bh = Blackhole::new();
    let bk = Backend::tagged("B");
    let b = start(
        &["-t", "3", "--race", "200ms"],
        &[chan(bh.port()), "!".into(), chan(bk.port())],
    );
    let t0 = Instant::now();
    assert_eq!(ask(b.addr).unwrap(), "B");
    let took = t0.elapsed();
    assert!(took < stretched(Duration::from_millis(1000)), "{took:?}");
}

#[test]
fn spin_holds_the_client_until_a_backend_appears() {
    let port = free_port(LOCALHOST_V4);
    let b = start(
        &[
            "--spin",
            "8s",
            "-m",
            "connect:timeout=0.5:interval=200ms:rise=1:fall=1",
        ],
        &[chan(port)],
    );
    assert!(
        b.wait_log("channel down", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let mut c = TcpStream::connect(b.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_millis(1000)))
        .unwrap();
    let mut buf = [0u8; 8];
    // Held: neither served nor closed.
    assert!(
        matches!(c.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::WouldBlock || e.kind() == std::io::ErrorKind::TimedOut)
    );
    let t0 = Instant::now();
    let _a = Backend::tagged_at(local(port), "A").unwrap();
    c.set_read_timeout(Some(Duration::from_secs(8))).unwrap();
    assert_eq!(read_line(&mut c).unwrap(), "A");
    assert!(
        t0.elapsed() < stretched(Duration::from_secs(3)),
        "{:?}",
        t0.elapsed()
    );
}

#[test]
fn spin_closes_the_client_after_its_limit_when_nothing_comes_back() {
    let port = free_port(LOCALHOST_V4);
    let b = start(
        &["--spin", "1s", "-m", "connect:interval=200ms:fall=1"],
        &[chan(port)],
    );
    assert!(
        b.wait_log("channel down", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let t0 = Instant::now();
    let r = ask(b.addr);
    let took = t0.elapsed();
    assert!(r.is_err(), "{r:?}");
    assert!(
        took >= Duration::from_millis(800) && took < stretched(Duration::from_secs(4)),
        "{took:?}"
    );
}

#[test]
fn without_m_a_soft_disabled_channel_comes_back_by_itself() {
    // -a disables at once on a failed connect; the implicit recovery monitor
    // (connect, every 2 s, rise 2) brings the channel back.
    let port = free_port(LOCALHOST_V4);
    let bk = Backend::tagged("B");
    let b = start(&["-a"], &[chan(port), "!".into(), chan(bk.port())]);
    assert_eq!(ask(b.addr).unwrap(), "B");
    assert!(b.has("channel down"), "{}", b.stderr());
    let _a = Backend::tagged_at(local(port), "A").unwrap();
    assert!(
        b.wait_log("channel up (ENA)", 1, Duration::from_secs(10)),
        "{}",
        b.stderr()
    );
    assert_eq!(ask(b.addr).unwrap(), "A");
}

#[test]
fn on_up_shutdown_backup_closes_backup_sessions_when_the_primary_returns() {
    let a = Backend::tagged("A");
    let bk = Backend::tagged_on(LOCAL2.into(), "B");
    let status = Arc::new(AtomicU16::new(503));
    let side_a = http_server(Arc::clone(&status), "");
    let side = side_a.port();
    let _side_b = http_server_on(LOCAL2.into(), side, Arc::new(AtomicU16::new(200)), "");
    let spec = format!("http=/:port={side}:interval=200ms:rise=1:fall=1:on-up=shutdown-backup");
    let b = start(
        &["-m", &spec],
        &[
            chan(a.port()),
            "!".into(),
            format!("127.0.0.2:{}", bk.port()),
        ],
    );
    assert!(
        b.wait_log(
            "channel down (dis): http: HTTP 503",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        b.stderr()
    );
    let (mut on_b, tag) = session(&b);
    assert_eq!(tag, "B");
    assert!(alive(&mut on_b));
    status.store(200, SeqCst);
    assert!(
        b.wait_log("channel up (ENA)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let t0 = Instant::now();
    assert!(
        !alive(&mut on_b),
        "backup session survived on-up=shutdown-backup"
    );
    assert!(t0.elapsed() < stretched(Duration::from_secs(2)));
    assert_eq!(ask(b.addr).unwrap(), "A");
}

#[test]
fn manual_failback_keeps_traffic_on_the_backup_until_the_failback_command() {
    let a = Backend::tagged("A");
    let bk = Backend::tagged("B");
    let dir = TempDir::new("mon-fb");
    let b = Balance::cli(&[chan(a.port()), "!".into(), chan(bk.port())])
        .opts(&[
            "--failback",
            "manual",
            "-m",
            "connect:interval=200ms:rise=1:fall=1",
        ])
        .control(&dir.join("fb.sock"))
        .no_bind()
        .start();
    assert_eq!(ask(b.addr).unwrap(), "A");
    a.stop();
    assert!(
        b.wait_log("channel down (dis)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    assert_eq!(ask(b.addr).unwrap(), "B");
    let a2 = Backend::tagged_at(local(a.port()), "A").unwrap();
    assert!(
        b.wait_log("channel up (ENA)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    for _ in 0..5 {
        assert_eq!(
            ask(b.addr).unwrap(),
            "B",
            "traffic returned without failback"
        );
    }
    let out = b.ctl_out("failback");
    assert!(out.status.success(), "{:?}", out);
    assert_eq!(ask(b.addr).unwrap(), "A");
    drop(a2);
}

#[test]
fn monitor_takes_a_blackholed_primary_down_so_no_client_pays_its_timeout() {
    // With a monitor: D = fall × (interval + timeout) = 3 s.
    let bh = Blackhole::new();
    let bk = Backend::tagged("B");
    let t0 = Instant::now();
    let b = start(
        &[
            "-t",
            "1",
            "-m",
            "connect:timeout=500ms:interval=500ms:fall=3",
        ],
        &[chan(bh.port()), "!".into(), chan(bk.port())],
    );
    assert!(
        b.wait_log(
            "channel down (dis): connect: timeout after 500ms",
            1,
            Duration::from_secs(8)
        ),
        "{}",
        b.stderr()
    );
    let down = t0.elapsed();
    assert!(
        down <= stretched(Duration::from_millis(4500)),
        "down after {down:?}"
    );
    for _ in 0..5 {
        let t = Instant::now();
        assert_eq!(ask(b.addr).unwrap(), "B");
        assert!(
            t.elapsed() < stretched(Duration::from_millis(300)),
            "{:?}",
            t.elapsed()
        );
    }
}

#[test]
fn silent_mysql_primary_goes_down_and_on_down_shutdown_cuts_its_sessions() {
    // A hung mysqld accepts but never greets.
    let (silent, _release) = silent();
    let port = silent.port();
    // The backup is a (fake) MySQL that greets.
    let backup = fake_mysql(Arc::new(FakeMysql::default()));
    let b = start(
        &[
            "--on-down",
            "shutdown",
            "-m",
            "mysql:timeout=500ms:interval=200ms:fall=3",
        ],
        &[chan(port), "!".into(), backup.channel()],
    );
    // A client that reached the silent primary before it was marked down.
    let mut c = TcpStream::connect(b.addr).unwrap();
    c.set_read_timeout(Some(Duration::from_secs(6))).unwrap();
    assert!(
        b.wait_log(
            "channel down (dis): mysql: timeout after 500ms",
            1,
            Duration::from_secs(8)
        ),
        "{}",
        b.stderr()
    );
    let t0 = Instant::now();
    let mut buf = [0u8; 8];
    let r = c.read(&mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
    assert!(
        t0.elapsed() < stretched(Duration::from_secs(2)),
        "{:?}",
        t0.elapsed()
    );
    assert!(greets_like_mysql(&b), "new clients do not reach the backup");
}

/// A new client through balance receives a MySQL greeting (protocol 10).
fn greets_like_mysql(b: &Balance) -> bool {
    let Ok(mut c) = TcpStream::connect(b.addr) else {
        return false;
    };
    let _ = c.set_read_timeout(Some(Duration::from_secs(3)));
    let mut hdr = [0u8; 5];
    c.read_exact(&mut hdr).is_ok() && hdr[4] == 0x0a
}

// ----------------------------------------------------------------- redis

fn have_redis() -> bool {
    let ok = common::redis::Redis::available();
    if !ok {
        skip_without("redis-server (Debian package redis-server)");
    }
    ok
}

/// The port of the Redis server that answers through balance at `port`
/// (AUTH, then `INFO server` on one connection).
fn redis_behind(port: u16) -> Option<u16> {
    let mut s = TcpStream::connect(local(port)).ok()?;
    s.set_read_timeout(Some(IO_TIMEOUT)).ok()?;
    s.write_all(b"*2\r\n$4\r\nAUTH\r\n$6\r\ns3cret\r\n*2\r\n$4\r\nINFO\r\n$6\r\nserver\r\n")
        .ok()?;
    let mut buf = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        // Only a whole line: a port cut in two would parse as another.
        let text = String::from_utf8_lossy(&buf);
        if let Some(p) = text
            .split_inclusive("\r\n")
            .filter(|l| l.ends_with("\r\n"))
            .find_map(|l| l.strip_prefix("tcp_port:"))
            .and_then(|p| p.trim().parse().ok())
        {
            return Some(p);
        }
        let n = s.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

fn channel_json(b: &Balance, i: usize) -> (String, String) {
    let j = b.json();
    let c = &j["channels"][i];
    (
        c["state"].as_str().unwrap_or_default().to_string(),
        c["last_reason"].as_str().unwrap_or_default().to_string(),
    )
}

/// A primary and its replica behind `-m redis:role=master` (`A ! B`, with
/// AUTH): clients reach the primary only; after the replica is promoted
/// and the old primary made its replica, the listener serves the new
/// primary within `fall` check intervals.
#[test]
fn redis_role_check_follows_a_promoted_replica_within_fall_intervals() {
    if !have_redis() {
        return;
    }
    let auth = ["--requirepass", "s3cret", "--masterauth", "s3cret"];
    let a = common::redis::Redis::start(&auth);
    let b = common::redis::Redis::start(&auth);
    b.replicate_from(&a);
    let dir = TempDir::new("redis-pw");
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();

    const INTERVAL: Duration = Duration::from_millis(300);
    const FALL: u32 = 3;
    let spec = format!(
        "redis:password_file={}:role=master:interval=300ms:rise=1:fall={FALL}",
        pw.display()
    );
    let bal = Balance::start(&["-m", &spec], &[a.channel(), "!".into(), b.channel()]);
    wait_until(
        "the replica to fail its role check",
        Duration::from_secs(10),
        || channel_json(&bal, 1).0 == "dis",
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", channel_json(&bal, 1)));
    assert_eq!(channel_json(&bal, 0).0, "ENA");
    assert!(
        channel_json(&bal, 1).1.contains("role slave, want master"),
        "{:?}",
        channel_json(&bal, 1)
    );
    for _ in 0..5 {
        assert_eq!(redis_behind(bal.port()), Some(a.port));
    }

    // The operator's (or Sentinel's) promotion: B first, then A follows it.
    b.promote();
    let r = a.cmd(&["REPLICAOF", "127.0.0.1", &b.port.to_string()]);
    assert!(r.starts_with("+OK"), "{r}");
    assert_eq!((a.role(), b.role()), ("slave".into(), "master".into()));
    let promoted = Instant::now();
    // A goes down after FALL failed checks, one interval apart, the first
    // within an interval; B comes up at its first passing check meanwhile.
    // Each check is bounded by its timeout (the interval, at least 500ms);
    // one more second for a loaded machine.
    let limit = INTERVAL * (FALL + 1) + Duration::from_millis(500) + Duration::from_secs(1);
    wait_until("clients to reach the new primary", limit * 3, || {
        redis_behind(bal.port()) == Some(b.port)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?} {:?}",
            channel_json(&bal, 0),
            channel_json(&bal, 1)
        )
    });
    let took = promoted.elapsed();
    eprintln!("listener followed the promotion in {took:?} (bound {limit:?})");
    assert!(took <= limit, "followed after {took:?}, bound {limit:?}");
    assert_eq!(channel_json(&bal, 0).0, "dis");
    assert!(channel_json(&bal, 0).1.contains("role slave, want master"));
    for _ in 0..5 {
        assert_eq!(redis_behind(bal.port()), Some(b.port));
    }
}

/// A wrong password, or none where the server wants one, fails the check
/// with the server's own words.
#[test]
fn redis_check_fails_on_a_wrong_or_missing_password() {
    if !have_redis() {
        return;
    }
    let r = common::redis::Redis::start(&["--requirepass", "s3cret"]);
    let dir = TempDir::new("redis-pw");
    let pw = dir.join("pw");
    std::fs::write(&pw, "wrong\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    for (spec, want) in [
        (
            format!("redis:password_file={}:interval=200ms:fall=1", pw.display()),
            "redis: AUTH: WRONGPASS",
        ),
        (
            "redis:interval=200ms:fall=1".to_string(),
            "redis: PING: NOAUTH",
        ),
    ] {
        let bal = Balance::start(&["-m", &spec], &[r.channel()]);
        wait_until("the check to fail", Duration::from_secs(10), || {
            let (state, reason) = channel_json(&bal, 0);
            state == "dis" && reason.contains(want)
        })
        .unwrap_or_else(|e| panic!("{e}: {:?}", channel_json(&bal, 0)));
    }
}

/// Where `ROLE` is refused (renamed away), the role comes from `INFO
/// replication`.
#[test]
fn redis_role_falls_back_to_info_replication_when_role_is_refused() {
    if !have_redis() {
        return;
    }
    let r = common::redis::Redis::start(&["--rename-command", "ROLE", ""]);
    assert!(r.cmd(&["ROLE"]).starts_with("-ERR"), "ROLE still answers");
    let bal = Balance::start(
        &["-m", "redis:role=replica:interval=200ms:fall=1"],
        &[r.channel()],
    );
    wait_until("the check to fail", Duration::from_secs(10), || {
        let (state, reason) = channel_json(&bal, 0);
        state == "dis" && reason.contains("redis: role master, want replica")
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", channel_json(&bal, 0)));
    let bal = Balance::start(&["-m", "redis:role=master:interval=200ms"], &[r.channel()]);
    wait_until("checks to pass", Duration::from_secs(10), || {
        channel_json(&bal, 0) == ("ENA".to_string(), "ok".to_string())
    })
    .unwrap_or_else(|e| panic!("{e}: {:?}", channel_json(&bal, 0)));
}
