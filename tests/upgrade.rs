//! `balance -c upgrade`: a new binary takes over the listening sockets,
//! the control socket and the operator state; the old process drains. A
//! refused upgrade (missing binary, crash, rejected configuration) leaves
//! the old process serving as if nothing happened. Under load, nothing is
//! refused, reset or lost.

use crate::common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::*;

/// How long an idle old process may take to exit after a hand-over (it
/// waits for the operator's answer to be written, at most 2 s).
const OLD_EXIT: Duration = Duration::from_secs(5);
/// What a successful `upgrade` answers within (the product's bound on the
/// hand-over is 30 s; a debug binary starts in well under a second).
const UPGRADE_LIMIT: Duration = Duration::from_secs(30);

/// Successors are not the harness's children: each still running at the
/// end of a test is killed.
#[derive(Default)]
struct Successors(Mutex<Vec<u32>>);

impl Successors {
    fn push(&self, pid: u32) {
        self.0.lock().unwrap().push(pid);
    }
}

impl Drop for Successors {
    fn drop(&mut self) {
        for &pid in self.0.lock().unwrap().iter() {
            if !exited(pid) {
                kill(pid, libc::SIGKILL);
            }
        }
    }
}

fn echo_backend() -> Backend {
    Backend::spawn(LOCALHOST_V4, |mut s| echo(&mut s))
}

/// `-c CMD` through the control socket: Ok(stdout) or Err(stdout+stderr).
fn ctl(b: &Balance, cmd: &str) -> Result<String, String> {
    let out = b.ctl_out(cmd);
    let text = String::from_utf8_lossy(&out.stdout).to_string();
    if out.status.success() {
        Ok(text)
    } else {
        Err(format!("{text}{}", String::from_utf8_lossy(&out.stderr)))
    }
}

/// `upgrade [PATH]`: the new pid, or the refusal.
fn upgrade(b: &Balance, cmd: &str) -> Result<u32, String> {
    let t = Instant::now();
    let text = ctl(b, cmd)?;
    assert!(
        t.elapsed() < stretched(UPGRADE_LIMIT),
        "upgrade took {:?}",
        t.elapsed()
    );
    text.split_whitespace()
        .skip_while(|w| *w != "pid")
        .nth(1)
        .and_then(|p| p.parse().ok())
        .ok_or_else(|| format!("no pid in {text:?}"))
}

/// The pid in a refusal's `(pid N: ...)`.
fn refused_pid(why: &str) -> Option<u32> {
    let at = why.find("(pid ")?;
    why[at + 5..]
        .split(|c: char| !c.is_ascii_digit())
        .next()?
        .parse()
        .ok()
}

