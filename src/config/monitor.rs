//! The resolved monitoring spec (`-m` or the config file's `monitor:`).
//! Plain data; `monitor_spec` parses balance.fm's `-m` grammar into it.

use std::time::Duration;

/// Default probe interval.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(2);
/// balance.fm's monitor interval: the default of a `-m` spec written in
/// balance.fm's grammar, so swapping the binary keeps the probe load.
pub(crate) const BALANCE_FM_INTERVAL: Duration = Duration::from_secs(60);

/// Shortest and longest default check timeout.
pub(crate) const CHECK_TIMEOUT_MIN: Duration = Duration::from_millis(500);
pub(crate) const CHECK_TIMEOUT_MAX: Duration = Duration::from_secs(2);

/// A check's timeout when none is given: its interval, kept within
/// 500 ms..2 s. Not the client connect timeout (`-t`, 5 s): a hung server
/// must go down in about `fall` × this, and a healthy one answers a probe
/// in milliseconds.
pub(crate) fn default_check_timeout(interval: Duration) -> Duration {
    interval.clamp(CHECK_TIMEOUT_MIN, CHECK_TIMEOUT_MAX)
}

#[derive(Debug, Clone, PartialEq)]
pub struct MonitorSpec {
    /// Run in order for each channel; the first failure stops the chain.
    pub(crate) checks: Vec<Check>,
    pub(crate) interval: Duration,
    /// Channels that are down or have a failure streak are probed this
    /// often when it is shorter than `interval` (`None`: every `interval`).
    /// A balance.fm-form spec gets balance.fm's 60 s for healthy channels
    /// and 2 s here, so detection is not slower than with 2 s throughout.
    pub(crate) suspect_interval: Option<Duration>,
    pub(crate) rise: u32,
    pub(crate) fall: u32,
    /// Spread probe starts by up to this much.
    pub(crate) jitter: Duration,
    pub(crate) noenable: bool,
    pub(crate) nodisable: bool,
    /// `on-down=shutdown`: close a channel's live sessions when it goes down.
    pub(crate) on_down_shutdown: bool,
    /// `on-up=shutdown-backup`: close backup-group sessions when a group-0
    /// channel comes back up.
    pub(crate) on_up_shutdown_backup: bool,
    /// `fence` / `nofence`: reset the sessions of the group traffic leaves
    /// before the next group takes a client (`None`: the listener decides,
    /// see [`MonitorSpec::guards_writer`]).
    pub(crate) fence: Option<bool>,
}

impl MonitorSpec {
    /// Some check judges a MySQL writer's role or replication (`mysql`
    /// with `read_only=0`, or `max_lag=` without `read_only=1`): the groups
    /// are one writer and its replicas, so moving traffic fences the old
    /// writer by default. A pool of readers (`read_only=1`) is not.
    pub(crate) fn guards_writer(&self) -> bool {
        self.checks.iter().any(|c| {
            matches!(
                &c.probe,
                Probe::Mysql { read_only, max_lag, .. }
                    if *read_only == Some(false) || (max_lag.is_some() && *read_only != Some(true))
            )
        })
    }

    /// Some check watches replication (`mysql` with `max_lag=`): backups
    /// are re-verified before they take over.
    pub(crate) fn watches_replication(&self) -> bool {
        self.checks.iter().any(|c| {
            matches!(
                c.probe,
                Probe::Mysql {
                    max_lag: Some(_),
                    ..
                }
            )
        })
    }
}

impl Default for MonitorSpec {
    fn default() -> Self {
        MonitorSpec {
            checks: Vec::new(),
            interval: DEFAULT_INTERVAL,
            suspect_interval: None,
            rise: 2,
            fall: 3,
            jitter: Duration::ZERO,
            noenable: false,
            nodisable: false,
            on_down_shutdown: false,
            on_up_shutdown_backup: false,
            fence: None,
        }
    }
}

