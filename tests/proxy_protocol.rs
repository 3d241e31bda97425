//! The PROXY protocol both ways, against real servers: MariaDB with
//! `proxy_protocol_networks` behind balance (the client's address in
//! `USER()`, a grant by host, balance's own mysql check), HAProxy
//! (`send-proxy`, `send-proxy-v2`) and nginx stream (`proxy_protocol on`)
//! as upstreams of an `accept_proxy` listener, nginx with a
//! `proxy_protocol` listen as the backend that prints what it sees; and
//! the headers that are refused: malformed, slow, untrusted.
//! Each test skips (with a message) when its server is not installed.

use crate::common;

use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

use common::mariadb::{Mariadb, query_at};
use common::*;

/// How long a listed source may take to send its header (the product's
/// `HEADER_TIMEOUT`).
const HEADER_TIMEOUT: Duration = Duration::from_secs(3);
const NGINX: &str = "/usr/sbin/nginx";
const NGINX_STREAM: &str = "/usr/lib/nginx/modules/ngx_stream_module.so";
const HAPROXY: &str = "/usr/sbin/haproxy";

fn ip(s: &str) -> IpAddr {
    s.parse().unwrap()
}

/// A client socket bound to `src` (any 127.0.0.0/8 address is local).
fn connect_from(src: IpAddr, to: SocketAddr) -> TcpStream {
    let s = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).unwrap();
    s.bind(&SocketAddr::new(src, 0).into()).unwrap();
    s.connect_timeout(&to.into(), IO_TIMEOUT).unwrap();
    let s: TcpStream = s.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).unwrap();
    s.set_write_timeout(Some(IO_TIMEOUT)).unwrap();
    s
}