fn exe_of(pid: u32) -> String {
    std::fs::read_link(format!("/proc/{pid}/exe"))
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn roundtrip(s: &mut TcpStream, msg: &[u8]) {
    echo_roundtrip(s, msg).expect("live connection still echoes");
}

#[test]
fn upgrade_runs_the_binary_now_installed_and_carries_operator_state() {
    let (a, c) = (echo_backend(), echo_backend());
    let dir = TempDir::new("upgrade-installed");
    // The instance runs a copy of balance, as if installed there.
    let installed = dir.join("balance");
    std::fs::copy(BIN, &installed).unwrap();
    let ctl_sock = dir.join("c.sock");
    let b = Balance::cli(&[a.channel(), c.channel()])
        .wrapper(&[
            "sh",
            "-c",
            r#"shift; exec "$0" "$@""#,
            installed.to_str().unwrap(),
        ])
        .opts(&[
            "--grace",
            "30s",
            "--pidfile",
            dir.join("b.pid").to_str().unwrap(),
        ])
        .control(&ctl_sock)
        .metrics()
        .start();
    let successors = Successors::default();
    let old = b.pid();
    let pidfile = || std::fs::read_to_string(dir.join("b.pid")).unwrap_or_default();
    assert_eq!(pidfile().trim(), old.to_string());
    assert_eq!(exe_of(old), installed.display().to_string());
    ctl(&b, "disable 1").unwrap();
    let mut live = b.connect();
    roundtrip(&mut live, b"before");
    // A new binary is installed over the old one (a new inode).
    let fresh = dir.join("balance.new");
    std::fs::copy(BIN, &fresh).unwrap();
    std::fs::rename(&fresh, &installed).unwrap();
    assert!(exe_of(old).ends_with("(deleted)"), "{}", exe_of(old));

    let new = upgrade(&b, "upgrade").unwrap();
    successors.push(new);
    assert_ne!(new, old);
    assert_eq!(
        exe_of(new),
        installed.display().to_string(),
        "the new file runs"
    );
    // The operator's change came along; the new process answers.
    let show = ctl(&b, "show").unwrap();
    let row = show
        .lines()
        .find(|l| l.contains(&c.port().to_string()))
        .unwrap_or_else(|| panic!("{show}"));
    assert!(row.contains("DIS"), "{show}");
    // The pidfile (its lock came along) and the metrics socket are the
    // new process's.
    assert_eq!(pidfile().trim(), new.to_string());
    assert!(scrape(b.metrics_port()).contains("balance_build_info"));
    assert!(
        b.has(&format!("upgrade: pid {new} serves now")),
        "{}",
        b.stderr()
    );
    // The old process keeps its live connection, then exits once it ends.
    roundtrip(&mut live, b"after");
    let mut fresh_conn = b.connect();
    roundtrip(&mut fresh_conn, b"to the new process");
    drop(fresh_conn);
    assert!(b.try_exit().is_none(), "the old process drains");
    drop(live);
    wait_until("the old process to exit", stretched(OLD_EXIT), || {
        b.try_exit().is_some()
    })
    .unwrap();
    assert_eq!(b.try_exit().and_then(|s| s.code()), Some(0));
    // The control socket is the new process's: still there, still
    // answering, removed when it stops.
    assert!(ctl_sock.exists());
    ctl(&b, "version").unwrap();
    kill(new, libc::SIGTERM);
    wait_until("the new process to exit", stretched(OLD_EXIT), || {
        exited(new)
    })
    .unwrap();
    assert!(
        !ctl_sock.exists(),
        "the successor removes its socket at exit"
    );
    assert!(!dir.join("b.pid").exists(), "and its pidfile");
}

#[test]
fn upgrade_refusals_leave_the_running_process_serving() {
    let a = echo_backend();
    let dir = TempDir::new("upgrade-refused");
    let ch = a.channel();
    let b = Balance::config(1, |p| {
        format!(
            "grace: 30s\nlisteners:\n  - name: t\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - channels: [\"{ch}\"]\n",
            p[0]
        )
    })
    .control(&dir.join("c.sock"))
    .start();
    let _successors = Successors::default();
    let old = b.pid();
    let mut live = b.connect();
    roundtrip(&mut live, b"before");
    let crash = dir.join("crash.sh");
    std::fs::write(&crash, "#!/bin/sh\nkill -SEGV $$\n").unwrap();
    chmod_x(&crash);
    let hang_up = dir.join("exit3.sh");
    std::fs::write(&hang_up, "#!/bin/sh\nexit 3\n").unwrap();
    chmod_x(&hang_up);
    // A binary that knows nothing of the hand-over (an older version).
    let unaware = dir.join("unaware.sh");
    std::fs::write(
        &unaware,
        format!("#!/bin/sh\nunset BALANCE_UPGRADE_FD\nexec {BIN} \"$@\"\n"),
    )
    .unwrap();
    chmod_x(&unaware);
    let good = std::fs::read_to_string(b.config_path()).unwrap();

    let check_serving = |what: &str, live: &mut TcpStream| {
        assert!(b.try_exit().is_none(), "{what}: the old process exited");
        roundtrip(live, what.as_bytes());
        let mut s = b.connect();
        roundtrip(&mut s, b"new connection");
        let out = ctl(&b, "show").unwrap_or_else(|e| panic!("{what}: {e}"));
        assert!(out.contains(&a.port().to_string()), "{what}: {out}");
    };
    let cases: Vec<(&str, String, &str)> = vec![
        (
            "missing binary",
            "upgrade /nonexistent/balance".into(),
            "No such file",
        ),
        (
            "relative path",
            "upgrade bin/balance".into(),
            "absolute path",
        ),
        (
            "crash",
            format!("upgrade {}", crash.display()),
            "killed by signal 11",
        ),
        (
            "exit",
            format!("upgrade {}", hang_up.display()),
            "exited with status 3",
        ),
        (
            "a binary without upgrade",
            format!("upgrade {}", unaware.display()),
            "exited with status 71",
        ),
    ];
    for (what, cmd, expect) in cases {
        let why = upgrade(&b, &cmd).expect_err(what);
        assert!(
            why.contains("upgrade refused") || what == "relative path",
            "{what}: {why}"
        );
        assert!(why.contains(expect), "{what}: {why}");
        if let Some(pid) = refused_pid(&why) {
            assert!(exited(pid), "{what}: the refused process {pid} is gone");
        }
        check_serving(what, &mut live);
    }
    // The new binary rejects the configuration file: its own one-line
    // error is the answer.
    std::fs::write(b.config_path(), format!("{good}bogus_key: 1\n")).unwrap();
    let why = upgrade(&b, "upgrade").expect_err("a bad config file");
    assert!(why.contains("unknown field `bogus_key`"), "{why}");
    assert!(why.contains("exited with status 64"), "{why}");
    check_serving("rejected config", &mut live);
    // ...or a listener the running process does not have.
    let moved = good.replace(&b.port().to_string(), &free_port(LOCALHOST_V4).to_string());
    std::fs::write(b.config_path(), moved).unwrap();
    let why = upgrade(&b, "upgrade").expect_err("a new listener");
    assert!(why.contains("does not listen there"), "{why}");
    check_serving("new listener", &mut live);
    std::fs::write(b.config_path(), &good).unwrap();
    assert_eq!(b.pid(), old);
    assert!(
        b.count("upgrade refused, this process keeps serving") >= 5,
        "{}",
        b.stderr()
    );
}

fn chmod_x(p: &Path) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(p, std::fs::Permissions::from_mode(0o755)).unwrap();
}

