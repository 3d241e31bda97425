//! Handlers that change one channel: its operator state, counters, limits
//! and target, and `create`, which adds a channel to a group.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;

use crate::config::{Host, ListenerConfig, Policy, loop_target};
use crate::control::commands::ChanRef;
use crate::control::reply::Reply;
use crate::pool::{Admin, Channel, Group, Pool, Target};
use crate::service::resolve;

/// Run `f` on the channel `r` names (labelled for the reply), or say why
/// there is no such channel.
pub fn with(
    groups: &[Arc<Group>],
    cur: usize,
    r: &ChanRef,
    f: impl FnOnce(&str, &Arc<Channel>) -> Reply,
) -> Reply {
    match find(groups, cur, r) {
        Ok((g, c, ch)) => f(&label(cur, g, c), &ch),
        Err(e) => Reply::err(e),
    }
}

pub fn enable(name: &str, ch: &Arc<Channel>) -> Reply {
    if ch.admin() == Admin::Enabled && ch.is_up() {
        return Reply::line(format!("{name} already enabled"));
    }
    ch.set_admin(Admin::Enabled);
    ch.force_up();
    Reply::line(format!("{name} enabled"))
}

pub fn disable(name: &str, ch: &Arc<Channel>) -> Reply {
    if ch.admin() == Admin::Disabled {
        return Reply::line(format!("{name} already disabled"));
    }
    ch.set_admin(Admin::Disabled);
    Reply::line(format!("{name} disabled"))
}

pub fn drain(name: &str, ch: &Arc<Channel>) -> Reply {
    if ch.admin() == Admin::Drain {
        return Reply::line(format!("{name} already draining"));
    }
    ch.set_admin(Admin::Drain);
    Reply::line(format!(
        "{name} draining ({} live connections continue)",
        ch.conns()
    ))
}

pub fn reset(name: &str, ch: &Arc<Channel>) -> Reply {
    ch.sent.store(0, Relaxed);
    ch.rcvd.store(0, Relaxed);
    ch.total.store(0, Relaxed);
    Reply::line(format!("{name} counters reset"))
}

pub fn maxc(name: &str, ch: &Arc<Channel>, n: u32) -> Reply {
    ch.set_maxc(n);
    Reply::line(format!("maxc of {name} changed to {n}"))
}

pub fn weight(name: &str, ch: &Arc<Channel>, w: u32) -> Reply {
    ch.set_weight(w);
    Reply::line(format!("weight of {name} changed to {w}"))
}

/// Where `create`/`assign` point a channel, and the bind addresses of the
/// process's listeners (this one first) it must not be.
pub struct NewTarget<'a> {
    pub host: &'a Host,
    pub port: u16,
    pub binds: Vec<(String, SocketAddr)>,
}

impl<'a> NewTarget<'a> {
    pub fn new(host: &'a Host, port: u16, binds: Vec<(String, SocketAddr)>) -> Self {
        NewTarget { host, port, binds }
    }

    /// The resolved target, or why it cannot be one: it does not resolve,
    /// or it is a listener of this process (one client would make balance
    /// connect to itself until the fd limit).
    async fn resolve(&self) -> Result<Target, String> {
        let NewTarget { host, port, .. } = *self;
        let addrs = resolve_async(host, port).await;
        if addrs.is_empty() {
            return Err(format!("invalid address {host}: does not resolve"));
        }
        let binds = self.binds.iter().map(|(n, b)| (n.as_str(), *b));
        for a in &addrs {
            let Some((name, bind)) = loop_target(binds.clone(), *a) else {
                continue;
            };
            let own = self.binds.first().is_some_and(|(n, _)| n == name);
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
}

/// `assign`: point a disabled channel at a new host and port.
pub async fn assign(groups: &[Arc<Group>], cur: usize, r: &ChanRef, to: NewTarget<'_>) -> Reply {
    let (g, c, ch) = match find(groups, cur, r) {
        Ok(x) => x,
        Err(e) => return Reply::err(e),
    };
    let name = label(cur, g, c);
    if ch.admin() != Admin::Disabled {
        return Reply::err(format!("{name} must be disabled to assign new address"));
    }
    match to.resolve().await {
        Ok(target) => ch.set_target(target),
        Err(e) => return Reply::err(e),
    }
    Reply::line("channel reassigned")
}

/// `create`: a new, disabled channel at the end of group `g` (one past the
/// last group starts a new round-robin group).
pub async fn create(cfg: &ListenerConfig, pool: &Pool, g: usize, to: NewTarget<'_>) -> Reply {
    if g > pool.groups().len() {
        return Reply::err(format!("no such group {g}"));
    }
    let target = match to.resolve().await {
        Ok(t) => t,
        Err(e) => return Reply::err(e),
    };
    let proxy = cfg.proxy_protocol_for(g, &target.host, target.port);
    let ch = pool.new_channel(target, 0, 1, proxy);
    // Disabled (`DIS`), as balance.fm creates it: scripts run `create` and
    // then `enable N` once the backend is ready.
    ch.set_admin(crate::pool::Admin::Disabled);
    // Re-read: only this task changes the structure (under `write`), but
    // the list may have been loaded before.
    let mut gs: Vec<Arc<Group>> = pool.groups().iter().cloned().collect();
    match gs.get_mut(g) {
        Some(slot) => *slot = Arc::new(slot.with_channel(ch)),
        None => gs.push(Arc::new(Group::new(Policy::RoundRobin, vec![ch]))),
    }
    pool.store_groups(gs);
    Reply::line("channel created")
}

async fn resolve_async(host: &Host, port: u16) -> Vec<std::net::SocketAddr> {
    let h = host.clone();
    tokio::task::spawn_blocking(move || resolve(&h, port))
        .await
        .unwrap_or_default()
}

/// `channel 2` in the current group, `channel 1:2` elsewhere.
fn label(cur: usize, g: usize, c: usize) -> String {
    if g == cur {
        format!("channel {c}")
    } else {
        format!("channel {g}:{c}")
    }
}

/// Resolve a channel reference to its group and channel indexes and the
/// channel.
pub fn find(
    groups: &[Arc<Group>],
    cur: usize,
    r: &ChanRef,
) -> Result<(usize, usize, Arc<Channel>), String> {
    let get = |g: usize, c: usize| {
        groups
            .get(g)
            .and_then(|gr| gr.channels.get(c))
            .map(|ch| (g, c, Arc::clone(ch)))
    };
    match r {
        ChanRef::Index(c) => get(cur, *c).ok_or_else(|| format!("no such channel {c}")),
        ChanRef::At(g, c) => get(*g, *c).ok_or_else(|| format!("no such channel {g}:{c}")),
        ChanRef::Addr(host, port) => find_addr(groups, host, *port),
    }
}

/// The one channel at `host:port` (a literal IP also matches a resolved
/// address of a named channel).
fn find_addr(
    groups: &[Arc<Group>],
    host: &Host,
    port: u16,
) -> Result<(usize, usize, Arc<Channel>), String> {
    let mut hits = Vec::new();
    for (gi, g) in groups.iter().enumerate() {
        for (ci, ch) in g.channels.iter().enumerate() {
            let t = ch.target();
            let same = t.port == port
                && (t.host == *host
                    || matches!(host, Host::Ip(ip) if t.addrs.iter().any(|a| a.ip() == *ip)));
            if same {
                hits.push((gi, ci, Arc::clone(ch)));
            }
        }
    }
    match hits.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(format!("no such channel {host}:{port}")),
        _ => Err(format!(
            "ambiguous channel {host}:{port}: use <group>:<channel>"
        )),
    }
}