/// Everything the peer sends until it closes.
fn read_all(mut s: TcpStream) -> String {
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

/// Whether the peer closed (EOF or reset) within `limit`.
fn closed_within(s: &mut TcpStream, limit: Duration) -> bool {
    s.set_read_timeout(Some(limit)).unwrap();
    let mut b = [0u8; 64];
    match s.read(&mut b) {
        Ok(0) => true,
        Ok(_) => false,
        Err(e) => !matches!(
            e.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ),
    }
}

/// A server process of a test, killed and reaped on drop.
struct Server {
    child: Child,
    _dir: TempDir,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Start `cmd` and wait until every port of `ports` accepts.
fn serve(mut cmd: Command, dir: TempDir, ports: &[u16], log: &Path) -> Server {
    let child = cmd
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| panic!("spawn {cmd:?}: {e}"));
    let mut srv = Server { child, _dir: dir };
    let up = wait_until("the server to listen", Duration::from_secs(10), || {
        srv.child.try_wait().ok().flatten().is_some()
            || ports
                .iter()
                .all(|p| try_connect(local(*p), Duration::from_secs(1)).is_ok())
    });
    if up.is_err() || srv.child.try_wait().ok().flatten().is_some() {
        panic!(
            "{cmd:?} did not start:\n{}",
            std::fs::read_to_string(log).unwrap_or_default()
        );
    }
    srv
}

fn have(path: &str, package: &str) -> bool {
    let ok = Path::new(path).exists();
    if !ok {
        skip_without(package);
    }
    ok
}

/// HAProxy, nginx and its stream module (or a skip naming what is missing).
fn have_haproxy_and_nginx() -> bool {
    have(HAPROXY, "HAProxy (Debian package haproxy)")
        && have(NGINX, "nginx (Debian package nginx)")
        && have(
            NGINX_STREAM,
            "nginx stream (Debian package libnginx-mod-stream)",
        )
}

/// nginx with the stream module: `servers` is the inside of `stream {}`.
fn nginx(servers: &str, ports: &[u16]) -> Server {
    let dir = TempDir::new("nginx");
    let log = dir.join("error.log");
    let conf = format!(
        "load_module {NGINX_STREAM};\n\
         daemon off;\nmaster_process off;\nworker_processes 1;\n\
         pid {pid};\nerror_log {log} info;\n\
         events {{ worker_connections 256; }}\n\
         stream {{\n{servers}\n}}\n",
        pid = dir.join("nginx.pid").display(),
        log = log.display(),
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new(NGINX);
    cmd.arg("-p")
        .arg(dir.path())
        .arg("-e")
        .arg(&log)
        .arg("-c")
        .arg(&path);
    serve(cmd, dir, ports, &log)
}

/// An nginx stream server on a free port that requires a PROXY header and
/// answers `TAG ADDR PORT` (what the header said) and closes.
fn nginx_printer_servers(tags: &[&str]) -> (String, Vec<u16>) {
    let mut conf = String::new();
    let mut ports = Vec::new();
    for tag in tags {
        let p = free_port(LOCALHOST_V4);
        conf.push_str(&format!(
            "server {{ listen 127.0.0.1:{p} proxy_protocol; \
             return \"{tag} $proxy_protocol_addr $proxy_protocol_port\\n\"; }}\n"
        ));
        ports.push(p);
    }
    (conf, ports)
}

/// HAProxy in TCP mode: one frontend per entry, each sending to `to` with
/// the given server option (`send-proxy`, `send-proxy-v2`).
fn haproxy(to: u16, sends: &[&str]) -> (Server, Vec<u16>) {
    let dir = TempDir::new("haproxy");
    let mut conf = String::from(
        "global\n  maxconn 256\n\
         defaults\n  mode tcp\n  timeout connect 5s\n  timeout client 30s\n  timeout server 30s\n",
    );
    let mut ports = Vec::new();
    for (i, send) in sends.iter().enumerate() {
        let p = free_port(LOCALHOST_V4);
        conf.push_str(&format!(
            "listen up{i}\n  bind 127.0.0.1:{p}\n  server s 127.0.0.1:{to} {send}\n"
        ));
        ports.push(p);
    }
    let path = dir.join("haproxy.cfg");
    std::fs::write(&path, conf).unwrap();
    let mut cmd = Command::new(HAPROXY);
    cmd.arg("-db").arg("-f").arg(&path);
    let log = dir.join("none");
    (serve(cmd, dir, &ports, &log), ports)
}

/// The listener's `proxy_headers` counter `what` from `show json`.
fn proxy_count(b: &Balance, what: &str) -> u64 {
    b.json()["listener"]["proxy_headers"][what]
        .as_u64()
        .unwrap_or(0)
}

// ------------------------------------------------- to a backend: MariaDB

/// A relay on 127.0.0.1 whose connections to `to` leave from `src`: the
/// `mariadb` client cannot choose its source address.
fn relay_from(src: IpAddr, to: SocketAddr) -> u16 {
    let l = TcpListener::bind((LOCALHOST_V4, 0)).unwrap();
    let port = l.local_addr().unwrap().port();
    thread::spawn(move || {
        for c in l.incoming().flatten() {
            let up = connect_from(src, to);
            let (mut a, mut b) = (c.try_clone().unwrap(), up.try_clone().unwrap());
            let (mut c2, mut up2) = (c, up);
            thread::spawn(move || {
                let _ = std::io::copy(&mut a, &mut up2);
                let _ = up2.shutdown(std::net::Shutdown::Write);
            });
            thread::spawn(move || {
                let _ = std::io::copy(&mut b, &mut c2);
                let _ = c2.shutdown(std::net::Shutdown::Write);
            });
        }
    });
    port
}

#[test]
fn mariadb_sees_the_client_address_and_the_check_passes() {
    if !Mariadb::available() {
        skip_without("MariaDB (Debian package mariadb-server)");
        return;
    }
    // Headers are required from balance's address (127.0.0.1).
    let m = Mariadb::start(1, &["--proxy-protocol-networks=127.0.0.1"]);
    m.sql("CREATE USER 'chk'@'127.0.0.1'");
    m.sql("CREATE DATABASE t");
    m.sql("CREATE USER 'app'@'127.0.0.2'");
    m.sql("GRANT ALL ON t.* TO 'app'@'127.0.0.2'");
    // Only for the client's address, never for balance's.
    m.sql("CREATE USER 'only3'@'127.0.0.3'");
    for v in ["v1", "v2"] {
        let b = Balance::cli(&[m.channel()])
            .opts(&["--proxy-protocol", v, "-m", "mysql:user=chk:interval=0.5"])
            .start();
        // balance's check logs in as chk@127.0.0.1 through its LOCAL header.
        b.wait_running("the mysql check to pass twice", || {
            b.json()["channels"][0]["checks_passed"].as_u64() >= Some(2)
        });
        assert_eq!(b.json()["channels"][0]["checks_failed"], 0, "{v}");
        let via2 = relay_from(ip("127.0.0.2"), local(b.port()));
        let who = query_at(via2, "app", "SELECT USER()").unwrap();
        assert_eq!(who, "app@127.0.0.2", "{v}");
        // The grant for 127.0.0.2 works.
        query_at(
            via2,
            "app",
            &format!("CREATE TABLE t.{v} (k INT); INSERT INTO t.{v} VALUES (1)"),
        )
        .unwrap();
        assert_eq!(m.sql(&format!("SELECT COUNT(*) FROM t.{v}")), "1");
        // The processlist shows it too: a session held open while we look.
        let mut held = Command::new("mariadb")
            .args(["--no-defaults", "-h127.0.0.1", "-N", "-B", "-uapp"])
            .arg(format!("-P{via2}"))
            .args(["-e", "SELECT SLEEP(30)"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let seen = wait_until(
            "the session in the processlist",
            Duration::from_secs(10),
            || {
                m.sql("SELECT HOST FROM information_schema.PROCESSLIST WHERE USER='app'")
                    .starts_with("127.0.0.2:")
            },
        );
        let _ = held.kill();
        let _ = held.wait();
        assert!(seen.is_ok(), "{v}: {seen:?}");
        // A user granted only for another address is refused: the header,
        // not balance's own address, is what the server judges.
        let via3 = relay_from(ip("127.0.0.3"), local(b.port()));
        assert_eq!(
            query_at(via3, "only3", "SELECT USER()").unwrap(),
            "only3@127.0.0.3"
        );
        let e = query_at(via2, "only3", "SELECT 1").unwrap_err();
        assert!(e.contains("Access denied"), "{v}: {e}");
    }
}

// --------------------------------------- from an upstream: HAProxy, nginx

#[test]
fn upstream_headers_reach_the_backend_as_the_client_address() {
    if !have_haproxy_and_nginx() {
        return;
    }
    let (conf, backend) = nginx_printer_servers(&["seen"]);
    let _backend = nginx(&conf, &backend);
    // balance: headers trusted from 127.0.0.1 only, v2 sent onward.
    let b = Balance::config(1, |p| {
        format!(
            "listeners:\n  - name: pp\n    bind: \"127.0.0.1:{}\"\n    accept_proxy: [\"127.0.0.1/32\"]\n    groups:\n      - proxy_protocol: v2\n        channels: [\"127.0.0.1:{}\"]\n",
            p[0], backend[0]
        )
    })
    .start();
    let (_ha, fronts) = haproxy(b.port(), &["send-proxy", "send-proxy-v2"]);
    let ng_front = free_port(LOCALHOST_V4);
    let _ng = nginx(
        &format!(
            "server {{ listen 127.0.0.1:{ng_front}; proxy_pass 127.0.0.1:{}; proxy_protocol on; }}",
            b.port()
        ),
        &[ng_front],
    );
    // The readiness probes of the upstreams went through already.
    let before = proxy_count(&b, "accepted");
    for (name, front) in [
        ("haproxy send-proxy", fronts[0]),
        ("haproxy send-proxy-v2", fronts[1]),
        ("nginx proxy_protocol on", ng_front),
    ] {
        let c = connect_from(ip("127.0.0.2"), local(front));
        let port = c.local_addr().unwrap().port();
        let got = read_all(c);
        assert_eq!(got, format!("seen 127.0.0.2 {port}\n"), "{name}");
    }
    assert_eq!(proxy_count(&b, "accepted"), before + 3);
    for bad in ["malformed", "slow", "untrusted"] {
        assert_eq!(proxy_count(&b, bad), 0, "{bad}");
    }
}

#[test]
fn hash_groups_hash_the_address_the_header_carries() {
    if !have_haproxy_and_nginx() {
        return;
    }
    let (conf, backends) = nginx_printer_servers(&["a", "b"]);
    let _backends = nginx(&conf, &backends);
    let chans: Vec<String> = backends
        .iter()
        .map(|p| format!("127.0.0.1:{p}"))
        .chain(["%".to_string()])
        .collect();
    let b = Balance::cli(&chans)
        .opts(&["--accept-proxy", "127.0.0.1", "--proxy-protocol", "v1"])
        .start();
    let (_ha, fronts) = haproxy(b.port(), &["send-proxy-v2"]);
    // Every connection reaches balance from HAProxy's 127.0.0.1: only the
    // header's address can spread them, and keep each client on one.
    let mut tags = std::collections::HashSet::new();
    for host in 2..=21u8 {
        let src = IpAddr::V4(Ipv4Addr::new(127, 0, 0, host));
        let mut first = None;
        for _ in 0..3 {
            let got = read_all(connect_from(src, local(fronts[0])));
            let (tag, rest) = got.split_once(' ').unwrap_or_else(|| panic!("{got:?}"));
            assert!(rest.starts_with(&format!("{src} ")), "{got:?}");
            assert_eq!(*first.get_or_insert(tag.to_string()), tag, "{src}");
            tags.insert(tag.to_string());
        }
    }
    assert_eq!(tags.len(), 2, "20 client addresses all hashed to {tags:?}");
}

// ---------------------------------------------------- refused headers

#[test]
fn malformed_missing_and_slow_headers_are_closed_and_counted() {
    let backend = Backend::spawn(LOCALHOST_V4, |mut s| echo(&mut s));
    let b = Balance::cli(&[backend.channel()])
        .opts(&["--accept-proxy", "127.0.0.1/32"])
        .start();
    let addr = local(b.port());
    for (i, bad) in [
        &b"PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\nhello"[..],
        b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n",
        b"\r\n\r\n\0\r\nQUIT\n\x23\x11\x00\x0c",
        b"GET / HTTP/1.0\r\n\r\n",
    ]
    .iter()
    .enumerate()
    {
        let mut c = connect(addr);
        c.write_all(bad).unwrap();
        assert!(
            closed_within(&mut c, stretched(Duration::from_secs(2))),
            "{}",
            bad.escape_ascii()
        );
        b.wait_running("the malformed count", || {
            proxy_count(&b, "malformed") == i as u64 + 1
        });
    }
    // Half a header, then nothing: closed once the header time is up.
    let mut c = connect(addr);
    c.write_all(b"PROXY TCP4 10.9.8.7").unwrap();
    let t = Instant::now();
    assert!(closed_within(
        &mut c,
        stretched(HEADER_TIMEOUT + Duration::from_secs(2))
    ));
    let took = t.elapsed();
    assert!(
        took >= HEADER_TIMEOUT - Duration::from_millis(100),
        "{took:?}"
    );
    assert_eq!(proxy_count(&b, "slow"), 1);
    // None of these reached the backend; a good header with data behind it
    // in the same segment does, without a byte of the header.
    assert_eq!(backend.accepted(), 0);
    let mut c = connect(addr);
    let mut msg = b"PROXY TCP6 2001:db8::1 ::1 4000 80\r\n".to_vec();
    msg.extend_from_slice(b"ping");
    c.write_all(&msg).unwrap();
    let mut got = [0u8; 4];
    c.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"ping");
    assert_eq!(proxy_count(&b, "accepted"), 1);
    assert_eq!(backend.accepted(), 1);
    assert!(
        b.has("closed: malformed v1 header: bad port"),
        "{}",
        b.stderr()
    );
}

/// Recv-Q of balance's socket for the client on `client_port`, still in
/// the accept queue or accepted.
fn queued_bytes(balance_port: u16, client_port: u16) -> usize {
    ss_established(&[
        "sport",
        "=",
        &format!(":{balance_port}"),
        "dport",
        "=",
        &format!(":{client_port}"),
    ])
    .first()
    .and_then(|l| l.split_whitespace().next()?.parse().ok())
    .unwrap_or(0)
}

#[test]
fn a_header_from_a_source_outside_the_list_is_closed_and_counted() {
    let backend = Backend::spawn(LOCALHOST_V4, |mut s| echo(&mut s));
    // 127.0.0.1 is not listed: its connections are handled as without
    // accept_proxy, and a header it sends is not trusted.
    let b = Balance::cli(&[backend.channel()])
        .opts(&["--accept-proxy", "10.0.0.0/8", "--max-conns", "1"])
        .start();
    let addr = local(b.port());
    let mut plain = connect(addr);
    plain.write_all(b"hello").unwrap();
    let mut got = [0u8; 5];
    plain.read_exact(&mut got).unwrap();
    assert_eq!(&got, b"hello");
    // The only connection place is taken: the next client waits in the
    // accept queue until its header has surely arrived.
    let mut spoof = connect(addr);
    let spoof_port = spoof.local_addr().unwrap().port();
    let header = b"PROXY TCP4 10.1.1.1 127.0.0.1 1000 80\r\nhello";
    spoof.write_all(header).unwrap();
    b.wait_running("the header in balance's receive queue", || {
        queued_bytes(b.port(), spoof_port) == header.len()
    });
    drop(plain);
    assert!(closed_within(&mut spoof, stretched(Duration::from_secs(2))));
    b.wait_running("the untrusted count", || proxy_count(&b, "untrusted") == 1);
    assert_eq!(backend.accepted(), 1);
    assert_eq!(proxy_count(&b, "accepted"), 0);
}
