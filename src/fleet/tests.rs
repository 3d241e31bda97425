use super::*;

#[test]
fn timing_derives_from_the_interval() {
    let ms = Duration::from_millis;
    let t = Timing::of(ms(500), None);
    assert_eq!((t.ttl, t.fallback), (Duration::from_secs(2), ms(1500)));
    let t = Timing::of(Duration::from_secs(5), Some(ms(700)));
    assert_eq!(
        (t.ttl, t.keepalive, t.fallback),
        (Duration::from_secs(15), Duration::from_secs(5), ms(700))
    );
    let t = Timing::of(ms(100), None);
    assert_eq!(
        (t.ttl, t.fallback),
        (Duration::from_secs(2), Duration::from_secs(1))
    );
    assert_eq!(Timing::of(ms(500), Some(ms(900))).check, ms(300));
    assert_eq!(Timing::of(ms(500), Some(ms(60))).check, ms(100));
    assert_eq!(Timing::of(Duration::from_secs(2), None).check, MAX_REQUEST);
    // Whole seconds.
    assert_eq!(Timing::of(ms(1100), None).ttl, Duration::from_secs(4));
}
