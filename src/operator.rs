//! The operator model: every change an operator can make to a running
//! listener, as one type ([`OperatorOp`]), applied by one function
//! ([`apply`]) that returns a typed [`Outcome`]. Front ends (the control
//! socket, fleet mode's etcd watch, later HAProxy's runtime dialect) only
//! parse their words into an op and render the outcome or the
//! [`OpError`] in their own dialect; none of them writes pool state
//! itself.
//!
//! Channels and groups are named by typed keys ([`ChannelKey`],
//! [`GroupKey`]), never by formatted strings. An op is generic over how
//! it names them, so a front end can parse into its own references first
//! (the control socket's index in the session's current group) and map
//! them to keys with [`OperatorOp::map`].
//!
//! Whether a change is kept in the state file is [`OperatorOp::persists`];
//! the front end that made it writes the file.
//!
//! Every op applies at once except `switchover`, which waits (seconds)
//! for the target group to catch up: [`apply`] only checks and plans it
//! and returns [`Outcome::Switching`], a handle the front end awaits
//! ([`switchover::Switch::run`]) or runs its own way (fleet mode through
//! etcd). The other ops stay synchronous and never wait.

use std::sync::Arc;
use std::time::{Duration, SystemTime};

use crate::config::grammar::host_literal;
use crate::config::services::parse_port;
use crate::config::{Host, Policy, names};
use crate::pool::{Admin, Channel, Group, Target};
use crate::service::Service;
use crate::service::hold::DEFAULT_HOLD_MAX;

/// The largest weight.
pub(crate) const MAX_WEIGHT: u32 = 10_000;

/// A channel's address as operators write it: `HOST:PORT` (`[v6]:PORT`).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Endpoint {
    pub(crate) host: Host,
    pub(crate) port: u16,
}

impl std::fmt::Display for Endpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Endpoint {
    pub(crate) fn parse(s: &str) -> Result<Endpoint, String> {
        let (h, p) = s
            .rsplit_once(':')
            .ok_or_else(|| format!("{s:?} is not HOST:PORT"))?;
        let host = host_literal(h).ok_or_else(|| format!("bad host in {s:?}"))?;
        let port = parse_port(p).map_err(|e| format!("bad port in {s:?}: {e}"))?;
        Ok(Endpoint { host, port })
    }

    /// The endpoint `ch` points at now.
    pub(crate) fn of(ch: &Channel) -> Endpoint {
        let t = ch.target();
        Endpoint {
            host: t.host.clone(),
            port: t.port,
        }
    }

    /// Whether `ch` is at this endpoint (a literal IP also matches a
    /// resolved address of a named channel).
    pub(crate) fn matches(&self, ch: &Channel) -> bool {
        let t = ch.target();
        t.port == self.port
            && (t.host == self.host
                || matches!(self.host, Host::Ip(ip) if t.addrs.iter().any(|a| a.ip() == ip)))
    }
}

/// Which channel(s) an op is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ChannelKey {
    /// By name (unique in the listener).
    Name(String),
    /// Channel `index` of group `group`.
    At { group: usize, index: usize },
    /// The one channel at this address (an error if several are).
    Addr(Endpoint),
    /// Every channel at this address, in any group (fleet keys).
    Every(Endpoint),
}

impl std::fmt::Display for ChannelKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ChannelKey::Name(n) => f.write_str(n),
            ChannelKey::At { group, index } => write!(f, "{group}:{index}"),
            ChannelKey::Addr(e) | ChannelKey::Every(e) => write!(f, "{e}"),
        }
    }
}

/// Which group an op is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum GroupKey {
    Index(usize),
    Name(String),
}

impl std::fmt::Display for GroupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            GroupKey::Index(i) => write!(f, "{i}"),
            GroupKey::Name(n) => f.write_str(n),
        }
    }
}

/// A new weight: absolute, or a percentage of the configured ("initial")
/// weight (HAProxy's `set weight B/S N%`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WeightSet {
    Abs(u32),
    Percent(u32),
}

/// The operator hold (`spin`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SpinSet {
    /// Hold new clients at most this long (None: the listener's `--spin`,
    /// or 30 s).
    For(Option<Duration>),
    /// Hold them until this wall-clock time (a time past changes nothing).
    Until(SystemTime),
    Off,
}

