//! Scheduler behaviour on paused time with a scripted prober.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Mutex;
use std::sync::atomic::AtomicU32;

use futures_util::FutureExt;

use super::*;
use crate::cli::{Invocation, Parsed, UsageError, parse};
use crate::config::{ChannelConfig, Failback, GroupConfig, Host, ListenerConfig, Policy};
use crate::health::{Evidence, RiseFallParams};
use crate::pool::Target;

fn service(groups: &[usize], rise: u32, fall: u32) -> Arc<Service> {
    let gs = groups
        .iter()
        .enumerate()
        .map(|(g, &n)| GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels: (0..n)
                .map(|i| ChannelConfig {
                    name: String::new(),
                    host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
                    port: 1000 + (g * 10 + i) as u16,
                    maxc: 0,
                    weight: 1,
                    proxy_protocol: None,
                })
                .collect(),
        })
        .collect();
    let l = ListenerConfig::new("test".into(), SocketAddr::from(([127, 0, 0, 1], 0)), gs);
    Arc::new(Service::new(
        l,
        RiseFallParams {
            rise,
            fall,
            ..Default::default()
        },
    ))
}

fn plan(ms: u64) -> Plan {
    Plan {
        interval: Duration::from_millis(ms),
        suspect_interval: None,
        jitter: Duration::ZERO,
        only_down: false,
    }
}

fn ch(svc: &Service, g: usize, i: usize) -> Arc<Channel> {
    Arc::clone(&svc.pool.groups()[g].channels[i])
}

/// A prober whose verdict per port is switchable; counts calls and the
/// most probes ever in flight against the hung channel.
#[derive(Default)]
struct Script {
    failing: Mutex<Vec<u16>>,
    hang: Mutex<Vec<u16>>,
    calls: AtomicU32,
    inflight: AtomicU32,
    max_inflight: AtomicU32,
}

fn prober(s: Arc<Script>) -> Prober {
    Arc::new(move |job: Job| {
        let s = Arc::clone(&s);
        Box::pin(async move {
            let port = job.channel.target().port;
            s.calls.fetch_add(1, SeqCst);
            let hang = s.hang.lock().map(|h| h.contains(&port)).unwrap_or(false);
            if hang {
                let now = s.inflight.fetch_add(1, SeqCst) + 1;
                s.max_inflight.fetch_max(now, SeqCst);
                // A hung check bounded by a 1 s timeout.
                sleep(Duration::from_secs(1)).await;
                s.inflight.fetch_sub(1, SeqCst);
            }
            let fail = s.failing.lock().map(|f| f.contains(&port)).unwrap_or(false);
            if hang || fail {
                Err("connect: connection refused".into()).into()
            } else {
                Ok(()).into()
            }
        })
    })
}

