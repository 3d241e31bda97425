use super::*;

fn listener(args: &[&str]) -> Result<crate::config::ListenerConfig, UsageError> {
    let argv = std::iter::once("balance").chain(args.iter().copied());
    match parse(argv)? {
        Parsed::Invocation(inv) => match *inv {
            Invocation::Run(cfg) => cfg
                .listeners
                .into_iter()
                .next()
                .ok_or_else(|| UsageError("no listener".into())),
            _ => Err(UsageError("not a run".into())),
        },
        Parsed::Print(_) => Err(UsageError("printed".into())),
    }
}

#[test]
fn on_down_and_on_up_long_options_set_the_listener() {
    let l = listener(&[
        "--on-down",
        "shutdown",
        "--on-up",
        "shutdown-backup",
        "8000",
        "127.0.0.1:1",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert!(l.on_down_shutdown && l.on_up_shutdown_backup);
    let l = listener(&["8000", "127.0.0.1:1"]).unwrap_or_else(|e| panic!("{e}"));
    assert!(!l.on_down_shutdown && !l.on_up_shutdown_backup);
    let e = listener(&["--on-down", "reboot", "8000", "127.0.0.1:1"]).err();
    assert!(e.is_some_and(|e| e.0.contains("bad --on-down \"reboot\"")));
}

#[test]
fn monitor_spec_is_parsed_and_bad_specs_are_usage_errors() {
    let l = listener(&[
        "-m",
        "connect:timeout=0.4:command=/bin/checksvc -s %H -p %P >/dev/null:pass=0,2:interval=10",
        "8000",
        "127.0.0.1:1",
    ])
    .unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(l.monitor.map(|m| m.checks.len()), Some(2));
    let e = listener(&["-m", "connect:bogus", "8000", "127.0.0.1:1"]).err();
    assert!(e.is_some_and(|e| e.0.starts_with("bad -m spec: unknown key \"bogus\"")));
}
