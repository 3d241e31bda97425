use super::*;

#[tokio::test(start_paused = true)]
async fn newcomers_evict_the_holder_waiting_longest_never_a_busy_one() {
    let slots = Slots::new(3, Duration::ZERO);
    let a = slots.acquire().unwrap();
    tokio::time::advance(Duration::from_millis(10)).await;
    let b = slots.acquire().unwrap();
    tokio::time::advance(Duration::from_millis(10)).await;
    let c = slots.acquire().unwrap();
    a.busy();
    // Full: b waited longest among the waiting ones.
    let d = slots.acquire().unwrap();
    assert_eq!(slots.held(), 3);
    assert!(b.evicted.is_cancelled());
    assert!(!a.evicted.is_cancelled() && !c.evicted.is_cancelled());
    // A holder waiting again counts from then: c is now the oldest.
    tokio::time::advance(Duration::from_millis(10)).await;
    d.waiting();
    let _e = slots.acquire().unwrap();
    assert!(c.evicted.is_cancelled() && !d.evicted.is_cancelled());
    // Evicted holders dropping later free nothing twice.
    drop(b);
    drop(c);
    assert_eq!(slots.held(), 3);
    drop(d);
    assert_eq!(slots.held(), 2);
}

#[tokio::test(start_paused = true)]
async fn all_busy_or_within_grace_refuses_the_newcomer() {
    let slots = Slots::new(2, Duration::from_secs(1));
    let a = slots.acquire().unwrap();
    let _b = slots.acquire().unwrap();
    assert!(slots.acquire().is_none(), "both within their grace");
    tokio::time::advance(Duration::from_millis(1500)).await;
    a.busy();
    let c = slots.acquire().unwrap();
    assert!(!a.evicted.is_cancelled());
    c.busy();
    assert!(slots.acquire().is_none(), "all busy");
    drop(a);
    assert!(slots.acquire().is_some());
}

#[tokio::test(start_paused = true)]
async fn a_partial_holder_goes_first_and_without_grace() {
    let slots = Slots::new(2, Duration::from_secs(1));
    let idle = slots.acquire().unwrap();
    tokio::time::advance(Duration::from_secs(5)).await;
    let trickler = slots.acquire().unwrap();
    trickler.partial();
    // The idle one waited longer and past the grace, but the trickler goes.
    let _new = slots.acquire().unwrap();
    assert!(trickler.evicted.is_cancelled() && !idle.evicted.is_cancelled());
    // A busy holder stays busy when marked partial.
    idle.busy();
    idle.partial();
    assert!(slots.acquire().is_none());
}

#[tokio::test(start_paused = true)]
async fn a_proven_newcomer_evicts_a_never_answered_holder_within_its_grace() {
    let slots = Slots::new(3, Duration::from_secs(1));
    let a = slots.acquire().unwrap();
    tokio::time::advance(Duration::from_millis(10)).await;
    let b = slots.acquire().unwrap();
    tokio::time::advance(Duration::from_millis(10)).await;
    let c = slots.acquire().unwrap();
    // a was answered once and waits again: within the grace it stays.
    a.busy();
    a.waiting();
    assert!(slots.acquire().is_none(), "all within their grace");
    let d = slots
        .acquire_now()
        .expect("a never-answered holder gives way");
    assert!(b.evicted.is_cancelled() && !a.evicted.is_cancelled());
    c.busy();
    d.busy();
    assert!(
        slots.acquire_now().is_none(),
        "busy holders and answered ones within the grace are never evicted"
    );
    tokio::time::advance(Duration::from_millis(1500)).await;
    let _e = slots.acquire_now().expect("past the grace");
    assert!(a.evicted.is_cancelled());
}
