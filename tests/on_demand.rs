//! Groups started on demand (`on_empty:`) and stopped when idle
//! (`on_idle:`), with real processes: start scripts written here that put
//! a socat echo server in the background (`setsid … &`) and return, stop
//! scripts that kill it by pid, a start that exits 1 and one that hangs.
//! The backend a start script leaves must survive balance's sweep of
//! check leftovers (a command check that leaves a `setsid sleep` behind
//! shows the sweep running) and balance's own exit.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::thread;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::balancer::Balance;
use common::proc::{exited, kill};
use common::run::run_to_exit;
use common::*;

/// The monitor of the on-demand listeners: a channel's state follows its
/// backend within this (rise 1, fall 1).
const INTERVAL: Duration = Duration::from_millis(200);
/// Slack for a process to start or a thread to be scheduled (stretched by
/// the machine's load in `wait_*`).
const SLACK: Duration = Duration::from_secs(3);

fn script(dir: &Path, name: &str, body: &str) -> String {
    let p = dir.join(name);
    std::fs::write(&p, format!("#!/bin/sh\n{body}\n")).unwrap();
    std::fs::set_permissions(&p, std::fs::Permissions::from_mode(0o755)).unwrap();
    p.to_str().unwrap().to_string()
}

/// A start script: counts its runs, records its environment, puts a socat
/// echo server on `port` in a session of its own and returns at once.
fn start_script(dir: &Path, port: u16) -> String {
    let d = dir.display();
    script(
        dir,
        "start.sh",
        &format!(
            "echo run >> {d}/runs\n\
             echo \"$BALANCE_LISTENER|$BALANCE_GROUP|$BALANCE_CHANNELS\" > {d}/env\n\
             setsid socat TCP-LISTEN:{port},bind=127.0.0.1,reuseaddr,fork EXEC:/bin/cat </dev/null >/dev/null 2>&1 &\n\
             echo $! > {d}/backend.pid\n\
             exit 0"
        ),
    )
}

/// A stop script: counts its runs, kills the backend by its pid file.
fn stop_script(dir: &Path) -> String {
    let d = dir.display();
    script(
        dir,
        "stop.sh",
        &format!(
            "echo run >> {d}/stops\n\
             [ -f {d}/backend.pid ] && kill $(cat {d}/backend.pid)\n\
             exit 0"
        ),
    )
}

fn have_socat() -> bool {
    Path::new("/usr/bin/socat").exists()
}

fn lines(p: &Path) -> usize {
    std::fs::read_to_string(p).map_or(0, |s| s.lines().count())
}

fn pid_in(p: &Path) -> Option<u32> {
    std::fs::read_to_string(p).ok()?.trim().parse().ok()
}

/// Gone and reaped: no /proc entry (a zombie still has one).
fn reaped(pid: u32) -> bool {
    !Path::new(&format!("/proc/{pid}")).exists()
}

fn parent(pid: u32) -> Option<u32> {
    let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    s.rsplit_once(')')?
        .1
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Kills the backend recorded in a pid file when dropped (whatever the
/// test's outcome).
struct KillOnDrop(std::path::PathBuf);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = pid_in(&self.0) {
            kill(pid, libc::SIGKILL);
        }
    }
}

/// The monitor block of an on-demand listener.
fn monitor() -> String {
    format!(
        "    monitor:\n      interval: {}ms\n      rise: 1\n      fall: 1\n      checks:\n        - connect: {{ timeout: 1s }}\n",
        INTERVAL.as_millis()
    )
}

/// Wait until channel 0 of the first listener is down (channels start up).
fn wait_down(b: &Balance) {
    wait_down_on(b, b.port());
}

/// Wait until channel 0 of the listener on `port` is down.
fn wait_down_on(b: &Balance, port: u16) {
    wait_until(
        "the on-demand channel to be down",
        SLACK + INTERVAL * 3,
        || {
            let o = b.ctl_out_on(port, "show json");
            serde_json::from_slice::<serde_json::Value>(&o.stdout)
                .is_ok_and(|v| v["channels"][0]["up"] == false)
        },
    )
    .unwrap();
}

