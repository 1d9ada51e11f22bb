//! The one processor trait every operator is built from, and the context it works through.

use crate::dlq::DeadLetter;
use crate::error::ProcessError;
use crate::graph::{Node, NodeId};
use crate::record::{EventTime, Record};
use crate::store::{KvStore, KvView, WindowStore, WindowView};
use crate::task::{Origin, TaskId, TaskState};

/// What a stream may carry: owned, cloneable (for fan-out), sendable to a task thread.
pub trait Data: Clone + Send + 'static {}
impl<T: Clone + Send + 'static> Data for T {}

/// A timer that fired.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Timer {
    /// An event-time timer scheduled with [`Context::schedule`], firing once stream time
    /// reaches `at`; `key` is what the processor gave when scheduling.
    EventTime { at: EventTime, key: Vec<u8> },
    /// A wall-clock punctuation registered with [`Context::schedule_wall_clock`].
    WallClock { now: i64 },
}

/// Processes one record at a time. Only [`Processor::process`] is required.
///
/// A processor reads and writes the stores it was declared with, schedules timers, and
/// forwards records downstream, all through its [`Context`]. A bad record is not an error:
/// send it to the DLQ with [`Context::dead_letter`] and return `Ok`. An `Err` stops the task
/// (the state or the log failed, or a bug).
pub trait Processor: Send + 'static {
    type InKey: Data;
    type InValue: Data;
    type OutKey: Data;
    type OutValue: Data;

    /// Called once when the task opens, after its stores are restored.
    fn init(&mut self, _ctx: &mut Context<'_, Self::OutKey, Self::OutValue>) -> Result<(), ProcessError> {
        Ok(())
    }

    fn process(
        &mut self,
        ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
        record: Record<Self::InKey, Self::InValue>,
    ) -> Result<(), ProcessError>;

    fn on_timer(
        &mut self,
        _ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
        _timer: Timer,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    /// Called before each commit of the task.
    fn on_commit(
        &mut self,
        _ctx: &mut Context<'_, Self::OutKey, Self::OutValue>,
    ) -> Result<(), ProcessError> {
        Ok(())
    }

    /// Called when the task closes; stores are no longer reachable.
    fn close(&mut self) {}
}

/// A processor's window on its task while it handles one record or timer.
pub struct Context<'a, K, V> {
    pub(crate) task: &'a mut TaskState,
    pub(crate) children: &'a mut Vec<Box<dyn Node<K, V>>>,
    pub(crate) node: NodeId,
}

impl<K: Data, V: Data> Context<'_, K, V> {
    /// Sends a record to every downstream node, depth first, before returning.
    pub fn forward(&mut self, record: Record<K, V>) -> Result<(), ProcessError> {
        crate::graph::push_all(self.children, self.task, record)
    }

    /// The task's stream time: the largest event time it has processed.
    pub fn stream_time(&self) -> EventTime {
        self.task.stream_time
    }

    /// The task's wall clock in ms since the epoch (the test driver's clock in tests).
    pub fn wall_clock(&self) -> i64 {
        self.task.wall_clock
    }

    pub fn task_id(&self) -> &TaskId {
        &self.task.id
    }

    pub fn partition(&self) -> u32 {
        self.task.id.partition
    }

    /// Where the record being processed was read from (none for timers).
    pub fn origin(&self) -> Option<&Origin> {
        self.task.origin.as_ref()
    }

    pub fn kv<'s, SK, SV>(&'s mut self, store: &'s KvStore<SK, SV>) -> KvView<'s, SK, SV> {
        KvView {
            store: self.task.store_mut(store.id, &store.name, self.node),
            handle: store,
        }
    }

    pub fn window<'s, SK, SV>(&'s mut self, store: &'s WindowStore<SK, SV>) -> WindowView<'s, SK, SV> {
        WindowView {
            store: self.task.store_mut(store.id, &store.name, self.node),
            handle: store,
        }
    }

    /// Fires [`Timer::EventTime`] once stream time reaches `at`. Scheduling the same
    /// `(at, key)` twice fires once. Timers are part of the task's state: they survive
    /// restarts and move with the task.
    pub fn schedule(&mut self, at: EventTime, key: &[u8]) {
        self.task.timers.schedule(self.node, at, key);
    }

    pub fn cancel(&mut self, at: EventTime, key: &[u8]) {
        self.task.timers.cancel(self.node, at, key);
    }

    /// Calls [`Processor::on_timer`] with [`Timer::WallClock`] every `interval_ms` of wall
    /// time. Register in [`Processor::init`].
    pub fn schedule_wall_clock(&mut self, interval_ms: i64) {
        self.task
            .timers
            .schedule_wall_clock(self.node, interval_ms, self.task.wall_clock);
    }

    /// Sends a rejected record to `<topic>.dlq` with the reason. The task goes on.
    pub fn dead_letter(&mut self, letter: DeadLetter) {
        self.task.dead_letter(letter);
    }
}
