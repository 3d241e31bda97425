//! Which channels an `on_idle` that exited 0 takes down.

use super::*;
use crate::config::monitor::MonitorSpec;
use crate::config::{ChannelConfig, GroupConfig, Host, ListenerConfig, Policy};
use crate::health::RiseFallParams;

/// A listener of one group of three channels, with or without a monitor.
fn svc(monitor: bool, noenable: bool) -> Service {
    let channels = (1..=3)
        .map(|i| ChannelConfig {
            name: String::new(),
            host: Host::Ip(format!("10.0.0.{i}").parse().unwrap()),
            port: 80,
            maxc: 0,
            weight: 1,
            proxy_protocol: None,
        })
        .collect();
    let mut groups = vec![GroupConfig {
        on_demand: None,
        name: String::new(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels,
    }];
    crate::config::names::fill(&mut groups).unwrap();
    let mut cfg = ListenerConfig::new("l".into(), "127.0.0.1:1".parse().unwrap(), groups);
    cfg.monitor = monitor.then(MonitorSpec::default);
    let rf = RiseFallParams {
        noenable,
        ..RiseFallParams::default()
    };
    Service::new(cfg, rf)
}

fn up(s: &Service) -> Vec<bool> {
    s.pool.groups()[0]
        .channels
        .iter()
        .map(|c| c.is_up())
        .collect()
}

#[test]
fn a_stopped_group_goes_down_at_once_except_what_the_checks_cannot_bring_back() {
    let s = svc(true, false);
    let g = Arc::clone(&s.pool.groups()[0]);
    g.channels[1].set_admin(Admin::Disabled);
    g.channels[2].set_checked(false);
    mark_stopped(&s, 0, &g);
    assert_eq!(up(&s), [false, true, true]);
    assert_eq!(
        g.channels[0].down_reason(),
        Some(Reason::Stopped),
        "through the health path, with its reason"
    );
    // Nothing would bring them up again: left as they are.
    for s in [svc(false, false), svc(true, true)] {
        let g = Arc::clone(&s.pool.groups()[0]);
        mark_stopped(&s, 0, &g);
        assert_eq!(up(&s), [true, true, true]);
    }
}
