//! `fleet:` (config file) and `--fleet ENDPOINTS` (command line): the etcd
//! endpoints (or the DNS domain they are discovered in), the key prefix,
//! this instance's id, the fallback bound, and how to reach a production
//! etcd: TLS files and a login. Validated here once, the files read and
//! checked when the config is built (start and reload); the fleet runtime
//! never re-parses them.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use super::monitor::Password;
use super::quote;

mod tls;

/// The default key prefix.
pub(crate) const DEFAULT_PREFIX: &str = "/balance";
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
    /// `http://HOST:PORT` or `https://HOST:PORT`, tried in turn (empty
    /// with `discovery_srv`).
    pub(crate) endpoints: Vec<String>,
    /// Find the endpoints in this domain's SRV records instead.
    pub(crate) discovery_srv: Option<String>,
    /// `tls:`: the files, for `https://` endpoints.
    pub tls: Option<Box<TlsFiles>>,
    /// etcd's authentication: the user, and the file of its password.
    pub user: Option<String>,
    /// The file holding `user`'s password.
    pub password_file: Option<PathBuf>,
    /// What those files held when the config was built.
    pub(crate) loaded: Loaded,
    /// Key prefix, `/`-led, no trailing `/`.
    pub(crate) prefix: String,
    /// This instance's id (default `hostname:pid`, filled at start).
    pub(crate) id: Option<String>,
    /// How long etcd may be unreachable before probing alone (default:
    /// derived per listener from its monitor interval).
    pub(crate) fallback: Option<Duration>,
}

impl FleetConfig {
    /// A fleet on `endpoints` with the defaults.
    pub fn new(endpoints: Vec<String>) -> FleetConfig {
        FleetConfig {
            endpoints,
            discovery_srv: None,
            tls: None,
            user: None,
            password_file: None,
            loaded: Loaded::default(),
            prefix: DEFAULT_PREFIX.into(),
            id: None,
            fallback: None,
        }
    }

    /// The settings a reload cannot change in a running process (all but
    /// the TLS files and the login, which a reload re-reads and applies).
    pub(crate) fn fixed(&self) -> FleetConfig {
        FleetConfig {
            tls: None,
            user: None,
            password_file: None,
            loaded: Loaded::default(),
            ..self.clone()
        }
    }

    /// Read and check the TLS files and the password file into
    /// [`FleetConfig::loaded`]; the error is one line naming the file.
    pub fn load_files(&mut self) -> Result<(), String> {
        use sha2::Digest;
        let mut digest = sha2::Sha256::new();
        let tls = match &self.tls {
            None => None,
            Some(files) => Some(tls::load(files, &mut digest).map_err(|e| format!("tls.{e}"))?),
        };
        let password = match (&self.user, &self.password_file) {
            (None, Some(_)) => return Err("password_file needs user".into()),
            (Some(_), None) => return Err("user needs password_file".into()),
            (None, None) => None,
            (Some(user), Some(p)) => {
                check_user(user).map_err(|why| format!("user: {}: {why}", quote(user)))?;
                let pw = super::monitor::read_password_file(p)?;
                digest.update(user.as_bytes());
                digest.update([0]);
                digest.update(pw.0.as_bytes());
                Some(pw)
            }
        };
        self.loaded = Loaded(Some(Arc::new(LoadedFiles {
            tls,
            password,
            digest: digest.finalize().into(),
        })));
        Ok(())
    }

    /// Check every field; the error is one line naming the bad value.
    pub(crate) fn validate(&self) -> Result<(), String> {
        self.validate_list()?;
        if self.tls.is_none() {
            if let Some(e) = self.endpoints.iter().find(|e| e.starts_with("https://")) {
                return Err(format!(
                    "endpoints: {}: https:// needs fleet.tls (at least its ca)",
                    quote(e)
                ));
            }
        }
        Ok(())
    }

