//! Runtime control over the real socket with the real client binary:
//! `balance -f ... --control PATH` driven by `balance -c` / `balance -i`.

use crate::common;

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// `balance -f -b 127.0.0.1 PORT ARGS EXTRA --control SOCK` (or, with
/// `sock` None, the default socket) with `BALANCE_RUNDIR=TMP/run`; ready
/// once the control socket answers.
fn launch<'a>(tmp: &TempDir, args: &[String], extra: &[&str], sock: Option<PathBuf>) -> Launch<'a> {
    let l = Balance::cli(args).opts(extra).run_dir(&tmp.join("run"));
    match sock {
        Some(s) => l.control(&s),
        None => l,
    }
}

fn start(tmp: &TempDir, args: &[String], extra: &[&str], sock: Option<PathBuf>) -> Balance {
    launch(tmp, args, extra, sock).start()
}

/// Connect, read the backend's tag; the connection stays open.
fn open(b: &Balance) -> (String, TcpStream) {
    tag_of_new_client(b.addr).unwrap()
}

fn tag(b: &Balance) -> String {
    open(b).0
}

/// Tags of `n` sequential connections.
fn tags_of(b: &Balance, n: usize) -> Vec<String> {
    (0..n).map(|_| tag(b)).collect()
}

fn chans(backends: &[&Backend]) -> Vec<String> {
    backends.iter().map(|b| b.channel()).collect()
}

fn count(tags: &[String], t: &str) -> usize {
    tags.iter().filter(|x| *x == t).count()
}

/// The row of channel `g`/`i` in `show` output, split into columns.
fn row(show: &str, g: usize, i: usize) -> Vec<String> {
    show.lines()
        .skip(1)
        .map(|l| l.split_whitespace().map(String::from).collect::<Vec<_>>())
        .find(|c| c[0] == g.to_string() && c[2] == i.to_string())
        .unwrap_or_else(|| panic!("no row {g}/{i} in {show}"))
}

#[test]
fn show_counts_connections_and_bytes_after_traffic() {
    let tmp = TempDir::new("show");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let before = inst.ctl("show");
    assert!(
        before.starts_with(
            "GRP Type  #   S       ip-address  port    c      totalc maxc        sent        rcvd\n"
        ),
        "{before}"
    );
    let r = row(&before, 0, 0);
    assert_eq!(
        &r[1..],
        [
            "RR",
            "0",
            "ENA",
            "127.0.0.1",
            &a.port().to_string(),
            "0",
            "0",
            "0",
            "0",
            "0"
        ]
    );

    let (_, mut s) = open(&inst);
    s.write_all(b"hello\n").unwrap();
    let mut echo = [0u8; 6];
    s.read_exact(&mut echo).unwrap();
    let live = row(&inst.ctl("show"), 0, 0);
    assert_eq!(
        (live[6].as_str(), live[7].as_str()),
        ("1", "1"),
        "c and totalc with one live connection"
    );
    drop(s);
    wait_until("counters after close", Duration::from_secs(5), || {
        let r = row(&inst.ctl("show"), 0, 0);
        r[6] == "0" && r[9] == "6" && r[10] == "8"
    })
    .unwrap();
}

#[test]
fn disable_and_drain_stop_new_traffic_while_live_connections_continue_and_enable_resumes_round_robin()
 {
    let tmp = TempDir::new("disable");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let inst = start(&tmp, &chans(&[&a, &b]), &[], Some(tmp.join("c.sock")));
    for (cmd, shown) in [("disable 0", "DIS"), ("drain 0", "drn")] {
        // A live connection on channel 0.
        let (mut tag, mut live) = open(&inst);
        if tag != "A" {
            (tag, live) = open(&inst);
        }
        assert_eq!(tag, "A");
        let out = inst.ctl(cmd);
        assert!(out.starts_with("channel 0 "), "{out}");
        assert_eq!(row(&inst.ctl("show"), 0, 0)[3], shown);
        let tags = tags_of(&inst, 10);
        assert_eq!(count(&tags, "B"), 10, "{cmd}: {tags:?}");
        // The live connection on A still works.
        live.write_all(b"ping\n").unwrap();
        let mut echo = [0u8; 5];
        live.read_exact(&mut echo).unwrap();
        assert_eq!(&echo, b"ping\n");
        assert!(
            inst.stderr().contains(&format!("uid={}", uid())),
            "changes are logged with the peer uid: {}",
            inst.stderr()
        );
        assert_eq!(inst.ctl("enable 0"), "channel 0 enabled\n");
        let tags = tags_of(&inst, 10);
        assert_eq!(
            (count(&tags, "A"), count(&tags, "B")),
            (5, 5),
            "after enable: {tags:?}"
        );
    }
    assert_eq!(inst.ctl("enable 0"), "channel 0 already enabled\n");
}

#[test]
fn create_adds_a_disabled_channel_that_takes_its_share_once_enabled() {
    let tmp = TempDir::new("create");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    assert_eq!(count(&tags_of(&inst, 4), "A"), 4);
    assert_eq!(
        inst.ctl(&format!("create 127.0.0.1 {}", b.port())),
        "channel created\n"
    );
    // balance.fm creates it disabled: scripts `create`, then `enable N`.
    let r = row(&inst.ctl("show"), 0, 1);
    assert_eq!(
        (r[3].as_str(), r[5].as_str()),
        ("DIS", b.port().to_string().as_str())
    );
    assert_eq!(inst.json()["channels"][1]["state"], "DIS");
    assert_eq!(count(&tags_of(&inst, 4), "A"), 4, "not used while DIS");
    assert_eq!(inst.ctl("enable 1"), "channel 1 enabled\n");
    let tags = tags_of(&inst, 10);
    assert_eq!((count(&tags, "A"), count(&tags, "B")), (5, 5), "{tags:?}");
    // A bad address creates nothing.
    let o = inst.ctl_out("create no-such-host.invalid 80");
    assert!(!o.status.success());
    assert_eq!(inst.json()["channels"].as_array().unwrap().len(), 2);
}

#[test]
fn assign_needs_a_hard_disabled_channel_and_moves_its_traffic() {
    let tmp = TempDir::new("assign");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let o = inst.ctl_out(&format!("assign 0 127.0.0.1 {}", b.port()));
    assert_eq!(o.status.code(), Some(1));
    // The server's text on stdout, as balance.fm's client printed it.
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "channel 0 must be disabled to assign new address\n"
    );
    assert!(o.stderr.is_empty());
    assert_eq!(tag(&inst), "A");
    inst.ctl("disable 0");
    assert_eq!(
        inst.ctl(&format!("assign 0 127.0.0.1 {}", b.port())),
        "channel reassigned\n"
    );
    inst.ctl("enable 0");
    assert_eq!(count(&tags_of(&inst, 4), "B"), 4);
    assert_eq!(row(&inst.ctl("show"), 0, 0)[5], b.port().to_string());
}

