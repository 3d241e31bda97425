//! Real MariaDB servers for the MySQL tests: each on a free loopback port
//! with its own data dir (a copy of one template initialized once per
//! machine by `mariadb-install-db`) and socket, stopped and removed on drop.
//! Statements go through the `mariadb` client over the socket as root.
//!
//! [`Mariadb::available`] says whether the binaries are installed (Debian's
//! `mariadb-server`); tests skip with a message when they are not.

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::thread;
use std::time::{Duration, Instant};

use super::{LOCALHOST_V4, TempDir, free_port, wait_for, wait_until};

const SERVER: &str = "/usr/sbin/mariadbd";
const INSTALL: &str = "mariadb-install-db";
const CLIENT: &str = "mariadb";
/// How long a server may take to accept logins.
const START_LIMIT: Duration = Duration::from_secs(30);

pub struct Mariadb {
    pub port: u16,
    dir: TempDir,
    child: Child,
    pub server_id: u32,
}

impl Mariadb {
    /// Whether this machine can run the servers.
    pub fn available() -> bool {
        Path::new(SERVER).exists()
            && Command::new(CLIENT)
                .arg("--version")
                .stdout(Stdio::null())
                .status()
                .is_ok_and(|s| s.success())
    }

    /// A server with binary logging and GTIDs on (`server_id` distinct per
    /// server of a replication pair), plus `extra` options.
    pub fn start(server_id: u32, extra: &[&str]) -> Mariadb {
        let dir = TempDir::new("mariadb");
        let data = dir.join("data");
        let st = Command::new("cp")
            .arg("-a")
            .arg(template())
            .arg(&data)
            .status()
            .expect("cp");
        assert!(st.success(), "copy the MariaDB template");
        let port = free_port(LOCALHOST_V4);
        let mut cmd = Command::new(SERVER);
        cmd.arg("--no-defaults")
            .arg(format!("--datadir={}", data.display()))
            .arg(format!("--socket={}", dir.join("sock").display()))
            .arg(format!("--pid-file={}", dir.join("pid").display()))
            .arg(format!("--log-error={}", dir.join("err.log").display()))
            .arg(format!("--port={port}"))
            .args(["--bind-address=127.0.0.1", "--skip-networking=0"])
            .args(["--innodb-buffer-pool-size=16M", "--innodb-log-file-size=4M"])
            .args(["--skip-name-resolve", "--log-bin=mb", "--log-slave-updates"])
            .arg(format!("--server-id={server_id}"))
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        // SAFETY: geteuid has no preconditions.
        if unsafe { libc::geteuid() } == 0 {
            cmd.arg("--user=root");
        }
        let child = cmd.spawn().expect("spawn mariadbd");
        let mut m = Mariadb {
            port,
            dir,
            child,
            server_id,
        };
        let ready = wait_until("mariadbd to accept logins", START_LIMIT, || {
            if let Ok(Some(_)) = m.child.try_wait() {
                return true;
            }
            m.try_sql("SELECT 1").is_ok()
        });
        if ready.is_err() || m.child.try_wait().ok().flatten().is_some() {
            panic!("mariadbd did not start:\n{}", m.error_log());
        }
        m
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    pub fn channel(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    pub fn error_log(&self) -> String {
        std::fs::read_to_string(self.dir.join("err.log")).unwrap_or_default()
    }

    /// Run statements as root over the socket: tab-separated rows.
    pub fn try_sql(&self, q: &str) -> Result<String, String> {
        self.client(q, "-N")
    }

    /// The root client over the socket; `names` is `-N` (no column
    /// names) or `-n` (unbuffered, names kept: for `\G`).
    fn client(&self, q: &str, names: &str) -> Result<String, String> {
        let out = Command::new(CLIENT)
            .arg("--no-defaults")
            .arg(format!("--socket={}", self.dir.join("sock").display()))
            .args(["-uroot", names, "-B", "--connect-timeout=5", "-e", q])
            .stdin(Stdio::null())
            .output()
            .map_err(|e| e.to_string())?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
        } else {
            Err(String::from_utf8_lossy(&out.stderr).into_owned())
        }
    }

    /// The rows in table `t.x` (0 when the query fails).
    pub fn rows(&self) -> u64 {
        self.sql("SELECT COUNT(*) FROM t.x").parse().unwrap_or(0)
    }

    pub fn sql(&self, q: &str) -> String {
        self.try_sql(q)
            .unwrap_or_else(|e| panic!("SQL on :{} failed: {q}: {e}", self.port))
    }

    /// One global status counter (`Aborted_connects`…).
    pub fn status(&self, name: &str) -> u64 {
        let row = self.sql(&format!("SHOW GLOBAL STATUS LIKE '{name}'"));
        row.split('\t')
            .nth(1)
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or_else(|| panic!("status {name}: {row:?}"))
    }

    /// `n` sessions logged in over TCP as `user` (no password), each
    /// sleeping in a query until dropped; returns once the server counts
    /// them (a client turned away by a transient connection, such as a
    /// probe taking the last slot, is started again).
    pub fn hold_sessions(&self, user: &str, n: usize) -> Sessions {
        let spawn = || {
            Command::new(CLIENT)
                .args(["--no-defaults", "-h127.0.0.1"])
                .arg(format!("-P{}", self.port))
                .arg(format!("-u{user}"))
                .args(["-e", "SELECT SLEEP(60)"])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .spawn()
                .expect("spawn mariadb client")
        };
        let mut s = Sessions((0..n).map(|_| spawn()).collect());
        let sleeping = format!(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='{user}' AND INFO LIKE 'SELECT SLEEP%'"
        );
        wait_until("the sessions to log in", Duration::from_secs(10), || {
            for c in &mut s.0 {
                if let Ok(Some(_)) = c.try_wait() {
                    *c = spawn();
                }
            }
            self.try_sql(&sleeping)
                .is_ok_and(|v| v.trim() == n.to_string())
        })
        .unwrap();
        s
    }

    /// Make this server a GTID replica of `primary` (user `repl` is created
    /// there) and wait until both replication threads run.
    pub fn replicate_from(&self, primary: &Mariadb) {
        primary.sql(
            "CREATE USER IF NOT EXISTS 'repl'@'127.0.0.1'; \
             GRANT REPLICATION SLAVE ON *.* TO 'repl'@'127.0.0.1'",
        );
        self.sql(&format!(
            "CHANGE MASTER TO MASTER_HOST='127.0.0.1', MASTER_PORT={}, MASTER_USER='repl', \
             MASTER_CONNECT_RETRY=1, MASTER_USE_GTID=slave_pos; START SLAVE",
            primary.port
        ));
        wait_until("replication to run", Duration::from_secs(15), || {
            let st = self.slave_status();
            st.contains("Slave_IO_Running: Yes") && st.contains("Slave_SQL_Running: Yes")
        })
        .unwrap_or_else(|e| panic!("{e}: {}", self.slave_status()));
    }

    /// One `SHOW SLAVE STATUS` column's value (empty if absent or NULL).
    pub fn slave_field(&self, name: &str) -> String {
        let prefix = format!("{name}: ");
        self.slave_status()
            .lines()
            .find_map(|l| l.trim().strip_prefix(&prefix).map(str::to_string))
            .unwrap_or_default()
    }

    /// Wait until this replica has received (not necessarily applied)
    /// everything `primary` wrote.
    pub fn wait_received(&self, primary: &Mariadb) {
        let pos = primary.sql("SELECT @@gtid_binlog_pos");
        wait_until("the replica to receive", Duration::from_secs(15), || {
            self.slave_field("Gtid_IO_Pos") == pos.trim()
        })
        .unwrap_or_else(|e| panic!("{e}: {}", self.slave_status()));
    }

    /// A monitor user without a password that may read replication status
    /// (MariaDB >= 10.5.9: REPLICA MONITOR), created on this server (a
    /// primary: its replicas get it through replication).
    pub fn add_monitor_user(&self, user: &str) {
        self.sql(&format!(
            "CREATE USER IF NOT EXISTS '{user}'@'127.0.0.1'; \
             GRANT REPLICA MONITOR ON *.* TO '{user}'@'127.0.0.1'"
        ));
    }

    /// `SHOW SLAVE STATUS` as `Name: value` lines.
    pub fn slave_status(&self) -> String {
        self.client("SHOW SLAVE STATUS\\G", "-n")
            .unwrap_or_else(|e| e)
    }

    /// Wait until this replica has applied everything `primary` wrote.
    pub fn wait_caught_up(&self, primary: &Mariadb) {
        let pos = primary.sql("SELECT @@gtid_binlog_pos");
        wait_for("the replica to catch up", Duration::from_secs(15), || {
            let r = self.sql(&format!("SELECT MASTER_GTID_WAIT('{pos}', 0.2)"));
            (r.trim() == "0").then_some(())
        })
        .unwrap();
    }

    /// Freeze the server (SIGSTOP): the kernel still completes TCP
    /// handshakes on its listening socket, nothing answers.
    pub fn pause(&self) {
        unsafe { libc::kill(self.pid(), libc::SIGSTOP) };
    }

    pub fn resume(&self) {
        unsafe { libc::kill(self.pid(), libc::SIGCONT) };
    }

    /// `kill -9`, reaped.
    pub fn kill(&mut self) {
        self.resume();
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A session through balance at `port` that sleeps 30 s on the server,
/// returned once `primary` runs it (within `limit`).
pub fn long_session(
    primary: &Mariadb,
    port: u16,
    limit: Duration,
) -> thread::JoinHandle<Result<String, String>> {
    let sleeper = thread::spawn(move || query_at(port, "app", "SELECT SLEEP(30)"));
    wait_until("the long session", limit, || {
        primary.sql(
            "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE INFO LIKE 'SELECT SLEEP%'",
        ) == "1"
    })
    .unwrap();
    sleeper
}

/// After a switchover that ended at `done` from the primary whose ids are
/// `on1` to the one whose ids are `on2`: every acknowledged write (`acked`:
/// id and time) is on the new primary, the old one has nothing the new one
/// lacks, and the old one took nothing acknowledged after `done`.
pub fn assert_switched_cleanly(
    acked: &[(u64, Instant)],
    on1: &BTreeSet<u64>,
    on2: &BTreeSet<u64>,
    done: Instant,
) {
    let lost: Vec<_> = acked.iter().filter(|(id, _)| !on2.contains(id)).collect();
    assert!(lost.is_empty(), "lost writes: {lost:?}");
    assert!(
        on1.is_subset(on2),
        "the old primary has rows the new one lacks"
    );
    let late: Vec<_> = acked
        .iter()
        .filter(|(id, t)| *t > done && on1.contains(id))
        .collect();
    assert!(
        late.is_empty(),
        "acknowledged on the old primary after the switchover: {late:?}"
    );
}

/// Run `q` over TCP at `port` (a server, or balance in front of one) as
/// `user` without a password: tab-separated rows, or the client's error.
pub fn query_at(port: u16, user: &str, q: &str) -> Result<String, String> {
    let out = Command::new(CLIENT)
        .args(["--no-defaults", "-h127.0.0.1", "-N", "-B"])
        .arg(format!("-P{port}"))
        .arg(format!("-u{user}"))
        .args(["--connect-timeout=20", "-e", q])
        .stdin(Stdio::null())
        .output()
        .map_err(|e| e.to_string())?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).trim_end().to_string())
    } else {
        Err(String::from_utf8_lossy(&out.stderr).trim_end().to_string())
    }
}

