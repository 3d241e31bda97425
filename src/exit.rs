//! The process exit codes: every code `balance` exits with is a variant
//! here (sysexits.h where one fits). Only `main` turns one into an
//! [`ExitCode`]; the rest of the crate returns typed errors that carry one.

use std::process::ExitCode;

/// How the process ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Exit {
    /// Everything went through.
    Ok,
    /// The instance answered a control command with an error.
    Failure,
    /// A usage or configuration error (EX_USAGE).
    Usage,
    /// No instance answers on the control socket (EX_UNAVAILABLE).
    Unavailable,
    /// A runtime OS failure such as a port in use (EX_OSERR).
    OsErr,
}

impl Exit {
    /// The numeric exit status.
    pub(crate) const fn code(self) -> u8 {
        match self {
            Exit::Ok => 0,
            Exit::Failure => 1,
            Exit::Usage => 64,
            Exit::Unavailable => 69,
            Exit::OsErr => 71,
        }
    }
}

impl From<Exit> for ExitCode {
    fn from(e: Exit) -> ExitCode {
        ExitCode::from(e.code())
    }
}

#[cfg(test)]
mod tests;
