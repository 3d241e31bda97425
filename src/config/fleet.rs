//! `fleet:` (config file) and `--fleet ENDPOINTS` (command line): the etcd
//! endpoints, the key prefix, this instance's id and the fallback bound.
//! Validated here once; the fleet runtime never re-parses them.

use std::time::Duration;

use super::quote;

/// The default key prefix.
pub const DEFAULT_PREFIX: &str = "/balance";
/// Endpoints, ids and prefixes longer than this are refused.
const MAX_TEXT: usize = 200;
/// At most this many endpoints.
const MAX_ENDPOINTS: usize = 16;
/// `fallback` bounds.
const MIN_FALLBACK: Duration = Duration::from_millis(100);
const MAX_FALLBACK: Duration = Duration::from_secs(3600);

/// Fleet mode: present exactly when `fleet:` or `--fleet` was given.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FleetConfig {
    /// `http://HOST:PORT`, tried in turn.
    pub endpoints: Vec<String>,
    /// Key prefix, `/`-led, no trailing `/`.
    pub prefix: String,
    /// This instance's id (default `hostname:pid`, filled at start).
    pub id: Option<String>,
    /// How long etcd may be unreachable before probing alone (default:
    /// derived per listener from its monitor interval).
    pub fallback: Option<Duration>,
}

impl FleetConfig {
    /// A fleet on `endpoints` with the defaults.
    pub fn new(endpoints: Vec<String>) -> FleetConfig {
        FleetConfig {
            endpoints,
            prefix: DEFAULT_PREFIX.into(),
            id: None,
            fallback: None,
        }
    }

    /// Check every field; the error is one line naming the bad value.
    pub fn validate(&self) -> Result<(), String> {
        if self.endpoints.is_empty() {
            return Err("endpoints: must not be empty".into());
        }
        if self.endpoints.len() > MAX_ENDPOINTS {
            return Err(format!("endpoints: at most {MAX_ENDPOINTS}"));
        }
        for e in &self.endpoints {
            check_endpoint(e).map_err(|why| format!("endpoints: {}: {why}", quote(e)))?;
        }
        check_prefix(&self.prefix)
            .map_err(|why| format!("prefix: {}: {why}", quote(&self.prefix)))?;
        if let Some(id) = &self.id {
            check_id(id).map_err(|why| format!("id: {}: {why}", quote(id)))?;
        }
        if let Some(f) = self.fallback {
            if !(MIN_FALLBACK..=MAX_FALLBACK).contains(&f) {
                return Err("fallback: must be 100ms-1h".into());
            }
        }
        Ok(())
    }
}

/// `--fleet`: a comma-separated list of endpoints.
pub fn parse_endpoints(s: &str) -> Result<Vec<String>, String> {
    let v: Vec<String> = s.split(',').map(|e| e.trim().to_string()).collect();
    if v.iter().any(String::is_empty) {
        return Err("empty endpoint in the list".into());
    }
    let cfg = FleetConfig::new(v);
    cfg.validate()?;
    Ok(cfg.endpoints)
}

/// `http://HOST:PORT` (no TLS, no path, no credentials).
fn check_endpoint(e: &str) -> Result<(), &'static str> {
    if e.len() > MAX_TEXT {
        return Err("too long");
    }
    let Some(rest) = e.strip_prefix("http://") else {
        return Err("must start with http:// (TLS is not supported)");
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("use http://HOST:PORT");
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((h, p)) if !h.is_empty() => (h, p),
        _ => return Err("needs HOST:PORT"),
    };
    let host = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    if host.contains(':') && host.parse::<std::net::Ipv6Addr>().is_err() {
        return Err("bad host");
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => Ok(()),
        _ => Err("bad port"),
    }
}

fn check_prefix(p: &str) -> Result<(), &'static str> {
    if p.len() > MAX_TEXT {
        return Err("too long");
    }
    if !p.starts_with('/') || p.len() < 2 {
        return Err("must start with / and name something");
    }
    if p.ends_with('/') {
        return Err("must not end with /");
    }
    if p.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("no spaces or control characters");
    }
    Ok(())
}

fn check_id(id: &str) -> Result<(), &'static str> {
    if id.is_empty() || id.len() > MAX_TEXT {
        return Err("must be 1-200 characters");
    }
    if id
        .chars()
        .any(|c| c.is_whitespace() || c.is_control() || c == '/')
    {
        return Err("no spaces, control characters or /");
    }
    Ok(())
}

#[cfg(test)]
mod tests;