#[test]
fn create_and_assign_of_the_listener_itself_are_refused() {
    let tmp = TempDir::new("selfloop");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let own = inst.port();
    inst.ctl("disable 0");
    for target in [
        format!("127.0.0.1 {own}"),
        format!("localhost {own}"),
        format!("0.0.0.0 {own}"),
    ] {
        for cmd in [format!("create {target}"), format!("assign 0 {target}")] {
            let o = inst.ctl_out(&cmd);
            // The server's error reply is on stdout (as balance.fm's client).
            let err = String::from_utf8_lossy(&o.stdout);
            assert!(o.stderr.is_empty(), "{cmd}");
            assert_eq!(o.status.code(), Some(1), "{cmd}: {err}");
            assert!(err.contains("itself"), "{cmd}: {err}");
            assert_eq!(err.lines().count(), 1, "{cmd}: {err}");
        }
    }
    // Nothing changed: one channel, still at the backend.
    assert_eq!(inst.json()["channels"].as_array().unwrap().len(), 1);
    assert_eq!(row(&inst.ctl("show"), 0, 0)[5], a.port().to_string());
}

#[test]
fn create_of_a_legacy_numeric_address_is_refused() {
    let tmp = TempDir::new("numeric");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    for host in ["65535", "127.1", "0x7f.0.0.1"] {
        let o = inst.ctl_out(&format!("create {host} 80"));
        let err = String::from_utf8_lossy(&o.stdout);
        assert_eq!(o.status.code(), Some(1), "{host}: {err}");
        assert_eq!(err.lines().count(), 1, "{host}: {err}");
    }
    assert_eq!(inst.json()["channels"].as_array().unwrap().len(), 1);
}

#[test]
fn a_foreign_socket_on_the_control_path_is_not_called_a_balance_instance() {
    let tmp = TempDir::new("foreign");
    let a = Backend::tagged("A");
    let sock = tmp.join("c.sock");
    // Listens, never answers (its backlog accepts the connect).
    let _foreign = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    let o = Command::new(BIN)
        .args([
            "-f",
            "-b",
            "127.0.0.1",
            &free_port(LOCALHOST_V4).to_string(),
        ])
        .args(chans(&[&a]))
        .arg("--control")
        .arg(&sock)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "{err}");
    assert!(!err.contains("another balance instance"), "{err}");
    assert!(err.contains("does not answer like balance"), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
}

#[test]
fn the_control_client_caps_what_a_foreign_socket_sends() {
    let tmp = TempDir::new("flood");
    let sock = tmp.join("c.sock");
    let l = std::os::unix::net::UnixListener::bind(&sock).unwrap();
    std::thread::spawn(move || {
        if let Ok((mut s, _)) = l.accept() {
            let chunk = vec![b'x'; 64 * 1024];
            while s.write_all(&chunk).is_ok() {}
        }
    });
    let t = Instant::now();
    let o = Command::new(BIN)
        .args(["-c", "show", "--control"])
        .arg(&sock)
        .arg("8080")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(o.stdout.is_empty(), "{} bytes printed", o.stdout.len());
    assert!(err.contains("larger than"), "{err:.300}");
    assert!(
        t.elapsed() < stretched(Duration::from_secs(20)),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn maxc_sends_overflow_to_the_next_channel() {
    let tmp = TempDir::new("maxc");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let inst = start(&tmp, &chans(&[&a, &b]), &[], Some(tmp.join("c.sock")));
    assert_eq!(inst.ctl("maxc 0 1"), "maxc of channel 0 changed to 1\n");
    assert_eq!(row(&inst.ctl("show"), 0, 0)[8], "1");
    let mut held = Vec::new();
    let mut tags = Vec::new();
    for _ in 0..6 {
        let (t, s) = open(&inst);
        tags.push(t);
        held.push(s);
    }
    assert_eq!(count(&tags, "A"), 1, "{tags:?}");
    inst.ctl("maxc 0 0");
    let (t, _s) = open(&inst);
    let (t2, _s2) = open(&inst);
    assert!(t == "A" || t2 == "A", "unlimited again: {t} {t2}");
}

#[test]
fn hash_and_rr_switch_the_group_policy() {
    let tmp = TempDir::new("hash");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let inst = start(&tmp, &chans(&[&a, &b]), &[], Some(tmp.join("c.sock")));
    assert_eq!(inst.ctl("hash"), "group 0 set to hash\n");
    assert_eq!(row(&inst.ctl("show"), 0, 0)[1], "Hash");
    let tags = tags_of(&inst, 8);
    assert!(
        tags.iter().all(|t| *t == tags[0]),
        "one client address, one channel: {tags:?}"
    );
    assert_eq!(inst.ctl("rr"), "group 0 set to round robin\n");
    let tags = tags_of(&inst, 8);
    assert_eq!((count(&tags, "A"), count(&tags, "B")), (4, 4), "{tags:?}");
    assert_eq!(inst.ctl("leastconn"), "group 0 set to least connections\n");
    assert_eq!(row(&inst.ctl("show"), 0, 0)[1], "LC");
    assert_eq!(inst.json()["channels"][0]["type"], "leastconn");
}

#[test]
fn weights_three_to_one_split_a_hundred_connections_three_to_one() {
    let tmp = TempDir::new("weight");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let inst = start(&tmp, &chans(&[&a, &b]), &[], Some(tmp.join("c.sock")));
    assert_eq!(inst.ctl("weight 0 3"), "weight of channel 0 changed to 3\n");
    let tags = tags_of(&inst, 100);
    let na = count(&tags, "A");
    assert!((70..=80).contains(&na), "A got {na} of 100");
    assert_eq!(na + count(&tags, "B"), 100);
    assert_eq!(inst.json()["channels"][0]["weight"], 3);
}

#[test]
fn mrtg_commands_print_two_counters_uptime_and_a_name() {
    let tmp = TempDir::new("mrtg");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let (_, mut s) = open(&inst);
    s.write_all(b"abc\n").unwrap();
    let mut e = [0u8; 4];
    s.read_exact(&mut e).unwrap();
    drop(s);
    wait_until("bytes counted", Duration::from_secs(5), || {
        inst.ctl("mrtg-bytes 0 0").starts_with("6\n4\n")
    })
    .unwrap();
    let out = inst.ctl("mrtg-bytes 0 0");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(l.len(), 4, "{out}");
    assert!(l[2].contains(" days, "), "{out}");
    assert_eq!(l[3], "group 0 channel 0");
    let out = inst.ctl("mrtg-conns 0 0");
    let l: Vec<&str> = out.lines().collect();
    assert_eq!(
        (l.len(), l[0], l[3]),
        (4, "1", "group 0 channel 0"),
        "{out}"
    );
    assert!(!inst.ctl_out("mrtg-conns 0 5").status.success());
}

#[test]
fn show_json_parses_and_carries_every_field() {
    let tmp = TempDir::new("json");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let mut args = chans(&[&a]);
    args.push("!".into());
    args.extend(chans(&[&b]));
    let inst = start(&tmp, &args, &[], Some(tmp.join("c.sock")));
    tag(&inst);
    inst.ctl("disable 1:0");
    let j = inst.json();
    let chs = j["channels"].as_array().unwrap();
    assert_eq!(chs.len(), 2);
    for f in [
        "group",
        "index",
        "type",
        "state",
        "admin",
        "up",
        "host",
        "port",
        "addrs",
        "c",
        "totalc",
        "maxc",
        "weight",
        "sent",
        "rcvd",
        "connect_failures",
        "last_reason",
    ] {
        assert!(chs[0].get(f).is_some(), "missing {f}: {j}");
    }
    assert_eq!(chs[0]["totalc"], 1);
    assert_eq!(chs[1]["state"], "DIS");
    assert_eq!(chs[1]["admin"], "disabled");
    assert_eq!(chs[1]["group"], 1);
    for f in [
        "accepted",
        "refused",
        "spinning",
        "failovers",
        "active",
        "failback_floor",
    ] {
        assert!(j["listener"].get(f).is_some(), "missing listener.{f}: {j}");
    }
    assert_eq!(j["listener"]["accepted"], 1);
    for f in ["in_use", "pooled"] {
        assert!(j["pipes"][f].is_u64(), "missing pipes.{f}: {j}");
    }
    assert_eq!(inst.ctl("failback"), "not failed over\n");
}

#[test]
fn bad_commands_print_one_error_line_exit_1_and_change_nothing() {
    let tmp = TempDir::new("bad");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let before = inst.json();
    for bad in [
        "frobnicate",
        "enable",
        "enable 7",
        "disable 3:0",
        "disable x",
        "maxc 0 -1",
        "weight 0 99999",
        "assign 0 127.0.0.1 1",
        "create 127.0.0.1 0",
        "group 9",
        "mrtg-bytes 4 0",
        "monitor enable",
        "spin 1s",
        "state save",
        "show xml",
        "hash now",
        "kil",
    ] {
        let o = inst.ctl_out(bad);
        assert_eq!(o.status.code(), Some(1), "{bad}");
        // One line on stdout (balance.fm's client printed every answer
        // there), nothing on stderr; the exit status says it failed.
        assert!(o.stderr.is_empty(), "{bad}");
        let out = String::from_utf8_lossy(&o.stdout);
        assert_eq!(out.lines().count(), 1, "{bad}: {out}");
    }
    assert_eq!(inst.json()["channels"], before["channels"]);
    assert_eq!(tag(&inst), "A");
}

/// Read one answer (lines up to the marker) from a raw session.
fn raw_answer(r: &mut impl BufRead) -> Option<(Vec<String>, String)> {
    let mut lines = Vec::new();
    loop {
        let mut l = Vec::new();
        if r.read_until(b'\n', &mut l).ok()? == 0 {
            return None;
        }
        let s = String::from_utf8_lossy(&l).trim_end().to_string();
        if let Some(m) = s.strip_prefix('\u{4}') {
            return Some((lines, m.to_string()));
        }
        lines.push(s);
    }
}

fn raw(sock: &Path) -> (BufReader<UnixStream>, UnixStream) {
    let s = UnixStream::connect(sock).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(15))).unwrap();
    let w = s.try_clone().unwrap();
    let mut r = BufReader::new(s);
    let (_, m) = raw_answer(&mut r).expect("greeting");
    assert_eq!(m, "ok 0");
    (r, w)
}

