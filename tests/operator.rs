//! Listener-wide operator switches over the real control socket: the
//! operator hold (`spin on [MAX]` / `spin off`, Mantrid's zero-drop
//! restart) and `monitor enable|disable`, including their state-file round
//! trip across a restart.

use crate::common;

use std::collections::HashMap;
use std::io::Write;
use std::net::{SocketAddr, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::*;

const WAIT: Duration = Duration::from_secs(10);

/// A backend that reads the client's number (`N\n`), notes which backend
/// connection (peer address) carried it, and answers `got N`.
fn numbering_backend() -> (Backend, Arc<Mutex<HashMap<SocketAddr, usize>>>) {
    let seen = Arc::new(Mutex::new(HashMap::new()));
    let s2 = Arc::clone(&seen);
    let b = Backend::spawn(LOCALHOST_V4, move |mut s: TcpStream| {
        let Ok(line) = read_line(&mut s) else { return };
        let Ok(n) = line.parse::<usize>() else { return };
        if let Ok(p) = s.peer_addr() {
            s2.lock().unwrap().insert(p, n);
        }
        let _ = s.write_all(format!("got {n}\n").as_bytes());
        let _ = read_line(&mut s);
    });
    (b, seen)
}

/// Close with a reset (SO_LINGER 0).
fn reset(s: TcpStream) {
    socket2::SockRef::from(&s)
        .set_linger(Some(Duration::ZERO))
        .unwrap();
}

fn held(b: &Balance) -> u64 {
    b.json()["listener"]["held"]
        .as_u64()
        .expect("listener.held")
}

fn wait_held(b: &Balance, n: u64) {
    wait_until(&format!("{n} clients held"), WAIT, || held(b) == n).unwrap();
}

/// `n` clients connect one after another (each one held before the next
/// connects, so the arrival order is known) and send their number.
fn held_clients(b: &Balance, n: usize) -> Vec<TcpStream> {
    (0..n)
        .map(|i| {
            let mut c = b.connect();
            c.write_all(format!("{i}\n").as_bytes()).unwrap();
            wait_held(b, i as u64 + 1);
            c
        })
        .collect()
}

#[test]
fn spin_on_holds_every_client_and_spin_off_serves_them_in_arrival_order() {
    let tmp = TempDir::new("hold");
    let (be, seen) = numbering_backend();
    let b = Balance::cli(&[be.channel()])
        .control(&tmp.join("c.sock"))
        .metrics()
        .start();
    let on = b.ctl("spin on");
    assert!(
        on.starts_with("holding new clients for at most 30s"),
        "{on}"
    );
    assert!(b.ctl("spin").starts_with("spin is on for"));
    assert_eq!(b.json()["listener"]["spin"], "on");

    let mut clients = held_clients(&b, 6);
    // Held although the channel is up: nothing reached the backend.
    assert_eq!(be.accepted(), 0);
    let m = scrape(b.metrics_port());
    let label = format!("listener=\"balance:{}\"", b.port());
    assert_eq!(sample(&m, "balance_listener_held", &label), 6.0);
    assert_eq!(b.json()["channels"][0]["state"], "ENA");

    assert_eq!(
        b.ctl("spin off"),
        "spin off: 6 held clients released in order\n"
    );
    for (i, c) in clients.iter_mut().enumerate() {
        assert_eq!(read_line(c).unwrap(), format!("got {i}"));
    }
    // The backend accepted them in the order the clients arrived.
    let peers = be.peers.lock().unwrap().clone();
    let order: Vec<usize> = {
        let seen = seen.lock().unwrap();
        peers.iter().map(|p| seen[p]).collect()
    };
    assert_eq!(order, [0, 1, 2, 3, 4, 5]);
    assert_eq!(held(&b), 0);
    assert_eq!(b.json()["listener"]["spin"], "off");
    assert_eq!(b.ctl("spin off"), "spin is already off\n");
    // Not held any more.
    let mut c = b.connect();
    c.write_all(b"9\n").unwrap();
    assert_eq!(read_line(&mut c).unwrap(), "got 9");
}

#[test]
fn a_held_client_that_leaves_drops_out_and_max_releases_the_rest() {
    let tmp = TempDir::new("holdmax");
    let (be, _) = numbering_backend();
    let b = Balance::cli(&[be.channel()])
        .control(&tmp.join("c.sock"))
        .start();
    let t0 = Instant::now();
    b.ctl("spin on 2s");
    let gone = b.connect();
    wait_held(&b, 1);
    let mut stay = b.connect();
    stay.write_all(b"0\n").unwrap();
    wait_held(&b, 2);
    // An aborted client (RST) leaves the queue at once.
    reset(gone);
    wait_held(&b, 1);
    assert_eq!(read_line(&mut stay).unwrap(), "got 0");
    let took = t0.elapsed();
    assert!(
        took >= Duration::from_millis(1900),
        "released after {took:?}"
    );
    assert_eq!(be.accepted(), 1);
    assert_eq!(b.json()["listener"]["spin"], "off");
}

#[test]
fn the_hold_and_the_monitor_switch_survive_a_restart_through_the_state_file() {
    let tmp = TempDir::new("holdstate");
    let (be, _) = numbering_backend();
    let state = tmp.join("state.json");
    let st = state.to_str().unwrap().to_string();
    let sock = tmp.join("c.sock");
    let opts = ["--state-file", st.as_str(), "-m", "connect:interval=200ms"];
    let b = Balance::cli(&[be.channel()])
        .opts(&opts)
        .control(&sock)
        .start();
    b.ctl("spin on 60s");
    assert_eq!(b.ctl("monitor disable"), "monitor is now disabled\n");
    let saved: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&state).unwrap()).unwrap();
    let l = &saved["listeners"][format!("balance:{}", b.port())];
    assert!(l["spin_until_ms"].as_u64().is_some(), "{saved}");
    assert_eq!(l["monitor_disabled"], true, "{saved}");
    let port = b.port();
    b.ctl("kill");
    b.wait_exit(WAIT).expect("exit");
    drop(b);

    let b = Balance::cli(&[be.channel()])
        .opts(&opts)
        .control(&sock)
        .port(port)
        .start();
    let j = b.json();
    assert_eq!(j["listener"]["spin"], "on", "{j}");
    assert!(j["listener"]["spin_remaining_ms"].as_u64().unwrap() > 30_000);
    assert_eq!(j["listener"]["monitor"], "disabled");
    assert_eq!(
        b.ctl("monitor show"),
        "monitor is disabled (health per channel: show json)\n"
    );
    // (The first run's probes connected to the backend; this run's do not.)
    let probes = be.accepted();
    let mut c = held_clients(&b, 1).pop().unwrap();
    assert_eq!(be.accepted(), probes);
    b.ctl("spin off");
    assert_eq!(read_line(&mut c).unwrap(), "got 0");
    assert_eq!(b.ctl("monitor enable"), "monitor is now enabled\n");
    let saved = std::fs::read_to_string(&state).unwrap();
    assert!(
        !saved.contains("spin_until_ms") && !saved.contains("monitor_disabled"),
        "{saved}"
    );
}

