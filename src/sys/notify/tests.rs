use super::*;

#[test]
fn notify_socket_is_a_path_or_an_abstract_name() {
    let a = notify_addr(b"/run/systemd/notify").expect("path");
    assert_eq!(
        a.as_pathname(),
        Some(std::path::Path::new("/run/systemd/notify"))
    );
    let a = notify_addr(b"@/org/freedesktop/systemd1/notify/1").expect("abstract");
    assert_eq!(
        a.as_abstract_name(),
        Some(&b"/org/freedesktop/systemd1/notify/1"[..])
    );
    assert!(notify_addr(b"").is_none());
    assert!(notify_addr(b"relative/path").is_none());
}