/// One operator change. `C` names channels and `G` groups: keys by
/// default, a front end's own references before [`OperatorOp::map`]. `T`
/// is where `assign`/`create` point a channel: resolved ([`Target`]) to
/// apply, an [`Endpoint`] as a front end parses it (and as fleet mode
/// keeps it: every instance resolves it itself).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OperatorOp<C = ChannelKey, G = GroupKey, T = Target> {
    /// `enable` (admin enabled, and forced up: the operator vouches for
    /// it until the monitor says otherwise), `disable`, `drain`.
    Admin(C, Admin),
    Weight(C, WeightSet),
    Maxc(C, u32),
    /// Health checks on or off for one channel; off, it counts as up.
    Health(C, bool),
    /// Zero the channel's counters.
    Reset(C),
    /// End every live session relayed to the channel now (a reset, as
    /// when a channel goes down with `on-down`); new clients are not
    /// affected.
    Shutdown(C),
    /// Point a disabled channel at a new, resolved target (see
    /// [`resolve_target`]).
    Assign(C, T),
    /// A new, disabled channel at the end of a group (one past the last
    /// group starts a new round-robin group); weight None: 1.
    Create {
        group: G,
        target: T,
        weight: Option<u32>,
    },
    /// Take a channel out of its group (live sessions go on to their
    /// end). Only fleet mode removes (`fleet remove`: a channel it
    /// registered); the control socket has no `remove`, as balance.fm.
    Remove {
        group: G,
        chan: C,
    },
    /// Move writes to group `to` (None: the next group, or 0 from a
    /// backup) without losing any (MySQL GTID): see [`switchover`].
    /// `limit`: how long the target may take to catch up; `grace`: how
    /// long sessions with a request in flight may finish it; `force`:
    /// move even when nothing can be verified.
    Switchover {
        to: Option<G>,
        limit: Option<Duration>,
        grace: Option<Duration>,
        force: bool,
    },
    Policy(G, Policy),
    /// The group new connections start from (0: failback).
    Floor(usize),
    Spin(SpinSet),
    /// Active probes on (true) or paused.
    Monitor(bool),
}

impl<C, G, T> OperatorOp<C, G, T> {
    /// The same op with its references mapped (or why one does not map).
    pub(crate) fn map<C2, G2, E>(
        self,
        c: impl FnOnce(C) -> Result<C2, E>,
        g: impl FnOnce(G) -> Result<G2, E>,
    ) -> Result<OperatorOp<C2, G2, T>, E> {
        self.map_all(c, g, Ok)
    }

    /// The same op with its target mapped (`assign`, `create`).
    pub(crate) fn map_target<T2, E>(
        self,
        t: impl FnOnce(T) -> Result<T2, E>,
    ) -> Result<OperatorOp<C, G, T2>, E> {
        self.map_all(Ok, Ok, t)
    }

    fn map_all<C2, G2, T2, E>(
        self,
        c: impl FnOnce(C) -> Result<C2, E>,
        g: impl FnOnce(G) -> Result<G2, E>,
        t: impl FnOnce(T) -> Result<T2, E>,
    ) -> Result<OperatorOp<C2, G2, T2>, E> {
        Ok(match self {
            OperatorOp::Admin(x, a) => OperatorOp::Admin(c(x)?, a),
            OperatorOp::Weight(x, w) => OperatorOp::Weight(c(x)?, w),
            OperatorOp::Maxc(x, m) => OperatorOp::Maxc(c(x)?, m),
            OperatorOp::Health(x, on) => OperatorOp::Health(c(x)?, on),
            OperatorOp::Reset(x) => OperatorOp::Reset(c(x)?),
            OperatorOp::Shutdown(x) => OperatorOp::Shutdown(c(x)?),
            OperatorOp::Assign(x, target) => OperatorOp::Assign(c(x)?, t(target)?),
            OperatorOp::Create {
                group,
                target,
                weight,
            } => OperatorOp::Create {
                group: g(group)?,
                target: t(target)?,
                weight,
            },
            OperatorOp::Remove { group, chan } => OperatorOp::Remove {
                group: g(group)?,
                chan: c(chan)?,
            },
            OperatorOp::Switchover {
                to,
                limit,
                grace,
                force,
            } => OperatorOp::Switchover {
                to: to.map(g).transpose()?,
                limit,
                grace,
                force,
            },
            OperatorOp::Policy(x, p) => OperatorOp::Policy(g(x)?, p),
            OperatorOp::Floor(f) => OperatorOp::Floor(f),
            OperatorOp::Spin(s) => OperatorOp::Spin(s),
            OperatorOp::Monitor(on) => OperatorOp::Monitor(on),
        })
    }

