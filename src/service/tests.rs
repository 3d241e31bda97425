//! Reload's Service rebuild (what is kept and what is new) and the one
//! health-outcome path, `Service::report`.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use futures_util::FutureExt;

use super::*;
use crate::config::{ChannelConfig, Failback, GroupConfig, Policy};
use crate::health::{Outcome, Reason, Recovery};
use crate::pool::{Admin, Candidate, ShownState};

fn ch(ip: &str, port: u16, maxc: u32) -> ChannelConfig {
    ChannelConfig {
        name: String::new(),
        host: Host::Ip(ip.parse().unwrap()),
        port,
        maxc,
        weight: 1,
        proxy_protocol: None,
    }
}

/// A listener of round-robin groups, with the default names.
fn cfg(groups: Vec<Vec<ChannelConfig>>) -> ListenerConfig {
    let mut groups: Vec<GroupConfig> = groups
        .into_iter()
        .map(|channels| GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels,
        })
        .collect();
    crate::config::names::fill(&mut groups).unwrap();
    ListenerConfig::new("l".into(), "127.0.0.1:1".parse().unwrap(), groups)
}

#[test]
fn rebuild_keeps_the_operator_hold_and_the_monitor_switch() {
    let old = Service::new(
        cfg(vec![vec![ch("10.0.0.1", 80, 0)]]),
        RiseFallParams::default(),
    );
    old.ops.hold.on(Duration::from_secs(60));
    old.ops.pause_monitor(true);
    let new = old.rebuild(
        cfg(vec![vec![ch("10.0.0.2", 80, 0)]]),
        RiseFallParams::default(),
        crate::service::resolve,
    );
    assert!(Arc::ptr_eq(&old.ops, &new.ops));
    assert!(new.ops.hold.until().is_some() && new.ops.monitor_paused());
}

#[test]
fn rebuild_keeps_same_position_channels_with_counters_health_and_operator_state() {
    let old = Service::new(
        cfg(vec![
            vec![ch("10.0.0.1", 80, 0), ch("10.0.0.2", 80, 0)],
            vec![ch("10.0.0.9", 80, 0)],
        ]),
        RiseFallParams::default(),
    );
    let g = old.pool.groups();
    let (a, b) = (Arc::clone(&g[0].channels[0]), Arc::clone(&g[0].channels[1]));
    a.total.fetch_add(5, Relaxed);
    b.force_down("connect refused");
    a.set_admin(Admin::Drain);
    old.stats.accepted.fetch_add(3, Relaxed);

    // b moves to group 1 (a new channel there), a stays, c is new.
    let mut newcfg = cfg(vec![
        vec![ch("10.0.0.1", 80, 0), ch("10.0.0.3", 80, 0)],
        vec![ch("10.0.0.2", 80, 0)],
    ]);
    newcfg.failback = Failback::Manual;
    let new = old.rebuild(newcfg, RiseFallParams::default(), |h, p| {
        crate::service::resolve(h, p)
    });
    let ng = new.pool.groups();
    assert!(Arc::ptr_eq(&ng[0].channels[0], &a), "a is kept");
    assert_eq!(ng[0].channels[0].total.load(Relaxed), 5);
    assert_eq!(ng[0].channels[0].shown_state(), ShownState::Drain);
    assert!(
        !Arc::ptr_eq(&ng[1].channels[0], &b),
        "another group position is a new channel"
    );
    assert_eq!(ng[1].channels[0].shown_state(), ShownState::Ena);
    assert_eq!(ng[0].channels[1].target().to_string(), "10.0.0.3:80");
    assert_eq!(
        new.stats.accepted.load(Relaxed),
        3,
        "listener counters are shared"
    );
    assert!(Arc::ptr_eq(&new.stats, &old.stats));
    assert_eq!(new.pool.opts.failback, Failback::Manual);
}

