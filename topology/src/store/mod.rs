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

/// One write, lent: `None` deletes.
pub type Write<'a> = (&'a [u8], Option<&'a [u8]>);

/// Byte-level storage of one store of one task.
pub trait StoreBackend: Send + Sync {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
    /// Lends the value of `key` to `read` in place, for a caller that only decodes it: no copy
    /// of its own where the backend can avoid one. Calls `read` exactly once when it succeeds.
    fn get_with(&self, key: &[u8], read: &mut dyn FnMut(Option<&[u8]>)) -> Result<(), StoreError> {
        read(self.get(key)?.as_deref());
        Ok(())
    }
    /// Visits entries with `from <= key < to` (no upper bound when `to` is `None`) in key order
    /// until `visit` returns `false`.
    fn scan(
        &self,
        from: &[u8],
        to: Option<&[u8]>,
        visit: &mut dyn FnMut(&[u8], &[u8]) -> bool,
    ) -> Result<(), StoreError>;
    fn apply(&self, batch: &WriteBatch) -> Result<(), StoreError>;
    /// Applies writes lent in place, in order, as [`StoreBackend::apply`] does (a task's
    /// pending writes once their commit landed): a backend that copies them into a write batch
    /// of its own needs no batch of copies made first.
    fn apply_each(&self, writes: &mut dyn Iterator<Item = Write<'_>>) -> Result<(), StoreError> {
        let batch: WriteBatch = writes.map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec))).collect();
        self.apply(&batch)
    }
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
