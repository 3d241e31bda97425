//! Integration tests of the core binary over real loopback sockets: selection
//! and failover, the relay (integrity, half-close, resets, idle timeout),
//! robustness (fd limit, cancelled connects, port in use, SIGTERM) and the
//! command line's exit codes. Each test runs its own `balance -f` on a free
//! port, so they run in parallel.

use crate::common;

use std::io::{ErrorKind, Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use common::*;
use rand::{Rng, SeedableRng};
use sha2::{Digest, Sha256};

/// Time from connect until the backend's tag arrives.
fn timed_tag(b: &Balance) -> (String, Duration) {
    let t = Instant::now();
    let (tag, _s) = tag_of_new_client(b.addr).expect("client served");
    (tag, t.elapsed())
}

// ------------------------------------------------------------ selection

#[test]
fn round_robin_alternates_10_10_over_20_connections() {
    let (a, c) = (Backend::tagged("A"), Backend::tagged("B"));
    let b = Balance::start(&[], &[a.channel(), c.channel()]);
    let tags: Vec<String> = (0..20)
        .map(|_| tag_of_new_client(b.addr).expect("served").0)
        .collect();
    let want: Vec<&str> = (0..20)
        .map(|i| if i % 2 == 0 { "A" } else { "B" })
        .collect();
    assert_eq!(tags, want);
    assert_eq!((a.accepted(), c.accepted()), (10, 10));
}

/// Four held clients spread over A and B, the two on A leave, two new
/// clients arrive: where do the new ones go?
fn after_a_frees_up(opts: &[&str]) -> Vec<String> {
    let (a, c) = (Backend::tagged("A"), Backend::tagged("B"));
    let b = Balance::start(opts, &[a.channel(), c.channel()]);
    let held: Vec<(String, TcpStream)> = (0..4)
        .map(|_| tag_of_new_client(b.addr).expect("served"))
        .collect();
    let mut tags: Vec<&str> = held.iter().map(|(t, _)| t.as_str()).collect();
    tags.sort_unstable();
    assert_eq!(tags, ["A", "A", "B", "B"], "{opts:?}");
    let (on_a, mut on_b): (Vec<_>, Vec<_>) = held.into_iter().partition(|(t, _)| t == "A");
    drop(on_a);
    // Balance has closed both of its A connections (the count it selects
    // by drops with them).
    let port = a.addr.port();
    wait_for("the A connections to close", Duration::from_secs(5), || {
        let n = count_to_port(port, TCP_ESTABLISHED) + count_to_port(port, TCP_CLOSE_WAIT);
        (n == 0).then_some(())
    })
    .expect("balance closed the A connections");
    let mut tags = Vec::new();
    for _ in 0..2 {
        let (tag, s) = tag_of_new_client(b.addr).expect("served");
        tags.push(tag);
        on_b.push((String::new(), s));
    }
    tags
}

#[test]
fn leastconn_sends_new_clients_to_the_least_loaded_channel_where_round_robin_alternates() {
    assert_eq!(after_a_frees_up(&["--policy", "leastconn"]), ["A", "A"]);
    assert_eq!(after_a_frees_up(&[]), ["A", "B"]);
}

#[test]
fn refused_primary_sends_every_client_to_the_backup_with_no_failures() {
    let dead = Refused::new();
    let backup = Backend::tagged("B");
    let b = Balance::start(
        &["-t", "1"],
        &[dead.channel(), "!".into(), backup.channel()],
    );
    let t = Instant::now();
    let mut failures = 0;
    for _ in 0..200 {
        match tag_of_new_client(b.addr) {
            Ok((tag, _)) => assert_eq!(tag, "B"),
            Err(_) => failures += 1,
        }
    }
    let el = t.elapsed();
    eprintln!("200 clients via refused primary: {el:?}");
    assert_eq!(failures, 0);
    assert_eq!(backup.accepted(), 200);
}

#[test]
fn backup_is_untouched_while_the_primary_is_up() {
    let (p1, p2, backup) = (
        Backend::tagged("P1"),
        Backend::tagged("P2"),
        Backend::tagged("B"),
    );
    let b = Balance::start(
        &[],
        &[p1.channel(), p2.channel(), "!".into(), backup.channel()],
    );
    let mut held = Vec::new();
    for _ in 0..20 {
        let (tag, s) = tag_of_new_client(b.addr).expect("served");
        assert!(tag == "P1" || tag == "P2", "{tag}");
        held.push(s);
    }
    assert_eq!(backup.accepted(), 0);
    assert_eq!(p1.accepted() + p2.accepted(), 20);
}

#[test]
fn maxc_spills_the_third_and_fourth_client_to_the_backup_and_returns_after_one_closes() {
    let (a, c) = (Backend::tagged("A"), Backend::tagged("B"));
    let b = Balance::start(
        &[],
        &[format!("{}:2", a.channel()), "!".into(), c.channel()],
    );
    let base = b.stable_fds();
    let mut held: Vec<(String, TcpStream)> = (0..4)
        .map(|_| tag_of_new_client(b.addr).expect("served"))
        .collect();
    let tags: Vec<&str> = held.iter().map(|(t, _)| t.as_str()).collect();
    assert_eq!(tags, ["A", "A", "B", "B"]);

    // One A client leaves; once balance has closed that backend connection
    // (no socket of ours toward A left in ESTABLISHED or CLOSE_WAIT beyond
    // the one still held) the next client goes to A again.
    let (_, first) = held.remove(0);
    drop(first);
    let port = a.addr.port();
    let settled = wait_for("the A connection to close", Duration::from_secs(3), || {
        let n = count_to_port(port, TCP_ESTABLISHED) + count_to_port(port, TCP_CLOSE_WAIT);
        (n == 1).then_some(())
    });
    assert!(settled.is_ok(), "balance did not close the A connection");
    let (tag, s) = tag_of_new_client(b.addr).expect("served");
    assert_eq!(tag, "A");
    held.push((tag, s));
    // A is full again: the next one spills.
    let (tag, s) = tag_of_new_client(b.addr).expect("served");
    assert_eq!(tag, "B");
    drop((held, s));
    b.assert_fds_return_to(base);
}

#[test]
fn localhost_backend_on_127_only_is_reached_every_time_because_all_addresses_are_tried() {
    // In a private mount namespace, /etc/hosts makes `localhost` resolve to
    // ::1 first, then 127.0.0.1; the backend listens on 127.0.0.1 only, so
    // the first address is refused every time.
    let probe = std::process::Command::new("unshare")
        .args(["-rm", "true"])
        .status();
    if !matches!(probe, Ok(s) if s.success()) {
        skip_because("unshare -rm does not work here");
        return;
    }
    let dir = TempDir::new("hosts");
    let hosts = dir.path().join("hosts");
    std::fs::write(&hosts, "::1 localhost\n127.0.0.1 localhost\n").expect("write hosts");
    let mount = format!("mount --bind {} /etc/hosts && exec \"$@\"", hosts.display());
    let backend = Backend::tagged("L");
    let ch = format!("localhost:{}", backend.addr.port());
    let b = Balance::cli(&[ch])
        .wrapper(&["unshare", "-rm", "sh", "-c", &mount, "sh"])
        .start();
    for i in 0..50 {
        let (tag, _) = tag_of_new_client(b.addr).unwrap_or_else(|e| panic!("client {i}: {e}"));
        assert_eq!(tag, "L");
    }
}

/// FNV-1a over the address bytes, written out independently of the
/// implementation: the hash must stay this function across releases.
fn fnv1a(bytes: &[u8]) -> u32 {
    bytes.iter().fold(0x811c_9dc5u32, |h, &b| {
        (h ^ u32::from(b)).wrapping_mul(0x0100_0193)
    })
}

#[test]
fn hash_group_maps_each_client_address_to_a_fixed_channel_across_restarts() {
    let (a, c) = (Backend::tagged("A"), Backend::tagged("B"));
    let chans = [a.channel(), c.channel(), "%".into()];
    let sources: Vec<std::net::Ipv4Addr> = (1..=8)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i))
        .collect();
    let want: Vec<&str> = sources
        .iter()
        .map(|ip| ["A", "B"][(fnv1a(&ip.octets()) % 2) as usize])
        .collect();
    assert!(want.contains(&"A") && want.contains(&"B"), "{want:?}");
    for run in 0..2 {
        let b = Balance::start(&[], &chans);
        for _ in 0..3 {
            let got: Vec<String> = sources
                .iter()
                .map(|ip| {
                    let mut s = connect_from(std::net::IpAddr::V4(*ip), b.addr);
                    read_line(&mut s).expect("served")
                })
                .collect();
            assert_eq!(got, want, "run {run}");
        }
    }
}

