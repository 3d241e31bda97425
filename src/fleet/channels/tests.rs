use super::*;

#[test]
fn registrations_decode() {
    let r = Reg::decode("1/127.0.0.1:80", br#"{"weight":3}"#).unwrap();
    assert_eq!(
        (r.group, r.chan.to_string(), r.weight),
        (1, "127.0.0.1:80".into(), Some(3))
    );
    let r = Reg::decode("0/[::1]:80", b"{}").unwrap();
    assert_eq!((r.group, r.weight), (0, None));
}

#[test]
fn bad_registrations_are_one_line_errors() {
    let bad: &[(&str, &[u8])] = &[
        ("0/127.0.0.1:80", b"nope"),
        ("0/127.0.0.1:80", br#"{"weight":"x"}"#),
        ("0/127.0.0.1:80", br#"{"weight":10001}"#),
        ("0/127.0.0.1:80", br#"{"weight":1,"color":"red"}"#),
        ("x/127.0.0.1:80", b"{}"),
        ("+1/127.0.0.1:80", b"{}"),
        ("0/127.0.0.1", b"{}"),
        ("0", b"{}"),
        ("", b""),
    ];
    for (k, v) in bad {
        let e = Reg::decode(k, v).unwrap_err();
        assert!(!e.contains('\n'), "{k}: {e}");
    }
}
