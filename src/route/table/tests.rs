use super::*;
use crate::config::route::{RouteBy, parse_key};

fn table(by: RouteBy, rows: &[(&str, usize)]) -> Table {
    Table::new(
        rows.iter()
            .map(|(k, g)| (parse_key(by, k).unwrap(), RouteTarget::Group(*g))),
    )
}

#[test]
fn exact_names_win_over_wildcards_and_the_longest_wildcard_wins() {
    let t = table(
        RouteBy::Sni,
        &[
            ("*.example.com", 1),
            ("*.eu.example.com", 2),
            ("www.eu.example.com", 3),
        ],
    );
    let g = |n| t.get(Key::Name(n));
    assert_eq!(g("a.example.com"), Some(RouteTarget::Group(1)));
    assert_eq!(g("a.b.example.com"), Some(RouteTarget::Group(1)));
    assert_eq!(g("x.eu.example.com"), Some(RouteTarget::Group(2)));
    assert_eq!(g("www.eu.example.com"), Some(RouteTarget::Group(3)));
    assert_eq!(g("example.com"), None, "a wildcard needs a label before it");
    assert_eq!(g("example.org"), None);
}

#[test]
fn the_longest_prefix_wins_and_families_stay_apart() {
    let t = table(
        RouteBy::Src,
        &[
            ("10.0.0.0/8", 1),
            ("10.1.0.0/16", 2),
            ("10.1.2.3", 3),
            ("::/0", 4),
            ("2001:db8::/32", 5),
        ],
    );
    let g = |s: &str| t.get(Key::Ip(s.parse().unwrap()));
    assert_eq!(g("10.9.9.9"), Some(RouteTarget::Group(1)));
    assert_eq!(g("10.1.9.9"), Some(RouteTarget::Group(2)));
    assert_eq!(g("10.1.2.3"), Some(RouteTarget::Group(3)));
    assert_eq!(
        g("::ffff:10.1.2.3"),
        Some(RouteTarget::Group(3)),
        "mapped IPv4 is IPv4"
    );
    assert_eq!(g("192.168.0.1"), None);
    assert_eq!(g("2001:db8::1"), Some(RouteTarget::Group(5)));
    assert_eq!(g("2001:db9::1"), Some(RouteTarget::Group(4)));
    assert_eq!(t.len(), 5);
}