/// A primary and its GTID replica, with the monitor user `chk` and the
/// client user `app` (all rights on database `t`, table `t.x`) made on the
/// primary and replicated.
pub fn replicated_pair() -> (Mariadb, Mariadb) {
    let m1 = Mariadb::start(1, &[]);
    let m2 = Mariadb::start(2, &[]);
    m2.replicate_from(&m1);
    m1.add_monitor_user("chk");
    m1.sql(
        "CREATE USER 'app'@'127.0.0.1'; GRANT ALL ON t.* TO 'app'@'127.0.0.1'; \
         CREATE DATABASE t; CREATE TABLE t.x (id INT PRIMARY KEY AUTO_INCREMENT, v INT)",
    );
    m2.wait_caught_up(&m1);
    (m1, m2)
}

/// Writers inserting unique ids through balance, each on a new connection,
/// until stopped; the ids acknowledged, in order, with when.
pub struct Writers {
    stop: Arc<AtomicBool>,
    threads: Vec<thread::JoinHandle<Vec<(u64, Instant)>>>,
}

impl Writers {
    pub fn start(port: u16, n: u64) -> Writers {
        Writers::start_from(port, 0, n)
    }

    /// Writers number `k0..k0 + n` (their ids start at `(k + 1) * 1e6`).
    pub fn start_from(port: u16, k0: u64, n: u64) -> Writers {
        let stop = Arc::new(AtomicBool::new(false));
        let threads = (k0..k0 + n)
            .map(|k| {
                let stop = Arc::clone(&stop);
                thread::spawn(move || {
                    let mut acked = Vec::new();
                    let mut i = 0;
                    while !stop.load(SeqCst) {
                        i += 1;
                        let id = (k + 1) * 1_000_000 + i;
                        let q = format!("INSERT INTO t.x (id, v) VALUES ({id}, {k})");
                        if query_at(port, "app", &q).is_ok() {
                            acked.push((id, Instant::now()));
                        }
                    }
                    acked
                })
            })
            .collect();
        Writers { stop, threads }
    }

