//! The values inside a `-m` spec: exit-code and status lists, HTTP paths,
//! `send=`/`expect=` escapes and the `command=` shell line.

use crate::config::error::quote as quoted;

/// `pass=0,2` or `pass=0-2,5`: exit codes 0..=255.
pub(super) fn parse_codes(s: &str) -> Result<Vec<i32>, String> {
    let bad = || format!("bad pass {}: use exit codes like 0,2 or 0-3", quoted(s));
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
pub(super) fn parse_statuses(s: &str) -> Result<Vec<(u16, u16)>, String> {
    let bad = || format!("bad expect {}: use statuses like 200-399,404", quoted(s));
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

pub(super) fn parse_path(s: &str) -> Result<String, String> {
    if !s.starts_with('/') || s.len() > 2048 || !s.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(format!(
            "bad http path {}: must start with / and contain no spaces or control characters",
            quoted(s)
        ));
    }
    Ok(s.to_string())
}

/// `\r \n \t \0 \\ \xNN`; other bytes as they are.
pub(super) fn unescape(s: &str) -> Result<Vec<u8>, String> {
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
                    None => return Err(format!("bad \\x escape in {}", quoted(s))),
                }
                i += 2;
            }
            _ => {
                return Err(format!(
                    "bad escape in {}: use \\r \\n \\t \\0 \\\\ \\xNN",
                    quoted(s)
                ));
            }
        }
    }
    Ok(out)
}

/// The shell balance.fm's `system()` runs, and so do we.
pub(super) const SHELL: &str = "/bin/sh";
/// Longest `command=` line.
const MAX_COMMAND: usize = 4096;

/// `command=LINE`: a shell command line, run as balance.fm ran it
/// (`system()`: `/bin/sh -c LINE`), so PATH lookup, redirections, `&&` and
/// pipes work. balance.fm's backslash escapes apply (`\n` `\t` ... are
/// control characters, any other `\X` is `X`); placeholders other than
/// `%H %P %G %C %%` stay as written, as in balance.fm.
pub(super) fn parse_command(s: &str) -> Result<Vec<String>, String> {
    let line = unescape_fm(s);
    if line.trim().is_empty() {
        return Err("empty command=".into());
    }
    if line.len() > MAX_COMMAND {
        return Err(format!("command longer than {MAX_COMMAND} bytes"));
    }
    if line.contains('\0') {
        return Err("NUL byte in command".into());
    }
    Ok(vec![SHELL.to_string(), "-c".to_string(), line])
}

/// balance.fm's `get_token` escapes (`\:` was already taken by the pair split).
fn unescape_fm(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    let mut it = s.chars();
    while let Some(c) = it.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match it.next() {
            Some('a') => out.push('\u{7}'),
            Some('b') => out.push('\u{8}'),
            Some('t') => out.push('\t'),
            Some('n') => out.push('\n'),
            Some('v') => out.push('\u{b}'),
            Some('f') => out.push('\u{c}'),
            Some('r') => out.push('\r'),
            Some(o) => out.push(o),
            None => {}
        }
    }
    out
}
