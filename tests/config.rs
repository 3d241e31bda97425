//! Config file, reload, shutdown, metrics, privilege drop and DNS
//! re-resolution, against the real binary (`-f --config FILE`).

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::thread;
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(15);

// ------------------------------------------------------------------ helpers

/// Connect through balance and read the backend's tag.
fn tag_via(port: u16) -> Option<String> {
    ask(local(port)).ok().filter(|t| !t.is_empty())
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

/// Start balance on fresh ports with `write(ports)` as the file, once every
/// port in the file is bound.
fn start_with<'a>(
    n: usize,
    extra: &[&str],
    write: impl FnMut(&[u16]) -> String + 'a,
) -> (Balance, Vec<u16>, PathBuf) {
    let bal = Balance::config(n, write).opts(extra).start();
    let (ports, cfg) = (bal.ports().to_vec(), bal.config_path().to_path_buf());
    (bal, ports, cfg)
}

// -------------------------------------------------------------------- tests

#[test]
fn two_listeners_from_one_file_serve_their_own_backends() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
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
    let (a, b, c) = (
        Backend::tagged("A"),
        Backend::tagged("B"),
        Backend::tagged("C"),
    );
    let (bal, ports, cfg) = start_with(3, &[], |p| {
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
    bal.signal(libc::SIGHUP);
    bal.wait_running("new listener", || tag_via(ports[2]).as_deref() == Some("C"));
    bal.wait_running("main on B", || tag_via(ports[0]).as_deref() == Some("B"));
    bal.wait_running("old listener closed", || {
        TcpStream::connect(("127.0.0.1", ports[1])).is_err()
    });
    assert!(live.echo("after reload"), "live connection was cut");
    assert!(
        bal.stderr().contains("1 added, 1 removed, 1 changed"),
        "{}",
        bal.stderr()
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
    bal.signal(libc::SIGHUP);
    bal.wait_running("both channels used", || {
        let tags: Vec<_> = (0..4).filter_map(|_| tag_via(ports[0])).collect();
        tags.iter().any(|t| t == "A") && tags.iter().any(|t| t == "B")
    });
    assert!(live.echo("after second reload"), "live connection was cut");
}

#[test]
fn broken_file_on_sighup_is_rejected_and_the_old_config_keeps_serving() {
    let a = Backend::tagged("A");
    let (bal, ports, cfg) = start_with(1, &[], |p| {
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
        let before = bal.stderr().matches("reload rejected").count();
        bal.signal(libc::SIGHUP);
        bal.wait_running("reload rejected", || {
            bal.stderr().matches("reload rejected").count() > before
        });
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"));
        assert!(live.echo("still here"));
    }
    let log = bal.stderr();
    assert!(log.contains("bogus_key"), "the error names the key:\n{log}");
}

#[test]
fn sigterm_refuses_new_connections_lets_a_live_one_finish_then_exits_0() {
    let a = Backend::tagged("A");
    let (bal, ports, _) = start_with(1, &[], |p| {
        format!(
            "grace: 20s\nlisteners:\n{}",
            listener_yaml("main", p[0], &[a.addr])
        )
    });
    let (mut live, _) = Live::open(ports[0]);
    bal.signal(libc::SIGTERM);
    let t = Instant::now();
    bal.wait_running("new connections refused", || {
        TcpStream::connect(("127.0.0.1", ports[0])).is_err()
    });
    assert!(
        t.elapsed() < stretched(Duration::from_secs(1)),
        "refusing took {:?}",
        t.elapsed()
    );
    assert!(live.echo("during grace"), "live connection cut early");
    assert!(
        bal.try_exit().is_none(),
        "exited before the live connection ended"
    );
    drop(live);
    let t = Instant::now();
    let st = bal
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("balance did not exit:\n{}", bal.stderr()));
    assert!(st.success(), "exit status {st}:\n{}", bal.stderr());
    assert!(t.elapsed() < stretched(Duration::from_secs(10)));
}

#[test]
fn sigterm_cuts_connections_left_after_the_grace_period() {
    let a = Backend::tagged("A");
    let (bal, ports, _) = start_with(1, &[], |p| {
        format!(
            "grace: 1s\nlisteners:\n{}",
            listener_yaml("main", p[0], &[a.addr])
        )
    });
    let (mut live, _) = Live::open(ports[0]);
    bal.signal(libc::SIGTERM);
    let t = Instant::now();
    let st = bal
        .wait_exit(Duration::from_secs(10))
        .unwrap_or_else(|| panic!("balance did not exit:\n{}", bal.stderr()));
    assert!(st.success(), "exit status {st}");
    assert!(
        (Duration::from_millis(900)..Duration::from_secs(4)).contains(&t.elapsed()),
        "did not wait for grace"
    );
    assert!(
        bal.stderr().contains("cutting 1 connections"),
        "{}",
        bal.stderr()
    );
    assert!(!live.echo("after exit"));
}

#[test]
fn metrics_are_scraped_and_counters_move_with_traffic() {
    let a = Backend::tagged("A");
    let (_bal, ports, _) = start_with(2, &[], |p| {
        format!(
            "metrics: \"127.0.0.1:{}\"\nlisteners:\n{}",
            p[1],
            listener_yaml("web", p[0], &[a.addr])
        )
    });
    let ch = format!(
        "listener=\"web\",group=\"0\",index=\"0\",channel=\"{}\"",
        a.addr
    );
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
    assert_eq!(
        sample(&during, "balance_channel_active_connections", &ch),
        1.0
    );
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
    let dir = TempDir::new("check");
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
        skip_because("not root");
        return;
    }
    let Some((uid, gid)) = passwd_ids("nobody") else {
        skip_because("no user nobody");
        return;
    };
    let a = Backend::tagged("A");
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
    assert!(
        bal.stderr().contains("dropped privileges"),
        "{}",
        bal.stderr()
    );
    // Root's client still finds the dropped instance's control socket (it
    // lives in a directory the dropped user owns, one level below).
    let mut last = None;
    let _ = wait_until("the control socket", WAIT, || {
        let out = bal.ctl_out_on(ports[0], "show");
        let ok = out.status.success();
        last = Some(out);
        ok
    });
    let out = last.expect("asked once");
    assert!(out.status.success(), "{out:?}\n{}", bal.stderr());
    assert!(String::from_utf8_lossy(&out.stdout).contains("GRP Type"));
}

#[test]
fn unknown_user_is_a_startup_error() {
    if !is_root() {
        skip_because("not root");
        return;
    }
    let dir = TempDir::new("user");
    let cfg = dir.join("b.yaml");
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n{}",
            listener_yaml(
                "m",
                free_port(LOCALHOST_V4),
                &["127.0.0.1:9".parse().unwrap()]
            )
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
        skip_because("unshare -m with a bind mount does not work here");
        return;
    }
    // Two backends on the same port, on 127.0.0.1 and 127.0.0.2.
    let (b1, b2) = loop {
        let b1 = Backend::tagged("ONE");
        if let Ok(b2) = Backend::tagged_at(("127.0.0.2", b1.addr.port()), "TWO") {
            break (b1, b2);
        }
    };
    let port = b1.addr.port();
    assert_eq!(b2.addr.port(), port);
    let dir = TempDir::new("dns");
    let hosts = dir.join("hosts");
    std::fs::write(&hosts, "127.0.0.1 localhost\n").unwrap();
    let mount = format!(
        "mount --bind '{}' /etc/hosts && exec \"$@\"",
        hosts.display()
    );
    let bal = Balance::config(1, |p| {
        format!(
            "resolve_interval: 1s\nlisteners:\n  - name: m\n    bind: \"127.0.0.1:{}\"\n    groups:\n      - channels: [\"backend.test:{port}\"]\n",
            p[0]
        )
    })
    .wrapper(&["unshare", "-m", "sh", "-c", &mount, "sh"])
    .start();
    let lport = bal.port();
    // Not resolvable: the listener runs, the channel is down.
    assert_eq!(tag_via(lport), None);
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.1 backend.test\n").unwrap();
    bal.wait_running("name resolves", || tag_via(lport).as_deref() == Some("ONE"));
    std::fs::write(&hosts, "127.0.0.1 localhost\n127.0.0.2 backend.test\n").unwrap();
    bal.wait_running("address change", || {
        tag_via(lport).as_deref() == Some("TWO")
    });
    assert!(
        bal.stderr().contains("addresses changed"),
        "{}",
        bal.stderr()
    );
}

