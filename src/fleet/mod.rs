//! Fleet mode (`fleet:` / `--fleet`): the instances whose listeners have
//! the same name are one service; through etcd they elect one prober per
//! service, which runs the monitor as standalone balance does and
//! publishes each channel's verdict; every other instance follows those
//! verdicts (its monitor paused) through `Service::report`. Losing etcd
//! for longer than `fallback` makes an instance probe alone; it rejoins
//! when etcd is back. docs/fleet.md describes the key layout.
//!
//! - [`etcd`]: the v3 client (JSON gateway);
//! - [`elect`]: the role state machine (pure);
//! - [`verdict`]: the values in etcd and both ends of a verdict;
//! - `run`: one task per service: campaign, lead, follow, fall back.
//! - [`members`]: each instance's registration (`P/svc/NAME/members/ID`);
//! - [`fence`]: a fenced listener's moves wait until every live member
//!   has fenced;
//! - [`ops`]: fleet-scoped operator state (`fleet disable`...);
//!   [`channels`]: channels registered in etcd; [`switch`]: a member's
//!   part in `fleet switchover`; `follow`: the task per service that
//!   applies them.
//!
//! The task writes the listener's `service::fleet::FleetState`, which the
//! monitor, `show`, `show json` and metrics read.

pub(crate) mod channels;
pub(crate) mod elect;
pub(crate) mod etcd;
pub(crate) mod fence;
mod follow;
pub(crate) mod members;
pub(crate) mod ops;
mod run;
pub(crate) mod switch;
pub(crate) mod verdict;

pub(crate) use follow::{Persist, spawn as spawn_follow};

use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;

use crate::config::FleetConfig;
use crate::config::monitor::DEFAULT_INTERVAL;
use crate::service::Service;

/// Lease TTL floor: etcd refuses shorter TTLs in practice.
const MIN_TTL: Duration = Duration::from_secs(2);
/// Fallback floor when derived from the interval.
const MIN_FALLBACK: Duration = Duration::from_secs(1);
/// Longest etcd request.
const MAX_REQUEST: Duration = Duration::from_secs(1);

/// The process-wide fleet handle: the client, the key prefix, this
/// instance's id. Per-service tasks (this module's election, and the
/// operator-state and channel-list watchers) hang off [`Fleet::spawn`].
pub(crate) struct Fleet {
    pub(crate) client: etcd::Client,
    pub(crate) prefix: String,
    pub(crate) id: String,
    fallback: Option<Duration>,
    /// The per-service tasks, so shutdown can wait for them to give their
    /// roles up.
    tasks: TaskTracker,
    /// The revision applied last per ops key (across reloads).
    pub(crate) ops_applied: ops::Applied,
    /// Per listener, the switchover this process took part in last
    /// (across reloads).
    pub(crate) switch_applied: switch::Applied,
}

impl std::fmt::Debug for Fleet {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Fleet({} as {})", self.prefix, self.id)
    }
}

/// The durations of one service's fleet task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Timing {
    /// The monitor's interval.
    pub(crate) interval: Duration,
    /// The prober's lease TTL: a dead prober is replaced within about this.
    pub(crate) ttl: Duration,
    /// Keepalive period (TTL/3).
    pub(crate) keepalive: Duration,
    /// etcd unreachable this long → probe alone.
    pub(crate) fallback: Duration,
    /// How often a watch proves it is alive, and how long its member may
    /// take to answer (fallback/3, within 100 ms..1 s): a watch through a
    /// member that hangs is given up within two of these, before
    /// `fallback`.
    pub(crate) check: Duration,
}

impl Timing {
    pub(crate) fn of(interval: Duration, fallback: Option<Duration>) -> Timing {
        let ttl = (interval * 3).max(MIN_TTL);
        // etcd counts TTLs in whole seconds.
        let ttl = Duration::from_secs(ttl.as_secs() + u64::from(ttl.subsec_nanos() > 0));
        let fallback = fallback.unwrap_or_else(|| (interval * 3).max(MIN_FALLBACK));
        Timing {
            interval,
            ttl,
            keepalive: ttl / 3,
            fallback,
            check: (fallback / 3).clamp(Duration::from_millis(100), MAX_REQUEST),
        }
    }
}

impl Fleet {
    /// The handle for `cfg`; `id` defaults to `hostname:pid`.
    pub(crate) fn new(cfg: &FleetConfig) -> Result<Arc<Fleet>, etcd::EtcdError> {
        let timeout = cfg.fallback.map_or(MAX_REQUEST, |f| {
            (f / 3).clamp(Duration::from_millis(100), MAX_REQUEST)
        });
        Ok(Arc::new(Fleet {
            client: match &cfg.discovery_srv {
                Some(domain) => etcd::Client::with_discovery(domain, timeout, access(cfg))?,
                None => etcd::Client::with_access(&cfg.endpoints, timeout, access(cfg))?,
            },
            prefix: cfg.prefix.clone(),
            id: cfg.id.clone().unwrap_or_else(default_id),
            fallback: cfg.fallback,
            tasks: TaskTracker::new(),
            ops_applied: ops::Applied::default(),
            switch_applied: switch::Applied::default(),
        }))
    }

    /// `PREFIX/svc/SERVICE/REST`.
    pub(crate) fn svc_key(&self, service: &str, rest: &str) -> Vec<u8> {
        format!("{}/svc/{service}/{rest}", self.prefix).into_bytes()
    }

    /// The timing for `svc`.
    pub(crate) fn timing(&self, svc: &Service) -> Timing {
        let interval = svc
            .cfg
            .monitor
            .as_ref()
            .map_or(DEFAULT_INTERVAL, |m| m.interval);
        Timing::of(interval, self.fallback)
    }

    /// Start `svc`'s fleet tasks; they stop with `stop` (the listener is
    /// replaced by a reload, removed, or the process shuts down).
    pub(crate) fn spawn(self: &Arc<Self>, svc: Arc<Service>, stop: CancellationToken) {
        self.tasks.spawn(members::run(
            Arc::clone(self),
            Arc::clone(&svc),
            stop.clone(),
        ));
        if svc.cfg.fence {
            let f = fence::spawn(self, Arc::clone(&svc), stop.clone());
            self.tasks.spawn(f);
        }
        self.tasks.spawn(run::run(Arc::clone(self), svc, stop));
    }

    /// At shutdown (after the tasks' `stop` was cancelled): wait, bounded,
    /// until each has given its role up (a prober revokes its lease, so
    /// another instance takes over at once instead of after the TTL).
    pub(crate) async fn stopped(&self) {
        self.tasks.close();
        let _ = tokio::time::timeout(MAX_REQUEST * 2, self.tasks.wait()).await;
    }
}

/// The TLS settings and login `cfg` read from its files.
pub fn access(cfg: &FleetConfig) -> etcd::Access {
    etcd::Access {
        tls: cfg.loaded.tls().cloned(),
        login: cfg
            .user
            .clone()
            .zip(cfg.loaded.password().map(|p| p.0.clone())),
    }
}

/// `hostname:pid`.
fn default_id() -> String {
    format!("{}:{}", hostname(), std::process::id())
}

/// The host's name (`localhost` if unknown).
pub(crate) fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|h| h.trim().to_string())
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "localhost".into())
}

/// Now, in unix milliseconds.
pub(crate) fn now_ms() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
}

#[cfg(test)]
mod tests;
