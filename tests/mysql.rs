//! MySQL failover on real MariaDB servers (`tests/common/mariadb.rs`):
//! health a hung server cannot fool, busy is not dead, the monitor login,
//! role and lag. Every test skips (with a message) when MariaDB is not
//! installed. Plus the `--race` accounting, which needs no server.

use crate::common;

use std::io::Read;
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use common::mariadb::{Mariadb, Writers, ids, replicated_pair};
use common::*;

fn have_mariadb() -> bool {
    let ok = Mariadb::available();
    if !ok {
        skip_without("MariaDB (Debian package mariadb-server)");
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
    assert!(took < stretched(Duration::from_secs(4)), "took {took:?}");
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
        t.elapsed() < stretched(Duration::from_millis(250)),
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

// ------------------------------------------------------ item 2: role and lag

#[test]
fn read_only_mismatch_lag_and_stopped_replication_fail_with_the_reason() {
    if !have_mariadb() {
        return;
    }
    let (m1, m2) = replicated_pair();
    m2.sql("SET GLOBAL read_only=1");
    let dir = TempDir::new("my-role");
    // Writers: a read-only server in the group is down, with the reason.
    let writer = Balance::cli(&[m1.channel(), m2.channel()])
        .opts(&[
            "-m",
            "mysql:user=chk:read_only=0:interval=200ms:rise=1:fall=1",
        ])
        .control(&dir.join("w.sock"))
        .no_bind()
        .start();
    assert!(
        writer.wait_log(
            "channel down (dis): mysql: read_only is 1, want 0",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        writer.stderr()
    );
    let j = writer.json();
    assert_eq!(j["channels"][0]["state"], "ENA", "{j}");
    assert_eq!(j["channels"][1]["state"], "dis", "{j}");
    assert_eq!(
        j["channels"][1]["last_reason"],
        "mysql: read_only is 1, want 0"
    );
    drop(writer);
    // Readers: the replica, its lag a gauge.
    let reader = Balance::cli(&[m2.channel()])
        .opts(&[
            "-m",
            "mysql:user=chk:read_only=1:max_lag=1s:interval=200ms:rise=1:fall=1",
        ])
        .control(&dir.join("r.sock"))
        .metrics()
        .no_bind()
        .start();
    wait_until("the lag gauge", Duration::from_secs(5), || {
        reader.json()["channels"][0]["lag_seconds"] == 0
    })
    .unwrap_or_else(|e| panic!("{e}: {}", reader.ctl("show json")));
    let text = common::metrics::scrape(reader.metrics_port());
    let labels = format!(
        "listener=\"balance:{}\",group=\"0\",index=\"0\",channel=\"{}\"",
        reader.port(),
        m2.channel()
    );
    let lag = "balance_channel_replication_lag_seconds";
    assert_eq!(common::metrics::sample(&text, lag, &labels), 0.0);
    let catching = "balance_channel_catching_up";
    assert_eq!(common::metrics::sample(&text, catching, &labels), 0.0);
    assert_eq!(common::metrics::promtool_problems(&text), None);
    // Lag above max_lag (the replica applies 3 s late), then back.
    m2.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=3; START SLAVE");
    m1.sql("INSERT INTO t.x (v) VALUES (1)");
    assert!(
        reader.wait_log("channel down (dis): mysql: lag ", 1, Duration::from_secs(6)),
        "{}",
        reader.stderr()
    );
    let j = reader.json();
    let reason = j["channels"][0]["last_reason"].as_str().unwrap_or_default();
    assert!(
        reason.starts_with("mysql: lag ") && reason.ends_with("s > 1s"),
        "{j}"
    );
    assert!(j["channels"][0]["lag_seconds"].as_u64() >= Some(2), "{j}");
    assert!(
        reader.wait_log("channel up (ENA)", 1, Duration::from_secs(8)),
        "{}",
        reader.stderr()
    );
    // Stopped replication fails with its reason.
    m2.sql("STOP SLAVE SQL_THREAD");
    assert!(
        reader.wait_log(
            "channel down (dis): mysql: replication stopped: SQL thread not running",
            1,
            Duration::from_secs(5)
        ),
        "{}",
        reader.stderr()
    );
    assert_eq!(reader.json()["channels"][0]["state"], "dis");
}

// ------------------------------------------------- item 3: the catch-up gate

/// Reader threads: each asks `t.x`'s row count through balance over and
/// over (a new connection each time) until told to stop.
struct Readers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Vec<Result<String, String>>>>,
}

impl Readers {
    fn start(port: u16, n: usize) -> Readers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (0..n)
            .map(|_| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut seen = Vec::new();
                    while !stop.load(SeqCst) {
                        seen.push(common::mariadb::query_at(
                            port,
                            "app",
                            "SELECT COUNT(*) FROM t.x",
                        ));
                    }
                    seen
                })
            })
            .collect();
        Readers { stop, threads }
    }

    /// Every answer each reader got.
    fn finish(self) -> Vec<Result<String, String>> {
        self.stop.store(true, SeqCst);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    }
}

