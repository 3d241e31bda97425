//! MySQL packet verdicts; garbage never panics.

use super::*;

fn greeting() -> Vec<u8> {
    let mut g = vec![0x0a];
    g.extend_from_slice(b"10.11.6-MariaDB\0");
    g.extend_from_slice(&[1, 0, 0, 0]); // conn id
    g.extend_from_slice(b"abcdefgh\0"); // auth data 1 + filler
    g.extend_from_slice(&[0xff, 0xf7]); // caps low (with PROTOCOL_41)
    g.extend_from_slice(&[33, 2, 0]); // charset, status
    g.extend_from_slice(&[0xff, 0x81]); // caps high (PLUGIN_AUTH)
    g.push(21);
    g.extend_from_slice(&[0; 10]);
    g.extend_from_slice(b"ijklmnopqrst\0mysql_native_password\0");
    g
}

#[test]
fn greeting_and_error_packets_are_judged() {
    let caps = parse_greeting(&greeting()).unwrap_or(0);
    assert!(caps & CLIENT_PROTOCOL_41 != 0 && caps & CLIENT_PLUGIN_AUTH != 0);
    let mut e = vec![0xff, 0x10, 0x04];
    e.extend_from_slice(b"#08004Too many connections");
    assert_eq!(
        parse_greeting(&e),
        Err("MySQL error 1040: Too many connections".into())
    );
    let mut e = vec![0xff, 0x69, 0x04];
    e.extend_from_slice(b"Host '10.0.0.1' is blocked\x1b]");
    assert_eq!(
        parse_greeting(&e),
        Err("MySQL error 1129: Host '10.0.0.1' is blocked\\x1b]".into())
    );
    assert_eq!(
        parse_greeting(&[0xff]),
        Err("MySQL error packet (truncated)".into())
    );
    assert!(parse_greeting(b"SSH-2.0").is_err_and(|e| e.starts_with("not a MySQL greeting")));
    assert_eq!(parse_greeting(b"\x0a5.0\0\x01"), Err("short banner".into()));
    assert!(parse_greeting(b"\x0anoterminator").is_err());
    assert!(parse_greeting(&[]).is_err());
}

#[test]
fn login_packet_has_user_and_empty_auth() {
    let p = handshake_response("chk", CLIENT_PLUGIN_AUTH, NATIVE, &[]);
    assert_eq!(p.get(32..36), Some(&b"chk\0"[..]));
    assert_eq!(p.get(36), Some(&0));
    assert!(p.ends_with(b"mysql_native_password\0"));
    assert_eq!(packet(1, &[COM_QUIT]), vec![1, 0, 0, 1, 1]);
}

#[test]
fn greeting_gives_the_scramble_and_plugin() {
    let g = parse_greeting_full(&greeting()).unwrap();
    assert_eq!(g.scramble.len(), 20);
    assert_eq!(g.plugin, "mysql_native_password");
}

#[test]
fn garbage_packets_never_panic() {
    let mut x: u32 = 12345;
    for len in 0..300 {
        let p: Vec<u8> = (0..len)
            .map(|_| {
                x = x.wrapping_mul(1_103_515_245).wrapping_add(12345);
                (x >> 16) as u8
            })
            .collect();
        let mut q = p.clone();
        if let Some(f) = q.first_mut() {
            *f = 0x0a;
        }
        let _ = parse_greeting(&p);
        let _ = parse_greeting(&q);
        let _ = parse_greeting_full(&q);
        let _ = auth_switch(&q);
        let _ = error_reason(&p);
        let _ = error_finding(&p);
    }
}

#[test]
fn errors_1040_and_1129_are_full_others_failed() {
    let err = |code: u16, msg: &[u8]| {
        let mut p = vec![0xff];
        p.extend_from_slice(&code.to_le_bytes());
        p.extend_from_slice(b"#08004");
        p.extend_from_slice(msg);
        p
    };
    assert_eq!(
        error_finding(&err(1040, b"Too many connections")),
        Finding::Full("MySQL error 1040: Too many connections".into())
    );
    assert!(matches!(
        error_finding(&err(1129, b"Host blocked")),
        Finding::Full(_)
    ));
    assert!(matches!(
        error_finding(&err(1045, b"Access denied")),
        Finding::Failed(_)
    ));
    assert!(matches!(error_finding(&[0xff, 0x10]), Finding::Failed(_)));
}

#[test]
fn scrambles_match_the_protocol_for_both_plugins() {
    let nonce: Vec<u8> = (1..=20).collect();
    let hex = |v: Vec<u8>| v.iter().map(|b| format!("{b:02x}")).collect::<String>();
    // Reference values from Python's hashlib, by the formulas in scramble().
    assert_eq!(
        hex(scramble(NATIVE, "s3cret", &nonce)),
        "f66fdd3ff855d9349a0ddb50c4a1a535fb412465"
    );
    assert_eq!(
        hex(scramble(CACHING_SHA2, "s3cret", &nonce)),
        "3f3a9a7786fd9be9a006eed686b4e6b76484fdc06dc15685df5f8793574b84fc"
    );
    assert!(scramble(NATIVE, "", &nonce).is_empty());
}

#[test]
fn auth_switch_names_only_the_plugins_we_speak() {
    let mut p = b"\xfecaching_sha2_password\0".to_vec();
    p.extend_from_slice(&[7u8; 20]);
    p.push(0);
    let (name, data) = auth_switch(&p).unwrap();
    assert_eq!((name, data.len()), (CACHING_SHA2, 20));
    assert!(
        auth_switch(b"\xfeclient_ed25519\0abc")
            .unwrap_err()
            .contains("client_ed25519")
    );
    assert!(auth_switch(b"\xfe").is_err());
}
