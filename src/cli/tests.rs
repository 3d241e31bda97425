use super::*;

use crate::config::selfloop::is_self_loop_addr;
use crate::config::{ChannelConfig, Failback, Host, ListenerConfig};
use rand::rngs::StdRng;
use rand::{RngExt, SeedableRng};

/// Parse `balance ARGS…` and return the one listener of a run invocation.
fn run(args: &[&str]) -> (Global, ListenerConfig) {
    match parse(std::iter::once("balance").chain(args.iter().copied())) {
        Ok(Parsed::Invocation(inv)) => match *inv {
            Invocation::Run(mut c) => {
                assert_eq!(c.listeners.len(), 1, "{args:?}");
                let l = c.listeners.remove(0);
                (c.global, l)
            }
            other => panic!("{args:?}: expected a run invocation, got {other:?}"),
        },
        Ok(Parsed::Print(t)) => panic!("{args:?}: expected a run invocation, got text {t:?}"),
        Err(e) => panic!("{args:?}: unexpected error: {e}"),
    }
}

/// Parse `balance ARGS…` into its listener, names left out (compared with
/// unnamed groups below; `command_line_groups_and_channels_get_the_default_names`
/// checks them).
fn listener(args: &[&str]) -> ListenerConfig {
    let mut l = run(args).1;
    for g in &mut l.groups {
        g.name.clear();
        for c in &mut g.channels {
            c.name.clear();
        }
    }
    l
}

#[test]
fn command_line_groups_and_channels_get_the_default_names() {
    let l = run(&["8080", "a", "b:81", "a", "!", "[::1]:5"]).1;
    let names: Vec<(&str, Vec<&str>)> = l
        .groups
        .iter()
        .map(|g| {
            let chans = g.channels.iter().map(|c| c.name.as_str()).collect();
            (g.name.as_str(), chans)
        })
        .collect();
    assert_eq!(
        names,
        [
            ("group0", vec!["a-8080", "b-81", "a-8080-2"]),
            ("group1", vec!["__1-5"])
        ]
    );
}

/// Parse `balance ARGS…`, expect a usage error and return its message.
fn bad(args: &[&str]) -> String {
    match parse(std::iter::once("balance").chain(args.iter().copied())) {
        Err(UsageError(m)) => {
            assert!(!m.contains('\n'), "{args:?}: error is not one line: {m:?}");
            assert!(!m.is_empty(), "{args:?}: empty error");
            m
        }
        Ok(Parsed::Invocation(i)) => panic!("{args:?}: expected an error, got {i:?}"),
        Ok(Parsed::Print(t)) => panic!("{args:?}: expected an error, got text {t:?}"),
    }
}

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
        proxy_protocol: None,
    }
}

fn rr(channels: Vec<ChannelConfig>) -> GroupConfig {
    GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels,
    }
}

fn hash(channels: Vec<ChannelConfig>) -> GroupConfig {
    GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::Hash,
        proxy_protocol: None,
        channels,
    }
}

fn services_file_has(name: &str) -> bool {
    std::fs::read_to_string("/etc/services")
        .map(|t| {
            t.lines()
                .any(|l| l.split_whitespace().next() == Some(name) && l.contains("/tcp"))
        })
        .unwrap_or(false)
}

#[test]
fn channel_errors_reach_the_command_line_unchanged() {
    // Through the whole command line: same message.
    assert_eq!(
        bad(&["3306", "db1:80:x"]),
        "bad channel \"db1:80:x\": maxc is not a number"
    );
}

#[test]
fn service_names_work_for_channel_and_listen_ports() {
    if services_file_has("mysql") {
        assert_eq!(parse_channel("db1:mysql", 1), Ok(ch("db1", 3306, 0)));
        assert_eq!(parse_channel("db1:mysql:3", 1), Ok(ch("db1", 3306, 3)));
    }
    if services_file_has("pop3") {
        let l = listener(&["pop3", "mail1"]);
        assert_eq!(l.bind.port(), 110);
        // The default backend port is the listen port, also by name.
        assert_eq!(l.groups, vec![rr(vec![ch("mail1", 110, 0)])]);
    }
}