#[test]
fn hash_failover_h_lets_a_hash_group_try_its_other_channels() {
    let dead = Refused::new();
    let backend = Backend::tagged("B");
    let chans = [dead.channel(), backend.channel(), "%".into()];
    // A source address that hashes to the dead channel (index 0).
    let src = (1..=50u8)
        .map(|i| std::net::Ipv4Addr::new(127, 0, 0, i))
        .find(|ip| fnv1a(&ip.octets()) % 2 == 0)
        .expect("an address hashing to 0");
    let src = std::net::IpAddr::V4(src);

    let b = Balance::start(&["-t", "1"], &chans);
    let mut s = connect_from(src, b.addr);
    let r = read_line(&mut s);
    assert!(
        r.is_err(),
        "without -H the client must not reach another channel: {r:?}"
    );

    let b = Balance::start(&["-t", "1", "-H"], &chans);
    let mut s = connect_from(src, b.addr);
    assert_eq!(read_line(&mut s).expect("served with -H"), "B");
}

#[test]
fn all_channels_refusing_closes_the_client_at_once() {
    let dead = Refused::new();
    let b = Balance::start(&["-t", "1"], &[dead.channel()]);
    let t = Instant::now();
    let mut s = b.connect();
    let r = read_line(&mut s);
    let el = t.elapsed();
    assert!(r.is_err(), "{r:?}");
    assert!(
        el < stretched(Duration::from_millis(500)),
        "closed after {el:?}"
    );
}

/// At the default log level (no -d): clients refused because no channel
/// could take them are warned about, at most once a second with a count,
/// so a burst does not flood the log.
#[test]
fn refused_clients_are_warned_about_at_the_default_level_rate_limited_with_a_count() {
    let dead = Refused::new();
    let b = Balance::start(&["-t", "1"], &[dead.channel()]);
    const LINE: &str = "no channel could take a client";
    let t0 = Instant::now();
    for _ in 0..20 {
        let mut s = b.connect();
        assert!(read_line(&mut s).is_err());
    }
    let burst = t0.elapsed();
    b.wait_running("the first warning", || b.count(LINE) >= 1);
    // One line a second at most over the burst (plus the first one).
    assert!(
        b.count(LINE) as u128 <= 1 + burst.as_millis() / 1000 + 1,
        "burst of 20 in {burst:?}: {}",
        b.stderr()
    );
    // The next one, a second later, says how many were held back.
    let n = b.count(LINE);
    b.wait_running("a second warning", || {
        let mut s = b.connect();
        assert!(read_line(&mut s).is_err());
        b.count(LINE) > n
    });
    let last = b
        .stderr()
        .lines()
        .rfind(|l| l.contains(LINE))
        .unwrap()
        .to_string();
    assert!(last.contains(" more since the last such line, "), "{last}");
    assert!(last.contains(" in all)"), "{last}");
    assert!(last.contains("WARN"), "{last}");
}

/// A backend name that does not resolve at start is a warning at the
/// default level (not only `--check`'s).
#[test]
fn an_unresolvable_backend_name_at_start_is_warned_about() {
    let a = Backend::tagged("A");
    let b = Balance::start(&[], &[a.channel(), "no-such-host.invalid:9".into()]);
    b.wait_running("the warning", || {
        b.stderr().lines().any(|l| {
            l.contains("WARN") && l.contains("no-such-host.invalid:9: the name does not resolve")
        })
    });
    assert_eq!(ask(b.addr).unwrap(), "A");
}

#[test]
fn spin_holds_a_client_while_nothing_is_eligible_then_closes_it() {
    let dead = Refused::new();
    let b = Balance::start(&["-t", "1", "--spin", "1"], &[dead.channel()]);
    let t = Instant::now();
    let mut s = b.connect();
    let r = read_line(&mut s);
    let el = t.elapsed();
    eprintln!("--spin 1 with nothing eligible: closed after {el:?}");
    assert!(r.is_err(), "{r:?}");
    assert!(
        el >= Duration::from_millis(800) && el <= stretched(Duration::from_secs(3)),
        "closed after {el:?}, want ≈1 s"
    );
}

#[test]
fn source_address_b_is_used_for_backend_connections() {
    let backend = Backend::spawn(LOCALHOST_V4, |mut s| {
        let peer = s
            .peer_addr()
            .map(|a| a.ip().to_string())
            .unwrap_or_default();
        let _ = writeln!(s, "{peer}");
        echo(&mut s);
    });
    let b = Balance::start(&["-B", "127.0.0.2"], &[backend.channel()]);
    let (peer, _) = tag_of_new_client(b.addr).expect("served");
    assert_eq!(peer, "127.0.0.2");
    let b = Balance::start(&[], &[backend.channel()]);
    let (peer, _) = tag_of_new_client(b.addr).expect("served");
    assert_eq!(peer, "127.0.0.1");
}