/// An on-demand backend's scripts (start on `bport`, stop) and their
/// records (`runs`, `stops`, `backend.pid`) in `dir`; the backend is
/// killed on drop. [`IdleApp::start`] runs balance with both commands.
struct IdleApp {
    start: String,
    stop: String,
    bport: u16,
    run_dir: TempDir,
    _cleanup: KillOnDrop,
    dir: TempDir,
}

impl IdleApp {
    fn new(tag: &str) -> IdleApp {
        let dir = TempDir::new(tag);
        let bport = free_port(LOCALHOST_V4);
        IdleApp {
            start: start_script(dir.path(), bport),
            stop: stop_script(dir.path()),
            bport,
            run_dir: TempDir::new("ondemand-run"),
            _cleanup: KillOnDrop(dir.join("backend.pid")),
            dir,
        }
    }

    /// balance with the group as listener `app`, idle after `after`,
    /// `monitor` its monitor block.
    fn start(&self, after: Duration, monitor: &str) -> Balance {
        let (bport, start, stop) = (self.bport, &self.start, &self.stop);
        Balance::config(1, |p| {
            format!(
                "listeners:\n  - name: app\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - name: app3\n        channels: [\"127.0.0.1:{bport}\"]\n        on_empty: {{argv: [\"{start}\"], timeout: 10s}}\n        on_idle: {{after: {}ms, argv: [\"{stop}\"]}}\n{monitor}",
                p[0],
                after.as_millis(),
            )
        })
        .run_dir(self.run_dir.path())
        .start()
    }
}

/// Connect through balance, send `msg`, read it back (bounded by `limit`).
fn echo_through(addr: std::net::SocketAddr, msg: &[u8], limit: Duration) -> std::io::Result<()> {
    let mut s = TcpStream::connect(addr)?;
    s.set_read_timeout(Some(limit))?;
    s.write_all(msg)?;
    let mut got = vec![0; msg.len()];
    s.read_exact(&mut got)?;
    assert_eq!(got, msg);
    Ok(())
}