/// Bytes a long session sends, as a function of where they are in its
/// stream: a mismatch shows a byte lost, duplicated or reordered.
fn pattern(session: usize, at: u64, buf: &mut [u8]) {
    for (i, b) in buf.iter_mut().enumerate() {
        let x = at + i as u64;
        *b = (x.wrapping_mul(2654435761) >> 7) as u8 ^ session as u8;
    }
}

/// One long session: echo chunks and check each until `stop`, then
/// half-close and read to EOF. Returns the bytes that came back intact.
fn long_session(addr: std::net::SocketAddr, id: usize, stop: &AtomicBool) -> Result<u64, String> {
    let mut s = TcpStream::connect(addr).map_err(|e| format!("session {id}: connect: {e}"))?;
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let (mut out, mut back) = (vec![0u8; 4096], vec![0u8; 4096]);
    let mut at = 0u64;
    while !stop.load(SeqCst) {
        let n = 512 + (id * 97 + at as usize) % 3584;
        pattern(id, at, &mut out[..n]);
        s.write_all(&out[..n])
            .map_err(|e| format!("session {id} at byte {at}: write: {e}"))?;
        s.read_exact(&mut back[..n])
            .map_err(|e| format!("session {id} at byte {at}: read: {e}"))?;
        if back[..n] != out[..n] {
            return Err(format!("session {id}: bytes differ after byte {at}"));
        }
        at += n as u64;
        // A session that talks, not one that floods.
        thread::sleep(Duration::from_millis(2));
    }
    s.shutdown(Shutdown::Write).unwrap();
    match s.read(&mut back) {
        Ok(0) => Ok(at),
        Ok(n) => Err(format!("session {id}: {n} unexpected bytes at the end")),
        Err(e) => Err(format!("session {id}: at the end: {e}")),
    }
}

