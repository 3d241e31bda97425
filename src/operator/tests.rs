//! The operator model against a real Service: each op through `apply`,
//! its outcome, and what it refuses (changing nothing).

use std::sync::Arc;

use super::*;
use crate::config::{ChannelConfig, GroupConfig, ListenerConfig};
use crate::health::RiseFallParams;

fn svc() -> Service {
    let ch = |name: &str, ip: &str, weight| ChannelConfig {
        name: name.into(),
        host: Host::Ip(ip.parse().unwrap()),
        port: 80,
        maxc: 0,
        weight,
        proxy_protocol: None,
    };
    let mut groups = vec![
        GroupConfig {
            on_demand: None,
            name: "pod1".into(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels: vec![ch("db101", "10.0.0.1", 4), ch("", "10.0.0.2", 1)],
        },
        GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels: vec![ch("", "10.0.0.1", 1)],
        },
    ];
    names::fill(&mut groups).unwrap();
    let cfg = ListenerConfig::new("l".into(), "127.0.0.1:1".parse().unwrap(), groups);
    Service::new(cfg, RiseFallParams::default())
}

fn name(n: &str) -> ChannelKey {
    ChannelKey::Name(n.into())
}

fn ep(s: &str) -> Endpoint {
    Endpoint::parse(s).unwrap()
}

#[test]
fn keys_find_channels_by_name_place_and_address() {
    let s = svc();
    let g = s.pool.groups();
    let (hit, chans) = find(&g, &name("db101")).unwrap();
    assert_eq!((hit.group, hit.index, hit.count), (0, 0, 1));
    assert_eq!(chans[0].name(), "db101");
    let (hit, _) = find(&g, &ChannelKey::At { group: 1, index: 0 }).unwrap();
    assert_eq!(hit.name, "10.0.0.1-80");
    // One address in two groups: ambiguous for one channel, two for every.
    assert_eq!(
        find(&g, &ChannelKey::Addr(ep("10.0.0.1:80"))).unwrap_err(),
        OpError::Ambiguous(ep("10.0.0.1:80"))
    );
    assert_eq!(
        find(&g, &ChannelKey::Every(ep("10.0.0.1:80")))
            .unwrap()
            .0
            .count,
        2
    );
    assert_eq!(
        find(&g, &name("nosuch")).unwrap_err().to_string(),
        "no such channel nosuch"
    );
    assert_eq!(find_group(&g, &GroupKey::Name("pod1".into())), Ok(0));
    assert_eq!(find_group(&g, &GroupKey::Name("group1".into())), Ok(1));
    assert!(find_group(&g, &GroupKey::Index(2)).is_err());
}

#[test]
fn admin_ops_report_whether_they_changed_anything() {
    let s = svc();
    let op = |a| OperatorOp::Admin(name("db101"), a);
    let out = apply(&s, &op(Admin::Disabled)).unwrap();
    assert!(
        matches!(out, Outcome::Admin { changed: true, admin: Admin::Disabled, ref hit, .. } if hit.name == "db101")
    );
    assert!(!apply(&s, &op(Admin::Disabled)).unwrap().changed());
    // Enable is admin enabled and forced up.
    let ch = find(&s.pool.groups(), &name("db101")).unwrap().1[0].clone();
    ch.force_down("refused");
    assert!(apply(&s, &op(Admin::Enabled)).unwrap().changed());
    assert!(ch.is_up() && ch.admin() == Admin::Enabled);
    assert!(!apply(&s, &op(Admin::Enabled)).unwrap().changed());
}

#[test]
fn weight_takes_a_number_or_a_percentage_of_the_configured_weight() {
    let s = svc();
    let set = |w| apply(&s, &OperatorOp::Weight(name("db101"), w));
    assert_eq!(
        set(WeightSet::Abs(10)).unwrap(),
        Outcome::Weight {
            hit: Hit {
                group: 0,
                index: 0,
                name: "db101".into(),
                count: 1
            },
            weight: 10,
            initial: 4,
            changed: true
        }
    );
    assert!(matches!(
        set(WeightSet::Percent(50)).unwrap(),
        Outcome::Weight {
            weight: 2,
            initial: 4,
            ..
        }
    ));
    // Too large after the percentage: refused, nothing changed.
    assert_eq!(
        set(WeightSet::Percent(1_000_000)),
        Err(OpError::BadWeight(40_000))
    );
    let ch = &find(&s.pool.groups(), &name("db101")).unwrap().1[0];
    assert_eq!(ch.weight(), 2);
}

#[test]
fn health_off_stops_checks_and_counts_the_channel_up() {
    let s = svc();
    let ch = find(&s.pool.groups(), &name("db101")).unwrap().1[0].clone();
    ch.force_down("refused");
    let out = apply(&s, &OperatorOp::Health(name("db101"), false)).unwrap();
    assert!(out.changed() && !ch.checked() && ch.is_up());
    assert!(
        apply(&s, &OperatorOp::Health(name("db101"), true))
            .unwrap()
            .changed()
    );
    assert!(ch.checked());
}

#[test]
fn every_at_an_address_applies_to_each_such_channel() {
    let s = svc();
    let op = OperatorOp::Maxc(ChannelKey::Every(ep("10.0.0.1:80")), 7);
    let out = apply(&s, &op).unwrap();
    assert!(matches!(out, Outcome::Maxc { ref hit, maxc: 7, changed: true } if hit.count == 2));
    let g = s.pool.groups();
    assert_eq!((g[0].channels[0].maxc(), g[1].channels[0].maxc()), (7, 7));
    assert_eq!(g[0].channels[1].maxc(), 0);
}

