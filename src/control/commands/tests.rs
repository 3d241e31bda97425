use super::*;
use crate::config::Policy;
use std::net::IpAddr;
use std::net::Ipv4Addr;

fn ip(s: &str) -> Host {
    Host::Ip(s.parse().unwrap())
}

fn ep(host: Host, port: u16) -> Endpoint {
    Endpoint { host, port }
}

fn gi(i: usize) -> GroupRef {
    GroupRef::Key(GroupKey::Index(i))
}

fn gn(n: &str) -> GroupRef {
    GroupRef::Key(GroupKey::Name(n.into()))
}

fn switch(
    to: Option<GroupRef>,
    limit: Option<Duration>,
    grace: Option<Duration>,
    force: bool,
) -> ControlOp {
    OperatorOp::Switchover {
        to,
        limit,
        grace,
        force,
    }
}

#[test]
fn every_command_parses_to_its_meaning() {
    use ChanRef::*;
    use Command::*;
    let ok: Vec<(&str, Command)> = vec![
        ("", Nop),
        ("   \t ", Nop),
        ("help", Help),
        ("?", Help),
        ("show", Show),
        ("show json", ShowJson),
        ("group 1", Group(GroupKey::Index(1))),
        ("group pod1", Group(GroupKey::Name("pod1".into()))),
        ("enable 0", Op(OperatorOp::Admin(Index(0), Admin::Enabled))),
        (
            "disable db101",
            Op(OperatorOp::Admin(Name("db101".into()), Admin::Disabled)),
        ),
        (
            "disable 1:2",
            Op(OperatorOp::Admin(At(1, 2), Admin::Disabled)),
        ),
        (
            "drain 127.0.0.1:9001",
            Op(OperatorOp::Admin(Addr(ip("127.0.0.1"), 9001), Admin::Drain)),
        ),
        ("reset [::1]:80", Op(OperatorOp::Reset(Addr(ip("::1"), 80)))),
        (
            "assign 0 10.0.0.1 8080",
            Op(OperatorOp::Assign(Index(0), ep(ip("10.0.0.1"), 8080))),
        ),
        (
            "assign 0 ::1 80",
            Op(OperatorOp::Assign(Index(0), ep(ip("::1"), 80))),
        ),
        (
            "create db1.example 3306",
            Op(OperatorOp::Create {
                group: GroupRef::Current,
                target: ep(Host::Name("db1.example".into()), 3306),
                weight: None,
            }),
        ),
        (
            "create [::1] 3306",
            Op(OperatorOp::Create {
                group: GroupRef::Current,
                target: ep(ip("::1"), 3306),
                weight: None,
            }),
        ),
        ("maxc 2 10", Op(OperatorOp::Maxc(Index(2), 10))),
        (
            "weight 0 3",
            Op(OperatorOp::Weight(Index(0), WeightSet::Abs(3))),
        ),
        (
            "hash",
            Op(OperatorOp::Policy(GroupRef::Current, Policy::Hash)),
        ),
        (
            "rr",
            Op(OperatorOp::Policy(GroupRef::Current, Policy::RoundRobin)),
        ),
        (
            "leastconn",
            Op(OperatorOp::Policy(GroupRef::Current, Policy::LeastConn)),
        ),
        ("kill", Kill),
        ("version", Version),
        ("monitor enable", Op(OperatorOp::Monitor(true))),
        ("monitor disable", Op(OperatorOp::Monitor(false))),
        ("monitor show", MonitorShow),
        ("mrtg-bytes 0 1", MrtgBytes(0, 1)),
        ("mrtg-conns 1 0", MrtgConns(1, 0)),
        ("failback", Op(OperatorOp::Floor(0))),
        ("switchover", Op(switch(None, None, None, false))),
        ("switchover 1", Op(switch(Some(gi(1)), None, None, false))),
        (
            "switchover pod2",
            Op(switch(Some(gn("pod2")), None, None, false)),
        ),
        (
            "switchover 1 5s grace=500ms force",
            Op(switch(
                Some(gi(1)),
                Some(Duration::from_secs(5)),
                Some(Duration::from_millis(500)),
                true,
            )),
        ),
        ("switchover force", Op(switch(None, None, None, true))),
        (
            "switchover 0 2s",
            Op(switch(
                Some(gi(0)),
                Some(Duration::from_secs(2)),
                None,
                false,
            )),
        ),
        ("spin on", Op(OperatorOp::Spin(SpinSet::For(None)))),
        (
            "spin on 5s",
            Op(OperatorOp::Spin(SpinSet::For(Some(Duration::from_secs(5))))),
        ),
        ("spin off", Op(OperatorOp::Spin(SpinSet::Off))),
        ("spin", SpinShow),
        ("state save", StateSave),
        ("reload", Reload),
        ("quit", Quit),
        ("  show  ", Show),
    ];
    for (line, want) in ok {
        assert_eq!(parse(line), Ok(want), "{line:?}");
    }
}

