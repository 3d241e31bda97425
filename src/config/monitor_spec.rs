//! balance.fm's `-m` grammar → [`MonitorSpec`]. Pure parsing; the probes
//! that run the checks live in the `monitor` module.
//!
//! ```text
//! spec   := kvpair { ":" kvpair }
//! kvpair := key [ "=" value ]        # "\:" escapes a colon inside a value
//! ```
//!
//! Actions (`connect`, `command=`, `http=`, `mysql`, `redis`, `send=`) run
//! in order; the options after an action belong to it (`timeout=`, `pass=`,
//! `port=`, `host=`, `expect=`, `body=`, `user=`, `password_file=`,
//! `read_only=`, `max_lag=`, `role=`). Global options may appear
//! anywhere: `interval=`, `rise=`, `fall=`, `jitter=`, `noenable`,
//! `nodisable`, `on-down=shutdown`, `on-up=shutdown-backup`, `fence`,
//! `nofence`.
//!
//! A spec that uses only balance.fm's keys and gives no `interval=` probes
//! healthy channels every 60 s as balance.fm did (failing ones every 2 s);
//! any other spec defaults to 2 s.

use crate::config::quote;
use std::time::Duration;

mod values;

use values::{parse_codes, parse_command, parse_path, parse_statuses, unescape};

use super::error::BadValue;
use super::grammar::parse_duration;
use super::monitor::{
    BALANCE_FM_INTERVAL, Check, DEFAULT_INTERVAL, MonitorSpec, Probe, RedisRole, read_password_file,
};

/// Longest accepted spec (a sanity bound, not a protocol limit).
const MAX_SPEC: usize = 8192;
/// The keys balance.fm's `-m` knows: a spec using only these keeps
/// balance.fm's default interval.
const BALANCE_FM_KEYS: &[&str] = &[
    "connect",
    "command",
    "timeout",
    "pass",
    "interval",
    "noenable",
    "nodisable",
];
/// Shortest probe interval.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Parse a `-m` spec. Per-check timeouts left unset are `None`: the probes
/// use `monitor::default_check_timeout(interval)` at run time.
pub fn parse(spec: &str) -> Result<MonitorSpec, BadValue> {
    parse_inner(spec).map_err(|e| BadValue(format!("bad -m spec: {e}")))
}

fn parse_inner(spec: &str) -> Result<MonitorSpec, String> {
    if spec.len() > MAX_SPEC {
        return Err(format!("longer than {MAX_SPEC} bytes"));
    }
    if spec.trim().is_empty() {
        return Err("empty".into());
    }
    let mut out = MonitorSpec::default();
    let mut seen_globals: Vec<&'static str> = Vec::new();
    let mut balance_fm_form = true;
    for pair in split_pairs(spec) {
        let (key, value) = match pair.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (pair.trim(), None),
        };
        balance_fm_form &= BALANCE_FM_KEYS.contains(&key);
        if key.is_empty() {
            return Err(format!("empty key in {}", quote(&pair)));
        }
        if let Some(g) = global_key(key) {
            if seen_globals.contains(&g) {
                return Err(format!("duplicate {}", quote(g)));
            }
            seen_globals.push(g);
            apply_global(&mut out, g, value)?;
            continue;
        }
        match key {
            "connect" => {
                no_value(key, value)?;
                out.checks.push(Check {
                    probe: Probe::Connect,
                    timeout: None,
                });
            }
            "command" => out.checks.push(Check {
                probe: Probe::Command {
                    argv: parse_command(need_value(key, value)?)?,
                    pass: vec![0],
                },
                timeout: None,
            }),
            "http" => out.checks.push(Check {
                probe: Probe::Http {
                    path: parse_path(need_value(key, value)?)?,
                    port: None,
                    host: None,
                    expect: vec![(200, 399)],
                    body: None,
                },
                timeout: None,
            }),
            "mysql" => {
                no_value(key, value)?;
                out.checks.push(Check {
                    probe: Probe::Mysql {
                        user: None,
                        password: None,
                        read_only: None,
                        max_lag: None,
                    },
                    timeout: None,
                });
            }
            "redis" => {
                no_value(key, value)?;
                out.checks.push(Check {
                    probe: Probe::Redis {
                        password: None,
                        role: None,
                    },
                    timeout: None,
                });
            }
            "send" => {
                let send = unescape(need_value(key, value)?)?;
                if send.is_empty() {
                    return Err("empty send=".into());
                }
                out.checks.push(Check {
                    probe: Probe::SendExpect {
                        send,
                        expect: Vec::new(),
                    },
                    timeout: None,
                });
            }
            _ => {
                let Some(cur) = out.checks.last_mut() else {
                    return Err(if is_option(key) {
                        format!("option {} before any action ({})", quote(key), actions())
                    } else {
                        unknown(key)
                    });
                };
                apply_option(cur, key, value)?;
            }
        }
    }
    if out.checks.is_empty() {
        return Err(format!("no check action ({})", actions()));
    }
    for c in &out.checks {
        if let Check {
            probe:
                Probe::Mysql {
                    user: None,
                    password: Some(_),
                    ..
                },
            ..
        } = c
        {
            return Err("mysql password_file= needs user=".into());
        }
        if let Check {
            probe:
                Probe::Mysql {
                    user: None,
                    read_only,
                    max_lag,
                    ..
                },
            ..
        } = c
        {
            if read_only.is_some() || max_lag.is_some() {
                return Err(
                    "mysql read_only= and max_lag= need user= (they query the server)".into(),
                );
            }
        }
    }
    if balance_fm_form && !seen_globals.contains(&"interval") {
        out.interval = BALANCE_FM_INTERVAL;
        out.suspect_interval = Some(DEFAULT_INTERVAL);
    }
    Ok(out)
}

