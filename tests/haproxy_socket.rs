//! The HAProxy-compatible runtime socket (`haproxy_socket:`), on the real
//! socket: every command and every error text, the protocol (`;`, the
//! empty line after each answer, `prompt`/`quit`), `show stat`'s columns
//! against a real HAProxy's, changes through the one operator model (seen
//! by the control socket) kept across a restart, the socket's mode and
//! group; and the unmodified tools written for HAProxy driving it:
//! socat, prometheus-haproxy-exporter, haproxyadmin, Ansible's
//! community.general.haproxy and hatop.

use crate::common;

use std::io::{Read, Write};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// One line to the socket, everything it answers until it closes.
fn hx(path: &Path, line: &str) -> String {
    let mut s = UnixStream::connect(path).expect("connect haproxy socket");
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.write_all(format!("{line}\n").as_bytes()).unwrap();
    let mut out = String::new();
    s.read_to_string(&mut out).expect("answer, then close");
    out
}

/// A balance with listeners `app` (group 0: `a` up, `b` down with weight
/// 5; group 1: `bk` up) and `db` (one channel `x`), health checks by
/// connect, a state file and the HAProxy socket at `h.sock`.
struct Setup {
    tmp: TempDir,
    b: Balance,
    sock: PathBuf,
    _up: Vec<Backend>,
    down: Refused,
}

fn yaml(tmp: &TempDir, p: &[u16], a: u16, b: u16, bk: u16, extra: &str) -> String {
    format!(
        r#"haproxy_socket: {{path: "{sock}"{extra}}}
state_file: "{state}"
listeners:
  - name: app
    bind: "127.0.0.1:{p0}"
    monitor: {{interval: 200ms, rise: 1, fall: 1, checks: [{{connect: {{}}}}]}}
    groups:
      - channels: [{{name: a, host: 127.0.0.1, port: {a}}}, {{name: b, host: 127.0.0.1, port: {b}, weight: 5}}]
      - channels: [{{name: bk, host: 127.0.0.1, port: {bk}}}]
  - name: db
    bind: "127.0.0.1:{p1}"
    groups:
      - channels: [{{name: x, host: 127.0.0.1, port: {a}}}]
"#,
        sock = tmp.join("h.sock").display(),
        state = tmp.join("state.json").display(),
        p0 = p[0],
        p1 = p[1],
    )
}

fn setup_with(extra: &str) -> Setup {
    let tmp = TempDir::new("hasock");
    let (a, bk) = (Backend::tagged("A"), Backend::tagged("BK"));
    let down = Refused::new();
    let (pa, pb, pbk) = (a.port(), down.port(), bk.port());
    let b = Balance::config(2, |p| yaml(&tmp, p, pa, pb, pbk, extra))
        .run_dir(&tmp.join("run"))
        .start();
    let sock = tmp.join("h.sock");
    wait_until("the haproxy socket answers", WAIT, || {
        UnixStream::connect(&sock).is_ok()
    })
    .unwrap();
    // The first checks have run: a up, b down, bk up.
    wait_until("a UP, b DOWN, bk UP", WAIT, || {
        let st = hx(&sock, "show stat");
        status(&st, "app", "a") == "UP"
            && status(&st, "app", "b") == "DOWN"
            && status(&st, "app", "bk") == "UP"
    })
    .unwrap();
    Setup {
        tmp,
        b,
        sock,
        _up: vec![a, bk],
        down,
    }
}

fn setup() -> Setup {
    setup_with("")
}

/// `show stat`'s rows as column name → value maps.
fn rows(stat: &str) -> Vec<Vec<(String, String)>> {
    let mut lines = stat.lines();
    let head = lines.next().expect("header");
    let cols: Vec<&str> = head
        .strip_prefix("# ")
        .expect("# header")
        .split(',')
        .collect();
    lines
        .filter(|l| !l.is_empty())
        .map(|l| {
            cols.iter()
                .zip(l.split(','))
                .map(|(c, v)| (c.to_string(), v.to_string()))
                .collect()
        })
        .collect()
}

