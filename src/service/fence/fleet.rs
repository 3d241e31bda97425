//! The fence's fleet side: in fleet mode no member lets a client reach a
//! newly serving group before every live member has fenced (see
//! the fleet module's `fence` for the protocol through etcd). Here is what the
//! data path and the fleet task share: while fleet fencing runs for the
//! listener, a connect that would move the fence does not move it but
//! waits (bounded) for the fleet task to grant its group, then relays, is
//! turned away (another group was granted) or is held (no grant in time:
//! the client spins or is closed). The fleet task fences this member when
//! the fleet decides a move (and when it loses etcd), and grants a group
//! once every live member acknowledged.
//!
//! Writers: the fleet fence task (on/off, grants, the counters); the data
//! path only waits. Nothing here is read on the fast path
//! ([`super::Fence::serves`] stays one atomic load).

use std::sync::Mutex;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::*};
use std::time::Duration;

use tokio::sync::Notify;

/// What `show json` and metrics show of a listener's fleet fence.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct FleetFenceView {
    /// The group the fleet decided (the record in etcd), once read.
    pub(crate) decided: Option<usize>,
    /// The record's etcd revision (the fleet fence's epoch).
    pub(crate) epoch: i64,
    /// Whether this member may send clients to the decided group now
    /// (every live member acknowledged it).
    pub(crate) granted: bool,
    /// Live members that have not acknowledged the decided group yet.
    pub(crate) waiting_for: Vec<String>,
    /// Fleet fences completed here (moves granted after the first).
    pub(crate) fences: u64,
    /// Times this member fenced itself after losing etcd.
    pub(crate) self_fences: u64,
    /// The last completed move.
    pub(crate) last: Option<LastFence>,
}

/// One completed fleet fence, as this member saw it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct LastFence {
    pub(crate) from: Option<usize>,
    pub(crate) to: usize,
    /// Members that acknowledged.
    pub(crate) members: usize,
    /// Sessions reset on the other groups, all members together.
    pub(crate) reset: u64,
    /// From the decision seen here to the grant.
    pub(crate) held_ms: u64,
    /// When it was granted (unix ms).
    pub(crate) at_ms: u64,
}

/// The fleet side of one listener's fence.
#[derive(Debug, Default)]
pub(crate) struct FleetGate {
    /// Fleet fence tasks running for the listener (a reload starts the
    /// new one before the old one stops): moves need a grant while > 0.
    tasks: AtomicU32,
    /// How long a connect waits for a grant before it is held (ms).
    wait_ms: AtomicU64,
    /// Wakes the fleet task: a connect waits for a group not granted.
    pub(crate) asked: Notify,
    /// Wakes waiting connects: a group was granted.
    pub(crate) granted: Notify,
    view: Mutex<FleetFenceView>,
}

impl FleetGate {
    /// Whether moves need the fleet's grant.
    pub(crate) fn on(&self) -> bool {
        self.tasks.load(Acquire) > 0
    }

    /// A fleet fence task starts; connects wait for grants at most `wait`.
    pub(crate) fn start(&self, wait: Duration) {
        self.wait_ms
            .store(u64::try_from(wait.as_millis()).unwrap_or(u64::MAX), Relaxed);
        self.tasks.fetch_add(1, AcqRel);
    }

    /// A fleet fence task stopped.
    pub(crate) fn stop(&self) {
        let _ = self
            .tasks
            .fetch_update(AcqRel, Acquire, |n| Some(n.saturating_sub(1)));
        self.granted.notify_waiters();
    }

    /// The bound on one connect's wait for a grant.
    pub(crate) fn wait(&self) -> Duration {
        Duration::from_millis(self.wait_ms.load(Relaxed))
    }

    pub(crate) fn view(&self) -> FleetFenceView {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Change the view (the fleet task only).
    pub(crate) fn update(&self, f: impl FnOnce(&mut FleetFenceView)) {
        f(&mut self.view.lock().unwrap_or_else(|p| p.into_inner()));
    }
}
