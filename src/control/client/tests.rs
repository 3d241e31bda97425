use super::*;

#[test]
fn answers_are_split_at_the_marker_line() {
    let mut r = &b"a\nb\n\x04err 3\nnext\n\x04ok 0 bye\n"[..];
    let a = read_answer(&mut r).unwrap();
    assert_eq!(a.lines, ["a", "b"]);
    assert!(!a.ok && a.group == 3 && !a.bye);
    let b = read_answer(&mut r).unwrap();
    assert_eq!(b.lines, ["next"]);
    assert!(b.ok && b.bye);
    assert!(read_answer(&mut r).is_err());
}

#[test]
fn each_client_error_owns_its_exit_code() {
    assert_eq!(ClientError::Usage.exit(), Exit::Usage);
    assert_eq!(
        ClientError::Unavailable("x".into()).exit(),
        Exit::Unavailable
    );
    assert_eq!(ClientError::Refused(vec!["x".into()]).exit(), Exit::Failure);
    assert_eq!(
        ClientError::Usage.to_string(),
        "-c takes one command (no newlines)"
    );
}

#[test]
fn the_places_tried_are_cut_to_a_few_and_a_count() {
    let p = |s: &str| std::path::PathBuf::from(s);
    assert_eq!(tried(&[p("/run/a.sock")]), "/run/a.sock");
    let many: Vec<_> = (0..250).map(|i| p(&format!("/tmp/d{i}/x.sock"))).collect();
    assert_eq!(
        tried(&many),
        "/tmp/d0/x.sock or /tmp/d1/x.sock or /tmp/d2/x.sock or 247 other places"
    );
}
