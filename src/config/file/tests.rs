use crate::atomic_enum::U8Enum;
use std::net::SocketAddr;
use std::time::Duration;

use super::*;
use crate::config::monitor::{Check, Probe};
use crate::config::{
    DEFAULT_CONNECT_TIMEOUT, DEFAULT_RESOLVE_INTERVAL, Failback, Host, Keepalive, LogFormat,
    Policy, resolved_loops, unresolved,
};

fn ok(text: &str) -> Config {
    match parse(text, &Overlay::default()) {
        Ok(c) => c,
        Err(e) => panic!("unexpected error: {e}\n{text}"),
    }
}

fn bad(text: &str) -> String {
    match parse(text, &Overlay::default()) {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e.0,
    }
}

const MIN: &str = "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - channels: [\"10.0.0.1:80\"]\n";

#[test]
fn minimal_file_gives_one_listener_with_defaults() {
    let c = ok(MIN);
    assert_eq!(c.listeners.len(), 1);
    let l = &c.listeners[0];
    assert_eq!(l.name, "a");
    assert_eq!(l.bind, "127.0.0.1:8000".parse().unwrap());
    assert_eq!(l.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(l.groups[0].policy, Policy::RoundRobin);
    assert_eq!(l.groups[0].channels[0].port, 80);
    assert_eq!(l.failback, Failback::Auto);
    assert!(l.monitor.is_none());
    assert_eq!(c.global.resolve_interval, DEFAULT_RESOLVE_INTERVAL);
}

#[test]
fn a_redis_check_with_its_password_file_and_role() {
    use crate::config::monitor::{Check, Password, RedisRole};
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("balance-redis-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let text = format!(
        "{MIN}    monitor:\n      checks:\n        - redis: {{ password_file: {}, role: replica, timeout: 1s }}\n        - redis: {{}}\n",
        pw.display()
    );
    let c = ok(&text);
    let checks = &c.listeners[0].monitor.as_ref().unwrap().checks;
    assert_eq!(
        checks,
        &[
            Check {
                probe: Probe::Redis {
                    password: Some(Password("s3cret".into())),
                    role: Some(RedisRole::Replica)
                },
                timeout: Some(Duration::from_secs(1))
            },
            Check {
                probe: Probe::Redis {
                    password: None,
                    role: None
                },
                timeout: None
            }
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn every_policy_word_is_a_group_policy() {
    for &p in Policy::ALL {
        let text = MIN.replace(
            "      - channels",
            &format!("      - policy: {}\n        channels", p.word()),
        );
        assert_eq!(ok(&text).listeners[0].groups[0].policy, p);
    }
}

#[test]
fn every_listener_key_is_read() {
    let c = ok(r#"
grace: 3s
max_conns: 100
metrics: "127.0.0.1:9100"
log_format: json
state_file: /tmp/st
user: nobody
pidfile: /tmp/pid
threads: 2
resolve_interval: 5s
listeners:
  - name: mysql-m0
    bind: "[::]:33306"
    connect_timeout: 500ms
    idle_timeout: 1m
    keepalive:
      client: { idle: 60s, interval: 10s, probes: 5 }
      server: { idle: 30, interval: 5, probes: 3 }
    source: "10.1.1.1"
    autodisable: true
    hash_failover: true
    race: 200ms
    spin: 2s
    failback: manual
    on_down: shutdown
    on_up: shutdown-backup
    groups:
      - policy: hash
        channels: ["db101:3306:10", { host: "db102", port: 3307, maxc: 5, weight: 3 }, "[::1]:3308"]
      - channels: ["db201"]
    monitor:
      interval: 5s
      rise: 3
      fall: 4
      jitter: 1s
      noenable: true
      nodisable: true
      checks:
        - connect: {}
        - http: { path: "/mysqlchk/?port=3306", port: 31337, expect: "200-299,404", host: h, body: ok, timeout: 1s }
        - mysql: { user: mon, read_only: false, max_lag: 5s }
        - command: { argv: ["/bin/true", "x"], pass: [0, 1] }
        - send_expect: { send: "PING\r\n", expect: "+PONG" }
"#);
    let g = &c.global;
    assert_eq!(g.grace, Duration::from_secs(3));
    assert_eq!(g.max_conns, Some(100));
    assert_eq!(g.metrics, Some("127.0.0.1:9100".parse().unwrap()));
    assert_eq!(g.log_format, LogFormat::Json);
    assert_eq!(g.state_file.as_deref(), Some(Path::new("/tmp/st")));
    assert_eq!(g.user.as_deref(), Some("nobody"));
    assert_eq!(g.pidfile.as_deref(), Some(Path::new("/tmp/pid")));
    assert_eq!(g.threads, 2);
    assert_eq!(g.resolve_interval, Duration::from_secs(5));
    let l = &c.listeners[0];
    assert_eq!(l.bind, "[::]:33306".parse().unwrap());
    assert!(l.dual_stack);
    assert_eq!(l.connect_timeout, Duration::from_millis(500));
    assert_eq!(l.idle_timeout, Some(Duration::from_secs(60)));
    assert_eq!(
        l.client_keepalive,
        Some(Keepalive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            probes: 5
        })
    );
    assert_eq!(l.server_keepalive.map(|k| k.probes), Some(3));
    assert_eq!(l.source, Some("10.1.1.1".parse().unwrap()));
    assert!(l.autodisable && l.hash_failover);
    assert_eq!(l.race, Some(Duration::from_millis(200)));
    assert_eq!(l.spin, Some(Duration::from_secs(2)));
    assert_eq!(l.failback, Failback::Manual);
    assert!(l.on_down_shutdown && l.on_up_shutdown_backup);
    assert_eq!(l.groups[0].policy, Policy::Hash);
    let ch = &l.groups[0].channels;
    assert_eq!((ch[0].to_string(), ch[0].maxc), ("db101:3306".into(), 10));
    assert_eq!(
        (ch[1].to_string(), ch[1].maxc, ch[1].weight),
        ("db102:3307".into(), 5, 3)
    );
    assert_eq!(ch[2].to_string(), "[::1]:3308");
    // A channel without a port takes the listener's.
    assert_eq!(l.groups[1].channels[0].port, 33306);
    let m = l.monitor.as_ref().unwrap();
    assert_eq!(
        (
            m.interval,
            m.rise,
            m.fall,
            m.jitter,
            m.noenable,
            m.nodisable
        ),
        (
            Duration::from_secs(5),
            3,
            4,
            Duration::from_secs(1),
            true,
            true
        )
    );
    assert_eq!(m.checks.len(), 5);
    assert_eq!(
        m.checks[0],
        Check {
            probe: Probe::Connect,
            timeout: None
        }
    );
    assert_eq!(
        m.checks[1],
        Check {
            probe: Probe::Http {
                path: "/mysqlchk/?port=3306".into(),
                port: Some(31337),
                host: Some("h".into()),
                expect: vec![(200, 299), (404, 404)],
                body: Some("ok".into())
            },
            timeout: Some(Duration::from_secs(1))
        }
    );
    assert_eq!(
        m.checks[3],
        Check {
            probe: Probe::Command {
                argv: vec!["/bin/true".into(), "x".into()],
                pass: vec![0, 1]
            },
            timeout: None
        }
    );
    assert_eq!(
        m.checks[4],
        Check {
            probe: Probe::SendExpect {
                send: b"PING\r\n".to_vec(),
                expect: b"+PONG".to_vec()
            },
            timeout: None
        }
    );
}

#[test]
fn command_line_globals_win_over_the_file() {
    let cli = Overlay {
        grace: Some(Duration::from_secs(1)),
        user: Some("cliuser".into()),
        ..Overlay::default()
    };
    let c = parse(
        &format!("grace: 7s\nuser: fileuser\nmax_conns: 5\n{MIN}"),
        &cli,
    )
    .unwrap();
    assert_eq!(c.global.grace, Duration::from_secs(1));
    assert_eq!(c.global.user.as_deref(), Some("cliuser"));
    assert_eq!(c.global.max_conns, Some(5));
}

#[test]
fn shipped_example_file_is_valid() {
    let text = include_str!("../../../contrib/balance.yaml");
    let c = ok(text);
    assert!(c.listeners.len() >= 2);
    let mysql = c.listeners.iter().find(|l| l.name == "mysql").unwrap();
    assert_eq!(mysql.groups.len(), 2);
    assert!(matches!(
        mysql.monitor.as_ref().unwrap().checks[0],
        Check {
            probe: Probe::Http {
                port: Some(31337),
                ..
            },
            ..
        }
    ));
}

/// Each bad document, the key its error must name and the line it must give.
#[test]
fn errors_name_the_key_and_line() {
    let l = |rest: &str| {
        format!(
            "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - channels: [\"10.0.0.1:80\"]\n{rest}"
        )
    };
    let cases: Vec<(String, &str, &str)> = vec![
        (l("    bogus: 1\n"), "bogus", "line 6"),
        (
            l("    monitor: { checks: [ { mysql: { max_lag: 5s } } ] }\n"),
            "need user",
            "",
        ),
        (
            l("    monitor: { checks: [ { redis: { role: primary } } ] }\n"),
            "primary",
            "line 6",
        ),
        (
            l("    monitor: { checks: [ { redis: { password_file: /nonexistent/pw } } ] }\n"),
            "redis password_file /nonexistent/pw",
            "",
        ),
        ("listenerz: []\n".into(), "listenerz", "line 1"),
        ("listeners: []\n".into(), "empty", "line 1"),
        (format!("{MIN}extra: 1\n"), "extra", "line 6"),
        (l("    connect_timeout: 5 parsecs\n"), "duration", "line 6"),
        (l("    connect_timeout: 0\n"), "connect_timeout", ""),
        (l("    idle_timeout: [1]\n"), "duration", "line 6"),
        (l("    race: -1\n"), "", "line 6"),
        (l("    autodisable: maybe\n"), "", "line 6"),
        (l("    failback: sometimes\n"), "sometimes", "line 6"),
        (l("    on_down: explode\n"), "explode", "line 6"),
        (l("    source: \"not-an-ip\"\n"), "not-an-ip", "line 6"),
        (
            l("    keepalive: { client: { idle: 0s, interval: 1s, probes: 1 } }\n"),
            "keepalive",
            "",
        ),
        (
            l("    keepalive: { client: { idle: 1s, interval: 1s, probes: 500 } }\n"),
            "500",
            "line 6",
        ),
        (l("    monitor: { checks: [] }\n"), "empty", "line 6"),
        (
            l("    monitor: { rise: 0, checks: [ { connect: {} } ] }\n"),
            "0",
            "line 6",
        ),
        (
            l("    monitor: { checks: [ { ping: {} } ] }\n"),
            "ping",
            "line 6",
        ),
        (
            l("    monitor: { checks: [ { http: { path: \"no-slash\" } } ] }\n"),
            "no-slash",
            "line 6",
        ),
        (
            l("    monitor: { checks: [ { http: { expect: \"700\" } } ] }\n"),
            "700",
            "line 6",
        ),
        (
            l("    monitor: { checks: [ { command: { argv: [\"true\"] } } ] }\n"),
            "absolute",
            "line 6",
        ),
        (
            l("    monitor: { interval: 1ms, checks: [ { connect: {} } ] }\n"),
            "monitor.interval",
            "",
        ),
        (MIN.replace("8000", "0"), "port", "line 3"),
        (MIN.replace("8000", "65536"), "65536", "line 3"),
        (
            MIN.replace("127.0.0.1:8000", "::1:8000"),
            "brackets",
            "line 3",
        ),
        (MIN.replace("127.0.0.1:8000", "8000"), "addr:port", "line 3"),
        (MIN.replace("name: a", "name: \"a b\""), "a b", "line 2"),
        (MIN.replace("[\"10.0.0.1:80\"]", "[]"), "empty", "line 5"),
        (
            MIN.replace("[\"10.0.0.1:80\"]", "[\"10.0.0.1:0\"]"),
            "10.0.0.1:0",
            "line 5",
        ),
        (
            MIN.replace("[\"10.0.0.1:80\"]", "[\"10.0.0.1:65536\"]"),
            "65536",
            "line 5",
        ),
        (
            MIN.replace("[\"10.0.0.1:80\"]", "[\"bad host!\"]"),
            "bad host!",
            "line 5",
        ),
        (
            MIN.replace("[\"10.0.0.1:80\"]", "[{ host: x, port: 0 }]"),
            "port",
            "line 5",
        ),
        (
            MIN.replace("[\"10.0.0.1:80\"]", "[{ host: x, wieght: 2 }]"),
            "wieght",
            "line 5",
        ),
        (
            MIN.replace("[\"10.0.0.1:80\"]", "[{ host: x, weight: 0 }]"),
            "0",
            "line 5",
        ),
        (
            MIN.replace("[\"10.0.0.1:80\"]", "[\"127.0.0.1:8000\"]"),
            "itself",
            "line 5",
        ),
        (
            MIN.replace(
                "      - channels",
                "      - policy: random\n        channels",
            ),
            "random",
            "line 5",
        ),
        (
            MIN.replace("groups:\n      - channels: [\"10.0.0.1:80\"]", "groups: []"),
            "empty",
            "line 4",
        ),
        (
            format!(
                "{MIN}  - name: a\n    bind: \"127.0.0.1:8001\"\n    groups: [ {{ channels: [x] }} ]\n"
            ),
            "duplicate listener name",
            "line 6",
        ),
        (
            format!(
                "{MIN}  - name: b\n    bind: \"127.0.0.1:8000\"\n    groups: [ {{ channels: [x] }} ]\n"
            ),
            "already used",
            "line 7",
        ),
        (format!("grace: soon\n{MIN}"), "soon", "line 1"),
        (
            format!("threads: 0\n{MIN}"),
            "threads: 0 is out of range (1-256)",
            "line 1",
        ),
        (
            format!("threads: x\n{MIN}"),
            "threads: \"x\" is not a whole number",
            "line 1",
        ),
        (
            format!("threads: 2.5\n{MIN}"),
            "2.5 is not a whole number",
            "line 1",
        ),
        (
            format!("max_conns: -5\n{MIN}"),
            "max_conns: -5 is out of range",
            "line 1",
        ),
        (
            format!("max_conns: 99999999999999999999999\n{MIN}"),
            "max_conns",
            "line 1",
        ),
        (
            "listeners:\n  - näme: a\n".into(),
            "unknown field `näme`",
            "line 2",
        ),
        (format!("log_format: xml\n{MIN}"), "xml", "line 1"),
        (
            format!("metrics: \"localhost\"\n{MIN}"),
            "localhost",
            "line 1",
        ),
        (
            format!("resolve_interval: 10ms\n{MIN}"),
            "resolve_interval",
            "",
        ),
        ("listeners: [ {\n".into(), "", "line"),
        ("- just\n- a list\n".into(), "", "line 1"),
        ("".into(), "", ""),
    ];
    for (text, key, line) in cases {
        let e = bad(&text);
        assert!(!e.contains('\n'), "multi-line error {e:?} for\n{text}");
        assert!(
            e.contains(key),
            "error {e:?} does not name {key:?} for\n{text}"
        );
        assert!(
            e.contains(line),
            "error {e:?} does not give {line:?} for\n{text}"
        );
    }
}

#[test]
fn names_resolving_to_their_own_listener_are_found() {
    let c = ok(&MIN.replace("10.0.0.1:80", "loop.example:8000"));
    let looped = |_: &Host, p: u16| vec![SocketAddr::from(([127, 0, 0, 1], p))];
    let e = resolved_loops(&c, looped).unwrap_err().to_string();
    assert!(
        e.contains("loop.example:8000") && e.contains("itself"),
        "{e}"
    );
    let elsewhere = |_: &Host, p: u16| vec![SocketAddr::from(([10, 0, 0, 1], p))];
    assert!(resolved_loops(&c, elsewhere).is_ok());
}

#[test]
fn billion_laughs_alias_bomb_is_rejected_fast() {
    let mut doc = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..9 {
        let prev = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev}]\n"
        ));
    }
    doc.push_str("listeners: *a8\n");
    let t = std::time::Instant::now();
    let e = bad(&doc);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(!e.is_empty());
}

