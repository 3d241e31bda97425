//! `switchover`: move writes from the active group to another and lose
//! none (fleet mode runs the same plan through etcd). Hold new clients
//! (the operator hold of `spin on`, released in arrival order), end the
//! old group's sessions (an idle one at once, a busy one once its request
//! is answered, the rest after the grace), read what the old group has
//! written (`@@gtid_binlog_pos` over the monitor login), wait until every
//! usable channel of the target has applied it (`@@gtid_current_pos`) and
//! is eligible, make the target the failback floor, release. If the
//! target does not catch up within [`CATCH_UP`], abort: the floor stays,
//! the clients are released to the old group. An old group without a GTID
//! position (no binary log) proves nothing: refused unless `force`.
//! Either way clients are held at most about `grace + CATCH_UP`.
//!
//! [`crate::operator::apply`] only checks and plans ([`Switch::plan`]:
//! groups, login; nothing waits); the front end awaits [`Switch::run`].

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::config::monitor::{Check, Probe};
use crate::monitor::probe::{Finding, mysql};
use crate::operator::OpError;
use crate::pool::{Admin, Group};
use crate::service::Service;
use crate::service::ending::{END_WAIT, Ended, GRACE, end_sessions};

/// How long the target may take to apply what the old group wrote, unless
/// the command gives a timeout.
pub(crate) const CATCH_UP: Duration = Duration::from_secs(10);
/// Between two looks at positions or eligibility.
const POLL: Duration = Duration::from_millis(50);
/// One monitor query's bound.
pub(crate) const QUERY: Duration = Duration::from_secs(2);

/// A switchover's groups and login, checked (shared with
/// `fleet switchover`).
#[derive(Clone)]
pub(crate) struct Plan {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) old: Arc<Group>,
    pub(crate) new: Arc<Group>,
    pub(crate) login: Login,
}

impl Plan {
    /// From the active group to `to` (default: the next group, or 0 from
    /// a backup), or why that cannot work.
    pub(crate) fn of(
        svc: &Service,
        groups: &[Arc<Group>],
        to: Option<usize>,
    ) -> Result<Plan, OpError> {
        let last = groups.len().saturating_sub(1);
        let from = svc.pool.floor().min(last);
        let to = to.unwrap_or(if from == 0 { 1 } else { 0 });
        let (Some(old), Some(new)) = (groups.get(from), groups.get(to)) else {
            return Err(OpError::NoGroup {
                key: crate::operator::GroupKey::Index(to),
                groups: groups.len(),
            });
        };
        if to == from {
            return Err(OpError::Active(to));
        }
        let login = Login::of(svc).ok_or(OpError::NoLogin)?;
        Ok(Plan {
            from,
            to,
            old: Arc::clone(old),
            new: Arc::clone(new),
            login,
        })
    }

    /// Refuse up front what cannot be verified: an old group that answers
    /// with no GTID position (binary logging off) gives nothing to compare
    /// the target with. An old group that does not answer is judged later,
    /// by [`caught_up`].
    pub(crate) async fn verifiable(&self) -> Result<(), String> {
        if let Some(c) = self.old.channels.iter().find(|c| c.replication_broken()) {
            return Err(format!(
                "group {}'s replication is broken on {} (the old primary wrote after it was \
                 replaced?): re-point or rebuild group {} first",
                self.from,
                c.target(),
                self.to
            ));
        }
        for c in &self.old.channels {
            if let Ok(p) = self.login.value(c, "SELECT @@gtid_binlog_pos").await {
                if p.trim().is_empty() {
                    return Err(format!(
                        "group {} has no GTID position to verify group {} against \
                         (binary logging off?); switchover {} force moves without verifying",
                        self.from, self.to, self.to
                    ));
                }
                return Ok(());
            }
        }
        Ok(())
    }

    /// Wait until the target has applied what the old group wrote (see
    /// [`caught_up`]).
    pub(crate) async fn caught_up(&self, svc: &Service, limit: Duration) -> Result<String, String> {
        caught_up(svc, &self.old, &self.new, &self.login, limit).await
    }
}

