//! In-memory backend and state factory, for unit tests and the topology test driver.

use std::collections::{BTreeMap, HashMap};
use std::ops::Bound;
use std::sync::Arc;

use parking_lot::{Mutex, RwLock};

use super::{Checkpoint, StateFactory, StoreBackend, WriteBatch};
use crate::error::StoreError;

/// A sorted map behind a lock.
#[derive(Debug, Default)]
pub struct MemoryBackend {
    map: RwLock<BTreeMap<Vec<u8>, Vec<u8>>>,
}

impl StoreBackend for MemoryBackend {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.map.read().get(key).cloned())
    }

    fn get_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        read(self.map.read().get(key).map(Vec::as_slice));
        Ok(())
    }

    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError> {
        let map = self.map.read();
        let upper = match to {
            Some(to) => Bound::Excluded(to),
            None => Bound::Unbounded,
        };
        for (k, v) in map.range::<[u8], _>((Bound::Included(from), upper)) {
            if !visit(k, v) {
                break;
            }
        }
        Ok(())
    }

    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        let mut map = self.map.write();
        for (k, v) in batch {
            match v {
                Some(v) => map.insert(k.clone(), v.clone()),
                None => map.remove(k),
            };
        }
        Ok(())
    }

    fn clear(&self) -> Result<(), StoreError> {
        self.map.write().clear();
        Ok(())
    }

    fn approximate_len(&self) -> u64 {
        self.map.read().len() as u64
    }
}

/// Keeps backends and checkpoints in memory. Backends survive a task's close and reopen (like
/// RocksDB on disk) until [`MemoryState::wipe`] simulates losing the local disk.
#[derive(Debug, Default)]
pub struct MemoryState {
    backends: Mutex<HashMap<(String, u32), Arc<MemoryBackend>>>,
    checkpoints: Mutex<HashMap<String, Checkpoint>>,
}

impl MemoryState {
    pub fn new() -> Self {
        Self::default()
    }

    /// Drops all local state and checkpoints, as if the machine's disk was replaced.
    pub fn wipe(&self) {
        self.backends.lock().clear();
        self.checkpoints.lock().clear();
    }
}

impl StateFactory for MemoryState {
    fn open(&self, store: &str, partition: u32) -> Result<Arc<dyn StoreBackend>, StoreError> {
        let backend = self
            .backends
            .lock()
            .entry((store.to_string(), partition))
            .or_default()
            .clone();
        Ok(backend)
    }

    fn read_checkpoint(&self, task: &str) -> Result<Option<Checkpoint>, StoreError> {
        Ok(self.checkpoints.lock().get(task).cloned())
    }

    fn write_checkpoint(&self, task: &str, checkpoint: &Checkpoint) -> Result<(), StoreError> {
        self.checkpoints
            .lock()
            .insert(task.to_string(), checkpoint.clone());
        Ok(())
    }

    fn remove_checkpoint(&self, task: &str) -> Result<(), StoreError> {
        self.checkpoints.lock().remove(task);
        Ok(())
    }

    fn describe(&self) -> String {
        "in-memory state".to_string()
    }
}