/// Stale reads after a failover: the backup has received rows it has not
/// applied when the primary dies; with `--spin` clients wait for it, then
/// read every row.
fn stale_backup_is_never_read(delayed: bool) {
    let (mut m1, m2) = replicated_pair();
    let dir = TempDir::new("my-gate");
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &[
            "--spin",
            "20s",
            "-m",
            "mysql:user=chk:max_lag=30s:interval=200ms:rise=2:fall=2",
        ],
    );
    let port = b.port();
    assert_eq!(
        common::mariadb::query_at(port, "app", "SELECT COUNT(*) FROM t.x").as_deref(),
        Ok("0")
    );
    if delayed {
        // The SQL thread runs, but applies each event 2 s late.
        m2.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=2; START SLAVE");
    } else {
        m2.sql("STOP SLAVE SQL_THREAD");
    }
    m1.sql("INSERT INTO t.x (v) SELECT seq FROM t.seq_1_to_500");
    m2.wait_received(&m1);
    assert_eq!(m2.sql("SELECT COUNT(*) FROM t.x"), "0");
    m1.kill();
    let readers = Readers::start(port, 3);
    // Clients are held, not sent to the stale backup.
    wait_until("clients held by --spin", Duration::from_secs(5), || {
        b.json()["listener"]["spinning"].as_u64() >= Some(1)
    })
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", b.ctl("show json"), b.stderr()));
    let checks = |b: &Balance| {
        let c = &b.json()["channels"][1];
        c["checks_passed"].as_u64().unwrap_or(0) + c["checks_failed"].as_u64().unwrap_or(0)
    };
    let before = checks(&b);
    if !delayed {
        wait_until(
            "two more checks of the backup",
            Duration::from_secs(5),
            || checks(&b) >= before + 2,
        )
        .unwrap();
        m2.sql("START SLAVE SQL_THREAD");
    }
    wait_until("a read of every row", Duration::from_secs(15), || {
        common::mariadb::query_at(port, "app", "SELECT COUNT(*) FROM t.x").as_deref() == Ok("500")
    })
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", b.ctl("show json"), b.stderr()));
    let seen = readers.finish();
    let stale: Vec<_> = seen.iter().filter(|r| r.as_deref() != Ok("500")).collect();
    assert!(
        stale.is_empty(),
        "stale or failed reads: {stale:?}\n{}",
        b.stderr()
    );
    assert!(!seen.is_empty());
    if delayed {
        assert!(b.has("channel catching up"), "{}", b.stderr());
    }
}

#[test]
fn no_client_reads_a_backup_before_it_applied_what_it_received() {
    if have_mariadb() {
        stale_backup_is_never_read(false);
    }
}

#[test]
fn a_delayed_backup_is_catching_up_not_eligible_until_applied() {
    if have_mariadb() {
        stale_backup_is_never_read(true);
    }
}

// ------------------------------------------------- items 4, 5: switchover

