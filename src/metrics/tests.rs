use super::*;
use crate::config::{ChannelConfig, GroupConfig, Host, ListenerConfig, Policy};
use crate::health::RiseFallParams;
use std::sync::atomic::Ordering::Relaxed;

#[test]
fn exposition_has_every_series_with_labels_and_live_values() {
    let ch = |ip: &str| ChannelConfig {
        name: String::new(),
        host: Host::Ip(ip.parse().unwrap()),
        port: 80,
        maxc: 0,
        weight: 1,
        proxy_protocol: None,
    };
    let mut groups = vec![
        GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels: vec![ch("10.0.0.1")],
        },
        GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels: vec![ch("10.0.0.2")],
        },
    ];
    crate::config::names::fill(&mut groups).unwrap();
    groups[1].channels[0].name = "db2".into();
    let cfg = ListenerConfig::new("web\"1".into(), "127.0.0.1:1".parse().unwrap(), groups);
    let svc = Arc::new(Service::new(cfg, RiseFallParams::default()));
    svc.stats.accepted.fetch_add(7, Relaxed);
    let c0 = Arc::clone(&svc.pool.groups()[0].channels[0]);
    c0.sent.fetch_add(123, Relaxed);
    svc.pool.groups()[1].channels[0].force_down("x");
    let text = render(&[svc]);
    let l0 = "listener=\"web\\\"1\",group=\"0\",index=\"0\",channel=\"10.0.0.1:80\",name=\"10.0.0.1-80\"";
    let l1 = "listener=\"web\\\"1\",group=\"1\",index=\"0\",channel=\"10.0.0.2:80\",name=\"db2\"";
    for want in [
        "balance_listener_accepted_total{listener=\"web\\\"1\"} 7".to_string(),
        "balance_listener_refused_total{listener=\"web\\\"1\"} 0".into(),
        format!("balance_channel_sent_bytes_total{{{l0}}} 123"),
        format!("balance_channel_state{{{l0},state=\"ENA\"}} 1"),
        format!("balance_channel_state{{{l1},state=\"dis\"}} 1"),
        format!("balance_channel_state{{{l1},state=\"ENA\"}} 0"),
        format!("balance_channel_active_connections{{{l1}}} 0"),
        format!("balance_channel_check_duration_seconds{{{l1}}} 0"),
        format!(
            "balance_build_info{{version=\"{}\"}} 1",
            env!("CARGO_PKG_VERSION")
        ),
        "# TYPE process_cpu_seconds_total counter".into(),
        "# TYPE balance_listener_held gauge".into(),
        "# TYPE balance_channel_connections_total counter".into(),
    ] {
        assert!(text.lines().any(|l| l == want), "missing {want}\n{text}");
    }
    // Every sample line is `name{labels} number`, and no series repeats.
    let mut series = std::collections::HashSet::new();
    for l in text.lines().filter(|l| !l.starts_with('#')) {
        let (k, v) = l.rsplit_once(' ').unwrap();
        assert!(v.parse::<f64>().is_ok(), "{l}");
        assert!(series.insert(k.to_string()), "repeated {k}");
    }
}
