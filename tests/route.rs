//! Routing by key (`route:`): TLS server names peeked from real
//! ClientHellos (openssl s_client against openssl s_server backends with
//! their own certificates), the route file reloaded when it changes, a
//! real HTTP directory (a small server run here that answers, answers
//! slowly, answers 404 and goes away), an argv lookup, the address keys
//! (`by: dst` on one wildcard listener, directly and through a trusted
//! PROXY header; `by: src`), the connection log's route fields, and the
//! peek's bounds.

use crate::common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::Duration;

use common::*;

// ------------------------------------------------------------------ TLS

/// A self-signed certificate and key for `CN=cn` in `dir`.
fn cert(dir: &Path, cn: &str) -> (PathBuf, PathBuf) {
    common::pki::self_signed(dir, cn, &format!("/CN={cn}"))
}

/// `openssl s_server` with its own certificate (`CN=cn`), stopped by pid
/// on drop.
struct TlsBackend {
    child: Child,
    port: u16,
}

impl TlsBackend {
    fn start(dir: &Path, cn: &str) -> TlsBackend {
        let (c, k) = cert(dir, cn);
        let port = free_port(LOCALHOST_V4);
        let child = Command::new("openssl")
            .args([
                "s_server",
                "-quiet",
                "-accept",
                &format!("127.0.0.1:{port}"),
            ])
            .arg("-cert")
            .arg(&c)
            .arg("-key")
            .arg(&k)
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("run openssl s_server");
        let b = TlsBackend { child, port };
        wait_until("s_server to listen", Duration::from_secs(10), || {
            TcpStream::connect(local(port)).is_ok()
        })
        .unwrap();
        b
    }

    fn channel(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }
}

impl Drop for TlsBackend {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The certificate subject CN a TLS client got through `port` with
/// `servername` (None: no SNI sent), or None when the handshake failed.
fn subject_via(port: u16, servername: Option<&str>) -> Option<String> {
    let mut cmd = Command::new("openssl");
    cmd.args(["s_client", "-connect", &format!("127.0.0.1:{port}")]);
    match servername {
        Some(n) => cmd.args(["-servername", n]),
        None => cmd.arg("-noservername"),
    };
    let dir = TempDir::new("s_client");
    let out_path = dir.join("out");
    let mut child = cmd
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("run openssl s_client");
    let done = wait_for("s_client to exit", Duration::from_secs(20), || {
        child.try_wait().ok().flatten()
    });
    if done.is_err() {
        let _ = child.kill();
        let _ = child.wait();
    }
    let out = std::fs::read_to_string(&out_path).unwrap_or_default();
    out.lines().find_map(|l| {
        let l = l.trim();
        let rest = l.strip_prefix("subject=")?;
        // "CN = A" or "CN=A", by openssl version.
        Some(rest.rsplit('=').next()?.trim().to_string())
    })
}

fn need_openssl() -> bool {
    let ok = Command::new("openssl")
        .arg("version")
        .stdout(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !ok {
        skip_without("openssl");
    }
    ok
}

/// A ClientHello naming `name` in one TLS record, as a client's first
/// bytes (for tests that need many clients at once).
fn client_hello(name: &str) -> Vec<u8> {
    let n = name.as_bytes();
    let mut body = vec![3, 3];
    body.extend([7u8; 32]);
    body.push(0);
    body.extend([0, 2, 0x13, 0x01, 1, 0]);
    let mut sni = vec![0u8];
    sni.extend((n.len() as u16).to_be_bytes());
    sni.extend(n);
    let mut list = (sni.len() as u16).to_be_bytes().to_vec();
    list.extend(sni);
    let mut exts = vec![0, 0];
    exts.extend((list.len() as u16).to_be_bytes());
    exts.extend(list);
    body.extend((exts.len() as u16).to_be_bytes());
    body.extend(exts);
    let mut msg = vec![1];
    msg.extend(&(body.len() as u32).to_be_bytes()[1..]);
    msg.extend(body);
    let mut rec = vec![22, 3, 1];
    rec.extend((msg.len() as u16).to_be_bytes());
    rec.extend(msg);
    rec
}

/// Send `first` through `port`; the tag of the echo backend reached
/// (None: closed without one).
fn tag_after(port: u16, first: &[u8]) -> Option<String> {
    let mut s = connect(local(port));
    s.write_all(first).ok()?;
    let mut r = BufReader::new(s);
    let mut tag = String::new();
    r.read_line(&mut tag).ok()?;
    let tag = tag.trim().to_string();
    (!tag.is_empty()).then_some(tag)
}

fn json_route(bal: &Balance) -> serde_json::Value {
    bal.json()["listener"]["route"].clone()
}

fn n(v: &serde_json::Value, k: &str) -> u64 {
    v[k].as_u64().unwrap_or_else(|| panic!("{k} in {v}"))
}

/// balance with one listener: a group per channel, named `pod-a`,
/// `pod-b`, ... in order, and the `route:` block `route` (its lines
/// indented by six spaces).
fn start_routed(channels: &[String], route: &str) -> Balance {
    start_routed_with("127.0.0.1", channels, "", route)
}

/// [`start_routed`] bound to `ip` (with the port picked), with the
/// listener's other keys `extra` (its lines indented by four spaces).
fn start_routed_with(ip: &str, channels: &[String], extra: &str, route: &str) -> Balance {
    let groups: String = channels
        .iter()
        .zip('a'..)
        .map(|(c, n)| format!("      - name: pod-{n}\n        channels: [\"{c}\"]\n"))
        .collect();
    let (ip, extra, route) = (ip.to_string(), extra.to_string(), route.to_string());
    Balance::config(1, move |p: &[u16]| {
        format!(
            "listeners:\n  - name: routed\n    bind: \"{ip}:{}\"\n{extra}    groups:\n{groups}    route:\n{route}",
            p[0]
        )
    })
    .metrics()
    .start()
}

/// The listener's `connection_log:` key: JSON lines into `path`.
fn json_log_key(path: &Path) -> String {
    format!(
        "    connection_log: {{target: \"{}\", format: json}}\n",
        path.display()
    )
}

/// The first `n` lines of a JSON connection log, parsed, once there are
/// that many (each is written within the writer's batching after its
/// connection ends).
fn json_log(path: &Path, n: usize) -> Vec<serde_json::Value> {
    let lines = wait_for("the connection log lines", LINE_WAIT, || {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        let lines: Vec<String> = text.lines().map(str::to_string).collect();
        (lines.len() >= n).then_some(lines)
    })
    .unwrap_or_else(|e| {
        panic!(
            "{e}: {:?}",
            std::fs::read_to_string(path).unwrap_or_default()
        )
    });
    lines
        .iter()
        .take(n)
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("{e}: {l}")))
        .collect()
}