#[test]
fn garbage_on_the_socket_gets_errors_and_leaves_the_instance_serving() {
    let tmp = TempDir::new("garbage");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let before = inst.json()["channels"].clone();

    // NUL and invalid UTF-8: one error each, the session goes on.
    let (mut r, mut w) = raw(inst.sock());
    w.write_all(b"disable\x000\n").unwrap();
    let (l, m) = raw_answer(&mut r).unwrap();
    assert_eq!((l.len(), m.as_str()), (1, "err 0"), "{l:?}");
    assert!(l[0].contains("NUL"));
    w.write_all(b"disable \xff\xfe\n").unwrap();
    let (l, m) = raw_answer(&mut r).unwrap();
    assert!(l[0].contains("UTF-8") && m == "err 0", "{l:?}");
    w.write_all(b"show\n").unwrap();
    let (l, m) = raw_answer(&mut r).unwrap();
    assert!(l[0].starts_with("GRP") && m == "ok 0");

    // A 1 MiB line: one error, then the session is closed.
    let (mut r, mut w) = raw(inst.sock());
    let big = vec![b'x'; 1 << 20];
    let _ = w.write_all(&big);
    let (l, m) = raw_answer(&mut r).unwrap();
    assert!(l[0].contains("longer than 4096"), "{l:?}");
    assert_eq!(m, "err 0 bye");
    assert!(raw_answer(&mut r).is_none());

    // 1 MiB of pseudo-random bytes.
    let (_r, mut w) = raw(inst.sock());
    let mut x: u32 = 12345;
    let junk: Vec<u8> = (0..1 << 20)
        .map(|_| {
            x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
            (x >> 16) as u8
        })
        .collect();
    let _ = w.write_all(&junk);
    drop(w);

    // More than 16 sessions: one that sends a whole command gets through;
    // the idle one waiting longest is told and closed for it.
    let mut held: Vec<_> = (0..16).map(|_| raw(inst.sock())).collect();
    let (mut r, mut w) = raw(inst.sock());
    w.write_all(b"show\n").unwrap();
    let (l, m) = raw_answer(&mut r).unwrap();
    assert!(l[0].starts_with("GRP") && m == "ok 0", "{l:?}");
    let (l, m) = raw_answer(&mut held[0].0).unwrap();
    assert!(
        l[0].contains("closed for a newer session") && m.ends_with("bye"),
        "{l:?}"
    );
    drop(held);

    wait_until("sessions freed", Duration::from_secs(10), || {
        inst.ctl_out("show").status.success()
    })
    .unwrap();
    assert_eq!(inst.json()["channels"], before);
    assert_eq!(tag(&inst), "A");
}