#[test]
fn a_local_bind_error_is_not_a_channel_failure() {
    // -B with an address this host does not have: every backend socket's
    // bind fails with EADDRNOTAVAIL before any packet is sent. That is our
    // problem, not the backend's: the channel must not be taken down.
    let backend = Backend::tagged("L");
    let b = Balance::start(&["-B", "192.0.2.1"], &[backend.channel()]);
    for _ in 0..5 {
        let t = Instant::now();
        let r = tag_of_new_client(b.addr);
        assert!(r.is_err(), "{r:?}");
        assert!(
            t.elapsed() < stretched(Duration::from_secs(1)),
            "{:?}",
            t.elapsed()
        );
    }
    let err = b.stderr();
    assert!(err.contains("local error"), "{err}");
    assert!(
        !err.contains("channel down"),
        "a local error took the channel down: {err}"
    );
    assert_eq!(backend.accepted(), 0);
}

#[test]
fn max_conns_holds_further_clients_in_the_backlog_until_one_closes() {
    let backend = Backend::tagged("M");
    let b = Balance::start(&["--max-conns", "2"], &[backend.channel()]);
    let (_, first) = tag_of_new_client(b.addr).expect("served");
    let (_, _second) = tag_of_new_client(b.addr).expect("served");
    let mut third = b.connect();
    third
        .set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    let r = read_line(&mut third);
    assert!(
        matches!(&r, Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::TimedOut)),
        "third client must wait: {r:?}"
    );
    assert_eq!(backend.accepted(), 2);
    drop(first);
    third.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let t = Instant::now();
    assert_eq!(
        read_line(&mut third).expect("served once a slot frees"),
        "M"
    );
    assert!(
        t.elapsed() < stretched(Duration::from_secs(3)),
        "{:?}",
        t.elapsed()
    );
}

#[test]
fn keepalive_k_and_big_k_set_keepalive_on_client_and_backend_sockets() {
    let backend = Backend::tagged("K");
    let bport = format!(":{}", backend.addr.port());
    for (opts, want) in [
        (&["-k", "7,3,4", "-K", "9,3,4"][..], true),
        (&[][..], false),
    ] {
        let b = Balance::start(opts, &[backend.channel()]);
        let (_, _s) = tag_of_new_client(b.addr).expect("served");
        let lport = format!(":{}", b.port());
        // balance's accepted socket (local port = the listen port) and its
        // backend socket (remote port = the backend's).
        let client_side = ss_established(&["sport", "=", &lport]);
        let backend_side = ss_established(&["dport", "=", &bport]);
        assert_eq!(client_side.len(), 1, "{client_side:?}");
        assert!(!backend_side.is_empty(), "{backend_side:?}");
        let ka = |lines: &[String]| lines.iter().all(|l| l.contains("timer:(keepalive"));
        assert_eq!(
            ka(&client_side),
            want,
            "{opts:?} client side: {client_side:?}"
        );
        assert_eq!(
            ka(&backend_side),
            want,
            "{opts:?} backend side: {backend_side:?}"
        );
    }
}

// ------------------------------------------------------------ relay

#[test]
fn data_32mib_is_echoed_intact_after_the_client_half_closes() {
    const SIZE: usize = 32 << 20;
    let backend = Backend::tagged("E");
    let b = Balance::start(&[], &[backend.channel()]);
    let base = b.baseline_fds();
    let data = random_bytes(SIZE, 42);
    let want = Sha256::digest(&data);

    let mut s = b.connect();
    assert_eq!(read_line(&mut s).expect("tag"), "E");
    let mut w = s.try_clone().expect("clone");
    let t = Instant::now();
    let writer = thread::spawn(move || {
        // Odd write sizes.
        for chunk in data.chunks(100_003) {
            w.write_all(chunk).expect("write");
        }
        w.shutdown(Shutdown::Write).expect("shutdown");
    });
    let mut got = Vec::with_capacity(SIZE);
    s.read_to_end(&mut got).expect("read to EOF");
    writer.join().expect("writer");
    eprintln!("32 MiB echoed in {:?}", t.elapsed());
    assert_eq!(got.len(), SIZE);
    assert!(Sha256::digest(&got) == want, "sha256 differs");
    drop(s);
    b.assert_fds_return_to(base);
}

#[test]
fn backend_half_close_passes_eof_and_the_client_can_still_send_1mib() {
    let (tx, rx) = mpsc::channel();
    let backend = banner_then_shut_wr(b"hello\n", tx);
    let b = Balance::start(&[], &[backend.channel()]);
    let base = b.stable_fds();
    let mut s = b.connect();
    assert_eq!(read_line(&mut s).expect("banner"), "hello");
    // EOF right after the banner.
    let mut buf = [0u8; 16];
    assert_eq!(read_some(&s, &mut buf).expect("read EOF"), 0);
    // The other direction still flows.
    let data = random_bytes(1 << 20, 4);
    s.write_all(&data).expect("send 1 MiB after EOF");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let got = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("backend report")
        .expect("backend read");
    assert_eq!(got.len(), data.len());
    assert!(got == data, "data differs");
    drop(s);
    b.assert_fds_return_to(base);
}

#[test]
fn a_backend_that_does_not_read_makes_the_client_wait_without_growing_memory() {
    // The relay holds at most its buffer; the rest waits in the
    // kernel (the client's writes block) instead of piling up in balance.
    let (backend, release) = silent();
    let b = Balance::start(&[], &[backend.channel()]);
    let base = b.stable_fds();
    let rss0 = b.rss_kib();
    let s = b.connect();
    s.set_nonblocking(true).expect("nonblocking");
    let chunk = vec![7u8; 64 << 10];
    let mut pushed = 0usize;
    let t = Instant::now();
    let mut stuck_since: Option<Instant> = None;
    while t.elapsed() < Duration::from_secs(3) {
        match (&s).write(&chunk) {
            Ok(n) => {
                pushed += n;
                stuck_since = None;
            }
            Err(e) if e.kind() == ErrorKind::WouldBlock => {
                // Blocked for 300 ms in a row: the pipeline is full.
                let since = *stuck_since.get_or_insert_with(Instant::now);
                if since.elapsed() > Duration::from_millis(300) {
                    break;
                }
                thread::sleep(Duration::from_millis(5));
            }
            Err(e) => panic!("write: {e}"),
        }
    }
    let rss1 = b.rss_kib();
    eprintln!(
        "pushed {} KiB before blocking; balance RSS {rss0} -> {rss1} KiB",
        pushed >> 10
    );
    assert!(
        stuck_since.is_some(),
        "writes never blocked ({pushed} bytes pushed)"
    );
    assert!(
        pushed < 256 << 20,
        "{pushed} bytes accepted: the relay is not applying backpressure"
    );
    assert!(
        rss1 < rss0 + 16 * 1024,
        "RSS grew from {rss0} to {rss1} KiB"
    );
    drop(s);
    release.store(true, std::sync::atomic::Ordering::SeqCst);
    b.assert_fds_return_to(base);
}