#[test]
fn reload_that_cannot_bind_a_new_listener_is_rejected_as_a_whole() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let held = TcpListener::bind("127.0.0.1:0").unwrap();
    let held_port = held.local_addr().unwrap().port();
    let (bal, ports, cfg) = start_with(1, &[], |p| {
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
    bal.signal(libc::SIGHUP);
    bal.wait_running("reload rejected", || {
        bal.stderr().matches("reload rejected").count() > 0
    });
    assert!(bal.stderr().contains("cannot listen"), "{}", bal.stderr());
    for _ in 0..3 {
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"), "main was changed");
    }
    drop(held);
}

#[test]
fn reload_keeps_counters_of_channels_that_stay() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let (bal, ports, cfg) = start_with(2, &[], |p| {
        format!(
            "metrics: \"127.0.0.1:{}\"\nlisteners:\n{}",
            p[1],
            listener_yaml("web", p[0], &[a.addr])
        )
    });
    for _ in 0..3 {
        assert_eq!(tag_via(ports[0]).as_deref(), Some("A"));
    }
    let ch = format!(
        "listener=\"web\",group=\"0\",index=\"0\",channel=\"{}\"",
        a.addr
    );
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
    bal.signal(libc::SIGHUP);
    bal.wait_running("reloaded", || bal.stderr().matches("1 changed").count() > 0);
    let text = scrape(ports[1]);
    assert!(sample(&text, "balance_channel_connections_total", &ch) >= before);
    assert!(sample(&text, "balance_listener_accepted_total", "listener=\"web\"") >= 3.0);
    let chb = format!(
        "listener=\"web\",group=\"0\",index=\"1\",channel=\"{}\"",
        b.addr
    );
    assert_eq!(
        sample(&text, "balance_channel_connections_total", &chb),
        0.0
    );
}