fn field(stat: &str, px: &str, sv: &str, col: &str) -> String {
    rows(stat)
        .into_iter()
        .find(|r| r[0].1 == px && r[1].1 == sv)
        .unwrap_or_else(|| panic!("no row {px}/{sv} in\n{stat}"))
        .into_iter()
        .find(|(c, _)| c == col)
        .map(|(_, v)| v)
        .unwrap_or_else(|| panic!("no column {col}"))
}

fn status(stat: &str, px: &str, sv: &str) -> String {
    field(stat, px, sv, "status")
}

/// The channel's admin state as balance's own control socket shows it.
fn admin(s: &Setup, ch: &str) -> String {
    let j = s.b.json();
    j["channels"]
        .as_array()
        .expect("channels")
        .iter()
        .find(|c| c["name"] == ch)
        .unwrap_or_else(|| panic!("no channel {ch} in {j}"))["admin"]
        .as_str()
        .unwrap()
        .to_string()
}

#[test]
fn show_stat_has_a_frontend_a_backend_and_a_row_per_server_with_backups_marked() {
    let s = setup();
    let st = hx(&s.sock, "show stat");
    assert!(
        st.ends_with(",\n\n"),
        "answer ends with an empty line: {st:?}"
    );
    let names: Vec<(String, String)> = rows(&st)
        .into_iter()
        .map(|r| (r[0].1.clone(), r[1].1.clone()))
        .collect();
    let want = [
        ("app", "FRONTEND"),
        ("app", "a"),
        ("app", "b"),
        ("app", "bk"),
        ("app", "BACKEND"),
        ("db", "FRONTEND"),
        ("db", "x"),
        ("db", "BACKEND"),
    ];
    assert_eq!(
        names,
        want.map(|(a, b)| (a.to_string(), b.to_string())).to_vec()
    );
    let f = |sv: &str, col: &str| field(&st, "app", sv, col);
    assert_eq!((f("a", "act"), f("a", "bck")), ("1".into(), "0".into()));
    assert_eq!((f("bk", "act"), f("bk", "bck")), ("0".into(), "1".into()));
    assert_eq!(f("b", "weight"), "5");
    assert_eq!(f("a", "check_status"), "L4OK");
    assert_eq!(f("b", "check_status"), "L4CON");
    assert_eq!(f("a", "type"), "2");
    assert_eq!(f("FRONTEND", "type"), "0");
    assert_eq!(f("BACKEND", "type"), "1");
    assert_eq!(f("FRONTEND", "status"), "OPEN");
    assert_eq!(f("BACKEND", "status"), "UP");
    assert_eq!((f("a", "iid"), f("a", "sid")), ("1".into(), "1".into()));
    assert_eq!(f("bk", "sid"), "3");
    assert_eq!(field(&st, "db", "x", "iid"), "2");
    // No checks on db: HAProxy's "no check".
    assert_eq!(status(&st, "db", "x"), "no check");
    assert_eq!(field(&st, "db", "x", "check_status"), "");
    // Traffic is counted where HAProxy counts it.
    let mut c = s.b.connect();
    assert_eq!(read_line(&mut c).unwrap(), "A");
    drop(c);
    wait_until("stot of a is 1", WAIT, || {
        let st = hx(&s.sock, "show stat");
        field(&st, "app", "a", "stot") == "1" && field(&st, "app", "FRONTEND", "stot") == "1"
    })
    .unwrap();
    // The filters haproxyadmin uses: iid, type mask, sid.
    let only = hx(&s.sock, "show stat 1 4 2");
    let r = rows(&only);
    assert_eq!(r.len(), 1, "{only}");
    assert_eq!(r[0][1].1, "b");
    let be = hx(&s.sock, "show stat -1 2 -1");
    assert_eq!(rows(&be).len(), 2, "{be}");
    let up = hx(&s.sock, "show stat up");
    assert!(!up.contains("\napp,b,"), "{up}");
    let typed = hx(&s.sock, "show stat typed");
    assert!(typed.contains("S.1.1.17.status.1:SGP:str:UP\n"), "{typed}");
    assert!(
        typed.contains("F.1.0.1.svname.1:KNS:str:FRONTEND\n"),
        "{typed}"
    );
}

