//! Groups, channels, their states and counters, and selection.
//!
//! Who writes what (one writer per field):
//! - the control socket writes operator state (`admin`, `maxc`, `weight`,
//!   group policy) and swaps the group snapshot for structural changes;
//! - health (`up`, rise/fall streaks, last reason) is written through
//!   [`Channel::observe`] by the monitor and by the data path's passive
//!   detection, serialized by a small per-channel mutex that is never held
//!   across `.await` and never taken on the success path;
//! - the data path writes counters through [`ConnGuard`] and atomics.
//!
//! Selection ([`Candidates`]) loads the group snapshot once per connection
//! and reads atomics only (a weighted group takes a short mutex).

use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU8, AtomicU32, AtomicU64, AtomicUsize, Ordering::*};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use arc_swap::ArcSwap;
use tokio::sync::Notify;

use crate::config::{Failback, GroupConfig, Host, Policy};
use crate::health::{RiseFall, RiseFallParams};

/// Operator state, written only by the control socket (and the state file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Admin {
    Enabled,
    /// Hard-disabled (`DIS`): only an operator re-enables it.
    Disabled,
    /// No new connections; live ones continue.
    Drain,
}

impl Admin {
    fn from_u8(v: u8) -> Admin {
        match v {
            1 => Admin::Disabled,
            2 => Admin::Drain,
            _ => Admin::Enabled,
        }
    }
    fn as_u8(self) -> u8 {
        match self {
            Admin::Enabled => 0,
            Admin::Disabled => 1,
            Admin::Drain => 2,
        }
    }
}

/// Where a channel points. Swapped whole by `assign` and re-resolution.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: Host,
    pub port: u16,
    /// Resolved addresses, tried in order. Empty when the name did not resolve.
    pub addrs: Vec<SocketAddr>,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

/// Health bookkeeping behind the channel's mutex.
#[derive(Debug, Default)]
pub struct HealthState {
    pub rf: RiseFall,
    /// Why the last check or connect failed (or "ok").
    pub last_reason: String,
    pub last_change: Option<Instant>,
}

/// One backend destination.
pub struct Channel {
    target: ArcSwap<Target>,
    admin: AtomicU8,
    up: AtomicBool,
    maxc: AtomicU32,
    weight: AtomicU32,
    /// Live connections (including connects in progress).
    conns: AtomicU32,
    pub total: AtomicU64,
    /// Bytes sent to the backend.
    pub sent: AtomicU64,
    /// Bytes received from the backend.
    pub rcvd: AtomicU64,
    pub connect_failures: AtomicU64,
    /// Health checks that passed / failed (written by the monitor).
    pub checks_passed: AtomicU64,
    pub checks_failed: AtomicU64,
    /// Duration of the last health check, in microseconds.
    pub check_micros: AtomicU64,
    /// Set while a failure streak is open, so a successful connect can
    /// close it without taking the health mutex every time.
    failing: AtomicBool,
    health: Mutex<HealthState>,
    /// Wakes clients spinning for an eligible channel.
    eligible: Arc<Notify>,
    /// Bumped to close this channel's live sessions (`on-down=shutdown`,
    /// `on-up=shutdown-backup`); each relay watches it.
    sessions: tokio::sync::watch::Sender<u64>,
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Channel({})", self.target())
    }
}

/// The state shown by `show`: balance's three letters, plus drain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ShownState {
    Ena,
    SoftDisabled,
    HardDisabled,
    Drain,
}

impl ShownState {
    pub fn as_str(self) -> &'static str {
        match self {
            ShownState::Ena => "ENA",
            ShownState::SoftDisabled => "dis",
            ShownState::HardDisabled => "DIS",
            ShownState::Drain => "drn",
        }
    }
}

impl Channel {
    pub fn new(target: Target, maxc: u32, weight: u32, eligible: Arc<Notify>) -> Arc<Channel> {
        let resolved = !target.addrs.is_empty();
        Arc::new(Channel {
            target: ArcSwap::from_pointee(target),
            admin: AtomicU8::new(Admin::Enabled.as_u8()),
            up: AtomicBool::new(resolved),
            maxc: AtomicU32::new(maxc),
            weight: AtomicU32::new(weight),
            conns: AtomicU32::new(0),
            total: AtomicU64::new(0),
            sent: AtomicU64::new(0),
            rcvd: AtomicU64::new(0),
            connect_failures: AtomicU64::new(0),
            checks_passed: AtomicU64::new(0),
            checks_failed: AtomicU64::new(0),
            check_micros: AtomicU64::new(0),
            failing: AtomicBool::new(false),
            health: Mutex::new(HealthState {
                rf: RiseFall {
                    up: resolved,
                    ..Default::default()
                },
                last_reason: if resolved {
                    String::new()
                } else {
                    "name does not resolve".into()
                },
                last_change: None,
            }),
            eligible,
            sessions: tokio::sync::watch::Sender::new(0),
        })
    }

