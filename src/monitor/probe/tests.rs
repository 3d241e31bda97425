//! Escaping and matching backend bytes.

use super::*;

#[test]
fn escape_hides_terminal_escapes_and_caps_length() {
    assert_eq!(escape(b"ok\x1b[31m\r\n\\"), "ok\\x1b[31m\\r\\n\\\\");
    assert!(escape(&[b'a'; 200]).ends_with("..."));
    assert!(escape(&[b'a'; 200]).len() < 80);
}

#[test]
fn contains_finds_substrings() {
    assert!(contains(b"+PONG\r\n", b"PONG"));
    assert!(!contains(b"-ERR", b"PONG"));
    assert!(contains(b"x", b""));
}