#[test]
fn interactive_shell_works_with_piped_input_and_prompts_with_the_group() {
    let tmp = TempDir::new("shell");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let mut args = chans(&[&a]);
    args.push("!".into());
    args.extend(chans(&[&b]));
    let inst = start(&tmp, &args, &[], Some(tmp.join("c.sock")));
    let mut child = Command::new(BIN)
        .args(["-b", "127.0.0.1", "-i", "--control"])
        .arg(inst.sock())
        .arg(inst.port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(b"group 1\ndisable 0\nbogus\nshow\nquit\nshow\n")
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("interactive command shell"), "{text}");
    assert!(
        text.contains("balance[0] balance[1] channel 0 disabled\n"),
        "{text}"
    );
    assert!(
        text.contains("balance[1] syntax error: unknown command \"bogus\""),
        "{text}"
    );
    assert!(text.contains("balance[1] GRP Type"), "{text}");
    assert_eq!(text.matches("GRP Type").count(), 1, "stops at quit: {text}");
    assert_eq!(row(&inst.ctl("show"), 1, 0)[3], "DIS");
}

#[test]
fn the_default_socket_lives_in_a_0700_run_dir_named_by_bind_and_port_with_mode_0600() {
    let tmp = TempDir::new("paths");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], None);
    let dir = tmp.join("run");
    assert_eq!(
        std::fs::metadata(&dir).unwrap().permissions().mode() & 0o777,
        0o700
    );
    let sock = dir.join(format!("127.0.0.1:{}.sock", inst.port()));
    assert_eq!(inst.sock(), sock);
    assert_eq!(
        std::fs::symlink_metadata(&sock)
            .unwrap()
            .permissions()
            .mode()
            & 0o777,
        0o600
    );
    // The client finds it from -b and the port alone.
    let o = Command::new(BIN)
        .args(["-b", "127.0.0.1", "-c", "show", &inst.port().to_string()])
        .env("BALANCE_RUNDIR", tmp.join("run"))
        .output()
        .unwrap();
    assert!(o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("GRP"));
    // Without -b and without a wildcard instance: the one live instance on
    // that port, whatever its address.
    let show = |port: u16| {
        Command::new(BIN)
            .args(["-c", "show", &port.to_string()])
            .env("BALANCE_RUNDIR", tmp.join("run"))
            .output()
            .unwrap()
    };
    let o = show(inst.port());
    assert!(
        o.status.success() && String::from_utf8_lossy(&o.stdout).starts_with("GRP"),
        "{}",
        output_text(&o)
    );
    // A port nobody listens on: the wildcard's socket is named.
    let nobody = free_port(LOCALHOST_V4);
    let o = show(nobody);
    assert_eq!(o.status.code(), Some(69));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains(&format!("0.0.0.0:{nobody}.sock")), "{err}");
}

#[test]
fn without_b_two_instances_on_one_port_are_listed_with_the_b_that_picks_each() {
    let tmp = TempDir::new("paths2");
    let a = Backend::tagged("A");
    let one = start(&tmp, &chans(&[&a]), &[], None);
    let other: std::net::IpAddr = "127.0.0.2".parse().unwrap();
    let two = launch(&tmp, &chans(&[&a]), &[], None)
        .bind(other)
        .port(one.port())
        .start();
    let o = Command::new(BIN)
        .args(["-c", "show", &one.port().to_string()])
        .env("BALANCE_RUNDIR", tmp.join("run"))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(64), "{}", output_text(&o));
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("2 instances listen on port"), "{err}");
    assert!(err.contains("-b 127.0.0.1 for "), "{err}");
    assert!(err.contains("-b 127.0.0.2 for "), "{err}");
    // Each -b picks its own.
    assert!(one.ctl("show").starts_with("GRP"));
    assert!(two.ctl_out("show").status.success());
}

#[test]
fn a_live_socket_is_not_stolen_a_stale_one_is_replaced_and_symlinks_are_refused() {
    let tmp = TempDir::new("second");
    let a = Backend::tagged("A");
    let sock = tmp.join("c.sock");
    let first = start(&tmp, &chans(&[&a]), &[], Some(sock.clone()));
    // Same control path, another TCP port: refused, the first keeps serving.
    let o = Command::new(BIN)
        .args([
            "-f",
            "-b",
            "127.0.0.1",
            &free_port(LOCALHOST_V4).to_string(),
        ])
        .args(chans(&[&a]))
        .arg("--control")
        .arg(&sock)
        .output()
        .unwrap();
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("another balance instance answers"), "{err}");
    assert!(first.ctl("show").starts_with("GRP"));

    // SIGKILL leaves a stale socket; the next instance replaces it.
    first.kill();
    assert!(sock.exists());
    let second = start(&tmp, &chans(&[&a]), &[], Some(sock.clone()));
    assert!(second.ctl("show").starts_with("GRP"));

    // A symlink at the socket path is refused.
    let link = tmp.join("link.sock");
    std::os::unix::fs::symlink(tmp.join("elsewhere"), &link).unwrap();
    let o = Command::new(BIN)
        .args([
            "-f",
            "-b",
            "127.0.0.1",
            &free_port(LOCALHOST_V4).to_string(),
        ])
        .args(chans(&[&a]))
        .arg("--control")
        .arg(&link)
        .output()
        .unwrap();
    assert!(!o.status.success());
    assert!(String::from_utf8_lossy(&o.stderr).contains("symlink"));
    assert!(!tmp.join("elsewhere").exists());
}

#[test]
fn kill_stops_the_instance_gracefully_and_removes_the_socket() {
    let tmp = TempDir::new("kill");
    let a = Backend::tagged("A");
    let inst = start(
        &tmp,
        &chans(&[&a]),
        &["--grace", "1"],
        Some(tmp.join("c.sock")),
    );
    assert_eq!(inst.ctl("kill"), "shutting down\n");
    let st = inst
        .wait_exit(Duration::from_secs(10))
        .expect("balance exits after kill");
    assert!(st.success(), "{st:?}");
    assert!(!inst.sock().exists());
    assert!(TcpStream::connect(("127.0.0.1", inst.port())).is_err());
}