#[test]
fn switchover_under_writes_loses_nothing_and_reports_the_hold() {
    if !have_mariadb() {
        return;
    }
    let (m1, m2) = replicated_pair();
    let dir = TempDir::new("my-switch");
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &[
            "-m",
            "mysql:user=chk:max_lag=30s:interval=200ms:rise=2:fall=2",
        ],
    );
    // The new primary applies 1 s late: the switchover must wait for it.
    m2.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=1; START SLAVE");
    let w = Writers::start(b.port(), 2);
    wait_until("writes on the primary", Duration::from_secs(10), || {
        m1.rows() >= 20
    })
    .unwrap();
    // A long session on the old primary: cut after the grace.
    let port = b.port();
    let sleeper = common::mariadb::long_session(&m1, port, Duration::from_secs(5));
    let asked = Instant::now();
    let reply = b.ctl("switchover 1");
    let done = Instant::now();
    eprintln!("{}", reply.trim());
    assert!(
        reply.contains("switchover from group 0 to group 1 done: clients held "),
        "{reply}\n{}",
        b.stderr()
    );
    assert!(!reply.contains(" 0 sessions ended"), "{reply}");
    assert!(
        sleeper.join().unwrap().is_err(),
        "the long session was not ended"
    );
    // The first read after it sees every write made before it.
    let seen: std::collections::BTreeSet<u64> =
        common::mariadb::query_at(b.port(), "app", "SELECT id FROM t.x")
            .unwrap_or_default()
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect();
    let before: Vec<u64> = m1
        .sql("SELECT id FROM t.x")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect();
    let missing: Vec<_> = before.iter().filter(|id| !seen.contains(id)).collect();
    assert!(
        missing.is_empty(),
        "not visible after the switchover: {missing:?}"
    );
    let after = m2.rows();
    wait_until("writes on the new primary", Duration::from_secs(10), || {
        m2.rows() >= after + 20
    })
    .unwrap();
    let acked = w.finish();
    let (on1, on2) = (ids(&m1), ids(&m2));
    // Every acknowledged write is on the new primary (once: a primary key).
    // Everything the old primary took reached the new one, and the old one
    // took nothing acknowledged after the switchover: never two writers.
    common::mariadb::assert_switched_cleanly(&acked, &on1, &on2, done);
    assert!(acked.iter().any(|(_, t)| *t < asked) && acked.iter().any(|(_, t)| *t > done));
    assert_eq!(b.json()["listener"]["failback_floor"], 1);
}

#[test]
fn a_switchover_to_a_group_that_cannot_catch_up_aborts_and_releases() {
    if !have_mariadb() {
        return;
    }
    let (m1, m2) = replicated_pair();
    let dir = TempDir::new("my-abort");
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &["-m", "mysql:user=chk:interval=200ms:rise=2:fall=2"],
    );
    m2.sql("STOP SLAVE SQL_THREAD");
    m1.sql("INSERT INTO t.x (v) VALUES (1)");
    m2.wait_received(&m1);
    let out = b.ctl_out("switchover 1 500ms");
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("switchover aborted: group not caught up within 500ms")
            && text.contains("1 transactions behind")
            && text.contains("clients released to group 0"),
        "{text}"
    );
    // Clients go on to the old primary; nothing moved.
    assert_eq!(
        common::mariadb::query_at(b.port(), "app", "SELECT COUNT(*) FROM t.x").as_deref(),
        Ok("1")
    );
    assert_eq!(b.json()["listener"]["failback_floor"], 0);
    // Bad input changes nothing.
    for bad in [
        "switchover 0",
        "switchover 7",
        "switchover 1 forever",
        "switchover 1 1s x",
    ] {
        assert!(!b.ctl_out(bad).status.success(), "{bad}");
    }
    assert_eq!(b.json()["listener"]["failback_floor"], 0);
}

// ------------------------------------------------------ fencing a hung primary

