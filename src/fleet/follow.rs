//! One task per listener in fleet mode that follows the service's
//! operator state ([`super::ops`]) and channel list ([`super::channels`])
//! in etcd: read `P/svc/NAME/` whole, apply, then watch it from the next
//! revision; when etcd fails, retry with backoff (the instance keeps
//! what it applied). Changes are persisted like local operator state
//! (the state file), so a restart while etcd is down keeps them.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::Fleet;
use super::channels::{Added, Reg};
use super::etcd::{EtcdError, Event, Kv, Liveness, MAX_KEYS};
use super::ops::{Endpoint, Op};
use super::switch::{self, ACKS, RECORD};
use crate::service::Service;

/// Writes the listener's operator state where it survives a restart (the
/// state file); called on a blocking thread after each applied change.
pub(crate) type Persist = Arc<dyn Fn(&Arc<Service>) + Send + Sync>;

/// The most (key, revision) problems remembered as logged.
const LOGGED: usize = 1024;

/// Retry etcd after this, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(2);

/// Start following `svc`'s operator state and channel list; stops with
/// `stop`.
pub(crate) fn spawn(
    fleet: &Arc<Fleet>,
    svc: Arc<Service>,
    persist: Option<Persist>,
    stop: CancellationToken,
) {
    let base = String::from_utf8_lossy(&fleet.svc_key(&svc.cfg.name, "")).into_owned();
    let f = Follow {
        fleet: Arc::clone(fleet),
        svc,
        persist,
        ops_prefix: format!("{base}ops/"),
        chans_prefix: format!("{base}channels/"),
        base,
        added: Added::default(),
        ops: HashMap::new(),
        logged: HashSet::new(),
        changed: false,
        switch: switch::Member::default(),
    };
    tokio::spawn(f.run(stop));
}

struct Follow {
    fleet: Arc<Fleet>,
    svc: Arc<Service>,
    persist: Option<Persist>,
    base: String,
    ops_prefix: String,
    chans_prefix: String,
    added: Added,
    /// The ops keys as last seen (re-applied to a channel added later).
    ops: HashMap<Vec<u8>, Op>,
    /// (key, revision) whose problem was logged.
    logged: HashSet<(Vec<u8>, i64)>,
    /// Something was applied since the last persist.
    changed: bool,
    /// This member's part in a `fleet switchover`.
    switch: switch::Member,
}