#[test]
fn command_line_mode_serves_metrics_and_ignores_sighup() {
    let a = Backend::tagged("A");
    let (bal, lp, mp) = start_cli_with_metrics(&[&a.addr.to_string()]);
    assert_eq!(tag_via(lp).as_deref(), Some("A"));
    let text = scrape(mp);
    let ch = format!(
        "listener=\"balance:{lp}\",group=\"0\",index=\"0\",channel=\"{}\"",
        a.addr
    );
    assert!(sample(&text, "balance_channel_connections_total", &ch) >= 1.0);
    bal.signal(libc::SIGHUP);
    bal.wait_running("SIGHUP logged", || bal.has("SIGHUP ignored"));
    assert_eq!(tag_via(lp).as_deref(), Some("A"));
}

#[test]
fn metrics_pass_promtool_with_unique_series_build_info_and_process_metrics() {
    let a = Backend::tagged("A");
    let tmp = TempDir::new("promtool");
    // The same address twice on the command line, and once more by create.
    let ch = a.addr.to_string();
    let bal = Balance::cli(&[ch.clone(), ch.clone()])
        .metrics()
        .control(&tmp.join("c.sock"))
        .start();
    bal.ctl(&format!("create 127.0.0.1 {}", a.port()));
    assert_eq!(tag_via(bal.port()).as_deref(), Some("A"));
    let text = scrape(bal.metrics_port());
    if let Some(problems) = promtool_problems(&text) {
        panic!("promtool check metrics:\n{problems}\n{text}");
    }
    eprintln!("promtool: {:?}", promtool().map(|_| "checked"));
    // Every series (name and labels) is unique.
    let mut seen = std::collections::HashSet::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (series, v) = l.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "bad sample line {l}");
        assert!(seen.insert(series.to_string()), "repeated series {series}");
    }
    let lp = bal.port();
    for i in 0..3 {
        let labels =
            format!("listener=\"balance:{lp}\",group=\"0\",index=\"{i}\",channel=\"{ch}\"");
        sample(&text, "balance_channel_active_connections", &labels);
    }
    let version = format!("version=\"{}\"", env!("CARGO_PKG_VERSION"));
    assert_eq!(sample(&text, "balance_build_info", &version), 1.0);
    let value = |name: &str| -> f64 {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .and_then(|v| v.parse().ok())
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
    };
    assert!(value("process_resident_memory_bytes") > 1e5);
    assert!(value("process_virtual_memory_bytes") >= value("process_resident_memory_bytes"));
    assert!(value("process_open_fds") >= 3.0);
    assert!(value("process_max_fds") >= value("process_open_fds"));
    assert!(value("process_cpu_seconds_total") >= 0.0);
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64();
    let started = value("process_start_time_seconds");
    assert!(
        started <= now + 1.0 && started > now - 600.0,
        "{started} vs {now}"
    );
    // No gauge shares a counter's name without its _total (OpenMetrics).
    for l in text.lines().filter_map(|l| l.strip_prefix("# TYPE ")) {
        let (name, kind) = l.split_once(' ').unwrap();
        if kind == "counter" {
            let base = name.strip_suffix("_total").expect("counter ends in _total");
            assert!(
                !text.contains(&format!("# TYPE {base} ")),
                "{base} collides with {name}"
            );
        }
    }
}

/// Start `balance -f --metrics M -b 127.0.0.1 L <args>` on free ports;
/// returns it with L and M once both are bound.
fn start_cli_with_metrics(args: &[&str]) -> (Balance, u16, u16) {
    let args: Vec<String> = args.iter().map(|a| a.to_string()).collect();
    let bal = Balance::cli(&args).metrics().start();
    let (lp, mp) = (bal.port(), bal.metrics_port());
    (bal, lp, mp)
}

#[test]
fn metrics_count_checks_and_failover_and_failback_events() {
    let a = Backend::tagged("A");
    let a_addr = a.addr;
    let b = Backend::tagged("B");
    let (bal, lp, mp) = start_cli_with_metrics(&[
        "-m",
        "connect:interval=100ms:rise=1:fall=1",
        &a_addr.to_string(),
        "!",
        &b.addr.to_string(),
    ]);
    assert_eq!(tag_via(lp).as_deref(), Some("A"));
    // Primary gone: the monitor takes it down, traffic fails over.
    a.stop();
    let label = |g: u8, addr: SocketAddr| {
        format!("listener=\"balance:{lp}\",group=\"{g}\",index=\"0\",channel=\"{addr}\"")
    };
    bal.wait_running("primary down", || {
        sample(
            &scrape(mp),
            "balance_channel_checks_failed_total",
            &label(0, a_addr),
        ) >= 1.0
            && tag_via(lp).as_deref() == Some("B")
    });
    // The primary returns on the same address: traffic fails back.
    let _a2 = Backend::tagged_at(a_addr, "A").unwrap();
    bal.wait_running("failback", || tag_via(lp).as_deref() == Some("A"));
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
    assert!(text.contains("balance_channel_check_duration_seconds{"));
    // Process-wide splice pipe gauges.
    for g in ["balance_pipes_pooled ", "balance_pipes_in_use "] {
        let v = text.lines().find_map(|l| l.strip_prefix(g));
        assert!(v.is_some_and(|v| v.parse::<u64>().is_ok()), "{g}in\n{text}");
    }
}

