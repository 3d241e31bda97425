//! The notes a logged connection's connect leaves for its log line:
//! failed attempts, time held, the race, how `route:` decided. Kept in a task-local that only a
//! logged connection's task has ([`traced_task`]); the connect writes
//! them on its failure paths and holds only, so a successful connect on
//! the plain path neither passes nor looks anything up.

use std::cell::RefCell;
use std::future::Future;
use std::time::{Duration, Instant};

use crate::connlog::{Race, RouteNote};
use crate::pool::Candidate;

/// How the last failed connect attempt failed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) enum Fail {
    #[default]
    None,
    Refused,
    Timeout,
    Local,
}

/// What the connect of a logged connection noted.
#[derive(Default)]
pub(crate) struct Notes {
    /// Connect attempts that failed.
    pub(crate) retries: u32,
    /// Time held by `--spin` or `spin on`.
    pub(crate) waited: Duration,
    /// Held at least once (`--spin`).
    pub(crate) spun: bool,
    /// The client left while held, not while connecting.
    pub(crate) left_held: bool,
    pub(crate) last_fail: Fail,
    /// The channel of the last connect that did not connect (the server
    /// of a connection that got none).
    pub(crate) tried: Option<Candidate>,
    pub(crate) race: Race,
    /// How `route:` decided (only a routed listener's connections).
    pub(crate) route: Option<Box<RouteNote>>,
}

tokio::task_local! {
    /// The notes of a logged connection's task. The connect writes them
    /// on its failure paths and holds only (a successful connect writes
    /// nothing), so the plain path neither passes nor looks them up.
    static NOTES: RefCell<Notes>;
}

/// Run a logged connection's task with its notes.
pub(crate) fn traced_task<F: Future>(
    f: F,
) -> tokio::task::futures::TaskLocalFuture<RefCell<Notes>, F> {
    NOTES.scope(RefCell::new(Notes::default()), f)
}

/// Whether this task is a logged connection's.
pub(crate) fn traced() -> bool {
    NOTES.try_with(|_| ()).is_ok()
}

/// Note something on this task's notes, when it has some.
pub(crate) fn note(f: impl FnOnce(&mut Notes)) {
    let _ = NOTES.try_with(|n| {
        if let Ok(mut n) = n.try_borrow_mut() {
            f(&mut n);
        }
    });
}

/// A connect attempt to `cand` failed.
pub(crate) fn failed(cand: &Candidate, why: Fail) {
    note(|n| {
        n.retries += 1;
        n.last_fail = why;
        n.tried = Some(cand.clone());
    });
}

/// Held since `since`; `left`: the client went away meanwhile.
pub(crate) fn held(since: Instant, left: bool) {
    note(|n| {
        n.waited += since.elapsed();
        n.left_held = left;
    });
}

pub(crate) fn take_notes() -> Notes {
    NOTES
        .try_with(|n| {
            n.try_borrow_mut()
                .map(|mut n| std::mem::take(&mut *n))
                .unwrap_or_default()
        })
        .unwrap_or_default()
}
