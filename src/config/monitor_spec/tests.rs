use super::*;

fn ok(s: &str) -> MonitorSpec {
    match parse(s) {
        Ok(m) => m,
        Err(e) => panic!("{s:?} should parse: {e}"),
    }
}

fn err(s: &str) -> String {
    match parse(s) {
        Ok(m) => panic!("{s:?} should fail, got {m:?}"),
        Err(e) => e.0,
    }
}

#[test]
fn balance_fm_example_parses_with_its_options() {
    let m =
        ok("connect:timeout=0.4:command=/bin/checksvc -s %H -p %P >/dev/null:pass=0,2:interval=10");
    assert_eq!(m.interval, Duration::from_secs(10));
    assert_eq!((m.rise, m.fall), (2, 3));
    assert_eq!(
        m.checks,
        vec![
            Check {
                probe: Probe::Connect,
                timeout: Some(Duration::from_millis(400))
            },
            Check {
                probe: Probe::Command {
                    argv: ["/bin/sh", "-c", "/bin/checksvc -s %H -p %P >/dev/null"]
                        .map(String::from)
                        .to_vec(),
                    pass: vec![0, 2]
                },
                timeout: None
            },
        ]
    );
}

#[test]
fn balance_fm_form_without_interval_keeps_balance_fm_rate() {
    for spec in [
        "connect",
        "connect:timeout=0.4:nodisable",
        "command=/bin/true:pass=0,2:noenable",
    ] {
        let m = ok(spec);
        assert_eq!(m.interval, Duration::from_secs(60), "{spec}");
        assert_eq!(m.suspect_interval, Some(Duration::from_secs(2)), "{spec}");
    }
    // An interval given is kept as given.
    let m = ok("connect:interval=10");
    assert_eq!(
        (m.interval, m.suspect_interval),
        (Duration::from_secs(10), None)
    );
    // Our own keys: our default.
    for spec in [
        "http=/",
        "mysql",
        "send=x",
        "connect:fall=2",
        "connect:jitter=1",
    ] {
        let m = ok(spec);
        assert_eq!(
            (m.interval, m.suspect_interval),
            (Duration::from_secs(2), None),
            "{spec}"
        );
    }
}

#[test]
fn globals_anywhere_and_defaults() {
    let m = ok("rise=3:connect:fall=5:interval=500ms:jitter=0.1:noenable:nodisable");
    assert_eq!((m.rise, m.fall), (3, 5));
    assert_eq!(m.interval, Duration::from_millis(500));
    assert_eq!(m.jitter, Duration::from_millis(100));
    assert!(m.noenable && m.nodisable);
    let d = ok("connect:rise=2");
    assert_eq!(d.interval, Duration::from_secs(2));
    assert_eq!(d.suspect_interval, None);
    assert_eq!(d.jitter, Duration::ZERO);
    assert!(!d.on_down_shutdown && !d.on_up_shutdown_backup);
    let o = ok("connect:on-down=shutdown:on-up=shutdown-backup");
    assert!(o.on_down_shutdown && o.on_up_shutdown_backup);
}

