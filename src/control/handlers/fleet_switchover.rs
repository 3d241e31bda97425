//! `fleet switchover [GROUP [TIMEOUT]]`: `switchover` for every instance
//! of the service at once, run by the instance that got the command (the
//! initiator) through etcd (see `crate::fleet::switch` for the keys):
//!
//! 0. refuse (nothing changed) while an instance is known but not
//!    registered: cut off from etcd it may still send clients to the old
//!    group (`fleet forget ID` drops one that is gone for good);
//! 1. write the record (`state: hold`) on a lease of its own; every member
//!    holds new clients, ends its sessions on the old group (the grace,
//!    then the end, as `switchover` does) and acknowledges;
//! 2. wait, at most [`ACK_WAIT`], until every member registered at any
//!    moment since the start has acknowledged: a member that does not, or
//!    leaves, aborts the switchover (an instance cut off from etcd is
//!    missing or silent, and may still send clients to the old group);
//! 3. wait until the target has applied what the old group wrote (the
//!    local switchover's GTID check, same bound);
//! 4. write the new floor (`ops/floor`, which every instance follows), then
//!    `state: done`; on any failure `state: aborted`, floor unchanged.
//!
//! Every member's hold is bounded by the record's `hold_ms` even if etcd
//! or the initiator dies; a dead initiator's record goes with its lease.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::control::handlers::fleet::roll;
use crate::control::reply::Reply;
use crate::fleet::etcd::{Client, EtcdError, Kv};
use crate::fleet::ops::Op;
use crate::fleet::switch::{ACKS, Ack, RECORD, Record, State};
use crate::fleet::{Fleet, members, now_ms};
use crate::operator::switchover::{Plan, QUERY, Switch};
use crate::service::Service;
use crate::service::ending::{END_WAIT, GRACE};

/// How long members may take to end their sessions and acknowledge.
pub(crate) const ACK_WAIT: Duration = Duration::from_secs(GRACE.as_secs() + END_WAIT.as_secs() + 2);
/// The record's lease: a dead initiator releases everyone within this.
const RECORD_TTL: Duration = Duration::from_secs(2);
const KEEPALIVE: Duration = Duration::from_millis(500);
/// Members hold this much longer than the initiator may take.
const MARGIN: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(50);
/// Writing the floor failed: etcd may have taken it all the same.
const FLOOR_UNKNOWN: &str = "the new floor may or may not be written";

struct Keys {
    record: Vec<u8>,
    acks: Vec<u8>,
    members: Vec<u8>,
    floor: Vec<u8>,
    /// The record's lease (once granted).
    lease: i64,
}

/// Run `sw` (planned by [`crate::operator::apply`]) on every instance.
pub(crate) async fn run(svc: &Service, fleet: &Arc<Fleet>, sw: Switch) -> Reply {
    let Switch { plan, limit, .. } = sw;
    if let Err(why) = plan.verifiable().await {
        return Reply::err(format!("fleet switchover refused: {why}"));
    }
    let name = &svc.cfg.name;
    let mut k = Keys {
        record: fleet.svc_key(name, &format!("ops/{RECORD}")),
        acks: fleet.svc_key(name, &format!("ops/{ACKS}")),
        members: fleet.svc_key(name, "members/"),
        floor: fleet.svc_key(name, &Op::Floor(plan.to).path()),
        lease: 0,
    };
    let c = &fleet.client;
    let nothing = |e: EtcdError| Reply::err(format!("fleet switchover: nothing changed: {e}"));
    let seen = match roster(fleet, name, plan.from).await {
        Ok(ids) => ids,
        Err(r) => return r,
    };
    let hold = ACK_WAIT + QUERY + limit + QUERY + MARGIN;
    let mut rec = Record {
        epoch: now_ms(),
        by: fleet.id.clone(),
        from: plan.from,
        to: plan.to,
        state: State::Hold,
        hold_ms: millis(hold),
        deadline_ms: now_ms() + millis(hold - MARGIN),
    };
    let lease = match c.lease_grant(RECORD_TTL).await {
        Ok(l) => l,
        Err(e) => return nothing(e),
    };
    k.lease = lease;
    let keep = tokio::spawn(keepalive(c.clone(), lease));
    // Old acknowledgements are told apart by their epoch (deleting them
    // here could delete those of a switchover run by another instance).
    let started = Instant::now();
    let created = c
        .create(&k.record, rec.encode().as_bytes(), Some(lease))
        .await;
    match created {
        // Written, or perhaps (the answer lost): the abort path below.
        Ok(true) | Err(_) => {}
        Ok(false) => {
            keep.abort();
            let _ = c.lease_revoke(lease).await;
            let by = match c.get(&k.record).await {
                Ok((Some(kv), _)) => Record::decode(&kv.value).map_or("?".into(), |r| r.by),
                _ => "?".into(),
            };
            return Reply::err(format!(
                "fleet switchover: another one is running (by {by}): nothing changed"
            ));
        }
    }
    let result = match created {
        Err(e) => Err(format!("etcd failed while writing the record: {e}")),
        Ok(_) => protocol(svc, fleet, &k, &plan, &rec, limit, seen).await,
    };
    let done = result.is_ok();
    rec.state = if done { State::Done } else { State::Aborted };
    let told = c
        .put(&k.record, rec.encode().as_bytes(), Some(lease))
        .await
        .is_ok();
    let held = started.elapsed().as_millis();
    // While the record is still ours: no other switchover has acks yet.
    let _ = c.delete_prefix(&k.acks).await;
    keep.abort();
    let _ = c.lease_revoke(lease).await;
    answer(&plan, &rec, result, held, told)
}

