//! The connection log (`connection_log:`, `--connection-log`): one line
//! per connection as it ends, in HAProxy's `tcplog` layout or JSON.
//!
//! Sessions that end each way (normal, client abort, server abort,
//! refused, connect timeout, idle timeout, killed when the channel went
//! down, ended by an operator, no channel, held by `--spin` then served,
//! held until `--spin` expired, client gone while held, a race won) are
//! parsed with a regex written from
//! HAProxy's configuration manual (8.2.2 "TCP log format" and 8.5's
//! termination states), not from our output; JSON lines with serde_json.
//! Then: a file reopened after logrotate's rename with SIGUSR1 and
//! without it; a syslog target on a test-bound datagram socket; lines
//! dropped and counted while the sink blocks (a FIFO nobody reads).

use crate::common;

use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::os::unix::net::UnixDatagram;
use std::path::Path;
use std::time::{Duration, Instant};

use common::*;
use regex::Regex;

/// How long a line may take to reach its file: the writer's batching
/// (20 ms) plus scheduling.
const LINE_WAIT: Duration = Duration::from_secs(5);

/// HAProxy's tcplog, field by field as section 8.2.2 lists them:
///
/// ```text
///   2   client_ip ':' client_port
///   3   '[' accept_date ']'            (dd/Mmm/yyyy:hh:mm:ss.ms)
///   4   frontend_name
///   5   backend_name '/' server_name   ("<NOSRV>" when none was reached)
///   6   Tw '/' Tc '/' Tt*              (-1 when not reached; '+' with logasap)
///   7   bytes_read*
///   8   termination_state              (two characters, 8.5)
///   9   actconn '/' feconn '/' beconn '/' srv_conn '/' retries*
///  10   srv_queue '/' backend_queue
/// ```
///
/// Field 1 (`process_name[pid]:`) is syslog's header, absent in a file.
fn tcplog_regex() -> Regex {
    Regex::new(concat!(
        r"^(?P<client_ip>[0-9A-Fa-f.:]+):(?P<client_port>\d{1,5}) ",
        r"\[(?P<accept_date>\d{2}/(?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)/\d{4}:\d{2}:\d{2}:\d{2}\.\d{3})\] ",
        r"(?P<frontend_name>\S+) ",
        r"(?P<backend_name>[^/\s]+)/(?P<server_name>\S+) ",
        r"(?P<Tw>-1|\d+)/(?P<Tc>-1|\d+)/(?P<Tt>\+?\d+) ",
        r"(?P<bytes_read>\+?\d+) ",
        // First character: C S P L R I D U K c s -; second: R Q C H D L T -.
        r"(?P<termination_state>[CSPLRIDUKcs-][RQCHDLT-]) ",
        r"(?P<actconn>\d+)/(?P<feconn>\d+)/(?P<beconn>\d+)/(?P<srv_conn>\d+)/(?P<retries>\+?\d+) ",
        r"(?P<srv_queue>\d+)/(?P<backend_queue>\d+)$",
    ))
    .expect("tcplog regex")
}

/// One parsed line, the same fields from either format.
#[derive(Debug, Clone)]
struct Line {
    client_port: u16,
    frontend: String,
    backend: String,
    server: String,
    tw: i64,
    tc: i64,
    tt: i64,
    bytes_read: u64,
    state: String,
    retries: u64,
    json: Option<serde_json::Value>,
}

fn parse_tcplog(re: &Regex, l: &str) -> Line {
    let c = re
        .captures(l)
        .unwrap_or_else(|| panic!("not HAProxy's tcplog: {l:?}"));
    let n = |k: &str| -> i64 { c[k].trim_start_matches('+').parse().expect(k) };
    Line {
        client_port: c["client_port"].parse().expect("port"),
        frontend: c["frontend_name"].to_string(),
        backend: c["backend_name"].to_string(),
        server: c["server_name"].to_string(),
        tw: n("Tw"),
        tc: n("Tc"),
        tt: n("Tt"),
        bytes_read: n("bytes_read") as u64,
        state: c["termination_state"].to_string(),
        retries: n("retries") as u64,
        json: None,
    }
}

