//! The fleet fence's task: its own lease and `member/` key, a watch of
//! `fence/`, fencing and acknowledging each new record, granting the
//! record's group once every live member acknowledged, the prober's
//! decision, and the self-fence when the lease goes unrenewed (see the
//! parent module). Writes the listener's `Fence` (through its fleet
//! calls) and the fleet fence view; nothing else.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::{
    Ack, DECIDE, Decision, MEMBERS, RECORD, RETRY_MAX, RETRY_MIN, grant_wait, self_fence_after,
    usable_group,
};
use crate::fleet::etcd::{EtcdError, Event, Kv, Liveness};
use crate::fleet::{Fleet, MAX_REQUEST, Timing, now_ms};
use crate::service::Service;
use crate::service::fence::FENCE_WAIT;
use crate::service::fence::fleet::LastFence;
use crate::service::fleet::Role;

/// When this member's lease was last renewed (the send time of the
/// request etcd answered), shared by the session and the self-fence
/// timer.
type Renewed = Arc<Mutex<Option<Instant>>>;

struct Task {
    fleet: Arc<Fleet>,
    svc: Arc<Service>,
    t: Timing,
    prefix: Vec<u8>,
    record_key: Vec<u8>,
    members_prefix: Vec<u8>,
    my_key: Vec<u8>,
    lease: Option<i64>,
    renewed: Renewed,
    /// The record as last read: (revision, group).
    record: Option<(i64, usize)>,
    /// When this member first saw the current record.
    seen_at: Instant,
    /// The record revision this member fenced for, and how many it reset
    /// (None after a self-fence).
    acked: Option<(i64, u32)>,
    /// Each live member's acknowledgement: (revision, reset).
    members: BTreeMap<String, (i64, u32)>,
    /// The record revision granted here, and its group.
    granted: Option<(i64, usize)>,
    /// The record whose slow acknowledgements were logged.
    told_waiting: i64,
}

