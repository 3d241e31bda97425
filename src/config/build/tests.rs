use std::time::Duration;

use super::*;
use crate::config::{Host, Policy};

fn spec(bind: &str, channels: &[(&str, u16)]) -> ListenerSpec {
    let channels = channels
        .iter()
        .map(|(h, p)| ChannelConfig {
            name: String::new(),
            host: match h.parse() {
                Ok(ip) => Host::Ip(ip),
                Err(_) => Host::Name((*h).into()),
            },
            port: *p,
            maxc: 0,
            weight: 1,
            proxy_protocol: None,
        })
        .collect();
    ListenerSpec::new(
        "l".into(),
        bind.parse().unwrap(),
        vec![GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels,
        }],
    )
}

#[test]
fn nothing_given_means_balance_defaults() {
    let l = spec("0.0.0.0:8000", &[("10.0.0.1", 80)]).build().unwrap();
    assert_eq!(l.connect_timeout, DEFAULT_CONNECT_TIMEOUT);
    assert_eq!(l.failback, Failback::Auto);
    assert_eq!(l.idle_timeout, None);
    assert!(!l.dual_stack);
    assert_eq!(
        ListenerConfig {
            groups: l.groups.clone(),
            ..ListenerConfig::new("l".into(), l.bind, vec![])
        },
        l,
        "the builder's defaults are ListenerConfig::new's"
    );
}

#[test]
fn port_0_channels_take_the_listener_port_and_v6_wildcards_are_dual_stack() {
    let l = spec("[::]:8000", &[("db1", 0), ("10.0.0.1", 81)])
        .build()
        .unwrap();
    assert_eq!(l.groups[0].channels[0].port, 8000);
    assert_eq!(l.groups[0].channels[1].port, 81);
    assert!(l.dual_stack);
}

#[test]
fn zero_durations_mean_off_and_a_zero_connect_timeout_is_refused() {
    let mut s = spec("0.0.0.0:8000", &[("10.0.0.1", 80)]);
    s.idle_timeout = Some(Duration::ZERO);
    s.race = Some(Duration::ZERO);
    s.spin = Some(Duration::from_secs(2));
    let l = s.clone().build().unwrap();
    assert_eq!((l.idle_timeout, l.race), (None, None));
    assert_eq!(l.spin, Some(Duration::from_secs(2)));
    s.connect_timeout = Some(Duration::ZERO);
    assert_eq!(s.build(), Err(SpecError::ZeroConnectTimeout));
}

#[test]
fn keepalive_times_outside_1s_to_32767s_are_refused_per_side() {
    let k = |idle: u64| Keepalive {
        idle: Duration::from_secs(idle),
        interval: Duration::from_secs(5),
        probes: 3,
    };
    let mut s = spec("0.0.0.0:8000", &[("10.0.0.1", 80)]);
    s.client_keepalive = Some(k(1));
    s.server_keepalive = Some(k(32767));
    assert!(s.clone().build().is_ok());
    s.server_keepalive = Some(k(32768));
    assert_eq!(
        s.clone().build(),
        Err(SpecError::KeepaliveRange(Side::Server))
    );
    s.client_keepalive = Some(k(0));
    assert_eq!(s.build(), Err(SpecError::KeepaliveRange(Side::Client)));
}

#[test]
fn a_channel_pointing_at_its_own_listener_is_refused_with_its_position() {
    let e = spec("0.0.0.0:8000", &[("10.0.0.1", 80), ("127.0.0.1", 0)])
        .build()
        .unwrap_err();
    assert!(
        matches!(
            e,
            SpecError::SelfLoop {
                group: 0,
                index: 1,
                ..
            }
        ),
        "{e:?}"
    );
    assert_eq!(
        e.to_string(),
        "127.0.0.1:8000 points at listener \"l\" itself"
    );
}

#[test]
fn the_monitor_on_down_and_on_up_flags_add_to_the_listener() {
    let mut s = spec("0.0.0.0:8000", &[("10.0.0.1", 80)]);
    s.monitor = Some(MonitorSpec {
        on_down_shutdown: true,
        on_up_shutdown_backup: true,
        ..MonitorSpec::default()
    });
    let l = s.build().unwrap();
    assert!(l.on_down_shutdown && l.on_up_shutdown_backup);
}

#[test]
fn binds_overlap_on_the_same_port_when_one_covers_the_other() {
    let b = |s: &str, dual: bool| (s.parse::<SocketAddr>().unwrap(), dual);
    let yes = [
        (b("0.0.0.0:80", false), b("127.0.0.1:80", false)),
        (b("127.0.0.1:80", false), b("127.0.0.1:80", false)),
        (b("[::]:80", true), b("127.0.0.1:80", false)),
        (b("[::]:80", true), b("0.0.0.0:80", false)),
        (b("[::]:80", false), b("[::1]:80", false)),
        (b("[::ffff:127.0.0.1]:80", false), b("0.0.0.0:80", false)),
    ];
    for (x, y) in yes {
        assert!(binds_overlap(x, y), "{x:?} {y:?}");
        assert!(binds_overlap(y, x), "{y:?} {x:?}");
    }
    let no = [
        (b("0.0.0.0:80", false), b("0.0.0.0:81", false)),
        (b("127.0.0.1:80", false), b("127.0.0.2:80", false)),
        (b("0.0.0.0:80", false), b("[::1]:80", false)),
        (b("[::]:80", false), b("127.0.0.1:80", false)),
    ];
    for (x, y) in no {
        assert!(!binds_overlap(x, y), "{x:?} {y:?}");
        assert!(!binds_overlap(y, x), "{y:?} {x:?}");
    }
}

#[test]
fn a_replication_aware_monitor_makes_failback_manual_unless_given() {
    let mut s = spec("0.0.0.0:3306", &[("10.0.0.1", 3306)]);
    s.monitor = Some(crate::config::monitor_spec::parse("mysql:user=chk:max_lag=5s").unwrap());
    let l = s.clone().build().unwrap();
    assert_eq!(l.failback, Failback::Manual);
    s.failback = Some(Failback::Auto);
    assert_eq!(s.build().unwrap().failback, Failback::Auto);
    let mut plain = spec("0.0.0.0:3306", &[("10.0.0.1", 3306)]);
    plain.monitor = Some(crate::config::monitor_spec::parse("mysql:user=chk").unwrap());
    assert_eq!(plain.build().unwrap().failback, Failback::Auto);
}
