//! Routing by key (`route:` on a listener): the resolved model and the
//! grammar of keys and targets, shared by the config file, the route file
//! (read again at runtime) and the directory's answers.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::quote;

/// Default bound on the wait for a ClientHello.
pub(crate) const DEFAULT_PEEK_TIMEOUT: Duration = Duration::from_secs(2);
/// Default bound on the bytes of a ClientHello looked at.
pub(crate) const DEFAULT_PEEK_BYTES: usize = 16 * 1024;
pub(crate) const DEFAULT_LOOKUP_TIMEOUT: Duration = Duration::from_secs(1);
pub(crate) const DEFAULT_TTL: Duration = Duration::from_secs(60);
pub(crate) const DEFAULT_NEGATIVE_TTL: Duration = Duration::from_secs(10);
/// The longest key a lookup is made for (a DNS name's length).
pub(crate) const MAX_KEY: usize = 255;

/// What a listener routes by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteBy {
    /// The TLS server name in the ClientHello.
    Sni,
    /// The local address the client connected to.
    Dst,
    /// The client's address.
    Src,
}

impl RouteBy {
    pub(crate) fn word(self) -> &'static str {
        match self {
            RouteBy::Sni => "sni",
            RouteBy::Dst => "dst",
            RouteBy::Src => "src",
        }
    }
}

/// Where a key sends its client: a group (and every group after it, the
/// failover chain) or nowhere.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RouteTarget {
    Group(usize),
    Reject,
}

/// A key of the map or the route file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum RouteKey {
    /// A server name, lowercased, no trailing dot.
    Name(String),
    /// `*.example.com`: any name under `example.com` (stored without `*.`).
    Wildcard(String),
    /// An address or a CIDR block (`10.0.0.0/8`), the host bits cleared.
    Net(IpAddr, u8),
}

/// `route:` resolved.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct RouteConfig {
    pub(crate) by: RouteBy,
    /// The inline map, first source.
    pub(crate) map: Vec<(RouteKey, RouteTarget)>,
    /// The route file, second source (reloaded when it changes).
    pub(crate) file: Option<PathBuf>,
    /// The directory, last source.
    pub(crate) lookup: Option<LookupConfig>,
    /// For a key nothing maps, no key (no SNI), or a failed lookup with
    /// nothing stale to serve.
    pub(crate) default: RouteTarget,
    /// `by: sni`: how long, and how many bytes, a ClientHello is waited for.
    pub(crate) peek_timeout: Duration,
    pub(crate) peek_bytes: usize,
    /// Every group's name, by index, for targets read at runtime.
    pub(crate) groups: Vec<String>,
}

/// `lookup:` resolved.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LookupConfig {
    pub(crate) directory: Directory,
    pub(crate) timeout: Duration,
    pub(crate) ttl: Duration,
    pub(crate) negative_ttl: Duration,
    /// How long past `ttl` an answer may still serve while the directory
    /// fails or is slow.
    pub(crate) stale: Duration,
}

/// Where keys are looked up.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Directory {
    /// `GET http://authority/path` with `{key}` replaced in `path`.
    Http { authority: String, path: String },
    /// A program run directly (no shell) with `{key}` replaced in its
    /// arguments.
    Argv(Vec<String>),
}

/// The placeholder of the key in `url` and `argv`.
pub(crate) const KEY_PLACEHOLDER: &str = "{key}";

