use super::*;

#[test]
fn record_and_ack_round_trip_and_bad_values_are_errors() {
    let r = Record {
        epoch: 7,
        by: "h:1".into(),
        from: 0,
        to: 1,
        state: State::Hold,
        hold_ms: 9000,
        deadline_ms: 123,
    };
    assert_eq!(Record::decode(r.encode().as_bytes()), Ok(r));
    let a = Ack {
        epoch: 7,
        id: "h:2".into(),
        ended: 3,
    };
    assert_eq!(Ack::decode(a.encode().as_bytes()), Ok(a));
    for bad in [
        &b"{}"[..],
        b"nope",
        br#"{"epoch":1,"by":"x","from":0,"to":1,"state":"maybe","hold_ms":1,"deadline_ms":1}"#,
    ] {
        assert!(Record::decode(bad).is_err());
        assert!(Ack::decode(bad).is_err());
    }
}