fn parse_json(l: &str) -> Line {
    let v: serde_json::Value =
        serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
    let i = |k: &str| v[k].as_i64().unwrap_or_else(|| panic!("{k} in {l}"));
    let s = |k: &str| {
        v[k].as_str()
            .unwrap_or_else(|| panic!("{k} in {l}"))
            .to_string()
    };
    Line {
        client_port: i("client_port") as u16,
        frontend: s("frontend_name"),
        backend: s("backend_name"),
        server: s("server_name"),
        tw: i("Tw"),
        tc: i("Tc"),
        tt: i("Tt"),
        bytes_read: i("bytes_read") as u64,
        state: s("termination_state"),
        retries: i("retries") as u64,
        json: Some(v),
    }
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

/// The parsed lines of `path` once it has `n` of them.
fn wait_lines(path: &Path, n: usize, json: bool) -> Vec<Line> {
    let lines = wait_for(
        &format!("{n} lines in {}", path.display()),
        LINE_WAIT,
        || {
            let l = read_lines(path);
            (l.len() >= n).then_some(l)
        },
    )
    .unwrap_or_else(|e| panic!("{e}: {:?}", read_lines(path)));
    let re = tcplog_regex();
    lines
        .iter()
        .map(|l| {
            if json {
                parse_json(l)
            } else {
                parse_tcplog(&re, l)
            }
        })
        .collect()
}

/// The line of listener `name`'s client whose local port is `port` (a
/// local port repeats across destinations).
fn line_of(lines: &[Line], name: &str, port: u16) -> Line {
    lines
        .iter()
        .find(|l| l.client_port == port && l.frontend == name)
        .unwrap_or_else(|| panic!("no line for {name}'s client port {port}: {lines:#?}"))
        .clone()
}

fn local_port(s: &TcpStream) -> u16 {
    s.local_addr().expect("local address").port()
}

fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(s);
}

/// The default name of the channel `host:port` (`HOST-PORT`).
fn name_of(channel: &str) -> String {
    channel.replace(':', "-")
}

/// Read until EOF or an error; what was read.
fn drain(s: &mut TcpStream) -> Vec<u8> {
    let mut out = Vec::new();
    let mut b = [0u8; 4096];
    loop {
        match s.read(&mut b) {
            Ok(0) | Err(_) => return out,
            Ok(n) => out.extend_from_slice(&b[..n]),
        }
    }
}

/// The scenarios' listeners, in order (each its own port).
const NAMES: [&str; 13] = [
    "ok", "cabort", "sabort", "refused", "ctimeout", "idle", "nochan", "spin", "spinexp",
    "spingone", "down", "race", "opkill",
];

