//! Event-time windows with a grace period.
//!
//! A [`WindowAssigner`] says which windows `[start, end)` a timestamp falls in: fixed-size
//! [`TumblingWindows`] here, calendar days and weeks in a time zone in the overtime operator.
//! A window accepts records until stream time passes `end + grace`; then it closes, emits its
//! final result once and is dropped. A record for a closed window goes to the DLQ.
//!
//! [`WindowedAggregate`] is the generic windowed aggregation, built from the same parts as
//! every other processor: a window store and event-time timers.

use std::marker::PhantomData;
use std::sync::Arc;

use bytes::Bytes;

use crate::dlq::DeadLetter;
use crate::error::ProcessError;
use crate::processor::{Context, Data, Processor, Timer};
use crate::record::{EventTime, Record};
use crate::store::WindowStore;

/// A window `[start, end)` in event time (ms).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
pub struct Window {
    pub start: EventTime,
    pub end: EventTime,
}

impl Window {
    pub fn contains(&self, ts: EventTime) -> bool {
        self.start <= ts && ts < self.end
    }
}

/// Assigns timestamps to windows.
pub trait WindowAssigner: Send + Sync + 'static {
    /// The windows that contain `ts`.
    fn assign(&self, ts: EventTime) -> Vec<Window>;
    /// The window that starts at `start` (to rebuild it from a store key).
    fn window_at(&self, start: EventTime) -> Window;
}

/// Back-to-back windows of one size, aligned to the epoch.
#[derive(Debug, Clone, Copy)]
pub struct TumblingWindows {
    pub size_ms: i64,
}

impl TumblingWindows {
    pub fn of(size: std::time::Duration) -> Self {
        TumblingWindows {
            size_ms: size.as_millis().max(1) as i64,
        }
    }
}

impl WindowAssigner for TumblingWindows {
    fn assign(&self, ts: EventTime) -> Vec<Window> {
        let start = ts.div_euclid(self.size_ms) * self.size_ms;
        vec![Window {
            start,
            end: start + self.size_ms,
        }]
    }

    fn window_at(&self, start: EventTime) -> Window {
        Window {
            start,
            end: start + self.size_ms,
        }
    }
}

/// Whether a window is closed at `stream_time`.
pub fn is_closed(window: &Window, grace_ms: i64, stream_time: EventTime) -> bool {
    stream_time >= window.end.saturating_add(grace_ms)
}

/// A windowed result: emitted on every change, and once more with `is_final` at close.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Windowed<A> {
    pub window: Window,
    pub value: A,
    pub is_final: bool,
}

type Init<A> = Arc<dyn Fn() -> A + Send + Sync>;
type Fold<V, A> = Arc<dyn Fn(A, &V) -> A + Send + Sync>;

/// Aggregates values per key and window. Late records (their window closed) go to the DLQ of
/// `dlq_topic` with the reason.
pub struct WindowedAggregate<K, V, A> {
    pub(crate) assigner: Arc<dyn WindowAssigner>,
    pub(crate) grace_ms: i64,
    pub(crate) store: WindowStore<K, A>,
    pub(crate) init: Init<A>,
    pub(crate) fold: Fold<V, A>,
    pub(crate) dlq_topic: String,
    pub(crate) key_bytes: crate::codec::Codec<K>,
    pub(crate) _v: PhantomData<fn(V)>,
}

impl<K: Data, V: Data, A: Data> WindowedAggregate<K, V, A> {
    pub fn new(
        assigner: impl WindowAssigner,
        grace: std::time::Duration,
        store: WindowStore<K, A>,
        init: impl Fn() -> A + Send + Sync + 'static,
        fold: impl Fn(A, &V) -> A + Send + Sync + 'static,
        dlq_topic: &str,
    ) -> Self {
        let key_bytes = store.key;
        WindowedAggregate {
            assigner: Arc::new(assigner),
            grace_ms: grace.as_millis() as i64,
            store,
            init: Arc::new(init),
            fold: Arc::new(fold),
            dlq_topic: dlq_topic.to_string(),
            key_bytes,
            _v: PhantomData,
        }
    }
}

