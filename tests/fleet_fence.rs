//! Fencing in fleet mode against a real etcd: two balance instances of a
//! fenced listener (`fence: true`, `spin`) in front of a primary group A
//! and a backup group B, plain TCP backends that record when each session
//! sends its first byte and when it ends. A session is held through the
//! follower X to A; A then fails its checks (its port refuses) and a
//! client comes through the prober Y. No byte of Y's client may reach B
//! before X's session to A was reset, whether X is healthy or cut off
//! from etcd. Without the fleet fence Y fails its client over to B at
//! once while X's session to A lives on.

use crate::common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use common::backend::Backend;
use common::etcd::Etcd;
use common::fleet::serial;
use common::*;

/// A change written to etcd reaches every instance within this (see
/// `common::fleet::REACH`); the fence adds at most a lease's TTL (2 s).
const BOUND: Duration = Duration::from_secs(15);

#[derive(Default)]
struct Log {
    /// (tag the client sent, when its first byte arrived, whether the
    /// watched session was still open then).
    first: Vec<(String, Instant, bool)>,
    /// (tag, when the session ended: EOF or reset).
    ended: Vec<(String, Instant)>,
}

/// The session whose end matters (X's to A), as the backend holds it: a
/// byte arriving anywhere is checked against it in the kernel's own state
/// at that moment (a reset or a FIN already there reads at once; a live
/// session would block), so the order does not rest on when the test's
/// threads happen to run.
#[derive(Default)]
struct Watched(Mutex<Option<TcpStream>>);

impl Watched {
    fn open(&self) -> bool {
        let g = self.0.lock().unwrap();
        let Some(s) = g.as_ref() else {
            return false;
        };
        s.set_nonblocking(true).unwrap();
        let mut b = [0u8; 1];
        let r = s.peek(&mut b);
        s.set_nonblocking(false).unwrap();
        matches!(r, Err(e) if e.kind() == std::io::ErrorKind::WouldBlock)
    }
}

/// An echo backend that records each session's first bytes (the client's
/// tag, one line) and its end; a connect that sends nothing (a check) is
/// not recorded. The session tagged `watch` is the one `watched` holds.
fn recording(watched: Arc<Watched>, watch: &'static str) -> (Backend, Arc<Mutex<Log>>) {
    let log = Arc::new(Mutex::new(Log::default()));
    let l = log.clone();
    let b = Backend::spawn(LOCALHOST_V4, move |mut s: TcpStream| {
        let _ = s.set_read_timeout(None);
        let mut buf = [0u8; 256];
        let n = match s.read(&mut buf) {
            Ok(n) if n > 0 => n,
            _ => return,
        };
        let at = Instant::now();
        let tag = String::from_utf8_lossy(&buf[..n]).trim().to_string();
        let open = watched.open();
        if tag == watch {
            *watched.0.lock().unwrap() = s.try_clone().ok();
        }
        l.lock().unwrap().first.push((tag.clone(), at, open));
        if s.write_all(&buf[..n]).is_err() {
            l.lock().unwrap().ended.push((tag, Instant::now()));
            return;
        }
        loop {
            match s.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(n) => {
                    if s.write_all(&buf[..n]).is_err() {
                        break;
                    }
                }
            }
        }
        l.lock().unwrap().ended.push((tag, Instant::now()));
    });
    (b, log)
}

fn first_of(log: &Mutex<Log>, tag: &str) -> Option<Instant> {
    let l = log.lock().unwrap();
    l.first
        .iter()
        .find(|(t, ..)| t == tag)
        .map(|(_, at, _)| *at)
}

/// Whether the watched session was still open when `tag`'s first byte came.
fn watched_open_at(log: &Mutex<Log>, tag: &str) -> Option<bool> {
    let l = log.lock().unwrap();
    l.first
        .iter()
        .find(|(t, ..)| t == tag)
        .map(|(.., open)| *open)
}

fn end_of(log: &Mutex<Log>, tag: &str) -> Option<Instant> {
    let l = log.lock().unwrap();
    l.ended.iter().find(|(t, _)| t == tag).map(|(_, at)| *at)
}

