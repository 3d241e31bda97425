//! The control socket's way to ask for a reload without knowing who does
//! it: a channel of requests, each with a one-shot reply. The supervisor
//! holds the receiving end ([`ReloadRequests`]) and answers; control only
//! holds a [`ReloadHandle`].

use tokio::sync::{mpsc, oneshot};

/// Why a reload changed nothing, or not all it should have (the text
/// goes back to the client).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum ReloadError {
    /// Nobody answers reload requests (the supervisor is gone).
    #[error("no supervisor running")]
    NotRunning,
    /// The supervisor rejected the new config; the running one stays.
    #[error("{0}")]
    Rejected(String),
    /// The new config was applied, but not all of it works (a listener
    /// without its control socket).
    #[error("{0}")]
    Incomplete(String),
}

/// A one-line summary of what a reload changed, or why it changed nothing.
pub(crate) type ReloadResult = Result<String, ReloadError>;

/// One reload request: answer it on `reply`.
pub(crate) type ReloadRequest = oneshot::Sender<ReloadResult>;

/// The receiving end, held by whoever can reload.
pub(crate) type ReloadRequests = mpsc::Receiver<ReloadRequest>;

/// Asks for a reload; cheap to clone.
#[derive(Debug, Clone)]
pub(crate) struct ReloadHandle {
    tx: mpsc::Sender<ReloadRequest>,
}

impl ReloadHandle {
    /// A handle and the receiver its requests arrive on.
    pub(crate) fn channel() -> (ReloadHandle, ReloadRequests) {
        let (tx, rx) = mpsc::channel(4);
        (ReloadHandle { tx }, rx)
    }

    /// A handle nobody answers: every reload is [`ReloadError::NotRunning`].
    #[cfg(test)]
    pub(crate) fn detached() -> ReloadHandle {
        ReloadHandle::channel().0
    }

    /// Ask for a reload and wait for its outcome.
    pub(crate) async fn reload(&self) -> ReloadResult {
        let (tx, rx) = oneshot::channel();
        self.tx
            .send(tx)
            .await
            .map_err(|_| ReloadError::NotRunning)?;
        rx.await.map_err(|_| ReloadError::NotRunning)?
    }
}

#[cfg(test)]
mod tests;
