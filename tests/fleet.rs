//! Fleet mode against a real etcd (one member): ten balance instances on
//! loopback in front of a primary group and a backup group, `interval:
//! 500ms`, `fall: 2`. Each test prints what it measured (eprintln) so the
//! numbers can be quoted; the asserted bounds are looser than what is
//! seen, so a loaded machine does not fail them.
//!
//! The tests run one at a time (each starts ten instances and an etcd).

use crate::common;

use std::thread;
use std::time::{Duration, Instant};

use common::etcd::Etcd;
use common::fleet::{Instances as Fleet, serial};
use common::*;

const N: usize = 10;
const INTERVAL: Duration = Duration::from_millis(500);
/// etcd unreachable this long → probe alone (the config's `fallback`).
const FALLBACK: Duration = Duration::from_secs(1);
/// Every instance applies a verdict within this of the first one.
const SPREAD_BOUND: Duration = Duration::from_millis(500);

/// A listener `db` on the first port, a primary and a backup group;
/// `etcd` the endpoints (comma-separated), `extra`: more listener keys
/// (indented 4), `interval` the monitor's.
fn yaml(p: &[u16], etcd: Option<&str>, ch: (u16, u16), interval: &str, extra: &str) -> String {
    let fleet = etcd.map_or(String::new(), |e| {
        let list = e.split(',').map(|u| format!("\"{u}\"")).collect::<Vec<_>>();
        format!(
            "fleet:\n  endpoints: [{}]\n  prefix: /t\n  fallback: 1s\n",
            list.join(", ")
        )
    });
    format!(
        "{fleet}listeners:\n  - name: db\n    bind: \"127.0.0.1:{}\"\n{extra}    groups:\n      - channels: [\"127.0.0.1:{}\"]\n      - channels: [\"127.0.0.1:{}\"]\n    monitor:\n      interval: {interval}\n      fall: 2\n      rise: 2\n      checks:\n        - connect: {{}}\n",
        p[0], ch.0, ch.1
    )
}

impl Fleet {
    /// `n` instances, started a tenth of an interval apart like real nodes.
    fn start(n: usize, etcd: Option<&str>, primary: u16, backup: u16) -> Fleet {
        Fleet::start_with(n, etcd, (primary, backup), "500ms", "")
    }

    fn start_with(
        n: usize,
        etcd: Option<&str>,
        ch: (u16, u16),
        interval: &str,
        extra: &str,
    ) -> Fleet {
        Fleet::start_yaml(n, |p| yaml(p, etcd, ch, interval, extra))
    }

    /// `n` instances of the config `write` makes.
    fn start_yaml(n: usize, write: impl Fn(&[u16]) -> String) -> Fleet {
        Fleet::launch(n, "fleet", INTERVAL / 10, write, |l| l.metrics())
    }

    fn roles(&self) -> Vec<String> {
        self.v.iter().map(role).collect()
    }

    /// Every instance but `p`, with its index.
    fn others(&self, p: usize) -> impl Iterator<Item = (usize, &Balance)> {
        self.v.iter().enumerate().filter(move |(i, _)| *i != p)
    }

    /// Every instance answers a new client with `tag`.
    fn all_answer(&self, tag: &str) {
        for b in &self.v {
            assert_eq!(ask(local(b.port())).unwrap(), tag);
        }
    }

    fn prober(&self) -> usize {
        let r = self.roles();
        assert_eq!(r.iter().filter(|r| *r == "prober").count(), 1, "{r:?}");
        r.iter().position(|r| r == "prober").unwrap()
    }
}

fn role(b: &Balance) -> String {
    b.json()["listener"]["fleet"]["role"]
        .as_str()
        .unwrap_or("none")
        .to_string()
}

/// Whether instance `b` holds the primary up (its metrics: cheap to poll).
fn primary_up(b: &Balance, primary: u16) -> bool {
    let text = scrape(b.metrics_port());
    let labels = format!(
        "listener=\"db\",group=\"0\",index=\"0\",channel=\"127.0.0.1:{primary}\",state=\"ENA\""
    );
    sample(&text, "balance_channel_state", &labels) == 1.0
}