#[test]
fn rebuild_takes_maxc_from_the_file_only_where_the_file_changed_it() {
    let old = Service::new(
        cfg(vec![vec![ch("10.0.0.1", 80, 10), ch("10.0.0.2", 80, 10)]]),
        RiseFallParams::default(),
    );
    let g = old.pool.groups();
    // An operator changed both at runtime.
    g[0].channels[0].set_maxc(99);
    g[0].channels[1].set_maxc(99);
    let new = old.rebuild(
        cfg(vec![vec![ch("10.0.0.1", 80, 10), ch("10.0.0.2", 80, 20)]]),
        RiseFallParams::default(),
        crate::service::resolve,
    );
    let ng = new.pool.groups();
    assert_eq!(
        ng[0].channels[0].maxc(),
        99,
        "unchanged in the file: operator wins"
    );
    assert_eq!(
        ng[0].channels[1].maxc(),
        20,
        "changed in the file: file wins"
    );
}

#[test]
fn rebuild_keeps_the_manual_failback_floor_within_the_new_group_count() {
    let mut c = cfg(vec![
        vec![ch("10.0.0.1", 80, 0)],
        vec![ch("10.0.0.2", 80, 0)],
        vec![ch("10.0.0.3", 80, 0)],
    ]);
    c.failback = Failback::Manual;
    let old = Service::new(c.clone(), RiseFallParams::default());
    old.pool.served_by(2);
    let kept = old.rebuild(
        c.clone(),
        RiseFallParams::default(),
        crate::service::resolve,
    );
    assert_eq!(kept.pool.floor(), 2);
    c.groups.truncate(2);
    let shrunk = old.rebuild(c, RiseFallParams::default(), crate::service::resolve);
    assert_eq!(shrunk.pool.floor(), 1);
}

// Service::report: the one health-outcome path.

fn at(svc: &Service, group: usize, index: usize) -> Candidate {
    Candidate {
        group,
        index,
        channel: Arc::clone(&svc.pool.groups()[group].channels[index]),
    }
}

fn two_groups() -> ListenerConfig {
    cfg(vec![
        vec![ch("10.0.0.1", 80, 0)],
        vec![ch("10.0.0.2", 80, 0)],
    ])
}

fn checked(result: Result<(), Reason>) -> Outcome {
    Outcome::Checked {
        result,
        took: Duration::from_millis(3),
    }
}

#[test]
fn passive_failures_go_through_fall_and_count_every_one() {
    let svc = Service::new(two_groups(), RiseFallParams::default());
    let a = at(&svc, 0, 0);
    let fail = || Outcome::ConnectFailed("connection refused".into());
    assert_eq!(svc.report(&a, fail()), None);
    assert_eq!(svc.report(&a, fail()), None);
    assert_eq!(svc.report(&a, fail()), Some(false), "fall 3");
    assert_eq!(svc.report(&a, fail()), None, "one flip, one reaction");
    assert_eq!(a.channel.connect_failures.load(Relaxed), 4);
    assert_eq!(
        a.channel.down_reason(),
        Some(Reason::Connect("connection refused".into()))
    );
    assert_eq!(a.channel.health().1, "connect: connection refused");
}

#[test]
fn autodisable_takes_a_channel_down_at_the_first_failed_connect() {
    let mut c = two_groups();
    c.autodisable = true;
    c.on_down_shutdown = true;
    let svc = Service::new(c, RiseFallParams::default());
    let a = at(&svc, 0, 0);
    let mut kill = std::pin::pin!(a.channel.session_kill());
    let out = svc.report(
        &a,
        Outcome::ConnectFailed("connect timeout after 1s".into()),
    );
    assert_eq!(out, Some(false));
    assert_eq!(a.channel.shown_state(), ShownState::SoftDisabled);
    assert!(kill.as_mut().now_or_never().is_some(), "on-down=shutdown");
}