#[test]
fn group_ops_name_groups_and_refuse_unknown_ones() {
    let s = svc();
    let out = apply(
        &s,
        &OperatorOp::Policy(GroupKey::Name("group1".into()), Policy::Hash),
    )
    .unwrap();
    assert_eq!(
        out,
        Outcome::Policy {
            group: 1,
            name: "group1".into(),
            policy: Policy::Hash
        }
    );
    assert_eq!(s.pool.groups()[1].policy(), Policy::Hash);
    let e = apply(
        &s,
        &OperatorOp::Policy(GroupKey::Name("x".into()), Policy::Hash),
    );
    assert_eq!(e.unwrap_err().to_string(), "no such group x (groups 0-1)");
    assert_eq!(
        apply(&s, &OperatorOp::Floor(1)).unwrap(),
        Outcome::Floor { group: 1, prev: 0 }
    );
    assert!(apply(&s, &OperatorOp::Floor(2)).is_err());
    assert_eq!(s.pool.floor(), 1);
    assert_eq!(
        apply(&s, &OperatorOp::Floor(0)).unwrap(),
        Outcome::Floor { group: 0, prev: 1 }
    );
    // No monitor configured: refused.
    assert_eq!(
        apply(&s, &OperatorOp::Monitor(false)),
        Err(OpError::NoMonitor)
    );
}

#[test]
fn created_channels_get_a_free_default_name_and_start_disabled() {
    let s = svc();
    let target = Target {
        host: Host::Ip("10.0.0.1".parse().unwrap()),
        port: 80,
        addrs: vec!["10.0.0.1:80".parse().unwrap()],
    };
    let out = apply(
        &s,
        &OperatorOp::Create {
            group: GroupKey::Index(2),
            target,
            weight: Some(1),
        },
    )
    .unwrap();
    let Outcome::Created { hit } = out else {
        panic!("{out:?}")
    };
    assert_eq!((hit.group, hit.index), (2, 0));
    assert_eq!(hit.name, "10.0.0.1-80-2");
    let g = s.pool.groups();
    assert_eq!(g[2].name(), "group2");
    assert_eq!(g[2].channels[0].admin(), Admin::Disabled);
    assert!(Arc::ptr_eq(
        &g[2].channels[0],
        &find(&g, &name(&hit.name)).unwrap().1[0]
    ));
}

#[test]
fn ops_map_a_front_ends_references_to_keys() {
    let op: OperatorOp<usize, ()> = OperatorOp::Admin(3, Admin::Drain);
    let mapped = op
        .map(
            |i| Ok::<_, String>(ChannelKey::At { group: 0, index: i }),
            |()| Ok(GroupKey::Index(0)),
        )
        .unwrap();
    assert_eq!(
        mapped,
        OperatorOp::Admin(ChannelKey::At { group: 0, index: 3 }, Admin::Drain)
    );
    assert!(mapped.persists());
    assert!(!OperatorOp::<ChannelKey, GroupKey>::Floor(0).persists());
}

#[test]
fn remove_takes_the_channel_out_of_the_named_group_only() {
    let s = svc();
    let remove = |g: GroupKey, c: ChannelKey| OperatorOp::Remove { group: g, chan: c };
    // 10.0.0.1:80 is in both groups: in group 1 it is the only one.
    let out = apply(
        &s,
        &remove(GroupKey::Index(1), ChannelKey::Addr(ep("10.0.0.1:80"))),
    )
    .unwrap();
    assert!(matches!(out, Outcome::Removed { ref hit, conns: 0 } if hit.group == 1));
    let g = s.pool.groups();
    assert!(g[1].channels.is_empty());
    assert_eq!(g[0].channels.len(), 2);
    // Not in that group, or no such group: nothing changes.
    assert_eq!(
        apply(&s, &remove(GroupKey::Name("pod1".into()), name("nosuch"))),
        Err(OpError::NoChannel(name("nosuch")))
    );
    assert!(matches!(
        apply(&s, &remove(GroupKey::Name("nosuch".into()), name("db101"))),
        Err(OpError::NoGroup { .. })
    ));
    assert_eq!(s.pool.groups()[0].channels.len(), 2);
}

#[test]
fn a_switchover_is_planned_by_group_name_or_index_and_refused_at_once() {
    let s = svc();
    let switch = |to: Option<GroupKey>| OperatorOp::Switchover {
        to,
        limit: None,
        grace: None,
        force: false,
    };
    // The group is found by name (then the missing login refuses it).
    assert_eq!(
        apply(&s, &switch(Some(GroupKey::Name("group1".into())))),
        Err(OpError::NoLogin)
    );
    assert_eq!(apply(&s, &switch(None)), Err(OpError::NoLogin));
    assert_eq!(
        apply(&s, &switch(Some(GroupKey::Name("pod1".into())))),
        Err(OpError::Active(0))
    );
    assert_eq!(
        apply(&s, &switch(Some(GroupKey::Name("pod9".into())))),
        Err(OpError::NoGroup {
            key: GroupKey::Name("pod9".into()),
            groups: 2
        })
    );
    assert!(!switch(None).persists());
    assert_eq!(s.pool.floor(), 0);
}
