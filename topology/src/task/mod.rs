//! Tasks: one per sub-topology and partition. A task owns its node tree, its stores, its
//! timers, its input positions and the outputs it produced since its last commit.
//!
//! Opening a task restores its stores from its changelog partition (only what the local
//! checkpoint lacks) and takes its input positions from the last commit marker. Processing
//! picks, among the task's buffered input partitions, the record with the smallest
//! timestamp. Committing hands the outputs, the changelog writes and a commit marker with the
//! positions to a producer; once the commit landed, the writes are applied to the local
//! stores and, from time to time, a checkpoint is written.

pub(crate) mod timers;

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use tracing::{debug, info, warn};

use self::timers::Timers;
use crate::dlq::{DeadLetter, DeadLetterError, DeadLetterValue, original_value};
use crate::error::{LogError, ProcessError, StoreError};
use crate::graph::{NodeEvent, NodeId, RawInput, RootNode};
use crate::log::{Log, Membership, Producer};
use crate::processor::Timer;
use crate::record::{EventTime, LogRecord, ProducerRecord, TopicPartition, partition_for};
use crate::runtime::Shared;
use crate::store::changelog::{self, CommitMarker, Entry};
use crate::store::restore::coalesce;
use crate::store::staged::StagedStore;
use crate::store::{Checkpoint, StoreBackend, StoreId, WriteBatch, plan_restore};

/// Which task: a sub-topology and one partition of its input topics.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TaskId {
    pub subtopology: u32,
    pub partition: u32,
}

/// Where the record being processed came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Origin {
    pub topic: Arc<str>,
    pub partition: u32,
    /// `None` for records handed over in memory (deterministic replays).
    pub offset: Option<u64>,
}

/// What processors reach through their context.
pub(crate) struct TaskState {
    pub(crate) id: TaskId,
    pub(crate) name: Arc<str>,
    pub(crate) app_id: Arc<str>,
    pub(crate) stream_time: EventTime,
    pub(crate) wall_clock: i64,
    pub(crate) origin: Option<Origin>,
    pub(crate) stores: Vec<Option<StagedStore>>,
    pub(crate) timers: Timers,
    pub(crate) outputs: Vec<ProducerRecord>,
    pub(crate) partitions: Arc<HashMap<String, u32>>,
    pub(crate) processed: u64,
    pub(crate) dead_letters: u64,
}

impl TaskState {
    pub(crate) fn store_mut(&mut self, id: StoreId, name: &str, node: NodeId) -> &mut StagedStore {
        match self.stores.get_mut(id).and_then(Option::as_mut) {
            Some(store) => store,
            // The builder ties every store to one sub-topology; reaching another's is a bug in
            // the processor, which declared one store and used another.
            None => panic!(
                "node #{node} of task {} used store {name:?}, which it did not declare",
                self.name
            ),
        }
    }

    pub(crate) fn partitions_of(&self, topic: &str) -> u32 {
        self.partitions.get(topic).copied().unwrap_or(1)
    }

    pub(crate) fn emit(&mut self, record: ProducerRecord) {
        self.outputs.push(record);
    }

    pub(crate) fn dead_letter(&mut self, letter: DeadLetter) {
        self.dead_letters += 1;
        let dlq = format!("{}.dlq", letter.topic);
        let topic = if self.partitions.contains_key(&dlq) {
            dlq
        } else {
            format!("{}-dlq", self.app_id)
        };
        let origin = self.origin.as_ref().filter(|o| *o.topic == *letter.topic);
        let value = DeadLetterValue {
            topic: &letter.topic,
            partition: origin.map(|o| o.partition),
            offset: origin.and_then(|o| o.offset),
            key: String::from_utf8_lossy(&letter.key).into_owned(),
            value: original_value(letter.value.as_deref()),
            error: DeadLetterError {
                field: letter.field.as_deref(),
                message: &letter.reason,
            },
            stage: &letter.stage,
            ts: letter.ts,
        };
        debug!(task = %self.name, topic = %letter.topic, reason = %letter.reason, "dead letter");
        let bytes = serde_json::to_vec(&value).expect("dead letters encode");
        let partition = partition_for(&letter.key, self.partitions_of(&topic));
        self.outputs.push(ProducerRecord {
            topic: topic.into(),
            partition,
            ts: letter.ts,
            key: letter.key,
            value: Some(Bytes::from(bytes)),
        });
    }
}