#[test]
fn http_mysql_send_expect_and_escapes() {
    let m = ok(
        "http=/mysqlchk/?port=3306:port=31337:host=db101:expect=200,204-206:body=OK\\: up:timeout=1",
    );
    assert_eq!(
        m.checks,
        vec![Check {
            probe: Probe::Http {
                path: "/mysqlchk/?port=3306".into(),
                port: Some(31337),
                host: Some("db101".into()),
                expect: vec![(200, 200), (204, 206)],
                body: Some("OK: up".into())
            },
            timeout: Some(Duration::from_secs(1))
        }]
    );
    let m = ok("http=/health");
    assert!(
        matches!(&m.checks[0], Check { probe: Probe::Http { expect, .. }, .. } if expect == &vec![(200, 399)])
    );
    let m = ok("mysql:user=chk:timeout=2s");
    assert_eq!(
        m.checks,
        vec![Check {
            probe: Probe::Mysql {
                password: None,
                user: Some("chk".into()),
                read_only: None,
                max_lag: None
            },
            timeout: Some(Duration::from_secs(2))
        }]
    );
    let m = ok("mysql:user=chk:read_only=0:max_lag=5s");
    assert!(matches!(
        &m.checks[0],
        Check { probe: Probe::Mysql { read_only: Some(false), max_lag: Some(d), .. }, .. } if *d == Duration::from_secs(5)
    ));
    assert!(m.watches_replication());
    for bad in [
        "mysql:read_only=0",
        "mysql:max_lag=5s",
        "mysql:user=chk:read_only=2",
        "mysql:user=chk:read_only=0:read_only=1",
        "mysql:user=chk:max_lag=soon",
        "http=/:max_lag=5s",
    ] {
        assert!(crate::config::monitor_spec::parse(bad).is_err(), "{bad}");
    }
    let m = ok("send=PING\\r\\n:expect=+PONG:send=\\x00\\xff\\\\");
    assert_eq!(
        m.checks,
        vec![
            Check {
                probe: Probe::SendExpect {
                    send: b"PING\r\n".to_vec(),
                    expect: b"+PONG".to_vec()
                },
                timeout: None
            },
            Check {
                probe: Probe::SendExpect {
                    send: vec![0, 0xff, b'\\'],
                    expect: vec![]
                },
                timeout: None
            },
        ]
    );
}

#[test]
fn command_is_a_shell_line_with_balance_fm_escapes() {
    let argv = |s: &str| match ok(s).checks.last() {
        Some(Check {
            probe: Probe::Command { argv, .. },
            ..
        }) => argv.clone(),
        c => panic!("{c:?}"),
    };
    let sh = |l: &str| vec!["/bin/sh".to_string(), "-c".into(), l.into()];
    // balance.fm's own man-page example, unchanged (its %S is no
    // placeholder: balance.fm passes it on as written, so do we).
    assert_eq!(
        argv(
            "connect:timeout=0.4:command=/bin/checksvc -s %S -p %P >/dev/null:pass=0,2:interval=10"
        )
        .get(2)
        .map(String::as_str),
        Some("/bin/checksvc -s %S -p %P >/dev/null")
    );
    assert_eq!(
        argv("command=check_mysql -H %H >/dev/null 2>&1"),
        sh("check_mysql -H %H >/dev/null 2>&1")
    );
    assert_eq!(
        argv("command=nc -z %H %P && echo ok | grep -q ok"),
        sh("nc -z %H %P && echo ok | grep -q ok")
    );
    // get_token: \: is a colon, \t a tab, \X is X, \\ a backslash.
    assert_eq!(argv("command=a\\:b\\tc\\|d"), sh("a:b\tc|d"));
    assert_eq!(argv("command=x\\\\:pass=1"), sh("x\\"));
    assert_eq!(argv("command=/bin/echo 100%%"), sh("/bin/echo 100%%"));
}