/// How long a connection log line may take once its connection ended:
/// the writer's batching (20 ms) plus scheduling.
const LINE_WAIT: Duration = Duration::from_secs(5);

// ------------------------------------------------------------ directory

#[derive(Clone)]
enum Reply {
    Target(&'static str),
    NotFound,
    /// Answer after this long.
    Slow(Duration, &'static str),
    /// Answer once the gate opens.
    Gated(Arc<AtomicBool>, &'static str),
}

/// A real HTTP directory: `GET /backend/KEY` answers from `replies`,
/// counts requests per key, and goes away (its port refuses) on `stop`.
struct Directory {
    port: u16,
    replies: Arc<Mutex<HashMap<String, Reply>>>,
    asked: Arc<Mutex<HashMap<String, usize>>>,
    stop: Arc<AtomicBool>,
}

impl Directory {
    fn start() -> Directory {
        let l = TcpListener::bind((LOCALHOST_V4, 0)).unwrap();
        let port = l.local_addr().unwrap().port();
        l.set_nonblocking(true).unwrap();
        let d = Directory {
            port,
            replies: Arc::default(),
            asked: Arc::default(),
            stop: Arc::default(),
        };
        let (replies, asked, stop) = (d.replies.clone(), d.asked.clone(), d.stop.clone());
        thread::spawn(move || {
            while !stop.load(SeqCst) {
                let Ok((s, _)) = l.accept() else {
                    thread::sleep(Duration::from_millis(5));
                    continue;
                };
                let (replies, asked) = (replies.clone(), asked.clone());
                thread::spawn(move || serve_one(s, &replies, &asked));
            }
            // The listener closes here: the directory is gone.
        });
        d
    }

    fn set(&self, key: &str, r: Reply) {
        self.replies.lock().unwrap().insert(key.into(), r);
    }

    fn asked(&self, key: &str) -> usize {
        self.asked.lock().unwrap().get(key).copied().unwrap_or(0)
    }

    fn go_away(&self) {
        self.stop.store(true, SeqCst);
        wait_until("the directory to go away", Duration::from_secs(5), || {
            TcpStream::connect(local(self.port)).is_err()
        })
        .unwrap();
    }
}

fn serve_one(
    s: TcpStream,
    replies: &Mutex<HashMap<String, Reply>>,
    asked: &Mutex<HashMap<String, usize>>,
) {
    s.set_nonblocking(false).unwrap();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut line = String::new();
    if r.read_line(&mut line).is_err() {
        return;
    }
    loop {
        let mut h = String::new();
        if r.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
            break;
        }
    }
    let key = line
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.strip_prefix("/backend/"))
        .unwrap_or_default()
        .to_string();
    *asked.lock().unwrap().entry(key.clone()).or_default() += 1;
    let reply = replies.lock().unwrap().get(&key).cloned();
    let (status, body) = match reply {
        Some(Reply::Target(t)) => ("200 OK", t),
        Some(Reply::Slow(d, t)) => {
            thread::sleep(d);
            ("200 OK", t)
        }
        Some(Reply::Gated(gate, t)) => {
            // Bounded: balance's lookup timeout ends the wait anyway.
            let _ = wait_until("the gate", IO_TIMEOUT, || gate.load(SeqCst));
            ("200 OK", t)
        }
        Some(Reply::NotFound) | None => ("404 Not Found", "no such tenant\n"),
    };
    let mut s = s;
    let _ = write!(
        s,
        "HTTP/1.1 {status}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
}

// ---------------------------------------------------------------- tests

#[test]
fn sni_picks_the_backend_by_map_file_and_default_over_real_tls() {
    if !need_openssl() {
        return;
    }
    let dir = TempDir::new("route-sni");
    let (a, b, c) = (
        TlsBackend::start(dir.path(), "A"),
        TlsBackend::start(dir.path(), "B"),
        TlsBackend::start(dir.path(), "C"),
    );
    let routes = dir.join("routes");
    std::fs::write(
        &routes,
        "# tenants\n*.b.example.com pod-b\nthis line is bad\nold.example.com reject\nz.example.com pod-z\n",
    )
    .unwrap();
    let log = dir.join("conn.log");
    let bal = start_routed_with(
        "127.0.0.1",
        &[a.channel(), b.channel(), c.channel()],
        &json_log_key(&log),
        &format!(
            "      by: sni\n      map:\n        a.example.com: pod-a\n      file: {}\n      default: pod-c\n",
            routes.display()
        ),
    );
    let port = bal.port();
    assert_eq!(
        subject_via(port, Some("a.example.com")).as_deref(),
        Some("A")
    );
    assert_eq!(
        subject_via(port, Some("A.Example.Com")).as_deref(),
        Some("A")
    );
    assert_eq!(
        subject_via(port, Some("x.b.example.com")).as_deref(),
        Some("B")
    );
    assert_eq!(
        subject_via(port, Some("unknown.example.org")).as_deref(),
        Some("C")
    );
    assert_eq!(
        subject_via(port, None).as_deref(),
        Some("C"),
        "no SNI: the default"
    );
    assert_eq!(subject_via(port, Some("old.example.com")), None, "reject");
    assert_eq!(
        bal.count("line 3"),
        1,
        "the bad line is logged once: {}",
        bal.stderr()
    );
    // The connection log names each client's key, where its group came
    // from, the group picked and the group served; the rejected client's
    // line is PR, no server.
    let mut got: Vec<String> = json_log(&log, 6)
        .iter()
        .map(|v| {
            format!(
                "{} {} {} {} {}",
                v["route_key"], v["route_source"], v["route_target"], v["group"], v["server_name"]
            )
        })
        .collect();
    got.sort();
    let (sa, sb, sc) = (
        format!("\"{}\"", a.channel().replace(':', "-")),
        format!("\"{}\"", b.channel().replace(':', "-")),
        format!("\"{}\"", c.channel().replace(':', "-")),
    );
    let mut want = vec![
        format!("\"a.example.com\" \"map\" \"pod-a\" \"pod-a\" {sa}"),
        format!("\"a.example.com\" \"map\" \"pod-a\" \"pod-a\" {sa}"),
        format!("\"old.example.com\" \"file\" \"reject\" null \"<NOSRV>\""),
        format!("\"unknown.example.org\" \"default\" \"pod-c\" \"pod-c\" {sc}"),
        format!("\"x.b.example.com\" \"file\" \"pod-b\" \"pod-b\" {sb}"),
        format!("null \"default\" \"pod-c\" \"pod-c\" {sc}"),
    ];
    want.sort();
    assert_eq!(got, want);
    let rejected = json_log(&log, 6)
        .into_iter()
        .find(|v| v["route_target"] == "reject")
        .unwrap();
    assert_eq!(rejected["termination_state"], "PR", "{rejected}");
    assert_eq!(rejected["Tc"], -1, "{rejected}");
    let r = json_route(&bal);
    assert_eq!(
        (n(&r, "hits"), n(&r, "misses"), n(&r, "rejects")),
        (4, 2, 1),
        "{r}"
    );
    assert_eq!(n(&r, "file_keys"), 2, "{r}");
    let why = bal.ctl("route y.b.example.com");
    assert!(
        why.contains("-> pod-b") && why.contains("from file"),
        "{why}"
    );
    assert!(bal.ctl("route a.example.com").contains("from map"));
    // The file changes: read again, no reload needed.
    // (A group's index is a target too.)
    std::fs::write(&routes, "*.b.example.com 0\nbad\n").unwrap();
    bal.wait_running("the route file read again", || {
        subject_via(port, Some("x.b.example.com")).as_deref() == Some("A")
    });
    assert!(bal.has("read again: 1 keys"), "{}", bal.stderr());
    assert_eq!(
        bal.count("line 2: "),
        1,
        "the new bad line is logged once: {}",
        bal.stderr()
    );
}

#[test]
fn lookup_caches_answers_and_not_found_serves_stale_and_asks_once_per_key() {
    if !need_openssl() {
        return;
    }
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let tls_dir = TempDir::new("route-lookup");
    let c = TlsBackend::start(tls_dir.path(), "C");
    let dir_srv = Directory::start();
    let ttl = stretched(Duration::from_secs(3));
    // Long enough for 100 clients to arrive while one lookup waits, and
    // well within the clients' read timeout.
    let timeout = stretched(Duration::from_secs(2)).min(IO_TIMEOUT / 2);
    let bal = start_routed(
        &[a.channel(), b.channel(), c.channel()],
        &format!(
            "      by: sni\n      lookup:\n        url: \"http://127.0.0.1:{}/backend/{{key}}\"\n        timeout: {}ms\n        ttl: {}ms\n        negative_ttl: 1h\n        stale: 1h\n      default: pod-a\n",
            dir_srv.port,
            timeout.as_millis(),
            ttl.as_millis()
        ),
    );
    let port = bal.port();
    let via = |name: &str| tag_after(port, &client_hello(name));

    // Answers, then a hit from the cache.
    dir_srv.set("t1.example.com", Reply::Target("pod-b"));
    assert_eq!(via("t1.example.com").as_deref(), Some("B"));
    assert_eq!(via("t1.example.com").as_deref(), Some("B"));
    assert_eq!(
        dir_srv.asked("t1.example.com"),
        1,
        "the second client is a cache hit"
    );

    // 100 clients at once with the same new key: one lookup, which all
    // of them wait for (the directory answers only once all 100 do, so
    // none is served from the cache: the hits do not move).
    let gate = Arc::new(AtomicBool::new(false));
    dir_srv.set("new.example.com", Reply::Gated(Arc::clone(&gate), "pod-b"));
    let before = json_route(&bal);
    let clients: Vec<_> = (0..100)
        .map(|_| thread::spawn(move || tag_after(port, &client_hello("new.example.com"))))
        .collect();
    bal.wait_running("100 clients waiting for one lookup", || {
        n(&json_route(&bal), "lookup_waiting") == 100
    });
    assert_eq!(dir_srv.asked("new.example.com"), 1, "one lookup in flight");
    let waiting = |b: &Balance| {
        let text = common::metrics::scrape(b.metrics_port());
        common::metrics::sample(&text, "balance_route_lookup_waiting", "listener=\"routed\"")
    };
    assert_eq!(waiting(&bal), 100.0);
    gate.store(true, SeqCst);
    for c in clients {
        assert_eq!(c.join().unwrap().as_deref(), Some("B"));
    }
    let after = json_route(&bal);
    assert_eq!(
        dir_srv.asked("new.example.com"),
        1,
        "one lookup for 100 clients"
    );
    assert_eq!(n(&after, "lookups"), n(&before, "lookups") + 1, "{after}");
    assert_eq!(n(&after, "hits"), n(&before, "hits"), "{after}");
    assert_eq!(n(&after, "lookup_waiting"), 0, "{after}");
    assert_eq!(waiting(&bal), 0.0);

    // Not found: the default, cached (negative_ttl).
    dir_srv.set("nope.example.com", Reply::NotFound);
    assert_eq!(via("nope.example.com").as_deref(), Some("A"));
    assert_eq!(via("nope.example.com").as_deref(), Some("A"));
    assert_eq!(dir_srv.asked("nope.example.com"), 1, "not found is cached");

    // A real TLS client, routed by the directory's answer to the
    // backend with its certificate.
    dir_srv.set("tls.example.com", Reply::Target("pod-c"));
    assert_eq!(
        subject_via(port, Some("tls.example.com")).as_deref(),
        Some("C")
    );

    // Slower than the timeout, nothing cached: the default.
    dir_srv.set("slow.example.com", Reply::Slow(timeout * 2, "pod-b"));
    assert_eq!(via("slow.example.com").as_deref(), Some("A"));
    let r = json_route(&bal);
    assert_eq!(n(&r, "lookup_errors"), 1, "{r}");

    // The directory goes away: once t1's answer is past its ttl it is
    // served stale; a key never seen gets the default.
    dir_srv.go_away();
    bal.wait_running("a stale answer", || {
        assert_eq!(via("t1.example.com").as_deref(), Some("B"));
        n(&json_route(&bal), "stale") >= 1
    });
    assert_eq!(via("never.example.com").as_deref(), Some("A"));
    let why = bal.ctl("route t1.example.com");
    assert!(why.contains("-> pod-b") && why.contains("stale"), "{why}");
    let r = json_route(&bal);
    // Every lookup made while the directory was up reached it; three more
    // failed after it went away (t1's refresh, never's, `route t1`'s),
    // two of them answered stale.
    assert_eq!(n(&r, "lookups"), dir_lookups(&dir_srv) + 3, "{r}");
    assert_eq!((n(&r, "lookup_errors"), n(&r, "stale")), (4, 2), "{r}");
    // Hits: t1's second client (and t1's clients before its ttl passed);
    // misses: nope's two (a failed lookup is neither).
    assert!(n(&r, "hits") >= 1, "{r}");
    assert_eq!(n(&r, "misses"), 2, "{r}");
    let text = bal.ctl("show json");
    assert!(text.contains("\"stale\""), "{text}");
}

fn dir_lookups(d: &Directory) -> u64 {
    d.asked.lock().unwrap().values().sum::<usize>() as u64
}

#[test]
fn src_keys_match_cidr_blocks_and_reject_closes() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let bal = start_routed(
        &[a.channel(), b.channel()],
        "      by: src\n      map:\n        \"127.0.0.1\": pod-b\n        \"127.0.0.8/29\": reject\n      default: pod-a\n",
    );
    let port = bal.port();
    let from = |src: [u8; 4]| -> Option<String> {
        let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
        s.bind(&SocketAddr::from((src, 0)).into()).unwrap();
        s.connect_timeout(&local(port).into(), IO_TIMEOUT).ok()?;
        let s: TcpStream = s.into();
        s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
        let mut tag = String::new();
        BufReader::new(s).read_line(&mut tag).ok()?;
        Some(tag.trim().to_string()).filter(|t| !t.is_empty())
    };
    assert_eq!(from([127, 0, 0, 1]).as_deref(), Some("B"));
    assert_eq!(from([127, 0, 0, 9]), None, "127.0.0.8/29 is rejected");
    assert_eq!(from([127, 0, 0, 20]).as_deref(), Some("A"));
    let r = json_route(&bal);
    assert_eq!(
        (n(&r, "hits"), n(&r, "misses"), n(&r, "rejects")),
        (2, 1, 1),
        "{r}"
    );
    assert!(bal.ctl("route 127.0.0.12").contains("-> reject"));
    let out = bal.ctl_out("route nonsense");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(!out.status.success() && text.contains("bad key"), "{text}");
}

#[test]
fn the_peek_is_bounded_and_the_bytes_peeked_reach_the_backend_unchanged() {
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    // Long enough for three paced segments on a loaded machine.
    let bound = stretched(Duration::from_secs(1));
    let bal = start_routed(
        &[a.channel(), b.channel()],
        &format!(
            "      by: sni\n      map:\n        b.example.com: pod-b\n      default: pod-a\n      peek_timeout: {}ms\n",
            bound.as_millis()
        ),
    );
    let port = bal.port();

    // A hello in three TCP segments: routed, and echoed back unchanged.
    let hello = client_hello("b.example.com");
    let mut s = connect(local(port));
    s.set_nodelay(true).unwrap();
    for part in [&hello[..3], &hello[3..20], &hello[20..]] {
        s.write_all(part).unwrap();
        // Paced so that each part is its own segment (a pause, not a
        // wait for anything: the peek must cope with any split).
        thread::sleep(Duration::from_millis(30));
    }
    let mut r = BufReader::new(s.try_clone().unwrap());
    let mut tag = String::new();
    r.read_line(&mut tag).unwrap();
    assert_eq!(tag.trim(), "B");
    let mut echoed = vec![0u8; hello.len()];
    r.read_exact(&mut echoed).unwrap();
    assert_eq!(echoed, hello, "the peeked bytes are relayed unchanged");

    // Nothing sent, or half a record: the default once the bound passes,
    // and the bytes sent so far still arrive.
    assert_eq!(tag_after(port, b"").as_deref(), Some("A"));
    let mut s = connect(local(port));
    s.write_all(&hello[..40]).unwrap();
    let mut r = BufReader::new(s);
    let mut tag = String::new();
    r.read_line(&mut tag).unwrap();
    assert_eq!(tag.trim(), "A");
    let mut echoed = vec![0u8; 40];
    r.read_exact(&mut echoed).unwrap();
    assert_eq!(&echoed[..], &hello[..40]);

    // Not TLS at all: the default at once, bytes unchanged.
    assert_eq!(
        tag_after(port, b"GET / HTTP/1.0\r\n\r\n").as_deref(),
        Some("A")
    );
    let r = json_route(&bal);
    assert_eq!((n(&r, "hits"), n(&r, "misses")), (1, 3), "{r}");
}

/// The tag a connected client gets (None: closed without one).
fn tag_of(mut s: TcpStream) -> Option<String> {
    read_line(&mut s).ok().filter(|t| !t.is_empty())
}

#[test]
fn dst_keys_route_one_wildcard_listener_by_the_address_connected_to_or_a_trusted_headers() {
    let (a, b, c) = (
        Backend::tagged("A"),
        Backend::tagged("B"),
        Backend::tagged("C"),
    );
    let dir = TempDir::new("route-dst");
    let log = dir.join("conn.log");
    // One listener on every local address (a config file with a listener
    // per address would route by listener, not by key); PROXY headers
    // from 127.0.0.1 are trusted, so plain clients come from 127.0.0.9.
    let bal = start_routed_with(
        "0.0.0.0",
        &[a.channel(), b.channel(), c.channel()],
        &format!("    accept_proxy: [\"127.0.0.1\"]\n{}", json_log_key(&log)),
        "      by: dst\n      map:\n        \"127.0.0.2\": pod-a\n        \"127.0.0.3/32\": pod-b\n        \"127.0.0.4\": reject\n      default: pod-c\n",
    );
    let port = bal.port();
    // The harness waits for 127.0.0.1 binds only.
    bal.wait_running("the wildcard bind", || {
        bal.stderr()
            .split_whitespace()
            .any(|w| w == format!("bind=0.0.0.0:{port}"))
    });
    let to = |last: u8| SocketAddr::from(([127, 0, 0, last], port));
    let untrusted = std::net::IpAddr::from([127, 0, 0, 9]);
    let direct = |last: u8| tag_of(connect_from(untrusted, to(last)));
    assert_eq!(direct(2).as_deref(), Some("A"));
    assert_eq!(direct(3).as_deref(), Some("B"));
    assert_eq!(direct(1).as_deref(), Some("C"), "unmapped: the default");
    assert_eq!(direct(5).as_deref(), Some("C"), "unmapped: the default");
    assert_eq!(direct(4), None, "127.0.0.4 is rejected");

    // Through a trusted upstream: the header's destination is the key,
    // not the address the upstream connected to.
    let via_header = |connected: u8, dst: &str, sport: u16| {
        let mut s = connect_from(LOCALHOST_V4, to(connected));
        write!(s, "PROXY TCP4 192.0.2.7 {dst} {sport} 443\r\n").unwrap();
        tag_of(s)
    };
    assert_eq!(via_header(2, "127.0.0.3", 40001).as_deref(), Some("B"));
    assert_eq!(via_header(3, "127.0.0.2", 40002).as_deref(), Some("A"));
    assert_eq!(via_header(2, "10.9.9.9", 40003).as_deref(), Some("C"));
    assert_eq!(via_header(2, "127.0.0.4", 40004), None, "rejected");

    // The connection log: the key, its source, the group picked and the
    // one served; the rejected clients' lines are PR without a server.
    let mut got: Vec<String> = json_log(&log, 9)
        .iter()
        .map(|v| {
            format!(
                "{} {} {} {} {}",
                v["route_key"],
                v["route_source"],
                v["route_target"],
                v["group"],
                v["termination_state"]
            )
        })
        .collect();
    got.sort();
    let mut want: Vec<String> = [
        r#""10.9.9.9" "default" "pod-c" "pod-c" "--""#,
        r#""127.0.0.1" "default" "pod-c" "pod-c" "--""#,
        r#""127.0.0.2" "map" "pod-a" "pod-a" "--""#,
        r#""127.0.0.2" "map" "pod-a" "pod-a" "--""#,
        r#""127.0.0.3" "map" "pod-b" "pod-b" "--""#,
        r#""127.0.0.3" "map" "pod-b" "pod-b" "--""#,
        r#""127.0.0.4" "map" "reject" null "PR""#,
        r#""127.0.0.4" "map" "reject" null "PR""#,
        r#""127.0.0.5" "default" "pod-c" "pod-c" "--""#,
    ]
    .map(String::from)
    .to_vec();
    want.sort();
    assert_eq!(got, want);
}

#[test]
fn argv_lookup_gets_the_key_as_one_argument_and_a_bad_key_never_reaches_it() {
    use std::os::unix::fs::PermissionsExt;
    let (a, b) = (Backend::tagged("A"), Backend::tagged("B"));
    let dir = TempDir::new("route-argv");
    let calls = dir.join("calls");
    let prog = dir.join("tenant-of");
    // Records its argument count and arguments, answers t1, knows no
    // other key (exit 1).
    std::fs::write(
        &prog,
        format!(
            "#!/bin/sh\nprintf '%s %s\\n' \"$#\" \"$*\" >> '{}'\ncase \"$1\" in\n  t1.example.com) echo pod-b ;;\n  *) exit 1 ;;\nesac\n",
            calls.display()
        ),
    )
    .unwrap();
    std::fs::set_permissions(&prog, std::fs::Permissions::from_mode(0o755)).unwrap();
    let bal = start_routed(
        &[a.channel(), b.channel()],
        &format!(
            "      by: sni\n      lookup:\n        argv: [\"{}\", \"{{key}}\"]\n        timeout: 5s\n        ttl: 1h\n        negative_ttl: 1h\n      default: pod-a\n",
            prog.display()
        ),
    );
    let port = bal.port();
    let via = |name: &str| tag_after(port, &client_hello(name));
    assert_eq!(via("t1.example.com").as_deref(), Some("B"));
    assert_eq!(via("T1.example.com").as_deref(), Some("B"), "cached");
    assert_eq!(via("nope.example.com").as_deref(), Some("A"));
    assert_eq!(via("nope.example.com").as_deref(), Some("A"), "cached");
    // A server name that would read as an option is never looked up;
    // one with a character no name has is no key at all.
    assert_eq!(via("-rf.example.com").as_deref(), Some("A"));
    assert_eq!(via("a;b.example.com").as_deref(), Some("A"));
    assert_eq!(via("a b.example.com").as_deref(), Some("A"));
    let calls = std::fs::read_to_string(&calls).unwrap();
    assert_eq!(calls, "1 t1.example.com\n1 nope.example.com\n");
    let r = json_route(&bal);
    assert_eq!(
        (n(&r, "lookups"), n(&r, "lookup_errors"), n(&r, "hits")),
        (2, 0, 1),
        "{r}"
    );
    let why = bal.ctl("route -rf.example.com");
    assert!(
        why.contains("-> pod-a") && why.contains("not looked up"),
        "{why}"
    );
}
