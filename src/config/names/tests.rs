use super::*;
use crate::config::{ChannelConfig, Policy};

fn ch(name: &str, host: &str, port: u16) -> ChannelConfig {
    ChannelConfig {
        name: name.into(),
        host: crate::config::grammar::host_literal(host).unwrap(),
        port,
        maxc: 0,
        weight: 1,
        proxy_protocol: None,
    }
}

fn group(name: &str, channels: Vec<ChannelConfig>) -> GroupConfig {
    GroupConfig {
        on_demand: None,
        name: name.into(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels,
    }
}

#[test]
fn defaults_are_stable_and_unique() {
    let make = || {
        vec![
            group("", vec![ch("", "db1", 3306), ch("", "::1", 80)]),
            group(
                "pod1",
                vec![
                    ch("", "db1", 3306),
                    ch("db1-3306-2", "x", 1),
                    ch("", "db1", 3306),
                ],
            ),
        ]
    };
    let mut a = make();
    fill(&mut a).unwrap();
    let names: Vec<_> = a
        .iter()
        .flat_map(|g| g.channels.iter().map(|c| c.name.clone()))
        .collect();
    assert_eq!(
        names,
        [
            "db1-3306",
            "__1-80",
            "db1-3306-3",
            "db1-3306-2",
            "db1-3306-4"
        ]
    );
    assert_eq!(a[0].name, "group0");
    assert_eq!(a[1].name, "pod1");
    let mut b = make();
    fill(&mut b).unwrap();
    assert_eq!(a, b);
}

#[test]
fn bad_and_duplicate_names_are_refused() {
    for bad in [
        "",
        "123",
        "-1",
        ".a",
        "a/b",
        "a;b",
        "a:b",
        "a b",
        &"x".repeat(65),
    ] {
        assert!(!is_name(bad), "{bad:?}");
    }
    for good in ["db101", "1a", "a.b-c_d", "0x1"] {
        assert!(is_name(good), "{good:?}");
    }
    let mut g = vec![group("", vec![ch("42", "a", 1)])];
    assert!(matches!(fill(&mut g), Err(NameError::Bad { .. })));
    let mut g = vec![
        group("", vec![ch("a", "a", 1)]),
        group("", vec![ch("a", "b", 1)]),
    ];
    assert_eq!(
        fill(&mut g).unwrap_err().to_string(),
        "channel name \"a\" is used twice"
    );
    let mut g = vec![
        group("p", vec![ch("", "a", 1)]),
        group("p", vec![ch("", "b", 1)]),
    ];
    assert!(matches!(
        fill(&mut g),
        Err(NameError::Duplicate { what: "group", .. })
    ));
}

#[test]
fn long_hosts_are_cut_to_fit() {
    let host = Host::Name("h".repeat(200));
    let n = default_channel(&host, 65535);
    assert!(n.len() <= MAX_NAME - 2 && is_name(&n), "{n}");
}