#[test]
fn the_state_file_restores_hard_disable_weights_and_created_channels_after_a_restart() {
    let tmp = TempDir::new("state");
    let (a, b, c, d) = (
        Backend::tagged("A"),
        Backend::tagged("B"),
        Backend::tagged("C"),
        Backend::tagged("D"),
    );
    let state = tmp.join("state.json");
    let st = state.to_str().unwrap().to_string();
    let mut args = chans(&[&a, &b]);
    args.push("!".into());
    args.extend(chans(&[&d]));
    let sock = Some(tmp.join("c.sock"));
    let inst = start(&tmp, &args, &["--state-file", &st], sock.clone());
    inst.ctl("disable 0");
    inst.ctl("weight 1 5");
    inst.ctl(&format!("create 127.0.0.1 {}", c.port()));
    inst.ctl("enable 2");
    assert_eq!(inst.ctl("leastconn"), "group 0 set to least connections\n");
    // Several commands in one -c session: group carries over.
    assert_eq!(inst.ctl("group 1; hash"), "group 1 set to hash\n");
    inst.ctl("drain 1:0");
    assert!(state.exists());
    assert_eq!(
        std::fs::metadata(&state).unwrap().permissions().mode() & 0o777,
        0o600
    );
    inst.ctl("kill");
    inst.wait_exit(Duration::from_secs(15)).expect("exit");
    let port = inst.port();
    drop(inst);

    // The state is kept per listener: restart on the same port.
    let inst = launch(&tmp, &args, &["--state-file", &st], sock)
        .port(port)
        .start();
    let j = inst.json();
    let chs = j["channels"].as_array().unwrap();
    assert_eq!(chs.len(), 4, "{j}");
    assert_eq!(chs[0]["state"], "DIS");
    assert_eq!(chs[1]["weight"], 5);
    assert_eq!(chs[2]["group"], 0);
    assert_eq!(chs[2]["port"], c.port());
    assert_eq!(chs[0]["type"], "leastconn");
    assert_eq!(chs[3]["type"], "hash");
    assert_eq!(chs[3]["state"], "drn");
    // Weighted round robin for the traffic below.
    assert_eq!(inst.ctl("rr"), "group 0 set to round robin\n");
    let tags = tags_of(&inst, 12);
    assert_eq!(count(&tags, "A"), 0, "{tags:?}");
    assert!(
        count(&tags, "C") > 0 && count(&tags, "B") > count(&tags, "C"),
        "{tags:?}"
    );
    assert!(inst.stderr().contains("restored"), "{}", inst.stderr());
}

#[test]
fn a_state_file_written_before_names_loads_and_is_rewritten_with_names() {
    let tmp = TempDir::new("oldstate");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let state = tmp.join("state.json");
    let st = state.to_str().unwrap().to_string();
    let port = free_port("127.0.0.1".parse().unwrap());
    // What the version before names wrote (no "name" anywhere).
    let old = format!(
        r#"{{
  "version": 1,
  "listeners": {{
    "balance:{port}": {{
      "configured": [["127.0.0.1:{pa}", "127.0.0.1:{pb}"]],
      "groups": [{{"policy": "rr", "channels": [
        {{"host": "127.0.0.1", "port": {pa}, "admin": "disabled", "maxc": 0, "weight": 1}},
        {{"host": "127.0.0.1", "port": {pb}, "admin": "enabled", "maxc": 7, "weight": 2}}
      ]}}]
    }}
  }}
}}
"#,
        pa = a.port(),
        pb = b.port()
    );
    std::fs::write(&state, old).unwrap();
    std::fs::set_permissions(&state, std::fs::Permissions::from_mode(0o600)).unwrap();
    let inst = launch(
        &tmp,
        &chans(&[&a, &b]),
        &["--state-file", &st],
        Some(tmp.join("c.sock")),
    )
    .port(port)
    .start();
    let j = inst.json();
    let chs = j["channels"].as_array().unwrap();
    assert_eq!(chs[0]["state"], "DIS", "{j}");
    assert_eq!(chs[1]["maxc"], 7);
    assert_eq!(chs[1]["weight"], 2);
    // The configured weight stays the initial one.
    assert_eq!(chs[1]["initial_weight"], 1);
    let (na, nb) = (
        format!("127.0.0.1-{}", a.port()),
        format!("127.0.0.1-{}", b.port()),
    );
    assert_eq!(chs[0]["name"], na.as_str());
    assert_eq!(chs[1]["name"], nb.as_str());
    assert_eq!(j["groups"][0]["name"], "group0");
    for _ in 0..3 {
        assert_eq!(tag(&inst), "B");
    }
    // By its default name; the next change writes the names down.
    assert_eq!(
        inst.ctl(&format!("enable {na}")),
        format!("channel {na} enabled\n")
    );
    let saved: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    let g = &saved["listeners"][format!("balance:{port}")]["groups"][0];
    assert_eq!(g["name"], "group0");
    assert_eq!(g["channels"][0]["name"], na.as_str());
    assert_eq!(g["channels"][0]["admin"], "enabled");
}

#[test]
fn a_corrupt_state_file_is_reported_and_ignored() {
    let tmp = TempDir::new("corrupt");
    let a = Backend::tagged("A");
    let state = tmp.join("state.json");
    std::fs::write(&state, b"{\"version\":1,\"listeners\":{\"x\":").unwrap();
    let st = state.to_str().unwrap().to_string();
    let inst = start(
        &tmp,
        &chans(&[&a]),
        &["--state-file", &st],
        Some(tmp.join("c.sock")),
    );
    let log = inst.stderr();
    assert!(
        log.contains("ERROR") && log.contains("state file") && log.contains("ignored"),
        "{log}"
    );
    assert_eq!(row(&inst.ctl("show"), 0, 0)[3], "ENA");
    assert_eq!(tag(&inst), "A");
    // The next change rewrites it as valid state.
    inst.ctl("maxc 0 4");
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(j["version"], 1);
}

#[test]
fn a_silent_client_is_closed_after_the_ten_second_idle_timeout() {
    let tmp = TempDir::new("idle");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let (mut r, mut w) = raw(inst.sock());
    // A drip: part of a line, never finished.
    w.write_all(b"sh").unwrap();
    let t0 = Instant::now();
    let (l, m) = raw_answer(&mut r).expect("an idle error before the close");
    let took = t0.elapsed();
    assert!(l[0].contains("no complete command"), "{l:?}");
    assert_eq!(m, "err 0 bye");
    assert!(
        took >= Duration::from_secs(8) && took < stretched(Duration::from_secs(20)),
        "closed after {took:?}"
    );
    assert!(raw_answer(&mut r).is_none());
}

#[test]
fn another_user_cannot_open_the_control_socket() {
    if uid() != 0 || Command::new("setpriv").arg("--version").output().is_err() {
        skip_because("needs root and setpriv (util-linux)");
        return;
    }
    let tmp = TempDir::new("otheruser");
    std::fs::set_permissions(tmp.path(), std::fs::Permissions::from_mode(0o755)).unwrap();
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let o = Command::new("setpriv")
        .args(["--reuid=65534", "--regid=65534", "--clear-groups", BIN])
        .args(["-b", "127.0.0.1", "-c", "disable 0", "--control"])
        .arg(inst.sock())
        .arg(inst.port().to_string())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(69), "{o:?}");
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("ermission denied"), "{err}");
    assert_eq!(row(&inst.ctl("show"), 0, 0)[3], "ENA");
}

