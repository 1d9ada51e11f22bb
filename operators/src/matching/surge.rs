//! Surge pricing (DESIGN.md §5): demand over supply in the pickup's resolution-7 cell.

use std::collections::VecDeque;

use foldhash::{HashMap, HashMapExt};
use rust_decimal::{Decimal, RoundingStrategy};

/// `demand / max(1, supply)`, rounded down to one decimal, clamped to `[min, max]`.
pub fn multiplier(demand: usize, supply: usize, min: Decimal, max: Decimal) -> Decimal {
    let ratio = Decimal::from(demand as u64) / Decimal::from(supply.max(1) as u64);
    let mut surge = ratio
        .round_dp_with_strategy(1, RoundingStrategy::ToZero)
        .clamp(min, max);
    surge.rescale(1);
    surge
}

/// Width of a demand bucket: a bucket holds the request times of one second of a cell.
pub const BUCKET_MS: i64 = 1_000;

/// The request times of the pickup cells of one task, in one-second buckets per cell.
///
/// The demand of a request at `at` is the number of requests of its cell in `(at - window, at]`,
/// itself included, exact to the millisecond, among the requests kept: those no more than two
/// windows behind the newest request of the task. So a request that arrives up to a window late
/// still counts what came before it. A request reads the buckets of its cell in memory and
/// writes one, so its cost does not grow with the demand of the window. The store holds one
/// entry per bucket (`demand_key`), from which `load` rebuilds the memory when the task opens.
#[derive(Clone)]
pub struct DemandWindow {
    window_ms: i64,
    cells: HashMap<u64, VecDeque<Bucket>>,
    /// The newest request time of the task, and what it was at the last sweep of all cells.
    newest: i64,
    swept: i64,
}

#[derive(Clone)]
struct Bucket {
    start: i64,
    /// Milliseconds after `start`, in order.
    offsets: Vec<u16>,
}

/// What a request changed in the buckets, for the store.
pub enum BucketChange<'a> {
    Put {
        cell: u64,
        start: i64,
        offsets: &'a Vec<u16>,
    },
    Delete {
        cell: u64,
        start: i64,
    },
}

/// The store key of a cell's bucket: `<cell in hex>/<bucket start ms>`.
pub fn demand_key(cell: u64, start: i64) -> String {
    format!("{cell:x}/{start}")
}

/// The cell and bucket start of a store key written by `demand_key`.
pub fn parse_demand_key(key: &str) -> Option<(u64, i64)> {
    let (cell, start) = key.split_once('/')?;
    Some((u64::from_str_radix(cell, 16).ok()?, start.parse().ok()?))
}

impl DemandWindow {
    pub fn new(window: std::time::Duration) -> Self {
        DemandWindow {
            window_ms: i64::try_from(window.as_millis()).unwrap_or(i64::MAX).max(1),
            cells: HashMap::new(),
            newest: i64::MIN,
            swept: i64::MIN,
        }
    }

    /// Requests at or before this time are no longer kept.
    fn horizon(&self) -> i64 {
        self.newest.saturating_sub(self.window_ms.saturating_mul(2))
    }

    /// Forgets every cell (before the task reloads them).
    pub fn clear(&mut self) {
        self.cells.clear();
        self.newest = i64::MIN;
        self.swept = i64::MIN;
    }

    /// Adds a bucket read from the store (when the task opens).
    pub fn load(&mut self, cell: u64, start: i64, mut offsets: Vec<u16>) {
        let Some(&last) = offsets.iter().max() else {
            return;
        };
        offsets.sort_unstable();
        self.newest = self.newest.max(start + i64::from(last));
        self.swept = self.newest;
        let buckets = self.cells.entry(cell).or_default();
        match buckets.binary_search_by_key(&start, |b| b.start) {
            Ok(i) => {
                let bucket = &mut buckets[i];
                bucket.offsets.extend(offsets);
                bucket.offsets.sort_unstable();
            }
            Err(i) => buckets.insert(i, Bucket { start, offsets }),
        }
    }

