use std::time::Duration;

use super::*;
use crate::config::file::parse;
use crate::config::{DEFAULT_GRACE, DEFAULT_THREADS};

const FILE: &str = "grace: 3s\nthreads: 4\nlog_format: json\nlisteners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - channels: [\"10.0.0.1:80\"]\n";

#[test]
fn an_explicit_threads_1_beats_the_file_even_though_it_is_the_default() {
    let cli = Overlay {
        threads: Some(DEFAULT_THREADS),
        ..Overlay::default()
    };
    assert_eq!(parse(FILE, &cli).unwrap().global.threads, 1);
    // Not given: the file's value.
    assert_eq!(parse(FILE, &Overlay::default()).unwrap().global.threads, 4);
}

#[test]
fn an_explicit_grace_10s_beats_the_file_even_though_it_is_the_default() {
    let cli = Overlay {
        grace: Some(Duration::from_secs(10)),
        ..Overlay::default()
    };
    assert_eq!(DEFAULT_GRACE, Duration::from_secs(10));
    assert_eq!(
        parse(FILE, &cli).unwrap().global.grace,
        Duration::from_secs(10)
    );
    assert_eq!(
        parse(FILE, &Overlay::default()).unwrap().global.grace,
        Duration::from_secs(3)
    );
}

#[test]
fn an_explicit_log_format_text_beats_the_file() {
    let cli = Overlay {
        log_format: Some(LogFormat::Text),
        ..Overlay::default()
    };
    assert_eq!(
        parse(FILE, &cli).unwrap().global.log_format,
        LogFormat::Text
    );
    assert_eq!(
        parse(FILE, &Overlay::default()).unwrap().global.log_format,
        LogFormat::Json
    );
}

#[test]
fn an_empty_overlay_leaves_the_base_alone_and_a_full_one_replaces_it() {
    let base = Global {
        grace: Duration::from_secs(3),
        threads: 4,
        user: Some("file".into()),
        max_conns: Some(7),
        ..Global::default()
    };
    assert_eq!(Overlay::default().over(base.clone()), base);
    let o = Overlay {
        foreground: true,
        debug: true,
        no_splice: true,
        log_format: Some(LogFormat::Json),
        log_file: Some("l".into()),
        pidfile: Some("p".into()),
        grace: Some(Duration::from_secs(1)),
        max_conns: Some(9),
        threads: Some(2),
        control: Some("c".into()),
        state_file: Some("s".into()),
        user: Some("cli".into()),
        metrics: Some("127.0.0.1:9100".parse().unwrap()),
        fleet: None,
        haproxy_socket: None,
    };
    let g = o.over(base.clone());
    assert!(g.foreground && g.debug && g.no_splice);
    assert_eq!(g.log_format, LogFormat::Json);
    assert_eq!(g.log_file, o.log_file);
    assert_eq!(g.pidfile, o.pidfile);
    assert_eq!(g.grace, Duration::from_secs(1));
    assert_eq!(g.max_conns, Some(9));
    assert_eq!(g.threads, 2);
    assert_eq!(g.control, o.control);
    assert_eq!(g.state_file, o.state_file);
    assert_eq!(g.user.as_deref(), Some("cli"));
    assert_eq!(g.metrics, o.metrics);
    assert_eq!(g.resolve_interval, base.resolve_interval);
}

#[test]
fn fleet_endpoints_from_the_command_line_keep_the_files_other_fleet_keys() {
    use crate::config::FleetConfig;
    let file = Global {
        fleet: Some(FleetConfig {
            prefix: "/p".into(),
            id: Some("me".into()),
            ..FleetConfig::new(vec!["http://a:1".into()])
        }),
        ..Global::default()
    };
    let o = Overlay {
        fleet: Some(vec!["http://b:2".into()]),
        ..Overlay::default()
    };
    let f = o.over(file.clone()).fleet.unwrap();
    assert_eq!(
        (f.endpoints, f.prefix.as_str(), f.id.as_deref()),
        (vec!["http://b:2".to_string()], "/p", Some("me"))
    );
    let f = o.over(Global::default()).fleet.unwrap();
    assert_eq!(f, FleetConfig::new(vec!["http://b:2".into()]));
    assert_eq!(Overlay::default().over(file.clone()).fleet, file.fleet);
    assert_eq!(Overlay::default().over(Global::default()).fleet, None);
}

#[test]
fn the_haproxy_socket_path_from_the_command_line_keeps_the_files_mode_and_group() {
    use crate::config::HaproxySocket;
    let file = Global {
        haproxy_socket: Some(HaproxySocket {
            path: "/f.sock".into(),
            mode: 0o660,
            group: Some("haproxy".into()),
        }),
        ..Global::default()
    };
    let o = Overlay {
        haproxy_socket: Some("/cli.sock".into()),
        ..Overlay::default()
    };
    let h = o.over(file).haproxy_socket.unwrap();
    assert_eq!(h.path, std::path::PathBuf::from("/cli.sock"));
    assert_eq!((h.mode, h.group.as_deref()), (0o660, Some("haproxy")));
    let h = o.over(Global::default()).haproxy_socket.unwrap();
    assert_eq!(h, HaproxySocket::at("/cli.sock".into()));
}
