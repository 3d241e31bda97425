//! `switchover [GROUP]`: move writes from the active group to GROUP and
//! lose none (`fleet switchover`: the same for every instance, see
//! `fleet_switchover`). Hold new clients (the operator hold of `spin on`,
//! released in arrival order), end the old group's sessions (an idle one at
//! once, a busy one once its request is answered, the rest after the
//! grace), read what the old group has written (`@@gtid_binlog_pos` over
//! the monitor login), wait until every usable channel of GROUP has
//! applied it (`@@gtid_current_pos`) and is eligible, make GROUP the
//! failback floor, release. If GROUP does not catch up within
//! [`CATCH_UP`], abort: the floor stays, the clients are released to the
//! old group. An old group without a GTID position (no binary log) proves
//! nothing: refused unless `force`. Either way clients are held at most
//! about `grace + CATCH_UP`, and the reply says for how long.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::info;

use crate::config::monitor::{Check, Probe};
use crate::control::commands::SwitchArgs;
use crate::control::reply::Reply;
use crate::monitor::probe::{Finding, mysql};
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
pub(crate) struct Plan {
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) old: Arc<Group>,
    pub(crate) new: Arc<Group>,
    pub(crate) login: Login,
}

impl Plan {
    /// From the active group to `to` (default: the next group, or 0 from
    /// a backup); the error reply when that cannot work.
    pub(crate) fn of(svc: &Service, to: Option<usize>) -> Result<Plan, Reply> {
        let groups = svc.pool.groups();
        let last = groups.len().saturating_sub(1);
        let from = svc.pool.floor().min(last);
        let to = to.unwrap_or(if from == 0 { 1 } else { 0 });
        let (Some(old), Some(new)) = (groups.get(from), groups.get(to)) else {
            return Err(Reply::err(format!("no such group {to} (groups 0-{last})")));
        };
        if to == from {
            return Err(Reply::err(format!(
                "group {to} is already the active group"
            )));
        }
        let Some(login) = Login::of(svc) else {
            return Err(Reply::err(
                "switchover needs a mysql check with user= (-m 'mysql:user=NAME'): \
                 it compares GTID positions over the monitor login",
            ));
        };
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

pub(crate) async fn switchover(svc: &Service, args: SwitchArgs) -> Reply {
    let plan = match Plan::of(svc, args.to) {
        Ok(p) => p,
        Err(r) => return r,
    };
    let (from, to) = (plan.from, plan.to);
    let limit = args.limit.unwrap_or(CATCH_UP);
    let grace = args.grace.unwrap_or(GRACE);
    if !args.force {
        if let Err(why) = plan.verifiable().await {
            return Reply::err(format!("switchover refused: {why}"));
        }
    }
    let started = Instant::now();
    // The operator hold (`spin on`): if the operator holds clients
    // already, they stay held afterwards (`spin off` releases them).
    let hold = &svc.ops.hold;
    let operator_held = hold.until().is_some();
    if !operator_held {
        hold.on(grace + END_WAIT + QUERY + limit + QUERY);
    }
    let name = svc.pool.group_name(to);
    info!(listener = %svc.cfg.name, group = %name, "switchover to group {to}: new clients held");
    let Ended { ended, cut } = end_sessions(&plan.old, grace).await;
    let result = if args.force {
        forced(svc, &plan, limit).await
    } else {
        plan.caught_up(svc, limit).await
    };
    if result.is_ok() {
        svc.pool.set_floor(to);
    }
    if !operator_held {
        hold.off();
    }
    let held = started.elapsed().as_millis();
    let still = if operator_held {
        "; spin is still on: spin off releases the clients"
    } else {
        ""
    };
    let cut = if cut > 0 {
        format!(
            " ({cut} cut with a request in flight after {})",
            crate::monitor::probe::fmt_dur(grace)
        )
    } else {
        String::new()
    };
    match result {
        Ok(pos) => Reply::line(format!(
            "switchover from group {from} to group {to} done: clients held {held} ms, \
             {ended} sessions ended{cut}, group {to} {pos}{still}"
        )),
        Err(why) => Reply::err(format!(
            "switchover aborted: {why}; clients released to group {from} (held {held} ms){still}"
        )),
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
