use super::*;

fn srv(b: &str, s: &str) -> SrvRef {
    SrvRef {
        backend: b.into(),
        server: s.into(),
    }
}

#[test]
fn commands_parse_into_changes_and_views() {
    use Change::*;
    let cases = [
        (
            "enable server app/a",
            Cmd::Set(srv("app", "a"), Admin(crate::pool::Admin::Enabled)),
        ),
        (
            "disable server #1/#2",
            Cmd::Set(srv("#1", "#2"), Admin(crate::pool::Admin::Disabled)),
        ),
        (
            "set server app/a state drain",
            Cmd::Set(srv("app", "a"), Admin(crate::pool::Admin::Drain)),
        ),
        (
            "set server app/a state maint",
            Cmd::Set(srv("app", "a"), Admin(crate::pool::Admin::Disabled)),
        ),
        (
            "set server app/a weight 7",
            Cmd::Set(srv("app", "a"), Weight(WeightSet::Abs(7))),
        ),
        (
            "set weight app/a 50%",
            Cmd::Set(srv("app", "a"), Weight(WeightSet::Percent(50))),
        ),
        ("  get   weight app/a ", Cmd::GetWeight(srv("app", "a"))),
        (
            "enable health app/a",
            Cmd::Set(srv("app", "a"), Health(true)),
        ),
        (
            "disable health app/a",
            Cmd::Set(srv("app", "a"), Health(false)),
        ),
        ("show servers state", Cmd::ShowServersState(None)),
        (
            "show servers state app",
            Cmd::ShowServersState(Some("app".into())),
        ),
        ("show info typed", Cmd::ShowInfo { typed: true }),
        (
            "set timeout cli 60",
            Cmd::SetTimeoutCli(Duration::from_secs(60)),
        ),
        (
            "set timeout cli 1500ms",
            Cmd::SetTimeoutCli(Duration::from_millis(1500)),
        ),
        ("", Cmd::Nop),
        ("prompt", Cmd::Prompt),
        ("quit", Cmd::Quit),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line), Ok(want), "{line}");
    }
}

#[test]
fn show_stat_takes_haproxys_filters() {
    let Ok(Cmd::ShowStat(f)) = parse("show stat typed 2 4 -1") else {
        panic!("show stat");
    };
    assert!(f.typed && !f.up);
    assert_eq!((f.iid, f.kinds, f.sid), (2, 4, -1));
    // Two numbers are not a filter (HAProxy wants all three).
    let Ok(Cmd::ShowStat(f)) = parse("show stat 2 4") else {
        panic!("show stat");
    };
    assert_eq!((f.iid, f.kinds, f.sid), (-1, -1, -1));
}

#[test]
fn bad_commands_get_haproxys_texts() {
    let cases = [
        ("get weight app", "Require 'backend/server'."),
        ("get weight /a", "Require 'backend/server'."),
        ("get weight app/", "Require 'backend/server'."),
        ("set weight app/a", "Require <weight> or <weight%>."),
        (
            "set weight app/a x1",
            "Empty weight string empty or preceded by garbage",
        ),
        ("set weight app/a -5%", "Relative weight must be positive."),
        (
            "set weight app/a 10001",
            "Absolute weight can only be between 0 and 10000 inclusive.",
        ),
        (
            "set weight app/a 99999999999",
            "Absolute weight can only be between 0 and 10000 inclusive.",
        ),
        (
            "set server app/a state up",
            "'set server <srv> state' expects 'ready', 'drain' and 'maint'.",
        ),
        (
            "set server app/a addr 1.2.3.4",
            "usage: set server <backend>/<server> state | weight",
        ),
        ("set timeout cli 0", "Invalid timeout value."),
        ("set timeout cli 5x", "Invalid timeout value."),
    ];
    for (line, want) in cases {
        assert_eq!(parse(line), Err(want.to_string()), "{line}");
    }
}

#[test]
fn unknown_commands_list_what_matches_their_first_word() {
    let e = parse("show sess").unwrap_err();
    assert!(
        e.starts_with("Unknown command, but maybe one of the following ones is a better match:\n")
    );
    assert!(
        e.contains("  show stat") && !e.contains("  get weight"),
        "{e}"
    );
    assert!(
        e.ends_with("  quit                                    : disconnect"),
        "{e}"
    );
    let all = parse("frob").unwrap_err();
    assert_eq!(all.lines().count(), HELP.len() + 1);
    assert_eq!(help(&["get".into()]).lines().count(), 1 + 1 + 3);
}