#[test]
fn twenty_upgrades_under_load_refuse_no_connect_and_lose_no_byte() {
    const UPGRADES: usize = 20;
    const SESSIONS: usize = 50;
    const CHURNERS: usize = 2;
    let a = echo_backend();
    let dir = TempDir::new("upgrade-load");
    let b = Balance::cli(&[a.channel()])
        .opts(&["--grace", "120s"])
        .control(&dir.join("c.sock"))
        .start();
    let successors = Successors::default();
    let addr = b.addr;
    let stop_sessions = Arc::new(AtomicBool::new(false));
    let stop_churn = Arc::new(AtomicBool::new(false));
    let connects = Arc::new(AtomicUsize::new(0));
    let errors: Arc<Mutex<Vec<String>>> = Arc::default();

    // Half the sessions start on the first process, half on the one
    // serving after UPGRADES / 2 upgrades: each drains across later ones.
    let open_sessions = |ids: std::ops::Range<usize>| -> Vec<_> {
        ids.map(|id| {
            let stop = Arc::clone(&stop_sessions);
            thread::spawn(move || long_session(addr, id, &stop))
        })
        .collect()
    };
    let mut sessions = open_sessions(0..SESSIONS / 2);
    let churners: Vec<_> = (0..CHURNERS)
        .map(|id| {
            let (stop, n, errors) = (
                Arc::clone(&stop_churn),
                Arc::clone(&connects),
                Arc::clone(&errors),
            );
            thread::spawn(move || {
                let msg = format!("churn {id}\n");
                while !stop.load(SeqCst) {
                    let r = TcpStream::connect(addr).and_then(|mut s| {
                        s.set_read_timeout(Some(IO_TIMEOUT))?;
                        echo_roundtrip(&mut s, msg.as_bytes())
                    });
                    match r {
                        Ok(()) => {
                            n.fetch_add(1, SeqCst);
                        }
                        Err(e) => errors.lock().unwrap().push(format!("connect: {e}")),
                    }
                }
            })
        })
        .collect();

    // Clients keep connecting between (and during) the upgrades.
    let more_connects = || {
        let seen = connects.load(SeqCst);
        wait_until(
            "clients to connect",
            stretched(Duration::from_secs(10)),
            || connects.load(SeqCst) >= seen + 20,
        )
        .unwrap();
    };
    let t0 = Instant::now();
    let mut pids = vec![b.pid()];
    for i in 0..UPGRADES {
        more_connects();
        if i == UPGRADES / 2 {
            sessions.extend(open_sessions(SESSIONS / 2..SESSIONS));
        }
        let pid = upgrade(&b, "upgrade").unwrap_or_else(|e| panic!("upgrade {i}: {e}"));
        successors.push(pid);
        pids.push(pid);
    }
    more_connects();
    stop_churn.store(true, SeqCst);
    for t in churners {
        t.join().unwrap();
    }
    stop_sessions.store(true, SeqCst);
    let mut bytes = 0u64;
    for t in sessions {
        match t.join().unwrap() {
            Ok(n) => bytes += n,
            Err(e) => errors.lock().unwrap().push(e),
        }
    }
    let errors = errors.lock().unwrap();
    eprintln!(
        "{UPGRADES} upgrades in {:?}: {} connects echoed, {SESSIONS} sessions carried {bytes} bytes each way, {} errors",
        t0.elapsed(),
        connects.load(SeqCst),
        errors.len()
    );
    assert!(
        errors.is_empty(),
        "{} errors: {:?}",
        errors.len(),
        &errors[..errors.len().min(10)]
    );
    assert!(bytes > 0);
    // Each old process exits once its connections ended; the last one serves.
    let last = *pids.last().unwrap();
    for &pid in &pids[..pids.len() - 1] {
        wait_until("an old process to exit", stretched(OLD_EXIT), || {
            exited(pid)
        })
        .unwrap();
    }
    assert!(!exited(last));
    let mut s = b.connect();
    roundtrip(&mut s, b"still serving");
    drop(s);
    kill(last, libc::SIGTERM);
    wait_until("the last process to exit", stretched(OLD_EXIT), || {
        exited(last)
    })
    .unwrap();
}

