//! Reload's Service rebuild: what is kept and what is new.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use super::*;
use crate::config::{ChannelConfig, Failback, GroupConfig, Policy};
use crate::pool::{Admin, ShownState};

fn ch(ip: &str, port: u16, maxc: u32) -> ChannelConfig {
    ChannelConfig {
        host: Host::Ip(ip.parse().unwrap()),
        port,
        maxc,
        weight: 1,
    }
}

fn cfg(groups: Vec<Vec<ChannelConfig>>) -> ListenerConfig {
    ListenerConfig::new(
        "l".into(),
        "127.0.0.1:1".parse().unwrap(),
        groups
            .into_iter()
            .map(|channels| GroupConfig {
                policy: Policy::RoundRobin,
                channels,
            })
            .collect(),
    )
}

#[test]
fn rebuild_keeps_same_position_channels_with_counters_health_and_operator_state() {
    let old = Service::new(
        cfg(vec![
            vec![ch("10.0.0.1", 80, 0), ch("10.0.0.2", 80, 0)],
            vec![ch("10.0.0.9", 80, 0)],
        ]),
        RiseFallParams::default(),
    );
    let g = old.pool.groups();
    let (a, b) = (Arc::clone(&g[0].channels[0]), Arc::clone(&g[0].channels[1]));
    a.total.fetch_add(5, Relaxed);
    b.force_down("connect refused");
    a.set_admin(Admin::Drain);
    old.stats.accepted.fetch_add(3, Relaxed);

    // b moves to group 1 (a new channel there), a stays, c is new.
    let mut newcfg = cfg(vec![
        vec![ch("10.0.0.1", 80, 0), ch("10.0.0.3", 80, 0)],
        vec![ch("10.0.0.2", 80, 0)],
    ]);
    newcfg.failback = Failback::Manual;
    let new = old.rebuild(newcfg, RiseFallParams::default(), |h, p| {
        crate::service::resolve(h, p)
    });
    let ng = new.pool.groups();
    assert!(Arc::ptr_eq(&ng[0].channels[0], &a), "a is kept");
    assert_eq!(ng[0].channels[0].total.load(Relaxed), 5);
    assert_eq!(ng[0].channels[0].shown_state(), ShownState::Drain);
    assert!(
        !Arc::ptr_eq(&ng[1].channels[0], &b),
        "another group position is a new channel"
    );
    assert_eq!(ng[1].channels[0].shown_state(), ShownState::Ena);
    assert_eq!(ng[0].channels[1].target().to_string(), "10.0.0.3:80");
    assert_eq!(
        new.stats.accepted.load(Relaxed),
        3,
        "listener counters are shared"
    );
    assert!(Arc::ptr_eq(&new.stats, &old.stats));
    assert_eq!(new.pool.opts.failback, Failback::Manual);
}

#[test]
fn rebuild_takes_maxc_from_the_file_only_where_the_file_changed_it() {
    let old = Service::new(
        cfg(vec![vec![ch("10.0.0.1", 80, 10), ch("10.0.0.2", 80, 10)]]),
        RiseFallParams::default(),
    );
    let g = old.pool.groups();
    // An operator changed both at runtime.
    g[0].channels[0].set_maxc(99);
    g[0].channels[1].set_maxc(99);
    let new = old.rebuild(
        cfg(vec![vec![ch("10.0.0.1", 80, 10), ch("10.0.0.2", 80, 20)]]),
        RiseFallParams::default(),
        crate::service::resolve,
    );
    let ng = new.pool.groups();
    assert_eq!(
        ng[0].channels[0].maxc(),
        99,
        "unchanged in the file: operator wins"
    );
    assert_eq!(
        ng[0].channels[1].maxc(),
        20,
        "changed in the file: file wins"
    );
}

#[test]
fn rebuild_keeps_the_manual_failback_floor_within_the_new_group_count() {
    let mut c = cfg(vec![
        vec![ch("10.0.0.1", 80, 0)],
        vec![ch("10.0.0.2", 80, 0)],
        vec![ch("10.0.0.3", 80, 0)],
    ]);
    c.failback = Failback::Manual;
    let old = Service::new(c.clone(), RiseFallParams::default());
    old.pool.served_by(2);
    let kept = old.rebuild(
        c.clone(),
        RiseFallParams::default(),
        crate::service::resolve,
    );
    assert_eq!(kept.pool.floor(), 2);
    c.groups.truncate(2);
    let shrunk = old.rebuild(c, RiseFallParams::default(), crate::service::resolve);
    assert_eq!(shrunk.pool.floor(), 1);
}
