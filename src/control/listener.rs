//! [`Control`]: everything the commands of one listener act on (its
//! Service, the state file, the process's shutdown token and reload
//! handle). Handlers read it; the fields change only at construction.

use std::sync::Arc;
use std::time::Instant;

use tokio_util::sync::CancellationToken;

use crate::control::reload::ReloadHandle;
use crate::control::state::StateFile;
use crate::service::Service;

/// Everything the commands of one listener act on.
pub(crate) struct Control {
    pub(crate) svc: Arc<Service>,
    pub(crate) state: Option<Arc<StateFile>>,
    /// `kill` cancels it: the same graceful shutdown as SIGTERM.
    pub(crate) shutdown: CancellationToken,
    /// `reload` asks through it.
    pub(crate) reload: ReloadHandle,
    pub(crate) started: Instant,
    /// Fleet mode (`fleet ...` commands); None: standalone.
    pub(crate) fleet: Option<Arc<crate::fleet::Fleet>>,
    /// Every running listener of the process (empty in unit tests):
    /// `create`/`assign` refuse to point at any of them.
    pub(crate) listeners: crate::registry::Registry,
    /// `upgrade` asks through it.
    pub(crate) upgrade: crate::control::upgrade::UpgradeHandle,
    /// Serializes changes between sessions.
    pub(super) write: tokio::sync::Mutex<()>,
}

impl Control {
    pub(crate) fn new(
        svc: Arc<Service>,
        state: Option<Arc<StateFile>>,
        shutdown: CancellationToken,
        reload: ReloadHandle,
    ) -> Control {
        Control {
            svc,
            state,
            shutdown,
            reload,
            started: Instant::now(),
            fleet: None,
            listeners: crate::registry::Registry::new(),
            upgrade: crate::control::upgrade::UpgradeHandle::detached(),
            write: tokio::sync::Mutex::new(()),
        }
    }

    /// Write the state file (if any) with this listener's state now.
    pub(crate) async fn save(&self) -> Result<(), String> {
        save(self.state.as_ref(), &self.svc).await
    }
}

/// Write the state file (if any) with `svc`'s state now, off the runtime
/// thread: what every front end does after a change that persists.
pub(crate) async fn save(state: Option<&Arc<StateFile>>, svc: &Arc<Service>) -> Result<(), String> {
    let Some(st) = state.cloned() else {
        return Ok(());
    };
    let svc = Arc::clone(svc);
    match tokio::task::spawn_blocking(move || st.save(&svc)).await {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.to_string()),
        Err(e) => Err(e.to_string()),
    }
}
