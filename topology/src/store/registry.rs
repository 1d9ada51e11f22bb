//! The stores of the tasks running in this instance, for interactive queries.

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::{RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::StoreBackend;

/// Which store partitions this instance serves. Readers see committed state only: tasks apply
/// writes to backends after their commit landed.
///
/// A reader that needs one consistent cut across stores (a SQL query joining trips and the
/// ledger) holds [`StateRegistry::read_cut`] while it reads: a stream thread applies the writes
/// of one commit — all its tasks, all their stores — under the exclusive side of the same
/// lock, so the reader sees every store as of the same commits, never half of one.
#[derive(Default)]
pub struct StateRegistry {
    stores: RwLock<BTreeMap<(String, u32), Arc<dyn StoreBackend>>>,
    cut: RwLock<()>,
}

impl std::fmt::Debug for StateRegistry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.stores.read().keys()).finish()
    }
}

impl StateRegistry {
    pub fn new() -> Self {
        Self::default()
    }

    pub(crate) fn register(&self, store: &str, partition: u32, backend: Arc<dyn StoreBackend>) {
        self.stores
            .write()
            .insert((store.to_string(), partition), backend);
    }

    pub(crate) fn unregister(&self, store: &str, partition: u32) {
        self.stores.write().remove(&(store.to_string(), partition));
    }

    /// Holds commits back (between transactions) while the guard lives.
    pub fn read_cut(&self) -> RwLockReadGuard<'_, ()> {
        self.cut.read()
    }

    /// Taken while a commit's writes are applied to the backends.
    pub(crate) fn apply_guard(&self) -> RwLockWriteGuard<'_, ()> {
        self.cut.write()
    }

    /// The backend of one partition of a store, if this instance runs it.
    pub fn get(&self, store: &str, partition: u32) -> Option<Arc<dyn StoreBackend>> {
        self.stores.read().get(&(store.to_string(), partition)).cloned()
    }

    /// The partitions of `store` served here, with their backends.
    pub fn partitions(&self, store: &str) -> Vec<(u32, Arc<dyn StoreBackend>)> {
        self.stores
            .read()
            .iter()
            .filter(|((name, _), _)| name == store)
            .map(|((_, p), b)| (*p, b.clone()))
            .collect()
    }
}
