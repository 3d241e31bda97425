use super::*;

fn v(state: State) -> Verdict {
    Verdict {
        state,
        reason: "connect: refused".into(),
        lag: Some(3),
        seq: 7,
        at: 1_000,
        by: "h:1".into(),
        fails: 0,
        answered: 0,
    }
}

#[test]
fn verdict_round_trips_with_the_documented_shape() {
    let x = v(State::CatchingUp);
    let text = String::from_utf8(x.encode()).unwrap();
    assert_eq!(
        text,
        r#"{"state":"catching_up","reason":"connect: refused","lag":3,"seq":7,"at":1000,"by":"h:1","fails":0,"answered":0}"#
    );
    assert_eq!(Verdict::decode(text.as_bytes()).unwrap(), x);
    // Optional fields, and fields a later version adds, are fine.
    let y = Verdict::decode(br#"{"state":"up","seq":1,"at":2,"by":"a","new":true}"#).unwrap();
    assert_eq!((y.state, y.reason.as_str(), y.lag), (State::Up, "", None));
    assert_eq!(
        (y.fails, y.answered),
        (0, 0),
        "a verdict of an older prober"
    );
}

#[test]
fn bad_verdicts_are_one_line_errors() {
    for bad in [
        &b""[..],
        b"null",
        b"{}",
        br#"{"state":"sideways","seq":1,"at":2,"by":"a"}"#,
        br#"{"state":"up","seq":-1,"at":2,"by":"a"}"#,
        br#"{"state":"up","seq":1,"at":2,"by":""}"#,
        br#"{"state":"up","seq":1,"at":2,"by":"a","lag":99999999999999}"#,
        br#"{"state":"up","seq":1,"at":2,"by":"a","lag":-1}"#,
        br#"{"state":"up","seq":1,"at":2,"by":"a","fails":-1}"#,
        br#"{"state":"up","seq":1,"at":2,"by":"a","answered":-5}"#,
        b"\xff\xfe",
    ] {
        let e = Verdict::decode(bad).unwrap_err().to_string();
        assert!(!e.is_empty() && !e.contains('\n'), "{e}");
    }
}

#[test]
fn long_or_odd_reasons_are_tamed() {
    let raw = format!(
        r#"{{"state":"down","reason":"{}\n{}","seq":1,"at":2,"by":"a"}}"#,
        "é".repeat(300),
        "x"
    );
    let d = Verdict::decode(raw.as_bytes()).unwrap();
    assert!(d.reason.len() <= MAX_REASON);
    assert!(!d.reason.contains('\n'));
}

#[test]
fn leader_decodes_and_judges_staleness() {
    let l = Leader::decode(br#"{"id":"h:1","since":500}"#).unwrap();
    assert!(l.wrote(&v(State::Up)));
    let old = Verdict {
        at: 499,
        ..v(State::Up)
    };
    assert!(!l.wrote(&old), "written before this term");
    let other = Verdict {
        by: "h:2".into(),
        ..v(State::Up)
    };
    assert!(!l.wrote(&other));
    assert!(Leader::decode(br#"{"id":"","since":1}"#).is_err());
    assert!(Leader::decode(br#"{"since":1}"#).is_err());
}

fn channel() -> std::sync::Arc<Channel> {
    use crate::config::Host;
    use crate::pool::Target;
    let t = Target {
        host: Host::Ip("127.0.0.1".parse().unwrap()),
        port: 1,
        addrs: vec!["127.0.0.1:1".parse().unwrap()],
    };
    Channel::new("c", t, 0, 1, Default::default())
}

#[test]
fn prober_side_reads_the_channel_and_skips_passive_downs() {
    let ch = channel();
    assert_eq!(Verdict::of(&ch, 1, 2, "a").unwrap().state, State::Up);
    ch.force_down(Reason::Connect("refused".into()));
    assert_eq!(Verdict::of(&ch, 1, 2, "a"), None, "passive: local only");
    ch.force_down(Reason::Check("http: HTTP 503".into()));
    let d = Verdict::of(&ch, 1, 2, "a").unwrap();
    assert_eq!(
        (d.state, d.reason.as_str()),
        (State::Down, "http: HTTP 503")
    );
    ch.force_down(Reason::Fleet("http: HTTP 503".into()));
    assert_eq!(
        Verdict::of(&ch, 1, 2, "a").unwrap().reason,
        "http: HTTP 503"
    );
}

#[test]
fn follower_side_outcomes() {
    let ch = channel();
    assert_eq!(
        v(State::Down).outcomes(&ch),
        vec![Outcome::Down(Reason::Fleet("connect: refused".into()))]
    );
    assert_eq!(
        v(State::Up).outcomes(&ch),
        vec![Outcome::Up(Recovery::Fleet)]
    );
    // Catching up on a channel that is up: one outcome; down: up first.
    assert_eq!(v(State::CatchingUp).outcomes(&ch).len(), 1);
    ch.force_down(Reason::Check("x".into()));
    let o = v(State::Full).outcomes(&ch);
    assert_eq!(o[0], Outcome::Up(Recovery::Fleet));
    assert!(matches!(o[1], Outcome::Full { .. }));
}

#[test]
fn only_a_clean_answer_proves_a_channel_up_since_a_request() {
    let clean = Verdict {
        answered: 40,
        ..v(State::Up)
    };
    assert!(clean.proves_up_since(40));
    assert!(clean.proves_up_since(39));
    assert!(!clean.proves_up_since(41), "answers an earlier request");
    let suspect = Verdict {
        fails: 1,
        ..clean.clone()
    };
    assert!(!suspect.proves_up_since(40), "still up, one failure");
    let down = Verdict {
        state: State::Down,
        ..clean.clone()
    };
    assert!(!down.proves_up_since(40));
    // A streak starting or ending is news; its length is not.
    assert!(!clean.same(&suspect));
    assert!(suspect.same(&Verdict {
        fails: 2,
        ..suspect.clone()
    }));
    // The prober reads its streak off the channel.
    let ch = channel();
    ch.observe(
        Err(Reason::Check("x".into())),
        crate::health::Evidence::Transport,
        &crate::health::RiseFallParams {
            fall: 3,
            ..Default::default()
        },
    );
    let s = Verdict::of(&ch, 1, 2, "a").unwrap();
    assert_eq!((s.state, s.fails), (State::Up, 1));
}
