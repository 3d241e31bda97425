//! Names of groups and channels: the grammar every front end shares
//! (YAML `name:`, control commands, the state file) and the stable
//! defaults given where the configuration names nothing.
//!
//! A name is 1-64 of `A-Z a-z 0-9 . _ -`, starts with a letter, a digit
//! or `_`, and is not all digits (a number is balance.fm's index), so it never contains the `/` of HAProxy's
//! `backend/server`, the `;` that joins commands, the `:` of `G:C` or
//! `host:port`, nor white space. Names are unique per listener: groups
//! among groups, channels among channels.
//!
//! Defaults, the same for the same configuration at every start and
//! reload: group N is `groupN`; a channel is `HOST-PORT` (a character
//! outside the grammar, such as an IPv6 address's `:`, becomes `_`; the
//! host is cut so the name fits 64), and the second channel that would get
//! the same default gets `-2` appended, the third `-3`... Names given in
//! the configuration are taken first.

use std::collections::HashSet;

use super::{GroupConfig, Host};

/// The longest name.
pub(crate) const MAX_NAME: usize = 64;

/// Why `s` cannot be a group or channel name (None: it can).
pub(crate) fn invalid(s: &str) -> Option<&'static str> {
    if s.is_empty() || s.len() > MAX_NAME {
        return Some("use 1-64 characters");
    }
    if !s.bytes().all(allowed) {
        return Some("use A-Z a-z 0-9 . _ -");
    }
    if s.starts_with(['-', '.']) {
        return Some("start with a letter, a digit or _");
    }
    if s.bytes().all(|b| b.is_ascii_digit()) {
        return Some("a name is not all digits (a number is an index)");
    }
    None
}

/// Whether `s` is a valid name.
pub(crate) fn is_name(s: &str) -> bool {
    invalid(s).is_none()
}

fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-')
}

/// The default name of group `index`.
pub(crate) fn default_group(index: usize) -> String {
    format!("group{index}")
}

/// The default name of a channel at `host:port` (before de-duplication).
pub(crate) fn default_channel(host: &Host, port: u16) -> String {
    let h = match host {
        Host::Ip(ip) => ip.to_string(),
        Host::Name(n) => n.clone(),
    };
    let suffix = format!("-{port}");
    let mut h: String = h
        .bytes()
        .map(|b| if allowed(b) { b as char } else { '_' })
        .collect();
    // Room for the port and a de-duplicating `-N`.
    h.truncate(MAX_NAME - suffix.len() - 8);
    h + &suffix
}

/// `base`, or `base-2`, `base-3`... whichever `taken` does not hold yet
/// (then taken).
pub(crate) fn unique(base: String, taken: &mut HashSet<String>) -> String {
    if taken.insert(base.clone()) {
        return base;
    }
    (2..)
        .map(|n| format!("{base}-{n}"))
        .find(|n| taken.insert(n.clone()))
        .unwrap_or(base)
}

/// What is wrong with the names of one listener's groups.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum NameError {
    #[error("bad {what} name {}: {why}", crate::config::quote(name))]
    Bad {
        what: &'static str,
        name: String,
        why: &'static str,
    },
    #[error("{what} name {} is used twice", crate::config::quote(name))]
    Duplicate { what: &'static str, name: String },
}

/// Check the names given and fill in the defaults (see the module doc).
pub(crate) fn fill(groups: &mut [GroupConfig]) -> Result<(), NameError> {
    let mut gnames = HashSet::new();
    let mut cnames = HashSet::new();
    for g in groups.iter() {
        given("group", &g.name, &mut gnames)?;
        for c in &g.channels {
            given("channel", &c.name, &mut cnames)?;
        }
    }
    for (gi, g) in groups.iter_mut().enumerate() {
        if g.name.is_empty() {
            g.name = unique(default_group(gi), &mut gnames);
        }
        for c in g.channels.iter_mut().filter(|c| c.name.is_empty()) {
            c.name = unique(default_channel(&c.host, c.port), &mut cnames);
        }
    }
    Ok(())
}

fn given(what: &'static str, name: &str, taken: &mut HashSet<String>) -> Result<(), NameError> {
    if name.is_empty() {
        return Ok(());
    }
    if let Some(why) = invalid(name) {
        return Err(NameError::Bad {
            what,
            name: name.to_string(),
            why,
        });
    }
    if !taken.insert(name.to_string()) {
        return Err(NameError::Duplicate {
            what,
            name: name.to_string(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests;
