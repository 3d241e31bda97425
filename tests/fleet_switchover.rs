//! `fleet switchover` and fleet membership (one active group for every
//! instance, moved by a switchover that loses no write): a
//! real etcd, a real MariaDB primary and GTID replica
//! (`tests/common/mariadb.rs`), several balance instances in one fleet.
//! Each test skips (with a message) without etcd or MariaDB; they run one
//! at a time (about 35 s in all, most of it the 12 s hold bound and the
//! 5 s acknowledgement bound that two of them wait out).

use crate::common;

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::fleet::{Instances as Fleet, REACH, serial};
use common::mariadb::{
    Mariadb, Writers, assert_switched_cleanly, ids, long_session, replicated_pair,
};
use common::*;
use serde_json::Value;

fn have_servers(mysql: bool) -> bool {
    let ok = Etcd::available() && (!mysql || Mariadb::available());
    if !ok {
        skip_without("etcd (Debian package etcd-server) or MariaDB (mariadb-server)");
    }
    ok
}

/// Listener `db` in the fleet on `etcd`: group 0 the port `a`, group 1
/// `b`, manual failback; `check` the monitor's check.
fn yaml(port: u16, etcd: &str, a: u16, b: u16, check: &str) -> String {
    format!(
        "fleet:\n  endpoints: [\"{etcd}\"]\n  prefix: /sw\nlisteners:\n  - name: db\n    bind: \"127.0.0.1:{port}\"\n    failback: manual\n    monitor:\n      interval: 200ms\n      fall: 2\n      rise: 2\n      checks:\n        - {check}\n    groups:\n      - channels: [\"127.0.0.1:{a}\"]\n      - channels: [\"127.0.0.1:{b}\"]\n"
    )
}

const MYSQL: &str = "mysql: { user: chk, max_lag: 30s }";
/// The same check on a listener that does not fence (`fence: false`, the
/// listener key after the check): an instance that loses etcd keeps
/// serving the group it has. A fenced one fences itself instead
/// (tests/fleet_fence.rs).
const MYSQL_NOFENCE: &str = "mysql: { user: chk, max_lag: 30s }\n    fence: false";

impl Fleet {
    fn start_switchover(n: usize, etcd: &Etcd, a: u16, b: u16, check: &str) -> Fleet {
        let e = etcd.endpoint();
        let f = Fleet::launch(
            n,
            "fleet-sw",
            Duration::ZERO,
            |p| yaml(p[0], &e, a, b, check),
            |l| l,
        );
        // Every instance registered and following the fleet.
        f.wait_members(0, n, 0);
        f.wait_all("following the fleet", |j| {
            j["listener"]["fleet"]["role"] != "alone"
        });
        f
    }

    /// Wait until instance `i`'s `fleet members` counts `n` members and
    /// `absent` absent ones; how long that took.
    fn wait_members(&self, i: usize, n: usize, absent: usize) -> Duration {
        let t = Instant::now();
        let want = format!("{n} members, {absent} absent");
        let r = wait_until(&want, REACH, || {
            self.v[i].ctl("fleet members").contains(&want)
        });
        assert!(r.is_ok(), "{r:?}: {}", self.v[i].ctl("fleet members"));
        t.elapsed()
    }
}

fn members(j: &Value) -> usize {
    j["listener"]["fleet"]["members"]
        .as_array()
        .map_or(0, Vec::len)
}

fn floor(b: &Balance) -> Value {
    b.json()["listener"]["failback_floor"].clone()
}

/// The number right before `word` in `text` (`... 1234 ms`).
fn number_before(text: &str, word: &str) -> u64 {
    let head = &text[..text.find(word).unwrap_or(0)];
    head.split_whitespace()
        .last()
        .and_then(|n| n.parse().ok())
        .unwrap_or(u64::MAX)
}