#[test]
fn a_hung_primary_is_fenced_before_the_backup_takes_a_write() {
    if !have_mariadb() {
        return;
    }
    let (m1, m2) = replicated_pair();
    let dir = TempDir::new("my-fence");
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &[
            "--spin",
            "20s",
            "-m",
            "mysql:user=chk:max_lag=30s:interval=200ms:rise=2:fall=2",
        ],
    );
    // Two writers on a new connection per insert, four logged-in sessions
    // writing in transactions.
    let w = Writers::start(b.port(), 2);
    let s = common::mariadb::SessionWriters::start(b.port(), 10, 4);
    wait_until("writes on the primary", Duration::from_secs(20), || {
        m1.rows() >= 60
    })
    .unwrap();
    let paused = Instant::now();
    m1.pause();
    // The backup takes writes once the primary is down by its checks
    // (fall 2 × the 500 ms probe timeout) and the backup re-verified.
    let moved = wait_until("writes on the backup", Duration::from_secs(15), || {
        b.json()["listener"]["failovers"].as_u64() >= Some(30)
    });
    let resumed = Instant::now();
    m1.resume();
    moved.unwrap_or_else(|e| panic!("{e}\n{}\n{}", b.json(), b.stderr()));
    // Whatever reached the old primary's socket buffers before the fence
    // runs now (or fails); wait until it has no client session left.
    wait_until(
        "the old primary to drop its sessions",
        Duration::from_secs(15),
        || {
            m1.try_sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='app'")
                .is_ok_and(|n| n.trim() == "0")
        },
    )
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}\n{}",
            m1.try_sql("SELECT ID, HOST, COMMAND, TIME, STATE, INFO FROM information_schema.PROCESSLIST WHERE USER='app'"),
            b.stderr()
        )
    });
    let after = m2.rows();
    wait_until(
        "writes go on on the backup",
        Duration::from_secs(10),
        || m2.rows() >= after + 20,
    )
    .unwrap();
    let serving = common::mariadb::query_at(b.port(), "app", "SELECT @@server_id");
    let mut acked = w.finish();
    acked.extend(s.finish());
    m2.wait_received(&m1);
    let (on1, on2) = (ids(&m1), ids(&m2));
    let acked_ids: std::collections::BTreeSet<u64> = acked.iter().map(|(id, _)| *id).collect();
    eprintln!(
        "acked {} ({} after the pause), on M1 {}, on M2 {}",
        acked.len(),
        acked.iter().filter(|(_, t)| *t > paused).count(),
        on1.len(),
        on2.len()
    );
    // Nothing acknowledged was written on the old primary after it hung:
    // its sessions were reset before the backup took a client.
    let split: Vec<_> = acked
        .iter()
        .filter(|(id, t)| *t > resumed && on1.contains(id))
        .collect();
    assert!(
        split.is_empty(),
        "acknowledged on the hung primary after it resumed: {split:?}\n{}",
        b.stderr()
    );
    // What the old primary took unacknowledged is at most what was in
    // flight: one statement per session and writer.
    let unacked: Vec<_> = on1.iter().filter(|id| !acked_ids.contains(id)).collect();
    assert!(
        unacked.len() <= 6,
        "the old primary ran {} unacknowledged writes: {unacked:?}",
        unacked.len()
    );
    // Every acknowledged row is on the server that serves, and it serves.
    let lost: Vec<_> = acked.iter().filter(|(id, _)| !on2.contains(id)).collect();
    assert!(
        lost.is_empty(),
        "acknowledged but not on the serving backup: {lost:?}"
    );
    assert_eq!(serving.as_deref(), Ok("2"), "{}", b.stderr());
    assert!(b.has("fenced: "), "{}", b.stderr());
    // A late write on the old primary that conflicts with one the backup
    // took breaks the backup's replication: it is the primary now and
    // keeps serving, and nothing switches back to the old one until it is
    // mended.
    let dup = acked
        .iter()
        .rev()
        .map(|(id, _)| *id)
        .find(|id| !on1.contains(id))
        .expect("a write taken by the backup");
    m1.sql(&format!("INSERT INTO t.x (id, v) VALUES ({dup}, 99)"));
    assert!(
        b.wait_log(
            "the serving primary's own replication is broken",
            1,
            Duration::from_secs(10)
        ),
        "{}\n{}",
        m2.slave_status(),
        b.stderr()
    );
    assert_eq!(
        common::mariadb::query_at(b.port(), "app", "SELECT @@server_id").as_deref(),
        Ok("2")
    );
    assert_eq!(b.json()["channels"][1]["state"], "ENA");
    let out = b.ctl_out("switchover 0");
    let text = output_text(&out);
    assert!(
        !out.status.success() && text.contains("replication is broken"),
        "{text}"
    );
}