#[test]
fn groups_split_on_bang_and_percent() {
    let l = listener(&["8080", "a", "b:81"]);
    assert_eq!(l.bind, "0.0.0.0:8080".parse().unwrap());
    assert_eq!(l.name, "balance:8080");
    assert_eq!(l.groups, vec![rr(vec![ch("a", 8080, 0), ch("b", 81, 0)])]);

    let l = listener(&["8080", "a", "!", "b", "c"]);
    assert_eq!(
        l.groups,
        vec![
            rr(vec![ch("a", 8080, 0)]),
            rr(vec![ch("b", 8080, 0), ch("c", 8080, 0)])
        ]
    );

    // `%` marks the group it closes as hash.
    let l = listener(&["8080", "a", "b", "%", "c", "!", "d"]);
    assert_eq!(
        l.groups,
        vec![
            hash(vec![ch("a", 8080, 0), ch("b", 8080, 0)]),
            rr(vec![ch("c", 8080, 0)]),
            rr(vec![ch("d", 8080, 0)])
        ]
    );

    // A trailing `%` marks the last group hash without starting a new one.
    let l = listener(&["8080", "a", "!", "b", "c", "%"]);
    assert_eq!(
        l.groups,
        vec![
            rr(vec![ch("a", 8080, 0)]),
            hash(vec![ch("b", 8080, 0), ch("c", 8080, 0)])
        ]
    );
    let l = listener(&["8080", "a", "%"]);
    assert_eq!(l.groups, vec![hash(vec![ch("a", 8080, 0)])]);
}

#[test]
fn policy_option_sets_the_groups_not_closed_by_percent() {
    let lc = |channels| GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::LeastConn,
        proxy_protocol: None,
        channels,
    };
    let l = listener(&[
        "--policy",
        "leastconn",
        "8080",
        "a",
        "b",
        "%",
        "c",
        "!",
        "d",
    ]);
    assert_eq!(
        l.groups,
        vec![
            hash(vec![ch("a", 8080, 0), ch("b", 8080, 0)]),
            lc(vec![ch("c", 8080, 0)]),
            lc(vec![ch("d", 8080, 0)])
        ]
    );
    let l = listener(&["--policy=rr", "8080", "a"]);
    assert_eq!(l.groups, vec![rr(vec![ch("a", 8080, 0)])]);
    let l = listener(&["--policy", "hash", "8080", "a", "!", "b"]);
    assert_eq!(
        l.groups,
        vec![hash(vec![ch("a", 8080, 0)]), hash(vec![ch("b", 8080, 0)])]
    );
    for (args, want) in [
        (
            &["--policy", "lc", "8080", "a"][..],
            "bad --policy \"lc\": use rr, leastconn or hash",
        ),
        (
            &["--policy", "RR", "8080", "a"][..],
            "bad --policy \"RR\": use rr, leastconn or hash",
        ),
        (
            &["--config", "f.yaml", "--policy", "leastconn"][..],
            "--policy cannot be used with --config: set it per listener in the file",
        ),
    ] {
        assert_eq!(bad(args), want, "{args:?}");
    }
}

#[test]
fn forms_balance_fm_accepts() {
    // A port alone (balance.fm's usage example): channels come with `create`.
    let l = listener(&["8080"]);
    assert_eq!(l.groups, vec![rr(vec![])]);
    // A trailing `!`: accepted; the group it opens exists once created in.
    let l = listener(&["8080", "a", "!"]);
    assert_eq!(l.groups, vec![rr(vec![ch("a", 8080, 0)])]);
    // getopt: a repeated option's last value wins.
    let l = listener(&["-b", "10.9.9.9", "-b", "127.0.0.1", "8080", "a"]);
    assert_eq!(l.bind, "127.0.0.1:8080".parse().unwrap());
    let l = listener(&[
        "-t", "1", "-t", "3", "-m", "mysql", "-m", "connect", "8080", "a",
    ]);
    assert_eq!(l.connect_timeout, Duration::from_secs(3));
    assert_eq!(
        l.monitor.map(|m| m.checks),
        Some(vec![crate::config::monitor::Check {
            probe: crate::config::monitor::Probe::Connect,
            timeout: None
        }])
    );
    // Options after the operands, bundled letters, attached values.
    let l = listener(&["-fb127.0.0.1", "8080", "a", "-H"]);
    assert_eq!(l.bind, "127.0.0.1:8080".parse().unwrap());
}

