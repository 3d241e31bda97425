//! `switchover [GROUP [TIMEOUT]] [grace=D] [force]`: move writes from the
//! active group to GROUP (a number or a name) and lose none. The op is
//! planned by [`crate::operator::apply`] and run by
//! [`crate::operator::switchover::Switch::run`] (`channel::run` awaits
//! it); this file renders the result in the control socket's words.
//! `fleet switchover`: see `fleet_switchover`.

use std::time::Duration;

use crate::control::reply::Reply;
use crate::operator::switchover::{SwitchFailed, Switched};

/// The reply to a switchover from group `from` to group `to`.
pub(crate) fn render(
    from: usize,
    to: usize,
    grace: Duration,
    result: Result<Switched, SwitchFailed>,
) -> Reply {
    let still = |spinning: bool| match spinning {
        true => "; spin is still on: spin off releases the clients",
        false => "",
    };
    match result {
        Ok(Switched {
            held_ms,
            ended,
            cut,
            pos,
            spinning,
        }) => {
            let cut = if cut > 0 {
                format!(
                    " ({cut} cut with a request in flight after {})",
                    crate::monitor::probe::fmt_dur(grace)
                )
            } else {
                String::new()
            };
            Reply::line(format!(
                "switchover from group {from} to group {to} done: clients held {held_ms} ms, \
                 {ended} sessions ended{cut}, group {to} {pos}{}",
                still(spinning)
            ))
        }
        Err(SwitchFailed::Refused(why)) => Reply::err(format!("switchover refused: {why}")),
        Err(SwitchFailed::Aborted {
            why,
            held_ms,
            spinning,
        }) => Reply::err(format!(
            "switchover aborted: {why}; clients released to group {from} (held {held_ms} ms){}",
            still(spinning)
        )),
    }
}
