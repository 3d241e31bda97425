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

pub mod app;
pub mod atomic_enum;
pub mod cli;
pub mod config;
pub mod connlog;
pub mod control;
pub mod dns;
pub mod exit;
pub mod fleet;
pub mod health;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod operator;
pub mod pool;
pub mod proxy;
pub mod proxy_header;
pub mod registry;
pub mod render;
pub mod route;
pub mod service;
pub mod slots;
pub mod sys;
