use super::*;

fn id(s: &str) -> Endpoint {
    Endpoint::parse(s).unwrap()
}

#[test]
fn channel_ids_parse_and_print_as_host_port() {
    assert_eq!(id("127.0.0.1:80").to_string(), "127.0.0.1:80");
    assert_eq!(id("[::1]:5432").to_string(), "[::1]:5432");
    assert_eq!(id("db.example:3306").to_string(), "db.example:3306");
    for bad in [
        "",
        "80",
        "host",
        "host:",
        ":80",
        "host:0",
        "host:99999",
        "a b:1",
    ] {
        assert!(Endpoint::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn every_op_round_trips_through_its_key_and_value() {
    let ops = [
        Op::Admin(id("10.0.0.1:80"), Admin::Disabled),
        Op::Admin(id("[::1]:80"), Admin::Drain),
        Op::Admin(id("h:1"), Admin::Enabled),
        Op::Weight(id("h:1"), WeightSet::Abs(0)),
        Op::Weight(id("h:1"), WeightSet::Abs(MAX_WEIGHT)),
        Op::Maxc(id("h:1"), 12),
        Op::Floor(0),
        Op::Floor(3),
        Op::Spin(SpinSet::Until(
            UNIX_EPOCH + Duration::from_millis(1_700_000_000_000),
        )),
        Op::Spin(SpinSet::Off),
    ];
    for op in ops {
        let v = op.value("node:1", 5);
        assert_eq!(Op::decode(&op.key(), v.as_bytes()), Ok(op.clone()), "{v}");
    }
}

#[test]
fn values_written_by_hand_decode_without_by_and_at() {
    assert_eq!(
        Op::decode("admin/h:1", br#"{"admin":"disabled"}"#),
        Ok(Op::Admin(id("h:1"), Admin::Disabled))
    );
    assert_eq!(Op::decode("floor", br#"{"group":0}"#), Ok(Op::Floor(0)));
}

#[test]
fn bad_keys_and_values_are_one_line_errors() {
    let bad: &[(&str, &[u8])] = &[
        ("admin/h:1", b"not json"),
        ("admin/h:1", br#"{"admin":"sideways"}"#),
        ("admin/h:1", br#"{"weight":1}"#),
        ("admin/h:1", br#"{"admin":"enabled","extra":1}"#),
        ("admin/nohost", br#"{"admin":"enabled"}"#),
        ("admin", br#"{"admin":"enabled"}"#),
        ("weight/h:1", br#"{"weight":10001}"#),
        ("weight/h:1", br#"{"weight":-1}"#),
        ("maxc/h:1", br#"{"maxc":"x"}"#),
        ("floor", br#"{"group":"one"}"#),
        ("floor/x", br#"{"group":1}"#),
        ("spin", br#"{}"#),
        ("other", br#"{}"#),
        ("", b""),
    ];
    for (k, v) in bad {
        let e = Op::decode(k, v).unwrap_err();
        assert!(!e.contains('\n'), "{k}: {e}");
    }
}

#[test]
fn a_key_applies_once_per_revision() {
    let k = b"/unit-test/svc/x/ops/floor";
    let a = Applied::default();
    assert!(a.is_new(k, 5));
    a.mark(k, 5);
    assert!(!a.is_new(k, 5));
    assert!(!a.is_new(k, 4));
    assert!(a.is_new(k, 6));
}