#[test]
fn fleet_switchover_under_writes_through_every_instance_loses_nothing() {
    let _g = serial();
    if !have_servers(true) {
        return;
    }
    const N: usize = 4;
    let (m1, m2) = replicated_pair();
    let etcd = Etcd::single();
    let f = Fleet::start_switchover(N, &etcd, m1.port, m2.port, MYSQL);
    // The new primary applies 1 s late: the switchover must wait for it.
    m2.sql("STOP SLAVE; CHANGE MASTER TO MASTER_DELAY=1; START SLAVE");
    let writers: Vec<Writers> =
        f.v.iter()
            .enumerate()
            .map(|(i, b)| Writers::start_from(b.port(), i as u64, 1))
            .collect();
    wait_until("writes on the primary", REACH, || m1.rows() >= 40).unwrap();
    // A long session on the old primary through the last instance: ended.
    let port = f.v[N - 1].port();
    let sleeper = long_session(&m1, port, REACH);
    let asked = Instant::now();
    let reply = f.v[1].ctl("fleet switchover 1");
    let done = Instant::now();
    eprintln!("{}", reply.trim());
    assert!(
        reply.contains("fleet switchover from group 0 to group 1 done: clients held ")
            && reply.contains(&format!("; {N} members acknowledged: ")),
        "{reply}"
    );
    let held = number_before(&reply, "ms,");
    let ended = number_before(&reply, "sessions ended");
    assert!((1..100).contains(&ended), "{reply}");
    assert!(
        held < done.duration_since(asked).as_millis() as u64 + 1,
        "{reply}"
    );
    assert!(
        sleeper.join().unwrap().is_err(),
        "the long session was not ended"
    );
    // Every instance follows the new floor.
    f.wait_all("floor 1 everywhere", |j| {
        j["listener"]["failback_floor"] == 1
    });
    let after = m2.rows();
    wait_until("writes on the new primary", REACH, || {
        m2.rows() >= after + 40
    })
    .unwrap();
    let acked: Vec<(u64, Instant)> = writers.into_iter().flat_map(Writers::finish).collect();
    let (on1, on2) = (ids(&m1), ids(&m2));
    assert_switched_cleanly(&acked, &on1, &on2, done);
    // Per writer (ids increase), everything on the old primary comes before
    // everything written on the new one alone: no write on the old primary
    // after the switch point.
    let writer = |id: &u64| id / 1_000_000;
    let mut last_old: BTreeMap<u64, u64> = BTreeMap::new();
    for id in &on1 {
        last_old.insert(writer(id), *id);
    }
    let mut first_new: BTreeMap<u64, u64> = BTreeMap::new();
    for id in on2.difference(&on1) {
        first_new.entry(writer(id)).or_insert(*id);
    }
    for (w, first) in &first_new {
        let last = last_old.get(w).copied().unwrap_or(0);
        assert!(
            last < *first,
            "writer {w}: {last} on the old primary after {first} on the new one"
        );
    }
    // Across writers (instances): every write acknowledged by the old
    // primary came before any written on the new one alone. Without the
    // hold on every instance, the instances that apply the floor later keep
    // writing to the old primary while the first ones write to the new.
    let old_last = acked
        .iter()
        .filter(|(id, _)| on1.contains(id))
        .map(|(_, t)| *t)
        .max();
    let new_first = acked
        .iter()
        .filter(|(id, _)| !on1.contains(id))
        .map(|(_, t)| *t)
        .min();
    if let (Some(o), Some(n)) = (old_last, new_first) {
        assert!(
            o < n,
            "a write on the old primary {:?} after the first on the new one",
            o - n
        );
        eprintln!(
            "measured: {:?} between the last write on the old primary and the first on the new",
            n - o
        );
    }
    assert_eq!(
        first_new.len(),
        N,
        "every instance's writer wrote to the new primary"
    );
    assert!(
        m2.slave_field("Last_SQL_Errno") == "0",
        "{}",
        m2.slave_status()
    );
    eprintln!(
        "measured: held {held} ms, {ended} sessions ended, {} rows checked ({} acknowledged inserts), {N} instances",
        on2.len(),
        acked.len()
    );
}

