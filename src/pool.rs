//! Groups of channels, the listener's pool, and the candidates for one
//! connection. The pieces live beside this file: [`channel`] (one backend's
//! state and counters), [`select`] (pure selection: round robin, weighted,
//! hash, the failover walk) and [`rebuild`] (the reload merge).
//!
//! Who writes what: the control socket swaps the group snapshot for
//! structural changes and sets a group's policy; the data path advances the
//! round-robin positions and the manual-failback floor. Selection
//! ([`Candidates`]) loads the group snapshot once per connection and reads
//! atomics only (a weighted group takes a short mutex).

pub(crate) mod channel;
pub(crate) mod demand;
mod rebuild;
pub(crate) mod select;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering::*};

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::{Failback, GroupConfig, Host, Policy, names};

pub(crate) use channel::{Admin, Channel, ConnGuard, EndCause, ShownState, Target};
pub(crate) use select::client_hash;
use select::{Selector, Tier, Walk};

/// An ordered list of channels with a policy.
pub(crate) struct Group {
    /// Its name, unique in the listener (see `crate::config::names`).
    name: Box<str>,
    pub(crate) channels: Vec<Arc<Channel>>,
    selector: Selector,
    /// `on_empty:` / `on_idle:` (see [`demand`]); `None` for most groups.
    demand: Option<Arc<demand::Demand>>,
}

impl Group {
    pub(crate) fn new(
        name: impl Into<Box<str>>,
        policy: Policy,
        channels: Vec<Arc<Channel>>,
    ) -> Group {
        let selector = Selector::new(policy, channels.len());
        Group {
            name: name.into(),
            channels,
            selector,
            demand: None,
        }
    }
    /// This group, started on demand by `d`.
    pub(crate) fn with_demand(mut self, d: Option<Arc<demand::Demand>>) -> Group {
        self.demand = d;
        self
    }
    /// Its on-demand state, if it has `on_empty:` or `on_idle:`.
    pub(crate) fn demand(&self) -> Option<&Arc<demand::Demand>> {
        self.demand.as_ref()
    }
    pub(crate) fn name(&self) -> &str {
        &self.name
    }
    pub(crate) fn policy(&self) -> Policy {
        self.selector.policy()
    }
    pub(crate) fn set_policy(&self, p: Policy) {
        self.selector.set_policy(p);
    }
    /// A copy with one more channel, keeping the round-robin position.
    pub(crate) fn with_channel(&self, ch: Arc<Channel>) -> Group {
        let mut channels = self.channels.clone();
        channels.push(ch);
        let g =
            Group::new(self.name.clone(), self.policy(), channels).with_demand(self.demand.clone());
        g.selector.keep_position(&self.selector);
        g
    }

    /// A copy without `ch` (live connections on it go on), keeping the
    /// round-robin position as far as it still fits.
    pub(crate) fn without_channel(&self, ch: &Arc<Channel>) -> Group {
        let channels: Vec<Arc<Channel>> = self
            .channels
            .iter()
            .filter(|c| !Arc::ptr_eq(c, ch))
            .cloned()
            .collect();
        let g =
            Group::new(self.name.clone(), self.policy(), channels).with_demand(self.demand.clone());
        g.selector.keep_position(&self.selector);
        g
    }
}

impl Tier for Group {
    type Backend = Arc<Channel>;
    fn backends(&self) -> &[Arc<Channel>] {
        &self.channels
    }
    fn selector(&self) -> &Selector {
        &self.selector
    }
    fn holds(&self) -> bool {
        self.demand.as_ref().is_some_and(|d| d.holds())
    }
}

/// Per-listener selection settings that do not change at runtime.
#[derive(Debug, Clone, Copy)]
pub(crate) struct SelectOpts {
    pub(crate) hash_failover: bool,
    pub(crate) failback: Failback,
    /// A server that reports itself full takes no new client even
    /// without `maxc` (`--spin`: clients wait instead of meeting its
    /// error).
    pub(crate) full_holds: bool,
    /// A busy group holds its clients instead of passing them to a later
    /// group (fencing).
    pub(crate) no_spill: bool,
}