#[test]
fn fifty_concurrent_control_clients_get_answers_or_a_clear_refusal_and_traffic_flows() {
    let tmp = TempDir::new("busy");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let sock = inst.sock().to_path_buf();
    let workers: Vec<_> = (0..50)
        .map(|_| {
            let sock = sock.clone();
            std::thread::spawn(move || -> (usize, usize) {
                let s = UnixStream::connect(&sock).unwrap();
                s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
                let mut w = s.try_clone().unwrap();
                let mut r = BufReader::new(s);
                let (l, m) = raw_answer(&mut r).expect("greeting or refusal");
                let refused = |l: &[String]| {
                    l[0].contains("too many control sessions")
                        || l[0].contains("closed for a newer session")
                };
                if m.starts_with("err") {
                    assert!(refused(&l), "{l:?}");
                    return (0, 1);
                }
                let mut answered = 0;
                for i in 0..20 {
                    // A newcomer closed for a newer one may be gone already.
                    let sent = w.write_all(b"show\n");
                    assert!(i == 0 || sent.is_ok(), "{sent:?}");
                    let (l, m) = raw_answer(&mut r).expect("answer");
                    // A newcomer that found every place taken is told so
                    // in answer to its first command.
                    if i == 0 && m.starts_with("err") {
                        assert!(refused(&l), "{l:?}");
                        return (0, 1);
                    }
                    assert!(m == "ok 0" && l[0].starts_with("GRP"), "{m} {l:?}");
                    answered += 1;
                }
                (answered, 0)
            })
        })
        .collect();
    // The data path keeps working meanwhile.
    assert_eq!(tag(&inst), "A");
    let (mut answered, mut refused) = (0, 0);
    for w in workers {
        let (a, r) = w.join().unwrap();
        answered += a;
        refused += r;
    }
    assert_eq!(answered + refused * 20, 50 * 20);
    assert!(
        answered >= 16 * 20,
        "answered {answered}, refused {refused}"
    );
    assert!(inst.ctl("show").starts_with("GRP"));
}

#[test]
fn the_shell_outlives_the_idle_timeout_and_keeps_its_group() {
    let tmp = TempDir::new("shellidle");
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let mut args = chans(&[&a]);
    args.push("!".into());
    args.extend(chans(&[&b]));
    let inst = start(&tmp, &args, &[], Some(tmp.join("c.sock")));
    let mut child = Command::new(BIN)
        .args(["-b", "127.0.0.1", "-i", "--control"])
        .arg(inst.sock())
        .arg(inst.port().to_string())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        // Not inherited: the test's stderr could be a socket (a journal).
        // The shell writes its answers, errors too, to stdout.
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut stdin = child.stdin.take().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let shown = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let reader = {
        let shown = shown.clone();
        std::thread::spawn(move || {
            let mut buf = [0u8; 4096];
            while let Ok(n @ 1..) = stdout.read(&mut buf) {
                shown.lock().unwrap().extend_from_slice(&buf[..n]);
            }
        })
    };
    stdin.write_all(b"group 1\n").unwrap();
    // An operator pausing at the prompt: the server ends a session idle
    // for 10 s, so the shell must hold none there. Rather than pausing past
    // the limit, the proof: once the prompt is back, no socket is open.
    let text = || String::from_utf8_lossy(&shown.lock().unwrap()).into_owned();
    wait_until("the group 1 prompt", IO_TIMEOUT, || {
        text().ends_with("balance[1] ")
    })
    .unwrap_or_else(|e| panic!("{e}: {}", text()));
    let sockets: Vec<String> = fd_targets(child.id())
        .into_iter()
        .filter(|t| t.starts_with("socket:"))
        .collect();
    assert!(
        sockets.is_empty(),
        "the shell holds {sockets:?} at its prompt"
    );
    let long = format!("{}\n", "x".repeat(5000));
    stdin.write_all(long.as_bytes()).unwrap();
    stdin.write_all(b"disable 0\nquit\n").unwrap();
    drop(stdin);
    let status = child.wait().unwrap();
    reader.join().unwrap();
    let text = text();
    assert!(status.success(), "{text}");
    assert!(text.contains("longer than 4096"), "{text}");
    assert!(text.contains("balance[1] channel 0 disabled"), "{text}");
    assert_eq!(row(&inst.ctl("show"), 1, 0)[3], "DIS");
    assert_eq!(row(&inst.ctl("show"), 0, 0)[3], "ENA");
}

/// Run an instance with `--state-file STATE` on `port`: `create` a channel
/// to `evil` and disable channel 0, then stop it. Leaves a valid state file
/// that, if applied, sends every client to `evil`.
fn plant_state(tmp: &TempDir, args: &[String], state: &Path, evil: &Backend) -> u16 {
    let st = state.to_str().unwrap();
    let inst = start(tmp, args, &["--state-file", st], Some(tmp.join("c.sock")));
    inst.ctl(&format!("create 127.0.0.1 {}", evil.port()));
    inst.ctl("enable 1");
    inst.ctl("disable 0");
    inst.ctl("kill");
    inst.wait_exit(Duration::from_secs(15)).expect("exit");
    inst.port()
}

#[test]
fn a_state_file_others_can_write_or_that_another_user_owns_is_not_trusted() {
    let tmp = TempDir::new("untrusted");
    let (a, evil) = (Backend::tagged("A"), Backend::tagged("EVIL"));
    let state = tmp.join("state.json");
    let st = state.to_str().unwrap().to_string();
    let args = chans(&[&a]);
    let port = plant_state(&tmp, &args, &state, &evil);
    let restart = || {
        launch(
            &tmp,
            &args,
            &["--state-file", &st],
            Some(tmp.join("c.sock")),
        )
        .port(port)
        .start()
    };
    let set_mode = |m| std::fs::set_permissions(&state, std::fs::Permissions::from_mode(m));
    let mut cases = vec![("mode 0666", "writable by group or others")];
    if uid() == 0 {
        cases.push(("owned by nobody", "owned by uid 65534"));
    }
    for (how, why) in cases {
        if how == "mode 0666" {
            set_mode(0o666).unwrap();
        } else {
            set_mode(0o600).unwrap();
            std::os::unix::fs::chown(&state, Some(65534), Some(65534)).unwrap();
        }
        let inst = restart();
        let log = inst.stderr();
        assert_eq!(
            log.lines()
                .filter(|l| l.contains("state file") && l.contains(why))
                .count(),
            1,
            "{how}: {log}"
        );
        assert!(
            log.contains("not trusted") && log.contains("ignored"),
            "{log}"
        );
        assert_eq!(inst.json()["channels"].as_array().unwrap().len(), 1);
        assert_eq!(row(&inst.ctl("show"), 0, 0)[3], "ENA");
        assert_eq!(tags_of(&inst, 4), ["A"; 4], "{how}");
        drop(inst);
        assert_eq!(evil.accepted(), 0, "{how}");
        // Put the planted file back for the next case (the run above did
        // not change anything, so it was not rewritten).
        if uid() == 0 {
            std::os::unix::fs::chown(&state, Some(0), Some(0)).unwrap();
        }
    }
    // The same file, once only we can write it, is applied: the refusals
    // above were about trust, not content.
    set_mode(0o600).unwrap();
    let inst = restart();
    assert!(inst.stderr().contains("restored"), "{}", inst.stderr());
    assert_eq!(tag(&inst), "EVIL");
}