#[test]
fn an_instance_that_cannot_acknowledge_aborts_the_fleet_switchover() {
    let _g = serial();
    if !have_servers(true) {
        return;
    }
    let (m1, m2) = replicated_pair();
    let etcd = Etcd::single();
    let f = Fleet::start_switchover(3, &etcd, m1.port, m2.port, MYSQL);
    // Bad input changes nothing.
    for bad in [
        "fleet switchover 0",
        "fleet switchover 7",
        "fleet switchover 1 x",
    ] {
        let o = f.v[0].ctl_out(bad);
        assert!(!o.status.success(), "{bad}");
    }
    let stopped = &f.v[2];
    let id = stopped.json()["listener"]["fleet"]["id"]
        .as_str()
        .unwrap()
        .to_string();
    // A session through the last instance keeps it in its grace (2 s):
    // stopped (SIGSTOP) once it holds its clients, it cannot acknowledge.
    let port = stopped.port();
    let sleeper = long_session(&m1, port, REACH);
    let t = Instant::now();
    let out = std::thread::scope(|s| {
        let reply = s.spawn(|| f.v[0].ctl_out("fleet switchover 1"));
        // Holding and in its grace: it applied the record.
        wait_until("the hold on the last instance", REACH, || {
            stopped.json()["listener"]["spin"] == "on"
        })
        .unwrap();
        stopped.signal(libc::SIGSTOP);
        reply.join().unwrap()
    });
    let took = t.elapsed();
    stopped.signal(libc::SIGCONT);
    let continued = Instant::now();
    let text = output_text(&out);
    eprintln!("{} (after {took:?})", text.trim());
    assert!(!out.status.success(), "{text}");
    assert!(
        text.contains("fleet switchover aborted: no acknowledgement within 5s from ")
            && text.contains(&id)
            && text.contains("floor unchanged"),
        "{text}"
    );
    assert!(took < stretched(Duration::from_secs(8)), "{took:?}");
    // The stopped instance, continued, lets its clients go at once (it
    // sees the abort), not at the end of its hold bound (21 s).
    let r = wait_for("a write through the continued instance", REACH, || {
        common::mariadb::query_at(stopped.port(), "app", "INSERT INTO t.x (v) VALUES (7)").ok()
    });
    assert!(r.is_ok(), "{r:?}\n{}", stopped.stderr());
    let released = continued.elapsed();
    eprintln!("measured: the continued instance served a write {released:?} after SIGCONT");
    assert!(released < stretched(Duration::from_secs(5)), "{released:?}");
    drop(sleeper);
    // The floor stays everywhere; clients go on to the old primary.
    f.wait_members(0, 3, 0);
    f.wait_all("back in the fleet", |j| {
        j["listener"]["fleet"]["role"] != "alone"
    });
    for b in &f.v {
        assert_eq!(floor(b), 0, "{}", b.stderr());
    }
    for b in &f.v {
        let r = wait_for("a write through the instance", REACH, || {
            common::mariadb::query_at(b.port(), "app", "INSERT INTO t.x (v) VALUES (7)").ok()
        });
        assert!(r.is_ok(), "{r:?}\n{}", b.stderr());
    }
    assert_eq!(m1.sql("SELECT COUNT(*) FROM t.x"), "4");
    // Another try with everyone there succeeds.
    let reply = f.v[0].ctl("fleet switchover 1");
    assert!(
        reply.contains("done") && reply.contains("3 members acknowledged"),
        "{reply}"
    );
    f.wait_all("floor 1 everywhere", |j| {
        j["listener"]["failback_floor"] == 1
    });
}

