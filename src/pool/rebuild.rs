//! The reload merge: a new pool for changed config that keeps the channels
//! (with counters, health and operator state) the new config still has in
//! the same place. Called by the supervisor on reload; the old pool is not
//! changed except for `maxc`/`weight` the file changed.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;

use super::{Channel, Group, Pool, SelectOpts, Target};
use crate::config::{ChannelConfig, GroupConfig, Host};

impl Pool {
    /// A new pool for changed config (reload) that keeps this pool's
    /// channels, with their counters, health and operator state, where the
    /// new config has the same name at the same address in the same group
    /// position (a default name is its host and port: see
    /// `crate::config::names`); a named channel the new config points
    /// elsewhere is a new channel with the old one's operator state.
    /// `old` is the config this pool was built from: `maxc`/`weight` are
    /// taken from the file only where the file changed them. New channels
    /// are resolved with `resolve`. The manual-failback floor carries over.
    pub(crate) fn rebuild(
        &self,
        old: &[GroupConfig],
        groups: &[GroupConfig],
        opts: SelectOpts,
        resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
    ) -> Pool {
        let cur = self.groups();
        let gs: Vec<Arc<Group>> = groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                // The old group's channels by name, and the old config's
                // entry for each: lookups, not scans, so a reload stays
                // linear in the number of channels.
                let kept: HashMap<&str, &Arc<Channel>> = cur
                    .get(gi)
                    .map_or(&[][..], |og| &og.channels[..])
                    .iter()
                    .map(|ch| (ch.name(), ch))
                    .collect();
                let before: HashMap<&str, &ChannelConfig> = old
                    .get(gi)
                    .map_or(&[][..], |og| &og.channels[..])
                    .iter()
                    .map(|oc| (oc.name.as_str(), oc))
                    .collect();
                let chans = g
                    .channels
                    .iter()
                    .map(|c| {
                        let target = || Target {
                            host: c.host.clone(),
                            port: c.port,
                            addrs: resolve(&c.host, c.port),
                        };
                        let new = || {
                            let ch = Channel::new(
                                c.name.as_str(),
                                target(),
                                c.maxc,
                                c.weight,
                                Arc::clone(&self.eligible),
                            );
                            ch.set_full_holds(opts.full_holds);
                            ch.set_proxy_protocol(c.proxy_protocol);
                            ch
                        };
                        let Some(&ch) = kept.get(c.name.as_str()) else {
                            return new();
                        };
                        // The operator's maxc and weight stay unless the
                        // file changed them.
                        let before = before.get(c.name.as_str());
                        let maxc = match before {
                            Some(b) if b.maxc == c.maxc => ch.maxc(),
                            _ => c.maxc,
                        };
                        let weight = match before {
                            Some(b) if b.weight == c.weight => ch.weight(),
                            _ => c.weight,
                        };
                        let t = ch.target();
                        if t.host != c.host || t.port != c.port {
                            // A named channel the file points elsewhere: a
                            // new channel (the live one is not touched, the
                            // reload may yet be rejected) with the operator
                            // state of the name.
                            let n = new();
                            n.set_admin(ch.admin());
                            n.set_checked(ch.checked());
                            n.set_maxc(maxc);
                            n.set_weight(weight);
                            return n;
                        }
                        ch.set_full_holds(opts.full_holds);
                        ch.set_proxy_protocol(c.proxy_protocol);
                        if ch.maxc() != maxc {
                            ch.set_maxc(maxc);
                        }
                        if ch.weight() != weight {
                            ch.set_weight(weight);
                        }
                        ch.set_initial_weight(c.weight);
                        Arc::clone(ch)
                    })
                    .collect();
                let ng = Group::new(g.name.as_str(), g.policy, chans)
                    .with_demand(kept_demand(&cur, old, g));
                if let Some(og) = cur.get(gi) {
                    ng.selector.keep_position(&og.selector);
                }
                Arc::new(ng)
            })
            .collect();
        let floor = self.floor().min(gs.len().saturating_sub(1));
        let p = Pool {
            groups: ArcSwap::from_pointee(gs),
            opts,
            floor: AtomicUsize::new(floor),
            eligible: Arc::clone(&self.eligible),
        };
        self.eligible.notify_waiters();
        p
    }
}

/// The on-demand state a reloaded group keeps: the old group's of the same
/// name, when its `on_empty:` and `on_idle:` are as they were.
fn kept_demand(
    cur: &[Arc<Group>],
    old: &[GroupConfig],
    g: &GroupConfig,
) -> Option<Arc<super::demand::Demand>> {
    let od = g.on_demand.as_ref()?;
    let same = old
        .iter()
        .any(|o| o.name == g.name && o.on_demand.as_ref() == Some(od));
    let kept = cur
        .iter()
        .find(|c| c.name() == g.name)
        .and_then(|c| c.demand().cloned())
        .filter(|_| same);
    Some(kept.unwrap_or_else(|| Arc::new(super::demand::Demand::new((**od).clone()))))
}