    pub fn finish(self) -> Vec<(u64, Instant)> {
        self.stop.store(true, SeqCst);
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    }
}

pub fn ids(m: &Mariadb) -> std::collections::BTreeSet<u64> {
    m.sql("SELECT id FROM t.x")
        .lines()
        .filter_map(|l| l.trim().parse().ok())
        .collect()
}

/// `n` sessions logged in as `user` through `port` (balance in front of
/// `server`), idle: each client waits for input that never comes. Returns
/// once `server` counts them.
pub fn idle_sessions(server: &Mariadb, port: u16, user: &str, n: usize) -> Sessions {
    let s = Sessions(
        (0..n)
            .map(|_| {
                Command::new(CLIENT)
                    .args(["--no-defaults", "-h127.0.0.1", "-N", "-B"])
                    .arg(format!("-P{port}"))
                    .arg(format!("-u{user}"))
                    .stdin(Stdio::piped())
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .spawn()
                    .expect("spawn mariadb client")
            })
            .collect(),
    );
    let idle = format!(
        "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE USER='{user}' AND COMMAND='Sleep'"
    );
    wait_until(
        "the idle sessions to log in",
        Duration::from_secs(10),
        || {
            server
                .try_sql(&idle)
                .is_ok_and(|v| v.trim() == n.to_string())
        },
    )
    .unwrap();
    s
}