#[test]
fn daemon_with_relative_config_path_writes_pidfile_and_reloads() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    for _ in 0..5 {
        let port = free_port(LOCALHOST_V4);
        let dir = TempDir::new("daemon");
        let yaml = |ch: SocketAddr| format!("listeners:\n{}", listener_yaml("d", port, &[ch]));
        std::fs::write(dir.join("d.yaml"), yaml(a.addr)).unwrap();
        let mut parent = Command::new(BIN);
        parent.current_dir(dir.path()).args([
            "--config",
            "d.yaml",
            "--pidfile",
            "d.pid",
            "--log-file",
            "d.log",
        ]);
        let (code, err) = run_cmd_to_exit(parent, WAIT);
        assert_eq!(code, Some(0), "the parent exits 0 after forking: {err}");
        let pidfile = dir.join("d.pid");
        // Killed on drop if an assertion below fails.
        let daemon = Daemon::from_pidfile(&pidfile, WAIT);
        let _ = wait_until("the daemon to serve", WAIT, || {
            !daemon.alive() || tag_via(port).is_some()
        });
        if !daemon.alive() {
            continue; // port taken meanwhile
        }
        assert_eq!(tag_via(port).as_deref(), Some("A"));
        std::fs::write(dir.join("d.yaml"), yaml(b.addr)).unwrap();
        daemon.signal(libc::SIGHUP);
        let _ = wait_until("the reload", WAIT, || tag_via(port).as_deref() == Some("B"));
        let log = std::fs::read_to_string(dir.join("d.log")).unwrap_or_default();
        assert_eq!(tag_via(port).as_deref(), Some("B"), "not reloaded:\n{log}");
        daemon.signal(libc::SIGTERM);
        let _ = wait_until("the daemon to exit", WAIT, || {
            !daemon.alive() && !pidfile.exists()
        });
        assert!(!pidfile.exists(), "pidfile left behind");
        assert!(!daemon.alive(), "daemon did not exit on SIGTERM");
        return;
    }
    panic!("could not find a free port");
}