fn yaml(p: &[u16], endpoints: &[String], a: u16, b: u16) -> String {
    let list: Vec<String> = endpoints.iter().map(|e| format!("\"{e}\"")).collect();
    format!(
        "fleet:\n  endpoints: [{}]\n  prefix: /t\n  fallback: 1s\n\
         listeners:\n  - name: db\n    bind: \"127.0.0.1:{}\"\n    fence: true\n    spin: 20s\n\
         \x20   groups:\n      - channels: [\"127.0.0.1:{a}\"]\n      - channels: [\"127.0.0.1:{b}\"]\n\
         \x20   monitor:\n      interval: 200ms\n      fall: 2\n      rise: 2\n      checks:\n        - connect: {{}}\n",
        list.join(", "),
        p[0]
    )
}

/// One instance with its own endpoints and run dir.
fn start(endpoints: &[String], a: u16, b: u16) -> (Balance, TempDir) {
    let dir = TempDir::new("fleetfence");
    let eps = endpoints.to_vec();
    let bal = Balance::config(1, move |p| yaml(p, &eps, a, b))
        .run_dir(dir.path())
        .metrics()
        .start();
    (bal, dir)
}

fn role(b: &Balance) -> String {
    b.json()["listener"]["fleet"]["role"]
        .as_str()
        .unwrap_or("")
        .to_string()
}

fn fence(b: &Balance) -> serde_json::Value {
    b.json()["listener"]["fleet"]["fence"].clone()
}

/// The prober Y (started first), then the follower X; both serving group
/// 0 through the fleet fence.
fn pair(endpoints_y: &[String], endpoints_x: &[String], a: u16, b: u16) -> [(Balance, TempDir); 2] {
    let y = start(endpoints_y, a, b);
    let r = wait_until("the first instance to probe", BOUND, || {
        role(&y.0) == "prober"
    });
    assert!(r.is_ok(), "{r:?}\n{}", y.0.stderr());
    let x = start(endpoints_x, a, b);
    let r = wait_until("X following", BOUND, || role(&x.0) == "follower");
    assert!(r.is_ok(), "{r:?}\n{}", x.0.stderr());
    for (n, i) in [("Y", &y.0), ("X", &x.0)] {
        let r = wait_until("group 0 granted by the fleet", BOUND, || {
            let f = fence(i);
            f["granted"] == true && f["group"] == 0
        });
        assert!(r.is_ok(), "{n}: {r:?}: {}\n{}", i.json(), i.stderr());
    }
    [y, x]
}

/// A client through `bal` that sends `tag` and waits for its echo.
fn session(bal: &Balance, tag: &str) -> TcpStream {
    let mut s = connect(local(bal.port()));
    s.set_read_timeout(Some(Duration::from_secs(30))).unwrap();
    s.write_all(format!("{tag}\n").as_bytes()).unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).unwrap();
    assert_eq!(String::from_utf8_lossy(&buf[..n]).trim(), tag);
    s
}

/// The same in a thread (it may be held for a while).
fn session_in_thread(port: u16, tag: &'static str) -> thread::JoinHandle<std::io::Result<String>> {
    thread::spawn(move || {
        let mut s = try_connect(local(port), Duration::from_secs(5))?;
        s.set_read_timeout(Some(Duration::from_secs(30)))?;
        s.write_all(format!("{tag}\n").as_bytes())?;
        let mut buf = [0u8; 64];
        let n = s.read(&mut buf)?;
        Ok(String::from_utf8_lossy(&buf[..n]).trim().to_string())
    })
}

/// A's session through X ended before any byte of Y's client reached B:
/// when that byte arrived, the session at A read as reset or closed.
fn assert_fenced_first(a: &Mutex<Log>, b: &Mutex<Log>, x: &Balance, y: &Balance) {
    let r = wait_until("Y's client to reach B", BOUND, || {
        first_of(b, "c2").is_some()
    });
    assert!(r.is_ok(), "{r:?}\nY: {}\n{}", y.json(), y.stderr());
    let r = wait_until("X's session to A to end", BOUND, || {
        end_of(a, "c1").is_some()
    });
    assert!(r.is_ok(), "{r:?}\nX: {}\n{}", x.json(), x.stderr());
    let (ended, reached) = (end_of(a, "c1").unwrap(), first_of(b, "c2").unwrap());
    let open = watched_open_at(b, "c2").unwrap();
    eprintln!(
        "X's session to A ended {:?} {} Y's client reached B (open at A then: {open})",
        if ended <= reached {
            reached - ended
        } else {
            ended - reached
        },
        if ended <= reached { "before" } else { "AFTER" }
    );
    assert!(
        !open,
        "Y's client reached B while X's session to A was still open\nX: {}\n{}\nY: {}\n{}",
        x.json(),
        x.stderr(),
        y.json(),
        y.stderr()
    );
}