#[test]
fn fleet_members_lists_every_instance_and_drops_a_killed_one() {
    let _g = serial();
    if !have_servers(false) {
        return;
    }
    let (a, b) = (free_port(LOCALHOST_V4), free_port(LOCALHOST_V4));
    let etcd = Etcd::single();
    // A mysql check (no server needed) so that `fleet switchover` gets as
    // far as the member roll.
    let f = Fleet::start_switchover(3, &etcd, a, b, MYSQL);
    let out = f.v[0].ctl("fleet members");
    let id = |b: &Balance| {
        b.json()["listener"]["fleet"]["id"]
            .as_str()
            .unwrap()
            .to_string()
    };
    let ids: BTreeSet<String> = f.v.iter().map(id).collect();
    for id in &ids {
        assert!(out.contains(id.as_str()), "{id} not in {out}");
    }
    assert!(out.contains("(this instance)"), "{out}");
    assert!(out.contains(&format!("pid {}", f.v[1].pid())), "{out}");
    f.wait_all("show json lists the members", |j| members(j) == 3);
    // A switchover record that does not decode: logged, nobody holds.
    etcd.put("/sw/svc/db/ops/switchover", "{\"epoch\":1}");
    for b in &f.v {
        assert!(
            b.wait_log("bad switchover record", 1, REACH),
            "{}",
            b.stderr()
        );
        assert_eq!(b.json()["listener"]["spin"], "off");
    }
    etcd.delete("/sw/svc/db/ops/switchover");
    // Killed: not a member after the lease's TTL (2 s at interval 200ms),
    // but still known: a switchover is refused until it is forgotten.
    let gone = id(&f.v[2]);
    f.v[2].kill();
    let killed = f.wait_members(0, 2, 1);
    let out = f.v[0].ctl("fleet members");
    assert!(out.contains(&format!("{gone} absent")), "{out}");
    let o = f.v[1].ctl_out("fleet switchover 1");
    let text = output_text(&o);
    assert!(
        !o.status.success()
            && text.contains("fleet switchover: nothing changed: known but not registered: ")
            && text.contains(&gone),
        "{text}"
    );
    assert!(etcd.get("/sw/svc/db/ops/switchover").is_none());
    assert!(
        !f.v[0]
            .ctl_out(&format!("fleet forget {}", id(&f.v[1])))
            .status
            .success()
    );
    assert!(
        f.v[0]
            .ctl(&format!("fleet forget {gone}"))
            .contains("forgotten")
    );
    f.wait_members(0, 2, 0);
    // Stopped in order: neither member nor known, at once.
    f.v[1].terminate();
    let stopped = f.wait_members(0, 1, 0);
    eprintln!("measured: killed member gone after {killed:?}, stopped member after {stopped:?}");
    assert!(killed < stretched(Duration::from_secs(4)), "{killed:?}");
    assert!(stopped < stretched(Duration::from_secs(1)), "{stopped:?}");
}

#[test]
fn every_hold_ends_within_the_records_bound_when_etcd_dies_mid_way() {
    let _g = serial();
    if !have_servers(true) {
        return;
    }
    let (m1, m2) = replicated_pair();
    let mut etcd = Etcd::single();
    let f = Fleet::start_switchover(3, &etcd, m1.port, m2.port, MYSQL_NOFENCE);
    // A session on the old primary keeps the last instance in its grace,
    // so the initiator is still waiting when etcd dies.
    let port = f.v[2].port();
    let sleeper = long_session(&m1, port, REACH);
    // hold_ms with TIMEOUT 1s: 5 s + 1 s + 6 s.
    const HOLD: Duration = Duration::from_secs(12);
    std::thread::scope(|s| {
        let reply = s.spawn(|| f.v[0].ctl_out("fleet switchover 1 1s"));
        wait_until("the record", REACH, || {
            etcd.get("/sw/svc/db/ops/switchover").is_some()
        })
        .unwrap();
        let seen = Instant::now();
        etcd.kill(0);
        // A write through each instance waits in its hold, then goes to
        // the old primary: the floor never moved.
        let writes: Vec<_> =
            f.v.iter()
                .map(|b| {
                    s.spawn(move || {
                        let t = Instant::now();
                        let r = common::mariadb::query_at(
                            b.port(),
                            "app",
                            "INSERT INTO t.x (v) VALUES (1)",
                        );
                        (r, t.elapsed())
                    })
                })
                .collect();
        let o = reply.join().unwrap();
        let text = output_text(&o);
        eprintln!("{}", text.trim());
        assert!(
            !o.status.success()
                && text.contains("fleet switchover aborted: ")
                && text.contains("at the latest 12000 ms after it saw the record"),
            "{text}"
        );
        for (i, w) in writes.into_iter().enumerate() {
            let (r, took) = w.join().unwrap();
            eprintln!("measured: instance {i}: write released after {took:?}");
            assert!(r.is_ok(), "instance {i}: {r:?}\n{}", f.v[i].stderr());
            assert!(
                seen.elapsed() < stretched(HOLD + Duration::from_secs(2)),
                "{:?}",
                seen.elapsed()
            );
        }
    });
    drop(sleeper);
    assert_eq!(m1.sql("SELECT COUNT(*) FROM t.x"), "3");
    for b in &f.v {
        assert_eq!(floor(b), 0);
        assert_eq!(b.json()["listener"]["held"], 0);
    }
}