/// Under systemd (`Type=notify`, the default `NotifyAccess=main`): the old
/// main process names its successor with `MAINPID=`; the successor sends
/// no second `READY=1` and the old one no `STOPPING=1` (the service is not
/// stopping). A datagram socket stands in for systemd's.
#[test]
fn upgrade_tells_systemd_the_new_main_pid() {
    use std::os::unix::net::UnixDatagram;
    let a = echo_backend();
    let dir = TempDir::new("upgrade-notify");
    let notify = dir.join("notify.sock");
    let ns = UnixDatagram::bind(&notify).unwrap();
    ns.set_read_timeout(Some(Duration::from_millis(200)))
        .unwrap();
    let b = Balance::cli(&[a.channel()])
        .control(&dir.join("c.sock"))
        .env("NOTIFY_SOCKET", notify.to_str().unwrap())
        .start();
    let successors = Successors::default();
    let mut heard = Vec::new();
    let mut buf = [0u8; 4096];
    let mut drain = |heard: &mut Vec<String>| {
        while let Ok(n) = ns.recv(&mut buf) {
            heard.push(String::from_utf8_lossy(&buf[..n]).into_owned());
        }
    };
    wait_until("READY=1", stretched(Duration::from_secs(10)), || {
        drain(&mut heard);
        heard.iter().any(|m| m.lines().any(|l| l == "READY=1"))
    })
    .unwrap();
    heard.clear();
    let new = upgrade(&b, "upgrade").unwrap();
    successors.push(new);
    wait_until("the old process to exit", stretched(OLD_EXIT), || {
        b.try_exit().is_some()
    })
    .unwrap();
    drain(&mut heard);
    assert_eq!(heard, vec![format!("MAINPID={new}")], "{heard:?}");
    // The successor is the one systemd now stops: STOPPING=1 comes from it.
    kill(new, libc::SIGTERM);
    wait_until(
        "STOPPING=1 from the new main pid",
        stretched(OLD_EXIT),
        || {
            drain(&mut heard);
            heard.iter().any(|m| m == "STOPPING=1")
        },
    )
    .unwrap();
}

/// A channel the old process found down (here by a refused connect, with
/// no monitor that would find it again) starts down in the new process:
/// no client is sent to it first.
#[test]
fn upgrade_carries_down_marks() {
    let dead = Refused::new();
    let backup = Backend::tagged("B");
    let dir = TempDir::new("upgrade-down");
    let b = Balance::cli(&[dead.channel(), "!".into(), backup.channel()])
        .control(&dir.join("c.sock"))
        .start();
    let successors = Successors::default();
    let state_of = |port: u16| -> String {
        let show = ctl(&b, "show").unwrap();
        let row = show
            .lines()
            .find(|l| l.split_whitespace().nth(5) == Some(&port.to_string()))
            .unwrap_or_else(|| panic!("{show}"))
            .to_string();
        row.split_whitespace()
            .nth(3)
            .unwrap_or_default()
            .to_string()
    };
    wait_until(
        "the refused channel to go down",
        stretched(Duration::from_secs(10)),
        || {
            let _ = ask(b.addr);
            state_of(dead.port()) == "dis"
        },
    )
    .unwrap();
    let new = upgrade(&b, "upgrade").unwrap();
    successors.push(new);
    assert_eq!(state_of(dead.port()), "dis", "{}", b.stderr());
    assert_eq!(state_of(backup.port()), "ENA");
    assert_eq!(ask(b.addr).unwrap(), "B");
}

/// Clients waiting in the listen queue at the hand-over (the old process
/// is at `--max-conns`, so it does not accept them) are accepted and
/// served by the new process: the queue belongs to the socket, which is
/// never closed in between.
#[test]
fn clients_queued_in_the_backlog_at_the_hand_over_are_served_by_the_new_process() {
    const QUEUED: usize = 5;
    let a = echo_backend();
    let dir = TempDir::new("upgrade-backlog");
    let b = Balance::cli(&[a.channel()])
        .opts(&["--max-conns", "2", "--grace", "30s"])
        .control(&dir.join("c.sock"))
        .start();
    let successors = Successors::default();
    let mut held: Vec<TcpStream> = (0..2)
        .map(|i| {
            let mut s = b.connect();
            roundtrip(&mut s, format!("held {i}").as_bytes());
            s
        })
        .collect();
    let mut queued: Vec<TcpStream> = (0..QUEUED)
        .map(|i| {
            let mut s = b.connect();
            s.write_all(format!("queued {i}\n").as_bytes()).unwrap();
            s
        })
        .collect();
    wait_until(
        "the clients to wait in the listen queue",
        stretched(Duration::from_secs(5)),
        || accept_queue(b.port()) == Some(QUEUED),
    )
    .unwrap();
    let new = upgrade(&b, "upgrade").unwrap();
    successors.push(new);
    // The new process (at most 2 at a time) serves each, in turn.
    for (i, s) in queued.iter_mut().enumerate() {
        let want = format!("queued {i}\n");
        let mut back = vec![0u8; want.len()];
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        s.read_exact(&mut back)
            .unwrap_or_else(|e| panic!("queued client {i}: {e}"));
        assert_eq!(back, want.as_bytes());
        s.shutdown(Shutdown::Both).unwrap();
    }
    // The old process still relays its own two.
    for (i, s) in held.iter_mut().enumerate() {
        roundtrip(s, format!("still held {i}").as_bytes());
    }
    assert!(b.try_exit().is_none());
    held.clear();
    wait_until("the old process to exit", stretched(OLD_EXIT), || {
        b.try_exit().is_some()
    })
    .unwrap();
}