/// Run every ending through one balance whose top-level default logs
/// to `log` in `format`; check each line.
fn every_ending(format: &str) {
    let json = format == "json";
    let tmp = TempDir::new("connlog");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let log = tmp.path().join("conn.log");
    let tagged = Backend::tagged("A");
    let sabort = rst_after(b"bye");
    let refused = Refused::new();
    let hole = Blackhole::new();
    let down = Backend::tagged("D");
    let backends = [
        tagged.channel(),
        tagged.channel(),
        sabort.channel(),
        refused.channel(),
        hole.channel(),
        tagged.channel(),
        tagged.channel(),
        tagged.channel(),
        tagged.channel(),
        tagged.channel(),
        down.channel(),
        // Group 0 the blackhole, group 1 the tagged backend.
        format!(
            "{}\"]\n      - channels: [\"{}",
            hole.channel(),
            tagged.channel()
        ),
        tagged.channel(),
    ];
    let extra = [
        "",
        "",
        "",
        "",
        "    connect_timeout: 300ms\n",
        "    idle_timeout: 300ms\n",
        "",
        "    spin: 10s\n",
        "    spin: 300ms\n",
        "    spin: 10s\n",
        "    on_down: shutdown\n    monitor:\n      interval: 100ms\n      fall: 1\n      rise: 1\n      checks:\n        - connect: {}\n",
        "    race: 200ms\n",
        "",
    ];
    let logp = log.display().to_string();
    let hsock = tmp.path().join("haproxy.sock");
    let hsockp = hsock.display().to_string();
    let bal = Balance::config(NAMES.len(), |p| {
        let mut y = format!(
            "haproxy_socket: \"{hsockp}\"\nconnection_log:\n  target: \"{logp}\"\n  format: {format}\nlisteners:\n"
        );
        for (i, name) in NAMES.iter().enumerate() {
            y.push_str(&format!(
                "  - name: {name}\n    bind: \"127.0.0.1:{}\"\n{}    groups:\n      - channels: [\"{}\"]\n",
                p[i], extra[i], backends[i]
            ));
        }
        y
    })
    .run_dir(&run)
    .start();
    let port = |name: &str| bal.ports()[NAMES.iter().position(|n| *n == name).unwrap()];
    let addr = |name: &str| std::net::SocketAddr::from(([127, 0, 0, 1], port(name)));
    // The listener's own socket in the run directory (the harness's
    // `ctl_out_on` names the first listener's socket).
    let ctl_out = |name: &str, cmd: &str| {
        std::process::Command::new(BIN)
            .args(["-b", "127.0.0.1", "-c", cmd, &port(name).to_string()])
            .env("BALANCE_RUNDIR", &run)
            .output()
            .expect("balance -c")
    };
    let ctl = |name: &str, cmd: &str| {
        let o = ctl_out(name, cmd);
        assert!(o.status.success(), "{name}: {cmd}: {o:?}");
    };
    let spinning = |name: &str| {
        let o = ctl_out(name, "show json");
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).expect("show json");
        v["listener"]["spinning"].as_u64().unwrap_or(0)
    };
    let mut ports = Vec::new();

    // Normal: the backend's tag and our bytes echoed, both sides close.
    let mut c = connect(addr("ok"));
    c.write_all(b"hi").unwrap();
    c.shutdown(Shutdown::Write).unwrap();
    assert_eq!(drain(&mut c), b"A\nhi");
    ports.push(("ok", local_port(&c)));
    drop(c);

    // The client resets in the data phase.
    let mut c = connect(addr("cabort"));
    assert_eq!(read_line(&mut c).unwrap(), "A");
    ports.push(("cabort", local_port(&c)));
    reset(c);

    // The backend resets in the data phase.
    let mut c = connect(addr("sabort"));
    let got = drain(&mut c);
    assert!(got.starts_with(b"bye"), "{got:?}");
    ports.push(("sabort", local_port(&c)));
    drop(c);

    // Refused, and the connect timeout (the client sees the close).
    for name in ["refused", "ctimeout"] {
        let mut c = connect(addr(name));
        assert!(drain(&mut c).is_empty());
        ports.push((name, local_port(&c)));
    }

    // Idle for longer than idle_timeout.
    // The idle timer starts no earlier than our connect, so the close
    // comes at least idle_timeout after this instant.
    let idle_start = Instant::now();
    let mut c = connect(addr("idle"));
    assert_eq!(read_line(&mut c).unwrap(), "A");
    assert!(drain(&mut c).is_empty());
    assert!(idle_start.elapsed() >= Duration::from_millis(300));
    ports.push(("idle", local_port(&c)));

    // No channel: the only one is disabled.
    ctl("nochan", "disable 0");
    let mut c = connect(addr("nochan"));
    let got = drain(&mut c);
    assert!(got.is_empty(), "{:?}", String::from_utf8_lossy(&got));
    ports.push(("nochan", local_port(&c)));

    // Held by --spin for a while, then served.
    ctl("spin", "disable 0");
    let mut c = connect(addr("spin"));
    wait_until("the client to spin", LINE_WAIT, || spinning("spin") == 1).unwrap();
    let held = Instant::now();
    // The hold the line must show: a duration we make, not a guess.
    std::thread::sleep(Duration::from_millis(300));
    ctl("spin", "enable 0");
    assert_eq!(read_line(&mut c).unwrap(), "A");
    let held_ms = held.elapsed().as_millis() as i64;
    c.shutdown(Shutdown::Write).unwrap();
    drain(&mut c);
    ports.push(("spin", local_port(&c)));
    drop(c);

    // Held until --spin expires.
    ctl("spinexp", "disable 0");
    let mut c = connect(addr("spinexp"));
    assert!(drain(&mut c).is_empty());
    ports.push(("spinexp", local_port(&c)));

    // The client leaves while held.
    ctl("spingone", "disable 0");
    let c = connect(addr("spingone"));
    wait_until("the client to spin", LINE_WAIT, || {
        spinning("spingone") == 1
    })
    .unwrap();
    ports.push(("spingone", local_port(&c)));
    reset(c);

    // The channel goes down under a live session (on_down: shutdown).
    let mut c = connect(addr("down"));
    assert_eq!(read_line(&mut c).unwrap(), "D");
    down.stop();
    drain(&mut c);
    ports.push(("down", local_port(&c)));

    // --race: the blackholed connect is overtaken by group 1's.
    let mut c = connect(addr("race"));
    assert_eq!(read_line(&mut c).unwrap(), "A");
    c.shutdown(Shutdown::Write).unwrap();
    drain(&mut c);
    ports.push(("race", local_port(&c)));

    // An operator ends the channel's sessions (HAProxy's `shutdown
    // sessions server` on the HAProxy socket).
    let mut c = connect(addr("opkill"));
    assert_eq!(read_line(&mut c).unwrap(), "A");
    let mut h = std::os::unix::net::UnixStream::connect(&hsock).expect("haproxy socket");
    h.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    writeln!(
        h,
        "shutdown sessions server opkill/{}",
        name_of(&tagged.channel())
    )
    .unwrap();
    let mut answer = String::new();
    let _ = h.read_to_string(&mut answer);
    drain(&mut c);
    ports.push(("opkill", local_port(&c)));

    let lines = wait_lines(&log, ports.len(), json);
    assert_eq!(lines.len(), ports.len(), "one line per connection");
    let mut seen = Vec::new();
    for (name, p) in &ports {
        let l = line_of(&lines, name, *p);
        assert_eq!(&l.frontend, name, "{l:?}");
        assert_eq!(&l.backend, name, "{l:?}");
        assert!(l.tt >= 0 && l.tw >= 0, "{l:?}");
        seen.push(format!("{name}: {}", l.state));
        let want = match *name {
            "ok" => "--",
            "cabort" => "CD",
            "sabort" => "SD",
            "refused" => "SC",
            "ctimeout" => "sC",
            "idle" => "cD",
            "nochan" => "SC",
            "spin" => "--",
            "spinexp" => "sQ",
            "spingone" => "CQ",
            "down" => "DD",
            "race" => "--",
            "opkill" => "KD",
            _ => unreachable!(),
        };
        assert_eq!(l.state, want, "{name}: {l:?}");
        match *name {
            "ok" => {
                assert_eq!(l.server, name_of(&tagged.channel()), "{l:?}");
                assert_eq!(l.bytes_read, 4, "the tag and the echo: {l:?}");
                assert!(l.tc >= 0 && l.tw == 0 && l.retries == 0, "{l:?}");
                if let Some(v) = &l.json {
                    assert_eq!(v["bytes_uploaded"], 2, "{v}");
                    assert!(v["first_byte_ms"].is_u64(), "the tag came first: {v}");
                    assert_eq!(v["group"], "group0", "{v}");
                    assert_eq!(v["group_index"], 0, "{v}");
                    assert_eq!(v["server_target"], tagged.channel(), "{v}");
                    assert!(v["race"].is_null(), "{v}");
                    assert_eq!(v["server_addr"], tagged.channel(), "{v}");
                }
            }
            "refused" | "ctimeout" => {
                let i = NAMES.iter().position(|n| n == name).unwrap();
                assert_eq!(l.server, name_of(&backends[i]), "{l:?}");
                assert_eq!((l.tc, l.retries), (-1, 1), "{l:?}");
            }
            "nochan" | "spinexp" | "spingone" => {
                assert_eq!(l.server, "<NOSRV>", "{l:?}");
                assert_eq!(l.tc, -1, "{l:?}");
                if *name == "spinexp" {
                    assert!(l.tw >= 300, "held until --spin expired: {l:?}");
                }
            }
            "spin" => {
                assert!(
                    l.tw >= 300 && l.tw <= held_ms + 50,
                    "held {held_ms} ms: {l:?}"
                );
                assert!(l.tt >= l.tw, "{l:?}");
            }
            "idle" => assert!(l.tt >= 300, "{l:?}"),
            "race" => {
                assert_eq!(l.server, name_of(&tagged.channel()), "{l:?}");
                assert!(l.tc >= 200 && l.retries == 0, "{l:?}");
                if let Some(v) = &l.json {
                    assert_eq!(v["race"], "racer_won", "{v}");
                    assert_eq!(v["group"], "group1", "{v}");
                }
            }
            _ => {}
        }
    }
    eprintln!("{format} lines:\n{}", read_lines(&log).join("\n"));
    eprintln!("{}", seen.join(", "));
}

