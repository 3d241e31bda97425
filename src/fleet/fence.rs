//! Fencing in fleet mode: no member lets a client reach a newly serving
//! group before every live member has fenced (reset its sessions on the
//! other groups). One task per fenced listener (`fence` on), beside the
//! election; the data path's side is `service::fence::fleet`.
//!
//! Keys, below `PREFIX/svc/NAME/fence/`:
//! - `record` `{"group","by","at"}` (no lease): the group the fleet
//!   serves. Only the prober writes it, when the group its own pool would
//!   send new clients to (the first usable group from the floor, room
//!   aside) differs, with a compare on the revision it read; that
//!   revision is the fence's epoch.
//! - `member/ID` `{"id","rev","reset","at"}` on a lease of this task's
//!   own: member ID is alive, and has fenced for the record of revision
//!   `rev` (0: none yet), resetting `reset` sessions.
//!
//! Every member, on a record it has not acknowledged: stops admitting
//! clients, resets its sessions on the other groups, waits for them to
//! close (at most 1 s), then acknowledges. Each member grants the group to
//! its own clients once every `member/` key there is acknowledges the
//! record: a member cut off from etcd stops counting when its lease
//! expires (one TTL after its last keepalive).
//!
//! A member that loses etcd cannot know the decision, and the others go
//! on without it once its lease expires. So when its lease has not been
//! renewed for half the TTL it fences itself: every session of the
//! listener is reset and no client is admitted until etcd answers again
//! and it has acknowledged the record then current. Connects meanwhile
//! wait (bounded), then spin (`--spin`) or are closed: with fencing, an
//! etcd outage stops new clients rather than risk two writers.

mod task;

use std::sync::Arc;
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::{Fleet, MAX_REQUEST, Timing};
use crate::health::Reason;
use crate::pool::Admin;
use crate::service::Service;
use crate::service::fence::FENCE_WAIT;

/// The decision's key below `P/svc/NAME/`.
pub(crate) const RECORD: &str = "fence/record";
/// The members' acknowledgements' prefix below `P/svc/NAME/`.
pub(crate) const MEMBERS: &str = "fence/member/";
/// Retry etcd after this, doubling up to [`RETRY_MAX`].
const RETRY_MIN: Duration = Duration::from_millis(100);
const RETRY_MAX: Duration = Duration::from_secs(1);
/// The prober looks whether its serving group changed this often (and
/// at once when a connect waits for a group).
const DECIDE: Duration = Duration::from_millis(50);

/// `fence/record`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Decision {
    pub(crate) group: usize,
    pub(crate) by: String,
    pub(crate) at: u64,
}

/// `fence/member/ID`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct Ack {
    pub(crate) id: String,
    /// The record revision fenced for (0: none).
    pub(crate) rev: i64,
    #[serde(default)]
    pub(crate) reset: u32,
    #[serde(default)]
    pub(crate) at: u64,
}

impl Decision {
    pub(crate) fn decode(v: &[u8]) -> Result<Decision, String> {
        serde_json::from_slice(v).map_err(|e| format!("bad fence record: {e}"))
    }
}

impl Ack {
    pub(crate) fn decode(v: &[u8]) -> Result<Ack, String> {
        serde_json::from_slice(v).map_err(|e| format!("bad fence acknowledgement: {e}"))
    }
}

/// How long a connect waits for the fleet before it is held: a member
/// cut off from etcd is waited for until its lease expires (one TTL),
/// plus its fence and a request.
pub(crate) fn grant_wait(t: &Timing) -> Duration {
    t.ttl + FENCE_WAIT + MAX_REQUEST
}

/// A member that has not renewed its lease for this long fences itself
/// (the others may go on without it one TTL after its last renewal).
pub(crate) fn self_fence_after(t: &Timing) -> Duration {
    t.ttl / 2
}

/// Start `svc`'s fleet fence task (a fenced listener only); the data
/// path needs its grants from now on, until it stops with `stop`.
pub(super) fn spawn(
    fleet: &Arc<Fleet>,
    svc: Arc<Service>,
    stop: CancellationToken,
) -> impl std::future::Future<Output = ()> + Send + 'static {
    let t = fleet.timing(&svc);
    svc.fence.fleet.start(grant_wait(&t));
    task::run(Arc::clone(fleet), svc, stop, t)
}

/// The group the prober's new clients would go to: the first, from the
/// floor, with a channel that is enabled, up, weighted and caught up
/// (room aside: a full writer is waited for, not replaced). As with the
/// verdicts, only checks decide for the fleet: a channel down only after
/// the prober's own clients' failed connects still counts as up.
fn usable_group(svc: &Service) -> Option<usize> {
    let groups = svc.pool.groups();
    let n = groups.len();
    let floor = svc.pool.floor().min(n.saturating_sub(1));
    let up =
        |c: &crate::pool::Channel| c.is_up() || matches!(c.down_reason(), Some(Reason::Connect(_)));
    (0..n).map(|k| (floor + k) % n).find(|&g| {
        groups[g]
            .channels
            .iter()
            .any(|c| c.admin() == Admin::Enabled && up(c) && c.weight() > 0 && !c.is_catching_up())
    })
}

#[cfg(test)]
mod tests;