    /// Records a request of `cell` at `at` and returns its demand. `changed` hears of every
    /// bucket written or dropped, once the memory holds the new state.
    pub fn record(&mut self, cell: u64, at: i64, changed: &mut dyn FnMut(BucketChange<'_>)) -> usize {
        self.newest = self.newest.max(at);
        let horizon = self.horizon();
        let after = at.saturating_sub(self.window_ms).max(horizon);
        let buckets = self.cells.entry(cell).or_default();
        let demand = if at <= horizon {
            // Too late to be kept: it counts itself only.
            1
        } else {
            let start = at.div_euclid(BUCKET_MS) * BUCKET_MS;
            let offset = u16::try_from(at - start).expect("within a bucket");
            let i = match buckets.binary_search_by_key(&start, |b| b.start) {
                Ok(i) => i,
                Err(i) => {
                    let offsets = Vec::new();
                    buckets.insert(i, Bucket { start, offsets });
                    i
                }
            };
            let offsets = &mut buckets[i].offsets;
            offsets.insert(offsets.partition_point(|&o| o <= offset), offset);
            changed(BucketChange::Put {
                cell,
                start,
                offsets: &buckets[i].offsets,
            });
            count_in(buckets, after, at)
        };
        drop_behind(cell, buckets, horizon, changed);
        if buckets.is_empty() {
            self.cells.remove(&cell);
        }
        self.sweep(changed);
        demand
    }

    /// Once the newest request has moved on by two windows since the last sweep, drops what
    /// every cell holds at or before the horizon, so cells that fell quiet do not keep their
    /// last requests for ever. (Like stream time, the newest time follows a request stamped far
    /// ahead, and the cells behind it are emptied.)
    fn sweep(&mut self, changed: &mut dyn FnMut(BucketChange<'_>)) {
        if self.swept != i64::MIN && self.newest < self.swept.saturating_add(self.window_ms.saturating_mul(2))
        {
            return;
        }
        self.swept = self.newest;
        let horizon = self.horizon();
        self.cells.retain(|&cell, buckets| {
            drop_behind(cell, buckets, horizon, changed);
            !buckets.is_empty()
        });
    }

    /// The number of cells that hold requests, and of the requests they hold.
    pub fn size(&self) -> (usize, usize) {
        let times = self.cells.values().flatten().map(|b| b.offsets.len()).sum();
        (self.cells.len(), times)
    }
}

/// Drops the buckets that end at or before `horizon`.
fn drop_behind(
    cell: u64,
    buckets: &mut VecDeque<Bucket>,
    horizon: i64,
    changed: &mut dyn FnMut(BucketChange<'_>),
) {
    while let Some(front) = buckets.front() {
        if front.start + BUCKET_MS - 1 > horizon {
            break;
        }
        changed(BucketChange::Delete {
            cell,
            start: front.start,
        });
        buckets.pop_front();
    }
}

/// The number of times in `(after, until]` among ordered buckets.
fn count_in(buckets: &VecDeque<Bucket>, after: i64, until: i64) -> usize {
    let first = buckets.partition_point(|b| b.start + BUCKET_MS - 1 <= after);
    let mut count = 0;
    for bucket in buckets.range(first..) {
        if bucket.start > until {
            break;
        }
        let end = bucket.start + BUCKET_MS - 1;
        if bucket.start > after && end <= until {
            count += bucket.offsets.len();
        } else {
            let lo = bucket
                .offsets
                .partition_point(|&o| bucket.start + i64::from(o) <= after);
            let hi = bucket
                .offsets
                .partition_point(|&o| bucket.start + i64::from(o) <= until);
            count += hi - lo;
        }
    }
    count
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Duration;

    use proptest::prelude::*;

    use super::*;

    fn m(demand: usize, supply: usize) -> String {
        multiplier(demand, supply, Decimal::ONE, Decimal::from(3)).to_string()
    }

    #[test]
    fn rounds_down_and_clamps() {
        assert_eq!(m(1, 5), "1.0");
        assert_eq!(m(2, 1), "2.0");
        assert_eq!(m(5, 3), "1.6");
        assert_eq!(m(7, 0), "3.0");
        assert_eq!(m(3, 0), "3.0");
        assert_eq!(m(2, 0), "2.0");
    }

    /// The store as the changes leave it.
    #[derive(Default)]
    struct Mirror(BTreeMap<(u64, i64), Vec<u16>>);

    impl Mirror {
        fn record(&mut self, window: &mut DemandWindow, cell: u64, at: i64) -> usize {
            window.record(cell, at, &mut |change| match change {
                BucketChange::Put { cell, start, offsets } => {
                    self.0.insert((cell, start), offsets.clone());
                }
                BucketChange::Delete { cell, start } => {
                    assert!(
                        self.0.remove(&(cell, start)).is_some(),
                        "dropped a bucket never written"
                    );
                }
            })
        }

        fn reload(&self, window: Duration) -> DemandWindow {
            let mut loaded = DemandWindow::new(window);
            for ((cell, start), offsets) in &self.0 {
                let key = demand_key(*cell, *start);
                assert_eq!(parse_demand_key(&key), Some((*cell, *start)));
                loaded.load(*cell, *start, offsets.clone());
            }
            loaded
        }
    }

    #[test]
    fn demand_window_is_half_open() {
        let mut window = DemandWindow::new(Duration::from_secs(300));
        let mut store = Mirror::default();
        for at in [0, 100_000, 200_000] {
            store.record(&mut window, 7, at);
        }
        assert_eq!(
            store.record(&mut window, 7, 300_000),
            3,
            "a request exactly 5 min earlier is out"
        );
        assert_eq!(store.record(&mut window, 7, 300_001), 4);
        assert_eq!(store.record(&mut window, 8, 300_001), 1, "cells count apart");
    }

    #[test]
    fn a_late_request_leaves_the_later_ones_counted() {
        let mut window = DemandWindow::new(Duration::from_secs(300));
        let mut store = Mirror::default();
        for at in [10_000, 20_000, 30_000] {
            store.record(&mut window, 1, at);
        }
        assert_eq!(store.record(&mut window, 1, 15_000), 2, "10 s and itself");
        assert_eq!(store.record(&mut window, 1, 40_000), 5);
    }

    #[test]
    fn what_is_kept_is_bounded_by_the_window_and_quiet_cells_are_swept() {
        let window_len = Duration::from_secs(60);
        let mut window = DemandWindow::new(window_len);
        let mut store = Mirror::default();
        // Ten requests a second in cell 1 for an hour; cell 2 asks once at the start.
        store.record(&mut window, 2, 0);
        for i in 0..36_000i64 {
            let demand = store.record(&mut window, 1, i * 100);
            assert_eq!(demand, (i + 1).min(600) as usize);
        }
        let (cells, times) = window.size();
        assert_eq!(cells, 1, "the quiet cell is gone");
        assert!(times <= 1_210, "two windows of requests and a bucket: {times}");
        assert_eq!(
            store.0.values().map(Vec::len).sum::<usize>(),
            times,
            "the store holds what memory holds"
        );
    }

    #[derive(Debug, Clone)]
    struct Step {
        cell: u64,
        /// Ahead of (positive) or behind (negative) the newest request so far.
        delta: i64,
    }

    fn steps() -> impl Strategy<Value = Vec<Step>> {
        prop::collection::vec(
            (
                0u64..3,
                prop_oneof![4 => 0i64..700, 1 => -12_000i64..0, 1 => 0i64..9_000],
            )
                .prop_map(|(cell, delta)| Step { cell, delta }),
            1..300,
        )
    }

    proptest! {
        /// Against every request kept in a list: the demand of each request, the store the
        /// changes leave, and a window loaded from that store, which counts on as the first.
        #[test]
        fn counts_what_a_list_of_all_requests_counts(steps in steps(), split in 0usize..300) {
            let window_len = Duration::from_millis(5_000);
            let w = 5_000i64;
            let mut window = DemandWindow::new(window_len);
            let mut store = Mirror::default();
            let mut all: Vec<(u64, i64)> = Vec::new();
            let mut newest = i64::MIN;
            let split = split.min(steps.len());
            for (n, step) in steps.iter().enumerate() {
                if n == split {
                    window = store.reload(window_len);
                }
                let at = if newest == i64::MIN { 1_000_000 } else { newest + step.delta };
                newest = newest.max(at);
                all.push((step.cell, at));
                let horizon = newest - 2 * w;
                let expected = if at <= horizon {
                    1
                } else {
                    all.iter()
                        .filter(|&&(c, t)| c == step.cell && t > (at - w).max(horizon) && t <= at)
                        .count()
                };
                prop_assert_eq!(store.record(&mut window, step.cell, at), expected, "step {}", n);
                let kept = all.iter().filter(|&&(_, t)| t > horizon).count();
                let (_, times) = window.size();
                prop_assert!(times >= kept, "holds every request past the horizon");
                prop_assert_eq!(store.0.values().map(Vec::len).sum::<usize>(), times);
            }
        }
    }
}