#[derive(Debug)]
struct InputQueue {
    /// The topic, shared with the origin of every record processed from it.
    topic: Arc<str>,
    /// Next offset to process.
    next: u64,
    /// Records fetched and not processed yet, in offset order.
    buffer: VecDeque<LogRecord>,
}

/// What restoring found.
#[derive(Debug, Default)]
struct Restored {
    positions: Option<Vec<(String, u32, u64)>>,
    stream_time: Option<EventTime>,
    next: u64,
}

pub(crate) struct Task {
    pub(crate) state: TaskState,
    root: Box<dyn RootNode>,
    inputs: BTreeMap<TopicPartition, InputQueue>,
    changelog: TopicPartition,
    /// The changelog's name, shared by every record this task writes to it.
    changelog_topic: Arc<str>,
    /// Changelog offset after our last marker (or where restore ended).
    changelog_next: u64,
    store_ids: Vec<StoreId>,
    shared: Arc<Shared>,
    last_checkpoint: Instant,
    sent: usize,
}

/// A task's name (its checkpoint's and its logs') and its changelog partition.
fn name_and_changelog(topology: &crate::topology::Topology, id: TaskId) -> (String, TopicPartition) {
    let sub = &topology.subtopologies[id.subtopology as usize];
    (
        format!("{}-{}", sub.name, id.partition),
        TopicPartition::new(topology.changelog_topic(sub), id.partition),
    )
}

impl Task {
    /// About how many changelog records opening the task replays: its changelog's length,
    /// less what a local checkpoint already has. Orders the opening of tasks; a figure that
    /// cannot be read counts as none.
    pub(crate) fn restore_estimate(shared: &Shared, id: TaskId) -> u64 {
        let (name, changelog) = name_and_changelog(&shared.topology, id);
        let (Ok(start), Ok(end)) = (
            shared.log.start_offset(&changelog),
            shared.log.end_offset(&changelog),
        ) else {
            return 0;
        };
        let checkpoint = shared.state.read_checkpoint(&name).ok().flatten();
        plan_restore(checkpoint.as_ref(), start, end).records()
    }

    /// Opens a task: stores restored, positions known, processors initialised.
    pub(crate) fn open(shared: &Arc<Shared>, subtopology: u32, partition: u32) -> Result<Task, ProcessError> {
        let topology = &shared.topology;
        let sub = &topology.subtopologies[subtopology as usize];
        let id = TaskId {
            subtopology,
            partition,
        };
        let (name, changelog) = name_and_changelog(topology, id);
        let name: Arc<str> = name.into();
        let started = Instant::now();

        let mut stores: Vec<Option<StagedStore>> = (0..topology.stores.len()).map(|_| None).collect();
        let mut backends: HashMap<String, Arc<dyn StoreBackend>> = HashMap::new();
        for &store in &sub.stores {
            let spec = &topology.stores[store];
            let backend = shared.state.open(&spec.name, partition)?;
            backends.insert(spec.name.clone(), backend.clone());
            stores[store] = Some(StagedStore::new(spec.name.as_str().into(), backend));
        }
        let timers_name = format!("{}.__timers", sub.name);
        let timers_backend = shared.state.open(&timers_name, partition)?;
        backends.insert(timers_name.clone(), timers_backend.clone());

        let checkpoint = shared.state.read_checkpoint(&name)?;
        crate::metrics::restoring(&name, true);
        let restored = restore(&*shared.log, &changelog, &backends, checkpoint, &name)?;
        crate::metrics::restoring(&name, false);

        let timers = Timers::load(StagedStore::new(timers_name.into(), timers_backend))?;
        let mut inputs = BTreeMap::new();
        for topic in &sub.topics {
            let tp = TopicPartition::new(topic.clone(), partition);
            let from_marker = restored.positions.as_ref().and_then(|ps| {
                ps.iter()
                    .find(|(t, p, _)| *t == tp.topic && *p == tp.partition)
                    .map(|(_, _, o)| *o)
            });
            let next = match from_marker {
                Some(offset) => offset,
                None => shared
                    .log
                    .committed(topology.app_id(), &tp)
                    .map_err(ProcessError::Log)?
                    .unwrap_or(0),
            };
            let topic = tp.topic.as_str().into();
            inputs.insert(
                tp,
                InputQueue {
                    topic,
                    next,
                    buffer: VecDeque::new(),
                },
            );
        }
        let state = TaskState {
            id,
            name: name.clone(),
            app_id: topology.app_id().into(),
            stream_time: restored.stream_time.unwrap_or(EventTime::MIN),
            wall_clock: shared.clock.now(),
            origin: None,
            stores,
            timers,
            outputs: Vec::new(),
            partitions: shared.partitions.clone(),
            processed: 0,
            dead_letters: 0,
        };
        let mut task = Task {
            state,
            root: topology.instantiate(sub),
            inputs,
            changelog_topic: changelog.topic.as_str().into(),
            changelog,
            changelog_next: restored.next,
            store_ids: sub.stores.clone(),
            shared: shared.clone(),
            last_checkpoint: Instant::now(),
            sent: 0,
        };
        task.root.visit(&mut task.state, &NodeEvent::Init)?;
        for &store in &task.store_ids {
            let spec = &topology.stores[store];
            shared
                .registry
                .register(&spec.name, partition, backends[&spec.name].clone());
        }
        debug!(task = %name, elapsed_ms = started.elapsed().as_millis() as u64, "task opened");
        Ok(task)
    }