    /// [`FleetConfig::validate`] but for the TLS files an `https://`
    /// endpoint needs (`--fleet` is checked before the file's `tls:` is
    /// known).
    fn validate_list(&self) -> Result<(), String> {
        match (&self.discovery_srv, self.endpoints.is_empty()) {
            (None, true) => return Err("endpoints: must not be empty".into()),
            (Some(_), false) => {
                return Err("endpoints and discovery_srv: give one of them".into());
            }
            (Some(d), true) => {
                check_domain(d).map_err(|why| format!("discovery_srv: {}: {why}", quote(d)))?;
            }
            (None, false) => {}
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

/// `fleet.tls`: PEM files.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The CA(s) etcd's certificates are checked against.
    pub ca: PathBuf,
    /// This client's certificate (chain) and key, for etcd's
    /// `--client-cert-auth`.
    pub cert: Option<PathBuf>,
    /// The key of `cert`.
    pub key: Option<PathBuf>,
}

/// The TLS settings and the password read from their files (none before
/// [`FleetConfig::load_files`]); equal when the files held the same bytes.
#[derive(Clone, Default)]
pub(crate) struct Loaded(Option<Arc<LoadedFiles>>);

struct LoadedFiles {
    tls: Option<Arc<rustls::ClientConfig>>,
    password: Option<Password>,
    digest: [u8; 32],
}

impl Loaded {
    /// The client configuration for `https://` endpoints.
    pub(crate) fn tls(&self) -> Option<&Arc<rustls::ClientConfig>> {
        self.0.as_ref()?.tls.as_ref()
    }

    /// The password read from `password_file`.
    pub(crate) fn password(&self) -> Option<&Password> {
        self.0.as_ref()?.password.as_ref()
    }
}

impl PartialEq for Loaded {
    fn eq(&self, other: &Self) -> bool {
        self.0.as_ref().map(|l| l.digest) == other.0.as_ref().map(|l| l.digest)
    }
}

impl Eq for Loaded {}

impl std::fmt::Debug for Loaded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Loaded")
            .field("tls", &self.tls().is_some())
            .field("password", &self.password())
            .finish()
    }
}

/// `--fleet`: a comma-separated list of endpoints.
pub(crate) fn parse_endpoints(s: &str) -> Result<Vec<String>, String> {
    let v: Vec<String> = s.split(',').map(|e| e.trim().to_string()).collect();
    if v.iter().any(String::is_empty) {
        return Err("empty endpoint in the list".into());
    }
    let cfg = FleetConfig::new(v);
    cfg.validate_list()?;
    Ok(cfg.endpoints)
}

/// `http://HOST:PORT` or `https://HOST:PORT` (no path, no credentials).
fn check_endpoint(e: &str) -> Result<(), &'static str> {
    if e.len() > MAX_TEXT {
        return Err("too long");
    }
    let Some(rest) = e
        .strip_prefix("http://")
        .or_else(|| e.strip_prefix("https://"))
    else {
        return Err("must start with http:// or https://");
    };
    let rest = rest.strip_suffix('/').unwrap_or(rest);
    if rest.contains(['/', '@', '?', '#'])
        || rest.chars().any(|c| c.is_whitespace() || c.is_control())
    {
        return Err("use http://HOST:PORT or https://HOST:PORT");
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

/// A DNS domain: dot-separated labels of letters, digits, `-` and `_`.
fn check_domain(d: &str) -> Result<(), &'static str> {
    let d = d.strip_suffix('.').unwrap_or(d);
    if d.is_empty() || d.len() > 253 {
        return Err("must be a DNS domain of 1-253 characters");
    }
    let label_ok = |l: &str| {
        !l.is_empty()
            && l.len() <= 63
            && l.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    };
    if !d.split('.').all(label_ok) {
        return Err("must be a DNS domain (letters, digits, - and _ between dots)");
    }
    Ok(())
}

/// An etcd user name: printable, no spaces.
fn check_user(u: &str) -> Result<(), &'static str> {
    if u.is_empty() || u.len() > MAX_TEXT {
        return Err("must be 1-200 characters");
    }
    if u.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return Err("no spaces or control characters");
    }
    Ok(())
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