/// Every garbage file exits 64 fast, in little memory, with one line.
#[test]
fn garbage_config_files_exit_64_fast_in_little_memory() {
    let dir = TempDir::new("garbage");
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

/// `--check` refuses `f` at once with exit 64 and one line (returned).
fn check_rejected(f: &Path, prlimit: bool, name: &str) -> String {
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
    assert!(
        took < stretched(Duration::from_secs(3)),
        "{name} took {took:?}"
    );
    err.into_owned()
}

/// Reloads that change a listener under steady connection load lose
/// no connection.
#[test]
fn reloads_under_connection_load_lose_no_connection() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let (bal, ports, cfg) = start_with(1, &[], |p| {
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
        bal.signal(libc::SIGHUP);
        bal.wait_running("reload", || bal.stderr().matches("reload: ").count() > i);
        // The clients run on the new config a while before the next
        // reload: a pace, not a wait for anything.
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
    assert_eq!(
        bal.stderr().matches("1 changed").count(),
        6,
        "{}",
        bal.stderr()
    );
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
    let a = Backend::tagged("A");
    let (bal, ports, cfg) = start_with(1, &[], |p| {
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
    bal.signal(libc::SIGHUP);
    bal.wait_running("reload", || bal.stderr().matches("reload: ").count() > 0);
    assert!(
        !bal.stderr().contains("after a restart"),
        "{}",
        bal.stderr()
    );
    let (_live, _) = Live::open(ports[0]);
    bal.signal(libc::SIGTERM);
    let t = Instant::now();
    let st = bal
        .wait_exit(Duration::from_secs(15))
        .unwrap_or_else(|| panic!("balance did not exit:\n{}", bal.stderr()));
    assert!(st.success());
    assert!(
        t.elapsed() < stretched(Duration::from_secs(10)),
        "old grace used: {:?}",
        t.elapsed()
    );
}

#[test]
fn control_reload_applies_a_good_file_and_rejects_a_broken_one() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let (bal, ports, cfg) = start_with(1, &[], |p| {
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
    let out = bal.ctl_out_on(p, "reload");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "reload failed: {out:?}");
    assert!(stdout.contains("1 changed"), "{stdout}");
    let tags: Vec<String> = (0..4).filter_map(|_| tag_via(p)).collect();
    assert!(tags.iter().any(|t| t == "B"), "B takes traffic: {tags:?}");
    assert!(live.echo("across the reload"));

    std::fs::write(&cfg, "listeners: [ {\n").unwrap();
    // The control socket of the changed listener is re-created by the
    // reload; poll until it answers again.
    let mut last = None;
    let _ = wait_until("the rejected reload", WAIT, || {
        let out = bal.ctl_out_on(p, "reload");
        let rejected = out.status.code() == Some(1);
        last = Some(out);
        rejected
    });
    let out = last.expect("asked once");
    // A failed command's answer is on stdout, as balance.fm's client printed.
    let answer = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        answer.contains("reload rejected") && answer.contains("line"),
        "{answer}"
    );
    assert!(tag_via(p).is_some(), "the old config keeps serving");
    assert!(live.echo("after the rejected reload"));
}

#[test]
fn a_fifo_or_a_device_as_config_is_refused_at_once_with_exit_64() {
    let tmp = TempDir::new("cfgfifo");
    let fifo = tmp.join("balance.yaml");
    let made = Command::new("mkfifo").arg(&fifo).status().unwrap();
    assert!(made.success());
    let fifo = fifo.to_str().unwrap();
    for (args, what) in [
        (vec!["--config", fifo, "--check"], "a FIFO"),
        (vec!["-f", "--config", fifo], "a FIFO"),
        (
            vec!["--config", "/dev/zero", "--check"],
            "a character device",
        ),
    ] {
        let (code, err) = run_to_exit(&args, Duration::from_secs(10));
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("not a regular file") && err.contains(what),
            "{args:?}: {err}"
        );
    }
}

/// `n` peers on `port` that each send one byte every `every` and never end
/// their request; one that is closed comes back at once. Until `stop`.
fn tricklers(
    port: u16,
    n: usize,
    every: Duration,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
) -> thread::JoinHandle<usize> {
    let open = move || {
        let s = TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.set_nodelay(true).ok()?;
        Some(s)
    };
    let mut conns: Vec<Option<TcpStream>> = (0..n).map(|_| open()).collect();
    thread::spawn(move || {
        let mut reconnects = 0;
        while !stop.load(Ordering::SeqCst) {
            for c in conns.iter_mut() {
                let ok = c.as_mut().is_some_and(|s| s.write_all(b"x").is_ok());
                if !ok {
                    *c = open();
                    reconnects += 1;
                }
            }
            thread::sleep(every);
        }
        reconnects
    })
}

#[test]
fn scrapes_get_through_a_hundred_slow_clients() {
    let a = Backend::tagged("A");
    let (_bal, _lp, mp) = start_cli_with_metrics(&[&a.addr.to_string()]);
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let slow = tricklers(mp, 100, Duration::from_millis(250), stop.clone());
    // Connected; let them send a little first (no readiness to poll: the
    // point is that they have been pending for a while).
    thread::sleep(Duration::from_millis(500));
    for i in 0..10 {
        let t0 = Instant::now();
        let text = scrape(mp);
        assert!(
            text.contains("balance_listener_accepted_total"),
            "scrape {i}"
        );
        assert!(
            t0.elapsed() < stretched(Duration::from_secs(2)),
            "scrape {i} took {:?}",
            t0.elapsed()
        );
    }
    stop.store(true, Ordering::SeqCst);
    slow.join().unwrap();
}

/// `balance -c CMD --control PATH PORT`.
fn ctl_at(sock: &Path, port: u16, cmd: &str) -> std::process::Output {
    Command::new(BIN)
        .args(["-b", "127.0.0.1", "-c", cmd, "--control"])
        .arg(sock)
        .arg(port.to_string())
        .stdin(Stdio::null())
        .output()
        .expect("run balance -c")
}

#[test]
fn control_dir_keeps_sockets_when_a_reload_leaves_one_listener() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let tmp = TempDir::new("ctldir");
    let dir = tmp.join("ctl");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    let (bal, ports, cfg) = start_with(2, &["--control", &d], |p| {
        format!(
            "listeners:\n{}{}",
            listener_yaml("one", p[0], &[a.addr]),
            listener_yaml("two", p[1], &[b.addr])
        )
    });
    let sock0 = dir.join(format!("127.0.0.1:{}.sock", ports[0]));
    wait_until("the first control socket", WAIT, || {
        ctl_at(&sock0, ports[0], "version").status.success()
    })
    .unwrap();
    // Down to one listener, and that one changed: its socket is re-created.
    std::fs::write(
        &cfg,
        format!(
            "listeners:\n{}",
            listener_yaml("one", ports[0], &[a.addr, b.addr])
        ),
    )
    .unwrap();
    let out = ctl_at(&sock0, ports[0], "reload");
    assert!(out.status.success(), "{}", output_text(&out));
    // The directory, given as --control, reaches it as well.
    for path in [sock0.as_path(), dir.as_path()] {
        let out = ctl_at(path, ports[0], "show");
        assert!(out.status.success(), "{path:?}: {}", output_text(&out));
    }
    assert!(!bal.has("not available"), "{}", bal.stderr());
}

#[test]
fn control_socket_of_one_listener_survives_a_reload_to_two() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let tmp = TempDir::new("ctlsock");
    let sock = tmp.join("ctl.sock");
    let extra = free_port(LOCALHOST_V4);
    let bal = Balance::config(1, |p| {
        format!("listeners:\n{}", listener_yaml("one", p[0], &[a.addr]))
    })
    .control(&sock)
    .start();
    let p = bal.port();
    std::fs::write(
        bal.config_path(),
        format!(
            "listeners:\n{}{}",
            listener_yaml("one", p, &[a.addr, b.addr]),
            listener_yaml("two", extra, &[b.addr])
        ),
    )
    .unwrap();
    // One socket path cannot serve two listeners: the reload says so and
    // changes nothing (it must not report success with a listener nobody
    // can reach).
    let out = ctl_at(&sock, p, "reload");
    assert_eq!(out.status.code(), Some(1), "{}", output_text(&out));
    assert!(
        output_text(&out).contains("single listener"),
        "{}",
        output_text(&out)
    );
    let out = ctl_at(&sock, p, "show");
    assert!(out.status.success(), "{}", output_text(&out));
    assert!(TcpStream::connect(("127.0.0.1", extra)).is_err());
    assert_eq!(tag_via(p).as_deref(), Some("A"));
}