#[test]
fn balance_fm_abbreviations_resolve_in_its_order_but_kill_must_be_spelled_out() {
    assert_eq!(parse("s"), Ok(Command::Show));
    assert_eq!(parse("h"), Ok(Command::Help));
    assert_eq!(parse("q"), Ok(Command::Quit));
    assert_eq!(
        parse("m 0 5"),
        Ok(Command::Op(OperatorOp::Maxc(ChanRef::Index(0), 5)))
    );
    assert_eq!(
        parse("d 0"),
        Ok(Command::Op(OperatorOp::Admin(
            ChanRef::Index(0),
            Admin::Disabled
        )))
    );
    assert_eq!(
        parse("e 0"),
        Ok(Command::Op(OperatorOp::Admin(
            ChanRef::Index(0),
            Admin::Enabled
        )))
    );
    assert_eq!(parse("mrtg-c 0 0"), Ok(Command::MrtgConns(0, 0)));
    assert!(parse("k").is_err());
    assert!(parse("kil").is_err());
    assert!(parse("showx").is_err());
    assert!(parse("dr 0").is_err());
    // balance.fm's policy words abbreviate; the extensions' do not.
    assert_eq!(
        parse("ha"),
        Ok(Command::Op(OperatorOp::Policy(
            GroupRef::Current,
            Policy::Hash
        )))
    );
    assert!(parse("l").is_err());
    assert!(parse("leastcon").is_err());
    assert!(parse("leastconn 1").is_err());
}

#[test]
fn bad_commands_give_one_line_naming_the_token() {
    let bad = [
        ("frobnicate", "frobnicate"),
        ("group", "group needs"),
        ("group x/y", "\"x/y\""),
        ("group -1", "\"-1\""),
        ("group 99999999999999999999", "\"99999999999999999999\""),
        ("enable", "enable needs"),
        ("enable x/y", "\"x/y\""),
        ("enable 42x;", "\"42x;\""),
        ("enable 0 1", "unexpected \"1\""),
        ("disable :5", "\":5\""),
        ("drain a:b", "\"a:b\""),
        ("maxc 0", "maxc needs"),
        ("maxc 0 -3", "\"-3\""),
        ("maxc 0 4294967296", "\"4294967296\""),
        ("weight 0 10001", "\"10001\""),
        ("weight 0 x", "\"x\""),
        ("switchover x/y", "\"x/y\""),
        ("remove 0", "remove has no single-instance form"),
        ("remove db101", "fleet remove <group> <host>:<port>"),
        ("switchover 1 forever", "\"forever\""),
        ("switchover 1 1h", "\"1h\""),
        ("switchover 1 1s x", "unexpected \"x\""),
        ("create host", "create needs"),
        ("create bad!host 80", "\"bad!host\""),
        ("create 10.0.0.1 0", "\"0\""),
        ("create 10.0.0.1 70000", "\"70000\""),
        ("assign 0 10.0.0.1", "assign needs"),
        ("assign x/y 10.0.0.1 80", "\"x/y\""),
        ("hash 1", "unexpected \"1\""),
        ("show xml", "\"xml\""),
        ("monitor", "monitor needs"),
        ("monitor restart", "\"restart\""),
        ("mrtg-bytes 0", "mrtg-bytes needs"),
        ("mrtg-conns a 0", "\"a\""),
        ("spin forever", "\"forever\""),
        ("spin 5s", "use spin on [MAX], spin off or spin"),
        ("spin on forever", "\"forever\""),
        ("spin on 0s", "more than 0"),
        ("spin on 25h", "at most 1day"),
        ("spin on 1s x", "unexpected \"x\""),
        ("spin off now", "unexpected \"now\""),
        ("state load", "\"load\""),
        ("kill now", "unexpected \"now\""),
        ("quit 1", "unexpected \"1\""),
        ("version x", "unexpected \"x\""),
        ("failback 0", "unexpected \"0\""),
        ("rr x", "unexpected \"x\""),
        ("reset", "reset needs"),
        ("help me", "unexpected \"me\""),
    ];
    for (line, needle) in bad {
        let e = parse(line).expect_err(line).to_string();
        assert!(e.contains(needle), "{line:?} gave {e:?}");
        assert!(!e.contains('\n'), "{line:?} gave several lines");
    }
}

