//! State stores, in layers:
//!
//! 1. a byte-level [`StoreBackend`]: RocksDB ([`rocks`]) or memory ([`memory`]);
//! 2. [`staged::StagedStore`]: the task's writes since its last commit, read through to the
//!    backend, turned into changelog records at commit and applied to the backend only once
//!    the commit landed — so the local state is never ahead of the committed changelog;
//! 3. typed views ([`KvStore`], [`WindowStore`]) with codecs, handed to processors.
//!
//! Restore and checkpoint decisions are pure functions in [`restore`], tested without I/O.

pub mod changelog;
pub mod memory;
pub mod registry;
pub mod restore;
pub mod rocks;
pub(crate) mod staged;
mod typed;

use std::path::PathBuf;
use std::sync::Arc;

use crate::error::StoreError;

pub use self::registry::StateRegistry;
pub use self::restore::{Checkpoint, RestorePlan, plan_restore};
pub use self::typed::{KvStore, KvView, StoreId, WindowStore, WindowView};

/// A batch of writes: `None` deletes.
pub type WriteBatch = Vec<(Vec<u8>, Option<Vec<u8>>)>;

/// Byte-level storage of one store of one task.
pub trait StoreBackend: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Visits entries with `from <= key < to` (no upper bound when `to` is `None`) in key order
    /// until `visit` returns `false`.
    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError>;
    /// Applies a batch that is sorted by key with one write per key ([`restore::coalesce`]),
    /// as a restore writes: a backend may load it in bulk rather than write by write.
    fn load(&self, batch: &WriteBatch) -> Result<(), StoreError> {
        self.apply(batch)
    }
    /// Removes everything (before a full restore).
    fn clear(&self) -> Result<(), StoreError>;
    /// Estimated number of entries, for metrics.
    fn approximate_len(&self) -> u64;
}

/// Opens backends and keeps checkpoints: RocksDB in a data directory, or memory for tests.
pub trait StateFactory: Send + Sync {
    fn open(&self, store: &str, partition: u32) -> Result<Arc<dyn StoreBackend>, StoreError>;
    fn read_checkpoint(&self, task: &str) -> Result<Option<Checkpoint>, StoreError>;
    fn write_checkpoint(&self, task: &str, checkpoint: &Checkpoint) -> Result<(), StoreError>;
    /// Forgets a task's local state (a checkpoint that can no longer be trusted).
    fn remove_checkpoint(&self, task: &str) -> Result<(), StoreError>;
    /// Where the state lives, for logs.
    fn describe(&self) -> String;
    /// The directory, when on disk.
    fn dir(&self) -> Option<PathBuf> {
        None
    }
}
