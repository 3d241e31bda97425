use std::time::Duration;

use super::*;
use crate::config::demand::{OnEmpty, OnIdle};

fn demand(timeout: Duration, after: Duration) -> Demand {
    Demand::new(OnDemand {
        on_empty: Some(OnEmpty {
            argv: vec!["/bin/true".into()],
            timeout,
        }),
        on_idle: Some(OnIdle {
            after,
            argv: vec!["/bin/true".into()],
        }),
    })
}

#[test]
fn one_start_for_many_clients() {
    let d = demand(Duration::from_secs(10), Duration::from_secs(60));
    assert!(d.holds());
    let Demanded::Start(deadline) = d.demand() else {
        panic!("the first client starts")
    };
    for _ in 0..20 {
        assert_eq!(d.demand(), Demanded::Wait(deadline));
    }
    assert_eq!(d.starts.load(Relaxed), 1);
    assert_eq!(d.view().state, "starting");
}

#[test]
fn a_failed_start_pauses_the_group() {
    let d = demand(Duration::from_secs(10), Duration::from_secs(60));
    let Phase::Idle = d.phase() else { panic!() };
    assert!(matches!(d.demand(), Demanded::Start(_)));
    let Phase::Starting { since, .. } = d.phase() else {
        panic!("starting")
    };
    assert_eq!(d.started(since, false), Some(Duration::from_secs(10)));
    assert!(!d.holds());
    assert_eq!(d.demand(), Demanded::Pass);
    assert_eq!(d.view().state, "paused");
    assert_eq!(d.start_failures.load(Relaxed), 1);
    // A stale outcome (another start's) changes nothing.
    assert_eq!(d.started(since, true), None);
    assert_eq!(d.view().state, "paused");
}

#[test]
fn the_pause_doubles_up_to_the_bound() {
    let t = Duration::from_secs(20);
    assert_eq!(pause(t, 1), t);
    assert_eq!(pause(t, 2), t * 2);
    assert_eq!(pause(t, 3), t * 4);
    assert_eq!(pause(t, 40), MAX_PAUSE);
    assert_eq!(pause(Duration::from_secs(3600), 1), MAX_PAUSE);
}

#[test]
fn a_ready_start_records_its_time() {
    let d = demand(Duration::from_secs(10), Duration::from_secs(60));
    assert!(matches!(d.demand(), Demanded::Start(_)));
    let Phase::Starting { since, .. } = d.phase() else {
        panic!()
    };
    assert_eq!(d.started(since, true), None);
    let v = d.view();
    assert_eq!((v.state, v.starts, v.start_failures), ("running", 1, 0));
    assert!(v.last_start_ms.is_some());
}

#[test]
fn on_idle_runs_once_per_idle_period() {
    let d = demand(Duration::from_secs(10), Duration::from_millis(1));
    std::thread::sleep(Duration::from_millis(5));
    assert!(d.idle_due(false, 0));
    assert_eq!(d.view().state, "stopping");
    d.stopped(true);
    std::thread::sleep(Duration::from_millis(5));
    assert!(!d.idle_due(false, 0), "not again without a connection");
    // A connection (the total moved) arms it again.
    assert!(!d.idle_due(false, 1));
    assert!(!d.idle_due(true, 1), "not while a session lives");
    std::thread::sleep(Duration::from_millis(5));
    assert!(d.idle_due(false, 1));
    d.stopped(false);
    let v = d.view();
    assert_eq!((v.stops, v.stop_failures), (2, 1));
}