#[test]
fn backend_reset_reaches_the_client_as_a_reset_not_eof() {
    let backend = rst_after(b"partial");
    let b = Balance::start(&[], &[backend.channel()]);
    let base = b.baseline_fds();
    let s = b.connect();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    let end = loop {
        match read_some(&s, &mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) => break Err(e),
        }
    };
    match end {
        Err(e) => assert_eq!(e.kind(), ErrorKind::ConnectionReset, "{e}"),
        Ok(()) => panic!(
            "clean EOF after {:?}; want a reset",
            String::from_utf8_lossy(&got)
        ),
    }
    drop(s);
    b.assert_fds_return_to(base);
}

#[test]
fn client_reset_reaches_the_backend_as_a_reset() {
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let backend = Backend::spawn(LOCALHOST_V4, move |mut s| {
        let _ = s.write_all(b"T\n");
        let mut buf = [0u8; 1024];
        let end = loop {
            match read_some(&s, &mut buf) {
                Ok(0) => break Ok(()),
                Ok(_) => {}
                Err(e) => break Err(e.kind()),
            }
        };
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(end);
        }
    });
    let b = Balance::start(&[], &[backend.channel()]);
    let base = b.stable_fds();
    let mut s = b.connect();
    assert_eq!(read_line(&mut s).expect("tag"), "T");
    s.write_all(b"some bytes").expect("write");
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .expect("linger");
    drop(s);
    let end = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("backend saw the end");
    assert_eq!(end, Err(ErrorKind::ConnectionReset));
    b.assert_fds_return_to(base);
}

#[test]
fn idle_timeout_closes_a_silent_connection_but_not_a_trickling_one() {
    let backend = Backend::tagged("I");
    let b = Balance::start(&["-T", "1"], &[backend.channel()]);
    let base = b.baseline_fds();
    let addr = b.addr;
    let trickle = thread::spawn(move || {
        let (_, mut s) = tag_of_new_client(addr).expect("served");
        let t = Instant::now();
        while t.elapsed() < Duration::from_secs(3) {
            echo_roundtrip(&mut s, b"x")?;
            thread::sleep(Duration::from_millis(400));
        }
        Ok::<Duration, std::io::Error>(t.elapsed())
    });
    let (_, silent) = tag_of_new_client(addr).expect("served");
    let t = Instant::now();
    let mut buf = [0u8; 1];
    let r = read_some(&silent, &mut buf);
    let el = t.elapsed();
    assert!(matches!(r, Ok(0)), "silent connection: {r:?}");
    eprintln!("silent connection closed after {el:?}");
    assert!(
        el >= Duration::from_millis(500) && el <= stretched(Duration::from_millis(2500)),
        "closed after {el:?}, want ≈1 s"
    );
    let lived = trickle
        .join()
        .expect("thread")
        .expect("trickling connection survived");
    assert!(lived >= Duration::from_secs(3));
    drop(silent);
    b.assert_fds_return_to(base);
}

/// Concurrent clients doing random exchanges, half-closes,
/// resets and plain closes, on the multi-threaded runtime. Every completed
/// exchange must be intact, nothing may panic, and the fds return to
/// baseline afterwards.
#[test]
fn chaos_of_concurrent_exchanges_half_closes_and_resets_stays_intact_without_leaks() {
    let backend = Backend::tagged("C");
    let b = Balance::start(&["--threads", "2"], &[backend.channel()]);
    let base = b.baseline_fds();
    let addr = b.addr;
    let workers: Vec<_> = (0..16u64)
        .map(|w| {
            thread::spawn(move || {
                let mut rng = rand::rngs::StdRng::seed_from_u64(1000 + w);
                let mut done = 0;
                let end = Instant::now() + Duration::from_millis(1500);
                while Instant::now() < end {
                    let (_, mut s) = tag_of_new_client(addr).expect("served");
                    let size = 1 + (rng.next_u32() as usize % (64 << 10));
                    let mut data = vec![0u8; size];
                    rng.fill_bytes(&mut data);
                    match rng.next_u32() % 4 {
                        // Full exchange, then close.
                        0 => {
                            echo_roundtrip(&mut s, &data).expect("echo intact");
                            done += 1;
                        }
                        // Half-close, then read the rest of the echo and EOF.
                        1 => {
                            let mut w = s.try_clone().expect("clone");
                            let d2 = data.clone();
                            let wr = thread::spawn(move || {
                                w.write_all(&d2).and_then(|_| w.shutdown(Shutdown::Write))
                            });
                            let mut got = Vec::new();
                            s.read_to_end(&mut got).expect("read to EOF");
                            wr.join().expect("writer").expect("write");
                            assert!(got == data, "half-close echo differs");
                            done += 1;
                        }
                        // Reset in the middle of a transfer.
                        2 => {
                            let _ = s.write_all(&data[..size / 2]);
                            let _ = socket2::SockRef::from(&s).set_linger(Some(Duration::ZERO));
                        }
                        // Close without reading what comes back.
                        _ => {
                            let _ = s.write_all(&data[..size.min(4096)]);
                        }
                    }
                }
                done
            })
        })
        .collect();
    let done: usize = workers.into_iter().map(|w| w.join().expect("worker")).sum();
    eprintln!("chaos: {done} verified exchanges");
    assert!(done > 16, "only {done} exchanges completed");
    b.assert_fds_return_to(base);
}

#[test]
fn idle_timeout_does_not_cut_a_slow_reader_while_bytes_still_flow() {
    // The backend pushes 16 MiB; the client (small receive buffer) reads
    // 4 KiB every 200 ms for 3 s: bytes move all the time, so `-T 1` must
    // not fire, although balance's writes wait for seconds. Then the client
    // reads the rest at full speed: all of it must arrive.
    const SIZE: usize = 16 << 20;
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let backend = Backend::spawn(LOCALHOST_V4, move |mut s| {
        let r = s.write_all(&vec![b'y'; SIZE]).map_err(|e| e.kind());
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(r);
        }
    });
    let b = Balance::start(&["-T", "1"], &[backend.channel()]);
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.connect_timeout(&b.addr.into(), IO_TIMEOUT)
        .expect("connect");
    let s: TcpStream = sock.into();
    s.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
    let t = Instant::now();
    let mut got = 0;
    let mut buf = vec![0u8; 64 << 10];
    while t.elapsed() < Duration::from_secs(3) {
        let n = read_some(&s, &mut buf[..4096]).expect("read");
        assert!(n > 0, "EOF after {got} bytes at {:?}", t.elapsed());
        got += n;
        thread::sleep(Duration::from_millis(200));
    }
    loop {
        match read_some(&s, &mut buf) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) => panic!("after {got} bytes: {e}"),
        }
    }
    assert_eq!(got, SIZE, "the slow reader was cut");
    let sent = rx
        .recv_timeout(Duration::from_secs(5))
        .expect("backend done");
    assert_eq!(sent, Ok(()));
}

