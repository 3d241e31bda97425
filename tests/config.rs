//! Config file, reload, shutdown, metrics, privilege drop and DNS
//! re-resolution, against the real binary (`-f --config FILE`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::thread;
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_balance");
const WAIT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------ harness

/// A tagged echo backend: writes `tag\n` to each client, then echoes.
struct Backend {
    addr: SocketAddr,
}

fn backend_on(addr: &str, tag: &str) -> std::io::Result<Backend> {
    let l = TcpListener::bind(addr)?;
    let addr = l.local_addr()?;
    let tag = tag.to_string();
    thread::spawn(move || {
        for c in l.incoming() {
            let Ok(mut s) = c else { continue };
            let tag = tag.clone();
            thread::spawn(move || {
                if writeln!(s, "{tag}").is_err() {
                    return;
                }
                let mut buf = [0u8; 4096];
                while let Ok(n) = s.read(&mut buf) {
                    if n == 0 || s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            });
        }
    });
    Ok(Backend { addr })
}

fn backend(tag: &str) -> Backend {
    backend_on("127.0.0.1:0", tag).expect("backend bind")
}

/// A port that was free a moment ago (the caller retries on a clash).
fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

fn tmpdir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let d = std::env::temp_dir().join(format!(
        "balance-cfg-{tag}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).expect("tmpdir");
    d
}

/// A running `balance -f --config FILE`, killed on drop.
struct Balance {
    child: Child,
    log: PathBuf,
}

impl Balance {
    fn start_cmd(mut cmd: Command, cfg: &Path, extra: &[&str], wait_ports: &[u16]) -> Balance {
        let log = cfg.with_extension("log");
        let f = std::fs::File::create(&log).expect("log file");
        let child = cmd
            .arg("-f")
            .arg("--config")
            .arg(cfg)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .expect("spawn balance");
        let mut b = Balance { child, log };
        for p in wait_ports {
            let p = *p;
            let log = b.log.clone();
            b.wait_for(&format!("port {p} accepting"), || {
                std::fs::read_to_string(&log)
                    .is_ok_and(|t| t.contains(&format!("bind=127.0.0.1:{p}")))
                    && TcpStream::connect(("127.0.0.1", p)).is_ok()
            });
        }
        b
    }

    fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    fn signal(&self, sig: &str) {
        let ok = Command::new("kill")
            .args([&format!("-{sig}"), &self.pid().to_string()])
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        assert!(ok, "kill -{sig} failed");
    }

    fn log(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Poll `cond` until true; panics with the log after `WAIT`.
    fn wait_for(&mut self, what: &str, mut cond: impl FnMut() -> bool) {
        let t = Instant::now();
        while t.elapsed() < WAIT {
            if cond() {
                return;
            }
            if let Ok(Some(st)) = self.child.try_wait() {
                panic!(
                    "balance exited ({st}) while waiting for {what}:\n{}",
                    self.log()
                );
            }
            thread::sleep(Duration::from_millis(25));
        }
        panic!("timed out waiting for {what}:\n{}", self.log());
    }

    fn wait_exit(&mut self, within: Duration) -> ExitStatus {
        let t = Instant::now();
        while t.elapsed() < within {
            if let Ok(Some(st)) = self.child.try_wait() {
                return st;
            }
            thread::sleep(Duration::from_millis(25));
        }
        panic!("balance did not exit within {within:?}:\n{}", self.log());
    }
}

impl Drop for Balance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Connect through balance and read the backend's tag.
fn tag_via(port: u16) -> Option<String> {
    let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut line = String::new();
    BufReader::new(s).read_line(&mut line).ok()?;
    let t = line.trim().to_string();
    (!t.is_empty()).then_some(t)
}

/// A connection through balance that stays open and echoes.
struct Live {
    s: TcpStream,
    r: BufReader<TcpStream>,
}

impl Live {
    fn open(port: u16) -> (Live, String) {
        let s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut r = BufReader::new(s.try_clone().unwrap());
        let mut tag = String::new();
        r.read_line(&mut tag).expect("tag");
        (Live { s, r }, tag.trim().to_string())
    }

    fn echo(&mut self, msg: &str) -> bool {
        if writeln!(self.s, "{msg}").is_err() {
            return false;
        }
        let mut line = String::new();
        matches!(self.r.read_line(&mut line), Ok(n) if n > 0) && line.trim() == msg
    }
}

fn listener_yaml(name: &str, port: u16, channels: &[SocketAddr]) -> String {
    let chans: Vec<String> = channels.iter().map(|a| format!("\"{a}\"")).collect();
    format!(
        "  - name: {name}\n    bind: \"127.0.0.1:{port}\"\n    connect_timeout: 1s\n    groups:\n      - channels: [{}]\n",
        chans.join(", ")
    )
}

/// Start balance on fresh ports with `write(ports)` as the file, retrying
/// when a port was taken meanwhile.
fn start_with(
    n: usize,
    extra: &[&str],
    mut write: impl FnMut(&[u16]) -> String,
) -> (Balance, Vec<u16>, PathBuf) {
    for _ in 0..5 {
        let ports: Vec<u16> = (0..n).map(|_| free_port()).collect();
        let dir = tmpdir("run");
        let cfg = dir.join("balance.yaml");
        let text = write(&ports);
        std::fs::write(&cfg, &text).unwrap();
        // Wait for the ports the file binds (listeners and metrics).
        let bound: Vec<u16> = ports
            .iter()
            .copied()
            .filter(|p| text.contains(&format!("127.0.0.1:{p}\"")))
            .collect();
        let log = cfg.with_extension("log");
        let f = std::fs::File::create(&log).unwrap();
        let mut child = Command::new(BIN)
            .arg("-f")
            .arg("--config")
            .arg(&cfg)
            .args(extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(f)
            .spawn()
            .unwrap();
        let t = Instant::now();
        let mut ready = false;
        while t.elapsed() < WAIT {
            if let Ok(Some(_)) = child.try_wait() {
                break;
            }
            // Ports accept as soon as they are bound (before the runtime and
            // its signal handlers): wait for the log lines too.
            let text = std::fs::read_to_string(&log).unwrap_or_default();
            if bound.iter().all(|p| {
                text.contains(&format!("bind=127.0.0.1:{p}"))
                    && TcpStream::connect(("127.0.0.1", *p)).is_ok()
            }) {
                ready = true;
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        if ready {
            return (Balance { child, log }, ports, cfg);
        }
        let _ = child.kill();
        let _ = child.wait();
        let text = std::fs::read_to_string(&log).unwrap_or_default();
        assert!(
            text.contains("cannot listen"),
            "balance did not start:\n{text}"
        );
    }
    panic!("could not find free ports");
}

// -------------------------------------------------------------------- tests

#[test]
fn two_listeners_from_one_file_serve_their_own_backends() {
    let (a, b) = (backend("A"), backend("B"));
    let (_bal, ports, _) = start_with(2, &[], |p| {
        format!(
            "listeners:\n{}{}",
            listener_yaml("one", p[0], &[a.addr]),
            listener_yaml("two", p[1], &[b.addr])
        )
    });
    for _ in 0..3 {
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"));
        assert_eq!(tag_via(ports[1]).as_deref(), Some("B"));
    }
}

#[test]
fn sighup_adds_removes_and_changes_listeners_while_a_live_connection_keeps_echoing() {
    let (a, b, c) = (backend("A"), backend("B"), backend("C"));
    let (mut bal, ports, cfg) = start_with(3, &[], |p| {
        format!(
            "listeners:\n{}{}",
            listener_yaml("main", p[0], &[a.addr]),
            listener_yaml("old", p[1], &[c.addr])
        )
    });
    // ports[2] is not listening yet.
    let (mut live, tag) = Live::open(ports[0]);
    assert_eq!(tag, "A");
    assert!(live.echo("before"));

    // main: channel A replaced by B; old: removed; new: added.
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n{}{}",
            listener_yaml("main", ports[0], &[b.addr]),
            listener_yaml("new", ports[2], &[c.addr])
        ),
    )
    .unwrap();
    bal.signal("HUP");
    bal.wait_for("new listener", || tag_via(ports[2]).as_deref() == Some("C"));
    bal.wait_for("main on B", || tag_via(ports[0]).as_deref() == Some("B"));
    bal.wait_for("old listener closed", || {
        TcpStream::connect(("127.0.0.1", ports[1])).is_err()
    });
    assert!(live.echo("after reload"), "live connection was cut");
    assert!(
        bal.log().contains("1 added, 1 removed, 1 changed"),
        "{}",
        bal.log()
    );

    // Same listener, a second channel added: the kept channel keeps serving
    // and the new one gets traffic too.
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n{}{}",
            listener_yaml("main", ports[0], &[b.addr, a.addr]),
            listener_yaml("new", ports[2], &[c.addr])
        ),
    )
    .unwrap();
    bal.signal("HUP");
    bal.wait_for("both channels used", || {
        let tags: Vec<_> = (0..4).filter_map(|_| tag_via(ports[0])).collect();
        tags.iter().any(|t| t == "A") && tags.iter().any(|t| t == "B")
    });
    assert!(live.echo("after second reload"), "live connection was cut");
}

#[test]
fn broken_file_on_sighup_is_rejected_and_the_old_config_keeps_serving() {
    let a = backend("A");
    let (mut bal, ports, cfg) = start_with(1, &[], |p| {
        format!("listeners:\n{}", listener_yaml("main", p[0], &[a.addr]))
    });
    let (mut live, _) = Live::open(ports[0]);
    for broken in [
        "listeners: [ {\n".to_string(),
        format!(
            "listeners:\n{}    bogus_key: 1\n",
            listener_yaml("main", ports[0], &[a.addr])
        ),
    ] {
        std::fs::write(&cfg, broken).unwrap();
        let before = bal.log().matches("reload rejected").count();
        bal.signal("HUP");
        bal.wait_for("reload rejected", || {
            bal_log_count(&cfg, "reload rejected") > before
        });
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"));
        assert!(live.echo("still here"));
    }
    let log = bal.log();
    assert!(log.contains("bogus_key"), "the error names the key:\n{log}");
}

fn bal_log_count(cfg: &Path, what: &str) -> usize {
    std::fs::read_to_string(cfg.with_extension("log"))
        .unwrap_or_default()
        .matches(what)
        .count()
}

#[test]
fn sigterm_refuses_new_connections_lets_a_live_one_finish_then_exits_0() {
    let a = backend("A");
    let (mut bal, ports, _) = start_with(1, &[], |p| {
        format!(
            "grace: 20s\nlisteners:\n{}",
            listener_yaml("main", p[0], &[a.addr])
        )
    });
    let (mut live, _) = Live::open(ports[0]);
    bal.signal("TERM");
    let t = Instant::now();
    bal.wait_for("new connections refused", || {
        TcpStream::connect(("127.0.0.1", ports[0])).is_err()
    });
    assert!(
        t.elapsed() < Duration::from_secs(1),
        "refusing took {:?}",
        t.elapsed()
    );
    assert!(live.echo("during grace"), "live connection cut early");
    assert!(
        bal.child.try_wait().unwrap().is_none(),
        "exited before the live connection ended"
    );
    drop(live);
    let t = Instant::now();
    let st = bal.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "exit status {st}:\n{}", bal.log());
    assert!(t.elapsed() < Duration::from_secs(10));
}

#[test]
fn sigterm_cuts_connections_left_after_the_grace_period() {
    let a = backend("A");
    let (mut bal, ports, _) = start_with(1, &[], |p| {
        format!(
            "grace: 1s\nlisteners:\n{}",
            listener_yaml("main", p[0], &[a.addr])
        )
    });
    let (mut live, _) = Live::open(ports[0]);
    bal.signal("TERM");
    let t = Instant::now();
    let st = bal.wait_exit(Duration::from_secs(10));
    assert!(st.success(), "exit status {st}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&t.elapsed()),
        "did not wait for grace"
    );
    assert!(bal.log().contains("cutting 1 connections"), "{}", bal.log());
    assert!(!live.echo("after exit"));
}

fn scrape(port: u16) -> String {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("metrics connect");
    s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
    s.write_all(b"GET /metrics HTTP/1.0\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).unwrap();
    assert!(out.starts_with("HTTP/1.0 200"), "{out}");
    out.split_once("\r\n\r\n")
        .map(|(_, b)| b.to_string())
        .unwrap_or_default()
}

fn sample(text: &str, name: &str, labels: &str) -> f64 {
    let want = format!("{name}{{{labels}}} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&want))
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("no sample {want}in\n{text}"))
}

#[test]
fn metrics_are_scraped_and_counters_move_with_traffic() {
    let a = backend("A");
    let (_bal, ports, _) = start_with(2, &[], |p| {
        format!(
            "metrics: \"127.0.0.1:{}\"\nlisteners:\n{}",
            p[1],
            listener_yaml("web", p[0], &[a.addr])
        )
    });
    let ch = format!("listener=\"web\",group=\"0\",channel=\"{}\"", a.addr);
    let before = scrape(ports[1]);
    for l in before.lines().filter(|l| !l.starts_with('#')) {
        let v = l.rsplit_once(' ').map(|x| x.1).unwrap_or("");
        assert!(v.parse::<f64>().is_ok(), "bad sample line {l}");
    }
    assert_eq!(
        sample(
            &before,
            "balance_channel_state",
            &format!("{ch},state=\"ENA\"")
        ),
        1.0
    );
    let acc0 = sample(
        &before,
        "balance_listener_accepted_total",
        "listener=\"web\"",
    );
    let tot0 = sample(&before, "balance_channel_connections_total", &ch);
    let sent0 = sample(&before, "balance_channel_sent_bytes_total", &ch);
    let (mut live, _) = Live::open(ports[0]);
    assert!(live.echo("hello metrics"));
    let during = scrape(ports[1]);
    assert_eq!(
        sample(&during, "balance_listener_active", "listener=\"web\""),
        1.0
    );
    assert_eq!(sample(&during, "balance_channel_connections", &ch), 1.0);
    drop(live);
    for _ in 0..3 {
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"));
    }
    let after = scrape(ports[1]);
    assert!(
        sample(
            &after,
            "balance_listener_accepted_total",
            "listener=\"web\""
        ) >= acc0 + 4.0
    );
    assert!(sample(&after, "balance_channel_connections_total", &ch) >= tot0 + 4.0);
    assert!(sample(&after, "balance_channel_sent_bytes_total", &ch) >= sent0 + 14.0);
    assert!(sample(&after, "balance_channel_received_bytes_total", &ch) >= 14.0);
    // Anything else is a 404, and the endpoint survives junk.
    let mut s = TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    assert!(out.starts_with("HTTP/1.0 404"), "{out}");
    let mut s = TcpStream::connect(("127.0.0.1", ports[1])).unwrap();
    let _ = s.write_all(&[b'x'; 9000]);
    drop(s);
    assert!(scrape(ports[1]).contains("balance_listener_accepted_total"));
}

#[test]
fn check_exits_0_on_a_good_file_64_on_a_bad_one_and_binds_nothing() {
    let dir = tmpdir("check");
    // The listener's port is held by us: --check must not try to bind it.
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = held.local_addr().unwrap().port();
    let good = dir.join("good.yaml");
    std::fs::write(
        &good,
        format!(
            "listeners:\n{}",
            listener_yaml("x", port, &["127.0.0.1:9".parse().unwrap()])
        )
        .replace(
            "\"127.0.0.1:9\"",
            "\"127.0.0.1:9\", \"no-such-host.invalid:9\"",
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args(["--config", good.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{err}");
    assert!(
        err.contains("no-such-host.invalid:9 does not resolve"),
        "{err}"
    );

    let bad = dir.join("bad.yaml");
    std::fs::write(
        &bad,
        format!(
            "listeners:\n{}    conect_timeout: 1s\n",
            listener_yaml("x", port, &["127.0.0.1:9".parse().unwrap()])
        ),
    )
    .unwrap();
    for extra in [&["--check"][..], &["-f"][..]] {
        let out = Command::new(BIN)
            .args(["--config", bad.to_str().unwrap()])
            .args(extra)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("conect_timeout") && err.contains("line 7"),
            "{err}"
        );
    }
    // The shipped example validates.
    let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("contrib/balance.yaml");
    let out = Command::new(BIN)
        .args(["--config", example.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0));
    drop(held);
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

fn passwd_ids(user: &str) -> Option<(String, String)> {
    let text = std::fs::read_to_string("/etc/passwd").ok()?;
    text.lines().find_map(|l| {
        let f: Vec<&str> = l.split(':').collect();
        (f.first() == Some(&user) && f.len() > 3).then(|| (f[2].to_string(), f[3].to_string()))
    })
}

#[test]
fn user_option_drops_root_in_every_thread() {
    if !is_root() {
        eprintln!("skipped: not root");
        return;
    }
    let Some((uid, gid)) = passwd_ids("nobody") else {
        eprintln!("skipped: no user nobody");
        return;
    };
    let a = backend("A");
    let (bal, ports, _) = start_with(1, &["--user", "nobody"], |p| {
        format!(
            "threads: 2\nlisteners:\n{}",
            listener_yaml("main", p[0], &[a.addr])
        )
    });
    assert_eq!(tag_via(ports[0]).as_deref(), Some("A"));
    let tasks = std::fs::read_dir(format!("/proc/{}/task", bal.pid())).unwrap();
    let mut n = 0;
    for t in tasks.flatten() {
        let st = std::fs::read_to_string(t.path().join("status")).unwrap();
        let field = |k: &str| {
            st.lines()
                .find(|l| l.starts_with(k))
                .map(|l| {
                    l[k.len()..]
                        .split_whitespace()
                        .map(String::from)
                        .collect::<Vec<_>>()
                })
                .unwrap_or_default()
        };
        assert_eq!(field("Uid:"), vec![uid.clone(); 4], "{st}");
        assert_eq!(field("Gid:"), vec![gid.clone(); 4], "{st}");
        assert!(field("Groups:").is_empty(), "{st}");
        assert_eq!(
            field("CapEff:"),
            vec!["0000000000000000".to_string()],
            "{st}"
        );
        assert_eq!(field("NoNewPrivs:"), vec!["1".to_string()], "{st}");
        n += 1;
    }
    assert!(n >= 2, "expected the runtime's threads, saw {n}");
    assert!(bal.log().contains("dropped privileges"), "{}", bal.log());
    // Root's client still finds the dropped instance's control socket (it
    // lives in a directory the dropped user owns, one level below).
    let t = Instant::now();
    let out = loop {
        let out = control(ports[0], "show");
        if out.status.success() || t.elapsed() > WAIT {
            break out;
        }
        thread::sleep(Duration::from_millis(50));
    };
    assert!(out.status.success(), "{out:?}\n{}", bal.log());
    assert!(String::from_utf8_lossy(&out.stdout).contains("GRP Type"));
}

#[test]
fn unknown_user_is_a_startup_error() {
    if !is_root() {
        eprintln!("skipped: not root");
        return;
    }
    let dir = tmpdir("user");
    let cfg = dir.join("b.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n{}",
            listener_yaml("m", free_port(), &["127.0.0.1:9".parse().unwrap()])
        ),
    )
    .unwrap();
    let out = Command::new(BIN)
        .args([
            "-f",
            "--config",
            cfg.to_str().unwrap(),
            "--user",
            "no-such-user-xyz",
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(71), "{err}");
    assert!(err.contains("no-such-user-xyz"), "{err}");
}

/// A private mount namespace whose /etc/hosts is a file we rewrite.
#[test]
fn backend_name_is_re_resolved_and_an_unresolvable_one_comes_up_later() {
    let probe = Command::new("unshare")
        .args(["-m", "sh", "-c", "mount --bind /etc/hosts /etc/hosts"])
        .stderr(Stdio::null())
        .status();
    if !probe.map(|s| s.success()).unwrap_or(false) {
        eprintln!("skipped: unshare -m with a bind mount does not work here");
        return;
    }
    // Two backends on the same port, on 127.0.0.1 and 127.0.0.2.
    let (b1, b2) = loop {
        let b1 = backend("ONE");
        if let Ok(b2) = backend_on(&format!("127.0.0.2:{}", b1.addr.port()), "TWO") {
            break (b1, b2);
        }
    };
    let port = b1.addr.port();
    assert_eq!(b2.addr.port(), port);
    let dir = tmpdir("dns");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let lport = free_port();
    let cfg = dir.join("b.yaml");
    std::fs::write(
        &cfg,
        format!(
            "resolve_interval: 1s\nlisteners:\n  - name: m\n    bind: \"127.0.0.1:{lport}\"\n    groups:\n      - channels: [\"backend.test:{port}\"]\n"
        ),
    )
    .unwrap();
    let mut cmd = Command::new("unshare");
    cmd.args(["-m", "sh", "-c"]).arg(format!(
        "mount --bind '{}' /etc/hosts && exec '{BIN}' \"$@\"",
        hosts.display()
    ));
    cmd.arg("balance");
    let mut bal = Balance::start_cmd(cmd, &cfg, &[], &[lport]);
    // Not resolvable: the listener runs, the channel is down.
    assert_eq!(tag_via(lport), None);
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 backend.test\n").unwrap();
    bal.wait_for("name resolves", || tag_via(lport).as_deref() == Some("ONE"));
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.2 backend.test\n").unwrap();
    bal.wait_for("address change", || {
        tag_via(lport).as_deref() == Some("TWO")
    });
    assert!(bal.log().contains("addresses changed"), "{}", bal.log());
}

#[test]
fn reload_that_cannot_bind_a_new_listener_is_rejected_as_a_whole() {
    let (a, b) = (backend("A"), backend("B"));
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let (mut bal, ports, cfg) = start_with(1, &[], |p| {
        format!("listeners:\n{}", listener_yaml("main", p[0], &[a.addr]))
    });
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n{}{}",
            listener_yaml("main", ports[0], &[b.addr]),
            listener_yaml("blocked", held_port, &[b.addr])
        ),
    )
    .unwrap();
    bal.signal("HUP");
    bal.wait_for("reload rejected", || {
        bal_log_count(&cfg, "reload rejected") > 0
    });
    assert!(bal.log().contains("cannot listen"), "{}", bal.log());
    for _ in 0..3 {
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"), "main was changed");
    }
    drop(held);
}

#[test]
fn reload_keeps_counters_of_channels_that_stay() {
    let (a, b) = (backend("A"), backend("B"));
    let (mut bal, ports, cfg) = start_with(2, &[], |p| {
        format!(
            "metrics: \"127.0.0.1:{}\"\nlisteners:\n{}",
            p[1],
            listener_yaml("web", p[0], &[a.addr])
        )
    });
    for _ in 0..3 {
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"));
    }
    let ch = format!("listener=\"web\",group=\"0\",channel=\"{}\"", a.addr);
    let before = sample(&scrape(ports[1]), "balance_channel_connections_total", &ch);
    assert!(before >= 3.0);
    // Change a setting and add a channel: the listener is rebuilt, channel
    // A is kept with its counters.
    std::fs::write(
        &cfg,
        format!(
            "metrics: \"127.0.0.1:{}\"\nlisteners:\n{}    idle_timeout: 1m\n",
            ports[1],
            listener_yaml("web", ports[0], &[a.addr, b.addr])
        ),
    )
    .unwrap();
    bal.signal("HUP");
    bal.wait_for("reloaded", || bal_log_count(&cfg, "1 changed") > 0);
    let text = scrape(ports[1]);
    assert!(sample(&text, "balance_channel_connections_total", &ch) >= before);
    assert!(sample(&text, "balance_listener_accepted_total", "listener=\"web\"") >= 3.0);
    let chb = format!("listener=\"web\",group=\"0\",channel=\"{}\"", b.addr);
    assert_eq!(
        sample(&text, "balance_channel_connections_total", &chb),
        0.0
    );
}

#[test]
fn command_line_mode_serves_metrics_and_ignores_sighup() {
    let a = backend("A");
    let (mut bal, lp, mp) = start_cli_with_metrics(&[&a.addr.to_string()]);
    assert_eq!(tag_via(lp).as_deref(), Some("A"));
    let text = scrape(mp);
    let ch = format!(
        "listener=\"balance:{lp}\",group=\"0\",channel=\"{}\"",
        a.addr
    );
    assert!(sample(&text, "balance_channel_connections_total", &ch) >= 1.0);
    bal.signal("HUP");
    let log = bal.log.clone();
    bal.wait_for("SIGHUP logged", || {
        std::fs::read_to_string(&log).is_ok_and(|t| t.contains("SIGHUP ignored"))
    });
    assert_eq!(tag_via(lp).as_deref(), Some("A"));
}

/// Start `balance -f --metrics M -b 127.0.0.1 L <args>` on free ports;
/// returns it with L and M once the metrics port is bound.
fn start_cli_with_metrics(args: &[&str]) -> (Balance, u16, u16) {
    for _ in 0..5 {
        let (lp, mp) = (free_port(), free_port());
        let dir = tmpdir("cli");
        let log = dir.join("b.log");
        let child = Command::new(BIN)
            .args(["-f", "--metrics", &format!("127.0.0.1:{mp}")])
            .args(["-b", "127.0.0.1", &lp.to_string()])
            .args(args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).unwrap())
            .spawn()
            .unwrap();
        let mut bal = Balance { child, log };
        let t = Instant::now();
        let logp = bal.log.clone();
        let ready = || {
            std::fs::read_to_string(&logp)
                .is_ok_and(|t| t.contains(&format!("bind=127.0.0.1:{mp}")))
        };
        while t.elapsed() < WAIT && !ready() {
            if let Ok(Some(_)) = bal.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(25));
        }
        if bal.child.try_wait().unwrap().is_some() {
            continue; // a port was taken meanwhile
        }
        return (bal, lp, mp);
    }
    panic!("could not find free ports");
}

/// A tagged backend whose listener closes (the port refuses) when the
/// returned flag is set.
fn stoppable_backend(
    tag: &'static str,
) -> (SocketAddr, std::sync::Arc<std::sync::atomic::AtomicBool>) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    l.set_nonblocking(true).unwrap();
    let addr = l.local_addr().unwrap();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let flag = std::sync::Arc::clone(&stop);
    thread::spawn(move || {
        while !flag.load(Ordering::Relaxed) {
            match l.accept() {
                Ok((mut s, _)) => {
                    let _ = writeln!(s, "{tag}");
                }
                Err(_) => thread::sleep(Duration::from_millis(5)),
            }
        }
    });
    (addr, stop)
}

#[test]
fn metrics_count_checks_and_failover_and_failback_events() {
    let (a_addr, stop_a) = stoppable_backend("A");
    let b = backend("B");
    let (mut bal, lp, mp) = start_cli_with_metrics(&[
        "-m",
        "connect:interval=100ms:rise=1:fall=1",
        &a_addr.to_string(),
        "!",
        &b.addr.to_string(),
    ]);
    assert_eq!(tag_via(lp).as_deref(), Some("A"));
    // Primary gone: the monitor takes it down, traffic fails over.
    stop_a.store(true, Ordering::Relaxed);
    let label = |g: u8, addr: SocketAddr| {
        format!("listener=\"balance:{lp}\",group=\"{g}\",channel=\"{addr}\"")
    };
    bal.wait_for("primary down", || {
        sample(
            &scrape(mp),
            "balance_channel_checks_failed_total",
            &label(0, a_addr),
        ) >= 1.0
            && tag_via(lp).as_deref() == Some("B")
    });
    // The primary returns on the same address: traffic fails back.
    let _a2 = backend_on(&a_addr.to_string(), "A").unwrap();
    bal.wait_for("failback", || tag_via(lp).as_deref() == Some("A"));
    let text = scrape(mp);
    let l = format!("listener=\"balance:{lp}\"");
    assert!(
        sample(
            &text,
            "balance_channel_checks_passed_total",
            &label(1, b.addr)
        ) >= 1.0
    );
    assert_eq!(
        sample(&text, "balance_listener_failover_events_total", &l),
        1.0
    );
    assert_eq!(
        sample(&text, "balance_listener_failback_events_total", &l),
        1.0
    );
    assert!(text.contains("balance_channel_check_duration_microseconds{"));
    // Process-wide splice pipe gauges.
    for g in ["balance_pipes_pooled ", "balance_pipes_in_use "] {
        let v = text.lines().find_map(|l| l.strip_prefix(g));
        assert!(v.is_some_and(|v| v.parse::<u64>().is_ok()), "{g}in\n{text}");
    }
}

#[test]
fn daemon_with_relative_config_path_writes_pidfile_and_reloads() {
    let (a, b) = (backend("A"), backend("B"));
    for _ in 0..5 {
        let port = free_port();
        let dir = tmpdir("daemon");
        let yaml = |ch: SocketAddr| format!("listeners:\n{}", listener_yaml("d", port, &[ch]));
        std::fs::write(dir.join("d.yaml"), yaml(a.addr)).unwrap();
        let st = Command::new(BIN)
            .current_dir(&dir)
            .args([
                "--config",
                "d.yaml",
                "--pidfile",
                "d.pid",
                "--log-file",
                "d.log",
            ])
            .stdin(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "the parent exits 0 after forking");
        let pidfile = dir.join("d.pid");
        let t = Instant::now();
        let pid = loop {
            if let Some(p) = std::fs::read_to_string(&pidfile)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
            {
                break p;
            }
            assert!(t.elapsed() < WAIT, "no pidfile");
            thread::sleep(Duration::from_millis(25));
        };
        // Kill the daemon if an assertion below fails.
        struct Reaper(i32);
        impl Drop for Reaper {
            fn drop(&mut self) {
                if Path::new(&format!("/proc/{}", self.0)).exists() {
                    let _ = Command::new("kill")
                        .args(["-KILL", &self.0.to_string()])
                        .status();
                }
            }
        }
        let _reaper = Reaper(pid);
        let kill = |sig: &str| {
            let _ = Command::new("kill")
                .args([&format!("-{sig}"), &pid.to_string()])
                .status();
        };
        let alive = || Path::new(&format!("/proc/{pid}")).exists();
        let t = Instant::now();
        while t.elapsed() < WAIT && alive() && tag_via(port).is_none() {
            thread::sleep(Duration::from_millis(25));
        }
        if !alive() {
            continue; // port taken meanwhile
        }
        assert_eq!(tag_via(port).as_deref(), Some("A"));
        std::fs::write(dir.join("d.yaml"), yaml(b.addr)).unwrap();
        kill("HUP");
        let t = Instant::now();
        while t.elapsed() < WAIT && tag_via(port).as_deref() != Some("B") {
            thread::sleep(Duration::from_millis(25));
        }
        let log = std::fs::read_to_string(dir.join("d.log")).unwrap_or_default();
        assert_eq!(tag_via(port).as_deref(), Some("B"), "not reloaded:\n{log}");
        kill("TERM");
        let t = Instant::now();
        while t.elapsed() < WAIT && (alive() || pidfile.exists()) {
            thread::sleep(Duration::from_millis(25));
        }
        assert!(!pidfile.exists(), "pidfile left behind");
        assert!(!alive(), "daemon did not exit on SIGTERM");
        return;
    }
    panic!("could not find a free port");
}

/// T41: every garbage file exits 64 fast, in little memory, with one line.
#[test]
fn garbage_config_files_exit_64_fast_in_little_memory() {
    let dir = tmpdir("garbage");
    let ok_listener = |port: &str, ch: &str| {
        format!(
            "listeners:\n  - name: a\n    bind: \"127.0.0.1:{port}\"\n    groups:\n      - channels: [\"{ch}\"]\n"
        )
    };
    let mut bomb = String::from(
        "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - channels: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        bomb.push_str(&format!(
            "      - channels: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    let corpus: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        (
            "binary",
            (0..4096u32).map(|i| (i * 7919 % 251) as u8).collect(),
        ),
        ("bomb", bomb.into_bytes()),
        (
            "deep",
            format!("listeners: {}{}\n", "[".repeat(10_000), "]".repeat(10_000)).into_bytes(),
        ),
        (
            "dupkey",
            ok_listener("8000", "x")
                .replace("    bind:", "    name: b\n    bind:")
                .into_bytes(),
        ),
        (
            "unknown",
            format!("{}    colour: blue\n", ok_listener("8000", "x")).into_bytes(),
        ),
        ("port0", ok_listener("0", "x").into_bytes()),
        ("port65536", ok_listener("65536", "x").into_bytes()),
        ("port-1", ok_listener("-1", "x").into_bytes()),
        ("chport0", ok_listener("8000", "x:0").into_bytes()),
        (
            "duration",
            format!(
                "{}    connect_timeout: 99999999999999999999s\n",
                ok_listener("8000", "x")
            )
            .into_bytes(),
        ),
        (
            "emptygroup",
            ok_listener("8000", "x")
                .replace("[\"x\"]", "[]")
                .into_bytes(),
        ),
        (
            "selfloop",
            ok_listener("8000", "127.0.0.1:8000").into_bytes(),
        ),
    ];
    let prlimit = Command::new("prlimit").arg("--version").output().is_ok();
    for (name, bytes) in corpus {
        let f = dir.join(format!("{name}.yaml"));
        std::fs::write(&f, &bytes).unwrap();
        check_rejected(&f, prlimit, name);
    }
    // 100 MiB (sparse): refused by size before it is read.
    let huge = dir.join("huge.yaml");
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(100 << 20)
        .unwrap();
    check_rejected(&huge, prlimit, "huge");
}

