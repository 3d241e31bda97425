use super::*;

#[test]
fn endpoints_parse_and_refuse() {
    assert_eq!(
        parse_endpoints("http://127.0.0.1:2379, http://[::1]:2379").unwrap(),
        vec!["http://127.0.0.1:2379", "http://[::1]:2379"]
    );
    assert!(parse_endpoints("http://etcd.example:2379/").is_ok());
    for bad in [
        "",
        "127.0.0.1:2379",
        "https://h:2379",
        "http://h",
        "http://h:0",
        "http://h:99999",
        "http://h:2379/v3",
        "http://u@h:2379",
        "http://h:2379,,http://g:1",
        "http://:2379",
    ] {
        let e = parse_endpoints(bad).unwrap_err();
        assert!(!e.contains('\n'), "{e}");
    }
}

#[test]
fn prefix_id_and_fallback_are_checked() {
    let ok = FleetConfig::new(vec!["http://127.0.0.1:2379".into()]);
    assert!(ok.validate().is_ok());
    for p in ["", "/", "balance", "/b/", "/a b"] {
        let c = FleetConfig {
            prefix: p.into(),
            ..ok.clone()
        };
        assert!(c.validate().unwrap_err().starts_with("prefix: "), "{p}");
    }
    for id in ["", "a b", "a/b"] {
        let c = FleetConfig {
            id: Some(id.into()),
            ..ok.clone()
        };
        assert!(c.validate().unwrap_err().starts_with("id: "), "{id}");
    }
    let c = FleetConfig {
        fallback: Some(Duration::from_millis(10)),
        ..ok.clone()
    };
    assert_eq!(c.validate().unwrap_err(), "fallback: must be 100ms-1h");
}