#[test]
fn idle_timeout_still_cuts_a_reader_that_stopped_reading() {
    // Data waits in the queues but nothing drains: that is idle. The
    // backend's write fails once balance closes its side.
    let (tx, rx) = mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let backend = Backend::spawn(LOCALHOST_V4, move |mut s| {
        let r = s.write_all(&vec![b'z'; 64 << 20]).map_err(|e| e.kind());
        if let Ok(tx) = tx.lock() {
            let _ = tx.send(r);
        }
    });
    let b = Balance::start(&["-T", "1"], &[backend.channel()]);
    let base = b.stable_fds();
    let t = Instant::now();
    let s = b.connect();
    let end = rx
        .recv_timeout(Duration::from_secs(6))
        .expect("backend write ended");
    let el = t.elapsed();
    eprintln!("stuck reader cut after {el:?}: backend write {end:?}");
    assert!(end.is_err(), "{end:?}");
    assert!(
        el >= Duration::from_millis(500) && el <= stretched(Duration::from_secs(4)),
        "{el:?}"
    );
    drop(s);
    b.assert_fds_return_to(base);
}

// ------------------------------------------------------------ failover timing

#[test]
fn blackholed_primary_with_t1_is_served_by_the_backup_in_about_a_second_and_autodisable_makes_the_next_fast()
 {
    let bh = Blackhole::new();
    let backup = Backend::tagged("B");
    let b = Balance::start(
        &["-t", "1", "-a"],
        &[bh.channel(), "!".into(), backup.channel()],
    );
    let (tag, first) = timed_tag(&b);
    eprintln!("first client (blackholed primary, -a): {first:?}");
    assert_eq!(tag, "B");
    assert!(
        first >= Duration::from_millis(800) && first <= stretched(Duration::from_secs(3)),
        "first client took {first:?}, want ≈1 s"
    );
    let (tag, second) = timed_tag(&b);
    eprintln!("second client (-a): {second:?}");
    assert_eq!(tag, "B");
    assert!(
        second < stretched(Duration::from_millis(500)),
        "second took {second:?}"
    );
}

#[test]
fn blackholed_primary_without_autodisable_stops_costing_a_timeout_after_three_failures() {
    let bh = Blackhole::new();
    let backup = Backend::tagged("B");
    let b = Balance::start(&["-t", "1"], &[bh.channel(), "!".into(), backup.channel()]);
    for i in 0..3 {
        let (tag, el) = timed_tag(&b);
        eprintln!("client {i} (passive detection): {el:?}");
        assert_eq!(tag, "B");
        assert!(
            el >= Duration::from_millis(800) && el <= stretched(Duration::from_secs(3)),
            "client {i} took {el:?}, want ≈1 s (fall=3 not reached yet)"
        );
    }
    let (tag, el) = timed_tag(&b);
    eprintln!("client 3 (after fall=3): {el:?}");
    assert_eq!(tag, "B");
    assert!(
        el < stretched(Duration::from_millis(500)),
        "4th client took {el:?}"
    );
}

/// A channel taken down by passive detection (3 failed connects, no `-m`)
/// comes back once it answers again: the implicit recovery monitor probes
/// soft-down channels (TCP connect every 2 s, rise 2), so a primary that
/// restarts under traffic gets its traffic back without an operator.
#[test]
fn passively_downed_channel_without_monitor_comes_back_when_it_recovers() {
    let reserved = Refused::new();
    let primary = reserved.addr;
    let backup = Backend::tagged("B");
    let b = Balance::start(
        &["-t", "1"],
        &[primary.to_string(), "!".into(), backup.channel()],
    );
    for _ in 0..4 {
        assert_eq!(tag_of_new_client(b.addr).expect("served").0, "B");
    }
    // The primary comes back on the same port.
    drop(reserved);
    let _back = Backend::try_spawn_at(primary, |mut c| {
        let _ = c.write_all(b"P\n");
    })
    .expect("rebind the primary port");
    let reached = wait_for(
        "the recovered primary to get traffic",
        Duration::from_secs(10),
        || {
            thread::sleep(Duration::from_millis(200));
            let (tag, _) = tag_of_new_client(b.addr).ok()?;
            (tag == "P").then_some(())
        },
    );
    assert!(
        reached.is_ok(),
        "the recovered primary never got traffic again"
    );
}

#[test]
fn clients_leaving_during_pending_connects_cancel_them() {
    const N: usize = 20;
    let bh = Blackhole::new();
    let b = Balance::start(&["-t", "10"], &[bh.channel()]);
    let base = b.stable_fds();
    let port = bh.addr.port();
    let clients: Vec<TcpStream> = (0..N).map(|_| b.connect()).collect();
    // Every client's connect toward the blackhole is pending.
    let pending = wait_for("every connect pending", Duration::from_secs(5), || {
        (count_to_port(port, TCP_SYN_SENT) >= N).then_some(())
    });
    assert!(
        pending.is_ok(),
        "{} of {N} connects pending toward the blackhole",
        count_to_port(port, TCP_SYN_SENT)
    );
    // Pending a while, not just begun, when the clients leave (a pause we
    // choose; there is nothing further to poll).
    thread::sleep(Duration::from_millis(200));
    // They really leave: a reset. (A FIN alone is a half-close that still
    // waits for the backend: see the next test.)
    for c in &clients {
        socket2::SockRef::from(c)
            .set_linger(Some(Duration::ZERO))
            .expect("SO_LINGER 0");
    }
    drop(clients);
    let t = Instant::now();
    let gone = wait_for(
        "the pending connects cancelled",
        Duration::from_secs(1),
        || (count_to_port(port, TCP_SYN_SENT) == 0).then_some(()),
    );
    assert!(
        gone.is_ok(),
        "{} SYN-SENT sockets toward the blackhole left 1 s after the clients left",
        count_to_port(port, TCP_SYN_SENT)
    );
    eprintln!(
        "{N} pending connects cancelled {:?} after the clients left",
        t.elapsed()
    );
    // Nothing was relayed, nothing leaked: a fresh client still waits on
    // the blackhole rather than being refused.
    let c = b.connect();
    let again = wait_for("a new client connecting", Duration::from_secs(3), || {
        (count_to_port(port, TCP_SYN_SENT) == 1).then_some(())
    });
    assert!(
        again.is_ok(),
        "a new client after the cancellations is not connecting"
    );
    socket2::SockRef::from(&c)
        .set_linger(Some(Duration::ZERO))
        .expect("SO_LINGER 0");
    drop(c);
    b.assert_fds_return_to(base);
}