#[test]
fn a_full_primary_holds_new_clients_with_spin_instead_of_answering_1040() {
    if !have_mariadb() {
        return;
    }
    let m1 = Mariadb::start(1, &["--max-connections=10"]);
    let m2 = Mariadb::start(2, &[]);
    add_check_user(&m1);
    add_check_user(&m2);
    m1.add_monitor_user("chk");
    m2.add_monitor_user("chk");
    let dir = TempDir::new("my-full-spin");
    // A writer listener (max_lag=: fenced): a full primary is neither down
    // nor a reason to write on the backup.
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &[
            "--spin",
            "20s",
            "-m",
            "mysql:user=chk:max_lag=30s:interval=200ms:rise=2:fall=2",
        ],
    );
    let held = m1.hold_sessions("chk", 10);
    assert!(
        b.wait_log("channel full (not down)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let port = b.port();
    let client =
        thread::spawn(move || common::mariadb::query_at(port, "chk", "SELECT @@server_id"));
    wait_until(
        "the client to wait for room",
        Duration::from_secs(5),
        || b.json()["listener"]["spinning"].as_u64() == Some(1),
    )
    .unwrap_or_else(|e| panic!("{e}: {}\n{}", b.json(), b.stderr()));
    drop(held);
    assert_eq!(client.join().unwrap().as_deref(), Ok("1"), "{}", b.stderr());
    let j = b.json();
    assert_eq!(j["channels"][1]["totalc"], 0, "{j}");
    assert!(!b.has("channel down"), "{}", b.stderr());
}

#[test]
fn a_switchover_ends_idle_sessions_at_once_and_a_busy_one_after_its_answer() {
    if !have_mariadb() {
        return;
    }
    let (m1, m2) = replicated_pair();
    let dir = TempDir::new("my-switch-idle");
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &[
            "-m",
            "mysql:user=chk:max_lag=30s:interval=200ms:rise=2:fall=2",
        ],
    );
    // Every session idle: nothing to wait for.
    let idle = common::mariadb::idle_sessions(&m1, b.port(), "app", 4);
    let reply = b.ctl("switchover 1");
    eprintln!("all idle: {}", reply.trim());
    let held = held_ms(&reply);
    assert!(reply.contains(" 4 sessions ended,"), "{reply}");
    assert!(
        held < 300,
        "clients held {held} ms with every session idle: {reply}"
    );
    // The clients wait on their input and learn it only when they next
    // ask; the old primary has no session of theirs left.
    wait_until(
        "the idle sessions gone from the old primary",
        Duration::from_secs(5),
        || m1.sql("SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='app'") == "0",
    )
    .unwrap();
    drop(idle);
    // Back, with one session in the middle of a 1 s query: it gets its
    // answer, then ends; nobody waits for the 2 s grace.
    m1.sql("STOP SLAVE; RESET SLAVE ALL");
    m2.sql("RESET MASTER");
    m1.replicate_from(&m2);
    let port = b.port();
    let busy = thread::spawn(move || {
        common::mariadb::query_at(port, "app", "SELECT SLEEP(1), @@server_id")
    });
    wait_until("the busy session", Duration::from_secs(5), || {
        m2.sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'",
        ) == "1"
    })
    .unwrap();
    let reply = b.ctl("switchover 0");
    eprintln!("one busy: {}", reply.trim());
    let held = held_ms(&reply);
    assert!(reply.contains(" 1 sessions ended,"), "{reply}");
    assert!(!reply.contains("cut"), "{reply}");
    assert!((500..1900).contains(&held), "held {held} ms: {reply}");
    assert_eq!(
        busy.join().unwrap().as_deref(),
        Ok("0\t2"),
        "the busy session got its answer"
    );
}