/// A switchover planned by [`crate::operator::apply`], to be run.
#[derive(Clone)]
pub(crate) struct Switch {
    pub(crate) plan: Plan,
    /// How long the target may take to catch up.
    pub(crate) limit: Duration,
    /// How long a session with a request in flight may finish it.
    pub(crate) grace: Duration,
    /// Move without verifying.
    pub(crate) force: bool,
}

impl std::fmt::Debug for Switch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Switch")
            .field("from", &self.plan.from)
            .field("to", &self.plan.to)
            .field("limit", &self.limit)
            .field("grace", &self.grace)
            .field("force", &self.force)
            .finish()
    }
}

impl PartialEq for Switch {
    fn eq(&self, o: &Switch) -> bool {
        (
            self.plan.from,
            self.plan.to,
            self.limit,
            self.grace,
            self.force,
        ) == (o.plan.from, o.plan.to, o.limit, o.grace, o.force)
    }
}

impl Eq for Switch {}

/// A switchover done.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Switched {
    /// How long new clients were held.
    pub(crate) held_ms: u128,
    /// Sessions ended on the old group, and of them those cut with a
    /// request in flight after the grace.
    pub(crate) ended: u32,
    pub(crate) cut: u32,
    /// What the target applied (or that it took over unverified).
    pub(crate) pos: String,
    /// The operator held clients already (`spin on`): they stay held.
    pub(crate) spinning: bool,
}

/// Why a switchover did not happen.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum SwitchFailed {
    /// Nothing can be verified: nothing was held or changed.
    Refused(String),
    /// Given up: the floor stays, the clients were released.
    Aborted {
        why: String,
        held_ms: u128,
        spinning: bool,
    },
}

impl Switch {
    /// Check and plan (nothing waits); `to`: a group index.
    pub(crate) fn plan(
        svc: &Service,
        groups: &[Arc<Group>],
        to: Option<usize>,
        limit: Option<Duration>,
        grace: Option<Duration>,
        force: bool,
    ) -> Result<Switch, OpError> {
        Ok(Switch {
            plan: Plan::of(svc, groups, to)?,
            limit: limit.unwrap_or(CATCH_UP),
            grace: grace.unwrap_or(GRACE),
            force,
        })
    }

    /// Run it on this listener.
    pub(crate) async fn run(self, svc: &Service) -> Result<Switched, SwitchFailed> {
        let Switch {
            plan,
            limit,
            grace,
            force,
        } = self;
        let to = plan.to;
        if !force {
            plan.verifiable().await.map_err(SwitchFailed::Refused)?;
        }
        let started = Instant::now();
        // The operator hold (`spin on`): if the operator holds clients
        // already, they stay held afterwards (`spin off` releases them).
        let hold = &svc.ops.hold;
        let spinning = hold.until().is_some();
        if !spinning {
            hold.on(grace + END_WAIT + QUERY + limit + QUERY);
        }
        let name = svc.pool.group_name(to);
        info!(listener = %svc.cfg.name, group = %name, "switchover to group {to}: new clients held");
        let Ended { ended, cut } = end_sessions(&plan.old, grace).await;
        let result = if force {
            forced(svc, &plan, limit).await
        } else {
            plan.caught_up(svc, limit).await
        };
        if result.is_ok() {
            svc.pool.set_floor(to);
        }
        if !spinning {
            hold.off();
        }
        let held_ms = started.elapsed().as_millis();
        match result {
            Ok(pos) => Ok(Switched {
                held_ms,
                ended,
                cut,
                pos,
                spinning,
            }),
            Err(why) => Err(SwitchFailed::Aborted {
                why,
                held_ms,
                spinning,
            }),
        }
    }
}