#[test]
fn a_second_instance_with_the_same_pidfile_exits_71_naming_the_first() {
    let a = Backend::tagged("A");
    let tmp = TempDir::new("pidlock");
    let pidfile = tmp.join("balance.pid");
    let pf = pidfile.to_str().unwrap().to_string();
    let first = Balance::cli(&[a.addr.to_string()])
        .opts(&["--pidfile", &pf])
        .start();
    let mine = format!("{}\n", first.pid());
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), mine);
    let port = free_port(LOCALHOST_V4);
    let second = Command::new(BIN)
        .args(["-f", "-b", "127.0.0.1", "--pidfile", &pf])
        .arg(port.to_string())
        .arg(a.addr.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid2 = second.id();
    let out = run_with_timeout(second, WAIT);
    let Some(out) = out else {
        kill(pid2, libc::SIGKILL);
        panic!("the second instance kept running");
    };
    assert_eq!(out.status.code(), Some(71), "{}", output_text(&out));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("pid {}", first.pid())), "{err}");
    // The first one's pidfile is untouched.
    assert_eq!(std::fs::read_to_string(&pidfile).unwrap(), mine);
    assert_eq!(tag_via(first.port()).as_deref(), Some("A"));
    first.terminate();
    assert!(!pidfile.exists(), "the holder removes its pidfile at exit");
}

/// Wait for `child` to exit within `limit`: its output, or None.
fn run_with_timeout(
    mut child: std::process::Child,
    limit: Duration,
) -> Option<std::process::Output> {
    let res = wait_for("the process to exit", limit, || {
        child.try_wait().ok().flatten()
    });
    res.ok()?;
    child.wait_with_output().ok()
}

#[test]
fn channels_pointing_at_another_listener_of_the_file_are_refused() {
    let tmp = TempDir::new("crossloop");
    let (p1, p2) = (free_port(LOCALHOST_V4), free_port(LOCALHOST_V4));
    for (b1, c1, what) in [
        ("127.0.0.1", format!("127.0.0.1:{p2}"), "literal"),
        ("127.0.0.1", format!("localhost:{p2}"), "localhost"),
        ("0.0.0.0", format!("127.0.0.1:{p2}"), "into a wildcard"),
    ] {
        let f = tmp.join("loop.yaml");
        std::fs::write(
            &f,
            format!(
                "listeners:\n  - name: a\n    bind: \"127.0.0.1:{p1}\"\n    groups:\n      - channels: [\"{c1}\"]\n  - name: b\n    bind: \"{b1}:{p2}\"\n    groups:\n      - channels: [\"127.0.0.1:{p1}\"]\n"
            ),
        )
        .unwrap();
        let out = Command::new(BIN)
            .args(["--config", f.to_str().unwrap(), "--check"])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(64), "{what}: {err}");
        assert!(
            err.contains("listener \"b\"") && err.contains("this process"),
            "{what}: {err}"
        );
    }
}

#[test]
fn create_and_assign_of_another_listener_of_the_process_are_refused() {
    let a = Backend::tagged("A");
    let tmp = TempDir::new("crossctl");
    let dir = tmp.join("ctl");
    std::fs::create_dir(&dir).unwrap();
    let d = dir.to_str().unwrap().to_string();
    let (_bal, ports, _) = start_with(2, &["--control", &d], |p| {
        format!(
            "listeners:\n{}{}",
            listener_yaml("a", p[0], &[a.addr]),
            listener_yaml("b", p[1], &[a.addr])
        )
    });
    let sock = dir.join(format!("127.0.0.1:{}.sock", ports[0]));
    wait_until("the control socket", WAIT, || {
        ctl_at(&sock, ports[0], "version").status.success()
    })
    .unwrap();
    assert!(ctl_at(&sock, ports[0], "disable 0").status.success());
    for cmd in [
        format!("create 127.0.0.1 {}", ports[1]),
        format!("create localhost {}", ports[1]),
        format!("assign 0 127.0.0.1 {}", ports[1]),
    ] {
        let out = ctl_at(&sock, ports[0], &cmd);
        let text = output_text(&out);
        assert_eq!(out.status.code(), Some(1), "{cmd}: {text}");
        assert!(text.contains("listener \"b\""), "{cmd}: {text}");
    }
}

