use super::*;

const FALLBACK: Duration = Duration::from_secs(2);

fn leader(id: &str, since: u64) -> Leader {
    Leader {
        id: id.into(),
        since,
    }
}

fn verdict(by: &str, at: u64) -> Verdict {
    Verdict {
        state: crate::fleet::verdict::State::Up,
        reason: String::new(),
        lag: None,
        seq: 1,
        at,
        by: by.into(),
        fails: 0,
        answered: 0,
    }
}

#[test]
fn starts_alone_and_probing() {
    let s = Standing::new(FALLBACK);
    assert_eq!(s.role(), Role::Alone);
    assert!(s.probing());
    assert_eq!(s.fallback_at(Instant::now()), None);
}

#[test]
fn a_follower_probes_until_its_leaders_first_verdict() {
    let t0 = Instant::now();
    let mut s = Standing::new(FALLBACK);
    s.follow(leader("b", 100), t0);
    assert_eq!(s.role(), Role::Follower);
    assert!(s.probing(), "no verdict yet: keeps its own");
    assert!(!s.take(&verdict("a", 200)), "another prober's");
    assert!(!s.take(&verdict("b", 99)), "b's earlier term");
    assert!(s.probing());
    assert!(s.take(&verdict("b", 100)));
    assert!(!s.probing(), "synced: follows");
    // A new leader: the last verdicts stand, no probing in between.
    s.follow(leader("c", 300), t0);
    assert!(!s.probing());
    assert!(!s.take(&verdict("b", 301)));
}

#[test]
fn a_prober_probes_and_takes_no_verdicts() {
    let mut s = Standing::new(FALLBACK);
    s.won(leader("a", 1), Instant::now());
    assert_eq!(s.role(), Role::Prober);
    assert!(s.probing());
    assert!(!s.take(&verdict("a", 5)));
}

#[test]
fn etcd_lost_for_fallback_makes_it_alone_then_it_rejoins() {
    let t0 = Instant::now();
    let mut s = Standing::new(FALLBACK);
    s.follow(leader("b", 1), t0);
    assert!(s.take(&verdict("b", 1)));
    let ms = Duration::from_millis;
    assert!(!s.unreachable(t0 + ms(1999)), "not for long enough");
    assert_eq!(s.role(), Role::Follower);
    assert!(!s.probing());
    assert!(s.unreachable(t0 + ms(2000)));
    assert_eq!(s.role(), Role::Alone);
    assert!(s.probing());
    assert!(!s.unreachable(t0 + ms(5000)), "already alone");
    // Back: a follower again, but probing until the fleet's verdicts come.
    s.follow(leader("b", 9), t0 + ms(6000));
    assert!(s.probing());
    assert!(!s.take(&verdict("b", 1)), "stale: before the term");
    assert!(s.take(&verdict("b", 9)));
    assert!(!s.probing());
}

#[test]
fn contact_pushes_the_fallback_back() {
    let t0 = Instant::now();
    let mut s = Standing::new(FALLBACK);
    s.won(leader("a", 1), t0);
    s.contact(t0 + Duration::from_secs(1));
    assert_eq!(s.fallback_at(t0), Some(t0 + Duration::from_secs(3)));
    assert!(!s.unreachable(t0 + Duration::from_millis(2500)));
    assert!(s.unreachable(t0 + Duration::from_secs(3)));
}
