//! Who is in the fleet: each instance registers itself per service under
//! `P/svc/NAME/members/ID`, on a lease of its own that it keeps alive, so
//! the key goes when the instance stops (revoked) or dies (the TTL). The
//! value (JSON): `{"id","role","pid","host","since"}`; the role is
//! rewritten when it changes. The same task reads the member list every
//! [`LIST`] (plus `LIST` per 100 members) for `show json`; `fleet members`
//! reads etcd itself.
//!
//! Each instance also writes `P/svc/NAME/known/ID` (same value, no lease),
//! deleted when it stops in order. A known instance without a member key
//! was cut off from etcd (it may be probing alone and still sending
//! clients to the group it had) or died without stopping: `fleet
//! switchover` refuses to run until it is back or an operator removes it
//! (`fleet forget ID`). `fleet switchover` requires every member to
//! acknowledge.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use super::etcd::{EtcdError, Kv};
use super::{Fleet, MAX_REQUEST, now_ms};
use crate::service::Service;
use crate::service::fleet::Member;

/// Retry etcd after this, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// The member list is read (and this instance's known key checked) this
/// often.
pub(crate) const LIST: Duration = Duration::from_secs(5);

#[derive(Debug, Serialize, Deserialize)]
struct Value {
    id: String,
    #[serde(default)]
    role: String,
    #[serde(default)]
    pid: u32,
    #[serde(default)]
    host: String,
    #[serde(default)]
    since: u64,
}

/// `members/ID`'s value for this process.
fn value(id: &str, role: &str, since: u64) -> String {
    let v = Value {
        id: id.to_string(),
        role: role.to_string(),
        pid: std::process::id(),
        host: super::hostname(),
        since,
    };
    serde_json::to_string(&v).unwrap_or_default()
}

/// The members under `prefix` (`P/svc/NAME/members/`), by id; a value that
/// does not decode still names its member (from the key).
pub(crate) fn decode(prefix: &[u8], kvs: &[Kv]) -> Vec<Member> {
    kvs.iter()
        .filter_map(|kv| {
            let id = String::from_utf8_lossy(kv.key.get(prefix.len()..)?).into_owned();
            let v: Option<Value> = serde_json::from_slice(&kv.value).ok();
            Some(match v {
                Some(v) => Member {
                    id,
                    role: v.role.into(),
                    pid: v.pid,
                    host: v.host,
                    since_ms: v.since,
                },
                None => Member {
                    id,
                    role: "(undecodable)".into(),
                    pid: 0,
                    host: String::new(),
                    since_ms: 0,
                },
            })
        })
        .collect()
}

/// Register `svc`'s instance and keep it registered until `stop`.
pub(super) async fn run(fleet: Arc<Fleet>, svc: Arc<Service>, stop: CancellationToken) {
    let name = svc.cfg.name.clone();
    let me = Me {
        key: fleet.svc_key(&name, &format!("members/{}", fleet.id)),
        known: fleet.svc_key(&name, &format!("known/{}", fleet.id)),
        prefix: fleet.svc_key(&name, "members/"),
        since: now_ms(),
        period: fleet.timing(&svc).keepalive,
        ttl: fleet.timing(&svc).ttl,
        fleet,
        svc,
    };
    let mut lease = None;
    let mut backoff = RETRY_MIN;
    let mut down = false;
    loop {
        let e = tokio::select! {
            _ = stop.cancelled() => break,
            e = me.session(&mut lease, &mut backoff) => e,
        };
        me.svc.fleet.set_members(Vec::new());
        if let Some(e) = e.err().filter(|_| !down) {
            warn!(listener = %name, "fleet: membership: {e}; retrying");
            down = true;
        }
        tokio::select! {
            _ = stop.cancelled() => break,
            _ = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(RETRY_MAX);
    }
    // Stopped: leave the fleet at once.
    let c = &me.fleet.client;
    if let Some(l) = lease {
        let _ = tokio::time::timeout(MAX_REQUEST, c.lease_revoke(l)).await;
    }
    let _ = tokio::time::timeout(MAX_REQUEST, c.delete(&me.known)).await;
}

struct Me {
    fleet: Arc<Fleet>,
    svc: Arc<Service>,
    key: Vec<u8>,
    known: Vec<u8>,
    prefix: Vec<u8>,
    since: u64,
    period: Duration,
    ttl: Duration,
}

impl Me {
    async fn session(
        &self,
        lease: &mut Option<i64>,
        backoff: &mut Duration,
    ) -> Result<Infallible, EtcdError> {
        let c = &self.fleet.client;
        let l = c.lease_grant(self.ttl).await?;
        if let Some(old) = lease.replace(l) {
            let c = c.clone();
            tokio::spawn(async move { c.lease_revoke(old).await });
        }
        let mut role = self.svc.fleet.role();
        let v = value(&self.fleet.id, role.as_str(), self.since);
        c.put(&self.key, v.as_bytes(), Some(l)).await?;
        c.put(&self.known, v.as_bytes(), None).await?;
        info!(listener = %self.svc.cfg.name, id = %self.fleet.id, "fleet: registered as a member");
        *backoff = RETRY_MIN;
        let mut listed: Option<tokio::time::Instant> = None;
        let mut every = LIST;
        loop {
            if listed.is_none_or(|t| t.elapsed() >= every) {
                listed = Some(tokio::time::Instant::now());
                let (kvs, _) = c.get_prefix(&self.prefix).await?;
                // Large fleets read it less often: +LIST per 100 members.
                every = LIST
                    * (1 + u32::try_from(kvs.len() / 100)
                        .unwrap_or(u32::MAX / 2)
                        .min(60));
                self.svc.fleet.set_members(decode(&self.prefix, &kvs));
                // A reload's old task may have deleted it after this one
                // wrote it.
                if c.get(&self.known).await?.0.is_none() {
                    c.put(&self.known, v.as_bytes(), None).await?;
                }
            }
            tokio::time::sleep(self.period).await;
            if c.lease_keepalive(l).await? <= 0 {
                return Err(EtcdError::Reply("the member lease expired".into()));
            }
            let now = self.svc.fleet.role();
            if now != role {
                role = now;
                let v = value(&self.fleet.id, role.as_str(), self.since);
                c.put(&self.key, v.as_bytes(), Some(l)).await?;
            }
        }
    }
}

#[cfg(test)]
mod tests;