/// A non-loopback address of this host, if it has one.
fn host_address() -> Option<std::net::IpAddr> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show", "scope", "global"])
        .output()
        .ok()?;
    String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .skip_while(|w| *w != "inet")
        .nth(1)
        .and_then(|a| a.split('/').next()?.parse().ok())
}

#[test]
fn a_loop_the_checks_cannot_see_is_cut_at_its_first_hop() {
    let Some(ip) = host_address() else {
        eprintln!("skipped: no non-loopback address on this host");
        return;
    };
    // A wildcard listener whose channel is this host's own interface
    // address: no configuration check knows it is local. --max-conns
    // bounds the damage when the loop is not cut.
    let port = free_port(LOCALHOST_V4);
    let bal = Balance::cli(&[format!("{ip}:{port}")])
        .no_bind()
        .port(port)
        .opts(&["--max-conns", "300"])
        .start();
    let base = bal.fd_count();
    // The loop is cut: the client's connection ends (a reset or an EOF)
    // instead of hanging while connections pile up. The reset can come
    // before connect(2) returns here (established, then reset while this
    // thread waited to run): that is the cut too.
    let r = TcpStream::connect(("127.0.0.1", port)).and_then(|mut c| {
        c.set_read_timeout(Some(WAIT))?;
        let _ = c.write_all(b"hello");
        c.read(&mut [0u8; 16])
    });
    assert!(
        matches!(r, Ok(0))
            || r.is_err_and(|e| e.kind() != std::io::ErrorKind::WouldBlock
                && e.kind() != std::io::ErrorKind::TimedOut
                && e.kind() != std::io::ErrorKind::ConnectionRefused),
        "the client was not let go"
    );
    assert!(bal.has("loops back"), "{}", bal.stderr());
    bal.wait_running("connections of the loop closed", || {
        bal.fd_count() <= base + 2
    });
}

#[test]
fn a_reload_of_a_listener_with_thousands_of_channels_does_not_stall_clients() {
    let a = Backend::tagged("A");
    // Group 0 serves; group 1 is 8,000 backups nobody reaches.
    let file = |p: u16, extra: bool| {
        let mut chans: Vec<String> = (0..8000)
            .map(|i| format!("\"127.0.0.2:{}\"", 20000 + i))
            .collect();
        if extra {
            chans.push("\"127.0.0.3:9\"".into());
        }
        format!(
            "listeners:\n  - name: big\n    bind: \"127.0.0.1:{p}\"\n    groups:\n      - channels: [\"{}\"]\n      - channels: [{}]\n",
            a.addr,
            chans.join(", ")
        )
    };
    let (bal, ports, cfg) = start_with(1, &[], |p| file(p[0], false));
    let p = ports[0];
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let probe = {
        let stop = stop.clone();
        thread::spawn(move || {
            let mut worst = Duration::ZERO;
            while !stop.load(Ordering::SeqCst) {
                let t = Instant::now();
                assert_eq!(tag_via(p).as_deref(), Some("A"));
                worst = worst.max(t.elapsed());
            }
            worst
        })
    };
    std::fs::write(&cfg, file(p, true)).unwrap();
    let t = Instant::now();
    bal.signal(libc::SIGHUP);
    bal.wait_running("the reload", || {
        bal.has("reload: 0 added, 0 removed, 1 changed")
    });
    let took = t.elapsed();
    stop.store(true, Ordering::SeqCst);
    let worst = probe.join().unwrap();
    eprintln!("reload {took:?}, worst client {worst:?}");
    // A generous bound for a debug build (stretched by the machine's load):
    // a quadratic reload on the runtime thread stalled every client for
    // seconds here.
    let bound = stretched(Duration::from_millis(500));
    assert!(worst < bound, "worst client {worst:?} (bound {bound:?})");
}

// ------------------------------------------------------------------- names

/// A listener whose first group and its first channel are named in the
/// file; `first` is db101's backend.
fn named_yaml(port: u16, first: SocketAddr, b: SocketAddr, c: SocketAddr) -> String {
    format!(
        "listeners:\n  - name: web\n    bind: \"127.0.0.1:{port}\"\n    connect_timeout: 1s\n    groups:\n      - name: pod1\n        channels:\n          - {{name: db101, host: \"{}\", port: {}}}\n          - \"{b}\"\n      - channels: [\"{c}\"]\n",
        first.ip(),
        first.port()
    )
}