fn checks(b: &Balance) -> (u64, u64) {
    let j = b.json();
    let c = &j["channels"][0];
    (
        c["checks_passed"].as_u64().unwrap(),
        c["checks_failed"].as_u64().unwrap(),
    )
}

#[test]
fn monitor_disable_stops_probes_but_not_passive_detection_and_enable_resumes() {
    let tmp = TempDir::new("mondis");
    let a = Backend::tagged("A");
    let b = Balance::cli(&[a.channel()])
        .opts(&["-m", "connect:interval=100ms:rise=1:fall=1"])
        .control(&tmp.join("c.sock"))
        .start();
    wait_until("a probe", WAIT, || checks(&b).0 > 0).unwrap();
    assert_eq!(b.ctl("monitor disable"), "monitor is now disabled\n");
    assert_eq!(b.ctl("monitor disable"), "monitor is already disabled\n");
    let before = checks(&b);
    a.stop();
    // Several intervals without a probe: the dead backend stays up. The
    // promise is that nothing happens, so a fixed window shows it.
    std::thread::sleep(Duration::from_millis(600));
    assert_eq!(checks(&b), before);
    assert_eq!(b.json()["channels"][0]["state"], "ENA");
    // A client's failed connect still marks it down (fall 1).
    assert!(ask(b.addr).is_err());
    wait_until("passive detection", WAIT, || {
        b.json()["channels"][0]["state"] == "dis"
    })
    .unwrap();
    assert_eq!(checks(&b), before);
    // Back on: probes run again and bring the backend back once it is up.
    let _a2 = Backend::tagged_at(local(a.port()), "A").unwrap();
    assert_eq!(b.ctl("monitor enable"), "monitor is now enabled\n");
    wait_until("probes again", WAIT, || checks(&b).0 > before.0).unwrap();
    wait_until("channel up", WAIT, || {
        b.json()["channels"][0]["state"] == "ENA"
    })
    .unwrap();
    assert_eq!(ask(b.addr).unwrap(), "A");
}

/// Where new connections go right now, read by an operator: `show json`'s
/// `serving_group`, the `balance_listener_serving_group` gauge and the
/// `show` footer follow the checks (not only manual failback and
/// switchover), while the failback floor stays its own value.
#[test]
fn the_serving_group_follows_the_checks_and_the_floor_stays_apart() {
    let tmp = TempDir::new("serving");
    let a = Backend::tagged("A");
    let bk = Backend::tagged("B");
    let b = Balance::cli(&[a.channel(), "!".into(), bk.channel()])
        .opts(&["-m", "connect:interval=100ms:fall=1:rise=1"])
        .control(&tmp.join("c.sock"))
        .metrics()
        .start();
    let label = format!("listener=\"balance:{}\"", b.port());
    let serving = || {
        let j = b.json();
        let m = scrape(b.metrics_port());
        (
            j["listener"]["serving_group"].as_i64().unwrap_or(-1),
            sample(&m, "balance_listener_serving_group", &label) as i64,
        )
    };
    assert_eq!(serving(), (0, 0));
    assert!(
        b.ctl("show").ends_with("serving group 0\n"),
        "{}",
        b.ctl("show")
    );
    // The primary fails its check: traffic is on the backup, the floor
    // (automatic failback) stays 0.
    a.stop();
    wait_until("serving group 1", WAIT, || serving() == (1, 1)).unwrap();
    assert_eq!(ask(b.addr).unwrap(), "B");
    let j = b.json();
    assert_eq!(j["listener"]["failback_floor"], 0);
    assert_eq!(
        sample(
            &scrape(b.metrics_port()),
            "balance_listener_failback_floor",
            &label
        ),
        0.0
    );
    assert!(
        b.ctl("show").ends_with("serving group 1\n"),
        "{}",
        b.ctl("show")
    );
    // Nothing can serve: -1 in the metrics, null in the JSON.
    bk.stop();
    wait_until("no serving group", WAIT, || serving() == (-1, -1)).unwrap();
    assert!(b.json()["listener"]["serving_group"].is_null());
    assert!(
        b.ctl("show")
            .ends_with("serving group none: no channel can take a client\n"),
        "{}",
        b.ctl("show")
    );
}
