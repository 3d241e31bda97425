//! `balance`: a Layer-4 TCP load balancer with failover groups.
//!
//! Map of the modules:
//! - [`cli`]: balance's command line → [`config::Config`] (two stages).
//! - [`config`]: the resolved model shared by every input.
//! - [`pool`]: groups, channels, states, counters, selection.
//! - [`health`]: the rise/fall state machine.
//! - [`service`]: one listener at runtime (config + pool + counters).
//! - [`listener`]: binding and the accept loop.
//! - [`proxy`]: one connection: connect with failover, then the relay.
//! - [`monitor`]: health checks feeding the pool's rise/fall.
//! - [`control`]: the control socket and the `-i`/`-c` client.
//! - [`app`]: bind, daemonize, run, shut down.
//! - [`logging`]: stderr, file or syslog.
//! - [`registry`]: the live services snapshot (written by [`app`] only).
//! - [`render`]: read-only views of the live state and their texts.
//! - [`metrics`]: Prometheus text on `GET /metrics`.
//! - [`exit`]: every exit code.
//! - [`dns`]: periodic re-resolution of backend host names.
//! - [`sys`]: the only `unsafe`: socket options, fork, syslog, rlimits.
#![deny(unsafe_code)]

pub mod app;
pub mod cli;
pub mod config;
pub mod control;
pub mod dns;
pub mod exit;
pub mod health;
pub mod listener;
pub mod logging;
pub mod metrics;
pub mod monitor;
pub mod pool;
pub mod proxy;
pub mod registry;
pub mod render;
pub mod service;
pub mod sys;