/// The reply: done, or aborted and why.
fn answer(
    plan: &Plan,
    rec: &Record,
    result: Result<(u32, String, Vec<String>), String>,
    held: u128,
    told: bool,
) -> Reply {
    let (from, to) = (plan.from, plan.to);
    let floor = match &result {
        Err(why) if why.contains(FLOOR_UNKNOWN) => {
            "floor unknown (see failback_floor in show json)"
        }
        _ => "floor unchanged",
    };
    match result {
        Ok((ended, pos, acked)) => Reply::line(format!(
            "fleet switchover from group {from} to group {to} done: clients held {held} ms, \
             {ended} sessions ended, group {to} {pos}; {} members acknowledged: {}",
            acked.len(),
            acked.join(", ")
        )),
        Err(why) if told => Reply::err(format!(
            "fleet switchover aborted: {why}; {floor}, clients released to group {from} \
             on every instance (held {held} ms)"
        )),
        Err(why) => Reply::err(format!(
            "fleet switchover aborted: {why}; {floor}; etcd did not take the abort: \
             each instance releases its clients when the record's lease \
             expires or at the latest {} ms after it saw the record",
            rec.hold_ms
        )),
    }
}

/// Step 0: the members now, unless an instance is known but not
/// registered or this one is not registered (the reply then).
async fn roster(fleet: &Fleet, name: &str, from: usize) -> Result<BTreeSet<String>, Reply> {
    let seen: BTreeSet<String> = match roll(fleet, name).await {
        Ok((_, absent)) if !absent.is_empty() => {
            return Err(Reply::err(format!(
                "fleet switchover: nothing changed: known but not registered: {} (cut off from \
                 etcd, it may still send clients to group {from}; if gone for good: fleet forget ID)",
                absent.join(", ")
            )));
        }
        Ok((live, _)) => live.into_iter().map(|m| m.id).collect(),
        Err(e) => {
            return Err(Reply::err(format!(
                "fleet switchover: nothing changed: {e}"
            )));
        }
    };
    if !seen.contains(&fleet.id) {
        return Err(Reply::err(
            "fleet switchover: this instance is not a registered member (etcd unreachable?): \
             nothing changed",
        ));
    }
    Ok(seen)
}

/// Steps 2-4: the sessions ended (sum), the position applied, the members
/// that acknowledged; or why not.
async fn protocol(
    svc: &Service,
    fleet: &Fleet,
    k: &Keys,
    plan: &Plan,
    rec: &Record,
    limit: Duration,
    seen: BTreeSet<String>,
) -> Result<(u32, String, Vec<String>), String> {
    let started = Instant::now();
    let (ended, acked) = acks(&fleet.client, k, rec.epoch, seen).await?;
    let pos = plan.caught_up(svc, limit).await?;
    if started.elapsed() + MARGIN > Duration::from_millis(rec.hold_ms) {
        return Err("took longer than the members' hold".into());
    }
    // Only while the record is still ours: if its lease lapsed, members
    // released their clients to the old group already.
    let floor = Op::Floor(plan.to).value(&fleet.id, now_ms());
    let written = fleet
        .client
        .put_if_held(&k.record, k.lease, &k.floor, floor.as_bytes())
        .await
        .map_err(|e| format!("{FLOOR_UNKNOWN}: {e}"))?;
    if !written {
        return Err("the record's lease lapsed (etcd too slow?): members released early".into());
    }
    Ok((ended, pos, acked))
}

/// Wait until every member seen has acknowledged `epoch`: the sessions
/// they ended (sum) and their ids; or who did not.
async fn acks(
    c: &Client,
    k: &Keys,
    epoch: u64,
    mut seen: BTreeSet<String>,
) -> Result<(u32, Vec<String>), String> {
    let deadline = Instant::now() + ACK_WAIT;
    loop {
        let etcd = |e: EtcdError| format!("etcd failed while waiting for acknowledgements: {e}");
        let present = ids(&k.members, &c.get_prefix(&k.members).await.map_err(etcd)?.0);
        seen.extend(present.iter().cloned());
        let acked: BTreeMap<String, u32> = c
            .get_prefix(&k.acks)
            .await
            .map_err(etcd)?
            .0
            .iter()
            .filter_map(|kv| Ack::decode(&kv.value).ok())
            .filter(|a| a.epoch == epoch && seen.contains(&a.id))
            .map(|a| (a.id, a.ended))
            .collect();
        let missing: Vec<String> = seen
            .iter()
            .filter(|id| !acked.contains_key(*id))
            .map(|id| match present.contains(id) {
                true => id.clone(),
                false => format!("{id} (left the fleet)"),
            })
            .collect();
        if missing.is_empty() {
            return Ok((acked.values().sum(), acked.into_keys().collect()));
        }
        if Instant::now() >= deadline {
            return Err(format!(
                "no acknowledgement within {}s from {}",
                ACK_WAIT.as_secs(),
                missing.join(", ")
            ));
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The member ids under `prefix`.
fn ids(prefix: &[u8], kvs: &[Kv]) -> BTreeSet<String> {
    members::decode(prefix, kvs)
        .into_iter()
        .map(|m| m.id)
        .collect()
}

async fn keepalive(c: Client, lease: i64) {
    loop {
        tokio::time::sleep(KEEPALIVE).await;
        let _ = c.lease_keepalive(lease).await;
    }
}

fn millis(d: Duration) -> u64 {
    u64::try_from(d.as_millis()).unwrap_or(u64::MAX)
}
