//! Routing by key: which group a client starts from (the group and every
//! group after it are its failover chain), or whether it is turned away.
//! The key is the TLS server name (peeked by [`sni`]), the address the
//! client connected to, or the client's address; the sources are asked in
//! order: the inline map, the route [`file`], the directory [`lookup`];
//! `default` answers what none maps.
//!
//! The data path owns nothing here but the counters it bumps; the file's
//! table is swapped whole; the lookup cache is behind its own short lock.

pub(crate) mod file;
pub(crate) mod lookup;
pub(crate) mod sni;
pub(crate) mod table;

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Duration;

use crate::config::route::{RouteBy, RouteConfig, RouteTarget};
use file::RouteFile;
use lookup::{Answer, Lookup, Resolved};
use table::{Key, Table};

/// Per-listener routing counters.
#[derive(Debug, Default)]
pub(crate) struct RouteStats {
    /// Keys answered by the map, the file or a fresh cached answer.
    pub(crate) hits: AtomicU64,
    /// Clients that got the default: no key, or nothing maps theirs.
    pub(crate) misses: AtomicU64,
    /// Clients turned away (`reject`).
    pub(crate) rejects: AtomicU64,
}

/// Where a decision came from, for `route KEY` and the debug log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Source {
    Map,
    File,
    /// A cached directory answer of this age.
    Cached(Duration),
    /// The directory, asked now.
    Looked,
    /// A cached answer of this age served because the lookup failed.
    Stale(Duration, String),
    /// The directory does not know the key (cached or asked now).
    NotFound(Option<Duration>),
    /// No source maps the key.
    Unmapped,
    /// The client gave no key (no SNI).
    NoKey,
    /// The lookup failed and nothing cached may serve.
    LookupFailed(String),
}

impl Source {
    /// One word for the connection log: `map`, `file`, `cache` (a fresh
    /// cached answer), `lookup` (asked now), `stale`, or `default`.
    pub(crate) fn word(&self) -> &'static str {
        match self {
            Source::Map => "map",
            Source::File => "file",
            Source::Cached(_) => "cache",
            Source::Looked => "lookup",
            Source::Stale(..) => "stale",
            Source::NotFound(_) | Source::Unmapped | Source::NoKey | Source::LookupFailed(_) => {
                "default"
            }
        }
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let ms = |d: &Duration| d.as_millis();
        match self {
            Source::Map => f.write_str("map"),
            Source::File => f.write_str("file"),
            Source::Cached(age) => write!(f, "lookup (cached, {}ms old)", ms(age)),
            Source::Looked => f.write_str("lookup"),
            Source::Stale(age, why) => {
                write!(
                    f,
                    "lookup (stale, {}ms old; the lookup failed: {why})",
                    ms(age)
                )
            }
            Source::NotFound(Some(age)) => {
                write!(
                    f,
                    "default (the directory does not know it; cached, {}ms old)",
                    ms(age)
                )
            }
            Source::NotFound(None) => f.write_str("default (the directory does not know it)"),
            Source::Unmapped => f.write_str("default (nothing maps it)"),
            Source::NoKey => f.write_str("default (no key)"),
            Source::LookupFailed(why) => write!(f, "default (the lookup failed: {why})"),
        }
    }
}

/// One decision.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Decision {
    pub(crate) target: RouteTarget,
    pub(crate) source: Source,
}

pub(crate) struct Router {
    pub(crate) by: RouteBy,
    pub(crate) default: RouteTarget,
    pub(crate) peek_timeout: Duration,
    pub(crate) peek_bytes: usize,
    pub(crate) groups: Arc<[String]>,
    listener: String,
    map: Table,
    pub(crate) file: Option<Arc<RouteFile>>,
    pub(crate) lookup: Option<Arc<Lookup>>,
    pub(crate) stats: RouteStats,
}

/// A key as the client gave it, owned (a name is lowercased). Inline, as
/// [`sni::Name`] is.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone)]
pub(crate) enum OwnedKey {
    Name(sni::Name),
    Ip(IpAddr),
}

impl OwnedKey {
    fn as_key(&self) -> Key<'_> {
        match self {
            OwnedKey::Name(n) => Key::Name(n.as_str()),
            OwnedKey::Ip(ip) => Key::Ip(*ip),
        }
    }
    /// The key as the directory sees it.
    pub(crate) fn text(&self) -> String {
        match self {
            OwnedKey::Name(n) => n.as_str().to_string(),
            OwnedKey::Ip(ip) => ip.to_canonical().to_string(),
        }
    }
}