    pub(crate) fn name(&self) -> &str {
        &self.state.name
    }

    /// Input partitions and the next offset to read from each.
    pub(crate) fn positions(&self) -> Vec<(TopicPartition, u64)> {
        self.inputs.iter().map(|(tp, q)| (tp.clone(), q.next)).collect()
    }

    /// The offset after the last record buffered or processed, where fetching continues.
    pub(crate) fn fetch_position(&self, tp: &TopicPartition) -> Option<u64> {
        let q = self.inputs.get(tp)?;
        Some(q.buffer.back().map_or(q.next, |r| r.offset + 1))
    }

    pub(crate) fn buffered(&self) -> usize {
        self.inputs.values().map(|q| q.buffer.len()).sum()
    }

    /// Adds fetched records, dropping any already buffered or processed.
    pub(crate) fn enqueue(&mut self, tp: &TopicPartition, records: Vec<LogRecord>) {
        let Some(queue) = self.inputs.get_mut(tp) else {
            return;
        };
        let mut expected = queue.buffer.back().map_or(queue.next, |r| r.offset + 1);
        for record in records {
            if record.offset >= expected {
                expected = record.offset + 1;
                queue.buffer.push_back(record);
            }
        }
    }

    /// Processes the buffered record with the smallest timestamp; `false` when none is buffered.
    pub(crate) fn process_next(&mut self) -> Result<bool, ProcessError> {
        let mut best: Option<(&TopicPartition, EventTime)> = None;
        for (tp, queue) in &self.inputs {
            if let Some(head) = queue.buffer.front()
                && best.is_none_or(|(_, ts)| head.ts < ts)
            {
                best = Some((tp, head.ts));
            }
        }
        let Some((tp, _)) = best else { return Ok(false) };
        let tp = tp.clone();
        let queue = self.inputs.get_mut(&tp).expect("picked from inputs");
        let record = queue.buffer.pop_front().expect("non-empty");
        queue.next = record.offset + 1;
        let topic = queue.topic.clone();
        self.process(
            &topic,
            tp.partition,
            Some(record.offset),
            &record.key,
            record.value.as_ref(),
            record.ts,
        )?;
        Ok(true)
    }

    /// Processes the next record of one input partition, read from the log (deterministic
    /// schedules pick the partition themselves).
    pub(crate) fn process_from(
        &mut self,
        tp: &TopicPartition,
        record: &LogRecord,
    ) -> Result<(), ProcessError> {
        let topic = match self.inputs.get_mut(tp) {
            Some(queue) => {
                queue.next = queue.next.max(record.offset + 1);
                queue.topic.clone()
            }
            None => tp.topic.as_str().into(),
        };
        self.process(
            &topic,
            tp.partition,
            Some(record.offset),
            &record.key,
            record.value.as_ref(),
            record.ts,
        )
    }

