//! balance's etcd client (src/fleet/etcd.rs) against real etcd: keys and
//! prefixes, the transactions fleet mode builds on (create races, put_if,
//! delete_if_lease, put_if_held), leases, watches, a three-member cluster
//! losing a member or with one hung, values over the bound, and replies
//! that are not etcd's.

use crate::common;

use std::time::Duration;

use balance::etcd::{Client, EtcdError, Event, Watch};
use common::etcd::{Etcd, block_on, runtime};
use common::{Backend, stretched, wait_until};

const T: Duration = Duration::from_secs(3);
/// Bound on one watch message in these tests.
const WATCH_WAIT: Duration = Duration::from_secs(5);

fn client(e: &Etcd) -> Client {
    Client::new(&e.endpoints(), T).unwrap()
}

/// The watch's next batch, within [`WATCH_WAIT`] (None if none came).
fn next(
    rt: &tokio::runtime::Runtime,
    w: &mut Watch,
) -> Option<Result<(Vec<Event>, i64), EtcdError>> {
    rt.block_on(async { tokio::time::timeout(WATCH_WAIT, w.next()).await.ok() })
}

fn keys_of(events: &[Event]) -> Vec<(char, String)> {
    events
        .iter()
        .map(|e| match e {
            Event::Put(kv) => ('P', String::from_utf8_lossy(&kv.key).into_owned()),
            Event::Delete(kv) => ('D', String::from_utf8_lossy(&kv.key).into_owned()),
        })
        .collect()
}

#[test]
fn get_put_delete_and_prefixes() {
    let e = Etcd::single();
    let c = client(&e);
    let rt = runtime();
    rt.block_on(async {
        let (none, rev0) = c.get(b"/t/a").await.unwrap();
        assert!(none.is_none());
        let r1 = c.put(b"/t/a", b"1", None).await.unwrap();
        assert!(r1 > rev0);
        c.put(b"/t/b", b"", None).await.unwrap();
        c.put(b"/t/c/\xff", b"\x00bin", None).await.unwrap();
        c.put(b"/tz", b"outside", None).await.unwrap();
        let (kv, rev) = c.get(b"/t/a").await.unwrap();
        let kv = kv.unwrap();
        assert_eq!(
            (kv.value.as_slice(), kv.create_revision, kv.mod_revision),
            (&b"1"[..], r1, r1)
        );
        assert!(rev >= r1);
        let (kvs, _) = c.get_prefix(b"/t/").await.unwrap();
        let keys: Vec<&[u8]> = kvs.iter().map(|k| k.key.as_slice()).collect();
        assert_eq!(keys, [&b"/t/a"[..], b"/t/b", b"/t/c/\xff"]);
        assert_eq!(kvs[1].value, b"");
        assert_eq!(kvs[2].value, b"\x00bin");
        c.delete(b"/t/a").await.unwrap();
        assert!(c.get(b"/t/a").await.unwrap().0.is_none());
        c.delete_prefix(b"/t/").await.unwrap();
        assert!(c.get_prefix(b"/t/").await.unwrap().0.is_empty());
        assert!(
            c.get(b"/tz").await.unwrap().0.is_some(),
            "a sibling prefix stays"
        );
    });
}

#[test]
fn create_races_have_one_winner_and_put_if_checks_the_revision() {
    let e = Etcd::single();
    let rt = runtime();
    rt.block_on(async {
        for round in 0..5 {
            let key = format!("/race/{round}");
            let (a, b) = (client(&e), client(&e));
            let (ra, rb) = tokio::join!(
                a.create(key.as_bytes(), b"A", None),
                b.create(key.as_bytes(), b"B", None)
            );
            let (ra, rb) = (ra.unwrap(), rb.unwrap());
            assert!(ra ^ rb, "exactly one creator wins: {ra} {rb}");
            let (kv, _) = a.get(key.as_bytes()).await.unwrap();
            assert_eq!(kv.unwrap().value, if ra { b"A" } else { b"B" });
        }
        let c = client(&e);
        assert!(
            c.put_if(b"/pi", b"1", 0, None).await.unwrap(),
            "absent = revision 0"
        );
        assert!(
            !c.put_if(b"/pi", b"x", 0, None).await.unwrap(),
            "present now"
        );
        let kv = c.get(b"/pi").await.unwrap().0.unwrap();
        assert!(c.put_if(b"/pi", b"2", kv.mod_revision, None).await.unwrap());
        assert!(
            !c.put_if(b"/pi", b"3", kv.mod_revision, None).await.unwrap(),
            "stale revision"
        );
        assert_eq!(c.get(b"/pi").await.unwrap().0.unwrap().value, b"2");
    });
}

