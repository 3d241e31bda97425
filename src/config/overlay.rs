//! The command line's global options as an overlay: every option is an
//! `Option`, `Some` exactly when the flag was given, so a given flag always
//! wins over the config file, even when it equals the default.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use super::{FleetConfig, Global, HaproxySocket, LogFormat};

/// Global options from the command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Overlay {
    /// `-f` (a command-line-only switch).
    pub(crate) foreground: bool,
    /// `-d` (a command-line-only switch).
    pub(crate) debug: bool,
    /// `--no-splice` (a command-line-only switch).
    pub(crate) no_splice: bool,
    pub(crate) log_format: Option<LogFormat>,
    pub(crate) log_file: Option<PathBuf>,
    pub(crate) pidfile: Option<PathBuf>,
    pub(crate) grace: Option<Duration>,
    pub(crate) max_conns: Option<usize>,
    pub(crate) threads: Option<usize>,
    pub(crate) control: Option<PathBuf>,
    pub(crate) state_file: Option<PathBuf>,
    pub(crate) user: Option<String>,
    pub(crate) metrics: Option<SocketAddr>,
    /// `--fleet ENDPOINTS`: replaces the file's endpoints (or turns fleet
    /// mode on with the defaults).
    pub(crate) fleet: Option<Vec<String>>,
    /// `--haproxy-socket PATH`: replaces the file's path (its mode and
    /// group stay).
    pub(crate) haproxy_socket: Option<PathBuf>,
}

impl Overlay {
    /// `base` with every given option replaced.
    pub(crate) fn over(&self, base: Global) -> Global {
        let o = self.clone();
        Global {
            foreground: o.foreground || base.foreground,
            debug: o.debug || base.debug,
            no_splice: o.no_splice || base.no_splice,
            log_format: o.log_format.unwrap_or(base.log_format),
            log_file: o.log_file.or(base.log_file),
            pidfile: o.pidfile.or(base.pidfile),
            grace: o.grace.unwrap_or(base.grace),
            max_conns: o.max_conns.or(base.max_conns),
            threads: o.threads.unwrap_or(base.threads),
            control: o.control.or(base.control),
            state_file: o.state_file.or(base.state_file),
            user: o.user.or(base.user),
            metrics: o.metrics.or(base.metrics),
            resolve_interval: base.resolve_interval,
            fleet: match (o.fleet, base.fleet) {
                (Some(endpoints), Some(f)) => Some(FleetConfig {
                    endpoints,
                    discovery_srv: None,
                    ..f
                }),
                (Some(endpoints), None) => Some(FleetConfig::new(endpoints)),
                (None, f) => f,
            },
            haproxy_socket: match (o.haproxy_socket, base.haproxy_socket) {
                (Some(path), Some(h)) => Some(HaproxySocket { path, ..h }),
                (Some(path), None) => Some(HaproxySocket::at(path)),
                (None, h) => h,
            },
        }
    }

    /// Daemonizing changes to /: make the relative paths given absolute
    /// (a reload reads the overlay again after that).
    pub(crate) fn absolutize(&mut self) {
        for p in [
            &mut self.pidfile,
            &mut self.log_file,
            &mut self.state_file,
            &mut self.control,
            &mut self.haproxy_socket,
        ]
        .into_iter()
        .flatten()
        {
            if let Ok(abs) = std::path::absolute(&*p) {
                *p = abs;
            }
        }
    }
}

#[cfg(test)]
mod tests;
