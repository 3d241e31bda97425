//! MySQL failover on real MariaDB servers (`tests/common/mariadb.rs`):
//! health a hung server cannot fool, busy is not dead, the monitor login,
//! role and lag. Every test skips (with a message) when MariaDB is not
//! installed. Plus the `--race` accounting, which needs no server.

mod common;

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use common::mariadb::Mariadb;
use common::*;

fn have_mariadb() -> bool {
    let ok = Mariadb::available();
    if !ok {
        eprintln!("skipped: MariaDB (Debian package mariadb-server) is not installed");
    }
    ok
}

/// The monitor user: no password, no privileges.
fn add_check_user(m: &Mariadb) {
    m.sql("CREATE USER IF NOT EXISTS 'chk'@'127.0.0.1'");
}

/// Read a MySQL greeting's first bytes through balance: the port of the
/// server that answered is not in it, so return the raw bytes' length.
fn greeted(addr: std::net::SocketAddr, limit: Duration) -> bool {
    let Ok(mut s) = try_connect(addr, limit) else {
        return false;
    };
    let mut b = [0u8; 16];
    matches!(s.read(&mut b), Ok(n) if n > 4)
}

/// Clients connecting through balance every few milliseconds until dropped
/// (each reads a little of the greeting, briefly, then leaves).
struct Traffic {
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Traffic {
    fn start(addr: std::net::SocketAddr) -> Traffic {
        let stop = Arc::new(AtomicBool::new(false));
        let s2 = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            while !s2.load(SeqCst) {
                if let Ok(c) = TcpStream::connect_timeout(&addr, Duration::from_millis(500)) {
                    let _ = c.set_read_timeout(Some(Duration::from_millis(100)));
                    let mut b = [0u8; 4];
                    let _ = (&c).read(&mut b);
                }
                thread::sleep(Duration::from_millis(20));
            }
        });
        Traffic {
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Traffic {
    fn drop(&mut self) {
        self.stop.store(true, SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

// ------------------------------------------------------- item 6: hung servers

#[test]
fn a_hung_primary_goes_down_while_clients_keep_connecting() {
    if !have_mariadb() {
        return;
    }
    let m1 = Mariadb::start(1, &[]);
    let m2 = Mariadb::start(2, &[]);
    add_check_user(&m1);
    add_check_user(&m2);
    let b = Balance::cli(&[m1.channel(), "!".into(), m2.channel()])
        .opts(&["-m", "mysql:user=chk:interval=200ms:rise=2:fall=3"])
        .no_bind()
        .start();
    assert!(greeted(b.addr, Duration::from_secs(5)));
    let _traffic = Traffic::start(b.addr);
    // SIGSTOP: the kernel still completes every client's TCP handshake,
    // which must not count as health; the probe's own timeout (its
    // interval, at least 500 ms) is not the 5 s client connect timeout.
    let t0 = Instant::now();
    m1.pause();
    let down = b.wait_log(
        "channel down (dis): mysql: timeout after 500ms",
        1,
        Duration::from_secs(6),
    );
    m1.resume();
    assert!(down, "hung primary never marked down:\n{}", b.stderr());
    let took = t0.elapsed();
    assert!(took < Duration::from_secs(4), "took {took:?}");
    m1.pause();
    assert!(
        greeted(b.addr, Duration::from_secs(3)),
        "new clients reach the backup"
    );
    m1.resume();
}

#[test]
fn connects_abandoned_by_the_race_count_against_the_channel() {
    // A blackholed primary: each client's connect is overtaken by the race
    // and abandoned; that is a failure (not free), so after `fall` of them
    // the primary is down and clients stop paying the race delay.
    let hole = Blackhole::new();
    let backup = Backend::tagged("B");
    let b = Balance::cli(&[hole.channel(), "!".into(), backup.channel()])
        .opts(&["--race", "300ms", "-t", "5"])
        .no_bind()
        .start();
    for _ in 0..3 {
        assert_eq!(ask(b.addr).unwrap(), "B");
    }
    assert!(
        b.wait_log(
            "channel down (dis): connect: connect abandoned",
            1,
            Duration::from_secs(3)
        ),
        "{}",
        b.stderr()
    );
    let t = Instant::now();
    assert_eq!(ask(b.addr).unwrap(), "B");
    assert!(
        t.elapsed() < Duration::from_millis(250),
        "still paid the race: {:?}",
        t.elapsed()
    );
}

// ------------------------------------------------------ item 7: busy is not dead

/// The channel (index in `show json`) that served one new client, which
/// reads the greeting and leaves.
fn served_by(b: &Balance) -> usize {
    let totals = |b: &Balance| -> Vec<u64> {
        let j = b.json();
        j["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["totalc"].as_u64().unwrap())
            .collect()
    };
    let before = totals(b);
    assert!(greeted(b.addr, Duration::from_secs(3)), "no greeting");
    let after = totals(b);
    (0..after.len())
        .find(|&i| after[i] > before[i])
        .expect("some channel served")
}

#[test]
fn a_full_primary_is_busy_not_down_and_spills_only_with_maxc() {
    if !have_mariadb() {
        return;
    }
    let m1 = Mariadb::start(1, &["--max-connections=10"]);
    let m2 = Mariadb::start(2, &[]);
    add_check_user(&m1);
    add_check_user(&m2);
    let dir = TempDir::new("my-full");
    let mon = ["-m", "mysql:user=chk:interval=200ms:rise=2:fall=2"];
    let plain = Balance::cli(&[m1.channel(), "!".into(), m2.channel()])
        .opts(&mon)
        .control(&dir.join("plain.sock"))
        .no_bind()
        .start();
    // `maxc` set on the primary: the operator asked for spilling.
    let spill = Balance::cli(&[format!("{}:100", m1.channel()), "!".into(), m2.channel()])
        .opts(&mon)
        .control(&dir.join("spill.sock"))
        .no_bind()
        .start();
    assert_eq!(served_by(&plain), 0);
    // max_connections sessions: the probe's login gets error 1040.
    let held = m1.hold_sessions("chk", 10);
    for b in [&plain, &spill] {
        assert!(
            b.wait_log(
                "channel full (not down): mysql: MySQL error 1040",
                1,
                Duration::from_secs(5)
            ),
            "{}",
            b.stderr()
        );
    }
    // Several more probes: still full, never down.
    wait_until("more full checks", Duration::from_secs(5), || {
        plain.json()["channels"][0]["checks_full"].as_u64() >= Some(4)
    })
    .unwrap();
    assert!(!plain.has("channel down"), "{}", plain.stderr());
    let ch = &plain.json()["channels"][0];
    assert_eq!(ch["state"], "ENA", "{ch}");
    assert_eq!(ch["full"], true, "{ch}");
    // Without maxc new clients stay on the primary (its own 1040, as they
    // would get without balance); with maxc they spill to the backup.
    assert_eq!(served_by(&plain), 0);
    assert_eq!(served_by(&spill), 1);
    let metrics = plain.ctl("show json");
    assert!(metrics.contains("\"checks_full\""), "{metrics}");
    drop(held);
    for b in [&plain, &spill] {
        assert!(
            b.wait_log("channel no longer full", 1, Duration::from_secs(5)),
            "{}",
            b.stderr()
        );
    }
    assert_eq!(served_by(&spill), 0);
    assert!(!spill.has("channel down"), "{}", spill.stderr());
}

// --------------------------------------------------- item 1: the monitor login

fn password_file(dir: &TempDir, name: &str, pw: &str, mode: u32) -> String {
    use std::os::unix::fs::PermissionsExt;
    let p = dir.join(name);
    std::fs::write(&p, format!("{pw}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(mode)).unwrap();
    p.display().to_string()
}

#[test]
fn password_login_aborts_no_connection_and_a_wrong_password_fails() {
    if !have_mariadb() {
        return;
    }
    let m = Mariadb::start(1, &[]);
    m.sql(
        "CREATE USER 'mon'@'127.0.0.1' IDENTIFIED VIA mysql_native_password USING PASSWORD('s3cret')",
    );
    let dir = TempDir::new("my-pw");
    let good = password_file(&dir, "good", "s3cret", 0o600);
    let bad = password_file(&dir, "bad", "nope", 0o600);
    let open = password_file(&dir, "open", "s3cret", 0o644);
    // A group/world-readable file is refused with one line, nothing runs.
    let spec = format!("mysql:user=mon:password_file={open}");
    let port = free_port(LOCALHOST_V4).to_string();
    let (code, err) = run_to_exit(
        &["-f", "-m", &spec, &port, &m.channel()],
        Duration::from_secs(10),
    );
    assert_ne!(code, Some(0));
    assert!(err.contains("readable by group or others"), "{err}");
    assert_eq!(err.trim().lines().count(), 1, "{err}");
    let before = m.status("Aborted_connects");
    let spec = format!("mysql:user=mon:password_file={good}:interval=100ms:fall=1");
    let b = Balance::cli(&[m.channel()])
        .opts(&["-m", &spec])
        .no_bind()
        .start();
    let dir2 = TempDir::new("my-pw2");
    let spec_bad = format!("mysql:user=mon:password_file={bad}:interval=100ms:fall=1");
    let wrong = Balance::cli(&[m.channel()])
        .opts(&["-m", &spec_bad])
        .control(&dir2.join("c.sock"))
        .no_bind()
        .start();
    assert!(
        wrong.wait_log(
            "channel down (dis): mysql: MySQL error 1045",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        wrong.stderr()
    );
    drop(wrong);
    // Many good probes: none fails, none aborts a connection.
    wait_until("20 probes", Duration::from_secs(10), || {
        b.count("check failed") == 0 && m.status("Connections") >= 25
    })
    .unwrap();
    assert!(!b.has("channel down"), "{}", b.stderr());
    // The wrong password's failed logins are aborted connects; the good
    // ones added none.
    let after = m.status("Aborted_connects");
    let wrong_ones = after - before;
    let conns = m.status("Connections");
    wait_until("more good probes", Duration::from_secs(5), || {
        m.status("Connections") >= conns + 10
    })
    .unwrap();
    assert_eq!(
        m.status("Aborted_connects"),
        after,
        "good probes aborted (wrong ones: {wrong_ones})"
    );
}