#[test]
fn delete_if_lease_only_deletes_the_holders_key() {
    let e = Etcd::single();
    let c = client(&e);
    let rt = runtime();
    rt.block_on(async {
        let mine = c.lease_grant(Duration::from_secs(30)).await.unwrap();
        let theirs = c.lease_grant(Duration::from_secs(30)).await.unwrap();
        assert_ne!(mine, theirs);
        c.put(b"/leader", b"them", Some(theirs)).await.unwrap();
        assert_eq!(c.get(b"/leader").await.unwrap().0.unwrap().lease, theirs);
        assert!(!c.delete_if_lease(b"/leader", mine).await.unwrap());
        assert!(c.get(b"/leader").await.unwrap().0.is_some());
        assert!(c.delete_if_lease(b"/leader", theirs).await.unwrap());
        assert!(c.get(b"/leader").await.unwrap().0.is_none());
        assert!(
            !c.delete_if_lease(b"/leader", theirs).await.unwrap(),
            "absent"
        );
        c.lease_revoke(mine).await.unwrap();
        c.lease_revoke(theirs).await.unwrap();
    });
}

#[test]
fn put_if_held_writes_only_while_the_guard_is_held_by_the_lease() {
    let e = Etcd::single();
    let c = client(&e);
    let rt = runtime();
    rt.block_on(async {
        let mine = c.lease_grant(Duration::from_secs(30)).await.unwrap();
        let other = c.lease_grant(Duration::from_secs(30)).await.unwrap();
        c.put(b"/rec", b"r", Some(mine)).await.unwrap();
        assert!(
            !c.put_if_held(b"/rec", other, b"/floor", b"1")
                .await
                .unwrap()
        );
        assert!(c.get(b"/floor").await.unwrap().0.is_none());
        assert!(c.put_if_held(b"/rec", mine, b"/floor", b"1").await.unwrap());
        let floor = c.get(b"/floor").await.unwrap().0.unwrap();
        assert_eq!((floor.value.as_slice(), floor.lease), (&b"1"[..], 0));
        // The guard gone with its lease: nothing written.
        c.lease_revoke(mine).await.unwrap();
        assert!(!c.put_if_held(b"/rec", mine, b"/floor", b"2").await.unwrap());
        assert_eq!(c.get(b"/floor").await.unwrap().0.unwrap().value, b"1");
        c.lease_revoke(other).await.unwrap();
    });
}

#[test]
fn a_lease_left_alone_expires_and_takes_its_key_keepalive_keeps_it() {
    let e = Etcd::single();
    let c = client(&e);
    let rt = runtime();
    let kept = rt.block_on(c.lease_grant(Duration::from_secs(2))).unwrap();
    let left = rt.block_on(c.lease_grant(Duration::from_secs(2))).unwrap();
    rt.block_on(c.put(b"/l/kept", b"1", Some(kept))).unwrap();
    rt.block_on(c.put(b"/l/left", b"1", Some(left))).unwrap();
    let gone = |k: &[u8]| rt.block_on(c.get(k)).unwrap().0.is_none();
    wait_until(
        "the unrefreshed lease to expire",
        Duration::from_secs(10),
        || {
            let ttl = rt.block_on(c.lease_keepalive(kept)).unwrap();
            assert!(ttl > 0, "the refreshed lease is alive");
            gone(b"/l/left")
        },
    )
    .unwrap();
    assert!(!gone(b"/l/kept"), "keepalive kept its key");
    assert_eq!(
        rt.block_on(c.lease_keepalive(left)).unwrap(),
        0,
        "expired lease: ttl 0"
    );
    rt.block_on(c.lease_revoke(kept)).unwrap();
    assert!(gone(b"/l/kept"), "revoke removes the key at once");
    assert_eq!(rt.block_on(c.lease_keepalive(kept)).unwrap(), 0);
    rt.block_on(c.lease_revoke(kept)).unwrap();
}