#[test]
fn check_results_are_counted_but_ignored_while_the_operator_holds_the_channel() {
    let svc = Service::new(
        two_groups(),
        RiseFallParams {
            fall: 1,
            ..Default::default()
        },
    );
    let a = at(&svc, 0, 0);
    a.channel.set_admin(Admin::Drain);
    assert_eq!(svc.report(&a, checked(Err("http: HTTP 503".into()))), None);
    assert!(a.channel.is_up());
    assert_eq!(a.channel.checks_failed.load(Relaxed), 1);
    assert_eq!(a.channel.check_micros.load(Relaxed), 3000);
    a.channel.set_admin(Admin::Enabled);
    assert_eq!(
        svc.report(&a, checked(Err("http: HTTP 503".into()))),
        Some(false)
    );
    assert_eq!(a.channel.health().1, "http: HTTP 503");
    assert_eq!(svc.report(&a, checked(Ok(()))), None);
    assert_eq!(svc.report(&a, checked(Ok(()))), Some(true), "rise 2");
    assert_eq!(a.channel.checks_passed.load(Relaxed), 2);
    assert_eq!(a.channel.health().1, "ok");
}

#[test]
fn a_primary_coming_back_closes_backup_sessions_with_on_up_shutdown_backup() {
    let mut c = two_groups();
    c.on_up_shutdown_backup = true;
    let svc = Service::new(c, RiseFallParams::default());
    let (primary, backup) = (at(&svc, 0, 0), at(&svc, 1, 0));
    let mut kill = std::pin::pin!(backup.channel.session_kill());
    // A backup flipping up closes nothing.
    svc.report(&backup, Outcome::Down(Reason::SelfLoop));
    assert_eq!(
        svc.report(&backup, Outcome::Up(Recovery::NameResolves)),
        Some(true)
    );
    assert!(kill.as_mut().now_or_never().is_none());
    let mut kill = std::pin::pin!(backup.channel.session_kill());
    svc.report(&primary, Outcome::Down(Reason::SelfLoop));
    assert_eq!(
        svc.report(&primary, Outcome::Up(Recovery::NameResolves)),
        Some(true)
    );
    assert!(kill.as_mut().now_or_never().is_some());
    // Up when already up is no flip.
    assert_eq!(
        svc.report(&primary, Outcome::Up(Recovery::NameResolves)),
        None
    );
}

#[test]
fn a_catching_up_backup_is_held_until_a_later_check_passes_and_a_failing_primary_rearms_it() {
    let mut c = two_groups();
    c.monitor = Some(crate::config::monitor_spec::parse("mysql:user=chk:max_lag=5s").unwrap());
    let svc = Service::new(c, RiseFallParams::default());
    let (a, b) = (at(&svc, 0, 0), at(&svc, 1, 0));
    let behind = || Outcome::CatchingUp {
        detail: "mysql: catching up: relay log not applied: 3 transactions behind".into(),
        took: Duration::from_millis(2),
    };
    // A check that started just now (probes of one channel never overlap).
    let pass = || Outcome::Checked {
        result: Ok(()),
        took: Duration::ZERO,
    };
    assert_eq!(svc.report(&b, behind()), None, "catching up is not a flip");
    assert!(b.channel.is_up() && !b.channel.eligible());
    assert_eq!(b.channel.shown_state(), ShownState::Ena);
    assert!(b.channel.health().1.contains("3 transactions behind"));
    // A failure keeps it held (fall takes it down later); a pass frees it.
    svc.report(&b, checked(Err("mysql: replication stopped".into())));
    assert!(!b.channel.eligible());
    svc.report(&b, pass());
    assert!(b.channel.eligible() && !b.channel.is_catching_up());
    // The primary's connect fails: the backup is held until re-checked.
    svc.report(&a, Outcome::ConnectFailed("connection refused".into()));
    assert!(b.channel.is_catching_up() && !b.channel.eligible());
    // A check that started before that proves nothing.
    svc.report(
        &b,
        Outcome::Checked {
            result: Ok(()),
            took: Duration::from_secs(3600),
        },
    );
    assert!(!b.channel.eligible());
    svc.report(&b, pass());
    assert!(b.channel.eligible());
    // Without a replication check nothing is held.
    let plain = Service::new(two_groups(), RiseFallParams::default());
    let (pa, pb) = (at(&plain, 0, 0), at(&plain, 1, 0));
    plain.report(&pa, Outcome::ConnectFailed("connection refused".into()));
    assert!(pb.channel.eligible());
}

