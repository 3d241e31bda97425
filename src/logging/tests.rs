use super::*;

#[test]
fn journal_lines_carry_the_priority_on_every_line() {
    assert_eq!(
        journal_lines(libc::LOG_ERR, b"boom\n"),
        b"<3>boom\n".to_vec()
    );
    assert_eq!(
        journal_lines(libc::LOG_WARNING, b"a\nb\n"),
        b"<4>a\n<4>b\n".to_vec()
    );
    assert!(journal_lines(libc::LOG_INFO, b"").is_empty());
}

#[test]
fn levels_map_to_syslog_priorities() {
    assert_eq!(priority(Level::ERROR), 3);
    assert_eq!(priority(Level::WARN), 4);
    assert_eq!(priority(Level::INFO), 6);
    assert_eq!(priority(Level::DEBUG), 7);
    assert_eq!(priority(Level::TRACE), 7);
}