impl Follow {
    async fn run(mut self, stop: CancellationToken) {
        let mut backoff = RETRY_MIN;
        let mut down = false;
        loop {
            let r = tokio::select! {
                _ = stop.cancelled() => return,
                r = self.session(&mut down, &mut backoff) => r,
            };
            if let Err(e) = r {
                if !down {
                    warn!(listener = %self.svc.cfg.name, "fleet: following operator state and channels: {e}; retrying");
                    down = true;
                }
            }
            tokio::select! {
                _ = stop.cancelled() => return,
                _ = tokio::time::sleep(backoff) => {}
            }
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }

    /// Read everything, apply, then apply each change; returns on an etcd
    /// error.
    async fn session(&mut self, down: &mut bool, backoff: &mut Duration) -> Result<(), EtcdError> {
        let client = self.fleet.client.clone();
        let (kvs, rev) = client.get_prefix(self.base.as_bytes()).await?;
        if std::mem::take(down) {
            info!(listener = %self.svc.cfg.name, "fleet: following operator state and channels again");
        }
        *backoff = RETRY_MIN;
        self.resync(kvs).await;
        self.persist().await;
        let mut w = client.watch_prefix(self.base.as_bytes(), rev + 1).await?;
        let every = self.fleet.timing(&self.svc).check;
        let mut live = Liveness::new(&client, &w, self.base.as_bytes(), rev, every);
        loop {
            let (events, at) = tokio::select! {
                r = w.next() => r?,
                e = live.failed() => return Err(e),
            };
            live.saw(at);
            for ev in events {
                self.event(ev).await;
            }
            self.persist().await;
        }
    }

    /// `Some(true)`: the switchover record; `Some(false)`: an
    /// acknowledgement; None: neither.
    fn switch_key(&self, key: &[u8]) -> Option<bool> {
        let rest = key.strip_prefix(self.ops_prefix.as_bytes())?;
        if rest == RECORD.as_bytes() {
            Some(true)
        } else {
            rest.starts_with(ACKS.as_bytes()).then_some(false)
        }
    }

    async fn resync(&mut self, kvs: Vec<Kv>) {
        let mut live = Vec::new();
        match kvs.iter().find(|kv| self.switch_key(&kv.key) == Some(true)) {
            Some(kv) => self.switch.put(&self.fleet, &self.svc, &kv.value),
            None => self.switch.gone(&self.svc),
        }
        let (chans, opkvs): (Vec<Kv>, Vec<Kv>) = kvs
            .into_iter()
            .filter(|kv| {
                (kv.key.starts_with(self.ops_prefix.as_bytes())
                    && self.switch_key(&kv.key).is_none())
                    || kv.key.starts_with(self.chans_prefix.as_bytes())
            })
            .partition(|kv| kv.key.starts_with(self.chans_prefix.as_bytes()));
        // Known first, so a channel added below gets its operator state.
        self.ops.clear();
        for kv in &opkvs {
            let rest = self.rest(&kv.key, &self.ops_prefix);
            if let Ok(op) = Op::decode(&rest, &kv.value) {
                self.ops.insert(kv.key.clone(), op);
            }
        }
        for kv in &chans {
            if let Some(reg) = self.put_channel(kv).await {
                live.push((reg.group, reg.chan));
            }
        }
        for (g, c) in self.added.stale(&live) {
            self.remove_channel(g, &c, 0);
        }
        let mut opkvs = opkvs;
        opkvs.sort_by_key(|kv| kv.mod_revision);
        for kv in &opkvs {
            self.put_op(kv);
        }
    }

    async fn event(&mut self, ev: Event) {
        match ev {
            Event::Put(kv) if self.switch_key(&kv.key) == Some(true) => {
                self.switch.put(&self.fleet, &self.svc, &kv.value)
            }
            Event::Delete(kv) if self.switch_key(&kv.key) == Some(true) => {
                self.switch.gone(&self.svc)
            }
            Event::Put(kv) | Event::Delete(kv) if self.switch_key(&kv.key).is_some() => {}
            Event::Put(kv) if kv.key.starts_with(self.chans_prefix.as_bytes()) => {
                self.put_channel(&kv).await;
            }
            Event::Put(kv)
                if kv.key.starts_with(self.ops_prefix.as_bytes())
                    && self.ops.len() >= MAX_KEYS
                    && !self.ops.contains_key(&kv.key) =>
            {
                self.problem(&kv, &format!("more than {MAX_KEYS} operator keys: ignored"))
            }
            Event::Put(kv) if kv.key.starts_with(self.ops_prefix.as_bytes()) => self.put_op(&kv),
            Event::Delete(kv) if kv.key.starts_with(self.chans_prefix.as_bytes()) => {
                let rest = self.rest(&kv.key, &self.chans_prefix);
                match Reg::decode_key(&rest) {
                    Ok((g, c)) => self.remove_channel(g, &c, kv.mod_revision),
                    Err(why) => self.problem(&kv, &why),
                }
            }
            Event::Delete(kv) if kv.key.starts_with(self.ops_prefix.as_bytes()) => {
                self.ops.remove(&kv.key);
            }
            _ => {}
        }
    }

    fn rest(&self, key: &[u8], prefix: &str) -> String {
        String::from_utf8_lossy(&key[prefix.len()..]).into_owned()
    }

    /// Log a key's problem once per revision (the memory of what was
    /// logged is bounded: past [`LOGGED`] keys it starts again).
    fn problem(&mut self, kv: &Kv, why: &str) {
        if self.logged.len() >= LOGGED {
            self.logged.clear();
        }
        if self.logged.insert((kv.key.clone(), kv.mod_revision)) {
            warn!(
                listener = %self.svc.cfg.name,
                "fleet: ignored {} (revision {}): {why}",
                String::from_utf8_lossy(&kv.key),
                kv.mod_revision
            );
        }
    }

    fn applied(&mut self, what: &str, rev: i64) {
        info!(listener = %self.svc.cfg.name, "fleet: {what} (revision {rev})");
        self.changed = true;
    }

    async fn put_channel(&mut self, kv: &Kv) -> Option<Reg> {
        let rest = self.rest(&kv.key, &self.chans_prefix);
        let reg = match Reg::decode(&rest, &kv.value) {
            Ok(r) => r,
            Err(why) => {
                self.problem(kv, &why);
                return None;
            }
        };
        if self.added.count() >= MAX_KEYS && !self.added.has(&reg) {
            let why = format!("more than {MAX_KEYS} channels registered: not added");
            self.problem(kv, &why);
            return None;
        }
        match self.added.ensure(&self.svc, &reg).await {
            Ok(Some(what)) => {
                self.applied(&what, kv.mod_revision);
                // Operator state already set for this channel applies.
                let mine: Vec<Op> = self
                    .ops
                    .values()
                    .filter(|op| op.channel() == Some(&reg.chan))
                    .cloned()
                    .collect();
                for op in mine {
                    if let Ok(Some(what)) = op.apply(&self.svc) {
                        self.applied(&what, kv.mod_revision);
                    }
                }
            }
            Ok(None) => {}
            Err(why) => self.problem(kv, &why),
        }
        Some(reg)
    }

    fn remove_channel(&mut self, group: usize, chan: &Endpoint, rev: i64) {
        match self.added.remove(&self.svc, group, chan) {
            Ok(Some(what)) => self.applied(&what, rev),
            Ok(None) => {}
            Err(why) => {
                warn!(listener = %self.svc.cfg.name, "fleet: {group}/{chan} unregistered: {why}")
            }
        }
    }

    fn put_op(&mut self, kv: &Kv) {
        let rest = self.rest(&kv.key, &self.ops_prefix);
        let op = match Op::decode(&rest, &kv.value) {
            Ok(op) => op,
            Err(why) => {
                self.problem(kv, &why);
                return;
            }
        };
        self.ops.insert(kv.key.clone(), op.clone());
        if !self.fleet.ops_applied.is_new(&kv.key, kv.mod_revision) {
            return;
        }
        self.fleet.ops_applied.mark(&kv.key, kv.mod_revision);
        match op.apply(&self.svc) {
            Ok(Some(what)) => self.applied(&what, kv.mod_revision),
            Ok(None) => {}
            Err(why) => self.problem(kv, &format!("not applied here: {why}")),
        }
    }

    async fn persist(&mut self) {
        if !std::mem::take(&mut self.changed) {
            return;
        }
        if let Some(p) = self.persist.clone() {
            let svc = Arc::clone(&self.svc);
            let _ = tokio::task::spawn_blocking(move || p(&svc)).await;
        }
    }
}
