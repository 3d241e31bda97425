//! Ending a group's sessions for a switchover (the local `switchover` and
//! each instance's part of `fleet switchover`): every session ends as soon
//! as nothing is in flight on it (an idle one at once, a busy one once the
//! backend has answered its last request); what is still busy after the
//! grace is cut.

use std::time::{Duration, Instant};

use crate::pool::{EndCause, Group};

/// How long a session with a request in flight may finish it, unless the
/// command says otherwise (`grace=`).
pub(crate) const GRACE: Duration = Duration::from_secs(2);
/// How long ended sessions may take to close.
pub(crate) const END_WAIT: Duration = Duration::from_secs(1);
/// Between two looks at the group's connections: idle sessions end within
/// one task wake-up, so a short poll is what the hold costs.
const POLL: Duration = Duration::from_millis(5);

/// How a group's sessions ended.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Ended {
    /// Sessions ended (idle, or once their request was answered, or cut).
    pub(crate) ended: u32,
    /// Of those, cut at the grace with a request still in flight.
    pub(crate) cut: u32,
}

/// End `old`'s sessions: each as soon as it is quiet, the rest after
/// `grace`.
pub(crate) async fn end_sessions(old: &Group, grace: Duration) -> Ended {
    let live = || old.channels.iter().map(|c| c.conns()).sum::<u32>();
    let ended = live();
    if ended == 0 {
        return Ended::default();
    }
    for c in &old.channels {
        c.end_sessions_when_quiet(EndCause::Operator);
    }
    let deadline = Instant::now() + grace;
    while live() > 0 && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let cut = live();
    if cut > 0 {
        for c in &old.channels {
            c.close_sessions(EndCause::Operator);
        }
        let deadline = Instant::now() + END_WAIT;
        while live() > 0 && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }
    Ended { ended, cut }
}