/// Every instance's first moment with the primary in state `up`, polled in
/// parallel; the spread between the first and the last.
fn switch_times(f: &Fleet, primary: u16, up: bool, limit: Duration) -> (Duration, Duration) {
    let t0 = Instant::now();
    let times: Vec<Duration> = thread::scope(|s| {
        let hs: Vec<_> =
            f.v.iter()
                .map(|b| {
                    s.spawn(move || {
                        let r = wait_until("the primary to flip", limit, || {
                            primary_up(b, primary) == up
                        });
                        assert!(r.is_ok(), "{r:?}");
                        t0.elapsed()
                    })
                })
                .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let first = *times.iter().min().unwrap();
    let last = *times.iter().max().unwrap();
    (first, last - first)
}

/// Probe connections both backends accept over `window` (no clients).
fn probes_over(a: &Backend, b: &Backend, window: Duration) -> usize {
    let before = a.accepted() + b.accepted();
    // A probe rate: counted over a fixed window.
    thread::sleep(window);
    a.accepted() + b.accepted() - before
}

/// One etcd member, a primary and a backup, `n` instances in front of
/// them, settled.
fn settled(n: usize) -> (Etcd, Backend, Backend, Fleet) {
    let etcd = Etcd::single();
    let (primary, backup) = (Backend::tagged("primary"), Backend::tagged("backup"));
    let f = Fleet::start(n, Some(&etcd.endpoint()), primary.port(), backup.port());
    f.wait_settled(Duration::from_secs(10));
    (etcd, primary, backup, f)
}

/// Stop the prober with `stop` and wait (up to `limit`) until one of the
/// rest is the prober: the rest, and how long that took.
fn take_over<T>(
    f: &Fleet,
    stop: impl Fn(&Balance) -> T,
    limit: Duration,
) -> (Vec<&Balance>, Duration) {
    let p = f.prober();
    let t0 = Instant::now();
    stop(&f.v[p]);
    let rest: Vec<&Balance> = f.others(p).map(|(_, b)| b).collect();
    let r = wait_until("another prober", limit, || {
        rest.iter().filter(|b| role(b) == "prober").count() == 1
    });
    let took = t0.elapsed();
    assert!(r.is_ok(), "{r:?}");
    (rest, took)
}

fn wait_primary_back(b: &Balance, primary: u16) {
    wait_until("the primary back", Duration::from_secs(5), || {
        primary_up(b, primary)
    })
    .unwrap();
}

/// Send `sig` to `pid` (an etcd member: our own child).
fn signal(pid: libc::pid_t, sig: libc::c_int) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    assert_eq!(unsafe { libc::kill(pid, sig) }, 0);
}

#[test]
fn one_prober_per_service_probes_for_the_whole_fleet() {
    let _g = serial();
    let window = INTERVAL * 6;
    let (primary, backup) = (Backend::tagged("primary"), Backend::tagged("backup"));
    let standalone = {
        let f = Fleet::start(N, None, primary.port(), backup.port());
        // Past the start-up round: the window counts steady rounds only.
        thread::sleep(INTERVAL);
        let n = probes_over(&primary, &backup, window);
        drop(f);
        n
    };
    let etcd = Etcd::single();
    let f = Fleet::start(N, Some(&etcd.endpoint()), primary.port(), backup.port());
    let settle = f.wait_settled(Duration::from_secs(10));
    // Past the round under way at settling: steady rounds only.
    thread::sleep(INTERVAL);
    let fleet = probes_over(&primary, &backup, window);
    let rounds = window.as_millis() / INTERVAL.as_millis();
    eprintln!(
        "FLEET probes over {window:?} ({rounds} intervals, 2 channels, {N} instances): standalone {standalone}, fleet {fleet}; settled {settle:?} after the last start"
    );
    // One prober: 2 channels x rounds (+ a round at each edge).
    assert!(fleet <= 2 * (rounds as usize + 2), "fleet {fleet}");
    assert!(
        standalone >= 5 * fleet.max(1),
        "standalone {standalone}, fleet {fleet}"
    );
    // Every instance serves, from the primary.
    f.all_answer("primary");
    let p = f.prober();
    let text = scrape(f.v[p].metrics_port());
    assert_eq!(
        sample(
            &text,
            "balance_fleet_role",
            "listener=\"db\",role=\"prober\""
        ),
        1.0
    );
    assert_eq!(
        sample(&text, "balance_fleet_etcd_up", "listener=\"db\""),
        1.0
    );
    assert!(f.v[p].ctl("show").contains("fleet: prober for "));
}

#[test]
fn primary_failure_switches_every_instance_within_a_bound() {
    let _g = serial();
    let (_etcd, primary, _backup, f) = settled(N);
    primary.stop();
    let (first, spread) = switch_times(&f, primary.port(), false, Duration::from_secs(10));
    eprintln!(
        "FLEET primary down: first instance after {first:?}, spread first..last {spread:?} ({N} instances)"
    );
    assert!(spread <= SPREAD_BOUND, "spread {spread:?}");
    f.all_answer("backup");
    // Back: every instance fails back within the same bound.
    let _primary = Backend::tagged_at(("127.0.0.1", primary.port()), "primary").unwrap();
    let (first, spread) = switch_times(&f, primary.port(), true, Duration::from_secs(10));
    eprintln!("FLEET primary back: first instance after {first:?}, spread {spread:?}");
    assert!(spread <= SPREAD_BOUND, "spread {spread:?}");
    f.all_answer("primary");
}

#[test]
fn a_flapping_primary_never_splits_the_fleet_beyond_the_window() {
    let _g = serial();
    let etcd = Etcd::single();
    let backup = Backend::tagged("backup");
    let port = free_port(LOCALHOST_V4);
    let mut primary = Some(Backend::tagged_at(("127.0.0.1", port), "primary").unwrap());
    let f = Fleet::start(N, Some(&etcd.endpoint()), port, backup.port());
    f.wait_settled(Duration::from_secs(10));
    // Listening 1.1 s, refusing 1.1 s (long enough for `fall: 2` and `rise: 2`
    // to flip it each time); every instance sampled every ~50 ms.
    let (mut samples, mut split, mut longest, mut flips) = (0, 0, Duration::ZERO, 0);
    let mut split_since: Option<Instant> = None;
    let mut last: Option<bool> = None;
    let end = Instant::now() + Duration::from_millis(6600);
    let mut next_flap = Instant::now() + Duration::from_millis(1100);
    while Instant::now() < end {
        if Instant::now() >= next_flap {
            primary = match primary.take() {
                Some(b) => {
                    b.stop();
                    None
                }
                None => Some(Backend::tagged_at(("127.0.0.1", port), "primary").unwrap()),
            };
            next_flap += Duration::from_millis(1100);
        }
        let states: Vec<bool> = f.v.iter().map(|b| primary_up(b, port)).collect();
        samples += 1;
        let agree = states.iter().all(|s| *s == states[0]);
        if agree {
            if last.is_some_and(|l| l != states[0]) {
                flips += 1;
            }
            last = Some(states[0]);
            if let Some(t) = split_since.take() {
                longest = longest.max(t.elapsed());
            }
        } else {
            split += 1;
            split_since.get_or_insert_with(Instant::now);
        }
        thread::sleep(Duration::from_millis(50));
    }
    eprintln!(
        "FLEET flapping primary: {split} of {samples} samples split ({:.1} %), longest split {longest:?}, fleet-wide flips {flips}",
        100.0 * split as f64 / samples as f64
    );
    assert!(longest <= SPREAD_BOUND, "longest split {longest:?}");
    assert!(split_since.is_none_or(|t| t.elapsed() <= SPREAD_BOUND));
}

#[test]
fn a_killed_prober_is_replaced_within_a_bound() {
    let _g = serial();
    let (_etcd, primary, _backup, f) = settled(N);
    // Lease TTL 2 s (3 x interval, at least 2 s), plus the campaign.
    let (rest, took) = take_over(&f, Balance::kill, Duration::from_secs(6));
    eprintln!("FLEET prober SIGKILLed: another instance took over after {took:?}");
    assert!(took <= stretched(Duration::from_secs(4)), "took {took:?}");
    // The new prober probes: a primary failure still reaches everyone.
    primary.stop();
    for b in &rest {
        wait_until(
            "the primary down everywhere",
            Duration::from_secs(5),
            || !primary_up(b, primary.port()),
        )
        .unwrap();
    }
}

#[test]
fn etcd_loss_falls_back_to_local_probing_and_rejoins() {
    let _g = serial();
    let (mut etcd, primary, _backup, f) = settled(N);
    let t0 = Instant::now();
    etcd.kill(0);
    let r = wait_until("every instance alone", FALLBACK * 4, || {
        f.v.iter().all(|b| {
            let fl = &b.json()["listener"]["fleet"];
            fl["role"] == "alone" && fl["etcd"] == "unreachable" && fl["probing"] == true
        })
    });
    let took = t0.elapsed();
    assert!(r.is_ok(), "{r:?}: {:?}", f.roles());
    eprintln!(
        "FLEET etcd killed: every instance probing alone after {took:?} (fallback {FALLBACK:?})"
    );
    assert!(took <= FALLBACK * 3, "took {took:?}");
    // Serving, and probing by itself: a primary failure is seen by all.
    f.all_answer("primary");
    primary.stop();
    let (_, spread) = switch_times(&f, primary.port(), false, Duration::from_secs(5));
    eprintln!(
        "FLEET alone: primary down on every instance (spread {spread:?}, each its own probes)"
    );
    f.all_answer("backup");
    let _primary = Backend::tagged_at(("127.0.0.1", primary.port()), "primary").unwrap();
    // etcd back: one prober again, the rest following.
    let t0 = Instant::now();
    etcd.restart(0);
    let settle = f.wait_settled(Duration::from_secs(15));
    eprintln!(
        "FLEET etcd restarted: settled again after {:?} (wait {settle:?})",
        t0.elapsed()
    );
    for b in &f.v {
        wait_primary_back(b, primary.port());
        assert_eq!(b.json()["listener"]["fleet"]["etcd"], "ok");
    }
}

#[test]
fn an_undecodable_verdict_is_logged_once_and_ignored() {
    let _g = serial();
    let (etcd, primary, _backup, f) = settled(3);
    let key = format!("/t/svc/db/verdict/127.0.0.1:{}", primary.port());
    etcd.put(&key, "{\"state\":\"sideways\"");
    etcd.put(&key, "not json at all");
    let p = f.prober();
    for (i, b) in f.others(p) {
        assert!(
            b.wait_log(
                "ignoring a value that does not decode",
                1,
                Duration::from_secs(5)
            ),
            "instance {i}: {}",
            b.stderr()
        );
        assert_eq!(
            b.count("ignoring a value that does not decode"),
            1,
            "logged once"
        );
        assert!(b.stderr().contains(&key));
        assert!(primary_up(b, primary.port()));
        assert_eq!(ask(local(b.port())).unwrap(), "primary");
    }
    // A prober key written by hand (no lease, not JSON) does not stop the
    // election: it is removed and one prober is elected again.
    etcd.put("/t/svc/db/prober", "garbage");
    let t0 = Instant::now();
    let r = wait_until("a prober's key again", Duration::from_secs(10), || {
        etcd.get("/t/svc/db/prober")
            .and_then(|v| serde_json::from_str::<serde_json::Value>(&v).ok())
            .is_some_and(|v| v["id"].is_string())
    });
    assert!(r.is_ok(), "{r:?}");
    f.wait_settled(Duration::from_secs(10));
    eprintln!(
        "FLEET a hand-written prober key: one prober again after {:?}",
        t0.elapsed()
    );
    assert!(
        f.v.iter()
            .any(|b| b.has("removing a prober key without a lease"))
    );
    // The next real verdict is applied as usual.
    primary.stop();
    let (_, spread) = switch_times(&f, primary.port(), false, Duration::from_secs(10));
    assert!(spread <= SPREAD_BOUND, "spread {spread:?}");
}

#[test]
fn a_followers_failed_connect_stays_local_and_the_prober_reprobes_at_once() {
    let _g = serial();
    let etcd = Etcd::single();
    let backup = Backend::tagged("backup");
    let port = free_port(LOCALHOST_V4);
    let primary = Backend::tagged_at(("127.0.0.1", port), "primary").unwrap();
    // A long interval: only the reprobe can bring the follower's channel
    // back soon (a follower does not probe; the prober's verdict is "up").
    let f = Fleet::start_with(
        3,
        Some(&etcd.endpoint()),
        (port, backup.port()),
        "5s",
        "    autodisable: true\n",
    );
    f.wait_settled(Duration::from_secs(10));
    let p = f.prober();
    let (fi, follower) = f.others(p).next().unwrap();
    // The primary refuses for a moment: a client of the follower fails
    // over to the backup and the follower takes the primary down (`-a`).
    primary.stop();
    assert_eq!(ask(local(follower.port())).unwrap(), "backup");
    let _primary = Backend::tagged_at(("127.0.0.1", port), "primary").unwrap();
    let t0 = Instant::now();
    assert!(!primary_up(follower, port), "taken down locally at once");
    let r = wait_until("the prober's fresh verdict", Duration::from_secs(3), || {
        primary_up(follower, port)
    });
    let took = t0.elapsed();
    assert!(r.is_ok(), "{r:?}");
    eprintln!(
        "FLEET follower's passive down: the prober's republished verdict brought it back after {took:?} (interval 5s)"
    );
    assert!(took < stretched(Duration::from_secs(2)), "took {took:?}");
    // Local only: nobody else ever took the primary down.
    for (i, b) in f.v.iter().enumerate().filter(|(i, _)| *i != fi) {
        assert!(!b.has("channel down"), "instance {i}: {}", b.stderr());
    }
    assert_eq!(ask(local(follower.port())).unwrap(), "primary");
}

/// The failed connects instance `b` counted on channel `port` (group 0).
fn connect_failures(b: &Balance, port: u16) -> f64 {
    let labels = format!("listener=\"db\",group=\"0\",index=\"0\",channel=\"127.0.0.1:{port}\"");
    sample(
        &scrape(b.metrics_port()),
        "balance_channel_connect_failures_total",
        &labels,
    )
}

#[test]
fn a_followers_passive_down_waits_for_a_clean_reprobe() {
    let _g = serial();
    let etcd = Etcd::single();
    let backup = Backend::tagged("backup");
    let port = free_port(LOCALHOST_V4);
    let primary = Backend::tagged_at(("127.0.0.1", port), "primary").unwrap();
    // `fall: 4`, `interval: 2s`: after the primary dies the prober says
    // "up, N failures" for seconds; every reprobe round adds one.
    let ch = (port, backup.port());
    let f = Fleet::start_yaml(3, |p| {
        yaml(
            p,
            Some(&etcd.endpoint()),
            ch,
            "2s",
            "    autodisable: true\n",
        )
        .replace("fall: 2", "fall: 4")
    });
    f.wait_settled(Duration::from_secs(10));
    let p = f.prober();
    let follower = f.others(p).next().unwrap().1;
    let before = connect_failures(follower, port);
    primary.stop();
    // One client after another for 1.5 s: each is served (by the backup);
    // the primary is tried only while the follower holds it up.
    let t0 = Instant::now();
    let mut clients = 0;
    while t0.elapsed() < Duration::from_millis(1500) {
        assert_eq!(ask(local(follower.port())).unwrap(), "backup");
        clients += 1;
        thread::sleep(Duration::from_millis(20));
    }
    let failed = connect_failures(follower, port) - before;
    let prober = &f.v[p];
    let fails = etcd
        .get(&format!("/t/svc/db/verdict/127.0.0.1:{port}"))
        .unwrap_or_default();
    eprintln!(
        "FLEET dead primary, {clients} clients of a follower over 1.5 s: {failed} failed connects; the prober's verdict {fails}"
    );
    assert!(failed <= 1.0, "{failed} failed connects");
    // Still "up" fleet-wide (the prober's streak is below `fall`), yet
    // the follower tried the dead primary only once.
    assert!(fails.contains("\"state\":\"up\""), "{fails}");
    assert!(!fails.contains("\"fails\":0"), "{fails}");
    assert!(primary_up(prober, port));
    assert!(!primary_up(follower, port));
    // Back: the prober's next check ends its streak, and that verdict
    // (answering the follower's request, no failures) brings it back.
    let _primary = Backend::tagged_at(("127.0.0.1", port), "primary").unwrap();
    let t0 = Instant::now();
    let r = wait_until(
        "the follower's primary back",
        Duration::from_secs(6),
        || primary_up(follower, port),
    );
    assert!(r.is_ok(), "{r:?}");
    eprintln!(
        "FLEET primary back: the follower took it back after {:?} (interval 2s)",
        t0.elapsed()
    );
    assert_eq!(ask(local(follower.port())).unwrap(), "primary");
}

#[test]
fn a_hung_etcd_is_fallen_back_from_like_a_dead_one() {
    let _g = serial();
    let (etcd, _primary, _backup, f) = settled(3);
    // SIGSTOP: connections are accepted by the kernel, nothing answers
    // (what a partition looks like).
    let pid = etcd.pid(0).expect("etcd runs") as libc::pid_t;
    signal(pid, libc::SIGSTOP);
    let t0 = Instant::now();
    let r = wait_until("every instance alone", FALLBACK * 4, || {
        f.v.iter().all(|b| role(b) == "alone")
    });
    let took = t0.elapsed();
    signal(pid, libc::SIGCONT);
    assert!(r.is_ok(), "{r:?}: {:?}", f.roles());
    eprintln!(
        "FLEET etcd hung (SIGSTOP): every instance probing alone after {took:?} (fallback {FALLBACK:?})"
    );
    f.all_answer("primary");
    let t0 = Instant::now();
    f.wait_settled(Duration::from_secs(10));
    eprintln!(
        "FLEET etcd resumed (SIGCONT): settled again after {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_stopped_prober_hands_over_at_once() {
    let _g = serial();
    let (_etcd, _primary, _backup, f) = settled(3);
    let (_rest, took) = take_over(&f, Balance::terminate, Duration::from_secs(5));
    eprintln!("FLEET prober SIGTERMed: another instance took over after {took:?}");
    // Well inside the lease TTL (2 s): the lease was revoked.
    assert!(
        took < stretched(Duration::from_millis(1500)),
        "took {took:?}"
    );
}

#[test]
fn a_reloaded_listener_rejoins_its_fleet() {
    let _g = serial();
    let (_etcd, primary, _backup, f) = settled(3);
    // A changed listener on every instance, the prober first: new Services,
    // new fleet tasks.
    let p = f.prober();
    let order = std::iter::once(p).chain((0..f.v.len()).filter(|i| *i != p));
    for i in order {
        let b = &f.v[i];
        let yaml = std::fs::read_to_string(b.config_path()).unwrap();
        let changed = yaml.replace("    groups:\n", "    connect_timeout: 3s\n    groups:\n");
        assert_ne!(yaml, changed);
        std::fs::write(b.config_path(), changed).unwrap();
        assert!(b.ctl("reload").contains("1 changed"), "{}", b.stderr());
    }
    let t0 = Instant::now();
    f.wait_settled(Duration::from_secs(10));
    eprintln!(
        "FLEET every listener reloaded: settled again after {:?}",
        t0.elapsed()
    );
    primary.stop();
    let (_, spread) = switch_times(&f, primary.port(), false, Duration::from_secs(10));
    assert!(spread <= SPREAD_BOUND, "spread {spread:?}");
}

#[test]
fn losing_the_etcd_member_in_use_keeps_the_fleet_together() {
    let _g = serial();
    let mut etcd = Etcd::three();
    let (primary, backup) = (Backend::tagged("primary"), Backend::tagged("backup"));
    let n = 5;
    // The leader's endpoint first: every instance talks to it (the worst
    // case: losing it also stops the cluster until a new leader is
    // elected).
    let leader = etcd.leader().expect("a leader");
    let mut eps = etcd.endpoints();
    eps.rotate_left(leader);
    let f = Fleet::start(n, Some(&eps.join(",")), primary.port(), backup.port());
    f.wait_settled(Duration::from_secs(10));
    etcd.kill(leader);
    let t0 = Instant::now();
    // Sample every instance's role for 4 s (two lease TTLs): how long any
    // instance probes alone, and how many probers there are. Meanwhile
    // the primary fails, 1.5 s after the member.
    let (mut samples, mut no_prober, mut two_probers) = (0, 0, 0);
    let mut alone = vec![Duration::ZERO; n];
    let mut alone_since: Vec<Option<Instant>> = vec![None; n];
    let (first, spread) = thread::scope(|s| {
        let switch = s.spawn(|| {
            // 1.5 s after the member, and once every instance follows the
            // fleet again (when the member was the leader, some probed
            // alone meanwhile).
            thread::sleep(Duration::from_millis(1500));
            let r = wait_until("nobody alone", Duration::from_secs(3), || {
                f.roles().iter().all(|r| r != "alone")
            });
            assert!(r.is_ok(), "{r:?}");
            primary.stop();
            switch_times(&f, primary.port(), false, Duration::from_secs(6))
        });
        while t0.elapsed() < Duration::from_secs(4) {
            let roles = f.roles();
            samples += 1;
            match roles.iter().filter(|r| *r == "prober").count() {
                0 => no_prober += 1,
                1 => {}
                _ => two_probers += 1,
            }
            for (i, r) in roles.iter().enumerate() {
                match (r == "alone", alone_since[i]) {
                    (true, None) => alone_since[i] = Some(Instant::now()),
                    (false, Some(t)) => {
                        alone[i] += t.elapsed();
                        alone_since[i] = None;
                    }
                    _ => {}
                }
            }
            thread::sleep(Duration::from_millis(20));
        }
        switch.join().unwrap()
    });
    for (i, t) in alone_since.iter().enumerate() {
        if let Some(t) = t {
            alone[i] += t.elapsed();
        }
    }
    let longest_alone = *alone.iter().max().unwrap();
    eprintln!(
        "FLEET etcd member in use killed (3 members, the leader, {n} instances): {samples} samples over 4 s; no prober in {no_prober}, two or more in {two_probers}; longest time alone {longest_alone:?}; roles after {:?}",
        f.roles()
    );
    eprintln!(
        "FLEET member down: primary stopped (1.5 s after the member, nobody alone): first instance down after {first:?}, spread {spread:?}"
    );
    // Still one fleet: one prober, the rest following.
    f.wait_settled(Duration::from_secs(3));
    // Alone at most from `fallback` after
    // the last answer until the cluster has a new leader (etcd's election
    // timeout is 1 s: 1-2 s) and the next retry (backoff up to 1 s).
    assert!(
        longest_alone <= stretched(Duration::from_millis(2500)),
        "alone {alone:?}"
    );
    assert_eq!(two_probers, 0, "two probers at once");
    assert!(spread <= SPREAD_BOUND, "spread {spread:?}");
    f.all_answer("backup");
    let p = f.prober();
    for (i, b) in f.others(p) {
        assert!(
            b.has("channel down (dis): fleet: "),
            "instance {i} did not take the fleet's verdict: {}",
            b.stderr()
        );
    }
    // The member comes back; the fleet goes on.
    let t0 = Instant::now();
    etcd.restart(leader);
    let _primary = Backend::tagged_at(("127.0.0.1", primary.port()), "primary").unwrap();
    f.wait_settled(Duration::from_secs(10));
    for b in &f.v {
        wait_primary_back(b, primary.port());
    }
    eprintln!(
        "FLEET member restarted: settled, primary back everywhere after {:?}",
        t0.elapsed()
    );
}

#[test]
fn a_briefly_hung_etcd_flips_nobody_and_loses_no_verdict() {
    let _g = serial();
    let (etcd, primary, _backup, f) = settled(3);
    let pid = etcd.pid(0).expect("etcd runs") as libc::pid_t;
    // Hung for 0.6 s (< `fallback`: 1 s): the prober's writes and every
    // keepalive time out while the leases stay valid.
    let hang = |during: &dyn Fn()| {
        signal(pid, libc::SIGSTOP);
        let t0 = Instant::now();
        let mut seen = Vec::new();
        while t0.elapsed() < Duration::from_millis(600) {
            seen.push(f.roles());
            during();
            thread::sleep(Duration::from_millis(20));
        }
        signal(pid, libc::SIGCONT);
        seen
    };
    let before: Vec<String> = f.v.iter().map(Balance::stderr).collect();
    let seen = hang(&|| {
        for b in &f.v {
            assert!(primary_up(b, primary.port()));
        }
    });
    f.wait_settled(Duration::from_secs(5));
    let roles = f.roles();
    let alone = seen.iter().flatten().filter(|r| *r == "alone").count();
    eprintln!(
        "FLEET etcd hung 0.6 s (fallback 1 s): {} samples, alone in {alone}; roles after {roles:?}",
        seen.len()
    );
    assert_eq!(alone, 0);
    for (i, b) in f.v.iter().enumerate() {
        let new = &b.stderr()[before[i].len()..];
        assert!(!new.contains("channel "), "instance {i} flipped: {new}");
        assert_eq!(ask(local(b.port())).unwrap(), "primary");
    }
    // The primary fails while etcd hangs: the prober sees it (its checks
    // go on), cannot publish yet, and publishes when etcd answers; no
    // follower flips before that, every one flips after.
    let p = f.prober();
    // Stopped at the first sample of the hang: once, whatever the time the
    // first role queries took (a time window here never stopped it once).
    let stopped = std::cell::Cell::new(false);
    let seen = hang(&|| {
        if !stopped.replace(true) {
            primary.stop();
        }
        for (i, b) in f.others(p) {
            assert!(primary_up(b, primary.port()), "follower {i} flipped alone");
        }
    });
    let resumed = Instant::now();
    let (first, spread) = switch_times(&f, primary.port(), false, Duration::from_secs(5));
    eprintln!(
        "FLEET primary failed during a 0.6 s hang: {} samples; every instance down {:?} after etcd resumed (spread {spread:?}, {first:?} after the polls began)",
        seen.len(),
        resumed.elapsed()
    );
    assert!(spread <= SPREAD_BOUND, "spread {spread:?}");
    for (i, b) in f.others(p) {
        assert!(
            b.has("channel down (dis): fleet: "),
            "instance {i}: {}",
            b.stderr()
        );
        assert_eq!(ask(local(b.port())).unwrap(), "backup");
    }
    assert!(seen.iter().flatten().all(|r| r != "alone"));
}

/// The etcd member every instance talks to hangs (SIGSTOP; it does not
/// lead, so the cluster goes on), then the primary stops answering while
/// it still accepts: only the prober's checks can see that (a follower's
/// clients connect fine; its monitor is paused). Each follower must drop
/// its watch through the hung member within the fleet's `fallback`, watch
/// through another, and apply the prober's verdict (or probe alone and see
/// it itself) within `fallback` of the prober; "etcd ok" while following
/// means it receives the fleet's verdicts.
#[test]
fn a_hung_etcd_member_is_left_and_the_probers_verdict_still_arrives() {
    let _g = serial();
    let etcd = Etcd::three();
    let (primary, mute) = common::fleet::mutable_tagged("primary");
    let backup = Backend::tagged("backup");
    let n = 3;
    // The instances list member 0 first: they all talk to it.
    let f = Fleet::start_yaml(n, |p| {
        yaml(
            p,
            Some(&etcd.endpoints_arg()),
            (primary.port(), backup.port()),
            "500ms",
            "",
        )
        .replace(
            "- connect: {}",
            "- send_expect: { send: \"hello\\n\", expect: \"hello\" }",
        )
    });
    f.wait_settled(Duration::from_secs(10));
    etcd.move_leader_off(0);
    let p = f.prober();
    for b in &f.v {
        assert!(primary_up(b, primary.port()));
    }
    etcd.hang(0);
    let hung = Instant::now();
    mute.store(true, std::sync::atomic::Ordering::SeqCst);
    // Each instance's first moment with the primary down, polled in
    // parallel (None: not within the limit).
    let limit = Duration::from_secs(12);
    let port = primary.port();
    let times: Vec<Option<Duration>> = thread::scope(|s| {
        let hs: Vec<_> =
            f.v.iter()
                .map(|b| {
                    s.spawn(move || {
                        wait_until("the primary down", limit, || !primary_up(b, port))
                            .ok()
                            .map(|_| hung.elapsed())
                    })
                })
                .collect();
        hs.into_iter().map(|h| h.join().unwrap()).collect()
    });
    let states: Vec<String> =
        f.v.iter()
            .map(|b| {
                let x = &b.json()["listener"]["fleet"];
                format!("{} etcd {}", x["role"], x["etcd"])
            })
            .collect();
    eprintln!(
        "FLEET etcd member in use hung (3 members, not the leader, {n} instances), primary muted at once: primary down after {times:?} (prober {p}); then {states:?}"
    );
    let Some(at_prober) = times[p] else {
        panic!(
            "the prober never took the primary down: {}",
            f.v[p].stderr()
        );
    };
    for (i, b) in f.others(p) {
        let t = times[i].unwrap_or_else(|| {
            panic!(
                "follower {i} kept the primary up for {limit:?} while the prober took it down after {at_prober:?}: {}\n{}",
                b.json()["listener"]["fleet"],
                b.stderr()
            )
        });
        assert!(
            t <= at_prober + FALLBACK + Duration::from_millis(500),
            "follower {i}: primary down after {t:?}, the prober's after {at_prober:?}"
        );
    }
    // Still one fleet, through the members that answer: "etcd ok" again
    // (the hung member is still stopped), new clients to the backup.
    let r = wait_until("one fleet, etcd ok", Duration::from_secs(5), || {
        let fl: Vec<serde_json::Value> =
            f.v.iter()
                .map(|b| b.json()["listener"]["fleet"].clone())
                .collect();
        fl.iter().all(|x| x["etcd"] == "ok")
            && fl.iter().filter(|x| x["role"] == "prober").count() == 1
            && fl.iter().filter(|x| x["role"] == "follower").count() == n - 1
    });
    assert!(r.is_ok(), "{r:?}: {:?}", f.roles());
    for (i, b) in f.v.iter().enumerate() {
        let got = ask(local(b.port()));
        assert!(
            got.as_ref().is_ok_and(|t| t == "backup"),
            "instance {i}: {got:?}\n{}",
            b.stderr()
        );
    }
    for (i, b) in f.others(p) {
        assert!(
            b.has("does not serve the watch") || b.has("probing alone"),
            "follower {i} did not leave the hung member: {}",
            b.stderr()
        );
    }
    etcd.resume(0);
}

/// Whether a new client of `b` is answered by `tag` now; how long it took.
fn answered_by(b: &Balance, tag: &str) -> (bool, Duration) {
    let t0 = Instant::now();
    let ok = ask(local(b.port())).is_ok_and(|t| t == tag);
    (ok, t0.elapsed())
}

/// A 20 MB value under the service's prefix (etcd allowed such requests):
/// every instance refuses it (one log line, counted) without reading it
/// whole, keeps serving meanwhile, its RSS grows by a few MiB at most, and
/// the fleet goes on (a later verdict reaches every instance).
#[test]
fn a_huge_value_under_the_prefix_is_refused_and_the_fleet_goes_on() {
    let _g = serial();
    let etcd = Etcd::single_with(&["--max-request-bytes", "33554432"]);
    let (primary, backup) = (Backend::tagged("primary"), Backend::tagged("backup"));
    let n = 2;
    let f = Fleet::start(n, Some(&etcd.endpoint()), primary.port(), backup.port());
    f.wait_settled(Duration::from_secs(10));
    let p = f.prober();
    // Warm: a few clients each, so the RSS baseline includes the data path.
    for _ in 0..5 {
        f.all_answer("primary");
    }
    let before: Vec<u64> = f.v.iter().map(Balance::rss_kib).collect();
    // The slowest of the same clients over 2 s before, for comparison.
    let t0 = Instant::now();
    let mut baseline = Duration::ZERO;
    while t0.elapsed() < Duration::from_secs(2) {
        for b in &f.v {
            baseline = baseline.max(answered_by(b, "primary").1);
        }
        thread::sleep(Duration::from_millis(5));
    }
    // Under a key nobody rewrites: every read of the prefix meets it.
    let key = "/t/svc/db/ops/huge".to_string();
    let big = "x".repeat(20 << 20);
    // New clients all along, to every instance: each is answered (and how
    // long it took).
    let stop = std::sync::atomic::AtomicBool::new(false);
    let (served, worst) = thread::scope(|s| {
        let asker = s.spawn(|| {
            let (mut served, mut worst) = (0, Duration::ZERO);
            let end = Instant::now() + Duration::from_secs(40);
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && Instant::now() < end {
                for (i, b) in f.v.iter().enumerate() {
                    let (ok, took) = answered_by(b, "primary");
                    assert!(ok, "instance {i} did not serve: {}", b.stderr());
                    served += 1;
                    worst = worst.max(took);
                }
                thread::sleep(Duration::from_millis(5));
            }
            (served, worst)
        });
        let t0 = Instant::now();
        // A put this size takes etcd seconds on a busy machine.
        let c = balance::etcd::Client::new(&[etcd.endpoint()], Duration::from_secs(30)).unwrap();
        common::etcd::block_on(c.put(key.as_bytes(), big.as_bytes(), None)).unwrap();
        eprintln!("FLEET a 20 MiB value put in {:?}", t0.elapsed());
        let r = wait_until("every instance refused it", common::fleet::REACH, || {
            f.v.iter().all(|b| b.has("refused an etcd value"))
        });
        // Serving on a while after the refusal, then the fleet settles again.
        let settled = wait_until("settled again", Duration::from_secs(10), || {
            f.roles().iter().filter(|r| *r == "follower").count() == n - 1
        });
        assert!(
            settled.is_ok(),
            "{settled:?}: {:?}",
            f.v.iter().map(Balance::stderr).collect::<Vec<_>>()
        );
        // The asker goes on a while against the settled fleet: an
        // observation window, not a wait for anything.
        thread::sleep(Duration::from_millis(500));
        stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let out = asker.join().unwrap();
        assert!(
            r.is_ok(),
            "{r:?}: {:?}",
            f.v.iter().map(Balance::stderr).collect::<Vec<_>>()
        );
        out
    });
    let after: Vec<u64> = f.v.iter().map(Balance::rss_kib).collect();
    eprintln!(
        "FLEET a 20 MiB value under the prefix: refused by all {n}; {served} clients served meanwhile, slowest {worst:?} (2 s before: {baseline:?}); RSS KiB before {before:?}, after {after:?}"
    );
    for (i, (b, a)) in before.iter().zip(&after).enumerate() {
        assert!(*a < b + 24 * 1024, "instance {i}: RSS {b} KiB -> {a} KiB");
    }
    // Each instance passes over the value's bytes as they arrive (on a
    // blocking thread, piece by piece), never holding it: no client waits
    // much longer than before, none fails.
    assert!(
        worst < baseline + Duration::from_millis(300),
        "slowest client {worst:?}, {baseline:?} before"
    );
    // The fleet goes on: the primary fails, every instance follows.
    let _ = p;
    primary.stop();
    let (_, spread) = switch_times(&f, primary.port(), false, Duration::from_secs(10));
    assert!(spread <= SPREAD_BOUND, "spread {spread:?}");
    f.all_answer("backup");
}
