//! Where a task's state comes from when it opens: pure decisions, tested without I/O.

use serde::{Deserialize, Serialize};

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

#[cfg(test)]
mod tests {
    use super::*;

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
