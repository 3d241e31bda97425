//! The values inside a `-m` spec: exit-code and status lists, HTTP paths,
//! `send=`/`expect=` escapes and `command=` argv splitting (no shell).

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
pub(super) fn parse_command(s: &str) -> Result<Vec<String>, String> {
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
        return Err(format!("unterminated quote in command {}", quoted(s)));
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
            "shell syntax '{}' in command {}: commands run without a shell{sh_hint}",
            w.special.unwrap_or('?'),
            quoted(s)
        ));
    }
    let argv: Vec<String> = words.into_iter().map(|w| w.text).collect();
    let Some(prog) = argv.first() else {
        return Err("empty command=".into());
    };
    if !prog.starts_with('/') {
        return Err(format!(
            "command {} needs an absolute path (there is no PATH search)",
            quoted(prog)
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
                        "bad placeholder in {}: use %H %P %G %C or %%",
                        quoted(a)
                    ));
                }
            }
        }
    }
    Ok(())
}
