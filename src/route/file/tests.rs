use super::*;
use crate::config::route::RouteTarget;
use crate::route::table::Key;

#[test]
fn bad_lines_are_reported_and_skipped_the_rest_loads() {
    let groups = ["eu".to_string(), "us".to_string()];
    let text = "# tenants\n\na.example.com eu\n*.example.org us # comment\nbad line here\nb.example.com asia\nc!.example.com eu\nd.example.com reject\n";
    let (t, bad) = parse(text, RouteBy::Sni, &groups);
    assert_eq!(t.len(), 3);
    assert_eq!(bad.iter().map(|b| b.0).collect::<Vec<_>>(), vec![5, 6, 7]);
    assert_eq!(
        t.get(Key::Name("x.example.org")),
        Some(RouteTarget::Group(1))
    );
    assert_eq!(t.get(Key::Name("d.example.com")), Some(RouteTarget::Reject));
}

#[test]
fn a_changed_file_is_read_again_and_a_vanished_one_keeps_its_table() {
    let dir = std::env::temp_dir().join(format!("balance-route-file-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join("routes");
    std::fs::write(&p, "10.0.0.0/8 0\n").unwrap();
    let groups: Arc<[String]> = vec!["0".to_string(), "1".to_string()].into();
    let f = Arc::new(RouteFile::open(p.clone(), RouteBy::Src, groups, "t"));
    let ip = Key::Ip("10.1.1.1".parse().unwrap());
    assert_eq!(f.table("t").get(ip), Some(RouteTarget::Group(0)));
    std::fs::write(&p, "10.0.0.0/8 1\n10.1.0.0/16 0\n192.168.0.0/16 1\n").unwrap();
    f.next_check.store(0, Relaxed);
    // No runtime here: the read happens inline.
    assert_eq!(
        f.table("t").get(Key::Ip("10.2.0.1".parse().unwrap())),
        Some(RouteTarget::Group(1))
    );
    std::fs::remove_file(&p).unwrap();
    f.next_check.store(0, Relaxed);
    assert_eq!(f.table("t").len(), 3);
    assert!(
        RouteFile::open(p, RouteBy::Src, vec![].into(), "t")
            .table
            .load()
            .is_empty()
    );
    let _ = std::fs::remove_dir_all(&dir);
}