    /// A receiver that changes when [`Channel::close_sessions`] is called.
    pub fn session_kill(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sessions.subscribe()
    }

    /// Close every live session relayed to this channel.
    pub fn close_sessions(&self) {
        self.sessions.send_modify(|g| *g = g.wrapping_add(1));
    }

    pub fn target(&self) -> Arc<Target> {
        self.target.load_full()
    }
    pub fn set_target(&self, t: Target) {
        self.target.store(Arc::new(t));
        self.eligible.notify_waiters();
    }
    pub fn admin(&self) -> Admin {
        Admin::from_u8(self.admin.load(Relaxed))
    }
    pub fn set_admin(&self, a: Admin) {
        self.admin.store(a.as_u8(), Release);
        if a == Admin::Enabled {
            self.eligible.notify_waiters();
        }
    }
    pub fn is_up(&self) -> bool {
        self.up.load(Relaxed)
    }
    pub fn maxc(&self) -> u32 {
        self.maxc.load(Relaxed)
    }
    pub fn set_maxc(&self, m: u32) {
        self.maxc.store(m, Relaxed);
        self.eligible.notify_waiters();
    }
    pub fn weight(&self) -> u32 {
        self.weight.load(Relaxed)
    }
    pub fn set_weight(&self, w: u32) {
        self.weight.store(w, Relaxed);
        self.eligible.notify_waiters();
    }
    pub fn conns(&self) -> u32 {
        self.conns.load(Relaxed)
    }

    pub fn shown_state(&self) -> ShownState {
        match self.admin() {
            Admin::Disabled => ShownState::HardDisabled,
            Admin::Drain => ShownState::Drain,
            Admin::Enabled if !self.is_up() => ShownState::SoftDisabled,
            Admin::Enabled => ShownState::Ena,
        }
    }

    /// Usable for a new connection right now (state and maxc).
    pub fn eligible(&self) -> bool {
        if self.admin() != Admin::Enabled || !self.is_up() || self.weight() == 0 {
            return false;
        }
        let m = self.maxc();
        m == 0 || self.conns() < m
    }

    /// Reserve a connection slot, respecting `maxc` even under races.
    pub fn try_acquire(self: &Arc<Self>) -> Option<ConnGuard> {
        let mut cur = self.conns.load(Relaxed);
        loop {
            let m = self.maxc();
            if m != 0 && cur >= m {
                return None;
            }
            match self
                .conns
                .compare_exchange_weak(cur, cur + 1, AcqRel, Relaxed)
            {
                Ok(_) => {
                    return Some(ConnGuard {
                        ch: Arc::clone(self),
                    });
                }
                Err(now) => cur = now,
            }
        }
    }

    /// Feed one health result (probe or passive). Returns `Some(up)` when the
    /// channel flipped, so the caller logs it once.
    pub fn observe(&self, ok: bool, reason: &str, p: &RiseFallParams) -> Option<bool> {
        let mut h = lock(&self.health);
        if ok {
            if h.last_reason != "ok" {
                h.last_reason = "ok".into();
            }
        } else if h.last_reason != reason {
            h.last_reason = reason.to_string();
        }
        self.failing.store(!ok, Relaxed);
        let flip = h.rf.observe(ok, p);
        if let Some(up) = flip {
            self.set_up_locked(&mut h, up);
        }
        flip
    }

    /// Count one finished health check and its duration (monitor only).
    pub fn record_check(&self, ok: bool, took: std::time::Duration) {
        let c = if ok {
            &self.checks_passed
        } else {
            &self.checks_failed
        };
        c.fetch_add(1, Relaxed);
        self.check_micros
            .store(u64::try_from(took.as_micros()).unwrap_or(u64::MAX), Relaxed);
    }

    /// A connect from real traffic succeeded: it ends a failure streak (it
    /// does not count as a pass; only checks bring a channel back up).
    pub fn connect_ok(&self) {
        if self.failing.swap(false, Relaxed) {
            lock(&self.health).rf.failures = 0;
        }
    }

    /// Soft-disable at once (`-a`). True if it was up.
    pub fn force_down(&self, reason: &str) -> bool {
        let mut h = lock(&self.health);
        h.last_reason = reason.to_string();
        let flipped = h.rf.force_down();
        if flipped {
            self.set_up_locked(&mut h, false);
        }
        flipped
    }

    /// Clear health (operator `enable`): up, streaks reset.
    pub fn force_up(&self) -> bool {
        let mut h = lock(&self.health);
        let flipped = h.rf.force_up();
        h.last_reason = String::new();
        self.set_up_locked(&mut h, true);
        flipped
    }