#[test]
fn the_state_temp_file_never_follows_a_planted_symlink_and_leftovers_are_removed() {
    let tmp = TempDir::new("tmpfile");
    let a = Backend::tagged("A");
    let state = tmp.join("state.json");
    let st = state.to_str().unwrap().to_string();
    // Left by killed instances: a PID that cannot exist (above pid_max),
    // and one with ours. A file of another name stays.
    let dead = tmp.join(".state.json.tmp.999999999");
    let other = tmp.join(".other.json.tmp.999999999");
    std::fs::write(&dead, b"half a save").unwrap();
    std::fs::write(&other, b"not ours").unwrap();
    let inst = start(
        &tmp,
        &chans(&[&a]),
        &["--state-file", &st],
        Some(tmp.join("c.sock")),
    );
    assert!(!dead.exists(), "left-over temp file not removed");
    assert!(other.exists());
    // A symlink planted at the name the next save will use.
    let victim = tmp.join("victim");
    std::fs::write(&victim, b"precious\n").unwrap();
    let planted = tmp.join(format!(".state.json.tmp.{}", inst.pid()));
    std::os::unix::fs::symlink(&victim, &planted).unwrap();
    inst.ctl("maxc 0 4");
    assert_eq!(std::fs::read(&victim).unwrap(), b"precious\n");
    let md = std::fs::symlink_metadata(&state).unwrap();
    assert!(md.file_type().is_file(), "state file is {md:?}");
    assert_eq!(md.permissions().mode() & 0o777, 0o600);
    let j: serde_json::Value = serde_json::from_slice(&std::fs::read(&state).unwrap()).unwrap();
    assert_eq!(j["version"], 1);
    assert!(
        std::fs::symlink_metadata(&planted).is_err(),
        "planted link left"
    );
}

#[test]
fn a_fifo_or_a_device_as_state_file_is_refused_at_start_with_exit_64() {
    let tmp = TempDir::new("statefifo");
    let a = Backend::tagged("A");
    let fifo = tmp.join("state.fifo");
    assert!(
        Command::new("mkfifo")
            .arg(&fifo)
            .status()
            .unwrap()
            .success()
    );
    for (path, what) in [
        (fifo.to_str().unwrap(), "a FIFO"),
        ("/dev/zero", "a character device"),
    ] {
        let mut cmd = Command::new(BIN);
        cmd.env("BALANCE_RUNDIR", tmp.join("run"))
            .args(["-f", "-b", "127.0.0.1", "--state-file", path])
            .arg(free_port(LOCALHOST_V4).to_string())
            .arg(a.channel());
        let (code, err) = run_cmd_to_exit(cmd, Duration::from_secs(10));
        assert_eq!(code, Some(64), "{path}: {err}");
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(
            err.contains("--state-file") && err.contains(what),
            "{path}: {err}"
        );
    }
}

#[test]
fn an_operator_gets_through_twenty_sessions_trickling_bytes() {
    let tmp = TempDir::new("trickle");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let sock = inst.sock().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Twenty sessions each sending a byte of a line that never ends every
    // 200 ms; one that is closed comes back at once.
    let open = {
        let sock = sock.clone();
        move || UnixStream::connect(&sock).ok()
    };
    let mut conns: Vec<Option<UnixStream>> = (0..20).map(|_| open()).collect();
    let slow = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                for c in conns.iter_mut() {
                    if c.as_mut().is_none_or(|s| s.write_all(b"s").is_err()) {
                        *c = open();
                    }
                }
                std::thread::sleep(Duration::from_millis(200));
            }
        })
    };
    // Let them hold the sessions past the 1 s eviction grace: a time, only
    // waiting passes it.
    std::thread::sleep(Duration::from_millis(1500));
    for i in 0..5 {
        let t0 = Instant::now();
        let out = inst.ctl_out("show");
        let (o, e) = (
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr),
        );
        assert!(
            out.status.success() && o.starts_with("GRP"),
            "show {i}: {o}{e}"
        );
        assert!(
            t0.elapsed() < stretched(Duration::from_secs(3)),
            "show {i}: {:?}",
            t0.elapsed()
        );
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    slow.join().unwrap();
}

// ------------------------------------------------ balance.fm's forms (#9)

#[test]
fn a_port_alone_starts_and_channels_come_with_create_then_enable() {
    // balance.fm's own usage example: a port, no channels.
    let tmp = TempDir::new("portonly");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &[], &[], Some(tmp.join("c.sock")));
    assert_eq!(inst.json()["channels"].as_array().unwrap().len(), 0);
    // Nothing to serve yet: the client is closed, balance keeps running.
    assert!(tag_of_new_client(inst.addr).is_err());
    assert!(inst.try_exit().is_none());
    assert_eq!(
        inst.ctl(&format!("create 127.0.0.1 {}", a.port())),
        "channel created\n"
    );
    assert_eq!(row(&inst.ctl("show"), 0, 0)[3], "DIS");
    assert_eq!(inst.ctl("enable 0"), "channel 0 enabled\n");
    assert_eq!(tag(&inst), "A");
}

#[test]
fn a_repeated_b_and_a_trailing_bang_are_taken_like_balance_fm() {
    let tmp = TempDir::new("forms");
    let a = Backend::tagged("A");
    // The harness adds `-b 127.0.0.1` after these: getopt's last one wins.
    let mut args = chans(&[&a]);
    args.push("!".into());
    let inst = start(&tmp, &args, &["-b", "10.9.9.9", "-t", "9", "-t", "2"], None);
    assert_eq!(tag(&inst), "A");
    assert_eq!(inst.json()["channels"].as_array().unwrap().len(), 1);
}

