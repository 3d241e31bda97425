//! The control socket's way to ask for an `upgrade` without knowing who
//! does it (like [`crate::control::reload`]): a channel of requests, each
//! with a one-shot reply. The supervisor holds the receiving end and
//! answers with the new process's pid or why it refused; control holds an
//! [`UpgradeHandle`].
//!
//! The handle also carries one fact the control servers need: once the
//! sockets are handed over, a stopping server leaves its socket file and
//! its lock file in place (they are the successor's now).

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use tokio::sync::{mpsc, oneshot};

/// The new process's pid, or why the running one keeps serving.
pub(crate) type UpgradeResult = Result<u32, String>;

/// One `upgrade [PATH]`: answer on `reply`.
#[derive(Debug)]
pub(crate) struct UpgradeRequest {
    /// The binary to start; None: the one the process was started from.
    pub(crate) path: Option<PathBuf>,
    pub(crate) reply: oneshot::Sender<UpgradeResult>,
}

/// The receiving end, held by the supervisor.
pub(crate) type UpgradeRequests = mpsc::Receiver<UpgradeRequest>;

/// Asks for an upgrade; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct UpgradeHandle {
    tx: mpsc::Sender<UpgradeRequest>,
    handed_over: Arc<AtomicBool>,
    /// A session wrote its last answer after the hand-over (the
    /// operator's `upgraded: ...`).
    answered: Arc<tokio::sync::Notify>,
}

impl UpgradeHandle {
    /// A handle and the receiver its requests arrive on.
    pub(crate) fn channel() -> (UpgradeHandle, UpgradeRequests) {
        let (tx, rx) = mpsc::channel(1);
        let h = UpgradeHandle {
            tx,
            handed_over: Arc::new(AtomicBool::new(false)),
            answered: Arc::new(tokio::sync::Notify::new()),
        };
        (h, rx)
    }

    /// A handle nobody answers (unit tests, a process without a supervisor).
    pub(crate) fn detached() -> UpgradeHandle {
        UpgradeHandle::channel().0
    }

    /// Ask for an upgrade and wait for its outcome.
    pub(crate) async fn upgrade(&self, path: Option<PathBuf>) -> UpgradeResult {
        let (reply, rx) = oneshot::channel();
        let gone = || "no supervisor running".to_string();
        self.tx
            .send(UpgradeRequest { path, reply })
            .await
            .map_err(|_| gone())?;
        rx.await.map_err(|_| gone())?
    }

    /// The sockets now belong to the successor: stopping servers must not
    /// remove their files.
    pub(crate) fn set_handed_over(&self) {
        self.handed_over.store(true, Ordering::SeqCst);
    }

    pub(crate) fn handed_over(&self) -> bool {
        self.handed_over.load(Ordering::SeqCst)
    }

    /// A session closed after writing its answer: once handed over, that
    /// is how the process knows the `upgrade` answer left before it exits.
    pub(crate) fn session_closed(&self) {
        if self.handed_over() {
            self.answered.notify_one();
        }
    }

    /// Wait (the caller bounds it) until a session closed after the
    /// hand-over.
    pub(crate) async fn answered(&self) {
        self.answered.notified().await;
    }
}