    fn set_up_locked(&self, h: &mut HealthState, up: bool) {
        h.last_change = Some(Instant::now());
        self.up.store(up, Release);
        if up {
            self.eligible.notify_waiters();
        }
    }

    /// A copy of the health bookkeeping, for `show`.
    pub fn health(&self) -> (RiseFall, String) {
        let h = lock(&self.health);
        (h.rf, h.last_reason.clone())
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A reserved connection slot on a channel; released on drop, so `maxc`
/// counts can never leak.
pub struct ConnGuard {
    ch: Arc<Channel>,
}

impl ConnGuard {
    pub fn channel(&self) -> &Arc<Channel> {
        &self.ch
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let before = self.ch.conns.fetch_sub(1, AcqRel);
        let m = self.ch.maxc();
        if m != 0 && before >= m {
            self.ch.eligible.notify_waiters();
        }
    }
}

/// An ordered list of channels with a policy.
pub struct Group {
    policy: AtomicU8,
    pub channels: Vec<Arc<Channel>>,
    rr: AtomicUsize,
    /// Smooth weighted round robin's current weights (only used when some
    /// weight differs from 1).
    swrr: Mutex<Vec<i64>>,
}

impl Group {
    pub fn new(policy: Policy, channels: Vec<Arc<Channel>>) -> Group {
        let n = channels.len();
        Group {
            policy: AtomicU8::new(policy_u8(policy)),
            channels,
            rr: AtomicUsize::new(0),
            swrr: Mutex::new(vec![0; n]),
        }
    }
    pub fn policy(&self) -> Policy {
        if self.policy.load(Relaxed) == 1 {
            Policy::Hash
        } else {
            Policy::RoundRobin
        }
    }
    pub fn set_policy(&self, p: Policy) {
        self.policy.store(policy_u8(p), Relaxed);
    }
    /// A copy with one more channel, keeping the round-robin position.
    pub fn with_channel(&self, ch: Arc<Channel>) -> Group {
        let mut channels = self.channels.clone();
        channels.push(ch);
        let g = Group::new(self.policy(), channels);
        g.rr.store(self.rr.load(Relaxed), Relaxed);
        g
    }

    /// Index of the channel to try first, or None if nothing is eligible.
    fn start(&self, client_hash: u32) -> Option<usize> {
        let n = self.channels.len();
        if n == 0 {
            return None;
        }
        if self.policy() == Policy::Hash {
            return Some(client_hash as usize % n);
        }
        if self.channels.iter().any(|c| c.weight() != 1) {
            return self.swrr_pick();
        }
        let eligible = self.channels.iter().filter(|c| c.eligible()).count();
        if eligible == 0 {
            return None;
        }
        let k = self.rr.fetch_add(1, Relaxed) % eligible;
        self.channels
            .iter()
            .enumerate()
            .filter(|(_, c)| c.eligible())
            .nth(k)
            .map(|(i, _)| i)
    }

    /// nginx's smooth weighted round robin over the eligible channels.
    fn swrr_pick(&self) -> Option<usize> {
        let mut cw = lock(&self.swrr);
        cw.resize(self.channels.len(), 0);
        let mut total = 0i64;
        let mut best: Option<usize> = None;
        for (i, c) in self.channels.iter().enumerate() {
            if !c.eligible() {
                continue;
            }
            let w = i64::from(c.weight());
            cw[i] += w;
            total += w;
            if best.is_none_or(|b| cw[i] > cw[b]) {
                best = Some(i);
            }
        }
        if let Some(b) = best {
            cw[b] -= total;
        }
        best
    }
}

fn policy_u8(p: Policy) -> u8 {
    match p {
        Policy::RoundRobin => 0,
        Policy::Hash => 1,
    }
}

/// Per-listener selection settings that do not change at runtime.
#[derive(Debug, Clone, Copy)]
pub struct SelectOpts {
    pub hash_failover: bool,
    pub failback: Failback,
}

/// All groups of one listener.
pub struct Pool {
    groups: ArcSwap<Vec<Arc<Group>>>,
    pub opts: SelectOpts,
    /// With manual failback: the group traffic has failed over to.
    floor: AtomicUsize,
    /// Notified when a channel may have become eligible.
    pub eligible: Arc<Notify>,
}

impl Pool {
    /// Build from config; `resolve` turns a host and port into addresses.
    pub fn new(
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
                        Channel::new(t, c.maxc, c.weight, Arc::clone(&eligible))
                    })
                    .collect();
                Arc::new(Group::new(g.policy, chans))
            })
            .collect();
        Pool {
            groups: ArcSwap::from_pointee(gs),
            opts,
            floor: AtomicUsize::new(0),
            eligible,
        }
    }

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
                            return Channel::new(t, c.maxc, c.weight, Arc::clone(&self.eligible));
                        };
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
                    ng.rr.store(og.rr.load(Relaxed), Relaxed);
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

    pub fn groups(&self) -> Arc<Vec<Arc<Group>>> {
        self.groups.load_full()
    }

    /// Replace the group list (structural changes; control socket only).
    pub fn store_groups(&self, gs: Vec<Arc<Group>>) {
        self.groups.store(Arc::new(gs));
        self.eligible.notify_waiters();
    }

    pub fn new_channel(&self, target: Target, maxc: u32, weight: u32) -> Arc<Channel> {
        Channel::new(target, maxc, weight, Arc::clone(&self.eligible))
    }

    /// The group new connections start from (manual failback), and whether
    /// traffic is failed over.
    pub fn floor(&self) -> usize {
        self.floor.load(Relaxed)
    }

    /// A connection was served by group `g`: with manual failback, stay there.
    pub fn served_by(&self, g: usize) {
        if self.opts.failback == Failback::Manual {
            self.floor.fetch_max(g, Relaxed);
        }
    }

    /// Operator `failback`: return to group 0. Returns the previous floor.
    pub fn failback(&self) -> usize {
        let prev = self.floor.swap(0, Relaxed);
        self.eligible.notify_waiters();
        prev
    }

    /// Whether any channel could take a connection now.
    pub fn any_eligible(&self) -> bool {
        self.groups()
            .iter()
            .any(|g| g.channels.iter().any(|c| c.eligible()))
    }

    /// The candidates for one client, best first.
    pub fn candidates(&self, client: IpAddr) -> Candidates {
        let groups = self.groups();
        let floor = self.floor().min(groups.len().saturating_sub(1));
        Candidates {
            order: GroupOrder {
                floor,
                n: groups.len(),
                k: 0,
            },
            groups,
            hash: client_hash(client),
            opts: self.opts,
            cur: None,
        }
    }
}