#[test]
fn watch_sees_puts_and_deletes_in_order_and_from_a_revision() {
    let e = Etcd::single();
    let c = client(&e);
    let rt = runtime();
    let first = rt.block_on(c.put(b"/w/early", b"0", None)).unwrap();
    let mut w = rt.block_on(c.watch_prefix(b"/w/", 0)).unwrap();
    rt.block_on(async {
        c.put(b"/w/a", b"1", None).await.unwrap();
        c.put(b"/other", b"x", None).await.unwrap();
        c.put(b"/w/b", b"2", None).await.unwrap();
        c.delete(b"/w/a").await.unwrap();
    });
    let mut seen = Vec::new();
    let mut last_rev = 0;
    while seen.len() < 3 {
        let (ev, rev) = next(&rt, &mut w).expect("watch event in time").unwrap();
        assert!(rev > last_rev);
        last_rev = rev;
        seen.extend(ev);
    }
    assert_eq!(
        keys_of(&seen),
        [
            ('P', "/w/a".into()),
            ('P', "/w/b".into()),
            ('D', "/w/a".into())
        ]
    );
    assert!(matches!(&seen[1], Event::Put(kv) if kv.value == b"2"));
    // From a past revision: the history since then, the early put first.
    let mut w2 = rt.block_on(c.watch_prefix(b"/w/", first)).unwrap();
    let mut seen2 = Vec::new();
    while seen2.len() < 4 {
        let (ev, _) = next(&rt, &mut w2).expect("watch event in time").unwrap();
        seen2.extend(ev);
    }
    assert_eq!(keys_of(&seen2)[0], ('P', "/w/early".into()));
    assert_eq!(keys_of(&seen2)[1..], keys_of(&seen)[..]);
}

#[test]
fn a_cluster_serves_through_the_other_members_when_one_dies() {
    let mut e = Etcd::three();
    let c = client(&e);
    let rt = runtime();
    rt.block_on(c.put(b"/m/a", b"1", None)).unwrap();
    // The client sticks to member 0 (the first that answered): its watch
    // is there too.
    let mut w = rt.block_on(c.watch_prefix(b"/m/", 0)).unwrap();
    let r = rt.block_on(c.put(b"/m/b", b"2", None)).unwrap();
    let (ev, rev) = next(&rt, &mut w).unwrap().unwrap();
    assert_eq!((keys_of(&ev), rev), (vec![('P', "/m/b".into())], r));

    e.kill(0);
    let ended = next(&rt, &mut w).expect("the watch ends");
    assert!(
        ended.is_err(),
        "a watch on a dead member ends with an error"
    );
    // Writes and reads carry on through members 1 and 2.
    let r2 = rt.block_on(c.put(b"/m/c", b"3", None)).unwrap();
    assert_eq!(rt.block_on(c.get(b"/m/a")).unwrap().0.unwrap().value, b"1");
    assert!(rt.block_on(c.create(b"/m/lead", b"x", None)).unwrap());
    // Watching again from after the last revision seen misses nothing.
    let mut w = rt.block_on(c.watch_prefix(b"/m/", rev + 1)).unwrap();
    let mut ev = Vec::new();
    while ev.len() < 2 {
        ev.extend(next(&rt, &mut w).expect("events in time").unwrap().0);
    }
    assert_eq!(
        keys_of(&ev),
        [('P', "/m/c".into()), ('P', "/m/lead".into())]
    );
    assert!(matches!(&ev[0], Event::Put(kv) if kv.mod_revision == r2));

    // The member comes back and catches up.
    e.restart(0);
    let only0 = Client::new(&[e.endpoints()[0].clone()], T).unwrap();
    wait_until("member 0 to catch up", Duration::from_secs(10), || {
        rt.block_on(only0.get(b"/m/c"))
            .is_ok_and(|(kv, _)| kv.is_some())
    })
    .unwrap();
}