impl Router {
    /// Build from config: the route file is read now.
    pub(crate) fn new(cfg: &RouteConfig, listener: &str) -> Router {
        let groups: Arc<[String]> = cfg.groups.clone().into();
        let file = cfg.file.as_ref().map(|p| {
            Arc::new(RouteFile::open(
                p.clone(),
                cfg.by,
                Arc::clone(&groups),
                listener,
            ))
        });
        let lookup = cfg
            .lookup
            .clone()
            .map(|l| Arc::new(Lookup::new(l, Arc::clone(&groups), listener)));
        Router {
            by: cfg.by,
            default: cfg.default,
            peek_timeout: cfg.peek_timeout,
            peek_bytes: cfg.peek_bytes,
            groups,
            listener: listener.to_string(),
            map: Table::new(cfg.map.iter().cloned()),
            file,
            lookup,
            stats: RouteStats::default(),
        }
    }

    /// The key of a connection routed by address (`dst` or `src`).
    pub(crate) fn addr_key(&self, local: Option<SocketAddr>, peer: SocketAddr) -> Option<OwnedKey> {
        match self.by {
            RouteBy::Src => Some(OwnedKey::Ip(peer.ip().to_canonical())),
            RouteBy::Dst => local.map(|l| OwnedKey::Ip(l.ip().to_canonical())),
            RouteBy::Sni => None,
        }
    }

    /// A key typed by an operator (`route KEY`), checked like the sources'.
    pub(crate) fn parse_key(&self, s: &str) -> Result<OwnedKey, String> {
        match self.by {
            RouteBy::Sni => sni::Name::new(s.as_bytes())
                .map(OwnedKey::Name)
                .ok_or_else(|| format!("bad key {}: not a server name", crate::config::quote(s))),
            RouteBy::Dst | RouteBy::Src => s
                .parse::<IpAddr>()
                .map(|ip| OwnedKey::Ip(ip.to_canonical()))
                .map_err(|_| format!("bad key {}: not an address", crate::config::quote(s))),
        }
    }

    /// Decide for a client (counted).
    pub(crate) async fn decide(&self, key: Option<&OwnedKey>) -> Decision {
        let d = self.resolve(key).await;
        match d.source {
            Source::Map | Source::File | Source::Cached(_) => {
                self.stats.hits.fetch_add(1, Relaxed);
            }
            Source::NotFound(_) | Source::Unmapped | Source::NoKey => {
                self.stats.misses.fetch_add(1, Relaxed);
            }
            Source::Looked | Source::Stale(..) | Source::LookupFailed(_) => {}
        }
        if d.target == RouteTarget::Reject {
            self.stats.rejects.fetch_add(1, Relaxed);
        }
        d
    }

    /// Decide without counting hits (`route KEY`; a lookup it makes is
    /// counted as one).
    pub(crate) async fn resolve(&self, key: Option<&OwnedKey>) -> Decision {
        let Some(key) = key else {
            return self.by_default(Source::NoKey);
        };
        let k = key.as_key();
        if let Some(target) = self.map.get(k) {
            return Decision {
                target,
                source: Source::Map,
            };
        }
        if let Some(f) = &self.file {
            if let Some(target) = f.table(&self.listener).get(k) {
                return Decision {
                    target,
                    source: Source::File,
                };
            }
        }
        let Some(lookup) = &self.lookup else {
            return self.by_default(Source::Unmapped);
        };
        let (answer, source) = match lookup.resolve(&key.text()).await {
            Resolved::Cached(a, age) => (a, Source::Cached(age)),
            Resolved::Looked(a) => (a, Source::Looked),
            Resolved::Stale(a, age, why) => (a, Source::Stale(age, why)),
            Resolved::Failed(why) => return self.by_default(Source::LookupFailed(why)),
        };
        match answer {
            Answer::Target(target) => Decision { target, source },
            Answer::NotFound => self.by_default(Source::NotFound(match source {
                Source::Cached(age) | Source::Stale(age, _) => Some(age),
                _ => None,
            })),
        }
    }

    fn by_default(&self, source: Source) -> Decision {
        Decision {
            target: self.default,
            source,
        }
    }

    /// A target in words.
    pub(crate) fn target_name(&self, t: RouteTarget) -> String {
        match t {
            RouteTarget::Reject => "reject".into(),
            RouteTarget::Group(g) => self.groups.get(g).cloned().unwrap_or_else(|| g.to_string()),
        }
    }
}

#[cfg(test)]
mod tests;
