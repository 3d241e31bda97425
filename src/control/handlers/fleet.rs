//! `fleet ...`: a change for every instance of the service. The handler
//! only writes etcd (`P/svc/NAME/ops/...` or `P/svc/NAME/channels/...`);
//! every instance, this one included, applies it from its watch
//! (`crate::fleet::ops`, `crate::fleet::channels`). Without fleet mode
//! the command is refused.

use std::sync::Arc;
use std::time::Duration;

use crate::control::commands::{ChanRef, ControlOp, FleetCmd, GroupRef};
use crate::control::handlers::{channel, fleet_switchover};
use crate::control::listener::Control;
use crate::control::reply::Reply;
use crate::fleet::etcd::EtcdError;
use crate::fleet::members::decode;
use crate::fleet::ops::Op;
use crate::fleet::{Fleet, now_ms};
use crate::operator::{self, ChannelKey, Endpoint, GroupKey, OpError, OperatorOp, Outcome};
use crate::service::fleet::Member;

pub(crate) async fn run(ctl: &Control, cur: usize, cmd: &FleetCmd) -> Reply {
    let Some(fleet) = &ctl.fleet else {
        return Reply::err("fleet mode is off: start balance with --fleet or fleet: in the config");
    };
    let name = &ctl.svc.cfg.name;
    let op = match cmd {
        FleetCmd::Op(op) => op,
        FleetCmd::Members => return members(fleet, name).await,
        FleetCmd::Forget(id) => return forget(fleet, name, id).await,
    };
    if let OperatorOp::Switchover { .. } = op {
        return switchover(ctl, fleet, cur, op).await;
    }
    let groups = ctl.svc.pool.groups();
    let remove = matches!(op, OperatorOp::Remove { .. });
    // A channel is keyed by its address in etcd (every instance has its
    // own names and indexes): the one a reference names here, or the
    // address as written for a registration.
    let chan = |r: ChanRef| match r {
        ChanRef::Addr(host, port) if remove => Ok(Endpoint { host, port }),
        r => channel::find(&groups, cur, &r).map(|ch| Endpoint::of(&ch)),
    };
    // A group by its index (a name as this instance knows it); `fleet
    // remove` deletes a registration even in a group this instance lacks.
    let group = |g: GroupRef| match channel::group_key(cur, g) {
        GroupKey::Index(i) if remove || i < groups.len() => Ok(i),
        GroupKey::Index(i) => Err(format!("no such group {i}")),
        k => operator::find_group(&groups, &k).map_err(|e| e.to_string()),
    };
    let until = |s| channel::spin_until(&ctl.svc, s).map(ms_since_epoch);
    match Op::of(op.clone(), chan, group, until) {
        Ok(op) => write(fleet, name, &op).await,
        Err(e) => Reply::err(e),
    }
}

/// `fleet switchover`: planned by the model like `switchover`, run
/// through etcd.
async fn switchover(ctl: &Control, fleet: &Arc<Fleet>, cur: usize, op: &ControlOp) -> Reply {
    let op = op.clone().map(
        |c| Ok::<_, OpError>(channel::key(cur, &c)),
        |g| Ok(channel::group_key(cur, g)),
    );
    let op = op.and_then(|op| op.map_target(|e| Err(OpError::NoChannel(ChannelKey::Addr(e)))));
    match op.and_then(|op| operator::apply(&ctl.svc, &op)) {
        Ok(Outcome::Switching(sw)) => fleet_switchover::run(&ctl.svc, fleet, sw).await,
        Ok(_) => Reply::err("fleet switchover: not a switchover"),
        Err(e) => Reply::err(e.to_string()),
    }
}

/// Write `op` to etcd (a removal deletes its registration).
async fn write(fleet: &Fleet, name: &str, op: &Op) -> Reply {
    let key = fleet.svc_key(name, &op.path());
    let what = op.describe();
    let r = match op {
        OperatorOp::Remove { .. } => fleet.client.delete(&key).await,
        op => {
            let value = op.value(&fleet.id, now_ms());
            fleet.client.put(&key, value.as_bytes(), None).await
        }
    };
    written(r, &what)
}

/// `fleet members`: one line per registered instance, then the known ones
/// that are not registered (absent), read from etcd.
async fn members(fleet: &Fleet, name: &str) -> Reply {
    let (live, absent) = match roll(fleet, name).await {
        Ok(r) => r,
        Err(e) => return Reply::err(format!("fleet: members unknown: {e}")),
    };
    let now = now_ms();
    let n = live.len();
    let mut lines: Vec<String> = live
        .into_iter()
        .map(|m| {
            let me = if m.id == fleet.id {
                " (this instance)"
            } else {
                ""
            };
            format!(
                "{} {} pid {} host {} for {}s{me}",
                m.id,
                m.role,
                m.pid,
                m.host,
                now.saturating_sub(m.since_ms) / 1000
            )
        })
        .collect();
    for id in &absent {
        lines.push(format!(
            "{id} absent: known but not registered (cut off from etcd, or gone: fleet forget {id})"
        ));
    }
    lines.push(format!("{n} members, {} absent", absent.len()));
    Reply::ok(lines)
}

/// The registered members, and the ids known but not registered.
pub(crate) async fn roll(
    fleet: &Fleet,
    name: &str,
) -> Result<(Vec<Member>, Vec<String>), EtcdError> {
    let prefix = fleet.svc_key(name, "members/");
    let live = decode(&prefix, &fleet.client.get_prefix(&prefix).await?.0);
    let kprefix = fleet.svc_key(name, "known/");
    let absent = decode(&kprefix, &fleet.client.get_prefix(&kprefix).await?.0)
        .into_iter()
        .map(|m| m.id)
        .filter(|id| !live.iter().any(|m| &m.id == id))
        .collect();
    Ok((live, absent))
}

/// `fleet forget ID`: remove a known instance that is not registered.
async fn forget(fleet: &Fleet, name: &str, id: &str) -> Reply {
    let c = &fleet.client;
    let r = async {
        if c.get(&fleet.svc_key(name, &format!("members/{id}")))
            .await?
            .0
            .is_some()
        {
            return Ok(Err(format!(
                "fleet: {id} is a registered member (stop it instead): nothing changed"
            )));
        }
        let key = fleet.svc_key(name, &format!("known/{id}"));
        if c.get(&key).await?.0.is_none() {
            return Ok(Err(format!("fleet: no known instance {id}")));
        }
        c.delete(&key)
            .await
            .map(|_| Ok(format!("fleet: {id} forgotten")))
    };
    match r.await {
        Ok(Ok(line)) => Reply::line(line),
        Ok(Err(e)) => Reply::err(e),
        Err(e) => Reply::err(format!("fleet: nothing changed: {e}")),
    }
}

fn written(r: Result<i64, crate::fleet::etcd::EtcdError>, what: &str) -> Reply {
    match r {
        Ok(rev) => Reply::line(format!(
            "fleet: {what} written (revision {rev}); every instance applies it"
        )),
        Err(e) => Reply::err(format!("fleet: nothing changed: {e}")),
    }
}

fn ms_since_epoch(t: std::time::SystemTime) -> u64 {
    let d = t
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap_or(Duration::ZERO);
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
