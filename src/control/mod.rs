//! Runtime control: a Unix socket per listener speaking balance.fm's
//! interactive commands, the `-i`/`-c` client, and the state file.
//!
//! - [`paths`]: where sockets live (SPEC §5).
//! - [`commands`]: one line → one [`commands::Command`] (pure).
//! - [`exec`]: running a command against a listener; `show` formats.
//! - [`server`]: the socket, its bounds and its framing.
//! - [`client`]: `balance -c CMD PORT` and `balance -i PORT`.
//! - [`state`]: `--state-file`, written atomically after every change.
//!
//! The current group (`group N`) is per session, kept by the server; every
//! answer carries it so the shell can show `balance[N] `.

pub mod client;
pub mod commands;
pub mod exec;
pub mod paths;
pub mod server;
pub mod state;

pub use server::{ControlHandle, spawn};
pub use state::StateFile;
