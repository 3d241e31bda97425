use super::*;
use crate::atomic_enum::U8Enum;

fn ch(host: &str, port: u16) -> ChannelState {
    ChannelState {
        name: None,
        host: host.into(),
        port,
        admin: Admin::Enabled,
        maxc: 0,
        weight: 1,
        health_off: false,
    }
}

#[test]
fn state_documents_round_trip_and_bad_values_are_rejected_whole() {
    let good = ListenerState {
        configured: vec![vec!["127.0.0.1:1".into()]],
        groups: vec![GroupState {
            name: None,
            policy: Policy::RoundRobin,
            channels: vec![ch("127.0.0.1", 1), ch("::1", 2)],
        }],
        spin_until_ms: None,
        monitor_disabled: false,
    };
    let mut doc = Doc {
        version: VERSION,
        listeners: BTreeMap::new(),
    };
    doc.listeners.insert("l".into(), good.clone());
    let text = serde_json::to_string(&doc).unwrap();
    let back = parse_doc(&text).unwrap();
    assert_eq!(back.listeners["l"], good);

    for bad in [
        "",
        "{",
        "null",
        "{\"version\":2,\"listeners\":{}}",
        "{\"version\":1,\"listeners\":{},\"extra\":1}",
    ] {
        assert!(parse_doc(bad).is_err(), "{bad:?}");
    }
    let mutate = |f: &dyn Fn(&mut ListenerState)| {
        let mut l = good.clone();
        f(&mut l);
        let mut d = Doc {
            version: VERSION,
            listeners: BTreeMap::new(),
        };
        d.listeners.insert("l".into(), l);
        parse_doc(&serde_json::to_string(&d).unwrap())
    };
    // Unknown words are errors (the file is ignored whole), never a default.
    let text = serde_json::to_string(&doc).unwrap();
    for (from, to) in [
        ("\"policy\":\"rr\"", "\"policy\":\"random\""),
        ("\"policy\":\"rr\"", "\"policy\":\"RR\""),
        ("\"admin\":\"enabled\"", "\"admin\":\"off\""),
    ] {
        assert!(text.contains(from), "{text}");
        let e = parse_doc(&text.replacen(from, to, 1)).unwrap_err();
        assert!(e.contains("unknown variant"), "{e}");
    }
    assert!(mutate(&|l| l.groups[0].channels[0].host = "bad host".into()).is_err());
    assert!(mutate(&|l| l.groups[0].channels[0].port = 0).is_err());
    assert!(mutate(&|l| l.groups[0].channels[0].weight = MAX_WEIGHT + 1).is_err());
    assert!(mutate(&|l| l.groups[0].channels.clear()).is_err());
    assert!(mutate(&|l| l.groups.clear()).is_err());
}

#[test]
fn atomic_write_replaces_the_file_and_leaves_no_temp_file() {
    let dir = std::env::temp_dir().join(format!("balance-state-test-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("s.json");
    write_atomic(&p, b"one").unwrap();
    write_atomic(&p, b"two").unwrap();
    assert_eq!(std::fs::read(&p).unwrap(), b"two");
    let names: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names.len(), 1, "{names:?}");
    std::fs::remove_dir_all(&dir).unwrap();
}

/// A file written by the version that stored the policy as a plain string
/// (before policies were typed) loads unchanged, and is written back in the
/// same words.
#[test]
fn a_state_file_in_the_string_policy_format_still_loads() {
    let old = r#"{
  "version": 1,
  "listeners": {
    "db": {
      "configured": [
        [
          "127.0.0.1:3306"
        ],
        [
          "127.0.0.2:3306",
          "127.0.0.3:3306"
        ]
      ],
      "groups": [
        {
          "policy": "rr",
          "channels": [
            {
              "host": "127.0.0.1",
              "port": 3306,
              "admin": "drain",
              "maxc": 10,
              "weight": 1
            }
          ]
        },
        {
          "policy": "hash",
          "channels": [
            {
              "host": "127.0.0.2",
              "port": 3306,
              "admin": "disabled",
              "maxc": 0,
              "weight": 2
            },
            {
              "host": "127.0.0.3",
              "port": 3306,
              "admin": "enabled",
              "maxc": 0,
              "weight": 1
            }
          ]
        }
      ],
      "spin_until_ms": 1700000000000,
      "monitor_disabled": true
    }
  }
}
"#;
    let doc = parse_doc(old).unwrap();
    let l = &doc.listeners["db"];
    assert_eq!(l.groups[0].policy, Policy::RoundRobin);
    assert_eq!(l.groups[1].policy, Policy::Hash);
    assert_eq!(l.groups[0].channels[0].admin, Admin::Drain);
    assert_eq!(l.groups[1].channels[0].admin, Admin::Disabled);
    assert_eq!(l.spin_until_ms, Some(1_700_000_000_000));
    let mut again = serde_json::to_string_pretty(&doc).unwrap();
    again.push('\n');
    assert_eq!(again, old);
}