/// Client processes holding sessions; killed on drop.
pub struct Sessions(Vec<Child>);

impl Drop for Sessions {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Mariadb {
    fn drop(&mut self) {
        self.kill();
    }
}

/// The initialized data dir copied by every server: made once per machine
/// (under the temp dir, keyed by the server binary's size and mtime) by
/// installing into a scratch dir and renaming it into place, so concurrent
/// test processes never see a half-made one.
fn template() -> PathBuf {
    let meta = std::fs::metadata(SERVER).expect("mariadbd");
    let mtime = meta
        .modified()
        .ok()
        .and_then(|t| t.duration_since(std::time::UNIX_EPOCH).ok())
        .map_or(0, |d| d.as_secs());
    let path = std::env::temp_dir().join(format!(
        "balance-test-mariadb-template-{}-{mtime}",
        meta.len()
    ));
    if path.join("mysql").is_dir() {
        return path;
    }
    let scratch = TempDir::new("mariadb-install");
    let data = scratch.join("data");
    let mut cmd = Command::new(INSTALL);
    cmd.arg("--no-defaults")
        .arg(format!("--datadir={}", data.display()))
        .args(["--auth-root-authentication-method=normal", "--skip-test-db"])
        .arg("--innodb-log-file-size=4M")
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    if unsafe { libc::geteuid() } == 0 {
        cmd.arg("--user=root");
    }
    let out = cmd.output().expect("run mariadb-install-db");
    assert!(
        out.status.success(),
        "mariadb-install-db failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // Another process may have won the race: either way one template stays.
    if std::fs::rename(&data, &path).is_err() {
        assert!(path.join("mysql").is_dir(), "MariaDB template at {path:?}");
    }
    path
}

/// Sessions through balance that each stay logged in and write in
/// transactions (`BEGIN; INSERT; COMMIT`), one at a time, an id
/// acknowledged when the `SELECT` after its `COMMIT` answers. A session
/// that loses its connection starts a new one (as an application's pool
/// does).
pub struct SessionWriters {
    stop: Arc<AtomicBool>,
    pids: Arc<Vec<std::sync::atomic::AtomicI32>>,
    threads: Vec<thread::JoinHandle<Vec<(u64, Instant)>>>,
}

impl SessionWriters {
    /// `n` sessions numbered `k0..k0 + n` (their ids start at
    /// `(k + 1) * 1e6`, as [`Writers`]').
    pub fn start(port: u16, k0: u64, n: u64) -> SessionWriters {
        use std::io::{BufRead, BufReader, Write};
        let stop = Arc::new(AtomicBool::new(false));
        let pids: Arc<Vec<_>> = Arc::new(
            (0..n)
                .map(|_| std::sync::atomic::AtomicI32::new(0))
                .collect(),
        );
        let threads = (0..n)
            .map(|j| {
                let (stop, pids) = (Arc::clone(&stop), Arc::clone(&pids));
                let k = k0 + j;
                thread::spawn(move || {
                    let mut acked = Vec::new();
                    let mut i = 0;
                    while !stop.load(SeqCst) {
                        let Ok(mut child) = Command::new(CLIENT)
                            .args(["--no-defaults", "-h127.0.0.1", "-N", "-B", "-n"])
                            .arg(format!("-P{port}"))
                            .args(["-uapp", "--disable-reconnect", "--connect-timeout=20"])
                            .stdin(Stdio::piped())
                            .stdout(Stdio::piped())
                            .stderr(Stdio::null())
                            .spawn()
                        else {
                            break;
                        };
                        pids[j as usize].store(child.id() as i32, SeqCst);
                        let mut input = child.stdin.take().expect("stdin");
                        let mut output = BufReader::new(child.stdout.take().expect("stdout"));
                        while !stop.load(SeqCst) {
                            i += 1;
                            let id = (k + 1) * 1_000_000 + i;
                            let q = format!(
                                "BEGIN; INSERT INTO t.x (id, v) VALUES ({id}, {k}); COMMIT; SELECT {id};\n"
                            );
                            if input.write_all(q.as_bytes()).is_err() {
                                break;
                            }
                            let mut line = String::new();
                            match output.read_line(&mut line) {
                                Ok(n) if n > 0 && line.trim() == id.to_string() => {
                                    acked.push((id, Instant::now()))
                                }
                                _ => break,
                            }
                        }
                        drop(input);
                        let _ = child.kill();
                        let _ = child.wait();
                    }
                    acked
                })
            })
            .collect();
        SessionWriters {
            stop,
            pids,
            threads,
        }
    }

    /// Stop (a session blocked on a hung server is killed) and return the
    /// ids acknowledged, with when.
    pub fn finish(self) -> Vec<(u64, Instant)> {
        self.stop.store(true, SeqCst);
        for p in self.pids.iter() {
            let pid = p.load(SeqCst);
            if pid > 0 {
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        self.threads
            .into_iter()
            .flat_map(|t| t.join().unwrap_or_default())
            .collect()
    }
}