pub(super) async fn run(fleet: Arc<Fleet>, svc: Arc<Service>, stop: CancellationToken, t: Timing) {
    let name = svc.cfg.name.clone();
    let mut tk = Task {
        prefix: fleet.svc_key(&name, "fence/"),
        record_key: fleet.svc_key(&name, RECORD),
        members_prefix: fleet.svc_key(&name, MEMBERS),
        my_key: fleet.svc_key(&name, &format!("{MEMBERS}{}", fleet.id)),
        fleet,
        svc,
        t,
        lease: None,
        renewed: Arc::default(),
        record: None,
        seen_at: Instant::now(),
        acked: None,
        members: BTreeMap::new(),
        granted: None,
        told_waiting: 0,
    };
    let renewed = Arc::clone(&tk.renewed);
    let after = self_fence_after(&t);
    let unrenewed = format!(
        "etcd has not renewed this member's lease for {} ms",
        after.as_millis()
    );
    let mut backoff = RETRY_MIN;
    let mut down = false;
    loop {
        let r = tokio::select! {
            _ = stop.cancelled() => break,
            e = tk.session(&mut backoff) => Err(e),
            _ = expired(&renewed, after) => Ok(()),
        };
        match r {
            Err(e) => {
                if !down {
                    warn!(listener = %name, "fleet fence: {e}; retrying");
                    down = true;
                }
            }
            Ok(()) => {
                down = true;
                tk.self_fence(&unrenewed).await;
            }
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = sleep(backoff) => {}
            _ = expired(&renewed, after) => tk.self_fence(&unrenewed).await,
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
    tk.svc.fence.fleet.stop();
    if let Some(l) = tk.lease {
        let _ = tokio::time::timeout(MAX_REQUEST, tk.fleet.client.lease_revoke(l)).await;
    }
}

/// Resolves once the lease has gone unrenewed for `after` (never while
/// it was not renewed at all since the last self-fence).
async fn expired(renewed: &Renewed, after: Duration) {
    loop {
        let at = *renewed.lock().unwrap_or_else(|p| p.into_inner());
        match at {
            Some(t) if Instant::now() >= t + after => return,
            Some(t) => sleep_until(t + after).await,
            None => sleep(after).await,
        }
    }
}

impl Task {
    fn renew(&self, sent: Instant) {
        let mut r = self.renewed.lock().unwrap_or_else(|p| p.into_inner());
        *r = Some(r.map_or(sent, |old| old.max(sent)));
    }

    /// Register, read, then follow the fence's keys until etcd fails.
    async fn session(&mut self, backoff: &mut Duration) -> EtcdError {
        match self.try_session(backoff).await {
            Ok(never) => match never {},
            Err(e) => e,
        }
    }

    async fn try_session(&mut self, backoff: &mut Duration) -> Result<Infallible, EtcdError> {
        let c = self.fleet.client.clone();
        let sent = Instant::now();
        let lease = c.lease_grant(self.t.ttl).await?;
        self.renew(sent);
        if let Some(old) = self.lease.replace(lease).filter(|o| *o != lease) {
            let c = c.clone();
            tokio::spawn(async move { c.lease_revoke(old).await });
        }
        let (rev, reset) = self.acked.unwrap_or((0, 0));
        self.put_ack(rev, reset).await?;
        let (kvs, at) = c.get_prefix(&self.prefix).await?;
        *backoff = RETRY_MIN;
        self.record = None;
        self.members.clear();
        for kv in &kvs {
            self.put(kv);
        }
        self.react().await?;
        let mut w = c.watch_prefix(&self.prefix, at + 1).await?;
        let mut live = Liveness::new(&c, &w, &self.prefix, at, self.t.check);
        let mut ka = interval_at(Instant::now() + self.t.ttl / 6, self.t.ttl / 6);
        ka.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut poll = tokio::time::interval(DECIDE);
        poll.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                r = w.next() => {
                    let (events, rev) = r?;
                    live.saw(rev);
                    for ev in events {
                        match ev {
                            Event::Put(kv) => self.put(&kv),
                            Event::Delete(kv) => self.delete(&kv),
                        }
                    }
                    self.react().await?;
                }
                e = live.failed() => return Err(e),
                _ = ka.tick() => {
                    let sent = Instant::now();
                    if c.lease_keepalive(lease).await? <= 0 {
                        // The others may have gone on without this member.
                        self.self_fence("etcd says this member's lease expired").await;
                        return Err(EtcdError::Reply("the fence lease expired".into()));
                    }
                    self.renew(sent);
                }
                _ = self.svc.fence.fleet.asked.notified() => self.decide().await?,
                _ = poll.tick() => {
                    self.decide().await?;
                    self.tell_waiting();
                }
            }
        }
    }

    /// A key under `fence/` was put.
    fn put(&mut self, kv: &Kv) {
        if kv.key == self.record_key {
            match Decision::decode(&kv.value) {
                Ok(d) => {
                    if self.record.is_none_or(|(r, _)| r != kv.mod_revision) {
                        self.seen_at = Instant::now();
                    }
                    self.record = Some((kv.mod_revision, d.group));
                }
                Err(e) => {
                    warn!(listener = %self.svc.cfg.name, "fleet fence: {e}; ignored");
                }
            }
        } else if let Some(id) = kv.key.strip_prefix(self.members_prefix.as_slice()) {
            let id = String::from_utf8_lossy(id).into_owned();
            if kv.lease == 0 {
                // Not a member's (written by hand): it would never expire
                // and hold every move for good.
                self.members.remove(&id);
                warn!(listener = %self.svc.cfg.name, member = %id,
                      "fleet fence: ignoring a member key without a lease");
                return;
            }
            // A value that does not decode acknowledges nothing: the
            // member is waited for like one that did not answer.
            let (rev, reset) = Ack::decode(&kv.value).map_or((0, 0), |a| (a.rev, a.reset));
            self.members.insert(id, (rev, reset));
        }
    }

    fn delete(&mut self, kv: &Kv) {
        if kv.key == self.record_key {
            self.record = None;
        } else if let Some(id) = kv.key.strip_prefix(self.members_prefix.as_slice()) {
            self.members.remove(String::from_utf8_lossy(id).as_ref());
        }
    }

    async fn put_ack(&mut self, rev: i64, reset: u32) -> Result<(), EtcdError> {
        let a = Ack {
            id: self.fleet.id.clone(),
            rev,
            reset,
            at: now_ms(),
        };
        let v = serde_json::to_vec(&a).unwrap_or_default();
        self.fleet.client.put(&self.my_key, &v, self.lease).await?;
        self.members.insert(self.fleet.id.clone(), (rev, reset));
        Ok(())
    }

    /// After a change: fence for a record not acknowledged yet, grant it
    /// when every live member has, and let the prober decide.
    async fn react(&mut self) -> Result<(), EtcdError> {
        if let Some((rev, group)) = self.record {
            if self.acked.is_none_or(|(r, _)| r != rev) {
                let groups = self.svc.pool.groups();
                let (reset, left) = self.svc.fence.fleet_fence(&groups, Some(group)).await;
                if left > 0 {
                    warn!(listener = %self.svc.cfg.name,
                          "fleet fence: {left} of {reset} sessions on other groups still open after {} ms",
                          FENCE_WAIT.as_millis());
                }
                if reset > 0 {
                    info!(listener = %self.svc.cfg.name,
                          "fleet fence: {reset} sessions reset here for group {group}");
                }
                self.acked = Some((rev, reset));
                self.put_ack(rev, reset).await?;
            }
        }
        self.grant().await;
        self.decide().await
    }

    /// Grant the record's group here once every live member acknowledged it.
    async fn grant(&mut self) {
        let Some((rev, group)) = self.record else {
            self.show(Vec::new());
            return;
        };
        if self.granted.is_some_and(|(r, _)| r == rev) || self.acked.is_none_or(|(r, _)| r != rev) {
            return;
        }
        let waiting: Vec<String> = self
            .members
            .iter()
            .filter(|(_, (r, _))| *r != rev)
            .map(|(id, _)| id.clone())
            .collect();
        if !waiting.is_empty() {
            self.show(waiting);
            return;
        }
        let from = self.granted.map(|(_, g)| g);
        let svc = &self.svc;
        svc.fence.fleet_grant(group).await;
        svc.pool.served_by(group);
        svc.pool.eligible.notify_waiters();
        self.granted = Some((rev, group));
        let members = self.members.len();
        let reset: u64 = self.members.values().map(|(_, n)| u64::from(*n)).sum();
        let here = self.acked.map_or(0, |(_, n)| n);
        let held = u64::try_from(self.seen_at.elapsed().as_millis()).unwrap_or(u64::MAX);
        let moved = from.is_some_and(|f| f != group);
        if moved {
            info!(listener = %svc.cfg.name, epoch = rev,
                  "fleet fenced: group {} to group {group}: {members} members acknowledged, {reset} sessions reset on other groups ({here} here), clients held {held} ms",
                  from.unwrap_or(group));
        } else {
            debug!(listener = %svc.cfg.name, epoch = rev, "fleet fence: group {group} serves ({members} members)");
        }
        svc.fence.fleet.update(|v| {
            v.decided = Some(group);
            v.epoch = rev;
            v.granted = true;
            v.waiting_for.clear();
            if moved {
                v.fences += 1;
                v.last = Some(LastFence {
                    from,
                    to: group,
                    members,
                    reset,
                    held_ms: held,
                    at_ms: now_ms(),
                });
            }
        });
    }

    /// The view while a record waits for acknowledgements.
    fn show(&self, waiting: Vec<String>) {
        let (record, granted) = (self.record, self.granted);
        self.svc.fence.fleet.update(|v| {
            v.decided = record.map(|(_, g)| g);
            v.epoch = record.map_or(0, |(r, _)| r);
            v.granted = record.is_some() && granted.map(|(r, _)| r) == record.map(|(r, _)| r);
            v.waiting_for = waiting;
        });
    }

    /// A record still waiting for members after a lease's life and a
    /// fence: named once (they are alive in etcd, but do not answer).
    fn tell_waiting(&mut self) {
        let Some((rev, group)) = self.record else {
            return;
        };
        if self.granted.is_some_and(|(r, _)| r == rev)
            || self.told_waiting == rev
            || self.seen_at.elapsed() < grant_wait(&self.t)
        {
            return;
        }
        self.told_waiting = rev;
        let waiting = self.svc.fence.fleet.view().waiting_for;
        warn!(listener = %self.svc.cfg.name, epoch = rev,
              "fleet fence: group {group} still waits for {} (registered, not acknowledged): new clients held",
              waiting.join(", "));
    }

    /// The prober: make the record say the group its own clients would go
    /// to, when that changed.
    async fn decide(&mut self) -> Result<(), EtcdError> {
        if self.svc.fleet.role() != Role::Prober {
            return Ok(());
        }
        let Some(group) = usable_group(&self.svc) else {
            return Ok(());
        };
        let rev = match self.record {
            Some((_, g)) if g == group => return Ok(()),
            Some((r, _)) => r,
            None => 0,
        };
        let d = Decision {
            group,
            by: self.fleet.id.clone(),
            at: now_ms(),
        };
        let v = serde_json::to_vec(&d).unwrap_or_default();
        if self
            .fleet
            .client
            .put_if(&self.record_key, &v, rev, None)
            .await?
        {
            info!(listener = %self.svc.cfg.name, "fleet fence: the fleet serves group {group} once every member has fenced");
        }
        Ok(())
    }

    /// etcd unreachable past half the lease: reset every session and
    /// admit nobody until etcd answers and this member acknowledged the
    /// record then current.
    async fn self_fence(&mut self, why: &str) {
        *self.renewed.lock().unwrap_or_else(|p| p.into_inner()) = None;
        let groups = self.svc.pool.groups();
        let (reset, left) = self.svc.fence.fleet_fence(&groups, None).await;
        self.acked = None;
        self.granted = None;
        warn!(listener = %self.svc.cfg.name,
              "fleet fence: {why}: fenced ({reset} sessions reset{}); new clients held until etcd answers",
              if left > 0 { format!(", {left} still open") } else { String::new() });
        self.svc.fence.fleet.update(|v| {
            v.granted = false;
            v.self_fences += 1;
        });
    }
}