/// Info-level lines logged while `f` runs.
fn info_lines(f: impl FnOnce()) -> String {
    #[derive(Clone, Default)]
    struct Buf(Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Buf {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(b);
            Ok(b.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buf = Buf::default();
    let out = buf.clone();
    let sub = tracing_subscriber::fmt()
        .with_max_level(tracing::Level::INFO)
        .with_ansi(false)
        .with_writer(move || buf.clone())
        .finish();
    tracing::subscriber::with_default(sub, f);
    String::from_utf8_lossy(&out.0.lock().unwrap()).into_owned()
}

#[test]
fn caught_up_is_told_only_after_a_catching_up_at_the_same_level() {
    let mut c = two_groups();
    c.monitor = Some(crate::config::monitor_spec::parse("mysql:user=chk:max_lag=5s").unwrap());
    let svc = Service::new(c, RiseFallParams::default());
    let (a, b) = (at(&svc, 0, 0), at(&svc, 1, 0));
    let behind = || Outcome::CatchingUp {
        detail: "mysql: catching up: relay log not applied: 1 transactions behind".into(),
        took: Duration::ZERO,
    };
    let pass = || Outcome::Checked {
        result: Ok(()),
        took: Duration::ZERO,
    };
    // The primary serves: a backup a transaction behind is routine, both
    // ways, and so is the re-verify after a passing check.
    let routine = info_lines(|| {
        svc.report(&b, behind());
        svc.report(&b, pass());
        svc.report(&b, pass());
    });
    assert!(!routine.contains("catching up"), "{routine}");
    assert!(!routine.contains("caught up"), "{routine}");
    // The primary is gone: both are news, once each.
    svc.report(&a, Outcome::Down(Reason::Check("mysql: timeout".into())));
    let news = info_lines(|| {
        svc.report(&b, behind());
        svc.report(&b, behind());
        svc.report(&b, pass());
        svc.report(&b, pass());
    });
    assert_eq!(news.matches("channel catching up").count(), 1, "{news}");
    assert_eq!(news.matches("channel caught up").count(), 1, "{news}");
}

#[test]
fn rebuild_keeps_a_named_channel_by_name_and_a_moved_one_gets_its_operator_state() {
    let named = |name: &str, ip: &str| ChannelConfig {
        name: name.into(),
        ..ch(ip, 80, 0)
    };
    let old = Service::new(
        cfg(vec![vec![
            named("db101", "10.0.0.1"),
            named("db102", "10.0.0.2"),
        ]]),
        RiseFallParams::default(),
    );
    let g = old.pool.groups();
    let (a, b) = (Arc::clone(&g[0].channels[0]), Arc::clone(&g[0].channels[1]));
    a.set_admin(Admin::Disabled);
    a.set_weight(7);
    b.total.fetch_add(5, Relaxed);
    // The file swaps their places and points db101 elsewhere.
    let new = old.rebuild(
        cfg(vec![vec![
            named("db102", "10.0.0.2"),
            named("db101", "10.0.0.9"),
        ]]),
        RiseFallParams::default(),
        crate::service::resolve,
    );
    let ng = new.pool.groups();
    assert!(Arc::ptr_eq(&ng[0].channels[0], &b), "db102 is kept by name");
    assert_eq!(ng[0].channels[0].total.load(Relaxed), 5);
    let moved = &ng[0].channels[1];
    assert!(!Arc::ptr_eq(moved, &a), "a new channel at the new address");
    assert_eq!(moved.name(), "db101");
    assert_eq!(moved.target().to_string(), "10.0.0.9:80");
    assert_eq!((moved.admin(), moved.weight()), (Admin::Disabled, 7));
    // The live channel is not touched (the reload could still be refused).
    assert_eq!(a.target().to_string(), "10.0.0.1:80");
}