#[test]
fn more_than_sixteen_words_is_an_error() {
    let line = vec!["show"; 17].join(" ");
    assert!(
        parse(&line)
            .unwrap_err()
            .to_string()
            .contains("too many arguments")
    );
    assert!(
        parse(&vec!["x"; 16].join(" "))
            .unwrap_err()
            .to_string()
            .contains("unknown")
    );
}

#[test]
fn quoting_escapes_control_characters_and_cuts_long_tokens() {
    assert_eq!(quote("a\u{1}b"), "\"a\\u{1}b\"");
    let long = "x".repeat(100);
    let q = quote(&long);
    assert!(q.ends_with("...\"") && q.len() < 80, "{q}");
    let e = parse("\u{7}bell").unwrap_err().to_string();
    assert!(e.contains("\\u{7}bell"), "{e}");
}

#[test]
fn random_lines_never_panic_and_errors_stay_one_line() {
    let alphabet: Vec<char> =
        "0123456789:[]. \t-abcdefghijklmnopqrstuvwxyz?;\u{0}\u{7f}é€\u{10ffff}"
            .chars()
            .collect();
    let mut x: u64 = 0x2545_f491_4f6c_dd1d;
    let mut next = || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    let words = [
        "show",
        "enable",
        "maxc",
        "assign",
        "create",
        "group",
        "mrtg-bytes",
        "weight",
    ];
    for _ in 0..20_000 {
        let mut line = String::new();
        if next() % 2 == 0 {
            line.push_str(words[(next() % words.len() as u64) as usize]);
            line.push(' ');
        }
        for _ in 0..next() % 40 {
            line.push(alphabet[(next() % alphabet.len() as u64) as usize]);
        }
        if let Err(e) = parse(&line) {
            let e = e.to_string();
            assert!(!e.contains('\n') && e.len() < 300, "{line:?} gave {e:?}");
        }
    }
}

#[test]
fn channel_references_accept_index_group_colon_index_and_host_port() {
    assert_eq!(chan_ref("3"), Ok(ChanRef::Index(3)));
    assert_eq!(chan_ref("1:0"), Ok(ChanRef::At(1, 0)));
    assert_eq!(chan_ref("db101"), Ok(ChanRef::Name("db101".into())));
    assert_eq!(
        chan_ref("db.example"),
        Ok(ChanRef::Name("db.example".into()))
    );
    assert_eq!(
        chan_ref("10.1.2.3:http"),
        Ok(ChanRef::Addr(
            Host::Ip(IpAddr::V4(Ipv4Addr::new(10, 1, 2, 3))),
            80
        ))
    );
    assert_eq!(
        chan_ref("db1:3306"),
        Ok(ChanRef::Addr(Host::Name("db1".into()), 3306))
    );
    assert!(chan_ref("[::1]").is_err());
    assert!(chan_ref("").is_err());
    assert!(chan_ref("1:").is_err());
}

#[test]
fn read_only_commands_are_not_changes_and_only_operator_state_persists() {
    for l in [
        "show",
        "show json",
        "help",
        "group 1",
        "version",
        "quit",
        "mrtg-bytes 0 0",
        "monitor show",
        "",
    ] {
        let c = parse(l).unwrap();
        assert!(!c.is_change() && !c.persists(), "{l}");
    }
    for l in [
        "enable 0",
        "disable 0",
        "drain 0",
        "maxc 0 1",
        "weight 0 2",
        "hash",
        "rr",
        "leastconn",
        "create h 1",
        "assign 0 h 1",
    ] {
        let c = parse(l).unwrap();
        assert!(c.is_change() && c.persists(), "{l}");
    }
    for l in ["reset 0", "kill", "failback", "state save"] {
        let c = parse(l).unwrap();
        assert!(c.is_change() && !c.persists(), "{l}");
    }
}