impl Directory {
    /// `url:` checked: `http://host:port/path` with `{key}` in the path.
    pub(crate) fn http(url: &str) -> Result<Directory, String> {
        let bad = |why: &str| format!("bad url {}: {why}", quote(url));
        let rest = url
            .strip_prefix("http://")
            .ok_or_else(|| bad("only http:// is supported"))?;
        let (authority, path) = match rest.find('/') {
            Some(i) => rest.split_at(i),
            None => return Err(bad("no path")),
        };
        let (host, port) = authority.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let host_ok = !host.is_empty()
            && !host.contains(['/', '@', '?', '#', ' '])
            && (!host.contains(':') || (host.starts_with('[') && host.ends_with(']')));
        if !host_ok {
            return Err(bad("bad host"));
        }
        if !matches!(port.parse::<u16>(), Ok(p) if p > 0) {
            return Err(bad("bad port"));
        }
        if !path.contains(KEY_PLACEHOLDER) {
            return Err(bad("the path has no {key}"));
        }
        if path.chars().any(|c| c.is_ascii_control() || c == ' ') {
            return Err(bad("a space or control character in the path"));
        }
        Ok(Directory::Http {
            authority: authority.to_string(),
            path: path.to_string(),
        })
    }

    /// `argv:` checked: some argument holds `{key}`.
    pub(crate) fn argv(argv: Vec<String>) -> Result<Directory, String> {
        if !argv.iter().skip(1).any(|a| a.contains(KEY_PLACEHOLDER)) {
            return Err("lookup.argv: no argument holds {key}".into());
        }
        Ok(Directory::Argv(argv))
    }
}

/// A key of `by`'s kind, from the map or a route file line.
pub(crate) fn parse_key(by: RouteBy, s: &str) -> Result<RouteKey, String> {
    match by {
        RouteBy::Sni => {
            let (wild, name) = match s.strip_prefix("*.") {
                Some(rest) => (true, rest),
                None => (false, s),
            };
            let name = name.strip_suffix('.').unwrap_or(name);
            let ok = !name.is_empty()
                && name.len() <= MAX_KEY
                && name
                    .bytes()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, b'-' | b'_' | b'.'));
            if !ok {
                return Err(format!(
                    "bad key {}: a server name (letters, digits, - _ .) or *.name",
                    quote(s)
                ));
            }
            let name = name.to_ascii_lowercase();
            Ok(if wild {
                RouteKey::Wildcard(name)
            } else {
                RouteKey::Name(name)
            })
        }
        RouteBy::Dst | RouteBy::Src => {
            let bad = || format!("bad key {}: an address or CIDR block", quote(s));
            let (ip, bits) = match s.split_once('/') {
                Some((ip, bits)) => (ip, Some(bits)),
                None => (s, None),
            };
            let ip: IpAddr = ip.parse().map_err(|_| bad())?;
            let ip = ip.to_canonical();
            let max = if ip.is_ipv4() { 32 } else { 128 };
            let bits = match bits {
                None => max,
                Some(b) => b.parse::<u8>().ok().filter(|b| *b <= max).ok_or_else(bad)?,
            };
            Ok(RouteKey::Net(mask(ip, bits), bits))
        }
    }
}

/// `ip` with all but its first `bits` bits cleared.
pub(crate) fn mask(ip: IpAddr, bits: u8) -> IpAddr {
    match ip {
        IpAddr::V4(a) => {
            let m = u32::MAX
                .checked_shl(32 - u32::from(bits.min(32)))
                .unwrap_or(0);
            IpAddr::V4((u32::from(a) & m).into())
        }
        IpAddr::V6(a) => {
            let m = u128::MAX
                .checked_shl(128 - u32::from(bits.min(128)))
                .unwrap_or(0);
            IpAddr::V6((u128::from(a) & m).into())
        }
    }
}

/// A target by its name: `reject`, a group's name, or a group's index
/// (names are never all digits, so the two cannot be confused).
pub(crate) fn parse_target(s: &str, groups: &[String]) -> Result<RouteTarget, String> {
    if s == "reject" {
        return Ok(RouteTarget::Reject);
    }
    if let Some(i) = groups.iter().position(|g| g == s) {
        return Ok(RouteTarget::Group(i));
    }
    match s.parse::<usize>() {
        Ok(i) if i < groups.len() => Ok(RouteTarget::Group(i)),
        _ => Err(format!(
            "unknown target {}: a group of the listener or reject",
            quote(s)
        )),
    }
}

#[cfg(test)]
mod tests;
