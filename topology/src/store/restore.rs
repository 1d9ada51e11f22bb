//! Where a task's state comes from when it opens: pure decisions, tested without I/O.

use serde::{Deserialize, Serialize};

use super::WriteBatch;

/// What a task leaves on local disk after a commit: how far its local stores reflect the
/// changelog, and the positions and stream time that state belongs to.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    /// The changelog offset up to which (exclusive) the local stores are complete.
    pub changelog_offset: u64,
    pub positions: Vec<(String, u32, u64)>,
    pub stream_time: i64,
}

/// How to bring local stores up to date with the changelog.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RestorePlan {
    /// Clear the local stores first (no usable checkpoint).
    pub wipe: bool,
    /// Replay changelog records in `from..to`.
    pub from: u64,
    pub to: u64,
}

impl RestorePlan {
    pub fn records(&self) -> u64 {
        self.to.saturating_sub(self.from)
    }
}

/// Decides how to restore, given the local checkpoint (if any) and the changelog partition's
/// first and next offsets.
///
/// - no checkpoint: the local stores cannot be trusted; wipe and replay everything;
/// - a checkpoint past the end: the changelog was recreated (or belongs to another
///   deployment); the local state is foreign, wipe and replay;
/// - a checkpoint before the first offset still kept: records it needs were deleted; wipe and
///   replay what is there (compacted changelogs keep the latest value of every key);
/// - otherwise replay only what the checkpoint does not have.
pub fn plan_restore(checkpoint: Option<&Checkpoint>, start: u64, end: u64) -> RestorePlan {
    match checkpoint {
        Some(cp) if cp.changelog_offset <= end && cp.changelog_offset >= start => RestorePlan {
            wipe: false,
            from: cp.changelog_offset,
            to: end,
        },
        Some(cp) if cp.changelog_offset == end => RestorePlan {
            wipe: false,
            from: end,
            to: end,
        },
        _ => RestorePlan {
            wipe: true,
            from: start,
            to: end,
        },
    }
}

/// Orders a batch by key and keeps each key's last write: the state that applying the batch
/// in order leaves, in the order a memtable takes fastest (RocksDB's skip list reuses its
/// search path from one insert to the next when keys come sorted). A restore replays writes
/// in the order of the changelog, which for keys spread over a store is no order at all.
pub fn coalesce(batch: &mut WriteBatch) {
    // Stable: a key's writes keep their order, the last one last.
    batch.sort_by(|a, b| a.0.cmp(&b.0));
    let mut kept = 0;
    for i in 0..batch.len() {
        if i + 1 < batch.len() && batch[i].0 == batch[i + 1].0 {
            continue;
        }
        batch.swap(kept, i);
        kept += 1;
    }
    batch.truncate(kept);
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    proptest::proptest! {
        /// Whatever the batch, its coalesced form leaves the store as the batch applied in order
        /// does, sorted and with one write per key.
        #[test]
        fn a_coalesced_batch_leaves_what_the_batch_leaves(
            writes in proptest::collection::vec((0..12u8, proptest::option::weighted(0.8, 0..255u8)), 0..80),
        ) {
            let mut batch: WriteBatch = writes.into_iter().map(|(k, v)| (vec![k], v.map(|v| vec![v]))).collect();
            // The store before the batch holds a third of the keys.
            let before: BTreeMap<Vec<u8>, Vec<u8>> = (0..12u8).filter(|k| k % 3 == 0).map(|k| (vec![k], vec![255])).collect();
            let apply = |batch: &WriteBatch| {
                let mut state = before.clone();
                for (k, v) in batch {
                    match v {
                        Some(v) => state.insert(k.clone(), v.clone()),
                        None => state.remove(k),
                    };
                }
                state
            };
            let in_order = apply(&batch);
            coalesce(&mut batch);
            proptest::prop_assert_eq!(apply(&batch), in_order);
            proptest::prop_assert!(batch.windows(2).all(|w| w[0].0 < w[1].0));
        }
    }

    fn cp(offset: u64) -> Checkpoint {
        Checkpoint {
            changelog_offset: offset,
            ..Default::default()
        }
    }

    #[test]
    fn without_checkpoint_replays_everything() {
        assert_eq!(
            plan_restore(None, 0, 10),
            RestorePlan {
                wipe: true,
                from: 0,
                to: 10
            }
        );
    }

    #[test]
    fn checkpoint_skips_what_is_local() {
        assert_eq!(
            plan_restore(Some(&cp(7)), 0, 10),
            RestorePlan {
                wipe: false,
                from: 7,
                to: 10
            }
        );
        assert_eq!(plan_restore(Some(&cp(10)), 0, 10).records(), 0);
    }

    #[test]
    fn checkpoint_beyond_the_changelog_is_foreign() {
        assert_eq!(
            plan_restore(Some(&cp(12)), 0, 10),
            RestorePlan {
                wipe: true,
                from: 0,
                to: 10
            }
        );
    }

    #[test]
    fn checkpoint_before_retained_records_wipes() {
        assert_eq!(
            plan_restore(Some(&cp(3)), 5, 10),
            RestorePlan {
                wipe: true,
                from: 5,
                to: 10
            }
        );
    }
}
