//! The token grammars every input shares: durations, channels
//! (`host[:port[:maxc]]`), host names, listen addresses (`addr:port`),
//! `-b`/`-B` addresses and keepalive triples. Pure functions; used by the
//! command line, the config file and the control commands.

use crate::config::quote;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, ToSocketAddrs};
use std::time::Duration;

use super::error::BadValue;
use super::services::parse_port;
use super::{ChannelConfig, Host, Keepalive};

/// Parse a duration the way balance users write it: whole seconds (`5`),
/// fractions (`0.5`) or humantime (`500ms`, `2s`, `1m`).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
    let t = s.trim();
    if t.is_empty() {
        return Err("empty duration".into());
    }
    if t.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        let secs: f64 = t
            .parse()
            .map_err(|_| format!("{} is not a duration", quote(s)))?;
        if !secs.is_finite() || !(0.0..=1e9).contains(&secs) {
            return Err(format!("{} is out of range", quote(s)));
        }
        return Ok(Duration::from_secs_f64(secs));
    }
    let d =
        humantime::parse_duration(t).map_err(|e| format!("{} is not a duration: {e}", quote(s)))?;
    if d > Duration::from_secs(1_000_000_000) {
        return Err(format!("{} is out of range", quote(s)));
    }
    Ok(d)
}

/// `host[:port[:maxc]]`, `host::maxc`, `[v6]:port:maxc`. A missing port is
/// `default_port` (0 = "the listener's port", filled in by the builder).
pub(crate) fn parse_channel(tok: &str, default_port: u16) -> Result<ChannelConfig, BadValue> {
    let bad = |why: &str| BadValue(format!("bad channel {}: {why}", quote(tok)));
    if tok.is_empty() {
        return Err(bad("empty"));
    }
    let (host, rest): (Host, &str) = if let Some(after) = tok.strip_prefix('[') {
        let Some(end) = after.find(']') else {
            return Err(bad("missing \"]\""));
        };
        let lit = &after[..end];
        let ip: Ipv6Addr = lit
            .parse()
            .map_err(|_| bad("not an IPv6 address in brackets"))?;
        let rest = &after[end + 1..];
        if !rest.is_empty() && !rest.starts_with(':') {
            return Err(bad("expected \":\" after \"]\""));
        }
        (
            Host::Ip(IpAddr::V6(ip)),
            rest.strip_prefix(':').unwrap_or(""),
        )
    } else {
        let (h, rest) = match tok.split_once(':') {
            Some((h, r)) => (h, r),
            None => (tok, ""),
        };
        if h.is_empty() {
            return Err(bad("empty host"));
        }
        if rest.matches(':').count() > 1 {
            return Err(bad(
                "too many \":\" (IPv6 addresses go in brackets: [::1]:port)",
            ));
        }
        (parse_host(h).map_err(|e| bad(&e))?, rest)
    };
    let (port_s, maxc_s) = match rest.split_once(':') {
        Some((p, m)) => (p, Some(m)),
        None => (rest, None),
    };
    let port = if port_s.is_empty() {
        default_port
    } else {
        parse_port(port_s).map_err(|e| bad(&e))?
    };
    let maxc = match maxc_s {
        None => 0,
        Some("") => return Err(bad("empty maxc")),
        Some(m) => m.parse::<u32>().map_err(|_| bad("maxc is not a number"))?,
    };
    Ok(ChannelConfig {
        name: String::new(),
        host,
        port,
        maxc,
        weight: 1,
        proxy_protocol: None,
    })
}

/// A host name or IP literal (IPv4, or a bare IPv6 only from `-b`/`-B`).
fn parse_host(h: &str) -> Result<Host, String> {
    if let Ok(ip) = h.parse::<IpAddr>() {
        return Ok(Host::Ip(ip));
    }
    if is_host_name(h) {
        Ok(Host::Name(h.to_string()))
    } else {
        Err(format!("{} is not a valid host name", quote(h)))
    }
}