/// The etcd leader, the member every instance talks to, hangs (SIGSTOP)
/// half a second into a `fleet switchover`: the cluster elects another,
/// the initiator goes on through it, and every member (its watch on the
/// hung member found out) sees the outcome and lets its held clients go
/// soon after the reply, not at the end of its hold bound.
#[test]
fn a_hung_etcd_leader_mid_switchover_does_not_keep_members_holding() {
    let _g = serial();
    if !have_servers(true) {
        return;
    }
    let (m1, m2) = replicated_pair();
    let etcd = Etcd::three();
    let list = etcd
        .endpoints()
        .iter()
        .map(|e| format!("\"{e}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let f = Fleet::launch(
        3,
        "fleet-sw",
        Duration::ZERO,
        |p| yaml(p[0], "X", m1.port, m2.port, MYSQL).replace("[\"X\"]", &format!("[{list}]")),
        |l| l,
    );
    f.wait_members(0, 3, 0);
    f.wait_all("following the fleet", |j| {
        j["listener"]["fleet"]["role"] != "alone"
    });
    etcd.move_leader_to(0);
    // A session on the old primary keeps the last instance in its grace,
    // so the switchover is still under way when the leader hangs.
    let sleeper = long_session(&m1, f.v[2].port(), REACH);
    std::thread::scope(|s| {
        let asked = Instant::now();
        let reply = s.spawn(|| f.v[0].ctl_out("fleet switchover 1"));
        wait_until("the record", REACH, || {
            etcd.get("/sw/svc/db/ops/switchover").is_some()
        })
        .unwrap();
        // The leader hangs in the middle of the switchover, not at the
        // record: a point in its course we choose, not a readiness.
        std::thread::sleep(Duration::from_millis(500));
        etcd.hang(0);
        // Held writes through every instance (a member holds from when it
        // sees the record until it sees the outcome).
        let writes: Vec<_> =
            f.v.iter()
                .map(|b| {
                    s.spawn(move || {
                        let r = common::mariadb::query_at(
                            b.port(),
                            "app",
                            "INSERT INTO t.x (v) VALUES (1)",
                        );
                        (r, Instant::now())
                    })
                })
                .collect();
        let o = reply.join().unwrap();
        let answered = Instant::now();
        let text = output_text(&o);
        eprintln!(
            "{} (after {:?})",
            text.trim(),
            answered.duration_since(asked)
        );
        for (i, w) in writes.into_iter().enumerate() {
            let (r, at) = w.join().unwrap();
            let late = at.saturating_duration_since(answered);
            eprintln!("measured: instance {i}: write done {late:?} after the reply");
            assert!(r.is_ok(), "instance {i}: {r:?}\n{}", f.v[i].stderr());
            // The member finds its watch dead within two checks, watches
            // again once the cluster has a leader, and reads the outcome.
            assert!(
                late < Duration::from_secs(4),
                "instance {i} held its clients {late:?} after the reply: {}",
                f.v[i].stderr()
            );
        }
    });
    drop(sleeper);
    etcd.resume(0);
}