/// One check action and its timeout.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Check {
    pub(crate) probe: Probe,
    /// `None`: [`default_check_timeout`].
    pub(crate) timeout: Option<Duration>,
}

/// What a check does. A new kind is a variant here with its [name](Probe::name),
/// its grammar (`monitor_spec`, the YAML `raw` model) and its module under
/// `monitor::probe`.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Probe {
    Connect,
    /// Run a program (argv; `-m` gives `/bin/sh -c LINE`); pass when the
    /// exit code is in `pass`.
    Command {
        argv: Vec<String>,
        pass: Vec<i32>,
    },
    Http {
        path: String,
        port: Option<u16>,
        host: Option<String>,
        /// Inclusive status ranges; default 200-399.
        expect: Vec<(u16, u16)>,
        body: Option<String>,
    },
    Mysql {
        user: Option<String>,
        /// From `password_file=` (read when the config is built: at start
        /// and on reload).
        password: Option<Password>,
        /// `read_only=0|1`: the server's `@@read_only` must match.
        read_only: Option<bool>,
        /// `max_lag=D`: a replica lagging more, or with replication
        /// stopped or broken, fails; a backup that has not applied what it
        /// received is catching up (not eligible, not down).
        max_lag: Option<Duration>,
    },
    /// `redis`: `AUTH` with the password if one is given, `PING`, then
    /// (with `role`) `ROLE` or `INFO replication` must report that role.
    Redis {
        password: Option<Password>,
        role: Option<RedisRole>,
    },
    SendExpect {
        send: Vec<u8>,
        expect: Vec<u8>,
    },
}

impl Check {
    /// The action's name: its `-m` key and the prefix of its reasons.
    pub(crate) fn name(&self) -> &'static str {
        self.probe.name()
    }
}

impl Probe {
    /// The action's `-m` key.
    pub(crate) fn name(&self) -> &'static str {
        match self {
            Probe::Connect => "connect",
            Probe::Command { .. } => "command",
            Probe::Http { .. } => "http",
            Probe::Mysql { .. } => "mysql",
            Probe::Redis { .. } => "redis",
            Probe::SendExpect { .. } => "send",
        }
    }
}

/// The role a `redis` check requires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum RedisRole {
    Master,
    Replica,
}

impl RedisRole {
    /// `master`, or `replica` (`slave`, Redis's older word, too).
    pub(crate) fn parse(s: &str) -> Option<RedisRole> {
        match s {
            "master" => Some(RedisRole::Master),
            "replica" | "slave" => Some(RedisRole::Replica),
            _ => None,
        }
    }
}

/// A monitor password: never shown (Debug prints `***`).
#[derive(Clone, PartialEq, Eq)]
pub(crate) struct Password(pub(crate) String);

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Password(***)")
    }
}

/// Longest accepted password file.
const MAX_PASSWORD: u64 = 1024;

/// Read a `password_file=`: the first line, without its line end. Refused
/// when group or others may read it (it holds a secret) or it is not a
/// small regular file.
pub(crate) fn read_password_file(path: &std::path::Path) -> Result<Password, String> {
    use std::os::unix::fs::PermissionsExt;
    let shown = path.display();
    let meta = std::fs::metadata(path).map_err(|e| format!("password_file {shown}: {e}"))?;
    if !meta.is_file() || meta.len() > MAX_PASSWORD {
        return Err(format!(
            "password_file {shown}: not a regular file of at most {MAX_PASSWORD} bytes"
        ));
    }
    if meta.permissions().mode() & 0o077 != 0 {
        return Err(format!(
            "password_file {shown} is readable by group or others: chmod 600 it"
        ));
    }
    let text = std::fs::read_to_string(path).map_err(|e| format!("password_file {shown}: {e}"))?;
    let line = text.lines().next().unwrap_or_default();
    if line.contains('\0') {
        return Err(format!("password_file {shown}: NUL byte in the password"));
    }
    Ok(Password(line.to_string()))
}
