//! Self-loop detection: a channel that would connect back to its own
//! listener, or to another listener of the same process (`a` → `b` → `a`
//! multiplies one client into connections until the fd limit). Literal
//! addresses are checked by the listener builder (its own bind) and by
//! [`cross_loops`] (every other bind of the file); names are checked after
//! resolution ([`resolved_loops`]) at load and reload, and by `dns` when
//! it re-resolves; `create`/`assign` check against every running
//! listener ([`loop_target`]).

use std::net::SocketAddr;

use super::error::{CrossLoop, ResolvedLoop};
use super::{ChannelConfig, Config, Host, ListenerConfig};

/// A channel that would connect back to its own listener: the same IP
/// literal and port, or, for a wildcard bind, a loopback or wildcard
/// channel (127.x, ::1, 0.0.0.0, `localhost`) on the same port.
pub(crate) fn is_self_loop(bind: SocketAddr, c: &ChannelConfig) -> bool {
    match &c.host {
        Host::Ip(ip) => is_self_loop_addr(bind, SocketAddr::new(*ip, c.port)),
        Host::Name(n) => {
            c.port == bind.port()
                && (bind.ip().is_unspecified() || bind.ip().is_loopback())
                && n.eq_ignore_ascii_case("localhost")
        }
    }
}

/// Whether connecting to `addr` reaches the listener bound to `bind`.
pub(crate) fn is_self_loop_addr(bind: SocketAddr, addr: SocketAddr) -> bool {
    if addr.port() != bind.port() {
        return false;
    }
    let (b, a) = (bind.ip().to_canonical(), addr.ip().to_canonical());
    if a == b {
        return true;
    }
    if b.is_unspecified() {
        return a.is_loopback() || a.is_unspecified();
    }
    // Connecting to 0.0.0.0 / :: reaches the loopback address.
    b.is_loopback() && a.is_unspecified()
}

/// The first of `binds` (a listener's name and bind address) that
/// connecting to `addr` reaches.
pub(crate) fn loop_target<'a>(
    binds: impl IntoIterator<Item = (&'a str, SocketAddr)>,
    addr: SocketAddr,
) -> Option<(&'a str, SocketAddr)> {
    binds.into_iter().find(|(_, b)| is_self_loop_addr(*b, addr))
}

/// A literal channel of one listener that points at another listener of
/// the file (its own bind is the builder's check).
pub(crate) fn cross_loops(listeners: &[ListenerConfig]) -> Result<(), CrossLoop> {
    for l in listeners {
        for c in l.groups.iter().flat_map(|g| &g.channels) {
            if let Some(m) = listeners
                .iter()
                .find(|m| m.name != l.name && is_self_loop(m.bind, c))
            {
                return Err(CrossLoop {
                    listener: l.name.clone(),
                    channel: c.to_string(),
                    other: m.name.clone(),
                    bind: m.bind,
                });
            }
        }
    }
    Ok(())
}

/// Channels whose name resolves to a listener of this process, their own
/// or another (rejected at load and on reload; at runtime re-resolution
/// drops such addresses).
pub(crate) fn resolved_loops(
    cfg: &Config,
    resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
) -> Result<(), ResolvedLoop> {
    let binds: Vec<(&str, SocketAddr)> = cfg
        .listeners
        .iter()
        .map(|l| (l.name.as_str(), l.bind))
        .collect();
    for l in &cfg.listeners {
        for g in &l.groups {
            for c in &g.channels {
                if !matches!(c.host, Host::Name(_)) {
                    continue;
                }
                for a in resolve(&c.host, c.port) {
                    if let Some((hit, _)) = loop_target(binds.iter().copied(), a) {
                        return Err(ResolvedLoop {
                            listener: l.name.clone(),
                            channel: c.to_string(),
                            addr: a,
                            what: if hit == l.name {
                                "the listener itself".into()
                            } else {
                                format!("listener \"{hit}\" of this process")
                            },
                        });
                    }
                }
            }
        }
    }
    Ok(())
}

/// `--check`: names that do not resolve now (warnings, not errors).
pub(crate) fn unresolved(
    cfg: &Config,
    resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
) -> Vec<String> {
    let mut out = Vec::new();
    for l in &cfg.listeners {
        for g in &l.groups {
            for c in &g.channels {
                if matches!(c.host, Host::Name(_)) && resolve(&c.host, c.port).is_empty() {
                    out.push(format!(
                        "listener \"{}\": {c} does not resolve (the channel starts disabled)",
                        l.name
                    ));
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests;
