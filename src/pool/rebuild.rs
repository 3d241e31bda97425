//! The reload merge: a new pool for changed config that keeps the channels
//! (with counters, health and operator state) the new config still has in
//! the same place. Called by the supervisor on reload; the old pool is not
//! changed except for `maxc`/`weight` the file changed.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;

use super::{Channel, Group, Pool, SelectOpts, Target};
use crate::config::{ChannelConfig, GroupConfig, Host};

impl Pool {
    /// A new pool for changed config (reload) that keeps this pool's
    /// channels, with their counters, health and operator state, where the
    /// new config has the same host:port in the same group position.
    /// `old` is the config this pool was built from: `maxc`/`weight` are
    /// taken from the file only where the file changed them. New channels
    /// are resolved with `resolve`. The manual-failback floor carries over.
    pub fn rebuild(
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
                // The old group's channels by host:port, in order (each
                // taken once: a channel listed twice keeps both), and the
                // old config's first entry for each: lookups, not scans,
                // so a reload stays linear in the number of channels.
                let mut kept: HashMap<(Host, u16), VecDeque<&Arc<Channel>>> = HashMap::new();
                for ch in cur.get(gi).map_or(&[][..], |og| &og.channels[..]) {
                    let t = ch.target();
                    kept.entry((t.host.clone(), t.port))
                        .or_default()
                        .push_back(ch);
                }
                let mut before: HashMap<(&Host, u16), &ChannelConfig> = HashMap::new();
                for oc in old.get(gi).map_or(&[][..], |og| &og.channels[..]) {
                    before.entry((&oc.host, oc.port)).or_insert(oc);
                }
                let chans = g
                    .channels
                    .iter()
                    .map(|c| {
                        let found = kept
                            .get_mut(&(c.host.clone(), c.port))
                            .and_then(VecDeque::pop_front);
                        let Some(ch) = found else {
                            let t = Target {
                                host: c.host.clone(),
                                port: c.port,
                                addrs: resolve(&c.host, c.port),
                            };
                            let ch = Channel::new(t, c.maxc, c.weight, Arc::clone(&self.eligible));
                            ch.set_full_holds(opts.full_holds);
                            ch.set_proxy_protocol(c.proxy_protocol);
                            return ch;
                        };
                        ch.set_full_holds(opts.full_holds);
                        ch.set_proxy_protocol(c.proxy_protocol);
                        let before = before.get(&(&c.host, c.port));
                        if before.is_none_or(|b| b.maxc != c.maxc) {
                            ch.set_maxc(c.maxc);
                        }
                        if before.is_none_or(|b| b.weight != c.weight) {
                            ch.set_weight(c.weight);
                        }
                        Arc::clone(ch)
                    })
                    .collect();
                let ng = Group::new(g.policy, chans);
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
