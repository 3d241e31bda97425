//! Selection, pure over what it is given: which channel of a group a new
//! connection tries first (round robin, smooth weighted round robin, client
//! hash, least connections) and the failover walk over the groups. It reads channels only
//! through [`Backend`], so tables of plain values test it; the only state is
//! a group's [`Selector`] (round-robin counter, weighted-rr weights), written
//! by the connections that select.

use std::net::IpAddr;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};

use crate::atomic_enum::AtomicEnum;
use crate::config::Policy;

/// What selection reads of a channel.
pub(crate) trait Backend {
    /// Enabled by the operator and up by health.
    fn usable(&self) -> bool;
    fn weight(&self) -> u32;
    /// Most live connections (0 = no limit).
    fn maxc(&self) -> u32;
    /// Live connections, connects still in progress included.
    fn conns(&self) -> u32;

    /// Usable for a new connection right now (state, weight and maxc).
    fn eligible(&self) -> bool {
        if !self.usable() || self.weight() == 0 {
            return false;
        }
        let m = self.maxc();
        m == 0 || self.conns() < m
    }

    /// Usable, but at its capacity right now: it will take clients again
    /// without any health change.
    fn busy(&self) -> bool {
        let m = self.maxc();
        self.usable() && self.weight() > 0 && m != 0 && self.conns() >= m
    }
}

impl<B: Backend + ?Sized> Backend for std::sync::Arc<B> {
    fn usable(&self) -> bool {
        (**self).usable()
    }
    fn weight(&self) -> u32 {
        (**self).weight()
    }
    fn maxc(&self) -> u32 {
        (**self).maxc()
    }
    fn conns(&self) -> u32 {
        (**self).conns()
    }
    fn eligible(&self) -> bool {
        (**self).eligible()
    }
    fn busy(&self) -> bool {
        (**self).busy()
    }
}

/// One group's selection state: its policy (changed by the control socket)
/// and the round-robin positions (advanced by connections).
#[derive(Debug)]
pub(crate) struct Selector {
    policy: AtomicEnum<Policy>,
    rr: AtomicUsize,
    /// Smooth weighted round robin's current weights (only used when some
    /// weight differs from 1).
    swrr: Mutex<Vec<i64>>,
}

impl Selector {
    pub(crate) fn new(policy: Policy, n: usize) -> Selector {
        Selector {
            policy: AtomicEnum::new(policy),
            rr: AtomicUsize::new(0),
            swrr: Mutex::new(vec![0; n]),
        }
    }

    pub(crate) fn policy(&self) -> Policy {
        self.policy.load(Relaxed)
    }

    pub(crate) fn set_policy(&self, p: Policy) {
        self.policy.store(p, Relaxed);
    }

    /// Continue `other`'s round-robin position (structural changes, reload).
    pub(crate) fn keep_position(&self, other: &Selector) {
        self.rr.store(other.rr.load(Relaxed), Relaxed);
    }

    /// Index of the channel to try first, or None if nothing is eligible
    /// (a hash group always names its hashed channel).
    pub(crate) fn start<B: Backend>(&self, backends: &[B], client_hash: u32) -> Option<usize> {
        if backends.is_empty() {
            return None;
        }
        match self.policy() {
            Policy::Hash => Some(client_hash as usize % backends.len()),
            Policy::RoundRobin => {
                if backends.iter().any(|b| b.weight() != 1) {
                    let mut cw = self.swrr.lock().unwrap_or_else(|p| p.into_inner());
                    return swrr_pick(&mut cw, backends);
                }
                rr_pick(backends, || self.rr.fetch_add(1, Relaxed))
            }
            Policy::LeastConn => least_conn_pick(backends, || self.rr.fetch_add(1, Relaxed)),
        }
    }
}

/// Round robin over the eligible backends: the `tick()`-th one (modulo
/// their count). `tick` is taken only when something is eligible.
pub(crate) fn rr_pick<B: Backend>(backends: &[B], tick: impl FnOnce() -> usize) -> Option<usize> {
    let eligible = backends.iter().filter(|b| b.eligible()).count();
    if eligible == 0 {
        return None;
    }
    let k = tick() % eligible;
    backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.eligible())
        .nth(k)
        .map(|(i, _)| i)
}