/// All groups of one listener.
pub(crate) struct Pool {
    groups: ArcSwap<Vec<Arc<Group>>>,
    pub(crate) opts: SelectOpts,
    /// With manual failback: the group traffic has failed over to.
    floor: AtomicUsize,
    /// Notified when a channel may have become eligible.
    pub(crate) eligible: Arc<Notify>,
}

impl Pool {
    /// Build from config; `resolve` turns a host and port into addresses.
    pub(crate) fn new(
        groups: &[GroupConfig],
        opts: SelectOpts,
        resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
    ) -> Pool {
        let eligible = Arc::new(Notify::new());
        let gs = groups
            .iter()
            .map(|g| {
                let chans = g
                    .channels
                    .iter()
                    .map(|c| {
                        let t = Target {
                            host: c.host.clone(),
                            port: c.port,
                            addrs: resolve(&c.host, c.port),
                        };
                        let ch = Channel::new(
                            c.name.as_str(),
                            t,
                            c.maxc,
                            c.weight,
                            Arc::clone(&eligible),
                        );
                        ch.set_full_holds(opts.full_holds);
                        ch.set_proxy_protocol(c.proxy_protocol);
                        ch
                    })
                    .collect();
                let d = g
                    .on_demand
                    .as_ref()
                    .map(|od| Arc::new(demand::Demand::new((**od).clone())));
                Arc::new(Group::new(g.name.as_str(), g.policy, chans).with_demand(d))
            })
            .collect();
        Pool {
            groups: ArcSwap::from_pointee(gs),
            opts,
            floor: AtomicUsize::new(0),
            eligible,
        }
    }

    pub(crate) fn groups(&self) -> Arc<Vec<Arc<Group>>> {
        self.groups.load_full()
    }

    /// Replace the group list (structural changes; control socket only).
    pub(crate) fn store_groups(&self, gs: Vec<Arc<Group>>) {
        self.groups.store(Arc::new(gs));
        self.eligible.notify_waiters();
    }

    /// Change the group list with `f` (None: no change), atomically
    /// against other structural writers.
    pub(crate) fn update_groups(
        &self,
        f: impl Fn(&[Arc<Group>]) -> Option<Vec<Arc<Group>>>,
    ) -> bool {
        let mut changed = false;
        self.groups.rcu(|cur| match f(cur) {
            Some(gs) => {
                changed = true;
                Arc::new(gs)
            }
            None => {
                changed = false;
                Arc::clone(cur)
            }
        });
        if changed {
            self.eligible.notify_waiters();
        }
        changed
    }

    /// A channel made at runtime (`create`, the state file, fleet
    /// registrations); `proxy`: the header it sends (see
    /// [`crate::config::ListenerConfig::proxy_protocol_for`]).
    pub(crate) fn new_channel(
        &self,
        name: &str,
        target: Target,
        maxc: u32,
        weight: u32,
        proxy: Option<crate::config::ProxyVersion>,
    ) -> Arc<Channel> {
        let ch = Channel::new(name, target, maxc, weight, Arc::clone(&self.eligible));
        ch.set_full_holds(self.opts.full_holds);
        ch.set_proxy_protocol(proxy);
        ch
    }

    /// The default name for a new channel at `host:port` that no channel
    /// of the pool has (see `crate::config::names`).
    pub(crate) fn free_channel_name(&self, host: &Host, port: u16) -> String {
        let mut taken: std::collections::HashSet<String> = self
            .groups()
            .iter()
            .flat_map(|g| g.channels.iter().map(|c| c.name().to_string()))
            .collect();
        names::unique(names::default_channel(host, port), &mut taken)
    }

    /// Group `g`'s name (empty if there is no such group): for logs.
    pub(crate) fn group_name(&self, g: usize) -> String {
        self.groups()
            .get(g)
            .map(|gr| gr.name().to_string())
            .unwrap_or_default()
    }

    /// The group new connections start from (manual failback), and whether
    /// traffic is failed over.
    pub(crate) fn floor(&self) -> usize {
        self.floor.load(Relaxed)
    }