#[test]
fn version_and_mrtg_keep_balance_fm_line_layout() {
    let tmp = TempDir::new("layout");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let v = inst.ctl("version");
    let lines: Vec<&str> = v.lines().collect();
    assert_eq!(lines.len(), 3, "{v}");
    assert!(lines[0].starts_with("  This is balance "), "{v}");
    assert!(
        lines[1]
            .strip_prefix("  MAXGROUPS=")
            .is_some_and(|n| n.parse::<u64>().is_ok())
    );
    assert!(
        lines[2]
            .strip_prefix("  MAXCHANNELS=")
            .is_some_and(|n| n.parse::<u64>().is_ok())
    );
    for cmd in ["mrtg-bytes 0 0", "mrtg-conns 0 0"] {
        let out = inst.ctl(cmd);
        let l: Vec<&str> = out.lines().collect();
        // MRTG's four lines: in, out, uptime, name.
        assert_eq!(l.len(), 4, "{cmd}: {out}");
        assert!(
            l[0].parse::<u64>().is_ok() && l[1].parse::<u64>().is_ok(),
            "{out}"
        );
        assert_eq!(l[3], "group 0 channel 0");
    }
    // An error keeps balance.fm's words, on stdout, with exit status 1.
    let o = inst.ctl_out("enable");
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("syntax error"));
    let o = inst.ctl_out("disable 9");
    assert_eq!(String::from_utf8_lossy(&o.stdout), "no such channel 9\n");
}

#[test]
fn kill_frees_the_port_at_once_while_live_sessions_finish() {
    let tmp = TempDir::new("killlive");
    let a = Backend::tagged("A");
    let inst = start(
        &tmp,
        &chans(&[&a]),
        &["--grace", "30"],
        Some(tmp.join("c.sock")),
    );
    let (t, mut live) = open(&inst);
    assert_eq!(t, "A");
    assert_eq!(inst.ctl("kill"), "shutting down\n");
    // The port is free at once, as balance.fm's master exiting freed it...
    wait_until("the port to be free", Duration::from_secs(3), || {
        std::net::TcpListener::bind(("127.0.0.1", inst.port())).is_ok()
    })
    .unwrap();
    // ...while the live session goes on, as its children did.
    echo_roundtrip(&mut live, b"still here").unwrap();
    assert!(inst.try_exit().is_none());
    drop(live);
    inst.wait_exit(Duration::from_secs(10))
        .expect("exits once the session ends");
}

/// A stale socket (left by a killed instance) on the first path the client
/// tries must not hide a live instance one directory down (`--user`'s
/// layout): the client takes the candidate that answers.
#[test]
fn a_stale_socket_does_not_hide_the_live_instance_below_it() {
    let tmp = TempDir::new("stale-hides");
    let a = Backend::tagged("A");
    let inner = tmp.join("someuser");
    let inst = Balance::cli(&chans(&[&a])).run_dir(&inner).start();
    let stale = tmp.join(format!("127.0.0.1:{}.sock", inst.port()));
    drop(std::os::unix::net::UnixListener::bind(&stale).expect("plant a socket"));
    assert!(
        stale.exists(),
        "the stale socket file stays after its listener"
    );
    let o = Command::new(BIN)
        .env("BALANCE_RUNDIR", tmp.path())
        .args(["-b", "127.0.0.1", "-c", "show", &inst.port().to_string()])
        .output()
        .expect("run the client");
    assert!(
        o.status.success(),
        "{}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    assert!(String::from_utf8_lossy(&o.stdout).starts_with("GRP"));
}

#[test]
fn of_two_instances_started_together_on_one_control_socket_the_loser_exits_71() {
    let a = Backend::tagged("A");
    for trial in 0..10 {
        let tmp = TempDir::new("ctlrace");
        let sock = tmp.join("c.sock");
        let spawn = |port: u16| {
            Command::new(BIN)
                .args(["-f", "-b", "127.0.0.1", "--control"])
                .arg(&sock)
                .arg(port.to_string())
                .arg(a.addr.to_string())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("spawn balance")
        };
        let (p1, p2) = (free_port(LOCALHOST_V4), free_port(LOCALHOST_V4));
        let mut both = [spawn(p1), spawn(p2)];
        let exited = wait_for("one of the two to exit", Duration::from_secs(15), || {
            both.iter_mut()
                .enumerate()
                .find_map(|(i, c)| c.try_wait().ok().flatten().map(|st| (i, st)))
        });
        let (loser, st) = match exited {
            Ok(x) => x,
            Err(e) => {
                for c in &both {
                    kill(c.id(), libc::SIGKILL);
                }
                panic!("trial {trial}: both kept running ({e:?})");
            }
        };
        let winner = 1 - loser;
        assert_eq!(st.code(), Some(71), "trial {trial}");
        // The winner answers on the socket: the loser may exit while the
        // winner, holding the claim, is still between bind(2) and
        // listen(2) (a refused connect), so its answer is waited for.
        let port = [p1, p2][winner];
        let version = || {
            Command::new(BIN)
                .args(["-b", "127.0.0.1", "-c", "version", "--control"])
                .arg(&sock)
                .arg(port.to_string())
                .output()
                .unwrap()
        };
        if let Err(e) = wait_for("the winner to answer", Duration::from_secs(15), || {
            version().status.success().then_some(())
        }) {
            panic!("trial {trial}: {e:?}: {}", output_text(&version()));
        }
        let pid = both[winner].id();
        kill(pid, libc::SIGTERM);
        let _ = both[winner].wait();
        let _ = both[loser].wait();
    }
}

#[test]
fn an_operator_gets_through_sessions_opened_faster_than_the_eviction_grace() {
    let tmp = TempDir::new("flood");
    let a = Backend::tagged("A");
    let inst = start(&tmp, &chans(&[&a]), &[], Some(tmp.join("c.sock")));
    let sock = inst.sock().to_path_buf();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    // Twenty idle sessions a second, opened together and held open: every
    // place is taken by a session younger than the grace nearly all the
    // time.
    let flood = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let mut held = Vec::new();
            while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                held.extend((0..20).filter_map(|_| UnixStream::connect(&sock).ok()));
                std::thread::sleep(Duration::from_secs(1));
            }
        })
    };
    // Let them fill the table (16 places at 20 a second) and go on: the
    // operator must get through a flood under way, two batches in (a pace
    // of the flood, nothing to poll).
    std::thread::sleep(Duration::from_millis(1500));
    let mut failed = Vec::new();
    for i in 0..10 {
        let out = inst.ctl_out("show");
        let o = String::from_utf8_lossy(&out.stdout);
        if !(out.status.success() && o.starts_with("GRP")) {
            failed.push((i, output_text(&out)));
        }
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    flood.join().unwrap();
    assert!(
        failed.is_empty(),
        "{} of 10 failed: {failed:?}",
        failed.len()
    );
}
