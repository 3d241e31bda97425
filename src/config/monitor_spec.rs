//! balance.fm's `-m` grammar → [`MonitorSpec`]. Pure parsing; the probes
//! that run the checks live in the `monitor` module.
//!
//! ```text
//! spec   := kvpair { ":" kvpair }
//! kvpair := key [ "=" value ]        # "\:" escapes a colon inside a value
//! ```
//!
//! Actions (`connect`, `command=`, `http=`, `mysql`, `send=`) run in order;
//! the options after an action belong to it (`timeout=`, `pass=`, `port=`,
//! `host=`, `expect=`, `body=`, `user=`). Global options may appear
//! anywhere: `interval=`, `rise=`, `fall=`, `jitter=`, `noenable`,
//! `nodisable`, `on-down=shutdown`, `on-up=shutdown-backup`.

use std::time::Duration;

use super::error::BadValue;
use super::grammar::parse_duration;
use super::monitor::{Check, MonitorSpec};

/// Longest accepted spec (a sanity bound, not a protocol limit).
const MAX_SPEC: usize = 8192;
/// Shortest probe interval.
const MIN_INTERVAL: Duration = Duration::from_millis(10);

/// Parse a `-m` spec. Per-check timeouts left unset are `None`: the probes
/// use the listener's connect timeout at run time.
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
    for pair in split_pairs(spec) {
        let (key, value) = match pair.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v)),
            None => (pair.trim(), None),
        };
        if key.is_empty() {
            return Err(format!("empty key in \"{}\"", show(&pair)));
        }
        if let Some(g) = global_key(key) {
            if seen_globals.contains(&g) {
                return Err(format!("duplicate \"{g}\""));
            }
            seen_globals.push(g);
            apply_global(&mut out, g, value)?;
            continue;
        }
        match key {
            "connect" => {
                no_value(key, value)?;
                out.checks.push(Check::Connect { timeout: None });
            }
            "command" => out.checks.push(Check::Command {
                argv: parse_command(need_value(key, value)?)?,
                pass: vec![0],
                timeout: None,
            }),
            "http" => out.checks.push(Check::Http {
                path: parse_path(need_value(key, value)?)?,
                port: None,
                host: None,
                expect: vec![(200, 399)],
                body: None,
                timeout: None,
            }),
            "mysql" => {
                no_value(key, value)?;
                out.checks.push(Check::Mysql {
                    user: None,
                    timeout: None,
                });
            }
            "send" => {
                let send = unescape(need_value(key, value)?)?;
                if send.is_empty() {
                    return Err("empty send=".into());
                }
                out.checks.push(Check::SendExpect {
                    send,
                    expect: Vec::new(),
                    timeout: None,
                });
            }
            _ => {
                let Some(cur) = out.checks.last_mut() else {
                    return Err(if is_option(key) {
                        format!(
                            "option \"{key}\" before any action (connect, command, http, mysql, send)"
                        )
                    } else {
                        unknown(key)
                    });
                };
                apply_option(cur, key, value)?;
            }
        }
    }
    if out.checks.is_empty() {
        return Err("no check action (connect, command=, http=, mysql, send=)".into());
    }
    Ok(out)
}

/// Split on unescaped `:`; `\:` becomes `:`, other backslashes stay (for
/// `send=`'s escapes).
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
        _ => return None,
    })
}

fn is_option(k: &str) -> bool {
    matches!(
        k,
        "timeout" | "pass" | "port" | "host" | "expect" | "body" | "user"
    )
}

fn unknown(k: &str) -> String {
    format!(
        "unknown key \"{}\" (actions: connect, command, http, mysql, send; globals: interval, rise, fall, jitter, noenable, nodisable, on-down, on-up)",
        show(k)
    )
}