#[test]
fn every_ending_has_its_haproxy_termination_state_in_tcplog() {
    every_ending("tcplog");
}

#[test]
fn every_ending_has_its_haproxy_termination_state_in_json() {
    every_ending("json");
}

/// One echo exchange through `bal`; its client port.
fn one(bal: &Balance) -> u16 {
    let mut c = bal.connect();
    assert_eq!(read_line(&mut c).unwrap(), "A");
    c.shutdown(Shutdown::Write).unwrap();
    drain(&mut c);
    local_port(&c)
}

#[test]
fn a_file_moved_by_logrotate_is_reopened_with_sigusr1_and_without() {
    let tmp = TempDir::new("connlog-rotate");
    let log = tmp.path().join("c.log");
    let b = Backend::tagged("A");
    let bal = Balance::cli(&[b.channel()])
        .opts(&["--connection-log", &log.display().to_string()])
        .start();
    one(&bal);
    wait_lines(&log, 1, false);

    // logrotate's `create` + `postrotate kill -USR1`: rename, signal.
    let rotated = tmp.path().join("c.log.1");
    std::fs::rename(&log, &rotated).unwrap();
    bal.signal(libc::SIGUSR1);
    // The signal is taken before later lines are written; the file appears.
    bal.wait_running("the reopen to be logged", || bal.has("SIGUSR1"));
    let p = one(&bal);
    let l = wait_lines(&log, 1, false);
    assert_eq!(l[0].client_port, p);
    assert_eq!(read_lines(&rotated).len(), 1, "the old file keeps its line");

    // Renamed without a signal: the writer sees the path name another
    // file (or none) within a second and opens it again.
    let rotated2 = tmp.path().join("c.log.2");
    std::fs::rename(&log, &rotated2).unwrap();
    let mut made = 0;
    wait_until("a line in the new file", LINE_WAIT, || {
        one(&bal);
        made += 1;
        !read_lines(&log).is_empty()
    })
    .unwrap();
    // Every line is in one of the two files.
    let total = |p: &Path| read_lines(p).len();
    wait_until("every line written", LINE_WAIT, || {
        total(&rotated2) - 1 + total(&log) == made
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {made} made, {} old, {} new",
            total(&rotated2),
            total(&log)
        )
    });
    assert!(bal.try_exit().is_none());
}