    /// The channel reference, for ops about one channel.
    pub(crate) fn channel(&self) -> Option<&C> {
        match self {
            OperatorOp::Admin(c, _)
            | OperatorOp::Weight(c, _)
            | OperatorOp::Maxc(c, _)
            | OperatorOp::Health(c, _)
            | OperatorOp::Reset(c)
            | OperatorOp::Shutdown(c)
            | OperatorOp::Assign(c, _)
            | OperatorOp::Remove { chan: c, .. } => Some(c),
            _ => None,
        }
    }

    /// The target, for `assign` and `create`.
    pub(crate) fn target(&self) -> Option<&T> {
        match self {
            OperatorOp::Assign(_, t) | OperatorOp::Create { target: t, .. } => Some(t),
            _ => None,
        }
    }

    /// Whether the change is operator state kept in the state file.
    pub(crate) fn persists(&self) -> bool {
        match self {
            OperatorOp::Admin(..)
            | OperatorOp::Weight(..)
            | OperatorOp::Maxc(..)
            | OperatorOp::Health(..)
            | OperatorOp::Assign(..)
            | OperatorOp::Create { .. }
            | OperatorOp::Remove { .. }
            | OperatorOp::Policy(..)
            | OperatorOp::Spin(_)
            | OperatorOp::Monitor(_) => true,
            OperatorOp::Reset(_)
            | OperatorOp::Shutdown(_)
            | OperatorOp::Floor(_)
            | OperatorOp::Switchover { .. } => false,
        }
    }
}

/// The channel(s) an op changed: the first one's place and name, and how
/// many matched (more than one only for [`ChannelKey::Every`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Hit {
    pub(crate) group: usize,
    pub(crate) index: usize,
    pub(crate) name: String,
    pub(crate) count: usize,
}

/// What an op did. `changed` is false when the state was already so.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    Admin {
        hit: Hit,
        admin: Admin,
        changed: bool,
        /// Live connections (they continue on a drained channel).
        conns: u32,
    },
    Weight {
        hit: Hit,
        weight: u32,
        initial: u32,
        changed: bool,
    },
    Maxc {
        hit: Hit,
        maxc: u32,
        changed: bool,
    },
    Health {
        hit: Hit,
        on: bool,
        changed: bool,
    },
    Reset {
        hit: Hit,
    },
    Shutdown {
        hit: Hit,
        /// Live sessions when they were told to end.
        sessions: u32,
    },
    Assigned {
        hit: Hit,
    },
    Created {
        hit: Hit,
    },
    Removed {
        hit: Hit,
        /// Live sessions (they go on to their end).
        conns: u32,
    },
    /// A switchover checked and planned, not started: the front end
    /// awaits [`switchover::Switch::run`] (or runs it through etcd).
    Switching(switchover::Switch),
    Policy {
        group: usize,
        name: String,
        policy: Policy,
    },
    Floor {
        group: usize,
        /// The floor before.
        prev: usize,
    },
    Spin {
        /// Held at most this long from now (None: off, or a time past).
        hold: Option<Duration>,
        /// Clients released (spin off).
        released: u64,
        changed: bool,
    },
    Monitor {
        on: bool,
        changed: bool,
    },
}

impl Outcome {
    /// Whether anything changed.
    pub(crate) fn changed(&self) -> bool {
        match self {
            Outcome::Admin { changed, .. }
            | Outcome::Weight { changed, .. }
            | Outcome::Maxc { changed, .. }
            | Outcome::Health { changed, .. }
            | Outcome::Spin { changed, .. }
            | Outcome::Monitor { changed, .. } => *changed,
            Outcome::Floor { group, prev } => group != prev,
            Outcome::Reset { .. }
            | Outcome::Shutdown { .. }
            | Outcome::Assigned { .. }
            | Outcome::Created { .. }
            | Outcome::Removed { .. }
            | Outcome::Switching(_)
            | Outcome::Policy { .. } => true,
        }
    }
}