#[test]
fn alias_bomb_inside_a_known_key_is_rejected_fast() {
    let mut doc = String::from(
        "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - channels: &a0 [\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\",\"x\"]\n",
    );
    for i in 1..9 {
        let prev = i - 1;
        doc.push_str(&format!(
            "      - channels: &a{i} [*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev},*a{prev}]\n"
        ));
    }
    let t = std::time::Instant::now();
    let e = bad(&doc);
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    assert!(!e.is_empty());
}

#[test]
fn deeply_nested_document_is_rejected_fast() {
    for (open, close) in [("[", "]"), ("{a: ", "}")] {
        let doc = format!(
            "listeners: {}{}\n",
            open.repeat(10_000),
            close.repeat(10_000)
        );
        let t = std::time::Instant::now();
        let e = bad(&doc);
        assert!(
            t.elapsed() < Duration::from_secs(2),
            "took {:?}",
            t.elapsed()
        );
        assert!(!e.contains('\n'));
    }
    // Block-style nesting too.
    let mut doc = String::from("listeners:\n");
    for i in 0..10_000usize {
        doc.push_str(&" ".repeat(i.min(2000)));
        doc.push_str("- \n");
    }
    let t = std::time::Instant::now();
    let _ = bad(&doc);
    assert!(
        t.elapsed() < Duration::from_secs(5),
        "took {:?}",
        t.elapsed()
    );
}

