//! `fleet switchover` through etcd: the record the initiating instance
//! writes, and every member's part in it (applied from the `follow`
//! watch). The initiator's side is `control::handlers::fleet_switchover`.
//!
//! - `ops/switchover` `{"epoch","by","from","to","state","hold_ms",
//!   "deadline_ms"}`, on the initiator's lease (a dead initiator's record
//!   goes within the TTL and every member lets its clients go).
//!   `state` is `hold` while the initiator waits, then `done` (after the
//!   new floor `ops/floor` was written) or `aborted`.
//! - `ops/switchover-ack/ID` `{"epoch","id","ended"}`: member ID holds new
//!   clients and has ended its sessions on group `from`.
//!
//! A member holds new clients (the operator hold) for at most `hold_ms`
//! from when it saw the record, whatever happens to etcd; it lets them go
//! when the record says `done` or `aborted` or goes away. As the new
//! floor is written before `done`, and one watch delivers both in order,
//! a member has applied the floor before it releases.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde::{Deserialize, Serialize};
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::Fleet;
use crate::operator::{self, OperatorOp, SpinSet};
use crate::service::Service;
use crate::service::ending::{GRACE, end_sessions};
use crate::service::hold::MAX_HOLD;

/// The record's key below `P/svc/NAME/ops/`.
pub(crate) const RECORD: &str = "switchover";
/// The acknowledgements' prefix below `P/svc/NAME/ops/`.
pub(crate) const ACKS: &str = "switchover-ack/";
/// How long a member retries writing its acknowledgement.
const ACK_RETRY: Duration = Duration::from_millis(100);

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub(crate) enum State {
    Hold,
    Done,
    Aborted,
}

/// A switchover as its initiator writes it to etcd.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Record {
    pub(crate) epoch: u64,
    pub(crate) by: String,
    pub(crate) from: usize,
    pub(crate) to: usize,
    pub(crate) state: State,
    /// Each member holds its new clients at most this long (ms) from when
    /// it sees the record (relative: clocks may differ).
    pub(crate) hold_ms: u64,
    /// When the initiator gives up at the latest (unix ms; for people).
    pub(crate) deadline_ms: u64,
}

impl Record {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// A record as read from etcd; anything malformed is an error.
    pub fn decode(v: &[u8]) -> Result<Record, String> {
        serde_json::from_slice(v).map_err(|e| format!("bad switchover record: {e}"))
    }
}

/// A member's acknowledgement of a switchover record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Ack {
    pub(crate) epoch: u64,
    pub(crate) id: String,
    /// Sessions this member ended on group `from`.
    pub(crate) ended: u32,
}

impl Ack {
    pub(crate) fn encode(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// An acknowledgement as read from etcd; anything malformed is an error.
    pub fn decode(v: &[u8]) -> Result<Ack, String> {
        serde_json::from_slice(v).map_err(|e| format!("bad switchover acknowledgement: {e}"))
    }
}

/// A member's switchover in progress.
struct Cur {
    epoch: u64,
    /// The operator held clients already: the hold stays on afterwards.
    operator_held: bool,
    /// Ending sessions and acknowledging (None: started by the `follow`
    /// task that a reload replaced; it goes on by itself).
    task: Option<JoinHandle<()>>,
}

/// Per listener: the epoch this process applied last and whether the
/// operator held clients before it, kept in the process-wide `Fleet`
/// across reloads (which replace the `follow` task) so a record seen again
/// is adopted, not applied twice.
#[derive(Debug, Default)]
pub(crate) struct Applied(Mutex<HashMap<String, (u64, bool)>>);

impl Applied {
    fn get(&self, listener: &str) -> Option<(u64, bool)> {
        let m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.get(listener).copied()
    }

    fn insert(&self, listener: &str, epoch: u64, operator_held: bool) {
        let mut m = self.0.lock().unwrap_or_else(|p| p.into_inner());
        m.insert(listener.to_string(), (epoch, operator_held));
    }
}

/// One member's part, driven by the `follow` task.
#[derive(Default)]
pub(super) struct Member {
    cur: Option<Cur>,
}

impl Member {
    /// The record was put (or read at a resync).
    pub(super) fn put(&mut self, fleet: &Arc<Fleet>, svc: &Arc<Service>, value: &[u8]) {
        let r = match Record::decode(value) {
            Ok(r) => r,
            Err(e) => {
                warn!(listener = %svc.cfg.name, "fleet: {e}; ignored");
                return;
            }
        };
        let before = fleet.switch_applied.get(&svc.cfg.name);
        match r.state {
            State::Hold if self.cur.as_ref().is_some_and(|c| c.epoch == r.epoch) => {}
            State::Hold => match before {
                // Applied before a reload: adopt it, so `done` releases.
                Some((epoch, operator_held)) if epoch == r.epoch => {
                    self.cur = Some(Cur {
                        epoch,
                        operator_held,
                        task: None,
                    });
                }
                _ => {
                    self.release(svc, "a new switchover");
                    self.start(fleet, svc, &r);
                }
            },
            State::Done | State::Aborted => {
                let why = if r.state == State::Done {
                    "switchover done"
                } else {
                    "switchover aborted"
                };
                self.release(svc, why);
            }
        }
    }

    /// The record went away (done, or its initiator's lease expired).
    pub(super) fn gone(&mut self, svc: &Service) {
        self.release(svc, "switchover record gone");
    }

    fn start(&mut self, fleet: &Arc<Fleet>, svc: &Arc<Service>, r: &Record) {
        let Some(old) = svc.pool.groups().get(r.from).cloned() else {
            warn!(listener = %svc.cfg.name, "fleet: switchover from group {} which this instance does not have: not acknowledged", r.from);
            return;
        };
        let hold = &svc.ops.hold;
        let operator_held = hold.until().is_some();
        let max = Duration::from_millis(r.hold_ms).min(MAX_HOLD);
        fleet
            .switch_applied
            .insert(&svc.cfg.name, r.epoch, operator_held);
        if !operator_held {
            // The operator hold, as `spin on MAX`.
            let _ = operator::apply(svc, &OperatorOp::Spin(SpinSet::For(Some(max))));
        }
        info!(listener = %svc.cfg.name, by = %r.by, "fleet: switchover from group {} to group {}: new clients held", r.from, r.to);
        let (fleet, epoch) = (Arc::clone(fleet), r.epoch);
        let name = svc.cfg.name.clone();
        let task = tokio::spawn(async move {
            let ended = end_sessions(&old, GRACE).await.ended;
            let ack = Ack {
                epoch,
                id: fleet.id.clone(),
                ended,
            };
            let key = fleet.svc_key(&name, &format!("ops/{ACKS}{}", fleet.id));
            let until = tokio::time::Instant::now() + max;
            while let Err(e) = fleet.client.put(&key, ack.encode().as_bytes(), None).await {
                if tokio::time::Instant::now() + ACK_RETRY >= until {
                    warn!(listener = %name, "fleet: switchover not acknowledged: {e}");
                    return;
                }
                tokio::time::sleep(ACK_RETRY).await;
            }
        });
        self.cur = Some(Cur {
            epoch,
            operator_held,
            task: Some(task),
        });
    }

    fn release(&mut self, svc: &Service, why: &str) {
        let Some(c) = self.cur.take() else {
            return;
        };
        if let Some(t) = c.task {
            t.abort();
        }
        if !c.operator_held {
            let _ = operator::apply(svc, &OperatorOp::Spin(SpinSet::Off));
        }
        info!(listener = %svc.cfg.name, epoch = c.epoch, "fleet: {why}: new clients released");
    }
}

#[cfg(test)]
mod tests;
