//! `balance`: a Layer-4 TCP load balancer with failover groups.
//!
//! Map of the modules, top-down (a module imports only modules listed
//! below it, or its own children; there are no import cycles):
//! - [`app`]: boot (bind, preflight, daemonize, privileges, runtime), the
//!   supervisor (reload plans) and signals. The only writer of [`registry`].
//! - [`control`]: the control socket (one handler per command), the state
//!   file and the `-i`/`-c` client. Reaches the supervisor only through a
//!   `control::reload` handle.
//! - [`fleet`]: fleet mode: one prober per service elected through etcd,
//!   its verdicts followed by the other instances (the etcd client too).
//! - [`operator`]: every operator change ([`operator::OperatorOp`]) and
//!   the one function that applies it; channel and group keys. The
//!   control socket and fleet mode only parse into it and render.
//! - [`cli`]: balance's argv → raw values → the [`config`] builder.
//! - [`metrics`]: the `GET /metrics` responder.
//! - [`dns`]: periodic re-resolution of backend names; reports through
//!   [`service::Service::report`].
//! - [`render`]: read-only views of the live state and every text made from
//!   them (`show`, `show json`, MRTG, Prometheus, the state file).
//! - [`registry`]: the live services snapshot.
//! - [`listener`]: the accept loop.
//! - [`proxy`]: one connection: connect with failover, then the relay
//!   (`half` shared by the buffered and splice pumps).
//! - [`monitor`]: the probe scheduler and one file per probe kind.
//! - [`service`]: one listener at runtime; `report` is the one place that
//!   reacts to a health outcome.
//! - [`connlog`]: the connection log: a record per connection, its line
//!   (`tcplog`, JSON), one writer thread per target behind a bounded
//!   queue (a full one drops and counts).
//! - [`route`]: routing by key (TLS server name, destination or client
//!   address): the ClientHello parser, the route table (inline map, file)
//!   and the directory lookup with its cache; no state of other modules.
//! - [`pool`]: channels (state, counters), pure selection, the reload merge.
//! - [`health`]: rise/fall, typed reasons and outcomes.
//! - [`logging`]: stderr, file or syslog.
//! - [`slots`]: places for slow peers (control sessions, scrapes) that
//!   prefer the newest: a full table evicts the longest-waiting holder.
//! - [`sys`]: the only `unsafe`: socket options, splice, fork, syslog, rlimits,
//!   the allocator, `pow` (so that libm.so is not loaded).
//! - [`config`]: the resolved model, the one listener builder, every
//!   grammar (channel, bind, durations, `-m`) and the YAML file.
//! - [`exit`]: every exit code.
//! - [`atomic_enum`]: an enum kept in an atomic, encoded through one
//!   exhaustive list per enum.
//! - [`proxy_header`]: the PROXY protocol header, parsed and encoded
//!   (pure; the proxy and the monitor's checks both use it).
#![deny(unsafe_code)]
#![warn(unreachable_pub)]
#![warn(missing_docs)]

mod app;
mod atomic_enum;
mod cli;
mod config;
mod connlog;
mod control;
mod dns;
mod exit;
mod fleet;
mod health;
mod listener;
mod logging;
mod metrics;
mod monitor;
mod operator;
mod pool;
mod proxy;
mod proxy_header;
mod registry;
mod render;
mod route;
mod service;
mod slots;
mod sys;

// The API: exactly what `src/main.rs`, the fuzz targets
// (`fuzz/fuzz_targets/`) and the integration tests (`tests/`) use. Every
// other item is `pub(crate)` (or narrower); `unreachable_pub` keeps it so.

/// Run the listeners of a command line (main).
pub use app::run;
/// Run or check (`--check`) a configuration file (main).
pub use app::run_file;
/// Tell the process that started this one by `upgrade` why it failed (main).
pub use app::upgrade::report_failure;
/// Parse balance's argv (main; fuzz target `cli`).
pub use cli::parse as parse_args;
/// What [`parse_args`] returns: a text to print or an [`Invocation`] (main).
pub use cli::{Invocation, Parsed};
/// The control client, `-i`/`-c` (main).
pub use control::client::run as run_client;
/// Every exit code (main).
pub use exit::Exit;
/// The global allocator (main).
pub use sys::alloc::PoolAlloc;

/// Every parser of outside input, one module per fuzz target
/// (`fuzz/fuzz_targets/NAME.rs`).
pub mod parsers {
    /// Fuzz target `config_parse`: the YAML configuration file.
    pub mod config_file {
        pub use crate::config::file::{MAX_FILE_BYTES, parse};
        pub use crate::config::overlay::Overlay;
    }
    /// Fuzz target `control_cmd`: one control-socket command line.
    pub mod control_cmd {
        pub use crate::control::commands::parse;
    }
    /// Fuzz target `fleet_values`: the values fleet mode reads from etcd.
    pub mod fleet_values {
        pub use crate::fleet::channels::Reg;
        pub use crate::fleet::ops::Op;
        pub use crate::fleet::switch::{Ack, Record};
        pub use crate::fleet::verdict::{Leader, Verdict};
    }
    /// Fuzz target `monitor_spec`: the `-m` / `monitor:` grammar.
    pub mod monitor_spec {
        pub use crate::config::monitor_spec::parse;
    }
    /// Fuzz targets `probe_*`: the replies the health checks read.
    pub mod probe {
        pub use crate::monitor::probe::MAX_REPLY;
        /// Fuzz target `probe_http`.
        pub mod http {
            pub use crate::monitor::probe::http::{check_reply, parse_status_line, reply_complete};
        }
        /// Fuzz target `probe_mysql`.
        pub mod mysql {
            pub use crate::monitor::probe::mysql::{error_reason, parse_greeting};
        }
        /// Fuzz target `probe_redis`.
        pub mod redis {
            pub use crate::monitor::probe::redis::parse;
        }
        /// Fuzz target `probe_sendexpect`.
        pub mod sendexpect {
            pub use crate::monitor::probe::sendexpect::judge;
        }
    }
    /// Fuzz target `proxy_header`: the PROXY protocol header.
    pub mod proxy_header {
        pub use crate::proxy_header::{Addrs, MAX_HEADER, Parsed, Version, encode, parse};
    }
    /// Fuzz target `sni`: the TLS ClientHello's server name.
    pub mod sni {
        pub use crate::route::sni::{Peek, parse};
    }
    /// Fuzz target `state_file`: the control state file.
    pub mod state_file {
        pub use crate::control::state::parse_text;
    }
}

/// balance's etcd client and fleet settings, for the integration tests
/// that drive etcd directly (`tests/common/etcd.rs`, `tests/fleet_etcd.rs`,
/// `tests/fleet.rs`, `tests/common/dns.rs`).
pub mod etcd {
    pub use crate::config::fleet::{FleetConfig, TlsFiles};
    pub use crate::fleet::access;
    pub use crate::fleet::etcd::srv::query as srv_query;
    pub use crate::fleet::etcd::{
        Access, Client, EtcdError, Event, Kv, Liveness, MAX_VALUE, Watch, refused_values,
    };
}
