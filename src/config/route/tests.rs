use super::*;

#[test]
fn keys_by_kind() {
    assert_eq!(
        parse_key(RouteBy::Sni, "A.Example.com."),
        Ok(RouteKey::Name("a.example.com".into()))
    );
    assert_eq!(
        parse_key(RouteBy::Sni, "*.example.com"),
        Ok(RouteKey::Wildcard("example.com".into()))
    );
    for bad in ["", "*.", "a b", "a*.example.com", "*", "é"] {
        assert!(parse_key(RouteBy::Sni, bad).is_err(), "{bad:?}");
    }
    assert_eq!(
        parse_key(RouteBy::Src, "10.1.2.3/16"),
        Ok(RouteKey::Net("10.1.0.0".parse().unwrap(), 16))
    );
    assert_eq!(
        parse_key(RouteBy::Dst, "::ffff:10.0.0.1"),
        Ok(RouteKey::Net("10.0.0.1".parse().unwrap(), 32))
    );
    assert_eq!(
        parse_key(RouteBy::Src, "0.0.0.0/0"),
        Ok(RouteKey::Net("0.0.0.0".parse().unwrap(), 0))
    );
    for bad in ["10.0.0.0/33", "::/129", "host", "10.0.0.0/", "10.0.0.0/x"] {
        assert!(parse_key(RouteBy::Src, bad).is_err(), "{bad:?}");
    }
}

#[test]
fn targets_are_reject_a_group_name_or_index() {
    let g = vec!["eu".to_string(), "us".to_string()];
    assert_eq!(parse_target("reject", &g), Ok(RouteTarget::Reject));
    assert_eq!(parse_target("us", &g), Ok(RouteTarget::Group(1)));
    assert_eq!(parse_target("0", &g), Ok(RouteTarget::Group(0)));
    assert!(parse_target("2", &g).is_err());
    assert!(parse_target("asia", &g).unwrap_err().contains("asia"));
}

#[test]
fn urls_need_http_a_port_and_the_key() {
    assert_eq!(
        Directory::http("http://gds:6280/backend/{key}"),
        Ok(Directory::Http {
            authority: "gds:6280".into(),
            path: "/backend/{key}".into()
        })
    );
    for bad in [
        "https://gds:6280/{key}",
        "http://gds/{key}",
        "http://gds:6280/backend",
        "http://gds:0/{key}",
        "http://gds:6280",
        "http://g ds:1/{key}",
        "http://gds:1/a b/{key}",
    ] {
        assert!(Directory::http(bad).is_err(), "{bad}");
    }
    assert!(Directory::argv(vec!["/bin/echo".into(), "x".into()]).is_err());
    assert!(Directory::argv(vec!["/bin/echo".into(), "--key={key}".into()]).is_ok());
}