/// Split on unescaped `:`; `\:` becomes `:`, other backslashes stay (for
/// the values' own escapes).
fn split_pairs(spec: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut cur = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '\\' if chars.peek() == Some(&':') => {
                chars.next();
                cur.push(':');
            }
            // An escaped backslash stays for the value's own unescaping, and
            // the colon after it separates (balance.fm's `get_token`).
            '\\' if chars.peek() == Some(&'\\') => {
                chars.next();
                cur.push_str("\\\\");
            }
            ':' => out.push(std::mem::take(&mut cur)),
            c => cur.push(c),
        }
    }
    out.push(cur);
    out
}

fn global_key(k: &str) -> Option<&'static str> {
    Some(match k {
        "interval" => "interval",
        "rise" => "rise",
        "fall" => "fall",
        "jitter" => "jitter",
        "noenable" => "noenable",
        "nodisable" => "nodisable",
        "on-down" | "on_down" => "on-down",
        "on-up" | "on_up" => "on-up",
        "fence" => "fence",
        "nofence" => "nofence",
        _ => return None,
    })
}

/// Each action and the options that follow it (the YAML file's check of
/// the same kind has a key for each: a test walks both grammars).
pub(crate) const ACTION_OPTIONS: &[(&str, &[&str])] = &[
    ("connect", &["timeout"]),
    ("command", &["pass", "timeout"]),
    ("http", &["port", "host", "expect", "body", "timeout"]),
    (
        "mysql",
        &["user", "password_file", "read_only", "max_lag", "timeout"],
    ),
    ("redis", &["password_file", "role", "timeout"]),
    ("send", &["expect", "timeout"]),
];

/// The action words, for error messages.
fn actions() -> String {
    let a: Vec<&str> = ACTION_OPTIONS.iter().map(|(a, _)| *a).collect();
    a.join(", ")
}

/// The global keys (see [`global_key`] for their spellings).
pub(crate) const GLOBALS: &[&str] = &[
    "interval",
    "rise",
    "fall",
    "jitter",
    "noenable",
    "nodisable",
    "on-down",
    "on-up",
    "fence",
    "nofence",
];

fn is_option(k: &str) -> bool {
    ACTION_OPTIONS.iter().any(|(_, opts)| opts.contains(&k))
}

fn unknown(k: &str) -> String {
    format!(
        "unknown key {} (actions: {}; globals: {})",
        quote(k),
        actions(),
        GLOBALS.join(", ")
    )
}

fn apply_global(out: &mut MonitorSpec, g: &'static str, v: Option<&str>) -> Result<(), String> {
    match g {
        "interval" => {
            let d = duration(g, need_value(g, v)?)?;
            if d < MIN_INTERVAL {
                return Err(format!("interval {} is below 10ms", quote(v.unwrap_or(""))));
            }
            out.interval = d;
        }
        "jitter" => out.jitter = duration(g, need_value(g, v)?)?,
        "rise" => out.rise = count(g, need_value(g, v)?)?,
        "fall" => out.fall = count(g, need_value(g, v)?)?,
        "noenable" => {
            no_value(g, v)?;
            out.noenable = true;
        }
        "nodisable" => {
            no_value(g, v)?;
            out.nodisable = true;
        }
        "fence" => {
            no_value(g, v)?;
            out.fence = Some(true);
        }
        "nofence" => {
            no_value(g, v)?;
            out.fence = Some(false);
        }
        "on-down" => match need_value(g, v)? {
            "shutdown" => out.on_down_shutdown = true,
            "none" => out.on_down_shutdown = false,
            o => return Err(format!("bad on-down {}: use shutdown or none", quote(o))),
        },
        "on-up" => match need_value(g, v)? {
            "shutdown-backup" => out.on_up_shutdown_backup = true,
            "none" => out.on_up_shutdown_backup = false,
            o => {
                return Err(format!(
                    "bad on-up {}: use shutdown-backup or none",
                    quote(o)
                ));
            }
        },
        _ => return Err(unknown(g)),
    }
    Ok(())
}

