//! `route:` of a listener in the file: the raw model and its conversion
//! (targets resolved against the listener's groups).

use std::collections::BTreeMap;
use std::path::PathBuf;

use serde::Deserialize;

use super::scalars::{Argv, Bounded, Dur};
use crate::config::route::{
    DEFAULT_LOOKUP_TIMEOUT, DEFAULT_NEGATIVE_TTL, DEFAULT_PEEK_BYTES, DEFAULT_PEEK_TIMEOUT,
    DEFAULT_TTL, Directory, LookupConfig, RouteBy, RouteConfig, parse_key, parse_target,
};

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct RawRoute {
    by: RawBy,
    #[serde(default)]
    map: BTreeMap<String, String>,
    #[serde(default)]
    file: Option<PathBuf>,
    #[serde(default)]
    lookup: Option<RawLookup>,
    default: String,
    #[serde(default)]
    peek_timeout: Option<Dur>,
    #[serde(default)]
    peek_bytes: Option<Bounded<64, 65536>>,
}

#[derive(Deserialize, Clone, Copy)]
#[serde(rename_all = "lowercase")]
enum RawBy {
    Sni,
    Dst,
    Src,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLookup {
    #[serde(default)]
    url: Option<String>,
    #[serde(default)]
    argv: Option<Argv>,
    #[serde(default)]
    timeout: Option<Dur>,
    #[serde(default)]
    ttl: Option<Dur>,
    #[serde(default)]
    negative_ttl: Option<Dur>,
    #[serde(default)]
    stale: Option<Dur>,
}

/// `route:` resolved against the listener's group names; errors are
/// `route.KEY: why`.
pub(super) fn route(r: RawRoute, groups: Vec<String>) -> Result<RouteConfig, String> {
    if groups.iter().any(|g| g == "reject") {
        return Err(
            "route: a group named reject cannot be told from the reject target; rename it".into(),
        );
    }
    let by = match r.by {
        RawBy::Sni => RouteBy::Sni,
        RawBy::Dst => RouteBy::Dst,
        RawBy::Src => RouteBy::Src,
    };
    let map = r
        .map
        .iter()
        .map(|(k, t)| {
            Ok((
                parse_key(by, k).map_err(|e| format!("route.map: {e}"))?,
                parse_target(t, &groups).map_err(|e| format!("route.map: {k}: {e}"))?,
            ))
        })
        .collect::<Result<Vec<_>, String>>()?;
    let default = parse_target(&r.default, &groups).map_err(|e| format!("route.default: {e}"))?;
    let lookup = r.lookup.map(lookup).transpose()?;
    let peek_timeout = r.peek_timeout.map_or(DEFAULT_PEEK_TIMEOUT, |d| d.0);
    if peek_timeout.is_zero() {
        return Err("route.peek_timeout: must be positive".into());
    }
    if by != RouteBy::Sni && (r.peek_timeout.is_some() || r.peek_bytes.is_some()) {
        return Err("route.peek_timeout, route.peek_bytes: only with by: sni".into());
    }
    if let Some(f) = &r.file {
        // Read again at runtime; at load it must at least open.
        crate::sys::file::open_regular(f)
            .map_err(|e| format!("route.file: {}: {e}", f.display()))?;
    }
    Ok(RouteConfig {
        by,
        map,
        file: r.file,
        lookup,
        default,
        peek_timeout,
        peek_bytes: r.peek_bytes.map_or(DEFAULT_PEEK_BYTES, |b| b.0 as usize),
        groups,
    })
}

fn lookup(l: RawLookup) -> Result<LookupConfig, String> {
    let directory = match (l.url, l.argv) {
        (Some(u), None) => Directory::http(&u).map_err(|e| format!("route.lookup.url: {e}"))?,
        (None, Some(a)) => Directory::argv(a.0).map_err(|e| format!("route.{e}"))?,
        _ => return Err("route.lookup: give url or argv (one of them)".into()),
    };
    let timeout = l.timeout.map_or(DEFAULT_LOOKUP_TIMEOUT, |d| d.0);
    if timeout.is_zero() {
        return Err("route.lookup.timeout: must be positive".into());
    }
    Ok(LookupConfig {
        directory,
        timeout,
        ttl: l.ttl.map_or(DEFAULT_TTL, |d| d.0),
        negative_ttl: l.negative_ttl.map_or(DEFAULT_NEGATIVE_TTL, |d| d.0),
        stale: l.stale.map_or(std::time::Duration::ZERO, |d| d.0),
    })
}

#[cfg(test)]
mod tests;