/// `show stat`'s header as a real HAProxy prints it.
fn real_haproxy_header(tmp: &TempDir) -> Option<String> {
    let bin = ["/usr/sbin/haproxy", "/usr/bin/haproxy"]
        .into_iter()
        .find(|p| Path::new(p).exists())?;
    let sock = tmp.join("real.sock");
    let cfg = tmp.join("haproxy.cfg");
    let port = free_port(LOCALHOST_V4);
    std::fs::write(
        &cfg,
        format!(
            "global\n  stats socket {} mode 600 level admin\ndefaults\n  mode tcp\n  timeout connect 1s\n  timeout client 5s\n  timeout server 5s\nlisten p\n  bind 127.0.0.1:{port}\n  server s 127.0.0.1:1\n",
            sock.display()
        ),
    )
    .unwrap();
    let mut child = Command::new(bin)
        .args(["-db", "-f"])
        .arg(&cfg)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("start haproxy");
    let head = wait_for("haproxy's stats socket", WAIT, || {
        UnixStream::connect(&sock).ok().map(|_| {
            hx(&sock, "show stat")
                .lines()
                .next()
                .unwrap_or("")
                .to_string()
        })
    });
    kill(child.id(), libc::SIGKILL);
    let _ = child.wait();
    Some(head.expect("haproxy answers"))
}

#[test]
fn show_stat_columns_sit_where_a_real_haproxy_puts_them() {
    let s = setup();
    let Some(real) = real_haproxy_header(&s.tmp) else {
        skip_without("haproxy");
        return;
    };
    let ours = hx(&s.sock, "show stat");
    let ours: Vec<&str> = ours.lines().next().unwrap().split(',').collect();
    let real: Vec<&str> = real.split(',').collect();
    assert!(ours.len() > 90, "{ours:?}");
    // Every column we print is HAProxy's at the same place (we stop
    // before its SSL and HTTP/2 module columns).
    let n = ours.len() - 1;
    assert_eq!(ours[..n], real[..n]);
}

#[test]
fn info_backend_version_help_and_servers_state() {
    let s = setup();
    let info = hx(&s.sock, "show info");
    assert!(
        info.starts_with("Name: HAProxy\nVersion: 2.6.0-balance-"),
        "{info}"
    );
    for key in [
        "Pid: ",
        "Uptime: ",
        "Maxconn: ",
        "CurrConns: ",
        "Tasks: ",
        "node: ",
    ] {
        assert!(info.contains(&format!("\n{key}")), "{key} in {info}");
    }
    assert!(info.ends_with("\n\n"));
    assert!(hx(&s.sock, "show info typed").starts_with("0.Name.1:POS:str:HAProxy\n"));
    assert_eq!(hx(&s.sock, "show backend"), "# name\napp\ndb\n\n");
    assert!(hx(&s.sock, "show version").starts_with("2.6.0-balance-"));
    let help = hx(&s.sock, "help");
    assert!(help.starts_with("The following commands are valid at this level:\n"));
    for cmd in [
        "set server <bk>/<srv>",
        "show stat",
        "prompt",
        "quit",
        "get weight",
        "shutdown sessions server",
    ] {
        assert!(help.contains(&format!("  {cmd}")), "{cmd} in {help}");
    }
    // Only what works is listed.
    assert!(
        !help.contains("add server") && !help.contains("shutdown session "),
        "{help}"
    );
    let state = hx(&s.sock, "show servers state app");
    let lines: Vec<&str> = state.lines().collect();
    assert_eq!(lines[0], "1");
    assert!(lines[1].starts_with("# be_id be_name srv_id srv_name srv_addr srv_op_state"));
    let a: Vec<&str> = lines[2].split(' ').collect();
    assert_eq!(
        &a[..9],
        ["1", "app", "1", "a", "127.0.0.1", "2", "0", "1", "1"]
    );
    let b: Vec<&str> = lines[3].split(' ').collect();
    assert_eq!(
        &b[..9],
        ["1", "app", "2", "b", "127.0.0.1", "0", "0", "5", "5"]
    );
    assert_eq!(lines.len(), 6, "{state}");
    assert!(hx(&s.sock, "show servers state #2").contains("\n2 db 1 x "));
}

