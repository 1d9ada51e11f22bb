//! Deterministic runs: records are processed one at a time in the order the caller gives, and
//! each one is followed through every sub-topology it reaches before the next starts.
//!
//! Records a step writes to topics the topology reads (internal topics, and outputs another
//! step consumes) are handed to their readers in memory, in the order they were produced (a FIFO across all tasks), and appended to the log at the next
//! commit. Stream time is global: before a record with a later timestamp is processed, every
//! task's event-time timers due by then fire, ordered by (time, node, key). Nothing here
//! depends on how many partitions there are or how tasks are spread, so the same input gives
//! the same outputs, in the same order, for any partition count.

use std::collections::{BTreeSet, VecDeque};
use std::sync::Arc;

use super::tasks::TaskSet;
use super::{RuntimeError, Shared};
use crate::error::ProcessError;
use crate::graph::NodeId;
use crate::log::Membership;
use crate::record::{EventTime, LogRecord, ProducerRecord, TopicPartition};
use crate::task::TaskId;

/// A pending timer: (time, node, key).
type TimerRef = (EventTime, NodeId, Vec<u8>);

/// A deterministic run over every task of the topology.
pub struct Lockstep {
    shared: Arc<Shared>,
    tasks: TaskSet,
    fifo: VecDeque<ProducerRecord>,
    time: EventTime,
    /// Records written to non-internal topics, in production order, since last taken.
    outputs: Vec<ProducerRecord>,
    /// Internal partitions handed over in memory since the last commit.
    handed_over: std::collections::BTreeSet<TopicPartition>,
}

impl std::fmt::Debug for Lockstep {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Lockstep")
            .field("time", &self.time)
            .field("tasks", &self.tasks.tasks.len())
            .finish()
    }
}

impl Lockstep {
    pub(super) fn new(shared: Arc<Shared>) -> Result<Lockstep, RuntimeError> {
        let producer = shared.log.producer(None, None)?;
        let mut tasks = TaskSet::new(shared.clone(), producer);
        let mut time = EventTime::MIN;
        let mut ids = BTreeSet::new();
        for sub in shared.topology.subtopologies() {
            let partitions = sub.topics.first().map_or(1, |t| shared.partitions[t]);
            ids.extend((0..partitions).map(|partition| TaskId {
                subtopology: sub.id,
                partition,
            }));
        }
        let (_, errors) = tasks.open_many(&ids);
        if let Some(e) = errors.into_iter().next() {
            return Err(e);
        }
        for task in tasks.tasks.values() {
            time = time.max(task.stream_time());
        }
        Ok(Lockstep {
            shared,
            tasks,
            fifo: VecDeque::new(),
            time,
            outputs: Vec::new(),
            handed_over: Default::default(),
        })
    }

    /// The global stream time.
    pub fn stream_time(&self) -> EventTime {
        self.time
    }

    /// Processes one record read from `tp` (fully, through every sub-topology it reaches).
    pub fn process(&mut self, tp: &TopicPartition, record: &LogRecord) -> Result<(), RuntimeError> {
        self.advance_time(record.ts)?;
        let id = self.task(tp)?;
        let task = self.tasks.get_mut(id).expect("opened at start");
        task.process_from(tp, record)?;
        self.collect(id);
        self.drain()
    }

    /// Processes several records as if they arrived at the same moment on different
    /// partitions: each is handled by the task that reads it first, and only then are the
    /// records they produced followed through the topology — so their effects race, as they
    /// would between concurrent tasks.
    pub fn process_concurrently(
        &mut self,
        records: &[(TopicPartition, LogRecord)],
    ) -> Result<(), RuntimeError> {
        if let Some(max) = records.iter().map(|(_, r)| r.ts).max() {
            self.advance_time(max)?;
        }
        for (tp, record) in records {
            let id = self.task(tp)?;
            self.tasks
                .get_mut(id)
                .expect("opened at start")
                .process_from(tp, record)?;
            self.collect(id);
        }
        self.drain()
    }

    /// Processes every record of `tp` from the task's position to the end of the log.
    pub fn process_available(&mut self, tp: &TopicPartition) -> Result<usize, RuntimeError> {
        let id = self.task(tp)?;
        let from = self
            .tasks
            .get_mut(id)
            .expect("open")
            .fetch_position(tp)
            .unwrap_or(0);
        let mut consumer = self.shared.log.consumer(Membership::Manual)?;
        consumer.assign(&[(tp.clone(), from)])?;
        let end = self.shared.log.end_offset(tp)?;
        let mut count = 0;
        let mut position = from;
        while position < end {
            let fetched = consumer.poll(10_000, std::time::Duration::from_millis(100))?;
            if fetched.is_empty() {
                break;
            }
            for record in fetched.into_iter().flat_map(|f| f.records) {
                position = record.offset + 1;
                self.process(tp, &record)?;
                count += 1;
            }
        }
        Ok(count)
    }