#[test]
fn a_switchover_without_gtid_positions_is_refused_unless_forced() {
    if !have_mariadb() {
        return;
    }
    let m1 = Mariadb::start(1, &["--skip-log-bin"]);
    let m2 = Mariadb::start(2, &["--skip-log-bin"]);
    add_check_user(&m1);
    add_check_user(&m2);
    let dir = TempDir::new("my-switch-nogtid");
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &["-m", "mysql:user=chk:interval=200ms:rise=2:fall=2"],
    );
    let out = b.ctl_out("switchover 1");
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("switchover refused: group 0 has no GTID position to verify group 1 against"),
        "{text}"
    );
    assert_eq!(b.json()["listener"]["failback_floor"], 0);
    let reply = b.ctl("switchover 1 force");
    assert!(
        reply.contains("switchover from group 0 to group 1 done")
            && reply.contains("unverified (force)"),
        "{reply}"
    );
    assert_eq!(b.json()["listener"]["failback_floor"], 1);
}

/// balance in front of `m1` with `m2` as the backup group, its control
/// socket in `dir`.
fn primary_and_backup(dir: &TempDir, m1: &Mariadb, m2: &Mariadb, opts: &[&str]) -> Balance {
    Balance::cli(&[m1.channel(), "!".into(), m2.channel()])
        .opts(opts)
        .control(&dir.join("c.sock"))
        .no_bind()
        .start()
}

/// The `clients held N ms` of a switchover's reply.
fn held_ms(reply: &str) -> u64 {
    reply
        .split("clients held ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no hold in {reply:?}"))
}

/// `kill -9` of the primary: once the process is gone, every new client
/// gets the backup's greeting, never a reset (its refused connect makes
/// balance try the backup). Clients whose connect reached the dying
/// server's accept queue before the kernel closed its listening socket (a
/// SIGKILLed process frees its memory before its files, and the kernel
/// completes handshakes meanwhile) were accepted by TCP and are reset by
/// the kernel: those are counted and shown, not failed.
#[test]
fn after_kill_9_of_the_primary_no_new_client_gets_a_reset() {
    if !have_mariadb() {
        return;
    }
    let mut m1 = Mariadb::start(1, &[]);
    let m2 = Mariadb::start(2, &[]);
    let b = Balance::start(&["-t", "2"], &[m1.channel(), "!".into(), m2.channel()]);
    assert!(greeted(b.addr, Duration::from_secs(5)));
    let addr = b.addr;
    let stop = Arc::new(AtomicBool::new(false));
    let s2 = Arc::clone(&stop);
    // (connect started, greeted or the error)
    let clients = thread::spawn(move || {
        let mut seen: Vec<(Instant, Result<(), std::io::ErrorKind>)> = Vec::new();
        while !s2.load(SeqCst) {
            let t = Instant::now();
            let r = try_connect(addr, IO_TIMEOUT).and_then(|s| {
                let mut g = [0u8; 16];
                match read_some(&s, &mut g)? {
                    n if n > 4 => Ok(()),
                    _ => Err(std::io::ErrorKind::UnexpectedEof.into()),
                }
            });
            seen.push((t, r.map_err(|e| e.kind())));
        }
        seen
    });
    // Clients before the kill too (an observation window).
    thread::sleep(Duration::from_millis(300));
    let kill_start = Instant::now();
    m1.kill();
    let gone = Instant::now();
    // Clients for a second after the process is gone (an observation
    // window, not a wait for readiness).
    thread::sleep(Duration::from_secs(1));
    stop.store(true, SeqCst);
    let seen = clients.join().unwrap();
    let failed = |v: &[&(Instant, Result<(), std::io::ErrorKind>)]| {
        v.iter().filter(|(_, r)| r.is_err()).count()
    };
    // Started before the process was gone: possibly in flight at the kill.
    let in_flight: Vec<_> = seen.iter().filter(|(t, _)| *t < gone).collect();
    let after: Vec<_> = seen.iter().filter(|(t, _)| *t >= gone).collect();
    eprintln!(
        "kill -9 took {:?}; {} clients before the process was gone, {} failed ({:?}); {} after, {} failed",
        gone - kill_start,
        in_flight.len(),
        failed(&in_flight),
        in_flight
            .iter()
            .filter_map(|(_, r)| r.err())
            .collect::<Vec<_>>(),
        after.len(),
        failed(&after)
    );
    assert!(
        after.len() >= 10,
        "only {} clients after the kill",
        after.len()
    );
    let bad: Vec<_> = after.iter().filter_map(|(_, r)| r.err()).collect();
    assert!(bad.is_empty(), "after the kill: {bad:?}\n{}", b.stderr());
}

