use super::*;
use crate::config::{ChannelConfig, GroupConfig, ListenerConfig};
use crate::health::RiseFallParams;

fn svc() -> Service {
    let ch = |ip: &str, port| ChannelConfig {
        name: String::new(),
        host: Host::Ip(ip.parse().unwrap()),
        port,
        maxc: 0,
        weight: 1,
        proxy_protocol: None,
    };
    let cfg = ListenerConfig::new(
        "l".into(),
        "127.0.0.1:1".parse().unwrap(),
        vec![
            GroupConfig {
                on_demand: None,
                name: String::new(),
                policy: Policy::RoundRobin,
                proxy_protocol: None,
                channels: vec![ch("10.0.0.1", 80), ch("10.0.0.2", 81)],
            },
            GroupConfig {
                on_demand: None,
                name: String::new(),
                policy: Policy::Hash,
                proxy_protocol: None,
                channels: vec![ch("::1", 82)],
            },
        ],
    );
    Service::new(cfg, RiseFallParams::default())
}

#[test]
fn one_view_per_channel_in_group_then_channel_order_with_live_values() {
    let s = svc();
    s.pool.groups()[1].channels[0].sent.store(9, Relaxed);
    s.pool.groups()[0].channels[1].set_admin(Admin::Drain);
    s.stats.accepted.store(3, Relaxed);
    let v = ListenerView::of(&s);
    assert_eq!(v.accepted, 3);
    assert_eq!(v.groups, [(Policy::RoundRobin, 2), (Policy::Hash, 1)]);
    let at: Vec<_> = v.channels.iter().map(|c| (c.group, c.index)).collect();
    assert_eq!(at, [(0, 0), (0, 1), (1, 0)]);
    assert_eq!(v.channels[1].state, ShownState::Drain);
    assert_eq!(v.channels[2].sent, 9);
    assert_eq!(v.channels[2].policy, Policy::Hash);
    assert_eq!(v.channels[2].host(), "::1");
    assert_eq!(v.channels[2].shown_address(), "::1");
}

#[test]
fn a_name_shows_its_first_address_or_itself_when_unresolved() {
    let view = |addrs: Vec<SocketAddr>| {
        let s = svc();
        let ch = Arc::clone(&s.pool.groups()[0].channels[0]);
        ch.set_target(Target {
            host: Host::Name("db".into()),
            port: 80,
            addrs,
        });
        ChannelView::of(0, 0, Policy::RoundRobin, &ch)
    };
    let v = view(vec!["10.1.1.1:80".parse().unwrap()]);
    assert_eq!(
        (v.host(), v.shown_address()),
        ("db".into(), "10.1.1.1".into())
    );
    let v = view(vec![]);
    assert_eq!(v.shown_address(), "db");
}

#[test]
fn policy_words_are_lowercase() {
    assert_eq!(policy_word(Policy::Hash), "hash");
    assert_eq!(policy_word(Policy::RoundRobin), "rr");
}

#[test]
fn fleet_status_shows_only_in_fleet_mode() {
    use crate::service::fleet::Role;
    let s = svc();
    let v = ListenerView::of(&s);
    assert!(v.fleet.is_none());
    let text = prometheus::exposition(std::slice::from_ref(&v), Pipes::now(), None);
    assert!(!text.contains("balance_fleet_"));
    let j: serde_json::Value = serde_json::from_str(&show::json(&v, Pipes::now())).unwrap();
    assert!(j["listener"]["fleet"].is_null());

    s.fleet.set_role(Role::Follower, 1);
    s.fleet.set_etcd_up(true);
    s.fleet.set_names("h:2", Some("h:1"));
    s.fleet.set_members(vec![crate::service::fleet::Member {
        id: "h:1".into(),
        role: "prober".into(),
        pid: 1,
        host: "h".into(),
        since_ms: 5,
    }]);
    let v = ListenerView::of(&s);
    let j: serde_json::Value = serde_json::from_str(&show::json(&v, Pipes::now())).unwrap();
    let f = &j["listener"]["fleet"];
    assert_eq!(
        (f["role"].as_str(), f["etcd"].as_str()),
        (Some("follower"), Some("ok"))
    );
    assert_eq!(
        (f["prober"].as_str(), f["id"].as_str()),
        (Some("h:1"), Some("h:2"))
    );
    assert_eq!(
        f["members"],
        serde_json::json!([{"id": "h:1", "role": "prober", "pid": 1, "host": "h", "since_ms": 5}])
    );
    let text = prometheus::exposition(std::slice::from_ref(&v), Pipes::now(), None);
    assert!(text.contains("balance_fleet_role{listener=\"l\",role=\"follower\"} 1"));
    assert!(text.contains("balance_fleet_role{listener=\"l\",role=\"prober\"} 0"));
    assert!(text.contains("balance_fleet_etcd_up{listener=\"l\"} 1"));
    let line = show::fleet_line(v.fleet.as_ref().unwrap());
    assert!(
        line.starts_with("fleet: follower for ") && line.contains("prober h:1"),
        "{line}"
    );
}

#[test]
fn a_fenced_fleet_listener_shows_its_fleet_fence() {
    use crate::service::fence::fleet::LastFence;
    use crate::service::fleet::Role;
    let s = svc();
    s.fleet.set_role(Role::Prober, 1);
    let j = |s: &Service| -> serde_json::Value {
        serde_json::from_str(&show::json(&ListenerView::of(s), Pipes::now())).unwrap()
    };
    // Not fenced: nothing shown.
    assert!(j(&s)["listener"]["fleet"]["fence"].is_null());
    let mut cfg = s.cfg.clone();
    cfg.fence = true;
    let s = s.rebuild(cfg, RiseFallParams::default(), |_, _| Vec::new());
    s.fence.fleet.update(|v| {
        v.decided = Some(1);
        v.epoch = 42;
        v.waiting_for = vec!["h:3".into()];
        v.fences = 2;
        v.last = Some(LastFence {
            from: Some(0),
            to: 1,
            members: 3,
            reset: 4,
            held_ms: 35,
            at_ms: 7,
        });
    });
    let f = &j(&s)["listener"]["fleet"]["fence"];
    assert_eq!(
        (&f["group"], &f["epoch"], &f["granted"], &f["waiting_for"]),
        (
            &serde_json::json!(1),
            &serde_json::json!(42),
            &serde_json::json!(false),
            &serde_json::json!(["h:3"])
        )
    );
    assert_eq!(
        f["last"],
        serde_json::json!({"from": 0, "to": 1, "members": 3, "reset": 4, "held_ms": 35, "at_ms": 7})
    );
    let v = ListenerView::of(&s);
    let text = prometheus::exposition(std::slice::from_ref(&v), Pipes::now(), None);
    for line in [
        "balance_fleet_fence_granted{listener=\"l\"} 0",
        "balance_fleet_fence_waiting_members{listener=\"l\"} 1",
        "balance_fleet_fences_total{listener=\"l\"} 2",
        "balance_fleet_self_fences_total{listener=\"l\"} 0",
    ] {
        assert!(text.contains(line), "{line}\n{text}");
    }
}