#[test]
fn half_closed_clients_keep_their_pending_connects_until_the_connect_timeout() {
    // A FIN with nothing sent is a half-close (`nc -N`, a health checker
    // waiting for a banner), not a departure: the connect goes on. One
    // that never comes back is bounded by the connect timeout (-t 1).
    const N: usize = 5;
    let bh = Blackhole::new();
    let b = Balance::start(&["-t", "1"], &[bh.channel()]);
    let port = bh.addr.port();
    let clients: Vec<TcpStream> = (0..N).map(|_| b.connect()).collect();
    for c in &clients {
        c.shutdown(Shutdown::Write).expect("shutdown(WR)");
    }
    let pending = wait_for("every connect pending", Duration::from_secs(5), || {
        (count_to_port(port, TCP_SYN_SENT) >= N).then_some(())
    });
    assert!(
        pending.is_ok(),
        "{} of {N} connects pending after the clients half-closed",
        count_to_port(port, TCP_SYN_SENT)
    );
    let gone = wait_for("the connect timeout", Duration::from_secs(5), || {
        (count_to_port(port, TCP_SYN_SENT) == 0).then_some(())
    });
    assert!(gone.is_ok(), "connects outlived the connect timeout");
    for mut c in clients {
        let mut buf = [0u8; 8];
        assert_eq!(c.read(&mut buf).expect("EOF, not a hang"), 0);
    }
}

#[test]
fn data_and_half_close_sent_during_a_pending_connect_are_delivered() {
    // The client sends its request and half-closes at once, while balance
    // is still waiting on a blackholed primary: it has committed bytes, so
    // it is not "gone"; after the failover the backup gets all of it.
    let bh = Blackhole::new();
    let backup = Backend::tagged("B");
    let b = Balance::start(&["-t", "1"], &[bh.channel(), "!".into(), backup.channel()]);
    let data = random_bytes(100_000, 9);
    let mut s = b.connect();
    s.write_all(&data).expect("write");
    s.shutdown(Shutdown::Write).expect("shutdown");
    let mut got = Vec::new();
    s.read_to_end(&mut got).expect("read to EOF");
    assert!(
        got.starts_with(b"B\n"),
        "{:?}",
        String::from_utf8_lossy(&got[..got.len().min(20)])
    );
    assert!(
        got[2..] == data[..],
        "echo differs: {} bytes back",
        got.len() - 2
    );
}

#[test]
fn connect_timeout_is_not_cut_short_by_a_shorter_idle_timeout() {
    // -t 1 -T 0.5 against a blackhole: the connect runs its full
    // second, then fails over; the idle timeout only applies to the relay.
    let bh = Blackhole::new();
    let backup = Backend::tagged("B");
    let b = Balance::start(
        &["-t", "1", "-T", "0.5"],
        &[bh.channel(), "!".into(), backup.channel()],
    );
    let (tag, el) = timed_tag(&b);
    eprintln!("-t 1 -T 0.5, blackholed primary: served by {tag} after {el:?}");
    assert_eq!(tag, "B");
    assert!(
        el >= Duration::from_millis(800) && el <= stretched(Duration::from_secs(3)),
        "served after {el:?}, want ≈1 s"
    );
}

// ------------------------------------------------------------ IPv6

#[test]
fn ipv6_listener_and_backend_on_loopback() {
    if !have_ipv6() {
        skip_because("no IPv6 loopback (::1)");
        return;
    }
    let backend = Backend::tagged_on(LOCALHOST_V6, "V6");
    assert!(backend.channel().starts_with("[::1]:"));
    let b = Balance::cli(&[backend.channel()])
        .bind(LOCALHOST_V6)
        .start();
    assert!(b.addr.is_ipv6());
    let (tag, mut s) = tag_of_new_client(b.addr).expect("served over ::1");
    assert_eq!(tag, "V6");
    echo_roundtrip(&mut s, b"over six").expect("echo");
}

// ------------------------------------------------------------ process

#[test]
fn bad_command_lines_exit_64_with_one_line_naming_the_token() {
    let cases: &[(&[&str], &str)] = &[
        (&[], "missing port"),
        (&["0"], "\"0\""),
        (&["33306", "!"], "\"!\""),
        (&["a:1", "!", "!", "b:2"], "\"!\""),
        (&["3306", "::1:3306"], "\"::1:3306\""),
        (&["70000", "a"], "\"70000\""),
        (
            &["3306", "db1:80:x"],
            "bad channel \"db1:80:x\": maxc is not a number",
        ),
        (&["3306", "hôst"], "\"hôst\""),
        (&["-t", "x", "3306", "a"], "\"x\""),
        (&["-Q", "3306", "a"], "-Q"),
    ];
    for (args, want) in cases {
        let (code, err) = run_to_exit(args, Duration::from_secs(10));
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.starts_with("balance: "), "{args:?}: {err:?}");
        assert!(err.contains(want), "{args:?}: {err:?} lacks {want:?}");
        assert!(!err.contains("panicked"), "{args:?}: {err:?}");
    }
}

#[test]
fn a_huge_bad_argument_gives_a_short_error() {
    let huge = format!("{}:x", "h".repeat(100_000));
    for args in [vec!["8080", huge.as_str()], vec!["-t", &huge, "8080", "a"]] {
        let (code, err) = run_to_exit(&args, Duration::from_secs(10));
        assert_eq!(code, Some(64), "{err:.200}");
        assert!(err.len() < 300, "{} bytes: {err:.200}", err.len());
        assert!(err.contains("...\""), "{err}");
    }
}

#[test]
fn legacy_numeric_forms_are_neither_addresses_nor_names() {
    // inet_aton would take them for 0.0.255.255, 127.0.0.1, 127.0.0.1.
    for tok in ["65535", "127.1", "0x7f.1", "017700000001"] {
        let args = ["8080", tok];
        let (code, err) = run_to_exit(&args, Duration::from_secs(10));
        assert_eq!(code, Some(64), "{tok}: {err}");
        assert!(err.contains("is not a valid host name"), "{tok}: {err}");
    }
}