#[test]
fn checks_of_a_hung_server_leave_no_aborted_handshake() {
    if !have_mariadb() {
        return;
    }
    let m1 = Mariadb::start(1, &[]);
    add_check_user(&m1);
    let dir = TempDir::new("my-hung-clean");
    let b = Balance::cli(&[m1.channel()])
        .opts(&["-m", "mysql:user=chk:interval=200ms:rise=2:fall=2"])
        .control(&dir.join("c.sock"))
        .no_bind()
        .start();
    wait_until("a passing check", Duration::from_secs(5), || {
        b.json()["channels"][0]["checks_passed"].as_u64() >= Some(2)
    })
    .unwrap();
    let before = m1.status("Aborted_connects");
    m1.pause();
    // Hung for a few check timeouts (500 ms each): each check waits on the
    // one connection the first opened.
    let down = b.wait_log(
        "channel down (dis): mysql: timeout",
        1,
        Duration::from_secs(5),
    );
    let failed = b.json()["channels"][0]["checks_failed"]
        .as_u64()
        .unwrap_or(0);
    wait_until("more failed checks", Duration::from_secs(5), || {
        b.json()["channels"][0]["checks_failed"].as_u64() >= Some(failed + 3)
    })
    .unwrap_or_else(|e| {
        m1.resume();
        panic!("{e}: {}", b.stderr())
    });
    m1.resume();
    assert!(down, "{}", b.stderr());
    assert!(
        b.wait_log("channel up (ENA)", 1, Duration::from_secs(5)),
        "{}",
        b.stderr()
    );
    let checks = b.json()["channels"][0]["checks_failed"]
        .as_u64()
        .unwrap_or(0);
    assert_eq!(
        m1.status("Aborted_connects"),
        before,
        "{checks} failed checks of the hung server aborted handshakes"
    );
}

/// `switchover NAME`: the target group by its name (the default names
/// here), there and back; an unknown name changes nothing.
#[test]
fn a_switchover_names_its_target_group() {
    if !have_mariadb() {
        return;
    }
    let (m1, m2) = replicated_pair();
    let dir = TempDir::new("my-byname");
    let b = primary_and_backup(
        &dir,
        &m1,
        &m2,
        &["-m", "mysql:user=chk:interval=200ms:rise=2:fall=2"],
    );
    let out = b.ctl_out("switchover group9");
    let text = output_text(&out);
    assert!(!out.status.success(), "{text}");
    assert!(text.contains("no such group group9"), "{text}");
    assert_eq!(b.json()["listener"]["failback_floor"], 0);
    m1.sql("INSERT INTO t.x (v) VALUES (1)");
    let reply = b.ctl("switchover group1");
    assert!(
        reply.contains("switchover from group 0 to group 1 done"),
        "{reply}"
    );
    assert_eq!(b.json()["listener"]["failback_floor"], 1);
    let out = b.ctl_out("switchover group1");
    assert!(
        output_text(&out).contains("group 1 is already the active group"),
        "{}",
        output_text(&out)
    );
    let reply = b.ctl("switchover group0 force");
    assert!(
        reply.contains("switchover from group 1 to group 0 done"),
        "{reply}"
    );
    assert_eq!(b.json()["listener"]["failback_floor"], 0);
}