/// An option following an action.
fn apply_option(cur: &mut Check, key: &str, v: Option<&str>) -> Result<(), String> {
    let action = cur.name();
    let wrong = || format!("option {} does not apply to {action}", quote(key));
    let dup = |set: bool| {
        if set {
            Err(format!("duplicate {} for {action}", quote(key)))
        } else {
            Ok(())
        }
    };
    if key == "timeout" {
        let d = duration(key, need_value(key, v)?)?;
        if d.is_zero() {
            return Err("timeout must be positive".into());
        }
        dup(cur.timeout.is_some())?;
        cur.timeout = Some(d);
        return Ok(());
    }
    match (&mut cur.probe, key) {
        (Probe::Command { pass, .. }, "pass") => {
            *pass = parse_codes(need_value(key, v)?)?;
        }
        (Probe::Http { port, .. }, "port") => {
            dup(port.is_some())?;
            let s = need_value(key, v)?;
            *port = Some(match s.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("bad port {}", quote(s))),
            });
        }
        (Probe::Http { host, .. }, "host") => {
            dup(host.is_some())?;
            let s = need_value(key, v)?;
            if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("bad host {}", quote(s)));
            }
            *host = Some(s.to_string());
        }
        (Probe::Http { expect, .. }, "expect") => {
            *expect = parse_statuses(need_value(key, v)?)?;
        }
        (Probe::Http { body, .. }, "body") => {
            dup(body.is_some())?;
            let s = need_value(key, v)?;
            if s.is_empty() {
                return Err("empty body=".into());
            }
            *body = Some(s.to_string());
        }
        (Probe::Mysql { user, .. }, "user") => {
            dup(user.is_some())?;
            let s = need_value(key, v)?;
            if s.is_empty() || s.len() > 80 || s.bytes().any(|b| b == 0 || b.is_ascii_control()) {
                return Err(format!("bad user {}", quote(s)));
            }
            *user = Some(s.to_string());
        }
        (Probe::Mysql { password, .. }, "password_file") => {
            dup(password.is_some())?;
            let s = need_value(key, v)?;
            *password = Some(read_password_file(std::path::Path::new(s))?);
        }
        (Probe::Mysql { read_only, .. }, "read_only") => {
            dup(read_only.is_some())?;
            *read_only = Some(match need_value(key, v)?.trim() {
                "0" => false,
                "1" => true,
                o => return Err(format!("bad read_only {}: use 0 or 1", quote(o))),
            });
        }
        (Probe::Mysql { max_lag, .. }, "max_lag") => {
            dup(max_lag.is_some())?;
            *max_lag = Some(duration(key, need_value(key, v)?)?);
        }
        (Probe::Redis { password, .. }, "password_file") => {
            dup(password.is_some())?;
            let s = need_value(key, v)?;
            *password = Some(read_password_file(std::path::Path::new(s))?);
        }
        (Probe::Redis { role, .. }, "role") => {
            dup(role.is_some())?;
            let s = need_value(key, v)?;
            *role = Some(
                RedisRole::parse(s.trim())
                    .ok_or_else(|| format!("bad role {}: use master or replica", quote(s)))?,
            );
        }
        (Probe::SendExpect { expect, .. }, "expect") => {
            dup(!expect.is_empty())?;
            let e = unescape(need_value(key, v)?)?;
            if e.is_empty() {
                return Err("empty expect=".into());
            }
            *expect = e;
        }
        (_, k) if is_option(k) => return Err(wrong()),
        (_, k) => return Err(unknown(k)),
    }
    Ok(())
}

fn need_value<'a>(key: &str, v: Option<&'a str>) -> Result<&'a str, String> {
    match v {
        Some(v) => Ok(v),
        None => Err(format!("{} needs a value ({key}=...)", quote(key))),
    }
}

fn no_value(key: &str, v: Option<&str>) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(v) => Err(format!(
            "{} takes no value (got {})",
            quote(key),
            quote(&format!("{key}={v}"))
        )),
    }
}

fn duration(key: &str, s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| format!("bad {key} {}: {e}", quote(s)))
}

fn count(key: &str, s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!("bad {key} {}: use 1 to 1000", quote(s))),
    }
}

/// User text shown in an error: control characters escaped, length capped.
#[cfg(test)]
mod tests;
