//! One service's fleet task: campaign for the prober key; lead (probe,
//! publish each verdict change, republish after a reprobe request) or
//! follow (apply the leader's verdicts, ask for a reprobe after a passive
//! failure, campaign when the leader key goes away); when etcd fails,
//! retry with backoff and, once it has been gone for `fallback`, probe
//! alone until it answers again (see [`super::elect`]). A watch that does
//! not prove itself alive (its member hangs while the others answer the
//! lease keepalives) is an etcd failure too, found within two
//! `Timing::check`s: the session starts again through another member.
//! "etcd ok" is shown while a checked watch runs.

use std::collections::{HashMap, HashSet};
use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::time::{Instant, MissedTickBehavior, interval_at, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, info, warn};

use super::elect::Standing;
use super::etcd::{Client, EtcdError, Event, Kv, Liveness, Watch};
use super::verdict::{Leader, State, Verdict};
use super::{Fleet, MAX_REQUEST, Timing, now_ms};
use crate::health::Reason;
use crate::operator::Endpoint;
use crate::pool::Candidate;
use crate::service::Service;

/// Retry etcd after this, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// A follower asks for a reprobe at most this often.
const REPROBE_GAP: Duration = Duration::from_millis(100);
/// How often a pending republish looks whether the reprobe round is done.
const REPUBLISH_POLL: Duration = Duration::from_millis(25);

/// What the task knows that does not change.
struct Cx {
    fleet: Arc<Fleet>,
    svc: Arc<Service>,
    t: Timing,
    /// `P/svc/NAME/`: everything of this service (one watch).
    svc_prefix: Vec<u8>,
    prober_key: Vec<u8>,
    verdicts: Vec<u8>,
    reprobe_key: Vec<u8>,
}

/// What changes.
struct Task {
    st: Standing,
    lease: Option<i64>,
    /// The prober's verdict counter.
    seq: u64,
    /// Keys whose undecodable value was logged (once each).
    bad: HashSet<Vec<u8>>,
    /// etcd failed since the last session began (logged once).
    outage: bool,
    /// A session got as far as a lease (resets the backoff).
    connected: bool,
    /// Follower: the reprobe request after its latest failed connect.
    ask: Ask,
    /// Prober: per channel, the latest reprobe request answered by a check
    /// that started after it (the verdict's `answered`).
    answered: HashMap<Endpoint, i64>,
}

/// A follower's reprobe requests. A channel it took down after its own
/// failed connects comes back only on a verdict that answers `rev` with
/// a clean streak ([`Verdict::proves_up_since`]): a prober's "still up,
/// 1 failure" (its streak below `fall`) does not bring it back.
struct Ask {
    /// The etcd revision of the request written after the latest failed
    /// connect; `i64::MAX` while that request is still to be written.
    rev: i64,
    /// A request is to be written (at most every [`REPROBE_GAP`]).
    want: bool,
    /// A verdict did not answer the request yet: ask again if none does
    /// within an interval (the request may be lost: a new prober).
    again: bool,
    last: Option<Instant>,
}