#[test]
fn every_error_has_haproxys_text_and_changes_nothing() {
    let s = setup();
    let before = s.tmp.join("state.json");
    let _ = std::fs::read(&before);
    let cases = [
        ("get weight app", "Require 'backend/server'.\n\n"),
        ("disable server app", "Require 'backend/server'.\n\n"),
        ("get weight nope/a", "No such backend.\n\n"),
        ("get weight #9/a", "No such backend.\n\n"),
        ("enable server app/zz", "No such server.\n\n"),
        ("get weight app/#9", "No such server.\n\n"),
        ("set weight app/a", "Require <weight> or <weight%>.\n\n"),
        (
            "set server app/a weight",
            "Require <weight> or <weight%>.\n\n",
        ),
        (
            "set weight app/a 10001",
            "Absolute weight can only be between 0 and 10000 inclusive.\n\n",
        ),
        (
            "set weight app/a -1",
            "Absolute weight can only be between 0 and 10000 inclusive.\n\n",
        ),
        (
            "set weight app/a abc",
            "Empty weight string empty or preceded by garbage\n\n",
        ),
        (
            "set weight app/b 1000000%",
            "Absolute weight can only be between 0 and 10000 inclusive.\n\n",
        ),
        (
            "set server app/a state bogus",
            "'set server <srv> state' expects 'ready', 'drain' and 'maint'.\n\n",
        ),
        (
            "set server app/a",
            "usage: set server <backend>/<server> state | weight\n\n",
        ),
        (
            "enable health db/x",
            "Health check was not configured on this server, cannot enable.\n\n",
        ),
        ("show servers state nope", "Can't find backend.\n\n"),
        ("set timeout cli x", "Invalid timeout value.\n\n"),
    ];
    for (cmd, want) in cases {
        assert_eq!(hx(&s.sock, cmd), want, "{cmd}");
    }
    let unknown = hx(&s.sock, "frobnicate now");
    assert!(
        unknown.starts_with(
            "Unknown command, but maybe one of the following ones is a better match:\n"
        ),
        "{unknown}"
    );
    assert!(unknown.ends_with("  quit                                    : disconnect\n\n"));
    let show = hx(&s.sock, "show nothing");
    assert!(
        show.contains("  show stat") && !show.contains("  get weight"),
        "{show}"
    );
    // Nothing changed: admin states, weights.
    assert_eq!(hx(&s.sock, "get weight app/a"), "1 (initial 1)\n\n");
    assert_eq!(hx(&s.sock, "get weight app/b"), "5 (initial 5)\n\n");
    assert_eq!(admin(&s, "a"), "enabled");
    assert!(
        !s.tmp.join("state.json").exists()
            || !std::fs::read_to_string(s.tmp.join("state.json"))
                .unwrap()
                .contains("\"weight\": 10001")
    );
    // A line too long closes the session with a message, a NUL is refused.
    let long = "x".repeat(5000);
    assert_eq!(hx(&s.sock, &long), "Line longer than 4096 bytes.\n\n");
    assert_eq!(
        hx(&s.sock, "get weight app/a\0"),
        "Command is not valid text; ignored.\n\n"
    );
}

