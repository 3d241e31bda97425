//! The answer to one control command, as the session sends it back.

/// The answer to one command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Reply {
    pub(crate) lines: Vec<String>,
    pub(crate) ok: bool,
    /// The session ends after this reply (`quit`, `kill`).
    pub(crate) close: bool,
}

impl Reply {
    pub(crate) fn ok(lines: Vec<String>) -> Reply {
        Reply {
            lines,
            ok: true,
            close: false,
        }
    }
    pub(crate) fn line(s: impl Into<String>) -> Reply {
        Reply::ok(vec![s.into()])
    }
    pub(crate) fn err(s: impl Into<String>) -> Reply {
        Reply {
            lines: vec![s.into()],
            ok: false,
            close: false,
        }
    }
    /// Success, and the session ends.
    pub(crate) fn bye(lines: Vec<String>) -> Reply {
        Reply {
            lines,
            ok: true,
            close: true,
        }
    }
}