#[test]
fn no_client_reaches_the_new_group_before_every_member_fenced() {
    if !Etcd::available() {
        return skip_without("etcd");
    }
    let _one = serial();
    let etcd = Etcd::single();
    let watched = Arc::new(Watched::default());
    let (a, alog) = recording(watched.clone(), "c1");
    let (b, blog) = recording(watched, "c1");
    let eps = etcd.endpoints();
    let [(y, _yd), (x, _xd)] = pair(&eps, &eps, a.port(), b.port());

    let _c1 = session(&x, "c1");
    assert!(first_of(&alog, "c1").is_some());
    a.stop();
    let c2 = session_in_thread(y.port(), "c2");
    assert_eq!(c2.join().unwrap().unwrap(), "c2");
    assert_fenced_first(&alog, &blog, &x, &y);

    // Logged once with its counts, and shown.
    // (X may have reset it already on the prober's verdict that A is
    // down, before the fence's record came: then the fence resets 0.)
    let r = wait_until("Y to log the fleet fence", BOUND, || {
        y.count("fleet fenced: group 0 to group 1: 2 members acknowledged") == 1
    });
    assert!(r.is_ok(), "{r:?}\n{}", y.stderr());
    let f = fence(&y);
    assert_eq!(
        (
            f["group"].as_u64(),
            f["granted"].as_bool(),
            f["fences"].as_u64(),
            f["last"]["from"].as_u64(),
            f["last"]["members"].as_u64()
        ),
        (Some(1), Some(true), Some(1), Some(0), Some(2)),
        "{f}"
    );
    let m = common::metrics::scrape(y.metrics_port());
    assert!(
        m.contains("balance_fleet_fences_total{listener=\"db\"} 1"),
        "{m}"
    );
}

#[test]
fn a_member_cut_off_from_etcd_fences_itself_before_the_others_go_on() {
    if !Etcd::available() {
        return skip_without("etcd");
    }
    let _one = serial();
    let etcd = Etcd::three();
    let watched = Arc::new(Watched::default());
    let (a, alog) = recording(watched.clone(), "c1");
    let (b, blog) = recording(watched, "c1");
    let eps = etcd.endpoints();
    // X talks to member 0 only; Y to the two others.
    let [(y, _yd), (x, _xd)] = pair(&eps[1..], &eps[..1], a.port(), b.port());

    let _c1 = session(&x, "c1");
    etcd.move_leader_off(0);
    etcd.hang(0);
    let cut = Instant::now();
    a.stop();
    let c2 = session_in_thread(y.port(), "c2");
    assert_eq!(c2.join().unwrap().unwrap(), "c2");
    assert_fenced_first(&alog, &blog, &x, &y);
    eprintln!(
        "cut off at 0; X's session reset at {:?}; Y's client on B at {:?}",
        end_of(&alog, "c1").unwrap() - cut,
        first_of(&blog, "c2").unwrap() - cut
    );
    let r = wait_until("X to say it fenced itself", BOUND, || {
        x.has("fleet fence: etcd has not renewed this member's lease")
    });
    assert!(r.is_ok(), "{r:?}\n{}", x.stderr());
    assert_eq!(fence(&x)["self_fences"].as_u64(), Some(1));

    // While cut off, X sends no new client anywhere: held past the
    // fleet's grant bound, it spins.
    let held = session_in_thread(x.port(), "c3");
    let r = wait_until("X to hold a client", BOUND, || {
        x.json()["listener"]["spinning"].as_u64() == Some(1)
    });
    assert!(
        r.is_ok(),
        "{r:?}
{}",
        x.stderr()
    );
    assert!(first_of(&alog, "c3").is_none() && first_of(&blog, "c3").is_none());
    // Back: X acknowledges the fleet's group and serves it.
    etcd.resume(0);
    assert_eq!(held.join().unwrap().unwrap(), "c3");
    assert!(first_of(&blog, "c3").is_some());
    let r = wait_until("X to serve group 1 again", BOUND, || {
        let f = fence(&x);
        f["granted"] == true && f["group"] == 1
    });
    assert!(r.is_ok(), "{r:?}\n{}", x.stderr());
}