#[test]
fn every_policy_is_stored_by_its_word() {
    for &p in Policy::ALL {
        assert_eq!(
            serde_json::to_string(&p).unwrap(),
            format!("\"{}\"", p.word())
        );
        assert_eq!(Policy::from_word(p.word()), Some(p));
    }
}

#[test]
fn restore_gives_configured_channels_the_configured_names_and_created_ones_their_own() {
    use crate::config::{ChannelConfig, GroupConfig, Host, ListenerConfig};
    use std::os::unix::fs::PermissionsExt;
    let conf = |name: &str, port| ChannelConfig {
        name: name.into(),
        host: Host::Ip("127.0.0.1".parse().unwrap()),
        port,
        maxc: 0,
        weight: 4,
        proxy_protocol: None,
    };
    let mut groups = vec![GroupConfig {
        on_demand: None,
        name: "pod1".into(),
        policy: Policy::RoundRobin,
        proxy_protocol: None,
        channels: vec![conf("db101", 1), conf("", 2)],
    }];
    crate::config::names::fill(&mut groups).unwrap();
    let cfg = ListenerConfig::new("l".into(), "127.0.0.1:9".parse().unwrap(), groups);
    let svc = Service::new(cfg, crate::health::RiseFallParams::default());
    // Saved under other names (the file renamed them since), plus a
    // created channel whose saved name a configured one now has, and one
    // from before names.
    let saved = |name: Option<&str>, port, admin: Admin| ChannelState {
        name: name.map(String::from),
        admin,
        ..ch("127.0.0.1", port)
    };
    let st = ListenerState {
        configured: vec![vec!["127.0.0.1:1".into(), "127.0.0.1:2".into()]],
        groups: vec![GroupState {
            name: Some("old".into()),
            policy: Policy::Hash,
            channels: vec![
                saved(Some("was-db101"), 1, Admin::Disabled),
                saved(None, 2, Admin::Enabled),
                saved(Some("db101"), 3, Admin::Drain),
                saved(None, 4, Admin::Disabled),
            ],
        }],
        spin_until_ms: None,
        monitor_disabled: false,
    };
    let mut doc = Doc {
        version: VERSION,
        listeners: BTreeMap::new(),
    };
    doc.listeners.insert("l".into(), st);
    let dir = std::env::temp_dir().join(format!("balance-state-names-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
    let path = dir.join("state.json");
    write_atomic(&path, serde_json::to_string(&doc).unwrap().as_bytes()).unwrap();
    StateFile::load(&path).restore(&svc);
    let g = svc.pool.groups();
    let names: Vec<&str> = g[0].channels.iter().map(|c| c.name()).collect();
    assert_eq!(names, ["db101", "127.0.0.1-2", "db101-2", "127.0.0.1-4"]);
    assert_eq!(g[0].name(), "pod1");
    assert_eq!(g[0].policy(), Policy::Hash);
    assert_eq!(g[0].channels[0].admin(), Admin::Disabled);
    assert_eq!(g[0].channels[2].admin(), Admin::Drain);
    // The configured weight stays the initial one; a created channel's is
    // its own.
    assert_eq!(g[0].channels[0].weight(), 1);
    assert_eq!(g[0].channels[0].initial_weight(), 4);
    assert_eq!(g[0].channels[3].initial_weight(), 1);
    std::fs::remove_dir_all(&dir).unwrap();
}