#[test]
fn defaults_match_balance() {
    let (g, l) = run(&["8080", "a"]);
    assert!(!g.foreground);
    assert!(!g.debug);
    assert_eq!(g.grace, crate::config::DEFAULT_GRACE);
    assert_eq!(g.threads, 1);
    assert_eq!(g.max_conns, None);
    assert_eq!(l.connect_timeout, Duration::from_secs(5));
    assert_eq!(l.idle_timeout, None);
    assert_eq!(l.client_keepalive, None);
    assert_eq!(l.server_keepalive, None);
    assert_eq!(l.source, None);
    assert!(!l.autodisable && !l.hash_failover && !l.packet_dump && !l.dual_stack);
    assert_eq!(l.race, None);
    assert_eq!(l.spin, None);
    assert_eq!(l.failback, Failback::Auto);
    assert_eq!(l.monitor, None);
}

#[test]
fn letter_options_set_their_fields() {
    let (g, l) = run(&["-a", "-d", "-f", "-H", "-M", "-p", "8080", "a"]);
    assert!(g.foreground && g.debug);
    assert!(l.autodisable && l.hash_failover && l.packet_dump);
    // Combined flags, like getopt.
    let (g, l) = run(&["-afH", "8080", "a"]);
    assert!(g.foreground && l.autodisable && l.hash_failover);

    // -6: IPv6 wildcard, dual stack.
    let l = listener(&["-6", "8080", "a"]);
    assert_eq!(l.bind, "[::]:8080".parse().unwrap());
    assert!(l.dual_stack);
    // -b: an address, v4 or v6 (bare or bracketed); a specific v6 is v6-only.
    let l = listener(&["-b", "127.0.0.1", "8080", "a"]);
    assert_eq!(l.bind, "127.0.0.1:8080".parse().unwrap());
    assert!(!l.dual_stack);
    for b in ["::1", "[::1]"] {
        let l = listener(&["-b", b, "8080", "a"]);
        assert_eq!(l.bind, "[::1]:8080".parse().unwrap(), "{b}");
        assert!(!l.dual_stack);
    }
    let l = listener(&["-6", "-b", "::", "8080", "a"]);
    assert!(l.dual_stack);
    // An IPv4-mapped address means IPv4.
    let l = listener(&["-b", "::ffff:127.0.0.1", "8080", "a"]);
    assert_eq!(l.bind, "127.0.0.1:8080".parse().unwrap());
    // -B: the source address.
    let l = listener(&["-B", "127.0.0.2", "8080", "a"]);
    assert_eq!(l.source, Some("127.0.0.2".parse().unwrap()));
}

#[test]
fn timeouts_accept_seconds_fractions_and_humantime() {
    for (s, d) in [
        ("5", Duration::from_secs(5)),
        ("0.5", Duration::from_millis(500)),
        ("500ms", Duration::from_millis(500)),
        ("2s", Duration::from_secs(2)),
    ] {
        assert_eq!(
            listener(&["-t", s, "8080", "a"]).connect_timeout,
            d,
            "-t {s}"
        );
        assert_eq!(
            listener(&["-T", s, "8080", "a"]).idle_timeout,
            Some(d),
            "-T {s}"
        );
    }
    // -T 0 = never.
    assert_eq!(listener(&["-T", "0", "8080", "a"]).idle_timeout, None);
    assert_eq!(
        bad(&["-t", "0", "8080", "a"]),
        "bad -t \"0\": the connect timeout must be positive"
    );
    assert!(bad(&["-t", "soon", "8080", "a"]).starts_with("bad -t \"soon\""));
    assert!(bad(&["-T", "-1", "8080", "a"]).contains("-1"));
}

#[test]
fn keepalive_options_take_idle_interval_probes() {
    let l = listener(&["-k", "10,5,3", "-K", "60,10,9", "8080", "a"]);
    assert_eq!(
        l.client_keepalive,
        Some(Keepalive {
            idle: Duration::from_secs(10),
            interval: Duration::from_secs(5),
            probes: 3
        })
    );
    assert_eq!(
        l.server_keepalive,
        Some(Keepalive {
            idle: Duration::from_secs(60),
            interval: Duration::from_secs(10),
            probes: 9
        })
    );
    for (v, why) in [
        ("10,5", "expected idle,interval,probes"),
        ("10,5,3,1", "expected idle,interval,probes"),
        ("10,5,0", "probes must be 1-127"),
        ("10,5,x", "probes must be 1-127"),
        ("0,5,3", "times must be 1-32767 seconds"),
        ("40000,5,3", "times must be 1-32767 seconds"),
    ] {
        assert_eq!(
            bad(&["-k", v, "8080", "a"]),
            format!("bad -k \"{v}\": {why}")
        );
    }
}

