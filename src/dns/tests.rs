//! Re-resolution against scripted resolvers.

use super::*;
use crate::config::{ChannelConfig, GroupConfig, ListenerConfig, Policy};
use crate::health::RiseFallParams;
use crate::pool::{Channel, ShownState};
use std::sync::Mutex;

fn svc(names: &[&str]) -> Arc<Service> {
    svc_on("127.0.0.1:1", names)
}

/// A listener on `bind` with one group of named channels on port 80.
fn svc_on(bind: &str, names: &[&str]) -> Arc<Service> {
    let channels = names
        .iter()
        .map(|n| ChannelConfig {
            name: String::new(),
            host: Host::Name((*n).into()),
            port: 80,
            maxc: 0,
            weight: 1,
            proxy_protocol: None,
        })
        .collect();
    let cfg = ListenerConfig::new(
        "t".into(),
        bind.parse().unwrap(),
        vec![GroupConfig {
            on_demand: None,
            name: String::new(),
            policy: Policy::RoundRobin,
            proxy_protocol: None,
            channels,
        }],
    );
    Arc::new(Service::new_with(cfg, RiseFallParams::default(), |_, _| {
        Vec::new()
    }))
}

fn sa(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

/// Channel 0 of group 0, where it sits.
fn first(s: &Service) -> Candidate {
    Candidate {
        group: 0,
        index: 0,
        channel: Arc::clone(&s.pool.groups()[0].channels[0]),
    }
}

#[test]
fn name_that_resolves_later_brings_its_channel_up() {
    let s = svc(&["db1"]);
    let ch = Arc::clone(&s.pool.groups()[0].channels[0]);
    assert_eq!(ch.shown_state(), ShownState::SoftDisabled);
    assert_eq!(reresolve(&[Arc::clone(&s)], |_, _| Vec::new()), 0);
    assert_eq!(ch.shown_state(), ShownState::SoftDisabled);
    assert_eq!(
        reresolve(&[s], |_, p| vec![sa(&format!("10.0.0.1:{p}"))]),
        1
    );
    assert_eq!(ch.target().addrs, vec![sa("10.0.0.1:80")]);
    assert_eq!(ch.shown_state(), ShownState::Ena);
}

#[test]
fn changed_addresses_are_stored_and_a_failed_lookup_keeps_the_old_ones() {
    let s = svc(&["db1", "db1"]);
    let answer = Mutex::new(vec![sa("10.0.0.1:80")]);
    let r = |_: &Host, _: u16| answer.lock().unwrap().clone();
    assert_eq!(reresolve(&[Arc::clone(&s)], r), 2);
    *answer.lock().unwrap() = vec![sa("10.0.0.2:80"), sa("10.0.0.3:80")];
    assert_eq!(reresolve(&[Arc::clone(&s)], r), 2);
    let ch = Arc::clone(&s.pool.groups()[0].channels[1]);
    assert_eq!(
        ch.target().addrs,
        vec![sa("10.0.0.2:80"), sa("10.0.0.3:80")]
    );
    assert_eq!(reresolve(&[Arc::clone(&s)], r), 0, "unchanged answer");
    *answer.lock().unwrap() = Vec::new();
    assert_eq!(reresolve(&[Arc::clone(&s)], r), 0);
    assert_eq!(ch.target().addrs.len(), 2, "kept across a failed lookup");
}

#[test]
fn channel_down_for_another_reason_is_not_forced_up() {
    let s = svc(&["db1"]);
    let ch = Arc::clone(&s.pool.groups()[0].channels[0]);
    ch.force_down("connect refused");
    reresolve(&[s], |_, _| vec![sa("10.0.0.1:80")]);
    assert_eq!(ch.target().addrs, vec![sa("10.0.0.1:80")]);
    assert_eq!(ch.shown_state(), ShownState::SoftDisabled);
}

#[test]
fn a_name_resolving_to_its_own_listener_goes_down_and_comes_back() {
    // Channels use port 80, so the listener binds 127.0.0.1:80.
    let s = svc_on("127.0.0.1:80", &["db1"]);
    let at = first(&s);
    let ch: &Channel = &at.channel;
    reresolve(&[Arc::clone(&s)], |_, _| vec![sa("10.0.0.1:80")]);
    assert_eq!(ch.shown_state(), ShownState::Ena);
    let t = ch.target();
    assert!(apply(&s, &[], &at, &t, vec![sa("127.0.0.1:80")]));
    assert!(ch.target().addrs.is_empty(), "looping address not stored");
    assert_eq!(ch.shown_state(), ShownState::SoftDisabled);
    assert_eq!(ch.health().1, "resolves to its own listener");
    assert_eq!(ch.down_reason(), Some(Reason::SelfLoop));
    let t = ch.target();
    assert!(apply(
        &s,
        &[],
        &at,
        &t,
        vec![sa("127.0.0.1:80"), sa("10.0.0.2:80")]
    ));
    assert_eq!(ch.target().addrs, vec![sa("10.0.0.2:80")]);
    assert_eq!(ch.shown_state(), ShownState::Ena);
    // Another listener of the process is a loop as well.
    let t = ch.target();
    assert!(apply(
        &s,
        &[sa("127.0.0.1:81")],
        &at,
        &t,
        vec![sa("127.0.0.1:81"), sa("10.0.0.3:80")]
    ));
    assert_eq!(ch.target().addrs, vec![sa("10.0.0.3:80")]);
}

#[test]
fn each_distinct_name_is_looked_up_once_per_pass() {
    let s = svc(&["a", "a", "b"]);
    let calls = Mutex::new(0);
    reresolve(&[Arc::clone(&s), s], |_, _| {
        *calls.lock().unwrap() += 1;
        vec![sa("10.0.0.9:80")]
    });
    assert_eq!(*calls.lock().unwrap(), 2);
}

#[test]
fn an_unresolved_channel_is_down_for_a_typed_name_reason() {
    let s = svc(&["db1"]);
    let ch = Arc::clone(&first(&s).channel);
    assert_eq!(ch.down_reason(), Some(Reason::Unresolved));
    assert_eq!(ch.health().1, "name does not resolve");
    // A check failure replaces the reason: no longer DNS's to lift.
    ch.force_down(Reason::Check("connect: connection refused".into()));
    assert!(!ch.down_reason().is_some_and(|r| r.is_name_resolution()));
}
