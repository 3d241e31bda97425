use std::collections::HashSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, UNIX_EPOCH};

use super::*;
use crate::config::Host;
use crate::pool::Target;

fn record(server: bool) -> Record {
    Record {
        accepted: UNIX_EPOCH + Duration::from_millis(1_796_608_831_123),
        client: "[::1]:40000".parse().unwrap(),
        server: server.then(|| {
            let channel = Channel::new(
                "db101",
                Target {
                    host: Host::Name("db101".into()),
                    port: 3306,
                    addrs: vec![],
                },
                0,
                1,
                Arc::default(),
            );
            Server {
                group: Some(Arc::new(Group::new(
                    "backup",
                    crate::config::Policy::RoundRobin,
                    vec![Arc::clone(&channel)],
                ))),
                channel,
                group_index: 1,
                addr: Some(SocketAddr::from(([10, 0, 0, 1], 3306))),
            }
        }),
        wait_ms: 7,
        connect_ms: server.then_some(3),
        total_ms: 5007,
        first_byte_ms: Some(2),
        bytes_read: 212,
        bytes_uploaded: 9,
        termination: if server {
            Termination::Normal
        } else {
            Termination::Refused
        },
        actconn: 4,
        feconn: 3,
        beconn: 5,
        srv_conn: 2,
        retries: 1,
        backend_queue: 2,
        race: Race::RacerWon,
        route: None,
    }
}

#[test]
fn tcplog_has_haproxys_fields_in_order() {
    let mut s = String::new();
    tcplog_line(&mut s, "mysql-m0", &record(true));
    // The date is local time; everything around it is fixed.
    let (head, rest) = s.split_once(" [").unwrap();
    assert_eq!(head, "::1:40000");
    let (date, tail) = rest.split_once("] ").unwrap();
    assert_eq!(date.len(), "07/Dec/2026:02:00:31.123".len(), "{date}");
    assert!(date.ends_with(".123"), "{date}");
    assert_eq!(
        tail,
        "mysql-m0 mysql-m0/db101 7/3/5007 212 -- 4/3/5/2/1 0/2"
    );
    s.clear();
    tcplog_line(&mut s, "l", &record(false));
    assert!(
        s.ends_with("l l/<NOSRV> 7/-1/5007 212 SC 4/3/5/2/1 0/2"),
        "{s}"
    );
}

#[test]
fn json_has_the_same_fields_and_more() {
    let mut s = String::new();
    json_line(&mut s, "l", &record(true));
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["client_ip"], "::1");
    assert_eq!(v["client_port"], 40000);
    assert_eq!(v["server_name"], "db101");
    assert_eq!(v["server_target"], "db101:3306");
    assert_eq!(v["server_addr"], "10.0.0.1:3306");
    assert_eq!(v["group"], "backup");
    assert_eq!(v["group_index"], 1);
    assert_eq!(v["Tw"], 7);
    assert_eq!(v["Tc"], 3);
    assert_eq!(v["Tt"], 5007);
    assert_eq!(v["first_byte_ms"], 2);
    assert_eq!(v["termination_state"], "--");
    assert_eq!(v["race"], "racer_won");
    assert_eq!(v["retries"], 1);
    s.clear();
    json_line(&mut s, "l", &record(false));
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["server_name"], "<NOSRV>");
    assert_eq!(v["Tc"], -1);
    assert!(v["group"].is_null());
    assert!(
        v.get("route_key").is_none(),
        "no route fields unrouted: {v}"
    );
}

#[test]
fn a_routed_line_names_the_key_in_json_only() {
    let mut r = record(true);
    let (mut plain, mut s) = (String::new(), String::new());
    tcplog_line(&mut plain, "l", &r);
    r.route = Some(Box::new(RouteNote {
        key: Some("a.example.com".into()),
        source: "map",
        target: "backup".into(),
    }));
    tcplog_line(&mut s, "l", &r);
    assert_eq!(s, plain, "tcplog stays HAProxy's layout");
    s.clear();
    json_line(&mut s, "l", &r);
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert_eq!(v["route_key"], "a.example.com");
    assert_eq!(v["route_source"], "map");
    assert_eq!(v["route_target"], "backup");
    r.route = Some(Box::new(RouteNote {
        key: None,
        source: "default",
        target: "reject".into(),
    }));
    s.clear();
    json_line(&mut s, "l", &r);
    let v: serde_json::Value = serde_json::from_str(&s).unwrap();
    assert!(v["route_key"].is_null(), "{v}");
    assert_eq!(v["route_target"], "reject");
}

#[test]
fn utc_fallback_is_the_civil_date() {
    // 2026-12-07T02:00:31Z
    let t = format::utc_for_tests(1_796_608_831);
    assert_eq!(
        (t.year, t.month, t.day, t.hour, t.minute, t.second),
        (2026, 12, 7, 2, 0, 31)
    );
    let t = format::utc_for_tests(951_782_400); // 2000-02-29
    assert_eq!((t.year, t.month, t.day), (2000, 2, 29));
}

#[test]
fn termination_codes_are_two_letters_and_distinct() {
    let all = [
        Termination::Normal,
        Termination::ClientAbort,
        Termination::ServerAbort,
        Termination::IdleTimeout,
        Termination::KilledDown,
        Termination::KilledBackup,
        Termination::KilledFence,
        Termination::KilledOperator,
        Termination::ClientGoneConnecting,
        Termination::ClientGoneHeld,
        Termination::Refused,
        Termination::ConnectTimeout,
        Termination::LocalResource,
        Termination::HoldExpired,
        Termination::Rejected,
    ];
    let codes: HashSet<_> = all.iter().map(|t| t.code()).collect();
    assert_eq!(codes.len(), all.len());
    assert!(codes.iter().all(|c| c.len() == 2));
}

#[test]
fn a_target_is_a_file_syslog_or_stderr() {
    use crate::config::ConnLogTarget as T;
    assert_eq!(T::parse("stderr"), Ok(T::Stderr));
    assert_eq!(T::parse("syslog"), Ok(T::Syslog("/dev/log".into())));
    assert_eq!(T::parse("syslog:/x/log"), Ok(T::Syslog("/x/log".into())));
    assert_eq!(
        T::parse("/var/log/c.log"),
        Ok(T::File("/var/log/c.log".into()))
    );
    assert!(T::parse("").is_err());
    assert!(T::parse("syslog:").is_err());
}