/// Fleet mode: the new process joins as a member (`hostname:pid`, or
/// the fixed `id`) and the old one leaves in order (its lease revoked, its
/// known key deleted) once it drains: the fleet counts the same members,
/// none absent, the successor's pid and not the old one's, and the
/// successor follows the fleet.
fn upgrade_in_fleet_mode(fixed_id: bool) {
    use common::etcd::Etcd;
    use common::fleet::{Instances, REACH, serial};
    let _g = serial();
    if !Etcd::available() {
        skip_without("etcd (Debian package etcd-server)");
        return;
    }
    let etcd = Etcd::single();
    let (a, c) = (echo_backend(), echo_backend());
    let e = etcd.endpoint();
    let f = Instances::launch(
        2,
        "upgrade-fleet",
        Duration::ZERO,
        |p| {
            let id = if fixed_id {
                format!("  id: inst-{}\n", p[0])
            } else {
                String::new()
            };
            format!(
                "fleet:\n  endpoints: [\"{e}\"]\n  prefix: /up\n{id}listeners:\n  - name: db\n    bind: \"127.0.0.1:{}\"\n    monitor:\n      interval: 200ms\n      checks:\n        - connect: {{}}\n    groups:\n      - channels: [\"127.0.0.1:{}\"]\n      - channels: [\"127.0.0.1:{}\"]\n",
                p[0],
                a.port(),
                c.port()
            )
        },
        |l| l,
    );
    let members = |b: &Balance| b.ctl("fleet members");
    for b in &f.v {
        wait_until("2 members", REACH, || {
            members(b).contains("2 members, 0 absent")
        })
        .unwrap_or_else(|e| panic!("{e}: {}", members(b)));
    }
    let successors = Successors::default();
    let old = f.v[0].pid();
    let new = upgrade(&f.v[0], "upgrade").unwrap();
    successors.push(new);
    wait_until("the old process to exit", stretched(OLD_EXIT), || {
        f.v[0].try_exit().is_some()
    })
    .unwrap();
    for b in &f.v {
        let r = wait_until("the successor in, the old process out", REACH, || {
            let m = members(b);
            m.contains("2 members, 0 absent")
                && m.contains(&format!("pid {new} "))
                && !m.contains(&format!("pid {old} "))
        });
        assert!(r.is_ok(), "{r:?}: {}", members(b));
    }
    let r = wait_until("the successor to follow the fleet", REACH, || {
        f.v[0].json()["listener"]["fleet"]["role"] != "alone"
    });
    assert!(r.is_ok(), "{r:?}: {}", f.v[0].json());
}

#[test]
fn upgrade_in_fleet_mode_leaves_no_absent_member() {
    upgrade_in_fleet_mode(false);
}

#[test]
fn upgrade_in_fleet_mode_with_a_fixed_id_keeps_the_member() {
    upgrade_in_fleet_mode(true);
}

/// One line to the HAProxy socket, everything it answers until it closes.
fn hx(path: &Path, line: &str) -> std::io::Result<String> {
    let mut s = std::os::unix::net::UnixStream::connect(path)?;
    s.set_read_timeout(Some(IO_TIMEOUT))?;
    s.write_all(format!("{line}\n").as_bytes())?;
    let mut out = String::new();
    s.read_to_string(&mut out)?;
    Ok(out)
}

/// `show info`'s pid.
fn info_pid(info: &str) -> Option<u32> {
    info.lines()
        .find_map(|l| l.strip_prefix("Pid: "))
        .and_then(|p| p.trim().parse().ok())
}