#[test]
fn syslog_target_sends_rfc3164_datagrams_with_the_tcplog_line() {
    let tmp = TempDir::new("connlog-syslog");
    let sock_path = tmp.path().join("log.sock");
    let sock = UnixDatagram::bind(&sock_path).unwrap();
    sock.set_read_timeout(Some(stretched(LINE_WAIT))).unwrap();
    let b = Backend::tagged("A");
    let bal = Balance::cli(&[b.channel()])
        .opts(&[
            "--connection-log",
            &format!("syslog:{}", sock_path.display()),
        ])
        .start();
    let p = one(&bal);
    let mut buf = [0u8; 2048];
    let n = sock.recv(&mut buf).expect("a datagram");
    let msg = std::str::from_utf8(&buf[..n]).unwrap();
    // RFC 3164: <PRI>Mmm dd hh:mm:ss TAG[PID]: MSG (local0.info = 134).
    let head = Regex::new(r"^<134>[A-Z][a-z]{2} [ \d]\d \d{2}:\d{2}:\d{2} balance\[(\d+)\]: (.*)$")
        .unwrap();
    let c = head
        .captures(msg)
        .unwrap_or_else(|| panic!("not RFC 3164: {msg:?}"));
    assert_eq!(c[1].parse::<u32>().unwrap(), bal.pid());
    let l = parse_tcplog(&tcplog_regex(), &c[2]);
    assert_eq!((l.client_port, l.state.as_str()), (p, "--"));
}

