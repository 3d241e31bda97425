use super::*;
use crate::config::route::{RouteKey, parse_key};

fn cfg(by: RouteBy) -> RouteConfig {
    RouteConfig {
        by,
        map: vec![],
        file: None,
        lookup: None,
        default: RouteTarget::Group(0),
        peek_timeout: Duration::from_secs(1),
        peek_bytes: 16384,
        groups: vec!["eu".into(), "us".into()],
    }
}

#[tokio::test]
async fn map_first_then_default_and_the_counters() {
    let mut c = cfg(RouteBy::Sni);
    c.map = vec![
        (
            parse_key(RouteBy::Sni, "*.us.example.com").unwrap(),
            RouteTarget::Group(1),
        ),
        (
            RouteKey::Name("bad.example.com".into()),
            RouteTarget::Reject,
        ),
    ];
    let r = Router::new(&c, "t");
    let key = r.parse_key("X.US.example.com").unwrap();
    assert_eq!(
        r.decide(Some(&key)).await,
        Decision {
            target: RouteTarget::Group(1),
            source: Source::Map
        }
    );
    let none = r.decide(None).await;
    assert_eq!(none.source, Source::NoKey);
    let bad = r.parse_key("bad.example.com").unwrap();
    assert_eq!(r.decide(Some(&bad)).await.target, RouteTarget::Reject);
    let other = r.parse_key("other.example.com").unwrap();
    assert_eq!(r.decide(Some(&other)).await.source, Source::Unmapped);
    assert_eq!(r.stats.hits.load(Relaxed), 2);
    assert_eq!(r.stats.misses.load(Relaxed), 2);
    assert_eq!(r.stats.rejects.load(Relaxed), 1);
    assert_eq!(r.target_name(RouteTarget::Group(1)), "us");
    assert!(r.parse_key("not a name").is_err());
}

#[test]
fn address_keys_are_canonical() {
    let r = Router::new(&cfg(RouteBy::Src), "t");
    let peer: SocketAddr = "[::ffff:10.0.0.1]:5000".parse().unwrap();
    assert_eq!(r.addr_key(None, peer).unwrap().text(), "10.0.0.1");
    let d = Router::new(&cfg(RouteBy::Dst), "t");
    let local: SocketAddr = "10.0.0.2:443".parse().unwrap();
    assert_eq!(d.addr_key(Some(local), peer).unwrap().text(), "10.0.0.2");
}
