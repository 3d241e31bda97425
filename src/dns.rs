//! Periodic re-resolution of backend host names. A changed address list is
//! stored in the channel ([`Channel::set_target`]); new connections use it,
//! established ones are untouched. A name that stops resolving keeps its
//! last addresses (a DNS outage must not take backends down). A channel
//! that is down only because of its name (it never resolved, or resolved
//! only to its own listener) is brought up when it resolves elsewhere;
//! both verdicts go through [`Service::report`].

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use crate::config::Host;
use crate::health::{Outcome, Reason, Recovery};
use crate::pool::{Candidate, Target};
use crate::registry::Registry;
use crate::service::Service;

/// Re-resolve the registry's services `every` interval until `shutdown`.
pub(crate) async fn reresolve_loop(
    services: Registry,
    every: Duration,
    shutdown: CancellationToken,
) {
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
pub(crate) fn reresolve(
    svcs: &[Arc<Service>],
    resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
) -> usize {
    let mut cache: HashMap<(String, u16), Vec<SocketAddr>> = HashMap::new();
    let mut changed = 0;
    // A name may also have come to point at another listener of ours.
    let binds: Vec<SocketAddr> = svcs.iter().map(|s| s.cfg.bind).collect();
    for svc in svcs {
        for (group, g) in svc.pool.groups().iter().enumerate() {
            for (index, ch) in g.channels.iter().enumerate() {
                let t = ch.target();
                let Host::Name(name) = &t.host else { continue };
                let addrs = cache
                    .entry((name.clone(), t.port))
                    .or_insert_with(|| resolve(&t.host, t.port))
                    .clone();
                let at = Candidate {
                    group,
                    index,
                    channel: Arc::clone(ch),
                };
                if apply(svc, &binds, &at, &t, addrs) {
                    changed += 1;
                }
            }
        }
    }
    changed
}

/// Store `addrs` in `ch` if they differ; true if the target changed.
/// Addresses that lead back to a listener of the process (`binds`, this
/// one's included) are dropped; if nothing else is left the channel goes
/// down until the name resolves elsewhere.
fn apply(
    svc: &Service,
    binds: &[SocketAddr],
    at: &Candidate,
    t: &Target,
    mut addrs: Vec<SocketAddr>,
) -> bool {
    let (listener, bind, ch) = (&svc.cfg.name, svc.cfg.bind, &at.channel);
    if addrs.is_empty() {
        if !t.addrs.is_empty() {
            debug!(listener, channel = %t, "name does not resolve now; keeping the last addresses");
        }
        return false;
    }
    let n = addrs.len();
    let looped = |a: &SocketAddr| {
        std::iter::once(&bind)
            .chain(binds)
            .any(|b| crate::config::is_self_loop_addr(*b, *a))
    };
    addrs.retain(|a| !looped(a));
    if addrs.len() < n {
        warn!(listener, channel = %t, "name resolves to a listener of this process; those addresses are not used");
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
        svc.report(at, Outcome::Down(Reason::SelfLoop));
        return true;
    }
    if ch.down_reason().is_some_and(|r| r.is_name_resolution()) {
        svc.report(at, Outcome::Up(Recovery::NameResolves));
    }
    true
}

#[cfg(test)]
mod tests;
