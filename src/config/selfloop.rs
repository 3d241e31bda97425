//! Self-loop detection: a channel that would connect back to its own
//! listener. Literal addresses are checked by the listener builder; names
//! are checked after resolution ([`resolved_loops`]) at load and reload,
//! and by `dns` when it re-resolves.

use std::net::SocketAddr;

use super::error::ResolvedLoop;
use super::{ChannelConfig, Config, Host};

/// A channel that would connect back to its own listener: the same IP
/// literal and port, or, for a wildcard bind, a loopback or wildcard
/// channel (127.x, ::1, 0.0.0.0, `localhost`) on the same port.
pub fn is_self_loop(bind: SocketAddr, c: &ChannelConfig) -> bool {
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
pub fn is_self_loop_addr(bind: SocketAddr, addr: SocketAddr) -> bool {
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

/// Channels whose name resolves to their own listener (rejected at load
/// and on reload; at runtime re-resolution drops such addresses).
pub fn resolved_loops(
    cfg: &Config,
    resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>,
) -> Result<(), ResolvedLoop> {
    for l in &cfg.listeners {
        for g in &l.groups {
            for c in &g.channels {
                if !matches!(c.host, Host::Name(_)) {
                    continue;
                }
                if let Some(a) = resolve(&c.host, c.port)
                    .into_iter()
                    .find(|a| is_self_loop_addr(l.bind, *a))
                {
                    return Err(ResolvedLoop {
                        listener: l.name.clone(),
                        channel: c.to_string(),
                        addr: a,
                    });
                }
            }
        }
    }
    Ok(())
}

/// `--check`: names that do not resolve now (warnings, not errors).
pub fn unresolved(cfg: &Config, resolve: impl Fn(&Host, u16) -> Vec<SocketAddr>) -> Vec<String> {
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