#[test]
fn names_from_the_file_and_their_defaults_address_channels_and_groups_and_follow_a_reload() {
    let (a, b, c, d) = (
        Backend::tagged("A"),
        Backend::tagged("B"),
        Backend::tagged("C"),
        Backend::tagged("D"),
    );
    let tmp = TempDir::new("names");
    let state = tmp.join("state.json");
    let st = state.to_str().unwrap().to_string();
    let (bal, ports, cfg) = start_with(2, &["--state-file", &st], |p| {
        format!(
            "metrics: \"127.0.0.1:{}\"\n{}",
            p[1],
            named_yaml(p[0], a.addr, b.addr, c.addr)
        )
    });
    let names = |bal: &Balance| -> Vec<String> {
        let j = bal.json();
        j["channels"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap().to_string())
            .collect()
    };
    let (bn, cn) = (
        format!("127.0.0.1-{}", b.addr.port()),
        format!("127.0.0.1-{}", c.addr.port()),
    );
    assert_eq!(names(&bal), ["db101", bn.as_str(), cn.as_str()]);
    let j = bal.json();
    assert_eq!(j["groups"][0]["name"], "pod1");
    assert_eq!(j["groups"][1]["name"], "group1");
    // Metrics carry the name as a label; the other labels stay.
    let text = scrape(ports[1]);
    let want = format!(
        "balance_channel_active_connections{{listener=\"web\",group=\"0\",index=\"0\",channel=\"{}\",name=\"db101\"}} 0",
        a.addr
    );
    assert!(text.lines().any(|l| l == want), "{want}\n{text}");

    // Control by name: a channel wherever an index goes, a group.
    assert_eq!(bal.ctl("disable db101"), "channel db101 disabled\n");
    assert_eq!(
        bal.ctl("weight db101 3"),
        "weight of channel db101 changed to 3\n"
    );
    assert_eq!(bal.ctl("group group1; hash"), "group 1 set to hash\n");
    assert_eq!(
        bal.ctl(&format!("drain {cn}")),
        format!("channel {cn} draining (0 live connections continue)\n")
    );
    for _ in 0..4 {
        assert_eq!(tag_via(ports[0]).as_deref(), Some("B"));
    }
    let out = bal.ctl_out("disable nosuch");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        output_text(&out).contains("no such channel nosuch"),
        "{out:?}"
    );
    let out = bal.ctl_out("group nosuch");
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    assert!(
        output_text(&out).contains("no such group nosuch"),
        "{out:?}"
    );
    // The state file keys channels and groups by name.
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let l = &saved["listeners"]["web"];
    assert_eq!(l["groups"][0]["name"], "pod1");
    assert_eq!(l["groups"][0]["channels"][0]["name"], "db101");
    assert_eq!(l["groups"][0]["channels"][0]["admin"], "disabled");

    // Reload: db101 moves to another backend (and another place in its
    // group); it is the same channel, still disabled with its weight.
    std::fs::write(
        &cfg,
        format!(
            "metrics: \"127.0.0.1:{}\"\n{}",
            ports[1],
            named_yaml(ports[0], d.addr, b.addr, c.addr)
        ),
    )
    .unwrap();
    bal.signal(libc::SIGHUP);
    bal.wait_running("reloaded", || bal.has("removed, 1 changed"));
    // Log lines about a channel name it.
    let log = bal.stderr();
    assert!(
        log.lines()
            .any(|l| l.contains("channel added") && l.contains("name=db101")),
        "{log}"
    );
    let j = bal.json();
    let db = &j["channels"][0];
    assert_eq!(db["name"], "db101");
    assert_eq!(db["port"], d.addr.port());
    assert_eq!(db["state"], "DIS", "{j}");
    assert_eq!(db["weight"], 3);
    assert_eq!(db["initial_weight"], 1);
    assert_eq!(bal.ctl("enable db101"), "channel db101 enabled\n");
    let mut seen = std::collections::HashSet::new();
    for _ in 0..6 {
        seen.insert(tag_via(ports[0]).unwrap_or_default());
    }
    assert!(seen.contains("D") && !seen.contains("A"), "{seen:?}");
}

#[test]
fn names_that_are_all_digits_bad_or_used_twice_are_refused_at_load() {
    let dir = TempDir::new("badnames");
    let yaml = |group: &str, first: &str, second: &str| {
        format!(
            "listeners:\n  - name: x\n    bind: \"127.0.0.1:9\"\n    groups:\n      - {group}channels:\n          - {{name: {first}, host: 127.0.0.1, port: 1}}\n          - {{name: {second}, host: 127.0.0.1, port: 2}}\n"
        )
    };
    for (file, want) in [
        (
            yaml("", "\"101\"", "b"),
            "bad name \"101\": a name is not all digits",
        ),
        (
            yaml("", "101", "b"),
            "bad name \"101\": a name is not all digits",
        ),
        (yaml("", "a/b", "b"), "bad name \"a/b\""),
        (yaml("", "a;b", "b"), "bad name \"a;b\""),
        (yaml("", "db1", "db1"), "channel name \"db1\" is used twice"),
        (yaml("name: \"7\"\n        ", "a", "b"), "not all digits"),
        // Two groups of one listener with the same name.
        (
            "listeners:\n  - name: x\n    bind: \"127.0.0.1:9\"\n    groups:\n      - {name: g, channels: [\"127.0.0.1:1\"]}\n      - {name: g, channels: [\"127.0.0.1:2\"]}\n".to_string(),
            "group name \"g\" is used twice",
        ),
    ] {
        let f = dir.join("bad.yaml");
        std::fs::write(&f, &file).unwrap();
        let err = check_rejected(&f, false, &file);
        assert!(err.contains(want), "{file}\nwant {want:?} in {err}");
    }
}