#[test]
fn one_start_for_twenty_clients_and_the_backend_outlives_sweeps_and_balance() {
    if !have_socat() {
        return skip_without("socat");
    }
    let app = IdleApp::new("ondemand");
    let (dir, bport, start) = (&app.dir, app.bport, &app.start);
    // A listener whose command check leaves a `setsid sleep` behind at
    // every probe: the sweep that kills those shows it ran.
    let other = Backend::tagged("other");
    let leftovers = dir.join("leftovers");
    let timeout = Duration::from_secs(10);
    let b = Balance::config(2, |p| {
        format!(
            "listeners:\n  - name: app\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - name: app3\n        channels: [\"127.0.0.1:{bport}\"]\n        on_empty: {{argv: [\"{start}\"], timeout: {}s}}\n{}\
             \x20 - name: sweeper\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - channels: [\"{}\"]\n    monitor:\n      interval: 200ms\n      checks:\n        - command: {{ argv: [/bin/sh, -c, \"setsid sleep 600 </dev/null >/dev/null 2>&1 & echo $! >> {}\"] }}\n",
            p[0],
            timeout.as_secs(),
            monitor(),
            p[1],
            other.channel(),
            leftovers.display()
        )
    })
    .run_dir(app.run_dir.path())
    .start();
    wait_down(&b);

    // 20 clients at once: held, then all served by the one backend.
    let t0 = Instant::now();
    let clients: Vec<_> = (0..20)
        .map(|i| {
            let addr = b.addr;
            thread::spawn(move || {
                echo_through(addr, format!("hello {i}\n").as_bytes(), timeout + SLACK)
            })
        })
        .collect();
    for c in clients {
        c.join().unwrap().expect("a held client is served");
    }
    assert!(t0.elapsed() < timeout, "served before the timeout");
    assert_eq!(lines(&dir.join("runs")), 1, "one run for 20 clients");
    let env = std::fs::read_to_string(dir.join("env")).unwrap();
    assert_eq!(env.trim(), format!("app|app3|127.0.0.1:{bport}"));
    assert!(b.wait_log("on_empty: the group is ready", 1, SLACK));
    assert_eq!(b.count("on_empty: starting the group"), 1);
    let od = &b.json()["groups"][0]["on_demand"];
    assert_eq!(od["state"], "running", "{od}");
    assert_eq!(od["starts"], 1, "{od}");

    // The backend is balance's child now (its script exited): a sweep
    // sees it. A leftover written after this point and then gone proves
    // a sweep ran since.
    let backend = pid_in(&dir.join("backend.pid")).expect("backend pid");
    wait_until("the backend to be adopted", SLACK, || {
        parent(backend) == Some(b.pid())
    })
    .unwrap();
    let seen = lines(&leftovers);
    let leftover = wait_for("a new check leftover", SLACK + INTERVAL * 2, || {
        let s = std::fs::read_to_string(&leftovers).ok()?;
        let l: Vec<&str> = s.lines().collect();
        (l.len() > seen).then(|| l[seen].trim().parse::<u32>().ok())?
    })
    .unwrap();
    wait_until("the sweep to kill the leftover", SLACK, || exited(leftover)).unwrap();
    assert!(!exited(backend), "the backend survived the sweep");
    echo_through(b.addr, b"after the sweep\n", SLACK).unwrap();

    // balance exits (SIGTERM, its exit sweep): the backend goes on.
    let st = b.terminate();
    assert!(st.success(), "{st}");
    assert!(!exited(backend), "the backend survived balance's exit");
    echo_through(local(bport), b"direct\n", SLACK).unwrap();
}

#[test]
fn on_idle_stops_the_group_once_idle_and_it_starts_again() {
    if !have_socat() {
        return skip_without("socat");
    }
    let after = Duration::from_secs(1);
    let app = IdleApp::new("ondemand-idle");
    let b = app.start(after, &monitor());
    let dir = &app.dir;
    wait_down(&b);
    echo_through(b.addr, b"first\n", Duration::from_secs(10) + SLACK).unwrap();
    let backend = pid_in(&dir.join("backend.pid")).expect("backend pid");
    let stops_before = lines(&dir.join("stops"));
    // Idle from the client's close: `after`, then at most one tick of the
    // idle clock (a tenth of `after`, at least 100 ms) late.
    let tick = (after / 10).max(Duration::from_millis(100));
    wait_until("on_idle to stop the backend", after + tick + SLACK, || {
        reaped(backend)
    })
    .unwrap();
    assert_eq!(lines(&dir.join("stops")), stops_before + 1);
    assert!(b.wait_log("on_idle: no connection for", 1, SLACK));
    // Once per idle period: no second stop without a connection.
    wait_down(&b);
    thread::sleep(after + tick * 2);
    assert_eq!(lines(&dir.join("stops")), stops_before + 1);
    // The next client starts it again.
    if let Err(e) = echo_through(b.addr, b"second\n", Duration::from_secs(10) + SLACK) {
        panic!("{e}\n{}\nruns={}", b.stderr(), lines(&dir.join("runs")));
    }
    assert_eq!(lines(&dir.join("runs")), 2);
    let od = &b.json()["groups"][0]["on_demand"];
    assert_eq!(od["starts"], 2, "{od}");
    assert!(od["stops"].as_u64() >= Some(1), "{od}");
}