/// nginx's smooth weighted round robin over the eligible backends; `cw`
/// holds the current weights between picks.
pub(crate) fn swrr_pick<B: Backend>(cw: &mut Vec<i64>, backends: &[B]) -> Option<usize> {
    cw.resize(backends.len(), 0);
    let mut total = 0i64;
    let mut best: Option<usize> = None;
    for (i, b) in backends.iter().enumerate() {
        if !b.eligible() {
            continue;
        }
        let w = i64::from(b.weight());
        cw[i] += w;
        total += w;
        if best.is_none_or(|x| cw[i] > cw[x]) {
            best = Some(i);
        }
    }
    if let Some(b) = best {
        cw[b] -= total;
    }
    best
}

/// The eligible backend with the fewest connections per unit of weight
/// (`conns / weight`, compared by cross-multiplication), connects in
/// progress included: a backend slow to accept piles up in-progress
/// connects and so gets fewer new ones. Ties go round robin: the
/// `tick()`-th of the tied (taken only when there is a tie).
pub(crate) fn least_conn_pick<B: Backend>(
    backends: &[B],
    tick: impl FnOnce() -> usize,
) -> Option<usize> {
    // The lowest load seen, as (conns, weight), and how many share it.
    let mut best: Option<(u64, u64)> = None;
    let mut tied = 0usize;
    for b in backends.iter().filter(|b| b.eligible()) {
        let (c, w) = (u64::from(b.conns()), u64::from(b.weight()));
        match best {
            Some((bc, bw)) if c * bw > bc * w => {}
            Some((bc, bw)) if c * bw == bc * w => tied += 1,
            _ => {
                best = Some((c, w));
                tied = 1;
            }
        }
    }
    let (bc, bw) = best?;
    let k = if tied > 1 { tick() % tied } else { 0 };
    backends
        .iter()
        .enumerate()
        .filter(|(_, b)| b.eligible() && u64::from(b.conns()) * bw == bc * u64::from(b.weight()))
        .nth(k)
        .map(|(i, _)| i)
}

/// Stable across restarts and platforms (FNV-1a over the address bytes; an
/// IPv4-mapped IPv6 address hashes like the IPv4 address).
pub(crate) fn client_hash(ip: IpAddr) -> u32 {
    let ip = ip.to_canonical();
    let (v4, v6);
    let bytes: &[u8] = match ip {
        IpAddr::V4(v) => {
            v4 = v.octets();
            &v4
        }
        IpAddr::V6(v) => {
            v6 = v.octets();
            &v6
        }
    };
    let mut h: u32 = 0x811c_9dc5;
    for &b in bytes {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    h
}

/// A group as selection sees it.
pub(crate) trait Tier {
    type Backend: Backend;
    fn backends(&self) -> &[Self::Backend];
    fn selector(&self) -> &Selector;
    /// With nothing eligible, the group holds its clients (started on
    /// demand) instead of passing them on. Asked only then.
    fn holds(&self) -> bool {
        false
    }
}

impl<T: Tier + ?Sized> Tier for std::sync::Arc<T> {
    type Backend = T::Backend;
    fn backends(&self) -> &[T::Backend] {
        (**self).backends()
    }
    fn selector(&self) -> &Selector {
        (**self).selector()
    }
    fn holds(&self) -> bool {
        (**self).holds()
    }
}

/// Walks groups floor..n, then 0..floor (manual failback keeps traffic on
/// the floor group; lower groups are a last resort while it has nothing).
#[derive(Debug)]
struct GroupOrder {
    floor: usize,
    n: usize,
    k: usize,
    /// Groups walked at most (`n`; fewer for a routed chain, which does
    /// not wrap around).
    count: usize,
}

impl Iterator for GroupOrder {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.k >= self.count {
            return None;
        }
        let g = (self.floor + self.k) % self.n;
        self.k += 1;
        Some(g)
    }
}

#[derive(Debug)]
struct GroupWalk {
    g: usize,
    start: usize,
    step: usize,
    /// Hash groups without -H try only their hashed channel.
    limit: usize,
}