    /// Processes a record handed over in memory, without a log position.
    pub(crate) fn process_direct(
        &mut self,
        tp: &TopicPartition,
        key: &Bytes,
        value: Option<&Bytes>,
        ts: EventTime,
    ) -> Result<(), ProcessError> {
        let topic = match self.inputs.get(tp) {
            Some(queue) => queue.topic.clone(),
            None => tp.topic.as_str().into(),
        };
        self.process(&topic, tp.partition, None, key, value, ts)
    }

    /// Moves the input position of `tp` (records before it count as processed).
    pub(crate) fn set_position(&mut self, tp: &TopicPartition, next: u64) {
        if let Some(queue) = self.inputs.get_mut(tp) {
            queue.next = next;
            queue.buffer.retain(|r| r.offset >= next);
        }
    }

    fn process(
        &mut self,
        topic: &Arc<str>,
        partition: u32,
        offset: Option<u64>,
        key: &Bytes,
        value: Option<&Bytes>,
        ts: EventTime,
    ) -> Result<(), ProcessError> {
        self.state.origin = Some(Origin {
            topic: topic.clone(),
            partition,
            offset,
        });
        let input = RawInput {
            topic,
            key,
            value,
            ts,
        };
        let result = self.root.push_raw(&mut self.state, input);
        self.state.origin = None;
        self.state.processed += 1;
        result
    }

    /// Sets stream time without firing timers (the caller fires them in its own order).
    pub(crate) fn set_stream_time(&mut self, time: EventTime) {
        self.state.stream_time = self.state.stream_time.max(time);
    }

    /// The earliest pending event-time timer: (time, node, key).
    pub(crate) fn next_timer(&self) -> Option<(EventTime, NodeId, Vec<u8>)> {
        self.state.timers.peek().cloned()
    }

    /// Fires the earliest timer if it is due by `upto`.
    pub(crate) fn fire_next_timer(&mut self, upto: EventTime) -> Result<bool, ProcessError> {
        let Some((node, at, key)) = self.state.timers.pop_due(upto) else {
            return Ok(false);
        };
        let event = NodeEvent::Timer {
            node,
            timer: Timer::EventTime { at, key },
        };
        self.root.visit(&mut self.state, &event)?;
        Ok(true)
    }

    /// Runs the wall-clock punctuations due at `now`.
    pub(crate) fn punctuate(&mut self, now: i64) -> Result<(), ProcessError> {
        self.state.wall_clock = now;
        for node in self.state.timers.due_wall_clock(now) {
            let event = NodeEvent::Timer {
                node,
                timer: Timer::WallClock { now },
            };
            self.root.visit(&mut self.state, &event)?;
        }
        Ok(())
    }

    /// Whether anything awaits a commit.
    pub(crate) fn is_dirty(&self) -> bool {
        self.sent > 0
            || !self.state.outputs.is_empty()
            || self.state.processed > 0
            || self.state.timers.store.has_pending()
            || self.state.stores.iter().flatten().any(StagedStore::has_pending)
    }

    /// Hands outputs, changelog writes and the commit marker to `producer`; returns how many
    /// records were sent (the marker last).
    pub(crate) fn prepare_commit(&mut self, producer: &mut dyn Producer) -> Result<usize, ProcessError> {
        self.root.visit(&mut self.state, &NodeEvent::Commit)?;
        let mut sent = 0;
        for record in self.state.outputs.drain(..) {
            producer.send(record)?;
            sent += 1;
        }
        let ts = self.state.stream_time.max(0);
        let stores = self
            .state
            .stores
            .iter()
            .flatten()
            .chain(std::iter::once(&self.state.timers.store));
        for store in stores {
            for (key, value) in store.pending() {
                producer.send(ProducerRecord {
                    topic: self.changelog_topic.clone(),
                    partition: self.changelog.partition,
                    ts,
                    key: Bytes::from(changelog::entry_key(&store.name, key)),
                    value: value.clone().map(Bytes::from),
                })?;
                sent += 1;
            }
        }
        let marker = CommitMarker {
            positions: self
                .inputs
                .iter()
                .map(|(tp, q)| (tp.topic.clone(), tp.partition, q.next))
                .collect(),
            stream_time: self.state.stream_time,
            valid_from: self.changelog_next,
        };
        producer.send(ProducerRecord {
            topic: self.changelog_topic.clone(),
            partition: self.changelog.partition,
            ts,
            key: Bytes::from_static(changelog::MARKER_KEY),
            value: Some(Bytes::from(changelog::encode_marker(&marker))),
        })?;
        sent += 1;
        self.sent = sent;
        Ok(sent)
    }