/// After `on_idle` stopped the backend (exit 0), the group's channel is
/// down at once, though the checks alone (interval 2 s, fall 3) would take
/// 6 s: a client arriving right then is held and served by a fresh start,
/// never sent to the refusing port.
#[test]
fn a_client_right_after_on_idle_is_held_and_starts_the_group_again() {
    if !have_socat() {
        return skip_without("socat");
    }
    let after = Duration::from_secs(1);
    let tick = (after / 10).max(Duration::from_millis(100));
    let timeout = Duration::from_secs(10);
    let app = IdleApp::new("ondemand-stopped");
    let slow = "    monitor:\n      interval: 2s\n      rise: 1\n      fall: 3\n      checks:\n        - connect: { timeout: 1s }\n";
    let b = app.start(after, slow);
    let dir = &app.dir;
    let od = |b: &Balance| b.json()["groups"][0]["on_demand"].clone();
    let stopped = |b: &Balance, n: u64| {
        // The counter moves after the channels went down.
        wait_until("on_idle to have run", after + tick + SLACK, || {
            od(b)["stops"].as_u64() >= Some(n)
        })
        .unwrap();
        let v = b.json();
        assert_eq!(v["channels"][0]["up"], false, "down at once: {v}");
        assert_eq!(v["groups"][0]["on_demand"]["stops"], n, "{v}");
        assert_eq!(v["groups"][0]["on_demand"]["stop_failures"], 0, "{v}");
    };
    // Loaded with nothing running: idle from the start, stopped once
    // after `after` (no backend to kill; the script exits 0), and the
    // channel is down long before the checks' 6 s.
    stopped(&b, 1);
    assert!(b.wait_log("on_idle: the group is stopped", 1, SLACK));
    assert!(b.has("channel down (dis): stopped by on_idle"));
    echo_through(b.addr, b"first\n", timeout + SLACK).unwrap();
    assert_eq!(lines(&dir.join("runs")), 1);
    let backend = pid_in(&dir.join("backend.pid")).expect("backend pid");

    // Idle again: on_idle kills the backend; the next client comes at once.
    stopped(&b, 2);
    if let Err(e) = echo_through(b.addr, b"second\n", timeout + SLACK) {
        panic!("{e}\n{}\nruns={}", b.stderr(), lines(&dir.join("runs")));
    }
    assert_eq!(lines(&dir.join("runs")), 2, "a fresh start");
    wait_until("the stop to have killed the first backend", SLACK, || {
        exited(backend)
    })
    .unwrap();
    let v = od(&b);
    assert_eq!(v["starts"], 2, "{v}");
    assert_eq!(v["state"], "running", "{v}");
    assert_eq!(b.count("on_idle: the group is stopped"), 2);
}