#[test]
fn files_over_one_mebibyte_are_refused_before_parsing() {
    let dir = std::env::temp_dir().join(format!("balance-yaml-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("big.yaml");
    let mut text = String::from(MIN);
    text.push_str(&"#".repeat(MAX_FILE_BYTES as usize));
    std::fs::write(&p, text).unwrap();
    let e = load(&p, &Overlay::default()).unwrap_err().to_string();
    assert!(e.contains("larger than 1 MiB"), "{e}");
    std::fs::write(&p, MIN).unwrap();
    assert!(load(&p, &Overlay::default()).is_ok());
    let e = load(&dir.join("missing.yaml"), &Overlay::default())
        .unwrap_err()
        .to_string();
    assert!(e.contains("cannot read"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn unresolvable_names_are_reported_as_warnings() {
    let c = ok(&MIN.replace("10.0.0.1:80", "nowhere.invalid:80"));
    let w = unresolved(&c, |_, _| Vec::new());
    assert_eq!(w.len(), 1);
    assert!(w[0].contains("nowhere.invalid:80"), "{}", w[0]);
    let w = unresolved(&ok(MIN), |_, _| Vec::new());
    assert!(w.is_empty(), "IP literals never need resolving");
}

#[test]
fn duplicate_keys_and_second_documents_are_errors() {
    let e = bad(&MIN.replace("    bind:", "    name: b\n    bind:"));
    assert!(e.contains("line 3"), "{e}");
    let e = bad(&format!("{MIN}---\n{MIN}"));
    assert!(!e.contains('\n'), "{e}");
}

/// Truncations and byte flips of the shipped example never panic, and any
/// error is one line.
#[test]
fn mangled_files_never_panic() {
    let text = include_str!("../../../contrib/balance.yaml");
    let bytes = text.as_bytes();
    let check = |b: &[u8]| {
        if let Ok(s) = std::str::from_utf8(b) {
            if let Err(e) = parse(s, &Overlay::default()) {
                assert!(!e.0.contains('\n'), "{e}");
            }
        }
    };
    for cut in (0..bytes.len()).step_by(7) {
        check(&bytes[..cut]);
    }
    let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
    let junk = b":-[]{}&*!|>'\"#%@`, \n\t0xZ";
    for _ in 0..400 {
        let mut b = bytes.to_vec();
        for _ in 0..3 {
            seed = seed
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            let pos = (seed >> 33) as usize % b.len();
            b[pos] = junk[(seed >> 20) as usize % junk.len()];
        }
        check(&b);
    }
}

/// The alias limits themselves (not the schema) stop an expansion: a
/// deserializer that accepts anything still fails fast.
#[test]
fn alias_replay_limits_stop_a_bomb_even_when_every_type_fits() {
    let mut doc = String::from(
        "a0: &a0 [\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\",\"lol\"]\n",
    );
    for i in 1..9 {
        let p = i - 1;
        doc.push_str(&format!(
            "a{i}: &a{i} [*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p},*a{p}]\n"
        ));
    }
    let t = std::time::Instant::now();
    let r = serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(&doc, options());
    assert!(r.is_err(), "a 9^9 expansion was accepted");
    assert!(
        t.elapsed() < Duration::from_secs(2),
        "took {:?}",
        t.elapsed()
    );
    // A small, legitimate use of anchors still works.
    let small = "a: &x [1, 2]\nb: *x\nc: *x\n";
    assert!(serde_saphyr::from_str_with_options::<serde::de::IgnoredAny>(small, options()).is_ok());
}

#[test]
fn fleet_key_is_read_and_checked() {
    assert_eq!(ok(MIN).global.fleet, None);
    let c = ok(&format!(
        "fleet:\n  endpoints: [\"http://127.0.0.1:2379\", \"http://10.0.0.2:2379\"]\n  prefix: /b\n  id: node-1\n  fallback: 2s\n{MIN}"
    ));
    let f = c.global.fleet.unwrap();
    assert_eq!(f.endpoints.len(), 2);
    assert_eq!((f.prefix.as_str(), f.id.as_deref()), ("/b", Some("node-1")));
    assert_eq!(f.fallback, Some(Duration::from_secs(2)));
    let c = ok(&format!(
        "fleet: {{ endpoints: [\"http://e:2379\"] }}\n{MIN}"
    ));
    assert_eq!(c.global.fleet.unwrap().prefix, "/balance");
    let c = ok(&format!("fleet: {{ discovery_srv: example.com }}\n{MIN}"));
    let f = c.global.fleet.unwrap();
    assert_eq!(
        (f.endpoints.len(), f.discovery_srv.as_deref()),
        (0, Some("example.com"))
    );
    for (fleet, want) in [
        ("{ endpoints: [] }", "must not be empty"),
        (
            "{ endpoints: [\"e:2379\"] }",
            "fleet.endpoints: \"e:2379\": must start with http://",
        ),
        (
            "{ endpoints: [\"http://e:2379\"], prefix: x }",
            "fleet.prefix: \"x\"",
        ),
        (
            "{ endpoints: [\"http://e:2379\"], fallback: 1ms }",
            "fleet.fallback: must be 100ms-1h",
        ),
        ("{ endpoints: [\"http://e:2379\"], ttl: 3 }", "ttl"),
        (
            "{ endpoints: [\"https://e:2379\"] }",
            "fleet.endpoints: \"https://e:2379\": https:// needs fleet.tls",
        ),
        (
            "{ endpoints: [\"https://e:2379\"], tls: { ca: /nonexistent/ca.pem } }",
            "fleet.tls.ca /nonexistent/ca.pem: No such file",
        ),
        (
            "{ endpoints: [\"https://e:2379\"], tls: { ca: /x, crt: /y } }",
            "crt",
        ),
        (
            "{ discovery_srv: example.com, user: bal }",
            "fleet.user needs password_file",
        ),
        (
            "{ discovery_srv: \"example com\" }",
            "fleet.discovery_srv: \"example com\"",
        ),
    ] {
        let e = bad(&format!("fleet: {fleet}\n{MIN}"));
        assert!(e.contains(want) && !e.contains('\n'), "{fleet}: {e}");
    }
}

/// `-m` and the file's `monitor` are one model in two grammars: every
/// action, option and global of the one is a key of the other, and back.
/// Names map: `-m send` is the file's `send_expect`; an action's value
/// (`command=`, `http=`, `send=`) is the file's `argv`, `path`, `send`;
/// `on-down`/`on-up` are the listener's `on_down`/`on_up`. The file's keys
/// are read from its parser's own list of expected fields.
#[test]
fn the_file_monitor_and_the_m_grammar_have_the_same_keys() {
    use crate::config::monitor_spec::{ACTION_OPTIONS, GLOBALS};
    fn sorted<S: AsRef<str>>(v: impl IntoIterator<Item = S>) -> Vec<String> {
        let mut v: Vec<String> = v.into_iter().map(|s| s.as_ref().to_string()).collect();
        v.sort();
        v
    }
    // The parser's "expected one of a, b, c" for an unknown key.
    let expected = |text: &str| -> Vec<String> {
        let e = bad(text);
        let list = e
            .split("expected one of ")
            .nth(1)
            .unwrap_or_else(|| panic!("no list of keys in {e:?}"));
        sorted(list.split(", ").map(|s| s.trim().trim_matches('`')))
    };
    let listener = |lines: &str, monitor: &str| {
        format!(
            "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n{lines}    monitor:\n{monitor}    groups:\n      - channels: [\"10.0.0.1:80\"]\n"
        )
    };
    let file_kind = |a: &str| if a == "send" { "send_expect" } else { a }.to_string();
    let action_value = |a: &str| match a {
        "command" => Some("argv"),
        "http" => Some("path"),
        "send" => Some("send"),
        _ => None,
    };
    let m_action = |a: &str| match a {
        "command" => "command=true".to_string(),
        "http" => "http=/".to_string(),
        "send" => "send=x".to_string(),
        a => a.to_string(),
    };
    // The kinds of check.
    assert_eq!(
        expected(&listener("", "      checks:\n        - zzz: {}\n")),
        sorted(ACTION_OPTIONS.iter().map(|(a, _)| file_kind(a)))
    );
    for (action, opts) in ACTION_OPTIONS {
        let kind = file_kind(action);
        let file_keys = expected(&listener(
            "",
            &format!("      checks:\n        - {kind}: {{ zzz: 1 }}\n"),
        ));
        let m_keys = sorted(opts.iter().copied().chain(action_value(action)));
        assert_eq!(file_keys, m_keys, "-m {action} and the file's {kind}");
        // Each of the file's keys is an option -m takes after that action
        // (the table is what -m's parser checks against).
        for k in file_keys
            .iter()
            .filter(|k| Some(k.as_str()) != action_value(action))
        {
            let spec = format!("{}:{k}=\u{1}", m_action(action));
            if let Err(e) = crate::config::monitor_spec::parse(&spec) {
                assert!(
                    !e.0.contains("unknown key") && !e.0.contains("does not apply"),
                    "-m {spec:?}: {e}"
                );
            }
        }
    }
    // The globals: the monitor's own keys, and two of the listener's.
    let monitor_keys = expected(&listener(
        "",
        "      zzz: 1\n      checks:\n        - connect: {}\n",
    ));
    let listener_keys = expected(&listener(
        "    zzz: 1\n",
        "      checks:\n        - connect: {}\n",
    ));
    let mut m_globals = Vec::new();
    for g in GLOBALS {
        // `nofence` is the file's `fence: false`.
        let as_file = g
            .strip_prefix("no")
            .filter(|_| *g == "nofence")
            .unwrap_or(g);
        let as_file = as_file.replace('-', "_");
        if listener_keys.contains(&as_file) && !monitor_keys.contains(&as_file) {
            assert!(
                matches!(*g, "on-down" | "on-up" | "fence" | "nofence"),
                "{g} is a listener key"
            );
        } else {
            m_globals.push(as_file);
        }
    }
    assert_eq!(
        sorted(monitor_keys.iter().filter(|k| *k != "checks")),
        sorted(m_globals)
    );
}

#[test]
fn the_mysql_check_reads_a_password_file_and_an_unknown_key_is_not_blamed_on_another() {
    use std::os::unix::fs::PermissionsExt;
    let dir = std::env::temp_dir().join(format!("balance-pwfile-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret\n").unwrap();
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let with = |check: &str| {
        format!(
            "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    monitor:\n      checks:\n        - mysql: {{ {check} }}\n    groups:\n      - channels: [\"10.0.0.1:80\"]\n"
        )
    };
    let c = ok(&with(&format!(
        "user: mon, password_file: {}",
        pw.display()
    )));
    let Some(Probe::Mysql { user, password, .. }) = c.listeners[0]
        .monitor
        .as_ref()
        .map(|m| m.checks[0].probe.clone())
    else {
        panic!("no mysql check");
    };
    assert_eq!(user.as_deref(), Some("mon"));
    assert!(password.is_some());
    let e = bad(&with(&format!("password_file: {}", pw.display())));
    assert!(e.contains("password_file needs user"), "{e}");
    let e = bad(&with("user: mon, nosuch: 1"));
    assert!(e.contains("unknown field `nosuch`"), "{e}");
    assert!(!e.contains("user: unknown"), "{e}");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn connection_log_at_the_top_is_every_listeners_default() {
    use crate::config::{ConnLogFormat, ConnLogTarget};
    let c = ok(&format!(
        "connection_log: {{target: /var/log/c.log}}\n{MIN}  - name: b\n    bind: \"127.0.0.1:8001\"\n    connection_log: {{target: \"syslog:/run/log\", format: json}}\n    groups:\n      - channels: [\"10.0.0.1:80\"]\n"
    ));
    let a = c.listeners[0].connection_log.as_ref().unwrap();
    assert_eq!(a.target, ConnLogTarget::File("/var/log/c.log".into()));
    assert_eq!(a.format, ConnLogFormat::Tcplog);
    let b = c.listeners[1].connection_log.as_ref().unwrap();
    assert_eq!(b.target, ConnLogTarget::Syslog("/run/log".into()));
    assert_eq!(b.format, ConnLogFormat::Json);
    assert!(ok(MIN).listeners[0].connection_log.is_none());
    let e = bad(&format!("connection_log: {{target: \"syslog:\"}}\n{MIN}"));
    assert!(
        e.contains("connection_log.target: syslog: needs a socket path"),
        "{e}"
    );
    let e = bad(&format!(
        "connection_log: {{target: x, format: clf}}\n{MIN}"
    ));
    assert!(e.contains("unknown variant `clf`"), "{e}");
}

#[test]
fn haproxy_socket_is_a_path_or_a_map_with_mode_and_group() {
    use crate::config::HaproxySocket;
    assert_eq!(ok(MIN).global.haproxy_socket, None);
    let c = ok(&format!("haproxy_socket: /run/h.sock\n{MIN}"));
    assert_eq!(
        c.global.haproxy_socket,
        Some(HaproxySocket::at("/run/h.sock".into()))
    );
    let c = ok(&format!(
        "haproxy_socket: {{path: /run/h.sock, mode: \"0660\", group: haproxy}}\n{MIN}"
    ));
    let h = c.global.haproxy_socket.unwrap();
    assert_eq!((h.mode, h.group.as_deref()), (0o660, Some("haproxy")));
    let c = ok(&format!(
        "haproxy_socket: {{path: /run/h.sock, mode: 640}}\n{MIN}"
    ));
    assert_eq!(c.global.haproxy_socket.unwrap().mode, 0o640);
    for (v, want) in [
        ("{path: /h, mode: \"0666\"}", "bad mode \"0666\""),
        ("{path: /h, mode: \"0400\"}", "bad mode \"0400\""),
        ("{path: /h, mode: \"rw\"}", "bad mode \"rw\""),
        ("{path: /h, owner: x}", "owner"),
        ("{mode: \"0600\"}", "path"),
        ("\"\"", "path must not be empty"),
        ("{path: /h, group: \"a b\"}", "bad group \"a b\""),
    ] {
        let e = bad(&format!("haproxy_socket: {v}\n{MIN}"));
        assert!(e.contains(want), "{v}: {e}");
    }
}

#[test]
fn proxy_protocol_per_group_and_channel_and_accept_proxy() {
    use crate::config::ProxyVersion;
    let text = "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    accept_proxy: [\"10.1.2.3/8\", \"::1\"]\n    groups:\n      - proxy_protocol: v2\n        channels: [\"10.0.0.1:80\", { host: 10.0.0.2, port: 80, proxy_protocol: v1 }, { host: 10.0.0.3, proxy_protocol: none }]\n      - channels: [\"10.0.0.4:80\"]\n";
    let l = &ok(text).listeners[0];
    let got: Vec<Vec<Option<ProxyVersion>>> = l
        .groups
        .iter()
        .map(|g| g.channels.iter().map(|c| c.proxy_protocol).collect())
        .collect();
    assert_eq!(
        got,
        vec![
            vec![Some(ProxyVersion::V2), Some(ProxyVersion::V1), None],
            vec![None]
        ]
    );
    assert_eq!(l.groups[0].proxy_protocol, Some(ProxyVersion::V2));
    assert_eq!(l.groups[1].proxy_protocol, None);
    let cidrs: Vec<String> = l.accept_proxy.iter().map(|c| c.to_string()).collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "::1/128"]);
    // What a channel created at runtime would send.
    let h = |s: &str| Host::Ip(s.parse().unwrap());
    assert_eq!(
        l.proxy_protocol_for(0, &h("10.0.0.2"), 80),
        Some(ProxyVersion::V1)
    );
    assert_eq!(
        l.proxy_protocol_for(0, &h("10.9.9.9"), 80),
        Some(ProxyVersion::V2)
    );
    assert_eq!(l.proxy_protocol_for(1, &h("10.9.9.9"), 80), None);
    assert_eq!(l.proxy_protocol_for(2, &h("10.9.9.9"), 80), None);
    assert!(ok(MIN).listeners[0].accept_proxy.is_empty());

    let e = bad(&MIN.replace(
        "      - channels",
        "      - proxy_protocol: v3\n        channels",
    ));
    assert!(
        e.contains("bad proxy_protocol \"v3\": use v1, v2 or none"),
        "{e}"
    );
    let e = bad(&format!("{MIN}    accept_proxy: [\"10.0.0.0/33\"]\n"));
    assert!(e.contains("prefix length must be 0-32"), "{e}");
    assert!(e.starts_with("line "), "{e}");
}