#[tokio::test(start_paused = true)]
async fn down_after_fall_intervals_and_up_after_rise() {
    let svc = service(&[1, 1], 2, 3);
    let s = Arc::new(Script::default());
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Arc::clone(&svc),
        stop.clone(),
        plan(100),
        prober(Arc::clone(&s)),
    ));
    let primary = ch(&svc, 0, 0);
    sleep(Duration::from_millis(250)).await;
    assert!(primary.is_up());
    s.failing.lock().unwrap().push(1000);
    let t0 = Instant::now();
    while primary.is_up() {
        sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    // 3 failed rounds at 100 ms spacing: the 3rd failure lands within 300 ms.
    assert!(took <= Duration::from_millis(310), "{took:?}");
    assert!(took >= Duration::from_millis(190), "{took:?}");
    assert_eq!(primary.health().1, "connect: connection refused");
    s.failing.lock().unwrap().clear();
    let t0 = Instant::now();
    while !primary.is_up() {
        sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    assert!(
        took <= Duration::from_millis(210) && took >= Duration::from_millis(90),
        "{took:?}"
    );
    assert!(ch(&svc, 1, 0).is_up());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn hung_probe_never_piles_up() {
    let svc = service(&[2], 2, 3);
    let s = Arc::new(Script::default());
    s.hang.lock().unwrap().push(1000);
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Arc::clone(&svc),
        stop.clone(),
        plan(200),
        prober(Arc::clone(&s)),
    ));
    let hung = ch(&svc, 0, 0);
    let t0 = Instant::now();
    while hung.is_up() {
        sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    // 3 timeouts of 1 s plus the wait for the next round after each.
    assert!(
        took >= Duration::from_secs(3) && took <= Duration::from_millis(3700),
        "{took:?}"
    );
    // The hung channel never had more than 1 probe in flight.
    assert_eq!(s.max_inflight.load(SeqCst), 1);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn operator_disabled_channels_are_never_probed_or_touched() {
    let svc = service(&[1], 2, 1);
    let c = ch(&svc, 0, 0);
    c.set_admin(Admin::Disabled);
    let s = Arc::new(Script::default());
    s.failing.lock().unwrap().push(1000);
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Arc::clone(&svc),
        stop.clone(),
        plan(100),
        prober(Arc::clone(&s)),
    ));
    sleep(Duration::from_secs(1)).await;
    assert_eq!(s.calls.load(SeqCst), 0);
    assert!(c.is_up());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn reprobe_after_a_passive_failure_probes_only_the_failing_channel_at_once() {
    let svc = service(&[2], 2, 3);
    let s = Arc::new(Script::default());
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Arc::clone(&svc),
        stop.clone(),
        plan(10_000),
        prober(Arc::clone(&s)),
    ));
    sleep(Duration::from_millis(50)).await;
    assert_eq!(s.calls.load(SeqCst), 2, "first round probes both");
    // What the data path does after a failed connect to channel 0.
    ch(&svc, 0, 0).observe(
        Err("connect: connection refused".into()),
        Evidence::Transport,
        &svc.rise_fall,
    );
    svc.reprobe.notify_one();
    sleep(Duration::from_millis(200)).await;
    assert_eq!(
        s.calls.load(SeqCst),
        3,
        "only the failing channel is re-probed"
    );
    // Its probe passed, so the streak is over: another notification
    // probes nothing until the next interval.
    svc.reprobe.notify_one();
    sleep(Duration::from_millis(200)).await;
    assert_eq!(s.calls.load(SeqCst), 3);
    sleep(Duration::from_secs(10)).await;
    assert_eq!(s.calls.load(SeqCst), 5, "the regular round still comes");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn balance_fm_rate_for_healthy_channels_with_fast_follow_up_on_suspects() {
    // What a balance.fm-form `-m` without interval= resolves to.
    let m = crate::config::monitor_spec::parse("connect").unwrap();
    let svc = service(&[2], m.rise, m.fall);
    let s = Arc::new(Script::default());
    let stop = CancellationToken::new();
    let p = Plan {
        interval: m.interval,
        suspect_interval: m.suspect_interval,
        ..plan(0)
    };
    tokio::spawn(run(
        Arc::clone(&svc),
        stop.clone(),
        p,
        prober(Arc::clone(&s)),
    ));
    // Ten minutes healthy: one round a minute, as balance.fm probed.
    sleep(Duration::from_secs(600) - Duration::from_millis(1)).await;
    assert_eq!(s.calls.load(SeqCst), 2 * 10, "two channels, ten rounds");
    // A channel fails at the next round: it is down 2 follow-ups later.
    s.failing.lock().unwrap().push(1000);
    let bad = ch(&svc, 0, 0);
    let t0 = Instant::now();
    while bad.is_up() {
        sleep(Duration::from_millis(10)).await;
    }
    let took = t0.elapsed();
    assert!(took <= Duration::from_millis(4100), "down after {took:?}");
    // Back after rise (2) follow-ups, far sooner than a minute per probe.
    s.failing.lock().unwrap().clear();
    let t0 = Instant::now();
    while !bad.is_up() {
        sleep(Duration::from_millis(10)).await;
    }
    assert!(
        t0.elapsed() <= Duration::from_millis(4100),
        "{:?}",
        t0.elapsed()
    );
    // Both healthy again: only the minute rounds (two in two minutes).
    let calls = s.calls.load(SeqCst);
    sleep(Duration::from_millis(119_900)).await;
    assert_eq!(s.calls.load(SeqCst), calls + 4, "no probes between rounds");
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn recovery_monitor_probes_only_soft_down_channels() {
    let svc = service(&[2], 2, 3);
    let s = Arc::new(Script::default());
    let stop = CancellationToken::new();
    let p = Plan {
        only_down: true,
        ..plan(100)
    };
    tokio::spawn(run(
        Arc::clone(&svc),
        stop.clone(),
        p,
        prober(Arc::clone(&s)),
    ));
    sleep(Duration::from_millis(500)).await;
    assert_eq!(s.calls.load(SeqCst), 0, "healthy channels are left alone");
    let c = ch(&svc, 0, 1);
    c.force_down("connect: connection refused"); // as -a does
    let t0 = Instant::now();
    while !c.is_up() {
        sleep(Duration::from_millis(10)).await;
    }
    assert!(
        t0.elapsed() <= Duration::from_millis(250),
        "{:?}",
        t0.elapsed()
    );
    let calls = s.calls.load(SeqCst);
    assert_eq!(calls, 2, "rise 2 passes, then nothing more");
    sleep(Duration::from_millis(500)).await;
    assert_eq!(s.calls.load(SeqCst), calls);
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn channels_added_at_runtime_are_probed() {
    let svc = service(&[1], 2, 1);
    let s = Arc::new(Script::default());
    s.failing.lock().unwrap().push(4242);
    let stop = CancellationToken::new();
    tokio::spawn(run(
        Arc::clone(&svc),
        stop.clone(),
        plan(100),
        prober(Arc::clone(&s)),
    ));
    sleep(Duration::from_millis(150)).await;
    let target = Target {
        host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
        port: 4242,
        addrs: vec![SocketAddr::from(([127, 0, 0, 1], 4242))],
    };
    let new = svc.pool.new_channel("new", target, 0, 1, None);
    let g0 = svc.pool.groups()[0].with_channel(Arc::clone(&new));
    svc.pool.store_groups(vec![Arc::new(g0)]);
    sleep(Duration::from_millis(250)).await;
    assert!(
        !new.is_up(),
        "the new channel was probed and failed (fall 1)"
    );
    assert!(ch(&svc, 0, 0).is_up());
    stop.cancel();
}

#[tokio::test(start_paused = true)]
async fn on_down_shutdown_signals_the_channel_sessions() {
    let mut l = service(&[1], 2, 1).cfg.clone();
    l.on_down_shutdown = true;
    let svc = Arc::new(Service::new(
        l,
        RiseFallParams {
            fall: 1,
            ..Default::default()
        },
    ));
    let c = ch(&svc, 0, 0);
    let mut kill = std::pin::pin!(c.session_kill());
    let job = Job {
        channel: Arc::clone(&c),
        group: 0,
        index: 0,
    };
    let failed = || Outcome::Checked {
        result: Err("http: HTTP 503".into()),
        took: Duration::ZERO,
    };
    svc.report(&job, failed());
    assert!(!c.is_up());
    assert!(kill.as_mut().now_or_never().is_some());
    let mut kill = std::pin::pin!(c.session_kill());
    svc.report(&job, failed());
    assert!(
        kill.as_mut().now_or_never().is_none(),
        "only the flip closes sessions"
    );
}

#[tokio::test(start_paused = true)]
async fn jitter_spreads_probe_starts_and_keeps_the_mean_interval() {
    let svc = service(&[50], 2, 3);
    let starts: Arc<Mutex<Vec<(u16, Instant)>>> = Arc::default();
    let s2 = Arc::clone(&starts);
    let p: Prober = Arc::new(move |job: Job| {
        let s2 = Arc::clone(&s2);
        Box::pin(async move {
            s2.lock()
                .unwrap()
                .push((job.channel.target().port, Instant::now()));
            Ok(()).into()
        })
    });
    let stop = CancellationToken::new();
    let plan = Plan {
        interval: Duration::from_secs(1),
        suspect_interval: None,
        jitter: Duration::from_secs(1),
        only_down: false,
    };
    let t0 = Instant::now();
    tokio::spawn(run(Arc::clone(&svc), stop.clone(), plan, p));
    // 50 channels over a 1 s jitter window: one slot per 20 ms, so no 10 ms
    // window can hold more than a few starts, whatever the random draws.
    sleep(Duration::from_secs(6)).await;
    stop.cancel();
    let starts = starts.lock().unwrap().clone();
    assert!(starts.len() >= 250, "{} probes", starts.len());
    // ≤ 5 probe starts in any 10 ms window.
    let mut per_window = HashMap::new();
    for (_, t) in &starts {
        *per_window.entry((*t - t0).as_millis() / 10).or_insert(0u32) += 1;
    }
    let worst = per_window.values().max().copied().unwrap_or(0);
    assert!(worst <= 5, "{worst} probe starts in one 10 ms window");
    // Mean interval per channel: 1 s ± 5 %.
    let mut gaps = Vec::new();
    for port in 1000..1050u16 {
        let ts: Vec<Instant> = starts
            .iter()
            .filter(|(p, _)| *p == port)
            .map(|(_, t)| *t)
            .collect();
        gaps.extend(ts.windows(2).map(|w| (w[1] - w[0]).as_secs_f64()));
    }
    let mean = gaps.iter().sum::<f64>() / gaps.len() as f64;
    assert!((0.95..=1.05).contains(&mean), "mean interval {mean}");
}

// ---- command line: --on-down/--on-up and -m reach the listener

fn cli_listener(args: &[&str]) -> Result<ListenerConfig, UsageError> {
    let argv = std::iter::once("balance").chain(args.iter().copied());
    match parse(argv)? {
        Parsed::Invocation(inv) => match *inv {
            Invocation::Run(cfg) => cfg
                .listeners
                .into_iter()
                .next()
                .ok_or_else(|| UsageError("no listener".into())),
            _ => Err(UsageError("not a run".into())),
        },
        Parsed::Print(_) => Err(UsageError("printed".into())),
    }
}

#[test]
fn on_down_and_on_up_long_options_set_the_listener() {
    let l = cli_listener(&[
        "--on-down",
        "shutdown",
        "--on-up",
        "shutdown-backup",
        "8000",
        "127.0.0.1:1",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(l.on_down_shutdown && l.on_up_shutdown_backup);
    let l = cli_listener(&["8000", "127.0.0.1:1"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!l.on_down_shutdown && !l.on_up_shutdown_backup);
    let e = cli_listener(&["--on-down", "reboot", "8000", "127.0.0.1:1"]).err();
    assert!(e.is_some_and(|e| e.0.contains("bad --on-down \"reboot\"")));
}

#[test]
fn monitor_spec_is_parsed_and_bad_specs_are_usage_errors() {
    let l = cli_listener(&[
        "-m",
        "connect:timeout=0.4:command=/bin/checksvc -s %H -p %P >/dev/null:pass=0,2:interval=10",
        "8000",
        "127.0.0.1:1",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.monitor.map(|m| m.checks.len()), Some(2));
    let e = cli_listener(&["-m", "connect:bogus", "8000", "127.0.0.1:1"]).err();
    assert!(e.is_some_and(|e| e.0.starts_with("bad -m spec: unknown key \"bogus\"")));
}

// ---- manual failback at the pool level (the `failback` command's effect)

fn failback_pool(failback: Failback) -> crate::pool::Pool {
    let g = |port| GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels: vec![ChannelConfig {
            name: String::new(),
            host: Host::Ip(IpAddr::V4(Ipv4Addr::LOCALHOST)),
            port,
            maxc: 0,
            weight: 1,
            proxy_protocol: None,
        }],
    };
    let opts = crate::pool::SelectOpts {
        hash_failover: false,
        failback,
        full_holds: false,
        no_spill: false,
    };
    crate::pool::Pool::new(&[g(1), g(2)], opts, |h, p| match h {
        Host::Ip(ip) => vec![SocketAddr::new(*ip, p)],
        Host::Name(_) => vec![],
    })
}

fn first_group(p: &crate::pool::Pool) -> Option<usize> {
    p.candidates(crate::pool::Pick::client(IpAddr::V4(Ipv4Addr::LOCALHOST)))
        .next()
        .map(|c| c.group)
}

/// Fail over (primary down, a connection served by group 1), then the
/// primary comes back up.
fn fail_over_and_recover(p: &crate::pool::Pool) {
    let primary = Arc::clone(&p.groups()[0].channels[0]);
    primary.force_down("connect: connection refused");
    assert_eq!(first_group(p), Some(1));
    p.served_by(1);
    primary.force_up();
}

#[test]
fn manual_failback_keeps_traffic_on_backup_until_failback() {
    let p = failback_pool(Failback::Manual);
    fail_over_and_recover(&p);
    for _ in 0..5 {
        assert_eq!(
            first_group(&p),
            Some(1),
            "primary is up but failback is manual"
        );
    }
    assert_eq!(p.failback(), 1);
    assert_eq!(first_group(&p), Some(0));
}

#[test]
fn auto_failback_returns_to_primary_when_it_is_up() {
    let p = failback_pool(Failback::Auto);
    fail_over_and_recover(&p);
    assert_eq!(first_group(&p), Some(0));
}
