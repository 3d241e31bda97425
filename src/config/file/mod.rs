//! `balance --config FILE`: YAML → the same [`Config`] the command line
//! produces. Parsing uses `serde-saphyr` (pure Rust, no panics, budgets on
//! aliases, depth and events) with `deny_unknown_fields` everywhere; values
//! are checked while they are deserialized so an error carries the line and
//! column of the offending node. Cross-field rules (duplicate names and
//! binds, self-loops) run afterwards with spans kept for that purpose.
//! Every error is one line: `FILE: line L column C: key: why`.
//!
//! - `raw`: the serde model; `scalars`: its checked leaf values;
//! - `convert`: raw → [`Config`] through the shared listener builder.

use std::path::Path;

use serde_saphyr::Location;

use super::error::{ConfigError, ParseError};
use super::{Config, Overlay};

mod convert;
mod demand;
mod raw;
mod route;
mod scalars;

/// Files larger than this are refused before parsing (counted on the
/// actual read, not on the size `stat` reports).
pub const MAX_FILE_BYTES: u64 = 1 << 20;

/// Read and parse a config file; `overlay` holds the command line's global
/// options, which win over the file's where they were given.
pub(crate) fn load(path: &Path, overlay: &Overlay) -> Result<Config, ConfigError> {
    let read = |source| ConfigError::Read {
        path: path.to_path_buf(),
        source,
    };
    // Not a FIFO (the open would block, the read never end) nor a device
    // (`/dev/zero` never ends): a regular file, read up to the cap.
    let Some(buf) = crate::sys::file::read_capped(path, MAX_FILE_BYTES).map_err(read)? else {
        return Err(ConfigError::TooLarge {
            path: path.to_path_buf(),
        });
    };
    let text = String::from_utf8(buf).map_err(|_| ConfigError::NotUtf8 {
        path: path.to_path_buf(),
    })?;
    parse(&text, overlay).map_err(|e| ConfigError::Invalid {
        path: path.to_path_buf(),
        detail: e.0,
    })
}

/// Parse config text (see [`load`]).
pub fn parse(text: &str, overlay: &Overlay) -> Result<Config, ParseError> {
    let raw: raw::RawFile = serde_saphyr::from_str_with_options(text, options())
        .map_err(|e| ParseError(saphyr_err(text, e)))?;
    convert::build(raw, overlay).map_err(ParseError)
}

fn options() -> serde_saphyr::Options {
    let mut budget = serde_saphyr::Budget::default();
    budget.max_reader_input_bytes = Some(MAX_FILE_BYTES as usize);
    budget.max_events = 200_000;
    budget.max_aliases = 1_000;
    budget.max_anchors = 1_000;
    budget.max_depth = 32;
    budget.max_documents = 1;
    budget.max_nodes = 100_000;
    budget.max_total_scalar_bytes = MAX_FILE_BYTES as usize;
    let mut limits = serde_saphyr::options::AliasLimits::default();
    limits.max_total_replayed_events = 10_000;
    limits.max_replay_stack_depth = 8;
    limits.max_alias_expansions_per_anchor = 100;
    let mut o = serde_saphyr::Options::default();
    o.budget = Some(budget);
    o.alias_limits = limits;
    o
}

/// serde-saphyr's error → one line: position, the key found on that line
/// of the source, then the message.
fn saphyr_err(text: &str, e: serde_saphyr::Error) -> String {
    let full = e.without_snippet().to_string();
    let mut msg = full
        .lines()
        .next()
        .unwrap_or("invalid YAML")
        .trim()
        .to_string();
    let Some(loc) = e.location().filter(|l| *l != Location::UNKNOWN) else {
        return msg;
    };
    if let Some(i) = msg.rfind(" at line ") {
        msg.truncate(i);
    }
    // An unknown field or variant names itself: the key before it on the
    // line would be a wrong prefix.
    let names_itself = msg.starts_with("unknown field") || msg.starts_with("unknown variant");
    let key = key_at(text, loc)
        .filter(|k| !names_itself && !msg.contains(&format!("`{k}`")))
        .map(|k| format!("{k}: "))
        .unwrap_or_default();
    format!("{}{key}{msg}", convert::at(loc))
}

/// The mapping key nearest before (line, column): `key:` on that line.
fn key_at(text: &str, loc: Location) -> Option<String> {
    let line = text
        .lines()
        .nth(usize::try_from(loc.line()).ok()?.checked_sub(1)?)?;
    let col = usize::try_from(loc.column()).unwrap_or(usize::MAX);
    let upto: String = line.chars().take(col.saturating_sub(1)).collect();
    let upto = if upto.trim().is_empty() {
        line
    } else {
        upto.as_str()
    };
    let mut best = None;
    let b = upto.as_bytes();
    for (i, _) in upto.match_indices(':') {
        let start = b[..i]
            .iter()
            .rposition(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
            .map_or(0, |p| p + 1);
        if start < i && b.get(i + 1).is_none_or(|c| *c == b' ') {
            best = Some(upto[start..i].to_string());
        }
    }
    best
}

#[cfg(test)]
mod tests;