/// Why an op was not applied (nothing changed).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum OpError {
    NoChannel(ChannelKey),
    /// Several channels are at this address.
    Ambiguous(Endpoint),
    NoGroup {
        key: GroupKey,
        /// How many groups there are.
        groups: usize,
    },
    /// `assign` needs the channel disabled first.
    NotDisabled(Hit),
    /// A weight above [`MAX_WEIGHT`] (after a percentage).
    BadWeight(u64),
    /// `monitor enable|disable` on a listener without a monitor.
    NoMonitor,
    /// `switchover` to the group that is active already.
    Active(usize),
    /// `switchover` on a listener without a `mysql` check with `user=`.
    NoLogin,
}

impl std::fmt::Display for OpError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            OpError::NoChannel(k) => write!(f, "no such channel {k}"),
            OpError::Ambiguous(e) => {
                write!(f, "ambiguous channel {e}: use <group>:<channel>")
            }
            OpError::NoGroup { key, groups } => write!(
                f,
                "no such group {key} (groups 0-{})",
                groups.saturating_sub(1)
            ),
            OpError::NotDisabled(h) => {
                write!(
                    f,
                    "channel {} must be disabled to assign new address",
                    h.name
                )
            }
            OpError::BadWeight(w) => write!(f, "bad weight {w}: use 0-{MAX_WEIGHT}"),
            OpError::NoMonitor => f.write_str("no monitor configured for this listener (see -m)"),
            OpError::Active(g) => write!(f, "group {g} is already the active group"),
            OpError::NoLogin => f.write_str(
                "switchover needs a mysql check with user= (-m 'mysql:user=NAME'): \
                 it compares GTID positions over the monitor login",
            ),
        }
    }
}

/// The channels `key` names: the first one's place and name (with how
/// many there are), and every one of them (at least one).
pub(crate) fn find(
    groups: &[Arc<Group>],
    key: &ChannelKey,
) -> Result<(Hit, Vec<Arc<Channel>>), OpError> {
    find_in(groups, key, None)
}

/// [`find`], in group `only` if given.
fn find_in(
    groups: &[Arc<Group>],
    key: &ChannelKey,
    only: Option<usize>,
) -> Result<(Hit, Vec<Arc<Channel>>), OpError> {
    let mut first = None;
    let mut chans = Vec::new();
    for (g, gr) in groups.iter().enumerate() {
        if only.is_some_and(|o| o != g) {
            continue;
        }
        for (i, c) in gr.channels.iter().enumerate() {
            let hit = match key {
                ChannelKey::Name(n) => c.name() == n,
                ChannelKey::At { group, index } => g == *group && i == *index,
                ChannelKey::Addr(e) | ChannelKey::Every(e) => e.matches(c),
            };
            if hit {
                first.get_or_insert((g, i, c.name()));
                chans.push(Arc::clone(c));
            }
        }
    }
    let Some((group, index, name)) = first else {
        return Err(OpError::NoChannel(key.clone()));
    };
    if let ChannelKey::Addr(e) = key {
        if chans.len() > 1 {
            return Err(OpError::Ambiguous(e.clone()));
        }
    }
    let hit = Hit {
        group,
        index,
        name: name.to_string(),
        count: chans.len(),
    };
    Ok((hit, chans))
}

/// The group `key` names: its index.
pub(crate) fn find_group(groups: &[Arc<Group>], key: &GroupKey) -> Result<usize, OpError> {
    let found = match key {
        GroupKey::Index(i) => (*i < groups.len()).then_some(*i),
        GroupKey::Name(n) => groups.iter().position(|g| g.name() == n),
    };
    found.ok_or_else(|| OpError::NoGroup {
        key: key.clone(),
        groups: groups.len(),
    })
}

