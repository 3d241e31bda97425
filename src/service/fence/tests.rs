use std::sync::Arc;

use super::*;
use crate::config::Policy;
use crate::pool::{Channel, Target};

fn group(n: usize) -> Arc<Group> {
    let eligible = Arc::new(tokio::sync::Notify::new());
    let chans = (0..n)
        .map(|i| {
            let t = Target {
                host: crate::config::Host::Ip([127, 0, 0, 1].into()),
                port: 1000 + i as u16,
                addrs: vec![([127, 0, 0, 1], 1000 + i as u16).into()],
            };
            Channel::new("c", t, 0, 1, Arc::clone(&eligible))
        })
        .collect();
    Arc::new(Group::new("g", Policy::RoundRobin, chans))
}

#[tokio::test]
async fn the_first_group_to_serve_is_admitted_and_later_ones_move_the_fence() {
    let f = Fence::default();
    let gs = vec![group(1), group(1)];
    let t = f.ticket();
    assert_eq!(f.admit("l", &gs, 0, t).await, Admit::Go);
    assert_eq!(f.serving(), Some(0));
    // Same group: admitted whatever the ticket.
    assert_eq!(f.admit("l", &gs, 0, 12345).await, Admit::Go);
    // A move with a current ticket.
    let t = f.ticket();
    assert_eq!(f.admit("l", &gs, 1, t).await, Admit::Go);
    assert_eq!(f.serving(), Some(1));
    // A connect to group 0 selected before that move is turned away.
    assert_eq!(f.admit("l", &gs, 0, t).await, Admit::Stale);
    assert_eq!(f.serving(), Some(1));
}

#[tokio::test]
async fn a_move_waits_until_the_other_groups_sessions_closed() {
    let f = Arc::new(Fence::default());
    let gs = vec![group(2), group(1)];
    assert_eq!(f.admit("l", &gs, 0, f.ticket()).await, Admit::Go);
    let old = Arc::clone(&gs[0].channels[1]);
    let session = old.relaying_guard();
    // The session ends when told to, a little later (as a relay task does).
    let closer = tokio::spawn(async move {
        old.session_kill().await;
        tokio::time::sleep(Duration::from_millis(30)).await;
        drop(session);
    });
    tokio::task::yield_now().await;
    let t0 = std::time::Instant::now();
    assert_eq!(f.admit("l", &gs, 1, f.ticket()).await, Admit::Go);
    assert!(
        t0.elapsed() >= Duration::from_millis(30),
        "{:?}",
        t0.elapsed()
    );
    assert_eq!(gs[0].channels[1].relaying(), 0);
    closer.await.unwrap();
}

#[tokio::test(start_paused = true)]
async fn a_session_that_never_closes_delays_a_move_by_the_bound_only() {
    let f = Fence::default();
    let gs = vec![group(1), group(1)];
    assert_eq!(f.admit("l", &gs, 0, f.ticket()).await, Admit::Go);
    let _stuck = gs[0].channels[0].relaying_guard();
    let t0 = Instant::now();
    assert_eq!(f.admit("l", &gs, 1, f.ticket()).await, Admit::Go);
    let took = t0.elapsed();
    assert!(
        took >= FENCE_WAIT && took < FENCE_WAIT + Duration::from_millis(50),
        "{took:?}"
    );
    assert_eq!(f.serving(), Some(1));
}

#[tokio::test(start_paused = true)]
async fn in_fleet_mode_a_move_waits_for_the_fleets_grant() {
    let f = Arc::new(Fence::default());
    let gs = vec![group(1), group(1)];
    f.fleet.start(Duration::from_secs(4));
    // Nothing granted yet: held after the bound, the fleet task asked.
    let t0 = Instant::now();
    assert_eq!(f.admit("l", &gs, 0, f.ticket()).await, Admit::Held);
    assert_eq!(t0.elapsed(), Duration::from_secs(4));
    f.fleet_grant(0).await;
    assert_eq!(f.admit("l", &gs, 0, f.ticket()).await, Admit::Go);
    // A session on group 0; a connect to group 1 waits while the fleet
    // fences (the session is reset here) and goes once group 1 is granted.
    let session = gs[0].channels[0].relaying_guard();
    let old = Arc::clone(&gs[0].channels[0]);
    let closer = tokio::spawn(async move {
        old.session_kill().await;
        drop(session);
    });
    tokio::task::yield_now().await;
    let waiting = {
        let (f, gs) = (Arc::clone(&f), gs.clone());
        let t = f.ticket();
        tokio::spawn(async move { f.admit("l", &gs, 1, t).await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    assert_eq!(f.fleet_fence(&gs, Some(1)).await, (1, 0));
    closer.await.unwrap();
    assert_eq!(
        f.serving(),
        None,
        "nobody is admitted while the fleet fences"
    );
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(!waiting.is_finished());
    f.fleet_grant(1).await;
    assert_eq!(waiting.await.unwrap(), Admit::Go);
    // A connect to group 0 selected before that move is turned away.
    assert_eq!(f.admit("l", &gs, 0, 0).await, Admit::Stale);
    // Without the fleet task, the standalone fence decides again.
    f.fleet.stop();
    assert_eq!(f.admit("l", &gs, 0, f.ticket()).await, Admit::Go);
    assert_eq!(f.serving(), Some(0));
}

#[tokio::test(start_paused = true)]
async fn in_fleet_mode_nobody_selects_while_no_group_serves_here() {
    let f = Arc::new(Fence::default());
    // Standalone: the first connect moves the fence, nobody waits.
    assert_eq!(f.ticket_unless_fleet_fencing(), Some(0));
    f.fleet.start(Duration::from_secs(4));
    assert_eq!(f.ticket_unless_fleet_fencing(), None);
    let t0 = Instant::now();
    assert!(!f.fleet_settled().await);
    assert_eq!(t0.elapsed(), Duration::from_secs(4));
    let waiting = {
        let f = Arc::clone(&f);
        tokio::spawn(async move { f.fleet_settled().await })
    };
    tokio::time::sleep(Duration::from_millis(100)).await;
    f.fleet_grant(1).await;
    assert!(waiting.await.unwrap());
    assert_eq!(f.ticket_unless_fleet_fencing(), Some(f.ticket()));
    // Fencing (or fenced itself): nobody selects.
    let gs = vec![group(1), group(1)];
    f.fleet_fence(&gs, None).await;
    assert_eq!(f.ticket_unless_fleet_fencing(), None);
}
