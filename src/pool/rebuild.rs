//! The reload merge: a new pool for changed config that keeps the channels
//! (with counters, health and operator state) the new config still has in
//! the same place. Called by the supervisor on reload; the old pool is not
//! changed except for `maxc`/`weight` the file changed.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use arc_swap::ArcSwap;

use super::{Channel, Group, Pool, SelectOpts, Target};
use crate::config::{GroupConfig, Host};

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
        let mut taken: Vec<*const Channel> = Vec::new();
        let gs: Vec<Arc<Group>> = groups
            .iter()
            .enumerate()
            .map(|(gi, g)| {
                let chans = g
                    .channels
                    .iter()
                    .map(|c| {
                        let same = |t: &Target| t.host == c.host && t.port == c.port;
                        let found = cur.get(gi).and_then(|og| {
                            og.channels
                                .iter()
                                .find(|ch| same(&ch.target()) && !taken.contains(&Arc::as_ptr(ch)))
                        });
                        let Some(ch) = found else {
                            let t = Target {
                                host: c.host.clone(),
                                port: c.port,
                                addrs: resolve(&c.host, c.port),
                            };
                            let ch = Channel::new(t, c.maxc, c.weight, Arc::clone(&self.eligible));
                            ch.set_full_holds(opts.full_holds);
                            return ch;
                        };
                        ch.set_full_holds(opts.full_holds);
                        taken.push(Arc::as_ptr(ch));
                        let before = old.get(gi).and_then(|og| {
                            og.channels
                                .iter()
                                .find(|oc| oc.host == c.host && oc.port == c.port)
                        });
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
