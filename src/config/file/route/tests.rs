use crate::config::Overlay;
use crate::config::file::parse;
use crate::config::route::{Directory, RouteBy, RouteKey, RouteTarget};

const TWO: &str = "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - channels: [\"10.0.0.1:80\"]\n      - channels: [\"10.0.0.2:80\"]\n    route:\n";

fn with(route: &str) -> Result<crate::config::Config, String> {
    parse(&format!("{TWO}{route}"), &Overlay::default()).map_err(|e| e.0)
}

#[test]
fn a_full_route_block_resolves() {
    let c = with(
        "      by: sni\n      map:\n        \"*.Example.com\": \"1\"\n        a.example.com: reject\n      lookup:\n        url: \"http://gds:6280/backend/{key}\"\n        ttl: 5m\n        stale: 1h\n      default: group0\n      peek_timeout: 500ms\n",
    )
    .unwrap();
    let r = c.listeners[0].route.as_ref().unwrap();
    assert_eq!(r.by, RouteBy::Sni);
    assert!(r.map.contains(&(
        RouteKey::Wildcard("example.com".into()),
        RouteTarget::Group(1)
    )));
    assert!(
        r.map
            .contains(&(RouteKey::Name("a.example.com".into()), RouteTarget::Reject))
    );
    let l = r.lookup.as_ref().unwrap();
    assert_eq!(
        l.directory,
        Directory::Http {
            authority: "gds:6280".into(),
            path: "/backend/{key}".into()
        }
    );
    assert_eq!(
        (l.ttl.as_secs(), l.stale.as_secs(), l.negative_ttl.as_secs()),
        (300, 3600, 10)
    );
    assert_eq!(r.peek_timeout.as_millis(), 500);
    assert_eq!(r.default, RouteTarget::Group(0));
}

#[test]
fn bad_route_blocks_are_one_line_errors_naming_the_key() {
    let cases = [
        (
            "      by: sni\n      default: \"2\"\n",
            "route.default: unknown target",
        ),
        (
            "      by: sni\n      map: { \"a b\": \"0\" }\n      default: reject\n",
            "route.map: bad key",
        ),
        (
            "      by: src\n      map: { \"10.0.0.0/40\": \"0\" }\n      default: reject\n",
            "route.map: bad key",
        ),
        (
            "      by: sni\n      map: { a.example.com: nowhere }\n      default: reject\n",
            "unknown target",
        ),
        (
            "      by: sni\n      lookup: { timeout: 1s }\n      default: reject\n",
            "route.lookup: give url or argv",
        ),
        (
            "      by: sni\n      lookup: { url: \"http://x:1/a\" }\n      default: reject\n",
            "route.lookup.url",
        ),
        (
            "      by: sni\n      lookup: { argv: [\"/bin/echo\", \"x\"] }\n      default: reject\n",
            "route.lookup.argv",
        ),
        (
            "      by: src\n      peek_timeout: 1s\n      default: reject\n",
            "only with by: sni",
        ),
        (
            "      by: sni\n      file: /nonexistent/routes\n      default: reject\n",
            "route.file",
        ),
        (
            "      by: host\n      default: reject\n",
            "unknown variant `host`",
        ),
        ("      by: sni\n", "default"),
        (
            "      by: sni\n      default: reject\n      colour: blue\n",
            "colour",
        ),
    ];
    for (route, want) in cases {
        let e = with(route).unwrap_err();
        assert!(e.contains(want) && !e.contains('\n'), "{route}: {e}");
    }
}

#[test]
fn targets_are_group_names_given_or_default() {
    let named = "listeners:\n  - name: a\n    bind: \"127.0.0.1:8000\"\n    groups:\n      - name: eu\n        channels: [\"10.0.0.1:80\"]\n      - channels: [\"10.0.0.2:80\"]\n    route:\n      by: dst\n      map: { \"10.1.0.0/16\": eu, \"10.2.0.0/16\": group1 }\n      default: reject\n";
    let c = parse(named, &Overlay::default()).unwrap();
    let r = c.listeners[0].route.as_ref().unwrap();
    assert!(r.map.contains(&(
        RouteKey::Net("10.1.0.0".parse().unwrap(), 16),
        RouteTarget::Group(0)
    )));
    assert!(r.map.contains(&(
        RouteKey::Net("10.2.0.0".parse().unwrap(), 16),
        RouteTarget::Group(1)
    )));
    assert_eq!(r.groups, vec!["eu".to_string(), "group1".to_string()]);
    let e = parse(
        &named.replace("name: eu", "name: reject"),
        &Overlay::default(),
    )
    .unwrap_err()
    .0;
    assert!(e.contains("named reject"), "{e}");
    let e = parse(&named.replace("eu, ", "us, "), &Overlay::default())
        .unwrap_err()
        .0;
    assert!(e.contains("unknown target \"us\""), "{e}");
}