fn check_rejected(f: &Path, prlimit: bool, name: &str) {
    let mut cmd = if prlimit {
        // 128 MiB of address space: an expanding bomb would abort, not exit 64.
        let mut c = Command::new("prlimit");
        c.arg(format!("--as={}", 128u64 << 20)).arg(BIN);
        c
    } else {
        Command::new(BIN)
    };
    let t = Instant::now();
    let out = cmd
        .args(["--config", f.to_str().unwrap(), "--check"])
        .output()
        .unwrap();
    let took = t.elapsed();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{name}: {err}");
    assert_eq!(err.lines().count(), 1, "{name}: {err}");
    assert!(!err.contains("panicked"), "{name}: {err}");
    assert!(took < Duration::from_secs(3), "{name} took {took:?}");
}

/// T38: reloads that change a listener under steady connection load lose
/// no connection.
#[test]
fn reloads_under_connection_load_lose_no_connection() {
    let (a, b) = (backend("A"), backend("B"));
    let (mut bal, ports, cfg) = start_with(1, &[], |p| {
        format!("listeners:\n{}", listener_yaml("main", p[0], &[a.addr]))
    });
    let port = ports[0];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let clients: Vec<_> = (0..4)
        .map(|_| {
            let stop = std::sync::Arc::clone(&stop);
            thread::spawn(move || {
                let (mut ok, mut failed) = (0u32, 0u32);
                while !stop.load(Ordering::Relaxed) {
                    match tag_via(port) {
                        Some(_) => ok += 1,
                        None => failed += 1,
                    }
                    thread::sleep(Duration::from_millis(2));
                }
                (ok, failed)
            })
        })
        .collect();
    for i in 0..6 {
        let chans = if i % 2 == 0 {
            vec![b.addr]
        } else {
            vec![a.addr, b.addr]
        };
        std::fs::write(
            &cfg,
            format!(
                "listeners:\n{}    idle_timeout: {}s\n",
                listener_yaml("main", port, &chans),
                i + 1
            ),
        )
        .unwrap();
        bal.signal("HUP");
        bal.wait_for("reload", || bal_log_count(&cfg, "reload: ") > i);
        thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let (mut ok, mut failed) = (0, 0);
    for c in clients {
        let (o, f) = c.join().unwrap();
        ok += o;
        failed += f;
    }
    assert!(ok > 50, "too little traffic to tell: {ok}");
    assert_eq!(failed, 0, "{failed} of {} connections failed", ok + failed);
    assert_eq!(bal_log_count(&cfg, "1 changed"), 6, "{}", bal.log());
}

#[test]
fn per_listener_command_line_options_are_refused_with_config() {
    for flag in [
        &["-a"][..],
        &["-t", "2"],
        &["--race", "1s"],
        &["-b", "127.0.0.1"],
    ] {
        let out = Command::new(BIN)
            .args(["--config", "/nonexistent.yaml", "--check"])
            .args(flag)
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{flag:?}: {err}");
        assert!(
            err.contains(flag[0]) && err.contains("per listener"),
            "{err}"
        );
    }
}

#[test]
fn grace_changed_by_reload_applies_at_shutdown() {
    let a = backend("A");
    let (mut bal, ports, cfg) = start_with(1, &[], |p| {
        format!(
            "grace: 60s\nlisteners:\n{}",
            listener_yaml("main", p[0], &[a.addr])
        )
    });
    std::fs::write(
        &cfg,
        format!(
            "grace: 1s\nlisteners:\n{}",
            listener_yaml("main", ports[0], &[a.addr])
        ),
    )
    .unwrap();
    bal.signal("HUP");
    bal.wait_for("reload", || bal_log_count(&cfg, "reload: ") > 0);
    assert!(!bal.log().contains("after a restart"), "{}", bal.log());
    let (_live, _) = Live::open(ports[0]);
    bal.signal("TERM");
    let t = Instant::now();
    let st = bal.wait_exit(Duration::from_secs(15));
    assert!(st.success());
    assert!(
        t.elapsed() < Duration::from_secs(10),
        "old grace used: {:?}",
        t.elapsed()
    );
}

fn control(port: u16, cmd: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["-b", "127.0.0.1", "-c", cmd, &port.to_string()])
        .stdin(Stdio::null())
        .output()
        .unwrap()
}

