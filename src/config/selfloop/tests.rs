use super::*;

#[test]
fn self_loops_are_detected_for_literal_loopback_and_wildcard_binds() {
    let ch = |h: &str, port: u16| ChannelConfig {
        name: String::new(),
        host: match h.parse() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(h.into()),
        },
        port,
        maxc: 0,
        weight: 1,
    };
    let b = |s: &str| s.parse::<SocketAddr>().unwrap();
    assert!(is_self_loop(b("10.0.0.5:80"), &ch("10.0.0.5", 80)));
    assert!(is_self_loop(b("0.0.0.0:80"), &ch("127.0.0.2", 80)));
    assert!(is_self_loop(b("127.0.0.1:80"), &ch("127.0.0.1", 80)));
    assert!(is_self_loop(b("[::]:80"), &ch("::1", 80)));
    assert!(is_self_loop(b("0.0.0.0:80"), &ch("localhost", 80)));
    assert!(!is_self_loop(b("0.0.0.0:80"), &ch("127.0.0.1", 81)));
    assert!(!is_self_loop(b("10.0.0.5:80"), &ch("127.0.0.1", 80)));
    assert!(!is_self_loop(b("10.0.0.5:80"), &ch("10.0.0.6", 80)));
    assert!(!is_self_loop(b("0.0.0.0:80"), &ch("db1", 80)));
    assert!(!is_self_loop(b("127.0.0.1:80"), &ch("127.0.0.2", 80)));
    assert!(is_self_loop(b("127.0.0.1:80"), &ch("0.0.0.0", 80)));
    assert!(is_self_loop(b("127.0.0.1:80"), &ch("::ffff:127.0.0.1", 80)));
}