#[test]
fn long_options_set_their_fields() {
    let (g, l) = run(&[
        "--spin",
        "5s",
        "--race",
        "200ms",
        "--failback",
        "manual",
        "--log-format",
        "json",
        "--max-conns",
        "100",
        "--grace",
        "2",
        "--threads",
        "4",
        "--no-splice",
        "--control",
        "/tmp/b.sock",
        "--state-file",
        "/tmp/b.state",
        "--pidfile",
        "/tmp/b.pid",
        "--user",
        "nobody",
        "--log-file",
        "/tmp/b.log",
        "8080",
        "a",
    ]);
    assert_eq!(l.spin, Some(Duration::from_secs(5)));
    assert_eq!(l.race, Some(Duration::from_millis(200)));
    assert_eq!(l.failback, Failback::Manual);
    assert_eq!(g.log_format, LogFormat::Json);
    assert_eq!(g.max_conns, Some(100));
    assert_eq!(g.grace, Duration::from_secs(2));
    assert_eq!(g.threads, 4);
    assert!(g.no_splice);
    assert_eq!(g.control, Some(PathBuf::from("/tmp/b.sock")));
    assert_eq!(g.state_file, Some(PathBuf::from("/tmp/b.state")));
    assert_eq!(g.pidfile, Some(PathBuf::from("/tmp/b.pid")));
    assert_eq!(g.user.as_deref(), Some("nobody"));
    assert_eq!(g.log_file, Some(PathBuf::from("/tmp/b.log")));
    // 0 turns spin and race off.
    let l = listener(&["--spin", "0", "--race", "0", "8080", "a"]);
    assert_eq!((l.spin, l.race), (None, None));

    for (args, want) in [
        (
            &["--failback", "later", "8080", "a"][..],
            "bad --failback \"later\": use auto or manual",
        ),
        (
            &["--log-format", "xml", "8080", "a"][..],
            "bad --log-format \"xml\": use text or json",
        ),
        (
            &["--max-conns", "0", "8080", "a"][..],
            "bad --max-conns \"0\": not a positive number",
        ),
        (
            &["--threads", "0", "8080", "a"][..],
            "bad --threads \"0\": use 1-256",
        ),
        (
            &["--threads", "257", "8080", "a"][..],
            "bad --threads \"257\": use 1-256",
        ),
    ] {
        assert_eq!(bad(args), want, "{args:?}");
    }
}

#[test]
fn control_and_config_file_invocations() {
    let p = |args: &[&str]| match parse(std::iter::once("balance").chain(args.iter().copied())) {
        Ok(Parsed::Invocation(i)) => *i,
        _ => panic!("{args:?}"),
    };
    assert_eq!(
        p(&["-c", "show", "8080"]),
        Invocation::Control(ControlArgs {
            bind: None,
            port: 8080,
            command: Some("show".into()),
            path: None,
            debug: false
        })
    );
    assert_eq!(
        p(&["-b", "127.0.0.1", "-i", "-d", "8080"]),
        Invocation::Control(ControlArgs {
            bind: Some("127.0.0.1".parse().unwrap()),
            port: 8080,
            command: None,
            path: None,
            debug: true
        })
    );
    assert!(matches!(
        p(&["--config", "/etc/balance.yaml", "--check"]),
        Invocation::ConfigFile { check: true, .. }
    ));
    assert_eq!(
        bad(&["-i", "-c", "show", "8080"]),
        "-i and -c cannot be used together"
    );
    assert_eq!(bad(&["-c", "show"]), "missing port: balance -c CMD PORT");
    assert_eq!(
        bad(&["-c", "show", "8080", "a"]),
        "unexpected \"a\": -i/-c take only a port"
    );
    assert_eq!(
        bad(&["--config", "x.yaml", "8080"]),
        "unexpected \"8080\": --config takes no channels"
    );
    assert_eq!(
        bad(&["--check", "8080", "a"]),
        "--check needs --config FILE"
    );
}

