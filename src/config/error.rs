//! The typed errors of the config pipeline. Display texts are the one-line
//! messages users see (`FILE: line L column C: key: why`, `bad channel
//! "db1:80:x": maxc is not a number`); the variants are what a caller acts on.

use std::path::PathBuf;

/// How many characters of a user token an error line repeats.
const QUOTE_MAX: usize = 64;

/// A user token quoted for a one-line error: in double quotes, control
/// characters escaped, cut to 64 characters with "..." (a 100 KB argument
/// gives a short message). Every error that quotes a token uses this.
pub(crate) fn quote(tok: &str) -> String {
    let mut s = String::with_capacity(QUOTE_MAX + 8);
    s.push('"');
    s.extend(tok.chars().take(QUOTE_MAX).flat_map(char::escape_debug));
    if tok.chars().nth(QUOTE_MAX).is_some() {
        s.push_str("...");
    }
    s.push('"');
    s
}

/// A value that does not fit its grammar. The text names the token.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct BadValue(pub(crate) String);

/// Why a config file was refused.
#[derive(Debug, thiserror::Error)]
pub(crate) enum ConfigError {
    #[error("cannot read {}: {source}", path.display())]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{}: file is larger than 1 MiB", path.display())]
    TooLarge { path: PathBuf },
    #[error("{}: not UTF-8 text", path.display())]
    NotUtf8 { path: PathBuf },
    /// The text does not parse or validate; `detail` already carries the
    /// line, column and key where known.
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
}

/// Config text that does not parse or validate (no file name yet).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ParseError(pub(crate) String);

/// A channel name that resolves to a listener of this process.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("listener \"{listener}\": channel {channel} resolves to {addr}, {what}")]
pub(crate) struct ResolvedLoop {
    pub(crate) listener: String,
    pub(crate) channel: String,
    pub(crate) addr: std::net::SocketAddr,
    /// "the listener itself", or which other listener.
    pub(crate) what: String,
}

/// A channel that points at another listener of the same file.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error(
    "listener \"{listener}\": channel {channel} points at listener \"{other}\" ({bind}) of this process"
)]
pub(crate) struct CrossLoop {
    pub(crate) listener: String,
    pub(crate) channel: String,
    pub(crate) other: String,
    pub(crate) bind: std::net::SocketAddr,
}