#[test]
fn a_dead_endpoint_first_in_the_list_is_skipped() {
    let e = Etcd::single();
    let dead = format!("http://127.0.0.1:{}", common::Refused::new().port());
    let c = Client::new(&[dead, e.endpoint()], T).unwrap();
    assert!(block_on(c.put(b"/k", b"v", None)).is_ok());
    assert!(block_on(c.get(b"/k")).unwrap().0.is_some());
}

#[test]
fn replies_that_are_not_etcd_are_errors_not_panics() {
    let cases: [&'static [u8]; 6] = [
        b"SSH-2.0-OpenSSH_9.2\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: zz\r\n\r\n",
        b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nnope!",
        b"HTTP/1.1 200 OK\r\nContent-Length: 38\r\n\r\n{\"kvs\":[{\"key\":\"!!\"}],\"header\":null}",
        b"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n{\"header\":{\"revision\":\"ten\"}}",
        b"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
    ];
    for reply in cases {
        let b = Backend::greet_and_hold(reply);
        let c = Client::new(
            &[format!("http://{}", b.channel())],
            Duration::from_millis(500),
        )
        .unwrap();
        let what = String::from_utf8_lossy(reply);
        let rt = runtime();
        let r = rt.block_on(c.get(b"/k"));
        assert!(r.is_err(), "{what}: {r:?}");
        let r = rt.block_on(c.put(b"/k", b"v", None));
        assert!(r.is_err(), "{what}: {r:?}");
        let r = rt.block_on(c.lease_keepalive(1));
        assert!(r.is_err(), "{what}: {r:?}");
        let r = rt.block_on(c.watch_prefix(b"/k", 0));
        assert!(r.is_err(), "{what}: {:?}", r.err());
    }
    // A server that never answers: a timeout, within the bound.
    let b = Backend::greet_and_hold(b"");
    let c = Client::new(
        &[format!("http://{}", b.channel())],
        Duration::from_millis(300),
    )
    .unwrap();
    let t0 = std::time::Instant::now();
    let r = block_on(c.get(b"/k"));
    assert!(matches!(r, Err(EtcdError::Timeout)), "{r:?}");
    assert!(t0.elapsed() < stretched(Duration::from_secs(3)));
}

/// A watch through a member that hangs (SIGSTOP, not the leader: the
/// others serve on) gets nothing and no error; its `Liveness` says so
/// within two checks, and the watch again goes through another member and
/// misses nothing.
#[test]
fn a_watch_through_a_hung_member_is_found_out_and_moved() {
    use balance::etcd::Liveness;
    let e = Etcd::three();
    e.move_leader_off(0);
    let every = Duration::from_millis(300);
    let c = Client::new(&e.endpoints(), every).unwrap();
    let rt = runtime();
    let r0 = rt.block_on(c.put(b"/h/a", b"1", None)).unwrap();
    let mut w = rt.block_on(c.watch_prefix(b"/h/", r0 + 1)).unwrap();
    let mut live = Liveness::new(&c, &w, b"/h/", r0, every);
    // Alive: a write arrives, the checks pass for a while.
    let r1 = rt.block_on(c.put(b"/h/b", b"2", None)).unwrap();
    let (_, at) = next(&rt, &mut w).unwrap().unwrap();
    live.saw(at);
    assert_eq!(at, r1);
    let quiet = rt.block_on(async {
        tokio::time::timeout(every * 8, async {
            tokio::select! {
                e = live.failed() => Some(e),
                _ = w.next() => None,
            }
        })
        .await
    });
    assert!(quiet.is_err(), "a live watch was given up: {quiet:?}");
    e.hang(0);
    let t0 = std::time::Instant::now();
    // Writes go on through the others; the watch hears nothing.
    let r2 = rt.block_on(c.put(b"/h/c", b"3", None)).unwrap();
    let failed = rt.block_on(async {
        tokio::time::timeout(every * 6, async {
            tokio::select! {
                e = live.failed() => Ok(e),
                r = w.next() => Err(format!("the hung member's watch said {r:?}")),
            }
        })
        .await
    });
    let took = t0.elapsed();
    eprintln!(
        "FLEET client: a watch through a hung member given up after {took:?} (checks every {every:?}): {failed:?}"
    );
    let why = failed.expect("found out in time").unwrap();
    // Two checks (the second one timing out), and slack for a busy machine.
    assert!(took <= every * 4, "{took:?}");
    assert!(
        why.to_string().contains("does not serve the watch"),
        "{why}"
    );
    drop(w);
    // Watching again: another member, from where the old one stopped.
    let mut w = rt.block_on(c.watch_prefix(b"/h/", at + 1)).unwrap();
    // The write made while the member hung arrives (in the first batch or
    // a later one: the new member may split them).
    let mut seen = Vec::new();
    for _ in 0..3 {
        let Some(Ok((ev, _))) = next(&rt, &mut w) else {
            break;
        };
        seen.extend(keys_of(&ev));
        if ev
            .iter()
            .any(|e| matches!(e, Event::Put(kv) if kv.key == b"/h/c" && kv.mod_revision == r2))
        {
            e.resume(0);
            return;
        }
    }
    e.resume(0);
    panic!("the write at revision {r2} never arrived on the new watch: {seen:?}");
}

