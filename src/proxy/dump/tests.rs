#[test]
fn escapes_control_bytes() {
    assert_eq!(
        super::escape(b"a\r\n\x1b[2J\\\x00"),
        "a\\r\\n\n\\x1b[2J\\\\\\x00"
    );
}
