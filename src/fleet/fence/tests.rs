use super::*;

#[test]
fn values_round_trip_and_bad_ones_say_what_they_are() {
    let d = Decision {
        group: 1,
        by: "a:1".into(),
        at: 5,
    };
    let v = serde_json::to_vec(&d).unwrap();
    assert_eq!(Decision::decode(&v).unwrap(), d);
    let a = Ack {
        id: "b:2".into(),
        rev: 42,
        reset: 3,
        at: 7,
    };
    let v = serde_json::to_vec(&a).unwrap();
    assert_eq!(Ack::decode(&v).unwrap(), a);
    assert!(
        Decision::decode(b"{\"group\":-1}")
            .unwrap_err()
            .starts_with("bad fence record")
    );
    assert!(
        Ack::decode(b"nope")
            .unwrap_err()
            .starts_with("bad fence acknowledgement")
    );
}

#[test]
fn a_cut_off_member_fences_itself_before_the_others_may_go_on_without_it() {
    for ms in [100, 500, 2000] {
        let t = Timing::of(Duration::from_millis(ms), Some(Duration::from_secs(1)));
        // The others wait for its lease (one TTL after its last renewal);
        // it fences itself well before, and a connect waits past both.
        assert!(self_fence_after(&t) + FENCE_WAIT <= t.ttl, "{t:?}");
        assert!(grant_wait(&t) > t.ttl, "{t:?}");
        // Renewed several times within the self-fence delay.
        assert!(t.ttl / 6 * 3 <= self_fence_after(&t), "{t:?}");
    }
}