#[test]
fn help_and_version_are_printed_not_errors() {
    for flag in ["--help", "-V", "--version"] {
        match parse(["balance", flag]) {
            Ok(Parsed::Print(t)) => assert!(!t.is_empty(), "{flag}"),
            _ => panic!("{flag}: expected text to print"),
        }
    }
}

#[test]
fn garbage_command_lines_give_one_line_naming_the_token() {
    let table: &[(&[&str], &str)] = &[
        (
            &[],
            "missing port and channels: balance [options] port channel... [! channel...]",
        ),
        (&["33306", "!"], "\"!\" closes an empty group (argument 2)"),
        (
            &["a:1", "!", "!", "b:2"],
            "\"!\" closes an empty group (argument 2)",
        ),
        (
            &["8080", "a:1", "!", "!", "b:2"],
            "\"!\" closes an empty group (argument 4)",
        ),
        (
            &["8080", "%", "a"],
            "\"%\" closes an empty group (argument 2)",
        ),
        (&["!", "a"], "\"!\" where the listen port was expected"),
        (&["0"], "bad port \"0\": port 0 is out of range (1-65535)"),
        (
            &["0", "a"],
            "bad port \"0\": port 0 is out of range (1-65535)",
        ),
        (
            &["70000", "a"],
            "bad port \"70000\": port 70000 is out of range (1-65535)",
        ),
        (
            &["8080", "::1:3306"],
            "bad channel \"::1:3306\": empty host",
        ),
        (
            &["8080", "a:70000"],
            "bad channel \"a:70000\": port 70000 is out of range (1-65535)",
        ),
        (
            &["8080", "hôst"],
            "bad channel \"hôst\": \"hôst\" is not a valid host name",
        ),
        (
            &["8080", "数据库:3306"],
            "bad channel \"数据库:3306\": \"数据库\" is not a valid host name",
        ),
        (
            &["-b", "no such host", "8080", "a"],
            "bad address \"no such host\"",
        ),
        (&["-B", "x y", "8080", "a"], "bad -B address \"x y\""),
        (
            &["-6", "-b", "127.0.0.1", "8080", "a"],
            "-6 with an IPv4 -b address \"127.0.0.1\"",
        ),
    ];
    for (args, want) in table {
        assert_eq!(bad(args), *want, "{args:?}");
    }
    // clap's own errors are one line too and name the token.
    assert!(bad(&["-x", "8080", "a"]).contains("-x"));
    assert!(bad(&["--bogus", "8080", "a"]).contains("--bogus"));
    assert!(bad(&["-t"]).contains("-t"));
}

#[test]
fn many_channels_parse_without_panic() {
    let mut args = vec!["8080".to_string()];
    for i in 0..10_000u32 {
        args.push(format!(
            "10.{}.{}.{}:{}:{}",
            i >> 16,
            (i >> 8) & 255,
            i & 255,
            1 + i % 60000,
            i % 7
        ));
        if i % 1000 == 999 && i != 9999 {
            args.push(if i % 2000 == 999 { "!" } else { "%" }.to_string());
        }
    }
    let strs: Vec<&str> = args.iter().map(String::as_str).collect();
    let l = listener(&strs);
    assert_eq!(l.groups.len(), 10);
    assert_eq!(
        l.groups.iter().map(|g| g.channels.len()).sum::<usize>(),
        10_000
    );

    // Random garbage never panics: it parses or gives a one-line error.
    let mut rng = StdRng::seed_from_u64(7);
    let alphabet: Vec<char> = "ab1:[]%!.-_ß\u{0}\u{202e}9:".chars().collect();
    for _ in 0..2000 {
        let n = rng.random_range(0..6);
        let toks: Vec<String> = (0..n)
            .map(|_| {
                let len = rng.random_range(0..8);
                (0..len)
                    .map(|_| alphabet[rng.random_range(0..alphabet.len())])
                    .collect()
            })
            .collect();
        let mut argv = vec!["balance".to_string(), "8080".to_string()];
        argv.extend(toks);
        if let Err(UsageError(m)) = parse(argv.clone()) {
            assert!(!m.contains('\n') && !m.is_empty(), "{argv:?}: {m:?}");
        }
    }
}