#[test]
fn a_channel_on_the_listener_itself_is_refused_at_start() {
    // One client would make balance connect to itself until the fd limit.
    let port = free_port(LOCALHOST_V4).to_string();
    let p = port.as_str();
    let own = format!("127.0.0.1:{p}");
    let any = format!("0.0.0.0:{p}");
    let cases: Vec<Vec<&str>> = vec![
        // No port: the listen port; no -b: every local address.
        vec![p, "127.0.0.1"],
        vec![p, "localhost"],
        vec!["-b", "127.0.0.1", p, &own],
        vec!["-b", "127.0.0.1", p, "10.0.0.1", "!", &any],
        vec!["-b", "127.0.0.1", p, "10.0.0.1", "%", "127.0.0.1"],
    ];
    for args in cases {
        let (code, err) = run_to_exit(&args, Duration::from_secs(10));
        assert_eq!(code, Some(64), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: {err:?}");
        assert!(err.contains("itself"), "{args:?}: {err:?}");
    }
}

#[test]
fn port_in_use_exits_71_naming_the_address_and_the_first_instance_keeps_serving() {
    let backend = Backend::tagged("K");
    let b = Balance::start(&[], &[backend.channel()]);
    let port = b.port().to_string();
    let ch = backend.channel();
    let (code, err) = run_to_exit(
        &["-f", "-b", "127.0.0.1", &port, &ch],
        Duration::from_secs(10),
    );
    assert_eq!(code, Some(EXIT_OSERR), "{err}");
    assert!(err.contains(&format!("127.0.0.1:{port}")), "{err:?}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    let (tag, _) = tag_of_new_client(b.addr).expect("first instance serves");
    assert_eq!(tag, "K");
}

#[test]
fn without_f_it_daemonizes_with_pidfile_and_log_file_and_serves() {
    let backend = Backend::tagged("D");
    let dir = TempDir::new("daemon");
    let pidfile = dir.path().join("balance.pid");
    let logfile = dir.path().join("balance.log");
    let ch = backend.channel();
    // Retry on the rare port race, like the harness does.
    let mut started = None;
    for _ in 0..5 {
        let port = free_port(LOCALHOST_V4);
        let t = Instant::now();
        let (code, err) = run_to_exit(
            &[
                "-b",
                "127.0.0.1",
                "--pidfile",
                pidfile.to_str().expect("utf-8 path"),
                "--log-file",
                logfile.to_str().expect("utf-8 path"),
                &port.to_string(),
                &ch,
            ],
            Duration::from_secs(10),
        );
        if code == Some(EXIT_OSERR) {
            continue;
        }
        assert_eq!(code, Some(0), "the parent must exit 0: {err}");
        assert!(
            err.is_empty(),
            "the daemon must not write to the terminal: {err:?}"
        );
        assert!(
            t.elapsed() < stretched(Duration::from_secs(5)),
            "parent took {:?}",
            t.elapsed()
        );
        started = Some(port);
        break;
    }
    let port = started.expect("daemon started");
    // The daemon is not our child; the guard makes sure it goes away
    // whatever happens.
    let daemon = Daemon::from_pidfile(&pidfile, Duration::from_secs(5));
    let pid = daemon.pid;
    let logged = wait_for(
        "'listening' in the log file",
        Duration::from_secs(5),
        || {
            std::fs::read_to_string(&logfile)
                .ok()
                .filter(|t| t.contains("listening"))
        },
    );
    assert!(logged.is_ok(), "no 'listening' line in the log file");
    let (tag, _) = tag_of_new_client(local(port)).expect("the daemon serves");
    assert_eq!(tag, "D");
    // A new session leader, detached from our process group.
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let f: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, r)| r.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(
        f.get(3).copied(),
        Some(pid.to_string().as_str()),
        "not a session leader: {stat}"
    );
    daemon.signal(libc::SIGTERM);
    assert!(
        daemon.wait_exit(Duration::from_secs(5)),
        "daemon did not exit on SIGTERM"
    );
    assert!(!pidfile.exists(), "pidfile not removed at exit");
}

#[test]
fn sigterm_refuses_new_clients_keeps_live_ones_and_exits_0_after_they_close() {
    let backend = Backend::tagged("S");
    let b = Balance::start(&[], &[backend.channel()]);
    let (_, mut live) = tag_of_new_client(b.addr).expect("served");
    b.signal(libc::SIGTERM);
    let addr = b.addr;
    let refused =
        wait_for(
            "new connects refused",
            Duration::from_secs(2),
            || match TcpStream::connect_timeout(&addr, Duration::from_millis(200)) {
                Err(e) if e.kind() == ErrorKind::ConnectionRefused => Some(()),
                _ => None,
            },
        );
    assert!(refused.is_ok(), "new connects still accepted after SIGTERM");
    echo_roundtrip(&mut live, b"still here").expect("live connection keeps echoing");
    assert!(
        b.wait_exit(Duration::from_millis(300)).is_none(),
        "exited while a connection was live"
    );
    drop(live);
    let st = b
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the last close");
    assert_eq!(st.code(), Some(0), "{}", b.stderr());
}

#[test]
fn sigint_with_grace_1_cuts_live_connections_after_about_a_second() {
    let backend = Backend::tagged("G");
    let b = Balance::start(&["--grace", "1"], &[backend.channel()]);
    let (_, live) = tag_of_new_client(b.addr).expect("served");
    let t = Instant::now();
    b.signal(libc::SIGINT);
    let st = b
        .wait_exit(Duration::from_secs(5))
        .expect("exits after the grace period");
    let el = t.elapsed();
    eprintln!("SIGINT with a live connection and --grace 1: exit after {el:?}");
    assert_eq!(st.code(), Some(0), "{}", b.stderr());
    assert!(
        el >= Duration::from_millis(800) && el <= stretched(Duration::from_secs(3)),
        "{el:?}"
    );
    // The live connection was closed, not left dangling.
    let mut buf = [0u8; 8];
    let r = read_some(&live, &mut buf);
    assert!(matches!(r, Ok(0) | Err(_)), "{r:?}");
}

#[test]
fn fd_limit_keeps_cpu_and_logs_low_at_emfile_and_recovers_when_clients_close() {
    if std::process::Command::new("prlimit")
        .arg("--version")
        .output()
        .is_err()
    {
        skip_without("prlimit (Debian package util-linux)");
        return;
    }
    let backend = Backend::tagged("F");
    // A proxied connection takes 2 fds. Whether accept() itself meets
    // EMFILE (clients left waiting in the kernel queue: the case that could
    // spin) or the backend socket does (client accepted, then closed: the
    // case that could flood the log) depends on the parity of the free
    // fds. 64 and 65 fds give one of each; both are checked.
    let mut seen = (false, false);
    for nofile in [64, 65] {
        let limit = format!("--nofile={nofile}:{nofile}");
        // --max-conns above what the fds allow, so the fd limit is reached.
        let b = Balance::cli(&[backend.channel()])
            .opts(&["--max-conns", "1000"])
            .wrapper(&["prlimit", &limit, "--"])
            .start();
        let clients: Vec<TcpStream> = (0..80).map(|_| b.connect()).collect();
        // Settled: at the fd limit, and the accept queue no longer changes.
        let mut last = None;
        let queued = wait_for("settling at the fd limit", Duration::from_secs(5), || {
            thread::sleep(Duration::from_millis(100));
            let now = (b.fd_count(), accept_queue(b.port()));
            let stable = last == Some(now) && now.0 + 1 >= nofile;
            last = Some(now);
            stable.then_some(now.1.unwrap_or(0))
        })
        .unwrap_or_else(|_| panic!("not settled at the fd limit: {last:?}"));
        let start = Instant::now();
        if queued > 0 {
            seen.0 = true;
            let t0 = b.cpu_ticks();
            // CPU use is a rate: measured over a fixed window.
            thread::sleep(Duration::from_secs(2));
            let ticks = b.cpu_ticks() - t0;
            let secs = start.elapsed().as_secs_f64();
            let pct = ticks as f64 / secs; // 100 ticks per second = one core
            eprintln!(
                "nofile={nofile}: accept at EMFILE, {queued} clients queued, {ticks} ticks in {secs:.1} s (≈{pct:.0} % of a core), {} fds",
                b.fd_count()
            );
            assert!(pct < 15.0, "CPU {pct:.0} % of a core at the fd limit");
            let err = b.stderr();
            let lines = err.lines().filter(|l| l.contains("accept: ")).count();
            assert!(lines >= 1, "no accept EMFILE warning: {err}");
            assert!(
                lines <= 5,
                "accept EMFILE log not rate-limited: {lines} lines"
            );
        } else {
            seen.1 = true;
            // ~50 clients were accepted and closed for want of a backend
            // socket within a few ms: one warning, not one per client.
            let err = b.stderr();
            let lines = err.lines().filter(|l| l.contains("local error")).count();
            eprintln!("nofile={nofile}: backend socket at EMFILE, {lines} local-error log lines");
            assert!(lines >= 1, "no local-error warning: {err}");
            assert!(
                lines <= 3,
                "local-error log not rate-limited: {lines} lines"
            );
        }
        drop(clients);
        // Once fds free up, a new client is served.
        let served = wait_for("a client served again", Duration::from_secs(10), || {
            let mut s = TcpStream::connect_timeout(&b.addr, Duration::from_secs(1)).ok()?;
            s.set_read_timeout(Some(Duration::from_secs(1))).ok()?;
            read_line(&mut s).ok()
        })
        .ok();
        assert_eq!(
            served.as_deref(),
            Some("F"),
            "not served after the clients left"
        );
    }
    assert_eq!(
        seen,
        (true, true),
        "(accept at EMFILE, backend socket at EMFILE)"
    );
}

#[test]
fn packet_dump_prints_both_directions_escaped_on_stdout() {
    let be = Backend::tagged("B");
    let b = Balance::start(&["-p"], &[be.channel()]);
    let (tag, mut s) = tag_of_new_client(b.addr).expect("served");
    assert_eq!(tag, "B");
    // Control bytes from the wire must reach the terminal escaped.
    s.write_all(b"hi\x1b[2J\r\n").unwrap();
    let mut back = [0u8; 8];
    s.read_exact(&mut back).unwrap();
    assert_eq!(&back, b"hi\x1b[2J\r\n");
    let dumped = wait_for("the dump on stdout", Duration::from_secs(5), || {
        let out = b.stdout();
        (out.contains("-> 8 bytes") && out.contains("<- 8 bytes")).then_some(out)
    })
    .unwrap_or_else(|_| panic!("no dump on stdout: {:?}", b.stdout()));
    assert!(dumped.contains("hi\\x1b[2J\\r\\n"), "{dumped:?}");
    assert!(!dumped.contains('\x1b'), "raw escape bytes reached stdout");
    assert!(
        dumped.contains("<- 2 bytes\nB\\n"),
        "the banner too: {dumped:?}"
    );
}

/// A connect the backend's kernel completed (the client queued in its
/// accept queue) before the backend process died is a connection, not a
/// refused connect: when the dying process's listening socket closes, the
/// kernel resets it, and balance passes the reset on to its client (the
/// MySQL client's `ERROR 2013 … reading initial communication packet,
/// system error: 104`). The next client's connect is refused and goes to
/// the backup.
#[test]
fn a_client_queued_at_a_backend_that_dies_is_reset_and_the_next_goes_to_the_backup() {
    let queue = std::net::TcpListener::bind((LOCALHOST_V4, 0)).unwrap();
    let port = queue.local_addr().unwrap().port();
    let backup = Backend::tagged("B");
    let b = Balance::start(
        &["-t", "2"],
        &[format!("127.0.0.1:{port}"), "!".into(), backup.channel()],
    );
    let c = b.connect();
    wait_until(
        "balance's connect in the accept queue",
        Duration::from_secs(5),
        || accept_queue(port) == Some(1),
    )
    .unwrap();
    // The backend "dies" before accepting it.
    drop(queue);
    let mut buf = [0u8; 16];
    let r = read_some(&c, &mut buf);
    assert!(
        matches!(&r, Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset),
        "{r:?}"
    );
    assert_eq!(ask(b.addr).unwrap(), "B");
}

/// The harness never hands out a port twice while its taker lives: not in
/// this process (2000 picks, all distinct, none in the kernel's ephemeral
/// range) and not to another process (each is held by a lock another
/// open of its file cannot take).
#[test]
fn harness_ports_are_never_handed_out_twice() {
    use std::os::fd::AsRawFd;
    // Takes 2000 fds for the life of the process: not while a scale test
    // counts what it may open (tests/reliability.rs).
    let _g = common::fleet::serial();
    let ports: Vec<u16> = (0..2000).map(|_| free_port(LOCALHOST_V4)).collect();
    let distinct: std::collections::HashSet<u16> = ports.iter().copied().collect();
    assert_eq!(distinct.len(), ports.len(), "a port handed out twice");
    let eph = std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range").unwrap();
    let lo: u16 = eph.split_whitespace().next().unwrap().parse().unwrap();
    assert!(
        ports.iter().all(|p| *p < lo),
        "a port in the ephemeral range"
    );
    let dir = std::env::temp_dir().join(format!("balance-test-ports-{}", uid()));
    for p in &ports[..10] {
        let f = std::fs::File::open(dir.join(p.to_string())).unwrap();
        // SAFETY: flock on an fd we own.
        let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
        assert_ne!(r, 0, "port {p} is not held");
    }
}