#[test]
fn changes_go_through_the_operator_model_and_survive_a_restart() {
    let s = setup();
    let sock = &s.sock;
    // Several commands on one line, each answer ended by an empty line.
    assert_eq!(
        hx(
            sock,
            "disable server app/a;get weight app/a;set weight app/b 40%"
        ),
        "\n1 (initial 1)\n\n\n"
    );
    assert_eq!(admin(&s, "a"), "disabled");
    assert_eq!(status(&hx(sock, "show stat"), "app", "a"), "MAINT");
    assert_eq!(hx(sock, "get weight app/b"), "2 (initial 5)\n\n");
    assert_eq!(hx(sock, "enable server app/a"), "\n");
    assert_eq!(admin(&s, "a"), "enabled");
    assert_eq!(hx(sock, "set server app/a state drain"), "\n");
    assert_eq!(admin(&s, "a"), "drain");
    assert_eq!(status(&hx(sock, "show stat"), "app", "a"), "DRAIN");
    assert_eq!(hx(sock, "set server app/a state ready"), "\n");
    assert_eq!(status(&hx(sock, "show stat"), "app", "a"), "UP");
    assert_eq!(hx(sock, "set server app/#2 weight 7"), "\n");
    assert_eq!(hx(sock, "get weight #1/b"), "7 (initial 5)\n\n");
    assert_eq!(hx(sock, "set server app/bk state maint"), "\n");
    assert_eq!(admin(&s, "bk"), "disabled");
    // Health checks off: HAProxy's "no check", counted as up.
    assert_eq!(hx(sock, "disable health app/b"), "\n");
    assert_eq!(status(&hx(sock, "show stat"), "app", "b"), "no check");
    assert_eq!(hx(sock, "enable health app/b"), "\n");
    wait_until("b is DOWN again once checked", WAIT, || {
        status(&hx(sock, "show stat"), "app", "b") == "DOWN"
    })
    .unwrap();
    assert_eq!(hx(sock, "disable health app/b"), "\n");
    // The same operator state is kept in the state file: restart.
    let (a, bk) = (s._up[0].port(), s._up[1].port());
    let down = s.down.port();
    s.b.ctl("kill");
    s.b.wait_exit(WAIT).expect("exit");
    let tmp = s.tmp;
    drop(s.b);
    let b = Balance::config(2, |p| yaml(&tmp, p, a, down, bk, ""))
        .run_dir(&tmp.join("run"))
        .start();
    wait_until("the haproxy socket answers again", WAIT, || {
        UnixStream::connect(tmp.join("h.sock")).is_ok()
    })
    .unwrap();
    let sock = tmp.join("h.sock");
    assert_eq!(hx(&sock, "get weight app/b"), "7 (initial 5)\n\n");
    let st = hx(&sock, "show stat");
    assert_eq!(status(&st, "app", "bk"), "MAINT");
    assert_eq!(status(&st, "app", "b"), "no check");
    assert_eq!(status(&st, "app", "a"), "UP");
    drop(b);
}

/// `shutdown sessions server` ends the live sessions to that server at
/// once (Ansible's `shutdown_sessions`); the server keeps taking clients.
#[test]
fn shutdown_sessions_ends_a_servers_live_sessions_and_nothing_else() {
    let s = setup();
    let sock = &s.sock;
    // Group 0 has a (up) and b (down): every client goes to a.
    let (tag, mut live) = tag_of_new_client(s.b.addr).expect("client through app");
    assert_eq!(tag, "A");
    live.write_all(b"ping\n").unwrap();
    assert_eq!(read_line(&mut live).unwrap(), "ping");
    assert_eq!(field(&hx(sock, "show stat"), "app", "a", "scur"), "1");
    assert_eq!(hx(sock, "shutdown sessions server app/a"), "\n");
    live.set_read_timeout(Some(WAIT)).unwrap();
    let mut buf = [0u8; 16];
    // Ended: EOF or a reset, never an answer or a timeout.
    match live.read(&mut buf) {
        Ok(0) => {}
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
        other => panic!("the session was not ended: {other:?}"),
    }
    wait_until("no live session on a", WAIT, || {
        field(&hx(sock, "show stat"), "app", "a", "scur") == "0"
    })
    .unwrap();
    // Nothing else changed: a is still UP and takes the next client.
    assert_eq!(status(&hx(sock, "show stat"), "app", "a"), "UP");
    let (tag, _next) = tag_of_new_client(s.b.addr).expect("next client");
    assert_eq!(tag, "A");
    assert_eq!(
        hx(sock, "shutdown sessions server app/nosuch"),
        "No such server.\n\n"
    );
    assert_eq!(
        hx(sock, "shutdown sessions server app"),
        "Require 'backend/server'.\n\n"
    );
}

