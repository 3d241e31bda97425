//! Periodic re-resolution of backend host names. A changed address list is
//! stored in the channel ([`Channel::set_target`]); new connections use it,
//! established ones are untouched. A name that stops resolving keeps its
//! last addresses (a DNS outage must not take backends down). A channel
//! that is down only because its name never resolved is brought up when it
//! first resolves.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Host;
use crate::pool::{Channel, Target};
use crate::registry::Registry;
use crate::service::Service;

/// The reason `Channel::new` gives a channel whose name did not resolve.
pub const UNRESOLVED: &str = "name does not resolve";
/// The reason for a channel whose name now resolves only to its own listener.
pub const SELF_LOOP: &str = "resolves to its own listener";

/// Re-resolve the registry's services `every` interval until `shutdown`.
pub async fn reresolve_loop(services: Registry, every: Duration, shutdown: CancellationToken) {
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(every) => {}
        }
        let svcs = services.services();
        let res =
            tokio::task::spawn_blocking(move || reresolve(&svcs, crate::service::resolve)).await;
        if let Err(e) = res {
            warn!("re-resolution failed: {e}");
        }
    }
}

/// One pass over all named channels; each distinct host:port is looked up
/// once. Returns how many channels got new addresses.
pub fn reresolve(svcs: &[Arc<Service>], resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>) -> usize {
    let mut cache: HashMap<(String, u16), Vec<SocketAddr>> = HashMap::new();
    let mut changed = 0;
    for svc in svcs {
        for g in svc.pool.groups().iter() {
            for ch in &g.channels {
                let t = ch.target();
                let Host::Name(name) = &t.host else { continue };
                let addrs = cache
                    .entry((name.clone(), t.port))
                    .or_insert_with(|| resolve(&t.host, t.port))
                    .clone();
                if apply(&svc.cfg.name, svc.cfg.bind, ch, &t, addrs) {
                    changed += 1;
                }
            }
        }
    }
    changed
}

/// Store `addrs` in `ch` if they differ; true if the target changed.
/// Addresses that lead back to the listener itself are dropped; if nothing
/// else is left the channel goes down until the name resolves elsewhere.
fn apply(
    listener: &str,
    bind: SocketAddr,
    ch: &Channel,
    t: &Target,
    mut addrs: Vec<SocketAddr>,
) -> bool {
    if addrs.is_empty() {
        if !t.addrs.is_empty() {
            debug!(listener, channel = %t, "name does not resolve now; keeping the last addresses");
        }
        return false;
    }
    let n = addrs.len();
    addrs.retain(|a| !crate::config::yaml::is_self_loop_addr(bind, *a));
    if addrs.len() < n {
        warn!(listener, channel = %t, "name resolves to the listener itself; those addresses are not used");
    }
    if addrs == t.addrs {
        return false;
    }
    info!(listener, channel = %t, old = ?t.addrs, new = ?addrs, "addresses changed");
    let now_empty = addrs.is_empty();
    ch.set_target(Target {
        host: t.host.clone(),
        port: t.port,
        addrs,
    });
    if now_empty {
        if ch.force_down(SELF_LOOP) {
            warn!(listener, channel = %t, "channel disabled: {SELF_LOOP}");
        }
        return true;
    }
    let reason = ch.health().1;
    if !ch.is_up() && (reason == UNRESOLVED || reason == SELF_LOOP) {
        ch.force_up();
        info!(listener, channel = %t, "name resolves now: channel enabled");
    }
    true
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{ChannelConfig, GroupConfig, ListenerConfig, Policy};
    use crate::health::RiseFallParams;
    use crate::pool::ShownState;
    use std::sync::Mutex;

    fn svc(names: &[&str]) -> Arc<Service> {
        let channels = names
            .iter()
            .map(|n| ChannelConfig {
                host: Host::Name((*n).into()),
                port: 80,
                maxc: 0,
                weight: 1,
            })
            .collect();
        let cfg = ListenerConfig::new(
            "t".into(),
            "127.0.0.1:1".parse().unwrap(),
            vec![GroupConfig {
                policy: Policy::RoundRobin,
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
        // The test listener binds 127.0.0.1:1; channels use port 80, so
        // point the answer at port 1 through a listener on port 80.
        let s = svc(&["db1"]);
        let ch = Arc::clone(&s.pool.groups()[0].channels[0]);
        reresolve(&[Arc::clone(&s)], |_, _| vec![sa("10.0.0.1:80")]);
        assert_eq!(ch.shown_state(), ShownState::Ena);
        let bind = sa("127.0.0.1:80");
        let t = ch.target();
        assert!(apply("t", bind, &ch, &t, vec![sa("127.0.0.1:80")]));
        assert!(ch.target().addrs.is_empty(), "looping address not stored");
        assert_eq!(ch.shown_state(), ShownState::SoftDisabled);
        assert_eq!(ch.health().1, SELF_LOOP);
        let t = ch.target();
        assert!(apply(
            "t",
            bind,
            &ch,
            &t,
            vec![sa("127.0.0.1:80"), sa("10.0.0.2:80")]
        ));
        assert_eq!(ch.target().addrs, vec![sa("10.0.0.2:80")]);
        assert_eq!(ch.shown_state(), ShownState::Ena);
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
}