/// Walks groups floor..n, then 0..floor (manual failback keeps traffic on
/// the floor group; lower groups are a last resort while it has nothing).
struct GroupOrder {
    floor: usize,
    n: usize,
    k: usize,
}

impl Iterator for GroupOrder {
    type Item = usize;
    fn next(&mut self) -> Option<usize> {
        if self.k >= self.n {
            return None;
        }
        let g = (self.floor + self.k) % self.n;
        self.k += 1;
        Some(g)
    }
}

struct GroupWalk {
    g: usize,
    start: usize,
    step: usize,
    /// Hash groups without -H try only their hashed channel.
    limit: usize,
}

/// A lazy, failover-ordered walk over the eligible channels: the chosen one
/// of the first usable group, then that group's others, then later groups.
/// Eligibility is re-checked at each step, so a channel disabled meanwhile
/// (e.g. by `-a`) is skipped.
pub struct Candidates {
    groups: Arc<Vec<Arc<Group>>>,
    order: GroupOrder,
    hash: u32,
    opts: SelectOpts,
    cur: Option<GroupWalk>,
}

/// One candidate: group index, channel index, channel.
#[derive(Debug, Clone)]
pub struct Candidate {
    pub group: usize,
    pub index: usize,
    pub channel: Arc<Channel>,
}

impl Iterator for Candidates {
    type Item = Candidate;
    fn next(&mut self) -> Option<Candidate> {
        loop {
            if self.cur.is_none() {
                let g = self.order.next()?;
                let group = &self.groups[g];
                let Some(start) = group.start(self.hash) else {
                    continue;
                };
                let n = group.channels.len();
                let limit = if group.policy() == Policy::Hash && !self.opts.hash_failover {
                    1
                } else {
                    n
                };
                self.cur = Some(GroupWalk {
                    g,
                    start,
                    step: 0,
                    limit,
                });
            }
            let Some(w) = self.cur.as_mut() else { continue };
            let group = &self.groups[w.g];
            let n = group.channels.len();
            while w.step < w.limit {
                let i = (w.start + w.step) % n;
                w.step += 1;
                let ch = &group.channels[i];
                if ch.eligible() {
                    return Some(Candidate {
                        group: w.g,
                        index: i,
                        channel: Arc::clone(ch),
                    });
                }
            }
            self.cur = None;
        }
    }
}

/// Stable across restarts and platforms (FNV-1a over the address bytes; an
/// IPv4-mapped IPv6 address hashes like the IPv4 address).
pub fn client_hash(ip: IpAddr) -> u32 {
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

#[cfg(test)]
#[allow(unused_imports)]
mod tests;