#[test]
fn prompt_mode_keeps_the_session_and_quit_ends_it() {
    let s = setup();
    let mut c = UnixStream::connect(&s.sock).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let read_until_prompt = |c: &mut UnixStream| {
        let mut got = Vec::new();
        let mut byte = [0u8; 1];
        while !got.ends_with(b"> ") {
            assert_eq!(c.read(&mut byte).unwrap(), 1, "closed: {got:?}");
            got.push(byte[0]);
        }
        String::from_utf8(got).unwrap()
    };
    c.write_all(b"prompt\n").unwrap();
    assert_eq!(read_until_prompt(&mut c), "\n> ");
    // hatop's set-up line.
    c.write_all(b"set timeout cli 60\n").unwrap();
    assert_eq!(read_until_prompt(&mut c), "\n> ");
    c.write_all(b"get weight app/b\n").unwrap();
    assert_eq!(read_until_prompt(&mut c), "5 (initial 5)\n\n> ");
    c.write_all(b"get weight app/zz;get weight db/x\n").unwrap();
    assert_eq!(
        read_until_prompt(&mut c),
        "No such server.\n\n1 (initial 1)\n\n> "
    );
    c.write_all(b"quit\n").unwrap();
    let mut rest = String::new();
    c.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
    // Without prompt the session ends after its line.
    let mut c = UnixStream::connect(&s.sock).unwrap();
    c.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    c.write_all(b"get weight app/a\nget weight app/b\n")
        .unwrap();
    let mut out = String::new();
    c.read_to_string(&mut out).unwrap();
    assert_eq!(out, "1 (initial 1)\n\n");
}

#[test]
fn the_socket_has_the_mode_and_group_asked_for_and_members_of_the_group_may_talk() {
    use std::os::unix::fs::{MetadataExt, PermissionsExt};
    let s = setup_with(", mode: \"0660\", group: \"65534\"");
    let md = std::fs::metadata(&s.sock).unwrap();
    assert_eq!(md.permissions().mode() & 0o777, 0o660);
    assert_eq!(md.gid(), 65534);
    if !is_root() {
        skip_because("needs root to run a client as another user");
        return;
    }
    let Some(socat) = which("socat") else {
        skip_without("socat");
        return;
    };
    // Clients of uid 65534: allowed through the group, as their primary
    // group or as a supplementary one.
    std::fs::set_permissions(s.tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    for ids in [
        ["--regid=65534", "--clear-groups"],
        ["--regid=65533", "--groups=65534"],
    ] {
        let out = Command::new("setpriv")
            .arg("--reuid=65534")
            .args(ids)
            .args([&socat, "-t5", "stdio"])
            .arg(format!("UNIX-CONNECT:{}", s.sock.display()))
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .and_then(|mut c| {
                c.stdin.take().unwrap().write_all(b"get weight app/b\n")?;
                c.wait_with_output()
            })
            .unwrap();
        assert_eq!(
            String::from_utf8_lossy(&out.stdout),
            "5 (initial 5)\n\n",
            "{ids:?}"
        );
    }
}

#[test]
fn a_bad_socket_config_is_one_line_and_nothing_starts() {
    let tmp = TempDir::new("hasockbad");
    for (extra, want) in [
        (", mode: \"0666\"", "bad mode \"0666\""),
        (", mode: \"abc\"", "bad mode \"abc\""),
    ] {
        let file = tmp.join("b.yaml");
        std::fs::write(
            &file,
            format!(
                "haproxy_socket: {{path: \"{}\"{extra}}}\nlisteners:\n  - name: l\n    bind: \"127.0.0.1:{}\"\n    groups: [{{channels: [\"127.0.0.1:9\"]}}]\n",
                tmp.join("h.sock").display(),
                free_port(LOCALHOST_V4)
            ),
        )
        .unwrap();
        let (code, out) = run_to_exit(&["--check", "--config", file.to_str().unwrap()], WAIT);
        assert_ne!(code, Some(0), "{out}");
        assert!(out.contains(want), "{want} in {out}");
        assert_eq!(out.trim().lines().count(), 1, "{out}");
    }
    assert!(!tmp.join("h.sock").exists());
}

// ---- the unmodified tools written for HAProxy ----

fn which(cmd: &str) -> Option<String> {
    std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p)
            .map(|d| d.join(cmd))
            .find(|f| f.is_file())
            .map(|f| f.display().to_string())
    })
}