    /// The commit that carried this task's records landed at `offsets` (marker last): apply
    /// the writes locally and checkpoint when due.
    pub(crate) fn committed(&mut self, offsets: &[u64], force_checkpoint: bool) -> Result<(), ProcessError> {
        if let Some(&marker) = offsets.last() {
            self.changelog_next = marker + 1;
        }
        self.sent = 0;
        self.state.processed = 0;
        for store in self.state.stores.iter_mut().flatten() {
            store.apply_pending()?;
        }
        self.state.timers.store.apply_pending()?;
        let interval = self.shared.config.checkpoint_interval;
        if force_checkpoint || self.last_checkpoint.elapsed() >= interval {
            self.checkpoint()?;
        }
        Ok(())
    }

    /// The commit failed: forget what it carried. The task must be closed and reopened, since
    /// its processors' in-memory state may be ahead of its stores.
    pub(crate) fn abandon(&mut self) {
        self.state.outputs.clear();
        for store in self.state.stores.iter_mut().flatten() {
            store.discard_pending();
        }
        self.state.timers.store.discard_pending();
    }

    fn checkpoint(&mut self) -> Result<(), StoreError> {
        let checkpoint = Checkpoint {
            changelog_offset: self.changelog_next,
            positions: self
                .inputs
                .iter()
                .map(|(tp, q)| (tp.topic.clone(), tp.partition, q.next))
                .collect(),
            stream_time: self.state.stream_time,
        };
        self.shared
            .state
            .write_checkpoint(&self.state.name, &checkpoint)?;
        for store in self.state.stores.iter().flatten() {
            crate::metrics::store_entries(&store.name, self.state.id.partition, store.approximate_len());
        }
        self.last_checkpoint = Instant::now();
        Ok(())
    }

    /// Closes after a final commit (`clean`) or without one.
    pub(crate) fn close(mut self, clean: bool) -> Result<(), ProcessError> {
        let result = if clean {
            self.checkpoint().map_err(ProcessError::from)
        } else {
            Ok(())
        };
        let _ = self.root.visit(&mut self.state, &NodeEvent::Close);
        for &store in &self.store_ids {
            self.shared
                .registry
                .unregister(&self.shared.topology.stores[store].name, self.state.id.partition);
        }
        debug!(task = %self.state.name, clean, "task closed");
        result
    }

    pub(crate) fn stream_time(&self) -> EventTime {
        self.state.stream_time
    }

    pub(crate) fn pending_timers(&self) -> usize {
        self.state.timers.len()
    }
}

/// A write read from the changelog: (offset, store's place in the batches, key, value).
type PendingWrite = (u64, usize, Vec<u8>, Option<Vec<u8>>);

/// Writes of completed commits are applied to the stores together, once this many have
/// gathered or they hold [`RESTORE_BATCH_BYTES`]: one sorted load per store rather than one
/// write per commit (a commit can be a handful of records). Larger loads make fewer table
/// files for RocksDB to merge later; the bound is what a restoring task holds in memory.
const RESTORE_BATCH: usize = 256 * 1024;
const RESTORE_BATCH_BYTES: usize = 32 << 20;

