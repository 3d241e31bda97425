use super::*;
use std::time::Duration;

fn ch(host: &str, port: u16, maxc: u32) -> ChannelConfig {
    ChannelConfig {
        name: String::new(),
        host: match host.parse::<IpAddr>() {
            Ok(ip) => Host::Ip(ip),
            Err(_) => Host::Name(host.to_string()),
        },
        port,
        maxc,
        weight: 1,
    }
}

#[test]
fn durations_accept_seconds_fractions_and_humantime() {
    let ok = [
        ("5", Duration::from_secs(5)),
        ("0.5", Duration::from_millis(500)),
        ("500ms", Duration::from_millis(500)),
        ("2s", Duration::from_secs(2)),
        ("1m", Duration::from_secs(60)),
        ("0", Duration::ZERO),
    ];
    for (s, d) in ok {
        assert_eq!(parse_duration(s), Ok(d), "{s}");
    }
    for bad in ["", "x", "1.2.3", "-1", "5 parsecs", "99999999999999999999"] {
        assert!(parse_duration(bad).is_err(), "{bad}");
    }
}

#[test]
fn channel_forms_parse_to_host_port_and_maxc() {
    let table: &[(&str, ChannelConfig)] = &[
        ("db1", ch("db1", 3306, 0)),
        ("db1:3307", ch("db1", 3307, 0)),
        ("db1:3307:16", ch("db1", 3307, 16)),
        ("db1::16", ch("db1", 3306, 16)),
        ("127.0.0.1", ch("127.0.0.1", 3306, 0)),
        ("127.0.0.1:1", ch("127.0.0.1", 1, 0)),
        ("10.0.0.1:65535:1", ch("10.0.0.1", 65535, 1)),
        ("[::1]:3306:4", ch("::1", 3306, 4)),
        ("[::1]:80", ch("::1", 80, 0)),
        ("[::1]", ch("::1", 3306, 0)),
        ("[::1]::7", ch("::1", 3306, 7)),
        ("[2001:db8::1]:80:10", ch("2001:db8::1", 80, 10)),
        // maxc 0 means unlimited, like balance.
        ("a::0", ch("a", 3306, 0)),
        (
            "my-host_1.example.com:81",
            ch("my-host_1.example.com", 81, 0),
        ),
    ];
    for (tok, want) in table {
        assert_eq!(parse_channel(tok, 3306).as_ref(), Ok(want), "{tok}");
    }
}

#[test]
fn channel_errors_name_the_token_and_the_reason() {
    let table: &[(&str, &str)] = &[
        ("db1:80:x", "bad channel \"db1:80:x\": maxc is not a number"),
        ("db1:80:", "bad channel \"db1:80:\": empty maxc"),
        (
            "db1:80:-1",
            "bad channel \"db1:80:-1\": maxc is not a number",
        ),
        ("", "bad channel \"\": empty"),
        (":80", "bad channel \":80\": empty host"),
        ("::1:3306", "bad channel \"::1:3306\": empty host"),
        (
            "fe80::1:3306",
            "bad channel \"fe80::1:3306\": too many \":\" (IPv6 addresses go in brackets: [::1]:port)",
        ),
        ("[::1", "bad channel \"[::1\": missing \"]\""),
        (
            "[db1]:80",
            "bad channel \"[db1]:80\": not an IPv6 address in brackets",
        ),
        (
            "[::1]x",
            "bad channel \"[::1]x\": expected \":\" after \"]\"",
        ),
        (
            "db1:70000",
            "bad channel \"db1:70000\": port 70000 is out of range (1-65535)",
        ),
        (
            "db1:0",
            "bad channel \"db1:0\": port 0 is out of range (1-65535)",
        ),
        (
            "db1:nosuchservice",
            "bad channel \"db1:nosuchservice\": unknown service \"nosuchservice\"",
        ),
        (
            "dß1:80",
            "bad channel \"dß1:80\": \"dß1\" is not a valid host name",
        ),
        (
            "db1..x",
            "bad channel \"db1..x\": \"db1..x\" is not a valid host name",
        ),
        (
            "a b",
            "bad channel \"a b\": \"a b\" is not a valid host name",
        ),
    ];
    for (tok, want) in table {
        assert_eq!(
            parse_channel(tok, 3306),
            Err(BadValue(want.to_string())),
            "{tok}"
        );
    }
}