    /// A connection was served by group `g`: with manual failback, stay there.
    pub(crate) fn served_by(&self, g: usize) {
        if self.opts.failback == Failback::Manual {
            self.floor.fetch_max(g, Relaxed);
        }
    }

    /// Operator `failback`: return to group 0. Returns the previous floor.
    pub(crate) fn failback(&self) -> usize {
        let prev = self.floor.swap(0, Relaxed);
        self.eligible.notify_waiters();
        prev
    }

    /// Make `g` the group new connections start from (`switchover`).
    pub(crate) fn set_floor(&self, g: usize) {
        self.floor.store(g, Relaxed);
        self.eligible.notify_waiters();
    }

    /// The group new connections go to right now: the first group, in the
    /// order a connection walks them (from the floor), with a channel
    /// eligible now (enabled, up, weight and room); None when none has.
    /// Read on demand (`show`, metrics), never on the data path.
    pub(crate) fn serving_group(&self) -> Option<usize> {
        let groups = self.groups();
        let n = groups.len();
        let floor = self.floor().min(n.saturating_sub(1));
        (0..n)
            .map(|k| (floor + k) % n)
            .find(|&g| groups[g].channels.iter().any(|c| c.eligible()))
    }

    /// Whether any channel could take a connection now.
    #[cfg(test)]
    pub(crate) fn any_eligible(&self) -> bool {
        self.groups()
            .iter()
            .any(|g| g.channels.iter().any(|c| c.eligible()))
    }

    /// The candidates for one client, best first; a routed client walks
    /// its group and the groups after it only.
    pub(crate) fn candidates(&self, pick: Pick) -> Candidates {
        let groups = self.groups();
        let walk = self.walk(pick, groups.len());
        Candidates { groups, walk }
    }

    /// The walk over `n` groups for `pick`.
    fn walk(&self, pick: Pick, n: usize) -> Walk {
        let walk = Walk::new(self.floor(), n, pick.hash, self.opts.hash_failover)
            .no_spill(self.opts.no_spill);
        match pick.from {
            Some(g) => walk.chain(g as usize),
            None => walk,
        }
    }
}

impl Pool {
    /// After a client found nothing to connect to: the group that holds
    /// it (the first in its walk with nothing eligible and `on_empty:`
    /// not paused), with its on-demand state. Cold path only.
    pub(crate) fn holding(&self, pick: Pick) -> Option<(usize, Arc<demand::Demand>)> {
        let groups = self.groups();
        let g = self.walk(pick, groups.len()).held(&groups[..])?;
        Some((g, Arc::clone(groups.get(g)?.demand.as_ref()?)))
    }
}

/// What selection needs of a client, small enough to keep across a
/// connect: its address's hash and, when routed, its group.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Pick {
    hash: u32,
    from: Option<u32>,
}

impl Pick {
    pub(crate) fn client(ip: IpAddr) -> Pick {
        Pick {
            hash: client_hash(ip),
            from: None,
        }
    }

    /// A routed client: the chain of group `from`.
    pub(crate) fn routed(ip: IpAddr, from: usize) -> Pick {
        Pick {
            hash: client_hash(ip),
            // A group index past u32 cannot exist (the config file is
            // 1 MiB at most); such a client walks from the last group.
            from: Some(u32::try_from(from).unwrap_or(u32::MAX)),
        }
    }
}

/// The failover-ordered candidates for one connection (see [`Walk`]): the
/// group snapshot taken once, eligibility re-checked at each step.
pub(crate) struct Candidates {
    groups: Arc<Vec<Arc<Group>>>,
    walk: Walk,
}

/// One candidate: group index, channel index, channel.
#[derive(Debug, Clone)]
pub(crate) struct Candidate {
    pub(crate) group: usize,
    pub(crate) index: usize,
    pub(crate) channel: Arc<Channel>,
}

impl Iterator for Candidates {
    type Item = Candidate;
    fn next(&mut self) -> Option<Candidate> {
        let (group, index) = self.walk.next(&self.groups)?;
        let channel = Arc::clone(self.groups.get(group)?.channels.get(index)?);
        Some(Candidate {
            group,
            index,
            channel,
        })
    }
}

#[cfg(test)]
mod tests;