/// Run `prog args` to its exit (killed after `secs` by coreutils'
/// `timeout`): exit code and stdout followed by stderr.
fn output(
    prog: &Path,
    args: &[String],
    env: &[(&str, String)],
    secs: u64,
) -> (Option<i32>, String) {
    let mut c = Command::new("timeout");
    c.args(["-k", "5", &secs.to_string()])
        .arg(prog)
        .args(args)
        .stdin(Stdio::null());
    for (k, v) in env {
        c.env(k, v);
    }
    let out = c.output().expect("run");
    let text =
        String::from_utf8_lossy(&out.stdout).to_string() + &String::from_utf8_lossy(&out.stderr);
    (out.status.code(), text)
}

/// The Python virtualenv contrib/test.sh makes (haproxyadmin, ansible).
fn venv() -> Option<PathBuf> {
    let dir = std::env::var_os("BALANCE_VENV")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cache/balance-venv")))?;
    dir.join("bin/python").exists().then_some(dir)
}

#[test]
fn the_articles_socat_lines_work() {
    let Some(socat) = which("socat") else {
        skip_without("socat");
        return;
    };
    let s = setup();
    let run = |line: &str| {
        let mut c = Command::new(&socat)
            .args(["stdio", s.sock.to_str().unwrap()])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .unwrap();
        c.stdin
            .take()
            .unwrap()
            .write_all(format!("{line}\n").as_bytes())
            .unwrap();
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success());
        String::from_utf8(out.stdout).unwrap()
    };
    assert_eq!(run("disable server app/a"), "\n");
    assert_eq!(admin(&s, "a"), "disabled");
    assert_eq!(run("set weight app/a 10"), "\n");
    assert_eq!(run("enable server app/a"), "\n");
    assert_eq!(run("get weight app/a"), "10 (initial 1)\n\n");
    assert_eq!(admin(&s, "a"), "enabled");
}

#[test]
fn prometheus_haproxy_exporter_scrapes_the_socket() {
    let Some(exp) = which("prometheus-haproxy-exporter") else {
        skip_without("prometheus-haproxy-exporter");
        return;
    };
    let s = setup();
    let port = free_port(LOCALHOST_V4);
    let mut child = Command::new(exp)
        .arg(format!("--haproxy.scrape-uri=unix:{}", s.sock.display()))
        .arg(format!("--web.listen-address=127.0.0.1:{port}"))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let text = wait_for("the exporter serves", WAIT, || {
        std::net::TcpStream::connect(("127.0.0.1", port))
            .ok()
            .map(|_| scrape(port))
    });
    kill(child.id(), libc::SIGTERM);
    let _ = child.wait();
    let text = text.unwrap();
    let bare = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no {name} in\n{text}"))
            .to_string()
    };
    assert_eq!(bare("haproxy_up"), "1", "{text}");
    assert_eq!(bare("haproxy_exporter_csv_parse_failures_total"), "0");
    let up = |sv: &str| {
        sample(
            &text,
            "haproxy_server_up",
            &format!("backend=\"app\",server=\"{sv}\""),
        )
    };
    assert_eq!((up("a"), up("b"), up("bk")), (1.0, 0.0, 1.0));
    assert_eq!(sample(&text, "haproxy_backend_up", "backend=\"app\""), 1.0);
    assert_eq!(
        sample(
            &text,
            "haproxy_server_weight",
            "backend=\"app\",server=\"b\""
        ),
        5.0
    );
}

#[test]
fn haproxyadmin_lists_drains_disables_enables_and_weighs() {
    let Some(venv) = venv() else {
        skip_without("the haproxyadmin virtualenv (contrib/test.sh makes it)");
        return;
    };
    let s = setup();
    let script = format!(
        r#"
from haproxyadmin import haproxy
hap = haproxy.HAProxy(socket_file={sock:?})
print(sorted(b.name for b in hap.backends()))
print(sorted((x.name, x.status) for x in hap.servers('app')))
a = hap.server('a', backend='app')[0]
print(a.setstate('drain'), a.status)
print(a.setstate('disable'), a.status)
print(a.setstate('enable'), a.status)
print(a.setweight(3), a.weight)
print(a.setweight('200%'), a.weight)
"#,
        sock = s.sock.display().to_string()
    );
    let (code, out) = output(&venv.join("bin/python"), &["-c".into(), script], &[], 60);
    assert_eq!(code, Some(0), "{out}");
    assert_eq!(
        out,
        "['app', 'db']\n[('a', 'UP'), ('b', 'DOWN'), ('bk', 'UP')]\nTrue DRAIN\nTrue MAINT\nTrue UP\nTrue 3\nTrue 2\n"
    );
    assert_eq!(hx(&s.sock, "get weight app/a"), "2 (initial 1)\n\n");
}