#[test]
fn control_reload_applies_a_good_file_and_rejects_a_broken_one() {
    let (a, b) = (backend("A"), backend("B"));
    let (_bal, ports, cfg) = start_with(1, &[], |p| {
        format!("listeners:\n{}", listener_yaml("main", p[0], &[a.addr]))
    });
    let p = ports[0];
    let (mut live, _) = Live::open(p);
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n{}",
            listener_yaml("main", p, &[a.addr, b.addr])
        ),
    )
    .unwrap();
    let out = control(p, "reload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reload failed: {out:?}");
    assert!(stdout.contains("1 changed"), "{stdout}");
    let tags: Vec<String> = (0..4).filter_map(|_| tag_via(p)).collect();
    assert!(tags.iter().any(|t| t == "B"), "B takes traffic: {tags:?}");
    assert!(live.echo("across the reload"));

    std::fs::write(&cfg, "listeners: [ {\n").unwrap();
    // The control socket of the changed listener is re-created by the
    // reload; poll until it answers again.
    let t = Instant::now();
    let out = loop {
        let out = control(p, "reload");
        if out.status.code() == Some(1) || t.elapsed() > WAIT {
            break out;
        }
        thread::sleep(Duration::from_millis(50));
    };
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        stderr.contains("reload rejected") && stderr.contains("line"),
        "{stderr}"
    );
    assert!(tag_via(p).is_some(), "the old config keeps serving");
    assert!(live.echo("after the rejected reload"));
}