/// A reload that leaves the group's name, `on_empty` and `on_idle` as they
/// were keeps its on-demand state (a running group is not started again);
/// one that changes `on_empty`'s argv starts it afresh (`idle`, counters
/// zero) while its channel, still up, keeps serving. The counters reach
/// `/metrics` per listener and group, promtool-clean.
#[test]
fn a_reload_keeps_the_on_demand_state_unless_the_group_changed_and_metrics_show_it() {
    if !have_socat() {
        return skip_without("socat");
    }
    let app = IdleApp::new("ondemand-reload");
    let (dir, bport, start) = (&app.dir, app.bport, &app.start);
    let plain = Backend::tagged("plain");
    let timeout = Duration::from_secs(10);
    let yaml = |p: &[u16], extra: &str, arg: &str| {
        format!(
            "listeners:\n  - name: app\n    bind: \"127.0.0.1:{}\"\n{extra}    groups:\n      - name: app3\n        channels: [\"127.0.0.1:{bport}\"]\n        on_empty: {{argv: [\"{start}\"{arg}], timeout: {}s}}\n{}\
             \x20 - name: plain\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - channels: [\"{}\"]\n",
            p[0],
            timeout.as_secs(),
            monitor(),
            p[1],
            plain.channel()
        )
    };
    let b = Balance::config(2, |p| yaml(p, "", ""))
        .run_dir(app.run_dir.path())
        .metrics()
        .start();
    let ports = b.ports().to_vec();
    let metric = |name: &str| {
        let text = scrape(b.metrics_port());
        sample(&text, name, "listener=\"app\",group=\"app3\"")
    };
    wait_down(&b);
    echo_through(b.addr, b"first\n", timeout + SLACK).unwrap();
    assert!(b.wait_log("on_empty: the group is ready", 1, SLACK));

    // The metrics after one start: one series per on-demand group only.
    let text = scrape(b.metrics_port());
    let l = "listener=\"app\",group=\"app3\"";
    assert_eq!(sample(&text, "balance_group_starts_total", l), 1.0);
    assert_eq!(sample(&text, "balance_group_start_failures_total", l), 0.0);
    assert_eq!(sample(&text, "balance_group_stops_total", l), 0.0);
    assert_eq!(sample(&text, "balance_group_stop_failures_total", l), 0.0);
    let series = text
        .lines()
        .filter(|l| l.starts_with("balance_group_starts_total{"))
        .count();
    assert_eq!(series, 1, "no series for the plain listener:\n{text}");
    assert!(text.contains("# TYPE balance_group_starts_total counter"));
    if let Some(problems) = promtool_problems(&text) {
        panic!("promtool: {problems}\n{text}");
    }

    // A reload that changes the listener but not the group: state kept.
    let reload = |extra: &str, arg: &str, n: usize| {
        std::fs::write(b.config_path(), yaml(&ports, extra, arg)).unwrap();
        b.signal(libc::SIGHUP);
        b.wait_running("the reload", || b.count("reload: ") >= n);
        assert_eq!(b.count("1 changed, 1 unchanged"), n, "{}", b.stderr());
    };
    reload("    connect_timeout: 2s\n", "", 1);
    let od = &b.json()["groups"][0]["on_demand"];
    assert_eq!(od["state"], "running", "{od}");
    assert_eq!(od["starts"], 1, "{od}");
    echo_through(b.addr, b"kept\n", SLACK).unwrap();
    assert_eq!(lines(&dir.join("runs")), 1, "not started again");
    assert_eq!(metric("balance_group_starts_total"), 1.0);

    // A reload that changes on_empty's argv: the state starts afresh; the
    // channel (kept by name, up) serves without a start.
    reload("    connect_timeout: 2s\n", ", \"again\"", 2);
    let od = &b.json()["groups"][0]["on_demand"];
    assert_eq!(od["state"], "idle", "{od}");
    assert_eq!(od["starts"], 0, "{od}");
    echo_through(b.addr, b"afresh\n", SLACK).unwrap();
    assert_eq!(lines(&dir.join("runs")), 1, "served by the running backend");
    assert_eq!(metric("balance_group_starts_total"), 0.0);
    assert_eq!(b.count("on_empty: starting the group"), 1);
}

