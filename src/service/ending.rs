//! Ending a group's sessions for a switchover (the local `switchover` and
//! each instance's part of `fleet switchover`): let them finish for
//! [`GRACE`], then end the rest.

use std::time::{Duration, Instant};

use crate::pool::Group;

/// How long sessions on the old group may finish by themselves.
pub const GRACE: Duration = Duration::from_secs(2);
/// How long ended sessions may take to close.
pub const END_WAIT: Duration = Duration::from_secs(1);
/// Between two looks at the group's connections.
const POLL: Duration = Duration::from_millis(50);

/// Let `old`'s sessions finish for [`GRACE`], then end the rest; returns
/// how many were ended.
pub async fn end_sessions(old: &Group) -> u32 {
    let live = || old.channels.iter().map(|c| c.conns()).sum::<u32>();
    let deadline = Instant::now() + GRACE;
    while live() > 0 && Instant::now() < deadline {
        tokio::time::sleep(POLL).await;
    }
    let ended = live();
    if ended > 0 {
        for c in &old.channels {
            c.close_sessions();
        }
        let deadline = Instant::now() + END_WAIT;
        while live() > 0 && Instant::now() < deadline {
            tokio::time::sleep(POLL).await;
        }
    }
    ended
}