#[test]
fn ansibles_haproxy_module_drains_disables_and_enables_with_wait() {
    let Some(venv) = venv().filter(|v| v.join("bin/ansible").exists()) else {
        skip_without("the ansible virtualenv (contrib/test.sh makes it)");
        return;
    };
    let s = setup();
    let ansible = |state: &str| {
        let args = [
            "localhost".to_string(),
            "-m".into(),
            "community.general.haproxy".into(),
            "-a".into(),
            format!(
                "state={state} host=a backend=app socket={} wait=yes wait_interval=1 wait_retries=20",
                s.sock.display()
            ),
        ];
        let path = std::env::var("PATH").unwrap_or_default();
        let env = [
            ("PATH", format!("{}:{path}", venv.join("bin").display())),
            ("ANSIBLE_LOCALHOST_WARNING", "False".into()),
            ("ANSIBLE_INVENTORY_UNPARSED_WARNING", "False".into()),
            ("ANSIBLE_HOME", s.tmp.join("ansible").display().to_string()),
        ];
        let (code, out) = output(&venv.join("bin/ansible"), &args, &env, 120);
        assert_eq!(code, Some(0), "{state}: {out}");
        assert!(out.contains("CHANGED"), "{state}: {out}");
        out
    };
    ansible("drain");
    assert_eq!(admin(&s, "a"), "drain");
    ansible("disabled");
    assert_eq!(admin(&s, "a"), "disabled");
    ansible("enabled");
    assert_eq!(admin(&s, "a"), "enabled");
    assert_eq!(status(&hx(&s.sock, "show stat"), "app", "a"), "UP");
}

#[test]
fn hatop_starts_and_lists_the_servers() {
    let (Some(_), Some(tmux)) = (which("hatop"), which("tmux")) else {
        skip_without("hatop and tmux");
        return;
    };
    let s = setup();
    let session = format!("balance-hatop-{}", std::process::id());
    let st = Command::new(&tmux)
        .args(["new-session", "-d", "-x", "160", "-y", "40", "-s", &session])
        .arg(format!("hatop -s {}", s.sock.display()))
        .status()
        .unwrap();
    assert!(st.success());
    let screen = wait_for("hatop shows the servers", WAIT, || {
        let out = Command::new(&tmux)
            .args(["capture-pane", "-p", "-t", &session])
            .output()
            .ok()?;
        let text = String::from_utf8_lossy(&out.stdout).to_string();
        (text.contains("HAProxy Version: 2.6.0-balance-") && text.contains(">>> db"))
            .then_some(text)
    });
    let _ = Command::new(&tmux)
        .args(["kill-session", "-t", &session])
        .status();
    let screen = screen.unwrap();
    for sv in ["FRONTEND", "BACKEND", "bk"] {
        assert!(screen.contains(sv), "{sv} in\n{screen}");
    }
    assert!(
        screen
            .lines()
            .any(|l| l.starts_with("b ") && l.contains("DOWN")),
        "{screen}"
    );
}

#[test]
fn a_second_instance_on_the_same_socket_is_refused_and_the_first_keeps_it() {
    let s = setup();
    let file = s.tmp.join("second.yaml");
    std::fs::write(
        &file,
        format!(
            "haproxy_socket: \"{}\"\nlisteners:\n  - name: l\n    bind: \"127.0.0.1:{}\"\n    groups: [{{channels: [\"127.0.0.1:9\"]}}]\n",
            s.sock.display(),
            free_port(LOCALHOST_V4)
        ),
    )
    .unwrap();
    let (code, out) = run_to_exit(&["--check", "--config", file.to_str().unwrap()], WAIT);
    assert_eq!(code, Some(EXIT_OSERR), "{out}");
    assert!(
        out.contains(&format!(
            "haproxy socket {}: another process answers there",
            s.sock.display()
        )),
        "{out}"
    );
    assert_eq!(hx(&s.sock, "show backend"), "# name\napp\ndb\n\n");
}