/// A lazy, failover-ordered walk over the eligible backends: the chosen one
/// of the first usable group, then that group's others, then later groups.
/// A group's start is chosen only when the walk reaches it (an unused backup
/// group's round robin does not advance), and eligibility is re-checked at
/// each step, so a channel disabled meanwhile (e.g. by `-a`) is skipped.
#[derive(Debug)]
pub(crate) struct Walk {
    order: GroupOrder,
    hash: u32,
    hash_failover: bool,
    /// A busy group ends the walk instead of passing its clients on.
    no_spill: bool,
    cur: Option<GroupWalk>,
}

impl Walk {
    /// A walk over `n` groups starting at `floor` for a client hashing to
    /// `hash`; `hash_failover` (-H) lets a hash group try its others.
    pub(crate) fn new(floor: usize, n: usize, hash: u32, hash_failover: bool) -> Walk {
        Walk {
            order: GroupOrder {
                floor: floor.min(n.saturating_sub(1)),
                n,
                k: 0,
                count: n,
            },
            hash,
            hash_failover,
            no_spill: false,
            cur: None,
        }
    }

    /// A walk over the chain `from..n` only (a routed client: its group,
    /// then the groups after it; never the ones before).
    pub(crate) fn chain(mut self, from: usize) -> Walk {
        self.order.floor = from.min(self.order.n.saturating_sub(1));
        self.order.count = self.order.n.saturating_sub(self.order.floor);
        self
    }

    /// With `on`, a group with nothing eligible but a channel that is only
    /// [busy](Backend::busy) ends the walk: its clients wait for it
    /// (`--spin`) or are closed, never sent to a later group (fencing: a
    /// full writer is not a reason to write elsewhere).
    pub(crate) fn no_spill(mut self, on: bool) -> Walk {
        self.no_spill = on;
        self
    }

    /// The group that ends this walk by holding its clients (see
    /// [`Tier::holds`]): the first one walked with nothing eligible that
    /// holds, unless a busy group ends the walk first (`no_spill`).
    pub(crate) fn held<T: Tier>(mut self, tiers: &[T]) -> Option<usize> {
        for g in self.order.by_ref() {
            let tier = tiers.get(g)?;
            if tier.backends().iter().any(Backend::eligible) {
                continue;
            }
            if tier.holds() {
                return Some(g);
            }
            if self.no_spill && tier.backends().iter().any(Backend::busy) {
                return None;
            }
        }
        None
    }

    /// The next candidate as (group, index), or None when all are tried.
    pub(crate) fn next<T: Tier>(&mut self, tiers: &[T]) -> Option<(usize, usize)> {
        loop {
            if self.cur.is_none() {
                let g = self.order.next()?;
                let tier = tiers.get(g)?;
                let Some(start) = tier.selector().start(tier.backends(), self.hash) else {
                    if tier.holds() {
                        self.order.k = self.order.count;
                        return None;
                    }
                    if self.no_spill && tier.backends().iter().any(Backend::busy) {
                        self.order.k = self.order.count;
                        return None;
                    }
                    continue;
                };
                let n = tier.backends().len();
                // A hash group names its channel even when none is
                // eligible: its hold is seen here (past the first test
                // only when its channel is not eligible).
                if tier.selector().policy() == Policy::Hash
                    && !tier.backends().get(start).is_some_and(Backend::eligible)
                    && !tier.backends().iter().any(Backend::eligible)
                    && tier.holds()
                {
                    self.order.k = self.order.count;
                    return None;
                }
                let limit = match tier.selector().policy() {
                    Policy::Hash if !self.hash_failover => 1,
                    Policy::Hash | Policy::RoundRobin | Policy::LeastConn => n,
                };
                self.cur = Some(GroupWalk {
                    g,
                    start,
                    step: 0,
                    limit,
                });
            }
            let w = self.cur.as_mut()?;
            let backends = tiers.get(w.g)?.backends();
            let n = backends.len();
            while w.step < w.limit {
                let i = (w.start + w.step) % n;
                w.step += 1;
                if backends.get(i).is_some_and(Backend::eligible) {
                    return Some((w.g, i));
                }
            }
            self.cur = None;
        }
    }
}

#[cfg(test)]
mod tests;