#[test]
fn a_failing_or_hanging_start_sends_clients_on_after_the_timeout() {
    let dir = TempDir::new("ondemand-fail");
    let fail = script(
        dir.path(),
        "fail.sh",
        &format!("echo run >> {}/fail-runs\nexit 1", dir.path().display()),
    );
    let hang = script(
        dir.path(),
        "hang.sh",
        &format!(
            "echo run >> {d}/hang-runs\necho $$ > {d}/hang.pid\nexec sleep 600",
            d = dir.path().display()
        ),
    );
    let _cleanup = KillOnDrop(dir.join("hang.pid"));
    let spare = Backend::tagged("spare");
    let plain = Backend::tagged("plain");
    let timeout = Duration::from_secs(1);
    let (dead1, dead2) = (free_port(LOCALHOST_V4), free_port(LOCALHOST_V4));
    let run_dir = TempDir::new("ondemand-run");
    let b = Balance::config(3, |p| {
        let group = |name: &str, port: u16, argv: &str| {
            format!(
                "      - name: {name}\n        channels: [\"127.0.0.1:{port}\"]\n        on_empty: {{argv: [\"{argv}\"], timeout: {}ms}}\n      - name: spare\n        channels: [\"{}\"]\n",
                timeout.as_millis(),
                spare.channel()
            )
        };
        format!(
            "listeners:\n  - name: fails\n    bind: \"127.0.0.1:{}\"\n    groups:\n{}{}  - name: hangs\n    bind: \"127.0.0.1:{}\"\n    groups:\n{}{}  - name: plain\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - channels: [\"{}\"]\n",
            p[0],
            group("broken", dead1, &fail),
            monitor(),
            p[1],
            group("stuck", dead2, &hang),
            monitor(),
            p[2],
            plain.channel()
        )
    })
    .run_dir(run_dir.path())
    .start();
    let ports = b.ports().to_vec();
    for port in [ports[0], ports[1]] {
        // Channels start up: wait for the monitor to see the dead ones.
        wait_down_on(&b, port);
        let t = Instant::now();
        let (tag, _s) = tag_of_new_client(local(port)).expect("served by the next group");
        let took = t.elapsed();
        assert_eq!(tag, "spare");
        assert!(took >= timeout - INTERVAL, "held for the timeout: {took:?}");
        assert!(took < stretched(timeout + SLACK), "{took:?}");
        // Paused for `timeout` after the failed start: the next client is
        // passed on at once, with no second run.
        let t = Instant::now();
        let (tag, _s) = tag_of_new_client(local(port)).unwrap();
        assert_eq!(tag, "spare");
        assert!(t.elapsed() < timeout, "passed over while paused");
        // Meanwhile other listeners served at once.
        let t = Instant::now();
        let (tag, _s) = tag_of_new_client(local(ports[2])).unwrap();
        assert_eq!(tag, "plain");
        assert!(t.elapsed() < stretched(SLACK));
    }
    assert_eq!(b.count("on_empty: no channel of the group eligible"), 2);
    assert_eq!(b.count("on_empty: the command failed (exit status: 1)"), 1);
    // The hanging start was killed at the timeout.
    let hung = pid_in(&dir.join("hang.pid")).expect("hang pid");
    wait_until("the hanging start to be killed", SLACK, || exited(hung)).unwrap();
    assert!(b.has("(the command still ran: killed)"));
    assert_eq!(lines(&dir.join("fail-runs")), 1);
    assert_eq!(lines(&dir.join("hang-runs")), 1);
}

#[test]
fn bad_on_demand_keys_are_one_line_at_check() {
    let dir = TempDir::new("ondemand-check");
    let port = free_port(LOCALHOST_V4);
    for (key, text, want) in [
        ("empty argv", "on_empty: {argv: [], timeout: 5s}", "argv"),
        (
            "zero timeout",
            "on_empty: {argv: [/bin/true], timeout: 0s}",
            "on_empty.timeout: must be positive",
        ),
        (
            "zero after",
            "on_idle: {argv: [/bin/true], after: 0s}",
            "on_idle.after: must be positive",
        ),
        (
            "long timeout",
            "on_empty: {argv: [/bin/true], timeout: 2h}",
            "on_empty.timeout: at most",
        ),
        (
            "relative",
            "on_empty: {argv: [start-app], timeout: 5s}",
            "absolute path",
        ),
        ("no timeout", "on_empty: {argv: [/bin/true]}", "timeout"),
        (
            "unknown key",
            "on_idle: {argv: [/bin/true], after: 1s, when: now}",
            "when",
        ),
    ] {
        let f = dir.join("bad.yaml");
        std::fs::write(
            &f,
            format!(
                "listeners:\n  - name: app\n    bind: \"127.0.0.1:{port}\"\n    groups:\n      - channels: [\"127.0.0.1:1\"]\n        {text}\n"
            ),
        )
        .unwrap();
        let (code, err) = run_to_exit(&["--config", f.to_str().unwrap(), "--check"], SLACK);
        assert_eq!(code, Some(64), "{key}: {err}");
        assert_eq!(err.lines().count(), 1, "{key}: {err}");
        assert!(err.contains(want), "{key}: {err}");
    }
}
