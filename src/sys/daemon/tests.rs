use super::*;

#[test]
fn the_report_carries_warnings_and_the_verdict() {
    let r = parse_report("W no syslog\nOK\n");
    assert_eq!(r.warnings, vec!["no syslog".to_string()]);
    assert_eq!(r.outcome, Ok(()));
    let r = parse_report("E 71 cannot write pidfile /x: No such file\n");
    assert_eq!(
        r.outcome,
        Err((Some(71), "cannot write pidfile /x: No such file".into()))
    );
}

#[test]
fn no_verdict_means_the_daemon_died() {
    let r = parse_report("W something\n");
    assert!(matches!(r.outcome, Err((None, ref m)) if m.contains("exited during start-up")));
    assert!(parse_report("").outcome.is_err());
}

#[test]
fn messages_stay_on_one_line() {
    assert_eq!(one_line("a\nb\rc"), "a b c");
}