/// The HAProxy socket is handed over like a control socket: the same
/// socket file answers for the new process, a change made through it
/// before is still there, and a client connecting all through the
/// hand-over is never refused.
#[test]
fn upgrade_hands_the_haproxy_socket_over() {
    use std::os::unix::fs::MetadataExt;
    let a = echo_backend();
    let dir = TempDir::new("upgrade-haproxy");
    let hsock = dir.join("haproxy.sock");
    let b = Balance::cli(&[a.channel()])
        .opts(&["--haproxy-socket", hsock.to_str().unwrap()])
        .control(&dir.join("c.sock"))
        .start();
    let successors = Successors::default();
    let old = b.pid();
    let ino = std::fs::metadata(&hsock).unwrap().ino();
    assert_eq!(info_pid(&hx(&hsock, "show info").unwrap()), Some(old));
    assert_eq!(hx(&hsock, "set weight #1/#1 7").unwrap(), "\n");
    assert_eq!(hx(&hsock, "get weight #1/#1").unwrap(), "7 (initial 1)\n\n");
    let mut live = b.connect();
    roundtrip(&mut live, b"before");

    // A client of the HAProxy socket, connecting over and over through
    // the hand-over until the new process answers.
    let stop = Arc::new(AtomicBool::new(false));
    let asked = Arc::new(AtomicUsize::new(0));
    let client = {
        let (hsock, stop, asked) = (hsock.clone(), Arc::clone(&stop), Arc::clone(&asked));
        thread::spawn(move || -> Result<(), String> {
            while !stop.load(SeqCst) {
                let info = hx(&hsock, "show info").map_err(|e| format!("show info: {e}"))?;
                asked.fetch_add(1, SeqCst);
                if info_pid(&info).is_none() && !info.is_empty() {
                    return Err(format!("show info answered {info:?}"));
                }
            }
            Ok(())
        })
    };
    let new = upgrade(&b, "upgrade").unwrap();
    successors.push(new);
    assert_ne!(new, old);
    let r = wait_until(
        "the haproxy socket to answer with the new pid",
        stretched(OLD_EXIT),
        || hx(&hsock, "show info").ok().and_then(|i| info_pid(&i)) == Some(new),
    );
    // The old process relays its connection to the end, then exits.
    roundtrip(&mut live, b"after");
    drop(live);
    wait_until("the old process to exit", stretched(OLD_EXIT), || {
        b.try_exit().is_some()
    })
    .unwrap();
    stop.store(true, SeqCst);
    let client = client.join().unwrap();
    r.unwrap();
    client.unwrap();
    let asked = asked.load(SeqCst);
    eprintln!("show info sessions through the hand-over: {asked}");
    assert!(asked > 0);
    // The same socket file, served (not bound again) by the new process.
    assert_eq!(std::fs::metadata(&hsock).unwrap().ino(), ino);
    assert_eq!(hx(&hsock, "get weight #1/#1").unwrap(), "7 (initial 1)\n\n");
    let mut s = b.connect();
    roundtrip(&mut s, b"new connection");
}

/// The successor's configuration names another HAProxy socket path (or
/// none): it refuses, and the old process keeps serving its socket.
#[test]
fn upgrade_refuses_a_different_haproxy_socket_path() {
    let a = echo_backend();
    let dir = TempDir::new("upgrade-haproxy-moved");
    let hsock = dir.join("haproxy.sock");
    let ch = a.channel();
    let yaml = |h: &Path, p: u16| {
        format!(
            "haproxy_socket: \"{}\"\nlisteners:\n  - name: t\n    bind: \"127.0.0.1:{p}\"\n    groups:\n      - channels: [\"{ch}\"]\n",
            h.display()
        )
    };
    let b = Balance::config(1, |p| yaml(&hsock, p[0]))
        .control(&dir.join("c.sock"))
        .start();
    let _successors = Successors::default();
    let good = std::fs::read_to_string(b.config_path()).unwrap();
    let moved = dir.join("other.sock");
    std::fs::write(b.config_path(), yaml(&moved, b.port())).unwrap();
    let why = upgrade(&b, "upgrade").expect_err("another haproxy socket path");
    assert!(
        why.contains(&format!(
            "--haproxy-socket is {} here but {} in the running process",
            moved.display(),
            hsock.display()
        )),
        "{why}"
    );
    assert!(why.contains("exited with status 64"), "{why}");
    assert!(!moved.exists());
    std::fs::write(b.config_path(), &good).unwrap();
    assert!(b.try_exit().is_none());
    assert_eq!(info_pid(&hx(&hsock, "show info").unwrap()), Some(b.pid()));
    let mut s = b.connect();
    roundtrip(&mut s, b"still here");
}