/// Replays the task's changelog partition into its stores, from the checkpoint on, applying
/// writes only up to the last commit marker.
fn restore(
    log: &dyn Log,
    changelog: &TopicPartition,
    backends: &HashMap<String, Arc<dyn StoreBackend>>,
    checkpoint: Option<Checkpoint>,
    task: &str,
) -> Result<Restored, StoreError> {
    let wrap = |e: LogError| StoreError::Restore {
        task: task.to_string(),
        source: Box::new(e),
    };
    let start = log.start_offset(changelog).map_err(wrap)?;
    let end = log.end_offset(changelog).map_err(wrap)?;
    let plan = plan_restore(checkpoint.as_ref(), start, end);
    let mut restored = Restored {
        next: end,
        ..Default::default()
    };
    if plan.wipe {
        for backend in backends.values() {
            backend.clear()?;
        }
    } else if let Some(cp) = &checkpoint {
        restored.positions = Some(cp.positions.clone());
        restored.stream_time = Some(cp.stream_time);
    }
    if plan.records() == 0 {
        return Ok(restored);
    }
    let started = Instant::now();
    let mut consumer = log.consumer(Membership::Manual).map_err(wrap)?;
    consumer.assign(&[(changelog.clone(), plan.from)]).map_err(wrap)?;
    // The stores named in the changelog, and the completed writes of each not yet applied.
    let mut names: Vec<String> = Vec::new();
    let mut ready: Vec<WriteBatch> = Vec::new();
    let (mut ready_len, mut ready_bytes) = (0usize, 0usize);
    let apply = |names: &[String], ready: &mut Vec<WriteBatch>| -> Result<u64, StoreError> {
        let mut applied = 0;
        for (store, batch) in names.iter().zip(ready.iter_mut()) {
            if batch.is_empty() {
                continue;
            }
            // Counted as replayed, before a key's earlier writes in the batch are dropped.
            applied += batch.len() as u64;
            match backends.get(store) {
                Some(backend) => {
                    coalesce(batch);
                    backend.load(batch)?
                }
                None => warn!(task, store, "changelog names a store this topology no longer has"),
            }
            batch.clear();
        }
        Ok(applied)
    };
    // Writes since the last marker.
    let mut pending: Vec<PendingWrite> = Vec::new();
    let mut position = plan.from;
    let mut applied = 0u64;
    let mut torn = 0usize;
    let mut last_report = Instant::now();
    while position < plan.to {
        let fetched = consumer.poll(10_000, Duration::from_millis(500)).map_err(wrap)?;
        if fetched.is_empty() {
            // Compaction or aborted transactions can leave gaps before the end offset.
            let now_end = log.end_offset(changelog).map_err(wrap)?;
            if position >= now_end || fetched.is_empty() && started.elapsed() > Duration::from_secs(60) {
                break;
            }
            continue;
        }
        if last_report.elapsed() >= Duration::from_secs(5) {
            last_report = Instant::now();
            let done = position.saturating_sub(plan.from);
            info!(task, done, of = plan.records(), "restoring from changelog");
        }
        for record in fetched.into_iter().flat_map(|f| f.records) {
            position = record.offset + 1;
            if record.offset >= plan.to {
                break;
            }
            match changelog::parse(&record.key, record.value.as_deref()) {
                Some(Entry::Write { store, key, value }) => {
                    let place = match names.iter().position(|n| n == store) {
                        Some(place) => place,
                        None => {
                            names.push(store.to_string());
                            ready.push(WriteBatch::new());
                            names.len() - 1
                        }
                    };
                    pending.push((record.offset, place, key.to_vec(), value.map(<[u8]>::to_vec)));
                }
                Some(Entry::Marker(marker)) => {
                    for (offset, place, key, value) in pending.drain(..) {
                        if offset < marker.valid_from {
                            torn += 1;
                            continue;
                        }
                        ready_bytes += key.len() + value.as_ref().map_or(0, Vec::len);
                        ready[place].push((key, value));
                        ready_len += 1;
                    }
                    if ready_len >= RESTORE_BATCH || ready_bytes >= RESTORE_BATCH_BYTES {
                        applied += apply(&names, &mut ready)?;
                        (ready_len, ready_bytes) = (0, 0);
                    }
                    restored.positions = Some(marker.positions);
                    restored.stream_time = Some(marker.stream_time);
                }
                None => warn!(
                    task,
                    offset = record.offset,
                    "unreadable changelog record skipped"
                ),
            }
        }
    }
    applied += apply(&names, &mut ready)?;
    if !pending.is_empty() {
        warn!(
            task,
            records = pending.len(),
            "changelog ends with writes of a commit that never completed; ignored"
        );
    }
    if torn > 0 {
        warn!(
            task,
            records = torn,
            "ignored writes of commits that never completed"
        );
    }
    crate::metrics::restored(task, applied);
    info!(
        task,
        from = plan.from,
        to = plan.to,
        wiped = plan.wipe,
        applied,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "restored from changelog"
    );
    Ok(restored)
}