#[test]
fn a_blocked_sink_drops_lines_and_counts_them_without_slowing_clients() {
    let tmp = TempDir::new("connlog-fifo");
    let run = tmp.path().join("run");
    std::fs::create_dir_all(&run).unwrap();
    let fifo = tmp.path().join("fifo");
    let st = std::process::Command::new("mkfifo")
        .arg(&fifo)
        .status()
        .unwrap();
    assert!(st.success());
    let b = Backend::tagged("A");
    let bal = Balance::cli(&[b.channel()])
        .opts(&["--connection-log", &fifo.display().to_string()])
        .metrics()
        .run_dir(&run)
        .start();
    // Nobody opens the FIFO for reading: the writer waits in open(2) and
    // its queue (4096 lines) fills; a batch (at most 1024) is out of it.
    let n = 4096 + 1024 + 300;
    for _ in 0..n {
        one(&bal);
    }
    let dropped = bal.json()["log_dropped"].as_u64().unwrap();
    assert!(dropped >= 300 && dropped <= n as u64, "{dropped} of {n}");
    let text = scrape(bal.metrics_port());
    let scraped = text
        .lines()
        .find_map(|l| l.strip_prefix("balance_log_dropped_total "))
        .and_then(|v| v.parse::<u64>().ok());
    assert_eq!(scraped, Some(dropped), "{text}");
    // Stops promptly although its writer is stuck.
    let t = Instant::now();
    assert!(bal.terminate().success());
    assert!(t.elapsed() < stretched(Duration::from_secs(5)));
}

#[test]
fn bad_targets_are_one_line_errors() {
    let b = Backend::tagged("A");
    for (args, want) in [
        (
            vec!["--connection-log", "/nonexistent-dir/c.log"],
            "cannot open connection log /nonexistent-dir/c.log",
        ),
        (
            vec!["--connection-log", "syslog:"],
            "bad --connection-log \"syslog:\"",
        ),
        (
            vec![
                "--connection-log",
                "stderr",
                "--connection-log-format",
                "clf",
            ],
            "bad --connection-log-format \"clf\": use tcplog or json",
        ),
        (
            vec!["--connection-log-format", "json"],
            "--connection-log-format needs --connection-log TARGET",
        ),
    ] {
        let port = free_port(LOCALHOST_V4).to_string();
        let mut a = vec!["-f", "-b", "127.0.0.1"];
        a.extend(args.iter());
        a.push(&port);
        let ch = b.channel();
        a.push(&ch);
        let o = std::process::Command::new(BIN).args(&a).output().unwrap();
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{a:?}");
        assert!(err.contains(want), "{a:?}: {err}");
        assert_eq!(err.trim().lines().count(), 1, "{err}");
    }
}

#[test]
fn the_client_is_the_proxy_headers_when_one_is_read() {
    let tmp = TempDir::new("connlog-proxy");
    let log = tmp.path().join("c.log");
    let b = Backend::tagged("A");
    let bal = Balance::cli(&[b.channel()])
        .opts(&[
            "--accept-proxy",
            "127.0.0.1",
            "--connection-log",
            &log.display().to_string(),
        ])
        .start();
    let mut c = bal.connect();
    c.write_all(b"PROXY TCP4 192.0.2.7 192.0.2.1 40404 3306\r\n")
        .unwrap();
    assert_eq!(read_line(&mut c).unwrap(), "A");
    c.shutdown(Shutdown::Write).unwrap();
    drain(&mut c);
    let l = wait_lines(&log, 1, false);
    assert_eq!(l[0].client_port, 40404, "{l:?}");
    let text = read_lines(&log).join("\n");
    assert!(text.starts_with("192.0.2.7:40404 ["), "{text}");
}