/// Apply `op` to the listener: the one place operator changes are made.
pub(crate) fn apply(svc: &Service, op: &OperatorOp) -> Result<Outcome, OpError> {
    let groups = svc.pool.groups();
    // Run `f` on every channel the key names; `f` says whether it changed.
    let each = |key: &ChannelKey, f: &dyn Fn(&Channel) -> bool| {
        let (hit, chans) = find(&groups, key)?;
        let mut changed = false;
        for ch in &chans {
            changed |= f(ch);
        }
        // `find` returns at least one.
        let first = chans
            .into_iter()
            .next()
            .ok_or(OpError::NoChannel(key.clone()))?;
        Ok::<_, OpError>((hit, first, changed))
    };
    Ok(match op {
        OperatorOp::Admin(k, a) => {
            let (hit, ch, changed) = each(k, &|ch| {
                let same = ch.admin() == *a && (*a != Admin::Enabled || ch.is_up());
                if !same {
                    ch.set_admin(*a);
                    if *a == Admin::Enabled {
                        ch.force_up();
                    }
                }
                !same
            })?;
            Outcome::Admin {
                hit,
                admin: *a,
                changed,
                conns: ch.conns(),
            }
        }
        OperatorOp::Weight(k, w) => {
            let (_, chans) = find(&groups, k)?;
            let weight = |ch: &Channel| match *w {
                WeightSet::Abs(n) => u64::from(n),
                WeightSet::Percent(p) => u64::from(ch.initial_weight()) * u64::from(p) / 100,
            };
            // Check every target first: a bad weight changes nothing.
            if let Some(bad) = chans
                .iter()
                .map(|ch| weight(ch))
                .find(|n| *n > u64::from(MAX_WEIGHT))
            {
                return Err(OpError::BadWeight(bad));
            }
            let (hit, ch, changed) = each(k, &|ch| {
                let n = weight(ch) as u32;
                let same = ch.weight() == n;
                ch.set_weight(n);
                !same
            })?;
            Outcome::Weight {
                hit,
                weight: ch.weight(),
                initial: ch.initial_weight(),
                changed,
            }
        }
        OperatorOp::Maxc(k, m) => {
            let (hit, _, changed) = each(k, &|ch| {
                let same = ch.maxc() == *m;
                ch.set_maxc(*m);
                !same
            })?;
            Outcome::Maxc {
                hit,
                maxc: *m,
                changed,
            }
        }
        OperatorOp::Health(k, on) => {
            let (hit, _, changed) = each(k, &|ch| {
                let same = ch.checked() == *on;
                ch.set_checked(*on);
                if !*on {
                    // Unchecked counts as up (HAProxy's "no check").
                    ch.force_up();
                }
                !same
            })?;
            Outcome::Health {
                hit,
                on: *on,
                changed,
            }
        }
        OperatorOp::Reset(k) => {
            let (hit, _, _) = each(k, &|ch| {
                ch.reset_counters();
                true
            })?;
            Outcome::Reset { hit }
        }
        OperatorOp::Shutdown(k) => {
            let (_, chans) = find(&groups, k)?;
            let sessions = chans.iter().map(|ch| ch.conns()).sum();
            let (hit, _, _) = each(k, &|ch| {
                ch.close_sessions(crate::pool::EndCause::Operator);
                true
            })?;
            Outcome::Shutdown { hit, sessions }
        }
        OperatorOp::Assign(k, t) => {
            let (hit, ch, _) = each(k, &|_| false)?;
            if ch.admin() != Admin::Disabled {
                return Err(OpError::NotDisabled(hit));
            }
            ch.set_target(t.clone());
            Outcome::Assigned { hit }
        }
        OperatorOp::Create {
            group,
            target,
            weight,
        } => create(svc, &groups, group, target, weight.unwrap_or(1))?,
        OperatorOp::Remove { group, chan } => {
            let g = find_group(&groups, group)?;
            let (hit, chans) = find_in(&groups, chan, Some(g))?;
            let ch = chans
                .into_iter()
                .next()
                .ok_or(OpError::NoChannel(chan.clone()))?;
            svc.pool.update_groups(|gs| {
                let gr = gs.get(g)?;
                gr.channels.iter().any(|c| Arc::ptr_eq(c, &ch)).then(|| {
                    let mut v = gs.to_vec();
                    v[g] = Arc::new(gr.without_channel(&ch));
                    v
                })
            });
            Outcome::Removed {
                hit,
                conns: ch.conns(),
            }
        }
        OperatorOp::Switchover {
            to,
            limit,
            grace,
            force,
        } => {
            let to = to.as_ref().map(|k| find_group(&groups, k)).transpose()?;
            Outcome::Switching(switchover::Switch::plan(
                svc, &groups, to, *limit, *grace, *force,
            )?)
        }
        OperatorOp::Policy(k, p) => {
            let g = find_group(&groups, k)?;
            let group = groups.get(g).ok_or(OpError::NoGroup {
                key: k.clone(),
                groups: groups.len(),
            })?;
            group.set_policy(*p);
            Outcome::Policy {
                group: g,
                name: group.name().to_string(),
                policy: *p,
            }
        }
        OperatorOp::Floor(g) => {
            if *g >= groups.len() {
                return Err(OpError::NoGroup {
                    key: GroupKey::Index(*g),
                    groups: groups.len(),
                });
            }
            let prev = if *g == 0 {
                svc.pool.failback()
            } else {
                let prev = svc.pool.floor();
                svc.pool.set_floor(*g);
                prev
            };
            Outcome::Floor { group: *g, prev }
        }
        OperatorOp::Spin(s) => spin(svc, *s),
        OperatorOp::Monitor(on) => {
            if svc.cfg.monitor.is_none() {
                return Err(OpError::NoMonitor);
            }
            let was_off = svc.ops.pause_monitor(!on);
            Outcome::Monitor {
                on: *on,
                changed: was_off == *on,
            }
        }
    })
}