pub(super) async fn run(fleet: Arc<Fleet>, svc: Arc<Service>, stop: CancellationToken) {
    let name = svc.cfg.name.clone();
    let cx = Cx {
        t: fleet.timing(&svc),
        svc_prefix: fleet.svc_key(&name, ""),
        prober_key: fleet.svc_key(&name, "prober"),
        verdicts: fleet.svc_key(&name, "verdict/"),
        reprobe_key: fleet.svc_key(&name, "reprobe"),
        fleet,
        svc,
    };
    let mut tk = Task {
        st: Standing::new(cx.t.fallback),
        lease: None,
        seq: 0,
        bad: HashSet::new(),
        outage: false,
        connected: false,
        ask: Ask {
            rev: 0,
            want: false,
            again: false,
            last: None,
        },
        answered: HashMap::new(),
    };
    cx.svc.fleet.set_etcd_up(false);
    cx.show(&tk.st);
    let mut backoff = RETRY_MIN;
    loop {
        let e = tokio::select! {
            _ = stop.cancelled() => break,
            e = session(&cx, &mut tk) => e,
        };
        cx.svc.fleet.set_etcd_up(false);
        if std::mem::take(&mut tk.connected) {
            backoff = RETRY_MIN;
        }
        if !tk.outage {
            tk.outage = true;
            warn!(listener = %name, "fleet: {e}; keeping the {} role for up to {:?}",
                  tk.st.role().as_str(), cx.t.fallback);
        }
        let now = Instant::now();
        let retry = now + backoff;
        let wake = tk.st.fallback_at(now).map_or(retry, |f| f.min(retry));
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = sleep_until(wake) => {}
        }
        if tk.st.unreachable(Instant::now()) {
            warn!(listener = %name, "fleet: etcd unreachable for {:?}: probing alone", cx.t.fallback);
            cx.show(&tk.st);
        }
        if Instant::now() >= retry {
            backoff = (backoff * 2).min(RETRY_MAX);
        }
    }
    // Stopped (reload, removal, shutdown): give the role up at once; the
    // leader key goes with the lease.
    if let Some(lease) = tk.lease {
        let _ = tokio::time::timeout(MAX_REQUEST, cx.client().lease_revoke(lease)).await;
    }
}

/// One session: a lease, then campaign / lead / follow until etcd fails.
async fn session(cx: &Cx, tk: &mut Task) -> EtcdError {
    match try_session(cx, tk).await {
        Ok(never) => match never {},
        Err(e) => e,
    }
}

async fn try_session(cx: &Cx, tk: &mut Task) -> Result<Infallible, EtcdError> {
    // A lease that is still alive (a watch broke, an endpoint went away)
    // is kept: a prober stays the prober, its key never went.
    let kept = match tk.lease {
        Some(old) if cx.client().lease_keepalive(old).await? > 0 => Some(old),
        _ => None,
    };
    let lease = match kept {
        Some(l) => l,
        None => cx.client().lease_grant(cx.t.ttl).await?,
    };
    if let Some(old) = tk.lease.replace(lease).filter(|old| *old != lease) {
        // A leader key of the old lease would hold the role until its TTL.
        let c = cx.client().clone();
        tokio::spawn(async move { c.lease_revoke(old).await });
    }
    tk.st.contact(Instant::now());
    tk.connected = true;
    if std::mem::take(&mut tk.outage) {
        info!(listener = %cx.svc.cfg.name, "fleet: etcd answers again: rejoining");
    }
    loop {
        let me = Leader {
            id: cx.fleet.id.clone(),
            since: now_ms(),
        };
        if cx
            .client()
            .create(&cx.prober_key, &me.encode(), Some(lease))
            .await?
        {
            tk.st.won(me, Instant::now());
            cx.show(&tk.st);
            info!(listener = %cx.svc.cfg.name, "fleet: this instance is the prober");
            lead(cx, tk, lease).await?;
            continue;
        }
        let (kvs, rev) = cx.client().get_prefix(&cx.svc_prefix).await?;
        let Some(kv) = kvs.iter().find(|kv| kv.key == cx.prober_key) else {
            continue; // gone meanwhile: campaign again
        };
        let leader = match Leader::decode(&kv.value) {
            Ok(l) if l.id == cx.fleet.id && kv.lease != lease => {
                // This instance's own earlier term (etcd was away).
                cx.client()
                    .delete_if_lease(&cx.prober_key, kv.lease)
                    .await?;
                continue;
            }
            Ok(l) if kv.lease == lease => {
                // A create that timed out had won.
                tk.st.won(l, Instant::now());
                cx.show(&tk.st);
                lead(cx, tk, lease).await?;
                continue;
            }
            Ok(l) if kv.lease != 0 => l,
            // Not written by a prober (no lease: it would never expire).
            Ok(_) => {
                remove_unleased(cx).await?;
                continue;
            }
            Err(e) => {
                cx.bad_value(tk, &kv.key, &e.to_string());
                if kv.lease == 0 {
                    remove_unleased(cx).await?;
                    continue;
                }
                // Nobody to follow until that key goes: keep probing.
                Leader {
                    id: "(undecodable)".into(),
                    since: u64::MAX,
                }
            }
        };
        follow(cx, tk, leader, &kvs, rev).await?;
    }
}

