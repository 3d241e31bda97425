//! The live services: an immutable snapshot of the running listeners'
//! [`Service`]s, swapped whole. One writer (the supervisor, at start and
//! after each reload); any number of readers (metrics, re-resolution)
//! that never lock.

use std::sync::Arc;

use arc_swap::ArcSwap;

use crate::service::Service;

/// A cheap, cloneable handle on the current set of services.
#[derive(Clone, Default)]
pub(crate) struct Registry {
    current: Arc<ArcSwap<Vec<Arc<Service>>>>,
}

impl Registry {
    pub(crate) fn new() -> Registry {
        Registry::default()
    }

    /// The Services of the running listeners, in config order.
    pub(crate) fn services(&self) -> Arc<Vec<Arc<Service>>> {
        self.current.load_full()
    }

    /// Replace the whole set (the supervisor only).
    pub(crate) fn publish(&self, services: Vec<Arc<Service>>) {
        self.current.store(Arc::new(services));
    }
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Registry({} services)", self.current.load().len())
    }
}