fn create(
    svc: &Service,
    groups: &[Arc<Group>],
    group: &GroupKey,
    target: &Target,
    weight: u32,
) -> Result<Outcome, OpError> {
    // One past the last group starts a new one.
    let g = match group {
        GroupKey::Index(i) if *i == groups.len() => *i,
        k => find_group(groups, k)?,
    };
    let name = svc.pool.free_channel_name(&target.host, target.port);
    let proxy = svc.cfg.proxy_protocol_for(g, &target.host, target.port);
    let ch = svc
        .pool
        .new_channel(&name, target.clone(), 0, weight, proxy);
    // Disabled (`DIS`), as balance.fm creates it: scripts run `create` and
    // then `enable N` once the backend is ready.
    ch.set_admin(Admin::Disabled);
    let index = std::cell::Cell::new(0);
    svc.pool.update_groups(|gs| {
        let mut gs = gs.to_vec();
        match gs.get_mut(g) {
            Some(slot) => {
                index.set(slot.channels.len());
                *slot = Arc::new(slot.with_channel(Arc::clone(&ch)));
            }
            None => {
                index.set(0);
                let gname = names::default_group(gs.len());
                gs.push(Arc::new(Group::new(
                    gname,
                    Policy::RoundRobin,
                    vec![Arc::clone(&ch)],
                )));
            }
        }
        Some(gs)
    });
    Ok(Outcome::Created {
        hit: Hit {
            group: g,
            index: index.get(),
            name,
            count: 1,
        },
    })
}

fn spin(svc: &Service, s: SpinSet) -> Outcome {
    let hold = &svc.ops.hold;
    match s {
        SpinSet::For(max) => {
            let max = max.or(svc.cfg.spin).unwrap_or(DEFAULT_HOLD_MAX);
            hold.on(max);
            Outcome::Spin {
                hold: Some(max),
                released: 0,
                changed: true,
            }
        }
        SpinSet::Until(t) => match t.duration_since(SystemTime::now()) {
            Ok(left) if !left.is_zero() => {
                hold.on_until(t);
                Outcome::Spin {
                    hold: Some(left),
                    released: 0,
                    changed: true,
                }
            }
            _ => Outcome::Spin {
                hold: None,
                released: 0,
                changed: false,
            },
        },
        SpinSet::Off => {
            let (was, released) = hold.off();
            Outcome::Spin {
                hold: None,
                released,
                changed: was || released > 0,
            }
        }
    }
}

/// Where `create`/`assign` may point a channel: `host:port` resolved, and
/// not a listener of this process (`binds`: name and address of each,
/// this listener first), or the error line why not.
pub(crate) async fn resolve_target(
    host: &Host,
    port: u16,
    binds: &[(String, std::net::SocketAddr)],
) -> Result<Target, String> {
    let h = host.clone();
    let addrs = tokio::task::spawn_blocking(move || crate::service::resolve(&h, port))
        .await
        .unwrap_or_default();
    if addrs.is_empty() {
        return Err(format!("invalid address {host}: does not resolve"));
    }
    let named = binds.iter().map(|(n, b)| (n.as_str(), *b));
    for a in &addrs {
        let Some((name, bind)) = crate::config::loop_target(named.clone(), *a) else {
            continue;
        };
        let own = binds.first().is_some_and(|(n, _)| n == name);
        return Err(if own {
            format!("invalid address {host}:{port}: {a} is this listener ({bind}) itself")
        } else {
            format!(
                "invalid address {host}:{port}: {a} is listener \"{name}\" ({bind}) of this process"
            )
        });
    }
    Ok(Target {
        host: host.clone(),
        port,
        addrs,
    })
}

pub(crate) mod switchover;
#[cfg(test)]
mod tests;