/// `force`: nothing is compared; the target only has to be eligible.
async fn forced(svc: &Service, plan: &Plan, limit: Duration) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    loop {
        if plan.new.channels.iter().any(|c| c.eligible()) {
            return Ok("took over unverified (force)".into());
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "group {} has no eligible channel within {}",
                plan.to,
                crate::monitor::probe::fmt_dur(limit)
            ));
        }
        svc.reprobe.notify_one();
        tokio::time::sleep(POLL).await;
    }
}

/// The monitor login of the listener's first `mysql` check with a user.
#[derive(Clone)]
pub(crate) struct Login {
    user: String,
    password: Option<String>,
    source: Option<std::net::IpAddr>,
}

impl Login {
    fn of(svc: &Service) -> Option<Login> {
        svc.cfg
            .monitor
            .as_ref()?
            .checks
            .iter()
            .find_map(|c| match c {
                Check {
                    probe:
                        Probe::Mysql {
                            user: Some(user),
                            password,
                            ..
                        },
                    ..
                } => Some(Login {
                    user: user.clone(),
                    password: password.as_ref().map(|p| p.0.clone()),
                    source: svc.cfg.source,
                }),
                _ => None,
            })
    }

    /// One value from the first of `ch`'s addresses that answers.
    async fn value(&self, ch: &crate::pool::Channel, sql: &str) -> Result<String, String> {
        let mut why = format!("{} does not resolve", ch.target());
        for &addr in &ch.target().addrs {
            let dial = crate::monitor::probe::Dial {
                source: self.source,
                proxy: ch.proxy_protocol(),
            };
            let q = mysql::value(addr, dial, &self.user, self.password.as_deref(), sql);
            match tokio::time::timeout(QUERY, q).await {
                Ok(Ok(v)) => return Ok(v),
                Ok(Err(Finding::Failed(e) | Finding::Full(e) | Finding::CatchingUp(e))) => {
                    why = format!("{}: {e}", ch.target())
                }
                Err(_) => why = format!("{}: no answer within {}s", ch.target(), QUERY.as_secs()),
            }
        }
        Err(why)
    }
}

/// Wait until every usable channel of `new` has applied what `old` wrote
/// and one of them is eligible; the position, or why not.
async fn caught_up(
    svc: &Service,
    old: &Arc<Group>,
    new: &Arc<Group>,
    login: &Login,
    limit: Duration,
) -> Result<String, String> {
    let deadline = Instant::now() + limit;
    let mut pos = None;
    let mut why = String::from("the old group has no channel");
    for c in &old.channels {
        match login.value(c, "SELECT @@gtid_binlog_pos").await {
            Ok(p) => {
                pos = Some(p);
                break;
            }
            Err(e) => why = e,
        }
    }
    let pos = pos.ok_or_else(|| format!("cannot read the old group's position: {why}"))?;
    if pos.trim().is_empty() {
        return Err(
            "the old group has no GTID position (binary logging off?): nothing to verify the target against; \
             switchover ... force moves without verifying"
                .into(),
        );
    }
    let targets: Vec<_> = new
        .channels
        .iter()
        .filter(|c| c.admin() == Admin::Enabled && c.is_up())
        .collect();
    if targets.is_empty() {
        return Err("the target group has no usable channel".into());
    }
    loop {
        let mut behind = None;
        for c in &targets {
            match login.value(c, "SELECT @@gtid_current_pos").await {
                Ok(cur) if mysql::gtid_behind(&pos, &cur) == 0 => {}
                Ok(cur) => {
                    behind = Some(format!(
                        "{} is {} transactions behind ({cur} of {pos})",
                        c.target(),
                        mysql::gtid_behind(&pos, &cur)
                    ));
                }
                Err(e) => behind = Some(e),
            }
        }
        match behind {
            // Caught up: its own checks must agree (a backup that was
            // catching up is re-probed) before clients are let go.
            None if targets.iter().any(|c| c.eligible()) => return Ok(format!("applied {pos}")),
            None => {
                svc.reprobe.notify_one();
                why = "the target caught up but its checks have not passed yet".into();
            }
            Some(b) => why = b,
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "group not caught up within {}: {why}",
                crate::monitor::probe::fmt_dur(limit)
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}