    /// Moves global stream time to `time`, firing every timer due by it in (time, node, key)
    /// order, each followed through the topology.
    pub fn advance_time(&mut self, time: EventTime) -> Result<(), RuntimeError> {
        if time <= self.time {
            return Ok(());
        }
        self.time = time;
        for task in self.tasks.tasks.values_mut() {
            task.set_stream_time(time);
        }
        loop {
            let mut best: Option<(TimerRef, TaskId)> = None;
            for (id, task) in &self.tasks.tasks {
                if let Some(timer) = task.next_timer()
                    && timer.0 <= time
                    && best.as_ref().is_none_or(|(b, _)| timer < *b)
                {
                    best = Some((timer, *id));
                }
            }
            let Some((_, id)) = best else { break };
            self.tasks.get_mut(id).expect("open").fire_next_timer(time)?;
            self.collect(id);
            self.drain()?;
        }
        Ok(())
    }

    /// Fires every timer due by the current stream time (those scheduled at exactly the time
    /// of the last record included), so that a run ends with nothing due left.
    pub fn fire_due_timers(&mut self) -> Result<(), RuntimeError> {
        let time = self.time;
        self.time = time.saturating_sub(1);
        self.advance_time(time)
    }

    /// Moves every task's wall clock and runs due punctuations.
    pub fn advance_wall_clock(&mut self, now: i64) -> Result<(), RuntimeError> {
        let ids: Vec<TaskId> = self.tasks.tasks.keys().copied().collect();
        for id in ids {
            self.tasks.get_mut(id).expect("open").punctuate(now)?;
            self.collect(id);
            self.drain()?;
        }
        Ok(())
    }

    fn task(&self, tp: &TopicPartition) -> Result<TaskId, RuntimeError> {
        self.tasks.by_input(tp).ok_or_else(|| {
            RuntimeError::Process(ProcessError::Bug {
                processor: "lockstep".into(),
                detail: format!("no task reads {tp}"),
            })
        })
    }

    /// Takes the outputs of the task that just ran: internal ones queue for their readers.
    fn collect(&mut self, id: TaskId) {
        let task = self.tasks.get_mut(id).expect("open");
        let produced: Vec<ProducerRecord> = task.state.outputs.drain(..).collect();
        for record in produced {
            if !self.shared.topology.is_internal(&record.topic) {
                self.outputs.push(record.clone());
            }
            // Topics the topology reads itself (internal ones, and outputs such as a ledger
            // that another step sums up) are handed to their readers in production order.
            if self.shared.topology.reader_of(&record.topic).is_some() {
                self.fifo.push_back(record);
            } else {
                self.pending_append(record);
            }
        }
    }

    fn pending_append(&mut self, record: ProducerRecord) {
        // Appended at the next commit, before the tasks' changelogs.
        let _ = self.tasks.send(record);
    }

    fn drain(&mut self) -> Result<(), RuntimeError> {
        while let Some(record) = self.fifo.pop_front() {
            let tp = TopicPartition::new(&*record.topic, record.partition);
            let id = self.task(&tp)?;
            let task = self.tasks.get_mut(id).expect("open");
            task.process_direct(&tp, &record.key, record.value.as_ref(), record.ts)?;
            self.handed_over.insert(tp);
            self.pending_append(record);
            self.collect(id);
        }
        Ok(())
    }

    /// Commits: appends the records handed over in memory, then every task's state with its
    /// positions (internal partitions count as read to their end).
    pub fn commit(&mut self) -> Result<(), RuntimeError> {
        // First make the handed-over records durable, to learn where internal partitions end.
        self.tasks.commit_extra_only()?;
        for tp in std::mem::take(&mut self.handed_over) {
            let end = self.shared.log.end_offset(&tp)?;
            if let Some(id) = self.tasks.by_input(&tp) {
                self.tasks.get_mut(id).expect("open").set_position(&tp, end);
            }
        }
        self.tasks.commit(true)
    }

    /// Records written to non-internal topics since the last call, in production order.
    pub fn take_outputs(&mut self) -> Vec<ProducerRecord> {
        std::mem::take(&mut self.outputs)
    }

    /// Commits and closes every task.
    pub fn close(mut self) -> Result<(), RuntimeError> {
        self.commit()?;
        self.tasks.close_all(true)
    }

    /// Closes every task without committing (a crash).
    pub fn abandon(mut self) {
        let _ = self.tasks.close_all(false);
    }

    /// Pending event-time timers across all tasks.
    pub fn pending_timers(&self) -> usize {
        self.tasks.tasks.values().map(|t| t.pending_timers()).sum()
    }
}