/// A value over the bound (1 MiB: etcd's default request limit allows
/// it) reads as empty from a range and from a watch, and is counted.
#[test]
fn a_value_over_the_bound_reads_as_empty_and_is_counted() {
    use balance::etcd::{MAX_VALUE, refused_values};
    let e = Etcd::single_with(&["--max-request-bytes", "33554432"]);
    let c = client(&e);
    let rt = runtime();
    let r0 = rt.block_on(c.put(b"/v/small", b"ok", None)).unwrap();
    let mut w = rt.block_on(c.watch_prefix(b"/v/", r0 + 1)).unwrap();
    let before = refused_values();
    let big = vec![b'x'; 1 << 20];
    assert!(big.len() > MAX_VALUE);
    let r1 = rt.block_on(c.put(b"/v/big", &big, None)).unwrap();
    let (ev, _) = next(&rt, &mut w).unwrap().unwrap();
    assert!(
        matches!(&ev[..], [Event::Put(kv)] if kv.key == b"/v/big" && kv.value.is_empty() && kv.mod_revision == r1),
        "{ev:?}"
    );
    let (kvs, _) = rt.block_on(c.get_prefix(b"/v/")).unwrap();
    let vals: Vec<(&[u8], usize)> = kvs.iter().map(|k| (&k.key[..], k.value.len())).collect();
    assert_eq!(vals, [(&b"/v/big"[..], 0), (&b"/v/small"[..], 2)]);
    assert_eq!(refused_values(), before + 2);

    // 20 MiB: etcd takes longer than a short request timeout to send it
    // (half a second here); a read of the prefix still comes back, in
    // parts, with that value refused.
    let patient = Client::new(&e.endpoints(), Duration::from_secs(30)).unwrap();
    let huge = vec![b'y'; 20 << 20];
    rt.block_on(patient.put(b"/v/huge", &huge, None)).unwrap();
    let short = Client::new(&e.endpoints(), Duration::from_millis(300)).unwrap();
    let t0 = std::time::Instant::now();
    let mut tries = Vec::new();
    let kvs = loop {
        match rt.block_on(short.get_prefix(b"/v/")) {
            Ok((kvs, _)) => break kvs,
            Err(e) if tries.len() < 5 => tries.push(format!("{e} at {:?}", t0.elapsed())),
            Err(e) => panic!("{e}; before: {tries:?}"),
        }
    };
    eprintln!("FLEET client: failed reads first: {tries:?}");
    eprintln!(
        "FLEET client: a prefix with a 20 MiB value read in {:?} (request timeout 300 ms)",
        t0.elapsed()
    );
    let vals: Vec<(&[u8], usize)> = kvs.iter().map(|k| (&k.key[..], k.value.len())).collect();
    assert_eq!(
        vals,
        [
            (&b"/v/big"[..], 0),
            (&b"/v/huge"[..], 0),
            (&b"/v/small"[..], 2)
        ]
    );
}