/// Render a channel the way an operator would write it, choosing among the
/// equivalent spellings.
fn render(c: &ChannelConfig, listen: u16, rng: &mut StdRng) -> String {
    let host = c.host.to_string();
    let default_port = c.port == listen && rng.random_bool(0.5);
    match (default_port, c.maxc) {
        (true, 0) => host,
        (true, m) => format!("{host}::{m}"),
        (false, 0) if rng.random_bool(0.5) => format!("{host}:{}", c.port),
        (false, m) => format!("{host}:{}:{m}", c.port),
    }
}

#[test]
fn rendered_random_configs_parse_back_to_the_same_groups() {
    let mut rng = StdRng::seed_from_u64(0x5eed);
    for round in 0..500 {
        let listen: u16 = rng.random_range(1..=65535);
        let ngroups = rng.random_range(1..5);
        let mut groups = Vec::new();
        for _ in 0..ngroups {
            let nch = rng.random_range(1..5);
            let channels = (0..nch)
                .map(|_| {
                    let host = match rng.random_range(0..3) {
                        0 => Host::Ip(IpAddr::V4(Ipv4Addr::from(rng.random::<u32>()))),
                        1 => Host::Ip(IpAddr::V6(Ipv6Addr::from(rng.random::<u128>()))),
                        _ => Host::Name(format!("h{}-x.example", rng.random_range(0..1000))),
                    };
                    let mut port = if rng.random_bool(0.3) {
                        listen
                    } else {
                        rng.random_range(1..=65535)
                    };
                    // Not the listener itself (127.x or 0.0.0.0 on the
                    // listen port of the wildcard bind): that is refused.
                    let wildcard = SocketAddr::new(IpAddr::V4(Ipv4Addr::UNSPECIFIED), listen);
                    if let Host::Ip(ip) = &host {
                        if is_self_loop_addr(wildcard, SocketAddr::new(*ip, port)) {
                            port = listen % 65535 + 1;
                        }
                    }
                    let maxc = if rng.random_bool(0.5) {
                        0
                    } else {
                        rng.random_range(1..100_000)
                    };
                    ChannelConfig {
                        name: String::new(),
                        host,
                        port,
                        maxc,
                        weight: 1,
                        proxy_protocol: None,
                    }
                })
                .collect();
            let policy = if rng.random_bool(0.3) {
                Policy::Hash
            } else {
                Policy::RoundRobin
            };
            groups.push(GroupConfig {
                on_demand: None,
                name: String::new(),
                policy,
                channels,
                proxy_protocol: None,
            });
        }
        let mut argv = vec!["balance".to_string(), listen.to_string()];
        for (i, g) in groups.iter().enumerate() {
            for c in &g.channels {
                argv.push(render(c, listen, &mut rng));
            }
            let last = i + 1 == groups.len();
            match (g.policy, last) {
                (Policy::Hash, _) => argv.push("%".into()),
                (Policy::RoundRobin, false) => argv.push("!".into()),
                (Policy::RoundRobin, true) => {}
                (Policy::LeastConn, _) => unreachable!("not generated"),
            }
        }
        let strs: Vec<&str> = argv.iter().map(String::as_str).collect();
        let l = listener(&strs[1..]);
        assert_eq!(l.groups, groups, "round {round}: {argv:?}");
        assert_eq!(l.bind.port(), listen);
    }
}

/// `--config` with the global flags: what is given is `Some` in the overlay
/// (so it wins over the file even when it equals the default), what is not
/// given is `None`.
#[test]
fn global_flags_given_with_config_win_over_the_file_even_at_their_defaults() {
    let overlay = match parse([
        "balance",
        "--config",
        "f.yaml",
        "--threads",
        "1",
        "--grace",
        "10s",
    ]) {
        Ok(Parsed::Invocation(inv)) => match *inv {
            Invocation::ConfigFile { global, .. } => global,
            other => panic!("expected a config-file invocation, got {other:?}"),
        },
        _ => panic!("expected a config-file invocation"),
    };
    assert_eq!(overlay.threads, Some(1));
    assert_eq!(overlay.grace, Some(Duration::from_secs(10)));
    assert_eq!(overlay.user, None);
    assert_eq!(overlay.max_conns, None);
    let file = "grace: 3s\nthreads: 4\nlisteners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - channels: [\"10.0.0.1:80\"]\n";
    let cfg = crate::config::file::parse(file, &overlay).unwrap();
    assert_eq!(cfg.global.threads, 1);
    assert_eq!(cfg.global.grace, Duration::from_secs(10));
    let cfg = crate::config::file::parse(file, &Overlay::default()).unwrap();
    assert_eq!(cfg.global.threads, 4);
    assert_eq!(cfg.global.grace, Duration::from_secs(3));
}