fn apply_global(out: &mut MonitorSpec, g: &'static str, v: Option<&str>) -> Result<(), String> {
    match g {
        "interval" => {
            let d = duration(g, need_value(g, v)?)?;
            if d < MIN_INTERVAL {
                return Err(format!(
                    "interval \"{}\" is below 10ms",
                    show(v.unwrap_or(""))
                ));
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
        "on-down" => match need_value(g, v)? {
            "shutdown" => out.on_down_shutdown = true,
            "none" => out.on_down_shutdown = false,
            o => return Err(format!("bad on-down \"{}\": use shutdown or none", show(o))),
        },
        "on-up" => match need_value(g, v)? {
            "shutdown-backup" => out.on_up_shutdown_backup = true,
            "none" => out.on_up_shutdown_backup = false,
            o => {
                return Err(format!(
                    "bad on-up \"{}\": use shutdown-backup or none",
                    show(o)
                ));
            }
        },
        _ => return Err(unknown(g)),
    }
    Ok(())
}

/// An option following an action.
fn apply_option(cur: &mut Check, key: &str, v: Option<&str>) -> Result<(), String> {
    let action = action_name(cur);
    let wrong = || format!("option \"{}\" does not apply to {action}", show(key));
    let dup = |set: bool| {
        if set {
            Err(format!("duplicate \"{key}\" for {action}"))
        } else {
            Ok(())
        }
    };
    if key == "timeout" {
        let d = duration(key, need_value(key, v)?)?;
        if d.is_zero() {
            return Err("timeout must be positive".into());
        }
        let slot = match cur {
            Check::Connect { timeout }
            | Check::Command { timeout, .. }
            | Check::Http { timeout, .. }
            | Check::Mysql { timeout, .. }
            | Check::SendExpect { timeout, .. } => timeout,
        };
        dup(slot.is_some())?;
        *slot = Some(d);
        return Ok(());
    }
    match (cur, key) {
        (Check::Command { pass, .. }, "pass") => {
            *pass = parse_codes(need_value(key, v)?)?;
        }
        (Check::Http { port, .. }, "port") => {
            dup(port.is_some())?;
            let s = need_value(key, v)?;
            *port = Some(match s.trim().parse::<u16>() {
                Ok(p) if p > 0 => p,
                _ => return Err(format!("bad port \"{}\"", show(s))),
            });
        }
        (Check::Http { host, .. }, "host") => {
            dup(host.is_some())?;
            let s = need_value(key, v)?;
            if s.is_empty() || s.len() > 255 || !s.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(format!("bad host \"{}\"", show(s)));
            }
            *host = Some(s.to_string());
        }
        (Check::Http { expect, .. }, "expect") => {
            *expect = parse_statuses(need_value(key, v)?)?;
        }
        (Check::Http { body, .. }, "body") => {
            dup(body.is_some())?;
            let s = need_value(key, v)?;
            if s.is_empty() {
                return Err("empty body=".into());
            }
            *body = Some(s.to_string());
        }
        (Check::Mysql { user, .. }, "user") => {
            dup(user.is_some())?;
            let s = need_value(key, v)?;
            if s.is_empty() || s.len() > 80 || s.bytes().any(|b| b == 0 || b.is_ascii_control()) {
                return Err(format!("bad user \"{}\"", show(s)));
            }
            *user = Some(s.to_string());
        }
        (Check::SendExpect { expect, .. }, "expect") => {
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

fn action_name(c: &Check) -> &'static str {
    match c {
        Check::Connect { .. } => "connect",
        Check::Command { .. } => "command",
        Check::Http { .. } => "http",
        Check::Mysql { .. } => "mysql",
        Check::SendExpect { .. } => "send",
    }
}

fn need_value<'a>(key: &str, v: Option<&'a str>) -> Result<&'a str, String> {
    match v {
        Some(v) => Ok(v),
        None => Err(format!("\"{}\" needs a value ({key}=...)", show(key))),
    }
}

fn no_value(key: &str, v: Option<&str>) -> Result<(), String> {
    match v {
        None => Ok(()),
        Some(v) => Err(format!(
            "\"{key}\" takes no value (got \"{key}={}\")",
            show(v)
        )),
    }
}

fn duration(key: &str, s: &str) -> Result<Duration, String> {
    parse_duration(s).map_err(|e| format!("bad {key} \"{}\": {e}", show(s)))
}

fn count(key: &str, s: &str) -> Result<u32, String> {
    match s.trim().parse::<u32>() {
        Ok(n) if (1..=1000).contains(&n) => Ok(n),
        _ => Err(format!("bad {key} \"{}\": use 1 to 1000", show(s))),
    }
}

/// `pass=0,2` or `pass=0-2,5`: exit codes 0..=255.
fn parse_codes(s: &str) -> Result<Vec<i32>, String> {
    let bad = || format!("bad pass \"{}\": use exit codes like 0,2 or 0-3", show(s));
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u8 = a.trim().parse().map_err(|_| bad())?;
        let b: u8 = b.trim().parse().map_err(|_| bad())?;
        if a > b {
            return Err(bad());
        }
        out.extend((a..=b).map(i32::from));
    }
    out.sort_unstable();
    out.dedup();
    Ok(out)
}

/// `expect=200-399,404`: inclusive status ranges 100..=599.
fn parse_statuses(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let bad = || format!("bad expect \"{}\": use statuses like 200-399,404", show(s));
    let mut out = Vec::new();
    for part in s.split(',') {
        let (a, b) = match part.split_once('-') {
            Some((a, b)) => (a, b),
            None => (part, part),
        };
        let a: u16 = a.trim().parse().map_err(|_| bad())?;
        let b: u16 = b.trim().parse().map_err(|_| bad())?;
        if !(100..=599).contains(&a) || !(100..=599).contains(&b) || a > b {
            return Err(bad());
        }
        out.push((a, b));
    }
    Ok(out)
}