/// Delete a prober key that no lease holds (written by hand: it would
/// block the election for good); pause when someone else got there first.
async fn remove_unleased(cx: &Cx) -> Result<(), EtcdError> {
    warn!(listener = %cx.svc.cfg.name, "fleet: removing a prober key without a lease");
    if !cx.client().delete_if_lease(&cx.prober_key, 0).await? {
        tokio::time::sleep(REPROBE_GAP).await;
    }
    Ok(())
}

/// Follow `leader` from the snapshot `kvs` at `rev` until its key goes.
async fn follow(
    cx: &Cx,
    tk: &mut Task,
    leader: Leader,
    kvs: &[Kv],
    rev: i64,
) -> Result<(), EtcdError> {
    let who = leader.id.clone();
    tk.st.follow(leader, Instant::now());
    for kv in kvs.iter().filter(|kv| kv.key.starts_with(&cx.verdicts)) {
        cx.verdict(tk, kv);
    }
    cx.show(&tk.st);
    info!(listener = %cx.svc.cfg.name, prober = %who, "fleet: following");
    let (mut w, mut live) = cx.watch(rev).await?;
    let mut ka = cx.keepalive_ticks();
    loop {
        let now = Instant::now();
        let ask_at = tk.ask.last.map_or(now, |t| t + REPROBE_GAP);
        let again_at = tk.ask.last.unwrap_or(now) + cx.t.interval.max(REPROBE_GAP);
        tokio::select! {
            r = w.next() => {
                let (events, at) = r?;
                live.saw(at);
                tk.st.contact(Instant::now());
                for ev in events {
                    match ev {
                        Event::Delete(kv) if kv.key == cx.prober_key => return Ok(()),
                        // Not a prober's (no lease): the campaign removes it.
                        Event::Put(kv) if kv.key == cx.prober_key && kv.lease == 0 => return Ok(()),
                        Event::Put(kv) if kv.key == cx.prober_key => match Leader::decode(&kv.value) {
                            Ok(l) => tk.st.follow(l, Instant::now()),
                            Err(e) => cx.bad_value(tk, &kv.key, &e.to_string()),
                        },
                        Event::Put(kv) if kv.key.starts_with(&cx.verdicts) => cx.verdict(tk, &kv),
                        _ => {}
                    }
                }
                cx.show(&tk.st);
            }
            e = live.failed() => return Err(e),
            _ = ka.tick() => cx.keepalive(tk).await?,
            // A failed connect here (passive detection flipped or counted
            // it locally): ask the prober to probe now and republish; only
            // an answer to this request brings the channel back.
            _ = cx.svc.fleet.passive.notified(), if !tk.st.probing() => {
                tk.ask.rev = i64::MAX;
                tk.ask.want = true;
                tk.ask.again = false;
            }
            _ = sleep_until(again_at), if tk.ask.again && !tk.ask.want => {
                tk.ask.again = false;
                tk.ask.want = true;
            }
            _ = sleep_until(ask_at), if tk.ask.want && !tk.st.probing() => {
                tk.ask.want = false;
                tk.ask.last = Some(Instant::now());
                let v = format!(r#"{{"by":{},"at":{}}}"#, json_str(&cx.fleet.id), now_ms());
                tk.ask.rev = cx.client().put(&cx.reprobe_key, v.as_bytes(), None).await?;
            }
        }
    }
}

impl Cx {
    /// Watch the service's keys from the snapshot at `rev` on, with the
    /// check that the watch delivers; etcd counts as up from here (the
    /// instance receives what the fleet decides) until the session ends.
    async fn watch(&self, rev: i64) -> Result<(Watch, Liveness), EtcdError> {
        let w = self
            .client()
            .watch_prefix(&self.svc_prefix, rev + 1)
            .await?;
        let live = Liveness::new(self.client(), &w, &self.svc_prefix, rev, self.t.check);
        self.svc.fleet.set_etcd_up(true);
        Ok((w, live))
    }

    /// The lease's keepalive ticks while following or leading (the first
    /// one a period from now; a late tick does not bunch up).
    fn keepalive_ticks(&self) -> tokio::time::Interval {
        let mut ka = interval_at(Instant::now() + self.t.keepalive, self.t.keepalive);
        ka.set_missed_tick_behavior(MissedTickBehavior::Delay);
        ka
    }
}

/// Lead: publish every verdict, then each change, until the key is lost.
async fn lead(cx: &Cx, tk: &mut Task, lease: i64) -> Result<(), EtcdError> {
    let mut published: HashMap<Endpoint, Verdict> = HashMap::new();
    cx.publish(tk, &mut published, true).await?;
    let (kv, rev) = cx.client().get(&cx.prober_key).await?;
    if kv.is_none_or(|kv| kv.lease != lease) {
        return Ok(());
    }
    let (mut w, mut live) = cx.watch(rev).await?;
    let mut ka = cx.keepalive_ticks();
    let mut poll = tokio::time::interval(REPUBLISH_POLL);
    // After a reprobe request: republish everything once the round is
    // done (every channel's check count moved) or at the deadline; a
    // request that comes meanwhile gets the next round.
    let mut republish: Option<Round> = None;
    let mut queued: Option<i64> = None;
    loop {
        tokio::select! {
            r = w.next() => {
                let (events, at) = r?;
                live.saw(at);
                tk.st.contact(Instant::now());
                for ev in events {
                    match ev {
                        Event::Delete(kv) if kv.key == cx.prober_key => return Ok(()),
                        Event::Put(kv) if kv.key == cx.prober_key && kv.lease != lease => return Ok(()),
                        Event::Put(kv) if kv.key == cx.reprobe_key => {
                            if republish.is_none() {
                                republish = Some(cx.reprobe_round(kv.mod_revision));
                            } else {
                                queued = Some(kv.mod_revision);
                            }
                        }
                        _ => {}
                    }
                }
            }
            e = live.failed() => return Err(e),
            _ = cx.svc.fleet.reported.notified() => cx.publish(tk, &mut published, false).await?,
            _ = ka.tick() => cx.keepalive(tk).await?,
            _ = poll.tick(), if republish.is_some() => {
                if let Some(r) = republish.take_if(|r| r.over()) {
                    // The request is answered for the channels checked since.
                    let now = checks_done(&cx.svc);
                    for (id, n) in now {
                        if r.before.get(&id).is_none_or(|b| n > *b) {
                            tk.answered.insert(id, r.rev);
                        }
                    }
                    cx.publish(tk, &mut published, true).await?;
                    republish = queued.take().map(|rev| cx.reprobe_round(rev));
                }
            }
        }
    }
}

/// A reprobe round the prober runs for the request at `rev`.
struct Round {
    rev: i64,
    deadline: Instant,
    /// Finished checks per channel when it began.
    before: HashMap<Endpoint, u64>,
    svc: Arc<Service>,
}

impl Round {
    /// Done (every channel's check count moved) or past its deadline.
    fn over(&self) -> bool {
        let now = checks_done(&self.svc);
        let done = now.len() != self.before.len()
            || now
                .iter()
                .all(|(id, n)| self.before.get(id).is_none_or(|b| n > b));
        done || Instant::now() >= self.deadline
    }
}

/// Finished checks per channel address, enabled ones only.
fn checks_done(svc: &Service) -> HashMap<Endpoint, u64> {
    let mut m = HashMap::new();
    for c in svc.pool.groups().iter().flat_map(|g| g.channels.iter()) {
        if c.admin() == crate::pool::Admin::Enabled {
            *m.entry(Endpoint::of(c)).or_default() += c.checks_passed.load(Relaxed)
                + c.checks_failed.load(Relaxed)
                + c.checks_full.load(Relaxed);
        }
    }
    m
}

fn json_str(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

impl Cx {
    fn client(&self) -> &Client {
        &self.fleet.client
    }

    /// Start a reprobe round (every channel) for the request at `rev`.
    fn reprobe_round(&self, rev: i64) -> Round {
        self.svc.fleet.request_probe_all();
        self.svc.reprobe.notify_one();
        Round {
            rev,
            deadline: Instant::now() + self.t.interval,
            before: checks_done(&self.svc),
            svc: Arc::clone(&self.svc),
        }
    }

    /// The role → the listener's fleet state (and the monitor's pause).
    fn show(&self, st: &Standing) {
        let f = &self.svc.fleet;
        f.set_role(st.role(), now_ms());
        f.set_names(&self.fleet.id, st.leader().map(|l| l.id.as_str()));
        f.set_following(!st.probing());
    }

    fn bad_value(&self, tk: &mut Task, key: &[u8], e: &str) {
        // Bounded: past this many keys, each may be logged again.
        if tk.bad.len() >= 1024 {
            tk.bad.clear();
        }
        if tk.bad.insert(key.to_vec()) {
            warn!(listener = %self.svc.cfg.name, key = %String::from_utf8_lossy(key),
                  "fleet: ignoring a value that does not decode: {e}");
        }
    }

    async fn keepalive(&self, tk: &mut Task) -> Result<(), EtcdError> {
        let Some(lease) = tk.lease else {
            return Err(EtcdError::Reply("no lease".into()));
        };
        if self.client().lease_keepalive(lease).await? <= 0 {
            return Err(EtcdError::Reply("the lease expired".into()));
        }
        tk.st.contact(Instant::now());
        Ok(())
    }

    /// A verdict put: apply it to every channel with that HOST:PORT, if it
    /// is the leader's.
    fn verdict(&self, tk: &mut Task, kv: &Kv) {
        let Some(id) = kv.key.get(self.verdicts.len()..) else {
            return;
        };
        let v = match Verdict::decode(&kv.value) {
            Ok(v) => v,
            Err(e) => return self.bad_value(tk, &kv.key, &e.to_string()),
        };
        tk.bad.remove(&kv.key);
        if !tk.st.take(&v) {
            return;
        }
        // A key that names no HOST:PORT is about no channel here.
        let Ok(id) = Endpoint::parse(&String::from_utf8_lossy(id)) else {
            return;
        };
        for (g, grp) in self.svc.pool.groups().iter().enumerate() {
            for (i, ch) in grp.channels.iter().enumerate() {
                if Endpoint::of(ch) != id {
                    continue;
                }
                ch.set_lag(v.lag);
                if matches!(ch.down_reason(), Some(Reason::Connect(_))) {
                    let held = v.state != State::Down && !v.proves_up_since(tk.ask.rev);
                    tk.ask.again = held && v.answered < tk.ask.rev;
                    if held {
                        // Down after this instance's own failed connects,
                        // and the verdict does not prove it healthy since:
                        // keep it down. The prober publishes again when
                        // its streak ends or reaches `fall`; a request it
                        // did not answer within an interval (a new
                        // prober) is made again.
                        debug!(listener = %self.svc.cfg.name, channel = %id, fails = v.fails,
                               answered = v.answered, asked = tk.ask.rev,
                               "fleet: keeping a channel down after failed connects until a clean re-probe");
                        continue;
                    }
                }
                let at = Candidate {
                    group: g,
                    index: i,
                    channel: Arc::clone(ch),
                };
                for o in v.outcomes(ch) {
                    self.svc.report(&at, o);
                }
            }
        }
    }

    /// Put the verdicts that changed since `published` (all with `force`).
    async fn publish(
        &self,
        tk: &mut Task,
        published: &mut HashMap<Endpoint, Verdict>,
        force: bool,
    ) -> Result<(), EtcdError> {
        let at = now_ms();
        let mut seen = HashSet::new();
        let groups = self.svc.pool.groups();
        for ch in groups.iter().flat_map(|g| g.channels.iter()) {
            let id = Endpoint::of(ch);
            if !seen.insert(id.clone()) {
                continue;
            }
            let Some(mut v) = Verdict::of(ch, tk.seq + 1, at, &self.fleet.id) else {
                continue;
            };
            v.answered = tk.answered.get(&id).copied().unwrap_or(0);
            if !force && published.get(&id).is_some_and(|p| p.same(&v)) {
                continue;
            }
            tk.seq += 1;
            let key = [self.verdicts.as_slice(), id.to_string().as_bytes()].concat();
            self.client().put(&key, &v.encode(), None).await?;
            tk.st.contact(Instant::now());
            published.insert(id, v);
        }
        Ok(())
    }
}