#[test]
fn redis_with_its_password_file_and_role() {
    let m = ok("redis");
    assert_eq!(
        m.checks,
        vec![Check {
            probe: Probe::Redis {
                password: None,
                role: None
            },
            timeout: None
        }]
    );
    let dir = std::env::temp_dir().join(format!("balance-redis-spec-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let pw = dir.join("pw");
    std::fs::write(&pw, "s3cret:x\n").unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o600)).unwrap();
    let m = ok(&format!(
        "redis:password_file={}:role=master:timeout=1s",
        pw.display()
    ));
    assert_eq!(
        m.checks,
        vec![Check {
            probe: Probe::Redis {
                password: Some(super::super::monitor::Password("s3cret:x".into())),
                role: Some(RedisRole::Master)
            },
            timeout: Some(Duration::from_secs(1))
        }]
    );
    for (spec, role) in [
        ("redis:role=replica", RedisRole::Replica),
        ("redis:role=slave", RedisRole::Replica),
    ] {
        assert!(
            matches!(&ok(spec).checks[0], Check { probe: Probe::Redis { role: Some(r), .. }, .. } if *r == role),
            "{spec}"
        );
    }
    // Readable by others: refused, like the mysql check's.
    std::fs::set_permissions(&pw, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = err(&format!("redis:password_file={}", pw.display()));
    assert!(e.contains("readable by group or others"), "{e}");
    std::fs::remove_dir_all(&dir).unwrap();
    for (spec, want) in [
        ("redis=x", "takes no value"),
        (
            "redis:role=primary",
            "bad role \"primary\": use master or replica",
        ),
        ("redis:role=master:role=replica", "duplicate \"role\""),
        ("redis:user=x", "does not apply to redis"),
        ("mysql:user=x:role=master", "does not apply to mysql"),
        ("role=master", "before any action"),
        (
            "redis:password_file=/nonexistent/pw",
            "password_file /nonexistent/pw",
        ),
    ] {
        let e = err(spec);
        assert!(e.contains(want), "{spec:?}: {e:?} should contain {want:?}");
    }
}

#[test]
fn errors_are_one_line_and_name_the_token() {
    let cases: &[(&str, &str)] = &[
        ("", "empty"),
        ("timeout=1:connect", "before any action"),
        ("pass=0", "before any action"),
        ("connect:bogus=1", "unknown key \"bogus\""),
        ("frobnicate", "unknown key"),
        ("connect:interval=abc", "bad interval"),
        ("connect:interval=0", "below 10ms"),
        ("connect:rise=0", "bad rise"),
        ("connect:fall=x", "bad fall"),
        ("connect:timeout=0", "positive"),
        ("connect:pass=0", "does not apply to connect"),
        ("command=/bin/x:pass=256", "bad pass"),
        ("command=", "empty command"),
        ("command=  ", "empty command"),
        ("http=health", "must start with /"),
        ("http=/:port=0", "bad port"),
        ("http=/:port=70000", "bad port"),
        ("http=/:expect=600", "bad expect"),
        ("http=/:expect=300-200", "bad expect"),
        ("mysql=x", "takes no value"),
        ("mysql:user=", "bad user"),
        ("send=", "empty send"),
        ("send=a\\q", "bad escape"),
        ("send=\\xZZ", "bad \\x"),
        ("connect:rise=2:rise=3", "duplicate \"rise\""),
        ("connect:timeout=1:timeout=2", "duplicate"),
        ("connect:on-down=reboot", "bad on-down"),
        ("rise=2:fall=3", "no check action"),
        ("connect:=1", "empty key"),
        ("http", "needs a value"),
    ];
    for (spec, want) in cases {
        let e = err(spec);
        assert!(e.contains(want), "{spec:?}: {e:?} should contain {want:?}");
        assert!(!e.contains('\n'), "{spec:?}: multi-line error {e:?}");
    }
}

#[test]
fn garbage_never_panics() {
    // A small deterministic generator over a spec-flavoured alphabet.
    let alphabet: Vec<char> = "cmdhtpsu=:\\%'\" >|&$-,./0129xrnHPGCÿ\u{0}\n"
        .chars()
        .chain("connect command= http= mysql send= expect= timeout= interval= pass= port= user= rise= fall=".chars())
        .collect();
    let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
    for _ in 0..20_000 {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        let len = (x % 60) as usize;
        let mut s = String::new();
        let mut y = x;
        for _ in 0..len {
            y = y.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            s.push(alphabet[(y >> 33) as usize % alphabet.len()]);
        }
        let _ = parse(&s);
    }
    for s in [
        "\\",
        "\\:",
        ":::",
        "=",
        "send=\\x",
        "send=\\x1",
        "command=''",
        "http=/:expect=,",
        "command=\"\"",
    ] {
        let _ = parse(s);
    }
}