impl<K: Data, V: Data, A: Data> Clone for WindowedAggregate<K, V, A> {
    fn clone(&self) -> Self {
        WindowedAggregate {
            assigner: self.assigner.clone(),
            grace_ms: self.grace_ms,
            store: self.store.clone(),
            init: self.init.clone(),
            fold: self.fold.clone(),
            dlq_topic: self.dlq_topic.clone(),
            key_bytes: self.key_bytes,
            _v: PhantomData,
        }
    }
}

impl<K: Data, V: Data, A: Data> Processor for WindowedAggregate<K, V, A> {
    type InKey = K;
    type InValue = V;
    type OutKey = K;
    type OutValue = Windowed<A>;

    fn process(
        &mut self,
        ctx: &mut Context<'_, K, Windowed<A>>,
        record: Record<K, V>,
    ) -> Result<(), ProcessError> {
        let now = ctx.stream_time();
        for window in self.assigner.assign(record.ts) {
            if is_closed(&window, self.grace_ms, now) {
                let key = Bytes::from(self.key_bytes.to_vec(&record.key));
                ctx.dead_letter(DeadLetter {
                    topic: self.dlq_topic.clone(),
                    key,
                    value: None,
                    ts: record.ts,
                    field: Some("ts".into()),
                    reason: format!(
                        "late record: its window [{}, {}) closed at stream time {} (grace {} ms)",
                        window.start,
                        window.end,
                        window.end + self.grace_ms,
                        self.grace_ms
                    ),
                    stage: self.store.name().to_string(),
                });
                continue;
            }
            let current = ctx.window(&self.store).get(&record.key, window.start)?;
            if current.is_none() {
                let mut timer_key = self.key_bytes.to_vec(&record.key);
                timer_key.extend_from_slice(&window.start.to_be_bytes());
                ctx.schedule(window.end + self.grace_ms, &timer_key);
            }
            let value = (self.fold)(current.unwrap_or_else(|| (self.init)()), &record.value);
            ctx.window(&self.store).put(&record.key, window.start, &value);
            ctx.forward(Record {
                key: record.key.clone(),
                value: Windowed {
                    window,
                    value,
                    is_final: false,
                },
                ts: record.ts,
            })?;
        }
        Ok(())
    }

    fn on_timer(&mut self, ctx: &mut Context<'_, K, Windowed<A>>, timer: Timer) -> Result<(), ProcessError> {
        let Timer::EventTime { at, key } = timer else {
            return Ok(());
        };
        let Some((key_bytes, start_bytes)) = key.split_at_checked(key.len().saturating_sub(8)) else {
            return Ok(());
        };
        let start = i64::from_be_bytes(start_bytes.try_into().unwrap_or([0; 8]));
        let Ok(k) = self.key_bytes.decode(key_bytes) else {
            return Ok(());
        };
        if let Some(value) = ctx.window(&self.store).get(&k, start)? {
            ctx.window(&self.store).delete(&k, start);
            let window = self.assigner.window_at(start);
            ctx.forward(Record {
                key: k,
                value: Windowed {
                    window,
                    value,
                    is_final: true,
                },
                ts: at,
            })?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tumbling_windows_align_to_the_epoch() {
        let w = TumblingWindows { size_ms: 1000 };
        assert_eq!(
            w.assign(2500),
            vec![Window {
                start: 2000,
                end: 3000
            }]
        );
        assert_eq!(w.assign(-1), vec![Window { start: -1000, end: 0 }]);
    }

    #[test]
    fn a_window_closes_after_its_grace() {
        let w = Window { start: 0, end: 100 };
        assert!(!is_closed(&w, 50, 149));
        assert!(is_closed(&w, 50, 150));
    }
}
