use super::*;

fn ch(host: &str, port: u16) -> ChannelState {
    ChannelState {
        host: host.into(),
        port,
        admin: Admin::Enabled,
        maxc: 0,
        weight: 1,
    }
}

#[test]
fn state_documents_round_trip_and_bad_values_are_rejected_whole() {
    let good = ListenerState {
        configured: vec![vec!["127.0.0.1:1".into()]],
        groups: vec![GroupState {
            policy: "rr".into(),
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
    assert!(mutate(&|l| l.groups[0].policy = "random".into()).is_err());
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