/// Dot-separated labels of `[A-Za-z0-9_-]`, 1-63 bytes each, 253 in all,
/// and not all numbers: `65535`, `127.1` or `0x7f.1` are no names, and the
/// resolver (inet_aton) would take them for addresses (0.0.255.255,
/// 127.0.0.1); only strict dotted-quad IPv4 is an address.
fn is_host_name(h: &str) -> bool {
    let numeric = |label: &str| {
        let hex = label
            .strip_prefix("0x")
            .or_else(|| label.strip_prefix("0X"));
        match hex {
            Some(x) => x.bytes().all(|b| b.is_ascii_hexdigit()),
            None => label.bytes().all(|b| b.is_ascii_digit()),
        }
    };
    !h.split('.').all(numeric)
        && h.len() <= 253
        && h.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
        })
}

/// A host as the control commands `create`/`assign` take it: a name, or an
/// IP literal (IPv6 bare or in brackets). `None` if it is neither.
pub(crate) fn host_literal(s: &str) -> Option<Host> {
    let lit = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = lit.parse::<IpAddr>() {
        return Some(Host::Ip(ip));
    }
    (!lit.is_empty() && lit.len() == s.len() && is_host_name(lit))
        .then(|| Host::Name(lit.to_string()))
}

/// `addr:port` with an IP literal (IPv6 in brackets); `*:port` or `:port`
/// for all IPv4 addresses. Used by the file's `bind:` and `--metrics`.
pub(crate) fn parse_bind(s: &str) -> Result<SocketAddr, BadValue> {
    let bad = |why: &str| BadValue(format!("bad address {}: {why}", quote(s)));
    let Some((host, port)) = s.rsplit_once(':') else {
        return Err(bad("expected addr:port"));
    };
    let port = parse_port(port).map_err(|e| bad(&e))?;
    let ip: IpAddr = match host {
        "" | "*" => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        h => match h.strip_prefix('[').and_then(|x| x.strip_suffix(']')) {
            Some(v6) => v6
                .parse::<Ipv6Addr>()
                .map(IpAddr::V6)
                .map_err(|_| bad("not an IPv6 address in brackets"))?,
            None if h.contains(':') => return Err(bad("IPv6 addresses go in brackets")),
            None => h
                .parse::<Ipv4Addr>()
                .map(IpAddr::V4)
                .map_err(|_| bad("not an IP address"))?,
        },
    };
    Ok(SocketAddr::new(ip, port))
}

/// `-b`/`-B` address: an IP literal (IPv6 bare or bracketed; IPv4-mapped
/// IPv6 means IPv4) or a name resolved now.
pub(crate) fn resolve_bind_host(s: &str) -> Result<IpAddr, BadValue> {
    let lit = s
        .strip_prefix('[')
        .and_then(|x| x.strip_suffix(']'))
        .unwrap_or(s);
    if let Ok(ip) = lit.parse::<IpAddr>() {
        return Ok(ip.to_canonical());
    }
    if parse_host(lit).is_err() {
        return Err(BadValue(format!("bad address {}", quote(s))));
    }
    (lit, 0)
        .to_socket_addrs()
        .ok()
        .and_then(|mut it| it.next())
        .map(|sa| sa.ip())
        .ok_or_else(|| BadValue(format!("bad address {}: does not resolve", quote(s))))
}

/// `idle,interval,probes` (`-k`/`-K`). Returns the reason on error; the
/// 1-32767s range of the times is checked by the listener builder.
pub(crate) fn parse_keepalive(s: &str) -> Result<Keepalive, String> {
    let parts: Vec<&str> = s.split(',').collect();
    let [t, i, p] = parts.as_slice() else {
        return Err("expected idle,interval,probes".into());
    };
    let probes = p
        .parse::<u32>()
        .ok()
        .filter(|n| (1..=127).contains(n))
        .ok_or("probes must be 1-127")?;
    Ok(Keepalive {
        idle: parse_duration(t)?,
        interval: parse_duration(i)?,
        probes,
    })
}

#[cfg(test)]
mod tests;

/// `host:port` of an `http://` URL: a host without URL syntax (an IPv6
/// literal in brackets) and a port 1-65535. The error is the reason.
pub(crate) fn check_http_authority(authority: &str) -> Result<(), &'static str> {
    let (host, port) = authority.rsplit_once(':').ok_or("no port")?;
    let host_ok = !host.is_empty()
        && !host.contains(['/', '@', '?', '#', ' '])
        && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
    if !host_ok {
        return Err("bad host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("bad port"),
    }
}