fn parse_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.len() > 2048 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "bad http path \"{}\": must start with / and contain no spaces or control characters",
            show(s)
        ));
    }
    Ok(s.to_string())
}

/// `\r \n \t \0 \\ \xNN`; other bytes as they are.
pub fn unescape(s: &str) -> Result<Vec<u8>, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while let Some(&c) = b.get(i) {
        if c != b'\\' {
            out.push(c);
            i += 1;
            continue;
        }
        let e = b.get(i + 1).copied();
        i += 2;
        match e {
            Some(b'r') => out.push(b'\r'),
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'0') => out.push(0),
            Some(b'\\') => out.push(b'\\'),
            Some(b'x') => {
                let hex = b
                    .get(i..i + 2)
                    .and_then(|h| std::str::from_utf8(h).ok())
                    .and_then(|h| u8::from_str_radix(h, 16).ok());
                match hex {
                    Some(v) => out.push(v),
                    None => return Err(format!("bad \\x escape in \"{}\"", show(s))),
                }
                i += 2;
            }
            _ => {
                return Err(format!(
                    "bad escape in \"{}\": use \\r \\n \\t \\0 \\\\ \\xNN",
                    show(s)
                ));
            }
        }
    }
    Ok(out)
}

/// One word of a command line while splitting.
struct Word {
    text: String,
    /// Any character outside quotes.
    any_unquoted: bool,
    /// A shell metacharacter outside quotes.
    special: Option<char>,
}

/// Split a command on whitespace with simple '..' / ".." quoting, drop
/// trailing redirections to /dev/null, reject other shell syntax.
fn parse_command(s: &str) -> Result<Vec<String>, String> {
    let sh_hint = "; run a shell explicitly: command=/bin/sh -c '...'";
    let mut words: Vec<Word> = Vec::new();
    let mut cur: Option<Word> = None;
    let mut quote: Option<char> = None;
    for c in s.chars() {
        if let Some(q) = quote {
            if c == q {
                quote = None;
            } else {
                cur.get_or_insert_with(new_word).text.push(c);
            }
            continue;
        }
        match c {
            '\'' | '"' => {
                quote = Some(c);
                cur.get_or_insert_with(new_word);
            }
            c if c.is_whitespace() => {
                if let Some(w) = cur.take() {
                    words.push(w);
                }
            }
            c => {
                let w = cur.get_or_insert_with(new_word);
                w.any_unquoted = true;
                if w.special.is_none() && "|;&$`<>()\\*?~".contains(c) {
                    w.special = Some(c);
                }
                w.text.push(c);
            }
        }
    }
    if quote.is_some() {
        return Err(format!("unterminated quote in command \"{}\"", show(s)));
    }
    if let Some(w) = cur.take() {
        words.push(w);
    }
    // Trailing redirections: our checks' output goes nowhere anyway.
    while let Some(w) = words.last() {
        let t = w.text.as_str();
        let is_redir = w.any_unquoted
            && matches!(
                t,
                ">/dev/null"
                    | "1>/dev/null"
                    | "2>/dev/null"
                    | "2>&1"
                    | "&>/dev/null"
                    | ">&/dev/null"
            );
        if !is_redir {
            break;
        }
        words.pop();
    }
    if let Some(w) = words.iter().find(|w| w.special.is_some()) {
        return Err(format!(
            "shell syntax '{}' in command \"{}\": commands run without a shell{sh_hint}",
            w.special.unwrap_or('?'),
            show(s)
        ));
    }
    let argv: Vec<String> = words.into_iter().map(|w| w.text).collect();
    let Some(prog) = argv.first() else {
        return Err("empty command=".into());
    };
    if !prog.starts_with('/') {
        return Err(format!(
            "command \"{}\" needs an absolute path (there is no PATH search)",
            show(prog)
        ));
    }
    for a in &argv {
        check_placeholders(a)?;
        if a.contains('\0') {
            return Err("NUL byte in command".into());
        }
    }
    if argv.len() > 256 {
        return Err("command has more than 256 arguments".into());
    }
    Ok(argv)
}

fn new_word() -> Word {
    Word {
        text: String::new(),
        any_unquoted: false,
        special: None,
    }
}

fn check_placeholders(a: &str) -> Result<(), String> {
    let mut it = a.chars();
    while let Some(c) = it.next() {
        if c == '%' {
            match it.next() {
                Some('H' | 'P' | 'G' | 'C' | '%') => {}
                _ => {
                    return Err(format!(
                        "bad placeholder in \"{}\": use %H %P %G %C or %%",
                        show(a)
                    ));
                }
            }
        }
    }
    Ok(())
}

/// User text shown in an error: control characters escaped, length capped.
fn show(s: &str) -> String {
    let mut out: String = s.chars().take(80).flat_map(char::escape_debug).collect();
    if s.chars().count() > 80 {
        out.push_str("...");
    }
    out
}

#[cfg(test)]
mod tests;