#[test]
fn fleet_commands_parse_like_the_plain_ones() {
    use ChanRef::*;
    let ok: Vec<(&str, FleetCmd)> = vec![
        (
            "fleet disable 0",
            FleetCmd::Op(OperatorOp::Admin(Index(0), Admin::Disabled)),
        ),
        (
            "fleet enable 1:2",
            FleetCmd::Op(OperatorOp::Admin(At(1, 2), Admin::Enabled)),
        ),
        (
            "fleet d 3",
            FleetCmd::Op(OperatorOp::Admin(Index(3), Admin::Disabled)),
        ),
        (
            "fleet drain 10.0.0.1:80",
            FleetCmd::Op(OperatorOp::Admin(Addr(ip("10.0.0.1"), 80), Admin::Drain)),
        ),
        (
            "fleet weight 0 5",
            FleetCmd::Op(OperatorOp::Weight(Index(0), WeightSet::Abs(5))),
        ),
        (
            "fleet maxc 0:1 9",
            FleetCmd::Op(OperatorOp::Maxc(At(0, 1), 9)),
        ),
        ("fleet failback", FleetCmd::Op(OperatorOp::Floor(0))),
        ("fleet members", FleetCmd::Members),
        ("fleet forget h:12", FleetCmd::Forget("h:12".into())),
        (
            "fleet switchover",
            FleetCmd::Op(switch(None, None, None, false)),
        ),
        (
            "fleet switchover 1 3s",
            FleetCmd::Op(switch(
                Some(gi(1)),
                Some(Duration::from_secs(3)),
                None,
                false,
            )),
        ),
        (
            "fleet switchover pod2",
            FleetCmd::Op(switch(Some(gn("pod2")), None, None, false)),
        ),
        (
            "fleet spin off",
            FleetCmd::Op(OperatorOp::Spin(SpinSet::Off)),
        ),
        (
            "fleet spin on 5s",
            FleetCmd::Op(OperatorOp::Spin(SpinSet::For(Some(Duration::from_secs(5))))),
        ),
        (
            "fleet create 1 10.0.0.9:3306",
            FleetCmd::Op(OperatorOp::Create {
                group: gi(1),
                target: ep(ip("10.0.0.9"), 3306),
                weight: None,
            }),
        ),
        (
            "fleet create 0 [::1]:80 7",
            FleetCmd::Op(OperatorOp::Create {
                group: gi(0),
                target: ep(ip("::1"), 80),
                weight: Some(7),
            }),
        ),
        (
            "fleet create pod2 10.0.0.9:3306",
            FleetCmd::Op(OperatorOp::Create {
                group: gn("pod2"),
                target: ep(ip("10.0.0.9"), 3306),
                weight: None,
            }),
        ),
        (
            "fleet remove 0 10.0.0.9:3306",
            FleetCmd::Op(OperatorOp::Remove {
                group: gi(0),
                chan: Addr(ip("10.0.0.9"), 3306),
            }),
        ),
        (
            "fleet remove pod2 10.0.0.9:3306",
            FleetCmd::Op(OperatorOp::Remove {
                group: gn("pod2"),
                chan: Addr(ip("10.0.0.9"), 3306),
            }),
        ),
    ];
    for (line, want) in ok {
        assert_eq!(parse(line), Ok(Command::Fleet(want)), "{line}");
    }
    assert!(parse("fleet disable 0").unwrap().is_change());
    assert!(!parse("fleet disable 0").unwrap().persists());
    assert!(!parse("fleet members").unwrap().is_change());
    assert!(parse("fleet switchover").unwrap().is_change());
    for bad in [
        "fleet members x",
        "fleet forget",
        "fleet forget a/b",
        "fleet forget a b",
        "fleet switchover x/y",
        "fleet switchover 1 forever",
        "fleet",
        "fleet show",
        "fleet spin",
        "fleet fleet disable 0",
        "fleet kill",
        "fleet create",
        "fleet create 0 host",
        "fleet create x/y 10.0.0.1:80",
        "fleet remove 0 db101",
        "fleet create 0 0:1",
        "fleet create 0 10.0.0.1:80 10001",
        "fleet create 0 10.0.0.1:80 1 extra",
        "fleet remove 0",
        "fleet weight 0 10001",
        "fleet disable",
        "fleet nope 0",
    ] {
        let e = parse(bad).expect_err(bad);
        assert!(!e.0.contains('\n'), "{bad}: {e}");
    }
}

#[test]
fn route_takes_one_key() {
    assert_eq!(
        parse("route a.example.com"),
        Ok(Command::Route("a.example.com".into()))
    );
    assert!(parse("route").is_err());
    assert!(parse("route a b").is_err());
    assert!(!Command::Route("x".into()).is_change());
}