#[test]
fn fleet_option_takes_a_comma_list_of_endpoints() {
    let (g, _) = run(&[
        "--fleet",
        "http://127.0.0.1:2379,http://10.0.0.2:2379",
        "8000",
        "10.0.0.1:80",
    ]);
    let f = g.fleet.expect("fleet mode");
    assert_eq!(
        f.endpoints,
        ["http://127.0.0.1:2379", "http://10.0.0.2:2379"]
    );
    assert_eq!(f.prefix, "/balance");
    assert_eq!(run(&["8000", "10.0.0.1:80"]).0.fleet, None);
    for v in ["127.0.0.1:2379", "https://h:1", "http://h:1,", "http://h"] {
        let e = bad(&["--fleet", v, "8000", "10.0.0.1:80"]);
        assert!(e.starts_with("bad --fleet "), "{v}: {e}");
    }
}

#[test]
fn connection_log_flags_make_the_listeners_log() {
    use crate::config::{ConnLogConfig, ConnLogFormat, ConnLogTarget};
    assert_eq!(listener(&["8000", "a:1"]).connection_log, None);
    assert_eq!(
        listener(&["--connection-log", "/var/log/c.log", "8000", "a:1"]).connection_log,
        Some(ConnLogConfig {
            target: ConnLogTarget::File("/var/log/c.log".into()),
            format: ConnLogFormat::Tcplog,
        })
    );
    assert_eq!(
        listener(&[
            "--connection-log",
            "syslog",
            "--connection-log-format",
            "json",
            "8000",
            "a:1"
        ])
        .connection_log,
        Some(ConnLogConfig {
            target: ConnLogTarget::Syslog("/dev/log".into()),
            format: ConnLogFormat::Json,
        })
    );
    assert_eq!(
        bad(&[
            "--connection-log-format",
            "clf",
            "--connection-log",
            "stderr",
            "8000"
        ]),
        "bad --connection-log-format \"clf\": use tcplog or json"
    );
    assert_eq!(
        bad(&["--connection-log-format", "json", "8000"]),
        "--connection-log-format needs --connection-log TARGET"
    );
    assert!(bad(&["--connection-log", "x", "--config", "f.yaml"]).contains("set it per listener"));
}

#[test]
fn proxy_protocol_and_accept_proxy_options() {
    use crate::config::ProxyVersion;
    let l = listener(&["--proxy-protocol", "v1", "8080", "a", "!", "b"]);
    assert!(l.groups.iter().all(|g| {
        g.proxy_protocol == Some(ProxyVersion::V1)
            && g.channels
                .iter()
                .all(|c| c.proxy_protocol == Some(ProxyVersion::V1))
    }));
    assert!(listener(&["8080", "a"]).groups[0].proxy_protocol.is_none());
    let l = listener(&["--accept-proxy", "10.0.0.0/8,127.0.0.1", "8080", "a"]);
    let cidrs: Vec<String> = l.accept_proxy.iter().map(|c| c.to_string()).collect();
    assert_eq!(cidrs, ["10.0.0.0/8", "127.0.0.1/32"]);
    assert_eq!(
        bad(&["--proxy-protocol", "v3", "8080", "a"]),
        "bad --proxy-protocol \"v3\": use v1 or v2"
    );
    assert_eq!(
        bad(&["--accept-proxy", "10.0.0.0/40", "8080", "a"]),
        "bad --accept-proxy: \"10.0.0.0/40\": prefix length must be 0-32"
    );
    assert!(
        bad(&["--config", "x.yaml", "--accept-proxy", "::1"])
            .starts_with("--accept-proxy cannot be used with --config")
    );
}
